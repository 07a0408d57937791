//! The store: everything the views show, and the reducer that changes it.
//!
//! Pure (no web-sys): the realtime client and the REST calls turn what they receive into
//! [`Action`]s, the reducer applies them, and the host tests check the rules:
//! a snapshot replaces (never duplicates), events dedup by `(taskId, seq)`, a batch of actions
//! collected during one animation frame is one render.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use flightdeck_protocol::api::{HudSessionResponse, HudSettings};
use flightdeck_protocol::realtime::{
    DashboardEvent, DashboardRepo, DashboardSnapshot, HudEvent, HudSnapshot, RepoEvent, ServerFrameText, TopicEvent,
    TopicSnapshot,
};
use flightdeck_protocol::{AgentInfo, Alert, RepoStatus, SeqEvent, Task, TaskStatus, Topic};
use yew::Reducible;

use crate::connection::Connection;
use crate::transcript::Transcript;

/// How many tasks the task list keeps (the `tasks` topic snapshot holds the 100 newest).
const MAX_TASKS: usize = 200;

/// The `hud:` topic's state.
#[derive(Debug, Clone, PartialEq)]
pub struct HudState {
    pub user: String,
    pub repo: String,
    pub public: bool,
    pub agent_online: bool,
    pub repo_status: Option<RepoStatus>,
    /// The current or last task of the repo.
    pub task: Option<Task>,
}

/// The `dashboard:` topic's state: the user's public repos, by slug.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardState {
    pub user: String,
    pub repos: Vec<DashboardRepo>,
}

/// One repo as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardRow {
    pub repo: String,
    pub status: Option<RepoStatus>,
    pub agent_online: bool,
    /// The current or last task of the repo.
    pub task: Option<Task>,
    /// Whether its HUD is public; known to the owner only (anyone else sees public repos alone).
    pub public: Option<bool>,
}

/// Everything the views show.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Bumped by every change: the cheap equality that decides whether to re-render.
    pub version: u64,
    pub connection: Connection,
    pub hud: Option<HudState>,
    pub dashboard: Option<DashboardState>,
    pub agents: Vec<AgentInfo>,
    pub repos: Vec<RepoStatus>,
    /// Newest first.
    pub tasks: Vec<Task>,
    /// Unacknowledged alerts, newest first.
    pub alerts: Vec<Alert>,
    pub transcripts: HashMap<String, Rc<Transcript>>,
    /// The task the thread view shows when it is not the HUD's current one.
    pub selected_task: Option<String>,
    pub settings: Option<HudSettings>,
    pub session: Option<HudSessionResponse>,
    /// Topics the relay refused.
    pub forbidden: BTreeSet<String>,
    /// The last thing that went wrong, for a dismissable banner.
    pub notice: Option<String>,
}

impl PartialEq for Store {
    fn eq(&self, other: &Store) -> bool {
        self.version == other.version
    }
}

/// A change to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Snapshot(Topic, TopicSnapshot),
    Event(Topic, TopicEvent),
    /// The relay refused a topic, or reported a problem.
    ServerError {
        topic: Option<String>,
        message: String,
    },
    /// Events fetched by the polling fallback.
    Polled {
        task_id: String,
        events: Vec<SeqEvent>,
    },
    SocketOpen(bool),
    ApiReachable(bool),
    /// A task seen outside the topics (e.g. the answer to a start request).
    TaskUpdated(Task),
    /// The turns of a conversation (`GET /api/cockpit/conversations/:id`).
    Conversation(Vec<Task>),
    /// An alert changed (acknowledged ones leave the list).
    AlertUpdated(Alert),
    Settings(HudSettings),
    Session(HudSessionResponse),
    SelectTask(Option<String>),
    Notice(Option<String>),
    /// Several actions applied as one change: one render per animation frame.
    Batch(Vec<Action>),
}

