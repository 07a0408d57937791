//! `flightdeck-agent`: the headless local agent (SPEC section 5).
//!
//! - `run [--relay URL] [--key KEY] [--repo PATH]... [--scan DIR]... [--agent-id ID]`: the headless
//!   agent: watches repos, runs the relay's tasks, streams everything to the relay; a one-line
//!   status on stderr; stops cleanly on SIGTERM or Ctrl-C.
//! - `task --repo PATH (--claude PROMPT | --shell CMD) [--json] [task options]`: runs one task
//!   locally through the `TaskRunner` (recorded in the data directory) and prints its events;
//!   with `--json`, one `{taskId, seq, event}` object per line. Exits 0 when the task
//!   completed, 1 when it did not.
//! - `agents`: the ACP agents this machine knows (SPEC 14), with their versions and whether they
//!   were found; `--acp-agent NAME=COMMAND` (any subcommand, repeatable) adds one.
//! - `hooks install | uninstall | status`: Claude Code's hooks in `~/.claude/settings.json`, so
//!   that sessions started in a terminal in a watched repo show up (SPEC 9).
//! - `hook`: what those hooks run (fast, no async runtime, exits 0 whatever happens).
//! - `pending [--json]`: the permission requests waiting for a decision on the running agent.
//! - `decide TASK REQUEST allow|deny [--message TEXT]`: decides one of them.
//!
//! Settings come from `flightdeck_agent_core::config::Settings` (defaults, TOML, environment);
//! flags win over them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use flightdeck_agent_core::agent::control;
use flightdeck_agent_core::config::Settings;
use flightdeck_agent_core::runner::{NewTask, RunnerEvent, TaskRunner};
use flightdeck_agent_core::store::Store;
use flightdeck_protocol::desktop::CommandError;
use flightdeck_protocol::event::{ChunkStream, PlanEntryStatus, TaskEventRecord};
use flightdeck_protocol::local::{ControlRequest, ControlResponse, PendingRequest};
use flightdeck_protocol::{Executor, Task, TaskEvent, TaskPayload, TaskStatus};
use tokio::sync::broadcast::error::RecvError;

#[derive(Parser)]
#[command(name = "flightdeck-agent", version, about = "The Flightdeck local agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone)]
struct CommonArgs {
    /// The TOML settings file (default: $XDG_CONFIG_HOME/flightdeck/agent.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the database and task worktrees live (default: $XDG_DATA_HOME/flightdeck).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A custom ACP agent, `NAME=COMMAND` (COMMAND split like a shell would); repeatable.
    #[arg(long, value_name = "NAME=COMMAND")]
    acp_agent: Vec<String>,
}

impl CommonArgs {
    /// Settings with these flags applied on top.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            settings.data_dir = Some(dir.clone());
        }
        for spec in &self.acp_agent {
            let (name, command) =
                spec.split_once('=').with_context(|| format!("--acp-agent {spec}: not NAME=COMMAND"))?;
            settings.acp_agents.insert(name.trim().to_string(), command.to_string());
        }
        settings.acp_agents().context("--acp-agent")?;
        Ok(settings)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs one task locally and prints its events.
    Task(TaskArgs),
    /// Runs the headless agent: watches repos, runs tasks, streams to the relay.
    Run(RunArgs),
    /// Adds Flightdeck's hooks to Claude Code's user settings (~/.claude/settings.json), so that
    /// Claude sessions started in a terminal in a watched repo show up as tasks; or removes them.
    Hooks(HooksArgs),
    /// Run by Claude Code's hooks: hands the hook's JSON (stdin) to the running agent. Prints
    /// nothing and exits 0 unless the agent decided a permission request.
    Hook(HookArgs),
    /// Allows or denies a task's pending permission request (a tool Claude wants to use, or its
    /// question), through the agent that runs the task (the one with this data directory).
    Decide(DecideArgs),
    /// Lists the ACP agents this machine knows (built-in and custom), with their versions and
    /// whether they were found.
    Agents(AgentsArgs),
    /// Lists the permission requests waiting for a decision on the agent with this data
    /// directory: task, request id, tool, what it would do, since when.
    Pending(PendingArgs),
}

