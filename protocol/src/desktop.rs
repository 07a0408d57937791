//! The desktop app's command layer: what the cockpit window sends to the local agent through
//! Tauri commands, what it gets back, and the events the agent pushes to it.
//!
//! The window calls `window.__TAURI_INTERNALS__.invoke(name, args)` with a name from
//! [`commands`]; arguments are a JSON object whose keys are the camelCase names listed with each
//! command. A failed command rejects with a [`CommandError`] whose `code` (one of [`error_codes`])
//! is what the UI matches on, never the message. Live changes arrive as Tauri events named
//! [`EVENT`] carrying one [`AgentEvent`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::TaskEventRecord;
use crate::model::{Alert, Executor, RepoStatus, Severity, Task, TaskPayload, TaskStatus};

/// The name of the Tauri event that carries every [`AgentEvent`] to the window.
pub const EVENT: &str = "agent-event";

/// The Tauri event carrying the relay-style realtime frames (`ServerMessage` JSON) of the topics
/// subscribed with `realtime_subscribe`: the cockpit views read the desktop agent as a relay.
pub const REALTIME_EVENT: &str = "flightdeck://realtime";

/// The Tauri event sent when the tray asks the window to show a repo or a task: [`CockpitFocus`].
pub const FOCUS_EVENT: &str = "cockpit-focus";

/// What the window should show after a click in the tray menu.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CockpitFocus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// The Tauri command names, with their arguments (camelCase JSON keys) and answers.
pub mod commands {
    /// `{}` -> [`super::CockpitState`]: everything the window shows, in one call.
    pub const COCKPIT_STATE: &str = "cockpit_state";
    /// `{}` -> `RepoStatus[]`.
    pub const LIST_REPOS: &str = "list_repos";
    /// `{path}` -> `RepoStatus`: starts watching the git working tree at `path`.
    pub const ADD_REPO: &str = "add_repo";
    /// `{}` -> `RepoStatus | null`: asks for a folder with the system picker, then adds it
    /// (`null` when the user cancelled the picker).
    pub const PICK_REPO: &str = "pick_repo";
    /// `{id}` -> `null`: stops watching a repo (by id or slug).
    pub const REMOVE_REPO: &str = "remove_repo";
    /// `{request: StartTaskRequest}` -> `Task`.
    pub const START_TASK: &str = "start_task";
    /// `{taskId}` -> `Task` (its state when the cancel was requested).
    pub const CANCEL_TASK: &str = "cancel_task";
    /// `{query: TaskQuery}` -> `TaskListResponse` (`{tasks, total, limit, offset}`).
    pub const LIST_TASKS: &str = "list_tasks";
    /// `{taskId}` -> `TaskSnapshot` (`{task, events: [{seq, event}]}`).
    pub const TASK_TRANSCRIPT: &str = "task_transcript";
    /// `{query: AlertQuery}` -> `AlertsResponse` (`{alerts, total}`).
    pub const LIST_ALERTS: &str = "list_alerts";
    /// `{id}` -> `Alert`.
    pub const ACKNOWLEDGE_ALERT: &str = "acknowledge_alert";
    /// `{}` -> [`super::SettingsView`].
    pub const GET_SETTINGS: &str = "get_settings";
    /// `{update: SettingsUpdate}` -> [`super::SettingsView`].
    pub const SET_SETTINGS: &str = "set_settings";
    /// `{paused}` -> `null`.
    pub const SET_WATCHING_PAUSED: &str = "set_watching_paused";
    /// `{repo?}` -> `null`: opens the HUD of a repo (or the first repo) in the browser.
    pub const OPEN_HUD: &str = "open_hud";

    // The relay-compatible commands the cockpit views use (see `ui/src/tauri.rs`).

