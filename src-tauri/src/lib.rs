//! flightdeck-desktop: the Tauri shell of the local agent. Everything it shows comes from
//! `flightdeck_agent_core::agent::Agent`; this crate only wires it to Tauri.
//!
//! - [`commands`]: one Tauri command per `Agent` operation, errors as `{code, message}`.
//! - [`tray`]: draws the tray model (icon, tooltip, menu) that agent-core builds.
//! - this file: start-up (single instance, data dir, the agent), pushing agent events to the
//!   window (`app.emit`), notifications, the tray's actions, hide-on-close and Quit.
//!
//! Environment, for tests and first runs: `FLIGHTDECK_DATA_DIR` replaces the app data
//! directory; `FLIGHTDECK_REPOS` (colon-separated paths) adds repos to watch.

use std::path::PathBuf;
use std::time::Duration;

use flightdeck_agent_core::agent::{Agent, AgentConfig, CockpitBus, Notification};
use flightdeck_agent_core::tray::{TrayAction, TrayModel};
use flightdeck_protocol::desktop::{AgentEvent, CockpitFocus, EVENT, FOCUS_EVENT, REALTIME_EVENT};
use tauri::{AppHandle, Emitter, Manager, Runtime, WindowEvent};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_notification::NotificationExt;
use tauri_plugin_opener::OpenerExt;
use tokio::sync::broadcast;

pub mod commands;
pub mod tray;

/// How long Quit waits for cancelled tasks to end (SIGTERM, then SIGKILL after 5 s).
const QUIT_DEADLINE: Duration = Duration::from_secs(12);
const MAIN_WINDOW: &str = "main";

/// What the commands share: the agent, and the realtime topics the window follows.
pub struct Desktop {
    pub agent: Agent,
    pub bus: CockpitBus,
}

/// The app's configuration (`tauri.conf.json` at the repository root) and assets.
pub fn context<R: Runtime>() -> tauri::Context<R> {
    tauri::generate_context!("../tauri.conf.json")
}

/// The agent's configuration from the environment and the app's data directory.
pub fn agent_config(default_data_dir: PathBuf) -> AgentConfig {
    let data_dir = std::env::var_os("FLIGHTDECK_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default_data_dir);
    let mut config = AgentConfig::new(data_dir);
    config.extra_repos = std::env::var("FLIGHTDECK_REPOS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.trim().is_empty())
        .map(PathBuf::from)
        .collect();
    // Claude Code's hooks run `flightdeck-agent hook` when it is installed next to this app: it
    // starts in a few milliseconds, where this binary first loads the whole web view's libraries.
    config.hook_program = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("flightdeck-agent")))
        .filter(|agent| agent.is_file());
    config
}

/// `flightdeck hook --data-dir DIR`: what Claude Code's hooks run (see
/// `flightdeck_agent_core::external::hook`); without a data directory it does nothing.
pub fn hook(args: &[std::ffi::OsString]) {
    let data_dir = match args {
        [flag, dir] if flag == "--data-dir" => PathBuf::from(dir),
        _ => return,
    };
    flightdeck_agent_core::external::hook::run(&data_dir, std::io::stdin().lock(), std::io::stdout().lock());
}

pub fn run() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let app = tauri::Builder::default()
        // First: a second launch only brings the running instance's window forward.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| show_window(app)))
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .invoke_handler(commands::handler())
        .setup(|app| {
            let config = agent_config(app.path().app_data_dir()?);
            tracing::info!(data_dir = %config.data_dir.display(), "starting the agent");
            let agent = tauri::async_runtime::block_on(Agent::start(config))?;
            let events = agent.subscribe();
            let model = tauri::async_runtime::block_on(agent.tray_model())?;
            app.manage(Desktop { agent, bus: CockpitBus::new() });
            tray::create(app.handle(), &model, on_tray_action)?;
            tauri::async_runtime::spawn(forward_events(app.handle().clone(), events, model));
            tauri::async_runtime::spawn(stop_on_signal(app.handle().clone()));
            Ok(())
        })
        .on_window_event(keep_running_on_close)
        .build(context())
        .expect("cannot build the Flightdeck app");

    app.run(|_app, event| {
        // No window left is not a reason to stop: the tray is the app. Quit calls `exit`.
        if let tauri::RunEvent::ExitRequested { code: None, api, .. } = event {
            api.prevent_exit();
        }
    });
}

/// Closing the window hides it: the agent (and the tray) keep running until Quit.
pub fn keep_running_on_close<R: Runtime>(window: &tauri::Window<R>, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        if window.label() == MAIN_WINDOW {
            api.prevent_close();
            let _ = window.hide();
        }
    }
}

