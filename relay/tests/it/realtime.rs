//! The viewer bus: snapshots, nothing lost or doubled, fan-out, slow viewers, HUD privacy.

use flightdeck_protocol::{AgentMessage, RepoState, ServerMessage, TaskStatus};
use serde_json::{json, Value};

use crate::support::*;

/// Reports a running task with `n` events; waits until the relay holds them all.
async fn running_task(relay: &Relay, agent: &mut Ws, id: &str, repo_name: &str, n: u64) {
    send(agent, &AgentMessage::TaskUpdate { task: local_task(id, repo_name, TaskStatus::Running) }).await;
    for seq in 1..=n {
        send(agent, &event_message(id, seq, &format!("line {seq}"))).await;
    }
    let key = relay.keys.owner.clone();
    eventually("the transcript", || async {
        let (_, b) = relay.get(&format!("/api/cockpit/tasks/{id}"), &key).await;
        (b["task"]["lastSeq"] == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn subscribe_answers_with_a_snapshot_per_topic_then_events() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Dirty)], full: Some(true) }).await;
    running_task(&relay, &mut agent, "t1", "web", 2).await;

    let mut viewer = relay.viewer(Some(&relay.keys.owner)).await;
    let agents = subscribe(&mut viewer, "agents").await;
    assert_eq!(agents[0]["agentId"], "mac");
    assert_eq!(agents[0]["status"], "online");
    let repos = subscribe(&mut viewer, "repos").await;
    assert_eq!(repos[0]["name"], "web");
    assert_eq!(repos[0]["path"], "/home/alice/src/web", "the owner sees the path");
    let tasks = subscribe(&mut viewer, "tasks").await;
    assert_eq!(tasks[0]["id"], "t1");
    assert_eq!(subscribe(&mut viewer, "alerts").await, json!([]));
    let task = subscribe(&mut viewer, "task:t1").await;
    assert_eq!(task["task"]["id"], "t1");
    assert_eq!(task["events"].as_array().unwrap().len(), 2);
    assert_eq!(task["events"][1], json!({"seq": 2, "event": {"kind": "chunk", "text": "line 2", "stream": "stdout"}}));
    let hud = subscribe(&mut viewer, "hud:alice/web").await;
    assert_eq!(hud["user"], "alice");
    assert_eq!(hud["public"], false);
    assert_eq!(hud["agentOnline"], true);
    assert_eq!(hud["task"]["id"], "t1");
    assert_eq!(hud["events"].as_array().unwrap().len(), 2);
    assert!(hud["repoStatus"].get("path").is_none(), "HUD payloads never carry the path: {hud}");

    // Then events, on every topic concerned.
    send(&mut agent, &event_message("t1", 3, "line 3")).await;
    assert_eq!(next_event(&mut viewer, "task:t1").await["seq"], 3);
    let hud_event = next_event(&mut viewer, "hud:alice/web").await;
    assert_eq!((hud_event["taskId"].as_str(), hud_event["seq"].as_u64()), (Some("t1"), Some(3)));
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: Some(true) }).await;
    let repo_event = next_event(&mut viewer, "repos").await;
    assert_eq!(repo_event["status"], "clean");
    let hud_event = next_event(&mut viewer, "hud:alice/web").await;
    assert_eq!(hud_event["repoStatus"]["status"], "clean");
    assert!(hud_event["repoStatus"].get("path").is_none());
    // A full git-status without the repo removes it.
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![], full: Some(true) }).await;
    assert_eq!(next_event(&mut viewer, "repos").await, json!({"removed": "id-web"}));

    // Unsubscribe stops events of that topic; the others go on.
    send(&mut viewer, &flightdeck_protocol::ClientMessage::Unsubscribe { topics: vec!["task:t1".into()] }).await;
    send(&mut viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
    loop {
        match recv_server(&mut viewer).await {
            ServerMessage::Pong {} => break,
            ServerMessage::Event { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    send(&mut agent, &event_message("t1", 4, "line 4")).await;
    let e = next_event(&mut viewer, "hud:alice/web").await;
    assert_eq!(e["seq"], 4);
    send(&mut viewer, &flightdeck_protocol::ClientMessage::Ping {}).await;
    assert_eq!(recv_server(&mut viewer).await, ServerMessage::Pong {}, "no task:t1 event after unsubscribe");
}

#[tokio::test]
async fn nothing_is_lost_or_doubled_between_snapshot_and_events() {
    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    running_task(&relay, &mut agent, "race", "web", 1).await;
    const N: u64 = 400;
    // Events stream in while viewers subscribe at different moments.
    let publisher = tokio::spawn(async move {
        for seq in 2..=N {
            send(&mut agent, &event_message("race", seq, "x")).await;
        }
        agent
    });
    let mut viewers = Vec::new();
    for _ in 0..8 {
        let mut v = relay.viewer(Some(&relay.keys.owner)).await;
        let snap = subscribe(&mut v, "task:race").await;
        viewers.push((v, snap));
    }
    let _agent = publisher.await.unwrap();
    let mut late_snapshots = 0;
    for (mut v, snap) in viewers {
        let mut seqs: Vec<u64> =
            snap["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        let from_snapshot = seqs.len() as u64;
        if from_snapshot > 1 {
            late_snapshots += 1;
        }
        while seqs.last().copied() != Some(N) {
            seqs.push(next_event(&mut v, "task:race").await["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "snapshot held {from_snapshot}");
    }
    // Not a tautology: at least one viewer subscribed mid-stream.
    assert!(late_snapshots >= 1);
}

#[tokio::test]
async fn fan_out_to_many_viewers_of_a_public_hud() {
    // Coalesced writes (several frames per write) must not reorder or lose anything.
    let relay = Relay::start_with(|s| s.write_coalesce_ms = 5).await;
    relay.set_hud("web", true, false).await;
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Dirty)], full: Some(true) }).await;
    running_task(&relay, &mut agent, "fan", "web", 1).await;
    let mut viewers = Vec::new();
    for _ in 0..100 {
        let mut v = relay.viewer(None).await;
        let snap = subscribe(&mut v, "hud:alice/web").await;
        assert_eq!(snap["public"], true);
        assert!(snap["repoStatus"].get("path").is_none());
        viewers.push(v);
    }
    assert!(relay.metric("flightdeck_viewers_connected").await >= 100.0);
    for seq in 2..=21 {
        send(&mut agent, &event_message("fan", seq, &format!("line {seq}"))).await;
    }
    let results = futures_util::future::join_all(viewers.iter_mut().map(|v| async move {
        let mut seqs = Vec::new();
        for _ in 0..20 {
            let e = next_event(v, "hud:alice/web").await;
            assert_eq!(e["event"]["text"], format!("line {}", e["seq"]));
            seqs.push(e["seq"].as_u64().unwrap());
        }
        seqs
    }))
    .await;
    for seqs in results {
        assert_eq!(seqs, (2..=21).collect::<Vec<_>>());
    }
}

/// A viewer socket that reads through a tiny receive buffer (it falls behind at once when it
/// stops reading), subscribed to `topics`.
async fn small_buffer_viewer(relay: &Relay, topics: &[&str]) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(relay.addr).await.unwrap();
    let url = relay.ws_url(&format!("/api/realtime?token={}", relay.keys.owner));
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    for topic in topics {
        subscribe(&mut ws, topic).await;
    }
    ws
}

/// Sends 32 KiB events in lockstep with a fast viewer of `task:flood` until `metric` reaches 1
/// (the other viewer fell behind, or was closed), then `more` events; returns the last seq.
async fn flood_until(relay: &Relay, agent: &mut Ws, fast: &mut Ws, metric: &str, more: u64) -> u64 {
    let text = "z".repeat(32 * 1024);
    let mut seq = 1;
    while relay.metric(metric).await < 1.0 {
        seq += 1;
        assert!(seq < 3000, "{metric} never counted");
        send(agent, &event_message("flood", seq, &text)).await;
        let e = next_event(fast, "task:flood").await;
        assert_eq!(e["seq"], seq, "the fast viewer gets every event, in order");
    }
    for _ in 0..more {
        seq += 1;
        send(agent, &event_message("flood", seq, "after")).await;
        assert_eq!(next_event(fast, "task:flood").await["seq"], seq);
    }
    seq
}

/// Issue 26: a viewer of a transcript that falls behind a burst is not closed (it used to get
/// 4001 and come back for a whole snapshot): it catches up from what the relay stored and
/// gets every seq once, in order, on `task:` and `hud:` alike, then is live again.
#[tokio::test]
async fn a_viewer_that_falls_behind_catches_up_from_the_store_without_being_closed() {
    let relay = Relay::start_with(|s| s.viewer_queue_len = 16).await;
    let (mut agent, _) = relay.agent("mac").await;
    running_task(&relay, &mut agent, "flood", "web", 1).await;
    let mut slow = small_buffer_viewer(&relay, &["task:flood", "hud:alice/web"]).await;
    let mut fast = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut fast, "task:flood").await;

    // The slow viewer reads nothing until it has fallen behind, and well past that.
    let last = flood_until(&relay, &mut agent, &mut fast, "flightdeck_viewer_catch_ups_total", 200).await;
    let (mut task_seqs, mut hud_seqs) = (Vec::new(), Vec::new());
    while task_seqs.last() != Some(&last) || hud_seqs.last() != Some(&last) {
        match recv_server(&mut slow).await {
            ServerMessage::Event { topic, payload } if topic == "task:flood" => {
                task_seqs.push(payload["seq"].as_u64().unwrap())
            }
            ServerMessage::Event { topic, payload } if topic == "hud:alice/web" => {
                assert_eq!(payload["taskId"], "flood");
                hud_seqs.push(payload["seq"].as_u64().unwrap())
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<u64> = (2..=last).collect();
    assert_eq!(task_seqs, want, "task: every seq once, in order");
    assert_eq!(hud_seqs, want, "hud: every seq once, in order");
    assert_eq!(relay.metric("flightdeck_queue_drops_total").await, 0.0, "nobody was closed");
    // Live again.
    send(&mut agent, &event_message("flood", last + 1, "live")).await;
    assert_eq!(next_event(&mut slow, "task:flood").await["seq"], last + 1);
}

/// A viewer that stays behind (reads nothing for `viewer_catchup_ms`) is closed with 4001; the
/// fast one gets everything meanwhile.
#[tokio::test]
async fn a_stalled_viewer_is_closed_with_4001_and_the_fast_one_gets_everything() {
    let relay = Relay::start_with(|s| {
        s.viewer_queue_len = 16;
        s.viewer_catchup_ms = 500;
    })
    .await;
    let (mut agent, _) = relay.agent("mac").await;
    running_task(&relay, &mut agent, "flood", "web", 1).await;
    let mut stalled = small_buffer_viewer(&relay, &["task:flood"]).await;
    let mut fast = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut fast, "task:flood").await;
    flood_until(&relay, &mut agent, &mut fast, "flightdeck_viewer_catch_ups_total", 5).await;
    // Still stalled past the deadline: closed.
    eventually("the stalled viewer to be closed", || async {
        (relay.metric("flightdeck_queue_drops_total").await >= 1.0).then_some(())
    })
    .await;
    // The stalled viewer, reading again, finds what got through and then a 4001 close.
    let (code, reason) = recv_close(&mut stalled).await;
    assert_eq!((code, reason.as_str()), (4001, "too slow"));
}

/// The relay serves a HUD as `flightdeck_protocol::views` defines it (as the desktop does, see
/// agent-core's `the_cockpit_bus_serves_a_hud_as_the_protocol_views_define_it`): the repo's
/// newest task with its whole transcript, public fields only; events of the repo's older tasks
/// are not on it.
#[tokio::test]
async fn a_hud_is_the_protocol_view_of_the_stored_rows() {
    use flightdeck_protocol::realtime::{HudSnapshot, TaskSnapshot};
    use flightdeck_protocol::views::{hud_snapshot, HudData};
    use flightdeck_protocol::RepoStatus;

    let relay = Relay::start().await;
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Dirty)], full: Some(true) }).await;
    running_task(&relay, &mut agent, "t1", "web", 2).await;
    running_task(&relay, &mut agent, "t2", "web", 3).await;

    let mut owner = relay.viewer(Some(&relay.keys.owner)).await;
    let repos: Vec<RepoStatus> = serde_json::from_value(subscribe(&mut owner, "repos").await).unwrap();
    let task: TaskSnapshot = serde_json::from_value(subscribe(&mut owner, "task:t2").await).unwrap();
    let served: HudSnapshot = serde_json::from_value(subscribe(&mut owner, "hud:alice/web").await).unwrap();
    let data = HudData {
        public: false,
        agent_online: true,
        repo_status: repos.into_iter().find(|r| r.name == "web"),
        task: Some(task.task),
        events: task.events,
    };
    assert_eq!(served, hud_snapshot("alice", "web", data));

    // An event of the older task is not on the HUD; the next one of its task is.
    send(&mut agent, &event_message("t1", 3, "older")).await;
    send(&mut agent, &event_message("t2", 4, "newer")).await;
    let event = next_event(&mut owner, "hud:alice/web").await;
    assert_eq!((&event["taskId"], &event["seq"]), (&json!("t2"), &json!(4)));
}

