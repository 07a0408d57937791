//! Container runs (SPEC 10): the relay starts a container with the headless agent for a task,
//! follows it to its end, and removes it.
//!
//! - [`Engine`]: what the relay needs of a container engine (start, wait, log tail, remove,
//!   list by label). [`docker::DockerEngine`] implements it with the Docker Engine API, which
//!   Podman serves too. A Kubernetes Job engine would be a second implementation of the same
//!   trait (see ARCHITECTURE.md).
//! - [`Runner`]: the supervisor. The queue of runs is the `runs` table (bounded by
//!   `max_queued` when a task is created); at most `max_running` containers run at once; each
//!   run has a timeout. On start the relay sweeps: containers labelled with its instance id are
//!   removed and runs left unfinished by the previous process end `interrupted`.
//!
//! One run: a one-time agent key bound to the task is minted; the relay writes the first steps
//! of the transcript itself (`runner` events: starting, cloning), records how many (the run's
//! seq offset: the container agent's event n is stored as n + offset, see `agent_link`), and
//! starts the container with `flightdeck-agent run --once --clone URL --task ID`. The agent
//! connects with that key, gets the task, runs it, pushes `flightdeck/<taskId>`, and exits.
//! After the exit the relay appends the last steps (pushed, exited), ends a task the agent left
//! unfinished `failed` with the log tail, revokes the key and removes the container. The relay
//! writes events only before the agent's first and after the container is gone, so the two
//! writers never share a moment of the transcript.

pub mod docker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::api::OnceReport;
use flightdeck_protocol::event::RunnerStep;
use flightdeck_protocol::{RunnerInfo, RunnerState, Task, TaskEvent, TaskStatus};
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RunnerSettings;
use crate::db::{Db, RunState};
use crate::error::AppError;
use crate::state::AppState;

/// The label naming the relay instance that started a container.
pub const LABEL_RELAY: &str = "flightdeck.relay";
/// The label naming the task a container runs.
pub const LABEL_TASK: &str = "flightdeck.task";
/// Lines of the container's log kept for a failed task's `error`.
const LOG_TAIL_LINES: usize = 40;
/// Where the clone goes inside the container.
const WORK_DIR: &str = "/work";

/// A container to start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub network: Option<String>,
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    /// `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    /// `host:container[:ro]`.
    pub binds: Vec<String>,
}

/// A container's recent output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTail {
    pub stdout: String,
    pub stderr: String,
}

/// Why an engine call failed. `Unavailable` (the engine cannot be reached) is retryable.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container engine error: {0}")]
    Failed(String),
}

/// What the relay needs of a container engine.
pub trait Engine: Send + Sync + 'static {
    /// Creates and starts a container; returns its id.
    fn start<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<String, EngineError>>;
    /// Waits until the container has exited; returns its exit code.
    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<i64, EngineError>>;
    /// The last `lines` lines of its stdout and stderr.
    fn logs_tail<'a>(&'a self, id: &'a str, lines: usize) -> BoxFuture<'a, Result<LogTail, EngineError>>;
    /// Stops (kills) and removes it; a container already gone is not an error.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Ids of every container (running or not) with `label=value`.
    fn list_labelled<'a>(&'a self, label: &'a str, value: &'a str) -> BoxFuture<'a, Result<Vec<String>, EngineError>>;
}

/// The supervisor of container runs; one per relay process.
pub struct Runner {
    pub settings: RunnerSettings,
    engine: Arc<dyn Engine>,
    /// The relay's instance id (labels its containers).
    instance: String,
    /// The relay URL containers connect to.
    relay_url: String,
    wake: Notify,
    /// Wake-ups asked for so far ([`Runner::wake`]).
    wakes: AtomicU64,
    /// The wake-ups the supervisor's last finished look at the queue answered: every run queued
    /// before wake-up number `looked` has been started or left queued for want of a slot.
    looked: AtomicU64,
    running: AtomicUsize,
    /// Stops one run early (cancel): the task id's token.
    /// A std Mutex: nothing awaits while holding it.
    stops: Mutex<HashMap<String, CancellationToken>>,
}

impl Runner {
    pub fn new(settings: RunnerSettings, engine: Arc<dyn Engine>, instance: String, relay_url: String) -> Runner {
        Runner {
            settings,
            engine,
            instance,
            relay_url,
            wake: Notify::new(),
            wakes: AtomicU64::new(0),
            looked: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            stops: Mutex::new(HashMap::new()),
        }
    }

