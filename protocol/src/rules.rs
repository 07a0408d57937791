//! The rules of a new task, in one place: every front end (desktop, `flightdeck-agent task`,
//! the relay's REST API) and the runner call these, so they cannot drift apart.

use crate::model::{Executor, Task, TaskPayload, TaskSource};

/// The longest title kept (longer ones are cut).
pub const MAX_TITLE_CHARS: usize = 200;
/// A derived title is the first line of the prompt or command, cut at this many characters.
pub const DERIVED_TITLE_CHARS: usize = 80;

/// Why a payload cannot run: the field (as in the JSON body, `payload.maxCostUsd`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct PayloadProblem {
    pub field: &'static str,
    pub problem: String,
}

impl PayloadProblem {
    fn new(field: &'static str, problem: impl Into<String>) -> PayloadProblem {
        PayloadProblem { field, problem: problem.into() }
    }
}

/// Why a task cannot be continued with a follow-up turn (SPEC 8), if it cannot: only a Claude
/// task Flightdeck ran has a session Flightdeck may resume. A session started in a terminal
/// (SPEC 9) belongs to that terminal: resuming it elsewhere would fork it behind the person's back.
pub fn reply_refusal(parent: &Task) -> Option<&'static str> {
    if parent.executor != Executor::Claude {
        return Some("only a claude task has a conversation");
    }
    if parent.source == TaskSource::External {
        return Some("this Claude session runs in a terminal: continue it there");
    }
    None
}

impl TaskPayload {
    /// Checks what a task of this executor needs: a prompt (claude) or a command (shell), a
    /// positive budget, a timeout of at least one second, tool names that are not blank.
    pub fn validate(&self, executor: Executor) -> Result<(), PayloadProblem> {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        match executor {
            Executor::Claude if blank(&self.prompt) => {
                return Err(PayloadProblem::new("payload.prompt", "a claude task needs a prompt"))
            }
            Executor::Shell if blank(&self.command) => {
                return Err(PayloadProblem::new("payload.command", "a shell task needs a command"))
            }
            _ => {}
        }
        if let Some(cost) = self.max_cost_usd {
            if !cost.is_finite() || cost <= 0.0 {
                return Err(PayloadProblem::new("payload.maxCostUsd", "must be a positive number of dollars"));
            }
        }
        if self.timeout_secs == Some(0) {
            return Err(PayloadProblem::new("payload.timeoutSecs", "must be at least 1 second"));
        }
        if let Some(tools) = &self.allowed_tools {
            if tools.iter().any(|t| t.trim().is_empty()) {
                return Err(PayloadProblem::new("payload.allowedTools", "a tool name cannot be blank"));
            }
        }
        for (field, value) in [("payload.model", &self.model), ("payload.permissionMode", &self.permission_mode)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(PayloadProblem::new(field, "cannot be blank (leave it out for the default)"));
            }
        }
        Ok(())
    }
}

/// The title of a new task: the one given (trimmed, at most [`MAX_TITLE_CHARS`]), or else the
/// first non-blank line of its prompt or command (at most [`DERIVED_TITLE_CHARS`], with `…` when
/// cut), or else `"<executor> task"`.
pub fn task_title(given: Option<&str>, executor: Executor, payload: &TaskPayload) -> String {
    if let Some(title) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return title.chars().take(MAX_TITLE_CHARS).collect();
    }
    let text = match executor {
        Executor::Claude => payload.prompt.as_deref(),
        Executor::Shell => payload.command.as_deref(),
    }
    .unwrap_or_default();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    let mut title: String = line.chars().take(DERIVED_TITLE_CHARS).collect();
    if line.chars().count() > DERIVED_TITLE_CHARS {
        title.push('…');
    }
    if title.is_empty() {
        title = format!("{} task", executor.as_str());
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(command: &str) -> TaskPayload {
        TaskPayload { command: Some(command.into()), ..Default::default() }
    }

    #[test]
    fn payload_rules() {
        let claude = TaskPayload { prompt: Some("fix it".into()), ..Default::default() };
        let cases: Vec<(Executor, TaskPayload, Option<&str>)> = vec![
            (Executor::Shell, shell("ls"), None),
            (Executor::Shell, shell("  "), Some("payload.command")),
            (Executor::Shell, TaskPayload::default(), Some("payload.command")),
            (Executor::Claude, shell("ls"), Some("payload.prompt")),
            (Executor::Claude, claude.clone(), None),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(-1.0), ..shell("x") }, Some("payload.maxCostUsd")),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(0.0), ..shell("x") }, Some("payload.maxCostUsd")),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(f64::NAN), ..shell("x") }, Some("payload.maxCostUsd")),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(0.25), ..shell("x") }, None),
            (Executor::Shell, TaskPayload { timeout_secs: Some(0), ..shell("x") }, Some("payload.timeoutSecs")),
            (Executor::Shell, TaskPayload { timeout_secs: Some(1), worktree: Some(true), ..shell("x") }, None),
            (
                Executor::Claude,
                TaskPayload { allowed_tools: Some(vec!["Bash".into(), " ".into()]), ..claude.clone() },
                Some("payload.allowedTools"),
            ),
            (Executor::Claude, TaskPayload { model: Some(String::new()), ..claude.clone() }, Some("payload.model")),
            (
                Executor::Claude,
                TaskPayload { permission_mode: Some(" ".into()), ..claude },
                Some("payload.permissionMode"),
            ),
        ];
        for (executor, payload, field) in cases {
            assert_eq!(payload.validate(executor).err().map(|p| p.field), field, "{payload:?}");
        }
    }

    #[test]
    fn titles() {
        let long = "x".repeat(300);
        let cases: Vec<(Option<&str>, Executor, TaskPayload, String)> = vec![
            (Some("My nightly check"), Executor::Shell, shell("make check"), "My nightly check".into()),
            (Some("  "), Executor::Shell, shell("\n  make check\nmore"), "make check".into()),
            (None, Executor::Shell, shell(&"y".repeat(100)), format!("{}…", "y".repeat(80))),
            (Some(&long), Executor::Shell, shell("ls"), "x".repeat(200)),
            (None, Executor::Claude, TaskPayload::default(), "claude task".into()),
        ];
        for (given, executor, payload, want) in cases {
            assert_eq!(task_title(given, executor, &payload), want);
        }
    }
}
