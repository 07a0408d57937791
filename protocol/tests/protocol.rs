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
            "ReplyRequest" => round_trip::<ReplyRequest>(&name, &text),
            "DecisionRequest" => round_trip::<DecisionRequest>(&name, &text),
            "ConversationResponse" => round_trip::<ConversationResponse>(&name, &text),
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
    assert_eq!(seen.len(), 23);
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
                r#"unknown type "launch-rockets"; expected one of "agent-status", "git-status", "task-update", "task-event", "task-result", "alert", "pong", "error""#,
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
                    r#"unknown kind "shout"; expected one of "status", "chunk", "tool_start", "tool_progress", "tool_done", "usage", "done", "error", "user_message", "permission_request", "permission_decision", "diff", "plan", "runner""#,
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

// ----- property tests: what the sockets' parsers do with any frame ------------------------------
//
// Issue 13 asks for a fuzzing target for both sockets' message parsing; without nightly (cargo
// fuzz) it is this proptest harness, run on every `cargo test` with a bounded number of cases.
// Every frame, valid or not, must give a message or an `Invalid message format` error with
// details, never a panic; a message that parses writes back to something that parses the same.

mod frames {
    use flightdeck_protocol::{AgentMessage, ClientMessage, InvalidMessage, Topic};
    use proptest::prelude::*;
    use serde_json::Value;

    /// Field names and tags the parsers know, so mutations reach deep into real shapes.
    const NAMES: &[&str] = &[
        "type",
        "kind",
        "taskId",
        "seq",
        "event",
        "text",
        "stream",
        "repos",
        "name",
        "id",
        "agentId",
        "status",
        "topics",
        "task",
        "alert",
        "full",
        "payload",
        "modifiedFiles",
        "createdAt",
        "lastSeq",
        "toolId",
        "params",
        "agent-status",
        "git-status",
        "task-event",
        "task-update",
        "subscribe",
        "chunk",
        "stdout",
        "hud:alice/web",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![prop::sample::select(NAMES).prop_map(str::to_string), ".{0,12}"]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
            ".{0,24}".prop_map(Value::from),
            prop::sample::select(NAMES).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// JSON pointers of every node of `v`.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    pointers(child, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    pointers(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    /// A fixture with one node replaced by `replacement` (or removed when it is `None` and
    /// the node is a field).
    fn mutate(text: &str, at: prop::sample::Index, replacement: Option<Value>) -> String {
        let mut value: Value = serde_json::from_str(text).unwrap();
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let pointer = at.get(&all).clone();
        match replacement {
            Some(new) if pointer.is_empty() => value = new,
            Some(new) => *value.pointer_mut(&pointer).unwrap() = new,
            None => {
                if let Some((parent, field)) = pointer.rsplit_once('/') {
                    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
                        map.remove(&field.replace("~1", "/").replace("~0", "~"));
                    }
                }
            }
        }
        value.to_string()
    }

    fn fixtures(dir: &str) -> Vec<String> {
        super::fixtures(dir).into_iter().map(|(_, text)| text).collect()
    }

    /// A parse outcome is a message that writes back to itself, or a proper error.
    fn check<T: serde::Serialize>(
        text: &str,
        parse: impl Fn(&str) -> Result<T, InvalidMessage>,
    ) -> Result<(), TestCaseError> {
        match parse(text) {
            Ok(message) => {
                // What a parsed message writes is valid again. (Not compared for equality: free
                // JSON values, such as a task result, may hold floats that serde_json does not
                // read back to the very same bits.)
                let written = serde_json::to_string(&message).unwrap();
                prop_assert!(parse(&written).is_ok(), "{} wrote {}, which does not parse", text, written);
            }
            Err(e) => {
                prop_assert_eq!(&e.message, InvalidMessage::MESSAGE);
                prop_assert!(!e.details.is_empty() && e.details.len() <= 20, "{}: {:?}", text, e.details);
                prop_assert!(e.details.iter().all(|d| d.path.starts_with('$')), "{:?}", e.details);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_text_is_a_message_or_a_proper_error(text in ".{0,200}") {
            check(&text, AgentMessage::parse)?;
            check(&text, ClientMessage::parse)?;
        }

        #[test]
        fn any_json_is_a_message_or_a_proper_error(value in json()) {
            let text = value.to_string();
            check(&text, AgentMessage::parse)?;
            check(&text, ClientMessage::parse)?;
        }

        #[test]
        fn mutated_agent_frames_are_messages_or_proper_errors(
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            replacement in prop::option::weighted(0.8, json()),
        ) {
            let fixtures = fixtures("agent");
            let text = mutate(which.get::<String>(&fixtures), at, replacement);
            check(&text, AgentMessage::parse)?;
        }

        #[test]
        fn mutated_viewer_frames_are_messages_or_proper_errors(
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            replacement in prop::option::weighted(0.8, json()),
        ) {
            let fixtures = fixtures("client");
            let text = mutate(which.get::<String>(&fixtures), at, replacement);
            check(&text, ClientMessage::parse)?;
            if let Ok(ClientMessage::Subscribe { topics }) = ClientMessage::parse(&text) {
                for topic in topics {
                    // A topic name parses or is refused; a parsed one names itself.
                    if let Ok(parsed) = topic.parse::<Topic>() {
                        prop_assert_eq!(parsed.to_string().parse::<Topic>().ok(), Some(parsed));
                    }
                }
            }
        }

        #[test]
        fn cut_or_spliced_frames_are_messages_or_proper_errors(
            which in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
            splice in ".{0,8}",
        ) {
            let mut all = fixtures("agent");
            all.extend(fixtures("client"));
            let text = which.get::<String>(&all);
            let chars: Vec<char> = text.chars().collect();
            let at = cut.index(chars.len() + 1);
            let spliced: String = chars[..at].iter().collect::<String>() + &splice + &chars[at..].iter().collect::<String>();
            check(&spliced, AgentMessage::parse)?;
            check(&spliced, ClientMessage::parse)?;
        }
    }
}
