//! `flightdeck-bench fanout`: our relay against nats-server, one load generator per protocol.
//!
//! One publisher, N WebSocket subscribers, fixed-size payloads that start with their send time
//! and sequence number, so every delivery is a latency sample and can be checked off. For the
//! relay the publisher is an agent socket sending `task-event` chunks of one task, and the
//! subscribers are viewers of `task:<id>`; for NATS the publisher sends `PUB` on one subject and
//! the subscribers `SUB` to it, over nats-server's WebSocket listener. Both servers run with
//! their default settings (the relay's per-IP connection rate limit aside).
//!
//! The publisher runs as fast as it can while at most `window` messages are not yet delivered
//! to every live subscriber: a firehose with no such bound only measures how fast a backlog
//! grows (its p99 is the length of the run). A small window gives low latency, a large one more
//! throughput; each window in `--windows` is run against both servers, and the headline of each
//! is its best deliveries/s among the runs with p99 within the SLO (100 ms, issue 3's target),
//! the same rule for both. The windows stay within both servers' default per-subscriber limits
//! (the relay's 1024-frame viewer queue, nats' 64 MB pending), so nothing is dropped by design;
//! drops are still counted: a subscriber closed by the server, and any delivery that never
//! arrived, are reported.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{
    AgentMessage, AgentState, ClientMessage, Executor, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::Notify;

use crate::procstat::{GroupStat, ProcStat};
use crate::report::percentile;
use crate::servers::{self, Relay};
use crate::wsraw::{find, RawWs, OP_BINARY, OP_TEXT};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Subscribers of the max-rate run.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Messages published in the max-rate run.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Publisher windows to run (messages not yet delivered to every subscriber that the
    /// publisher may have out), comma-separated; the headline is the best run within the p99 SLO.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 32, 64, 96, 128, 192, 256])]
    pub windows: Vec<usize>,
    /// The latency bound (ms) a run's p99 must meet to be the headline (issue 3's target).
    #[arg(long, default_value_t = 100.0)]
    pub p99_slo_ms: f64,
    /// Idle viewers connected for the memory-per-viewer figure (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub idle_viewers: usize,
}

impl FanoutArgs {
    pub fn full() -> FanoutArgs {
        FanoutArgs {
            viewers: 1000,
            messages: 10_000,
            payload_bytes: 200,
            windows: vec![16, 32, 64, 96, 128, 192, 256],
            p99_slo_ms: 100.0,
            idle_viewers: 10_000,
        }
    }

    pub fn quick() -> FanoutArgs {
        FanoutArgs {
            viewers: 1000,
            messages: 2_000,
            payload_bytes: 200,
            windows: vec![32, 128, 256],
            p99_slo_ms: 100.0,
            idle_viewers: 2_000,
        }
    }

    fn load(&self, window: usize) -> LoadConfig {
        LoadConfig {
            viewers: self.viewers,
            messages: self.messages,
            payload_bytes: self.payload_bytes,
            window,
            interval: None,
        }
    }
}

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    pub viewers: usize,
    pub messages: usize,
    pub payload_bytes: usize,
    pub window: usize,
    /// At least this long between two sends (paced, like a model streaming); none: max rate.
    pub interval: Option<Duration>,
}

