//! Push (SPEC 13): reaching the owner away from a screen, by Web Push, ntfy or a webhook.
//!
//! - [`vapid`]: the relay's VAPID key (in the store, the same on every node) and its JWT.
//! - [`address`]: where the relay may post (no SSRF): URL rules and the resolver the client
//!   connects through.
//! - [`clock`]: the time push decides by, which tests move instead of sleeping.
//! - [`sender`]: the loop each node runs: claims due messages from the store's outbox with a
//!   lease, sends them, deletes them (or retries, or drops a gone subscription).
//!
//! What enqueues a message (a request, a decision, a task's end) is the domain's
//! ([`crate::domain::push`]); the routes are in [`crate::push_api`].
//!
//! ## Why these crates
//! The cryptography is RustCrypto's, through `web-push-native` (its `encrypt` is RFC 8291
//! `aes128gcm` on `p256` ECDH, `hkdf` and `aes-gcm`, with a fresh salt and key per message, and
//! its `decrypt` lets the tests play the browser). The older `web-push` crate ties itself to its
//! own HTTP clients (isahc or hyper) and to `ece`, whose only backend is OpenSSL (a RustCrypto
//! backend is still an open pull request there); `web-push-native` leaves HTTP to the caller, so
//! the relay sends with reqwest, through a resolver that checks the addresses it connects to.
//! Its `vapid` feature (which pulls `jwt-simple` and every algorithm it has) is off: an ES256
//! JWT is a few lines on `p256`'s ECDSA ([`vapid`]).

pub mod address;
pub mod clock;
pub mod sender;
pub mod vapid;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};

use address::{Lookup, SystemLookup};
use clock::Clock;

use crate::config::Settings;
use crate::store::{Store, StoreError};
use vapid::VapidKey;

/// What a node needs to send pushes: the HTTP client, the VAPID key once loaded, and the
/// sender's wake-up, and what it takes from outside (the clock, the resolver).
pub struct Push {
    pub client: reqwest::Client,
    /// Names to addresses, at subscribe and (through `client`) at send.
    pub lookup: Arc<dyn Lookup>,
    pub clock: Clock,
    key: OnceCell<VapidKey>,
    wake: Notify,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push").field("key", &self.key.get()).finish_non_exhaustive()
    }
}

impl Push {
    /// With the system's clock and resolver.
    pub fn new(settings: &Settings) -> Push {
        Push::with(settings, Clock::default(), Arc::new(SystemLookup))
    }

    /// With a clock and a resolver passed in (tests: a clock they move, names they map).
    pub fn with(settings: &Settings, clock: Clock, lookup: Arc<dyn Lookup>) -> Push {
        let resolver =
            address::GuardedResolver { allow_private: settings.push_allow_private_endpoints, lookup: lookup.clone() };
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(resolver))
            // A redirect would leave the checked address.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(settings.push_send_timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(settings.push_send_timeout_ms.max(1)))
            .user_agent(concat!("flightdeck-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Push { client, lookup, clock, key: OnceCell::new(), wake: Notify::new() }
    }

    /// The VAPID key: read from the store, made there first if no node made it yet.
    pub async fn key(&self, store: &dyn Store) -> Result<&VapidKey, StoreError> {
        self.key
            .get_or_try_init(|| async {
                let stored = store.push_vapid_key(&VapidKey::generate_secret(), self.clock.now_ms()).await?;
                VapidKey::from_secret(&stored).map_err(|message| StoreError::Server { message, retryable: false })
            })
            .await
    }

    /// Something was enqueued here: the sender looks now rather than at its next poll. A wake
    /// while it is busy is kept (one permit) and seen when it next waits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn woken(&self) {
        self.wake.notified().await
    }
}
