//! OpenCode (`opencode acp`, the binary of npm `opencode-linux-x64`, installed by `npm ci` in
//! tools/) as an `acp` task, against a scripted OpenAI-compatible Chat Completions API on
//! 127.0.0.1 (an `@ai-sdk/openai-compatible` provider in a temp XDG config's opencode.json, with
//! OpenCode's network fetches turned off): a task streams its text and a tool call, a permission
//! request allowed through the runner's decide path runs the command in the repo, a deny reaches
//! OpenCode (the call fails and the turn ends), cancel ends it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_agent_core::acp::AcpAgents;
use flightdeck_agent_core::executor::AcpConfig;
use flightdeck_agent_core::runner::{NewTask, RunnerConfig};
use flightdeck_protocol::event::{Behavior, ChunkStream};
use flightdeck_protocol::{AlertKind, Executor, TaskEvent, TaskPayload, TaskStatus};

use crate::support::scripted_chat::{bash, hanging, text, text_turn, tool_results, turn, ScriptedChat, Turn};
use crate::support::{chunk_text, decision, git_repo, processes_in, wait_until, Harness, TaskWatch};

/// OpenCode (a Bun program of 180 MB) starts slowly on a busy machine: with the suite beside it
/// on two cores, `initialize` alone took 20 s and the first permission request came 48 s after the
/// start. Bounds, not waits.
const LONG: Duration = Duration::from_secs(180);
const TOUCH: &str = "touch made-by-opencode.txt";

/// OpenCode's own binary. tools/ installs the build the `opencode-ai` wrapper would pick on Linux
/// x64 (`opencode-linux-x64`, an optional dependency) rather than the wrapper: the registry this
/// project installs from serves only the wrapper's Linux x64 packages, so `npm install` leaves
/// its other platforms' optional packages out of the lock, and `npm ci` then refuses the lock.
fn opencode() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/opencode-linux-x64/bin/opencode");
    assert!(bin.exists(), "opencode is not installed: run `npm ci` in tools/ (on Linux x64)");
    bin
}

/// A scripted API, a runner whose `opencode` is `opencode acp` pointed at it, and a repo `web`.
struct OpenCode {
    api: ScriptedChat,
    h: Harness,
    repo: tempfile::TempDir,
    _home: tempfile::TempDir,
}

