//! Discovery of git working trees under a directory (`--scan DIR`).

use std::path::{Path, PathBuf};

/// How deep [`discover_repos`] looks by default: `DIR/a/b/c` is depth 3.
pub const DEFAULT_SCAN_DEPTH: usize = 3;

/// Directories never entered: they hold dependencies or build output, not the user's repos.
const SKIPPED: &[&str] = &["node_modules", "target", "vendor", "__pycache__"];

/// Every git working tree at `dir` or below it, down to `max_depth` levels, sorted.
///
/// A directory is a working tree when it holds a `.git` (directory, or file for linked worktrees
/// and submodules). The search does not enter working trees (nested repos and submodules belong
/// to their parent), hidden directories, symlinks, or dependency folders. Unreadable directories
/// are skipped.
pub fn discover_repos(dir: &Path, max_depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    visit(dir, 0, max_depth, &mut found);
    found.sort();
    found
}

fn visit(dir: &Path, depth: usize, max_depth: usize, found: &mut Vec<PathBuf>) {
    if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
        found.push(dir.to_path_buf());
        return;
    }
    if depth >= max_depth {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if !kind.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || SKIPPED.contains(&name.as_ref()) {
            continue;
        }
        visit(&entry.path(), depth + 1, max_depth, found);
    }
}