/// Decodes one realtime frame into an action, with the protocol's types only. Frames that do
/// not decode are dropped (and logged by the caller); `pong` is no action.
pub fn decode_server_frame(text: &str) -> Result<Option<Action>, String> {
    // Plain serde, not `ServerMessage::parse`: the schema validation is for untrusted input on
    // the relay; here it would only add size to the bundle. The payload is decoded once, from
    // its text, straight into its topic's type.
    let frame: ServerFrameText<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let topic = || -> Result<(Topic, &str), String> {
        let name = frame.topic.as_deref().ok_or("a frame without a topic")?;
        let topic: Topic = name.parse().map_err(|e: flightdeck_protocol::realtime::TopicError| e.to_string())?;
        Ok((topic, frame.payload.map_or("null", |p| p.get())))
    };
    Ok(match frame.kind.as_str() {
        "snapshot" => {
            let (topic, payload) = topic()?;
            let snapshot = TopicSnapshot::decode_str(&topic, payload).map_err(|e| format!("{topic}: {e}"))?;
            Some(Action::Snapshot(topic, snapshot))
        }
        "event" => {
            let (topic, payload) = topic()?;
            let event = TopicEvent::decode_str(&topic, payload).map_err(|e| format!("{topic}: {e}"))?;
            Some(Action::Event(topic, event))
        }
        "error" => {
            Some(Action::ServerError { topic: frame.topic.clone(), message: frame.message.clone().unwrap_or_default() })
        }
        "pong" => None,
        other => return Err(format!("unknown frame type {other:?}")),
    })
}

impl Store {
    /// The task the thread view shows: the selected one, else the HUD's current one.
    pub fn shown_task_id(&self) -> Option<&str> {
        self.selected_task.as_deref().or_else(|| self.hud.as_ref().and_then(|h| h.task.as_ref()).map(|t| t.id.as_str()))
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.hud
            .as_ref()
            .and_then(|h| h.task.as_ref())
            .filter(|t| t.id == id)
            .or_else(|| self.tasks.iter().find(|t| t.id == id))
    }

    pub fn transcript(&self, id: &str) -> Option<&Rc<Transcript>> {
        self.transcripts.get(id)
    }

    /// Every known turn of the conversation `task_id` belongs to, oldest first (just the task
    /// when it is the only one known).
    pub fn conversation_turns(&self, task_id: &str) -> Vec<Task> {
        let Some(task) = self.task(task_id) else { return Vec::new() };
        let conversation = task.conversation();
        let mut turns: Vec<Task> = self.tasks.iter().filter(|t| t.conversation() == conversation).cloned().collect();
        if !turns.iter().any(|t| t.id == task.id) {
            turns.push(task.clone());
        }
        turns.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        turns
    }

    /// The dashboard's repos, by name. Anyone: the public repos of `dashboard:<user>`. The
    /// owner: every repo of `repos`, with its agent from `agents` and its newest task from
    /// `tasks` (a public repo's dashboard entry wins, it is the relay's view of its HUD).
    pub fn dashboard_rows(&self, owner: bool) -> Vec<DashboardRow> {
        let entries = self.dashboard.as_ref().map(|d| d.repos.as_slice()).unwrap_or_default();
        let from_entry = |e: &DashboardRepo, public: Option<bool>| DashboardRow {
            repo: e.repo.clone(),
            status: e.repo_status.clone(),
            agent_online: e.agent_online,
            task: e.task.as_ref().map(|t| self.tasks.iter().find(|o| o.id == t.id).unwrap_or(t).clone()),
            public,
        };
        if !owner {
            return entries.iter().map(|e| from_entry(e, None)).collect();
        }
        let mut rows: Vec<DashboardRow> = self
            .repos
            .iter()
            .map(|r| match entries.iter().find(|e| e.repo == r.name) {
                Some(e) => DashboardRow { status: Some(r.clone()), ..from_entry(e, Some(true)) },
                None => DashboardRow {
                    repo: r.name.clone(),
                    status: Some(r.clone()),
                    agent_online: self
                        .agents
                        .iter()
                        .any(|a| a.status != flightdeck_protocol::AgentState::Offline && a.repos.contains(&r.name)),
                    // `tasks` is newest first.
                    task: self.tasks.iter().find(|t| t.repo == r.name).cloned(),
                    public: Some(false),
                },
            })
            .collect();
        rows.sort_by(|a, b| a.repo.cmp(&b.repo));
        rows.dedup_by(|a, b| a.repo == b.repo);
        rows
    }

