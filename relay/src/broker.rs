//! Multi-node fan-out through Redis pub/sub (SPEC section 7), enabled by `broker = "redis://..."`.
//!
//! Nodes share one database (the same data dir: SQLite in WAL mode serves several processes on
//! one host) and one Redis channel. Every topic event a node publishes is also sent on the
//! channel and delivered by the other nodes to their own viewers; a message for an agent that is
//! connected to another node travels the same way; an agent connecting to one node closes its
//! old socket on another (4000).
//!
//! Across nodes, delivery around a subscribe is at-least-once rather than exactly-once (the
//! snapshot and a remote event are not taken under one lock); clients already key task events
//! by `(taskId, seq)`.

use std::time::Duration;

use flightdeck_protocol::broker::BrokerMessage;
use flightdeck_protocol::{close, Topic};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::hub::{Frame, TopicKey};
use crate::state::AppState;

/// The one channel all nodes share.
pub const CHANNEL: &str = "flightdeck:relay";
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The sending side, owned by the hub.
#[derive(Debug)]
pub struct Broker {
    node: String,
    tx: mpsc::UnboundedSender<BrokerMessage>,
}

impl Broker {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Queues a message for the other nodes; never blocks (the hub calls it under its lock).
    pub fn send(&self, message: BrokerMessage) {
        let _ = self.tx.send(message);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use the broker at {url}: {source}")]
pub struct BrokerError {
    url: String,
    source: redis::RedisError,
}

/// Connects to Redis, subscribes (before returning, so nothing published after start is
/// missed), installs the broker in the hub and starts the publish and receive loops.
pub async fn start(url: &str, state: &AppState) -> Result<(), BrokerError> {
    let error = |source| BrokerError { url: redact(url), source };
    let client = redis::Client::open(url).map_err(error)?;
    let publisher = client.get_multiplexed_async_connection().await.map_err(error)?;
    let mut pubsub = client.get_async_pubsub().await.map_err(error)?;
    pubsub.subscribe(CHANNEL).await.map_err(error)?;
    let (tx, rx) = mpsc::unbounded_channel();
    state.hub.set_broker(Broker { node: state.node_id.clone(), tx });
    state.tasks.spawn(publish_loop(client.clone(), publisher, rx, state.clone()));
    state.tasks.spawn(receive_loop(client, pubsub, state.clone()));
    tracing::info!(node = %state.node_id, "broker connected");
    Ok(())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>{}", &url[..scheme], &url[at..]),
        _ => url.to_string(),
    }
}

async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    mut rx: mpsc::UnboundedReceiver<BrokerMessage>,
    state: AppState,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let message = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            m = rx.recv() => m,
        };
        let Some(message) = message else { return };
        let result: redis::RedisResult<()> =
            redis::cmd("PUBLISH").arg(CHANNEL).arg(message.to_json()).query_async(&mut conn).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "broker publish failed; reconnecting");
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match client.get_multiplexed_async_connection().await {
                    Ok(c) => {
                        conn = c;
                        backoff = Duration::from_millis(100);
                        break;
                    }
                    Err(_) => backoff = (backoff * 2).min(MAX_BACKOFF),
                }
            }
        }
    }
}

async fn receive_loop(client: redis::Client, first: redis::aio::PubSub, state: AppState) {
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Some(mut ps) = pubsub.take() {
            let mut stream = ps.on_message();
            loop {
                let message = tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    m = stream.next() => m,
                };
                let Some(message) = message else { break };
                match message.get_payload::<String>() {
                    Ok(text) => on_message(&state, &text),
                    Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
                }
            }
            tracing::warn!("broker subscription lost; reconnecting");
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let resubscribed = match client.get_async_pubsub().await {
            Ok(mut ps) => ps.subscribe(CHANNEL).await.map(|()| ps).ok(),
            Err(_) => None,
        };
        match resubscribed {
            Some(ps) => {
                pubsub = Some(ps);
                backoff = Duration::from_millis(100);
            }
            None => backoff = (backoff * 2).min(MAX_BACKOFF),
        }
    }
}

fn on_message(state: &AppState, text: &str) {
    let message = match BrokerMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "invalid broker message"),
    };
    if message.node() == state.node_id {
        return;
    }
    match message {
        BrokerMessage::Event { user, topic, frame, .. } => match topic.parse::<Topic>() {
            Ok(topic) => state.hub.deliver(&TopicKey::new(&user, topic), Frame::from(frame)),
            Err(e) => tracing::warn!(error = %e, "broker event for a bad topic"),
        },
        BrokerMessage::ToAgent { user, agent_id, task_id, frame, .. } => {
            let frame = Frame::from(frame);
            match task_id {
                Some(task_id) => state.agents.send_task(&user, &agent_id, &task_id, frame),
                None => state.agents.send(&user, &agent_id, frame),
            };
        }
        BrokerMessage::AgentConnected { user, agent_id, .. } => {
            state.agents.close_local(&user, &agent_id, close::REPLACED);
        }
        BrokerMessage::HudPrivate { user, repo, .. } => crate::hud::evict_unprivileged(state, &user, &repo),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(super::redact("redis://:hunter2@host:6379/0"), "redis://<redacted>@host:6379/0");
        assert_eq!(super::redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
