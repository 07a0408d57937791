//! Tasks: creating one (placement on an agent or in a container), storing and dispatching
//! it, and recording the events agents (or the container runner) send for it.

use std::collections::HashMap;

use chrono::Utc;
use flightdeck_protocol::agent::TaskResultStatus;
use flightdeck_protocol::api::{CreateTaskRequest, PlacementRequest};
use flightdeck_protocol::desktop::error_codes::{NO_CLONE_URL, NO_RUNNER, RUNNER_QUEUE_FULL};
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::realtime::HudEvent;
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::{names, Placement, SeqEvent, Task, TaskEvent, TaskSource, TaskStatus, Topic};

use crate::error::AppError;
use crate::hub::{Position, TopicKey};
use crate::state::AppState;
use crate::store::NumberedEvent;

/// Tasks whose transcript position one connection keeps in memory. Full rule: the cache is
/// emptied and refilled from the database (one query per task), so it only costs a query.
const TRANSCRIPTS_CACHED: usize = 4096;

/// Checks, stores, publishes and dispatches a remote task; it waits `queued` when no agent
/// with its repo is online.
pub async fn create_task(state: &AppState, user: &str, request: CreateTaskRequest) -> Result<Task, AppError> {
    names::validate_repo(&request.repo).map_err(|e| AppError::field("$.repo", e.to_string()))?;
    if let Some(agent) = &request.agent_id {
        names::validate_agent_id(agent).map_err(|e| AppError::field("$.agentId", e.to_string()))?;
    }
    request.payload.validate(request.executor).map_err(|p| AppError::field(&format!("$.{}", p.field), p.problem))?;
    if let Some(url) = &request.clone_url {
        validate_clone_url(url).map_err(|p| AppError::field("$.cloneUrl", p))?;
    }
    let placement = request.placement.unwrap_or_default();
    if placement == PlacementRequest::Container && state.runner().is_none() {
        return Err(AppError::conflict(NO_RUNNER, "this relay has no [runner]: it cannot run tasks in containers"));
    }
    let title = task_title(request.title.as_deref(), request.executor, &request.payload);
    let mut payload = request.payload;
    payload.repo = Some(request.repo.clone());
    let id = uuid::Uuid::now_v7().to_string();
    let task = Task {
        agent_id: request.agent_id,
        ..Task::queued(id, title, request.repo, request.executor, payload, TaskSource::Remote, Utc::now())
    };
    let user = user.to_string();
    let has_runner = state.runner().is_some();
    let max_queued = state.runner().map_or(0, |r| r.settings.max_queued as u64);
    let clone_url = request.clone_url;
    let store = state.store();
    let mut task = task;
    let remote = async |task: &Task| -> Result<Option<String>, AppError> {
        Ok(match &clone_url {
            Some(url) => Some(url.clone()),
            None => store.repo(&user, &task.repo).await?.and_then(|(r, _)| r.remote_url),
        })
    };
    let container = match placement {
        PlacementRequest::Agent => false,
        PlacementRequest::Container => true,
        // An online agent with the repo (or the one named), else a container when the relay
        // can start one for this repo, else wait for an agent.
        PlacementRequest::Auto => {
            let agent_online = match &task.agent_id {
                Some(agent) => state.agent_reachable(&user, agent).await?,
                None => match store.repo_agent_online(&user, &task.repo).await? {
                    Some(agent) => state.agent_reachable(&user, &agent).await?,
                    None => false,
                },
            };
            !agent_online && has_runner && remote(&task).await?.is_some()
        }
    };
    if !container {
        task.placement = Some(Placement::Agent);
        return store_and_dispatch(state, &user, &task).await;
    }
    let url = remote(&task).await?.ok_or_else(|| {
        AppError::conflict(
            NO_CLONE_URL,
            "no clone URL for this repo: its agent reported no origin remote; give cloneUrl",
        )
    })?;
    validate_clone_url(&url).map_err(|p| AppError::field("$.cloneUrl", p))?;
    // Checked, then added: tasks created at the same moment may pass the bound together.
    if store.queued_runs().await? >= max_queued {
        return Err(AppError::conflict(
            RUNNER_QUEUE_FULL,
            format!("{max_queued} container tasks are already waiting; try again when some have ended"),
        ));
    }
    task.placement = Some(Placement::Container);
    task.agent_id = Some(crate::runner::Runner::agent_id_for(&task.id));
    // A container's work is lost with it unless pushed.
    task.payload.push.get_or_insert(true);
    let stored = store.upsert_task(&user, &task).await?;
    store.add_run(&user, &task.id, &url, None).await?;
    let task = state.publish_task(&user, &task.id).await?.unwrap_or(stored);
    if task.placement == Some(Placement::Container) {
        if let Some(runner) = state.runner() {
            runner.wake();
        }
    }
    Ok(task)
}

