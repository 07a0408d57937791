//! Which changes deserve a desktop notification, and its text.

use flightdeck_protocol::desktop::AgentEvent;
use flightdeck_protocol::{AlertKind, Severity, TaskStatus};

/// What deserves a desktop notification: a task that ended (completed or failed) and a critical
/// alert. Other events (and an alert being acknowledged) do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// The task a click should open the window on (a task waiting for a decision).
    pub task_id: Option<String>,
}

impl Notification {
    pub fn for_event(event: &AgentEvent) -> Option<Notification> {
        match event {
            AgentEvent::TaskUpdate { task } => {
                let title = match task.status {
                    TaskStatus::Completed => "Task completed",
                    TaskStatus::Failed => "Task failed",
                    _ => return None,
                };
                let detail = match task.status {
                    TaskStatus::Failed => task.error.as_deref(),
                    _ => task.summary.as_deref(),
                }
                .map(|d| d.lines().next().unwrap_or("").trim())
                .filter(|d| !d.is_empty());
                let body = match detail {
                    Some(d) => format!("{} · {}\n{}", task.title, task.repo, shorten(d, 160)),
                    None => format!("{} · {}", task.title, task.repo),
                };
                Some(Notification { title: title.into(), body, task_id: None })
            }
            // A task waits for a decision: the alert names the tool.
            AgentEvent::Alert { alert } if alert.kind == AlertKind::NeedsInput && !alert.acknowledged => {
                let title = match &alert.repo {
                    Some(repo) => format!("Claude needs your decision · {repo}"),
                    None => "Claude needs your decision".into(),
                };
                Some(Notification { title, body: shorten(&alert.message, 200), task_id: alert.task_id.clone() })
            }
            AgentEvent::Alert { alert } if alert.severity == Severity::Critical && !alert.acknowledged => {
                let title = match &alert.repo {
                    Some(repo) => format!("Flightdeck alert · {repo}"),
                    None => "Flightdeck alert".into(),
                };
                Some(Notification { title, body: shorten(&alert.message, 200), task_id: None })
            }
            _ => None,
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use flightdeck_protocol::{Alert, AlertKind, Executor, Task, TaskPayload, TaskSource};

    use super::*;

    fn task(status: TaskStatus) -> Task {
        let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Task {
            status,
            summary: Some("exit 0".into()),
            error: Some("exit status 2\nmore".into()),
            last_seq: 3,
            ..Task::queued(
                "t1",
                "cargo test",
                "demo",
                Executor::Shell,
                TaskPayload::default(),
                TaskSource::Local,
                created,
            )
        }
    }

    fn alert(severity: Severity, acknowledged: bool) -> Alert {
        Alert {
            id: "a1".into(),
            severity,
            kind: AlertKind::BudgetExceeded,
            repo: Some("demo".into()),
            task_id: None,
            agent_id: None,
            message: "budget exceeded".into(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            acknowledged,
            acknowledged_at: None,
        }
    }

    #[test]
    fn notifications() {
        let n = |title: &str, body: &str| Some(Notification { title: title.into(), body: body.into(), task_id: None });
        let table: Vec<(AgentEvent, Option<Notification>)> = vec![
            (
                AgentEvent::TaskUpdate { task: task(TaskStatus::Completed) },
                n("Task completed", "cargo test · demo\nexit 0"),
            ),
            (
                AgentEvent::TaskUpdate { task: task(TaskStatus::Failed) },
                n("Task failed", "cargo test · demo\nexit status 2"),
            ),
            (AgentEvent::TaskUpdate { task: task(TaskStatus::Running) }, None),
            (AgentEvent::TaskUpdate { task: task(TaskStatus::Cancelled) }, None),
            (
                AgentEvent::Alert { alert: alert(Severity::Critical, false) },
                n("Flightdeck alert · demo", "budget exceeded"),
            ),
            (AgentEvent::Alert { alert: alert(Severity::Critical, true) }, None),
            (AgentEvent::Alert { alert: alert(Severity::Warning, false) }, None),
            (AgentEvent::Watching { paused: true }, None),
            (
                AgentEvent::Alert {
                    alert: Alert {
                        kind: AlertKind::NeedsInput,
                        task_id: Some("t1".into()),
                        message: "Task \"make it\" needs input: Claude wants to use Bash".into(),
                        ..alert(Severity::Warning, false)
                    },
                },
                Some(Notification {
                    title: "Claude needs your decision · demo".into(),
                    body: "Task \"make it\" needs input: Claude wants to use Bash".into(),
                    task_id: Some("t1".into()),
                }),
            ),
            (AgentEvent::TaskUpdate { task: task(TaskStatus::Waiting) }, None),
        ];
        for (event, expected) in table {
            assert_eq!(Notification::for_event(&event), expected, "{event:?}");
        }
    }
}
