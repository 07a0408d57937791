//! Two relay nodes on one data dir sharing fan-out through a real Redis server (SPEC 7).

use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, TaskStatus};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

pub(crate) struct RedisServer {
    child: Option<tokio::process::Child>,
    port: u16,
    pub(crate) url: String,
}

impl RedisServer {
    async fn start_on(port: u16) -> tokio::process::Child {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (see .ci/install)");
        eventually("redis-server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        child
    }

    /// Kills the server (SIGKILL: its clients' connections end at once).
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port, empty.
    pub(crate) async fn restart(&mut self) {
        self.kill().await;
        self.child = Some(RedisServer::start_on(self.port).await);
    }
}

pub(crate) async fn redis_server() -> RedisServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = RedisServer::start_on(port).await;
    RedisServer { child: Some(child), port, url: format!("redis://127.0.0.1:{port}") }
}

/// Two in-process nodes on one data dir sharing the broker at `url`; node b serves.
async fn two_nodes(url: &str) -> (Relay, Relay) {
    let broker = url.to_string();
    let a = Relay::start_with(move |s| s.broker = Some(broker)).await;
    let mut settings = test_settings(&a.dir);
    settings.broker = Some(url.to_string());
    let b = Relay::launch(settings, a.keys.clone()).await;
    let owner = a.keys.owner.clone();
    eventually("node b to serve", || async { (b.get("/healthz", &owner).await.0 == 200).then_some(()) }).await;
    (a, b)
}

