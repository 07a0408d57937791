//! One repo's worker: a dedicated thread that owns the repo's git2 handles and notify watcher.
//!
//! A thread per repo, not tasks on the async runtime: git2 calls block (a full status of a
//! 100k-file tree takes a few hundred milliseconds) and `git2::Repository` is not `Sync`, so each
//! repo gets its own thread and a huge repo never delays the others. The loop waits on one
//! channel that carries file-system events (sent by notify's handler) and commands, with a
//! timeout for the next deadline (debounce window, missing-repo poll, safety-net rescan).

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use flightdeck_protocol::{Alert, AlertKind, RepoState, RepoStatus, Severity};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::status::{is_present, RepoScanner, ScanError};
use super::{Shared, WatchEvent};

/// What a worker receives: file-system events from notify and commands from the handle.
pub(crate) enum WorkerMsg {
    Fs(notify::Result<notify::Event>),
    Rescan,
    Pause,
    Resume,
    /// Stop the worker; `removed` when the repo was removed from the watched set (its saved
    /// status is deleted and `WatchEvent::Removed` is sent after its last status).
    Stop {
        removed: bool,
    },
}

/// The identity of a watched repo.
#[derive(Debug, Clone)]
pub(crate) struct RepoIdentity {
    pub id: String,
    pub name: String,
    pub root: PathBuf,
}

enum FsWatch {
    /// inotify (or the platform's watcher). On Linux one non-recursive watch per directory, so
    /// ignored directories (`target/`, `node_modules/`) and `.git/objects` are never watched.
    Native { watcher: RecommendedWatcher, dirs: HashSet<PathBuf> },
    /// The fallback when the inotify watch limit is reached: a full status every
    /// `poll_interval`. Not notify's `PollWatcher`: it compares modification times in whole
    /// seconds (notify 8.2), so a save in the same second as the previous poll is never seen,
    /// and its exact mode hashes every file at every poll. A git2 status stats every file too,
    /// with nanosecond times and sizes, so it is the exact poll at the same cost.
    Poll,
}

/// Work gathered during the debounce window.
#[derive(Default)]
struct Pending {
    /// When the window opened: it is handled `debounce` after this (at once for the first
    /// change of a quiet repo, see [`Worker::on_fs`]).
    since: Option<Instant>,
    full: bool,
    /// Re-walk the directory tree to add missing watches (after an overflow or watcher error).
    rewalk: bool,
    paths: BTreeSet<String>,
}

