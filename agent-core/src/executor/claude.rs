//! The `claude` executor: the Claude Code CLI in `stream-json` mode.
//!
//! Runs `claude -p PROMPT --output-format stream-json --verbose --include-partial-messages`
//! (plus `--model`, `--permission-mode`, `--allowedTools` and `--max-budget-usd` from the task's
//! options) in the task's directory, with the user's environment, as the leader of its own
//! process group. stdout lines go through [`StreamJsonParser`]; stderr is drained concurrently
//! (so the CLI never blocks on a full pipe) and its tail kept for the error of a run that ends
//! without a `result`. A tool that runs longer than a second gets a `tool_progress` every
//! second until its `tool_done`.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use flightdeck_protocol::TaskEvent;
use tokio::io::BufReader;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::process::{describe_exit, read_line_lossy, GroupChild};
use super::stream_json::StreamJsonParser;
use super::{emit, fail, ExecContext, ExecOutcome};

/// How many stderr lines are kept for an error message.
const STDERR_TAIL_LINES: usize = 20;

/// The install hint of a missing CLI.
pub const INSTALL_HINT: &str =
    "install it with `npm install -g @anthropic-ai/claude-code`, or set FLIGHTDECK_CLAUDE_BIN to its path";

/// The CLI arguments for a task (without the binary).
pub fn claude_args(payload: &flightdeck_protocol::TaskPayload) -> Vec<String> {
    let mut prompt = payload.prompt.clone().unwrap_or_default();
    if prompt.starts_with('-') {
        // The CLI would read a prompt starting with '-' as an option.
        prompt.insert(0, ' ');
    }
    let mut args: Vec<String> = vec![
        "-p".into(),
        prompt,
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--include-partial-messages".into(),
    ];
    if let Some(model) = payload.model.as_deref().filter(|m| !m.is_empty()) {
        args.extend(["--model".into(), model.into()]);
    }
    if let Some(mode) = payload.permission_mode.as_deref().filter(|m| !m.is_empty()) {
        args.extend(["--permission-mode".into(), mode.into()]);
    }
    if let Some(max) = payload.max_cost_usd {
        // The CLI then stops itself between turns; the runner enforces the budget too.
        args.extend(["--max-budget-usd".into(), format!("{max}")]);
    }
    if let Some(tools) = payload.allowed_tools.as_ref().filter(|t| !t.is_empty()) {
        // Last, because the option takes several values: one argument per tool, so patterns
        // such as `Bash(npm run test:*)` reach the CLI intact.
        args.push("--allowedTools".into());
        args.extend(tools.iter().filter(|t| !t.trim().is_empty()).cloned());
    }
    args
}

/// A tool between `tool_start` and `tool_done`.
struct RunningTool {
    id: String,
    started: Instant,
    ticks: u64,
}

impl RunningTool {
    fn next_tick(&self) -> Instant {
        self.started + Duration::from_secs(self.ticks + 1)
    }
}

