//! The viewer <-> relay bus on `GET /api/realtime` (SPEC section 3.4, seed 003).
//!
//! A client subscribes to topics; each subscribe is answered, per topic, by a `snapshot` (the
//! full current state) and then `event`s. There is no replay: a client that reconnects
//! subscribes again and gets fresh snapshots.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{SeqEvent, TaskEventRecord};
use crate::model::{AgentInfo, Alert, RepoStatus, Task};
use crate::names;
use crate::validate::{self, Detail, InvalidMessage};

/// A message from a viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
    Ping {},
}

impl ClientMessage {
    pub fn parse(text: &str) -> Result<ClientMessage, InvalidMessage> {
        validate::parse_strict(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }
}

/// A message to a viewer. `payload` depends on the topic: see [`TopicSnapshot`] and [`TopicEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum ServerMessage {
    Snapshot {
        topic: String,
        payload: Value,
    },
    Event {
        topic: String,
        payload: Value,
    },
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<Vec<Detail>>,
    },
    Pong {},
}

impl ServerMessage {
    pub fn parse(text: &str) -> Result<ServerMessage, InvalidMessage> {
        validate::parse_strict(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }

    /// The `error` answer to an invalid frame.
    pub fn invalid(invalid: &InvalidMessage) -> ServerMessage {
        ServerMessage::Error { message: invalid.message.clone(), topic: None, details: Some(invalid.details.clone()) }
    }

    /// The answer to a subscribe the client may not make.
    pub fn forbidden(topic: &str) -> ServerMessage {
        ServerMessage::Error { message: "forbidden".into(), topic: Some(topic.into()), details: None }
    }
}

/// A [`ServerMessage`] as a client reads it: the payload left as JSON text, so it is decoded
/// once, straight into its topic's type ([`TopicSnapshot::decode_str`],
/// [`TopicEvent::decode_str`]), with no `Value` in between. That is faster for a client that
/// receives thousands of events a second, and a wasm client carries one set of deserializers
/// instead of two. A plain struct, not a tagged enum: a borrowed payload cannot pass through
/// serde's buffering of tagged enums.
#[derive(Debug, Deserialize)]
pub struct ServerFrameText<'a> {
    /// `snapshot`, `event`, `error` or `pong`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default, borrow)]
    pub payload: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The WebSocket subprotocol a viewer offers on `/api/realtime` to get several server messages
/// in one WebSocket message, one per line (`\n`-separated JSON; JSON text never holds a raw
/// newline). A relay that picks it joins the messages queued for the socket, so a burst of
/// 50,000 events is a few hundred WebSocket messages for the browser to dispatch, not 50,000.
/// Without it every server message is its own WebSocket message, as SPEC 3.4 has it.
pub const LINES_SUBPROTOCOL: &str = "flightdeck-lines";

/// The server messages in one WebSocket text message: one, or one per line with
/// [`LINES_SUBPROTOCOL`].
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|line| !line.is_empty())
}

/// Borrowed form of `snapshot` / `event`, so a server can write one frame from a typed payload
/// without building an intermediate `Value`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum ServerFrame<'a, P: Serialize> {
    Snapshot { topic: &'a str, payload: &'a P },
    Event { topic: &'a str, payload: &'a P },
}

/// The JSON text of a `snapshot` frame.
pub fn encode_snapshot<P: Serialize>(topic: &str, payload: &P) -> String {
    serde_json::to_string(&ServerFrame::Snapshot { topic, payload }).expect("wire types always serialize")
}

/// The JSON text of an `event` frame.
pub fn encode_event<P: Serialize>(topic: &str, payload: &P) -> String {
    serde_json::to_string(&ServerFrame::Event { topic, payload }).expect("wire types always serialize")
}

