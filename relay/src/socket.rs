//! What agent and viewer sockets share: upgrade limits, the batched writer, close handling and
//! the invalid-frame budget.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::metrics::Metrics;

/// The read buffer of each connection: small, so idle sockets cost little memory.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How much a socket's writer gathers before a write: a busy viewer's batch (see
/// [`write_loop`]) goes out in one syscall. The buffer grows only as far as a batch needs, so
/// an idle viewer pays nothing for it.
pub const WRITE_BUFFER_BYTES: usize = 32 * 1024;
/// Frames written per flush at most, so one busy socket cannot hog its writer forever.
const MAX_BATCH: usize = 512;
/// How long a closing socket may take to get its close frame out to a slow peer.
const CLOSE_LINGER: Duration = Duration::from_secs(10);
/// After the close frame is out, how long the relay keeps reading for the peer's close.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// One serialized text frame, shared by every socket it goes to.
pub type Frame = Utf8Bytes;

/// Asks one socket to close with a code; the first code asked for wins.
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    token: CancellationToken,
}

impl Closer {
    pub fn new() -> Arc<Closer> {
        Arc::new(Closer::default())
    }

    pub fn close(&self, code: u16) {
        let _ = self.code.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    /// The code asked for, once [`Closer::closed`] has fired.
    pub fn code(&self) -> u16 {
        self.code.load(Ordering::SeqCst)
    }

    pub async fn closed(&self) {
        self.token.cancelled().await
    }
}

/// Makes the outbound queue of one socket: at most `max_frames` frames and `max_bytes` bytes
/// waiting or being written.
///
/// Full rule: [`QueueTx::try_send`] refuses a frame that does not fit and the caller closes the
/// socket (4001 for a viewer or an agent), because a publisher never waits for one slow
/// socket. One frame is always accepted into an empty queue, so a snapshot larger than the
/// byte bound still reaches a viewer that keeps up.
pub fn queue(max_frames: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(max_frames.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let releases = Arc::new(AtomicU64::new(0));
    (
        QueueTx { tx, bytes: bytes.clone(), max_bytes, drained: drained.clone(), releases: releases.clone() },
        QueueRx { rx, bytes, drained, releases },
    )
}

/// The sending side of a socket's queue (see [`queue`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueTx {
    tx: mpsc::Sender<Frame>,
    /// Bytes queued or in the writer's current batch: released once written or dropped.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Woken each time the writer releases frames (see [`QueueTx::room`]).
    drained: Arc<Notify>,
    /// Counts those releases.
    releases: Arc<AtomicU64>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Over the frame or byte bound: close the socket as too slow.
    Full,
    /// The socket is gone.
    Closed,
}

impl QueueTx {
    pub fn try_send(&self, frame: Frame) -> Result<(), QueueError> {
        let len = frame.len();
        let before = self.bytes.fetch_add(len, Ordering::SeqCst);
        if before > 0 && before + len > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(QueueError::Full);
        }
        self.tx.try_send(frame).map_err(|e| {
            self.bytes.fetch_sub(len, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }

    /// How many frames may be queued now while the queue stays at most half full, in frames
    /// and in bytes (0 when it is fuller than that). Whoever feeds a queue at its own pace (a
    /// viewer catching up from the store, see `crate::hub`) fills it to half and waits, so the
    /// live frames that follow it still find room.
    pub fn room(&self) -> usize {
        let half_frames = self.tx.max_capacity() / 2;
        if self.bytes.load(Ordering::SeqCst) > self.max_bytes / 2 {
            return 0;
        }
        self.tx.capacity().saturating_sub(half_frames)
    }

    /// How many times the writer has released frames so far (see [`QueueTx::released_since`]).
    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::SeqCst)
    }

    /// Waits until the writer has released frames since [`QueueTx::releases`] said `seen`.
    pub async fn released_since(&self, seen: u64) {
        loop {
            let drained = self.drained.notified();
            if self.releases() != seen {
                return;
            }
            drained.await;
        }
    }

    /// Waits until [`QueueTx::room`] is not 0, and returns it; never returns once the socket
    /// is gone (the caller also waits on its closer).
    pub async fn wait_room(&self) -> usize {
        loop {
            // Made before looking, so a release between the look and the wait is not missed.
            let drained = self.drained.notified();
            let room = self.room();
            if room > 0 {
                return room;
            }
            if self.tx.is_closed() {
                std::future::pending::<()>().await;
            }
            drained.await;
        }
    }
}

/// The writer's side of a socket's queue.
#[derive(Debug)]
pub struct QueueRx {
    rx: mpsc::Receiver<Frame>,
    bytes: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    releases: Arc<AtomicU64>,
}

impl QueueRx {
    /// Takes one queued frame without waiting (the writer takes batches; tests use this).
    pub fn try_recv(&mut self) -> Result<Frame, mpsc::error::TryRecvError> {
        let frame = self.rx.try_recv()?;
        self.release(std::slice::from_ref(&frame));
        Ok(frame)
    }

    fn release(&self, frames: &[Frame]) {
        self.release_bytes(frames.iter().map(|f| f.len()).sum());
    }

