//! The agent's settings as saved in the store: the relay, the key (never shown whole), the agent
//! id (unique per installation), the watched repos, whether watching is paused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flightdeck_protocol::desktop::SettingsView;
use flightdeck_protocol::names::validate_agent_id;

use super::{AgentError, Result};
use crate::store::{Store, StoreError};

/// Setting keys in the store's `settings` table.
pub(super) mod keys {
    pub const RELAY_URL: &str = "relay.url";
    pub const RELAY_USER: &str = "relay.user";
    pub const RELAY_KEY: &str = "relay.key";
    pub const AGENT_ID: &str = "agent.id";
    /// A JSON array of the watched repos' paths.
    pub const REPOS: &str = "repos";
    pub const WATCH_PAUSED: &str = "watch.paused";
    /// A JSON object of the custom ACP agents added in the settings: name -> command.
    pub const ACP_AGENTS: &str = "acp.agents";
}

/// Settings as saved in the store.
#[derive(Clone, PartialEq)]
pub(super) struct Settings {
    pub(super) relay_url: Option<String>,
    pub(super) relay_user: Option<String>,
    pub(super) relay_key: Option<String>,
    pub(super) agent_id: String,
    pub(super) repos: Vec<PathBuf>,
    pub(super) paused: bool,
    pub(super) acp_agents: BTreeMap<String, String>,
}

impl Settings {
    pub(super) fn load(store: &Store) -> Result<Settings, StoreError> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let repos: Vec<String> =
            store.setting(keys::REPOS)?.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
        Ok(Settings {
            relay_url: non_empty(store.setting(keys::RELAY_URL)?),
            relay_user: non_empty(store.setting(keys::RELAY_USER)?),
            relay_key: non_empty(store.setting(keys::RELAY_KEY)?),
            agent_id: non_empty(store.setting(keys::AGENT_ID)?).unwrap_or_else(default_agent_id),
            repos: repos.into_iter().map(PathBuf::from).collect(),
            paused: store.setting(keys::WATCH_PAUSED)?.as_deref() == Some("true"),
            acp_agents: store
                .setting(keys::ACP_AGENTS)?
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
        })
    }

    /// What the link depends on: a change restarts it.
    pub(super) fn link_identity(&self) -> (Option<&str>, Option<&str>, &str) {
        (self.relay_url.as_deref(), self.relay_key.as_deref(), &self.agent_id)
    }

    pub(super) fn view(&self) -> SettingsView {
        SettingsView {
            relay_url: self.relay_url.clone(),
            relay_user: self.relay_user.clone(),
            key_set: self.relay_key.is_some(),
            key_hint: self.relay_key.as_deref().map(key_hint),
            agent_id: self.agent_id.clone(),
            repos: self.repos.iter().map(|p| p.display().to_string()).collect(),
            watching_paused: self.paused,
            acp_agents: self.acp_agents.iter().map(|(name, command)| format!("{name}={command}")).collect(),
        }
    }
}

// Never print the key, even in logs of the settings.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("relay_url", &self.relay_url)
            .field("relay_user", &self.relay_user)
            .field("relay_key", &self.relay_key.as_deref().map(key_hint))
            .field("agent_id", &self.agent_id)
            .field("repos", &self.repos)
            .field("paused", &self.paused)
            .field("acp_agents", &self.acp_agents)
            .finish()
    }
}

/// A key shown without giving it away: its first 4 and last 4 characters, or nothing of a short one.
pub fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "••••".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The agent id a new installation gets: the host name plus a short random suffix, saved at the
/// first start. The desktop app and `./dev run`'s headless agent on one machine have different
/// data directories and so different ids: neither replaces the other at the relay.
pub(super) fn default_agent_id() -> String {
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let slug = flightdeck_protocol::names::slugify(&host);
    let base = if validate_agent_id(&slug).is_ok() { slug } else { "flightdeck-agent".into() };
    let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(6).collect();
    let max_base = flightdeck_protocol::names::MAX_REPO_LEN - suffix.len() - 1;
    let base: String = base.chars().take(max_base).collect();
    format!("{}-{suffix}", base.trim_end_matches(['-', '.', '_']))
}

pub(super) fn validate_relay_url(url: &str) -> Result<()> {
    let rest = ["ws://", "wss://", "http://", "https://"].iter().find_map(|scheme| url.strip_prefix(scheme));
    match rest {
        None => Err(AgentError::invalid("relayUrl", "must start with ws://, wss://, http:// or https://")),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Err(AgentError::invalid("relayUrl", "has no host")),
        Some(rest) if rest.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(AgentError::invalid("relayUrl", "contains spaces"))
        }
        Some(_) => Ok(()),
    }
}

/// The relay's `http(s)://` base from its configured URL (which may be `ws(s)://.../api/ws`).
pub(super) fn http_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/api/ws").unwrap_or(url);
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_agent_ids_are_unique_per_installation() {
        let (a, b) = (default_agent_id(), default_agent_id());
        assert_ne!(a, b, "two installations on one host get different ids");
        for id in [&a, &b] {
            validate_agent_id(id).unwrap();
            let suffix = id.rsplit('-').next().unwrap();
            assert_eq!(suffix.len(), 6, "{id}");
        }
    }

    #[test]
    fn key_hints_never_show_the_key() {
        let table = [
            ("fdk_0123456789abcdef9f2c", "fdk_…9f2c"),
            ("short", "••••"),
            ("0123456789abcde", "••••"),
            ("0123456789abcdef", "0123…cdef"),
        ];
        for (key, hint) in table {
            assert_eq!(key_hint(key), hint);
        }
    }

    #[test]
    fn relay_urls() {
        let table = [
            ("ws://127.0.0.1:8787", true),
            ("wss://relay.example.com", true),
            ("https://relay.example.com/", true),
            ("http://localhost:8787", true),
            ("relay.example.com", false),
            ("ftp://x", false),
            ("ws://", false),
            ("https://a b", false),
        ];
        for (url, ok) in table {
            assert_eq!(validate_relay_url(url).is_ok(), ok, "{url}");
        }
        let bases = [
            ("ws://127.0.0.1:8787", "http://127.0.0.1:8787"),
            ("wss://relay.example.com/api/ws", "https://relay.example.com"),
            ("https://relay.example.com/", "https://relay.example.com"),
        ];
        for (url, base) in bases {
            assert_eq!(http_base(url), base);
        }
    }
}
