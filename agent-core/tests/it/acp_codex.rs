//! Codex through `codex-acp` (tools/node_modules/.bin/codex-acp, installed by `npm ci` in
//! tools/) as an `acp` task, against a scripted OpenAI Responses API on 127.0.0.1 (set in a temp
//! CODEX_HOME's config.toml as a model provider): a task streams its text and a tool call, a
//! permission request allowed through the runner's decide path runs the command in the repo, a
//! deny reaches Codex (which then gives up the turn), cancel ends it, a reply loads the session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_agent_core::acp::AcpAgents;
use flightdeck_agent_core::executor::AcpConfig;
use flightdeck_agent_core::runner::{NewTask, RunnerConfig};
use flightdeck_protocol::event::{Behavior, ChunkStream};
use flightdeck_protocol::{AlertKind, Executor, TaskEvent, TaskPayload, TaskStatus};

use crate::support::scripted_responses::{exec_command, hanging, message, tool_outputs, turn, ScriptedResponses, Turn};
use crate::support::{chunk_text, decision, git_repo, processes_in, wait_until, Harness, TaskWatch};

const LONG: Duration = Duration::from_secs(60);
const TOUCH: &str = "touch made-by-codex.txt";

fn codex_acp() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/codex-acp");
    assert!(bin.exists(), "codex-acp is not installed: run `npm ci` in tools/");
    bin
}

/// A scripted API, a runner whose `codex` is codex-acp pointed at it, and a repo `web`.
struct Codex {
    api: ScriptedResponses,
    h: Harness,
    repo: tempfile::TempDir,
    _home: tempfile::TempDir,
}

