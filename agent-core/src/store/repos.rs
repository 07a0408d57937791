//! The latest status of each watched repo.

use flightdeck_protocol::RepoStatus;
use rusqlite::{params, OptionalExtension};

use super::{json_rows, Result, Store};

impl Store {
    /// Saves the latest status of a repo (replacing the previous one).
    pub fn save_repo_status(&self, status: &RepoStatus) -> Result<()> {
        let json = serde_json::to_string(status)?;
        let updated = status.updated_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        self.conn().execute(
            "INSERT INTO repo_status (id, name, path, status, json, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, path = excluded.path,
                status = excluded.status, json = excluded.json, updated_at = excluded.updated_at",
            params![
                status.id,
                status.name,
                status.path.as_deref().unwrap_or(""),
                status.status.as_str(),
                json,
                updated
            ],
        )?;
        Ok(())
    }

    /// Every saved repo status, by name.
    pub fn repo_statuses(&self) -> Result<Vec<RepoStatus>> {
        json_rows(&self.conn(), "SELECT json FROM repo_status ORDER BY name", [])
    }

    /// The saved status of one repo.
    pub fn repo_status(&self, id: &str) -> Result<Option<RepoStatus>> {
        let json: Option<String> =
            self.conn().query_row("SELECT json FROM repo_status WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub fn delete_repo_status(&self, id: &str) -> Result<()> {
        self.conn().execute("DELETE FROM repo_status WHERE id = ?1", [id])?;
        Ok(())
    }
}