    fn release_bytes(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.drained.notify_waiters();
    }

    /// Refuses further frames and frees those still queued (a closing socket sends none).
    fn discard(&mut self) {
        self.rx.close();
        while let Ok(frame) = self.rx.try_recv() {
            self.release(std::slice::from_ref(&frame));
        }
    }
}

/// Applies the frame limits. Tungstenite refuses anything above twice the limit outright; a
/// message between the limit and that is read whole and answered with a clean 1009, so the
/// client sees the close frame rather than a reset.
pub fn configure(ws: WebSocketUpgrade, settings: &Settings) -> WebSocketUpgrade {
    let hard_cap = settings.max_frame_bytes.saturating_mul(2).max(READ_BUFFER_BYTES);
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
}

/// How queued frames become WebSocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One WebSocket message per frame (SPEC 3.4; agents, and viewers that offer nothing).
    OnePerMessage,
    /// The frames of one batch joined by newlines, up to [`MAX_JOINED_BYTES`] a message
    /// (viewers that took `flightdeck-lines`).
    Lines,
}

/// The most bytes of frames joined into one message; a single larger frame goes alone.
const MAX_JOINED_BYTES: usize = 32 * 1024;

/// How [`write_loop`] writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// See [`write_loop`].
    pub coalesce: Duration,
    /// A WebSocket ping at this period (viewers).
    pub ping_every: Option<Duration>,
    pub framing: Framing,
}

