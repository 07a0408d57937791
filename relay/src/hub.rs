//! Fan-out and the registries of live sockets.
//!
//! [`Hub`] maps each topic to its subscribers. A publish serializes the payload once into a
//! [`Frame`] (reference-counted bytes) and hands a clone to every subscriber's bounded queue
//! with `try_send`: a full queue closes that viewer with 4001 and never delays the others.
//!
//! Ordering comes from the data, not from a lock. Every payload carries a [`Position`]: a
//! transcript event its task and seq; a change of latest state (an agent, a repo, a task, an
//! alert, a HUD, a dashboard entry) the user's change number, counted after the change was
//! stored (`Store::next_change`). A viewer subscribes in three steps:
//! [`Hub::subscribe_pending`] registers it, holding what is published for it; the caller reads
//! the snapshot from the store (first the user's change number, then the rows); then
//! [`Hub::activate`] queues the snapshot and the held frames that its [`Cover`] does not hold.
//!
//! Why nothing is lost: a change is stored, then counted, then published. If it was counted
//! before the snapshot read the change number, the snapshot's rows (read after) show it; if
//! after, it is published after the viewer registered, so the viewer gets it. Why nothing is
//! doubled: a change numbered at or below the snapshot's number is dropped, and so is a
//! transcript event at or below the snapshot's last seq. Two publishers racing on one entity
//! may publish out of order: a change older than one the viewer got is dropped too (the newer
//! one's content was read after it was counted), while transcript events are all delivered
//! (each seq is published once; a viewer may get 6 before 5, never miss 5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use flightdeck_protocol::broker::{BrokerMessage, BrokerPosition};
use flightdeck_protocol::realtime::encode_event;
use flightdeck_protocol::Topic;
use serde::Serialize;

use crate::broker::Broker;
use crate::catch_up::{CatchUp, Target};
use crate::metrics::Metrics;
pub use crate::socket::{Closer, Frame};
use crate::socket::{QueueError, QueueTx};

/// A topic of one user: `tasks` of alice and `tasks` of bob are different topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    /// The user whose data the topic carries (for `hud:` topics, the user in the name).
    pub user: String,
    pub topic: Topic,
}

impl TopicKey {
    pub fn new(user: &str, topic: Topic) -> TopicKey {
        TopicKey { user: user.to_string(), topic }
    }
}

/// Where a published payload stands in the data it comes from (see the module header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// An event of a task's transcript: `transcript/<task id>` and its seq.
    Seq { stream: String, seq: u64 },
    /// A change of latest state: what it shows (a stream named within its topic, such as
    /// `repo/web`) and the user's change number, counted after the change was stored (see
    /// [`crate::store::Store::next_change`]).
    Change { stream: String, change: u64 },
}

impl Position {
    /// An event of a task's transcript.
    pub fn transcript(task_id: &str, seq: u64) -> Position {
        Position::Seq { stream: transcript_stream(task_id), seq }
    }

    /// A change of `stream` with number `change`.
    pub fn change(stream: impl Into<String>, change: u64) -> Position {
        Position::Change { stream: stream.into(), change }
    }

    /// As other nodes get it.
    pub fn to_broker(&self) -> BrokerPosition {
        match self {
            Position::Seq { stream, seq } => BrokerPosition::Seq { stream: stream.clone(), seq: *seq },
            Position::Change { stream, change } => BrokerPosition::Change { stream: stream.clone(), change: *change },
        }
    }

    pub fn from_broker(position: BrokerPosition) -> Position {
        match position {
            BrokerPosition::Seq { stream, seq } => Position::Seq { stream, seq },
            BrokerPosition::Change { stream, change } => Position::Change { stream, change },
        }
    }
}

/// The stream name of a task's transcript is this and the task id.
pub const TRANSCRIPT_PREFIX: &str = "transcript/";

fn transcript_stream(task_id: &str) -> String {
    format!("{TRANSCRIPT_PREFIX}{task_id}")
}

/// What a snapshot already holds: every change numbered up to `changes` (the user's change
/// number read before the snapshot), and per transcript its last seq.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cover {
    changes: u64,
    seqs: HashMap<String, u64>,
}

impl Cover {
    /// A snapshot read after the user's change number was `changes`.
    pub fn changes(changes: u64) -> Cover {
        Cover { changes, seqs: HashMap::new() }
    }

    /// A snapshot holding a task's transcript up to `last_seq`.
    pub fn transcript(task_id: &str, last_seq: u64) -> Cover {
        Cover::default().with_transcript(task_id, last_seq)
    }

    /// The same, holding a task's transcript up to `last_seq` too.
    pub fn with_transcript(mut self, task_id: &str, last_seq: u64) -> Cover {
        self.seqs.insert(transcript_stream(task_id), last_seq);
        self
    }
}

