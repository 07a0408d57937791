//! End to end, issue 6: real `flightdeck-relay` and `flightdeck-agent` processes, a real
//! WebSocket viewer, real git repos, the real Claude Code CLI against a scripted API.
//!
//! Nothing is lost: a relay killed mid-task, a network cut longer than the backoff cap, a task
//! posted while no agent is online, and an agent killed mid-task all end with the viewer's
//! snapshot holding the whole transcript (seq 1..N, no gaps, no duplicates) or the right status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::realtime::{HudEvent, HudSnapshot, TaskSnapshot, TopicEvent, TopicSnapshot};
use flightdeck_protocol::{ClientMessage, SeqEvent, ServerMessage, Task, TaskEvent, TaskStatus, Topic};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::git_repo;
use crate::support::scripted_api::{self, ScriptedApi};

const DEADLINE: Duration = Duration::from_secs(30);

/// Tries `attempt` until it succeeds, failing the test at the deadline with the last reason.
/// For state only reachable by asking again (an HTTP answer, a port that opens).
pub(crate) async fn eventually<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A built binary of the workspace, next to this test executable.
pub(crate) fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap(); // target/<profile>/deps -> target/<profile>
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as ./dev test does) or set {env}",
        path.display()
    );
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A relay process on a fixed port (so it can be restarted on the same address).
pub(crate) struct Relay {
    bin: PathBuf,
    pub(crate) data: tempfile::TempDir,
    pub(crate) port: u16,
    proc: Option<Proc>,
    pub(crate) owner: String,
    agent: String,
    /// A `--config` TOML file (container runs configure `[runner]` there).
    config: Option<PathBuf>,
}

impl Relay {
    pub(crate) async fn start() -> Relay {
        Relay::start_with_config(None).await
    }

