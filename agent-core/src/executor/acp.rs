//! The `acp` executor: an Agent Client Protocol agent as one session turn (SPEC 14).
//!
//! Starts the named agent (see [`crate::acp::agents`]) in the task's directory as the leader of
//! its own process group, and speaks JSON-RPC with it over stdio: `initialize`, then
//! `session/new` with the directory as `cwd` (or `session/load` of `resumeSessionId`, when the
//! agent said `loadSession`), `session/set_mode` for a `permissionMode`, `session/set_model` for
//! a `model`, and one `session/prompt`. Its `session/update` notifications become TaskEvents:
//!
//! | ACP | TaskEvent |
//! |---|---|
//! | `agent_message_chunk` | `chunk` (assistant) |
//! | `agent_thought_chunk` | `chunk` (thinking) |
//! | `tool_call` | `tool_start` (and `tool_done` when it comes finished) |
//! | `tool_call_update`, completed or failed | `tool_done` |
//! | `plan` | `plan` |
//! | `usage_update` with a cost, the prompt's `usage` | `usage` |
//! | the prompt's `stopReason` | `done` (`end_turn`); `cancelled`: the task ends cancelled; else `error` |
//!
//! The agent's requests are served here: `session/request_permission` becomes a
//! `permission_request` (the task `waiting`, as for Claude) answered with the option the decision
//! picks; `fs/read_text_file`, `fs/write_text_file` and `terminal/*` act inside the task's
//! working tree only (anything else gets a JSON-RPC error, and an `isError` tool event says so).
//!
//! The session is driven by one `select!` loop that reads the agent's stdout itself, so a stop,
//! a decision or a deadline is never stuck behind a read. Whatever goes wrong (a line that is not
//! JSON-RPC, an agent that exits mid-turn or does not answer `initialize` in time, an error
//! answer) ends the task with an `error` naming it; the process group is killed either way.
//! Cancel sends `session/cancel`, waits up to the kill grace for the turn to end, then ends the
//! group.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy, PlanEntry, PlanEntryStatus};
use flightdeck_protocol::{TaskEvent, TaskStatus};
use serde_json::{json, Value};
use tokio::io::BufReader;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::process::{describe_exit, drain_stderr, read_line_lossy, GroupChild};
use super::{emit, fail, sleep_until_opt, Decision, ExecContext, ExecInput, ExecOutcome};
use crate::acp::agents::install_hint;
use crate::acp::paths::WorkingTree;
use crate::acp::rpc::{self, Incoming, Outgoing, RpcError};
use crate::acp::terminal::Terminals;

/// The ACP version this client speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// How many stderr lines are kept for an error message.
const STDERR_TAIL_LINES: usize = 20;

/// How long a finished agent gets to exit by itself once its stdin is closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What one of our requests was for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Initialize,
    NewSession,
    LoadSession,
    SetMode,
    SetModel,
    Prompt,
}

impl Call {
    fn method(self) -> &'static str {
        match self {
            Call::Initialize => "initialize",
            Call::NewSession => "session/new",
            Call::LoadSession => "session/load",
            Call::SetMode => "session/set_mode",
            Call::SetModel => "session/set_model",
            Call::Prompt => "session/prompt",
        }
    }
}

/// A permission request waiting for a decision.
struct Pending {
    rpc_id: Value,
    options: Vec<Value>,
    /// When it is denied unless decided (`decisionTimeoutSecs`).
    deadline: Option<Instant>,
}

/// How the loop ends.
enum Ending {
    /// The outcome is known (its `done` or `error` already sent): close the session.
    Outcome(ExecOutcome),
    /// The agent's stdout closed before the turn ended.
    Eof,
}

