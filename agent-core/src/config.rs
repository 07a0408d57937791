//! The agent's settings, layered: defaults, then a TOML file, then `FLIGHTDECK_AGENT_*`
//! environment variables (the environment wins); command-line flags go on top in `main`.
//!
//! The file is `--config FILE`, else `$FLIGHTDECK_AGENT_CONFIG`, else
//! `$XDG_CONFIG_HOME/flightdeck/agent.toml` (`~/.config/flightdeck/agent.toml`) when it exists:
//!
//! ```toml
//! data_dir = "/var/lib/flightdeck"       # FLIGHTDECK_AGENT_DATA_DIR
//! relay_url = "wss://relay.example.com"  # FLIGHTDECK_AGENT_RELAY_URL
//! key = "..."                            # FLIGHTDECK_AGENT_KEY (never printed)
//! agent_id = "build-box"                 # FLIGHTDECK_AGENT_AGENT_ID (default: the host name and a suffix made once per data dir)
//! repos = ["/src/web", "/src/api"]       # FLIGHTDECK_AGENT_REPOS (comma-separated)
//! scan = ["/src"]                        # FLIGHTDECK_AGENT_SCAN (comma-separated)
//! max_running = 4                        # FLIGHTDECK_AGENT_MAX_RUNNING
//! max_running_per_repo = 1               # FLIGHTDECK_AGENT_MAX_RUNNING_PER_REPO
//! claude_bin = "/usr/local/bin/claude"   # FLIGHTDECK_AGENT_CLAUDE_BIN (else FLIGHTDECK_CLAUDE_BIN, else `claude`)
//! hook_wait_secs = 600                   # FLIGHTDECK_AGENT_HOOK_WAIT_SECS: how long a terminal session's
//!                                        # permission prompt waits for a remote decision (SPEC 9)
//!
//! [acp_agents]                           # FLIGHTDECK_AGENT_ACP_AGENTS (a JSON object name -> command):
//! mine = "my-agent --acp"                # custom ACP agents (SPEC 14), beside the built-ins
//!
//! [task]                                 # defaults for every task's options
//! model = "sonnet"                       # FLIGHTDECK_AGENT_MODEL
//! permission_mode = "acceptEdits"        # FLIGHTDECK_AGENT_PERMISSION_MODE
//! allowed_tools = ["Bash", "Edit"]       # FLIGHTDECK_AGENT_ALLOWED_TOOLS (comma-separated)
//! max_cost_usd = 5.0                     # FLIGHTDECK_AGENT_MAX_COST_USD
//! timeout_secs = 3600                    # FLIGHTDECK_AGENT_TIMEOUT_SECS
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use flightdeck_protocol::TaskPayload;
use serde::Deserialize;

use crate::acp::{AcpAgents, AgentSpecError};
use crate::executor::{AcpConfig, ClaudeConfig};
use crate::runner::RunnerConfig;

/// The prefix of the agent's environment variables.
pub const ENV_PREFIX: &str = "FLIGHTDECK_AGENT_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    #[error("{var}={value:?}: {problem}")]
    Env { var: String, value: String, problem: String },
}

/// Defaults for the options of every task; a task's own options win.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskDefaults {
    pub model: Option<String>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Option<Vec<String>>,
    pub max_cost_usd: Option<f64>,
    pub timeout_secs: Option<u64>,
}

