//! The Agent Client Protocol (SPEC 14), the client side: which agents this machine knows
//! ([`agents`]), the JSON-RPC transport over an agent's stdio ([`rpc`]), and the working tree
//! its file and terminal requests are confined to ([`paths`], [`terminal`]). The session itself, mapped to
//! TaskEvents, is the `acp` executor (`crate::executor::acp`).

pub mod agents;
pub mod paths;
pub mod rpc;
pub mod terminal;

pub use agents::{AcpAgent, AcpAgents, AgentSpecError};
