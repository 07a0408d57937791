//! `TaskEvent`: what a task did, one step at a time (SPEC section 3.1, seed 000).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::TaskStatus;

/// Which stream a `chunk` of text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChunkStream {
    Assistant,
    Stdout,
    Stderr,
    /// An agent's reasoning, when it shows it (an ACP agent's thought chunks, SPEC 14).
    Thinking,
}

/// One step of a task's transcript. Events of one task are numbered `seq` = 1, 2, 3, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum TaskEvent {
    Status {
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    Chunk {
        text: String,
        stream: ChunkStream,
    },
    ToolStart {
        tool_id: String,
        tool_name: String,
        #[serde(default)]
        params: Value,
    },
    ToolProgress {
        tool_id: String,
        elapsed_secs: f64,
    },
    ToolDone {
        tool_id: String,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        total_cost_usd: f64,
    },
    Done {
        summary: String,
    },
    Error {
        error: String,
    },
    /// The prompt of this turn (SPEC 8): the first event after `status running`.
    UserMessage {
        text: String,
    },
    /// Claude asks to use a tool its permission mode does not allow, or asks a question
    /// (`toolName` "AskUserQuestion"); the task is `waiting` until it is decided.
    PermissionRequest {
        request_id: String,
        tool_name: String,
        #[serde(default)]
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suggestions: Option<Vec<Value>>,
    },
    /// How a permission request was decided, and by whom.
    PermissionDecision {
        request_id: String,
        behavior: Behavior,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// The tool input as allowed (a question's answers), when the decision changed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        updated_input: Option<Value>,
        decided_by: DecidedBy,
    },
    /// What the task changed in its working tree (SPEC 12), against the commit it started from,
    /// untracked files included; emitted once, before `done`, when a task that changed files ends.
    Diff {
        files: Vec<DiffFile>,
        /// The unified patch of every text file, capped at [`MAX_DIFF_PATCH_BYTES`].
        patch: String,
        /// The patch was cut at the cap (`files` is still complete).
        #[serde(default)]
        truncated: bool,
    },
    /// An ACP agent's plan for the turn (SPEC 14): the whole list each time it changes.
    Plan {
        entries: Vec<PlanEntry>,
    },
    /// A step of a container run (SPEC 10), written by the relay that runs the container:
    /// starting it, cloning, running, pushing the result, the container's exit.
    Runner {
        step: RunnerStep,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
}

/// One entry of a `plan` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PlanEntry {
    pub content: String,
    pub status: PlanEntryStatus,
}

/// Where a plan entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanEntryStatus {
    Pending,
    InProgress,
    Completed,
}

/// The steps of a container run, in order (`failed` ends a run that went wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStep {
    Starting,
    Cloning,
    Running,
    Pushing,
    Exited,
    Failed,
}

/// The most patch text a `diff` event carries (1 MiB).
pub const MAX_DIFF_PATCH_BYTES: usize = 1 << 20;

/// One file of a `diff` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DiffFile {
    pub path: String,
    /// The path before a rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: DiffStatus,
    pub additions: u64,
    pub deletions: u64,
    /// A binary file: listed, no patch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// Allow or deny a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    Allow,
    Deny,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Allow => "allow",
            Behavior::Deny => "deny",
        }
    }
}

/// Who decided a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The owner, from the HUD or REST.
    Owner,
    /// On the agent's machine: the desktop or `flightdeck-agent decide`.
    Local,
    /// A rule decided without asking.
    Policy,
    /// Nobody decided within `decisionTimeoutSecs`: denied.
    Timeout,
    /// At the terminal of a Claude Code session started outside Flightdeck (SPEC 9), after the
    /// hook's wait: `behavior` is what the tool's result showed.
    Terminal,
    /// The owner, from a notification's Allow or Deny (SPEC 13, `POST /api/push/act`).
    Push,
}

