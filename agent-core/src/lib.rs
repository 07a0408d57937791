//! flightdeck-agent-core: everything the local agent does, with no knowledge of Tauri.
//!
//! - [`watch`]: `RepoWatcher`, live and incremental `RepoStatus` of git working trees (git2 + notify).
//! - [`store`]: the agent's SQLite database, the source of truth for what happened on this machine.
//! - [`runner`]: `TaskRunner`, the queue of tasks and their lifecycle.
//! - [`executor`]: the `claude`, `shell` and `acp` executors that turn processes into `TaskEvent`s.
//! - [`acp`]: the Agent Client Protocol's client side: agents by name, JSON-RPC, the working tree.
//! - [`headless`]: `flightdeck-agent run`, the agent without a window.
//! - [`once`]: `flightdeck-agent run --once`, one task in a container (clone, run, push).
//! - [`link`]: the WebSocket link to a relay, with backoff and an outbox so nothing is lost.
//! - [`config`]: `Settings`, layered defaults -> TOML -> `FLIGHTDECK_AGENT_*` environment.
//! - [`agent`]: `Agent`, the facade every front end uses (desktop app, headless `run`), with stable error codes.
//! - [`tray`]: the tray menu and icon as plain data, built from repos, tasks, alerts and link state.
//! - [`redact`]: secret redaction applied to everything that leaves the machine.
//! - [`external`]: Claude Code sessions started in a terminal, through Claude Code's hooks.

pub mod acp;
pub mod agent;
pub mod config;
pub mod executor;
pub mod external;
pub mod headless;
pub mod link;
pub mod once;
pub mod redact;
pub mod runner;
pub mod store;
pub mod tray;
pub mod watch;
