//! flightdeck-protocol: the one place where Flightdeck's wire types live.
//!
//! - [`model`]: the shared shapes (`RepoStatus`, `Task`, `Alert`, `AgentInfo`) and their enums.
//! - [`event`]: `TaskEvent`, the transcript unit of a task, and `SeqEvent` (`{seq, event}`).
//! - [`agent`]: the agent <-> relay link on `/api/ws` (`AgentMessage`, `RelayMessage`).
//! - [`realtime`]: the viewer <-> relay bus on `/api/realtime`, with typed [`realtime::Topic`]s.
//! - [`api`]: the bodies of the relay's REST API and the HUD page context.
//! - [`push`]: Web Push, ntfy and webhook bodies and the push payload (SPEC 13).
//! - [`broker`]: node-to-node messages of a multi-node relay (Redis broker).
//! - [`rules`]: the rules of a new task (payload checks, the default title), for every front end.
//! - [`views`]: what each realtime topic shows, for the relay and the desktop alike.
//! - [`names`]: validation of user names and repo slugs (length, characters, no traversal).
//! - [`validate`]: strict parsing that reports every problem as `{path, problem}` details.
//! - [`desktop`]: the desktop app's Tauri commands, their errors and the events pushed to the window.
//! - [`local`]: the agent's local control socket (`flightdeck-agent decide`).
//! - [`codegen`]: JSON Schema and TypeScript definitions for every wire type.
//! - [`close`]: WebSocket close codes.
//!
//! Nothing here does I/O or depends on an async runtime, so the crate compiles to wasm32.

pub mod agent;
pub mod api;
pub mod broker;
pub mod close;
pub mod codegen;
pub mod desktop;
pub mod event;
pub mod local;
pub mod model;
pub mod names;
pub mod push;
pub mod realtime;
pub mod rules;
pub mod validate;
pub mod views;

pub use agent::{AgentMessage, RelayMessage};
pub use event::{SeqEvent, TaskEvent};
pub use model::*;
pub use realtime::{ClientMessage, ServerMessage, Topic};
pub use validate::{Detail, InvalidMessage};

/// Times on the wire: RFC 3339 UTC strings.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The protocol version this crate speaks, sent by agents in `agent-status`.
pub const PROTOCOL_VERSION: &str = "1";

/// Largest frame accepted on any WebSocket by default (SPEC section 3).
/// The largest `seq` (and `after`) anywhere: stores keep seqs in signed 64-bit integers, so a
/// larger one is refused at validation (the schema's `maximum`) rather than stored wrongly.
pub const MAX_SEQ: u64 = i64::MAX as u64;

pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
