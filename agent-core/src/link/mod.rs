//! The relay link: one WebSocket from this agent to a relay (`/api/ws`), kept open for good.
//!
//! `RelayLink::start` returns a [`LinkHandle`]; dropping it (or [`LinkHandle::shutdown`]) closes
//! the socket with 1001 and stops the loop. Receive what the relay asks (run a task, cancel one)
//! on the [`Inbound`] channel passed in; watch the link's [`LinkState`] with `handle.state()`.
//!
//! Two paths lead out, and neither loses anything:
//! - Tasks, their events and alerts come from the store's **outbox** (see `store::outbox`): the
//!   link keeps a cursor, reads pages after it when the store says there are new rows, and sends
//!   them in order. A slow relay or a burst only delays them. After each `welcome` the link
//!   first resends exactly what the relay lacks (from `welcome.lastSeqs`), then goes on from the
//!   cursor it took before that resend, skipping events the resend already covered.
//! - The agent's own state (busy or idle) and repo statuses go through a small bounded queue
//!   ([`OutboundSender`]): they are latest-state values, so when the queue is full the sender
//!   drops the item and marks the queue *overflowed*, and the link sends the whole current state
//!   (agent status, every repo) from the store instead.
//!
//! Everything sent is redacted: events are stored in their outgoing form by the recorder; tasks
//! and alerts are redacted here, on the blocking pool, with their repo's redactor.

mod backoff;
mod session;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flightdeck_protocol::{AgentState, Executor, RepoStatus, TaskPayload};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;

use crate::redact::RepoRedactors;
use crate::store::Store;

/// How many live items ([`Outbound`]) wait for the link at most; past that they are dropped and
/// the link resends the whole current state (see the module docs).
pub const OUTBOUND_CAPACITY: usize = 256;

/// How to reach the relay and who we are.
#[derive(Clone)]
pub struct LinkConfig {
    /// `ws://`, `wss://`, `http://` or `https://` base URL of the relay; `/api/ws` is appended.
    pub relay_url: String,
    /// An `agent` key of the relay.
    pub key: String,
    pub agent_id: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub metadata: Map<String, Value>,
    /// First reconnect delay (1 s); it doubles up to `backoff_cap` (30 s).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: Duration,
    /// How long to wait for `welcome` after connecting.
    pub welcome_timeout: Duration,
    /// Redacts tasks and alerts before they are sent (events are stored redacted). `None`: the
    /// built-in kinds only.
    pub redactors: Option<Arc<RepoRedactors>>,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("relay_url", &self.relay_url)
            .field("key", &"[redacted]")
            .field("agent_id", &self.agent_id)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    pub fn new(relay_url: impl Into<String>, key: impl Into<String>, agent_id: impl Into<String>) -> LinkConfig {
        LinkConfig {
            relay_url: relay_url.into(),
            key: key.into(),
            agent_id: agent_id.into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: vec!["git".into(), "claude".into(), "shell".into()],
            metadata: Map::new(),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            welcome_timeout: Duration::from_secs(15),
            redactors: None,
        }
    }

    /// The agent endpoint: `<relay>/api/ws` with a ws or wss scheme.
    pub fn ws_endpoint(&self) -> String {
        let base = self.relay_url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        };
        if base.ends_with("/api/ws") {
            base
        } else {
            format!("{base}/api/ws")
        }
    }
}

/// The agent's own state, published through the bounded live queue. Tasks, events and alerts are
/// not here: they go through the store's outbox.
#[derive(Debug, Clone)]
pub enum Outbound {
    AgentStatus(AgentState),
    RepoStatus(RepoStatus),
    /// A repo left the watched set.
    RepoRemoved(String),
    /// The whole watched set.
    FullRepos(Vec<RepoStatus>),
    /// Something the relay asked could not be done (a decision for a request no longer pending).
    Error {
        message: String,
        task_id: Option<String>,
        request_id: Option<String>,
    },
}

