//! The `claude` executor against the real Claude Code CLI (tools/node_modules/.bin/claude,
//! installed by `npm ci` in tools/), pointed at a scripted Messages API; and the stream-json
//! parser against lines recorded from that CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_agent_core::executor::stream_json::StreamJsonParser;
use flightdeck_agent_core::executor::ClaudeConfig;
use flightdeck_agent_core::runner::{NewTask, RunnerConfig};
use flightdeck_protocol::event::{ChunkStream, DiffFile, DiffStatus};
use flightdeck_protocol::{AlertKind, Executor, Severity, TaskEvent, TaskPayload, TaskStatus};
use serde_json::json;

use crate::support::scripted_api::{bash_turn, message_start, text_block, text_turn, ScriptedApi, Turn};
use crate::support::{git_repo, processes_in, wait_until, Harness};

const LONG: Duration = Duration::from_secs(40);
const MODEL: &str = "claude-sonnet-4-5";

pub(crate) fn claude_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/claude");
    assert!(bin.exists(), "the Claude Code CLI is not installed: run `npm ci` in tools/");
    bin
}

/// A runner whose Claude Code talks to `api`, with a temp HOME.
pub(crate) async fn harness(api: &ScriptedApi, home: &Path) -> Harness {
    let claude = ClaudeConfig {
        bin: Some(claude_bin()),
        env: vec![
            ("ANTHROPIC_BASE_URL".into(), api.url.clone()),
            ("ANTHROPIC_API_KEY".into(), "test".into()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(), "1".into()),
            ("HOME".into(), home.display().to_string()),
        ],
    };
    Harness::start(RunnerConfig { claude, ..Default::default() }).await
}

fn prompt(text: &str) -> TaskPayload {
    TaskPayload {
        prompt: Some(text.into()),
        model: Some(MODEL.into()),
        permission_mode: Some("acceptEdits".into()),
        allowed_tools: Some(vec!["Bash".into()]),
        ..Default::default()
    }
}

fn status(status: TaskStatus) -> TaskEvent {
    TaskEvent::Status { status, model: None, session_id: None }
}

fn assistant(text: &str) -> TaskEvent {
    TaskEvent::Chunk { text: text.into(), stream: ChunkStream::Assistant }
}

/// The events without `tool_progress` (whose count depends on timing) and with the session id
/// (random) replaced by "SESSION"; plus the progress ticks.
fn normalize(events: &[TaskEvent]) -> (Vec<TaskEvent>, Vec<f64>) {
    let mut ticks = Vec::new();
    let mut out = Vec::new();
    for event in events {
        match event {
            TaskEvent::ToolProgress { elapsed_secs, .. } => ticks.push(*elapsed_secs),
            TaskEvent::Status { status, model, session_id: Some(id) } => {
                assert!(!id.is_empty());
                out.push(TaskEvent::Status {
                    status: *status,
                    model: model.clone(),
                    session_id: Some("SESSION".into()),
                });
            }
            other => out.push(other.clone()),
        }
    }
    (out, ticks)
}

