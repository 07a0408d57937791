//! The `claude` executor: the Claude Code CLI as a session, with the control protocol of Claude
//! Code's own SDKs (SPEC 8).
//!
//! Runs `claude -p --input-format stream-json --output-format stream-json --verbose
//! --include-partial-messages --permission-prompt-tool stdio` (plus `--resume`, `--model`,
//! `--permission-mode`, `--allowedTools` and `--max-budget-usd` from the task's options) in the
//! task's directory, with the user's environment, as the leader of its own process group. The
//! session keeps the process's stdin: it writes the `initialize` control request and the turn's
//! prompt as a `user` message, and answers the CLI's `can_use_tool` control requests with the
//! decisions that arrive on its input channel (or denies one when `decisionTimeoutSecs` passes).
//! When the turn's `result` arrives, stdin is closed and the CLI exits: a follow-up is a new
//! task that resumes the session.
//!
//! stdout lines go through [`StreamJsonParser`]; stderr is drained concurrently (so the CLI never
//! blocks on a full pipe) and its tail kept for the error of a run that ends without a `result`.
//! A tool that runs longer than a second gets a `tool_progress` every second until its
//! `tool_done`; a tool waiting for a decision gets none.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::TaskEvent;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::process::{describe_exit, drain_stderr, read_line_lossy, GroupChild};
use super::stream_json::StreamJsonParser;
use super::{emit, fail, sleep_until_opt, Decision, ExecContext, ExecInput, ExecOutcome};

/// How many stderr lines are kept for an error message.
const STDERR_TAIL_LINES: usize = 20;

/// The install hint of a missing CLI.
pub const INSTALL_HINT: &str =
    "install it with `npm install -g @anthropic-ai/claude-code`, or set FLIGHTDECK_CLAUDE_BIN to its path";