/// One viewer's subscription to one topic.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub viewer_id: u64,
    /// The viewer's queue, bounded in frames and bytes (see [`crate::socket::queue`]).
    pub tx: QueueTx,
    pub closer: Arc<Closer>,
    /// The owner or a viewer of the topic's user: still allowed when a HUD turns private.
    pub privileged: bool,
    /// Per transcript, the last seq its snapshot holds.
    snapshot_seqs: HashMap<String, u64>,
    /// The change number its snapshot was read after: changes up to it are in the snapshot.
    changes: u64,
    /// Per stream of changes, the highest change number this viewer got.
    seen_changes: HashMap<String, u64>,
    /// While the snapshot is being read: what was published meanwhile, at most `pending_limit`.
    pending: Option<Vec<(Frame, Option<Position>)>>,
    pending_limit: usize,
    /// For a transcript topic: catch up from the store when the queue is full, instead of
    /// closing (see [`crate::catch_up`]).
    catch_up: Option<CatchUp>,
}

impl Subscriber {
    /// A subscriber whose frames go to `tx`; `pending_limit` bounds what is held for it while
    /// its snapshot is read (over it, it is closed as too slow, like a full queue).
    pub fn new(viewer_id: u64, tx: QueueTx, closer: Arc<Closer>, privileged: bool, pending_limit: usize) -> Subscriber {
        Subscriber {
            viewer_id,
            tx,
            closer,
            privileged,
            snapshot_seqs: HashMap::new(),
            changes: 0,
            seen_changes: HashMap::new(),
            pending: None,
            pending_limit,
            catch_up: None,
        }
    }

    /// The same, catching up from the store (see [`crate::catch_up`]) when its queue is full.
    pub fn catching_up(self, catch_up: CatchUp) -> Subscriber {
        Subscriber { catch_up: Some(catch_up), ..self }
    }

    fn target(&self, metrics: &Arc<Metrics>) -> Target {
        Target { tx: self.tx.clone(), closer: self.closer.clone(), metrics: metrics.clone() }
    }

    fn too_slow(&self, metrics: &Metrics) -> bool {
        metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
        self.closer.close(flightdeck_protocol::close::TOO_SLOW);
        false
    }

    /// Queues a frame; false when this subscriber is gone or was closed for being too slow.
    pub fn offer(&self, frame: Frame, metrics: &Metrics) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(QueueError::Full) => {
                metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
                self.closer.close(flightdeck_protocol::close::TOO_SLOW);
                false
            }
            Err(QueueError::Closed) => false,
        }
    }

    /// Takes a published frame: held while the snapshot is read, then dropped when this viewer
    /// already has it (see [`Subscriber::holds`]), queued otherwise. False when the subscriber
    /// must go.
    fn accept(&mut self, frame: Frame, position: Option<Position>, metrics: &Arc<Metrics>) -> bool {
        if let Some(pending) = &mut self.pending {
            if pending.len() >= self.pending_limit {
                // A transcript's events need not be held: the viewer catches up from the store
                // after its snapshot.
                if let (Some(catch_up), Some(Position::Seq { stream, seq })) = (&self.catch_up, &position) {
                    catch_up.behind_before_snapshot(stream, *seq);
                    return true;
                }
                return self.too_slow(metrics);
            }
            pending.push((frame, position));
            return true;
        }
        if let Some(p) = &position {
            if self.holds(p) {
                return true;
            }
            if let Position::Change { stream, change } = p {
                self.seen_changes.insert(stream.clone(), *change);
            }
        }
        if let Some(catch_up) = &self.catch_up {
            return catch_up.accept(&self.tx, frame, position.as_ref(), || self.target(metrics))
                || self.too_slow(metrics);
        }
        self.offer(frame, metrics)
    }

    /// Whether this viewer already has what `p` carries: a transcript event its snapshot held
    /// (each seq is stored, so published, once: later ones all pass, even if two connections
    /// of one task publish out of order); a change its snapshot held or older than one it got
    /// (the newer one was read later, see `crate::domain::publish`).
    fn holds(&self, p: &Position) -> bool {
        match p {
            Position::Seq { stream, seq } => self.snapshot_seqs.get(stream).is_some_and(|last| seq <= last),
            Position::Change { stream, change } => {
                *change <= self.changes || self.seen_changes.get(stream).is_some_and(|seen| change <= seen)
            }
        }
    }
}