async fn opencode_against(turns: Vec<Turn>) -> OpenCode {
    let api = ScriptedChat::start(turns).await;
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config_dir = home.path().join("config/opencode");
    std::fs::create_dir_all(&config_dir).unwrap();
    // Commands and edits ask; OpenCode's own provider and plugins stay off the network.
    let config = serde_json::json!({
        "model": "scripted/scripted-model",
        "provider": {"scripted": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Scripted",
            "options": {"baseURL": api.url, "apiKey": "test"},
            "models": {"scripted-model": {"name": "Scripted model", "tool_call": true}}
        }},
        "permission": {"bash": "ask", "edit": "ask"},
        "autoupdate": false,
        "share": "disabled"
    });
    std::fs::write(config_dir.join("opencode.json"), config.to_string()).unwrap();
    let mut agents = AcpAgents::default();
    agents.add("opencode", &format!("{} acp", shlex::try_quote(opencode().to_str().unwrap()).unwrap())).unwrap();
    let dir = |name: &str| home.path().join(name).display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), home.path().display().to_string()),
        ("XDG_CONFIG_HOME".into(), dir("config")),
        ("XDG_DATA_HOME".into(), dir("data")),
        ("XDG_CACHE_HOME".into(), dir("cache")),
        ("XDG_STATE_HOME".into(), dir("state")),
    ];
    for flag in ["MODELS_FETCH", "AUTOUPDATE", "DEFAULT_PLUGINS", "LSP_DOWNLOAD", "SHARE"] {
        env.push((format!("OPENCODE_DISABLE_{flag}"), "1".into()));
    }
    let acp = AcpConfig { agents, env, handshake_timeout: LONG };
    let h = Harness::start(RunnerConfig { acp, kill_grace: Duration::from_secs(2), ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    OpenCode { api, h, repo, _home: home }
}

fn task(prompt: &str) -> NewTask {
    let payload = TaskPayload { prompt: Some(prompt.into()), agent: Some("opencode".into()), ..Default::default() };
    NewTask::local("web", Executor::Acp, payload)
}

/// The first answer: says it will make the file, streamed, then runs `touch`.
fn touching() -> Turn {
    let mut chunks = text(&["I will create ", "the file."]);
    chunks.extend(bash("call_1", TOUCH));
    turn(chunks, 100, 20)
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
    assert!(alert.message.contains("opencode wants to use touch"), "{}", alert.message);
    request_id
}

#[tokio::test]
async fn opencode_streams_text_and_a_tool_call_that_runs_once_allowed() {
    let o = opencode_against(vec![touching(), text_turn(&["Done."], 150, 5)]).await;
    let mut watch = o.h.create(task("Make the file")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(!o.repo.path().join("made-by-opencode.txt").exists(), "nothing runs before the decision");
    assert!(o.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Allow)).await.unwrap());
    let done = watch.end(LONG).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(o.repo.path().join("made-by-opencode.txt").exists(), "the allowed command ran in the repo");

    let events = &watch.events;
    let text = chunk_text(events, ChunkStream::Assistant);
    assert!(text.starts_with("I will create the file.") && text.ends_with("Done."), "{text}");
    let kinds: Vec<&str> = events.iter().map(TaskEvent::kind).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind}: {kinds:?}"));
    assert!(at("user_message") < at("chunk") && at("chunk") < at("tool_start"), "{kinds:?}");
    assert!(at("permission_request") < at("permission_decision"), "{kinds:?}");
    assert!(at("permission_decision") < at("tool_done"), "{kinds:?}");
    assert_eq!(&kinds[kinds.len() - 3..], ["diff", "done", "status"], "{kinds:?}");
    let TaskEvent::ToolDone { tool_id, is_error, .. } = &events[at("tool_done")] else { unreachable!() };
    assert_eq!((tool_id.as_str(), *is_error), ("call_1", false));
    assert_eq!(done.summary.as_deref(), Some("Done."));
    // The command's result went back to the model, in the second (and last) scripted request.
    let requests = o.api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(tool_results(&requests[1]).len(), 1, "{}", requests[1]);
    wait_until(Duration::from_secs(5), "opencode is gone", || processes_in(o.repo.path()).is_empty()).await;
}

#[tokio::test]
async fn a_denied_request_reaches_opencode_whose_call_fails_and_turn_ends() {
    let o = opencode_against(vec![touching(), text_turn(&["Never asked for."], 150, 5)]).await;
    let mut watch = o.h.create(task("Make the file")).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(o.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Deny)).await.unwrap());
    let done = watch.end(LONG).await;
    // OpenCode ends the turn on a rejection, the call failed with the user's refusal.
    assert_eq!(done.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(!o.repo.path().join("made-by-opencode.txt").exists());
    let failed = watch
        .events
        .iter()
        .find_map(|e| match e {
            TaskEvent::ToolDone { tool_id, output, is_error: true } if tool_id == "call_1" => Some(output.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the call failed: {:#?}", watch.events));
    assert!(failed.contains("rejected"), "{failed}");
    assert_eq!(o.api.requests.lock().unwrap().len(), 1, "the denied command's turn went no further");
}

#[tokio::test]
async fn cancel_ends_an_opencode_turn() {
    let o = opencode_against(vec![hanging(&["Thinking hard "])]).await;
    let mut watch = o.h.create(task("Take your time")).await;
    watch
        .until(LONG, |e| matches!(e, TaskEvent::Chunk { text, .. } if text.contains("Thinking hard")).then_some(()))
        .await;
    o.h.runner.cancel(&watch.task.id).await.unwrap();
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled, "{:#?}", watch.events);
    wait_until(Duration::from_secs(5), "opencode is gone", || processes_in(o.repo.path()).is_empty()).await;
}
