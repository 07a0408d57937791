//! Issue 17 / SPEC 11, tests (a)-(g): three relay processes, each with its own empty data dir, sharing one
//! real PostgreSQL database and one real Redis server.

use std::time::{Duration, Instant};

use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, TaskStatus};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::broker::{redis_server, whole_transcript, RedisServer};
use crate::postgres::PgCluster;
use crate::support::*;

/// How long a node may go unseen before the others take it for dead (SPEC: 30 s; short here).
const NODE_TIMEOUT_MS: u64 = 2000;

struct Node {
    child: tokio::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

struct Cluster {
    _pg: PgCluster,
    redis: RedisServer,
    database: String,
    nodes: Vec<Option<Node>>,
    agent_key: String,
    owner_key: String,
    /// Settings every node of this cluster gets besides the usual ones.
    extra_env: Vec<(&'static str, &'static str)>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, Vec::new()).await
    }

    async fn start_with(n: usize, extra_env: Vec<(&'static str, &'static str)>) -> Cluster {
        let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
        let database = pg.database().await;
        let redis = redis_server().await;
        let mut cluster = Cluster {
            _pg: pg,
            redis,
            database,
            nodes: Vec::new(),
            agent_key: String::new(),
            owner_key: String::new(),
            extra_env,
        };
        for _ in 0..n {
            let node = cluster.node().await;
            cluster.nodes.push(Some(node));
        }
        // (a) made through node 1's admin CLI, with its data dir and the shared database.
        cluster.admin(0, &["user", "add", "alice"]).await;
        cluster.agent_key = cluster.admin(0, &["key", "create", "--user", "alice", "--scope", "agent"]).await;
        cluster.owner_key = cluster.admin(0, &["key", "create", "--user", "alice", "--scope", "owner"]).await;
        cluster
    }

    /// A new relay process on its own empty data dir.
    async fn node(&self) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let timeout = NODE_TIMEOUT_MS.to_string();
        let mut env = vec![
            ("FLIGHTDECK_RELAY_WS_CONNECTIONS_PER_MINUTE", "1000000"),
            ("FLIGHTDECK_RELAY_REVOCATION_POLL_MS", "100"),
            ("FLIGHTDECK_RELAY_NODE_TIMEOUT_MS", timeout.as_str()),
            ("FLIGHTDECK_RELAY_AGENT_OFFLINE_GRACE_MS", "0"),
        ];
        env.extend(self.extra_env.iter().copied());
        let (child, addr) =
            serve_process(dir.path(), &["--database", &self.database, "--broker", &self.redis.url], &env).await;
        Node { child, addr, _dir: dir }
    }

    fn addr(&self, i: usize) -> &str {
        &self.nodes[i].as_ref().expect("a live node").addr
    }

    /// An admin command run as node `i`'s operator would: its stdout.
    async fn admin(&self, i: usize, args: &[&str]) -> String {
        let node = self.nodes.get(i).and_then(Option::as_ref);
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"));
        command.args(args).args(["--database", &self.database]).env("RUST_LOG", "warn");
        if let Some(node) = node {
            command.arg("--data-dir").arg(node._dir.path());
        }
        let out = command.output().await.unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    async fn kill(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("a live node");
        node.child.kill().await.unwrap();
    }

    async fn get(&self, i: usize, path: &str, key: &str) -> (u16, Value) {
        let response =
            reqwest::Client::new().get(format!("http://{}{path}", self.addr(i))).bearer_auth(key).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put(&self, i: usize, path: &str, body: &Value) -> u16 {
        let response = reqwest::Client::new()
            .put(format!("http://{}{path}", self.addr(i)))
            .bearer_auth(&self.owner_key)
            .json(body)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    async fn viewer(&self, i: usize, token: Option<&str>) -> Ws {
        let url = match token {
            Some(t) => format!("ws://{}/api/realtime?token={t}", self.addr(i)),
            None => format!("ws://{}/api/realtime", self.addr(i)),
        };
        tokio_tungstenite::connect_async(url).await.expect("viewer connects").0
    }

    /// An agent on node `i` that said `agent-status` and got `welcome`: its lastSeqs.
    async fn agent(&self, i: usize, agent_id: &str) -> (Ws, std::collections::BTreeMap<String, u64>) {
        let mut request = format!("ws://{}/api/ws", self.addr(i)).into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {}", self.agent_key).parse().unwrap());
        let mut ws = tokio_tungstenite::connect_async(request).await.expect("agent connects").0;
        send(&mut ws, &status_message(agent_id)).await;
        match recv_relay_skip_pings(&mut ws).await {
            RelayMessage::Welcome { last_seqs, .. } => (ws, last_seqs),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Waits until every node serves `check` (a condition on one node's answer).
    async fn on_every_node(&self, what: &str, check: impl Fn(usize, Value) -> bool, path: &str) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                continue;
            }
            eventually(&format!("{what} on node {}", i + 1), || async {
                let (status, body) = self.get(i, path, &self.owner_key).await;
                (status == 200 && check(i, body)).then_some(())
            })
            .await;
        }
    }
}

/// Sends events `from..=to` of task `id` (line texts).
async fn lines(agent: &mut Ws, id: &str, from: u64, to: u64) {
    for seq in from..=to {
        send(agent, &event_message(id, seq, &format!("line {seq}"))).await;
    }
}

/// Reads `topic` on `viewer` (subscribed before the task had events) until `task`'s seq `last`.
async fn read_until(viewer: &mut Ws, topic: &str, task: &str, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let e = next_event(viewer, topic).await;
        // hud: events carry their task; its other events (repo status, task) have no seq.
        if topic.starts_with("hud:") && e["taskId"] != task {
            continue;
        }
        if let Some(seq) = e["seq"].as_u64() {
            seqs.push(seq);
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_keys_transcripts_revocations_and_privacy() {
    let cluster = Cluster::start(3).await;
    let owner = cluster.owner_key.clone();

    // (a) The keys made through node 1's admin CLI work on nodes 2 and 3.
    for i in 0..3 {
        assert_eq!(cluster.get(i, "/api/cockpit/tasks", &owner).await.0, 200, "the owner key on node {}", i + 1);
    }

    // (b) An agent on node 1; viewers of task:, hud: and repos on nodes 2 and 3: a
    // 10,000-line task arrives whole and in order at every one.
    let (mut agent, _) = cluster.agent(0, "mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Dirty)], full: Some(true) }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    cluster.on_every_node("the task", |_, body| body["task"]["id"] == "t1", "/api/cockpit/tasks/t1").await;
    assert_eq!(
        cluster.put(1, "/api/hud/settings?repo=alice/web", &json!({"public": true, "embedAllowed": false})).await,
        200
    );
    let mut viewers = Vec::new();
    for i in [1, 2] {
        for topic in ["task:t1", "hud:alice/web", "repos"] {
            let mut v = cluster.viewer(i, Some(&owner)).await;
            let snapshot = subscribe(&mut v, topic).await;
            viewers.push((i, topic, v, snapshot));
        }
    }
    const N: u64 = 10_000;
    lines(&mut agent, "t1", 1, N).await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    for (i, topic, v, snapshot) in &mut viewers {
        if *topic == "repos" {
            assert_eq!(snapshot[0]["status"], "dirty", "{snapshot}");
            let e = next_event(v, "repos").await;
            assert_eq!(e["status"], "clean", "node {}: {e}", *i + 1);
            continue;
        }
        let seqs = tokio::time::timeout(6 * DEADLINE, read_until(v, topic, "t1", N))
            .await
            .unwrap_or_else(|_| panic!("node {} {topic}: the whole transcript in time", *i + 1));
        assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "node {} {topic}", *i + 1);
    }

    // (f) The HUD made private on node 2: anonymous viewers on node 3 are dropped.
    let mut anonymous = cluster.viewer(2, None).await;
    subscribe(&mut anonymous, "hud:alice/web").await;
    assert_eq!(
        cluster.put(1, "/api/hud/settings?repo=alice/web", &json!({"public": false, "embedAllowed": false})).await,
        200
    );
    loop {
        match recv_server(&mut anonymous).await {
            flightdeck_protocol::ServerMessage::Error { message, topic, .. } => {
                assert_eq!((message.as_str(), topic.as_deref()), ("forbidden", Some("hud:alice/web")));
                break;
            }
            flightdeck_protocol::ServerMessage::Event { .. } => continue,
            other => panic!("expected forbidden, got {other:?}"),
        }
    }

    // (e) The agent key revoked through node 3's admin CLI: the agent's socket on node 1 is
    // closed with 4401 within a second.
    let list = cluster.admin(2, &["key", "list"]).await;
    let agent_key_id = list
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("agent"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let revoked_at = Instant::now();
    cluster.admin(2, &["key", "revoke", &agent_key_id]).await;
    let (code, _) = recv_close(&mut agent).await;
    let took = revoked_at.elapsed();
    assert_eq!(code, 4401);
    assert!(took < Duration::from_secs(1), "closed {took:?} after the revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_lose_nothing_and_their_agents_go_offline() {
    let mut cluster = Cluster::start(3).await;
    let owner = cluster.owner_key.clone();

    // (c) Agent on node 1, a viewer on node 2; node 2 is killed mid-task: its viewer reconnects
    // to node 3 and ends with the whole transcript.
    let (mut agent, _) = cluster.agent(0, "mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    cluster.on_every_node("the task", |_, body| body["task"]["id"] == "t1", "/api/cockpit/tasks/t1").await;
    let mut viewer = cluster.viewer(1, Some(&owner)).await;
    subscribe(&mut viewer, "task:t1").await;
    const N: u64 = 3000;
    lines(&mut agent, "t1", 1, N / 3).await;
    assert_eq!(next_event(&mut viewer, "task:t1").await["seq"], 1);
    cluster.kill(1).await;
    lines(&mut agent, "t1", N / 3 + 1, 2 * N / 3).await;
    let mut viewer = cluster.viewer(2, Some(&owner)).await;
    // Node 1 is then killed too: the agent reconnects to node 3 and resends from its lastSeqs.
    cluster.kill(0).await;
    let (mut agent, last_seqs) = cluster.agent(2, "mac").await;
    let from = last_seqs.get("t1").copied().unwrap_or(0);
    assert!(from <= 2 * N / 3, "{last_seqs:?}");
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    lines(&mut agent, "t1", from + 1, N).await;
    let seqs = tokio::time::timeout(6 * DEADLINE, whole_transcript(&mut viewer, "task:t1", N))
        .await
        .expect("the whole transcript in time")
        .expect("no 1012 from a node that keeps its broker");
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());

    // (g) Node 3 is killed with its agent connected: once a node is up again, it sees the agent
    // offline within the node timeout (30 s by default, 2 s here).
    cluster.nodes.push(Some(cluster.node().await));
    let fresh = cluster.nodes.len() - 1;
    let agents = cluster.get(fresh, "/api/cockpit/agents", &owner).await.1;
    assert_eq!(agents["agents"][0]["status"], "online", "{agents}");
    let killed_at = Instant::now();
    cluster.kill(2).await;
    drop(agent);
    eventually("the dead node's agent offline", || async {
        let (_, body) = cluster.get(fresh, "/api/cockpit/agents", &owner).await;
        (body["agents"][0]["status"] == "offline").then_some(())
    })
    .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_millis(NODE_TIMEOUT_MS * 3), "offline {took:?} after the node died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_closes_viewers_and_they_end_complete() {
    let mut cluster = Cluster::start(3).await;
    let owner = cluster.owner_key.clone();
    // (d) Redis restarted mid-task: viewers on nodes 2 and 3 are closed with 1012, reconnect,
    // and end with the whole transcript.
    let (mut agent, _) = cluster.agent(0, "mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    cluster.on_every_node("the task", |_, body| body["task"]["id"] == "t1", "/api/cockpit/tasks/t1").await;
    let mut viewers = Vec::new();
    for i in [1, 2] {
        let mut v = cluster.viewer(i, Some(&owner)).await;
        subscribe(&mut v, "task:t1").await;
        viewers.push(v);
    }
    const N: u64 = 1000;
    lines(&mut agent, "t1", 1, N / 2).await;
    for v in &mut viewers {
        assert_eq!(next_event(v, "task:t1").await["seq"], 1);
    }
    cluster.redis.kill().await;
    for v in &mut viewers {
        assert_eq!(recv_close(v).await.0, 1012);
    }
    lines(&mut agent, "t1", N / 2 + 1, N).await;
    cluster.on_every_node("every event stored", |_, body| body["task"]["lastSeq"] == N, "/api/cockpit/tasks/t1").await;
    cluster.redis.restart().await;
    for i in [1, 2] {
        let seqs = tokio::time::timeout(6 * DEADLINE, async {
            loop {
                let mut viewer = cluster.viewer(i, Some(&owner)).await;
                if let Some(seqs) = whole_transcript(&mut viewer, "task:t1", N).await {
                    return seqs;
                }
            }
        })
        .await
        .expect("a viewer ends with the whole transcript");
        assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "node {}", i + 1);
    }
}

/// SPEC 13 on three nodes: a waiting task gives exactly one push per subscription, also when
/// the node sending it is SIGKILLed mid-send (the push service holds the request open): the
/// lease runs out and another node sends it again, under the same Topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_sent_once_per_subscription_even_when_the_sending_node_dies() {
    use crate::push::{Browser, Reply, Service};
    use flightdeck_protocol::push::PushKind;

    let push_env = vec![
        ("FLIGHTDECK_RELAY_PUSH_ALLOW_PRIVATE_ENDPOINTS", "1"),
        ("FLIGHTDECK_RELAY_PUSH_POLL_MS", "100"),
        ("FLIGHTDECK_RELAY_PUSH_LEASE_MS", "1500"),
        ("FLIGHTDECK_RELAY_PUSH_SEND_TIMEOUT_MS", "60000"),
    ];
    // One node while the first message is sent, so it is the one holding it.
    let mut cluster = Cluster::start_with(1, push_env).await;
    let owner = cluster.owner_key.clone();
    let key = cluster.get(0, "/api/push/key", &owner).await.1["publicKey"].as_str().unwrap().to_string();
    let mut service = Service::start().await;
    let phone = Browser::new(service.url("/push/phone"));
    let laptop = Browser::new(service.url("/push/laptop"));
    for browser in [&phone, &laptop] {
        let r = reqwest::Client::new()
            .post(format!("http://{}/api/push/subscriptions", cluster.addr(0)))
            .bearer_auth(&owner)
            .json(&browser.subscription())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let browser_of = |path: &str| if path.ends_with("phone") { &phone } else { &laptop };
    let waiting = |agent: &'static str, task: &'static str, request: &'static str| {
        let task =
            flightdeck_protocol::Task { agent_id: Some(agent.into()), ..local_task(task, "web", TaskStatus::Waiting) };
        let event = flightdeck_protocol::TaskEvent::PermissionRequest {
            request_id: request.into(),
            tool_name: "Bash".into(),
            input: json!({"command": "rm -rf build"}),
            description: None,
            suggestions: None,
        };
        (AgentMessage::TaskUpdate { task: task.clone() }, AgentMessage::TaskEvent { task_id: task.id, seq: 1, event })
    };

    service.reply_next(Reply::Hold);
    let (mut agent, _) = cluster.agent(0, "mac").await;
    let (update, request) = waiting("mac", "t1", "r1");
    send(&mut agent, &update).await;
    send(&mut agent, &request).await;
    let first = service.take(2).await;
    // One is held open by the push service: its sender is node 1, the only one.
    let held = first.iter().find(|s| s.held).expect("one request held");
    let held_topic = held.header("topic").unwrap().to_string();
    assert_eq!(browser_of(&held.path).open(held, &key, &service.origin()).kind, PushKind::NeedsInput);

    // Two more nodes; the sender dies mid-send.
    for _ in 0..2 {
        let node = cluster.node().await;
        cluster.nodes.push(Some(node));
    }
    assert_eq!(cluster.get(2, "/api/push/key", &owner).await.1["publicKey"], key.as_str(), "one key for all nodes");
    cluster.kill(0).await;
    let again = service.next().await;
    assert_eq!(again.path, held.path, "the held message is sent again by another node");
    assert_eq!(again.header("topic"), Some(held_topic.as_str()), "under the same Topic");
    let payload = browser_of(&again.path).open(&again, &key, &service.origin());
    assert_eq!((payload.kind, payload.request_id.as_deref()), (PushKind::NeedsInput, Some("r1")));

    // With three... two live nodes: one more request, one push per subscription.
    let (mut agent, _) = cluster.agent(1, "mac").await;
    let (update, request) = waiting("mac", "t2", "r2");
    send(&mut agent, &update).await;
    send(&mut agent, &request).await;
    let second = service.take(2).await;
    let mut paths: Vec<&str> = second.iter().map(|s| s.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/push/laptop", "/push/phone"]);
    for seen in &second {
        let payload = browser_of(&seen.path).open(seen, &key, &service.origin());
        assert_eq!((payload.kind, payload.task_id.as_str()), (PushKind::NeedsInput, "t2"));
    }
    // Nothing else was waiting: the next two are the test message, one each.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/push/test", cluster.addr(2)))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tests = service.take(2).await;
    let mut paths: Vec<&str> = tests.iter().map(|s| s.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/push/laptop", "/push/phone"]);
    for seen in &tests {
        assert_eq!(browser_of(&seen.path).open(seen, &key, &service.origin()).kind, PushKind::Test);
    }
    drop(agent);
}