pub struct Hub {
    // A std Mutex, not a tokio one: nothing awaits while holding it.
    topics: Mutex<HashMap<TopicKey, Vec<Subscriber>>>,
    metrics: Arc<Metrics>,
    /// Set when other nodes share the fan-out (see [`crate::broker`]).
    broker: OnceLock<Broker>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub { topics: Mutex::new(HashMap::new()), metrics, broker: OnceLock::new() }
    }

    pub fn set_broker(&self, broker: Broker) {
        let _ = self.broker.set(broker);
    }

    pub fn broker(&self) -> Option<&Broker> {
        self.broker.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicKey, Vec<Subscriber>>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or replaces) a viewer's subscription to a topic, holding what is published
    /// for it until [`Hub::activate`] gives it its snapshot.
    pub fn subscribe_pending(&self, key: TopicKey, mut sub: Subscriber) {
        sub.pending = Some(Vec::new());
        sub.snapshot_seqs.clear();
        sub.seen_changes.clear();
        sub.changes = 0;
        let mut topics = self.lock();
        let subs = topics.entry(key).or_default();
        subs.retain(|s| s.viewer_id != sub.viewer_id);
        subs.push(sub);
    }

    /// Queues the snapshot of a pending subscription, then what was published since it was
    /// registered and is not in `cover`; from then on the viewer gets events as they come.
    /// False when the subscription is gone (closed, replaced or unsubscribed meanwhile) or the
    /// viewer could not take it all.
    pub fn activate(&self, key: &TopicKey, viewer_id: u64, snapshot: Frame, cover: Cover) -> bool {
        let mut topics = self.lock();
        let Some(subs) = topics.get_mut(key) else { return false };
        let Some(i) = subs.iter().position(|s| s.viewer_id == viewer_id && s.pending.is_some()) else { return false };
        let sub = &mut subs[i];
        let held = sub.pending.take().unwrap_or_default();
        sub.snapshot_seqs = cover.seqs;
        sub.changes = cover.changes;
        let started = |sub: &Subscriber| match &sub.catch_up {
            Some(catch_up) => {
                catch_up.start_from(&sub.snapshot_seqs, || sub.target(&self.metrics)) || sub.too_slow(&self.metrics)
            }
            None => true,
        };
        let ok = sub.offer(snapshot, &self.metrics)
            && started(sub)
            && held.into_iter().all(|(frame, position)| sub.accept(frame, position, &self.metrics));
        if !ok {
            subs.remove(i);
            if subs.is_empty() {
                topics.remove(key);
            }
        }
        ok
    }

    pub fn unsubscribe(&self, key: &TopicKey, viewer_id: u64) {
        let mut topics = self.lock();
        if let Some(subs) = topics.get_mut(key) {
            subs.retain(|s| s.viewer_id != viewer_id);
            if subs.is_empty() {
                topics.remove(key);
            }
        }
    }

    /// Whether publishing to `key` can reach anyone (always, with other nodes behind a broker).
    pub fn has_subscribers(&self, key: &TopicKey) -> bool {
        self.broker.get().is_some() || self.lock().contains_key(key)
    }

    /// Serializes `payload` once as an `event` of `key`'s topic and queues it for every
    /// subscriber. Costs nothing when nobody listens.
    pub fn publish<P: Serialize>(&self, key: &TopicKey, payload: &P) {
        self.publish_many(key, std::slice::from_ref(payload));
    }

    /// Publishes several payloads of one topic, in order. Each subscriber gets all of them
    /// queued back to back, so its writer, woken by the first, finds the rest waiting and
    /// sends them in one write instead of racing the publisher frame by frame.
    pub fn publish_many<P: Serialize>(&self, key: &TopicKey, payloads: &[P]) {
        self.publish_at(key, payloads.iter().map(|p| (p, None)));
    }

    /// Like [`Hub::publish_many`], each payload with its position in the data (see the module
    /// header), so that a viewer whose snapshot already held it does not get it twice.
    pub fn publish_at<'a, P: Serialize + 'a>(
        &self,
        key: &TopicKey,
        payloads: impl IntoIterator<Item = (&'a P, Option<Position>)>,
    ) {
        let broker = self.broker.get();
        let mut topics = self.lock();
        if broker.is_none() && !topics.contains_key(key) {
            return;
        }
        let topic = key.topic.to_string();
        let items: Vec<(Frame, Option<Position>)> =
            payloads.into_iter().map(|(p, position)| (Frame::from(encode_event(&topic, p)), position)).collect();
        if items.is_empty() {
            return;
        }
        if let Some(broker) = broker {
            for (frame, position) in &items {
                broker.send(BrokerMessage::Event {
                    node: broker.node().to_string(),
                    user: key.user.clone(),
                    topic: topic.clone(),
                    frame: frame.as_str().to_string(),
                    position: position.as_ref().map(Position::to_broker),
                });
            }
        }
        Self::fan_out(&mut topics, key, items, &self.metrics);
    }

    /// Delivers a frame another node published to this node's subscribers.
    pub fn deliver(&self, key: &TopicKey, frame: Frame, position: Option<Position>) {
        let mut topics = self.lock();
        Self::fan_out(&mut topics, key, vec![(frame, position)], &self.metrics);
    }

    /// Hands `items` to each subscriber of `key`; one that is full is dropped (and closed).
    fn fan_out(
        topics: &mut HashMap<TopicKey, Vec<Subscriber>>,
        key: &TopicKey,
        items: Vec<(Frame, Option<Position>)>,
        metrics: &Arc<Metrics>,
    ) {
        let Some(subs) = topics.get_mut(key) else { return };
        subs.retain_mut(|s| items.iter().all(|(frame, position)| s.accept(frame.clone(), position.clone(), metrics)));
        if subs.is_empty() {
            topics.remove(key);
        }
    }

    /// Closes every viewer that holds a subscription here with `code` (the broker was lost:
    /// they may miss what other nodes publish).
    pub fn close_subscribers(&self, code: u16) {
        for sub in self.lock().values().flatten() {
            sub.closer.close(code);
        }
    }

    /// Removes the subscribers of `key` that are not privileged (a HUD turned private) and
    /// returns them so the caller can tell them why.
    pub fn evict_unprivileged(&self, key: &TopicKey) -> Vec<Subscriber> {
        let mut topics = self.lock();
        let Some(subs) = topics.get_mut(key) else { return Vec::new() };
        let (keep, evicted): (Vec<_>, Vec<_>) = subs.drain(..).partition(|s| s.privileged);
        *subs = keep;
        if subs.is_empty() {
            topics.remove(key);
        }
        evicted
    }
}

