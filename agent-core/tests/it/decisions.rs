//! Conversations and decisions (SPEC 8) against the real Claude Code CLI and a scripted
//! Messages API: a Bash command outside the task's permissions waits for a decision (allowed,
//! denied, or denied by the decision timeout), and a reply resumes the session.

use std::time::Duration;

use flightdeck_agent_core::executor::Decision;
use flightdeck_agent_core::runner::NewTask;
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::{AlertKind, Executor, TaskEvent, TaskPayload, TaskStatus};

use crate::claude::{claude_bin, harness};
use crate::support::scripted_api::{bash_turn, text_turn, ScriptedApi, Turn};
use crate::support::{git_repo, Harness, TaskWatch};

const LONG: Duration = Duration::from_secs(60);
const TOUCH: &str = "touch made-by-claude.txt";

/// A scripted API whose first turn asks to run `touch` and whose second says `then`, a runner
/// whose Claude Code talks to it, and a repo `web`.
struct Touching {
    api: ScriptedApi,
    h: Harness,
    repo: tempfile::TempDir,
    _home: tempfile::TempDir,
}

async fn touching(then: &str) -> Touching {
    let mut turns = vec![bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20)];
    if !then.is_empty() {
        turns.push(text_turn("msg_2", 150, &[then], 5));
    }
    scripted(turns).await
}

