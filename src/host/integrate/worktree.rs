//! The start of a resolve round: the integration branch merged into a task's own worktree (see
//! [`super`]).

use super::{commit_of, conflicts::conflicts_between, gerr, relation, Conflict, Relation};
use crate::host::git::GitError;
use git2::Repository;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What [`merge_in_worktree`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorktreeMerge {
    /// `source` is already in the worktree's branch: nothing changed.
    UpToDate,
    /// The branch had nothing of its own: it was moved forward to `source` (files updated).
    FastForward {
        /// The new tip (hex).
        commit: String,
    },
    /// Merged without conflicts and committed (two parents: the branch's tip and `source`).
    Merged {
        /// The merge commit (hex).
        commit: String,
    },
    /// The merge stopped on conflicts: the files hold conflict markers (labels `HEAD` and the
    /// source's name), the index the three stages, `MERGE_HEAD` the source; resolving the files
    /// and `git commit` (or `git add -A && git commit`) completes it.
    Conflicts(Vec<Conflict>),
    /// A merge was already under way there (`MERGE_HEAD` exists): left as it is, for the agent.
    InProgress,
}

/// Merges `source` (a revision, usually the integration branch) into the branch checked out in
/// `worktree` — a task's own worktree, never the user's — with git2: no hooks, no user config, no
/// signing prompts. The worktree must be clean (the agent's work committed).
///
/// Errors: the worktree cannot be opened, its HEAD is detached or unborn, it has uncommitted
/// changes (named, with the fix), `source` does not resolve, or git cannot write the files,
/// index or commit.
pub fn merge_in_worktree(
    worktree: &Path,
    source: &str,
    message: &str,
) -> Result<WorktreeMerge, GitError> {
    let r = Repository::open(worktree)
        .map_err(gerr(format!("opening the worktree {}", worktree.display())))?;
    if r.state() == git2::RepositoryState::Merge {
        return Ok(WorktreeMerge::InProgress);
    }
    let head = r
        .head()
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let Some(head_ref) = head
        .name()
        .ok()
        .filter(|_| head.is_branch())
        .map(str::to_string)
    else {
        return Err(GitError {
            action: format!("merging {source} into {}", worktree.display()),
            message: "its HEAD is not on a branch; check out the task's branch there".into(),
        });
    };
    let label = head.shorthand().unwrap_or("HEAD").to_string();
    let ours = head
        .peel_to_commit()
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let dirty = crate::host::git::uncommitted(worktree)?;
    if dirty > 0 {
        return Err(GitError {
            action: format!("merging {source} into {}", worktree.display()),
            message: format!(
                "{dirty} file(s) there have uncommitted changes; commit them first (the merge would mix with them)"
            ),
        });
    }
    let theirs = commit_of(&r, source)?;
    let (o, t) = (ours.id(), theirs.id());
    let relation = relation(&r, o, t)?;
    if relation == Relation::Holds {
        return Ok(WorktreeMerge::UpToDate);
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.safe();
    if relation == Relation::FastForward {
        let tree = theirs.tree().map_err(gerr(format!("reading {source}")))?;
        r.checkout_tree(tree.as_object(), Some(&mut checkout))
            .map_err(gerr(format!(
                "updating the files of {}",
                worktree.display()
            )))?;
        r.reference_matching(
            &head_ref,
            t,
            true,
            o,
            &format!("switchyard: fast-forward to {source}"),
        )
        .map_err(gerr(format!("moving {label} to {source}")))?;
        return Ok(WorktreeMerge::FastForward {
            commit: t.to_string(),
        });
    }
    let annotated = match r.resolve_reference_from_short_name(source) {
        Ok(rf) if rf.peel_to_commit().is_ok_and(|c| c.id() == t) => {
            r.reference_to_annotated_commit(&rf)
        }
        _ => r.find_annotated_commit(t),
    }
    .map_err(gerr(format!("reading {source}")))?;
    checkout.conflict_style_merge(true);
    r.merge(&[&annotated], None, Some(&mut checkout))
        .map_err(gerr(format!(
            "merging {source} into {}",
            worktree.display()
        )))?;
    let mut index = r.index().map_err(gerr("reading the index"))?;
    if index.has_conflicts() {
        return Ok(WorktreeMerge::Conflicts(conflicts_between(
            &r, &ours, &theirs, &label, source,
        )?));
    }
    let tree_id = index
        .write_tree()
        .map_err(gerr("writing the merged tree"))?;
    let tree = r
        .find_tree(tree_id)
        .map_err(gerr("reading the merged tree"))?;
    let sig = git2::Signature::now("switchyard", "switchyard@localhost")
        .map_err(gerr("making the commit's signature"))?;
    let id = r
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&ours, &theirs])
        .map_err(gerr(format!("committing the merge of {source}")))?;
    r.cleanup_state().map_err(gerr("ending the merge"))?;
    Ok(WorktreeMerge::Merged {
        commit: id.to_string(),
    })
}
