//! Test harness: a real relay on 127.0.0.1:0 per test, keys made in its database, and
//! WebSocket and HTTP clients. Waits are conditions with deadlines, never bare sleeps.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::{AgentMessage, AgentState, RelayMessage, RepoStatus, ServerMessage};
use flightdeck_relay::{Db, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The keys every test relay has.
#[derive(Debug, Clone)]
pub struct Keys {
    pub owner: String,
    pub owner_id: String,
    pub agent: String,
    pub agent_id: String,
    pub viewer: String,
    /// bob's owner key: another user.
    pub other: String,
    /// alice's owner key, revoked before the server starts.
    pub revoked: String,
}

pub struct Relay {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub keys: Keys,
    _tempdir: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for tests: everything fast, limits out of the way unless a test sets them.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        ws_connections_per_minute: 1_000_000,
        logins_per_minute: 1_000_000,
        revocation_poll_ms: 50,
        ..Settings::default()
    }
}

fn make_keys(dir: &std::path::Path) -> Keys {
    let mut db = Db::open_in(dir).unwrap();
    db.add_user("alice").unwrap();
    db.add_user("bob").unwrap();
    let owner = db.create_key("alice", KeyScope::Owner).unwrap();
    let agent = db.create_key("alice", KeyScope::Agent).unwrap();
    let viewer = db.create_key("alice", KeyScope::Viewer).unwrap();
    let other = db.create_key("bob", KeyScope::Owner).unwrap();
    let revoked = db.create_key("alice", KeyScope::Owner).unwrap();
    assert!(db.revoke_key(&revoked.id).unwrap());
    Keys {
        owner: owner.secret,
        owner_id: owner.id,
        agent: agent.secret,
        agent_id: agent.id,
        viewer: viewer.secret,
        other: other.secret,
        revoked: revoked.secret,
    }
}

impl Relay {
    pub async fn start() -> Relay {
        Relay::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> Relay {
        let tempdir = tempfile::tempdir().unwrap();
        let dir = tempdir.path().to_path_buf();
        let keys = make_keys(&dir);
        let mut settings = test_settings(&dir);
        configure(&mut settings);
        let mut relay = Relay::launch(settings, keys).await;
        relay._tempdir = Some(tempdir);
        relay
    }

    /// A relay whose push sender the test builds (its clock, its resolver).
    pub async fn start_with_push(
        configure: impl FnOnce(&mut Settings),
        push: impl FnOnce(&Settings) -> flightdeck_relay::push::Push,
    ) -> Relay {
        let tempdir = tempfile::tempdir().unwrap();
        let dir = tempdir.path().to_path_buf();
        let keys = make_keys(&dir);
        let mut settings = test_settings(&dir);
        configure(&mut settings);
        let push = push(&settings);
        let mut relay = Relay::launch_with_push(settings, keys, push).await;
        relay._tempdir = Some(tempdir);
        relay
    }

    /// Starts a relay on an existing data dir (a restart).
    pub async fn launch(settings: Settings, keys: Keys) -> Relay {
        let push = flightdeck_relay::push::Push::new(&settings);
        Relay::launch_with_push(settings, keys, push).await
    }

    async fn launch_with_push(settings: Settings, keys: Keys, push: flightdeck_relay::push::Push) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let dir = settings.data_dir.clone();
        let handle = tokio::spawn(flightdeck_relay::run_with_push(listener, settings, push, async move {
            let _ = stopped.await;
        }));
        Relay { addr, dir, keys, _tempdir: None, stop: Some(stop), handle: Some(handle) }
    }