/// Writes queued frames in batches (take the queue, feed each, one flush) until the closer
/// fires or the queue ends, then sends the close frame.
///
/// `coalesce` bounds the write rate of a busy socket: a frame arriving less than `coalesce`
/// after the last flush waits out the rest of it, so the frames behind it share one write
/// (one syscall) instead of one each. A socket that was quiet writes at once.
///
/// With `ping_every`, a WebSocket ping goes out at that period (viewers: the reader closes
/// a peer that stays silent, see `realtime`); agents have their own JSON heartbeat.
pub async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: QueueRx,
    closer: Arc<Closer>,
    metrics: Arc<Metrics>,
    options: WriteOptions,
) {
    let WriteOptions { coalesce, ping_every, framing } = options;
    let mut last_flush: Option<tokio::time::Instant> = None;
    let mut pinger = ping_every.map(|every| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        // Everything queued, taken at once (one wake-up and one permit release per batch, not
        // per frame). A fresh Vec each time: an idle socket keeps no batch capacity around.
        let mut batch: Vec<Frame> = Vec::new();
        let ping_due = async {
            match pinger.as_mut() {
                Some(ticker) => {
                    ticker.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            biased;
            _ = closer.closed() => break,
            got = queue.rx.recv_many(&mut batch, MAX_BATCH) => got,
            _ = ping_due => {
                let sent = tokio::select! {
                    biased;
                    _ = closer.closed() => break,
                    sent = sink.send(Message::Ping(Default::default())) => sent,
                };
                if sent.is_err() {
                    closer.close(flightdeck_protocol::close::NORMAL);
                    queue.discard();
                    return;
                }
                continue;
            }
        };
        if got == 0 {
            break;
        }
        if let Some(at) = last_flush.map(|t| t + coalesce).filter(|at| *at > tokio::time::Instant::now()) {
            tokio::select! {
                biased;
                _ = closer.closed() => {
                    queue.release(&batch);
                    break;
                }
                _ = tokio::time::sleep_until(at) => {}
            }
            while batch.len() < MAX_BATCH {
                match queue.rx.try_recv() {
                    Ok(frame) => batch.push(frame),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len() as u64;
        let batch_bytes: usize = batch.iter().map(|f| f.len()).sum();
        let write = async {
            for message in messages(batch, framing) {
                sink.feed(Message::Text(message)).await?;
            }
            sink.flush().await?;
            Ok::<u64, axum::Error>(n)
        };
        // A write blocked on a peer that stopped reading must not keep the close from happening.
        let written = tokio::select! {
            biased;
            _ = closer.closed() => None,
            written = write => Some(written),
        };
        // Written or dropped with the write: either way no longer held for this socket.
        queue.release_bytes(batch_bytes);
        let Some(written) = written else { break };
        match written {
            Ok(n) => {
                last_flush = Some(tokio::time::Instant::now());
                metrics.messages_out.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => {
                closer.close(flightdeck_protocol::close::NORMAL);
                queue.discard();
                return;
            }
        }
    }
    queue.discard();
    let code = match closer.code() {
        0 => flightdeck_protocol::close::NORMAL,
        code => code,
    };
    let frame = CloseFrame { code, reason: flightdeck_protocol::close::reason(code).into() };
    // Frames already handed to the socket stay ahead of the close frame. A peer that reads
    // nothing gets a bounded wait, then the connection is dropped.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// The WebSocket messages of a batch of frames, in order.
fn messages(batch: Vec<Frame>, framing: Framing) -> Vec<Frame> {
    if framing == Framing::OnePerMessage || (batch.len() == 1 && !batch[0].contains('\n')) {
        return batch;
    }
    let mut out = Vec::new();
    let mut joined = String::new();
    for frame in batch {
        if !joined.is_empty() && joined.len() + 1 + frame.len() > MAX_JOINED_BYTES {
            out.push(Frame::from(std::mem::take(&mut joined)));
        }
        if !joined.is_empty() {
            joined.push('\n');
        }
        // A raw newline in valid JSON text can only be whitespace between tokens (inside a
        // string it is escaped): as a space it means the same and does not split the line.
        if frame.contains('\n') {
            joined.push_str(&frame.replace('\n', " "));
        } else {
            joined.push_str(&frame);
        }
    }
    if !joined.is_empty() {
        out.push(Frame::from(joined));
    }
    out
}

/// Ends a connection whose writer is sending (or has sent) its close frame: keeps reading, and
/// dropping, what the peer still sends until the peer closes too, the connection ends, or
/// [`CLOSE_DRAIN`] after the close frame went out.
///
/// Dropping a TCP socket with unread bytes in its receive buffer makes the kernel send a
/// reset, and a peer that is still sending (say, the invalid frames that got it closed with
/// 1008) then loses the close frame in flight. Reading until the peer's close avoids that.
pub async fn finish(mut stream: SplitStream<WebSocket>, writer: tokio::task::JoinHandle<()>) {
    tokio::pin!(writer);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut writer_done = false;
    loop {
        let drain_over = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                deadline = Some(tokio::time::Instant::now() + CLOSE_DRAIN);
            }
            _ = drain_over => break,
            msg = stream.next() => match msg {
                // The peer's close (answering ours, or its own), or the end of the connection.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if !writer_done {
        // The peer is gone: the writer's close frame can no longer be delivered.
        let _ = tokio::time::timeout(CLOSE_DRAIN, writer).await;
    }
}

/// Invalid frames counted over a sliding minute (approximated by fixed one-minute windows).
#[derive(Debug)]
pub struct InvalidBudget {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl InvalidBudget {
    pub fn new(limit: u32) -> InvalidBudget {
        InvalidBudget { limit, window_start: Instant::now(), count: 0 }
    }

    /// Counts one invalid frame; true when the budget is exceeded (close with 1008).
    pub fn hit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count > self.limit
    }
}

/// What a received message means for the read loop.
pub enum Incoming {
    Text(axum::extract::ws::Utf8Bytes),
    /// Binary frames are not part of the protocol.
    Binary,
    /// Ping/pong frames, handled by tungstenite.
    Control,
    /// The peer closed or the connection failed.
    Closed,
    /// The message exceeded the frame limit.
    TooBig,
    /// The peer broke RFC 6455: close with this code (1007 bad UTF-8, 1002 protocol error).
    Broken(u16),
}

/// Classifies one `recv` result, enforcing `max_frame_bytes`.
pub fn classify(msg: Option<Result<Message, axum::Error>>, max_frame_bytes: usize) -> Incoming {
    match msg {
        Some(Ok(Message::Text(text))) if text.len() > max_frame_bytes => Incoming::TooBig,
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Binary(data))) if data.len() > max_frame_bytes => Incoming::TooBig,
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        Some(Ok(Message::Close(_))) | None => Incoming::Closed,
        Some(Err(e)) => classify_error(&e),
    }
}

/// The close code for a read error (RFC 6455 section 7.4.1): an over-limit message is 1009,
/// a text frame that is not UTF-8 is 1007, any other breach of the protocol (reserved bits,
/// unknown opcodes, an unmasked client frame, an oversized or fragmented control frame, a
/// stray continuation) is 1002; I/O errors just end the connection.
fn classify_error(e: &axum::Error) -> Incoming {
    use flightdeck_protocol::close;
    use tungstenite::Error;
    let inner = std::error::Error::source(e).and_then(|s| s.downcast_ref::<Error>());
    match inner {
        Some(Error::Capacity(_)) => Incoming::TooBig,
        Some(Error::Utf8(_)) => Incoming::Broken(close::INVALID_DATA),
        Some(Error::Protocol(_)) => Incoming::Broken(close::PROTOCOL_ERROR),
        _ => Incoming::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_lines_keep_each_frame_whole_and_in_order() {
        let pretty = "{\n  \"type\": \"pong\"\n}";
        let big = "x".repeat(MAX_JOINED_BYTES);
        let batch: Vec<Frame> = vec!["{\"a\":1}".into(), pretty.into(), big.clone().into(), "{\"b\":\"c\\nd\"}".into()];
        assert_eq!(messages(batch.clone(), Framing::OnePerMessage), batch);
        let out = messages(batch, Framing::Lines);
        // The big frame cannot share a message: before it one message, it alone, then the rest.
        assert_eq!(out.len(), 3, "{out:?}");
        let lines: Vec<&str> = out.iter().flat_map(|m| m.as_str().split('\n')).collect();
        assert_eq!(lines, ["{\"a\":1}", "{   \"type\": \"pong\" }", big.as_str(), "{\"b\":\"c\\nd\"}"]);
        let pong: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(pong["type"], "pong");
        // One pretty frame alone is made one line too.
        let alone = messages(vec![pretty.into()], Framing::Lines);
        assert!(!alone[0].contains('\n'));
    }
}
