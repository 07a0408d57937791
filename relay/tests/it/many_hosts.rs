//! Relay nodes on many hosts (SPEC 11): real `flightdeck-relay serve` processes, each with its
//! own empty data dir, sharing one real PostgreSQL database.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::postgres::PgCluster;
use crate::support::{serve_process, subscribe};

/// A `flightdeck-relay serve` process on `database`, with `data_dir` of its own; its address.
async fn node(data_dir: &Path, database: &str) -> (tokio::process::Child, String) {
    serve_process(data_dir, &["--database", database], &[("FLIGHTDECK_RELAY_REVOCATION_POLL_MS", "50")]).await
}

/// An admin command on `database` (its data dir does not exist: it must not be needed).
async fn admin(database: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck-relay"));
    command.args(args).args(["--database", database, "--data-dir", "/nonexistent/flightdeck"]).env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("the relay binary runs");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

async fn get(addr: &str, path: &str, key: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(format!("http://{addr}{path}")).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn two_nodes_on_one_postgres_database_share_keys_and_tasks() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let database = cluster.database().await;
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both start at once: they migrate the empty database one at a time.
    let ((_node1, one), (_node2, two)) = tokio::join!(node(dir1.path(), &database), node(dir2.path(), &database));

    // A key made by the admin CLI on the database works on both nodes.
    admin(&database, &["user", "add", "alice"]).await;
    let created = admin(&database, &["key", "create", "--user", "alice", "--scope", "owner"]).await;
    let owner = String::from_utf8(created.stdout).unwrap().trim().to_string();
    for addr in [&one, &two] {
        assert_eq!(get(addr, "/api/cockpit/tasks", &owner).await.0, 200, "the key on {addr}");
    }

    // A task created through node 1 is listed by node 2.
    let created = reqwest::Client::new()
        .post(format!("http://{one}/api/cockpit/tasks"))
        .bearer_auth(&owner)
        .json(&json!({"executor": "shell", "repo": "api", "payload": {"command": "make"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<Value>().await.unwrap()["task"]["id"].as_str().unwrap().to_string();
    let (status, listed) = get(&two, "/api/cockpit/tasks", &owner).await;
    assert_eq!(status, 200);
    assert_eq!(listed["tasks"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["tasks"][0]["status"], "queued");

    // A viewer of node 2 gets it in its snapshots too.
    let (mut viewer, _) =
        tokio_tungstenite::connect_async(format!("ws://{two}/api/realtime?token={owner}")).await.unwrap();
    assert_eq!(subscribe(&mut viewer, "tasks").await[0]["id"], id.as_str());
    assert_eq!(subscribe(&mut viewer, &format!("task:{id}")).await["task"]["repo"], "api");

    // A key revoked by the admin CLI stops working on both.
    let listing = String::from_utf8(admin(&database, &["key", "list"]).await.stdout).unwrap();
    let key_id = listing.lines().find(|l| l.contains("alice")).and_then(|l| l.split_whitespace().next()).unwrap();
    admin(&database, &["key", "revoke", key_id]).await;
    for addr in [&one, &two] {
        assert_eq!(get(addr, "/api/cockpit/tasks", &owner).await.0, 401, "revoked on {addr}");
    }

    // Neither node wrote a SQLite database: everything is in PostgreSQL.
    for dir in [&dir1, &dir2] {
        assert!(!dir.path().join("relay.sqlite3").exists());
    }
}
