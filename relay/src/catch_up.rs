//! Catching up instead of closing: a viewer of a transcript (`task:` and `hud:` topics) whose
//! queue is full is fed from the store, by `seq`, until it is live again (issue 26).
//!
//! A viewer whose queue cannot take a frame falls *behind*: from then on the hub queues
//! nothing live for it. For each transcript it notes the last seq it queued and the highest
//! published; changes of latest state (a task's status, the repo) are held, the newest per
//! stream, each with the seqs published before it. A catch-up task, one per viewer that is
//! behind, waits until the viewer's queue is at most half full, reads the next page of the
//! transcript from the store (never past the highest seq published, so nothing is read that
//! will also come live), queues it, and releases each held change once the seqs published
//! before it are queued. When nothing is left it sets the viewer live again; the switch and
//! every frame the hub hands over meanwhile go through one small lock, so no frame falls
//! between the store and the live stream, none comes twice, and the order of the transcript
//! and of the changes around it is the order they were published in.
//!
//! A viewer that stays behind (its queue does not drain for `viewer_catchup_ms`) is closed
//! with 4001. Memory per viewer stays bounded: the queue's bounds, a seq pair per transcript
//! and at most [`MAX_HELD`] held changes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::hub::{Position, TRANSCRIPT_PREFIX};
use crate::metrics::Metrics;
use crate::socket::{Closer, Frame, QueueError, QueueTx};

/// Reads a task's transcript from the store as one topic's frames: the events after `after`
/// (at most `limit`, contiguous, in order), each with its seq.
pub type TranscriptReader =
    Arc<dyn Fn(String, u64, u32) -> BoxFuture<'static, Result<Vec<(u64, Frame)>, String>> + Send + Sync>;

/// Held changes per viewer at most; one more closes it with 4001 (changes are held newest per
/// stream, and a transcript topic has a handful of streams).
pub const MAX_HELD: usize = 64;
/// Events read from the store at once.
const PAGE: usize = 512;

/// One subscription's means to catch up (see the module header). Cheap to clone; when the
/// last clone held by the hub is dropped (the subscription ended), its catch-up task stops.
#[derive(Clone)]
pub struct CatchUp {
    reader: TranscriptReader,
    /// Where catch-up tasks run: the runtime the subscription was made on (a publisher may be
    /// any thread).
    runtime: Option<tokio::runtime::Handle>,
    deadline: Duration,
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp").field("live", &self.is_live()).finish_non_exhaustive()
    }
}

struct Shared {
    /// False while behind: then every frame goes through `behind`.
    live: AtomicBool,
    behind: Mutex<Behind>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[derive(Default)]
struct Behind {
    /// Per transcript stream: the last seq queued for the viewer and the highest published.
    streams: HashMap<String, (u64, u64)>,
    /// Changes published while behind, in order.
    held: VecDeque<Held>,
    /// Whether the catch-up task runs.
    running: bool,
}

/// A change published while the viewer was behind.
struct Held {
    /// Its stream (a newer change of the same stream replaces it).
    stream: String,
    frame: Frame,
    /// The highest seq of each transcript published before it: queued before it.
    before: Vec<(String, u64)>,
}

impl Held {
    /// The seq of `stream` that must be queued before this change, if not yet.
    fn waits_for(&self, stream: &str) -> Option<u64> {
        self.before.iter().find(|(s, _)| s == stream).map(|(_, seq)| *seq)
    }
}

/// Where a viewer's frames go: its queue, its closer.
#[derive(Clone)]
pub struct Target {
    pub tx: QueueTx,
    pub closer: Arc<Closer>,
    pub metrics: Arc<Metrics>,
}

impl CatchUp {
    /// `deadline`: how long the viewer's queue may stay full while it is behind before it is
    /// closed with 4001. Made on a tokio runtime (without one, a full queue closes the viewer).
    pub fn new(reader: TranscriptReader, deadline: Duration) -> CatchUp {
        let stop = CancellationToken::new();
        CatchUp {
            reader,
            runtime: tokio::runtime::Handle::try_current().ok(),
            deadline,
            shared: Arc::new(Shared {
                live: AtomicBool::new(true),
                behind: Mutex::new(Behind::default()),
                stop: stop.clone(),
            }),
            _stop: Arc::new(StopOnDrop(stop)),
        }
    }

    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Behind> {
        self.shared.lock()
    }

