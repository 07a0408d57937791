//! The `acp` executor (SPEC 14) against a scripted ACP agent (`support/fake_acp_agent.js`, run
//! with node): the session mapped to TaskEvents, permission requests decided through the
//! runner, the client's files and terminals confined to the working tree, cancel, resume, and
//! agents that misbehave (garbage on stdout, an exit mid-turn, no answer to `initialize`, a
//! read outside the repo), which fail their task with a clear error and lose nothing.

use std::path::Path;
use std::time::Duration;

use flightdeck_agent_core::acp::AcpAgents;
use flightdeck_agent_core::executor::{AcpConfig, Decision};
use flightdeck_agent_core::runner::{NewTask, RunnerConfig};
use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy, PlanEntry, PlanEntryStatus};
use flightdeck_protocol::{AlertKind, Executor, Task, TaskEvent, TaskPayload, TaskStatus};

use crate::support::{chunk_text, git, git_repo, processes_in, wait_until, Harness, TaskWatch};

const LONG: Duration = Duration::from_secs(30);

fn fake_agent() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/fake_acp_agent.js");
    format!("node {}", script.display())
}

/// A runner that knows the fake agent as `fake` (mode `good`) and as `fake-<mode>`, and a repo
/// `web` with a README.
async fn setup() -> (Harness, tempfile::TempDir) {
    let mut agents = AcpAgents::default();
    let script = fake_agent();
    agents.add("fake", &format!("{script} good")).unwrap();
    for mode in ["garbage", "silent", "exit", "escape", "stubborn"] {
        agents.add(&format!("fake-{mode}"), &format!("{script} {mode}")).unwrap();
    }
    agents.add("fake-load", &format!("{script} good load")).unwrap();
    agents.add("missing", "/nonexistent/acp-agent --stdio").unwrap();
    let acp = AcpConfig { agents, handshake_timeout: Duration::from_secs(3), ..Default::default() };
    let h = Harness::start(RunnerConfig { acp, kill_grace: Duration::from_secs(1), ..Default::default() }).await;
    let repo = git_repo();
    std::fs::write(repo.path().join("README.md"), "# Web\nThe web app.\n").unwrap();
    git(repo.path(), &["add", "README.md"]);
    git(repo.path(), &["commit", "-q", "-m", "readme"]);
    h.add_repo("web", repo.path());
    (h, repo)
}

fn acp(agent: &str, prompt: &str) -> TaskPayload {
    TaskPayload { prompt: Some(prompt.into()), agent: Some(agent.into()), ..Default::default() }
}

async fn start(h: &Harness, payload: TaskPayload) -> TaskWatch {
    h.create(NewTask::local("web", Executor::Acp, payload)).await
}

/// The events that matter for comparison: no `diff` (checked apart), no final `status`.
fn kinds(events: &[TaskEvent]) -> Vec<&'static str> {
    events.iter().map(TaskEvent::kind).collect()
}

