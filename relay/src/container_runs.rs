//! The supervisor of container runs (SPEC 10; see [`crate::runner`] for the engine, the
//! [`Runner`] handle and the life of one run): it sweeps what a previous process left, takes
//! queued runs from the database, starts and follows their containers, and records the steps
//! the relay writes itself through the domain, like an agent's events.
//!
//! It lives outside `runner` because it drives the relay's state (as a transport does), while
//! the state holds the `Runner` handle: keeping the two apart keeps the module graph acyclic.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::api::OnceReport;
use flightdeck_protocol::event::RunnerStep;
use flightdeck_protocol::{Executor, RunnerInfo, RunnerState, Task, TaskEvent, TaskStatus};
use tokio_util::sync::CancellationToken;

use crate::error::AppError;
use crate::state::AppState;
use crate::store::{Run, RunState};

use crate::runner::{ContainerSpec, Runner, LABEL_RELAY, LABEL_TASK};

/// Where the clone goes inside the container.
const WORK_DIR: &str = "/work";
/// The container's home (the runner image's `HOME`) and the Claude Code state in it: the
/// sessions `--resume` reads are under `.claude/projects/<cwd>/`. A container's state is kept
/// when its Claude task ends with a session, and unpacked into the next turn's container.
const HOME_DIR: &str = "/root";
const CLAUDE_STATE_DIR: &str = "/root/.claude";
/// Largest Claude state kept for a follow-up (a tar archive); beyond it the conversation cannot
/// be continued in a container.
const MAX_KEPT_STATE_BYTES: usize = 64 * 1024 * 1024;
/// Lines of the container's log kept for a failed task's `error`.
const LOG_TAIL_LINES: usize = 40;
/// Sweeps what a previous process left (containers, unfinished runs), then starts the
/// supervisor loop. Called before the relay accepts connections.
pub async fn start(state: &AppState, runner: Arc<Runner>) -> anyhow::Result<()> {
    sweep(state, &runner).await?;
    let st = state.clone();
    state.tasks.spawn(supervise(st, runner));
    Ok(())
}

/// Removes every container labelled with this relay's instance and ends the runs the previous
/// process did not finish (`interrupted`): their containers, if any survived, are gone now.
async fn sweep(state: &AppState, runner: &Runner) -> anyhow::Result<()> {
    let ids = runner.engine.list_labelled(LABEL_RELAY, &runner.instance).await?;
    for id in &ids {
        runner.engine.remove(id).await?;
    }
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "removed containers left by a previous run of this relay");
    }
    for run in state.store().unfinished_runs().await? {
        let ending = Ending {
            container_id: run.container_id.clone().unwrap_or_default(),
            exit_code: None,
            status_if_unfinished: TaskStatus::Interrupted,
            error: Some("the relay restarted while the container ran; the container was removed".into()),
            report: None,
        };
        finish_run(state, &run.user, &run.task_id, run.key_id.as_deref(), ending).await?;
    }
    Ok(())
}

async fn supervise(state: AppState, runner: Arc<Runner>) {
    loop {
        let answering = runner.wakes.load(Ordering::SeqCst);
        // Start as many queued runs as there are free slots.
        while runner.running() < runner.settings.max_running {
            let claimed = state.store().claim_next_run().await;
            let run = match claimed {
                Ok(Some(run)) => run,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the run queue");
                    break;
                }
            };
            runner.running.fetch_add(1, Ordering::Relaxed);
            let stop = CancellationToken::new();
            runner.stops.lock().unwrap_or_else(|e| e.into_inner()).insert(run.task_id.clone(), stop.clone());
            let (st, r) = (state.clone(), runner.clone());
            state.tasks.spawn(async move {
                let task_id = run.task_id.clone();
                if let Err(e) = run_container(&st, &r, &run, stop).await {
                    tracing::warn!(task = %task_id, error = %e, "container run failed");
                }
                r.stops.lock().unwrap_or_else(|e| e.into_inner()).remove(&task_id);
                r.running.fetch_sub(1, Ordering::Relaxed);
                r.wake();
            });
        }
        runner.looked.fetch_max(answering, Ordering::SeqCst);
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = runner.wake.notified() => {}
        }
    }
}

