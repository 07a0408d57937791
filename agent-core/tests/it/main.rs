//! The integration tests of flightdeck-agent-core: one test binary, one module per area.

mod acp;
mod acp_claude;
mod acp_codex;
mod acp_opencode;
mod agent;
mod changes_e2e;
mod claude;
mod cli;
mod containers_e2e;
mod conversations_e2e;
mod decisions;
mod external_e2e;
mod hooks;
mod link_e2e;
mod runner;
mod secrets_e2e;
mod support;
mod watch;
