//! `flightdeck-bench acp`: the POST of a task to its first chunk at a viewer, for an `acp` task
//! (Claude Code through `claude-code-acp`) beside a `claude` task (the native executor), with
//! the same script (SPEC 14).
//!
//! A real relay and a real `flightdeck-agent run`; the agent runs the Claude Code CLI and
//! claude-code-acp of tools/ (`npm ci` there), both against the one scripted Messages API of the
//! node tests (e2e/lib/scripted-api.mjs, run by `node` on 127.0.0.1), whose every turn says the
//! same two text parts. The runs alternate between the two executors, one task at a time; each
//! is timed from the `POST` to the first `chunk` its viewer of `task:<id>` receives (the viewer
//! subscribes right after the POST: the snapshot holds whatever came before), and waits for the
//! task's end before the next.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::decisions::http;
use crate::fanout;
use crate::report::percentile;
use crate::servers::{self, Server};
use crate::wsraw::find;

#[derive(Args, Debug, Clone)]
pub struct AcpArgs {
    /// Timed runs of each executor (after one warm-up run of each).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AcpFigures {
    pub claude_first_chunk_p50_ms: f64,
    pub acp_first_chunk_p50_ms: f64,
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin")
}

pub async fn run(args: &AcpArgs) -> Result<AcpFigures> {
    let claude = tools().join("claude");
    let claude_acp = tools().join("claude-code-acp");
    for bin in [&claude, &claude_acp] {
        if !bin.exists() {
            bail!("{} is not installed: run `npm ci` in tools/", bin.display());
        }
    }
    let relay = servers::start_relay().await?;
    let root = relay.dir.path();
    // Every run's streaming request gets a turn; Claude Code may ask more than once per task.
    let api = scripted_api(root, 8 * (args.runs + 1))?;
    let repo = root.join("bench-repo");
    std::fs::create_dir_all(&repo)?;
    let init = Command::new("git").args(["init", "-q", "-b", "main"]).arg(&repo).output()?;
    if !init.status.success() {
        bail!("git init failed");
    }
    let home = root.join("home");
    std::fs::create_dir_all(&home)?;
    let log = root.join("agent.log");
    let agents = json!({"claude-acp": claude_acp.display().to_string()}).to_string();
    let child = servers::agent_command(&relay, &repo, "bench-acp", &log)?
        .env("FLIGHTDECK_CLAUDE_BIN", &claude)
        .env("FLIGHTDECK_AGENT_ACP_AGENTS", agents)
        .env("ANTHROPIC_BASE_URL", &api.url)
        .env("ANTHROPIC_API_KEY", "bench")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("HOME", &home)
        // claude-code-acp offers Claude Code's bypass mode, which it refuses as root unless told
        // it is sandboxed (the bench box runs as root).
        .env("IS_SANDBOX", "1")
        .spawn()
        .context("starting flightdeck-agent run")?;
    let mut agent = Server { child, port: 0, log };

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

    let claude_task = json!({"executor": "claude", "repo": "bench-repo", "payload": {"prompt": "Say hello"}});
    let acp_task = json!({"executor": "acp", "repo": "bench-repo",
        "payload": {"prompt": "Say hello", "agent": "claude-acp"}});
    let (mut claude_ms, mut acp_ms) = (Vec::new(), Vec::new());
    for run in 0..=args.runs {
        for (task, out) in [(&claude_task, &mut claude_ms), (&acp_task, &mut acp_ms)] {
            let ms = first_chunk_ms(&relay, task).await.with_context(|| format!("run {run}: {}", task["executor"]))?;
            agent.check_alive("flightdeck-agent")?;
            // Run 0 warms up (the CLI's and Node's files in the page cache).
            if run > 0 {
                out.push(ms);
            }
        }
    }
    claude_ms.sort_by(f64::total_cmp);
    acp_ms.sort_by(f64::total_cmp);
    let figures = AcpFigures {
        claude_first_chunk_p50_ms: percentile(&claude_ms, 50.0),
        acp_first_chunk_p50_ms: percentile(&acp_ms, 50.0),
    };
    println!(
        "POST to first chunk ({} runs each): claude executor p50 {:.0} ms (max {:.0}), acp (claude-code-acp) p50 {:.0} ms (max {:.0})",
        args.runs,
        figures.claude_first_chunk_p50_ms,
        claude_ms.last().copied().unwrap_or_default(),
        figures.acp_first_chunk_p50_ms,
        acp_ms.last().copied().unwrap_or_default(),
    );
    Ok(figures)
}

/// POSTs `task`, then follows it: milliseconds from the POST to its first chunk; returns once
/// the task is done.
async fn first_chunk_ms(relay: &servers::Relay, task: &Value) -> Result<f64> {
    let started = Instant::now();
    let (status, body) =
        http(relay.server.port, "POST", "/api/cockpit/tasks", &relay.owner_key, Some(&task.to_string())).await?;
    if status != 201 {
        bail!("creating the task: {status} {body}");
    }
    let created: Value = serde_json::from_str(&body)?;
    let id = created["task"]["id"].as_str().context("a task id")?.to_string();
    let mut viewer = fanout::relay_viewer(relay.server.port, &relay.owner_key, &format!("task:{id}")).await?;
    let mut first_chunk = None;
    let mut ended = false;
    let read = viewer.read_frames(|_, frame, at| {
        if first_chunk.is_none() && find(frame, b"\"kind\":\"chunk\"").is_some() {
            first_chunk = Some(at.duration_since(started));
        }
        // The task's last event: its final status.
        for end in [&b"\"status\":\"completed\""[..], b"\"status\":\"failed\"", b"\"status\":\"cancelled\""] {
            ended |= find(frame, end).is_some();
        }
        !ended
    });
    tokio::time::timeout(Duration::from_secs(60), read).await.context("the task did not end within 60 s")??;
    let first_chunk = first_chunk.with_context(|| format!("task {id} ended without a chunk"))?;
    Ok(first_chunk.as_secs_f64() * 1000.0)
}

/// The scripted Messages API of the node tests, with `turns` turns that each say the same.
struct ScriptedApi {
    url: String,
    _server: Server,
}

fn scripted_api(root: &Path, turns: usize) -> Result<ScriptedApi> {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/lib/scripted-api.mjs").canonicalize()?;
    let script = "const [module, count] = process.argv.slice(-2);
        const { ScriptedApi, textTurn } = await import(module);
        const turns = Array.from({ length: Number(count) }, (_, i) => textTurn(`msg_${i}`, ['Hello ', 'from the script.']));
        const api = await ScriptedApi.start(turns);
        console.log(api.url);";
    let log = root.join("scripted-api.log");
    let mut child = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .arg(format!("file://{}", module.display()))
        .arg(turns.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting node (the scripted API)")?;
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().context("node's stdout")?).read_line(&mut url)?;
    let server = Server { child, port: 0, log };
    let url = url.trim().to_string();
    if !url.starts_with("http://") {
        bail!("the scripted API did not start (see {})", server.log.display());
    }
    Ok(ScriptedApi { url, _server: server })
}
