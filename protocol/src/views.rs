//! What the realtime topics show (SPEC 3.4), as pure functions of a user's data: one definition
//! for every server of the topics, the relay (`relay/src/domain/views.rs`) and the desktop's
//! `CockpitBus` (`agent-core/src/agent/bus.rs`). Each reads its own store; what it reads is
//! shaped here.
//!
//! A HUD shows one task of its repo: the newest (the current or last one; both stores order a
//! repo's tasks by creation time, then id, newest first). Its snapshot holds that task's whole
//! transcript, and its events are that task's changes only, so they continue the transcript the
//! snapshot holds.

use crate::event::SeqEvent;
use crate::model::{RepoStatus, Task};
use crate::realtime::HudSnapshot;

/// Newest tasks in a `tasks` snapshot (SPEC 3.4: "the 100 newest").
pub const TASKS_SNAPSHOT_LEN: u32 = 100;
/// Most unacknowledged alerts in an `alerts` snapshot.
pub const ALERTS_SNAPSHOT_LEN: u32 = 1000;

/// A task as HUDs and dashboards show it: without the agent (a host name is the owner's
/// business).
pub fn public_task(task: Task) -> Task {
    Task { agent_id: None, ..task }
}

/// The repo and the task a HUD shows, from the owner's view of them: public fields only,
/// whoever asks.
pub fn hud_view(repo_status: Option<&RepoStatus>, task: Option<Task>) -> (Option<RepoStatus>, Option<Task>) {
    (repo_status.map(RepoStatus::public_view), task.map(public_task))
}

/// What a HUD reads from its user's data.
#[derive(Debug, Clone, PartialEq)]
pub struct HudData {
    /// Whether the HUD is public (its settings).
    pub public: bool,
    /// Whether an agent that has the repo is online.
    pub agent_online: bool,
    /// The repo as its owner sees it, when known.
    pub repo_status: Option<RepoStatus>,
    /// The repo's newest task, as stored.
    pub task: Option<Task>,
    /// That task's whole transcript.
    pub events: Vec<SeqEvent>,
}

/// The snapshot of `hud:<user>/<repo>`.
pub fn hud_snapshot(user: &str, repo: &str, data: HudData) -> HudSnapshot {
    let (repo_status, task) = hud_view(data.repo_status.as_ref(), data.task);
    HudSnapshot {
        user: user.to_string(),
        repo: repo.to_string(),
        public: data.public,
        agent_online: data.agent_online,
        repo_status,
        task,
        events: data.events,
    }
}

/// Whether a change of task `task_id` (its state, or an event of its transcript) shows on the
/// HUD of its repo, whose newest task is `hud_task_id`: only the task the HUD holds.
pub fn hud_shows_task(hud_task_id: Option<&str>, task_id: &str) -> bool {
    hud_task_id == Some(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "id": id, "executor": "shell", "repo": "web", "title": id, "status": "running",
            "source": "local", "payload": {"command": "true"}, "createdAt": "2026-01-01T00:00:00Z",
            "lastSeq": 0, "agentId": "mac"
        }))
        .unwrap()
    }

    #[test]
    fn a_hud_shows_public_fields_and_its_task_only() {
        let repo: RepoStatus = serde_json::from_value(serde_json::json!({
            "id": "r1", "name": "web", "path": "/home/alice/web", "status": "clean"
        }))
        .unwrap();
        let data = HudData {
            public: true,
            agent_online: false,
            repo_status: Some(repo),
            task: Some(task("t2")),
            events: Vec::new(),
        };
        let hud = hud_snapshot("alice", "web", data);
        assert_eq!(hud.repo_status.unwrap().path, None);
        assert_eq!(hud.task.as_ref().unwrap().agent_id, None);
        assert!(hud_shows_task(Some("t2"), "t2"));
        assert!(!hud_shows_task(Some("t2"), "t1"), "an older task of the repo is not on its HUD");
        assert!(!hud_shows_task(None, "t1"));
    }
}
