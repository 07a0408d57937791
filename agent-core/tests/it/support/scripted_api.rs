//! A scripted Anthropic Messages API on 127.0.0.1:0, for the real Claude Code CLI.
//!
//! Each streaming `POST /v1/messages` gets the next [`Turn`] of the script as server-sent
//! events (message_start, content_block_start/delta/stop, message_delta, message_stop), or an
//! API error. Whatever else the CLI asks (non-streaming messages, count_tokens, HEAD/GET probes)
//! gets a harmless answer and is logged, so a new CLI version calling something new shows up in
//! the test output rather than hanging it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// One answer to a streaming request.
#[derive(Debug, Clone)]
pub enum Turn {
    /// These SSE events, then the end of the response.
    Stream(Vec<Value>),
    /// These SSE events, then nothing more, ever (the connection stays open).
    StreamThenHang(Vec<Value>),
    /// An API error with this HTTP status, type and message (the last turn of a script, it
    /// answers every later request too).
    Error(u16, &'static str, &'static str),
}

/// A request the CLI made.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

pub struct ScriptedApi {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct State {
    turns: Arc<Mutex<std::collections::VecDeque<Turn>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl ScriptedApi {
    pub async fn start(turns: Vec<Turn>) -> ScriptedApi {
        let state = State { turns: Arc::new(Mutex::new(turns.into())), requests: Arc::default() };
        let requests = state.requests.clone();
        let app = Router::new()
            .fallback(move |method: Method, uri: Uri, body: Bytes| {
                let state = state.clone();
                async move { answer(state, method, uri, body) }
            })
            // Like the real API (32 MB), not axum's 2 MB default.
            .layer(axum::extract::DefaultBodyLimit::max(32 << 20));
        let (addr, shutdown) = serve(app).await;
        ScriptedApi { url: format!("http://{addr}"), requests, _shutdown: shutdown }
    }

    /// The streaming message requests made so far.
    pub fn message_requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.path.starts_with("/v1/messages") && !r.path.contains("count_tokens") && r.body["stream"] == true
            })
            .cloned()
            .collect()
    }
}

fn answer(state: State, method: Method, uri: Uri, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    state.requests.lock().unwrap().push(Request { method: method.clone(), path: path.clone(), body: body.clone() });
    if method != Method::POST || !path.starts_with("/v1/messages") {
        eprintln!("scripted API: answering an unscripted {method} {uri} with 200 {{}}");
        return axum::Json(json!({})).into_response();
    }
    if path.ends_with("/count_tokens") {
        return axum::Json(json!({"input_tokens": 10})).into_response();
    }
    if body["stream"] != true {
        eprintln!("scripted API: answering a non-streaming {uri} with a short message");
        return axum::Json(json!({
            "id": "msg_side", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}
        }))
        .into_response();
    }
    // Side requests on the small model (Claude Code's SDK asks haiku about the session when it
    // starts, as claude-code-acp does) get a short text and do not take a turn of the script.
    if body["model"].as_str().is_some_and(|m| m.contains("haiku")) {
        let Turn::Stream(events) = text_turn("msg_side", 1, &["ok"], 1) else { unreachable!() };
        return sse(events, false);
    }
    // A final error answers every later request too: the CLI retries some 400s (with other
    // tool sets) before giving up.
    let turn = {
        let mut turns = state.turns.lock().unwrap();
        if turns.len() == 1 && matches!(turns[0], Turn::Error(..)) {
            turns.front().cloned()
        } else {
            turns.pop_front()
        }
    };
    match turn {
        Some(Turn::Stream(events)) => sse(events, false),
        Some(Turn::StreamThenHang(events)) => sse(events, true),
        Some(Turn::Error(status, kind, message)) => (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "the script is exhausted"}})),
        )
            .into_response(),
    }
}

