//! The `Agent` facade, as every front end uses it: real git repos in temp dirs, real shell
//! tasks, a real SQLite file reopened to check what persists, and the error codes.

use std::path::Path;
use std::time::Duration;

use flightdeck_agent_core::agent::{Agent, AgentConfig, AgentError, Notification};
use flightdeck_agent_core::tray::{TrayAction, TrayIcon, TrayItem};
use flightdeck_protocol::desktop::{AgentEvent, AlertQuery, LinkStatus, SettingsUpdate, StartTaskRequest, TaskQuery};
use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{AlertKind, Executor, RepoState, Task, TaskEvent, TaskPayload, TaskStatus};
use tokio::sync::broadcast;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A git repo with one commit on `main`, in a temp dir whose name is `name`.
fn git_repo(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["config", "user.email", "test@example.com"],
        &["config", "user.name", "Test"],
        &["commit", "-q", "--allow-empty", "-m", "first"],
    ] {
        git(&dir, args);
    }
    dir.canonicalize().unwrap()
}

async fn start(data: &Path, extra: &[&Path]) -> Agent {
    let mut config = AgentConfig::new(data);
    config.extra_repos = extra.iter().map(|p| p.to_path_buf()).collect();
    Agent::start(config).await.unwrap()
}

/// Waits for an event matching `pick`, failing after [`DEADLINE`].
async fn next_matching<T>(
    rx: &mut broadcast::Receiver<AgentEvent>,
    mut pick: impl FnMut(&AgentEvent) -> Option<T>,
) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(event)) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("events ended: {e}"),
            Err(_) => panic!("no matching event within {DEADLINE:?}"),
        }
    }
}

/// Waits until the task has ended, returning its final state.
async fn task_end(rx: &mut broadcast::Receiver<AgentEvent>, task_id: &str) -> Task {
    next_matching(rx, |e| match e {
        AgentEvent::TaskUpdate { task } if task.id == task_id && task.status.is_terminal() => Some(task.clone()),
        _ => None,
    })
    .await
}

fn code<T: std::fmt::Debug>(result: Result<T, AgentError>) -> &'static str {
    result.expect_err("expected an error").code()
}

