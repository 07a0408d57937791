//! `Agent`: the whole local agent behind one facade, shared by the desktop app and the headless
//! `flightdeck-agent run`.
//!
//! [`Agent::start`] opens the store in the data directory, starts the [`RepoWatcher`] on the
//! saved repos (plus any given at start), the [`TaskRunner`], and the relay link when a relay URL
//! and key are configured. Background tasks forward what the watcher and the runner publish to
//! the link's outbound queue and to the [`AgentEvent`] broadcast that user interfaces follow, and
//! turn what the relay asks (run a task, cancel one) into runner calls.
//!
//! Every cockpit operation is a method returning `Result<T, AgentError>`; [`AgentError::code`] is
//! the stable code front ends match on (`protocol::desktop::error_codes`). Store calls run on the
//! blocking pool: rusqlite must never run on the async executor's threads.
//!
//! Dropping the `Agent` stops everything without waiting; [`Agent::shutdown`] first cancels the
//! running tasks and waits (with a deadline) until they have ended.
//!
//! Submodules: `settings` (what is saved, the agent id, the key hint), `link` (the supervisor, the
//! one owner of the relay link and its status), `forward` (the background tasks between watcher,
//! runner, front ends and link), `notify` (which changes make a desktop notification), `bus`
//! (the cockpit's realtime-like topics).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::api::EventsResponse;
use flightdeck_protocol::api::{AlertsResponse, TaskListResponse};
use flightdeck_protocol::desktop::{
    error_codes, AgentEvent, AlertQuery, ClaudeHooks, CockpitState, CommandError, DecideRequest, LinkStatus,
    ReplyTaskRequest, SettingsUpdate, SettingsView, StartTaskRequest, TaskQuery,
};
use flightdeck_protocol::local::PendingRequest;
use flightdeck_protocol::names::{validate_agent_id, validate_user};
use flightdeck_protocol::realtime::TaskSnapshot;
use flightdeck_protocol::{Alert, Executor, RepoStatus, Task, TaskPayload, TaskSource, TaskStatus, Timestamp};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

mod bus;
pub mod control;
mod forward;
mod link;
mod notify;
mod settings;

pub use bus::{agent_info, CockpitBus};
pub use link::LinkView;
pub use notify::Notification;
pub use settings::key_hint;

use forward::{forward_runner, forward_watcher, serve_inbound};
use settings::{default_agent_id, http_base, keys, validate_relay_url, Settings};

use crate::acp::AcpAgents;
use crate::executor::Decision;
use crate::external::{settings as claude_settings, ExternalConfig, ExternalSessions, RepoOfDir};
use crate::link::{LinkConfig, Outbound};
use crate::runner::{NewTask, RepoResolver, RunnerConfig, RunnerError, TaskRunner};
use crate::store::{AlertFilter, Store, StoreError, TaskFilter, RELAY_HISTORY_FROM};
use crate::tray::{TrayInput, TrayModel};
use crate::watch::{is_present, RepoSpec, RepoWatcher, WatchConfig, WatchError, WatcherHandle};
use flightdeck_protocol::event::DecidedBy;
use link::{LinkControl, LinkParts, LinkTarget};

/// Tasks listed in [`CockpitState`].
const COCKPIT_TASKS: u32 = 100;
/// Largest page of `tasks` and `alerts`.
const MAX_LIMIT: u32 = 500;
/// How long `add_repo` waits for the new repo's first status before answering without it.
const FIRST_STATUS_WAIT: Duration = Duration::from_secs(3);

/// How to start an [`Agent`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Holds `flightdeck.db`, the runner's lock and task worktrees.
    pub data_dir: PathBuf,
    /// Repos to watch on top of the saved ones; they are added to the saved list (first run,
    /// `--repo`, `FLIGHTDECK_REPOS`). A path that is not a git working tree is skipped with a warning.
    pub extra_repos: Vec<PathBuf>,
    /// When set, replace the saved settings of the same name (and are saved): `--relay`, `--key`.
    pub relay_url: Option<String>,
    pub relay_key: Option<String>,
    pub agent_id: Option<String>,
    pub watch: WatchConfig,
    /// The runner's limits and executors; `data_dir` and `agent_id` are filled in by the agent.
    pub runner: RunnerConfig,
    /// The link's timings; URL, key and agent id come from the settings.
    pub link_template: Option<LinkConfig>,
    /// How Claude Code sessions started in a terminal are followed (SPEC 9).
    pub external: ExternalConfig,
    /// The program Claude Code's hooks run (`<program> hook`); `None`: this executable.
    pub hook_program: Option<PathBuf>,
    /// Claude Code's user settings file; `None`: `$HOME/.claude/settings.json`.
    pub claude_settings: Option<PathBuf>,
}

impl AgentConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            data_dir: data_dir.into(),
            extra_repos: Vec::new(),
            relay_url: None,
            relay_key: None,
            agent_id: None,
            watch: WatchConfig::default(),
            runner: RunnerConfig::default(),
            link_template: None,
            external: ExternalConfig::default(),
            hook_program: None,
            claude_settings: None,
        }
    }
}

