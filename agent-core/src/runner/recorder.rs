//! Numbers a task's events, writes them to SQLite, then publishes them: in that order, so
//! anything a subscriber sees is already in the database.

use std::sync::Arc;

use chrono::Utc;
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::{Alert, AlertKind, SeqEvent, Severity, Task, TaskEvent, TaskStatus};

use super::{RunnerEvent, Shared};

/// The one writer of a task's events (the runner's loop while it is queued, its driver while it
/// runs), so `seq` has no gaps and no duplicates.
pub(crate) struct Recorder {
    shared: Arc<Shared>,
    pub(crate) task: Task,
    /// Full texts of truncated tool outputs, written with the next batch.
    full_outputs: Vec<(String, String)>,
}

impl Recorder {
    pub(crate) fn new(shared: Arc<Shared>, task: Task) -> Recorder {
        Recorder { shared, task, full_outputs: Vec::new() }
    }

    /// Keeps a tool's full output locally (its event carries it truncated).
    pub(crate) fn keep_full_output(&mut self, tool_id: String, output: String) {
        self.full_outputs.push((tool_id, output));
    }

    /// Records a batch of events (one transaction), then publishes them.
    pub(crate) async fn record(&mut self, events: Vec<TaskEvent>) {
        if events.is_empty() {
            return;
        }
        let mut batch = Vec::with_capacity(events.len());
        for event in events {
            self.apply(&event);
            self.task.last_seq += 1;
            batch.push(SeqEvent { seq: self.task.last_seq, event });
        }
        let store = self.shared.store.clone();
        let task = self.task.clone();
        let full_outputs = std::mem::take(&mut self.full_outputs);
        let write = {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || {
                for (tool_id, output) in &full_outputs {
                    store.save_tool_output(&task.id, tool_id, output)?;
                }
                store.record_events(&task, &batch)
            })
        };
        match write.await {
            Ok(Ok(())) => {}
            // The live view still gets the events; the error is loud because the database is
            // the source of truth and now lacks them.
            Ok(Err(err)) => tracing::error!(task = %self.task.id, %err, "cannot record task events"),
            Err(err) => tracing::error!(task = %self.task.id, %err, "cannot record task events"),
        }
        for SeqEvent { seq, event } in batch {
            let _ = self.shared.updates.send(RunnerEvent::Event(TaskEventRecord {
                task_id: self.task.id.clone(),
                seq,
                event,
            }));
        }
    }

    /// Keeps the task's fields in step with its events.
    fn apply(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd } => {
                self.task.input_tokens = Some(*input_tokens);
                self.task.output_tokens = Some(*output_tokens);
                self.task.cost_usd = Some(*total_cost_usd);
            }
            TaskEvent::Done { summary } => self.task.summary = Some(summary.clone()),
            TaskEvent::Error { error } => self.task.error = Some(error.clone()),
            _ => {}
        }
    }

    /// Saves the task as it is and publishes it.
    pub(crate) async fn save_task(&self) {
        let store = self.shared.store.clone();
        let task = self.task.clone();
        match tokio::task::spawn_blocking(move || store.save_task(&task)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(task = %self.task.id, %err, "cannot save task"),
            Err(err) => tracing::error!(task = %self.task.id, %err, "cannot save task"),
        }
        self.publish_task();
    }

    pub(crate) fn publish_task(&self) {
        let _ = self.shared.updates.send(RunnerEvent::Task(self.task.clone()));
    }

    /// Ends the task: its final `status` event, then the final `Task`.
    pub(crate) async fn finish(&mut self, status: TaskStatus) {
        self.task.status = status;
        self.task.finished_at = Some(Utc::now());
        self.record(vec![TaskEvent::Status { status, model: None, session_id: None }]).await;
        self.publish_task();
    }

    /// Records and publishes an alert about this task.
    pub(crate) async fn raise(&self, severity: Severity, kind: AlertKind, message: String) {
        let alert = alert(&self.task, severity, kind, message);
        let store = self.shared.store.clone();
        let saved = alert.clone();
        match tokio::task::spawn_blocking(move || store.insert_alert(&saved)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "cannot record an alert"),
            Err(err) => tracing::error!(%err, "cannot record an alert"),
        }
        let _ = self.shared.updates.send(RunnerEvent::Alert(alert));
    }
}

pub(crate) fn alert(task: &Task, severity: Severity, kind: AlertKind, message: String) -> Alert {
    Alert {
        id: uuid::Uuid::now_v7().to_string(),
        severity,
        kind,
        repo: Some(task.repo.clone()),
        task_id: Some(task.id.clone()),
        agent_id: task.agent_id.clone(),
        message,
        created_at: Utc::now(),
        acknowledged: false,
        acknowledged_at: None,
    }
}
