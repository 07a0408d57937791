//! Drives one started task: worktree, executor, timeout, budget, final status, alerts.

use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::{AlertKind, Severity, Task, TaskEvent, TaskStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::changes::Baseline;
use super::recorder::Recorder;
use super::waiting::{Request, WaitChange, Waiting};
use super::worktree::{worktree_dir, TaskWorktree};
use super::{group_record_path, Shared, Slot, StopReason, StopSwitch};
use crate::executor::{self, ExecContext, ExecInput, ExecOutcome};

/// How many executor events are recorded in one transaction at most.
const BATCH: usize = 256;

/// Runs a task the loop has just marked `running`.
pub(crate) async fn drive(
    shared: Arc<Shared>,
    task: Task,
    stop: StopSwitch,
    mut slot: Slot,
    input: mpsc::Receiver<ExecInput>,
) {
    let mut rec = Recorder::new(shared.clone(), task);

    let Some(repo_dir) = (shared.repos)(&rec.task.repo) else {
        let error = format!("unknown repo `{}`: it is not watched by this agent", rec.task.repo);
        return fail_early(&mut rec, &mut slot, error).await;
    };
    let worktree = if rec.task.payload.worktree == Some(true) {
        let dir = worktree_dir(shared.config.data_dir.as_deref(), &repo_dir, &rec.task.id);
        match TaskWorktree::create(&repo_dir, dir, &rec.task.id).await {
            Ok(worktree) => Some(worktree),
            Err(error) => {
                return fail_early(&mut rec, &mut slot, format!("cannot create the task's worktree: {error}")).await
            }
        }
    } else {
        None
    };

    let cwd = worktree.as_ref().map(|w| w.dir.clone()).unwrap_or(repo_dir);
    // Where the task starts from, for its `diff` when it ends.
    let baseline = {
        let dir = cwd.clone();
        match tokio::task::spawn_blocking(move || Baseline::take(&dir)).await {
            Ok(Ok(baseline)) => Some(baseline),
            Ok(Err(err)) => {
                tracing::warn!(task = %rec.task.id, %err, "cannot note the task's starting point: it gets no diff");
                None
            }
            Err(_) => None,
        }
    };

    let ctx = ExecContext {
        task_id: rec.task.id.clone(),
        executor: rec.task.executor,
        payload: rec.task.payload.clone(),
        cwd,
        claude: shared.config.claude.clone(),
        acp: shared.acp_config(),
        stop: stop.token.clone(),
        kill_grace: shared.config.kill_grace,
        group_record: shared.config.data_dir.as_deref().map(|d| group_record_path(d, &rec.task.id)),
    };
    let (tx, mut rx) = mpsc::channel(BATCH);
    let mut exec = tokio::spawn(executor::run(ctx, tx, input));
    let mut deadline =
        rec.task.payload.timeout_secs.filter(|s| *s > 0).map(|s| Instant::now() + Duration::from_secs(s));
    let mut waiting = Waiting::default();
    let max_cost = rec.task.payload.max_cost_usd;
    let mut batch = Vec::with_capacity(BATCH);
    // The executor's `done` waits for the task's `diff`, which reads the tree once it is over.
    let mut done = None;

    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break; // The executor has returned.
                }
                let mut out = Vec::with_capacity(n);
                for event in batch.drain(..) {
                    let stopping = stop.reason().is_some();
                    match event {
                        // After a stop the runner says how the task ended, not the dying process.
                        TaskEvent::Done { .. } | TaskEvent::Error { .. } if stopping => {}
                        TaskEvent::Done { mut summary } => {
                            if let Some(w) = &worktree {
                                summary.push_str(&format!("\n\nBranch: {}", w.branch));
                            }
                            done = Some(TaskEvent::Done { summary });
                        }
                        TaskEvent::ToolDone { tool_id, output, is_error } => {
                            let output = truncate_output(&mut rec, &tool_id, output, shared.config.tool_output_limit);
                            out.push(TaskEvent::ToolDone { tool_id, output, is_error });
                        }
                        TaskEvent::Usage { total_cost_usd, .. } => {
                            out.push(event);
                            if let Some(max) = max_cost.filter(|max| total_cost_usd > *max && !stopping) {
                                stop.stop(StopReason::BudgetExceeded);
                                let error = format!("budget exceeded: spent ${total_cost_usd:.4}, the limit is ${max:.4}");
                                out.push(TaskEvent::Error { error: error.clone() });
                                rec.raise(Severity::Critical, AlertKind::BudgetExceeded, format!("Task \"{}\" stopped: {error}", rec.task.title)).await;
                            }
                        }
                        other => out.push(other),
                    }
                }
                let usage_changed = out.iter().any(|e| matches!(e, TaskEvent::Usage { .. }));
                let requests: Vec<Request> = out.iter().filter_map(Request::of).collect();
                rec.record(out).await;
                for request in requests {
                    match waiting.apply(request, &mut rec).await {
                        Some(WaitChange::Started) => slot.set_waiting(true),
                        Some(WaitChange::Ended { waited }) => {
                            // The timeout does not count the time spent waiting for a person.
                            if let Some(deadline) = deadline.as_mut() {
                                *deadline += waited;
                            }
                            slot.set_waiting(false);
                        }
                        None => {}
                    }
                }
                if usage_changed {
                    rec.publish_task();
                }
            }
            // A chunk redaction held back goes out once it is decided or too old.
            _ = sleep_until_opt(rec.wire_deadline()) => rec.release_due().await,
            // The timeout does not run while the task waits for a person.
            _ = sleep_until_opt(deadline), if stop.reason().is_none() && !waiting.is_waiting() => {
                stop.stop(StopReason::TimedOut);
                let secs = rec.task.payload.timeout_secs.unwrap_or_default();
                rec.record(vec![TaskEvent::Error { error: format!("timed out after {secs} s") }]).await;
            }
        }
    }
    let outcome = match (&mut exec).await {
        Ok(outcome) => outcome,
        // Cancelled: the runtime is going away with the agent.
        Err(err) if err.is_cancelled() => {
            stop.stop(StopReason::Shutdown);
            ExecOutcome::Stopped
        }
        Err(err) => {
            let error = format!("the executor crashed: {err}");
            if stop.reason().is_none() {
                rec.record(vec![TaskEvent::Error { error: error.clone() }]).await;
            }
            ExecOutcome::Failed { error }
        }
    };

    let status = match (stop.reason(), &outcome) {
        (Some(StopReason::Cancelled), _) => TaskStatus::Cancelled,
        (Some(StopReason::Shutdown), _) => TaskStatus::Interrupted,
        (Some(StopReason::TimedOut | StopReason::BudgetExceeded), _) => TaskStatus::Failed,
        (None, ExecOutcome::Completed { .. }) => TaskStatus::Completed,
        (None, ExecOutcome::Cancelled) => TaskStatus::Cancelled,
        (None, ExecOutcome::Failed { .. } | ExecOutcome::Stopped) => TaskStatus::Failed,
    };
    let mut last = Vec::new();
    if let Some(baseline) = baseline.filter(|_| stop.reason() != Some(StopReason::Shutdown)) {
        match tokio::task::spawn_blocking(move || baseline.diff()).await {
            Ok(Ok(diff)) => last.extend(diff),
            Ok(Err(err)) => tracing::warn!(task = %rec.task.id, %err, "cannot diff what the task changed"),
            Err(err) => tracing::warn!(task = %rec.task.id, %err, "cannot diff what the task changed"),
        }
    }
    last.extend(done);
    if !last.is_empty() {
        rec.record(last).await;
    }
    // Whatever was still waiting for a decision will not get one: its alert is done with.
    waiting.end(&mut rec).await;
    if let Some(worktree) = &worktree {
        let removed = worktree.clean_up().await;
        tracing::info!(task = %rec.task.id, branch = %worktree.branch, removed, "task worktree cleaned up");
    }
    // The alert goes first so that the final `Task` is the last thing published about a task.
    if status == TaskStatus::Failed && stop.reason() != Some(StopReason::BudgetExceeded) {
        let error = rec.task.error.clone().unwrap_or_else(|| "failed".into());
        rec.raise(Severity::Warning, AlertKind::TaskFailed, format!("Task \"{}\" failed: {error}", rec.task.title))
            .await;
    }
    slot.release();
    rec.finish(status).await;
}

/// Fails a task that could not start: an `error` event, `failed`, an alert.
async fn fail_early(rec: &mut Recorder, slot: &mut Slot, error: String) {
    rec.record(vec![TaskEvent::Error { error: error.clone() }]).await;
    rec.raise(Severity::Warning, AlertKind::TaskFailed, format!("Task \"{}\" failed: {error}", rec.task.title)).await;
    slot.release();
    rec.finish(TaskStatus::Failed).await;
}

/// The output for the event: the full text when short, else its head with a marker (the full
/// text goes to the local database with the event).
pub(crate) fn truncate_output(rec: &mut Recorder, tool_id: &str, output: String, limit: usize) -> String {
    if output.len() <= limit {
        return output;
    }
    let mut cut = limit;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = format!(
        "{}\n… [output truncated: {} of {} bytes shown; the full output is kept on the agent]",
        &output[..cut],
        cut,
        output.len()
    );
    rec.keep_full_output(tool_id.to_string(), output);
    head
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
