//! Where requests go: the relay's REST API, or the local agent through Tauri commands.
//! Views call these methods and never care which one they talk to.

use flightdeck_protocol::api::{
    AlertResponse, ApiError, ConversationResponse, CreateTaskRequest, DecisionRequest, EventsResponse,
    HudSessionResponse, HudSettings, HudStartRequest, HudStartResponse, ReplyRequest, TaskResponse,
};
use flightdeck_protocol::desktop::{ClaudeHooks, DecideRequest, ReplyTaskRequest, SettingsUpdate, SettingsView};
use flightdeck_protocol::{RepoStatus, Task};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::js_message;
use crate::tauri;

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// The relay's REST API under `base` ("" for the page's own origin; cookies go along).
    Relay { base: String },
    /// The local agent, through the desktop shell's Tauri commands.
    Tauri,
}

/// A request that did not succeed. Views match on `code`, never on `status`: the desktop's
/// commands have codes but no HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status, when the relay answered.
    pub status: Option<u16>,
    /// Why, as the relay or the local agent says it: one of
    /// `flightdeck_protocol::desktop::error_codes` (`not_pending`, `turn_in_progress` ...), when
    /// it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    fn network(e: JsValue) -> Failure {
        Failure { status: None, code: None, message: format!("network error: {}", js_message(&e)) }
    }

    /// A relay's answer outside 2xx: its `{"error": {code, message}}`, or just the status.
    pub fn from_http(status: u16, body: &str) -> Failure {
        match serde_json::from_str::<ApiError>(body) {
            Ok(e) => Failure { status: Some(status), code: Some(e.error.code), message: e.error.message },
            Err(_) => Failure { status: Some(status), code: None, message: format!("HTTP {status}") },
        }
    }

    /// Whether the relay or the local agent gave this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The caller may not do this: polling stops instead of retrying (401, 403, 404).
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, Some(401 | 403 | 404))
    }

    /// There was an answer: the API is reachable, whatever it said.
    pub fn reached_server(&self) -> bool {
        self.status.is_some()
    }
}

