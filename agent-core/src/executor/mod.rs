//! Executors: turn a process into a stream of `TaskEvent`s.
//!
//! - [`shell`]: `sh -c COMMAND`, stdout and stderr lines as chunks.
//! - [`claude`]: the Claude Code CLI in `stream-json` mode, parsed by [`stream_json`].
//! - [`acp`]: an Agent Client Protocol agent (Codex, OpenCode, ...) as a JSON-RPC session.
//! - [`process`]: process groups, so that stopping a task stops everything it started.
//!
//! An executor sends the events of one task (including its own `done` or `error`) on a channel
//! and returns an [`ExecOutcome`]. It knows nothing of `seq`, the store or the queue: the
//! runner numbers, records and publishes what it sends.

use std::path::PathBuf;
use std::time::Duration;

use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::{Executor, TaskEvent, TaskPayload};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub mod acp;
pub mod claude;
pub mod process;
pub mod shell;
pub mod stream_json;

/// How to run the Claude Code CLI.
#[derive(Debug, Clone, Default)]
pub struct ClaudeConfig {
    /// The CLI to run; `None` means `$FLIGHTDECK_CLAUDE_BIN`, else `claude` on `PATH`.
    pub bin: Option<PathBuf>,
    /// Extra environment for the CLI, on top of the user's (which it always inherits).
    pub env: Vec<(String, String)>,
}

impl ClaudeConfig {
    /// The binary that will run: the configured one, `$FLIGHTDECK_CLAUDE_BIN`, or `claude`.
    pub fn resolved_bin(&self) -> PathBuf {
        self.bin
            .clone()
            .or_else(|| std::env::var_os("FLIGHTDECK_CLAUDE_BIN").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("claude"))
    }
}

/// How to run ACP agents (SPEC 14).
#[derive(Debug, Clone)]
pub struct AcpConfig {
    /// The agents known by name.
    pub agents: crate::acp::AcpAgents,
    /// Extra environment for the agents, on top of the user's (which they always inherit).
    pub env: Vec<(String, String)>,
    /// How long an agent may take to answer `initialize` and open its session.
    pub handshake_timeout: Duration,
}

impl Default for AcpConfig {
    fn default() -> AcpConfig {
        AcpConfig { agents: Default::default(), env: Vec::new(), handshake_timeout: Duration::from_secs(60) }
    }
}

/// Everything an executor needs to run one task.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub task_id: String,
    pub executor: Executor,
    pub payload: TaskPayload,
    /// The directory the process runs in: the repo, or the task's worktree.
    pub cwd: PathBuf,
    pub claude: ClaudeConfig,
    pub acp: AcpConfig,
    /// Cancelled when the task must stop (cancel, timeout, budget, shutdown).
    pub stop: CancellationToken,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub kill_grace: Duration,
    /// Where the task's process group is written down while it runs (see
    /// [`process::kill_recorded_group`]); `None` without a data directory.
    pub group_record: Option<PathBuf>,
}

/// What reaches a running executor from outside (its session's input channel).
#[derive(Debug)]
pub enum ExecInput {
    /// A decision on a permission request; `reply` gets `true` when it was pending (and is now
    /// answered), `false` when it was not.
    Decide { decision: Decision, reply: oneshot::Sender<bool> },
}

/// A decision on a permission request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub request_id: String,
    pub behavior: Behavior,
    /// The input to run the tool with (a question's answers); none: as requested.
    pub updated_input: Option<Value>,
    pub message: Option<String>,
    pub decided_by: DecidedBy,
}

/// How an executor run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecOutcome {
    /// The work finished; a `done` event was sent with this summary.
    Completed { summary: String },
    /// The work failed; an `error` event was sent with this message.
    Failed { error: String },
    /// `stop` was cancelled and the process group has been killed.
    Stopped,
    /// The agent itself ended the turn as cancelled, nobody having asked it to (an ACP agent's
    /// `cancelled` stop reason: Codex does so when a permission request is denied, and waits
    /// for the next message). The task ends `cancelled`; a reply can go on from there.
    Cancelled,
}

/// Runs the task's executor to the end. `input` brings decisions to a Claude session; a shell
/// task has none to take (its input is closed at once, so a decision finds nothing pending).
pub async fn run(ctx: ExecContext, events: mpsc::Sender<TaskEvent>, input: mpsc::Receiver<ExecInput>) -> ExecOutcome {
    match ctx.executor {
        Executor::Shell => {
            drop(input);
            shell::run(ctx, events).await
        }
        Executor::Claude => claude::run(ctx, events, input).await,
        Executor::Acp => acp::run(ctx, events, input).await,
    }
}

/// Sends an event; a closed channel means the runner is gone, which the stop token also says.
pub(crate) async fn emit(events: &mpsc::Sender<TaskEvent>, event: TaskEvent) {
    let _ = events.send(event).await;
}

/// Sleeps until `deadline`; never wakes without one (a `select!` branch with nothing to wait for).
pub(crate) async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Fails with an `error` event.
pub(crate) async fn fail(events: &mpsc::Sender<TaskEvent>, error: String) -> ExecOutcome {
    emit(events, TaskEvent::Error { error: error.clone() }).await;
    ExecOutcome::Failed { error }
}