    /// Queues a published frame for a live viewer, or keeps what a viewer that is (or now
    /// falls) behind needs to catch up. False when the viewer must be closed as too slow: a
    /// frame with no position cannot be caught up, nor can more than [`MAX_HELD`] changes.
    ///
    /// `target` is called only when a catch-up task must start (the live path builds nothing).
    pub fn accept(
        &self,
        tx: &QueueTx,
        frame: Frame,
        position: Option<&Position>,
        target: impl FnOnce() -> Target,
    ) -> bool {
        if self.is_live() {
            match tx.try_send(frame.clone()) {
                Ok(()) => return true,
                Err(QueueError::Closed) => return false,
                Err(QueueError::Full) => {}
            }
        }
        let mut behind = self.lock();
        // Live again meanwhile (the catch-up task finished), or still live after a full
        // queue: one more try, then behind.
        if self.is_live() {
            match tx.try_send(frame.clone()) {
                Ok(()) => return true,
                Err(QueueError::Closed) => return false,
                Err(QueueError::Full) => self.shared.live.store(false, Ordering::Release),
            }
        }
        let kept = match position {
            Some(Position::Seq { stream, seq }) => {
                let entry =
                    behind.streams.entry(stream.clone()).or_insert((seq.saturating_sub(1), seq.saturating_sub(1)));
                entry.1 = entry.1.max(*seq);
                true
            }
            Some(Position::Change { stream, .. }) => {
                behind.held.retain(|held| held.stream != *stream);
                if behind.held.len() >= MAX_HELD {
                    false
                } else {
                    let before = behind
                        .streams
                        .iter()
                        .filter(|(_, (queued, published))| queued < published)
                        .map(|(s, (_, published))| (s.clone(), *published))
                        .collect();
                    behind.held.push_back(Held { stream: stream.clone(), frame, before });
                    true
                }
            }
            None => false,
        };
        kept && self.ensure_running(&mut behind, target)
    }

    /// A frame published while the viewer's snapshot was read, over what may be held then: the
    /// viewer starts behind, from what its snapshot holds (see [`CatchUp::start_from`]).
    pub fn behind_before_snapshot(&self, stream: &str, seq: u64) {
        self.shared.live.store(false, Ordering::Release);
        let mut behind = self.lock();
        let entry = behind.streams.entry(stream.to_string()).or_insert((0, 0));
        entry.1 = entry.1.max(seq);
    }

    /// After the snapshot of a viewer that started behind was queued: each transcript continues
    /// after the seq its snapshot holds. False when the catch-up cannot start.
    pub fn start_from(&self, snapshot_seqs: &HashMap<String, u64>, target: impl FnOnce() -> Target) -> bool {
        if self.is_live() {
            return true;
        }
        let mut behind = self.lock();
        for (stream, (queued, _)) in behind.streams.iter_mut() {
            *queued = (*queued).max(snapshot_seqs.get(stream).copied().unwrap_or(0));
        }
        self.ensure_running(&mut behind, target)
    }

    fn ensure_running(&self, behind: &mut Behind, target: impl FnOnce() -> Target) -> bool {
        if behind.running {
            return true;
        }
        let Some(runtime) = &self.runtime else { return false };
        behind.running = true;
        runtime.spawn(self.clone_for_task().run(target()));
        true
    }

