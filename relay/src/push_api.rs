//! The routes of push (SPEC 13) under `/api/push`: the VAPID key, a user's subscriptions and
//! channels (owner key or session cookie, same origin), the test message, and the anonymous
//! `act` of a notification's buttons (the token is the credential).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::Utc;
use flightdeck_protocol::push::{
    ActRequest, ActResponse, ChannelKind, ChannelResponse, ChannelsResponse, NtfyChannelRequest, PushKeyResponse,
    PushKind, PushTestResponse, SubscribeRequest, SubscriptionResponse, SubscriptionsResponse, WebhookChannelRequest,
};

use crate::error::AppError;
use crate::push::address::{check_resolves_public, check_url};
use crate::request::parse_body;
use crate::state::{AppState, Auth};
use crate::store::push::{PushTarget, TargetKind};

/// The error code of a 409 when a user has as many subscriptions and channels as allowed.
pub const PUSH_LIMIT: &str = "push_limit";

const MAX_DEVICE_CHARS: usize = 64;
const MAX_SECRET_CHARS: usize = 256;

/// The owner (key or session); a cookie request must come from this origin.
fn owner_of(state: &AppState, auth: &Auth, headers: &HeaderMap) -> Result<String, AppError> {
    let user = auth.owner()?.user.clone();
    state.check_same_origin(auth, headers)?;
    Ok(user)
}

/// `GET /api/push/key` -> `{publicKey}`.
pub async fn key(State(state): State<AppState>) -> Result<Json<PushKeyResponse>, AppError> {
    let key = state.push.key(state.store()).await?;
    Ok(Json(PushKeyResponse { public_key: key.public_key().to_string() }))
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok().or_else(|| URL_SAFE.decode(text).ok())
}

/// A URL the relay may post to, or a 400 naming `field`.
async fn checked_url(state: &AppState, field: &str, raw: &str) -> Result<String, AppError> {
    let allow = state.settings.push_allow_private_endpoints;
    let url = check_url(raw, allow).map_err(|p| AppError::field(field, p))?;
    check_resolves_public(&url, allow, state.push.lookup.as_ref()).await.map_err(|p| AppError::field(field, p))?;
    Ok(url.to_string())
}

fn checked_kinds(kinds: Option<Vec<PushKind>>) -> Result<Vec<PushKind>, AppError> {
    let Some(kinds) = kinds else { return Ok(PushKind::CHOOSABLE.to_vec()) };
    if kinds.is_empty() {
        return Err(AppError::field("$.kinds", "must name at least one of needs_input, completed, failed"));
    }
    if let Some(bad) = kinds.iter().find(|k| !PushKind::CHOOSABLE.contains(k)) {
        return Err(AppError::field("$.kinds", format!("{} cannot be chosen", bad.as_str())));
    }
    // In the canonical order, once each.
    Ok(PushKind::CHOOSABLE.into_iter().filter(|k| kinds.contains(k)).collect())
}

async fn store_target(state: &AppState, target: &PushTarget) -> Result<(), AppError> {
    let max = state.settings.push_max_targets;
    if !state.store().put_push_target(target, max).await? {
        return Err(AppError::conflict(
            PUSH_LIMIT,
            format!("at most {max} subscriptions and channels per user: remove one first"),
        ));
    }
    Ok(())
}

/// `POST /api/push/subscriptions`: 201 `{subscription}`. The same endpoint subscribed again
/// replaces the earlier subscription (a browser renews its keys that way).
pub async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<SubscriptionResponse>), AppError> {
    let user = owner_of(&state, &auth, &headers)?;
    let request: SubscribeRequest = parse_body(&body)?;
    let endpoint = checked_url(&state, "$.endpoint", &request.endpoint).await?;
    let p256dh = decode_b64(&request.keys.p256dh)
        .filter(|k| web_push_native::p256::PublicKey::from_sec1_bytes(k).is_ok() && k.len() == 65)
        .ok_or_else(|| AppError::field("$.keys.p256dh", "must be a base64url uncompressed P-256 point (65 bytes)"))?;
    let auth_secret = decode_b64(&request.keys.auth)
        .filter(|a| a.len() == 16)
        .ok_or_else(|| AppError::field("$.keys.auth", "must be 16 bytes, base64url"))?;
    let device = request.device.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
    if let Some(d) = &device {
        if d.chars().count() > MAX_DEVICE_CHARS || d.chars().any(char::is_control) {
            return Err(AppError::field(
                "$.device",
                format!("at most {MAX_DEVICE_CHARS} characters, no control characters"),
            ));
        }
    }
    let kinds = checked_kinds(request.kinds)?;
    for old in state.store().push_targets(&user).await? {
        if old.kind == TargetKind::WebPush && old.url == endpoint {
            state.store().delete_push_target(&user, &old.id).await?;
        }
    }
    let target = PushTarget {
        id: uuid::Uuid::now_v7().to_string(),
        user,
        kind: TargetKind::WebPush,
        url: endpoint,
        p256dh: Some(URL_SAFE_NO_PAD.encode(p256dh)),
        auth: Some(URL_SAFE_NO_PAD.encode(auth_secret)),
        secret: None,
        device,
        kinds,
        origin: state.public_origin(&headers),
        created_at: Utc::now(),
    };
    store_target(&state, &target).await?;
    Ok((StatusCode::CREATED, Json(SubscriptionResponse { subscription: target.subscription_info() })))
}