#[tokio::test]
async fn a_hud_turned_private_drops_its_anonymous_viewers() {
    let relay = Relay::start().await;
    relay.set_hud("web", true, false).await;
    let mut anonymous = relay.viewer(None).await;
    let mut viewer = relay.viewer(Some(&relay.keys.viewer)).await;
    assert_eq!(subscribe(&mut anonymous, "hud:alice/web").await["public"], true);
    subscribe(&mut viewer, "hud:alice/web").await;
    relay.set_hud("web", false, false).await;
    match recv_server(&mut anonymous).await {
        ServerMessage::Error { message, topic, .. } => {
            assert_eq!((message.as_str(), topic.as_deref()), ("forbidden", Some("hud:alice/web")));
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    // The user's own viewer key keeps watching.
    let (mut agent, _) = relay.agent("mac").await;
    send(&mut agent, &AgentMessage::GitStatus { repos: vec![repo("web", RepoState::Clean)], full: None }).await;
    let e: Value = loop {
        let e = next_event(&mut viewer, "hud:alice/web").await;
        if e.get("repoStatus").is_some() {
            break e;
        }
    };
    assert_eq!(e["repoStatus"]["name"], "web");
    // And the anonymous one cannot subscribe again.
    send(&mut anonymous, &flightdeck_protocol::ClientMessage::Subscribe { topics: vec!["hud:alice/web".into()] }).await;
    assert_eq!(recv_server(&mut anonymous).await, ServerMessage::forbidden("hud:alice/web"));
}

/// A `flightdeck-relay serve` child process on `dir`; its address and pid. Its stderr is read
/// to the end in the background so it never blocks on a full pipe.
async fn relay_process(dir: &std::path::Path) -> (tokio::process::Child, String) {
    serve_process(dir, &[], &[("FLIGHTDECK_RELAY_WS_CONNECTIONS_PER_MINUTE", "100000")]).await
}

/// A field of `/proc/<pid>/status` in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Issue 13.2: one frame naming a public HUD with a ~1 MB transcript a thousand times, from
/// sockets that never read, once made the relay build a snapshot per name and hold them all
/// (~1 GB per socket). The relay runs as its own process so its peak RSS (VmHWM) is its own.
#[tokio::test]
async fn repeated_subscribes_from_sockets_that_never_read_keep_the_relay_small() {
    const SOCKETS: usize = 10;
    const FRAMES_PER_SOCKET: usize = 40;
    /// The stated bound on the relay's peak RSS during the whole run.
    const PEAK_RSS_BOUND_KB: u64 = 200 * 1024;

    let dir = tempfile::tempdir().unwrap();
    {
        let db = flightdeck_relay::Db::open_in(dir.path()).unwrap();
        db.add_user("alice").unwrap();
        let public = flightdeck_protocol::api::HudSettings { public: true, embed_allowed: false };
        db.set_hud_settings("alice", "proj", public).unwrap();
        db.upsert_task("alice", &local_task("big", "proj", TaskStatus::Completed)).unwrap();
        let line = "x".repeat(1000);
        for seq in 1..=1000 {
            assert!(db.append_event("big", seq, &chunk(&line)).unwrap());
        }
    }
    let (child, addr) = relay_process(dir.path()).await;
    let pid = child.id().unwrap();
    let url = format!("ws://{addr}/api/realtime");

    // Named twice in one subscribe: answered once.
    let (mut reader, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let twice = vec!["hud:alice/proj".to_string(); 2];
    send(&mut reader, &flightdeck_protocol::ClientMessage::Subscribe { topics: twice }).await;
    send(&mut reader, &flightdeck_protocol::ClientMessage::Ping {}).await;
    match recv_server(&mut reader).await {
        ServerMessage::Snapshot { payload, .. } => assert_eq!(payload["events"].as_array().unwrap().len(), 1000),
        other => panic!("expected the snapshot, got {other:?}"),
    }
    let next = recv_server(&mut reader).await;
    assert!(matches!(next, ServerMessage::Pong {}), "a second answer to one subscribe");
    let baseline_kb = proc_status_kb(pid, "VmRSS:");

    let frame = serde_json::to_string(&flightdeck_protocol::ClientMessage::Subscribe {
        topics: vec!["hud:alice/proj".to_string(); 1000],
    })
    .unwrap();
    assert!(frame.len() > 16 * 1024);
    let mut silent = Vec::new();
    for _ in 0..SOCKETS {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        for _ in 0..FRAMES_PER_SOCKET {
            send_text(&mut ws, &frame).await;
        }
        silent.push(ws);
    }
    // The relay is done with the silent sockets when it has read every frame, or closed each
    // one (it reads no further from a socket it closes).
    let http = reqwest::Client::new();
    let metric = |text: &str, name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let drops = eventually("the relay to handle every silent socket", || async {
        let text = http.get(format!("http://{addr}/metrics")).send().await.ok()?.text().await.ok()?;
        let drops = metric(&text, "flightdeck_queue_drops_total ");
        let read = metric(&text, "flightdeck_messages_in_total ");
        (drops >= SOCKETS as f64 || read >= (2 + SOCKETS * FRAMES_PER_SOCKET) as f64).then_some(drops)
    })
    .await;
    let peak_kb = proc_status_kb(pid, "VmHWM:");
    let now_kb = proc_status_kb(pid, "VmRSS:");
    eprintln!("relay RSS: baseline {baseline_kb} kB, peak {peak_kb} kB, after {now_kb} kB");
    assert!(peak_kb < PEAK_RSS_BOUND_KB, "peak RSS {peak_kb} kB is over {PEAK_RSS_BOUND_KB} kB");
    // Each silent socket went over its byte bound and was closed as too slow.
    assert_eq!(drops, SOCKETS as f64);
    // A silent socket that reads at last finds its snapshots, then the 4001 close.
    assert_eq!(recv_close(&mut silent[0]).await.0, 4001);
}

/// Issue 13.4: a client still sending when it goes over the invalid-frame budget used to lose
/// the 1008 close frame (14 of 40 replays): the relay dropped the socket with the client's
/// frames unread, so the kernel reset the connection and threw away what the relay had not
/// transmitted yet. Here the client has a small receive buffer (the relay's answers wait in
/// the relay's send queue) and sends everything before it reads anything. Viewers and agents,
/// 20 replays each.
#[tokio::test]
async fn the_1008_close_frame_reaches_a_client_that_is_still_sending() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let relay = Relay::start().await;
    // Invalid (not JSON) and big enough that many are still in flight at the 101st.
    let invalid = format!("{{{}", " ".repeat(4096));
    for round in 0..40 {
        let request = if round % 2 == 0 {
            relay.ws_url("/api/realtime").into_client_request().unwrap()
        } else {
            let mut request = relay.ws_url("/api/ws").into_client_request().unwrap();
            let auth = format!("Bearer {}", relay.keys.agent);
            request.headers_mut().insert("authorization", auth.parse().unwrap());
            request
        };
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(1024).unwrap();
        let tcp = tcp.connect(relay.addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        for _ in 0..200 {
            // Fails once the relay has gone: that is the defect, seen below as a missing close.
            if ws.send(Message::text(invalid.clone())).await.is_err() {
                break;
            }
        }
        let close = tokio::time::timeout(DEADLINE, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    other => panic!("round {round}: the connection ended without a close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("the close frame arrives in time");
        assert_eq!(close, Some(1008), "round {round}");
    }
}

/// A viewer that offers the `flightdeck-lines` subprotocol gets a burst in few WebSocket
/// messages, one server message per line, every event once and in order; a viewer that offers
/// nothing gets one server message per WebSocket message, as SPEC 3.4 has it.
#[tokio::test]
async fn the_lines_subprotocol_joins_a_burst_and_loses_nothing() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    // Frames within 200 ms of a write share the next one: however slowly this machine takes the
    // burst in, the joined socket needs far fewer messages.
    // (The queue holds the whole burst, so waiting does not make the viewer too slow.)
    let relay = Relay::start_with(|s| {
        s.write_coalesce_ms = 200;
        s.viewer_queue_len = 4096;
    })
    .await;
    let (mut agent, _) = relay.agent("mac").await;
    running_task(&relay, &mut agent, "burst", "web", 1).await;
    let topic = "task:burst";

    let mut request = relay.ws_url(&format!("/api/realtime?token={}", relay.keys.owner)).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "flightdeck-lines".parse().unwrap());
    let (mut lines, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap()), Some("flightdeck-lines"));
    let mut plain = relay.viewer(Some(&relay.keys.owner)).await;
    subscribe(&mut lines, topic).await;
    subscribe(&mut plain, topic).await;

    const N: u64 = 2000;
    for seq in 2..=N {
        send(&mut agent, &event_message("burst", seq, &format!("line {seq}"))).await;
    }
    // Reads WebSocket messages until seq N; returns (messages read, seqs in order).
    async fn read_until_last(ws: &mut Ws, topic: &str) -> (usize, Vec<u64>) {
        let mut messages = 0;
        let mut seqs = Vec::new();
        tokio::time::timeout(DEADLINE, async {
            while seqs.last() != Some(&N) {
                let text = match ws.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
                    Some(Ok(_)) => continue,
                    other => panic!("the socket ended: {other:?}"),
                };
                messages += 1;
                for line in flightdeck_protocol::realtime::split_lines(&text) {
                    match ServerMessage::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")) {
                        ServerMessage::Event { topic: t, payload } if t == topic => {
                            assert_eq!(payload["event"]["text"], format!("line {}", payload["seq"]));
                            seqs.push(payload["seq"].as_u64().unwrap());
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        })
        .await
        .expect("every event in time");
        (messages, seqs)
    }
    let (joined, seqs) = read_until_last(&mut lines, topic).await;
    assert_eq!(seqs, (2..=N).collect::<Vec<_>>());
    let (one_each, seqs) = read_until_last(&mut plain, topic).await;
    assert_eq!(seqs, (2..=N).collect::<Vec<_>>());
    assert_eq!(one_each, (N - 1) as usize, "one server message per WebSocket message without the subprotocol");
    assert!(joined * 10 < one_each, "{joined} messages for {} events: not joined", N - 1);
}
