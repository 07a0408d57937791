//! The rules of a new task, in one place: every front end (desktop, `flightdeck-agent task`,
//! the relay's REST API) and the runner call these, so they cannot drift apart.

use crate::event::TaskEvent;
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
/// or ACP task Flightdeck ran has a session Flightdeck may resume. A session started in a terminal
/// (SPEC 9) belongs to that terminal: resuming it elsewhere would fork it behind the person's back.
/// An ACP task has a `sessionId` only when its agent can load sessions (SPEC 14), so a reply to
/// one without it is refused (`not_resumable`) like a Claude task whose session never started.
pub fn reply_refusal(parent: &Task) -> Option<&'static str> {
    if parent.executor == Executor::Shell {
        return Some("only a claude or acp task has a conversation");
    }
    if parent.executor == Executor::Acp && parent.session_id.is_none() {
        return Some("its agent cannot resume a session (no loadSession in its capabilities)");
    }
    if parent.source == TaskSource::External {
        return Some("this Claude session runs in a terminal: continue it there");
    }
    None
}

/// Why `task` cannot be cancelled from a cockpit, if it cannot: a session started in a terminal
/// belongs to that terminal.
pub fn cancel_refusal(task: &Task) -> Option<&'static str> {
    (task.source == TaskSource::External)
        .then_some("this Claude session runs in a terminal: stop it there (Esc or Ctrl-C)")
}

