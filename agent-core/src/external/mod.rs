//! Claude Code sessions started in a terminal, seen through Claude Code's hooks (SPEC 9).
//!
//! - [`settings`]: `hooks install | uninstall | status` on `~/.claude/settings.json`.
//! - [`hook`]: `flightdeck-agent hook`, the command the hooks run: it hands the hook's JSON to
//!   the agent's control socket and prints a decision only for a `PermissionRequest`.
//! - [`transcript`]: reading the session's transcript file and mapping its lines to events.
//! - here: [`ExternalSessions`], the agent side. One task owns every session it follows and
//!   serves a closed set of inputs: hooks (from the control socket), decisions (routed by the
//!   runner for these tasks), "the transcript changed" (notify on its directory) and deadlines.
//!
//! A session in a watched repo is one conversation; each prompt (`UserPromptSubmit`) is a task
//! with `source: "external"`, recorded through the runner's [`Recorder`] (so redaction, the
//! outbox to the relay, front-end updates, alerts and notifications are those of any task) but
//! never run, queued or cancelled by the runner. Its events: `status running` (with the session
//! id), `user_message`, then from the transcript the assistant's text, `tool_start` and
//! `tool_done`, a `permission_request` for each `PermissionRequest` hook and its
//! `permission_decision`, and at `Stop` `usage`, `done` and `status completed`. A session that
//! ends (`SessionEnd`) in the middle of a turn ends that task `cancelled`.
//!
//! Where the transcript was read up to (with what the turn has counted) is saved in the same
//! transaction as the events read from it, so an agent restarted mid-session goes on from
//! there: no event twice, none missing. Hooks that fired while no agent ran are lost, so a turn
//! that ended meanwhile is completed from what the transcript shows.
//!
//! A permission request waits for a decision from the HUD, REST, the desktop or `flightdeck-agent
//! decide` for at most the configured wait; then the hook answers nothing and the terminal asks.
//! The request then stays pending until the tool's result shows what the terminal decided
//! (`decidedBy: "terminal"`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::local::{HookDecision, HookInput};
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::{AlertKind, Executor, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus};
use notify::Watcher;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::executor::stream_json::StreamJsonParser;
use crate::runner::driver::truncate_output;
use crate::runner::waiting::{Request, Waiting};
use crate::runner::{ExternalDecision, Recorder, Shared};
use crate::store::{AlertFilter, Store, StoreError};
use transcript::{read_lines, TurnProgress};

pub mod hook;
pub mod settings;
mod transcript;

/// Finds the watched repo (its name) a directory is in, if any.
pub type RepoOfDir = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// How the terminal sessions are followed.
#[derive(Debug, Clone)]
pub struct ExternalConfig {
    /// How long a `PermissionRequest` hook waits for a decision before the terminal asks.
    pub permission_wait: Duration,
    /// After `Stop`, how long to wait for the transcript to show the turn's end.
    pub stop_grace: Duration,
}

impl Default for ExternalConfig {
    fn default() -> ExternalConfig {
        ExternalConfig { permission_wait: Duration::from_secs(600), stop_grace: Duration::from_secs(2) }
    }
}

/// Hooks waiting to be served; a hook beyond this gets no answer (Claude Code goes on).
const HOOK_QUEUE: usize = 256;
/// The settings key of a session's saved position.
const CURSOR_KEY: &str = "external.session.";

/// The handle of the terminal sessions' task; dropping it (or the agent's stop token) stops it.
pub struct ExternalSessions {
    hooks: mpsc::Sender<(HookInput, oneshot::Sender<Option<HookDecision>>)>,
}