/// The sockets of one key: connection id and closer.
type KeySockets = Vec<(u64, Arc<Closer>)>;

/// Live sockets by the key they authenticated with, so a revoked key's sockets can be closed.
#[derive(Default)]
pub struct Connections {
    by_key: Mutex<HashMap<String, KeySockets>>,
    next_id: AtomicU64,
}

impl Connections {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a socket; dropping the guard unregisters it.
    pub fn register(self: &Arc<Self>, key_id: &str, conn_id: u64, closer: Arc<Closer>) -> ConnectionGuard {
        self.by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key_id.to_string())
            .or_default()
            .push((conn_id, closer));
        ConnectionGuard { conns: self.clone(), key_id: key_id.to_string(), conn_id }
    }

    /// Closes every socket of `key_id` with `code`; returns how many there were.
    pub fn close_key(&self, key_id: &str, code: u16) -> usize {
        let map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(key_id) else { return 0 };
        for (_, closer) in list {
            closer.close(code);
        }
        list.len()
    }

    /// Closes every socket (shutdown).
    pub fn close_all(&self, code: u16) {
        let map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        for (_, closer) in map.values().flatten() {
            closer.close(code);
        }
    }
}

pub struct ConnectionGuard {
    conns: Arc<Connections>,
    key_id: String,
    conn_id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut map = self.conns.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&self.key_id) {
            list.retain(|(id, _)| *id != self.conn_id);
            if list.is_empty() {
                map.remove(&self.key_id);
            }
        }
    }
}

/// The outbound side of one connected agent.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    pub conn_id: u64,
    /// The agent's queue: `agent_queue_len` frames; full closes the agent with 4001 (it
    /// reconnects, and `welcome` and its queued tasks bring it back in step).
    pub tx: QueueTx,
    pub closer: Arc<Closer>,
    /// Tasks already sent on this connection: a task is sent once per connection, however
    /// often the agent reports its repos.
    pub sent_tasks: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl AgentHandle {
    pub fn new(conn_id: u64, tx: QueueTx, closer: Arc<Closer>) -> AgentHandle {
        AgentHandle { conn_id, tx, closer, sent_tasks: Arc::default() }
    }
}

/// Connected agents by `(user, agentId)`.
#[derive(Default)]
pub struct AgentRegistry {
    map: Mutex<HashMap<(String, String), AgentHandle>>,
    /// How many times each agent's current connection went away: an offline alert is raised
    /// only if no other disconnect happened during its grace period.
    gone: Mutex<HashMap<(String, String), u64>>,
}