async fn codex(turns: Vec<Turn>) -> Codex {
    let api = ScriptedResponses::start(turns).await;
    // Not in the system's temp dir: codex-acp warns about a HOME there.
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let codex_home = home.path().join("codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    // Every command but the known-safe ones asks (`untrusted`); an allowed one runs unsandboxed
    // (the test box may have no sandbox to offer).
    let config = format!(
        r#"model = "gpt-5.4"
model_provider = "scripted"
approval_policy = "untrusted"
sandbox_mode = "danger-full-access"

[model_providers.scripted]
name = "scripted"
base_url = "{}"
env_key = "SCRIPTED_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"#,
        api.url
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    let mut agents = AcpAgents::default();
    agents.add("codex", &shlex::try_quote(codex_acp().to_str().unwrap()).unwrap()).unwrap();
    let env = vec![
        ("HOME".into(), home.path().display().to_string()),
        ("CODEX_HOME".into(), codex_home.display().to_string()),
        ("SCRIPTED_API_KEY".into(), "test".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let acp = AcpConfig { agents, env, ..Default::default() };
    let h = Harness::start(RunnerConfig { acp, kill_grace: Duration::from_secs(2), ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    Codex { api, h, repo, _home: home }
}

fn task(prompt: &str) -> NewTask {
    let payload = TaskPayload { prompt: Some(prompt.into()), agent: Some("codex".into()), ..Default::default() };
    NewTask::local("web", Executor::Acp, payload)
}

/// The first turn: says it will make the file, streamed, then runs `touch`.
fn touching() -> Turn {
    let mut items = message("msg_1", &["I will create ", "the file."]);
    items.push(exec_command("call_1", TOUCH));
    turn("resp_1", items, 100, 20)
}

async fn wait_for_request(watch: &mut TaskWatch) -> String {
    let (request_id, tool_name, input) = watch
        .until(LONG, |e| match e {
            TaskEvent::PermissionRequest { request_id, tool_name, input, .. } => {
                Some((request_id.clone(), tool_name.clone(), input.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(tool_name, TOUCH);
    assert!(input.to_string().contains(TOUCH), "{input}");
    watch.until_task(LONG, |t| t.status == TaskStatus::Waiting).await;
    let alert = watch.alerts.iter().find(|a| a.kind == AlertKind::NeedsInput).expect("a needs_input alert");
    assert!(alert.message.contains("codex wants to use touch"), "{}", alert.message);
    request_id
}

#[tokio::test]
async fn codex_streams_text_and_a_tool_call_that_runs_once_allowed() {
    let c = codex(vec![touching(), turn("resp_2", message("msg_2", &["Done."]), 150, 5)]).await;
    let mut watch = c.h.create(task("Make the file")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(!c.repo.path().join("made-by-codex.txt").exists(), "nothing runs before the decision");
    assert!(c.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Allow)).await.unwrap());
    let done = watch.end(LONG).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(c.repo.path().join("made-by-codex.txt").exists(), "the allowed command ran in the repo");

    let events = &watch.events;
    let text = chunk_text(events, ChunkStream::Assistant);
    assert!(text.contains("I will create the file.") && text.ends_with("Done."), "{text}");
    let kinds: Vec<&str> = events.iter().map(TaskEvent::kind).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind}: {kinds:?}"));
    assert!(at("user_message") < at("permission_request"));
    assert!(at("permission_request") < at("permission_decision"));
    assert!(at("permission_decision") < at("tool_start") && at("tool_start") < at("tool_done"));
    assert_eq!(&kinds[kinds.len() - 3..], ["diff", "done", "status"]);
    let TaskEvent::ToolDone { tool_id, is_error, .. } = &events[at("tool_done")] else { unreachable!() };
    assert_eq!((tool_id.as_str(), *is_error), ("call_1", false));
    assert_eq!(done.summary.as_deref(), Some("Done."));
    // Codex can load its sessions, so the task names its session (a reply may resume it).
    assert!(done.session_id.is_some());
    // The command's result went back to the model.
    let requests = c.api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(
        tool_outputs(&requests[1]).iter().any(|o| o.contains("exited with code 0")),
        "{:?}",
        tool_outputs(&requests[1])
    );
    wait_until(Duration::from_secs(5), "codex-acp is gone", || processes_in(c.repo.path()).is_empty()).await;
}

#[tokio::test]
async fn a_denied_request_reaches_codex_which_gives_up_the_turn_and_a_reply_resumes_it() {
    let c = codex(vec![touching(), turn("resp_2", message("msg_2", &["Fine, I left it alone."]), 150, 8)]).await;
    let mut watch = c.h.create(task("Make the file")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(c.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Deny)).await.unwrap());
    let first = watch.end(LONG).await;
    // Codex's "No, and tell Codex what to do differently": the turn ends, cancelled by Codex.
    assert_eq!(first.status, TaskStatus::Cancelled, "{:#?}", watch.events);
    assert!(!c.repo.path().join("made-by-codex.txt").exists());
    assert!(!watch.events.iter().any(|e| matches!(e, TaskEvent::ToolDone { is_error: false, .. })));
    assert_eq!(c.api.requests.lock().unwrap().len(), 1, "the denied command's turn went no further");

    // The reply: a new turn that loads the session and goes on.
    let session = first.session_id.clone().expect("codex offers loadSession");
    let reply = NewTask {
        conversation_id: Some(first.conversation_id.clone()),
        parent_task_id: Some(first.id.clone()),
        ..task("Leave it then")
    };
    let mut reply = reply;
    reply.payload.resume_session_id = Some(session.clone());
    let mut watch = c.h.create(reply).await;
    let second = watch.end(LONG).await;
    assert_eq!(second.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert_eq!(second.summary.as_deref(), Some("Fine, I left it alone."));
    // The loaded history is not replayed into this turn's transcript.
    let text = chunk_text(&watch.events, ChunkStream::Assistant);
    assert!(!text.contains("I will create the file."), "{text}");
    let requests = c.api.requests.lock().unwrap().clone();
    let history = requests[1]["input"].to_string();
    assert!(history.contains("Make the file") && history.contains("Leave it then"), "the session was loaded");
}

#[tokio::test]
async fn cancel_ends_a_codex_turn() {
    let c = codex(vec![hanging("resp_1", &["Thinking hard "])]).await;
    let mut watch = c.h.create(task("Take your time")).await;
    watch
        .until(LONG, |e| matches!(e, TaskEvent::Chunk { text, .. } if text.contains("Thinking hard")).then_some(()))
        .await;
    c.h.runner.cancel(&watch.task.id).await.unwrap();
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled, "{:#?}", watch.events);
    wait_until(Duration::from_secs(5), "codex-acp is gone", || processes_in(c.repo.path()).is_empty()).await;
}
