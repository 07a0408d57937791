//! Secret redaction, applied to everything that leaves the machine (the local database keeps
//! the original text).
//!
//! - [`Redactor`]: masks secrets in one whole text, a task ([`Redactor::redact_task`]), an
//!   alert ([`Redactor::redact_alert`]) or an event ([`Redactor::redact_event`]).
//! - [`StreamRedactor`] (`stream`): one per task; redacts a task's events as one stream, so a
//!   secret cut across two `chunk`s is masked in both.
//! - [`RepoRedactors`] (`env`): one [`Redactor`] per repo, with the values of its `.env` files.
//! - `patterns`: the shapes below, and the engines built from them.
//!
//! # What is masked
//! Each secret becomes `[REDACTED:<kind>]` (`[REDACTED:env:<NAME>]` for a `.env` value); for a
//! labelled secret the label stays (`export AWS_SECRET=[REDACTED:aws-secret-key]`), for a URL
//! the scheme, user and host stay (`https://me:[REDACTED:url-credentials]@host`).
//! - private key blocks of every PEM kind (`-----BEGIN ... PRIVATE KEY-----`, `OPENSSH`, `EC`,
//!   `DSA`, `ENCRYPTED`, `PGP PRIVATE KEY BLOCK`) up to their `END` line, or to the end of the
//!   text when the block was cut off;
//! - tokens known by their prefix: Anthropic (`sk-ant-`), OpenAI (`sk-`, `sk-proj-`), Stripe
//!   (`sk_live_`, `rk_live_`), AWS access key ids (`AKIA`...), GitHub (`ghp_`, `gho_`, `ghu_`,
//!   `ghs_`, `ghr_`, `github_pat_`), GitLab (`glpat-`...), npm (`npm_`), PyPI (`pypi-`), Slack
//!   (`xox?-` tokens, webhook URLs), Twilio (`SK`/`AC` + 32 hex), SendGrid (`SG.`), Hugging
//!   Face (`hf_`), DigitalOcean (`dop_v1_`...), Google API keys (`AIza`), age secret keys
//!   (`AGE-SECRET-KEY-1`), Telegram bot tokens (`<id>:AA...`), JWTs;
//! - labelled secrets: AWS secret keys after any `AWS_SECRET`/`SECRET_ACCESS_KEY`-like label,
//!   Azure `AccountKey=` and SAS `sig=`, `Authorization: Bearer`/`Basic`, passwords in URLs,
//!   and any `*_SECRET`/`*_TOKEN`/`*PASSWORD`/`*_API_KEY`/... assignment (env, YAML or JSON
//!   style) whose value is long and mixed enough to be a secret (not a word, a placeholder or
//!   `$VAR`);
//! - the values of the repo's `.env` files (`.env`, `.env.*`): every value of at least
//!   [`MIN_ENV_VALUE_LEN`] characters that is not a plain number or a common word such as
//!   `production` or `localhost` (which would mask ordinary text everywhere).
//!
//! - a Docker `config.json`'s `"auth": "<base64>"` values;
//! - everything the rules of gitleaks' default configuration find (`gitleaks`: the version in
//!   [`GITLEAKS_VERSION`], read as data; masked `[REDACTED:<rule id>]`), after the shapes above.
//!
//! Ordinary output (git SHAs, UUIDs, paths, hashes, base64 in code) is left alone.
//!
//! # Where to call it
//! Everything here is CPU work (regexes, a lazy DFA) and [`RepoRedactors`] reads `.env` files:
//! call it off the async threads (`spawn_blocking` or a dedicated thread), never on a tokio
//! worker. Built-in patterns are compiled once per process; a repo's `.env` values once per
//! change of its files.

mod env;
mod gitleaks;
mod patterns;
mod stream;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use flightdeck_protocol::{Alert, Task, TaskEvent};
use serde_json::Value;

pub use env::{env_file_values, parse_env, RepoRedactors};
pub use gitleaks::VERSION as GITLEAKS_VERSION;
pub use stream::StreamRedactor;

use patterns::{pem_blocks, Compiled, Lead, PatternSource, Span, BUILTIN, ENV_LEAD_CHARS, PEM_KIND};

/// `.env` values shorter than this are not redacted (`PORT=3000`, `DEBUG=1`).
pub const MIN_ENV_VALUE_LEN: usize = 6;

/// `.env` values that are configuration, not secrets (compared case-insensitively).
const PLAIN_ENV_VALUES: &[&str] = &[
    "production",
    "development",
    "staging",
    "testing",
    "localhost",
    "127.0.0.1",
    "0.0.0.0",
    "enabled",
    "disabled",
    "verbose",
    "warning",
    "postgres",
    "default",
];