    /// A relay whose `--config` file holds `toml`.
    pub(crate) async fn start_with_config(toml: Option<&str>) -> Relay {
        let bin = workspace_bin("flightdeck-relay", "FLIGHTDECK_RELAY_BIN");
        let data = tempfile::tempdir().unwrap();
        let admin = |args: &[&str]| -> String {
            let out = Command::new(&bin).arg("--data-dir").arg(data.path()).args(args).output().unwrap();
            assert!(out.status.success(), "relay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        admin(&["user", "add", "alice"]);
        let owner = admin(&["key", "create", "--user", "alice", "--scope", "owner"]);
        let agent = admin(&["key", "create", "--user", "alice", "--scope", "agent"]);
        let config = toml.map(|text| {
            let path = data.path().join("relay.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut relay = Relay { bin, data, port: free_port(), proc: None, owner, agent, config };
        relay.restart().await;
        relay
    }

    pub(crate) async fn restart(&mut self) {
        let mut command = Command::new(&self.bin);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let child = command
            .args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data.path())
            .env("FLIGHTDECK_RELAY_HEARTBEAT_MS", "500")
            .env("FLIGHTDECK_RELAY_PONG_TIMEOUT_MS", "2000")
            .env("FLIGHTDECK_RELAY_WS_CONNECTIONS_PER_MINUTE", "100000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        let health = format!("{}/healthz", self.http());
        eventually("the relay comes up", || async {
            match reqwest::get(&health).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("/healthz answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// The agent key the relay was started with.
    pub(crate) fn agent_key(&self) -> &str {
        &self.agent
    }

    pub(crate) fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut req = client.request(method, format!("{}{path}", self.http())).bearer_auth(&self.owner);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn task(&self, id: &str) -> Task {
        let (status, body) = self.api(reqwest::Method::GET, &format!("/api/cockpit/tasks/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["task"].clone()).unwrap()
    }

    pub(crate) async fn wait_task(&self, id: &str, what: &str, pick: impl Fn(&Task) -> bool) -> Task {
        let path = format!("/api/cockpit/tasks/{id}");
        eventually(what, || async {
            let (status, body) = self.api(reqwest::Method::GET, &path, None).await;
            if status != 200 {
                return Err(format!("GET task answered {status} {body}"));
            }
            let task: Task = serde_json::from_value(body["task"].clone()).unwrap();
            if pick(&task) {
                Ok(task)
            } else {
                Err(format!("task is {task:?}"))
            }
        })
        .await
    }
}

/// A `flightdeck-agent run` process.
pub(crate) struct Agent {
    pub(crate) proc: Proc,
}

pub(crate) struct AgentOptions<'a> {
    pub(crate) relay_url: String,
    pub(crate) key: &'a str,
    pub(crate) repo: &'a Path,
    pub(crate) data: &'a Path,
    pub(crate) claude_api: Option<&'a str>,
    pub(crate) home: &'a Path,
}

impl Agent {
    /// SIGKILLs the agent.
    pub(crate) fn kill(&mut self) {
        self.proc.kill();
    }

    pub(crate) fn start(o: AgentOptions<'_>) -> Agent {
        Agent { proc: Proc(Agent::command(o).spawn().unwrap()) }
    }

    /// The `flightdeck-agent run` command line (stdout and stderr discarded).
    fn command(o: AgentOptions<'_>) -> Command {
        let bin = env!("CARGO_BIN_EXE_flightdeck-agent");
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--relay", &o.relay_url, "--key", o.key, "--repo"])
            .arg(o.repo)
            .arg("--data-dir")
            .arg(o.data)
            .env("FLIGHTDECK_AGENT_AGENT_ID", "e2e-agent")
            .env("FLIGHTDECK_AGENT_LINK_BACKOFF_CAP_MS", "2000")
            .env("HOME", o.home)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(api) = o.claude_api {
            cmd.env("FLIGHTDECK_CLAUDE_BIN", claude_bin())
                .env("ANTHROPIC_BASE_URL", api)
                .env("ANTHROPIC_API_KEY", "test")
                .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        }
        cmd
    }
}

fn claude_bin() -> PathBuf {
    std::env::var("FLIGHTDECK_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/claude"))
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A realtime viewer with the owner's key.
pub(crate) struct Viewer {
    pub(crate) ws: Ws,
}

impl Viewer {
    /// Connects (retrying while a restarted relay comes back) and subscribes.
    pub(crate) async fn connect(relay: &Relay, topics: &[String]) -> Viewer {
        let url = format!("ws://127.0.0.1:{}/api/realtime?token={}", relay.port, relay.owner);
        let mut ws = eventually("a viewer connects", || async {
            tokio_tungstenite::connect_async(&url).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
        })
        .await;
        ws.send(Message::text(ClientMessage::Subscribe { topics: topics.to_vec() }.to_json())).await.unwrap();
        Viewer { ws }
    }

    pub(crate) async fn next(&mut self, deadline: Instant) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("viewer: no message in time");
            match frame {
                Some(Ok(Message::Text(t))) => return ServerMessage::parse(t.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("viewer socket ended: {other:?}"),
            }
        }
    }

    /// Reads until `pick` returns something, within the deadline.
    pub(crate) async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&Topic, bool, Value) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.next(deadline))
                .await
                .unwrap_or_else(|_| panic!("viewer: timed out waiting for {what}"));
            match message {
                ServerMessage::Snapshot { topic, payload } => {
                    if let Some(t) = pick(&topic.parse().unwrap(), true, payload) {
                        return t;
                    }
                }
                ServerMessage::Event { topic, payload } => {
                    if let Some(t) = pick(&topic.parse().unwrap(), false, payload) {
                        return t;
                    }
                }
                ServerMessage::Error { message, topic, .. } => panic!("viewer error {message} on {topic:?}"),
                ServerMessage::Pong {} => {}
            }
        }
    }

    /// Follows `task:<id>` until the task is finished; returns the final snapshot-equivalent
    /// (task and every event seen, in arrival order) for gap and duplicate checks.
    async fn follow_task(&mut self, id: &str) -> (Task, Vec<SeqEvent>) {
        let mut events: Vec<SeqEvent> = Vec::new();
        let mut task: Option<Task> = None;
        let deadline = Instant::now() + DEADLINE;
        loop {
            match task_topic_update(self.next(deadline).await, id) {
                Some(TaskTopicUpdate::Snapshot(snap)) => {
                    task = Some(snap.task);
                    events = snap.events;
                }
                Some(TaskTopicUpdate::Event(e)) => events.push(e),
                None => continue,
            }
            let finished = events.iter().any(|e| matches!(e.event, TaskEvent::Done { .. } | TaskEvent::Error { .. }));
            if finished {
                let t = task.clone().expect("a snapshot came first");
                return (t, events);
            }
        }
    }
}

/// What a `task:<id>` subscription brings: the snapshot (it replaces what a viewer holds) or an
/// event (it appends).
enum TaskTopicUpdate {
    Snapshot(Box<TaskSnapshot>),
    Event(SeqEvent),
}

/// The update a message carries for `task:<id>`; `None` for pongs and other topics. An error
/// message fails the test.
fn task_topic_update(message: ServerMessage, id: &str) -> Option<TaskTopicUpdate> {
    let (topic, snapshot, payload) = match message {
        ServerMessage::Snapshot { topic, payload } => (topic, true, payload),
        ServerMessage::Event { topic, payload } => (topic, false, payload),
        ServerMessage::Error { message, .. } => panic!("viewer error: {message}"),
        ServerMessage::Pong {} => return None,
    };
    if topic != format!("task:{id}") {
        return None;
    }
    let topic: Topic = topic.parse().unwrap();
    if snapshot {
        let TopicSnapshot::Task(snap) = TopicSnapshot::decode(&topic, payload).unwrap() else { unreachable!() };
        return Some(TaskTopicUpdate::Snapshot(snap));
    }
    match TopicEvent::decode(&topic, payload).unwrap() {
        TopicEvent::TaskEvent(e) => Some(TaskTopicUpdate::Event(e)),
        other => panic!("unexpected task topic event {other:?}"),
    }
}

/// Whether `pid` runs (a zombie waiting to be reaped does not count).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)).map(|state| state != "Z"))
        .unwrap_or(false)
}

/// Seqs are exactly 1..=N.
pub(crate) fn assert_whole(events: &[SeqEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "transcript has gaps, duplicates or disorder");
}

fn stdout_lines(events: &[SeqEvent]) -> Vec<String> {
    let text: String = events
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Chunk { text, stream: ChunkStream::Stdout } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    text.lines().map(str::to_string).collect()
}

pub(crate) struct Setup {
    pub(crate) relay: Relay,
    pub(crate) repo: tempfile::TempDir,
    pub(crate) agent_data: tempfile::TempDir,
    pub(crate) home: tempfile::TempDir,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        Setup {
            relay: Relay::start().await,
            repo: git_repo(),
            agent_data: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn slug(&self) -> String {
        flightdeck_protocol::names::slugify(&self.repo.path().file_name().unwrap().to_string_lossy())
    }

    pub(crate) fn agent(&self, relay_url: String, claude_api: Option<&str>) -> Agent {
        Agent::start(self.agent_options(relay_url, claude_api))
    }

    /// An agent with more environment (`FLIGHTDECK_AGENT_*` settings).
    pub(crate) fn agent_with_env(&self, relay_url: String, env: &[(&str, &str)]) -> Agent {
        let mut cmd = Agent::command(self.agent_options(relay_url, None));
        cmd.envs(env.iter().copied());
        Agent { proc: Proc(cmd.spawn().unwrap()) }
    }

    fn agent_options<'a>(&'a self, relay_url: String, claude_api: Option<&'a str>) -> AgentOptions<'a> {
        AgentOptions {
            relay_url,
            key: &self.relay.agent,
            repo: self.repo.path(),
            data: self.agent_data.path(),
            claude_api,
            home: self.home.path(),
        }
    }

    /// Waits until the relay lists the agent's repo (the agent is connected and synced).
    pub(crate) async fn wait_repo_known(&self) {
        let slug = self.slug();
        eventually("the relay lists the agent's repo", || async {
            let (_, body) = self.relay.api(reqwest::Method::GET, "/api/cockpit/repos", None).await;
            if body["repos"].as_array().is_some_and(|r| r.iter().any(|r| r["name"] == slug.as_str())) {
                Ok(())
            } else {
                Err(format!("no repo {slug} in {body}"))
            }
        })
        .await
    }

    async fn post_shell(&self, command: &str) -> String {
        let body = json!({"executor": "shell", "repo": self.slug(), "payload": {"command": command}});
        let (status, body) = self.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body["task"]["id"].as_str().unwrap().to_string()
    }
}

/// A shell command printing `n` numbered lines, one every `gap_ms`.
fn counting(n: u32, gap_ms: u32) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo line $i; i=$((i+1)); sleep {}; done", gap_ms as f64 / 1000.0)
}

fn expected_lines(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("line {i}")).collect()
}

// a. A file change in a watched repo reaches a viewer of `repos` and of `hud:<user>/<repo>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_change_reaches_repos_and_hud_viewers() {
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let slug = s.slug();
    let hud = format!("hud:alice/{slug}");
    let mut viewer = Viewer::connect(&s.relay, &["repos".into(), hud.clone()]).await;
    // Both snapshots first: clean repo.
    let mut snapshots = 0;
    viewer
        .until("both snapshots", |_, snapshot, _| {
            snapshots += snapshot as u32;
            (snapshots == 2).then_some(())
        })
        .await;
    std::fs::write(s.repo.path().join("new-file.txt"), "hello").unwrap();
    let mut seen_repos = false;
    let mut seen_hud = false;
    viewer
        .until("the untracked file on both topics", |topic, snapshot, payload| {
            if snapshot {
                return None;
            }
            match (topic, TopicEvent::decode(topic, payload).unwrap()) {
                (Topic::Repos, TopicEvent::Repo(flightdeck_protocol::realtime::RepoEvent::Status(r))) => {
                    // The owner's own `repos` topic carries the path.
                    seen_repos |= r.name == slug
                        && r.untracked_count == 1
                        && r.modified_files.contains(&"new-file.txt".to_string())
                        && r.path.is_some();
                }
                (Topic::Hud { .. }, TopicEvent::Hud(HudEvent::RepoStatus { repo_status })) => {
                    // A HUD topic may be public: it never carries the owner-only path.
                    assert_eq!(repo_status.path, None, "a HUD payload leaked the repo path");
                    seen_hud |= repo_status.untracked_count == 1;
                }
                _ => {}
            }
            (seen_repos && seen_hud).then_some(())
        })
        .await;
}

// b. A Claude task (real CLI, scripted API) created by REST streams to `task:` and `hud:`
//    viewers, complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_task_from_rest_streams_to_viewers_in_order() {
    let api = ScriptedApi::start(vec![
        scripted_api::bash_turn(
            "msg_1",
            120,
            &["Let me ", "look."],
            "toolu_01",
            "echo from-bash > bash-was-here.txt",
            20,
        ),
        scripted_api::text_turn("msg_2", 160, &["All ", "done."], 12),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let slug = s.slug();
    let body = json!({"executor": "claude", "repo": slug, "payload": {"prompt": "make a file", "allowedTools": ["Bash"], "permissionMode": "acceptEdits"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let hud = format!("hud:alice/{slug}");
    let mut task_viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let mut hud_viewer = Viewer::connect(&s.relay, &[hud]).await;
    let (_, events) = task_viewer.follow_task(&id).await;
    assert_whole(&events);
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    let assistant: String = events
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Chunk { text, stream: ChunkStream::Assistant } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(assistant, "Let me look.All done.", "kinds: {kinds:?}");
    assert!(kinds.contains(&"tool_start") && kinds.contains(&"tool_done") && kinds.contains(&"usage"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert!(s.repo.path().join("bash-was-here.txt").exists(), "the tool really ran in the repo");

    // The HUD viewer sees the same transcript: its snapshot (and events) end with `done`.
    let mut hud_events: BTreeMap<u64, TaskEvent> = BTreeMap::new();
    hud_viewer
        .until("the HUD transcript", |topic, snapshot, payload| {
            if snapshot {
                let TopicSnapshot::Hud(h) = TopicSnapshot::decode(topic, payload).unwrap() else { return None };
                let HudSnapshot { events, .. } = *h;
                for e in events {
                    assert!(hud_events.insert(e.seq, e.event).is_none(), "duplicate seq in HUD snapshot");
                }
            } else if let TopicEvent::Hud(HudEvent::TaskEvent(r)) = TopicEvent::decode(topic, payload).unwrap() {
                assert!(hud_events.insert(r.seq, r.event).is_none(), "duplicate seq {} on the HUD", r.seq);
            }
            (hud_events.len() == events.len()).then_some(())
        })
        .await;
    let hud_list: Vec<SeqEvent> = hud_events.into_iter().map(|(seq, event)| SeqEvent { seq, event }).collect();
    assert_eq!(hud_list, events);
    let task = s.relay.wait_task(&id, "completed with usage", |t| t.status == TaskStatus::Completed).await;
    assert!(task.input_tokens.unwrap_or(0) > 0 && task.cost_usd.unwrap_or(0.0) > 0.0, "{task:?}");
}

// c. SIGKILL the relay mid-task and restart it on the same data dir: the viewer reconnects and
//    its snapshot holds the whole transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_task_loses_nothing() {
    let mut s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let id = s.post_shell(&counting(30, 50)).await;
    let topic = format!("task:{id}");
    let mut viewer = Viewer::connect(&s.relay, std::slice::from_ref(&topic)).await;
    viewer
        .until("a few lines streamed", |topic, snapshot, payload| {
            let n = if snapshot {
                match TopicSnapshot::decode(topic, payload).unwrap() {
                    TopicSnapshot::Task(t) => t.events.len(),
                    _ => 0,
                }
            } else {
                match TopicEvent::decode(topic, payload).unwrap() {
                    TopicEvent::TaskEvent(e) => e.seq as usize,
                    _ => 0,
                }
            };
            (n >= 5).then_some(())
        })
        .await;
    s.relay.kill();
    drop(viewer);
    s.relay.restart().await;
    // The task finishes on the agent whether or not the relay is up; wait until the relay has it all.
    let task = s.relay.wait_task(&id, "completed at the relay", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    let mut viewer = Viewer::connect(&s.relay, std::slice::from_ref(&topic)).await;
    let (_, events) = viewer.follow_task(&id).await;
    assert_whole(&events);
    assert_eq!(stdout_lines(&events), expected_lines(30));
    assert_eq!(events.len() as u64, task.last_seq);
}

// c2. A task that ends while the relay is down: when the agent is back, the relay shows the task
//     ended only once it holds the whole transcript (a client reading the events of an ended task
//     gets them all), at every moment it can be asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ended_offline_is_shown_ended_only_with_its_whole_transcript() {
    const LINES: u64 = 5000;
    let mut s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let go = s.home.path().join("go");
    let command = format!("while [ ! -e '{}' ]; do sleep 0.02; done; seq 1 {LINES}", go.display());
    let id = s.post_shell(&command).await;
    s.relay.wait_task(&id, "running", |t| t.status == TaskStatus::Running).await;
    s.relay.kill();
    std::fs::write(&go, "").unwrap();
    let store = flightdeck_agent_core::store::Store::open(s.agent_data.path()).unwrap();
    let ended = eventually("the task ended on the agent", || async {
        match store.task(&id).unwrap() {
            Some(t) if t.status.is_terminal() => Ok(t),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(ended.status, TaskStatus::Completed);
    s.relay.restart().await;
    let seen = std::sync::Mutex::new(Vec::new());
    let task = eventually("the relay has the task ended", || async {
        let task = s.relay.task(&id).await;
        seen.lock().unwrap().push((task.status, task.last_seq));
        if task.status.is_terminal() {
            Ok(task)
        } else {
            Err(format!("{task:?}"))
        }
    })
    .await;
    assert_eq!(
        task.last_seq,
        ended.last_seq,
        "ended at the relay before its transcript was whole; seen {:?}",
        seen.lock().unwrap()
    );
    assert!(ended.last_seq > LINES / 10, "the transcript has many events: {}", ended.last_seq);
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let (_, events) = viewer.follow_task(&id).await;
    assert_whole(&events);
    assert_eq!(events.len() as u64, ended.last_seq);
}

/// A TCP proxy that can cut every connection and refuse new ones, then heal.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    drop(client); // refused while cut
                    continue;
                }
                let mut cut_signal = g.subscribe();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut uw) => {}
                        _ = tokio::io::copy(&mut ur, &mut cw) => {}
                        _ = cut_signal.changed() => {}
                    }
                });
            }
        });
        Proxy { port, cut, generation }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

// d. Cut the network between agent and relay for longer than the backoff cap: same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_longer_than_backoff_cap_loses_nothing() {
    let s = Setup::new().await;
    let proxy = Proxy::start(s.relay.port).await;
    let _agent = s.agent(format!("http://127.0.0.1:{}", proxy.port), None);
    s.wait_repo_known().await;
    let id = s.post_shell(&counting(40, 100)).await;
    s.relay.wait_task(&id, "a few events at the relay", |t| t.last_seq >= 3).await;
    proxy.cut();
    // Longer than the agent's backoff cap (2 s in this test): several attempts are refused.
    let cut_at = Instant::now();
    s.relay.wait_task(&id, "the relay holds the task while cut", |_| cut_at.elapsed() > Duration::from_secs(3)).await;
    proxy.heal();
    let task = s.relay.wait_task(&id, "completed at the relay", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let (_, events) = viewer.follow_task(&id).await;
    assert_whole(&events);
    assert_eq!(stdout_lines(&events), expected_lines(40));
}

// e. A task posted while no agent is online runs when one connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_posted_while_offline_runs_when_the_agent_connects() {
    let s = Setup::new().await;
    // The relay learns the repo from a first agent session, then the agent goes away.
    let mut first = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    first.proc.kill();
    let id = s.post_shell("echo ran-after-connect").await;
    let queued = s.relay.task(&id).await;
    assert_eq!(queued.status, TaskStatus::Queued);
    let _agent = s.agent(s.relay.http(), None);
    let task = s.relay.wait_task(&id, "completed", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let (_, events) = viewer.follow_task(&id).await;
    assert_whole(&events);
    assert_eq!(stdout_lines(&events), vec!["ran-after-connect".to_string()]);
}

// f. SIGKILL the agent mid-task: after restart the task is `interrupted` everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_task_is_interrupted_everywhere() {
    let s = Setup::new().await;
    let mut agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    // The task's shell writes its pid down: it leads the task's own process group, which
    // outlives the killed agent until the restarted agent stops it.
    let pid_file = s.home.path().join("task.pid");
    // Silent after its first line: a task writing to the dead agent's pipe would die of SIGPIPE
    // by itself, a quiet one (a long build, a long tool call) would not.
    let id = s.post_shell(&format!("echo $$ > '{}'; echo started; sleep 600", pid_file.display())).await;
    s.relay.wait_task(&id, "running with output", |t| t.status == TaskStatus::Running && t.last_seq >= 3).await;
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    agent.proc.kill();
    assert!(alive(pid), "the task's shell outlives the SIGKILLed agent (its own process group)");
    let _agent = s.agent(s.relay.http(), None);
    let task = s.relay.wait_task(&id, "interrupted at the relay", |t| t.status == TaskStatus::Interrupted).await;
    assert!(task.finished_at.is_some());
    eventually("the restarted agent stops the orphaned task", || async {
        if alive(pid) {
            Err(format!("pid {pid} still runs"))
        } else {
            Ok(())
        }
    })
    .await;
    // The local database agrees.
    let store = flightdeck_agent_core::store::Store::open(s.agent_data.path()).unwrap();
    assert_eq!(store.task(&id).unwrap().unwrap().status, TaskStatus::Interrupted);
    // A viewer's snapshot says so too, with a whole transcript.
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let snapshot = viewer
        .until("the task snapshot", |topic, snapshot, payload| {
            if !snapshot {
                return None;
            }
            match TopicSnapshot::decode(topic, payload).unwrap() {
                TopicSnapshot::Task(t) => Some(*t),
                _ => None,
            }
        })
        .await;
    assert_eq!(snapshot.task.status, TaskStatus::Interrupted);
    assert_whole(&snapshot.events);
    let alerts = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts", None).await.1;
    assert!(
        alerts["alerts"].as_array().unwrap().iter().any(|a| a["taskId"] == id.as_str()),
        "an alert names the interrupted task: {alerts}"
    );
}

/// Reads a `task:` subscription until the task's final `status` event, keeping the transcript
/// as a viewer would (the snapshot replaces, events append). Returns what the viewer holds.
pub(crate) async fn transcript_until_end(ws: &mut Ws, id: &str, deadline: Instant) -> Result<Vec<SeqEvent>, u16> {
    let mut events: Vec<SeqEvent> = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.expect("viewer: the task did not end in time");
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code)).unwrap_or(1005)),
            Some(Ok(_)) => continue,
            // Ended without a close frame (1006): a viewer that read nothing for seconds cannot
            // be sent one, its socket is full of older frames.
            Some(Err(_)) | None => return Err(1006),
        };
        match task_topic_update(ServerMessage::parse(text.as_str()).unwrap(), id) {
            Some(TaskTopicUpdate::Snapshot(snap)) => events = snap.events,
            Some(TaskTopicUpdate::Event(e)) => events.push(e),
            None => continue,
        }
        let ended =
            events.last().is_some_and(|e| matches!(&e.event, TaskEvent::Status { status, .. } if status.is_terminal()));
        if ended {
            return Ok(events);
        }
    }
}

