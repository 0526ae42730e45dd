//! Snapshots of uncommitted work, to predict conflicts before the agent commits (see [`super`]).

use super::gerr;
use crate::host::git::GitError;
use git2::Repository;
use std::path::Path;

/// Most changed files [`snapshot_worktree`] takes in; more is an error (predict on the branch).
pub const MAX_SNAPSHOT_FILES: usize = 2000;
/// Files larger than this (bytes) are left out of a snapshot: their committed version stands.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 8 << 20;

/// A commit (hex) holding the worktree's files as they are now — its HEAD plus every staged,
/// unstaged and untracked (not ignored) change — with HEAD as its parent; HEAD's own id when
/// nothing changed. Like `git stash create`: it writes objects to the object database (blobs of
/// the changed files, a tree, a commit that no ref names, pruned by git's gc in time) and never
/// the index, a ref or a file. Files over [`MAX_SNAPSHOT_FILE_BYTES`] and nested repositories are
/// left out.
///
/// Errors: the worktree cannot be opened or its HEAD does not resolve; more than
/// [`MAX_SNAPSHOT_FILES`] changed files (named: predict on the branch's commits instead); a
/// changed file cannot be read.
pub fn snapshot_worktree(worktree: &Path) -> Result<String, GitError> {
    let r = Repository::open(worktree)
        .map_err(gerr(format!("opening the worktree {}", worktree.display())))?;
    let head = r
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = r.statuses(Some(&mut opts)).map_err(gerr(format!(
        "reading the status of {}",
        worktree.display()
    )))?;
    if statuses.is_empty() {
        return Ok(head.id().to_string());
    }
    if statuses.len() > MAX_SNAPSHOT_FILES {
        return Err(GitError {
            action: format!("taking a snapshot of {}", worktree.display()),
            message: format!(
                "{} changed files (more than {MAX_SNAPSHOT_FILES}): predict on the branch's commits instead, or ignore build output in .gitignore",
                statuses.len()
            ),
        });
    }
    let head_tree = head.tree().map_err(gerr("reading HEAD's tree"))?;
    let mut index = git2::Index::new().map_err(gerr("making an index in memory"))?;
    index
        .read_tree(&head_tree)
        .map_err(gerr("reading HEAD's tree"))?;
    for st in statuses.iter() {
        let Ok(rel) = st.path().map(str::to_string) else {
            continue;
        };
        let full = worktree.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            let _ = index.remove_path(Path::new(&rel));
            continue;
        };
        let (id, mode) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| snapshot_io(&full, e))?;
            let id = r
                .blob(target.as_os_str().as_encoded_bytes())
                .map_err(gerr(format!("storing {rel}")))?;
            (id, 0o120000)
        } else if meta.is_file() {
            if meta.len() > MAX_SNAPSHOT_FILE_BYTES {
                continue;
            }
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let id = r.blob_path(&full).map_err(gerr(format!("storing {rel}")))?;
            (id, if exec { 0o100755 } else { 0o100644 })
        } else {
            continue;
        };
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                file_size: u32::try_from(meta.len()).unwrap_or(u32::MAX),
                id,
                flags: 0,
                flags_extended: 0,
                path: rel.into_bytes(),
            })
            .map_err(gerr("adding a changed file to the snapshot"))?;
    }
    let tree_id = index
        .write_tree_to(&r)
        .map_err(gerr("writing the snapshot's tree"))?;
    if tree_id == head_tree.id() {
        return Ok(head.id().to_string());
    }
    let tree = r
        .find_tree(tree_id)
        .map_err(gerr("reading the snapshot's tree"))?;
    let sig = git2::Signature::now("switchyard", "switchyard@localhost")
        .map_err(gerr("making the commit's signature"))?;
    let id = r
        .commit(
            None,
            &sig,
            &sig,
            "switchyard: snapshot of uncommitted work",
            &tree,
            &[&head],
        )
        .map_err(gerr("writing the snapshot commit"))?;
    Ok(id.to_string())
}

fn snapshot_io(path: &Path, e: std::io::Error) -> GitError {
    GitError {
        action: format!("reading {} for a snapshot", path.display()),
        message: e.to_string(),
    }
}
