//! Conversations and remote decisions (SPEC 8) at the relay: a reply is the next turn of a
//! conversation and resumes its Claude session; the owner's decisions reach the agent, also
//! after a dropped link or a relay restart; `waiting` is a live status everywhere.

use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::{AgentMessage, Executor, RelayMessage, RepoState, Task, TaskEvent, TaskStatus};
use serde_json::{json, Value};

use crate::support::*;

/// An agent `mac` online with the repo `web`, on a relay that has nothing queued for it.
async fn online_agent(relay: &Relay) -> Ws {
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    barrier(&mut agent).await;
    agent
}

/// Starts a claude task in `web` over REST and checks the agent receives it.
async fn start_claude(relay: &Relay, agent: &mut Ws, payload: Value) -> Task {
    let body = json!({"executor": "claude", "repo": "web", "payload": payload});
    let (status, created) = relay.post("/api/cockpit/tasks", &relay.keys.owner, &body).await;
    assert_eq!(status, 201, "{created}");
    let task: Task = serde_json::from_value(created["task"].clone()).unwrap();
    match recv_relay_skip_pings(agent).await {
        RelayMessage::Task { task_id, .. } => assert_eq!(task_id, task.id),
        other => panic!("expected the task, got {other:?}"),
    }
    task
}

/// The agent reports `task` as it is now; returns once the relay has stored it.
async fn report(agent: &mut Ws, task: &Task) {
    send(agent, &AgentMessage::TaskUpdate { task: task.clone() }).await;
    barrier(agent).await;
}

/// The agent appends `event` at `seq` to a transcript; returns once the relay has stored it.
async fn append(agent: &mut Ws, task_id: &str, seq: u64, event: TaskEvent) {
    send(agent, &AgentMessage::TaskEvent { task_id: task_id.into(), seq, event }).await;
    barrier(agent).await;
}

/// `task` with a new status and Claude's session id, as the agent reports it.
fn now(task: &Task, status: TaskStatus, session: Option<&str>) -> Task {
    let at = chrono::Utc::now();
    Task {
        status,
        session_id: session.map(str::to_string),
        started_at: Some(at),
        waiting_since: (status == TaskStatus::Waiting).then_some(at),
        finished_at: status.is_terminal().then_some(at),
        ..task.clone()
    }
}

fn permission_request(request_id: &str) -> TaskEvent {
    TaskEvent::PermissionRequest {
        request_id: request_id.into(),
        tool_name: "Bash".into(),
        input: json!({"command": "touch made-by-claude.txt"}),
        description: None,
        suggestions: None,
    }
}

fn permission_decision(request_id: &str) -> TaskEvent {
    TaskEvent::PermissionDecision {
        request_id: request_id.into(),
        behavior: Behavior::Allow,
        message: None,
        updated_input: None,
        decided_by: DecidedBy::Owner,
    }
}

/// A claude task the agent has reported `waiting` on the permission request `request_id`
/// (its transcript's first event).
async fn waiting_task(relay: &Relay, agent: &mut Ws, request_id: &str) -> Task {
    let task = start_claude(relay, agent, json!({"prompt": "touch a file"})).await;
    let task = now(&task, TaskStatus::Waiting, Some("sess-w"));
    report(agent, &task).await;
    append(agent, &task.id, 1, permission_request(request_id)).await;
    task
}

fn reply_path(task_id: &str) -> String {
    format!("/api/cockpit/tasks/{task_id}/reply")
}

fn decision_path(task_id: &str, request_id: &str) -> String {
    format!("/api/cockpit/tasks/{task_id}/permissions/{request_id}")
}

/// The `error.code` of an answer.
fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn task_of(body: &Value) -> Task {
    serde_json::from_value(body["task"].clone()).unwrap_or_else(|e| panic!("no task in {body}: {e}"))
}

/// The next message to the agent is the task `id` of `conversation`, answering `parent`, resuming `session`.
async fn expect_turn(agent: &mut Ws, id: &str, conversation: &str, parent: &str, session: &str) -> RelayMessage {
    let message = recv_relay_skip_pings(agent).await;
    match &message {
        RelayMessage::Task { task_id, task_type, payload, conversation_id, parent_task_id, .. } => {
            assert_eq!(task_id, id);
            assert_eq!(*task_type, Executor::Claude);
            assert_eq!(conversation_id.as_deref(), Some(conversation));
            assert_eq!(parent_task_id.as_deref(), Some(parent));
            assert_eq!(payload.resume_session_id.as_deref(), Some(session));
            assert_eq!(payload.repo.as_deref(), Some("web"));
        }
        other => panic!("expected the follow-up task, got {other:?}"),
    }
    message
}

