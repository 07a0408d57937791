//! Redaction of a task's events as streams of text, not one chunk at a time.
//!
//! The text of each chunk stream (`assistant`, `stdout`, `stderr`) is one continuous text; a
//! secret in it is found wherever the chunks cut it. For that a chunk may be *held*: it leaves
//! only once what follows it decides it. Events go out in `seq` order, one out per one in.
//!
//! # The hold rule
//! A chunk is held while the text of its stream, from some position in the chunk (or earlier on
//! the same line) to the end, could still be the beginning of a secret: the lazy DFA of every
//! pattern, started there, is still alive after the last byte (and a match that ended there
//! could still grow). It is released as soon as one of these comes first:
//! - the next chunk of the same stream decides it (the secret completes, or the text stops
//!   looking like one);
//! - an event other than a chunk or `tool_progress` arrives: it ends every stream's text (a
//!   secret does not continue across a tool call, a result or the end of the task);
//! - its deadline, `hold` after it arrived ([`StreamRedactor::flush_due`]);
//! - [`StreamRedactor::finish`].
//!
//! No single-line pattern contains a newline, so a chunk that ends with one is never held, except
//! inside a private key block. Inside a block every byte is masked whatever comes next, so
//! those chunks are not held either: the block's chunks go out at once as nothing, its first
//! one as `[REDACTED:private-key]`, until its `END` line (found even when cut across chunks).
//! Everything after a held event waits for it (bounded by its deadline).
//!
//! # What can leave of a secret cut across chunks
//! A secret whose parts arrive before the first part's deadline is masked whole: the chunk where
//! it starts shows `[REDACTED:kind]`, the following ones lose their part of it. When a deadline
//! releases a chunk that ends inside what may be a secret, the possible secret is masked from
//! its start to the end of the chunk as soon as it has passed its *lead* (the part that says a
//! secret follows and is no secret itself: a prefix such as `ghp_` or `sk-ant-`, a label such as
//! `AWS_SECRET=` or `Authorization: Bearer `, a PEM `BEGIN` line; for a `.env` value its first
//! two characters); a chunk ending within the lead goes out as is, and the rest of the secret is
//! masked in the next chunk. So the joined wire text of a stream holds at most a secret's lead,
//! never a byte of its body, whatever the chunking and timing; a text that only looked like the
//! start of a secret when a deadline passed may be masked although it was none.

//!
//! # Use
//! One per task, owned by the task's one writer of events, called off the async threads (with
//! the SQLite write, in `spawn_blocking`): [`StreamRedactor::push`] each recorded event with its
//! `seq` and store what it returns as the wire events; while [`StreamRedactor::deadline`] is
//! `Some`, wake at that instant and call [`StreamRedactor::flush_due`]; when the task ends, call
//! [`StreamRedactor::finish`] (after its last event). [`StreamRedactor::redact_task`] gives the
//! wire copy of the task itself. Held events live only here: a writer that restarts feeds the
//! task's events that have no wire copy yet through a new one, then `finish`es it.
//!
//! Memory per stream: the held chunks (at most `hold` worth) and at most [`MAX_MATCH`] bytes of
//! released text.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{SeqEvent, Task, TaskEvent};
use regex_automata::hybrid::dfa::Cache;

use super::patterns::MAX_MATCH;
use super::{apply, normalize, Redactor, Scan};

/// The bytes of released text kept inside an open private key block, enough for an `END` line
/// cut across chunks.
const PEM_CARRY: usize = 128;

/// Redacts one task's events, in `seq` order, one out per one in (never merged, split or
/// dropped). Owned by the one writer of a task's events; all of it is blocking CPU work.
pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    hold: Duration,
    /// Events not released yet, in `seq` order; the first one is a held chunk.
    queue: VecDeque<Slot>,
    streams: [TextStream; 4],
    /// One lazy DFA cache per pattern set of `redactor` (its `.env` values, the built-ins).
    caches: Vec<Cache>,
    /// A stream's text ended inside a private key block: a `done` summary (the shell's last
    /// stdout line) may be a line of the key.
    ended_in_block: bool,
    /// The last `done` summary and `error`, as recorded and as released, for [`Self::redact_task`].
    summary: Option<(String, String)>,
    error: Option<(String, String)>,
}

struct Slot {
    seq: u64,
    deadline: Instant,
    /// `Some` once final (redacted).
    ready: Option<TaskEvent>,
}

/// What a chunk stream remembers between chunks.
#[derive(Default)]
struct TextStream {
    /// Released text that a secret continuing into the held chunks may have started in: the
    /// current line (at most [`MAX_MATCH`] bytes), or the end of an open private key block.
    carry: String,
    /// The last released byte went out masked (its mask's tag has been sent).
    carry_masked: bool,
    /// The released text ends inside a private key block.
    pem_open: bool,
    /// No secret can start before this offset of `carry` + held text: the DFA died there once,
    /// and more text does not revive it (so each position is looked at about once).
    dead_before: usize,
    held: Vec<Held>,
}

