//! The relay link: one WebSocket from this agent to a relay (`/api/ws`), kept open for good.
//!
//! `RelayLink::start` returns a [`LinkHandle`]; dropping it (or [`LinkHandle::shutdown`]) closes
//! the socket with 1001 and stops the loop. The caller feeds [`Outbound`] items (repo status,
//! task updates, events, alerts) into `handle.outbound()` and receives [`Inbound`] commands
//! (run a task, cancel one) on the channel it passed in.
//!
//! Nothing is lost across disconnects: every event is in the agent's SQLite before it is
//! published, so while the socket is down outbound items are dropped, and after each `welcome`
//! the link resends exactly what the relay lacks (from `welcome.lastSeqs` and the store's
//! outbox), then streams live items, skipping any the resend already covered.

mod backoff;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flightdeck_protocol::agent::TaskResultStatus;
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::{
    close, AgentMessage, AgentState, Alert, Executor, RelayMessage, RepoStatus, Task, TaskEvent, TaskPayload,
    TaskStatus,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;

use crate::store::Store;

/// Masks secrets in text about to leave the machine: `(repo slug, text) -> redacted text`.
pub type RedactFn = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

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
    /// Applied to every event and task text before it is sent.
    pub redact: Option<RedactFn>,
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
            redact: None,
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

/// What the agent publishes.
#[derive(Debug, Clone)]
pub enum Outbound {
    AgentStatus(AgentState),
    RepoStatus(RepoStatus),
    /// A repo left the watched set.
    RepoRemoved(String),
    /// The whole watched set.
    FullRepos(Vec<RepoStatus>),
    TaskUpdate(Task),
    TaskEvent(TaskEventRecord),
    Alert(Alert),
}

/// What the relay asks of the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    RunTask {
        task_id: String,
        executor: Executor,
        payload: TaskPayload,
    },
    Cancel {
        task_id: String,
    },
    /// The relay asked for a fresh `agent-status` and full `git-status`; the link answers it
    /// itself from the store, this only tells the caller it happened.
    StatusRequest,
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
    outbound: mpsc::UnboundedSender<Outbound>,
    state: watch::Receiver<LinkState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LinkHandle {
    pub fn outbound(&self) -> mpsc::UnboundedSender<Outbound> {
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
        let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
        let shutdown = CancellationToken::new();
        let worker = Worker {
            config,
            store,
            inbound,
            outbound: outbound_rx,
            state: state_tx,
            shutdown: shutdown.clone(),
            agent_state: AgentState::Online,
            alerts_sent_until: None,
            task_repos: HashMap::new(),
            repo_names: Vec::new(),
        };
        let task = tokio::spawn(worker.run());
        LinkHandle { outbound: outbound_tx, state: state_rx, shutdown, task: Some(task) }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    /// Retry after a delay.
    Retry(String),
    /// Do not retry.
    Fatal(String),
}

struct Worker {
    config: LinkConfig,
    store: Store,
    inbound: mpsc::Sender<Inbound>,
    outbound: mpsc::UnboundedReceiver<Outbound>,
    state: watch::Sender<LinkState>,
    shutdown: CancellationToken,
    agent_state: AgentState,
    /// Alerts created up to this time were sent on a live connection.
    alerts_sent_until: Option<DateTime<Utc>>,
    /// Repo slug of each task seen, so events can be redacted with their repo's secrets
    /// without a database read on the async thread.
    task_repos: HashMap<String, String>,
    /// Slugs of the watched repos, for `agent-status`.
    repo_names: Vec<String>,
}

/// Per-connection memory of what was already sent, so live items after a resend are not doubled.
#[derive(Default)]
struct Sent {
    seqs: HashMap<String, u64>,
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_base, self.config.backoff_cap);
        loop {
            self.state.send_replace(LinkState::Connecting);
            let started = Instant::now();
            let shutdown = self.shutdown.clone();
            let end = tokio::select! {
                end = self.session() => end,
                _ = shutdown.cancelled() => SessionEnd::Shutdown,
            };
            let reason = match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Fatal(reason) => {
                    tracing::error!(%reason, "relay link stopped");
                    self.state.send_replace(LinkState::Stopped { reason });
                    // Keep draining so senders never block or grow memory.
                    loop {
                        tokio::select! {
                            item = self.outbound.recv() => if item.is_none() { return },
                            _ = self.shutdown.cancelled() => return,
                        }
                    }
                }
                SessionEnd::Retry(reason) => reason,
            };
            if started.elapsed() >= self.config.stable_after {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "relay link down");
            self.state.send_replace(LinkState::Disconnected { last_error: reason, retry_in: delay });
            let wake = Instant::now() + delay;
            // While down, drop live items: the store holds them and the next session resends.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    item = self.outbound.recv() => match item {
                        Some(Outbound::AgentStatus(s)) => self.agent_state = s,
                        Some(_) => {}
                        None => return,
                    },
                    _ = self.shutdown.cancelled() => return,
                }
            }
        }
    }

    async fn connect(&self) -> Result<Socket, SessionEnd> {
        let endpoint = self.config.ws_endpoint();
        let mut request = endpoint
            .as_str()
            .into_client_request()
            .map_err(|e| SessionEnd::Fatal(format!("bad relay URL {endpoint}: {e}")))?;
        let bearer = format!("Bearer {}", self.config.key)
            .parse()
            .map_err(|_| SessionEnd::Fatal("the key contains characters not allowed in a header".into()))?;
        request.headers_mut().insert("authorization", bearer);
        // Nagle off: the link already batches its writes, and a lone chunk must not wait for
        // the relay's delayed ACK of the previous one.
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        match tokio::time::timeout(Duration::from_secs(20), connect).await {
            Err(_) => Err(SessionEnd::Retry(format!("connecting to {endpoint} timed out"))),
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let status = response.status();
                if status == 401 || status == 403 {
                    Err(SessionEnd::Fatal(format!("the relay refused the key ({status}); check the agent key")))
                } else {
                    Err(SessionEnd::Retry(format!("the relay answered {status}")))
                }
            }
            Ok(Err(e)) => Err(SessionEnd::Retry(format!("cannot connect to {endpoint}: {e}"))),
        }
    }

    async fn session(&mut self) -> SessionEnd {
        let mut socket = match self.connect().await {
            Ok(s) => s,
            Err(end) => return end,
        };
        let mut sent = Sent::default();
        // Items queued before this point are in the store; the resend below covers them.
        while let Ok(item) = self.outbound.try_recv() {
            if let Outbound::AgentStatus(s) = item {
                self.agent_state = s;
            }
        }
        if let Err(end) = send(&mut socket, &self.agent_status()).await {
            return end;
        }
        let heartbeat = match self.await_welcome(&mut socket).await {
            Ok(welcome) => {
                let heartbeat = welcome.0;
                if let Err(end) = self.resync(&mut socket, &welcome.1, &mut sent).await {
                    return end;
                }
                heartbeat
            }
            Err(end) => return end,
        };
        self.state.send_replace(LinkState::Connected { since: Utc::now() });
        tracing::info!(relay = %self.config.ws_endpoint(), "relay link connected");

        // A relay that says nothing for two heartbeats and a margin is gone.
        let silence_limit = Duration::from_secs(heartbeat.max(1) * 2) + Duration::from_secs(10);
        let mut last_heard = Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1).min(silence_limit / 4));
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = socket.close(Some(CloseFrame { code: CloseCode::from(close::GOING_AWAY), reason: "shutdown".into() })).await;
                    return SessionEnd::Shutdown;
                }
                item = self.outbound.recv() => {
                    let Some(item) = item else { return SessionEnd::Shutdown };
                    // A burst (a streaming Claude turn) goes out as one write: take what is
                    // already queued, bounded so a flood cannot starve the reads.
                    let mut batch = vec![item];
                    while batch.len() < 256 {
                        match self.outbound.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    for item in batch {
                        if let Err(end) = self.send_live(&mut socket, item, &mut sent).await {
                            return end;
                        }
                    }
                    if let Err(end) = flush(&mut socket).await {
                        return end;
                    }
                }
                frame = socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None => return SessionEnd::Retry("the relay closed the connection".into()),
                        Some(Err(e)) => return SessionEnd::Retry(format!("connection error: {e}")),
                        Some(Ok(Message::Text(text))) => {
                            if let Err(end) = self.handle_relay_text(&mut socket, text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => return closed_by_relay(frame),
                        Some(Ok(_)) => {}
                    }
                }
                _ = check.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        return SessionEnd::Retry("the relay stopped answering".into());
                    }
                }
            }
        }
    }

    fn agent_status(&self) -> AgentMessage {
        let repos = &self.repo_names;
        let mut metadata = self.config.metadata.clone();
        metadata.entry("repoCount").or_insert_with(|| Value::from(repos.len()));
        metadata.entry("os").or_insert_with(|| Value::from(std::env::consts::OS));
        AgentMessage::AgentStatus {
            agent_id: self.config.agent_id.clone(),
            status: self.agent_state,
            capabilities: Some(self.config.capabilities.clone()),
            metadata: Some(metadata),
            version: Some(self.config.version.clone()),
        }
    }

    /// Waits for `welcome`, answering pings meanwhile. Returns `(heartbeatSecs, lastSeqs)`.
    async fn await_welcome(
        &mut self,
        socket: &mut Socket,
    ) -> Result<(u64, std::collections::BTreeMap<String, u64>), SessionEnd> {
        let deadline = Instant::now() + self.config.welcome_timeout;
        loop {
            let frame = tokio::select! {
                f = socket.next() => f,
                _ = tokio::time::sleep_until(deadline) => return Err(SessionEnd::Retry("no welcome from the relay".into())),
            };
            match frame {
                None => return Err(SessionEnd::Retry("the relay closed the connection before welcome".into())),
                Some(Err(e)) => return Err(SessionEnd::Retry(format!("connection error: {e}"))),
                Some(Ok(Message::Close(frame))) => return Err(closed_by_relay(frame)),
                Some(Ok(Message::Text(text))) => match RelayMessage::parse(text.as_str()) {
                    Ok(RelayMessage::Welcome { heartbeat_secs, last_seqs, .. }) => {
                        return Ok((heartbeat_secs, last_seqs));
                    }
                    Ok(RelayMessage::Ping { timestamp }) => {
                        send(socket, &AgentMessage::Pong { timestamp: Some(timestamp) }).await?;
                    }
                    Ok(RelayMessage::Error { message, details }) => {
                        tracing::warn!(%message, ?details, "relay reported an error before welcome");
                    }
                    Ok(other) => tracing::debug!(?other, "message before welcome ignored"),
                    Err(e) => tracing::warn!(error = %e, "unreadable frame from the relay"),
                },
                Some(Ok(_)) => {}
            }
        }
    }

    /// After `welcome`: the full repo set, then every task the relay may lack (its latest state
    /// and the events after what the relay holds), then alerts raised since the last good send.
    async fn resync(
        &mut self,
        socket: &mut Socket,
        last_seqs: &std::collections::BTreeMap<String, u64>,
        sent: &mut Sent,
    ) -> Result<(), SessionEnd> {
        let store = self.store.clone();
        let (repos, tasks, alerts) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((
                store.repo_statuses()?,
                store.unconfirmed_tasks()?,
                store.alerts(&Default::default())?.0,
            ))
        })
        .await
        .map_err(|e| SessionEnd::Retry(format!("store task failed: {e}")))?
        .map_err(|e| SessionEnd::Retry(format!("cannot read the outbox: {e}")))?;

        self.send_full_repos(socket, &repos).await?;

        for task in tasks {
            self.task_repos.insert(task.id.clone(), task.repo.clone());
            let relay_seq = last_seqs.get(&task.id).copied().unwrap_or(0).min(task.last_seq);
            let complete = relay_seq == task.last_seq && task.status.is_terminal() && last_seqs.contains_key(&task.id);
            let store = self.store.clone();
            let id = task.id.clone();
            let events = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
                store.set_relay_sync(&id, relay_seq, complete)?;
                if complete {
                    Ok(Vec::new())
                } else {
                    store.events_after(&id, relay_seq, u32::MAX)
                }
            })
            .await
            .map_err(|e| SessionEnd::Retry(format!("store task failed: {e}")))?
            .map_err(|e| SessionEnd::Retry(format!("cannot read the outbox: {e}")))?;
            if complete {
                continue;
            }
            feed(socket, &AgentMessage::TaskUpdate { task: self.outbound_task(&task) }).await?;
            for ev in events {
                sent.seqs.insert(task.id.clone(), ev.seq);
                let event = self.outbound_event(&task.repo, ev.event);
                feed(socket, &AgentMessage::TaskEvent { task_id: task.id.clone(), seq: ev.seq, event }).await?;
            }
            if let Some(result) = task_result(&task) {
                feed(socket, &result).await?;
            }
        }

        // Alerts are idempotent on the relay (by id): resend with a margin.
        let since = self.alerts_sent_until.map(|t| t - chrono::Duration::minutes(10));
        for alert in alerts.iter().rev().filter(|a| since.is_none_or(|s| a.created_at >= s)) {
            feed(socket, &AgentMessage::Alert { alert: alert.clone() }).await?;
        }
        flush(socket).await?;
        self.alerts_sent_until = Some(Utc::now());
        Ok(())
    }

    async fn send_live(&mut self, socket: &mut Socket, item: Outbound, sent: &mut Sent) -> Result<(), SessionEnd> {
        match item {
            Outbound::AgentStatus(status) => {
                self.agent_state = status;
                feed(socket, &self.agent_status()).await
            }
            Outbound::RepoStatus(repo) => {
                if !self.repo_names.contains(&repo.name) {
                    self.repo_names.push(repo.name.clone());
                }
                feed(socket, &AgentMessage::GitStatus { repos: vec![self.outbound_repo(&repo)], full: None }).await
            }
            Outbound::RepoRemoved(_) => {
                let store = self.store.clone();
                let repos = tokio::task::spawn_blocking(move || store.repo_statuses())
                    .await
                    .map_err(|e| SessionEnd::Retry(format!("store task failed: {e}")))?
                    .map_err(|e| SessionEnd::Retry(format!("cannot read repos: {e}")))?;
                self.send_full_repos(socket, &repos).await
            }
            Outbound::FullRepos(repos) => self.send_full_repos(socket, &repos).await,
            Outbound::TaskUpdate(task) => {
                self.task_repos.insert(task.id.clone(), task.repo.clone());
                feed(socket, &AgentMessage::TaskUpdate { task: self.outbound_task(&task) }).await?;
                if let Some(result) = task_result(&task) {
                    feed(socket, &result).await?;
                }
                Ok(())
            }
            Outbound::TaskEvent(record) => {
                let last = sent.seqs.get(&record.task_id).copied().unwrap_or(0);
                if record.seq <= last {
                    return Ok(()); // already sent by the resync
                }
                sent.seqs.insert(record.task_id.clone(), record.seq);
                let repo = self.task_repos.get(&record.task_id).cloned().unwrap_or_default();
                let event = self.outbound_event(&repo, record.event);
                feed(socket, &AgentMessage::TaskEvent { task_id: record.task_id, seq: record.seq, event }).await
            }
            Outbound::Alert(alert) => {
                feed(socket, &AgentMessage::Alert { alert }).await?;
                self.alerts_sent_until = Some(Utc::now());
                Ok(())
            }
        }
    }

    async fn send_full_repos(&mut self, socket: &mut Socket, repos: &[RepoStatus]) -> Result<(), SessionEnd> {
        self.repo_names = repos.iter().map(|r| r.name.clone()).collect();
        send(
            socket,
            &AgentMessage::GitStatus { repos: repos.iter().map(|r| self.outbound_repo(r)).collect(), full: Some(true) },
        )
        .await
    }

    async fn handle_relay_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), SessionEnd> {
        let message = match RelayMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame from the relay");
                return Ok(());
            }
        };
        match message {
            RelayMessage::Ping { timestamp } => send(socket, &AgentMessage::Pong { timestamp: Some(timestamp) }).await,
            RelayMessage::Task { task_id, task_type, payload } => {
                let _ = self.inbound.send(Inbound::RunTask { task_id, executor: task_type, payload }).await;
                Ok(())
            }
            RelayMessage::Cancel { task_id } => {
                let _ = self.inbound.send(Inbound::Cancel { task_id }).await;
                Ok(())
            }
            RelayMessage::StatusRequest {} => {
                let _ = self.inbound.try_send(Inbound::StatusRequest);
                send(socket, &self.agent_status()).await?;
                let store = self.store.clone();
                let repos = tokio::task::spawn_blocking(move || store.repo_statuses())
                    .await
                    .map_err(|e| SessionEnd::Retry(format!("store task failed: {e}")))?
                    .map_err(|e| SessionEnd::Retry(format!("cannot read repos: {e}")))?;
                self.send_full_repos(socket, &repos).await?;
                flush(socket).await
            }
            RelayMessage::Error { message, details } => {
                tracing::warn!(%message, ?details, "the relay reported an error");
                Ok(())
            }
            RelayMessage::Welcome { .. } => Ok(()),
            RelayMessage::Resend { task_id, after_seq } => {
                // Handled by the link rewrite (issue 12); until then the next reconnect's
                // `welcome.lastSeqs` brings the same resend.
                tracing::info!(%task_id, after_seq, "the relay asked for a resend");
                Ok(())
            }
        }
    }

    fn redact(&self, repo: &str, text: &str) -> String {
        match &self.config.redact {
            Some(f) => f(repo, text),
            None => text.to_string(),
        }
    }

    fn outbound_event(&self, repo: &str, mut event: TaskEvent) -> TaskEvent {
        if self.config.redact.is_some() {
            event.map_text(|t| self.redact(repo, t));
        }
        event
    }

    fn outbound_task(&self, task: &Task) -> Task {
        let mut task = task.clone();
        task.agent_id.get_or_insert_with(|| self.config.agent_id.clone());
        if self.config.redact.is_some() {
            let repo = task.repo.clone();
            task.title = self.redact(&repo, &task.title);
            task.summary = task.summary.map(|s| self.redact(&repo, &s));
            task.error = task.error.map(|s| self.redact(&repo, &s));
            task.payload.prompt = task.payload.prompt.map(|s| self.redact(&repo, &s));
            task.payload.command = task.payload.command.map(|s| self.redact(&repo, &s));
        }
        task
    }

    fn outbound_repo(&self, repo: &RepoStatus) -> RepoStatus {
        repo.clone()
    }
}

