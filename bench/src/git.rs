//! `flightdeck-bench git`: the repo watcher against `git status` on a generated big repo.
//!
//! Prints, in one run: `git status --porcelain=v2 --branch`, the agent's full status, the agent's
//! incremental update after touching one file, and save-to-event latency (write a file, wait for
//! the live watcher's update). Targets (issue 4): update <= 5 ms and >= 30x faster than git
//! status; full status <= 1.2x git's time.
//!
//! The repo is made by `git fast-import` (one pack, no loose objects) and `git reset --hard`,
//! which takes seconds for 100k files; it is kept and reused between runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use flightdeck_agent_core::watch::{RepoScanner, RepoSpec, RepoWatcher, WatchConfig, WatchEvent};

use crate::report::percentile;

#[derive(Args, Debug)]
pub struct GitArgs {
    /// Number of tracked files in the generated repo.
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Where the repo is generated (reused when it already has the right number of files).
    /// Default: `$TMPDIR/flightdeck-bench-git-<files>`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Timed runs of each full status (the median is printed).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Samples of the incremental update and of the save-to-event latency.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// The watcher's debounce window in milliseconds (default: the watcher's default).
    #[arg(long)]
    debounce_ms: Option<u64>,
    /// Generate the repo again even when it exists.
    #[arg(long)]
    regenerate: bool,
}

impl GitArgs {
    /// The suite's settings: `quick` takes fewer samples of the same 100k-file repo.
    pub fn suite(quick: bool) -> GitArgs {
        GitArgs {
            files: 100_000,
            dir: None,
            runs: if quick { 3 } else { 7 },
            samples: if quick { 30 } else { 100 },
            debounce_ms: None,
            regenerate: false,
        }
    }
}

/// What `git` measures, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct GitFigures {
    pub files: usize,
    pub debounce_ms: f64,
    pub git_status_ms: f64,
    pub full_warm_ms: f64,
    pub full_reload_ms: f64,
    pub full_fresh_ms: f64,
    pub update_p50_ms: f64,
    pub update_p99_ms: f64,
    pub save_to_event_p50_ms: f64,
    pub save_to_event_p99_ms: f64,
}

