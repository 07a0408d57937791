//! A `diff` event's unified patch, split for the Changes panel: one section per file, each line
//! with its kind (added, removed, hunk header, context). Pure, tested on the host.

use flightdeck_protocol::event::DiffFile;

/// What a patch line is, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Added,
    Removed,
    Hunk,
    /// `diff --git`, `index`, `---`, `+++` and mode lines.
    Meta,
    Context,
}

impl LineKind {
    pub fn class(self) -> &'static str {
        match self {
            LineKind::Added => "add",
            LineKind::Removed => "del",
            LineKind::Hunk => "hunk",
            LineKind::Meta => "meta",
            LineKind::Context => "ctx",
        }
    }
}

/// The kind of every line of one file's section (its header lines are `Meta` until the first
/// hunk; after that `+++`/`---` are content).
pub fn classify(section: &str) -> Vec<(LineKind, &str)> {
    let mut in_hunk = false;
    section
        .lines()
        .map(|line| {
            let kind = if line.starts_with("@@") {
                in_hunk = true;
                LineKind::Hunk
            } else if !in_hunk {
                LineKind::Meta
            } else if line.starts_with('+') {
                LineKind::Added
            } else if line.starts_with('-') {
                LineKind::Removed
            } else {
                LineKind::Context
            };
            (kind, line)
        })
        .collect()
}

/// Each file's part of `patch` (from its `diff --git` line to the next), in the order of
/// `files`; `None` for a file the patch has no text for (binary, or cut off by the cap).
pub fn sections<'a>(files: &[DiffFile], patch: &'a str) -> Vec<Option<&'a str>> {
    let mut starts: Vec<usize> = patch
        .match_indices("diff --git ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || patch.as_bytes()[i - 1] == b'\n')
        .collect();
    starts.push(patch.len());
    let parts: Vec<&str> = starts.windows(2).map(|w| &patch[w[0]..w[1]]).collect();
    files
        .iter()
        .map(|file| {
            let new = format!(" b/{}", file.path);
            parts.iter().copied().find(|part| part.lines().next().is_some_and(|head| head.ends_with(&new)))
        })
        .collect()
}

/// `+12 −3`-style totals of a diff.
pub fn totals(files: &[DiffFile]) -> (u64, u64) {
    files.iter().fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_protocol::event::DiffStatus;

    fn file(path: &str, status: DiffStatus, binary: bool) -> DiffFile {
        DiffFile { path: path.into(), old_path: None, status, additions: 1, deletions: 1, binary }
    }

    const PATCH: &str = "diff --git a/README.md b/README.md\nindex 1..2 100644\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n-# demo\n+# Demo\n+--- a rule\n keep\ndiff --git a/src/lib.rs b/src/lib.rs\nnew file mode 100644\n--- /dev/null\n+++ b/src/lib.rs\n@@ -0,0 +1 @@\n+fn main() {}\n";

    #[test]
    fn a_patch_splits_by_file_in_the_files_order() {
        let files = [
            file("src/lib.rs", DiffStatus::Added, false),
            file("logo.png", DiffStatus::Added, true),
            file("README.md", DiffStatus::Modified, false),
        ];
        let parts = sections(&files, PATCH);
        assert!(parts[0].unwrap().starts_with("diff --git a/src/lib.rs b/src/lib.rs\n"));
        assert!(parts[0].unwrap().ends_with("+fn main() {}\n"));
        assert_eq!(parts[1], None);
        assert!(parts[2].unwrap().ends_with(" keep\n"));
        assert_eq!(totals(&files), (3, 3));
    }

    #[test]
    fn lines_are_classified_for_colour() {
        let parts = sections(&[file("README.md", DiffStatus::Modified, false)], PATCH);
        let kinds: Vec<LineKind> = classify(parts[0].unwrap()).into_iter().map(|(k, _)| k).collect();
        use LineKind::*;
        assert_eq!(kinds, [Meta, Meta, Meta, Meta, Hunk, Removed, Added, Added, Context]);
    }
}