async fn scripted(turns: Vec<Turn>) -> Touching {
    let api = ScriptedApi::start(turns).await;
    let home = tempfile::tempdir().unwrap();
    let h = harness(&api, home.path()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    Touching { api, h, repo, _home: home }
}

/// A prompt whose permission mode lets nothing run without asking.
fn asking(prompt: &str) -> TaskPayload {
    TaskPayload { prompt: Some(prompt.into()), model: Some("claude-sonnet-4-5".into()), ..Default::default() }
}

/// Waits for the task's permission request; returns its id, and checks the task is `waiting`
/// with a `needs_input` alert.
async fn wait_for_request(watch: &mut TaskWatch) -> String {
    let (request_id, tool, input) = watch
        .until(LONG, |e| match e {
            TaskEvent::PermissionRequest { request_id, tool_name, input, .. } => {
                Some((request_id.clone(), tool_name.clone(), input.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(tool, "Bash");
    assert_eq!(input["command"], TOUCH);
    // The task's state follows the event (published right after it).
    watch.until_task(LONG, |t| t.status == TaskStatus::Waiting).await;
    assert!(watch.task.waiting_since.is_some());
    let alert = watch.alerts.iter().find(|a| a.kind == AlertKind::NeedsInput).expect("a needs_input alert");
    assert!(alert.message.contains("Bash"), "{}", alert.message);
    assert!(!alert.acknowledged);
    request_id
}

fn decision(request_id: &str, behavior: Behavior, message: Option<&str>) -> Decision {
    Decision {
        request_id: request_id.into(),
        behavior,
        updated_input: None,
        message: message.map(String::from),
        decided_by: DecidedBy::Local,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_command_runs_and_the_task_completes() {
    let t = touching("Made it.").await;
    let mut watch = t.h.create(NewTask::local("web", Executor::Claude, asking("make the file"))).await;
    let request_id = wait_for_request(&mut watch).await;
    assert!(!t.repo.path().join("made-by-claude.txt").exists(), "nothing runs before the decision");

    assert!(!t.h.runner.decide(&watch.task.id, decision("no-such-request", Behavior::Allow, None)).await.unwrap());
    assert!(t.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Allow, None)).await.unwrap());
    assert!(
        !t.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Allow, None)).await.unwrap(),
        "a request is decided once"
    );
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(t.repo.path().join("made-by-claude.txt").exists(), "the tool ran after the allow");
    assert!(watch.events.contains(&TaskEvent::PermissionDecision {
        request_id: request_id.clone(),
        behavior: Behavior::Allow,
        message: None,
        updated_input: None,
        decided_by: DecidedBy::Local,
    }));
    // The turn's prompt is the first event after `status running`.
    let running = watch.events.iter().position(|e| matches!(e, TaskEvent::Status { status: TaskStatus::Running, .. }));
    assert_eq!(watch.events[running.unwrap() + 1], TaskEvent::UserMessage { text: "make the file".into() });
    assert!(
        watch.alerts.iter().any(|a| a.kind == AlertKind::NeedsInput && a.acknowledged),
        "acknowledged when decided"
    );
    assert!(task.session_id.is_some(), "the session id is kept for a follow-up");
    assert_eq!(task.waiting_since, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_command_does_not_run_and_claude_hears_why() {
    let t = touching("Understood, I will not.").await;
    let mut watch = t.h.create(NewTask::local("web", Executor::Claude, asking("make the file"))).await;
    let request_id = wait_for_request(&mut watch).await;
    let why = "not in this repository, please";
    assert!(t.h.runner.decide(&watch.task.id, decision(&request_id, Behavior::Deny, Some(why))).await.unwrap());
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    assert!(!t.repo.path().join("made-by-claude.txt").exists(), "a denied tool does not run");
    let requests = t.api.message_requests();
    assert_eq!(requests.len(), 2, "Claude was asked again after the denial");
    assert!(requests[1].body.to_string().contains(why), "the deny message reaches Claude");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_deciding_within_the_timeout_denies() {
    let t = touching("Nobody answered.").await;
    let payload = TaskPayload { decision_timeout_secs: Some(1), ..asking("make the file") };
    let mut watch = t.h.create(NewTask::local("web", Executor::Claude, payload)).await;
    let request_id = wait_for_request(&mut watch).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", watch.events);
    let decided = watch.events.iter().find_map(|e| match e {
        TaskEvent::PermissionDecision { request_id: r, behavior, decided_by, .. } if *r == request_id => {
            Some((*behavior, *decided_by))
        }
        _ => None,
    });
    assert_eq!(decided, Some((Behavior::Deny, DecidedBy::Timeout)));
    assert!(!t.repo.path().join("made-by-claude.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_resumes_the_session() {
    let t = scripted(vec![
        text_turn("msg_1", 100, &["The answer is 42."], 5),
        text_turn("msg_2", 150, &["You asked about 42."], 5),
    ])
    .await;
    let mut first = t.h.create(NewTask::local("web", Executor::Claude, asking("what is the answer?"))).await;
    let first_task = first.end(LONG).await;
    assert_eq!(first_task.status, TaskStatus::Completed);
    assert_eq!(first_task.conversation_id, first_task.id, "a first turn is its own conversation");
    let session = first_task.session_id.clone().expect("the session id");

    let payload = TaskPayload { resume_session_id: Some(session.clone()), ..asking("what did I ask?") };
    let reply = NewTask {
        conversation_id: Some(first_task.id.clone()),
        parent_task_id: Some(first_task.id.clone()),
        ..NewTask::local("web", Executor::Claude, payload)
    };
    let mut second = t.h.create(reply).await;
    let second_task = second.end(LONG).await;
    assert_eq!(second_task.status, TaskStatus::Completed, "{:#?}", second.events);
    assert_eq!(second_task.conversation_id, first_task.id);
    assert_eq!(second_task.parent_task_id.as_deref(), Some(first_task.id.as_str()));
    assert_eq!(second_task.session_id.as_deref(), Some(session.as_str()), "the same Claude session");
    let requests = t.api.message_requests();
    let last = requests.last().unwrap().body.to_string();
    assert!(
        last.contains("what is the answer?") && last.contains("The answer is 42."),
        "earlier turns are resumed: {last}"
    );
}

// `flightdeck-agent task` has nobody else to ask: run unattended (stdin not a terminal), a
// request is denied by policy at once instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattended_one_off_task_denies_by_policy() {
    let api = ScriptedApi::start(vec![
        bash_turn("msg_1", 100, &["I will make the file."], "toolu_01", TOUCH, 20),
        text_turn("msg_2", 150, &["I was not allowed."], 5),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let repo = git_repo();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"));
    cmd.args(["task", "--repo"])
        .arg(repo.path())
        .args(["--claude", "make the file", "--json", "--data-dir"])
        .arg(data.path())
        .env("FLIGHTDECK_CLAUDE_BIN", claude_bin())
        .env("ANTHROPIC_BASE_URL", &api.url)
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let decision = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"]["kind"] == "permission_decision")
        .expect("a decision in the output");
    assert_eq!(decision["event"]["behavior"], "deny");
    assert_eq!(decision["event"]["decidedBy"], "policy");
    assert!(!repo.path().join("made-by-claude.txt").exists());
}

// A waiting task can be cancelled: its CLI is stopped and its needs_input alert acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_can_be_cancelled() {
    let t = touching("").await;
    let mut watch = t.h.create(NewTask::local("web", Executor::Claude, asking("make the file"))).await;
    let request_id = wait_for_request(&mut watch).await;
    t.h.runner.cancel(&watch.task.id).await.unwrap();
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert!(!t.repo.path().join("made-by-claude.txt").exists());
    assert!(
        !t.h.runner.decide(&task.id, decision(&request_id, Behavior::Allow, None)).await.unwrap(),
        "nothing pending"
    );
    let store = t.h.runner.store();
    let alerts = store.alerts(&Default::default()).unwrap().0;
    assert!(alerts.iter().filter(|a| a.kind == AlertKind::NeedsInput).all(|a| a.acknowledged), "{alerts:#?}");
}
