//! `TaskRunner`: the queue of tasks and their lifecycle.
//!
//! [`TaskRunner::start`] recovers what a previous run left unfinished, starts the runner's loop
//! and returns the handle; dropping the handle (or [`TaskRunner::shutdown`]) stops it. The loop
//! `select!`s over a closed `Command` enum, the "a task finished" channel and shutdown.
//!
//! Lifecycle: `create` records the task as `queued` (event 1) and queues it. A task starts when
//! fewer than `max_running_per_repo` tasks of its repo and fewer than `max_running` tasks in all
//! run; the loop marks it `running` (publishing the `Task`) in the order tasks start. A started
//! task is driven by its own tokio task (`driver`), which runs the executor,
//! numbers its events, writes them to SQLite and only then publishes them, enforces the
//! timeout and the budget, and ends the task with a final `status` event (completed, failed,
//! cancelled or interrupted) followed by the final `Task`.
//!
//! Start-up recovery: tasks the database says are `running` were cut off by a crash or a
//! kill; they become `interrupted` with a final `status` event and a `warning` alert. Tasks
//! still `queued` (never started) also become `interrupted`, without an alert: whoever queued
//! them (a CLI that has exited, a relay user) sees that state and can start a new task, while
//! running them unannounced long after they were asked for would surprise. A task id is never
//! run twice: creating a task whose id exists returns the existing task. Recovery only happens
//! when this runner holds the data directory's `runner.lock`, so a second agent on the same data
//! directory (say `flightdeck-agent task` next to the desktop app) never marks the first one's
//! live tasks as interrupted.
//!
//! How a transcript ends (every task's last event is its final `status`):
//! - completed: `... done, status completed`;
//! - failed: `... error, status failed`, and a `task_failed` alert (warning);
//! - timed out (`timeoutSecs`, counted from the start): `... error "timed out after N s", status failed`;
//! - over budget (`maxCostUsd`): `... usage, error "budget exceeded: ...", status failed`, and a
//!   `budget_exceeded` alert (critical) instead of `task_failed`;
//! - cancelled: `... status cancelled` (no error, no alert);
//! - stopped by shutdown or found unfinished at start-up: `... status interrupted`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::rules::task_title;
use flightdeck_protocol::{Alert, AlertKind, Executor, Severity, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::{AcpConfig, ClaudeConfig, Decision, ExecInput};
use crate::redact::RepoRedactors;
use crate::store::{AlertFilter, Store, StoreError};

pub mod changes;
pub(crate) mod driver;
pub(crate) mod recorder;
pub(crate) mod waiting;
pub mod worktree;

pub(crate) use recorder::{backfill_wire, Recorder};

/// Finds the working tree of a repo slug. The repo watcher owns the set of repos, so the runner
/// asks it rather than keeping its own copy.
pub type RepoResolver = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// How the runner behaves. `Default` gives the production values.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The agent's data directory: holds `runner.lock` and the task worktrees (`worktrees/<taskId>`).
    /// `None` (tests): no lock, worktrees go to `<repo>/.git/flightdeck-worktrees/<taskId>`.
    pub data_dir: Option<PathBuf>,
    /// Put on every task this runner creates.
    pub agent_id: Option<String>,
    /// Tasks running at once, all repos together.
    pub max_running: usize,
    /// Tasks running at once in one repo.
    pub max_running_per_repo: usize,
    pub claude: ClaudeConfig,
    pub acp: AcpConfig,
    /// Between SIGTERM and SIGKILL when a task is stopped.
    pub kill_grace: Duration,
    /// A `tool_done` output longer than this (bytes) is truncated in its event; the full text
    /// stays in the local database (`Store::tool_output`).
    pub tool_output_limit: usize,
    /// Capacity of the broadcast of [`RunnerEvent`]s; a subscriber further behind gets `Lagged`
    /// and catches up from the store.
    pub broadcast_capacity: usize,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            data_dir: None,
            agent_id: None,
            max_running: 4,
            max_running_per_repo: 1,
            claude: ClaudeConfig::default(),
            acp: AcpConfig::default(),
            kill_grace: Duration::from_secs(5),
            tool_output_limit: 16 * 1024,
            broadcast_capacity: 4096,
        }
    }
}

