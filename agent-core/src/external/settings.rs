//! Claude Code's user settings (`~/.claude/settings.json`): this agent's hooks are merged into
//! whatever is there, and `uninstall` removes exactly them (SPEC 9). Project settings
//! (`.claude/settings.json`, `settings.local.json` in a repo) are never touched.
//!
//! The file is edited as an ordered JSON tree ([`Json`]): the user's keys keep their order, and
//! the file is written back in its own layout (indent of two or four spaces or a tab, or one
//! line; a final newline or not), so that installing and then uninstalling gives back the same
//! bytes. The write is atomic (a temp file renamed over the original, its permissions kept).
//!
//! A hook of ours is a command `'<program>' hook [--data-dir '<dir>']` whose program is named
//! `flightdeck-agent` or `flightdeck`: that is how `uninstall` and `status` find them, whichever
//! binary installed them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The hook events this agent listens to.
pub const EVENTS: [&str; 8] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PermissionRequest",
    "Notification",
    "Stop",
    "SessionEnd",
];

/// Program names a hook of ours runs.
const PROGRAMS: [&str; 2] = ["flightdeck-agent", "flightdeck"];

/// Why the settings could not be changed; the file is then left as it was.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid Claude Code settings ({problem}): fix or move it, then try again")]
    Invalid { path: String, problem: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

impl HooksError {
    /// The stable code front ends match on.
    pub fn code(&self) -> &'static str {
        match self {
            HooksError::Invalid { .. } => flightdeck_protocol::desktop::error_codes::CLAUDE_SETTINGS_INVALID,
            HooksError::Read { .. } | HooksError::Write { .. } => flightdeck_protocol::desktop::error_codes::INTERNAL,
        }
    }
}

/// `<home>/.claude/settings.json`.
pub fn settings_path(home: &Path) -> PathBuf {
    home.join(".claude").join("settings.json")
}

/// The user's settings file, from `$HOME`.
pub fn user_settings_path() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| settings_path(Path::new(&h)))
}

/// The command a hook runs: this program with `hook`, and the data directory of the agent it
/// reaches when that is not the default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub program: PathBuf,
    pub data_dir: Option<PathBuf>,
}

