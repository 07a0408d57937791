//! The REST API of SPEC section 4: health, metrics, login, and the cockpit endpoints.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use flightdeck_protocol::api::{
    AgentsResponse, AlertResponse, AlertsResponse, CreateTaskRequest, EventsResponse, Health, KeyScope, LoginRequest,
    LoginResponse, ReposResponse, RunnerInfoResponse, TaskListResponse, TaskResponse,
};
use flightdeck_protocol::{names, RelayMessage, TaskStatus, MAX_SEQ};

use crate::db::TaskFilter;
use crate::domain::tasks::create_task;
use crate::error::AppError;
use crate::hub::Frame;
use crate::request::{parse_body, task_id_param};
use crate::secrets;
use crate::state::{session_cookie, AppState, Auth, ClientIp, SESSION_COOKIE};
use flightdeck_protocol::api::{PutSecretRequest, SecretInfo, SecretsResponse};
use flightdeck_protocol::desktop::error_codes::NO_RUNNER;

pub type Params = Query<HashMap<String, String>>;

/// Default and largest page sizes of list endpoints.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    if let Some(runner) = state.runner() {
        text.push_str(&runner.render_metrics());
    }
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

pub fn limit_param(q: &HashMap<String, String>) -> Result<u32, AppError> {
    match param(q, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(AppError::field("$.limit", format!("must be an integer from 1 to {MAX_LIMIT}, got {v:?}"))),
        },
    }
}

/// A non-negative integer query value up to [`MAX_SEQ`] (the store's signed 64-bit range), or
/// a 400 naming the field.
fn u64_param(q: &HashMap<String, String>, name: &str) -> Result<u64, AppError> {
    match param(q, name) {
        None => Ok(0),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= MAX_SEQ => Ok(n),
            _ => {
                Err(AppError::field(&format!("$.{name}"), format!("must be an integer from 0 to {MAX_SEQ}, got {v:?}")))
            }
        },
    }
}

fn choice_param(q: &HashMap<String, String>, name: &str, allowed: &[&str]) -> Result<Option<String>, AppError> {
    match param(q, name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(v) => {
            Err(AppError::field(&format!("$.{name}"), format!("expected one of {}, got {v:?}", allowed.join(", "))))
        }
    }
}

const TASK_STATUSES: &[&str] = &["queued", "running", "waiting", "completed", "failed", "cancelled", "interrupted"];
const EXECUTORS: &[&str] = &["claude", "shell", "acp"];
const REPO_STATES: &[&str] = &["clean", "dirty", "ahead", "behind", "diverged", "missing"];
const SEVERITIES: &[&str] = &["info", "warning", "critical"];

// ----- login -------------------------------------------------------------------------------

pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    state.check_login_rate(ip)?;
    // Login CSRF: a page elsewhere must not log this browser into another account. A browser
    // names the page's origin; a cross-site form can only post the "simple" content types
    // (text/plain, form-urlencoded, multipart) without a preflight, which this relay never
    // answers, so only JSON is a login.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        if origin != state.public_origin(&headers) {
            return Err(AppError::Forbidden("login is accepted only from this relay's own pages".into()));
        }
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(AppError::UnsupportedMediaType("send the login as Content-Type: application/json".into()));
    }
    let request: LoginRequest = parse_body(&body)?;
    let ttl = state.session_ttl();
    let Some(principal) = state.store().principal_by_key(&request.token).await? else {
        return Err(AppError::InvalidKey);
    };
    if principal.scope == KeyScope::Agent {
        return Err(AppError::Forbidden("agent keys cannot log in".into()));
    }
    let session = state.store().create_session(&principal.key_id, ttl).await?;
    let secure = if state.is_https(&headers) { "; Secure" } else { "" };
    let cookie =
        format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", ttl.as_secs());
    let mut response = Json(LoginResponse { user: principal.user, scope: principal.scope }).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| AppError::Internal(e.to_string()))?);
    Ok(response)
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(session) = session_cookie(&headers) {
        state.store().delete_session(&session).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("fd_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    Ok(response)
}

// ----- cockpit -----------------------------------------------------------------------------

pub async fn agents(State(state): State<AppState>, auth: Auth) -> Result<Json<AgentsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let agents = state.store().agents(&user).await?;
    Ok(Json(AgentsResponse { count: agents.len(), agents }))
}

pub async fn list_tasks(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Params,
) -> Result<Json<TaskListResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let filter = TaskFilter {
        status: choice_param(&q, "status", TASK_STATUSES)?,
        executor: choice_param(&q, "executor", EXECUTORS)?,
        repo: match param(&q, "repo") {
            None => None,
            Some(r) => {
                names::validate_repo(r).map_err(|e| AppError::field("$.repo", e.to_string()))?;
                Some(r.to_string())
            }
        },
    };
    let limit = limit_param(&q)?;
    let offset = u64_param(&q, "offset")?;
    let (tasks, total) = state.store().list_tasks(&user, &filter, limit, offset).await?;
    Ok(Json(TaskListResponse { tasks, total, limit, offset }))
}

pub async fn create_task_route(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<TaskResponse>), AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    let request: CreateTaskRequest = parse_body(&body)?;
    let task = create_task(&state, &user, request).await?;
    Ok((StatusCode::CREATED, Json(TaskResponse { task })))
}

/// `GET /api/cockpit/runner`: whether this relay can run tasks in containers.
pub async fn runner_info(State(state): State<AppState>, auth: Auth) -> Result<Json<RunnerInfoResponse>, AppError> {
    auth.owner()?;
    Ok(Json(RunnerInfoResponse { available: state.runner().is_some() }))
}

