//! The auth matrix: every kind of caller against every route and every topic kind, in one
//! table-driven test.

use flightdeck_protocol::{AgentMessage, Alert, AlertKind, RepoState, ServerMessage, Severity, TaskStatus};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

const WHO: [&str; 6] = ["anonymous", "viewer", "owner", "agent", "other", "revoked"];

fn key_of<'a>(relay: &'a Relay, who: &str) -> Option<&'a str> {
    let k = &relay.keys;
    match who {
        "anonymous" => None,
        "viewer" => Some(&k.viewer),
        "owner" => Some(&k.owner),
        "agent" => Some(&k.agent),
        "other" => Some(&k.other),
        "revoked" => Some(&k.revoked),
        _ => unreachable!(),
    }
}

async fn http_status(relay: &Relay, method: &Method, path: &str, body: &Option<Value>, key: Option<&str>) -> u16 {
    let mut request = relay.http().request(method.clone(), relay.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap().status().as_u16()
}

/// 101 when the upgrade succeeds, else the HTTP status of the refusal.
async fn ws_status(relay: &Relay, path: &str, key: Option<&str>) -> u16 {
    let mut request = relay.ws_url(path).into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[tokio::test]
async fn auth_matrix_for_every_route_and_topic() {
    let relay = Relay::start().await;
    // alice's world: an agent with two repos, a task in the private one, an alert.
    let (mut agent, _) = relay.agent("mac").await;
    let repos = vec![repo("priv", RepoState::Dirty), repo("pub", RepoState::Clean)];
    send(&mut agent, &AgentMessage::GitStatus { repos, full: Some(true) }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t-alice", "priv", TaskStatus::Running) }).await;
    send(&mut agent, &event_message("t-alice", 1, "secret output")).await;
    let alert = Alert {
        id: "a1".into(),
        severity: Severity::Warning,
        kind: AlertKind::RepoDiverged,
        repo: Some("priv".into()),
        task_id: None,
        agent_id: Some("mac".into()),
        message: "diverged".into(),
        created_at: chrono::Utc::now(),
        acknowledged: false,
        acknowledged_at: None,
    };
    send(&mut agent, &AgentMessage::Alert { alert }).await;
    let owner = relay.keys.owner.clone();
    eventually("alice's world", || async {
        let (_, a) = relay.get("/api/cockpit/alerts", &owner).await;
        let (_, t) = relay.get("/api/cockpit/tasks/t-alice", &owner).await;
        (a["total"] == 1 && t["task"]["lastSeq"] == 1).then_some(())
    })
    .await;
    relay.set_hud("pub", true, true).await;
    let (_, queued) = relay
        .post(
            "/api/cockpit/tasks",
            &owner,
            &json!({"executor": "shell", "repo": "nowhere", "payload": {"command": "x"}}),
        )
        .await;
    let cancel_id = queued["task"]["id"].as_str().unwrap().to_string();

    let new_task = json!({"executor": "shell", "repo": "elsewhere", "payload": {"command": "ls"}});
    let settings = json!({"public": true, "embedAllowed": true});
    let start = json!({"repo": "alice/pub", "prompt": "say hi"});
    let get = Method::GET;
    let post = Method::POST;
    let put = Method::PUT;
    #[rustfmt::skip]
    let routes: Vec<(Method, String, Option<Value>, [u16; 6])> = vec![
        //                                                                    anon viewer owner agent other revoked
        (get.clone(), "/healthz".into(), None,                                [200, 200, 200, 200, 200, 200]),
        (get.clone(), "/metrics".into(), None,                                [200, 200, 200, 200, 200, 200]),
        (get.clone(), "/api/cockpit/agents".into(), None,                     [401, 403, 200, 403, 200, 401]),
        (get.clone(), "/api/cockpit/tasks".into(), None,                      [401, 403, 200, 403, 200, 401]),
        (post.clone(), "/api/cockpit/tasks".into(), Some(new_task),           [401, 403, 201, 403, 201, 401]),
        (get.clone(), "/api/cockpit/tasks/t-alice".into(), None,              [401, 403, 200, 403, 404, 401]),
        (get.clone(), "/api/cockpit/tasks/t-alice/events".into(), None,       [401, 403, 200, 403, 404, 401]),
        (post.clone(), format!("/api/cockpit/tasks/{cancel_id}/cancel"), None, [401, 403, 200, 403, 404, 401]),
        (get.clone(), "/api/cockpit/repos".into(), None,                      [401, 403, 200, 403, 200, 401]),
        (get.clone(), "/api/cockpit/alerts".into(), None,                     [401, 403, 200, 403, 200, 401]),
        (post.clone(), "/api/cockpit/alerts/ack/a1".into(), None,             [401, 403, 200, 403, 404, 401]),
        (get.clone(), "/api/hud/session?repo=alice/priv".into(), None,        [404, 200, 200, 404, 404, 401]),
        (get.clone(), "/api/hud/session?repo=alice/pub".into(), None,         [200, 200, 200, 200, 200, 401]),
        (post.clone(), "/api/hud/start".into(), Some(start),                  [401, 403, 201, 403, 403, 401]),
        (get.clone(), "/api/hud/settings?repo=alice/pub".into(), None,        [401, 200, 200, 403, 403, 401]),
        (put.clone(), "/api/hud/settings?repo=alice/pub".into(), Some(settings), [401, 403, 200, 403, 403, 401]),
        (get.clone(), "/hud/alice/priv".into(), None,                         [404, 200, 200, 404, 404, 401]),
        (get.clone(), "/hud/alice/pub".into(), None,                          [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/embed/alice/pub".into(), None,                        [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/embed/alice/priv".into(), None,                       [403, 403, 403, 403, 403, 401]),
        (get.clone(), "/hud/alice/bad%20name".into(), None,                   [404, 404, 404, 404, 404, 401]),
        // The ways in (SPEC 12), redirects followed: the login page, or one's own dashboard.
        (get.clone(), "/".into(), None,                                       [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/hud".into(), None,                                    [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/hud/alice".into(), None,                              [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/hud/alice/".into(), None,                             [200, 200, 200, 200, 200, 401]),
        (get.clone(), "/hud/nobody".into(), None,                             [404, 404, 404, 404, 404, 401]),
        (post.clone(), "/api/logout".into(), None,                            [204, 204, 204, 204, 204, 204]),
    ];
    let mut failures = Vec::new();
    for (method, path, body, want) in &routes {
        for (i, who) in WHO.iter().enumerate() {
            let got = http_status(&relay, method, path, body, key_of(&relay, who)).await;
            if got != want[i] {
                failures.push(format!("{method} {path} as {who}: got {got}, want {}", want[i]));
            }
        }
    }
    #[rustfmt::skip]
    let sockets: [(&str, [u16; 6]); 2] = [
        ("/api/ws",       [401, 403, 403, 101, 403, 401]),
        ("/api/realtime", [101, 101, 101, 403, 101, 401]),
    ];
    for (path, want) in sockets {
        for (i, who) in WHO.iter().enumerate() {
            let got = ws_status(&relay, path, key_of(&relay, who)).await;
            if got != want[i] {
                failures.push(format!("WS {path} as {who}: got {got}, want {}", want[i]));
            }
        }
    }

    // Topics, for the callers that may open the bus. S = snapshot, F = forbidden.
    #[rustfmt::skip]
    let topics: [(&str, [char; 4]); 8] = [
        //                   anon viewer owner other
        ("agents",          ['F', 'F', 'S', 'S']),
        ("repos",           ['F', 'F', 'S', 'S']),
        ("tasks",           ['F', 'F', 'S', 'S']),
        ("alerts",          ['F', 'F', 'S', 'S']),
        ("task:t-alice",    ['F', 'F', 'S', 'F']),
        ("hud:alice/priv",  ['F', 'S', 'S', 'F']),
        ("hud:alice/pub",   ['S', 'S', 'S', 'S']),
        ("dashboard:alice", ['S', 'S', 'S', 'S']),
    ];
    for (i, who) in ["anonymous", "viewer", "owner", "other"].iter().enumerate() {
        let mut ws = relay.viewer(key_of(&relay, who)).await;
        for (topic, want) in &topics {
            send(&mut ws, &flightdeck_protocol::ClientMessage::Subscribe { topics: vec![topic.to_string()] }).await;
            let answer = recv_server(&mut ws).await;
            let got = match &answer {
                ServerMessage::Snapshot { topic: t, payload } => {
                    assert_eq!(t, topic);
                    let text = payload.to_string();
                    if *who != "owner" {
                        // Nothing owner-only reaches anyone else.
                        assert!(!text.contains("/home/alice"), "{who} {topic}: {text}");
                        assert!(!text.contains("secret-host"), "{who} {topic}: {text}");
                        assert!(!text.contains("agentId"), "{who} {topic}: {text}");
                    }
                    if *who == "other" && !topic.starts_with("hud:") {
                        // bob sees only bob's things (his own task from the route table above).
                        for alices in ["t-alice", "\"priv\"", "\"mac\"", "\"a1\""] {
                            assert!(!text.contains(alices), "bob's {topic} shows {alices}: {text}");
                        }
                    }
                    'S'
                }
                ServerMessage::Error { message, topic: Some(t), .. } if message == "forbidden" && t == topic => 'F',
                other => panic!("{who} {topic}: unexpected {other:?}"),
            };
            if got != want[i] {
                failures.push(format!("topic {topic} as {who}: got {got}, want {}", want[i]));
            }
        }
    }
    assert!(failures.is_empty(), "auth matrix mismatches:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn hud_pages_carry_their_context_and_frame_policy() {
    let relay = Relay::start().await;
    let owner = relay.keys.owner.clone();
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: None }).await;
    relay.set_hud("web", true, false).await;
    // The owner starts a task from the HUD; it goes to the agent.
    let (status, started) = relay.post("/api/hud/start", &owner, &json!({"repo": "alice/web", "prompt": "hi"})).await;
    assert_eq!(status, 201, "{started}");
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    assert_eq!(started["wsUrl"], format!("ws://{}/api/realtime", relay.addr));
    match recv_relay_skip_pings(&mut agent).await {
        flightdeck_protocol::RelayMessage::Task { task_id, payload, .. } => {
            assert_eq!(task_id, session_id);
            assert_eq!(payload.prompt.as_deref(), Some("hi"));
        }
        other => panic!("expected the HUD task, got {other:?}"),
    }
    let (status, body) = relay.post("/api/hud/start", &owner, &json!({"repo": "alice/web", "prompt": " "})).await;
    assert_eq!((status, body["error"]["details"][0]["path"].as_str()), (400, Some("$.prompt")));
    // A shell task from the HUD (issue 22): the prompt is its command.
    let shell = json!({"repo": "alice/web", "prompt": "ls -la; echo done", "executor": "shell"});
    let (status, started) = relay.post("/api/hud/start", &owner, &shell).await;
    assert_eq!(status, 201, "{started}");
    // The HUD shows the newest task: this one.
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    match recv_relay_skip_pings(&mut agent).await {
        flightdeck_protocol::RelayMessage::Task { task_type, payload, .. } => {
            assert_eq!(task_type, flightdeck_protocol::Executor::Shell);
            assert_eq!((payload.command.as_deref(), payload.prompt.as_deref()), (Some("ls -la; echo done"), None));
        }
        other => panic!("expected the HUD's shell task, got {other:?}"),
    }
    // `agent` is for executor acp only; acp without an agent says which field is missing.
    let shell_agent = json!({"repo": "alice/web", "prompt": "hi", "executor": "shell", "agent": "codex"});
    let (status, body) = relay.post("/api/hud/start", &owner, &shell_agent).await;
    assert_eq!((status, body["error"]["details"][0]["path"].as_str()), (400, Some("$.agent")), "{body}");
    let acp_nobody = json!({"repo": "alice/web", "prompt": "hi", "executor": "acp"});
    let (status, body) = relay.post("/api/hud/start", &owner, &acp_nobody).await;
    assert_eq!((status, body["error"]["details"][0]["path"].as_str()), (400, Some("$.agent")), "{body}");
    // The session says what the form may offer: what the agent reports running (this test
    // agent's capabilities are git and shell).
    let (status, session) = relay.get("/api/hud/session?repo=alice/web", &owner).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["executors"], json!(["shell"]), "{session}");

    let r = relay.http().get(relay.url("/hud/alice/web")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    // Only the page's own two inline scripts run (issue 13.8): they carry this response's nonce.
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce").to_string();
    assert_eq!(
        csp,
        format!(
            "script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'"
        )
    );
    assert!(nonce.len() >= 32, "{nonce}");
    // The page's two inline scripts carry the nonce; the third is push.js, from the relay itself.
    assert_eq!(html.matches("<script").count(), 3, "{html}");
    assert_eq!(html.matches("<script src=\"/assets/push.js\" async>").count(), 1, "{html}");
    assert_eq!(html.matches(&format!("<script nonce=\"{nonce}\">")).count(), 1, "{html}");
    assert_eq!(html.matches(&format!("<script type=\"module\" nonce=\"{nonce}\">")).count(), 1, "{html}");
    let again = relay.http().get(relay.url("/hud/alice/web")).send().await.unwrap();
    assert!(!again.headers()["content-security-policy"].to_str().unwrap().contains(&nonce), "a fresh nonce each time");
    assert!(html.contains(r#"<div id="app"></div>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/assets/style.css">"#));
    assert!(html.contains(r#"import init from "/assets/flightdeck_ui.js"; init();"#));
    let context = html.split("window.HUD_CONTEXT = ").nth(1).unwrap().split(";</script>").next().unwrap();
    let context: Value = serde_json::from_str(context).unwrap();
    assert_eq!(
        context,
        json!({
            "username": "alice", "repo": "web", "isOwner": false, "isPublic": true, "embedMode": false,
            "sessionId": session_id, "wsUrl": format!("ws://{}/api/realtime", relay.addr), "status": "queued"
        })
    );
    // The owner's page says so; a missing ui bundle gives a clear notice either way.
    let r = relay.http().get(relay.url("/hud/alice/web")).bearer_auth(&owner).send().await.unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains(r#""isOwner":true"#));
    let bundle_built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist/flightdeck_ui.js").is_file();
    assert_eq!(html.contains("fd-notice"), !bundle_built);

    // Embedding is off: 403 with frame-ancestors 'none'; on: 200 with frame-ancestors *.
    let r = relay.http().get(relay.url("/embed/alice/web")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["content-security-policy"],
        "script-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    );
    relay.set_hud("web", true, true).await;
    let r = relay.http().get(relay.url("/embed/alice/web")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().ends_with("; frame-ancestors *"));
    assert!(r.text().await.unwrap().contains(r#""embedMode":true"#));

    // The session endpoint.
    let r = relay.http().get(relay.url("/api/hud/session?repo=alice/web")).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["canStart"], false);
    assert_eq!(body["status"], "queued");
    let (_, body) = relay.get("/api/hud/session?repo=alice/web", &owner).await;
    assert_eq!(body["canStart"], true, "{body}");
    let (status, body) = relay.get("/api/hud/session?repo=alice", &owner).await;
    assert_eq!((status, body["error"]["details"][0]["path"].as_str()), (400, Some("$.repo")));

    // Assets: traversal refused; unknown files 404.
    for path in ["/assets/..%2Fsecret", "/assets/nope.js", "/assets/.env"] {
        let r = relay.http().get(relay.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn assets_are_served_from_the_ui_dir_with_their_types() {
    let ui = tempfile::tempdir().unwrap();
    std::fs::write(ui.path().join("flightdeck_ui.js"), "export default function init() {}").unwrap();
    std::fs::write(ui.path().join("flightdeck_ui_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(ui.path().join("style.css"), "body{}").unwrap();
    let dir = ui.path().to_path_buf();
    let relay = Relay::start_with(move |s| s.ui_dir = Some(dir)).await;
    for (file, kind) in [
        ("flightdeck_ui.js", "text/javascript; charset=utf-8"),
        ("flightdeck_ui_bg.wasm", "application/wasm"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let r = relay.http().get(relay.url(&format!("/assets/{file}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], kind, "{file}");
        assert_eq!(r.bytes().await.unwrap(), std::fs::read(ui.path().join(file)).unwrap());
    }
    let r = relay.http().get(relay.url("/hud/alice/web")).bearer_auth(&relay.keys.owner).send().await.unwrap();
    assert!(!r.text().await.unwrap().contains("fd-notice"), "the bundle is there");
}

// Browsers get pages for 404 and 403 (with a way to log in that brings them back); API clients
// keep the JSON errors. Before, a private HUD opened before logging in showed raw JSON.
#[tokio::test]
async fn browsers_get_error_pages_and_api_clients_json() {
    let relay = Relay::start().await;
    relay.set_hud("web", false, false).await;
    let http = relay.http();
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (path, status) in [
        ("/hud/alice/web", 404),
        ("/hud/alice/nothing-here", 404),
        ("/embed/alice/web", 403),
        ("/no/such/page?x=1", 404),
    ] {
        let r = http.get(relay.url(path)).header("accept", html).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("Log in"), "{path}: {body}");
        let next = path.replace('&', "&amp;");
        assert!(body.contains(&format!("/login?next={next}")), "{path}: the login link brings the person back: {body}");
        // The same request from an API client: the JSON error.
        let r = http.get(relay.url(path)).header("accept", "application/json").send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        if path.starts_with("/hud/") {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{path}");
        }
    }
    // A public HUD that does not allow embedding: its /embed page is a 403 page in a browser.
    relay.set_hud("web", true, false).await;
    let r = http.get(relay.url("/embed/alice/web")).header("accept", html).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Not allowed"));
    // Under /api/ a browser still gets JSON.
    let r = http.get(relay.url("/api/cockpit/tasks")).header("accept", html).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
}

// Issue 22: the error pages were unstyled and every page asked for a missing favicon.
#[tokio::test]
async fn error_pages_are_styled_and_every_page_has_an_icon() {
    let relay = Relay::start().await;
    let http = relay.http();
    let r = http.get(relay.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG"));
    let r = http.get(relay.url("/no/such/page")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("style-src 'self'") && csp.contains("img-src 'self'") && !csp.contains("script"), "{csp}");
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"<link rel="stylesheet" href="/assets/style.css">"#), "{body}");
    assert!(body.contains(r#"<link rel="icon" href="/favicon.ico""#), "{body}");
    for page in ["/login", "/hud/alice"] {
        let body = http.get(relay.url(page)).send().await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"<link rel="icon" href="/favicon.ico""#), "{page}: {body}");
    }
}

/// The routes `relay/src/lib.rs` declares, as `(method, path template)`: read from the source, so
/// a route added there is walked by [`anonymous_callers_get_401_wherever_credentials_are_needed`]
/// without anyone remembering to list it.
fn declared_routes() -> Vec<(Method, String)> {
    let source = include_str!("../../src/lib.rs");
    let mut routes = Vec::new();
    for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = line.trim_start_matches(".route(\"").split('"').next().unwrap().to_string();
        let rest = &line[".route(\"".len() + path.len()..];
        for (needle, method) in
            [("get(", Method::GET), ("post(", Method::POST), ("put(", Method::PUT), ("delete(", Method::DELETE)]
        {
            let found = rest.match_indices(needle).any(|(i, _)| {
                // `get(` but not `budget(`: the method is a word of its own.
                i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric()
            });
            if found {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

/// Every route, asked without credentials: 401 wherever a key or session would be needed (never
/// 403, which is for credentials without the right), the public answer elsewhere.
#[tokio::test]
async fn anonymous_callers_get_401_wherever_credentials_are_needed() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("pub", RepoState::Clean)], full: Some(true) }).await;
    let owner = relay.keys.owner.clone();
    eventually("the repo", || async {
        let (_, r) = relay.get("/api/cockpit/repos", &owner).await;
        (r["repos"].as_array().is_some_and(|r| !r.is_empty())).then_some(())
    })
    .await;
    relay.set_hud("pub", true, true).await;
    // What a route answers an anonymous caller when it is public (not 401).
    #[rustfmt::skip]
    let public: [(&str, &str, u16); 21] = [
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("POST", "/api/login", 400),
        ("POST", "/api/logout", 204),
        ("GET", "/login", 200),
        ("GET", "/api/realtime", 101),
        ("GET", "/api/hud/session", 200),
        ("GET", "/", 200),
        ("GET", "/hud", 200),
        ("GET", "/hud/", 200),
        ("GET", "/hud/{user}", 200),
        ("GET", "/hud/{user}/", 200),
        ("GET", "/hud/{user}/{repo}", 200),
        ("GET", "/hud/{user}/{repo}/", 200),
        ("GET", "/embed/{user}/{repo}", 200),
        ("GET", "/assets/{file}", 404),
        ("GET", "/favicon.ico", 200),
        ("GET", "/sw.js", 200),
        ("GET", "/manifest.webmanifest", 200),
        ("GET", "/api/push/key", 200),
        // The notification's token is the credential: a body without one is a bad request.
        ("POST", "/api/push/act", 400),
    ];
    let routes = declared_routes();
    assert!(routes.len() >= 30, "the route list was read from lib.rs: {routes:?}");
    let mut failures = Vec::new();
    for (method, template) in &routes {
        let path = template
            .replace("{user}", "alice")
            .replace("{repo}", "pub")
            .replace("{request_id}", "req-1")
            .replace("{name}", "SOME_SECRET")
            .replace("{file}", "nothing.js")
            .replace("{id}", "t-1");
        let path = if path == "/api/hud/session" || path == "/api/hud/settings" {
            format!("{path}?repo=alice/pub")
        } else {
            path
        };
        let got = if path == "/api/ws" || path == "/api/realtime" {
            // The sockets, asked as sockets: a plain GET is refused before anyone is asked who
            // they are.
            ws_status(&relay, &path, None).await
        } else {
            let mut request = relay.http().request(method.clone(), relay.url(&path));
            if *method != Method::GET {
                request = request.json(&json!({}));
            }
            request.send().await.unwrap().status().as_u16()
        };
        let want = public
            .iter()
            .find(|(m, p, _)| *m == method.as_str() && p == template)
            .map(|(_, _, status)| *status)
            .unwrap_or(401);
        if got != want {
            failures.push(format!("{method} {path}: got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "anonymous callers:\n{}", failures.join("\n"));
}
