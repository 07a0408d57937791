//! Tests of the redaction engine: the shapes, one text at a time and as streams.

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
        ("connecting to postgres://app:s3cr3t-pa55@db.internal:5432/app", "connecting to [REDACTED:env:DATABASE_URL]"),
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
        title: format!("post with {key}"),
        status: flightdeck_protocol::TaskStatus::Failed,
        error: Some(format!("401 for {key}")),
        last_seq: 3,
        ..flightdeck_protocol::Task::queued(
            "t",
            "",
            "web",
            flightdeck_protocol::Executor::Shell,
            flightdeck_protocol::TaskPayload { command: Some(format!("curl -H {key}")), ..Default::default() },
            flightdeck_protocol::TaskSource::Local,
            chrono::Utc::now(),
        )
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
    redactors.age("web", RepoRedactors::RECHECK);
    assert_eq!(redactors.redact("web", "value-one-secret"), "[REDACTED:env:A]");
    assert_eq!(redactors.redact("unknown", "value-one-secret"), "value-one-secret");
}

// ---------------------------------------------------------------------------------------------
// The shape table: every secret printed whole, split across two chunks at every byte, trickled
// in tiny deltas, released by a deadline half-way, printed line by line, and inside tool params.
// ---------------------------------------------------------------------------------------------

mod shapes {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use flightdeck_protocol::event::ChunkStream;
    use flightdeck_protocol::{SeqEvent, TaskEvent, TaskStatus};
    use serde_json::json;

    use super::super::{Redactor, StreamRedactor};

    const HOLD: Duration = Duration::from_millis(100);

    /// One secret as a program would print it.
    pub(super) struct Shape {
        pub(super) name: &'static str,
        /// The line (or lines) printed.
        pub(super) text: String,
        /// What must never reach the wire: the secret without its lead (`ghp_`, a label).
        pub(super) body: Vec<String>,
        /// The variable the secret would live in, and its value there (tool-params tests).
        pub(super) key: &'static str,
        pub(super) value: String,
    }

    /// A shape whose `secret` appears in `template` at `{}`; its first `lead` bytes may show.
    fn shape(name: &'static str, key: &'static str, template: &str, secret: &str, lead: usize) -> Shape {
        Shape {
            name,
            text: template.replace("{}", secret),
            body: vec![secret[lead..].to_string()],
            key,
            value: secret.to_string(),
        }
    }

    /// The shape with another value under its key (the secret alone says nothing there).
    fn valued(mut shape: Shape, key: &'static str, value: &str) -> Shape {
        shape.key = key;
        shape.value = value.to_string();
        shape
    }

    /// A private key block, printed after `cat`, with a line after it.
    fn pem(name: &'static str, label: &str, lines: &[&str]) -> Shape {
        let block = format!("-----BEGIN {label}-----\n{}\n-----END {label}-----", lines.join("\n"));
        Shape {
            name,
            text: format!("$ cat key\n{block}\ndone\n"),
            body: lines.iter().map(|l| l.to_string()).collect(),
            key: "SSH_PRIVATE_KEY",
            value: block,
        }
    }

    /// The `.env` values the redactor of these tests knows.
    pub(super) fn redactor() -> Arc<Redactor> {
        Arc::new(Redactor::with_values([
            ("DATABASE_URL".to_string(), "postgres://app:s3cr3t-pa55@db.internal:5432/app".to_string()),
            ("SESSION_SECRET".to_string(), "correct horse battery".to_string()),
            ("INTERNAL_KEY".to_string(), "Zq9-Lm4-Tx7-Pw2".to_string()),
        ]))
    }

