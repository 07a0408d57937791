//! Numbers a task's events, writes them to SQLite, then publishes them: in that order, so
//! anything a subscriber sees is already in the database.
//!
//! The same write puts the events' outgoing form in the relay link's outbox: each event goes
//! through the task's [`StreamRedactor`], which may hold a chunk back for a moment (at most
//! [`WIRE_HOLD`]) while its end could still be the start of a secret that the next chunk
//! completes. The redactor runs on the blocking pool with the SQLite write, never on the async
//! threads (it reads `.env` files and runs regexes).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::{Alert, AlertKind, SeqEvent, Severity, Task, TaskEvent, TaskStatus};

use super::{RunnerEvent, Shared};
use crate::redact::{Redactor, StreamRedactor};
use crate::store::{Recorded, Store, StoreError};

/// The longest a chunk is held back by redaction before it goes to the outbox.
pub(crate) const WIRE_HOLD: Duration = StreamRedactor::HOLD;

/// Where the task's state goes in the outbox relative to the events of the same write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announce {
    No,
    /// Before the events: the relay must know a new task before its first event.
    Before,
    /// After the events: a final state follows the whole transcript.
    After,
}

/// The one writer of a task's events (the runner's loop while it is queued, its driver while it
/// runs), so `seq` has no gaps and no duplicates.
pub(crate) struct Recorder {
    shared: Arc<Shared>,
    pub(crate) task: Task,
    /// Full texts of truncated tool outputs, written with the next batch.
    full_outputs: Vec<(String, String)>,
    /// Made on the first write (building it reads the repo's `.env` files).
    wire: Option<StreamRedactor>,
    /// When the redactor must release what it holds (mirrors `wire.deadline()`).
    wire_deadline: Option<std::time::Instant>,
    /// A setting to write with the next batch (see [`Recorder::stage_setting`]).
    staged_setting: Option<(String, String)>,
}

impl Recorder {
    pub(crate) fn new(shared: Arc<Shared>, task: Task) -> Recorder {
        Recorder { shared, task, full_outputs: Vec::new(), wire: None, wire_deadline: None, staged_setting: None }
    }

    /// Keeps a tool's full output locally (its event carries it truncated).
    pub(crate) fn keep_full_output(&mut self, tool_id: String, output: String) {
        self.full_outputs.push((tool_id, output));
    }

    /// Writes a setting in the same transaction as the next batch of events.
    pub(crate) fn stage_setting(&mut self, key: String, value: String) {
        self.staged_setting = Some((key, value));
    }

    /// Records a batch of events (one transaction), then publishes them.
    pub(crate) async fn record(&mut self, events: Vec<TaskEvent>) {
        self.write(events, Announce::No, false).await;
    }

    /// Records a new task's first events and announces the task before them.
    pub(crate) async fn record_new(&mut self, events: Vec<TaskEvent>) {
        self.write(events, Announce::Before, false).await;
        self.publish_task();
    }

    /// When [`Recorder::release_due`] has something to release.
    pub(crate) fn wire_deadline(&self) -> Option<tokio::time::Instant> {
        self.wire_deadline.map(tokio::time::Instant::from_std)
    }

    /// Sends to the outbox what redaction held back past its deadline.
    pub(crate) async fn release_due(&mut self) {
        self.write(Vec::new(), Announce::No, false).await;
    }

