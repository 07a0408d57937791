//! Typed settings, layered: defaults, then a TOML file, then `FLIGHTDECK_RELAY_*` environment
//! variables (the environment wins). Command-line flags of `serve` are applied last by `main`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the relay can be configured with.
///
/// Durations are in milliseconds so tests can run the heartbeat in a fraction of a second;
/// `welcome.heartbeatSecs` reports `heartbeat_ms` rounded up to whole seconds.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address `serve` listens on.
    pub bind: String,
    /// Directory holding `relay.sqlite3`.
    pub data_dir: PathBuf,
    /// `postgres://...`: keep everything in that PostgreSQL database instead of SQLite in
    /// `data_dir`, shared by nodes on many hosts (kept secret in `Debug`: the URL may hold a
    /// password).
    pub database: Option<String>,
    /// The public base URL (`https://relay.example.com`), used for `wsUrl`; derived from the
    /// request's `Host` when absent.
    pub public_url: Option<String>,
    /// Serve `/assets/*` from this directory instead of the bundle built into the binary.
    pub ui_dir: Option<PathBuf>,
    /// How often agents are pinged.
    pub heartbeat_ms: u64,
    /// An agent that has not answered a ping for this long is closed (1000).
    pub pong_timeout_ms: u64,
    /// An agent away for longer than this raises an `agent_offline` alert.
    pub agent_offline_grace_ms: u64,
    /// With a broker: a node not seen alive for this long is dead, and the other nodes mark
    /// its agents offline (SPEC 11: within 30 s). Each node says it is alive every sixth of it.
    pub node_timeout_ms: u64,
    /// Largest accepted WebSocket message (1009 above it).
    pub max_frame_bytes: usize,
    /// Frames a viewer may have waiting: past it, a viewer of a transcript (`task:`, `hud:`)
    /// catches up from the store, any other is closed with 4001.
    pub viewer_queue_len: usize,
    /// Bytes a viewer may have waiting (or being written), as `viewer_queue_len`; one frame is
    /// always accepted when nothing is waiting.
    pub viewer_queue_bytes: usize,
    /// A viewer catching up whose queue does not drain for this long is closed with 4001.
    pub viewer_catchup_ms: u64,
    /// How often viewers get a WebSocket ping.
    pub viewer_ping_ms: u64,
    /// A viewer from which nothing (not even a pong) arrived for this long is closed (1000).
    pub viewer_timeout_ms: u64,
    /// Messages an agent may have waiting before it is closed with 4001.
    pub agent_queue_len: usize,
    /// Messages waiting for the broker at most (see `broker::Broker` for the full rule).
    pub broker_queue_len: usize,
    /// A busy socket writes at most once per this many milliseconds (frames in between share
    /// one write); 0 writes every batch at once.
    pub write_coalesce_ms: u64,
    /// Invalid frames tolerated per connection and minute before closing with 1008.
    pub invalid_frames_per_minute: u32,
    /// Connections (HTTP and WebSocket) one client IP may hold open at once; 0: no cap. Not
    /// applied with `trust_forwarded_for` (every peer is the proxy then).
    pub max_connections_per_ip: usize,
    /// A request's headers must arrive within this long, or the connection is closed.
    pub header_timeout_ms: u64,
    /// WebSocket connections (agents and viewers) accepted per client IP and minute.
    pub ws_connections_per_minute: u32,
    /// `POST /api/login` attempts accepted per client IP and minute.
    pub logins_per_minute: u32,
    /// How often the server looks for keys revoked by an admin command.
    pub revocation_poll_ms: u64,
    /// Mark cookies `Secure`: `None` decides per request (`X-Forwarded-Proto: https`).
    pub secure_cookies: Option<bool>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    /// `frame-ancestors` sent on embeddable HUD pages.
    pub embed_frame_ancestors: String,
    /// Lifetime of a login session.
    pub session_days: u32,
    /// `redis://...` for multi-node fan-out (kept secret in `Debug`: the URL may hold a password).
    pub broker: Option<String>,
    /// Container runs (SPEC 10): without a `[runner]` table, none. Set in the TOML file.
    pub runner: Option<RunnerSettings>,
    /// Push (SPEC 13): allow push endpoints, ntfy and webhook URLs on loopback, private and
    /// other internal addresses, `http://` included (tests and closed networks only: it lets
    /// users make the relay post to its own network).
    pub push_allow_private_endpoints: bool,
    /// The VAPID `sub` (a `mailto:` or `https:` URL push services may use to reach the
    /// operator); none: `public_url`, else the relay's URL as the subscriber reached it.
    pub push_contact: Option<String>,
    /// Subscriptions and channels one user may have at most (400 beyond).
    pub push_max_targets: usize,
    /// Messages waiting in the push outbox at most; beyond, new ones are dropped (logged).
    pub push_outbox_max: u64,
    /// How often an idle node looks for push messages it was not told about: other nodes'
    /// leases that ran out and their retries. What a node enqueues wakes it, and it times its
    /// own retries, so this poll is a fallback and can be rare.
    pub push_poll_ms: u64,
    /// How long a node holds a claimed push message before another node may send it.
    pub push_lease_ms: u64,
    /// The first retry's delay after a 429 or 5xx without `Retry-After`; doubles each time.
    pub push_retry_base_ms: u64,
    /// One push request's timeout.
    pub push_send_timeout_ms: u64,
}

