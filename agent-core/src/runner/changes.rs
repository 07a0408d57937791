//! What a task changed in its working tree: the `diff` event (SPEC 12).
//!
//! When a task starts, [`Baseline::take`] notes the commit it starts from and the content
//! hash of every path that already differed from it (a task may start in a dirty tree). When
//! the task ends, [`Baseline::diff`] compares that commit with the working tree (git's own
//! `git diff <commit>`, with untracked files and renames), leaving out the paths that were
//! already changed and are byte for byte as they were: what remains is what the task did.
//! A path the task changed further is shown against the commit. Nothing is written to the
//! repository (no objects, no index). Blocking: call from the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flightdeck_protocol::event::{DiffFile, DiffStatus, MAX_DIFF_PATCH_BYTES};
use flightdeck_protocol::TaskEvent;
use git2::{Delta, DiffFindOptions, DiffOptions, ObjectType, Oid, Patch, Repository, StatusOptions};

/// The most files one `diff` event lists; past it the event says `truncated`.
pub const MAX_DIFF_FILES: usize = 5_000;

/// Where a task started from.
#[derive(Debug, Clone)]
pub struct Baseline {
    dir: PathBuf,
    /// `HEAD` when the task started; `None` in a repository with no commit yet.
    commit: Option<Oid>,
    /// Paths that differed from `commit` at the start, with their content hash then (`None`:
    /// absent or unreadable).
    dirty: HashMap<String, Option<Oid>>,
}

impl Baseline {
    /// Notes the starting point of a task that runs in `dir` (a repository or a worktree).
    pub fn take(dir: &Path) -> Result<Baseline, git2::Error> {
        let repo = Repository::open(dir)?;
        let workdir = workdir(&repo)?;
        let commit = repo.head().ok().and_then(|h| h.peel_to_commit().ok()).map(|c| c.id());
        let mut opts = StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
        let mut dirty = HashMap::new();
        for entry in repo.statuses(Some(&mut opts))?.iter() {
            if let Some(path) = entry.path() {
                dirty.insert(path.to_string(), content_hash(&workdir, path));
            }
        }
        Ok(Baseline { dir: dir.to_path_buf(), commit, dirty })
    }

    /// What changed since [`Baseline::take`]: a `diff` event, or `None` when the task changed
    /// nothing.
    pub fn diff(&self) -> Result<Option<TaskEvent>, git2::Error> {
        let repo = Repository::open(&self.dir)?;
        let workdir = workdir(&repo)?;
        let tree = match self.commit {
            Some(id) => Some(repo.find_commit(id)?.tree()?),
            None => None,
        };
        let mut opts = DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true)
            .include_typechange(true)
            .context_lines(3);
        let mut diff = repo.diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut opts))?;
        diff.find_similar(Some(DiffFindOptions::new().renames(true).for_untracked(true)))?;

        let mut files = Vec::new();
        let mut patch = String::new();
        let mut truncated = false;
        for idx in 0..diff.deltas().len() {
            let Some(delta) = diff.get_delta(idx) else { continue };
            let status = match delta.status() {
                Delta::Added | Delta::Untracked | Delta::Copied => DiffStatus::Added,
                Delta::Deleted => DiffStatus::Deleted,
                Delta::Renamed => DiffStatus::Renamed,
                Delta::Modified | Delta::Typechange | Delta::Conflicted => DiffStatus::Modified,
                Delta::Unmodified | Delta::Ignored | Delta::Unreadable => continue,
            };
            let new_path = delta.new_file().path().map(path_text);
            let old_path = delta.old_file().path().map(path_text);
            let Some(path) = new_path.clone().or(old_path.clone()) else { continue };
            let untouched = |p: &Option<String>| {
                p.as_ref().is_none_or(|p| self.dirty.get(p).is_some_and(|then| *then == content_hash(&workdir, p)))
            };
            if untouched(&new_path) && untouched(&old_path) {
                continue; // Already changed before the task, and still exactly so.
            }
            if files.len() == MAX_DIFF_FILES {
                truncated = true;
                break;
            }
            let file_patch = Patch::from_diff(&diff, idx)?;
            let binary = delta.flags().is_binary() || file_patch.is_none();
            let (mut additions, mut deletions) = (0, 0);
            if let (Some(mut p), false) = (file_patch, binary) {
                let (_, adds, dels) = p.line_stats()?;
                (additions, deletions) = (adds as u64, dels as u64);
                if !truncated {
                    let buf = p.to_buf()?;
                    let text = String::from_utf8_lossy(&buf);
                    if patch.len() + text.len() > MAX_DIFF_PATCH_BYTES {
                        let room = MAX_DIFF_PATCH_BYTES - patch.len();
                        let mut end = room.min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        let end = text[..end].rfind('\n').map(|i| i + 1).unwrap_or(0);
                        patch.push_str(&text[..end]);
                        truncated = true;
                    } else {
                        patch.push_str(&text);
                    }
                }
            }
            let renamed = status == DiffStatus::Renamed;
            files.push(DiffFile {
                path,
                old_path: if renamed { old_path } else { None },
                status,
                additions,
                deletions,
                binary,
            });
        }
        if files.is_empty() {
            return Ok(None);
        }
        Ok(Some(TaskEvent::Diff { files, patch, truncated }))
    }
}

