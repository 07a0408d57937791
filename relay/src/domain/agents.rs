//! What an agent reports about itself and its repos: git status, alerts.

use chrono::Utc;
use flightdeck_protocol::{Alert, RepoStatus};

use crate::error::AppError;
use crate::state::AppState;

/// Stores an alert as the agent (re)sends it and publishes it when it changed. An
/// acknowledgement is never undone by a resend (the agent may not know of it); an unchanged
/// alert is not published again.
pub async fn record_alert(st: &AppState, user: &str, alert: Alert) -> Result<(), AppError> {
    let previous = st.store().alert(user, &alert.id).await?;
    let alert = merge_alert(previous.as_ref(), alert);
    if previous.as_ref() != Some(&alert) {
        st.store().upsert_alert(user, &alert).await?;
        st.publish_alert(user, &alert.id).await?;
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
pub async fn record_git_status(
    st: &AppState,
    user: &str,
    agent_id: &str,
    repos: &[RepoStatus],
    full: bool,
) -> Result<(), AppError> {
    let store = st.store();
    for repo in repos {
        let online_before = store.repo_agent_online(user, &repo.name).await?.is_some();
        let previous = store.repo(user, &repo.name).await?;
        store.upsert_repo(user, agent_id, repo).await?;
        let changed = previous.as_ref().is_none_or(|(p, a)| !p.same_state(repo) || a != agent_id);
        if changed {
            st.publish_repo(user, &repo.name, None).await?;
        }
        if !online_before {
            // A changed repo's dashboard entry went out with it.
            st.publish_repo_online(user, &repo.name, !changed).await?;
        }
    }
    if full {
        for gone in store.repos(user, None, Some(agent_id)).await? {
            if !repos.iter().any(|r| r.name == gone.name) {
                store.delete_repo(user, &gone.name).await?;
                st.publish_repo(user, &gone.name, Some(&gone.id)).await?;
            }
        }
    }
    if let Some(mut info) = store.agent(user, agent_id).await? {
        let all: Vec<String> = store.repos(user, None, Some(agent_id)).await?.into_iter().map(|r| r.name).collect();
        if info.repos != all {
            info.repos = all;
            store.upsert_agent(user, &info, true).await?;
            st.publish_agent(user, agent_id).await?;
        }
    }
    Ok(())
}