/// A scripted model API on 127.0.0.1:0 answering each `POST` whose path ends with `path` with the
/// next turn of `turns` (`answer` streams it) and recording its body; `aside` may answer a request
/// outside the script (neither scripted nor recorded). An exhausted script answers 400; anything
/// else is answered 404 and logged under `name`, so a new agent version calling something new
/// shows up in the test output. Returns the base URL (`http://127.0.0.1:PORT/v1`), the recorded
/// bodies, and what keeps the server up.
pub async fn serve_turns<T: Send + 'static>(
    name: &'static str,
    path: &'static str,
    turns: Vec<T>,
    answer: fn(T) -> Response,
    aside: fn(&Value) -> Option<Response>,
) -> (String, Arc<Mutex<Vec<Value>>>, tokio::sync::oneshot::Sender<()>) {
    let turns = Arc::new(Mutex::new(std::collections::VecDeque::from(turns)));
    let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = requests.clone();
    let app = Router::new()
        .fallback(move |method: Method, uri: Uri, body: Bytes| {
            let (turns, seen) = (turns.clone(), seen.clone());
            async move {
                if method != Method::POST || !uri.path().ends_with(path) {
                    eprintln!("{name}: answering an unscripted {method} {uri} with 404");
                    return StatusCode::NOT_FOUND.into_response();
                }
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(response) = aside(&body) {
                    return response;
                }
                seen.lock().unwrap().push(body);
                let next = turns.lock().unwrap().pop_front();
                match next {
                    Some(turn) => answer(turn),
                    None => {
                        (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "the script is exhausted"}})))
                            .into_response()
                    }
                }
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20));
    let (addr, shutdown) = serve(app).await;
    (format!("http://{addr}/v1"), requests, shutdown)
}

/// Serves `app` on 127.0.0.1:0 until the returned sender is dropped (the scripted model APIs).
pub async fn serve(app: Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx)
}

/// `events` as server-sent events (each named by its `type`), then the end of the response, or
/// nothing more ever when `hang`.
pub fn sse(events: Vec<Value>, hang: bool) -> Response {
    let frames = events.into_iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect();
    sse_frames(frames, hang)
}

/// Server-sent event `frames`, each written as given, then the end of the response, or nothing
/// more ever when `hang`.
pub fn sse_frames(frames: Vec<String>, hang: bool) -> Response {
    let frames: Vec<Result<Bytes, Infallible>> = frames.into_iter().map(|f| Ok(Bytes::from(f))).collect();
    let stream = futures_util::stream::iter(frames);
    let body =
        if hang { Body::from_stream(stream.chain(futures_util::stream::pending())) } else { Body::from_stream(stream) };
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap()
}

/// `message_start` with the input tokens of the turn.
pub fn message_start(id: &str, input_tokens: u64) -> Value {
    json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}
    }})
}

/// A text block streamed in `parts`.
pub fn text_block(index: u64, parts: &[&str]) -> Vec<Value> {
    let mut out =
        vec![json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})];
    for part in parts {
        out.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}}));
    }
    out.push(json!({"type": "content_block_stop", "index": index}));
    out
}

/// A `tool_use` block whose input arrives as one JSON delta.
pub fn tool_block(index: u64, id: &str, name: &str, input: Value) -> Vec<Value> {
    vec![
        json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
        json!({"type": "content_block_stop", "index": index}),
    ]
}

/// `message_delta` (stop reason and output tokens) and `message_stop`.
pub fn message_end(stop_reason: &str, output_tokens: u64) -> Vec<Value> {
    vec![
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}),
        json!({"type": "message_stop"}),
    ]
}

/// A turn that says `parts` and ends.
pub fn text_turn(id: &str, input_tokens: u64, parts: &[&str], output_tokens: u64) -> Turn {
    let mut events = vec![message_start(id, input_tokens)];
    events.extend(text_block(0, parts));
    events.extend(message_end("end_turn", output_tokens));
    Turn::Stream(events)
}

/// A turn that says `parts`, then calls Bash with `command`.
pub fn bash_turn(
    id: &str,
    input_tokens: u64,
    parts: &[&str],
    tool_id: &str,
    command: &str,
    output_tokens: u64,
) -> Turn {
    let mut events = vec![message_start(id, input_tokens)];
    events.extend(text_block(0, parts));
    events.extend(tool_block(1, tool_id, "Bash", json!({"command": command, "description": "scripted command"})));
    events.extend(message_end("tool_use", output_tokens));
    Turn::Stream(events)
}
