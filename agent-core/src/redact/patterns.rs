//! The secret shapes and the two engines built from each set of them: `regex` finds whole
//! secrets (a `RegexSet` first says which shapes occur at all), and a lazy DFA over the same
//! patterns answers the streaming question "could the text from here on still become a secret
//! once more text arrives?".
//!
//! Every pattern is written in `regex`'s byte syntax with Unicode off (`(?-u)`), so both engines
//! read it the same way. A single-line shape never spans a newline and is at most
//! [`MAX_MATCH`] bytes long; private key blocks are the one multi-line shape and are found
//! by [`pem_blocks`], not by a pattern.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::bytes::{Regex, RegexSet};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind, PatternID};

/// The longest single-line secret, in bytes. A stream keeps at most this much released text of
/// the current line to find a secret that started there.
pub(crate) const MAX_MATCH: usize = 4096;

/// How many leading characters of a `.env` value may go out before the value is recognisable
/// (a stream that pauses right after them releases them; see the module docs of `redact`).
pub(crate) const ENV_LEAD_CHARS: usize = 2;

/// One built-in shape: `lead` (what announces the secret: a prefix such as `ghp_`, or a label
/// such as `AWS_SECRET=`), then `secret`, then `after` (context that must follow, not masked).
struct Shape {
    kind: &'static str,
    lead: &'static str,
    secret: &'static str,
    after: &'static str,
    /// Mask only `secret` and keep `lead` (a label, a URL's scheme and user) readable; otherwise
    /// the whole `lead` + `secret` becomes `[REDACTED:kind]`.
    keep_lead: bool,
    /// A test the secret must pass (entropy of generic values); the DFA ignores it, so a stream
    /// may hold text that finally is not masked, never the other way round.
    check: Option<fn(&[u8]) -> bool>,
}

const fn token(kind: &'static str, lead: &'static str, secret: &'static str, after: &'static str) -> Shape {
    Shape { kind, lead, secret, after, keep_lead: false, check: None }
}

const fn labelled(kind: &'static str, lead: &'static str, secret: &'static str) -> Shape {
    Shape { kind, lead, secret, after: "", keep_lead: true, check: None }
}

/// Word boundary, ASCII (the lazy DFA has no Unicode word boundary).
const B: &str = r"\b";

