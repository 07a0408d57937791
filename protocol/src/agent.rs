//! The agent <-> relay link on `GET /api/ws` (SPEC section 3.3, seed 004).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::TaskEvent;
use crate::model::{AgentState, Alert, Executor, RepoStatus, Task, TaskPayload};
use crate::validate::{self, Detail, InvalidMessage};

/// How a task ended, as reported in `task-result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskResultStatus {
    Completed,
    Failed,
    Cancelled,
}

/// A message from an agent to the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum AgentMessage {
    /// The first message on a connection, and the answer to `status-request`.
    AgentStatus {
        agent_id: String,
        status: AgentState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// Repo states; with `full`, the whole set (repos not in it are gone).
    GitStatus {
        repos: Vec<RepoStatus>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        full: Option<bool>,
    },
    /// A task was created, started or finished; the latest state wins.
    TaskUpdate {
        task: Task,
    },
    /// One event of a task's transcript.
    TaskEvent {
        task_id: String,
        #[schemars(range(max = crate::MAX_SEQ))]
        seq: u64,
        event: TaskEvent,
    },
    /// The outcome of a task (seed 004).
    TaskResult {
        task_id: String,
        status: TaskResultStatus,
        #[serde(default)]
        result: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logs: Option<String>,
    },
    Alert {
        alert: Alert,
    },
    /// The answer to `ping`; `timestamp` echoes the ping's (milliseconds since the epoch).
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<i64>,
    },
    /// Something the relay sent could not be done (a decision for a request that is no longer
    /// pending, for one).
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

/// A message from the relay to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum RelayMessage {
    /// Sent once the agent is accepted: what the relay already holds, so the agent resends
    /// only the events it lacks.
    Welcome {
        agent_id: String,
        heartbeat_secs: u64,
        #[serde(default)]
        #[schemars(extend("additionalProperties" = {"type": "integer", "format": "uint64", "minimum": 0, "maximum": crate::MAX_SEQ}))]
        last_seqs: BTreeMap<String, u64>,
    },
    /// Run a task (seed 004).
    Task {
        task_id: String,
        task_type: Executor,
        payload: TaskPayload,
        /// The task's title as the relay recorded it (given over REST, or derived).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// The conversation this task is a turn of (SPEC 8); none: its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        /// The turn this follow-up answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_task_id: Option<String>,
    },
    Cancel {
        task_id: String,
    },
    /// Sent every `heartbeatSecs`; `timestamp` is milliseconds since the epoch (seed 004).
    Ping {
        timestamp: i64,
    },
    /// The agent answers with `agent-status` and a full `git-status`.
    StatusRequest {},
    /// The owner decided a pending permission request (SPEC 8).
    PermissionDecision {
        task_id: String,
        request_id: String,
        behavior: crate::event::Behavior,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        updated_input: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Where the owner decided: absent means `owner` (the HUD or REST); `push` from a
        /// notification (SPEC 13).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decided_by: Option<crate::event::DecidedBy>,
    },
    /// The relay received an event of `taskId` that would leave a gap in its transcript and did
    /// not store it: send that task's events again, starting after `afterSeq` (the last
    /// contiguous seq the relay holds). Sent at most once per task until the gap closes.
    Resend {
        task_id: String,
        #[schemars(range(max = crate::MAX_SEQ))]
        after_seq: u64,
    },
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<Vec<Detail>>,
    },
}

impl AgentMessage {
    /// Parses and validates one frame from an agent.
    pub fn parse(text: &str) -> Result<AgentMessage, InvalidMessage> {
        validate::parse_strict(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }
}

impl RelayMessage {
    /// Parses and validates one frame from the relay.
    pub fn parse(text: &str) -> Result<RelayMessage, InvalidMessage> {
        validate::parse_strict(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }

    /// The `error` answer to an invalid frame.
    pub fn invalid(invalid: &InvalidMessage) -> RelayMessage {
        RelayMessage::Error { message: invalid.message.clone(), details: Some(invalid.details.clone()) }
    }
}
