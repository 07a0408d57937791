//! [`PostgresStore`]: the [`Store`] that relay nodes on many hosts share (SPEC 11).
//!
//! `tokio-postgres` behind a `deadpool-postgres` pool. The schema is this module's own
//! (`postgres/migrations/NNN_*.sql`), applied at connect in a `schema_migrations` table under an
//! advisory lock, so nodes that start at the same time apply each migration once.
//!
//! The SQL mirrors `crate::db` statement for statement (the conformance tests in
//! `relay/tests/it/store.rs` hold both to the same answers); SQLite's `user` column is `owner`
//! here, and operations of several statements are one transaction each.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flightdeck_protocol::api::{HudSettings, KeyScope};
use flightdeck_protocol::event::Behavior;
use flightdeck_protocol::realtime::StoredSeqEvent;
use flightdeck_protocol::{AgentInfo, Alert, RepoStatus, SeqEvent, Task, TaskEvent, Timestamp};
use tokio_postgres::{NoTls, Row};

use super::push::{kinds_from, kinds_text, ActionToken, Enqueued, OutboxRow, PushEvent, PushTarget, TargetKind};
use super::{
    CreatedKey, KeyRow, NumberedEvent, PendingDecision, Principal, Result, Run, RunState, SealedSecret, Store,
    StoreError, TaskFilter,
};
use crate::db::{agent_from, hash_secret, ms, now_text, random_hex, task_from};

const TARGET_COLUMNS: &str = "id, owner, kind, url, p256dh, auth, secret, device, kinds, origin, created_ms";

fn target_row(r: &Row) -> PushTarget {
    PushTarget {
        id: r.get(0),
        user: r.get(1),
        kind: TargetKind::parse(r.get(2)),
        url: r.get(3),
        p256dh: r.get(4),
        auth: r.get(5),
        secret: r.get(6),
        device: r.get(7),
        kinds: kinds_from(r.get(8)),
        origin: r.get(9),
        created_at: millis(r.get(10)),
    }
}

/// The migrations, in order; `schema_migrations` records the versions applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("postgres/migrations/001_initial.sql")),
    (2, include_str!("postgres/migrations/002_changes.sql")),
    (3, include_str!("postgres/migrations/003_nodes.sql")),
    (4, include_str!("postgres/migrations/004_push.sql")),
    (5, include_str!("postgres/migrations/005_run_follow_ups.sql")),
];

/// The advisory lock that serialises migrations between nodes ("fdrelay" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6472_656c_6179;

/// Connections per node.
const POOL_SIZE: usize = 16;

const RUN_COLUMNS: &str =
    "task_id, owner, clone_url, state, container_id, key_id, seq_offset, checkout, pushed_branch, home IS NOT NULL";

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        // A lost connection, a serialisation failure or a deadlock may succeed when tried again.
        let retryable = e.is_closed()
            || e.code().is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
            });
        let message = match (e.as_db_error(), std::error::Error::source(&e)) {
            (Some(db), _) => format!("{}: {}", db.code().code(), db.message()),
            (None, Some(source)) => format!("{e}: {source}"),
            (None, None) => e.to_string(),
        };
        StoreError::Server { message, retryable }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Server { message: format!("no database connection: {other}"), retryable: true },
        }
    }
}

