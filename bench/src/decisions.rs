//! `flightdeck-bench decisions`: the round trip of a remote decision (SPEC 8).
//!
//! A stand-in for the Claude Code CLI (this binary's hidden `fake-claude` command, speaking the
//! same stream-json control protocol on stdin and stdout) asks for a tool N times, one after
//! the other. Each request goes: CLI `can_use_tool` -> a real `flightdeck-agent run` -> a real
//! relay -> the owner's viewer of `task:<id>`, which at once POSTs the decision over REST ->
//! relay -> agent -> the CLI's `control_response`. The stand-in times each round trip from its
//! write to the answer it reads; the viewer decides with no think time, so nothing is excluded.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fanout;
use crate::report::percentile;
use crate::servers::{self, Server};
use crate::wsraw::find;

#[derive(Args, Debug, Clone)]
pub struct DecisionsArgs {
    /// Permission requests, one after the other.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DecisionFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
}

/// The stand-in CLI's arguments: whatever the agent passes (ignored).
#[derive(Args, Debug, Clone)]
pub struct FakeClaudeArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub async fn run(args: &DecisionsArgs) -> Result<DecisionFigures> {
    let relay = servers::start_relay().await?;
    let root = relay.dir.path();
    let repo = root.join("bench-repo");
    std::fs::create_dir_all(&repo)?;
    let init = Command::new("git").args(["init", "-q", "-b", "main"]).arg(&repo).output()?;
    if !init.status.success() {
        bail!("git init failed");
    }
    // The agent runs the stand-in as its Claude Code CLI.
    let fake = root.join("fake-claude");
    let me = std::env::current_exe()?;
    std::fs::write(&fake, format!("#!/bin/sh\nexec '{}' fake-claude \"$@\"\n", me.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    }
    let out_file = root.join("round-trips.txt");
    let log = root.join("agent.log");
    let child = servers::agent_command(&relay, &repo, "bench-decisions", &log)?
        .env("FLIGHTDECK_CLAUDE_BIN", &fake)
        .env("FLIGHTDECK_BENCH_REQUESTS", args.requests.to_string())
        .env("FLIGHTDECK_BENCH_OUT", &out_file)
        .spawn()
        .context("starting flightdeck-agent run")?;
    let mut agent = Server { child, port: 0, log };

    // Wait until the relay knows the agent's repo, then start the task.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(relay.server.port, "GET", "/api/cockpit/repos", &relay.owner_key, None).await?;
        if body.contains("bench-repo") {
            break;
        }
        agent.check_alive("flightdeck-agent")?;
        if Instant::now() > deadline {
            bail!("the agent's repo never reached the relay");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let create = json!({"executor": "claude", "repo": "bench-repo", "payload": {"prompt": "ask me"}}).to_string();
    let (status, body) = http(relay.server.port, "POST", "/api/cockpit/tasks", &relay.owner_key, Some(&create)).await?;
    if status != 201 {
        bail!("creating the task: {status} {body}");
    }
    let task: Value = serde_json::from_str(&body)?;
    let id = task["task"]["id"].as_str().context("a task id")?.to_string();

    // The owner's viewer decides each request as soon as it sees it.
    let mut viewer = fanout::relay_viewer(relay.server.port, &relay.owner_key, &format!("task:{id}")).await?;
    let mut decided = 0;
    let mut done = false;
    while !done && decided < args.requests {
        let mut requests = Vec::new();
        let read = viewer.read_frames(|_, frame, _| {
            if find(frame, b"permission_request").is_some() {
                if let Ok(value) = serde_json::from_slice::<Value>(frame) {
                    collect_requests(&value, &mut requests);
                }
            }
            if find(frame, b"\"done\"").is_some() {
                done = true;
            }
            requests.is_empty() && !done
        });
        tokio::time::timeout(Duration::from_secs(30), read).await.context("no request within 30 s")??;
        for request_id in requests {
            let path = format!("/api/cockpit/tasks/{id}/permissions/{request_id}");
            let (status, body) =
                http(relay.server.port, "POST", &path, &relay.owner_key, Some(r#"{"behavior":"allow"}"#)).await?;
            if status == 200 {
                decided += 1;
            } else if status != 409 {
                bail!("deciding {request_id}: {status} {body}");
            }
        }
    }
    // The stand-in writes its figures when its last request was answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round_trips: Vec<f64> = loop {
        if let Ok(text) = std::fs::read_to_string(&out_file) {
            let values: Vec<f64> = text.lines().filter_map(|l| l.parse().ok()).collect();
            if values.len() >= args.requests {
                break values;
            }
        }
        agent.check_alive("flightdeck-agent")?;
        if Instant::now() > deadline {
            bail!("the stand-in CLI never reported its round trips");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    round_trips.sort_by(f64::total_cmp);
    let figures = DecisionFigures {
        p50_ms: percentile(&round_trips, 50.0),
        p99_ms: percentile(&round_trips, 99.0),
        requests: round_trips.len(),
    };
    println!(
        "decision round trip ({} requests): p50 {:.1} ms, p99 {:.1} ms (target p99 <= 50 ms)",
        figures.requests, figures.p50_ms, figures.p99_ms
    );
    Ok(figures)
}

/// The request ids of `permission_request` events in a snapshot or an event frame.
fn collect_requests(frame: &Value, out: &mut Vec<String>) {
    let payload = &frame["payload"];
    let events: Vec<&Value> = match payload["events"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![payload],
    };
    for e in events {
        if e["event"]["kind"] == "permission_request" {
            if let Some(id) = e["event"]["requestId"].as_str() {
                out.push(id.to_string());
            }
        }
    }
}

/// One HTTP/1.1 request with the owner key; returns the status and the body.
pub(crate) async fn http(port: u16, method: &str, path: &str, key: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("an HTTP status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The stand-in CLI: the handshake, then `FLIGHTDECK_BENCH_REQUESTS` permission requests in a
/// row, each timed from its write to its answer, then a `result`. Blocking stdio, on purpose:
/// nothing else happens in this process.
pub fn fake_claude(_args: &FakeClaudeArgs) -> Result<()> {
    let requests: usize = std::env::var("FLIGHTDECK_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let out: PathBuf = std::env::var_os("FLIGHTDECK_BENCH_OUT").map(PathBuf::from).context("FLIGHTDECK_BENCH_OUT")?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut stdout = std::io::stdout().lock();
    // The handshake and the prompt.
    for _ in 0..2 {
        lines.next().context("the agent closed stdin early")??;
    }
    let session = uuid::Uuid::new_v4().to_string();
    writeln!(stdout, "{}", json!({"type": "system", "subtype": "init", "model": "fake", "session_id": session}))?;
    stdout.flush()?;
    let mut round_trips = Vec::with_capacity(requests);
    for i in 0..requests {
        let request_id = format!("req-{i}");
        let started = Instant::now();
        let line = json!({"type": "control_request", "request_id": request_id, "request": {
            "subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": format!("echo {i}")}}});
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        loop {
            let line = lines.next().context("the agent closed stdin before answering")??;
            let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if value["type"] == "control_response" && value["response"]["request_id"] == request_id.as_str() {
                round_trips.push(started.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let text: String = round_trips.iter().map(|ms| format!("{ms}\n")).collect();
    std::fs::write(&out, text)?;
    let result = json!({"type": "result", "subtype": "success", "is_error": false, "result": "decided",
        "total_cost_usd": 0.0, "usage": {"input_tokens": 0, "output_tokens": 0}});
    writeln!(stdout, "{result}")?;
    stdout.flush()?;
    Ok(())
}
