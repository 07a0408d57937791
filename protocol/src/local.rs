//! The agent's local control socket (`<data dir>/agent.sock`, owner-only): one JSON request per
//! line from a command on the same machine (`flightdeck-agent decide`), one JSON answer per line.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::desktop::{CommandError, DecideRequest};
use crate::model::Task;

/// What a local command asks the running agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ControlRequest {
    /// Decide a pending permission request (`decidedBy: "local"`).
    Decide { request: DecideRequest },
}

/// The running agent's answer: the task as it is now, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ControlResponse {
    Task { task: Task },
    Error { error: CommandError },
}