impl ExternalSessions {
    /// Resumes the sessions whose turn was open when the agent stopped, and starts following.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        repo_of: RepoOfDir,
        config: ExternalConfig,
        stop: CancellationToken,
    ) -> ExternalSessions {
        let (hooks, hook_rx) = mpsc::channel(HOOK_QUEUE);
        // Bounded: `decide` waits for room.
        let (decisions, decision_rx) = mpsc::channel(64);
        let mut service = Service {
            shared,
            repo_of,
            config,
            decisions,
            sessions: HashMap::new(),
            changed: Arc::new(Changed::default()),
            // Bounded: a watcher whose process exited waits for room.
            gone: mpsc::channel(64),
            stop: stop.clone(),
        };
        service.resume_open_turns().await;
        tokio::spawn(service.run(hook_rx, decision_rx, stop));
        ExternalSessions { hooks }
    }

    /// Takes a hook; answers at once except for a `PermissionRequest` of a followed session,
    /// which is answered with the decision, or `None` when the wait is over.
    pub async fn hook(&self, input: HookInput) -> Option<HookDecision> {
        let (reply, answer) = oneshot::channel();
        self.hooks.try_send((input, reply)).ok()?;
        answer.await.ok().flatten()
    }
}

/// Sessions whose transcript changed, filled by notify's thread and emptied by the task.
#[derive(Default)]
struct Changed {
    // A std Mutex: nothing awaits while holding it.
    sessions: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Changed {
    fn mark(&self, session_id: &str) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(session_id.to_string());
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<String> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).drain().collect()
    }
}

/// Where a session's transcript was read up to and what its conversation is; saved in the
/// store's settings under `external.session.<session id>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    transcript: PathBuf,
    repo: String,
    offset: u64,
    conversation_id: Option<String>,
    last_task_id: Option<String>,
    /// The open turn's counts, in step with `offset`.
    turn: TurnProgress,
    /// The Claude Code process of the session (from its hooks), watched so that a session
    /// killed without `SessionEnd` still ends its task.
    #[serde(default)]
    pid: Option<u32>,
}

/// A session being followed.
struct Session {
    id: String,
    cursor: Cursor,
    turn: Option<Turn>,
    /// The last `PreToolUse`: `(tool_use_id, tool_name, tool_input)`, to give a permission
    /// request the id of the tool it is about.
    last_tool: Option<(String, String, Value)>,
    /// Keeps the notify watch on the transcript's directory alive.
    watch: Option<notify::RecommendedWatcher>,
    /// A task waits for `cursor.pid` to exit.
    watching_pid: bool,
}

/// The open turn: its task and what it waits for.
struct Turn {
    rec: Recorder,
    parser: StreamJsonParser,
    waiting: Waiting,
    /// Tools started and not done: id -> (name, input).
    tools: HashMap<String, (String, Value)>,
    /// `PermissionRequest` hooks waiting for a decision: request id -> (answer, deadline).
    hooks: HashMap<String, (oneshot::Sender<Option<HookDecision>>, Instant)>,
    /// Permission requests about a tool whose `tool_use` line the transcript does not show yet
    /// (see [`Held`]), in the order they came.
    held: Vec<Held>,
    /// `Stop` came: end the turn once the transcript shows its end, or at this deadline.
    stopping: Option<(Instant, Option<String>)>,
}

/// A permission request that came before its tool's `tool_start`.
///
/// Claude Code writes its transcript on its own schedule: the `PreToolUse` and
/// `PermissionRequest` hooks of a tool may run before the line with its `tool_use` is in the
/// file. The request is then held, and recorded right after that `tool_start` once the
/// transcript shows it (or at `deadline`, if it never does), so a transcript always reads
/// `tool_start`, `permission_request`, as for a task the agent runs.
struct Held {
    event: TaskEvent,
    /// The hook's answer (`None` once answered: no wait configured).
    reply: Option<oneshot::Sender<Option<HookDecision>>>,
    deadline: Instant,
}

impl Held {
    fn request_id(&self) -> &str {
        match &self.event {
            TaskEvent::PermissionRequest { request_id, .. } => request_id,
            _ => "",
        }
    }
}

/// `(session id, pid)` of a session whose Claude Code process exited.
type ProcessGone = (String, u32);