/// Every event of a task over `GET .../events`, page by page.
pub(crate) async fn rest_transcript(relay: &Relay, id: &str) -> Vec<SeqEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/cockpit/tasks/{id}/events?after={after}&limit=500");
        let (status, body) = relay.api(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        let page: Vec<SeqEvent> = serde_json::from_value(body["events"].clone()).unwrap();
        if page.is_empty() {
            return out;
        }
        after = body["nextAfter"].as_u64().unwrap();
        out.extend(page);
    }
}

/// `lines` lines printed as fast as the shell can, through a real agent and relay, watched by a
/// live viewer and by a viewer that reads nothing until the relay has the whole task. Every
/// `seq` arrives once and in order at the relay, in both viewers and over REST.
async fn burst_arrives_whole(lines: u32, command: &str, expected: impl Fn(u32) -> String) {
    const WITHIN: Duration = Duration::from_secs(240);
    let _turn = crate::support::throughput_test().await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let started = Instant::now();
    let id = s.post_shell(command).await;
    let topics = [format!("task:{id}")];
    let mut live = Viewer::connect(&s.relay, &topics).await;
    let mut slow = Viewer::connect(&s.relay, &topics).await;
    let deadline = Instant::now() + WITHIN;
    // A live viewer that falls behind the burst catches up from what the relay stored: it is
    // never closed (it used to be closed as too slow and come back for a whole snapshot).
    let seen = transcript_until_end(&mut live.ws, &id, deadline)
        .await
        .unwrap_or_else(|code| panic!("the live viewer was closed with {code}"));
    let elapsed = started.elapsed();
    // The stdout chunks, the status events around them, nothing missing.
    assert_whole(&seen);
    let want: Vec<String> = (1..=lines).map(&expected).collect();
    assert_eq!(stdout_lines(&seen), want, "the live viewer's output");
    let total = seen.len() as u64;
    eprintln!(
        "burst of {lines} lines: {total} events through agent and relay to a viewer in {:.2} s ({:.0} events/s; \
         the live viewer was never closed)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    let task = s.relay.wait_task(&id, "the relay has the whole task", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.last_seq, total, "the relay's lastSeq");
    let rest = rest_transcript(&s.relay, &id).await;
    assert_eq!(rest, seen, "GET .../events holds the same transcript");

    // The slow viewer either kept everything queued or was closed as too slow (4001); after a
    // reconnect its snapshot is the whole transcript.
    let slow_seen = match transcript_until_end(&mut slow.ws, &id, deadline).await {
        Ok(events) => events,
        Err(code) => {
            assert!(
                code == flightdeck_protocol::close::TOO_SLOW || code == 1006,
                "a slow viewer is closed as too slow (4001, or cut when even that frame cannot reach it), not {code}"
            );
            let mut again = Viewer::connect(&s.relay, &topics).await;
            transcript_until_end(&mut again.ws, &id, deadline).await.expect("a fresh snapshot")
        }
    };
    assert_eq!(slow_seen, seen, "the slow viewer ends with the same transcript");
}

// The burst: 50,000 lines at full speed lost events on the way to the relay when the
// link followed a lossy broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50k_lines_arrives_whole() {
    burst_arrives_whole(50_000, "seq -f 'line %g of the burst, with some text' 1 50000", |i| {
        format!("line {i} of the burst, with some text")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200k_short_lines_arrives_whole() {
    burst_arrives_whole(200_000, "seq 1 200000", |i| i.to_string()).await;
}

/// Posts a shell task with a title and waits until the relay has it finished.
async fn run_titled(s: &Setup, title: &str, command: &str) -> Task {
    let body = json!({"title": title, "executor": "shell", "repo": s.slug(), "payload": {"command": command}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    s.relay.wait_task(&id, "the task ends at the relay", |t| t.status.is_terminal()).await
}

async fn relay_alert(relay: &Relay, id: &str) -> Value {
    let (status, body) = relay.api(reqwest::Method::GET, "/api/cockpit/alerts?limit=500", None).await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap_or(Value::Null)
}

// An acknowledgement made at the relay is never undone by the agent resending its alerts, after
// an agent restart or a relay restart; and a title given over REST is the task's title when it
// runs (the agent used to derive it again from the command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_rest_titles_survive_restarts() {
    let mut s = Setup::new().await;
    let mut agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let failed = run_titled(&s, "My nightly check", "echo checking; exit 3").await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.title, "My nightly check", "the REST title is kept when the task runs");

    let alert_id = eventually("the task_failed alert reaches the relay", || async {
        let (_, body) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?limit=500", None).await;
        body["alerts"]
            .as_array()
            .and_then(|alerts| alerts.iter().find(|a| a["taskId"] == failed.id.as_str()))
            .map(|a| a["id"].as_str().unwrap().to_string())
            .ok_or_else(|| format!("no alert for the task in {body}"))
    })
    .await;
    let (status, body) =
        s.relay.api(reqwest::Method::POST, &format!("/api/cockpit/alerts/ack/{alert_id}"), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alert"]["acknowledged"], true);

    // The agent restarts: it resends its alerts (unacknowledged on its side) after `welcome`.
    agent.proc.kill();
    agent = s.agent(s.relay.http(), None);
    // A task run after the restart proves the agent reconnected and its resend is done.
    assert_eq!(run_titled(&s, "after the agent restart", "true").await.status, TaskStatus::Completed);
    let alert = relay_alert(&s.relay, &alert_id).await;
    assert_eq!(alert["acknowledged"], true, "an agent restart undid the acknowledgement: {alert}");

    // The relay restarts on the same data dir; the agent reconnects and resends again.
    s.relay.kill();
    s.relay.restart().await;
    assert_eq!(run_titled(&s, "after the relay restart", "true").await.status, TaskStatus::Completed);
    let alert = relay_alert(&s.relay, &alert_id).await;
    assert_eq!(alert["acknowledged"], true, "a relay restart undid the acknowledgement: {alert}");
    let unacked = {
        let (_, body) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
        body["alerts"].as_array().unwrap().iter().any(|a| a["id"] == alert_id.as_str())
    };
    assert!(!unacked, "the acknowledged alert is listed as unacknowledged");
    drop(agent);
}

/// Waits for a child to exit; returns its status and what it wrote on stderr.
async fn exit_of(mut child: Child) -> (std::process::ExitStatus, String) {
    let status = eventually("the agent exits", || {
        let status = child.try_wait();
        async move {
            match status {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

// A link that the relay ends for good says so and does not pretend to retry: with its key
// revoked, or replaced by another agent with the same id, the headless agent prints why and
// exits with status 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_link_ends_stop_the_headless_agent_with_the_reason() {
    let s = Setup::new().await;
    let spawn = |extra: &[&str]| {
        let mut cmd = Agent::command(s.agent_options(s.relay.http(), None));
        cmd.args(extra).env("RUST_LOG", "error").stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };

    // Replaced: a second agent with the same id connects; the first one stops.
    let first = spawn(&[]);
    s.wait_repo_known().await;
    let second = Proc(spawn(&[]));
    let (status, stderr) = exit_of(first).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("stopped: another agent connected with the same agent id"), "{stderr}");
    assert!(stderr.contains("link_replaced"), "{stderr}");
    assert!(!stderr.contains(", retrying"), "a stopped link does not say it is retrying: {stderr}");
    drop(second);

    // Revoked: the key of the running agent is revoked through the admin CLI.
    let agent = spawn(&[]);
    let list =
        Command::new(&s.relay.bin).arg("--data-dir").arg(s.relay.data.path()).args(["key", "list"]).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let prefix: String = s.relay.agent.chars().take(12).collect();
    let key_id =
        list.lines().find(|l| l.contains(&prefix)).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    eventually("the agent is online", || async {
        let (_, body) = s.relay.api(reqwest::Method::GET, "/api/cockpit/agents", None).await;
        let online = body["agents"].as_array().is_some_and(|a| a.iter().any(|a| a["status"] != "offline"));
        if online {
            Ok(())
        } else {
            Err(format!("{body}"))
        }
    })
    .await;
    let out = Command::new(&s.relay.bin)
        .arg("--data-dir")
        .arg(s.relay.data.path())
        .args(["key", "revoke", &key_id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, stderr) = exit_of(agent).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("stopped: the relay revoked this agent's key"), "{stderr}");
    assert!(stderr.contains("link_key_revoked"), "{stderr}");
}