pub async fn get_task(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<TaskResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    task_id_param(&id)?;
    let task = state.store().task(&user, &id).await?;
    Ok(Json(TaskResponse { task: task.ok_or_else(AppError::not_found)? }))
}

pub async fn task_events(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<EventsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    task_id_param(&id)?;
    let after = u64_param(&q, "after")?;
    let limit = limit_param(&q)?;
    if state.store().task(&user, &id).await?.is_none() {
        return Err(AppError::not_found());
    }
    let events = state.store().events(&id, after, limit).await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(Json(EventsResponse { events, next_after }))
}

/// Forwards `cancel` to the agent running the task; a task no agent has yet is cancelled here.
pub async fn cancel_task(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TaskResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    task_id_param(&id)?;
    let mut task = state.store().task(&user, &id).await?.ok_or_else(AppError::not_found)?;
    use flightdeck_protocol::desktop::error_codes::{AGENT_OFFLINE, NOT_CANCELLABLE};
    if task.status.is_terminal() {
        return Err(AppError::conflict(NOT_CANCELLABLE, format!("task already {}", task.status.as_str())));
    }
    if let Some(reason) = flightdeck_protocol::rules::cancel_refusal(&task) {
        return Err(AppError::conflict(NOT_CANCELLABLE, reason));
    }
    let cancel = Frame::from(RelayMessage::Cancel { task_id: id.clone() }.to_json());
    if let Some(agent) = &task.agent_id {
        if state.send_to_agent(&user, agent, None, cancel).await? {
            return Ok(Json(TaskResponse { task }));
        }
    }
    // A container whose agent is not connected yet (cloning): stop the container.
    if let Some(runner) = state.runner() {
        if runner.stop(&id) {
            return Ok(Json(TaskResponse { task }));
        }
    }
    if task.status != TaskStatus::Queued {
        return Err(AppError::conflict(AGENT_OFFLINE, "the agent running this task is offline"));
    }
    task.status = TaskStatus::Cancelled;
    task.finished_at = Some(Utc::now());
    let stored = state.store().upsert_task(&user, &task).await?;
    let task = state.publish_task(&user, &id).await?.unwrap_or(stored);
    Ok(Json(TaskResponse { task }))
}

pub async fn repos(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Params,
) -> Result<Json<ReposResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let status = choice_param(&q, "status", REPO_STATES)?;
    let agent = match param(&q, "agentId") {
        None => None,
        Some(a) => {
            names::validate_agent_id(a).map_err(|e| AppError::field("$.agentId", e.to_string()))?;
            Some(a.to_string())
        }
    };
    let limit = limit_param(&q)?;
    let offset = u64_param(&q, "offset")?;
    let (repos, total) = state.store().repos_page(&user, status.as_deref(), agent.as_deref(), limit, offset).await?;
    Ok(Json(ReposResponse { repos, total, limit, offset }))
}

pub async fn alerts(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Params,
) -> Result<Json<AlertsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let severity = choice_param(&q, "severity", SEVERITIES)?;
    let acknowledged = match param(&q, "acknowledged") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => return Err(AppError::field("$.acknowledged", format!("expected true or false, got {v:?}"))),
    };
    let limit = limit_param(&q)?;
    let offset = u64_param(&q, "offset")?;
    let (alerts, total) = state.store().list_alerts(&user, severity.as_deref(), acknowledged, limit, offset).await?;
    Ok(Json(AlertsResponse { alerts, total }))
}

pub async fn ack_alert(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<AlertResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    let mut alert = state.store().alert(&user, &id).await?.ok_or_else(AppError::not_found)?;
    if !alert.acknowledged {
        alert.acknowledged = true;
        alert.acknowledged_at = Some(Utc::now());
        state.store().upsert_alert(&user, &alert).await?;
        state.publish_alert(&user, &id).await?;
    }
    Ok(Json(AlertResponse { alert }))
}

fn secret_box(state: &AppState) -> Result<&secrets::SecretBox, AppError> {
    state
        .secrets()
        .ok_or_else(|| AppError::conflict(NO_RUNNER, "this relay has no [runner]: secrets are for container runs"))
}

/// `GET /api/cockpit/secrets`: names only.
pub async fn list_secrets(State(state): State<AppState>, auth: Auth) -> Result<Json<SecretsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let names = state.store().secret_names(&user).await?;
    Ok(Json(SecretsResponse {
        secrets: names.into_iter().map(|(name, updated_at)| SecretInfo { name, updated_at }).collect(),
    }))
}

/// `PUT /api/cockpit/secrets/:name`.
pub async fn put_secret(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    secrets::validate_name(&name).map_err(|p| AppError::field("$.name", p))?;
    let request: PutSecretRequest = parse_body(&body)?;
    if request.value.len() > secrets::MAX_VALUE_BYTES {
        return Err(AppError::field("$.value", format!("at most {} bytes", secrets::MAX_VALUE_BYTES)));
    }
    if request.value.contains('\0') {
        return Err(AppError::field("$.value", "must not contain NUL"));
    }
    let (nonce, sealed) = secret_box(&state)?.seal(&user, &name, &request.value).map_err(AppError::Internal)?;
    if !state.store().put_secret(&user, &name, &nonce, &sealed, secrets::MAX_SECRETS).await? {
        return Err(AppError::Conflict(format!("at most {} secrets per user", secrets::MAX_SECRETS)));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/cockpit/secrets/:name`.
pub async fn delete_secret(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(&auth, &headers)?;
    secrets::validate_name(&name).map_err(|p| AppError::field("$.name", p))?;
    let found = state.store().delete_secret(&user, &name).await?;
    if !found {
        return Err(AppError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
