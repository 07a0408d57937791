//! The push sender of one node: claims due messages from the outbox (leased to this node),
//! sends each, and deletes it once the push service, ntfy or the webhook took it.
//!
//! Exactly once per message and target, also with many nodes: a message is claimed by one node
//! at a time (the store's claim is one statement), deleted when sent, and claimed again by any
//! node when its lease runs out, so a node that dies mid-send loses nothing; the rare double
//! (a node dies after the push service took the message, before the delete) carries the same
//! `Topic`, which the push service collapses.
//!
//! Outcomes: 2xx sent; 404/410 the subscription is gone (deleted, with what waits for it); 429
//! and 5xx (and network errors) retried with doubling backoff or after `Retry-After`, until the
//! message's hour is up; any other status is dropped (logged).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use flightdeck_protocol::event::Behavior;
use flightdeck_protocol::push::{ActRequest, NtfyAction, NtfyMessage, PushKind, PushPayload};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::Sha256;
use tokio::task::JoinSet;

use super::address::{check_url, InternalAddress};
use super::vapid::MAX_JWT_SECS;
use crate::state::AppState;
use crate::store::push::{OutboxRow, PushTarget, TargetKind};

/// Messages claimed at once.
const CLAIM_BATCH: u32 = 32;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    Sent,
    /// 404/410: the subscription expired or was removed by the browser.
    Gone,
    /// 429, 5xx or no answer: again later (after `Retry-After` when given).
    Retry(Option<Duration>),
    /// Will never work (bad keys, a 4xx): dropped.
    Drop(String),
    /// The host resolved to an internal address when sent (DNS rebinding): dropped, counted.
    Refused(String),
}

/// Starts this node's sender; it stops at shutdown.
pub fn start(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move { run(state).await });
}

async fn run(state: AppState) {
    let poll = state.settings.push_poll_ms.max(10) as i64;
    let lease = state.settings.push_lease_ms.max(100) as i64;
    let clock = &state.push.clock;
    // The earliest retry this node scheduled: it looks then, not on every poll.
    let mut next_due: Option<i64> = None;
    loop {
        let now = clock.now_ms();
        if next_due.is_some_and(|due| due <= now) {
            next_due = None;
        }
        state.metrics.push_claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let claimed = state.store().claim_push(&state.node_id, now, lease, CLAIM_BATCH).await;
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim push messages");
                Vec::new()
            }
        };
        if rows.is_empty() {
            // Idle, and cheap so: what this node enqueues wakes it, its own retries are timed
            // above, and `push_poll_ms` only bounds how late it finds what it was not told
            // about (a dead node's leased messages and retries, which wait a lease anyway).
            let until = next_due.map_or(now + poll, |due| due.min(now + poll));
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.push.woken() => {}
                _ = clock.sleep_until_ms(until) => {}
            }
            continue;
        }
        // Sent side by side: one slow push service does not hold the others.
        let mut sends = JoinSet::new();
        for row in rows {
            let state = state.clone();
            sends.spawn(async move { deliver(&state, row).await });
        }
        let all_sent = async {
            while let Some(result) = sends.join_next().await {
                if let Ok(Some(retry_at)) = result {
                    next_due = Some(next_due.map_or(retry_at, |due| due.min(retry_at)));
                }
            }
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = all_sent => {}
        }
    }
}

/// One attempt at one message, and what the outbox does after it; when a retry was
/// scheduled, its time.
async fn deliver(state: &AppState, row: OutboxRow) -> Option<i64> {
    let store = state.store();
    let now = state.push.clock.now_ms();
    let target = match store.push_target(&row.target_id).await {
        Ok(Some(target)) => target,
        Ok(None) => {
            // Unsubscribed meanwhile.
            let _ = store.push_done(row.id).await;
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a push target");
            let next = now + state.settings.push_retry_base_ms as i64;
            let _ = store.push_retry(row.id, next).await;
            return Some(next);
        }
    };
    let outcome = if now > row.give_up_ms {
        Outcome::Drop("retried for an hour".into())
    } else {
        match target.kind {
            TargetKind::WebPush => web_push(state, &target, &row).await,
            TargetKind::Ntfy => ntfy(state, &target, &row).await,
            TargetKind::Webhook => webhook(state, &target, &row).await,
        }
    };
    let mut retry_at = None;
    let result = match outcome {
        Outcome::Sent => {
            state.metrics.push_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store.push_done(row.id).await
        }
        Outcome::Gone => {
            tracing::info!(target = %target.id, user = %target.user, "push subscription gone: removed");
            store.delete_push_target(&target.user, &target.id).await.map(|_| ())
        }
        Outcome::Retry(after) => {
            let delay = after.unwrap_or_else(|| backoff(state.settings.push_retry_base_ms, row.attempts));
            let next = now + delay.as_millis() as i64;
            if next > row.give_up_ms {
                tracing::warn!(target = %target.id, attempts = row.attempts, "push not delivered within an hour: dropped");
                state.metrics.push_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                store.push_done(row.id).await
            } else {
                retry_at = Some(next);
                store.push_retry(row.id, next).await
            }
        }
        Outcome::Refused(host) => {
            tracing::warn!(
                target = %target.id,
                user = %target.user,
                %host,
                "push not sent: the endpoint's host resolves to an internal address now; dropped"
            );
            state.metrics.push_endpoint_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.metrics.push_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store.push_done(row.id).await
        }
        Outcome::Drop(why) => {
            tracing::warn!(target = %target.id, %why, "push dropped");
            state.metrics.push_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store.push_done(row.id).await
        }
    };
    if let Err(e) = result {
        // The lease runs out and another attempt follows.
        tracing::warn!(error = %e, "cannot record a push attempt");
    }
    retry_at
}

