//! The working tree an ACP agent may touch through the client's methods (SPEC 14): its file
//! reads, file writes and terminals are served inside the task's repo or worktree only.
//!
//! A path is resolved the way the kernel will resolve it (symlinks followed, `..` applied) and
//! must land inside the canonical root; a path that does not exist yet (a new file) must have an
//! existing ancestor inside the root and nothing but plain names below it.

use std::path::{Component, Path, PathBuf};

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("{path} is outside the task's working tree ({root})")]
    Outside { path: String, root: String },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The canonical root of a task's working tree.
#[derive(Debug, Clone)]
pub struct WorkingTree {
    root: PathBuf,
}

impl WorkingTree {
    pub fn new(dir: &Path) -> std::io::Result<WorkingTree> {
        Ok(WorkingTree { root: dir.canonicalize()? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` really is, when that is inside the tree. A relative path is taken from the
    /// root (ACP asks for absolute paths; being lenient costs nothing here).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, PathRefused> {
        let given = Path::new(path);
        let joined = if given.is_absolute() { given.to_path_buf() } else { self.root.join(given) };
        let outside = || PathRefused::Outside { path: path.to_string(), root: self.root.display().to_string() };
        // The longest existing ancestor, canonical; the rest must be plain names.
        let mut existing = joined.as_path();
        let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
        let canonical = loop {
            match existing.canonicalize() {
                Ok(canonical) => break canonical,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    let Some(parent) = existing.parent() else { return Err(outside()) };
                    match existing.components().next_back() {
                        Some(Component::Normal(name)) => rest.push(name),
                        // `..` or `.` after a missing directory: nothing to resolve it against.
                        _ => return Err(outside()),
                    }
                    existing = parent;
                }
                Err(err) => return Err(PathRefused::Unreadable { path: path.to_string(), reason: err.to_string() }),
            }
        };
        if !canonical.starts_with(&self.root) {
            return Err(outside());
        }
        Ok(rest.into_iter().rev().fold(canonical, |p, name| p.join(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_tree_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), root.join("link-out")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(root.join("src/main.rs"), root.join("link-in")).unwrap();
        let tree = WorkingTree::new(&root).unwrap();
        let canon = tree.root().to_path_buf();
        let r = |p: &str| tree.resolve(p).map_err(|e| matches!(e, PathRefused::Outside { .. }));
        let inside = |p: &str| format!("{}/{p}", root.display());
        let cases: Vec<(String, Result<PathBuf, bool>)> = vec![
            (inside("src/main.rs"), Ok(canon.join("src/main.rs"))),
            ("src/main.rs".into(), Ok(canon.join("src/main.rs"))),
            (inside("new/dir/file.txt"), Ok(canon.join("new/dir/file.txt"))),
            (inside("link-in"), Ok(canon.join("src/main.rs"))),
            (inside("src/../src/main.rs"), Ok(canon.join("src/main.rs"))),
            (inside("../secret.txt"), Err(true)),
            (inside("src/../../secret.txt"), Err(true)),
            (inside("missing/../../secret.txt"), Err(true)),
            (inside("link-out"), Err(true)),
            (inside("dir-out/secret.txt"), Err(true)),
            (inside("dir-out/new.txt"), Err(true)),
            ("/etc/passwd".into(), Err(true)),
            ("../secret.txt".into(), Err(true)),
            (root.display().to_string(), Ok(canon.clone())),
        ];
        for (path, want) in cases {
            assert_eq!(r(&path), want, "{path}");
        }
    }
}