/// `GET /api/push/subscriptions` -> `{subscriptions}`, oldest first.
pub async fn subscriptions(State(state): State<AppState>, auth: Auth) -> Result<Json<SubscriptionsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let targets = state.store().push_targets(&user).await?;
    let subscriptions =
        targets.iter().filter(|t| t.kind == TargetKind::WebPush).map(PushTarget::subscription_info).collect();
    Ok(Json(SubscriptionsResponse { subscriptions }))
}

/// `DELETE /api/push/subscriptions/:id`: 204, or 404.
pub async fn unsubscribe(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let user = owner_of(&state, &auth, &headers)?;
    let found = state.store().push_target(&id).await?.filter(|t| t.user == user && t.kind == TargetKind::WebPush);
    if found.is_none() || !state.store().delete_push_target(&user, &id).await? {
        return Err(AppError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/push/test` -> `{queued}`: a test message to every subscription and channel.
pub async fn test(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> Result<Json<PushTestResponse>, AppError> {
    let user = owner_of(&state, &auth, &headers)?;
    let queued = crate::domain::push::send_test(&state, &user).await?;
    Ok(Json(PushTestResponse { queued }))
}

/// `POST /api/push/act {token, behavior, message?}` -> `{decided: true}`; 403 for a wrong,
/// used or expired token or a request decided meanwhile.
pub async fn act(State(state): State<AppState>, body: Bytes) -> Result<Json<ActResponse>, AppError> {
    let request: ActRequest = parse_body(&body)?;
    crate::domain::push::act(&state, request).await?;
    Ok(Json(ActResponse { decided: true }))
}

/// `PUT /api/push/channels/ntfy {url, token?}` -> `{channel}`.
pub async fn put_ntfy(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChannelResponse>, AppError> {
    let user = owner_of(&state, &auth, &headers)?;
    let request: NtfyChannelRequest = parse_body(&body)?;
    let url = checked_url(&state, "$.url", &request.url).await?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| AppError::field("$.url", e.to_string()))?;
    if parsed.path_segments().is_none_or(|mut s| s.all(str::is_empty)) {
        return Err(AppError::field("$.url", "must be a topic URL (https://ntfy.example/<topic>)"));
    }
    let token = request.token.filter(|t| !t.is_empty());
    if token.as_ref().is_some_and(|t| t.len() > MAX_SECRET_CHARS || t.chars().any(|c| c.is_control())) {
        return Err(AppError::field(
            "$.token",
            format!("at most {MAX_SECRET_CHARS} characters, no control characters"),
        ));
    }
    put_channel(&state, &headers, user, TargetKind::Ntfy, url, token).await
}

/// `PUT /api/push/channels/webhook {url, secret}` -> `{channel}`.
pub async fn put_webhook(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChannelResponse>, AppError> {
    let user = owner_of(&state, &auth, &headers)?;
    let request: WebhookChannelRequest = parse_body(&body)?;
    let url = checked_url(&state, "$.url", &request.url).await?;
    if request.secret.len() < 16 || request.secret.len() > MAX_SECRET_CHARS {
        return Err(AppError::field("$.secret", format!("must be 16 to {MAX_SECRET_CHARS} characters")));
    }
    put_channel(&state, &headers, user, TargetKind::Webhook, url, Some(request.secret)).await
}

async fn put_channel(
    state: &AppState,
    headers: &HeaderMap,
    user: String,
    kind: TargetKind,
    url: String,
    secret: Option<String>,
) -> Result<Json<ChannelResponse>, AppError> {
    let target = PushTarget {
        id: uuid::Uuid::now_v7().to_string(),
        user,
        kind,
        url,
        p256dh: None,
        auth: None,
        secret,
        device: None,
        kinds: PushKind::CHOOSABLE.to_vec(),
        origin: state.public_origin(headers),
        created_at: Utc::now(),
    };
    store_target(state, &target).await?;
    let channel = target.channel_info().ok_or_else(|| AppError::Internal("not a channel".into()))?;
    Ok(Json(ChannelResponse { channel }))
}

/// `GET /api/push/channels` -> `{channels}`.
pub async fn channels(State(state): State<AppState>, auth: Auth) -> Result<Json<ChannelsResponse>, AppError> {
    let user = auth.owner()?.user.clone();
    let targets = state.store().push_targets(&user).await?;
    Ok(Json(ChannelsResponse { channels: targets.iter().filter_map(PushTarget::channel_info).collect() }))
}

/// `DELETE /api/push/channels/ntfy`: 204, or 404.
pub async fn delete_ntfy(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    delete_channel(&state, &auth, &headers, ChannelKind::Ntfy).await
}

/// `DELETE /api/push/channels/webhook`: 204, or 404.
pub async fn delete_webhook(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    delete_channel(&state, &auth, &headers, ChannelKind::Webhook).await
}

async fn delete_channel(
    state: &AppState,
    auth: &Auth,
    headers: &HeaderMap,
    kind: ChannelKind,
) -> Result<StatusCode, AppError> {
    let user = owner_of(state, auth, headers)?;
    let mut deleted = false;
    for target in state.store().push_targets(&user).await? {
        if target.kind.channel() == Some(kind) {
            deleted |= state.store().delete_push_target(&user, &target.id).await?;
        }
    }
    if !deleted {
        return Err(AppError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
