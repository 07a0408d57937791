//! One repo's `RepoStatus` from git2: a full scan, and incremental re-checks of changed paths
//! against the cached per-path status map.
//!
//! Everything here is blocking (git2). It runs on the repo's own worker thread, never on the
//! async executor.
//!
//! Counting rules, the same for full and incremental scans:
//! - untracked files are counted one by one (like `git status -uall`), so that a re-check of one
//!   path gives exactly what a full scan gives;
//! - the index is never written (no opportunistic refresh): the agent only reads, so it never
//!   holds `index.lock` while the user runs git.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck_protocol::{RepoOperation, RepoState, RepoStatus, Timestamp};
use git2::{ErrorCode, Repository, RepositoryState, Status, StatusOptions, StatusShow};

/// What the status of a repo says about HEAD; refreshed by full scans only, because every change
/// to HEAD, refs, the config or the index triggers one.
#[derive(Debug, Clone, Default, PartialEq)]
struct HeadInfo {
    branch: Option<String>,
    detached: bool,
    head_sha: Option<String>,
    head_summary: Option<String>,
    upstream: Option<String>,
    remote_url: Option<String>,
    ahead: u32,
    behind: u32,
    operation: Option<RepoOperation>,
    stash: u32,
}

/// Counts of a path map, as defined on [`RepoScanner`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub staged: u32,
    pub unstaged: u32,
    pub untracked: u32,
    pub conflicted: u32,
    pub uncommitted: u32,
}

/// A git working tree opened for status, with its cached per-path status.
///
/// Counts in the produced [`RepoStatus`]:
/// - `stagedCount`: paths whose index entry differs from HEAD (new, modified, deleted, renamed or
///   type-changed in the index), conflicts excluded;
/// - `untrackedCount`: files not in the index and not ignored, each file counted;
/// - `conflictedCount`: paths with unmerged index entries;
/// - `uncommittedCount`: tracked paths with any change not yet committed: staged, unstaged
///   (modified, deleted or type-changed in the working tree) or conflicted. Untracked files are
///   not included; a path both staged and modified again counts once.
///
/// The repo is `dirty` when any staged, unstaged, untracked or conflicted path exists.
/// `modifiedFiles` lists every such path (untracked included), sorted, at most 200.
pub struct RepoScanner {
    repo: Repository,
    /// A second handle on the same repo, for the helper thread of a full scan (git2 handles
    /// are not `Sync`). `None` only while lent to it.
    helper: Option<Repository>,
    workdir: PathBuf,
    id: String,
    name: String,
    head: HeadInfo,
    /// Every path that is not clean, with its git2 status bits. Usually small.
    paths: BTreeMap<String, Status>,
    /// From this many index entries on, a full scan splits the working tree over two threads.
    parallel_min_entries: usize,
}

/// Below this many tracked files a full scan runs on one thread: the split is not worth it.
pub const PARALLEL_MIN_ENTRIES: usize = 5_000;

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The working tree or its `.git` is gone (deleted, moved, unmounted).
    #[error("repository not found at {0}")]
    Missing(PathBuf),
    #[error("permission denied in {path}: {message}")]
    PermissionDenied { path: PathBuf, message: String },
    #[error("{path} is not a git working tree (bare repositories cannot be watched)")]
    Bare { path: PathBuf },
    #[error("git error in {path}: {source}")]
    Git { path: PathBuf, source: git2::Error },
}

impl ScanError {
    fn from_git(path: &Path, source: git2::Error) -> ScanError {
        if !is_present(path) {
            return ScanError::Missing(path.to_path_buf());
        }
        let message = source.message().to_string();
        if message.contains("Permission denied") || message.contains("permission denied") {
            return ScanError::PermissionDenied { path: path.to_path_buf(), message };
        }
        if source.code() == ErrorCode::NotFound && source.class() == git2::ErrorClass::Repository {
            return ScanError::Missing(path.to_path_buf());
        }
        ScanError::Git { path: path.to_path_buf(), source }
    }
}