/// `base * 2^(attempts - 1)` with up to a quarter of jitter, at most [`MAX_BACKOFF`].
fn backoff(base_ms: u64, attempts: u32) -> Duration {
    let exp = base_ms.max(1).saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(MAX_BACKOFF.as_millis() as u64);
    let jitter = rand::random_range(0..=capped / 4);
    Duration::from_millis(capped + jitter)
}

/// `Retry-After` as seconds or an HTTP date, at most an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64
        }
    };
    Some(Duration::from_secs(secs.min(3600)))
}

fn outcome_of(status: StatusCode, headers: &HeaderMap) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Sent,
        404 | 410 => Outcome::Gone,
        429 | 500..=599 => Outcome::Retry(retry_after(headers)),
        other => Outcome::Drop(format!("answered {other}")),
    }
}

async fn post(state: &AppState, url: reqwest::Url, headers: HeaderMap, body: Vec<u8>) -> Outcome {
    match state.push.client.post(url).headers(headers).body(body).send().await {
        Ok(response) => outcome_of(response.status(), response.headers()),
        Err(e) => match refused_host(&e) {
            Some(host) => Outcome::Refused(host),
            None => {
                tracing::debug!(error = %e, "push request failed");
                Outcome::Retry(None)
            }
        },
    }
}

/// The host the resolver refused, if that is why `error` happened.
fn refused_host(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<InternalAddress>() {
            return Some(refused.host.clone());
        }
        cause = e.source();
    }
    None
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok().or_else(|| URL_SAFE.decode(text).ok())
}

/// The base of links in messages: `public_url`, else the relay as the subscriber reached it.
pub fn origin_for(state: &AppState, target: &PushTarget) -> String {
    state.settings.public_url.as_deref().map(|u| u.trim_end_matches('/').to_string()).unwrap_or(target.origin.clone())
}

/// RFC 8030 with RFC 8291 encryption and RFC 8292 VAPID.
async fn web_push(state: &AppState, target: &PushTarget, row: &OutboxRow) -> Outcome {
    let url = match check_url(&target.url, state.settings.push_allow_private_endpoints) {
        Ok(url) => url,
        Err(problem) => return Outcome::Drop(format!("endpoint refused: {problem}")),
    };
    let key = match state.push.key(state.store()).await {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(error = %e, "no VAPID key");
            return Outcome::Retry(None);
        }
    };
    let ua_public = target
        .p256dh
        .as_deref()
        .and_then(decode_b64)
        .and_then(|bytes| web_push_native::p256::PublicKey::from_sec1_bytes(&bytes).ok());
    let auth = target.auth.as_deref().and_then(decode_b64).filter(|a| a.len() == 16);
    let (Some(ua_public), Some(auth)) = (ua_public, auth) else {
        return Outcome::Drop("the subscription's keys are not valid".into());
    };
    let auth = web_push_native::Auth::clone_from_slice(&auth);
    let body = match web_push_native::encrypt(row.payload.clone().into_bytes(), &ua_public, &auth) {
        Ok(body) => body,
        Err(e) => return Outcome::Drop(format!("cannot encrypt: {e}")),
    };
    let audience = url.origin().ascii_serialization();
    let exp = chrono::Utc::now().timestamp() + MAX_JWT_SECS;
    let contact = state
        .settings
        .push_contact
        .clone()
        .or_else(|| state.settings.public_url.clone())
        .unwrap_or_else(|| target.origin.clone());
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).ok();
    if let Some(v) = header(&key.authorization(&audience, exp, &contact)) {
        headers.insert(AUTHORIZATION, v);
    }
    headers.insert("ttl", HeaderValue::from(row.ttl_secs));
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("aes128gcm"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(v) = header(&row.urgency) {
        headers.insert("urgency", v);
    }
    if let Some(v) = row.topic.as_deref().and_then(header) {
        headers.insert("topic", v);
    }
    post(state, url, headers, body).await
}