/// Masks secrets in text. Cheap to share behind an `Arc`; `Default` knows the built-in kinds only.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The repo's `.env` values, one pattern each.
    env_values: Option<Arc<Compiled>>,
}

/// The masked regions of a text and where its private key blocks are.
pub(crate) struct Scan {
    pub(crate) spans: Vec<Span>,
    pub(crate) blocks: Vec<(usize, Option<usize>)>,
}

impl Redactor {
    /// The built-in kinds only.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// The built-in kinds plus these `(name, value)` pairs (values too short or too plain to
    /// be secrets are ignored, see the module docs).
    pub fn with_values(values: impl IntoIterator<Item = (String, String)>) -> Redactor {
        let mut names: HashMap<String, String> = HashMap::new();
        for (name, value) in values {
            if is_secret_value(&value) {
                names.entry(value).or_insert(name);
            }
        }
        if names.is_empty() {
            return Redactor::default();
        }
        // Longest first, so that a value that contains another names the mask.
        let mut values: Vec<(String, String)> = names.into_iter().collect();
        values.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let sources = values
            .into_iter()
            .map(|(value, name)| PatternSource {
                kind: Cow::Owned(format!("env:{name}")),
                regex: format!("(?P<m>(?P<s>{}))", regex::escape(&value)),
                lead: Lead::Chars(ENV_LEAD_CHARS),
                keep_lead: false,
                check: None,
                pem_begin: false,
            })
            .collect();
        match Compiled::new(sources) {
            Ok(compiled) => Redactor { env_values: Some(Arc::new(compiled)) },
            Err(err) => {
                // Only a pathological amount of values gets here; the built-ins still apply.
                tracing::warn!(%err, "too many .env values to redact");
                Redactor::default()
            }
        }
    }

    /// The built-in kinds plus the values of `repo`'s `.env` files (reads them: blocking).
    pub fn for_repo(repo: &Path) -> Redactor {
        Redactor::with_values(env_file_values(repo))
    }

