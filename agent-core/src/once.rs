//! `flightdeck-agent run --once --clone URL --task ID`: one task in a container (SPEC 10).
//!
//! The relay starts a container with this command and a one-time agent key bound to the task.
//! The agent clones the repo (shallow, with `GIT_TOKEN` when set; a follow-up turn the branch
//! `--checkout` names), starts the usual [`Agent`]
//! on that clone with `metadata.placement = "container"`, runs the one task the relay sends
//! (the same runner and executors as everywhere), commits and pushes what it changed as branch
//! `flightdeck/<taskId>` when the payload asks (`push: true`), makes sure the relay holds the
//! whole transcript, and returns. The last line on stdout is an [`OnceReport`] the relay reads
//! from the container's log.
//!
//! Nothing here waits without a deadline except the task itself: the relay owns the run's
//! timeout and stops the container when it passes.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A line on stderr in one write: stderr is unbuffered and `eprintln!` writes each piece of
/// its format on its own, which a container engine's log keeps as separate entries (a log tail
/// of N entries then starts in the middle of a line).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(format!("{}\n", format_args!($($arg)*)).as_bytes());
    }};
}

use flightdeck_protocol::api::OnceReport;
use flightdeck_protocol::desktop::{AgentEvent, LinkStatus};
use flightdeck_protocol::{names, Task, TaskStatus};
use tokio::process::Command;
use tokio::sync::broadcast::error::RecvError;

use crate::agent::Agent;
use crate::config::Settings;
use crate::headless::agent_config;
use crate::runner::worktree::branch_name;

/// How long the agent tries to get a confirmation that the relay holds the whole task.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(30);
/// How long shutdown waits for tasks to end (none should be running by then).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// What one container run does.
#[derive(Debug, Clone)]
pub struct OnceConfig {
    /// The repository to clone (any URL git understands).
    pub clone_url: String,
    /// The task the relay will send; the run ends when it has ended.
    pub task_id: String,
    /// The repo's slug on the relay (default: the last part of the URL without `.git`).
    pub repo_name: Option<String>,
    /// The clone goes to `<work_dir>/<slug>`.
    pub work_dir: PathBuf,
    /// A token for HTTPS clones and pushes (`GIT_TOKEN`); never written to disk.
    pub git_token: Option<String>,
    /// The branch to clone (a follow-up turn's conversation branch); the default branch when
    /// `None`.
    pub checkout: Option<String>,
}

/// The slug a clone URL gives: its last path segment without `.git`.
pub fn slug_of(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next()?;
    let slug = last.strip_suffix(".git").unwrap_or(last);
    (!slug.is_empty()).then(|| slug.to_string())
}

/// Runs the whole container run; the report says how it went (also when it went wrong).
pub async fn run(settings: &Settings, once: OnceConfig) -> OnceReport {
    let mut report = OnceReport {
        task_id: once.task_id.clone(),
        status: None,
        pushed_branch: None,
        pushed_commit: None,
        error: None,
    };
    if let Err(error) = run_inner(settings, &once, &mut report).await {
        tracing::error!(%error, "the container run failed");
        report.error = Some(error);
    }
    report
}

async fn run_inner(settings: &Settings, once: &OnceConfig, report: &mut OnceReport) -> Result<(), String> {
    let slug = match &once.repo_name {
        Some(name) => name.clone(),
        None => slug_of(&once.clone_url).ok_or_else(|| format!("cannot name a repo after {:?}", once.clone_url))?,
    };
    names::validate_repo(&slug).map_err(|e| format!("repo name {slug:?}: {e}"))?;
    if settings.relay_url.is_none() || settings.key.is_none() {
        return Err("--once needs a relay and a key (FLIGHTDECK_AGENT_RELAY_URL, FLIGHTDECK_AGENT_KEY)".into());
    }
    let dir = once.work_dir.join(&slug);
    say!("flightdeck-agent: cloning {} into {}", once.clone_url, dir.display());
    clone(&once.clone_url, once.checkout.as_deref(), &dir, once.git_token.as_deref()).await?;
    let base = git(&dir, &["rev-parse", "HEAD"], None).await.ok().map(|s| s.trim().to_string());

    let mut settings = settings.clone();
    settings.repos = vec![dir.clone()];
    settings.scan.clear();
    let mut config = agent_config(&settings);
    if let Some(link) = &mut config.link_template {
        link.metadata.insert("placement".into(), "container".into());
        link.metadata.insert("taskId".into(), once.task_id.clone().into());
    }
    let agent = Agent::start(config).await.map_err(|e| format!("cannot start the agent: {e}"))?;
    let result = drive(&agent, once, &dir, base.as_deref(), report).await;
    if let Err(e) = agent.shutdown(SHUTDOWN_DEADLINE).await {
        tracing::warn!(error = %e, "agent shutdown failed");
    }
    result
}