/// What the runner publishes, after it is in the database.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerEvent {
    /// A task was created, started, updated (usage) or finished: its latest state.
    Task(Task),
    /// One event of a task's transcript.
    Event(TaskEventRecord),
    /// An alert was raised (task failed, budget exceeded, task interrupted).
    Alert(Alert),
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The id; `None` makes a UUID v7. Remote tasks carry the relay's id.
    pub id: Option<String>,
    /// `None` derives one from the prompt or command.
    pub title: Option<String>,
    /// The repo slug; the runner resolves it with its [`RepoResolver`].
    pub repo: String,
    pub executor: Executor,
    pub payload: TaskPayload,
    pub source: TaskSource,
    /// The conversation a follow-up belongs to; `None`: a conversation of its own (SPEC 8).
    pub conversation_id: Option<String>,
    /// The turn a follow-up answers.
    pub parent_task_id: Option<String>,
}

impl NewTask {
    pub fn local(repo: impl Into<String>, executor: Executor, payload: TaskPayload) -> NewTask {
        NewTask {
            id: None,
            title: None,
            repo: repo.into(),
            executor,
            payload,
            source: TaskSource::Local,
            conversation_id: None,
            parent_task_id: None,
        }
    }

    /// A task sent by the relay with its `taskId`.
    pub fn remote(
        task_id: impl Into<String>,
        repo: impl Into<String>,
        executor: Executor,
        payload: TaskPayload,
    ) -> NewTask {
        NewTask {
            id: Some(task_id.into()),
            title: None,
            repo: repo.into(),
            executor,
            payload,
            source: TaskSource::Remote,
            conversation_id: None,
            parent_task_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task runner has stopped")]
    Stopped,
}

/// The closed set of requests the runner's loop serves.
enum Command {
    Create { task: NewTask, reply: oneshot::Sender<Result<Task, RunnerError>> },
    Cancel { task_id: String, reply: oneshot::Sender<Result<Option<Task>, RunnerError>> },
    Decide { task_id: String, decision: Decision, reply: oneshot::Sender<bool> },
}

/// Why a running task is being stopped; the first reason wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StopReason {
    Cancelled,
    TimedOut,
    BudgetExceeded,
    Shutdown,
}

/// The stop switch of one running task, shared by the loop and the task's driver.
#[derive(Clone, Default)]
pub(crate) struct StopSwitch {
    token: CancellationToken,
    // A std Mutex: nothing awaits while holding it.
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl StopSwitch {
    /// Records the reason (unless one is already set) and signals the executor.
    pub(crate) fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(reason);
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the runner shares with the drivers of running tasks.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) config: RunnerConfig,
    pub(crate) repos: RepoResolver,
    pub(crate) updates: broadcast::Sender<RunnerEvent>,
    /// Each repo's secrets, for the outgoing form of events (see `recorder`).
    pub(crate) redactors: Arc<RepoRedactors>,
    /// Tasks of Claude sessions started in a terminal (`crate::external`), which the runner
    /// records for but does not run: their decisions go to whoever follows the session.
    // A std Mutex: nothing awaits while holding it.
    external: Mutex<HashMap<String, mpsc::Sender<ExternalDecision>>>,
    /// The ACP agents tasks start from now on: `config.acp.agents` until the settings change
    /// them (see [`TaskRunner::set_acp_agents`]).
    acp_agents: std::sync::RwLock<crate::acp::AcpAgents>,
}

/// A decision for a task of a terminal session, with the answer `decide` waits for.
pub(crate) struct ExternalDecision {
    pub(crate) task_id: String,
    pub(crate) decision: Decision,
    pub(crate) reply: oneshot::Sender<bool>,
}

impl Shared {
    /// Routes the decisions of `task_id` (a terminal session's task) to `to`, until
    /// [`Shared::unroute_external`].
    pub(crate) fn route_external(&self, task_id: &str, to: mpsc::Sender<ExternalDecision>) {
        self.external.lock().unwrap_or_else(|e| e.into_inner()).insert(task_id.to_string(), to);
    }

