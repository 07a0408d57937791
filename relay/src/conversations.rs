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
use flightdeck_protocol::desktop::error_codes::{NOT_PENDING, NOT_RESUMABLE, TURN_IN_PROGRESS};
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::{Executor, Task, TaskPayload, TaskSource};

use crate::db::PendingDecision;
use crate::error::AppError;
use crate::hub::Frame;
use crate::request::{parse_body, task_id_param};
use crate::state::{AppState, Auth};

/// `POST /api/cockpit/tasks/:id/reply`: the next turn of the task's conversation, a new claude
/// task that resumes the task's Claude session on the agent that ran it (the session lives
/// there), answering 201 `{task}`.
///
/// Its payload is the body's prompt, permission mode and allowed tools; the permission mode and
/// allowed tools not given, the model and `worktree` are the parent's. Budgets (`maxCostUsd`,
/// `timeoutSecs`, `decisionTimeoutSecs`) are per turn and not inherited.
///
/// 409 `not_resumable` when the task is not a claude task, ran in a terminal (SPEC 9) or has no
/// session id; 409
/// `turn_in_progress` while a turn of the conversation has not ended (queued, running, waiting).
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
    let turn = next_turn(&parent, request)?;
    // Stored only if no turn of the conversation is live, atomically: two replies cannot both
    // find it idle.
    let Some(stored) = state.store().add_turn(&user, &turn).await? else {
        let conversation = state.store().conversation(&user, parent.conversation()).await?;
        return Err(match conversation.iter().find(|t| !t.status.is_terminal()) {
            Some(live) => turn_in_progress(live),
            None => AppError::conflict(TURN_IN_PROGRESS, "another turn of this conversation was just added"),
        });
    };
    state.publish_task(&user, &stored.id).await?;
    state.dispatch(&user, &stored).await?;
    let task = state.store().task(&user, &stored.id).await?.unwrap_or(stored);
    Ok((StatusCode::CREATED, Json(TaskResponse { task })))
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
        return Err(AppError::conflict(NOT_RESUMABLE, "the task has no Claude session to resume"));
    };
    let inherited = &parent.payload;
    let payload = TaskPayload {
        repo: Some(parent.repo.clone()),
        prompt: Some(request.prompt),
        model: inherited.model.clone(),
        permission_mode: request.permission_mode.or_else(|| inherited.permission_mode.clone()),
        allowed_tools: request.allowed_tools.or_else(|| inherited.allowed_tools.clone()),
        worktree: inherited.worktree,
        resume_session_id: Some(session),
        ..TaskPayload::default()
    };
    payload.validate(Executor::Claude).map_err(|p| {
        // The body names these fields without the `payload.` of a new task.
        let field = p.field.strip_prefix("payload.").unwrap_or(p.field);
        AppError::field(&format!("$.{field}"), p.problem)
    })?;
    let title = task_title(None, Executor::Claude, &payload);
    let id = uuid::Uuid::now_v7().to_string();
    let queued =
        Task::queued(id, title, parent.repo.clone(), Executor::Claude, payload, TaskSource::Remote, Utc::now());
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
    let store = state.store();
    let task = store.task(&user, &id).await?.ok_or_else(AppError::not_found)?;
    if task.status.is_terminal() {
        return Err(AppError::conflict(NOT_PENDING, format!("the task is {}", task.status.as_str())));
    }
    if !store.request_open(&id, &request_id).await? {
        return Err(AppError::conflict(NOT_PENDING, format!("no pending request {request_id:?}")));
    }
    let decision = PendingDecision {
        task_id: id,
        request_id,
        behavior: request.behavior,
        updated_input: request.updated_input,
        message: request.message,
        created_at: Utc::now(),
    };
    // One decision per request: the store refuses a second while the first is pending.
    if !store.insert_pending_decision(&user, &decision).await? {
        return Err(AppError::conflict(NOT_PENDING, "already decided: the agent has not applied it yet"));
    }
    if let Some(agent) = &task.agent_id {
        // Not reachable: kept, and sent when the agent connects.
        state.send_to_agent(&user, agent, None, Frame::from(decision.to_message().to_json())).await?;
    }
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
