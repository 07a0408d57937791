//! `GET /api/ws`: the agent link of SPEC 3.3.
//!
//! The first message must be `agent-status`; the relay answers `welcome {agentId, heartbeatSecs,
//! lastSeqs}` and from then on pings every heartbeat, stores and fans out what the agent
//! reports, and sends it the tasks queued for its repos and the owner's decisions it has not
//! recorded yet (see [`crate::conversations`]). A second connection with the same
//! `agentId` replaces this one (4000); no pong within the timeout closes it (1000).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use flightdeck_protocol::agent::TaskResultStatus;
use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::close;
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::realtime::{validate_task_id, HudEvent, RepoEvent};
use flightdeck_protocol::{
    names, AgentInfo, AgentMessage, AgentState, Alert, AlertKind, Detail, InvalidMessage, RelayMessage, RepoStatus,
    SeqEvent, Severity, TaskEvent, TaskStatus, Topic,
};
use futures_util::{FutureExt, StreamExt};

use crate::db::{Db, Principal};
use crate::error::AppError;
use crate::hub::{AgentHandle, Closer, Frame, TopicKey};
use crate::socket::{self, Incoming, InvalidBudget};
use crate::state::{AppState, Auth, ClientIp};

/// Frames already buffered that one read takes at most, and their bytes at most (frames may
/// be up to `max_frame_bytes` each): what one agent connection holds before it stores them.
const READ_BATCH: usize = 256;
const READ_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Tasks finished longer ago than this are left out of `lastSeqs`.
const LAST_SEQS_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Tasks whose transcript position one connection keeps in memory. Full rule: the cache is
/// emptied and refilled from the database (one query per task), so it only costs a query.
const TRANSCRIPTS_CACHED: usize = 4096;

pub async fn handler(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Auth,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    state.check_ws_rate(ip)?;
    let principal = auth.required()?.clone();
    if principal.scope != KeyScope::Agent {
        return Err(AppError::Forbidden("/api/ws needs an agent key".into()));
    }
    let ws = socket::configure(ws, &state.settings);
    let tasks = state.tasks.clone();
    Ok(ws.on_upgrade(move |socket| tasks.track_future(run(state, principal, socket))))
}

/// One agent connection, after its `agent-status`.
struct Session {
    agent_id: String,
    /// The agent of a container run (SPEC 10): its key is bound to one task, it reports only
    /// that task, and it is not an agent of the user's repos (not listed, never `offline`).
    run: Option<RunSession>,
}

/// What a container run's connection knows of its run.
#[derive(Debug, Clone)]
struct RunSession {
    /// The agent's seq n is the relay's n + offset (the relay wrote the run's first steps).
    seq_offset: u64,
}

struct Link {
    state: AppState,
    principal: Principal,
    conn_id: u64,
    tx: socket::QueueTx,
    closer: Arc<Closer>,
    budget: InvalidBudget,
    session: Option<Session>,
    last_pong: Instant,
    /// Task events read but not stored yet: a burst is stored in one transaction. Bounded by
    /// `READ_BATCH` frames and about `READ_BATCH_BYTES` (flushed after every read; the reader
    /// waits meanwhile, so a fast agent is slowed by TCP, never dropped).
    pending_events: Vec<(String, u64, TaskEvent)>,
    /// Where each task's transcript stands on the relay, seeded from the database the first
    /// time this connection sees an event of that task (see [`Transcripts`]).
    transcripts: Transcripts,
}

/// Per task of this connection: its repo and the last contiguous seq the relay holds, and the
/// `afterSeq` of a `resend` already asked for. An event is checked against this in memory;
/// the database's conditional update (see [`Db::append_event`]) catches a stale entry.
#[derive(Debug, Default)]
pub struct Transcripts {
    tasks: HashMap<String, Transcript>,
}

#[derive(Debug, Clone)]
struct Transcript {
    repo: String,
    last_seq: u64,
    /// The `afterSeq` of the resend asked for, while the gap it names is open.
    resend_after: Option<u64>,
}

/// What a burst of events did besides storing: unknown tasks and resends to ask for.
#[derive(Debug, Default)]
struct Applied {
    unknown: Vec<String>,
    resend: Vec<(String, u64)>,
}

