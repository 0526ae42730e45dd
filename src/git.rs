//! Worktrees and branches (git2, no network): create or reuse a task's worktree, count commits
//! ahead of base, remove the worktrees switchyard made. Nothing else in switchyard calls git.

use git2::{BranchType, Repository, WorktreeAddOptions, WorktreePruneOptions};
use std::path::{Path, PathBuf};

/// Prefix of the git worktree names switchyard creates (`sy-<task id>`); `clean` removes only these.
pub const WORKTREE_PREFIX: &str = "sy-";

/// A task's worktree, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Absolute path.
    pub path: PathBuf,
    /// Branch checked out there.
    pub branch: String,
    /// Commit the branch counts its commits from.
    pub base_commit: String,
    /// True when it existed already and was reused.
    pub reused: bool,
}

/// Errors from git, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {message}")]
pub struct GitError {
    /// What switchyard was doing, e.g. "creating worktree for t3 at /x".
    pub action: String,
    /// git's message, with a hint where one helps.
    pub message: String,
}

fn err(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |e| GitError {
        action,
        message: e.message().to_string(),
    }
}

/// Finds the repository containing `dir` and returns its working-tree root.
pub fn repo_root(dir: &Path) -> Result<PathBuf, GitError> {
    let repo = Repository::discover(dir).map_err(|e| GitError {
        action: format!("finding the git repository containing {}", dir.display()),
        message: format!(
            "{}; put the manifest inside a git repository or pass --repo DIR",
            e.message()
        ),
    })?;
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| GitError {
            action: format!("opening {}", dir.display()),
            message: "it is a bare repository; switchyard needs a working tree".into(),
        })
}

/// Creates the worktree for a task at `path` on `branch` from `base` (a ref or commit), or reuses
/// it when it is already there. An existing branch is reused as it is (its work is kept).
pub fn ensure_worktree(
    repo_dir: &Path,
    task_id: &str,
    path: &Path,
    branch: &str,
    base: &str,
) -> Result<WorktreeInfo, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let base_commit = repo
        .revparse_single(base)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("resolving base {base:?}"),
            message: format!(
                "{}; set `base` in switchyard.toml to an existing branch or commit (the repository needs at least one commit)",
                e.message()
            ),
        })?;
    if path.join(".git").exists() {
        let wt =
            Repository::open(path).map_err(err(format!("opening worktree {}", path.display())))?;
        let head = wt
            .head()
            .ok()
            .and_then(|h| h.shorthand().ok().map(str::to_string))
            .unwrap_or_else(|| branch.to_string());
        return Ok(WorktreeInfo {
            path: path.to_path_buf(),
            branch: head,
            base_commit: base_commit.id().to_string(),
            reused: true,
        });
    }
    let name = format!("{WORKTREE_PREFIX}{task_id}");
    // A worktree entry whose directory is gone (removed by hand) blocks the name: prune it.
    if let Ok(stale) = repo.find_worktree(&name) {
        if stale.validate().is_err() {
            let _ = stale.prune(Some(WorktreePruneOptions::new().valid(true)));
        }
    }
    let branch_ref = match repo.find_branch(branch, BranchType::Local) {
        Ok(b) => b,
        Err(_) => repo
            .branch(branch, &base_commit, false)
            .map_err(err(format!("creating branch {branch}")))?,
    };
    let start = branch_ref
        .get()
        .peel_to_commit()
        .map_err(err(format!("reading branch {branch}")))?;
    let base_id = repo
        .merge_base(start.id(), base_commit.id())
        .unwrap_or(base_commit.id());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| GitError {
            action: format!("creating {}", parent.display()),
            message: e.to_string(),
        })?;
    }
    let reference = branch_ref.into_reference();
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    repo.worktree(&name, path, Some(&opts))
        .map_err(|e| GitError {
            action: format!("creating worktree {} on {branch}", path.display()),
            message: format!(
                "{}; if the branch is checked out elsewhere, remove that worktree (switchyard clean)",
                e.message()
            ),
        })?;
    Ok(WorktreeInfo {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        base_commit: base_id.to_string(),
        reused: false,
    })
}

/// Commits on the worktree's HEAD that are not reachable from `base_commit`.
pub fn commits_ahead(worktree: &Path, base_commit: &str) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(err("reading HEAD"))?;
    let base = git2::Oid::from_str(base_commit).map_err(err("parsing base commit"))?;
    let mut walk = repo.revwalk().map_err(err("walking history"))?;
    walk.push(head.id()).map_err(err("walking history"))?;
    walk.hide(base).map_err(err("walking history"))?;
    Ok(walk.count())
}

/// Files with uncommitted changes (staged, unstaged or untracked, not ignored) in a worktree.
pub fn uncommitted(worktree: &Path) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(err("reading the status"))?;
    Ok(statuses.len())
}

/// Commits every change in the worktree (like `git add -A && git commit`) as "switchyard".
/// Returns the new commit id, or `None` when there was nothing to commit.
pub fn commit_all(worktree: &Path, message: &str) -> Result<Option<String>, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let mut index = repo.index().map_err(err("opening the index"))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(err("adding files"))?;
    index
        .update_all(["*"].iter(), None)
        .map_err(err("recording deletions"))?;
    index.write().map_err(err("writing the index"))?;
    let tree_id = index.write_tree().map_err(err("writing the tree"))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(err("reading HEAD"))?;
    if head.tree_id() == tree_id {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).map_err(err("reading the tree"))?;
    let sig =
        git2::Signature::now("switchyard", "switchyard@localhost").map_err(err("signature"))?;
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&head])
        .map_err(err("committing"))?;
    Ok(Some(id.to_string()))
}