    pub(crate) fn unroute_external(&self, task_id: &str) {
        self.external.lock().unwrap_or_else(|e| e.into_inner()).remove(task_id);
    }

    /// What a task starting now runs its ACP agent with.
    pub(crate) fn acp_config(&self) -> crate::executor::AcpConfig {
        let agents = self.acp_agents.read().unwrap_or_else(|e| e.into_inner()).clone();
        crate::executor::AcpConfig { agents, ..self.config.acp.clone() }
    }

    fn external_route(&self, task_id: &str) -> Option<mpsc::Sender<ExternalDecision>> {
        self.external.lock().unwrap_or_else(|e| e.into_inner()).get(task_id).cloned()
    }
}

/// The handle of a running task runner. Dropping it stops the runner (running tasks are killed
/// and marked `interrupted`); [`TaskRunner::shutdown`] does the same and waits for the end.
pub struct TaskRunner {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    join: Option<JoinHandle<()>>,
}

impl TaskRunner {
    /// Recovers unfinished tasks (see the module docs) and starts the runner. Must be called
    /// within a tokio runtime.
    pub async fn start(store: Store, config: RunnerConfig, repos: RepoResolver) -> Result<TaskRunner, RunnerError> {
        let (updates, _) = broadcast::channel(config.broadcast_capacity.max(16));
        let redactors = Arc::new(RepoRedactors::new(repos.clone()));
        let acp_agents = std::sync::RwLock::new(config.acp.agents.clone());
        let shared =
            Arc::new(Shared { store, config, repos, updates, redactors, external: Mutex::default(), acp_agents });
        let lock = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || recover(&shared)).await.map_err(|_| RunnerError::Stopped)??
        };
        let (commands, command_rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let run_loop = RunnerLoop {
            shared: shared.clone(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            waiting: HashSet::new(),
            waiting_changes: mpsc::unbounded_channel(),
            finished: mpsc::unbounded_channel(),
            drivers: tokio::task::JoinSet::new(),
            _lock: lock,
        };
        let join = tokio::spawn(run_loop.run(command_rx, shutdown.clone()));
        Ok(TaskRunner { commands, shared, shutdown, join: Some(join) })
    }

    /// Task updates, events and alerts, each published after it is in the database. Subscribe
    /// before creating a task to see all of its events.
    pub fn subscribe(&self) -> broadcast::Receiver<RunnerEvent> {
        self.shared.updates.subscribe()
    }

    /// The ACP agents tasks started from now on can run (running tasks keep theirs).
    pub fn set_acp_agents(&self, agents: crate::acp::AcpAgents) {
        *self.shared.acp_agents.write().unwrap_or_else(|e| e.into_inner()) = agents;
    }

    /// The redactors of the watched repos (what the relay link uses for tasks and alerts).
    pub fn redactors(&self) -> Arc<RepoRedactors> {
        self.shared.redactors.clone()
    }

    /// The store the runner writes to (for transcripts, lists, catching up after `Lagged`).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// What the terminal sessions (`crate::external`) record their tasks with: the same
    /// recorder, redaction, outbox and broadcast as the runner's own tasks.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Creates and queues a task; returns it as recorded (`queued`). A task with an id that
    /// already exists is not created again: the existing task is returned (the relay may resend).
    /// A task that cannot run (unknown repo, no prompt or command) is recorded as `failed`.
    pub async fn create(&self, task: NewTask) -> Result<Task, RunnerError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Create { task, reply }).await.map_err(|_| RunnerError::Stopped)?;
        rx.await.map_err(|_| RunnerError::Stopped)?
    }

    /// Cancels a task: a queued one ends `cancelled` at once; a running one gets SIGTERM (its
    /// whole process group), SIGKILL after the grace period, and ends `cancelled`. Returns the
    /// task as it is now (`None`: no such task); cancelling a finished task changes nothing.
    pub async fn cancel(&self, task_id: &str) -> Result<Option<Task>, RunnerError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Cancel { task_id: task_id.to_string(), reply })
            .await
            .map_err(|_| RunnerError::Stopped)?;
        rx.await.map_err(|_| RunnerError::Stopped)?
    }

    /// Delivers a decision on a running task's permission request. `Ok(false)`: nothing with
    /// that request id is pending (decided already, the task ended or never asked).
    pub async fn decide(&self, task_id: &str, decision: Decision) -> Result<bool, RunnerError> {
        if let Some(to) = self.shared.external_route(task_id) {
            let (reply, rx) = oneshot::channel();
            let sent = to.send(ExternalDecision { task_id: task_id.to_string(), decision, reply }).await;
            return Ok(sent.is_ok() && rx.await.unwrap_or(false));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Decide { task_id: task_id.to_string(), decision, reply })
            .await
            .map_err(|_| RunnerError::Stopped)?;
        // A session that ended while the decision was on its way drops the reply: not pending.
        Ok(rx.await.unwrap_or(false))
    }

    /// Stops the runner: running tasks are killed and marked `interrupted`, queued ones too.
    /// Waits for that to be recorded.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(join) = self.join.take() {
            let bound = self.shared.config.kill_grace + Duration::from_secs(5);
            if tokio::time::timeout(bound, join).await.is_err() {
                tracing::warn!("the task runner did not stop in time");
            }
        }
    }
}

