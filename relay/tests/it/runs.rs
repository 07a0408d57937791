//! Container runs (SPEC 10) at the relay, without an engine: what is refused without a
//! `[runner]`, and what a run's one-time key may do. The runs themselves are tested against
//! real Podman in `agent-core/tests/it/containers_e2e.rs`.

use flightdeck_protocol::{
    AgentMessage, Executor, Placement, RelayMessage, RepoState, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus,
};
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn without_a_runner_container_placement_and_secrets_are_refused() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let (status, body) = relay.get("/api/cockpit/runner", &owner).await;
    assert_eq!((status, body["available"].clone()), (200, Value::Bool(false)));
    let task = json!({"executor": "shell", "repo": "demo", "payload": {"command": "true"}, "placement": "container"});
    let (status, body) = relay.post("/api/cockpit/tasks", &owner, &task).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("no_runner")), "{body}");
    // auto without a runner: it waits for an agent, as before.
    let task = json!({"executor": "shell", "repo": "demo", "payload": {"command": "true"}});
    let (status, body) = relay.post("/api/cockpit/tasks", &owner, &task).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["task"]["status"].as_str(), body["task"]["placement"].as_str()), (Some("queued"), Some("agent")));
    let r = relay
        .http()
        .put(relay.url("/api/cockpit/secrets/GIT_TOKEN"))
        .bearer_auth(&owner)
        .json(&json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    // A bad clone URL is named.
    let task =
        json!({"executor": "shell", "repo": "demo", "payload": {"command": "true"}, "cloneUrl": "--upload-pack=x"});
    let (status, body) = relay.post("/api/cockpit/tasks", &owner, &task).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("cloneUrl"), "{body}");
}

#[tokio::test]
async fn a_run_key_reports_only_its_task_and_replaces_no_agent() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    // The owner's agent has the repo.
    let (mut desktop, _) = relay.agent("desk").await;
    send(&mut desktop, &AgentMessage::GitStatus { repos: vec![repo("demo", RepoState::Clean)], full: Some(true) })
        .await;
    barrier(&mut desktop).await;
    let body = json!({"executor": "shell", "repo": "demo", "payload": {"command": "true"}, "placement": "agent"});
    let (status, body) = relay.post("/api/cockpit/tasks", &owner, &body).await;
    assert_eq!(status, 201, "{body}");
    let task: Task = serde_json::from_value(body["task"].clone()).unwrap();
    let other = relay
        .post(
            "/api/cockpit/tasks",
            &owner,
            &json!({"executor": "shell", "repo": "demo", "payload": {"command": "true"}}),
        )
        .await
        .1;
    let other_id = other["task"]["id"].as_str().unwrap().to_string();

    // A key bound to the task, as the runner mints it.
    let key = {
        let mut db = flightdeck_relay::Db::open_in(&relay.dir).unwrap();
        db.create_task_key("alice", &task.id).unwrap().secret
    };
    let mut run = relay.agent_socket(&key).await;
    send(&mut run, &status_message("container-abc")).await;
    match recv_relay_skip_pings(&mut run).await {
        RelayMessage::Welcome { last_seqs, .. } => {
            assert_eq!(last_seqs.keys().collect::<Vec<_>>(), [&task.id], "only its task: {last_seqs:?}")
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    // Its clone is not the user's repo: the owner's agent keeps it.
    send(&mut run, &AgentMessage::GitStatus { repos: vec![repo("demo", RepoState::Dirty)], full: Some(true) }).await;
    // Another task is refused.
    let event = AgentMessage::TaskEvent { task_id: other_id, seq: 1, event: TaskEvent::Done { summary: "x".into() } };
    send(&mut run, &event).await;
    match recv_relay_skip_pings(&mut run).await {
        RelayMessage::Error { details: Some(d), .. } => {
            assert!(d.iter().any(|d| d.problem.contains("only report the task")), "{d:?}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let (_, repos) = relay.get("/api/cockpit/repos?agentId=desk", &owner).await;
    assert_eq!(repos["repos"][0]["status"], "clean", "{repos}");
    // It is not one of the user's agents, and leaves nothing when it goes.
    let (_, agents) = relay.get("/api/cockpit/agents", &owner).await;
    assert_eq!(agents["count"], 1, "{agents}");
    drop(run);
    let (_, task_now) = relay.get(&format!("/api/cockpit/tasks/{}", task.id), &owner).await;
    assert_ne!(task_now["task"]["status"], TaskStatus::Failed.as_str());
    let (_, agents) = relay.get("/api/cockpit/agents", &owner).await;
    assert_eq!(agents["agents"][0]["agentId"], "desk", "{agents}");
    assert_eq!(agents["agents"][0]["status"], "online", "{agents}");
}

// Issue 22, item 4: a follow-up of a container task needs a new container; a relay that cannot
// start one (no `[runner]` now) refuses the reply at once with 409 `not_resumable`, adding no
// turn that would wait forever for the exited container's agent.
#[tokio::test]
async fn a_reply_to_a_container_task_without_a_runner_is_refused_at_once() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    // A container task that ran to its end with a Claude session (on this relay when it had a
    // `[runner]`).
    let payload = TaskPayload { prompt: Some("write first.txt".into()), push: Some(true), ..TaskPayload::default() };
    let queued = Task::queued(
        uuid::Uuid::now_v7().to_string(),
        "write first.txt",
        "demo",
        Executor::Claude,
        payload,
        TaskSource::Remote,
        chrono::Utc::now(),
    );
    let task = Task {
        placement: Some(Placement::Container),
        agent_id: Some("container-0123456789ab".into()),
        session_id: Some("5f0e1c9a-0000-4000-8000-000000000000".into()),
        status: TaskStatus::Completed,
        finished_at: Some(chrono::Utc::now()),
        ..queued
    };
    flightdeck_relay::Db::open_in(&relay.dir).unwrap().upsert_task("alice", &task).unwrap();
    let (status, body) =
        relay.post(&format!("/api/cockpit/tasks/{}/reply", task.id), &owner, &json!({"prompt": "go on"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_resumable")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("container"), "the message says why: {message}");
    let (_, conversation) = relay.get(&format!("/api/cockpit/conversations/{}", task.id), &owner).await;
    assert_eq!(conversation["tasks"].as_array().map(Vec::len), Some(1), "no turn was added: {conversation}");
}
