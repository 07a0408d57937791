//! The ACP agents this machine knows, by name (SPEC 14): the built-ins, found on `PATH`, and
//! custom ones from `--acp-agent NAME=COMMAND`, `FLIGHTDECK_AGENT_ACP_AGENTS` (a JSON object
//! name -> command) or the config file. A custom agent with a built-in's name replaces it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in agents: name, command.
pub const BUILTINS: &[(&str, &str)] = &[
    ("codex", "codex-acp"),
    ("opencode", "opencode acp"),
    ("gemini", "gemini --experimental-acp"),
    ("claude-acp", "claude-code-acp"),
];

/// How to install a built-in (for the error of a task whose agent is not found, and `agents`).
pub fn install_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "codex" => "npm install -g @zed-industries/codex-acp",
        "opencode" => "npm install -g opencode-ai",
        "gemini" => "npm install -g @google/gemini-cli",
        "claude-acp" => "npm install -g @zed-industries/claude-code-acp",
        _ => return None,
    })
}

/// One agent: its name and the command that starts it as an ACP server on stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpAgent {
    pub name: String,
    /// The program and its arguments (split like a shell would).
    pub command: Vec<String>,
    pub builtin: bool,
}

impl AcpAgent {
    /// The program's path when it can be run: a path as given, or found on `path_var` (`PATH`).
    pub fn locate(&self, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
        let program = Path::new(self.command.first()?);
        if program.components().count() > 1 {
            return is_executable(program).then(|| program.to_path_buf());
        }
        std::env::split_paths(path_var?).map(|dir| dir.join(program)).find(|p| is_executable(p))
    }

    /// `PROGRAM --version`'s first line, if it answers within two seconds.
    pub async fn version(&self, program: &Path) -> Option<String> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("--version").stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(2), cmd.output()).await.ok()?.ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        out.status.success().then(|| line.chars().take(80).collect())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why an agent definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentSpecError {
    #[error("`{0}` is not NAME=COMMAND")]
    NotNameEqualsCommand(String),
    #[error("invalid agent name `{0}`: use letters, digits, `-`, `_` and `.`")]
    BadName(String),
    #[error("the command of agent `{name}` cannot be split like a shell would: {command}")]
    BadCommand { name: String, command: String },
    #[error("FLIGHTDECK_AGENT_ACP_AGENTS is not a JSON object of name -> command: {0}")]
    BadJson(String),
}

/// The known agents, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpAgents {
    agents: BTreeMap<String, AcpAgent>,
}

impl Default for AcpAgents {
    /// The built-ins.
    fn default() -> AcpAgents {
        let mut agents = AcpAgents { agents: BTreeMap::new() };
        for (name, command) in BUILTINS {
            let command = shlex::split(command).expect("built-in commands split");
            agents.agents.insert(name.to_string(), AcpAgent { name: name.to_string(), command, builtin: true });
        }
        agents
    }
}

impl AcpAgents {
    /// Adds (or replaces) a custom agent.
    pub fn add(&mut self, name: &str, command: &str) -> Result<(), AgentSpecError> {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(AgentSpecError::BadName(name.to_string()));
        }
        let bad = || AgentSpecError::BadCommand { name: name.to_string(), command: command.to_string() };
        let argv = shlex::split(command).filter(|a| !a.is_empty()).ok_or_else(bad)?;
        self.agents.insert(name.to_string(), AcpAgent { name: name.to_string(), command: argv, builtin: false });
        Ok(())
    }

    /// Adds `NAME=COMMAND` (the form of `--acp-agent`).
    pub fn add_spec(&mut self, spec: &str) -> Result<(), AgentSpecError> {
        let (name, command) =
            spec.split_once('=').ok_or_else(|| AgentSpecError::NotNameEqualsCommand(spec.to_string()))?;
        self.add(name.trim(), command)
    }

    /// Adds the agents of a JSON object name -> command (`FLIGHTDECK_AGENT_ACP_AGENTS`).
    pub fn add_json(&mut self, json: &str) -> Result<(), AgentSpecError> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|e| AgentSpecError::BadJson(e.to_string()))?;
        for (name, command) in map {
            self.add(&name, &command)?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&AcpAgent> {
        self.agents.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &AcpAgent> {
        self.agents.values()
    }

    /// The `acp:<name>` capabilities of the agents that can run here (SPEC 14).
    pub fn capabilities(&self, path_var: Option<&std::ffi::OsStr>) -> Vec<String> {
        self.iter().filter(|a| a.locate(path_var).is_some()).map(|a| format!("acp:{}", a.name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_agents_come_from_specs_and_json() {
        let mut agents = AcpAgents::default();
        assert_eq!(agents.get("opencode").unwrap().command, vec!["opencode", "acp"]);
        agents.add_spec("mine='/opt/my agent/bin/run' --flag 'two words'").unwrap();
        assert_eq!(agents.get("mine").unwrap().command, vec!["/opt/my agent/bin/run", "--flag", "two words"]);
        agents.add_json(r#"{"codex": "npx codex-acp", "other": "other-acp --stdio"}"#).unwrap();
        let codex = agents.get("codex").unwrap();
        assert_eq!((codex.command.clone(), codex.builtin), (vec!["npx".into(), "codex-acp".into()], false));
        for bad in ["no-equals", "=cmd", "bad name=cmd", "x=", "x='unclosed"] {
            assert!(agents.add_spec(bad).is_err(), "{bad}");
        }
        assert!(agents.add_json("[1]").is_err());
    }

    #[test]
    fn agents_are_found_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("codex-acp");
        std::fs::write(&bin, "#!/bin/sh\necho 'codex-acp 9.9.9'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("opencode"), "not executable").unwrap();
        let agents = AcpAgents::default();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(agents.get("codex").unwrap().locate(Some(&path)), Some(bin));
        assert_eq!(agents.get("opencode").unwrap().locate(Some(&path)), None);
        assert_eq!(agents.capabilities(Some(&path)), vec!["acp:codex".to_string()]);
    }
}