    /// A new run was queued (or a slot freed): look at the queue.
    pub fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The supervisor's figures for `/metrics`, in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let (wakes, looked, running) =
            (self.wakes.load(Ordering::SeqCst), self.looked.load(Ordering::SeqCst), self.running());
        format!(
            "# HELP flightdeck_runner_wakes_total Times the container-run queue was to be looked at (a run queued, a slot freed).\n\
             # TYPE flightdeck_runner_wakes_total counter\nflightdeck_runner_wakes_total {wakes}\n\
             # HELP flightdeck_runner_wakes_answered_total Of those, the ones the supervisor has answered (started runs or left them queued for want of a slot).\n\
             # TYPE flightdeck_runner_wakes_answered_total counter\nflightdeck_runner_wakes_answered_total {looked}\n\
             # HELP flightdeck_runner_running Containers running now.\n\
             # TYPE flightdeck_runner_running gauge\nflightdeck_runner_running {running}\n"
        )
    }

    /// Containers running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Stops the container of `task_id` (cancel); false when it has none running.
    pub fn stop(&self, task_id: &str) -> bool {
        match self.stops.lock().unwrap_or_else(|e| e.into_inner()).get(task_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The agent id a container run's agent connects as.
    pub fn agent_id_for(task_id: &str) -> String {
        let tail: String = task_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let start = tail.len().saturating_sub(12);
        format!("container-{}", &tail[start..])
    }
}

/// Sweeps what a previous process left (containers, unfinished runs), then starts the
/// supervisor loop. Called before the relay accepts connections.
pub async fn start(state: &AppState, runner: Arc<Runner>) -> anyhow::Result<()> {
    sweep(state, &runner).await?;
    let st = state.clone();
    state.tasks.spawn(supervise(st, runner));
    Ok(())
}

/// Removes every container labelled with this relay's instance and ends the runs the previous
/// process did not finish (`interrupted`): their containers, if any survived, are gone now.
async fn sweep(state: &AppState, runner: &Runner) -> anyhow::Result<()> {
    let ids = runner.engine.list_labelled(LABEL_RELAY, &runner.instance).await?;
    for id in &ids {
        runner.engine.remove(id).await?;
    }
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "removed containers left by a previous run of this relay");
    }
    state
        .db(|db, st| {
            for run in db.unfinished_runs()? {
                finish_run(
                    db,
                    st,
                    &run.user,
                    &run.task_id,
                    run.key_id.as_deref(),
                    Ending {
                        container_id: run.container_id.clone().unwrap_or_default(),
                        exit_code: None,
                        status_if_unfinished: TaskStatus::Interrupted,
                        error: Some("the relay restarted while the container ran; the container was removed".into()),
                        report: None,
                    },
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

async fn supervise(state: AppState, runner: Arc<Runner>) {
    loop {
        let answering = runner.wakes.load(Ordering::SeqCst);
        // Start as many queued runs as there are free slots.
        while runner.running() < runner.settings.max_running {
            let claimed = state.db(|db, _| Ok(db.claim_next_run()?)).await;
            let run = match claimed {
                Ok(Some(run)) => run,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the run queue");
                    break;
                }
            };
            runner.running.fetch_add(1, Ordering::Relaxed);
            let stop = CancellationToken::new();
            runner.stops.lock().unwrap_or_else(|e| e.into_inner()).insert(run.task_id.clone(), stop.clone());
            let (st, r) = (state.clone(), runner.clone());
            state.tasks.spawn(async move {
                let task_id = run.task_id.clone();
                if let Err(e) = run_container(&st, &r, &run.user, &run.task_id, &run.clone_url, stop).await {
                    tracing::warn!(task = %task_id, error = %e, "container run failed");
                }
                r.stops.lock().unwrap_or_else(|e| e.into_inner()).remove(&task_id);
                r.running.fetch_sub(1, Ordering::Relaxed);
                r.wake();
            });
        }
        runner.looked.fetch_max(answering, Ordering::SeqCst);
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = runner.wake.notified() => {}
        }
    }
}

/// How a run ended, for [`finish_run`].
struct Ending {
    container_id: String,
    exit_code: Option<i64>,
    /// The task's status when the agent did not end it.
    status_if_unfinished: TaskStatus,
    /// Why, when the run went wrong (shown as the task's `error` if the agent did not end it).
    error: Option<String>,
    report: Option<OnceReport>,
}

/// One run, from key to removal. Errors are recorded on the task; the returned error is for
/// the log only.
async fn run_container(
    state: &AppState,
    runner: &Runner,
    user: &str,
    task_id: &str,
    clone_url: &str,
    stop: CancellationToken,
) -> Result<(), AppError> {
    let settings = &runner.settings;
    let (u, id, url, image) = (user.to_string(), task_id.to_string(), clone_url.to_string(), settings.image.clone());
    // The key, the first steps of the transcript and the offset, before the container exists:
    // its agent can only connect after all three are stored.
    let prepared = state
        .db(move |db, st| {
            let Some(mut task) = db.task(&u, &id)? else { return Ok(None) };
            let key = db.create_task_key(&u, &id)?;
            let secrets = match st.secrets() {
                Some(secrets) => secrets.open_all(db, &u)?,
                None => Vec::new(),
            };
            let steps = vec![
                TaskEvent::Runner {
                    step: RunnerStep::Starting,
                    message: format!("starting a container from {image}"),
                    exit_code: None,
                },
                TaskEvent::Runner { step: RunnerStep::Cloning, message: format!("cloning {url}"), exit_code: None },
            ];
            let offset = append_relay_events(db, st, &u, &id, steps)?;
            db.set_run_seq_offset(&id, offset)?;
            task.runner =
                Some(RunnerInfo { container_id: String::new(), state: RunnerState::Starting, exit_code: None });
            let stored = db.upsert_task(&u, &task)?;
            st.publish_task(db, &u, &stored)?;
            Ok(Some((key, secrets, stored)))
        })
        .await?;
    let Some((key, secrets, task)) = prepared else { return Ok(()) };

    let spec = container_spec(runner, user, &task, clone_url, &key.secret, secrets);
    let container_id = match runner.engine.start(&spec).await {
        Ok(id) => id,
        Err(e) => {
            let ending = Ending {
                container_id: String::new(),
                exit_code: None,
                status_if_unfinished: TaskStatus::Failed,
                error: Some(format!("the container could not start: {e}")),
                report: None,
            };
            end_run(state, user, task_id, key.id.clone(), ending).await?;
            return Err(AppError::Internal(e.to_string()));
        }
    };
    {
        let (u, id, cid) = (user.to_string(), task_id.to_string(), container_id.clone());
        state
            .db(move |db, st| {
                db.set_run_container(&id, &cid)?;
                if let Some(mut task) = db.task(&u, &id)? {
                    task.runner = Some(RunnerInfo { container_id: cid, state: RunnerState::Running, exit_code: None });
                    let stored = db.upsert_task(&u, &task)?;
                    st.publish_task(db, &u, &stored)?;
                }
                Ok(())
            })
            .await?;
    }

    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let (exit_code, why) = tokio::select! {
        waited = runner.engine.wait(&container_id) => match waited {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(format!("lost the container: {e}"))),
        },
        _ = tokio::time::sleep(timeout) => (None, Some(format!("timed out after {} s", timeout.as_secs()))),
        _ = stop.cancelled() => (None, Some("cancelled: the container was stopped".to_string())),
        // The relay is going away: the container is left to the sweep of the next start.
        _ = state.shutdown.cancelled() => return Ok(()),
    };
    // An engine counts log entries, and a line written in pieces is several: ask for more and
    // keep the last lines of what they make.
    let mut logs = runner.engine.logs_tail(&container_id, LOG_TAIL_LINES * 4).await.unwrap_or_default();
    logs.stderr = last_lines(&logs.stderr, LOG_TAIL_LINES);
    if let Err(e) = runner.engine.remove(&container_id).await {
        tracing::warn!(container = %container_id, error = %e, "cannot remove a container");
    }
    let report = logs.stdout.lines().rev().find_map(|line| serde_json::from_str::<OnceReport>(line).ok());
    let cancelled = stop.is_cancelled();
    let error = why.or_else(|| {
        (exit_code != Some(0)).then(|| {
            let tail = logs.stderr.trim();
            format!("the container exited with code {}: {tail}", exit_code.unwrap_or(-1))
        })
    });
    let status_if_unfinished = if cancelled { TaskStatus::Cancelled } else { TaskStatus::Failed };
    let ending = Ending { container_id, exit_code, status_if_unfinished, error, report };
    end_run(state, user, task_id, key.id, ending).await
}

/// Records how a run ended (see [`finish_run`]) under the database lock.
async fn end_run(state: &AppState, user: &str, task_id: &str, key_id: String, ending: Ending) -> Result<(), AppError> {
    let (u, id) = (user.to_string(), task_id.to_string());
    state.db(move |db, st| finish_run(db, st, &u, &id, Some(&key_id), ending)).await
}

/// The container of one run.
fn container_spec(
    runner: &Runner,
    user: &str,
    task: &Task,
    clone_url: &str,
    key: &str,
    secrets: Vec<(String, String)>,
) -> ContainerSpec {
    let settings = &runner.settings;
    let mut env: BTreeMap<String, String> = settings.env.clone();
    // The owner's secrets win over the runner's environment; the relay's own variables win
    // over both (secret names cannot start with FLIGHTDECK_).
    env.extend(secrets);
    env.insert("FLIGHTDECK_AGENT_RELAY_URL".into(), runner.relay_url.clone());
    env.insert("FLIGHTDECK_AGENT_KEY".into(), key.to_string());
    env.insert("FLIGHTDECK_AGENT_AGENT_ID".into(), Runner::agent_id_for(&task.id));
    env.insert("FLIGHTDECK_AGENT_DATA_DIR".into(), "/var/lib/flightdeck".into());
    let labels = BTreeMap::from([
        (LABEL_RELAY.to_string(), runner.instance.clone()),
        (LABEL_TASK.to_string(), task.id.clone()),
        ("flightdeck.user".to_string(), user.to_string()),
    ]);
    let binds = match &settings.agent_binary {
        Some(path) => vec![format!("{}:/usr/local/bin/flightdeck-agent:ro", path.display())],
        None => Vec::new(),
    };
    ContainerSpec {
        name: format!("flightdeck-{}-{}", runner.instance, task.id),
        image: settings.image.clone(),
        cmd: [
            "run",
            "--once",
            "--clone",
            clone_url,
            "--task",
            &task.id,
            "--repo-name",
            &task.repo,
            "--work-dir",
            WORK_DIR,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env,
        labels,
        working_dir: Some(WORK_DIR.into()),
        network: settings.network.clone(),
        cpus: settings.cpus,
        memory_mb: settings.memory_mb,
        ulimits: settings.ulimits.iter().map(|(name, n)| (name.clone(), *n, *n)).collect(),
        binds,
    }
}

/// Records the end of a run: the last steps in the transcript, the task's end when the agent
/// did not record one, the container's exit on `task.runner`; revokes the key.
fn finish_run(
    db: &mut Db,
    st: &AppState,
    user: &str,
    task_id: &str,
    key_id: Option<&str>,
    ending: Ending,
) -> Result<(), AppError> {
    if let Some(key_id) = key_id {
        db.revoke_key(key_id)?;
    }
    db.set_run_state(task_id, RunState::Ended)?;
    let Some(mut task) = db.task(user, task_id)? else { return Ok(()) };
    let mut steps = Vec::new();
    if let Some(report) = &ending.report {
        if let (Some(branch), Some(commit)) = (&report.pushed_branch, &report.pushed_commit) {
            let short: String = commit.chars().take(12).collect();
            steps.push(TaskEvent::Runner {
                step: RunnerStep::Pushing,
                message: format!("pushed {branch} at {short}"),
                exit_code: None,
            });
        }
        if let Some(error) = &report.error {
            steps.push(TaskEvent::Runner { step: RunnerStep::Failed, message: error.clone(), exit_code: None });
        }
    }
    let unfinished = !task.status.is_terminal();
    if unfinished {
        let error = ending.error.clone().unwrap_or_else(|| "the container ended before its task".into());
        steps.push(TaskEvent::Error { error: error.clone() });
        steps.push(TaskEvent::Status { status: ending.status_if_unfinished, model: None, session_id: None });
        task.status = ending.status_if_unfinished;
        task.error = Some(error);
        task.finished_at = Some(Utc::now());
    }
    let ok = ending.exit_code == Some(0);
    let message = match (ending.exit_code, &ending.error) {
        (Some(code), _) => format!("the container exited with code {code} and was removed"),
        (None, Some(why)) => format!("the container was removed: {why}"),
        (None, None) => "the container was removed".to_string(),
    };
    steps.push(TaskEvent::Runner {
        step: if ok { RunnerStep::Exited } else { RunnerStep::Failed },
        message,
        exit_code: ending.exit_code,
    });
    append_relay_events(db, st, user, task_id, steps)?;
    task.runner = Some(RunnerInfo {
        container_id: ending.container_id,
        state: if ok { RunnerState::Exited } else { RunnerState::Failed },
        exit_code: ending.exit_code,
    });
    let stored = db.upsert_task(user, &task)?;
    st.publish_task(db, user, &stored)?;
    Ok(())
}

/// Appends events the relay writes itself after the task's last contiguous seq, and publishes
/// them like an agent's; returns the new last seq.
pub fn append_relay_events(
    db: &Db,
    st: &AppState,
    user: &str,
    task_id: &str,
    events: Vec<TaskEvent>,
) -> Result<u64, AppError> {
    let Some((_, last)) = db.task_repo_and_seq(user, task_id)? else { return Ok(0) };
    let numbered: Vec<(String, u64, TaskEvent)> =
        events.into_iter().zip(last + 1..).map(|(event, seq)| (task_id.to_string(), seq, event)).collect();
    let count = numbered.len() as u64;
    crate::agent_link::store_events(db, st, user, numbered)?;
    Ok(last + count)
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