struct Service {
    shared: Arc<Shared>,
    repo_of: RepoOfDir,
    config: ExternalConfig,
    decisions: mpsc::Sender<ExternalDecision>,
    sessions: HashMap<String, Session>,
    changed: Arc<Changed>,
    /// Sessions whose Claude Code process exited.
    gone: (mpsc::Sender<ProcessGone>, mpsc::Receiver<ProcessGone>),
    stop: CancellationToken,
}

impl Service {
    async fn run(
        mut self,
        mut hooks: mpsc::Receiver<(HookInput, oneshot::Sender<Option<HookDecision>>)>,
        mut decisions: mpsc::Receiver<ExternalDecision>,
        stop: CancellationToken,
    ) {
        loop {
            let next = self.next_deadline();
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((input, reply)) = hooks.recv() => self.hook(input, reply).await,
                Some(decision) = decisions.recv() => self.decide(decision).await,
                Some((id, pid)) = self.gone.1.recv() => self.process_gone(&id, pid).await,
                _ = self.changed.wake.notified() => {
                    for id in self.changed.take() {
                        self.drain(&id).await;
                        self.end_if_stopped(&id, false).await;
                    }
                }
                _ = sleep_until_opt(next) => self.deadlines().await,
            }
        }
        // Hooks still waiting get no decision (their terminal asks); the tasks stay as they are
        // for the next start to resume.
        for session in self.sessions.values() {
            if let Some(turn) = &session.turn {
                self.shared.unroute_external(&turn.rec.task.id);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.turn.as_ref())
            .flat_map(|t| {
                t.hooks
                    .values()
                    .map(|(_, d)| *d)
                    .chain(t.stopping.as_ref().map(|(d, _)| *d))
                    .chain(t.held.iter().map(|h| h.deadline))
                    .chain(t.rec.wire_deadline())
            })
            .min()
    }

