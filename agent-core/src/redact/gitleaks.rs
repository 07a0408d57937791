//! The rules of gitleaks' default configuration (a maintained set of secret shapes: regexes with
//! keywords and entropy), read as data from the vendored `gitleaks/gitleaks.toml` at first use.
//! See `gitleaks/README.md` for the version and how to update it.
//!
//! How a rule is applied, as gitleaks applies it to a file's text:
//! - its keywords are a prefilter: a rule with keywords runs only on a text that contains one of
//!   them (ASCII case-insensitive); a rule without runs on every text;
//! - its secret is the capture group `secretGroup`, else the first non-empty group, else the
//!   whole match; only the secret is masked (`[REDACTED:<rule id>]`), its context stays;
//! - with an `entropy`, the secret's Shannon entropy must be above it (and a `generic-*` secret
//!   must hold a digit);
//! - a secret that the rule's allowlists or the global allowlist allow (regexes on the secret,
//!   the match or the line; stopwords in the secret) is left alone. Allowlist paths and commits
//!   do not apply here: an allowlist that needs them (`condition = "AND"`) never allows.
//!
//! Skipped, each with its reason in [`Rules::skipped`]: a rule with no regex (it finds files by
//! name), a rule restricted to some files by `path` (here there is no file), a regex Rust's
//! `regex` cannot compile (Go's RE2 and Rust's regex share their syntax, so none at this
//! version).
//!
//! These rules find whole secrets in a text ([`Redactor::scan`](super::Redactor::scan)); they
//! are not part of the stream engine's hold rule (its lazy DFA holds the project's own
//! patterns), so in a task's stream a secret only these rules know is masked from the chunk it
//! completes in. The project's own patterns stay first: where both find a secret, theirs names
//! the mask.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use super::patterns::Span;

/// The gitleaks release the vendored rules come from.
pub const VERSION: &str = "v8.30.1";

const CONFIG: &str = include_str!("gitleaks/gitleaks.toml");

/// The vendored rules, compiled once per process.
pub(crate) static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let rules = Rules::parse(CONFIG).expect("the vendored gitleaks.toml parses");
    tracing::debug!(version = VERSION, used = rules.len(), skipped = ?rules.skipped, "gitleaks rules");
    rules
});

#[derive(Deserialize)]
struct ConfigToml {
    #[serde(default)]
    allowlist: Option<AllowlistToml>,
    #[serde(default)]
    allowlists: Vec<AllowlistToml>,
    #[serde(default)]
    rules: Vec<RuleToml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleToml {
    id: String,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allowlists: Vec<AllowlistToml>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AllowlistToml {
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
}

/// What an allowlist's regexes look at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Secret,
    Match,
    Line,
}

struct Allowlist {
    /// `condition = "AND"`: every criterion it has must hold.
    all: bool,
    target: Target,
    regexes: Vec<Regex>,
    stopwords: Option<AhoCorasick>,
    /// It has paths or commits, which never hold for a text that is not a file.
    needs_a_file: bool,
}

impl Allowlist {
    fn compile(toml: &AllowlistToml) -> Result<Allowlist, String> {
        let regexes = toml.regexes.iter().map(|r| compile(r)).collect::<Result<Vec<_>, _>>()?;
        let stopwords = if toml.stopwords.is_empty() {
            None
        } else {
            let words: Vec<String> = toml.stopwords.iter().map(|w| w.to_ascii_lowercase()).collect();
            Some(AhoCorasick::new(&words).map_err(|e| e.to_string())?)
        };
        Ok(Allowlist {
            all: toml.condition.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("and")),
            target: match toml.regex_target.as_deref() {
                Some("match") => Target::Match,
                Some("line") => Target::Line,
                _ => Target::Secret,
            },
            regexes,
            stopwords,
            needs_a_file: !toml.paths.is_empty() || !toml.commits.is_empty(),
        })
    }

    fn allows(&self, secret: &[u8], whole: &[u8], line: &[u8]) -> bool {
        let target = match self.target {
            Target::Secret => secret,
            Target::Match => whole,
            Target::Line => line,
        };
        let regex = (!self.regexes.is_empty()).then(|| self.regexes.iter().any(|r| r.is_match(target)));
        let stopword = self.stopwords.as_ref().map(|words| words.is_match(&secret.to_ascii_lowercase()));
        if self.all {
            !self.needs_a_file
                && (regex.is_some() || stopword.is_some())
                && regex != Some(false)
                && stopword != Some(false)
        } else {
            regex == Some(true) || stopword == Some(true)
        }
    }
}

/// One rule, compiled.
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) regex: Regex,
    /// The source regex as the config file has it (for tests that generate samples).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) source: String,
    secret_group: Option<usize>,
    pub(crate) entropy: Option<f64>,
    pub(crate) keywords: Vec<String>,
    allowlists: Vec<Allowlist>,
}

impl Rule {
    /// The secret of one match (see the module docs), if it is one.
    fn secret<'t>(
        &self,
        caps: &regex::bytes::Captures<'t>,
        text: &'t [u8],
        global: &[Allowlist],
    ) -> Option<regex::bytes::Match<'t>> {
        let whole = caps.get(0)?;
        let secret = match self.secret_group {
            Some(group) => caps.get(group)?,
            None => (1..caps.len()).find_map(|g| caps.get(g).filter(|m| !m.is_empty())).unwrap_or(whole),
        };
        if secret.is_empty() {
            return None;
        }
        let bytes = secret.as_bytes();
        if let Some(min) = self.entropy {
            if shannon_entropy(bytes) <= min {
                return None;
            }
            if self.id.starts_with("generic") && !bytes.iter().any(u8::is_ascii_digit) {
                return None;
            }
        }
        let line_start = text[..whole.start()].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let line_end = text[whole.end()..].iter().position(|b| *b == b'\n').map_or(text.len(), |i| whole.end() + i);
        let line = &text[line_start..line_end];
        let allowed = self.allowlists.iter().chain(global).any(|a| a.allows(bytes, whole.as_bytes(), line));
        (!allowed).then_some(secret)
    }
}