/// `[runner]`: how the relay starts containers for tasks (SPEC 10).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerSettings {
    /// `docker`: the Docker Engine API (Podman's compatible service works too).
    pub engine: String,
    /// The engine's API socket: `unix:///var/run/docker.sock`, `unix:///run/podman/podman.sock`,
    /// or `tcp://host:2375`.
    pub socket: String,
    /// The image to run (built by `runner/build-image.sh`).
    pub image: String,
    /// The container's network mode (`host`, `bridge`, a network name); the engine's default
    /// when absent. The container must reach the relay and the clone URL.
    pub network: Option<String>,
    /// CPUs per container (fractions allowed); no limit when absent.
    pub cpus: Option<f64>,
    /// Memory per container in MiB; no limit when absent.
    pub memory_mb: Option<u64>,
    /// Containers running at once; more wait `queued` (in the database) until one ends.
    pub max_running: usize,
    /// Container tasks waiting at most; a new one beyond is refused (409 `runner_queue_full`).
    pub max_queued: usize,
    /// A run taking longer is stopped and its task ends `failed`.
    pub timeout_secs: u64,
    /// The relay's URL as the container reaches it (default: `public_url`, else
    /// `http://<bind>`).
    pub relay_url: Option<String>,
    /// Bind-mount this `flightdeck-agent` read-only over the image's (an image without the
    /// agent, or a newer agent build: development and CI).
    pub agent_binary: Option<PathBuf>,
    /// Environment given to every container (not secret: per-user secrets are for that).
    pub env: std::collections::BTreeMap<String, String>,
    /// Resource limits of the containers, soft = hard (`nofile = 20000`, `nproc = 32768`);
    /// some hosts refuse the engine's defaults.
    pub ulimits: std::collections::BTreeMap<String, i64>,
    /// The file holding the key that encrypts secrets (32 random bytes, made `0600` when
    /// missing). Default: `$XDG_CONFIG_HOME/flightdeck/relay-secrets.key` (`~/.config/...`):
    /// never in the data directory, so a copy of the database alone reveals no secret.
    pub secrets_key_file: Option<PathBuf>,
}

impl Default for RunnerSettings {
    fn default() -> RunnerSettings {
        RunnerSettings {
            engine: "docker".into(),
            socket: "unix:///var/run/docker.sock".into(),
            image: "localhost/flightdeck-runner:latest".into(),
            network: None,
            cpus: None,
            memory_mb: None,
            max_running: 2,
            max_queued: 100,
            timeout_secs: 3600,
            relay_url: None,
            agent_binary: None,
            env: Default::default(),
            ulimits: Default::default(),
            secrets_key_file: None,
        }
    }
}

impl fmt::Debug for RunnerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerSettings")
            .field("engine", &self.engine)
            .field("socket", &self.socket)
            .field("image", &self.image)
            .field("network", &self.network)
            .field("cpus", &self.cpus)
            .field("memory_mb", &self.memory_mb)
            .field("max_running", &self.max_running)
            .field("max_queued", &self.max_queued)
            .field("timeout_secs", &self.timeout_secs)
            .field("relay_url", &self.relay_url)
            .field("agent_binary", &self.agent_binary)
            // Values may be tokens someone put here anyway: names only.
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("ulimits", &self.ulimits)
            .field("secrets_key_file", &self.secrets_key_file)
            .finish()
    }
}

