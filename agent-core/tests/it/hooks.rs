//! `flightdeck-agent hooks install | uninstall | status` on a temp HOME, as a person runs them:
//! the user's Claude Code settings keep everything that is not Flightdeck's, byte for byte.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `flightdeck-agent hooks <what> --data-dir <data>` with `HOME` = `home`.
pub(crate) fn hooks(home: &Path, data: &Path, what: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck-agent"))
        .args(["hooks", what, "--data-dir"])
        .arg(data)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const EVENTS: [&str; 8] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PermissionRequest",
    "Notification",
    "Stop",
    "SessionEnd",
];

/// A user's settings with other hooks and keys (not in alphabetical order), in the layouts a
/// file may have: Claude Code's own (two spaces), four spaces, tabs without a final newline,
/// one line.
fn originals() -> Vec<(&'static str, String)> {
    let claude = r#"{
  "model": "opus",
  "permissions": {
    "allow": [
      "Bash(npm run test:*)"
    ],
    "deny": []
  },
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [
          {
            "type": "command",
            "command": "~/bin/audit.sh",
            "timeout": 5
          }
        ]
      }
    ],
    "Stop": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "notify-send done"
          }
        ]
      }
    ]
  },
  "env": {
    "ZED": "1",
    "ALPHA": "é ü 🚀"
  },
  "cleanupPeriodDays": 30
}
"#;
    let reindent = |unit: &str| -> String {
        claude
            .lines()
            .map(|l| {
                let depth = (l.len() - l.trim_start().len()) / 2;
                format!("{}{}", unit.repeat(depth), l.trim_start())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let one_line: String = claude.lines().map(|l| l.trim_start().replace("\": ", "\":")).collect();
    vec![
        ("claude's layout", claude.to_string()),
        ("four spaces", format!("{}\n", reindent("    "))),
        ("tabs, no final newline", reindent("\t")),
        ("one line", one_line),
    ]
}

#[test]
fn installed_twice_then_uninstalled_leaves_the_settings_byte_identical() {
    for (layout, original) in originals() {
        let home = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let settings = home.path().join(".claude/settings.json");
        std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
        std::fs::write(&settings, &original).unwrap();

        assert!(ok(hooks(home.path(), data.path(), "status")).contains("not installed"), "{layout}");
        ok(hooks(home.path(), data.path(), "install"));
        let once = std::fs::read_to_string(&settings).unwrap();
        ok(hooks(home.path(), data.path(), "install"));
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), once, "{layout}: installing again changes nothing");
        assert!(ok(hooks(home.path(), data.path(), "status")).starts_with("installed"), "{layout}");

        let value: Value = serde_json::from_str(&once).unwrap();
        let ours = |event: &str| -> Vec<String> {
            value["hooks"][event]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|group| group["hooks"].as_array().unwrap().iter())
                .filter_map(|h| h["command"].as_str())
                .filter(|c| c.contains(" hook"))
                .map(String::from)
                .collect()
        };
        let exe = env!("CARGO_BIN_EXE_flightdeck-agent");
        for event in EVENTS {
            let commands = ours(event);
            assert_eq!(commands.len(), 1, "{layout}: one Flightdeck hook for {event}: {once}");
            assert!(commands[0].starts_with(&format!("'{exe}' hook --data-dir '")), "{}", commands[0]);
            assert!(commands[0].contains(&data.path().display().to_string()), "{}", commands[0]);
        }
        // The user's hooks and keys are all there, in their order.
        assert_eq!(value["hooks"]["PreToolUse"][0]["hooks"][0]["command"], "~/bin/audit.sh");
        assert_eq!(value["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        let at = |key: &str| once.find(&format!("\"{key}\"")).unwrap();
        assert!(
            at("model") < at("permissions") && at("env") < at("cleanupPeriodDays") && at("ZED") < at("ALPHA"),
            "{layout}: the user's keys keep their order: {once}"
        );

        ok(hooks(home.path(), data.path(), "uninstall"));
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), original, "{layout}: byte-identical after uninstall");
        assert!(ok(hooks(home.path(), data.path(), "status")).contains("not installed"));
        // Uninstalling again changes nothing.
        ok(hooks(home.path(), data.path(), "uninstall"));
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), original);
    }
}

#[test]
fn a_missing_settings_file_is_created_and_a_broken_one_is_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let settings = home.path().join(".claude/settings.json");
    ok(hooks(home.path(), data.path(), "install"));
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(value["hooks"].as_object().unwrap().len(), EVENTS.len(), "{value}");
    ok(hooks(home.path(), data.path(), "uninstall"));
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{}\n");

    for broken in ["{\"model\": ", "[1, 2]", "{\"hooks\": []}", "{\"hooks\": {\"Stop\": {}}}"] {
        std::fs::write(&settings, broken).unwrap();
        for what in ["install", "uninstall", "status"] {
            let out = hooks(home.path(), data.path(), what);
            assert_eq!(out.status.code(), Some(1), "{what} {broken}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("settings.json") && err.contains("claude_settings_invalid"), "{what} {broken}: {err}");
            assert_eq!(std::fs::read_to_string(&settings).unwrap(), broken, "left as it was");
        }
    }
}