/// A parsed topic name. Names without a user mean the authenticated user's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Agents,
    Repos,
    Tasks,
    Alerts,
    /// `task:<taskId>`: one task's whole transcript.
    Task(String),
    /// `hud:<user>/<repo>`: one repo's HUD, possibly another user's public one.
    Hud {
        user: String,
        repo: String,
    },
    /// `dashboard:<user>`: the user's public repos at a glance (SPEC 12), for anyone.
    Dashboard {
        user: String,
    },
}

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error(
        "unknown topic {0:?}: expected agents, repos, tasks, alerts, task:<taskId>, hud:<user>/<repo> or dashboard:<user>"
    )]
    Unknown(String),
    #[error("bad task id in {0:?}: {1}")]
    BadTaskId(String, String),
    #[error("bad HUD topic {0:?}: expected hud:<user>/<repo>")]
    BadHud(String),
    #[error("bad user name in {0:?}: {1}")]
    BadUser(String, names::NameError),
    #[error("bad repo slug in {0:?}: {1}")]
    BadRepo(String, names::NameError),
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Topic, TopicError> {
        match s {
            "agents" => return Ok(Topic::Agents),
            "repos" => return Ok(Topic::Repos),
            "tasks" => return Ok(Topic::Tasks),
            "alerts" => return Ok(Topic::Alerts),
            _ => {}
        }
        if let Some(id) = s.strip_prefix("task:") {
            validate_task_id(id).map_err(|e| TopicError::BadTaskId(s.into(), e))?;
            return Ok(Topic::Task(id.to_string()));
        }
        if let Some(rest) = s.strip_prefix("hud:") {
            let (user, repo) = rest.split_once('/').ok_or_else(|| TopicError::BadHud(s.into()))?;
            names::validate_user(user).map_err(|e| TopicError::BadUser(s.into(), e))?;
            names::validate_repo(repo).map_err(|e| TopicError::BadRepo(s.into(), e))?;
            return Ok(Topic::Hud { user: user.into(), repo: repo.into() });
        }
        if let Some(user) = s.strip_prefix("dashboard:") {
            names::validate_user(user).map_err(|e| TopicError::BadUser(s.into(), e))?;
            return Ok(Topic::Dashboard { user: user.into() });
        }
        Err(TopicError::Unknown(s.into()))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Agents => f.write_str("agents"),
            Topic::Repos => f.write_str("repos"),
            Topic::Tasks => f.write_str("tasks"),
            Topic::Alerts => f.write_str("alerts"),
            Topic::Task(id) => write!(f, "task:{id}"),
            Topic::Hud { user, repo } => write!(f, "hud:{user}/{repo}"),
            Topic::Dashboard { user } => write!(f, "dashboard:{user}"),
        }
    }
}

/// Task ids are made by agents and relays: 1 to 64 characters of `[A-Za-z0-9_-]` (a UUID fits).
pub fn validate_task_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("may contain only letters, digits, '-' and '_'".into());
    }
    Ok(())
}

/// `task:<id>` snapshot: the task and its whole transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TaskSnapshot {
    pub task: Task,
    pub events: Vec<SeqEvent>,
}

/// `hud:<user>/<repo>` snapshot: the repo and its current or last task, with its transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HudSnapshot {
    pub user: String,
    pub repo: String,
    pub public: bool,
    pub agent_online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_status: Option<RepoStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(default)]
    pub events: Vec<SeqEvent>,
}

/// A transcript event as a relay stored it: the event is the JSON text it was received (and
/// validated) as. Serializes exactly as [`SeqEvent`]; a snapshot of 50,000 events is then
/// written without decoding and re-encoding each one.
#[derive(Debug, Serialize)]
pub struct StoredSeqEvent {
    pub seq: u64,
    pub event: Box<serde_json::value::RawValue>,
}

/// [`HudSnapshot`] with stored events, for writing (the same JSON).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredHudSnapshot {
    pub user: String,
    pub repo: String,
    pub public: bool,
    pub agent_online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_status: Option<RepoStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    pub events: Vec<StoredSeqEvent>,
}

/// [`TaskSnapshot`] with stored events, for writing (the same JSON).
#[derive(Debug, Serialize)]
pub struct StoredTaskSnapshot {
    pub task: Task,
    pub events: Vec<StoredSeqEvent>,
}

/// A `repos` topic event: a changed repo, or one that is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RepoEvent {
    Removed { removed: String },
    Status(RepoStatus),
}

/// A `hud:` topic event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum HudEvent {
    RepoStatus {
        repo_status: RepoStatus,
    },
    Task {
        task: Task,
    },
    /// An event of the HUD's current task. `agentOnline` changes come as `{agentOnline}`.
    TaskEvent(TaskEventRecord),
    AgentOnline {
        agent_online: bool,
    },
}

