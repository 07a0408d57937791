//! Task runner, shell executor and store tests: real processes in real git repos.

use std::time::Duration;

use flightdeck_agent_core::runner::{NewTask, RunnerConfig, TaskRunner};
use flightdeck_agent_core::store::{Store, TaskFilter};
use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{
    AlertKind, Executor, SeqEvent, Severity, Task, TaskEvent, TaskPayload, TaskSource, TaskStatus,
};

use crate::support::{chunk_text, git, git_repo, group_members, wait_until, Harness, TaskWatch};

const LONG: Duration = Duration::from_secs(20);

fn shell(command: &str) -> TaskPayload {
    TaskPayload { command: Some(command.into()), ..Default::default() }
}

fn status_event(status: TaskStatus) -> TaskEvent {
    TaskEvent::Status { status, model: None, session_id: None }
}

fn chunk(text: &str, stream: ChunkStream) -> TaskEvent {
    TaskEvent::Chunk { text: text.into(), stream }
}

#[tokio::test]
async fn shell_tasks_stream_output_and_end_by_exit_code() {
    let h = Harness::start(RunnerConfig { max_running_per_repo: 4, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    let cwd = repo.path().canonicalize().unwrap().display().to_string();
    let cases: Vec<(&str, TaskStatus, Vec<TaskEvent>)> = vec![
        (
            "echo one; echo two >&2; pwd",
            TaskStatus::Completed,
            vec![
                status_event(TaskStatus::Queued),
                status_event(TaskStatus::Running),
                chunk("one\n", ChunkStream::Stdout),
                chunk("two\n", ChunkStream::Stderr),
                chunk(&format!("{cwd}\n"), ChunkStream::Stdout),
                TaskEvent::Done { summary: cwd.clone() },
                status_event(TaskStatus::Completed),
            ],
        ),
        (
            "echo failing; exit 3",
            TaskStatus::Failed,
            vec![
                status_event(TaskStatus::Queued),
                status_event(TaskStatus::Running),
                chunk("failing\n", ChunkStream::Stdout),
                TaskEvent::Error { error: "command failed: exit code 3".into() },
                status_event(TaskStatus::Failed),
            ],
        ),
        (
            "true",
            TaskStatus::Completed,
            vec![
                status_event(TaskStatus::Queued),
                status_event(TaskStatus::Running),
                TaskEvent::Done { summary: "exit code 0".into() },
                status_event(TaskStatus::Completed),
            ],
        ),
        (
            "kill -9 $$",
            TaskStatus::Failed,
            vec![
                status_event(TaskStatus::Queued),
                status_event(TaskStatus::Running),
                TaskEvent::Error { error: "command failed: killed by signal 9".into() },
                status_event(TaskStatus::Failed),
            ],
        ),
    ];
    // Stderr and stdout are separate pipes, so only the order within each stream is
    // guaranteed: compare each stream and the rest separately.
    let split = |events: &[TaskEvent]| {
        let rest: Vec<TaskEvent> = events.iter().filter(|e| !matches!(e, TaskEvent::Chunk { .. })).cloned().collect();
        (chunk_text(events, ChunkStream::Stdout), chunk_text(events, ChunkStream::Stderr), rest)
    };
    for (command, want_status, want_events) in cases {
        let mut watch = h.create(NewTask::local("web", Executor::Shell, shell(command))).await;
        assert_eq!(watch.task.status, TaskStatus::Queued);
        assert_eq!(watch.task.title, command);
        let task = watch.end(LONG).await;
        assert_eq!(task.status, want_status, "{command}");
        assert_eq!(split(&watch.events), split(&want_events), "{command}");
        assert!(task.started_at.is_some() && task.finished_at.is_some());
        // The database has the same task and transcript.
        assert_eq!(h.runner.store().task(&task.id).unwrap().unwrap(), task);
        let transcript: Vec<TaskEvent> =
            h.runner.store().transcript(&task.id).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(transcript, watch.events);
        if want_status == TaskStatus::Failed {
            assert_eq!(watch.alerts.len(), 1, "{command}");
            assert_eq!((watch.alerts[0].kind, watch.alerts[0].severity), (AlertKind::TaskFailed, Severity::Warning));
        } else {
            assert!(watch.alerts.is_empty(), "{command}: {:?}", watch.alerts);
        }
    }
}

/// Waits for the first stdout line that is a number: the pid the command printed with `echo $$`.
async fn printed_pid(watch: &mut TaskWatch) -> i32 {
    watch
        .until(LONG, |e| match e {
            TaskEvent::Chunk { text, stream: ChunkStream::Stdout } => text.trim().parse::<i32>().ok(),
            _ => None,
        })
        .await
}

async fn wait_group_gone(pgid: i32) {
    wait_until(Duration::from_secs(5), &format!("process group {pgid} is gone"), || group_members(pgid).is_empty())
        .await;
}

#[tokio::test]
async fn cancel_and_timeout_kill_the_whole_process_group() {
    let h = Harness::start(RunnerConfig { max_running_per_repo: 4, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    // A child, and a grandchild in a nested shell, all sleeping; the shell waits for them.
    let command = "sh -c 'sleep 300; echo never' & sleep 300 & echo $$; wait";

    // Cancel.
    let mut watch = h.create(NewTask::local("web", Executor::Shell, shell(command))).await;
    let pgid = printed_pid(&mut watch).await;
    wait_until(LONG, "the group has its 4 processes", || group_members(pgid).len() >= 4).await;
    let cancelled = h.runner.cancel(&watch.task.id).await.unwrap().unwrap();
    assert_eq!(cancelled.id, watch.task.id);
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(watch.events.last(), Some(&status_event(TaskStatus::Cancelled)));
    assert!(!watch.events.iter().any(|e| matches!(e, TaskEvent::Done { .. } | TaskEvent::Error { .. })));
    assert!(watch.alerts.is_empty(), "a cancel is not a failure");
    wait_group_gone(pgid).await;

    // Timeout.
    let payload = TaskPayload { timeout_secs: Some(1), ..shell(command) };
    let mut watch = h.create(NewTask::local("web", Executor::Shell, payload)).await;
    let pgid = printed_pid(&mut watch).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.as_deref(), Some("timed out after 1 s"));
    assert_eq!(
        watch.events[watch.events.len() - 2..],
        [TaskEvent::Error { error: "timed out after 1 s".into() }, status_event(TaskStatus::Failed)]
    );
    wait_group_gone(pgid).await;

    // Cancelling a finished task changes nothing; an unknown one is None.
    assert_eq!(h.runner.cancel(&task.id).await.unwrap().unwrap().status, TaskStatus::Failed);
    assert_eq!(h.runner.cancel("no-such-task").await.unwrap(), None);
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let grace = Duration::from_millis(800);
    let h = Harness::start(RunnerConfig { kill_grace: grace, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    // `trap '' TERM` is inherited: the shell and its sleep both ignore SIGTERM.
    let mut watch =
        h.create(NewTask::local("web", Executor::Shell, shell("trap '' TERM; sleep 300 & echo $$; wait"))).await;
    let pgid = printed_pid(&mut watch).await;
    wait_until(LONG, "the group has its 2 processes", || group_members(pgid).len() >= 2).await;
    let asked = tokio::time::Instant::now();
    h.runner.cancel(&watch.task.id).await.unwrap();
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert!(asked.elapsed() >= grace, "SIGKILL came before the grace period: {:?}", asked.elapsed());
    wait_group_gone(pgid).await;
}

#[tokio::test]
async fn the_queue_keeps_per_repo_and_global_limits() {
    let h = Harness::start(RunnerConfig { max_running: 2, max_running_per_repo: 1, ..Default::default() }).await;
    let (web, api, docs) = (git_repo(), git_repo(), git_repo());
    h.add_repo("web", web.path());
    h.add_repo("api", api.path());
    h.add_repo("docs", docs.path());
    // Each task runs until its `go` file exists.
    let gated = "echo started; while [ ! -f go ]; do sleep 0.02; done";
    let mut web1 = h.create(NewTask::local("web", Executor::Shell, shell(gated))).await;
    let mut web2 = h.create(NewTask::local("web", Executor::Shell, shell(gated))).await;
    let mut api1 = h.create(NewTask::local("api", Executor::Shell, shell(gated))).await;
    let mut docs1 = h.create(NewTask::local("docs", Executor::Shell, shell(gated))).await;
    let started = |e: &TaskEvent| matches!(e, TaskEvent::Chunk { text, .. } if text == "started\n").then_some(());
    web1.until(LONG, started).await;
    api1.until(LONG, started).await;
    let status = |id: &str| h.runner.store().task(id).unwrap().unwrap().status;
    // web2 waits for web1 (same repo), docs1 for a free slot (global limit 2).
    assert_eq!(status(&web2.task.id), TaskStatus::Queued);
    assert_eq!(status(&docs1.task.id), TaskStatus::Queued);

    // Cancelling a queued task ends it at once, without running it.
    let cancelled = h.runner.cancel(&docs1.task.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    docs1.end(LONG).await;
    assert_eq!(docs1.events, vec![status_event(TaskStatus::Queued), status_event(TaskStatus::Cancelled)]);
    assert_eq!(docs1.task.started_at, None);

    std::fs::write(web.path().join("go"), "").unwrap();
    let web1_task = web1.end(LONG).await;
    web2.until(LONG, started).await;
    std::fs::write(api.path().join("go"), "").unwrap();
    let web2_task = web2.end(LONG).await;
    api1.end(LONG).await;
    assert_eq!(web2_task.status, TaskStatus::Completed);
    assert!(web2_task.started_at.unwrap() >= web1_task.finished_at.unwrap(), "web2 overlapped web1");

    // The list queries see them all.
    let (tasks, total) =
        h.runner.store().tasks(&TaskFilter { repo: Some("web".into()), ..Default::default() }).unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![web2.task.id.clone(), web1.task.id.clone()]
    );
    let (_, cancelled) =
        h.runner.store().tasks(&TaskFilter { status: Some(TaskStatus::Cancelled), ..Default::default() }).unwrap();
    assert_eq!(cancelled, 1);
}

#[tokio::test]
async fn tasks_start_in_order_and_a_freed_slot_is_taken_at_once() {
    let h = Harness::start(RunnerConfig { max_running_per_repo: 1, ..Default::default() }).await;
    let (web, api) = (git_repo(), git_repo());
    h.add_repo("web", web.path());
    h.add_repo("api", api.path());
    for _ in 0..5 {
        let mut first = h.create(NewTask::local("web", Executor::Shell, shell("true"))).await;
        first.end(LONG).await;
        // Once a task's final state is published its slot is free: the next task of its repo
        // starts at once, before a task of another repo created just after it.
        let mut rx = h.runner.subscribe();
        let b = h.runner.create(NewTask::local("web", Executor::Shell, shell("true"))).await.unwrap();
        let c = h.runner.create(NewTask::local("api", Executor::Shell, shell("true"))).await.unwrap();
        let mut started = Vec::new();
        while started.len() < 2 {
            let event = tokio::time::timeout(LONG, rx.recv()).await.unwrap().unwrap();
            if let flightdeck_agent_core::runner::RunnerEvent::Task(t) = event {
                if t.status == TaskStatus::Running {
                    started.push(t.id);
                }
            }
        }
        assert_eq!(started, [b.id, c.id]);
    }
}

#[tokio::test]
async fn tasks_that_cannot_run_fail_and_remote_ids_are_kept() {
    let h = Harness::start(RunnerConfig::default()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    let cases = [
        (
            NewTask::local("nowhere", Executor::Shell, shell("true")),
            "unknown repo `nowhere`: it is not watched by this agent",
        ),
        (
            NewTask::local("web", Executor::Shell, TaskPayload::default()),
            "invalid payload.command: a shell task needs a command",
        ),
        (
            NewTask::local("web", Executor::Claude, TaskPayload::default()),
            "invalid payload.prompt: a claude task needs a prompt",
        ),
    ];
    for (new, error) in cases {
        let mut watch = h.create(new).await;
        let task = watch.end(LONG).await;
        assert_eq!((task.status, task.error.as_deref()), (TaskStatus::Failed, Some(error)));
        assert_eq!(
            watch.events,
            vec![
                status_event(TaskStatus::Queued),
                TaskEvent::Error { error: error.into() },
                status_event(TaskStatus::Failed)
            ]
        );
    }

    // A remote task keeps the relay's id, and a resend does not run it twice.
    let remote = NewTask::remote("0190c4c8-0000-7000-8000-000000000001", "web", Executor::Shell, shell("echo remote"));
    let mut watch = h.create(remote.clone()).await;
    assert_eq!(watch.task.id, "0190c4c8-0000-7000-8000-000000000001");
    assert_eq!(watch.task.source, TaskSource::Remote);
    watch.end(LONG).await;
    let again = h.runner.create(remote).await.unwrap();
    assert_eq!(again.status, TaskStatus::Completed);
    assert_eq!(again.last_seq, watch.task.last_seq);
}

fn stored_task(id: &str, status: TaskStatus, last_seq: u64) -> Task {
    Task {
        title: format!("task {id}"),
        status,
        last_seq,
        ..Task::queued(id, "", "web", Executor::Shell, shell("sleep 100"), TaskSource::Local, chrono::Utc::now())
    }
}

#[tokio::test]
async fn tasks_left_running_are_interrupted_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    {
        let store = Store::open(data.path()).unwrap();
        let running = stored_task("running", TaskStatus::Running, 2);
        let events = [
            SeqEvent { seq: 1, event: status_event(TaskStatus::Queued) },
            SeqEvent { seq: 2, event: status_event(TaskStatus::Running) },
        ];
        store.record_events(&running, &events).unwrap();
        store.record_events(&stored_task("queued", TaskStatus::Queued, 1), &events[..1]).unwrap();
        store.record_events(&stored_task("done", TaskStatus::Completed, 1), &events[..1]).unwrap();
    }
    // A second runner on the same data directory (the first still holds the lock) leaves them alone.
    let h = Harness::start_in(data, RunnerConfig::default()).await;
    let store = h.runner.store().clone();
    let task = |id: &str| store.task(id).unwrap().unwrap();
    assert_eq!(task("running").status, TaskStatus::Interrupted);
    assert_eq!(task("queued").status, TaskStatus::Interrupted);
    assert_eq!(task("done").status, TaskStatus::Completed);
    assert_eq!(
        store.transcript("running").unwrap().last(),
        Some(&SeqEvent { seq: 3, event: status_event(TaskStatus::Interrupted) })
    );
    assert_eq!(task("running").last_seq, 3);
    assert!(task("running").finished_at.is_some());
    let (alerts, _) = store.alerts(&Default::default()).unwrap();
    assert_eq!(alerts.len(), 1, "only the task that was running raises an alert: {alerts:#?}");
    assert_eq!((alerts[0].severity, alerts[0].task_id.as_deref()), (Severity::Warning, Some("running")));

    let other_store = Store::open(h.data.path()).unwrap();
    other_store.save_task(&stored_task("late", TaskStatus::Running, 0)).unwrap();
    let second = TaskRunner::start(
        other_store.clone(),
        RunnerConfig { data_dir: Some(h.data.path().into()), ..Default::default() },
        std::sync::Arc::new(|_: &str| None),
    )
    .await
    .unwrap();
    assert_eq!(other_store.task("late").unwrap().unwrap().status, TaskStatus::Running);
    second.shutdown().await;
}

#[tokio::test]
async fn shutdown_interrupts_running_tasks_and_kills_them() {
    let h = Harness::start(RunnerConfig::default()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    let mut watch = h.create(NewTask::local("web", Executor::Shell, shell("sleep 300 & echo $$; wait"))).await;
    let pgid = printed_pid(&mut watch).await;
    let id = watch.task.id.clone();
    let store = h.runner.store().clone();
    h.runner.shutdown().await;
    assert_eq!(store.task(&id).unwrap().unwrap().status, TaskStatus::Interrupted);
    assert_eq!(store.transcript(&id).unwrap().last().unwrap().event, status_event(TaskStatus::Interrupted));
    wait_group_gone(pgid).await;
}

#[tokio::test]
async fn worktree_tasks_run_on_their_own_branch() {
    let h = Harness::start(RunnerConfig { max_running_per_repo: 2, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    let worktree = |command: &str| TaskPayload { worktree: Some(true), ..shell(command) };

    // Clean at the end: the directory goes, the branch (with its commit) stays.
    let mut clean = h.create(NewTask::local("web", Executor::Shell, worktree(
        "git branch --show-current; echo x > made.txt; git add made.txt; git -c user.name=T -c user.email=t@e commit -qm made; pwd",
    )))
    .await;
    let task = clean.end(LONG).await;
    let branch = format!("flightdeck/{}", task.id);
    assert_eq!(task.status, TaskStatus::Completed, "{:#?}", clean.events);
    assert!(chunk_text(&clean.events, ChunkStream::Stdout).starts_with(&format!("{branch}\n")));
    let dir = std::path::PathBuf::from(task.summary.as_deref().unwrap().lines().next().unwrap());
    assert_eq!(task.summary.as_deref().unwrap(), format!("{}\n\nBranch: {branch}", dir.display()));
    assert_eq!(dir, h.data.path().canonicalize().unwrap().join("worktrees").join(&task.id));
    assert!(!dir.exists(), "a clean worktree is removed");
    assert_eq!(git(repo.path(), &["log", "-1", "--format=%s", &branch]).trim(), "made");
    assert!(!repo.path().join("made.txt").exists(), "the repo's own checkout is untouched");

    // Uncommitted changes at the end: the worktree is kept.
    let mut dirty = h.create(NewTask::local("web", Executor::Shell, worktree("echo y > left.txt; pwd"))).await;
    let task = dirty.end(LONG).await;
    let dir = std::path::PathBuf::from(task.summary.as_deref().unwrap().lines().next().unwrap());
    assert!(dir.join("left.txt").exists(), "a dirty worktree is kept");
}
