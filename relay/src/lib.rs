//! flightdeck-relay: the self-hostable relay between local agents and HUD viewers.
//!
//! - [`config`]: layered settings (defaults, TOML, `FLIGHTDECK_RELAY_*`).
//! - [`store`]: the async [`store::Store`] boundary of the relay's persistent state, and its
//!   SQLite ([`store::SqliteStore`]) and PostgreSQL ([`store::PostgresStore`]) implementations.
//! - [`db`]: the SQLite database (users, keys, sessions, cached agent data, HUD settings,
//!   pending decisions), blocking, used only through `store`.
//! - [`state`]: shared state, request authentication, rate limits.
//! - [`domain`]: what the relay does (tasks, publishing, views, messages from other nodes),
//!   between the transports and `db`/`hub`/`broker`.
//! - [`hub`]: topic fan-out with bounded per-viewer queues; registries of live sockets.
//! - [`catch_up`]: a transcript viewer whose queue is full is fed from the store until live.
//! - [`socket`]: the batched writer and frame limits shared by every WebSocket.
//! - [`agent_link`]: `/api/ws`, the agent link.
//! - [`realtime`]: `/api/realtime`, the viewer bus.
//! - [`api`]: the REST API.
//! - [`conversations`]: replies, the owner's decisions and their delivery (SPEC 8).
//! - [`broker`]: multi-node fan-out through Redis (optional).
//! - [`hud`]: HUD pages, ui assets and the HUD API.
//! - [`listener`]: the accept loop (per-IP connection cap, header-read timeout).
//! - [`login`]: the `/login` page that turns a pasted key into a session cookie.
//! - [`html_errors`]: error pages for browsers (API clients keep JSON errors).
//! - [`error`]: the one error type of HTTP handlers.
//! - [`request`]: strict JSON bodies and path parameters shared by handlers.
//! - [`liveness`]: with a broker, nodes say they are alive and mark the agents of dead ones offline.
//! - [`metrics`]: Prometheus counters.
//! - [`push`]: push (SPEC 13): the VAPID key, endpoint rules, the sender of the push outbox.
//! - [`push_api`]: the `/api/push/*` routes.
//! - [`runner`]: container runs (SPEC 10): the engine trait, its Docker implementation, the
//!   `Runner` handle.
//! - [`container_runs`]: the supervisor of container runs (queue, limits, timeout, sweep).
//! - [`secrets`]: per-user secrets for container runs, encrypted at rest (routes in `api`).
//!
//! Start a server with [`run`] on a bound listener; tests bind `127.0.0.1:0`.

pub mod agent_link;
pub mod api;
pub mod broker;
pub mod catch_up;
pub mod config;
pub mod container_runs;
pub mod conversations;
pub mod db;
pub mod domain;
pub mod error;
pub mod html_errors;
pub mod hub;
pub mod hud;
pub mod listener;
pub mod liveness;
pub mod login;
pub mod metrics;
pub mod push;
pub mod push_api;
pub mod realtime;
pub mod request;
pub mod runner;
pub mod secrets;
pub mod socket;
pub mod state;
pub mod store;

use std::future::Future;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use config::Settings;
pub use db::Db;
pub use state::AppState;
pub use store::{SqliteStore, Store};