/// What one server did under one load run.
#[derive(Debug, Clone, Default)]
pub struct LoadFigures {
    pub window: usize,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered: u64,
    pub expected: u64,
    /// Subscribers the server closed (or that stalled) before getting everything.
    pub lost_subscribers: u64,
    pub elapsed_s: f64,
    /// Server CPU time over the run, in percent of one core.
    pub server_cpu_pct: f64,
    /// The server's peak resident memory.
    pub server_peak_rss_mib: f64,
    /// The load generator's own CPU, to show it did not starve the server.
    pub generator_cpu_pct: f64,
    /// Socket reads per delivery on the subscribers' side: below 1 when the server writes
    /// several messages at once.
    pub reads_per_delivery: f64,
    /// CPU of the processes beside the server (PostgreSQL, Redis), in percent of one core.
    pub beside_cpu_pct: Vec<(&'static str, f64)>,
}

/// The processes a load run measures: the server's (one process, or every relay node of a
/// cluster: their CPU and peak RSS are the run's server figures), and those beside them whose
/// CPU is reported by name. The pids beside are found when the run starts (PostgreSQL's
/// backends are there once the viewers' subscriptions have filled the nodes' pools), and the
/// same processes are read again at its end.
#[derive(Default)]
pub struct Watch {
    pub server: Vec<u32>,
    pub beside: Vec<(&'static str, FindPids)>,
}

/// Lists the pids of a group of processes when called.
pub type FindPids = Box<dyn Fn() -> Vec<u32> + Send + Sync>;

impl Watch {
    pub fn one(pid: u32) -> Watch {
        Watch { server: vec![pid], beside: Vec::new() }
    }

    fn start(&self) -> (GroupStat, Vec<GroupStat>) {
        (GroupStat::read(&self.server), self.beside.iter().map(|(_, pids)| GroupStat::read(&pids())).collect())
    }

    fn end(&self, started: &[GroupStat]) -> (GroupStat, Vec<GroupStat>) {
        let again = |g: &GroupStat| GroupStat::read(&g.procs.keys().copied().collect::<Vec<_>>());
        (GroupStat::read(&self.server), started.iter().map(again).collect())
    }
}

impl LoadFigures {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    pub fn describe(&self) -> String {
        let beside: String = self.beside_cpu_pct.iter().map(|(name, pct)| format!(", {name} CPU {pct:.0}%")).collect();
        format!(
            "window {}: {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, {}/{} delivered ({} missing, {} subscribers lost), \
             {:.1} s, server CPU {:.0}% of a core, peak RSS {:.1} MiB, generator CPU {:.0}%, \
             {:.2} subscriber reads per delivery{beside}",
            self.window,
            self.deliveries_per_s,
            self.p50_ms,
            self.p99_ms,
            self.delivered,
            self.expected,
            self.missing(),
            self.lost_subscribers,
            self.elapsed_s,
            self.server_cpu_pct,
            self.server_peak_rss_mib,
            self.generator_cpu_pct,
            self.reads_per_delivery
        )
    }
}

/// Everything `fanout` measures.
#[derive(Debug, Clone, Default)]
pub struct FanoutFigures {
    /// The headline runs (see [`headline`]).
    pub relay: LoadFigures,
    pub nats: LoadFigures,
    /// Our fastest run at a p99 no worse than the anchor headline's (see [`at_p99`]): what the
    /// "1.5x nats-server at no worse p99" target compares.
    pub relay_matched: LoadFigures,
    pub relay_idle_bytes: Option<f64>,
    pub nats_idle_bytes: Option<f64>,
}

pub async fn run(args: &FanoutArgs) -> Result<FanoutFigures> {
    let nofile = servers::raise_nofile_limit()?;
    let needed = (args.idle_viewers.max(args.viewers) + 100) as u64;
    if nofile < needed {
        bail!("RLIMIT_NOFILE is {nofile}; {needed} descriptors are needed (raise the hard limit: ulimit -Hn)");
    }
    println!(
        "fan-out: 1 publisher, {} subscribers, {} messages of {} bytes per run, windows {:?}",
        args.viewers, args.messages, args.payload_bytes, args.windows
    );
    let (mut relay_runs, mut nats_runs) = (Vec::new(), Vec::new());
    // Alternate the servers, so that both see the same background load at each window.
    for &window in &args.windows {
        let load = args.load(window.max(1));
        let relay = relay_load(&load).await.context("relay fan-out")?;
        println!("  relay:       {}", relay.describe());
        relay_runs.push(relay);
        let nats = nats_load(&load).await.context("nats-server fan-out")?;
        println!("  nats-server: {}", nats.describe());
        nats_runs.push(nats);
    }
    let relay = headline(&relay_runs, args.p99_slo_ms).context("no fan-out run")?;
    let nats = headline(&nats_runs, args.p99_slo_ms).context("no fan-out run")?;
    println!("  headline (best deliveries/s with p99 <= {} ms, else lowest p99):", args.p99_slo_ms);
    println!("    relay:       {}", relay.describe());
    println!("    nats-server: {}", nats.describe());
    let relay_matched = at_p99(&relay_runs, nats.p99_ms).unwrap_or_else(|| relay.clone());
    println!("  relay at a p99 no worse than nats-server's headline ({:.2} ms):", nats.p99_ms);
    println!("    relay:       {}", relay_matched.describe());
    let (mut relay_idle_bytes, mut nats_idle_bytes) = (None, None);
    if args.idle_viewers > 0 {
        let bytes = relay_idle(args.idle_viewers).await.context("relay idle viewers")?;
        println!("  relay:       {:.0} bytes per idle viewer ({} viewers)", bytes, args.idle_viewers);
        relay_idle_bytes = Some(bytes);
        let bytes = nats_idle(args.idle_viewers).await.context("nats-server idle subscribers")?;
        println!("  nats-server: {:.0} bytes per idle subscriber ({} subscribers)", bytes, args.idle_viewers);
        nats_idle_bytes = Some(bytes);
    }
    Ok(FanoutFigures { relay, nats, relay_matched, relay_idle_bytes, nats_idle_bytes })
}

/// The run with the most deliveries/s among those with nothing missing and p99 within the SLO;
/// when none qualifies, the one with the lowest p99. The same rule for both servers.
pub fn headline(runs: &[LoadFigures], p99_slo_ms: f64) -> Option<LoadFigures> {
    let within = runs
        .iter()
        .filter(|r| r.p99_ms <= p99_slo_ms && r.missing() == 0)
        .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s));
    within.or_else(|| runs.iter().min_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))).cloned()
}