pub fn run(args: &GitArgs) -> anyhow::Result<GitFigures> {
    let dir =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("flightdeck-bench-git-{}", args.files)));
    let started = Instant::now();
    let generated = ensure_repo(&dir, args.files, args.regenerate)?;
    if generated {
        println!("generated {} files in {} in {:.1} s", args.files, dir.display(), started.elapsed().as_secs_f64());
    } else {
        println!("reusing {} ({} files)", dir.display(), args.files);
    }
    // Settle the index (racily clean entries) and warm the page cache, as a user's repo is.
    git(&dir, &["status", "--porcelain=v2", "--branch"])?;

    // Interleaved runs, so that the three see the same machine load.
    let runs = args.runs.max(1);
    let mut scanner = RepoScanner::open(&dir, "bench", "bench")?;
    scanner.full_scan(chrono::Utc::now())?;
    let (mut git_runs, mut fresh_runs, mut warm_runs, mut reload_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let index_file = dir.join(".git/index");
    for run in 0..=runs {
        let t = Instant::now();
        git(&dir, &["status", "--porcelain=v2", "--branch"])?;
        let git_ms = ms(t.elapsed());
        let t = Instant::now();
        RepoScanner::open(&dir, "bench", "bench")?.full_scan(chrono::Utc::now())?;
        let fresh_ms = ms(t.elapsed());
        let t = Instant::now();
        scanner.full_scan(chrono::Utc::now())?;
        let warm_ms = ms(t.elapsed());
        // As after `git add` or a commit: the index file changed, so every handle reloads it.
        std::fs::File::options().append(true).open(&index_file)?.set_modified(std::time::SystemTime::now())?;
        let t = Instant::now();
        scanner.full_scan(chrono::Utc::now())?;
        let reload_ms = ms(t.elapsed());
        if run > 0 {
            reload_runs.push(reload_ms);
            // Run 0 warms up.
            git_runs.push(git_ms);
            fresh_runs.push(fresh_ms);
            warm_runs.push(warm_ms);
        }
    }
    let git_ms = median(&sorted(git_runs));
    let full_fresh_ms = median(&sorted(fresh_runs));
    let full_warm_ms = median(&sorted(warm_runs));
    let full_reload_ms = median(&sorted(reload_runs));

    // Incremental: touch one file, re-examine that path only.
    let samples = args.samples.max(1);
    let mut update_ms = Vec::with_capacity(samples);
    for k in 0..samples {
        let i = (k * 7919) % args.files;
        let rel = file_path(i);
        std::fs::write(dir.join(&rel), format!("{}touched\n", file_content(i)))?;
        let t = Instant::now();
        let status = scanner.update_paths(std::slice::from_ref(&rel), chrono::Utc::now())?;
        update_ms.push(ms(t.elapsed()));
        if !status.modified_files.contains(&rel) {
            bail!("the update did not see {rel}");
        }
    }
    for k in 0..samples {
        let i = (k * 7919) % args.files;
        std::fs::write(dir.join(file_path(i)), file_content(i))?;
    }
    update_ms.sort_by(f64::total_cmp);

    let (first_status_ms, latency) = save_to_event(&dir, samples, args)?;

    let update_p50 = percentile(&update_ms, 50.0);
    println!();
    println!("repo: {} tracked files, {} ms debounce", args.files, debounce(args).as_millis());
    println!("{:<52} {:>10}", "measure", "ms");
    println!("{:<52} {:>10.1}", "git status --porcelain=v2 --branch (median)", git_ms);
    println!("{:<52} {:>10.1}", "agent full status, as the watcher runs it (median)", full_warm_ms);
    println!("{:<52} {:>10.1}", "agent full status after the index changed (median)", full_reload_ms);
    println!("{:<52} {:>10.1}", "agent full status, fresh open (median)", full_fresh_ms);
    println!("{:<52} {:>10.3}", "agent update after touching one file (p50)", update_p50);
    println!("{:<52} {:>10.3}", "agent update after touching one file (p99)", percentile(&update_ms, 99.0));
    println!("{:<52} {:>10.1}", "watcher start to first status", first_status_ms);
    println!("{:<52} {:>10.1}", "save-to-event latency (p50)", percentile(&latency, 50.0));
    println!("{:<52} {:>10.1}", "save-to-event latency (p99)", percentile(&latency, 99.0));
    println!();
    let ratio = git_ms / update_p50;
    let full_ratio = full_warm_ms / git_ms;
    println!(
        "update vs git status: {ratio:.0}x faster (target >= 30x: {}); update p50 {update_p50:.3} ms (target <= 5 ms: {})",
        verdict(ratio >= 30.0),
        verdict(update_p50 <= 5.0)
    );
    println!(
        "full status / git status: {full_ratio:.2} (target <= 1.2: {}); after an index change: {:.2}; fresh open: {:.2}",
        verdict(full_ratio <= 1.2),
        full_reload_ms / git_ms,
        full_fresh_ms / git_ms
    );
    Ok(GitFigures {
        files: args.files,
        debounce_ms: debounce(args).as_secs_f64() * 1000.0,
        git_status_ms: git_ms,
        full_warm_ms,
        full_reload_ms,
        full_fresh_ms,
        update_p50_ms: update_p50,
        update_p99_ms: percentile(&update_ms, 99.0),
        save_to_event_p50_ms: percentile(&latency, 50.0),
        save_to_event_p99_ms: percentile(&latency, 99.0),
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn debounce(args: &GitArgs) -> Duration {
    args.debounce_ms.map(Duration::from_millis).unwrap_or_else(|| WatchConfig::default().debounce)
}

/// Starts the live watcher on the repo and measures, `samples` times, the time from a file write
/// to the watcher's status event (the write toggles the file between changed and committed).
fn save_to_event(dir: &Path, samples: usize, args: &GitArgs) -> anyhow::Result<(f64, Vec<f64>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let config = WatchConfig { debounce: debounce(args), ..WatchConfig::default() };
    let handle = RepoWatcher::start(config, None);
    let mut rx = handle.subscribe();
    let t = Instant::now();
    let info = handle.add_repo(RepoSpec::new(dir))?;
    let mut next_status = || {
        runtime.block_on(async {
            loop {
                match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                    Ok(Ok(WatchEvent::Status(status))) if status.id == info.id => return Ok(status),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => bail!("event channel: {e}"),
                    Err(_) => bail!("no status event within 30 s"),
                }
            }
        })
    };
    next_status()?;
    let first_status_ms = ms(t.elapsed());
    let mut latency = Vec::with_capacity(samples);
    let rel = file_path(args.files / 2);
    let original = file_content(args.files / 2);
    for k in 0..samples {
        let changed = k % 2 == 0;
        let text = if changed { format!("{original}saved {k}\n") } else { original.clone() };
        let t = Instant::now();
        std::fs::write(dir.join(&rel), text)?;
        let status = next_status()?;
        latency.push(ms(t.elapsed()));
        if status.modified_files.contains(&rel) != changed {
            bail!("unexpected status after save {k}: {:?}", status.modified_files);
        }
    }
    handle.shutdown();
    latency.sort_by(f64::total_cmp);
    Ok((first_status_ms, latency))
}

/// `d<top>/s<mid>/l<leaf>/f<i>.txt`: 100 files per directory, 1,110 directories for 100k files.
fn file_path(i: usize) -> String {
    format!("d{}/s{}/l{}/f{i}.txt", i / 10_000, (i / 1000) % 10, (i / 100) % 10)
}

fn file_content(i: usize) -> String {
    format!("file {i}\nsome text so that the file is not empty: {}\n", i * 31)
}

/// Generates the repo unless it is already there; returns whether it generated.
fn ensure_repo(dir: &Path, files: usize, regenerate: bool) -> anyhow::Result<bool> {
    let marker = dir.join(".git/flightdeck-bench-files");
    if !regenerate && std::fs::read_to_string(&marker).is_ok_and(|n| n.trim() == files.to_string()) {
        return Ok(false);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    let mut child = git_command(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting git fast-import")?;
    {
        let stdin = child.stdin.as_mut().context("fast-import stdin")?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
        let message = format!("{files} generated files");
        write!(out, "commit refs/heads/main\ncommitter Bench <bench@example.invalid> 1700000000 +0000\n")?;
        write!(out, "data {}\n{message}\n", message.len())?;
        let gitignore = "target/\n*.log\n";
        write!(out, "M 100644 inline .gitignore\ndata {}\n{gitignore}\n", gitignore.len())?;
        for i in 0..files {
            let content = file_content(i);
            write!(out, "M 100644 inline {}\ndata {}\n{content}\n", file_path(i), content.len())?;
        }
        out.flush()?;
    }
    if !child.wait()?.success() {
        bail!("git fast-import failed");
    }
    git(dir, &["reset", "-q", "--hard", "main"])?;
    // Ignored build output, as real repos have.
    for i in 0..1000 {
        let path = dir.join(format!("target/debug/o{}/f{i}.o", i / 100));
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(path, "object")?;
    }
    std::fs::write(marker, files.to_string())?;
    Ok(true)
}

fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1");
    command
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = git_command(dir).args(args).output().with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!("git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(sorted: &[f64]) -> f64 {
    percentile(sorted, 50.0)
}