    /// Whether a task waits for a person: its status says so, or its transcript holds a request
    /// nobody decided while the task has not ended (the event may come before the status).
    pub fn needs_input(&self, task: &Task) -> bool {
        task.status == TaskStatus::Waiting
            || (!task.status.is_terminal()
                && self.transcript(&task.id).is_some_and(|t| t.undecided_requests().next().is_some()))
    }

    pub fn apply(&mut self, action: Action) {
        self.version += 1;
        match action {
            Action::Batch(actions) => actions.into_iter().for_each(|a| self.apply_one(a)),
            other => self.apply_one(other),
        }
    }

    fn apply_one(&mut self, action: Action) {
        match action {
            Action::Batch(actions) => actions.into_iter().for_each(|a| self.apply_one(a)),
            Action::Snapshot(topic, snapshot) => self.apply_snapshot(topic, snapshot),
            // A `task:<id>` event carries no task id; the topic does. Applied here, in the
            // batch's order, so a snapshot earlier in the batch never wipes it.
            Action::Event(Topic::Task(id), TopicEvent::TaskEvent(e)) => {
                Rc::make_mut(self.transcripts.entry(id).or_default()).apply(e.seq, e.event);
            }
            Action::Event(_, event) => self.apply_event(event),
            Action::ServerError { topic, message } => match topic {
                Some(topic) if message == "forbidden" => {
                    self.forbidden.insert(topic);
                }
                Some(topic) => self.notice = Some(format!("{topic}: {message}")),
                None => self.notice = Some(message),
            },
            Action::Polled { task_id, events } => {
                let t = Rc::make_mut(self.transcripts.entry(task_id).or_default());
                for e in events {
                    t.apply(e.seq, e.event);
                }
            }
            Action::SocketOpen(open) => self.connection.socket_open = open,
            Action::ApiReachable(ok) => self.connection.api_reachable = ok,
            Action::TaskUpdated(task) => self.upsert_task(task),
            Action::Conversation(tasks) => tasks.into_iter().for_each(|t| self.upsert_task(t)),
            Action::AlertUpdated(alert) => self.upsert_alert(alert),
            Action::Settings(settings) => {
                if let Some(hud) = &mut self.hud {
                    hud.public = settings.public;
                }
                self.settings = Some(settings);
            }
            Action::Session(session) => self.session = Some(session),
            Action::SelectTask(id) => self.selected_task = id,
            Action::Notice(notice) => self.notice = notice,
        }
    }

    fn apply_snapshot(&mut self, topic: Topic, snapshot: TopicSnapshot) {
        self.forbidden.remove(&topic.to_string());
        match snapshot {
            TopicSnapshot::Agents(agents) => self.agents = agents,
            TopicSnapshot::Repos(repos) => self.repos = repos,
            TopicSnapshot::Tasks(mut tasks) => {
                tasks.sort_by_key(|t| std::cmp::Reverse(t.created_at));
                self.tasks = tasks;
            }
            TopicSnapshot::Alerts(alerts) => {
                self.alerts = alerts.into_iter().filter(|a| !a.acknowledged).collect();
                self.alerts.sort_by_key(|a| std::cmp::Reverse(a.created_at));
            }
            TopicSnapshot::Task(snap) => {
                let snap = *snap;
                self.transcripts.insert(snap.task.id.clone(), Rc::new(Transcript::from_events(snap.events)));
                self.upsert_task(snap.task);
            }
            TopicSnapshot::Hud(snap) => {
                let HudSnapshot { user, repo, public, agent_online, repo_status, task, events } = *snap;
                if let Some(task) = &task {
                    // A snapshot is the whole truth: replace, so a reconnect never duplicates.
                    self.transcripts.insert(task.id.clone(), Rc::new(Transcript::from_events(events)));
                    self.upsert_task(task.clone());
                }
                self.hud = Some(HudState { user, repo, public, agent_online, repo_status, task });
            }
            TopicSnapshot::Dashboard(snap) => {
                let DashboardSnapshot { user, mut repos } = *snap;
                repos.sort_by(|a, b| a.repo.cmp(&b.repo));
                self.dashboard = Some(DashboardState { user, repos });
            }
        }
    }