/// A label, then `=`, `:` or `:=` with optional quotes and spaces (env, YAML, JSON, TOML, Go).
macro_rules! label {
    ($names:literal) => {
        concat!(r#"(?i)\b[A-Za-z0-9_.\-]{0,60}"#, $names, r#"["']?[ \t]{0,8}(?::=|=|:)[ \t]{0,8}["']?"#)
    };
}

/// The built-in shapes, most specific first: where two overlap, the first one names the mask.
/// A prefix distinctive enough to mean a secret anywhere (`ghp_`, `sk-ant-`) needs no word
/// boundary before it, so `token%3Dghp_...` is found too; a short or common one (`sk-`, `AKIA`,
/// `hf_`) does (`disk-usage-...` is no OpenAI key).
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    vec![
        // A private key block's BEGIN line: only here so that a stream holds a half-printed
        // header; the block itself is found by `pem_blocks`.
        Shape {
            kind: PEM_KIND,
            lead: r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----",
            secret: "",
            after: "",
            keep_lead: false,
            check: None,
        },
        token("anthropic-key", r"sk-ant-", r"[A-Za-z0-9_\-]{20,300}", ""),
        token("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?", r"[A-Za-z0-9_\-]{20,300}", ""),
        token("stripe-key", r"\b[rs]k_live_", r"[A-Za-z0-9]{20,250}", ""),
        token("aws-access-key", r"\b(?:AKIA|ASIA|ABIA|ACCA)", r"[0-9A-Z]{16}", B),
        token("github-token", r"(?:ghp|gho|ghu|ghs|ghr)_", r"[A-Za-z0-9]{36,255}", B),
        token("github-token", r"github_pat_", r"[A-Za-z0-9_]{22,255}", B),
        token("gitlab-token", r"gl(?:pat|dt|ptt|rt|cbt)-", r"[A-Za-z0-9_\-.]{20,200}", ""),
        token("npm-token", r"\bnpm_", r"[A-Za-z0-9]{36}", B),
        token("pypi-token", r"pypi-", r"AgE[A-Za-z0-9_\-]{50,1000}", ""),
        token("slack-token", r"xox[abeprs]-", r"[A-Za-z0-9\-]{10,250}", ""),
        Shape {
            kind: "slack-webhook",
            lead: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/",
            secret: r"[A-Za-z0-9_/]{20,200}",
            after: "",
            keep_lead: true,
            check: None,
        },
        token("twilio-key", r"\b(?:SK|AC)", r"[0-9a-f]{32}", B),
        token("sendgrid-key", r"\bSG\.", r"[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{30,64}", ""),
        token("huggingface-token", r"\bhf_", r"[A-Za-z0-9]{30,40}", B),
        token("digitalocean-token", r"do[opr]_v1_", r"[a-f0-9]{64}", B),
        token("google-api-key", r"AIza", r"[0-9A-Za-z_\-]{35}", ""),
        token("age-secret-key", r"AGE-SECRET-KEY-1", r"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", ""),
        // `<bot id>:AA<33>`, with or without a label (gitleaks wants a `telegr...` label).
        token("telegram-bot-token", r"\b[0-9]{8,10}:AA", r"[A-Za-z0-9_\-]{33}", B),
        token(
            "jwt",
            r"\beyJ",
            r"[A-Za-z0-9_\-]{8,1500}\.eyJ[A-Za-z0-9_\-]{8,2000}\.[A-Za-z0-9_\-]{8,1000}",
            "",
        ),
        labelled("azure-storage-key", r"(?i)\bAccountKey=", r"[A-Za-z0-9+/]{40,100}={0,2}"),
        // A registry login in a Docker `config.json` (`"auths": {"host": {"auth": "<base64>"}}`).
        labelled("docker-auth", r#""auth"[ \t]{0,4}:[ \t]{0,4}""#, r"[A-Za-z0-9+/]{8,1000}={0,2}"),
        labelled("azure-sas", r"(?i)[?&;]sig=", r"[A-Za-z0-9%+/]{20,200}={0,2}"),
        labelled(
            "aws-secret-key",
            label!("(?:aws_?secret|secret_?access_?key|secretaccesskey|aws_?session_?token)[A-Za-z0-9_]{0,20}"),
            r"[A-Za-z0-9/+]{40}(?:[A-Za-z0-9/+=]{0,600})",
        ),
        Shape {
            kind: "bearer-token",
            lead: r"(?i)\bbearer[ \t]{1,4}",
            secret: r"[A-Za-z0-9_\-.~+/]{20,2000}={0,2}",
            after: "",
            keep_lead: true,
            check: Some(looks_secret),
        },
        labelled(
            "basic-auth",
            r#"(?i)\bauthorization["']?[ \t]{0,4}[:=][ \t]{0,4}["']?basic[ \t]{1,4}"#,
            r"[A-Za-z0-9+/]{8,1000}={0,2}",
        ),
        Shape {
            kind: "url-credentials",
            lead: r#"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s/:@"'<>]{0,100}:"#,
            secret: r#"[^\s/:@"'<>]{1,200}"#,
            after: "@",
            keep_lead: true,
            check: None,
        },
        Shape {
            kind: "secret",
            lead: label!(
                "(?:secret(?:_?key)?|token|password|passwd|passphrase|api_?key|apikey|access_?key|auth_?key|private_?key|credentials?)"
            ),
            secret: r#"[^\s"'`,;<>(){}\[\]]{8,300}"#,
            after: "",
            keep_lead: true,
            check: Some(looks_secret),
        },
    ]
});

pub(crate) const PEM_KIND: &str = "private-key";

static PEM_BEGIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?-u){}", SHAPES[0].lead)).expect("valid pattern"));
static PEM_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----").expect("valid pattern")
});

/// Where a lead may start instead of a word boundary: right after a colour code (`ESC[32m`),
/// whose `m` would otherwise hide the boundary.
const AFTER_COLOUR: &str = r"(?:\b|\x1b\[[0-9;]{0,20}m)";

/// The built-in shapes, compiled once per process.
pub(crate) static BUILTIN: LazyLock<Compiled> = LazyLock::new(|| {
    let patterns = SHAPES
        .iter()
        .map(|s| {
            let lead = s.lead.replacen(r"\b", AFTER_COLOUR, 1);
            (s, lead)
        })
        .map(|(s, lead)| PatternSource {
            kind: Cow::Borrowed(s.kind),
            regex: format!("(?-u)(?P<m>(?:{lead})(?P<s>{})){}", s.secret, s.after),
            lead: Lead::Pattern(format!("(?-u)^(?:{lead})")),
            keep_lead: s.keep_lead,
            check: s.check,
            pem_begin: s.kind == PEM_KIND,
        })
        .collect();
    Compiled::new(patterns).expect("the built-in patterns are valid")
});

