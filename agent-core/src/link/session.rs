//! The link's loop: connect, `welcome`, resend what the relay lacks, then stream the outbox and
//! the live queue until the connection ends; back off and do it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::agent::TaskResultStatus;
use flightdeck_protocol::{
    close, AgentMessage, AgentState, Alert, RelayMessage, RepoStatus, Task, TaskEvent, TaskStatus,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::{Backoff, Inbound, LinkConfig, LinkState, Outbound, OutboundSender, StopCode};
use crate::redact::Redactor;
use crate::store::{AlertFilter, OutboxItem, OutboxRow, Store, StoreError};

/// Outbox rows read (and sent in one write) at a time.
const PAGE: u32 = 512;
/// Alerts resent after each `welcome` (the newest); the relay keeps acknowledgements, so a
/// resend never undoes one.
const RESEND_ALERTS: u32 = 500;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    /// Retry after a delay.
    Retry(String),
    /// Do not retry.
    Fatal(StopCode, String),
}

fn store_failed(e: impl std::fmt::Display) -> SessionEnd {
    SessionEnd::Retry(format!("cannot read the outbox: {e}"))
}

pub(super) struct Worker {
    config: LinkConfig,
    store: Store,
    inbound: mpsc::Sender<Inbound>,
    live: mpsc::Receiver<Outbound>,
    /// The live queue's sending side, for its overflow flag and wake-up.
    live_tx: OutboundSender,
    state: watch::Sender<LinkState>,
    shutdown: CancellationToken,
    agent_state: AgentState,
    /// Slugs of the watched repos, for `agent-status`.
    repo_names: Vec<String>,
}

/// What one connection has sent, so the outbox stream after a resend does not double events.
struct Sent {
    /// The last outbox row sent (or covered by the resend).
    cursor: i64,
    /// The highest `seq` sent per task.
    seqs: HashMap<String, u64>,
}

impl Worker {
    pub(super) fn new(
        config: LinkConfig,
        store: Store,
        inbound: mpsc::Sender<Inbound>,
        live: mpsc::Receiver<Outbound>,
        live_tx: OutboundSender,
        state: watch::Sender<LinkState>,
        shutdown: CancellationToken,
    ) -> Worker {
        Worker {
            config,
            store,
            inbound,
            live,
            live_tx,
            state,
            shutdown,
            agent_state: AgentState::Online,
            repo_names: Vec::new(),
        }
    }