    fn apply_event(&mut self, event: TopicEvent) {
        match event {
            TopicEvent::Agent(agent) => match self.agents.iter_mut().find(|a| a.agent_id == agent.agent_id) {
                Some(slot) => *slot = agent,
                None => self.agents.push(agent),
            },
            TopicEvent::Repo(RepoEvent::Removed { removed }) => self.repos.retain(|r| r.id != removed),
            TopicEvent::Repo(RepoEvent::Status(repo)) => match self.repos.iter_mut().find(|r| r.id == repo.id) {
                Some(slot) => *slot = repo,
                None => self.repos.push(repo),
            },
            TopicEvent::Task(task) => self.upsert_task(task),
            TopicEvent::Alert(alert) => self.upsert_alert(alert),
            TopicEvent::TaskEvent(_) => {
                // Only on a `task:<id>` topic, which `apply_one` handles with its id.
            }
            TopicEvent::Hud(HudEvent::RepoStatus { repo_status }) => {
                if let Some(hud) = &mut self.hud {
                    hud.repo_status = Some(repo_status);
                }
            }
            TopicEvent::Hud(HudEvent::AgentOnline { agent_online }) => {
                if let Some(hud) = &mut self.hud {
                    hud.agent_online = agent_online;
                }
            }
            TopicEvent::Hud(HudEvent::Task { task }) => {
                if let Some(hud) = &mut self.hud {
                    let newer =
                        hud.task.as_ref().is_none_or(|cur| cur.id == task.id || task.created_at >= cur.created_at);
                    if newer {
                        if hud.task.as_ref().is_some_and(|cur| cur.id != task.id) && self.selected_task.is_none() {
                            // A new task replaces the shown one; its transcript starts empty.
                            self.transcripts.entry(task.id.clone()).or_default();
                        }
                        hud.task = Some(task.clone());
                    }
                }
                self.upsert_task(task);
            }
            TopicEvent::Dashboard(DashboardEvent::Removed { removed }) => {
                if let Some(d) = &mut self.dashboard {
                    d.repos.retain(|r| r.repo != removed);
                }
            }
            TopicEvent::Dashboard(DashboardEvent::Repo(repo)) => {
                if let Some(d) = &mut self.dashboard {
                    match d.repos.binary_search_by(|r| r.repo.cmp(&repo.repo)) {
                        Ok(i) => d.repos[i] = repo,
                        Err(i) => d.repos.insert(i, repo),
                    }
                }
            }
            TopicEvent::Hud(HudEvent::TaskEvent(record)) => {
                let t = Rc::make_mut(self.transcripts.entry(record.task_id).or_default());
                t.apply(record.seq, record.event);
            }
        }
    }

    fn upsert_task(&mut self, task: Task) {
        // Copies arrive from the socket and from REST answers asked for earlier: an older one
        // is dropped, not allowed to take the task back.
        let known = self.tasks.iter().chain(self.hud.as_ref().and_then(|h| h.task.as_ref()));
        if known.filter(|t| t.id == task.id).any(|t| is_older(&task, t)) {
            return;
        }
        if let Some(hud) = &mut self.hud {
            if hud.task.as_ref().is_some_and(|t| t.id == task.id) {
                hud.task = Some(task.clone());
            }
        }
        match self.tasks.iter_mut().find(|t| t.id == task.id) {
            Some(slot) => *slot = task,
            None => {
                let at = self.tasks.iter().position(|t| t.created_at < task.created_at).unwrap_or(self.tasks.len());
                self.tasks.insert(at, task);
                self.tasks.truncate(MAX_TASKS);
            }
        }
    }

