//! `RepoWatcher`: live, incremental and exact `RepoStatus` of a changing set of git working trees.
//!
//! - [`RepoWatcher::start`] returns a [`WatcherHandle`]; dropping it (or [`WatcherHandle::shutdown`])
//!   stops everything. Repos are added and removed at runtime ([`WatchCommand`]).
//! - Updates arrive on a broadcast channel ([`WatcherHandle::subscribe`]) as [`WatchEvent`]s, only
//!   when a repo's status really changed (`RepoStatus::same_state`).
//! - Each repo has its own worker thread (`worker`) that owns its git2 handles and its notify
//!   watcher: a huge repo never delays the others, and git2 never runs on async threads.
//! - `status`: the full scan and the per-path incremental re-check ([`RepoScanner`]).
//! - `discover`: `--scan DIR` ([`discover_repos`]).
//!
//! How changes are handled:
//! - the first write of a quiet repo is handled at once; writes behind it are debounced
//!   ([`WatchConfig::debounce`]); either way only the changed paths are re-examined against the
//!   cached per-path status;
//! - writes to ignored paths and inside `.git/objects` cause no work (on Linux ignored directories
//!   are not even watched: one non-recursive inotify watch per directory);
//! - `HEAD`, refs, `packed-refs`, the index, `FETCH_HEAD`, `MERGE_HEAD`, rebase state, config:
//!   a full rescan; also every [`WatchConfig::full_rescan_interval`] and on watcher overflow;
//! - a repo that disappears becomes `missing` (alert `repo_missing`) and is polled for its return;
//! - when the inotify watch limit is reached, the repo falls back to polling (said once).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flightdeck_protocol::names::{slugify, validate_repo};
use flightdeck_protocol::{Alert, RepoStatus, Timestamp};
use tokio::sync::broadcast;

use crate::store::Store;

mod discover;
mod status;
mod worker;

pub use discover::{discover_repos, DEFAULT_SCAN_DEPTH};
pub use status::{is_present, Counts, RepoScanner, ScanError};

use worker::{RepoIdentity, Worker, WorkerMsg};

/// Where time comes from, so tests can fix it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(chrono::Utc::now))
    }

    pub fn new(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// How the watcher behaves.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Changes are gathered for this long after the first one, then handled together; the
    /// first change of a repo quiet for this long is handled at once (leading edge).
    pub debounce: Duration,
    /// A full rescan of every repo this often, as a safety net.
    pub full_rescan_interval: Duration,
    /// How often a missing repo is looked for.
    pub missing_poll_interval: Duration,
    /// The interval of the polling fallback (inotify limit reached, or `force_poll`).
    pub poll_interval: Duration,
    /// Watch by polling instead of inotify/FSEvents (network file systems; tests).
    pub force_poll: bool,
    /// At most this many directories of one repo are watched natively (one inotify watch each);
    /// a bigger tree is watched by polling instead, as when the system's inotify limit is hit,
    /// so that one monorepo cannot use up the watches every other program needs.
    pub max_watched_dirs: usize,
    /// Above this many changed paths in one batch, a full rescan is cheaper than re-checks.
    pub max_incremental_paths: usize,
    /// Capacity of the event broadcast; a subscriber lagging further misses events (and should
    /// resynchronise from [`WatcherHandle::statuses`]).
    pub channel_capacity: usize,
    pub clock: Clock,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            debounce: Duration::from_millis(20),
            full_rescan_interval: Duration::from_secs(60),
            missing_poll_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(2),
            force_poll: false,
            max_watched_dirs: 65_536,
            max_incremental_paths: 256,
            channel_capacity: 1024,
            clock: Clock::system(),
        }
    }
}

/// A repo to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// The working tree (its root, where `.git` is).
    pub path: PathBuf,
    /// The slug; by default the directory name, made a valid slug and unique.
    pub name: Option<String>,
}

impl RepoSpec {
    pub fn new(path: impl Into<PathBuf>) -> RepoSpec {
        RepoSpec { path: path.into(), name: None }
    }

    pub fn named(path: impl Into<PathBuf>, name: impl Into<String>) -> RepoSpec {
        RepoSpec { path: path.into(), name: Some(name.into()) }
    }
}

/// A watched repo's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// Stable per path: a short hash of the canonical path.
    pub id: String,
    pub name: String,
    pub path: PathBuf,
}

