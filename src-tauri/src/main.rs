// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The Claude Code hooks the settings switch installs run `flightdeck hook --data-dir DIR`:
    // served before anything of the app starts, so Claude is not kept waiting.
    if args.first().is_some_and(|a| a == "hook") {
        flightdeck_desktop::hook(&args[1..]);
        return;
    }
    flightdeck_desktop::run();
}