/// Conditions that raise an alert when they start holding.
#[derive(Debug, Clone, Copy, Default)]
struct AlertState {
    diverged: bool,
    conflict: bool,
    missing: bool,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    ident: RepoIdentity,
    tx: Sender<WorkerMsg>,
    rx: Receiver<WorkerMsg>,
    scanner: Option<RepoScanner>,
    fs: Option<FsWatch>,
    paused: bool,
    last: Option<RepoStatus>,
    alerts: AlertState,
    pending: Pending,
    next_full: Instant,
    next_missing_poll: Option<Instant>,
    /// When changes were last handled: a change arriving later than `debounce` after it finds
    /// the repo quiet and is handled at once (leading edge); one arriving sooner waits out the
    /// window with the ones behind it (a storm is coalesced).
    last_handled: Option<Instant>,
    /// A command taken while gathering file-system events, handled next.
    deferred: Option<WorkerMsg>,
    /// Notices already said, so each is said once.
    said: HashSet<String>,
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ident: RepoIdentity,
        tx: Sender<WorkerMsg>,
        rx: Receiver<WorkerMsg>,
        paused: bool,
    ) -> Worker {
        let next_full = Instant::now() + shared.config.full_rescan_interval;
        Worker {
            shared,
            ident,
            tx,
            rx,
            scanner: None,
            fs: None,
            paused,
            last: None,
            alerts: AlertState::default(),
            pending: Pending::default(),
            next_full,
            next_missing_poll: None,
            last_handled: None,
            deferred: None,
            said: HashSet::new(),
        }
    }

    pub(crate) fn run(mut self) {
        self.seed_alerts();
        self.connect();
        loop {
            let msg = match (self.deferred.take(), self.next_deadline()) {
                (Some(msg), _) => Ok(msg),
                (None, Some(deadline)) => self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
                (None, None) => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(WorkerMsg::Fs(event)) => self.on_fs(event),
                Ok(WorkerMsg::Rescan) => {
                    if self.scanner.is_some() {
                        self.full_refresh();
                    } else {
                        self.connect();
                    }
                }
                Ok(WorkerMsg::Pause) => {
                    self.paused = true;
                    self.fs = None;
                    self.pending = Pending::default();
                }
                Ok(WorkerMsg::Resume) => {
                    if self.paused {
                        self.paused = false;
                        if self.scanner.is_some() {
                            self.start_watching();
                            self.full_refresh();
                        } else {
                            self.connect();
                        }
                    }
                }
                Ok(WorkerMsg::Stop { removed }) => {
                    self.fs = None;
                    if removed {
                        if let Some(store) = &self.shared.store {
                            if let Err(e) = store.delete_repo_status(&self.ident.id) {
                                tracing::warn!(repo = %self.ident.name, "cannot delete the saved repo status: {e}");
                            }
                        }
                        self.shared.statuses.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.ident.id);
                        let _ = self.shared.events.send(WatchEvent::Removed { id: self.ident.id.clone() });
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // File-system events that came together (an editor's save is several) are taken
            // before a leading-edge status is made, so it sees the whole save.
            while self.pending.since.is_some() {
                match self.rx.try_recv() {
                    Ok(WorkerMsg::Fs(event)) => self.on_fs(event),
                    Ok(other) => {
                        // Not an fs event: the loop takes it next.
                        self.deferred = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.on_deadlines();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let debounce = self.pending.since.map(|since| since + self.shared.config.debounce);
        if self.scanner.is_none() {
            return if self.paused { None } else { self.next_missing_poll };
        }
        if self.paused {
            return debounce;
        }
        Some(debounce.map_or(self.next_full, |d| d.min(self.next_full)))
    }

    fn on_deadlines(&mut self) {
        let now = Instant::now();
        if self.scanner.is_none() {
            if !self.paused && self.next_missing_poll.is_some_and(|t| t <= now) {
                self.connect();
            }
            return;
        }
        if self.pending.since.is_some_and(|since| since + self.shared.config.debounce <= now) {
            self.process_pending();
        } else if !self.paused && self.next_full <= now {
            self.full_refresh();
        }
    }

    /// Opens the repo, starts watching it and publishes its full status; or marks it missing.
    fn connect(&mut self) {
        match RepoScanner::open(&self.ident.root, &self.ident.id, &self.ident.name) {
            Ok(scanner) => {
                self.scanner = Some(scanner);
                self.next_missing_poll = None;
                if !self.paused {
                    self.start_watching();
                }
                self.full_refresh();
            }
            Err(ScanError::Missing(_)) => self.go_missing(),
            Err(e) => {
                // Present but unusable (bare, unreadable): say so and retry like a missing repo.
                self.notice(e.to_string());
                self.scanner = None;
                self.fs = None;
                self.next_missing_poll = Some(Instant::now() + self.shared.config.missing_poll_interval);
            }
        }
    }

    fn go_missing(&mut self) {
        self.scanner = None;
        self.fs = None;
        self.pending = Pending::default();
        self.next_missing_poll = Some(Instant::now() + self.shared.config.missing_poll_interval);
        let mut status = RepoStatus::new(self.ident.id.clone(), self.ident.name.clone());
        status.path = Some(self.ident.root.display().to_string());
        status.status = RepoState::Missing;
        status.updated_at = Some(self.shared.config.clock.now());
        self.publish(status);
    }

    fn full_refresh(&mut self) {
        self.pending = Pending::default();
        let interval =
            if self.polling() { self.shared.config.poll_interval } else { self.shared.config.full_rescan_interval };
        self.next_full = Instant::now() + interval;
        self.watch_stash_log();
        let now = self.shared.config.clock.now();
        let Some(scanner) = self.scanner.as_mut() else { return };
        self.shared.stats.full_scans.fetch_add(1, Ordering::Relaxed);
        let result = scanner.full_scan(now);
        self.publish_result(result);
    }

    fn publish_result(&mut self, result: Result<RepoStatus, ScanError>) {
        match result {
            Ok(status) => self.publish(status),
            Err(ScanError::Missing(_)) => self.go_missing(),
            Err(e) => self.notice(e.to_string()),
        }
    }

    fn process_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.last_handled = Some(Instant::now());
        if !is_present(&self.ident.root) {
            self.go_missing();
            return;
        }
        if self.scanner.is_none() {
            return;
        }
        if pending.rewalk {
            self.rewalk();
        } else {
            self.update_dir_watches(&pending.paths);
        }
        let paths = minimal_paths(&pending.paths);
        if pending.full || paths.len() > self.shared.config.max_incremental_paths {
            self.full_refresh();
            return;
        }
        if paths.is_empty() {
            return;
        }
        let now = self.shared.config.clock.now();
        let Some(scanner) = self.scanner.as_mut() else { return };
        self.shared.stats.incremental_updates.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.paths_rechecked.fetch_add(paths.len() as u64, Ordering::Relaxed);
        let result = scanner.update_paths(&paths, now);
        self.publish_result(result);
    }

    fn on_fs(&mut self, event: notify::Result<notify::Event>) {
        if self.scanner.is_none() || self.paused {
            return;
        }
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    self.fall_back_to_polling();
                } else {
                    tracing::debug!(repo = %self.ident.name, "watcher error, rescanning: {e}");
                    self.pending.full = true;
                    self.pending.rewalk = true;
                    self.pending.since.get_or_insert_with(Instant::now);
                }
                return;
            }
        };
        if event.need_rescan() {
            self.pending.full = true;
            self.pending.rewalk = true;
            self.pending.since.get_or_insert_with(Instant::now);
            return;
        }
        // Reads (ours included: a status opens files) are not changes.
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return;
            }
        }
        let mut relevant = false;
        for path in &event.paths {
            match self.classify(path) {
                Class::Ignore => {
                    self.shared.stats.events_ignored.fetch_add(1, Ordering::Relaxed);
                }
                Class::Full => {
                    self.pending.full = true;
                    relevant = true;
                }
                Class::Worktree(rel) => {
                    self.pending.paths.insert(rel);
                    relevant = true;
                }
            }
        }
        if relevant && self.pending.since.is_none() {
            let now = Instant::now();
            let debounce = self.shared.config.debounce;
            let quiet = self.last_handled.is_none_or(|at| now.saturating_duration_since(at) >= debounce);
            // A quiet repo's first change is handled at once: its window counts as already over.
            self.pending.since = Some(if quiet { now.checked_sub(debounce).unwrap_or(now) } else { now });
        }
    }

    fn classify(&self, path: &Path) -> Class {
        let Some(scanner) = self.scanner.as_ref() else { return Class::Ignore };
        for git_dir in [scanner.git_dir(), scanner.common_dir()] {
            if let Ok(rel) = path.strip_prefix(git_dir) {
                return classify_git_path(rel);
            }
        }
        let workdir = scanner.workdir();
        let Ok(rel) = path.strip_prefix(workdir) else { return Class::Ignore };
        if rel.as_os_str().is_empty() {
            // The root itself was deleted or moved; the existence check decides.
            return Class::Full;
        }
        if rel.components().any(|c| c == Component::Normal(".git".as_ref())) {
            // Inside a nested repo's or a submodule's git directory.
            return Class::Ignore;
        }
        let rel = rel_string(rel);
        if scanner.is_ignored(&rel) {
            return Class::Ignore;
        }
        // Rules that change the status of other paths: which files are ignored, how content is
        // compared, where submodules are.
        if rel.rsplit('/').next().is_some_and(|name| RULE_FILES.contains(&name)) {
            return Class::Full;
        }
        Class::Worktree(rel)
    }

    // ---- watching ----

    fn start_watching(&mut self) {
        self.fs = None;
        if self.shared.config.force_poll {
            self.start_polling("polling is forced by the configuration");
            return;
        }
        let tx = self.tx.clone();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(WorkerMsg::Fs(event));
        });
        let watcher = match watcher {
            Ok(watcher) => watcher,
            Err(e) => {
                self.start_polling(&format!("the file watcher could not start ({e})"));
                return;
            }
        };
        self.fs = Some(FsWatch::Native { watcher, dirs: HashSet::new() });
        let Some(scanner) = self.scanner.as_ref() else { return };
        let git_dir = scanner.git_dir().to_path_buf();
        let common_dir = scanner.common_dir().to_path_buf();
        let workdir = scanner.workdir().to_path_buf();
        let mut targets = vec![(git_dir.clone(), RecursiveMode::NonRecursive)];
        if common_dir != git_dir {
            targets.push((common_dir.clone(), RecursiveMode::NonRecursive));
        }
        targets.push((common_dir.join("refs"), RecursiveMode::Recursive));
        for (path, mode) in targets {
            if let Err(e) = self.watch_path(&path, mode) {
                if self.handle_watch_error(&path, e) {
                    return;
                }
            }
        }
        self.watch_stash_log();
        if cfg!(target_os = "linux") {
            self.watch_tree(&workdir);
        } else {
            // FSEvents and ReadDirectoryChangesW watch a tree cheaply; ignored paths are filtered
            // when events arrive.
            if let Err(e) = self.watch_path(&workdir, RecursiveMode::Recursive) {
                self.handle_watch_error(&workdir, e);
            }
        }
    }

    /// Dropping a stash that is not the newest rewrites only the `refs/stash` reflog, so the
    /// directory holding it is watched too (once it exists: full rescans try again).
    fn watch_stash_log(&mut self) {
        let Some(scanner) = self.scanner.as_ref() else { return };
        let logs = scanner.common_dir().join("logs/refs");
        let known = matches!(&self.fs, Some(FsWatch::Native { dirs, .. }) if dirs.contains(&logs));
        if !known && logs.is_dir() {
            if let Err(e) = self.watch_path(&logs, RecursiveMode::NonRecursive) {
                self.handle_watch_error(&logs, e);
            }
        }
    }

    fn watch_path(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        match &mut self.fs {
            Some(FsWatch::Native { watcher, dirs }) => {
                if dirs.len() >= self.shared.config.max_watched_dirs {
                    return Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(path.to_path_buf()));
                }
                watcher.watch(path, mode)?;
                dirs.insert(path.to_path_buf());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Returns true when watching cannot go on natively (the fallback was started).
    fn handle_watch_error(&mut self, path: &Path, e: notify::Error) -> bool {
        match &e.kind {
            notify::ErrorKind::MaxFilesWatch => {
                self.fall_back_to_polling();
                true
            }
            notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                self.fall_back_to_polling();
                true
            }
            notify::ErrorKind::PathNotFound => false,
            _ => {
                self.notice(format!("cannot watch {}: {e}", path.display()));
                false
            }
        }
    }

    /// Adds a non-recursive watch on `start` and every directory below it that is neither
    /// ignored, nor `.git`, nor a nested repo or submodule.
    fn watch_tree(&mut self, start: &Path) {
        let mut stack = vec![start.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Some(scanner) = self.scanner.as_ref() else { return };
            let workdir = scanner.workdir().to_path_buf();
            if dir != workdir {
                if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
                    continue;
                }
                let Ok(rel) = dir.strip_prefix(&workdir) else { continue };
                if scanner.is_ignored(&rel_string(rel)) {
                    continue;
                }
            }
            let already = matches!(&self.fs, Some(FsWatch::Native { dirs, .. }) if dirs.contains(&dir));
            if !already {
                if let Err(e) = self.watch_path(&dir, RecursiveMode::NonRecursive) {
                    if self.handle_watch_error(&dir, e) {
                        return;
                    }
                    continue;
                }
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        self.notice(format!("cannot read {}: permission denied", dir.display()));
                    }
                    continue;
                }
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) && entry.file_name() != ".git" {
                    stack.push(entry.path());
                }
            }
        }
    }

    /// Keeps per-directory watches in step with created, deleted and renamed directories.
    fn update_dir_watches(&mut self, changed: &BTreeSet<String>) {
        if !cfg!(target_os = "linux") || !matches!(self.fs, Some(FsWatch::Native { .. })) {
            return;
        }
        let Some(workdir) = self.scanner.as_ref().map(|s| s.workdir().to_path_buf()) else { return };
        for rel in changed {
            let abs = workdir.join(rel);
            match std::fs::symlink_metadata(&abs) {
                Ok(meta) if meta.is_dir() => {
                    let known = matches!(&self.fs, Some(FsWatch::Native { dirs, .. }) if dirs.contains(&abs));
                    if !known {
                        self.watch_tree(&abs);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // Gone (deleted or renamed away): forget its watches so that a directory
                    // created again at the same path is watched again.
                    if let Some(FsWatch::Native { watcher, dirs }) = &mut self.fs {
                        let gone: Vec<PathBuf> = dirs.iter().filter(|d| d.starts_with(&abs)).cloned().collect();
                        for dir in gone {
                            let _ = watcher.unwatch(&dir);
                            dirs.remove(&dir);
                        }
                    }
                }
            }
        }
    }

    fn rewalk(&mut self) {
        if !cfg!(target_os = "linux") || !matches!(self.fs, Some(FsWatch::Native { .. })) {
            return;
        }
        if let Some(workdir) = self.scanner.as_ref().map(|s| s.workdir().to_path_buf()) {
            self.watch_tree(&workdir);
        }
    }

    fn fall_back_to_polling(&mut self) {
        if matches!(self.fs, Some(FsWatch::Poll)) {
            return;
        }
        self.start_polling(
            "too many directories to watch (inotify's fs.inotify.max_user_watches or the watcher's max_watched_dirs)",
        );
        self.pending.full = true;
        self.pending.since.get_or_insert_with(Instant::now);
    }

    fn start_polling(&mut self, why: &str) {
        self.fs = Some(FsWatch::Poll);
        let interval = self.shared.config.poll_interval;
        self.next_full = self.next_full.min(Instant::now() + interval);
        self.notice(format!(
            "{why}: watching {} by polling every {} ms",
            self.ident.root.display(),
            interval.as_millis()
        ));
    }

    fn polling(&self) -> bool {
        matches!(self.fs, Some(FsWatch::Poll))
    }

    // ---- publishing ----

    fn notice(&mut self, message: String) {
        if self.said.insert(message.clone()) {
            tracing::info!(repo = %self.ident.name, "{message}");
            let _ = self.shared.events.send(WatchEvent::Notice { id: self.ident.id.clone(), message });
        }
    }

    /// Saves and sends `status` when it differs from the last one (ignoring `updatedAt`), then
    /// raises the alerts whose condition just started.
    fn publish(&mut self, status: RepoStatus) {
        if self.last.as_ref().is_some_and(|last| last.same_state(&status)) {
            return;
        }
        if let Some(store) = &self.shared.store {
            // This is the repo's own blocking thread, so SQLite is fine here.
            if let Err(e) = store.save_repo_status(&status) {
                tracing::warn!(repo = %self.ident.name, "cannot save the repo status: {e}");
            }
        }
        self.shared.statuses.lock().unwrap_or_else(|e| e.into_inner()).insert(status.id.clone(), status.clone());
        let _ = self.shared.events.send(WatchEvent::Status(status.clone()));
        self.raise_alerts(&status);
        self.last = Some(status);
    }

    /// Starts the alert conditions from the last saved status, so that an agent restart does not
    /// raise again an alert for an occurrence that was already reported.
    fn seed_alerts(&mut self) {
        let Some(store) = &self.shared.store else { return };
        if let Ok(Some(saved)) = store.repo_status(&self.ident.id) {
            self.alerts = conditions(&saved, AlertState::default());
        }
    }

    fn raise_alerts(&mut self, status: &RepoStatus) {
        let now = conditions(status, self.alerts);
        let before = self.alerts;
        self.alerts = now;
        let name = &self.ident.name;
        let mut raise = Vec::new();
        if now.missing && !before.missing {
            raise.push((
                AlertKind::RepoMissing,
                Severity::Critical,
                format!("Repo {name} is missing: {} no longer holds a git working tree", self.ident.root.display()),
            ));
        }
        if now.diverged && !before.diverged {
            let upstream = status.upstream.as_deref().unwrap_or("its upstream");
            raise.push((
                AlertKind::RepoDiverged,
                Severity::Warning,
                format!(
                    "Repo {name} has diverged from {upstream}: {} ahead, {} behind",
                    status.ahead_count, status.behind_count
                ),
            ));
        }
        if now.conflict && !before.conflict {
            let during = status.operation.map(|op| format!(" during a {}", operation_name(op))).unwrap_or_default();
            raise.push((
                AlertKind::RepoConflict,
                Severity::Warning,
                format!("Repo {name} has {} conflicted file(s){during}", status.conflicted_count),
            ));
        }
        for (kind, severity, message) in raise {
            let alert = Alert {
                id: uuid::Uuid::now_v7().to_string(),
                severity,
                kind,
                repo: Some(name.clone()),
                task_id: None,
                agent_id: None,
                message,
                created_at: status.updated_at.unwrap_or_else(|| self.shared.config.clock.now()),
                acknowledged: false,
                acknowledged_at: None,
            };
            if let Some(store) = &self.shared.store {
                if let Err(e) = store.insert_alert(&alert) {
                    tracing::warn!(repo = %name, "cannot save an alert: {e}");
                }
            }
            let _ = self.shared.events.send(WatchEvent::Alert(alert));
        }
    }
}