    pub(super) fn table() -> Vec<Shape> {
        let hex64 = "d41f8e2a97c35b06e1a4f9c7d28b53e0af61c94d7e25b8f0a3c6e19d4b72f58a";
        vec![
            shape("anthropic", "ANTHROPIC_API_KEY", "export ANTHROPIC_API_KEY={}\n",
                "sk-ant-api03-Xq3vB8nR2kLmP9wZt7YcJ4hF6dS1aG0eU5iO8pQ-rT2yW4uE6iA_AA", 7),
            shape("anthropic in prose", "KEY", "Your key is {}, keep it safe.",
                "sk-ant-admin01-Hh3kLm9Pq2Rs5Tv8Wx1Yz4Ab7Cd0Ef3Gh6Jk", 7),
            shape("openai project", "OPENAI_API_KEY", "key: {}\n",
                "sk-proj-4fGh7JkL9mNp2QrS5tUv8WxY1zA3bC6dE9fG2hJ5kL8mN1pQ4rS7tU0vW3xY", 8),
            shape("openai legacy", "OPENAI_API_KEY", "OPENAI_API_KEY={}\n", "sk-9fT2mQ7xL4pW8nB3vC6zK1jH5gD0sA2eR", 3),
            shape("stripe secret", "STRIPE_KEY", "STRIPE={} ok\n", "sk_live_51H8xYzAbCdEfGhIjKlMnOpQr", 8),
            shape("stripe restricted", "STRIPE_KEY", "using {}\n", "rk_live_51H8xYzAbCdEfGhIjKlMnOpQr7", 8),
            shape("aws access key", "AWS_ACCESS_KEY_ID", "aws_access_key_id = {}\n", "AKIAZ3MQ7XK4PL2RT9WB", 4),
            shape("aws session key id", "AWS_ACCESS_KEY_ID", "session {} expires\n", "ASIAY34FZKBOKMUTVV7A", 4),
            shape("aws secret, short label", "AWS_SECRET", "export AWS_SECRET={}\n",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8d3kLm2P", 0),
            shape("aws secret, lowercase label", "aws_secret", "aws_secret: {}\n",
                "Hk2Lm/9Pq4Rs+7Tv1Wx3Yz5Ab8Cd0Ef2Gh4Jk6Lm8", 0),
            shape("aws secret, ini", "aws_secret_access_key", "aws_secret_access_key = {}\n",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8d3kLm2P", 0),
            shape("aws secret, json", "SecretAccessKey", "    \"SecretAccessKey\": \"{}\",\n",
                "Zt4Xw8Qp2Lm6Nb0Vc3Hj7Kd1Fs5Ga9Re2Ty6Ui0O", 0),
            shape("github in colour", "GITHUB_TOKEN", "Token: \x1b[1;32m{}\x1b[0m\n",
                "ghp_Zz8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hK", 4),
            shape("openai in colour", "OPENAI_API_KEY", "\x1b[33m{}\x1b[0m",
                "sk-proj-Qq7JkL9mNp2QrS5tUv8WxY1zA3bC6dE9fG2hJ5k", 8),
            shape("github url-encoded", "GITHUB_TOKEN", "GET /login?next=%2F&token%3D{}%26x HTTP/1.1\n",
                "ghp_Ab8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hM", 4),
            shape("slack url-encoded", "SLACK_TOKEN", "payload=token%3D{}\n", "xoxb-9999-8888-AbCdEfGhIjKlMnOp", 5),
            shape("github classic", "GITHUB_TOKEN", "git clone https://{}@github.com/o/r\n",
                "ghp_R8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ", 4),
            shape("github oauth", "GH_TOKEN", "GH_TOKEN={}\n", "gho_16C7e42F292c6912E7710c838347Ae178B4a", 4),
            shape("github user", "GH_TOKEN", "token {}\n", "ghu_1234567890abcdefghijABCDEFGHIJ123456", 4),
            shape("github server", "GH_TOKEN", "{} ok", "ghs_1234567890abcdefghijABCDEFGHIJ123456", 4),
            shape("github refresh", "GH_TOKEN", "refresh={}\n", "ghr_9876543210abcdefghijABCDEFGHIJ654321", 4),
            shape("github fine-grained", "GITHUB_PAT", "token {} ok\n",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012", 11),
            shape("gitlab", "GITLAB_TOKEN", "GITLAB_TOKEN={}\n", "glpat-Xk3mP9qR2tV5wY8zA1bC", 6),
            shape("npm", "NPM_TOKEN", "//registry.npmjs.org/:_authToken={}\n", "npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", 4),
            shape("pypi", "PYPI_TOKEN", "password = {}\n",
                "pypi-AgEIcHlwaS5vcmcCJDVhNjQ4ZjE2LTk3ZDctNDQ5Ni1iNzk1LTk3YjYxNjU0ZTljMQACKlszLCJmNTQzYjNmMiJdAAAGIB", 5),
            shape("slack bot", "SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN={}\n",
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", 5),
            shape("slack user", "SLACK_TOKEN", "{}\n", "xoxp-1111-2222-3333-abcdef0123", 5),
            valued(shape("slack webhook", "SLACK_WEBHOOK_URL", "curl -X POST https://hooks.slack.com/services/{}\n",
                "T0A1B2C3D/B0E4F5G6H/x1Y2z3A4b5C6d7E8f9G0h1I2", 0), "SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/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"),
            shape("twilio api key", "TWILIO_API_KEY", "TWILIO_API_KEY={}\n", "SKa1b2c3d4e5f60718293a4b5c6d7e8f90", 2),
            shape("twilio auth token", "TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN={}\n", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", 0),
            shape("sendgrid", "SENDGRID_API_KEY", "sg = {}\n",
                "SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ012", 3),
            shape("hugging face", "HF_TOKEN", "huggingface-cli login --token {}\n", "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567", 3),
            shape("digitalocean", "DIGITALOCEAN_TOKEN", "doctl auth init -t {}\n", &format!("dop_v1_{hex64}"), 7),
            shape("google api key", "GOOGLE_API_KEY", "const key = \"{}\";\n", "AIzaSyD3kL9mP2qR5tV8wY1zA4bC7dE0fG3hJ6k", 4),
            shape("jwt", "ID_TOKEN", "id_token: {}\n",
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", 3),
            valued(shape("bearer", "AUTH_HEADER", "curl -H 'Authorization: Bearer {}' https://api.example.com\n",
                "abc123XYZ789def456GHI012jkl", 0), "Authorization", "Bearer abc123XYZ789def456GHI012jkl"),
            valued(shape("basic auth", "AUTH_HEADER", "Authorization: Basic {}\n", "dXNlcjpwYXNzd29yZDEyMw==", 0), "Authorization", "Basic dXNlcjpwYXNzd29yZDEyMw=="),
            valued(shape("url with password", "REPO_URL", "git remote add origin https://deploy:{}@git.example.com/r.git\n",
                "Sup3rS3cretPw", 0), "REPO_URL", "https://deploy:Sup3rS3cretPw@git.example.com/r.git"),
            valued(shape("redis url", "REDIS_URL", "connecting to redis://:{}@cache:6379/0\n", "hunter2hunter2", 0), "REDIS_URL", "redis://:hunter2hunter2@cache:6379/0"),
            valued(shape("azure storage", "AZURE_STORAGE_CONNECTION_STRING",
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net\n",
                "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmE4MjE=", 0), "AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmE4MjE="),
            shape("password env", "DB_PASSWORD", "DB_PASSWORD={}\n", "hunter2hunter2", 0),
            shape("bare password", "PASSWORD", "PASSWORD={} ./run\n", "Tr0ub4dor&3xyz", 0),
            shape("api key json", "api_key", "{\"api_key\": \"{}\"}\n", "a8f5f167f44f4964e6c998dee827110c", 0),
            shape("client secret yaml", "client_secret", "  client_secret: {}\n", "9Xk2mP7qR4tV1wY8zA5b", 0),
            shape("django secret key", "SECRET_KEY", "SECRET_KEY = '{}'\n", "django-insecure-8x!k2#mq9@z$w5v", 0),
            shape("session token json", "SessionToken", "\"SessionToken\": \"{}\"\n",
                "FwoGZXIvYXdzEBYaDH7kL9mP2qR5tV8wY1zA4bC7dE0fG3hJ6kLm", 0),
            shape("env: database url", "DATABASE_URL", "connecting to {}\n",
                "postgres://app:s3cr3t-pa55@db.internal:5432/app", 2),
            shape("env: passphrase", "SESSION_SECRET", "the secret is {}!\n", "correct horse battery", 2),
            shape("env: key", "INTERNAL_KEY", "k={}\n", "Zq9-Lm4-Tx7-Pw2", 2),
            pem("pem rsa", "RSA PRIVATE KEY", &[
                "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB",
                "aFDrBz9vFqU4yQZ3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPBqq",
                "Lk3Mn8Pq2Rs==",
            ]),
            pem("pem pkcs8", "PRIVATE KEY", &["MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVcB", "Xz8kQ2Lm7Np4Rt1Vw=="]),
            pem("pem ec", "EC PRIVATE KEY", &["MHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49", "AwEHoUQDQgAE"]),
            pem("pem openssh", "OPENSSH PRIVATE KEY", &[
                "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
                "QyNTUxOQAAACDk8Jx2Vb9Lq3Wm7Rt5Yp1Zs4Xn8Kc6Hd2Gf0Ja9Qw3EAAAAJgAAAA",
            ]),
            pem("pem dsa", "DSA PRIVATE KEY", &["MIIBuwIBAAKBgQD3n8Kc6Hd2Gf0Ja9Qw3Ek8Jx2Vb9Lq3Wm7Rt5Yp1Zs4Xn", "Ab9Cd8Ef7Gh6"]),
            pem("pem encrypted", "ENCRYPTED PRIVATE KEY", &["MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI", "Qw3Ek8Jx2Vb9Lq3W"]),
            pem("pgp", "PGP PRIVATE KEY BLOCK", &[
                "",
                "lQOYBF9xKz4BCADM3Xn8Kc6Hd2Gf0Ja9Qw3Ek8Jx2Vb9Lq3Wm7Rt5Yp1Zs4Xn",
                "=Ab9C",
            ]),
        ]
    }

    /// The first piece (4 bytes or more) of `body` found in `wire`.
    pub(super) fn leak(wire: &str, body: &[String]) -> Option<String> {
        for part in body {
            let bytes = part.as_bytes();
            let width = 4.min(bytes.len());
            if width == 0 {
                continue;
            }
            for window in bytes.windows(width) {
                let window = std::str::from_utf8(window).unwrap_or_default();
                if !window.is_empty() && wire.contains(window) {
                    return Some(window.to_string());
                }
            }
        }
        None
    }

    pub(super) fn chunk(text: &str, stream: ChunkStream) -> TaskEvent {
        TaskEvent::Chunk { text: text.to_string(), stream }
    }

    pub(super) fn texts(events: &[SeqEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match &e.event {
                TaskEvent::Chunk { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Feeds `pieces` as chunks of one stream at `now`, then the task's end; checks that events
    /// came out one per one in, in `seq` order; returns them.
    pub(super) fn stream_through(redactor: &Arc<Redactor>, pieces: &[&str], stream: ChunkStream) -> Vec<SeqEvent> {
        let mut s = StreamRedactor::new(redactor.clone(), HOLD);
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            out.extend(s.push(i as u64 + 1, chunk(piece, stream), now));
        }
        let done = TaskEvent::Status { status: TaskStatus::Completed, model: None, session_id: None };
        out.extend(s.push(pieces.len() as u64 + 1, done, now));
        out.extend(s.finish());
        assert_in_order(&out, pieces.len() as u64 + 1);
        out
    }

    pub(super) fn assert_in_order(out: &[SeqEvent], count: u64) {
        let seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=count).collect::<Vec<_>>(), "one event out per event in, in seq order");
    }

    fn boundaries(text: &str) -> impl Iterator<Item = usize> + '_ {
        (1..text.len()).filter(|i| text.is_char_boundary(*i))
    }

    #[test]
    fn the_table_has_at_least_forty_shapes() {
        assert!(table().len() >= 40, "{} shapes", table().len());
    }

    #[test]
    fn every_shape_printed_whole_is_masked() {
        let redactor = redactor();
        for shape in table() {
            let once = redactor.redact(&shape.text);
            assert_eq!(leak(&once, &shape.body), None, "{}: {once}", shape.name);
            assert!(once.contains("[REDACTED:"), "{}: {once}", shape.name);
            let streamed = texts(&stream_through(&redactor, &[&shape.text], ChunkStream::Assistant));
            assert_eq!(streamed, once, "{}", shape.name);
        }
    }

    #[test]
    fn every_shape_split_at_every_byte_is_masked_in_both_chunks() {
        let redactor = redactor();
        for shape in table() {
            let once = redactor.redact(&shape.text);
            for (n, at) in boundaries(&shape.text).enumerate() {
                let (a, b) = shape.text.split_at(at);
                let stream = if n % 2 == 0 { ChunkStream::Assistant } else { ChunkStream::Stdout };
                let wire = texts(&stream_through(&redactor, &[a, b], stream));
                assert_eq!(leak(&wire, &shape.body), None, "{} split at {at}: {a:?} + {b:?} -> {wire:?}", shape.name);
                assert_eq!(wire, once, "{} split at {at}: {a:?} + {b:?}", shape.name);
            }
        }
    }

    #[test]
    fn every_shape_trickled_in_tiny_deltas_is_masked() {
        let redactor = redactor();
        for shape in table() {
            let once = redactor.redact(&shape.text);
            for width in [1, 2, 3, 7] {
                let mut pieces = Vec::new();
                let mut rest = shape.text.as_str();
                while !rest.is_empty() {
                    let mut at = width.min(rest.len());
                    while !rest.is_char_boundary(at) {
                        at += 1;
                    }
                    pieces.push(&rest[..at]);
                    rest = &rest[at..];
                }
                let wire = texts(&stream_through(&redactor, &pieces, ChunkStream::Assistant));
                assert_eq!(leak(&wire, &shape.body), None, "{} in {width}-byte deltas: {wire:?}", shape.name);
                assert_eq!(wire, once, "{} in {width}-byte deltas", shape.name);
            }
        }
    }

    #[test]
    fn every_shape_split_with_a_deadline_between_the_chunks_leaks_no_body() {
        let redactor = redactor();
        for shape in table() {
            for at in boundaries(&shape.text) {
                let (a, b) = shape.text.split_at(at);
                let mut s = StreamRedactor::new(redactor.clone(), HOLD);
                let t0 = Instant::now();
                let mut out = s.push(1, chunk(a, ChunkStream::Assistant), t0);
                if let Some(deadline) = s.deadline() {
                    assert!(deadline <= t0 + HOLD, "{}: held past its hold time", shape.name);
                    out.extend(s.flush_due(deadline));
                }
                assert_eq!(s.deadline(), None, "{}: the first chunk is out by its deadline", shape.name);
                out.extend(s.push(2, chunk(b, ChunkStream::Assistant), t0 + 3 * HOLD));
                out.extend(s.finish());
                assert_in_order(&out, 2);
                let wire = texts(&out);
                assert_eq!(leak(&wire, &shape.body), None, "{} split at {at}: {a:?} + {b:?} -> {wire:?}", shape.name);
            }
        }
    }

    #[test]
    fn private_keys_printed_one_line_per_chunk_are_masked_with_no_hold() {
        let redactor = redactor();
        for shape in table().into_iter().filter(|s| s.name.starts_with("pem") || s.name == "pgp") {
            let lines: Vec<String> = shape.text.split_inclusive('\n').map(String::from).collect();
            let mut s = StreamRedactor::new(redactor.clone(), HOLD);
            let now = Instant::now();
            let mut out = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let released = s.push(i as u64 + 1, chunk(line, ChunkStream::Stdout), now);
                assert_eq!(released.len(), 1, "{}: line {i} ({line:?}) went out at once", shape.name);
                out.extend(released);
            }
            assert_eq!(s.deadline(), None);
            assert_in_order(&out, lines.len() as u64);
            let wire = texts(&out);
            assert_eq!(leak(&wire, &shape.body), None, "{}: {wire}", shape.name);
            assert!(!wire.contains("-----END"), "{}: {wire}", shape.name);
            assert_eq!(wire, "$ cat key\n[REDACTED:private-key]\ndone\n", "{}", shape.name);
        }
    }

    #[test]
    fn every_shape_in_tool_params_is_masked() {
        let redactor = redactor();
        for shape in table() {
            let (key, value, text) = (shape.key, shape.value.as_str(), shape.text.as_str());
            let params = [
                ("value", json!({"command": text})),
                ("nested value", json!({"args": {"inner": [1, text]}})),
                ("key and value", json!({key: value})),
                ("key and value, nested", json!({"env": {key: value, "MODE": "fast"}})),
                ("key, value in an array", json!(["docker", "run", "-e", key, value])),
                ("name, value in an object", json!({"name": key, "value": value})),
            ];
            for (how, params) in params {
                let event = TaskEvent::ToolStart { tool_id: "toolu_1".into(), tool_name: "Bash".into(), params };
                let mut s = StreamRedactor::new(redactor.clone(), HOLD);
                let out = s.push(1, event.clone(), Instant::now());
                assert_in_order(&out, 1);
                let wire = serde_json::to_string(&out[0].event).unwrap();
                assert_eq!(leak(&wire, &shape.body), None, "{} as {how}: {wire}", shape.name);
                assert_eq!(redactor.redact_event(&event), out[0].event, "{} as {how}", shape.name);
            }
        }
    }

    #[test]
    fn every_shape_in_other_texts_is_masked() {
        let redactor = redactor();
        for shape in table() {
            let text = shape.text.clone();
            let events = [
                TaskEvent::ToolDone { tool_id: "t".into(), output: text.clone(), is_error: false },
                TaskEvent::Done { summary: text.clone() },
                TaskEvent::Error { error: text.clone() },
            ];
            for event in events {
                let wire = serde_json::to_string(&redactor.redact_event(&event)).unwrap();
                assert_eq!(leak(&wire, &shape.body), None, "{} in {}: {wire}", shape.name, event.kind());
            }
        }
    }

    /// Many secrets and ordinary lines in one text, cut at random places, with the clock
    /// jumping past deadlines at random: no secret body reaches the wire, every event comes out
    /// once and in order, and without deadlines the wire text equals the whole text redacted.
    /// `SEED=n` picks another run (the default one is fixed, so a failure can be replayed).
    #[test]
    fn random_cuts_and_random_deadlines_leak_nothing() {
        use rand::{Rng, SeedableRng};
        let redactor = redactor();
        let table = table();
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13));
        for round in 0..300 {
            let mut text = String::new();
            let mut bodies = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                if rng.random_bool(0.3) {
                    text.push_str(ORDINARY[rng.random_range(0..ORDINARY.len())]);
                } else {
                    let shape = &table[rng.random_range(0..table.len())];
                    text.push_str(&shape.text);
                    bodies.extend(shape.body.iter().filter(|b| b.len() >= 8).cloned());
                }
                // A separator, as between two outputs (glued, `ok` + `ghs_...` is no token).
                text.push(if rng.random_bool(0.5) { '\n' } else { ' ' });
            }
            let mut pieces = Vec::new();
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut at = rng.random_range(1..24).min(rest.len());
                while !rest.is_char_boundary(at) {
                    at += 1;
                }
                pieces.push(&rest[..at]);
                rest = &rest[at..];
            }
            let with_deadlines = round % 2 == 1;
            let mut s = StreamRedactor::new(redactor.clone(), HOLD);
            let mut now = Instant::now();
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                if with_deadlines && rng.random_bool(0.3) {
                    now += Duration::from_millis(rng.random_range(0..250));
                    out.extend(s.flush_due(now));
                }
                out.extend(s.push(i as u64 + 1, chunk(piece, ChunkStream::Assistant), now));
            }
            out.extend(s.finish());
            assert_in_order(&out, pieces.len() as u64);
            let wire = texts(&out);
            // Windows of 8 bytes: ordinary text shares shorter pieces with some bodies.
            for body in &bodies {
                for window in body.as_bytes().windows(8) {
                    let window = std::str::from_utf8(window).unwrap();
                    assert!(
                        !wire.contains(window),
                        "round {round}: {window:?} of {body:?} in {wire:?} from {pieces:?}"
                    );
                }
            }
            if !with_deadlines {
                assert_eq!(wire, redactor.redact(&text), "round {round}: {pieces:?}");
            }
        }
    }

