//! What a task changed reaches the relay as one `diff` event (SPEC 12), through a real agent and
//! relay: a Claude task (real CLI, scripted API) that edits one file and adds another, and a
//! shell task that deletes one, writes a `.env` value into a new file (redacted in the patch)
//! and a file too big for one frame (the patch is cut and says so; the link goes on).

use std::time::Duration;

use flightdeck_protocol::event::{DiffFile, DiffStatus};
use flightdeck_protocol::{SeqEvent, TaskEvent, TaskStatus};
use serde_json::json;
use tokio::time::Instant;

use super::link_e2e::{rest_transcript, transcript_until_end, Setup, Viewer};
use crate::support::git;
use crate::support::scripted_api::{self, message_end, message_start, tool_block, ScriptedApi, Turn};

const WITHIN: Duration = Duration::from_secs(120);

/// A turn that calls one tool.
fn tool_turn(id: &str, tool_id: &str, name: &str, input: serde_json::Value) -> Turn {
    let mut events = vec![message_start(id, 100)];
    events.extend(tool_block(0, tool_id, name, input));
    events.extend(message_end("tool_use", 20));
    Turn::Stream(events)
}

/// The one `diff` of a transcript, checking it comes just before `done` when there is one.
fn the_diff(events: &[SeqEvent]) -> (Vec<DiffFile>, String, bool) {
    let at: Vec<usize> = events.iter().enumerate().filter(|(_, e)| e.event.kind() == "diff").map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "one diff event: {:?}", events.iter().map(|e| e.event.kind()).collect::<Vec<_>>());
    if let Some(done) = events.iter().position(|e| e.event.kind() == "done") {
        assert_eq!(done, at[0] + 1, "the diff comes just before done");
    }
    let TaskEvent::Diff { files, patch, truncated } = events[at[0]].event.clone() else { unreachable!() };
    (files, patch, truncated)
}