/// True when `root` is a directory that holds a `.git` (directory, or file for worktrees and
/// submodules).
pub fn is_present(root: &Path) -> bool {
    root.is_dir() && std::fs::symlink_metadata(root.join(".git")).is_ok()
}

impl RepoScanner {
    /// Opens the working tree at `root` (exactly there: no search upwards).
    pub fn open(root: &Path, id: &str, name: &str) -> Result<RepoScanner, ScanError> {
        if !is_present(root) {
            return Err(ScanError::Missing(root.to_path_buf()));
        }
        let open = || {
            Repository::open_ext(root, git2::RepositoryOpenFlags::NO_SEARCH, std::iter::empty::<&std::ffi::OsStr>())
                .map_err(|e| ScanError::from_git(root, e))
        };
        let repo = open()?;
        let helper = open()?;
        let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
            return Err(ScanError::Bare { path: root.to_path_buf() });
        };
        Ok(RepoScanner {
            repo,
            helper: Some(helper),
            workdir,
            id: id.to_string(),
            name: name.to_string(),
            head: HeadInfo::default(),
            paths: BTreeMap::new(),
            parallel_min_entries: PARALLEL_MIN_ENTRIES,
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The working tree, as git2 reports it (with a trailing slash removed).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The repo's own git directory (`.git`, or `.git/worktrees/NAME` for a linked worktree).
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// The directory shared by all worktrees (refs, packed-refs, config).
    pub fn common_dir(&self) -> &Path {
        self.repo.commondir()
    }

    /// Sets from how many tracked files on a full scan uses two threads (tests use 0 to run the
    /// split on small repos).
    pub fn set_parallel_min_entries(&mut self, entries: usize) {
        self.parallel_min_entries = entries;
    }

    /// Recomputes everything: HEAD facts and the status of every path.
    ///
    /// On a big tree the work is what `git status` does with its two halves: HEAD against the
    /// index (cheap once the trees are cached) and the index against the working tree (an
    /// `lstat` of every tracked file and a read of every directory, which dominates). Like git's
    /// preloaded index, the working tree is split in two sets of subtrees of about equal
    /// tracked-file counts, each checked on its own thread with its own git2 handle; the thread
    /// that also compares HEAD with the index gets the lighter half.
    pub fn full_scan(&mut self, now: Timestamp) -> Result<RepoStatus, ScanError> {
        let head = self.head_info()?;
        let workdir = self.workdir.clone();
        let git_err = |e| ScanError::from_git(&workdir, e);
        let paths = match self.split_worktree() {
            None => collect(&self.repo, StatusShow::IndexAndWorkdir, &[]).map_err(git_err)?,
            Some((mine, theirs)) => {
                // This thread compares HEAD with the index, then checks its half of the working
                // tree; a helper thread with its own handle checks the other half.
                let helper = self.helper.take();
                let (helper, results) = std::thread::scope(|scope| {
                    let Some(helper) = helper else {
                        return (None, vec![Err(git2::Error::from_str("the helper handle is missing"))]);
                    };
                    let other_half = scope.spawn(move || {
                        let result = collect(&helper, StatusShow::Workdir, &theirs);
                        (helper, result)
                    });
                    let staged = collect(&self.repo, StatusShow::Index, &[]);
                    let mine = collect(&self.repo, StatusShow::Workdir, &mine);
                    match other_half.join() {
                        Ok((helper, theirs)) => (Some(helper), vec![staged, mine, theirs]),
                        Err(_) => (None, vec![Err(git2::Error::from_str("the status thread panicked"))]),
                    }
                });
                self.helper = match helper {
                    Some(helper) => Some(helper),
                    None => Some(Repository::open(self.repo.path()).map_err(git_err)?),
                };
                let mut paths = BTreeMap::new();
                for result in results {
                    merge(&mut paths, result.map_err(git_err)?);
                }
                paths
            }
        };
        self.head = head;
        self.paths = paths;
        Ok(self.status(now))
    }

    /// Two sets of literal pathspecs that together cover the whole working tree, of about equal
    /// tracked-file counts; `None` for small trees or names that are not UTF-8.
    fn split_worktree(&self) -> Option<(Vec<String>, Vec<String>)> {
        let index = self.repo.index().ok()?;
        if index.len() < self.parallel_min_entries.max(2) {
            return None;
        }
        let tracked: Vec<String> = index.iter().map(|e| String::from_utf8(e.path)).collect::<Result<_, _>>().ok()?;
        let total = tracked.len();
        // Units: the root's children; the biggest directory is replaced by its children while it
        // holds more than half of the files (one `src/` holding everything).
        let mut units = children(&self.workdir, &tracked, "")?;
        for _ in 0..8 {
            let Some((biggest, weight)) = units.iter().max_by_key(|(_, w)| **w).map(|(u, w)| (u.clone(), *w)) else {
                break;
            };
            if weight * 2 <= total || !self.workdir.join(&biggest).is_dir() {
                break;
            }
            let inner = children(&self.workdir, &tracked, &format!("{biggest}/"))?;
            if inner.is_empty() {
                break;
            }
            units.remove(&biggest);
            units.extend(inner);
        }
        let mut by_weight: Vec<(String, usize)> = units.into_iter().collect();
        by_weight.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        // `a` is checked by the thread that also compares HEAD with the index: it starts with a
        // handicap of an eighth of the files (measured on a 100k-file tree).
        let (mut a, mut b) = ((Vec::new(), total / 8), (Vec::new(), 0usize));
        for (unit, weight) in by_weight {
            let lighter = if a.1 <= b.1 { &mut a } else { &mut b };
            lighter.0.push(unit);
            lighter.1 += weight.max(1);
        }
        (!a.0.is_empty() && !b.0.is_empty()).then_some((a.0, b.0))
    }

    /// Re-examines only `changed` (paths relative to the working tree, files or directories)
    /// against the cached map, keeping the HEAD facts of the last full scan.
    pub fn update_paths(&mut self, changed: &[String], now: Timestamp) -> Result<RepoStatus, ScanError> {
        for path in changed {
            let found = collect(&self.repo, StatusShow::IndexAndWorkdir, std::slice::from_ref(path))
                .map_err(|e| ScanError::from_git(&self.workdir, e))?;
            let prefix = format!("{path}/");
            let stale: Vec<String> = self
                .paths
                .range(path.clone()..)
                .take_while(|(p, _)| *p == path || p.starts_with(&prefix))
                .map(|(p, _)| p.clone())
                .collect();
            for p in stale {
                self.paths.remove(&p);
            }
            self.paths.extend(found);
        }
        Ok(self.status(now))
    }

    /// True when `rel` is ignored by the repo's ignore rules and not tracked (a tracked file that
    /// matches an ignore pattern still counts).
    pub fn is_ignored(&self, rel: &str) -> bool {
        if self.paths.contains_key(rel) {
            return false;
        }
        match self.repo.status_should_ignore(Path::new(rel)) {
            Ok(true) => {
                let tracked =
                    self.repo.index().map(|index| index.get_path(Path::new(rel), 0).is_some()).unwrap_or(true);
                !tracked
            }
            _ => false,
        }
    }

    pub fn counts(&self) -> Counts {
        counts(&self.paths)
    }

    /// The status from the cached facts.
    pub fn status(&self, now: Timestamp) -> RepoStatus {
        let counts = counts(&self.paths);
        let head = &self.head;
        let mut status = RepoStatus::new(self.id.clone(), self.name.clone());
        status.path = Some(self.workdir.display().to_string());
        status.branch = head.branch.clone();
        status.detached = head.detached;
        status.head_sha = head.head_sha.clone();
        status.head_summary = head.head_summary.clone();
        status.upstream = head.upstream.clone();
        status.remote_url = head.remote_url.clone();
        status.ahead_count = head.ahead;
        status.behind_count = head.behind;
        status.operation = head.operation;
        status.stash_count = head.stash;
        status.staged_count = counts.staged;
        status.untracked_count = counts.untracked;
        status.conflicted_count = counts.conflicted;
        status.uncommitted_count = counts.uncommitted;
        status.modified_files = self.paths.keys().take(RepoStatus::MAX_MODIFIED_FILES).cloned().collect();
        status.modified_files_truncated = self.paths.len() > RepoStatus::MAX_MODIFIED_FILES;
        let changed = counts.uncommitted.saturating_add(counts.untracked);
        status.status = RepoState::derive(false, changed, head.ahead, head.behind);
        status.updated_at = Some(now);
        status
    }

    fn head_info(&self) -> Result<HeadInfo, ScanError> {
        let repo = &self.repo;
        let err = |e| ScanError::from_git(&self.workdir, e);
        let mut info = HeadInfo { operation: operation(repo.state()), ..HeadInfo::default() };
        let head_ref = repo.find_reference("HEAD").map_err(err)?;
        match head_ref.symbolic_target() {
            Some(target) => {
                info.branch = Some(target.strip_prefix("refs/heads/").unwrap_or(target).to_string());
            }
            None => info.detached = true,
        }
        // Unborn HEAD: the symref points at a branch that has no commit yet.
        match head_ref.resolve() {
            Ok(resolved) => {
                if let Some(oid) = resolved.target() {
                    info.head_sha = Some(oid.to_string());
                    if let Ok(commit) = repo.find_commit(oid) {
                        info.head_summary = commit.summary().map(str::to_string);
                    }
                    if let Some(branch) = info.branch.clone() {
                        self.upstream(&branch, oid, &mut info);
                    }
                }
            }
            Err(e) if e.code() == ErrorCode::NotFound || e.code() == ErrorCode::UnbornBranch => {}
            Err(e) => return Err(err(e)),
        }
        if info.detached && info.operation == Some(RepoOperation::Rebase) {
            // During a rebase HEAD is detached; name the branch being rebased, as prompts do.
            info.branch = rebase_head_name(repo.path());
        }
        info.stash = stash_count(repo);
        info.remote_url =
            repo.find_remote("origin").ok().and_then(|r| r.url().map(str::to_string)).map(|u| strip_credentials(&u));
        Ok(info)
    }

    fn upstream(&self, branch: &str, local: git2::Oid, info: &mut HeadInfo) {
        let repo = &self.repo;
        let refname = format!("refs/heads/{branch}");
        let Ok(upstream) = repo.branch_upstream_name(&refname) else { return };
        let Some(upstream) = upstream.as_str().map(str::to_string) else { return };
        let short = upstream
            .strip_prefix("refs/remotes/")
            .or_else(|| upstream.strip_prefix("refs/heads/"))
            .unwrap_or(&upstream)
            .to_string();
        info.upstream = Some(short);
        if let Ok(remote_oid) = repo.refname_to_id(&upstream) {
            if let Ok((ahead, behind)) = repo.graph_ahead_behind(local, remote_oid) {
                info.ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
                info.behind = u32::try_from(behind).unwrap_or(u32::MAX);
            }
        }
    }
}

/// Runs one git2 status over the whole tree, or over `paths` (files or directories, literal).
fn collect(repo: &Repository, show: StatusShow, paths: &[String]) -> Result<BTreeMap<String, Status>, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.show(show)
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .renames_head_to_index(false)
        .renames_index_to_workdir(false)
        .update_index(false);
    for path in paths {
        opts.pathspec(path);
    }
    if !paths.is_empty() {
        // Literal: a file name with `*` or `[` is not a pattern; a directory matches its subtree.
        opts.disable_pathspec_match(true);
    }
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut out = BTreeMap::new();
    for entry in statuses.iter() {
        let status = entry.status();
        if status.is_empty() || status.intersects(Status::IGNORED) {
            continue;
        }
        let path = String::from_utf8_lossy(entry.path_bytes()).into_owned();
        *out.entry(path).or_insert(Status::empty()) |= status;
    }
    Ok(out)
}

fn merge(into: &mut BTreeMap<String, Status>, from: BTreeMap<String, Status>) {
    for (path, status) in from {
        *into.entry(path).or_insert(Status::empty()) |= status;
    }
}

/// The children of directory `prefix` ("" or "dir/"), as unit paths with their tracked-file
/// counts: names on disk (untracked ones too) and in the index (deleted ones too).
fn children(workdir: &Path, tracked: &[String], prefix: &str) -> Option<BTreeMap<String, usize>> {
    let mut units = BTreeMap::new();
    let start = tracked.partition_point(|p| p.as_str() < prefix);
    for path in tracked[start..].iter().take_while(|p| p.starts_with(prefix)) {
        let rest = &path[prefix.len()..];
        let child = rest.split('/').next().unwrap_or(rest);
        *units.entry(format!("{prefix}{child}")).or_insert(0) += 1;
    }
    let dir = if prefix.is_empty() { workdir.to_path_buf() } else { workdir.join(prefix.trim_end_matches('/')) };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().into_string().ok()?;
            if prefix.is_empty() && name == ".git" {
                continue;
            }
            units.entry(format!("{prefix}{name}")).or_insert(0);
        }
    }
    Some(units)
}

