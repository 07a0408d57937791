//! A scripted OpenAI Responses API on 127.0.0.1:0, for Codex (through codex-acp).
//!
//! Each `POST .../responses` gets the next turn of the script as server-sent events
//! (`response.created`, output items and text deltas, `response.completed`); a turn may end
//! without completing and hang, for cancel tests. Anything else is answered 404 and logged, so a
//! new Codex version calling something new shows up in the test output.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
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
        let turns = Arc::new(Mutex::new(std::collections::VecDeque::from(turns)));
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = requests.clone();
        let app = Router::new()
            .fallback(move |method: Method, uri: Uri, body: Bytes| {
                let (turns, seen) = (turns.clone(), seen.clone());
                async move {
                    if method != Method::POST || !uri.path().ends_with("/responses") {
                        eprintln!("scripted responses: answering an unscripted {method} {uri} with 404");
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    match turns.lock().unwrap().pop_front() {
                        Some(turn) => super::scripted_api::sse(turn.events, turn.hang),
                        None => (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": {"message": "the script is exhausted"}})),
                        )
                            .into_response(),
                    }
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(32 << 20));
        let (addr, shutdown) = super::scripted_api::serve(app).await;
        ScriptedResponses { url: format!("http://{addr}/v1"), requests, _shutdown: shutdown }
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