    /// As above, with stdout, stderr and the assistant's text interleaved at random and tool
    /// progress ticks between them: each stream is redacted as its own text.
    #[test]
    fn random_interleaved_streams_leak_nothing() {
        use rand::{Rng, SeedableRng};
        let redactor = redactor();
        let table = table();
        let streams = [ChunkStream::Assistant, ChunkStream::Stdout, ChunkStream::Stderr];
        let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for round in 0..200 {
            let mut texts_by_stream = [String::new(), String::new(), String::new()];
            let mut bodies = Vec::new();
            for _ in 0..rng.random_range(2..8) {
                let text = &mut texts_by_stream[rng.random_range(0..3)];
                if rng.random_bool(0.3) {
                    text.push_str(ORDINARY[rng.random_range(0..ORDINARY.len())]);
                } else {
                    let shape = &table[rng.random_range(0..table.len())];
                    text.push_str(&shape.text);
                    bodies.extend(shape.body.iter().filter(|b| b.len() >= 8).cloned());
                }
                text.push(if rng.random_bool(0.5) { '\n' } else { ' ' });
            }
            // Each stream cut into pieces, then the pieces dealt out in a random order that
            // keeps each stream's own order.
            let mut queues: Vec<Vec<String>> = texts_by_stream
                .iter()
                .map(|text| {
                    let mut pieces = Vec::new();
                    let mut rest = text.as_str();
                    while !rest.is_empty() {
                        let mut at = rng.random_range(1..24).min(rest.len());
                        while !rest.is_char_boundary(at) {
                            at += 1;
                        }
                        pieces.push(rest[..at].to_string());
                        rest = &rest[at..];
                    }
                    pieces.reverse();
                    pieces
                })
                .collect();
            let with_deadlines = round % 2 == 1;
            let mut s = StreamRedactor::new(redactor.clone(), HOLD);
            let mut now = Instant::now();
            let mut out = Vec::new();
            let mut seq = 0;
            let mut kinds = Vec::new();
            while queues.iter().any(|q| !q.is_empty()) {
                let which = loop {
                    let which = rng.random_range(0..3);
                    if !queues[which].is_empty() {
                        break which;
                    }
                };
                let piece = queues[which].pop().expect("not empty");
                if with_deadlines && rng.random_bool(0.3) {
                    now += Duration::from_millis(rng.random_range(0..250));
                    out.extend(s.flush_due(now));
                }
                seq += 1;
                kinds.push(Some(which));
                out.extend(s.push(seq, chunk(&piece, streams[which]), now));
                if rng.random_bool(0.1) {
                    seq += 1;
                    kinds.push(None);
                    out.extend(s.push(seq, TaskEvent::ToolProgress { tool_id: "t".into(), elapsed_secs: 1.0 }, now));
                }
            }
            out.extend(s.finish());
            assert_in_order(&out, seq);
            for (which, text) in texts_by_stream.iter().enumerate() {
                let wire: String = out
                    .iter()
                    .filter_map(|e| match &e.event {
                        TaskEvent::Chunk { text, stream } if *stream == streams[which] => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                for body in &bodies {
                    for window in body.as_bytes().windows(8) {
                        let window = std::str::from_utf8(window).unwrap();
                        assert!(!wire.contains(window), "round {round}: {window:?} of {body:?} in {wire:?}");
                    }
                }
                if !with_deadlines {
                    assert_eq!(wire, redactor.redact(text), "round {round}, stream {which}");
                }
            }
            for (event, kind) in out.iter().zip(&kinds) {
                let is_chunk = matches!(event.event, TaskEvent::Chunk { .. });
                assert_eq!(is_chunk, kind.is_some(), "round {round}: seq {} kept its kind", event.seq);
            }
        }
    }

    /// Output that is not secret, and must reach the HUD as it is.
    pub(super) const ORDINARY: &[&str] = &[
        "fn main() { let task_id = \"a\"; println!(\"{task_id}\"); }\n",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)\n",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
        "task 0190c4c8-8a3e-7c4b-9f1a-2b3c4d5e6f70 finished\n",
        "see https://docs.anthropic.com/en/docs/claude-code/sdk?tab=stream-json#output\n",
        "npm install --save-dev disk-usage-monitoring-tool-for-linux\n",
        "base64: SGVsbG8sIFdvcmxkISBUaGlzIGlzIGp1c3QgdGV4dC4=\n",
        "AKIA is the prefix of AWS access keys; sk- is OpenAI's\n",
        "the -----BEGIN PUBLIC KEY----- block is public\n",
        "eyJ0eXAiOiJKV1QifQ alone is just a header\n",
        "/home/dev/.ssh/id_ed25519.pub and src/redact/stream.rs:42:5\n",
        "let token = get_token();\n",
        "SSH_PRIVATE_KEY=/home/dev/.ssh/id_ed25519 GIT_SSH_KEY=~/.ssh/deploy_key\n",
        "const API_KEY = process.env.API_KEY;\n",
        "password: string;\n",
        "db_password = os.getenv('DB_PASSWORD')\n",
        "max_tokens: 4096, input_tokens=200\n",
        "TOKEN_URL=https://auth.example.com/oauth/token\n",
        "env: ${{ secrets.GITHUB_TOKEN }}\n",
        "const logo = \"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\";\n",
        "listening on https://example.com:8080/path and git@github.com:owner/repo.git\n",
        "sk-learn is a typo for scikit-learn\n",
        "The password must be at least 8 characters long.\n",
        "error: token expired at 2026-01-01T00:00:00Z\n",
        "the token 3f786850e387550fdab836ed7e6dc881de23001b is a commit\n",
        "docker run -e MODE=production -e PORT=3000 app\n",
        "hf_hub_download(repo_id=\"gpt2\") and npm_config_cache=/tmp/npm\n",
        "Compiling regex-automata v0.4.18\n   Finished `test` profile in 2m 46s\n",
        "Ünïcödé tëxt wïth ëmöjï 🚀 and a key: value\n",
        "",
    ];

    #[test]
    fn ordinary_output_is_left_alone() {
        let redactor = redactor();
        for text in ORDINARY {
            assert_eq!(redactor.redact(text), *text);
            for at in boundaries(text) {
                let (a, b) = text.split_at(at);
                let out = stream_through(&redactor, &[a, b], ChunkStream::Stdout);
                assert_eq!(texts(&out), *text, "split at {at}");
            }
            let params = json!({"command": text, "args": ["-e", text]});
            assert_eq!(redactor.redact_json(&params), params);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Holding, deadlines and order.
// ---------------------------------------------------------------------------------------------

mod holding {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use flightdeck_protocol::event::ChunkStream;
    use flightdeck_protocol::{SeqEvent, TaskEvent};
    use serde_json::json;

    use super::super::{Redactor, StreamRedactor};
    use super::shapes::{chunk, texts};

    const HOLD: Duration = Duration::from_millis(100);
    const TOKEN: &str = "ghp_R8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ";

    fn new() -> StreamRedactor {
        StreamRedactor::new(Arc::new(Redactor::new()), HOLD)
    }

    fn one(events: &[SeqEvent]) -> (u64, String) {
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0].event {
            TaskEvent::Chunk { text, .. } => (events[0].seq, text.clone()),
            other => (events[0].seq, format!("{other:?}")),
        }
    }

    #[test]
    fn a_chunk_ending_in_a_newline_is_released_at_once() {
        let mut s = new();
        let now = Instant::now();
        for (seq, line) in
            ["hello world\n", "export PORT=3000\n", "token ghp_\n", "partial sk-ant-\n"].iter().enumerate()
        {
            let out = s.push(seq as u64 + 1, chunk(line, ChunkStream::Stdout), now);
            assert_eq!(one(&out), (seq as u64 + 1, line.to_string()));
            assert_eq!(s.deadline(), None);
        }
    }

    #[test]
    fn a_chunk_that_may_begin_a_secret_waits_for_the_next_one() {
        let mut s = new();
        let now = Instant::now();
        assert!(s.push(1, chunk("my key is ghp_R8kLm", ChunkStream::Assistant), now).is_empty());
        assert_eq!(s.deadline(), Some(now + HOLD));
        let out = s.push(2, chunk(&format!("{} and more\n", &TOKEN[9..]), ChunkStream::Assistant), now);
        let texts: Vec<_> = out.iter().map(|e| one(std::slice::from_ref(e))).collect();
        assert_eq!(texts, vec![(1, "my key is [REDACTED:github-token]".to_string()), (2, " and more\n".to_string())]);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn the_deadline_releases_a_held_chunk_with_no_further_input() {
        let mut s = new();
        let t0 = Instant::now();
        assert!(s.push(1, chunk("token ghp_ab", ChunkStream::Assistant), t0).is_empty());
        assert_eq!(s.deadline(), Some(t0 + HOLD));
        assert!(s.flush_due(t0 + HOLD - Duration::from_millis(1)).is_empty(), "not before the deadline");
        // Past the lead (`ghp_`), what may be a token is masked when the deadline releases it...
        assert_eq!(one(&s.flush_due(t0 + HOLD)), (1, "token [REDACTED:github-token]".to_string()));
        assert_eq!(s.deadline(), None);
        // ... and its rest, arriving late, is masked too (its tag was sent already).
        let out = s.push(2, chunk(&format!("{}\n", &TOKEN[6..]), ChunkStream::Assistant), t0 + 5 * HOLD);
        assert_eq!(one(&out), (2, "\n".to_string()));
    }

    #[test]
    fn a_lead_released_by_the_deadline_goes_out_as_is_and_the_rest_is_masked_later() {
        let mut s = new();
        let t0 = Instant::now();
        assert!(s.push(1, chunk("token gh", ChunkStream::Assistant), t0).is_empty());
        assert_eq!(one(&s.flush_due(t0 + HOLD)), (1, "token gh".to_string()));
        let out = s.push(2, chunk(&format!("{} ok\n", &TOKEN[2..]), ChunkStream::Assistant), t0 + 2 * HOLD);
        assert_eq!(one(&out), (2, "[REDACTED:github-token] ok\n".to_string()));
        // A word that only looked like a start goes out unchanged.
        assert!(s.push(3, chunk("password", ChunkStream::Assistant), t0 + 3 * HOLD).is_empty());
        assert_eq!(one(&s.flush_due(t0 + 4 * HOLD)), (3, "password".to_string()));
    }

    #[test]
    fn later_events_wait_for_a_held_one_in_seq_order() {
        let mut s = new();
        let t0 = Instant::now();
        assert!(s.push(1, chunk("key: sk-ant-api03-Xq3v", ChunkStream::Stdout), t0).is_empty());
        assert!(s.push(2, chunk("warning: slow\n", ChunkStream::Stderr), t0).is_empty());
        assert!(s.push(3, TaskEvent::ToolProgress { tool_id: "t".into(), elapsed_secs: 1.0 }, t0).is_empty());
        assert_eq!(s.deadline(), Some(t0 + HOLD), "the oldest held event bounds the wait");
        let out = s.flush_due(t0 + HOLD);
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(texts(&out), "key: [REDACTED:anthropic-key]warning: slow\n");
    }

    #[test]
    fn streams_are_separate_and_tool_progress_does_not_end_them() {
        let mut s = new();
        let t0 = Instant::now();
        let mut out = s.push(1, chunk(&TOKEN[..10], ChunkStream::Stdout), t0);
        out.extend(s.push(2, chunk("stderr line\n", ChunkStream::Stderr), t0));
        out.extend(s.push(3, TaskEvent::ToolProgress { tool_id: "t".into(), elapsed_secs: 1.0 }, t0));
        out.extend(s.push(4, chunk(&format!("{}\n", &TOKEN[10..]), ChunkStream::Stdout), t0));
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(texts(&out), "[REDACTED:github-token]stderr line\n\n");
    }

    #[test]
    fn another_kind_of_event_ends_the_text_and_is_redacted_itself() {
        let mut s = new();
        let t0 = Instant::now();
        assert!(s.push(1, chunk("text then ghp_abc", ChunkStream::Assistant), t0).is_empty());
        let params = json!({"command": format!("echo {TOKEN}")});
        let out = s.push(2, TaskEvent::ToolStart { tool_id: "t".into(), tool_name: "Bash".into(), params }, t0);
        assert_eq!(out.len(), 2);
        // The text ended: `ghp_abc` is no token, and the next text starts afresh.
        assert_eq!(one(&out[..1]), (1, "text then ghp_abc".to_string()));
        assert_eq!(
            out[1].event,
            TaskEvent::ToolStart {
                tool_id: "t".into(),
                tool_name: "Bash".into(),
                params: json!({"command": "echo [REDACTED:github-token]"})
            }
        );
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn a_private_key_cut_anywhere_in_claude_deltas_is_masked_to_its_end_line() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDk8Jx2Vb9Lq3Wm\n-----END OPENSSH PRIVATE KEY-----";
        let text = format!("Here it is:\n```\n{key}\n```\nDone.");
        let redactor = Arc::new(Redactor::new());
        let once = redactor.redact(&text);
        assert_eq!(once, "Here it is:\n```\n[REDACTED:private-key]\n```\nDone.");
        for at in (1..text.len()).filter(|i| text.is_char_boundary(*i)) {
            for at2 in [at + 1, at + 7, at + 40].into_iter().filter(|j| *j < text.len()) {
                let pieces = [&text[..at], &text[at..at2], &text[at2..]];
                let wire = texts(&super::shapes::stream_through(&redactor, &pieces, ChunkStream::Assistant));
                assert_eq!(wire, once, "cut at {at} and {at2}");
            }
        }
    }

    #[test]
    fn a_private_key_that_never_ends_is_masked_until_the_text_ends() {
        let mut s = new();
        let t0 = Instant::now();
        let mut out = s.push(1, chunk("-----BEGIN RSA PRIVATE KEY-----\n", ChunkStream::Stdout), t0);
        out.extend(s.push(2, chunk("MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n", ChunkStream::Stdout), t0));
        out.extend(s.push(3, TaskEvent::Error { error: "cat: broken pipe".into() }, t0));
        out.extend(s.push(4, chunk("after\n", ChunkStream::Stdout), t0));
        assert_eq!(out.len(), 4);
        assert_eq!(texts(&out), "[REDACTED:private-key]after\n");
    }
}

#[test]
fn a_shell_summary_that_is_a_line_of_a_private_key_is_masked() {
    // `head -2 id_rsa`: the key is cut off, and the shell's summary is its last stdout line.
    let redactor = Arc::new(Redactor::new());
    let mut s = StreamRedactor::new(redactor, std::time::Duration::from_millis(100));
    let now = std::time::Instant::now();
    let body = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB";
    let mut out = s.push(1, shapes::chunk("-----BEGIN RSA PRIVATE KEY-----\n", ChunkStream::Stdout), now);
    out.extend(s.push(2, shapes::chunk(&format!("{body}\n"), ChunkStream::Stdout), now));
    out.extend(s.push(3, TaskEvent::Done { summary: body.into() }, now));
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].event, TaskEvent::Done { summary: "[REDACTED:private-key]".into() });
    let task = flightdeck_protocol::Task {
        summary: Some(body.into()),
        error: None,
        ..flightdeck_protocol::Task::queued(
            "t",
            "head -2 id_rsa",
            "web",
            flightdeck_protocol::Executor::Shell,
            Default::default(),
            flightdeck_protocol::TaskSource::Local,
            chrono::Utc::now(),
        )
    };
    assert_eq!(s.redact_task(&task).summary.as_deref(), Some("[REDACTED:private-key]"));
}

#[test]
fn redactors_can_move_to_blocking_threads() {
    fn send<T: Send + 'static>() {}
    fn shared<T: Send + Sync + 'static>() {}
    send::<StreamRedactor>();
    shared::<Redactor>();
    shared::<RepoRedactors>();
}

#[test]
fn alerts_are_redacted_in_their_message() {
    let alert = flightdeck_protocol::Alert {
        id: "a".into(),
        severity: flightdeck_protocol::Severity::Warning,
        kind: flightdeck_protocol::AlertKind::TaskFailed,
        repo: Some("web".into()),
        task_id: Some("t".into()),
        agent_id: None,
        message: "Task \"deploy\" failed: 401 for ghp_R8kLmN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ".into(),
        created_at: chrono::Utc::now(),
        acknowledged: false,
        acknowledged_at: None,
    };
    let redacted = Redactor::new().redact_alert(&alert);
    assert_eq!(redacted.message, "Task \"deploy\" failed: 401 for [REDACTED:github-token]");
    assert_eq!((redacted.id, redacted.repo), (alert.id, alert.repo));
}

#[test]
fn repo_redactors_share_one_redactor_until_invalidated() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join(".env"), "A=value-one-secret\n").unwrap();
    let path = repo.path().to_path_buf();
    let redactors = RepoRedactors::new(Arc::new(move |slug: &str| (slug == "web").then(|| path.clone())));
    let first = redactors.for_repo("web");
    assert!(Arc::ptr_eq(&first, &redactors.for_repo("web")), "cached, not rebuilt per call");
    std::fs::write(repo.path().join(".env"), "A=value-two-secret-longer\n").unwrap();
    // Within the recheck interval the cached one is used...
    assert_eq!(redactors.redact("web", "value-two-secret-longer"), "value-two-secret-longer");
    // ... until the watcher says the file changed.
    redactors.invalidate("web");
    assert_eq!(redactors.redact("web", "value-two-secret-longer"), "[REDACTED:env:A]");
    let rebuilt = redactors.for_repo("web");
    redactors.age("web", RepoRedactors::RECHECK);
    assert!(Arc::ptr_eq(&rebuilt, &redactors.for_repo("web")), "unchanged files: the same redactor after a recheck");
}