/// A generic `*_SECRET=...` value is masked when it is long and mixed enough to be a key or a
/// password, not a word, a placeholder or a reference to another variable.
pub(crate) fn looks_secret(value: &[u8]) -> bool {
    if value.len() < 8 || matches!(value[0], b'$' | b'%' | b'<' | b'{' | b'*') {
        return false;
    }
    // A name or a path in code (`process.env.API_KEY`, `settings.secret_key`), not a value.
    if value.iter().all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.')) {
        return false;
    }
    // A file's path (`SSH_PRIVATE_KEY=~/.ssh/id_ed25519`), not its content.
    let path_start = [&b"/"[..], b"~/", b"./", b"../"].iter().any(|p| value.starts_with(p));
    let slashes = value.iter().filter(|b| **b == b'/').count();
    if path_start && slashes >= 2 && value.iter().all(|b| b.is_ascii_alphanumeric() || b"_./-~".contains(b)) {
        return false;
    }
    let lower = value.iter().any(u8::is_ascii_lowercase);
    let upper = value.iter().any(u8::is_ascii_uppercase);
    let digit = value.iter().any(u8::is_ascii_digit);
    let other = value.iter().any(|b| !b.is_ascii_alphanumeric());
    let classes = [lower, upper, digit, other].iter().filter(|c| **c).count();
    let distinct = {
        let mut seen = [false; 256];
        value.iter().for_each(|b| seen[*b as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    distinct >= 5 && ((digit && (lower || upper)) || classes >= 3 || (value.len() >= 20 && classes >= 2))
}

/// A pattern before compilation.
pub(crate) struct PatternSource {
    pub(crate) kind: Cow<'static, str>,
    /// The whole shape; group `m` is lead + secret, group `s` the secret.
    pub(crate) regex: String,
    pub(crate) lead: Lead,
    pub(crate) keep_lead: bool,
    pub(crate) check: Option<fn(&[u8]) -> bool>,
    pub(crate) pem_begin: bool,
}

/// What announces a secret and may go out alone: a pattern (`^`-anchored), or a number of
/// characters (for `.env` values, which have no prefix of their own).
pub(crate) enum Lead {
    Pattern(String),
    Chars(usize),
}

enum CompiledLead {
    Pattern(Regex),
    Chars(usize),
}

struct Pattern {
    kind: Cow<'static, str>,
    regex: Regex,
    lead: CompiledLead,
    keep_lead: bool,
    check: Option<fn(&[u8]) -> bool>,
    pem_begin: bool,
}

/// A set of patterns, compiled for both engines.
pub(crate) struct Compiled {
    patterns: Vec<Pattern>,
    set: RegexSet,
    dfa: DFA,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("patterns", &self.patterns.len()).finish_non_exhaustive()
    }
}

/// A region of text to mask, in byte offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) kind: Cow<'static, str>,
    /// Lower wins when two spans start at the same place.
    pub(crate) rank: usize,
}

