//! The integration branch: in-memory merges with git2 (no network; the user's working copy is
//! touched only in the one case documented at [`merge_into`], a task's worktree only by
//! [`merge_in_worktree`]).
//!
//! Interface (used by the runtime for the merge queue and early conflict warnings):
//! - [`ensure_branch`]`(repo, name, start) -> oid hex`: creates the integration branch
//!   (default [`DEFAULT_BRANCH`]) at `start` when it is missing; an existing branch is left as it is.
//! - [`predict`]`(repo, ours, theirs) -> Vec<Conflict>`: merges two revisions in memory (merge
//!   base, recursive virtual base when there are several) and returns the conflicting files; no
//!   ref, index or file changes. Cheap enough to run on every commit of every running task
//!   (measured: `measure_predict` in `tests/git_integrate.rs`, figures in the README).
//! - [`Predictor`]: the same with the repository opened once and answers cached per pair of
//!   commits (a debounced prediction on every commit of every running task mostly asks again
//!   about pairs whose tips did not move).
//! - [`snapshot_worktree`]`(worktree) -> commit hex`: a commit (on no branch) of a worktree's
//!   files as they are, uncommitted changes included, to predict on every file change before the
//!   agent commits: `predict(repo, &snapshot, "switchyard/integration")`.
//! - [`merge_into`]`(repo, target, source, mode, message) -> MergeResult`: merges `source` into the
//!   branch `target`, moving only `refs/heads/<target>` (compare-and-swap); a checked-out target's
//!   clean checkout follows, a dirty one refuses the merge.
//! - [`merge_in_worktree`]`(worktree, source, message) -> WorktreeMerge`: the start of a resolve
//!   round: merges `source` (the integration branch) into the branch checked out in a task's own
//!   worktree, committing when clean, else leaving conflict markers and `MERGE_HEAD` for the agent
//!   (whose `git commit` then completes the merge).
//! - [`Conflict`]: one conflicting file, with 1-based inclusive line ranges on each side and a
//!   bounded text of its conflict blocks (standard conflict markers).
//!
//! Revisions (`ours`, `theirs`, `source`, `start`) are anything `git rev-parse` takes: a branch
//! name, `refs/...`, or a commit id.

mod conflicts;
mod snapshot;
mod worktree;

pub use conflicts::{predict, Predictor, PREDICTOR_CACHE};
pub use snapshot::{snapshot_worktree, MAX_SNAPSHOT_FILES, MAX_SNAPSHOT_FILE_BYTES};
pub use worktree::{merge_in_worktree, WorktreeMerge};

use crate::host::git::GitError;
use conflicts::conflicts_between;
use git2::{BranchType, Oid, Repository};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The integration branch's name when the config names none.
pub const DEFAULT_BRANCH: &str = "switchyard/integration";

/// Most bytes of conflict text kept per file in [`Conflict::hunks`]; the rest is cut at a line
/// boundary and counted in a last line `… N more bytes`.
pub const MAX_HUNK_BYTES: usize = 4096;

/// One file that does not merge cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Path in the repository (`/`-separated), as on the `ours` side (or `theirs` when ours
    /// deleted it).
    pub path: String,
    /// Line ranges (1-based, inclusive, sorted, disjoint) of `ours`'s version that conflict. A
    /// change on this side that only deleted lines is shown as the line before the deletion (or
    /// line 1). Empty when this side deleted the file.
    pub ours: Vec<(u32, u32)>,
    /// The same for `theirs`.
    pub theirs: Vec<(u32, u32)>,
    /// The conflict blocks as git writes them (`<<<<<<< ours` / `=======` / `>>>>>>> theirs`,
    /// labels = the revisions given), at most [`MAX_HUNK_BYTES`]; a one-line description for a
    /// binary file or a file deleted on one side. Text from the repository: escape it
    /// ([`crate::core::text::escape_lines`]) before it reaches a terminal.
    pub hunks: String,
}

/// How [`merge_into`] may move the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Only a fast-forward; a diverged target gives [`MergeResult::Diverged`].
    FastForward,
    /// Always a merge commit with two parents (like `git merge --no-ff`), even when a
    /// fast-forward is possible.
    MergeCommit,
    /// A fast-forward when possible, else a merge commit (like `git merge`).
    FfOrMerge,
}

/// What [`merge_into`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeResult {
    /// `source` is already in `target`: nothing changed.
    UpToDate,
    /// `target` now points at `commit` (hex id): `source` itself when `fast_forward`, else a new
    /// merge commit whose parents are the old target and `source`.
    Merged {
        /// The target's new tip (hex).
        commit: String,
        /// True when the target was moved forward to `source` without a merge commit.
        fast_forward: bool,
    },
    /// The merge conflicts; nothing changed. The task should resolve these on top of the target
    /// (a resolve round).
    Conflicts(Vec<Conflict>),
    /// [`MergeMode::FastForward`] and the target has commits `source` lacks: nothing changed.
    /// The task must first bring in the target (a resolve round), or the mode must allow a merge
    /// commit. `conflicts` is what a merge would conflict on (empty when it would merge cleanly).
    Diverged {
        /// What merging the two would conflict on.
        conflicts: Vec<Conflict>,
    },
}