/// ntfy's JSON publishing: posted to the server's root with the topic in the body; Allow and
/// Deny are `http` actions that post an [`ActRequest`] to this relay.
async fn ntfy(state: &AppState, target: &PushTarget, row: &OutboxRow) -> Outcome {
    let url = match check_url(&target.url, state.settings.push_allow_private_endpoints) {
        Ok(url) => url,
        Err(problem) => return Outcome::Drop(format!("ntfy URL refused: {problem}")),
    };
    let Ok(payload) = serde_json::from_str::<PushPayload>(&row.payload) else {
        return Outcome::Drop("unreadable payload".into());
    };
    let Some((root, topic)) = ntfy_root_and_topic(&url) else {
        return Outcome::Drop("the ntfy URL names no topic".into());
    };
    let act_url = format!("{}/api/push/act", origin_for(state, target));
    let actions = match (&payload.action_token, &payload.actions) {
        (Some(token), Some(actions)) => actions
            .iter()
            .map(|a| NtfyAction {
                action: "http".into(),
                label: a.title.clone(),
                url: act_url.clone(),
                method: "POST".into(),
                headers: BTreeMap::from([("Content-Type".to_string(), "application/json".to_string())]),
                body: serde_json::to_string(&ActRequest { token: token.clone(), behavior: a.action, message: None })
                    .unwrap_or_default(),
                clear: true,
            })
            .collect(),
        _ => Vec::new(),
    };
    let message = NtfyMessage {
        topic,
        title: payload.title.clone(),
        message: payload.body.clone(),
        click: payload.url.clone(),
        priority: if payload.kind == PushKind::NeedsInput { 4 } else { 3 },
        actions,
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(v) = target.secret.as_deref().and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(AUTHORIZATION, v);
    }
    post(state, root, headers, serde_json::to_vec(&message).unwrap_or_default()).await
}

/// `https://ntfy.example/base/topic` -> (`https://ntfy.example/base/`, `topic`).
fn ntfy_root_and_topic(url: &reqwest::Url) -> Option<(reqwest::Url, String)> {
    let mut segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let topic = segments.pop()?.to_string();
    let mut root = url.clone();
    root.set_query(None);
    root.set_fragment(None);
    root.set_path(&format!("/{}", segments.iter().map(|s| format!("{s}/")).collect::<String>()));
    Some((root, topic))
}

/// The payload as JSON, signed `X-Flightdeck-Signature: sha256=<hex HMAC-SHA256 of the body>`.
async fn webhook(state: &AppState, target: &PushTarget, row: &OutboxRow) -> Outcome {
    let url = match check_url(&target.url, state.settings.push_allow_private_endpoints) {
        Ok(url) => url,
        Err(problem) => return Outcome::Drop(format!("webhook URL refused: {problem}")),
    };
    let body = row.payload.clone().into_bytes();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&signature(target.secret.as_deref().unwrap_or(""), &body)) {
        headers.insert("x-flightdeck-signature", v);
    }
    post(state, url, headers, body).await
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The buttons of a `needs_input` notification.
pub fn decision_actions() -> Vec<flightdeck_protocol::push::PushAction> {
    vec![
        flightdeck_protocol::push::PushAction { action: Behavior::Allow, title: "Allow".into() },
        flightdeck_protocol::push::PushAction { action: Behavior::Deny, title: "Deny".into() },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let first = backoff(1000, 1).as_millis();
        assert!((1000..=1250).contains(&first), "{first}");
        let fourth = backoff(1000, 4).as_millis();
        assert!((8000..=10_000).contains(&fourth), "{fourth}");
        assert!(backoff(1000, 40) <= MAX_BACKOFF + MAX_BACKOFF / 4);
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn an_ntfy_topic_url_splits_into_root_and_topic() {
        let url = reqwest::Url::parse("https://ntfy.example/base/alerts?x=1").unwrap();
        let (root, topic) = ntfy_root_and_topic(&url).unwrap();
        assert_eq!(root.as_str(), "https://ntfy.example/base/");
        assert_eq!(topic, "alerts");
    }
}