/// The agent's settings. `Debug` hides the key.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `None`: [`Settings::default_data_dir`].
    pub data_dir: Option<PathBuf>,
    pub relay_url: Option<String>,
    pub key: Option<String>,
    pub agent_id: Option<String>,
    pub repos: Vec<PathBuf>,
    pub scan: Vec<PathBuf>,
    pub max_running: usize,
    pub max_running_per_repo: usize,
    pub claude_bin: Option<PathBuf>,
    pub task: TaskDefaults,
    /// First reconnect delay of the relay link; it doubles up to `link_backoff_cap_ms`.
    pub link_backoff_base_ms: u64,
    pub link_backoff_cap_ms: u64,
    /// How long a `PermissionRequest` hook of a terminal session waits for a decision from
    /// Flightdeck before the terminal asks (0: the terminal always asks).
    pub hook_wait_secs: u64,
    /// Custom ACP agents, name -> command (split like a shell would); a built-in's name replaces it.
    pub acp_agents: std::collections::BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Settings {
        let runner = RunnerConfig::default();
        Settings {
            data_dir: None,
            relay_url: None,
            key: None,
            agent_id: None,
            repos: Vec::new(),
            scan: Vec::new(),
            max_running: runner.max_running,
            max_running_per_repo: runner.max_running_per_repo,
            claude_bin: None,
            task: TaskDefaults::default(),
            link_backoff_base_ms: 1_000,
            link_backoff_cap_ms: 30_000,
            hook_wait_secs: 600,
            acp_agents: Default::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("relay_url", &self.relay_url)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("agent_id", &self.agent_id)
            .field("repos", &self.repos)
            .field("scan", &self.scan)
            .field("max_running", &self.max_running)
            .field("max_running_per_repo", &self.max_running_per_repo)
            .field("claude_bin", &self.claude_bin)
            .field("task", &self.task)
            .field("link_backoff_base_ms", &self.link_backoff_base_ms)
            .field("link_backoff_cap_ms", &self.link_backoff_cap_ms)
            .field("hook_wait_secs", &self.hook_wait_secs)
            .field("acp_agents", &self.acp_agents)
            .finish()
    }
}