/// How a run ended, for [`finish_run`].
struct Ending {
    container_id: String,
    exit_code: Option<i64>,
    /// The task's status when the agent did not end it.
    status_if_unfinished: TaskStatus,
    /// Why, when the run went wrong (shown as the task's `error` if the agent did not end it).
    error: Option<String>,
    report: Option<OnceReport>,
}

/// One run, from key to removal. Errors are recorded on the task; the returned error is for
/// the log only.
async fn run_container(state: &AppState, runner: &Runner, run: &Run, stop: CancellationToken) -> Result<(), AppError> {
    let (user, task_id, clone_url) = (run.user.as_str(), run.task_id.as_str(), run.clone_url.as_str());
    let settings = &runner.settings;
    let store = state.store();
    let prepared = async {
        let Some(mut task) = store.task(user, task_id).await? else { return Ok::<_, AppError>(None) };
        let key = store.create_task_key(user, task_id).await?;
        let secrets = match state.secrets() {
            Some(secrets) => secrets.open_all(store, user).await?,
            None => Vec::new(),
        };
        let steps = vec![
            TaskEvent::Runner {
                step: RunnerStep::Starting,
                message: format!("starting a container from {}", settings.image),
                exit_code: None,
            },
            TaskEvent::Runner {
                step: RunnerStep::Cloning,
                message: match &run.checkout {
                    Some(branch) => format!("cloning {clone_url} at {branch}"),
                    None => format!("cloning {clone_url}"),
                },
                exit_code: None,
            },
        ];
        let offset = append_relay_events(state, user, task_id, steps).await?;
        store.set_run_seq_offset(task_id, offset).await?;
        task.runner = Some(RunnerInfo { container_id: String::new(), state: RunnerState::Starting, exit_code: None });
        let stored = store.upsert_task(user, &task).await?;
        let stored = state.publish_task(user, task_id).await?.unwrap_or(stored);
        Ok(Some((key, secrets, stored)))
    }
    .await?;
    let Some((key, secrets, task)) = prepared else { return Ok(()) };

    let mut spec = container_spec(runner, user, &task, run, &key.secret, secrets);
    match previous_turn_state(state, user, &task).await {
        Ok(Some(archive)) => spec.uploads.push((HOME_DIR.to_string(), archive)),
        Ok(None) => {}
        Err(why) => {
            let ending = Ending {
                container_id: String::new(),
                exit_code: None,
                status_if_unfinished: TaskStatus::Failed,
                error: Some(why.clone()),
                report: None,
            };
            end_run(state, user, task_id, key.id.clone(), ending).await?;
            return Err(AppError::Internal(why));
        }
    }
    let container_id = match runner.engine.start(&spec).await {
        Ok(id) => id,
        Err(e) => {
            let ending = Ending {
                container_id: String::new(),
                exit_code: None,
                status_if_unfinished: TaskStatus::Failed,
                error: Some(format!("the container could not start: {e}")),
                report: None,
            };
            end_run(state, user, task_id, key.id.clone(), ending).await?;
            return Err(AppError::Internal(e.to_string()));
        }
    };
    store.set_run_container(task_id, &container_id).await?;
    if let Some(mut task) = store.task(user, task_id).await? {
        task.runner =
            Some(RunnerInfo { container_id: container_id.clone(), state: RunnerState::Running, exit_code: None });
        store.upsert_task(user, &task).await?;
        state.publish_task(user, task_id).await?;
    }

    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let (exit_code, why) = tokio::select! {
        waited = runner.engine.wait(&container_id) => match waited {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(format!("lost the container: {e}"))),
        },
        _ = tokio::time::sleep(timeout) => (None, Some(format!("timed out after {} s", timeout.as_secs()))),
        _ = stop.cancelled() => (None, Some("cancelled: the container was stopped".to_string())),
        // The relay is going away: the container is left to the sweep of the next start.
        _ = state.shutdown.cancelled() => return Ok(()),
    };
    // An engine counts log entries, and a line written in pieces is several: ask for more and
    // keep the last lines of what they make.
    let mut logs = runner.engine.logs_tail(&container_id, LOG_TAIL_LINES * 4).await.unwrap_or_default();
    logs.stderr = last_lines(&logs.stderr, LOG_TAIL_LINES);
    let report = logs.stdout.lines().rev().find_map(|line| serde_json::from_str::<OnceReport>(line).ok());
    // Before the container goes: what a follow-up turn needs of it.
    let pushed_branch = report.as_ref().and_then(|r| r.pushed_branch.clone());
    let home = keep_claude_state(state, runner, user, task_id, &container_id).await;
    let kept = store.set_run_outcome(task_id, pushed_branch.as_deref(), home.as_deref()).await;
    if let Err(e) = runner.engine.remove(&container_id).await {
        tracing::warn!(container = %container_id, error = %e, "cannot remove a container");
    }
    kept?;
    let cancelled = stop.is_cancelled();
    let error = why.or_else(|| {
        (exit_code != Some(0)).then(|| {
            let tail = logs.stderr.trim();
            format!("the container exited with code {}: {tail}", exit_code.unwrap_or(-1))
        })
    });
    let status_if_unfinished = if cancelled { TaskStatus::Cancelled } else { TaskStatus::Failed };
    let ending = Ending { container_id, exit_code, status_if_unfinished, error, report };
    end_run(state, user, task_id, key.id, ending).await
}

