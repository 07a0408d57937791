//! `GET /api/realtime`: the viewer bus of SPEC 3.4 (seed 003).
//!
//! Auth: the `fd_session` cookie, `?token=<key>`, or none (public HUD topics only). Owner keys
//! read every topic of their user; viewer keys read their user's HUD topics, private ones
//! included; agent keys are refused (403): an agent publishes, it does not watch.
//!
//! A viewer that offers the `flightdeck-lines` subprotocol gets the messages queued for it
//! joined into one WebSocket message, one per line (`protocol::realtime::LINES_SUBPROTOCOL`);
//! the HUD and cockpit pages do. Others get one message each, as in SPEC 3.4.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::close;
use flightdeck_protocol::event::{SeqEvent, TaskEventRecord};
use flightdeck_protocol::realtime::{encode_event, encode_snapshot, HudEvent, LINES_SUBPROTOCOL};
use flightdeck_protocol::{ClientMessage, Detail, InvalidMessage, ServerMessage, Topic};
use futures_util::StreamExt;

use crate::catch_up::{CatchUp, TranscriptReader};
use crate::domain::views::{snapshot, Audience, Snapshot};
use crate::error::AppError;
use crate::hub::{Closer, Frame, Subscriber, TopicKey};
use crate::socket::{self, Incoming, InvalidBudget};
use crate::state::{AppState, Auth, ClientIp};

/// Most topics one connection may hold, so one socket cannot pin unbounded state.
const MAX_TOPICS: usize = 256;

pub async fn handler(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Auth,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    state.check_ws_rate(ip)?;
    if auth.principal.as_ref().is_some_and(|p| p.scope == KeyScope::Agent) {
        return Err(AppError::Forbidden("agent keys cannot read the realtime bus".into()));
    }
    // Cross-site WebSocket hijacking: a page elsewhere must not ride on the session cookie.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if auth.via_cookie && origin.is_some_and(|o| o.trim_end_matches('/') != state.public_origin(&headers)) {
        return Err(AppError::Forbidden("session cookies work only from this origin".into()));
    }
    let ws = socket::configure(ws, &state.settings).protocols([LINES_SUBPROTOCOL]);
    let lines = ws.selected_protocol().is_some_and(|p| p == LINES_SUBPROTOCOL);
    let tasks = state.tasks.clone();
    Ok(ws.on_upgrade(move |socket| tasks.track_future(run(state, auth, socket, lines))))
}

struct Viewer {
    state: AppState,
    auth: Auth,
    id: u64,
    tx: socket::QueueTx,
    closer: std::sync::Arc<Closer>,
    budget: InvalidBudget,
    topics: HashSet<TopicKey>,
}

/// `lines`: the viewer took [`LINES_SUBPROTOCOL`] (queued messages share a WebSocket message).
async fn run(state: AppState, auth: Auth, socket: WebSocket, lines: bool) {
    let id = state.conns.next_id();
    let closer = Closer::new();
    let key_id = auth.principal.as_ref().map(|p| p.key_id.clone()).unwrap_or_default();
    let _guard = state.conns.register(&key_id, id, closer.clone());
    if state.shutdown.is_cancelled() {
        closer.close(close::GOING_AWAY);
    }
    let (sink, mut stream) = socket.split();
    // Bounded in frames and bytes; full closes this viewer with 4001 (see `socket::queue`).
    let (tx, rx) = socket::queue(state.settings.viewer_queue_len, state.settings.viewer_queue_bytes);
    let coalesce = std::time::Duration::from_millis(state.settings.write_coalesce_ms);
    // Viewers are pinged (WebSocket pings, answered by any browser); a viewer from which
    // nothing (pong or message) arrives for `viewer_timeout_ms` is half-open: closed (1000).
    let ping_every = Some(std::time::Duration::from_millis(state.settings.viewer_ping_ms.max(1)));
    let silence = std::time::Duration::from_millis(state.settings.viewer_timeout_ms.max(1));
    let framing = if lines { socket::Framing::Lines } else { socket::Framing::OnePerMessage };
    let writer = tokio::spawn(socket::write_loop(
        sink,
        rx,
        closer.clone(),
        state.metrics.clone(),
        socket::WriteOptions { coalesce, ping_every, framing },
    ));
    state.metrics.viewers_connected.fetch_add(1, Ordering::Relaxed);
    let mut viewer = Viewer {
        budget: InvalidBudget::new(state.settings.invalid_frames_per_minute),
        state: state.clone(),
        auth,
        id,
        tx,
        closer: closer.clone(),
        topics: HashSet::new(),
    };
    let max = state.settings.max_frame_bytes;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = closer.closed() => break,
            _ = tokio::time::sleep_until(last_heard + silence) => {
                tracing::debug!(viewer = id, "silent viewer closed");
                closer.close(close::NORMAL);
            }
            msg = stream.next() => {
                // Anything from the viewer (a pong included) shows it is there.
                last_heard = tokio::time::Instant::now();
                match socket::classify(msg, max) {
                    Incoming::Text(text) => {
                        state.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = viewer.on_text(&text).await {
                            tracing::warn!(error = %e, "viewer message failed");
                            viewer.send(&ServerMessage::Error { message: "internal error".into(), topic: None, details: None });
                        }
                    }
                    Incoming::Binary => viewer.invalid(vec![Detail::new("$", "expected a text frame")]),
                    Incoming::Control => {}
                    Incoming::TooBig => closer.close(close::TOO_BIG),
                    Incoming::Broken(code) => closer.close(code),
                    Incoming::Closed => closer.close(close::NORMAL),
                }
            }
        }
    }
    for key in std::mem::take(&mut viewer.topics) {
        state.hub.unsubscribe(&key, id);
        viewer.unwatch(&key).await;
    }
    drop(viewer);
    socket::finish(stream, writer).await;
    state.metrics.viewers_connected.fetch_sub(1, Ordering::Relaxed);
}

