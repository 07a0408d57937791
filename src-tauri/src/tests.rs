//! The command layer through Tauri's mock runtime: real IPC requests, the real capability
//! file, the real agent on a temp data dir and a temp git repo.

use std::path::Path;
use std::time::Duration;

use flightdeck_agent_core::agent::{Agent, AgentConfig, CockpitBus};
use flightdeck_protocol::api::{EventsResponse, Health, TaskResponse};
use flightdeck_protocol::desktop::{commands, AgentEvent, CockpitState, CommandError};
use flightdeck_protocol::{RepoStatus, Task, TaskEvent, TaskStatus};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow};

use crate::{commands as handlers, context, Desktop};

fn git_repo(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["-c", "user.email=t@example.com", "-c", "user.name=T", "commit", "-q", "--allow-empty", "-m", "first"],
    ] {
        let out = std::process::Command::new("git").arg("-C").arg(&dir).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    dir
}

fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            // The app's own origin on Linux and macOS: the capability grants only local pages.
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().unwrap())
}

fn error_code(result: Result<Value, Value>) -> String {
    let error: CommandError = serde_json::from_value(result.expect_err("expected an error")).unwrap();
    error.code
}

#[test]
fn the_build_script_grants_exactly_the_protocol_commands() {
    let granted: Vec<&str> = env!("FLIGHTDECK_COMMANDS").split(',').collect();
    assert_eq!(granted, commands::ALL);
}

#[test]
fn the_window_may_call_every_command() {
    let capability: Value =
        serde_json::from_str(include_str!("../capabilities/default.json")).expect("capabilities/default.json");
    let allowed: Vec<&str> =
        capability["permissions"].as_array().expect("permissions").iter().filter_map(|p| p.as_str()).collect();
    for command in commands::ALL {
        let permission = format!("allow-{}", command.replace('_', "-"));
        assert!(allowed.contains(&permission.as_str()), "capabilities/default.json lacks {permission}");
    }
}

#[test]
fn commands_reach_the_agent_and_errors_carry_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git_repo(tmp.path(), "demo");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = AgentConfig::new(tmp.path().join("data"));
    config.extra_repos = vec![repo];
    let agent = runtime.block_on(Agent::start(config)).unwrap();
    let mut updates = agent.subscribe();

    let app = mock_builder().invoke_handler(handlers::handler()).build(context()).expect("the mock app builds");
    app.manage(Desktop { agent, bus: CockpitBus::new() });
    let window = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();

    let health: Health = serde_json::from_value(invoke(&window, "health", json!({})).unwrap()).unwrap();
    assert_eq!(health.status, "ok");
    let repos: Vec<RepoStatus> = serde_json::from_value(invoke(&window, "list_repos", json!({})).unwrap()).unwrap();
    assert_eq!(repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["demo"]);
    let state: CockpitState = serde_json::from_value(invoke(&window, "cockpit_state", json!({})).unwrap()).unwrap();
    assert_eq!(state.repos.len(), 1);

    // Errors are `{code, message}`.
    assert_eq!(error_code(invoke(&window, "add_repo", json!({"path": tmp.path().join("nope")}))), "not_a_git_repo");
    assert_eq!(error_code(invoke(&window, "remove_repo", json!({"id": "nope"}))), "repo_not_found");
    assert_eq!(error_code(invoke(&window, "task_transcript", json!({"taskId": "nope"}))), "task_not_found");
    assert_eq!(error_code(invoke(&window, "acknowledge_alert", json!({"id": "nope"}))), "alert_not_found");
    assert_eq!(error_code(invoke(&window, "open_hud", json!({}))), "relay_not_configured");
    assert_eq!(
        error_code(invoke(
            &window,
            "start_task",
            json!({"request": {"executor": "shell", "repo": "demo", "payload": {"command": ""}}})
        )),
        "invalid_input"
    );

    // A task started the way the cockpit views start one, then read back three ways.
    let created: TaskResponse = serde_json::from_value(
        invoke(
            &window,
            "create_task",
            json!({"request": {"executor": "shell", "repo": "demo", "payload": {"command": "echo via-ipc"}}}),
        )
        .unwrap(),
    )
    .unwrap();
    let id = created.task.id.clone();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(AgentEvent::TaskUpdate { task }) = updates.recv().await {
                    if task.id == id && task.status.is_terminal() {
                        break;
                    }
                }
            }
        })
        .await
        .expect("the task ends");
    });
    let task: Task = serde_json::from_value(invoke(&window, "cancel_task", json!({"taskId": id})).unwrap()).unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    let events: EventsResponse =
        serde_json::from_value(invoke(&window, "task_events", json!({"taskId": id, "after": 0})).unwrap()).unwrap();
    assert!(events
        .events
        .iter()
        .any(|e| matches!(&e.event, TaskEvent::Chunk { text, .. } if text.contains("via-ipc"))));
    let listed = invoke(&window, "list_tasks", json!({"query": {"status": "completed"}})).unwrap();
    assert_eq!(listed["total"], 1);
    let settings = invoke(&window, "set_settings", json!({"update": {"agentId": "desk-1"}})).unwrap();
    assert_eq!(settings["agentId"], "desk-1");
    invoke(&window, "realtime_subscribe", json!({"topics": ["repos", "tasks"]})).unwrap();
}
