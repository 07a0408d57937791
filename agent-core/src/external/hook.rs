//! `flightdeck-agent hook`: what Claude Code runs for each hook event (SPEC 9).
//!
//! It must never slow Claude down nor change what it does, so it is plain blocking code with no
//! async runtime: read the hook's JSON from stdin, hand it to the agent on its control socket
//! (one request, one answer), and exit 0 whatever happens. Only an answer that carries a
//! decision for a `PermissionRequest` prints anything: Claude Code's `hookSpecificOutput`, which
//! allows or denies the tool. Every other outcome (no agent, a session outside the watched
//! repos, a bad input, no decision within the agent's wait) prints nothing, so Claude Code goes
//! on as if there were no hook (for a permission, the terminal asks). A hook fired by a
//! Claude Code that an agent's task runs is ignored the same way: the agent follows that session
//! as its task, not as a terminal session.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use flightdeck_protocol::event::Behavior;
use flightdeck_protocol::local::{ControlRequest, ControlResponse, HookDecision, HookInput};
use serde_json::json;

use super::settings::EVENTS;
use crate::agent::control::{socket_path, MAX_LINE};

/// The longest hook input read from stdin; a bigger one is not forwarded.
const MAX_INPUT: u64 = MAX_LINE as u64 - 1024;
/// How long the agent has to take a hook that does not wait for a person.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the hook: `stdin` is Claude Code's JSON, `stdout` what Claude Code reads back.
///
/// A hook of a Claude Code that an agent's task runs (its environment carries
/// [`TASK_ENV`](crate::executor::process::TASK_ENV)) is not a terminal session: that agent
/// records the session as the task itself, so the hook does nothing at all.
pub fn run(data_dir: &Path, stdin: impl Read, stdout: impl Write) {
    if crate::executor::process::started_by_a_task() {
        return;
    }
    let Some(mut input) = read_input(stdin) else { return };
    input.claude_pid = claude_process();
    let Some(decision) = ask_agent(data_dir, input) else { return };
    let _ = write_decision(stdout, &decision);
}

fn read_input(stdin: impl Read) -> Option<HookInput> {
    let mut text = Vec::new();
    stdin.take(MAX_INPUT + 1).read_to_end(&mut text).ok()?;
    if text.len() as u64 > MAX_INPUT {
        return None;
    }
    let input: HookInput = serde_json::from_slice(&text).ok()?;
    if !EVENTS.contains(&input.hook_event_name.as_str()) {
        return None;
    }
    Some(input)
}

/// The Claude Code process that ran this hook: the parent, or the parent's parent when a shell
/// ran the hook command. Read from `/proc` (Linux); elsewhere unknown.
fn claude_process() -> Option<u32> {
    let parent = std::os::unix::process::parent_id();
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
    if !matches!(comm.trim(), "sh" | "dash" | "bash" | "zsh") {
        return Some(parent);
    }
    let stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the command may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The decision the agent answers with, if any.
fn ask_agent(data_dir: &Path, input: HookInput) -> Option<HookDecision> {
    let waits = input.hook_event_name == "PermissionRequest";
    let mut line = serde_json::to_string(&ControlRequest::Hook { input }).ok()?;
    line.push('\n');
    let mut stream = UnixStream::connect(socket_path(data_dir)).ok()?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    // A permission request is held until someone decides or the agent's wait is over (Claude
    // Code's hook timeout, set a little longer at install, is the last bound).
    stream.set_read_timeout(if waits { None } else { Some(ANSWER_TIMEOUT) }).ok()?;
    stream.write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE as u64)).read_line(&mut answer).ok()?;
    match serde_json::from_str(answer.trim()).ok()? {
        ControlResponse::Hook { decision } if waits => decision,
        _ => None,
    }
}

/// Claude Code's answer to a `PermissionRequest` hook.
fn write_decision(mut stdout: impl Write, decision: &HookDecision) -> std::io::Result<()> {
    let decision = match decision.behavior {
        Behavior::Allow => match &decision.updated_input {
            Some(input) => json!({"behavior": "allow", "updatedInput": input}),
            None => json!({"behavior": "allow"}),
        },
        Behavior::Deny => json!({
            "behavior": "deny",
            "message": decision.message.clone().unwrap_or_else(|| "The user denied this from Flightdeck.".into()),
        }),
    };
    let output = json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}});
    writeln!(stdout, "{output}")?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_agent_the_hook_prints_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            r#"{"session_id":"s","transcript_path":"/t","cwd":"/","hook_event_name":"PermissionRequest","tool_name":"Bash"}"#,
            r#"{"session_id":"s","transcript_path":"/t","cwd":"/","hook_event_name":"Stop"}"#,
            "not json",
            "",
        ];
        for input in inputs {
            let mut out = Vec::new();
            run(dir.path(), input.as_bytes(), &mut out);
            assert!(out.is_empty(), "{input}");
        }
    }

    #[test]
    fn decisions_are_written_as_claude_code_reads_them() {
        let table = [
            (
                HookDecision { behavior: Behavior::Allow, updated_input: None, message: None },
                json!({"behavior": "allow"}),
            ),
            (
                HookDecision {
                    behavior: Behavior::Allow,
                    updated_input: Some(json!({"answers": {"q": "a"}})),
                    message: None,
                },
                json!({"behavior": "allow", "updatedInput": {"answers": {"q": "a"}}}),
            ),
            (
                HookDecision { behavior: Behavior::Deny, updated_input: None, message: Some("not here".into()) },
                json!({"behavior": "deny", "message": "not here"}),
            ),
        ];
        for (decision, want) in table {
            let mut out = Vec::new();
            write_decision(&mut out, &decision).unwrap();
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(got, json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": want}}));
        }
    }
}
