//! Publishing a change to every topic that shows it, and sending to agents here or on other
//! nodes. Call a `publish_*` after the change is stored: it counts the change (see
//! [`crate::store::Store::next_change`]) and its events carry that number, which is what orders
//! them against snapshots (see [`crate::hub`]).

use flightdeck_protocol::realtime::{DashboardEvent, HudEvent, RepoEvent};
use flightdeck_protocol::{AgentInfo, Alert, RelayMessage, RepoStatus, ServerMessage, Task, Topic};

use crate::db::Db;
use crate::domain::views::{dashboard_entry, public_task};
use crate::error::AppError;
use crate::hub::{Frame, Position, TopicKey};
use crate::state::AppState;

impl AppState {
    /// Counts a change of `user`'s latest state, stored just before: the events that show it
    /// carry this number (see [`crate::hub`]).
    fn next_change(&self, db: &Db, user: &str) -> Result<u64, AppError> {
        Ok(db.next_change(user)?)
    }

    pub fn publish_agent(&self, db: &Db, user: &str, info: &AgentInfo) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        let position = Position::change(format!("agent/{}", info.agent_id), change);
        self.hub.publish_at(&TopicKey::new(user, Topic::Agents), [(info, Some(position))]);
        Ok(())
    }

    /// `agentOnline` of every HUD whose repo this agent has.
    pub fn publish_agent_online(&self, db: &Db, user: &str, agent_id: &str) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        for repo in db.repos(user, None, Some(agent_id))? {
            let online = db.repo_agent_online(user, &repo.name)?.is_some();
            self.publish_hud_agent_online(user, &repo.name, online, change);
            self.publish_dashboard_at(db, user, &repo.name, change)?;
        }
        Ok(())
    }

    /// `agentOnline` of one HUD, as of change number `change`.
    pub fn publish_hud_agent_online(&self, user: &str, repo: &str, online: bool, change: u64) {
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: repo.to_string() });
        let event = HudEvent::AgentOnline { agent_online: online };
        self.hub.publish_at(&key, [(&event, Some(Position::change("agent-online", change)))]);
    }

    /// A changed repo: in full to the owner's `repos`, without owner-only fields to its HUD and
    /// (when public) to the user's dashboard.
    pub fn publish_repo(&self, db: &Db, user: &str, repo: &RepoStatus) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        let position = Position::change(format!("repo/{}", repo.name), change);
        self.hub.publish_at(&TopicKey::new(user, Topic::Repos), [(repo, Some(position))]);
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: repo.name.clone() });
        if self.hub.has_subscribers(&key) {
            let event = HudEvent::RepoStatus { repo_status: repo.public_view() };
            self.hub.publish_at(&key, [(&event, Some(Position::change("repo", change)))]);
        }
        self.publish_dashboard_at(db, user, &repo.name, change)
    }

    /// A repo gone from its agent's full set: removed from the owner's `repos` and, when it was
    /// public, from the dashboard.
    pub fn publish_repo_removed(
        &self,
        db: &Db,
        user: &str,
        repo: &RepoStatus,
        was_public: bool,
    ) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        let position = Position::change(format!("repo/{}", repo.name), change);
        let event = RepoEvent::Removed { removed: repo.id.clone() };
        self.hub.publish_at(&TopicKey::new(user, Topic::Repos), [(&event, Some(position))]);
        if was_public {
            self.publish_dashboard_removed_at(user, &repo.name, change);
        }
        Ok(())
    }

    /// A public repo's dashboard entry, as it is now, to `dashboard:<user>`. A private repo is
    /// never named there (see [`AppState::publish_dashboard_removed`] for one that leaves).
    pub fn publish_dashboard(&self, db: &Db, user: &str, repo: &str) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        self.publish_dashboard_at(db, user, repo, change)
    }

    fn publish_dashboard_at(&self, db: &Db, user: &str, repo: &str, change: u64) -> Result<(), AppError> {
        let key = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        if !self.hub.has_subscribers(&key) {
            return Ok(());
        }
        if let Some(entry) = dashboard_entry(db, user, repo)? {
            let event = DashboardEvent::Repo(entry);
            self.hub.publish_at(&key, [(&event, Some(Position::change(format!("dashboard/{repo}"), change)))]);
        }
        Ok(())
    }

    /// A repo that was on the dashboard left it (turned private, or gone). Call only for a repo
    /// that was public: the event names it to anyone.
    pub fn publish_dashboard_removed(&self, db: &Db, user: &str, repo: &str) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        self.publish_dashboard_removed_at(user, repo, change);
        Ok(())
    }

    fn publish_dashboard_removed_at(&self, user: &str, repo: &str, change: u64) {
        let key = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        let event = DashboardEvent::Removed { removed: repo.to_string() };
        self.hub.publish_at(&key, [(&event, Some(Position::change(format!("dashboard/{repo}"), change)))]);
    }

    /// A changed task: to `tasks`, and to its repo's HUD when it is the task the HUD shows.
    pub fn publish_task(&self, db: &Db, user: &str, task: &Task) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        let position = Position::change(format!("task/{}", task.id), change);
        self.hub.publish_at(&TopicKey::new(user, Topic::Tasks), [(task, Some(position))]);
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: task.repo.clone() });
        let dashboard = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        let (hud_watched, dashboard_watched) = (self.hub.has_subscribers(&key), self.hub.has_subscribers(&dashboard));
        if (hud_watched || dashboard_watched) && db.hud_task_id(user, &task.repo)?.is_some_and(|id| id == task.id) {
            if hud_watched {
                let event = HudEvent::Task { task: public_task(task.clone()) };
                self.hub.publish_at(&key, [(&event, Some(Position::change("task", change)))]);
            }
            self.publish_dashboard_at(db, user, &task.repo, change)?;
        }
        Ok(())
    }

    /// A new or changed alert, to the owner's `alerts`.
    pub fn publish_alert(&self, db: &Db, user: &str, alert: &Alert) -> Result<(), AppError> {
        let change = self.next_change(db, user)?;
        let position = Position::change(format!("alert/{}", alert.id), change);
        self.hub.publish_at(&TopicKey::new(user, Topic::Alerts), [(alert, Some(position))]);
        Ok(())
    }

    /// Whether a message can reach this agent: connected here, or (with a broker) online on
    /// another node as the shared database says.
    pub fn agent_reachable(&self, db: &Db, user: &str, agent_id: &str) -> Result<bool, AppError> {
        if self.agents.is_connected(user, agent_id) {
            return Ok(true);
        }
        Ok(self.hub.broker().is_some() && db.agent_online(user, agent_id)?)
    }

    /// Sends a frame to an agent here or, through the broker, on another node. `task_id` marks
    /// a `task` message, which one connection gets once.
    pub fn send_to_agent(
        &self,
        db: &Db,
        user: &str,
        agent_id: &str,
        task_id: Option<&str>,
        frame: Frame,
    ) -> Result<bool, AppError> {
        if self.agents.is_connected(user, agent_id) {
            return Ok(match task_id {
                Some(id) => self.agents.send_task(user, agent_id, id, frame),
                None => self.agents.send(user, agent_id, frame),
            });
        }
        match self.hub.broker() {
            Some(broker) if db.agent_online(user, agent_id)? => {
                broker.send(flightdeck_protocol::broker::BrokerMessage::ToAgent {
                    node: broker.node().to_string(),
                    user: user.to_string(),
                    agent_id: agent_id.to_string(),
                    task_id: task_id.map(str::to_string),
                    frame: frame.as_str().to_string(),
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a queued task to the agent that should run it: the one it names, or the online
    /// agent that has its repo. Records that agent on the task. False when none is online.
    pub fn dispatch(&self, db: &Db, user: &str, task: &Task) -> Result<bool, AppError> {
        let agent = match &task.agent_id {
            Some(id) if self.agent_reachable(db, user, id)? => Some(id.clone()),
            Some(_) => None,
            None => match db.repo_agent_online(user, &task.repo)? {
                Some(id) if self.agent_reachable(db, user, &id)? => Some(id),
                _ => None,
            },
        };
        let Some(agent) = agent else { return Ok(false) };
        let mut payload = task.payload.clone();
        payload.repo = Some(task.repo.clone());
        let message = RelayMessage::Task {
            task_id: task.id.clone(),
            task_type: task.executor,
            payload,
            title: Some(task.title.clone()),
            conversation_id: Some(task.conversation().to_string()),
            parent_task_id: task.parent_task_id.clone(),
        };
        if !self.send_to_agent(db, user, &agent, Some(&task.id), Frame::from(message.to_json()))? {
            return Ok(false);
        }
        if task.agent_id.as_deref() != Some(agent.as_str()) {
            let mut assigned = task.clone();
            assigned.agent_id = Some(agent);
            let stored = db.upsert_task(user, &assigned)?;
            self.publish_task(db, user, &stored)?;
        }
        Ok(true)
    }
}

/// Drops this node's viewers of a HUD that may not see it any more, telling them why.
pub fn evict_unprivileged(st: &AppState, user: &str, repo: &str) {
    let topic = Topic::Hud { user: user.to_string(), repo: repo.to_string() };
    let refusal = Frame::from(ServerMessage::forbidden(&topic.to_string()).to_json());
    for sub in st.hub.evict_unprivileged(&TopicKey::new(user, topic)) {
        sub.offer(refusal.clone(), &st.metrics);
    }
}
