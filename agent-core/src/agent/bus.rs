//! `CockpitBus`: the relay's realtime topics (`/api/realtime`, SPEC 3.4), served by the local
//! agent, so the cockpit views read the desktop agent exactly as they read a relay.
//!
//! A front end subscribes to topics ([`CockpitBus::subscribe`] answers with one `snapshot` per
//! topic), then every [`AgentEvent`] becomes the `event` frames of the subscribed topics
//! ([`CockpitBus::frames`]). The topic set is added to *before* the snapshots are read, so no
//! change falls between a snapshot and the events that follow it (a change may arrive twice,
//! which the topics' payloads make harmless: latest state wins, events are keyed by `seq`).

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::Utc;
use flightdeck_protocol::desktop::{AgentEvent, AlertQuery, LinkStatus, TaskQuery};
use flightdeck_protocol::event::SeqEvent;
use flightdeck_protocol::realtime::{HudEvent, RepoEvent};
use flightdeck_protocol::views::{self, HudData, ALERTS_SNAPSHOT_LEN, TASKS_SNAPSHOT_LEN};
use flightdeck_protocol::{AgentInfo, AgentState, ServerMessage, Task, Topic};
use serde::Serialize;
use serde_json::Value;

use super::{Agent, Result, MAX_LIMIT};

/// The topics one front end follows.
#[derive(Default)]
pub struct CockpitBus {
    // A std Mutex: nothing awaits while holding it.
    topics: Mutex<BTreeSet<Topic>>,
    /// Held while a subscribe reads and delivers its snapshots, and while an event's frames are
    /// made and delivered: so an event never overtakes the snapshot it comes after (a relay
    /// gets this order from its one socket writer). A tokio Mutex: the store is read under it.
    delivery: tokio::sync::Mutex<()>,
}

fn frame(kind: fn(String, Value) -> ServerMessage, topic: &Topic, payload: impl Serialize) -> ServerMessage {
    kind(topic.to_string(), serde_json::to_value(payload).expect("wire types always serialize"))
}

fn snapshot(topic: String, payload: Value) -> ServerMessage {
    ServerMessage::Snapshot { topic, payload }
}

fn event(topic: String, payload: Value) -> ServerMessage {
    ServerMessage::Event { topic, payload }
}

impl CockpitBus {
    pub fn new() -> CockpitBus {
        CockpitBus::default()
    }

    /// Adds topics and delivers their snapshots (or an `error` frame for a bad topic name) to
    /// `deliver`, in order with the events of [`CockpitBus::publish`].
    pub async fn subscribe_and_deliver(
        &self,
        agent: &Agent,
        names: &[String],
        mut deliver: impl FnMut(ServerMessage),
    ) -> Result<()> {
        let _order = self.delivery.lock().await;
        for frame in self.subscribe(agent, names).await? {
            deliver(frame);
        }
        Ok(())
    }

    /// Delivers the `event` frames of an agent event, in order with the snapshots of
    /// [`CockpitBus::subscribe_and_deliver`].
    pub async fn publish(&self, agent: &Agent, change: &AgentEvent, mut deliver: impl FnMut(ServerMessage)) {
        let _order = self.delivery.lock().await;
        for frame in self.frames(agent, change).await {
            deliver(frame);
        }
    }

    /// Adds topics and answers with their snapshots (or an `error` frame for a bad topic name).
    /// Front ends that deliver frames from several tasks use [`CockpitBus::subscribe_and_deliver`].
    pub async fn subscribe(&self, agent: &Agent, names: &[String]) -> Result<Vec<ServerMessage>> {
        let mut parsed = Vec::new();
        let mut out = Vec::new();
        for name in names {
            match name.parse::<Topic>() {
                Ok(topic) => parsed.push(topic),
                Err(e) => {
                    out.push(ServerMessage::Error { message: e.to_string(), topic: Some(name.clone()), details: None })
                }
            }
        }
        self.lock().extend(parsed.iter().cloned());
        for topic in parsed {
            out.push(self.snapshot(agent, &topic).await?);
        }
        Ok(out)
    }

    pub fn unsubscribe(&self, names: &[String]) {
        let mut topics = self.lock();
        for name in names {
            if let Ok(topic) = name.parse::<Topic>() {
                topics.remove(&topic);
            }
        }
    }