pub async fn run(ctx: ExecContext, events: mpsc::Sender<TaskEvent>, input: mpsc::Receiver<ExecInput>) -> ExecOutcome {
    let Some(prompt) = ctx.payload.prompt.clone().filter(|p| !p.trim().is_empty()) else {
        return fail(&events, "an acp task needs a prompt".into()).await;
    };
    let name = ctx.payload.agent.clone().unwrap_or_default();
    let Some(agent) = ctx.acp.agents.get(&name).cloned() else {
        let known: Vec<String> = ctx.acp.agents.iter().map(|a| a.name.clone()).collect();
        return fail(&events, format!("unknown ACP agent `{name}`: this machine knows {}", known.join(", "))).await;
    };
    let tree = match WorkingTree::new(&ctx.cwd) {
        Ok(tree) => tree,
        Err(err) => return fail(&events, format!("cannot open the working tree {}: {err}", ctx.cwd.display())).await,
    };
    let mut cmd = Command::new(&agent.command[0]);
    cmd.args(&agent.command[1..])
        .current_dir(&ctx.cwd)
        .envs(ctx.acp.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = agent.command.join(" ");
    let mut child = match GroupChild::spawn_recorded(&mut cmd, &ctx.task_id, ctx.group_record.as_deref()) {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let hint = install_hint(&name).map(|h| format!(": install it with `{h}`")).unwrap_or_default();
            return fail(&events, format!("ACP agent `{name}` not found (`{shown}`){hint}")).await;
        }
        Err(err) => return fail(&events, format!("cannot start ACP agent `{name}` (`{shown}`): {err}")).await,
    };
    let stderr_tail = tokio::spawn(drain_stderr(child.child.stderr.take(), STDERR_TAIL_LINES));
    let out = Outgoing::start(child.child.stdin.take().expect("stdin is piped"));
    let stdout = BufReader::new(child.child.stdout.take().expect("stdout is piped"));

    let mut session = Session::new(&ctx, name, prompt, tree, out, events.clone());
    let ending = session.drive(stdout, input, &ctx).await;
    let Session { out, mut terminals, .. } = session;
    terminals.kill_all();

    let outcome = match ending {
        Ending::Outcome(ExecOutcome::Stopped) => {
            drop(out);
            if let Err(err) = child.terminate(ctx.kill_grace).await {
                tracing::warn!(%err, "waiting for a stopped ACP agent");
            }
            stderr_tail.abort();
            return ExecOutcome::Stopped;
        }
        Ending::Outcome(outcome) => {
            // The turn is over: closing stdin asks the agent to exit; it gets a moment.
            drop(out);
            if tokio::time::timeout(EXIT_GRACE, child.child.wait()).await.is_err() {
                let _ = child.terminate(ctx.kill_grace).await;
            }
            Some(outcome)
        }
        Ending::Eof => None,
    };
    // stdout is closed (or the turn is over): reap the agent, still stoppable.
    let Some((status, tail)) = child.reap(&ctx.stop, ctx.kill_grace, stderr_tail).await else {
        return ExecOutcome::Stopped;
    };
    if let Some(outcome) = outcome {
        if let ExecOutcome::Failed { error } = &outcome {
            tracing::info!(task = %ctx.task_id, %error, stderr = %tail, "ACP task failed");
        }
        return outcome;
    }
    let how = match &status {
        Ok(status) => describe_exit(status),
        Err(err) => format!("unknown exit ({err})"),
    };
    let mut error = format!("the ACP agent exited before the turn ended ({how})");
    if !tail.trim().is_empty() {
        error.push_str(": ");
        error.push_str(tail.trim());
    }
    fail(&events, error).await
}

/// One agent session, from `initialize` to the prompt's answer.
struct Session {
    task_id: String,
    agent: String,
    prompt: String,
    tree: WorkingTree,
    out: Outgoing,
    events: mpsc::Sender<TaskEvent>,
    calls: HashMap<u64, Call>,
    session_id: Option<String>,
    /// `initialize` said `loadSession`.
    can_load: bool,
    /// Set while `session/load` replays the history: those updates are not this turn's.
    loading: bool,
    /// The model the session runs, for `status`.
    model: Option<String>,
    /// The models the agent lets a client choose (`session/new`'s `models`); `None`: it offers none.
    models: Option<Vec<String>>,
    /// Until the prompt is sent: the handshake must be done by then.
    handshake_deadline: Option<Instant>,
    /// Tools between `tool_start` and `tool_done`.
    tools: Vec<String>,
    /// Tool calls announced without their input yet (claude-code-acp announces each call twice,
    /// first empty): started once their input, a permission request or their end comes.
    announced: HashMap<String, Value>,
    pending: HashMap<String, Pending>,
    /// The assistant's text since the last tool call: the turn's summary.
    last_text: String,
    usage: (u64, u64, f64),
    terminals: Terminals,
    /// Numbers the tool events of the client's own refusals and terminals.
    local_tools: u64,
}