/// Why a cockpit operation failed. [`AgentError::code`] is stable; the message is for people.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no watched repo has the id or name {0:?}")]
    RepoNotFound(String),
    #[error("{0} is already watched")]
    RepoExists(String),
    #[error("{path} is not a git working tree: {reason}")]
    NotAGitRepo { path: String, reason: String },
    #[error("no task has the id {0:?}")]
    TaskNotFound(String),
    #[error("no alert has the id {0:?}")]
    AlertNotFound(String),
    #[error("invalid {field}: {problem}")]
    InvalidInput { field: String, problem: String },
    #[error("no relay is configured: set its URL in the settings")]
    RelayNotConfigured,
    #[error("no permission request {request_id} is pending on task {task_id}")]
    NotPending { task_id: String, request_id: String },
    #[error("task {0} has a turn that has not ended: reply when it has")]
    TurnInProgress(String),
    #[error("task {task_id} cannot be continued: {reason}")]
    NotResumable { task_id: String, reason: String },
    #[error("task {task_id} cannot be cancelled here: {reason}")]
    NotCancellable { task_id: String, reason: String },
    #[error(transparent)]
    ClaudeSettings(crate::external::settings::HooksError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// The stable code of this error, one of `protocol::desktop::error_codes`.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::RepoNotFound(_) => error_codes::REPO_NOT_FOUND,
            AgentError::RepoExists(_) => error_codes::REPO_EXISTS,
            AgentError::NotAGitRepo { .. } => error_codes::NOT_A_GIT_REPO,
            AgentError::TaskNotFound(_) => error_codes::TASK_NOT_FOUND,
            AgentError::AlertNotFound(_) => error_codes::ALERT_NOT_FOUND,
            AgentError::InvalidInput { .. } => error_codes::INVALID_INPUT,
            AgentError::RelayNotConfigured => error_codes::RELAY_NOT_CONFIGURED,
            AgentError::NotPending { .. } => error_codes::NOT_PENDING,
            AgentError::TurnInProgress(_) => error_codes::TURN_IN_PROGRESS,
            AgentError::NotResumable { .. } => error_codes::NOT_RESUMABLE,
            AgentError::NotCancellable { .. } => error_codes::NOT_CANCELLABLE,
            AgentError::ClaudeSettings(e) => e.code(),
            AgentError::Store(_) | AgentError::Internal(_) => error_codes::INTERNAL,
        }
    }

    /// The error as a front end receives it.
    pub fn to_command_error(&self) -> CommandError {
        CommandError { code: self.code().to_string(), message: self.to_string() }
    }

    fn invalid(field: &str, problem: impl Into<String>) -> AgentError {
        AgentError::InvalidInput { field: field.to_string(), problem: problem.into() }
    }
}

impl From<RunnerError> for AgentError {
    fn from(e: RunnerError) -> AgentError {
        match e {
            RunnerError::Store(e) => AgentError::Store(e),
            RunnerError::Stopped => AgentError::Internal("the task runner has stopped".into()),
        }
    }
}

impl From<AgentError> for CommandError {
    fn from(e: AgentError) -> CommandError {
        e.to_command_error()
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The running local agent; see the module docs.
pub struct Agent {
    inner: Arc<Inner>,
    // Stops the background tasks when the agent is dropped: they hold `inner`, so without this
    // nothing would ever be freed.
    _stop: DropGuard,
}

struct Inner {
    store: Store,
    data_dir: PathBuf,
    watcher: Arc<WatcherHandle>,
    runner: TaskRunner,
    events: broadcast::Sender<AgentEvent>,
    /// The relay link's one owner (see `agent::link`).
    link: LinkControl,
    /// Restarts of the link are serialised, so the last settings saved are the ones it runs with.
    link_settings: tokio::sync::Mutex<()>,
    started_at: Timestamp,
    stop: CancellationToken,
    /// The Claude Code sessions started in a terminal (fed by the control socket's hooks).
    external: ExternalSessions,
    hook_program: Option<PathBuf>,
    claude_settings: Option<PathBuf>,
    permission_wait: Duration,
    /// What this agent can run, as the relay and the windows are told (`acp:<name>` included):
    /// `base_capabilities` and the ACP agents found here, which the settings may change.
    capabilities: std::sync::RwLock<Vec<String>>,
    base_capabilities: Vec<String>,
    /// The ACP agents given at start (built-ins, flags, environment, file), below the settings'.
    base_acp: AcpAgents,
}

impl Agent {
    /// Opens the store, starts watching, running tasks and (if configured) the relay link.
    /// Must be called within a tokio runtime.
    pub async fn start(config: AgentConfig) -> Result<Agent> {
        let data_dir = config.data_dir.clone();
        let store = {
            let dir = data_dir.clone();
            blocking(move || Store::open(&dir)).await?
        };

        // Settings given at start win over (and replace) the saved ones.
        let overrides = [
            (keys::RELAY_URL, config.relay_url.clone()),
            (keys::RELAY_KEY, config.relay_key.clone()),
            (keys::AGENT_ID, config.agent_id.clone()),
        ];
        if let Some(id) = &config.agent_id {
            validate_agent_id(id).map_err(|e| AgentError::invalid("agentId", e.to_string()))?;
        }
        let settings = {
            let store = store.clone();
            blocking(move || {
                for (key, value) in overrides {
                    if let Some(value) = value {
                        store.set_setting(key, value.trim())?;
                    }
                }
                if store.setting(keys::AGENT_ID)?.is_none() {
                    store.set_setting(keys::AGENT_ID, &default_agent_id())?;
                }
                Settings::load(&store)
            })
            .await?
        };

        let watcher = Arc::new(RepoWatcher::start(config.watch.clone(), Some(store.clone())));
        let watch_events = watcher.subscribe();
        if settings.paused {
            watcher.pause();
        }
        let mut repos = settings.repos.clone();
        for extra in &config.extra_repos {
            let path = normalize(extra);
            if !repos.contains(&path) {
                repos.push(path);
            }
        }
        let mut watched = Vec::new();
        for path in repos {
            match watcher.add_repo(RepoSpec::new(&path)) {
                Ok(info) => watched.push(info.path),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "not watching"),
            }
        }
        {
            let store = store.clone();
            blocking(move || save_repo_list(&store, &watched)).await?;
        }

        let resolver: RepoResolver = {
            let watcher = watcher.clone();
            Arc::new(move |slug: &str| {
                watcher.repos().into_iter().find(|r| r.name == slug || r.id == slug).map(|r| r.path)
            })
        };
        let base_acp = config.runner.acp.agents.clone();
        let acp_agents = acp_agents_with(&base_acp, &settings.acp_agents).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the ACP agents saved in the settings are not valid; using the others");
            base_acp.clone()
        });
        let mut runner_config = RunnerConfig {
            data_dir: Some(data_dir.clone()),
            agent_id: Some(settings.agent_id.clone()),
            ..config.runner.clone()
        };
        runner_config.acp.agents = acp_agents.clone();
        let runner = TaskRunner::start(store.clone(), runner_config, resolver).await?;
        let runner_events = runner.subscribe();

