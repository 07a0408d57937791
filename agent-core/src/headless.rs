//! `flightdeck-agent run`: the headless agent for servers, CI boxes and containers.
//!
//! The same [`Agent`] the desktop app runs, without a window: it watches the repos given with
//! `--repo` and found under `--scan` (depth 3), runs the tasks the relay sends, and keeps a
//! one-line status (link, repos, running tasks) on stderr. It stops on SIGTERM or Ctrl-C,
//! cancelling running tasks cleanly (SIGTERM, then SIGKILL after 5 s) and closing the relay
//! socket with 1001.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use flightdeck_protocol::desktop::{AgentEvent, CommandError, LinkStatus};
use tokio::sync::broadcast::error::RecvError;

use crate::agent::{Agent, AgentConfig, AgentError};
use crate::config::Settings;
use crate::link::LinkConfig;
use crate::watch::{discover_repos, DEFAULT_SCAN_DEPTH};

/// How long shutdown waits for cancelled tasks to end.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The repos to watch: `settings.repos` plus every repo found under `settings.scan`.
pub fn repos_to_watch(settings: &Settings) -> Vec<PathBuf> {
    let mut repos = settings.repos.clone();
    for dir in &settings.scan {
        for repo in discover_repos(dir, DEFAULT_SCAN_DEPTH) {
            if !repos.contains(&repo) {
                repos.push(repo);
            }
        }
    }
    repos
}

/// The agent configuration the settings describe.
pub fn agent_config(settings: &Settings) -> AgentConfig {
    let mut config = AgentConfig::new(settings.data_dir());
    config.extra_repos = repos_to_watch(settings);
    config.relay_url = settings.relay_url.clone();
    config.relay_key = settings.key.clone();
    config.agent_id = settings.agent_id.clone();
    config.runner = settings.runner_config();
    let mut link = LinkConfig::new("", "", "");
    link.backoff_base = Duration::from_millis(settings.link_backoff_base_ms.max(1));
    link.backoff_cap = Duration::from_millis(settings.link_backoff_cap_ms.max(settings.link_backoff_base_ms).max(1));
    link.stable_after = link.stable_after.min(link.backoff_cap * 2);
    config.link_template = Some(link);
    config.external.permission_wait = settings.hook_wait();
    config
}

/// What the status line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub link: LinkStatus,
    /// Why the link stopped, when it did.
    pub link_error: Option<String>,
    pub relay: Option<String>,
    pub repos: usize,
    pub running: usize,
}

impl std::fmt::Display for StatusLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = match (&self.link, &self.relay) {
            (LinkStatus::Off, _) | (_, None) => "no relay (local only)".to_string(),
            (LinkStatus::Connected, Some(r)) => format!("connected to {r}"),
            (LinkStatus::Connecting, Some(r)) => format!("connecting to {r}"),
            (LinkStatus::Disconnected, Some(r)) => format!("disconnected from {r}, retrying"),
            (LinkStatus::Stopped, Some(r)) => match &self.link_error {
                Some(why) => format!("stopped: {why} ({r}); not retrying"),
                None => format!("stopped by {r}; not retrying"),
            },
        };
        let plural = |n: usize, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
        write!(f, "{} · {} watched · {} running", link, plural(self.repos, "repo", "repos"), self.running)
    }
}

/// How a headless run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Asked to stop (SIGTERM, Ctrl-C).
    Shutdown,
    /// The relay stopped this agent for good (key revoked or refused, replaced by another agent
    /// with the same id); the agent shut down rather than run on unseen.
    LinkStopped(CommandError),
}

/// Runs the agent until `shutdown` resolves, or until the relay stops the link for good (unless
/// `keep_running`); `on_status` gets the status line whenever it changes.
pub async fn run(
    settings: &Settings,
    keep_running: bool,
    shutdown: impl Future<Output = ()>,
    mut on_status: impl FnMut(&StatusLine),
) -> Result<RunEnd, AgentError> {
    let agent = Agent::start(agent_config(settings)).await?;
    let mut events = agent.subscribe();
    let relay = settings.relay_url.clone().or(agent.settings().await?.relay_url);
    let mut shown: Option<StatusLine> = None;
    tokio::pin!(shutdown);
    loop {
        let link = agent.link_view();
        let line = StatusLine {
            link: link.status,
            link_error: link.error.as_ref().map(|e| e.message.clone()),
            relay: relay.clone(),
            repos: agent.repos().await?.len(),
            running: agent.active_tasks().await?.len(),
        };
        if shown.as_ref() != Some(&line) {
            on_status(&line);
            shown = Some(line);
        }
        if let (LinkStatus::Stopped, Some(error), false) = (link.status, link.error, keep_running) {
            tracing::error!(code = %error.code, "{}; stopping (run with --keep-running to go on locally)", error.message);
            agent.shutdown(SHUTDOWN_DEADLINE).await?;
            return Ok(RunEnd::LinkStopped(error));
        }
        // Wait for something that can change the line.
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    let cancelled = agent.shutdown(SHUTDOWN_DEADLINE).await?;
                    if !cancelled.is_empty() {
                        tracing::info!(count = cancelled.len(), "running tasks were cancelled");
                    }
                    return Ok(RunEnd::Shutdown);
                }
                event = events.recv() => match event {
                    Ok(AgentEvent::TaskEvent { .. }) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Ok(RunEnd::Shutdown),
                },
            }
        }
    }
}
