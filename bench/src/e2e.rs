//! `flightdeck-bench e2e`: end to end through a real relay.
//!
//! - Save to viewer: a real `flightdeck-agent run` watches a small repo and is connected to a
//!   real relay; a viewer of `repos` waits for the status that follows each save (the file
//!   toggles between changed and committed, so every save changes the status).
//! - Claude chunk to 100 viewers: an agent socket sends `task-event` chunks one at a time, 5 ms
//!   apart (and never before every viewer of `task:<id>` has the last), so each latency is the
//!   time the relay adds to a chunk: parse, store in SQLite, fan out, write. The same with
//!   nats-server (which stores nothing) as the anchor.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::fanout::{self, LoadConfig, LoadFigures};
use crate::report::percentile;
use crate::servers::{self, Server};
use crate::wsraw::find;

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    /// Saves timed from the file write to the viewer's update.
    #[arg(long, default_value_t = 50)]
    pub saves: usize,
    /// Viewers of the task in the chunk run.
    #[arg(long, default_value_t = 100)]
    pub chunk_viewers: usize,
    /// Chunks sent in the chunk run.
    #[arg(long, default_value_t = 1000)]
    pub chunks: usize,
    /// Milliseconds between two chunks (a model streams; it does not flood).
    #[arg(long, default_value_t = 5)]
    pub chunk_interval_ms: u64,
}

impl E2eArgs {
    pub fn full() -> E2eArgs {
        E2eArgs { saves: 50, chunk_viewers: 100, chunks: 1000, chunk_interval_ms: 5 }
    }

    pub fn quick() -> E2eArgs {
        E2eArgs { saves: 30, chunk_viewers: 100, chunks: 300, chunk_interval_ms: 5 }
    }
}

#[derive(Debug, Clone, Default)]
pub struct E2eFigures {
    pub save_p50_ms: f64,
    pub save_p99_ms: f64,
    pub chunk_relay: LoadFigures,
    pub chunk_nats: LoadFigures,
}

pub async fn run(args: &E2eArgs) -> Result<E2eFigures> {
    let latencies = save_to_viewer(args.saves).await.context("save to viewer")?;
    let (save_p50_ms, save_p99_ms) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    println!("save to viewer ({} saves): p50 {save_p50_ms:.1} ms, p99 {save_p99_ms:.1} ms", latencies.len());
    let load = LoadConfig {
        viewers: args.chunk_viewers,
        messages: args.chunks,
        payload_bytes: 200,
        window: 1,
        interval: Some(Duration::from_millis(args.chunk_interval_ms)),
    };
    let chunk_relay = fanout::relay_load(&load).await.context("relay chunk fan-out")?;
    println!("chunk to {} viewers, relay:       {}", args.chunk_viewers, chunk_relay.describe());
    let chunk_nats = fanout::nats_load(&load).await.context("nats-server chunk fan-out")?;
    println!("chunk to {} viewers, nats-server: {}", args.chunk_viewers, chunk_nats.describe());
    Ok(E2eFigures { save_p50_ms, save_p99_ms, chunk_relay, chunk_nats })
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Sorted save-to-viewer latencies in milliseconds.
async fn save_to_viewer(saves: usize) -> Result<Vec<f64>> {
    let relay = servers::start_relay().await?;
    let root = relay.dir.path();
    let repo = root.join("bench-repo");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    let original = "fn main() {}\n";
    std::fs::write(repo.join("main.rs"), original)?;
    git(&repo, &["add", "."])?;
    git(&repo, &["commit", "-q", "-m", "first"])?;

    // Subscribe before the agent connects, so its first status arrives as an event.
    let mut viewer = fanout::relay_viewer(relay.server.port, &relay.owner_key, "repos").await?;
    let log = root.join("agent.log");
    let child =
        servers::agent_command(&relay, &repo, "bench-e2e", &log)?.spawn().context("starting flightdeck-agent run")?;
    let mut agent = Server { child, port: 0, log };

    // The repo's first status: clean.
    wait_repo_event(&mut viewer, &mut agent, false)
        .await
        .context("the agent's first status never reached the viewer")?;
    let mut latencies = Vec::with_capacity(saves);
    for k in 0..saves {
        let changed = k % 2 == 0;
        let text = if changed { format!("{original}// save {k}\n") } else { original.to_string() };
        // Saves a person makes are far apart; this keeps one save's update from merging with
        // the next one's in the watcher's debounce window.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t = Instant::now();
        std::fs::write(repo.join("main.rs"), text)?;
        wait_repo_event(&mut viewer, &mut agent, changed).await.with_context(|| format!("save {k}"))?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    agent.check_alive("flightdeck-agent")?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Reads `repos` frames until the repo's status shows `main.rs` modified (or not).
async fn wait_repo_event(viewer: &mut crate::wsraw::RawWs, agent: &mut Server, modified: bool) -> Result<()> {
    let mut matched = false;
    let read = viewer.read_frames(|_, frame, _| {
        if find(frame, b"\"event\"").is_none() {
            return true;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(frame) else { return true };
        let files = &value["payload"]["modifiedFiles"];
        let Some(files) = files.as_array() else { return true };
        if files.iter().any(|f| f == "main.rs") == modified {
            matched = true;
            return false;
        }
        true
    });
    match tokio::time::timeout(Duration::from_secs(15), read).await {
        Ok(Ok(_)) if matched => Ok(()),
        Ok(Ok(_)) => bail!("the viewer's connection closed"),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            agent.check_alive("flightdeck-agent")?;
            bail!("no update within 15 s")
        }
    }
}
