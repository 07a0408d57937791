//! Claude Code's `--output-format stream-json --verbose --include-partial-messages` lines,
//! mapped to `TaskEvent`s.
//!
//! | line | events |
//! |---|---|
//! | `system` / `init` | `status running` with `model` and `sessionId` |
//! | `stream_event` `content_block_delta` / `text_delta` | `chunk` (assistant) |
//! | `assistant` text block | nothing if its text was streamed as deltas, else one `chunk` |
//! | `assistant` `tool_use` block | `tool_start` (input as `params`) |
//! | `user` `tool_result` block | `tool_done` (content flattened to text) |
//! | `result` | `usage`, then `done` (summary = result) or `error` when `is_error` |
//! | anything else (`rate_limit_event`, other `system` subtypes, unknown types) | nothing |
//!
//! The full `assistant` message repeats text already streamed as deltas; the parser remembers
//! the text streamed for the current API message so no text is emitted twice, while a message
//! that was never streamed (no partial messages, or a synthetic error message) still shows.

use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::{TaskEvent, TaskStatus};
use serde_json::Value;

/// A line that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("not a stream-json line: {0}")]
pub struct NotStreamJson(String);

/// The state of one CLI run's stream.
#[derive(Debug, Default)]
pub struct StreamJsonParser {
    /// The id of the API message being streamed.
    current_message: Option<String>,
    /// The text streamed as deltas for the current API message.
    streamed_text: String,
}

impl StreamJsonParser {
    pub fn new() -> StreamJsonParser {
        StreamJsonParser::default()
    }

    /// The events of one line. Blank lines give none; a line that is not a JSON object is an
    /// error (the caller logs and skips it).
    pub fn parse_line(&mut self, line: &str) -> Result<Vec<TaskEvent>, NotStreamJson> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_str(line).map_err(|_| NotStreamJson(truncate_for_log(line)))?;
        if !value.is_object() {
            return Err(NotStreamJson(truncate_for_log(line)));
        }
        Ok(self.parse_value(&value))
    }

    /// The events of one line already parsed as JSON.
    pub fn parse_value(&mut self, v: &Value) -> Vec<TaskEvent> {
        match str_at(v, "type") {
            Some("system") if str_at(v, "subtype") == Some("init") => vec![TaskEvent::Status {
                status: TaskStatus::Running,
                model: str_at(v, "model").map(String::from),
                session_id: str_at(v, "session_id").map(String::from),
            }],
            Some("stream_event") => self.stream_event(v),
            Some("assistant") => self.assistant(v),
            Some("user") => tool_results(v),
            Some("result") => result(v),
            _ => Vec::new(),
        }
    }

    fn stream_event(&mut self, v: &Value) -> Vec<TaskEvent> {
        let event = &v["event"];
        match str_at(event, "type") {
            Some("message_start") => {
                self.current_message = str_at(&event["message"], "id").map(String::from);
                self.streamed_text.clear();
                Vec::new()
            }
            Some("content_block_delta") if str_at(&event["delta"], "type") == Some("text_delta") => {
                let text = str_at(&event["delta"], "text").unwrap_or_default();
                if text.is_empty() {
                    return Vec::new();
                }
                self.streamed_text.push_str(text);
                vec![TaskEvent::Chunk { text: text.to_string(), stream: ChunkStream::Assistant }]
            }
            _ => Vec::new(),
        }
    }

    fn assistant(&mut self, v: &Value) -> Vec<TaskEvent> {
        let message = &v["message"];
        let same_message = self.current_message.is_some() && str_at(message, "id") == self.current_message.as_deref();
        let mut out = Vec::new();
        for block in message["content"].as_array().into_iter().flatten() {
            match str_at(block, "type") {
                Some("text") => {
                    let text = str_at(block, "text").unwrap_or_default();
                    let already_streamed = same_message && self.streamed_text.contains(text);
                    if !text.is_empty() && !already_streamed {
                        out.push(TaskEvent::Chunk { text: text.to_string(), stream: ChunkStream::Assistant });
                    }
                }
                Some("tool_use") => out.push(TaskEvent::ToolStart {
                    tool_id: str_at(block, "id").unwrap_or_default().to_string(),
                    tool_name: str_at(block, "name").unwrap_or_default().to_string(),
                    params: block.get("input").cloned().unwrap_or(Value::Null),
                }),
                _ => {}
            }
        }
        out
    }
}

fn tool_results(v: &Value) -> Vec<TaskEvent> {
    let mut out = Vec::new();
    for block in v["message"]["content"].as_array().into_iter().flatten() {
        if str_at(block, "type") == Some("tool_result") {
            out.push(TaskEvent::ToolDone {
                tool_id: str_at(block, "tool_use_id").unwrap_or_default().to_string(),
                output: flatten_content(&block["content"]),
                is_error: block["is_error"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

fn result(v: &Value) -> Vec<TaskEvent> {
    let (input_tokens, output_tokens) = result_tokens(v);
    let usage =
        TaskEvent::Usage { input_tokens, output_tokens, total_cost_usd: v["total_cost_usd"].as_f64().unwrap_or(0.0) };
    let text = str_at(v, "result").unwrap_or_default().to_string();
    let end =
        if v["is_error"].as_bool().unwrap_or(false) || str_at(v, "subtype").is_some_and(|s| s.starts_with("error")) {
            let errors: Vec<&str> = v["errors"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let error = if !text.is_empty() {
                text
            } else if !errors.is_empty() {
                errors.join("; ")
            } else {
                format!("Claude Code ended with {}", str_at(v, "subtype").unwrap_or("an error"))
            };
            TaskEvent::Error { error }
        } else {
            TaskEvent::Done { summary: text }
        };
    vec![usage, end]
}

/// Input tokens (cache reads and writes included) and output tokens of a `result`: summed over
/// `modelUsage` (every model the run used), else the top-level `usage`.
fn result_tokens(v: &Value) -> (u64, u64) {
    let n = |v: &Value, key: &str| v[key].as_u64().unwrap_or(0);
    if let Some(models) = v["modelUsage"].as_object().filter(|m| !m.is_empty()) {
        models.values().fold((0, 0), |(i, o), m| {
            (
                i + n(m, "inputTokens") + n(m, "cacheReadInputTokens") + n(m, "cacheCreationInputTokens"),
                o + n(m, "outputTokens"),
            )
        })
    } else {
        let u = &v["usage"];
        (
            n(u, "input_tokens") + n(u, "cache_read_input_tokens") + n(u, "cache_creation_input_tokens"),
            n(u, "output_tokens"),
        )
    }
}

/// A `tool_result` content as text: a string as is, an array's text blocks joined by newlines
/// (other blocks, e.g. images, as a `[type]` placeholder).
pub fn flatten_content(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match (str_at(b, "type"), str_at(b, "text")) {
                (_, Some(text)) => text.to_string(),
                (Some(kind), None) => format!("[{kind}]"),
                (None, None) => b.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn truncate_for_log(line: &str) -> String {
    line.chars().take(200).collect()
}
