//! Multi-node fan-out through Redis pub/sub (SPEC sections 7 and 11), enabled by
//! `broker = "redis://..."`.
//!
//! Channels:
//! - `fd:t:<user>:<topic>`, one per topic: a node subscribes while it has viewers of it
//!   ([`Broker::watch`] / [`Broker::unwatch`], counted per viewer and topic), so an event
//!   reaches only the nodes that show it.
//! - `fd:ctl`: what every node must hear (an agent connected elsewhere, a HUD made private, a
//!   key revoked, a node that lost messages).
//! - `fd:node:<node id>`: messages for an agent connected to that node. A node learns where
//!   agents are from the `agent-connected` messages; one it has not heard of is reached
//!   through `fd:ctl`.
//!
//! Every event carries its position (a transcript event its task and seq, a change of latest
//! state the user's change number), so a viewer whose snapshot already held it drops it,
//! whichever node published it (see [`crate::hub`]). Nothing is published before it is stored,
//! and a viewer's channel is subscribed before its snapshot is read, so nothing falls between.
//!
//! Broker loss: when the subscription connection ends, the node closes its viewers with 1012
//! (they may miss events from now on); it reconnects with backoff, subscribes every channel
//! it still needs, then closes every socket (viewers and agents) with 1012 once more, so
//! whatever was published meanwhile is read back from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_protocol::broker::BrokerMessage;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// The channel every node subscribes to.
pub const CONTROL_CHANNEL: &str = "fd:ctl";
/// Longest wait between reconnect or publish attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First wait after a failure; doubles (with jitter) up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The channel of one topic of one user (`topic` as a viewer names it).
pub fn topic_channel(user: &str, topic: &str) -> String {
    format!("fd:t:{user}:{topic}")
}

/// The channel of one node (messages for agents connected to it).
pub fn node_channel(node: &str) -> String {
    format!("fd:node:{node}")
}

/// The sending side, owned by the hub.
///
/// Its queue is bounded (`broker_queue_len` messages). Full rule: [`Broker::send`] never
/// waits (the hub calls it under its lock), so a message that does not fit is not queued; the
/// broker counts it and, once the queue has room again, publishes `resync`, on which every
/// other node closes its viewers and agents with 1012. They reconnect and read fresh state
/// from the shared store (everything is stored before it is published), so nothing is lost
/// for good. A publish that fails is retried with backoff, in order, never dropped; a queue
/// that fills while Redis is away is what triggers the rule above.
pub struct Broker {
    node: String,
    tx: mpsc::Sender<BrokerMessage>,
    overflowed: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    subscriptions: Arc<Subscriptions>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("node", &self.node).finish_non_exhaustive()
    }
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

    /// One more viewer of `topic` of `user` on this node: returns once the node receives what
    /// other nodes publish on it (the channel is subscribed), so a snapshot read after this
    /// misses nothing. While Redis is away it returns at once: the viewer is closed when the
    /// broker is back (see the module header).
    pub async fn watch(&self, user: &str, topic: &str) {
        self.subscriptions.watch(topic_channel(user, topic)).await
    }

    /// One viewer of `topic` of `user` fewer; the last one unsubscribes the channel.
    pub async fn unwatch(&self, user: &str, topic: &str) {
        self.subscriptions.unwatch(topic_channel(user, topic)).await
    }
}

/// The topic channels this node needs, and the subscription connection's sending half.
struct Subscriptions {
    /// A tokio Mutex: held across the SUBSCRIBE round trip, so a second viewer of a channel
    /// being subscribed waits for it rather than reading its snapshot too early.
    state: tokio::sync::Mutex<SubscriptionState>,
}

struct SubscriptionState {
    /// Channel -> viewers of it on this node.
    counts: HashMap<String, usize>,
    /// The live subscription connection; `None` while Redis is away.
    sink: Option<PubSubSink>,
}

impl Subscriptions {
    async fn watch(&self, channel: String) {
        let mut state = self.state.lock().await;
        let count = state.counts.entry(channel.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return;
        }
        if let Some(sink) = state.sink.as_mut() {
            // A failure here is a lost connection: the receive loop sees it, resubscribes
            // everything counted and closes the viewers.
            if let Err(e) = sink.subscribe(&channel).await {
                tracing::warn!(error = %e, %channel, "broker subscribe failed");
            }
        }
    }