/// The run with the most deliveries/s among those with nothing missing and a p99 of at most
/// `p99_ms`; none when no run is that fast.
pub fn at_p99(runs: &[LoadFigures], p99_ms: f64) -> Option<LoadFigures> {
    runs.iter()
        .filter(|r| r.p99_ms <= p99_ms && r.missing() == 0)
        .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s))
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// Payloads

const STAMP_DIGITS: usize = 16;
const SEQ_DIGITS: usize = 10;

/// `len` bytes: the send time (nanoseconds since `epoch`, 16 digits), the sequence number
/// (10 digits), then `x`s.
pub fn payload(epoch: Instant, seq: u32, len: usize) -> String {
    let mut s = format!("{:016}{:010}", epoch.elapsed().as_nanos() as u64, seq);
    s.extend(std::iter::repeat_n('x', len.saturating_sub(STAMP_DIGITS + SEQ_DIGITS)));
    s
}

/// The send time and sequence number at the start of a payload.
pub fn parse_stamp(bytes: &[u8]) -> Option<(u64, u32)> {
    let digits = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
    };
    let sent = digits(bytes.get(..STAMP_DIGITS)?)?;
    let seq = digits(bytes.get(STAMP_DIGITS..STAMP_DIGITS + SEQ_DIGITS)?)?;
    Some((sent, u32::try_from(seq).ok()?))
}

/// Where the payload starts in a relay `event` frame of a chunk.
const RELAY_MARKER: &[u8] = b"\"text\":\"";

// ---------------------------------------------------------------------------------------------
// The NATS text protocol, as far as a subscriber needs it

