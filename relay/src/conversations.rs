//! Conversations and remote decisions (SPEC 8): the REST routes that continue a conversation
//! and decide a permission request, and the delivery of decisions to agents.
//!
//! Deciding and replying are the owner's alone: a viewer key or session gets 403, an anonymous
//! caller 401 as on every other route (a HUD shows them that a decision is pending, never the
//! buttons).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use flightdeck_protocol::api::{ConversationResponse, DecisionRequest, ReplyRequest, TaskResponse};
use flightdeck_protocol::desktop::error_codes::{NOT_RESUMABLE, RUNNER_QUEUE_FULL, TURN_IN_PROGRESS};
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::{Placement, Task, TaskPayload, TaskSource};

use crate::db::{PendingDecision, RunState};
use crate::error::AppError;
use crate::request::{parse_body, task_id_param};
use crate::state::{AppState, Auth};

/// `POST /api/cockpit/tasks/:id/reply`: the next turn of the task's conversation, a new claude
/// task that resumes the task's Claude session on the agent that ran it (the session lives
/// there), answering 201 `{task}`. The follow-up of a container task runs in a new container
/// (its agent has exited): it clones the branch the conversation last pushed and gets the
/// Claude state the previous container kept (see `crate::container_runs`).
///
/// Its payload is the body's prompt, permission mode and allowed tools; the permission mode and
/// allowed tools not given, the model and `worktree` are the parent's. Budgets (`maxCostUsd`,
/// `timeoutSecs`, `decisionTimeoutSecs`) are per turn and not inherited.
///
/// 409 `not_resumable` when the task is not a claude task, ran in a terminal (SPEC 9) or has no
/// session id, or ran in a container and this relay cannot start another (no `[runner]`, the
/// run kept no session); 409 `turn_in_progress` while a turn of the conversation has not ended
/// (queued, running, waiting) or while the container of the previous turn is exiting; 409
/// `runner_queue_full` like a new container task.
pub async fn reply(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<TaskResponse>), AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    task_id_param(&id)?;
    let request: ReplyRequest = parse_body(&body)?;
    let parent = state.store().task(&user, &id).await?.ok_or_else(AppError::not_found)?;
    if let Some(reason) = flightdeck_protocol::rules::reply_refusal(&parent) {
        return Err(AppError::conflict(NOT_RESUMABLE, reason));
    }
    let conversation = state.store().conversation(&user, parent.conversation()).await?;
    if let Some(live) = conversation.iter().find(|t| !t.status.is_terminal()) {
        return Err(turn_in_progress(live));
    }
    let mut turn = next_turn(&parent, request)?;
    let container_run = match parent.placement {
        Some(Placement::Container) => Some(container_follow_up(&state, &parent, &mut turn).await?),
        _ => None,
    };
    // Stored only if no turn of the conversation is live, atomically: two replies cannot both
    // find it idle.
    let Some(stored) = state.store().add_turn(&user, &turn).await? else {
        let conversation = state.store().conversation(&user, parent.conversation()).await?;
        return Err(match conversation.iter().find(|t| !t.status.is_terminal()) {
            Some(live) => turn_in_progress(live),
            None => AppError::conflict(TURN_IN_PROGRESS, "another turn of this conversation was just added"),
        });
    };
    match container_run {
        Some((clone_url, checkout)) => {
            state.store().add_run(&user, &stored.id, &clone_url, checkout.as_deref()).await?;
            state.publish_task(&user, &stored.id).await?;
            if let Some(runner) = state.runner() {
                runner.wake();
            }
        }
        None => {
            state.publish_task(&user, &stored.id).await?;
            state.dispatch(&user, &stored).await?;
        }
    }
    let task = state.store().task(&user, &stored.id).await?.unwrap_or(stored);
    Ok((StatusCode::CREATED, Json(TaskResponse { task })))
}

