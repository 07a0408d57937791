//! HUD pages (`/hud/{user}/{repo}`, `/embed/{user}/{repo}`), a user's dashboard (`/hud/{user}`)
//! and the ways to it (`/`, `/hud`), the ui bundle under `/assets/`, and the HUD API
//! (`/api/hud/session`, `/api/hud/start`, `/api/hud/settings`).
//!
//! A new HUD is private with embedding off. A private HUD is 404 to anyone but its owner and
//! viewers; `/embed` is 403 unless embedding is allowed. Pages carry a
//! `Content-Security-Policy` (see [`csp`]) whose `frame-ancestors` matches.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use flightdeck_protocol::api::{
    CreateTaskRequest, DashboardContext, HudContext, HudSessionResponse, HudSettings, HudStartRequest,
    HudStartResponse, HudStatus,
};
use flightdeck_protocol::{names, ClientMessage, Executor, Task, TaskPayload, TaskStatus, Topic};

use crate::domain::tasks::create_task;
use crate::error::AppError;
use crate::request::parse_body;
use crate::state::{AppState, Auth};

/// The ui bundle built by `ui/build.sh`. Debug builds read it from disk, release builds embed
/// it; a missing bundle is allowed so the relay builds before the ui does.
#[derive(rust_embed::Embed)]
#[folder = "../ui/dist"]
#[allow_missing = true]
struct UiBundle;

const BUNDLE_ENTRY: &str = "flightdeck_ui.js";

fn status_of(task: Option<&Task>) -> HudStatus {
    match task.map(|t| t.status) {
        None => HudStatus::Idle,
        Some(TaskStatus::Queued) => HudStatus::Queued,
        Some(TaskStatus::Running) => HudStatus::Running,
        Some(TaskStatus::Waiting) => HudStatus::Waiting,
        Some(TaskStatus::Completed) => HudStatus::Completed,
        Some(TaskStatus::Failed) => HudStatus::Failed,
        Some(TaskStatus::Cancelled) => HudStatus::Cancelled,
        Some(TaskStatus::Interrupted) => HudStatus::Interrupted,
    }
}

/// `user/repo`, both validated; a bad value is a 400 naming `field`.
fn parse_slug(value: Option<&str>, field: &str) -> Result<(String, String), AppError> {
    let value = value.ok_or_else(|| AppError::field(field, "missing: expected user/repo"))?;
    let (user, repo) = value.split_once('/').ok_or_else(|| AppError::field(field, "expected user/repo"))?;
    names::validate_user(user).map_err(|e| AppError::field(field, format!("user {e}")))?;
    names::validate_repo(repo).map_err(|e| AppError::field(field, format!("repo {e}")))?;
    Ok((user.to_string(), repo.to_string()))
}

/// What a page or the session endpoint needs to know about a HUD.
struct HudFacts {
    settings: HudSettings,
    task: Option<Task>,
    agent_online: bool,
}

async fn facts(state: &AppState, user: &str, repo: &str) -> Result<HudFacts, AppError> {
    let store = state.store();
    Ok(HudFacts {
        settings: store.hud_settings(user, repo).await?,
        task: store.hud_task(user, repo).await?,
        agent_online: store.repo_agent_online(user, repo).await?.is_some(),
    })
}

pub async fn hud_page(
    state: State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path((user, repo)): Path<(String, String)>,
) -> Response {
    page(state, auth, headers, user, repo, false).await
}

pub async fn embed_page(
    state: State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path((user, repo)): Path<(String, String)>,
) -> Response {
    page(state, auth, headers, user, repo, true).await
}

/// The Content-Security-Policy of a HUD response. A page runs exactly its two inline scripts
/// (`window.HUD_CONTEXT` and the module that imports the bundle), marked with `nonce`, and the
/// bundle from `/assets/` ('self'), which compiles its WebAssembly ('wasm-unsafe-eval'); no
/// plugins, no `<base>`. An error page runs no script at all.
pub fn csp(ancestors: &str, nonce: Option<&str>) -> String {
    let scripts = match nonce {
        Some(nonce) => format!("'self' 'nonce-{nonce}' 'wasm-unsafe-eval'"),
        None => "'none'".to_string(),
    };
    format!("script-src {scripts}; object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}")
}

fn with_frame_ancestors(response: Response, ancestors: &str) -> Response {
    with_csp(response, ancestors, None)
}