        let (events, _) = broadcast::channel(4096);
        let (inbound, inbound_rx) = mpsc::channel(64);
        // The relay learns which ACP agents can run here (`acp:<name>`, SPEC 14).
        let template = config.link_template.clone().unwrap_or_else(|| LinkConfig::new("", "", ""));
        let base_capabilities = template.capabilities.clone();
        let capabilities = capabilities_with(&base_capabilities, &acp_agents);
        let stop = CancellationToken::new();
        let link = LinkControl::start(LinkParts {
            store: store.clone(),
            template: Some(template.clone()),
            inbound,
            redactors: runner.redactors(),
            events: events.clone(),
            stop: stop.clone(),
        });
        let repo_of: RepoOfDir = {
            let watcher = watcher.clone();
            Arc::new(move |dir: &Path| {
                // The innermost watched repo the directory is in.
                watcher
                    .repos()
                    .into_iter()
                    .filter(|r| dir.starts_with(&r.path))
                    .max_by_key(|r| r.path.as_os_str().len())
                    .map(|r| r.name)
            })
        };
        let external = ExternalSessions::start(runner.shared(), repo_of, config.external.clone(), stop.clone()).await;
        let inner = Arc::new(Inner {
            store,
            data_dir,
            watcher,
            runner,
            events,
            link,
            link_settings: tokio::sync::Mutex::new(()),
            started_at: chrono::Utc::now(),
            stop: stop.clone(),
            external,
            hook_program: config.hook_program.clone(),
            claude_settings: config.claude_settings.clone(),
            permission_wait: config.external.permission_wait,
            capabilities: std::sync::RwLock::new(capabilities),
            base_capabilities,
            base_acp,
        });
        tokio::spawn(forward_watcher(inner.clone(), watch_events));
        tokio::spawn(forward_runner(inner.clone(), runner_events));
        tokio::spawn(serve_inbound(inner.clone(), inbound_rx));
        control::serve(inner.clone(), stop.clone());
        inner.restart_link().await;
        Ok(Agent { inner, _stop: stop.drop_guard() })
    }

    /// Every change from now on. A receiver that falls behind gets `Lagged` and should reload
    /// with [`Agent::cockpit_state`].
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.inner.events.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// What this agent can run: `git`, `claude`, `shell`, and `acp:<name>` for each ACP agent
    /// found on this machine (SPEC 14).
    pub fn capabilities(&self) -> Vec<String> {
        self.inner.capabilities()
    }

    /// When this agent started.
    pub fn started_at(&self) -> Timestamp {
        self.inner.started_at
    }

    /// Everything a window shows, at once.
    pub async fn cockpit_state(&self) -> Result<CockpitState> {
        let repos = self.repos().await?;
        let tasks = self.tasks(TaskQuery { limit: Some(COCKPIT_TASKS), ..Default::default() }).await?.tasks;
        let alerts = self.alerts(AlertQuery { acknowledged: Some(false), ..Default::default() }).await?.alerts;
        let settings = self.settings().await?;
        let link = self.link_view();
        Ok(CockpitState { repos, tasks, alerts, settings, link: link.status, link_error: link.error })
    }

    // ---- repos ----

    /// The watched repos, by name. A repo whose first scan has not finished yet is listed with
    /// its identity only.
    pub async fn repos(&self) -> Result<Vec<RepoStatus>> {
        let statuses = self.inner.watcher.statuses();
        let mut out: Vec<RepoStatus> = self
            .inner
            .watcher
            .repos()
            .into_iter()
            .map(|info| {
                statuses.iter().find(|s| s.id == info.id).cloned().unwrap_or_else(|| {
                    let mut status = RepoStatus::new(info.id.clone(), info.name.clone());
                    status.path = Some(info.path.display().to_string());
                    status
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Starts watching the git working tree at `path` (its root) and saves it in the settings.
    /// Answers with its first status (or its identity only, if the first scan is slow).
    pub async fn add_repo(&self, path: &Path) -> Result<RepoStatus> {
        if path.as_os_str().is_empty() {
            return Err(AgentError::invalid("path", "a path is required"));
        }
        let path = normalize(path);
        let shown = path.display().to_string();
        if !path.is_dir() {
            return Err(AgentError::NotAGitRepo { path: shown, reason: "no such directory".into() });
        }
        if !is_present(&path) {
            return Err(AgentError::NotAGitRepo {
                path: shown,
                reason: "there is no .git in it (pick the root of the working tree)".into(),
            });
        }
        if self.inner.watcher.repos().iter().any(|r| r.path == path) {
            return Err(AgentError::RepoExists(shown));
        }
        let mut updates = self.inner.watcher.subscribe();
        let info = self.inner.watcher.add_repo(RepoSpec::new(&path)).map_err(watch_error)?;
        self.inner.save_repo_list().await?;

        let deadline = tokio::time::Instant::now() + FIRST_STATUS_WAIT;
        loop {
            if let Some(status) = self.inner.watcher.statuses().into_iter().find(|s| s.id == info.id) {
                return Ok(status);
            }
            match tokio::time::timeout_at(deadline, updates.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let mut status = RepoStatus::new(info.id, info.name);
        status.path = Some(shown);
        Ok(status)
    }

    /// Stops watching a repo (by id, name or path) and forgets it.
    pub async fn remove_repo(&self, id_or_name: &str) -> Result<()> {
        let info = self.inner.find_repo(id_or_name)?;
        self.inner.watcher.remove_repo(&info.id).map_err(watch_error)?;
        self.inner.save_repo_list().await
    }

    /// Pauses or resumes watching the file system (saved: it survives a restart).
    pub async fn set_watching_paused(&self, paused: bool) -> Result<()> {
        if paused {
            self.inner.watcher.pause();
        } else {
            self.inner.watcher.resume();
        }
        let store = self.inner.store.clone();
        blocking(move || store.set_setting(keys::WATCH_PAUSED, if paused { "true" } else { "false" })).await?;
        let _ = self.inner.events.send(AgentEvent::Watching { paused });
        Ok(())
    }

    pub fn watching_paused(&self) -> bool {
        self.inner.watcher.is_paused()
    }

    // ---- tasks ----

    /// Creates a local task and queues it.
    pub async fn start_task(&self, request: StartTaskRequest) -> Result<Task> {
        let repo = self.inner.find_repo(&request.repo)?;
        let payload = validate_payload(request.executor, request.payload)?;
        let new = NewTask {
            title: request.title,
            ..NewTask::local(repo.name.clone(), request.executor, TaskPayload { repo: Some(repo.name), ..payload })
        };
        Ok(self.inner.runner.create(new).await?)
    }

    /// Decides a pending permission request of a running task (from the desktop or
    /// `flightdeck-agent decide`: `decidedBy` local). Answers with the task as it is then.
    pub async fn decide(&self, request: DecideRequest) -> Result<Task> {
        self.inner.decide(request).await
    }

    /// The follow-up turn of a task's conversation: a new Claude task that resumes the task's
    /// session with `prompt` (permission mode and allowed tools as given, else the parent's).
    pub async fn reply(&self, request: ReplyTaskRequest) -> Result<Task> {
        let parent = self.task(&request.task_id).await?;
        let not_resumable =
            |reason: &str| AgentError::NotResumable { task_id: parent.id.clone(), reason: reason.into() };
        if let Some(reason) = flightdeck_protocol::rules::reply_refusal(&parent) {
            return Err(not_resumable(reason));
        }
        let Some(session) = parent.session_id.clone() else {
            return Err(not_resumable("its session never started"));
        };
        let conversation = parent.conversation().to_string();
        let store = self.inner.store.clone();
        let repo = parent.repo.clone();
        let turns = blocking(move || {
            let filter = TaskFilter { repo: Some(repo), limit: MAX_LIMIT, ..Default::default() };
            Ok(store.tasks(&filter)?.0)
        })
        .await?;
        if let Some(open) = turns.iter().find(|t| t.conversation() == conversation && !t.status.is_terminal()) {
            return Err(AgentError::TurnInProgress(open.id.clone()));
        }
        let payload = TaskPayload {
            prompt: Some(request.prompt),
            command: None,
            resume_session_id: Some(session),
            permission_mode: request.permission_mode.or(parent.payload.permission_mode.clone()),
            allowed_tools: request.allowed_tools.or(parent.payload.allowed_tools.clone()),
            ..parent.payload.clone()
        };
        // A Claude turn resumes with `--resume`, an ACP turn with `session/load` (SPEC 14).
        let payload = validate_payload(parent.executor, payload)?;
        let new = NewTask {
            conversation_id: Some(conversation),
            parent_task_id: Some(parent.id.clone()),
            ..NewTask::local(parent.repo.clone(), parent.executor, payload)
        };
        Ok(self.inner.runner.create(new).await?)
    }

    /// Asks a task to stop. Answers with its state at that moment; a task already finished is
    /// returned as it is.
    pub async fn cancel_task(&self, task_id: &str) -> Result<Task> {
        let task = self.task(task_id).await?;
        if let Some(reason) = flightdeck_protocol::rules::cancel_refusal(&task) {
            return Err(AgentError::NotCancellable { task_id: task.id, reason: reason.into() });
        }
        if let Some(task) = self.inner.runner.cancel(task_id).await? {
            return Ok(task);
        }
        self.task(task_id).await
    }

    pub async fn task(&self, task_id: &str) -> Result<Task> {
        let store = self.inner.store.clone();
        let id = task_id.to_string();
        blocking(move || store.task(&id)).await?.ok_or_else(|| AgentError::TaskNotFound(task_id.to_string()))
    }

    /// Tasks, newest first.
    pub async fn tasks(&self, query: TaskQuery) -> Result<TaskListResponse> {
        let limit = page_limit(query.limit)?;
        // Tasks record the repo's name; accept its id too.
        let repo = query.repo.map(|r| self.inner.find_repo(&r).map(|info| info.name).unwrap_or(r));
        let filter = TaskFilter {
            status: query.status,
            executor: query.executor,
            repo,
            limit,
            offset: query.offset.unwrap_or(0),
        };
        let store = self.inner.store.clone();
        let offset = filter.offset;
        let (tasks, total) = blocking(move || store.tasks(&filter)).await?;
        Ok(TaskListResponse { tasks, total, limit, offset })
    }

    /// The queued and running tasks.
    pub async fn active_tasks(&self) -> Result<Vec<Task>> {
        let store = self.inner.store.clone();
        blocking(move || active_tasks(&store)).await
    }

    /// A task and its whole transcript.
    pub async fn transcript(&self, task_id: &str) -> Result<TaskSnapshot> {
        let task = self.task(task_id).await?;
        let store = self.inner.store.clone();
        let id = task_id.to_string();
        let events = blocking(move || store.transcript(&id)).await?;
        Ok(TaskSnapshot { task, events })
    }

    /// A task's events after `after` (at most `limit`, default 500): the polling fallback.
    pub async fn task_events(&self, task_id: &str, after: u64, limit: Option<u32>) -> Result<EventsResponse> {
        self.task(task_id).await?;
        let limit = match limit {
            None | Some(0) => MAX_LIMIT,
            Some(n) => n.min(MAX_LIMIT),
        };
        let store = self.inner.store.clone();
        let id = task_id.to_string();
        let events = blocking(move || store.events_after(&id, after, limit)).await?;
        let next_after = events.last().map_or(after, |e| e.seq);
        Ok(EventsResponse { events, next_after })
    }

    // ---- alerts ----

    pub async fn alerts(&self, query: AlertQuery) -> Result<AlertsResponse> {
        let filter = AlertFilter {
            severity: query.severity,
            acknowledged: query.acknowledged,
            limit: page_limit(query.limit)?,
            offset: query.offset.unwrap_or(0),
        };
        let store = self.inner.store.clone();
        let (alerts, total) = blocking(move || store.alerts(&filter)).await?;
        Ok(AlertsResponse { alerts, total })
    }

    pub async fn acknowledge_alert(&self, id: &str) -> Result<Alert> {
        let store = self.inner.store.clone();
        let alert_id = id.to_string();
        let alert = blocking(move || store.acknowledge_alert(&alert_id))
            .await?
            .ok_or_else(|| AgentError::AlertNotFound(id.to_string()))?;
        // The store queued it for the relay; the relay keeps the acknowledgement from then on.
        self.inner.publish(AgentEvent::Alert { alert: alert.clone() }, None);
        Ok(alert)
    }

    // ---- settings and the link ----

    pub async fn settings(&self) -> Result<SettingsView> {
        let store = self.inner.store.clone();
        let settings = blocking(move || Settings::load(&store)).await?;
        Ok(settings.view())
    }

    /// Changes the relay URL, user, key or agent id; the link restarts when any of them changed.
    /// A new agent id applies to tasks created after the next start.
    pub async fn set_settings(&self, update: SettingsUpdate) -> Result<SettingsView> {
        let mut changes: Vec<(&'static str, Option<String>)> = Vec::new();
        if let Some(url) = update.relay_url {
            let url = url.trim().to_string();
            if url.is_empty() {
                changes.push((keys::RELAY_URL, None));
            } else {
                validate_relay_url(&url)?;
                changes.push((keys::RELAY_URL, Some(url.trim_end_matches('/').to_string())));
            }
        }
        if let Some(user) = update.relay_user {
            let user = user.trim().to_string();
            if user.is_empty() {
                changes.push((keys::RELAY_USER, None));
            } else {
                validate_user(&user).map_err(|e| AgentError::invalid("relayUser", e.to_string()))?;
                changes.push((keys::RELAY_USER, Some(user)));
            }
        }
        if let Some(key) = update.key {
            let key = key.trim().to_string();
            if key.chars().any(char::is_whitespace) {
                return Err(AgentError::invalid("key", "a key has no spaces"));
            }
            changes.push((keys::RELAY_KEY, Some(key).filter(|k| !k.is_empty())));
        }
        if let Some(id) = update.agent_id {
            let id = id.trim().to_string();
            validate_agent_id(&id).map_err(|e| AgentError::invalid("agentId", e.to_string()))?;
            changes.push((keys::AGENT_ID, Some(id)));
        }
        // Custom ACP agents: checked whole before anything is saved.
        let acp_agents = match update.acp_agents {
            Some(specs) => {
                let custom = acp_specs(&specs)?;
                let agents = acp_agents_with(&self.inner.base_acp, &custom)?;
                let json =
                    serde_json::to_string(&custom).map_err(|e| AgentError::invalid("acpAgents", e.to_string()))?;
                changes.push((keys::ACP_AGENTS, Some(json).filter(|_| !custom.is_empty())));
                Some(agents)
            }
            None => None,
        };
        let upload_history = update.upload_history.unwrap_or(false);
        let store = self.inner.store.clone();
        let (before, after) = blocking(move || {
            let before = Settings::load(&store)?;
            for (key, value) in changes {
                match value {
                    Some(value) => store.set_setting(key, &value)?,
                    None => store.delete_setting(key)?,
                }
            }
            let after = Settings::load(&store)?;
            if before.relay_url.is_none() && after.relay_url.is_some() {
                // The relay is turned on: what happened before goes only when the owner says so.
                if upload_history {
                    store.delete_setting(RELAY_HISTORY_FROM)?;
                } else {
                    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    store.set_setting(RELAY_HISTORY_FROM, &now)?;
                }
            }
            Ok((before, after))
        })
        .await?;
        // New ACP agents: tasks started from now on run them, and the relay is told what this
        // agent can run (its link starts again with the new capabilities).
        let capabilities_changed = match acp_agents {
            Some(agents) => self.inner.set_acp_agents(agents),
            None => false,
        };
        if before.link_identity() != after.link_identity() || capabilities_changed {
            self.inner.restart_link().await;
        }
        let view = after.view();
        let _ = self.inner.events.send(AgentEvent::Settings { settings: view.clone() });
        Ok(view)
    }

    pub fn link_status(&self) -> LinkStatus {
        self.inner.link.view().status
    }

    /// The link's status and, when it stopped for good, why.
    pub fn link_view(&self) -> LinkView {
        self.inner.link.view()
    }

    /// The browser address of a repo's HUD (`<relay>/hud/<user>/<repo>`), or of the relay's
    /// front page when the user or the repo is not known.
    pub async fn hud_url(&self, repo: Option<&str>) -> Result<String> {
        let store = self.inner.store.clone();
        let settings = blocking(move || Settings::load(&store)).await?;
        let base = settings.relay_url.as_deref().map(http_base).ok_or(AgentError::RelayNotConfigured)?;
        let repo = match repo {
            Some(r) => Some(self.inner.find_repo(r)?.name),
            None => self.inner.watcher.repos().into_iter().next().map(|r| r.name),
        };
        Ok(match (settings.relay_user, repo) {
            (Some(user), Some(repo)) => format!("{base}/hud/{user}/{repo}"),
            _ => format!("{base}/"),
        })
    }

    /// The tray as data, from the current state.
    pub async fn tray_model(&self) -> Result<TrayModel> {
        let repos = self.repos().await?;
        let store = self.inner.store.clone();
        let (tasks, alerts, hud_available) = blocking(move || {
            let tasks = active_tasks(&store)?;
            let filter = AlertFilter { acknowledged: Some(false), limit: MAX_LIMIT, ..Default::default() };
            let alerts = store.alerts(&filter)?.0;
            Ok((tasks, alerts, store.setting(keys::RELAY_URL)?.is_some()))
        })
        .await?;
        Ok(TrayModel::build(TrayInput {
            repos: &repos,
            tasks: &tasks,
            alerts: &alerts,
            paused: self.watching_paused(),
            link: self.link_status(),
            hud_available,
        }))
    }

    // ---- Claude Code sessions started in a terminal ----

    /// Whether Claude Code's hooks (in `~/.claude/settings.json`) reach an agent.
    pub async fn claude_hooks(&self) -> Result<ClaudeHooks> {
        let path = self.inner.claude_settings_path()?;
        let shown = path.display().to_string();
        let status = tokio::task::spawn_blocking(move || claude_settings::status(&path))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .map_err(AgentError::ClaudeSettings)?;
        Ok(ClaudeHooks { installed: status.installed(), settings_path: shown })
    }

    /// Adds this agent's hooks to the user's Claude Code settings (sessions in watched repos
    /// then show here), or removes exactly them.
    pub async fn set_claude_hooks(&self, installed: bool) -> Result<ClaudeHooks> {
        let path = self.inner.claude_settings_path()?;
        let program = match &self.inner.hook_program {
            Some(program) => program.clone(),
            None => {
                std::env::current_exe().map_err(|e| AgentError::Internal(format!("cannot find this program: {e}")))?
            }
        };
        let command = claude_settings::HookCommand { program, data_dir: Some(self.inner.data_dir.clone()) };
        let wait = self.inner.permission_wait;
        tokio::task::spawn_blocking(move || {
            if installed {
                claude_settings::install(&path, &command, wait)
            } else {
                claude_settings::uninstall(&path)
            }
        })
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .map_err(AgentError::ClaudeSettings)?;
        self.claude_hooks().await
    }

    /// Cancels every queued and running task and waits until they have all ended or `deadline`
    /// has passed; then stops the link. Returns the tasks that had not ended in time.
    /// Closes the relay link and opens it again: the relay's `welcome` then says what it holds,
    /// and the agent resends what is missing (see [`Agent::relay_holds`]).
    pub async fn reconnect_link(&self) {
        self.inner.restart_link().await;
    }

    /// Whether the relay confirmed, at the last `welcome`, that it holds the whole of this task
    /// (its final state and every event).
    pub async fn relay_holds(&self, task_id: &str) -> Result<bool> {
        let store = self.inner.store.clone();
        let id = task_id.to_string();
        blocking(move || Ok::<_, StoreError>(!store.unconfirmed_tasks()?.iter().any(|t| t.id == id))).await
    }

    pub async fn shutdown(&self, deadline: Duration) -> Result<Vec<Task>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut updates = self.subscribe();
        // A session started in a terminal goes on without the agent: the next start follows it again.
        let active: Vec<Task> =
            self.active_tasks().await?.into_iter().filter(|t| t.source != TaskSource::External).collect();
        for task in &active {
            if let Err(e) = self.inner.runner.cancel(&task.id).await {
                tracing::warn!(task = %task.id, error = %e, "cannot cancel at shutdown");
            }
        }
        let mut pending: HashSet<String> = active.into_iter().map(|t| t.id).collect();
        loop {
            // Re-read the store rather than trusting the broadcast alone: a lagged receiver
            // would otherwise miss the final update.
            let store = self.inner.store.clone();
            let ids: Vec<String> = pending.iter().cloned().collect();
            let finished = blocking(move || {
                let mut done = Vec::new();
                for id in ids {
                    if store.task(&id)?.is_none_or(|t| t.status.is_terminal()) {
                        done.push(id);
                    }
                }
                Ok(done)
            })
            .await?;
            for id in finished {
                pending.remove(&id);
            }
            if pending.is_empty() {
                break;
            }
            match tokio::time::timeout_at(until, updates.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let mut left = Vec::new();
        for id in pending {
            if let Ok(task) = self.task(&id).await {
                left.push(task);
            }
        }
        self.inner.link.shutdown().await;
        self.inner.stop.cancel();
        Ok(left)
    }
}

impl Inner {
    fn claude_settings_path(&self) -> Result<PathBuf> {
        match &self.claude_settings {
            Some(path) => Ok(path.clone()),
            None => claude_settings::user_settings_path().ok_or_else(|| AgentError::invalid("HOME", "is not set")),
        }
    }

    /// The permission requests waiting for a decision, oldest first: each `waiting` task's
    /// requests that its transcript holds no decision for.
    async fn pending(&self) -> Result<Vec<PendingRequest>> {
        let store = self.store.clone();
        blocking(move || {
            let filter = TaskFilter { status: Some(TaskStatus::Waiting), limit: MAX_LIMIT, ..Default::default() };
            let (mut tasks, _) = store.tasks(&filter)?;
            tasks.sort_by(|a, b| (a.waiting_since, &a.id).cmp(&(b.waiting_since, &b.id)));
            let mut pending = Vec::new();
            for task in tasks {
                pending.extend(open_requests(&task, &store.transcript(&task.id)?));
            }
            Ok(pending)
        })
        .await
    }

    async fn decide(&self, request: DecideRequest) -> Result<Task> {
        let store = self.store.clone();
        let id = request.task_id.clone();
        let task = blocking(move || store.task(&id))
            .await?
            .ok_or_else(|| AgentError::TaskNotFound(request.task_id.clone()))?;
        let decision = Decision {
            request_id: request.request_id.clone(),
            behavior: request.behavior,
            updated_input: request.updated_input,
            message: request.message.filter(|m| !m.trim().is_empty()),
            decided_by: DecidedBy::Local,
        };
        if !self.runner.decide(&task.id, decision).await? {
            return Err(AgentError::NotPending { task_id: task.id, request_id: request.request_id });
        }
        let store = self.store.clone();
        let id = task.id.clone();
        blocking(move || store.task(&id)).await?.ok_or(AgentError::TaskNotFound(task.id))
    }

    fn find_repo(&self, id_or_name: &str) -> Result<crate::watch::RepoInfo> {
        self.watcher
            .repos()
            .into_iter()
            .find(|r| r.id == id_or_name || r.name == id_or_name || r.path.as_os_str() == id_or_name)
            .ok_or_else(|| AgentError::RepoNotFound(id_or_name.to_string()))
    }

    async fn save_repo_list(&self) -> Result<()> {
        let paths: Vec<PathBuf> = self.watcher.repos().into_iter().map(|r| r.path).collect();
        let store = self.store.clone();
        blocking(move || save_repo_list(&store, &paths)).await
    }

    /// Sends an event to the front ends and, when there is a link, a live item to the relay.
    fn publish(&self, event: AgentEvent, outbound: Option<Outbound>) {
        let _ = self.events.send(event);
        if let Some(item) = outbound {
            self.link.publish(item);
        }
    }

    /// Stops the current link (if any) and starts one with these settings (if configured); the
    /// link status is set when this returns.
    fn capabilities(&self) -> Vec<String> {
        self.capabilities.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs tasks with these ACP agents from now on; true when what this agent can run changed.
    fn set_acp_agents(&self, agents: AcpAgents) -> bool {
        let capabilities = capabilities_with(&self.base_capabilities, &agents);
        self.runner.set_acp_agents(agents);
        let mut current = self.capabilities.write().unwrap_or_else(|e| e.into_inner());
        let changed = *current != capabilities;
        *current = capabilities;
        changed
    }

    async fn restart_link(&self) {
        let _serial = self.link_settings.lock().await;
        // Read under the lock: of two settings changes, the link runs with the last one saved.
        let store = self.store.clone();
        let settings = match blocking(move || Settings::load(&store)).await {
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the link settings");
                return;
            }
        };
        let target = match (&settings.relay_url, &settings.relay_key) {
            (Some(url), Some(key)) => Some(LinkTarget {
                url: url.clone(),
                key: key.clone(),
                agent_id: settings.agent_id.clone(),
                capabilities: self.capabilities(),
            }),
            _ => None,
        };
        let busy = {
            let store = self.store.clone();
            blocking(move || active_tasks(&store)).await.map(|t| !t.is_empty()).unwrap_or(false)
        };
        self.link.configure(target, busy).await;
    }
}

/// `NAME=COMMAND` specs by name; a name given twice is refused.
fn acp_specs(specs: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    let mut custom = std::collections::BTreeMap::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, command) = spec
            .split_once('=')
            .ok_or_else(|| AgentError::invalid("acpAgents", format!("`{spec}` is not NAME=COMMAND")))?;
        let (name, command) = (name.trim().to_string(), command.trim().to_string());
        if custom.insert(name.clone(), command).is_some() {
            return Err(AgentError::invalid("acpAgents", format!("agent `{name}` is given twice")));
        }
    }
    Ok(custom)
}

/// The ACP agents given at start with the settings' custom ones on top (the settings' command
/// wins for a name given twice).
fn acp_agents_with(base: &AcpAgents, custom: &std::collections::BTreeMap<String, String>) -> Result<AcpAgents> {
    let mut agents = base.clone();
    for (name, command) in custom {
        agents.add(name, command).map_err(|e| AgentError::invalid("acpAgents", e.to_string()))?;
    }
    Ok(agents)
}

/// `base` and `acp:<name>` for each of `agents` that can run here (found on `PATH`).
fn capabilities_with(base: &[String], agents: &AcpAgents) -> Vec<String> {
    let mut capabilities = base.to_vec();
    capabilities.extend(agents.capabilities(std::env::var_os("PATH").as_deref()));
    capabilities
}

fn validate_payload(executor: Executor, payload: TaskPayload) -> Result<TaskPayload> {
    payload.validate(executor).map_err(|p| AgentError::invalid(p.field, p.problem))?;
    Ok(payload)
}

fn page_limit(limit: Option<u32>) -> Result<u32> {
    match limit {
        None | Some(0) => Ok(50),
        Some(n) if n > MAX_LIMIT => Err(AgentError::invalid("limit", format!("at most {MAX_LIMIT}"))),
        Some(n) => Ok(n),
    }
}

fn active_tasks(store: &Store) -> Result<Vec<Task>, StoreError> {
    let mut out = Vec::new();
    for status in [TaskStatus::Running, TaskStatus::Waiting, TaskStatus::Queued] {
        let filter = TaskFilter { status: Some(status), limit: MAX_LIMIT, ..Default::default() };
        out.extend(store.tasks(&filter)?.0);
    }
    Ok(out)
}

fn save_repo_list(store: &Store, paths: &[PathBuf]) -> Result<(), StoreError> {
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    store.set_setting(keys::REPOS, &serde_json::to_string(&list)?)
}

fn normalize(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

fn watch_error(e: WatchError) -> AgentError {
    match e {
        WatchError::NotARepo { path } => {
            AgentError::NotAGitRepo { path: path.display().to_string(), reason: "there is no .git in it".into() }
        }
        WatchError::InvalidName { name, reason } => AgentError::invalid("name", format!("{name:?}: {reason}")),
        WatchError::UnknownRepo { id } => AgentError::RepoNotFound(id),
    }
}

/// Runs a store call on the blocking pool: rusqlite never runs on the async threads.
/// The permission requests of `task` that `transcript` shows no decision for, in order.
fn open_requests(task: &Task, transcript: &[flightdeck_protocol::SeqEvent]) -> Vec<PendingRequest> {
    use flightdeck_protocol::TaskEvent;
    let mut open: Vec<PendingRequest> = Vec::new();
    for record in transcript {
        match &record.event {
            TaskEvent::PermissionRequest { request_id, tool_name, input, description, .. } => {
                open.push(PendingRequest {
                    task_id: task.id.clone(),
                    task_title: task.title.clone(),
                    repo: task.repo.clone(),
                    request_id: request_id.clone(),
                    tool_name: tool_name.clone(),
                    summary: request_summary(input, description.as_deref()),
                    waiting_since: task.waiting_since,
                })
            }
            TaskEvent::PermissionDecision { request_id, .. } => open.retain(|r| r.request_id != *request_id),
            _ => {}
        }
    }
    open
}

/// What a tool would do, on one line of at most 200 characters: its command, file, question or
/// description, else its input as JSON.
fn request_summary(input: &serde_json::Value, description: Option<&str>) -> String {
    let field = ["command", "file_path", "path", "url", "pattern", "prompt"]
        .iter()
        .find_map(|key| input.get(key).and_then(serde_json::Value::as_str))
        .map(String::from);
    let question = || input.pointer("/questions/0/question").and_then(serde_json::Value::as_str).map(String::from);
    let text = field.or_else(question).or_else(|| description.map(String::from)).unwrap_or_else(|| {
        if input.is_null() {
            String::new()
        } else {
            input.to_string()
        }
    });
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(format!("a store call panicked: {e}")))?
        .map_err(AgentError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_validation() {
        let shell = |command: &str| TaskPayload { command: Some(command.into()), ..Default::default() };
        let table: Vec<(Executor, TaskPayload, Option<&str>)> = vec![
            (Executor::Shell, shell("echo hi"), None),
            (Executor::Shell, shell("  "), Some("payload.command")),
            (Executor::Claude, shell("echo hi"), Some("payload.prompt")),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(-1.0), ..shell("x") }, Some("payload.maxCostUsd")),
            (Executor::Shell, TaskPayload { max_cost_usd: Some(f64::NAN), ..shell("x") }, Some("payload.maxCostUsd")),
            (Executor::Shell, TaskPayload { timeout_secs: Some(0), ..shell("x") }, Some("payload.timeoutSecs")),
            (Executor::Shell, TaskPayload { timeout_secs: Some(3), worktree: Some(true), ..shell("x") }, None),
        ];
        for (executor, payload, field) in table {
            match (validate_payload(executor, payload.clone()), field) {
                (Ok(_), None) => {}
                (Err(AgentError::InvalidInput { field: got, .. }), Some(want)) => assert_eq!(got, want),
                (other, _) => panic!("{payload:?}: {other:?}"),
            }
        }
    }
}
