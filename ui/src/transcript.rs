//! The transcript of one task, built from its `TaskEvent`s (SPEC 3.1).
//!
//! Pure data, no web-sys, so it is tested on the host. Events are applied in `seq` order,
//! exactly once: duplicates are dropped and early arrivals wait in `pending` until the gap
//! closes. Consecutive `chunk`s of one stream are coalesced into one message, so a transcript
//! of 10,000 chunk events stays a handful of items (and a handful of DOM text nodes). Terminal
//! output is coalesced into blocks of at most [`TERMINAL_BLOCK_LINES`] lines: a new line only
//! ever changes the last block, so a task printing 50,000 lines re-renders (and the browser
//! re-lays out) a few hundred lines per frame, not the whole output.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use flightdeck_protocol::event::{Behavior, ChunkStream, DecidedBy, DiffFile, PlanEntryStatus, RunnerStep};
use flightdeck_protocol::{SeqEvent, TaskEvent, TaskStatus};
use serde_json::Value;

/// Most events held back waiting for a gap to close; past this, they are applied anyway
/// (a gap that does not close within that many events is never going to).
const MAX_PENDING: usize = 512;

/// Most lines in one block of terminal output (see the module docs).
pub const TERMINAL_BLOCK_LINES: usize = 200;

/// One tool call, from `tool_start` to `tool_done`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool_id: String,
    pub tool_name: String,
    pub params: Value,
    /// From the latest `tool_progress`.
    pub elapsed_secs: Option<f64>,
    /// Set by `tool_done`.
    pub output: Option<String>,
    pub is_error: bool,
    /// A permission request for this call is not decided yet: it is not running, it waits.
    pub awaiting_permission: bool,
}

impl ToolCall {
    /// Started and not done (a call that waits for a permission counts: it has not ended).
    pub fn is_running(&self) -> bool {
        self.output.is_none()
    }

    /// Whether the call is the one a permission request asks about: the same tool with the
    /// same input.
    fn asked_by(&self, tool_name: &str, input: &Value) -> bool {
        self.output.is_none() && self.tool_name == tool_name && self.params == *input
    }

    /// A one-line summary of the parameters for the collapsed card (`command`, `file_path`,
    /// `pattern` ... or the first string parameter).
    pub fn headline(&self) -> String {
        const KEYS: [&str; 6] = ["command", "file_path", "path", "pattern", "url", "description"];
        let Value::Object(map) = &self.params else { return String::new() };
        let pick = KEYS.iter().find_map(|k| map.get(*k).and_then(Value::as_str));
        let pick = pick.or_else(|| map.values().find_map(Value::as_str)).unwrap_or("");
        let line = pick.lines().next().unwrap_or("");
        if line.chars().count() > 120 {
            format!("{}…", line.chars().take(120).collect::<String>())
        } else {
            line.to_string()
        }
    }
}

/// How a permission request was decided (`permission_decision`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub behavior: Behavior,
    pub message: Option<String>,
    pub updated_input: Option<Value>,
    pub decided_by: DecidedBy,
}

/// A tool Claude asked to use, or a question it asked (SPEC 8), and its decision once made.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionCall {
    pub request_id: String,
    pub tool_name: String,
    pub input: Value,
    pub description: Option<String>,
    /// Set by the `permission_decision` with the same `requestId`.
    pub decision: Option<Decision>,
}

impl PermissionCall {
    /// Still waiting for a person: not decided, and the task can still use an answer.
    pub fn is_pending(&self, task_status: Option<TaskStatus>) -> bool {
        self.decision.is_none() && !task_status.is_some_and(TaskStatus::is_terminal)
    }
}

/// The latest `usage` of a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_cost_usd: f64,
}