pub async fn run(ctx: ExecContext, events: mpsc::Sender<TaskEvent>) -> ExecOutcome {
    if ctx.payload.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return fail(&events, "a claude task needs a prompt".into()).await;
    }
    let bin = ctx.claude.resolved_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(claude_args(&ctx.payload))
        .current_dir(&ctx.cwd)
        .envs(ctx.claude.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match GroupChild::spawn_recorded(&mut cmd, ctx.group_record.as_deref()) {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return fail(&events, format!("Claude Code CLI not found (`{}`): {INSTALL_HINT}", bin.display())).await;
        }
        Err(err) => return fail(&events, format!("cannot start Claude Code (`{}`): {err}", bin.display())).await,
    };

    let stderr_tail = tokio::spawn(drain_stderr(child.child.stderr.take()));
    let mut stdout = BufReader::new(child.child.stdout.take().expect("stdout is piped"));
    let mut parser = StreamJsonParser::new();
    let mut tools: Vec<RunningTool> = Vec::new();
    let mut ending: Option<ExecOutcome> = None;
    let mut buf = Vec::new();

    loop {
        let next_tick = tools.iter().map(RunningTool::next_tick).min();
        tokio::select! {
            line = read_line_lossy(&mut stdout, &mut buf) => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(%err, "reading Claude Code's output");
                        break;
                    }
                };
                let parsed = match parser.parse_line(&line) {
                    Ok(parsed) => parsed,
                    Err(err) => {
                        tracing::warn!(task = %ctx.task_id, %err, "skipping a line from Claude Code");
                        continue;
                    }
                };
                for event in parsed {
                    match &event {
                        TaskEvent::ToolStart { tool_id, .. } => {
                            tools.push(RunningTool { id: tool_id.clone(), started: Instant::now(), ticks: 0 });
                        }
                        TaskEvent::ToolDone { tool_id, .. } => tools.retain(|t| &t.id != tool_id),
                        TaskEvent::Done { summary } => ending = Some(ExecOutcome::Completed { summary: summary.clone() }),
                        TaskEvent::Error { error } => ending = Some(ExecOutcome::Failed { error: error.clone() }),
                        _ => {}
                    }
                    emit(&events, event).await;
                }
            }
            _ = sleep_until_opt(next_tick) => {
                let now = Instant::now();
                for tool in tools.iter_mut().filter(|t| t.next_tick() <= now) {
                    tool.ticks += 1;
                    let event = TaskEvent::ToolProgress { tool_id: tool.id.clone(), elapsed_secs: tool.ticks as f64 };
                    emit(&events, event).await;
                }
            }
            _ = ctx.stop.cancelled() => {
                if let Err(err) = child.terminate(ctx.kill_grace).await {
                    tracing::warn!(%err, "waiting for a stopped Claude Code");
                }
                stderr_tail.abort();
                return ExecOutcome::Stopped;
            }
        }
    }

    // stdout is closed: the CLI is exiting. Reap it (still stoppable: a hung exit is killed).
    let status = tokio::select! {
        status = child.child.wait() => status,
        _ = ctx.stop.cancelled() => {
            let _ = child.terminate(ctx.kill_grace).await;
            return ExecOutcome::Stopped;
        }
    };
    child.kill_leftovers();
    let tail = match tokio::time::timeout(Duration::from_secs(2), stderr_tail).await {
        Ok(Ok(tail)) => tail,
        _ => String::new(),
    };
    if let Some(ending) = ending {
        return ending;
    }
    let how = match &status {
        Ok(status) => describe_exit(status),
        Err(err) => format!("unknown exit ({err})"),
    };
    let mut error = format!("Claude Code ended without a result ({how})");
    if !tail.trim().is_empty() {
        error.push_str(": ");
        error.push_str(tail.trim());
    }
    fail(&events, error).await
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads stderr to the end, logging it and keeping its last lines.
async fn drain_stderr(stderr: Option<tokio::process::ChildStderr>) -> String {
    let Some(stderr) = stderr else { return String::new() };
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(line)) = read_line_lossy(&mut reader, &mut buf).await {
        tracing::debug!(%line, "claude stderr");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

#[cfg(test)]
mod tests {
    use flightdeck_protocol::TaskPayload;

    use super::claude_args;

    #[test]
    fn arguments_follow_the_task_options() {
        let base = ["-p", "fix it", "--output-format", "stream-json", "--verbose", "--include-partial-messages"];
        let prompt = |p: &str| TaskPayload { prompt: Some(p.into()), ..Default::default() };
        let cases: Vec<(TaskPayload, Vec<&str>)> = vec![
            (prompt("fix it"), vec![]),
            (
                TaskPayload {
                    model: Some("sonnet".into()),
                    permission_mode: Some("acceptEdits".into()),
                    allowed_tools: Some(vec!["Bash(npm run test:*)".into(), "Edit".into()]),
                    max_cost_usd: Some(0.5),
                    ..prompt("fix it")
                },
                vec![
                    "--model",
                    "sonnet",
                    "--permission-mode",
                    "acceptEdits",
                    "--max-budget-usd",
                    "0.5",
                    "--allowedTools",
                    "Bash(npm run test:*)",
                    "Edit",
                ],
            ),
            (TaskPayload { model: Some(String::new()), allowed_tools: Some(vec![]), ..prompt("fix it") }, vec![]),
        ];
        for (payload, extra) in cases {
            let want: Vec<String> = base.iter().chain(extra.iter()).map(|s| s.to_string()).collect();
            assert_eq!(claude_args(&payload), want, "{payload:?}");
        }
        assert_eq!(claude_args(&prompt("-v please"))[1], " -v please", "a prompt is never read as an option");
    }
}