    /// `{topics: [String]}` -> `null`; the frames follow on [`super::REALTIME_EVENT`].
    pub const REALTIME_SUBSCRIBE: &str = "realtime_subscribe";
    /// `{topics: [String]}` -> `null`.
    pub const REALTIME_UNSUBSCRIBE: &str = "realtime_unsubscribe";
    /// `{taskId, after, limit?}` -> `EventsResponse`: the polling fallback.
    pub const TASK_EVENTS: &str = "task_events";
    /// `{id}` -> `AlertResponse`.
    pub const ACK_ALERT: &str = "ack_alert";
    /// `{request: CreateTaskRequest}` -> `TaskResponse` (`agentId` is ignored: this is the agent).
    pub const CREATE_TASK: &str = "create_task";
    /// `{}` -> `Health`.
    pub const HEALTH: &str = "health";
    /// `{request: DecideRequest}` -> `Task`: decide a pending permission request (SPEC 8).
    pub const DECIDE_PERMISSION: &str = "decide_permission";
    /// `{request: ReplyTaskRequest}` -> `Task`: the follow-up turn of a task's conversation.
    pub const REPLY_TASK: &str = "reply_task";
    /// `{}` -> [`super::ClaudeHooks`]: whether Claude Code's hooks reach this agent (SPEC 9).
    pub const CLAUDE_HOOKS: &str = "claude_hooks";
    /// `{installed: bool}` -> [`super::ClaudeHooks`]: adds this agent's hooks to the user's
    /// Claude Code settings, or removes exactly those.
    pub const SET_CLAUDE_HOOKS: &str = "set_claude_hooks";

    /// Every command, in the order the shell registers them.
    pub const ALL: &[&str] = &[
        COCKPIT_STATE,
        LIST_REPOS,
        ADD_REPO,
        PICK_REPO,
        REMOVE_REPO,
        START_TASK,
        CANCEL_TASK,
        LIST_TASKS,
        TASK_TRANSCRIPT,
        LIST_ALERTS,
        ACKNOWLEDGE_ALERT,
        GET_SETTINGS,
        SET_SETTINGS,
        SET_WATCHING_PAUSED,
        OPEN_HUD,
        REALTIME_SUBSCRIBE,
        REALTIME_UNSUBSCRIBE,
        TASK_EVENTS,
        ACK_ALERT,
        CREATE_TASK,
        HEALTH,
        DECIDE_PERMISSION,
        REPLY_TASK,
        CLAUDE_HOOKS,
        SET_CLAUDE_HOOKS,
    ];
}

/// The stable codes of [`CommandError`].
pub mod error_codes {
    /// No watched repo has that id or slug.
    pub const REPO_NOT_FOUND: &str = "repo_not_found";
    /// The path is already watched.
    pub const REPO_EXISTS: &str = "repo_exists";
    /// The path is not (inside) a git working tree, or does not exist.
    pub const NOT_A_GIT_REPO: &str = "not_a_git_repo";
    pub const TASK_NOT_FOUND: &str = "task_not_found";
    pub const ALERT_NOT_FOUND: &str = "alert_not_found";
    /// A field is missing or malformed; the message names it.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// No relay is configured (for Open HUD).
    pub const RELAY_NOT_CONFIGURED: &str = "relay_not_configured";
    /// The permission request is not pending (decided already, or its task ended).
    pub const NOT_PENDING: &str = "not_pending";
    /// A turn of the conversation has not ended yet: a reply must wait for it.
    pub const TURN_IN_PROGRESS: &str = "turn_in_progress";
    /// `placement: container` asked of a relay with no `[runner]` (SPEC 10).
    pub const NO_RUNNER: &str = "no_runner";
    /// A container run needs a clone URL: the repo's agent reported none and the request gave none.
    pub const NO_CLONE_URL: &str = "no_clone_url";
    /// The relay's queue of container runs is full; try again when some have ended.
    pub const RUNNER_QUEUE_FULL: &str = "runner_queue_full";
    /// The task cannot be continued (not a Claude task, or it has no session to resume).
    pub const NOT_RESUMABLE: &str = "not_resumable";
    /// The task cannot be cancelled: it has already ended, or it is a Claude session started
    /// in a terminal, which is stopped in its terminal (SPEC 9).
    pub const NOT_CANCELLABLE: &str = "not_cancellable";
    /// The agent that runs the task is offline: it cannot be told (try again when it is back).
    pub const AGENT_OFFLINE: &str = "agent_offline";
    /// The user's Claude Code settings file cannot be read or is not a JSON object: it is left
    /// as it is (the message names the file and the problem).
    pub const CLAUDE_SETTINGS_INVALID: &str = "claude_settings_invalid";
    /// Anything else: a broken database, a failed spawn. The message says what.
    pub const INTERNAL: &str = "internal";
}

/// Why a command failed. `code` is one of [`error_codes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CommandError {
    pub code: String,
    pub message: String,
}

/// `decide_permission`: allow or deny a pending permission request of a local task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DecideRequest {
    pub task_id: String,
    pub request_id: String,
    pub behavior: crate::event::Behavior,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether Claude Code sessions started in a terminal reach this agent (SPEC 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ClaudeHooks {
    /// This agent's hooks are in the settings file.
    pub installed: bool,
    /// The user's Claude Code settings file (`~/.claude/settings.json`).
    pub settings_path: String,
}

/// `reply_task`: a follow-up turn (the same fields as the REST reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ReplyTaskRequest {
    pub task_id: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
}

