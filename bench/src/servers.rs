//! The processes under test: the release relay and agent binaries and nats-server, started as
//! children so their CPU time and memory can be read from /proc, and killed on drop; and, for
//! the cross-node figure, a throwaway PostgreSQL cluster and Redis server with relay nodes on
//! them ([`start_cluster`]).

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

/// An admin command on `data`, or on `database` (a PostgreSQL URL) when given.
fn relay_admin(bin: &Path, data: &Path, database: Option<&str>, args: &[&str]) -> Result<String> {
    let mut command = clean_command(bin);
    command.arg("--data-dir").arg(data).args(args);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let out = command.output().context("running flightdeck-relay")?;
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
    relay_admin(&bin, &data, None, &["user", "add", "bench"])?;
    let agent_key = relay_admin(&bin, &data, None, &["key", "create", "--user", "bench", "--scope", "agent"])?;
    let owner_key = relay_admin(&bin, &data, None, &["key", "create", "--user", "bench", "--scope", "owner"])?;
    let server = serve_relay(&bin, dir.path(), None).await?;
    Ok(Relay { server, agent_key, owner_key, dir })
}

/// The shared store and broker of relay nodes.
#[derive(Clone, Copy)]
struct Shared<'a> {
    database: &'a str,
    broker: &'a str,
}

/// `flightdeck-relay serve` on `root/data` (and the shared store and broker, if any), as
/// [`start_relay`] describes; its log is `root/relay.log`.
async fn serve_relay(bin: &Path, root: &Path, shared: Option<Shared<'_>>) -> Result<Server> {
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let log = root.join("relay.log");
    let mut command = clean_command(bin);
    command.args(["serve", "--bind", &format!("127.0.0.1:{port}")]).arg("--data-dir").arg(&data);
    if let Some(shared) = shared {
        command.args(["--database", shared.database, "--broker", shared.broker]);
    }
    let child = command
        .env("FLIGHTDECK_RELAY_WS_CONNECTIONS_PER_MINUTE", "100000000")
        // Thousands of viewers from 127.0.0.1: no per-IP connection cap.
        .env("FLIGHTDECK_RELAY_MAX_CONNECTIONS_PER_IP", "0")
        // The push benchmark's push service is on 127.0.0.1.
        .env("FLIGHTDECK_RELAY_PUSH_ALLOW_PRIVATE_ENDPOINTS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting flightdeck-relay serve")?;
    let mut server = Server { child, port, log };
    wait_for_port(&mut server, port, "flightdeck-relay").await?;
    Ok(server)
}

/// Relay nodes on one PostgreSQL database and one Redis server, each with its own empty data
/// dir; all of them know the user `bench` and its keys (made through node 0's admin CLI).
/// Dropped in field order: the nodes first, then Redis, then PostgreSQL.
pub struct Cluster {
    pub nodes: Vec<Relay>,
    pub redis: Redis,
    pub postgres: Postgres,
}

pub async fn start_cluster(nodes: usize) -> Result<Cluster> {
    let bin = relay_binary()?;
    let postgres = tokio::task::spawn_blocking(start_postgres).await??;
    let redis = start_redis().await?;
    let shared = Shared { database: &postgres.url, broker: &redis.url };
    let mut started = Vec::with_capacity(nodes);
    let mut keys = None;
    for i in 0..nodes {
        let dir = tempfile::Builder::new().prefix(&format!("flightdeck-bench-node{i}-")).tempdir()?;
        let server = serve_relay(&bin, dir.path(), Some(shared)).await.with_context(|| format!("relay node {i}"))?;
        let (agent_key, owner_key) = match &keys {
            Some(k) => Clone::clone(k),
            None => {
                // Node 0 is up, so the schema exists: make the user and keys as its operator would.
                let (data, db) = (dir.path().join("data"), Some(shared.database));
                relay_admin(&bin, &data, db, &["user", "add", "bench"])?;
                let agent = relay_admin(&bin, &data, db, &["key", "create", "--user", "bench", "--scope", "agent"])?;
                let owner = relay_admin(&bin, &data, db, &["key", "create", "--user", "bench", "--scope", "owner"])?;
                keys.insert((agent, owner)).clone()
            }
        };
        started.push(Relay { server, agent_key, owner_key, dir });
    }
    Ok(Cluster { nodes: started, redis, postgres })
}

/// `redis-server` on a free port, no persistence; killed on drop.
pub struct Redis {
    pub server: Server,
    pub url: String,
    _dir: tempfile::TempDir,
}

pub async fn start_redis() -> Result<Redis> {
    let dir = tempfile::Builder::new().prefix("flightdeck-bench-redis").tempdir()?;
    let port = free_port()?;
    let log = dir.path().join("redis.log");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (Debian: apt-get install redis-server)")?;
    let mut server = Server { child, port, log };
    wait_for_port(&mut server, port, "redis-server").await?;
    Ok(Redis { server, url: format!("redis://127.0.0.1:{port}"), _dir: dir })
}

/// A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`, Debian's `postgresql` package) in a
/// temp dir on a free port, without fsync; `pg_ctl stop -m immediate` on drop. `initdb`
/// refuses to run as root, so as root the cluster belongs to `postgres` and the commands run
/// through `runuser -u postgres --`.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub url: String,
}

pub fn start_postgres() -> Result<Postgres> {
    let dir = tempfile::Builder::new().prefix("flightdeck-bench-pg").tempdir()?;
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and only returns a number.
    let as_postgres = unsafe { libc::geteuid() } == 0;
    if as_postgres {
        let (uid, gid) = postgres_user()?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    let port = free_port()?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let pg = Postgres { dir, bin: postgres_bin_dir(), as_postgres, url };
    let data = pg.data();
    pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
        pg.dir.path().display()
    );
    let log = pg.dir.path().join("server.log").display().to_string();
    pg.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"])?;
    Ok(pg)
}

impl Postgres {
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {program} (Debian: apt-get install postgresql)"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            bail!(
                "{program} failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A function that lists the postmaster and its children (the backends of the relays'
    /// pools, and PostgreSQL's own workers) when called.
    pub fn pids_finder(&self) -> impl Fn() -> Vec<u32> + Send + Sync + 'static {
        let pidfile = self.dir.path().join("data/postmaster.pid");
        move || {
            let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
            let Some(postmaster) = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
                return Vec::new();
            };
            let mut pids = vec![postmaster];
            pids.extend(crate::procstat::children(postmaster));
            pids
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

/// Where Debian puts the server programs (the newest version), else empty (then `PATH`).
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_default()
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("no postgres user: install Debian's postgresql package (apt-get install postgresql)")?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok((fields.get(2).context("bad passwd")?.parse()?, fields.get(3).context("bad passwd")?.parse()?))
}

/// Fails early when the cross-node figure cannot run here.
pub fn check_cluster_tools() -> Result<()> {
    if !postgres_bin_dir().join("initdb").exists() && Command::new("initdb").arg("--version").output().is_err() {
        bail!("initdb not found (Debian: apt-get install postgresql)");
    }
    Command::new("redis-server")
        .arg("--version")
        .output()
        .context("redis-server not found (Debian: apt-get install redis-server)")?;
    Ok(())
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