/// One repo on a dashboard: what its HUD shows at a glance. Built from the same public views
/// as a HUD (no `path`, no agent id on the task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DashboardRepo {
    /// The repo's slug (its HUD is `/hud/<user>/<repo>`).
    pub repo: String,
    pub agent_online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_status: Option<RepoStatus>,
    /// The current or last task of the repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// `dashboard:<user>` snapshot: the user's public repos, whoever asks. The owner's private
/// repos come from the owner-only `repos`, `agents` and `tasks` topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DashboardSnapshot {
    pub user: String,
    pub repos: Vec<DashboardRepo>,
}

/// A `dashboard:` topic event: a public repo changed (or became public), or one left the list
/// (it turned private, or is gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DashboardEvent {
    Removed { removed: String },
    Repo(DashboardRepo),
}

/// The keys that tell the untagged events apart, read without decoding their values.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventKeys<'a> {
    #[serde(default, borrow)]
    repo_status: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    task: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    task_id: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    agent_online: Option<bool>,
    #[serde(default)]
    removed: Option<String>,
}

fn no_variant(what: &str) -> serde_json::Error {
    serde::de::Error::custom(format!("data did not match any variant of untagged enum {what}"))
}

impl HudEvent {
    /// Decodes like the derived (untagged) `Deserialize`, trying the variants in the same order,
    /// but looks at the keys first and decodes the one variant they name, once: the HUD's hot
    /// path (one call per streamed event) without serde's buffering of untagged enums.
    pub fn decode_str(payload: &str) -> Result<HudEvent, serde_json::Error> {
        let keys: EventKeys<'_> = serde_json::from_str(payload)?;
        if let Some(repo_status) = keys.repo_status {
            return Ok(HudEvent::RepoStatus { repo_status: serde_json::from_str(repo_status.get())? });
        }
        if let Some(task) = keys.task {
            return Ok(HudEvent::Task { task: serde_json::from_str(task.get())? });
        }
        if keys.task_id.is_some() {
            return Ok(HudEvent::TaskEvent(serde_json::from_str(payload)?));
        }
        match keys.agent_online {
            Some(agent_online) => Ok(HudEvent::AgentOnline { agent_online }),
            None => Err(no_variant("HudEvent")),
        }
    }
}

impl RepoEvent {
    /// [`HudEvent::decode_str`]'s way, for `repos` events.
    pub fn decode_str(payload: &str) -> Result<RepoEvent, serde_json::Error> {
        match serde_json::from_str::<EventKeys<'_>>(payload)?.removed {
            Some(removed) => Ok(RepoEvent::Removed { removed }),
            None => Ok(RepoEvent::Status(serde_json::from_str(payload)?)),
        }
    }
}

impl DashboardEvent {
    /// [`HudEvent::decode_str`]'s way, for `dashboard:` events.
    pub fn decode_str(payload: &str) -> Result<DashboardEvent, serde_json::Error> {
        match serde_json::from_str::<EventKeys<'_>>(payload)?.removed {
            Some(removed) => Ok(DashboardEvent::Removed { removed }),
            None => Ok(DashboardEvent::Repo(serde_json::from_str(payload)?)),
        }
    }
}

/// A snapshot payload, typed by its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicSnapshot {
    Agents(Vec<AgentInfo>),
    Repos(Vec<RepoStatus>),
    Tasks(Vec<Task>),
    Alerts(Vec<Alert>),
    Task(Box<TaskSnapshot>),
    Hud(Box<HudSnapshot>),
    Dashboard(Box<DashboardSnapshot>),
}

/// An event payload, typed by its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicEvent {
    Agent(AgentInfo),
    Repo(RepoEvent),
    Task(Task),
    Alert(Alert),
    TaskEvent(SeqEvent),
    Hud(HudEvent),
    Dashboard(DashboardEvent),
}

impl TopicSnapshot {
    /// Decodes a snapshot payload for its topic.
    pub fn decode(topic: &Topic, payload: Value) -> Result<TopicSnapshot, serde_json::Error> {
        TopicSnapshot::decode_from(topic, payload)
    }

