//! Conversations and the owner's pending decisions (SPEC 8).
//!
//! A decision made over REST is kept here until the task's transcript at the relay records a
//! `permission_decision` for its request (the agent applied it) or the task ends; until then it
//! is sent again on every connection of the agent that has the task. That is what lets a
//! decision survive a dropped link and a relay restart.

use chrono::{TimeZone, Utc};
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::{RelayMessage, Task, Timestamp};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{ms, task_from, Db, Result};

/// An owner's decision the agent has not recorded yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDecision {
    pub task_id: String,
    pub request_id: String,
    pub behavior: Behavior,
    pub updated_input: Option<Value>,
    pub message: Option<String>,
    /// `None` for the HUD and REST (the agent records `owner`); `push` from a notification.
    pub decided_by: Option<DecidedBy>,
    pub created_at: Timestamp,
}

impl PendingDecision {
    /// The `permission-decision` that carries it to the agent.
    pub fn to_message(&self) -> RelayMessage {
        RelayMessage::PermissionDecision {
            task_id: self.task_id.clone(),
            request_id: self.request_id.clone(),
            behavior: self.behavior,
            updated_input: self.updated_input.clone(),
            message: self.message.clone(),
            decided_by: self.decided_by,
        }
    }
}

/// How a pending decision's `decided_by` is stored (NULL: the owner over the HUD or REST).
pub(crate) fn decided_by_text(by: DecidedBy) -> &'static str {
    match by {
        DecidedBy::Push => "push",
        _ => "owner",
    }
}

pub(crate) fn decided_by_from(text: &str) -> Option<DecidedBy> {
    (text == "push").then_some(DecidedBy::Push)
}

impl Db {
    /// Every turn of a conversation, oldest first (by the `tasks_by_conversation` index).
    /// Stores a new turn of its conversation unless a turn of that conversation has not
    /// ended (`None`), in one transaction.
    pub fn add_turn(&self, user: &str, turn: &Task) -> Result<Option<Task>> {
        self.transaction(|db| {
            if db.conversation(user, turn.conversation())?.iter().any(|t| !t.status.is_terminal()) {
                return Ok(None);
            }
            db.upsert_task(user, turn).map(Some)
        })
    }

