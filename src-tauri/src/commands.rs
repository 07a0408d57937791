//! The Tauri commands: each one calls one `Agent` operation and returns its answer, or a
//! `CommandError {code, message}` the window matches on by `code`. No logic lives here.
//!
//! Names and argument shapes are documented in `flightdeck_protocol::desktop::commands`.

use std::path::Path;

use flightdeck_agent_core::agent::AgentError;
use flightdeck_protocol::api::{
    AlertResponse, AlertsResponse, CreateTaskRequest, EventsResponse, Health, TaskListResponse, TaskResponse,
};
use flightdeck_protocol::desktop::{
    AlertQuery, ClaudeHooks, CockpitState, CommandError, DecideRequest, ReplyTaskRequest, SettingsUpdate, SettingsView,
    StartTaskRequest, TaskQuery, REALTIME_EVENT,
};
use flightdeck_protocol::realtime::TaskSnapshot;
use flightdeck_protocol::{Alert, RepoStatus, Task};
use tauri::{AppHandle, Emitter, Runtime, State};
use tauri_plugin_dialog::DialogExt;
use tauri_plugin_opener::OpenerExt;

use crate::Desktop;

type Answer<T> = Result<T, CommandError>;

fn internal(what: &str, e: impl std::fmt::Display) -> CommandError {
    AgentError::Internal(format!("{what}: {e}")).to_command_error()
}

#[tauri::command]
pub async fn cockpit_state(desktop: State<'_, Desktop>) -> Answer<CockpitState> {
    Ok(desktop.agent.cockpit_state().await?)
}

#[tauri::command]
pub async fn list_repos(desktop: State<'_, Desktop>) -> Answer<Vec<RepoStatus>> {
    Ok(desktop.agent.repos().await?)
}

#[tauri::command]
pub async fn add_repo(desktop: State<'_, Desktop>, path: String) -> Answer<RepoStatus> {
    Ok(desktop.agent.add_repo(Path::new(&path)).await?)
}

/// Asks for a folder with the system picker, then adds it; `None` when the user cancelled.
#[tauri::command]
pub async fn pick_repo<R: Runtime>(app: AppHandle<R>, desktop: State<'_, Desktop>) -> Answer<Option<RepoStatus>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog().file().set_title("Watch a git repository").pick_folder(move |folder| {
        let _ = tx.send(folder);
    });
    let Some(folder) = rx.await.map_err(|e| internal("folder picker", e))? else {
        return Ok(None);
    };
    let path = folder.into_path().map_err(|e| internal("folder picker", e))?;
    Ok(Some(desktop.agent.add_repo(&path).await?))
}

#[tauri::command]
pub async fn remove_repo(desktop: State<'_, Desktop>, id: String) -> Answer<()> {
    Ok(desktop.agent.remove_repo(&id).await?)
}

#[tauri::command]
pub async fn start_task(desktop: State<'_, Desktop>, request: StartTaskRequest) -> Answer<Task> {
    Ok(desktop.agent.start_task(request).await?)
}

#[tauri::command]
pub async fn cancel_task(desktop: State<'_, Desktop>, task_id: String) -> Answer<Task> {
    Ok(desktop.agent.cancel_task(&task_id).await?)
}

#[tauri::command]
pub async fn list_tasks(desktop: State<'_, Desktop>, query: Option<TaskQuery>) -> Answer<TaskListResponse> {
    Ok(desktop.agent.tasks(query.unwrap_or_default()).await?)
}

#[tauri::command]
pub async fn task_transcript(desktop: State<'_, Desktop>, task_id: String) -> Answer<TaskSnapshot> {
    Ok(desktop.agent.transcript(&task_id).await?)
}

#[tauri::command]
pub async fn list_alerts(desktop: State<'_, Desktop>, query: Option<AlertQuery>) -> Answer<AlertsResponse> {
    Ok(desktop.agent.alerts(query.unwrap_or_default()).await?)
}

#[tauri::command]
pub async fn acknowledge_alert(desktop: State<'_, Desktop>, id: String) -> Answer<Alert> {
    Ok(desktop.agent.acknowledge_alert(&id).await?)
}

#[tauri::command]
pub async fn get_settings(desktop: State<'_, Desktop>) -> Answer<SettingsView> {
    Ok(desktop.agent.settings().await?)
}

