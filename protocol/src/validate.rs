//! Strict parsing: every wire message is checked against its JSON Schema (the same schema that
//! `protocol/generated/` publishes), and every problem is reported as a [`Detail`] with a
//! JSONPath-like `path` (`$.repos[0].aheadCount`) and a `problem` in words.
//!
//! Validating against the generated schema, rather than with hand-written checks, means the
//! published schema and what the relay and agent accept can never disagree.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One problem with a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Detail {
    pub path: String,
    pub problem: String,
}

impl Detail {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Detail {
        Detail { path: path.into(), problem: problem.into() }
    }
}

/// A frame that is not a valid message: the `error` answer of SPEC section 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage {
    /// Always "Invalid message format".
    pub message: String,
    pub details: Vec<Detail>,
}

impl InvalidMessage {
    pub const MESSAGE: &'static str = "Invalid message format";

    pub fn new(details: Vec<Detail>) -> InvalidMessage {
        InvalidMessage { message: InvalidMessage::MESSAGE.to_string(), details }
    }
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for d in &self.details {
            write!(f, "; {}: {}", d.path, d.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidMessage {}

/// Most details reported for one message; a flood of problems is cut here.
const MAX_DETAILS: usize = 20;

/// Parses `text` as a `T`, reporting every schema violation.
pub fn parse_strict<T: DeserializeOwned + JsonSchema + 'static>(text: &str) -> Result<T, InvalidMessage> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| InvalidMessage::new(vec![Detail::new("$", format!("invalid JSON: {e}"))]))?;
    parse_value_strict(value)
}

/// Validates an already-parsed JSON value as a `T`.
pub fn parse_value_strict<T: DeserializeOwned + JsonSchema + 'static>(value: Value) -> Result<T, InvalidMessage> {
    let details = validate_value::<T>(&value);
    if !details.is_empty() {
        return Err(InvalidMessage::new(details));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "$".to_string() } else { format!("$.{path}") };
        InvalidMessage::new(vec![Detail::new(path, e.inner().to_string())])
    })
}

/// The schema problems of `value` as a `T` (empty when it is valid).
pub fn validate_value<T: JsonSchema + 'static>(value: &Value) -> Vec<Detail> {
    let root = schema_of::<T>();
    let mut validator = Validator { root, details: Vec::new() };
    validator.check(root, value, "$");
    validator.details.truncate(MAX_DETAILS);
    validator.details
}

/// The JSON Schema of `T`, generated once and kept for the life of the process.
pub fn schema_of<T: JsonSchema + 'static>() -> &'static Value {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, &'static Value>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(TypeId::of::<T>()).or_insert_with(|| {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        Box::leak(Box::new(schema.to_value()))
    })
}