#[tokio::test]
async fn a_run_with_text_a_bash_tool_and_final_text() {
    let api = ScriptedApi::start(vec![
        bash_turn(
            "msg_01",
            120,
            &["Let me ", "create the file."],
            "toolu_01",
            "sleep 1.5; echo hi > made.txt; echo created",
            30,
        ),
        text_turn("msg_02", 150, &["All ", "done."], 5),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let h = harness(&api, home.path()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());

    let mut watch = h.create(NewTask::local("web", Executor::Claude, prompt("Make a file"))).await;
    let task = watch.end(LONG).await;
    let (events, ticks) = normalize(&watch.events);
    let Some(TaskEvent::Usage { total_cost_usd, .. }) = events.iter().find(|e| matches!(e, TaskEvent::Usage { .. }))
    else {
        panic!("no usage: {events:#?}");
    };
    let cost = *total_cost_usd;
    assert_eq!(
        events,
        vec![
            status(TaskStatus::Queued),
            TaskEvent::Status {
                status: TaskStatus::Running,
                model: Some(MODEL.into()),
                session_id: Some("SESSION".into())
            },
            TaskEvent::UserMessage { text: "Make a file".into() },
            assistant("Let me "),
            assistant("create the file."),
            TaskEvent::ToolStart {
                tool_id: "toolu_01".into(),
                tool_name: "Bash".into(),
                params: json!({"command": "sleep 1.5; echo hi > made.txt; echo created", "description": "scripted command"}),
            },
            TaskEvent::ToolDone { tool_id: "toolu_01".into(), output: "created".into(), is_error: false },
            assistant("All "),
            assistant("done."),
            TaskEvent::Usage { input_tokens: 270, output_tokens: 35, total_cost_usd: cost },
            TaskEvent::Diff {
                files: vec![DiffFile {
                    path: "made.txt".into(),
                    old_path: None,
                    status: DiffStatus::Added,
                    additions: 1,
                    deletions: 0,
                    binary: false
                }],
                patch:
                    "diff --git a/made.txt b/made.txt\nnew file mode 100644\nindex 0000000..45b983b\n--- /dev/null\n\
                        +++ b/made.txt\n@@ -0,0 +1 @@\n+hi\n"
                        .into(),
                truncated: false
            },
            TaskEvent::Done { summary: "All done.".into() },
            status(TaskStatus::Completed),
        ]
    );
    assert!(cost > 0.0, "the CLI prices the tokens");
    // A tool running 1.5 s gets a tick at 1 s (and maybe 2 s on a slow machine), in order.
    assert!(!ticks.is_empty() && ticks.iter().enumerate().all(|(i, t)| *t == (i + 1) as f64), "{ticks:?}");
    let progress_at = watch.events.iter().position(|e| matches!(e, TaskEvent::ToolProgress { .. })).unwrap();
    assert!(matches!(watch.events[progress_at - 1], TaskEvent::ToolStart { .. }));

    // The tool really ran in the repo, and the CLI sent its result back.
    assert_eq!(std::fs::read_to_string(repo.path().join("made.txt")).unwrap(), "hi\n");
    let requests = api.message_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].body.to_string().contains("created"), "the tool result goes back to the API");
    // Usage is on the task, in memory and in the store.
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!((task.input_tokens, task.output_tokens, task.cost_usd), (Some(270), Some(35), Some(cost)));
    assert_eq!(task.summary.as_deref(), Some("All done."));
    assert_eq!(h.runner.store().task(&task.id).unwrap().unwrap(), task);
}

#[tokio::test]
async fn an_api_error_gives_an_error_event() {
    let api = ScriptedApi::start(vec![Turn::Error(400, "invalid_request_error", "scripted failure")]).await;
    let home = tempfile::tempdir().unwrap();
    let h = harness(&api, home.path()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());

    let mut watch = h.create(NewTask::local("web", Executor::Claude, prompt("Fail please"))).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Failed, "{:#?}", watch.events);
    let (events, _) = normalize(&watch.events);
    let n = events.len();
    assert!(matches!(&events[n - 3], TaskEvent::Usage { total_cost_usd, .. } if *total_cost_usd == 0.0), "{events:#?}");
    let TaskEvent::Error { error } = &events[n - 2] else { panic!("no error event: {events:#?}") };
    assert!(error.contains("scripted failure"), "{error}");
    assert_eq!(events[n - 1], status(TaskStatus::Failed));
    assert_eq!(task.error.as_deref(), Some(error.as_str()));
    assert_eq!(watch.alerts.iter().map(|a| a.kind).collect::<Vec<_>>(), vec![AlertKind::TaskFailed]);
}

