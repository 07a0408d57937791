//! The agent's local control socket (`<data dir>/agent.sock`, owner-only): one JSON request per
//! line from a command on the same machine (`flightdeck-agent decide`, `flightdeck-agent pending`,
//! `flightdeck-agent hook`), one JSON answer per line.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::desktop::{CommandError, DecideRequest};
use crate::event::Behavior;
use crate::model::Task;
use crate::Timestamp;

/// What a local command asks the running agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ControlRequest {
    /// Decide a pending permission request (`decidedBy: "local"`).
    Decide { request: DecideRequest },
    /// The permission requests waiting for a decision, of every task of this agent (those it
    /// runs and the terminal sessions it follows). Answered with `pending`.
    Pending,
    /// A Claude Code hook fired in a terminal session (SPEC 9), handed over by `flightdeck-agent
    /// hook`. Answered at once with `hook` (no decision), except a `PermissionRequest` of a
    /// watched session, which is answered when someone decides or the agent's wait is over.
    Hook { input: HookInput },
}

/// What Claude Code gives a hook on stdin, with Claude Code's own (snake_case) field names.
/// Fields this agent does not use are dropped by the hook command; unknown ones are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HookInput {
    pub session_id: String,
    pub transcript_path: String,
    pub cwd: String,
    /// `SessionStart`, `UserPromptSubmit`, `PreToolUse`, `PostToolUse`, `PermissionRequest`,
    /// `Notification`, `Stop`, `SessionEnd` (others are ignored).
    pub hook_event_name: String,
    /// `UserPromptSubmit`: the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_input: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// `PermissionRequest`: the "always allow" rules Claude Code would offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_suggestions: Option<Vec<serde_json::Value>>,
    /// `SessionStart`: `startup`, `resume`, `clear` or `compact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `Notification`: its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_type: Option<String>,
    /// `Stop`: the turn's last assistant text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_assistant_message: Option<String>,
    /// `SessionEnd`: why (`clear`, `logout`, `prompt_input_exit`, `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set by `flightdeck-agent hook`, not by Claude Code: the Claude Code process that ran the
    /// hook, so that a session killed before it could say `SessionEnd` still ends its task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_pid: Option<u32>,
}

/// The decision a `PermissionRequest` hook hands back to Claude Code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HookDecision {
    pub behavior: Behavior,
    /// The tool input to run with (a question's answers); none: as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<serde_json::Value>,
    /// A deny's reason, which Claude hears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The running agent's answer: the task as it is now, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ControlResponse {
    Task {
        task: Task,
    },
    /// The answer to a hook: a decision for a `PermissionRequest`, none otherwise (Claude Code
    /// then goes on as if there were no hook).
    Hook {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<HookDecision>,
    },
    /// The answer to `pending`: oldest first.
    Pending {
        requests: Vec<PendingRequest>,
    },
    Error {
        error: CommandError,
    },
}

/// A permission request waiting for a decision (`flightdeck-agent pending`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PendingRequest {
    pub task_id: String,
    pub task_title: String,
    pub repo: String,
    /// The id `flightdeck-agent decide TASK REQUEST` takes.
    pub request_id: String,
    pub tool_name: String,
    /// What the tool would do, on one line: a command, a file, or its input.
    pub summary: String,
    /// Since when the task waits (its `waitingSince`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<Timestamp>,
}
