//! `flightdeck-bench containers`: POST to first event of a container task (SPEC 10), with a
//! warm image.
//!
//! Starts a Podman API service on a temp socket, a `git daemon` serving a one-commit repo, and
//! a release relay with `[runner]` (host network, the release agent bind-mounted into the base
//! image), runs one task to warm up, then times `runs` shell tasks: from the `POST` to the first
//! event the relay holds from the container's agent (its `status queued`, after the container
//! started, cloned and connected), and to the task's end. Polls the events endpoint every 5 ms.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::report::percentile;
use crate::servers::{agent_binary, free_port, relay_binary, wait_for_port, Server};

#[derive(Args, Debug, Clone)]
pub struct ContainersArgs {
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// The image (built by `runner/build-image.sh --base`).
    #[arg(long, default_value = "localhost/flightdeck-runner-base:latest")]
    pub image: String,
}

#[derive(Debug, Clone, Default)]
pub struct ContainersFigures {
    pub first_event_p50_ms: f64,
    pub first_event_p90_ms: f64,
    pub end_p50_ms: f64,
}

pub async fn run(args: &ContainersArgs) -> Result<ContainersFigures> {
    let dir = tempfile::Builder::new().prefix("flightdeck-bench-containers").tempdir()?;
    // Podman's API service.
    let socket = dir.path().join("podman.sock");
    let podman = Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting podman system service (is podman installed? .ci/install)")?;
    let _podman = Server { child: podman, port: 0, log: dir.path().join("podman.log") };
    // The repo, served by git daemon.
    let repos = dir.path().join("git");
    std::fs::create_dir_all(&repos)?;
    let seed = dir.path().join("seed");
    for args in [
        vec!["init", "-q", "-b", "main", seed.to_str().unwrap()],
        vec!["-C", seed.to_str().unwrap(), "commit", "-q", "--allow-empty", "-m", "first"],
        vec!["clone", "-q", "--bare", seed.to_str().unwrap(), repos.join("demo.git").to_str().unwrap()],
    ] {
        let out = Command::new("git")
            .args(&args)
            .env("GIT_AUTHOR_NAME", "b")
            .env("GIT_AUTHOR_EMAIL", "b@b")
            .env("GIT_COMMITTER_NAME", "b")
            .env("GIT_COMMITTER_EMAIL", "b@b")
            .output()?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let git_port = free_port()?;
    let daemon = Command::new("git")
        .args(["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={git_port}"))
        .arg(format!("--base-path={}", repos.display()))
        .arg(&repos)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut daemon = Server { child: daemon, port: git_port, log: dir.path().join("git.log") };
    wait_for_port(&mut daemon, git_port, "git daemon").await?;
    let clone_url = format!("git://127.0.0.1:{git_port}/demo.git");

    // The relay.
    let relay = relay_binary()?;
    let data = dir.path().join("data");
    let admin = |args: &[&str]| -> Result<String> {
        let out = Command::new(&relay).arg("--data-dir").arg(&data).args(args).output()?;
        if !out.status.success() {
            bail!("relay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    admin(&["user", "add", "bench"])?;
    let owner = admin(&["key", "create", "--user", "bench", "--scope", "owner"])?;
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[runner]\nsocket = \"unix://{}\"\nimage = \"{}\"\nnetwork = \"host\"\nmax_running = 1\nagent_binary = \"{}\"\n\
             secrets_key_file = \"{}\"\n[runner.ulimits]\nnofile = 20000\nnproc = 32768\n",
            socket.display(),
            args.image,
            agent_binary()?.display(),
            dir.path().join("secrets.key").display()
        ),
    )?;
    let port = free_port()?;
    let log = dir.path().join("relay.log");
    // The socket must exist before the relay connects to it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("podman system service did not create {}", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child = Command::new(&relay)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut server = Server { child, port, log };
    wait_for_port(&mut server, port, "flightdeck-relay").await?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut first = Vec::new();
    let mut end = Vec::new();
    for i in 0..=args.runs {
        let started = Instant::now();
        let body = json!({"executor": "shell", "repo": "demo", "placement": "container", "cloneUrl": clone_url,
            "payload": {"command": "true"}});
        let created: Value =
            http.post(format!("{base}/api/cockpit/tasks")).bearer_auth(&owner).json(&body).send().await?.json().await?;
        let id = created["task"]["id"].as_str().context("no task id")?.to_string();
        let mut first_at = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            server.check_alive("flightdeck-relay")?;
            let events: Value = http
                .get(format!("{base}/api/cockpit/tasks/{id}/events?limit=500"))
                .bearer_auth(&owner)
                .send()
                .await?
                .json()
                .await?;
            let list = events["events"].as_array().cloned().unwrap_or_default();
            // The agent's first event is the first that is not the relay's own (`runner`).
            if first_at.is_none() && list.iter().any(|e| e["event"]["kind"] != "runner") {
                first_at = Some(started.elapsed());
            }
            let ended = list.last().is_some_and(|e| {
                e["event"]["kind"] == "runner" && matches!(e["event"]["step"].as_str(), Some("exited" | "failed"))
            });
            if ended {
                if i > 0 {
                    first.push(first_at.context("the run ended without an agent event")?.as_secs_f64() * 1000.0);
                    end.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("task {id} did not end in time: {list:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let figures = ContainersFigures {
        first_event_p50_ms: percentile(&first, 50.0),
        first_event_p90_ms: percentile(&first, 90.0),
        end_p50_ms: percentile(&end, 50.0),
    };
    println!(
        "container task, POST to the container agent's first event ({} runs, warm image): p50 {:.0} ms, p90 {:.0} ms; \
         POST to container removed: p50 {:.0} ms",
        first.len(),
        figures.first_event_p50_ms,
        figures.first_event_p90_ms,
        figures.end_p50_ms
    );
    Ok(figures)
}
