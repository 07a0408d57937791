//! `flightdeck-bench hook`: the time `flightdeck-agent hook` adds to each Claude Code hook call
//! (SPEC 9: under 100 ms, and nothing printed, when no agent runs or the session's directory is
//! not in a watched repo). Claude Code starts the hook as a process and waits for it, so the
//! figure is the wall time from spawn to exit with the hook's JSON on stdin; the anchor is the
//! same for `/bin/true`, the least any hook command costs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::report::percentile;
use crate::servers::{self, Server};

#[derive(Args, Debug, Clone)]
pub struct HookArgs {
    /// Calls per case.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
}

#[derive(Debug, Clone, Default)]
pub struct HookFigures {
    /// `/bin/true` with the same stdin.
    pub anchor_p50_ms: f64,
    pub no_agent_p50_ms: f64,
    pub no_agent_p99_ms: f64,
    /// An agent runs, the session's directory is in none of its repos.
    pub unwatched_p50_ms: f64,
    pub unwatched_p99_ms: f64,
}

pub fn run(args: &HookArgs) -> Result<HookFigures> {
    let agent = servers::agent_binary()?;
    let dir = tempfile::tempdir()?;
    let (data, repo, elsewhere) = (dir.path().join("data"), dir.path().join("repo"), dir.path().join("elsewhere"));
    for d in [&repo, &elsewhere] {
        std::fs::create_dir_all(d)?;
        let out = Command::new("git").args(["init", "-q"]).arg(d).output()?;
        if !out.status.success() {
            bail!("git init failed");
        }
    }
    let input = serde_json::json!({
        "session_id": "bench", "transcript_path": elsewhere.join("bench.jsonl"), "cwd": elsewhere,
        "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1",
    })
    .to_string();
    let hook = |program: &Path, args: &[&std::ffi::OsStr]| -> Result<Duration> {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        // `/bin/true` exits without reading: a broken pipe is its answer, not an error.
        let _ = child.stdin.take().context("stdin")?.write_all(input.as_bytes());
        let out = child.wait_with_output()?;
        let elapsed = started.elapsed();
        if !out.status.success() || !out.stdout.is_empty() {
            bail!("the hook exited with {} and printed {:?}", out.status, String::from_utf8_lossy(&out.stdout));
        }
        Ok(elapsed)
    };
    let hook_args = [std::ffi::OsStr::new("hook"), std::ffi::OsStr::new("--data-dir"), data.as_os_str()];
    let calls = args.calls.max(1);
    let sample = |program: &Path, args: &[&std::ffi::OsStr]| -> Result<Vec<f64>> {
        for _ in 0..5 {
            hook(program, args)?; // Warm the page cache.
        }
        let mut ms = Vec::with_capacity(calls);
        for _ in 0..calls {
            ms.push(hook(program, args)?.as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms)
    };

    let anchor = sample(Path::new("/bin/true"), &[])?;
    let no_agent = sample(&agent, &hook_args)?;
    println!(
        "hook, no agent: p50 {:.2} ms, p99 {:.2} ms (/bin/true p50 {:.2} ms)",
        percentile(&no_agent, 50.0),
        percentile(&no_agent, 99.0),
        percentile(&anchor, 50.0)
    );

    let log = dir.path().join("agent.log");
    let child = Command::new(&agent)
        .args(["run", "--repo"])
        .arg(&repo)
        .arg("--data-dir")
        .arg(&data)
        .env("FLIGHTDECK_AGENT_AGENT_ID", "bench-hook")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting flightdeck-agent run")?;
    let mut server = Server { child, port: 0, log };
    let socket = data.join("agent.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        server.check_alive("flightdeck-agent")?;
        if Instant::now() > deadline {
            bail!("the agent's control socket did not open within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let unwatched = sample(&agent, &hook_args)?;
    println!(
        "hook, agent running, directory not watched: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&unwatched, 50.0),
        percentile(&unwatched, 99.0)
    );
    Ok(HookFigures {
        anchor_p50_ms: percentile(&anchor, 50.0),
        no_agent_p50_ms: percentile(&no_agent, 50.0),
        no_agent_p99_ms: percentile(&no_agent, 99.0),
        unwatched_p50_ms: percentile(&unwatched, 50.0),
        unwatched_p99_ms: percentile(&unwatched, 99.0),
    })
}
