//! The `shell` executor: `sh -c COMMAND` in the repo, in its own process group.
//!
//! Each stdout or stderr line becomes a `chunk` (with its `\n`, so the chunks concatenated are
//! the output). Exit code 0 gives `done` (summary: the last stdout line, or "exit code 0"),
//! anything else an `error` naming the code or signal. When the shell exits, whatever it left
//! running in its group is killed: a task's processes do not outlive it.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{TaskEvent, TaskStatus};
use tokio::io::{AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::process::{describe_exit, read_line_lossy, GroupChild};
use super::{emit, fail, ExecContext, ExecOutcome};

pub async fn run(ctx: ExecContext, events: mpsc::Sender<TaskEvent>) -> ExecOutcome {
    let Some(command) = ctx.payload.command.clone().filter(|c| !c.trim().is_empty()) else {
        return fail(&events, "a shell task needs a command".into()).await;
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(&ctx.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match GroupChild::spawn_recorded(&mut cmd, &ctx.task_id, ctx.group_record.as_deref()) {
        Ok(child) => child,
        Err(err) => return fail(&events, format!("cannot start `sh` in {}: {err}", ctx.cwd.display())).await,
    };
    emit(&events, TaskEvent::Status { status: TaskStatus::Running, model: None, session_id: None }).await;

    let stdout = Forwarder::start(child.child.stdout.take(), ChunkStream::Stdout, events.clone());
    let stderr = Forwarder::start(child.child.stderr.take(), ChunkStream::Stderr, events.clone());

    let status = tokio::select! {
        status = child.child.wait() => status,
        _ = ctx.stop.cancelled() => {
            if let Err(err) = child.terminate(ctx.kill_grace).await {
                tracing::warn!(%err, "waiting for a stopped shell task");
            }
            stdout.handle.abort();
            stderr.handle.abort();
            return ExecOutcome::Stopped;
        }
    };
    child.kill_leftovers();
    // With the group gone the pipes reach EOF once what is in them is forwarded; a process that
    // escaped the group (setsid) could hold them open, so the wait ends when they stay quiet.
    let last_stdout_line = stdout.finish().await;
    stderr.finish().await;

    match status {
        Ok(status) if status.success() => {
            let summary = last_stdout_line.filter(|l| !l.trim().is_empty()).unwrap_or_else(|| "exit code 0".into());
            emit(&events, TaskEvent::Done { summary: summary.clone() }).await;
            ExecOutcome::Completed { summary }
        }
        Ok(status) => fail(&events, format!("command failed: {}", describe_exit(&status))).await,
        Err(err) => fail(&events, format!("waiting for the command: {err}")).await,
    }
}

/// How long a pipe may stay quiet after the shell's group is gone before it is given up (a
/// process that escaped the group holds it open).
const QUIET_AFTER_EXIT: Duration = Duration::from_secs(2);
/// What a pipe may still bring after the exit: the pipe's buffer and the reader's. More than
/// this comes from a process that escaped the group and writes on.
const MAX_AFTER_EXIT: u64 = 4 << 20;

/// Forwards each line of a pipe as a chunk, counting the bytes it has read and saying when it
/// waits for the recorder rather than for the pipe.
struct Forwarder {
    handle: JoinHandle<Option<String>>,
    read: Arc<AtomicU64>,
    emitting: Arc<AtomicBool>,
}

impl Forwarder {
    fn start<R: AsyncRead + Unpin + Send + 'static>(
        pipe: Option<R>,
        stream: ChunkStream,
        events: mpsc::Sender<TaskEvent>,
    ) -> Forwarder {
        let read = Arc::new(AtomicU64::new(0));
        let emitting = Arc::new(AtomicBool::new(false));
        let (count, busy) = (read.clone(), emitting.clone());
        let handle = tokio::spawn(async move {
            let mut reader = BufReader::new(pipe?);
            let mut buf = Vec::new();
            let mut last = None;
            while let Ok(Some(line)) = read_line_lossy(&mut reader, &mut buf).await {
                count.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                busy.store(true, Ordering::Relaxed);
                emit(&events, TaskEvent::Chunk { text: format!("{line}\n"), stream }).await;
                busy.store(false, Ordering::Relaxed);
                last = Some(line);
            }
            last
        });
        Forwarder { handle, read, emitting }
    }

    /// After the shell's exit: the last line, once the pipe is drained. What the pipe held at the
    /// exit is forwarded however slowly the recorder takes it (a loaded machine loses no line);
    /// the forwarder is given up only when the pipe brings nothing for [`QUIET_AFTER_EXIT`]
    /// while the forwarder waits on it, or more than [`MAX_AFTER_EXIT`] comes after the exit.
    async fn finish(mut self) -> Option<String> {
        let at_exit = self.read.load(Ordering::Relaxed);
        let mut seen = at_exit;
        loop {
            match tokio::time::timeout(QUIET_AFTER_EXIT, &mut self.handle).await {
                Ok(joined) => return joined.ok().flatten(),
                Err(_) => {
                    let now = self.read.load(Ordering::Relaxed);
                    let quiet = now == seen && !self.emitting.load(Ordering::Relaxed);
                    if quiet || now - at_exit > MAX_AFTER_EXIT {
                        self.handle.abort();
                        return None;
                    }
                    seen = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{AcpConfig, ClaudeConfig};
    use flightdeck_protocol::{Executor, TaskPayload};
    use tokio_util::sync::CancellationToken;

    /// The shell exits at once with all its output in the pipe; a recorder that takes each line
    /// slowly (a loaded machine) still gets every line: the wait after the exit is on the pipe's
    /// silence, not on the whole forwarding (which took over 2 s here and lost the tail before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_recorder_gets_every_line_of_a_shell_that_has_exited() {
        const LINES: usize = 3000;
        let dir = tempfile::tempdir().unwrap();
        let ctx = ExecContext {
            task_id: "slow-recorder".into(),
            executor: Executor::Shell,
            payload: TaskPayload { command: Some(format!("seq 1 {LINES}; exit 3")), ..Default::default() },
            cwd: dir.path().to_path_buf(),
            claude: ClaudeConfig::default(),
            acp: AcpConfig::default(),
            stop: CancellationToken::new(),
            kill_grace: Duration::from_secs(1),
            group_record: None,
        };
        let (tx, mut rx) = mpsc::channel(1);
        let recorder = tokio::spawn(async move {
            let mut out = String::new();
            while let Some(event) = rx.recv().await {
                if let TaskEvent::Chunk { text, stream: ChunkStream::Stdout } = event {
                    out.push_str(&text);
                    // 1 ms a line: 3 s for the whole output, well after the shell's exit.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            out
        });
        let outcome = run(ctx, tx).await;
        assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
        let out = recorder.await.unwrap();
        let want: String = (1..=LINES).map(|i| format!("{i}\n")).collect();
        assert_eq!(out.lines().count(), LINES, "lines recorded");
        assert_eq!(out, want);
    }
}
