//! The outbox of the relay link: what to send, in the order it happened, and which tasks the
//! relay may still lack.
//!
//! The `outbox` table is one ordered queue of everything the link sends about tasks and alerts:
//! - `event` rows: a task event as it leaves the machine (the recorder writes the redacted form
//!   here in the same transaction as the original in `task_events`; the two share `seq`),
//! - `task` and `alert` rows: a reference to a task or alert whose latest state is to be sent
//!   (the link reads and redacts the current row when it gets there: the latest state wins).
//!
//! Rows are never dropped on the way: the link keeps a cursor (the last row id it sent) and reads
//! pages after it, woken by [`Store::outbox_head`]. A slow link or a burst delays rows; nothing is
//! lost, and the only bound is the disk. `relay_sync` records, per task, the highest `seq` the
//! relay confirmed (from `welcome.lastSeqs`) and whether the relay is known to hold the task's
//! final state; a task without a confirmed row is resent on every connection until confirmed.

use flightdeck_protocol::event::TaskEventRecord;
use flightdeck_protocol::rules::{fit_event, MAX_WIRE_EVENT_BYTES};
use flightdeck_protocol::{Alert, SeqEvent, Task, TaskEvent};
use rusqlite::{params, Connection, OptionalExtension};

/// Setting: tasks and alerts created before this time (RFC 3339, as `tasks.created_at`) stay on
/// this machine: the owner did not upload the history when the relay was turned on. Tasks that
/// have not ended go anyway. Absent: everything goes.
pub const RELAY_HISTORY_FROM: &str = "relay.history_from";
use tokio::sync::watch;

use super::{json_rows, seq_events, Result, Store};

/// One row of the outbox, with what the link needs to send it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxItem {
    /// A task event, already redacted.
    Event(TaskEventRecord),
    /// The task's current state (not redacted: the link redacts it before sending).
    Task(Task),
    /// The alert's current state (not redacted).
    Alert(Alert),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub item: OutboxItem,
}

/// What `outbox` rows reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboxKind {
    Task,
    Alert,
}

impl Store {
    /// The id of the newest outbox row; changes whenever rows are added.
    pub fn outbox_head(&self) -> watch::Receiver<i64> {
        self.outbox_head.subscribe()
    }

    /// The newest outbox row id now.
    pub fn outbox_head_id(&self) -> i64 {
        *self.outbox_head.borrow()
    }

