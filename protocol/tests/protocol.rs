//! Golden, seed and validation tests for the wire protocol.

use std::path::{Path, PathBuf};

use flightdeck_protocol::api::*;
use flightdeck_protocol::realtime::{HudSnapshot, TaskSnapshot};
use flightdeck_protocol::validate::{parse_strict, Detail};
use flightdeck_protocol::{AgentInfo, AgentMessage, ClientMessage, RelayMessage, ServerMessage, TaskEvent};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn fixtures(dir: &str) -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Parses strictly, writes back, and compares with the fixture as JSON values.
fn round_trip<T: DeserializeOwned + Serialize + JsonSchema + 'static>(name: &str, text: &str) -> Value {
    let parsed: T = parse_strict(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let written = serde_json::to_value(&parsed).unwrap();
    let original: Value = serde_json::from_str(text).unwrap();
    assert_eq!(written, original, "{name} did not round-trip");
    original
}

/// Every `type` (or `kind`) value the schema of `T` allows.
fn tags_of<T: JsonSchema + 'static>(tag: &str) -> Vec<String> {
    let schema = flightdeck_protocol::validate::schema_of::<T>();
    let mut tags: Vec<String> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alt| alt["properties"][tag]["const"].as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

fn golden<T: DeserializeOwned + Serialize + JsonSchema + 'static>(dir: &str, tag: &str) {
    let files = fixtures(dir);
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, tags_of::<T>(tag), "one fixture per {dir} message type");
    for (name, text) in files {
        let value = round_trip::<T>(&name, &text);
        assert_eq!(value[tag], name, "fixture {name} holds another type");
    }
}

#[test]
fn golden_agent_messages() {
    golden::<AgentMessage>("agent", "type");
}

#[test]
fn golden_relay_messages() {
    golden::<RelayMessage>("relay", "type");
}

#[test]
fn golden_client_messages() {
    golden::<ClientMessage>("client", "type");
}

#[test]
fn golden_server_messages() {
    golden::<ServerMessage>("server", "type");
}

#[test]
fn golden_task_events() {
    golden::<TaskEvent>("event", "kind");
}

#[test]
fn golden_api_bodies() {
    let mut seen = Vec::new();
    for (name, text) in fixtures("api") {
        match name.as_str() {
            "AgentsResponse" => round_trip::<AgentsResponse>(&name, &text),
            "TaskListResponse" => round_trip::<TaskListResponse>(&name, &text),
            "CreateTaskRequest" => round_trip::<CreateTaskRequest>(&name, &text),
            "TaskResponse" => round_trip::<TaskResponse>(&name, &text),
            "EventsResponse" => round_trip::<EventsResponse>(&name, &text),
            "ReposResponse" => round_trip::<ReposResponse>(&name, &text),
            "AlertsResponse" => round_trip::<AlertsResponse>(&name, &text),
            "AlertResponse" => round_trip::<AlertResponse>(&name, &text),
            "ApiError" => round_trip::<ApiError>(&name, &text),
            "Health" => round_trip::<Health>(&name, &text),
            "LoginRequest" => round_trip::<LoginRequest>(&name, &text),
            "LoginResponse" => round_trip::<LoginResponse>(&name, &text),
            "HudContext" => round_trip::<HudContext>(&name, &text),
            "HudSessionResponse" => round_trip::<HudSessionResponse>(&name, &text),
            "HudStartRequest" => round_trip::<HudStartRequest>(&name, &text),
            "HudStartResponse" => round_trip::<HudStartResponse>(&name, &text),
            "HudSettings" => round_trip::<HudSettings>(&name, &text),
            "TaskSnapshot" => round_trip::<TaskSnapshot>(&name, &text),
            "HudSnapshot" => round_trip::<HudSnapshot>(&name, &text),
            "AgentInfo" => round_trip::<AgentInfo>(&name, &text),
            other => panic!("fixture api/{other}.json has no type"),
        };
        seen.push(name);
    }
    assert_eq!(seen.len(), 20);
}