fn workdir(repo: &Repository) -> Result<PathBuf, git2::Error> {
    repo.workdir().map(Path::to_path_buf).ok_or_else(|| git2::Error::from_str("a bare repository has no working tree"))
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The blob hash of a working-tree path as it is now (a symlink: of its target).
fn content_hash(workdir: &Path, path: &str) -> Option<Oid> {
    let full = workdir.join(path);
    let meta = std::fs::symlink_metadata(&full).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full).ok()?;
        return Oid::hash_object(ObjectType::Blob, target.as_os_str().as_encoded_bytes()).ok();
    }
    if !meta.is_file() {
        return None;
    }
    Oid::hash_file(ObjectType::Blob, &full).ok()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("README.md"), "# demo\n").unwrap();
        std::fs::write(dir.path().join("gone.txt"), "bye\n").unwrap();
        std::fs::write(dir.path().join("moved.txt"), "a file that is moved\nwith some lines\nthree\n").unwrap();
        std::fs::write(dir.path().join("dirty.txt"), "committed\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "init"]);
        dir
    }

    fn files(event: &TaskEvent) -> Vec<(String, DiffStatus, u64, u64, bool)> {
        let TaskEvent::Diff { files, .. } = event else { panic!("not a diff: {event:?}") };
        let mut out: Vec<_> =
            files.iter().map(|f| (f.path.clone(), f.status, f.additions, f.deletions, f.binary)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn a_task_that_changes_nothing_has_no_diff() {
        let dir = repo();
        std::fs::write(dir.path().join("dirty.txt"), "changed before the task\n").unwrap();
        let base = Baseline::take(dir.path()).unwrap();
        assert_eq!(base.diff().unwrap(), None);
    }

    #[test]
    fn edits_additions_deletions_renames_and_binaries_against_the_start() {
        let dir = repo();
        let d = dir.path();
        // Changed before the task and left alone by it: not the task's doing.
        std::fs::write(d.join("dirty.txt"), "changed before the task\n").unwrap();
        std::fs::write(d.join("scratch.txt"), "untracked before\n").unwrap();
        let base = Baseline::take(d).unwrap();

        std::fs::write(d.join("README.md"), "# Demo\n\nMore.\n").unwrap();
        std::fs::create_dir(d.join("docs")).unwrap();
        std::fs::write(d.join("docs/new.md"), "one\ntwo\n").unwrap();
        std::fs::remove_file(d.join("gone.txt")).unwrap();
        std::fs::rename(d.join("moved.txt"), d.join("renamed.txt")).unwrap();
        std::fs::write(d.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 0, 1, 2, 0, 255]).unwrap();
        // The task commits part of its work: still against the starting commit.
        git(d, &["add", "README.md"]);
        git(d, &["commit", "-qm", "by the task"]);

        let event = base.diff().unwrap().expect("a diff");
        assert_eq!(
            files(&event),
            vec![
                ("README.md".into(), DiffStatus::Modified, 3, 1, false),
                ("docs/new.md".into(), DiffStatus::Added, 2, 0, false),
                ("gone.txt".into(), DiffStatus::Deleted, 0, 1, false),
                ("logo.png".into(), DiffStatus::Added, 0, 0, true),
                ("renamed.txt".into(), DiffStatus::Renamed, 0, 0, false),
            ]
        );
        let TaskEvent::Diff { files: list, patch, truncated } = &event else { unreachable!() };
        assert!(!truncated);
        let renamed = list.iter().find(|f| f.path == "renamed.txt").unwrap();
        assert_eq!(renamed.old_path.as_deref(), Some("moved.txt"));
        assert!(patch.contains("+# Demo\n") && patch.contains("-# demo\n"), "{patch}");
        assert!(patch.contains("+++ b/docs/new.md") && patch.contains("+two\n"), "{patch}");
        assert!(patch.contains("--- a/gone.txt") && patch.contains("-bye\n"), "{patch}");
        assert!(!patch.contains("logo.png\n+"), "a binary file has no patch text: {patch}");
        assert!(!patch.contains("dirty.txt") && !patch.contains("scratch.txt"), "{patch}");
    }

    #[test]
    fn a_path_changed_before_and_again_by_the_task_is_shown() {
        let dir = repo();
        std::fs::write(dir.path().join("dirty.txt"), "changed before the task\n").unwrap();
        let base = Baseline::take(dir.path()).unwrap();
        std::fs::write(dir.path().join("dirty.txt"), "changed by the task\n").unwrap();
        let event = base.diff().unwrap().expect("a diff");
        assert_eq!(files(&event), vec![("dirty.txt".into(), DiffStatus::Modified, 1, 1, false)]);
    }

    #[test]
    fn the_patch_is_capped_at_a_line_end_and_says_truncated() {
        let dir = repo();
        let base = Baseline::take(dir.path()).unwrap();
        let big: String = (0..120_000).map(|i| format!("line number {i:08}\n")).collect();
        assert!(big.len() > MAX_DIFF_PATCH_BYTES);
        std::fs::write(dir.path().join("big.txt"), &big).unwrap();
        std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
        let event = base.diff().unwrap().expect("a diff");
        let TaskEvent::Diff { files, patch, truncated } = &event else { unreachable!() };
        assert!(*truncated);
        assert!(patch.len() <= MAX_DIFF_PATCH_BYTES && patch.ends_with('\n'), "{}", patch.len());
        assert_eq!(files.len(), 2, "every file is listed even when the patch is cut");
        assert_eq!(files.iter().find(|f| f.path == "big.txt").unwrap().additions, 120_000);
    }

    #[test]
    fn a_repository_without_commits_diffs_against_nothing() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        let base = Baseline::take(dir.path()).unwrap();
        std::fs::write(dir.path().join("first.txt"), "hello\n").unwrap();
        let event = base.diff().unwrap().expect("a diff");
        assert_eq!(files(&event), vec![("first.txt".into(), DiffStatus::Added, 1, 0, false)]);
    }
}