#[tokio::test]
async fn cancel_in_the_middle_of_a_stream_kills_the_cli() {
    let mut events = vec![message_start("msg_01", 100)];
    let mut block = text_block(0, &["Thinking ", "about it"]);
    block.pop(); // No content_block_stop: the stream stops in the middle.
    events.extend(block);
    let api = ScriptedApi::start(vec![Turn::StreamThenHang(events)]).await;
    let home = tempfile::tempdir().unwrap();
    let h = harness(&api, home.path()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());

    let mut watch = h.create(NewTask::local("web", Executor::Claude, prompt("Think forever"))).await;
    watch.until(LONG, |e| (e == &assistant("about it")).then_some(())).await;
    assert!(!processes_in(repo.path()).is_empty(), "the CLI runs in the repo");
    let asked = tokio::time::Instant::now();
    h.runner.cancel(&watch.task.id).await.unwrap();
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert!(asked.elapsed() < Duration::from_secs(5), "SIGTERM was enough: {:?}", asked.elapsed());
    assert_eq!(watch.events.last(), Some(&status(TaskStatus::Cancelled)));
    assert!(!watch.events.iter().any(|e| matches!(e, TaskEvent::Done { .. } | TaskEvent::Error { .. })));
    wait_until(Duration::from_secs(5), "no process is left in the repo", || processes_in(repo.path()).is_empty()).await;
}

#[tokio::test]
async fn an_exceeded_budget_stops_the_task() {
    // Two million input tokens cost dollars at any model's price; the budget is one cent.
    let api = ScriptedApi::start(vec![
        bash_turn("msg_01", 2_000_000, &["Working."], "toolu_01", "echo ran > ran.txt", 30),
        text_turn("msg_02", 100, &["Never said."], 5),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let h = harness(&api, home.path()).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());

    let payload = TaskPayload { max_cost_usd: Some(0.01), ..prompt("Spend a lot") };
    let mut watch = h.create(NewTask::local("web", Executor::Claude, payload)).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Failed, "{:#?}", watch.events);
    let (events, _) = normalize(&watch.events);
    let n = events.len();
    let TaskEvent::Usage { total_cost_usd, input_tokens, .. } = events[n - 3] else { panic!("{events:#?}") };
    assert!(total_cost_usd > 0.01 && input_tokens >= 2_000_000, "{events:#?}");
    let TaskEvent::Error { error } = &events[n - 2] else { panic!("{events:#?}") };
    assert!(error.starts_with("budget exceeded: spent $"), "{error}");
    assert!(error.ends_with("the limit is $0.0100"), "{error}");
    assert_eq!(events[n - 1], status(TaskStatus::Failed));
    assert_eq!(api.message_requests().len(), 1, "no turn after the budget is exceeded");
    assert_eq!(watch.alerts.len(), 1);
    assert_eq!((watch.alerts[0].kind, watch.alerts[0].severity), (AlertKind::BudgetExceeded, Severity::Critical));
    assert_eq!(task.cost_usd, Some(total_cost_usd));
}

#[tokio::test]
async fn a_missing_cli_or_one_that_dies_without_a_result_is_an_error() {
    let scripts = tempfile::tempdir().unwrap();
    let dying = scripts.path().join("dying-claude");
    std::fs::write(
        &dying,
        "#!/bin/sh\necho '{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"m\",\"session_id\":\"s\"}'\n\
         echo 'not json at all'\necho '{\"type\":\"rate_limit_event\"}'\necho 'first problem' >&2\necho 'Error: out of cheese' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&dying, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cases = [
        (
            scripts.path().join("no-such-claude"),
            vec![status(TaskStatus::Queued), TaskEvent::Error {
                error: format!(
                    "Claude Code CLI not found (`{}`): install it with `npm install -g @anthropic-ai/claude-code`, or set FLIGHTDECK_CLAUDE_BIN to its path",
                    scripts.path().join("no-such-claude").display()
                ),
            }],
        ),
        (
            dying.clone(),
            vec![
                status(TaskStatus::Queued),
                TaskEvent::Status { status: TaskStatus::Running, model: Some("m".into()), session_id: Some("s".into()) },
                TaskEvent::UserMessage { text: "hello".into() },
                TaskEvent::Error {
                    error: "Claude Code ended without a result (exit code 3): first problem\nError: out of cheese".into(),
                },
            ],
        ),
    ];
    for (bin, mut want) in cases {
        let claude = ClaudeConfig { bin: Some(bin.clone()), env: Vec::new() };
        let h = Harness::start(RunnerConfig { claude, ..Default::default() }).await;
        let repo = git_repo();
        h.add_repo("web", repo.path());
        let mut watch = h.create(NewTask::local("web", Executor::Claude, prompt("hello"))).await;
        let task = watch.end(LONG).await;
        want.push(status(TaskStatus::Failed));
        assert_eq!(watch.events, want, "{}", bin.display());
        assert_eq!(task.status, TaskStatus::Failed);
    }
}