impl RunnerSettings {
    /// Checks what the relay cannot start without.
    pub fn validate(&self) -> Result<(), String> {
        if self.engine != "docker" {
            return Err(format!("[runner] engine {:?}: only \"docker\" is supported", self.engine));
        }
        if self.image.trim().is_empty() {
            return Err("[runner] image must not be empty".into());
        }
        if self.max_running == 0 {
            return Err("[runner] max_running must be at least 1".into());
        }
        Ok(())
    }

    /// Where the secrets key lives (see `secrets_key_file`).
    pub fn secrets_key_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.secrets_key_file {
            return Some(path.clone());
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(config.join("flightdeck").join("relay-secrets.key"))
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            bind: "127.0.0.1:8787".into(),
            data_dir: PathBuf::from("flightdeck-relay-data"),
            database: None,
            public_url: None,
            ui_dir: None,
            heartbeat_ms: 60_000,
            pong_timeout_ms: 120_000,
            agent_offline_grace_ms: 120_000,
            node_timeout_ms: 30_000,
            max_frame_bytes: flightdeck_protocol::DEFAULT_MAX_FRAME_BYTES,
            viewer_queue_len: 1024,
            viewer_queue_bytes: 8 * 1024 * 1024,
            viewer_catchup_ms: 30_000,
            viewer_ping_ms: 30_000,
            viewer_timeout_ms: 75_000,
            agent_queue_len: 1024,
            broker_queue_len: 65_536,
            write_coalesce_ms: 0,
            invalid_frames_per_minute: 100,
            max_connections_per_ip: 256,
            header_timeout_ms: 10_000,
            ws_connections_per_minute: 120,
            logins_per_minute: 10,
            revocation_poll_ms: 250,
            secure_cookies: None,
            trust_forwarded_for: false,
            embed_frame_ancestors: "*".into(),
            session_days: 30,
            broker: None,
            runner: None,
            push_allow_private_endpoints: false,
            push_contact: None,
            push_max_targets: 20,
            push_outbox_max: 100_000,
            push_poll_ms: 10_000,
            push_lease_ms: 60_000,
            push_retry_base_ms: 1000,
            push_send_timeout_ms: 10_000,
        }
    }
}

/// What each setting does, in the order `serve --help` lists them. A test checks that every
/// field of [`Settings`] is here, so a new setting cannot go undocumented.
pub const SETTINGS_HELP: &[(&str, &str)] = &[
    ("bind", "address to listen on"),
    ("data_dir", "directory holding relay.sqlite3 (made 0700); not used with database"),
    (
        "database",
        "postgres://user[:password]@host[:port]/name: keep everything in PostgreSQL, shared by relay nodes on \
         many hosts; none: SQLite in data_dir",
    ),
    (
        "public_url",
        "the public base URL (https://relay.example.com) for wsUrl and links; none: from each request's Host",
    ),
    ("ui_dir", "serve /assets/* from this directory instead of the bundle built into the binary"),
    ("broker", "redis://[:password@]host:port shared by several relay nodes for fan-out; none: one node"),
    ("heartbeat_ms", "how often agents are pinged"),
    ("pong_timeout_ms", "an agent silent this long after a ping is closed (1000)"),
    ("agent_offline_grace_ms", "an agent away longer than this raises an agent_offline alert"),
    ("node_timeout_ms", "with a broker: a node not seen alive for this long is dead and its agents go offline"),
    ("max_frame_bytes", "largest accepted WebSocket message (closed with 1009 above it)"),
    (
        "viewer_queue_len",
        "frames waiting for one viewer; past it a task:/hud: viewer catches up from the store, others are closed with 4001",
    ),
    ("viewer_queue_bytes", "bytes waiting for one viewer, as viewer_queue_len"),
    ("viewer_catchup_ms", "a viewer catching up whose queue does not drain for this long is closed with 4001"),
    ("viewer_ping_ms", "how often viewers get a WebSocket ping"),
    ("viewer_timeout_ms", "a viewer silent this long is closed (1000)"),
    ("agent_queue_len", "messages waiting for one agent before it is closed with 4001"),
    ("broker_queue_len", "messages waiting for the broker; past it other nodes resync their viewers (1012)"),
    ("write_coalesce_ms", "a busy socket writes at most once per this many ms (0: every batch at once)"),
    ("invalid_frames_per_minute", "invalid frames per connection and minute before closing with 1008"),
    ("max_connections_per_ip", "open connections per client IP (0: no cap; not applied with trust_forwarded_for)"),
    ("header_timeout_ms", "request headers must arrive within this long, or the connection is closed"),
    ("ws_connections_per_minute", "WebSocket connections accepted per client IP and minute (429 above)"),
    ("logins_per_minute", "POST /api/login attempts per client IP and minute (429 above)"),
    ("revocation_poll_ms", "how often the server looks for keys revoked by `key revoke`"),
    ("secure_cookies", "mark session cookies Secure: true, false, or none (per request, X-Forwarded-Proto: https)"),
    ("trust_forwarded_for", "take the client IP from X-Forwarded-For (only behind a trusted reverse proxy)"),
    ("embed_frame_ancestors", "frame-ancestors sent on embeddable HUD pages"),
    ("session_days", "lifetime of a login session, in days"),
    ("runner", "the [runner] table of the TOML file: container runs (below); without it, none"),
    (
        "push_allow_private_endpoints",
        "push: allow endpoints on loopback/private/internal addresses and http:// (tests, closed networks)",
    ),
    ("push_contact", "push: the VAPID sub (mailto: or https:); none: public_url, else the relay's URL"),
    ("push_max_targets", "push: subscriptions and channels one user may have"),
    ("push_outbox_max", "push: messages waiting at most; beyond, new ones are dropped"),
    (
        "push_poll_ms",
        "push: how often an idle node looks for messages it was not told about (leases and retries of dead nodes)",
    ),
    ("push_lease_ms", "push: how long a node holds a message it is sending before another may"),
    ("push_retry_base_ms", "push: first retry delay after 429/5xx without Retry-After (doubles)"),
    ("push_send_timeout_ms", "push: timeout of one push request"),
];