async fn run(state: AppState, principal: Principal, socket: WebSocket) {
    let conn_id = state.conns.next_id();
    let closer = Closer::new();
    let _guard = state.conns.register(&principal.key_id, conn_id, closer.clone());
    if state.shutdown.is_cancelled() {
        closer.close(close::GOING_AWAY);
    }
    let (sink, mut stream) = socket.split();
    // Bounded in frames (what the relay sends an agent is small: tasks, cancels, pings); full
    // closes the agent with 4001 (see `AgentHandle::tx`).
    let (tx, rx) = socket::queue(state.settings.agent_queue_len.max(8), usize::MAX);
    let coalesce = Duration::from_millis(state.settings.write_coalesce_ms);
    let options = socket::WriteOptions { coalesce, ping_every: None, framing: socket::Framing::OnePerMessage };
    let writer = tokio::spawn(socket::write_loop(sink, rx, closer.clone(), state.metrics.clone(), options));
    state.metrics.agents_connected.fetch_add(1, Ordering::Relaxed);

    let mut link = Link {
        budget: InvalidBudget::new(state.settings.invalid_frames_per_minute),
        state: state.clone(),
        principal,
        conn_id,
        tx,
        closer: closer.clone(),
        session: None,
        last_pong: Instant::now(),
        pending_events: Vec::new(),
        transcripts: Transcripts::default(),
    };
    let heartbeat = Duration::from_millis(state.settings.heartbeat_ms.max(1));
    let pong_timeout = Duration::from_millis(state.settings.pong_timeout_ms.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max = state.settings.max_frame_bytes;

    loop {
        let deadline = tokio::time::Instant::from_std(link.last_pong + pong_timeout);
        tokio::select! {
            biased;
            _ = closer.closed() => break,
            _ = tokio::time::sleep_until(deadline) => {
                // No pong (or no agent-status) in time: a stale connection.
                let code = if link.session.is_some() { close::NORMAL } else { close::POLICY };
                closer.close(code);
            }
            _ = ticker.tick(), if link.session.is_some() => {
                let ping = RelayMessage::Ping { timestamp: Utc::now().timestamp_millis() };
                link.send(&ping);
            }
            msg = stream.next() => {
                // Take what is already buffered too, so a burst costs one database round trip.
                let mut incoming = vec![socket::classify(msg, max)];
                let mut bytes = incoming_len(&incoming[0]);
                while incoming.len() < READ_BATCH
                    && bytes < READ_BATCH_BYTES
                    && matches!(incoming.last(), Some(Incoming::Text(_) | Incoming::Control))
                {
                    match stream.next().now_or_never() {
                        Some(msg) => {
                            let item = socket::classify(msg, max);
                            bytes += incoming_len(&item);
                            incoming.push(item);
                        }
                        None => break,
                    }
                }
                for item in incoming {
                    if closer.code() != 0 {
                        // Closing (too many invalid frames, too big, replaced): read no further.
                        break;
                    }
                    match item {
                        Incoming::Text(text) => {
                            state.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = link.on_text(&text).await {
                                link.failed(e);
                            }
                        }
                        Incoming::Binary => link.invalid(vec![Detail::new("$", "expected a text frame")]),
                        Incoming::Control => {}
                        Incoming::TooBig => closer.close(close::TOO_BIG),
                        Incoming::Broken(code) => closer.close(code),
                        Incoming::Closed => closer.close(close::NORMAL),
                    }
                }
                if let Err(e) = link.flush_events().await {
                    link.failed(e);
                }
            }
        }
    }
    drop(link.tx);
    socket::finish(stream, writer).await;
    state.metrics.agents_connected.fetch_sub(1, Ordering::Relaxed);
    if let Some(session) = link.session.take() {
        let replaced = closer.code() == close::REPLACED;
        gone(&state, &link.principal.user, session, conn_id, replaced).await;
    }
}

/// The bytes a read item holds.
fn incoming_len(item: &Incoming) -> usize {
    match item {
        Incoming::Text(text) => text.len(),
        _ => 0,
    }
}

impl Link {
    fn send(&self, message: &RelayMessage) {
        if self.tx.try_send(Frame::from(message.to_json())).is_err() {
            self.closer.close(close::TOO_SLOW);
        }
    }

    fn failed(&self, e: AppError) {
        tracing::warn!(error = %e, "agent message failed");
        if e.status().is_server_error() {
            self.send(&RelayMessage::Error { message: "internal error".into(), details: None });
        }
    }

    fn invalid(&mut self, details: Vec<Detail>) {
        self.state.metrics.invalid_frames.fetch_add(1, Ordering::Relaxed);
        self.send(&RelayMessage::invalid(&InvalidMessage::new(details)));
        if self.budget.hit(Instant::now()) {
            self.closer.close(close::POLICY);
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), AppError> {
        let message = match AgentMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                self.invalid(e.details);
                return Ok(());
            }
        };
        if let Err(details) = check_names(&message) {
            self.invalid(details);
            return Ok(());
        }
        if self.session.is_none() && !matches!(message, AgentMessage::AgentStatus { .. }) {
            self.invalid(vec![Detail::new("$.type", "the first message must be agent-status")]);
            return Ok(());
        }
        if let Err(details) = self.check_bound(&message) {
            self.invalid(details);
            return Ok(());
        }
        if !matches!(message, AgentMessage::TaskEvent { .. }) {
            // Keep the agent's order: events received before this message are stored first.
            self.flush_events().await?;
        }
        let user = self.principal.user.clone();
        match message {
            AgentMessage::AgentStatus { agent_id, status, capabilities, metadata, version } => {
                self.on_status(agent_id, status, capabilities, metadata, version).await?
            }
            AgentMessage::GitStatus { .. } if self.run_session().is_some() => {
                // A container's clone is not where the user's repo lives: the owner's agent
                // stays the one that has it.
            }
            AgentMessage::GitStatus { repos, full } => {
                let agent_id = self.agent_id();
                let full = full.unwrap_or(false);
                let names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
                self.state.db(move |db, st| apply_git_status(db, st, &user, &agent_id, &repos, full)).await?;
                self.dispatch_queued(names).await?;
            }
            AgentMessage::TaskUpdate { task } => {
                if let Some(error) = self.owned_elsewhere(&task.id).await? {
                    self.invalid(vec![error]);
                    return Ok(());
                }
                let agent_id = self.agent_id();
                // Its repo may have changed: read it again with the next event.
                self.transcripts.tasks.remove(&task.id);
                self.state
                    .db(move |db, st| {
                        let mut task = task;
                        if task.agent_id.is_none() {
                            task.agent_id = Some(agent_id);
                        }
                        // A task's place in its conversation is fixed when it is created (by the
                        // relay for a reply): an agent that leaves it out does not move the task.
                        if let Some(stored) = db.task(&user, &task.id)? {
                            task.conversation_id = stored.conversation_id;
                            task.parent_task_id = stored.parent_task_id;
                            // Where it runs is the relay's to say (SPEC 10).
                            task.placement = stored.placement;
                            task.runner = stored.runner;
                            if stored.placement == Some(flightdeck_protocol::Placement::Container) {
                                task.agent_id = stored.agent_id;
                            }
                        }
                        let stored = db.upsert_task(&user, &task)?;
                        st.publish_task(db, &user, &stored)
                    })
                    .await?;
            }
            AgentMessage::TaskEvent { task_id, seq, event } => {
                if seq == 0 {
                    self.invalid(vec![Detail::new("$.seq", "must be at least 1")]);
                    return Ok(());
                }
                // Stored with the rest of the burst it came in (see `flush_events`).
                let offset = self.run_session().map_or(0, |r| r.seq_offset);
                self.pending_events.push((task_id, seq + offset, event));
            }
            AgentMessage::TaskResult { task_id, status, result, logs: _ } => {
                let found = self
                    .state
                    .db(move |db, st| {
                        let Some(mut task) = db.task(&user, &task_id)? else { return Ok(false) };
                        task.status = match status {
                            TaskResultStatus::Completed => TaskStatus::Completed,
                            TaskResultStatus::Failed => TaskStatus::Failed,
                            TaskResultStatus::Cancelled => TaskStatus::Cancelled,
                        };
                        task.finished_at.get_or_insert_with(Utc::now);
                        match (status, result) {
                            (TaskResultStatus::Failed, serde_json::Value::String(s)) => task.error = Some(s),
                            (_, serde_json::Value::String(s)) => task.summary = Some(s),
                            _ => {}
                        }
                        let stored = db.upsert_task(&user, &task)?;
                        st.publish_task(db, &user, &stored)?;
                        Ok(true)
                    })
                    .await?;
                if !found {
                    self.invalid(vec![Detail::new("$.taskId", "unknown task")]);
                }
            }
            AgentMessage::Alert { alert } => {
                self.state
                    .db(move |db, st| {
                        // An acknowledgement is never undone by a resend (the agent may not
                        // know of it); an unchanged alert is not published again.
                        let previous = db.alert(&user, &alert.id)?;
                        let alert = merge_alert(previous.as_ref(), alert);
                        if previous.as_ref() != Some(&alert) {
                            db.upsert_alert(&user, &alert)?;
                            st.hub.publish(&TopicKey::new(&user, Topic::Alerts), &alert);
                        }
                        Ok(())
                    })
                    .await?;
            }
            AgentMessage::Error { message, task_id, request_id } => {
                // The agent could not do what the relay asked. A decision for a request that is
                // no longer pending there is not sent again; the transcript says what happened.
                tracing::info!(%message, ?task_id, ?request_id, "the agent reported an error");
                if let (Some(task_id), Some(request_id)) = (task_id, request_id) {
                    self.state.db(move |db, _| Ok(db.delete_pending_decision(&user, &task_id, &request_id)?)).await?;
                }
            }
            AgentMessage::Pong { .. } => {
                self.last_pong = Instant::now();
                let agent_id = self.agent_id();
                self.state
                    .db(move |db, st| {
                        if let Some(mut info) = db.agent(&user, &agent_id)? {
                            info.last_ping_at = Utc::now();
                            db.upsert_agent(&user, &info, true)?;
                            st.publish_agent(&user, &info);
                        }
                        Ok(())
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores the buffered events in one transaction, then publishes the new ones (still under
    /// the database lock, so snapshots stay exact). Events of unknown tasks are refused.
    async fn flush_events(&mut self) -> Result<(), AppError> {
        if self.pending_events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.pending_events);
        let user = self.principal.user.clone();
        let mut transcripts = std::mem::take(&mut self.transcripts);
        let (transcripts, applied) = self
            .state
            .db(move |db, st| {
                let applied = apply_events(db, st, &user, events, &mut transcripts)?;
                Ok((transcripts, applied))
            })
            .await?;
        self.transcripts = transcripts;
        let offset = self.run_session().map_or(0, |r| r.seq_offset);
        for (task_id, after_seq) in applied.resend {
            self.send(&RelayMessage::Resend { task_id, after_seq: after_seq.saturating_sub(offset) });
        }
        for _ in applied.unknown {
            self.invalid(vec![Detail::new("$.taskId", "unknown task: send task-update before its events")]);
        }
        Ok(())
    }

    fn agent_id(&self) -> String {
        self.session.as_ref().map(|s| s.agent_id.clone()).unwrap_or_default()
    }

    fn run_session(&self) -> Option<&RunSession> {
        self.session.as_ref().and_then(|s| s.run.as_ref())
    }

    /// A key bound to a task (a container run's) may report that task only.
    fn check_bound(&self, message: &AgentMessage) -> Result<(), Vec<Detail>> {
        let Some(bound) = &self.principal.task_id else { return Ok(()) };
        let (path, id) = match message {
            AgentMessage::TaskUpdate { task } => ("$.task.id", &task.id),
            AgentMessage::TaskEvent { task_id, .. } | AgentMessage::TaskResult { task_id, .. } => ("$.taskId", task_id),
            _ => return Ok(()),
        };
        if id == bound {
            Ok(())
        } else {
            Err(vec![Detail::new(path, "this key may only report the task it was made for")])
        }
    }

    /// A task id that belongs to another user is refused (ids are global).
    async fn owned_elsewhere(&self, task_id: &str) -> Result<Option<Detail>, AppError> {
        let id = task_id.to_string();
        let owner = self.state.db(move |db, _| Ok(db.task_user(&id)?)).await?;
        Ok(owner.filter(|u| *u != self.principal.user).map(|_| Detail::new("$.task.id", "task id already in use")))
    }

    async fn on_status(
        &mut self,
        agent_id: String,
        status: AgentState,
        capabilities: Option<Vec<String>>,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
        version: Option<String>,
    ) -> Result<(), AppError> {
        if let Some(session) = &self.session {
            if session.agent_id != agent_id {
                self.invalid(vec![Detail::new("$.agentId", "cannot change agentId on a connection")]);
                return Ok(());
            }
        }
        let first = self.session.is_none();
        let user = self.principal.user.clone();
        let now = Utc::now();
        if let Some(task_id) = self.principal.task_id.clone() {
            if first {
                self.start_run_session(agent_id, task_id).await?;
            }
            return Ok(());
        }
        if first {
            let handle = AgentHandle::new(self.conn_id, self.tx.clone(), self.closer.clone());
            if let Some(old) = self.state.agents.insert(&user, &agent_id, handle) {
                old.closer.close(close::REPLACED);
            }
            if let Some(broker) = self.state.hub.broker() {
                broker.send(flightdeck_protocol::broker::BrokerMessage::AgentConnected {
                    node: broker.node().to_string(),
                    user: user.clone(),
                    agent_id: agent_id.clone(),
                });
            }
        }
        let since = (now - chrono::Duration::from_std(LAST_SEQS_WINDOW).unwrap_or_default()).timestamp_millis();
        let id = agent_id.clone();
        let conn = conn_token(&self.state, self.conn_id);
        let (last_seqs, known_repos, decisions) = self
            .state
            .db(move |db, st| {
                let previous = db.agent(&user, &id)?;
                let repos: Vec<String> = db.repos(&user, None, Some(&id))?.into_iter().map(|r| r.name).collect();
                let info = AgentInfo {
                    agent_id: id.clone(),
                    status,
                    capabilities: capabilities.unwrap_or_default(),
                    metadata: metadata.unwrap_or_default(),
                    version: version.unwrap_or_default(),
                    connected_at: match (&previous, first) {
                        (Some(p), false) => p.connected_at,
                        _ => now,
                    },
                    last_ping_at: now,
                    repos: repos.clone(),
                };
                db.upsert_agent(&user, &info, true)?;
                if first {
                    db.set_agent_conn(&user, &id, &conn)?;
                }
                st.publish_agent(&user, &info);
                if first {
                    st.publish_agent_online(db, &user, &id)?;
                }
                let (last_seqs, decisions) = if first {
                    (db.last_seqs(&user, &id, since)?, db.pending_decisions_for(&user, &id)?)
                } else {
                    Default::default()
                };
                Ok((last_seqs, repos, decisions))
            })
            .await?;
        if first {
            self.send(&RelayMessage::Welcome {
                agent_id: agent_id.clone(),
                heartbeat_secs: self.state.settings.heartbeat_secs(),
                last_seqs,
            });
            // Decisions the agent may not have received (a dropped link, a relay restart): the
            // agent applies one it still waits for and answers `error` to one it does not.
            for decision in decisions {
                self.send(&decision.to_message());
            }
            if known_repos.is_empty() {
                // The relay knows none of this agent's repos (first contact, or they were
                // removed): ask for its whole state.
                self.send(&RelayMessage::StatusRequest {});
            }
            self.last_pong = Instant::now();
            self.session = Some(Session { agent_id, run: None });
            self.dispatch_queued(known_repos).await?;
        }
        Ok(())
    }

    /// The first `agent-status` of a container run's agent: it is reachable for its task (in
    /// this process only: the container connects to the node that started it), gets a welcome
    /// with where its task's transcript stands, and its task.
    async fn start_run_session(&mut self, agent_id: String, task_id: String) -> Result<(), AppError> {
        let user = self.principal.user.clone();
        let handle = AgentHandle::new(self.conn_id, self.tx.clone(), self.closer.clone());
        if let Some(old) = self.state.agents.insert(&user, &agent_id, handle) {
            old.closer.close(close::REPLACED);
        }
        let id = task_id.clone();
        let found = self
            .state
            .db(move |db, _| {
                let offset = db.run(&id)?.map_or(0, |r| r.seq_offset);
                Ok(db.task(&user, &id)?.map(|t| (t, offset)))
            })
            .await?;
        let Some((task, seq_offset)) = found else {
            self.closer.close(close::POLICY);
            return Ok(());
        };
        let held = task.last_seq.saturating_sub(seq_offset);
        self.send(&RelayMessage::Welcome {
            agent_id: agent_id.clone(),
            heartbeat_secs: self.state.settings.heartbeat_secs(),
            last_seqs: [(task_id.clone(), held)].into_iter().collect(),
        });
        self.last_pong = Instant::now();
        self.session = Some(Session { agent_id, run: Some(RunSession { seq_offset }) });
        if task.status == TaskStatus::Queued {
            let user = self.principal.user.clone();
            self.state.db(move |db, st| st.dispatch(db, &user, &task).map(|_| ())).await?;
        }
        Ok(())
    }

    /// Sends this agent the queued tasks of `repos` (each once per connection).
    async fn dispatch_queued(&mut self, repos: Vec<String>) -> Result<(), AppError> {
        let Some(session) = &self.session else { return Ok(()) };
        let user = self.principal.user.clone();
        let agent_id = session.agent_id.clone();
        self.state
            .db(move |db, st| {
                for task in db.queued_tasks_for(&user, &agent_id, &repos)? {
                    st.dispatch(db, &user, &task)?;
                }
                Ok(())
            })
            .await
    }
}

/// Stores a burst of task events and publishes the new ones after the commit.
///
/// Contiguity (SPEC 3.1): an event whose `seq` is at or below the task's last contiguous seq
/// is a duplicate and changes nothing; the next seq is stored and published; anything beyond
/// would leave a gap, so it is not stored and the agent is asked (once per gap) to resend
/// after the last contiguous seq.
fn apply_events(
    db: &Db,
    st: &AppState,
    user: &str,
    events: Vec<(String, u64, TaskEvent)>,
    transcripts: &mut Transcripts,
) -> Result<Applied, AppError> {
    let tx = db.begin()?;
    let mut applied = Applied::default();
    let mut stored = Vec::new();
    if transcripts.tasks.len() > TRANSCRIPTS_CACHED {
        transcripts.tasks.clear();
    }
    for (task_id, seq, event) in events {
        // At most two passes: the second after re-reading a stale entry from the database.
        for _ in 0..2 {
            let entry = match transcripts.tasks.get_mut(&task_id) {
                Some(entry) => entry,
                None => match db.task_repo_and_seq(user, &task_id)? {
                    Some((repo, last_seq)) => transcripts.tasks.entry(task_id.clone()).or_insert(Transcript {
                        repo,
                        last_seq,
                        resend_after: None,
                    }),
                    None => {
                        applied.unknown.push(task_id.clone());
                        break;
                    }
                },
            };
            if seq <= entry.last_seq {
                // Already held: receiving an event twice changes nothing.
                break;
            }
            if seq > entry.last_seq + 1 {
                if entry.resend_after != Some(entry.last_seq) {
                    entry.resend_after = Some(entry.last_seq);
                    applied.resend.push((task_id.clone(), entry.last_seq));
                }
                break;
            }
            if db.append_event(&task_id, seq, &event)? {
                if let TaskEvent::PermissionDecision { request_id, .. } = &event {
                    // The agent applied it: the owner's decision, if any, is delivered.
                    db.delete_pending_decision(user, &task_id, request_id)?;
                }
                entry.last_seq = seq;
                stored.push((task_id.clone(), entry.repo.clone(), seq, event));
                break;
            }
            // Another connection moved this transcript: read where it stands and decide again.
            transcripts.tasks.remove(&task_id);
        }
    }
    tx.commit().map_err(crate::db::StoreError::from)?;
    // Published per topic in runs (a burst is mostly one task's events), in the agent's order.
    let mut hud_tasks: HashMap<String, Option<String>> = HashMap::new();
    let mut runs: Vec<(TopicKey, Vec<SeqEvent>)> = Vec::new();
    let mut hud_runs: Vec<(TopicKey, Vec<HudEvent>)> = Vec::new();
    for (task_id, repo, seq, event) in stored {
        let key = TopicKey::new(user, Topic::Hud { user: user.to_string(), repo: repo.clone() });
        let hud_event = if st.hub.has_subscribers(&key) {
            let hud_task = match hud_tasks.get(&repo) {
                Some(id) => id.clone(),
                None => {
                    let id = db.hud_task_id(user, &repo)?;
                    hud_tasks.insert(repo.clone(), id.clone());
                    id
                }
            };
            (hud_task.as_deref() == Some(task_id.as_str()))
                .then(|| HudEvent::TaskEvent(TaskEventRecord { task_id: task_id.clone(), seq, event: event.clone() }))
        } else {
            None
        };
        let task_key = TopicKey::new(user, Topic::Task(task_id));
        push_run(&mut runs, task_key, SeqEvent { seq, event });
        if let Some(hud_event) = hud_event {
            push_run(&mut hud_runs, key, hud_event);
        }
    }
    for (key, events) in &runs {
        st.hub.publish_many(key, events);
    }
    for (key, events) in &hud_runs {
        st.hub.publish_many(key, events);
    }
    Ok(applied)
}

/// Stores events the relay writes itself (a container run's steps), checked and published like
/// an agent's.
pub(crate) fn store_events(
    db: &Db,
    st: &AppState,
    user: &str,
    events: Vec<(String, u64, TaskEvent)>,
) -> Result<(), AppError> {
    apply_events(db, st, user, events, &mut Transcripts::default()).map(|_| ())
}

/// An alert as the agent (re)sends it, over the one the relay holds: acknowledged if either
/// says so, with the first acknowledgement's time.
fn merge_alert(previous: Option<&Alert>, mut alert: Alert) -> Alert {
    if let Some(previous) = previous.filter(|p| p.acknowledged) {
        alert.acknowledged = true;
        alert.acknowledged_at = previous.acknowledged_at.or(alert.acknowledged_at);
    } else if alert.acknowledged && alert.acknowledged_at.is_none() {
        alert.acknowledged_at = Some(Utc::now());
    }
    alert
}

/// Appends `item` to the last run when it has the same key, else starts a new run.
fn push_run<T>(runs: &mut Vec<(TopicKey, Vec<T>)>, key: TopicKey, item: T) {
    match runs.last_mut() {
        Some((last, items)) if *last == key => items.push(item),
        _ => runs.push((key, vec![item])),
    }
}

/// Stores a `git-status` and publishes what changed: repos (in full to the owner, public view to
/// HUDs), repos gone from a `full` set, HUDs whose agent came online, the agent's repo list.
fn apply_git_status(
    db: &Db,
    st: &AppState,
    user: &str,
    agent_id: &str,
    repos: &[RepoStatus],
    full: bool,
) -> Result<(), AppError> {
    for repo in repos {
        let online_before = db.repo_agent_online(user, &repo.name)?.is_some();
        let previous = db.repo(user, &repo.name)?;
        db.upsert_repo(user, agent_id, repo)?;
        let changed = previous.as_ref().is_none_or(|(p, a)| !p.same_state(repo) || a != agent_id);
        if changed {
            st.publish_repo(db, user, repo)?;
        }
        if !online_before {
            let key = TopicKey::new(user, Topic::Hud { user: user.to_string(), repo: repo.name.clone() });
            st.hub.publish(&key, &HudEvent::AgentOnline { agent_online: true });
            if !changed {
                st.publish_dashboard(db, user, &repo.name)?;
            }
        }
    }
    if full {
        for gone in db.repos(user, None, Some(agent_id))? {
            if !repos.iter().any(|r| r.name == gone.name) {
                db.delete_repo(user, &gone.name)?;
                st.hub.publish(&TopicKey::new(user, Topic::Repos), &RepoEvent::Removed { removed: gone.id.clone() });
                if db.hud_settings(user, &gone.name)?.public {
                    st.publish_dashboard_removed(user, &gone.name);
                }
            }
        }
    }
    if let Some(mut info) = db.agent(user, agent_id)? {
        let all: Vec<String> = db.repos(user, None, Some(agent_id))?.into_iter().map(|r| r.name).collect();
        if info.repos != all {
            info.repos = all;
            db.upsert_agent(user, &info, true)?;
            st.publish_agent(user, &info);
        }
    }
    Ok(())
}

/// Names that end up in URLs and topics are checked before anything is stored.
fn check_names(message: &AgentMessage) -> Result<(), Vec<Detail>> {
    let mut details = Vec::new();
    match message {
        AgentMessage::AgentStatus { agent_id, .. } => {
            if let Err(e) = names::validate_agent_id(agent_id) {
                details.push(Detail::new("$.agentId", e.to_string()));
            }
        }
        AgentMessage::GitStatus { repos, .. } => {
            for (i, repo) in repos.iter().enumerate() {
                if let Err(e) = names::validate_repo(&repo.name) {
                    details.push(Detail::new(format!("$.repos[{i}].name"), e.to_string()));
                }
            }
        }
        AgentMessage::TaskUpdate { task } => {
            if let Err(e) = validate_task_id(&task.id) {
                details.push(Detail::new("$.task.id", e));
            }
            if let Err(e) = names::validate_repo(&task.repo) {
                details.push(Detail::new("$.task.repo", e.to_string()));
            }
        }
        AgentMessage::TaskEvent { task_id, .. } | AgentMessage::TaskResult { task_id, .. } => {
            if let Err(e) = validate_task_id(task_id) {
                details.push(Detail::new("$.taskId", e));
            }
        }
        AgentMessage::Alert { alert } => {
            if let Err(e) = validate_task_id(&alert.id) {
                details.push(Detail::new("$.alert.id", e));
            }
        }
        AgentMessage::Pong { .. } => {}
        AgentMessage::Error { task_id, .. } => {
            if let Some(Err(e)) = task_id.as_deref().map(validate_task_id) {
                details.push(Detail::new("$.taskId", e));
            }
        }
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(details)
    }
}

/// Names one connection among all nodes, for the database's `agents.conn`.
fn conn_token(state: &AppState, conn_id: u64) -> String {
    format!("{}:{conn_id}", state.node_id)
}

/// The agent's connection ended. Unless a newer connection took over, it is offline now, and
/// still offline after the grace period raises an `agent_offline` alert.
async fn gone(state: &AppState, user: &str, session: Session, conn_id: u64, replaced: bool) {
    let removed = state.agents.remove_if_current(user, &session.agent_id, conn_id);
    if replaced || !removed || session.run.is_some() {
        // A container run's agent was never one of the user's agents: nothing to mark.
        return;
    }
    let (u, id) = (user.to_string(), session.agent_id.clone());
    let conn = conn_token(state, conn_id);
    let marked = state
        .db(move |db, st| {
            if st.agents.is_connected(&u, &id) {
                return Ok(());
            }
            // Only if no newer connection (here or on another node) took over.
            if let Some(info) = db.mark_agent_offline(&u, &id, &conn)? {
                st.publish_agent(&u, &info);
                st.publish_agent_online(db, &u, &id)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = marked {
        tracing::warn!(error = %e, "could not mark agent offline");
    }
    if state.shutdown.is_cancelled() {
        return;
    }
    let grace = Duration::from_millis(state.settings.agent_offline_grace_ms);
    let state = state.clone();
    let user = user.to_string();
    let generation = state.agents.gone_generation(&user, &session.agent_id);
    let task_state = state.clone();
    task_state.tasks.spawn(async move {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(grace) => {}
        }
        let agent_id = session.agent_id;
        if state.agents.is_connected(&user, &agent_id) || state.agents.gone_generation(&user, &agent_id) != generation {
            return;
        }
        let result = state
            .db(move |db, st| {
                if db.agent_online(&user, &agent_id)? {
                    return Ok(());
                }
                let alert = Alert {
                    id: uuid::Uuid::now_v7().to_string(),
                    severity: Severity::Warning,
                    kind: AlertKind::AgentOffline,
                    repo: None,
                    task_id: None,
                    agent_id: Some(agent_id.clone()),
                    message: format!("agent {agent_id} has been offline for {} s", grace.as_secs()),
                    created_at: Utc::now(),
                    acknowledged: false,
                    acknowledged_at: None,
                };
                db.upsert_alert(&user, &alert)?;
                st.hub.publish(&TopicKey::new(&user, Topic::Alerts), &alert);
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not raise agent_offline");
        }
    });
}
