//! Multi-node fan-out through Redis pub/sub (SPEC section 7), enabled by `broker = "redis://..."`.
//!
//! Nodes share one database (the same data dir: SQLite in WAL mode serves several processes on
//! one host) and one Redis channel. Every topic event a node publishes is also sent on the
//! channel and delivered by the other nodes to their own viewers; a message for an agent that is
//! connected to another node travels the same way; an agent connecting to one node closes its
//! old socket on another (4000).
//!
//! Across nodes, every event carries its position (a transcript event its task and seq, a
//! change of latest state the user's change number), so a viewer whose snapshot already held
//! it drops it, whichever node published it (see [`crate::hub`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::broker::BrokerMessage;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// The one channel all nodes share.
pub const CHANNEL: &str = "flightdeck:relay";
/// Longest wait between reconnect or publish attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First wait after a failure; doubles (with jitter) up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The sending side, owned by the hub.
///
/// Its queue is bounded (`broker_queue_len` messages). Full rule: [`Broker::send`] never
/// waits (the hub calls it under its lock), so a message that does not fit is not queued; the
/// broker counts it and, once the queue has room again, publishes `resync`, on which every
/// other node closes its viewers and agents with 1012. They reconnect and read fresh state
/// from the shared database (everything is stored before it is published), so nothing is lost
/// for good. A publish that fails is retried with backoff, in order, never dropped; a queue
/// that fills while Redis is away is what triggers the rule above.
#[derive(Debug)]
pub struct Broker {
    node: String,
    tx: mpsc::Sender<BrokerMessage>,
    overflowed: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Broker {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Queues a message for the other nodes; never blocks (the hub calls it under its lock).
    pub fn send(&self, message: BrokerMessage) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(message) {
            self.metrics.broker_overflows.fetch_add(1, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use the broker at {url}: {source}")]
pub struct BrokerError {
    url: String,
    source: redis::RedisError,
}

/// What the broker needs from the node that runs it. The broker knows nothing of what the
/// messages mean: `on_message` (the domain's, see `crate::domain::remote`) gets every message
/// another node sent.
pub struct Node {
    pub node_id: String,
    /// Bound of the sending queue, in messages.
    pub queue_len: usize,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Where the publish and receive loops are spawned (so shutdown waits for them).
    pub tasks: TaskTracker,
    pub on_message: Box<dyn Fn(BrokerMessage) + Send + Sync>,
}

/// Connects to Redis, subscribes (before returning, so nothing published after start is
/// missed) and starts the publish and receive loops. The caller installs the returned sending
/// side in the hub.
pub async fn start(url: &str, node: Node) -> Result<Broker, BrokerError> {
    let error = |source| BrokerError { url: redact(url), source };
    let client = redis::Client::open(url).map_err(error)?;
    let publisher = client.get_multiplexed_async_connection().await.map_err(error)?;
    let mut pubsub = client.get_async_pubsub().await.map_err(error)?;
    pubsub.subscribe(CHANNEL).await.map_err(error)?;
    let (tx, rx) = mpsc::channel(node.queue_len.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    let broker =
        Broker { node: node.node_id.clone(), tx, overflowed: overflowed.clone(), metrics: node.metrics.clone() };
    let node = Arc::new(node);
    node.tasks.spawn(publish_loop(client.clone(), publisher, rx, overflowed, node.clone()));
    node.tasks.spawn(receive_loop(client, pubsub, node.clone()));
    tracing::info!(node = %node.node_id, "broker connected");
    Ok(broker)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>{}", &url[..scheme], &url[at..]),
        _ => url.to_string(),
    }
}

/// The next wait after `backoff`: doubled, capped, with up to a quarter of jitter so nodes
/// that lost Redis together do not retry in step.
fn next_backoff(backoff: Duration) -> Duration {
    let doubled = (backoff * 2).min(MAX_BACKOFF);
    let jitter = rand::Rng::random_range(&mut rand::rng(), 0..=doubled.as_millis() as u64 / 4);
    doubled - Duration::from_millis(jitter)
}

/// Publishes queued messages in order. A failed publish is retried (reconnecting, with
/// backoff) until it succeeds or the relay shuts down.
async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    mut rx: mpsc::Receiver<BrokerMessage>,
    overflowed: Arc<AtomicBool>,
    node: Arc<Node>,
) {
    loop {
        // Messages were dropped and the queue has room again: tell the other nodes first.
        let message = if rx.is_empty() && overflowed.swap(false, Ordering::SeqCst) {
            tracing::warn!("broker queue overflowed; asking the other nodes to resync");
            BrokerMessage::Resync { node: node.node_id.clone() }
        } else {
            let message = tokio::select! {
                _ = node.shutdown.cancelled() => return,
                m = rx.recv() => m,
            };
            let Some(message) = message else { return };
            message
        };
        let text = message.to_json();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result: redis::RedisResult<()> =
                redis::cmd("PUBLISH").arg(CHANNEL).arg(&text).query_async(&mut conn).await;
            let Err(e) = result else { break };
            node.metrics.broker_publish_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker publish failed; retrying");
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = next_backoff(backoff);
            if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                match client.get_multiplexed_async_connection().await {
                    Ok(c) => conn = c,
                    Err(e) => tracing::debug!(error = %e, "broker reconnect failed"),
                }
            }
        }
    }
}

async fn receive_loop(client: redis::Client, first: redis::aio::PubSub, node: Arc<Node>) {
    let mut pubsub = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(mut ps) = pubsub.take() {
            let mut stream = ps.on_message();
            loop {
                let message = tokio::select! {
                    _ = node.shutdown.cancelled() => return,
                    m = stream.next() => m,
                };
                let Some(message) = message else { break };
                match message.get_payload::<String>() {
                    Ok(text) => on_text(&node, &text),
                    Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
                }
            }
            tracing::warn!("broker subscription lost; reconnecting");
        }
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let resubscribed = match client.get_async_pubsub().await {
            Ok(mut ps) => ps.subscribe(CHANNEL).await.map(|()| ps).ok(),
            Err(_) => None,
        };
        match resubscribed {
            Some(ps) => {
                pubsub = Some(ps);
                backoff = FIRST_BACKOFF;
            }
            None => backoff = next_backoff(backoff),
        }
    }
}

/// Parses a message and hands it on, unless this node sent it.
fn on_text(node: &Node, text: &str) {
    let message = match BrokerMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "invalid broker message"),
    };
    if message.node() == node.node_id {
        return;
    }
    (node.on_message)(message);
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(super::redact("redis://:hunter2@host:6379/0"), "redis://<redacted>@host:6379/0");
        assert_eq!(super::redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
