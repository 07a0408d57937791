//! Repo watcher tests: real git repos in temp dirs, real file changes seen by notify.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flightdeck_agent_core::store::Store;
use flightdeck_agent_core::watch::{
    discover_repos, RepoScanner, RepoSpec, RepoWatcher, WatchConfig, WatchEvent, WatcherHandle,
};
use flightdeck_protocol::{AlertKind, RepoOperation, RepoState, RepoStatus};
use tempfile::TempDir;
use tokio::sync::broadcast;

// ---- fixtures ----

/// Runs git in `dir` with a fixed identity and no user or system config.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(["-c", "advice.detachedHead=false", "-c", "commit.gpgsign=false", "-c", "core.editor=true"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_EDITOR", "true")
        .output()
        .expect("git runs");
    assert!(
        out.status.success() || args.first().is_some_and(|a| ["merge", "rebase", "cherry-pick"].contains(a)),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn commit(dir: &Path, rel: &str, text: &str, message: &str) {
    write(dir, rel, text);
    git(dir, &["add", rel]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// A temp dir holding a repo at `<tmp>/repo` with one commit ("first": a.txt, .gitignore).
struct Fixture {
    tmp: TempDir,
    repo: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let fx = Fixture::unborn();
        write(&fx.repo, ".gitignore", "ignored/\n*.log\n");
        write(&fx.repo, "a.txt", "one\n");
        git(&fx.repo, &["add", "."]);
        git(&fx.repo, &["commit", "-q", "-m", "first"]);
        fx
    }

    fn unborn() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        Fixture { tmp, repo }
    }

    /// A bare remote at `<tmp>/remote.git`, pushed to, with `main` tracking `origin/main`.
    fn with_remote() -> Fixture {
        let fx = Fixture::new();
        let remote = fx.tmp.path().join("remote.git");
        git(fx.tmp.path(), &["init", "-q", "--bare", "remote.git"]);
        git(&fx.repo, &["remote", "add", "origin", remote.to_str().unwrap()]);
        git(&fx.repo, &["push", "-q", "-u", "origin", "main"]);
        fx
    }

    /// Pushes a commit to the remote from another clone, then fetches it.
    fn remote_moves_on(&self) {
        let other = self.tmp.path().join("other");
        git(self.tmp.path(), &["clone", "-q", "remote.git", "other"]);
        commit(&other, "remote.txt", "remote\n", "remote work");
        git(&other, &["push", "-q", "origin", "main"]);
        git(&self.repo, &["fetch", "-q", "origin"]);
    }

    fn head(&self) -> String {
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    /// A conflict on a.txt between `main` and `feature`, with `main` checked out.
    fn conflicting_branches(&self) {
        git(&self.repo, &["checkout", "-q", "-b", "feature"]);
        commit(&self.repo, "a.txt", "feature\n", "feature change");
        git(&self.repo, &["checkout", "-q", "main"]);
        commit(&self.repo, "a.txt", "main\n", "main change");
    }
}

// ---- the table of statuses ----

/// Every field of a status but id, name, path and time.
#[derive(Debug)]
struct Want {
    branch: Option<&'static str>,
    detached: bool,
    /// `Some(summary)` when HEAD has a commit: its sha is checked against `git rev-parse HEAD`.
    head: Option<&'static str>,
    upstream: Option<&'static str>,
    operation: Option<RepoOperation>,
    state: RepoState,
    uncommitted: u32,
    staged: u32,
    untracked: u32,
    conflicted: u32,
    ahead: u32,
    behind: u32,
    stash: u32,
    files: Vec<String>,
    truncated: bool,
}

const CLEAN_MAIN: Want = Want {
    branch: Some("main"),
    detached: false,
    head: Some("first"),
    upstream: None,
    operation: None,
    state: RepoState::Clean,
    uncommitted: 0,
    staged: 0,
    untracked: 0,
    conflicted: 0,
    ahead: 0,
    behind: 0,
    stash: 0,
    files: Vec::new(),
    truncated: false,
};

fn files(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn expected(fx: &Fixture, got: &RepoStatus, want: &Want) -> RepoStatus {
    let mut status = RepoStatus::new(got.id.clone(), got.name.clone());
    status.path = got.path.clone();
    status.updated_at = got.updated_at;
    status.branch = want.branch.map(str::to_string);
    status.detached = want.detached;
    status.head_sha = want.head.map(|_| fx.head());
    status.head_summary = want.head.map(str::to_string);
    status.upstream = want.upstream.map(str::to_string);
    // The fixtures with an upstream have `origin` at <tmp>/remote.git (`Fixture::with_remote`).
    status.remote_url = want.upstream.map(|_| fx.tmp.path().join("remote.git").display().to_string());
    status.operation = want.operation;
    status.status = want.state;
    status.uncommitted_count = want.uncommitted;
    status.staged_count = want.staged;
    status.untracked_count = want.untracked;
    status.conflicted_count = want.conflicted;
    status.ahead_count = want.ahead;
    status.behind_count = want.behind;
    status.stash_count = want.stash;
    status.modified_files = want.files.clone();
    status.modified_files_truncated = want.truncated;
    status
}

/// A case: its name, how its repo starts, and what it does to it (returning what to expect).
type Case = (&'static str, fn() -> Fixture, fn(&Fixture) -> Want);

#[test]
fn status_table() {
    let cases: Vec<Case> = vec![
        ("clean", Fixture::new, |_| CLEAN_MAIN),
        ("dirty", Fixture::new, |fx| {
            write(&fx.repo, "a.txt", "two\n");
            Want { state: RepoState::Dirty, uncommitted: 1, files: files(&["a.txt"]), ..CLEAN_MAIN }
        }),
        ("staged", Fixture::new, |fx| {
            write(&fx.repo, "a.txt", "two\n");
            write(&fx.repo, "b.txt", "new\n");
            git(&fx.repo, &["add", "a.txt", "b.txt"]);
            // Staged, then changed again: still one uncommitted path.
            write(&fx.repo, "a.txt", "three\n");
            Want { state: RepoState::Dirty, uncommitted: 2, staged: 2, files: files(&["a.txt", "b.txt"]), ..CLEAN_MAIN }
        }),
        ("untracked", Fixture::new, |fx| {
            write(&fx.repo, "new.txt", "x\n");
            write(&fx.repo, "dir/deep/n.txt", "x\n");
            write(&fx.repo, "ignored/skip.txt", "x\n");
            write(&fx.repo, "debug.log", "x\n");
            Want { state: RepoState::Dirty, untracked: 2, files: files(&["dir/deep/n.txt", "new.txt"]), ..CLEAN_MAIN }
        }),
        ("deleted", Fixture::new, |fx| {
            std::fs::remove_file(fx.repo.join("a.txt")).unwrap();
            Want { state: RepoState::Dirty, uncommitted: 1, files: files(&["a.txt"]), ..CLEAN_MAIN }
        }),
        ("merge conflict", Fixture::new, |fx| {
            fx.conflicting_branches();
            git(&fx.repo, &["merge", "-q", "feature"]);
            Want {
                head: Some("main change"),
                operation: Some(RepoOperation::Merge),
                state: RepoState::Dirty,
                uncommitted: 1,
                conflicted: 1,
                files: files(&["a.txt"]),
                ..CLEAN_MAIN
            }
        }),
        ("rebase in progress", Fixture::new, |fx| {
            fx.conflicting_branches();
            git(&fx.repo, &["checkout", "-q", "feature"]);
            git(&fx.repo, &["rebase", "main"]);
            Want {
                // HEAD is detached on main's commit; the branch being rebased is named.
                branch: Some("feature"),
                detached: true,
                head: Some("main change"),
                operation: Some(RepoOperation::Rebase),
                state: RepoState::Dirty,
                uncommitted: 1,
                conflicted: 1,
                files: files(&["a.txt"]),
                ..CLEAN_MAIN
            }
        }),
        ("cherry-pick conflict", Fixture::new, |fx| {
            fx.conflicting_branches();
            git(&fx.repo, &["cherry-pick", "feature"]);
            Want {
                head: Some("main change"),
                operation: Some(RepoOperation::CherryPick),
                state: RepoState::Dirty,
                uncommitted: 1,
                conflicted: 1,
                files: files(&["a.txt"]),
                ..CLEAN_MAIN
            }
        }),
        ("bisect", Fixture::new, |fx| {
            git(&fx.repo, &["bisect", "start"]);
            Want { operation: Some(RepoOperation::Bisect), ..CLEAN_MAIN }
        }),
        ("detached", Fixture::new, |fx| {
            commit(&fx.repo, "a.txt", "two\n", "second");
            git(&fx.repo, &["checkout", "-q", "--detach", "HEAD~1"]);
            Want { branch: None, detached: true, ..CLEAN_MAIN }
        }),
        ("unborn", Fixture::unborn, |fx| {
            write(&fx.repo, "first.txt", "x\n");
            git(&fx.repo, &["add", "first.txt"]);
            write(&fx.repo, "later.txt", "x\n");
            Want {
                head: None,
                state: RepoState::Dirty,
                uncommitted: 1,
                staged: 1,
                untracked: 1,
                files: files(&["first.txt", "later.txt"]),
                ..CLEAN_MAIN
            }
        }),
        ("in sync with upstream", Fixture::with_remote, |_| Want { upstream: Some("origin/main"), ..CLEAN_MAIN }),
        ("ahead", Fixture::with_remote, |fx| {
            commit(&fx.repo, "b.txt", "b\n", "local work");
            Want {
                head: Some("local work"),
                upstream: Some("origin/main"),
                state: RepoState::Ahead,
                ahead: 1,
                ..CLEAN_MAIN
            }
        }),
        ("behind", Fixture::with_remote, |fx| {
            fx.remote_moves_on();
            Want { upstream: Some("origin/main"), state: RepoState::Behind, behind: 1, ..CLEAN_MAIN }
        }),
        ("diverged and dirty", Fixture::with_remote, |fx| {
            fx.remote_moves_on();
            commit(&fx.repo, "b.txt", "b\n", "local work");
            commit(&fx.repo, "c.txt", "c\n", "more local work");
            write(&fx.repo, "a.txt", "dirty\n");
            Want {
                head: Some("more local work"),
                upstream: Some("origin/main"),
                state: RepoState::Diverged,
                uncommitted: 1,
                ahead: 2,
                behind: 1,
                files: files(&["a.txt"]),
                ..CLEAN_MAIN
            }
        }),
        ("stash", Fixture::new, |fx| {
            write(&fx.repo, "a.txt", "two\n");
            git(&fx.repo, &["stash", "-q"]);
            write(&fx.repo, "a.txt", "three\n");
            git(&fx.repo, &["stash", "-q"]);
            Want { stash: 2, ..CLEAN_MAIN }
        }),
        ("many files", Fixture::new, |fx| {
            for i in 0..205 {
                write(&fx.repo, &format!("many/f{i:03}.txt"), "x\n");
            }
            let all: Vec<String> = (0..200).map(|i| format!("many/f{i:03}.txt")).collect();
            Want { state: RepoState::Dirty, untracked: 205, files: all, truncated: true, ..CLEAN_MAIN }
        }),
        ("nested repo and submodule", Fixture::new, |fx| {
            // A submodule (committed, clean) and an unrelated nested repo with its own changes.
            let sub_src = fx.tmp.path().join("sub-src");
            std::fs::create_dir(&sub_src).unwrap();
            git(&sub_src, &["init", "-q"]);
            commit(&sub_src, "s.txt", "s\n", "sub");
            git(
                &fx.repo,
                &["-c", "protocol.file.allow=always", "submodule", "add", "-q", sub_src.to_str().unwrap(), "sub"],
            );
            git(&fx.repo, &["commit", "-q", "-m", "add submodule"]);
            let nested = fx.repo.join("ignored/nested");
            std::fs::create_dir_all(&nested).unwrap();
            git(&nested, &["init", "-q"]);
            write(&nested, "n.txt", "n\n");
            Want { head: Some("add submodule"), ..CLEAN_MAIN }
        }),
    ];
    for (name, make, setup) in cases {
        let fx = make();
        let want = setup(&fx);
        let mut scanner = RepoScanner::open(&fx.repo, "id", "repo").unwrap();
        let got = scanner.full_scan(chrono::Utc::now()).unwrap();
        assert_eq!(got, expected(&fx, &got, &want), "case {name}");
        // The full scan split over two threads (as on big trees) gives the same answer.
        let mut split = RepoScanner::open(&fx.repo, "id", "repo").unwrap();
        split.set_parallel_min_entries(0);
        let split = split.full_scan(chrono::Utc::now()).unwrap();
        assert!(split.same_state(&got), "case {name}: the split scan differs: {split:?}");
        // Re-checking the changed paths one by one gives the same answer as the full scan.
        let again = scanner.update_paths(&got.modified_files, chrono::Utc::now()).unwrap();
        assert!(again.same_state(&got), "case {name}: incremental differs: {again:?}");
    }
}

#[test]
fn incremental_matches_full_scan_after_changes() {
    let fx = Fixture::new();
    let mut scanner = RepoScanner::open(&fx.repo, "id", "repo").unwrap();
    scanner.full_scan(chrono::Utc::now()).unwrap();
    write(&fx.repo, "a.txt", "changed\n");
    write(&fx.repo, "newdir/x.txt", "x\n");
    write(&fx.repo, "newdir/y/z.txt", "x\n");
    let incremental = scanner.update_paths(&files(&["a.txt", "newdir"]), chrono::Utc::now()).unwrap();
    let full = RepoScanner::open(&fx.repo, "id", "repo").unwrap().full_scan(chrono::Utc::now()).unwrap();
    assert!(incremental.same_state(&full), "{incremental:?} vs {full:?}");
    assert_eq!(incremental.modified_files, files(&["a.txt", "newdir/x.txt", "newdir/y/z.txt"]));
    // The directory goes away: its entries leave the map.
    std::fs::remove_dir_all(fx.repo.join("newdir")).unwrap();
    let incremental = scanner.update_paths(&files(&["newdir"]), chrono::Utc::now()).unwrap();
    assert_eq!(incremental.modified_files, files(&["a.txt"]));
}

#[test]
fn discovery_finds_repos_to_depth_three() {
    let tmp = tempfile::tempdir().unwrap();
    for rel in ["one", "a/two", "a/b/three", "a/b/c/four", ".hidden/five", "node_modules/six"] {
        let dir = tmp.path().join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q"]);
    }
    // Nested inside a repo: belongs to it.
    std::fs::create_dir_all(tmp.path().join("one/inner")).unwrap();
    git(&tmp.path().join("one/inner"), &["init", "-q"]);
    let found = discover_repos(tmp.path(), 3);
    let rel: Vec<String> =
        found.iter().map(|p| p.strip_prefix(tmp.path()).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(rel, vec!["a/b/three", "a/two", "one"]);
}

// ---- live watching ----

const DEADLINE: Duration = Duration::from_secs(10);

fn test_config() -> WatchConfig {
    WatchConfig { missing_poll_interval: Duration::from_millis(50), ..WatchConfig::default() }
}

struct Live {
    handle: WatcherHandle,
    rx: broadcast::Receiver<WatchEvent>,
    id: String,
}

/// Starts a watcher on `repo` and waits for its first status.
async fn watch(repo: &Path, config: WatchConfig, store: Option<Store>) -> (Live, RepoStatus) {
    let handle = RepoWatcher::start(config, store);
    let rx = handle.subscribe();
    let info = handle.add_repo(RepoSpec::new(repo)).unwrap();
    let mut live = Live { handle, rx, id: info.id };
    let first = live.status().await;
    (live, first)
}

impl Live {
    /// The next event, within the deadline.
    async fn event(&mut self) -> WatchEvent {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("an event before the deadline")
            .expect("the event channel is open")
    }

    /// The next status of the watched repo (other events skipped).
    async fn status(&mut self) -> RepoStatus {
        loop {
            if let WatchEvent::Status(status) = self.event().await {
                if status.id == self.id {
                    return status;
                }
            }
        }
    }

    /// Statuses until one satisfies `done` (for changes that git makes in several steps).
    async fn status_until(&mut self, done: impl Fn(&RepoStatus) -> bool) -> RepoStatus {
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
        }
    }
}

#[tokio::test]
async fn a_write_is_seen_and_ignored_paths_cause_no_work() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.repo.join("ignored")).unwrap();
    let (mut live, first) = watch(&fx.repo, test_config(), None).await;
    assert_eq!(first.status, RepoState::Clean);
    let before = live.handle.stats();

    // Ignored writes first, then a tracked one: the first update shows only the tracked change.
    write(&fx.repo, "ignored/build.txt", "x\n");
    write(&fx.repo, "debug.log", "x\n");
    write(&fx.repo, "a.txt", "changed\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt"]));
    assert_eq!((status.status, status.uncommitted_count, status.untracked_count), (RepoState::Dirty, 1, 0));

    // Nothing came for the ignored writes: the next event is the next real change.
    write(&fx.repo, "ignored/again.txt", "x\n");
    write(&fx.repo, "b.txt", "new\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt", "b.txt"]));
    assert_eq!(status.untracked_count, 1);

    let stats = live.handle.stats();
    assert_eq!(stats.full_scans, before.full_scans, "worktree writes never need a full rescan");
    assert!(stats.incremental_updates >= 2);
    assert!(stats.events_ignored >= 1, "debug.log is seen and dropped: {stats:?}");
}

