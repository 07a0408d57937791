//! The processes under test: the release relay and agent binaries and nats-server, started as
//! children so their CPU time and memory can be read from /proc, and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the release binaries are: `$FLIGHTDECK_BENCH_<NAME>`, else next to this executable.
pub fn binary(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("the bench executable has no directory")?.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it with `cargo build --release -p flightdeck-relay -p flightdeck-agent-core \
             -p flightdeck-bench` (or run scripts/bench.sh), or set {env}",
            path.display()
        );
    }
    Ok(path)
}

pub fn relay_binary() -> Result<PathBuf> {
    binary("flightdeck-relay", "FLIGHTDECK_BENCH_RELAY")
}

pub fn agent_binary() -> Result<PathBuf> {
    binary("flightdeck-agent", "FLIGHTDECK_BENCH_AGENT")
}

/// Raises the soft limit of open files to the hard limit; children inherit it. 10k viewers
/// need 10k descriptors on each side. Returns the new soft limit.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer, which
    // lives on this stack frame for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                bail!("setrlimit: {}", std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// A child process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Where its stderr goes, for the error message when it dies.
    pub log: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of its log when the process has exited.
    pub fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{what} exited ({status}):\n{}", tail.join("\n"));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn wait_for_port(server: &mut Server, port: u16, what: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        server.check_alive(what)?;
        if Instant::now() > until {
            bail!("{what}: nothing listens on 127.0.0.1:{port} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command without any `FLIGHTDECK_*` variables of the caller's environment, so every run
/// measures the defaults (and the relay never sees a variable it does not know).
fn clean_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLIGHTDECK_") {
            command.env_remove(name);
        }
    }
    command
}

/// A relay on a fresh data dir with one user, `bench`, and its keys.
pub struct Relay {
    pub server: Server,
    pub agent_key: String,
    pub owner_key: String,
    pub dir: tempfile::TempDir,
}

fn relay_admin(bin: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let out = clean_command(bin).arg("--data-dir").arg(data).args(args).output().context("running flightdeck-relay")?;
    if !out.status.success() {
        bail!("flightdeck-relay {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Starts `flightdeck-relay serve` with its default settings, except the per-IP connection
/// rate limit: every viewer of the benchmark comes from 127.0.0.1.
pub async fn start_relay() -> Result<Relay> {
    let bin = relay_binary()?;
    let dir = tempfile::Builder::new().prefix("flightdeck-bench-relay").tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    relay_admin(&bin, &data, &["user", "add", "bench"])?;
    let agent_key = relay_admin(&bin, &data, &["key", "create", "--user", "bench", "--scope", "agent"])?;
    let owner_key = relay_admin(&bin, &data, &["key", "create", "--user", "bench", "--scope", "owner"])?;
    let port = free_port()?;
    let log = dir.path().join("relay.log");
    let child = clean_command(&bin)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .env("FLIGHTDECK_RELAY_WS_CONNECTIONS_PER_MINUTE", "100000000")
        // Thousands of viewers from 127.0.0.1: no per-IP connection cap.
        .env("FLIGHTDECK_RELAY_MAX_CONNECTIONS_PER_IP", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting flightdeck-relay serve")?;
    let mut server = Server { child, port, log };
    wait_for_port(&mut server, port, "flightdeck-relay").await?;
    Ok(Relay { server, agent_key, owner_key, dir })
}

/// `flightdeck-agent run` on `repo`, connected to `relay` as `agent_id`, with its own data and
/// config dirs under the relay's temp dir, none of the caller's `FLIGHTDECK_*` settings, and
/// stderr to `log`. The caller adds what else it needs, then spawns it.
pub fn agent_command(relay: &Relay, repo: &Path, agent_id: &str, log: &Path) -> Result<Command> {
    let root = relay.dir.path();
    let config_home = root.join("config");
    std::fs::create_dir_all(&config_home)?;
    let mut command = Command::new(agent_binary()?);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLIGHTDECK_") {
            command.env_remove(name);
        }
    }
    command
        .arg("run")
        .args(["--relay", &format!("ws://127.0.0.1:{}", relay.server.port)])
        .arg("--repo")
        .arg(repo)
        .arg("--data-dir")
        .arg(root.join("agent-data"))
        .args(["--agent-id", agent_id])
        .env("FLIGHTDECK_AGENT_KEY", &relay.agent_key)
        .env("XDG_CONFIG_HOME", &config_home)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    Ok(command)
}

/// nats-server with its WebSocket listener on, otherwise its defaults.
pub struct Nats {
    pub server: Server,
    pub ws_port: u16,
    _dir: tempfile::TempDir,
}

pub async fn start_nats() -> Result<Nats> {
    let dir = tempfile::Builder::new().prefix("flightdeck-bench-nats").tempdir()?;
    let client_port = free_port()?;
    let ws_port = free_port()?;
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{client_port}\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n  compression: false\n}}\n"
        ),
    )?;
    let log = dir.path().join("nats.log");
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting nats-server (Debian: apt-get install nats-server)")?;
    let mut server = Server { child, port: client_port, log };
    wait_for_port(&mut server, ws_port, "nats-server").await?;
    Ok(Nats { server, ws_port, _dir: dir })
}
