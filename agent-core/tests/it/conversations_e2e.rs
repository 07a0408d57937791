//! Conversations through a real relay and a real `flightdeck-agent run` with the real Claude
//! Code CLI: a task waits for a decision at the relay and in a viewer, and is decided on the
//! agent's machine with `flightdeck-agent decide`.

use std::process::Command;
use std::time::Duration;

use flightdeck_protocol::{TaskEvent, TaskStatus};
use serde_json::json;
use tokio::time::Instant;

use super::link_e2e::{transcript_until_end, Setup, Viewer};
use crate::support::scripted_api::{bash_turn, text_turn, ScriptedApi};

const TOUCH: &str = "touch made-by-claude.txt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_is_decided_on_the_agents_machine() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20),
        text_turn("msg_2", 150, &["Made it."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "make the file"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;

    // The relay shows the task waiting, and a viewer gets the request.
    let waiting = s.relay.wait_task(&id, "the task waits at the relay", |t| t.status == TaskStatus::Waiting).await;
    assert!(waiting.waiting_since.is_some());
    let (_, alerts) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
    assert!(
        alerts["alerts"].as_array().unwrap().iter().any(|a| a["kind"] == "needs_input" && a["taskId"] == id.as_str()),
        "{alerts}"
    );
    let request_id = viewer
        .until("the permission request", |_, _, payload| {
            let text = payload.to_string();
            text.contains("permission_request").then(|| {
                let start = text.find("\"requestId\":\"").unwrap() + 13;
                text[start..].split('"').next().unwrap().to_string()
            })
        })
        .await;
    assert!(!s.repo.path().join("made-by-claude.txt").exists());

    // Decided on the agent's machine.
    let decide = |request: &str| {
        Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
            .args(["decide", &id, request, "allow", "--data-dir"])
            .arg(s.agent_data.path())
            .output()
            .unwrap()
    };
    let wrong = decide("no-such-request");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not_pending"), "{wrong:?}");
    let out = decide(&request_id);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let task = s.relay.wait_task(&id, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(s.repo.path().join("made-by-claude.txt").exists(), "the tool ran after the allow");
    let mut again = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let events = transcript_until_end(&mut again.ws, &id, Instant::now() + Duration::from_secs(30)).await.unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(&e.event, TaskEvent::PermissionDecision { request_id: r, .. } if *r == request_id)));
    let (_, alerts) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
    assert!(
        !alerts["alerts"].as_array().unwrap().iter().any(|a| a["kind"] == "needs_input"),
        "the needs_input alert is acknowledged once decided: {alerts}"
    );
}