struct Held {
    seq: u64,
    text: String,
    deadline: Instant,
}

/// Why a stream's held chunks are looked at.
#[derive(Clone, Copy)]
enum Decide {
    /// A chunk arrived: release what is decided.
    Push,
    /// Release the chunks whose deadline is at or before this instant, masking what may be a
    /// secret at their end.
    Due(Instant),
    /// The stream's text ended: release everything.
    End,
}

impl StreamRedactor {
    /// How long a chunk may be held by default.
    pub const HOLD: Duration = Duration::from_millis(100);

    /// A redactor for one task; `hold` bounds how long a chunk may be held ([`Self::HOLD`]).
    pub fn new(redactor: Arc<Redactor>, hold: Duration) -> StreamRedactor {
        let caches = redactor.compiled().map(|(c, _)| c.create_cache()).collect();
        StreamRedactor {
            redactor,
            hold,
            queue: VecDeque::new(),
            streams: Default::default(),
            caches,
            ended_in_block: false,
            summary: None,
            error: None,
        }
    }

    /// Feeds the task's next event; returns the events that are now final, redacted, in `seq`
    /// order (possibly none, possibly earlier held ones and this one).
    pub fn push(&mut self, seq: u64, event: TaskEvent, now: Instant) -> Vec<SeqEvent> {
        let deadline = now + self.hold;
        match event {
            TaskEvent::Chunk { text, stream } => {
                let which = index(stream);
                self.streams[which].held.push(Held { seq, text, deadline });
                self.queue.push_back(Slot { seq, deadline, ready: None });
                self.decide(which, Decide::Push);
            }
            TaskEvent::ToolProgress { .. } => self.queue.push_back(Slot { seq, deadline, ready: Some(event) }),
            event => {
                for which in 0..self.streams.len() {
                    self.ended_in_block |= self.decide(which, Decide::End);
                }
                let redacted = match &event {
                    TaskEvent::Done { summary } if self.ended_in_block => {
                        TaskEvent::Done { summary: self.redactor.redact_inside_block(summary) }
                    }
                    event => self.redactor.redact_event(event),
                };
                match (&event, &redacted) {
                    (TaskEvent::Done { summary }, TaskEvent::Done { summary: wire }) => {
                        self.summary = Some((summary.clone(), wire.clone()));
                    }
                    (TaskEvent::Error { error }, TaskEvent::Error { error: wire }) => {
                        self.error = Some((error.clone(), wire.clone()));
                    }
                    _ => {}
                }
                self.queue.push_back(Slot { seq, deadline, ready: Some(redacted) });
            }
        }
        self.release()
    }

    /// When the first held event must be released at the latest (`None`: nothing is held).
    pub fn deadline(&self) -> Option<Instant> {
        self.queue.front().map(|slot| slot.deadline)
    }

    /// Releases the held events whose deadline is at or before `now` (and what waited for them).
    pub fn flush_due(&mut self, now: Instant) -> Vec<SeqEvent> {
        for which in 0..self.streams.len() {
            self.decide(which, Decide::Due(now));
        }
        self.release()
    }

    /// Releases everything (the task ended).
    pub fn finish(&mut self) -> Vec<SeqEvent> {
        for which in 0..self.streams.len() {
            self.ended_in_block |= self.decide(which, Decide::End);
        }
        self.release()
    }

    /// A copy of the task with its free text redacted as [`Redactor::redact_task`] does, except
    /// that a `summary` or `error` equal to the one this task's `done` or `error` event carried
    /// gets that event's released text: the two never disagree, and a shell summary that is a
    /// line of a private key printed before it is masked here too.
    pub fn redact_task(&self, task: &Task) -> Task {
        let released = |text: &Option<String>, seen: &Option<(String, String)>| match (text, seen) {
            (Some(text), Some((recorded, wire))) if text == recorded => Some(wire.clone()),
            _ => None,
        };
        let mut out = self.redactor.redact_task(task);
        if let Some(summary) = released(&task.summary, &self.summary) {
            out.summary = Some(summary);
        }
        if let Some(error) = released(&task.error, &self.error) {
            out.error = Some(error);
        }
        out
    }

    /// The final events at the front of the queue.
    fn release(&mut self) -> Vec<SeqEvent> {
        let mut out = Vec::new();
        while let Some(event) = self.queue.front_mut().and_then(|slot| slot.ready.take()) {
            let slot = self.queue.pop_front().expect("the front slot exists");
            out.push(SeqEvent { seq: slot.seq, event });
        }
        out
    }