/// A clone URL is given to `git clone` inside the container: one line, no option look-alike.
fn validate_clone_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() || url.len() > 2048 {
        return Err("must be a URL of 1 to 2048 characters".into());
    }
    if url.starts_with('-') || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not start with '-' or contain spaces or control characters".into());
    }
    Ok(())
}

/// Stores and publishes a new task and sends it to its agent; it waits `queued` when that agent
/// is offline. Returns the task as stored (with the agent it went to).
pub async fn store_and_dispatch(st: &AppState, user: &str, task: &Task) -> Result<Task, AppError> {
    let stored = st.store().upsert_task(user, task).await?;
    st.publish_task(user, &stored.id).await?;
    st.dispatch(user, &stored).await?;
    Ok(st.store().task(user, &stored.id).await?.unwrap_or(stored))
}

/// A task as its agent reports it (`task-update`), stored and published. What the relay fixed
/// when it made the task is kept: its place in its conversation, where it runs and, for a
/// container's task, its agent.
pub async fn record_task_update(st: &AppState, user: &str, agent_id: &str, mut task: Task) -> Result<(), AppError> {
    if task.agent_id.is_none() {
        task.agent_id = Some(agent_id.to_string());
    }
    // A task's place in its conversation is fixed when it is created (by the relay for a
    // reply): an agent that leaves it out does not move the task.
    if let Some(stored) = st.store().task(user, &task.id).await? {
        task.conversation_id = stored.conversation_id;
        task.parent_task_id = stored.parent_task_id;
        // Where it runs is the relay's to say (SPEC 10).
        task.placement = stored.placement;
        task.runner = stored.runner;
        if stored.placement == Some(Placement::Container) {
            task.agent_id = stored.agent_id;
        }
    }
    let stored = st.store().upsert_task(user, &task).await?;
    st.publish_task(user, &task.id).await?;
    crate::domain::push::on_task_stored(st, user, &stored).await;
    Ok(())
}

/// How a task ended (`task-result`), stored and published; false for an unknown task.
pub async fn record_task_result(
    st: &AppState,
    user: &str,
    task_id: &str,
    status: TaskResultStatus,
    result: serde_json::Value,
) -> Result<bool, AppError> {
    let Some(mut task) = st.store().task(user, task_id).await? else { return Ok(false) };
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
    let stored = st.store().upsert_task(user, &task).await?;
    st.publish_task(user, task_id).await?;
    crate::domain::push::on_task_stored(st, user, &stored).await;
    Ok(true)
}

/// Per task of this connection: its repo and the last contiguous seq the relay holds, and the
/// `afterSeq` of a `resend` already asked for. An event is checked against this in memory;
/// the store's conditional append (see [`crate::store::Store::append_events`]) catches a stale
/// entry.
#[derive(Debug, Default)]
pub struct Transcripts {
    tasks: HashMap<String, Transcript>,
}

