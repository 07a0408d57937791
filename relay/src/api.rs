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
    LoginResponse, PlacementRequest, ReposResponse, RunnerInfoResponse, TaskListResponse, TaskResponse,
};
use flightdeck_protocol::desktop::error_codes::{NO_CLONE_URL, NO_RUNNER, RUNNER_QUEUE_FULL};
use flightdeck_protocol::realtime::validate_task_id;
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::validate::parse_strict;
use flightdeck_protocol::Placement;
use flightdeck_protocol::{names, RelayMessage, Task, TaskSource, TaskStatus, Topic, MAX_SEQ};

use crate::db::{Db, TaskFilter};
use crate::error::AppError;
use crate::hub::{Frame, TopicKey};
use crate::state::{session_cookie, AppState, Auth, ClientIp, SESSION_COOKIE};

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

/// Parses a JSON body strictly; problems come back as a 400 naming each field.
pub fn parse_body<T>(body: &Bytes) -> Result<T, AppError>
where
    T: serde::de::DeserializeOwned + schemars::JsonSchema + 'static,
{
    let text = std::str::from_utf8(body).map_err(|_| AppError::field("$", "body is not UTF-8"))?;
    Ok(parse_strict::<T>(text)?)
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
const EXECUTORS: &[&str] = &["claude", "shell"];
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
    let found = state
        .db(move |db, _| {
            let Some(principal) = db.principal_by_key(&request.token)? else { return Ok(None) };
            if principal.scope == KeyScope::Agent {
                return Ok(Some((principal, None)));
            }
            let session = db.create_session(&principal.key_id, ttl)?;
            Ok(Some((principal, Some(session))))
        })
        .await?;
    let Some((principal, session)) = found else { return Err(AppError::InvalidKey) };
    let Some(session) = session else {
        return Err(AppError::Forbidden("agent keys cannot log in".into()));
    };
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
        state.db(move |db, _| Ok(db.delete_session(&session)?)).await?;
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
    let agents = state.db(move |db, _| Ok(db.agents(&user)?)).await?;
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
    let (tasks, total) = state.db(move |db, _| Ok(db.list_tasks(&user, &filter, limit, offset)?)).await?;
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
    let task = state
        .db(move |db, st| {
            let mut task = task;
            let remote = || -> Result<Option<String>, AppError> {
                Ok(clone_url.clone().or(db.repo(&user, &task.repo)?.and_then(|(r, _)| r.remote_url)))
            };
            let container = match placement {
                PlacementRequest::Agent => false,
                PlacementRequest::Container => true,
                // An online agent with the repo (or the one named), else a container when the
                // relay can start one for this repo, else wait for an agent.
                PlacementRequest::Auto => {
                    let agent_online = match &task.agent_id {
                        Some(agent) => st.agent_reachable(db, &user, agent)?,
                        None => match db.repo_agent_online(&user, &task.repo)? {
                            Some(agent) => st.agent_reachable(db, &user, &agent)?,
                            None => false,
                        },
                    };
                    !agent_online && has_runner && remote()?.is_some()
                }
            };
            if !container {
                task.placement = Some(Placement::Agent);
                return store_and_dispatch(db, st, &user, &task);
            }
            let url = remote()?.ok_or_else(|| {
                AppError::conflict(
                    NO_CLONE_URL,
                    "no clone URL for this repo: its agent reported no origin remote; give cloneUrl",
                )
            })?;
            validate_clone_url(&url).map_err(|p| AppError::field("$.cloneUrl", p))?;
            if db.queued_runs()? >= max_queued {
                return Err(AppError::conflict(
                    RUNNER_QUEUE_FULL,
                    format!("{max_queued} container tasks are already waiting; try again when some have ended"),
                ));
            }
            task.placement = Some(Placement::Container);
            task.agent_id = Some(crate::runner::Runner::agent_id_for(&task.id));
            // A container's work is lost with it unless pushed.
            task.payload.push.get_or_insert(true);
            let stored = db.upsert_task(&user, &task)?;
            db.add_run(&user, &task.id, &url)?;
            st.publish_task(db, &user, &stored)?;
            Ok(stored)
        })
        .await?;
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

/// `GET /api/cockpit/runner`: whether this relay can run tasks in containers.
pub async fn runner_info(State(state): State<AppState>, auth: Auth) -> Result<Json<RunnerInfoResponse>, AppError> {
    auth.owner()?;
    Ok(Json(RunnerInfoResponse { available: state.runner().is_some() }))
}

/// Stores and publishes a new task and sends it to its agent; it waits `queued` when that agent
/// is offline. Returns the task as stored (with the agent it went to).
pub fn store_and_dispatch(db: &Db, st: &AppState, user: &str, task: &Task) -> Result<Task, AppError> {
    let stored = db.upsert_task(user, task)?;
    st.publish_task(db, user, &stored)?;
    st.dispatch(db, user, &stored)?;
    Ok(db.task(user, &stored.id)?.unwrap_or(stored))
}

pub fn task_id_param(id: &str) -> Result<(), AppError> {
    validate_task_id(id).map_err(|_| AppError::not_found())
}

pub async fn get_task(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<TaskResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    task_id_param(&id)?;
    let task = state.db(move |db, _| Ok(db.task(&user, &id)?)).await?;
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
    let events = state
        .db(move |db, _| {
            if db.task(&user, &id)?.is_none() {
                return Err(AppError::not_found());
            }
            Ok(db.events(&id, after, limit)?)
        })
        .await?;
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
    let task = state
        .db(move |db, st| {
            let mut task = db.task(&user, &id)?.ok_or_else(AppError::not_found)?;
            if task.status.is_terminal() {
                return Err(AppError::Conflict(format!("task already {}", task.status.as_str())));
            }
            if let Some(reason) = flightdeck_protocol::rules::cancel_refusal(&task) {
                return Err(AppError::conflict(flightdeck_protocol::desktop::error_codes::NOT_CANCELLABLE, reason));
            }
            let cancel = Frame::from(RelayMessage::Cancel { task_id: id.clone() }.to_json());
            if let Some(agent) = &task.agent_id {
                if st.send_to_agent(db, &user, agent, None, cancel)? {
                    return Ok(task);
                }
            }
            // A container whose agent is not connected yet (cloning): stop the container.
            if let Some(runner) = st.runner() {
                if runner.stop(&id) {
                    return Ok(task);
                }
            }
            if task.status != TaskStatus::Queued {
                return Err(AppError::Conflict("the agent running this task is offline".into()));
            }
            task.status = TaskStatus::Cancelled;
            task.finished_at = Some(Utc::now());
            let stored = db.upsert_task(&user, &task)?;
            st.publish_task(db, &user, &stored)?;
            Ok(stored)
        })
        .await?;
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
    let (repos, total) =
        state.db(move |db, _| Ok(db.repos_page(&user, status.as_deref(), agent.as_deref(), limit, offset)?)).await?;
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
    let (alerts, total) =
        state.db(move |db, _| Ok(db.list_alerts(&user, severity.as_deref(), acknowledged, limit, offset)?)).await?;
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
    let alert = state
        .db(move |db, st| {
            let mut alert = db.alert(&user, &id)?.ok_or_else(AppError::not_found)?;
            if !alert.acknowledged {
                alert.acknowledged = true;
                alert.acknowledged_at = Some(Utc::now());
                db.upsert_alert(&user, &alert)?;
                st.hub.publish(&TopicKey::new(&user, Topic::Alerts), &alert);
            }
            Ok(alert)
        })
        .await?;
    Ok(Json(AlertResponse { alert }))
}
