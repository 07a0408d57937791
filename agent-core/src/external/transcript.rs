//! A Claude Code session's transcript (`~/.claude/projects/<cwd>/<session id>.jsonl`): read
//! from a byte offset, whole lines only, and turned into the events of the turn it belongs to.
//!
//! The transcript's `assistant` and `user` lines have the shape of the CLI's stream-json lines,
//! so [`StreamJsonParser`] maps them (an assistant text block -> `chunk`, `tool_use` ->
//! `tool_start`, `tool_result` -> `tool_done`). Each content block is a line of its own and no
//! text is streamed as deltas, so no text comes twice. Every other line type (attachments,
//! queue operations, API request records, summaries, ...) and sidechain lines (subagents) are
//! skipped; a line that is not JSON is skipped with a warning. A last line without its newline
//! is still being written: it is left for the next read.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use flightdeck_protocol::TaskEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::executor::stream_json::StreamJsonParser;

/// The most read in one go; the rest waits for the next read.
const MAX_READ: u64 = 16 * 1024 * 1024;

/// The whole lines after `offset` (parsed; lines that are not JSON are dropped) and the offset
/// after the last of them. A missing file reads as empty.
pub(crate) fn read_lines(path: &Path, offset: u64) -> std::io::Result<(Vec<Value>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len < offset {
        // The file was replaced by a shorter one: nothing this session can follow.
        return Ok((Vec::new(), offset));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(file.take(MAX_READ));
    let mut lines = Vec::new();
    let mut at = offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break; // The end, or a line still being written.
        }
        at += n as u64;
        match serde_json::from_slice::<Value>(&buf) {
            Ok(value @ Value::Object(_)) => lines.push(value),
            _ if buf.iter().all(u8::is_ascii_whitespace) => {}
            _ => {
                tracing::warn!(path = %path.display(), offset = at, "skipping a transcript line that is not a JSON object")
            }
        }
    }
    Ok((lines, at))
}

/// What a turn's transcript lines have shown so far; saved with the session's position, so a
/// restarted agent goes on counting where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TurnProgress {
    /// Tokens of the API messages before the current one.
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// The API message being read (one line per content block, each with the message's usage).
    pub(crate) message_id: Option<String>,
    pub(crate) message_input_tokens: u64,
    pub(crate) message_output_tokens: u64,
    /// The last assistant message ended the turn (a stop reason other than `tool_use`).
    pub(crate) ended: bool,
    /// The last assistant text, the turn's summary when the `Stop` hook has none.
    pub(crate) last_text: String,
}

impl TurnProgress {
    /// `(input, output)` tokens of the turn so far (cache reads and writes count as input, as
    /// in the executor's `usage`).
    pub(crate) fn tokens(&self) -> (u64, u64) {
        (self.input_tokens + self.message_input_tokens, self.output_tokens + self.message_output_tokens)
    }

    /// The events of one transcript line of this turn.
    pub(crate) fn line(&mut self, parser: &mut StreamJsonParser, line: &Value) -> Vec<TaskEvent> {
        if line.get("isSidechain").and_then(Value::as_bool) == Some(true) {
            return Vec::new();
        }
        match line.get("type").and_then(Value::as_str) {
            Some("assistant") => {
                let message = &line["message"];
                self.count(message);
                match message.get("stop_reason").and_then(Value::as_str) {
                    Some("tool_use") | None => self.ended = false,
                    Some(_) => self.ended = true,
                }
                for block in message["content"].as_array().into_iter().flatten() {
                    if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        self.last_text = text.to_string();
                    }
                }
                parser.parse_value(line)
            }
            Some("user") => {
                let events = parser.parse_value(line);
                if !events.is_empty() {
                    self.ended = false; // A tool's result: the model answers it next.
                }
                events
            }
            _ => Vec::new(),
        }
    }

    fn count(&mut self, message: &Value) {
        let usage = &message["usage"];
        let n = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        let input = n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
        let output = n("output_tokens");
        let id = message.get("id").and_then(Value::as_str).map(String::from);
        if id.is_none() || id != self.message_id {
            self.input_tokens += self.message_input_tokens;
            self.output_tokens += self.message_output_tokens;
            self.message_id = id;
        }
        // The lines of one message repeat its usage: the last one counts.
        self.message_input_tokens = input;
        self.message_output_tokens = output;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flightdeck_protocol::event::ChunkStream;
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_lines_only_and_the_offset_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        assert_eq!(read_lines(&path, 0).unwrap(), (Vec::new(), 0), "a missing file reads as empty");
        let mut file = std::fs::File::create(&path).unwrap();
        write!(file, "{{\"type\":\"a\"}}\nnot json\n\n{{\"type\":\"b\"}}\n{{\"type\":\"c\"").unwrap();
        let (lines, offset) = read_lines(&path, 0).unwrap();
        assert_eq!(lines, vec![json!({"type": "a"}), json!({"type": "b"})]);
        assert_eq!(offset, 36, "up to the end of the last whole line");
        writeln!(file, "}}").unwrap();
        let (lines, end) = read_lines(&path, offset).unwrap();
        assert_eq!((lines, end), (vec![json!({"type": "c"})], 49));
        assert_eq!(read_lines(&path, end).unwrap(), (Vec::new(), end));
    }

    #[test]
    fn lines_become_the_events_of_the_turn() {
        let assistant = |id: &str, content: Value, stop: &str, output: u64| {
            json!({"type": "assistant", "uuid": "u", "message": {"id": id, "role": "assistant", "content": [content],
                "stop_reason": stop, "usage": {"input_tokens": 100, "cache_read_input_tokens": 10, "output_tokens": output}}})
        };
        let lines = [
            json!({"type": "user", "message": {"role": "user", "content": "make the file"}}),
            json!({"type": "attachment", "attachment": {"type": "date"}}),
            assistant("msg_1", json!({"type": "text", "text": "I will make it."}), "tool_use", 20),
            assistant(
                "msg_1",
                json!({"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "touch a"}}),
                "tool_use",
                20,
            ),
            json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok", "is_error": false}]}}),
            json!({"type": "assistant", "isSidechain": true, "message": {"id": "msg_x", "content": [{"type": "text", "text": "subagent"}], "stop_reason": "end_turn"}}),
            json!({"type": "some-future-line", "what": 1}),
            assistant("msg_2", json!({"type": "text", "text": "Made it."}), "end_turn", 5),
        ];
        let mut progress = TurnProgress::default();
        let mut parser = StreamJsonParser::new();
        let mut events = Vec::new();
        let mut ended = Vec::new();
        for line in &lines {
            events.extend(progress.line(&mut parser, line));
            ended.push(progress.ended);
        }
        let chunk = |t: &str| TaskEvent::Chunk { text: t.into(), stream: ChunkStream::Assistant };
        assert_eq!(
            events,
            vec![
                chunk("I will make it."),
                TaskEvent::ToolStart {
                    tool_id: "toolu_1".into(),
                    tool_name: "Bash".into(),
                    params: json!({"command": "touch a"})
                },
                TaskEvent::ToolDone { tool_id: "toolu_1".into(), output: "ok".into(), is_error: false },
                chunk("Made it."),
            ]
        );
        assert_eq!(ended, [false, false, false, false, false, false, false, true]);
        assert_eq!(progress.tokens(), (220, 25), "each message counted once");
        assert_eq!(progress.last_text, "Made it.");
    }
}
