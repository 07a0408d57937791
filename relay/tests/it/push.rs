//! Push (SPEC 13) end to end: a push-service stand-in on 127.0.0.1 checks each request as a
//! browser vendor's service would (the VAPID JWT against the relay's key, aud, exp) and
//! decrypts the RFC 8291 payload with keys the test made as a browser would; ntfy and webhook
//! stand-ins check their bodies; action tokens decide requests once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::push::{NtfyMessage, PushKind, PushPayload};
use flightdeck_protocol::{AgentMessage, RelayMessage, RepoState, Task, TaskEvent, TaskStatus};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use rand::RngCore;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use flightdeck_relay::push::address::{Lookup, SystemLookup};
use flightdeck_relay::push::clock::Clock;
use flightdeck_relay::push::Push;

use crate::support::*;

// ----- a push service, a browser ---------------------------------------------------------------

/// One request the stand-in received.
#[derive(Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// This request is held open (never answered).
    pub held: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the stand-in answers the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, Option<&'static str>),
    /// Never answers (until the test ends): a node sending it can be killed mid-send.
    Hold,
}

/// An HTTP server on 127.0.0.1:0 that records every request and answers from a script
/// (default 201).
pub struct Service {
    pub addr: std::net::SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Service {
    pub async fn start() -> Service {
        let (tx, seen) = mpsc::unbounded_channel();
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let handler = {
            let script = script.clone();
            move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let (tx, script) = (tx.clone(), script.clone());
                async move {
                    // Taken and recorded under one lock: requests are seen in the order of their replies.
                    let reply = {
                        let mut script = script.lock().unwrap();
                        let reply = script.pop_front().unwrap_or(Reply::Status(201, None));
                        let held = matches!(reply, Reply::Hold);
                        let _ = tx.send(Seen { path: uri.path().to_string(), headers, body: body.to_vec(), held });
                        reply
                    };
                    match reply {
                        Reply::Status(code, retry_after) => {
                            let mut headers = HeaderMap::new();
                            if let Some(after) = retry_after {
                                headers.insert("retry-after", after.parse().unwrap());
                            }
                            (StatusCode::from_u16(code).unwrap(), headers)
                        }
                        Reply::Hold => std::future::pending().await,
                    }
                }
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service { addr, seen, script }
    }

    pub fn reply_next(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request, within the deadline.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(DEADLINE, self.seen.recv()).await.expect("a request in time").unwrap()
    }

    /// The next `n` requests, whatever their order.
    pub async fn take(&mut self, n: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }
}

/// A browser's side of a subscription: its P-256 key and auth secret.
pub struct Browser {
    pub secret: p256::SecretKey,
    pub auth: [u8; 16],
    pub endpoint: String,
}

impl Browser {
    pub fn new(endpoint: String) -> Browser {
        let secret = loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
                break key;
            }
        };
        let mut auth = [0u8; 16];
        rand::rng().fill_bytes(&mut auth);
        Browser { secret, auth, endpoint }
    }