    pub(super) async fn run(mut self) {
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
                SessionEnd::Fatal(code, reason) => {
                    tracing::error!(%reason, code = code.code(), "relay link stopped");
                    self.state.send_replace(LinkState::Stopped { code, reason });
                    // Keep draining so the live queue never fills up for nothing.
                    loop {
                        tokio::select! {
                            item = self.live.recv() => if item.is_none() { return },
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
            // While down, live items are only remembered (the next session sends the whole
            // state); the outbox keeps everything else.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    item = self.live.recv() => match item {
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
            .map_err(|e| SessionEnd::Fatal(StopCode::BadConfig, format!("bad relay URL {endpoint}: {e}")))?;
        let bearer = format!("Bearer {}", self.config.key).parse().map_err(|_| {
            SessionEnd::Fatal(StopCode::BadConfig, "the key contains characters not allowed in a header".into())
        })?;
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
                    Err(SessionEnd::Fatal(
                        StopCode::KeyRefused,
                        format!("the relay refused the key ({status}); check the agent key"),
                    ))
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
        // Live items queued before this point are covered by the full state sent below.
        while let Ok(item) = self.live.try_recv() {
            if let Outbound::AgentStatus(s) = item {
                self.agent_state = s;
            }
        }
        self.live_tx.overflowed.store(false, Ordering::SeqCst);
        if let Err(end) = send(&mut socket, &self.agent_status()).await {
            return end;
        }
        let (heartbeat, last_seqs) = match self.await_welcome(&mut socket).await {
            Ok(welcome) => welcome,
            Err(end) => return end,
        };
        let mut sent = match self.resync(&mut socket, &last_seqs).await {
            Ok(sent) => sent,
            Err(end) => return end,
        };
        self.state.send_replace(LinkState::Connected { since: Utc::now() });
        tracing::info!(relay = %self.config.ws_endpoint(), "relay link connected");

        // A relay that says nothing for two heartbeats and a margin is gone.
        let silence_limit = Duration::from_secs(heartbeat.max(1) * 2) + Duration::from_secs(10);
        let mut last_heard = Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1).min(silence_limit / 4));
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut head = self.store.outbox_head();
        let wake = self.live_tx.wake.clone();
        loop {
            let behind = *head.borrow_and_update() > sent.cursor;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    let _ = socket.close(Some(CloseFrame { code: CloseCode::from(close::GOING_AWAY), reason: "shutdown".into() })).await;
                    return SessionEnd::Shutdown;
                }
                frame = socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None => return SessionEnd::Retry("the relay closed the connection".into()),
                        Some(Err(e)) => return SessionEnd::Retry(format!("connection error: {e}")),
                        Some(Ok(Message::Text(text))) => {
                            if let Err(end) = self.handle_relay_text(&mut socket, text.as_str(), &mut sent).await {
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
                item = self.live.recv() => {
                    let Some(item) = item else { return SessionEnd::Shutdown };
                    if let Err(end) = self.send_live_batch(&mut socket, item).await {
                        return end;
                    }
                }
                _ = wake.notified() => {
                    if self.live_tx.overflowed.swap(false, Ordering::SeqCst) {
                        if let Err(end) = self.send_full_state(&mut socket).await {
                            return end;
                        }
                    }
                }
                // The outbox: one page per turn, so relay frames and pings are read in between.
                // The page is sent to the end here, never inside a branch that another could
                // cancel halfway (which would lose track of what was sent).
                _ = std::future::ready(()), if behind => {
                    if let Err(end) = self.send_outbox_page(&mut socket, &mut sent).await {
                        return end;
                    }
                }
                changed = head.changed(), if !behind => {
                    if changed.is_err() {
                        return SessionEnd::Shutdown;
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
    async fn await_welcome(&mut self, socket: &mut Socket) -> Result<(u64, BTreeMap<String, u64>), SessionEnd> {
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
    /// and the events after what the relay holds), then the newest alerts. Returns where the
    /// outbox stream goes on from.
    async fn resync(&mut self, socket: &mut Socket, last_seqs: &BTreeMap<String, u64>) -> Result<Sent, SessionEnd> {
        // Taken first: rows added while the resend runs are streamed after it (deduplicated).
        let cursor = self.store.outbox_head_id();
        let store = self.store.clone();
        let redactors = self.config.redactors.clone();
        let (repos, tasks, alerts) = tokio::task::spawn_blocking(move || {
            let from = store.relay_history_from()?;
            let alerts = store.alerts(&AlertFilter { limit: RESEND_ALERTS, ..Default::default() })?.0;
            let alerts: Vec<Alert> = alerts
                .iter()
                .filter(|a| !Store::before_relay_history(from.as_deref(), &a.created_at))
                .map(|a| redactor_for(&redactors, a.repo.as_deref()).redact_alert(a))
                .collect();
            Ok::<_, StoreError>((store.repo_statuses()?, store.unconfirmed_tasks()?, alerts))
        })
        .await
        .map_err(store_failed)?
        .map_err(store_failed)?;

        self.send_full_repos(socket, &repos).await?;
        let mut sent = Sent { cursor, seqs: HashMap::new() };
        for task in tasks {
            let relay_seq = last_seqs.get(&task.id).copied().unwrap_or(0).min(task.last_seq);
            let complete = relay_seq == task.last_seq && task.status.is_terminal() && last_seqs.contains_key(&task.id);
            let store = self.store.clone();
            let id = task.id.clone();
            let redactors = self.config.redactors.clone();
            let outgoing = tokio::task::spawn_blocking(move || -> Result<Option<Task>, StoreError> {
                store.set_relay_sync(&id, relay_seq, complete)?;
                if complete {
                    return Ok(None);
                }
                let redactor = redactor_for(&redactors, Some(&task.repo));
                if task.status.is_terminal() {
                    // No recorder writes to it any more: whatever a crash cut short of its
                    // outgoing transcript is made now.
                    crate::runner::backfill_wire(&store, redactor.clone(), &task)?;
                }
                Ok(Some(outgoing_task(&store, &redactor, &task)?))
            })
            .await
            .map_err(store_failed)?
            .map_err(store_failed)?;
            let Some(task) = outgoing else { continue };
            if task.status.is_terminal() {
                // The relay shows a task ended only once its transcript is whole: the events go
                // first, the final state after them. A task it has never seen is announced as
                // running first, since the relay takes no events for a task it does not know.
                if !last_seqs.contains_key(&task.id) {
                    let mut opening = task.clone();
                    opening.status = TaskStatus::Running;
                    opening.finished_at = None;
                    self.feed_task(socket, &opening).await?;
                }
                self.resend_events(socket, &task.id, relay_seq, &mut sent).await?;
                self.feed_task(socket, &task).await?;
            } else {
                self.feed_task(socket, &task).await?;
                self.resend_events(socket, &task.id, relay_seq, &mut sent).await?;
            }
        }
        for alert in alerts.into_iter().rev() {
            feed(socket, &AgentMessage::Alert { alert }).await?;
        }
        flush(socket).await?;
        Ok(sent)
    }

    /// Sends a task's outgoing events after `after`, a page at a time.
    async fn resend_events(
        &mut self,
        socket: &mut Socket,
        task_id: &str,
        mut after: u64,
        sent: &mut Sent,
    ) -> Result<(), SessionEnd> {
        loop {
            let store = self.store.clone();
            let id = task_id.to_string();
            let page = tokio::task::spawn_blocking(move || store.wire_events_after(&id, after, PAGE))
                .await
                .map_err(store_failed)?
                .map_err(store_failed)?;
            let Some(last) = page.last() else { return Ok(()) };
            after = last.seq;
            for ev in page {
                feed(socket, &AgentMessage::TaskEvent { task_id: task_id.to_string(), seq: ev.seq, event: ev.event })
                    .await?;
            }
            let known = sent.seqs.entry(task_id.to_string()).or_default();
            *known = (*known).max(after);
            flush(socket).await?;
        }
    }

    /// Reads the next page of the outbox and sends it in one write.
    async fn send_outbox_page(&mut self, socket: &mut Socket, sent: &mut Sent) -> Result<(), SessionEnd> {
        let store = self.store.clone();
        let redactors = self.config.redactors.clone();
        let after = sent.cursor;
        let (rows, page_end) =
            tokio::task::spawn_blocking(move || -> Result<(Vec<OutboxRow>, Option<i64>), StoreError> {
                let mut rows = store.outbox_after(after, PAGE)?;
                let page_end = rows.last().map(|r| r.id);
                // What the owner kept local when the relay was turned on stays so (an alert
                // acknowledged later, a task's final state).
                let from = store.relay_history_from()?;
                rows.retain(|row| match &row.item {
                    OutboxItem::Task(t) => {
                        !(t.status.is_terminal() && Store::before_relay_history(from.as_deref(), &t.created_at))
                    }
                    OutboxItem::Alert(a) => !Store::before_relay_history(from.as_deref(), &a.created_at),
                    OutboxItem::Event(_) => true,
                });
                for row in &mut rows {
                    match &mut row.item {
                        OutboxItem::Task(task) => {
                            *task = outgoing_task(&store, &redactor_for(&redactors, Some(&task.repo)), task)?
                        }
                        OutboxItem::Alert(alert) => {
                            *alert = redactor_for(&redactors, alert.repo.as_deref()).redact_alert(alert)
                        }
                        OutboxItem::Event(_) => {}
                    }
                }
                Ok((rows, page_end))
            })
            .await
            .map_err(store_failed)?
            .map_err(store_failed)?;
        let Some(last_id) = page_end else {
            // The head moved past rows that reference nothing (cannot happen today): skip them.
            sent.cursor = self.store.outbox_head_id();
            return Ok(());
        };
        for row in rows {
            match row.item {
                OutboxItem::Event(record) => {
                    let known = sent.seqs.entry(record.task_id.clone()).or_default();
                    if record.seq <= *known {
                        continue; // already sent by the resend
                    }
                    *known = record.seq;
                    feed(
                        socket,
                        &AgentMessage::TaskEvent { task_id: record.task_id, seq: record.seq, event: record.event },
                    )
                    .await?;
                }
                OutboxItem::Task(task) => self.feed_task(socket, &task).await?,
                OutboxItem::Alert(alert) => feed(socket, &AgentMessage::Alert { alert }).await?,
            }
        }
        flush(socket).await?;
        sent.cursor = last_id;
        Ok(())
    }

    async fn feed_task(&mut self, socket: &mut Socket, task: &Task) -> Result<(), SessionEnd> {
        let mut task = task.clone();
        task.agent_id.get_or_insert_with(|| self.config.agent_id.clone());
        let result = task_result(&task);
        feed(socket, &AgentMessage::TaskUpdate { task }).await?;
        if let Some(result) = result {
            feed(socket, &result).await?;
        }
        Ok(())
    }

    /// Sends a live item and whatever else is already queued, in one write.
    async fn send_live_batch(&mut self, socket: &mut Socket, first: Outbound) -> Result<(), SessionEnd> {
        let mut item = Some(first);
        let mut count = 0;
        while let Some(next) = item.take() {
            self.feed_live(socket, next).await?;
            count += 1;
            if count < 64 {
                item = self.live.try_recv().ok();
            }
        }
        flush(socket).await
    }

    async fn feed_live(&mut self, socket: &mut Socket, item: Outbound) -> Result<(), SessionEnd> {
        match item {
            Outbound::AgentStatus(status) => {
                self.agent_state = status;
                feed(socket, &self.agent_status()).await
            }
            Outbound::RepoStatus(repo) => {
                if !self.repo_names.contains(&repo.name) {
                    self.repo_names.push(repo.name.clone());
                }
                feed(socket, &AgentMessage::GitStatus { repos: vec![repo], full: None }).await
            }
            Outbound::RepoRemoved(_) => {
                let repos = self.stored_repos().await?;
                self.send_full_repos(socket, &repos).await
            }
            Outbound::FullRepos(repos) => self.send_full_repos(socket, &repos).await,
            Outbound::Error { message, task_id, request_id } => {
                feed(socket, &AgentMessage::Error { message, task_id, request_id }).await
            }
        }
    }

    /// The whole current state, after the live queue overflowed.
    async fn send_full_state(&mut self, socket: &mut Socket) -> Result<(), SessionEnd> {
        while self.live.try_recv().is_ok() {}
        let repos = self.stored_repos().await?;
        feed(socket, &self.agent_status()).await?;
        self.send_full_repos(socket, &repos).await
    }

    async fn stored_repos(&self) -> Result<Vec<RepoStatus>, SessionEnd> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.repo_statuses()).await.map_err(store_failed)?.map_err(store_failed)
    }

    async fn send_full_repos(&mut self, socket: &mut Socket, repos: &[RepoStatus]) -> Result<(), SessionEnd> {
        self.repo_names = repos.iter().map(|r| r.name.clone()).collect();
        send(socket, &AgentMessage::GitStatus { repos: repos.to_vec(), full: Some(true) }).await
    }

    async fn handle_relay_text(&mut self, socket: &mut Socket, text: &str, sent: &mut Sent) -> Result<(), SessionEnd> {
        let message = match RelayMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame from the relay");
                return Ok(());
            }
        };
        match message {
            RelayMessage::Ping { timestamp } => send(socket, &AgentMessage::Pong { timestamp: Some(timestamp) }).await,
            RelayMessage::Task { task_id, task_type, payload, title, conversation_id, parent_task_id } => {
                let run =
                    Inbound::RunTask { task_id, executor: task_type, payload, title, conversation_id, parent_task_id };
                let _ = self.inbound.send(run).await;
                Ok(())
            }
            RelayMessage::Cancel { task_id } => {
                let _ = self.inbound.send(Inbound::Cancel { task_id }).await;
                Ok(())
            }
            RelayMessage::StatusRequest {} => {
                let _ = self.inbound.try_send(Inbound::StatusRequest);
                send(socket, &self.agent_status()).await?;
                let repos = self.stored_repos().await?;
                self.send_full_repos(socket, &repos).await?;
                flush(socket).await
            }
            RelayMessage::Error { message, details } => {
                tracing::warn!(%message, ?details, "the relay reported an error");
                Ok(())
            }
            RelayMessage::Welcome { .. } => Ok(()),
            RelayMessage::PermissionDecision { task_id, request_id, behavior, updated_input, message, decided_by } => {
                let decision = Inbound::Decide { task_id, request_id, behavior, updated_input, message, decided_by };
                let _ = self.inbound.send(decision).await;
                Ok(())
            }
            RelayMessage::Resend { task_id, after_seq } => {
                // The relay refused an event past a gap (it should never see one: this link
                // sends each task's events in order); it gets the task's events again from
                // `afterSeq`, and the outbox stream goes on after what this sends.
                tracing::warn!(task = %task_id, after_seq, "the relay asked for a resend");
                let before = sent.seqs.get(&task_id).copied().unwrap_or(0);
                self.resend_events(socket, &task_id, after_seq, sent).await?;
                let known = sent.seqs.entry(task_id).or_default();
                *known = (*known).max(before);
                Ok(())
            }
        }
    }
}

/// A task as it leaves the machine: its free text redacted, and its `summary` and `error` (which
/// repeat the text of its last `done` or `error` event) taken from that event's outgoing form,
/// which stream redaction saw in context (a summary that is a line of a private key printed
/// before it, for instance, is masked there).
fn outgoing_task(store: &Store, redactor: &Redactor, task: &Task) -> Result<Task, StoreError> {
    let mut out = redactor.redact_task(task);
    if task.summary.is_some() || task.error.is_some() {
        for event in store.last_wire_outcomes(&task.id)? {
            match event {
                TaskEvent::Done { summary } if task.summary.is_some() => out.summary = Some(summary),
                TaskEvent::Error { error } if task.error.is_some() => out.error = Some(error),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The redactor for a repo (the built-in kinds when there is no repo or no redactors).
fn redactor_for(redactors: &Option<Arc<crate::redact::RepoRedactors>>, repo: Option<&str>) -> Arc<Redactor> {
    match (redactors, repo) {
        (Some(redactors), Some(repo)) => redactors.for_repo(repo),
        _ => Arc::new(Redactor::new()),
    }
}

/// The `task-result` of a finished task (seed 004), or `None` for states it cannot express
/// (`interrupted`: the task-update alone carries it, so the relay does not turn it into `failed`).
fn task_result(task: &Task) -> Option<AgentMessage> {
    let status = match task.status {
        TaskStatus::Completed => TaskResultStatus::Completed,
        TaskStatus::Cancelled => TaskResultStatus::Cancelled,
        TaskStatus::Failed => TaskResultStatus::Failed,
        TaskStatus::Queued | TaskStatus::Running | TaskStatus::Waiting | TaskStatus::Interrupted => return None,
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
        close::KEY_REVOKED => SessionEnd::Fatal(StopCode::KeyRevoked, "the relay revoked this agent's key".into()),
        close::REPLACED => SessionEnd::Fatal(
            StopCode::Replaced,
            "another agent connected with the same agent id and replaced this one".into(),
        ),
        close::POLICY => SessionEnd::Fatal(StopCode::KeyRefused, format!("the relay refused this agent: {reason}")),
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