/// Parses recorded lines, one parser per file, as the executor does.
fn parse_all(lines: &str) -> Vec<TaskEvent> {
    let mut parser = StreamJsonParser::new();
    lines.lines().flat_map(|l| parser.parse_line(l).unwrap_or_default()).collect()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

#[test]
fn the_parser_maps_recorded_cli_output() {
    let session = "9939230d-b0d9-457d-b561-97e94e30a5c0";
    let running = |model: &str, session: &str| TaskEvent::Status {
        status: TaskStatus::Running,
        model: Some(model.into()),
        session_id: Some(session.into()),
    };
    let cases: Vec<(&str, String, Vec<TaskEvent>)> = vec![
        (
            "a run with partial messages, a Bash tool and a final text",
            fixture("claude-tool-run.jsonl"),
            vec![
                running("claude-opus-5-5", session),
                assistant("Let me "),
                assistant("create the file."),
                TaskEvent::ToolStart {
                    tool_id: "toolu_01".into(),
                    tool_name: "Bash".into(),
                    params: json!({"command": "echo hi > made.txt && echo created", "description": "make file"}),
                },
                TaskEvent::ToolDone { tool_id: "toolu_01".into(), output: "created".into(), is_error: false },
                assistant("All "),
                assistant("done."),
                TaskEvent::Usage { input_tokens: 200, output_tokens: 35, total_cost_usd: 0.0015 },
                TaskEvent::Done { summary: "All done.".into() },
            ],
        ),
        (
            "an API error: a synthetic assistant message, never streamed, is shown once",
            fixture("claude-api-error.jsonl"),
            {
                let text = "Prompt is too long · this conversation is a single exchange and cannot be compacted — the request size comes mostly from system prompt, tool definitions, or attachments.";
                vec![
                    running("claude-opus-5-5", "369bc0fe-4fa1-4222-b0d3-f56c6390edcf"),
                    assistant(text),
                    TaskEvent::Usage { input_tokens: 0, output_tokens: 0, total_cost_usd: 0.0 },
                    TaskEvent::Error { error: text.into() },
                ]
            },
        ),
        (
            "the CLI's own budget stop: an error result with `errors` and no `result`",
            fixture("claude-budget.jsonl"),
            vec![
                running("claude-opus-5-5", "fb7e7ec8-b6cd-4b83-a405-02a504baa31a"),
                assistant("Let me "),
                assistant("create the file."),
                TaskEvent::ToolStart {
                    tool_id: "toolu_01".into(),
                    tool_name: "Bash".into(),
                    params: json!({"command": "echo hi > made.txt && echo created", "description": "make file"}),
                },
                TaskEvent::Usage { input_tokens: 2_000_000, output_tokens: 30, total_cost_usd: 8.0006 },
                TaskEvent::Error { error: "Reached maximum budget ($0.01)".into() },
            ],
        ),
        (
            "without partial messages the full assistant text is emitted once",
            [
                r#"{"type":"assistant","message":{"id":"msg_9","content":[{"type":"text","text":"Whole answer."},{"type":"thinking","thinking":"hmm"}]}}"#,
                r#"{"type":"assistant","message":{"id":"msg_9","content":[{"type":"tool_use","id":"toolu_9","name":"Read","input":{"file_path":"/x"}}]}}"#,
                r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":[{"type":"text","text":"line 1"},{"type":"text","text":"line 2"},{"type":"image","source":{}}],"is_error":true}]}}"#,
            ]
            .join("\n"),
            vec![
                assistant("Whole answer."),
                TaskEvent::ToolStart { tool_id: "toolu_9".into(), tool_name: "Read".into(), params: json!({"file_path": "/x"}) },
                TaskEvent::ToolDone { tool_id: "toolu_9".into(), output: "line 1\nline 2\n[image]".into(), is_error: true },
            ],
        ),
        (
            "unknown types, other system subtypes, rate limits, garbage and blank lines give nothing",
            [
                r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#,
                r#"{"type":"system","subtype":"status","status":"requesting"}"#,
                r#"{"type":"something_new","payload":{"a":1}}"#,
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}}"#,
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}}"#,
                r#"{"type":"user","message":{"role":"user","content":"a plain user message"}}"#,
                "this is not json",
                "[1, 2, 3]",
                "",
            ]
            .join("\n"),
            vec![],
        ),
        (
            "a text streamed for one message and repeated does not come twice; a new message's text does",
            [
                r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_a"}}}"#,
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}}"#,
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}}"#,
                r#"{"type":"assistant","message":{"id":"msg_a","content":[{"type":"text","text":"Hello"}]}}"#,
                r#"{"type":"assistant","message":{"id":"synthetic","content":[{"type":"text","text":"Hello"}]}}"#,
                r#"{"type":"result","subtype":"error_during_execution","is_error":true,"usage":{"input_tokens":5,"cache_read_input_tokens":7,"output_tokens":2},"total_cost_usd":0.5}"#,
            ]
            .join("\n"),
            vec![
                assistant("Hel"),
                assistant("lo"),
                assistant("Hello"),
                TaskEvent::Usage { input_tokens: 12, output_tokens: 2, total_cost_usd: 0.5 },
                TaskEvent::Error { error: "Claude Code ended with error_during_execution".into() },
            ],
        ),
    ];
    for (name, lines, want) in cases {
        assert_eq!(parse_all(&lines), want, "{name}");
    }
    let mut parser = StreamJsonParser::new();
    assert!(parser.parse_line("garbage").is_err(), "garbage is reported so it can be logged");
}