/// The `task-result` of a finished task (seed 004), or `None` for states it cannot express
/// (`interrupted`: the task-update alone carries it, so the relay does not turn it into `failed`).
fn task_result(task: &Task) -> Option<AgentMessage> {
    let status = match task.status {
        TaskStatus::Completed => TaskResultStatus::Completed,
        TaskStatus::Cancelled => TaskResultStatus::Cancelled,
        TaskStatus::Failed => TaskResultStatus::Failed,
        TaskStatus::Queued | TaskStatus::Running | TaskStatus::Interrupted => return None,
    };
    let mut result = Map::new();
    if let Some(summary) = &task.summary {
        result.insert("summary".into(), Value::from(summary.clone()));
    }
    if let Some(error) = &task.error {
        result.insert("error".into(), Value::from(error.clone()));
    }
    if let Some(cost) = task.cost_usd {
        result.insert("costUsd".into(), Value::from(cost));
    }
    Some(AgentMessage::TaskResult { task_id: task.id.clone(), status, result: Value::Object(result), logs: None })
}

fn closed_by_relay(frame: Option<CloseFrame>) -> SessionEnd {
    let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
    match code {
        close::KEY_REVOKED => SessionEnd::Fatal("the relay revoked this agent's key".into()),
        close::REPLACED => SessionEnd::Fatal("another agent connected with the same agent id".into()),
        close::POLICY => SessionEnd::Fatal(format!("the relay refused this agent: {reason}")),
        _ => SessionEnd::Retry(format!("the relay closed the connection ({code} {reason})")),
    }
}

/// Queues a message on the socket without flushing: callers batch a burst, then [`flush`].
async fn feed(socket: &mut Socket, message: &AgentMessage) -> Result<(), SessionEnd> {
    socket.feed(Message::text(message.to_json())).await.map_err(|e| SessionEnd::Retry(format!("send failed: {e}")))
}

async fn flush(socket: &mut Socket) -> Result<(), SessionEnd> {
    socket.flush().await.map_err(|e| SessionEnd::Retry(format!("send failed: {e}")))
}

/// Sends one message now.
async fn send(socket: &mut Socket, message: &AgentMessage) -> Result<(), SessionEnd> {
    feed(socket, message).await?;
    flush(socket).await
}