#[tauri::command]
pub async fn set_settings(desktop: State<'_, Desktop>, update: SettingsUpdate) -> Answer<SettingsView> {
    Ok(desktop.agent.set_settings(update).await?)
}

#[tauri::command]
pub async fn set_watching_paused(desktop: State<'_, Desktop>, paused: bool) -> Answer<()> {
    Ok(desktop.agent.set_watching_paused(paused).await?)
}

#[tauri::command]
pub async fn open_hud<R: Runtime>(app: AppHandle<R>, desktop: State<'_, Desktop>, repo: Option<String>) -> Answer<()> {
    let url = desktop.agent.hud_url(repo.as_deref()).await?;
    app.opener().open_url(url, None::<&str>).map_err(|e| internal("cannot open the browser", e))
}

// ---- the relay-compatible commands of the cockpit views ----

/// Subscribes the window to realtime topics; the snapshots (then the events) arrive on
/// [`REALTIME_EVENT`].
#[tauri::command]
pub async fn realtime_subscribe<R: Runtime>(
    app: AppHandle<R>,
    desktop: State<'_, Desktop>,
    topics: Vec<String>,
) -> Answer<()> {
    let mut failed = None;
    desktop
        .bus
        .subscribe_and_deliver(&desktop.agent, &topics, |frame| {
            if let Err(e) = app.emit(REALTIME_EVENT, frame) {
                failed.get_or_insert(e);
            }
        })
        .await?;
    match failed {
        Some(e) => Err(internal("cannot reach the window", e)),
        None => Ok(()),
    }
}

#[tauri::command]
pub async fn realtime_unsubscribe(desktop: State<'_, Desktop>, topics: Vec<String>) -> Answer<()> {
    desktop.bus.unsubscribe(&topics);
    Ok(())
}

#[tauri::command]
pub async fn task_events(
    desktop: State<'_, Desktop>,
    task_id: String,
    after: u64,
    limit: Option<u32>,
) -> Answer<EventsResponse> {
    Ok(desktop.agent.task_events(&task_id, after, limit).await?)
}

#[tauri::command]
pub async fn ack_alert(desktop: State<'_, Desktop>, id: String) -> Answer<AlertResponse> {
    Ok(AlertResponse { alert: desktop.agent.acknowledge_alert(&id).await? })
}

#[tauri::command]
pub async fn create_task(desktop: State<'_, Desktop>, request: CreateTaskRequest) -> Answer<TaskResponse> {
    let request = StartTaskRequest {
        executor: request.executor,
        repo: request.repo,
        title: request.title,
        payload: request.payload,
    };
    Ok(TaskResponse { task: desktop.agent.start_task(request).await? })
}

#[tauri::command]
pub async fn decide_permission(desktop: State<'_, Desktop>, request: DecideRequest) -> Answer<Task> {
    Ok(desktop.agent.decide(request).await?)
}

#[tauri::command]
pub async fn reply_task(desktop: State<'_, Desktop>, request: ReplyTaskRequest) -> Answer<Task> {
    Ok(desktop.agent.reply(request).await?)
}

#[tauri::command]
pub async fn claude_hooks(desktop: State<'_, Desktop>) -> Answer<ClaudeHooks> {
    Ok(desktop.agent.claude_hooks().await?)
}

#[tauri::command]
pub async fn set_claude_hooks(desktop: State<'_, Desktop>, installed: bool) -> Answer<ClaudeHooks> {
    Ok(desktop.agent.set_claude_hooks(installed).await?)
}

#[tauri::command]
pub async fn health() -> Answer<Health> {
    Ok(Health { status: "ok".into() })
}

/// The handler of every command above.
pub fn handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        cockpit_state,
        list_repos,
        add_repo,
        pick_repo,
        remove_repo,
        start_task,
        cancel_task,
        list_tasks,
        task_transcript,
        list_alerts,
        acknowledge_alert,
        get_settings,
        set_settings,
        set_watching_paused,
        open_hud,
        realtime_subscribe,
        realtime_unsubscribe,
        task_events,
        ack_alert,
        create_task,
        health,
        decide_permission,
        reply_task,
        claude_hooks,
        set_claude_hooks,
    ]
}