impl HookCommand {
    /// The shell command line (Claude Code runs it with `sh -c`).
    pub fn line(&self) -> String {
        let mut line = format!("{} hook", shell_quote(&self.program.display().to_string()));
        if let Some(dir) = &self.data_dir {
            line.push_str(" --data-dir ");
            line.push_str(&shell_quote(&dir.display().to_string()));
        }
        line
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether a hook command is one of ours (see the module docs).
pub fn is_ours(command: &str) -> bool {
    let Some(rest) = command.strip_prefix('\'') else { return false };
    let Some(end) = rest.find("' hook") else { return false };
    let after = &rest[end + "' hook".len()..];
    let program = rest[..end].replace(r"'\''", "'");
    let name = Path::new(&program).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    PROGRAMS.contains(&name) && (after.is_empty() || after.starts_with(' '))
}

/// What [`status`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksStatus {
    /// Our hook commands, one per event that has one (the same line for all, normally).
    pub commands: Vec<String>,
}

impl HooksStatus {
    pub fn installed(&self) -> bool {
        !self.commands.is_empty()
    }
}

/// Adds our hook to every event in [`EVENTS`] (replacing one of ours already there, so a
/// second install changes nothing). `permission_wait` is how long the agent may hold a
/// `PermissionRequest`: its hook gets a timeout a little longer, so Claude Code never kills it
/// first. Returns whether the file changed.
pub fn install(path: &Path, command: &HookCommand, permission_wait: Duration) -> Result<bool, HooksError> {
    let file = SettingsFile::read(path)?;
    let mut root = file.root.clone().unwrap_or_else(|| Json::Object(Object::default()));
    let line = command.line();
    {
        let hooks = root.object_mut().expect("checked by read").entry("hooks", || Json::Object(Object::default()));
        let hooks = hooks.object_mut().ok_or_else(|| file.invalid("`hooks` is not an object"))?;
        for event in EVENTS {
            let groups = hooks.entry(event, || Json::Array(Vec::new()));
            let groups = groups.array_mut().ok_or_else(|| file.invalid(&format!("`hooks.{event}` is not a list")))?;
            let mut handler = vec![
                ("type".to_string(), Json::String("command".into())),
                ("command".to_string(), Json::String(line.clone())),
            ];
            if event == "PermissionRequest" {
                let secs = permission_wait.as_secs() + 30;
                handler.push(("timeout".to_string(), Json::Number(secs.into())));
            }
            let group = Json::Object(Object(vec![
                ("matcher".to_string(), Json::String("*".into())),
                ("hooks".to_string(), Json::Array(vec![Json::Object(Object(handler))])),
            ]));
            match groups.iter().position(group_is_ours) {
                Some(i) => groups[i] = group,
                None => groups.push(group),
            }
        }
    }
    file.write(&root)
}

/// Removes our hooks; an event list (and `hooks`) left empty by that is removed too. Returns
/// whether the file changed.
pub fn uninstall(path: &Path) -> Result<bool, HooksError> {
    let file = SettingsFile::read(path)?;
    let Some(mut root) = file.root.clone() else { return Ok(false) };
    file.check_hooks(&root)?;
    let object = root.object_mut().expect("checked by read");
    if let Some(hooks) = object.get_mut("hooks").and_then(Json::object_mut) {
        for event in EVENTS {
            if let Some(groups) = hooks.get_mut(event).and_then(Json::array_mut) {
                let before = groups.len();
                groups.retain(|g| !group_is_ours(g));
                if groups.is_empty() && before > 0 {
                    hooks.remove(event);
                }
            }
        }
        if hooks.0.is_empty() {
            object.remove("hooks");
        }
    }
    file.write(&root)
}

/// Our hook commands in the file.
pub fn status(path: &Path) -> Result<HooksStatus, HooksError> {
    let file = SettingsFile::read(path)?;
    let mut commands = Vec::new();
    if let Some(root) = &file.root {
        file.check_hooks(root)?;
        if let Some(Json::Object(hooks)) = root.get("hooks") {
            for (_, groups) in hooks {
                for group in groups.as_array().unwrap_or_default() {
                    if group_is_ours(group) {
                        commands.extend(handler_commands(group).into_iter().filter(|c| is_ours(c)));
                    }
                }
            }
        }
    }
    Ok(HooksStatus { commands })
}

/// A matcher group is ours when all its handlers are our commands (we write one per group).
fn group_is_ours(group: &Json) -> bool {
    let commands = handler_commands(group);
    !commands.is_empty() && commands.iter().all(|c| is_ours(c))
}

fn handler_commands(group: &Json) -> Vec<String> {
    group
        .get("hooks")
        .and_then(Json::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h.get("command").and_then(Json::as_str).map(String::from))
        .collect()
}

/// The file as read: its tree (`None`: no file) and its layout.
struct SettingsFile {
    path: PathBuf,
    root: Option<Json>,
    original: Option<String>,
    layout: Layout,
}

impl SettingsFile {
    fn read(path: &Path) -> Result<SettingsFile, HooksError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(HooksError::Read { path: shown, source }),
        };
        let mut file = SettingsFile { path: path.to_path_buf(), root: None, original: None, layout: Layout::DEFAULT };
        if let Some(text) = text {
            if !text.trim().is_empty() {
                let root: Json = serde_json::from_str(&text).map_err(|e| file.invalid(&e.to_string()))?;
                if root.object().is_none() {
                    return Err(file.invalid("it is not a JSON object"));
                }
                file.layout = Layout::of(&text);
                file.root = Some(root);
            }
            file.original = Some(text);
        }
        if let Some(root) = &file.root {
            file.check_hooks(root)?;
        }
        Ok(file)
    }

    /// `hooks` is an object of lists, as Claude Code expects.
    fn check_hooks(&self, root: &Json) -> Result<(), HooksError> {
        match root.get("hooks") {
            None => Ok(()),
            Some(Json::Object(events)) => match events.0.iter().find(|(_, groups)| groups.as_array().is_none()) {
                Some((event, _)) => Err(self.invalid(&format!("`hooks.{event}` is not a list"))),
                None => Ok(()),
            },
            Some(_) => Err(self.invalid("`hooks` is not an object")),
        }
    }

    fn invalid(&self, problem: &str) -> HooksError {
        HooksError::Invalid { path: self.path.display().to_string(), problem: problem.to_string() }
    }

    /// Writes `root` in the file's layout, unless that is what the file already holds.
    fn write(&self, root: &Json) -> Result<bool, HooksError> {
        let text = self.layout.render(root);
        if self.original.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let error = |source| HooksError::Write { path: self.path.display().to_string(), source };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(error)?;
        let temp = dir.join(format!(".settings.json.flightdeck-{}", std::process::id()));
        std::fs::write(&temp, &text).map_err(error)?;
        if let Ok(meta) = std::fs::metadata(&self.path) {
            let _ = std::fs::set_permissions(&temp, meta.permissions());
        }
        std::fs::rename(&temp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            error(e)
        })?;
        Ok(true)
    }
}