/// Makes `turn`, the follow-up of the container task `parent`, a container task of its own;
/// returns its run's clone URL and the branch it starts from (what the conversation last
/// pushed). 409 `not_resumable` when no container can resume the session.
async fn container_follow_up(
    state: &AppState,
    parent: &Task,
    turn: &mut Task,
) -> Result<(String, Option<String>), AppError> {
    let refuse = |why: String| AppError::conflict(NOT_RESUMABLE, why);
    let Some(runner) = state.runner() else {
        return Err(refuse("this task ran in a container, and this relay has no [runner] now to start another".into()));
    };
    let run = state.store().run(&parent.id).await?;
    if let Some(run) = run.as_ref().filter(|r| r.state != RunState::Ended) {
        // The task has ended but its container is still exiting: its session is kept only once
        // the container is gone.
        return Err(AppError::conflict(
            TURN_IN_PROGRESS,
            format!("the container of task {} is still {}: reply when it has exited", parent.id, run.state.as_str()),
        ));
    }
    let Some(run) = run.filter(|r| r.home_kept) else {
        return Err(refuse(format!(
            "the container of task {} kept no Claude session (it ended before Claude saved one, or \
             it ran on an older relay): start a new task",
            parent.id
        )));
    };
    let max_queued = runner.settings.max_queued as u64;
    if state.store().queued_runs().await? >= max_queued {
        return Err(AppError::conflict(
            RUNNER_QUEUE_FULL,
            format!("{max_queued} container tasks are already waiting; try again when some have ended"),
        ));
    }
    turn.placement = Some(Placement::Container);
    turn.agent_id = Some(crate::runner::Runner::agent_id_for(&turn.id));
    turn.payload.push = Some(true);
    let checkout = run.pushed_branch.or(run.checkout);
    Ok((run.clone_url, checkout))
}

fn turn_in_progress(live: &Task) -> AppError {
    AppError::conflict(
        TURN_IN_PROGRESS,
        format!("turn {} of this conversation is {}: reply when it ends", live.id, live.status.as_str()),
    )
}

/// The follow-up of `parent` (see [`reply`]), checked but not stored.
fn next_turn(parent: &Task, request: ReplyRequest) -> Result<Task, AppError> {
    let conversation = parent.conversation().to_string();
    let Some(session) = parent.session_id.clone() else {
        return Err(AppError::conflict(NOT_RESUMABLE, "the task has no session to resume"));
    };
    let inherited = &parent.payload;
    let payload = TaskPayload {
        repo: Some(parent.repo.clone()),
        prompt: Some(request.prompt),
        // An ACP turn goes to the same agent (SPEC 14).
        agent: inherited.agent.clone(),
        model: inherited.model.clone(),
        permission_mode: request.permission_mode.or_else(|| inherited.permission_mode.clone()),
        allowed_tools: request.allowed_tools.or_else(|| inherited.allowed_tools.clone()),
        worktree: inherited.worktree,
        resume_session_id: Some(session),
        ..TaskPayload::default()
    };
    let executor = parent.executor;
    payload.validate(executor).map_err(|p| {
        // The body names these fields without the `payload.` of a new task.
        let field = p.field.strip_prefix("payload.").unwrap_or(p.field);
        AppError::field(&format!("$.{field}"), p.problem)
    })?;
    let title = task_title(None, executor, &payload);
    let id = uuid::Uuid::now_v7().to_string();
    let queued = Task::queued(id, title, parent.repo.clone(), executor, payload, TaskSource::Remote, Utc::now());
    Ok(Task {
        agent_id: parent.agent_id.clone(),
        conversation_id: conversation,
        parent_task_id: Some(parent.id.clone()),
        ..queued
    })
}

/// `POST /api/cockpit/tasks/:id/permissions/:requestId`: the owner decides a pending request.
/// The decision is kept until the agent records it (see `db/conversations.rs`) and sent to the
/// agent now if it is online, else when it connects. Answers `{task}`.
///
/// 409 `not_pending` when the task has ended, its transcript holds no open request with that
/// id, or a decision for it already waits for the agent.
pub async fn decide(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path((id, request_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<TaskResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    task_id_param(&id)?;
    let request: DecisionRequest = parse_body(&body)?;
    let decision = PendingDecision {
        task_id: id,
        request_id,
        behavior: request.behavior,
        updated_input: request.updated_input,
        message: request.message,
        decided_by: None,
        created_at: Utc::now(),
    };
    let task = crate::domain::push::decide(&state, &user, decision).await?;
    Ok(Json(TaskResponse { task }))
}

/// `GET /api/cockpit/conversations/:conversationId`: every turn, oldest first; 404 when none.
pub async fn conversation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<ConversationResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    task_id_param(&id)?;
    let tasks = state.store().conversation(&user, &id).await?;
    if tasks.is_empty() {
        return Err(AppError::not_found());
    }
    Ok(Json(ConversationResponse { tasks }))
}
