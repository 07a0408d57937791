/// The app's own commands. Tauri generates an `allow-<name>` permission for each, and
/// `capabilities/default.json` grants them to the main window; a command missing here cannot be
/// called at all. A test checks this list against `flightdeck_protocol::desktop::commands::ALL`.
const COMMANDS: &[&str] = &[
    "cockpit_state",
    "list_repos",
    "add_repo",
    "pick_repo",
    "remove_repo",
    "start_task",
    "cancel_task",
    "list_tasks",
    "task_transcript",
    "list_alerts",
    "acknowledge_alert",
    "get_settings",
    "set_settings",
    "set_watching_paused",
    "open_hud",
    "realtime_subscribe",
    "realtime_unsubscribe",
    "task_events",
    "ack_alert",
    "create_task",
    "health",
    "decide_permission",
    "reply_task",
    "claude_hooks",
    "set_claude_hooks",
];

fn main() {
    println!("cargo:rustc-env=FLIGHTDECK_COMMANDS={}", COMMANDS.join(","));
    // tauri.conf.json lives at the repository root, where users of Tauri expect it.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .config_path("../tauri.conf.json")
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("failed to run tauri-build");
}