impl Drop for TaskRunner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct RunnerLoop {
    shared: Arc<Shared>,
    queue: VecDeque<Task>,
    running: HashMap<String, RunningTask>,
    /// Running tasks that wait for a decision (see `Slot::set_waiting`).
    waiting: HashSet<String>,
    waiting_changes: (mpsc::UnboundedSender<WaitingChange>, mpsc::UnboundedReceiver<WaitingChange>),
    /// Running tasks' slots come back here (see [`Slot`]).
    finished: (mpsc::UnboundedSender<String>, mpsc::UnboundedReceiver<String>),
    drivers: tokio::task::JoinSet<()>,
    /// Held for the runner's life: this runner owns the data directory's tasks.
    _lock: Option<std::fs::File>,
}

/// A running task's place in the limits. The driver releases it once the task's processes are
/// gone and just before its final `Task` is published; dropping it (a panicking driver) also
/// releases it.
pub(crate) struct Slot {
    task_id: String,
    finished: Option<mpsc::UnboundedSender<String>>,
    waiting: mpsc::UnboundedSender<WaitingChange>,
}

/// `(task id, waits now)`: sent by a driver when its task starts or stops waiting for a person.
/// Unbounded, but at most two per decision of a running task.
type WaitingChange = (String, bool);

impl Slot {
    /// Tells the loop the task waits for a person (or no longer does).
    pub(crate) fn set_waiting(&self, waiting: bool) {
        let _ = self.waiting.send((self.task_id.clone(), waiting));
    }

