//! The relay's persistent state behind one async boundary, [`Store`], so that the transports
//! and the domain do not depend on which database holds it.
//!
//! - [`sqlite`]: [`SqliteStore`], the embedded default for one node: [`crate::db::Db`] on a
//!   dedicated thread.
//! - [`postgres`]: [`PostgresStore`], shared by relay nodes on many hosts (SPEC 11).
//!
//! Multi-statement operations are single methods (`revoke_key`, `create_task_key`,
//! `append_events`, `claim_next_run`), so every backend can make each one transaction.
//!
//! The row types ([`Principal`], [`KeyRow`], [`Run`], ...) are defined beside the SQLite code
//! in [`crate::db`] and re-exported here; the store is their public name.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck_protocol::api::{HudSettings, KeyScope};
use flightdeck_protocol::realtime::StoredSeqEvent;
use flightdeck_protocol::{AgentInfo, Alert, RepoStatus, SeqEvent, Task, TaskEvent, Timestamp};

pub use crate::db::{
    CreatedKey, KeyRow, PendingDecision, Principal, Run, RunState, SealedSecret, StoreError, TaskFilter,
};

pub mod postgres;
pub mod push;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store `settings` name: PostgreSQL for a `postgres://` (or `postgresql://`) `database`,
/// else SQLite in `data_dir`.
pub async fn open(settings: &crate::config::Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    match settings.database.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
        }
        Some(_) => anyhow::bail!("database must be a postgres:// URL (or unset, for SQLite in data_dir)"),
        None => {
            let data_dir = settings.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open_in(&data_dir)).await??;
            Ok(std::sync::Arc::new(store))
        }
    }
}

/// One event to append to a task's transcript: `(task id, seq, event)`.
pub type NumberedEvent = (String, u64, TaskEvent);