fn with_csp(mut response: Response, ancestors: &str, nonce: Option<&str>) -> Response {
    if let Ok(value) = HeaderValue::from_str(&csp(ancestors, nonce)) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

async fn page(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    user: String,
    repo: String,
    embed: bool,
) -> Response {
    let deny = "'none'";
    if names::validate_user(&user).is_err() || names::validate_repo(&repo).is_err() {
        return with_frame_ancestors(AppError::not_found().into_response(), deny);
    }
    let facts = match facts(&state, &user, &repo).await {
        Ok(f) => f,
        Err(e) => return with_frame_ancestors(e.into_response(), deny),
    };
    if embed && !facts.settings.embed_allowed {
        let refused = AppError::Forbidden("embedding is not allowed for this HUD".into());
        return with_frame_ancestors(refused.into_response(), deny);
    }
    if !facts.settings.public && !auth.can_view_private(&user) {
        return with_frame_ancestors(AppError::not_found().into_response(), deny);
    }
    let context = HudContext {
        username: user.clone(),
        repo: repo.clone(),
        is_owner: auth.is_owner_of(&user),
        is_public: facts.settings.public,
        embed_mode: embed,
        session_id: facts.task.as_ref().map(|t| t.id.clone()),
        ws_url: state.realtime_url(&headers),
        status: status_of(facts.task.as_ref()),
    };
    let ancestors = if embed { state.settings.embed_frame_ancestors.as_str() } else { deny };
    app_page(&state, &AppPage::Hud(&context), ancestors)
}

/// `/`: a logged-in person goes to their dashboard, anyone else to the login page (which
/// brings them back here, and so to their dashboard).
pub async fn root(auth: Auth) -> Redirect {
    match &auth.principal {
        Some(p) => Redirect::to(&format!("/hud/{}", p.user)),
        None => Redirect::to("/login"),
    }
}

/// `/hud` and `/hud/`: the same as `/`, but an anonymous visitor returns here after login.
pub async fn hud_index(auth: Auth) -> Redirect {
    match &auth.principal {
        Some(p) => Redirect::to(&format!("/hud/{}", p.user)),
        None => Redirect::to("/login?next=/hud"),
    }
}

/// `/hud/{user}/` and `/hud/{user}/{repo}/`: the canonical form has no trailing slash.
pub async fn without_trailing_slash(uri: axum::http::Uri) -> Redirect {
    let path = uri.path().trim_end_matches('/');
    match uri.query() {
        Some(q) => Redirect::permanent(&format!("{path}?{q}")),
        None => Redirect::permanent(path),
    }
}

/// `/hud/{user}`: the user's dashboard (SPEC 12). Anyone may open it: the page lists public
/// repos for everyone (the `dashboard:` topic) and, for the owner, everything else too.
pub async fn dashboard_page(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let deny = "'none'";
    if names::validate_user(&user).is_err() {
        return with_frame_ancestors(AppError::not_found().into_response(), deny);
    }
    match state.store().user_exists(&user).await {
        Ok(true) => {}
        Ok(false) => return with_frame_ancestors(AppError::not_found().into_response(), deny),
        Err(e) => return with_frame_ancestors(AppError::from(e).into_response(), deny),
    }
    let context =
        DashboardContext { is_owner: auth.is_owner_of(&user), username: user, ws_url: state.realtime_url(&headers) };
    app_page(&state, &AppPage::Dashboard(&context), deny)
}

/// What a page of the ui app starts with: the global its script sets.
enum AppPage<'a> {
    Hud(&'a HudContext),
    Dashboard(&'a DashboardContext),
}

/// A page of the ui app, with a fresh script nonce and the given `frame-ancestors`.
fn app_page(state: &AppState, page: &AppPage<'_>, ancestors: &str) -> Response {
    let bundle_present = match &state.settings.ui_dir {
        Some(dir) => dir.join(BUNDLE_ENTRY).is_file(),
        None => UiBundle::get(BUNDLE_ENTRY).is_some(),
    };
    // A fresh nonce per response: only this page's own inline scripts run.
    let nonce = {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        hex::encode(bytes)
    };
    let html = render_page(page, bundle_present, &nonce);
    let mut response = with_csp(Html(html).into_response(), ancestors, Some(&nonce));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// JSON that is safe inside a `<script>` element: `<`, `>` and `&` are escaped.
pub fn script_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .expect("wire types always serialize")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn render_page(page: &AppPage<'_>, bundle_present: bool, nonce: &str) -> String {
    // User and repo names are validated to `[A-Za-z0-9._-]`, so they are safe in HTML as is.
    let (title, global, context, ws_url, topic) = match page {
        AppPage::Hud(c) => (
            format!("{}/{} · Flightdeck HUD", c.username, c.repo),
            "HUD_CONTEXT",
            script_json(c),
            &c.ws_url,
            Topic::Hud { user: c.username.clone(), repo: c.repo.clone() },
        ),
        AppPage::Dashboard(c) => (
            format!("{} · Flightdeck", c.username),
            "DASHBOARD_CONTEXT",
            script_json(c),
            &c.ws_url,
            Topic::Dashboard { user: c.username.clone() },
        ),
    };
    // The page's main topic is asked for while the bundle still loads: the snapshot (a whole
    // transcript) is on its way by the time the app starts, and the app adopts this socket
    // (ui/src/realtime.rs, `EARLY_SOCKET`). A socket that fails is simply not adopted.
    let early = format!(
        "(function(){{try{{var e={{url:{url},topics:[{name}],frames:[]}},s=new WebSocket(e.url,{lines});e.socket=s;\
         s.onmessage=function(m){{e.frames.push(m.data)}};s.onopen=function(){{s.send({subscribe})}};\
         window.FLIGHTDECK_EARLY_SOCKET=e}}catch(_){{}}}})();",
        url = script_json(ws_url),
        lines = script_json(&flightdeck_protocol::realtime::LINES_SUBPROTOCOL),
        name = script_json(&topic.to_string()),
        subscribe = script_json(&ClientMessage::Subscribe { topics: vec![topic.to_string()] }.to_json()),
    );
    let notice = if bundle_present {
        String::new()
    } else {
        "<p class=\"fd-notice\" role=\"alert\">The Flightdeck HUD bundle is not built on this relay: \
         run <code>ui/build.sh</code> and rebuild the relay (or set <code>ui_dir</code>).</p>\n"
            .to_string()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         <link rel=\"icon\" href=\"/favicon.ico\" type=\"image/png\">\n\
         <link rel=\"stylesheet\" href=\"/assets/style.css\">\n\
         <link rel=\"manifest\" href=\"/manifest.webmanifest\">\n<meta name=\"theme-color\" content=\"{THEME_BACKGROUND}\">\n\
         <link rel=\"apple-touch-icon\" href=\"/assets/web-192.png\">\n\
         <script src=\"/assets/push.js\" async></script>\n\
         <script nonce=\"{nonce}\">{early}\nwindow.{global} = {context};</script>\n</head>\n<body>\n{notice}\
         <div id=\"app\"></div>\n<script type=\"module\" nonce=\"{nonce}\">import init from \"/assets/flightdeck_ui.js\"; \
         init();</script>\n</body>\n</html>\n",
    )
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or_default() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "webmanifest" => "application/manifest+json",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The app's icon (`icons/32x32.png`, made by `icons/make-icons.sh`), for the tab of every
/// page: browsers ask for `/favicon.ico` whatever a page links, and a PNG there is understood.
pub async fn favicon() -> Response {
    const ICON: &[u8] = include_bytes!("../../icons/32x32.png");
    let mut response = Bytes::from_static(ICON).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    response
}

/// One file of the ui bundle by its plain name (no directories, no traversal).
async fn bundle_file(state: &AppState, file: &str) -> Result<Vec<u8>, AppError> {
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && !file.contains("..")
        && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return Err(AppError::not_found());
    }
    match &state.settings.ui_dir {
        Some(dir) => tokio::fs::read(dir.join(file)).await.map_err(|_| AppError::not_found()),
        None => Ok(UiBundle::get(file).ok_or_else(AppError::not_found)?.data.into_owned()),
    }
}

pub async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Result<Response, AppError> {
    let data = bundle_file(&state, &file).await?;
    let mut response = Bytes::from(data).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// The service worker (`ui/static/sw.js`), at the root so its scope is the whole relay
/// (SPEC 13): the offline shell and the push handler. Always revalidated, so a new relay's
/// worker replaces the old one at the next visit.
pub async fn service_worker(State(state): State<AppState>) -> Result<Response, AppError> {
    let data = bundle_file(&state, "sw.js").await?;
    let mut response = Bytes::from(data).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("service-worker-allowed", HeaderValue::from_static("/"));
    Ok(response)
}

/// The web app manifest (SPEC 13): what a browser needs to install the HUD as an app that
/// opens on the owner's dashboard (`/` sends a logged-in owner there).
pub async fn manifest() -> Response {
    let manifest = serde_json::json!({
        "id": "/",
        "name": "Flightdeck",
        "short_name": "Flightdeck",
        "description": "Your coding agents: their tasks, their questions, your decisions.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": THEME_BACKGROUND,
        "theme_color": THEME_BACKGROUND,
        "icons": [
            {"src": "/assets/web-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "/assets/web-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": "/assets/web-maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
    });
    let mut response = Json(manifest).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/manifest+json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The colour of the app's window frame and splash screen: the ui's page background.
const THEME_BACKGROUND: &str = "#0f1216";

pub async fn session(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<HudSessionResponse>, AppError> {
    let (user, repo) = parse_slug(q.get("repo").map(String::as_str), "$.repo")?;
    let facts = facts(&state, &user, &repo).await?;
    if !facts.settings.public && !auth.can_view_private(&user) {
        return Err(AppError::not_found());
    }
    let owner = auth.is_owner_of(&user);
    let runner = owner && state.runner().is_some();
    let remote_known = state.store().repo(&user, &repo).await?.is_some_and(|(s, _)| s.remote_url.is_some());
    let runner_available = runner && remote_known;
    let runner_needs_clone_url = runner && !remote_known;
    let reason = if !owner {
        Some("only the owner can start a task".to_string())
    } else if !facts.agent_online && runner_needs_clone_url {
        Some(
            "no agent with this repo is online, and it has no origin remote: give a clone URL to run it in a container"
                .to_string(),
        )
    } else if !facts.agent_online && !runner_available {
        Some("no agent with this repo is online".to_string())
    } else {
        None
    };
    let executors = if !owner {
        Vec::new()
    } else if let Some(agent_id) = state.store().repo_agent_online(&user, &repo).await? {
        let capabilities = state.store().agent(&user, &agent_id).await?.map(|a| a.capabilities).unwrap_or_default();
        start_executors(&capabilities)
    } else if runner {
        // A container's agent is this relay's image of flightdeck-agent: claude and shell.
        start_executors(&[])
    } else {
        Vec::new()
    };
    Ok(Json(HudSessionResponse {
        status: status_of(facts.task.as_ref()),
        can_start: reason.is_none(),
        reason,
        session_id: facts.task.as_ref().map(|t| t.id.clone()),
        ws_url: Some(state.realtime_url(&headers)),
        runner_available,
        runner_needs_clone_url,
        executors,
    }))
}

/// What a start form offers for an agent with these capabilities: `claude`, `shell` and each
/// `acp:<name>`, in that order. An agent that reports none of them (one older than capabilities)
/// runs claude and shell.
fn start_executors(capabilities: &[String]) -> Vec<String> {
    let runs = |c: &String| c == "claude" || c == "shell" || c.strip_prefix("acp:").is_some_and(|n| !n.is_empty());
    let mut executors: Vec<String> = capabilities.iter().filter(|c| runs(c)).cloned().collect();
    if executors.is_empty() {
        executors = vec!["claude".into(), "shell".into()];
    }
    let rank = |e: &String| match e.as_str() {
        "claude" => 0,
        "shell" => 1,
        _ => 2,
    };
    executors.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    executors.dedup();
    executors
}

/// Starts a task from the HUD: claude (the default), shell (the prompt is the command) or an
/// ACP agent (`executor: "acp"` with `agent`, SPEC 14), on
/// the repo's agent or in a container (with the owner's `cloneUrl` when the repo has no
/// `origin`). Owner only; with a session cookie the request must
/// carry a same-origin `Origin` (bearer keys are exempt: a browser never sends them itself).
pub async fn start(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<HudStartResponse>), AppError> {
    let principal = auth.owner()?.clone();
    state.check_same_origin(&auth, &headers)?;
    let request: HudStartRequest = parse_body(&body)?;
    let (user, repo) = parse_slug(Some(&request.repo), "$.repo")?;
    if user != principal.user {
        return Err(AppError::Forbidden("only the owner can start a task".into()));
    }
    if request.prompt.trim().is_empty() {
        return Err(AppError::field("$.prompt", "must not be empty"));
    }
    let executor = request.executor.unwrap_or(if request.agent.is_some() { Executor::Acp } else { Executor::Claude });
    let agent = request.agent.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    let payload = match (executor, agent) {
        (Executor::Claude, None) => TaskPayload { prompt: Some(request.prompt), ..TaskPayload::default() },
        (Executor::Shell, None) => TaskPayload { command: Some(request.prompt), ..TaskPayload::default() },
        (Executor::Acp, Some(agent)) => {
            TaskPayload { prompt: Some(request.prompt), agent: Some(agent), ..TaskPayload::default() }
        }
        (Executor::Acp, None) => return Err(AppError::field("$.agent", "names the ACP agent to run (executor acp)")),
        (_, Some(_)) => return Err(AppError::field("$.agent", "is only for executor acp")),
    };
    let clone_url = request.clone_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    let create = CreateTaskRequest {
        title: None,
        executor,
        repo,
        payload,
        agent_id: None,
        placement: request.placement,
        clone_url,
    };
    let task = create_task(&state, &user, create).await?;
    Ok((StatusCode::CREATED, Json(HudStartResponse { session_id: task.id, ws_url: state.realtime_url(&headers) })))
}

pub async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<HudSettings>, AppError> {
    auth.required()?;
    let (user, repo) = parse_slug(q.get("repo").map(String::as_str), "$.repo")?;
    if !auth.can_view_private(&user) {
        return Err(AppError::forbidden());
    }
    Ok(Json(state.store().hud_settings(&user, &repo).await?))
}

/// Changes a HUD's settings. Turning a HUD private drops its anonymous and foreign viewers
/// at once (they get `error {topic, message: "forbidden"}`).
pub async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<HudSettings>, AppError> {
    auth.required()?;
    let (user, repo) = parse_slug(q.get("repo").map(String::as_str), "$.repo")?;
    if !auth.is_owner_of(&user) {
        return Err(AppError::forbidden());
    }
    state.check_same_origin(&auth, &headers)?;
    let settings: HudSettings = parse_body(&body)?;
    let was_public = state.store().hud_settings(&user, &repo).await?.public;
    state.store().set_hud_settings(&user, &repo, settings).await?;
    if was_public != settings.public {
        state.publish_dashboard(&user, &repo, was_public).await?;
    }
    if !settings.public {
        crate::domain::publish::evict_unprivileged(&state, &user, &repo);
        if let Some(broker) = state.hub.broker() {
            broker.send(flightdeck_protocol::broker::BrokerMessage::HudPrivate {
                node: broker.node().to_string(),
                user: user.clone(),
                repo: repo.clone(),
            });
        }
    }
    Ok(Json(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_context_cannot_break_out_of_its_script() {
        let context = HudContext {
            username: "alice".into(),
            repo: "r".into(),
            is_owner: false,
            is_public: true,
            embed_mode: false,
            session_id: Some("</script><script>alert(1)</script>".into()),
            ws_url: "ws://x/api/realtime".into(),
            status: HudStatus::Idle,
        };
        let html = render_page(&AppPage::Hud(&context), true, "n0nce");
        // The page's own three: the context, push.js and the bundle's module.
        assert_eq!(html.matches("</script>").count(), 3, "{html}");
        assert!(html.contains("\\u003c/script\\u003e"));
        assert!(!html.contains("fd-notice"));
        assert!(render_page(&AppPage::Hud(&context), false, "n0nce").contains("fd-notice"));
    }

    #[test]
    fn a_start_form_offers_what_the_agent_runs() {
        let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(start_executors(&caps(&["git", "shell", "claude"])), ["claude", "shell"]);
        assert_eq!(start_executors(&caps(&["git", "acp:codex", "shell", "acp:"])), ["shell", "acp:codex"]);
        assert_eq!(start_executors(&caps(&["git"])), ["claude", "shell"]);
        assert_eq!(start_executors(&[]), ["claude", "shell"]);
    }

    #[test]
    fn pages_link_the_web_app() {
        let context =
            DashboardContext { username: "alice".into(), is_owner: true, ws_url: "ws://x/api/realtime".into() };
        let html = render_page(&AppPage::Dashboard(&context), true, "n0nce");
        assert!(html.contains("<link rel=\"manifest\" href=\"/manifest.webmanifest\">"), "{html}");
        assert!(html.contains("<script src=\"/assets/push.js\" async></script>"), "{html}");
    }

    #[test]
    fn slugs_are_validated() {
        assert_eq!(parse_slug(Some("alice/repo"), "$.repo").unwrap(), ("alice".into(), "repo".into()));
        for bad in ["alice", "alice/..", "../x/y", "al ice/r", "alice/a/b"] {
            assert!(parse_slug(Some(bad), "$.repo").is_err(), "{bad}");
        }
    }
}
