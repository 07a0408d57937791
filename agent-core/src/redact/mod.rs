//! Secret redaction, applied to everything that leaves the machine (the local database keeps
//! the original text).
//!
//! A [`Redactor`] masks, in this order:
//! - PEM private key blocks (`-----BEGIN ... PRIVATE KEY-----` to its `END` line, or to the end
//!   of the text when the block was cut off),
//! - Anthropic keys (`sk-ant-...`), OpenAI keys (`sk-...`, `sk-proj-...`), Stripe secret keys,
//! - AWS access key ids (`AKIA...`, `ASIA...`) and AWS secret keys after `aws_secret_access_key`
//!   (`=` or `:`),
//! - GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Slack tokens
//!   (`xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-`), JWTs (`eyJ...`.`eyJ...`.`...`),
//! - the values of the repo's `.env` files (`.env`, `.env.*`): every value of at least
//!   [`MIN_ENV_VALUE_LEN`] characters that is not a plain number or a common word such as
//!   `production` or `localhost` (which would mask ordinary text everywhere).
//!
//! Each secret becomes `[REDACTED:<kind>]`, e.g. `[REDACTED:github-token]`, or
//! `[REDACTED:env:<NAME>]` for a `.env` value.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use flightdeck_protocol::TaskEvent;
use regex::{Captures, Regex};

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

/// The built-in patterns: `(kind, regex, group)`; the `group` of each match is replaced (0: all).
static PATTERNS: LazyLock<Vec<(&'static str, Regex, usize)>> = LazyLock::new(|| {
    let p = |kind, re: &str, group| (kind, Regex::new(re).expect("built-in patterns are valid"), group);
    vec![
        p(
            "private-key",
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z)",
            0,
        ),
        p("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}", 0),
        p("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}", 0),
        p("stripe-key", r"\b[rs]k_live_[A-Za-z0-9]{20,}", 0),
        p("aws-access-key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", 0),
        p(
            "aws-secret-key",
            r#"(?i)(?:aws_secret_access_key|aws_secret_key|secret_access_key|secretaccesskey)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b"#,
            1,
        ),
        p("github-token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b", 0),
        p("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b", 0),
        p("slack-token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", 0),
        p("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0),
    ]
});

/// Masks secrets in text. Cheap to clone behind an `Arc`; `Default` knows the built-in kinds only.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// `.env` values, as one alternation (longest first, so a value that contains another wins),
    /// and the variable name of each value.
    env_values: Option<(Regex, HashMap<String, String>)>,
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
        let mut values: Vec<&String> = names.keys().collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let alternation = values.iter().map(|v| regex::escape(v)).collect::<Vec<_>>().join("|");
        match Regex::new(&alternation) {
            Ok(re) => Redactor { env_values: Some((re, names)) },
            Err(err) => {
                // Only a pathological amount of values gets here; the built-ins still apply.
                tracing::warn!(%err, "too many .env values to redact");
                Redactor::default()
            }
        }
    }

    /// The built-in kinds plus the values of `repo`'s `.env` files.
    pub fn for_repo(repo: &Path) -> Redactor {
        Redactor::with_values(env_file_values(repo))
    }

    /// The text with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if let Some((re, names)) = &self.env_values {
            if re.is_match(&out) {
                let replaced = re.replace_all(&out, |c: &Captures<'_>| {
                    format!("[REDACTED:env:{}]", names.get(&c[0]).map(String::as_str).unwrap_or("value"))
                });
                out = Cow::Owned(replaced.into_owned());
            }
        }
        for (kind, re, group) in PATTERNS.iter() {
            if !re.is_match(&out) {
                continue;
            }
            let replaced = re.replace_all(&out, |c: &Captures<'_>| {
                let whole = c.get(0).expect("group 0 always matches");
                let secret = c.get(*group).unwrap_or(whole);
                let start = secret.start() - whole.start();
                let end = secret.end() - whole.start();
                let text = whole.as_str();
                format!("{}[REDACTED:{kind}]{}", &text[..start], &text[end..])
            });
            out = Cow::Owned(replaced.into_owned());
        }
        out
    }

    /// A copy of the task with its free text (title, prompt, command, summary, error) redacted.
    pub fn redact_task(&self, task: &flightdeck_protocol::Task) -> flightdeck_protocol::Task {
        let mut task = task.clone();
        let r = |s: &mut String| *s = self.redact(s).into_owned();
        r(&mut task.title);
        for field in [&mut task.summary, &mut task.error, &mut task.payload.prompt, &mut task.payload.command] {
            if let Some(text) = field.as_mut() {
                r(text);
            }
        }
        task
    }

    /// A copy of the event with every piece of free text redacted: what the outbound path sends.
    pub fn redact_event(&self, event: &TaskEvent) -> TaskEvent {
        let mut event = event.clone();
        event.map_text(|text| self.redact(text).into_owned());
        event
    }
}