/// `start_task`: a task to run on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct StartTaskRequest {
    pub executor: Executor,
    /// The repo's id or slug.
    pub repo: String,
    /// Defaults to the first line of the prompt or command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `prompt` (claude) or `command` (shell), and the options (model, budget, timeout, worktree).
    pub payload: TaskPayload,
}

/// `list_tasks`: filters, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TaskQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// A repo slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Default 50, at most 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// `list_alerts`: filters, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AlertQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// The agent's settings as the window sees them: the relay key is never sent back, only a hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SettingsView {
    /// `ws://` or `wss://` URL of the relay (or its `http(s)://` base); absent = local only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_url: Option<String>,
    /// The user the key belongs to on the relay, for HUD links (`<relay>/hud/<user>/<repo>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_user: Option<String>,
    /// Whether a relay key is stored.
    pub key_set: bool,
    /// The key redacted for display, e.g. `fdk_…9f2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hint: Option<String>,
    pub agent_id: String,
    /// The watched repos' paths.
    pub repos: Vec<String>,
    pub watching_paused: bool,
    /// Custom ACP agents added in the settings (SPEC 14), each `NAME=COMMAND` (as
    /// `--acp-agent` takes them), by name. Beside the built-ins and those given at start; one
    /// with a built-in's name replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acp_agents: Vec<String>,
}

/// `set_settings`: absent fields are left as they are; an empty string clears `relayUrl`,
/// `relayUser` or `key`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When this update turns the relay on (none was set): whether the tasks and alerts
    /// recorded before it are uploaded too. Default: no, only what happens from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_history: Option<bool>,
    /// The custom ACP agents, all of them, each `NAME=COMMAND`: the set replaces the saved one
    /// (checked whole first); an empty list removes them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp_agents: Option<Vec<String>>,
}

/// The relay link as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// No relay configured: everything works locally.
    #[default]
    Off,
    Connecting,
    Connected,
    /// Configured but not connected (retrying with backoff).
    Disconnected,
    /// The relay refused this agent for good (key revoked or refused, replaced by another agent
    /// with the same id); the link does not retry until the settings change. The `error` next to
    /// the status says why, with a code (`link_key_revoked`, `link_replaced`, ...).
    Stopped,
}

/// `cockpit_state`: the whole picture at once, for the window's first render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CockpitState {
    pub repos: Vec<RepoStatus>,
    /// The 100 newest tasks.
    pub tasks: Vec<Task>,
    /// Unacknowledged alerts, newest first.
    pub alerts: Vec<Alert>,
    pub settings: SettingsView,
    pub link: LinkStatus,
    /// Why the link stopped, when `link` is `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_error: Option<CommandError>,
}

/// A change the agent pushes to every front end (Tauri event [`EVENT`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum AgentEvent {
    RepoStatus {
        repo: RepoStatus,
    },
    RepoRemoved {
        id: String,
    },
    TaskUpdate {
        task: Task,
    },
    TaskEvent {
        record: TaskEventRecord,
    },
    Alert {
        alert: Alert,
    },
    Link {
        status: LinkStatus,
        /// Why the link stopped, when `status` is `stopped`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<CommandError>,
    },
    Watching {
        paused: bool,
    },
    Settings {
        settings: SettingsView,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TaskEvent;

    #[test]
    fn events_and_requests_have_their_documented_shape() {
        let event = AgentEvent::TaskEvent {
            record: TaskEventRecord { task_id: "t1".into(), seq: 1, event: TaskEvent::Done { summary: "ok".into() } },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "task-event", "record": {"taskId": "t1", "seq": 1, "event": {"kind": "done", "summary": "ok"}}})
        );
        let link = serde_json::to_value(AgentEvent::Link { status: LinkStatus::Connected, error: None }).unwrap();
        assert_eq!(link, serde_json::json!({"type": "link", "status": "connected"}));

        let request: StartTaskRequest = serde_json::from_value(serde_json::json!({
            "executor": "shell", "repo": "demo", "payload": {"command": "echo hi", "timeoutSecs": 5}
        }))
        .unwrap();
        assert_eq!(request.payload.command.as_deref(), Some("echo hi"));
        assert_eq!(request.payload.timeout_secs, Some(5));
    }
}