    /// The `event` frames an agent event makes on the subscribed topics.
    pub async fn frames(&self, agent: &Agent, change: &AgentEvent) -> Vec<ServerMessage> {
        let topics: Vec<Topic> = self.lock().iter().cloned().collect();
        let mut out = Vec::new();
        for topic in &topics {
            match (topic, change) {
                (Topic::Repos, AgentEvent::RepoStatus { repo }) => {
                    out.push(frame(event, topic, RepoEvent::Status(repo.clone())))
                }
                (Topic::Repos, AgentEvent::RepoRemoved { id }) => {
                    out.push(frame(event, topic, RepoEvent::Removed { removed: id.clone() }))
                }
                (Topic::Tasks, AgentEvent::TaskUpdate { task }) => out.push(frame(event, topic, task)),
                (Topic::Alerts, AgentEvent::Alert { alert }) => out.push(frame(event, topic, alert)),
                (Topic::Task(id), AgentEvent::TaskEvent { record }) if *id == record.task_id => {
                    out.push(frame(event, topic, SeqEvent { seq: record.seq, event: record.event.clone() }))
                }
                // Settings: the ACP agents this agent can run may have changed.
                (
                    Topic::Agents,
                    AgentEvent::TaskUpdate { .. } | AgentEvent::Link { .. } | AgentEvent::Settings { .. },
                ) => {
                    if let Ok(info) = agent_info(agent).await {
                        out.push(frame(event, topic, info));
                    }
                }
                (Topic::Hud { repo, .. }, AgentEvent::RepoStatus { repo: status }) if status.name == *repo => {
                    out.push(frame(event, topic, HudEvent::RepoStatus { repo_status: status.public_view() }))
                }
                (Topic::Hud { repo, .. }, AgentEvent::TaskUpdate { task })
                    if task.repo == *repo && on_hud(agent, repo, &task.id).await =>
                {
                    out.push(frame(event, topic, HudEvent::Task { task: views::public_task(task.clone()) }))
                }
                (Topic::Hud { repo, .. }, AgentEvent::TaskEvent { record }) => {
                    // The store knows which repo a task is in.
                    let in_repo = agent.task(&record.task_id).await.is_ok_and(|task| task.repo == *repo);
                    if in_repo && on_hud(agent, repo, &record.task_id).await {
                        out.push(frame(event, topic, HudEvent::TaskEvent(record.clone())));
                    }
                }
                _ => {}
            }
        }
        out
    }

    async fn snapshot(&self, agent: &Agent, topic: &Topic) -> Result<ServerMessage> {
        Ok(match topic {
            Topic::Agents => frame(snapshot, topic, vec![agent_info(agent).await?]),
            Topic::Repos => frame(snapshot, topic, agent.repos().await?),
            Topic::Tasks => {
                let query = TaskQuery { limit: Some(TASKS_SNAPSHOT_LEN), ..Default::default() };
                frame(snapshot, topic, agent.tasks(query).await?.tasks)
            }
            Topic::Alerts => {
                // No more than a page of the agent's API holds.
                let limit = ALERTS_SNAPSHOT_LEN.min(MAX_LIMIT);
                let query = AlertQuery { acknowledged: Some(false), limit: Some(limit), ..Default::default() };
                frame(snapshot, topic, agent.alerts(query).await?.alerts)
            }
            Topic::Task(id) => match agent.transcript(id).await {
                Ok(transcript) => frame(snapshot, topic, transcript),
                Err(e) => {
                    ServerMessage::Error { message: e.to_string(), topic: Some(topic.to_string()), details: None }
                }
            },
            Topic::Hud { user, repo } => {
                frame(snapshot, topic, views::hud_snapshot(user, repo, hud_data(agent, repo).await?))
            }
            // The dashboard is a relay page; the desktop window lists its repos itself.
            Topic::Dashboard { .. } => ServerMessage::Error {
                message: "the dashboard topic is served by a relay".into(),
                topic: Some(topic.to_string()),
                details: None,
            },
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Topic>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the HUD of a local repo reads: the repo, its newest task and that task's transcript.
/// A local HUD is private, and this agent (which has the repo) is online.
async fn hud_data(agent: &Agent, repo: &str) -> Result<HudData> {
    let repo_status = agent.repos().await?.into_iter().find(|r| r.name == repo);
    let task = hud_task(agent, repo).await?;
    let events = match &task {
        Some(task) => agent.transcript(&task.id).await?.events,
        None => Vec::new(),
    };
    Ok(HudData { public: false, agent_online: true, repo_status, task, events })
}

/// The task a repo's HUD shows: its newest (the store lists a repo's tasks newest first).
async fn hud_task(agent: &Agent, repo: &str) -> Result<Option<Task>> {
    let query = TaskQuery { repo: Some(repo.to_string()), limit: Some(1), ..Default::default() };
    Ok(agent.tasks(query).await?.tasks.into_iter().next())
}

/// Whether a change of task `task_id`, of `repo`, shows on the repo's HUD.
async fn on_hud(agent: &Agent, repo: &str, task_id: &str) -> bool {
    let shown = hud_task(agent, repo).await.ok().flatten();
    views::hud_shows_task(shown.as_ref().map(|t| t.id.as_str()), task_id)
}

/// This agent as the `agents` topic shows it.
pub async fn agent_info(agent: &Agent) -> Result<AgentInfo> {
    let settings = agent.settings().await?;
    let busy = !agent.active_tasks().await?.is_empty();
    let mut metadata = serde_json::Map::new();
    let link = agent.link_view();
    metadata.insert("link".into(), serde_json::to_value(link.status).unwrap_or(Value::Null));
    metadata.insert("relayConnected".into(), Value::Bool(link.status == LinkStatus::Connected));
    if let Some(error) = link.error {
        // Why the relay stopped this agent, for the window's header (`link_key_revoked`, ...).
        metadata.insert("linkError".into(), Value::String(error.message));
        metadata.insert("linkErrorCode".into(), Value::String(error.code));
    }
    Ok(AgentInfo {
        agent_id: settings.agent_id,
        status: if busy { AgentState::Busy } else { AgentState::Idle },
        capabilities: agent.capabilities(),
        metadata,
        version: env!("CARGO_PKG_VERSION").to_string(),
        connected_at: agent.started_at(),
        last_ping_at: Utc::now(),
        repos: agent.repos().await?.into_iter().map(|r| r.name).collect(),
    })
}
