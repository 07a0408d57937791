//! Publishing a change to every topic that shows it, and sending to agents here or on other
//! nodes. Call these with the database lock held (see `AppState::db`): that lock is what keeps
//! a snapshot and the events after it in order today.

use flightdeck_protocol::realtime::{DashboardEvent, HudEvent};
use flightdeck_protocol::{AgentInfo, RelayMessage, RepoStatus, ServerMessage, Task, Topic};

use crate::db::Db;
use crate::domain::views::{dashboard_entry, public_task};
use crate::error::AppError;
use crate::hub::{Frame, TopicKey};
use crate::state::AppState;

impl AppState {
    pub fn publish_agent(&self, user: &str, info: &AgentInfo) {
        self.hub.publish(&TopicKey::new(user, Topic::Agents), info);
    }

    /// `agentOnline` of every HUD whose repo this agent has.
    pub fn publish_agent_online(&self, db: &Db, user: &str, agent_id: &str) -> Result<(), AppError> {
        for repo in db.repos(user, None, Some(agent_id))? {
            let online = db.repo_agent_online(user, &repo.name)?.is_some();
            let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: repo.name.clone() });
            self.hub.publish(&key, &HudEvent::AgentOnline { agent_online: online });
            self.publish_dashboard(db, user, &repo.name)?;
        }
        Ok(())
    }

    /// A changed repo: in full to the owner's `repos`, without owner-only fields to its HUD and
    /// (when public) to the user's dashboard.
    pub fn publish_repo(&self, db: &Db, user: &str, repo: &RepoStatus) -> Result<(), AppError> {
        self.hub.publish(&TopicKey::new(user, Topic::Repos), repo);
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: repo.name.clone() });
        if self.hub.has_subscribers(&key) {
            self.hub.publish(&key, &HudEvent::RepoStatus { repo_status: repo.public_view() });
        }
        self.publish_dashboard(db, user, &repo.name)
    }

    /// A public repo's dashboard entry, as it is now, to `dashboard:<user>`. A private repo is
    /// never named there (see [`AppState::publish_dashboard_removed`] for one that leaves).
    pub fn publish_dashboard(&self, db: &Db, user: &str, repo: &str) -> Result<(), AppError> {
        let key = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        if !self.hub.has_subscribers(&key) {
            return Ok(());
        }
        if let Some(entry) = dashboard_entry(db, user, repo)? {
            self.hub.publish(&key, &DashboardEvent::Repo(entry));
        }
        Ok(())
    }

    /// A repo that was on the dashboard left it (turned private, or gone). Call only for a repo
    /// that was public: the event names it to anyone.
    pub fn publish_dashboard_removed(&self, user: &str, repo: &str) {
        let key = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        self.hub.publish(&key, &DashboardEvent::Removed { removed: repo.to_string() });
    }

    /// A changed task: to `tasks`, and to its repo's HUD when it is the task the HUD shows.
    pub fn publish_task(&self, db: &Db, user: &str, task: &Task) -> Result<(), AppError> {
        self.hub.publish(&TopicKey::new(user, Topic::Tasks), task);
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: task.repo.clone() });
        let dashboard = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        let (hud_watched, dashboard_watched) = (self.hub.has_subscribers(&key), self.hub.has_subscribers(&dashboard));
        if (hud_watched || dashboard_watched) && db.hud_task_id(user, &task.repo)?.is_some_and(|id| id == task.id) {
            if hud_watched {
                self.hub.publish(&key, &HudEvent::Task { task: public_task(task.clone()) });
            }
            self.publish_dashboard(db, user, &task.repo)?;
        }
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
