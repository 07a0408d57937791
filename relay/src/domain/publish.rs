//! Publishing a change to every topic that shows it, and sending to agents here or on other
//! nodes.
//!
//! Call a `publish_*` after the change is stored. It counts the change (see
//! [`crate::store::Store::next_change`]), then reads what it shows from the store and publishes
//! that with the change number: what is read after the number was counted holds every change
//! numbered before it, so when two writers race on one entity, the event with the higher
//! number shows the newer state and viewers keep it (see [`crate::hub`]).

use flightdeck_protocol::realtime::{DashboardEvent, HudEvent, RepoEvent};
use flightdeck_protocol::views::{hud_shows_task, public_task};
use flightdeck_protocol::{RelayMessage, ServerMessage, Task, Topic};

use crate::domain::views::read_dashboard_entry;
use crate::error::AppError;
use crate::hub::{Frame, Position, TopicKey};
use crate::state::AppState;

impl AppState {
    /// Counts a change of `user`'s latest state, stored just before: the events that show it
    /// carry this number.
    async fn next_change(&self, user: &str) -> Result<u64, AppError> {
        Ok(self.store().next_change(user).await?)
    }

    /// The agent as stored now, to `agents`.
    pub async fn publish_agent(&self, user: &str, agent_id: &str) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        if let Some(info) = self.store().agent(user, agent_id).await? {
            let position = Position::change(format!("agent/{agent_id}"), change);
            self.hub.publish_at(&TopicKey::new(user, Topic::Agents), [(&info, Some(position))]);
        }
        Ok(())
    }

    /// `agentOnline` of every HUD whose repo this agent has, and their dashboard entries.
    pub async fn publish_agent_online(&self, user: &str, agent_id: &str) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        for repo in self.store().repos(user, None, Some(agent_id)).await? {
            self.publish_hud_agent_online(user, &repo.name, change).await?;
            self.publish_dashboard_at(user, &repo.name, false, change).await?;
        }
        Ok(())
    }

    /// `agentOnline` of one HUD, as stored now.
    async fn publish_hud_agent_online(&self, user: &str, repo: &str, change: u64) -> Result<(), AppError> {
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: repo.to_string() });
        if !self.hub.has_subscribers(&key) {
            return Ok(());
        }
        let online = self.store().repo_agent_online(user, repo).await?.is_some();
        let event = HudEvent::AgentOnline { agent_online: online };
        self.hub.publish_at(&key, [(&event, Some(Position::change("agent-online", change)))]);
        Ok(())
    }

    /// A repo as stored now: in full to the owner's `repos`, without owner-only fields to its
    /// HUD and (when public) to the user's dashboard. A repo that is gone is published as
    /// removed (`gone` is its id; a public one also leaves the dashboard).
    pub async fn publish_repo(&self, user: &str, name: &str, gone: Option<&str>) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        let position = Position::change(format!("repo/{name}"), change);
        let repos = TopicKey::new(user, Topic::Repos);
        match self.store().repo(user, name).await? {
            Some((repo, _agent)) => {
                self.hub.publish_at(&repos, [(&repo, Some(position))]);
                let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: name.to_string() });
                if self.hub.has_subscribers(&key) {
                    let event = HudEvent::RepoStatus { repo_status: repo.public_view() };
                    self.hub.publish_at(&key, [(&event, Some(Position::change("repo", change)))]);
                }
                self.publish_dashboard_at(user, name, false, change).await
            }
            None => {
                let Some(id) = gone else { return Ok(()) };
                let event = RepoEvent::Removed { removed: id.to_string() };
                self.hub.publish_at(&repos, [(&event, Some(position))]);
                let was_public = self.store().hud_settings(user, name).await?.public;
                self.publish_dashboard_at(user, name, was_public, change).await
            }
        }
    }

    /// A repo's agent came online or went offline: its HUD's `agentOnline` and, with
    /// `dashboard`, its dashboard entry.
    pub async fn publish_repo_online(&self, user: &str, name: &str, dashboard: bool) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        self.publish_hud_agent_online(user, name, change).await?;
        if dashboard {
            self.publish_dashboard_at(user, name, false, change).await?;
        }
        Ok(())
    }

    /// A repo's dashboard entry as it is now, to `dashboard:<user>`. A private repo is never
    /// named there, except as removed when `was_listed` (it was public and is not any more).
    pub async fn publish_dashboard(&self, user: &str, repo: &str, was_listed: bool) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        self.publish_dashboard_at(user, repo, was_listed, change).await
    }

    async fn publish_dashboard_at(
        &self,
        user: &str,
        repo: &str,
        was_listed: bool,
        change: u64,
    ) -> Result<(), AppError> {
        let key = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        if !self.hub.has_subscribers(&key) {
            return Ok(());
        }
        let event = match read_dashboard_entry(self.store(), user, repo).await? {
            Some(entry) => DashboardEvent::Repo(entry),
            None if was_listed => DashboardEvent::Removed { removed: repo.to_string() },
            None => return Ok(()),
        };
        self.hub.publish_at(&key, [(&event, Some(Position::change(format!("dashboard/{repo}"), change)))]);
        Ok(())
    }

    /// A task as stored now: to `tasks`, and to its repo's HUD when it is the task the HUD
    /// shows. Returns it.
    pub async fn publish_task(&self, user: &str, task_id: &str) -> Result<Option<Task>, AppError> {
        let change = self.next_change(user).await?;
        let Some(task) = self.store().task(user, task_id).await? else { return Ok(None) };
        let position = Position::change(format!("task/{task_id}"), change);
        self.hub.publish_at(&TopicKey::new(user, Topic::Tasks), [(&task, Some(position))]);
        let key = TopicKey::new(user, Topic::Hud { user: user.into(), repo: task.repo.clone() });
        let dashboard = TopicKey::new(user, Topic::Dashboard { user: user.into() });
        let (hud_watched, dashboard_watched) = (self.hub.has_subscribers(&key), self.hub.has_subscribers(&dashboard));
        if (hud_watched || dashboard_watched)
            && hud_shows_task(self.store().hud_task_id(user, &task.repo).await?.as_deref(), &task.id)
        {
            if hud_watched {
                let event = HudEvent::Task { task: public_task(task.clone()) };
                self.hub.publish_at(&key, [(&event, Some(Position::change("task", change)))]);
            }
            self.publish_dashboard_at(user, &task.repo, false, change).await?;
        }
        Ok(Some(task))
    }

    /// An alert as stored now, to the owner's `alerts`.
    pub async fn publish_alert(&self, user: &str, alert_id: &str) -> Result<(), AppError> {
        let change = self.next_change(user).await?;
        if let Some(alert) = self.store().alert(user, alert_id).await? {
            let position = Position::change(format!("alert/{alert_id}"), change);
            self.hub.publish_at(&TopicKey::new(user, Topic::Alerts), [(&alert, Some(position))]);
        }
        Ok(())
    }

    /// Whether a message can reach this agent: connected here, or (with a broker) online on
    /// another node as the shared database says.
    pub async fn agent_reachable(&self, user: &str, agent_id: &str) -> Result<bool, AppError> {
        if self.agents.is_connected(user, agent_id) {
            return Ok(true);
        }
        Ok(self.hub.broker().is_some() && self.store().agent_online(user, agent_id).await?)
    }

    /// Sends a frame to an agent here or, through the broker, on another node. `task_id` marks
    /// a `task` message, which one connection gets once.
    pub async fn send_to_agent(
        &self,
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
        let Some(broker) = self.hub.broker() else { return Ok(false) };
        if !self.store().agent_online(user, agent_id).await? {
            return Ok(false);
        }
        broker.send(flightdeck_protocol::broker::BrokerMessage::ToAgent {
            node: broker.node().to_string(),
            user: user.to_string(),
            agent_id: agent_id.to_string(),
            task_id: task_id.map(str::to_string),
            frame: frame.as_str().to_string(),
        });
        Ok(true)
    }

    /// Sends a queued task to the agent that should run it: the one it names, or the online
    /// agent that has its repo. Records that agent on the task. False when none is online.
    pub async fn dispatch(&self, user: &str, task: &Task) -> Result<bool, AppError> {
        let agent = match &task.agent_id {
            Some(id) if self.agent_reachable(user, id).await? => Some(id.clone()),
            Some(_) => None,
            None => match self.store().repo_agent_online(user, &task.repo).await? {
                Some(id) if self.agent_reachable(user, &id).await? => Some(id),
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
        if !self.send_to_agent(user, &agent, Some(&task.id), Frame::from(message.to_json())).await? {
            return Ok(false);
        }
        if task.agent_id.as_deref() != Some(agent.as_str()) {
            let mut assigned = task.clone();
            assigned.agent_id = Some(agent);
            self.store().upsert_task(user, &assigned).await?;
            self.publish_task(user, &task.id).await?;
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
