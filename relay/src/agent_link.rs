//! `GET /api/ws`: the agent link of SPEC 3.3.
//!
//! The first message must be `agent-status`; the relay answers `welcome {agentId, heartbeatSecs,
//! lastSeqs}` and from then on pings every heartbeat, stores and fans out what the agent
//! reports, and sends it the tasks queued for its repos and the owner's decisions it has not
//! recorded yet (see [`crate::conversations`]). A second connection with the same
//! `agentId` replaces this one (4000); no pong within the timeout closes it (1000).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::close;
use flightdeck_protocol::realtime::validate_task_id;
use flightdeck_protocol::{
    names, AgentInfo, AgentMessage, AgentState, Alert, AlertKind, Detail, InvalidMessage, RelayMessage, Severity,
    TaskEvent, TaskStatus,
};
use futures_util::{FutureExt, StreamExt};

use crate::db::Principal;
use crate::domain::tasks::Transcripts;
use crate::error::AppError;
use crate::hub::{AgentHandle, Closer, Frame};
use crate::socket::{self, Incoming, InvalidBudget};
use crate::state::{AppState, Auth, ClientIp};

/// Frames already buffered that one read takes at most, and their bytes at most (frames may
/// be up to `max_frame_bytes` each): what one agent connection holds before it stores them.
const READ_BATCH: usize = 256;
const READ_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Tasks finished longer ago than this are left out of `lastSeqs`.
const LAST_SEQS_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
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
                crate::domain::agents::record_git_status(&self.state, &user, &agent_id, &repos, full).await?;
                self.dispatch_queued(names).await?;
            }
            AgentMessage::TaskUpdate { task } => {
                if let Some(error) = self.owned_elsewhere(&task.id).await? {
                    self.invalid(vec![error]);
                    return Ok(());
                }
                let agent_id = self.agent_id();
                // Its repo may have changed: read it again with the next event.
                self.transcripts.forget(&task.id);
                crate::domain::tasks::record_task_update(&self.state, &user, &agent_id, task).await?;
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
                let found =
                    crate::domain::tasks::record_task_result(&self.state, &user, &task_id, status, result).await?;
                if !found {
                    self.invalid(vec![Detail::new("$.taskId", "unknown task")]);
                }
            }
            AgentMessage::Alert { alert } => {
                crate::domain::agents::record_alert(&self.state, &user, alert).await?;
            }
            AgentMessage::Error { message, task_id, request_id } => {
                // The agent could not do what the relay asked. A decision for a request that is
                // no longer pending there is not sent again; the transcript says what happened.
                tracing::info!(%message, ?task_id, ?request_id, "the agent reported an error");
                if let (Some(task_id), Some(request_id)) = (task_id, request_id) {
                    self.state.store().delete_pending_decision(&user, &task_id, &request_id).await?;
                }
            }
            AgentMessage::Pong { .. } => {
                self.last_pong = Instant::now();
                let agent_id = self.agent_id();
                if let Some(mut info) = self.state.store().agent(&user, &agent_id).await? {
                    info.last_ping_at = Utc::now();
                    self.state.store().upsert_agent(&user, &info, true).await?;
                    self.state.publish_agent(&user, &agent_id).await?;
                }
            }
        }
        Ok(())
    }

    /// Stores the buffered events in one transaction, then publishes the new ones (each with its
    /// seq, which orders it against snapshots). Events of unknown tasks are refused.
    async fn flush_events(&mut self) -> Result<(), AppError> {
        if self.pending_events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.pending_events);
        let user = self.principal.user.clone();
        let applied = crate::domain::tasks::apply_events(&self.state, &user, events, &mut self.transcripts).await?;
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
        let owner = self.state.store().task_user(task_id).await?;
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
        let store = self.state.store();
        let previous = store.agent(&user, &id).await?;
        let known_repos: Vec<String> = store.repos(&user, None, Some(&id)).await?.into_iter().map(|r| r.name).collect();
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
            repos: known_repos.clone(),
        };
        store.upsert_agent(&user, &info, true).await?;
        if first {
            store.set_agent_conn(&user, &id, &conn).await?;
        }
        self.state.publish_agent(&user, &id).await?;
        if first {
            self.state.publish_agent_online(&user, &id).await?;
        }
        let (last_seqs, decisions) = if first {
            (store.last_seqs(&user, &id, since).await?, store.pending_decisions_for(&user, &id).await?)
        } else {
            Default::default()
        };
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
        let offset = self.state.store().run(&id).await?.map_or(0, |r| r.seq_offset);
        let found = self.state.store().task(&user, &id).await?.map(|t| (t, offset));
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
            self.state.dispatch(&user, &task).await?;
        }
        Ok(())
    }

    /// Sends this agent the queued tasks of `repos` (each once per connection).
    async fn dispatch_queued(&mut self, repos: Vec<String>) -> Result<(), AppError> {
        let Some(session) = &self.session else { return Ok(()) };
        let user = self.principal.user.clone();
        let agent_id = session.agent_id.clone();
        for task in self.state.store().queued_tasks_for(&user, &agent_id, &repos).await? {
            self.state.dispatch(&user, &task).await?;
        }
        Ok(())
    }
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
    let marked = async {
        if state.agents.is_connected(&u, &id) {
            return Ok::<_, AppError>(());
        }
        // Only if no newer connection (here or on another node) took over.
        if state.store().mark_agent_offline(&u, &id, &conn).await?.is_some() {
            state.publish_agent(&u, &id).await?;
            state.publish_agent_online(&u, &id).await?;
        }
        Ok(())
    }
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
        let result = async {
            if state.store().agent_online(&user, &agent_id).await? {
                return Ok::<_, AppError>(());
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
            state.store().upsert_alert(&user, &alert).await?;
            state.publish_alert(&user, &alert.id).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not raise agent_offline");
        }
    });
}