    /// [`TopicSnapshot::decode`] from the payload's JSON text, in one pass.
    pub fn decode_str(topic: &Topic, payload: &str) -> Result<TopicSnapshot, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(payload);
        let snapshot = TopicSnapshot::decode_from(topic, &mut de)?;
        de.end()?;
        Ok(snapshot)
    }

    /// The one decoder behind both: a `Value` and JSON text are both serde deserializers.
    fn decode_from<'de, D>(topic: &Topic, de: D) -> Result<TopicSnapshot, serde_json::Error>
    where
        D: serde::Deserializer<'de, Error = serde_json::Error>,
    {
        use serde::Deserialize;
        Ok(match topic {
            Topic::Agents => TopicSnapshot::Agents(Deserialize::deserialize(de)?),
            Topic::Repos => TopicSnapshot::Repos(Deserialize::deserialize(de)?),
            Topic::Tasks => TopicSnapshot::Tasks(Deserialize::deserialize(de)?),
            Topic::Alerts => TopicSnapshot::Alerts(Deserialize::deserialize(de)?),
            Topic::Task(_) => TopicSnapshot::Task(Deserialize::deserialize(de)?),
            Topic::Hud { .. } => TopicSnapshot::Hud(Deserialize::deserialize(de)?),
            Topic::Dashboard { .. } => TopicSnapshot::Dashboard(Deserialize::deserialize(de)?),
        })
    }
}

impl TopicEvent {
    /// [`TopicEvent::decode`] from the payload's JSON text.
    pub fn decode_str(topic: &Topic, payload: &str) -> Result<TopicEvent, serde_json::Error> {
        Ok(match topic {
            Topic::Agents => TopicEvent::Agent(serde_json::from_str(payload)?),
            Topic::Repos => TopicEvent::Repo(RepoEvent::decode_str(payload)?),
            Topic::Tasks => TopicEvent::Task(serde_json::from_str(payload)?),
            Topic::Alerts => TopicEvent::Alert(serde_json::from_str(payload)?),
            Topic::Task(_) => TopicEvent::TaskEvent(serde_json::from_str(payload)?),
            Topic::Hud { .. } => TopicEvent::Hud(HudEvent::decode_str(payload)?),
            Topic::Dashboard { .. } => TopicEvent::Dashboard(DashboardEvent::decode_str(payload)?),
        })
    }

