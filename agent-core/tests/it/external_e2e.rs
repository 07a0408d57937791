//! Claude Code sessions started outside Flightdeck (SPEC 9), end to end: a real relay and a real
//! `flightdeck-agent run`, the hooks installed with `flightdeck-agent hooks install` in a temp
//! HOME, and the real Claude Code CLI run by the test itself (`claude -p`, as a person would in
//! a terminal) against the scripted Messages API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant as StdInstant};

use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy};
use flightdeck_protocol::realtime::{HudSnapshot, TopicSnapshot};
use flightdeck_protocol::{SeqEvent, Task, TaskEvent, TaskSource, TaskStatus};
use serde_json::{json, Value};
use tokio::process::Child;

use super::hooks::hooks;
use super::link_e2e::{assert_whole, eventually, rest_transcript, Setup, Viewer};
use crate::claude::claude_bin;
use crate::support::git_repo;
use crate::support::scripted_api::{bash_turn, text_turn, ScriptedApi};

const MODEL: &str = "claude-sonnet-4-5";

/// A HOME whose `~/.claude/settings.json` has the hooks, installed as a person would.
fn claude_home(agent_data: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let out = hooks(home.path(), agent_data, "install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    home
}

/// `claude -p PROMPT` in `cwd`, started by hand: `allowed` tools need no permission.
fn claude(home: &Path, cwd: &Path, api: &ScriptedApi, prompt: &str, allowed: &[&str]) -> Child {
    let mut cmd = tokio::process::Command::new(claude_bin());
    cmd.args(["-p", prompt, "--model", MODEL])
        .current_dir(cwd)
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", &api.url)
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !allowed.is_empty() {
        cmd.arg("--allowedTools").args(allowed);
    }
    cmd.spawn().unwrap()
}

/// Waits for `claude` to exit; its stdout.
async fn finished(child: Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("claude -p did not end in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "claude -p failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The relay's tasks of the repo, newest first.
async fn relay_tasks(s: &Setup) -> Vec<Task> {
    let (status, body) = s.relay.api(reqwest::Method::GET, "/api/cockpit/tasks?limit=100", None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body["tasks"].clone()).unwrap()
}

/// Waits until the relay has an external task that `pick` accepts.
async fn wait_external(s: &Setup, what: &str, pick: impl Fn(&Task) -> bool) -> Task {
    eventually(what, || async {
        let tasks = relay_tasks(s).await;
        tasks.iter().find(|t| t.source == TaskSource::External && pick(t)).cloned().ok_or(format!("{tasks:?}"))
    })
    .await
}

/// Waits until the relay's transcript of `id` holds an event that `pick` accepts.
async fn wait_event(s: &Setup, id: &str, what: &str, pick: impl Fn(&TaskEvent) -> bool) -> Vec<SeqEvent> {
    eventually(what, || async {
        let events = rest_transcript(&s.relay, id).await;
        if events.iter().any(|e| pick(&e.event)) {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await
}

fn chunk(text: &str) -> TaskEvent {
    TaskEvent::Chunk { text: text.into(), stream: ChunkStream::Assistant }
}

fn bash_start(id: &str, command: &str) -> TaskEvent {
    TaskEvent::ToolStart {
        tool_id: id.into(),
        tool_name: "Bash".into(),
        params: json!({"command": command, "description": "scripted command"}),
    }
}

fn bash_done(id: &str, output: &str) -> TaskEvent {
    TaskEvent::ToolDone { tool_id: id.into(), output: output.into(), is_error: false }
}

fn ending(input_tokens: u64, output_tokens: u64, summary: &str) -> Vec<TaskEvent> {
    vec![
        TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd: 0.0 },
        TaskEvent::Done { summary: summary.into() },
        TaskEvent::Status { status: TaskStatus::Completed, model: None, session_id: None },
    ]
}

/// The opening of an external task: `status running` with the session, the prompt.
fn opening(session: &str, prompt: &str) -> Vec<TaskEvent> {
    vec![
        TaskEvent::Status { status: TaskStatus::Running, model: None, session_id: Some(session.into()) },
        TaskEvent::UserMessage { text: prompt.into() },
    ]
}

fn events_of(transcript: &[SeqEvent]) -> Vec<TaskEvent> {
    assert_whole(transcript);
    transcript.iter().map(|e| e.event.clone()).collect()
}

// (a) A session started in a terminal in a watched repo shows at the relay, on REST and on the
//     HUD, as an external task with the same events a Flightdeck task has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_session_appears_at_the_relay_with_its_events() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make ", "the file."], "toolu_01", "touch made.txt", 20),
        text_turn("msg_2", 150, &["Made it."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let home = claude_home(s.agent_data.path());

    let out = finished(claude(home.path(), s.repo.path(), &api, "make the file", &["Bash"])).await;
    assert!(out.contains("Made it."), "{out}");
    let task = wait_external(&s, "the external task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.conversation_id, task.id, "the first turn of its conversation");
    let session = task.session_id.clone().expect("the Claude session id");
    assert_eq!((task.title.as_str(), task.executor), ("make the file", flightdeck_protocol::Executor::Claude));
    assert_eq!((task.input_tokens, task.output_tokens), (Some(250), Some(25)));
    assert!(s.repo.path().join("made.txt").exists());

    let mut want = opening(&session, "make the file");
    want.extend([
        chunk("I will make the file."),
        bash_start("toolu_01", "touch made.txt"),
        bash_done("toolu_01", "(Bash completed with no output)"),
        chunk("Made it."),
    ]);
    want.extend(ending(250, 25, "Made it."));
    let transcript = rest_transcript(&s.relay, &task.id).await;
    assert_eq!(events_of(&transcript), want);

    // The HUD shows it, marked as external.
    let hud = format!("hud:alice/{}", s.slug());
    let mut viewer = Viewer::connect(&s.relay, std::slice::from_ref(&hud)).await;
    let snapshot: HudSnapshot = viewer
        .until("the HUD snapshot", |topic, snapshot, payload| match snapshot {
            true => match TopicSnapshot::decode(topic, payload).unwrap() {
                TopicSnapshot::Hud(h) => Some(*h),
                _ => None,
            },
            false => None,
        })
        .await;
    let shown = snapshot.task.expect("the HUD shows the task");
    assert_eq!((shown.id.as_str(), shown.source), (task.id.as_str(), TaskSource::External));
    assert_eq!(snapshot.events, transcript);

    // A reply cannot resume a terminal's session.
    let (status, body) = s
        .relay
        .api(reqwest::Method::POST, &format!("/api/cockpit/tasks/{}/reply", task.id), Some(json!({"prompt": "more"})))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_resumable")), "{body}");
}

// (b) A session in a directory outside the watched repos appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outside_the_watched_repos_appears_nowhere() {
    let api = ScriptedApi::start(vec![
        text_turn("msg_1", 100, &["Not watched."], 5),
        text_turn("msg_2", 100, &["Watched."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let home = claude_home(s.agent_data.path());
    let elsewhere = git_repo();

    let out = finished(claude(home.path(), elsewhere.path(), &api, "secret plans", &[])).await;
    assert!(out.contains("Not watched."), "{out}");
    // The agent takes hooks in order: once a later session in the watched repo is there, the
    // first one's hooks have all been handled.
    finished(claude(home.path(), s.repo.path(), &api, "hello", &[])).await;
    wait_external(&s, "the watched session", |t| t.status.is_terminal()).await;
    let tasks = relay_tasks(&s).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].title, "hello");
    let store = flightdeck_agent_core::store::Store::open(s.agent_data.path()).unwrap();
    let filter = flightdeck_agent_core::store::TaskFilter { limit: 100, ..Default::default() };
    let local: Vec<String> = store.tasks(&filter).unwrap().0.into_iter().map(|t| t.title).collect();
    assert_eq!(local, ["hello"], "not even in the agent's own database");
}

// (c) A Bash `touch` outside the allowlist waits for a decision, which the owner makes over
//     REST: allowed, the file exists; denied, it does not and Claude hears why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_sessions_permission_is_decided_over_rest() {
    for allow in [true, false] {
        let api = ScriptedApi::start(vec![
            bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", "touch made-by-claude.txt", 20),
            text_turn("msg_2", 150, &["Done deciding."], 5),
        ])
        .await;
        let s = Setup::new().await;
        let _agent = s.agent(s.relay.http(), None);
        s.wait_repo_known().await;
        let home = claude_home(s.agent_data.path());
        let run = claude(home.path(), s.repo.path(), &api, "make the file", &[]);

        let task = wait_external(&s, "the task waits", |t| t.status == TaskStatus::Waiting).await;
        assert!(task.waiting_since.is_some());
        let (_, alerts) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
        assert!(
            alerts["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["kind"] == "needs_input" && a["taskId"] == task.id.as_str()),
            "{alerts}"
        );
        let events =
            wait_event(&s, &task.id, "the request", |e| matches!(e, TaskEvent::PermissionRequest { .. })).await;
        let Some(TaskEvent::PermissionRequest { request_id, tool_name, input, .. }) =
            events.iter().map(|e| &e.event).find(|e| matches!(e, TaskEvent::PermissionRequest { .. }))
        else {
            unreachable!()
        };
        assert_eq!((request_id.as_str(), tool_name.as_str()), ("toolu_01", "Bash"));
        assert_eq!(input["command"], "touch made-by-claude.txt");
        assert!(!s.repo.path().join("made-by-claude.txt").exists());

        let body = if allow {
            json!({"behavior": "allow"})
        } else {
            json!({"behavior": "deny", "message": "not in this repo"})
        };
        let path = format!("/api/cockpit/tasks/{}/permissions/{request_id}", task.id);
        let (status, answer) = s.relay.api(reqwest::Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, 200, "{answer}");
        finished(run).await;
        let done = s.relay.wait_task(&task.id, "the task completes", |t| t.status.is_terminal()).await;
        assert_eq!(done.status, TaskStatus::Completed);
        assert_eq!(s.repo.path().join("made-by-claude.txt").exists(), allow);
        let transcript = rest_transcript(&s.relay, &task.id).await;
        let decision = transcript.iter().find_map(|e| match &e.event {
            TaskEvent::PermissionDecision { behavior, decided_by, .. } => Some((*behavior, *decided_by)),
            _ => None,
        });
        let behavior = if allow { Behavior::Allow } else { Behavior::Deny };
        assert_eq!(decision, Some((behavior, DecidedBy::Owner)));
        if !allow {
            let last = api.message_requests().last().unwrap().body.to_string();
            assert!(last.contains("not in this repo"), "Claude hears why: {last}");
        }
        let (_, alerts) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
        assert!(!alerts["alerts"].as_array().unwrap().iter().any(|a| a["kind"] == "needs_input"), "{alerts}");
        // Decided once.
        let (status, _) = s.relay.api(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 409);
    }
}

// (c') Nobody decides within the agent's wait: the hook leaves the decision to the terminal
//      (`claude -p` has none to show, so it denies) and the tool's result closes the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_permission_goes_back_to_the_terminal() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", "touch made-by-claude.txt", 20),
        text_turn("msg_2", 150, &["It was refused."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let _agent = s.agent_with_env(s.relay.http(), &[("FLIGHTDECK_AGENT_HOOK_WAIT_SECS", "1")]);
    s.wait_repo_known().await;
    let home = claude_home(s.agent_data.path());
    finished(claude(home.path(), s.repo.path(), &api, "make the file", &[])).await;
    let task = wait_external(&s, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(!s.repo.path().join("made-by-claude.txt").exists());
    let kinds: Vec<(String, Option<(Behavior, DecidedBy)>)> = events_of(&rest_transcript(&s.relay, &task.id).await)
        .iter()
        .map(|e| {
            let decision = match e {
                TaskEvent::PermissionDecision { behavior, decided_by, .. } => Some((*behavior, *decided_by)),
                _ => None,
            };
            (e.kind().to_string(), decision)
        })
        .filter(|(kind, _)| kind.starts_with("permission") || kind.starts_with("tool"))
        .collect();
    let k = |kind: &str| (kind.to_string(), None);
    assert_eq!(
        kinds,
        vec![
            k("tool_start"),
            k("permission_request"),
            ("permission_decision".to_string(), Some((Behavior::Deny, DecidedBy::Terminal))),
            k("tool_done"),
        ]
    );
    let (_, alerts) = s.relay.api(reqwest::Method::GET, "/api/cockpit/alerts?acknowledged=false", None).await;
    assert!(!alerts["alerts"].as_array().unwrap().iter().any(|a| a["kind"] == "needs_input"), "{alerts}");
}

// (d) With no agent running, `claude -p` with the hooks installed runs as it would without
//     them, and each hook adds little time (printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_agent_claude_runs_as_usual_and_the_hook_is_quick() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["Making it."], "toolu_01", "touch made.txt", 20),
        text_turn("msg_2", 150, &["Made it."], 5),
    ])
    .await;
    let data = tempfile::tempdir().unwrap();
    let home = claude_home(data.path());
    let repo = git_repo();
    let out = finished(claude(home.path(), repo.path(), &api, "make the file", &["Bash"])).await;
    assert!(out.contains("Made it.") && repo.path().join("made.txt").exists(), "{out}");

    // The hook as Claude Code runs it, with every kind of input it gets.
    let input = |event: &str| {
        json!({"session_id": "s1", "transcript_path": "/nowhere/s1.jsonl", "cwd": repo.path(), "hook_event_name": event,
               "tool_name": "Bash", "tool_input": {"command": "touch x"}, "tool_use_id": "toolu_9", "prompt": "p"})
    };
    let mut times = Vec::new();
    for event in
        ["SessionStart", "UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "Stop", "SessionEnd"]
    {
        for _ in 0..5 {
            let (elapsed, stdout, code) = run_hook(data.path(), &input(event));
            assert_eq!((code, stdout.as_str()), (Some(0), ""), "{event}: exits 0 and prints nothing");
            times.push(elapsed);
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = *times.last().unwrap();
    println!(
        "hook without an agent: median {:.1} ms, worst {:.1} ms per call over {} calls",
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0,
        times.len()
    );
}

/// Runs `flightdeck-agent hook` with `input` on stdin: (wall time, stdout, exit code).
pub(crate) fn run_hook(data: &Path, input: &Value) -> (Duration, String, Option<i32>) {
    use std::io::Write;
    let started = StdInstant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(["hook", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (started.elapsed(), String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

// (e) The agent is killed in the middle of a session and started again: it goes on reading the
//     transcript from where its database says it was, so the task's events are all there,
//     once, in order, and the task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_mid_session_loses_and_repeats_nothing() {
    let s = Setup::new().await;
    let gate = |name: &str| {
        let file: PathBuf = s.repo.path().join(name);
        (format!("while [ ! -f {name} ]; do sleep 0.05; done; echo passed {name}"), file)
    };
    let (first, first_gate) = gate("gate-1");
    let (second, second_gate) = gate("gate-2");
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["First gate."], "toolu_01", &first, 20),
        bash_turn("msg_2", 150, &["Second gate."], "toolu_02", &second, 10),
        text_turn("msg_3", 200, &["Through both."], 5),
    ])
    .await;
    let mut agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let home = claude_home(s.agent_data.path());
    let run = claude(home.path(), s.repo.path(), &api, "go through the gates", &["Bash"]);

    let task = wait_external(&s, "the task runs", |_| true).await;
    wait_event(&s, &task.id, "the first tool started", |e| matches!(e, TaskEvent::ToolStart { .. })).await;
    agent.kill();
    // While no agent runs: the first tool ends and the second starts (their hooks are lost).
    std::fs::write(&first_gate, "").unwrap();
    let transcript = home.path().join(".claude/projects");
    eventually("the second tool starts in the transcript", || async {
        let found =
            walk(&transcript).iter().any(|f| std::fs::read_to_string(f).unwrap_or_default().contains("toolu_02"));
        if found {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    let _agent = s.agent(s.relay.http(), None);
    wait_event(
        &s,
        &task.id,
        "the second tool, read after the restart",
        |e| matches!(e, TaskEvent::ToolStart { tool_id, .. } if tool_id == "toolu_02"),
    )
    .await;
    std::fs::write(&second_gate, "").unwrap();
    finished(run).await;
    let done = s.relay.wait_task(&task.id, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");

    let mut want = opening(done.session_id.as_deref().unwrap(), "go through the gates");
    want.extend([
        chunk("First gate."),
        bash_start("toolu_01", &first),
        bash_done("toolu_01", "passed gate-1"),
        chunk("Second gate."),
        bash_start("toolu_02", &second),
        bash_done("toolu_02", "passed gate-2"),
        chunk("Through both."),
    ]);
    want.extend(ending(450, 35, "Through both."));
    assert_eq!(events_of(&rest_transcript(&s.relay, &task.id).await), want);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// A session killed mid-turn (the terminal closed, `kill -9`) says no `Stop` or `SessionEnd`:
// its task still ends, `interrupted`, once its Claude Code process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_mid_turn_ends_its_task_interrupted() {
    let s = Setup::new().await;
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["Waiting."], "toolu_01", "while true; do sleep 0.05; done", 20),
        text_turn("msg_2", 150, &["Never said."], 5),
    ])
    .await;
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;
    let home = claude_home(s.agent_data.path());
    // What the terminal's Claude started: its Bash tool runs the loop in a session of its own,
    // which the group kill below does not reach (as when a terminal closes); found by this mark
    // and ended with the test.
    let mark = uuid::Uuid::new_v4().to_string();
    let _loop_ends = KillMarked("FLIGHTDECK_TEST_SESSION", mark.clone());
    let mut cmd = tokio::process::Command::new(claude_bin());
    cmd.args(["-p", "wait forever", "--model", MODEL, "--allowedTools", "Bash"])
        .current_dir(s.repo.path())
        .env("FLIGHTDECK_TEST_SESSION", &mark)
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", &api.url)
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut run = cmd.spawn().unwrap();
    let task = wait_external(&s, "the task runs", |_| true).await;
    wait_event(&s, &task.id, "the tool started", |e| matches!(e, TaskEvent::ToolStart { .. })).await;

    // A cockpit cannot stop it: it belongs to its terminal.
    let (status, body) =
        s.relay.api(reqwest::Method::POST, &format!("/api/cockpit/tasks/{}/cancel", task.id), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_cancellable")), "{body}");

    // As a closed terminal does: the whole group goes at once, no hook runs.
    let pgid = run.id().unwrap() as i32;
    std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().unwrap();
    let _ = run.wait().await;
    let ended = s.relay.wait_task(&task.id, "the task ends", |t| t.status.is_terminal()).await;
    assert_eq!(ended.status, TaskStatus::Interrupted, "{ended:?}");
    assert!(ended.error.as_deref().is_some_and(|e| e.contains("exited before its turn ended")), "{ended:?}");
    let events = rest_transcript(&s.relay, &task.id).await;
    assert!(matches!(events.last().map(|e| &e.event), Some(TaskEvent::Status { status: TaskStatus::Interrupted, .. })));
}

// (g) The hooks installed in the HOME the agent itself runs in (the usual case: one person, one
//     `~/.claude/settings.json`): a Claude task the agent runs (started over REST) is exactly
//     one task, at the relay and in the agent's database, not that task plus an "external" twin
//     made of its own `claude` child's hooks. A session started in a terminal is still seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hooks_installed_the_agents_own_claude_task_is_one_task() {
    let api = ScriptedApi::start(vec![
        text_turn("msg_1", 100, &["Hello from the agent's task."], 5),
        text_turn("msg_2", 100, &["Hello from the terminal."], 5),
    ])
    .await;
    let s = Setup::new().await;
    let out = hooks(s.home.path(), s.agent_data.path(), "install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;

    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "say hello"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let done = s.relay.wait_task(&id, "the agent's task ends", |t| t.status.is_terminal()).await;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");

    // The same HOME, hooks and repo, in a terminal: seen, as before.
    let out = finished(claude(s.home.path(), s.repo.path(), &api, "say hello here", &[])).await;
    assert!(out.contains("Hello from the terminal."), "{out}");
    let terminal = wait_external(&s, "the terminal session's task ends", |t| t.status.is_terminal()).await;
    assert_eq!((terminal.title.as_str(), terminal.status), ("say hello here", TaskStatus::Completed));

    // The terminal's task went through the same outbox after the agent's task, so the relay
    // has everything before it: exactly the two tasks.
    let summary = |tasks: &[Task]| -> Vec<(String, String, String)> {
        let mut rows: Vec<_> =
            tasks.iter().map(|t| (t.id.clone(), format!("{:?}", t.source), t.title.clone())).collect();
        rows.sort();
        rows
    };
    let mut want = vec![
        (id.clone(), format!("{:?}", TaskSource::Remote), "say hello".to_string()),
        (terminal.id.clone(), format!("{:?}", TaskSource::External), "say hello here".to_string()),
    ];
    want.sort();
    assert_eq!(summary(&relay_tasks(&s).await), want, "the relay's tasks");
    let store = flightdeck_agent_core::store::Store::open(s.agent_data.path()).unwrap();
    let filter = flightdeck_agent_core::store::TaskFilter { limit: 100, ..Default::default() };
    let (local, _) = store.tasks(&filter).unwrap();
    assert_eq!(summary(&local), want, "the agent's database");
}

// (h) Claude Code writes its transcript on its own schedule: a tool's `PreToolUse` and
//     `PermissionRequest` hooks may run before the transcript holds the line of its `tool_use`
//     (on a loaded machine they often do). The request is recorded right after the tool's
//     `tool_start` all the same, the order a task the agent runs has. Driven by hand so that
//     the worst order happens every time: the hooks through `flightdeck-agent hook`, the
//     transcript written by the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_request_that_comes_before_its_tool_line_follows_its_tool_start() {
    let s = Setup::new().await;
    // No wait for a decision: each hook returns once the agent has taken it, and so the test
    // knows the request was taken before the tool's line is written.
    let _agent = s.agent_with_env(s.relay.http(), &[("FLIGHTDECK_AGENT_HOOK_WAIT_SECS", "0")]);
    s.wait_repo_known().await;
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("race-session.jsonl");
    let tool_input = json!({"command": "touch made-by-claude.txt", "description": "scripted command"});
    let hook = |event: &str| {
        let input = json!({"session_id": "race-session", "transcript_path": transcript, "cwd": s.repo.path(),
            "hook_event_name": event, "prompt": "make the file", "tool_name": "Bash", "tool_input": tool_input,
            "tool_use_id": "toolu_01", "last_assistant_message": "Refused."});
        let (_, stdout, code) = run_hook(s.agent_data.path(), &input);
        assert_eq!((code, stdout.as_str()), (Some(0), ""), "{event}");
    };
    let append = |line: Value| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&transcript).unwrap();
        writeln!(file, "{line}").unwrap();
    };
    let assistant = |id: &str, content: Value, stop: &str| {
        json!({"type": "assistant", "uuid": id, "message": {"id": id, "role": "assistant", "content": [content],
            "stop_reason": stop, "usage": {"input_tokens": 100, "output_tokens": 20}}})
    };

    hook("UserPromptSubmit");
    // That hook returns before the agent has opened the turn: its lines wait for the task.
    wait_external(&s, "the turn opens", |t| t.status == TaskStatus::Running).await;
    append(json!({"type": "user", "message": {"role": "user", "content": "make the file"}}));
    append(assistant("msg_1", json!({"type": "text", "text": "I will make the file."}), "tool_use"));
    hook("PreToolUse");
    hook("PermissionRequest");
    // Only now the tool's line, its result (denied at the terminal) and the last answer.
    append(assistant(
        "msg_1",
        json!({"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": tool_input}),
        "tool_use",
    ));
    append(json!({"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "denied at the terminal", "is_error": true}]}}));
    append(assistant("msg_2", json!({"type": "text", "text": "Refused."}), "end_turn"));
    hook("Stop");

    let task = wait_external(&s, "the task completes", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    // The task's state may reach the relay before its last events: wait for the final status.
    let transcript = wait_event(&s, &task.id, "the final status", |e| {
        matches!(e, TaskEvent::Status { status: TaskStatus::Completed, .. })
    })
    .await;
    let kinds: Vec<String> = events_of(&transcript)
        .iter()
        .map(|e| match e {
            TaskEvent::PermissionDecision { behavior, decided_by, .. } => {
                format!("permission_decision {} by {decided_by:?}", behavior.as_str())
            }
            other => other.kind().to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "status",
            "user_message",
            "chunk",
            "tool_start",
            "permission_request",
            "permission_decision deny by Terminal",
            "tool_done",
            "chunk",
            "usage",
            "done",
            "status"
        ]
    );
}

/// Kills the processes marked `var=value` when dropped (the test ends, or fails).
struct KillMarked(&'static str, String);

impl Drop for KillMarked {
    fn drop(&mut self) {
        flightdeck_agent_core::executor::process::kill_marked(self.0, &self.1);
    }
}
