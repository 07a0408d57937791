//! Container runs (SPEC 10): one row per container task, its one-time agent key, the seq offset
//! of the agent's events, and the owner's secrets (stored encrypted: see `crate::secrets`).
//!
//! A run is `queued` until the supervisor claims it (`starting`), `running` once its container
//! exists, and `ended` when the container is gone. The queue of runs is this table: it is
//! bounded by `[runner] max_queued` at creation.

use chrono::{TimeZone, Utc};
use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::Timestamp;
use rusqlite::{params, OptionalExtension};

use super::{hash_secret, random_hex, CreatedKey, Db, Result, StoreError};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Starting,
    Running,
    Ended,
}

impl RunState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Ended => "ended",
        }
    }

    pub(crate) fn parse(s: &str) -> RunState {
        match s {
            "queued" => RunState::Queued,
            "starting" => RunState::Starting,
            "running" => RunState::Running,
            _ => RunState::Ended,
        }
    }
}

/// One container run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub task_id: String,
    pub user: String,
    pub clone_url: String,
    pub state: RunState,
    pub container_id: Option<String>,
    pub key_id: Option<String>,
    /// Events the relay wrote before the agent's first: the agent's `seq` n is stored as
    /// `n + seq_offset`.
    pub seq_offset: u64,
    /// The ref the clone checks out (a follow-up starts where its conversation's last push
    /// left it); the default branch when `None`.
    pub checkout: Option<String>,
    /// The branch the run pushed (`flightdeck/<taskId>`), once it ended.
    pub pushed_branch: Option<String>,
    /// Whether the container's Claude state was kept when it ended (see
    /// [`Db::set_run_outcome`]): a follow-up resumes the session from it.
    pub home_kept: bool,
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let state: String = r.get(3)?;
    Ok(Run {
        task_id: r.get(0)?,
        user: r.get(1)?,
        clone_url: r.get(2)?,
        state: RunState::parse(&state),
        container_id: r.get(4)?,
        key_id: r.get(5)?,
        seq_offset: r.get::<_, i64>(6)? as u64,
        checkout: r.get(7)?,
        pushed_branch: r.get(8)?,
        home_kept: r.get(9)?,
    })
}

/// A stored secret: `(name, nonce, ciphertext)`.
pub type SealedSecret = (String, Vec<u8>, Vec<u8>);

const RUN_COLUMNS: &str =
    "task_id, user, clone_url, state, container_id, key_id, seq_offset, checkout, pushed_branch, home IS NOT NULL";

impl Db {
    /// This relay's instance id (made once per database): it labels the containers it starts,
    /// so a sweep never touches another relay's.
    pub fn instance_id(&self) -> Result<String> {
        let id: i64 = self.conn.query_row("SELECT value FROM meta WHERE name = 'instance'", [], |r| r.get(0))?;
        Ok(format!("{id:012}"))
    }

