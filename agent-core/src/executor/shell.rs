//! The `shell` executor: `sh -c COMMAND` in the repo, in its own process group.
//!
//! Each stdout or stderr line becomes a `chunk` (with its `\n`, so the chunks concatenated are
//! the output). Exit code 0 gives `done` (summary: the last stdout line, or "exit code 0"),
//! anything else an `error` naming the code or signal. When the shell exits, whatever it left
//! running in its group is killed: a task's processes do not outlive it.

use std::process::Stdio;
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

    let stdout = forward_lines(child.child.stdout.take(), ChunkStream::Stdout, events.clone());
    let stderr = forward_lines(child.child.stderr.take(), ChunkStream::Stderr, events.clone());

    let status = tokio::select! {
        status = child.child.wait() => status,
        _ = ctx.stop.cancelled() => {
            if let Err(err) = child.terminate(ctx.kill_grace).await {
                tracing::warn!(%err, "waiting for a stopped shell task");
            }
            stdout.abort();
            stderr.abort();
            return ExecOutcome::Stopped;
        }
    };
    child.kill_leftovers();
    // With the group gone the pipes reach EOF; a process that escaped the group (setsid) could
    // hold them open, so the wait is bounded.
    let last_stdout_line = join_bounded(stdout).await;
    join_bounded(stderr).await;

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

/// Forwards each line of `pipe` as a chunk; returns the last line.
fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
    stream: ChunkStream,
    events: mpsc::Sender<TaskEvent>,
) -> JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe?);
        let mut buf = Vec::new();
        let mut last = None;
        while let Ok(Some(line)) = read_line_lossy(&mut reader, &mut buf).await {
            emit(&events, TaskEvent::Chunk { text: format!("{line}\n"), stream }).await;
            last = Some(line);
        }
        last
    })
}

async fn join_bounded(handle: JoinHandle<Option<String>>) -> Option<String> {
    let abort = handle.abort_handle();
    match tokio::time::timeout(Duration::from_secs(2), handle).await {
        Ok(joined) => joined.ok().flatten(),
        Err(_) => {
            abort.abort();
            None
        }
    }
}