const STAGED: Status = Status::INDEX_NEW
    .union(Status::INDEX_MODIFIED)
    .union(Status::INDEX_DELETED)
    .union(Status::INDEX_RENAMED)
    .union(Status::INDEX_TYPECHANGE);
const UNSTAGED: Status =
    Status::WT_MODIFIED.union(Status::WT_DELETED).union(Status::WT_TYPECHANGE).union(Status::WT_RENAMED);

fn counts(paths: &BTreeMap<String, Status>) -> Counts {
    let mut c = Counts::default();
    for status in paths.values() {
        if status.contains(Status::CONFLICTED) {
            c.conflicted += 1;
            c.uncommitted += 1;
            continue;
        }
        let staged = status.intersects(STAGED);
        let unstaged = status.intersects(UNSTAGED);
        if staged {
            c.staged += 1;
        }
        if unstaged {
            c.unstaged += 1;
        }
        if staged || unstaged {
            c.uncommitted += 1;
        } else if status.contains(Status::WT_NEW) {
            c.untracked += 1;
        }
    }
    c
}

fn operation(state: RepositoryState) -> Option<RepoOperation> {
    match state {
        RepositoryState::Clean | RepositoryState::ApplyMailbox => None,
        RepositoryState::Merge => Some(RepoOperation::Merge),
        RepositoryState::Revert | RepositoryState::RevertSequence => Some(RepoOperation::Revert),
        RepositoryState::CherryPick | RepositoryState::CherryPickSequence => Some(RepoOperation::CherryPick),
        RepositoryState::Bisect => Some(RepoOperation::Bisect),
        RepositoryState::Rebase
        | RepositoryState::RebaseInteractive
        | RepositoryState::RebaseMerge
        | RepositoryState::ApplyMailboxOrRebase => Some(RepoOperation::Rebase),
    }
}

