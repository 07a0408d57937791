//! One conformance suite for every `Store`: the same cases against SQLite and against a real
//! PostgreSQL server (see `postgres.rs`), each case on a fresh, empty store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use flightdeck_protocol::api::{HudSettings, KeyScope};
use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy};
use flightdeck_protocol::{
    AgentInfo, AgentState, Alert, AlertKind, Executor, RepoState, Severity, Task, TaskEvent, TaskPayload, TaskSource,
    TaskStatus,
};
use flightdeck_relay::store::{PendingDecision, PostgresStore, RunState, SqliteStore, Store, StoreError, TaskFilter};

use crate::postgres::PgCluster;
use crate::support::repo;

type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |store| Box::pin($name(store))),)*]
    };
}

const CASES: &[(&str, Case)] = cases![
    users_keys_and_sessions,
    agents_and_their_connections,
    nodes_and_where_agents_are,
    repos_filtered_and_paged,
    tasks_listed_filtered_and_paged,
    transcripts_grow_only_by_the_next_seq,
    conversations_and_pending_decisions,
    alerts_and_hud_settings,
    container_runs_and_their_keys,
    secrets_are_stored_sealed,
    changes_are_numbered_per_user,
    push_targets_outbox_leases_and_tokens,
];

#[tokio::test]
async fn the_sqlite_store_passes_the_conformance_cases() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open_in(&path)).await.unwrap().unwrap();
        eprintln!("sqlite: {name}");
        case(Arc::new(store)).await;
    }
}

#[tokio::test]
async fn the_postgres_store_passes_the_conformance_cases() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    for (name, case) in CASES {
        let store = PostgresStore::connect(&cluster.database().await).await.unwrap();
        eprintln!("postgres: {name}");
        case(Arc::new(store)).await;
    }
}

#[tokio::test]
async fn postgres_nodes_starting_together_apply_the_migrations_once() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let url = cluster.database().await;
    let nodes = futures_util::future::join_all((0..4).map(|_| PostgresStore::connect(&url))).await;
    let nodes: Vec<PostgresStore> = nodes.into_iter().map(|n| n.unwrap()).collect();
    // They share one database: a user added through one is seen by the others, and so is the
    // instance id made by the one migration.
    nodes[0].add_user("alice").await.unwrap();
    let instance = nodes[0].instance_id().await.unwrap();
    for node in &nodes[1..] {
        assert!(node.user_exists("alice").await.unwrap());
        assert_eq!(node.instance_id().await.unwrap(), instance);
    }
    // And a node that starts later finds nothing left to apply.
    let late = PostgresStore::connect(&url).await.unwrap();
    assert!(late.user_exists("alice").await.unwrap());
}

// ----- the cases ---------------------------------------------------------------------------

fn at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn task(id: &str, repo: &str, created_ms: i64) -> Task {
    let payload = TaskPayload { prompt: Some(format!("prompt of {id}")), ..Default::default() };
    Task::queued(id, format!("title {id}"), repo, Executor::Claude, payload, TaskSource::Remote, at(created_ms))
}

fn agent(id: &str) -> AgentInfo {
    AgentInfo {
        agent_id: id.into(),
        status: AgentState::Online,
        capabilities: vec!["git".into()],
        metadata: Default::default(),
        version: "0.1.0".into(),
        connected_at: at(1_000),
        last_ping_at: at(2_000),
        repos: vec!["web".into()],
    }
}

fn chunk(text: &str) -> TaskEvent {
    TaskEvent::Chunk { text: text.into(), stream: ChunkStream::Stdout }
}

fn request(id: &str) -> TaskEvent {
    TaskEvent::PermissionRequest {
        request_id: id.into(),
        tool_name: "Bash".into(),
        input: serde_json::json!({"command": "ls"}),
        description: None,
        suggestions: None,
    }
}

fn decided(id: &str) -> TaskEvent {
    TaskEvent::PermissionDecision {
        request_id: id.into(),
        behavior: Behavior::Allow,
        message: None,
        updated_input: None,
        decided_by: DecidedBy::Local,
    }
}