/// Everything the relay keeps. Every method is one transaction.
///
/// Implementations: [`SqliteStore`], [`PostgresStore`]. The conformance tests in `relay/tests/it/store.rs` run the
/// same cases against each.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ----- users, keys, sessions -----------------------------------------------------------

    /// Creates a user; [`StoreError::UserExists`] when the name is taken.
    async fn add_user(&self, name: &str) -> Result<()>;
    async fn user_exists(&self, name: &str) -> Result<bool>;
    /// A new key (only its hash is stored); [`StoreError::NoUser`] for an unknown user.
    async fn create_key(&self, user: &str, scope: KeyScope) -> Result<CreatedKey>;
    async fn list_keys(&self) -> Result<Vec<KeyRow>>;
    /// Revokes a live key and its sessions and bumps the key generation; false when no such
    /// live key exists.
    async fn revoke_key(&self, id: &str) -> Result<bool>;
    /// Grows each time a key is revoked, by any process.
    async fn key_generation(&self) -> Result<i64>;
    async fn revoked_key_ids(&self) -> Result<Vec<String>>;
    async fn principal_by_key(&self, secret: &str) -> Result<Option<Principal>>;
    /// A login session for `key_id`; returns the cookie secret (stored hashed).
    async fn create_session(&self, key_id: &str, ttl: Duration) -> Result<String>;
    async fn principal_by_session(&self, secret: &str) -> Result<Option<Principal>>;
    async fn delete_session(&self, secret: &str) -> Result<()>;

    // ----- changes of latest state -----------------------------------------------------------

    /// Counts one more change of `user`'s latest state, after it was stored, and returns its
    /// number: events of latest state carry it, so that a viewer can tell which ones its
    /// snapshot held (see [`crate::hub`]). Numbers grow by one per user, in the order of the
    /// calls.
    async fn next_change(&self, user: &str) -> Result<u64>;
    /// The number of `user`'s last change (0 before the first): read before a snapshot.
    async fn changes(&self, user: &str) -> Result<u64>;

    // ----- agents --------------------------------------------------------------------------

    async fn mark_all_agents_offline(&self) -> Result<()>;
    /// This node counts as alive until `until_ms` unless it says so again (SPEC 11: nodes
    /// notice a dead one within 30 s). Each node sets its own deadline, from its own settings.
    async fn node_alive_until(&self, node_id: &str, until_ms: i64) -> Result<()>;
    /// The nodes alive at `now_ms`.
    async fn live_nodes(&self, now_ms: i64) -> Result<Vec<String>>;
    /// Every online agent with its connection (`<node id>:<socket>`): (user, agent id, conn).
    async fn online_agent_conns(&self) -> Result<Vec<(String, String, String)>>;
    async fn upsert_agent(&self, user: &str, info: &AgentInfo, online: bool) -> Result<()>;
    /// Records which connection (node and socket) an agent is on now.
    async fn set_agent_conn(&self, user: &str, agent_id: &str, conn: &str) -> Result<()>;
    /// Marks an agent offline if `conn` is still its connection; the agent as it is now.
    async fn mark_agent_offline(&self, user: &str, agent_id: &str, conn: &str) -> Result<Option<AgentInfo>>;
    async fn agent(&self, user: &str, agent_id: &str) -> Result<Option<AgentInfo>>;
    async fn agent_online(&self, user: &str, agent_id: &str) -> Result<bool>;
    async fn agents(&self, user: &str) -> Result<Vec<AgentInfo>>;

    // ----- repos ---------------------------------------------------------------------------

    /// The repo's latest status and the agent that has it.
    async fn repo(&self, user: &str, name: &str) -> Result<Option<(RepoStatus, String)>>;
    async fn upsert_repo(&self, user: &str, agent_id: &str, repo: &RepoStatus) -> Result<()>;
    async fn delete_repo(&self, user: &str, name: &str) -> Result<()>;
    async fn repos(&self, user: &str, status: Option<&str>, agent_id: Option<&str>) -> Result<Vec<RepoStatus>>;
    /// A page of repos (by name) and how many match in all.
    async fn repos_page(
        &self,
        user: &str,
        status: Option<&str>,
        agent_id: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<RepoStatus>, u64)>;
    /// The online agent of `user` that has `repo`, if any.
    async fn repo_agent_online(&self, user: &str, repo: &str) -> Result<Option<String>>;

    // ----- tasks and transcripts -----------------------------------------------------------

    async fn task(&self, user: &str, id: &str) -> Result<Option<Task>>;
    /// The user a task id belongs to, whoever that is.
    async fn task_user(&self, id: &str) -> Result<Option<String>>;
    /// Stores the latest state of a task and returns it as stored (`last_seq` is the store's
    /// count); a task that ended has no pending decisions any more.
    async fn upsert_task(&self, user: &str, task: &Task) -> Result<Task>;
    async fn list_tasks(&self, user: &str, filter: &TaskFilter, limit: u32, offset: u64) -> Result<(Vec<Task>, u64)>;
    /// Queued tasks that `agent_id` should run: in one of `repos`, for that agent or for any.
    async fn queued_tasks_for(&self, user: &str, agent_id: &str, repos: &[String]) -> Result<Vec<Task>>;
    /// The task a repo's HUD shows: its newest.
    async fn hud_task(&self, user: &str, repo: &str) -> Result<Option<Task>>;
    async fn hud_task_id(&self, user: &str, repo: &str) -> Result<Option<String>>;
    /// The repo of one of `user`'s tasks and the last contiguous seq held for it.
    async fn task_repo_and_seq(&self, user: &str, id: &str) -> Result<Option<(String, u64)>>;
    /// Appends each event whose seq extends its task's transcript by one (in order, in one
    /// transaction); the answer says, per event, whether it was stored. A stored
    /// `permission_decision` ends the pending decision of its request.
    async fn append_events(&self, user: &str, events: Vec<NumberedEvent>) -> Result<Vec<bool>>;
    /// A task's transcript after `after`, at most `limit` events.
    async fn events(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<SeqEvent>>;
    /// The whole transcript as stored (each event's JSON text).
    async fn stored_events(&self, task_id: &str) -> Result<Vec<StoredSeqEvent>>;
    /// `welcome.lastSeqs` of an agent (unfinished tasks and those touched since `since_ms`).
    async fn last_seqs(&self, user: &str, agent_id: &str, since_ms: i64) -> Result<BTreeMap<String, u64>>;

    // ----- alerts and HUD settings ---------------------------------------------------------

    async fn upsert_alert(&self, user: &str, alert: &Alert) -> Result<()>;
    async fn alert(&self, user: &str, id: &str) -> Result<Option<Alert>>;
    async fn list_alerts(
        &self,
        user: &str,
        severity: Option<&str>,
        acknowledged: Option<bool>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Alert>, u64)>;
    /// A repo's HUD settings; a HUD never configured is private with embedding off.
    async fn hud_settings(&self, user: &str, repo: &str) -> Result<HudSettings>;
    async fn set_hud_settings(&self, user: &str, repo: &str, settings: HudSettings) -> Result<()>;

    // ----- conversations and pending decisions (SPEC 8) ------------------------------------

    /// Stores a new turn of its conversation (`turn.conversation()`) unless a turn of that
    /// conversation has not ended: then `None` and nothing is stored. Two calls for one
    /// conversation never both store.
    async fn add_turn(&self, user: &str, turn: &Task) -> Result<Option<Task>>;
    /// The turns of a conversation, oldest first.
    async fn conversation(&self, user: &str, conversation_id: &str) -> Result<Vec<Task>>;
    /// True when the last of the request's request/decision events is the request.
    async fn request_open(&self, task_id: &str, request_id: &str) -> Result<bool>;
    /// False when a decision for that request is already pending.
    async fn insert_pending_decision(&self, user: &str, decision: &PendingDecision) -> Result<bool>;
    async fn decision_pending(&self, task_id: &str, request_id: &str) -> Result<bool>;
    async fn delete_pending_decision(&self, user: &str, task_id: &str, request_id: &str) -> Result<()>;
    /// The owner's decisions for the tasks of `agent_id`, oldest first.
    async fn pending_decisions_for(&self, user: &str, agent_id: &str) -> Result<Vec<PendingDecision>>;

    // ----- container runs and secrets (SPEC 10) --------------------------------------------

    /// This relay's instance id (made once per database).
    async fn instance_id(&self) -> Result<String>;
    /// A queued run; its clone checks out `checkout` (a branch), else the default branch.
    async fn add_run(&self, user: &str, task_id: &str, clone_url: &str, checkout: Option<&str>) -> Result<()>;
    /// What an ended run leaves its follow-ups: the branch it pushed, the container's Claude
    /// state (sealed by the caller; `None`: nothing kept).
    async fn set_run_outcome(&self, task_id: &str, pushed_branch: Option<&str>, home: Option<&[u8]>) -> Result<()>;
    /// The Claude state an ended run kept (sealed), if any.
    async fn run_home(&self, task_id: &str) -> Result<Option<Vec<u8>>>;
    async fn run(&self, task_id: &str) -> Result<Option<Run>>;
    async fn queued_runs(&self) -> Result<u64>;
    /// Claims the oldest queued run whose task is still queued; runs of tasks that are no
    /// longer queued are ended on the way.
    async fn claim_next_run(&self) -> Result<Option<Run>>;
    async fn set_run_state(&self, task_id: &str, state: RunState) -> Result<()>;
    /// Records the run's container; the run is `running`.
    async fn set_run_container(&self, task_id: &str, container_id: &str) -> Result<()>;
    async fn set_run_seq_offset(&self, task_id: &str, offset: u64) -> Result<()>;
    /// Runs left `starting` or `running`.
    async fn unfinished_runs(&self) -> Result<Vec<Run>>;
    /// A one-time agent key bound to `task_id`, recorded on its run.
    async fn create_task_key(&self, user: &str, task_id: &str) -> Result<CreatedKey>;
    /// Stores (or replaces) a sealed secret; false, and nothing stored, when `user` already has
    /// `max` secrets and `name` is not one of them. Two calls never both pass the bound.
    async fn put_secret(&self, user: &str, name: &str, nonce: &[u8], value: &[u8], max: usize) -> Result<bool>;
    async fn secret_names(&self, user: &str) -> Result<Vec<(String, Timestamp)>>;
    async fn sealed_secrets(&self, user: &str) -> Result<Vec<SealedSecret>>;
    async fn delete_secret(&self, user: &str, name: &str) -> Result<bool>;

    // ----- push (SPEC 13) -------------------------------------------------------------------

    /// The VAPID private key: stores `candidate` unless a key is stored already, and returns
    /// the stored one (nodes starting at once all end up with the first one stored).
    async fn push_vapid_key(&self, candidate: &[u8], now_ms: i64) -> Result<Vec<u8>>;
    /// Stores a target; a channel (ntfy, webhook) replaces the user's channel of its kind.
    /// False, and nothing stored, when the user already has `max` targets.
    async fn put_push_target(&self, target: &push::PushTarget, max: usize) -> Result<bool>;
    /// A user's targets, oldest first.
    async fn push_targets(&self, user: &str) -> Result<Vec<push::PushTarget>>;
    async fn push_target(&self, id: &str) -> Result<Option<push::PushTarget>>;
    /// Deletes one of `user`'s targets and its waiting messages; false when there is none.
    async fn delete_push_target(&self, user: &str, id: &str) -> Result<bool>;
    /// Enqueues an event's messages and action token, once per `event.event_key` whichever
    /// node calls; at most `max_rows` messages wait in all (beyond: [`push::Enqueued::Full`]).
    async fn enqueue_push(&self, event: &push::PushEvent, max_rows: u64) -> Result<push::Enqueued>;
    /// Claims up to `limit` due messages whose lease is free or over, leased to `node` for
    /// `lease_ms`; a message is claimed by one node at a time.
    async fn claim_push(&self, node: &str, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<push::OutboxRow>>;
    /// Sent (or never to be): deleted.
    async fn push_done(&self, id: i64) -> Result<()>;
    /// Released, due again at `next_attempt_ms`.
    async fn push_retry(&self, id: i64, next_attempt_ms: i64) -> Result<()>;
    /// Messages waiting in the outbox.
    async fn push_outbox_len(&self) -> Result<u64>;
    /// Consumes the token with this hash: the token it was if it was live, `None` if it was
    /// unknown, used or expired. Works once, also when two callers race.
    async fn use_push_token(&self, hash: &str, now_ms: i64) -> Result<Option<push::ActionToken>>;
    /// The request was decided: its tokens die.
    async fn delete_push_tokens(&self, task_id: &str, request_id: &str) -> Result<()>;

    // ----- lifecycle -----------------------------------------------------------------------

    /// Makes everything written durable in the store's own files (on shutdown).
    async fn flush(&self) -> Result<()>;
}
