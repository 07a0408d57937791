//! Alerts raised on this machine.

use chrono::Utc;
use flightdeck_protocol::{Alert, Severity};
use rusqlite::{params, OptionalExtension};

use super::outbox::{insert_ref, OutboxKind};
use super::{json_rows, Result, Store};

/// Filters for [`Store::alerts`].
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub severity: Option<Severity>,
    pub acknowledged: Option<bool>,
    pub limit: u32,
    pub offset: u64,
}

impl Store {
    /// Inserts or replaces an alert, and queues its new state for the relay link.
    pub fn insert_alert(&self, alert: &Alert) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO alerts (id, severity, kind, repo, task_id, acknowledged, created_at, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                alert.id,
                alert.severity.as_str(),
                alert.kind.as_str(),
                alert.repo,
                alert.task_id,
                alert.acknowledged,
                alert.created_at.to_rfc3339(),
                serde_json::to_string(alert)?
            ],
        )?;
        insert_ref(&tx, OutboxKind::Alert, &alert.id)?;
        let head = tx.last_insert_rowid();
        tx.commit()?;
        drop(conn);
        self.advance_outbox(head);
        Ok(())
    }

    pub fn alert(&self, id: &str) -> Result<Option<Alert>> {
        let json: Option<String> =
            self.conn().query_row("SELECT json FROM alerts WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    /// Alerts, newest first, with the total that match the filter.
    pub fn alerts(&self, filter: &AlertFilter) -> Result<(Vec<Alert>, u64)> {
        let conn = self.conn();
        let severity = filter.severity.map(Severity::as_str);
        let where_clause = "WHERE (?1 IS NULL OR severity = ?1) AND (?2 IS NULL OR acknowledged = ?2)";
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM alerts {where_clause}"),
            params![severity, filter.acknowledged],
            |r| r.get(0),
        )?;
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let alerts = json_rows(
            &conn,
            &format!("SELECT json FROM alerts {where_clause} ORDER BY created_at DESC LIMIT ?3 OFFSET ?4"),
            params![severity, filter.acknowledged, limit, filter.offset as i64],
        )?;
        Ok((alerts, total as u64))
    }

    /// Marks an alert acknowledged; returns it, or `None` when there is no such alert.
    pub fn acknowledge_alert(&self, id: &str) -> Result<Option<Alert>> {
        let Some(mut alert) = self.alert(id)? else { return Ok(None) };
        if !alert.acknowledged {
            alert.acknowledged = true;
            alert.acknowledged_at = Some(Utc::now());
            self.insert_alert(&alert)?;
        }
        Ok(Some(alert))
    }
}