/// The keys of the `[runner]` table (TOML only), as [`SETTINGS_HELP`].
pub const RUNNER_HELP: &[(&str, &str)] = &[
    ("engine", "docker: the Docker Engine API (Podman's compatible service works too)"),
    ("socket", "the engine's API socket (unix:///..., or tcp://host:port)"),
    ("image", "the image to run (built by runner/build-image.sh)"),
    ("network", "the containers' network mode (host, bridge, a network name); none: the engine's default"),
    ("cpus", "CPUs per container (fractions allowed); none: no limit"),
    ("memory_mb", "memory per container in MiB; none: no limit"),
    ("max_running", "containers running at once; more wait queued until one ends"),
    ("max_queued", "container tasks waiting at most; beyond, 409 runner_queue_full"),
    ("timeout_secs", "a run taking longer is stopped and its task fails"),
    ("relay_url", "the relay's URL as containers reach it; none: public_url, else http://<bind>"),
    ("agent_binary", "bind-mount this flightdeck-agent read-only over the image's"),
    ("env", "environment for every container (not secret; per-user secrets are for that)"),
    ("ulimits", "resource limits of the containers, soft = hard (nofile = 20000, nproc = 32768)"),
    ("secrets_key_file", "the key that seals per-user secrets; none: $XDG_CONFIG_HOME/flightdeck/relay-secrets.key"),
];

impl Settings {
    /// The settings reference `serve --help` prints: each TOML key with its environment
    /// variable, default and meaning.
    pub fn reference() -> String {
        let defaults = serde_json::to_value(Settings::default()).unwrap_or_default();
        let mut out = String::from(
            "Settings, each a TOML key of --config and a FLIGHTDECK_RELAY_<KEY> environment variable \
             (defaults, then the file, then the environment, then these flags):\n",
        );
        for (key, help) in SETTINGS_HELP {
            let default = shown_default(&defaults, key);
            let env = format!("{ENV_PREFIX}{}", key.to_uppercase());
            out.push_str(&format!("  {key} ({env}) [default: {default}]\n      {help}\n"));
        }
        out.push_str("\n[runner] keys (TOML only):\n");
        let defaults = serde_json::to_value(RunnerSettings::default()).unwrap_or_default();
        for (key, help) in RUNNER_HELP {
            let default = shown_default(&defaults, key);
            out.push_str(&format!("  runner.{key} [default: {default}]\n      {help}\n"));
        }
        out
    }
}