/// What the watcher can be told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchCommand {
    AddRepo(RepoSpec),
    RemoveRepo {
        id: String,
    },
    /// Stop watching the file system (statuses stay as they are) until `Resume`.
    Pause,
    /// Watch again, with a full rescan of every repo.
    Resume,
    /// A full rescan of one repo, or of all.
    Rescan {
        id: Option<String>,
    },
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A repo's status changed (or was computed for the first time).
    Status(RepoStatus),
    /// A repo was removed from the watched set.
    Removed { id: String },
    /// An alert was raised (and saved in the store).
    Alert(Alert),
    /// Something the user should know that is not an alert (polling fallback, permissions).
    Notice { id: String, message: String },
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{path} is not the root of a git working tree (no .git there)")]
    NotARepo { path: PathBuf },
    #[error("invalid repo name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no watched repo has the id {id}")]
    UnknownRepo { id: String },
}

/// Counters of the work done, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    pub full_scans: u64,
    pub incremental_updates: u64,
    pub paths_rechecked: u64,
    /// Paths in file-system events that caused no work (ignored, `.git/objects`, locks).
    pub events_ignored: u64,
}

#[derive(Default)]
struct StatCounters {
    full_scans: AtomicU64,
    incremental_updates: AtomicU64,
    paths_rechecked: AtomicU64,
    events_ignored: AtomicU64,
}

/// What the handle and the workers share.
struct Shared {
    config: WatchConfig,
    store: Option<Store>,
    events: broadcast::Sender<WatchEvent>,
    /// A std `Mutex`: nothing awaits while holding it.
    statuses: Mutex<BTreeMap<String, RepoStatus>>,
    stats: StatCounters,
}

struct WorkerEntry {
    info: RepoInfo,
    tx: Sender<WorkerMsg>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Registry {
    repos: BTreeMap<String, WorkerEntry>,
    paused: bool,
}

/// Starts watchers; see the module docs.
pub struct RepoWatcher;

impl RepoWatcher {
    /// Starts a watcher with no repos. Statuses are saved in `store` (and alerts too) when given.
    /// Needs no async runtime: workers are threads and events go to a tokio broadcast channel,
    /// which both async (`recv().await`) and blocking (`blocking_recv()`) code can read.
    pub fn start(config: WatchConfig, store: Option<Store>) -> WatcherHandle {
        let (events, _) = broadcast::channel(config.channel_capacity.max(16));
        let shared = Arc::new(Shared {
            config,
            store,
            events,
            statuses: Mutex::new(BTreeMap::new()),
            stats: Default::default(),
        });
        WatcherHandle { shared, registry: Mutex::new(Registry::default()) }
    }
}

/// The running watcher. Dropping it stops every worker (without waiting for them);
/// [`WatcherHandle::shutdown`] stops them and waits.
pub struct WatcherHandle {
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
}

impl WatcherHandle {
    /// A receiver of every event from now on. Subscribe before adding repos to see their first
    /// status; [`WatcherHandle::statuses`] gives the current state at any time.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.shared.events.subscribe()
    }

    /// Carries out a command. `AddRepo` is better done with [`WatcherHandle::add_repo`], which
    /// returns the new repo's id.
    pub fn execute(&self, command: WatchCommand) -> Result<(), WatchError> {
        match command {
            WatchCommand::AddRepo(spec) => self.add_repo(spec).map(drop),
            WatchCommand::RemoveRepo { id } => self.remove_repo(&id),
            WatchCommand::Pause => {
                self.set_paused(true);
                Ok(())
            }
            WatchCommand::Resume => {
                self.set_paused(false);
                Ok(())
            }
            WatchCommand::Rescan { id } => self.rescan(id.as_deref()),
        }
    }

