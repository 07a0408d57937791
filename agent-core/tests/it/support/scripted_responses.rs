//! A scripted OpenAI Responses API on 127.0.0.1:0, for Codex (through codex-acp).
//!
//! Each `POST .../responses` gets the next turn of the script as server-sent events
//! (`response.created`, output items and text deltas, `response.completed`); a turn may end
//! without completing and hang, for cancel tests. Anything else is answered 404 and logged, so a
//! new Codex version calling something new shows up in the test output.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One answer: its SSE events, and whether the response then hangs (never completes).
#[derive(Debug, Clone)]
pub struct Turn {
    pub events: Vec<Value>,
    pub hang: bool,
}

pub struct ScriptedResponses {
    /// The base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    /// The bodies of the `responses` requests so far.
    pub requests: Arc<Mutex<Vec<Value>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl ScriptedResponses {
    pub async fn start(turns: Vec<Turn>) -> ScriptedResponses {
        let answer = |turn: Turn| super::scripted_api::sse(turn.events, turn.hang);
        let (url, requests, shutdown) =
            super::scripted_api::serve_turns("scripted responses", "/responses", turns, answer, |_| None).await;
        ScriptedResponses { url, requests, _shutdown: shutdown }
    }
}

/// An assistant message streamed in `parts`.
pub fn message(id: &str, parts: &[&str]) -> Vec<Value> {
    let mut out = vec![json!({"type": "response.output_item.added", "item":
        {"type": "message", "role": "assistant", "id": id, "content": []}})];
    for part in parts {
        out.push(json!({"type": "response.output_text.delta", "item_id": id, "delta": part}));
    }
    out.push(json!({"type": "response.output_item.done", "item":
        {"type": "message", "role": "assistant", "id": id, "content": [{"type": "output_text", "text": parts.concat()}]}}));
    out
}

/// A call of Codex's `exec_command` tool.
pub fn exec_command(call_id: &str, cmd: &str) -> Value {
    json!({"type": "response.output_item.done", "item": {"type": "function_call", "call_id": call_id,
        "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string()}})
}

/// A whole response: `response.created`, `items`, `response.completed` with the tokens.
pub fn turn(id: &str, items: Vec<Value>, input_tokens: u64, output_tokens: u64) -> Turn {
    let mut events = vec![json!({"type": "response.created", "response": {"id": id}})];
    events.extend(items);
    events.push(json!({"type": "response.completed", "response": {"id": id, "usage": {
        "input_tokens": input_tokens, "input_tokens_details": null, "output_tokens": output_tokens,
        "output_tokens_details": null, "total_tokens": input_tokens + output_tokens}}}));
    Turn { events, hang: false }
}

/// A response that starts, says `parts`, and never completes.
pub fn hanging(id: &str, parts: &[&str]) -> Turn {
    let mut events = vec![json!({"type": "response.created", "response": {"id": id}})];
    events.extend(message("msg_hang", parts).into_iter().take(1 + parts.len()));
    Turn { events, hang: true }
}

/// The `function_call_output` items of a request's input.
pub fn tool_outputs(request: &Value) -> Vec<String> {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| match &item["output"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