    /// Stops the server gracefully and waits for it; keeps the data dir.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(DEADLINE, handle).await.expect("relay stops in time").unwrap().unwrap();
        }
    }

    /// Hands over the temp dir so a restarted relay can use it.
    pub fn take_tempdir(&mut self) -> Option<TempDir> {
        self._tempdir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().build().unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self.http().get(self.url(path)).bearer_auth(key).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let r = self.http().post(self.url(path)).bearer_auth(key).json(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sets alice's HUD of `repo` with her owner key, and checks it was accepted.
    pub async fn set_hud(&self, repo: &str, public: bool, embed_allowed: bool) {
        let r = self
            .http()
            .put(self.url(&format!("/api/hud/settings?repo=alice/{repo}")))
            .bearer_auth(&self.keys.owner)
            .json(&serde_json::json!({"public": public, "embedAllowed": embed_allowed}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "PUT /api/hud/settings for alice/{repo}");
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http().get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }

    /// An agent socket, before `agent-status`.
    pub async fn agent_socket(&self, key: &str) -> Ws {
        let mut request = self.ws_url("/api/ws").into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await.expect("agent connects").0
    }

    /// An agent that said `agent-status` and got `welcome`; returns the welcome's lastSeqs.
    pub async fn agent(&self, agent_id: &str) -> (Ws, std::collections::BTreeMap<String, u64>) {
        let mut ws = self.agent_socket(&self.keys.agent).await;
        send(&mut ws, &status_message(agent_id)).await;
        match recv_relay(&mut ws).await {
            RelayMessage::Welcome { agent_id: id, last_seqs, heartbeat_secs } => {
                assert_eq!(id, agent_id);
                assert!(heartbeat_secs >= 1);
                (ws, last_seqs)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// A viewer socket; `token` goes in the query string.
    pub async fn viewer(&self, token: Option<&str>) -> Ws {
        let url = match token {
            Some(t) => self.ws_url(&format!("/api/realtime?token={t}")),
            None => self.ws_url("/api/realtime"),
        };
        tokio_tungstenite::connect_async(url).await.expect("viewer connects").0
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn status_message(agent_id: &str) -> AgentMessage {
    AgentMessage::AgentStatus {
        agent_id: agent_id.into(),
        status: AgentState::Online,
        capabilities: Some(vec!["git".into(), "shell".into()]),
        metadata: Some(serde_json::Map::from_iter([("host".to_string(), Value::from("secret-host.local"))])),
        version: Some("0.1.0".into()),
    }
}

pub fn repo(name: &str, status: flightdeck_protocol::RepoState) -> RepoStatus {
    let mut r = RepoStatus::new(format!("id-{name}"), name);
    r.path = Some(format!("/home/alice/src/{name}"));
    r.branch = Some("main".into());
    r.status = status;
    if status == flightdeck_protocol::RepoState::Dirty {
        r.uncommitted_count = 2;
        r.modified_files = vec!["src/lib.rs".into(), "README.md".into()];
    }
    r
}

pub async fn send(ws: &mut Ws, message: &impl serde::Serialize) {
    ws.send(Message::text(serde_json::to_string(message).unwrap())).await.unwrap();
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_string())).await.unwrap();
}

/// The next text frame as JSON, within the deadline.
pub async fn recv_json(ws: &mut Ws) -> Value {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str::<Value>(&t).unwrap(),
                Some(Ok(Message::Close(frame))) => panic!("socket closed: {frame:?}"),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, next).await.expect("a message arrives in time")
}

pub async fn recv_relay(ws: &mut Ws) -> RelayMessage {
    let v = recv_json(ws).await;
    RelayMessage::parse(&v.to_string()).unwrap_or_else(|e| panic!("not a relay message: {v}: {e}"))
}

/// An invalid frame, answered by an error: what the agent sent before it has been handled, and
/// what the relay sent the agent before that error has been read.
pub async fn barrier(agent: &mut Ws) {
    send_text(agent, r#"{"type":"barrier"}"#).await;
    match recv_relay_skip_pings(agent).await {
        RelayMessage::Error { .. } => {}
        other => panic!("expected the barrier's error, got {other:?}"),
    }
}

/// The next relay message that is not a ping or a status request.
pub async fn recv_relay_skip_pings(ws: &mut Ws) -> RelayMessage {
    loop {
        match recv_relay(ws).await {
            RelayMessage::Ping { .. } | RelayMessage::StatusRequest {} => continue,
            other => return other,
        }
    }
}

pub async fn recv_server(ws: &mut Ws) -> ServerMessage {
    let v = recv_json(ws).await;
    ServerMessage::parse(&v.to_string()).unwrap_or_else(|e| panic!("not a server message: {v}: {e}"))
}

/// Reads (and drops) frames until the close frame; returns its code and reason.
pub async fn recv_close(ws: &mut Ws) -> (u16, String) {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, next).await.expect("the socket closes in time")
}

/// Subscribes to one topic and returns the snapshot payload (panics on an error answer).
pub async fn subscribe(ws: &mut Ws, topic: &str) -> Value {
    send(ws, &flightdeck_protocol::ClientMessage::Subscribe { topics: vec![topic.into()] }).await;
    loop {
        match recv_server(ws).await {
            ServerMessage::Snapshot { topic: t, payload } => {
                assert_eq!(t, topic);
                return payload;
            }
            // Events of topics subscribed before may come first.
            ServerMessage::Event { topic: t, .. } if t != topic => continue,
            other => panic!("expected a snapshot of {topic}, got {other:?}"),
        }
    }
}

/// The next `event` of `topic` (skipping events of other topics).
pub async fn next_event(ws: &mut Ws, topic: &str) -> Value {
    loop {
        match recv_server(ws).await {
            ServerMessage::Event { topic: t, payload } if t == topic => return payload,
            ServerMessage::Event { .. } => continue,
            other => panic!("expected an event of {topic}, got {other:?}"),
        }
    }
}

/// Polls `check` until it returns `Some`, failing after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task as an agent reports it.
pub fn local_task(id: &str, repo: &str, status: flightdeck_protocol::TaskStatus) -> flightdeck_protocol::Task {
    let payload = flightdeck_protocol::TaskPayload { command: Some("cargo test".into()), ..Default::default() };
    let executor = flightdeck_protocol::Executor::Shell;
    let source = flightdeck_protocol::TaskSource::Local;
    flightdeck_protocol::Task {
        agent_id: Some("mac".into()),
        status,
        ..flightdeck_protocol::Task::queued(id, "run tests", repo, executor, payload, source, chrono::Utc::now())
    }
}

pub fn chunk(text: &str) -> flightdeck_protocol::TaskEvent {
    flightdeck_protocol::TaskEvent::Chunk { text: text.into(), stream: flightdeck_protocol::event::ChunkStream::Stdout }
}

pub fn event_message(task_id: &str, seq: u64, text: &str) -> AgentMessage {
    AgentMessage::TaskEvent { task_id: task_id.into(), seq, event: chunk(text) }
}

/// A `flightdeck-relay serve --bind 127.0.0.1:0 --data-dir DIR` process with `args` and `env`
/// added; its address once it says it listens. Its stderr is read to the end in the background,
/// so it never blocks on a full pipe.
pub async fn serve_process(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn,flightdeck_relay=info")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(3 * DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("relay listening addr=").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("the relay exited before listening");
    })
    .await
    .expect("the relay starts in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