/// The CLI arguments for a task (without the binary). The prompt goes on stdin.
pub fn claude_args(payload: &flightdeck_protocol::TaskPayload) -> Vec<String> {
    let mut args: Vec<String> = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-prompt-tool",
        "stdio",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(session) = payload.resume_session_id.as_deref().filter(|s| !s.is_empty()) {
        args.extend(["--resume".into(), session.into()]);
    }
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

/// The first lines written to the CLI's stdin: the SDK handshake, then the turn's prompt.
pub fn opening_lines(prompt: &str) -> Vec<String> {
    vec![
        json!({"type": "control_request", "request_id": "flightdeck-init", "request": {"subtype": "initialize", "hooks": null}})
            .to_string(),
        json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": prompt}]}}).to_string(),
    ]
}

/// The `control_response` line that answers a `can_use_tool` request.
pub fn decision_line(decision: &Decision, requested_input: &Value) -> String {
    let response = match decision.behavior {
        Behavior::Allow => json!({
            "behavior": "allow",
            "updatedInput": decision.updated_input.clone().unwrap_or_else(|| requested_input.clone()),
        }),
        Behavior::Deny => json!({
            "behavior": "deny",
            "message": decision.message.clone().unwrap_or_else(|| "The user denied this.".into()),
        }),
    };
    json!({"type": "control_response", "response": {"subtype": "success", "request_id": decision.request_id, "response": response}})
        .to_string()
}

/// A `control_request` of the CLI that asks to use a tool, as a `permission_request` event.
fn permission_request(line: &Value) -> Option<(String, TaskEvent)> {
    let request = line.get("request")?;
    if request.get("subtype")?.as_str()? != "can_use_tool" {
        return None;
    }
    let request_id = line.get("request_id")?.as_str()?.to_string();
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(String::from);
    let event = TaskEvent::PermissionRequest {
        request_id: request_id.clone(),
        tool_name: text("tool_name").unwrap_or_default(),
        input: request.get("input").cloned().unwrap_or(Value::Null),
        description: text("description").or_else(|| text("decision_reason")),
        suggestions: request.get("permission_suggestions").and_then(Value::as_array).cloned(),
    };
    Some((request_id, event))
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

/// A permission request waiting for a decision.
struct Pending {
    input: Value,
    /// When it is denied unless decided (`decisionTimeoutSecs`).
    deadline: Option<Instant>,
}

pub async fn run(
    ctx: ExecContext,
    events: mpsc::Sender<TaskEvent>,
    mut input: mpsc::Receiver<ExecInput>,
) -> ExecOutcome {
    let Some(prompt) = ctx.payload.prompt.clone().filter(|p| !p.trim().is_empty()) else {
        return fail(&events, "a claude task needs a prompt".into()).await;
    };
    let bin = ctx.claude.resolved_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(claude_args(&ctx.payload))
        .current_dir(&ctx.cwd)
        .envs(ctx.claude.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match GroupChild::spawn_recorded(&mut cmd, &ctx.task_id, ctx.group_record.as_deref()) {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return fail(&events, format!("Claude Code CLI not found (`{}`): {INSTALL_HINT}", bin.display())).await;
        }
        Err(err) => return fail(&events, format!("cannot start Claude Code (`{}`): {err}", bin.display())).await,
    };

    let stderr_tail = tokio::spawn(drain_stderr(child.child.stderr.take(), STDERR_TAIL_LINES));
    let mut stdin = child.child.stdin.take();
    for line in opening_lines(&prompt) {
        write_line(&mut stdin, &line).await;
    }
    let mut stdout = BufReader::new(child.child.stdout.take().expect("stdout is piped"));
    let mut parser = StreamJsonParser::new();
    let mut tools: Vec<RunningTool> = Vec::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let decision_timeout = ctx.payload.decision_timeout_secs.filter(|s| *s > 0).map(Duration::from_secs);
    let mut prompt_shown = false;
    let mut ending: Option<ExecOutcome> = None;
    let mut buf = Vec::new();

    loop {
        // Tools waiting for a decision are not "running": no progress ticks for them.
        let next_tick = if pending.is_empty() { tools.iter().map(RunningTool::next_tick).min() } else { None };
        let next_timeout = pending.values().filter_map(|p| p.deadline).min();
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
                let value: Value = match serde_json::from_str(line.trim()) {
                    Ok(value @ Value::Object(_)) => value,
                    _ if line.trim().is_empty() => continue,
                    _ => {
                        tracing::warn!(task = %ctx.task_id, "skipping a line from Claude Code that is not JSON");
                        continue;
                    }
                };
                match value.get("type").and_then(Value::as_str) {
                    Some("control_request") => {
                        match permission_request(&value) {
                            Some((request_id, event)) => {
                                let requested = match &event {
                                    TaskEvent::PermissionRequest { input, .. } => input.clone(),
                                    _ => Value::Null,
                                };
                                let deadline = decision_timeout.map(|t| Instant::now() + t);
                                pending.insert(request_id, Pending { input: requested, deadline });
                                emit(&events, event).await;
                            }
                            None => {
                                // Hook callbacks, MCP messages: nothing this session offers.
                                let request_id = value.get("request_id").cloned().unwrap_or(Value::Null);
                                let answer = json!({"type": "control_response", "response": {
                                    "subtype": "error", "request_id": request_id, "error": "not supported by Flightdeck"}});
                                write_line(&mut stdin, &answer.to_string()).await;
                            }
                        }
                        continue;
                    }
                    // The answer to `initialize` (and nothing else is asked of the CLI).
                    Some("control_response") | Some("control_cancel_request") => continue,
                    _ => {}
                }
                for event in parser.parse_value(&value) {
                    let is_status = matches!(event, TaskEvent::Status { .. });
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
                    if is_status && !prompt_shown {
                        // The turn's prompt, right after `status running`.
                        prompt_shown = true;
                        emit(&events, TaskEvent::UserMessage { text: prompt.clone() }).await;
                    }
                }
                if ending.is_some() {
                    // The turn is over: closing stdin ends the CLI (a follow-up resumes it).
                    stdin = None;
                    for (request_id, _) in pending.drain() {
                        tracing::debug!(%request_id, "a permission request outlived its turn");
                    }
                }
            }
            Some(ExecInput::Decide { decision, reply }) = input.recv() => {
                match pending.remove(&decision.request_id) {
                    Some(request) => {
                        write_line(&mut stdin, &decision_line(&decision, &request.input)).await;
                        emit(&events, decision_event(decision)).await;
                        let _ = reply.send(true);
                    }
                    None => {
                        let _ = reply.send(false);
                    }
                }
            }
            _ = sleep_until_opt(next_timeout) => {
                let now = Instant::now();
                let due: Vec<String> =
                    pending.iter().filter(|(_, p)| p.deadline.is_some_and(|d| d <= now)).map(|(id, _)| id.clone()).collect();
                for request_id in due {
                    let request = pending.remove(&request_id).expect("due requests are pending");
                    let secs = decision_timeout.map(|t| t.as_secs()).unwrap_or_default();
                    let decision = Decision {
                        request_id,
                        behavior: Behavior::Deny,
                        updated_input: None,
                        message: Some(format!("Nobody decided within {secs} s, so this was denied.")),
                        decided_by: DecidedBy::Timeout,
                    };
                    write_line(&mut stdin, &decision_line(&decision, &request.input)).await;
                    emit(&events, decision_event(decision)).await;
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
    drop(stdin);

    // stdout is closed: the CLI is exiting. Reap it (still stoppable: a hung exit is killed).
    let Some((status, tail)) = child.reap(&ctx.stop, ctx.kill_grace, stderr_tail).await else {
        return ExecOutcome::Stopped;
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

fn decision_event(decision: Decision) -> TaskEvent {
    TaskEvent::PermissionDecision {
        request_id: decision.request_id,
        behavior: decision.behavior,
        message: decision.message,
        updated_input: decision.updated_input,
        decided_by: decision.decided_by,
    }
}

/// Writes one line to the CLI; a CLI that closed its stdin (exiting) is left to its exit.
async fn write_line(stdin: &mut Option<ChildStdin>, line: &str) {
    let Some(pipe) = stdin.as_mut() else { return };
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    if let Err(err) = async {
        pipe.write_all(&bytes).await?;
        pipe.flush().await
    }
    .await
    {
        tracing::warn!(%err, "writing to Claude Code's stdin");
        *stdin = None;
    }
}

#[cfg(test)]
mod tests {
    use flightdeck_protocol::TaskPayload;

    use super::*;

    #[test]
    fn arguments_follow_the_task_options() {
        let base = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--permission-prompt-tool",
            "stdio",
        ];
        let prompt = |p: &str| TaskPayload { prompt: Some(p.into()), ..Default::default() };
        let cases: Vec<(TaskPayload, Vec<&str>)> = vec![
            (prompt("fix it"), vec![]),
            (
                TaskPayload {
                    model: Some("sonnet".into()),
                    permission_mode: Some("acceptEdits".into()),
                    allowed_tools: Some(vec!["Bash(npm run test:*)".into(), "Edit".into()]),
                    max_cost_usd: Some(0.5),
                    resume_session_id: Some("5f0e1c9a".into()),
                    ..prompt("fix it")
                },
                vec![
                    "--resume",
                    "5f0e1c9a",
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
    }

    #[test]
    fn the_prompt_goes_on_stdin_after_the_handshake_and_decisions_answer_requests() {
        let lines = opening_lines("-v please \"quote\"\nsecond line");
        let init: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(init["request"]["subtype"], "initialize");
        let user: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(user["message"]["content"][0]["text"], "-v please \"quote\"\nsecond line");
        assert!(lines.iter().all(|l| !l.contains('\n')), "one JSON document per line");

        let requested = json!({"command": "touch made-by-claude.txt"});
        let allow = Decision {
            request_id: "r1".into(),
            behavior: Behavior::Allow,
            updated_input: None,
            message: None,
            decided_by: DecidedBy::Owner,
        };
        let line: Value = serde_json::from_str(&decision_line(&allow, &requested)).unwrap();
        assert_eq!(
            line,
            json!({"type": "control_response", "response": {"subtype": "success", "request_id": "r1",
                "response": {"behavior": "allow", "updatedInput": {"command": "touch made-by-claude.txt"}}}})
        );
        let deny = Decision { behavior: Behavior::Deny, message: Some("not here".into()), ..allow };
        let line: Value = serde_json::from_str(&decision_line(&deny, &requested)).unwrap();
        assert_eq!(line["response"]["response"], json!({"behavior": "deny", "message": "not here"}));
    }
}