impl Transcripts {
    /// Drops what is known of a task, so its next event re-reads it from the database.
    pub fn forget(&mut self, task_id: &str) {
        self.tasks.remove(task_id);
    }
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
pub struct Applied {
    pub unknown: Vec<String>,
    pub resend: Vec<(String, u64)>,
}

/// Stores a burst of task events and publishes the new ones after the commit.
///
/// Contiguity (SPEC 3.1): an event whose `seq` is at or below the task's last contiguous seq
/// is a duplicate and changes nothing; the next seq is stored and published; anything beyond
/// would leave a gap, so it is not stored and the agent is asked (once per gap) to resend
/// after the last contiguous seq.
pub async fn apply_events(
    st: &AppState,
    user: &str,
    events: Vec<NumberedEvent>,
    transcripts: &mut Transcripts,
) -> Result<Applied, AppError> {
    let store = st.store();
    let mut applied = Applied::default();
    if transcripts.tasks.len() > TRANSCRIPTS_CACHED {
        transcripts.tasks.clear();
    }
    let mut stored = Vec::new();
    let mut todo = events;
    // At most two passes: the second for the events the store refused because another
    // connection moved their transcript, after reading where it stands.
    for pass in 0..2 {
        let mut batch: Vec<NumberedEvent> = Vec::new();
        let mut repos = Vec::new();
        for (task_id, seq, event) in todo {
            let entry = match transcripts.tasks.get_mut(&task_id) {
                Some(entry) => entry,
                None => match store.task_repo_and_seq(user, &task_id).await? {
                    Some((repo, last_seq)) => transcripts.tasks.entry(task_id.clone()).or_insert(Transcript {
                        repo,
                        last_seq,
                        resend_after: None,
                    }),
                    None => {
                        applied.unknown.push(task_id);
                        continue;
                    }
                },
            };
            if seq <= entry.last_seq {
                // Already held: receiving an event twice changes nothing.
                continue;
            }
            if seq > entry.last_seq + 1 {
                if entry.resend_after != Some(entry.last_seq) {
                    entry.resend_after = Some(entry.last_seq);
                    applied.resend.push((task_id, entry.last_seq));
                }
                continue;
            }
            entry.last_seq = seq;
            repos.push(entry.repo.clone());
            batch.push((task_id, seq, event));
        }
        if batch.is_empty() {
            break;
        }
        let results = store.append_events(user, batch.clone()).await?;
        let mut refused = Vec::new();
        for (((task_id, seq, event), repo), ok) in batch.into_iter().zip(repos).zip(results) {
            if ok {
                stored.push((task_id, repo, seq, event));
            } else {
                transcripts.forget(&task_id);
                if pass == 0 {
                    refused.push((task_id, seq, event));
                }
            }
        }
        todo = refused;
    }
    // Published per topic in runs (a burst is mostly one task's events), in the agent's order,
    // each with its seq (see `crate::hub`).
    let mut hud_tasks: HashMap<String, Option<String>> = HashMap::new();
    let mut runs: Vec<(TopicKey, Vec<(SeqEvent, Position)>)> = Vec::new();
    let mut hud_runs: Vec<(TopicKey, Vec<(HudEvent, Position)>)> = Vec::new();
    for (task_id, repo, seq, event) in stored {
        let key = TopicKey::new(user, Topic::Hud { user: user.to_string(), repo: repo.clone() });
        let hud_event = if st.hub.has_subscribers(&key) {
            let hud_task = match hud_tasks.get(&repo) {
                Some(id) => id.clone(),
                None => {
                    let id = store.hud_task_id(user, &repo).await?;
                    hud_tasks.insert(repo.clone(), id.clone());
                    id
                }
            };
            flightdeck_protocol::views::hud_shows_task(hud_task.as_deref(), &task_id)
                .then(|| HudEvent::TaskEvent(TaskEventRecord { task_id: task_id.clone(), seq, event: event.clone() }))
        } else {
            None
        };
        let position = Position::transcript(&task_id, seq);
        if let Some(hud_event) = hud_event {
            push_run(&mut hud_runs, key, (hud_event, position.clone()));
        }
        let task_key = TopicKey::new(user, Topic::Task(task_id));
        push_run(&mut runs, task_key, (SeqEvent { seq, event }, position));
    }
    for (key, events) in &runs {
        st.hub.publish_at(key, events.iter().map(|(e, p)| (e, Some(p.clone()))));
    }
    for (key, events) in &hud_runs {
        st.hub.publish_at(key, events.iter().map(|(e, p)| (e, Some(p.clone()))));
    }
    // Stored once (the conditional append), so each request and decision is pushed once.
    for (key, events) in &runs {
        let Topic::Task(task_id) = &key.topic else { continue };
        for (SeqEvent { event, .. }, _) in events {
            match event {
                TaskEvent::PermissionRequest { request_id, tool_name, input, description, .. } => {
                    crate::domain::push::on_request(
                        st,
                        user,
                        task_id,
                        request_id,
                        tool_name,
                        input,
                        description.as_deref(),
                    )
                    .await
                }
                TaskEvent::PermissionDecision { request_id, behavior, decided_by, .. } => {
                    crate::domain::push::on_decided(st, user, task_id, request_id, *behavior, *decided_by).await
                }
                _ => {}
            }
        }
    }
    Ok(applied)
}

/// Stores events the relay writes itself (a container run's steps), checked and published like
/// an agent's.
pub(crate) async fn store_events(st: &AppState, user: &str, events: Vec<NumberedEvent>) -> Result<(), AppError> {
    apply_events(st, user, events, &mut Transcripts::default()).await.map(|_| ())
}

/// Appends `item` to the last run when it has the same key, else starts a new run.
fn push_run<T>(runs: &mut Vec<(TopicKey, Vec<T>)>, key: TopicKey, item: T) {
    match runs.last_mut() {
        Some((last, items)) if *last == key => items.push(item),
        _ => runs.push((key, vec![item])),
    }
}