#[derive(Args)]
struct PendingArgs {
    /// Print the requests as one JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct AgentsArgs {
    /// One JSON object per agent: {name, command, builtin, found, path?, version?}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct HooksArgs {
    #[arg(value_parser = ["install", "uninstall", "status"])]
    action: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct HookArgs {
    /// The data directory of the agent to reach (default: the usual one).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct DecideArgs {
    /// The task's id.
    #[arg(value_name = "TASK")]
    task_id: String,
    /// The request's id (the `permission_request` event's `requestId`).
    #[arg(value_name = "REQUEST")]
    request_id: String,
    /// `allow` or `deny`.
    #[arg(value_parser = ["allow", "deny"])]
    behavior: String,
    /// Why (a deny's message reaches Claude).
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The relay to connect to (ws://, wss://, http:// or https://); none: local only.
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// The relay's agent key (FLIGHTDECK_AGENT_KEY keeps it out of the process list).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// A repo to watch; repeat for more.
    #[arg(long = "repo", value_name = "PATH")]
    repos: Vec<PathBuf>,
    /// Watch every git repo found under this directory (depth 3); repeat for more.
    #[arg(long, value_name = "DIR")]
    scan: Vec<PathBuf>,
    /// This agent's id on the relay (default: the host name and a suffix made once per data dir, e.g. `build-box-3f9a1c`).
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// Write logs as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Keep running (watching, local tasks) after the relay stops this agent for good (key
    /// revoked or refused, replaced by another agent with the same id). Without it the agent
    /// exits with status 3.
    #[arg(long)]
    keep_running: bool,
    /// Run one task and exit (a container run, SPEC 10): clone --clone, run the relay's task
    /// --task, push `flightdeck/<taskId>` when asked; exit 0 when it completed, 1 otherwise.
    #[arg(long, requires_all = ["clone", "task"])]
    once: bool,
    /// With --once: the repository to clone (GIT_TOKEN, when set, authenticates HTTPS).
    #[arg(long, value_name = "URL", requires = "once")]
    clone: Option<String>,
    /// With --once: the id of the task to run.
    #[arg(long, value_name = "ID", requires = "once")]
    task: Option<String>,
    /// With --once: the repo's slug on the relay (default: the URL's last part without .git).
    #[arg(long, value_name = "SLUG", requires = "once")]
    repo_name: Option<String>,
    /// With --once: where the clone goes (default: the current directory).
    #[arg(long, value_name = "DIR", requires = "once")]
    work_dir: Option<PathBuf>,
    /// With --once: the branch to clone (default: the remote's default branch); a follow-up
    /// turn starts from the branch its conversation last pushed.
    #[arg(long, value_name = "BRANCH", requires = "once")]
    checkout: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The task options of SPEC section 5, the same in every front end.
#[derive(Args, Clone, Default)]
struct TaskOptions {
    /// The model Claude Code uses.
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// Claude Code's permission mode (default, acceptEdits, plan, bypassPermissions, ...).
    #[arg(long, value_name = "MODE")]
    permission_mode: Option<String>,
    /// Tools Claude Code may use without asking, comma-separated (e.g. "Bash,Edit").
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    allowed_tools: Option<Vec<String>>,
    /// Stop the task when it has cost more than this (US dollars).
    #[arg(long, value_name = "N")]
    max_cost_usd: Option<f64>,
    /// Stop the task after this many seconds.
    #[arg(long = "timeout", value_name = "SECS")]
    timeout_secs: Option<u64>,
    /// Run in a new git worktree on the branch `flightdeck/<taskId>`.
    #[arg(long)]
    worktree: bool,
}

impl TaskOptions {
    fn payload(&self) -> TaskPayload {
        TaskPayload {
            model: self.model.clone(),
            permission_mode: self.permission_mode.clone(),
            allowed_tools: self.allowed_tools.clone(),
            max_cost_usd: self.max_cost_usd,
            timeout_secs: self.timeout_secs,
            worktree: self.worktree.then_some(true),
            ..TaskPayload::default()
        }
    }
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["claude", "shell", "acp"]))]
struct TaskArgs {
    /// The repo (a directory) the task runs in.
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// Run Claude Code with this prompt.
    #[arg(long, value_name = "PROMPT")]
    claude: Option<String>,
    /// Run this shell command (sh -c).
    #[arg(long, value_name = "CMD")]
    shell: Option<String>,
    /// Run this ACP agent (`flightdeck-agent agents` lists them) with `--prompt`.
    #[arg(long, value_name = "AGENT", requires = "prompt")]
    acp: Option<String>,
    /// The prompt of an `--acp` task.
    #[arg(long, value_name = "PROMPT", requires = "acp")]
    prompt: Option<String>,
    /// Print one {taskId, seq, event} JSON object per line.
    #[arg(long)]
    json: bool,
    /// The task's title (default: the first line of the prompt or command).
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    options: TaskOptions,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Hook(args) = &cli.command {
        // Claude Code waits for this: no logging set-up, no runtime, no settings file.
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| std::env::var_os("FLIGHTDECK_AGENT_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(Settings::default_data_dir);
        flightdeck_agent_core::external::hook::run(&data_dir, std::io::stdin().lock(), std::io::stdout().lock());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Colours only for a person at a terminal: a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match &cli.command {
        Command::Run(args) if args.log_json => logs.json().init(),
        _ => logs.init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("flightdeck-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Task(args) => runtime.block_on(task(args)),
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Decide(args) => runtime.block_on(decide(args)),
        Command::Agents(args) => runtime.block_on(agents(args)),
        Command::Pending(args) => runtime.block_on(pending(args)),
        Command::Hooks(args) => hooks(args),
        Command::Hook(_) => unreachable!("served before the runtime starts"),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flightdeck-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `flightdeck-agent hooks install | uninstall | status`.
fn hooks(args: HooksArgs) -> anyhow::Result<ExitCode> {
    use flightdeck_agent_core::external::settings::{self as claude, HookCommand};
    let settings = args.common.settings()?;
    let path = claude::user_settings_path().context("HOME is not set: cannot find ~/.claude/settings.json")?;
    let data_dir = std::path::absolute(settings.data_dir())?;
    let default = std::path::absolute(Settings::default_data_dir())?;
    let fail = |e: claude::HooksError| {
        eprintln!("flightdeck-agent: {e} [{}]", e.code());
        Ok(ExitCode::FAILURE)
    };
    match args.action.as_str() {
        "install" => {
            let command = HookCommand {
                program: std::env::current_exe().context("cannot find this program's path")?,
                data_dir: (data_dir != default).then(|| data_dir.clone()),
            };
            if let Err(e) = claude::install(&path, &command, settings.hook_wait()) {
                return fail(e);
            }
            out(format_args!(
                "installed in {}: Claude Code sessions started in a watched repo reach the agent with the data directory {}",
                path.display(),
                data_dir.display()
            ))?;
        }
        "uninstall" => {
            if let Err(e) = claude::uninstall(&path) {
                return fail(e);
            }
            out(format_args!("uninstalled from {}", path.display()))?;
        }
        _ => match claude::status(&path) {
            Ok(status) if status.installed() => {
                out(format_args!("installed in {}: {}", path.display(), status.commands[0]))?;
            }
            Ok(_) => out(format_args!("not installed in {}", path.display()))?,
            Err(e) => return fail(e),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The permission requests waiting on the agent serving `data_dir`.
async fn pending_requests(data_dir: &std::path::Path) -> anyhow::Result<Result<Vec<PendingRequest>, CommandError>> {
    match control::request(data_dir, &ControlRequest::Pending).await? {
        ControlResponse::Pending { requests } => Ok(Ok(requests)),
        ControlResponse::Error { error } => Ok(Err(error)),
        _ => bail!("the agent answered `pending` with something else"),
    }
}

/// `flightdeck-agent pending`: what waits for a decision, and how to decide it.
async fn pending(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let settings = args.common.settings()?;
    let data_dir = settings.data_dir();
    let requests = match pending_requests(&data_dir).await? {
        Ok(requests) => requests,
        Err(error) => {
            eprintln!("flightdeck-agent: {} [{}]", error.message, error.code);
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        out(format_args!("{}", serde_json::to_string(&requests)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if requests.is_empty() {
        out(format_args!("nothing waits for a decision"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir_flag = match &args.common.data_dir {
        Some(dir) => format!(" --data-dir {}", dir.display()),
        None => String::new(),
    };
    let now = chrono::Utc::now();
    for r in &requests {
        let since = match r.waiting_since {
            Some(at) => format!(
                "waiting since {} ({} ago)",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                ago((now - at).to_std().unwrap_or_default())
            ),
            None => "waiting".to_string(),
        };
        out(format_args!("task {} \"{}\" in {}, {since}", r.task_id, one_line(&r.task_title, 80), r.repo))?;
        out(format_args!("  request {}: {} {}", r.request_id, r.tool_name, r.summary))?;
        out(format_args!("  decide: flightdeck-agent decide {} {} allow|deny{dir_flag}", r.task_id, r.request_id))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration as a person says it: "42 s", "3 min", "2 h 5 min".
fn ago(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// `flightdeck-agent decide`: one request to the running agent's control socket, then a line
/// that says what happened (or why nothing did).
async fn decide(args: DecideArgs) -> anyhow::Result<ExitCode> {
    use flightdeck_protocol::desktop::{error_codes, DecideRequest};
    use flightdeck_protocol::event::Behavior;
    let settings = args.common.settings()?;
    let data_dir = settings.data_dir();
    let behavior = if args.behavior == "allow" { Behavior::Allow } else { Behavior::Deny };
    // What is decided, for the message: the request as `pending` lists it (if it is listed).
    let asked = pending_requests(&data_dir)
        .await?
        .ok()
        .and_then(|all| all.into_iter().find(|r| r.task_id == args.task_id && r.request_id == args.request_id));
    let request = ControlRequest::Decide {
        request: DecideRequest {
            task_id: args.task_id.clone(),
            request_id: args.request_id.clone(),
            behavior,
            updated_input: None,
            message: args.message.clone(),
        },
    };
    match control::request(&data_dir, &request).await? {
        ControlResponse::Task { task } => {
            let verb = if behavior == Behavior::Allow { "allowed" } else { "denied" };
            let what = match &asked {
                Some(r) if r.summary.is_empty() => r.tool_name.clone(),
                Some(r) => format!("{} ({})", r.tool_name, one_line(&r.summary, 80)),
                None => format!("request {}", args.request_id),
            };
            let told = match (&args.message, behavior) {
                (Some(m), Behavior::Deny) => format!(", telling Claude \"{}\"", one_line(m, 80)),
                _ => String::new(),
            };
            // Not the task's status: the decision reaches the task's session after this answer.
            out(format_args!("{verb} {what} for task {}{told}", task.id))?;
            Ok(ExitCode::SUCCESS)
        }
        ControlResponse::Error { error } => {
            let why = match error.code.as_str() {
                error_codes::NOT_PENDING => format!(
                    "task {} has no request {} waiting for a decision: it was decided already, or its task \
                     ended, or the id is wrong (`flightdeck-agent pending` lists what waits)",
                    args.task_id, args.request_id
                ),
                error_codes::TASK_NOT_FOUND => format!(
                    "the agent with the data directory {} has no task {} (`flightdeck-agent pending` lists what waits)",
                    data_dir.display(),
                    args.task_id
                ),
                _ => error.message.clone(),
            };
            eprintln!("flightdeck-agent: cannot {} {}: {why} [{}]", args.behavior, args.request_id, error.code);
            Ok(ExitCode::FAILURE)
        }
        _ => bail!("the agent answered a decision with something else"),
    }
}

/// `flightdeck-agent run`: until SIGTERM or Ctrl-C.
async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut settings = args.common.settings()?;
    if args.relay.is_some() {
        settings.relay_url = args.relay;
    }
    if args.key.is_some() {
        settings.key = args.key;
    }
    if args.agent_id.is_some() {
        settings.agent_id = args.agent_id;
    }
    if args.once {
        let once = flightdeck_agent_core::once::OnceConfig {
            clone_url: args.clone.unwrap_or_default(),
            task_id: args.task.unwrap_or_default(),
            repo_name: args.repo_name,
            work_dir: match args.work_dir {
                Some(dir) => dir,
                None => std::env::current_dir().context("no current directory")?,
            },
            git_token: std::env::var("GIT_TOKEN").ok().filter(|t| !t.is_empty()),
            checkout: args.checkout,
        };
        let report = flightdeck_agent_core::once::run(&settings, once).await;
        // The last line on stdout: the relay reads it from the container's log.
        out(format_args!("{}", serde_json::to_string(&report)?))?;
        let ok = report.error.is_none() && report.status == Some(TaskStatus::Completed);
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    for repo in args.repos {
        let repo = repo.canonicalize().with_context(|| format!("--repo {}", repo.display()))?;
        settings.repos.push(repo);
    }
    settings.scan.extend(args.scan);
    if settings.repos.is_empty() && settings.scan.is_empty() {
        // No repo named anywhere: the git working tree we are started in, as a person expects
        // (`cd my-project && flightdeck-agent run ...`).
        if let Some(root) = std::env::current_dir()
            .ok()
            .and_then(|d| git2::Repository::discover(d).ok())
            .and_then(|r| r.workdir().map(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf())))
        {
            eprintln!(
                "flightdeck-agent: watching {} (the current directory's repo; --repo or --scan to choose)",
                root.display()
            );
            settings.repos.push(root);
        }
    }
    if settings.relay_url.is_some() != settings.key.is_some() {
        bail!("--relay and --key go together (or FLIGHTDECK_AGENT_RELAY_URL and FLIGHTDECK_AGENT_KEY)");
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let end = flightdeck_agent_core::headless::run(&settings, args.keep_running, shutdown_signal(), |line| {
        let mut err = std::io::stderr().lock();
        if terminal {
            // One line, rewritten in place.
            let _ = write!(err, "\r\x1b[2Kflightdeck-agent: {line}");
        } else {
            let _ = writeln!(err, "flightdeck-agent: {line}");
        }
        let _ = err.flush();
    })
    .await?;
    if terminal {
        eprintln!();
    }
    match end {
        flightdeck_agent_core::headless::RunEnd::Shutdown => Ok(ExitCode::SUCCESS),
        flightdeck_agent_core::headless::RunEnd::LinkStopped(error) => {
            eprintln!("flightdeck-agent: stopped: {} [{}]", error.message, error.code);
            Ok(ExitCode::from(3))
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The decision on a permission request of `flightdeck-agent task`: asked on the terminal when
/// stdin is one, else a deny by policy (a task run unattended uses `--allowed-tools`).
async fn ask_at_terminal(request_id: &str, tool_name: &str) -> flightdeck_agent_core::executor::Decision {
    use flightdeck_protocol::event::{Behavior, DecidedBy};
    let deny = |message: &str, by| flightdeck_agent_core::executor::Decision {
        request_id: request_id.to_string(),
        behavior: Behavior::Deny,
        updated_input: None,
        message: Some(message.to_string()),
        decided_by: by,
    };
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return deny("flightdeck-agent task runs unattended: give the tool with --allowed-tools", DecidedBy::Policy);
    }
    eprint!("Allow {tool_name}? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        flightdeck_agent_core::executor::Decision {
            behavior: Behavior::Allow,
            message: None,
            decided_by: DecidedBy::Local,
            ..deny("", DecidedBy::Local)
        }
    } else {
        deny("The user said no at the terminal.", DecidedBy::Local)
    }
}

/// `flightdeck-agent agents`: the known ACP agents, found or not, with their versions.
async fn agents(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let agents = args.common.settings()?.acp_agents()?;
    let path = std::env::var_os("PATH");
    let mut out = std::io::stdout().lock();
    for agent in agents.iter() {
        let found = agent.locate(path.as_deref());
        let version = match &found {
            Some(program) => agent.version(program).await,
            None => None,
        };
        let command = agent.command.join(" ");
        if args.json {
            let line = serde_json::json!({
                "name": agent.name, "command": command, "builtin": agent.builtin,
                "found": found.is_some(), "path": found, "version": version,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let state = match (&found, &version) {
            (Some(_), Some(version)) => format!("found, {version}"),
            (Some(program), None) => format!("found ({})", program.display()),
            (None, _) => match flightdeck_agent_core::acp::agents::install_hint(&agent.name) {
                Some(hint) => format!("not found (install: {hint})"),
                None => "not found".to_string(),
            },
        };
        let kind = if agent.builtin { "built-in" } else { "custom" };
        writeln!(out, "{:<12} {:<28} {kind:<8} {state}", agent.name, command)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `flightdeck-agent task`: 0 when the task completed, 1 otherwise.
async fn task(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let settings = args.common.settings()?;
    let repo = args.repo.canonicalize().with_context(|| format!("--repo {}", args.repo.display()))?;
    if !repo.is_dir() {
        bail!("--repo {}: not a directory", repo.display());
    }
    let slug = repo.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());

    let (executor, mut payload) = match (&args.claude, &args.shell, &args.acp) {
        (Some(prompt), None, None) => {
            (Executor::Claude, TaskPayload { prompt: Some(prompt.clone()), ..args.options.payload() })
        }
        (None, Some(command), None) => {
            (Executor::Shell, TaskPayload { command: Some(command.clone()), ..args.options.payload() })
        }
        (None, None, Some(agent)) => (
            Executor::Acp,
            TaskPayload { prompt: args.prompt.clone(), agent: Some(agent.clone()), ..args.options.payload() },
        ),
        _ => bail!("give exactly one of --claude, --shell and --acp"),
    };
    payload.repo = Some(slug.clone());
    settings.apply_task_defaults(&mut payload);

    let data_dir = settings.data_dir();
    let store = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir))
            .await?
            .with_context(|| format!("cannot open the database in {}", data_dir.display()))?
    };
    let resolver_slug = slug.clone();
    let resolver = Arc::new(move |s: &str| (s == resolver_slug).then(|| repo.clone()));
    let runner = TaskRunner::start(store.clone(), settings.runner_config(), resolver).await?;

    let mut events = runner.subscribe();
    let new = NewTask { title: args.title.clone(), ..NewTask::local(slug, executor, payload) };
    let task = runner.create(new).await?;
    let mut printer = Printer { json: args.json, last_seq: 0, at_line_start: true, reader_gone: false };

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut cancelling = false;
    let finished: Task = loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(RunnerEvent::Event(record)) if record.task_id == task.id => {
                    printer.print(&record)?;
                    if let TaskEvent::PermissionRequest { request_id, tool_name, .. } = &record.event {
                        // A one-off task has nobody else to ask: the person at the terminal
                        // decides, and without one the request is denied at once.
                        let decision = ask_at_terminal(request_id, tool_name).await;
                        runner.decide(&task.id, decision).await?;
                    }
                }
                Ok(RunnerEvent::Task(t)) if t.id == task.id && t.status.is_terminal() => {
                    printer.catch_up(&store, &t).await?;
                    break t;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the broadcast: the store has every event.
                    let (s, id) = (store.clone(), task.id.clone());
                    let t = tokio::task::spawn_blocking(move || s.task(&id)).await??.unwrap_or_else(|| task.clone());
                    printer.catch_up(&store, &t).await?;
                    if t.status.is_terminal() {
                        break t;
                    }
                }
                Err(RecvError::Closed) => bail!("the task runner stopped"),
            },
            _ = &mut ctrl_c, if !cancelling => {
                cancelling = true;
                eprintln!("flightdeck-agent: cancelling the task (Ctrl-C)");
                runner.cancel(&task.id).await?;
            }
        }
    };
    runner.shutdown().await;
    if !args.json {
        printer.summary(&finished);
    }
    Ok(if finished.status == TaskStatus::Completed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints events in `seq` order, skipping any already printed.
struct Printer {
    json: bool,
    last_seq: u64,
    at_line_start: bool,
    /// stdout's reader has gone (`| head`): the task goes on to its end, unprinted.
    reader_gone: bool,
}

impl Printer {
    fn print(&mut self, record: &TaskEventRecord) -> anyhow::Result<()> {
        if record.seq <= self.last_seq || self.reader_gone {
            return Ok(());
        }
        self.last_seq = record.seq;
        match self.write(record) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    fn write(&mut self, record: &TaskEventRecord) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, record)?;
            writeln!(out)?;
            return out.flush();
        }
        match &record.event {
            TaskEvent::Chunk { text, stream: ChunkStream::Stderr } => {
                out.flush()?;
                eprint!("{text}");
            }
            TaskEvent::Chunk { text, .. } => {
                write!(out, "{text}")?;
                self.at_line_start = text.ends_with('\n');
            }
            other => {
                if !self.at_line_start {
                    writeln!(out)?;
                }
                writeln!(out, "{}", describe(other))?;
                self.at_line_start = true;
            }
        }
        out.flush()
    }

    /// Prints what the broadcast did not deliver, from the store.
    async fn catch_up(&mut self, store: &Store, task: &Task) -> anyhow::Result<()> {
        if self.last_seq >= task.last_seq {
            return Ok(());
        }
        let (store, id, after) = (store.clone(), task.id.clone(), self.last_seq);
        let missing = tokio::task::spawn_blocking(move || store.events_after(&id, after, u32::MAX)).await??;
        for e in missing {
            self.print(&TaskEventRecord { task_id: task.id.clone(), seq: e.seq, event: e.event })?;
        }
        Ok(())
    }

    fn summary(&self, task: &Task) {
        let mut line = format!("── task {} {}", task.id, task.status.as_str());
        if let (Some(start), Some(end)) = (task.started_at, task.finished_at) {
            line.push_str(&format!(" in {:.1} s", (end - start).num_milliseconds() as f64 / 1000.0));
        }
        eprintln!("{line}");
    }
}

/// One line for a non-chunk event.
fn describe(event: &TaskEvent) -> String {
    match event {
        TaskEvent::Status { status, model, session_id } => {
            let mut line = format!("● {}", status.as_str());
            if let Some(model) = model {
                line.push_str(&format!(" (model {model}"));
                if let Some(session) = session_id {
                    line.push_str(&format!(", session {session}"));
                }
                line.push(')');
            }
            line
        }
        TaskEvent::ToolStart { tool_name, params, .. } => {
            let shown = params
                .get("command")
                .or_else(|| params.get("file_path"))
                .and_then(|v| v.as_str())
                .map(String::from)
                .unwrap_or_else(|| params.to_string());
            format!("→ {tool_name} {}", one_line(&shown, 160))
        }
        TaskEvent::ToolProgress { elapsed_secs, .. } => format!("  … {elapsed_secs:.0} s"),
        TaskEvent::ToolDone { output, is_error, .. } => {
            format!("{} {}", if *is_error { "✗" } else { "←" }, one_line(output, 160))
        }
        TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd } => {
            format!("$ {input_tokens} tokens in, {output_tokens} out, ${total_cost_usd:.4}")
        }
        TaskEvent::Done { summary } => format!("✓ {summary}"),
        TaskEvent::Error { error } => format!("✗ {error}"),
        TaskEvent::Chunk { text, .. } => text.clone(),
        TaskEvent::UserMessage { text } => format!("» {}", one_line(text, 160)),
        TaskEvent::PermissionRequest { request_id, tool_name, input, .. } => {
            let shown =
                input.get("command").and_then(|v| v.as_str()).map(String::from).unwrap_or_else(|| input.to_string());
            format!(
                "? {tool_name} {} — waiting for a decision (flightdeck-agent decide TASK {request_id} allow|deny)",
                one_line(&shown, 120)
            )
        }
        TaskEvent::Diff { files, truncated, .. } => {
            let (add, del) = files.iter().fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions));
            let n = files.len();
            let cut = if *truncated { " (patch truncated)" } else { "" };
            format!("± {n} {} changed, +{add} −{del}{cut}", if n == 1 { "file" } else { "files" })
        }
        TaskEvent::Runner { message, .. } => format!("▣ {}", one_line(message, 160)),
        TaskEvent::Plan { entries } => {
            let steps: Vec<String> = entries
                .iter()
                .map(|e| {
                    let mark = match e.status {
                        PlanEntryStatus::Completed => "[x]",
                        PlanEntryStatus::InProgress => "[~]",
                        PlanEntryStatus::Pending => "[ ]",
                    };
                    format!("{mark} {}", one_line(&e.content, 80))
                })
                .collect();
            format!("▤ plan: {}", steps.join("  "))
        }
        TaskEvent::PermissionDecision { behavior, decided_by, message, .. } => {
            let by =
                serde_json::to_value(decided_by).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            match message {
                Some(m) => format!("! {} by {by}: {}", behavior.as_str(), one_line(m, 120)),
                None => format!("! {} by {by}", behavior.as_str()),
            }
        }
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// One line on stdout. A reader that has gone (`| head`, `| grep -q`) has read what it wanted:
/// that is not an error, and not the panic `println!` makes of it.
fn out(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}