    /// `PushSubscription.toJSON()`.
    pub fn subscription(&self) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let public = self.secret.public_key().to_encoded_point(false);
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": URL_SAFE_NO_PAD.encode(public.as_bytes()), "auth": URL_SAFE_NO_PAD.encode(self.auth)},
        })
    }

    /// Checks a request as the push service and reads it as the browser: the VAPID JWT is
    /// signed by `relay_key` for the service's origin and not expired; the body decrypts.
    pub fn open(&self, seen: &Seen, relay_key: &str, service_origin: &str) -> PushPayload {
        assert_eq!(seen.path, url::Url::parse(&self.endpoint).unwrap().path(), "sent to the subscription's endpoint");
        assert_eq!(seen.header("content-encoding"), Some("aes128gcm"));
        let auth = seen.header("authorization").expect("a VAPID Authorization header");
        let (t, k) = auth.strip_prefix("vapid t=").and_then(|r| r.split_once(", k=")).expect("vapid t=..., k=...");
        assert_eq!(k, relay_key, "k is the relay's public key");
        let verifying = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
        let (signed, signature) = t.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        verifying.verify(signed.as_bytes(), &signature).expect("the JWT's ES256 signature verifies");
        let (header, claims) = signed.split_once('.').unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], service_origin, "aud is the endpoint's origin");
        let exp = claims["exp"].as_i64().unwrap();
        let now = chrono::Utc::now().timestamp();
        assert!(exp > now && exp <= now + 24 * 3600, "exp within 24 h: {exp} vs {now}");
        let sub = claims["sub"].as_str().unwrap();
        assert!(sub.starts_with("mailto:") || sub.starts_with("http"), "{sub}");
        let auth = web_push_native::Auth::clone_from_slice(&self.auth);
        let plain = web_push_native::decrypt(seen.body.clone(), &self.secret, &auth).expect("the payload decrypts");
        assert!(plain.len() <= flightdeck_protocol::push::MAX_PUSH_PAYLOAD_BYTES, "at most 3 KB");
        serde_json::from_slice(&plain).unwrap()
    }
}

// ----- the relay side ------------------------------------------------------------------------

fn push_settings(s: &mut flightdeck_relay::Settings) {
    s.push_allow_private_endpoints = true;
    s.push_poll_ms = 50;
    s.push_retry_base_ms = 100;
}

async fn push_relay() -> Relay {
    Relay::start_with(push_settings).await
}

/// A push relay whose time is `clock` (tests move it rather than sleep).
async fn push_relay_on(clock: &Clock, configure: impl FnOnce(&mut flightdeck_relay::Settings)) -> Relay {
    let clock = clock.clone();
    Relay::start_with_push(configure, move |s| Push::with(s, clock, Arc::new(SystemLookup))).await
}

