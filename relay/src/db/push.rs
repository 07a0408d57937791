//! Push (SPEC 13) in SQLite: the VAPID key, targets, the outbox, action tokens, and the events
//! already enqueued. See [`crate::store::push`] for the rows.

use chrono::{TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{ms, Db, Result};
use crate::store::push::{kinds_from, kinds_text, ActionToken, Enqueued, OutboxRow, PushEvent, PushTarget, TargetKind};

/// Events remembered (to enqueue each once) for a week; older keys are forgotten.
pub(crate) const EVENT_MEMORY_MS: i64 = 7 * 24 * 3600 * 1000;

pub(crate) const TARGET_COLUMNS: &str = "id, user, kind, url, p256dh, auth, secret, device, kinds, origin, created_ms";

fn target_row(r: &Row<'_>) -> rusqlite::Result<PushTarget> {
    Ok(PushTarget {
        id: r.get(0)?,
        user: r.get(1)?,
        kind: TargetKind::parse(&r.get::<_, String>(2)?),
        url: r.get(3)?,
        p256dh: r.get(4)?,
        auth: r.get(5)?,
        secret: r.get(6)?,
        device: r.get(7)?,
        kinds: kinds_from(&r.get::<_, String>(8)?),
        origin: r.get(9)?,
        created_at: Utc.timestamp_millis_opt(r.get(10)?).single().unwrap_or_default(),
    })
}

impl Db {
    /// The VAPID private key: `candidate` is stored if there is none yet; the stored one is
    /// returned either way (so every node, and every process, signs with the same key).
    pub fn push_vapid_key(&self, candidate: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        self.conn.execute(
            "INSERT OR IGNORE INTO push_vapid (id, private_key, created_ms) VALUES (1, ?1, ?2)",
            params![candidate, now_ms],
        )?;
        Ok(self.conn.query_row("SELECT private_key FROM push_vapid WHERE id = 1", [], |r| r.get(0))?)
    }

    /// Stores a target; a channel replaces the user's channel of its kind. False, and nothing
    /// stored, when the user already has `max` targets (besides the one replaced).
    pub fn put_push_target(&self, target: &PushTarget, max: usize) -> Result<bool> {
        self.transaction(|db| {
            if target.kind != TargetKind::WebPush {
                db.conn.execute(
                    "DELETE FROM push_targets WHERE user = ?1 AND kind = ?2",
                    params![target.user, target.kind.as_str()],
                )?;
            }
            let count: i64 =
                db.conn.query_row("SELECT count(*) FROM push_targets WHERE user = ?1", [&target.user], |r| r.get(0))?;
            if count as usize >= max {
                return Ok(false);
            }
            db.conn.execute(
                "INSERT INTO push_targets (id, user, kind, url, p256dh, auth, secret, device, kinds, origin, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    target.id,
                    target.user,
                    target.kind.as_str(),
                    target.url,
                    target.p256dh,
                    target.auth,
                    target.secret,
                    target.device,
                    kinds_text(&target.kinds),
                    target.origin,
                    ms(&target.created_at)
                ],
            )?;
            Ok(true)
        })
    }

    pub fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TARGET_COLUMNS} FROM push_targets WHERE user = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([user], target_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn push_target(&self, id: &str) -> Result<Option<PushTarget>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {TARGET_COLUMNS} FROM push_targets WHERE id = ?1"))?
            .query_row([id], target_row)
            .optional()?)
    }

    /// Deletes a target of `user` and whatever waits to be sent to it.
    pub fn delete_push_target(&self, user: &str, id: &str) -> Result<bool> {
        self.transaction(|db| {
            let n = db.conn.execute("DELETE FROM push_targets WHERE user = ?1 AND id = ?2", [user, id])?;
            db.conn.execute("DELETE FROM push_outbox WHERE target_id = ?1", [id])?;
            Ok(n > 0)
        })
    }

    /// Enqueues an event's messages (and its action token) once per `event_key`, in one
    /// transaction; nothing beyond `max_rows` waiting messages.
    pub fn enqueue_push(&self, event: &PushEvent, max_rows: u64) -> Result<Enqueued> {
        self.transaction(|db| {
            db.conn.execute("DELETE FROM push_events WHERE created_ms < ?1", [event.now_ms - EVENT_MEMORY_MS])?;
            let new = db.conn.execute(
                "INSERT OR IGNORE INTO push_events (event_key, created_ms) VALUES (?1, ?2)",
                params![event.event_key, event.now_ms],
            )?;
            if new == 0 {
                return Ok(Enqueued::Duplicate);
            }
            if let Some(token) = &event.token {
                db.conn.execute(
                    "INSERT OR IGNORE INTO push_tokens (hash, user, task_id, request_id, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![token.hash, event.user, token.task_id, token.request_id, token.expires_ms],
                )?;
            }
            let waiting: i64 = db.conn.query_row("SELECT count(*) FROM push_outbox", [], |r| r.get(0))?;
            if waiting as u64 + event.messages.len() as u64 > max_rows {
                return Ok(Enqueued::Full);
            }
            let mut insert = db.conn.prepare_cached(
                "INSERT INTO push_outbox (user, target_id, payload, topic, ttl_secs, urgency, attempts,
                 next_attempt_ms, give_up_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
            )?;
            for m in &event.messages {
                insert.execute(params![
                    event.user,
                    m.target_id,
                    m.payload,
                    m.topic,
                    m.ttl_secs,
                    m.urgency,
                    event.now_ms,
                    event.give_up_ms
                ])?;
            }
            Ok(Enqueued::Queued(event.messages.len()))
        })
    }

    /// Claims up to `limit` due messages whose lease is free or expired, for `node` until
    /// `now_ms + lease_ms`: one statement, so two claimers never take the same row.
    pub fn claim_push(&self, node: &str, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE push_outbox SET lease_owner = ?1, lease_until_ms = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM push_outbox
                          WHERE next_attempt_ms <= ?3 AND (lease_until_ms IS NULL OR lease_until_ms <= ?3)
                          ORDER BY next_attempt_ms, id LIMIT ?4)
             RETURNING id, user, target_id, payload, topic, ttl_secs, urgency, attempts, give_up_ms",
        )?;
        let rows = stmt.query_map(params![node, now_ms + lease_ms, now_ms, limit], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                user: r.get(1)?,
                target_id: r.get(2)?,
                payload: r.get(3)?,
                topic: r.get(4)?,
                ttl_secs: r.get(5)?,
                urgency: r.get(6)?,
                attempts: r.get(7)?,
                give_up_ms: r.get(8)?,
            })
        })?;
        let mut out: Vec<OutboxRow> = rows.collect::<rusqlite::Result<_>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The message was delivered (or will never be): gone.
    pub fn push_done(&self, id: i64) -> Result<()> {
        self.conn.prepare_cached("DELETE FROM push_outbox WHERE id = ?1")?.execute([id])?;
        Ok(())
    }

    /// Try again at `next_attempt_ms`, by any node.
    pub fn push_retry(&self, id: i64, next_attempt_ms: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE push_outbox SET next_attempt_ms = ?2, lease_owner = NULL, lease_until_ms = NULL WHERE id = ?1",
            )?
            .execute(params![id, next_attempt_ms])?;
        Ok(())
    }

    pub fn push_outbox_len(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT count(*) FROM push_outbox", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Consumes a live token: it is deleted whether live or expired, so it works once.
    pub fn use_push_token(&self, hash: &str, now_ms: i64) -> Result<Option<ActionToken>> {
        let row = self
            .conn
            .prepare_cached("DELETE FROM push_tokens WHERE hash = ?1 RETURNING user, task_id, request_id, expires_ms")?
            .query_row([hash], |r| {
                Ok((ActionToken { user: r.get(0)?, task_id: r.get(1)?, request_id: r.get(2)? }, r.get::<_, i64>(3)?))
            })
            .optional()?;
        Ok(row.filter(|(_, expires)| *expires > now_ms).map(|(t, _)| t))
    }

    /// The request was decided: its tokens die.
    pub fn delete_push_tokens(&self, task_id: &str, request_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM push_tokens WHERE task_id = ?1 AND request_id = ?2")?
            .execute([task_id, request_id])?;
        Ok(())
    }
}
