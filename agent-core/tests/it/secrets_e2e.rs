//! No secret leaves the machine: a shell task and a Claude task print typical secrets (whole,
//! split across Claude's streamed text deltas at every byte boundary, inside tool parameters,
//! in a title, a command, a `.env` value and a failure), through a real agent and relay; then
//! everything the relay holds or serves is searched for them: its database files, the REST API,
//! live frames of a viewer, and a public HUD. The count must be 0.

use std::time::Duration;

use flightdeck_protocol::TaskStatus;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::link_e2e::{rest_transcript, transcript_until_end, Setup, Viewer};
use crate::support::scripted_api::{self, ScriptedApi, Turn};

/// Deterministic filler of `n` characters from `alphabet`.
fn fill(n: usize, alphabet: &str, seed: usize) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    (0..n).map(|i| chars[(i * 7 + seed * 13 + i / 3) % chars.len()]).collect()
}

const ALNUM: &str = "aB3dE5fG7hJ9kLmN2pQ4rS6tU8vWxYz0c1";
const HEX: &str = "0123456789abcdef";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `(printed text, the part that must never reach the relay)`.
fn secrets() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |printed: String, body: String| out.push((printed, body));
    let token = |prefix: &str, n: usize, alphabet: &str, seed: usize| {
        let body = fill(n, alphabet, seed);
        (format!("{prefix}{body}"), body)
    };
    for (i, (prefix, n, alphabet)) in [
        ("sk-ant-api03-", 93, ALNUM),
        ("sk-ant-admin01-", 60, ALNUM),
        ("sk-proj-", 64, ALNUM),
        ("sk-", 48, ALNUM),
        ("ghp_", 36, ALNUM),
        ("gho_", 36, ALNUM),
        ("ghu_", 36, ALNUM),
        ("ghs_", 36, ALNUM),
        ("ghr_", 36, ALNUM),
        ("github_pat_", 82, ALNUM),
        ("glpat-", 20, ALNUM),
        ("AKIA", 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
        ("ASIA", 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
        ("xoxb-1234567890-", 24, ALNUM),
        ("xoxp-1234567890-", 24, ALNUM),
        ("sk_live_", 32, ALNUM),
        ("rk_live_", 32, ALNUM),
        ("AIza", 35, ALNUM),
        ("npm_", 36, ALNUM),
        ("pypi-AgEIcHlwaS5vcmc", 60, ALNUM),
        ("hf_", 34, ALNUM),
        ("dop_v1_", 64, HEX),
    ]
    .into_iter()
    .enumerate()
    {
        let (printed, body) = token(prefix, n, alphabet, i);
        add(printed, body);
    }
    let aws = fill(40, B64, 50);
    add(format!("aws_secret_access_key = {aws}"), aws);
    let aws = fill(40, B64, 51);
    add(format!("export AWS_SECRET={aws}"), aws);
    let jwt_body = fill(40, ALNUM, 52);
    add(format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{jwt_body}"), jwt_body);
    let bearer = fill(40, ALNUM, 53);
    add(format!("Authorization: Bearer {bearer}"), bearer);
    let password = fill(20, ALNUM, 54);
    add(format!("postgres://admin:{password}@db.internal:5432/app"), password);
    let password = fill(24, ALNUM, 55);
    add(format!("https://deploy:{password}@git.example.com/org/repo.git"), password);
    let key = fill(86, B64, 56);
    add(
        format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key}==;EndpointSuffix=core.windows.net"),
        key,
    );
    let value = fill(24, ALNUM, 57);
    add(format!("DATABASE_PASSWORD={value}"), value);
    let value = fill(32, ALNUM, 58);
    add(format!("STRIPE_API_KEY=\"{value}\""), value);
    let value = fill(28, ALNUM, 59);
    add(format!("\"client_secret\": \"{value}\""), value);
    let value = fill(30, ALNUM, 60);
    add(format!("SERVICE_TOKEN: {value}"), value);
    let sg = (fill(22, ALNUM, 61), fill(43, ALNUM, 62));
    add(format!("SG.{}.{}", sg.0, sg.1), sg.1);
    let hook = fill(24, ALNUM, 63);
    add(format!("https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{hook}"), hook);
    // `.env` values of the repo (see `ENV_FILE`), printed bare.
    add(env_value(), env_value());
    for (i, kind) in
        ["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]
            .into_iter()
            .enumerate()
    {
        let lines: Vec<String> = (0..4).map(|l| fill(64, B64, 70 + i * 5 + l)).collect();
        let printed = format!("-----BEGIN {kind}-----\n{}\n-----END {kind}-----", lines.join("\n"));
        add(printed, lines[2].clone());
    }
    let pgp: Vec<String> = (0..3).map(|l| fill(64, B64, 90 + l)).collect();
    add(
        format!("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n-----END PGP PRIVATE KEY BLOCK-----", pgp.join("\n")),
        pgp[1].clone(),
    );
    out
}

fn env_value() -> String {
    format!("svc-{}", fill(26, ALNUM, 99))
}

/// Where each secret's body is searched: its last 16 characters (a prefix such as `ghp_` alone
/// is harmless and may be shown).
fn needle(body: &str) -> &str {
    let start = body.char_indices().rev().nth(15).map(|(i, _)| i).unwrap_or(0);
    &body[start..]
}

/// Which secrets appear in `haystack`.
fn leaks(haystack: &str, secrets: &[(String, String)]) -> Vec<String> {
    secrets.iter().filter(|(_, body)| haystack.contains(needle(body))).map(|(printed, _)| printed.clone()).collect()
}

/// A Claude turn whose text streams every secret split at every byte boundary, then a Bash call
/// whose command carries secrets (tool params, and the tool's output echoes them).
fn claude_turns(secrets: &[(String, String)]) -> Vec<Turn> {
    let mut parts: Vec<String> = vec!["Here are the values:\n".into()];
    for (printed, _) in secrets {
        parts.push(format!("{printed}\n"));
        for cut in 1..printed.len() {
            if printed.is_char_boundary(cut) {
                parts.push(printed[..cut].to_string());
                parts.push(format!("{}\n", &printed[cut..]));
            }
        }
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let one_line: Vec<&str> =
        secrets.iter().filter(|(p, _)| !p.contains('\n')).map(|(p, _)| p.as_str()).take(12).collect();
    let command = format!(
        "printf '%s\\n' {}",
        one_line.iter().map(|s| format!("'{}'", s.replace('\'', ""))).collect::<Vec<_>>().join(" ")
    );
    vec![
        scripted_api::bash_turn("msg_1", 100, &parts, "toolu_01", &command, 50),
        scripted_api::text_turn("msg_2", 100, &["All printed: ", &secrets[4].0], 10),
    ]
}

const WITHIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_relay() {
    let secrets = secrets();
    assert!(secrets.len() >= 40, "{} shapes", secrets.len());
    let api = ScriptedApi::start(claude_turns(&secrets)).await;
    let s = Setup::new().await;
    std::fs::write(s.repo.path().join(".env"), format!("SVC_TOKEN={}\nPORT=3000\n", env_value())).unwrap();
    std::fs::write(
        s.repo.path().join("print-secrets.sh"),
        secrets.iter().map(|(printed, _)| format!("cat <<'EOF'\n{printed}\nEOF\n")).collect::<String>()
            + "echo \"failing with $(printf %s 'ghp_')"
            + &secrets[4].1
            + "\" >&2\nexit 3\n",
    )
    .unwrap();
    let _agent = s.agent(s.relay.http(), Some(&api.url));
    s.wait_repo_known().await;
    let slug = s.slug();
    // The HUD is public: anonymous viewers see what it shows.
    let client = reqwest::Client::new();
    let resp = client
        .put(format!("{}/api/hud/settings?repo=alice/{slug}", s.relay.http()))
        .bearer_auth(&s.relay.owner)
        .header("origin", s.relay.http())
        .json(&json!({"public": true, "embedAllowed": false}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let mut anonymous = {
        let url = format!("ws://127.0.0.1:{}/api/realtime", s.relay.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let sub = flightdeck_protocol::ClientMessage::Subscribe { topics: vec![format!("hud:alice/{slug}")] };
        futures_util::SinkExt::send(&mut ws, Message::text(sub.to_json())).await.unwrap();
        ws
    };
    let mut owner = Viewer::connect(&s.relay, &["tasks".into(), "alerts".into()]).await;

    // A shell task printing every secret, failing with one on stderr. (What the owner types into
    // the relay itself, a title or a prompt, never was on the agent's machine: not tested here.)
    let body = json!({"title": "print the secrets", "executor": "shell", "repo": slug,
        "payload": {"command": "sh print-secrets.sh"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let shell_id = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{shell_id}")]).await;
    let shell_events = transcript_until_end(&mut viewer.ws, &shell_id, Instant::now() + WITHIN).await.unwrap();
    let shell_task = s.relay.wait_task(&shell_id, "the shell task ends", |t| t.status.is_terminal()).await;
    assert_eq!(shell_task.status, TaskStatus::Failed);

    // A Claude task whose deltas split every secret, with a Bash call carrying secrets.
    let body = json!({"executor": "claude", "repo": slug, "payload": {"prompt": "print them",
        "allowedTools": ["Bash"], "permissionMode": "acceptEdits"}});
    let (status, body) = s.relay.api(reqwest::Method::POST, "/api/cockpit/tasks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let claude_id = body["task"]["id"].as_str().unwrap().to_string();
    let mut viewer = Viewer::connect(&s.relay, &[format!("task:{claude_id}")]).await;
    let claude_events = transcript_until_end(&mut viewer.ws, &claude_id, Instant::now() + WITHIN).await.unwrap();
    s.relay.wait_task(&claude_id, "the claude task ends", |t| t.status.is_terminal()).await;
    // The transcript really carried the secrets' shapes (redacted), so the test tests something.
    let text = serde_json::to_string(&claude_events).unwrap();
    assert!(text.contains("[REDACTED"), "no redaction marker in the Claude transcript");
    assert!(serde_json::to_string(&shell_events).unwrap().contains("[REDACTED"), "no marker in the shell transcript");

    // Everything the relay serves.
    let mut served = String::new();
    for events in [&shell_events, &claude_events] {
        served.push_str(&serde_json::to_string(events).unwrap());
    }
    for id in [&shell_id, &claude_id] {
        served.push_str(&serde_json::to_string(&rest_transcript(&s.relay, id).await).unwrap());
        served.push_str(
            &s.relay.api(reqwest::Method::GET, &format!("/api/cockpit/tasks/{id}"), None).await.1.to_string(),
        );
    }
    for path in
        ["/api/cockpit/tasks?limit=500", "/api/cockpit/alerts?limit=500", "/api/cockpit/repos", "/api/cockpit/agents"]
    {
        served.push_str(&s.relay.api(reqwest::Method::GET, path, None).await.1.to_string());
    }
    served.push_str(&drain(&mut owner.ws).await);
    served.push_str(&drain(&mut anonymous).await);
    let page = reqwest::get(format!("{}/hud/alice/{slug}", s.relay.http())).await.unwrap().text().await.unwrap();
    served.push_str(&page);
    let served_leaks = leaks(&served, &secrets);
    if let Ok(path) = std::env::var("FLIGHTDECK_SECRETS_DUMP") {
        std::fs::write(path, &served).unwrap();
    }

    // And everything it stored (the database and its WAL, as bytes).
    let mut stored = String::new();
    for entry in std::fs::read_dir(s.relay.data.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    let stored_leaks = leaks(&stored, &secrets);
    assert!(
        served_leaks.is_empty() && stored_leaks.is_empty(),
        "{} of {} secrets reached the relay.\nserved: {served_leaks:#?}\nstored: {stored_leaks:#?}",
        served_leaks.len().max(stored_leaks.len()),
        secrets.len()
    );
}

/// Everything a socket has received so far (it is read until quiet for a moment is not known,
/// so it reads what is buffered: frames already sent arrive before a ping's answer).
async fn drain(ws: &mut super::link_e2e::Ws) -> String {
    futures_util::SinkExt::send(ws, Message::text(flightdeck_protocol::ClientMessage::Ping {}.to_json()))
        .await
        .unwrap();
    let mut out = String::new();
    let deadline = Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("the socket answers the ping") {
            Some(Ok(Message::Text(t))) => {
                if t.as_str().contains("\"type\":\"pong\"") {
                    return out;
                }
                out.push_str(t.as_str());
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}