    pub fn conversation(&self, user: &str, conversation_id: &str) -> Result<Vec<Task>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT json, contig_seq FROM tasks WHERE user = ?1 AND conversation_id = ?2 ORDER BY created_ms, id",
        )?;
        let rows = stmt.query_map([user, conversation_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, seq) = row?;
            out.push(task_from(&json, seq)?);
        }
        Ok(out)
    }

    /// Whether the transcript of `task_id` holds a `permission_request` with `request_id` and no
    /// `permission_decision` for it after that.
    pub fn request_open(&self, task_id: &str, request_id: &str) -> Result<bool> {
        let last: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT json_extract(json, '$.kind') FROM task_events
                 WHERE task_id = ?1 AND seq <= (SELECT contig_seq FROM tasks WHERE id = ?1)
                 AND json_extract(json, '$.kind') IN ('permission_request', 'permission_decision')
                 AND json_extract(json, '$.requestId') = ?2
                 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([task_id, request_id], |r| r.get(0))
            .optional()?;
        Ok(last.as_deref() == Some("permission_request"))
    }

    /// Keeps a decision until the agent records it. False (nothing written) when one is already
    /// pending for that request.
    pub fn insert_pending_decision(&self, user: &str, decision: &PendingDecision) -> Result<bool> {
        let updated_input = decision.updated_input.as_ref().map(serde_json::to_string).transpose()?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO pending_decisions
             (user, task_id, request_id, behavior, updated_input, message, created_ms, decided_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                user,
                decision.task_id,
                decision.request_id,
                decision.behavior.as_str(),
                updated_input,
                decision.message,
                ms(&decision.created_at),
                decision.decided_by.map(decided_by_text)
            ],
        )?;
        Ok(n > 0)
    }

    /// Whether a decision for this request waits for the agent.
    pub fn decision_pending(&self, task_id: &str, request_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM pending_decisions WHERE task_id = ?1 AND request_id = ?2")?
            .query_row([task_id, request_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The agent recorded the decision (or said the request is no longer pending).
    pub fn delete_pending_decision(&self, user: &str, task_id: &str, request_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM pending_decisions WHERE user = ?1 AND task_id = ?2 AND request_id = ?3")?
            .execute([user, task_id, request_id])?;
        Ok(())
    }

    /// The task ended: nothing of it waits any more.
    pub fn delete_pending_decisions_of(&self, task_id: &str) -> Result<()> {
        self.conn.prepare_cached("DELETE FROM pending_decisions WHERE task_id = ?1")?.execute([task_id])?;
        Ok(())
    }

    /// The pending decisions of the tasks `agent_id` has, oldest first: what it is sent after
    /// `welcome`.
    pub fn pending_decisions_for(&self, user: &str, agent_id: &str) -> Result<Vec<PendingDecision>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.task_id, d.request_id, d.behavior, d.updated_input, d.message, d.created_ms, d.decided_by
             FROM pending_decisions d JOIN tasks t ON t.id = d.task_id
             WHERE d.user = ?1 AND t.user = ?1 AND t.agent_id = ?2
             ORDER BY d.created_ms, d.task_id, d.request_id",
        )?;
        let rows = stmt.query_map([user, agent_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (task_id, request_id, behavior, updated_input, message, created_ms, decided_by) = row?;
            out.push(PendingDecision {
                task_id,
                request_id,
                behavior: if behavior == "allow" { Behavior::Allow } else { Behavior::Deny },
                updated_input: updated_input.map(|j| serde_json::from_str(&j)).transpose()?,
                message,
                decided_by: decided_by.as_deref().and_then(decided_by_from),
                created_at: Utc.timestamp_millis_opt(created_ms).single().unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use flightdeck_protocol::event::DecidedBy;
    use flightdeck_protocol::{Executor, TaskEvent, TaskPayload, TaskSource, TaskStatus};

    use super::*;

    fn task(id: &str, conversation: &str, at_ms: i64) -> Task {
        let payload = TaskPayload { prompt: Some("p".into()), ..Default::default() };
        let at = Utc.timestamp_millis_opt(at_ms).unwrap();
        Task {
            conversation_id: conversation.into(),
            ..Task::queued(id, "t", "web", Executor::Claude, payload, TaskSource::Remote, at)
        }
    }

    #[test]
    fn tasks_of_a_database_without_conversations_are_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.sqlite3");
        {
            // A database as the relay left it before SPEC 8, holding a task without conversationId.
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &super::super::MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            let mut old = serde_json::to_value(task("old-1", "", 1)).unwrap();
            old.as_object_mut().unwrap().remove("conversationId");
            conn.execute(
                "INSERT INTO tasks (id, user, repo, executor, status, created_ms, updated_ms, json)
                 VALUES ('old-1', 'alice', 'web', 'claude', 'completed', 1, 1, ?1)",
                [old.to_string()],
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let turns = db.conversation("alice", "old-1").unwrap();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].conversation_id, "old-1", "always set when read");
        // A follow-up recorded now joins it.
        db.upsert_task("alice", &task("new-2", "old-1", 2)).unwrap();
        let ids: Vec<String> = db.conversation("alice", "old-1").unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["old-1", "new-2"]);
        assert!(db.conversation("bob", "old-1").unwrap().is_empty());
    }

    #[test]
    fn a_decision_is_pending_until_taken_back_or_its_task_ends() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).unwrap();
        let mut t = Task { agent_id: Some("mac".into()), ..task("t-1", "t-1", 1) };
        db.upsert_task("alice", &t).unwrap();
        let decision = PendingDecision {
            task_id: "t-1".into(),
            request_id: "r-1".into(),
            behavior: Behavior::Deny,
            updated_input: Some(serde_json::json!({"a": [1]})),
            message: Some("no".into()),
            decided_by: None,
            created_at: Utc.timestamp_millis_opt(5).unwrap(),
        };
        assert!(db.insert_pending_decision("alice", &decision).unwrap());
        assert!(!db.insert_pending_decision("alice", &decision).unwrap(), "one per request");
        assert!(db.decision_pending("t-1", "r-1").unwrap());
        assert_eq!(db.pending_decisions_for("alice", "mac").unwrap(), std::slice::from_ref(&decision));
        assert!(db.pending_decisions_for("alice", "other").unwrap().is_empty());
        assert!(db.pending_decisions_for("bob", "mac").unwrap().is_empty());
        db.delete_pending_decision("bob", "t-1", "r-1").unwrap();
        assert!(db.decision_pending("t-1", "r-1").unwrap(), "only its user's");
        db.delete_pending_decision("alice", "t-1", "r-1").unwrap();
        assert!(!db.decision_pending("t-1", "r-1").unwrap());

        // Open while the transcript's last word on it is the request.
        let request = |id: &str| TaskEvent::PermissionRequest {
            request_id: id.into(),
            tool_name: "Bash".into(),
            input: serde_json::json!({}),
            description: None,
            suggestions: None,
        };
        let decided = TaskEvent::PermissionDecision {
            request_id: "r-1".into(),
            behavior: Behavior::Allow,
            message: None,
            updated_input: None,
            decided_by: DecidedBy::Local,
        };
        assert!(!db.request_open("t-1", "r-1").unwrap(), "never asked");
        assert!(db.append_event("t-1", 1, &request("r-1")).unwrap());
        assert!(db.append_event("t-1", 2, &request("r-2")).unwrap());
        assert!(db.request_open("t-1", "r-1").unwrap());
        assert!(db.append_event("t-1", 3, &decided).unwrap());
        assert!(!db.request_open("t-1", "r-1").unwrap(), "decided");
        assert!(db.request_open("t-1", "r-2").unwrap());

        assert!(db.insert_pending_decision("alice", &decision).unwrap());
        t.status = TaskStatus::Waiting;
        db.upsert_task("alice", &t).unwrap();
        assert!(db.decision_pending("t-1", "r-1").unwrap(), "waiting is not an end");
        t.status = TaskStatus::Interrupted;
        db.upsert_task("alice", &t).unwrap();
        assert!(!db.decision_pending("t-1", "r-1").unwrap(), "the task ended");
    }
}