/// The sending side of the live queue: never blocks, never grows past [`OUTBOUND_CAPACITY`].
#[derive(Clone)]
pub struct OutboundSender {
    tx: mpsc::Sender<Outbound>,
    overflowed: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl OutboundSender {
    /// Queues an item; when the queue is full the item is dropped and the link is told to send
    /// the whole current state instead (nothing the relay shows is lost, only coalesced).
    pub fn send(&self, item: Outbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item) {
            self.overflowed.store(true, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }
}

/// What the relay asks of the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    RunTask {
        task_id: String,
        executor: Executor,
        payload: TaskPayload,
        /// The title the relay recorded (kept, not derived again).
        title: Option<String>,
        /// The conversation and the turn it answers, for a follow-up (SPEC 8).
        conversation_id: Option<String>,
        parent_task_id: Option<String>,
    },
    /// The owner decided a pending permission request.
    Decide {
        task_id: String,
        request_id: String,
        behavior: flightdeck_protocol::event::Behavior,
        updated_input: Option<serde_json::Value>,
        message: Option<String>,
        /// `None`: the owner in the HUD or over REST; `push`: from a notification (SPEC 13).
        decided_by: Option<flightdeck_protocol::event::DecidedBy>,
    },
    Cancel {
        task_id: String,
    },
    /// The relay asked for a fresh `agent-status` and full `git-status`; the link answers it
    /// itself from the store, this only tells the caller it happened.
    StatusRequest,
}

/// Why the link stopped for good. [`StopCode::code`] is stable (front ends match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCode {
    /// The relay revoked this agent's key (close code 4401).
    KeyRevoked,
    /// Another agent connected with the same agent id (close code 4000).
    Replaced,
    /// The relay refused the key (HTTP 401/403, or close code 1008).
    KeyRefused,
    /// The relay URL or the key cannot be used at all.
    BadConfig,
}

impl StopCode {
    pub fn code(self) -> &'static str {
        match self {
            StopCode::KeyRevoked => "link_key_revoked",
            StopCode::Replaced => "link_replaced",
            StopCode::KeyRefused => "link_key_refused",
            StopCode::BadConfig => "link_bad_config",
        }
    }
}

/// The state of the link, for status lines and tray icons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected {
        since: DateTime<Utc>,
    },
    /// Waiting before the next attempt; `last_error` says why the previous one ended.
    Disconnected {
        last_error: String,
        retry_in: Duration,
    },
    /// The relay refused us for good (bad or revoked key, replaced by another agent with the
    /// same id); the link stopped and will not retry.
    Stopped {
        code: StopCode,
        reason: String,
    },
}

impl LinkState {
    pub fn is_connected(&self) -> bool {
        matches!(self, LinkState::Connected { .. })
    }
}

/// A running link; dropping it stops the link.
pub struct LinkHandle {
    outbound: OutboundSender,
    state: watch::Receiver<LinkState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LinkHandle {
    pub fn outbound(&self) -> OutboundSender {
        self.outbound.clone()
    }

    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Closes the socket (1001) and waits for the loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct RelayLink;

impl RelayLink {
    /// Starts the link on the current tokio runtime.
    pub fn start(config: LinkConfig, store: Store, inbound: mpsc::Sender<Inbound>) -> LinkHandle {
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let outbound = OutboundSender { tx, overflowed: Arc::default(), wake: Arc::default() };
        let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
        let shutdown = CancellationToken::new();
        let worker = session::Worker::new(config, store, inbound, rx, outbound.clone(), state_tx, shutdown.clone());
        let task = tokio::spawn(worker.run());
        LinkHandle { outbound, state: state_rx, shutdown, task: Some(task) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_live_queue_drops_and_asks_for_the_whole_state() {
        let (tx, mut rx) = mpsc::channel(2);
        let sender = OutboundSender { tx, overflowed: Arc::default(), wake: Arc::default() };
        for _ in 0..2 {
            sender.send(Outbound::AgentStatus(AgentState::Busy));
        }
        assert!(!sender.overflowed.load(Ordering::SeqCst));
        sender.send(Outbound::AgentStatus(AgentState::Idle));
        assert!(sender.overflowed.load(Ordering::SeqCst), "the overflow is remembered");
        // The queue never grew past its bound: the third item was dropped, not queued.
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
