//! What an agent reports about itself and its repos: git status, alerts.

use chrono::Utc;
use flightdeck_protocol::{Alert, RepoStatus};

use crate::db::Db;
use crate::error::AppError;
use crate::state::AppState;

/// Stores an alert as the agent (re)sends it and publishes it when it changed. An
/// acknowledgement is never undone by a resend (the agent may not know of it); an unchanged
/// alert is not published again.
pub fn record_alert(db: &Db, st: &AppState, user: &str, alert: Alert) -> Result<(), AppError> {
    let previous = db.alert(user, &alert.id)?;
    let alert = merge_alert(previous.as_ref(), alert);
    if previous.as_ref() != Some(&alert) {
        db.upsert_alert(user, &alert)?;
        st.publish_alert(db, user, &alert)?;
    }
    Ok(())
}

/// An alert as the agent (re)sends it, over the one the relay holds: acknowledged if either
/// says so, with the first acknowledgement's time.
fn merge_alert(previous: Option<&Alert>, mut alert: Alert) -> Alert {
    if let Some(previous) = previous.filter(|p| p.acknowledged) {
        alert.acknowledged = true;
        alert.acknowledged_at = previous.acknowledged_at.or(alert.acknowledged_at);
    } else if alert.acknowledged && alert.acknowledged_at.is_none() {
        alert.acknowledged_at = Some(Utc::now());
    }
    alert
}

/// Stores a `git-status` and publishes what changed: repos (in full to the owner, public view to
/// HUDs), repos gone from a `full` set, HUDs whose agent came online, the agent's repo list.
pub fn record_git_status(
    db: &Db,
    st: &AppState,
    user: &str,
    agent_id: &str,
    repos: &[RepoStatus],
    full: bool,
) -> Result<(), AppError> {
    for repo in repos {
        let online_before = db.repo_agent_online(user, &repo.name)?.is_some();
        let previous = db.repo(user, &repo.name)?;
        db.upsert_repo(user, agent_id, repo)?;
        let changed = previous.as_ref().is_none_or(|(p, a)| !p.same_state(repo) || a != agent_id);
        if changed {
            st.publish_repo(db, user, repo)?;
        }
        if !online_before {
            let change = db.next_change(user)?;
            st.publish_hud_agent_online(user, &repo.name, true, change);
            if !changed {
                st.publish_dashboard(db, user, &repo.name)?;
            }
        }
    }
    if full {
        for gone in db.repos(user, None, Some(agent_id))? {
            if !repos.iter().any(|r| r.name == gone.name) {
                db.delete_repo(user, &gone.name)?;
                let was_public = db.hud_settings(user, &gone.name)?.public;
                st.publish_repo_removed(db, user, &gone, was_public)?;
            }
        }
    }
    if let Some(mut info) = db.agent(user, agent_id)? {
        let all: Vec<String> = db.repos(user, None, Some(agent_id))?.into_iter().map(|r| r.name).collect();
        if info.repos != all {
            info.repos = all;
            db.upsert_agent(user, &info, true)?;
            st.publish_agent(db, user, &info)?;
        }
    }
    Ok(())
}
