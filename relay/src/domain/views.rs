//! What each audience sees: the public views of tasks and repos (HUDs, dashboards) and the
//! snapshots a viewer gets when it subscribes.

use flightdeck_protocol::realtime::{DashboardRepo, DashboardSnapshot, StoredHudSnapshot, StoredTaskSnapshot};
use flightdeck_protocol::views::{hud_view, ALERTS_SNAPSHOT_LEN, TASKS_SNAPSHOT_LEN};
use flightdeck_protocol::Topic;
use serde_json::value::{to_raw_value, RawValue};

use crate::error::AppError;
use crate::hub::{Cover, TopicKey};
use crate::store::{Store, TaskFilter};

/// Who asks for a topic of one user, as far as what they may see goes (the transport works it
/// out from the request's credentials).
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    /// The user's owner or viewer key: private HUDs too.
    pub can_view_private: bool,
    /// The user's owner key: the owner-only topics (agents, repos, tasks, alerts, a task).
    pub is_owner: bool,
}

/// A repo's dashboard entry when its HUD is public (`None` for a private or unknown repo): the
/// same public views as its HUD.
pub async fn read_dashboard_entry(
    store: &dyn Store,
    user: &str,
    repo: &str,
) -> Result<Option<DashboardRepo>, AppError> {
    if !store.hud_settings(user, repo).await?.public {
        return Ok(None);
    }
    let Some((status, _agent)) = store.repo(user, repo).await? else { return Ok(None) };
    let (repo_status, task) = hud_view(Some(&status), store.hud_task(user, repo).await?);
    Ok(Some(DashboardRepo {
        repo: repo.to_string(),
        agent_online: store.repo_agent_online(user, repo).await?.is_some(),
        repo_status,
        task,
    }))
}

/// `dashboard:<user>`: every public repo of the user, by slug.
async fn dashboard_snapshot(store: &dyn Store, user: &str) -> Result<DashboardSnapshot, AppError> {
    let mut repos = Vec::new();
    for status in store.repos(user, None, None).await? {
        if let Some(entry) = read_dashboard_entry(store, user, &status.name).await? {
            repos.push(entry);
        }
    }
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(DashboardSnapshot { user: user.to_string(), repos })
}

/// A HUD's state: public fields only, whoever asks; and the transcript it holds. Shaped by
/// `flightdeck_protocol::views` (as the desktop's), its events kept as stored.
async fn hud_snapshot(
    store: &dyn Store,
    user: &str,
    repo: &str,
    public: bool,
    cover: Cover,
) -> Result<(StoredHudSnapshot, Cover), AppError> {
    let task = store.hud_task(user, repo).await?;
    let (events, cover) = match &task {
        Some(t) => {
            let events = store.stored_events(&t.id).await?;
            let cover = cover.with_transcript(&t.id, events.last().map_or(0, |e| e.seq));
            (events, cover)
        }
        None => (Vec::new(), cover),
    };
    let repo_status = store.repo(user, repo).await?.map(|(r, _)| r);
    let (repo_status, task) = hud_view(repo_status.as_ref(), task);
    let snapshot = StoredHudSnapshot {
        user: user.to_string(),
        repo: repo.to_string(),
        public,
        agent_online: store.repo_agent_online(user, repo).await?.is_some(),
        repo_status,
        task,
        events,
    };
    Ok((snapshot, cover))
}

/// A snapshot payload (written once, as JSON text) and what it holds (see [`crate::hub`]), or
/// why the caller may not have it.
pub type Snapshot = Result<(Box<RawValue>, Cover), String>;

fn forbidden() -> Result<Snapshot, AppError> {
    Ok(Err("forbidden".to_string()))
}

/// The snapshot of a topic, read through the store. The user's change number is read first:
/// every change counted up to it is in what is read after it (see [`crate::hub`]).
pub async fn snapshot(store: &dyn Store, audience: Audience, key: &TopicKey) -> Result<Snapshot, AppError> {
    let user = key.user.as_str();
    if let Topic::Hud { repo, .. } = &key.topic {
        let cover = Cover::changes(store.changes(user).await?);
        let settings = store.hud_settings(user, repo).await?;
        if !settings.public && !audience.can_view_private {
            return forbidden();
        }
        let (snapshot, cover) = hud_snapshot(store, user, repo, settings.public, cover).await?;
        return Ok(Ok((to_raw_value(&snapshot).map_err(internal)?, cover)));
    }
    if let Topic::Dashboard { .. } = &key.topic {
        // Anyone may read it: it holds public repos only, the same for every reader.
        let cover = Cover::changes(store.changes(user).await?);
        return Ok(Ok((to_raw_value(&dashboard_snapshot(store, user).await?).map_err(internal)?, cover)));
    }
    // Every other topic is the owner's alone.
    if !audience.is_owner {
        return forbidden();
    }
    if let Topic::Task(id) = &key.topic {
        return task_snapshot(store, user, id).await;
    }
    let cover = Cover::changes(store.changes(user).await?);
    let value = match &key.topic {
        Topic::Agents => to_raw_value(&store.agents(user).await?),
        Topic::Repos => to_raw_value(&store.repos(user, None, None).await?),
        Topic::Tasks => to_raw_value(&store.list_tasks(user, &TaskFilter::default(), TASKS_SNAPSHOT_LEN, 0).await?.0),
        Topic::Alerts => to_raw_value(&store.list_alerts(user, None, Some(false), ALERTS_SNAPSHOT_LEN, 0).await?.0),
        Topic::Task(_) | Topic::Hud { .. } | Topic::Dashboard { .. } => unreachable!("handled above"),
    };
    Ok(Ok((value.map_err(internal)?, cover)))
}

/// The snapshot of `task:<id>`: the task and its whole transcript, and the seq it ends at.
async fn task_snapshot(store: &dyn Store, user: &str, id: &str) -> Result<Snapshot, AppError> {
    let Some(task) = store.task(user, id).await? else {
        return match store.task_user(id).await? {
            Some(_) => forbidden(),
            None => Ok(Err("not found".into())),
        };
    };
    let events = store.stored_events(id).await?;
    let cover = Cover::transcript(id, events.last().map_or(0, |e| e.seq));
    Ok(Ok((to_raw_value(&StoredTaskSnapshot { task, events }).map_err(internal)?, cover)))
}

fn internal(e: serde_json::Error) -> AppError {
    AppError::Internal(e.to_string())
}