fn gerr(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |e| GitError {
        action,
        message: e.message().to_string(),
    }
}

fn open(repo: &Path) -> Result<Repository, GitError> {
    Repository::open(repo).map_err(gerr(format!("opening the repository {}", repo.display())))
}

/// How a commit to merge (`theirs`) stands to the branch it goes into (`ours`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// `ours` already holds it (the same commit, or one of its ancestors): nothing to merge.
    Holds,
    /// `ours` is one of its ancestors: a fast-forward takes it.
    FastForward,
    /// Each has commits the other lacks: a merge.
    Diverged,
}

/// Where `theirs` stands to `ours` in `r`'s history. Errors: git cannot walk the history.
fn relation(r: &Repository, ours: Oid, theirs: Oid) -> Result<Relation, GitError> {
    let walk = gerr("comparing histories");
    if ours == theirs || r.graph_descendant_of(ours, theirs).map_err(walk)? {
        return Ok(Relation::Holds);
    }
    if r.graph_descendant_of(theirs, ours)
        .map_err(gerr("comparing histories"))?
    {
        return Ok(Relation::FastForward);
    }
    Ok(Relation::Diverged)
}

fn commit_of<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>, GitError> {
    repo.revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("resolving {rev:?}"),
            message: format!(
                "{}; name an existing branch, ref or commit (the repository needs at least one commit)",
                e.message()
            ),
        })
}

fn check_branch_name(name: &str) -> Result<(), GitError> {
    if git2::Branch::name_is_valid(name).unwrap_or(false) {
        Ok(())
    } else {
        Err(GitError {
            action: format!("using {name:?} as the integration branch"),
            message: "it is not a valid git branch name; set `merge.into` in switchyard.toml to a name like switchyard/integration".into(),
        })
    }
}

/// Creates branch `name` at `start` (a revision) when it does not exist; returns the branch's tip
/// (hex), which for an existing branch is left where it is.
///
/// Errors: the repository cannot be opened; `name` is not a valid branch name; `start` does not
/// resolve to a commit; git cannot create the ref (e.g. a stale lock, named by git).
pub fn ensure_branch(repo: &Path, name: &str, start: &str) -> Result<String, GitError> {
    check_branch_name(name)?;
    let r = open(repo)?;
    if let Ok(b) = r.find_branch(name, BranchType::Local) {
        let tip = b
            .get()
            .peel_to_commit()
            .map_err(gerr(format!("reading branch {name}")))?;
        return Ok(tip.id().to_string());
    }
    let c = commit_of(&r, start)?;
    r.branch(name, &c, false)
        .map_err(gerr(format!("creating branch {name} at {start}")))?;
    Ok(c.id().to_string())
}

