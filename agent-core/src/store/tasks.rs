//! Tasks, their transcripts (events numbered by `seq`), and the full text of tool outputs
//! that events carry truncated.
//!
//! A task row keeps the whole `Task` as JSON plus the columns that lists filter on. Events are
//! keyed by `(task_id, seq)`, so writing one twice is harmless and "events after seq N" (what
//! the relay link resends after a reconnect) is one range scan.

use flightdeck_protocol::{Executor, SeqEvent, Task, TaskStatus};
use rusqlite::{params, OptionalExtension};

use super::outbox::{insert_ref, insert_wire, OutboxKind};
use super::{json_rows, seq_events, Result, Store};

/// One write of the recorder: see [`Store::record`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Recorded<'a> {
    pub task: Option<&'a Task>,
    /// The original events (the local transcript).
    pub events: &'a [SeqEvent],
    /// `(tool id, full output)` of tool outputs the events carry truncated.
    pub tool_outputs: &'a [(String, String)],
    /// The outgoing form of events (these or earlier ones held back by redaction), in `seq` order.
    pub wire: &'a [SeqEvent],
    /// Queue the task's new state for the relay link.
    pub announce: bool,
    /// A setting written in the same transaction (where a terminal session's transcript was
    /// read up to, so that its events and that position are saved together).
    pub setting: Option<(&'a str, &'a str)>,
}

/// Filters for [`Store::tasks`]; `limit` 0 means the default (50).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub executor: Option<Executor>,
    pub repo: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