/// The Claude state the previous turn's container kept, opened, for a task that resumes a
/// session in a container; `None` for any other task. An error says why the turn cannot run.
async fn previous_turn_state(state: &AppState, user: &str, task: &Task) -> Result<Option<Vec<u8>>, String> {
    let (Some(parent), Some(_)) = (&task.parent_task_id, &task.payload.resume_session_id) else { return Ok(None) };
    let kept = state.store().run_home(parent).await.map_err(|e| e.to_string())?;
    let (Some(blob), Some(secrets)) = (kept, state.secrets()) else {
        return Err(format!("the container of turn {parent} kept no Claude session to resume"));
    };
    secrets.open_run_home(user, parent, &blob).map(Some)
}

/// The container's Claude state (a tar archive of [`CLAUDE_STATE_DIR`]), sealed, when its task
/// is a Claude task that has a session: what a follow-up turn resumes. `None` (logged) when
/// there is none or it cannot be read: the conversation then cannot go on in a container.
async fn keep_claude_state(
    state: &AppState,
    runner: &Runner,
    user: &str,
    task_id: &str,
    container_id: &str,
) -> Option<Vec<u8>> {
    let task = state.store().task(user, task_id).await.ok().flatten()?;
    if task.executor != Executor::Claude || task.session_id.is_none() {
        return None;
    }
    let archive = match runner.engine.copy_out(container_id, CLAUDE_STATE_DIR, MAX_KEPT_STATE_BYTES).await {
        Ok(Some(archive)) => archive,
        Ok(None) => {
            tracing::warn!(task = %task_id, "the container has no Claude state to keep");
            return None;
        }
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot keep the container's Claude state");
            return None;
        }
    };
    match state.secrets()?.seal_run_home(user, task_id, &archive) {
        Ok(blob) => Some(blob),
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot seal the container's Claude state");
            None
        }
    }
}

/// Records how a run ended (see [`finish_run`]).
async fn end_run(state: &AppState, user: &str, task_id: &str, key_id: String, ending: Ending) -> Result<(), AppError> {
    finish_run(state, user, task_id, Some(&key_id), ending).await
}