    /// The task's own handle: it must not keep the subscription's stop guard alive.
    fn clone_for_task(&self) -> TaskHandle {
        TaskHandle { reader: self.reader.clone(), deadline: self.deadline, shared: self.shared.clone() }
    }
}

/// What a catch-up task holds (see [`CatchUp::clone_for_task`]).
struct TaskHandle {
    reader: TranscriptReader,
    deadline: Duration,
    shared: Arc<Shared>,
}

/// The next thing a catch-up task does.
enum Step {
    Read {
        stream: String,
        after: u64,
        limit: usize,
    },
    /// Wait for a release (held changes are due but did not fit), counted from this one.
    Wait(u64),
    Live,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Behind> {
        self.behind.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TaskHandle {
    fn lock(&self) -> MutexGuard<'_, Behind> {
        self.shared.lock()
    }

    async fn run(self, target: Target) {
        let too_slow = |metrics: &Metrics| {
            metrics.queue_drops.fetch_add(1, Ordering::Relaxed);
            target.closer.close(flightdeck_protocol::close::TOO_SLOW);
        };
        target.metrics.catch_ups.fetch_add(1, Ordering::Relaxed);
        // After a frame did not fit: the writer's releases counted then.
        let mut full: Option<u64> = None;
        loop {
            // Room: the queue at most half full; after a frame did not fit, first a release.
            let room = async {
                if let Some(seen) = full.take() {
                    target.tx.released_since(seen).await;
                }
                target.tx.wait_room().await
            };
            let room = tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => return,
                _ = target.closer.closed() => return,
                room = tokio::time::timeout(self.deadline, room) => match room {
                    Ok(room) => room,
                    Err(_) => return too_slow(&target.metrics),
                },
            };
            let step = {
                let mut behind = self.lock();
                let releases = target.tx.releases();
                match self.release_due(&mut behind, &target.tx) {
                    Err(QueueError::Closed) => return,
                    Err(QueueError::Full) => Step::Wait(releases),
                    Ok(()) => match behind.streams.iter().find(|(_, (queued, published))| queued < published) {
                        Some((stream, (queued, published))) => {
                            // Not past the next held change's place in the transcript: it goes
                            // between the seqs it was published between.
                            let upto = behind.held.front().and_then(|h| h.waits_for(stream)).unwrap_or(*published);
                            let upto = upto.min(*published).max(queued + 1);
                            Step::Read {
                                stream: stream.clone(),
                                after: *queued,
                                limit: room.min(PAGE).min((upto - queued) as usize),
                            }
                        }
                        None => {
                            // Every seq published is queued and every held change released:
                            // from here the hub queues live again.
                            behind.streams.clear();
                            behind.running = false;
                            self.shared.live.store(true, Ordering::Release);
                            Step::Live
                        }
                    },
                }
            };
            let (stream, after, limit) = match step {
                Step::Live => return,
                Step::Wait(releases) => {
                    full = Some(releases);
                    continue;
                }
                Step::Read { stream, after, limit } => (stream, after, limit),
            };
            let task_id = stream.strip_prefix(TRANSCRIPT_PREFIX).unwrap_or(&stream).to_string();
            let read = tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => return,
                _ = target.closer.closed() => return,
                read = (self.reader)(task_id, after, limit as u32) => read,
            };
            let frames = match read {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::warn!(error = %e, "a viewer's catch-up could not read the transcript");
                    target.closer.close(flightdeck_protocol::close::INTERNAL);
                    return;
                }
            };
            let mut behind = self.lock();
            let releases = target.tx.releases();
            let Some(entry) = behind.streams.get_mut(&stream) else { continue };
            if frames.is_empty() {
                // Published means stored; a transcript that is gone (its task deleted) has
                // nothing more to give.
                entry.0 = entry.1;
                continue;
            }
            for (seq, frame) in frames {
                if seq <= entry.0 {
                    continue;
                }
                if seq > entry.1 {
                    break;
                }
                match target.tx.try_send(frame) {
                    Ok(()) => entry.0 = seq,
                    Err(QueueError::Full) => {
                        full = Some(releases);
                        break;
                    }
                    Err(QueueError::Closed) => return,
                }
            }
        }
    }

    /// Queues the held changes whose earlier seqs are all queued, in order.
    fn release_due(&self, behind: &mut Behind, tx: &QueueTx) -> Result<(), QueueError> {
        while let Some(held) = behind.held.front() {
            let due = held.before.iter().all(|(s, seq)| behind.streams.get(s).is_none_or(|(queued, _)| queued >= seq));
            if !due {
                break;
            }
            tx.try_send(held.frame.clone())?;
            behind.held.pop_front();
        }
        Ok(())
    }
}
