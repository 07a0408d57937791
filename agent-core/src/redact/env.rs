//! `.env` files and the per-repo cache of redactors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use flightdeck_protocol::{Alert, Task, TaskEvent};

use super::Redactor;

/// The `(name, value)` pairs of the `.env` and `.env.*` files at the root of `repo`.
pub fn env_file_values(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in env_files(repo) {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(parse_env(&text)),
            Err(err) => tracing::debug!(path = %path.display(), %err, "cannot read an env file"),
        }
    }
    out
}

fn env_files(repo: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repo) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name == ".env" || name.starts_with(".env.")) && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// `NAME=value` lines (with an optional `export `, quotes removed, `#` comments skipped).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else { continue };
        let name = name.trim();
        let mut value = value.trim();
        if let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
            value = value[1..].split(quote).next().unwrap_or_default();
        } else if let Some((before, _comment)) = value.split_once(" #") {
            value = before.trim_end();
        }
        if !name.is_empty() && !value.is_empty() {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// One [`Redactor`] per repo slug, built from the repo's `.env` files and shared as an
/// `Arc<Redactor>` (one per task's [`super::StreamRedactor`]).
///
/// A call is cheap: a cached redactor is returned as is for [`RepoRedactors::RECHECK`]; after
/// that, one `read_dir` and a `stat` per `.env` file say whether the files changed, and only a
/// change reads them again and recompiles. [`RepoRedactors::invalidate`] (for a watcher that
/// saw a `.env` file change) makes the next call rebuild at once. The first call for a repo
/// and every rebuild read files: call this off the async threads.
pub struct RepoRedactors {
    resolve: crate::runner::RepoResolver,
    // A std Mutex: nothing awaits while holding it, and nothing is read or compiled under it.
    cache: Mutex<HashMap<String, CachedRedactor>>,
}

struct CachedRedactor {
    redactor: Arc<Redactor>,
    fingerprint: Fingerprint,
    checked: Instant,
}

/// The repo's path and, for each `.env` file, its path, modification time and length.
type Fingerprint = Option<(PathBuf, Vec<(PathBuf, Option<SystemTime>, u64)>)>;

/// The redactor of repos without a path (built-in kinds only), shared.
static BUILTIN_ONLY: LazyLock<Arc<Redactor>> = LazyLock::new(|| Arc::new(Redactor::new()));

impl RepoRedactors {
    /// How long a cached redactor is used without looking at the files again.
    pub const RECHECK: Duration = Duration::from_secs(5);

    pub fn new(resolve: crate::runner::RepoResolver) -> RepoRedactors {
        RepoRedactors { resolve, cache: Mutex::default() }
    }

    /// The redactor of a repo (built-in kinds only for an unknown repo).
    pub fn for_repo(&self, slug: &str) -> Arc<Redactor> {
        let now = Instant::now();
        let previous = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get_mut(slug) {
                Some(cached) if now.duration_since(cached.checked) < Self::RECHECK => {
                    return cached.redactor.clone();
                }
                Some(cached) => Some((cached.redactor.clone(), cached.fingerprint.clone())),
                None => None,
            }
        };
        let fingerprint = (self.resolve)(slug).map(|path| {
            let files = env_fingerprint(&path);
            (path, files)
        });
        let redactor = match previous {
            Some((redactor, old)) if old == fingerprint => redactor,
            _ => match &fingerprint {
                Some((path, files)) if !files.is_empty() => Arc::new(Redactor::for_repo(path)),
                _ => BUILTIN_ONLY.clone(),
            },
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(slug.to_string(), CachedRedactor { redactor: redactor.clone(), fingerprint, checked: now });
        redactor
    }

    /// Forgets the cached redactor of `slug`: the next call reads its `.env` files again.
    pub fn invalidate(&self, slug: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(slug);
    }

    /// Forgets every cached redactor.
    pub fn invalidate_all(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Redacts `text` for the repo `slug`.
    pub fn redact(&self, slug: &str, text: &str) -> String {
        self.for_repo(slug).redact(text).into_owned()
    }

    /// Redacts a task's free text with its repo's redactor.
    pub fn redact_task(&self, task: &Task) -> Task {
        self.for_repo(&task.repo).redact_task(task)
    }

    /// Redacts an alert's message with its repo's redactor (built-in kinds for an alert
    /// without a repo).
    pub fn redact_alert(&self, alert: &Alert) -> Alert {
        match &alert.repo {
            Some(repo) => self.for_repo(repo).redact_alert(alert),
            None => BUILTIN_ONLY.redact_alert(alert),
        }
    }

    /// Redacts an event of a task in the repo `slug`, as a whole (a running task's events go
    /// through a [`super::StreamRedactor`] instead).
    pub fn redact_event(&self, slug: &str, event: &TaskEvent) -> TaskEvent {
        self.for_repo(slug).redact_event(event)
    }

    #[cfg(test)]
    pub(crate) fn age(&self, slug: &str, by: Duration) {
        if let Some(cached) = self.cache.lock().unwrap().get_mut(slug) {
            cached.checked -= by;
        }
    }
}

fn env_fingerprint(repo: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    env_files(repo)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (p, modified, len)
        })
        .collect()
}