    /// Decodes an event payload for its topic.
    pub fn decode(topic: &Topic, payload: Value) -> Result<TopicEvent, serde_json::Error> {
        Ok(match topic {
            Topic::Agents => TopicEvent::Agent(serde_json::from_value(payload)?),
            Topic::Repos => TopicEvent::Repo(serde_json::from_value(payload)?),
            Topic::Tasks => TopicEvent::Task(serde_json::from_value(payload)?),
            Topic::Alerts => TopicEvent::Alert(serde_json::from_value(payload)?),
            Topic::Task(_) => TopicEvent::TaskEvent(serde_json::from_value(payload)?),
            Topic::Hud { .. } => TopicEvent::Hud(serde_json::from_value(payload)?),
            Topic::Dashboard { .. } => TopicEvent::Dashboard(serde_json::from_value(payload)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_reject_bad_names() {
        for good in [
            "agents",
            "repos",
            "tasks",
            "alerts",
            "task:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "hud:alice/flightdeck",
            "dashboard:alice",
        ] {
            let topic: Topic = good.parse().unwrap();
            assert_eq!(topic.to_string(), good);
        }
        let bad: &[(&str, &str)] = &[
            ("agent", "unknown topic"),
            ("task:", "bad task id"),
            ("task:../x", "bad task id"),
            ("hud:alice", "bad HUD topic"),
            ("hud:al ice/x", "bad user name"),
            ("hud:alice/..", "bad repo slug"),
            ("hud:alice/a/b", "bad repo slug"),
            ("dashboard:", "bad user name"),
            ("dashboard:al/ice", "bad user name"),
            ("", "unknown topic"),
        ];
        for (name, want) in bad {
            let err = name.parse::<Topic>().unwrap_err().to_string();
            assert!(err.starts_with(want), "{name:?}: {err}");
        }
    }

    #[test]
    fn text_frames_decode_like_owned_ones() {
        let topic: Topic = "dashboard:alice".parse().unwrap();
        let text = encode_event("dashboard:alice", &serde_json::json!({"removed": "web"}));
        let frame: ServerFrameText<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!((frame.kind.as_str(), frame.topic.as_deref()), ("event", Some("dashboard:alice")));
        let payload = frame.payload.unwrap().get();
        let owned = TopicEvent::decode(&topic, serde_json::from_str(payload).unwrap()).unwrap();
        assert_eq!(TopicEvent::decode_str(&topic, payload).unwrap(), owned);
        assert_eq!(owned, TopicEvent::Dashboard(DashboardEvent::Removed { removed: "web".into() }));
        let text = ServerMessage::forbidden("hud:a/b").to_json();
        let error: ServerFrameText<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!((error.kind.as_str(), error.message.as_deref()), ("error", Some("forbidden")));
    }

    #[test]
    fn keyed_decoding_of_untagged_events_agrees_with_serde() {
        let mut repo = RepoStatus::new("r1", "web");
        repo.path = Some("/p".into());
        let task = Task::queued(
            "t1",
            "title",
            "web",
            crate::Executor::Shell,
            crate::TaskPayload::default(),
            crate::TaskSource::Local,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let hud = [
            serde_json::json!({"repoStatus": repo}),
            serde_json::json!({"task": task}),
            serde_json::json!({"taskId": "t1", "seq": 3, "event": {"kind": "chunk", "text": "x", "stream": "stdout"}}),
            serde_json::json!({"agentOnline": false}),
        ];
        for payload in hud {
            let text = payload.to_string();
            assert_eq!(
                HudEvent::decode_str(&text).unwrap(),
                serde_json::from_str::<HudEvent>(&text).unwrap(),
                "{text}"
            );
        }
        for bad in [r#"{}"#, r#"{"seq": 1}"#, r#"{"taskId": "t1"}"#, r#"[1]"#] {
            assert!(HudEvent::decode_str(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<HudEvent>(bad).is_err(), "{bad}");
        }
        for payload in [serde_json::json!({"removed": "r1"}), serde_json::to_value(&repo).unwrap()] {
            let text = payload.to_string();
            assert_eq!(RepoEvent::decode_str(&text).unwrap(), serde_json::from_str::<RepoEvent>(&text).unwrap());
        }
        let entry = DashboardRepo { repo: "web".into(), agent_online: true, repo_status: None, task: Some(task) };
        for payload in [serde_json::json!({"removed": "web"}), serde_json::to_value(&entry).unwrap()] {
            let text = payload.to_string();
            assert_eq!(
                DashboardEvent::decode_str(&text).unwrap(),
                serde_json::from_str::<DashboardEvent>(&text).unwrap()
            );
        }
    }

    #[test]
    fn stored_snapshots_write_the_same_json_as_typed_ones() {
        let events = vec![SeqEvent {
            seq: 1,
            event: serde_json::from_value(serde_json::json!({"kind": "done", "summary": "ok"})).unwrap(),
        }];
        let stored = || {
            events
                .iter()
                .map(|e| StoredSeqEvent { seq: e.seq, event: serde_json::value::to_raw_value(&e.event).unwrap() })
                .collect::<Vec<_>>()
        };
        let task = Task::queued(
            "t1",
            "title",
            "web",
            crate::Executor::Shell,
            crate::TaskPayload::default(),
            crate::TaskSource::Local,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let typed = HudSnapshot {
            user: "alice".into(),
            repo: "web".into(),
            public: true,
            agent_online: false,
            repo_status: Some(RepoStatus::new("r1", "web")),
            task: Some(task.clone()),
            events: events.clone(),
        };
        let written = StoredHudSnapshot {
            user: "alice".into(),
            repo: "web".into(),
            public: true,
            agent_online: false,
            repo_status: Some(RepoStatus::new("r1", "web")),
            task: Some(task.clone()),
            events: stored(),
        };
        assert_eq!(serde_json::to_string(&written).unwrap(), serde_json::to_string(&typed).unwrap());
        let typed = TaskSnapshot { task: task.clone(), events: events.clone() };
        let written = StoredTaskSnapshot { task, events: stored() };
        assert_eq!(serde_json::to_string(&written).unwrap(), serde_json::to_string(&typed).unwrap());
    }

    #[test]
    fn encode_matches_the_owned_message() {
        let payload = serde_json::json!({"removed": "r1"});
        let text = encode_event("repos", &payload);
        assert_eq!(ServerMessage::parse(&text).unwrap(), ServerMessage::Event { topic: "repos".into(), payload });
    }
}
