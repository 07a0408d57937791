//! Admin commands as real processes against a running relay, graceful shutdown, and restarts
//! on the same data dir.

use std::process::Command;

use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, TaskStatus};
use serde_json::json;

use crate::support::*;

fn admin(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the relay binary runs");
    output
}

#[tokio::test]
async fn admin_commands_work_while_serving_and_revoke_closes_sockets_with_4401() {
    let relay = Relay::start().await;
    let dir = relay.dir.clone();

    // user add + key create: the key alone on stdout, usable at once by the running server.
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            let added = admin(&dir, &["user", "add", "carol"]);
            assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
            let again = admin(&dir, &["user", "add", "carol"]);
            assert!(!again.status.success());
            let bad = admin(&dir, &["user", "add", "../carol"]);
            assert!(!bad.status.success());
            admin(&dir, &["key", "create", "--user", "carol", "--scope", "owner"])
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let carol = stdout.trim_end_matches('\n');
    assert!(!carol.contains('\n') && carol.starts_with("fdk_") && carol.len() == 68, "{stdout:?}");
    let (status, _) = relay.get("/api/cockpit/tasks", carol).await;
    assert_eq!(status, 200);

    // key list shows ids, never secrets.
    let list = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || admin(&dir, &["key", "list"])
    })
    .await
    .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(listing.contains(&relay.keys.owner_id), "{listing}");
    assert!(listing.contains("carol"));
    assert!(!listing.contains(&relay.keys.owner) && !listing.contains(carol), "no secrets: {listing}");

    // Live sockets of alice's owner key (a viewer) and of her agent key.
    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut viewer, "tasks").await;
    let (mut agent, _) = relay.agent("mac").await;
    let mut other_viewer = relay.viewer(Some(&relay.keys.viewer)).await;

    for id in [relay.keys.owner_id.clone(), relay.keys.agent_id.clone()] {
        let dir = dir.clone();
        let out = tokio::task::spawn_blocking(move || admin(&dir, &["key", "revoke", &id])).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(recv_close(&mut viewer).await, (4401, "key revoked".to_string()));
    assert_eq!(recv_close(&mut agent).await.0, 4401);
    // Other keys are untouched.
    send(&mut other_viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
    assert_eq!(recv_server(&mut other_viewer).await, flightdeck_protocol::ServerMessage::Pong {});
    let (status, _) = relay.get("/api/cockpit/tasks", &relay.keys.owner).await;
    assert_eq!(status, 401);
    let unknown = tokio::task::spawn_blocking(move || admin(&dir, &["key", "revoke", "nope"])).await.unwrap();
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn a_restart_keeps_users_keys_settings_queued_tasks_and_transcripts() {
    let mut relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    relay.set_hud("web", true, true).await;
    let (_, queued) = relay
        .post(
            "/api/cockpit/tasks",
            &owner,
            &json!({"executor": "shell", "repo": "api", "payload": {"command": "make"}}),
        )
        .await;
    let queued_id = queued["task"]["id"].as_str().unwrap().to_string();
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("done-1", "web", TaskStatus::Completed) }).await;
    for seq in 1..=3 {
        send(&mut agent, &event_message("done-1", seq, &format!("line {seq}"))).await;
    }
    eventually("the transcript", || async {
        let (_, b) = relay.get("/api/cockpit/tasks/done-1", &owner).await;
        (b["task"]["lastSeq"] == 3).then_some(())
    })
    .await;
    let mut viewer = relay.viewer(None).await;
    subscribe(&mut viewer, "hud:alice/web").await;

    // Graceful shutdown closes every socket with 1001.
    let keys = relay.keys.clone();
    let tempdir = relay.take_tempdir();
    relay.stop().await;
    assert_eq!(recv_close(&mut agent).await.0, 1001);
    assert_eq!(recv_close(&mut viewer).await.0, 1001);

    let settings = test_settings(&relay.dir);
    let relay = Relay::launch(settings, keys).await;
    let _tempdir = tempdir;
    let (status, body) = relay.get("/api/cockpit/tasks", &owner).await;
    assert_eq!(status, 200, "the owner key survives");
    assert_eq!(body["total"], 2);
    let (status, _) = relay.get("/api/cockpit/tasks", &relay.keys.revoked).await;
    assert_eq!(status, 401, "a revoked key stays revoked");
    let (_, settings) = relay.get("/api/hud/settings?repo=alice/web", &owner).await;
    assert_eq!(settings, json!({"public": true, "embedAllowed": true}));
    let (_, events) = relay.get("/api/cockpit/tasks/done-1/events", &owner).await;
    assert_eq!(events["events"].as_array().unwrap().len(), 3);
    assert_eq!(events["events"][2]["event"]["text"], "line 3");
    let (_, agents) = relay.get("/api/cockpit/agents", &owner).await;
    assert_eq!(agents["agents"][0]["status"], "offline", "nobody is connected after a restart");
    // The public HUD still shows the transcript to anyone.
    let mut viewer = relay.viewer(None).await;
    let hud = subscribe(&mut viewer, "hud:alice/web").await;
    assert_eq!(hud["task"]["id"], "done-1");
    assert_eq!(hud["events"].as_array().unwrap().len(), 3);

    // The queued task reaches the agent that has its repo.
    let (mut agent, last_seqs) = relay.agent("mac").await;
    assert_eq!(last_seqs.get("done-1"), Some(&3));
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("api", RepoState::Clean)], full: None }).await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::Task { task_id, .. } => assert_eq!(task_id, queued_id),
        other => panic!("expected the queued task, got {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_serves_and_shuts_down_gracefully_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("FLIGHTDECK_RELAY_HEARTBEAT_MS", "60000")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("relay listening addr=").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("the relay exited before listening");
    })
    .await
    .expect("the relay starts in time");
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let (mut viewer, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/realtime")).await.unwrap();
    send(&mut viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
    assert_eq!(recv_server(&mut viewer).await, flightdeck_protocol::ServerMessage::Pong {});

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    assert_eq!(recv_close(&mut viewer).await.0, 1001);
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.expect("the relay exits in time").unwrap();
    assert!(status.success(), "{status:?}");
    // Flushed: the WAL was folded back into the database file.
    let wal = dir.path().join("relay.sqlite3-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

/// A reader that has gone (`key list | head -1`, `| grep -q`) is not an error: the command
/// exits 0 quietly instead of panicking on the closed pipe (a CI run saw the panic).
#[test]
fn admin_output_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    assert!(admin(dir.path(), &["user", "add", "alice"]).status.success());
    for scope in ["agent", "owner"] {
        assert!(admin(dir.path(), &["key", "create", "--user", "alice", "--scope", scope]).status.success());
    }
    for args in [&["key", "list"][..], &["key", "create", "--user", "alice", "--scope", "viewer"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