/// A command's failure: the shell's code and message, or what went wrong on the way.
impl From<tauri::InvokeError> for Failure {
    fn from(e: tauri::InvokeError) -> Failure {
        match e {
            tauri::InvokeError::Command(e) => Failure { status: None, code: Some(e.code), message: e.message },
            tauri::InvokeError::Other(message) => Failure { status: None, code: None, message },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Percent-encodes a query value (repo names are `user/repo`).
fn q(value: &str) -> String {
    String::from(js_sys::encode_uri_component(value))
}

impl Backend {
    fn url(&self, path: &str) -> String {
        match self {
            Backend::Relay { base } => format!("{}{path}", base.trim_end_matches('/')),
            Backend::Tauri => path.to_string(),
        }
    }

    async fn http<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<String>) -> Result<T, Failure> {
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        // Same-origin pages send the session cookie; a cross-origin relay (cockpit with
        // `?relay=`) needs `include`.
        init.set_credentials(web_sys::RequestCredentials::Include);
        let headers = web_sys::Headers::new().map_err(Failure::network)?;
        headers.set("accept", "application/json").map_err(Failure::network)?;
        if let Some(body) = &body {
            headers.set("content-type", "application/json").map_err(Failure::network)?;
            init.set_body(&JsValue::from_str(body));
        }
        init.set_headers(&headers);
        let window =
            web_sys::window().ok_or_else(|| Failure { status: None, code: None, message: "no window".into() })?;
        let response =
            JsFuture::from(window.fetch_with_str_and_init(&self.url(path), &init)).await.map_err(Failure::network)?;
        let response: web_sys::Response = response.unchecked_into();
        let status = response.status();
        let text = match response.text() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
            Err(_) => String::new(),
        };
        if !(200..300).contains(&status) {
            return Err(Failure::from_http(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| Failure {
            status: Some(status),
            code: None,
            message: format!("bad answer: {e}"),
        })
    }

    async fn call<A: Serialize, T: DeserializeOwned>(&self, command: &str, args: &A) -> Result<T, Failure> {
        tauri::invoke(command, args).await.map_err(Failure::from)
    }

    /// Whether the API answers at all (`GET /healthz`, or the `health` command).
    pub async fn health(&self) -> bool {
        match self {
            Backend::Relay { .. } => {
                self.http::<flightdeck_protocol::api::Health>("GET", "/healthz", None).await.is_ok()
            }
            Backend::Tauri => {
                self.call::<_, serde_json::Value>(tauri::commands::HEALTH, &tauri::NoArgs {}).await.is_ok()
            }
        }
    }

    /// The polling fallback: events of a task after `after`.
    pub async fn task_events(&self, task_id: &str, after: u64) -> Result<EventsResponse, Failure> {
        match self {
            Backend::Relay { .. } => {
                self.http("GET", &format!("/api/cockpit/tasks/{}/events?after={after}&limit=500", q(task_id)), None)
                    .await
            }
            Backend::Tauri => {
                self.call(tauri::commands::TASK_EVENTS, &tauri::TaskEventsArgs { task_id: task_id.into(), after }).await
            }
        }
    }

    pub async fn ack_alert(&self, id: &str) -> Result<AlertResponse, Failure> {
        match self {
            Backend::Relay { .. } => self.http("POST", &format!("/api/cockpit/alerts/ack/{}", q(id)), None).await,
            Backend::Tauri => self.call(tauri::commands::ACK_ALERT, &tauri::IdArgs { id: id.into() }).await,
        }
    }

    pub async fn create_task(&self, request: &CreateTaskRequest) -> Result<TaskResponse, Failure> {
        match self {
            Backend::Relay { .. } => self.http("POST", "/api/cockpit/tasks", Some(to_json(request))).await,
            Backend::Tauri => {
                self.call(tauri::commands::CREATE_TASK, &tauri::CreateTaskArgs { request: request.clone() }).await
            }
        }
    }

    /// Cancels a task; answers its state when the cancel was requested.
    pub async fn cancel_task(&self, task_id: &str) -> Result<Task, Failure> {
        match self {
            Backend::Relay { .. } => self
                .http::<TaskResponse>("POST", &format!("/api/cockpit/tasks/{}/cancel", q(task_id)), None)
                .await
                .map(|r| r.task),
            Backend::Tauri => {
                self.call(tauri::commands::CANCEL_TASK, &tauri::TaskIdArgs { task_id: task_id.into() }).await
            }
        }
    }

    /// Decides a pending permission request (SPEC 8); answers the task's state. The code
    /// `not_pending` means the request is no longer pending (someone else decided, or the task
    /// ended).
    pub async fn decide(&self, task_id: &str, request_id: &str, decision: &DecisionRequest) -> Result<Task, Failure> {
        match self {
            Backend::Relay { .. } => self
                .http::<TaskResponse>(
                    "POST",
                    &format!("/api/cockpit/tasks/{}/permissions/{}", q(task_id), q(request_id)),
                    Some(to_json(decision)),
                )
                .await
                .map(|r| r.task),
            Backend::Tauri => {
                let request = DecideRequest {
                    task_id: task_id.into(),
                    request_id: request_id.into(),
                    behavior: decision.behavior,
                    updated_input: decision.updated_input.clone(),
                    message: decision.message.clone(),
                };
                self.call(tauri::commands::DECIDE_PERMISSION, &tauri::DecideArgs { request }).await
            }
        }
    }

    /// Sends a follow-up turn to a task's conversation; answers the new turn.
    pub async fn reply(&self, task_id: &str, reply: &ReplyRequest) -> Result<Task, Failure> {
        match self {
            Backend::Relay { .. } => self
                .http::<TaskResponse>("POST", &format!("/api/cockpit/tasks/{}/reply", q(task_id)), Some(to_json(reply)))
                .await
                .map(|r| r.task),
            Backend::Tauri => {
                let request = ReplyTaskRequest {
                    task_id: task_id.into(),
                    prompt: reply.prompt.clone(),
                    permission_mode: reply.permission_mode.clone(),
                    allowed_tools: reply.allowed_tools.clone(),
                };
                self.call(tauri::commands::REPLY_TASK, &tauri::ReplyArgs { request }).await
            }
        }
    }

    /// Every turn of a conversation, oldest first. The relay only: the desktop's task list
    /// already holds the turns.
    pub async fn conversation(&self, conversation_id: &str) -> Result<Vec<Task>, Failure> {
        match self {
            Backend::Relay { .. } => self
                .http::<ConversationResponse>(
                    "GET",
                    &format!("/api/cockpit/conversations/{}", q(conversation_id)),
                    None,
                )
                .await
                .map(|r| r.tasks),
            Backend::Tauri => Ok(Vec::new()),
        }
    }

    /// The desktop agent's settings (desktop only).
    pub async fn desktop_settings(&self) -> Result<SettingsView, Failure> {
        self.call(tauri::commands::GET_SETTINGS, &tauri::NoArgs {}).await
    }

    pub async fn set_desktop_settings(&self, update: SettingsUpdate) -> Result<SettingsView, Failure> {
        self.call(tauri::commands::SET_SETTINGS, &tauri::SettingsArgs { update }).await
    }

    /// Asks for a folder with the system picker and watches it (desktop only); `None` when cancelled.
    pub async fn pick_repo(&self) -> Result<Option<RepoStatus>, Failure> {
        self.call(tauri::commands::PICK_REPO, &tauri::NoArgs {}).await
    }

    /// Stops watching a repo (by id, name or path) and forgets it (desktop only).
    pub async fn remove_repo(&self, id: String) -> Result<(), Failure> {
        self.call(tauri::commands::REMOVE_REPO, &tauri::IdArgs { id }).await
    }

    pub async fn set_watching_paused(&self, paused: bool) -> Result<(), Failure> {
        self.call(tauri::commands::SET_WATCHING_PAUSED, &tauri::PausedArgs { paused }).await
    }

    /// Whether Claude Code's hooks reach this agent (desktop only).
    pub async fn claude_hooks(&self) -> Result<ClaudeHooks, Failure> {
        self.call(tauri::commands::CLAUDE_HOOKS, &tauri::NoArgs {}).await
    }

    pub async fn set_claude_hooks(&self, installed: bool) -> Result<ClaudeHooks, Failure> {
        self.call(tauri::commands::SET_CLAUDE_HOOKS, &tauri::InstalledArgs { installed }).await
    }

    pub async fn open_hud(&self, repo: Option<String>) -> Result<(), Failure> {
        self.call(tauri::commands::OPEN_HUD, &tauri::RepoArgs { repo }).await
    }

    pub async fn hud_session(&self, repo: &str) -> Result<HudSessionResponse, Failure> {
        self.http("GET", &format!("/api/hud/session?repo={}", q(repo)), None).await
    }

    pub async fn hud_start(&self, request: &HudStartRequest) -> Result<HudStartResponse, Failure> {
        self.http("POST", "/api/hud/start", Some(to_json(request))).await
    }

    pub async fn hud_settings(&self, repo: &str) -> Result<HudSettings, Failure> {
        self.http("GET", &format!("/api/hud/settings?repo={}", q(repo)), None).await
    }

    pub async fn put_hud_settings(&self, repo: &str, settings: &HudSettings) -> Result<HudSettings, Failure> {
        self.http("PUT", &format!("/api/hud/settings?repo={}", q(repo)), Some(to_json(settings))).await
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("protocol types always serialize")
}