/// Issue 26.3: the first change of a quiet repo goes out at once (leading edge): with a window
/// of an hour it still arrives (it used to wait out the window). Changes right behind it wait
/// for the window and are handled together.
#[tokio::test]
async fn a_quiet_repos_first_change_goes_out_at_once_and_the_rest_are_coalesced() {
    let fx = Fixture::new();
    let config = WatchConfig { debounce: Duration::from_secs(3600), ..test_config() };
    let (mut live, _) = watch(&fx.repo, config, None).await;
    let before = live.handle.stats();
    write(&fx.repo, "a.txt", "changed\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt"]));
    assert_eq!(live.handle.stats().incremental_updates, before.incremental_updates + 1);
    // Within the window: nothing goes out for the storm until it ends (an hour here); the
    // watcher holds it rather than handling each write.
    for i in 0..50 {
        write(&fx.repo, &format!("storm{i}.txt"), "x\n");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), live.rx.recv()).await.is_err(),
        "a change right behind another waits for the window"
    );
    assert_eq!(live.handle.stats().incremental_updates, before.incremental_updates + 1);
}

#[tokio::test]
async fn new_directories_are_watched() {
    let fx = Fixture::new();
    let (mut live, _) = watch(&fx.repo, test_config(), None).await;
    write(&fx.repo, "newdir/deeper/x.txt", "x\n");
    let status = live.status_until(|s| s.untracked_count == 1).await;
    assert_eq!(status.modified_files, files(&["newdir/deeper/x.txt"]));
    // A write inside the new directory is seen, so it is watched now.
    write(&fx.repo, "newdir/deeper/y.txt", "y\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["newdir/deeper/x.txt", "newdir/deeper/y.txt"]));
}

#[tokio::test]
async fn branch_switch_and_commit_are_seen() {
    let fx = Fixture::new();
    let (mut live, first) = watch(&fx.repo, test_config(), None).await;
    assert_eq!(first.branch.as_deref(), Some("main"));

    git(&fx.repo, &["checkout", "-q", "-b", "feature"]);
    let status = live.status().await;
    assert_eq!(status.branch.as_deref(), Some("feature"));
    assert_eq!(status.status, RepoState::Clean);

    commit(&fx.repo, "c.txt", "c\n", "on feature");
    let status = live.status_until(|s| s.head_summary.as_deref() == Some("on feature")).await;
    assert_eq!(status.head_sha, Some(fx.head()));
    let status = if status.status == RepoState::Clean { status } else { live.status().await };
    assert_eq!((status.status, status.staged_count), (RepoState::Clean, 0));

    git(&fx.repo, &["checkout", "-q", "main"]);
    let status = live.status_until(|s| s.branch.as_deref() == Some("main")).await;
    assert_eq!(status.head_summary.as_deref(), Some("first"));
}

#[tokio::test]
async fn a_removed_repo_is_missing_and_comes_back() {
    let fx = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mut live, _) = watch(&fx.repo, test_config(), Some(store.clone())).await;

    std::fs::remove_dir_all(&fx.repo).unwrap();
    let mut alert = None;
    let mut missing = None;
    while alert.is_none() || missing.is_none() {
        match live.event().await {
            WatchEvent::Status(s) if s.status == RepoState::Missing => missing = Some(s),
            WatchEvent::Alert(a) => alert = Some(a),
            _ => {}
        }
    }
    let alert = alert.unwrap();
    assert_eq!(alert.kind, AlertKind::RepoMissing);
    assert_eq!(alert.repo.as_deref(), Some("repo"));
    let missing = missing.unwrap();
    assert_eq!((missing.branch.as_ref(), missing.uncommitted_count), (None, 0));
    assert_eq!(store.repo_status(&live.id).unwrap().unwrap().status, RepoState::Missing);

    // Recreated at the same path: seen again, on its new branch.
    std::fs::create_dir(&fx.repo).unwrap();
    git(&fx.repo, &["init", "-q", "-b", "trunk"]);
    commit(&fx.repo, "z.txt", "z\n", "reborn");
    let status = live.status_until(|s| s.head_summary.as_deref() == Some("reborn")).await;
    assert_eq!((status.branch.as_deref(), status.status), (Some("trunk"), RepoState::Clean));
    // And it is watched again.
    write(&fx.repo, "z.txt", "changed\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["z.txt"]));
    let (alerts, total) = store.alerts(&Default::default()).unwrap();
    assert_eq!(total, 1, "{alerts:?}");
}

#[tokio::test]
async fn a_conflict_raises_one_alert_and_the_status_is_saved() {
    let fx = Fixture::new();
    fx.conflicting_branches();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mut live, _) = watch(&fx.repo, test_config(), Some(store.clone())).await;

    git(&fx.repo, &["merge", "-q", "feature"]);
    let mut alerts = Vec::new();
    let status = loop {
        match live.event().await {
            WatchEvent::Alert(a) => alerts.push(a),
            WatchEvent::Status(s) if s.conflicted_count == 1 && s.operation == Some(RepoOperation::Merge) => break s,
            _ => {}
        }
    };
    // More changes while the conflict lasts: updates, but no second alert.
    write(&fx.repo, "other.txt", "x\n");
    let later = loop {
        match live.event().await {
            WatchEvent::Alert(a) => alerts.push(a),
            WatchEvent::Status(s) if s.untracked_count == 1 => break s,
            _ => {}
        }
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::RepoConflict);
    assert!(status.modified_files.contains(&"a.txt".to_string()));
    let saved = store.repo_status(&live.id).unwrap().unwrap();
    assert!(saved.same_state(&later));
    assert_eq!(store.alerts(&Default::default()).unwrap().1, 1);

    // A restarted watcher does not raise the same conflict again: any alert would come right
    // after the first status, before the status of the next change.
    let (mut again, first) = watch(&fx.repo, test_config(), Some(store.clone())).await;
    assert_eq!(first.conflicted_count, 1);
    write(&fx.repo, "third.txt", "x\n");
    loop {
        match again.event().await {
            WatchEvent::Alert(a) => panic!("alert raised again after a restart: {a:?}"),
            WatchEvent::Status(s) if s.untracked_count == 2 => break,
            _ => {}
        }
    }
    again.handle.shutdown();

    // Removing the repo from the watched set deletes its saved status.
    live.handle.remove_repo(&live.id).unwrap();
    loop {
        if let WatchEvent::Removed { id } = live.event().await {
            assert_eq!(id, live.id);
            break;
        }
    }
    assert!(store.repo_status(&live.id).unwrap().is_none());
    assert!(live.handle.statuses().is_empty());
}