/// Files changed between `base_commit` and the worktree's HEAD.
pub fn files_changed(worktree: &Path, base_commit: &str) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_tree())
        .map_err(err("reading HEAD"))?;
    let base = repo
        .find_commit(git2::Oid::from_str(base_commit).map_err(err("parsing base commit"))?)
        .and_then(|c| c.tree())
        .map_err(err("reading base"))?;
    let diff = repo
        .diff_tree_to_tree(Some(&base), Some(&head), None)
        .map_err(err("diffing"))?;
    Ok(diff.deltas().len())
}

/// Removes the worktrees switchyard made for these task ids (`sy-<id>`): their directories and
/// their entries in git. Branches (and so the work on them) are kept. Returns the removed paths.
pub fn remove_worktrees(repo_dir: &Path, task_ids: &[String]) -> Result<Vec<PathBuf>, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let mut removed = Vec::new();
    for id in task_ids {
        let name = format!("{WORKTREE_PREFIX}{id}");
        let Ok(wt) = repo.find_worktree(&name) else {
            continue;
        };
        let path = wt.path().to_path_buf();
        wt.prune(Some(
            WorktreePruneOptions::new()
                .valid(true)
                .locked(false)
                .working_tree(true),
        ))
        .map_err(err(format!("removing worktree {}", path.display())))?;
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| GitError {
                action: format!("removing {}", path.display()),
                message: e.to_string(),
            })?;
        }
        removed.push(path);
    }
    Ok(removed)
}

/// Creates a repository at `dir` with `files` (relative path, content) committed on `main`.
/// Used by the demo and by tests.
pub fn init_repo_with(
    dir: &Path,
    files: &[(&str, &str)],
    message: &str,
) -> Result<String, GitError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts)
        .map_err(err(format!("creating a repository in {}", dir.display())))?;
    for (rel, content) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError {
                action: format!("creating {}", parent.display()),
                message: e.to_string(),
            })?;
        }
        std::fs::write(&p, content).map_err(|e| GitError {
            action: format!("writing {}", p.display()),
            message: e.to_string(),
        })?;
    }
    let mut index = repo.index().map_err(err("opening the index"))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(err("adding files"))?;
    index.write().map_err(err("writing the index"))?;
    let tree_id = index.write_tree().map_err(err("writing the tree"))?;
    let tree = repo.find_tree(tree_id).map_err(err("reading the tree"))?;
    let sig =
        git2::Signature::now("switchyard", "switchyard@localhost").map_err(err("signature"))?;
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
        .map_err(err("committing"))?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn commit_in(dir: &Path, file: &str) {
        std::fs::write(dir.join(file), "x\n").unwrap();
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(["add", "-A"])
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(["commit", "-qm", "work"])
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn git_cli(dir: &Path, args: &[&str]) {
        assert!(Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success());
    }

    #[test]
    fn creates_reuses_counts_and_cleans_worktrees() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        init_repo_with(&repo, &[("README.md", "hi\n")], "init").unwrap();
        let wt = tmp.path().join("work/worktrees/t1");
        let info = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", "HEAD").unwrap();
        assert!(!info.reused);
        assert!(wt.join("README.md").exists());
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 0);
        commit_in(&wt, "a.txt");
        commit_in(&wt, "b.txt");
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 2);
        assert_eq!(files_changed(&wt, &info.base_commit).unwrap(), 2);
        assert_eq!(uncommitted(&wt).unwrap(), 0);
        std::fs::write(wt.join("left-over.txt"), "x").unwrap();
        assert_eq!(uncommitted(&wt).unwrap(), 1);
        assert!(commit_all(&wt, "switchyard: commit left-overs")
            .unwrap()
            .is_some());
        assert_eq!(uncommitted(&wt).unwrap(), 0);
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 3);
        assert_eq!(commit_all(&wt, "nothing").unwrap(), None);
        git_cli(&wt, &["reset", "-q", "--hard", "HEAD~1"]);
        let again = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", &info.base_commit).unwrap();
        assert!(again.reused);
        assert_eq!(again.branch, "fix/issue-1");
        assert_eq!(
            commits_ahead(&wt, &again.base_commit).unwrap(),
            2,
            "work kept"
        );

        let removed = remove_worktrees(&repo, &["t1".into(), "t9".into()]).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!wt.exists());
        let r = Repository::open(&repo).unwrap();
        assert!(r.find_worktree("sy-t1").is_err(), "pruned in git");
        assert!(
            r.find_branch("fix/issue-1", BranchType::Local).is_ok(),
            "branch kept"
        );
        // Recreated on the existing branch, the work is still there.
        let info = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", "HEAD").unwrap();
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 2);
    }

    #[test]
    fn a_repository_without_commits_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        Repository::init(tmp.path()).unwrap();
        let e = ensure_worktree(tmp.path(), "t1", &tmp.path().join("w"), "b", "HEAD").unwrap_err();
        assert!(e.to_string().contains("needs at least one commit"), "{e}");
    }
}