/// The agent messages of seed 004, exactly as written there (TypeScript objects made JSON).
#[test]
fn seed_004_agent_messages_parse() {
    let seed = [
        r#"{"type":"agent-status","agentId":"mac-agent-1","status":"online","capabilities":["git","npm","docker"]}"#,
        r#"{"type":"agent-status","agentId":"a","status":"busy","metadata":{"cpu":0.5}}"#,
        r#"{"type":"git-status","repos":[{"id":"r1","path":"/Users/me/src/app","name":"app","branch":"main","status":"dirty","uncommittedCount":3,"aheadCount":0,"behindCount":0,"modifiedFiles":["a.ts"]}]}"#,
        r#"{"type":"git-status","repos":[{"id":"r1","path":"/p","name":"app"}]}"#,
        r#"{"type":"task-result","taskId":"t1","result":{"ok":true},"status":"completed","logs":"..."}"#,
        r#"{"type":"task-result","taskId":"t1","result":null,"status":"failed"}"#,
        r#"{"type":"pong","timestamp":1706436000000}"#,
        r#"{"type":"pong"}"#,
    ];
    for text in seed {
        AgentMessage::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    // And the relay's messages of seed 004 parse on the agent side.
    for text in [
        r#"{"type":"task","taskId":"t1","taskType":"shell","payload":{"command":"npm test"}}"#,
        r#"{"type":"ping","timestamp":1706436000000}"#,
        r#"{"type":"status-request"}"#,
    ] {
        RelayMessage::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

fn details(text: &str) -> Vec<(String, String)> {
    let err = AgentMessage::parse(text).expect_err(text);
    assert_eq!(err.message, "Invalid message format");
    err.details.into_iter().map(|Detail { path, problem }| (path, problem)).collect()
}

#[test]
fn invalid_agent_messages_give_details() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("not json", &[("$", "invalid JSON: expected ident at line 1 column 2")]),
        ("[1,2]", &[("$", "expected object, got array")]),
        (r#"{"agentId":"a"}"#, &[("$.type", "missing required field")]),
        (
            r#"{"type":"launch-rockets"}"#,
            &[(
                "$.type",
                r#"unknown type "launch-rockets"; expected one of "agent-status", "git-status", "task-update", "task-event", "task-result", "alert", "pong""#,
            )],
        ),
        (r#"{"type":"agent-status","status":"online"}"#, &[("$.agentId", "missing required field")]),
        (
            r#"{"type":"agent-status","agentId":7,"status":"asleep","extra":1}"#,
            &[
                ("$.agentId", "expected string, got integer"),
                ("$.status", r#"expected one of "online", "offline", "busy", "idle", got "asleep""#),
                ("$.extra", "unknown field"),
            ],
        ),
        (
            r#"{"type":"git-status","repos":[{"id":"r","name":"n","aheadCount":"2","bogus":true}]}"#,
            &[("$.repos[0].aheadCount", "expected integer, got string"), ("$.repos[0].bogus", "unknown field")],
        ),
        (
            r#"{"type":"git-status","repos":[{"id":"r","name":"n","aheadCount":-1}]}"#,
            &[("$.repos[0].aheadCount", "must be at least 0")],
        ),
        (
            r#"{"type":"task-event","taskId":"t","seq":1,"event":{"kind":"chunk","text":"x"}}"#,
            &[("$.event.stream", "missing required field")],
        ),
        (
            r#"{"type":"task-event","taskId":"t","seq":1.5,"event":{"kind":"shout"}}"#,
            &[
                ("$.seq", "expected integer, got number"),
                (
                    "$.event.kind",
                    r#"unknown kind "shout"; expected one of "status", "chunk", "tool_start", "tool_progress", "tool_done", "usage", "done", "error""#,
                ),
            ],
        ),
        (
            r#"{"type":"alert","alert":{"id":"a","severity":"low","kind":"task_failed","message":"m","createdAt":"yesterday"}}"#,
            &[
                ("$.alert.createdAt", "expected an RFC 3339 date-time"),
                ("$.alert.severity", r#"expected one of "info", "warning", "critical", got "low""#),
            ],
        ),
        (r#"{"type":"pong","timestamp":"now"}"#, &[("$.timestamp", "expected integer, got string")]),
        // Stores keep seqs as signed 64-bit integers: 2^63 and up are refused, not stored wrongly.
        (
            r#"{"type":"task-event","taskId":"t","seq":9223372036854775808,"event":{"kind":"chunk","text":"x","stream":"stdout"}}"#,
            &[("$.seq", "must be at most 9223372036854775807")],
        ),
        (
            r#"{"type":"task-event","taskId":"t","seq":18446744073709551615,"event":{"kind":"chunk","text":"x","stream":"stdout"}}"#,
            &[("$.seq", "must be at most 9223372036854775807")],
        ),
    ];
    for (text, want) in cases {
        let mut got = details(text);
        let mut want: Vec<(String, String)> = want.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "details for {text}");
    }
}

#[test]
fn every_seq_has_a_maximum_of_2_pow_63_minus_1() {
    let ok = r#"{"type":"task-event","taskId":"t","seq":9223372036854775807,"event":{"kind":"chunk","text":"x","stream":"stdout"}}"#;
    assert!(AgentMessage::parse(ok).is_ok());
    let over = "9223372036854775808";
    let err = RelayMessage::parse(&format!(
        r#"{{"type":"welcome","agentId":"a","heartbeatSecs":60,"lastSeqs":{{"t":{over}}}}}"#
    ))
    .unwrap_err();
    assert_eq!(err.details, vec![Detail::new("$.lastSeqs.t", "must be at most 9223372036854775807")]);
    let err = RelayMessage::parse(&format!(r#"{{"type":"resend","taskId":"t","afterSeq":{over}}}"#)).unwrap_err();
    assert_eq!(err.details, vec![Detail::new("$.afterSeq", "must be at most 9223372036854775807")]);
    let err = parse_strict::<EventsResponse>(&format!(
        r#"{{"events":[{{"seq":{over},"event":{{"kind":"done","summary":"ok"}}}}],"nextAfter":{over}}}"#
    ))
    .unwrap_err();
    let mut paths: Vec<String> = err.details.into_iter().map(|d| d.path).collect();
    paths.sort();
    assert_eq!(paths, vec!["$.events[0].seq", "$.nextAfter"]);
}

#[test]
fn invalid_viewer_messages_give_details() {
    let err = ClientMessage::parse(r#"{"type":"subscribe","topics":"repos"}"#).unwrap_err();
    assert_eq!(err.details, vec![Detail::new("$.topics", "expected array, got string")]);
    let err = ClientMessage::parse(r#"{"type":"subscribe","topics":["repos",3]}"#).unwrap_err();
    assert_eq!(err.details, vec![Detail::new("$.topics[1]", "expected string, got integer")]);
}

#[test]
fn generated_files_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    for (name, contents) in flightdeck_protocol::codegen::generated_files() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == contents,
            "protocol/generated/{name} is stale: a wire type changed without regenerating. \
             Run `cargo run -p flightdeck-protocol --bin flightdeck-codegen` and commit the result."
        );
    }
}

#[test]
fn generated_typescript_names_every_field() {
    let ts = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("generated/flightdeck.ts")).unwrap();
    for needle in [
        "export type TaskEvent =",
        "kind: \"tool_progress\";",
        "elapsedSecs: number;",
        "modifiedFilesTruncated?: boolean;",
        "type: \"status-request\";",
        "lastSeqs?: { [key: string]: number };",
        "embedAllowed: boolean;",
    ] {
        assert!(ts.contains(needle), "flightdeck.ts lacks {needle:?}");
    }
}