#[tokio::test]
async fn polling_fallback_sees_changes_and_says_so_once() {
    let fx = Fixture::new();
    let config = WatchConfig { force_poll: true, poll_interval: Duration::from_millis(50), ..test_config() };
    let handle = RepoWatcher::start(config, None);
    let mut rx = handle.subscribe();
    let info = handle.add_repo(RepoSpec::named(&fx.repo, "polled")).unwrap();
    let mut notices = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap() {
            WatchEvent::Notice { message, .. } => notices.push(message),
            WatchEvent::Status(s) => {
                assert_eq!(s.name, "polled");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(notices.len(), 1);
    assert!(notices[0].contains("polling"), "{notices:?}");
    let mut live = Live { handle, rx, id: info.id };
    write(&fx.repo, "a.txt", "polled change\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt"]));
    git(&fx.repo, &["checkout", "-q", "-b", "other"]);
    let status = live.status_until(|s| s.branch.as_deref() == Some("other")).await;
    assert_eq!(status.uncommitted_count, 1);
}

#[tokio::test]
async fn repos_are_added_paused_and_resumed_at_runtime() {
    let one = Fixture::new();
    let two = Fixture::new();
    let handle = RepoWatcher::start(test_config(), None);
    let mut rx = handle.subscribe();
    let a = handle.add_repo(RepoSpec::new(&one.repo)).unwrap();
    let b = handle.add_repo(RepoSpec::new(&two.repo)).unwrap();
    // Same directory name: unique slugs; same path again: the same repo.
    assert_eq!((a.name.as_str(), b.name.as_str()), ("repo", "repo-2"));
    assert_ne!(a.id, b.id);
    assert_eq!(handle.add_repo(RepoSpec::new(&one.repo)).unwrap(), a);
    assert!(handle.add_repo(RepoSpec::new(one.tmp.path())).is_err(), "not a working tree");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        if let WatchEvent::Status(s) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap() {
            seen.insert(s.id);
        }
    }
    assert_eq!(handle.statuses().len(), 2);

    handle.pause();
    assert!(handle.is_paused());
    write(&two.repo, "a.txt", "while paused\n");
    handle.resume();
    // Resuming rescans: the change made while paused is seen.
    loop {
        if let WatchEvent::Status(s) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap() {
            if s.id == b.id {
                assert_eq!(s.modified_files, files(&["a.txt"]));
                break;
            }
        }
    }
    handle.shutdown();
}