#[derive(Debug, PartialEq, Eq)]
pub enum NatsItem<'a> {
    Msg(&'a [u8]),
    Ping,
    Pong,
    Err(&'a [u8]),
    /// `INFO`, `+OK`, anything else.
    Other,
}

/// Calls `on_item` for each complete item at the start of `buf`; returns the bytes consumed.
pub fn nats_items(buf: &[u8], mut on_item: impl FnMut(NatsItem<'_>)) -> usize {
    let mut pos = 0;
    while let Some(eol) = find(&buf[pos..], b"\r\n") {
        let line = &buf[pos..pos + eol];
        if let Some(args) = line.strip_prefix(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let size = args
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0);
            let body = pos + eol + 2;
            if buf.len() < body + size + 2 {
                break;
            }
            on_item(NatsItem::Msg(&buf[body..body + size]));
            pos = body + size + 2;
            continue;
        }
        on_item(match line {
            b"PING" => NatsItem::Ping,
            b"PONG" => NatsItem::Pong,
            l if l.starts_with(b"-ERR") => NatsItem::Err(l),
            _ => NatsItem::Other,
        });
        pos += eol + 2;
    }
    pos
}

// ---------------------------------------------------------------------------------------------
// The load generator

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Relay,
    Nats,
}

/// Shared between the subscribers and the publisher: how many subscribers got each message.
struct Progress {
    counts: Vec<AtomicU32>,
    alive: AtomicUsize,
    notify: Notify,
    stop: AtomicBool,
}