    async fn deadlines(&mut self) {
        let now = Instant::now();
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(turn) = self.sessions.get_mut(&id).and_then(|s| s.turn.as_mut()) else { continue };
            if turn.rec.wire_deadline().is_some_and(|d| d <= now) {
                turn.rec.release_due().await;
            }
            // A request whose tool line never came: recorded as it is.
            if turn.held.iter().any(|h| h.deadline <= now) {
                let (due, keep): (Vec<Held>, Vec<Held>) =
                    std::mem::take(&mut turn.held).into_iter().partition(|h| h.deadline <= now);
                turn.held = keep;
                let wait = self.config.permission_wait;
                let events: Vec<TaskEvent> = due.into_iter().map(|h| open_request(turn, h, wait)).collect();
                let requests: Vec<Request> = events.iter().filter_map(Request::of).collect();
                turn.rec.record(events).await;
                for request in requests {
                    turn.waiting.apply(request, &mut turn.rec).await;
                }
            }
            // The wait is over: the hook answers nothing and the terminal asks. The request
            // stays pending until the tool's result shows what was decided there.
            let due: Vec<String> = turn.hooks.iter().filter(|(_, (_, d))| *d <= now).map(|(r, _)| r.clone()).collect();
            for request_id in due {
                if let Some((reply, _)) = turn.hooks.remove(&request_id) {
                    let _ = reply.send(None);
                }
            }
            if turn.stopping.as_ref().is_some_and(|(d, _)| *d <= now) {
                self.end_if_stopped(&id, true).await;
            }
        }
    }

    async fn hook(&mut self, input: HookInput, reply: oneshot::Sender<Option<HookDecision>>) {
        let event = input.hook_event_name.clone();
        // Only a permission request is held; every other hook returns at once.
        let reply = if event == "PermissionRequest" {
            Some(reply)
        } else {
            let _ = reply.send(None);
            None
        };
        if !self.follow(&input).await {
            return; // Not in a watched repo: never recorded, never reported.
        }
        let id = input.session_id.clone();
        if let Some(pid) = input.claude_pid {
            self.watch_process(&id, pid);
        }
        self.drain(&id).await;
        match event.as_str() {
            "UserPromptSubmit" => {
                self.end_turn(&id, None).await;
                self.open_turn(&id, input.prompt.unwrap_or_default()).await;
            }
            "PreToolUse" => {
                if let (Some(session), Some(tool_id), Some(name)) =
                    (self.sessions.get_mut(&id), input.tool_use_id, input.tool_name)
                {
                    session.last_tool = Some((tool_id, name, input.tool_input.unwrap_or(Value::Null)));
                }
            }
            "PermissionRequest" => {
                if let Some(reply) = reply {
                    self.permission_request(&id, input, reply).await;
                }
            }
            "Stop" => {
                if let Some(turn) = self.sessions.get_mut(&id).and_then(|s| s.turn.as_mut()) {
                    let summary = input.last_assistant_message.filter(|m| !m.is_empty());
                    turn.stopping = Some((Instant::now() + self.config.stop_grace, summary));
                }
                self.end_if_stopped(&id, false).await;
            }
            "SessionEnd" => {
                self.end_turn(&id, Some(TaskStatus::Cancelled)).await;
                self.sessions.remove(&id);
            }
            // SessionStart, PostToolUse, Notification: the transcript was read above.
            _ => {}
        }
    }

    /// Starts following the hook's session when it runs in a watched repo (or knows it
    /// already). Returns whether the session is followed.
    async fn follow(&mut self, input: &HookInput) -> bool {
        if input.session_id.is_empty() || input.session_id.len() > 200 {
            return false;
        }
        if self.sessions.contains_key(&input.session_id) {
            return true;
        }
        let (repo_of, cwd) = (self.repo_of.clone(), PathBuf::from(&input.cwd));
        let store = self.shared.store.clone();
        let key = cursor_key(&input.session_id);
        let found = tokio::task::spawn_blocking(move || {
            let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
            let repo = repo_of(&cwd)?;
            let saved = store.setting(&key).ok().flatten().and_then(|s| serde_json::from_str::<Cursor>(&s).ok());
            Some((repo, saved))
        })
        .await
        .ok()
        .flatten();
        let Some((repo, saved)) = found else { return false };
        let transcript = PathBuf::from(&input.transcript_path);
        let cursor = match saved {
            // The same transcript as before (an agent restart, `claude --resume`): go on.
            Some(cursor) if cursor.transcript == transcript => cursor,
            _ => Cursor { transcript, repo, ..Cursor::default() },
        };
        let session = Session {
            id: input.session_id.clone(),
            cursor,
            turn: None,
            last_tool: None,
            watch: None,
            watching_pid: false,
        };
        self.sessions.insert(input.session_id.clone(), session);
        true
    }

    /// Creates the task of a new prompt.
    async fn open_turn(&mut self, id: &str, prompt: String) {
        let Some(session) = self.sessions.get_mut(id) else { return };
        let payload =
            TaskPayload { repo: Some(session.cursor.repo.clone()), prompt: Some(prompt.clone()), ..Default::default() };
        let title = task_title(None, Executor::Claude, &payload);
        let now = Utc::now();
        let task_id = uuid::Uuid::now_v7().to_string();
        let mut task = Task {
            agent_id: self.shared.config.agent_id.clone(),
            status: TaskStatus::Running,
            started_at: Some(now),
            parent_task_id: session.cursor.last_task_id.clone(),
            ..Task::queued(&task_id, title, &session.cursor.repo, Executor::Claude, payload, TaskSource::External, now)
        };
        if let Some(conversation) = &session.cursor.conversation_id {
            task.conversation_id = conversation.clone();
        }
        session.cursor.conversation_id = Some(task.conversation_id.clone());
        session.cursor.last_task_id = Some(task_id.clone());
        session.cursor.turn = TurnProgress::default();
        let mut rec = Recorder::new(self.shared.clone(), task);
        rec.stage_setting(cursor_key(id), cursor_json(&session.cursor));
        rec.record_new(vec![
            TaskEvent::Status { status: TaskStatus::Running, model: None, session_id: Some(id.to_string()) },
            TaskEvent::UserMessage { text: prompt },
        ])
        .await;
        self.shared.route_external(&task_id, self.decisions.clone());
        session.turn = Some(Turn {
            rec,
            parser: StreamJsonParser::new(),
            waiting: Waiting::default(),
            tools: HashMap::new(),
            hooks: HashMap::new(),
            held: Vec::new(),
            stopping: None,
        });
        self.watch(id);
    }

    /// Watches the transcript's directory (the file may not exist yet) with notify.
    fn watch(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else { return };
        if session.watch.is_some() {
            return;
        }
        let path = session.cursor.transcript.clone();
        let Some(dir) = path.parent().map(Path::to_path_buf) else { return };
        let (changed, session_id) = (self.changed.clone(), id.to_string());
        let file = path.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                if event.paths.iter().any(|p| p == &file) {
                    changed.mark(&session_id);
                }
            }
        });
        // A directory that does not exist yet: the next hook reads the transcript anyway.
        let watched = watcher.and_then(|mut w| w.watch(&dir, notify::RecursiveMode::NonRecursive).map(|_| w));
        match watched {
            Ok(watcher) => session.watch = Some(watcher),
            Err(err) => tracing::debug!(%err, dir = %dir.display(), "cannot watch a transcript directory yet"),
        }
    }

    /// Reads what the transcript has after the cursor and records its events (with the new
    /// position, in one transaction).
    async fn drain(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else { return };
        let (path, offset) = (session.cursor.transcript.clone(), session.cursor.offset);
        let lines = match tokio::task::spawn_blocking(move || read_lines(&path, offset)).await {
            Ok(Ok(read)) => read,
            Ok(Err(err)) => {
                tracing::warn!(%err, session = %id, "cannot read a session's transcript");
                return;
            }
            Err(_) => return,
        };
        let (lines, end) = lines;
        if end == offset {
            return;
        }
        session.cursor.offset = end;
        let Some(turn) = session.turn.as_mut() else {
            // Between turns: nothing to record, only where the transcript was read up to.
            let (store, key, value) = (self.shared.store.clone(), cursor_key(id), cursor_json(&session.cursor));
            let _ = tokio::task::spawn_blocking(move || store.set_setting(&key, &value)).await;
            return;
        };
        let mut events = Vec::new();
        // Requests released in this batch: pending once it is recorded.
        let mut opened: HashSet<String> = HashSet::new();
        let wait = self.config.permission_wait;
        for line in &lines {
            for event in session.cursor.turn.line(&mut turn.parser, line) {
                let mut after = None;
                match &event {
                    TaskEvent::ToolStart { tool_id, tool_name, params } => {
                        turn.tools.insert(tool_id.clone(), (tool_name.clone(), params.clone()));
                        // A request held for this tool's line goes right after it.
                        if let Some(at) = turn.held.iter().position(|h| h.request_id() == tool_id) {
                            let held = turn.held.remove(at);
                            opened.insert(tool_id.clone());
                            after = Some(open_request(turn, held, wait));
                        }
                    }
                    TaskEvent::ToolDone { tool_id, is_error, .. } => {
                        turn.tools.remove(tool_id);
                        // A request the terminal decided: its result says how.
                        if turn.waiting.is_pending(tool_id) || opened.contains(tool_id) {
                            if let Some((reply, _)) = turn.hooks.remove(tool_id) {
                                let _ = reply.send(None);
                            }
                            events.push(TaskEvent::PermissionDecision {
                                request_id: tool_id.clone(),
                                behavior: if *is_error { Behavior::Deny } else { Behavior::Allow },
                                message: None,
                                updated_input: None,
                                decided_by: DecidedBy::Terminal,
                            });
                        }
                    }
                    _ => {}
                }
                events.push(event);
                events.extend(after);
            }
        }
        let limit = self.shared.config.tool_output_limit;
        let events: Vec<TaskEvent> = events
            .into_iter()
            .map(|event| match event {
                TaskEvent::ToolDone { tool_id, output, is_error } => {
                    let output = truncate_output(&mut turn.rec, &tool_id, output, limit);
                    TaskEvent::ToolDone { tool_id, output, is_error }
                }
                other => other,
            })
            .collect();
        let requests: Vec<Request> = events.iter().filter_map(Request::of).collect();
        turn.rec.stage_setting(cursor_key(id), cursor_json(&session.cursor));
        turn.rec.record(events).await;
        for request in requests {
            turn.waiting.apply(request, &mut turn.rec).await;
        }
    }

    async fn permission_request(&mut self, id: &str, input: HookInput, reply: oneshot::Sender<Option<HookDecision>>) {
        let wait = self.config.permission_wait;
        let Some(session) = self.sessions.get_mut(id) else { return };
        let Some(turn) = session.turn.as_mut() else {
            return; // A turn that began before this agent followed the session: the terminal asks.
        };
        let tool_name = input.tool_name.unwrap_or_default();
        let tool_input = input.tool_input.unwrap_or(Value::Null);
        // The request is about the tool just started with this name and input.
        let same = |name: &String, params: &Value| *name == tool_name && *params == tool_input;
        let announced = session
            .last_tool
            .as_ref()
            .filter(|(_, name, params)| same(name, params))
            .map(|(id, _, _)| id.clone())
            .filter(|id| !turn.waiting.is_pending(id));
        let request_id = announced
            .clone()
            .or_else(|| turn.tools.iter().find(|(_, (n, p))| same(n, p)).map(|(id, _)| id.clone()))
            .filter(|id| !turn.waiting.is_pending(id))
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let event = TaskEvent::PermissionRequest {
            request_id: request_id.clone(),
            tool_name,
            input: tool_input,
            description: None,
            suggestions: input.permission_suggestions.filter(|s| !s.is_empty()),
        };
        let mut held = Held { event, reply: Some(reply), deadline: Instant::now() + self.config.stop_grace };
        if announced.is_some() && !turn.tools.contains_key(&request_id) {
            // Its tool's line is not in the transcript yet: the record waits for it. With no
            // wait configured the terminal asks at once all the same.
            if wait.is_zero() {
                if let Some(reply) = held.reply.take() {
                    let _ = reply.send(None);
                }
            }
            turn.held.push(held);
            return;
        }
        let event = open_request(turn, held, wait);
        let requests: Vec<Request> = Request::of(&event).into_iter().collect();
        turn.rec.record(vec![event]).await;
        for request in requests {
            turn.waiting.apply(request, &mut turn.rec).await;
        }
    }

    /// A decision from the HUD, REST, the desktop or `flightdeck-agent decide`.
    async fn decide(&mut self, d: ExternalDecision) {
        let turn = self.sessions.values_mut().filter_map(|s| s.turn.as_mut()).find(|t| t.rec.task.id == d.task_id);
        let Some(turn) = turn else {
            let _ = d.reply.send(false);
            return;
        };
        // Only a request whose hook still waits can be decided from here.
        let Some((hook, _)) = turn.hooks.remove(&d.decision.request_id) else {
            let _ = d.reply.send(false);
            return;
        };
        let decision = d.decision;
        let _ = hook.send(Some(HookDecision {
            behavior: decision.behavior,
            updated_input: decision.updated_input.clone(),
            message: decision.message.clone(),
        }));
        let request_id = decision.request_id.clone();
        turn.rec
            .record(vec![TaskEvent::PermissionDecision {
                request_id: decision.request_id,
                behavior: decision.behavior,
                message: decision.message,
                updated_input: decision.updated_input,
                decided_by: decision.decided_by,
            }])
            .await;
        turn.waiting.apply(Request::Closed { request_id }, &mut turn.rec).await;
        let _ = d.reply.send(true);
    }

    /// Ends the turn after `Stop` once the transcript shows its end (or `force`: the grace
    /// period is over).
    async fn end_if_stopped(&mut self, id: &str, force: bool) {
        let Some(session) = self.sessions.get(id) else { return };
        let Some(turn) = &session.turn else { return };
        if turn.stopping.is_some() && (force || session.cursor.turn.ended) {
            self.end_turn(id, None).await;
        }
    }

    /// Ends the open turn, if any: `completed` with `usage` and `done` (`status` `None`), or
    /// `cancelled` when the session ended in the middle of it.
    async fn end_turn(&mut self, id: &str, status: Option<TaskStatus>) {
        let Some(session) = self.sessions.get_mut(id) else { return };
        let Some(mut turn) = session.turn.take() else { return };
        let finished_turn = turn.stopping.is_some() || session.cursor.turn.ended;
        let status = match status {
            Some(TaskStatus::Cancelled) if finished_turn => TaskStatus::Completed,
            Some(status) => status,
            None => TaskStatus::Completed,
        };
        for (_, (reply, _)) in turn.hooks.drain() {
            let _ = reply.send(None);
        }
        for held in turn.held.drain(..) {
            if let Some(reply) = held.reply {
                let _ = reply.send(None);
            }
        }
        let progress = std::mem::take(&mut session.cursor.turn);
        turn.rec.stage_setting(cursor_key(id), cursor_json(&session.cursor));
        if status == TaskStatus::Completed {
            let (input_tokens, output_tokens) = progress.tokens();
            let summary = turn.stopping.take().and_then(|(_, s)| s).unwrap_or(progress.last_text);
            turn.rec
                .record(vec![
                    TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd: 0.0 },
                    TaskEvent::Done { summary },
                ])
                .await;
        }
        turn.waiting.end(&mut turn.rec).await;
        self.shared.unroute_external(&turn.rec.task.id);
        turn.rec.finish(status).await;
    }

    /// Starts watching the session's Claude Code process (once per process).
    fn watch_process(&mut self, id: &str, pid: u32) {
        let Some(session) = self.sessions.get_mut(id) else { return };
        if session.cursor.pid == Some(pid) && session.watching_pid {
            return;
        }
        session.cursor.pid = Some(pid);
        session.watching_pid = true;
        let (tx, stop, id) = (self.gone.0.clone(), self.stop.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = process_exit(pid) => { let _ = tx.send((id, pid)).await; }
            }
        });
    }

    /// The session's Claude Code process is gone. A turn it had ended (`Stop` came) completes;
    /// a turn cut short (the process was killed, the terminal closed) ends `interrupted`.
    async fn process_gone(&mut self, id: &str, pid: u32) {
        if self.sessions.get(id).is_none_or(|s| s.cursor.pid != Some(pid)) {
            return;
        }
        self.drain(id).await;
        let cut_short = self
            .sessions
            .get(id)
            .and_then(|s| s.turn.as_ref().map(|t| t.stopping.is_none() && !s.cursor.turn.ended))
            .unwrap_or(false);
        if cut_short {
            if let Some(turn) = self.sessions.get_mut(id).and_then(|s| s.turn.as_mut()) {
                let error = format!("the Claude Code process ({pid}) exited before its turn ended");
                turn.rec.task.error = Some(error.clone());
                turn.rec.record(vec![TaskEvent::Error { error }]).await;
            }
            self.end_turn(id, Some(TaskStatus::Interrupted)).await;
        } else {
            self.end_turn(id, None).await;
        }
        tracing::info!(session = %id, pid, "the Claude Code process of a terminal session is gone");
        self.sessions.remove(id);
    }

    /// The turns that were open when the agent stopped: followed again from where their
    /// transcript was read up to; one that ended meanwhile is completed.
    async fn resume_open_turns(&mut self) {
        let store = self.shared.store.clone();
        let redactors = self.shared.redactors.clone();
        let open = tokio::task::spawn_blocking(move || resumable(&store, &redactors)).await;
        let open = match open {
            Ok(Ok(open)) => open,
            Ok(Err(err)) => return tracing::error!(%err, "cannot resume the terminal sessions"),
            Err(_) => return,
        };
        for (task, cursor, pending, alert) in open {
            let Some(id) = task.session_id.clone() else { continue };
            let task_id = task.id.clone();
            self.shared.route_external(&task_id, self.decisions.clone());
            let turn = Turn {
                rec: Recorder::new(self.shared.clone(), task),
                parser: StreamJsonParser::new(),
                waiting: Waiting::resume(pending, alert),
                tools: HashMap::new(),
                hooks: HashMap::new(),
                held: Vec::new(),
                stopping: None,
            };
            let pid = cursor.pid;
            let session =
                Session { id: id.clone(), cursor, turn: Some(turn), last_tool: None, watch: None, watching_pid: false };
            tracing::info!(session = %session.id, task = %task_id, "following a terminal session again");
            self.sessions.insert(id.clone(), session);
            self.watch(&id);
            self.drain(&id).await;
            // Its `Stop` may have fired while no agent ran: a turn the transcript shows ended is.
            if self.sessions.get(&id).is_some_and(|s| s.cursor.turn.ended) {
                self.end_turn(&id, None).await;
            }
            // Its process may have died meanwhile, or may die later.
            if let Some(pid) = pid {
                self.watch_process(&id, pid);
            }
        }
    }
}