    pub fn add_run(&self, user: &str, task_id: &str, clone_url: &str, checkout: Option<&str>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO runs (task_id, user, clone_url, state, created_ms, checkout)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
            params![task_id, user, clone_url, Utc::now().timestamp_millis(), checkout],
        )?;
        Ok(())
    }

    /// What an ended run leaves its follow-ups: the branch it pushed and the container's Claude
    /// state (sealed by the caller).
    pub fn set_run_outcome(&self, task_id: &str, pushed_branch: Option<&str>, home: Option<&[u8]>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET pushed_branch = ?2, home = ?3 WHERE task_id = ?1",
            params![task_id, pushed_branch, home],
        )?;
        Ok(())
    }

    /// The Claude state an ended run kept (sealed), if any.
    pub fn run_home(&self, task_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT home FROM runs WHERE task_id = ?1", [task_id], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
    }

    pub fn run(&self, task_id: &str) -> Result<Option<Run>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE task_id = ?1"), [task_id], run_row)
            .optional()?)
    }

    /// Runs waiting for a container, of all users.
    pub fn queued_runs(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM runs WHERE state = 'queued'", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Claims the oldest queued run whose task is still queued (`starting`); a run whose task
    /// was cancelled meanwhile is ended on the way.
    pub fn claim_next_run(&self) -> Result<Option<Run>> {
        loop {
            let next = self
                .conn
                .query_row(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'queued' ORDER BY created_ms, task_id LIMIT 1"
                    ),
                    [],
                    run_row,
                )
                .optional()?;
            let Some(mut run) = next else { return Ok(None) };
            let status: Option<String> = self
                .conn
                .query_row("SELECT status FROM tasks WHERE id = ?1", [&run.task_id], |r| r.get(0))
                .optional()?;
            let next_state = if status.as_deref() == Some("queued") { RunState::Starting } else { RunState::Ended };
            self.set_run_state(&run.task_id, next_state)?;
            if next_state == RunState::Starting {
                run.state = next_state;
                return Ok(Some(run));
            }
        }
    }

    pub fn set_run_state(&self, task_id: &str, state: RunState) -> Result<()> {
        self.conn.execute("UPDATE runs SET state = ?2 WHERE task_id = ?1", params![task_id, state.as_str()])?;
        Ok(())
    }

    pub fn set_run_container(&self, task_id: &str, container_id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET container_id = ?2, state = 'running' WHERE task_id = ?1",
            params![task_id, container_id],
        )?;
        Ok(())
    }

    pub fn set_run_seq_offset(&self, task_id: &str, offset: u64) -> Result<()> {
        self.conn.execute("UPDATE runs SET seq_offset = ?2 WHERE task_id = ?1", params![task_id, offset as i64])?;
        Ok(())
    }

    /// Runs a previous process of this relay left `starting` or `running`.
    pub fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('starting', 'running') ORDER BY created_ms"
        ))?;
        let rows = stmt.query_map([], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A one-time agent key bound to `task_id` (SPEC 10): 256 random bits, stored hashed.
    pub fn create_task_key(&mut self, user: &str, task_id: &str) -> Result<CreatedKey> {
        if !self.user_exists(user)? {
            return Err(StoreError::NoUser(user.into()));
        }
        let secret = format!("fdk_{}", random_hex(32));
        let id = random_hex(6);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO keys (id, user, scope, hash, prefix, created_at, task_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                user,
                KeyScope::Agent.as_str(),
                hash_secret(&secret),
                &secret[..12],
                super::now_text(),
                task_id
            ],
        )?;
        tx.execute("UPDATE runs SET key_id = ?2 WHERE task_id = ?1", params![task_id, id])?;
        tx.commit()?;
        Ok(CreatedKey { id, secret })
    }

    // ----- secrets ---------------------------------------------------------------------------

    /// Stores a secret unless `user` has `max` of them and `name` is not one (false).
    pub fn put_secret(&self, user: &str, name: &str, nonce: &[u8], value: &[u8], max: usize) -> Result<bool> {
        self.transaction(|db| {
            let names = db.secret_names(user)?;
            if names.len() >= max && !names.iter().any(|(n, _)| n == name) {
                return Ok(false);
            }
            db.write_secret(user, name, nonce, value)?;
            Ok(true)
        })
    }

    fn write_secret(&self, user: &str, name: &str, nonce: &[u8], value: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT INTO secrets (user, name, nonce, value, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user, name) DO UPDATE SET nonce = excluded.nonce, value = excluded.value,
             updated_ms = excluded.updated_ms",
            params![user, name, nonce, value, Utc::now().timestamp_millis()],
        )?;
        Ok(())
    }

    /// Names and update times of a user's secrets.
    pub fn secret_names(&self, user: &str) -> Result<Vec<(String, Timestamp)>> {
        let mut stmt = self.conn.prepare("SELECT name, updated_ms FROM secrets WHERE user = ?1 ORDER BY name")?;
        let rows = stmt.query_map([user], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, updated) = row?;
            out.push((name, Utc.timestamp_millis_opt(updated).single().unwrap_or_default()));
        }
        Ok(out)
    }

    /// Every secret of a user, still encrypted.
    pub fn sealed_secrets(&self, user: &str) -> Result<Vec<SealedSecret>> {
        let mut stmt = self.conn.prepare("SELECT name, nonce, value FROM secrets WHERE user = ?1 ORDER BY name")?;
        let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_secret(&self, user: &str, name: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM secrets WHERE user = ?1 AND name = ?2", [user, name])? > 0)
    }
}