/// Every usable rule of the config, and what was skipped.
pub(crate) struct Rules {
    pub(crate) rules: Vec<Rule>,
    /// `(rule id, why)` of every rule not used.
    pub(crate) skipped: Vec<(String, String)>,
    global: Vec<Allowlist>,
    /// Every keyword of every rule; `keyword_rules[pattern]` the rules it announces.
    keywords: AhoCorasick,
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they run on every text.
    always: Vec<usize>,
}

/// A Go regex of the config compiled with Rust's `regex`: ASCII classes (`\w`, `\d`, `\s` are
/// ASCII in Go's RE2 too), and more room than the default size limit (a few rules repeat big
/// classes many times).
fn compile(pattern: &str) -> Result<Regex, String> {
    let pattern = translate(pattern);
    let build = |p: &str| RegexBuilder::new(p).size_limit(64 << 20).dfa_size_limit(16 << 20).build();
    build(&format!("(?-u:{pattern})")).or_else(|_| build(&pattern)).map_err(|e| e.to_string())
}

/// Go's RE2 syntax as Rust's `regex` reads it. The one difference the rules meet: Go takes a
/// `{` that does not begin a repetition (`{n}`, `{n,}`, `{n,m}`) as a literal, Rust wants it
/// escaped.
pub(crate) fn translate(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                let end = (i + 2).min(bytes.len());
                out.push_str(&pattern[i..end]);
                i = end;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                // A `]` or `^]` right after the opening is a literal.
                if bytes.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    out.push(']');
                    i += 1;
                }
                continue;
            }
            b'[' if in_class && bytes.get(i + 1) == Some(&b':') => {
                // `[:alpha:]` inside a class.
                if let Some(end) = pattern[i + 2..].find(":]") {
                    out.push_str(&pattern[i..i + 2 + end + 2]);
                    i += 2 + end + 2;
                    continue;
                }
            }
            b']' if in_class => in_class = false,
            b'{' if !in_class && !is_repetition(&pattern[i..]) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch = pattern[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether `text` (starting at a `{`) begins a counted repetition.
fn is_repetition(text: &str) -> bool {
    let Some(end) = text.find('}') else { return false };
    let inner = &text[1..end];
    let (min, max) = match inner.split_once(',') {
        Some((min, max)) => (min, Some(max)),
        None => (inner, None),
    };
    !min.is_empty()
        && min.bytes().all(|b| b.is_ascii_digit())
        && max.is_none_or(|m| m.bytes().all(|b| b.is_ascii_digit()))
}

impl Rules {
    fn parse(text: &str) -> Result<Rules, String> {
        let config: ConfigToml = toml::from_str(text).map_err(|e| e.to_string())?;
        let global =
            config.allowlist.iter().chain(&config.allowlists).map(Allowlist::compile).collect::<Result<Vec<_>, _>>()?;
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        for rule in config.rules {
            let Some(source) = rule.regex.clone() else {
                skipped.push((rule.id, "no regex: it finds files by name".to_string()));
                continue;
            };
            if rule.path.is_some() {
                skipped.push((rule.id, "only for files whose path matches".to_string()));
                continue;
            }
            let compiled = compile(&source).and_then(|regex| {
                let allowlists = rule.allowlists.iter().map(Allowlist::compile).collect::<Result<Vec<_>, _>>()?;
                Ok((regex, allowlists))
            });
            match compiled {
                Ok((regex, allowlists)) => rules.push(Rule {
                    id: rule.id,
                    regex,
                    source,
                    secret_group: rule.secret_group.filter(|g| *g > 0),
                    entropy: rule.entropy.filter(|e| *e > 0.0),
                    keywords: rule.keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
                    allowlists,
                }),
                Err(err) => skipped.push((rule.id, format!("does not compile: {err}"))),
            }
        }
        let mut words: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.keywords.is_empty() {
                always.push(i);
            }
            for keyword in &rule.keywords {
                match words.iter().position(|w| w == keyword) {
                    Some(at) => keyword_rules[at].push(i),
                    None => {
                        words.push(keyword.clone());
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| e.to_string())?;
        Ok(Rules { rules, skipped, global, keywords, keyword_rules, always })
    }

    /// Every secret the rules find in `text`, pushed to `out` (ranks start at `rank`).
    pub(crate) fn find(&'static self, text: &[u8], rank: usize, out: &mut Vec<Span>) {
        let mut run = vec![false; self.rules.len()];
        for i in &self.always {
            run[*i] = true;
        }
        for found in self.keywords.find_overlapping_iter(text) {
            for i in &self.keyword_rules[found.pattern().as_usize()] {
                run[*i] = true;
            }
        }
        for (i, rule) in self.rules.iter().enumerate().filter(|(i, _)| run[*i]) {
            for caps in rule.regex.captures_iter(text) {
                if let Some(secret) = rule.secret(&caps, text, &self.global) {
                    out.push(Span {
                        start: secret.start(),
                        end: secret.end(),
                        kind: Cow::Borrowed(rule.id.as_str()),
                        rank: rank + i,
                    });
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }
}

/// Shannon entropy in bits per byte, as gitleaks computes it (per character of ASCII text).
pub(crate) fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    data.iter().for_each(|b| counts[*b as usize] += 1);
    let len = data.len() as f64;
    counts.iter().filter(|c| **c > 0).map(|c| *c as f64 / len).map(|p| -p * p.log2()).sum()
}