/// A setting's default as `--help` shows it: `none`, a quoted string, or the value.
fn shown_default(defaults: &serde_json::Value, key: &str) -> String {
    match defaults.get(key) {
        None | Some(serde_json::Value::Null) => "none".to_string(),
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            // The database URL may carry a password.
            .field("database", &self.database.as_ref().map(|_| "<redacted>"))
            .field("public_url", &self.public_url)
            .field("ui_dir", &self.ui_dir)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("pong_timeout_ms", &self.pong_timeout_ms)
            .field("agent_offline_grace_ms", &self.agent_offline_grace_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("viewer_queue_len", &self.viewer_queue_len)
            .field("viewer_queue_bytes", &self.viewer_queue_bytes)
            .field("viewer_catchup_ms", &self.viewer_catchup_ms)
            .field("viewer_ping_ms", &self.viewer_ping_ms)
            .field("viewer_timeout_ms", &self.viewer_timeout_ms)
            .field("agent_queue_len", &self.agent_queue_len)
            .field("broker_queue_len", &self.broker_queue_len)
            .field("write_coalesce_ms", &self.write_coalesce_ms)
            .field("invalid_frames_per_minute", &self.invalid_frames_per_minute)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("ws_connections_per_minute", &self.ws_connections_per_minute)
            .field("logins_per_minute", &self.logins_per_minute)
            .field("revocation_poll_ms", &self.revocation_poll_ms)
            .field("secure_cookies", &self.secure_cookies)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("embed_frame_ancestors", &self.embed_frame_ancestors)
            .field("session_days", &self.session_days)
            // The broker URL may carry a password.
            .field("broker", &self.broker.as_ref().map(|_| "<redacted>"))
            .field("runner", &self.runner)
            .field("push_allow_private_endpoints", &self.push_allow_private_endpoints)
            .field("push_contact", &self.push_contact)
            .field("push_max_targets", &self.push_max_targets)
            .field("push_outbox_max", &self.push_outbox_max)
            .field("push_poll_ms", &self.push_poll_ms)
            .field("push_lease_ms", &self.push_lease_ms)
            .field("push_retry_base_ms", &self.push_retry_base_ms)
            .field("push_send_timeout_ms", &self.push_send_timeout_ms)
            .finish()
    }
}

/// Why the settings could not be loaded; the message says which file or variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("invalid settings (check the config file and FLIGHTDECK_RELAY_* variables): {0}")]
    Invalid(toml::de::Error),
}

/// Settings keys whose values are strings even when they look like numbers or booleans.
const STRING_KEYS: &[&str] =
    &["bind", "data_dir", "database", "public_url", "ui_dir", "embed_frame_ancestors", "broker", "push_contact"];

/// Boolean settings, which the environment may also give as `1` and `0`.
const BOOL_KEYS: &[&str] = &["push_allow_private_endpoints", "trust_forwarded_for", "secure_cookies"];

const ENV_PREFIX: &str = "FLIGHTDECK_RELAY_";

impl Settings {
    /// Defaults, then `config` (a TOML file), then the given environment variables.
    pub fn load(
        config: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = config {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            let file: toml::Table =
                toml::from_str(&text).map_err(|source| ConfigError::Toml { path: path.into(), source })?;
            table.extend(file);
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
            let key = key.to_ascii_lowercase();
            // CONFIG names the file itself, not a setting.
            if key == "config" {
                continue;
            }
            // Other programs share the prefix (test harnesses, wrappers): an unknown variable
            // is reported, not fatal. Unknown keys in the TOML file stay errors.
            if !known_keys().contains(&key) {
                tracing::warn!(variable = %name, "not a relay setting; ignored");
                continue;
            }
            table.insert(key.clone(), env_value(&key, &value));
        }
        toml::Value::Table(table).try_into().map_err(ConfigError::Invalid)
    }

    /// Loads with the process environment.
    pub fn from_env(config: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load(config, std::env::vars())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("relay.sqlite3")
    }

    /// `heartbeatSecs` for `welcome`: the heartbeat rounded up to whole seconds, at least 1.
    pub fn heartbeat_secs(&self) -> u64 {
        self.heartbeat_ms.div_ceil(1000).max(1)
    }
}