#[tokio::test]
async fn a_linked_worktree_is_watched() {
    let fx = Fixture::new();
    let wt = fx.tmp.path().join("wt");
    git(&fx.repo, &["worktree", "add", "-q", "-b", "side", wt.to_str().unwrap()]);
    let (mut live, first) = watch(&wt, test_config(), None).await;
    assert_eq!((first.branch.as_deref(), first.status), (Some("side"), RepoState::Clean));
    write(&wt, "a.txt", "in the worktree\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt"]));
    git(&wt, &["commit", "-q", "-am", "worktree commit"]);
    let status = live.status_until(|s| s.status == RepoState::Clean).await;
    assert_eq!(status.head_summary.as_deref(), Some("worktree commit"));
}

#[test]
fn the_handle_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<WatcherHandle>();
    shareable::<WatchEvent>();
}

#[tokio::test]
async fn too_many_directories_fall_back_to_polling_once() {
    let fx = Fixture::new();
    for dir in ["one", "two", "three", "four"] {
        commit(&fx.repo, &format!("{dir}/f.txt"), "x\n", dir);
    }
    let config = WatchConfig { max_watched_dirs: 4, poll_interval: Duration::from_millis(50), ..test_config() };
    let handle = RepoWatcher::start(config, None);
    let mut rx = handle.subscribe();
    let info = handle.add_repo(RepoSpec::new(&fx.repo)).unwrap();
    let mut notices = Vec::new();
    let mut live = loop {
        match tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap() {
            WatchEvent::Notice { message, .. } => notices.push(message),
            WatchEvent::Status(_) => break Live { handle, rx, id: info.id },
            _ => {}
        }
    };
    // Changes in directories that were never watched natively are seen by polling.
    write(&fx.repo, "four/f.txt", "changed\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["four/f.txt"]));
    write(&fx.repo, "one/f.txt", "changed\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["four/f.txt", "one/f.txt"]));
    while let Ok(event) = live.rx.try_recv() {
        if let WatchEvent::Notice { message, .. } = event {
            notices.push(message);
        }
    }
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("polling"), "{notices:?}");
}

#[tokio::test]
async fn ignore_rules_and_stash_drops_are_seen() {
    let fx = Fixture::new();
    for text in ["two\n", "three\n"] {
        write(&fx.repo, "a.txt", text);
        git(&fx.repo, &["stash", "-q"]);
    }
    write(&fx.repo, "notes.tmp", "x\n");
    let (mut live, first) = watch(&fx.repo, test_config(), None).await;
    assert_eq!((first.stash_count, first.untracked_count), (2, 1));

    // A new ignore rule hides an untracked file that did not change itself.
    write(&fx.repo, ".gitignore", "ignored/\n*.log\n*.tmp\n");
    let status = live.status_until(|s| s.untracked_count == 0).await;
    assert_eq!(status.modified_files, files(&[".gitignore"]));

    // Dropping the older stash rewrites only the stash reflog.
    git(&fx.repo, &["stash", "drop", "-q", "stash@{1}"]);
    let status = live.status().await;
    assert_eq!(status.stash_count, 1);
}

#[tokio::test]
async fn a_moved_repo_is_missing_until_it_is_moved_back() {
    let fx = Fixture::new();
    write(&fx.repo, "a.txt", "dirty\n");
    let (mut live, first) = watch(&fx.repo, test_config(), None).await;
    assert_eq!(first.status, RepoState::Dirty);
    let away = fx.tmp.path().join("moved-away");
    std::fs::rename(&fx.repo, &away).unwrap();
    let status = live.status().await;
    assert_eq!(status.status, RepoState::Missing);
    std::fs::rename(&away, &fx.repo).unwrap();
    let status = live.status().await;
    assert!(status.same_state(&first), "{status:?}");
    // Watched again after the return.
    write(&fx.repo, "b.txt", "new\n");
    let status = live.status().await;
    assert_eq!(status.modified_files, files(&["a.txt", "b.txt"]));
}