#[tokio::test]
async fn a_reply_is_the_next_turn_of_the_conversation_and_resumes_its_session() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let payload = json!({
        "prompt": "make a plan", "model": "opus", "permissionMode": "acceptEdits",
        "allowedTools": ["Read"], "worktree": true, "maxCostUsd": 2.0, "timeoutSecs": 600
    });
    let first = start_claude(&relay, &mut agent, payload).await;
    assert_eq!(first.conversation_id, first.id, "a first turn is its own conversation");
    assert_eq!(first.parent_task_id, None);
    report(&mut agent, &now(&first, TaskStatus::Completed, Some("sess-1"))).await;

    let (status, body) = relay.post(&reply_path(&first.id), &owner, &json!({"prompt": "now do it\nall of it"})).await;
    assert_eq!(status, 201, "{body}");
    let second = task_of(&body);
    assert_ne!(second.id, first.id);
    assert_eq!(second.conversation_id, first.id);
    assert_eq!(second.parent_task_id.as_deref(), Some(first.id.as_str()));
    assert_eq!((second.executor, second.source), (Executor::Claude, flightdeck_protocol::TaskSource::Remote));
    assert_eq!(second.status, TaskStatus::Queued);
    assert_eq!(second.repo, "web");
    assert_eq!(second.agent_id.as_deref(), Some("mac"), "the session lives on the parent's agent");
    assert_eq!(second.title, "now do it", "derived from the prompt like any title");
    let p = &second.payload;
    assert_eq!(p.prompt.as_deref(), Some("now do it\nall of it"));
    assert_eq!(p.resume_session_id.as_deref(), Some("sess-1"));
    // Inherited from the parent: model, permission mode, allowed tools, worktree. Budgets are per turn.
    assert_eq!(p.model.as_deref(), Some("opus"));
    assert_eq!(p.permission_mode.as_deref(), Some("acceptEdits"));
    assert_eq!(p.allowed_tools, Some(vec!["Read".to_string()]));
    assert_eq!(p.worktree, Some(true));
    assert_eq!((p.max_cost_usd, p.timeout_secs), (None, None));
    match expect_turn(&mut agent, &second.id, &first.id, &first.id, "sess-1").await {
        RelayMessage::Task { payload, title, .. } => {
            assert_eq!(payload.prompt.as_deref(), Some("now do it\nall of it"));
            assert_eq!(payload.allowed_tools, Some(vec!["Read".to_string()]));
            assert_eq!(title.as_deref(), Some("now do it"));
        }
        _ => unreachable!(),
    }

    // The body's permission mode and allowed tools win over the parent's.
    report(&mut agent, &now(&second, TaskStatus::Completed, Some("sess-2"))).await;
    let body = json!({"prompt": "ship it", "permissionMode": "plan", "allowedTools": ["Bash(git:*)"]});
    let (status, body) = relay.post(&reply_path(&second.id), &owner, &body).await;
    assert_eq!(status, 201, "{body}");
    let third = task_of(&body);
    assert_eq!(third.conversation_id, first.id);
    assert_eq!(third.parent_task_id.as_deref(), Some(second.id.as_str()));
    assert_eq!(third.payload.permission_mode.as_deref(), Some("plan"));
    assert_eq!(third.payload.allowed_tools, Some(vec!["Bash(git:*)".to_string()]));
    assert_eq!(third.payload.model.as_deref(), Some("opus"));
    expect_turn(&mut agent, &third.id, &first.id, &second.id, "sess-2").await;
}

#[tokio::test]
async fn a_reply_while_the_agent_is_offline_waits_queued_and_goes_to_the_parents_agent() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let first = start_claude(&relay, &mut agent, json!({"prompt": "make a plan"})).await;
    report(&mut agent, &now(&first, TaskStatus::Completed, Some("sess-1"))).await;
    agent.close(None).await.unwrap();
    eventually("mac offline", || async {
        let (_, body) = relay.get("/api/cockpit/agents", &owner).await;
        (body["agents"][0]["status"] == "offline").then_some(())
    })
    .await;

    let (status, body) = relay.post(&reply_path(&first.id), &owner, &json!({"prompt": "go on"})).await;
    assert_eq!(status, 201, "{body}");
    let second = task_of(&body);
    assert_eq!(second.status, TaskStatus::Queued);
    let (mut agent, _) = relay.agent("mac").await;
    expect_turn(&mut agent, &second.id, &first.id, &first.id, "sess-1").await;
}

