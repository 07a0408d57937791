//! `flightdeck-bench push`: how long a waiting task takes to reach the push service (SPEC 13).
//!
//! A real relay (push endpoints on 127.0.0.1 allowed) with one Web Push subscription whose
//! endpoint is a stand-in push service in this process (a bare HTTP/1.1 server that answers
//! 201). An agent (raw WebSocket) reports N permission requests one after the other; each is
//! timed from the agent's write of its `permission_request` to the moment the stand-in has read
//! the whole encrypted, VAPID-signed request for it. The decision round trip to compare it with
//! is `flightdeck-bench decisions`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use flightdeck_protocol::{AgentMessage, AgentState, Executor, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::report::percentile;
use crate::servers;
use crate::wsraw::{find, RawWs};

#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// Permission requests, one after the other.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

#[derive(Debug, Clone, Default)]
pub struct PushFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
}

/// A browser's keys (the example subscription of RFC 8291, section 5): the relay needs a valid
/// point to encrypt for; nobody decrypts here (the relay's tests do).
const P256DH: &str = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

pub async fn run(args: &PushArgs) -> Result<PushFigures> {
    let relay = servers::start_relay().await?;
    let port = relay.server.port;
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = service.accept().await {
            tokio::spawn(push_service_connection(stream, arrivals.clone()));
        }
    });

    let subscription =
        json!({"endpoint": format!("http://{service_addr}/push/bench"), "keys": {"p256dh": P256DH, "auth": AUTH}});
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/push/subscriptions"))
        .bearer_auth(&relay.owner_key)
        .json(&subscription)
        .send()
        .await?;
    if response.status() != 201 {
        bail!("subscribing: {} {}", response.status(), response.text().await.unwrap_or_default());
    }

    let auth = format!("Bearer {}", relay.agent_key);
    let mut agent = RawWs::connect(port, "/api/ws", &[("Authorization", &auth)]).await?;
    let status = AgentMessage::AgentStatus {
        agent_id: "bench-push".into(),
        status: AgentState::Online,
        capabilities: None,
        metadata: None,
        version: None,
    };
    agent.send(1, serde_json::to_string(&status)?.as_bytes()).await?;
    agent.read_until(&[b"welcome"]).await.context("no welcome")?;
    let payload = TaskPayload { prompt: Some("ask me".into()), ..Default::default() };
    let id = uuid::Uuid::now_v7().to_string();
    let task = Task {
        agent_id: Some("bench-push".into()),
        status: TaskStatus::Waiting,
        ..Task::queued(id.clone(), "ask me", "bench", Executor::Claude, payload, TaskSource::Local, chrono::Utc::now())
    };
    agent.send(1, serde_json::to_string(&AgentMessage::TaskUpdate { task })?.as_bytes()).await?;

    let mut samples = Vec::with_capacity(args.requests);
    for seq in 1..=args.requests as u64 {
        let event = TaskEvent::PermissionRequest {
            request_id: format!("toolu_{seq}"),
            tool_name: "Bash".into(),
            input: json!({"command": format!("make step-{seq}")}),
            description: None,
            suggestions: None,
        };
        let frame = serde_json::to_string(&AgentMessage::TaskEvent { task_id: id.clone(), seq, event })?;
        let started = Instant::now();
        agent.send(1, frame.as_bytes()).await?;
        let at = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
            .await
            .context("no push within 30 s")?
            .context("the stand-in stopped")?;
        samples.push(at.saturating_duration_since(started).as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let figures =
        PushFigures { p50_ms: percentile(&samples, 50.0), p99_ms: percentile(&samples, 99.0), requests: samples.len() };
    println!(
        "push: permission request -> encrypted request at the push service: p50 {:.2} ms, p99 {:.2} ms ({} requests; \
         compare `flightdeck-bench decisions` for the decision round trip)",
        figures.p50_ms, figures.p99_ms, figures.requests
    );
    Ok(figures)
}

/// One keep-alive connection of the stand-in: reads each request whole (headers, then
/// `Content-Length` bytes), notes when, and answers 201.
async fn push_service_connection(mut stream: tokio::net::TcpStream, arrivals: mpsc::UnboundedSender<Instant>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = arrivals.send(Instant::now());
        buf.drain(..head_end + length);
        if stream.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}
