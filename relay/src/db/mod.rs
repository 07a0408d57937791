//! The relay's SQLite database: users, keys, sessions, and the cache of what agents reported
//! (agents, repos, tasks, transcripts, alerts) plus HUD settings.
//!
//! Conversations and pending decisions (SPEC 8) are in `db/conversations.rs`.
//!
//! Every function here is blocking. The server reaches them only through
//! [`crate::store::SqliteStore`], which owns the one `Db` of a process on a dedicated thread
//! (never the async executor threads), behind the [`crate::store::Store`] trait. Nothing
//! depends on that thread for ordering: events carry seqs and change numbers (see
//! [`crate::hub`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use flightdeck_protocol::api::{HudSettings, KeyScope};
use flightdeck_protocol::realtime::StoredSeqEvent;
use flightdeck_protocol::{AgentInfo, AgentState, Alert, RepoStatus, SeqEvent, Task, TaskEvent, Timestamp};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

mod conversations;
mod push;
mod runs;

pub use conversations::PendingDecision;
pub(crate) use conversations::{decided_by_from, decided_by_text};
pub(crate) use push::EVENT_MEMORY_MS as PUSH_EVENT_MEMORY_MS;
pub use runs::{Run, RunState, SealedSecret};

/// A database failure. `Busy` is retryable: another process (an admin command) holds the lock.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt row: {0}")]
    Json(#[from] serde_json::Error),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}: create it with `flightdeck-relay user add {0}`")]
    NoUser(String),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// A failure of a database server (PostgreSQL), as its driver described it.
    #[error("database error: {message}")]
    Server { message: String, retryable: bool },
    /// The store was shut down (or its thread died) while a call waited.
    #[error("the database is closed")]
    Closed,
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DatabaseBusy || e.code == rusqlite::ErrorCode::DatabaseLocked
            }
            StoreError::Server { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who a request or socket acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub scope: KeyScope,
    pub key_id: String,
    /// The task a one-time key of a container run is bound to (SPEC 10): such an agent may
    /// only report that task.
    pub task_id: Option<String>,
}

/// A key as `key list` shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub user: String,
    pub scope: KeyScope,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A freshly created key: the secret is shown once and only its hash is kept.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    pub secret: String,
}

/// Filters of `GET /api/cockpit/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub executor: Option<String>,
    pub repo: Option<String>,
}

/// Secrets are hashed with SHA-256: keys carry 256 random bits, so no slow hash is needed.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub(crate) fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn ms(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('key_generation', 0);
CREATE TABLE users (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys(id),
    expires_ms INTEGER NOT NULL
);
CREATE TABLE agents (
    user TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    online INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user, agent_id)
);
CREATE TABLE repos (
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    status TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user, name)
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    repo TEXT NOT NULL,
    agent_id TEXT,
    executor TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    contig_seq INTEGER NOT NULL DEFAULT 0,
    json TEXT NOT NULL
);
CREATE INDEX tasks_by_user ON tasks (user, created_ms DESC, id DESC);
CREATE INDEX tasks_by_repo ON tasks (user, repo, created_ms DESC, id DESC);
CREATE TABLE task_events (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE TABLE alerts (
    user TEXT NOT NULL,
    id TEXT NOT NULL,
    severity TEXT NOT NULL,
    acknowledged INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user, id)
);
CREATE INDEX alerts_by_user ON alerts (user, created_ms DESC);
CREATE TABLE hud_settings (
    user TEXT NOT NULL,
    repo TEXT NOT NULL,
    public INTEGER NOT NULL,
    embed_allowed INTEGER NOT NULL,
    PRIMARY KEY (user, repo)
);
"#,
    r#"
ALTER TABLE agents ADD COLUMN conn TEXT;
"#,
    // SPEC 8: conversations (a task recorded before them is its own) and the owner's decisions
    // not yet recorded in their task's transcript.
    r#"