impl Settings {
    /// Loads the layers from the real file system and environment. `config_file` is the
    /// `--config` flag: a file named there (or in `$FLIGHTDECK_AGENT_CONFIG`) must exist; the
    /// default file is optional.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let explicit = config_file.map(Path::to_path_buf).or_else(|| env_path("FLIGHTDECK_AGENT_CONFIG"));
        let (path, required) = match explicit {
            Some(path) => (Some(path), true),
            None => (Settings::default_config_path(), false),
        };
        let toml = match &path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some((path.display().to_string(), text)),
                Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(ConfigError::Read { path: path.display().to_string(), source }),
            },
            None => None,
        };
        Settings::from_layers(toml.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), std::env::vars())
    }

    /// Defaults, then `toml` (`(path for messages, text)`), then the `FLIGHTDECK_AGENT_*`
    /// variables among `env`.
    pub fn from_layers(
        toml: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = match toml {
            Some((path, text)) => {
                toml::from_str(text).map_err(|e| ConfigError::Toml { path: path.into(), message: e.to_string() })?
            }
            None => Settings::default(),
        };
        for (var, value) in env {
            let Some(name) = var.strip_prefix(ENV_PREFIX) else { continue };
            settings.apply_env(name, &var, value)?;
        }
        settings.acp_agents().map_err(|e| ConfigError::Toml { path: "acp_agents".into(), message: e.to_string() })?;
        Ok(settings)
    }

    fn apply_env(&mut self, name: &str, var: &str, value: String) -> Result<(), ConfigError> {
        fn parse<T: FromStr>(var: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                var: var.into(),
                value: value.into(),
                problem: e.to_string(),
            })
        }
        let list =
            |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>();
        let text = |v: String| Some(v).filter(|v| !v.trim().is_empty());
        match name {
            "DATA_DIR" => self.data_dir = text(value).map(PathBuf::from),
            "RELAY_URL" => self.relay_url = text(value),
            "KEY" => self.key = text(value),
            "AGENT_ID" => self.agent_id = text(value),
            "REPOS" => self.repos = list(&value).into_iter().map(PathBuf::from).collect(),
            "SCAN" => self.scan = list(&value).into_iter().map(PathBuf::from).collect(),
            "MAX_RUNNING" => self.max_running = parse(var, &value)?,
            "MAX_RUNNING_PER_REPO" => self.max_running_per_repo = parse(var, &value)?,
            "CLAUDE_BIN" => self.claude_bin = text(value).map(PathBuf::from),
            "MODEL" => self.task.model = text(value),
            "PERMISSION_MODE" => self.task.permission_mode = text(value),
            "ALLOWED_TOOLS" => self.task.allowed_tools = Some(list(&value)).filter(|l| !l.is_empty()),
            "MAX_COST_USD" => self.task.max_cost_usd = Some(parse(var, &value)?),
            "TIMEOUT_SECS" => self.task.timeout_secs = Some(parse(var, &value)?),
            "LINK_BACKOFF_BASE_MS" => self.link_backoff_base_ms = parse(var, &value)?,
            "LINK_BACKOFF_CAP_MS" => self.link_backoff_cap_ms = parse(var, &value)?,
            "HOOK_WAIT_SECS" => self.hook_wait_secs = parse(var, &value)?,
            "ACP_AGENTS" => {
                let agents = serde_json::from_str(&value).map_err(|e| ConfigError::Env {
                    var: var.into(),
                    value: value.clone(),
                    problem: format!("not a JSON object of name -> command: {e}"),
                })?;
                self.acp_agents.extend::<std::collections::BTreeMap<String, String>>(agents);
            }
            // The config file's own variable, read before the layers.
            "CONFIG" => {}
            _ => tracing::warn!(%var, "unknown setting in the environment, ignored"),
        }
        Ok(())
    }

    /// `$XDG_CONFIG_HOME/flightdeck/agent.toml`, else `~/.config/flightdeck/agent.toml`.
    pub fn default_config_path() -> Option<PathBuf> {
        env_path("XDG_CONFIG_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".config")))
            .map(|dir| dir.join("flightdeck").join("agent.toml"))
    }

    /// `$XDG_DATA_HOME/flightdeck`, else `~/.local/share/flightdeck`, else `./flightdeck-data`.
    pub fn default_data_dir() -> PathBuf {
        env_path("XDG_DATA_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".local").join("share")))
            .map(|dir| dir.join("flightdeck"))
            .unwrap_or_else(|| PathBuf::from("flightdeck-data"))
    }

    /// The hooks' permission wait.
    pub fn hook_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.hook_wait_secs)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(Settings::default_data_dir)
    }

    /// The ACP agents: the built-ins, then `acp_agents`.
    pub fn acp_agents(&self) -> Result<AcpAgents, AgentSpecError> {
        let mut agents = AcpAgents::default();
        for (name, command) in &self.acp_agents {
            agents.add(name, command)?;
        }
        Ok(agents)
    }

    /// The task runner's configuration from these settings.
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            data_dir: Some(self.data_dir()),
            agent_id: self.agent_id.clone(),
            max_running: self.max_running.max(1),
            max_running_per_repo: self.max_running_per_repo.max(1),
            claude: ClaudeConfig { bin: self.claude_bin.clone(), env: Vec::new() },
            // Checked when the settings were loaded.
            acp: AcpConfig { agents: self.acp_agents().unwrap_or_default(), ..AcpConfig::default() },
            ..RunnerConfig::default()
        }
    }

    /// Fills the options a task left unset from `[task]`.
    pub fn apply_task_defaults(&self, payload: &mut TaskPayload) {
        let d = &self.task;
        payload.model = payload.model.take().or_else(|| d.model.clone());
        payload.permission_mode = payload.permission_mode.take().or_else(|| d.permission_mode.clone());
        payload.allowed_tools = payload.allowed_tools.take().or_else(|| d.allowed_tools.clone());
        payload.max_cost_usd = payload.max_cost_usd.or(d.max_cost_usd);
        payload.timeout_secs = payload.timeout_secs.or(d.timeout_secs);
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_apply_in_order_and_the_environment_wins() {
        let toml = r#"
            relay_url = "wss://from-file"
            key = "file-key"
            max_running = 8
            repos = ["/a", "/b"]
            [task]
            model = "opus"
            timeout_secs = 60
        "#;
        type Case<'a> = (Option<&'a str>, Vec<(String, String)>, Box<dyn Fn(&Settings) -> bool>);
        let cases: Vec<Case<'_>> = vec![
            (None, env(&[]), Box::new(|s| *s == Settings::default())),
            (
                Some(toml),
                env(&[]),
                Box::new(|s| s.relay_url.as_deref() == Some("wss://from-file") && s.max_running == 8),
            ),
            (
                Some(toml),
                env(&[
                    ("FLIGHTDECK_AGENT_RELAY_URL", "wss://from-env"),
                    ("FLIGHTDECK_AGENT_MAX_RUNNING", "2"),
                    ("FLIGHTDECK_AGENT_REPOS", "/x, /y"),
                    ("FLIGHTDECK_AGENT_ALLOWED_TOOLS", "Bash,Edit"),
                    ("FLIGHTDECK_AGENT_MAX_COST_USD", "0.5"),
                    ("UNRELATED", "1"),
                ]),
                Box::new(|s| {
                    s.relay_url.as_deref() == Some("wss://from-env")
                        && s.max_running == 2
                        && s.repos == [PathBuf::from("/x"), PathBuf::from("/y")]
                        && s.task.allowed_tools == Some(vec!["Bash".into(), "Edit".into()])
                        && s.task.max_cost_usd == Some(0.5)
                        && s.task.model.as_deref() == Some("opus")
                        && s.key.as_deref() == Some("file-key")
                }),
            ),
        ];
        for (i, (toml, env, check)) in cases.into_iter().enumerate() {
            let settings = Settings::from_layers(toml.map(|t| ("agent.toml", t)), env).unwrap();
            assert!(check(&settings), "case {i}: {settings:?}");
        }
    }

    #[test]
    fn acp_agents_come_from_the_file_and_the_environment() {
        let toml = "[acp_agents]\nmine = \"my-agent --acp\"\ncodex = \"npx codex-acp\"\n";
        let vars = env(&[("FLIGHTDECK_AGENT_ACP_AGENTS", r#"{"other": "other-acp --stdio"}"#)]);
        let settings = Settings::from_layers(Some(("agent.toml", toml)), vars).unwrap();
        let agents = settings.runner_config().acp.agents;
        let command = |name: &str| agents.get(name).map(|a| a.command.join(" "));
        assert_eq!(command("mine").as_deref(), Some("my-agent --acp"));
        assert_eq!(command("codex").as_deref(), Some("npx codex-acp"));
        assert_eq!(command("other").as_deref(), Some("other-acp --stdio"));
        assert_eq!(command("opencode").as_deref(), Some("opencode acp"));
        let bad = Settings::from_layers(None, env(&[("FLIGHTDECK_AGENT_ACP_AGENTS", "codex-acp")])).unwrap_err();
        assert!(bad.to_string().contains("FLIGHTDECK_AGENT_ACP_AGENTS"), "{bad}");
        let bad = Settings::from_layers(Some(("agent.toml", "[acp_agents]\n\"bad name\" = \"x\"\n")), env(&[]));
        assert!(bad.unwrap_err().to_string().contains("bad name"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Settings::from_layers(None, env(&[("FLIGHTDECK_AGENT_MAX_RUNNING", "many")])).unwrap_err();
        assert!(err.to_string().starts_with("FLIGHTDECK_AGENT_MAX_RUNNING=\"many\""), "{err}");
        let err = Settings::from_layers(Some(("agent.toml", "max_runing = 3")), env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("agent.toml:") && err.to_string().contains("max_runing"), "{err}");
    }

    #[test]
    fn debug_hides_the_key_and_task_defaults_fill_gaps() {
        let settings = Settings {
            key: Some("fd_secret_key".into()),
            task: TaskDefaults { model: Some("opus".into()), timeout_secs: Some(5), ..Default::default() },
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("fd_secret_key"));
        let mut payload = TaskPayload { timeout_secs: Some(9), ..Default::default() };
        settings.apply_task_defaults(&mut payload);
        assert_eq!((payload.model.as_deref(), payload.timeout_secs), (Some("opus"), Some(9)));
    }
}