/// Runs one command against `url` and returns its reply.
async fn redis_cmd(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The broker of node A is a Redis user whose PUBLISH permission the test takes away and gives
/// back: its publishes fail (and are retried) while its connection and subscription stay up.
#[tokio::test]
async fn a_failed_publish_is_retried_and_an_overflow_makes_the_other_nodes_resync() {
    use futures_util::StreamExt;
    let redis = redis_server().await;
    redis_cmd(&redis.url, &["ACL", "SETUSER", "relay", "on", ">pw", "~*", "&*", "+@all"]).await;
    let relay_url = redis.url.replace("redis://", "redis://relay:pw@");
    let url = relay_url.clone();
    let a = Relay::start_with(move |s| {
        s.broker = Some(url);
        s.broker_queue_len = 4;
    })
    .await;
    let mut settings = test_settings(&a.dir);
    settings.broker = Some(relay_url.clone());
    let b = Relay::launch(settings, a.keys.clone()).await;
    let owner = a.keys.owner.clone();
    eventually("node b to serve", || async { (b.get("/healthz", &owner).await.0 == 200).then_some(()) }).await;
    // A witness on the channel, as the default user.
    let mut witness = redis::Client::open(redis.url.as_str()).unwrap().get_async_pubsub().await.unwrap();
    witness.subscribe(flightdeck_relay::broker::CONTROL_CHANNEL).await.unwrap();
    let mut witness = witness.into_on_message();
    let mut viewer = b.viewer(Some(&owner)).await;
    assert_eq!(subscribe(&mut viewer, "agents").await, json!([]));

    // Publishing fails: the agent's arrival on A waits for the broker, then arrives.
    redis_cmd(&redis.url, &["ACL", "SETUSER", "relay", "-publish"]).await;
    let (mut agent, _) = a.agent("mac").await;
    eventually("a failed publish on a", || async {
        (a.metric("flightdeck_broker_publish_failures_total").await >= 1.0).then_some(())
    })
    .await;
    redis_cmd(&redis.url, &["ACL", "SETUSER", "relay", "+publish"]).await;
    let first = tokio::time::timeout(DEADLINE, witness.next()).await.expect("the retried publish").unwrap();
    let first: String = first.get_payload().unwrap();
    assert!(first.contains(r#""type":"agent-connected""#), "{first}");
    let info = next_event(&mut viewer, "agents").await;
    assert_eq!((info["agentId"].as_str(), info["status"].as_str()), (Some("mac"), Some("online")));

    // Publishing fails long enough for A's queue to overflow: once it drains, B's sockets are
    // closed with 1012 so they reconnect to fresh state.
    redis_cmd(&redis.url, &["ACL", "SETUSER", "relay", "-publish"]).await;
    for i in 0..10 {
        let state = if i % 2 == 0 { RepoState::Dirty } else { RepoState::Clean };
        send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", state)], full: None }).await;
    }
    // An invalid frame's answer: every status before it is stored.
    send_text(&mut agent, r#"{"type":"barrier"}"#).await;
    assert!(matches!(recv_relay_skip_pings(&mut agent).await, RelayMessage::Error { .. }));
    eventually("an overflow on a", || async {
        (a.metric("flightdeck_broker_overflows_total").await >= 1.0).then_some(())
    })
    .await;
    redis_cmd(&redis.url, &["ACL", "SETUSER", "relay", "+publish"]).await;
    assert_eq!(recv_close(&mut viewer).await.0, 1012);
    // A's own sockets stay: it has everything.
    send(&mut agent, &flightdeck_protocol::AgentMessage::Pong { timestamp: None }).await;
    let mut viewer = b.viewer(Some(&owner)).await;
    let repos = subscribe(&mut viewer, "repos").await;
    assert_eq!(repos[0]["status"], "clean", "the fresh snapshot has the last state: {repos}");
}

#[tokio::test]
async fn an_agent_on_node_a_reaches_viewers_and_owners_on_node_b() {
    let redis = redis_server().await;
    let (a, b) = two_nodes(&redis.url).await;
    let owner = a.keys.owner.clone();
    b.set_hud("web", true, false).await;

    // Viewers on B; the agent on A.
    let mut viewer = b.viewer(Some(&owner)).await;
    assert_eq!(subscribe(&mut viewer, "agents").await, json!([]));
    let mut public = b.viewer(None).await;
    subscribe(&mut public, "hud:alice/web").await;
    let (mut agent, _) = a.agent("mac").await;
    let info = next_event(&mut viewer, "agents").await;
    assert_eq!((info["agentId"].as_str(), info["status"].as_str()), (Some("mac"), Some("online")));

    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Dirty)], full: Some(true) }).await;
    let hud = loop {
        let e = next_event(&mut public, "hud:alice/web").await;
        if e.get("repoStatus").is_some() {
            break e;
        }
    };
    assert_eq!(hud["repoStatus"]["status"], "dirty");
    assert!(hud["repoStatus"].get("path").is_none(), "no path on a public HUD, on any node");

    // Turned private on A: B drops its anonymous viewer of that HUD.
    a.set_hud("web", false, false).await;
    loop {
        match recv_server(&mut public).await {
            flightdeck_protocol::ServerMessage::Error { message, topic, .. } => {
                assert_eq!((message.as_str(), topic.as_deref()), ("forbidden", Some("hud:alice/web")));
                break;
            }
            flightdeck_protocol::ServerMessage::Event { .. } => continue,
            other => panic!("expected forbidden, got {other:?}"),
        }
    }

    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    eventually("the task in the shared database", || async {
        (b.get("/api/cockpit/tasks/t1", &owner).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(subscribe(&mut viewer, "task:t1").await["task"]["id"], "t1");
    for seq in 1..=3 {
        send(&mut agent, &event_message("t1", seq, &format!("line {seq}"))).await;
    }
    for seq in 1..=3 {
        let e = next_event(&mut viewer, "task:t1").await;
        assert_eq!((e["seq"].as_u64(), e["event"]["text"].as_str()), (Some(seq), Some(format!("line {seq}").as_str())));
    }

    // A task made on B goes to the agent on A; so does its cancel.
    let body = json!({"executor": "shell", "repo": "web", "payload": {"command": "make"}});
    let (status, created) = b.post("/api/cockpit/tasks", &owner, &body).await;
    assert_eq!(status, 201);
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["task"]["agentId"], "mac");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Task { task_id, .. } => assert_eq!(task_id, id),
        other => panic!("expected the task from node b, got {other:?}"),
    }
    let (status, _) = b.post(&format!("/api/cockpit/tasks/{id}/cancel"), &owner, &json!({})).await;
    assert_eq!(status, 200);
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Cancel { task_id } => assert_eq!(task_id, id),
        other => panic!("expected cancel from node b, got {other:?}"),
    }

    // The agent moves to B: its socket on A is replaced, and it stays online.
    let (_agent_on_b, _) = b.agent("mac").await;
    assert_eq!(recv_close(&mut agent).await, (4000, "replaced".to_string()));
    eventually("the agent online on b", || async {
        let (_, body) = a.get("/api/cockpit/agents", &owner).await;
        (body["agents"][0]["status"] == "online").then_some(())
    })
    .await;
}

/// The topic channels Redis has subscribers for, and how many nodes subscribe to `channel`.
async fn topic_channels(url: &str) -> Vec<String> {
    let reply = redis_cmd(url, &["PUBSUB", "CHANNELS", "fd:t:*"]).await;
    let mut channels: Vec<String> = redis::from_redis_value(&reply).unwrap();
    channels.sort();
    channels
}

async fn subscribers_of(url: &str, channel: &str) -> i64 {
    let reply = redis_cmd(url, &["PUBSUB", "NUMSUB", channel]).await;
    let (_, n): (String, i64) = redis::from_redis_value(&reply).unwrap();
    n
}