/// How long shutdown waits for sockets to send their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Every route of the relay.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/login", get(login::login_page))
        .route("/api/ws", get(agent_link::handler))
        .route("/api/realtime", get(realtime::handler))
        .route("/api/cockpit/agents", get(api::agents))
        .route("/api/cockpit/tasks", get(api::list_tasks).post(api::create_task_route))
        .route("/api/cockpit/tasks/{id}", get(api::get_task))
        .route("/api/cockpit/tasks/{id}/events", get(api::task_events))
        .route("/api/cockpit/tasks/{id}/cancel", post(api::cancel_task))
        .route("/api/cockpit/tasks/{id}/reply", post(conversations::reply))
        .route("/api/cockpit/tasks/{id}/permissions/{request_id}", post(conversations::decide))
        .route("/api/cockpit/conversations/{id}", get(conversations::conversation))
        .route("/api/cockpit/repos", get(api::repos))
        .route("/api/cockpit/alerts", get(api::alerts))
        .route("/api/cockpit/alerts/ack/{id}", post(api::ack_alert))
        .route("/api/cockpit/runner", get(api::runner_info))
        .route("/api/cockpit/secrets", get(api::list_secrets))
        .route("/api/cockpit/secrets/{name}", axum::routing::put(api::put_secret).delete(api::delete_secret))
        .route("/api/push/key", get(push_api::key))
        .route("/api/push/subscriptions", get(push_api::subscriptions).post(push_api::subscribe))
        .route("/api/push/subscriptions/{id}", axum::routing::delete(push_api::unsubscribe))
        .route("/api/push/test", post(push_api::test))
        .route("/api/push/act", post(push_api::act))
        .route("/api/push/channels", get(push_api::channels))
        .route("/api/push/channels/ntfy", axum::routing::put(push_api::put_ntfy).delete(push_api::delete_ntfy))
        .route("/api/push/channels/webhook", axum::routing::put(push_api::put_webhook).delete(push_api::delete_webhook))
        .route("/api/hud/session", get(hud::session))
        .route("/api/hud/start", post(hud::start))
        .route("/api/hud/settings", get(hud::get_settings).put(hud::put_settings))
        .route("/", get(hud::root))
        .route("/hud", get(hud::hud_index))
        .route("/hud/", get(hud::hud_index))
        .route("/hud/{user}", get(hud::dashboard_page))
        .route("/hud/{user}/", get(hud::without_trailing_slash))
        .route("/hud/{user}/{repo}", get(hud::hud_page))
        .route("/hud/{user}/{repo}/", get(hud::without_trailing_slash))
        .route("/embed/{user}/{repo}", get(hud::embed_page))
        .route("/assets/{file}", get(hud::asset))
        .route("/favicon.ico", get(hud::favicon))
        .route("/sw.js", get(hud::service_worker))
        .route("/manifest.webmanifest", get(hud::manifest))
        // Bodies of REST calls are small; frames have their own limit on the sockets.
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::from_fn(html_errors::html_errors))
        .layer(axum::middleware::map_response(nosniff))
        .with_state(state)
}

/// No response is sniffed into another type: a JSON answer holding user text must never be
/// read as HTML or script.
async fn nosniff(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(http::HeaderValue::from_static("nosniff"));
    response
}

/// Opens the store (`settings.database`, else SQLite in `settings.data_dir`) and serves on
/// `listener` until `shutdown` completes; then closes every socket with 1001 and flushes the
/// store.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let push = push::Push::new(&settings);
    run_with_push(listener, settings, push, shutdown).await
}

/// [`run`] with the push sender built by the caller: a test's clock it moves instead of
/// sleeping, or a resolver that maps names as it likes.
pub async fn run_with_push(
    listener: TcpListener,
    settings: Settings,
    push: push::Push,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // With a broker, other nodes share the database and their agents are still online.
    let alone = settings.broker.is_none();
    let store = store::open(&settings).await?;
    if alone {
        store.mark_all_agents_offline().await?;
    }
    serve(listener, AppState::with_push(settings, store, push), shutdown).await
}

