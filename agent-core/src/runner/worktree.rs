//! Task worktrees: `worktree: true` runs a task in a fresh `git worktree` on the new branch
//! `flightdeck/<taskId>`, started from the repo's `HEAD`.
//!
//! Clean-up rule: when the task ends, the worktree directory is removed if it has no
//! uncommitted changes (`git status --porcelain` is empty); the branch is always kept, so
//! whatever the task committed stays reachable. A worktree with uncommitted changes is kept
//! as it is, so nothing is lost; `git worktree remove <dir>` deletes it later.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// A worktree made for a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWorktree {
    pub repo: PathBuf,
    pub dir: PathBuf,
    pub branch: String,
}

/// The branch of a task's worktree.
pub fn branch_name(task_id: &str) -> String {
    format!("flightdeck/{task_id}")
}

/// Where a task's worktree goes: `<data_dir>/worktrees/<taskId>`, or, without a data directory,
/// `<repo>/.git/flightdeck-worktrees/<taskId>`.
pub fn worktree_dir(data_dir: Option<&Path>, repo: &Path, task_id: &str) -> PathBuf {
    match data_dir {
        Some(dir) => dir.join("worktrees").join(task_id),
        None => repo.join(".git").join("flightdeck-worktrees").join(task_id),
    }
}

impl TaskWorktree {
    /// `git worktree add -b flightdeck/<taskId> <dir>` in `repo`.
    pub async fn create(repo: &Path, dir: PathBuf, task_id: &str) -> Result<TaskWorktree, String> {
        let branch = branch_name(task_id);
        if let Some(parent) = dir.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        git(repo, &["worktree", "add", "-b", &branch, &dir.to_string_lossy()]).await?;
        Ok(TaskWorktree { repo: repo.to_path_buf(), dir, branch })
    }

    /// Applies the clean-up rule; returns whether the directory was removed.
    pub async fn clean_up(&self) -> bool {
        match git(&self.dir, &["status", "--porcelain"]).await {
            Ok(out) if out.trim().is_empty() => {
                match git(&self.repo, &["worktree", "remove", &self.dir.to_string_lossy()]).await {
                    Ok(_) => true,
                    Err(err) => {
                        tracing::warn!(dir = %self.dir.display(), %err, "cannot remove a task worktree");
                        false
                    }
                }
            }
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "cannot check a task worktree");
                false
            }
        }
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}