/// The alert conditions of a status. While a repo is missing nothing is known about divergence
/// or conflicts, so those keep their previous value.
fn conditions(status: &RepoStatus, previous: AlertState) -> AlertState {
    if status.status == RepoState::Missing {
        return AlertState { missing: true, ..previous };
    }
    AlertState {
        missing: false,
        diverged: status.ahead_count > 0 && status.behind_count > 0,
        conflict: status.conflicted_count > 0,
    }
}

fn operation_name(op: flightdeck_protocol::RepoOperation) -> &'static str {
    use flightdeck_protocol::RepoOperation::*;
    match op {
        Rebase => "rebase",
        Merge => "merge",
        CherryPick => "cherry-pick",
        Revert => "revert",
        Bisect => "bisect",
    }
}

const RULE_FILES: &[&str] = &[".gitignore", ".gitattributes", ".gitmodules"];

enum Class {
    Ignore,
    Full,
    Worktree(String),
}

/// What a change inside the git directory means.
fn classify_git_path(rel: &Path) -> Class {
    let mut components = rel.components();
    let first = match components.next() {
        Some(Component::Normal(first)) => first.to_string_lossy(),
        // The git directory itself (deleted, moved): let the existence check decide.
        _ => return Class::Full,
    };
    let name = rel.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // Objects and logs change with every commit but say nothing a ref or the index does not;
    // lock files are followed by a rename onto the real file, which is what counts.
    const QUIET: &[&str] = &[
        "objects",
        "logs",
        "hooks",
        "lfs",
        "modules",
        "worktrees",
        "COMMIT_EDITMSG",
        "description",
        "gc.pid",
        "gc.log",
    ];
    if rel == Path::new("logs/refs/stash") {
        return Class::Full;
    }
    if QUIET.contains(&first.as_ref()) || name.ends_with(".lock") {
        return Class::Ignore;
    }
    // HEAD, refs/**, packed-refs, index, FETCH_HEAD, ORIG_HEAD, MERGE_HEAD, CHERRY_PICK_HEAD,
    // REVERT_HEAD, BISECT_*, rebase-merge/, rebase-apply/, sequencer/, config, info/exclude.
    Class::Full
}

