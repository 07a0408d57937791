//! [`SqliteStore`]: the [`Store`] of one node, a SQLite file in the data dir.
//!
//! The [`Db`] lives on one dedicated thread fed by a bounded queue of jobs, each answered
//! through a oneshot. A dedicated thread rather than `spawn_blocking`: it keeps rusqlite off
//! the executor and serialises the node's writes without a process-wide mutex (admin commands
//! in other processes still share the file, under SQLite's own locking).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_protocol::api::{HudSettings, KeyScope};
use flightdeck_protocol::realtime::StoredSeqEvent;
use flightdeck_protocol::{AgentInfo, Alert, RepoStatus, SeqEvent, Task, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::push::{ActionToken, Enqueued, OutboxRow, PushEvent, PushTarget};
use super::{
    CreatedKey, KeyRow, NumberedEvent, PendingDecision, Principal, Result, Run, RunState, SealedSecret, Store,
    StoreError, TaskFilter,
};
use crate::db::Db;

/// Jobs waiting for the database thread; senders wait when it is full.
const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// Cheap to clone; the database thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Opens (creating if needed) `relay.sqlite3` in `data_dir`; blocking.
    pub fn open_in(data_dir: &Path) -> Result<SqliteStore> {
        Ok(SqliteStore::new(Db::open_in(data_dir)?))
    }

    /// Moves `db` to its own thread. Jobs run inside the current Tokio runtime's context, if
    /// any, so they may spawn tasks as they could on the blocking pool.
    pub fn new(db: Db) -> SqliteStore {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name("relay-sqlite".into())
            .spawn(move || {
                let _context = runtime.as_ref().map(|r| r.enter());
                let mut db = db;
                while let Some(job) = queue.blocking_recv() {
                    // A job that panics drops its reply (its caller gets `Closed`); the next
                    // jobs still run.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut db)));
                }
            })
            .expect("cannot start the database thread");
        SqliteStore { jobs }
    }

    /// Runs `f` with the database on its thread and returns what it returns.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Db) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = reply.send(f(db));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)
    }

    /// [`SqliteStore::run`] for a `Db` method that can fail.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Db) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run(f).await?
    }
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_user(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.call(move |db| db.add_user(&name)).await
    }

    async fn user_exists(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.call(move |db| db.user_exists(&name)).await
    }

    async fn create_key(&self, user: &str, scope: KeyScope) -> Result<CreatedKey> {
        let user = user.to_owned();
        self.call(move |db| db.create_key(&user, scope)).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.call(|db| db.list_keys()).await
    }

    async fn revoke_key(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |db| db.revoke_key(&id)).await
    }

    async fn key_generation(&self) -> Result<i64> {
        self.call(|db| db.key_generation()).await
    }

    async fn next_change(&self, user: &str) -> Result<u64> {
        let user = user.to_owned();
        self.call(move |db| db.next_change(&user)).await
    }

    async fn changes(&self, user: &str) -> Result<u64> {
        let user = user.to_owned();
        self.call(move |db| db.changes(&user)).await
    }

    async fn revoked_key_ids(&self) -> Result<Vec<String>> {
        self.call(|db| db.revoked_key_ids()).await
    }

    async fn principal_by_key(&self, secret: &str) -> Result<Option<Principal>> {
        let secret = secret.to_owned();
        self.call(move |db| db.principal_by_key(&secret)).await
    }

    async fn create_session(&self, key_id: &str, ttl: Duration) -> Result<String> {
        let key_id = key_id.to_owned();
        self.call(move |db| db.create_session(&key_id, ttl)).await
    }

    async fn principal_by_session(&self, secret: &str) -> Result<Option<Principal>> {
        let secret = secret.to_owned();
        self.call(move |db| db.principal_by_session(&secret)).await
    }

    async fn delete_session(&self, secret: &str) -> Result<()> {
        let secret = secret.to_owned();
        self.call(move |db| db.delete_session(&secret)).await
    }

    async fn mark_all_agents_offline(&self) -> Result<()> {
        self.call(|db| db.mark_all_agents_offline()).await
    }

    async fn node_alive_until(&self, node_id: &str, until_ms: i64) -> Result<()> {
        let node_id = node_id.to_string();
        self.call(move |db| db.node_alive_until(&node_id, until_ms)).await
    }

    async fn live_nodes(&self, now_ms: i64) -> Result<Vec<String>> {
        self.call(move |db| db.live_nodes(now_ms)).await
    }

    async fn online_agent_conns(&self) -> Result<Vec<(String, String, String)>> {
        self.call(|db| db.online_agent_conns()).await
    }

    async fn upsert_agent(&self, user: &str, info: &AgentInfo, online: bool) -> Result<()> {
        let (user, info) = (user.to_owned(), info.clone());
        self.call(move |db| db.upsert_agent(&user, &info, online)).await
    }

    async fn set_agent_conn(&self, user: &str, agent_id: &str, conn: &str) -> Result<()> {
        let (user, agent_id, conn) = (user.to_owned(), agent_id.to_owned(), conn.to_owned());
        self.call(move |db| db.set_agent_conn(&user, &agent_id, &conn)).await
    }

    async fn mark_agent_offline(&self, user: &str, agent_id: &str, conn: &str) -> Result<Option<AgentInfo>> {
        let (user, agent_id, conn) = (user.to_owned(), agent_id.to_owned(), conn.to_owned());
        self.call(move |db| db.mark_agent_offline(&user, &agent_id, &conn)).await
    }

    async fn agent(&self, user: &str, agent_id: &str) -> Result<Option<AgentInfo>> {
        let (user, agent_id) = (user.to_owned(), agent_id.to_owned());
        self.call(move |db| db.agent(&user, &agent_id)).await
    }

    async fn agent_online(&self, user: &str, agent_id: &str) -> Result<bool> {
        let (user, agent_id) = (user.to_owned(), agent_id.to_owned());
        self.call(move |db| db.agent_online(&user, &agent_id)).await
    }

    async fn agents(&self, user: &str) -> Result<Vec<AgentInfo>> {
        let user = user.to_owned();
        self.call(move |db| db.agents(&user)).await
    }

    async fn repo(&self, user: &str, name: &str) -> Result<Option<(RepoStatus, String)>> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.call(move |db| db.repo(&user, &name)).await
    }

    async fn upsert_repo(&self, user: &str, agent_id: &str, repo: &RepoStatus) -> Result<()> {
        let (user, agent_id, repo) = (user.to_owned(), agent_id.to_owned(), repo.clone());
        self.call(move |db| db.upsert_repo(&user, &agent_id, &repo)).await
    }

    async fn delete_repo(&self, user: &str, name: &str) -> Result<()> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.call(move |db| db.delete_repo(&user, &name)).await
    }

    async fn repos(&self, user: &str, status: Option<&str>, agent_id: Option<&str>) -> Result<Vec<RepoStatus>> {
        let (user, status, agent_id) = (user.to_owned(), owned(status), owned(agent_id));
        self.call(move |db| db.repos(&user, status.as_deref(), agent_id.as_deref())).await
    }

    async fn repos_page(
        &self,
        user: &str,
        status: Option<&str>,
        agent_id: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<RepoStatus>, u64)> {
        let (user, status, agent_id) = (user.to_owned(), owned(status), owned(agent_id));
        self.call(move |db| db.repos_page(&user, status.as_deref(), agent_id.as_deref(), limit, offset)).await
    }

    async fn repo_agent_online(&self, user: &str, repo: &str) -> Result<Option<String>> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |db| db.repo_agent_online(&user, &repo)).await
    }

    async fn task(&self, user: &str, id: &str) -> Result<Option<Task>> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.call(move |db| db.task(&user, &id)).await
    }

    async fn task_user(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.call(move |db| db.task_user(&id)).await
    }

    async fn upsert_task(&self, user: &str, task: &Task) -> Result<Task> {
        let (user, task) = (user.to_owned(), task.clone());
        self.call(move |db| db.upsert_task(&user, &task)).await
    }

    async fn list_tasks(&self, user: &str, filter: &TaskFilter, limit: u32, offset: u64) -> Result<(Vec<Task>, u64)> {
        let (user, filter) = (user.to_owned(), filter.clone());
        self.call(move |db| db.list_tasks(&user, &filter, limit, offset)).await
    }

    async fn queued_tasks_for(&self, user: &str, agent_id: &str, repos: &[String]) -> Result<Vec<Task>> {
        let (user, agent_id, repos) = (user.to_owned(), agent_id.to_owned(), repos.to_vec());
        self.call(move |db| db.queued_tasks_for(&user, &agent_id, &repos)).await
    }

    async fn hud_task(&self, user: &str, repo: &str) -> Result<Option<Task>> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |db| db.hud_task(&user, &repo)).await
    }

    async fn hud_task_id(&self, user: &str, repo: &str) -> Result<Option<String>> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |db| db.hud_task_id(&user, &repo)).await
    }

    async fn task_repo_and_seq(&self, user: &str, id: &str) -> Result<Option<(String, u64)>> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.call(move |db| db.task_repo_and_seq(&user, &id)).await
    }

    async fn append_events(&self, user: &str, events: Vec<NumberedEvent>) -> Result<Vec<bool>> {
        let user = user.to_owned();
        self.call(move |db| db.append_events(&user, &events)).await
    }

    async fn events(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.events(&task_id, after, limit)).await
    }

    async fn stored_events(&self, task_id: &str) -> Result<Vec<StoredSeqEvent>> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.stored_events(&task_id)).await
    }

    async fn last_seqs(&self, user: &str, agent_id: &str, since_ms: i64) -> Result<BTreeMap<String, u64>> {
        let (user, agent_id) = (user.to_owned(), agent_id.to_owned());
        self.call(move |db| db.last_seqs(&user, &agent_id, since_ms)).await
    }

    async fn upsert_alert(&self, user: &str, alert: &Alert) -> Result<()> {
        let (user, alert) = (user.to_owned(), alert.clone());
        self.call(move |db| db.upsert_alert(&user, &alert)).await
    }

    async fn alert(&self, user: &str, id: &str) -> Result<Option<Alert>> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.call(move |db| db.alert(&user, &id)).await
    }

    async fn list_alerts(
        &self,
        user: &str,
        severity: Option<&str>,
        acknowledged: Option<bool>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Alert>, u64)> {
        let (user, severity) = (user.to_owned(), owned(severity));
        self.call(move |db| db.list_alerts(&user, severity.as_deref(), acknowledged, limit, offset)).await
    }

    async fn hud_settings(&self, user: &str, repo: &str) -> Result<HudSettings> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |db| db.hud_settings(&user, &repo)).await
    }

    async fn set_hud_settings(&self, user: &str, repo: &str, settings: HudSettings) -> Result<()> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |db| db.set_hud_settings(&user, &repo, settings)).await
    }

    async fn add_turn(&self, user: &str, turn: &Task) -> Result<Option<Task>> {
        let (user, turn) = (user.to_owned(), turn.clone());
        self.call(move |db| db.add_turn(&user, &turn)).await
    }

    async fn conversation(&self, user: &str, conversation_id: &str) -> Result<Vec<Task>> {
        let (user, conversation_id) = (user.to_owned(), conversation_id.to_owned());
        self.call(move |db| db.conversation(&user, &conversation_id)).await
    }

    async fn request_open(&self, task_id: &str, request_id: &str) -> Result<bool> {
        let (task_id, request_id) = (task_id.to_owned(), request_id.to_owned());
        self.call(move |db| db.request_open(&task_id, &request_id)).await
    }

    async fn insert_pending_decision(&self, user: &str, decision: &PendingDecision) -> Result<bool> {
        let (user, decision) = (user.to_owned(), decision.clone());
        self.call(move |db| db.insert_pending_decision(&user, &decision)).await
    }

    async fn decision_pending(&self, task_id: &str, request_id: &str) -> Result<bool> {
        let (task_id, request_id) = (task_id.to_owned(), request_id.to_owned());
        self.call(move |db| db.decision_pending(&task_id, &request_id)).await
    }

    async fn delete_pending_decision(&self, user: &str, task_id: &str, request_id: &str) -> Result<()> {
        let (user, task_id, request_id) = (user.to_owned(), task_id.to_owned(), request_id.to_owned());
        self.call(move |db| db.delete_pending_decision(&user, &task_id, &request_id)).await
    }

    async fn pending_decisions_for(&self, user: &str, agent_id: &str) -> Result<Vec<PendingDecision>> {
        let (user, agent_id) = (user.to_owned(), agent_id.to_owned());
        self.call(move |db| db.pending_decisions_for(&user, &agent_id)).await
    }

    async fn instance_id(&self) -> Result<String> {
        self.call(|db| db.instance_id()).await
    }

    async fn add_run(&self, user: &str, task_id: &str, clone_url: &str, checkout: Option<&str>) -> Result<()> {
        let (user, task_id, clone_url) = (user.to_owned(), task_id.to_owned(), clone_url.to_owned());
        let checkout = checkout.map(str::to_owned);
        self.call(move |db| db.add_run(&user, &task_id, &clone_url, checkout.as_deref())).await
    }

    async fn set_run_outcome(&self, task_id: &str, pushed_branch: Option<&str>, home: Option<&[u8]>) -> Result<()> {
        let (task_id, pushed_branch, home) =
            (task_id.to_owned(), pushed_branch.map(str::to_owned), home.map(<[u8]>::to_vec));
        self.call(move |db| db.set_run_outcome(&task_id, pushed_branch.as_deref(), home.as_deref())).await
    }

    async fn run_home(&self, task_id: &str) -> Result<Option<Vec<u8>>> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.run_home(&task_id)).await
    }

    async fn run(&self, task_id: &str) -> Result<Option<Run>> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.run(&task_id)).await
    }

    async fn queued_runs(&self) -> Result<u64> {
        self.call(|db| db.queued_runs()).await
    }

    async fn claim_next_run(&self) -> Result<Option<Run>> {
        self.call(|db| db.claim_next_run()).await
    }

    async fn set_run_state(&self, task_id: &str, state: RunState) -> Result<()> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.set_run_state(&task_id, state)).await
    }

    async fn set_run_container(&self, task_id: &str, container_id: &str) -> Result<()> {
        let (task_id, container_id) = (task_id.to_owned(), container_id.to_owned());
        self.call(move |db| db.set_run_container(&task_id, &container_id)).await
    }

    async fn set_run_seq_offset(&self, task_id: &str, offset: u64) -> Result<()> {
        let task_id = task_id.to_owned();
        self.call(move |db| db.set_run_seq_offset(&task_id, offset)).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        self.call(|db| db.unfinished_runs()).await
    }

    async fn create_task_key(&self, user: &str, task_id: &str) -> Result<CreatedKey> {
        let (user, task_id) = (user.to_owned(), task_id.to_owned());
        self.call(move |db| db.create_task_key(&user, &task_id)).await
    }

    async fn put_secret(&self, user: &str, name: &str, nonce: &[u8], value: &[u8], max: usize) -> Result<bool> {
        let (user, name, nonce, value) = (user.to_owned(), name.to_owned(), nonce.to_vec(), value.to_vec());
        self.call(move |db| db.put_secret(&user, &name, &nonce, &value, max)).await
    }

    async fn secret_names(&self, user: &str) -> Result<Vec<(String, Timestamp)>> {
        let user = user.to_owned();
        self.call(move |db| db.secret_names(&user)).await
    }

    async fn sealed_secrets(&self, user: &str) -> Result<Vec<SealedSecret>> {
        let user = user.to_owned();
        self.call(move |db| db.sealed_secrets(&user)).await
    }

    async fn delete_secret(&self, user: &str, name: &str) -> Result<bool> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.call(move |db| db.delete_secret(&user, &name)).await
    }

    async fn push_vapid_key(&self, candidate: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        let candidate = candidate.to_vec();
        self.call(move |db| db.push_vapid_key(&candidate, now_ms)).await
    }

    async fn put_push_target(&self, target: &PushTarget, max: usize) -> Result<bool> {
        let target = target.clone();
        self.call(move |db| db.put_push_target(&target, max)).await
    }

    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>> {
        let user = user.to_owned();
        self.call(move |db| db.push_targets(&user)).await
    }

    async fn push_target(&self, id: &str) -> Result<Option<PushTarget>> {
        let id = id.to_owned();
        self.call(move |db| db.push_target(&id)).await
    }

    async fn delete_push_target(&self, user: &str, id: &str) -> Result<bool> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.call(move |db| db.delete_push_target(&user, &id)).await
    }

    async fn enqueue_push(&self, event: &PushEvent, max_rows: u64) -> Result<Enqueued> {
        let event = event.clone();
        self.call(move |db| db.enqueue_push(&event, max_rows)).await
    }

    async fn claim_push(&self, node: &str, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let node = node.to_owned();
        self.call(move |db| db.claim_push(&node, now_ms, lease_ms, limit)).await
    }

    async fn push_done(&self, id: i64) -> Result<()> {
        self.call(move |db| db.push_done(id)).await
    }

    async fn push_retry(&self, id: i64, next_attempt_ms: i64) -> Result<()> {
        self.call(move |db| db.push_retry(id, next_attempt_ms)).await
    }

    async fn push_outbox_len(&self) -> Result<u64> {
        self.call(|db| db.push_outbox_len()).await
    }

    async fn use_push_token(&self, hash: &str, now_ms: i64) -> Result<Option<ActionToken>> {
        let hash = hash.to_owned();
        self.call(move |db| db.use_push_token(&hash, now_ms)).await
    }

    async fn delete_push_tokens(&self, task_id: &str, request_id: &str) -> Result<()> {
        let (task_id, request_id) = (task_id.to_owned(), request_id.to_owned());
        self.call(move |db| db.delete_push_tokens(&task_id, &request_id)).await
    }

    async fn flush(&self) -> Result<()> {
        self.call(|db| db.checkpoint()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_that_panics_answers_closed_and_the_next_jobs_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let panicked = store.run(|_| panic!("a failing job")).await;
        assert!(matches!(panicked, Err::<(), _>(StoreError::Closed)));
        store.add_user("alice").await.unwrap();
        assert!(store.user_exists("alice").await.unwrap());
    }
}
