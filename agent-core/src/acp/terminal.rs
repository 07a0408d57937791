//! The client's terminals (ACP `terminal/*`): commands an agent runs through Flightdeck, in the
//! task's working tree only, each the leader of its own process group.
//!
//! A terminal is a tool of the transcript: `tool_start` when it is created, its output lines as
//! `chunk`s (stdout, stderr) as they come, `tool_done` with the exit when it ends. The agent reads
//! the same output back (`terminal/output`, at most `outputByteLimit` bytes, the oldest cut), or
//! waits for the exit (`terminal/wait_for_exit`, answered from the terminal's own task so the
//! session goes on meanwhile). Every terminal still running when the session ends is killed.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::TaskEvent;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::paths::WorkingTree;
use super::rpc::Outgoing;
use crate::executor::process::{describe_exit, read_line_lossy, signal_group, GroupChild};

/// The output kept per terminal when the agent names no limit.
const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

/// How a terminal's command ended: `(exit code, signal)`.
type Exit = (Option<i32>, Option<String>);

struct Terminal {
    pgid: i32,
    output: Arc<Mutex<Output>>,
    exit: watch::Receiver<Option<Exit>>,
}

#[derive(Default)]
struct Output {
    text: String,
    truncated: bool,
    limit: usize,
}

impl Output {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        if self.text.len() > self.limit {
            let mut cut = self.text.len() - self.limit;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
            self.truncated = true;
        }
    }
}

/// A session's terminals.
pub struct Terminals {
    events: mpsc::Sender<TaskEvent>,
    /// The task the terminals run for: their processes carry it (`FLIGHTDECK_TASK_ID`), like
    /// every process a task spawns.
    task_id: String,
    // A std Mutex inside each terminal: nothing awaits while holding it.
    open: HashMap<String, Terminal>,
}

impl Terminals {
    pub fn new(events: mpsc::Sender<TaskEvent>, task_id: String) -> Terminals {
        Terminals { events, task_id, open: HashMap::new() }
    }

    /// `terminal/create`: starts the command in the working tree; answers `{terminalId}`.
    pub async fn create(&mut self, tree: &WorkingTree, params: &Value, counter: &mut u64) -> Result<Value, String> {
        let command = params["command"].as_str().filter(|c| !c.is_empty()).ok_or("no command")?.to_string();
        let args: Vec<String> =
            params["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        let cwd = match params["cwd"].as_str() {
            Some(dir) => tree.resolve(dir).map_err(|e| e.to_string())?,
            None => tree.root().to_path_buf(),
        };
        // A command without arguments is a command line (agents send `npm test -- --watch=false`
        // as `command` alone): a shell runs it, as in a terminal.
        let mut cmd = if args.is_empty() {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(&command);
            sh
        } else {
            let mut direct = Command::new(&command);
            direct.args(&args);
            direct
        };
        cmd.current_dir(&cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for var in params["env"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
                cmd.env(name, value);
            }
        }
        let mut child =
            GroupChild::spawn(&mut cmd, &self.task_id).map_err(|e| format!("cannot start `{command}`: {e}"))?;
        *counter += 1;
        let terminal_id = format!("term-{counter}");
        let limit = params["outputByteLimit"].as_u64().map(|l| l as usize).unwrap_or(DEFAULT_OUTPUT_LIMIT);
        let output = Arc::new(Mutex::new(Output { limit, ..Default::default() }));
        let (exit_tx, exit) = watch::channel(None);
        let start = TaskEvent::ToolStart {
            tool_id: terminal_id.clone(),
            tool_name: "terminal".into(),
            params: json!({"command": command, "args": args, "cwd": cwd.display().to_string()}),
        };
        let _ = self.events.send(start).await;

        let pgid = child.pgid;
        let events = self.events.clone();
        let kept = output.clone();
        let tool_id = terminal_id.clone();
        tokio::spawn(async move {
            let out = forward(child.child.stdout.take(), ChunkStream::Stdout, kept.clone(), events.clone());
            let err = forward(child.child.stderr.take(), ChunkStream::Stderr, kept.clone(), events.clone());
            let status = child.child.wait().await;
            child.kill_leftovers();
            let _ = tokio::join!(out, err);
            use std::os::unix::process::ExitStatusExt;
            let (exit, how) = match &status {
                Ok(s) => ((s.code(), s.signal().map(|n| format!("signal {n}"))), describe_exit(s)),
                Err(e) => ((None, None), format!("unknown exit ({e})")),
            };
            let is_error = exit.0 != Some(0);
            let _ = exit_tx.send(Some(exit));
            let text = kept.lock().unwrap_or_else(|e| e.into_inner()).text.clone();
            let output = if text.is_empty() { how } else { format!("{text}\n({how})") };
            let _ = events.send(TaskEvent::ToolDone { tool_id, output, is_error }).await;
        });
        self.open.insert(terminal_id.clone(), Terminal { pgid, output, exit });
        Ok(json!({"terminalId": terminal_id}))
    }