impl Viewer {
    fn send(&self, message: &ServerMessage) {
        if self.tx.try_send(Frame::from(message.to_json())).is_err() {
            self.state.metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
            self.closer.close(close::TOO_SLOW);
        }
    }

    fn invalid(&mut self, details: Vec<Detail>) {
        self.state.metrics.invalid_frames.fetch_add(1, Ordering::Relaxed);
        self.send(&ServerMessage::invalid(&InvalidMessage::new(details)));
        if self.budget.hit(Instant::now()) {
            self.closer.close(close::POLICY);
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), AppError> {
        let message = match ClientMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                self.invalid(e.details);
                return Ok(());
            }
        };
        match message {
            ClientMessage::Ping {} => self.send(&ServerMessage::Pong {}),
            ClientMessage::Subscribe { topics } => {
                // A topic named twice in one subscribe is answered once: each answer is a full
                // snapshot, and a frame naming one HUD a thousand times must not build a
                // thousand of them.
                let mut seen = HashSet::new();
                for (i, name) in topics.iter().enumerate() {
                    if !seen.insert(name.as_str()) {
                        continue;
                    }
                    match name.parse::<Topic>() {
                        Ok(topic)
                            if self.topics.len() >= MAX_TOPICS
                                && !self.topics.contains(&self.key_for(topic.clone())) =>
                        {
                            self.send(&ServerMessage::Error {
                                message: format!("at most {MAX_TOPICS} topics per connection"),
                                topic: Some(name.clone()),
                                details: None,
                            });
                        }
                        Ok(topic) => self.subscribe(topic).await?,
                        Err(e) => {
                            self.state.metrics.invalid_frames.fetch_add(1, Ordering::Relaxed);
                            self.send(&ServerMessage::Error {
                                message: e.to_string(),
                                topic: Some(name.clone()),
                                details: Some(vec![Detail::new(format!("$.topics[{i}]"), e.to_string())]),
                            });
                            if self.budget.hit(Instant::now()) {
                                self.closer.close(close::POLICY);
                            }
                        }
                    }
                }
            }
            ClientMessage::Unsubscribe { topics } => {
                for name in topics {
                    if let Ok(topic) = name.parse::<Topic>() {
                        let key = self.key_for(topic);
                        self.state.hub.unsubscribe(&key, self.id);
                        if self.topics.remove(&key) {
                            self.unwatch(&key).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Names without a user are the authenticated user's own (anonymous: none).
    fn key_for(&self, topic: Topic) -> TopicKey {
        match &topic {
            Topic::Hud { user, .. } | Topic::Dashboard { user } => TopicKey::new(&user.clone(), topic),
            _ => {
                let user = self.auth.principal.as_ref().map(|p| p.user.clone()).unwrap_or_default();
                TopicKey::new(&user, topic)
            }
        }
    }

    /// Registers the subscription, reads the snapshot through the store, then queues it and
    /// whatever was published meanwhile that it does not hold (see [`crate::hub`]): no event
    /// falls between them or is sent twice.
    async fn subscribe(&mut self, topic: Topic) -> Result<(), AppError> {
        let key = self.key_for(topic.clone());
        let name = topic.to_string();
        let privileged = self.auth.can_view_private(&key.user);
        let mut sub = Subscriber::new(
            self.id,
            self.tx.clone(),
            self.closer.clone(),
            privileged,
            self.state.settings.viewer_queue_len,
        );
        if let Some(reader) = transcript_reader(&self.state, &topic) {
            let deadline = std::time::Duration::from_millis(self.state.settings.viewer_catchup_ms.max(1));
            sub = sub.catching_up(CatchUp::new(reader, deadline));
        }
        let audience = Audience { can_view_private: privileged, is_owner: self.auth.is_owner_of(&key.user) };
        self.state.hub.subscribe_pending(key.clone(), sub);
        // Other nodes' events of this topic reach this node before the snapshot is read.
        let held = self.topics.contains(&key);
        if !held {
            if let Some(broker) = self.state.hub.broker() {
                broker.watch(&key.user, &name).await;
            }
        }
        let read = snapshot(self.state.store(), audience, &key).await;
        let outcome = finish_subscribe(&self.state, &key, self.id, &name, read);
        match outcome {
            Ok(Ok(true)) => {
                self.topics.insert(key);
            }
            Ok(Ok(false)) => {
                self.topics.remove(&key);
                self.unwatch(&key).await;
            }
            Ok(Err(message)) => {
                self.topics.remove(&key);
                self.unwatch(&key).await;
                self.send(&ServerMessage::Error { message, topic: Some(topic.to_string()), details: None });
            }
            Err(e) => {
                self.topics.remove(&key);
                self.unwatch(&key).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Tells the broker this viewer no longer shows `key` (see [`crate::broker::Broker::watch`]).
    async fn unwatch(&self, key: &TopicKey) {
        if let Some(broker) = self.state.hub.broker() {
            broker.unwatch(&key.user, &key.topic.to_string()).await;
        }
    }
}

/// How a viewer of `topic` that fell behind reads a transcript from the store: the frames
/// the live stream would have carried (see [`crate::catch_up`]). None for topics that carry no
/// transcript.
fn transcript_reader(state: &AppState, topic: &Topic) -> Option<TranscriptReader> {
    let hud = match topic {
        Topic::Task(_) => false,
        Topic::Hud { .. } => true,
        _ => return None,
    };
    let name = topic.to_string();
    let store = state.store_handle();
    Some(std::sync::Arc::new(move |task_id: String, after: u64, limit: u32| {
        let (store, name) = (store.clone(), name.clone());
        Box::pin(async move {
            let events = store.events(&task_id, after, limit).await.map_err(|e| e.to_string())?;
            Ok(events
                .into_iter()
                .map(|SeqEvent { seq, event }| {
                    let frame = if hud {
                        let record = TaskEventRecord { task_id: task_id.clone(), seq, event };
                        encode_event(&name, &HudEvent::TaskEvent(record))
                    } else {
                        encode_event(&name, &SeqEvent { seq, event })
                    };
                    (seq, Frame::from(frame))
                })
                .collect())
        }) as futures_util::future::BoxFuture<'static, Result<Vec<(u64, Frame)>, String>>
    }))
}

/// Ends a subscribe registered with [`crate::hub::Hub::subscribe_pending`]: queues the snapshot
/// read (true), or drops the subscription when the viewer is gone or too slow (false), may
/// not have it (the refusal) or the read failed.
fn finish_subscribe(
    st: &AppState,
    key: &TopicKey,
    viewer_id: u64,
    name: &str,
    read: Result<Snapshot, AppError>,
) -> Result<Result<bool, String>, AppError> {
    match read {
        Ok(Ok((payload, cover))) => {
            let frame: Frame = encode_snapshot(name, &payload).into();
            Ok(Ok(st.hub.activate(key, viewer_id, frame, cover)))
        }
        Ok(Err(refusal)) => {
            st.hub.unsubscribe(key, viewer_id);
            Ok(Err(refusal))
        }
        Err(e) => {
            st.hub.unsubscribe(key, viewer_id);
            Err(e)
        }
    }
}
