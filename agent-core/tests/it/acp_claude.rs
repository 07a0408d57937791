//! Claude Code through ACP (`claude-code-acp`, tools/node_modules/.bin) as an `acp` task,
//! against the scripted Messages API the native Claude tests use: the same script gives the same
//! transcript shape as the `claude` executor (text, a Bash call asking for permission, allowed
//! through the runner's decide path, run in one of the client's terminals, its effect in the
//! repo, the final text).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_agent_core::acp::AcpAgents;
use flightdeck_agent_core::executor::{AcpConfig, Decision};
use flightdeck_agent_core::runner::{NewTask, RunnerConfig};
use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy};
use flightdeck_protocol::{Executor, TaskEvent, TaskPayload, TaskStatus};

use crate::support::scripted_api::{message_end, message_start, text_block, text_turn, tool_block, ScriptedApi, Turn};
use crate::support::{chunk_text, git_repo, processes_in, wait_until, Harness};

const LONG: Duration = Duration::from_secs(60);
const TOUCH: &str = "touch made-by-claude.txt";

fn claude_code_acp() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/claude-code-acp");
    assert!(bin.exists(), "claude-code-acp is not installed: run `npm ci` in tools/");
    bin
}

#[tokio::test]
async fn claude_through_acp_gives_the_transcript_shape_of_the_native_executor() {
    // With a client that offers terminals, claude-code-acp swaps Claude Code's Bash for its own
    // `mcp__acp__Bash`, which runs the command in one of the client's terminals.
    let mut first = vec![message_start("msg_01", 120)];
    first.extend(text_block(0, &["Let me ", "create the file."]));
    first.extend(tool_block(
        1,
        "toolu_01",
        "mcp__acp__Bash",
        serde_json::json!({"command": TOUCH, "description": "Create the file", "timeout": 60000}),
    ));
    first.extend(message_end("tool_use", 30));
    let api = ScriptedApi::start(vec![Turn::Stream(first), text_turn("msg_02", 150, &["All ", "done."], 5)]).await;
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut agents = AcpAgents::default();
    agents.add("claude-acp", &shlex::try_quote(claude_code_acp().to_str().unwrap()).unwrap()).unwrap();
    let env = vec![
        ("ANTHROPIC_BASE_URL".into(), api.url.clone()),
        ("ANTHROPIC_API_KEY".into(), "test".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(), "1".into()),
        ("HOME".into(), home.path().display().to_string()),
        // claude-code-acp starts Claude Code with its bypass mode available, which Claude Code
        // refuses to do as root (the test box and CI run as root) unless told it is sandboxed.
        ("IS_SANDBOX".into(), "1".into()),
    ];
    let acp = AcpConfig { agents, env, ..Default::default() };
    let h = Harness::start(RunnerConfig { acp, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());

    let payload =
        TaskPayload { prompt: Some("Make a file".into()), agent: Some("claude-acp".into()), ..Default::default() };
    let mut watch = h.create(NewTask::local("web", Executor::Acp, payload)).await;
    let (request_id, input) = watch
        .until(LONG, |e| match e {
            TaskEvent::PermissionRequest { request_id, input, .. } => Some((request_id.clone(), input.clone())),
            _ => None,
        })
        .await;
    assert!(input.to_string().contains(TOUCH), "{input}");
    watch.until_task(LONG, |t| t.status == TaskStatus::Waiting).await;
    let allow = Decision {
        request_id,
        behavior: Behavior::Allow,
        updated_input: None,
        message: None,
        decided_by: DecidedBy::Local,
    };
    assert!(h.runner.decide(&watch.task.id, allow).await.unwrap());
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(
        repo.path().join("made-by-claude.txt").exists(),
        "the allowed command ran in the repo: {:#?}",
        watch.events
    );

    // The native executor's transcript for this script: the prompt, the text, the tool asking and
    // running, the final text, the diff, done. The ACP one has the same steps in the same order.
    let events = &watch.events;
    assert_eq!(chunk_text(events, ChunkStream::Assistant), "Let me create the file.All done.");
    let kinds: Vec<&str> = events.iter().map(TaskEvent::kind).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind}: {kinds:?}"));
    assert_eq!(kinds[..3], ["status", "status", "user_message"]);
    assert!(at("user_message") < at("chunk") && at("chunk") < at("permission_request"), "{kinds:?}");
    assert!(at("permission_request") < at("permission_decision"), "{kinds:?}");
    assert!(at("tool_start") < at("tool_done") && at("permission_decision") < at("tool_done"), "{kinds:?}");
    assert_eq!(&kinds[kinds.len() - 3..], ["diff", "done", "status"], "{kinds:?}");
    assert_eq!(task.summary.as_deref(), Some("All done."));
    wait_until(Duration::from_secs(5), "claude-code-acp is gone", || processes_in(repo.path()).is_empty()).await;
}