    pub(crate) fn release(&mut self) {
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(self.task_id.clone());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

struct RunningTask {
    repo: String,
    stop: StopSwitch,
    /// The executor session's input (decisions).
    input: mpsc::Sender<ExecInput>,
}

impl RunnerLoop {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                // Biased: a freed slot is taken into account before the next command, so a task
                // created after another one's final `Task` was published never waits for it.
                biased;
                _ = shutdown.cancelled() => break,
                Some(task_id) = self.finished.1.recv() => {
                    self.running.remove(&task_id);
                    self.waiting.remove(&task_id);
                    self.schedule().await;
                }
                // A task that waits for a person frees its place in the global limit (not in its
                // repo's: the repo's working tree is still its).
                Some((task_id, waiting)) = self.waiting_changes.1.recv() => {
                    if waiting && self.running.contains_key(&task_id) {
                        self.waiting.insert(task_id);
                    } else {
                        self.waiting.remove(&task_id);
                    }
                    self.schedule().await;
                }
                Some(joined) = self.drivers.join_next(), if !self.drivers.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(%err, "a task driver crashed");
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Create { task, reply }) => {
                        let _ = reply.send(self.create(task).await);
                        self.schedule().await;
                    }
                    Some(Command::Cancel { task_id, reply }) => {
                        let _ = reply.send(self.cancel(&task_id).await);
                    }
                    Some(Command::Decide { task_id, decision, reply }) => match self.running.get(&task_id) {
                        // Answered by the session itself (without holding up the loop).
                        Some(running) => {
                            let input = running.input.clone();
                            tokio::spawn(async move {
                                let (tx, rx) = oneshot::channel();
                                if input.send(ExecInput::Decide { decision, reply: tx }).await.is_ok() {
                                    let _ = reply.send(rx.await.unwrap_or(false));
                                }
                            });
                        }
                        None => {
                            let _ = reply.send(false);
                        }
                    },

                    // Every handle is gone (dropping the last one also cancels `shutdown`).
                    None => break,
                },
            }
        }
        self.stop_all().await;
    }

    async fn create(&mut self, new: NewTask) -> Result<Task, RunnerError> {
        if let Some(id) = &new.id {
            let store = self.shared.store.clone();
            let id = id.clone();
            if let Some(existing) = blocking(move || store.task(&id)).await? {
                return Ok(existing);
            }
        }
        let title = task_title(new.title.as_deref(), new.executor, &new.payload);
        let id = new.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut task = Task {
            agent_id: self.shared.config.agent_id.clone(),
            ..Task::queued(id, title, new.repo, new.executor, new.payload, new.source, Utc::now())
        };
        if let Some(conversation) = new.conversation_id.filter(|c| !c.is_empty()) {
            task.conversation_id = conversation;
        }
        task.parent_task_id = new.parent_task_id;
        let mut recorder = Recorder::new(self.shared.clone(), task);
        recorder
            .record_new(vec![TaskEvent::Status { status: TaskStatus::Queued, model: None, session_id: None }])
            .await;
        if let Some(problem) = self.problem_of(&recorder.task) {
            recorder.task.error = Some(problem.clone());
            recorder.record(vec![TaskEvent::Error { error: problem }]).await;
            recorder.finish(TaskStatus::Failed).await;
            return Ok(recorder.task);
        }
        let task = recorder.task;
        self.queue.push_back(task.clone());
        Ok(task)
    }

    /// Why a task cannot run, if it cannot: an unknown repo, or a payload that breaks the task
    /// rules (`protocol::rules`; a relay of another version may send one).
    fn problem_of(&self, task: &Task) -> Option<String> {
        if (self.shared.repos)(&task.repo).is_none() {
            return Some(format!("unknown repo `{}`: it is not watched by this agent", task.repo));
        }
        task.payload.validate(task.executor).err().map(|p| p.to_string())
    }

    async fn cancel(&mut self, task_id: &str) -> Result<Option<Task>, RunnerError> {
        if let Some(pos) = self.queue.iter().position(|t| t.id == task_id) {
            let task = self.queue.remove(pos).expect("position is in range");
            let mut recorder = Recorder::new(self.shared.clone(), task);
            recorder.finish(TaskStatus::Cancelled).await;
            return Ok(Some(recorder.task));
        }
        if let Some(running) = self.running.get(task_id) {
            running.stop.stop(StopReason::Cancelled);
        }
        let store = self.shared.store.clone();
        let id = task_id.to_string();
        blocking(move || store.task(&id)).await
    }

    /// Starts every queued task the limits allow, oldest first.
    async fn schedule(&mut self) {
        let max_running = self.shared.config.max_running.max(1);
        let per_repo = self.shared.config.max_running_per_repo.max(1);
        let mut i = 0;
        while i < self.queue.len() && self.running.len() - self.waiting.len() < max_running {
            let repo_running = self.running.values().filter(|r| r.repo == self.queue[i].repo).count();
            if repo_running >= per_repo {
                i += 1;
                continue;
            }
            let mut task = self.queue.remove(i).expect("index is in range");
            // Recorded and published here rather than in the driver, so tasks are seen to start
            // in the order the loop starts them.
            task.status = TaskStatus::Running;
            task.started_at = Some(Utc::now());
            let mut recorder = Recorder::new(self.shared.clone(), task);
            recorder.save_task().await;
            let task = recorder.task;
            let stop = StopSwitch::default();
            // Bounded: a decision waits for room (the runner's `decide` does not block the loop).
            let (input, input_rx) = mpsc::channel(8);
            self.running.insert(task.id.clone(), RunningTask { repo: task.repo.clone(), stop: stop.clone(), input });
            let slot = Slot {
                task_id: task.id.clone(),
                finished: Some(self.finished.0.clone()),
                waiting: self.waiting_changes.0.clone(),
            };
            self.drivers.spawn(driver::drive(self.shared.clone(), task, stop, slot, input_rx));
        }
    }

    async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.stop(StopReason::Shutdown);
        }
        for task in std::mem::take(&mut self.queue) {
            Recorder::new(self.shared.clone(), task).finish(TaskStatus::Interrupted).await;
        }
        // Wait for the drivers themselves (not only their slots): their final status is recorded.
        let bound = tokio::time::Instant::now() + self.shared.config.kill_grace + Duration::from_secs(3);
        while !self.drivers.is_empty() {
            if tokio::time::timeout_at(bound, self.drivers.join_next()).await.is_err() {
                tracing::warn!("task drivers did not stop in time");
                break;
            }
        }
    }
}