fn error_of(task: &Task) -> String {
    task.error.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_session_streams_its_text_thoughts_plan_tools_and_usage() {
    let (h, repo) = setup().await;
    let mut watch = start(&h, acp("fake", "Summarise the README")).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    let events = &watch.events;
    assert_eq!(events[1], TaskEvent::Status { status: TaskStatus::Running, model: None, session_id: None });
    assert_eq!(events[2], TaskEvent::UserMessage { text: "Summarise the README".into() });
    assert_eq!(chunk_text(events, ChunkStream::Thinking), "Thinking about it");
    assert_eq!(chunk_text(events, ChunkStream::Assistant), "I will read the README. All done.");
    let plan = events.iter().find(|e| matches!(e, TaskEvent::Plan { .. })).expect("a plan");
    assert_eq!(
        plan,
        &TaskEvent::Plan {
            entries: vec![
                PlanEntry { content: "Read the README".into(), status: PlanEntryStatus::Completed },
                PlanEntry { content: "Write notes".into(), status: PlanEntryStatus::InProgress },
            ]
        }
    );
    let start = events.iter().find(|e| matches!(e, TaskEvent::ToolStart { .. })).unwrap();
    let TaskEvent::ToolStart { tool_id, tool_name, params } = start else { unreachable!() };
    assert_eq!((tool_id.as_str(), tool_name.as_str()), ("call_1", "Read README.md"));
    assert!(params["path"].as_str().unwrap().ends_with("/README.md"), "{params}");
    assert!(events.contains(&TaskEvent::ToolDone {
        tool_id: "call_1".into(),
        output: "# Web\nThe web app.\n".into(),
        is_error: false
    }));
    // The cost as it is reported (the budget sees it at once), then the tokens with the turn's end.
    let usages: Vec<&TaskEvent> = events.iter().filter(|e| matches!(e, TaskEvent::Usage { .. })).collect();
    assert_eq!(
        usages,
        vec![
            &TaskEvent::Usage { input_tokens: 0, output_tokens: 0, total_cost_usd: 0.0125 },
            &TaskEvent::Usage { input_tokens: 200, output_tokens: 30, total_cost_usd: 0.0125 },
        ]
    );
    assert_eq!((task.input_tokens, task.output_tokens, task.cost_usd), (Some(200), Some(30), Some(0.0125)));
    // The write went through the client, inside the repo; the diff shows it.
    assert_eq!(std::fs::read_to_string(repo.path().join("notes/summary.txt")).unwrap(), "notes\n");
    let diff = events.iter().find_map(|e| match e {
        TaskEvent::Diff { files, .. } => Some(files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()),
        _ => None,
    });
    assert_eq!(diff, Some(vec!["notes/summary.txt".to_string()]));
    let tail = kinds(&events[events.len() - 2..]);
    assert_eq!(tail, vec!["done", "status"]);
    assert_eq!(task.summary.as_deref(), Some("All done."));
    assert!(processes_in(repo.path()).is_empty(), "the agent's processes outlived the task");
}

/// Waits for the fake agent's permission request; checks the task waits, with an alert.
async fn wait_for_request(watch: &mut TaskWatch) -> String {
    let (request_id, tool_name, suggestions) = watch
        .until(LONG, |e| match e {
            TaskEvent::PermissionRequest { request_id, tool_name, suggestions, .. } => {
                Some((request_id.clone(), tool_name.clone(), suggestions.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(tool_name, "Write allowed.txt");
    assert_eq!(suggestions.map(|s| s.len()), Some(3), "the agent's options go along");
    watch.until_task(LONG, |t| t.status == TaskStatus::Waiting).await;
    let alert = watch.alerts.iter().find(|a| a.kind == AlertKind::NeedsInput).expect("a needs_input alert");
    assert!(alert.message.contains("fake wants to use Write allowed.txt"), "{}", alert.message);
    request_id
}

fn decision(request_id: &str, behavior: Behavior) -> Decision {
    Decision {
        request_id: request_id.into(),
        behavior,
        updated_input: None,
        message: None,
        decided_by: DecidedBy::Local,
    }
}

#[tokio::test]
async fn an_allowed_permission_request_lets_the_agent_act_and_a_denied_one_reaches_it() {
    let (h, repo) = setup().await;

    let mut watch = start(&h, acp("fake", "ask before writing")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(!h.runner.decide(&watch.task.id, decision("acp-nope", Behavior::Allow)).await.unwrap());
    assert!(h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Allow)).await.unwrap());
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert_eq!(std::fs::read_to_string(repo.path().join("allowed.txt")).unwrap(), "written after an allow\n");
    assert!(watch.events.contains(&TaskEvent::PermissionDecision {
        request_id: request_id.clone(),
        behavior: Behavior::Allow,
        message: None,
        updated_input: None,
        decided_by: DecidedBy::Local,
    }));
    assert!(task.waiting_since.is_none());
    // Deciding again: nothing is pending any more.
    assert!(!h.runner.decide(&task.id, decision(&request_id, Behavior::Allow)).await.unwrap());

    std::fs::remove_file(repo.path().join("allowed.txt")).unwrap();
    let mut watch = start(&h, acp("fake", "ask before writing")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Deny)).await.unwrap());
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(!repo.path().join("allowed.txt").exists());
    // The agent got the reject option.
    assert_eq!(task.summary.as_deref(), Some("Understood: selected no."));
    assert!(watch.events.contains(&TaskEvent::ToolDone {
        tool_id: "call_2".into(),
        output: "rejected: selected no".into(),
        is_error: true
    }));
}

#[tokio::test]
async fn a_terminal_runs_in_the_tree_and_streams_its_output_as_a_tool() {
    let (h, _repo) = setup().await;
    let mut watch = start(&h, acp("fake", "use a terminal")).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    let events = &watch.events;
    let start =
        events.iter().position(|e| matches!(e, TaskEvent::ToolStart { tool_name, .. } if tool_name == "terminal"));
    let done = events.iter().position(|e| matches!(e, TaskEvent::ToolDone { tool_id, .. } if tool_id == "term-1"));
    let (start, done) = (start.expect("a terminal tool"), done.expect("its end"));
    assert!(start < done);
    assert_eq!(chunk_text(&events[start..done], ChunkStream::Stdout), "from-terminal\n");
    assert_eq!(chunk_text(&events[start..done], ChunkStream::Stderr), "oops\n");
    let TaskEvent::ToolDone { output, is_error, .. } = &events[done] else { unreachable!() };
    assert!(*is_error && output.contains("from-terminal") && output.contains("exit code 2"), "{output}");
    assert_eq!(task.summary.as_deref(), Some(r#"exit 2; output "from-terminal\noops\n""#));
}

#[tokio::test]
async fn cancel_sends_session_cancel_and_a_stubborn_agent_is_killed() {
    let (h, repo) = setup().await;
    for agent in ["fake", "fake-stubborn"] {
        let mut watch = start(&h, acp(agent, "wait-for-cancel")).await;
        watch
            .until(LONG, |e| matches!(e, TaskEvent::Chunk { text, .. } if text == "Working on it").then_some(()))
            .await;
        h.runner.cancel(&watch.task.id).await.unwrap();
        let task = watch.end(LONG).await;
        assert_eq!(task.status, TaskStatus::Cancelled, "{agent}: {:#?}", watch.events);
        assert!(!watch.events.iter().any(|e| matches!(e, TaskEvent::Error { .. })), "{:#?}", watch.events);
        wait_until(Duration::from_secs(5), "the agent's processes are gone", || processes_in(repo.path()).is_empty())
            .await;
    }
}

#[tokio::test]
async fn misbehaving_agents_fail_their_task_with_a_clear_error() {
    let (h, repo) = setup().await;
    let outside = repo.path().parent().unwrap().join("outside.txt");
    std::fs::write(&outside, "a secret outside the repo").unwrap();
    let cases: Vec<(&str, &str)> = vec![
        (
            "fake-garbage",
            "the agent wrote a line that is not a JSON-RPC message: Welcome to the fake agent! Loading...",
        ),
        ("fake-silent", "the ACP agent `fake-silent` did not answer initialize within 3 s"),
        ("fake-exit", "the ACP agent exited before the turn ended (exit code 3): fatal: the model connection dropped"),
        ("fake-escape", "the ACP agent `fake-escape` answered session/prompt with an error: cannot read outside.txt:"),
        ("nope", "unknown ACP agent `nope`: this machine knows"),
        ("missing", "ACP agent `missing` not found (`/nonexistent/acp-agent --stdio`)"),
    ];
    for (agent, want) in cases {
        let mut watch = start(&h, acp(agent, "do the work")).await;
        let task = watch.end(LONG).await;
        assert_eq!(task.status, TaskStatus::Failed, "{agent}: {:#?}", watch.events);
        assert!(error_of(&task).starts_with(want), "{agent}: {}", error_of(&task));
        assert!(watch.alerts.iter().any(|a| a.kind == AlertKind::TaskFailed), "{agent}: a task_failed alert");
        let errors = watch.events.iter().filter(|e| matches!(e, TaskEvent::Error { .. })).count();
        assert_eq!(errors, 1, "{agent}: one error event");
        assert!(processes_in(repo.path()).is_empty(), "{agent}: processes outlived the task");
        match agent {
            // What it said before it died is kept.
            "fake-exit" => assert_eq!(chunk_text(&watch.events, ChunkStream::Assistant), "Starting the work"),
            "fake-escape" => {
                assert!(error_of(&task).contains("is outside the task's working tree"), "{}", error_of(&task));
                let refused = watch.events.iter().any(|e| {
                    matches!(e, TaskEvent::ToolDone { output, is_error: true, .. } if output.starts_with("refused: "))
                });
                assert!(refused, "the refusal is in the transcript: {:#?}", watch.events);
                let leaked = serde_json::to_string(&watch.events).unwrap().contains("a secret outside");
                assert!(!leaked, "the file's content never reached the agent");
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_reply_loads_the_session_when_the_agent_can() {
    let (h, _repo) = setup().await;
    // An agent without loadSession names no session: a reply is refused (`not_resumable`).
    let mut watch = start(&h, acp("fake", "Summarise the README")).await;
    let first = watch.end(LONG).await;
    assert_eq!((first.status, first.session_id.clone()), (TaskStatus::Completed, None));
    assert!(flightdeck_protocol::rules::reply_refusal(&first).is_some());
    let resume = TaskPayload { resume_session_id: Some("sess-1".into()), ..acp("fake", "resume please") };
    let task = start(&h, resume).await.end(LONG).await;
    assert!(error_of(&task).contains("cannot resume a session (no loadSession)"), "{}", error_of(&task));

    let mut watch = start(&h, acp("fake-load", "Summarise the README")).await;
    let first = watch.end(LONG).await;
    let session = first.session_id.clone().expect("a resumable session is named");
    assert!(flightdeck_protocol::rules::reply_refusal(&first).is_none());
    let resume = TaskPayload { resume_session_id: Some(session.clone()), ..acp("fake-load", "resume please") };
    let mut watch = start(&h, resume).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    // The replayed history is not this turn's transcript.
    assert_eq!(chunk_text(&watch.events, ChunkStream::Assistant), format!("Resumed {session}"));
    assert_eq!(task.session_id.as_deref(), Some(session.as_str()));
}

#[tokio::test]
async fn a_permission_mode_or_model_is_set_only_when_the_agent_offers_it() {
    let (h, _repo) = setup().await;
    let auto = TaskPayload { permission_mode: Some("auto".into()), ..acp("fake", "Summarise the README") };
    assert_eq!(start(&h, auto).await.end(LONG).await.status, TaskStatus::Completed);
    let unknown = TaskPayload { permission_mode: Some("yolo".into()), ..acp("fake", "Summarise the README") };
    let task = start(&h, unknown).await.end(LONG).await;
    assert_eq!(error_of(&task), "the ACP agent `fake` has no permission mode `yolo` (it offers: ask, auto)");
    let model = TaskPayload { model: Some("big".into()), ..acp("fake", "Summarise the README") };
    let task = start(&h, model).await.end(LONG).await;
    assert!(
        error_of(&task).starts_with("the ACP agent `fake` does not let a client choose its model"),
        "{}",
        error_of(&task)
    );
    let mut watch =
        start(&h, TaskPayload { model: Some("big".into()), ..acp("fake-load", "Summarise the README") }).await;
    assert_eq!(watch.end(LONG).await.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(
        matches!(&watch.events[1], TaskEvent::Status { model: Some(m), .. } if m == "big"),
        "{:#?}",
        watch.events[1]
    );
    let task = start(&h, TaskPayload { model: Some("huge".into()), ..acp("fake-load", "Summarise the README") })
        .await
        .end(LONG)
        .await;
    assert_eq!(error_of(&task), "the ACP agent `fake-load` has no model `huge` (it offers: small, big)");
}

/// `flightdeck-agent` with `args`, no settings file, `PATH` = `path` plus the system's.
fn agent_cli(data: &Path, path: &Path, args: &[&str]) -> std::process::Output {
    let system = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![path.to_path_buf()];
    dirs.extend(std::env::split_paths(&system));
    std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("XDG_CONFIG_HOME", data.join("config"))
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env_remove("FLIGHTDECK_AGENT_CONFIG")
        .env("FLIGHTDECK_AGENT_ACP_AGENTS", r#"{"from-env": "from-env-acp --stdio"}"#)
        .output()
        .unwrap()
}

#[test]
fn the_agents_command_lists_built_in_and_custom_agents_found_or_not() {
    let data = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let codex = bin.path().join("codex-acp");
    std::fs::write(&codex, "#!/bin/sh\necho 'codex-acp 0.16.0'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = agent_cli(data.path(), bin.path(), &["agents", "--json", "--acp-agent", "mine=node --version"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let get = |name: &str| listed.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("{name}: {listed:?}"));
    assert_eq!(get("codex")["found"], true);
    assert_eq!(get("codex")["version"], "codex-acp 0.16.0");
    assert_eq!(get("codex")["builtin"], true);
    assert_eq!(get("mine")["command"], "node --version");
    assert_eq!((get("mine")["found"].clone(), get("mine")["builtin"].clone()), (true.into(), false.into()));
    assert_eq!(get("from-env")["found"], false);
    for name in ["opencode", "gemini", "claude-acp"] {
        get(name);
    }

    let out = agent_cli(data.path(), bin.path(), &["agents", "--acp-agent", "bad"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not NAME=COMMAND"));
}

#[test]
fn task_acp_runs_an_agent_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let repo = git_repo();
    std::fs::write(repo.path().join("README.md"), "# Web\n").unwrap();
    let agent = format!("fake={} good", fake_agent());
    let out = agent_cli(
        data.path(),
        data.path(),
        &[
            "task",
            "--json",
            "--repo",
            repo.path().to_str().unwrap(),
            "--acp",
            "fake",
            "--prompt",
            "Summarise it",
            "--acp-agent",
            &agent,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(r#""kind":"plan""#) && stdout.contains(r#""stream":"thinking""#), "{stdout}");
    assert!(stdout.contains(r#""kind":"done","summary":"All done.""#), "{stdout}");
}
