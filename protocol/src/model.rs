//! The shared shapes of SPEC section 3.2.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;

/// Why a repo's one-word status is what it is. Precedence when several hold:
/// missing > diverged > dirty > ahead > behind > clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepoState {
    #[default]
    Clean,
    Dirty,
    Ahead,
    Behind,
    Diverged,
    Missing,
}

impl RepoState {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoState::Clean => "clean",
            RepoState::Dirty => "dirty",
            RepoState::Ahead => "ahead",
            RepoState::Behind => "behind",
            RepoState::Diverged => "diverged",
            RepoState::Missing => "missing",
        }
    }

    /// The status of SPEC 3.2 from the facts, with its precedence.
    pub fn derive(missing: bool, changed_files: u32, ahead: u32, behind: u32) -> RepoState {
        if missing {
            RepoState::Missing
        } else if ahead > 0 && behind > 0 {
            RepoState::Diverged
        } else if changed_files > 0 {
            RepoState::Dirty
        } else if ahead > 0 {
            RepoState::Ahead
        } else if behind > 0 {
            RepoState::Behind
        } else {
            RepoState::Clean
        }
    }
}

/// A git operation left in progress in a working tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RepoOperation {
    Rebase,
    Merge,
    CherryPick,
    Revert,
    Bisect,
}

/// The state of one watched git working tree.
///
/// Every field but `id` and `name` has a default, so the minimal shape of seed 004
/// (`{id, path, name, branch?, status?, ...}`) parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RepoStatus {
    pub id: String,
    /// The slug, unique per user; HUD URLs use it.
    pub name: String,
    /// Absolute path on the agent's machine. Owner-only: the relay strips it for everyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The URL of the `origin` remote with any credentials removed: where a container run
    /// clones the repo from (SPEC 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_url: Option<String>,
    #[serde(default)]
    pub detached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<RepoOperation>,
    #[serde(default)]
    pub status: RepoState,
    #[serde(default)]
    pub uncommitted_count: u32,
    #[serde(default)]
    pub staged_count: u32,
    #[serde(default)]
    pub untracked_count: u32,
    #[serde(default)]
    pub conflicted_count: u32,
    #[serde(default)]
    pub ahead_count: u32,
    #[serde(default)]
    pub behind_count: u32,
    #[serde(default)]
    pub stash_count: u32,
    /// At most [`RepoStatus::MAX_MODIFIED_FILES`] paths, relative to the repo root (more is
    /// refused at validation; the agent sets `modifiedFilesTruncated` instead).
    #[serde(default)]
    #[schemars(length(max = RepoStatus::MAX_MODIFIED_FILES))]
    pub modified_files: Vec<String>,
    #[serde(default)]
    pub modified_files_truncated: bool,
    /// When the agent computed this status. Absent only in seed-004-style minimal messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl RepoStatus {
    pub const MAX_MODIFIED_FILES: usize = 200;

    /// A status with only the identity set; everything else at its default.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> RepoStatus {
        RepoStatus {
            id: id.into(),
            name: name.into(),
            path: None,
            branch: None,
            head_sha: None,
            head_summary: None,
            upstream: None,
            remote_url: None,
            detached: false,
            operation: None,
            status: RepoState::Clean,
            uncommitted_count: 0,
            staged_count: 0,
            untracked_count: 0,
            conflicted_count: 0,
            ahead_count: 0,
            behind_count: 0,
            stash_count: 0,
            modified_files: Vec::new(),
            modified_files_truncated: false,
            updated_at: None,
        }
    }

    /// The same status without owner-only fields, for public HUDs and other users.
    pub fn public_view(&self) -> RepoStatus {
        RepoStatus { path: None, ..self.clone() }
    }

    /// True when everything but `updated_at` is equal: whether an update is worth sending.
    pub fn same_state(&self, other: &RepoStatus) -> bool {
        RepoStatus { updated_at: None, ..self.clone() } == RepoStatus { updated_at: None, ..other.clone() }
    }
}

/// What runs a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    Claude,
    Shell,
    /// An Agent Client Protocol agent named by `payload.agent` (SPEC 14).
    Acp,
}

impl Executor {
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Claude => "claude",
            Executor::Shell => "shell",
            Executor::Acp => "acp",
        }
    }
}

/// The lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    /// Alive but blocked on a person: a permission request or a question (SPEC 8). Not terminal.
    Waiting,
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        Some(match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "waiting" => TaskStatus::Waiting,
            "completed" => TaskStatus::Completed,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            "interrupted" => TaskStatus::Interrupted,
            _ => return None,
        })
    }

    /// Finished for good: no more events will come.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running | TaskStatus::Waiting)
    }
}

/// Who created a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskSource {
    Local,
    Remote,
    /// A Claude Code session a person started in a terminal, seen through its hooks (SPEC 9):
    /// the agent records it but does not run it, so it cannot be resumed as a follow-up.
    External,
}

