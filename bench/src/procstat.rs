//! CPU time and resident memory of a process, from /proc.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};

/// A reading of one process.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
    /// The peak resident memory so far (VmHWM).
    pub peak_rss_bytes: u64,
    pub at: Instant,
}

impl ProcStat {
    pub fn read(pid: u32) -> Result<ProcStat> {
        ProcStat::read_path(&pid.to_string())
    }

    /// This process (the load generator).
    pub fn read_self() -> Result<ProcStat> {
        ProcStat::read_path("self")
    }

    fn read_path(pid: &str) -> Result<ProcStat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc/PID/stat")?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11).context("no utime")?.parse()?;
        let stime: u64 = fields.get(12).context("no stime")?.parse()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/PID/status")?;
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcStat {
            cpu_ticks: utime + stime,
            rss_bytes: kib("VmRSS:") * 1024,
            peak_rss_bytes: kib("VmHWM:") * 1024,
            at: Instant::now(),
        })
    }

    /// CPU use between `earlier` and this reading, in percent of one core.
    pub fn cpu_pct_since(&self, earlier: &ProcStat) -> f64 {
        let ticks_per_s = 100.0; // USER_HZ is 100 on Linux.
        let cpu_s = self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / ticks_per_s;
        let wall_s = self.at.duration_since(earlier.at).as_secs_f64();
        if wall_s > 0.0 {
            100.0 * cpu_s / wall_s
        } else {
            0.0
        }
    }
}

/// Readings of a group of processes (the relay nodes, PostgreSQL and its backends), by pid.
#[derive(Debug, Clone, Default)]
pub struct GroupStat {
    pub procs: BTreeMap<u32, ProcStat>,
}

impl GroupStat {
    /// The processes of `pids` that are still there (a PostgreSQL backend may have ended).
    pub fn read(pids: &[u32]) -> GroupStat {
        GroupStat { procs: pids.iter().filter_map(|&pid| Some((pid, ProcStat::read(pid).ok()?))).collect() }
    }

    /// CPU use of the group between `earlier` and this reading, in percent of one core,
    /// counting the processes read both times.
    pub fn cpu_pct_since(&self, earlier: &GroupStat) -> f64 {
        self.procs.iter().filter_map(|(pid, now)| Some(now.cpu_pct_since(earlier.procs.get(pid)?))).sum()
    }

    /// The sum of the processes' peak resident memory.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.procs.values().map(|p| p.peak_rss_bytes).sum()
    }
}

/// The processes whose parent is `pid`, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // After the command name: state, then the parent's pid.
            stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_process_is_a_child_and_its_group_is_read() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let kids = children(std::process::id());
        assert!(kids.contains(&child.id()), "{kids:?}");
        let group = GroupStat::read(&[child.id(), u32::MAX]);
        assert_eq!(group.procs.len(), 1, "a pid that is not there is left out");
        assert!(group.cpu_pct_since(&group) >= 0.0);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