    /// The text with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let scan = self.scan(text, false);
        if scan.spans.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(apply(text, &scan.spans, 0, text.len(), false).0)
    }

    /// A copy of the task with its free text (title, prompt, command, allowed tools, summary,
    /// error) redacted. For a task whose events go through a [`StreamRedactor`], prefer
    /// [`StreamRedactor::redact_task`], which agrees with the released `done` and `error`.
    pub fn redact_task(&self, task: &Task) -> Task {
        let mut task = task.clone();
        let r = |s: &mut String| *s = self.redact(s).into_owned();
        r(&mut task.title);
        for field in [&mut task.summary, &mut task.error, &mut task.payload.prompt, &mut task.payload.command] {
            if let Some(text) = field.as_mut() {
                r(text);
            }
        }
        // A tool rule can quote a command line (`Bash(curl -H "Authorization: ...")`).
        task.payload.allowed_tools.iter_mut().flatten().for_each(r);
        task
    }

    /// A copy of the alert with its message redacted (a `task_failed` message quotes the error).
    pub fn redact_alert(&self, alert: &Alert) -> Alert {
        let mut alert = alert.clone();
        alert.message = self.redact(&alert.message).into_owned();
        alert
    }

    /// A copy of the event with every piece of free text redacted, each text as a whole (a
    /// task's chunks go through a [`StreamRedactor`] instead).
    pub fn redact_event(&self, event: &TaskEvent) -> TaskEvent {
        let mut event = event.clone();
        event.map_fields(|text| self.redact(text).into_owned(), |value| self.redact_json(value));
        event
    }

    /// A copy of a JSON value (tool params) with every string redacted, looking at each string
    /// together with its key (`{"AWS_SECRET": "..."}`) and with the string before it in an
    /// array or object (`["AWS_SECRET_ACCESS_KEY", "..."]`, `{"name": "API_TOKEN", "value":
    /// "..."}`), so a label and its value split across two strings are still recognised. Keys
    /// that hold a secret are masked too.
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => {
                let mut previous: Option<&str> = None;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => {
                            let before = previous.map(|p| format!("{p}=")).unwrap_or_default();
                            out.push(Value::String(self.redact_after(&before, s)));
                            previous = Some(s);
                        }
                        other => {
                            out.push(self.redact_json(other));
                            previous = None;
                        }
                    }
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut previous: Option<&str> = None;
                let mut out = serde_json::Map::with_capacity(map.len());
                for (key, item) in map {
                    let key_out = self.redact(key).into_owned();
                    match item {
                        Value::String(s) => {
                            let mut masked = self.redact_after(&format!("\"{key}\": \""), s);
                            if let Some(p) = previous {
                                masked = merge_masks(s, &masked, &self.redact_after(&format!("{p}="), s));
                            }
                            out.insert(key_out, Value::String(masked));
                            previous = Some(s);
                        }
                        other => {
                            out.insert(key_out, self.redact_json(other));
                            previous = None;
                        }
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    /// `text` redacted as if it started inside a private key block (masked up to an `END` line).
    pub(crate) fn redact_inside_block(&self, text: &str) -> String {
        let scan = self.scan(text, true);
        apply(text, &scan.spans, 0, text.len(), false).0
    }

    /// `text` redacted as if it followed `before` (a label it may be the value of).
    fn redact_after(&self, before: &str, text: &str) -> String {
        let joined = format!("{before}{text}");
        let scan = self.scan(&joined, false);
        apply(&joined, &scan.spans, before.len(), joined.len(), false).0
    }

    /// Finds every secret in `text`; `pem_open`: the text starts inside a private key block.
    pub(crate) fn scan(&self, text: &str, pem_open: bool) -> Scan {
        let bytes = text.as_bytes();
        let blocks = pem_blocks(bytes, pem_open);
        let mut spans: Vec<Span> = blocks
            .iter()
            .map(|(start, end)| Span {
                start: *start,
                end: end.unwrap_or(bytes.len()),
                kind: Cow::Borrowed(PEM_KIND),
                rank: 0,
            })
            .collect();
        // `.env` values first: a whole `postgres://user:pass@host` value names its mask.
        let mut rank = 1;
        if let Some(env) = &self.env_values {
            env.find(bytes, rank, &mut spans);
            rank += env.len();
        }
        BUILTIN.find(bytes, rank, &mut spans);
        rank += BUILTIN.len();
        // The maintained rules after the project's own: where both find a secret, ours names it.
        gitleaks::RULES.find(bytes, rank, &mut spans);
        Scan { spans: normalize(text, spans), blocks }
    }

    /// The patterns to check for viability, with their first rank (as in [`Redactor::scan`]).
    pub(crate) fn compiled(&self) -> impl Iterator<Item = (&Compiled, usize)> {
        let env = self.env_values.as_deref().map(|e| (e, 1));
        let builtin_rank = 1 + self.env_values.as_ref().map_or(0, |e| e.len());
        env.into_iter().chain(std::iter::once((&*BUILTIN, builtin_rank)))
    }
}

/// Sorted, non-overlapping spans on character boundaries; overlapping ones are merged and named
/// by the one that starts first (the lower rank on a tie).
pub(crate) fn normalize(text: &str, mut spans: Vec<Span>) -> Vec<Span> {
    for span in &mut spans {
        while !text.is_char_boundary(span.start) {
            span.start -= 1;
        }
        while !text.is_char_boundary(span.end) {
            span.end += 1;
        }
    }
    spans.sort_by(|a, b| a.start.cmp(&b.start).then(a.rank.cmp(&b.rank)));
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match out.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => out.push(span),
        }
    }
    out
}

/// `text[from..to]` with `spans` masked. A span that starts inside the range becomes
/// `[REDACTED:kind]`; one that started before `from` continues a mask: it becomes nothing
/// when `masked_before` (the byte before `from` went out masked, so its tag was sent), or
/// its tag otherwise. Also returns whether the range ends inside a span.
pub(crate) fn apply(text: &str, spans: &[Span], from: usize, to: usize, masked_before: bool) -> (String, bool) {
    let mut out = String::with_capacity(to - from);
    let mut at = from;
    let mut ends_masked = false;
    for span in spans.iter().filter(|s| s.end > from && s.start < to) {
        let start = span.start.max(from);
        let end = span.end.min(to);
        out.push_str(&text[at..start]);
        let continued = span.start < from && masked_before;
        if !continued {
            out.push_str("[REDACTED:");
            out.push_str(&span.kind);
            out.push(']');
        }
        at = end;
        ends_masked = end == to;
    }
    out.push_str(&text[at..to]);
    (out, ends_masked && at == to)
}

/// The original `text` masked wherever either masked version masks it (both come from `text`).
fn merge_masks(text: &str, a: &str, b: &str) -> String {
    if a == text {
        return b.to_string();
    }
    if b == text || a == b {
        return a.to_string();
    }
    // Both masked different parts: mask the whole string rather than guess how they combine.
    let kind = [a, b]
        .iter()
        .find_map(|m| m.split("[REDACTED:").nth(1).and_then(|r| r.split(']').next()))
        .unwrap_or("secret")
        .to_string();
    format!("[REDACTED:{kind}]")
}

fn is_secret_value(value: &str) -> bool {
    let value = value.trim();
    value.chars().count() >= MIN_ENV_VALUE_LEN
        && !value.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !PLAIN_ENV_VALUES.iter().any(|plain| plain.eq_ignore_ascii_case(value))
}