    /// At most `limit` outbox rows after `after`, oldest first. A reference to a task or alert
    /// that no longer exists is skipped.
    pub fn outbox_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.id, o.kind, o.ref_id, o.seq, COALESCE(o.json, t.json, a.json)
             FROM outbox o
             LEFT JOIN tasks t ON o.kind = 'task' AND t.id = o.ref_id
             LEFT JOIN alerts a ON o.kind = 'alert' AND a.id = o.ref_id
             WHERE o.id > ?1 ORDER BY o.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, ref_id, seq, json) = row?;
            let Some(json) = json else { continue };
            let item = match kind.as_str() {
                "event" => OutboxItem::Event(TaskEventRecord {
                    task_id: ref_id,
                    seq: seq.unwrap_or_default() as u64,
                    event: serde_json::from_str(&json)?,
                }),
                "task" => OutboxItem::Task(serde_json::from_str(&json)?),
                "alert" => OutboxItem::Alert(serde_json::from_str(&json)?),
                _ => continue,
            };
            out.push(OutboxRow { id, item });
        }
        Ok(out)
    }

    /// At most `limit` of a task's events as they leave the machine, with `seq > after`.
    pub fn wire_events_after(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>> {
        let conn = self.conn();
        seq_events(
            &conn,
            "SELECT seq, json FROM outbox WHERE kind = 'event' AND ref_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![task_id, after as i64, limit as i64],
        )
    }

    /// The outgoing form of a task's last `done` and last `error` event (those that exist),
    /// earlier first.
    pub fn last_wire_outcomes(&self, task_id: &str) -> Result<Vec<TaskEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT json FROM outbox WHERE kind = 'event' AND ref_id = ?1
               AND (json LIKE '{\"kind\":\"done\"%' OR json LIKE '{\"kind\":\"error\"%')
             ORDER BY seq DESC LIMIT 8",
        )?;
        let rows = stmt.query_map([task_id], |r| r.get::<_, String>(0))?;
        let mut done = None;
        let mut error = None;
        for json in rows {
            match serde_json::from_str(&json?)? {
                event @ TaskEvent::Done { .. } if done.is_none() => done = Some(event),
                event @ TaskEvent::Error { .. } if error.is_none() => error = Some(event),
                _ => {}
            }
        }
        Ok(done.into_iter().chain(error).collect())
    }

    /// The highest `seq` of a task whose outgoing form is in the outbox (0: none).
    pub fn last_wire_seq(&self, task_id: &str) -> Result<u64> {
        let seq: Option<i64> = self
            .conn()
            .query_row("SELECT MAX(seq) FROM outbox WHERE kind = 'event' AND ref_id = ?1", [task_id], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Writes the outgoing form of events whose originals are already recorded (a task whose
    /// redaction was cut short by a crash, or recorded before the outbox existed).
    pub fn append_wire_events(&self, task_id: &str, wire: &[SeqEvent]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_wire(&tx, task_id, wire)?;
        let head = tx.last_insert_rowid();
        tx.commit()?;
        self.advance_outbox(head);
        Ok(())
    }

    /// Tasks the relay is not known to hold completely, oldest first; not those that ended
    /// before [`RELAY_HISTORY_FROM`].
    pub fn unconfirmed_tasks(&self) -> Result<Vec<Task>> {
        json_rows(
            &self.conn(),
            "SELECT t.json FROM tasks t LEFT JOIN relay_sync s ON s.task_id = t.id
             WHERE (s.confirmed IS NULL OR s.confirmed = 0)
               AND (t.status IN ('queued', 'running', 'waiting')
                    OR t.created_at >= COALESCE((SELECT value FROM settings WHERE key = ?1), ''))
             ORDER BY t.created_at",
            [RELAY_HISTORY_FROM],
        )
    }

    /// Since when tasks and alerts go to the relay (see [`RELAY_HISTORY_FROM`]); `None`: all.
    pub fn relay_history_from(&self) -> Result<Option<String>> {
        self.setting(RELAY_HISTORY_FROM)
    }

    /// Whether an item created at `created_at` stays local: before the history cut-off.
    pub fn before_relay_history(cut_off: Option<&str>, created_at: &chrono::DateTime<chrono::Utc>) -> bool {
        cut_off.is_some_and(|from| created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).as_str() < from)
    }

    /// Records what the relay said it holds of a task; `confirmed` when that is everything.
    pub fn set_relay_sync(&self, task_id: &str, relay_seq: u64, confirmed: bool) -> Result<()> {
        self.conn().execute(
            "INSERT INTO relay_sync (task_id, relay_seq, confirmed) VALUES (?1, ?2, ?3)
             ON CONFLICT (task_id) DO UPDATE SET relay_seq = excluded.relay_seq, confirmed = excluded.confirmed",
            params![task_id, relay_seq as i64, confirmed],
        )?;
        Ok(())
    }

    /// Wakes the link after a commit that added outbox rows up to `head`.
    pub(crate) fn advance_outbox(&self, head: i64) {
        self.outbox_head.send_if_modified(|current| {
            let newer = head > *current;
            if newer {
                *current = head;
            }
            newer
        });
    }
}

/// Inserts the outgoing form of events (a row already there for a `seq` is kept).
pub(crate) fn insert_wire(conn: &Connection, task_id: &str, wire: &[SeqEvent]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO outbox (kind, ref_id, seq, json) VALUES ('event', ?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )?;
    for event in wire {
        let mut json = serde_json::to_string(&event.event)?;
        if json.len() > MAX_WIRE_EVENT_BYTES {
            // One frame the relay refuses would hold up every later event: send it cut.
            let mut cut = event.event.clone();
            fit_event(&mut cut, MAX_WIRE_EVENT_BYTES);
            tracing::warn!(
                task = task_id,
                seq = event.seq,
                bytes = json.len(),
                "an event too big for one frame goes to the relay cut"
            );
            json = serde_json::to_string(&cut)?;
        }
        stmt.execute(params![task_id, event.seq as i64, json])?;
    }
    Ok(())
}

/// Queues the latest state of a task or alert for the link.
pub(crate) fn insert_ref(conn: &Connection, kind: OutboxKind, id: &str) -> Result<()> {
    let kind = match kind {
        OutboxKind::Task => "task",
        OutboxKind::Alert => "alert",
    };
    conn.prepare_cached("INSERT INTO outbox (kind, ref_id) VALUES (?1, ?2)")?.execute(params![kind, id])?;
    Ok(())
}