struct Validator<'s> {
    root: &'s Value,
    details: Vec<Detail>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        other => type_name(v) == other,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl<'s> Validator<'s> {
    fn push(&mut self, path: &str, problem: impl Into<String>) {
        self.details.push(Detail::new(path, problem));
    }

    fn resolve(&self, schema: &'s Value) -> &'s Value {
        let mut schema = schema;
        while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn check(&mut self, schema: &'s Value, value: &Value, path: &str) {
        let schema = self.resolve(schema);
        let obj = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return self.push(path, "not allowed"),
            Value::Object(obj) => obj,
            _ => return,
        };
        if let Some(alternatives) = obj.get("oneOf").or_else(|| obj.get("anyOf")).and_then(Value::as_array) {
            self.check_alternatives(alternatives, value, path);
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, value, path);
            }
        }
        if let Some(types) = obj.get("type") {
            let wanted: Vec<&str> = match types {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !wanted.is_empty() && !wanted.iter().any(|t| type_matches(t, value)) {
                let wanted: Vec<&str> = wanted.into_iter().filter(|t| *t != "null").collect();
                let problem = if value.is_null() {
                    format!("expected {}, got null", wanted.join(" or "))
                } else {
                    format!("expected {}, got {}", wanted.join(" or "), type_name(value))
                };
                return self.push(path, problem);
            }
        }
        if let Some(constant) = obj.get("const") {
            if constant != value {
                return self.push(path, format!("expected {}", describe(constant)));
            }
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                let list: Vec<String> = options.iter().map(describe).collect();
                return self.push(path, format!("expected one of {}, got {}", list.join(", "), describe(value)));
            }
        }
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64) {
            if value.as_f64().is_some_and(|v| v < min) {
                self.push(path, format!("must be at least {min}"));
            }
        }
        if let Some(max) = obj.get("maximum") {
            // Integers compare exactly: 2^63 and 2^63 - 1 are the same f64.
            let over = match (max.as_u64(), value.as_u64()) {
                (Some(max), Some(v)) => v > max,
                _ => match (max.as_f64(), value.as_f64()) {
                    (Some(max), Some(v)) => v > max,
                    _ => false,
                },
            };
            if over {
                self.push(path, format!("must be at most {max}"));
            }
        }
        match (obj.get("format").and_then(Value::as_str), value) {
            (Some("date-time"), Value::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                self.push(path, "expected an RFC 3339 date-time");
            }
            (Some("uint32"), v) if v.as_u64().is_some_and(|n| n > u64::from(u32::MAX)) => {
                self.push(path, "out of range for uint32");
            }
            _ => {}
        }
        match value {
            Value::Object(map) => self.check_object(obj, map, path),
            Value::Array(items) => {
                if let Some(max) = obj.get("maxItems").and_then(Value::as_u64) {
                    if items.len() as u64 > max {
                        return self.push(path, format!("at most {max} items, got {}", items.len()));
                    }
                }
                if let Some(item_schema) = obj.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &mut self,
        obj: &'s serde_json::Map<String, Value>,
        map: &serde_json::Map<String, Value>,
        path: &str,
    ) {
        let properties = obj.get("properties").and_then(Value::as_object);
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.push(&format!("{path}.{name}"), "missing required field");
                }
            }
        }
        let additional = obj.get("additionalProperties");
        for (key, v) in map {
            let child = format!("{path}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => self.check(s, v, &child),
                None => match additional {
                    Some(Value::Bool(false)) => self.push(&child, "unknown field"),
                    Some(s) => self.check(s, v, &child),
                    None => {}
                },
            }
        }
    }

    /// `oneOf` / `anyOf`. Tagged unions (every alternative fixes one property with `const`) are
    /// picked by their tag, so an unknown `type` or `kind` is named as such and a known one
    /// reports the problems of that variant only. Other unions take the closest alternative.
    fn check_alternatives(&mut self, alternatives: &'s [Value], value: &Value, path: &str) {
        let resolved: Vec<&'s Value> = alternatives.iter().map(|a| self.resolve(a)).collect();
        if let Some(tag) = common_tag(&resolved) {
            let Value::Object(map) = value else {
                return self.push(path, format!("expected object, got {}", type_name(value)));
            };
            let Some(given) = map.get(tag) else {
                return self.push(&format!("{path}.{tag}"), "missing required field");
            };
            let chosen = resolved.iter().find(|alt| alt.pointer(&format!("/properties/{tag}/const")) == Some(given));
            match chosen {
                Some(alt) => self.check(alt, value, path),
                None => {
                    let known: Vec<String> = resolved
                        .iter()
                        .filter_map(|alt| alt.pointer(&format!("/properties/{tag}/const")))
                        .map(describe)
                        .collect();
                    self.push(
                        &format!("{path}.{tag}"),
                        format!("unknown {tag} {}; expected one of {}", describe(given), known.join(", ")),
                    );
                }
            }
            return;
        }
        let mut best: Option<Vec<Detail>> = None;
        for alt in resolved {
            let mut sub = Validator { root: self.root, details: Vec::new() };
            sub.check(alt, value, path);
            if sub.details.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| sub.details.len() < b.len()) {
                best = Some(sub.details);
            }
        }
        self.details.extend(best.unwrap_or_default());
    }
}

/// The property that every alternative fixes with `const`, if there is one.
fn common_tag(alternatives: &[&Value]) -> Option<&'static str> {
    ["type", "kind"].into_iter().find(|tag| {
        alternatives.len() > 1
            && alternatives.iter().all(|alt| alt.pointer(&format!("/properties/{tag}/const")).is_some())
    })
}