/// The container of one run.
fn container_spec(
    runner: &Runner,
    user: &str,
    task: &Task,
    run: &Run,
    key: &str,
    secrets: Vec<(String, String)>,
) -> ContainerSpec {
    let settings = &runner.settings;
    let mut env: BTreeMap<String, String> = settings.env.clone();
    // The owner's secrets win over the runner's environment; the relay's own variables win
    // over both (secret names cannot start with FLIGHTDECK_).
    env.extend(secrets);
    env.insert("FLIGHTDECK_AGENT_RELAY_URL".into(), runner.relay_url.clone());
    env.insert("FLIGHTDECK_AGENT_KEY".into(), key.to_string());
    env.insert("FLIGHTDECK_AGENT_AGENT_ID".into(), Runner::agent_id_for(&task.id));
    env.insert("FLIGHTDECK_AGENT_DATA_DIR".into(), "/var/lib/flightdeck".into());
    let labels = BTreeMap::from([
        (LABEL_RELAY.to_string(), runner.instance.clone()),
        (LABEL_TASK.to_string(), task.id.clone()),
        ("flightdeck.user".to_string(), user.to_string()),
    ]);
    let binds = match &settings.agent_binary {
        Some(path) => vec![format!("{}:/usr/local/bin/flightdeck-agent:ro", path.display())],
        None => Vec::new(),
    };
    let mut cmd: Vec<String> = [
        "run",
        "--once",
        "--clone",
        &run.clone_url,
        "--task",
        &task.id,
        "--repo-name",
        &task.repo,
        "--work-dir",
        WORK_DIR,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(branch) = &run.checkout {
        cmd.extend(["--checkout".to_string(), branch.clone()]);
    }
    ContainerSpec {
        name: format!("flightdeck-{}-{}", runner.instance, task.id),
        image: settings.image.clone(),
        cmd,
        env,
        labels,
        working_dir: Some(WORK_DIR.into()),
        network: settings.network.clone(),
        cpus: settings.cpus,
        memory_mb: settings.memory_mb,
        ulimits: settings.ulimits.iter().map(|(name, n)| (name.clone(), *n, *n)).collect(),
        binds,
        uploads: Vec::new(),
    }
}

/// Records the end of a run: the last steps in the transcript, the task's end when the agent
/// did not record one, the container's exit on `task.runner`; revokes the key.
async fn finish_run(
    st: &AppState,
    user: &str,
    task_id: &str,
    key_id: Option<&str>,
    ending: Ending,
) -> Result<(), AppError> {
    let store = st.store();
    if let Some(key_id) = key_id {
        store.revoke_key(key_id).await?;
    }
    store.set_run_state(task_id, RunState::Ended).await?;
    let Some(mut task) = store.task(user, task_id).await? else { return Ok(()) };
    let mut steps = Vec::new();
    if let Some(report) = &ending.report {
        if let (Some(branch), Some(commit)) = (&report.pushed_branch, &report.pushed_commit) {
            let short: String = commit.chars().take(12).collect();
            steps.push(TaskEvent::Runner {
                step: RunnerStep::Pushing,
                message: format!("pushed {branch} at {short}"),
                exit_code: None,
            });
        }
        if let Some(error) = &report.error {
            steps.push(TaskEvent::Runner { step: RunnerStep::Failed, message: error.clone(), exit_code: None });
        }
    }
    let unfinished = !task.status.is_terminal();
    if unfinished {
        let error = ending.error.clone().unwrap_or_else(|| "the container ended before its task".into());
        steps.push(TaskEvent::Error { error: error.clone() });
        steps.push(TaskEvent::Status { status: ending.status_if_unfinished, model: None, session_id: None });
        task.status = ending.status_if_unfinished;
        task.error = Some(error);
        task.finished_at = Some(Utc::now());
    }
    let ok = ending.exit_code == Some(0);
    let message = match (ending.exit_code, &ending.error) {
        (Some(code), _) => format!("the container exited with code {code} and was removed"),
        (None, Some(why)) => format!("the container was removed: {why}"),
        (None, None) => "the container was removed".to_string(),
    };
    steps.push(TaskEvent::Runner {
        step: if ok { RunnerStep::Exited } else { RunnerStep::Failed },
        message,
        exit_code: ending.exit_code,
    });
    append_relay_events(st, user, task_id, steps).await?;
    task.runner = Some(RunnerInfo {
        container_id: ending.container_id,
        state: if ok { RunnerState::Exited } else { RunnerState::Failed },
        exit_code: ending.exit_code,
    });
    store.upsert_task(user, &task).await?;
    st.publish_task(user, task_id).await?;
    Ok(())
}

/// Appends events the relay writes itself after the task's last contiguous seq, and publishes
/// them like an agent's; returns the new last seq.
pub async fn append_relay_events(
    st: &AppState,
    user: &str,
    task_id: &str,
    events: Vec<TaskEvent>,
) -> Result<u64, AppError> {
    let Some((_, last)) = st.store().task_repo_and_seq(user, task_id).await? else { return Ok(0) };
    let numbered: Vec<(String, u64, TaskEvent)> =
        events.into_iter().zip(last + 1..).map(|(event, seq)| (task_id.to_string(), seq, event)).collect();
    let count = numbered.len() as u64;
    crate::domain::tasks::store_events(st, user, numbered).await?;
    Ok(last + count)
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
