//! The agent's SQLite database: the source of truth for what happened on this machine.
//!
//! One connection behind a std `Mutex` (nothing awaits while holding it). Every method is
//! blocking: async callers run them on `spawn_blocking` or a dedicated thread, because rusqlite
//! calls must never run on the async executor's threads.
//!
//! Areas live in submodules, each an `impl Store` block: `repos` (latest repo status),
//! `alerts`, `settings`, `tasks` (tasks, their numbered events, full tool outputs).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::watch;

mod alerts;
mod outbox;
mod repos;
mod settings;
mod tasks;

pub use alerts::AlertFilter;
pub use outbox::{OutboxItem, OutboxRow, RELAY_HISTORY_FROM};
pub use tasks::{Recorded, TaskFilter};

/// Errors of the store. All are internal: a broken or unwritable database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("bad JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit a migration that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE repo_status (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        path       TEXT NOT NULL,
        status     TEXT NOT NULL,
        json       TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE alerts (
        id              TEXT PRIMARY KEY,
        severity        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        repo            TEXT,
        task_id         TEXT,
        acknowledged    INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        json            TEXT NOT NULL
    );
    CREATE INDEX alerts_by_time ON alerts (created_at DESC);
    "#,
    // 2: tasks, their transcripts, and the full text of truncated tool outputs (local only).
    r#"
    CREATE TABLE tasks (
        id         TEXT PRIMARY KEY,
        status     TEXT NOT NULL,
        executor   TEXT NOT NULL,
        repo       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        json       TEXT NOT NULL
    );
    CREATE INDEX tasks_by_time ON tasks (created_at DESC);
    CREATE INDEX tasks_by_status ON tasks (status, created_at DESC);
    CREATE INDEX tasks_by_repo ON tasks (repo, created_at DESC);
    CREATE TABLE task_events (
        task_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        json    TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE tool_outputs (
        task_id TEXT NOT NULL,
        tool_id TEXT NOT NULL,
        output  TEXT NOT NULL,
        PRIMARY KEY (task_id, tool_id)
    ) WITHOUT ROWID;
    "#,
    // 3: what the relay is known to hold, so a reconnect resends exactly what it lacks.
    r#"
    CREATE TABLE relay_sync (
        task_id   TEXT PRIMARY KEY,
        relay_seq INTEGER NOT NULL DEFAULT 0,
        confirmed INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    "#,
    // 4: the outbox proper. Everything the relay link sends about tasks and alerts, in the order
    // it happened: task events as they leave the machine (redacted, see `runner::recorder`), and
    // references to tasks and alerts whose latest state is to be sent.
    r#"
    CREATE TABLE outbox (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT NOT NULL,
        ref_id  TEXT NOT NULL,
        seq     INTEGER,
        json    TEXT
    );
    CREATE UNIQUE INDEX outbox_events ON outbox (ref_id, seq) WHERE kind = 'event';
    "#,
];

/// A handle to the agent's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// The id of the newest outbox row, so the relay link wakes when there is more to send.
    outbox_head: Arc<watch::Sender<i64>>,
}

impl Store {
    /// Opens (creating if needed) `flightdeck.db` in `data_dir`, in WAL mode, migrated. The
    /// directory is made private to its owner (0700) and the database files 0600: they hold the
    /// relay key, every transcript and every tool output.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let data_dir_error = |source| StoreError::DataDir { path: data_dir.display().to_string(), source };
        make_private_dir(data_dir).map_err(data_dir_error)?;
        let db = data_dir.join("flightdeck.db");
        // SQLite gives the -wal and -shm files the mode of the database file.
        make_private_file(&db).map_err(data_dir_error)?;
        let conn = Connection::open(&db)?;
        Store::from_connection(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Store::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let head: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM outbox", [], |r| r.get(0))?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)), outbox_head: Arc::new(watch::channel(head).0) })
    }

    /// The connection, for the `impl Store` blocks of each area.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one statement
        // or one transaction), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a query whose first column holds a JSON document, and parses every row.
pub(crate) fn json_rows<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    rows.map(|json| Ok(serde_json::from_str(&json?)?)).collect()
}

/// Creates `dir` (and its parents) and sets it to 0700 on Unix.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `file` if needed and sets it to 0600 on Unix.
pub fn make_private_file(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(file)?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    options.open(file)?;
    Ok(())
}

/// Runs a query whose columns are `(seq, event JSON)`, and parses every row.
pub(crate) fn seq_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<flightdeck_protocol::SeqEvent>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (seq, json) = row?;
        Ok(flightdeck_protocol::SeqEvent { seq: seq as u64, event: serde_json::from_str(&json)? })
    })
    .collect()
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_setting("relay.url", "ws://example").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.setting("relay.url").unwrap().as_deref(), Some("ws://example"));
        let version: i64 = store.conn().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    #[cfg(unix)]
    #[test]
    fn the_data_dir_and_database_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = Store::open(&data).unwrap();
        store.set_setting("relay.key", "fdk_secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data dir");
        for name in ["flightdeck.db", "flightdeck.db-wal", "flightdeck.db-shm"] {
            let path = data.join(name);
            if path.exists() {
                assert_eq!(mode(&path), 0o600, "{name}");
            }
        }
        assert!(data.join("flightdeck.db-wal").exists(), "WAL mode makes a -wal file");
    }
}
