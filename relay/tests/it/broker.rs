//! Two relay nodes on one data dir sharing fan-out through a real Redis server (SPEC 7).

use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, TaskStatus};
use serde_json::json;

use crate::support::*;

struct RedisServer {
    _child: tokio::process::Child,
    url: String,
}

async fn redis_server() -> RedisServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
    RedisServer { _child: child, url: format!("redis://127.0.0.1:{port}") }
}

#[tokio::test]
async fn an_agent_on_node_a_reaches_viewers_and_owners_on_node_b() {
    let redis = redis_server().await;
    let url = redis.url.clone();
    let a = Relay::start_with(move |s| s.broker = Some(url)).await;
    let mut settings = test_settings(&a.dir);
    settings.broker = Some(redis.url.clone());
    let b = Relay::launch(settings, a.keys.clone()).await;
    let owner = a.keys.owner.clone();
    eventually("node b to serve", || async { (b.get("/healthz", &owner).await.0 == 200).then_some(()) }).await;
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
