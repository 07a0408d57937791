//! Bodies of the relay's HTTP API (SPEC section 4) and the HUD page context.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::SeqEvent;
use crate::model::{AgentInfo, Alert, Executor, RepoStatus, Task, TaskPayload};
use crate::Timestamp;

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
    /// Where to run it (SPEC 10); `auto` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementRequest>,
    /// The URL a container run clones (default: the `remoteUrl` the owner's agent reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
}

/// `placement` of a new task: `auto` runs it on an online agent that has the repo, else in a
/// container when the relay has a runner and a clone URL, else it waits `queued` for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementRequest {
    #[default]
    Auto,
    Agent,
    Container,
}

/// `PUT /api/cockpit/secrets/:name`: a per-user secret for container runs (write-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PutSecretRequest {
    pub value: String,
}

/// A stored secret as `GET /api/cockpit/secrets` lists it: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SecretInfo {
    pub name: String,
    pub updated_at: Timestamp,
}

/// `GET /api/cockpit/secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SecretsResponse {
    pub secrets: Vec<SecretInfo>,
}

/// `GET /api/hud/session` and the cockpit learn from this whether container runs exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RunnerInfoResponse {
    /// A runner is configured: `placement: container` can be asked for.
    pub available: bool,
}

/// What `flightdeck-agent run --once` prints as its last line on stdout: the relay reads it
/// from the container's log after the container exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct OnceReport {
    pub task_id: String,
    /// The task's final status as the agent recorded it (absent: it never got the task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::TaskStatus>,
    /// The branch pushed (`flightdeck/<taskId>`), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_branch: Option<String>,
    /// The commit pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_commit: Option<String>,
    /// What went wrong outside the task (clone, push), when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// The relay can run this repo's tasks in a container (a runner and a clone URL): the owner
    /// may start one while no agent is online (SPEC 10).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runner_available: bool,
    /// The relay has a runner but no clone URL for this repo (its agent reported no `origin`
    /// remote): a container run needs the owner to give one (`cloneUrl` of `POST /api/hud/start`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runner_needs_clone_url: bool,
    /// What the start form may offer (SPEC 12): `claude`, `shell`, and `acp:<name>` for each ACP
    /// agent, as the repo's online agent reports them in its capabilities (a container's agent
    /// runs `claude` and `shell`). Empty when nothing can start a task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<String>,
}

/// `POST /api/hud/start`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HudStartRequest {
    /// `user/repo`
    pub repo: String,
    /// The prompt; for `shell`, the command.
    pub prompt: String,
    /// What runs it (SPEC 12); `claude` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// The ACP agent to run (SPEC 14), for executor `acp` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Where to run it (SPEC 10); `auto` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementRequest>,
    /// The URL a container run clones, when the repo's agent reported none (no `origin`).
    #[serde(default, rename = "cloneUrl", skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
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