/// Ordinary output is never held: 50,000 shell lines go out one per one in, at once, unchanged;
/// a long line of prose in 12-byte deltas comes out whole and unchanged once it ends.
#[test]
fn ordinary_streams_pass_through_unheld_and_unchanged() {
    let redactor = shapes::redactor();
    let now = std::time::Instant::now();
    let mut s = StreamRedactor::new(redactor.clone(), std::time::Duration::from_millis(100));
    for i in 0..50_000u64 {
        let line = format!("{i} some ordinary output line with words\n");
        let out = s.push(i + 1, shapes::chunk(&line, ChunkStream::Stdout), now);
        assert_eq!(
            out,
            vec![flightdeck_protocol::SeqEvent { seq: i + 1, event: shapes::chunk(&line, ChunkStream::Stdout) }]
        );
    }
    let paragraph = "Here is a long paragraph of assistant prose that goes on without a newline for quite a while, with code like let x = foo.bar(); and words. ".repeat(40);
    let mut s = StreamRedactor::new(redactor, std::time::Duration::from_millis(100));
    let mut out = Vec::new();
    let mut seq = 0;
    for piece in paragraph.as_bytes().chunks(12) {
        seq += 1;
        out.extend(s.push(seq, shapes::chunk(std::str::from_utf8(piece).unwrap(), ChunkStream::Assistant), now));
    }
    out.extend(s.finish());
    assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=seq).collect::<Vec<_>>());
    let joined: String = out
        .iter()
        .map(|e| match &e.event {
            TaskEvent::Chunk { text, .. } => text.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(joined, paragraph);
}

/// Secrets that outside tests printed and that reached the relay before the maintained rules:
/// an age key, a Telegram bot token, a Docker `config.json` login.
#[test]
fn the_shapes_that_once_reached_the_relay_are_masked() {
    let age = "AGE-SECRET-KEY-1QQPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQPZRY9X8GF2TVDW0S3JN54KHC";
    let telegram = "5913827461:AAH4kGz0w9qL3yN7bV2xC8mR5tJ1pD6sE0f";
    let cases = [
        (format!("# created: now\n{age}\n"), "# created: now\n[REDACTED:age-secret-key]\n".to_string()),
        (format!("bot {telegram} ready"), "bot [REDACTED:telegram-bot-token] ready".to_string()),
        (format!("TELEGRAM_BOT_TOKEN={telegram}"), "TELEGRAM_BOT_TOKEN=[REDACTED:telegram-bot-token]".to_string()),
        (
            r#"{"auths": {"ghcr.io": {"auth": "ZGV2LXVzZXI6czNjcjN0LXBhc3N3MHJk"}}}"#.to_string(),
            r#"{"auths": {"ghcr.io": {"auth": "[REDACTED:docker-auth]"}}}"#.to_string(),
        ),
        (
            "\t\t\t\"auth\": \"cm9ib3Q6ZXhhbXBsZS10b2tlbi12YWx1ZQ==\"".to_string(),
            "\t\t\t\"auth\": \"[REDACTED:docker-auth]\"".to_string(),
        ),
    ];
    let r = Redactor::new();
    for (input, want) in cases {
        assert_eq!(r.redact(&input), want, "{input}");
    }
    // Inside a tool's JSON input too.
    let params = json!({"auths": {"ghcr.io": {"auth": "ZGV2LXVzZXI6czNjcjN0LXBhc3N3MHJk"}}});
    assert_eq!(r.redact_json(&params), json!({"auths": {"ghcr.io": {"auth": "[REDACTED:docker-auth]"}}}));
}

/// A text that matches a regex, made from its syntax tree with a small random generator (a
/// different text per seed): printable ASCII where a class allows it, every repetition a
/// random count up to 40 past its minimum.
mod sample {
    use regex_syntax::hir::{Class, Hir, HirKind};

    pub(super) struct Generator(u64);

    impl Generator {
        pub(super) fn new(seed: u64) -> Generator {
            Generator(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        /// A printable byte of `ranges` (inclusive) if it has one, else any of its bytes.
        fn byte_of(&mut self, ranges: &[(u32, u32)]) -> Vec<u8> {
            let printable: Vec<(u32, u32)> = ranges
                .iter()
                .filter_map(|(a, b)| {
                    let (a, b) = ((*a).max(0x21), (*b).min(0x7e));
                    (a <= b).then_some((a, b))
                })
                .collect();
            let pool = if printable.is_empty() { ranges.to_vec() } else { printable };
            let total: u32 = pool.iter().map(|(a, b)| b - a + 1).sum();
            let mut at = self.below(total as usize) as u32;
            for (a, b) in pool {
                if at <= b - a {
                    let c = char::from_u32(a + at).unwrap_or('x');
                    return c.to_string().into_bytes();
                }
                at -= b - a + 1;
            }
            b"x".to_vec()
        }

        pub(super) fn generate(&mut self, hir: &Hir, out: &mut Vec<u8>) {
            match hir.kind() {
                HirKind::Empty | HirKind::Look(_) => {}
                HirKind::Literal(literal) => out.extend_from_slice(&literal.0),
                HirKind::Class(Class::Bytes(class)) => {
                    let ranges: Vec<(u32, u32)> =
                        class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect();
                    out.extend(self.byte_of(&ranges));
                }
                HirKind::Class(Class::Unicode(class)) => {
                    let ranges: Vec<(u32, u32)> =
                        class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect();
                    out.extend(self.byte_of(&ranges));
                }
                HirKind::Repetition(rep) => {
                    let max = rep.max.unwrap_or(rep.min + 40).min(rep.min + 40);
                    let count = rep.min as usize + self.below((max - rep.min) as usize + 1);
                    for _ in 0..count {
                        self.generate(&rep.sub, out);
                    }
                }
                HirKind::Capture(capture) => self.generate(&capture.sub, out),
                HirKind::Concat(all) => all.iter().for_each(|h| self.generate(h, out)),
                HirKind::Alternation(any) => {
                    let pick = self.below(any.len());
                    self.generate(&any[pick], out);
                }
            }
        }
    }
}

/// Every rule of gitleaks' set that is used gets a sample of its own, generated from its regex
/// until one is a finding of that rule (its keyword, entropy and allowlists included); each
/// such sample is masked by the redactor as a whole (whichever rule names the mask). The rules
/// the set skips are counted, each with its reason.
#[test]
fn every_maintained_rule_masks_a_sample_of_its_own() {
    use super::gitleaks::RULES;
    let rules = &*RULES;
    for (id, why) in &rules.skipped {
        println!("gitleaks rule {id} skipped: {why}");
    }
    assert!(rules.len() >= 200, "{} rules used", rules.len());
    assert!(
        rules.skipped.iter().all(|(_, why)| !why.starts_with("does not compile")),
        "a rule that does not compile: {:?}",
        rules.skipped
    );
    assert_eq!(rules.skipped.len(), 5, "skipped: {:?}", rules.skipped);
    let redactor = Redactor::new();
    let mut failures = Vec::new();
    for rule in &rules.rules {
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(&format!("(?-u:{})", rule.source))
            .or_else(|_| regex_syntax::parse(&rule.source))
            .unwrap();
        let found = (0..500u64).find_map(|seed| {
            let mut text = Vec::new();
            sample::Generator::new(seed + 1).generate(&hir, &mut text);
            let text = String::from_utf8(text).ok()?;
            // A rule whose keyword its regex does not spell out (`.` for a dot, another
            // spelling) finds its secret once the keyword is near, as in a real text.
            let texts = std::iter::once(text.clone()).chain(rule.keywords.iter().map(|k| format!("{k} {text}")));
            texts.into_iter().find_map(|text| {
                let mut spans = Vec::new();
                rules.find(text.as_bytes(), 0, &mut spans);
                let span = spans.into_iter().find(|s| s.kind == rule.id.as_str())?;
                Some((text.clone(), text[span.start..span.end].to_string()))
            })
        });
        let Some((text, secret)) = found else {
            failures.push(format!("{}: no sample found of /{}/", rule.id, rule.source));
            continue;
        };
        let masked = redactor.redact(&text);
        if masked.contains(&secret) || !masked.contains("[REDACTED:") {
            failures.push(format!("{}: {text:?} became {masked:?}", rule.id));
        }
    }
    assert!(failures.is_empty(), "{} of {} rules:\n{}", failures.len(), rules.len(), failures.join("\n"));
}

#[test]
fn go_regexes_are_read_as_go_reads_them() {
    use super::gitleaks::translate;
    let table = [
        (r"^\$(?:\d+|{\d+})$", r"^\$(?:\d+|\{\d+})$"),
        (r"^\{\{[ \t]*[\w ().|]+[ \t]*}}$", r"^\{\{[ \t]*[\w ().|]+[ \t]*}}$"),
        (r"a{2}b{2,}c{2,5}", r"a{2}b{2,}c{2,5}"),
        (r"[{}]{1,3}x{", r"[{}]{1,3}x\{"),
        (r"[[:alnum:]{]{4}", r"[[:alnum:]{]{4}"),
    ];
    for (go, rust) in table {
        assert_eq!(translate(go), rust, "{go}");
    }
}
