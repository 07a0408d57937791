//! Process groups: every task process leads its own group, so a stop reaches its
//! grandchildren too (a shell's background jobs, the tools Claude Code runs).

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::process::{Child, Command};

/// The environment variable that marks every process a task runs, and so everything that
/// process starts: its value is the task's id. The agent's own `claude` children inherit it, and
/// so do the hooks they run from `~/.claude/settings.json`: `flightdeck-agent hook` ignores a
/// hook that carries it, since the agent already records that session as the task itself (not
/// as a terminal session next to it).
pub const TASK_ENV: &str = "FLIGHTDECK_TASK_ID";

/// Whether this process was started by a task of an agent (see [`TASK_ENV`]).
pub fn started_by_a_task() -> bool {
    std::env::var_os(TASK_ENV).is_some_and(|v| !v.is_empty())
}

/// A spawned process that leads its own process group (`setpgid(0, 0)`).
pub struct GroupChild {
    pub child: Child,
    pub pgid: i32,
    /// The task this process runs, when it is the task's own process (not one of its
    /// terminals): when it ends, whatever the task started that left the group ends too.
    task: Option<String>,
    /// Removed (and so forgotten) when the group is done with.
    _record: Option<GroupRecord>,
}

impl GroupChild {
    /// Spawns `command` for the task `task_id` (marked with [`TASK_ENV`]) as the leader of a
    /// new process group; killed (SIGKILL, leader only) if dropped while still running, which
    /// [`GroupChild::terminate`] makes group-wide.
    pub fn spawn(command: &mut Command, task_id: &str) -> io::Result<GroupChild> {
        let mut child = GroupChild::spawn_recorded(command, task_id, None)?;
        child.task = None;
        Ok(child)
    }

    /// Like [`GroupChild::spawn`], for the task's own process: when it is stopped or its group
    /// is cleaned up, the processes of the task that left the group go too
    /// ([`kill_escaped`]). Writes the group down at `record` for as long as it runs, so that
    /// an agent restarted after a crash can stop it ([`kill_recorded_group`]).
    pub fn spawn_recorded(command: &mut Command, task_id: &str, record: Option<&Path>) -> io::Result<GroupChild> {
        command.env(TASK_ENV, task_id).process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        let record = record.and_then(|path| match GroupRecord::write(path, pgid) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the task's process group");
                None
            }
        });
        Ok(GroupChild { child, pgid, task: Some(task_id.to_string()), _record: record })
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
        self.kill_leftovers();
        Ok(status)
    }

    /// Reaps the leader once its output has closed, still stoppable (a hung exit is killed when
    /// `stop` fires: `None`), kills what it left in its group, and takes the stderr tail the
    /// drain gathered (waiting at most 2 s more for it).
    pub async fn reap(
        &mut self,
        stop: &tokio_util::sync::CancellationToken,
        grace: Duration,
        stderr_tail: tokio::task::JoinHandle<String>,
    ) -> Option<(io::Result<ExitStatus>, String)> {
        let status = tokio::select! {
            status = self.child.wait() => status,
            _ = stop.cancelled() => {
                let _ = self.terminate(grace).await;
                return None;
            }
        };
        self.kill_leftovers();
        let tail = match tokio::time::timeout(Duration::from_secs(2), stderr_tail).await {
            Ok(Ok(tail)) => tail,
            _ => String::new(),
        };
        Some((status, tail))
    }

    /// Kills whatever the finished leader left running in its group and, for the task's own
    /// process, what the task started outside it: a task's processes never outlive it.
    pub fn kill_leftovers(&self) {
        signal_group(self.pgid, libc::SIGKILL);
        if let Some(task) = &self.task {
            kill_escaped(task);
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Dropped mid-run (the runner's future was cancelled): leave no orphans behind.
        if self.child.id().is_some() {
            self.kill_leftovers();
        }
    }
}

/// Kills the processes of task `task_id` that left its process group: whatever carries
/// [`TASK_ENV`] with that id. A tool may start its commands in a session of their own (Claude
/// Code's Bash tool does, through `setsid`), and a loop started that way outlived the task.
/// Returns how many were signalled. Linux only (it reads `/proc`); elsewhere nothing.
pub fn kill_escaped(task_id: &str) -> usize {
    kill_marked(TASK_ENV, task_id)
}

/// Kills (SIGKILL) every process, other than this one, whose environment has `var=value`; returns
/// how many were signalled. Linux only (it reads `/proc`); elsewhere nothing.
pub fn kill_marked(var: &str, value: &str) -> usize {
    let mut killed = 0;
    for pid in marked_pids(var, value) {
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory-safety preconditions; pid > 1 and is not this process.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        killed += usize::from(rc == 0);
    }
    killed
}

/// The processes, other than this one, whose environment has `var=value` (Linux: `/proc`).
fn marked_pids(var: &str, value: &str) -> Vec<i32> {
    let marker = format!("{var}={value}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 1 && *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
        })
        .collect()
}