impl Compiled {
    pub(crate) fn new(sources: Vec<PatternSource>) -> Result<Compiled, String> {
        let regexes: Vec<&str> = sources.iter().map(|p| p.regex.as_str()).collect();
        let set = RegexSet::new(&regexes).map_err(|e| e.to_string())?;
        let dfa = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All).starts_for_each_pattern(true))
            .syntax(syntax::Config::new().utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .build_many(&regexes)
            .map_err(|e| e.to_string())?;
        let patterns = sources
            .into_iter()
            .map(|p| {
                Ok(Pattern {
                    regex: Regex::new(&p.regex).map_err(|e| e.to_string())?,
                    lead: match p.lead {
                        Lead::Pattern(lead) => CompiledLead::Pattern(Regex::new(&lead).map_err(|e| e.to_string())?),
                        Lead::Chars(n) => CompiledLead::Chars(n),
                    },
                    kind: p.kind,
                    keep_lead: p.keep_lead,
                    check: p.check,
                    pem_begin: p.pem_begin,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Compiled { patterns, set, dfa })
    }

    pub(crate) fn len(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn create_cache(&self) -> Cache {
        self.dfa.create_cache()
    }

    /// Every whole secret in `text`, pushed to `out` (ranks start at `rank`).
    pub(crate) fn find(&self, text: &[u8], rank: usize, out: &mut Vec<Span>) {
        for i in self.set.matches(text).iter() {
            let p = &self.patterns[i];
            if p.pem_begin {
                continue;
            }
            for caps in p.regex.captures_iter(text) {
                let (Some(whole), Some(secret)) = (caps.name("m"), caps.name("s")) else { continue };
                if p.check.is_some_and(|check| !check(secret.as_bytes())) {
                    continue;
                }
                let masked = if p.keep_lead { secret } else { whole };
                if masked.is_empty() {
                    continue;
                }
                out.push(Span { start: masked.start(), end: masked.end(), kind: p.kind.clone(), rank: rank + i });
            }
        }
    }

    /// Whether some pattern (`None`: any) could match from `start` once more text is appended
    /// to `text`: the DFA, anchored at `start`, is still alive after the last byte and a match
    /// there could still grow or change.
    pub(crate) fn viable(&self, cache: &mut Cache, text: &[u8], start: usize, pattern: Option<usize>) -> bool {
        let anchored = match pattern {
            Some(i) => Anchored::Pattern(PatternID::must(i)),
            None => Anchored::Yes,
        };
        let config = start::Config::new().anchored(anchored).look_behind(start.checked_sub(1).map(|i| text[i]));
        // Any error of the lazy DFA (it never gives up with this configuration) counts as
        // "viable": holding a chunk is the safe answer.
        let Ok(mut state) = self.dfa.start_state(cache, &config) else { return true };
        for &byte in &text[start..] {
            match self.dfa.next_state(cache, state, byte) {
                Ok(next) if next.is_dead() => return false,
                Ok(next) if next.is_quit() => return true,
                Ok(next) => state = next,
                Err(_) => return true,
            }
        }
        if !state.is_match() {
            return true;
        }
        // A match ends right before the end; it matters only if one more byte can extend it.
        (0..=255u8).any(|byte| self.dfa.next_state(cache, state, byte).map_or(true, |next| !next.is_dead()))
    }

    /// For a secret that may start at `start` and is cut off at the end of `text`: the mask it
    /// needs if it were released now, one per pattern still viable there whose lead is complete
    /// and followed by at least one byte of secret. A text still inside every lead (`gh`,
    /// `ghp_`, `AWS_SECRET=`) needs none.
    pub(crate) fn partial(&self, cache: &mut Cache, text: &[u8], start: usize, rank: usize, out: &mut Vec<Span>) {
        for (i, p) in self.patterns.iter().enumerate() {
            if !self.viable(cache, text, start, Some(i)) {
                continue;
            }
            let rest = &text[start..];
            let lead = match &p.lead {
                CompiledLead::Pattern(re) => re.find(rest).map(|m| m.end()),
                CompiledLead::Chars(n) => {
                    let s = String::from_utf8_lossy(rest);
                    s.char_indices().nth(*n).map(|(at, _)| at)
                }
            };
            let Some(lead) = lead.filter(|l| *l < rest.len()) else { continue };
            let from = if p.keep_lead { start + lead } else { start };
            out.push(Span { start: from, end: text.len(), kind: p.kind.clone(), rank: rank + i });
        }
    }
}

/// Private key blocks in `text`: `(start, Some(end))` from a `BEGIN` line to its `END` line,
/// `(start, None)` for one still open at the end. `open`: the text starts inside a block.
pub(crate) fn pem_blocks(text: &[u8], open: bool) -> Vec<(usize, Option<usize>)> {
    let mut blocks = Vec::new();
    let mut at = 0;
    let mut begin = if open { Some(0) } else { None };
    loop {
        match begin {
            Some(start) => match PEM_END.find_at(text, at) {
                Some(end) => {
                    blocks.push((start, Some(end.end())));
                    at = end.end();
                    begin = None;
                }
                None => {
                    blocks.push((start, None));
                    return blocks;
                }
            },
            None => match PEM_BEGIN.find_at(text, at) {
                Some(header) => {
                    begin = Some(header.start());
                    at = header.end();
                }
                None => return blocks,
            },
        }
    }
}