/// Waits for the task to end, pushes, and makes sure the relay holds everything.
async fn drive(
    agent: &Agent,
    once: &OnceConfig,
    dir: &Path,
    base: Option<&str>,
    report: &mut OnceReport,
) -> Result<(), String> {
    let task = wait_for_end(agent, &once.task_id).await?;
    report.status = Some(task.status);
    say!("flightdeck-agent: task {} {}", task.id, task.status.as_str());
    let mut outcome = Ok(());
    if task.payload.push == Some(true) && task.status == TaskStatus::Completed {
        match push(dir, &task, base, once.git_token.as_deref()).await {
            Ok(Some((branch, commit))) => {
                say!("flightdeck-agent: pushed {branch} at {commit}");
                report.pushed_branch = Some(branch);
                report.pushed_commit = Some(commit);
            }
            Ok(None) => say!("flightdeck-agent: nothing changed, nothing pushed"),
            Err(e) => outcome = Err(e),
        }
    }
    confirm(agent, &task.id).await?;
    outcome
}

/// The task once it has ended. It exists as soon as the relay has sent it.
async fn wait_for_end(agent: &Agent, task_id: &str) -> Result<Task, String> {
    let mut events = agent.subscribe();
    loop {
        // Checked after subscribing, so an end between the two is not missed.
        if let Ok(task) = agent.task(task_id).await {
            if task.status.is_terminal() {
                return Ok(task);
            }
        }
        let view = agent.link_view();
        if view.status == LinkStatus::Stopped {
            let why = view.error.map(|e| e.message).unwrap_or_default();
            return Err(format!("the relay stopped the link: {why}"));
        }
        match events.recv().await {
            Ok(AgentEvent::TaskEvent { .. }) => continue,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err("the agent stopped".into()),
        }
    }
}

/// Reconnects until a `welcome` confirms that the relay holds the whole task.
async fn confirm(agent: &Agent, task_id: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + CONFIRM_DEADLINE;
    loop {
        agent.reconnect_link().await;
        let mut events = agent.subscribe();
        // Wait for this connection's welcome (the link is `connected` once it has resynced).
        let connected = tokio::time::timeout_at(deadline, async {
            loop {
                if agent.link_view().status == LinkStatus::Connected {
                    return true;
                }
                if agent.link_view().status == LinkStatus::Stopped {
                    return false;
                }
                if let Err(RecvError::Closed) = events.recv().await {
                    return false;
                }
            }
        })
        .await;
        if agent.relay_holds(task_id).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        if !matches!(connected, Ok(true)) || tokio::time::Instant::now() >= deadline {
            return Err("the relay did not confirm the whole transcript".into());
        }
    }
}

/// Commits what the task left in the working tree and pushes `flightdeck/<taskId>`; `None`
/// when nothing changed (no uncommitted change and no new commit).
async fn push(
    dir: &Path,
    task: &Task,
    base: Option<&str>,
    token: Option<&str>,
) -> Result<Option<(String, String)>, String> {
    let dirty = !git(dir, &["status", "--porcelain"], None).await?.trim().is_empty();
    if dirty {
        git(dir, &["add", "-A"], None).await?;
        let message = format!("{}\n\nFlightdeck task {}", task.title, task.id);
        git(
            dir,
            &["-c", "user.name=Flightdeck", "-c", "user.email=flightdeck@localhost", "commit", "-q", "-m", &message],
            None,
        )
        .await?;
    }
    let head = git(dir, &["rev-parse", "HEAD"], None).await?.trim().to_string();
    if base == Some(head.as_str()) {
        return Ok(None);
    }
    let branch = branch_name(&task.id);
    say!("flightdeck-agent: pushing {branch}");
    git(dir, &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")], token).await?;
    Ok(Some((branch, head)))
}

/// `git clone --depth 1`, of `branch` when given (a local path is cloned whole: git ignores the
/// depth there).
async fn clone(url: &str, branch: Option<&str>, dir: &Path, token: Option<&str>) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    if branch.is_some_and(|b| b.starts_with('-')) {
        return Err(format!("not a branch name: {branch:?}"));
    }
    let target = dir.to_string_lossy().into_owned();
    let mut args = vec!["clone", "-q", "--depth", "1", "--no-tags"];
    if let Some(branch) = branch {
        args.extend(["--branch", branch]);
    }
    args.extend(["--", url, &target]);
    git(Path::new("."), &args, token).await.map(|_| ())
}

/// Runs git; with a token, HTTPS requests carry it as a header (not in the URL, not on disk).
async fn git(dir: &Path, args: &[&str], token: Option<&str>) -> Result<String, String> {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir);
    if let Some(token) = token {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        // Through the environment, so the token is not in the process list either.
        command.env("GIT_CONFIG_COUNT", "1");
        command.env("GIT_CONFIG_KEY_0", "http.extraHeader");
        command.env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
    }
    let out = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let verb = args.iter().find(|a| !a.starts_with('-') && !a.contains('=')).copied().unwrap_or("");
        Err(format!("git {verb} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::slug_of;

    #[test]
    fn slugs_come_from_the_last_segment() {
        for (url, want) in [
            ("git://127.0.0.1:9418/demo.git", Some("demo")),
            ("https://github.com/a/flightdeck", Some("flightdeck")),
            ("git@github.com:a/b.git", Some("b")),
            ("/srv/git/x.git/", Some("x")),
            (".git", None),
        ] {
            assert_eq!(slug_of(url).as_deref(), want, "{url}");
        }
    }
}
