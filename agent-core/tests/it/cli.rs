//! `flightdeck-agent task` run as a real process.

use std::process::Command;

use flightdeck_agent_core::store::{Store, TaskFilter};
use flightdeck_protocol::event::{ChunkStream, TaskEventRecord};
use flightdeck_protocol::{TaskEvent, TaskStatus};

use crate::support::git_repo;

/// Runs `flightdeck-agent task --json` with `args`; returns the exit code and the parsed lines.
fn run_task(data: &std::path::Path, args: &[&str]) -> (i32, Vec<TaskEventRecord>, String) {
    let repo = git_repo();
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(["task", "--json", "--repo"])
        .arg(repo.path())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        // No real settings file or environment leaks in.
        .env("XDG_CONFIG_HOME", data.join("config"))
        .env_remove("FLIGHTDECK_AGENT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let records = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<TaskEventRecord>(l).unwrap_or_else(|e| panic!("{l:?} is not a TaskEventRecord: {e}"))
        })
        .collect();
    (out.status.code().unwrap(), records, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn task_json_prints_one_record_per_line_and_exits_by_status() {
    let data = tempfile::tempdir().unwrap();
    let status = |s| TaskEvent::Status { status: s, model: None, session_id: None };
    let cases = [
        (
            vec!["--shell", "echo hello"],
            0,
            vec![
                status(TaskStatus::Queued),
                status(TaskStatus::Running),
                TaskEvent::Chunk { text: "hello\n".into(), stream: ChunkStream::Stdout },
                TaskEvent::Done { summary: "hello".into() },
                status(TaskStatus::Completed),
            ],
        ),
        (
            vec!["--shell", "echo bad >&2; exit 7"],
            1,
            vec![
                status(TaskStatus::Queued),
                status(TaskStatus::Running),
                TaskEvent::Chunk { text: "bad\n".into(), stream: ChunkStream::Stderr },
                TaskEvent::Error { error: "command failed: exit code 7".into() },
                status(TaskStatus::Failed),
            ],
        ),
        (
            vec!["--shell", "sleep 30", "--timeout", "1"],
            1,
            vec![
                status(TaskStatus::Queued),
                status(TaskStatus::Running),
                TaskEvent::Error { error: "timed out after 1 s".into() },
                status(TaskStatus::Failed),
            ],
        ),
    ];
    let mut ids = Vec::new();
    for (args, code, events) in cases {
        let (got_code, records, stderr) = run_task(data.path(), &args);
        assert_eq!(got_code, code, "{args:?}: {stderr}");
        let task_id = records[0].task_id.clone();
        assert!(records.iter().all(|r| r.task_id == task_id));
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
        assert_eq!(records.into_iter().map(|r| r.event).collect::<Vec<_>>(), events, "{args:?}");
        ids.push(task_id);
    }
    // Every run is recorded in the data directory.
    let store = Store::open(data.path()).unwrap();
    let statuses: Vec<TaskStatus> = ids.iter().map(|id| store.task(id).unwrap().unwrap().status).collect();
    assert_eq!(statuses, [TaskStatus::Completed, TaskStatus::Failed, TaskStatus::Failed]);
}

#[test]
fn task_needs_exactly_one_of_claude_and_shell() {
    let data = tempfile::tempdir().unwrap();
    for args in [vec![], vec!["--shell", "true", "--claude", "hi"]] {
        let (code, records, stderr) = run_task(data.path(), &args);
        assert_eq!(code, 2, "{args:?}: a usage error");
        assert!(records.is_empty() && stderr.contains("Usage"), "{stderr}");
    }
}

// `flightdeck-agent run` with no repo named, started inside a working tree (a subdirectory of
// it, here), watches that repo and says so; it used to watch nothing.
#[test]
fn run_without_a_repo_watches_the_repo_it_is_started_in() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let repo = git_repo();
    let inside = repo.path().join("src");
    std::fs::create_dir_all(&inside).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(["run", "--data-dir"])
        .arg(data.path())
        .current_dir(&inside)
        .env("XDG_CONFIG_HOME", data.path().join("config"))
        .env_remove("FLIGHTDECK_AGENT_CONFIG")
        .env_remove("FLIGHTDECK_AGENT_REPOS")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    // Lines come as the agent starts; the status line says how many repos it watches.
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("1 repo watched") {
            break;
        }
        assert!(!line.contains("0 repos watched"), "{seen:#?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let root = repo.path().canonicalize().unwrap();
    assert!(
        seen.iter().any(|l| l.contains(&format!("watching {}", root.display()))),
        "it says which repo it watches: {seen:#?}"
    );
    assert!(seen.iter().any(|l| l.contains("1 repo watched")), "{seen:#?}");
}

/// A reader that has gone (`| head`, `| grep -q`) is not an error: `hooks status` exits 0
/// quietly instead of panicking, and `task` runs its task to the end unprinted and exits by
/// its status (the task is recorded whole).
#[test]
fn output_into_a_closed_pipe_is_not_an_error() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let repo = git_repo();
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let agent = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", data.path().join("config"))
            .env_remove("FLIGHTDECK_AGENT_CONFIG")
            .stdout(closed())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let repo_arg = repo.path().to_str().unwrap();
    for (args, code) in [
        (vec!["hooks", "status"], 0),
        (vec!["task", "--json", "--repo", repo_arg, "--shell", "seq 1 3000"], 0),
        (vec!["task", "--repo", repo_arg, "--shell", "seq 1 3000; exit 3"], 1),
    ] {
        let out = agent(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    let store = Store::open(data.path()).unwrap();
    let (tasks, _) = store.tasks(&TaskFilter { limit: 10, ..TaskFilter::default() }).unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for task in tasks {
        let events = store.events_after(&task.id, 0, u32::MAX).unwrap();
        let printed: String = events
            .iter()
            .filter_map(|e| match &e.event {
                TaskEvent::Chunk { text, stream: ChunkStream::Stdout } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(printed.lines().count(), 3000, "every line recorded: {task:?}");
    }
}