/// Cheap to clone: the pool is shared.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or any form
    /// `tokio-postgres` accepts) and applies the migrations this database lacks.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Server { message: format!("bad database URL: {e}"), retryable: false })?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Server { message: e.to_string(), retryable: false })?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        // A session-level lock: held across the migrations' own transactions, released below
        // (or when the connection goes).
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let applied = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations
                     (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await?;
            for (version, sql) in MIGRATIONS {
                let tx = client.transaction().await?;
                let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?;
                if done.is_none() {
                    tx.batch_execute(sql).await?;
                    tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await?;
                }
                tx.commit().await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        applied
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

fn principal_row(r: &Row) -> Principal {
    Principal {
        user: r.get(0),
        scope: KeyScope::parse(r.get::<_, &str>(1)).unwrap_or(KeyScope::Viewer),
        key_id: r.get(2),
        task_id: r.get(3),
    }
}

fn run_row(r: &Row) -> Run {
    Run {
        task_id: r.get(0),
        user: r.get(1),
        clone_url: r.get(2),
        state: RunState::parse(r.get(3)),
        container_id: r.get(4),
        key_id: r.get(5),
        seq_offset: r.get::<_, i64>(6) as u64,
        checkout: r.get(7),
        pushed_branch: r.get(8),
        home_kept: r.get(9),
    }
}

fn task_row(r: &Row) -> Result<Task> {
    task_from(r.get(0), r.get(1))
}

fn millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

async fn new_key(
    client: &impl GenericClient,
    user: &str,
    scope: KeyScope,
    task_id: Option<&str>,
) -> Result<CreatedKey> {
    let exists = client.query_opt("SELECT 1 FROM users WHERE name = $1", &[&user]).await?;
    if exists.is_none() {
        return Err(StoreError::NoUser(user.into()));
    }
    let secret = format!("fdk_{}", random_hex(32));
    let id = random_hex(6);
    client
        .execute(
            "INSERT INTO keys (id, owner, scope, hash, prefix, created_at, task_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &user, &scope.as_str(), &hash_secret(&secret), &&secret[..12], &now_text(), &task_id],
        )
        .await?;
    Ok(CreatedKey { id, secret })
}

async fn task_in(client: &impl GenericClient, user: &str, id: &str) -> Result<Option<Task>> {
    let row =
        client.query_opt("SELECT json, contig_seq FROM tasks WHERE owner = $1 AND id = $2", &[&user, &id]).await?;
    row.as_ref().map(task_row).transpose()
}

/// Stores the latest state of a task (inside the caller's transaction) and returns it as stored.
async fn upsert_task_in(tx: &impl GenericClient, user: &str, task: &Task) -> Result<Task> {
    tx.execute(
        "INSERT INTO tasks (id, owner, repo, agent_id, executor, status, created_ms, updated_ms, json,
         conversation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET repo = excluded.repo, agent_id = excluded.agent_id,
         executor = excluded.executor, status = excluded.status, created_ms = excluded.created_ms,
         updated_ms = excluded.updated_ms, json = excluded.json, conversation_id = excluded.conversation_id",
        &[
            &task.id,
            &user,
            &task.repo,
            &task.agent_id,
            &task.executor.as_str(),
            &task.status.as_str(),
            &ms(&task.created_at),
            &Utc::now().timestamp_millis(),
            &serde_json::to_string(task)?,
            &task.conversation(),
        ],
    )
    .await?;
    if task.status.is_terminal() {
        tx.execute("DELETE FROM pending_decisions WHERE task_id = $1", &[&task.id]).await?;
    }
    // The row of another user with this id is not replaced and not returned.
    task_in(tx, user, &task.id)
        .await?
        .ok_or_else(|| StoreError::Server { message: format!("task {} is not {user}'s", task.id), retryable: false })
}

/// Serialises the transactions that take the same `what` (held until the transaction ends).
async fn lock_in(tx: &impl GenericClient, what: &str) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&what]).await?;
    Ok(())
}

async fn agent_in(client: &impl GenericClient, user: &str, agent_id: &str) -> Result<Option<AgentInfo>> {
    let row = client
        .query_opt("SELECT json, online FROM agents WHERE owner = $1 AND agent_id = $2", &[&user, &agent_id])
        .await?;
    row.map(|r| agent_from(r.get(0), r.get(1))).transpose()
}