/// How a file is laid out: the indent of one level (`None`: all on one line) and a final newline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    indent: Option<String>,
    final_newline: bool,
}

impl Layout {
    /// Claude Code's own layout (two spaces, a final newline), for a new file.
    const DEFAULT: Layout = Layout { indent: Some(String::new()), final_newline: true };

    fn of(text: &str) -> Layout {
        let body = text.trim_end();
        let indent = if body.contains('\n') {
            // The first indented line is one level deep.
            let unit = body.lines().skip(1).map(|l| &l[..l.len() - l.trim_start().len()]).find(|ws| !ws.is_empty());
            Some(unit.unwrap_or("  ").to_string())
        } else {
            None
        };
        Layout { indent, final_newline: text.ends_with('\n') }
    }

    fn render(&self, root: &Json) -> String {
        let mut out = match self.indent.as_deref() {
            Some(indent) => {
                let indent = if indent.is_empty() { "  " } else { indent };
                let mut buf = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
                root.serialize(&mut ser).expect("serializing JSON to memory cannot fail");
                String::from_utf8(buf).expect("serde_json writes UTF-8")
            }
            None => serde_json::to_string(root).expect("serializing JSON to memory cannot fail"),
        };
        if self.final_newline {
            out.push('\n');
        }
        out
    }
}

/// A JSON value whose objects keep their keys in order (`serde_json::Value` sorts them unless
/// its `preserve_order` feature is on, which would change every crate's JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// An object's members in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Object(Vec<(String, Json)>);

impl Object {
    fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The member `key`, added at the end with `make` when absent.
    fn entry(&mut self, key: &str, make: impl FnOnce() -> Json) -> &mut Json {
        let i = match self.0.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.0.push((key.to_string(), make()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = &'a (String, Json);
    type IntoIter = std::slice::Iter<'a, (String, Json)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        self.object()?.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn object(&self) -> Option<&Object> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    fn object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    fn array_mut(&mut self) -> Option<&mut Vec<Json>> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(Object(members)) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members: Vec<(String, Json)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    // A repeated key: the last one wins, as in JavaScript.
                    members.retain(|(k, _)| *k != key);
                    members.push((key, value));
                }
                Ok(Json::Object(Object(members)))
            }
        }
        d.deserialize_any(JsonVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_commands_are_recognised_by_their_program_and_subcommand() {
        let table = [
            ("'/usr/local/bin/flightdeck-agent' hook", true),
            ("'/opt/x/flightdeck' hook --data-dir '/home/a/.local/share/fd'", true),
            ("'/it'\\''s/flightdeck-agent' hook", true),
            ("'/usr/bin/flightdeck-agent' hooks install", false),
            ("'/usr/bin/other' hook", false),
            ("flightdeck-agent hook", false),
            ("~/bin/audit.sh", false),
        ];
        for (command, ours) in table {
            assert_eq!(is_ours(command), ours, "{command}");
        }
        let command = HookCommand { program: "/it's/flightdeck-agent".into(), data_dir: Some("/data dir".into()) };
        assert_eq!(command.line(), r"'/it'\''s/flightdeck-agent' hook --data-dir '/data dir'");
        assert!(is_ours(&command.line()));
    }

    #[test]
    fn the_layout_is_read_from_the_file() {
        let table = [
            ("{\n  \"a\": 1\n}\n", Some("  "), true),
            ("{\n    \"a\": {\n        \"b\": 1\n    }\n}", Some("    "), false),
            ("{\n\t\"a\": 1\n}\n", Some("\t"), true),
            ("{\"a\":1}", None, false),
        ];
        for (text, indent, newline) in table {
            let layout = Layout::of(text);
            assert_eq!((layout.indent.as_deref(), layout.final_newline), (indent, newline), "{text:?}");
            let root: Json = serde_json::from_str(text).unwrap();
            assert_eq!(layout.render(&root), text);
        }
    }
}