async fn relay_key(relay: &Relay) -> String {
    let r = relay.http().get(relay.url("/api/push/key")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let key = body["publicKey"].as_str().unwrap().to_string();
    assert_eq!(URL_SAFE_NO_PAD.decode(&key).unwrap().len(), 65, "an uncompressed P-256 point");
    key
}

async fn subscribe(relay: &Relay, browser: &Browser, device: &str, kinds: Option<Value>) -> Value {
    let mut body = browser.subscription();
    body["device"] = json!(device);
    if let Some(kinds) = kinds {
        body["kinds"] = kinds;
    }
    let (status, answer) = relay.post("/api/push/subscriptions", &relay.keys.owner, &body).await;
    assert_eq!(status, 201, "{answer}");
    answer["subscription"].clone()
}

async fn act(relay: &Relay, body: &Value) -> (u16, Value) {
    let r = relay.http().post(relay.url("/api/push/act")).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An agent `mac` online with the repo `web`.
async fn online_agent(relay: &Relay) -> Ws {
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    barrier(&mut agent).await;
    agent
}

/// A claude task in `web` that the agent reports `waiting` on `request_id`.
async fn waiting_task(relay: &Relay, agent: &mut Ws, request_id: &str) -> Task {
    waiting_task_with(relay, agent, request_id, json!({"prompt": "touch a file"})).await
}

async fn waiting_task_with(relay: &Relay, agent: &mut Ws, request_id: &str, payload: Value) -> Task {
    let body = json!({"executor": "claude", "repo": "web", "payload": payload});
    let (status, created) = relay.post("/api/cockpit/tasks", &relay.keys.owner, &body).await;
    assert_eq!(status, 201, "{created}");
    let task: Task = serde_json::from_value(created["task"].clone()).unwrap();
    match recv_relay_skip_pings(agent).await {
        RelayMessage::Task { task_id, .. } => assert_eq!(task_id, task.id),
        other => panic!("expected the task, got {other:?}"),
    }
    let at = chrono::Utc::now();
    let waiting = Task { status: TaskStatus::Waiting, started_at: Some(at), waiting_since: Some(at), ..task };
    send(agent, &AgentMessage::TaskUpdate { task: waiting.clone() }).await;
    let request = TaskEvent::PermissionRequest {
        request_id: request_id.into(),
        tool_name: "Bash".into(),
        input: json!({"command": "touch made-by-claude.txt"}),
        description: None,
        suggestions: None,
    };
    send(agent, &AgentMessage::TaskEvent { task_id: waiting.id.clone(), seq: 1, event: request }).await;
    barrier(agent).await;
    waiting
}

fn topic_ok(topic: Option<&str>) -> String {
    let topic = topic.expect("a Topic header").to_string();
    assert!(topic.len() <= 32 && topic.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{topic}");
    topic
}

// ----- the tests -----------------------------------------------------------------------------

#[tokio::test]
async fn push_subscriptions_refuse_internal_endpoints_and_bad_bodies_naming_the_field() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    relay_key(&relay).await;
    let browser = Browser::new("https://push.example.com/send/abc".into());
    let refused = [
        "https://127.0.0.1/push/x",
        "https://169.254.169.254/",
        "https://[::1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://localhost/x",
        "http://push.example.com/x",
    ];
    for endpoint in refused {
        let body = Browser { endpoint: endpoint.into(), ..Browser::new(String::new()) }.subscription();
        let (status, answer) = relay.post("/api/push/subscriptions", &owner, &body).await;
        assert_eq!(status, 400, "{endpoint}: {answer}");
        assert_eq!(answer["error"]["details"][0]["path"], "$.endpoint", "{endpoint}: {answer}");
    }
    let cases = [
        (json!({"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}), "$.keys.p256dh"),
        (json!({"keys": {"p256dh": browser.subscription()["keys"]["p256dh"], "auth": "AAAA"}}), "$.keys.auth"),
        (json!({"kinds": []}), "$.kinds"),
        (json!({"kinds": ["resolved"]}), "$.kinds"),
        (json!({"device": "x".repeat(65)}), "$.device"),
    ];
    for (change, field) in cases {
        let mut body = browser.subscription();
        // A public address literal: no DNS needed to accept it.
        body["endpoint"] = json!("https://8.8.8.8/send/abc");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = relay.post("/api/push/subscriptions", &owner, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["details"][0]["path"], field, "{answer}");
    }
    let mut unknown = browser.subscription();
    unknown["extra"] = json!(1);
    assert_eq!(relay.post("/api/push/subscriptions", &owner, &unknown).await.0, 400);
    // Owners only.
    let good = json!({"endpoint": "https://8.8.8.8/send/abc", "keys": browser.subscription()["keys"]});
    assert_eq!(relay.post("/api/push/subscriptions", &relay.keys.viewer, &good).await.0, 403);
    let anonymous = relay.http().post(relay.url("/api/push/subscriptions")).json(&good).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // Channels follow the same address rules.
    let r = relay
        .http()
        .put(relay.url("/api/push/channels/webhook"))
        .bearer_auth(&owner)
        .json(&json!({"url": "https://169.254.169.254/latest", "secret": "0123456789abcdef"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_waiting_task_pushes_to_each_subscription_and_its_token_decides_once() {
    let relay = push_relay().await;
    let key = relay_key(&relay).await;
    let mut service = Service::start().await;
    let phone = Browser::new(service.url("/push/phone"));
    let laptop = Browser::new(service.url("/push/laptop"));
    let quiet = Browser::new(service.url("/push/quiet"));
    let sub = subscribe(&relay, &phone, "Pixel", Some(json!(["needs_input"]))).await;
    assert_eq!(sub["device"], "Pixel");
    assert_eq!(sub["kinds"], json!(["needs_input"]));
    subscribe(&relay, &laptop, "Laptop", None).await;
    subscribe(&relay, &quiet, "Tablet", Some(json!(["completed"]))).await;
    let (_, list) = relay.get("/api/push/subscriptions", &relay.keys.owner).await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 3, "{list}");
    assert!(!list.to_string().contains("p256dh"), "keys are never shown");

    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "toolu_01").await;

    // One push per subscription that wants needs_input.
    let mut tokens = Vec::new();
    let mut topics = Vec::new();
    for seen in service.take(2).await {
        let browser = if seen.path.ends_with("phone") { &phone } else { &laptop };
        assert!(!seen.path.ends_with("quiet"), "the tablet only wants completed");
        let payload = browser.open(&seen, &key, &service.origin());
        assert_eq!(payload.v, 1);
        assert_eq!(payload.kind, PushKind::NeedsInput);
        assert_eq!(payload.task_id, task.id);
        assert_eq!((payload.repo.as_str(), payload.user.as_str()), ("web", "alice"));
        assert_eq!(payload.request_id.as_deref(), Some("toolu_01"));
        assert_eq!(payload.body, "Bash: touch made-by-claude.txt");
        assert!(payload.url.ends_with(&format!("/hud/alice/web?task={}", task.id)), "{}", payload.url);
        let actions: Vec<Behavior> = payload.actions.unwrap().iter().map(|a| a.action).collect();
        assert_eq!(actions, [Behavior::Allow, Behavior::Deny]);
        assert_eq!(seen.header("urgency"), Some("high"));
        assert_eq!(seen.header("ttl"), Some("86400"), "until the request can no longer be decided: 24 h");
        topics.push(topic_ok(seen.header("topic")));
        tokens.push(payload.action_token.expect("an action token"));
    }
    assert_eq!(tokens[0], tokens[1], "one token per request");
    assert_eq!(topics[0], topics[1]);

    // A wrong token changes nothing.
    let (status, _) = act(&relay, &json!({"token": "fdp_wrong", "behavior": "allow"})).await;
    assert_eq!(status, 403);
    let (status, body) = act(&relay, &json!({"token": tokens[0], "behavior": "allow"})).await;
    assert_eq!(status, 200, "{body}");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { task_id, request_id, behavior, decided_by, .. } => {
            assert_eq!((task_id.as_str(), request_id.as_str()), (task.id.as_str(), "toolu_01"));
            assert_eq!(behavior, Behavior::Allow);
            assert_eq!(decided_by, Some(DecidedBy::Push));
        }
        other => panic!("expected the decision, got {other:?}"),
    }
    // Every device that was told is told it is decided, under the request's Topic.
    for seen in service.take(2).await {
        let browser = if seen.path.ends_with("phone") { &phone } else { &laptop };
        let payload = browser.open(&seen, &key, &service.origin());
        assert_eq!(payload.kind, PushKind::Resolved);
        assert_eq!(payload.request_id.as_deref(), Some("toolu_01"));
        assert_eq!(payload.action_token, None);
        assert_eq!(topic_ok(seen.header("topic")), topics[0]);
    }
    // Used: 403, and nothing is decided twice.
    let (status, _) = act(&relay, &json!({"token": tokens[0], "behavior": "deny"})).await;
    assert_eq!(status, 403);

    // The agent records the decision: no second `resolved`. The task completes: `completed`
    // to those that want it.
    let decision = TaskEvent::PermissionDecision {
        request_id: "toolu_01".into(),
        behavior: Behavior::Allow,
        message: None,
        updated_input: None,
        decided_by: DecidedBy::Push,
    };
    send(&mut agent, &AgentMessage::TaskEvent { task_id: task.id.clone(), seq: 2, event: decision }).await;
    let done = Task { status: TaskStatus::Completed, summary: Some("made it".into()), ..task.clone() };
    send(&mut agent, &AgentMessage::TaskUpdate { task: done.clone() }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: done }).await;
    barrier(&mut agent).await;
    let mut completed = service.take(2).await;
    completed.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = completed.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/push/laptop", "/push/quiet"], "completed once each, nothing else");
    let payload = quiet.open(&completed[1], &key, &service.origin());
    assert_eq!((payload.kind, payload.body.as_str()), (PushKind::Completed, "made it"));
    assert_eq!(completed[1].header("ttl"), Some("3600"));
    assert_eq!(completed[1].header("urgency"), Some("normal"));
    // A test push reaches all three, and then nothing else is left to send.
    let (status, body) = relay.post("/api/push/test", &relay.keys.owner, &json!({})).await;
    assert_eq!((status, body["queued"].as_u64()), (200, Some(3)), "{body}");
    let tests = service.take(3).await;
    let paths: std::collections::BTreeSet<&str> = tests.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 3);
    assert!(service.seen.try_recv().is_err(), "no duplicate: {:?}", service.seen.try_recv().map(|s| s.path));
}

#[tokio::test]
async fn a_gone_subscription_is_removed_and_429_is_retried_after_retry_after() {
    // Retries come due by the relay's clock, which the test moves: no waiting out Retry-After.
    // The default poll (seconds): the sender times its own retries.
    let clock = Clock::default();
    let relay = push_relay_on(&clock, |s| {
        s.push_allow_private_endpoints = true;
        s.push_retry_base_ms = 60_000;
    })
    .await;
    let key = relay_key(&relay).await;
    let mut gone_service = Service::start().await;
    let mut busy_service = Service::start().await;
    let gone = Browser::new(gone_service.url("/push/gone"));
    let busy = Browser::new(busy_service.url("/push/busy"));
    let gone_id = subscribe(&relay, &gone, "old phone", None).await["id"].as_str().unwrap().to_string();
    subscribe(&relay, &busy, "busy phone", None).await;
    gone_service.reply_next(Reply::Status(410, None));
    busy_service.reply_next(Reply::Status(429, Some("600")));
    busy_service.reply_next(Reply::Status(503, None));
    let (status, _) = relay.post("/api/push/test", &relay.keys.owner, &json!({})).await;
    assert_eq!(status, 200);

    gone_service.next().await;
    eventually("the gone subscription removed", || async {
        let (_, list) = relay.get("/api/push/subscriptions", &relay.keys.owner).await;
        let ids: Vec<&str> = list["subscriptions"].as_array()?.iter().filter_map(|s| s["id"].as_str()).collect();
        (!ids.contains(&gone_id.as_str()) && ids.len() == 1).then_some(())
    })
    .await;

    busy_service.next().await;
    // The retry is stored once the sender looks again (claims: at start, the batch, after it).
    eventually("the 429 recorded", || async {
        (relay.metric("flightdeck_push_claims_total").await >= 3.0).then_some(())
    })
    .await;
    // 10 s short of Retry-After: 600 (real time passes too), then past it.
    clock.advance(Duration::from_secs(590));
    assert!(busy_service.seen.try_recv().is_err(), "not before Retry-After: 600");
    clock.advance(Duration::from_secs(10));
    busy_service.next().await;
    // The 503 (second attempt) is retried after twice the base delay (120 s) and its jitter (at
    // most a quarter).
    clock.advance(Duration::from_secs(150));
    let third = busy_service.next().await;
    let payload = busy.open(&third, &key, &busy_service.origin());
    assert_eq!(payload.kind, PushKind::Test);
    // Delivered: not sent again.
    let (status, _) = relay.post("/api/push/test", &relay.keys.owner, &json!({})).await;
    assert_eq!(status, 200);
    let fourth = busy_service.next().await;
    assert_eq!(busy.open(&fourth, &key, &busy_service.origin()).kind, PushKind::Test);
    assert!(gone_service.seen.try_recv().is_err(), "nothing more to a removed subscription");
}

#[tokio::test]
async fn ntfy_gets_allow_and_deny_buttons_and_webhooks_a_signed_payload() {
    let relay = push_relay().await;
    let mut ntfy = Service::start().await;
    let mut hook = Service::start().await;
    let owner = relay.keys.owner.clone();
    let put = |path: &'static str, body: Value| {
        let request = relay.http().put(relay.url(path)).bearer_auth(&owner).json(&body);
        async move { request.send().await.unwrap() }
    };
    let r = put("/api/push/channels/ntfy", json!({"url": ntfy.url("/flightdeck-alice"), "token": "tk_ntfy"})).await;
    assert_eq!(r.status(), 200);
    let secret = "a-webhook-secret-of-some-length";
    let r = put("/api/push/channels/webhook", json!({"url": hook.url("/hook"), "secret": secret})).await;
    assert_eq!(r.status(), 200);
    let (_, channels) = relay.get("/api/push/channels", &owner).await;
    assert_eq!(channels["channels"].as_array().unwrap().len(), 2, "{channels}");
    assert!(!channels.to_string().contains(secret) && !channels.to_string().contains("tk_ntfy"));

    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "toolu_07").await;

    let published = ntfy.next().await;
    assert_eq!(published.path, "/", "ntfy's JSON publishing goes to the server's root");
    assert_eq!(published.header("authorization"), Some("Bearer tk_ntfy"));
    let message: NtfyMessage = serde_json::from_slice(&published.body).unwrap();
    assert_eq!(message.topic, "flightdeck-alice");
    assert_eq!(message.message, "Bash: touch made-by-claude.txt");
    assert!(message.click.ends_with(&format!("/hud/alice/web?task={}", task.id)));
    let labels: Vec<&str> = message.actions.iter().map(|a| a.label.as_str()).collect();
    assert_eq!(labels, ["Allow", "Deny"]);
    for action in &message.actions {
        assert_eq!((action.action.as_str(), action.method.as_str()), ("http", "POST"));
        assert_eq!(action.url, relay.url("/api/push/act"));
    }

    let delivered = hook.next().await;
    let signature = delivered.header("x-flightdeck-signature").unwrap().to_string();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&delivered.body);
    assert_eq!(signature, format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    let payload: PushPayload = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!((payload.kind, payload.task_id.as_str()), (PushKind::NeedsInput, task.id.as_str()));

    // ntfy's Deny button posts its body: the request is denied by push.
    let deny = &message.actions[1];
    let r = relay
        .http()
        .post(&deny.url)
        .header("content-type", "application/json")
        .body(deny.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { behavior, decided_by, .. } => {
            assert_eq!((behavior, decided_by), (Behavior::Deny, Some(DecidedBy::Push)))
        }
        other => panic!("expected the decision, got {other:?}"),
    }
    // The webhook hears it was resolved; ntfy cannot take a notification back.
    let resolved: PushPayload = serde_json::from_slice(&hook.next().await.body).unwrap();
    assert_eq!(resolved.kind, PushKind::Resolved);

    let r = relay.http().delete(relay.url("/api/push/channels/ntfy")).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (_, channels) = relay.get("/api/push/channels", &owner).await;
    assert_eq!(channels["channels"][0]["kind"], "webhook");
}

#[tokio::test]
async fn a_request_decided_elsewhere_kills_its_token() {
    let relay = push_relay().await;
    let key = relay_key(&relay).await;
    let mut service = Service::start().await;
    let phone = Browser::new(service.url("/push/phone"));
    subscribe(&relay, &phone, "Pixel", None).await;
    let mut agent = online_agent(&relay).await;
    let task = waiting_task(&relay, &mut agent, "toolu_02").await;
    let token = phone.open(&service.next().await, &key, &service.origin()).action_token.unwrap();
    // The owner decides in the HUD.
    let path = format!("/api/cockpit/tasks/{}/permissions/toolu_02", task.id);
    let (status, body) = relay.post(&path, &relay.keys.owner, &json!({"behavior": "deny"})).await;
    assert_eq!(status, 200, "{body}");
    let resolved = phone.open(&service.next().await, &key, &service.origin());
    assert_eq!(resolved.kind, PushKind::Resolved);
    let (status, _) = act(&relay, &json!({"token": token, "behavior": "allow"})).await;
    assert_eq!(status, 403, "the token died with the decision");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { behavior, decided_by, .. } => {
            assert_eq!((behavior, decided_by), (Behavior::Deny, None), "the owner's, only")
        }
        other => panic!("expected the decision, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_lives_as_long_as_its_request_can_be_decided() {
    let clock = Clock::default();
    let relay = push_relay_on(&clock, push_settings).await;
    let key = relay_key(&relay).await;
    let mut service = Service::start().await;
    let phone = Browser::new(service.url("/push/phone"));
    subscribe(&relay, &phone, "Pixel", None).await;
    let mut agent = online_agent(&relay).await;
    let payload = json!({"prompt": "touch a file", "decisionTimeoutSecs": 1});
    let task = waiting_task_with(&relay, &mut agent, "toolu_03", payload).await;
    let seen = service.next().await;
    assert_eq!(seen.header("ttl"), Some("1"), "the TTL is the request's decision timeout");
    let token = phone.open(&seen, &key, &service.origin()).action_token.unwrap();
    // The token's life is the relay's time: moved past the request's second.
    clock.advance(Duration::from_millis(1001));
    let (status, _) = act(&relay, &json!({"token": token, "behavior": "allow"})).await;
    assert_eq!(status, 403, "expired");
    // It changed nothing: the request is still open to the owner.
    let path = format!("/api/cockpit/tasks/{}/permissions/toolu_03", task.id);
    let (status, body) = relay.post(&path, &relay.keys.owner, &json!({"behavior": "deny"})).await;
    assert_eq!(status, 200, "{body}");
    match recv_relay_skip_pings(&mut agent).await {
        RelayMessage::PermissionDecision { behavior, decided_by, .. } => {
            assert_eq!((behavior, decided_by), (Behavior::Deny, None), "only the owner's decision reached the agent")
        }
        other => panic!("expected the decision, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_has_at_most_the_configured_targets_and_payloads_fit_in_3_kb() {
    let relay = Relay::start_with(|s| {
        s.push_allow_private_endpoints = true;
        s.push_max_targets = 2;
        s.push_poll_ms = 50;
    })
    .await;
    let key = relay_key(&relay).await;
    let mut service = Service::start().await;
    let phone = Browser::new(service.url("/push/phone"));
    subscribe(&relay, &phone, "Pixel", None).await;
    // The same endpoint again replaces its subscription (a browser renewing its keys).
    let phone = Browser::new(service.url("/push/phone"));
    subscribe(&relay, &phone, "Pixel", None).await;
    let r = relay
        .http()
        .put(relay.url("/api/push/channels/webhook"))
        .bearer_auth(&relay.keys.owner)
        .json(&json!({"url": service.url("/hook"), "secret": "0123456789abcdef"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let third = Browser::new(service.url("/push/third"));
    let (status, body) = relay.post("/api/push/subscriptions", &relay.keys.owner, &third.subscription()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("push_limit")), "{body}");

    // A request far larger than a push may carry: the body is cut to fit.
    let mut agent = online_agent(&relay).await;
    let body = json!({"executor": "claude", "repo": "web", "payload": {"prompt": "big"}});
    let (_, created) = relay.post("/api/cockpit/tasks", &relay.keys.owner, &body).await;
    let task: Task = serde_json::from_value(created["task"].clone()).unwrap();
    recv_relay_skip_pings(&mut agent).await;
    let huge = TaskEvent::PermissionRequest {
        request_id: "toolu_big".into(),
        tool_name: "Bash".into(),
        input: json!({"command": format!("echo {}", "\"é\" ".repeat(4000))}),
        description: None,
        suggestions: None,
    };
    send(&mut agent, &AgentMessage::TaskEvent { task_id: task.id.clone(), seq: 1, event: huge }).await;
    let mut seen = service.take(2).await;
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen[0].path, "/hook");
    assert!(seen[0].body.len() <= flightdeck_protocol::push::MAX_PUSH_PAYLOAD_BYTES, "{}", seen[0].body.len());
    let payload = phone.open(&seen[1], &key, &service.origin());
    assert!(payload.body.starts_with("Bash: echo \"é\"") && payload.body.ends_with('…'), "{}", payload.body);
    assert!(payload.action_token.is_some(), "cut, but whole where it counts");
}

/// A name that resolves to a public address at subscribe and to 127.0.0.1 at send (DNS
/// rebinding), through the resolver the relay is built with.
struct Rebinding {
    rebound: std::sync::atomic::AtomicBool,
}

impl Lookup for Rebinding {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::IpAddr>>> + Send>> {
        let ip =
            if self.rebound.load(std::sync::atomic::Ordering::SeqCst) { [127, 0, 0, 1] } else { [93, 184, 216, 34] };
        assert_eq!(host, "push.rebinding.test");
        Box::pin(async move { Ok(vec![std::net::IpAddr::from(ip)]) })
    }
}

#[tokio::test]
async fn a_name_that_resolves_internal_at_send_time_is_not_posted_to_and_the_message_is_dropped() {
    let lookup = Arc::new(Rebinding { rebound: false.into() });
    // No `push_allow_private_endpoints`: production rules.
    let relay = Relay::start_with_push(|_| {}, {
        let lookup = lookup.clone();
        move |s| Push::with(s, Clock::default(), lookup)
    })
    .await;
    // What the relay would reach on 127.0.0.1: any connection to it is a failure.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = internal.local_addr().unwrap().port();
    let phone = Browser::new(format!("https://push.rebinding.test:{port}/push/phone"));
    subscribe(&relay, &phone, "Pixel", None).await;
    lookup.rebound.store(true, std::sync::atomic::Ordering::SeqCst);

    let (status, body) = relay.post("/api/push/test", &relay.keys.owner, &json!({})).await;
    assert_eq!((status, body["queued"].as_u64()), (200, Some(1)), "{body}");
    eventually("the message refused at send", || async {
        (relay.metric("flightdeck_push_endpoint_refused_total").await == 1.0).then_some(())
    })
    .await;
    // Counted as failed only when dropped (a retry would not be, for an hour).
    assert_eq!(relay.metric("flightdeck_push_failed_total").await, 1.0, "dropped, not retried");
    assert_eq!(relay.metric("flightdeck_push_sent_total").await, 0.0);
    let connected = tokio::time::timeout(Duration::ZERO, internal.accept()).await;
    assert!(connected.is_err(), "nothing connected to 127.0.0.1: {connected:?}");
}

#[tokio::test]
async fn an_idle_sender_looks_into_the_outbox_when_woken_or_once_per_poll() {
    // A ten-minute poll: an idle relay (every relay in these tests) leaves the store alone.
    let clock = Clock::default();
    let relay = push_relay_on(&clock, |s| {
        s.push_allow_private_endpoints = true;
        s.push_poll_ms = 600_000;
    })
    .await;
    let claims = || relay.metric("flightdeck_push_claims_total");
    eventually("the claim at start", || async { (claims().await >= 1.0).then_some(()) }).await;
    let at_start = claims().await;
    assert_eq!(at_start, 1.0);
    // Nothing due before the poll's time (10 s short of it: real time passes too).
    clock.advance(Duration::from_secs(590));
    assert_eq!(claims().await, at_start);
    clock.advance(Duration::from_secs(10));
    eventually("one claim at the poll's time", || async { (claims().await == at_start + 1.0).then_some(()) }).await;

    // What this node enqueues wakes it: sent at once, not at the next poll.
    let mut hook = Service::start().await;
    let body = json!({"url": hook.url("/hook"), "secret": "a-webhook-secret-of-some-length"});
    let r = relay.http().put(relay.url("/api/push/channels/webhook")).bearer_auth(&relay.keys.owner).json(&body);
    assert_eq!(r.send().await.unwrap().status(), 200);
    let (status, _) = relay.post("/api/push/test", &relay.keys.owner, &json!({})).await;
    assert_eq!(status, 200);
    hook.next().await;
    eventually("sent", || async { (relay.metric("flightdeck_push_sent_total").await == 1.0).then_some(()) }).await;
    // The claim that found it and the one that found the outbox empty again.
    eventually("idle again", || async { (claims().await == at_start + 3.0).then_some(()) }).await;
}