/// One rendered block of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Consecutive chunks of one stream, joined.
    Message {
        stream: ChunkStream,
        text: String,
    },
    Tool(ToolCall),
    Status {
        status: TaskStatus,
        model: Option<String>,
    },
    /// The task's `done`. `summary` is left out when the transcript already ends with it (a
    /// Claude task's last message, a shell task's last line): the block says "Completed".
    Done {
        summary: Option<String>,
    },
    /// What the task changed (`diff`), shown as the Changes panel.
    Changes {
        files: Vec<DiffFile>,
        patch: String,
        truncated: bool,
    },
    Error {
        error: String,
    },
    /// The prompt of the turn (`user_message`).
    UserMessage {
        text: String,
    },
    Permission(PermissionCall),
    /// A step of a container run (`runner`), written by the relay: a plain line, not output.
    Runner {
        failed: bool,
        message: String,
    },
}

/// A task's transcript. Items are append-only, so an item's index is a stable key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    pub items: Vec<Rc<Item>>,
    pub usage: Option<Usage>,
    /// The latest status an event reported.
    pub status: Option<TaskStatus>,
    /// The highest `seq` applied.
    pub last_seq: u64,
    /// How many events were applied.
    pub event_count: usize,
    pending: BTreeMap<u64, TaskEvent>,
    /// Lines (newlines) in the last item when it is a block of terminal output.
    tail_lines: usize,
    tools: HashMap<String, usize>,
    permissions: HashMap<String, usize>,
    /// The tool card each undecided permission request holds back (by request id).
    held_tools: HashMap<String, usize>,
}

impl Transcript {
    /// A transcript from a snapshot's events (in any order, duplicates allowed). The first event
    /// need not be seq 1: a snapshot may start later.
    pub fn from_events(events: impl IntoIterator<Item = SeqEvent>) -> Transcript {
        let mut sorted: Vec<SeqEvent> = events.into_iter().collect();
        sorted.sort_by_key(|e| e.seq);
        sorted.dedup_by_key(|e| e.seq);
        let mut t = Transcript::default();
        if let Some(first) = sorted.first() {
            t.last_seq = first.seq.saturating_sub(1);
        }
        for e in sorted {
            t.apply(e.seq, e.event);
        }
        t
    }