    async fn write(&mut self, events: Vec<TaskEvent>, announce: Announce, finish: bool) {
        let mut batch = Vec::with_capacity(events.len());
        for event in events {
            self.apply(&event);
            self.task.last_seq += 1;
            batch.push(SeqEvent { seq: self.task.last_seq, event });
        }
        let store = self.shared.store.clone();
        let redactors = self.shared.redactors.clone();
        let task = self.task.clone();
        let full_outputs = std::mem::take(&mut self.full_outputs);
        let setting = self.staged_setting.take();
        let wire = self.wire.take();
        let write = {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || {
                let mut wire = wire.unwrap_or_else(|| StreamRedactor::new(redactors.for_repo(&task.repo), WIRE_HOLD));
                let now = std::time::Instant::now();
                let mut out = wire.flush_due(now);
                for event in &batch {
                    out.extend(wire.push(event.seq, event.event.clone(), now));
                }
                if finish {
                    out.extend(wire.finish());
                }
                let setting = setting.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
                let result = if batch.is_empty() && out.is_empty() && announce == Announce::No && setting.is_none() {
                    Ok(())
                } else {
                    write_batch(&store, &task, &batch, &full_outputs, &out, announce, setting)
                };
                (wire, result)
            })
        };
        match write.await {
            Ok((wire, result)) => {
                self.wire_deadline = wire.deadline();
                self.wire = Some(wire);
                // The live view still gets the events; the error is loud because the database
                // is the source of truth and now lacks them.
                if let Err(err) = result {
                    tracing::error!(task = %self.task.id, %err, "cannot record task events");
                }
            }
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
            TaskEvent::Status { session_id: Some(session), .. } => self.task.session_id = Some(session.clone()),
            TaskEvent::Error { error } => self.task.error = Some(error.clone()),
            _ => {}
        }
    }

    /// Saves the task as it is (queued for the relay too) and publishes it.
    pub(crate) async fn save_task(&mut self) {
        self.write(Vec::new(), Announce::Before, false).await;
        self.publish_task();
    }

    /// Publishes the task to the local front ends (the database already has it).
    pub(crate) fn publish_task(&self) {
        let _ = self.shared.updates.send(RunnerEvent::Task(self.task.clone()));
    }

    /// Ends the task: its final `status` event, everything redaction still holds, then the
    /// final `Task`.
    pub(crate) async fn finish(&mut self, status: TaskStatus) {
        self.task.status = status;
        self.task.finished_at = Some(Utc::now());
        self.write(vec![TaskEvent::Status { status, model: None, session_id: None }], Announce::After, true).await;
        self.publish_task();
    }

    /// Records and publishes an alert about this task.
    pub(crate) async fn raise(&self, severity: Severity, kind: AlertKind, message: String) -> Alert {
        let alert = alert(&self.task, severity, kind, message);
        let store = self.shared.store.clone();
        let saved = alert.clone();
        match tokio::task::spawn_blocking(move || store.insert_alert(&saved)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "cannot record an alert"),
            Err(err) => tracing::error!(%err, "cannot record an alert"),
        }
        let _ = self.shared.updates.send(RunnerEvent::Alert(alert.clone()));
        alert
    }

    /// Acknowledges an alert this task raised (its request was decided) and publishes it.
    pub(crate) async fn acknowledge(&self, alert_id: &str) {
        let store = self.shared.store.clone();
        let id = alert_id.to_string();
        match tokio::task::spawn_blocking(move || store.acknowledge_alert(&id)).await {
            Ok(Ok(Some(alert))) => {
                let _ = self.shared.updates.send(RunnerEvent::Alert(alert));
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!(%err, "cannot acknowledge an alert"),
            Err(err) => tracing::error!(%err, "cannot acknowledge an alert"),
        }
    }
}

fn write_batch(
    store: &Store,
    task: &Task,
    events: &[SeqEvent],
    tool_outputs: &[(String, String)],
    wire: &[SeqEvent],
    announce: Announce,
    setting: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let recorded = Recorded { task: Some(task), events, tool_outputs, wire: &[], announce: false, setting };
    match announce {
        Announce::No => store.record(Recorded { wire, ..recorded }),
        Announce::Before => store.record(Recorded { wire, announce: true, ..recorded }),
        Announce::After => {
            store.record(Recorded { wire, ..recorded })?;
            store.save_task(task)
        }
    }
}

/// Writes the outgoing form of a task's events that have none yet (its redaction was cut short
/// by a crash, or it was recorded before the outbox existed). Only for tasks no recorder writes
/// to any more. Blocking.
pub(crate) fn backfill_wire(store: &Store, redactor: Arc<Redactor>, task: &Task) -> Result<(), StoreError> {
    let mut after = store.last_wire_seq(&task.id)?;
    if after >= task.last_seq {
        return Ok(());
    }
    let mut wire = StreamRedactor::new(redactor, WIRE_HOLD);
    loop {
        let page = store.events_after(&task.id, after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for event in page {
            out.extend(wire.push(event.seq, event.event, now));
        }
        store.append_wire_events(&task.id, &out)?;
    }
    store.append_wire_events(&task.id, &wire.finish())
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