/// The names of every setting, as the TOML file and the environment spell them.
fn known_keys() -> Vec<String> {
    // Options are left out of TOML when `None`: fill them in to list every field.
    let every = Settings {
        public_url: Some(String::new()),
        ui_dir: Some(PathBuf::new()),
        secure_cookies: Some(false),
        broker: Some(String::new()),
        database: Some(String::new()),
        runner: Some(RunnerSettings::default()),
        push_contact: Some(String::new()),
        ..Settings::default()
    };
    toml::Table::try_from(every).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

fn env_value(key: &str, raw: &str) -> toml::Value {
    if STRING_KEYS.contains(&key) {
        return toml::Value::String(raw.to_string());
    }
    if BOOL_KEYS.contains(&key) && (raw == "1" || raw == "0") {
        return toml::Value::Boolean(raw == "1");
    }
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "bind = \"0.0.0.0:9000\"\nheartbeat_ms = 5000\nlogins_per_minute = 3\n").unwrap();
        let env = vec![
            ("FLIGHTDECK_RELAY_HEARTBEAT_MS".to_string(), "250".to_string()),
            ("FLIGHTDECK_RELAY_PUBLIC_URL".to_string(), "https://relay.example".to_string()),
            ("FLIGHTDECK_RELAY_SECURE_COOKIES".to_string(), "true".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let s = Settings::load(Some(&file), env).unwrap();
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert_eq!(s.heartbeat_ms, 250);
        assert_eq!(s.logins_per_minute, 3);
        assert_eq!(s.public_url.as_deref(), Some("https://relay.example"));
        assert_eq!(s.secure_cookies, Some(true));
        assert_eq!(s.pong_timeout_ms, 120_000);
        assert_eq!(s.heartbeat_secs(), 1);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        // In the file, an unknown key is a mistake to fix.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "nope = 1\n").unwrap();
        let err = Settings::load(Some(&file), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        // In the environment, other programs share the prefix: ignored, the rest still applies.
        let env = vec![
            ("FLIGHTDECK_RELAY_BIN".to_string(), "/usr/bin/flightdeck-relay".to_string()),
            ("FLIGHTDECK_RELAY_HEARTBEAT_MS".to_string(), "300".to_string()),
        ];
        assert_eq!(Settings::load(None, env).unwrap().heartbeat_ms, 300);
        // Every field is a known key, so none of them is ignored.
        for key in
            ["bind", "database", "public_url", "ui_dir", "secure_cookies", "broker", "heartbeat_ms", "session_days"]
        {
            assert!(known_keys().contains(&key.to_string()), "{key}");
        }
        let err = Settings::load(None, vec![("FLIGHTDECK_RELAY_HEARTBEAT_MS".into(), "soon".into())]).unwrap_err();
        assert!(err.to_string().contains("heartbeat_ms"), "{err}");
    }

    #[test]
    fn debug_redacts_the_broker_and_database_urls() {
        let s = Settings {
            broker: Some("redis://:hunter2@host".into()),
            database: Some("postgres://relay:swordfish@db/relay".into()),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn the_database_url_is_a_string_from_the_file_or_the_environment() {
        let env = vec![("FLIGHTDECK_RELAY_DATABASE".to_string(), "postgres://relay@db:5432/relay".to_string())];
        assert_eq!(Settings::load(None, env).unwrap().database.as_deref(), Some("postgres://relay@db:5432/relay"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "database = \"postgres://relay@db/relay\"\n").unwrap();
        assert_eq!(
            Settings::load(Some(&file), Vec::new()).unwrap().database.as_deref(),
            Some("postgres://relay@db/relay")
        );
        assert_eq!(Settings::default().database, None);
    }

    #[test]
    fn every_setting_is_in_the_help_with_its_default_and_names() {
        let fields: Vec<String> = match serde_json::to_value(Settings::default()).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("{other}"),
        };
        let mut documented: Vec<String> = SETTINGS_HELP.iter().map(|(k, _)| k.to_string()).collect();
        let mut fields_sorted = fields;
        fields_sorted.sort();
        documented.sort();
        assert_eq!(fields_sorted, documented, "every setting documented in SETTINGS_HELP, and only those");
        let mut runner: Vec<String> = match serde_json::to_value(RunnerSettings::default()).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("{other}"),
        };
        let mut documented: Vec<String> = RUNNER_HELP.iter().map(|(k, _)| k.to_string()).collect();
        runner.sort();
        documented.sort();
        assert_eq!(runner, documented, "every [runner] key documented in RUNNER_HELP, and only those");
        let reference = Settings::reference();
        assert!(reference.contains("  heartbeat_ms (FLIGHTDECK_RELAY_HEARTBEAT_MS) [default: 60000]"), "{reference}");
        assert!(reference.contains("  bind (FLIGHTDECK_RELAY_BIND) [default: \"127.0.0.1:8787\"]"), "{reference}");
        assert!(reference.contains("  broker (FLIGHTDECK_RELAY_BROKER) [default: none]"), "{reference}");
    }
}