impl Progress {
    fn new(messages: usize, viewers: usize) -> Progress {
        Progress {
            counts: (0..=messages).map(|_| AtomicU32::new(0)).collect(),
            alive: AtomicUsize::new(viewers),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn complete(&self, seq: usize) -> bool {
        self.counts[seq].load(Ordering::Acquire) as usize >= self.alive.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Tally {
    delivered: u64,
    reads: u64,
    latencies_us: Vec<u32>,
    last_at: Option<Instant>,
    lost: bool,
}

/// Longest wait for the next bytes before a subscriber counts as stalled.
const STALL: Duration = Duration::from_secs(15);
/// Connections being set up at once.
const CONNECT_CONCURRENCY: usize = 64;

async fn subscriber(
    mut ws: RawWs,
    proto: Proto,
    epoch: Instant,
    progress: Arc<Progress>,
    messages: usize,
) -> Result<Tally> {
    let mut tally = Tally { latencies_us: Vec::with_capacity(messages), ..Tally::default() };
    ws.set_idle_timeout(STALL);
    let mut nats_buf: Vec<u8> = Vec::new();
    let mut nats_error: Option<String> = None;
    loop {
        let mut need_pong = false;
        let mut done = false;
        let read = ws.read_frames(|opcode, frame, at| {
            match proto {
                Proto::Relay => {
                    if opcode == OP_TEXT {
                        if let Some(i) = find(frame, RELAY_MARKER) {
                            done |=
                                deliver(&frame[i + RELAY_MARKER.len()..], at, &mut tally, &progress, epoch, messages);
                        }
                    }
                }
                Proto::Nats => {
                    nats_buf.extend_from_slice(frame);
                    let consumed = nats_items(&nats_buf, |item| match item {
                        NatsItem::Msg(body) => done |= deliver(body, at, &mut tally, &progress, epoch, messages),
                        NatsItem::Ping => need_pong = true,
                        NatsItem::Err(e) => nats_error = Some(String::from_utf8_lossy(e).into_owned()),
                        NatsItem::Pong | NatsItem::Other => {}
                    });
                    nats_buf.drain(..consumed);
                }
            }
            !(done || need_pong || nats_error.is_some() || progress.stop.load(Ordering::Relaxed))
        });
        // An error is a closed connection or nothing received for STALL (see set_idle_timeout).
        let open = read.await.unwrap_or(false);
        if let Some(e) = &nats_error {
            eprintln!("nats-server: {e}");
            tally.lost = true;
            break;
        }
        if done || progress.stop.load(Ordering::Relaxed) {
            break;
        }
        if !open {
            tally.lost = true;
            break;
        }
        if need_pong {
            ws.send(OP_BINARY, b"PONG\r\n").await?;
        }
    }
    tally.reads = ws.reads;
    if tally.lost {
        progress.alive.fetch_sub(1, Ordering::AcqRel);
        progress.notify.notify_one();
    }
    Ok(tally)
}

/// Records one delivery, received at `now`; true when it was the last message.
fn deliver(
    payload: &[u8],
    now: Instant,
    tally: &mut Tally,
    progress: &Progress,
    epoch: Instant,
    messages: usize,
) -> bool {
    let Some((sent, seq)) = parse_stamp(payload) else { return false };
    let now_ns = now.duration_since(epoch).as_nanos() as u64;
    tally.latencies_us.push((now_ns.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
    tally.delivered += 1;
    tally.last_at = Some(now);
    let seq = seq as usize;
    if let Some(count) = progress.counts.get(seq) {
        let n = count.fetch_add(1, Ordering::AcqRel) + 1;
        if n as usize >= progress.alive.load(Ordering::Acquire) {
            progress.notify.notify_one();
        }
    }
    seq >= messages
}

/// Sends messages `1..=messages` with at most `window` not yet delivered to every live
/// subscriber; each is built by `frame(seq)` and sent as one WebSocket frame. Returns when the
/// last one is sent.
async fn publish(
    ws: &mut RawWs,
    opcode: u8,
    load: &LoadConfig,
    progress: &Progress,
    mut frame: impl FnMut(u32) -> Vec<u8>,
) -> Result<()> {
    let mut acked = 0usize;
    let mut next = 1usize;
    let start = tokio::time::Instant::now();
    while next <= load.messages {
        if let Some(interval) = load.interval {
            tokio::time::sleep_until(start + interval * (next as u32 - 1)).await;
        }
        while acked < next - 1 && progress.complete(acked + 1) {
            acked += 1;
        }
        if next > acked + load.window {
            if progress.alive.load(Ordering::Acquire) == 0 {
                bail!("every subscriber was lost");
            }
            // Notify keeps a permit, so a completion between the check and here is not lost.
            if tokio::time::timeout(STALL, progress.notify.notified()).await.is_err() {
                bail!("no progress for {STALL:?}: message {} never reached every subscriber", acked + 1);
            }
            continue;
        }
        let mut last = (acked + load.window).min(load.messages);
        if load.interval.is_some() {
            last = next;
        }
        let frames: Vec<Vec<u8>> = (next..=last).map(|seq| frame(seq as u32)).collect();
        ws.send_many(opcode, frames.iter().map(Vec::as_slice)).await?;
        next = last + 1;
    }
    Ok(())
}

/// Connects `n` subscribers, at most [`CONNECT_CONCURRENCY`] at a time.
async fn connect_all<F, Fut>(n: usize, connect: F) -> Result<Vec<RawWs>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<RawWs>>,
{
    futures_util::stream::iter((0..n).map(|_| connect())).buffer_unordered(CONNECT_CONCURRENCY).try_collect().await
}

/// Runs one load: spawns the subscribers, publishes, waits for them, and measures.
async fn drive(
    watch: &Watch,
    proto: Proto,
    load: &LoadConfig,
    sockets: Vec<RawWs>,
    epoch: Instant,
    publisher: &mut RawWs,
    frame: impl FnMut(u32) -> Vec<u8>,
) -> Result<LoadFigures> {
    // The relay's protocol is JSON text frames; NATS over WebSocket uses binary frames.
    let opcode = match proto {
        Proto::Relay => OP_TEXT,
        Proto::Nats => OP_BINARY,
    };
    let progress = Arc::new(Progress::new(load.messages, sockets.len()));
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(subscriber(ws, proto, epoch, progress.clone(), load.messages)))
        .collect();
    let (server_before, beside_before) = watch.start();
    let generator_before = ProcStat::read_self()?;
    let start = Instant::now();
    let published = publish(publisher, opcode, load, &progress, frame).await;
    if published.is_err() {
        progress.stop.store(true, Ordering::Relaxed);
    }
    let mut tallies = Vec::with_capacity(handles.len());
    for handle in handles {
        tallies.push(handle.await??);
    }
    let (server_after, beside_after) = watch.end(&beside_before);
    if server_after.procs.len() < watch.server.len() {
        bail!("a server process exited during the run");
    }
    let generator_after = ProcStat::read_self()?;
    published?;
    let end = tallies.iter().filter_map(|t| t.last_at).max().unwrap_or(start);
    let elapsed = end.duration_since(start);
    let delivered: u64 = tallies.iter().map(|t| t.delivered).sum();
    let lost_subscribers = tallies.iter().filter(|t| t.lost).count() as u64;
    let reads: u64 = tallies.iter().map(|t| t.reads).sum();
    let mut latencies: Vec<u32> = tallies.into_iter().flat_map(|t| t.latencies_us).collect();
    latencies.sort_unstable();
    Ok(LoadFigures {
        window: load.window,
        deliveries_per_s: delivered as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies, 50.0) / 1000.0,
        p99_ms: percentile(&latencies, 99.0) / 1000.0,
        delivered,
        expected: (load.viewers * load.messages) as u64,
        lost_subscribers,
        elapsed_s: elapsed.as_secs_f64(),
        server_cpu_pct: server_after.cpu_pct_since(&server_before),
        server_peak_rss_mib: server_after.peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        generator_cpu_pct: generator_after.cpu_pct_since(&generator_before),
        reads_per_delivery: reads as f64 / delivered.max(1) as f64,
        beside_cpu_pct: watch
            .beside
            .iter()
            .zip(beside_after.iter().zip(&beside_before))
            .map(|((name, _), (after, before))| (*name, after.cpu_pct_since(before)))
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Flightdeck relay

/// A connected agent socket that has been welcomed and has reported one running task.
pub async fn relay_agent(relay: &Relay, task_id: &str) -> Result<RawWs> {
    let auth = format!("Bearer {}", relay.agent_key);
    let mut ws = RawWs::connect(relay.server.port, "/api/ws", &[("Authorization", &auth)]).await?;
    let hello = AgentMessage::AgentStatus {
        agent_id: "bench-agent".into(),
        status: AgentState::Busy,
        capabilities: None,
        metadata: None,
        version: None,
    };
    ws.send(OP_TEXT, hello.to_json().as_bytes()).await?;
    let (i, frame) = timeout(ws.read_until(&[b"\"welcome\"", b"\"error\""])).await?;
    if i != 0 {
        bail!("the relay refused the agent: {}", String::from_utf8_lossy(&frame));
    }
    let now = chrono::Utc::now();
    let payload = TaskPayload { command: Some("bench".into()), ..TaskPayload::default() };
    let mut task = Task::queued(task_id, "bench", "bench", Executor::Shell, payload, TaskSource::Local, now);
    task.agent_id = Some("bench-agent".into());
    task.status = TaskStatus::Running;
    task.started_at = Some(now);
    ws.send(OP_TEXT, AgentMessage::TaskUpdate { task }.to_json().as_bytes()).await?;
    Ok(ws)
}

/// A viewer subscribed to `topic` (its snapshot read).
pub async fn relay_viewer(port: u16, key: &str, topic: &str) -> Result<RawWs> {
    let mut ws = RawWs::connect(port, &format!("/api/realtime?token={key}"), &[]).await?;
    let subscribe = ClientMessage::Subscribe { topics: vec![topic.into()] };
    ws.send(OP_TEXT, subscribe.to_json().as_bytes()).await?;
    let (i, frame) = timeout(ws.read_until(&[b"\"snapshot\"", b"\"error\""])).await?;
    if i != 0 {
        bail!("subscribe to {topic} refused: {}", String::from_utf8_lossy(&frame));
    }
    Ok(ws)
}

async fn timeout<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(30), f).await.context("no answer within 30 s")?
}

/// Waits until the relay has stored the task an agent reported (its topic answers a snapshot).
pub async fn wait_for_task(relay: &Relay, topic: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match relay_viewer(relay.server.port, &relay.owner_key, topic).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > until => return Err(e.context("the relay never showed the bench task")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The relay under `load`: an agent publishes chunks of one task to viewers of `task:<id>`.
pub async fn relay_load(load: &LoadConfig) -> Result<LoadFigures> {
    let relay = servers::start_relay().await?;
    let figures = relay_load_across(&relay, &[&relay], &Watch::one(relay.server.pid()), load).await;
    let mut server = relay.server;
    server.check_alive("flightdeck-relay")?;
    figures
}

/// [`relay_load`] over relay nodes that share a store and broker: the agent on `agent_node`,
/// the viewers spread evenly over `viewer_nodes` (viewer i on node i mod n).
pub async fn relay_load_across(
    agent_node: &Relay,
    viewer_nodes: &[&Relay],
    watch: &Watch,
    load: &LoadConfig,
) -> Result<LoadFigures> {
    if viewer_nodes.is_empty() {
        bail!("no node for the viewers");
    }
    let task_id = uuid::Uuid::now_v7().to_string();
    let mut agent = relay_agent(agent_node, &task_id).await?;
    let topic = format!("task:{task_id}");
    for node in viewer_nodes {
        wait_for_task(node, &topic).await?;
    }
    let key = agent_node.owner_key.clone();
    let next = AtomicUsize::new(0);
    let sockets = connect_all(load.viewers, || {
        let node = viewer_nodes[next.fetch_add(1, Ordering::Relaxed) % viewer_nodes.len()];
        relay_viewer(node.server.port, &key, &topic)
    })
    .await?;
    let epoch = Instant::now();
    let len = load.payload_bytes;
    let frame = |seq: u32| {
        let event = TaskEvent::Chunk { text: payload(epoch, seq, len), stream: ChunkStream::Stdout };
        AgentMessage::TaskEvent { task_id: task_id.clone(), seq: u64::from(seq), event }.to_json().into_bytes()
    };
    drive(watch, Proto::Relay, load, sockets, epoch, &mut agent, frame).await
}

/// Memory per idle viewer: the relay's RSS growth over `n` connected viewers of `repos`.
pub async fn relay_idle(n: usize) -> Result<f64> {
    let relay = servers::start_relay().await?;
    let (port, key) = (relay.server.port, relay.owner_key.clone());
    idle_growth(relay.server.pid(), n, || async {
        let mut ws = relay_viewer(port, &key, "repos").await?;
        ws.shrink();
        Ok(ws)
    })
    .await
}

/// RSS growth of `pid` per connection over `n` connections (after a few to warm up).
async fn idle_growth<F, Fut>(pid: u32, n: usize, connect: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<RawWs>>,
{
    let warm = connect_all(16, &connect).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = ProcStat::read(pid)?.rss_bytes;
    let sockets = connect_all(n, &connect).await?;
    // Let the server finish the work of the last connections before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = ProcStat::read(pid)?.rss_bytes;
    drop(sockets);
    drop(warm);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

// ---------------------------------------------------------------------------------------------
// nats-server

const NATS_CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":false,\"lang\":\"rust\",\"version\":\"0\"}\r\n";

/// A NATS client over WebSocket; `sub` is sent with the CONNECT, then a PING/PONG round trip
/// makes sure the server has processed both.
async fn nats_client(port: u16, sub: &[u8]) -> Result<RawWs> {
    let mut ws = RawWs::connect(port, "/", &[]).await?;
    let mut hello = NATS_CONNECT.to_vec();
    hello.extend_from_slice(sub);
    hello.extend_from_slice(b"PING\r\n");
    ws.send(OP_BINARY, &hello).await?;
    let (i, frame) = timeout(ws.read_until(&[b"PONG\r\n", b"-ERR"])).await?;
    if i != 0 {
        bail!("nats-server refused: {}", String::from_utf8_lossy(&frame));
    }
    Ok(ws)
}

/// nats-server under `load`: PUB on one subject, subscribers over WebSocket.
pub async fn nats_load(load: &LoadConfig) -> Result<LoadFigures> {
    let nats = servers::start_nats().await?;
    let port = nats.ws_port;
    let sockets = connect_all(load.viewers, || nats_client(port, b"SUB bench 1\r\n")).await?;
    let mut publisher = nats_client(port, b"").await?;
    let epoch = Instant::now();
    let len = load.payload_bytes;
    let frame = |seq: u32| {
        let body = payload(epoch, seq, len);
        format!("PUB bench {}\r\n{body}\r\n", body.len()).into_bytes()
    };
    let figures = drive(&Watch::one(nats.server.pid()), Proto::Nats, load, sockets, epoch, &mut publisher, frame).await;
    let mut server = nats.server;
    server.check_alive("nats-server")?;
    figures
}

/// Memory per idle subscriber of nats-server over WebSocket.
pub async fn nats_idle(n: usize) -> Result<f64> {
    let nats = servers::start_nats().await?;
    let port = nats.ws_port;
    idle_growth(nats.server.pid(), n, || async {
        let mut ws = nats_client(port, b"SUB bench 1\r\n").await?;
        ws.shrink();
        Ok(ws)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_send_time_and_sequence() {
        let epoch = Instant::now();
        let p = payload(epoch, 42, 200);
        assert_eq!(p.len(), 200);
        let (sent, seq) = parse_stamp(p.as_bytes()).unwrap();
        assert_eq!(seq, 42);
        assert!(sent <= epoch.elapsed().as_nanos() as u64);
        // As the relay frames it: found after the marker.
        let frame = format!(
            r#"{{"type":"event","topic":"task:t","payload":{{"seq":42,"event":{{"kind":"chunk","text":"{p}"}}}}}}"#
        );
        let at = find(frame.as_bytes(), RELAY_MARKER).unwrap() + RELAY_MARKER.len();
        assert_eq!(parse_stamp(&frame.as_bytes()[at..]), Some((sent, 42)));
        assert_eq!(parse_stamp(b"12345"), None);
        assert_eq!(parse_stamp(b"000000000000001x0000000001"), None);
    }

    fn run(window: usize, deliveries_per_s: f64, p99_ms: f64) -> LoadFigures {
        LoadFigures { window, deliveries_per_s, p99_ms, ..LoadFigures::default() }
    }

    #[test]
    fn the_headline_is_the_fastest_run_within_the_slo() {
        let runs = [run(16, 1e6, 20.0), run(64, 2e6, 80.0), run(256, 3e6, 150.0)];
        assert_eq!(headline(&runs, 100.0).unwrap().window, 64);
        assert_eq!(headline(&runs, 10.0).unwrap().window, 16);
        let mut missing = run(64, 2e6, 80.0);
        missing.expected = 10;
        assert_eq!(headline(&[run(16, 1e6, 20.0), missing], 100.0).unwrap().window, 16);
        assert!(headline(&[], 100.0).is_none());
    }

    #[test]
    fn the_matched_run_is_the_fastest_at_no_worse_p99() {
        let runs = [run(16, 1e6, 20.0), run(64, 2e6, 40.0), run(256, 3e6, 90.0)];
        assert_eq!(at_p99(&runs, 55.0).unwrap().window, 64);
        assert_eq!(at_p99(&runs, 40.0).unwrap().window, 64);
        assert_eq!(at_p99(&runs, 100.0).unwrap().window, 256);
        assert!(at_p99(&runs, 10.0).is_none());
        let mut missing = run(64, 2e6, 40.0);
        missing.expected = 10;
        assert_eq!(at_p99(&[run(16, 1e6, 20.0), missing], 55.0).unwrap().window, 16);
    }

    #[test]
    fn nats_items_stop_at_a_partial_message() {
        let stream =
            b"INFO {}\r\nMSG bench 1 5\r\nhello\r\nPING\r\nMSG bench 1 reply 3\r\nabc\r\nMSG bench 1 10\r\nparti";
        let mut items = Vec::new();
        let consumed = nats_items(stream, |item| {
            items.push(match item {
                NatsItem::Msg(b) => format!("msg {}", String::from_utf8_lossy(b)),
                other => format!("{other:?}"),
            })
        });
        assert_eq!(items, ["Other", "msg hello", "Ping", "msg abc"]);
        assert_eq!(&stream[consumed..], b"MSG bench 1 10\r\nparti");
    }
}