#[tokio::test]
async fn a_reply_waits_until_no_turn_of_the_conversation_is_live() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let first = start_claude(&relay, &mut agent, json!({"prompt": "make a plan"})).await;
    let reply = json!({"prompt": "and then?"});
    for status in [TaskStatus::Running, TaskStatus::Waiting] {
        report(&mut agent, &now(&first, status, Some("sess-1"))).await;
        let (code_, body) = relay.post(&reply_path(&first.id), &owner, &reply).await;
        assert_eq!((code_, code(&body)), (409, "turn_in_progress"), "{status:?}: {body}");
    }
    report(&mut agent, &now(&first, TaskStatus::Completed, Some("sess-1"))).await;
    let (status, body) = relay.post(&reply_path(&first.id), &owner, &reply).await;
    assert_eq!(status, 201, "{body}");
    let second = task_of(&body);
    expect_turn(&mut agent, &second.id, &first.id, &first.id, "sess-1").await;
    // The follow-up is queued, then running: no other reply in this conversation, to any turn.
    for status in [TaskStatus::Queued, TaskStatus::Running] {
        report(&mut agent, &now(&second, status, Some("sess-2"))).await;
        for parent in [&first.id, &second.id] {
            let (code_, body) = relay.post(&reply_path(parent), &owner, &reply).await;
            assert_eq!((code_, code(&body)), (409, "turn_in_progress"), "{status:?}, reply to {parent}: {body}");
        }
    }
    // An interrupted turn (its agent restarted) can be resumed.
    report(&mut agent, &now(&second, TaskStatus::Interrupted, Some("sess-2"))).await;
    let (status, body) = relay.post(&reply_path(&second.id), &owner, &reply).await;
    assert_eq!(status, 201, "{body}");
    expect_turn(&mut agent, &task_of(&body).id, &first.id, &second.id, "sess-2").await;
}

