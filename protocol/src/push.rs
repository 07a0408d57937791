//! Push (SPEC 13): the REST bodies of `/api/push/*`, the payload a Web Push message carries
//! (decrypted by the service worker), and what ntfy and webhooks receive.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Behavior;
use crate::Timestamp;

/// Largest serialized [`PushPayload`] (SPEC 13: at most 3 KB); the relay shortens `body` to fit.
pub const MAX_PUSH_PAYLOAD_BYTES: usize = 3072;

/// What a push tells. A subscription chooses among `needs_input`, `completed` and `failed`;
/// `resolved` goes to those that get `needs_input`, and `test` to all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushKind {
    /// A task is `waiting` on a permission request or a question.
    NeedsInput,
    Completed,
    Failed,
    /// A request announced by `needs_input` was decided (anywhere): close its notification.
    Resolved,
    /// `POST /api/push/test`.
    Test,
}

impl PushKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::NeedsInput => "needs_input",
            PushKind::Completed => "completed",
            PushKind::Failed => "failed",
            PushKind::Resolved => "resolved",
            PushKind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<PushKind> {
        [PushKind::NeedsInput, PushKind::Completed, PushKind::Failed, PushKind::Resolved, PushKind::Test]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The kinds a subscriber may choose, and the default choice.
    pub const CHOOSABLE: [PushKind; 3] = [PushKind::NeedsInput, PushKind::Completed, PushKind::Failed];
}

/// `GET /api/push/key`: the relay's VAPID public key (base64url, uncompressed P-256 point), the
/// `applicationServerKey` of `pushManager.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PushKeyResponse {
    pub public_key: String,
}

/// The browser's keys of a subscription (`PushSubscription.toJSON().keys`), base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The user agent's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The authentication secret (16 bytes).
    pub auth: String,
}

/// `POST /api/push/subscriptions`: `PushSubscription.toJSON()` plus a device name and kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SubscribeRequest {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// Part of `toJSON()`; not used (the push service says when a subscription is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<Value>,
    /// A name for the device (`"Pixel 8"`), shown in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Any of `needs_input`, `completed`, `failed`; default all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<PushKind>>,
}

/// A subscription as its owner sees it (never its keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PushSubscriptionInfo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub kinds: Vec<PushKind>,
    pub created_at: Timestamp,
}

/// 201 of `POST /api/push/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SubscriptionResponse {
    pub subscription: PushSubscriptionInfo,
}

/// `GET /api/push/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SubscriptionsResponse {
    pub subscriptions: Vec<PushSubscriptionInfo>,
}

/// `POST /api/push/test`: how many messages were queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PushTestResponse {
    pub queued: u32,
}

/// One button of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PushAction {
    /// `allow` or `deny`.
    pub action: Behavior,
    pub title: String,
}

/// What a Web Push message carries (decrypted by the service worker), and the body of a
/// webhook. At most [`MAX_PUSH_PAYLOAD_BYTES`] serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PushPayload {
    /// The payload's version: 1.
    pub v: u32,
    pub kind: PushKind,
    pub task_id: String,
    pub repo: String,
    pub user: String,
    pub title: String,
    /// What the HUD shows the owner (redacted by the agent), shortened to fit.
    pub body: String,
    /// Where a tap on the notification leads (the task in the HUD).
    pub url: String,
    /// The permission request (`needs_input`, `resolved`): the notification's tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Decides the request once through `POST /api/push/act` (`needs_input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<PushAction>>,
}

/// `POST /api/push/act`: a notification's Allow or Deny; the token is the credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ActRequest {
    pub token: String,
    pub behavior: Behavior,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /api/push/act` answers `{decided: true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ActResponse {
    pub decided: bool,
}

/// `PUT /api/push/channels/ntfy`: an ntfy topic URL (`https://ntfy.sh/my-topic`) and its
/// access token, if the topic needs one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NtfyChannelRequest {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `PUT /api/push/channels/webhook`: where to post, and the HMAC-SHA256 secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WebhookChannelRequest {
    pub url: String,
    pub secret: String,
}

/// Which other channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Ntfy,
    Webhook,
}

/// A channel as its owner sees it (never its token or secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ChannelInfo {
    pub kind: ChannelKind,
    pub url: String,
    pub created_at: Timestamp,
}

/// `PUT /api/push/channels/*` answers `{channel}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChannelResponse {
    pub channel: ChannelInfo,
}

/// `GET /api/push/channels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChannelsResponse {
    pub channels: Vec<ChannelInfo>,
}

/// What the relay publishes to ntfy (its JSON publishing form, posted to the server's root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NtfyMessage {
    pub topic: String,
    pub title: String,
    pub message: String,
    pub click: String,
    /// `high` (4) for `needs_input`, else the default (3).
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<NtfyAction>,
}

/// An ntfy `http` action button: ntfy's app posts `body` to `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NtfyAction {
    /// Always `http`.
    pub action: String,
    pub label: String,
    pub url: String,
    pub method: String,
    pub headers: std::collections::BTreeMap<String, String>,
    /// An [`ActRequest`] as JSON text.
    pub body: String,
    pub clear: bool,
}