impl Store {
    /// Inserts or replaces a task, and queues its new state for the relay link.
    pub fn save_task(&self, task: &Task) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        save_task(&tx, task)?;
        insert_ref(&tx, OutboxKind::Task, &task.id)?;
        let head = tx.last_insert_rowid();
        tx.commit()?;
        drop(conn);
        self.advance_outbox(head);
        Ok(())
    }

    /// Writes a batch of a task's events and the task itself (with its new `last_seq`) in one
    /// transaction: either both are on disk or neither is. Only the local transcript: see
    /// [`Store::record`] for what also goes to the relay.
    pub fn record_events(&self, task: &Task, events: &[SeqEvent]) -> Result<()> {
        self.record(Recorded { task: Some(task), events, ..Default::default() })
    }

    /// Writes what the recorder produced, in one transaction: the original events, the task,
    /// full tool outputs, the events' outgoing (redacted) form for the outbox, and, when
    /// `announce`, a reference that makes the link send the task's new state.
    pub fn record(&self, batch: Recorded<'_>) -> Result<()> {
        let Some(task) = batch.task else { return Ok(()) };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR REPLACE INTO task_events (task_id, seq, json) VALUES (?1, ?2, ?3)")?;
            for event in batch.events {
                stmt.execute(params![task.id, event.seq as i64, serde_json::to_string(&event.event)?])?;
            }
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO tool_outputs (task_id, tool_id, output) VALUES (?1, ?2, ?3)")?;
            for (tool_id, output) in batch.tool_outputs {
                stmt.execute(params![task.id, tool_id, output])?;
            }
        }
        save_task(&tx, task)?;
        if let Some((key, value)) = batch.setting {
            super::settings::set_setting(&tx, key, value)?;
        }
        // The task reference goes before the events: the relay must know a task before its events.
        if batch.announce {
            insert_ref(&tx, OutboxKind::Task, &task.id)?;
        }
        insert_wire(&tx, &task.id, batch.wire)?;
        let head = tx.last_insert_rowid();
        tx.commit()?;
        drop(conn);
        self.advance_outbox(head);
        Ok(())
    }

    pub fn task(&self, id: &str) -> Result<Option<Task>> {
        let json: Option<String> =
            self.conn().query_row("SELECT json FROM tasks WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    /// Tasks, newest first, with the total that match the filter.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<(Vec<Task>, u64)> {
        let conn = self.conn();
        let status = filter.status.map(TaskStatus::as_str);
        let executor = filter.executor.map(Executor::as_str);
        let where_clause =
            "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR executor = ?2) AND (?3 IS NULL OR repo = ?3)";
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM tasks {where_clause}"),
            params![status, executor, filter.repo],
            |r| r.get(0),
        )?;
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let tasks = json_rows(
            &conn,
            &format!("SELECT json FROM tasks {where_clause} ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"),
            params![status, executor, filter.repo, limit, filter.offset as i64],
        )?;
        Ok((tasks, total as u64))
    }

    /// Tasks that are `queued`, `running` or `waiting` according to the database.
    pub fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        json_rows(
            &self.conn(),
            "SELECT json FROM tasks WHERE status IN ('queued', 'running', 'waiting') ORDER BY created_at",
            [],
        )
    }

    /// The whole transcript of a task, in `seq` order.
    pub fn transcript(&self, task_id: &str) -> Result<Vec<SeqEvent>> {
        self.events_after(task_id, 0, u32::MAX)
    }

    /// At most `limit` events of a task with `seq > after`, in order: a page of a transcript
    /// (the polling fallback of the REST API, catching up after a lagged subscription).
    pub fn events_after(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>> {
        let conn = self.conn();
        seq_events(
            &conn,
            "SELECT seq, json FROM task_events WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![task_id, after as i64, limit as i64],
        )
    }

    /// Keeps the full output of a tool whose `tool_done` event carries it truncated.
    pub fn save_tool_output(&self, task_id: &str, tool_id: &str, output: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO tool_outputs (task_id, tool_id, output) VALUES (?1, ?2, ?3)",
            params![task_id, tool_id, output],
        )?;
        Ok(())
    }

    /// The full output of a tool, when it was truncated in its event.
    pub fn tool_output(&self, task_id: &str, tool_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT output FROM tool_outputs WHERE task_id = ?1 AND tool_id = ?2",
                params![task_id, tool_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}

fn save_task(conn: &rusqlite::Connection, task: &Task) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tasks (id, status, executor, repo, created_at, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, executor = excluded.executor,
            repo = excluded.repo, created_at = excluded.created_at, json = excluded.json",
    )?
    .execute(params![
        task.id,
        task.status.as_str(),
        task.executor.as_str(),
        task.repo,
        task.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        serde_json::to_string(task)?
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use flightdeck_protocol::{TaskEvent, TaskPayload, TaskSource};

    use super::*;

    fn task(id: &str, repo: &str, executor: Executor, status: TaskStatus, minute: u32) -> Task {
        let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        Task { status, ..Task::queued(id, id, repo, executor, TaskPayload::default(), TaskSource::Local, created) }
    }

    #[test]
    fn task_list_filters_and_totals() {
        let store = Store::open_in_memory().unwrap();
        store.save_task(&task("a", "web", Executor::Shell, TaskStatus::Completed, 1)).unwrap();
        store.save_task(&task("b", "web", Executor::Claude, TaskStatus::Failed, 2)).unwrap();
        store.save_task(&task("c", "api", Executor::Claude, TaskStatus::Completed, 3)).unwrap();
        let ids = |f: TaskFilter| {
            let (tasks, total) = store.tasks(&f).unwrap();
            (tasks.into_iter().map(|t| t.id).collect::<Vec<_>>().join(","), total)
        };
        let cases = [
            (TaskFilter::default(), ("c,b,a", 3)),
            (TaskFilter { repo: Some("web".into()), ..Default::default() }, ("b,a", 2)),
            (TaskFilter { status: Some(TaskStatus::Completed), ..Default::default() }, ("c,a", 2)),
            (TaskFilter { executor: Some(Executor::Claude), limit: 1, ..Default::default() }, ("c", 2)),
            (TaskFilter { executor: Some(Executor::Claude), limit: 1, offset: 1, ..Default::default() }, ("b", 2)),
        ];
        for (filter, (want, total)) in cases {
            assert_eq!(ids(filter.clone()), (want.to_string(), total), "{filter:?}");
        }
    }

    #[test]
    fn events_are_kept_in_order_and_idempotent() {
        let store = Store::open_in_memory().unwrap();
        let mut t = task("a", "web", Executor::Shell, TaskStatus::Running, 1);
        let events: Vec<SeqEvent> = (1..=5)
            .map(|seq| SeqEvent {
                seq,
                event: TaskEvent::Chunk {
                    text: format!("line {seq}"),
                    stream: flightdeck_protocol::event::ChunkStream::Stdout,
                },
            })
            .collect();
        t.last_seq = 3;
        store.record_events(&t, &events[..3]).unwrap();
        t.last_seq = 5;
        store.record_events(&t, &events[2..]).unwrap();
        assert_eq!(store.transcript("a").unwrap(), events);
        assert_eq!(store.events_after("a", 3, 10).unwrap(), events[3..].to_vec());
        assert_eq!(store.events_after("a", 1, 2).unwrap(), events[1..3].to_vec());
        assert_eq!(store.task("a").unwrap().unwrap().last_seq, 5);
        assert_eq!(store.unfinished_tasks().unwrap().len(), 1);
    }
}