fn is_secret_value(value: &str) -> bool {
    let value = value.trim();
    value.chars().count() >= MIN_ENV_VALUE_LEN
        && !value.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !PLAIN_ENV_VALUES.iter().any(|plain| plain.eq_ignore_ascii_case(value))
}

/// The `(name, value)` pairs of the `.env` and `.env.*` files at the root of `repo`.
pub fn env_file_values(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in env_files(repo) {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(parse_env(&text)),
            Err(err) => tracing::debug!(path = %path.display(), %err, "cannot read an env file"),
        }
    }
    out
}

fn env_files(repo: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repo) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name == ".env" || name.starts_with(".env.")) && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// `NAME=value` lines (with an optional `export `, quotes removed, `#` comments skipped).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else { continue };
        let name = name.trim();
        let mut value = value.trim();
        if let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
            value = value[1..].split(quote).next().unwrap_or_default();
        } else if let Some((before, _comment)) = value.split_once(" #") {
            value = before.trim_end();
        }
        if !name.is_empty() && !value.is_empty() {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// One [`Redactor`] per repo slug, built from the repo's `.env` files and rebuilt when they
/// change (checked at most every [`RepoRedactors::RECHECK`]). What the relay link calls with
/// `(repo slug, text)` before anything leaves the machine.
pub struct RepoRedactors {
    resolve: crate::runner::RepoResolver,
    // A std Mutex: nothing awaits while holding it.
    cache: Mutex<HashMap<String, CachedRedactor>>,
}

struct CachedRedactor {
    redactor: Arc<Redactor>,
    fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)>,
    checked: Instant,
}

impl RepoRedactors {
    pub const RECHECK: Duration = Duration::from_secs(5);

    pub fn new(resolve: crate::runner::RepoResolver) -> RepoRedactors {
        RepoRedactors { resolve, cache: Mutex::default() }
    }

    /// The redactor of a repo (built-in kinds only for an unknown repo).
    pub fn for_repo(&self, slug: &str) -> Arc<Redactor> {
        let Some(path) = (self.resolve)(slug) else { return Arc::new(Redactor::new()) };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = cache.get_mut(slug) {
            if cached.checked.elapsed() < Self::RECHECK {
                return cached.redactor.clone();
            }
            cached.checked = Instant::now();
            if cached.fingerprint == fingerprint(&path) {
                return cached.redactor.clone();
            }
        }
        let redactor = Arc::new(Redactor::for_repo(&path));
        cache.insert(
            slug.to_string(),
            CachedRedactor { redactor: redactor.clone(), fingerprint: fingerprint(&path), checked: Instant::now() },
        );
        redactor
    }

    /// Redacts `text` for the repo `slug`.
    pub fn redact(&self, slug: &str, text: &str) -> String {
        self.for_repo(slug).redact(text).into_owned()
    }

    /// Redacts a task's free text with its repo's redactor.
    pub fn redact_task(&self, task: &flightdeck_protocol::Task) -> flightdeck_protocol::Task {
        self.for_repo(&task.repo).redact_task(task)
    }

    /// Redacts an event of a task in the repo `slug`.
    pub fn redact_event(&self, slug: &str, event: &TaskEvent) -> TaskEvent {
        self.for_repo(slug).redact_event(event)
    }
}

