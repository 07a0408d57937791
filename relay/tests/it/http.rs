//! The REST API: seed 004's curl examples, filters, pagination, 400s naming the field, login.

use flightdeck_protocol::{AgentMessage, Alert, AlertKind, RepoState, Severity};
use serde_json::{json, Value};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

fn detail_paths(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["path"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn seed_004_tasks_examples() {
    let relay = Relay::start().await;
    let key = relay.keys.owner.clone();

    // The seed's body as is: "subagent" is no executor here and the repo is missing.
    let seed = json!({"title": "Run npm test", "executor": "subagent", "payload": {"command": "npm test"}});
    let (status, body) = relay.post("/api/cockpit/tasks", &key, &seed).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let paths = detail_paths(&body);
    assert!(paths.contains(&"$.executor".to_string()), "{body}");
    assert!(paths.contains(&"$.repo".to_string()), "{body}");

    // Field-level checks after the schema: each 400 names its field.
    let cases = [
        (json!({"executor": "shell", "repo": "web", "payload": {}}), "$.payload.command"),
        (json!({"executor": "claude", "repo": "web", "payload": {"command": "x"}}), "$.payload.prompt"),
        (json!({"executor": "shell", "repo": "../etc", "payload": {"command": "x"}}), "$.repo"),
        (json!({"executor": "shell", "repo": "web", "payload": {"command": "x"}, "agentId": "a b"}), "$.agentId"),
        (json!({"executor": "shell", "repo": "web", "payload": {"command": "x"}, "extra": 1}), "$.extra"),
        // The task rules of `protocol::rules`, the same the agent applies locally.
        (
            json!({"executor": "shell", "repo": "web", "payload": {"command": "x", "maxCostUsd": -1}}),
            "$.payload.maxCostUsd",
        ),
        (
            json!({"executor": "shell", "repo": "web", "payload": {"command": "x", "timeoutSecs": 0}}),
            "$.payload.timeoutSecs",
        ),
        (json!({"executor": "shell", "repo": "web", "payload": {"command": "  "}}), "$.payload.command"),
    ];
    for (body_in, path) in cases {
        let (status, body) = relay.post("/api/cockpit/tasks", &key, &body_in).await;
        assert_eq!(status, 400, "{body_in} -> {body}");
        assert!(detail_paths(&body).contains(&path.to_string()), "{body_in} -> {body}");
    }

    // The seed's example, made valid: it waits queued, with a UUID v7 id.
    let good = json!({"title": "Run npm test", "executor": "shell", "repo": "web", "payload": {"command": "npm test"}});
    let (status, body) = relay.post("/api/cockpit/tasks", &key, &good).await;
    assert_eq!(status, 201, "{body}");
    let task = &body["task"];
    assert_eq!(task["status"], "queued");
    assert_eq!(task["source"], "remote");
    assert_eq!(task["payload"]["repo"], "web");
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    for i in 0..3 {
        let body = json!({"executor": "claude", "repo": "api", "payload": {"prompt": format!("fix bug {i}\nmore")}});
        let (status, created) = relay.post("/api/cockpit/tasks", &key, &body).await;
        assert_eq!(status, 201);
        assert_eq!(created["task"]["title"], format!("fix bug {i}"));
    }

    // curl ".../tasks?status=pending&limit=10": "pending" is no status here.
    let (status, body) = relay.get("/api/cockpit/tasks?status=pending&limit=10", &key).await;
    assert_eq!(status, 400);
    assert_eq!(detail_paths(&body), vec!["$.status"]);
    let (status, body) = relay.get("/api/cockpit/tasks?status=queued&limit=10", &key).await;
    assert_eq!(status, 200);
    assert_eq!((body["total"].as_u64(), body["limit"].as_u64()), (Some(4), Some(10)));

    for (query, path) in [
        ("limit=0", "$.limit"),
        ("limit=501", "$.limit"),
        ("limit=ten", "$.limit"),
        ("offset=-1", "$.offset"),
        ("executor=subagent", "$.executor"),
        ("repo=..", "$.repo"),
    ] {
        let (status, body) = relay.get(&format!("/api/cockpit/tasks?{query}"), &key).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(detail_paths(&body), vec![path], "{query}");
    }

    // Filters and pagination.
    let (_, body) = relay.get("/api/cockpit/tasks?executor=claude&limit=2", &key).await;
    assert_eq!(body["total"], 3);
    assert_eq!(body["tasks"].as_array().unwrap().len(), 2);
    let (_, page2) = relay.get("/api/cockpit/tasks?executor=claude&limit=2&offset=2", &key).await;
    assert_eq!(page2["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(page2["offset"], 2);
    // Newest first, no task on two pages.
    assert_eq!(body["tasks"][0]["title"], "fix bug 2");
    assert_eq!(page2["tasks"][0]["title"], "fix bug 0");
    let (_, body) = relay.get("/api/cockpit/tasks?repo=web", &key).await;
    assert_eq!(body["total"], 1);
    let (_, body) = relay.get("/api/cockpit/tasks", &key).await;
    assert_eq!(body["limit"], 50);

    let (status, body) = relay.get(&format!("/api/cockpit/tasks/{id}"), &key).await;
    assert_eq!((status, body["task"]["id"].as_str()), (200, Some(id.as_str())));
    let (status, body) = relay.get(&format!("/api/cockpit/tasks/{id}/events?after=0"), &key).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"events": [], "nextAfter": 0}));
    let (status, _) = relay.get("/api/cockpit/tasks/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", &key).await;
    assert_eq!(status, 404);

    // Cancel: no agent has it, so it is cancelled here; a second cancel is refused with its code.
    let (status, body) = relay.post(&format!("/api/cockpit/tasks/{id}/cancel"), &key, &json!({})).await;
    assert_eq!((status, body["task"]["status"].as_str()), (200, Some("cancelled")));
    let (status, body) = relay.post(&format!("/api/cockpit/tasks/{id}/cancel"), &key, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_cancellable")));
    assert_eq!(body["error"]["message"], "task already cancelled");
}

#[tokio::test]
async fn seed_004_repos_alerts_and_ack() {
    let relay = Relay::start().await;
    let key = relay.keys.owner.clone();
    let (mut agent, _) = relay.agent("mac").await;
    let repos = vec![repo("web", RepoState::Dirty), repo("api", RepoState::Clean)];
    send(&mut agent, &AgentMessage::GitStatus { repos, full: Some(true) }).await;
    let alert = Alert {
        id: "alert_123".into(),
        severity: Severity::Critical,
        kind: AlertKind::RepoConflict,
        repo: Some("web".into()),
        task_id: None,
        agent_id: Some("mac".into()),
        message: "merge conflict in web".into(),
        created_at: chrono::Utc::now(),
        acknowledged: false,
        acknowledged_at: None,
    };
    send(&mut agent, &AgentMessage::Alert { alert: alert.clone() }).await;
    let mut info = alert.clone();
    info.id = "alert_124".into();
    info.severity = Severity::Info;
    send(&mut agent, &AgentMessage::Alert { alert: info }).await;

    // Each repo of a git-status is stored (and published) on its own: wait for both.
    eventually("both repos", || async {
        let (_, body) = relay.get("/api/cockpit/repos?agentId=mac", &key).await;
        (body["repos"].as_array().is_some_and(|r| r.len() == 2)).then_some(())
    })
    .await;
    // curl ".../repos?status=dirty"
    let (_, body) = relay.get("/api/cockpit/repos?status=dirty", &key).await;
    assert_eq!(body["repos"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["repos"][0]["name"], "web");
    // The owner sees the path.
    assert_eq!(body["repos"][0]["path"], "/home/alice/src/web");
    let (_, body) = relay.get("/api/cockpit/repos?agentId=mac", &key).await;
    assert_eq!(body["repos"].as_array().unwrap().len(), 2);
    let (_, body) = relay.get("/api/cockpit/repos?agentId=other", &key).await;
    assert_eq!(body["repos"], json!([]));
    let (status, body) = relay.get("/api/cockpit/repos?status=filthy", &key).await;
    assert_eq!((status, detail_paths(&body)), (400, vec!["$.status".to_string()]));

    // curl ".../alerts?severity=critical&acknowledged=false"
    let body = eventually("both alerts", || async {
        let (_, body) = relay.get("/api/cockpit/alerts", &key).await;
        (body["total"] == 2).then_some(body)
    })
    .await;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    let (_, body) = relay.get("/api/cockpit/alerts?severity=critical&acknowledged=false", &key).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["alerts"][0]["id"], "alert_123");
    let (status, body) = relay.get("/api/cockpit/alerts?acknowledged=maybe", &key).await;
    assert_eq!((status, detail_paths(&body)), (400, vec!["$.acknowledged".to_string()]));
    let (status, body) = relay.get("/api/cockpit/alerts?severity=fatal", &key).await;
    assert_eq!((status, detail_paths(&body)), (400, vec!["$.severity".to_string()]));

    // curl -X POST ".../alerts/ack/alert_123"
    let (status, body) = relay.post("/api/cockpit/alerts/ack/alert_123", &key, &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["alert"]["acknowledged"], true);
    assert!(body["alert"]["acknowledgedAt"].is_string());
    let (_, body) = relay.get("/api/cockpit/alerts?severity=critical&acknowledged=false", &key).await;
    assert_eq!(body["total"], 0);
    let (_, body) = relay.get("/api/cockpit/alerts?acknowledged=true", &key).await;
    assert_eq!(body["total"], 1);
    let (status, _) = relay.post("/api/cockpit/alerts/ack/alert_999", &key, &json!({})).await;
    assert_eq!(status, 404);

    // The agents endpoint of the seed's monitoring section.
    let (_, body) = relay.get("/api/cockpit/agents", &key).await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["agents"][0]["agentId"], "mac");
    assert_eq!(body["agents"][0]["repos"], json!(["api", "web"]));
}

#[tokio::test]
async fn health_metrics_and_error_shapes() {
    let relay = Relay::start().await;
    let r = relay.http().get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = relay.http().get(relay.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for name in [
        "flightdeck_agents_connected",
        "flightdeck_viewers_connected",
        "flightdeck_messages_in_total",
        "flightdeck_messages_out_total",
        "flightdeck_queue_drops_total",
        "flightdeck_invalid_frames_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name}")), "{name} in {text}");
    }
    let r = relay.http().get(relay.url("/api/cockpit/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("log in"), "{body}");
    // A wrong key is told apart from no key at all.
    let (status, body) = relay.get("/api/cockpit/tasks", "fdk_nonsense").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_key")));
    assert!(body["error"]["message"].as_str().unwrap().contains("not valid"), "{body}");
    let r = relay.http().post(relay.url("/api/login")).json(&json!({ "token": "fdk_nonsense" })).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_key", "{body}");
}

#[tokio::test]
async fn login_sets_a_session_cookie_that_needs_same_origin_for_writes() {
    let relay = Relay::start_with(|s| s.logins_per_minute = 3).await;
    let http = relay.http();
    let login = |proto: Option<&'static str>, token: String| {
        let mut r = http.post(relay.url("/api/login")).json(&json!({ "token": token }));
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send()
    };
    let r = login(None, relay.keys.owner.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("fd_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"user": "alice", "scope": "owner"}));
    let r = login(Some("https"), relay.keys.viewer.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    // An agent key cannot log in; a wrong key is 401. The third attempt hits the limit of 3.
    let r = login(None, relay.keys.agent.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = login(None, "fdk_wrong".into()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);

    let session = cookie.split(';').next().unwrap().to_string();
    let r = http.get(relay.url("/api/cockpit/tasks")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let task = json!({"executor": "shell", "repo": "web", "payload": {"command": "ls"}});
    let r = http.post(relay.url("/api/cockpit/tasks")).header("cookie", &session).json(&task).send().await.unwrap();
    assert_eq!(r.status(), 403, "a cookie write without Origin");
    let r = http
        .post(relay.url("/api/cockpit/tasks"))
        .header("cookie", &session)
        .header("origin", "https://evil.example")
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a cookie write from another origin");
    let r = http
        .post(relay.url("/api/cockpit/tasks"))
        .header("cookie", &session)
        .header("origin", format!("http://{}", relay.addr))
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The realtime bus takes the cookie, but not from a page on another origin.
    for (origin, want) in [(format!("http://{}", relay.addr), 101), ("https://evil.example".to_string(), 403)] {
        let mut request = relay.ws_url("/api/realtime").into_client_request().unwrap();
        request.headers_mut().insert("cookie", session.parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut ws, _)) => {
                assert_eq!(want, 101);
                assert_eq!(subscribe(&mut ws, "tasks").await.as_array().unwrap().len(), 1, "the cookie's user");
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), want, "{origin}"),
            Err(e) => panic!("{e}"),
        }
    }

    let r = http.post(relay.url("/api/logout")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.get(relay.url("/api/cockpit/tasks")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 401, "the session is gone after logout");
}

#[tokio::test]
async fn websocket_connections_are_rate_limited_per_ip() {
    let relay = Relay::start_with(|s| s.ws_connections_per_minute = 2).await;
    let _a = relay.viewer(None).await;
    let _b = relay.viewer(None).await;
    let err = tokio_tungstenite::connect_async(relay.ws_url("/api/realtime")).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert!(relay.metric("flightdeck_rate_limited_total").await >= 1.0);
}

#[tokio::test]
async fn login_page_posts_the_key_and_returns_to_a_local_page() {
    let relay = Relay::start().await;
    let client = reqwest::Client::new();
    let page = client.get(format!("http://{}/login?next=/hud/alice/repo", relay.addr)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-security-policy"], "frame-ancestors 'none'");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-next="/hud/alice/repo""#), "{html}");
    assert!(html.contains("/api/login"));
    // An open redirect is not possible: a foreign target becomes the relay's root.
    let html = client
        .get(format!("http://{}/login?next=//evil.example/", relay.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"data-next="/""#) && !html.contains("evil.example"), "{html}");
}

/// Issue 13.6: half-sent request headers held their connections for good.
#[tokio::test]
async fn a_half_sent_request_header_is_dropped_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start_with(|s| s.header_timeout_ms = 200).await;
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ").await.unwrap();
    // The relay ends the connection (a reset counts too) well before the test's deadline.
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "the half-sent request still holds its connection");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // Whole requests are still served.
    assert_eq!(relay.get("/healthz", &relay.keys.owner).await.0, 200);
}

/// Issue 13.6: one IP could open any number of connections.
#[tokio::test]
async fn connections_per_ip_are_capped() {
    let relay = Relay::start_with(|s| s.max_connections_per_ip = 3).await;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let mut viewer = relay.viewer(None).await;
        send(&mut viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
        assert_eq!(recv_server(&mut viewer).await, flightdeck_protocol::ServerMessage::Pong {});
        viewers.push(viewer);
    }
    // A fourth connection, WebSocket or plain HTTP, is refused.
    assert!(tokio_tungstenite::connect_async(relay.ws_url("/api/realtime")).await.is_err());
    assert!(reqwest::get(relay.url("/healthz")).await.is_err());
    // A slot comes free when a connection ends.
    drop(viewers.pop());
    let refused = eventually("a free slot", || async {
        let response = reqwest::get(relay.url("/metrics")).await.ok()?;
        let text = response.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix("flightdeck_connections_refused_total ")?.parse::<f64>().ok())
    })
    .await;
    assert!(refused >= 2.0, "{refused}");
}

/// Issue 13.8: `/api/login` took a cross-site `text/plain` body (login CSRF).
#[tokio::test]
async fn login_refuses_other_origins_and_form_content_types() {
    let relay = Relay::start().await;
    let body = serde_json::to_string(&json!({ "token": relay.keys.owner })).unwrap();
    let own = format!("http://{}", relay.addr);
    let cases: &[(Option<&str>, &str, u16)] = &[
        // What a cross-site form can send without a preflight.
        (Some("http://evil.example"), "text/plain", 403),
        (Some("null"), "text/plain", 403),
        (Some("http://evil.example"), "application/json", 403),
        (Some(own.as_str()), "text/plain", 415),
        (Some(own.as_str()), "application/x-www-form-urlencoded", 415),
        (None, "text/plain;charset=UTF-8", 415),
        // The login page (same origin, JSON) and scripts (no Origin, JSON).
        (Some(own.as_str()), "application/json", 200),
        (None, "application/json; charset=utf-8", 200),
    ];
    for (origin, content_type, want) in cases {
        let mut request =
            relay.http().post(relay.url("/api/login")).header("content-type", *content_type).body(body.clone());
        if let Some(origin) = origin {
            request = request.header("origin", *origin);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let cookie = r.headers().get("set-cookie").is_some();
        assert_eq!((status, cookie), (*want, *want == 200), "origin {origin:?}, {content_type}");
    }
}

/// Issue 13.8: JSON answers carried no `X-Content-Type-Options: nosniff`.
#[tokio::test]
async fn api_responses_are_never_sniffed() {
    let relay = Relay::start().await;
    for (path, key) in [
        ("/api/cockpit/agents", Some(relay.keys.owner.as_str())),
        ("/api/cockpit/agents", None),
        ("/api/cockpit/tasks?limit=0", Some(relay.keys.owner.as_str())),
        ("/healthz", None),
        ("/api/hud/session?repo=alice/web", None),
    ] {
        let mut request = relay.http().get(relay.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
    }
}

/// `wsUrl` follows the configured public URL, whatever Host the request names.
#[tokio::test]
async fn hud_context_ws_url_uses_the_public_url() {
    let relay = Relay::start_with(|s| s.public_url = Some("https://relay.example/".into())).await;
    relay.set_hud("web", true, false).await;
    let r = relay.http().get(relay.url("/hud/alice/web")).header("host", "evil.example").send().await.unwrap();
    let html = r.text().await.unwrap();
    let context = html.split("window.HUD_CONTEXT = ").nth(1).unwrap().split(";</script>").next().unwrap();
    let context: Value = serde_json::from_str(context).unwrap();
    assert_eq!(context["wsUrl"], "wss://relay.example/api/realtime");
}

/// Issue 13.8: `GET /api/cockpit/repos` had no paging (23.8 MB for 100k repos).
#[tokio::test]
async fn repos_are_paged_with_a_total() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    let repos: Vec<_> = (0..60).map(|i| repo(&format!("r{i:02}"), RepoState::Clean)).collect();
    send(&mut agent, &AgentMessage::GitStatus { repos, full: Some(true) }).await;
    let key = relay.keys.owner.clone();
    let body = eventually("the repos", || async {
        let (_, body) = relay.get("/api/cockpit/repos", &key).await;
        (body["total"] == 60).then_some(body)
    })
    .await;
    assert_eq!((body["repos"].as_array().unwrap().len(), &body["limit"], &body["offset"]), (50, &json!(50), &json!(0)));
    assert_eq!(body["repos"][0]["name"], "r00");
    let (_, body) = relay.get("/api/cockpit/repos?limit=7&offset=55", &key).await;
    let names: Vec<&str> = body["repos"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["r55", "r56", "r57", "r58", "r59"]);
    assert_eq!(body["total"], 60);
    let (_, body) = relay.get("/api/cockpit/repos?status=dirty&limit=500", &key).await;
    assert_eq!((body["total"].as_u64(), body["repos"].as_array().map(Vec::len)), (Some(0), Some(0)));
    for (query, field) in [("limit=501", "$.limit"), ("limit=0", "$.limit"), ("offset=x", "$.offset")] {
        let (status, body) = relay.get(&format!("/api/cockpit/repos?{query}"), &key).await;
        assert_eq!((status, detail_paths(&body)), (400, vec![field.to_string()]), "{query}");
    }
}

/// SPEC 3.2: `modifiedFiles` holds at most 200 paths; more was accepted.
#[tokio::test]
async fn more_than_200_modified_files_are_refused() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    let mut big = repo("web", RepoState::Dirty);
    big.modified_files = (0..201).map(|i| format!("src/f{i}.rs")).collect();
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![big.clone()], full: None }).await;
    match recv_relay_skip_pings(&mut agent).await {
        flightdeck_protocol::RelayMessage::Error { details: Some(details), .. } => {
            assert_eq!(details[0].path, "$.repos[0].modifiedFiles", "{details:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    big.modified_files.truncate(200);
    big.modified_files_truncated = true;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![big], full: None }).await;
    let key = relay.keys.owner.clone();
    eventually("the repo with 200 files", || async {
        let (_, body) = relay.get("/api/cockpit/repos", &key).await;
        (body["repos"][0]["modifiedFiles"].as_array().map(Vec::len) == Some(200)).then_some(())
    })
    .await;
}