/// SPEC 11: a node subscribes to a topic's channel while it has viewers of it, and only then.
#[tokio::test]
async fn a_node_subscribes_to_a_topic_while_it_has_viewers_of_it() {
    let redis = redis_server().await;
    let (a, b) = two_nodes(&redis.url).await;
    let owner = a.keys.owner.clone();
    assert_eq!(topic_channels(&redis.url).await, Vec::<String>::new(), "no viewers, no topic channels");

    let (mut agent, _) = a.agent("mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    eventually("the task stored", || async { (b.get("/api/cockpit/tasks/t1", &owner).await.0 == 200).then_some(()) })
        .await;
    // Two viewers of task:t1 on B, one of tasks on B: one subscription per channel and node.
    let mut first = b.viewer(Some(&owner)).await;
    let mut second = b.viewer(Some(&owner)).await;
    subscribe(&mut first, "task:t1").await;
    subscribe(&mut second, "task:t1").await;
    subscribe(&mut second, "tasks").await;
    assert_eq!(topic_channels(&redis.url).await, ["fd:t:alice:task:t1", "fd:t:alice:tasks"]);
    assert_eq!(subscribers_of(&redis.url, "fd:t:alice:task:t1").await, 1, "node a has no viewer of it");
    for seq in 1..=3 {
        send(&mut agent, &event_message("t1", seq, &format!("line {seq}"))).await;
    }
    for viewer in [&mut first, &mut second] {
        for seq in 1..=3 {
            assert_eq!(next_event(viewer, "task:t1").await["seq"], seq);
        }
    }

    // The last viewer of a topic gone (an unsubscribe, a closed socket): the channel goes.
    send(&mut second, &flightdeck_protocol::ClientMessage::Unsubscribe { topics: vec!["tasks".into()] }).await;
    eventually("tasks unsubscribed", || async {
        (topic_channels(&redis.url).await == ["fd:t:alice:task:t1"]).then_some(())
    })
    .await;
    drop(first);
    send(&mut agent, &event_message("t1", 4, "line 4")).await;
    assert_eq!(next_event(&mut second, "task:t1").await["seq"], 4, "the other viewer keeps the channel");
    drop(second);
    eventually("no topic channel left", || async { topic_channels(&redis.url).await.is_empty().then_some(()) }).await;
}

/// SPEC 11 and issue 17 (d): Redis restarted mid-task. The viewers of the node that lost it
/// are closed with 1012; once it is back (and the node subscribed again) they reconnect and
/// end with the whole transcript, in order, once each.
#[tokio::test]
async fn a_broker_restart_closes_viewers_with_1012_and_they_end_complete() {
    let mut redis = redis_server().await;
    let (a, b) = two_nodes(&redis.url).await;
    let owner = a.keys.owner.clone();

    let (mut agent, _) = a.agent("mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    eventually("the task stored", || async { (b.get("/api/cockpit/tasks/t1", &owner).await.0 == 200).then_some(()) })
        .await;
    let mut viewer = b.viewer(Some(&owner)).await;
    subscribe(&mut viewer, "task:t1").await;
    const N: u64 = 400;
    for seq in 1..=N / 2 {
        send(&mut agent, &event_message("t1", seq, &format!("line {seq}"))).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(next_event(&mut viewer, "task:t1").await["seq"].as_u64().unwrap());
    }

    redis.kill().await;
    let (code, _) = recv_close(&mut viewer).await;
    assert_eq!(code, 1012, "a node that lost the broker closes its viewers with 1012");
    // The agent keeps sending on A meanwhile: stored there, published once Redis is back.
    for seq in N / 2 + 1..=N {
        send(&mut agent, &event_message("t1", seq, &format!("line {seq}"))).await;
    }
    eventually("every event stored", || async {
        (b.get("/api/cockpit/tasks/t1", &owner).await.1["task"]["lastSeq"] == N).then_some(())
    })
    .await;
    redis.restart().await;
    // Reconnecting as a browser does: a viewer that got in before node b had its channels
    // back is closed with 1012 once it has them, and tries again.
    let seqs = tokio::time::timeout(4 * DEADLINE, async {
        loop {
            let mut viewer = b.viewer(Some(&owner)).await;
            if let Some(seqs) = whole_transcript(&mut viewer, "task:t1", N).await {
                return seqs;
            }
        }
    })
    .await
    .expect("a viewer ends with the whole transcript");
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "every event once and in order");
}

/// Subscribes to `topic` (a task's) and reads its snapshot and events until seq `last`; `None`
/// when the socket is closed with 1012 first.
pub(crate) async fn whole_transcript(viewer: &mut Ws, topic: &str, last: u64) -> Option<Vec<u64>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    send(viewer, &flightdeck_protocol::ClientMessage::Subscribe { topics: vec![topic.into()] }).await;
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let text = match tokio::time::timeout(DEADLINE, viewer.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1012));
                return None;
            }
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        };
        match flightdeck_protocol::ServerMessage::parse(&text).unwrap() {
            flightdeck_protocol::ServerMessage::Snapshot { payload, .. } => {
                seqs.extend(payload["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()))
            }
            flightdeck_protocol::ServerMessage::Event { payload, .. } => seqs.push(payload["seq"].as_u64().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    Some(seqs)
}

/// SPEC 11: a node killed with an agent connected: the other nodes mark the agent offline
/// once the killed node's deadline (its `node_timeout_ms`: 30 s by default; 3 s here) has
/// passed, and publish it.
#[tokio::test]
async fn the_agents_of_a_killed_node_go_offline_on_the_others() {
    let redis = redis_server().await;
    let url = redis.url.clone();
    let b = Relay::start_with(move |s| {
        s.broker = Some(url);
        s.node_timeout_ms = 1000;
    })
    .await;
    // Node A: a process on the same data dir, so it can be killed without a word. Its own
    // deadline (3 s) is longer than node b's (1 s): each node is judged by its own.
    let (mut a, addr) =
        serve_process(&b.dir, &["--broker", &redis.url], &[("FLIGHTDECK_RELAY_NODE_TIMEOUT_MS", "3000")]).await;

    let owner = b.keys.owner.clone();
    let mut viewer = b.viewer(Some(&owner)).await;
    assert_eq!(subscribe(&mut viewer, "agents").await, json!([]));
    let mut request = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", b.keys.agent).parse().unwrap());
    let (mut agent, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut agent, &status_message("mac")).await;
    assert!(matches!(recv_relay(&mut agent).await, RelayMessage::Welcome { .. }));
    let info = next_event(&mut viewer, "agents").await;
    assert_eq!(info["status"], "online");
    // Two more rounds of node b's liveness (each says it is alive, then sweeps): a live node's
    // agents are left alone.
    let db = rusqlite::Connection::open(b.dir.join("relay.sqlite3")).unwrap();
    let nodes = || -> Vec<i64> {
        let mut stmt = db.prepare("SELECT alive_until_ms FROM nodes ORDER BY node_id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let mut before = nodes();
    assert_eq!(before.len(), 2, "both nodes say they are alive: {before:?}");
    for round in 0..2 {
        eventually(&format!("round {round} of both nodes"), || async {
            let now = nodes();
            now.iter().zip(&before).all(|(seen, earlier)| seen > earlier).then_some(())
        })
        .await;
        before = nodes();
    }
    let (_, body) = b.get("/api/cockpit/agents", &owner).await;
    assert_eq!(body["agents"][0]["status"], "online", "{body}");

    a.kill().await.unwrap();
    let killed = std::time::Instant::now();
    let info = next_event(&mut viewer, "agents").await;
    assert_eq!((info["agentId"].as_str(), info["status"].as_str()), (Some("mac"), Some("offline")), "{info}");
    assert!(killed.elapsed() < std::time::Duration::from_secs(8), "offline {:?} after the kill", killed.elapsed());
    drop(agent);
}

/// Issue 17: `key revoke` with a broker configured tells every node on the control channel:
/// the key's sockets close with 4401 at once, not at the nodes' next look at the store (which
/// this node does only once an hour here).
#[tokio::test]
async fn a_key_revoked_by_the_admin_cli_closes_its_sockets_on_every_node_at_once() {
    let redis = redis_server().await;
    let url = redis.url.clone();
    let relay = Relay::start_with(move |s| {
        s.broker = Some(url);
        s.revocation_poll_ms = 3_600_000;
    })
    .await;
    let (mut agent, _) = relay.agent("mac").await;
    // The poller's first look (at start) is over: the agent's socket is served.
    send(&mut agent, &AgentMessage::Pong { timestamp: None }).await;
    let dir = relay.dir.clone();
    let id = relay.keys.agent_id.clone();
    let broker = redis.url.clone();
    let revoked_at = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"))
            .args(["key", "revoke", &id, "--data-dir"])
            .arg(&dir)
            .env("FLIGHTDECK_RELAY_BROKER", broker)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(recv_close(&mut agent).await.0, 4401);
    assert!(revoked_at.elapsed() < std::time::Duration::from_secs(5), "{:?}", revoked_at.elapsed());
}