#[async_trait]
impl Store for PostgresStore {
    async fn add_user(&self, name: &str) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO users (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &now_text()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::UserExists(name.into()));
        }
        Ok(())
    }

    async fn user_exists(&self, name: &str) -> Result<bool> {
        Ok(self.client().await?.query_opt("SELECT 1 FROM users WHERE name = $1", &[&name]).await?.is_some())
    }

    async fn create_key(&self, user: &str, scope: KeyScope) -> Result<CreatedKey> {
        new_key(&self.client().await?, user, scope, None).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let rows = self
            .client()
            .await?
            .query("SELECT id, owner, scope, prefix, created_at, revoked_at FROM keys ORDER BY created_at, id", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| KeyRow {
                id: r.get(0),
                user: r.get(1),
                scope: KeyScope::parse(r.get::<_, &str>(2)).unwrap_or(KeyScope::Viewer),
                prefix: r.get(3),
                created_at: r.get(4),
                revoked_at: r.get(5),
            })
            .collect())
    }

    async fn revoke_key(&self, id: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("UPDATE keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now_text()])
            .await?;
        if n > 0 {
            tx.execute("DELETE FROM sessions WHERE key_id = $1", &[&id]).await?;
            tx.execute("UPDATE meta SET value = value + 1 WHERE name = 'key_generation'", &[]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn key_generation(&self) -> Result<i64> {
        Ok(self.client().await?.query_one("SELECT value FROM meta WHERE name = 'key_generation'", &[]).await?.get(0))
    }

    async fn next_change(&self, user: &str) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO changes (owner, n) VALUES ($1, 1)
                 ON CONFLICT (owner) DO UPDATE SET n = changes.n + 1 RETURNING n",
                &[&user],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn changes(&self, user: &str) -> Result<u64> {
        let row = self.client().await?.query_opt("SELECT n FROM changes WHERE owner = $1", &[&user]).await?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    async fn revoked_key_ids(&self) -> Result<Vec<String>> {
        let rows = self.client().await?.query("SELECT id FROM keys WHERE revoked_at IS NOT NULL", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn principal_by_key(&self, secret: &str) -> Result<Option<Principal>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT owner, scope, id, task_id FROM keys WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash_secret(secret)],
            )
            .await?;
        Ok(row.as_ref().map(principal_row))
    }

    async fn create_session(&self, key_id: &str, ttl: Duration) -> Result<String> {
        let secret = random_hex(32);
        let expires = Utc::now().timestamp_millis() + ttl.as_millis() as i64;
        self.client()
            .await?
            .execute(
                "INSERT INTO sessions (hash, key_id, expires_ms) VALUES ($1, $2, $3)",
                &[&hash_secret(&secret), &key_id, &expires],
            )
            .await?;
        Ok(secret)
    }

    async fn principal_by_session(&self, secret: &str) -> Result<Option<Principal>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT k.owner, k.scope, k.id, k.task_id FROM sessions s JOIN keys k ON k.id = s.key_id
                 WHERE s.hash = $1 AND s.expires_ms > $2 AND k.revoked_at IS NULL",
                &[&hash_secret(secret), &Utc::now().timestamp_millis()],
            )
            .await?;
        Ok(row.as_ref().map(principal_row))
    }

    async fn delete_session(&self, secret: &str) -> Result<()> {
        self.client().await?.execute("DELETE FROM sessions WHERE hash = $1", &[&hash_secret(secret)]).await?;
        Ok(())
    }

    async fn mark_all_agents_offline(&self) -> Result<()> {
        self.client().await?.execute("UPDATE agents SET online = false", &[]).await?;
        Ok(())
    }

    async fn node_alive_until(&self, node_id: &str, until_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO nodes (node_id, alive_until_ms) VALUES ($1, $2)
                 ON CONFLICT (node_id) DO UPDATE SET alive_until_ms = GREATEST(nodes.alive_until_ms, excluded.alive_until_ms)",
                &[&node_id, &until_ms],
            )
            .await?;
        Ok(())
    }

    async fn live_nodes(&self, now_ms: i64) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query("SELECT node_id FROM nodes WHERE alive_until_ms >= $1 ORDER BY node_id", &[&now_ms])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn online_agent_conns(&self) -> Result<Vec<(String, String, String)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT owner, agent_id, conn FROM agents WHERE online AND conn IS NOT NULL ORDER BY owner, agent_id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn upsert_agent(&self, user: &str, info: &AgentInfo, online: bool) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO agents (owner, agent_id, online, json) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner, agent_id) DO UPDATE SET online = excluded.online, json = excluded.json",
                &[&user, &info.agent_id, &online, &serde_json::to_string(info)?],
            )
            .await?;
        Ok(())
    }

    async fn set_agent_conn(&self, user: &str, agent_id: &str, conn: &str) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE agents SET conn = $3 WHERE owner = $1 AND agent_id = $2", &[&user, &agent_id, &conn])
            .await?;
        Ok(())
    }

    async fn mark_agent_offline(&self, user: &str, agent_id: &str, conn: &str) -> Result<Option<AgentInfo>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE agents SET online = false WHERE owner = $1 AND agent_id = $2 AND conn = $3 RETURNING json",
                &[&user, &agent_id, &conn],
            )
            .await?;
        row.map(|r| agent_from(r.get(0), false)).transpose()
    }

    async fn agent(&self, user: &str, agent_id: &str) -> Result<Option<AgentInfo>> {
        agent_in(&self.client().await?, user, agent_id).await
    }

    async fn agent_online(&self, user: &str, agent_id: &str) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT online FROM agents WHERE owner = $1 AND agent_id = $2", &[&user, &agent_id])
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    async fn agents(&self, user: &str) -> Result<Vec<AgentInfo>> {
        let rows = self
            .client()
            .await?
            .query("SELECT json, online FROM agents WHERE owner = $1 ORDER BY agent_id", &[&user])
            .await?;
        rows.iter().map(|r| agent_from(r.get(0), r.get(1))).collect()
    }

    async fn repo(&self, user: &str, name: &str) -> Result<Option<(RepoStatus, String)>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT json, agent_id FROM repos WHERE owner = $1 AND name = $2", &[&user, &name])
            .await?;
        row.map(|r| Ok((serde_json::from_str(r.get(0))?, r.get(1)))).transpose()
    }

    async fn upsert_repo(&self, user: &str, agent_id: &str, repo: &RepoStatus) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO repos (owner, name, agent_id, status, json) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (owner, name) DO UPDATE SET agent_id = excluded.agent_id, status = excluded.status,
                 json = excluded.json",
                &[&user, &repo.name, &agent_id, &repo.status.as_str(), &serde_json::to_string(repo)?],
            )
            .await?;
        Ok(())
    }

    async fn delete_repo(&self, user: &str, name: &str) -> Result<()> {
        self.client().await?.execute("DELETE FROM repos WHERE owner = $1 AND name = $2", &[&user, &name]).await?;
        Ok(())
    }

    async fn repos(&self, user: &str, status: Option<&str>, agent_id: Option<&str>) -> Result<Vec<RepoStatus>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT json FROM repos WHERE owner = $1 AND ($2::TEXT IS NULL OR status = $2)
                 AND ($3::TEXT IS NULL OR agent_id = $3) ORDER BY name",
                &[&user, &status, &agent_id],
            )
            .await?;
        rows.iter().map(|r| Ok(serde_json::from_str(r.get(0))?)).collect()
    }

    async fn repos_page(
        &self,
        user: &str,
        status: Option<&str>,
        agent_id: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<RepoStatus>, u64)> {
        let filter = "owner = $1 AND ($2::TEXT IS NULL OR status = $2) AND ($3::TEXT IS NULL OR agent_id = $3)";
        let client = self.client().await?;
        let total: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM repos WHERE {filter}"), &[&user, &status, &agent_id])
            .await?
            .get(0);
        let rows = client
            .query(
                &format!("SELECT json FROM repos WHERE {filter} ORDER BY name LIMIT $4 OFFSET $5"),
                &[&user, &status, &agent_id, &i64::from(limit), &seq_param(offset)],
            )
            .await?;
        let repos = rows.iter().map(|r| Ok(serde_json::from_str(r.get(0))?)).collect::<Result<_>>()?;
        Ok((repos, total as u64))
    }

    async fn repo_agent_online(&self, user: &str, repo: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT r.agent_id FROM repos r JOIN agents a ON a.owner = r.owner AND a.agent_id = r.agent_id
                 WHERE r.owner = $1 AND r.name = $2 AND a.online",
                &[&user, &repo],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn task(&self, user: &str, id: &str) -> Result<Option<Task>> {
        task_in(&self.client().await?, user, id).await
    }

    async fn task_user(&self, id: &str) -> Result<Option<String>> {
        let row = self.client().await?.query_opt("SELECT owner FROM tasks WHERE id = $1", &[&id]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn upsert_task(&self, user: &str, task: &Task) -> Result<Task> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stored = upsert_task_in(&tx, user, task).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_tasks(&self, user: &str, f: &TaskFilter, limit: u32, offset: u64) -> Result<(Vec<Task>, u64)> {
        let filter = "owner = $1 AND ($2::TEXT IS NULL OR status = $2) AND ($3::TEXT IS NULL OR executor = $3)
                      AND ($4::TEXT IS NULL OR repo = $4)";
        let client = self.client().await?;
        let total: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM tasks WHERE {filter}"), &[&user, &f.status, &f.executor, &f.repo])
            .await?
            .get(0);
        let rows = client
            .query(
                &format!(
                    "SELECT json, contig_seq FROM tasks WHERE {filter}
                     ORDER BY created_ms DESC, id DESC LIMIT $5 OFFSET $6"
                ),
                &[&user, &f.status, &f.executor, &f.repo, &i64::from(limit), &seq_param(offset)],
            )
            .await?;
        let tasks = rows.iter().map(task_row).collect::<Result<_>>()?;
        Ok((tasks, total as u64))
    }

    async fn queued_tasks_for(&self, user: &str, agent_id: &str, repos: &[String]) -> Result<Vec<Task>> {
        let client = self.client().await?;
        let statement = client
            .prepare(
                "SELECT json, contig_seq FROM tasks WHERE owner = $1 AND status = 'queued' AND repo = $2
                 AND (agent_id IS NULL OR agent_id = $3) ORDER BY created_ms, id",
            )
            .await?;
        let mut out = Vec::new();
        for repo in repos {
            for row in client.query(&statement, &[&user, repo, &agent_id]).await? {
                out.push(task_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn hud_task(&self, user: &str, repo: &str) -> Result<Option<Task>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT json, contig_seq FROM tasks WHERE owner = $1 AND repo = $2
                 ORDER BY created_ms DESC, id DESC LIMIT 1",
                &[&user, &repo],
            )
            .await?;
        row.as_ref().map(task_row).transpose()
    }

    async fn hud_task_id(&self, user: &str, repo: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id FROM tasks WHERE owner = $1 AND repo = $2 ORDER BY created_ms DESC, id DESC LIMIT 1",
                &[&user, &repo],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn task_repo_and_seq(&self, user: &str, id: &str) -> Result<Option<(String, u64)>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT repo, contig_seq FROM tasks WHERE owner = $1 AND id = $2", &[&user, &id])
            .await?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
    }

    async fn append_events(&self, user: &str, events: Vec<NumberedEvent>) -> Result<Vec<bool>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One statement per event: advance the task's contiguous seq if this event extends it,
        // and store the event only then (a data-modifying CTE runs even when unreferenced rows
        // are filtered, so the insert selects from the update).
        let append = tx
            .prepare(
                "WITH advanced AS (
                     UPDATE tasks SET contig_seq = $2::BIGINT, updated_ms = $4::BIGINT
                     WHERE id = $1 AND contig_seq = $2::BIGINT - 1
                     RETURNING id
                 )
                 INSERT INTO task_events (task_id, seq, json) SELECT id, $2::BIGINT, $3 FROM advanced
                 ON CONFLICT (task_id, seq) DO UPDATE SET json = excluded.json",
            )
            .await?;
        let now = Utc::now().timestamp_millis();
        let mut stored = Vec::with_capacity(events.len());
        for (task_id, seq, event) in &events {
            let appended = match i64::try_from(*seq) {
                Ok(seq) if seq >= 1 => {
                    tx.execute(&append, &[task_id, &seq, &serde_json::to_string(event)?, &now]).await? > 0
                }
                _ => false,
            };
            if appended {
                if let TaskEvent::PermissionDecision { request_id, .. } = event {
                    tx.execute(
                        "DELETE FROM pending_decisions WHERE owner = $1 AND task_id = $2 AND request_id = $3",
                        &[&user, task_id, request_id],
                    )
                    .await?;
                }
            }
            stored.push(appended);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn events(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, json FROM task_events WHERE task_id = $1 AND seq > $2
                 AND seq <= (SELECT contig_seq FROM tasks WHERE id = $1) ORDER BY seq LIMIT $3",
                &[&task_id, &seq_param(after), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(SeqEvent { seq: r.get::<_, i64>(0) as u64, event: serde_json::from_str(r.get(1))? }))
            .collect()
    }

    async fn stored_events(&self, task_id: &str) -> Result<Vec<StoredSeqEvent>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, json FROM task_events WHERE task_id = $1
                 AND seq <= (SELECT contig_seq FROM tasks WHERE id = $1) ORDER BY seq",
                &[&task_id],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let json: String = r.get(1);
                Ok(StoredSeqEvent {
                    seq: r.get::<_, i64>(0) as u64,
                    event: serde_json::value::RawValue::from_string(json)?,
                })
            })
            .collect()
    }

    async fn last_seqs(&self, user: &str, agent_id: &str, since_ms: i64) -> Result<BTreeMap<String, u64>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, contig_seq FROM tasks WHERE owner = $1 AND agent_id = $2
                 AND (status IN ('queued', 'running', 'waiting') OR updated_ms >= $3)",
                &[&user, &agent_id, &since_ms],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    async fn upsert_alert(&self, user: &str, alert: &Alert) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO alerts (owner, id, severity, acknowledged, created_ms, json)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (owner, id) DO UPDATE SET severity = excluded.severity,
                 acknowledged = excluded.acknowledged, created_ms = excluded.created_ms, json = excluded.json",
                &[
                    &user,
                    &alert.id,
                    &alert.severity.as_str(),
                    &alert.acknowledged,
                    &ms(&alert.created_at),
                    &serde_json::to_string(alert)?,
                ],
            )
            .await?;
        Ok(())
    }

    async fn alert(&self, user: &str, id: &str) -> Result<Option<Alert>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT json FROM alerts WHERE owner = $1 AND id = $2", &[&user, &id])
            .await?;
        Ok(row.map(|r| serde_json::from_str(r.get(0))).transpose()?)
    }

    async fn list_alerts(
        &self,
        user: &str,
        severity: Option<&str>,
        acknowledged: Option<bool>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Alert>, u64)> {
        let filter =
            "owner = $1 AND ($2::TEXT IS NULL OR severity = $2) AND ($3::BOOLEAN IS NULL OR acknowledged = $3)";
        let client = self.client().await?;
        let total: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM alerts WHERE {filter}"), &[&user, &severity, &acknowledged])
            .await?
            .get(0);
        let rows = client
            .query(
                &format!("SELECT json FROM alerts WHERE {filter} ORDER BY created_ms DESC, id DESC LIMIT $4 OFFSET $5"),
                &[&user, &severity, &acknowledged, &i64::from(limit), &seq_param(offset)],
            )
            .await?;
        let alerts = rows.iter().map(|r| Ok(serde_json::from_str(r.get(0))?)).collect::<Result<_>>()?;
        Ok((alerts, total as u64))
    }

    async fn hud_settings(&self, user: &str, repo: &str) -> Result<HudSettings> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT public, embed_allowed FROM hud_settings WHERE owner = $1 AND repo = $2", &[&user, &repo])
            .await?;
        Ok(row
            .map(|r| HudSettings { public: r.get(0), embed_allowed: r.get(1) })
            .unwrap_or(HudSettings { public: false, embed_allowed: false }))
    }

    async fn set_hud_settings(&self, user: &str, repo: &str, s: HudSettings) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO hud_settings (owner, repo, public, embed_allowed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner, repo) DO UPDATE SET public = excluded.public,
                 embed_allowed = excluded.embed_allowed",
                &[&user, &repo, &s.public, &s.embed_allowed],
            )
            .await?;
        Ok(())
    }

    async fn add_turn(&self, user: &str, turn: &Task) -> Result<Option<Task>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_in(&tx, &format!("conversation/{user}/{}", turn.conversation())).await?;
        let rows = tx
            .query(
                "SELECT json, contig_seq FROM tasks WHERE owner = $1 AND conversation_id = $2",
                &[&user, &turn.conversation()],
            )
            .await?;
        for row in &rows {
            if !task_row(row)?.status.is_terminal() {
                return Ok(None);
            }
        }
        let stored = upsert_task_in(&tx, user, turn).await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    async fn conversation(&self, user: &str, conversation_id: &str) -> Result<Vec<Task>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT json, contig_seq FROM tasks WHERE owner = $1 AND conversation_id = $2
                 ORDER BY created_ms, id",
                &[&user, &conversation_id],
            )
            .await?;
        rows.iter().map(task_row).collect()
    }

    async fn request_open(&self, task_id: &str, request_id: &str) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT kind FROM (
                     SELECT seq, json::jsonb ->> 'kind' AS kind, json::jsonb ->> 'requestId' AS request_id
                     FROM task_events
                     WHERE task_id = $1 AND seq <= (SELECT contig_seq FROM tasks WHERE id = $1)
                 ) e
                 WHERE kind IN ('permission_request', 'permission_decision') AND request_id = $2
                 ORDER BY seq DESC LIMIT 1",
                &[&task_id, &request_id],
            )
            .await?;
        Ok(row.is_some_and(|r| r.get::<_, &str>(0) == "permission_request"))
    }

    async fn insert_pending_decision(&self, user: &str, decision: &PendingDecision) -> Result<bool> {
        let updated_input = decision.updated_input.as_ref().map(serde_json::to_string).transpose()?;
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO pending_decisions
                 (owner, task_id, request_id, behavior, updated_input, message, created_ms, decided_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &user,
                    &decision.task_id,
                    &decision.request_id,
                    &decision.behavior.as_str(),
                    &updated_input,
                    &decision.message,
                    &ms(&decision.created_at),
                    &decision.decided_by.map(crate::db::decided_by_text),
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn decision_pending(&self, task_id: &str, request_id: &str) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM pending_decisions WHERE task_id = $1 AND request_id = $2",
                &[&task_id, &request_id],
            )
            .await?
            .is_some())
    }

    async fn delete_pending_decision(&self, user: &str, task_id: &str, request_id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM pending_decisions WHERE owner = $1 AND task_id = $2 AND request_id = $3",
                &[&user, &task_id, &request_id],
            )
            .await?;
        Ok(())
    }

    async fn pending_decisions_for(&self, user: &str, agent_id: &str) -> Result<Vec<PendingDecision>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT d.task_id, d.request_id, d.behavior, d.updated_input, d.message, d.created_ms, d.decided_by
                 FROM pending_decisions d JOIN tasks t ON t.id = d.task_id
                 WHERE d.owner = $1 AND t.owner = $1 AND t.agent_id = $2
                 ORDER BY d.created_ms, d.task_id, d.request_id",
                &[&user, &agent_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let updated_input: Option<&str> = r.get(3);
                Ok(PendingDecision {
                    task_id: r.get(0),
                    request_id: r.get(1),
                    behavior: if r.get::<_, &str>(2) == "allow" { Behavior::Allow } else { Behavior::Deny },
                    updated_input: updated_input.map(serde_json::from_str).transpose()?,
                    message: r.get(4),
                    decided_by: r.get::<_, Option<&str>>(6).and_then(crate::db::decided_by_from),
                    created_at: millis(r.get(5)),
                })
            })
            .collect()
    }

    async fn instance_id(&self) -> Result<String> {
        let id: i64 =
            self.client().await?.query_one("SELECT value FROM meta WHERE name = 'instance'", &[]).await?.get(0);
        Ok(format!("{id:012}"))
    }

    async fn add_run(&self, user: &str, task_id: &str, clone_url: &str, checkout: Option<&str>) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO runs (task_id, owner, clone_url, state, created_ms, checkout)
                 VALUES ($1, $2, $3, 'queued', $4, $5)",
                &[&task_id, &user, &clone_url, &Utc::now().timestamp_millis(), &checkout],
            )
            .await?;
        Ok(())
    }

    async fn set_run_outcome(&self, task_id: &str, pushed_branch: Option<&str>, home: Option<&[u8]>) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE runs SET pushed_branch = $2, home = $3 WHERE task_id = $1",
                &[&task_id, &pushed_branch, &home],
            )
            .await?;
        Ok(())
    }

    async fn run_home(&self, task_id: &str) -> Result<Option<Vec<u8>>> {
        let row = self.client().await?.query_opt("SELECT home FROM runs WHERE task_id = $1", &[&task_id]).await?;
        Ok(row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
    }

    async fn run(&self, task_id: &str) -> Result<Option<Run>> {
        let row = self
            .client()
            .await?
            .query_opt(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE task_id = $1"), &[&task_id])
            .await?;
        Ok(row.as_ref().map(run_row))
    }

    async fn queued_runs(&self) -> Result<u64> {
        let n: i64 =
            self.client().await?.query_one("SELECT COUNT(*) FROM runs WHERE state = 'queued'", &[]).await?.get(0);
        Ok(n as u64)
    }

    async fn claim_next_run(&self) -> Result<Option<Run>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // SKIP LOCKED: nodes claiming at the same time take different runs.
        let claimed = loop {
            let next = tx
                .query_opt(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'queued' ORDER BY created_ms, task_id
                         LIMIT 1 FOR UPDATE SKIP LOCKED"
                    ),
                    &[],
                )
                .await?;
            let Some(mut run) = next.as_ref().map(run_row) else { break None };
            let status = tx.query_opt("SELECT status FROM tasks WHERE id = $1", &[&run.task_id]).await?;
            let queued = status.is_some_and(|r| r.get::<_, &str>(0) == "queued");
            let next_state = if queued { RunState::Starting } else { RunState::Ended };
            tx.execute("UPDATE runs SET state = $2 WHERE task_id = $1", &[&run.task_id, &next_state.as_str()]).await?;
            if queued {
                run.state = next_state;
                break Some(run);
            }
        };
        tx.commit().await?;
        Ok(claimed)
    }

    async fn set_run_state(&self, task_id: &str, state: RunState) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE runs SET state = $2 WHERE task_id = $1", &[&task_id, &state.as_str()])
            .await?;
        Ok(())
    }

    async fn set_run_container(&self, task_id: &str, container_id: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE runs SET container_id = $2, state = 'running' WHERE task_id = $1",
                &[&task_id, &container_id],
            )
            .await?;
        Ok(())
    }

    async fn set_run_seq_offset(&self, task_id: &str, offset: u64) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE runs SET seq_offset = $2 WHERE task_id = $1", &[&task_id, &seq_param(offset)])
            .await?;
        Ok(())
    }

    async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('starting', 'running') ORDER BY created_ms"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn create_task_key(&self, user: &str, task_id: &str) -> Result<CreatedKey> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let key = new_key(&tx, user, KeyScope::Agent, Some(task_id)).await?;
        tx.execute("UPDATE runs SET key_id = $2 WHERE task_id = $1", &[&task_id, &key.id]).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn put_secret(&self, user: &str, name: &str, nonce: &[u8], value: &[u8], max: usize) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_in(&tx, &format!("secrets/{user}")).await?;
        let row = tx
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE name = $2) FROM secrets WHERE owner = $1",
                &[&user, &name],
            )
            .await?;
        let (count, same): (i64, i64) = (row.get(0), row.get(1));
        if count as usize >= max && same == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO secrets (owner, name, nonce, value, updated_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, name) DO UPDATE SET nonce = excluded.nonce, value = excluded.value,
             updated_ms = excluded.updated_ms",
            &[&user, &name, &nonce, &value, &Utc::now().timestamp_millis()],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn secret_names(&self, user: &str) -> Result<Vec<(String, Timestamp)>> {
        let rows = self
            .client()
            .await?
            .query("SELECT name, updated_ms FROM secrets WHERE owner = $1 ORDER BY name", &[&user])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), millis(r.get(1)))).collect())
    }

    async fn sealed_secrets(&self, user: &str) -> Result<Vec<SealedSecret>> {
        let rows = self
            .client()
            .await?
            .query("SELECT name, nonce, value FROM secrets WHERE owner = $1 ORDER BY name", &[&user])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn delete_secret(&self, user: &str, name: &str) -> Result<bool> {
        let n =
            self.client().await?.execute("DELETE FROM secrets WHERE owner = $1 AND name = $2", &[&user, &name]).await?;
        Ok(n > 0)
    }

    /// Every statement is committed when it returns: nothing to flush.
    async fn push_vapid_key(&self, candidate: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        let client = self.client().await?;
        // Insert if absent, then read: nodes starting at once all read the one row stored.
        client
            .execute(
                "INSERT INTO push_vapid (id, private_key, created_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                &[&candidate, &now_ms],
            )
            .await?;
        Ok(client.query_one("SELECT private_key FROM push_vapid WHERE id = 1", &[]).await?.get(0))
    }

    async fn put_push_target(&self, target: &PushTarget, max: usize) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_in(&tx, &format!("push_targets/{}", target.user)).await?;
        if target.kind != TargetKind::WebPush {
            tx.execute(
                "DELETE FROM push_targets WHERE owner = $1 AND kind = $2",
                &[&target.user, &target.kind.as_str()],
            )
            .await?;
        }
        let count: i64 =
            tx.query_one("SELECT COUNT(*) FROM push_targets WHERE owner = $1", &[&target.user]).await?.get(0);
        if count as usize >= max {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO push_targets (id, owner, kind, url, p256dh, auth, secret, device, kinds, origin, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &target.id,
                &target.user,
                &target.kind.as_str(),
                &target.url,
                &target.p256dh,
                &target.auth,
                &target.secret,
                &target.device,
                &kinds_text(&target.kinds),
                &target.origin,
                &ms(&target.created_at),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {TARGET_COLUMNS} FROM push_targets WHERE owner = $1 ORDER BY created_ms, id"),
                &[&user],
            )
            .await?;
        Ok(rows.iter().map(target_row).collect())
    }

    async fn push_target(&self, id: &str) -> Result<Option<PushTarget>> {
        let row = self
            .client()
            .await?
            .query_opt(&format!("SELECT {TARGET_COLUMNS} FROM push_targets WHERE id = $1"), &[&id])
            .await?;
        Ok(row.as_ref().map(target_row))
    }

    async fn delete_push_target(&self, user: &str, id: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute("DELETE FROM push_targets WHERE owner = $1 AND id = $2", &[&user, &id]).await?;
        tx.execute("DELETE FROM push_outbox WHERE target_id = $1", &[&id]).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn enqueue_push(&self, event: &PushEvent, max_rows: u64) -> Result<Enqueued> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM push_events WHERE created_ms < $1",
            &[&(event.now_ms - crate::db::PUSH_EVENT_MEMORY_MS)],
        )
        .await?;
        // The event's key decides which caller enqueues: a second insert of it (another node,
        // a resent report) waits for the first transaction and then inserts nothing.
        let new = tx
            .execute(
                "INSERT INTO push_events (event_key, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&event.event_key, &event.now_ms],
            )
            .await?;
        if new == 0 {
            return Ok(Enqueued::Duplicate);
        }
        if let Some(token) = &event.token {
            tx.execute(
                "INSERT INTO push_tokens (hash, owner, task_id, request_id, expires_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[&token.hash, &event.user, &token.task_id, &token.request_id, &token.expires_ms],
            )
            .await?;
        }
        let waiting: i64 = tx.query_one("SELECT COUNT(*) FROM push_outbox", &[]).await?.get(0);
        if waiting as u64 + event.messages.len() as u64 > max_rows {
            tx.commit().await?;
            return Ok(Enqueued::Full);
        }
        let insert = tx
            .prepare(
                "INSERT INTO push_outbox (owner, target_id, payload, topic, ttl_secs, urgency, attempts,
                 next_attempt_ms, give_up_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
            )
            .await?;
        for m in &event.messages {
            let ttl = i32::try_from(m.ttl_secs).unwrap_or(i32::MAX);
            tx.execute(
                &insert,
                &[&event.user, &m.target_id, &m.payload, &m.topic, &ttl, &m.urgency, &event.now_ms, &event.give_up_ms],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Enqueued::Queued(event.messages.len()))
    }

    async fn claim_push(&self, node: &str, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        // SKIP LOCKED: nodes claiming at the same time take different rows; the lease keeps a
        // row claimed after the statement, until it is sent or the lease runs out.
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE push_outbox SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM push_outbox
                              WHERE next_attempt_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                              ORDER BY next_attempt_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING id, owner, target_id, payload, topic, ttl_secs, urgency, attempts, give_up_ms",
                &[&node, &(now_ms + lease_ms), &now_ms, &i64::from(limit)],
            )
            .await?;
        let mut out: Vec<OutboxRow> = rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                user: r.get(1),
                target_id: r.get(2),
                payload: r.get(3),
                topic: r.get(4),
                ttl_secs: r.get::<_, i32>(5).max(0) as u32,
                urgency: r.get(6),
                attempts: r.get::<_, i32>(7).max(0) as u32,
                give_up_ms: r.get(8),
            })
            .collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn push_done(&self, id: i64) -> Result<()> {
        self.client().await?.execute("DELETE FROM push_outbox WHERE id = $1", &[&id]).await?;
        Ok(())
    }

    async fn push_retry(&self, id: i64, next_attempt_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE push_outbox SET next_attempt_ms = $2, lease_owner = NULL, lease_until_ms = NULL WHERE id = $1",
                &[&id, &next_attempt_ms],
            )
            .await?;
        Ok(())
    }

    async fn push_outbox_len(&self) -> Result<u64> {
        let n: i64 = self.client().await?.query_one("SELECT COUNT(*) FROM push_outbox", &[]).await?.get(0);
        Ok(n as u64)
    }

    async fn use_push_token(&self, hash: &str, now_ms: i64) -> Result<Option<ActionToken>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "DELETE FROM push_tokens WHERE hash = $1 RETURNING owner, task_id, request_id, expires_ms",
                &[&hash],
            )
            .await?;
        Ok(row.filter(|r| r.get::<_, i64>(3) > now_ms).map(|r| ActionToken {
            user: r.get(0),
            task_id: r.get(1),
            request_id: r.get(2),
        }))
    }

    async fn delete_push_tokens(&self, task_id: &str, request_id: &str) -> Result<()> {
        self.client()
            .await?
            .execute("DELETE FROM push_tokens WHERE task_id = $1 AND request_id = $2", &[&task_id, &request_id])
            .await?;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