/// Marks what a previous run left unfinished as `interrupted` (see the module docs). Returns the
/// held lock file, or `None` when another runner holds it (or there is no data directory).
fn recover(shared: &Shared) -> Result<Option<std::fs::File>, RunnerError> {
    let Some(dir) = &shared.config.data_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
    let path = dir.join("runner.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::DataDir { path: path.display().to_string(), source })?;
    if file.try_lock().is_err() {
        tracing::info!(path = %path.display(), "another agent runs tasks from this data directory; not recovering its tasks");
        return Ok(None);
    }
    let store = &shared.store;
    // A terminal session's task outlives the agent: `crate::external` resumes following it.
    for mut task in store.unfinished_tasks()?.into_iter().filter(|t| t.source != TaskSource::External) {
        // A task waiting for a decision was running too (its process was alive).
        let was_running = matches!(task.status, TaskStatus::Running | TaskStatus::Waiting);
        task.waiting_since = None;
        // A crashed agent's task may still be running (its own process group outlived the
        // agent): stop it, so an `interrupted` task is not quietly editing the repo.
        if crate::executor::process::kill_recorded_group(&group_record_path(dir, &task.id)) {
            tracing::warn!(task = %task.id, "stopped the processes a previous agent left running");
        }
        let now = Utc::now();
        task.status = TaskStatus::Interrupted;
        task.finished_at = Some(now);
        task.last_seq += 1;
        let event = flightdeck_protocol::SeqEvent {
            seq: task.last_seq,
            event: TaskEvent::Status { status: TaskStatus::Interrupted, model: None, session_id: None },
        };
        store.record_events(&task, &[event])?;
        // What a crash cut short of the outgoing transcript, then the final state for the relay.
        recorder::backfill_wire(store, shared.redactors.for_repo(&task.repo), &task)?;
        store.save_task(&task)?;
        if was_running {
            let alert = recorder::alert(
                &task,
                Severity::Warning,
                AlertKind::TaskFailed,
                format!("Task \"{}\" was interrupted: it was running when the agent stopped", task.title),
            );
            store.insert_alert(&alert)?;
        }
        // Its open `needs_input` alert is done with: the request can no longer be decided.
        let open = AlertFilter { acknowledged: Some(false), limit: 500, ..Default::default() };
        for alert in store.alerts(&open)?.0 {
            if alert.kind == AlertKind::NeedsInput && alert.task_id.as_deref() == Some(task.id.as_str()) {
                store.acknowledge_alert(&alert.id)?;
            }
        }
        tracing::info!(task = %task.id, was_running, "marked interrupted at start-up");
    }
    Ok(Some(file))
}

/// Where a running task's process group is written down: `<data dir>/groups/<task id>`.
pub(crate) fn group_record_path(data_dir: &std::path::Path, task_id: &str) -> std::path::PathBuf {
    data_dir.join("groups").join(task_id)
}

/// Runs a store call on the blocking pool: rusqlite never runs on the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RunnerError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| RunnerError::Stopped)?.map_err(RunnerError::from)
}
