//! SPEC 12: the ways in (`/`, `/hud`, `/hud/<user>`) and the `dashboard:<user>` topic, checked
//! for every audience: the owner, another user, a viewer key and nobody.

use flightdeck_protocol::{AgentMessage, ClientMessage, RepoState, ServerMessage, TaskStatus};
use serde_json::{json, Value};

use crate::support::*;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Where a GET with `key` (or none) is sent, and with which status.
async fn redirect(relay: &Relay, path: &str, key: Option<&str>) -> (u16, String) {
    let mut request = no_redirects().get(relay.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (r.status().as_u16(), location)
}

#[tokio::test]
async fn the_ways_in_lead_to_the_dashboard_or_the_login_page() {
    let relay = Relay::start().await;
    let keys = relay.keys.clone();
    // Anonymous: the login page, which brings the person back.
    assert_eq!(redirect(&relay, "/", None).await, (303, "/login".into()));
    assert_eq!(redirect(&relay, "/hud", None).await, (303, "/login?next=/hud".into()));
    assert_eq!(redirect(&relay, "/hud/", None).await, (303, "/login?next=/hud".into()));
    // Logged in (key or session cookie): one's own dashboard.
    assert_eq!(redirect(&relay, "/", Some(&keys.owner)).await, (303, "/hud/alice".into()));
    assert_eq!(redirect(&relay, "/hud", Some(&keys.viewer)).await, (303, "/hud/alice".into()));
    assert_eq!(redirect(&relay, "/hud/", Some(&keys.other)).await, (303, "/hud/bob".into()));
    let login = relay.http().post(relay.url("/api/login")).json(&json!({"token": keys.owner})).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let r = no_redirects().get(relay.url("/")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/hud/alice"));
    // The login page without `next` returns to `/`, and so to the dashboard.
    let page = relay.http().get(relay.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"data-next="/""#), "{page}");
    // Trailing slashes redirect to the canonical form.
    assert_eq!(redirect(&relay, "/hud/alice/", None).await, (308, "/hud/alice".into()));
    assert_eq!(redirect(&relay, "/hud/alice/web/", None).await, (308, "/hud/alice/web".into()));

    // The dashboard page: for anyone, its owner flagged as such.
    let context = |html: String| -> Value {
        let start = html.find("window.DASHBOARD_CONTEXT = ").expect("the dashboard context") + 27;
        let end = start + html[start..].find(";</script>").unwrap();
        serde_json::from_str(&html[start..end]).unwrap()
    };
    for (key, owner) in
        [(None, false), (Some(&keys.owner), true), (Some(&keys.viewer), false), (Some(&keys.other), false)]
    {
        let mut request = relay.http().get(relay.url("/hud/alice"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        let c = context(r.text().await.unwrap());
        assert_eq!((c["username"].as_str(), c["isOwner"].as_bool()), (Some("alice"), Some(owner)), "{key:?}");
        assert!(c["wsUrl"].as_str().unwrap().ends_with("/api/realtime"));
    }
    // An unknown user is a 404 (an HTML page for a browser).
    let r = relay.http().get(relay.url("/hud/nobody")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("/login?next=/hud/nobody"));
    assert_eq!(redirect(&relay, "/hud/no..body", None).await.0, 404);
}

/// Reads frames until a `pong`: fails on any event of `topic` that names `repo` before it.
async fn no_event_about(ws: &mut Ws, topic: &str, repo: &str) {
    send(ws, &ClientMessage::Ping {}).await;
    loop {
        match recv_server(ws).await {
            ServerMessage::Pong {} => return,
            ServerMessage::Event { topic: t, payload } if t == topic && payload.to_string().contains(repo) => {
                panic!("unexpected {topic} event {payload}")
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn the_dashboard_topic_carries_public_repos_only_whoever_reads_it() {
    let relay = Relay::start().await;
    let keys = relay.keys.clone();
    let (mut agent, _) = relay.agent("secret-host").await;
    let repos = vec![repo("web", RepoState::Dirty), repo("secret", RepoState::Clean)];
    send(&mut agent, &AgentMessage::GitStatus { repos, full: Some(true) }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t-web", "web", TaskStatus::Running) }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t-secret", "secret", TaskStatus::Waiting) }).await;
    barrier(&mut agent).await;
    relay.set_hud("web", true, false).await;

    // Everyone, the owner included, gets the same public list: no private repo, no owner-only
    // field (a path, an agent's id or host).
    let mut anonymous = relay.viewer(None).await;
    let mut owner = relay.viewer(Some(&keys.owner)).await;
    let mut viewer = relay.viewer(Some(&keys.viewer)).await;
    let mut bob = relay.viewer(Some(&keys.other)).await;
    for ws in [&mut anonymous, &mut owner, &mut viewer, &mut bob] {
        let snapshot = subscribe(ws, "dashboard:alice").await;
        assert_eq!(snapshot["user"], "alice");
        let repos = snapshot["repos"].as_array().unwrap();
        assert_eq!(repos.len(), 1, "{snapshot}");
        assert_eq!((repos[0]["repo"].as_str(), repos[0]["agentOnline"].as_bool()), (Some("web"), Some(true)));
        assert_eq!(repos[0]["repoStatus"]["status"], "dirty");
        assert_eq!(repos[0]["task"]["id"], "t-web");
        let text = snapshot.to_string();
        for owner_only in ["secret", "/home/alice", "agentId", "mac"] {
            assert!(!text.contains(owner_only), "{owner_only:?} in {text}");
        }
    }
    // The owner's private repos come from the owner-only topics, which nobody else may read.
    let all = subscribe(&mut owner, "repos").await;
    assert!(all.as_array().unwrap().iter().any(|r| r["name"] == "secret" && r["path"] == "/home/alice/src/secret"));
    for ws in [&mut anonymous, &mut bob] {
        send(ws, &ClientMessage::Subscribe { topics: vec!["hud:alice/secret".into()] }).await;
        assert_eq!(recv_server(ws).await, ServerMessage::forbidden("hud:alice/secret"));
    }
    send(&mut anonymous, &ClientMessage::Subscribe { topics: vec!["repos".into()] }).await;
    assert_eq!(recv_server(&mut anonymous).await, ServerMessage::forbidden("repos"));

    // Live: a public repo's changes reach everyone; a private repo's never do.
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: None }).await;
    let e = next_event(&mut anonymous, "dashboard:alice").await;
    assert_eq!((e["repo"].as_str(), e["repoStatus"]["status"].as_str()), (Some("web"), Some("clean")));
    assert!(e["repoStatus"].get("path").is_none());
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t-web", "web", TaskStatus::Waiting) }).await;
    let e = next_event(&mut bob, "dashboard:alice").await;
    let e = if e["task"]["status"] == "waiting" { e } else { next_event(&mut bob, "dashboard:alice").await };
    assert_eq!(e["task"]["status"], "waiting", "{e}");
    assert!(e["task"].get("agentId").is_none(), "{e}");
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("secret", RepoState::Dirty)], full: None }).await;
    send(&mut agent, &AgentMessage::TaskUpdate { task: local_task("t-secret", "secret", TaskStatus::Running) }).await;
    barrier(&mut agent).await;
    no_event_about(&mut anonymous, "dashboard:alice", "secret").await;

    // Sharing: a repo turned public joins the list; one turned private leaves it.
    relay.set_hud("secret", true, false).await;
    let e = loop {
        let e = next_event(&mut anonymous, "dashboard:alice").await;
        if e["repo"] == "secret" {
            break e;
        }
    };
    assert_eq!(e["task"]["id"], "t-secret");
    relay.set_hud("web", false, false).await;
    let e = loop {
        let e = next_event(&mut viewer, "dashboard:alice").await;
        if e.get("removed").is_some() {
            break e;
        }
    };
    assert_eq!(e, json!({"removed": "web"}));
    let snapshot = subscribe(&mut relay.viewer(None).await, "dashboard:alice").await;
    let names: Vec<&str> = snapshot["repos"].as_array().unwrap().iter().filter_map(|r| r["repo"].as_str()).collect();
    assert_eq!(names, ["secret"]);
    // A bad user name is refused like any bad topic.
    let mut fresh = relay.viewer(None).await;
    send(&mut fresh, &ClientMessage::Subscribe { topics: vec!["dashboard:al ice".into()] }).await;
    match recv_server(&mut fresh).await {
        ServerMessage::Error { topic, .. } => assert_eq!(topic.as_deref(), Some("dashboard:al ice")),
        other => panic!("expected an error, got {other:?}"),
    }
}
