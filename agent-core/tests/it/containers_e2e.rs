//! End to end, issue 18 (SPEC 10): container runs against real Podman.
//!
//! Each test starts its own Podman API service (`podman system service`, the Docker-compatible
//! API on a socket in a temp dir), its own `git daemon` serving a bare repo on 127.0.0.1, a real
//! relay with `[runner]` pointing at both, and, for Claude, the scripted Messages API. The
//! containers use host networking, so they reach all three on 127.0.0.1. The image is the
//! runner base image `.ci/install` builds once per machine (`runner/build-image.sh --base`); the
//! agent under test is bind-mounted into it (`[runner] agent_binary`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flightdeck_protocol::event::RunnerStep;
use flightdeck_protocol::realtime::{TopicEvent, TopicSnapshot};
use flightdeck_protocol::{Placement, RunnerState, SeqEvent, ServerMessage, Task, TaskEvent, TaskStatus, Topic};
use serde_json::json;
use tokio::time::Instant;

use crate::link_e2e::{assert_whole, eventually, free_port, Agent, AgentOptions, Proc, Relay, Viewer};
use crate::support::git;
use crate::support::scripted_api::{self, ScriptedApi};

/// The image the tests run (built by `.ci/install`).
fn image() -> String {
    std::env::var("FLIGHTDECK_RUNNER_IMAGE").unwrap_or_else(|_| "localhost/flightdeck-runner-base:latest".into())
}