fn shell(repo: &str, command: &str) -> StartTaskRequest {
    StartTaskRequest {
        executor: Executor::Shell,
        repo: repo.into(),
        title: None,
        payload: TaskPayload { command: Some(command.into()), ..Default::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_and_settings_persist_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let alpha = git_repo(tmp.path(), "alpha");
    let beta = git_repo(tmp.path(), "beta");
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();

    let agent = start(&data, &[&alpha]).await;
    let repos = agent.repos().await.unwrap();
    assert_eq!(repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["alpha"]);

    let added = agent.add_repo(&beta).await.unwrap();
    assert_eq!(added.name, "beta");
    assert_eq!(added.branch.as_deref(), Some("main"), "add_repo answers with the first status");
    assert_eq!(added.status, RepoState::Clean);
    assert_eq!(added.path.as_deref().map(|p| p.trim_end_matches('/')), Some(beta.to_str().unwrap()));

    // The error codes the window matches on.
    assert_eq!(code(agent.add_repo(&beta).await), "repo_exists");
    assert_eq!(code(agent.add_repo(&plain).await), "not_a_git_repo");
    assert_eq!(code(agent.add_repo(&tmp.path().join("nowhere")).await), "not_a_git_repo");
    assert_eq!(code(agent.add_repo(Path::new("")).await), "invalid_input");
    assert_eq!(code(agent.remove_repo("nope").await), "repo_not_found");
    assert_eq!(code(agent.hud_url(None).await), "relay_not_configured");
    assert_eq!(
        code(
            agent
                .set_settings(SettingsUpdate { relay_url: Some("relay.example.com".into()), ..Default::default() })
                .await
        ),
        "invalid_input"
    );
    assert_eq!(
        code(agent.set_settings(SettingsUpdate { agent_id: Some("../x".into()), ..Default::default() }).await),
        "invalid_input"
    );

    // Settings: the key is stored but never read back.
    let mut events = agent.subscribe();
    let key = "fdk_live_0123456789abcdef0123456789abcdef";
    let view = agent
        .set_settings(SettingsUpdate {
            relay_url: Some("ws://127.0.0.1:9/".into()),
            relay_user: Some("alice".into()),
            key: Some(key.into()),
            agent_id: Some("laptop-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(view.relay_url.as_deref(), Some("ws://127.0.0.1:9"));
    assert!(view.key_set);
    assert_eq!(view.key_hint.as_deref(), Some("fdk_…cdef"));
    assert_eq!(view.agent_id, "laptop-1");
    assert!(!serde_json::to_string(&view).unwrap().contains(key));
    // With a relay configured the link starts (nothing listens there, so it never connects); the
    // status says so as soon as `set_settings` returns.
    assert_ne!(agent.link_status(), LinkStatus::Off);
    next_matching(&mut events, |e| matches!(e, AgentEvent::Link { status: LinkStatus::Connecting, .. }).then_some(()))
        .await;
    assert_eq!(agent.hud_url(Some("beta")).await.unwrap(), "http://127.0.0.1:9/hud/alice/beta");
    assert_eq!(code(agent.hud_url(Some("gamma")).await), "repo_not_found");

    agent.set_watching_paused(true).await.unwrap();
    assert!(agent.watching_paused());
    agent.remove_repo("alpha").await.unwrap();
    assert_eq!(agent.repos().await.unwrap().len(), 1);
    assert!(agent.shutdown(Duration::from_secs(5)).await.unwrap().is_empty());
    drop(agent);

    // Reopened with no repos given: everything came back from the database.
    let agent = start(&data, &[]).await;
    let repos = agent.repos().await.unwrap();
    assert_eq!(repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["beta"]);
    let settings = agent.settings().await.unwrap();
    assert_eq!(settings.relay_url.as_deref(), Some("ws://127.0.0.1:9"));
    assert_eq!(settings.relay_user.as_deref(), Some("alice"));
    assert_eq!(settings.agent_id, "laptop-1");
    assert_eq!(settings.key_hint.as_deref(), Some("fdk_…cdef"));
    assert_eq!(settings.repos, [beta.display().to_string()]);
    assert!(settings.watching_paused);
    assert!(agent.watching_paused());

    // Clearing the relay URL stops the link; the window hears about it.
    let mut events = agent.subscribe();
    let view =
        agent.set_settings(SettingsUpdate { relay_url: Some(String::new()), ..Default::default() }).await.unwrap();
    assert_eq!(view.relay_url, None);
    assert!(view.key_set, "the key stays until cleared itself");
    assert_eq!(agent.link_status(), LinkStatus::Off, "the status is set when set_settings returns");
    next_matching(&mut events, |e| matches!(e, AgentEvent::Link { status: LinkStatus::Off, .. }).then_some(())).await;
    next_matching(&mut events, |e| matches!(e, AgentEvent::Settings { .. }).then_some(())).await;
    agent.set_watching_paused(false).await.unwrap();
    assert!(!agent.settings().await.unwrap().watching_paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_tasks_stream_to_subscribers_and_land_in_the_transcript() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let agent = start(&tmp.path().join("data"), &[&repo]).await;
    let mut events = agent.subscribe();

    let task = agent.start_task(shell("demo", "echo hello from $(basename $PWD); echo oops >&2")).await.unwrap();
    assert_eq!(task.repo, "demo");
    assert_eq!(task.title, "echo hello from $(basename $PWD); echo oops >&2");
    assert_eq!(task.payload.repo.as_deref(), Some("demo"));
    let chunk = next_matching(&mut events, |e| match e {
        AgentEvent::TaskEvent { record } if record.task_id == task.id => match &record.event {
            TaskEvent::Chunk { text, stream: ChunkStream::Stdout } => Some(text.clone()),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert!(chunk.contains("hello from demo"), "{chunk:?}");
    let done = task_end(&mut events, &task.id).await;
    assert_eq!(done.status, TaskStatus::Completed);
    let note = Notification::for_event(&AgentEvent::TaskUpdate { task: done.clone() }).unwrap();
    assert_eq!(note.title, "Task completed");

    let transcript = agent.transcript(&task.id).await.unwrap();
    assert_eq!(transcript.task.status, TaskStatus::Completed);
    let seqs: Vec<u64> = transcript.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(transcript
        .events
        .iter()
        .any(|e| matches!(&e.event, TaskEvent::Chunk { text, stream: ChunkStream::Stderr } if text.contains("oops"))));

    // The repo can be named by id as well as by name, in tasks and in filters.
    let repo_id = agent.repos().await.unwrap()[0].id.clone();
    let by_id = agent
        .start_task(StartTaskRequest { title: Some("  second  ".into()), ..shell(&repo_id, "exit 3") })
        .await
        .unwrap();
    assert_eq!(by_id.title, "second");
    let failed = task_end(&mut events, &by_id.id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let list = agent.tasks(TaskQuery { repo: Some(repo_id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(list.total, 2);
    assert_eq!(list.limit, 50);
    let completed = agent.tasks(TaskQuery { status: Some(TaskStatus::Completed), ..Default::default() }).await.unwrap();
    assert_eq!(completed.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [task.id.as_str()]);

    assert_eq!(code(agent.start_task(shell("nope", "true")).await), "repo_not_found");
    assert_eq!(code(agent.start_task(shell("demo", " ")).await), "invalid_input");
    assert_eq!(code(agent.transcript("nope").await), "task_not_found");
    assert_eq!(code(agent.cancel_task("nope").await), "task_not_found");
    assert_eq!(code(agent.tasks(TaskQuery { limit: Some(501), ..Default::default() }).await), "invalid_input");
    // Cancelling a finished task answers with it, unchanged.
    assert_eq!(agent.cancel_task(&task.id).await.unwrap().status, TaskStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_raise_alerts_that_turn_the_tray_and_can_be_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let agent = start(&tmp.path().join("data"), &[&repo]).await;
    assert_eq!(agent.tray_model().await.unwrap().icon, TrayIcon::Idle);
    let mut events = agent.subscribe();

    let task = agent.start_task(shell("demo", "exit 1")).await.unwrap();
    let alert = next_matching(&mut events, |e| match e {
        AgentEvent::Alert { alert } if alert.task_id.as_deref() == Some(task.id.as_str()) => Some(alert.clone()),
        _ => None,
    })
    .await;
    assert_eq!(alert.kind, AlertKind::TaskFailed);
    task_end(&mut events, &task.id).await;

    let tray = agent.tray_model().await.unwrap();
    assert_eq!(tray.icon, TrayIcon::Attention);
    assert!(tray.tooltip.contains("1 alert"), "{}", tray.tooltip);
    let unacked = agent.alerts(AlertQuery { acknowledged: Some(false), ..Default::default() }).await.unwrap();
    assert_eq!(unacked.total, 1);
    assert_eq!(agent.cockpit_state().await.unwrap().alerts.len(), 1);

    let acked = agent.acknowledge_alert(&alert.id).await.unwrap();
    assert!(acked.acknowledged);
    let pushed = next_matching(&mut events, |e| match e {
        AgentEvent::Alert { alert } if alert.id == acked.id => Some(alert.clone()),
        _ => None,
    })
    .await;
    assert!(pushed.acknowledged);
    assert_eq!(agent.tray_model().await.unwrap().icon, TrayIcon::Idle);
    assert_eq!(code(agent.acknowledge_alert("nope").await), "alert_not_found");
    assert!(agent.cockpit_state().await.unwrap().alerts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_tasks_show_in_the_tray_and_stop_on_cancel_and_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let other = git_repo(tmp.path(), "other");
    let agent = start(&tmp.path().join("data"), &[&repo, &other]).await;
    let mut events = agent.subscribe();

    let long =
        |repo: &str| StartTaskRequest { title: Some("long one".into()), ..shell(repo, "echo started; sleep 30") };
    let first = agent.start_task(long("demo")).await.unwrap();
    next_matching(&mut events, |e| match e {
        AgentEvent::TaskUpdate { task } if task.id == first.id && task.status == TaskStatus::Running => Some(()),
        _ => None,
    })
    .await;
    let tray = agent.tray_model().await.unwrap();
    assert_eq!(tray.icon, TrayIcon::Running);
    assert!(tray.items.contains(&TrayItem::Action {
        action: TrayAction::ShowTask(first.id.clone()),
        text: "▶ long one · demo".into(),
        enabled: true,
    }));
    assert_eq!(agent.active_tasks().await.unwrap().len(), 1);

    agent.cancel_task(&first.id).await.unwrap();
    assert_eq!(task_end(&mut events, &first.id).await.status, TaskStatus::Cancelled);

    // Quit: every running task is cancelled and waited for.
    let a = agent.start_task(long("demo")).await.unwrap();
    let b = agent.start_task(long("other")).await.unwrap();
    for id in [&a.id, &b.id] {
        next_matching(&mut events, |e| match e {
            AgentEvent::TaskUpdate { task } if &task.id == id && task.status == TaskStatus::Running => Some(()),
            _ => None,
        })
        .await;
    }
    let started = Instant::now();
    let left = agent.shutdown(Duration::from_secs(15)).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "sh exits on SIGTERM, well before the kill");
    for id in [&a.id, &b.id] {
        assert_eq!(agent.task(id).await.unwrap().status, TaskStatus::Cancelled);
    }
    assert!(agent.active_tasks().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpit_bus_serves_relay_topics_from_the_local_agent() {
    use flightdeck_agent_core::agent::CockpitBus;
    use flightdeck_protocol::realtime::{TopicEvent, TopicSnapshot};
    use flightdeck_protocol::{ServerMessage, Topic};

    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let agent = start(&tmp.path().join("data"), &[&repo]).await;
    let bus = CockpitBus::new();
    let mut events = agent.subscribe();

    let topics: Vec<String> = ["agents", "repos", "tasks", "alerts", "nope"].map(String::from).to_vec();
    let frames = bus.subscribe(&agent, &topics).await.unwrap();
    let mut snapshots = Vec::new();
    for frame in frames {
        match frame {
            ServerMessage::Snapshot { topic, payload } => {
                let topic: Topic = topic.parse().unwrap();
                snapshots.push(TopicSnapshot::decode(&topic, payload).unwrap());
            }
            ServerMessage::Error { topic, .. } => assert_eq!(topic.as_deref(), Some("nope")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(snapshots.len(), 4);
    assert!(matches!(&snapshots[0], TopicSnapshot::Agents(a) if a.len() == 1 && a[0].repos == ["demo"]));
    assert!(matches!(&snapshots[1], TopicSnapshot::Repos(r) if r[0].name == "demo"));

    let task = agent.start_task(shell("demo", "echo bus")).await.unwrap();
    let mut subscribed = Vec::new();
    bus.subscribe_and_deliver(&agent, &[format!("task:{}", task.id)], |frame| subscribed.push(frame)).await.unwrap();
    assert!(matches!(&subscribed[0], ServerMessage::Snapshot { topic, .. } if *topic == format!("task:{}", task.id)));

    // Every change becomes events of the subscribed topics, decodable as the ui decodes them.
    let mut saw_output = false;
    let mut saw_end = false;
    let until = Instant::now() + DEADLINE;
    while !(saw_output && saw_end) {
        let change = tokio::time::timeout_at(until, events.recv()).await.expect("events in time").unwrap();
        let mut frames = Vec::new();
        bus.publish(&agent, &change, |frame| frames.push(frame)).await;
        for frame in frames {
            let ServerMessage::Event { topic, payload } = frame else { panic!("not an event") };
            let topic: Topic = topic.parse().unwrap();
            match TopicEvent::decode(&topic, payload).unwrap() {
                TopicEvent::TaskEvent(e) => {
                    saw_output |= matches!(&e.event, TaskEvent::Chunk { text, .. } if text.contains("bus"))
                }
                TopicEvent::Task(t) => saw_end |= t.id == task.id && t.status == TaskStatus::Completed,
                _ => {}
            }
        }
    }
    bus.unsubscribe(&["tasks".to_string()]);
    let change = AgentEvent::TaskUpdate { task: agent.task(&task.id).await.unwrap() };
    let frames = bus.frames(&agent, &change).await;
    assert!(frames.iter().all(|f| matches!(f, ServerMessage::Event { topic, .. } if topic == "agents")), "{frames:?}");
    let polled = agent.task_events(&task.id, 1, None).await.unwrap();
    assert_eq!(polled.events.first().map(|e| e.seq), Some(2));
    assert_eq!(polled.next_after, polled.events.last().unwrap().seq);
}

/// The desktop serves a HUD as `flightdeck_protocol::views` defines it (as the relay does, see
/// the relay's `a_hud_is_the_protocol_view_of_the_stored_rows`): the repo's newest task with its
/// whole transcript, public fields only; changes of the repo's older tasks are not on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpit_bus_serves_a_hud_as_the_protocol_views_define_it() {
    use flightdeck_agent_core::agent::CockpitBus;
    use flightdeck_protocol::event::TaskEventRecord;
    use flightdeck_protocol::realtime::{HudEvent, HudSnapshot, TopicEvent};
    use flightdeck_protocol::views::{hud_snapshot, HudData};
    use flightdeck_protocol::{ServerMessage, Topic};

    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let agent = start(&tmp.path().join("data"), &[&repo]).await;
    let mut events = agent.subscribe();
    let mut ended = Vec::new();
    for command in ["echo older", "echo newer"] {
        let task = agent.start_task(shell("demo", command)).await.unwrap();
        next_matching(&mut events, |e| match e {
            AgentEvent::TaskUpdate { task: t } if t.id == task.id && t.status.is_terminal() => Some(()),
            _ => None,
        })
        .await;
        ended.push(agent.task(&task.id).await.unwrap());
    }
    let (older, newer) = (&ended[0], &ended[1]);

    let bus = CockpitBus::new();
    let frames = bus.subscribe(&agent, &["hud:alice/demo".to_string()]).await.unwrap();
    let [ServerMessage::Snapshot { payload, .. }] = &frames[..] else { panic!("{frames:?}") };
    let served: HudSnapshot = serde_json::from_value(payload.clone()).unwrap();
    let data = HudData {
        public: false,
        agent_online: true,
        repo_status: agent.repos().await.unwrap().into_iter().find(|r| r.name == "demo"),
        task: Some(newer.clone()),
        events: agent.transcript(&newer.id).await.unwrap().events,
    };
    assert_eq!(served, hud_snapshot("alice", "demo", data));
    assert!(served.repo_status.as_ref().unwrap().path.is_none(), "public fields only");

    // A change of the older task is not on the HUD; one of the newer task is.
    let record = |task: &Task| TaskEventRecord {
        task_id: task.id.clone(),
        seq: task.last_seq + 1,
        event: TaskEvent::Chunk { stream: ChunkStream::Stdout, text: "late".into() },
    };
    for (task, shown) in [(older, false), (newer, true)] {
        for change in [AgentEvent::TaskUpdate { task: task.clone() }, AgentEvent::TaskEvent { record: record(task) }] {
            let frames = bus.frames(&agent, &change).await;
            let on_hud: Vec<_> = frames
                .into_iter()
                .filter_map(|f| match f {
                    ServerMessage::Event { topic, payload } => {
                        Some(TopicEvent::decode(&topic.parse::<Topic>().unwrap(), payload).unwrap())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(on_hud.len(), usize::from(shown), "{} {change:?}: {on_hud:?}", task.id);
            if let Some(TopicEvent::Hud(HudEvent::Task { task: t })) = on_hud.first() {
                assert_eq!(t.agent_id, None, "public fields only");
            }
        }
    }
}

// Two installations on one host (the desktop app and `./dev run`'s headless agent) used to share
// the host name as agent id, so one replaced the other at the relay. Each data dir now keeps its
// own id: the host name plus a suffix, chosen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_installation_keeps_its_own_agent_id() {
    let tmp = tempfile::tempdir().unwrap();
    let first = start(&tmp.path().join("desktop"), &[]).await;
    let id = first.settings().await.unwrap().agent_id;
    assert!(first.shutdown(Duration::from_secs(5)).await.unwrap().is_empty());
    drop(first);
    let again = start(&tmp.path().join("desktop"), &[]).await;
    assert_eq!(again.settings().await.unwrap().agent_id, id, "the id is kept across restarts");
    let other = start(&tmp.path().join("headless"), &[]).await;
    assert_ne!(other.settings().await.unwrap().agent_id, id, "another data dir, another id");
}

/// Turning the relay on uploads only what happens from then on, unless the owner asks for the
/// history too; the local tasks of before stay on the machine either way... unless asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_the_relay_on_uploads_the_history_only_when_asked() {
    let relay = crate::link_e2e::Relay::start().await;
    for upload in [None, Some(true)] {
        let tmp = tempfile::tempdir().unwrap();
        let name = if upload.is_some() { "with-history" } else { "only-new" };
        let repo = git_repo(tmp.path(), name);
        let agent = start(&tmp.path().join("data"), &[&repo]).await;
        let mut events = agent.subscribe();
        let old = agent.start_task(shell(name, "echo before the relay")).await.unwrap();
        next_matching(&mut events, |e| match e {
            AgentEvent::TaskUpdate { task } if task.id == old.id && task.status.is_terminal() => Some(()),
            _ => None,
        })
        .await;

        agent
            .set_settings(SettingsUpdate {
                relay_url: Some(relay.http()),
                relay_user: Some("alice".into()),
                key: Some(relay.agent_key().into()),
                agent_id: Some(format!("laptop-{name}")),
                upload_history: upload,
                acp_agents: None,
            })
            .await
            .unwrap();
        let new = agent.start_task(shell(name, "echo after")).await.unwrap();
        relay.wait_task(&new.id, "the new task reaches the relay", |t| t.status == TaskStatus::Completed).await;
        let (status, _) = relay.api(reqwest::Method::GET, &format!("/api/cockpit/tasks/{}", old.id), None).await;
        match upload {
            None => assert_eq!(status, 404, "a task from before the relay was uploaded without asking"),
            Some(_) => {
                relay.wait_task(&old.id, "the history reaches the relay", |t| t.status == TaskStatus::Completed).await;
            }
        }
        agent.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Issue 25: a custom ACP agent added in the desktop's settings is saved, runs tasks from then
/// on, is reported to the relay (and the window's agents topic) as `acp:<name>`, and is back
/// after a restart; a bad one is refused whole with nothing saved; removing it takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acp_agents_added_in_the_settings_run_tasks_and_reach_the_relay() {
    let relay = crate::link_e2e::Relay::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "web");
    // The scripted agent reads the README.
    std::fs::write(repo.join("README.md"), "# Web\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-q", "-m", "readme"]);
    let data = tmp.path().join("data");
    let agent = start(&data, &[&repo]).await;
    let mut events = agent.subscribe();
    let base = SettingsUpdate {
        relay_url: Some(relay.http()),
        relay_user: Some("alice".into()),
        key: Some(relay.agent_key().into()),
        agent_id: Some("laptop".into()),
        ..Default::default()
    };
    agent.set_settings(base).await.unwrap();
    assert!(!agent.capabilities().contains(&"acp:mine".to_string()));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/fake_acp_agent.js");
    let command = format!("node {} good", script.display());
    let mine = vec![format!("mine={command}")];
    let view =
        agent.set_settings(SettingsUpdate { acp_agents: Some(mine.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(view.acp_agents, mine);
    assert!(agent.capabilities().contains(&"acp:mine".to_string()), "{:?}", agent.capabilities());
    // The relay is told (the link starts again with the new capabilities).
    crate::link_e2e::eventually("the relay lists acp:mine", || async {
        let (_, body) = relay.api(reqwest::Method::GET, "/api/cockpit/agents", None).await;
        let listed = body["agents"].as_array().is_some_and(|agents| {
            agents.iter().any(|a| a["agentId"] == "laptop" && a["capabilities"].to_string().contains("acp:mine"))
        });
        if listed {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    // A task runs it.
    let request = StartTaskRequest {
        executor: Executor::Acp,
        repo: "web".into(),
        title: None,
        payload: TaskPayload { prompt: Some("Summarise".into()), agent: Some("mine".into()), ..Default::default() },
    };
    let task = agent.start_task(request).await.unwrap();
    let ended = task_end(&mut events, &task.id).await;
    assert_eq!(ended.status, TaskStatus::Completed, "{ended:?}");

    // A bad set is refused whole: nothing of it is saved.
    for bad in [
        vec!["other=ok-acp".to_string(), "bad name=x".to_string()],
        vec!["no-command".to_string()],
        vec!["twice=a".to_string(), "twice=b".to_string()],
    ] {
        let refused = agent.set_settings(SettingsUpdate { acp_agents: Some(bad.clone()), ..Default::default() }).await;
        assert_eq!(code(refused), "invalid_input", "{bad:?}");
        assert_eq!(agent.settings().await.unwrap().acp_agents, mine);
    }

    // Kept across a restart.
    agent.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(agent);
    let agent = start(&data, &[&repo]).await;
    assert_eq!(agent.settings().await.unwrap().acp_agents, mine);
    assert!(agent.capabilities().contains(&"acp:mine".to_string()));
    // Removed: gone from what the agent can run.
    let view = agent.set_settings(SettingsUpdate { acp_agents: Some(Vec::new()), ..Default::default() }).await.unwrap();
    assert!(view.acp_agents.is_empty());
    assert!(!agent.capabilities().contains(&"acp:mine".to_string()));
    agent.shutdown(Duration::from_secs(5)).await.unwrap();
}

// The desktop's settings switch: `set_claude_hooks` installs the hooks (pointing at this agent's
// data directory), `claude_hooks` reports them, and switching off gives the file back as it was.
#[tokio::test]
async fn the_claude_hooks_switch_installs_and_removes_the_hooks() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let original = "{\n  \"model\": \"opus\"\n}\n";
    std::fs::write(&settings, original).unwrap();
    let mut config = AgentConfig::new(data.path());
    config.claude_settings = Some(settings.clone());
    config.hook_program = Some("/opt/flightdeck/flightdeck-agent".into());
    let agent = Agent::start(config).await.unwrap();

    let before = agent.claude_hooks().await.unwrap();
    assert_eq!((before.installed, before.settings_path.as_str()), (false, settings.to_str().unwrap()));
    assert!(agent.set_claude_hooks(true).await.unwrap().installed);
    let text = std::fs::read_to_string(&settings).unwrap();
    let want = format!("'/opt/flightdeck/flightdeck-agent' hook --data-dir '{}'", data.path().display());
    assert!(text.contains(&serde_json::to_string(&want).unwrap()), "{text}");
    assert!(agent.claude_hooks().await.unwrap().installed);
    assert!(!agent.set_claude_hooks(false).await.unwrap().installed);
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), original);

    std::fs::write(&settings, "not json").unwrap();
    let err = agent.set_claude_hooks(true).await.unwrap_err();
    assert_eq!(err.code(), "claude_settings_invalid", "{err}");
    agent.shutdown(std::time::Duration::from_secs(5)).await.unwrap();
}
