//! Process groups: every task process leads its own group, so a stop reaches its
//! grandchildren too (a shell's background jobs, the tools Claude Code runs).

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::process::{Child, Command};

/// A spawned process that leads its own process group (`setpgid(0, 0)`).
pub struct GroupChild {
    pub child: Child,
    pub pgid: i32,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group; killed (SIGKILL, leader only) if
    /// dropped while still running, which [`GroupChild::terminate`] makes group-wide.
    pub fn spawn(command: &mut Command) -> io::Result<GroupChild> {
        command.process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        Ok(GroupChild { child, pgid })
    }

    /// SIGTERM to the whole group, SIGKILL after `grace`, then reaps the leader.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        signal_group(self.pgid, libc::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                signal_group(self.pgid, libc::SIGKILL);
                self.child.wait().await?
            }
        };
        // The leader is gone; anything still in its group (a child that ignored SIGTERM) goes now.
        signal_group(self.pgid, libc::SIGKILL);
        Ok(status)
    }

    /// Kills whatever the finished leader left running in its group: a task's processes
    /// never outlive it.
    pub fn kill_leftovers(&self) {
        signal_group(self.pgid, libc::SIGKILL);
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Dropped mid-run (the runner's future was cancelled): leave no orphans behind.
        if self.child.id().is_some() {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to the process group `pgid`; "no such group" is fine (it already ended).
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 never targets init or
    // "every process" (0 and negative values are excluded above).
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, %err, "killpg failed");
        }
    }
}

/// Reads one line (without its `\n` or `\r\n`), replacing invalid UTF-8; `None` at EOF.
pub async fn read_line_lossy<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    buf.clear();
    let n = reader.read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Some(String::from_utf8_lossy(buf).into_owned()))
}

/// Describes how a process ended: "exit code 3", "killed by signal 9".
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown exit status".to_string(),
    }
}
