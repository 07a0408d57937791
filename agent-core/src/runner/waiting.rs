//! The waiting state of a task (SPEC 8), shared by the tasks the runner drives and the Claude
//! sessions started in a terminal (`crate::external`): while a permission request is pending the
//! task is `waiting` and a `needs_input` alert says so; the last decision makes it `running`
//! again and acknowledges the alert.

use std::time::Duration;

use flightdeck_protocol::{AlertKind, Severity, TaskEvent, TaskStatus};
use tokio::time::Instant;

use super::recorder::Recorder;

/// A permission request opened or closed by an event just recorded.
pub(crate) enum Request {
    Opened { request_id: String, tool_name: String },
    Closed { request_id: String },
}

impl Request {
    pub(crate) fn of(event: &TaskEvent) -> Option<Request> {
        match event {
            TaskEvent::PermissionRequest { request_id, tool_name, .. } => {
                Some(Request::Opened { request_id: request_id.clone(), tool_name: tool_name.clone() })
            }
            TaskEvent::PermissionDecision { request_id, .. } => {
                Some(Request::Closed { request_id: request_id.clone() })
            }
            _ => None,
        }
    }
}

/// What a request changed: the task started waiting, or stopped after `waited`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WaitChange {
    Started,
    Ended { waited: Duration },
}

/// The task's pending permission requests and the alert they raised.
#[derive(Default)]
pub(crate) struct Waiting {
    pending: Vec<String>,
    since: Option<Instant>,
    alert: Option<String>,
}

impl Waiting {
    /// The state of a task found waiting when the agent starts: its pending requests and the
    /// `needs_input` alert still open for it.
    pub(crate) fn resume(pending: Vec<String>, alert: Option<String>) -> Waiting {
        let since = (!pending.is_empty()).then(Instant::now);
        Waiting { pending, since, alert }
    }

    pub(crate) fn is_pending(&self, request_id: &str) -> bool {
        self.pending.iter().any(|r| r == request_id)
    }

    pub(crate) fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Applies a request to the task (status, `waitingSince`, the alert, saved and published).
    pub(crate) async fn apply(&mut self, request: Request, rec: &mut Recorder) -> Option<WaitChange> {
        match request {
            Request::Opened { request_id, tool_name } => {
                let first = self.pending.is_empty();
                self.pending.push(request_id);
                if !first {
                    return None;
                }
                self.since = Some(Instant::now());
                // The alert first: whoever sees the task waiting finds the alert already there.
                // An ACP task names its agent (`codex wants to use ...`).
                let who = match (rec.task.executor, rec.task.payload.agent.as_deref()) {
                    (flightdeck_protocol::Executor::Acp, Some(agent)) => agent.to_string(),
                    _ => "Claude".to_string(),
                };
                let what = if tool_name == "AskUserQuestion" {
                    format!("{who} asks a question")
                } else {
                    format!("{who} wants to use {tool_name}")
                };
                let message = format!("Task \"{}\" needs input: {what}", rec.task.title);
                let alert = rec.raise(Severity::Warning, AlertKind::NeedsInput, message).await;
                self.alert = Some(alert.id);
                rec.task.status = TaskStatus::Waiting;
                rec.task.waiting_since = Some(chrono::Utc::now());
                rec.save_task().await;
                Some(WaitChange::Started)
            }
            Request::Closed { request_id } => {
                let before = self.pending.len();
                self.pending.retain(|r| r != &request_id);
                if !self.pending.is_empty() || before == 0 {
                    return None;
                }
                let waited = self.since.take().map(|s| s.elapsed()).unwrap_or_default();
                rec.task.status = TaskStatus::Running;
                rec.task.waiting_since = None;
                rec.save_task().await;
                self.acknowledge(rec).await;
                Some(WaitChange::Ended { waited })
            }
        }
    }

    /// The task ended: a `needs_input` alert still open is acknowledged.
    pub(crate) async fn end(&mut self, rec: &mut Recorder) {
        self.pending.clear();
        rec.task.waiting_since = None;
        self.acknowledge(rec).await;
    }

    async fn acknowledge(&mut self, rec: &Recorder) {
        if let Some(id) = self.alert.take() {
            rec.acknowledge(&id).await;
        }
    }
}
