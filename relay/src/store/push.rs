//! The rows of push (SPEC 13) that every [`super::Store`] keeps: where a user's notifications
//! go ([`PushTarget`]), the outbox of messages to send ([`OutboxRow`]), and action tokens.
//!
//! One table of targets holds Web Push subscriptions and the two other channels (ntfy,
//! webhook), so one outbox serves them all.

use flightdeck_protocol::push::{ChannelInfo, ChannelKind, PushKind, PushSubscriptionInfo};
use flightdeck_protocol::Timestamp;

/// What kind of place a [`PushTarget`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A browser's push subscription (RFC 8030 + 8291 + 8292).
    WebPush,
    Ntfy,
    Webhook,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::WebPush => "webpush",
            TargetKind::Ntfy => "ntfy",
            TargetKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> TargetKind {
        match s {
            "ntfy" => TargetKind::Ntfy,
            "webhook" => TargetKind::Webhook,
            _ => TargetKind::WebPush,
        }
    }

    pub fn channel(self) -> Option<ChannelKind> {
        match self {
            TargetKind::WebPush => None,
            TargetKind::Ntfy => Some(ChannelKind::Ntfy),
            TargetKind::Webhook => Some(ChannelKind::Webhook),
        }
    }
}

/// Where one user's notifications go. A user has any number of subscriptions (up to the cap)
/// and at most one channel of each other kind.
#[derive(Clone, PartialEq)]
pub struct PushTarget {
    pub id: String,
    pub user: String,
    pub kind: TargetKind,
    /// The push service's endpoint, the ntfy topic URL or the webhook URL.
    pub url: String,
    /// Web Push: the browser's P-256 key and auth secret (base64url).
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    /// The ntfy access token or the webhook's HMAC secret.
    pub secret: Option<String>,
    pub device: Option<String>,
    pub kinds: Vec<PushKind>,
    /// `scheme://host` of the relay as the user reached it when subscribing: the base of the
    /// links in its messages when `public_url` is not set.
    pub origin: String,
    pub created_at: Timestamp,
}

/// Secrets stay out of logs: the endpoint URL is a capability, the keys and secret are keys.
impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTarget")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("device", &self.device)
            .field("kinds", &self.kinds)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl PushTarget {
    pub fn wants(&self, kind: PushKind) -> bool {
        match kind {
            PushKind::Test => true,
            PushKind::Resolved => self.kinds.contains(&PushKind::NeedsInput),
            other => self.kinds.contains(&other),
        }
    }

    pub fn subscription_info(&self) -> PushSubscriptionInfo {
        PushSubscriptionInfo {
            id: self.id.clone(),
            device: self.device.clone(),
            kinds: self.kinds.clone(),
            created_at: self.created_at,
        }
    }

    pub fn channel_info(&self) -> Option<ChannelInfo> {
        Some(ChannelInfo { kind: self.kind.channel()?, url: self.url.clone(), created_at: self.created_at })
    }
}

/// `kinds` as stored: comma-separated snake_case names.
pub fn kinds_text(kinds: &[PushKind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")
}

pub fn kinds_from(text: &str) -> Vec<PushKind> {
    text.split(',').filter_map(PushKind::parse).collect()
}

/// One message for one target, as the domain makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPushMessage {
    pub target_id: String,
    /// The [`flightdeck_protocol::push::PushPayload`] as JSON (encrypted per attempt when sent).
    pub payload: String,
    /// Collapses repeats at the push service (`Topic`).
    pub topic: Option<String>,
    pub ttl_secs: u32,
    /// `high` or `normal`.
    pub urgency: String,
}

/// A token that decides one request once, stored by its hash.
#[derive(Clone, PartialEq)]
pub struct NewActionToken {
    pub hash: String,
    pub task_id: String,
    pub request_id: String,
    pub expires_ms: i64,
}

impl std::fmt::Debug for NewActionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewActionToken").field("task_id", &self.task_id).field("request_id", &self.request_id).finish()
    }
}

/// One event worth a push (a request, a decision, a task's end, a test) and its messages,
/// enqueued once: `event_key` names the event, and a second enqueue of the same key (another
/// node, a resent `task-update`) stores nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    pub user: String,
    pub event_key: String,
    pub token: Option<NewActionToken>,
    pub messages: Vec<NewPushMessage>,
    pub now_ms: i64,
    /// Retries stop after this (SPEC 13: up to an hour).
    pub give_up_ms: i64,
}

/// What [`super::Store::enqueue_push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The messages are in the outbox.
    Queued(usize),
    /// This event was enqueued before: nothing stored.
    Duplicate,
    /// The outbox holds its maximum: the messages were dropped (the event still counts as seen).
    Full,
}

/// A message claimed from the outbox by one node until its lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub user: String,
    pub target_id: String,
    pub payload: String,
    pub topic: Option<String>,
    pub ttl_secs: u32,
    pub urgency: String,
    /// Claims so far, this one included.
    pub attempts: u32,
    pub give_up_ms: i64,
}

/// A live action token, as [`super::Store::use_push_token`] consumed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionToken {
    pub user: String,
    pub task_id: String,
    pub request_id: String,
}