    /// Applies one event. Returns false when it changed nothing (a duplicate, or held back).
    pub fn apply(&mut self, seq: u64, event: TaskEvent) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        if seq != self.last_seq + 1 {
            self.pending.insert(seq, event);
            if self.pending.len() > MAX_PENDING {
                self.flush_pending();
                return true;
            }
            return false;
        }
        self.apply_in_order(seq, event);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.last_seq + 1 {
                break;
            }
            let (seq, event) = entry.remove_entry();
            self.apply_in_order(seq, event);
        }
        true
    }

    /// Applies every held-back event in order, accepting the gaps.
    pub fn flush_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (seq, event) in pending {
            if seq > self.last_seq {
                self.apply_in_order(seq, event);
            }
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the turn has a prompt of its own (a `user_message` event).
    pub fn has_user_message(&self) -> bool {
        self.items.iter().any(|i| matches!(i.as_ref(), Item::UserMessage { .. }))
    }

    /// Permission requests not decided yet (whatever the task's status).
    pub fn undecided_requests(&self) -> impl Iterator<Item = &PermissionCall> {
        self.permissions.values().filter_map(|&i| match self.items[i].as_ref() {
            Item::Permission(p) if p.decision.is_none() => Some(p),
            _ => None,
        })
    }

    fn apply_in_order(&mut self, seq: u64, event: TaskEvent) {
        self.last_seq = seq;
        self.event_count += 1;
        match event {
            TaskEvent::Chunk { text, stream } => self.push_chunk(stream, &text),
            TaskEvent::ToolStart { tool_id, tool_name, params } => {
                if let Some(&i) = self.tools.get(&tool_id) {
                    // A repeated start updates the card in place.
                    if let Item::Tool(call) = Rc::make_mut(&mut self.items[i]) {
                        call.tool_name = tool_name;
                        call.params = params;
                    }
                    return;
                }
                let i = self.items.len();
                // The request may come first (the order of the CLI's messages is not fixed).
                let asking = self.undecided_requests().find(|p| {
                    !self.held_tools.contains_key(&p.request_id) && p.tool_name == tool_name && p.input == params
                });
                let asking = asking.map(|p| p.request_id.clone());
                if let Some(request_id) = &asking {
                    self.held_tools.insert(request_id.clone(), i);
                }
                self.tools.insert(tool_id.clone(), i);
                self.items.push(Rc::new(Item::Tool(ToolCall {
                    tool_id,
                    tool_name,
                    params,
                    elapsed_secs: None,
                    output: None,
                    is_error: false,
                    awaiting_permission: asking.is_some(),
                })));
            }
            TaskEvent::ToolProgress { tool_id, elapsed_secs } => {
                let i = self.tool_index(&tool_id);
                if let Item::Tool(call) = Rc::make_mut(&mut self.items[i]) {
                    call.elapsed_secs = Some(elapsed_secs);
                }
            }
            TaskEvent::ToolDone { tool_id, output, is_error } => {
                let i = self.tool_index(&tool_id);
                if let Item::Tool(call) = Rc::make_mut(&mut self.items[i]) {
                    call.output = Some(output);
                    call.is_error = is_error;
                    call.awaiting_permission = false;
                }
            }
            TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd } => {
                self.usage = Some(Usage { input_tokens, output_tokens, total_cost_usd });
            }
            TaskEvent::Status { status, model, .. } => {
                self.status = Some(status);
                // `queued` only says the task has not started: the next status takes its line,
                // so a task that failed before it ran does not keep saying "queued".
                let queued_line = self
                    .items
                    .iter()
                    .rposition(|i| matches!(i.as_ref(), Item::Status { status: TaskStatus::Queued, .. }));
                if let (Some(i), false) = (queued_line, status == TaskStatus::Queued) {
                    if !self.items[i + 1..].iter().any(|i| matches!(i.as_ref(), Item::Status { .. })) {
                        self.items[i] = Rc::new(Item::Status { status, model });
                        return;
                    }
                }
                // The Done (or Error) block already says how the task ended.
                let ended_here = match self.items.last().map(Rc::as_ref) {
                    Some(Item::Done { .. }) => status == TaskStatus::Completed,
                    Some(Item::Error { .. }) => status == TaskStatus::Failed,
                    _ => false,
                };
                if ended_here {
                    return;
                }
                // Only the first status, or a change of status, is worth a line.
                let repeat = self.items.iter().rev().find_map(|i| match i.as_ref() {
                    Item::Status { status: s, .. } => Some(*s == status),
                    _ => None,
                });
                if repeat != Some(true) {
                    self.items.push(Rc::new(Item::Status { status, model }));
                }
            }
            TaskEvent::Done { summary } => {
                if matches!(self.items.last().map(Rc::as_ref), Some(Item::Status { status: TaskStatus::Completed, .. }))
                {
                    self.items.pop();
                }
                let summary = Some(summary.trim().to_string()).filter(|s| !s.is_empty() && !self.ends_with_text(s));
                self.items.push(Rc::new(Item::Done { summary }));
            }
            TaskEvent::Diff { files, patch, truncated } => {
                self.items.push(Rc::new(Item::Changes { files, patch, truncated }))
            }
            TaskEvent::Error { error } => self.items.push(Rc::new(Item::Error { error })),
            TaskEvent::UserMessage { text } => self.items.push(Rc::new(Item::UserMessage { text })),
            TaskEvent::PermissionRequest { request_id, tool_name, input, description, .. } => {
                let i = self.permission_index(&request_id);
                let decided = match Rc::make_mut(&mut self.items[i]) {
                    Item::Permission(call) => {
                        // A request re-announced (after a dropped link) keeps a decision already seen.
                        call.tool_name = tool_name.clone();
                        call.input = input.clone();
                        call.description = description;
                        call.decision.is_some()
                    }
                    _ => true,
                };
                if !decided && !self.held_tools.contains_key(&request_id) {
                    self.hold_tool(request_id, &tool_name, &input);
                }
            }
            TaskEvent::PermissionDecision { request_id, behavior, message, updated_input, decided_by } => {
                let i = self.permission_index(&request_id);
                if let Item::Permission(call) = Rc::make_mut(&mut self.items[i]) {
                    call.decision = Some(Decision { behavior, message, updated_input, decided_by });
                }
                if let Some(t) = self.held_tools.remove(&request_id) {
                    if let Item::Tool(call) = Rc::make_mut(&mut self.items[t]) {
                        call.awaiting_permission = false;
                    }
                }
            }
            // An ACP agent's plan (SPEC 14): the whole list each time, one line an entry.
            TaskEvent::Plan { entries } => {
                let mut text = String::from("▤ plan\n");
                for entry in entries {
                    let mark = match entry.status {
                        PlanEntryStatus::Completed => "[x]",
                        PlanEntryStatus::InProgress => "[~]",
                        PlanEntryStatus::Pending => "[ ]",
                    };
                    text.push_str(&format!("{mark} {}\n", entry.content));
                }
                self.push_chunk(ChunkStream::Thinking, &text)
            }
            // A container run's steps (SPEC 10), written by the relay: one line each.
            TaskEvent::Runner { step, message, .. } => {
                self.items.push(Rc::new(Item::Runner { failed: step == RunnerStep::Failed, message }))
            }
        }
    }

    /// Appends a chunk: to the last message when it is of the same stream (terminal output: up to
    /// [`TERMINAL_BLOCK_LINES`] lines a block), else as a new message.
    fn push_chunk(&mut self, stream: ChunkStream, mut text: &str) {
        while !text.is_empty() {
            let same =
                matches!(self.items.last().map(Rc::as_ref), Some(Item::Message { stream: s, .. }) if *s == stream);
            if stream == ChunkStream::Assistant || !same || self.tail_lines >= TERMINAL_BLOCK_LINES {
                if same && stream == ChunkStream::Assistant {
                    self.append_to_last(text);
                    return;
                }
                self.items.push(Rc::new(Item::Message { stream, text: String::new() }));
                self.tail_lines = 0;
                if stream == ChunkStream::Assistant {
                    self.append_to_last(text);
                    return;
                }
            }
            // The part that fits: up to the block's remaining lines (a partial last line goes along).
            let room = TERMINAL_BLOCK_LINES - self.tail_lines;
            let (take, lines) = match text.match_indices('\n').take(room).enumerate().last() {
                Some((n, (i, _))) if n + 1 == room => (i + 1, room),
                Some((n, _)) => (text.len(), n + 1),
                None => (text.len(), 0),
            };
            self.append_to_last(&text[..take]);
            self.tail_lines += lines;
            text = &text[take..];
        }
    }

    fn append_to_last(&mut self, more: &str) {
        if let Some(Item::Message { text, .. }) = self.items.last_mut().map(Rc::make_mut) {
            // Copies the text only when a view still holds the old item; within one batch of
            // events this happens at most once per block.
            text.push_str(more);
        }
    }

    /// Whether the transcript's last message ends with `summary` (ignoring surrounding space).
    /// A status line or the Changes panel (a `diff` comes just before `done`) may follow it.
    fn ends_with_text(&self, summary: &str) -> bool {
        self.items.iter().rev().find_map(|i| match i.as_ref() {
            Item::Message { text, .. } => Some(text.trim_end().ends_with(summary)),
            Item::Status { .. } | Item::Changes { .. } => None,
            _ => Some(false),
        }) == Some(true)
    }

    /// The item of a permission request, creating a card when a decision arrives for an
    /// unknown one (a snapshot that starts after the request).
    fn permission_index(&mut self, request_id: &str) -> usize {
        if let Some(&i) = self.permissions.get(request_id) {
            return i;
        }
        let i = self.items.len();
        self.permissions.insert(request_id.to_string(), i);
        self.items.push(Rc::new(Item::Permission(PermissionCall {
            request_id: request_id.to_string(),
            tool_name: "tool".into(),
            input: Value::Null,
            description: None,
            decision: None,
        })));
        i
    }

    /// Marks the running tool card a new request asks about as waiting for the decision: the
    /// card with the same tool and input, else the newest running card of that tool.
    fn hold_tool(&mut self, request_id: String, tool_name: &str, input: &Value) {
        let held: Vec<usize> = self.held_tools.values().copied().collect();
        let running = |i: &usize| !held.contains(i);
        let card = |exact: bool| {
            self.tools
                .values()
                .copied()
                .filter(running)
                .filter(|&i| match self.items[i].as_ref() {
                    Item::Tool(call) if exact => call.asked_by(tool_name, input),
                    Item::Tool(call) => call.is_running() && call.tool_name == tool_name,
                    _ => false,
                })
                .max()
        };
        let Some(i) = card(true).or_else(|| card(false)) else { return };
        if let Item::Tool(call) = Rc::make_mut(&mut self.items[i]) {
            call.awaiting_permission = true;
        }
        self.held_tools.insert(request_id, i);
    }

    /// The item of a tool, creating a card when progress or output arrives for an unknown tool.
    fn tool_index(&mut self, tool_id: &str) -> usize {
        if let Some(&i) = self.tools.get(tool_id) {
            return i;
        }
        let i = self.items.len();
        self.tools.insert(tool_id.to_string(), i);
        self.items.push(Rc::new(Item::Tool(ToolCall {
            tool_id: tool_id.to_string(),
            tool_name: "tool".into(),
            params: Value::Null,
            elapsed_secs: None,
            output: None,
            is_error: false,
            awaiting_permission: false,
        })));
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(text: &str) -> TaskEvent {
        TaskEvent::Chunk { text: text.into(), stream: ChunkStream::Assistant }
    }

    fn texts(t: &Transcript) -> Vec<String> {
        t.items
            .iter()
            .map(|i| match i.as_ref() {
                Item::Message { text, .. } => format!("msg:{text}"),
                Item::Tool(c) if c.awaiting_permission => format!("tool:{}:asking", c.tool_name),
                Item::Tool(c) => format!("tool:{}:{}", c.tool_name, c.output.as_deref().unwrap_or("…")),
                Item::Status { status, .. } => format!("status:{}", status.as_str()),
                Item::Done { summary } => format!("done:{}", summary.as_deref().unwrap_or("-")),
                Item::Changes { files, truncated, .. } => format!("changes:{}:{truncated}", files.len()),
                Item::Error { error } => format!("error:{error}"),
                Item::UserMessage { text } => format!("you:{text}"),
                Item::Permission(p) => {
                    format!("perm:{}:{}", p.tool_name, p.decision.as_ref().map_or("pending", |d| d.behavior.as_str()))
                }
                Item::Runner { failed, message } => {
                    format!("runner:{}:{message}", if *failed { "failed" } else { "ok" })
                }
            })
            .collect()
    }

    #[test]
    fn every_kind_becomes_an_item() {
        let events = vec![
            TaskEvent::Status { status: TaskStatus::Running, model: Some("m".into()), session_id: None },
            chunk("Hello "),
            chunk("world"),
            TaskEvent::ToolStart { tool_id: "t1".into(), tool_name: "Bash".into(), params: json!({"command": "ls"}) },
            TaskEvent::ToolProgress { tool_id: "t1".into(), elapsed_secs: 2.0 },
            TaskEvent::ToolDone { tool_id: "t1".into(), output: "a b".into(), is_error: false },
            TaskEvent::Chunk { text: "out\n".into(), stream: ChunkStream::Stdout },
            TaskEvent::Chunk { text: "err\n".into(), stream: ChunkStream::Stderr },
            chunk("Done."),
            TaskEvent::Usage { input_tokens: 10, output_tokens: 5, total_cost_usd: 0.01 },
            TaskEvent::Done { summary: "ok".into() },
            TaskEvent::Error { error: "boom".into() },
        ];
        let t = Transcript::from_events(
            events.into_iter().enumerate().map(|(i, event)| SeqEvent { seq: i as u64 + 1, event }),
        );
        assert_eq!(
            texts(&t),
            [
                "status:running",
                "msg:Hello world",
                "tool:Bash:a b",
                "msg:out\n",
                "msg:err\n",
                "msg:Done.",
                "done:ok",
                "error:boom"
            ]
        );
        assert_eq!(t.usage.unwrap().output_tokens, 5);
        assert_eq!(t.last_seq, 12);
        assert_eq!(t.event_count, 12);
    }

    #[test]
    fn duplicates_are_ignored_and_gaps_wait() {
        let mut t = Transcript::default();
        assert!(t.apply(1, chunk("a")));
        assert!(!t.apply(1, chunk("a")));
        assert!(!t.apply(3, chunk("c")));
        assert_eq!(texts(&t), ["msg:a"]);
        assert!(t.apply(2, chunk("b")));
        assert_eq!(texts(&t), ["msg:abc"]);
        assert_eq!(t.pending_len(), 0);
        assert!(!t.apply(2, chunk("b")));
        assert_eq!(t.last_seq, 3);
    }

    #[test]
    fn snapshot_may_start_late_and_be_unsorted() {
        let t = Transcript::from_events(vec![
            SeqEvent { seq: 7, event: chunk("y") },
            SeqEvent { seq: 6, event: chunk("x") },
            SeqEvent { seq: 7, event: chunk("y") },
        ]);
        assert_eq!(texts(&t), ["msg:xy"]);
        assert_eq!(t.last_seq, 7);
    }

    #[test]
    fn ten_thousand_chunks_stay_one_item() {
        let mut t = Transcript::default();
        for seq in 1..=10_000 {
            t.apply(seq, chunk("word "));
        }
        assert_eq!(t.items.len(), 1);
        assert_eq!(t.event_count, 10_000);
    }

    fn event(kind: serde_json::Value) -> TaskEvent {
        serde_json::from_value(kind).unwrap()
    }

    fn run(events: Vec<TaskEvent>) -> Transcript {
        Transcript::from_events(events.into_iter().enumerate().map(|(i, event)| SeqEvent { seq: i as u64 + 1, event }))
    }

    #[test]
    fn terminal_output_comes_in_blocks_of_whole_lines() {
        let mut t = Transcript::default();
        let mut seq = 0;
        // 450 lines, some chunks holding several lines and one line cut across two chunks.
        for n in 0..150 {
            seq += 1;
            t.apply(seq, TaskEvent::Chunk { text: format!("a{n}\nb{n}\nc"), stream: ChunkStream::Stdout });
            seq += 1;
            t.apply(seq, TaskEvent::Chunk { text: format!("{n}\n"), stream: ChunkStream::Stdout });
        }
        let blocks: Vec<&str> = t
            .items
            .iter()
            .map(|i| match i.as_ref() {
                Item::Message { text, .. } => text.as_str(),
                _ => panic!("only output"),
            })
            .collect();
        assert_eq!(blocks.iter().map(|b| b.lines().count()).collect::<Vec<_>>(), [200, 200, 50]);
        assert!(blocks.iter().all(|b| b.ends_with('\n')), "blocks end at line ends");
        let all: String = blocks.concat();
        assert_eq!(all.lines().count(), 450);
        assert!(all.starts_with("a0\nb0\nc0\na1\n"));
        assert!(all.ends_with("b149\nc149\n"));
        // One big chunk is cut too; stderr and assistant text are blocks of their own.
        t.apply(seq + 1, TaskEvent::Chunk { text: "x\n".repeat(401), stream: ChunkStream::Stdout });
        t.apply(seq + 2, TaskEvent::Chunk { text: "oops\n".into(), stream: ChunkStream::Stderr });
        t.apply(seq + 3, chunk(&"prose\n".repeat(300)));
        // The 401 lines fill the third block (150), a fourth (200) and start a fifth (51).
        assert_eq!(t.items.len(), 5 + 1 + 1);
        assert!(texts(&t)[2].ends_with(&format!("c149\n{}", "x\n".repeat(150))));
        assert_eq!(texts(&t)[3], format!("msg:{}", "x\n".repeat(200)));
        assert_eq!(texts(&t)[4], format!("msg:{}", "x\n".repeat(51)));
    }

    #[test]
    fn the_done_block_says_what_the_transcript_does_not() {
        // The summary is the last message: not repeated; the completed status is not a second line.
        let t = run(vec![
            event(json!({"kind": "status", "status": "running"})),
            chunk("Done: the repo has a README."),
            event(json!({"kind": "done", "summary": "Done: the repo has a README."})),
            event(json!({"kind": "status", "status": "completed"})),
        ]);
        assert_eq!(texts(&t), ["status:running", "msg:Done: the repo has a README.", "done:-"]);
        assert_eq!(t.status, Some(TaskStatus::Completed));
        // A shell task's summary is its last output line; its diff and status may come between.
        let t = run(vec![
            TaskEvent::Chunk { text: "one\nlast line\n".into(), stream: ChunkStream::Stdout },
            event(json!({"kind": "diff", "files": [], "patch": "", "truncated": false})),
            event(json!({"kind": "status", "status": "completed"})),
            event(json!({"kind": "done", "summary": "last line"})),
        ]);
        assert_eq!(texts(&t), ["msg:one\nlast line\n", "changes:0:false", "done:-"]);
        // A summary that says something new is kept; a failure is said once.
        let t = run(vec![
            chunk("Working."),
            event(json!({"kind": "done", "summary": "Added a README."})),
            event(json!({"kind": "error", "error": "exit 1"})),
            event(json!({"kind": "status", "status": "failed"})),
        ]);
        assert_eq!(texts(&t), ["msg:Working.", "done:Added a README.", "error:exit 1"]);
    }

    #[test]
    fn a_diff_becomes_the_changes_item() {
        let t = run(vec![event(json!({
            "kind": "diff",
            "files": [
                {"path": "README.md", "status": "modified", "additions": 2, "deletions": 1},
                {"path": "logo.png", "status": "added", "additions": 0, "deletions": 0, "binary": true}
            ],
            "patch": "diff --git a/README.md b/README.md\n",
            "truncated": true
        }))]);
        assert_eq!(texts(&t), ["changes:2:true"]);
    }

    #[test]
    fn progress_for_an_unknown_tool_makes_a_card() {
        let mut t = Transcript::default();
        t.apply(1, TaskEvent::ToolProgress { tool_id: "x".into(), elapsed_secs: 1.5 });
        let Item::Tool(call) = t.items[0].as_ref() else { panic!() };
        assert!(call.is_running());
        assert_eq!(call.elapsed_secs, Some(1.5));
    }

    #[test]
    fn headline_picks_the_telling_parameter() {
        let call = ToolCall {
            tool_id: "t".into(),
            tool_name: "Bash".into(),
            params: json!({"timeout": 5, "command": "cargo test\n--all"}),
            elapsed_secs: None,
            output: None,
            is_error: false,
            awaiting_permission: false,
        };
        assert_eq!(call.headline(), "cargo test");
    }

    fn request(id: &str) -> TaskEvent {
        TaskEvent::PermissionRequest {
            request_id: id.into(),
            tool_name: "Bash".into(),
            input: json!({"command": "touch x"}),
            description: None,
            suggestions: None,
        }
    }

    fn decision(id: &str, behavior: Behavior) -> TaskEvent {
        TaskEvent::PermissionDecision {
            request_id: id.into(),
            behavior,
            message: None,
            updated_input: None,
            decided_by: DecidedBy::Owner,
        }
    }

    #[test]
    fn a_decision_settles_its_request_in_place() {
        let mut t = Transcript::default();
        t.apply(1, TaskEvent::UserMessage { text: "make a file".into() });
        t.apply(2, request("r1"));
        t.apply(3, request("r2"));
        assert_eq!(texts(&t), ["you:make a file", "perm:Bash:pending", "perm:Bash:pending"]);
        assert!(t.has_user_message());
        assert_eq!(t.undecided_requests().count(), 2);
        t.apply(4, decision("r1", Behavior::Allow));
        t.apply(5, request("r1")); // re-announced after a dropped link: still decided
        assert_eq!(texts(&t), ["you:make a file", "perm:Bash:allow", "perm:Bash:pending"]);
        let ids: Vec<&str> = t.undecided_requests().map(|p| p.request_id.as_str()).collect();
        assert_eq!(ids, ["r2"]);
        // A decision for a request the snapshot did not hold still shows as a settled card.
        t.apply(6, decision("r9", Behavior::Deny));
        assert_eq!(texts(&t).last().unwrap(), "perm:tool:deny");
    }

    #[test]
    fn pending_means_undecided_and_the_task_not_ended() {
        let Item::Permission(call) =
            Transcript::from_events([SeqEvent { seq: 1, event: request("r") }]).items[0].as_ref().clone()
        else {
            panic!()
        };
        let cases = [
            (None, true),
            (Some(TaskStatus::Waiting), true),
            (Some(TaskStatus::Running), true),
            (Some(TaskStatus::Completed), false),
            (Some(TaskStatus::Cancelled), false),
            (Some(TaskStatus::Interrupted), false),
        ];
        for (status, want) in cases {
            assert_eq!(call.is_pending(status), want, "{status:?}");
        }
        let decided = PermissionCall {
            decision: Some(Decision {
                behavior: Behavior::Deny,
                message: None,
                updated_input: None,
                decided_by: DecidedBy::Timeout,
            }),
            ..call
        };
        assert!(!decided.is_pending(Some(TaskStatus::Waiting)));
    }

    /// Issue 22: a task that failed before it ran (no Claude CLI) kept a "queued" line.
    #[test]
    fn the_queued_line_gives_way_to_the_next_status() {
        let t = run(vec![
            event(json!({"kind": "status", "status": "queued"})),
            event(json!({"kind": "error", "error": "Claude Code CLI not found (`claude`)"})),
            event(json!({"kind": "status", "status": "failed"})),
        ]);
        assert_eq!(texts(&t), ["status:failed", "error:Claude Code CLI not found (`claude`)"]);
        let t = run(vec![
            event(json!({"kind": "status", "status": "queued"})),
            event(json!({"kind": "user_message", "text": "go"})),
            event(json!({"kind": "status", "status": "running", "model": "m"})),
            event(json!({"kind": "status", "status": "waiting"})),
        ]);
        assert_eq!(texts(&t), ["status:running", "you:go", "status:waiting"]);
    }

    /// Issue 22: a Bash card showed a running spinner while its call only waited for a decision.
    #[test]
    fn a_tool_call_waiting_for_permission_is_not_running() {
        let start = TaskEvent::ToolStart {
            tool_id: "t1".into(),
            tool_name: "Bash".into(),
            params: json!({"command": "touch x"}),
        };
        // The card first, then the request; and the other way round.
        for events in [vec![start.clone(), request("r1")], vec![request("r1"), start.clone()]] {
            let mut t = run(events);
            assert_eq!(texts(&t).iter().filter(|x| x.as_str() == "tool:Bash:asking").count(), 1, "{:?}", texts(&t));
            t.apply(3, decision("r1", Behavior::Allow));
            assert!(texts(&t).contains(&"tool:Bash:…".to_string()), "{:?}", texts(&t));
            t.apply(4, TaskEvent::ToolDone { tool_id: "t1".into(), output: "ok".into(), is_error: false });
            assert!(texts(&t).contains(&"tool:Bash:ok".to_string()));
        }
        // Another tool's card keeps running.
        let t = run(vec![
            TaskEvent::ToolStart { tool_id: "t0".into(), tool_name: "Read".into(), params: json!({"file_path": "a"}) },
            start,
            request("r1"),
        ]);
        assert_eq!(texts(&t)[..2], ["tool:Read:…", "tool:Bash:asking"]);
    }

    /// Issue 22: a container run's steps were red like stderr; only a failed step is.
    #[test]
    fn container_steps_are_lines_of_their_own() {
        let t = run(vec![
            event(json!({"kind": "runner", "step": "cloning", "message": "cloning x"})),
            TaskEvent::Chunk { text: "out\n".into(), stream: ChunkStream::Stderr },
            event(json!({"kind": "runner", "step": "failed", "message": "exit 1", "exitCode": 1})),
        ]);
        assert_eq!(texts(&t), ["runner:ok:cloning x", "msg:out\n", "runner:failed:exit 1"]);
    }

    #[test]
    fn a_long_gap_is_eventually_accepted() {
        let mut t = Transcript::default();
        t.apply(1, chunk("a"));
        for seq in 3..(3 + MAX_PENDING as u64 + 1) {
            t.apply(seq, chunk("."));
        }
        assert_eq!(t.pending_len(), 0);
        assert!(t.last_seq > 3);
    }
}