#[tokio::test]
async fn only_claude_turns_with_a_session_can_be_resumed() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let reply = json!({"prompt": "again"});

    let body = json!({"executor": "shell", "repo": "web", "payload": {"command": "make"}});
    let (_, created) = relay.post("/api/cockpit/tasks", &owner, &body).await;
    let shell = task_of(&created);
    recv_relay_skip_pings(&mut agent).await;
    report(&mut agent, &now(&shell, TaskStatus::Completed, None)).await;
    let (status, body) = relay.post(&reply_path(&shell.id), &owner, &reply).await;
    assert_eq!((status, code(&body)), (409, "not_resumable"), "a shell task: {body}");

    // Failed before Claude said its session id.
    let claude = start_claude(&relay, &mut agent, json!({"prompt": "plan"})).await;
    report(&mut agent, &now(&claude, TaskStatus::Failed, None)).await;
    let (status, body) = relay.post(&reply_path(&claude.id), &owner, &reply).await;
    assert_eq!((status, code(&body)), (409, "not_resumable"), "no session: {body}");

    let (status, _) = relay.post(&reply_path("no-such-task"), &owner, &reply).await;
    assert_eq!(status, 404);
    let (status, _) = relay.post(&reply_path(&claude.id), &relay.keys.other, &reply).await;
    assert_eq!(status, 404, "another user's task");

    report(&mut agent, &now(&claude, TaskStatus::Failed, Some("sess-1"))).await;
    for bad in [
        json!({"prompt": "  "}),
        json!({}),
        json!({"prompt": "x", "model": "opus"}),
        json!({"prompt": "x", "allowedTools": [" "]}),
    ] {
        let (status, body) = relay.post(&reply_path(&claude.id), &owner, &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = relay.post(&reply_path(&claude.id), &owner, &reply).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_conversation_lists_its_turns_oldest_first() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let first = start_claude(&relay, &mut agent, json!({"prompt": "one"})).await;
    let mut ids = vec![first.id.clone()];
    let mut parent = first.clone();
    for (i, prompt) in ["two", "three"].into_iter().enumerate() {
        // An agent that leaves the conversation out of its update does not move the turn.
        let ended = now(&parent, TaskStatus::Completed, Some(&format!("sess-{i}")));
        report(&mut agent, &Task { conversation_id: String::new(), parent_task_id: None, ..ended }).await;
        let (status, body) = relay.post(&reply_path(&parent.id), &owner, &json!({ "prompt": prompt })).await;
        assert_eq!(status, 201, "{body}");
        parent = task_of(&body);
        recv_relay_skip_pings(&mut agent).await;
        ids.push(parent.id.clone());
    }
    // Another conversation in the same repo is not part of it.
    start_claude(&relay, &mut agent, json!({"prompt": "elsewhere"})).await;

    let (status, body) = relay.get(&format!("/api/cockpit/conversations/{}", first.id), &owner).await;
    assert_eq!(status, 200, "{body}");
    let turns: Vec<&str> = body["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(turns, ids);
    let tasks = body["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["conversationId"] == first.id.as_str()), "{body}");
    let parents: Vec<&Value> = tasks.iter().map(|t| &t["parentTaskId"]).collect();
    assert_eq!(parents, [&Value::Null, &json!(ids[0]), &json!(ids[1])]);

    // A task recorded before conversations existed is a conversation of its own.
    let mut legacy = local_task("legacy-1", "web", TaskStatus::Completed);
    legacy.conversation_id = String::new();
    report(&mut agent, &legacy).await;
    let (status, body) = relay.get("/api/cockpit/conversations/legacy-1", &owner).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(body["tasks"][0]["id"], "legacy-1");
    assert_eq!(body["tasks"][0]["conversationId"], "legacy-1", "always set at the relay");

    // Not a conversation id (a later turn's own id), unknown, another user's, a viewer's key.
    for (path, key, want) in [
        (format!("/api/cockpit/conversations/{}", ids[1]), &owner, 404),
        ("/api/cockpit/conversations/nope".to_string(), &owner, 404),
        (format!("/api/cockpit/conversations/{}", first.id), &relay.keys.other, 404),
        (format!("/api/cockpit/conversations/{}", first.id), &relay.keys.viewer, 403),
    ] {
        let (status, body) = relay.get(&path, key).await;
        assert_eq!(status, want, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_owners_decision_reaches_the_agent_and_is_taken_once() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "req-1").await;

    let decision = json!({"behavior": "allow", "updatedInput": {"command": "touch made-by-claude.txt"}});
    let (status, body) = relay.post(&decision_path(&task.id, "req-1"), &owner, &decision).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(task_of(&body).id, task.id);
    assert_eq!(task_of(&body).status, TaskStatus::Waiting);
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { task_id, request_id, behavior, updated_input, message, .. } => {
            assert_eq!((task_id.as_str(), request_id.as_str()), (task.id.as_str(), "req-1"));
            assert_eq!(behavior, Behavior::Allow);
            assert_eq!(updated_input, Some(json!({"command": "touch made-by-claude.txt"})));
            assert_eq!(message, None);
        }
        other => panic!("expected permission-decision, got {other:?}"),
    }
    // Decided, not yet recorded by the agent: a second decision is refused.
    let deny = json!({"behavior": "deny", "message": "no"});
    let (status, body) = relay.post(&decision_path(&task.id, "req-1"), &owner, &deny).await;
    assert_eq!((status, code(&body)), (409, "not_pending"), "{body}");
    // Never asked.
    let (status, body) = relay.post(&decision_path(&task.id, "req-9"), &owner, &decision).await;
    assert_eq!((status, code(&body)), (409, "not_pending"), "{body}");
    // Recorded by the agent: still refused.
    append(&mut agent, &task.id, 2, permission_decision("req-1")).await;
    let (status, body) = relay.post(&decision_path(&task.id, "req-1"), &owner, &deny).await;
    assert_eq!((status, code(&body)), (409, "not_pending"), "{body}");

    // The next request, denied with a message.
    append(&mut agent, &task.id, 3, permission_request("req-2")).await;
    let (status, body) = relay.post(&decision_path(&task.id, "req-2"), &owner, &deny).await;
    assert_eq!(status, 200, "{body}");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { request_id, behavior, updated_input, message, .. } => {
            assert_eq!((request_id.as_str(), behavior), ("req-2", Behavior::Deny));
            assert_eq!((updated_input, message.as_deref()), (None, Some("no")));
        }
        other => panic!("expected permission-decision, got {other:?}"),
    }

    // A request of a task that ended is not pending any more.
    append(&mut agent, &task.id, 4, permission_request("req-3")).await;
    report(&mut agent, &now(&task, TaskStatus::Cancelled, Some("sess-w"))).await;
    let (status, body) = relay.post(&decision_path(&task.id, "req-3"), &owner, &decision).await;
    assert_eq!((status, code(&body)), (409, "not_pending"), "{body}");

    let (status, _) = relay.post(&decision_path("no-such-task", "req-1"), &owner, &decision).await;
    assert_eq!(status, 404);
    let other = waiting_task(&relay, &mut agent, "req-1").await;
    let (status, _) = relay.post(&decision_path(&other.id, "req-1"), &relay.keys.other, &decision).await;
    assert_eq!(status, 404, "another user's task");
    for bad in [json!({"behavior": "maybe"}), json!({}), json!({"behavior": "allow", "extra": 1})] {
        let (status, body) = relay.post(&decision_path(&other.id, "req-1"), &owner, &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn viewers_and_anonymous_can_neither_decide_nor_reply() {
    let relay = Relay::start().await;
    let mut agent = online_agent(&relay).await;
    let ended = start_claude(&relay, &mut agent, json!({"prompt": "plan"})).await;
    report(&mut agent, &now(&ended, TaskStatus::Completed, Some("sess-1"))).await;
    let waiting = waiting_task(&relay, &mut agent, "req-1").await;
    let reply = (reply_path(&ended.id), json!({"prompt": "go on"}), 201);
    let decide = (decision_path(&waiting.id, "req-1"), json!({"behavior": "allow"}), 200);
    let http = relay.http();

    for (path, body, _) in [&reply, &decide] {
        let (status, answer) = relay.post(path, &relay.keys.viewer, body).await;
        assert_eq!((status, code(&answer)), (403, "forbidden"), "viewer key: {path}");
        let r = http.post(relay.url(path)).json(body).send().await.unwrap();
        assert_eq!(r.status(), 401, "anonymous: {path}");
    }

    // Session cookies: a viewer's never; the owner's only from this origin.
    let login = |token: String| http.post(relay.url("/api/login")).json(&json!({ "token": token })).send();
    let cookie =
        |r: reqwest::Response| r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let viewer_session = cookie(login(relay.keys.viewer.clone()).await.unwrap());
    let owner_session = cookie(login(relay.keys.owner.clone()).await.unwrap());
    let same_origin = format!("http://{}", relay.addr);
    for (path, body, ok) in [&reply, &decide] {
        let cases = [
            (&viewer_session, Some(same_origin.as_str()), 403),
            (&owner_session, None, 403),
            (&owner_session, Some("https://evil.example"), 403),
            (&owner_session, Some(same_origin.as_str()), *ok),
        ];
        for (session, origin, want) in cases {
            let mut request = http.post(relay.url(path)).header("cookie", session).json(body);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, want, "{path}, origin {origin:?}");
        }
    }
}

/// Reconnects `mac` (closing `agent` first) and returns the new socket.
async fn reconnect(relay: &Relay, mut agent: Ws) -> Ws {
    agent.close(None).await.unwrap();
    relay.agent("mac").await.0
}

/// The next message to the agent is the decision of `request_id` for `task_id`.
async fn expect_decision(agent: &mut Ws, task_id: &str, request_id: &str) {
    match recv_relay_skip_pings(agent).await {
        RelayMessage::PermissionDecision { task_id: t, request_id: r, behavior, .. } => {
            assert_eq!((t.as_str(), r.as_str(), behavior), (task_id, request_id, Behavior::Allow));
        }
        other => panic!("expected the decision of {request_id}, got {other:?}"),
    }
}

async fn wait_offline(relay: &Relay) {
    eventually("mac offline", || async {
        let (_, body) = relay.get("/api/cockpit/agents", &relay.keys.owner).await;
        (body["agents"][0]["status"] == "offline").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_decision_made_while_the_agent_is_offline_is_delivered_when_it_connects() {
    let relay = Relay::start().await;
    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "req-1").await;
    agent.close(None).await.unwrap();
    wait_offline(&relay).await;

    let (status, body) =
        relay.post(&decision_path(&task.id, "req-1"), &relay.keys.owner, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{body}");
    let (mut agent, last_seqs) = relay.agent("mac").await;
    assert_eq!(last_seqs.get(&task.id), Some(&1), "a waiting task is live: {last_seqs:?}");
    expect_decision(&mut agent, &task.id, "req-1").await;

    // Sent again on every connection until the agent's transcript records it...
    let mut agent = reconnect(&relay, agent).await;
    expect_decision(&mut agent, &task.id, "req-1").await;
    append(&mut agent, &task.id, 2, permission_decision("req-1")).await;
    // ...and never after.
    let mut agent = reconnect(&relay, agent).await;
    barrier(&mut agent).await;
}

#[tokio::test]
async fn a_pending_decision_survives_a_relay_restart() {
    let mut relay = Relay::start().await;
    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "req-1").await;
    agent.close(None).await.unwrap();
    wait_offline(&relay).await;
    let decision = json!({"behavior": "allow", "updatedInput": {"answers": {"Which?": "B"}}, "message": "go"});
    let (status, body) = relay.post(&decision_path(&task.id, "req-1"), &relay.keys.owner, &decision).await;
    assert_eq!(status, 200, "{body}");

    let keys = relay.keys.clone();
    let _tempdir = relay.take_tempdir();
    relay.stop().await;
    let relay = Relay::launch(test_settings(&relay.dir), keys).await;
    let (mut agent, _) = relay.agent("mac").await;
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { task_id, request_id, behavior, updated_input, message, .. } => {
            assert_eq!((task_id.as_str(), request_id.as_str(), behavior), (task.id.as_str(), "req-1", Behavior::Allow));
            assert_eq!(updated_input, Some(json!({"answers": {"Which?": "B"}})));
            assert_eq!(message.as_deref(), Some("go"));
        }
        other => panic!("expected the decision after the restart, got {other:?}"),
    }
    // Still pending, so a second decision is refused after the restart too.
    let (status, body) = relay.post(&decision_path(&task.id, "req-1"), &relay.keys.owner, &decision).await;
    assert_eq!((status, code(&body)), (409, "not_pending"), "{body}");
}

#[tokio::test]
async fn a_decision_is_dropped_when_the_agent_says_it_is_not_pending_or_the_task_ends() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let mut agent = online_agent(&relay).await;
    let first = waiting_task(&relay, &mut agent, "req-1").await;
    let second = waiting_task(&relay, &mut agent, "req-2").await;
    for task in [&first, &second] {
        let request = if task.id == first.id { "req-1" } else { "req-2" };
        let (status, body) = relay.post(&decision_path(&task.id, request), &owner, &json!({"behavior": "allow"})).await;
        assert_eq!(status, 200, "{body}");
        expect_decision(&mut agent, &task.id, request).await;
    }
    // The agent no longer has the first request pending; the second task ends.
    let error = AgentMessage::Error {
        message: "no pending request req-1".into(),
        task_id: Some(first.id.clone()),
        request_id: Some("req-1".into()),
    };
    send(&mut agent, &error).await;
    report(&mut agent, &now(&second, TaskStatus::Interrupted, Some("sess-w"))).await;
    let mut agent = reconnect(&relay, agent).await;
    barrier(&mut agent).await;
}

#[tokio::test]
async fn waiting_is_a_live_status_in_lists_huds_and_reconnects() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    relay.set_hud("web", true, false).await;
    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "req-1").await;

    let (status, body) = relay.get("/api/cockpit/tasks?status=waiting", &owner).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["tasks"][0]["id"], task.id.as_str());
    let (_, body) = relay.get("/api/cockpit/tasks?status=running", &owner).await;
    assert_eq!(body["total"], 0);

    // An anonymous viewer of the public HUD sees that a decision is pending.
    let r = relay.http().get(relay.url("/api/hud/session?repo=alice/web")).send().await.unwrap();
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["status"], "waiting", "{session}");
    let mut anonymous = relay.viewer(None).await;
    let snapshot = subscribe(&mut anonymous, "hud:alice/web").await;
    assert_eq!(snapshot["task"]["status"], "waiting");
    assert_eq!(snapshot["events"][0]["event"]["kind"], "permission_request");
    append(&mut agent, &task.id, 2, permission_decision("req-1")).await;
    append(&mut agent, &task.id, 3, permission_request("req-2")).await;
    for (seq, kind) in [(2, "permission_decision"), (3, "permission_request")] {
        let event = next_event(&mut anonymous, "hud:alice/web").await;
        assert_eq!((event["seq"].as_u64(), event["event"]["kind"].as_str()), (Some(seq), Some(kind)), "{event}");
    }

    // A waiting task is not queued: a reconnecting agent gets its transcript position, not the task again.
    let (mut again, last_seqs) = {
        agent.close(None).await.unwrap();
        relay.agent("mac").await
    };
    assert_eq!(last_seqs.get(&task.id), Some(&3));
    barrier(&mut again).await;
}
