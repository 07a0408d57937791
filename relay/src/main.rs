//! The `flightdeck-relay` binary: `serve` and the admin commands of SPEC section 5.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flightdeck_protocol::api::KeyScope;
use flightdeck_protocol::broker::BrokerMessage;
use flightdeck_protocol::names;
use flightdeck_relay::{Settings, Store};

#[derive(Parser)]
#[command(name = "flightdeck-relay", version, about = "The Flightdeck relay")]
struct Cli {
    /// Directory of the SQLite database (overrides config and environment).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Keep everything in this PostgreSQL database instead (postgres://user[:password]@host[:port]/name),
    /// shared by relay nodes on many hosts; admin commands take the same URL
    /// [default: none, SQLite in the data dir; TOML `database`, env FLIGHTDECK_RELAY_DATABASE].
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    /// A TOML config file.
    #[arg(long, global = true, env = "FLIGHTDECK_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    #[command(after_help = Settings::reference())]
    Serve {
        /// Address to listen on [default: 127.0.0.1:8787; TOML `bind`, env FLIGHTDECK_RELAY_BIND].
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Share fan-out with other relay nodes through this Redis server (redis://[:password@]host:port)
        /// [default: none, one node; TOML `broker`, env FLIGHTDECK_RELAY_BROKER].
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// The user's name (letters, digits, `-`, `_`; it appears in HUD URLs: /hud/NAME/...).
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print it, alone, on stdout (it is shown only once).
    Create {
        /// The user the key belongs to.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// What the key may do: `agent` (connect an agent and publish), `owner` (REST, HUD
        /// control, read everything of the user), `viewer` (read the user's private HUDs).
        #[arg(long, value_parser = ["agent", "owner", "viewer"])]
        scope: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key; a running server closes its sockets with 4401.
    Revoke {
        /// The key's ID, as `key list` shows it.
        id: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tokio_postgres=warn,flightdeck_relay=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut settings = Settings::from_env(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    if let Some(database) = cli.database {
        settings.database = Some(database).filter(|d| !d.trim().is_empty());
    }
    match cli.command {
        Command::Serve { bind, broker } => {
            if let Some(bind) = bind {
                settings.bind = bind;
            }
            if let Some(broker) = broker {
                settings.broker = Some(broker).filter(|b| !b.trim().is_empty());
            }
            serve(settings)
        }
        Command::User { command } => admin(&settings, Admin::User(command)),
        Command::Key { command } => admin(&settings, Admin::Key(command)),
    }
}

enum Admin {
    User(UserCommand),
    Key(KeyCommand),
}

/// The admin commands, through the same [`Store`] as the server (while it runs, too).
#[tokio::main(flavor = "current_thread")]
async fn admin(settings: &Settings, command: Admin) -> anyhow::Result<()> {
    let store = flightdeck_relay::store::open(settings).await?;
    match command {
        Admin::User(UserCommand::Add { name }) => {
            names::validate_user(&name).map_err(|e| anyhow::anyhow!("invalid user name {name:?}: {e}"))?;
            store.add_user(&name).await?;
            eprintln!("user {name} added");
            Ok(())
        }
        Admin::Key(command) => {
            let revoked = match &command {
                KeyCommand::Revoke { id } => Some(id.clone()),
                _ => None,
            };
            key_command(store.as_ref(), command).await?;
            // With a broker, the nodes hear of it at once; else at their next look at the store.
            if let (Some(key_id), Some(url)) = (revoked, &settings.broker) {
                let message = BrokerMessage::KeyRevoked { node: "admin".into(), key_id };
                if let Err(e) = flightdeck_relay::broker::publish_once(url, &message).await {
                    eprintln!(
                        "could not tell the nodes through the broker ({e}); they close the key's sockets \
                         at their next look at the store (revocation_poll_ms)"
                    );
                }
            }
            Ok(())
        }
    }
}

async fn key_command(store: &dyn Store, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { user, scope } => {
            let scope = KeyScope::parse(&scope).context("scope must be agent, owner or viewer")?;
            let key = store.create_key(&user, scope).await?;
            eprintln!("key {} created for {user} ({}); it will not be shown again", key.id, scope.as_str());
            out(format_args!("{}", key.secret))?;
        }
        KeyCommand::List => {
            out(format_args!("{:<14} {:<16} {:<7} {:<14} {:<26} REVOKED", "ID", "USER", "SCOPE", "PREFIX", "CREATED"))?;
            for k in store.list_keys().await? {
                out(format_args!(
                    "{:<14} {:<16} {:<7} {:<14} {:<26} {}",
                    k.id,
                    k.user,
                    k.scope.as_str(),
                    k.prefix,
                    k.created_at,
                    k.revoked_at.as_deref().unwrap_or("-")
                ))?;
            }
        }
        KeyCommand::Revoke { id } => {
            if !store.revoke_key(&id).await? {
                anyhow::bail!("no live key with id {id:?} (see `flightdeck-relay key list`)");
            }
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}

#[tokio::main]
async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(?settings, "starting");
    let listener = tokio::net::TcpListener::bind(&settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    flightdeck_relay::run(listener, settings, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// One line on stdout. A reader that has gone (`| head`, `| grep -q`) has read what it wanted:
/// that is not an error, and not the panic `println!` makes of it.
fn out(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}
