//! Helpers shared by the runner, Claude and CLI tests: git repos in temp dirs, a runner on a
//! temp data directory, waiting for a task's end, and looking for a task's processes.

#![allow(dead_code)] // Each test module uses a part.

pub mod scripted_api;
pub mod scripted_chat;
pub mod scripted_responses;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_agent_core::runner::{NewTask, RunnerConfig, RunnerEvent, TaskRunner};
use flightdeck_agent_core::store::Store;
use flightdeck_protocol::{SeqEvent, Task, TaskEvent};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// A git repo with one commit, in a temp dir.
pub fn git_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["config", "user.email", "test@example.com"],
        &["config", "user.name", "Test"],
        &["commit", "-q", "--allow-empty", "-m", "first"],
    ] {
        git(dir.path(), args);
    }
    dir
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runner over a temp data dir whose repos are a shared slug -> path map.
pub struct Harness {
    pub runner: TaskRunner,
    pub repos: Arc<Mutex<HashMap<String, PathBuf>>>,
    pub data: tempfile::TempDir,
}

impl Harness {
    pub async fn start(config: RunnerConfig) -> Harness {
        let data = tempfile::tempdir().unwrap();
        Harness::start_in(data, config).await
    }

    pub async fn start_in(data: tempfile::TempDir, config: RunnerConfig) -> Harness {
        let repos: Arc<Mutex<HashMap<String, PathBuf>>> = Arc::default();
        let store = Store::open(data.path()).unwrap();
        let lookup = repos.clone();
        let config = RunnerConfig { data_dir: Some(data.path().to_path_buf()), ..config };
        let runner =
            TaskRunner::start(store, config, Arc::new(move |slug: &str| lookup.lock().unwrap().get(slug).cloned()))
                .await
                .unwrap();
        Harness { runner, repos, data }
    }

    pub fn add_repo(&self, slug: &str, path: &Path) {
        self.repos.lock().unwrap().insert(slug.to_string(), path.to_path_buf());
    }
}

/// A task's events as the runner publishes them, checked on the way: `seq` counts 1, 2, 3, ...
/// and each event is in the store before it is published.
pub struct TaskWatch {
    rx: broadcast::Receiver<RunnerEvent>,
    store: Store,
    pub task: Task,
    pub events: Vec<TaskEvent>,
    pub alerts: Vec<flightdeck_protocol::Alert>,
    ended: bool,
}

impl TaskWatch {
    /// Reads until `pick` accepts an event of the task; returns what it returned.
    pub async fn until<T>(&mut self, within: Duration, mut pick: impl FnMut(&TaskEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            assert!(!self.ended, "the task ended first: {:#?}", self.events);
            if let Some(event) = self.next(deadline).await {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        }
    }

    /// Reads until the task's state satisfies `pick` (it may already).
    pub async fn until_task(&mut self, within: Duration, mut pick: impl FnMut(&Task) -> bool) {
        let deadline = Instant::now() + within;
        while !pick(&self.task) {
            assert!(!self.ended, "the task ended first: {:#?}", self.task);
            self.next(deadline).await;
        }
    }

    /// Reads until the task's final `Task`; returns it.
    pub async fn end(&mut self, within: Duration) -> Task {
        let deadline = Instant::now() + within;
        while !self.ended {
            self.next(deadline).await;
        }
        self.task.clone()
    }

    async fn next(&mut self, deadline: Instant) -> Option<TaskEvent> {
        let id = self.task.id.clone();
        let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
        let next = next
            .unwrap_or_else(|_| panic!("task {id}: nothing awaited came in time; events so far: {:#?}", self.events));
        match next.unwrap() {
            RunnerEvent::Event(record) if record.task_id == id => {
                assert_eq!(
                    record.seq,
                    self.events.len() as u64 + 1,
                    "seq has a gap: {:#?} then {record:?}",
                    self.events
                );
                let stored = self.store.events_after(&id, record.seq - 1, 1).unwrap();
                assert_eq!(
                    stored,
                    vec![SeqEvent { seq: record.seq, event: record.event.clone() }],
                    "published before stored"
                );
                self.events.push(record.event.clone());
                Some(record.event)
            }
            RunnerEvent::Task(task) if task.id == id => {
                if task.status.is_terminal() {
                    assert_eq!(task.last_seq, self.events.len() as u64);
                    self.ended = true;
                }
                self.task = task;
                None
            }
            RunnerEvent::Alert(alert) if alert.task_id.as_deref() == Some(id.as_str()) => {
                self.alerts.push(alert);
                None
            }
            _ => None,
        }
    }
}

impl Harness {
    /// Creates a task, watching it from its first event.
    pub async fn create(&self, task: NewTask) -> TaskWatch {
        let rx = self.runner.subscribe();
        let task = self.runner.create(task).await.unwrap();
        TaskWatch { rx, store: self.runner.store().clone(), task, events: Vec::new(), alerts: Vec::new(), ended: false }
    }
}

/// Waits until `condition` holds, checking every 20 ms; panics with `what` at the deadline.
/// Held by a test that measures throughput on its own processes (an agent, a relay and a
/// viewer pushing a burst as fast as they can): two of them at once on this machine's two cores
/// each ran at a third of its speed, and one missed its deadline. They take turns; the other
/// tests still run beside them.
pub async fn throughput_test() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

pub async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live (not zombie) processes, as (pid, process group, cwd).
pub fn processes() -> Vec<(i32, i32, Option<PathBuf>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the command name, which is in parentheses and may contain spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 3 || fields[0] == "Z" || fields[0] == "X" {
            continue;
        }
        let pgrp = fields[2].parse().unwrap_or(0);
        out.push((pid, pgrp, std::fs::read_link(entry.path().join("cwd")).ok()));
    }
    out
}

/// Live processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    processes().into_iter().filter(|(_, g, _)| *g == pgid).map(|(p, _, _)| p).collect()
}

/// Live processes whose working directory is `dir` (or below it).
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    processes()
        .into_iter()
        .filter(|(_, _, cwd)| cwd.as_ref().is_some_and(|c| c.starts_with(&dir)))
        .map(|(p, _, _)| p)
        .collect()
}

/// The concatenated text of a task's chunks of one stream.
pub fn chunk_text(events: &[TaskEvent], stream: flightdeck_protocol::event::ChunkStream) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Chunk { text, stream: s } if *s == stream => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The owner's decision `behavior` on `request_id`, as the ACP tests send it.
pub fn decision(
    request_id: &str,
    behavior: flightdeck_protocol::event::Behavior,
) -> flightdeck_agent_core::executor::Decision {
    flightdeck_agent_core::executor::Decision {
        request_id: request_id.into(),
        behavior,
        updated_input: None,
        message: None,
        decided_by: flightdeck_protocol::event::DecidedBy::Owner,
    }
}
