//! Container runs (SPEC 10): the relay starts a container with the headless agent for a task,
//! follows it to its end, and removes it.
//!
//! - [`Engine`]: what the relay needs of a container engine (start with files copied in, wait,
//!   log tail, copy files out, remove, list by label). [`docker::DockerEngine`] implements it with the Docker Engine API, which
//!   Podman serves too. A Kubernetes Job engine would be a second implementation of the same
//!   trait (see ARCHITECTURE.md).
//! - [`Runner`]: the handle the relay holds; its supervisor loop is [`crate::container_runs`].
//!   The queue of runs is the `runs` table (bounded by
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

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RunnerSettings;

/// The label naming the relay instance that started a container.
pub const LABEL_RELAY: &str = "flightdeck.relay";
/// The label naming the task a container runs.
pub const LABEL_TASK: &str = "flightdeck.task";

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
    /// Tar archives unpacked into the container before it starts: `(directory, archive)`.
    pub uploads: Vec<(String, Vec<u8>)>,
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
    /// A tar archive of `path` in the (running or exited) container, `None` when there is no
    /// such path; [`EngineError::Failed`] when the archive is larger than `max_bytes`.
    fn copy_out<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, EngineError>>;
    /// Stops (kills) and removes it; a container already gone is not an error.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Ids of every container (running or not) with `label=value`.
    fn list_labelled<'a>(&'a self, label: &'a str, value: &'a str) -> BoxFuture<'a, Result<Vec<String>, EngineError>>;
}

/// Container runs of this relay process: settings, engine, the running count, the stop tokens.
///
/// The fields are crate-visible for the supervisor loop in [`crate::container_runs`], which
/// owns them; the rest of the relay uses the methods.
pub struct Runner {
    pub settings: RunnerSettings,
    pub(crate) engine: Arc<dyn Engine>,
    /// The relay's instance id (labels its containers).
    pub(crate) instance: String,
    /// The relay URL containers connect to.
    pub(crate) relay_url: String,
    pub(crate) wake: Notify,
    /// Wake-ups asked for so far ([`Runner::wake`]).
    pub(crate) wakes: AtomicU64,
    /// The wake-ups the supervisor's last finished look at the queue answered: every run queued
    /// before wake-up number `looked` has been started or left queued for want of a slot.
    pub(crate) looked: AtomicU64,
    pub(crate) running: AtomicUsize,
    /// Stops one run early (cancel): the task id's token.
    /// A std Mutex: nothing awaits while holding it.
    pub(crate) stops: Mutex<HashMap<String, CancellationToken>>,
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
