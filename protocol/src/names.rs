//! Validation of user names and repo slugs: they appear in URLs, topics and file names.

/// Longest user name.
pub const MAX_USER_LEN: usize = 39;
/// Longest repo slug.
pub const MAX_REPO_LEN: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may contain only letters, digits, '-', '_' and '.'")]
    BadCharacter,
    #[error("must start with a letter or digit")]
    BadStart,
    #[error("must not be '.' or '..' or contain '..'")]
    Traversal,
}

fn check(name: &str, max: usize, allow_dot: bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong(max));
    }
    if name.contains("..") {
        return Err(NameError::Traversal);
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (allow_dot && c == '.');
    if !name.chars().all(ok) {
        return Err(NameError::BadCharacter);
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadStart);
    }
    Ok(())
}

/// A user name: 1 to 39 characters of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn validate_user(name: &str) -> Result<(), NameError> {
    check(name, MAX_USER_LEN, false)
}

/// A repo slug: 1 to 100 characters of `[A-Za-z0-9._-]`, starting with a letter or digit, no `..`.
pub fn validate_repo(slug: &str) -> Result<(), NameError> {
    check(slug, MAX_REPO_LEN, true)
}

/// An agent id: the same rules as a repo slug (host names fit).
pub fn validate_agent_id(id: &str) -> Result<(), NameError> {
    check(id, MAX_REPO_LEN, true)
}

/// Turns a directory name into a valid slug: other characters become '-', trimmed, bounded.
pub fn slugify(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut slug: String = trimmed.chars().take(MAX_REPO_LEN).collect();
    if slug.is_empty() {
        slug = "repo".to_string();
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("alice", Ok(())),
            ("a-b_c9", Ok(())),
            ("", Err(NameError::Empty)),
            ("a.b", Err(NameError::BadCharacter)),
            ("-x", Err(NameError::BadStart)),
            ("al/ice", Err(NameError::BadCharacter)),
            ("..", Err(NameError::Traversal)),
            (&"x".repeat(40), Err(NameError::TooLong(MAX_USER_LEN))),
        ];
        for (name, want) in cases {
            assert_eq!(&validate_user(name), want, "user {name:?}");
        }
        let repos: &[(&str, Result<(), NameError>)] = &[
            ("flightdeck", Ok(())),
            ("my.repo-2", Ok(())),
            ("..", Err(NameError::Traversal)),
            ("a..b", Err(NameError::Traversal)),
            (".hidden", Err(NameError::BadStart)),
            ("a b", Err(NameError::BadCharacter)),
            ("a%2f", Err(NameError::BadCharacter)),
        ];
        for (name, want) in repos {
            assert_eq!(&validate_repo(name), want, "repo {name:?}");
        }
    }

    #[test]
    fn slugify_makes_valid_slugs() {
        for raw in ["My Repo", "..", ".dotfiles", "a/b", "ünï", "x..y"] {
            let slug = slugify(raw);
            assert_eq!(validate_repo(&slug), Ok(()), "{raw:?} -> {slug:?}");
        }
        assert_eq!(slugify("My Repo"), "My-Repo");
    }
}