ALTER TABLE tasks ADD COLUMN conversation_id TEXT NOT NULL DEFAULT '';
UPDATE tasks SET conversation_id = COALESCE(NULLIF(json_extract(json, '$.conversationId'), ''), id);
CREATE INDEX tasks_by_conversation ON tasks (user, conversation_id, created_ms, id);
CREATE TABLE pending_decisions (
    user TEXT NOT NULL,
    task_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    behavior TEXT NOT NULL,
    updated_input TEXT,
    message TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (task_id, request_id)
);
"#,
    // SPEC 10: container runs (one row per container task), the one-time agent keys bound to
    // them, per-user secrets (encrypted; the key is outside the database), and this relay's
    // instance id, which labels the containers it starts.
    r#"
ALTER TABLE keys ADD COLUMN task_id TEXT;
CREATE TABLE runs (
    task_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    container_id TEXT,
    key_id TEXT,
    seq_offset INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_state ON runs (state, created_ms);
CREATE TABLE secrets (
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    nonce BLOB NOT NULL,
    value BLOB NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (user, name)
);
INSERT INTO meta (name, value) VALUES ('instance', abs(random()) % 1000000000000);
"#,
    // Per user, how many changes of latest state (agents, repos, tasks, alerts, HUDs) were
    // published: the order of those events, by data (see `crate::hub`).
    r#"
CREATE TABLE changes (owner TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // Until when each node of a multi-node relay counts as alive (SPEC 11).
    r#"
CREATE TABLE nodes (node_id TEXT PRIMARY KEY, alive_until_ms INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // SPEC 13: push. The VAPID key (one row), where each user's notifications go, the events
    // already enqueued (each once, whichever node sees it), the outbox (claimed with a lease),
    // action tokens (hashed), and who decided a pending decision (`push`, or NULL: the owner).
    r#"
ALTER TABLE pending_decisions ADD COLUMN decided_by TEXT;
CREATE TABLE push_vapid (id INTEGER PRIMARY KEY CHECK (id = 1), private_key BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE push_targets (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    secret TEXT,
    device TEXT,
    kinds TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX push_targets_by_user ON push_targets (user, created_ms);
CREATE TABLE push_events (event_key TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE INDEX push_events_by_age ON push_events (created_ms);
CREATE TABLE push_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    target_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    topic TEXT,
    ttl_secs INTEGER NOT NULL,
    urgency TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    give_up_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_ms);
CREATE INDEX push_outbox_by_target ON push_outbox (target_id);
CREATE TABLE push_tokens (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    task_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX push_tokens_by_request ON push_tokens (task_id, request_id);
"#,
    // A container run's follow-up (issue 22): the ref its clone checks out, the branch it
    // pushed, and the container's Claude state (sealed), which the next turn's container gets.
    r#"
ALTER TABLE runs ADD COLUMN checkout TEXT;
ALTER TABLE runs ADD COLUMN pushed_branch TEXT;
ALTER TABLE runs ADD COLUMN home BLOB;
"#,
];

/// The database handle. Not `Sync`: the server keeps it on one thread (see `store::sqlite`).
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens (creating if needed) `relay.sqlite3` in `data_dir` and applies migrations.
    ///
    /// The directory is made `0700` and the database files `0600`, also when they already
    /// exist with looser modes: they hold key hashes, sessions and transcripts.
    pub fn open_in(data_dir: &Path) -> Result<Db> {
        let dir_error = |e| StoreError::DataDir(data_dir.display().to_string(), e);
        private_dir(data_dir).map_err(dir_error)?;
        Db::open(&data_dir.join("relay.sqlite3"))
    }

    pub fn open(path: &Path) -> Result<Db> {
        private_files(path).map_err(|e| StoreError::DataDir(path.display().to_string(), e))?;
        let conn = Connection::open(path)?;
        // Admin commands run in other processes against the same file while `serve` runs.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Folds the WAL back into the database file (on shutdown).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    // ----- users and keys ------------------------------------------------------------------

    pub fn add_user(&self, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)", params![name, now_text()])?;
        if n == 0 {
            return Err(StoreError::UserExists(name.into()));
        }
        Ok(())
    }

    pub fn user_exists(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
    }

    /// A new key: `fdk_` and 32 random bytes in hex (256 bits). Only its hash is stored.
    pub fn create_key(&self, user: &str, scope: KeyScope) -> Result<CreatedKey> {
        if !self.user_exists(user)? {
            return Err(StoreError::NoUser(user.into()));
        }
        let secret = format!("fdk_{}", random_hex(32));
        let id = random_hex(6);
        let prefix = secret[..12].to_string();
        self.conn.execute(
            "INSERT INTO keys (id, user, scope, hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, user, scope.as_str(), hash_secret(&secret), prefix, now_text()],
        )?;
        Ok(CreatedKey { id, secret })
    }

    pub fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, user, scope, prefix, created_at, revoked_at FROM keys ORDER BY created_at, id")?;
        let rows = stmt.query_map([], |r| {
            let scope: String = r.get(2)?;
            Ok(KeyRow {
                id: r.get(0)?,
                user: r.get(1)?,
                scope: KeyScope::parse(&scope).unwrap_or(KeyScope::Viewer),
                prefix: r.get(3)?,
                created_at: r.get(4)?,
                revoked_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a key and its sessions; bumps the generation the server polls. False when no
    /// such live key exists.
    pub fn revoke_key(&mut self, id: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let n = tx
            .execute("UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, now_text()])?;
        if n > 0 {
            tx.execute("DELETE FROM sessions WHERE key_id = ?1", [id])?;
            tx.execute("UPDATE meta SET value = value + 1 WHERE name = 'key_generation'", [])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Grows each time a key is revoked, by any process.
    pub fn key_generation(&self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE name = 'key_generation'", [], |r| r.get(0))?)
    }

    /// Counts one more change of `user`'s latest state and returns its number (from 1).
    pub fn next_change(&self, user: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "INSERT INTO changes (owner, n) VALUES (?1, 1) ON CONFLICT (owner) DO UPDATE SET n = n + 1 RETURNING n",
            params![user],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The number of `user`'s last change (0 before the first).
    pub fn changes(&self, user: &str) -> Result<u64> {
        let n: Option<i64> =
            self.conn.query_row("SELECT n FROM changes WHERE owner = ?1", params![user], |r| r.get(0)).optional()?;
        Ok(n.unwrap_or(0) as u64)
    }

    pub fn revoked_key_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM keys WHERE revoked_at IS NOT NULL")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn principal_by_key(&self, secret: &str) -> Result<Option<Principal>> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, scope, id, task_id FROM keys WHERE hash = ?1 AND revoked_at IS NULL",
                [hash_secret(secret)],
                principal_row,
            )
            .optional()?)
    }

    /// A login session for `key_id`; returns the cookie secret (stored hashed).
    pub fn create_session(&self, key_id: &str, ttl: Duration) -> Result<String> {
        let secret = random_hex(32);
        let expires = Utc::now().timestamp_millis() + ttl.as_millis() as i64;
        self.conn.execute(
            "INSERT INTO sessions (hash, key_id, expires_ms) VALUES (?1, ?2, ?3)",
            params![hash_secret(&secret), key_id, expires],
        )?;
        Ok(secret)
    }

    pub fn principal_by_session(&self, secret: &str) -> Result<Option<Principal>> {
        Ok(self
            .conn
            .query_row(
                "SELECT k.user, k.scope, k.id, k.task_id FROM sessions s JOIN keys k ON k.id = s.key_id
                 WHERE s.hash = ?1 AND s.expires_ms > ?2 AND k.revoked_at IS NULL",
                params![hash_secret(secret), Utc::now().timestamp_millis()],
                principal_row,
            )
            .optional()?)
    }

    pub fn delete_session(&self, secret: &str) -> Result<()> {
        self.conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash_secret(secret)])?;
        Ok(())
    }

    // ----- agents --------------------------------------------------------------------------

    /// On start no agent is connected, whatever the last run left behind.
    pub fn mark_all_agents_offline(&self) -> Result<()> {
        self.conn.execute("UPDATE agents SET online = 0", [])?;
        Ok(())
    }

    pub fn node_alive_until(&self, node_id: &str, until_ms: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO nodes (node_id, alive_until_ms) VALUES (?1, ?2)
             ON CONFLICT (node_id) DO UPDATE SET alive_until_ms = max(alive_until_ms, excluded.alive_until_ms)",
            params![node_id, until_ms],
        )?;
        Ok(())
    }

    pub fn live_nodes(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT node_id FROM nodes WHERE alive_until_ms >= ?1 ORDER BY node_id")?;
        let rows = stmt.query_map(params![now_ms], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn online_agent_conns(&self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT user, agent_id, conn FROM agents WHERE online = 1 AND conn IS NOT NULL ORDER BY user, agent_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn upsert_agent(&self, user: &str, info: &AgentInfo, online: bool) -> Result<()> {
        self.conn.execute(
            "INSERT INTO agents (user, agent_id, online, json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, agent_id) DO UPDATE SET online = excluded.online, json = excluded.json",
            params![user, info.agent_id, online, serde_json::to_string(info)?],
        )?;
        Ok(())
    }

    /// Records which connection (node and socket) an agent is on now.
    pub fn set_agent_conn(&self, user: &str, agent_id: &str, conn: &str) -> Result<()> {
        self.conn
            .execute("UPDATE agents SET conn = ?3 WHERE user = ?1 AND agent_id = ?2", params![user, agent_id, conn])?;
        Ok(())
    }

    /// Marks an agent offline if `conn` is still its connection (a newer one, maybe on another
    /// node, may have taken over). Returns the agent as it is now offline.
    pub fn mark_agent_offline(&self, user: &str, agent_id: &str, conn: &str) -> Result<Option<AgentInfo>> {
        let n = self.conn.execute(
            "UPDATE agents SET online = 0 WHERE user = ?1 AND agent_id = ?2 AND conn = ?3",
            params![user, agent_id, conn],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.agent(user, agent_id)
    }

    pub fn agent(&self, user: &str, agent_id: &str) -> Result<Option<AgentInfo>> {
        let row: Option<(String, bool)> = self
            .conn
            .query_row("SELECT json, online FROM agents WHERE user = ?1 AND agent_id = ?2", [user, agent_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(json, online)| agent_from(&json, online)).transpose()
    }

    pub fn agent_online(&self, user: &str, agent_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT online FROM agents WHERE user = ?1 AND agent_id = ?2", [user, agent_id], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    pub fn agents(&self, user: &str) -> Result<Vec<AgentInfo>> {
        let mut stmt = self.conn.prepare("SELECT json, online FROM agents WHERE user = ?1 ORDER BY agent_id")?;
        let rows = stmt.query_map([user], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, online) = row?;
            out.push(agent_from(&json, online)?);
        }
        Ok(out)
    }

    // ----- repos ---------------------------------------------------------------------------

    /// The repo's latest status and the agent that has it.
    pub fn repo(&self, user: &str, name: &str) -> Result<Option<(RepoStatus, String)>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT json, agent_id FROM repos WHERE user = ?1 AND name = ?2", [user, name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(json, agent)| Ok((serde_json::from_str(&json)?, agent))).transpose()
    }

    pub fn upsert_repo(&self, user: &str, agent_id: &str, repo: &RepoStatus) -> Result<()> {
        self.conn.execute(
            "INSERT INTO repos (user, name, agent_id, status, json) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user, name) DO UPDATE SET agent_id = excluded.agent_id, status = excluded.status,
             json = excluded.json",
            params![user, repo.name, agent_id, repo.status.as_str(), serde_json::to_string(repo)?],
        )?;
        Ok(())
    }

    pub fn delete_repo(&self, user: &str, name: &str) -> Result<()> {
        self.conn.execute("DELETE FROM repos WHERE user = ?1 AND name = ?2", [user, name])?;
        Ok(())
    }

    pub fn repos(&self, user: &str, status: Option<&str>, agent_id: Option<&str>) -> Result<Vec<RepoStatus>> {
        let mut stmt = self.conn.prepare(
            "SELECT json FROM repos WHERE user = ?1 AND (?2 IS NULL OR status = ?2)
             AND (?3 IS NULL OR agent_id = ?3) ORDER BY name",
        )?;
        let rows = stmt.query_map(params![user, status, agent_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok(out)
    }

    /// A page of `repos` (by name) and how many match in all.
    pub fn repos_page(
        &self,
        user: &str,
        status: Option<&str>,
        agent_id: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<RepoStatus>, u64)> {
        let filter = "user = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR agent_id = ?3)";
        let total: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM repos WHERE {filter}"),
            params![user, status, agent_id],
            |r| r.get(0),
        )?;
        let mut stmt =
            self.conn.prepare(&format!("SELECT json FROM repos WHERE {filter} ORDER BY name LIMIT ?4 OFFSET ?5"))?;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![user, status, agent_id, limit, offset], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok((out, total as u64))
    }

    /// True when an online agent of `user` has `repo`.
    pub fn repo_agent_online(&self, user: &str, repo: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT r.agent_id FROM repos r JOIN agents a ON a.user = r.user AND a.agent_id = r.agent_id
                 WHERE r.user = ?1 AND r.name = ?2 AND a.online = 1",
                [user, repo],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ----- tasks ---------------------------------------------------------------------------

    pub fn task(&self, user: &str, id: &str) -> Result<Option<Task>> {
        let row: Option<(String, i64)> = self
            .conn
            .query_row("SELECT json, contig_seq FROM tasks WHERE user = ?1 AND id = ?2", [user, id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(json, seq)| task_from(&json, seq)).transpose()
    }

    /// The user a task id belongs to, whoever that is.
    pub fn task_user(&self, id: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT user FROM tasks WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    /// Stores the latest state of a task; `last_seq` is always the relay's own count. A task
    /// that ended has no pending decisions any more.
    pub fn upsert_task(&self, user: &str, task: &Task) -> Result<Task> {
        let now = Utc::now().timestamp_millis();
        self.conn.execute(
            "INSERT INTO tasks (id, user, repo, agent_id, executor, status, created_ms, updated_ms, json,
             conversation_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET repo = excluded.repo, agent_id = excluded.agent_id,
             executor = excluded.executor, status = excluded.status, created_ms = excluded.created_ms,
             updated_ms = excluded.updated_ms, json = excluded.json, conversation_id = excluded.conversation_id",
            params![
                task.id,
                user,
                task.repo,
                task.agent_id,
                task.executor.as_str(),
                task.status.as_str(),
                ms(&task.created_at),
                now,
                serde_json::to_string(task)?,
                task.conversation(),
            ],
        )?;
        if task.status.is_terminal() {
            self.delete_pending_decisions_of(&task.id)?;
        }
        Ok(self.task(user, &task.id)?.expect("the task was just written"))
    }

    pub fn list_tasks(&self, user: &str, f: &TaskFilter, limit: u32, offset: u64) -> Result<(Vec<Task>, u64)> {
        let filter = "user = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR executor = ?3)
                      AND (?4 IS NULL OR repo = ?4)";
        let total: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM tasks WHERE {filter}"),
            params![user, f.status, f.executor, f.repo],
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT json, contig_seq FROM tasks WHERE {filter} ORDER BY created_ms DESC, id DESC LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt.query_map(params![user, f.status, f.executor, f.repo, limit, offset as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, seq) = row?;
            out.push(task_from(&json, seq)?);
        }
        Ok((out, total as u64))
    }

    /// Queued tasks that `agent_id` should run: in one of `repos`, and meant for that agent or
    /// for any.
    pub fn queued_tasks_for(&self, user: &str, agent_id: &str, repos: &[String]) -> Result<Vec<Task>> {
        let mut stmt = self.conn.prepare(
            "SELECT json, contig_seq FROM tasks WHERE user = ?1 AND status = 'queued' AND repo = ?2
             AND (agent_id IS NULL OR agent_id = ?3) ORDER BY created_ms, id",
        )?;
        let mut out = Vec::new();
        for repo in repos {
            let rows =
                stmt.query_map(params![user, repo, agent_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (json, seq) = row?;
                out.push(task_from(&json, seq)?);
            }
        }
        Ok(out)
    }

    /// The task a repo's HUD shows: its newest.
    pub fn hud_task(&self, user: &str, repo: &str) -> Result<Option<Task>> {
        let row: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT json, contig_seq FROM tasks WHERE user = ?1 AND repo = ?2
                 ORDER BY created_ms DESC, id DESC LIMIT 1",
                [user, repo],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(json, seq)| task_from(&json, seq)).transpose()
    }

    /// Runs `f` in one transaction: the statements of this `Db` inside `f` are committed
    /// together when it returns `Ok`, and rolled back when it fails. (The transaction itself
    /// stays inside `db`, so callers never see the SQLite driver.)
    pub fn transaction<R, E>(&self, f: impl FnOnce(&Db) -> std::result::Result<R, E>) -> std::result::Result<R, E>
    where
        E: From<StoreError>,
    {
        let tx = self.conn.unchecked_transaction().map_err(StoreError::from)?;
        let value = f(self)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// Appends the event that extends a task's transcript by one: stores `seq` if the last
    /// contiguous seq held is `seq - 1`, and advances it. False (nothing written) when the
    /// task's last contiguous seq is not `seq - 1`: the caller's view of it was stale.
    ///
    /// The relay never stores an event beyond a gap, so `contig_seq` is simply the highest
    /// seq held. This is the hot path of fan-out: cached statements; callers batch it in a
    /// transaction.
    pub fn append_event(&self, task_id: &str, seq: u64, event: &TaskEvent) -> Result<bool> {
        let Some(prev) = seq.checked_sub(1).and_then(|p| i64::try_from(p).ok()) else { return Ok(false) };
        let n = self
            .conn
            .prepare_cached("UPDATE tasks SET contig_seq = ?2 + 1, updated_ms = ?3 WHERE id = ?1 AND contig_seq = ?2")?
            .execute(params![task_id, prev, Utc::now().timestamp_millis()])?;
        if n == 0 {
            return Ok(false);
        }
        // REPLACE: a database written by an older relay may hold this seq from beyond a gap;
        // the agent's resend is the authoritative copy.
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO task_events (task_id, seq, json) VALUES (?1, ?2, ?3)")?
            .execute(params![task_id, prev + 1, serde_json::to_string(event)?])?;
        Ok(true)
    }

    /// [`Db::append_event`] for each event in one transaction; a stored `permission_decision`
    /// ends the pending decision of its request. Says per event whether it was stored.
    pub fn append_events(&self, user: &str, events: &[(String, u64, TaskEvent)]) -> Result<Vec<bool>> {
        self.transaction(|db| {
            let mut stored = Vec::with_capacity(events.len());
            for (task_id, seq, event) in events {
                let appended = db.append_event(task_id, *seq, event)?;
                if appended {
                    if let TaskEvent::PermissionDecision { request_id, .. } = event {
                        db.delete_pending_decision(user, task_id, request_id)?;
                    }
                }
                stored.push(appended);
            }
            Ok(stored)
        })
    }

    /// The repo of one of `user`'s tasks and the last contiguous seq held for it.
    pub fn task_repo_and_seq(&self, user: &str, id: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT repo, contig_seq FROM tasks WHERE user = ?1 AND id = ?2")?
            .query_row([user, id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .optional()?)
    }

    /// The id of the task a repo's HUD shows (see [`Db::hud_task`]).
    pub fn hud_task_id(&self, user: &str, repo: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM tasks WHERE user = ?1 AND repo = ?2 ORDER BY created_ms DESC, id DESC LIMIT 1",
            )?
            .query_row([user, repo], |r| r.get(0))
            .optional()?)
    }

    /// A task's transcript after `after`, up to its last contiguous seq (a database written by
    /// an older relay may hold events beyond a gap: they are not part of the transcript).
    pub fn events(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, json FROM task_events WHERE task_id = ?1 AND seq > ?2
             AND seq <= (SELECT contig_seq FROM tasks WHERE id = ?1) ORDER BY seq LIMIT ?3",
        )?;
        let rows =
            stmt.query_map(params![task_id, after, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json) = row?;
            out.push(SeqEvent { seq: seq as u64, event: serde_json::from_str(&json)? });
        }
        Ok(out)
    }

    /// [`Db::events`] as stored (each event's JSON text, as validated when it arrived), for
    /// writing snapshots without decoding every event.
    pub fn stored_events(&self, task_id: &str) -> Result<Vec<StoredSeqEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, json FROM task_events WHERE task_id = ?1
             AND seq <= (SELECT contig_seq FROM tasks WHERE id = ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![task_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json) = row?;
            out.push(StoredSeqEvent { seq: seq as u64, event: serde_json::value::RawValue::from_string(json)? });
        }
        Ok(out)
    }

    /// `welcome.lastSeqs`: for this agent's tasks that are unfinished or were touched since
    /// `since_ms`, the highest seq held with no gap before it.
    pub fn last_seqs(&self, user: &str, agent_id: &str, since_ms: i64) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, contig_seq FROM tasks WHERE user = ?1 AND agent_id = ?2
             AND (status IN ('queued', 'running', 'waiting') OR updated_ms >= ?3)",
        )?;
        let rows = stmt.query_map(params![user, agent_id, since_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ----- alerts --------------------------------------------------------------------------

    pub fn upsert_alert(&self, user: &str, alert: &Alert) -> Result<()> {
        self.conn.execute(
            "INSERT INTO alerts (user, id, severity, acknowledged, created_ms, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user, id) DO UPDATE SET severity = excluded.severity,
             acknowledged = excluded.acknowledged, created_ms = excluded.created_ms, json = excluded.json",
            params![
                user,
                alert.id,
                alert.severity.as_str(),
                alert.acknowledged,
                ms(&alert.created_at),
                serde_json::to_string(alert)?
            ],
        )?;
        Ok(())
    }

    pub fn alert(&self, user: &str, id: &str) -> Result<Option<Alert>> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT json FROM alerts WHERE user = ?1 AND id = ?2", [user, id], |r| r.get(0))
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub fn list_alerts(
        &self,
        user: &str,
        severity: Option<&str>,
        acknowledged: Option<bool>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Alert>, u64)> {
        let filter = "user = ?1 AND (?2 IS NULL OR severity = ?2) AND (?3 IS NULL OR acknowledged = ?3)";
        let total: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM alerts WHERE {filter}"),
            params![user, severity, acknowledged],
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT json FROM alerts WHERE {filter} ORDER BY created_ms DESC, id DESC LIMIT ?4 OFFSET ?5"
        ))?;
        let rows =
            stmt.query_map(params![user, severity, acknowledged, limit, offset as i64], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok((out, total as u64))
    }

    // ----- HUD settings --------------------------------------------------------------------

    /// A repo's HUD settings; a HUD never configured is private with embedding off.
    pub fn hud_settings(&self, user: &str, repo: &str) -> Result<HudSettings> {
        Ok(self
            .conn
            .query_row(
                "SELECT public, embed_allowed FROM hud_settings WHERE user = ?1 AND repo = ?2",
                [user, repo],
                |r| Ok(HudSettings { public: r.get(0)?, embed_allowed: r.get(1)? }),
            )
            .optional()?
            .unwrap_or(HudSettings { public: false, embed_allowed: false }))
    }

    pub fn set_hud_settings(&self, user: &str, repo: &str, s: HudSettings) -> Result<()> {
        self.conn.execute(
            "INSERT INTO hud_settings (user, repo, public, embed_allowed) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, repo) DO UPDATE SET public = excluded.public, embed_allowed = excluded.embed_allowed",
            params![user, repo, s.public, s.embed_allowed],
        )?;
        Ok(())
    }
}

/// Creates `dir` (and its parents) and makes it `0700`.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Creates the database file `0600` before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and makes any of the three that exist `0600`.
fn private_files(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(db)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

fn principal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Principal> {
    let scope: String = r.get(1)?;
    Ok(Principal {
        user: r.get(0)?,
        scope: KeyScope::parse(&scope).unwrap_or(KeyScope::Viewer),
        key_id: r.get(2)?,
        task_id: r.get(3)?,
    })
}

pub(crate) fn agent_from(json: &str, online: bool) -> Result<AgentInfo> {
    let mut info: AgentInfo = serde_json::from_str(json)?;
    if !online {
        info.status = AgentState::Offline;
    }
    Ok(info)
}

/// A stored task; `conversationId` is always set when it leaves the relay (SPEC 8), also for a
/// task recorded before conversations existed.
pub(crate) fn task_from(json: &str, contig_seq: i64) -> Result<Task> {
    let mut task: Task = serde_json::from_str(json)?;
    task.last_seq = contig_seq as u64;
    if task.conversation_id.is_empty() {
        task.conversation_id = task.id.clone();
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_data_dir_is_0700_and_the_database_files_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        // Made fresh, nested.
        let dir = root.path().join("a/relay-data");
        let db = Db::open_in(&dir).unwrap();
        db.add_user("alice").unwrap();
        assert_eq!(mode(&dir), 0o700);
        for file in ["relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        drop(db);
        // Already there with loose modes (made by an older relay): tightened on open.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("relay.sqlite3"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let db = Db::open_in(&dir).unwrap();
        assert!(db.user_exists("alice").unwrap());
        assert_eq!(mode(&dir), 0o700);
        for file in ["relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
    }

    #[test]
    fn keys_are_hashed_and_revocation_bumps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open_in(dir.path()).unwrap();
        db.add_user("alice").unwrap();
        assert!(matches!(db.add_user("alice"), Err(StoreError::UserExists(_))));
        assert!(matches!(db.create_key("bob", KeyScope::Owner), Err(StoreError::NoUser(_))));
        let key = db.create_key("alice", KeyScope::Owner).unwrap();
        assert!(key.secret.starts_with("fdk_") && key.secret.len() == 68);
        let stored: String = db.conn.query_row("SELECT hash FROM keys", [], |r| r.get(0)).unwrap();
        assert_ne!(stored, key.secret);
        let who = db.principal_by_key(&key.secret).unwrap().unwrap();
        assert_eq!((who.user.as_str(), who.scope), ("alice", KeyScope::Owner));
        let session = db.create_session(&key.id, Duration::from_secs(60)).unwrap();
        assert!(db.principal_by_session(&session).unwrap().is_some());
        let before = db.key_generation().unwrap();
        assert!(db.revoke_key(&key.id).unwrap());
        assert!(!db.revoke_key(&key.id).unwrap());
        assert_eq!(db.key_generation().unwrap(), before + 1);
        assert!(db.principal_by_key(&key.secret).unwrap().is_none());
        assert!(db.principal_by_session(&session).unwrap().is_none());
    }
}
