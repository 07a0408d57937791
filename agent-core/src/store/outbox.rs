//! The outbox of the relay link: which tasks the relay may still lack.
//!
//! Events are never copied into a separate queue: `task_events` is the outbox. `relay_sync`
//! records, per task, the highest `seq` the relay confirmed (from `welcome.lastSeqs`) and whether
//! the relay is known to hold the task's final state. A task without a confirmed row is resent
//! (its latest state, then its events after `relay_seq`) on every connection until confirmed.

use flightdeck_protocol::Task;
use rusqlite::params;

use super::{json_rows, Result, Store};

impl Store {
    /// Tasks the relay is not known to hold completely, oldest first.
    pub fn unconfirmed_tasks(&self) -> Result<Vec<Task>> {
        json_rows(
            &self.conn(),
            "SELECT t.json FROM tasks t LEFT JOIN relay_sync s ON s.task_id = t.id
             WHERE s.confirmed IS NULL OR s.confirmed = 0
             ORDER BY t.created_at",
            [],
        )
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
}
