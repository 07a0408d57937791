//! The agent link: welcome and lastSeqs, task routing, dedup, invalid and oversized frames,
//! heartbeat and stale cleanup, replacement.

use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, ServerMessage, TaskStatus};
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn tasks_reach_the_agent_with_the_repo_and_events_are_deduplicated() {
    let relay = Relay::start().await;
    let key = relay.keys.owner.clone();
    // Queued before any agent is online.
    let body = json!({"executor": "shell", "repo": "web", "payload": {"command": "make"}});
    let (status, queued) = relay.post("/api/cockpit/tasks", &key, &body).await;
    assert_eq!(status, 201);
    let queued_id = queued["task"]["id"].as_str().unwrap().to_string();

    let (mut agent, last_seqs) = relay.agent("mac").await;
    assert!(last_seqs.is_empty());
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Task { task_id, task_type, payload, title, .. } => {
            assert_eq!(task_id, queued_id);
            assert_eq!(title.as_deref(), Some("make"), "the relay's title goes with the task");
            assert_eq!(task_type, flightdeck_protocol::Executor::Shell);
            assert_eq!(payload.command.as_deref(), Some("make"));
            assert_eq!(payload.repo.as_deref(), Some("web"));
        }
        other => panic!("expected the queued task, got {other:?}"),
    }
    // Made while the agent is online: straight to it.
    let body = json!({"executor": "claude", "repo": "web", "payload": {"prompt": "fix it"}});
    let (_, live) = relay.post("/api/cockpit/tasks", &key, &body).await;
    let live_id = live["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(live["task"]["agentId"], "mac");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Task { task_id, payload, .. } => {
            assert_eq!(task_id, live_id);
            assert_eq!(payload.prompt.as_deref(), Some("fix it"));
        }
        other => panic!("expected the new task, got {other:?}"),
    }
    // Cancel is forwarded.
    let (status, _) = relay.post(&format!("/api/cockpit/tasks/{live_id}/cancel"), &key, &json!({})).await;
    assert_eq!(status, 200);
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Cancel { task_id } => assert_eq!(task_id, live_id),
        other => panic!("expected cancel, got {other:?}"),
    }

    // The agent runs the queued task; a viewer watches its transcript.
    let mut task = local_task(&queued_id, "web", TaskStatus::Running);
    task.source = flightdeck_protocol::TaskSource::Remote;
    send(&mut agent, &AgentMessage::TaskUpdate { task: task.clone() }).await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    let topic = format!("task:{queued_id}");
    let snapshot = eventually("the running task", || {
        let relay = &relay;
        let key = key.clone();
        let id = queued_id.clone();
        async move {
            let (_, b) = relay.get(&format!("/api/cockpit/tasks/{id}"), &key).await;
            (b["task"]["status"] == "running").then_some(())
        }
    });
    snapshot.await;
    let snap = subscribe(&mut viewer, &topic).await;
    assert_eq!(snap["task"]["status"], "running");
    assert_eq!(snap["events"], json!([]));
    for seq in 1..=3 {
        send(&mut agent, &event_message(&queued_id, seq, &format!("line {seq}"))).await;
    }
    // Sent again (a reconnecting agent would): nothing changes, nothing is re-published.
    send(&mut agent, &event_message(&queued_id, 2, "line 2 again")).await;
    send(&mut agent, &event_message(&queued_id, 4, "line 4")).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = next_event(&mut viewer, &topic).await;
        seen.push((e["seq"].as_u64().unwrap(), e["event"]["text"].as_str().unwrap().to_string()));
    }
    let want: Vec<(u64, String)> = (1..=4).map(|s| (s, format!("line {s}"))).collect();
    assert_eq!(seen, want);
    let (_, events) = relay.get(&format!("/api/cockpit/tasks/{queued_id}/events?after=1&limit=2"), &key).await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2);
    assert_eq!(events["events"][0]["event"]["text"], "line 2");
    assert_eq!(events["nextAfter"], 3);
    let (_, t) = relay.get(&format!("/api/cockpit/tasks/{queued_id}"), &key).await;
    assert_eq!(t["task"]["lastSeq"], 4);

    // A gap: seq 6 without 5 is not stored; the relay asks for a resend. After a reconnect,
    // lastSeqs says 4 too.
    send(&mut agent, &event_message(&queued_id, 6, "line 6")).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Resend { task_id, after_seq } => assert_eq!((task_id.as_str(), after_seq), (&*queued_id, 4)),
        other => panic!("expected resend, got {other:?}"),
    }
    drop(agent);
    let (mut agent, last_seqs) = relay.agent("mac").await;
    assert_eq!(last_seqs.get(&queued_id), Some(&4), "{last_seqs:?}");
    // The cancelled live task is still queued on the relay (the agent decides), so it is known too.
    assert_eq!(last_seqs.get(&live_id), Some(&0), "{last_seqs:?}");
    // The agent's known repos bring the still-queued task again on this new connection.
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Task { task_id, .. } => assert_eq!(task_id, live_id),
        other => panic!("expected the still-queued task, got {other:?}"),
    }
    // task-result finishes the task.
    send(
        &mut agent,
        &AgentMessage::TaskResult {
            task_id: queued_id.clone(),
            status: flightdeck_protocol::agent::TaskResultStatus::Completed,
            result: json!("all green"),
            logs: None,
        },
    )
    .await;
    let tasks_done = eventually("the completed task", || {
        let relay = &relay;
        let key = key.clone();
        let id = queued_id.clone();
        async move {
            let (_, b) = relay.get(&format!("/api/cockpit/tasks/{id}"), &key).await;
            (b["task"]["status"] == "completed").then_some(b)
        }
    })
    .await;
    assert_eq!(tasks_done["task"]["summary"], "all green");
}