    /// `terminal/output`, `wait_for_exit`, `kill`, `release`: answered on `out` (now, or when the
    /// command ends). An error is for the caller to answer.
    pub fn serve(&mut self, id: Value, method: &str, params: &Value, out: &Outgoing) -> Result<(), String> {
        let terminal_id = params["terminalId"].as_str().unwrap_or_default();
        let terminal = self.open.get(terminal_id).ok_or_else(|| format!("no terminal `{terminal_id}`"))?;
        match method {
            "terminal/output" => {
                let (text, truncated) = {
                    let kept = terminal.output.lock().unwrap_or_else(|e| e.into_inner());
                    (kept.text.clone(), kept.truncated)
                };
                let mut answer = json!({"output": text, "truncated": truncated});
                if let Some((code, signal)) = terminal.exit.borrow().clone() {
                    answer["exitStatus"] = json!({"exitCode": code, "signal": signal});
                }
                out.respond(id, answer);
            }
            "terminal/wait_for_exit" => {
                let mut exit = terminal.exit.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    let ended = exit.wait_for(Option::is_some).await.ok().and_then(|e| e.clone());
                    let (code, signal) = ended.unwrap_or((None, None));
                    out.respond(id, json!({"exitCode": code, "signal": signal}));
                });
            }
            "terminal/kill" => {
                signal_group(terminal.pgid, libc::SIGKILL);
                out.respond(id, json!({}));
            }
            _ => {
                // release: the command is killed if it still runs, and the terminal forgotten.
                if terminal.exit.borrow().is_none() {
                    signal_group(terminal.pgid, libc::SIGKILL);
                }
                self.open.remove(terminal_id);
                out.respond(id, json!({}));
            }
        }
        Ok(())
    }

    /// What a terminal printed so far (for a tool whose content names it).
    pub fn output(&self, terminal_id: &str) -> Option<String> {
        let terminal = self.open.get(terminal_id)?;
        Some(terminal.output.lock().unwrap_or_else(|e| e.into_inner()).text.clone())
    }

    /// Kills every terminal still running: a task's processes do not outlive it.
    pub fn kill_all(&mut self) {
        for (_, terminal) in self.open.drain() {
            if terminal.exit.borrow().is_none() {
                signal_group(terminal.pgid, libc::SIGKILL);
            }
        }
    }
}

/// Streams a pipe's lines as chunks and keeps them as the terminal's output.
async fn forward<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    stream: ChunkStream,
    kept: Arc<Mutex<Output>>,
    events: mpsc::Sender<TaskEvent>,
) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    while let Ok(Some(line)) = read_line_lossy(&mut reader, &mut buf).await {
        let text = format!("{line}\n");
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(&text);
        let _ = events.send(TaskEvent::Chunk { text, stream }).await;
    }
}