    fn upsert_alert(&mut self, alert: Alert) {
        self.alerts.retain(|a| a.id != alert.id);
        if !alert.acknowledged {
            let at = self.alerts.iter().position(|a| a.created_at < alert.created_at).unwrap_or(self.alerts.len());
            self.alerts.insert(at, alert);
        }
    }
}

/// Whether `copy` is an older state of `known` (the same task): a task never leaves a terminal
/// status and its `lastSeq` never goes down. Two copies with the same events and no end are
/// told apart by nothing: the later one to arrive wins.
fn is_older(copy: &Task, known: &Task) -> bool {
    copy.last_seq < known.last_seq || (known.status.is_terminal() && !copy.status.is_terminal())
}

impl Reducible for Store {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut store = Rc::unwrap_or_clone(self);
        store.reduce_in_place(action);
        Rc::new(store)
    }
}

impl Store {
    /// `apply` (the name the feed and the tests use).
    pub fn reduce_in_place(&mut self, action: Action) {
        self.apply(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Item;
    use flightdeck_protocol::event::ChunkStream;
    use flightdeck_protocol::realtime::encode_event;
    use flightdeck_protocol::{Executor, ServerMessage, TaskEvent, TaskPayload, TaskSource, TaskStatus};
    use serde_json::json;

    fn task(id: &str, at: &str) -> Task {
        let (payload, source) = (TaskPayload::default(), TaskSource::Local);
        Task {
            status: TaskStatus::Running,
            ..Task::queued(
                id,
                format!("task {id}"),
                "flightdeck",
                Executor::Claude,
                payload,
                source,
                at.parse().unwrap(),
            )
        }
    }

    fn chunk(seq: u64, text: &str) -> SeqEvent {
        SeqEvent { seq, event: TaskEvent::Chunk { text: text.into(), stream: ChunkStream::Assistant } }
    }

    fn hud_snapshot(events: Vec<SeqEvent>) -> String {
        flightdeck_protocol::realtime::encode_snapshot(
            "hud:alice/flightdeck",
            &HudSnapshot {
                user: "alice".into(),
                repo: "flightdeck".into(),
                public: true,
                agent_online: true,
                repo_status: None,
                task: Some(task("t1", "2026-01-01T00:00:00Z")),
                events,
            },
        )
    }

    fn feed(store: &mut Store, frames: &[String]) {
        for f in frames {
            if let Some(a) = decode_server_frame(f).unwrap() {
                store.reduce_in_place(a);
            }
        }
    }

    fn shown_text(store: &Store) -> String {
        let t = store.transcript(store.shown_task_id().unwrap()).unwrap();
        t.items
            .iter()
            .filter_map(|i| match i.as_ref() {
                Item::Message { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn hud_event(seq: u64, text: &str) -> String {
        encode_event(
            "hud:alice/flightdeck",
            &json!({"taskId": "t1", "seq": seq, "event": {"kind": "chunk", "text": text, "stream": "assistant"}}),
        )
    }

    #[test]
    fn late_join_then_live_events_then_reconnect_snapshot_never_duplicates() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![chunk(1, "a"), chunk(2, "b")]), hud_event(3, "c"), hud_event(3, "c")]);
        assert_eq!(shown_text(&store), "abc");
        // Reconnect: a fresh snapshot replaces, then live events continue.
        feed(
            &mut store,
            &[
                hud_snapshot(vec![chunk(1, "a"), chunk(2, "b"), chunk(3, "c"), chunk(4, "d")]),
                hud_event(4, "d"),
                hud_event(5, "e"),
            ],
        );
        assert_eq!(shown_text(&store), "abcde");
        assert_eq!(store.tasks.len(), 1);
    }

    #[test]
    fn polled_events_and_socket_events_dedup_by_seq() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![chunk(1, "a")])]);
        store.reduce_in_place(Action::Polled { task_id: "t1".into(), events: vec![chunk(2, "b"), chunk(3, "c")] });
        feed(&mut store, &[hud_event(2, "b"), hud_event(4, "d")]);
        assert_eq!(shown_text(&store), "abcd");
    }

    #[test]
    fn task_topic_events_use_the_topic_id() {
        let mut store = Store::default();
        let snap = flightdeck_protocol::realtime::encode_snapshot(
            "task:t2",
            &json!({"task": task("t2", "2026-01-02T00:00:00Z"), "events": [chunk(1, "x")]}),
        );
        let ev =
            encode_event("task:t2", &json!({"seq": 2, "event": {"kind": "chunk", "text": "y", "stream": "assistant"}}));
        feed(&mut store, &[snap, ev.clone(), ev]);
        store.reduce_in_place(Action::SelectTask(Some("t2".into())));
        assert_eq!(shown_text(&store), "xy");
    }

    /// A busy window collects a task's snapshot and the live events after it into one batch
    /// (one animation frame): the events must apply after the snapshot, not before it, or the
    /// snapshot wipes them (the desktop permission card that never drew under load).
    #[test]
    fn a_snapshot_and_the_events_after_it_in_one_batch_keep_the_events() {
        let mut store = Store::default();
        let snap = flightdeck_protocol::realtime::encode_snapshot(
            "task:t2",
            &json!({"task": task("t2", "2026-01-02T00:00:00Z"), "events": [chunk(1, "x")]}),
        );
        let event = |seq: u64, text: &str| {
            encode_event(
                "task:t2",
                &json!({"seq": seq, "event": {"kind": "chunk", "text": text, "stream": "assistant"}}),
            )
        };
        let actions = [snap, event(2, "y"), event(3, "z"), event(4, "!")]
            .iter()
            .map(|f| decode_server_frame(f).unwrap().unwrap())
            .collect();
        store.reduce_in_place(Action::Batch(actions));
        store.reduce_in_place(Action::SelectTask(Some("t2".into())));
        assert_eq!(shown_text(&store), "xyz!");
        assert_eq!(store.transcript("t2").unwrap().last_seq, 4);
    }

    #[test]
    fn hud_events_update_agent_repo_and_task() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![])]);
        feed(&mut store, &[encode_event("hud:alice/flightdeck", &json!({"agentOnline": false}))]);
        assert!(!store.hud.as_ref().unwrap().agent_online);
        let mut repo = RepoStatus::new("r1", "flightdeck");
        repo.branch = Some("main".into());
        feed(&mut store, &[encode_event("hud:alice/flightdeck", &json!({"repoStatus": repo}))]);
        assert_eq!(store.hud.as_ref().unwrap().repo_status.as_ref().unwrap().branch.as_deref(), Some("main"));
        // A newer task becomes the shown one.
        feed(&mut store, &[encode_event("hud:alice/flightdeck", &json!({"task": task("t3", "2026-02-01T00:00:00Z")}))]);
        assert_eq!(store.shown_task_id(), Some("t3"));
        assert_eq!(store.tasks.first().unwrap().id, "t3");
    }

    #[test]
    fn forbidden_topics_and_acknowledged_alerts() {
        let mut store = Store::default();
        let err = ServerMessage::forbidden("hud:bob/x").to_json();
        feed(&mut store, &[err]);
        assert!(store.forbidden.contains("hud:bob/x"));
        let alert: Alert = serde_json::from_value(json!({
            "id": "a1", "severity": "warning", "kind": "task_failed", "message": "m",
            "createdAt": "2026-01-01T00:00:00Z", "acknowledged": false
        }))
        .unwrap();
        feed(&mut store, &[flightdeck_protocol::realtime::encode_snapshot("alerts", &vec![alert.clone()])]);
        assert_eq!(store.alerts.len(), 1);
        store.reduce_in_place(Action::AlertUpdated(Alert { acknowledged: true, ..alert }));
        assert!(store.alerts.is_empty());
    }

    #[test]
    fn a_batch_is_one_version() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![])]);
        let v = store.version;
        let actions =
            (1..=10_000).map(|seq| decode_server_frame(&hud_event(seq, "w ")).unwrap().unwrap()).collect::<Vec<_>>();
        store.reduce_in_place(Action::Batch(actions));
        assert_eq!(store.version, v + 1);
        let t = store.transcript("t1").unwrap();
        assert_eq!(t.items.len(), 1);
        assert_eq!(t.event_count, 10_000);
    }

    /// A REST answer asked for before the task ended can arrive after its live update: the
    /// older copy must not take the task back (an e2e run saw the reply box stay disabled).
    #[test]
    fn an_older_copy_of_a_task_never_replaces_a_newer_one() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![])]);
        let running = Task { last_seq: 3, ..task("t1", "2026-01-01T00:00:00Z") };
        let done = Task { status: TaskStatus::Completed, last_seq: 5, ..running.clone() };
        store.reduce_in_place(Action::TaskUpdated(done.clone()));
        store.reduce_in_place(Action::Conversation(vec![running.clone()]));
        assert_eq!(store.task("t1").unwrap().status, TaskStatus::Completed);
        assert_eq!(store.hud.as_ref().unwrap().task.as_ref().unwrap().status, TaskStatus::Completed);
        // Fewer events is older too, whatever the status says.
        let waiting = Task { status: TaskStatus::Waiting, last_seq: 7, ..running.clone() };
        let mut store2 = Store::default();
        feed(&mut store2, &[hud_snapshot(vec![])]);
        store2.reduce_in_place(Action::TaskUpdated(waiting.clone()));
        store2.reduce_in_place(Action::Conversation(vec![running.clone()]));
        assert_eq!(store2.task("t1").unwrap().last_seq, 7);
        // A newer copy still replaces: waiting -> running with the same events.
        store2.reduce_in_place(Action::TaskUpdated(Task { status: TaskStatus::Running, ..waiting }));
        assert_eq!(store2.task("t1").unwrap().status, TaskStatus::Running);
    }

    #[test]
    fn conversation_turns_are_oldest_first_and_waiting_needs_input() {
        let mut store = Store::default();
        feed(&mut store, &[hud_snapshot(vec![])]);
        let other = task("t9", "2026-01-01T00:00:30Z");
        let second = Task {
            conversation_id: "t1".into(),
            parent_task_id: Some("t1".into()),
            ..task("t2", "2026-01-01T00:01:00Z")
        };
        let third = Task { conversation_id: "t1".into(), ..task("t3", "2026-01-01T00:02:00Z") };
        store.reduce_in_place(Action::Conversation(vec![third.clone(), second.clone()]));
        store.reduce_in_place(Action::TaskUpdated(other));
        let ids = |turns: Vec<Task>| turns.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(store.conversation_turns("t2")), ["t1", "t2", "t3"]);
        assert_eq!(ids(store.conversation_turns("t9")), ["t9"]);
        assert!(store.conversation_turns("nope").is_empty());

        assert!(!store.needs_input(&third));
        let waiting = Task { status: TaskStatus::Waiting, ..third.clone() };
        assert!(store.needs_input(&waiting));
        // A request seen before the task's status changed already counts; a decision settles it.
        let request = json!({"kind": "permission_request", "requestId": "r1", "toolName": "Bash", "input": {}});
        let frame = |seq: u64, event: serde_json::Value| {
            encode_event("hud:alice/flightdeck", &json!({"taskId": "t3", "seq": seq, "event": event}))
        };
        feed(&mut store, &[frame(1, request)]);
        assert!(store.needs_input(&third));
        assert!(!store.needs_input(&Task { status: TaskStatus::Completed, ..third.clone() }));
        let decision =
            json!({"kind": "permission_decision", "requestId": "r1", "behavior": "allow", "decidedBy": "owner"});
        feed(&mut store, &[frame(2, decision)]);
        assert!(!store.needs_input(&third));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(decode_server_frame("{").is_err());
        assert!(decode_server_frame(r#"{"type":"snapshot","topic":"nope","payload":{}}"#).is_err());
        assert_eq!(decode_server_frame(r#"{"type":"pong"}"#).unwrap(), None);
    }
}