#[tokio::test]
async fn a_long_tool_output_is_truncated_in_its_event_and_kept_whole_locally() {
    // A stand-in CLI that prints recorded-style lines: a tool whose output is 3000 lines long.
    let scripts = tempfile::tempdir().unwrap();
    let bin = scripts.path().join("claude");
    let long: String = (1..=3000).map(|n| format!("line {n}\n")).collect();
    let result_line = json!({"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_7", "content": [{"type": "text", "text": long}], "is_error": false}
    ]}});
    let lines = [
        json!({"type": "system", "subtype": "init", "model": "m", "session_id": "s"}),
        json!({"type": "assistant", "message": {"id": "msg_1", "content": [
            {"type": "tool_use", "id": "toolu_7", "name": "Bash", "input": {"command": "seq 3000"}}
        ]}}),
        result_line,
        json!({"type": "result", "subtype": "success", "is_error": false, "result": "Listed.", "total_cost_usd": 0.01,
               "usage": {"input_tokens": 10, "output_tokens": 2}}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(scripts.path().join("lines.jsonl"), body).unwrap();
    std::fs::write(&bin, format!("#!/bin/sh\ncat '{}'\n", scripts.path().join("lines.jsonl").display())).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let claude = ClaudeConfig { bin: Some(bin), env: Vec::new() };
    let h = Harness::start(RunnerConfig { claude, tool_output_limit: 100, ..Default::default() }).await;
    let repo = git_repo();
    h.add_repo("web", repo.path());
    let mut watch = h.create(NewTask::local("web", Executor::Claude, prompt("list"))).await;
    let task = watch.end(LONG).await;
    assert_eq!(task.status, TaskStatus::Completed);
    let output = watch
        .events
        .iter()
        .find_map(|e| match e {
            TaskEvent::ToolDone { output, .. } => Some(output.clone()),
            _ => None,
        })
        .unwrap();
    let full = long.as_str();
    assert_eq!(
        output,
        format!(
            "{}\n… [output truncated: 100 of {} bytes shown; the full output is kept on the agent]",
            &full[..100],
            full.len()
        )
    );
    assert_eq!(h.runner.store().tool_output(&task.id, "toolu_7").unwrap().as_deref(), Some(full));
}