    /// Releases what `why` allows of stream `which`'s held chunks. Returns whether the stream's
    /// text now ends inside a private key block.
    fn decide(&mut self, which: usize, why: Decide) -> bool {
        let stream = &mut self.streams[which];
        if stream.held.is_empty() {
            let open = stream.pem_open;
            if matches!(why, Decide::End) {
                *stream = TextStream::default();
            }
            return open;
        }
        // The stream's text: the carried released part, then each held chunk.
        let mut text = stream.carry.clone();
        let mut bounds = Vec::with_capacity(stream.held.len());
        for held in &stream.held {
            let start = text.len();
            text.push_str(&held.text);
            bounds.push((start, text.len()));
        }
        let scan = self.redactor.scan(&text, stream.pem_open);
        let open_block = scan.blocks.last().is_some_and(|(_, end)| end.is_none());
        let mut spans = scan.spans.clone();
        let mut dead_before = stream.dead_before;
        let count = match why {
            Decide::End => stream.held.len(),
            Decide::Push => {
                let undecided = if open_block {
                    None
                } else {
                    first_viable(&self.redactor, &mut self.caches, &text, &scan, dead_before)
                };
                dead_before = undecided.unwrap_or(text.len());
                bounds.iter().take_while(|(_, end)| undecided.is_none_or(|u| *end <= u)).count()
            }
            Decide::Due(now) => {
                let due = stream.held.iter().take_while(|h| h.deadline <= now).count();
                if due > 0 && !open_block {
                    let undecided = first_viable(&self.redactor, &mut self.caches, &text, &scan, dead_before);
                    dead_before = undecided.unwrap_or(text.len());
                    if let Some(from) = undecided {
                        spans = partial_spans(&self.redactor, &mut self.caches, &text, from, spans);
                    }
                }
                due
            }
        };
        if count == 0 {
            stream.dead_before = dead_before;
            return open_block;
        }
        let mut masked = stream.carry_masked;
        for (held, (start, end)) in stream.held.iter().zip(&bounds).take(count) {
            let (out, ends_masked) = apply(&text, &spans, *start, *end, masked);
            masked = ends_masked;
            let chunk = TaskEvent::Chunk { text: out, stream: chunk_stream(which) };
            if let Some(slot) = self.queue.iter_mut().find(|slot| slot.seq == held.seq) {
                slot.ready = Some(chunk);
            }
        }
        stream.held.drain(..count);
        if matches!(why, Decide::End) {
            *stream = TextStream::default();
            return open_block;
        }
        let released = bounds[count - 1].1;
        stream.carry_masked = masked;
        let block = scan.blocks.iter().find(|(start, end)| *start < released && end.is_none_or(|e| e > released));
        stream.pem_open = block.is_some();
        let from = match block {
            Some((start, _)) => (*start).max(released.saturating_sub(PEM_CARRY)),
            None => context_start(&text, &scan, released),
        };
        let from = floor_char_boundary(&text, from);
        stream.carry = text[from..released].to_string();
        stream.dead_before = dead_before.saturating_sub(from);
        open_block
    }
}

/// Where a secret that reaches `end` could have started at the earliest: the start of the line,
/// after the last private key block that ended before it, and at most [`MAX_MATCH`] back.
fn context_start(text: &str, scan: &Scan, end: usize) -> usize {
    let line = text[..end].rfind('\n').map_or(0, |i| i + 1);
    let block = scan.blocks.iter().filter_map(|(_, e)| *e).filter(|e| *e <= end).max().unwrap_or(0);
    line.max(block).max(end.saturating_sub(MAX_MATCH))
}

/// The first position from which the end of `text` could still be the beginning of a secret.
/// Positions before `dead_before` are known not to be.
fn first_viable(
    redactor: &Redactor,
    caches: &mut [Cache],
    text: &str,
    scan: &Scan,
    dead_before: usize,
) -> Option<usize> {
    let bytes = text.as_bytes();
    let from = context_start(text, scan, text.len()).max(dead_before);
    (from..text.len()).filter(|at| text.is_char_boundary(*at)).find(|at| {
        redactor
            .compiled()
            .zip(caches.iter_mut())
            .any(|((compiled, _), cache)| compiled.viable(cache, bytes, *at, None))
    })
}

/// `spans` plus the masks of every possible secret cut off at the end of `text` (starting at
/// or after `from`) that has passed its lead.
fn partial_spans(
    redactor: &Redactor,
    caches: &mut [Cache],
    text: &str,
    from: usize,
    mut spans: Vec<super::Span>,
) -> Vec<super::Span> {
    let bytes = text.as_bytes();
    for at in (from..text.len()).filter(|at| text.is_char_boundary(*at)) {
        for ((compiled, rank), cache) in redactor.compiled().zip(caches.iter_mut()) {
            if compiled.viable(cache, bytes, at, None) {
                compiled.partial(cache, bytes, at, rank, &mut spans);
            }
        }
    }
    normalize(text, spans)
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn index(stream: ChunkStream) -> usize {
    match stream {
        ChunkStream::Assistant => 0,
        ChunkStream::Stdout => 1,
        ChunkStream::Stderr => 2,
        ChunkStream::Thinking => 3,
    }
}

fn chunk_stream(index: usize) -> ChunkStream {
    [ChunkStream::Assistant, ChunkStream::Stdout, ChunkStream::Stderr, ChunkStream::Thinking][index]
}
