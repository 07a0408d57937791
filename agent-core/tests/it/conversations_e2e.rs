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

/// Posts a Claude task that asks to run `touch` and waits until the relay shows it waiting;
/// returns the task id and the request id.
async fn waiting_task(s: &Setup) -> (String, String) {
    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "make the file"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    s.relay.wait_task(&id, "the task waits at the relay", |t| t.status == TaskStatus::Waiting).await;
    let (status, events) =
        s.relay.api(reqwest::Method::GET, &format!("/api/cockpit/tasks/{id}/events?after=0&limit=500"), None).await;
    assert_eq!(status, 200);
    let request_id = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["kind"] == "permission_request")
        .map(|e| e["event"]["requestId"].as_str().unwrap().to_string())
        .expect("the request is in the transcript");
    (id, request_id)
}

async fn decide_over_rest(s: &Setup, id: &str, request_id: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    s.relay.api(reqwest::Method::POST, &format!("/api/cockpit/tasks/{id}/permissions/{request_id}"), Some(body)).await
}

// (a) and (b): the owner allows over REST and the file exists; denies and it does not, while
// Claude hears why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_allows_or_denies_over_rest() {
    for allow in [true, false] {
        let api = ScriptedApi::start(vec![
            bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20),
            text_turn("msg_2", 150, &["Done deciding."], 5),
        ])
        .await;
        let s = Setup::new().await;
        let _agent = s.agent(s.relay.http(), Some(&api.url));
        s.wait_repo_known().await;
        let (id, request_id) = waiting_task(&s).await;
        let body = if allow {
            json!({"behavior": "allow"})
        } else {
            json!({"behavior": "deny", "message": "not in this repo"})
        };
        let (status, answer) = decide_over_rest(&s, &id, &request_id, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let task = s.relay.wait_task(&id, "the task completes", |t| t.status.is_terminal()).await;
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(s.repo.path().join("made-by-claude.txt").exists(), allow);
        if !allow {
            let requests = api.message_requests();
            assert!(requests.last().unwrap().body.to_string().contains("not in this repo"), "Claude hears why");
        }
        // Decided once: a second decision is a conflict.
        let (status, _) = decide_over_rest(&s, &id, &request_id, body).await;
        assert_eq!(status, 409);
    }
}

// (d): the relay is killed while the task waits and restarted; the decision made after that
// reaches the agent and the task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_after_a_relay_restart_completes_the_task() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20),
        text_turn("msg_2", 150, &["Made it."], 5),
    ])
    .await;
    let mut s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let (id, request_id) = waiting_task(&s).await;
    s.relay.kill();
    s.relay.restart().await;
    // Decided as soon as the relay is back (the agent may still be reconnecting).
    let (status, answer) = decide_over_rest(&s, &id, &request_id, json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{answer}");
    let task = s.relay.wait_task(&id, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(s.repo.path().join("made-by-claude.txt").exists());
}

// (e): a reply resumes the session (the scripted API sees the earlier messages) and both turns
// are one conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_rest_resumes_the_session() {
    let api = ScriptedApi::start(vec![
        text_turn("msg_1", 100, &["The answer is 42."], 5),
        text_turn("msg_2", 150, &["You asked about 42."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "what is the answer?"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let first = body["task"]["id"].as_str().unwrap().to_string();
    let done = s.relay.wait_task(&first, "the first turn ends", |t| t.status.is_terminal()).await;
    assert!(done.session_id.is_some(), "the relay knows the session: {done:?}");

    let (status, body) = s
        .relay
        .api(
            reqwest::Method::POST,
            &format!("/api/cockpit/tasks/{first}/reply"),
            Some(json!({"prompt": "what did I ask?"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["task"]["id"].as_str().unwrap().to_string();
    let turn = s.relay.wait_task(&second, "the reply ends", |t| t.status.is_terminal()).await;
    assert_eq!(turn.status, TaskStatus::Completed);
    assert_eq!(turn.session_id, done.session_id, "the same Claude session");
    let last = api.message_requests().last().unwrap().body.to_string();
    assert!(last.contains("what is the answer?") && last.contains("The answer is 42."), "resumed: {last}");
    let (status, conversation) =
        s.relay.api(reqwest::Method::GET, &format!("/api/cockpit/conversations/{first}"), None).await;
    assert_eq!(status, 200, "{conversation}");
    let ids: Vec<&str> = conversation["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
}

/// `flightdeck-agent ARGS --data-dir DIR` against the test's agent: (exit code, stdout, stderr).
fn agent_cli(s: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(args)
        .arg("--data-dir")
        .arg(s.agent_data.path())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

// `flightdeck-agent pending` lists what waits for a decision (task, request id, tool, what it
// would do, since when, and the command that decides it); `decide` says what it did, or why it
// did nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_what_waits_and_decide_says_what_it_did() {
    use flightdeck_protocol::local::PendingRequest;
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20),
        text_turn("msg_2", 150, &["Made it."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let nothing = (Some(0), "nothing waits for a decision\n".to_string(), String::new());
    assert_eq!(agent_cli(&s, &["pending"]), nothing);

    let (id, request_id) = waiting_task(&s).await;
    let (code, json, err) = agent_cli(&s, &["pending", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<PendingRequest> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let r = &listed[0];
    assert_eq!(
        (r.task_id.as_str(), r.request_id.as_str(), r.tool_name.as_str(), r.summary.as_str()),
        (id.as_str(), request_id.as_str(), "Bash", TOUCH)
    );
    assert_eq!((r.task_title.as_str(), r.repo.clone()), ("make the file", s.slug()));
    assert!(r.waiting_since.is_some());
    let (code, text, _) = agent_cli(&s, &["pending"]);
    assert_eq!(code, Some(0));
    let data = s.agent_data.path().display();
    for line in [
        format!("task {id} \"make the file\" in {}, waiting since ", s.slug()),
        format!("  request {request_id}: Bash {TOUCH}"),
        format!("  decide: flightdeck-agent decide {id} {request_id} allow|deny --data-dir {data}"),
    ] {
        assert!(text.contains(&line), "{line:?} in:\n{text}");
    }

    // Errors say why, and where to look.
    let (code, out, err) = agent_cli(&s, &["decide", &id, "no-such-request", "allow"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        format!(
            "flightdeck-agent: cannot allow no-such-request: task {id} has no request no-such-request waiting for a \
             decision: it was decided already, or its task ended, or the id is wrong (`flightdeck-agent pending` \
             lists what waits) [not_pending]\n"
        )
    );
    let (code, _, err) = agent_cli(&s, &["decide", "no-such-task", &request_id, "deny"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("has no task no-such-task") && err.ends_with("[task_not_found]\n"), "{err}");
    assert!(!s.repo.path().join("made-by-claude.txt").exists());

    // Success says what was decided.
    let (code, out, err) = agent_cli(&s, &["decide", &id, &request_id, "allow"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(out, format!("allowed Bash ({TOUCH}) for task {id}\n"));
    let task = s.relay.wait_task(&id, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(s.repo.path().join("made-by-claude.txt").exists());
    assert_eq!(agent_cli(&s, &["pending"]), nothing);

    // Without an agent: says so.
    let (code, _, err) = {
        let out = Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
            .args(["pending", "--data-dir"])
            .arg(s.agent_data.path().join("elsewhere"))
            .output()
            .unwrap();
        (out.status.code(), (), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, Some(1));
    assert!(err.contains("no agent runs with the data directory"), "{err}");
}