/// The open external tasks with their cursor, pending requests and open `needs_input` alert;
/// their outgoing transcript is completed first (what a crash cut short). Blocking.
#[allow(clippy::type_complexity)]
fn resumable(
    store: &Store,
    redactors: &crate::redact::RepoRedactors,
) -> Result<Vec<(Task, Cursor, Vec<String>, Option<String>)>, StoreError> {
    let mut out = Vec::new();
    let open_alerts = store.alerts(&AlertFilter { acknowledged: Some(false), limit: 500, ..Default::default() })?.0;
    for task in store.unfinished_tasks()?.into_iter().filter(|t| t.source == TaskSource::External) {
        let cursor = task
            .session_id
            .as_deref()
            .and_then(|s| store.setting(&cursor_key(s)).ok().flatten())
            .and_then(|json| serde_json::from_str::<Cursor>(&json).ok());
        let Some(cursor) = cursor else {
            tracing::warn!(task = %task.id, "a terminal session's task without a saved position");
            continue;
        };
        crate::runner::backfill_wire(store, redactors.for_repo(&task.repo), &task)?;
        let mut pending: Vec<String> = Vec::new();
        for event in store.transcript(&task.id)? {
            match event.event {
                TaskEvent::PermissionRequest { request_id, .. } => pending.push(request_id),
                TaskEvent::PermissionDecision { request_id, .. } => pending.retain(|r| *r != request_id),
                _ => {}
            }
        }
        let alert = open_alerts
            .iter()
            .find(|a| a.kind == AlertKind::NeedsInput && a.task_id.as_deref() == Some(task.id.as_str()))
            .map(|a| a.id.clone());
        out.push((task, cursor, pending, alert));
    }
    Ok(out)
}

/// A permission request about to be recorded: its hook now waits for a decision (until
/// `wait` from now; with no wait the hook has its empty answer already). Returns the event to
/// record; the caller applies it to the turn's waiting state once recorded.
fn open_request(turn: &mut Turn, mut held: Held, wait: Duration) -> TaskEvent {
    if let Some(reply) = held.reply.take() {
        if wait.is_zero() {
            let _ = reply.send(None);
        } else {
            turn.hooks.insert(held.request_id().to_string(), (reply, Instant::now() + wait));
        }
    }
    held.event
}

fn cursor_key(session_id: &str) -> String {
    format!("{CURSOR_KEY}{session_id}")
}

fn cursor_json(cursor: &Cursor) -> String {
    serde_json::to_string(cursor).expect("a cursor serializes")
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Returns when process `pid` has exited (gone, or a zombie nobody reaped yet). Checked once a
/// second: a liveness check, not a way of reading what the session does (the transcript is
/// followed with notify).
async fn process_exit(pid: u32) {
    loop {
        #[allow(unsafe_code)]
        // SAFETY: kill with signal 0 sends nothing and only checks that the process exists;
        // it has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        let gone = rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rfind(')').map(|i| stat[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(false);
        if gone || zombie {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