fn fingerprint(repo: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    env_files(repo)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (p, modified, len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use flightdeck_protocol::event::ChunkStream;
    use serde_json::json;

    use super::*;

    #[test]
    fn each_secret_kind_is_masked() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yQ==\n-----END RSA PRIVATE KEY-----";
        let cases: Vec<(String, String)> = vec![
            (
                "export ANTHROPIC_API_KEY=sk-ant-api03-Xq3vB8nR2kLmP9wZt7YcJ4hF6dS1aG0eU5iO8pQ-rT2yW4uE6iA_AA".into(),
                "export ANTHROPIC_API_KEY=[REDACTED:anthropic-key]".into(),
            ),
            (
                "key: sk-proj-4fGh7JkL9mNp2QrS5tUv8WxY1zA3bC6dE9fG2hJ5kL8mN1pQ4rS7tU0vW3xY".into(),
                "key: [REDACTED:openai-key]".into(),
            ),
            ("OPENAI_API_KEY=sk-9fT2mQ7xL4pW8nB3vC6zK1jH5gD0sA2eR".into(), "OPENAI_API_KEY=[REDACTED:openai-key]".into()),
            ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE".into(), "aws_access_key_id = [REDACTED:aws-access-key]".into()),
            ("session ASIAY34FZKBOKMUTVV7A expires".into(), "session [REDACTED:aws-access-key] expires".into()),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                "aws_secret_access_key = [REDACTED:aws-secret-key]".into(),
            ),
            (
                r#"{"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#.into(),
                r#"{"AWS_SECRET_ACCESS_KEY": "[REDACTED:aws-secret-key]"}"#.into(),
            ),
            (
                "git clone https://ghp_R8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ@github.com/o/r".into(),
                "git clone https://[REDACTED:github-token]@github.com/o/r".into(),
            ),
            ("GH_TOKEN=gho_16C7e42F292c6912E7710c838347Ae178B4a".into(), "GH_TOKEN=[REDACTED:github-token]".into()),
            ("ghs_1234567890abcdefghijABCDEFGHIJ123456 ghr_1234567890abcdefghijABCDEFGHIJ123456 ghu_1234567890abcdefghijABCDEFGHIJ123456".into(),
             "[REDACTED:github-token] [REDACTED:github-token] [REDACTED:github-token]".into()),
            (
                "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012 ok".into(),
                "token [REDACTED:github-token] ok".into(),
            ),
            (
                "SLACK_BOT_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".into(),
                "SLACK_BOT_TOKEN=[REDACTED:slack-token]".into(),
            ),
            ("xoxp-1111-2222-3333-abcdef0123".into(), "[REDACTED:slack-token]".into()),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into(),
                "Authorization: Bearer [REDACTED:jwt]".into(),
            ),
            (format!("cat id_rsa\n{pem}\ndone"), "cat id_rsa\n[REDACTED:private-key]\ndone".into()),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ (output truncated)".into(),
                "[REDACTED:private-key]".into(),
            ),
            ("STRIPE=sk_live_51H8xYzAbCdEfGhIjKlMnOpQr".into(), "STRIPE=[REDACTED:stripe-key]".into()),
        ];
        let redactor = Redactor::new();
        for (input, want) in cases {
            assert_eq!(redactor.redact(&input), want, "{input}");
        }
    }

    #[test]
    fn normal_text_is_left_alone() {
        let redactor = Redactor::new();
        let texts = [
            "fn main() { let task_id = \"a\"; println!(\"{task_id}\"); }",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "task 0190c4c8-8a3e-7c4b-9f1a-2b3c4d5e6f70 finished",
            "see https://docs.anthropic.com/en/docs/claude-code/sdk?tab=stream-json#output",
            "npm install --save-dev disk-usage-monitoring-tool-for-linux",
            "base64: SGVsbG8sIFdvcmxkISBUaGlzIGlzIGp1c3QgdGV4dC4=",
            "AKIA is the prefix of AWS access keys; sk- is OpenAI's",
            "the -----BEGIN PUBLIC KEY----- block is public",
            "eyJhbGciOiJIUzI1NiJ9 alone is just a header",
            "",
        ];
        for text in texts {
            assert_eq!(redactor.redact(text), text);
        }
    }

    #[test]
    fn env_file_values_are_masked() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(
            repo.path().join(".env"),
            "# local settings\nDATABASE_URL=postgres://app:s3cr3t-pa55@db.internal:5432/app\nNODE_ENV=production\nPORT=3000\n\
             export API_TOKEN=\"tok_8f7e6d5c4b3a\"\nSHORT=abc\nTIMEOUT=300000\n",
        )
        .unwrap();
        std::fs::write(repo.path().join(".env.local"), "SESSION_SECRET='correct horse battery' # comment\n").unwrap();
        std::fs::write(repo.path().join("env.txt"), "NOT_READ=should-stay-visible\n").unwrap();
        let redactor = Redactor::for_repo(repo.path());
        let cases = [
            (
                "connecting to postgres://app:s3cr3t-pa55@db.internal:5432/app",
                "connecting to [REDACTED:env:DATABASE_URL]",
            ),
            ("curl -H 'X-Token: tok_8f7e6d5c4b3a'", "curl -H 'X-Token: [REDACTED:env:API_TOKEN]'"),
            ("secret is correct horse battery!", "secret is [REDACTED:env:SESSION_SECRET]!"),
            (
                "NODE_ENV is production on port 3000, timeout 300000, abc",
                "NODE_ENV is production on port 3000, timeout 300000, abc",
            ),
            ("should-stay-visible", "should-stay-visible"),
        ];
        for (input, want) in cases {
            assert_eq!(redactor.redact(input), want, "{input}");
        }
    }

    #[test]
    fn events_are_redacted_everywhere_they_carry_text() {
        let redactor = Redactor::with_values([("PASSWORD".to_string(), "hunter2hunter2".to_string())]);
        let key = "ghp_R8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ";
        let cases = [
            (
                TaskEvent::Chunk { text: format!("token {key}"), stream: ChunkStream::Stdout },
                TaskEvent::Chunk { text: "token [REDACTED:github-token]".into(), stream: ChunkStream::Stdout },
            ),
            (
                TaskEvent::ToolStart {
                    tool_id: "toolu_1".into(),
                    tool_name: "Bash".into(),
                    params: json!({"command": "login -p hunter2hunter2", "n": 1}),
                },
                TaskEvent::ToolStart {
                    tool_id: "toolu_1".into(),
                    tool_name: "Bash".into(),
                    params: json!({"command": "login -p [REDACTED:env:PASSWORD]", "n": 1}),
                },
            ),
            (
                TaskEvent::ToolDone { tool_id: "t".into(), output: key.into(), is_error: false },
                TaskEvent::ToolDone { tool_id: "t".into(), output: "[REDACTED:github-token]".into(), is_error: false },
            ),
            (TaskEvent::Done { summary: key.into() }, TaskEvent::Done { summary: "[REDACTED:github-token]".into() }),
            (TaskEvent::Error { error: key.into() }, TaskEvent::Error { error: "[REDACTED:github-token]".into() }),
        ];
        for (event, want) in cases {
            assert_eq!(redactor.redact_event(&event), want);
        }
    }

    #[test]
    fn tasks_are_redacted_in_their_free_text() {
        let key = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
        let task = flightdeck_protocol::Task {
            id: "t".into(),
            title: format!("post with {key}"),
            repo: "web".into(),
            agent_id: None,
            executor: flightdeck_protocol::Executor::Shell,
            payload: flightdeck_protocol::TaskPayload { command: Some(format!("curl -H {key}")), ..Default::default() },
            status: flightdeck_protocol::TaskStatus::Failed,
            source: flightdeck_protocol::TaskSource::Local,
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            summary: None,
            error: Some(format!("401 for {key}")),
            cost_usd: None,
            input_tokens: None,
            output_tokens: None,
            last_seq: 3,
        };
        let redacted = Redactor::new().redact_task(&task);
        let masked = "[REDACTED:slack-token]";
        assert_eq!(redacted.title, format!("post with {masked}"));
        assert_eq!(redacted.payload.command, Some(format!("curl -H {masked}")));
        assert_eq!(redacted.error, Some(format!("401 for {masked}")));
        assert_eq!((redacted.id, redacted.last_seq, redacted.summary), (task.id, 3, None));
    }

    #[test]
    fn repo_redactors_follow_env_file_changes() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().to_path_buf();
        let redactors = RepoRedactors::new(Arc::new(move |slug: &str| (slug == "web").then(|| path.clone())));
        assert_eq!(redactors.redact("web", "value-one-secret"), "value-one-secret");
        std::fs::write(repo.path().join(".env"), "A=value-one-secret\n").unwrap();
        // Rebuilt once the recheck interval has passed (forced here by clearing the clock).
        redactors.cache.lock().unwrap().get_mut("web").unwrap().checked -= RepoRedactors::RECHECK;
        assert_eq!(redactors.redact("web", "value-one-secret"), "[REDACTED:env:A]");
        assert_eq!(redactors.redact("unknown", "value-one-secret"), "value-one-secret");
    }
}