/// A Podman API service on a socket of its own.
struct Podman {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Podman {
    async fn start() -> Podman {
        let out = Command::new("podman").args(["image", "exists", &image()]).status();
        assert!(
            matches!(out, Ok(s) if s.success()),
            "podman and the image {} are needed: run .ci/install (it builds it with runner/build-image.sh --base)",
            image()
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        let probe = socket.clone();
        eventually("the podman service listens", || {
            let probe = probe.clone();
            async move {
                match tokio::net::UnixStream::connect(&probe).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        Podman { socket, _dir: dir, _proc: proc }
    }

    /// Ids of the containers (running or not) that run `task_id`.
    fn containers_of(&self, task_id: &str) -> Vec<String> {
        let out = Command::new("podman")
            .args(["ps", "-a", "-q", "--filter", &format!("label=flightdeck.task={task_id}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }
}

/// `git daemon` serving `<dir>/demo.git` (one commit with a README) on a free port, pushes allowed.
struct GitServer {
    dir: tempfile::TempDir,
    url: String,
    _proc: Proc,
}

impl GitServer {
    async fn start() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("demo.git");
        let out = Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&bare).output().unwrap();
        assert!(out.status.success());
        let seed = tempfile::tempdir().unwrap();
        git(seed.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(seed.path().join("README.md"), "demo\n").unwrap();
        git(seed.path(), &["add", "README.md"]);
        git(seed.path(), &["-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", "first"]);
        git(seed.path(), &["push", "-q", &bare.to_string_lossy(), "main"]);
        let port = free_port();
        let child = Command::new("git")
            .args(["daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", dir.path().display()))
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        let url = format!("git://127.0.0.1:{port}/demo.git");
        let probe = url.clone();
        eventually("git daemon serves the repo", || {
            let probe = probe.clone();
            async move {
                let out = tokio::process::Command::new("git").args(["ls-remote", &probe]).output().await;
                match out {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        GitServer { dir, url, _proc: proc }
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("demo.git")
    }

    /// `git show <rev>` in the bare repo, or `None` when it does not exist.
    fn show(&self, rev: &str) -> Option<String> {
        let out = Command::new("git").arg("--git-dir").arg(self.bare()).args(["show", rev]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A relay with a `[runner]` on `podman`.
async fn relay_with_runner(podman: &Podman, max_running: usize, keys: &Path) -> Relay {
    let agent = env!("CARGO_BIN_EXE_flightdeck-agent");
    let toml = format!(
        r#"
[runner]
socket = "unix://{socket}"
image = "{image}"
network = "host"
max_running = {max_running}
timeout_secs = 120
agent_binary = "{agent}"
secrets_key_file = "{keys}"

[runner.ulimits]
nofile = 20000
nproc = 32768

[runner.env]
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
RUST_LOG = "warn"
"#,
        socket = podman.socket.display(),
        image = image(),
        keys = keys.join("relay-secrets.key").display(),
    );
    Relay::start_with_config(Some(&toml)).await
}

/// One figure of the relay's `/metrics`.
async fn runner_metric(relay: &Relay, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", relay.http())).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn post(relay: &Relay, body: serde_json::Value) -> Task {
    let (status, body) = relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_value(body["task"].clone()).unwrap()
}

/// A container shell task on the git server's repo.
async fn post_shell(relay: &Relay, git: &GitServer, command: &str) -> Task {
    let body = json!({"executor": "shell", "repo": "demo", "placement": "container", "cloneUrl": git.url,
        "payload": {"command": command}});
    post(relay, body).await
}

/// Follows `task:<id>` until the relay's last step of the run (the container exited or failed);
/// returns every event, in order.
async fn follow_run(viewer: &mut Viewer, id: &str) -> Vec<SeqEvent> {
    let mut events: Vec<SeqEvent> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let topic = format!("task:{id}");
    loop {
        let (name, snapshot, payload) = match viewer.next(deadline).await {
            ServerMessage::Snapshot { topic, payload } => (topic, true, payload),
            ServerMessage::Event { topic, payload } => (topic, false, payload),
            ServerMessage::Error { message, .. } => panic!("viewer error: {message}"),
            ServerMessage::Pong {} => continue,
        };
        if name != topic {
            continue;
        }
        let parsed: Topic = name.parse().unwrap();
        if snapshot {
            let TopicSnapshot::Task(snap) = TopicSnapshot::decode(&parsed, payload).unwrap() else { unreachable!() };
            events = snap.events;
        } else if let TopicEvent::TaskEvent(e) = TopicEvent::decode(&parsed, payload).unwrap() {
            events.push(e);
        }
        let ended = events.last().is_some_and(|e| {
            matches!(e.event, TaskEvent::Runner { step: RunnerStep::Exited | RunnerStep::Failed, .. })
        });
        if ended {
            return events;
        }
    }
}

fn runner_steps(events: &[SeqEvent]) -> Vec<RunnerStep> {
    events
        .iter()
        .filter_map(|e| match e.event {
            TaskEvent::Runner { step, .. } => Some(step),
            _ => None,
        })
        .collect()
}

// (a) The owner's agent (which reported the repo and its origin) is offline: a Claude task
// posted with placement auto runs in a container, edits a file, the viewer gets the whole
// transcript, the branch is pushed, and the container is gone. Secrets reach the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_task_runs_in_a_container_when_the_owner_is_offline() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let relay = relay_with_runner(&podman, 2, keys.path()).await;
    let api = ScriptedApi::start(vec![
        scripted_api::bash_turn("msg_1", 120, &["Editing."], "toolu_01", "echo from-container > container.txt", 20),
        scripted_api::text_turn("msg_2", 160, &["Done ", "here."], 12),
    ])
    .await;

    // The owner's desktop agent reports the repo with its origin, then goes away.
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("demo");
    let out = Command::new("git").args(["clone", "-q", &git_server.url]).arg(&clone).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (data, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut desktop = Agent::start(AgentOptions {
        relay_url: relay.http(),
        key: relay.agent_key(),
        repo: &clone,
        data: data.path(),
        claude_api: None,
        home: home.path(),
    });
    eventually("the relay knows the repo and its origin", || async {
        let (_, body) = relay.api(reqwest::Method::GET, "/api/cockpit/repos", None).await;
        let repos = body["repos"].as_array().cloned().unwrap_or_default();
        match repos.iter().find(|r| r["name"] == "demo") {
            Some(r) if r["remoteUrl"] == git_server.url.as_str() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    desktop.proc.kill();
    eventually("the owner's agent is offline", || async {
        let (_, body) = relay.api(reqwest::Method::GET, "/api/cockpit/agents", None).await;
        match body["agents"].as_array() {
            Some(a) if a.len() == 1 && a[0]["status"] == "offline" => Ok(()),
            _ => Err(body.to_string()),
        }
    })
    .await;

    for (name, value) in [("ANTHROPIC_BASE_URL", api.url.as_str()), ("ANTHROPIC_API_KEY", "test-key")] {
        let (status, body) = relay
            .api(reqwest::Method::PUT, &format!("/api/cockpit/secrets/{name}"), Some(json!({"value": value})))
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let task = post(
        &relay,
        json!({"executor": "claude", "repo": "demo", "payload": {"prompt": "make a file",
            "allowedTools": ["Bash"], "permissionMode": "acceptEdits"}}),
    )
    .await;
    assert_eq!(task.placement, Some(Placement::Container), "{task:?}");
    let mut viewer = Viewer::connect(&relay, &[format!("task:{}", task.id)]).await;
    let events = follow_run(&mut viewer, &task.id).await;
    assert_whole(&events);
    let steps = runner_steps(&events);
    assert_eq!(
        steps,
        [RunnerStep::Starting, RunnerStep::Cloning, RunnerStep::Pushing, RunnerStep::Exited],
        "{events:#?}"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    for kind in ["user_message", "tool_start", "tool_done", "diff", "usage", "done"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let assistant: String = events
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Chunk { text, stream: flightdeck_protocol::event::ChunkStream::Assistant } => {
                Some(text.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(assistant, "Editing.Done here.");

    let task = relay
        .wait_task(&task.id, "completed and recorded", |t| {
            t.runner.as_ref().is_some_and(|r| r.state == RunnerState::Exited)
        })
        .await;
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.runner.as_ref().and_then(|r| r.exit_code), Some(0));
    assert_eq!(
        git_server.show(&format!("flightdeck/{}:container.txt", task.id)).as_deref(),
        Some("from-container\n"),
        "the branch with the change is in the bare repo"
    );
    assert!(podman.containers_of(&task.id).is_empty(), "the container is gone");
    // The container's agent replaced nobody and left nothing behind.
    let (_, agents) = relay.api(reqwest::Method::GET, "/api/cockpit/agents", None).await;
    let ids: Vec<&str> = agents["agents"].as_array().unwrap().iter().filter_map(|a| a["agentId"].as_str()).collect();
    assert_eq!(ids, ["e2e-agent"], "{agents}");
    let (_, alerts) = relay.api(reqwest::Method::GET, "/api/cockpit/alerts", None).await;
    assert!(!alerts.to_string().contains("container-"), "{alerts}");
    let (_, repos) = relay.api(reqwest::Method::GET, "/api/cockpit/repos?agentId=e2e-agent", None).await;
    assert_eq!(repos["repos"][0]["name"], "demo", "the repo is still the owner's agent's: {repos}");
    // Secrets are write-only.
    let (_, listed) = relay.api(reqwest::Method::GET, "/api/cockpit/secrets", None).await;
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("test-key"), "{listed}");
}

// (b) A shell task that exits 3 ends `failed`; the container exits 1 and is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shell_task_ends_failed() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let relay = relay_with_runner(&podman, 2, keys.path()).await;
    let task = post_shell(&relay, &git_server, "echo about to fail; exit 3").await;
    let mut viewer = Viewer::connect(&relay, &[format!("task:{}", task.id)]).await;
    let events = follow_run(&mut viewer, &task.id).await;
    assert_whole(&events);
    assert_eq!(runner_steps(&events), [RunnerStep::Starting, RunnerStep::Cloning, RunnerStep::Failed], "{events:#?}");
    let task =
        relay.wait_task(&task.id, "recorded", |t| t.runner.as_ref().is_some_and(|r| r.exit_code.is_some())).await;
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    assert_eq!(task.runner.as_ref().and_then(|r| r.exit_code), Some(1));
    assert!(git_server.show(&format!("flightdeck/{}", task.id)).is_none(), "nothing changed, nothing pushed");
    assert!(podman.containers_of(&task.id).is_empty());
}

// (c) A container killed from outside ends its task `failed` with the log tail as its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_from_outside_fails_its_task_with_the_log_tail() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let relay = relay_with_runner(&podman, 2, keys.path()).await;
    let task = post_shell(&relay, &git_server, "echo started; sleep 600").await;
    let running = relay.wait_task(&task.id, "running in its container", |t| t.status == TaskStatus::Running).await;
    let container = running.runner.as_ref().map(|r| r.container_id.clone()).unwrap();
    let out = Command::new("podman").args(["kill", &container]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task = relay
        .wait_task(&task.id, "failed", |t| {
            t.status.is_terminal() && t.runner.as_ref().is_some_and(|r| r.exit_code.is_some())
        })
        .await;
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    let error = task.error.clone().unwrap_or_default();
    assert!(error.contains("exited with code 137") && error.contains("cloning git://"), "{error}");
    assert!(podman.containers_of(&task.id).is_empty());
}

// (d) With max_running = 1 the second task waits `queued` (no container) while the first runs,
// and starts when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_holds_the_next_task_queued() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let relay = relay_with_runner(&podman, 1, keys.path()).await;
    let first = post_shell(&relay, &git_server, "sleep 600").await;
    relay.wait_task(&first.id, "the first runs", |t| t.status == TaskStatus::Running).await;
    let second = post_shell(&relay, &git_server, "echo second").await;
    // While the first runs, the second has no container: asked once the supervisor has answered
    // the wake-up of the second's POST (so a runner that ignored the limit would have started it).
    let wakes = runner_metric(&relay, "flightdeck_runner_wakes_total").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runner_metric(&relay, "flightdeck_runner_wakes_answered_total").await < wakes {
        assert!(tokio::time::Instant::now() < deadline, "the supervisor did not look at its queue");
        tokio::task::yield_now().await;
    }
    let waiting = relay.task(&second.id).await;
    assert_eq!((waiting.status, waiting.runner.clone()), (TaskStatus::Queued, None), "{waiting:?}");
    assert!(podman.containers_of(&second.id).is_empty());
    assert_eq!(runner_metric(&relay, "flightdeck_runner_running").await, 1);
    let (status, body) =
        relay.api(reqwest::Method::POST, &format!("/api/cockpit/tasks/{}/cancel", first.id), None).await;
    assert_eq!(status, 200, "{body}");
    let first = relay
        .wait_task(&first.id, "the first ended", |t| t.runner.as_ref().is_some_and(|r| r.exit_code.is_some()))
        .await;
    assert_eq!(first.status, TaskStatus::Cancelled, "{first:?}");
    let second = relay
        .wait_task(&second.id, "the second completed", |t| t.runner.as_ref().is_some_and(|r| r.exit_code.is_some()))
        .await;
    assert_eq!(second.status, TaskStatus::Completed, "{second:?}");
    assert!(second.started_at.unwrap() >= first.finished_at.unwrap(), "{first:?} {second:?}");
}

// (e) A relay restart while a container runs: the container is removed by the sweep of the
// new process and the task ends `interrupted` (not lost, not left running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_interrupts_the_run_and_leaves_no_container() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let mut relay = relay_with_runner(&podman, 2, keys.path()).await;
    let task = post_shell(&relay, &git_server, "sleep 600").await;
    relay.wait_task(&task.id, "running", |t| t.status == TaskStatus::Running).await;
    assert_eq!(podman.containers_of(&task.id).len(), 1);
    relay.kill();
    relay.restart().await;
    let ended = relay.wait_task(&task.id, "interrupted", |t| t.status.is_terminal()).await;
    assert_eq!(ended.status, TaskStatus::Interrupted, "{ended:?}");
    assert!(podman.containers_of(&task.id).is_empty(), "the sweep removed the container");
    let (_, body) = relay.api(reqwest::Method::GET, &format!("/api/cockpit/tasks/{}/events", task.id), None).await;
    let last = body["events"].as_array().and_then(|e| e.last()).cloned().unwrap_or_default();
    assert_eq!(last["event"]["kind"], "runner", "{body}");
}

// (f) Issue 22, item 4: a reply to a container task runs. The first turn's container has exited,
// so the follow-up is a new container: it starts from the branch the first turn pushed (it sees
// that turn's file) and resumes the Claude session the first container kept (the scripted API
// gets the first turn's messages in the second turn's request); it pushes its own branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_container_task_resumes_the_session_in_a_new_container() {
    let podman = Podman::start().await;
    let git_server = GitServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let relay = relay_with_runner(&podman, 2, keys.path()).await;
    let api = ScriptedApi::start(vec![
        scripted_api::bash_turn("msg_1", 120, &["Writing it."], "toolu_01", "echo turn-one > first.txt", 20),
        scripted_api::text_turn("msg_2", 160, &["The first file says turn-one."], 12),
        scripted_api::bash_turn("msg_3", 200, &["Copying it."], "toolu_02", "cp first.txt second.txt", 20),
        scripted_api::text_turn("msg_4", 240, &["Copied."], 12),
    ])
    .await;
    for (name, value) in [("ANTHROPIC_BASE_URL", api.url.as_str()), ("ANTHROPIC_API_KEY", "test-key")] {
        let (status, body) = relay
            .api(reqwest::Method::PUT, &format!("/api/cockpit/secrets/{name}"), Some(json!({"value": value})))
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let first = post(
        &relay,
        json!({"executor": "claude", "repo": "demo", "placement": "container", "cloneUrl": git_server.url,
            "payload": {"prompt": "write first.txt", "allowedTools": ["Bash"], "permissionMode": "acceptEdits"}}),
    )
    .await;
    // Followed to the end of its run (a container run takes longer than `wait_task`'s deadline
    // on a busy machine), then read once recorded.
    let mut viewer = Viewer::connect(&relay, &[format!("task:{}", first.id)]).await;
    follow_run(&mut viewer, &first.id).await;
    let first = relay
        .wait_task(&first.id, "the first turn's container is gone", |t| {
            t.runner.as_ref().is_some_and(|r| r.exit_code.is_some())
        })
        .await;
    assert_eq!(first.status, TaskStatus::Completed, "{first:?}");
    assert!(first.session_id.is_some(), "{first:?}");
    assert!(podman.containers_of(&first.id).is_empty());

    let (status, body) = relay
        .api(
            reqwest::Method::POST,
            &format!("/api/cockpit/tasks/{}/reply", first.id),
            Some(json!({"prompt": "now copy it to second.txt"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let reply: Task = serde_json::from_value(body["task"].clone()).unwrap();
    assert_eq!(reply.placement, Some(Placement::Container), "{reply:?}");
    assert_ne!(reply.agent_id, first.agent_id, "a new container, not the exited one: {reply:?}");
    let mut viewer = Viewer::connect(&relay, &[format!("task:{}", reply.id)]).await;
    let events = follow_run(&mut viewer, &reply.id).await;
    assert_whole(&events);
    let reply = relay
        .wait_task(&reply.id, "the reply's container is gone", |t| {
            t.runner.as_ref().is_some_and(|r| r.exit_code.is_some())
        })
        .await;
    assert_eq!(reply.status, TaskStatus::Completed, "{reply:?} {events:#?}");
    assert_eq!(reply.session_id, first.session_id, "the same Claude session");
    assert_eq!(
        runner_steps(&events),
        [RunnerStep::Starting, RunnerStep::Cloning, RunnerStep::Pushing, RunnerStep::Exited],
        "{events:#?}"
    );
    // The second turn's request carries the first turn's conversation.
    let requests = api.message_requests();
    let resumed = requests
        .iter()
        .map(|r| r.body.to_string())
        .find(|b| b.contains("now copy it to second.txt"))
        .expect("the reply reached the API");
    assert!(
        resumed.contains("write first.txt") && resumed.contains("The first file says turn-one."),
        "the first turn's context: {resumed}"
    );
    // It started from the first turn's branch and pushed its own.
    assert_eq!(
        git_server.show(&format!("flightdeck/{}:second.txt", reply.id)).as_deref(),
        Some("turn-one\n"),
        "the reply saw the first turn's file"
    );
    assert!(podman.containers_of(&reply.id).is_empty());
    let (status, conversation) =
        relay.api(reqwest::Method::GET, &format!("/api/cockpit/conversations/{}", first.id), None).await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["tasks"].as_array().map(Vec::len), Some(2), "{conversation}");
}

// (g) The image holds the ACP agents tools/ installs (SPEC 14): the agent finds each built-in
// on PATH, and each answers ACP `initialize` there (claude-code-acp through the image's Node.js
// and the packages copied with it), offline.
#[tokio::test]
async fn the_image_runs_the_acp_agents_of_tools() {
    let agent = env!("CARGO_BIN_EXE_flightdeck-agent");
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("podman");
        cmd.args(["run", "--rm", "-i", "--network=none", "-v"])
            .arg(format!("{agent}:/usr/local/bin/flightdeck-agent:ro"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let listed = run(&[&image(), "agents", "--json"]).output().await.unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Vec<serde_json::Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for name in ["codex", "opencode", "claude-acp"] {
        let entry = listed.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("no {name}: {listed:?}"));
        assert_eq!(entry["found"], true, "{entry}");
        assert!(entry["path"].as_str().unwrap().starts_with("/opt/flightdeck-agents/bin/"), "{entry}");
    }

    for (program, args) in [("codex-acp", &[][..]), ("opencode", &["acp"][..]), ("claude-code-acp", &[][..])] {
        // Named, so the check can end it (codex-acp does not end with its input, and killing
        // `podman run` would leave the container).
        let name = format!("flightdeck-acp-check-{}-{program}", std::process::id());
        let mut child = run(&["--name", &name, "--entrypoint", program, &image()]).args(args).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": 1, "clientCapabilities": {}}});
        tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{initialize}\n").as_bytes()).await.unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
        // A bound: OpenCode took 20 s to answer `initialize` on a busy two-core machine.
        let answer = tokio::time::timeout(Duration::from_secs(180), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if message["id"] == 0 {
                    return Some(message);
                }
            }
            None
        })
        .await;
        drop(stdin);
        // It may be ending already (most agents end with their input): then `rm` loses the race
        // to `podman run --rm`, which is fine, as long as the container is gone after both.
        let _ = Command::new("podman").args(["rm", "-f", "--time", "0", &name]).output();
        child.wait().await.unwrap();
        let exists = Command::new("podman").args(["container", "exists", &name]).status().unwrap();
        assert!(!exists.success(), "the container {name} is left");
        let answer = answer
            .unwrap_or_else(|_| panic!("{program} did not answer initialize within 180 s"))
            .unwrap_or_else(|| panic!("{program} ended without answering initialize"));
        assert_eq!(answer["result"]["protocolVersion"], 1, "{program}: {answer}");
    }
}
