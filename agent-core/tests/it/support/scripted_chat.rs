//! A scripted OpenAI-compatible Chat Completions API on 127.0.0.1:0, for OpenCode (an
//! `@ai-sdk/openai-compatible` provider in its config).
//!
//! Each streaming `POST .../chat/completions` gets the next turn of the script as
//! `chat.completion.chunk` server-sent events and `data: [DONE]`; a turn may stop short and hang,
//! for cancel tests. OpenCode also asks its model for a title for each new session, in a request
//! of its own: those get a fixed title and are neither scripted nor recorded, so a script is the
//! conversation only, whenever OpenCode happens to ask for the title. Anything else is answered
//! 404 and logged, so a new OpenCode version calling something new shows up in the test output.

use std::sync::{Arc, Mutex};

use axum::response::Response;
use serde_json::{json, Value};

/// One answer: its chunks (the `choices[0].delta`s and the last one's `finish_reason` and usage),
/// and whether the response then hangs (never finishes).
#[derive(Debug, Clone)]
pub struct Turn {
    pub chunks: Vec<Value>,
    pub hang: bool,
}

pub struct ScriptedChat {
    /// The base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    /// The bodies of the scripted (not the title) requests so far.
    pub requests: Arc<Mutex<Vec<Value>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl ScriptedChat {
    pub async fn start(turns: Vec<Turn>) -> ScriptedChat {
        let title = |body: &Value| is_title_request(body).then(|| stream(text_turn(&["A title"], 10, 2)));
        let (url, requests, shutdown) =
            super::scripted_api::serve_turns("scripted chat", "/chat/completions", turns, stream, title).await;
        ScriptedChat { url, requests, _shutdown: shutdown }
    }
}

/// OpenCode's title request: its own system prompt, "You are a title generator".
fn is_title_request(body: &Value) -> bool {
    body["messages"][0]["content"].as_str().is_some_and(|s| s.contains("You are a title generator"))
}

fn stream(turn: Turn) -> Response {
    let mut frames: Vec<String> = turn
        .chunks
        .into_iter()
        .map(|choice| {
            let mut chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "scripted", "choices": [choice]});
            if let Some(usage) = chunk["choices"][0].as_object_mut().and_then(|c| c.remove("usage")) {
                chunk["usage"] = usage;
            }
            format!("data: {chunk}\n\n")
        })
        .collect();
    if !turn.hang {
        frames.push("data: [DONE]\n\n".into());
    }
    super::scripted_api::sse_frames(frames, turn.hang)
}

/// The assistant's text, streamed in `parts`.
pub fn text(parts: &[&str]) -> Vec<Value> {
    parts.iter().map(|part| json!({"index": 0, "delta": {"role": "assistant", "content": part}})).collect()
}

/// A call of OpenCode's `bash` tool.
pub fn bash(call_id: &str, command: &str) -> Vec<Value> {
    let arguments = json!({"command": command, "description": "Run a command"}).to_string();
    vec![
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": "bash", "arguments": ""}}]}}),
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}}),
    ]
}

/// A whole answer: `chunks`, then the finish (`tool_calls` when it calls a tool) with the tokens.
pub fn turn(mut chunks: Vec<Value>, prompt_tokens: u64, completion_tokens: u64) -> Turn {
    let calls_a_tool = chunks.iter().any(|c| c["delta"]["tool_calls"].is_array());
    chunks.push(json!({"index": 0, "delta": {}, "finish_reason": if calls_a_tool { "tool_calls" } else { "stop" },
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}}));
    Turn { chunks, hang: false }
}

/// An answer of text only.
pub fn text_turn(parts: &[&str], prompt_tokens: u64, completion_tokens: u64) -> Turn {
    turn(text(parts), prompt_tokens, completion_tokens)
}

/// An answer that says `parts` and never finishes.
pub fn hanging(parts: &[&str]) -> Turn {
    Turn { chunks: text(parts), hang: true }
}

/// The `tool` messages (a tool's result going back to the model) of a request.
pub fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