impl AgentRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), AgentHandle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an agent; returns the connection it replaces.
    pub fn insert(&self, user: &str, agent_id: &str, handle: AgentHandle) -> Option<AgentHandle> {
        self.lock().insert((user.to_string(), agent_id.to_string()), handle)
    }

    /// Unregisters `conn_id` if it is still the current connection of that agent.
    pub fn remove_if_current(&self, user: &str, agent_id: &str, conn_id: u64) -> bool {
        let mut map = self.lock();
        let key = (user.to_string(), agent_id.to_string());
        if map.get(&key).is_some_and(|h| h.conn_id == conn_id) {
            map.remove(&key);
            *self.gone.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += 1;
            true
        } else {
            false
        }
    }

    pub fn gone_generation(&self, user: &str, agent_id: &str) -> u64 {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.get(&(user.to_string(), agent_id.to_string())).copied().unwrap_or(0)
    }

    /// Closes this node's socket of an agent (it connected to another node).
    pub fn close_local(&self, user: &str, agent_id: &str, code: u16) {
        if let Some(handle) = self.lock().get(&(user.to_string(), agent_id.to_string())) {
            handle.closer.close(code);
        }
    }

    pub fn is_connected(&self, user: &str, agent_id: &str) -> bool {
        self.lock().contains_key(&(user.to_string(), agent_id.to_string()))
    }

    /// Sends a task to an agent unless this connection already got it. True when the agent
    /// has it (now or before).
    pub fn send_task(&self, user: &str, agent_id: &str, task_id: &str, frame: Frame) -> bool {
        let sent_tasks = {
            let map = self.lock();
            let Some(handle) = map.get(&(user.to_string(), agent_id.to_string())) else { return false };
            handle.sent_tasks.clone()
        };
        if sent_tasks.lock().unwrap_or_else(|e| e.into_inner()).contains(task_id) {
            return true;
        }
        let sent = self.send(user, agent_id, frame);
        if sent {
            sent_tasks.lock().unwrap_or_else(|e| e.into_inner()).insert(task_id.to_string());
        }
        sent
    }

    /// Queues a message for an agent; false when it is not connected. An agent whose queue is
    /// full is closed as too slow (it reconnects and gets its queued tasks again).
    pub fn send(&self, user: &str, agent_id: &str, frame: Frame) -> bool {
        let map = self.lock();
        let Some(handle) = map.get(&(user.to_string(), agent_id.to_string())) else { return false };
        match handle.tx.try_send(frame) {
            Ok(()) => true,
            Err(QueueError::Full) => {
                handle.closer.close(flightdeck_protocol::close::TOO_SLOW);
                false
            }
            Err(QueueError::Closed) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::socket::QueueRx;
    use flightdeck_protocol::realtime::encode_event;

    fn subscriber(id: u64, capacity: usize) -> (Subscriber, QueueRx) {
        let (tx, rx) = crate::socket::queue(capacity, usize::MAX);
        (Subscriber::new(id, tx, Closer::new(), false, 16), rx)
    }

    /// A hub with two viewers of alice's `tasks`: a slow one (queue of `slow_capacity`) and a
    /// fast one (queue of 8).
    #[allow(clippy::type_complexity)]
    fn slow_and_fast(slow_capacity: usize) -> (Arc<Metrics>, Hub, TopicKey, Arc<Closer>, QueueRx, QueueRx) {
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone());
        let key = TopicKey::new("alice", Topic::Tasks);
        let (slow, slow_rx) = subscriber(1, slow_capacity);
        let (fast, fast_rx) = subscriber(2, 8);
        let slow_closer = slow.closer.clone();
        let (mut slow_rx, mut fast_rx) = (slow_rx, fast_rx);
        live(&hub, &key, slow, &mut slow_rx);
        live(&hub, &key, fast, &mut fast_rx);
        (metrics, hub, key, slow_closer, slow_rx, fast_rx)
    }

    /// Subscribes with an empty snapshot, taken off the queue again.
    fn live(hub: &Hub, key: &TopicKey, sub: Subscriber, rx: &mut QueueRx) {
        let id = sub.viewer_id;
        hub.subscribe_pending(key.clone(), sub);
        assert!(hub.activate(key, id, Frame::from("snapshot".to_string()), Cover::default()));
        assert_eq!(rx.try_recv().unwrap().as_str(), "snapshot");
    }

    /// The seqs of the `task:t` events queued for a viewer, after its snapshot (which names its
    /// last seq).
    fn drain_seqs(rx: &mut QueueRx) -> (u64, Vec<u64>) {
        let snapshot: u64 = rx.try_recv().unwrap().as_str().parse().unwrap();
        let mut seqs = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
            seqs.push(value["payload"]["seq"].as_u64().unwrap());
        }
        (snapshot, seqs)
    }

    fn publish_seq(hub: &Hub, key: &TopicKey, seq: u64) {
        hub.publish_at(key, [(&serde_json::json!({ "seq": seq }), Some(Position::transcript("t", seq)))]);
    }

    #[test]
    fn a_pending_viewer_gets_its_snapshot_then_only_what_it_does_not_hold() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let (sub, mut rx) = subscriber(1, 16);
        hub.subscribe_pending(key.clone(), sub);
        for seq in 1..=4 {
            publish_seq(&hub, &key, seq);
        }
        assert!(rx.try_recv().is_err(), "nothing reaches a viewer before its snapshot");
        // The snapshot was read after seq 2 was stored: 3 and 4 follow it, 1 and 2 are in it.
        assert!(hub.activate(&key, 1, Frame::from("2".to_string()), Cover::transcript("t", 2)));
        // Two connections of one task may publish out of order: nothing is dropped for it.
        publish_seq(&hub, &key, 6);
        publish_seq(&hub, &key, 5);
        assert_eq!(drain_seqs(&mut rx), (2, vec![3, 4, 6, 5]));
        // Activating twice, or after unsubscribing, does nothing.
        assert!(!hub.activate(&key, 1, Frame::from("9".to_string()), Cover::default()));
        hub.unsubscribe(&key, 1);
        assert!(!hub.has_subscribers(&key));
    }

    #[test]
    fn a_pending_viewer_that_is_held_too_much_is_closed_as_too_slow() {
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone());
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let (tx, _rx) = crate::socket::queue(64, usize::MAX);
        let closer = Closer::new();
        hub.subscribe_pending(key.clone(), Subscriber::new(1, tx, closer.clone(), false, 3));
        for seq in 1..=4 {
            publish_seq(&hub, &key, seq);
        }
        assert_eq!(closer.code(), flightdeck_protocol::close::TOO_SLOW);
        assert!(!hub.has_subscribers(&key));
        assert!(!hub.activate(&key, 1, Frame::from("0".to_string()), Cover::default()));
    }

    /// Spins until `cond` holds; panics after 30 s.
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn changes_at_or_below_the_snapshot_or_the_last_seen_are_dropped() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let key = TopicKey::new("alice", Topic::Repos);
        let (sub, mut rx) = subscriber(1, 16);
        let publish = |stream: &str, change: u64| {
            let payload = serde_json::json!({ "stream": stream, "change": change });
            hub.publish_at(&key, [(&payload, Some(Position::change(stream, change)))]);
        };
        hub.subscribe_pending(key.clone(), sub);
        publish("repo/web", 4);
        publish("repo/web", 6);
        // The snapshot was read when the user's change number was 5.
        assert!(hub.activate(&key, 1, Frame::from("5".to_string()), Cover::changes(5)));
        publish("repo/app", 5);
        publish("repo/web", 8);
        publish("repo/web", 7);
        publish("repo/app", 7);
        let mut got = Vec::new();
        assert_eq!(rx.try_recv().unwrap().as_str(), "5");
        while let Ok(frame) = rx.try_recv() {
            let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
            got.push((
                value["payload"]["stream"].as_str().unwrap().to_string(),
                value["payload"]["change"].as_u64().unwrap(),
            ));
        }
        let expected = [("repo/web", 6), ("repo/web", 8), ("repo/app", 7)];
        assert_eq!(got, expected.map(|(s, c)| (s.to_string(), c)));
    }

    /// A publisher stores then publishes seqs 1..=N on one thread while viewers subscribe on
    /// another (register, read what is stored, activate): each ends with its snapshot's seqs
    /// followed by every later one, once and in order. Halfway, the publisher waits for half of
    /// the viewers, so that some subscribe mid-stream whatever the scheduling.
    #[test]
    fn viewers_subscribing_during_a_stream_miss_nothing_and_get_nothing_twice() {
        const N: u64 = 3000;
        const VIEWERS: u64 = 300;
        let hub = Arc::new(Hub::new(Arc::new(Metrics::default())));
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let stored = Arc::new(AtomicU64::new(0));
        let registered = Arc::new(AtomicU64::new(0));
        let publisher = {
            let (hub, key, stored, registered) = (hub.clone(), key.clone(), stored.clone(), registered.clone());
            std::thread::spawn(move || {
                for seq in 1..=N {
                    if seq == N / 2 + 1 {
                        wait_for("half of the viewers", || registered.load(Ordering::SeqCst) >= VIEWERS / 2);
                    }
                    stored.store(seq, Ordering::SeqCst);
                    publish_seq(&hub, &key, seq);
                }
            })
        };
        let mut viewers = Vec::new();
        for id in 1..=VIEWERS {
            if id == VIEWERS / 2 {
                wait_for("half of the stream", || stored.load(Ordering::SeqCst) >= N / 2);
            }
            let (sub, rx) = subscriber(id, N as usize + 1);
            let sub = Subscriber { pending_limit: N as usize, ..sub };
            hub.subscribe_pending(key.clone(), sub);
            let last = stored.load(Ordering::SeqCst);
            assert!(hub.activate(&key, id, Frame::from(last.to_string()), Cover::transcript("t", last)));
            registered.fetch_add(1, Ordering::SeqCst);
            viewers.push(rx);
        }
        publisher.join().unwrap();
        let mut mid_stream = 0;
        for mut rx in viewers {
            let (last, seqs) = drain_seqs(&mut rx);
            assert_eq!(seqs, (last + 1..=N).collect::<Vec<_>>(), "snapshot held 1..={last}");
            mid_stream += u64::from(last > 0 && last < N);
        }
        // Not a tautology: some viewer subscribed while the stream ran.
        assert!(mid_stream > 0);
    }

    #[test]
    fn a_full_queue_closes_only_its_viewer_and_frames_are_shared() {
        let (metrics, hub, key, slow_closer, _slow_rx, mut fast_rx) = slow_and_fast(1);
        hub.publish(&key, &serde_json::json!({"n": 1}));
        hub.publish(&key, &serde_json::json!({"n": 2}));
        assert_eq!(slow_closer.code(), flightdeck_protocol::close::TOO_SLOW);
        assert_eq!(metrics.queue_drops.load(Ordering::Relaxed), 1);
        let first = fast_rx.try_recv().unwrap();
        assert_eq!(first.as_str(), r#"{"type":"event","topic":"tasks","payload":{"n":1}}"#);
        assert!(fast_rx.try_recv().unwrap().as_str().contains(r#""n":2"#));
        // The slow viewer is gone from the topic; the fast one stays.
        hub.publish(&key, &serde_json::json!({"n": 3}));
        assert!(fast_rx.try_recv().is_ok());
        assert_eq!(metrics.queue_drops.load(Ordering::Relaxed), 1);
        hub.unsubscribe(&key, 2);
        assert!(!hub.has_subscribers(&key));
    }

    #[test]
    fn a_burst_reaches_each_viewer_in_order_and_overflow_closes_only_the_slow_one() {
        let (metrics, hub, key, slow_closer, _slow_rx, mut fast_rx) = slow_and_fast(2);
        let burst: Vec<serde_json::Value> = (1..=3).map(|n| serde_json::json!({ "n": n })).collect();
        hub.publish_many(&key, &burst);
        assert_eq!(slow_closer.code(), flightdeck_protocol::close::TOO_SLOW);
        assert_eq!(metrics.queue_drops.load(Ordering::Relaxed), 1);
        for n in 1..=3 {
            let frame = fast_rx.try_recv().unwrap();
            assert_eq!(frame.as_str(), format!(r#"{{"type":"event","topic":"tasks","payload":{{"n":{n}}}}}"#));
        }
        assert!(fast_rx.try_recv().is_err());
        // The slow viewer is gone from the topic; nothing is queued for nobody.
        hub.publish_many::<serde_json::Value>(&key, &[]);
        hub.publish_many(&key, &burst[..1]);
        assert!(fast_rx.try_recv().is_ok());
        assert_eq!(metrics.queue_drops.load(Ordering::Relaxed), 1);
    }

    /// A store of one task's transcript for catch-up tests: the seqs stored so far.
    #[derive(Clone, Default)]
    struct Stored(Arc<Mutex<u64>>);

    impl Stored {
        fn reader(&self) -> crate::catch_up::TranscriptReader {
            let stored = self.0.clone();
            Arc::new(move |task: String, after: u64, limit: u32| {
                assert_eq!(task, "t");
                let last = *stored.lock().unwrap();
                let frames = (after + 1..=last.min(after + u64::from(limit)))
                    .map(|seq| (seq, Frame::from(encode_event("task:t", &serde_json::json!({ "seq": seq })))))
                    .collect();
                Box::pin(async move { Ok(frames) })
            })
        }

        /// Stores seq, then publishes it (the relay's order).
        fn append(&self, hub: &Hub, key: &TopicKey, seq: u64) {
            *self.0.lock().unwrap() = seq;
            publish_seq(hub, key, seq);
        }
    }

    /// Waits (yielding to the catch-up task) until the viewer is live again; panics after 30 s.
    async fn live_again(catch_up: &CatchUp) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !catch_up.is_live() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the viewer to be live");
            tokio::task::yield_now().await;
        }
    }

    /// What a viewer got: seqs as numbers, changes as `c<n>`.
    fn received(frame: &Frame) -> String {
        let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        match value["payload"]["seq"].as_u64() {
            Some(seq) => seq.to_string(),
            None => format!("c{}", value["payload"]["change"]),
        }
    }

    /// Issue 26: a viewer of a transcript whose queue is full is not closed; it catches up from
    /// the store and ends with every seq once, in order, with a change published mid-burst in
    /// its place between the seqs around it; then it is live again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_transcript_viewer_catches_up_from_the_store_in_order() {
        const N: u64 = 3000;
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let stored = Stored::default();
        let (tx, mut rx) = crate::socket::queue(16, usize::MAX);
        let closer = Closer::new();
        let catch_up = CatchUp::new(stored.reader(), std::time::Duration::from_secs(30));
        let sub = Subscriber::new(1, tx, closer.clone(), false, 16).catching_up(catch_up.clone());
        hub.subscribe_pending(key.clone(), sub);
        assert!(hub.activate(&key, 1, Frame::from("{}".to_string()), Cover::transcript("t", 0)));
        assert_eq!(rx.try_recv().unwrap().as_str(), "{}");
        let publisher = {
            let (hub, key, stored) = (hub.clone(), key.clone(), stored.clone());
            std::thread::spawn(move || {
                for seq in 1..=N {
                    stored.append(&hub, &key, seq);
                    if seq == N / 2 {
                        let change = serde_json::json!({ "change": 1 });
                        hub.publish_at(&key, [(&change, Some(Position::change("task/t", 1)))]);
                    }
                }
            })
        };
        // The viewer reads slowly at first: its queue of 16 overflows at once.
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while got.len() < N as usize + 1 {
            assert!(tokio::time::Instant::now() < deadline, "got {} frames", got.len());
            match rx.try_recv() {
                Ok(frame) => got.push(received(&frame)),
                Err(_) => tokio::task::yield_now().await,
            }
        }
        publisher.join().unwrap();
        let mut want: Vec<String> = (1..=N).map(|s| s.to_string()).collect();
        want.insert(N as usize / 2, "c1".to_string());
        assert_eq!(got, want);
        assert_eq!(closer.code(), 0, "the viewer was not closed");
        assert!(metrics.catch_ups.load(Ordering::Relaxed) >= 1, "the viewer fell behind at least once");
        // Live again: the next event is queued at once.
        live_again(&catch_up).await;
        stored.append(&hub, &key, N + 1);
        assert_eq!(received(&rx.try_recv().unwrap()), (N + 1).to_string());
    }

    /// A viewer that stays behind (its queue does not drain) is closed with 4001 once the
    /// deadline passes, not before.
    #[tokio::test(start_paused = true)]
    async fn a_viewer_that_stays_behind_is_closed_after_the_deadline() {
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone());
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let stored = Stored::default();
        let (tx, mut rx) = crate::socket::queue(4, usize::MAX);
        let closer = Closer::new();
        let deadline = std::time::Duration::from_secs(30);
        let sub =
            Subscriber::new(1, tx, closer.clone(), false, 16).catching_up(CatchUp::new(stored.reader(), deadline));
        hub.subscribe_pending(key.clone(), sub);
        assert!(hub.activate(&key, 1, Frame::from("{}".to_string()), Cover::transcript("t", 0)));
        for seq in 1..=10 {
            stored.append(&hub, &key, seq);
        }
        tokio::time::sleep(deadline - std::time::Duration::from_millis(10)).await;
        assert_eq!(closer.code(), 0, "not closed before the deadline");
        assert!(hub.has_subscribers(&key));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(closer.code(), flightdeck_protocol::close::TOO_SLOW);
        assert_eq!(metrics.queue_drops.load(Ordering::Relaxed), 1);
        // What it had queued is still there for it: the snapshot, then what fitted.
        let queued: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).skip(1).map(|f| received(&f)).collect();
        assert_eq!(queued, ["1", "2", "3"]);
    }

    /// Events published while a viewer's snapshot is read, past what may be held for it, are
    /// caught up from the store after the snapshot, not a reason to close it.
    #[tokio::test]
    async fn a_viewer_held_too_much_before_its_snapshot_catches_up() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let key = TopicKey::new("alice", Topic::Task("t".into()));
        let stored = Stored::default();
        let (tx, mut rx) = crate::socket::queue(64, usize::MAX);
        let closer = Closer::new();
        let catch_up = CatchUp::new(stored.reader(), std::time::Duration::from_secs(30));
        hub.subscribe_pending(
            key.clone(),
            Subscriber::new(1, tx, closer.clone(), false, 3).catching_up(catch_up.clone()),
        );
        for seq in 1..=10 {
            stored.append(&hub, &key, seq);
        }
        // The snapshot was read when 2 was stored.
        assert!(hub.activate(&key, 1, Frame::from("2".to_string()), Cover::transcript("t", 2)));
        live_again(&catch_up).await;
        assert_eq!(closer.code(), 0);
        assert_eq!(drain_seqs(&mut rx), (2, (3..=10).collect::<Vec<_>>()));
    }

    #[test]
    fn the_first_close_code_wins() {
        let closer = Closer::new();
        closer.close(flightdeck_protocol::close::REPLACED);
        closer.close(flightdeck_protocol::close::NORMAL);
        assert_eq!(closer.code(), flightdeck_protocol::close::REPLACED);
    }
}