fn rebase_head_name(git_dir: &Path) -> Option<String> {
    ["rebase-merge/head-name", "rebase-apply/head-name"].iter().find_map(|file| {
        let raw = std::fs::read_to_string(git_dir.join(file)).ok()?;
        let name = raw.trim();
        (!name.is_empty() && name != "detached HEAD")
            .then(|| name.strip_prefix("refs/heads/").unwrap_or(name).to_string())
    })
}

/// Entries of the `refs/stash` reflog: one per stash (`stash_foreach` would need `&mut`).
fn stash_count(repo: &Repository) -> u32 {
    if repo.find_reference("refs/stash").is_err() {
        return 0;
    }
    let entries = repo.reflog("refs/stash").map(|log| log.len()).unwrap_or(0).max(1);
    u32::try_from(entries).unwrap_or(u32::MAX)
}

/// A remote URL without the user name and password a URL may carry (`https://user:token@host/x`
/// -> `https://host/x`): the relay and its HUD never see credentials.
pub fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod remote_url_tests {
    use super::strip_credentials;

    #[test]
    fn credentials_are_removed_from_remote_urls() {
        for (given, want) in [
            ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
            ("https://tok@host:8443/a", "https://host:8443/a"),
            ("git://127.0.0.1:9418/repo.git", "git://127.0.0.1:9418/repo.git"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
            ("/srv/git/repo.git", "/srv/git/repo.git"),
        ] {
            assert_eq!(strip_credentials(given), want, "{given}");
        }
    }
}