async fn users_keys_and_sessions(store: Arc<dyn Store>) {
    store.add_user("alice").await.unwrap();
    assert!(matches!(store.add_user("alice").await, Err(StoreError::UserExists(_))));
    assert!(store.user_exists("alice").await.unwrap());
    assert!(!store.user_exists("bob").await.unwrap());
    assert!(matches!(store.create_key("bob", KeyScope::Owner).await, Err(StoreError::NoUser(_))));

    let owner = store.create_key("alice", KeyScope::Owner).await.unwrap();
    let viewer = store.create_key("alice", KeyScope::Viewer).await.unwrap();
    assert!(owner.secret.starts_with("fdk_") && owner.secret.len() == 68);
    let who = store.principal_by_key(&owner.secret).await.unwrap().unwrap();
    assert_eq!(
        (who.user.as_str(), who.scope, who.key_id.as_str(), who.task_id),
        ("alice", KeyScope::Owner, owner.id.as_str(), None)
    );
    assert!(store.principal_by_key("fdk_nope").await.unwrap().is_none());

    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let listed = keys.iter().find(|k| k.id == viewer.id).unwrap();
    assert_eq!(
        (listed.user.as_str(), listed.scope, listed.prefix.as_str()),
        ("alice", KeyScope::Viewer, &viewer.secret[..12])
    );
    assert!(listed.revoked_at.is_none());

    let session = store.create_session(&owner.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(store.principal_by_session(&session).await.unwrap().unwrap().key_id, owner.id);
    let expired = store.create_session(&owner.id, Duration::ZERO).await.unwrap();
    assert!(store.principal_by_session(&expired).await.unwrap().is_none(), "expired");
    let other = store.create_session(&viewer.id, Duration::from_secs(60)).await.unwrap();
    store.delete_session(&other).await.unwrap();
    assert!(store.principal_by_session(&other).await.unwrap().is_none(), "logged out");

    let generation = store.key_generation().await.unwrap();
    assert!(store.revoked_key_ids().await.unwrap().is_empty());
    assert!(store.revoke_key(&owner.id).await.unwrap());
    assert!(!store.revoke_key(&owner.id).await.unwrap(), "already revoked");
    assert!(!store.revoke_key("no-such-key").await.unwrap());
    assert_eq!(store.key_generation().await.unwrap(), generation + 1);
    assert_eq!(store.revoked_key_ids().await.unwrap(), vec![owner.id.clone()]);
    assert!(store.principal_by_key(&owner.secret).await.unwrap().is_none());
    assert!(store.principal_by_session(&session).await.unwrap().is_none(), "its sessions end with it");
    assert!(store.principal_by_key(&viewer.secret).await.unwrap().is_some());
    assert!(store.list_keys().await.unwrap().iter().find(|k| k.id == owner.id).unwrap().revoked_at.is_some());
}

async fn agents_and_their_connections(store: Arc<dyn Store>) {
    assert!(store.agent("alice", "mac").await.unwrap().is_none());
    assert!(!store.agent_online("alice", "mac").await.unwrap());
    store.upsert_agent("alice", &agent("mac"), true).await.unwrap();
    store.upsert_agent("alice", &agent("linux"), false).await.unwrap();
    store.upsert_agent("bob", &agent("mac"), true).await.unwrap();
    assert_eq!(store.agent("alice", "mac").await.unwrap().unwrap(), agent("mac"));
    assert!(store.agent_online("alice", "mac").await.unwrap());
    let listed = store.agents("alice").await.unwrap();
    let states: Vec<(&str, AgentState)> = listed.iter().map(|a| (a.agent_id.as_str(), a.status)).collect();
    assert_eq!(states, [("linux", AgentState::Offline), ("mac", AgentState::Online)], "by id; offline as stored");

    // Offline only from the connection it is on.
    store.set_agent_conn("alice", "mac", "node-1/1").await.unwrap();
    assert!(store.mark_agent_offline("alice", "mac", "node-1/0").await.unwrap().is_none(), "an older connection");
    assert!(store.agent_online("alice", "mac").await.unwrap());
    let offline = store.mark_agent_offline("alice", "mac", "node-1/1").await.unwrap().unwrap();
    assert_eq!(offline.status, AgentState::Offline);
    assert!(!store.agent_online("alice", "mac").await.unwrap());

    store.upsert_agent("alice", &agent("mac"), true).await.unwrap();
    store.mark_all_agents_offline().await.unwrap();
    assert!(!store.agent_online("alice", "mac").await.unwrap());
    assert!(!store.agent_online("bob", "mac").await.unwrap());
}

async fn nodes_and_where_agents_are(store: Arc<dyn Store>) {
    assert!(store.live_nodes(0).await.unwrap().is_empty());
    store.node_alive_until("n1", 1_000).await.unwrap();
    store.node_alive_until("n2", 5_000).await.unwrap();
    // Said again: the later deadline stays, whichever order the writes come in.
    store.node_alive_until("n1", 9_000).await.unwrap();
    store.node_alive_until("n2", 4_000).await.unwrap();
    assert_eq!(store.live_nodes(5_000).await.unwrap(), ["n1", "n2"]);
    assert_eq!(store.live_nodes(6_000).await.unwrap(), ["n1"]);
    assert!(store.live_nodes(10_000).await.unwrap().is_empty());

    store.upsert_agent("alice", &agent("mac"), true).await.unwrap();
    store.upsert_agent("alice", &agent("linux"), true).await.unwrap();
    store.upsert_agent("bob", &agent("mac"), false).await.unwrap();
    store.set_agent_conn("alice", "mac", "n1:7").await.unwrap();
    store.set_agent_conn("bob", "mac", "n2:3").await.unwrap();
    // Online with a connection only: linux never had one, bob's mac is offline.
    assert_eq!(
        store.online_agent_conns().await.unwrap(),
        [("alice".to_string(), "mac".to_string(), "n1:7".to_string())]
    );
}

async fn repos_filtered_and_paged(store: Arc<dyn Store>) {
    store.upsert_agent("alice", &agent("mac"), true).await.unwrap();
    store.upsert_agent("alice", &agent("linux"), false).await.unwrap();
    for (name, state, agent_id) in
        [("web", RepoState::Clean, "mac"), ("api", RepoState::Dirty, "mac"), ("ops", RepoState::Clean, "linux")]
    {
        store.upsert_repo("alice", agent_id, &repo(name, state)).await.unwrap();
    }
    store.upsert_repo("bob", "mac", &repo("web", RepoState::Clean)).await.unwrap();
    let names = |repos: Vec<flightdeck_protocol::RepoStatus>| repos.into_iter().map(|r| r.name).collect::<Vec<_>>();

    let (stored, agent_id) = store.repo("alice", "api").await.unwrap().unwrap();
    assert_eq!((stored, agent_id.as_str()), (repo("api", RepoState::Dirty), "mac"));
    assert_eq!(names(store.repos("alice", None, None).await.unwrap()), ["api", "ops", "web"]);
    assert_eq!(names(store.repos("alice", Some("clean"), None).await.unwrap()), ["ops", "web"]);
    assert_eq!(names(store.repos("alice", Some("clean"), Some("mac")).await.unwrap()), ["web"]);
    let (page, total) = store.repos_page("alice", None, None, 2, 1).await.unwrap();
    assert_eq!((names(page), total), (vec!["ops".to_string(), "web".to_string()], 3));
    let (page, total) = store.repos_page("alice", None, Some("mac"), 1, 0).await.unwrap();
    assert_eq!((names(page), total), (vec!["api".to_string()], 2));

    assert_eq!(store.repo_agent_online("alice", "web").await.unwrap().as_deref(), Some("mac"));
    assert_eq!(store.repo_agent_online("alice", "ops").await.unwrap(), None, "its agent is offline");
    // A repo moves to the agent that reports it last.
    store.upsert_repo("alice", "linux", &repo("web", RepoState::Dirty)).await.unwrap();
    assert_eq!(store.repo("alice", "web").await.unwrap().unwrap().1, "linux");
    store.delete_repo("alice", "web").await.unwrap();
    assert!(store.repo("alice", "web").await.unwrap().is_none());
    assert!(store.repo("bob", "web").await.unwrap().is_some());
}

async fn tasks_listed_filtered_and_paged(store: Arc<dyn Store>) {
    let mut running = Task { agent_id: Some("mac".into()), ..task("t-2", "web", 2_000) };
    running.status = TaskStatus::Running;
    for t in [task("t-1", "web", 1_000), running.clone(), task("t-3", "api", 3_000)] {
        let stored = store.upsert_task("alice", &t).await.unwrap();
        assert_eq!(stored.last_seq, 0);
        assert_eq!(stored.conversation_id, t.id, "a first turn is its own conversation");
    }
    store.upsert_task("bob", &task("b-1", "web", 4_000)).await.unwrap();
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();

    assert_eq!(store.task("alice", "t-2").await.unwrap().unwrap().status, TaskStatus::Running);
    assert!(store.task("bob", "t-2").await.unwrap().is_none(), "another user's");
    assert_eq!(store.task_user("t-2").await.unwrap().as_deref(), Some("alice"));
    assert_eq!(store.task_user("nope").await.unwrap(), None);

    let all = TaskFilter::default();
    let (tasks, total) = store.list_tasks("alice", &all, 10, 0).await.unwrap();
    assert_eq!((ids(tasks), total), (vec!["t-3".into(), "t-2".into(), "t-1".into()], 3), "newest first");
    let (tasks, total) = store.list_tasks("alice", &all, 1, 1).await.unwrap();
    assert_eq!((ids(tasks), total), (vec!["t-2".to_string()], 3));
    let web = TaskFilter { repo: Some("web".into()), ..Default::default() };
    assert_eq!(store.list_tasks("alice", &web, 10, 0).await.unwrap().1, 2);
    let queued_web =
        TaskFilter { status: Some("queued".into()), repo: Some("web".into()), executor: Some("claude".into()) };
    assert_eq!(ids(store.list_tasks("alice", &queued_web, 10, 0).await.unwrap().0), ["t-1"]);

    assert_eq!(store.hud_task("alice", "web").await.unwrap().unwrap().id, "t-2");
    assert_eq!(store.hud_task_id("alice", "web").await.unwrap().as_deref(), Some("t-2"));
    assert_eq!(store.hud_task_id("alice", "docs").await.unwrap(), None);

    let for_mac = store.queued_tasks_for("alice", "mac", &["web".into(), "api".into()]).await.unwrap();
    assert_eq!(ids(for_mac), ["t-1", "t-3"], "queued, per repo in the order asked");
    let mine = Task { agent_id: Some("linux".into()), ..task("t-4", "web", 5_000) };
    store.upsert_task("alice", &mine).await.unwrap();
    assert_eq!(ids(store.queued_tasks_for("alice", "mac", &["web".into()]).await.unwrap()), ["t-1"], "t-4 is linux's");

    // A task seen again replaces its state.
    running.status = TaskStatus::Completed;
    running.finished_at = Some(at(9_000));
    assert_eq!(store.upsert_task("alice", &running).await.unwrap().status, TaskStatus::Completed);
    assert_eq!(store.list_tasks("alice", &all, 10, 0).await.unwrap().1, 4);
}

async fn transcripts_grow_only_by_the_next_seq(store: Arc<dyn Store>) {
    let t = Task { agent_id: Some("mac".into()), ..task("t-1", "web", 1_000) };
    store.upsert_task("alice", &t).await.unwrap();
    store.upsert_task("alice", &task("t-2", "web", 2_000)).await.unwrap();
    let n = |id: &str, seq: u64, text: &str| (id.to_string(), seq, chunk(text));

    let stored = store
        .append_events("alice", vec![n("t-1", 1, "a"), n("t-1", 2, "b"), n("t-1", 2, "b again"), n("t-1", 4, "gap")])
        .await
        .unwrap();
    assert_eq!(stored, [true, true, false, false]);
    let stored = store
        .append_events("alice", vec![n("t-1", 0, "zero"), n("t-2", 1, "x"), n("t-9", 1, "unknown")])
        .await
        .unwrap();
    assert_eq!(stored, [false, true, false]);
    assert_eq!(store.task_repo_and_seq("alice", "t-1").await.unwrap(), Some(("web".into(), 2)));
    assert_eq!(store.task_repo_and_seq("bob", "t-1").await.unwrap(), None);
    assert_eq!(store.task("alice", "t-1").await.unwrap().unwrap().last_seq, 2);
    let stored = store.append_events("alice", vec![n("t-1", 3, "c")]).await.unwrap();
    assert_eq!(stored, [true]);

    let events = store.events("t-1", 0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(events[1].event, chunk("b"), "the first copy of a seq stays");
    let page = store.events("t-1", 1, 1).await.unwrap();
    assert_eq!((page.len(), page[0].seq), (1, 2));
    assert!(store.events("t-1", 3, 10).await.unwrap().is_empty());

    let raw = store.stored_events("t-1").await.unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[2].event.get(), serde_json::to_string(&chunk("c")).unwrap(), "served as stored");

    // The agent's resume points: unfinished tasks, and ended ones touched since `since_ms`.
    let seqs = store.last_seqs("alice", "mac", i64::MAX).await.unwrap();
    assert_eq!(seqs.into_iter().collect::<Vec<_>>(), [("t-1".to_string(), 3)]);
    let mut ended = store.task("alice", "t-1").await.unwrap().unwrap();
    ended.status = TaskStatus::Completed;
    store.upsert_task("alice", &ended).await.unwrap();
    assert!(store.last_seqs("alice", "mac", i64::MAX).await.unwrap().is_empty());
    assert_eq!(store.last_seqs("alice", "mac", 0).await.unwrap().get("t-1"), Some(&3));
    assert_eq!(store.task("alice", "t-1").await.unwrap().unwrap().last_seq, 3, "an upsert keeps the store's count");
}

async fn conversations_and_pending_decisions(store: Arc<dyn Store>) {
    let first = Task { agent_id: Some("mac".into()), ..task("t-1", "web", 1_000) };
    let reply = Task {
        agent_id: Some("mac".into()),
        conversation_id: "t-1".into(),
        parent_task_id: Some("t-1".into()),
        ..task("t-2", "web", 2_000)
    };
    store.upsert_task("alice", &reply).await.unwrap();
    store.upsert_task("alice", &first).await.unwrap();
    store.upsert_task("alice", &task("t-3", "web", 3_000)).await.unwrap();
    let turns: Vec<String> = store.conversation("alice", "t-1").await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(turns, ["t-1", "t-2"], "oldest first");
    assert!(store.conversation("bob", "t-1").await.unwrap().is_empty());
    // A turn is added only when every turn of its conversation has ended, one at a time.
    let turn =
        |id: &str| Task { conversation_id: "t-1".into(), parent_task_id: Some("t-1".into()), ..task(id, "web", 4_000) };
    assert!(store.add_turn("alice", &turn("t-4")).await.unwrap().is_none(), "t-1 and t-2 are queued");
    for id in ["t-1", "t-2"] {
        let mut ended = store.task("alice", id).await.unwrap().unwrap();
        ended.status = TaskStatus::Completed;
        store.upsert_task("alice", &ended).await.unwrap();
    }
    let tries = (4..14).map(|i| {
        let (store, turn) = (store.clone(), turn(&format!("t-{i}")));
        async move { store.add_turn("alice", &turn).await.unwrap() }
    });
    let added: Vec<Task> = futures_util::future::join_all(tries).await.into_iter().flatten().collect();
    assert_eq!(added.len(), 1, "one of ten replies at once");
    assert_eq!(store.conversation("alice", "t-1").await.unwrap().len(), 3);
    for id in ["t-1", "t-2"] {
        let mut queued = store.task("alice", id).await.unwrap().unwrap();
        queued.status = TaskStatus::Queued;
        store.upsert_task("alice", &queued).await.unwrap();
    }
    store.upsert_task("alice", &Task { status: TaskStatus::Completed, ..added[0].clone() }).await.unwrap();

    assert!(!store.request_open("t-2", "r-1").await.unwrap(), "never asked");
    let stored = store
        .append_events("alice", vec![("t-2".into(), 1, request("r-1")), ("t-2".into(), 2, request("r-2"))])
        .await
        .unwrap();
    assert_eq!(stored, [true, true]);
    assert!(store.request_open("t-2", "r-1").await.unwrap());

    let decision = |request_id: &str, created_ms: i64| PendingDecision {
        task_id: "t-2".into(),
        request_id: request_id.into(),
        behavior: Behavior::Deny,
        updated_input: Some(serde_json::json!({"answers": [1, "two"]})),
        message: Some("no".into()),
        decided_by: None,
        created_at: at(created_ms),
    };
    assert!(store.insert_pending_decision("alice", &decision("r-2", 20)).await.unwrap());
    assert!(store.insert_pending_decision("alice", &decision("r-1", 10)).await.unwrap());
    assert!(!store.insert_pending_decision("alice", &decision("r-1", 30)).await.unwrap(), "one per request");
    assert!(store.decision_pending("t-2", "r-1").await.unwrap());
    assert_eq!(store.pending_decisions_for("alice", "mac").await.unwrap(), [decision("r-1", 10), decision("r-2", 20)]);
    assert!(store.pending_decisions_for("alice", "linux").await.unwrap().is_empty());

    // The agent's decision event ends the pending one; so does the owner's delete.
    assert_eq!(store.append_events("alice", vec![("t-2".into(), 3, decided("r-1"))]).await.unwrap(), [true]);
    assert!(!store.request_open("t-2", "r-1").await.unwrap(), "decided");
    assert!(store.request_open("t-2", "r-2").await.unwrap());
    assert!(!store.decision_pending("t-2", "r-1").await.unwrap());
    store.delete_pending_decision("alice", "t-2", "r-2").await.unwrap();
    assert!(!store.decision_pending("t-2", "r-2").await.unwrap());

    // A task that ends has nothing pending; one that waits still has.
    assert!(store.insert_pending_decision("alice", &decision("r-2", 40)).await.unwrap());
    let mut waiting = store.task("alice", "t-2").await.unwrap().unwrap();
    waiting.status = TaskStatus::Waiting;
    store.upsert_task("alice", &waiting).await.unwrap();
    assert!(store.decision_pending("t-2", "r-2").await.unwrap());
    waiting.status = TaskStatus::Interrupted;
    store.upsert_task("alice", &waiting).await.unwrap();
    assert!(!store.decision_pending("t-2", "r-2").await.unwrap());
}

async fn alerts_and_hud_settings(store: Arc<dyn Store>) {
    let alert = |id: &str, severity: Severity, acknowledged: bool, created_ms: i64| Alert {
        id: id.into(),
        severity,
        kind: AlertKind::TaskFailed,
        repo: Some("web".into()),
        task_id: None,
        agent_id: None,
        message: format!("alert {id}"),
        created_at: at(created_ms),
        acknowledged,
        acknowledged_at: None,
    };
    store.upsert_alert("alice", &alert("a-1", Severity::Warning, false, 1_000)).await.unwrap();
    store.upsert_alert("alice", &alert("a-2", Severity::Critical, false, 2_000)).await.unwrap();
    store.upsert_alert("alice", &alert("a-3", Severity::Warning, true, 3_000)).await.unwrap();
    store.upsert_alert("bob", &alert("a-1", Severity::Info, false, 1_000)).await.unwrap();
    assert_eq!(store.alert("alice", "a-2").await.unwrap(), Some(alert("a-2", Severity::Critical, false, 2_000)));
    assert_eq!(store.alert("alice", "a-9").await.unwrap(), None);
    let ids = |(alerts, total): (Vec<Alert>, u64)| (alerts.into_iter().map(|a| a.id).collect::<Vec<_>>(), total);
    assert_eq!(
        ids(store.list_alerts("alice", None, None, 10, 0).await.unwrap()),
        (vec!["a-3".into(), "a-2".into(), "a-1".into()], 3)
    );
    assert_eq!(ids(store.list_alerts("alice", Some("warning"), None, 10, 0).await.unwrap()).1, 2);
    assert_eq!(
        ids(store.list_alerts("alice", Some("warning"), Some(false), 10, 0).await.unwrap()),
        (vec!["a-1".into()], 1)
    );
    assert_eq!(ids(store.list_alerts("alice", None, Some(false), 1, 1).await.unwrap()), (vec!["a-1".into()], 2));
    // Acknowledging is an upsert of the same id.
    store.upsert_alert("alice", &alert("a-1", Severity::Warning, true, 1_000)).await.unwrap();
    assert_eq!(ids(store.list_alerts("alice", None, Some(false), 10, 0).await.unwrap()), (vec!["a-2".into()], 1));

    let private = HudSettings { public: false, embed_allowed: false };
    assert_eq!(store.hud_settings("alice", "web").await.unwrap(), private, "never configured");
    let public = HudSettings { public: true, embed_allowed: true };
    store.set_hud_settings("alice", "web", public).await.unwrap();
    assert_eq!(store.hud_settings("alice", "web").await.unwrap(), public);
    assert_eq!(store.hud_settings("bob", "web").await.unwrap(), private);
    store.set_hud_settings("alice", "web", HudSettings { public: true, embed_allowed: false }).await.unwrap();
    assert!(!store.hud_settings("alice", "web").await.unwrap().embed_allowed);
}

async fn container_runs_and_their_keys(store: Arc<dyn Store>) {
    let instance = store.instance_id().await.unwrap();
    assert_eq!(instance.len(), 12, "{instance}");
    assert!(instance.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(store.instance_id().await.unwrap(), instance, "made once");

    store.add_user("alice").await.unwrap();
    for (id, created_ms) in [("t-1", 1_000), ("t-2", 2_000), ("t-3", 3_000)] {
        store.upsert_task("alice", &task(id, "web", created_ms)).await.unwrap();
        let checkout = (id == "t-3").then_some("flightdeck/t-0");
        store.add_run("alice", id, &format!("https://example.test/{id}.git"), checkout).await.unwrap();
    }
    assert_eq!(store.queued_runs().await.unwrap(), 3);
    let run = store.run("t-2").await.unwrap().unwrap();
    assert_eq!(
        (run.user.as_str(), run.state, run.clone_url.as_str()),
        ("alice", RunState::Queued, "https://example.test/t-2.git")
    );
    assert!(store.run("t-9").await.unwrap().is_none());

    // The run of a task cancelled meanwhile is ended on the way to the next.
    let mut cancelled = store.task("alice", "t-1").await.unwrap().unwrap();
    cancelled.status = TaskStatus::Cancelled;
    store.upsert_task("alice", &cancelled).await.unwrap();
    let claimed = store.claim_next_run().await.unwrap().unwrap();
    assert_eq!((claimed.task_id.as_str(), claimed.state), ("t-2", RunState::Starting));
    assert_eq!(store.run("t-1").await.unwrap().unwrap().state, RunState::Ended);
    assert_eq!(store.queued_runs().await.unwrap(), 1);

    let key = store.create_task_key("alice", "t-2").await.unwrap();
    let who = store.principal_by_key(&key.secret).await.unwrap().unwrap();
    assert_eq!((who.scope, who.task_id.as_deref()), (KeyScope::Agent, Some("t-2")));
    assert!(matches!(store.create_task_key("bob", "t-3").await, Err(StoreError::NoUser(_))));
    store.set_run_seq_offset("t-2", 2).await.unwrap();
    store.set_run_container("t-2", "c-1").await.unwrap();
    let run = store.run("t-2").await.unwrap().unwrap();
    assert_eq!(
        (run.state, run.container_id.as_deref(), run.key_id.as_deref(), run.seq_offset),
        (RunState::Running, Some("c-1"), Some(key.id.as_str()), 2)
    );
    let claimed = store.claim_next_run().await.unwrap().unwrap();
    assert_eq!(claimed.task_id, "t-3");
    assert!(store.claim_next_run().await.unwrap().is_none());
    let unfinished: Vec<String> = store.unfinished_runs().await.unwrap().into_iter().map(|r| r.task_id).collect();
    assert_eq!(unfinished, ["t-2", "t-3"]);
    store.set_run_state("t-2", RunState::Ended).await.unwrap();
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 1);

    // What a run leaves its follow-up (issue 22): the ref it cloned, the branch it pushed, the
    // container's Claude state.
    let (t2, t3) = (store.run("t-2").await.unwrap().unwrap(), store.run("t-3").await.unwrap().unwrap());
    assert_eq!((t2.checkout, t3.checkout.as_deref()), (None, Some("flightdeck/t-0")));
    assert_eq!((t2.pushed_branch.clone(), t2.home_kept), (None, false));
    assert_eq!(store.run_home("t-2").await.unwrap(), None);
    store.set_run_outcome("t-2", Some("flightdeck/t-2"), Some(b"\x00sealed home\xff")).await.unwrap();
    let t2 = store.run("t-2").await.unwrap().unwrap();
    assert_eq!((t2.pushed_branch.as_deref(), t2.home_kept), (Some("flightdeck/t-2"), true));
    assert_eq!(store.run_home("t-2").await.unwrap().as_deref(), Some(&b"\x00sealed home\xff"[..]));
    store.set_run_outcome("t-3", None, None).await.unwrap();
    assert!(!store.run("t-3").await.unwrap().unwrap().home_kept);
}

async fn secrets_are_stored_sealed(store: Arc<dyn Store>) {
    assert!(store.put_secret("alice", "GIT_TOKEN", b"nonce-1", b"\x00sealed\xff", 2).await.unwrap());
    assert!(store.put_secret("alice", "ANTHROPIC_API_KEY", b"nonce-2", b"other", 2).await.unwrap());
    assert!(store.put_secret("bob", "GIT_TOKEN", b"n", b"v", 2).await.unwrap());
    assert!(!store.put_secret("alice", "THIRD", b"n", b"v", 2).await.unwrap(), "over the bound");
    // At the bound, one at a time: of 10 new names stored at once, one passes.
    let tries = (0..10).map(|i| {
        let store = store.clone();
        async move { store.put_secret("carol", &format!("S{i}"), b"n", b"v", 1).await.unwrap() }
    });
    let passed = futures_util::future::join_all(tries).await;
    assert_eq!(passed.iter().filter(|p| **p).count(), 1);
    let names: Vec<String> = store.secret_names("alice").await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ANTHROPIC_API_KEY", "GIT_TOKEN"]);
    assert!(store.put_secret("alice", "GIT_TOKEN", b"nonce-3", b"replaced", 2).await.unwrap(), "a replacement");
    let sealed = store.sealed_secrets("alice").await.unwrap();
    assert_eq!(sealed[1], ("GIT_TOKEN".to_string(), b"nonce-3".to_vec(), b"replaced".to_vec()));
    assert!(store.delete_secret("alice", "GIT_TOKEN").await.unwrap());
    assert!(!store.delete_secret("alice", "GIT_TOKEN").await.unwrap());
    assert_eq!(store.sealed_secrets("alice").await.unwrap().len(), 1);
    assert_eq!(store.sealed_secrets("bob").await.unwrap().len(), 1);
    store.flush().await.unwrap();
}

/// Each user's changes of latest state are numbered 1, 2, 3, ..., also when many are counted at
/// once (each number once).
async fn changes_are_numbered_per_user(store: Arc<dyn Store>) {
    assert_eq!(store.changes("alice").await.unwrap(), 0);
    assert_eq!(store.next_change("alice").await.unwrap(), 1);
    assert_eq!(store.next_change("alice").await.unwrap(), 2);
    assert_eq!(store.next_change("bob").await.unwrap(), 1);
    assert_eq!(store.changes("alice").await.unwrap(), 2);
    let counted = futures_util::future::join_all((0..20).map(|_| store.next_change("alice"))).await;
    let mut numbers: Vec<u64> = counted.into_iter().map(Result::unwrap).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (3..=22).collect::<Vec<_>>());
    assert_eq!(store.changes("alice").await.unwrap(), 22);
    assert_eq!(store.changes("bob").await.unwrap(), 1);
}