fn summary(files: &[DiffFile]) -> Vec<(String, DiffStatus, u64, u64)> {
    let mut out: Vec<_> = files.iter().map(|f| (f.path.clone(), f.status, f.additions, f.deletions)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_task_that_edits_and_adds_files_ends_with_their_diff() {
    let s = Setup::new().await;
    std::fs::write(s.repo.path().join("README.md"), "# demo\n").unwrap();
    git(s.repo.path(), &["add", "-A"]);
    git(s.repo.path(), &["commit", "-qm", "readme"]);
    // Claude's file tools take absolute paths.
    let path = |p: &str| s.repo.path().join(p).to_string_lossy().into_owned();
    let api = ScriptedApi::start(vec![
        tool_turn("msg_1", "toolu_01", "Read", json!({"file_path": path("README.md")})),
        tool_turn(
            "msg_2",
            "toolu_02",
            "Edit",
            json!({"file_path": path("README.md"), "old_string": "# demo", "new_string": "# Demo\n\nA repo with a README."}),
        ),
        tool_turn("msg_3", "toolu_03", "Write", json!({"file_path": path("docs/usage.md"), "content": "Run it.\nThen stop.\n"})),
        scripted_api::text_turn("msg_4", 100, &["Edited the README and added docs/usage.md."], 10),
    ])
    .await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;

    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "document the repo",
        "permissionMode": "acceptEdits"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let live = transcript_until_end(&mut viewer.ws, &id, Instant::now() + WITHIN).await.unwrap();
    let task = s.relay.wait_task(&id, "the claude task ends", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:?}", task.error);

    let (files, patch, truncated) = the_diff(&live);
    assert_eq!(
        summary(&files),
        vec![("README.md".into(), DiffStatus::Modified, 3, 1), ("docs/usage.md".into(), DiffStatus::Added, 2, 0)],
        "{patch}"
    );
    assert!(!truncated);
    assert!(patch.contains("-# demo") && patch.contains("+# Demo") && patch.contains("+Then stop."), "{patch}");
    assert_eq!(the_diff(&rest_transcript(&s.relay, &id).await).0, files, "the stored transcript has the same diff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_task_that_deletes_a_file_ends_with_a_redacted_capped_diff() {
    let s = Setup::new().await;
    let secret = "svc-Zq8Lm2Xv9Tb4Nw7Rk1Hs6Pd3";
    std::fs::write(s.repo.path().join(".env"), format!("SVC_TOKEN={secret}\n")).unwrap();
    std::fs::write(s.repo.path().join(".gitignore"), ".env\n").unwrap();
    std::fs::write(s.repo.path().join("old.txt"), "to be deleted\nsecond line\n").unwrap();
    git(s.repo.path(), &["add", "-A"]);
    git(s.repo.path(), &["commit", "-qm", "fixture"]);
    let _agent = s.agent(s.relay.http(), None);
    s.wait_repo_known().await;

    // A deleted file, a new file holding the repo's `.env` value, and 3 MiB of new text.
    let command = format!(
        "rm old.txt && printf 'token: %s\\n' '{secret}' > config.txt && seq -f 'generated line %.0f' 1 150000 > big.txt"
    );
    let body = json!({"executor": "shell", "repo": s.slug(), "payload": {"command": command}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{id}")]).await;
    let live = transcript_until_end(&mut viewer.ws, &id, Instant::now() + WITHIN).await.unwrap();
    let task = s.relay.wait_task(&id, "the shell task ends", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:?}", task.error);

    let (files, patch, truncated) = the_diff(&live);
    assert_eq!(
        summary(&files),
        vec![
            ("big.txt".into(), DiffStatus::Added, 150_000, 0),
            ("config.txt".into(), DiffStatus::Added, 1, 0),
            ("old.txt".into(), DiffStatus::Deleted, 0, 2),
        ]
    );
    assert!(truncated, "3 MiB of patch is cut");
    assert!(patch.len() <= flightdeck_protocol::event::MAX_DIFF_PATCH_BYTES);
    assert!(patch.contains("+generated line 1\n"), "the patch starts whole");
    let stored = serde_json::to_string(&rest_transcript(&s.relay, &id).await).unwrap();
    for text in [&patch, &stored] {
        assert!(!text.contains(secret), "the .env value reached the relay");
    }

    // The link carried the big event and goes on: a next task arrives whole.
    let body = json!({"executor": "shell", "repo": s.slug(), "payload": {"command": "rm config.txt big.txt"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let next = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{next}")]).await;
    let events = transcript_until_end(&mut viewer.ws, &next, Instant::now() + WITHIN).await.unwrap();
    // It deleted two files that were untracked when it started: against the commit it started
    // from, nothing changed.
    assert!(events.iter().all(|e| e.event.kind() != "diff"), "{events:?}");
    s.relay.wait_task(&next, "the next task ends", |t| t.status == TaskStatus::Completed).await;
}

/// An event too big for one frame (a 2 MiB `Write`) used to make the relay close the link
/// (1009) on every resend, so nothing after it ever arrived: it is sent cut, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_big_for_a_frame_does_not_hold_up_the_link() {
    let s = Setup::new().await;
    let content: String = (0..100_000).map(|i| format!("row {i:07} of a big file\n")).collect();
    assert!(content.len() > 2 * flightdeck_protocol::DEFAULT_MAX_FRAME_BYTES);
    let file = s.repo.path().join("big.txt").to_string_lossy().into_owned();
    let api = ScriptedApi::start(vec![
        tool_turn("msg_1", "toolu_01", "Write", json!({"file_path": file, "content": content})),
        scripted_api::text_turn("msg_2", 100, &["Wrote it."], 10),
    ])
    .await;
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let body = json!({"executor": "claude", "repo": s.slug(), "payload": {"prompt": "write a big file",
        "permissionMode": "acceptEdits"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let task = s.relay.wait_task(&id, "the task ends at the relay", |t| t.status.is_terminal()).await;
    assert_eq!(task.status, TaskStatus::Completed, "{:?}", task.error);
    let events = rest_transcript(&s.relay, &id).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=task.last_seq).collect::<Vec<_>>());
    let params = events
        .iter()
        .find_map(|e| match &e.event {
            TaskEvent::ToolStart { tool_name, params, .. } if tool_name == "Write" => Some(params.clone()),
            _ => None,
        })
        .expect("the Write call");
    let sent = params["content"].as_str().unwrap();
    assert!(sent.starts_with("row 0000000 of a big file\n"), "{}", &sent[..80]);
    assert!(sent.ends_with("the full text stays on the agent's machine]"), "{}", &sent[sent.len() - 120..]);
    assert_eq!(std::fs::read_to_string(s.repo.path().join("big.txt")).unwrap(), content, "Claude wrote it whole");
    assert!(the_diff(&events).2, "the diff of 2 MiB is truncated");
}