impl TaskPayload {
    /// Checks what a task of this executor needs: a prompt (claude), a command (shell) or a
    /// prompt and an agent name (acp), a positive budget, a timeout of at least one second, tool
    /// names that are not blank.
    pub fn validate(&self, executor: Executor) -> Result<(), PayloadProblem> {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        match executor {
            Executor::Claude if blank(&self.prompt) => {
                return Err(PayloadProblem::new("payload.prompt", "a claude task needs a prompt"))
            }
            Executor::Shell if blank(&self.command) => {
                return Err(PayloadProblem::new("payload.command", "a shell task needs a command"))
            }
            Executor::Acp if blank(&self.prompt) => {
                return Err(PayloadProblem::new("payload.prompt", "an acp task needs a prompt"))
            }
            Executor::Acp if blank(&self.agent) => {
                return Err(PayloadProblem::new("payload.agent", "an acp task needs an agent (codex, opencode, ...)"))
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
        Executor::Claude | Executor::Acp => payload.prompt.as_deref(),
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

/// The most bytes one event's JSON may take on the agent link: the `event` frame around it
/// (task id, seq) must stay under the relay's default frame limit, or the relay closes the
/// link with 1009 and every later event waits behind it.
pub const MAX_WIRE_EVENT_BYTES: usize = crate::DEFAULT_MAX_FRAME_BYTES - 16 * 1024;

/// Shrinks an event until its JSON takes at most `max` bytes: a `diff` loses the end of its
/// patch first (`truncated`), then every long text (and every string in tool params or inputs)
/// is cut with a note saying how much; as a last resort structured values are replaced by a
/// note and a `diff` lists fewer files. Returns whether anything was cut. The full event stays
/// in the agent's own database; only its outgoing form is cut.
pub fn fit_event(event: &mut TaskEvent, max: usize) -> bool {
    let size = |e: &TaskEvent| serde_json::to_vec(e).map(|v| v.len()).unwrap_or(usize::MAX);
    let mut len = size(event);
    if len <= max {
        return false;
    }
    // Escaping may make a byte of patch cost up to six in JSON, unevenly: cut by the measured
    // ratio, and again while it does not fit.
    for _ in 0..8 {
        let TaskEvent::Diff { patch, truncated, .. } = &mut *event else { break };
        if len <= max || patch.is_empty() {
            break;
        }
        let escaped = serde_json::to_string(patch.as_str()).map(|s| s.len()).unwrap_or(usize::MAX);
        let over = len - max;
        let keep = patch.len().saturating_sub(over.saturating_mul(patch.len()).div_ceil(escaped.max(1)) + 64);
        cut_at_line(patch, keep);
        *truncated = true;
        len = size(event);
    }
    // Every string longer than `cap` is cut to it; `cap` shrinks in proportion until it fits.
    let mut cap = usize::MAX;
    while len > max {
        let longest = longest_text(event);
        if longest <= 256 {
            break;
        }
        let proportional = (longest as u128 * max as u128 / len as u128) as usize;
        cap = proportional.min(cap).min(longest - 1).max(256);
        event.map_text(|t| cut_note(t, cap));
        len = size(event);
        if cap == 256 {
            break;
        }
    }
    if len > max {
        event.map_fields(
            |t| cut_note(t, 256),
            |v| serde_json::Value::String(format!("[{} bytes cut]", v.to_string().len())),
        );
        if let TaskEvent::Diff { files, truncated, .. } = event {
            *truncated = true;
            while size(&TaskEvent::Diff { files: files.clone(), patch: String::new(), truncated: true }) > max - 512 {
                let drop = files.len().div_ceil(10).max(1);
                files.truncate(files.len().saturating_sub(drop));
            }
        }
    }
    true
}

/// The longest piece of free text in the event, in bytes.
fn longest_text(event: &TaskEvent) -> usize {
    let mut longest = 0;
    event.clone().map_text(|t| {
        longest = longest.max(t.len());
        t.to_string()
    });
    longest
}

/// `text` cut to about `cap` bytes (at a char boundary) with a note of what was cut.
fn cut_note(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let note = format!(" … [{} bytes cut: too long to send; the full text stays on the agent's machine]", text.len());
    let mut end = cap.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

/// Cuts `text` to at most `keep` bytes, at the last line end before it when there is one.
fn cut_at_line(text: &mut String, keep: usize) {
    if text.len() <= keep {
        return;
    }
    let mut end = keep;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').map(|i| i + 1).unwrap_or(end);
    text.truncate(end);
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
            (Executor::Acp, claude.clone(), Some("payload.agent")),
            (Executor::Acp, TaskPayload { agent: Some("codex".into()), ..shell("ls") }, Some("payload.prompt")),
            (Executor::Acp, TaskPayload { agent: Some("codex".into()), ..claude.clone() }, None),
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

    #[test]
    fn events_too_big_for_a_frame_are_cut_to_fit_and_say_so() {
        use crate::event::{DiffFile, DiffStatus};
        let max = MAX_WIRE_EVENT_BYTES;
        let len = |e: &TaskEvent| serde_json::to_vec(e).unwrap().len();

        let mut small = TaskEvent::Chunk { text: "hello".into(), stream: crate::event::ChunkStream::Stdout };
        assert!(!fit_event(&mut small, max));
        assert_eq!(small, TaskEvent::Chunk { text: "hello".into(), stream: crate::event::ChunkStream::Stdout });

        // Control characters cost six bytes each in JSON.
        let mut output =
            TaskEvent::ToolDone { tool_id: "t".into(), output: "\u{1}é\"".repeat(400_000), is_error: false };
        assert!(fit_event(&mut output, max));
        assert!(len(&output) <= max, "{}", len(&output));
        let TaskEvent::ToolDone { output: text, .. } = &output else { unreachable!() };
        assert!(
            text.ends_with("bytes cut: too long to send; the full text stays on the agent's machine]"),
            "{}",
            &text[text.len() - 100..]
        );
        assert!(text.len() > max / 4, "cut far more than needed: {}", text.len());

        let mut write = TaskEvent::ToolStart {
            tool_id: "t".into(),
            tool_name: "Write".into(),
            params: serde_json::json!({"file_path": "big.txt", "content": "line\n".repeat(600_000)}),
        };
        assert!(fit_event(&mut write, max));
        assert!(len(&write) <= max);
        let TaskEvent::ToolStart { params, .. } = &write else { unreachable!() };
        assert_eq!(params["file_path"], "big.txt");

        let file = |i: usize| DiffFile {
            path: format!("src/{i:06}/{}", "deep/".repeat(20)),
            old_path: None,
            status: DiffStatus::Added,
            additions: 1,
            deletions: 0,
            binary: false,
        };
        let patch: String = (0..100_000).map(|i| format!("+line \"{i}\"\tend\n")).collect();
        let mut diff = TaskEvent::Diff { files: (0..10).map(file).collect(), patch, truncated: false };
        assert!(fit_event(&mut diff, max));
        assert!(len(&diff) <= max);
        let TaskEvent::Diff { files, patch, truncated } = &diff else { unreachable!() };
        assert!(*truncated);
        assert_eq!(files.len(), 10);
        assert!(patch.ends_with("end\n") && patch.len() > max / 2, "{} {:?}", patch.len(), &patch[patch.len() - 150..]);

        let mut many = TaskEvent::Diff { files: (0..20_000).map(file).collect(), patch: "x".into(), truncated: false };
        assert!(fit_event(&mut many, max));
        assert!(len(&many) <= max);
        let TaskEvent::Diff { files, truncated, .. } = &many else { unreachable!() };
        assert!(*truncated && !files.is_empty() && files.len() < 20_000);
    }
}