    /// Starts watching a working tree; adding the same path again returns the same repo.
    /// A path that does not exist is accepted and reported `missing` until it appears.
    pub fn add_repo(&self, spec: RepoSpec) -> Result<RepoInfo, WatchError> {
        let path = normalize(&spec.path);
        if path.exists() && !is_present(&path) {
            return Err(WatchError::NotARepo { path });
        }
        if let Some(name) = &spec.name {
            validate_repo(name).map_err(|e| WatchError::InvalidName { name: name.clone(), reason: e.to_string() })?;
        }
        let id = repo_id(&path);
        let mut registry = self.lock();
        if let Some(entry) = registry.repos.get(&id) {
            return Ok(entry.info.clone());
        }
        let base = spec.name.clone().unwrap_or_else(|| {
            slugify(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        });
        let taken = |name: &str| registry.repos.values().any(|e| e.info.name == name);
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let info = RepoInfo { id: id.clone(), name: name.clone(), path: path.clone() };
        let (tx, rx) = std::sync::mpsc::channel();
        let ident = RepoIdentity { id: id.clone(), name, root: path };
        let worker = Worker::new(self.shared.clone(), ident, tx.clone(), rx, registry.paused);
        let thread = std::thread::Builder::new()
            .name(format!("fd-watch-{}", info.name))
            .spawn(move || worker.run())
            .expect("cannot spawn a repo watcher thread");
        registry.repos.insert(id, WorkerEntry { info: info.clone(), tx, thread: Some(thread) });
        Ok(info)
    }

    /// Adds every working tree found under `dir` (down to `max_depth`), returning those added and
    /// those refused.
    pub fn add_discovered(&self, dir: &Path, max_depth: usize) -> Vec<Result<RepoInfo, WatchError>> {
        discover_repos(dir, max_depth).into_iter().map(|path| self.add_repo(RepoSpec::new(path))).collect()
    }

    /// Stops watching a repo: its saved status is deleted and `WatchEvent::Removed` follows its
    /// last status.
    pub fn remove_repo(&self, id: &str) -> Result<(), WatchError> {
        let entry = self.lock().repos.remove(id).ok_or_else(|| WatchError::UnknownRepo { id: id.to_string() })?;
        let _ = entry.tx.send(WorkerMsg::Stop { removed: true });
        Ok(())
    }

    pub fn pause(&self) {
        self.set_paused(true);
    }

    pub fn resume(&self) {
        self.set_paused(false);
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// A full rescan of one repo (by id) or of every repo.
    pub fn rescan(&self, id: Option<&str>) -> Result<(), WatchError> {
        let registry = self.lock();
        match id {
            Some(id) => {
                let entry = registry.repos.get(id).ok_or_else(|| WatchError::UnknownRepo { id: id.to_string() })?;
                let _ = entry.tx.send(WorkerMsg::Rescan);
            }
            None => {
                for entry in registry.repos.values() {
                    let _ = entry.tx.send(WorkerMsg::Rescan);
                }
            }
        }
        Ok(())
    }

    /// The watched repos.
    pub fn repos(&self) -> Vec<RepoInfo> {
        self.lock().repos.values().map(|e| e.info.clone()).collect()
    }

    /// The latest status of every watched repo that has one, by id (for a `full` git-status).
    pub fn statuses(&self) -> Vec<RepoStatus> {
        self.shared.statuses.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn stats(&self) -> WatchStats {
        let c = &self.shared.stats;
        WatchStats {
            full_scans: c.full_scans.load(Ordering::Relaxed),
            incremental_updates: c.incremental_updates.load(Ordering::Relaxed),
            paths_rechecked: c.paths_rechecked.load(Ordering::Relaxed),
            events_ignored: c.events_ignored.load(Ordering::Relaxed),
        }
    }

    /// Stops every worker and waits for them (each finishes the scan it is in, if any).
    /// Blocking: from async code, call it in `spawn_blocking`.
    pub fn shutdown(self) {
        let threads: Vec<JoinHandle<()>> = {
            let mut registry = self.lock();
            registry
                .repos
                .values_mut()
                .filter_map(|entry| {
                    let _ = entry.tx.send(WorkerMsg::Stop { removed: false });
                    entry.thread.take()
                })
                .collect()
        };
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn set_paused(&self, paused: bool) {
        let mut registry = self.lock();
        registry.paused = paused;
        for entry in registry.repos.values() {
            let _ = entry.tx.send(if paused { WorkerMsg::Pause } else { WorkerMsg::Resume });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        for entry in self.lock().repos.values() {
            let _ = entry.tx.send(WorkerMsg::Stop { removed: false });
        }
    }
}

/// The canonical path when it exists (symlinks resolved), else the absolute path as given.
fn normalize(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// A repo's id: 16 hex digits of the FNV-1a hash of its canonical path. Stable across runs and
/// versions (unlike `std`'s hasher), so saved statuses keep their id.
pub fn repo_id(path: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}