/// Pushes every agent event to the window (as itself and as realtime frames), raises
/// notifications, and keeps the tray current.
async fn forward_events<R: Runtime>(
    app: AppHandle<R>,
    mut events: broadcast::Receiver<AgentEvent>,
    mut model: TrayModel,
) {
    let desktop = app.state::<Desktop>();
    loop {
        let refresh_tray = match events.recv().await {
            Ok(event) => {
                let _ = app.emit(EVENT, &event);
                desktop
                    .bus
                    .publish(&desktop.agent, &event, |frame| {
                        let _ = app.emit(REALTIME_EVENT, frame);
                    })
                    .await;
                if let Some(notification) = Notification::for_event(&event) {
                    notify(&app, notification);
                }
                // Transcript lines change nothing in the tray.
                !matches!(event, AgentEvent::TaskEvent { .. })
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the window missed agent events");
                true
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if refresh_tray {
            match desktop.agent.tray_model().await {
                Ok(next) if next != model => {
                    tracing::info!(icon = ?next.icon, tooltip = %next.tooltip, "tray updated");
                    if let Err(e) = tray::apply(&app, &next, Some(&model)) {
                        tracing::warn!(error = %e, "cannot update the tray");
                    }
                    model = next;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot build the tray model"),
            }
        }
    }
}

fn notify<R: Runtime>(app: &AppHandle<R>, notification: Notification) {
    #[cfg(target_os = "linux")]
    if let Some(task_id) = notification.task_id.clone() {
        return notify_clickable(app, notification, task_id);
    }
    // No notification daemon (a bare X server, CI) is not worth more than a debug line.
    if let Err(e) = app.notification().builder().title(notification.title).body(notification.body).show() {
        tracing::debug!(error = %e, "cannot show a notification");
    }
}

/// A notification whose click opens the window on `task_id` (a task waiting for a decision).
/// Waiting for the click blocks, so it happens on a thread of its own, one per notification.
#[cfg(target_os = "linux")]
fn notify_clickable<R: Runtime>(app: &AppHandle<R>, notification: Notification, task_id: String) {
    let app = app.clone();
    std::thread::spawn(move || {
        let shown = notify_rust::Notification::new()
            .appname("Flightdeck")
            .summary(&notification.title)
            .body(&notification.body)
            .action("default", "Open Flightdeck")
            .show();
        match shown {
            Ok(handle) => handle.wait_for_action(|action| {
                if action == "default" {
                    tracing::info!(task = %task_id, "notification clicked: opening the window on the task");
                    show_window(&app);
                    let _ = app.emit(FOCUS_EVENT, CockpitFocus { repo: None, task_id: Some(task_id.clone()) });
                }
            }),
            Err(e) => tracing::debug!(error = %e, "cannot show a notification"),
        }
    });
}

fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

fn on_tray_action<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let Some(action) = TrayAction::parse(id) else { return };
    let app = app.clone();
    match action {
        TrayAction::OpenWindow => show_window(&app),
        TrayAction::ShowRepo(repo) => {
            show_window(&app);
            let _ = app.emit(FOCUS_EVENT, CockpitFocus { repo: Some(repo), task_id: None });
        }
        TrayAction::ShowTask(task_id) => {
            show_window(&app);
            let _ = app.emit(FOCUS_EVENT, CockpitFocus { repo: None, task_id: Some(task_id) });
        }
        TrayAction::OpenHud => {
            tauri::async_runtime::spawn(async move {
                let url = app.state::<Desktop>().agent.hud_url(None).await;
                match url.map(|url| app.opener().open_url(url, None::<&str>)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot open the browser"),
                    Err(e) => tracing::warn!(error = %e, "no HUD to open"),
                }
            });
        }
        TrayAction::PauseWatching | TrayAction::ResumeWatching => {
            let paused = action == TrayAction::PauseWatching;
            tauri::async_runtime::spawn(async move {
                if let Err(e) = app.state::<Desktop>().agent.set_watching_paused(paused).await {
                    tracing::warn!(error = %e, "cannot pause or resume watching");
                }
            });
        }
        TrayAction::Quit => {
            tauri::async_runtime::spawn(quit(app));
        }
    }
}

/// SIGTERM (logout, system shutdown, `kill`) or Ctrl-C: stop the tasks as Quit does, without
/// asking, so no task process outlives the app.
async fn stop_on_signal<R: Runtime>(app: AppHandle<R>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::warn!("cannot listen for SIGTERM and SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    tracing::info!("stopping: signal received");
    if let Err(e) = app.state::<Desktop>().agent.shutdown(QUIT_DEADLINE).await {
        tracing::warn!(error = %e, "shutdown");
    }
    app.exit(0);
}

/// Quit: with tasks running, asks first; then cancels them, waits for them to end (bounded),
/// and exits.
async fn quit<R: Runtime>(app: AppHandle<R>) {
    let desktop = app.state::<Desktop>();
    let active = desktop.agent.active_tasks().await.unwrap_or_default();
    if !active.is_empty() {
        let question = match active.len() {
            1 => format!("\"{}\" is still running. Quitting stops it.", active[0].title),
            n => format!("{n} tasks are still running. Quitting stops them."),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        app.dialog()
            .message(question)
            .title("Quit Flightdeck?")
            .kind(MessageDialogKind::Warning)
            .buttons(MessageDialogButtons::OkCancelCustom("Stop tasks and quit".into(), "Keep running".into()))
            .show(move |confirmed| {
                let _ = tx.send(confirmed);
            });
        if !rx.await.unwrap_or(false) {
            return;
        }
    }
    match desktop.agent.shutdown(QUIT_DEADLINE).await {
        Ok(left) if !left.is_empty() => tracing::warn!(tasks = left.len(), "tasks still running at exit"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "shutdown"),
    }
    app.exit(0);
}

#[cfg(test)]
mod tests;