    async fn unwatch(&self, channel: String) {
        let mut state = self.state.lock().await;
        let Some(count) = state.counts.get_mut(&channel) else { return };
        *count -= 1;
        if *count > 0 {
            return;
        }
        state.counts.remove(&channel);
        if let Some(sink) = state.sink.as_mut() {
            if let Err(e) = sink.unsubscribe(&channel).await {
                tracing::debug!(error = %e, %channel, "broker unsubscribe failed");
            }
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
/// another node sent; `on_lost` and `on_restored` are called when the subscription connection
/// ends and when it is back with every channel subscribed again.
pub struct Node {
    pub node_id: String,
    /// Bound of the sending queue, in messages.
    pub queue_len: usize,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Where the publish and receive loops are spawned (so shutdown waits for them).
    pub tasks: TaskTracker,
    pub on_message: Box<dyn Fn(BrokerMessage) + Send + Sync>,
    pub on_lost: Box<dyn Fn() + Send + Sync>,
    pub on_restored: Box<dyn Fn() + Send + Sync>,
}

/// Where agents connected to other nodes are, as their `agent-connected` messages said:
/// (user, agent id) -> node.
type AgentNodes = Arc<Mutex<HashMap<(String, String), String>>>;

/// Connects to Redis, subscribes the control and node channels (before returning, so nothing
/// published after start is missed) and starts the publish and receive loops. The caller
/// installs the returned sending side in the hub.
pub async fn start(url: &str, node: Node) -> Result<Broker, BrokerError> {
    let error = |source| BrokerError { url: redact(url), source };
    let client = redis::Client::open(url).map_err(error)?;
    let publisher = client.get_multiplexed_async_connection().await.map_err(error)?;
    let (sink, stream) = subscribe_fixed(&client, &node.node_id).await.map_err(error)?;
    let (tx, rx) = mpsc::channel(node.queue_len.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    let subscriptions = Arc::new(Subscriptions {
        state: tokio::sync::Mutex::new(SubscriptionState { counts: HashMap::new(), sink: Some(sink) }),
    });
    let broker = Broker {
        node: node.node_id.clone(),
        tx,
        overflowed: overflowed.clone(),
        metrics: node.metrics.clone(),
        subscriptions: subscriptions.clone(),
    };
    let node = Arc::new(node);
    let agents: AgentNodes = Arc::default();
    node.tasks.spawn(publish_loop(client.clone(), publisher, rx, overflowed, node.clone(), agents.clone()));
    node.tasks.spawn(receive_loop(client, stream, subscriptions, node.clone(), agents));
    tracing::info!(node = %node.node_id, "broker connected");
    Ok(broker)
}

/// Publishes one message from outside a node (the admin CLI), on the channel it belongs to.
pub async fn publish_once(url: &str, message: &BrokerMessage) -> Result<(), BrokerError> {
    let error = |source| BrokerError { url: redact(url), source };
    let client = redis::Client::open(url).map_err(error)?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(error)?;
    let channel = channel_of(message, &AgentNodes::default());
    redis::cmd("PUBLISH").arg(channel).arg(message.to_json()).query_async::<()>(&mut conn).await.map_err(error)
}

/// A new subscription connection with the channels every node always has.
async fn subscribe_fixed(
    client: &redis::Client,
    node_id: &str,
) -> redis::RedisResult<(PubSubSink, redis::aio::PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(&[CONTROL_CHANNEL, node_channel(node_id).as_str()]).await?;
    Ok((sink, stream))
}

/// The channel a message goes on.
fn channel_of(message: &BrokerMessage, agents: &AgentNodes) -> String {
    match message {
        BrokerMessage::Event { user, topic, .. } => topic_channel(user, topic),
        BrokerMessage::ToAgent { user, agent_id, .. } => {
            let agents = agents.lock().unwrap_or_else(|e| e.into_inner());
            match agents.get(&(user.clone(), agent_id.clone())) {
                Some(node) => node_channel(node),
                None => CONTROL_CHANNEL.to_string(),
            }
        }
        BrokerMessage::AgentConnected { .. }
        | BrokerMessage::HudPrivate { .. }
        | BrokerMessage::KeyRevoked { .. }
        | BrokerMessage::Resync { .. } => CONTROL_CHANNEL.to_string(),
    }
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
    agents: AgentNodes,
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
        if let BrokerMessage::AgentConnected { user, agent_id, .. } = &message {
            // Here now: whatever another node said of it is out of date.
            agents.lock().unwrap_or_else(|e| e.into_inner()).remove(&(user.clone(), agent_id.clone()));
        }
        let channel = channel_of(&message, &agents);
        let text = message.to_json();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result: redis::RedisResult<()> =
                redis::cmd("PUBLISH").arg(&channel).arg(&text).query_async(&mut conn).await;
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

/// Hands on what arrives; when the connection ends, tells the node, reconnects with backoff,
/// subscribes the fixed channels and every watched one again, and tells the node it is back.
async fn receive_loop(
    client: redis::Client,
    first: redis::aio::PubSubStream,
    subscriptions: Arc<Subscriptions>,
    node: Arc<Node>,
    agents: AgentNodes,
) {
    let mut stream = first;
    loop {
        loop {
            let message = tokio::select! {
                _ = node.shutdown.cancelled() => return,
                m = stream.next() => m,
            };
            let Some(message) = message else { break };
            match message.get_payload::<String>() {
                Ok(text) => on_text(&node, &agents, &text),
                Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
            }
        }
        tracing::warn!("broker subscription lost; closing viewers and reconnecting");
        subscriptions.state.lock().await.sink = None;
        (node.on_lost)();
        let mut backoff = FIRST_BACKOFF;
        stream = loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            // Under the lock: a viewer that watches meanwhile is counted before the channels
            // are subscribed again, or waits for them.
            let mut state = subscriptions.state.lock().await;
            let resubscribed = async {
                let (mut sink, stream) = subscribe_fixed(&client, &node.node_id).await?;
                let channels: Vec<&String> = state.counts.keys().collect();
                if !channels.is_empty() {
                    sink.subscribe(&channels).await?;
                }
                Ok::<_, redis::RedisError>((sink, stream))
            }
            .await;
            match resubscribed {
                Ok((sink, stream)) => {
                    state.sink = Some(sink);
                    break stream;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "broker reconnect failed");
                    backoff = next_backoff(backoff);
                }
            }
        };
        tracing::info!("broker subscription back; closing sockets so they read what they missed");
        (node.on_restored)();
    }
}

/// Parses a message and hands it on, unless this node sent it.
fn on_text(node: &Node, agents: &AgentNodes, text: &str) {
    let message = match BrokerMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "invalid broker message"),
    };
    if message.node() == node.node_id {
        return;
    }
    if let BrokerMessage::AgentConnected { node: there, user, agent_id } = &message {
        agents.lock().unwrap_or_else(|e| e.into_inner()).insert((user.clone(), agent_id.clone()), there.clone());
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
