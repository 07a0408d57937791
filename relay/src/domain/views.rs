//! What each audience sees: the public views of tasks and repos (HUDs, dashboards) and the
//! snapshots a viewer gets when it subscribes.

use flightdeck_protocol::realtime::{DashboardRepo, DashboardSnapshot, StoredHudSnapshot};

use crate::db::Db;
use crate::error::AppError;

/// A task as HUDs show it: without the agent (a host name is the owner's business).
pub fn public_task(task: flightdeck_protocol::Task) -> flightdeck_protocol::Task {
    flightdeck_protocol::Task { agent_id: None, ..task }
}

/// A repo's dashboard entry when its HUD is public (`None` for a private or unknown repo): the
/// same public views as its HUD.
pub fn dashboard_entry(db: &Db, user: &str, repo: &str) -> Result<Option<DashboardRepo>, AppError> {
    if !db.hud_settings(user, repo)?.public {
        return Ok(None);
    }
    let Some((status, _agent)) = db.repo(user, repo)? else { return Ok(None) };
    Ok(Some(DashboardRepo {
        repo: repo.to_string(),
        agent_online: db.repo_agent_online(user, repo)?.is_some(),
        repo_status: Some(status.public_view()),
        task: db.hud_task(user, repo)?.map(public_task),
    }))
}

/// `dashboard:<user>`: every public repo of the user, by slug.
pub fn dashboard_snapshot(db: &Db, user: &str) -> Result<DashboardSnapshot, AppError> {
    let mut repos = Vec::new();
    for status in db.repos(user, None, None)? {
        if let Some(entry) = dashboard_entry(db, user, &status.name)? {
            repos.push(entry);
        }
    }
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(DashboardSnapshot { user: user.to_string(), repos })
}

/// A HUD's state: public fields only, whoever asks.
pub fn hud_snapshot(db: &Db, user: &str, repo: &str, public: bool) -> Result<StoredHudSnapshot, AppError> {
    let task = db.hud_task(user, repo)?;
    let events = match &task {
        Some(t) => db.stored_events(&t.id)?,
        None => Vec::new(),
    };
    Ok(StoredHudSnapshot {
        user: user.to_string(),
        repo: repo.to_string(),
        public,
        agent_online: db.repo_agent_online(user, repo)?.is_some(),
        repo_status: db.repo(user, repo)?.map(|(r, _)| r.public_view()),
        task: task.map(public_task),
        events,
    })
}