/// Serves an already built state (see [`run`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(url) = state.settings.broker.clone() {
        let on_message = {
            let state = state.clone();
            Box::new(move |message| domain::remote::on_message(&state, message))
        };
        let on_lost = {
            let state = state.clone();
            Box::new(move || state.hub.close_subscribers(flightdeck_protocol::close::SERVICE_RESTART))
        };
        let on_restored = {
            let state = state.clone();
            Box::new(move || state.conns.close_all(flightdeck_protocol::close::SERVICE_RESTART))
        };
        let node = broker::Node {
            node_id: state.node_id.clone(),
            queue_len: state.settings.broker_queue_len,
            metrics: state.metrics.clone(),
            shutdown: state.shutdown.clone(),
            tasks: state.tasks.clone(),
            on_message,
            on_lost,
            on_restored,
        };
        state.hub.set_broker(broker::start(&url, node).await?);
    }
    if state.hub.broker().is_some() {
        // Alive before the first agent can connect here, so no other node takes its agents
        // for those of a dead node.
        liveness::say_alive(&state).await;
        state.tasks.spawn(liveness::watch_nodes(state.clone()));
    }
    if let Some(runner_settings) = state.settings.runner.clone() {
        start_runner(&state, runner_settings, listener.local_addr()?).await?;
    }
    push::sender::start(&state);
    tracing::info!(addr = %listener.local_addr()?, "relay listening");
    let poller = tokio::spawn(watch_revocations(state.clone()));
    let token = state.shutdown.clone();
    let conns = state.conns.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        token.cancel();
        conns.close_all(flightdeck_protocol::close::GOING_AWAY);
    };
    let limits = listener::Limits {
        per_ip: match state.settings.max_connections_per_ip {
            // Behind a trusted reverse proxy every peer is the proxy: it caps, not the relay.
            _ if state.settings.trust_forwarded_for => None,
            0 => None,
            n => Some(n),
        },
        header_timeout: Duration::from_millis(state.settings.header_timeout_ms.max(1)),
    };
    listener::serve(listener, app(state.clone()), limits, state.metrics.clone(), signal).await;
    state.shutdown.cancel();
    state.conns.close_all(flightdeck_protocol::close::GOING_AWAY);
    poller.abort();
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait()).await.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    state.store().flush().await?;
    Ok(())
}

/// Connects to the container engine, loads the secrets key, sweeps and starts the supervisor
/// (SPEC 10).
async fn start_runner(
    state: &AppState,
    settings: config::RunnerSettings,
    local: std::net::SocketAddr,
) -> anyhow::Result<()> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let engine = runner::docker::DockerEngine::connect(&settings.socket)?;
    let key_path = settings.secrets_key_path().ok_or_else(|| {
        anyhow::anyhow!("[runner] secrets_key_file is needed: neither XDG_CONFIG_HOME nor HOME is set")
    })?;
    let secrets = tokio::task::spawn_blocking(move || secrets::SecretBox::open_or_create(&key_path))
        .await?
        .map_err(anyhow::Error::msg)?;
    state.set_secrets(secrets);
    let instance = state.store().instance_id().await?;
    let relay_url = settings
        .relay_url
        .clone()
        .or_else(|| state.settings.public_url.clone())
        .unwrap_or_else(|| format!("http://{local}"));
    tracing::info!(socket = %settings.socket, image = %settings.image, %relay_url, %instance, "container runs enabled");
    let runner = std::sync::Arc::new(runner::Runner::new(settings, std::sync::Arc::new(engine), instance, relay_url));
    state.set_runner(runner.clone());
    container_runs::start(state, runner.clone()).await?;
    runner.wake();
    Ok(())
}

/// Admin commands revoke keys from another process: poll the key generation and close the
/// sockets of newly revoked keys with 4401.
async fn watch_revocations(state: AppState) {
    let period = Duration::from_millis(state.settings.revocation_poll_ms.max(10));
    let mut ticker = tokio::time::interval(period);
    let mut seen: Option<i64> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = async {
            let generation = state.store().key_generation().await?;
            if Some(generation) == seen {
                return Ok::<_, store::StoreError>((generation, Vec::new()));
            }
            Ok((generation, state.store().revoked_key_ids().await?))
        }
        .await;
        match result {
            Ok((generation, revoked)) => {
                seen = Some(generation);
                for key_id in revoked {
                    let closed = state.conns.close_key(&key_id, flightdeck_protocol::close::KEY_REVOKED);
                    if closed > 0 {
                        tracing::info!(key = %key_id, sockets = closed, "closed sockets of a revoked key");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "revocation check failed"),
        }
    }
}