async fn push_targets_outbox_leases_and_tokens(store: Arc<dyn Store>) {
    use flightdeck_protocol::push::PushKind;
    use flightdeck_relay::store::push::{Enqueued, NewActionToken, NewPushMessage, PushEvent, PushTarget, TargetKind};

    // The VAPID key: the first stored wins, whoever asks later.
    let first = store.push_vapid_key(&[1; 32], 1).await.unwrap();
    assert_eq!(first, vec![1; 32]);
    assert_eq!(store.push_vapid_key(&[2; 32], 2).await.unwrap(), vec![1; 32]);

    let target = |id: &str, user: &str, kind: TargetKind| PushTarget {
        id: id.into(),
        user: user.into(),
        kind,
        url: format!("https://push.example/{id}"),
        p256dh: Some("p".into()),
        auth: Some("a".into()),
        secret: None,
        device: Some("phone".into()),
        kinds: vec![PushKind::NeedsInput, PushKind::Failed],
        origin: "https://relay.example".into(),
        created_at: at(10),
    };
    assert!(store.put_push_target(&target("s-1", "alice", TargetKind::WebPush), 3).await.unwrap());
    assert!(store.put_push_target(&target("s-2", "alice", TargetKind::WebPush), 3).await.unwrap());
    assert!(store.put_push_target(&target("n-1", "alice", TargetKind::Ntfy), 3).await.unwrap());
    assert!(!store.put_push_target(&target("s-3", "alice", TargetKind::WebPush), 3).await.unwrap(), "the cap");
    // A channel replaces the user's channel of its kind (so it fits under the cap).
    assert!(store.put_push_target(&target("n-2", "alice", TargetKind::Ntfy), 3).await.unwrap());
    assert!(store.put_push_target(&target("s-9", "bob", TargetKind::WebPush), 3).await.unwrap());
    let ids: Vec<String> = store.push_targets("alice").await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["n-2", "s-1", "s-2"]);
    let s1 = store.push_target("s-1").await.unwrap().unwrap();
    assert_eq!(s1, target("s-1", "alice", TargetKind::WebPush), "read back as stored");
    assert!(!format!("{s1:?}").contains("push.example"), "Debug hides the endpoint");

    // Enqueue once per event key; a token with it.
    let message = |target: &str| NewPushMessage {
        target_id: target.into(),
        payload: format!("{{\"to\":\"{target}\"}}"),
        topic: Some("topic-1".into()),
        ttl_secs: 600,
        urgency: "high".into(),
    };
    let event = PushEvent {
        user: "alice".into(),
        event_key: "needs_input:t-1:r-1".into(),
        token: Some(NewActionToken {
            hash: "h-1".into(),
            task_id: "t-1".into(),
            request_id: "r-1".into(),
            expires_ms: 5_000,
        }),
        messages: vec![message("s-1"), message("s-2")],
        now_ms: 1_000,
        give_up_ms: 100_000,
    };
    assert_eq!(store.enqueue_push(&event, 10).await.unwrap(), Enqueued::Queued(2));
    assert_eq!(store.enqueue_push(&event, 10).await.unwrap(), Enqueued::Duplicate, "once per event");
    let full = PushEvent { event_key: "completed:t-1".into(), token: None, ..event.clone() };
    assert_eq!(store.enqueue_push(&full, 3).await.unwrap(), Enqueued::Full, "bounded");
    assert_eq!(store.push_outbox_len().await.unwrap(), 2);

    // Claimed with a lease by one node; not again while it runs; again once it ran out.
    let a = store.claim_push("node-a", 1_000, 500, 10).await.unwrap();
    assert_eq!(a.iter().map(|r| r.target_id.as_str()).collect::<Vec<_>>(), ["s-1", "s-2"]);
    assert_eq!((a[0].attempts, a[0].ttl_secs, a[0].urgency.as_str()), (1, 600, "high"));
    assert_eq!(a[0].topic.as_deref(), Some("topic-1"));
    assert_eq!(a[0].payload, "{\"to\":\"s-1\"}");
    assert!(store.claim_push("node-b", 1_200, 500, 10).await.unwrap().is_empty(), "leased to node-a");
    store.push_done(a[0].id).await.unwrap();
    let b = store.claim_push("node-b", 1_500, 500, 10).await.unwrap();
    assert_eq!(b.len(), 1, "the lease ran out: another node takes what is left");
    assert_eq!((b[0].target_id.as_str(), b[0].attempts), ("s-2", 2));
    // A retry is due at its time, and by any node.
    store.push_retry(b[0].id, 3_000).await.unwrap();
    assert!(store.claim_push("node-a", 2_999, 500, 10).await.unwrap().is_empty());
    assert_eq!(store.claim_push("node-a", 3_000, 500, 10).await.unwrap().len(), 1);
    // Deleting a target deletes what waits for it.
    assert!(store.delete_push_target("alice", "s-2").await.unwrap());
    assert!(!store.delete_push_target("alice", "s-2").await.unwrap());
    assert!(!store.delete_push_target("alice", "s-9").await.unwrap(), "only one's own");
    assert_eq!(store.push_outbox_len().await.unwrap(), 0);

    // Tokens: once, live only, dead when their request is decided.
    assert_eq!(store.use_push_token("nope", 1_000).await.unwrap(), None);
    let used = store.use_push_token("h-1", 1_000).await.unwrap().unwrap();
    assert_eq!((used.user.as_str(), used.task_id.as_str(), used.request_id.as_str()), ("alice", "t-1", "r-1"));
    assert_eq!(store.use_push_token("h-1", 1_000).await.unwrap(), None, "works once");
    let later = |key: &str, hash: &str, expires_ms: i64| PushEvent {
        event_key: key.into(),
        token: Some(NewActionToken { hash: hash.into(), task_id: "t-1".into(), request_id: "r-2".into(), expires_ms }),
        messages: vec![message("s-1")],
        ..event.clone()
    };
    store.enqueue_push(&later("needs_input:t-1:r-2", "h-2", 5_000), 10).await.unwrap();
    assert_eq!(store.use_push_token("h-2", 5_000).await.unwrap(), None, "expired");
    store.enqueue_push(&later("needs_input:t-1:r-3", "h-3", 9_000), 10).await.unwrap();
    store.delete_push_tokens("t-1", "r-2").await.unwrap();
    assert_eq!(store.use_push_token("h-3", 1_000).await.unwrap(), None, "its request was decided");
}