/// Merges `source` (a revision) into the local branch `target` and moves only
/// `refs/heads/<target>` (compare-and-swap against the tip read at the start, so a concurrent
/// move is an error, never lost). Merge commits are signed `switchyard <switchyard@localhost>`.
///
/// A target branch checked out in a worktree (the user's working copy or any other) is never
/// left silently behind its checkout: when no tracked file there has uncommitted changes, its
/// files and index are updated to the new tip together with the branch, like git's
/// `receive.denyCurrentBranch=updateInstead` (untracked files, e.g. a manifest kept in the
/// repository, stay; one in the way of an incoming file stops it); otherwise the merge is
/// refused with an error naming the worktree and the fix, and nothing changes.
///
/// Errors: the repository cannot be opened; `target` is not a local branch (create it with
/// [`ensure_branch`]); `source` does not resolve; the target is checked out in a worktree with
/// changes; the branch moved during the merge; git cannot write the commit, files or ref.
pub fn merge_into(
    repo: &Path,
    target: &str,
    source: &str,
    mode: MergeMode,
    message: &str,
) -> Result<MergeResult, GitError> {
    let r = open(repo)?;
    let refname = format!("refs/heads/{target}");
    let target_commit = r
        .find_reference(&refname)
        .and_then(|rf| rf.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("merging into {target}"),
            message: format!(
                "{}; the branch does not exist: create it first (switchyard creates the integration branch at the run's base)",
                e.message()
            ),
        })?;
    let source_commit = commit_of(&r, source)?;
    let (t, s) = (target_commit.id(), source_commit.id());
    let can_ff = match relation(&r, t, s)? {
        Relation::Holds => return Ok(MergeResult::UpToDate),
        Relation::FastForward => true,
        Relation::Diverged => false,
    };
    let new_tip = if can_ff && mode != MergeMode::MergeCommit {
        s
    } else {
        let conflicts = conflicts_between(&r, &target_commit, &source_commit, target, source)?;
        if mode == MergeMode::FastForward {
            return Ok(MergeResult::Diverged { conflicts });
        }
        if !conflicts.is_empty() {
            return Ok(MergeResult::Conflicts(conflicts));
        }
        let mut index = r
            .merge_commits(&target_commit, &source_commit, None)
            .map_err(gerr(format!("merging {source} into {target}")))?;
        let tree_id = index
            .write_tree_to(&r)
            .map_err(gerr("writing the merged tree"))?;
        let tree = r
            .find_tree(tree_id)
            .map_err(gerr("reading the merged tree"))?;
        let sig = git2::Signature::now("switchyard", "switchyard@localhost")
            .map_err(gerr("making the commit's signature"))?;
        r.commit(
            None,
            &sig,
            &sig,
            message,
            &tree,
            &[&target_commit, &source_commit],
        )
        .map_err(gerr(format!(
            "committing the merge of {source} into {target}"
        )))?
    };
    let checkouts = checked_out_in(&r, &refname)?;
    let refuse = |wt: &Path, why: String| {
        GitError {
        action: format!("merging {source} into {target}"),
        message: format!(
            "{target} is checked out in {} and {why}; switchyard moves a checked-out branch only when its checkout can follow cleanly. Commit or stash there, check out another branch there, or set `merge.into` in switchyard.toml to a branch nobody has checked out (default {DEFAULT_BRANCH})",
            wt.display()
        ),
    }
    };
    for wt in &checkouts {
        let dirty = tracked_changes(wt)?;
        if dirty > 0 {
            return Err(refuse(
                wt,
                format!("{dirty} tracked file(s) there have uncommitted changes"),
            ));
        }
    }
    for (i, wt) in checkouts.iter().enumerate() {
        if let Err(e) = update_checkout(wt, new_tip) {
            // Put the ones already moved back where their branch still is.
            for done in &checkouts[..i] {
                let _ = update_checkout(done, t);
            }
            return Err(refuse(
                wt,
                format!(
                    "its files cannot follow ({}: an untracked file is in the way of an incoming one?)",
                    e.message
                ),
            ));
        }
    }
    let log = format!("switchyard: merge {source}");
    if let Err(e) = r.reference_matching(&refname, new_tip, true, t, &log) {
        // Put the clean checkouts back on whatever the branch now is.
        for wt in &checkouts {
            if let Ok(now) = r.refname_to_id(&refname) {
                let _ = update_checkout(wt, now);
            }
        }
        return Err(GitError {
            action: format!("moving {target} to {new_tip}"),
            message: format!(
                "{}; the branch moved while switchyard merged: run the merge again",
                e.message()
            ),
        });
    }
    Ok(MergeResult::Merged {
        commit: new_tip.to_string(),
        fast_forward: new_tip == s,
    })
}

/// Working-tree paths (the main one and linked worktrees) whose HEAD is the symbolic ref
/// `refname`.
fn checked_out_in(r: &Repository, refname: &str) -> Result<Vec<PathBuf>, GitError> {
    let mut out = Vec::new();
    let head_is = |repo: &Repository| {
        repo.find_reference("HEAD")
            .ok()
            .map(|h| h.symbolic_target().ok().flatten() == Some(refname))
            .unwrap_or(false)
    };
    if let Ok(main) = Repository::open(r.commondir()) {
        if let Some(wd) = main.workdir() {
            if head_is(&main) {
                out.push(wd.to_path_buf());
            }
        }
    }
    let names = r.worktrees().map_err(gerr("listing worktrees"))?;
    for name in names.iter() {
        let Ok(Some(name)) = name else {
            continue;
        };
        let Ok(wt) = r.find_worktree(name) else {
            continue;
        };
        if wt.validate().is_err() {
            continue;
        }
        if let Ok(repo) = Repository::open_from_worktree(&wt) {
            if head_is(&repo) {
                out.push(wt.path().to_path_buf());
            }
        }
    }
    Ok(out)
}

/// Tracked files with staged or unstaged changes in a worktree (untracked and ignored files do
/// not count: a checkout keeps them, and refuses when one is in the way).
fn tracked_changes(wt: &Path) -> Result<usize, GitError> {
    let repo =
        Repository::open(wt).map_err(gerr(format!("opening the worktree {}", wt.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(false).include_ignored(false);
    let st = repo
        .statuses(Some(&mut opts))
        .map_err(gerr(format!("reading the status of {}", wt.display())))?;
    Ok(st.len())
}

/// Updates a worktree's files and index from its HEAD's tree to `to`'s tree (HEAD itself moves
/// with the branch ref). Safe: touches only files that match HEAD, and fails without writing
/// anything when a change or an untracked file is in the way.
fn update_checkout(wt: &Path, to: Oid) -> Result<(), GitError> {
    let repo =
        Repository::open(wt).map_err(gerr(format!("opening the worktree {}", wt.display())))?;
    let tree = repo
        .find_commit(to)
        .and_then(|c| c.tree())
        .map_err(gerr(format!("reading {to}")))?;
    let mut cb = git2::build::CheckoutBuilder::new();
    cb.safe();
    repo.checkout_tree(tree.as_object(), Some(&mut cb))
        .map_err(gerr(format!("updating the files of {}", wt.display())))
}
