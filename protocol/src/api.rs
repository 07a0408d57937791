//! Bodies of the relay's HTTP API (SPEC section 4) and the HUD page context.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::SeqEvent;
use crate::model::{AgentInfo, Alert, Executor, RepoStatus, Task, TaskPayload};

/// Every error answer: `{"error": {code, message, details?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ApiErrorBody {
    /// A stable, machine-matchable code such as `bad_request`, `unauthorized`, `not_found`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { error: ApiErrorBody { code: code.into(), message: message.into(), details: None } }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.error.details = Some(details);
        self
    }
}

/// `GET /healthz`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Health {
    pub status: String,
}

/// `POST /api/login`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LoginRequest {
    pub token: String,
}

/// `POST /api/login` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct LoginResponse {
    pub user: String,
    pub scope: KeyScope,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Connect as an agent and publish.
    Agent,
    /// REST, HUD control, read everything of its user.
    Owner,
    /// Read one user's private HUDs.
    Viewer,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Agent => "agent",
            KeyScope::Owner => "owner",
            KeyScope::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<KeyScope> {
        Some(match s {
            "agent" => KeyScope::Agent,
            "owner" => KeyScope::Owner,
            "viewer" => KeyScope::Viewer,
            _ => return None,
        })
    }
}

/// `GET /api/cockpit/agents`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AgentsResponse {
    pub agents: Vec<AgentInfo>,
    pub count: usize,
}

/// `GET /api/cockpit/tasks`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TaskListResponse {
    pub tasks: Vec<Task>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `POST /api/cockpit/tasks`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CreateTaskRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub executor: Executor,
    pub repo: String,
    pub payload: TaskPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /api/cockpit/tasks/:id/reply`: a follow-up turn of the task's conversation (SPEC 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ReplyRequest {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
}

/// `POST /api/cockpit/tasks/:id/permissions/:requestId`: the owner's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DecisionRequest {
    pub behavior: crate::event::Behavior,
    /// The tool input to run with (a question's answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Value>,
    /// Why (a deny's message reaches Claude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /api/cockpit/conversations/:conversationId`: every turn, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ConversationResponse {
    pub tasks: Vec<Task>,
}

/// `{task}`: the answer of task creation, lookup and cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TaskResponse {
    pub task: Task,
}

/// `GET /api/cockpit/tasks/:id/events?after=N&limit=`: the polling fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct EventsResponse {
    pub events: Vec<SeqEvent>,
    /// Pass as `after` on the next poll.
    #[schemars(range(max = crate::MAX_SEQ))]
    pub next_after: u64,
}

/// `GET /api/cockpit/repos?status=&agentId=&limit=&offset=`: a page of repos by name (limit
/// 50 by default, 500 at most) and how many match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReposResponse {
    pub repos: Vec<RepoStatus>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /api/cockpit/alerts`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AlertsResponse {
    pub alerts: Vec<Alert>,
    pub total: u64,
}

/// `POST /api/cockpit/alerts/ack/:id`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AlertResponse {
    pub alert: Alert,
}

/// The state of a HUD's repo, as `HUD_CONTEXT.status` and `/api/hud/session` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HudStatus {
    Idle,
    Queued,
    Running,
    /// The current task waits for the owner's decision.
    Waiting,
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

/// `window.HUD_CONTEXT` on `/hud/:user/:repo` and `/embed/:user/:repo` (seed 000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HudContext {
    pub username: String,
    pub repo: String,
    pub is_owner: bool,
    pub is_public: bool,
    pub embed_mode: bool,
    /// The current or last task of the repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The realtime endpoint to connect to (`ws://` or `wss://`).
    pub ws_url: String,
    pub status: HudStatus,
}

/// `window.DASHBOARD_CONTEXT` on `/hud/:user`, the user's dashboard (SPEC 12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DashboardContext {
    pub username: String,
    /// The page was opened by the user's owner key: private repos, agents, tasks and alerts
    /// come from the owner-only topics.
    pub is_owner: bool,
    /// The realtime endpoint to connect to (`ws://` or `wss://`).
    pub ws_url: String,
}

/// `GET /api/hud/session?repo=user/repo`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HudSessionResponse {
    pub status: HudStatus,
    /// True when the caller is the owner and an agent with the repo is online.
    pub can_start: bool,
    /// Why `canStart` is false, for the start form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
}

/// `POST /api/hud/start`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HudStartRequest {
    /// `user/repo`
    pub repo: String,
    pub prompt: String,
}

/// `POST /api/hud/start` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HudStartResponse {
    pub session_id: String,
    pub ws_url: String,
}

/// `GET|PUT /api/hud/settings?repo=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HudSettings {
    pub public: bool,
    pub embed_allowed: bool,
}
