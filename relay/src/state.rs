//! The shared state of a running relay, request authentication and rate limits. What the relay
//! does with that state (publishing, dispatch, tasks) lives in [`crate::domain`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use flightdeck_protocol::api::KeyScope;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::db::Principal;
use crate::error::AppError;
use crate::hub::{AgentRegistry, Connections, Hub};
use crate::metrics::Metrics;
use crate::store::Store;

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub settings: Settings,
    /// This process among the nodes sharing a broker; random per start.
    pub node_id: String,
    /// The persistent state: SQLite in the data dir, or PostgreSQL (see [`crate::store::open`]).
    store: Arc<dyn Store>,
    pub hub: Hub,
    pub agents: AgentRegistry,
    pub conns: Arc<Connections>,
    pub metrics: Arc<Metrics>,
    /// Fired when the server shuts down.
    pub shutdown: CancellationToken,
    /// Every socket task, so shutdown can wait for their close frames.
    pub tasks: TaskTracker,
    pub ws_limiter: RateLimiter,
    pub login_limiter: RateLimiter,
    /// Push (SPEC 13): the HTTP client, the VAPID key, the sender's wake-up.
    pub push: crate::push::Push,
    /// Container runs, when `[runner]` is configured (set once at start, see `crate::run`).
    runner: std::sync::OnceLock<Arc<crate::runner::Runner>>,
    /// The key that seals per-user secrets (with a runner only).
    secrets: std::sync::OnceLock<crate::secrets::SecretBox>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> AppState {
        let push = crate::push::Push::new(&settings);
        AppState::with_push(settings, store, push)
    }

    /// With a push sender built by the caller (a test's clock and resolver).
    pub fn with_push(settings: Settings, store: Arc<dyn Store>, push: crate::push::Push) -> AppState {
        let metrics = Arc::new(Metrics::default());
        let ws_limiter = RateLimiter::new(settings.ws_connections_per_minute);
        let login_limiter = RateLimiter::new(settings.logins_per_minute);
        AppState {
            inner: Arc::new(Inner {
                settings,
                node_id: {
                    let mut bytes = [0u8; 8];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
                    hex::encode(bytes)
                },
                store,
                hub: Hub::new(metrics.clone()),
                agents: AgentRegistry::default(),
                conns: Arc::new(Connections::default()),
                metrics,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                ws_limiter,
                login_limiter,
                push,
                runner: std::sync::OnceLock::new(),
                secrets: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The container runner, when one is configured.
    pub fn runner(&self) -> Option<&Arc<crate::runner::Runner>> {
        self.inner.runner.get()
    }

    pub fn set_runner(&self, runner: Arc<crate::runner::Runner>) {
        let _ = self.inner.runner.set(runner);
    }

    /// The key of per-user secrets, when a runner is configured.
    pub fn secrets(&self) -> Option<&crate::secrets::SecretBox> {
        self.inner.secrets.get()
    }

    pub fn set_secrets(&self, secrets: crate::secrets::SecretBox) {
        let _ = self.inner.secrets.set(secrets);
    }

    /// The relay's persistent state.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The same, for a task that outlives the request.
    pub fn store_handle(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    // ----- request helpers -------------------------------------------------------------------

    /// The `ws://` / `wss://` URL of `/api/realtime` as a browser should reach it.
    pub fn realtime_url(&self, headers: &HeaderMap) -> String {
        format!("{}/api/realtime", self.public_origin(headers).replacen("http", "ws", 1))
    }

    /// `scheme://host` of this relay as the client sees it.
    pub fn public_origin(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.settings.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = if self.is_https(headers) { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    pub fn is_https(&self, headers: &HeaderMap) -> bool {
        if let Some(secure) = self.settings.secure_cookies {
            return secure;
        }
        if self.settings.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
            return true;
        }
        headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
    }

    /// A state-changing request made with a session cookie must come from this origin (CSRF).
    pub fn check_same_origin(&self, auth: &Auth, headers: &HeaderMap) -> Result<(), AppError> {
        if !auth.via_cookie {
            return Ok(());
        }
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        match origin {
            Some(o) if o.trim_end_matches('/') == self.public_origin(headers) => Ok(()),
            _ => Err(AppError::Forbidden("cookie-authenticated requests need a same-origin Origin header".into())),
        }
    }
}

/// Who made a request: a key (bearer header or `?token=`), a session cookie, or nobody.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub principal: Option<Principal>,
    pub via_cookie: bool,
}

pub const SESSION_COOKIE: &str = "fd_session";

impl Auth {
    /// The principal, or 401.
    pub fn required(&self) -> Result<&Principal, AppError> {
        self.principal.as_ref().ok_or(AppError::Unauthorized)
    }

    /// An owner key of any user, or 401/403.
    pub fn owner(&self) -> Result<&Principal, AppError> {
        let p = self.required()?;
        if p.scope != KeyScope::Owner {
            return Err(AppError::Forbidden("an owner key is required".into()));
        }
        Ok(p)
    }

    /// Owner or viewer of `user`: may see that user's private HUDs.
    pub fn can_view_private(&self, user: &str) -> bool {
        self.principal.as_ref().is_some_and(|p| p.user == user && matches!(p.scope, KeyScope::Owner | KeyScope::Viewer))
    }

    pub fn is_owner_of(&self, user: &str) -> bool {
        self.principal.as_ref().is_some_and(|p| p.user == user && p.scope == KeyScope::Owner)
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "token").map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    /// A bad key is 401; a stale session cookie counts as anonymous, so public HUDs still work.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, AppError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|v| v.trim().to_string());
        if let Some(secret) = bearer.or_else(|| query_token(parts)) {
            let principal = state.store().principal_by_key(&secret).await?;
            return match principal {
                Some(p) => Ok(Auth { principal: Some(p), via_cookie: false }),
                None => Err(AppError::InvalidKey),
            };
        }
        if let Some(session) = cookie_value(&parts.headers, SESSION_COOKIE).map(str::to_string) {
            let principal = state.store().principal_by_session(&session).await?;
            return Ok(Auth { via_cookie: principal.is_some(), principal });
        }
        Ok(Auth::default())
    }
}

/// The session cookie's value, for logout.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE).map(str::to_string)
}

/// The client's IP: the peer address, or the first `X-Forwarded-For` hop when configured.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ClientIp, AppError> {
        if state.settings.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

/// A token bucket per client IP: `per_minute` requests, refilled continuously.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token, or says how many seconds to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(self.per_minute.max(1));
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            // Forget full buckets so the map cannot grow without bound.
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil() as u64)
        }
    }
}

impl AppState {
    pub fn check_ws_rate(&self, ip: ClientIp) -> Result<(), AppError> {
        self.ws_limiter.check(ip.0, Instant::now()).map_err(|retry_after_secs| {
            self.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            AppError::RateLimited { retry_after_secs }
        })
    }

    pub fn check_login_rate(&self, ip: ClientIp) -> Result<(), AppError> {
        self.login_limiter.check(ip.0, Instant::now()).map_err(|retry_after_secs| {
            self.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            AppError::RateLimited { retry_after_secs }
        })
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.settings.session_days) * 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_over_time() {
        let limiter = RateLimiter::new(2);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let t0 = Instant::now();
        assert!(limiter.check(ip, t0).is_ok());
        assert!(limiter.check(ip, t0).is_ok());
        let wait = limiter.check(ip, t0).unwrap_err();
        assert_eq!(wait, 30);
        assert!(limiter.check(IpAddr::from([10, 0, 0, 2]), t0).is_ok());
        assert!(limiter.check(ip, t0 + Duration::from_secs(30)).is_ok());
    }
}