impl TaskEvent {
    /// The snake_case `kind` of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskEvent::Status { .. } => "status",
            TaskEvent::Chunk { .. } => "chunk",
            TaskEvent::ToolStart { .. } => "tool_start",
            TaskEvent::ToolProgress { .. } => "tool_progress",
            TaskEvent::ToolDone { .. } => "tool_done",
            TaskEvent::Usage { .. } => "usage",
            TaskEvent::Done { .. } => "done",
            TaskEvent::Error { .. } => "error",
            TaskEvent::UserMessage { .. } => "user_message",
            TaskEvent::PermissionRequest { .. } => "permission_request",
            TaskEvent::PermissionDecision { .. } => "permission_decision",
            TaskEvent::Diff { .. } => "diff",
            TaskEvent::Plan { .. } => "plan",
            TaskEvent::Runner { .. } => "runner",
        }
    }

    /// The one list of the event's free text, what redaction must cover before an event leaves
    /// the machine: `text` is applied to every plain text field (chunk text, tool output,
    /// summary, error) and `json` to every structured value (tool params), so that a caller can
    /// look at keys and neighbouring strings together. An event kind that adds text adds its
    /// fields here, and every redaction follows.
    pub fn map_fields(&mut self, mut text: impl FnMut(&str) -> String, mut json: impl FnMut(&Value) -> Value) {
        match self {
            TaskEvent::Chunk { text: t, .. } => *t = text(t),
            TaskEvent::ToolStart { params, .. } => *params = json(params),
            TaskEvent::ToolDone { output, .. } => *output = text(output),
            TaskEvent::Done { summary } => *summary = text(summary),
            TaskEvent::Error { error } => *error = text(error),
            TaskEvent::UserMessage { text: t } => *t = text(t),
            TaskEvent::PermissionRequest { input, description, suggestions, .. } => {
                *input = json(input);
                if let Some(d) = description {
                    *d = text(d);
                }
                if let Some(s) = suggestions {
                    for v in s.iter_mut() {
                        *v = json(v);
                    }
                }
            }
            TaskEvent::PermissionDecision { message, updated_input, .. } => {
                if let Some(m) = message {
                    *m = text(m);
                }
                if let Some(v) = updated_input {
                    *v = json(v);
                }
            }
            TaskEvent::Diff { files, patch, .. } => {
                *patch = text(patch);
                for f in files.iter_mut() {
                    f.path = text(&f.path);
                    if let Some(old) = &mut f.old_path {
                        *old = text(old);
                    }
                }
            }
            TaskEvent::Runner { message, .. } => *message = text(message),
            TaskEvent::Plan { entries } => {
                for entry in entries.iter_mut() {
                    entry.content = text(&entry.content);
                }
            }
            TaskEvent::Status { .. } | TaskEvent::ToolProgress { .. } | TaskEvent::Usage { .. } => {}
        }
    }

    /// Applies `f` to every piece of free text in the event (the fields of
    /// [`TaskEvent::map_fields`], and each string inside tool params).
    pub fn map_text(&mut self, f: impl FnMut(&str) -> String) {
        fn map_value(v: &mut Value, f: &mut dyn FnMut(&str) -> String) {
            match v {
                Value::String(s) => *s = f(s),
                Value::Array(items) => items.iter_mut().for_each(|i| map_value(i, f)),
                Value::Object(map) => map.values_mut().for_each(|i| map_value(i, f)),
                _ => {}
            }
        }
        // Both closures call `f`, never at the same time.
        let f = std::cell::RefCell::new(f);
        self.map_fields(
            |t| (f.borrow_mut())(t),
            |v| {
                let mut v = v.clone();
                map_value(&mut v, &mut *f.borrow_mut());
                v
            },
        );
    }
}

/// An event with its place in the task's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SeqEvent {
    #[schemars(range(max = crate::MAX_SEQ))]
    pub seq: u64,
    pub event: TaskEvent,
}

/// An event with its task and place: the unit of `flightdeck-agent task --json` output and of
/// `hud:` topic events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TaskEventRecord {
    pub task_id: String,
    #[schemars(range(max = crate::MAX_SEQ))]
    pub seq: u64,
    pub event: TaskEvent,
}