/// What a task runs and how; the same options in every front end (SPEC section 5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TaskPayload {
    /// The repo slug the task runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The prompt of a `claude` or `acp` task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The command of a `shell` task (run with `sh -c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The ACP agent of an `acp` task, by the name the local agent knows it by (`codex`,
    /// `opencode`, a custom name; SPEC 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Run in a fresh git worktree on branch `flightdeck/<taskId>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<bool>,
    /// A follow-up turn: the session to continue (`claude --resume`; an ACP agent's
    /// `session/load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_session_id: Option<String>,
    /// Deny a permission request nobody decided within this many seconds (`decidedBy:
    /// "timeout"`); none: wait for as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_timeout_secs: Option<u64>,
    /// Commit what the task changed and push it as branch `flightdeck/<taskId>` (container
    /// runs, SPEC 10; the relay sets it for them unless the request says otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<bool>,
}

/// One run of an executor in a repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub executor: Executor,
    pub payload: TaskPayload,
    pub status: TaskStatus,
    pub source: TaskSource,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// The `seq` of the last event of this task (0 before the first).
    #[serde(default)]
    #[schemars(range(max = crate::MAX_SEQ))]
    pub last_seq: u64,
    /// The conversation this task is a turn of: its own `id` for a first turn (SPEC 8). Tasks
    /// recorded before conversations existed lack it: [`Task::conversation`] gives their id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub conversation_id: String,
    /// The task this turn answers (a follow-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
    /// Claude's session id (from its `system/init`), which a follow-up resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Since when the task waits for a person (status `waiting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<Timestamp>,
    /// Where the task runs (SPEC 10); absent on tasks recorded before container runs and on
    /// local tasks, which run on their agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The container of a container run, as the relay sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerInfo>,
}

/// Where a task runs: on the owner's agent, or in a container the relay starts (SPEC 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Agent,
    Container,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Agent => "agent",
            Placement::Container => "container",
        }
    }
}

/// The container of a container run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RunnerInfo {
    /// Empty until the engine has created the container.
    #[serde(default)]
    pub container_id: String,
    pub state: RunnerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

/// The lifecycle of a run's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    Starting,
    Running,
    Exited,
    Failed,
}

impl Task {
    /// A task that was just created: `queued`, on no agent yet, nothing run, no event.
    pub fn queued(
        id: impl Into<String>,
        title: impl Into<String>,
        repo: impl Into<String>,
        executor: Executor,
        payload: TaskPayload,
        source: TaskSource,
        created_at: Timestamp,
    ) -> Task {
        Task {
            id: id.into(),
            title: title.into(),
            repo: repo.into(),
            agent_id: None,
            executor,
            payload,
            status: TaskStatus::Queued,
            source,
            created_at,
            started_at: None,
            finished_at: None,
            summary: None,
            error: None,
            cost_usd: None,
            input_tokens: None,
            output_tokens: None,
            last_seq: 0,
            conversation_id: String::new(),
            parent_task_id: None,
            session_id: None,
            waiting_since: None,
            placement: None,
            runner: None,
        }
        .first_turn()
    }

    /// The task as the first turn of its own conversation.
    fn first_turn(mut self) -> Task {
        self.conversation_id = self.id.clone();
        self
    }

    /// The conversation this task belongs to (its own id for tasks recorded before
    /// conversations existed).
    pub fn conversation(&self) -> &str {
        if self.conversation_id.is_empty() {
            &self.id
        } else {
            &self.conversation_id
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    TaskFailed,
    TaskStalled,
    RepoDiverged,
    RepoConflict,
    RepoMissing,
    AgentOffline,
    BudgetExceeded,
    /// A task waits for a person's decision; acknowledged when the request is decided.
    NeedsInput,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::TaskFailed => "task_failed",
            AlertKind::TaskStalled => "task_stalled",
            AlertKind::RepoDiverged => "repo_diverged",
            AlertKind::RepoConflict => "repo_conflict",
            AlertKind::RepoMissing => "repo_missing",
            AlertKind::AgentOffline => "agent_offline",
            AlertKind::BudgetExceeded => "budget_exceeded",
            AlertKind::NeedsInput => "needs_input",
        }
    }
}

/// Something that needs a person's attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Alert {
    pub id: String,
    pub severity: Severity,
    pub kind: AlertKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub message: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub acknowledged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
}

/// What an agent says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
    Busy,
    Idle,
}

/// One agent as the relay sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AgentInfo {
    pub agent_id: String,
    pub status: AgentState,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub version: String,
    pub connected_at: Timestamp,
    pub last_ping_at: Timestamp,
    /// Slugs of the repos this agent watches.
    #[serde(default)]
    pub repos: Vec<String>,
}