/// A file naming a running task's process group: `pgid leader-start-time boot-id`. The start
/// time (clock ticks since boot) and the boot id make sure a later, unrelated group that
/// happens to get the same number is never taken for it.
struct GroupRecord {
    path: PathBuf,
}

impl GroupRecord {
    fn write(path: &Path, pgid: i32) -> io::Result<GroupRecord> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let start = start_time(pgid).unwrap_or(0);
        std::fs::write(path, format!("{pgid} {start} {}\n", boot_id().unwrap_or_default()))?;
        Ok(GroupRecord { path: path.to_path_buf() })
    }
}

impl Drop for GroupRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Stops the process group a crashed agent left running, as written at `record`, if it is still
/// that group; then forgets it. Returns whether a group was signalled. Linux only: elsewhere the
/// record is removed and nothing is killed (no safe way to tell the group is the same).
pub fn kill_recorded_group(record: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(record) else { return false };
    let _ = std::fs::remove_file(record);
    let mut fields = text.split_whitespace();
    let (Some(pgid), Some(start), Some(boot)) = (
        fields.next().and_then(|f| f.parse::<i32>().ok()),
        fields.next().and_then(|f| f.parse::<u64>().ok()),
        fields.next(),
    ) else {
        return false;
    };
    if pgid <= 1 || boot_id().as_deref() != Some(boot) {
        return false; // another boot: that number means nothing now
    }
    // The leader itself, if it is still the same process; otherwise a member of the group that
    // started after the leader did (its children outlive it).
    let same_group = match start_time(pgid) {
        Some(leader_start) => leader_start == start,
        None => group_members_since(pgid, start),
    };
    if same_group {
        signal_group(pgid, libc::SIGKILL);
    }
    same_group
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(19).and_then(|s| s.parse().ok()))
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces): field 3 on.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// Whether some process in group `pgid` started at or after `since`.
fn group_members_since(pgid: i32, since: u64) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).any(|pid| {
        stat_fields(pid).is_some_and(|f| {
            f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
                && f.get(19).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= since)
        })
    })
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

/// Reads a process's stderr to the end, logging it and keeping its last `keep` lines (for the
/// error of a run that ends badly); run it as its own task, so the process never blocks on a
/// full pipe.
pub async fn drain_stderr(stderr: Option<tokio::process::ChildStderr>, keep: usize) -> String {
    let Some(stderr) = stderr else { return String::new() };
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut tail = std::collections::VecDeque::with_capacity(keep);
    while let Ok(Some(line)) = read_line_lossy(&mut reader, &mut buf).await {
        tracing::debug!(%line, "task process stderr");
        if tail.len() == keep {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The live processes (not zombies) that carry task `task_id`'s marker, with their group.
    fn marked(task_id: &str) -> Vec<(i32, i32)> {
        marked_pids(TASK_ENV, task_id)
            .into_iter()
            .filter_map(|pid| {
                let f = stat_fields(pid)?;
                let group = f.get(2)?.parse().ok()?;
                (f.first().map(String::as_str) != Some("Z")).then_some((pid, group))
            })
            .collect()
    }

    /// A loop a task started in a session of its own (as Claude Code's Bash tool starts its
    /// commands) outlived the task: killing the group does not reach it. It ends with the task
    /// now; a terminal of the task cleaning up its own group leaves it alone.
    #[tokio::test]
    async fn a_process_that_left_the_task_group_ends_with_the_task() {
        let task = format!("escape-{}", std::process::id());
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("setsid sh -c 'while true; do sleep 0.05; done' >/dev/null 2>&1 &");
        let mut child = GroupChild::spawn_recorded(&mut cmd, &task, None).unwrap();
        assert!(child.child.wait().await.unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let escaped = loop {
            let outside: Vec<_> = marked(&task).into_iter().filter(|(_, group)| *group != child.pgid).collect();
            if !outside.is_empty() {
                break outside;
            }
            assert!(std::time::Instant::now() < deadline, "the loop never started");
            tokio::task::yield_now().await;
        };
        signal_group(child.pgid, libc::SIGKILL);
        // A terminal of the same task: its cleanup is its own group only.
        let mut terminal = GroupChild::spawn(Command::new("true").env("UNUSED", "1"), &task).unwrap();
        terminal.child.wait().await.unwrap();
        terminal.kill_leftovers();
        for (pid, _) in &escaped {
            assert!(marked(&task).iter().any(|(p, _)| p == pid), "{pid} survived the group kill and the terminal");
        }
        child.kill_leftovers();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !marked(&task).is_empty() {
            assert!(std::time::Instant::now() < deadline, "still running: {:?}", marked(&task));
            tokio::task::yield_now().await;
        }
    }
}