impl Session {
    fn new(
        ctx: &ExecContext,
        agent: String,
        prompt: String,
        tree: WorkingTree,
        out: Outgoing,
        events: mpsc::Sender<TaskEvent>,
    ) -> Session {
        let terminals = Terminals::new(events.clone(), ctx.task_id.clone());
        Session {
            task_id: ctx.task_id.clone(),
            agent,
            prompt,
            tree,
            out,
            events,
            calls: HashMap::new(),
            session_id: None,
            can_load: false,
            loading: false,
            model: None,
            models: None,
            handshake_deadline: Some(Instant::now() + ctx.acp.handshake_timeout),
            tools: Vec::new(),
            announced: HashMap::new(),
            pending: HashMap::new(),
            last_text: String::new(),
            usage: (0, 0, 0.0),
            terminals,
            local_tools: 0,
        }
    }

    async fn drive(
        &mut self,
        mut stdout: BufReader<tokio::process::ChildStdout>,
        mut input: mpsc::Receiver<ExecInput>,
        ctx: &ExecContext,
    ) -> Ending {
        let decision_timeout = ctx.payload.decision_timeout_secs.filter(|s| *s > 0).map(Duration::from_secs);
        let handshake_secs = ctx.acp.handshake_timeout.as_secs_f64();
        self.call(
            Call::Initialize,
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "clientCapabilities": {"fs": {"readTextFile": true, "writeTextFile": true}, "terminal": true},
                "clientInfo": {"name": "flightdeck", "version": env!("CARGO_PKG_VERSION")},
            }),
        );
        let mut buf = Vec::new();
        loop {
            let next_timeout = self.pending.values().filter_map(|p| p.deadline).min();
            tokio::select! {
                line = read_line_lossy(&mut stdout, &mut buf) => {
                    let line = match line {
                        Ok(Some(line)) => line,
                        Ok(None) => return Ending::Eof,
                        Err(err) => {
                            tracing::warn!(%err, "reading the ACP agent's output");
                            return Ending::Eof;
                        }
                    };
                    let message = match rpc::classify(&line) {
                        Ok(Some(message)) => message,
                        Ok(None) => continue,
                        Err(err) => return Ending::Outcome(fail(&self.events, err.to_string()).await),
                    };
                    if let Some(outcome) = self.handle(message, ctx, decision_timeout).await {
                        return Ending::Outcome(outcome);
                    }
                }
                Some(ExecInput::Decide { decision, reply }) = input.recv() => {
                    let _ = reply.send(self.decide(decision).await);
                }
                _ = sleep_until_opt(next_timeout) => {
                    let now = Instant::now();
                    let due: Vec<String> = self.pending.iter()
                        .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now)).map(|(id, _)| id.clone()).collect();
                    for request_id in due {
                        let secs = decision_timeout.map(|t| t.as_secs()).unwrap_or_default();
                        self.decide(Decision {
                            request_id,
                            behavior: Behavior::Deny,
                            updated_input: None,
                            message: Some(format!("Nobody decided within {secs} s, so this was denied.")),
                            decided_by: DecidedBy::Timeout,
                        }).await;
                    }
                }
                _ = sleep_until_opt(self.handshake_deadline) => {
                    let waiting_for = self.calls.values().next().map(|c| c.method()).unwrap_or("initialize");
                    let error = format!("the ACP agent `{}` did not answer {waiting_for} within {handshake_secs} s", self.agent);
                    return Ending::Outcome(fail(&self.events, error).await);
                }
                _ = ctx.stop.cancelled() => return self.cancel(&mut stdout, ctx).await,
            }
        }
    }

    fn call(&mut self, call: Call, params: Value) {
        let id = self.out.request(call.method(), params);
        self.calls.insert(id, call);
    }

    /// Handles one message; `Some` when the turn is over.
    async fn handle(
        &mut self,
        message: Incoming,
        ctx: &ExecContext,
        decision_timeout: Option<Duration>,
    ) -> Option<ExecOutcome> {
        match message {
            Incoming::Response { id, result } => {
                let Some(call) = self.calls.remove(&id) else {
                    tracing::debug!(id, "an ACP answer to nothing we asked");
                    return None;
                };
                match result {
                    Ok(result) => self.answered(call, result, ctx).await,
                    Err(error) => Some(self.refused(call, error).await),
                }
            }
            Incoming::Notification { method, params } => {
                if method == "session/update" && !self.loading {
                    self.update(&params["update"]).await;
                }
                None
            }
            Incoming::Request { id, method, params } => {
                self.serve(id, &method, params, decision_timeout).await;
                None
            }
        }
    }

    /// One of our requests succeeded: the next step of the session.
    async fn answered(&mut self, call: Call, result: Value, ctx: &ExecContext) -> Option<ExecOutcome> {
        match call {
            Call::Initialize => {
                self.can_load = result["agentCapabilities"]["loadSession"].as_bool().unwrap_or(false);
                let cwd = self.tree.root().display().to_string();
                match ctx.payload.resume_session_id.clone().filter(|s| !s.is_empty()) {
                    Some(_) if !self.can_load => {
                        let error = format!("the ACP agent `{}` cannot resume a session (no loadSession)", self.agent);
                        return Some(fail(&self.events, error).await);
                    }
                    Some(session) => {
                        self.loading = true;
                        self.session_id = Some(session.clone());
                        self.call(Call::LoadSession, json!({"sessionId": session, "cwd": cwd, "mcpServers": []}));
                    }
                    None => self.call(Call::NewSession, json!({"cwd": cwd, "mcpServers": []})),
                }
            }
            Call::NewSession | Call::LoadSession => {
                self.loading = false;
                if call == Call::NewSession {
                    let Some(session) = result["sessionId"].as_str() else {
                        return Some(fail(&self.events, "the ACP agent's session/new has no sessionId".into()).await);
                    };
                    self.session_id = Some(session.to_string());
                }
                self.model = result["models"]["currentModelId"].as_str().map(String::from);
                self.models = result["models"]["availableModels"]
                    .as_array()
                    .map(|models| models.iter().filter_map(|m| m["modelId"].as_str().map(String::from)).collect());
                if let Some(mode) = ctx.payload.permission_mode.clone().filter(|m| !m.is_empty()) {
                    let offered: Vec<&str> = result["modes"]["availableModes"]
                        .as_array()
                        .map(|modes| modes.iter().filter_map(|m| m["id"].as_str()).collect())
                        .unwrap_or_default();
                    if !offered.contains(&mode.as_str()) {
                        let error = format!(
                            "the ACP agent `{}` has no permission mode `{mode}` (it offers: {})",
                            self.agent,
                            if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
                        );
                        return Some(fail(&self.events, error).await);
                    }
                    self.call(Call::SetMode, json!({"sessionId": self.session_id, "modeId": mode}));
                    return None;
                }
                return self.after_mode(ctx).await;
            }
            Call::SetMode => return self.after_mode(ctx).await,
            Call::SetModel => self.send_prompt().await,
            Call::Prompt => return Some(self.turn_ended(&result).await),
        }
        None
    }

    /// The mode is set (or none was asked for): the model, then the prompt.
    async fn after_mode(&mut self, ctx: &ExecContext) -> Option<ExecOutcome> {
        match ctx.payload.model.clone().filter(|m| !m.is_empty()) {
            Some(model) => {
                let offered = self.models.clone().unwrap_or_default();
                if !offered.contains(&model) {
                    let error = match offered.is_empty() {
                        true => format!(
                            "the ACP agent `{}` does not let a client choose its model: leave `model` out (or set it in the agent's own settings)",
                            self.agent
                        ),
                        false => format!("the ACP agent `{}` has no model `{model}` (it offers: {})", self.agent, offered.join(", ")),
                    };
                    return Some(fail(&self.events, error).await);
                }
                self.model = Some(model.clone());
                self.call(Call::SetModel, json!({"sessionId": self.session_id, "modelId": model}));
            }
            None => self.send_prompt().await,
        }
        None
    }

    async fn send_prompt(&mut self) {
        self.handshake_deadline = None;
        // A session is named to the relay only when it can be resumed (SPEC 14): a reply to a
        // task without one is refused with `not_resumable`.
        let session_id = self.session_id.clone().filter(|_| self.can_load);
        let status = TaskEvent::Status { status: TaskStatus::Running, model: self.model.clone(), session_id };
        emit(&self.events, status).await;
        emit(&self.events, TaskEvent::UserMessage { text: self.prompt.clone() }).await;
        let prompt = json!({"sessionId": self.session_id, "prompt": [{"type": "text", "text": self.prompt}]});
        self.call(Call::Prompt, prompt);
    }

    /// One of our requests failed: the task fails, saying which and why.
    async fn refused(&mut self, call: Call, error: RpcError) -> ExecOutcome {
        let error = format!("the ACP agent `{}` answered {} with an error: {error}", self.agent, call.method());
        fail(&self.events, error).await
    }

    /// The prompt's answer: how the turn ended.
    async fn turn_ended(&mut self, result: &Value) -> ExecOutcome {
        if let Some(usage) = result.get("usage").filter(|u| u.is_object()) {
            self.usage.0 = usage["inputTokens"].as_u64().unwrap_or(self.usage.0);
            self.usage.1 = usage["outputTokens"].as_u64().unwrap_or(self.usage.1);
            self.emit_usage().await;
        }
        self.close_tools().await;
        let reason = result["stopReason"].as_str().unwrap_or("(none)");
        match reason {
            "end_turn" => {
                let summary = self.last_text.trim();
                let summary = if summary.is_empty() { "completed".to_string() } else { summary.to_string() };
                emit(&self.events, TaskEvent::Done { summary: summary.clone() }).await;
                ExecOutcome::Completed { summary }
            }
            // Not asked for (a cancel of ours ends the loop before): the agent gave up the turn,
            // as Codex does after a denied request. Not a failure; a reply goes on from here.
            "cancelled" => ExecOutcome::Cancelled,
            other => fail(&self.events, format!("the ACP agent `{}` stopped: {other}", self.agent)).await,
        }
    }

    /// Tools the agent never finished end with the turn: nothing is left open in the transcript.
    async fn close_tools(&mut self) {
        for tool_id in std::mem::take(&mut self.tools) {
            let event = TaskEvent::ToolDone { tool_id, output: "(the turn ended)".into(), is_error: true };
            emit(&self.events, event).await;
        }
    }

    async fn emit_usage(&self) {
        let (input_tokens, output_tokens, total_cost_usd) = self.usage;
        emit(&self.events, TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd }).await;
    }

    /// Maps one `session/update` to events.
    async fn update(&mut self, update: &Value) {
        let kind = update["sessionUpdate"].as_str().unwrap_or_default();
        match kind {
            "agent_message_chunk" | "agent_thought_chunk" => {
                let Some(text) = content_text(&update["content"]).filter(|t| !t.is_empty()) else { return };
                let stream = if kind == "agent_message_chunk" {
                    self.last_text.push_str(&text);
                    ChunkStream::Assistant
                } else {
                    ChunkStream::Thinking
                };
                emit(&self.events, TaskEvent::Chunk { text, stream }).await;
            }
            "tool_call" | "tool_call_update" => {
                let Some(tool_id) = update["toolCallId"].as_str().map(String::from) else { return };
                if !self.tools.contains(&tool_id) {
                    let call = self.announced.entry(tool_id.clone()).or_insert_with(|| json!({}));
                    merge_call(call, update);
                    let call = call.clone();
                    // An update of a call never announced (before this turn) still gets its pair
                    // when it ends; an announcement without input waits for it.
                    if has_input(&call) || is_finished(&call) || call["status"] == "in_progress" {
                        self.announced.remove(&tool_id);
                        self.start_tool(&tool_id, &call).await;
                    }
                }
                self.finish_tool_if_done(&tool_id, update).await;
            }
            "plan" => {
                let entries = update["entries"]
                    .as_array()
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|e| PlanEntry {
                                content: e["content"].as_str().unwrap_or_default().to_string(),
                                status: match e["status"].as_str() {
                                    Some("completed") => PlanEntryStatus::Completed,
                                    Some("in_progress") => PlanEntryStatus::InProgress,
                                    _ => PlanEntryStatus::Pending,
                                },
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                emit(&self.events, TaskEvent::Plan { entries }).await;
            }
            "usage_update" => {
                // Tokens come with the prompt's answer; a cost in dollars counts against the
                // budget as soon as it is reported.
                let cost = &update["cost"];
                if let (Some(amount), Some("USD")) = (cost["amount"].as_f64(), cost["currency"].as_str()) {
                    self.usage.2 = amount;
                    self.emit_usage().await;
                }
            }
            // The prompt as the agent echoes it, its commands, modes and settings: not transcript.
            _ => {}
        }
    }

    async fn start_tool(&mut self, tool_id: &str, update: &Value) {
        self.last_text.clear();
        self.tools.push(tool_id.to_string());
        let tool_name = update["title"]
            .as_str()
            .filter(|t| !t.is_empty())
            .or_else(|| update["kind"].as_str())
            .unwrap_or("tool")
            .to_string();
        let mut params = update.get("rawInput").cloned().unwrap_or(Value::Null);
        if params.is_null() {
            params = json!({"kind": update["kind"], "locations": update["locations"]});
        }
        emit(&self.events, TaskEvent::ToolStart { tool_id: tool_id.to_string(), tool_name, params }).await;
    }

    async fn finish_tool_if_done(&mut self, tool_id: &str, update: &Value) {
        if !is_finished(update) || !self.tools.iter().any(|t| t == tool_id) {
            return;
        }
        self.tools.retain(|t| t != tool_id);
        let is_error = update["status"].as_str() == Some("failed");
        let output = tool_output(update, &self.terminals);
        emit(&self.events, TaskEvent::ToolDone { tool_id: tool_id.to_string(), output, is_error }).await;
    }

    /// Serves one request of the agent.
    async fn serve(&mut self, id: Value, method: &str, params: Value, decision_timeout: Option<Duration>) {
        match method {
            "session/request_permission" => {
                let request_id = match &id {
                    Value::String(s) => format!("acp-{s}"),
                    other => format!("acp-{other}"),
                };
                let tool = &params["toolCall"];
                // A call announced without its input starts now, with what the request says.
                if let Some(tool_id) = tool["toolCallId"].as_str().map(String::from) {
                    if let Some(mut call) = self.announced.remove(&tool_id) {
                        merge_call(&mut call, tool);
                        self.start_tool(&tool_id, &call).await;
                    }
                }
                let title = tool["title"].as_str().filter(|t| !t.is_empty()).map(String::from);
                let options = params["options"].as_array().cloned().unwrap_or_default();
                let event = TaskEvent::PermissionRequest {
                    request_id: request_id.clone(),
                    tool_name: title
                        .clone()
                        .or_else(|| tool["kind"].as_str().map(String::from))
                        .unwrap_or("tool".into()),
                    input: tool.get("rawInput").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| tool.clone()),
                    description: title,
                    suggestions: Some(options.clone()),
                };
                let deadline = decision_timeout.map(|t| Instant::now() + t);
                self.pending.insert(request_id, Pending { rpc_id: id, options, deadline });
                emit(&self.events, event).await;
            }
            "fs/read_text_file" => {
                let answer = self.read_file(&params).await;
                self.answer(id, method, &params, answer).await;
            }
            "fs/write_text_file" => {
                let answer = self.write_file(&params).await;
                self.answer(id, method, &params, answer).await;
            }
            "terminal/create" => {
                let answer = self.terminals.create(&self.tree, &params, &mut self.local_tools).await;
                self.answer(id, method, &params, answer).await;
            }
            "terminal/output" | "terminal/wait_for_exit" | "terminal/kill" | "terminal/release" => {
                // `wait_for_exit` answers when the command ends, from its own task.
                if let Err(error) = self.terminals.serve(id.clone(), method, &params, &self.out) {
                    self.answer(id, method, &params, Err(error)).await;
                }
            }
            other => self.out.respond_error(id, rpc::METHOD_NOT_FOUND, format!("{other} is not offered by Flightdeck")),
        }
    }

    /// Answers a request; a refusal is also shown in the transcript, as a failed tool.
    async fn answer(&mut self, id: Value, method: &str, params: &Value, answer: Result<Value, String>) {
        match answer {
            Ok(result) => self.out.respond(id, result),
            Err(error) => {
                self.local_tools += 1;
                let tool_id = format!("flightdeck-{}", self.local_tools);
                let params = json!({"path": params["path"], "command": params["command"]});
                let start = TaskEvent::ToolStart { tool_id: tool_id.clone(), tool_name: method.to_string(), params };
                emit(&self.events, start).await;
                let output = format!("refused: {error}");
                emit(&self.events, TaskEvent::ToolDone { tool_id, output, is_error: true }).await;
                self.out.respond_error(id, rpc::INVALID_PARAMS, error);
            }
        }
    }

    async fn read_file(&self, params: &Value) -> Result<Value, String> {
        let path = self.tree.resolve(params["path"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = params["line"].as_u64().unwrap_or(1).max(1) as usize;
        let content = match params["limit"].as_u64() {
            None if line == 1 => text,
            limit => {
                let lines = text.split_inclusive('\n').skip(line - 1);
                match limit {
                    Some(limit) => lines.take(limit as usize).collect(),
                    None => lines.collect(),
                }
            }
        };
        Ok(json!({"content": content}))
    }

    async fn write_file(&self, params: &Value) -> Result<Value, String> {
        let path = self.tree.resolve(params["path"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        let content = params["content"].as_str().ok_or("no content to write")?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        tokio::fs::write(&path, content).await.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(json!({}))
    }

    /// Answers a pending permission request with the option the decision picks: allow takes
    /// an `allow_once` (else `allow_always`) option, deny a `reject_once` (else
    /// `reject_always`) one; with no such option the request is answered `cancelled`.
    async fn decide(&mut self, decision: Decision) -> bool {
        let Some(pending) = self.pending.remove(&decision.request_id) else { return false };
        let outcome = match choose_option(&pending.options, decision.behavior) {
            Some(option_id) => json!({"outcome": "selected", "optionId": option_id}),
            None => json!({"outcome": "cancelled"}),
        };
        self.out.respond(pending.rpc_id, json!({"outcome": outcome}));
        let event = TaskEvent::PermissionDecision {
            request_id: decision.request_id,
            behavior: decision.behavior,
            message: decision.message,
            updated_input: decision.updated_input,
            decided_by: decision.decided_by,
        };
        emit(&self.events, event).await;
        true
    }

    /// Cancel (SPEC 14): `session/cancel`, pending permission requests answered `cancelled`, then
    /// the turn gets the kill grace to end before its process group is ended.
    async fn cancel(&mut self, stdout: &mut BufReader<tokio::process::ChildStdout>, ctx: &ExecContext) -> Ending {
        if let Some(session) = &self.session_id {
            self.out.notify("session/cancel", json!({"sessionId": session}));
        }
        for (_, pending) in self.pending.drain() {
            self.out.respond(pending.rpc_id, json!({"outcome": {"outcome": "cancelled"}}));
        }
        let prompt_pending = self.calls.values().any(|c| *c == Call::Prompt);
        if prompt_pending {
            let deadline = Instant::now() + ctx.kill_grace;
            let mut buf = Vec::new();
            // Whatever the agent says until its turn ends is recorded; its answer ends the wait.
            while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, read_line_lossy(stdout, &mut buf)).await {
                match rpc::classify(&line) {
                    Ok(Some(Incoming::Response { id, .. })) if self.calls.get(&id) == Some(&Call::Prompt) => break,
                    Ok(Some(Incoming::Notification { method, params })) if method == "session/update" => {
                        self.update(&params["update"]).await;
                    }
                    Ok(Some(Incoming::Request { id, .. })) => {
                        self.out.respond_error(id, rpc::INTERNAL_ERROR, "the task is being cancelled");
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        tracing::info!(task = %self.task_id, "ACP task stopped");
        Ending::Outcome(ExecOutcome::Stopped)
    }
}

/// The option a decision picks (see [`Session::decide`]).
pub fn choose_option(options: &[Value], behavior: Behavior) -> Option<String> {
    let kinds: &[&str] = match behavior {
        Behavior::Allow => &["allow_once", "allow_always"],
        Behavior::Deny => &["reject_once", "reject_always"],
    };
    kinds
        .iter()
        .find_map(|kind| options.iter().find(|o| o["kind"].as_str() == Some(kind)))
        .and_then(|o| o["optionId"].as_str().map(String::from))
}

/// Takes into `call` the fields an update sets.
fn merge_call(call: &mut Value, update: &Value) {
    for key in ["title", "kind", "status", "rawInput", "locations", "content", "rawOutput"] {
        match update.get(key) {
            Some(value) if !value.is_null() => call[key] = value.clone(),
            _ => {}
        }
    }
}

/// A call whose input is known (not absent, not `{}`).
fn has_input(call: &Value) -> bool {
    match call.get("rawInput") {
        Some(Value::Object(map)) => !map.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

fn is_finished(update: &Value) -> bool {
    matches!(update["status"].as_str(), Some("completed" | "failed"))
}

/// The text of a content block (text, or a resource's text); other kinds are skipped.
fn content_text(content: &Value) -> Option<String> {
    match content["type"].as_str()? {
        "text" => content["text"].as_str().map(String::from),
        "resource" => content["resource"]["text"].as_str().map(String::from),
        "resource_link" => content["uri"].as_str().map(|u| format!("[{u}]")),
        _ => None,
    }
}

/// A finished tool's output: its text contents, its diffs, its terminals' output, else its
/// raw output.
fn tool_output(update: &Value, terminals: &Terminals) -> String {
    let mut parts = Vec::new();
    for item in update["content"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("content") => parts.extend(content_text(&item["content"])),
            Some("diff") => parts.push(format!(
                "{}\n--- before\n{}\n+++ after\n{}",
                item["path"].as_str().unwrap_or_default(),
                item["oldText"].as_str().unwrap_or_default(),
                item["newText"].as_str().unwrap_or_default()
            )),
            Some("terminal") => parts.extend(item["terminalId"].as_str().and_then(|id| terminals.output(id))),
            _ => {}
        }
    }
    if parts.is_empty() {
        match update.get("rawOutput") {
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(v) if !v.is_null() => parts.push(v.to_string()),
            _ => {}
        }
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_pick_an_option_of_their_kind() {
        let options = vec![
            json!({"optionId": "always", "name": "Always", "kind": "allow_always"}),
            json!({"optionId": "once", "name": "Yes", "kind": "allow_once"}),
            json!({"optionId": "no", "name": "No", "kind": "reject_once"}),
        ];
        assert_eq!(choose_option(&options, Behavior::Allow).as_deref(), Some("once"));
        assert_eq!(choose_option(&options, Behavior::Deny).as_deref(), Some("no"));
        assert_eq!(choose_option(&options[..1], Behavior::Allow).as_deref(), Some("always"));
        assert_eq!(choose_option(&options[..2], Behavior::Deny), None);
    }

    #[test]
    fn tool_output_prefers_content_then_raw_output() {
        let terminals = Terminals::new(mpsc::channel(1).0, "t-test".into());
        let cases = vec![
            (json!({"content": [{"type": "content", "content": {"type": "text", "text": "hi"}}]}), "hi"),
            (json!({"rawOutput": {"exit": 0}}), "{\"exit\":0}"),
            (json!({"rawOutput": "plain"}), "plain"),
            (
                json!({"content": [{"type": "diff", "path": "/r/a", "oldText": "x", "newText": "y"}]}),
                "/r/a\n--- before\nx\n+++ after\ny",
            ),
            (json!({}), ""),
        ];
        for (update, want) in cases {
            assert_eq!(tool_output(&update, &terminals), want, "{update}");
        }
    }
}
