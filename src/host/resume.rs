//! Work a killed run finished but did not record: at resume, a task left `running` whose
//! worker is gone may already have its agent's commits on its branch. This module reads that
//! from git so the run can verify (or complete) the task instead of starting the agent again.
//!
//! Wiring (the engine's part is described in the report of issue 12 item 5): after
//! [`crate::host::runtime::Runtime::open`] killed what was left of the killed run's workers, every task
//! [`unrecorded_work`] names has no worker and committed work; the engine should treat it like a
//! worker that exited 0 with those commits (verify, else complete), not start a new attempt.

use crate::core::engine::Engine;
use crate::core::manifest::Status;
use crate::host::git::GitError;
use std::path::Path;

/// The state of a task's branch in its worktree, against the commit its work counts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchWork {
    /// Commits on HEAD not reachable from the recorded `baseCommit`.
    pub commits_ahead: usize,
    /// Files with uncommitted changes (staged, unstaged or untracked, not ignored).
    pub uncommitted: usize,
    /// The branch checked out in the worktree (`None` on a detached HEAD).
    pub head_branch: Option<String>,
}

/// Reads a worktree's branch state against `base_commit` (a full commit id, as the manifest's
/// `baseCommit` holds it).
pub fn branch_work(worktree: &Path, base_commit: &str) -> Result<BranchWork, GitError> {
    let commits_ahead = crate::host::git::commits_ahead(worktree, base_commit)?;
    let uncommitted = crate::host::git::uncommitted(worktree)?;
    let head_branch = git2::Repository::open(worktree).ok().and_then(|r| {
        let head = r.head().ok()?;
        if !head.is_branch() {
            return None;
        }
        head.shorthand().ok().map(str::to_string)
    });
    Ok(BranchWork {
        commits_ahead,
        uncommitted,
        head_branch,
    })
}

/// A task left in flight by an earlier run, with work on its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecordedWork {
    /// Task index.
    pub task: usize,
    /// Task id.
    pub id: String,
    /// Its branch state.
    pub work: BranchWork,
}

/// Tasks an earlier run left `running` or `stuck`, with no worker now, whose worktree (still
/// on the task's branch) has commits ahead of the recorded `baseCommit`. Call it at open, after
/// the earlier run's workers were killed and before the first event, so no worker of this run
/// exists yet. A worktree git cannot read is left out (the task restarts as before).
pub fn unrecorded_work(engine: &Engine) -> Vec<UnrecordedWork> {
    (0..engine.plan.len())
        .filter(|&i| {
            matches!(engine.status(i), Status::Running | Status::Stuck)
                && engine.runs[i].worker.is_none()
        })
        .filter_map(|i| {
            let t = engine.task(i);
            let worktree = Path::new(t.worktree.as_deref()?);
            let base = t.base_commit.as_deref()?;
            let work = branch_work(worktree, base).ok()?;
            let on_branch = match (&work.head_branch, &t.branch) {
                (Some(head), Some(branch)) => head == branch,
                _ => false,
            };
            (on_branch && work.commits_ahead > 0).then(|| UnrecordedWork {
                task: i,
                id: t.id.clone(),
                work,
            })
        })
        .collect()
}