fn rel_string(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    if std::path::MAIN_SEPARATOR == '/' {
        s.into_owned()
    } else {
        s.replace(std::path::MAIN_SEPARATOR, "/")
    }
}

/// The changed paths without those already covered by a changed parent directory.
fn minimal_paths(paths: &BTreeSet<String>) -> Vec<String> {
    let mut kept: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for path in paths {
        let covered = path.match_indices('/').any(|(i, _)| kept.contains(&path[..i]));
        if !covered {
            kept.insert(path);
            out.push(path.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_table() {
        let cases = [
            ("HEAD", true),
            ("index", true),
            ("packed-refs", true),
            ("FETCH_HEAD", true),
            ("MERGE_HEAD", true),
            ("refs/heads/main", true),
            ("rebase-merge/done", true),
            ("index.lock", false),
            ("refs/heads/main.lock", false),
            ("objects/ab/cdef", false),
            ("logs/HEAD", false),
            ("logs/refs/heads/main", false),
            ("logs/refs/stash", true),
            ("COMMIT_EDITMSG", false),
        ];
        for (path, full) in cases {
            let got = matches!(classify_git_path(Path::new(path)), Class::Full);
            assert_eq!(got, full, "{path}");
        }
    }

    #[test]
    fn minimal_paths_drops_children_only() {
        let set: BTreeSet<String> = ["a", "a-b", "a/b", "a/b/c", "b/x", "b/y"].iter().map(|s| s.to_string()).collect();
        assert_eq!(minimal_paths(&set), vec!["a", "a-b", "b/x", "b/y"]);
    }
}