/// The seqs of a task's transcript over REST.
async fn rest_seqs(relay: &Relay, task_id: &str) -> Vec<u64> {
    let (status, body) = relay.get(&format!("/api/cockpit/tasks/{task_id}/events?limit=500"), &relay.keys.owner).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_gap_is_not_stored_and_the_agent_is_asked_to_resend_once() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    let id = "gap-1";
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task(id, "web", TaskStatus::Running) }).await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    let topic = format!("task:{id}");
    eventually("the task", || async {
        let (status, _) = relay.get(&format!("/api/cockpit/tasks/{id}"), &relay.keys.owner).await;
        (status == 200).then_some(())
    })
    .await;
    subscribe(&mut viewer, &topic).await;

    for seq in [1, 2, 4] {
        send(&mut agent, &event_message(id, seq, &format!("line {seq}"))).await;
    }
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Resend { task_id, after_seq } => assert_eq!((task_id.as_str(), after_seq), (id, 2)),
        other => panic!("expected resend, got {other:?}"),
    }
    assert_eq!(rest_seqs(&relay, id).await, vec![1, 2]);
    let (_, t) = relay.get(&format!("/api/cockpit/tasks/{id}"), &relay.keys.owner).await;
    assert_eq!(t["task"]["lastSeq"], 2);
    // More events past the same gap: no second resend (the barrier's error comes next).
    send(&mut agent, &event_message(id, 5, "line 5")).await;
    barrier(&mut agent).await;

    // The agent resends from 3: the transcript is whole; duplicates change nothing.
    for seq in [3, 4, 2, 3] {
        send(&mut agent, &event_message(id, seq, &format!("line {seq}"))).await;
    }
    barrier(&mut agent).await;
    assert_eq!(rest_seqs(&relay, id).await, vec![1, 2, 3, 4]);
    let (_, t) = relay.get(&format!("/api/cockpit/tasks/{id}"), &relay.keys.owner).await;
    assert_eq!(t["task"]["lastSeq"], 4);
    // The viewer saw each seq once, in order, and never the one past the gap.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = next_event(&mut viewer, &topic).await;
        seen.push((e["seq"].as_u64().unwrap(), e["event"]["text"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen, (1..=4).map(|s| (s, format!("line {s}"))).collect::<Vec<_>>());
    let snapshot = subscribe(&mut viewer, &topic).await;
    let seqs: Vec<u64> = snapshot["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);

    // A new gap after the first one closed is asked for again.
    send(&mut agent, &event_message(id, 7, "line 7")).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Resend { task_id, after_seq } => assert_eq!((task_id.as_str(), after_seq), (id, 4)),
        other => panic!("expected resend, got {other:?}"),
    }
    // A new connection reads where the transcript stands from the database.
    drop(agent);
    let (mut agent, last_seqs) = relay.agent("mac").await;
    assert_eq!(last_seqs.get(id), Some(&4));
    send(&mut agent, &event_message(id, 5, "line 5")).await;
    send(&mut agent, &event_message(id, 4, "line 4 again")).await;
    barrier(&mut agent).await;
    assert_eq!(rest_seqs(&relay, id).await, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn malformed_frames_get_details_and_too_many_close_1008() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    let cases: &[(&str, &str)] = &[
        ("not json", "$"),
        (r#"{"type":"launch-missiles"}"#, "$.type"),
        (r#"{"type":"git-status","repos":[{"id":"r","name":"web","aheadCount":"many"}]}"#, "$.repos[0].aheadCount"),
        (r#"{"type":"git-status","repos":[{"id":"r","name":"../etc"}]}"#, "$.repos[0].name"),
        (
            r#"{"type":"task-event","taskId":"nope","seq":1,"event":{"kind":"chunk","text":"x","stream":"stdout"}}"#,
            "$.taskId",
        ),
    ];
    for (text, path) in cases {
        send_text(&mut agent, text).await;
        match recv_relay_skip_pings(&mut agent).await {
            RelayMessage::Error { message, details } => {
                assert_eq!(message, "Invalid message format");
                let details = details.unwrap();
                assert!(details.iter().any(|d| d.path == *path), "{text}: {details:?}");
            }
            other => panic!("{text}: expected an error, got {other:?}"),
        }
    }
    // Still open and working.
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: None }).await;
    let key = relay.keys.owner.clone();
    eventually("the repo after errors", || async {
        let (_, b) = relay.get("/api/cockpit/repos", &key).await;
        (b["repos"].as_array().is_some_and(|r| r.len() == 1)).then_some(())
    })
    .await;
    // 5 invalid so far; 96 more makes 101 in a minute.
    for _ in 0..96 {
        send_text(&mut agent, "{").await;
    }
    assert_eq!(recv_close(&mut agent).await.0, 1008);
    assert!(relay.metric("flightdeck_invalid_frames_total").await >= 101.0);

    // Viewers get the same treatment.
    let mut viewer = relay.viewer(None).await;
    send_text(&mut viewer, r#"{"type":"subscribe","topics":"agents"}"#).await;
    match recv_server(&mut viewer).await {
        ServerMessage::Error { details: Some(d), .. } => assert_eq!(d[0].path, "$.topics"),
        other => panic!("expected an error, got {other:?}"),
    }
    send_text(&mut viewer, r#"{"type":"subscribe","topics":["hud:al ice/x"]}"#).await;
    match recv_server(&mut viewer).await {
        ServerMessage::Error { topic, .. } => assert_eq!(topic.as_deref(), Some("hud:al ice/x")),
        other => panic!("expected an error, got {other:?}"),
    }
    send(&mut viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
    assert_eq!(recv_server(&mut viewer).await, ServerMessage::Pong {});
}

#[tokio::test]
async fn oversized_frames_close_1009() {
    let relay = Relay::start_with(|s| s.max_frame_bytes = 64 * 1024).await;
    let (mut agent, _) = relay.agent("mac").await;
    let big = format!(r#"{{"type":"pong","pad":"{}"}}"#, "x".repeat(64 * 1024));
    send_text(&mut agent, &big).await;
    assert_eq!(recv_close(&mut agent).await, (1009, "message too big".to_string()));

    let mut viewer = relay.viewer(None).await;
    send_text(&mut viewer, &big).await;
    assert_eq!(recv_close(&mut viewer).await.0, 1009);

    // Far above the limit (refused by the frame reader itself) still shows 1009.
    let mut viewer = relay.viewer(None).await;
    send_text(&mut viewer, &"y".repeat(512 * 1024)).await;
    assert_eq!(recv_close(&mut viewer).await.0, 1009);

    // A frame just under the limit is fine (and invalid, so it gets an error, not a close).
    let mut agent = relay.agent_socket(&relay.keys.agent).await;
    send_text(&mut agent, &"z".repeat(60 * 1024)).await;
    assert!(matches!(recv_relay(&mut agent).await, RelayMessage::Error { .. }));
}

#[tokio::test]
async fn default_frame_limit_is_one_mebibyte() {
    let relay = Relay::start().await;
    let mut viewer = relay.viewer(None).await;
    send_text(&mut viewer, &"x".repeat(1024 * 1024 + 1)).await;
    assert_eq!(recv_close(&mut viewer).await.0, 1009);
}

#[tokio::test]
async fn silent_agents_are_pinged_closed_and_reported_offline() {
    let relay = Relay::start_with(|s| {
        s.heartbeat_ms = 100;
        s.pong_timeout_ms = 600;
        s.agent_offline_grace_ms = 200;
    })
    .await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    assert_eq!(subscribe(&mut viewer, "alerts").await, json!([]));
    let (mut agent, _) = relay.agent("mac").await;
    // A relay that knows none of the agent's repos asks for its whole state first.
    assert_eq!(recv_relay(&mut agent).await, RelayMessage::StatusRequest {});
    // Answer two pings: the connection stays up past the timeout it would otherwise hit.
    let started = tokio::time::Instant::now();
    let mut answered = 0;
    while answered < 2 {
        match recv_relay(&mut agent).await {
            RelayMessage::Ping { timestamp } => {
                assert!(timestamp > 1_600_000_000_000, "milliseconds since the epoch");
                send(&mut agent, &AgentMessage::Pong { timestamp: Some(timestamp) }).await;
                answered += 1;
            }
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    // Then silence: closed with 1000 within the pong timeout.
    let (code, _) = recv_close(&mut agent).await;
    assert_eq!(code, 1000);
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    // Offline past the grace period: an agent_offline alert, published to `alerts`.
    let alert = next_event(&mut viewer, "alerts").await;
    assert_eq!(alert["kind"], "agent_offline");
    assert_eq!(alert["agentId"], "mac");
    let (_, agents) = relay.get("/api/cockpit/agents", &relay.keys.owner).await;
    assert_eq!(agents["agents"][0]["status"], "offline");
}

#[tokio::test]
async fn same_agent_id_replaces_the_old_socket_with_4000() {
    let relay = Relay::start_with(|s| s.agent_offline_grace_ms = 100).await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut viewer, "agents").await;
    let (mut first, _) = relay.agent("mac").await;
    let (mut second, _) = relay.agent("mac").await;
    assert_eq!(recv_close(&mut first).await, (4000, "replaced".to_string()));
    // The new socket works and the agent stays online.
    send(&mut second, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Ahead)], full: None }).await;
    let key = relay.keys.owner.clone();
    eventually("the repo from the new socket", || async {
        let (_, b) = relay.get("/api/cockpit/repos?status=ahead", &key).await;
        (b["repos"].as_array().is_some_and(|r| r.len() == 1)).then_some(())
    })
    .await;
    let (_, agents) = relay.get("/api/cockpit/agents", &key).await;
    assert_eq!(agents["count"], 1);
    assert_eq!(agents["agents"][0]["status"], "online");
    // Every agents event so far said online: the replaced socket never marked it offline.
    loop {
        let info: Value = next_event(&mut viewer, "agents").await;
        assert_eq!(info["status"], "online", "{info}");
        if info["repos"] == json!(["web"]) {
            break;
        }
    }
}

#[tokio::test]
async fn the_first_message_must_be_agent_status_and_come_in_time() {
    let relay = Relay::start_with(|s| s.pong_timeout_ms = 500).await;
    let mut agent = relay.agent_socket(&relay.keys.agent).await;
    send(&mut agent, &AgentMessage::Pong { timestamp: None }).await;
    match recv_relay(&mut agent).await {
        RelayMessage::Error { details: Some(d), .. } => assert_eq!(d[0].path, "$.type"),
        other => panic!("expected an error, got {other:?}"),
    }
    send_text(&mut agent, r#"{"type":"agent-status","agentId":"../x","status":"online"}"#).await;
    match recv_relay(&mut agent).await {
        RelayMessage::Error { details: Some(d), .. } => assert_eq!(d[0].path, "$.agentId"),
        other => panic!("expected an error, got {other:?}"),
    }
    // No valid agent-status within the timeout: a policy close.
    assert_eq!(recv_close(&mut agent).await.0, 1008);
}

#[tokio::test]
async fn a_quick_reconnect_raises_no_offline_alert() {
    let relay = Relay::start_with(|s| s.agent_offline_grace_ms = 1000).await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut viewer, "alerts").await;
    let (first, _) = relay.agent("mac").await;
    drop(first);
    let owner = relay.keys.owner.clone();
    eventually("the agent offline", || async {
        let (_, b) = relay.get("/api/cockpit/agents", &owner).await;
        (b["agents"][0]["status"] == "offline").then_some(())
    })
    .await;
    // Back within the grace period, then gone for good.
    let (second, _) = relay.agent("mac").await;
    drop(second);
    let alert = next_event(&mut viewer, "alerts").await;
    assert_eq!(alert["kind"], "agent_offline");
    // The first absence's timer fired before the second's: only one alert exists.
    let (_, alerts) = relay.get("/api/cockpit/alerts", &owner).await;
    assert_eq!(alerts["total"], 1, "{alerts}");
}

#[tokio::test]
async fn task_ids_of_another_user_are_refused() {
    let relay = Relay::start().await;
    let (status, created) = relay
        .post(
            "/api/cockpit/tasks",
            &relay.keys.other,
            &json!({"executor": "shell", "repo": "b", "payload": {"command": "x"}}),
        )
        .await;
    assert_eq!(status, 201);
    let bobs = created["task"]["id"].as_str().unwrap().to_string();
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task(&bobs, "web", TaskStatus::Running) }).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Error { details: Some(d), .. } => assert_eq!(d[0].path, "$.task.id"),
        other => panic!("expected an error, got {other:?}"),
    }
    send(&mut agent, &event_message(&bobs, 1, "intrusion")).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Error { details: Some(d), .. } => assert_eq!(d[0].path, "$.taskId"),
        other => panic!("expected an error, got {other:?}"),
    }
    let (_, task) = relay.get(&format!("/api/cockpit/tasks/{bobs}"), &relay.keys.other).await;
    assert_eq!((task["task"]["status"].as_str(), task["task"]["lastSeq"].as_u64()), (Some("queued"), Some(0)));
}

#[tokio::test]
async fn status_request_only_when_the_relay_knows_no_repo_of_the_agent() {
    let relay = Relay::start_with(|s| s.heartbeat_ms = 50).await;
    let (mut first, _) = relay.agent("mac").await;
    assert_eq!(recv_relay(&mut first).await, RelayMessage::StatusRequest {});
    send(&mut first, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    let owner = relay.keys.owner.clone();
    eventually("the repo", || async {
        let (_, b) = relay.get("/api/cockpit/repos", &owner).await;
        (b["repos"].as_array().is_some_and(|r| r.len() == 1)).then_some(())
    })
    .await;
    // Known repos now: the next message on a new connection is a ping, not a request.
    let (mut second, _) = relay.agent("mac").await;
    assert!(matches!(recv_relay(&mut second).await, RelayMessage::Ping { .. }));
}

fn alert(id: &str, message: &str) -> flightdeck_protocol::Alert {
    flightdeck_protocol::Alert {
        id: id.into(),
        severity: flightdeck_protocol::Severity::Critical,
        kind: flightdeck_protocol::AlertKind::RepoConflict,
        repo: Some("web".into()),
        task_id: None,
        agent_id: Some("mac".into()),
        message: message.into(),
        // A resend is the same alert: the same creation time.
        created_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        acknowledged: false,
        acknowledged_at: None,
    }
}

/// After a resend of `resent` (unacknowledged), it is still acknowledged with the same time
/// over REST, and the next `alerts` event is `next`, not the resent alert again.
async fn resent_alert_stays_acknowledged(relay: &Relay, agent: &mut Ws, viewer: &mut Ws, acked_at: &Value) {
    send(agent, &AgentMessage::Alert { alert: alert("alert-1", "merge conflict in web") }).await;
    barrier(agent).await;
    let (_, body) = relay.get("/api/cockpit/alerts?acknowledged=true", &relay.keys.owner).await;
    assert_eq!(body["alerts"][0]["id"], "alert-1", "{body}");
    assert_eq!(&body["alerts"][0]["acknowledgedAt"], acked_at);
    let (_, body) = relay.get("/api/cockpit/alerts?acknowledged=false", &relay.keys.owner).await;
    let unacked: Vec<&str> = body["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert!(!unacked.contains(&"alert-1"), "{body}");
    let next_id = format!("alert-{}", unacked.len() + 2);
    send(agent, &AgentMessage::Alert { alert: alert(&next_id, "another") }).await;
    let e = next_event(viewer, "alerts").await;
    assert_eq!(e["id"], next_id.as_str(), "the resent alert was published again: {e}");
}

#[tokio::test]
async fn an_acknowledged_alert_stays_acknowledged_when_the_agent_resends_it() {
    let mut relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut viewer, "alerts").await;
    send(&mut agent, &AgentMessage::Alert { alert: alert("alert-1", "merge conflict in web") }).await;
    assert_eq!(next_event(&mut viewer, "alerts").await["acknowledged"], false);
    let (status, body) = relay.post("/api/cockpit/alerts/ack/alert-1", &relay.keys.owner, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let acked_at = body["alert"]["acknowledgedAt"].clone();
    assert!(acked_at.is_string());
    assert_eq!(next_event(&mut viewer, "alerts").await["acknowledged"], true);

    resent_alert_stays_acknowledged(&relay, &mut agent, &mut viewer, &acked_at).await;

    // Across a relay restart on the same data dir.
    let keys = relay.keys.clone();
    let tempdir = relay.take_tempdir();
    relay.stop().await;
    let relay = Relay::launch(test_settings(&relay.dir), keys).await;
    let _tempdir = tempdir;
    let (mut agent, _) = relay.agent("mac").await;
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    let snapshot = subscribe(&mut viewer, "alerts").await;
    assert!(snapshot.as_array().unwrap().iter().all(|a| a["id"] != "alert-1"), "{snapshot}");
    resent_alert_stays_acknowledged(&relay, &mut agent, &mut viewer, &acked_at).await;
    let snapshot = subscribe(&mut viewer, "alerts").await;
    assert!(snapshot.as_array().unwrap().iter().all(|a| a["id"] != "alert-1"), "{snapshot}");
}

/// Issue 13.3: seqs at or above 2^63 were accepted (and stored wrongly as negative numbers);
/// `after=2^63` returned the whole transcript.
#[tokio::test]
async fn seqs_and_after_at_or_above_2_pow_63_are_refused() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("big-seq", "web", TaskStatus::Running) }).await;
    send(&mut agent, &event_message("big-seq", 1, "line 1")).await;
    let text = r#"{"type":"task-event","taskId":"big-seq","seq":9223372036854775808,"event":{"kind":"chunk","text":"x","stream":"stdout"}}"#;
    send_text(&mut agent, text).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Error { details: Some(details), .. } => {
            assert_eq!(details[0].path, "$.seq", "{details:?}");
            assert!(details[0].problem.contains("at most 9223372036854775807"), "{details:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(rest_seqs(&relay, "big-seq").await, vec![1]);
    let key = &relay.keys.owner;
    for after in ["9223372036854775808", "18446744073709551615", "-1"] {
        let (status, body) = relay.get(&format!("/api/cockpit/tasks/big-seq/events?after={after}"), key).await;
        assert_eq!(status, 400, "after={after}: {body}");
        assert_eq!(body["error"]["details"][0]["path"], "$.after", "{body}");
    }
    let (status, body) = relay.get("/api/cockpit/tasks/big-seq/events?after=9223372036854775807", key).await;
    assert_eq!((status, body["events"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    let (status, body) = relay.get("/api/cockpit/tasks?offset=9223372036854775808", key).await;
    assert_eq!((status, &body["error"]["details"][0]["path"]), (400, &json!("$.offset")), "{body}");
}

/// Cancelling a running task whose agent is offline is refused with `agent_offline` (it used
/// to be a bare `conflict`): nothing can tell the agent, and the task is left as it is.
#[tokio::test]
async fn cancel_of_a_task_whose_agent_is_offline_says_so() {
    let relay = Relay::start().await;
    let key = relay.keys.owner.clone();
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t1", "web", TaskStatus::Running) }).await;
    eventually("the running task", || {
        let (relay, key) = (&relay, key.clone());
        async move { (relay.get("/api/cockpit/tasks/t1", &key).await.1["task"]["status"] == "running").then_some(()) }
    })
    .await;
    drop(agent);
    eventually("the agent offline", || {
        let (relay, key) = (&relay, key.clone());
        async move {
            let (_, body) = relay.get("/api/cockpit/agents", &key).await;
            (body["agents"][0]["status"] == "offline").then_some(())
        }
    })
    .await;
    let (status, body) = relay.post("/api/cockpit/tasks/t1/cancel", &key, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("agent_offline")), "{body}");
    assert_eq!(relay.get("/api/cockpit/tasks/t1", &key).await.1["task"]["status"], "running");
}
