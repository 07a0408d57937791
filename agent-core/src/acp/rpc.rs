//! JSON-RPC 2.0 over an agent's stdio, one message a line (the ACP transport).
//!
//! Reading is the executor's: it reads a line and [`classify`]s it, inside its own `select!`
//! loop, so a decision, a cancel or a timeout is never stuck behind a read. Writing goes through
//! an [`Outgoing`] handle onto one writer task, so a terminal that ends later (a spawned tokio
//! task) can answer its request without holding up the loop.
//!
//! Why not the `agent-client-protocol` crate: its connection drives requests through `!Send`
//! futures on a local executor (a `LocalSet`, or its own handler chain in newer versions), while
//! a task runs as one `Send` tokio task whose `select!` loop also owns the stop token, the
//! runner's decisions and the deadlines; and its typed schema ties the client to one schema
//! version, where agents of several versions run side by side: this client maps what it knows
//! from `serde_json::Value` and skips the rest. The transport is small:
//! newline-delimited JSON-RPC 2.0, numbered requests, and the agent's requests answered by id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

/// JSON-RPC error codes the client answers with.
pub const INVALID_PARAMS: i64 = -32602;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INTERNAL_ERROR: i64 = -32603;

/// One message from the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to one of our requests.
    Response { id: u64, result: Result<Value, RpcError> },
    /// A request the client must answer (`session/request_permission`, `fs/*`, `terminal/*`).
    Request { id: Value, method: String, params: Value },
    /// A notification (`session/update`).
    Notification { method: String, params: Value },
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)?;
        if let Some(data) = &self.data {
            write!(f, ": {data}")?;
        }
        Ok(())
    }
}

/// Why a line is not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the agent wrote a line that is not a JSON-RPC message: {line}")]
pub struct NotJsonRpc {
    /// The start of the line, for the error message.
    pub line: String,
}

/// Reads one line of the agent's stdout. `Ok(None)`: a blank line.
pub fn classify(line: &str) -> Result<Option<Incoming>, NotJsonRpc> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let bad = || NotJsonRpc { line: line.chars().take(200).collect() };
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(line) else { return Err(bad()) };
    let method = message.get("method").and_then(Value::as_str).map(String::from);
    let params = message.remove("params").unwrap_or(Value::Null);
    match (method, message.remove("id")) {
        (Some(method), Some(id)) if !id.is_null() => Ok(Some(Incoming::Request { id, method, params })),
        (Some(method), _) => Ok(Some(Incoming::Notification { method, params })),
        (None, Some(id)) => {
            // Our ids are numbers; an answer to anything else answers nothing we asked.
            let id = id.as_u64().ok_or_else(bad)?;
            let result = match message.remove("error") {
                Some(error) => Err(RpcError {
                    code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: error.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_string(),
                    data: error.get("data").cloned().filter(|d| !d.is_null()),
                }),
                None => Ok(message.remove("result").unwrap_or(Value::Null)),
            };
            Ok(Some(Incoming::Response { id, result }))
        }
        (None, None) => Err(bad()),
    }
}

/// Writes messages to the agent, in the order they are sent. Cheap to clone.
#[derive(Clone)]
pub struct Outgoing {
    lines: mpsc::UnboundedSender<String>,
    next_id: Arc<AtomicU64>,
}

impl Outgoing {
    /// Starts the writer task over the agent's stdin. It ends when every handle is dropped
    /// (closing stdin) or when a write fails (the agent is gone; its exit says the rest).
    pub fn start(mut stdin: ChildStdin) -> Outgoing {
        let (lines, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if let Err(err) = async {
                    stdin.write_all(line.as_bytes()).await?;
                    stdin.flush().await
                }
                .await
                {
                    tracing::debug!(%err, "writing to the ACP agent's stdin");
                    break;
                }
            }
        });
        Outgoing { lines, next_id: Arc::new(AtomicU64::new(0)) }
    }

    /// Sends a request; returns its id.
    pub fn request(&self, method: &str, params: Value) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    pub fn respond(&self, id: Value, result: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    pub fn respond_error(&self, id: Value, code: i64, message: impl Into<String>) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}}));
    }

    fn send(&self, message: Value) {
        // The writer is gone only when the agent's stdin is: its exit is reported elsewhere.
        let _ = self.lines.send(message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified_by_their_members() {
        let cases: Vec<(&str, Result<Option<Incoming>, ()>)> = vec![
            ("", Ok(None)),
            ("  ", Ok(None)),
            (
                r#"{"jsonrpc":"2.0","id":3,"result":{"stopReason":"end_turn"}}"#,
                Ok(Some(Incoming::Response { id: 3, result: Ok(json!({"stopReason": "end_turn"})) })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"auth required"}}"#,
                Ok(Some(Incoming::Response {
                    id: 1,
                    result: Err(RpcError { code: -32000, message: "auth required".into(), data: None }),
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"p1","method":"fs/read_text_file","params":{"path":"/x"}}"#,
                Ok(Some(Incoming::Request {
                    id: json!("p1"),
                    method: "fs/read_text_file".into(),
                    params: json!({"path": "/x"}),
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"session/update","params":{}}"#,
                Ok(Some(Incoming::Notification { method: "session/update".into(), params: json!({}) })),
            ),
            ("Welcome to the agent!", Err(())),
            ("[1,2]", Err(())),
            (r#"{"jsonrpc":"2.0"}"#, Err(())),
            (r#"{"jsonrpc":"2.0","id":"x","result":null}"#, Err(())),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line).map_err(|_| ()), want, "{line}");
        }
    }
}
