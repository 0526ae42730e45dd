//! The shell's side of the lifecycle stages (see [`crate::core::engine::lifecycle`]): each function
//! does one piece of git or GitHub work for a job lane and returns the engine's plain answer.
//! Nothing here decides anything; errors come back as one sentence with the fix.
//!
//! The work itself is done by the edge modules: merges, predictions (a long-lived
//! [`crate::host::integrate::Predictor`] over [`crate::host::integrate::snapshot_worktree`] commits, so
//! uncommitted edits count) and the resolve round's merge in a task's worktree by
//! [`crate::host::integrate`] (git2: no checkout of the user's working copy, no hooks, user config or
//! signing); pushes and pull requests by [`crate::host::pr`] (argv, never a shell).

use crate::core::engine::{ConflictInfo, MergeOutcome, PrRequest, PrStatus};
use crate::core::findings::{self, Finding};
use std::path::{Path, PathBuf};

/// Where review round `round`'s findings of task `id` go: `<logs>/<id>.review-<round>.json`.
pub fn findings_path(logs: &Path, id: &str, round: u32) -> std::path::PathBuf {
    logs.join(format!("{id}.review-{round}.json"))
}

/// Reads a reviewer's findings: the findings file when it exists, else the reviewer's final
/// screen (a final message ending in a ```json block). Errors say which was read and why it
/// holds no findings.
pub fn collect_findings(file: &Path, final_screen: Option<&str>) -> Result<Vec<Finding>, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => findings::parse(&text).map_err(|e| format!("{}: {e}", file.display())),
        Err(_) => match final_screen {
            Some(s) => findings::parse(s).map_err(|e| {
                format!(
                    "{} was not written and the reviewer's final screen holds none: {e}",
                    file.display()
                )
            }),
            None => Err(format!(
                "{} was not written and the reviewer left no final message",
                file.display()
            )),
        },
    }
}

fn conflict(c: crate::host::integrate::Conflict) -> ConflictInfo {
    ConflictInfo {
        path: c.path,
        ours: c.ours,
        theirs: c.theirs,
        hunks: c.hunks,
    }
}

/// Merges `branch` into `into` (in memory, see [`crate::host::integrate::merge_into`]).
pub fn merge(
    repo: &Path,
    into: &str,
    branch: &str,
    mode: crate::core::config::lifecycle::MergeModeConfig,
    message: &str,
) -> MergeOutcome {
    use crate::core::config::lifecycle::MergeModeConfig as M;
    use crate::host::integrate::{MergeMode, MergeResult};
    let mode = match mode {
        M::FfOrMerge => MergeMode::FfOrMerge,
        M::Ff => MergeMode::FastForward,
        M::Merge => MergeMode::MergeCommit,
    };
    match crate::host::integrate::merge_into(repo, into, branch, mode, message) {
        Ok(MergeResult::UpToDate) => MergeOutcome::UpToDate,
        Ok(MergeResult::Merged {
            commit,
            fast_forward,
        }) => MergeOutcome::Merged {
            commit,
            fast_forward,
        },
        Ok(MergeResult::Conflicts(list)) => {
            MergeOutcome::Conflicts(list.into_iter().map(conflict).collect())
        }
        // Fast-forward only and diverged: the task must take the integration branch in first,
        // which is what a resolve round does (its conflicts may be none).
        Ok(MergeResult::Diverged { conflicts }) => {
            let mut list: Vec<ConflictInfo> = conflicts.into_iter().map(conflict).collect();
            if list.is_empty() {
                list.push(ConflictInfo {
                    path: format!("(no conflicting file: {into} has commits the branch lacks and merge.mode = \"ff\")"),
                    ..Default::default()
                });
            }
            MergeOutcome::Conflicts(list)
        }
        Err(e) => MergeOutcome::Failed(e.to_string()),
    }
}

/// Predicted conflicts per other side (`None`: the integration branch).
pub type Predictions = Vec<(Option<usize>, Vec<ConflictInfo>)>;

/// One side of a prediction: a branch, and the worktree whose files as they are now (uncommitted
/// edits included) stand for it when it exists.
#[derive(Debug, Clone)]
pub struct Side {
    /// The branch (also the name the conflict text shows).
    pub branch: String,
    /// The task's worktree; `None` for the integration branch.
    pub worktree: Option<PathBuf>,
}

/// The revision a side stands for: a snapshot of its worktree, else its branch (a snapshot
/// that fails is reported in `errors` and the branch's commits stand in).
fn side_rev(side: &Side, errors: &mut Vec<String>) -> String {
    match side.worktree.as_deref().filter(|w| w.exists()) {
        Some(w) => match crate::host::integrate::snapshot_worktree(w) {
            Ok(commit) => commit,
            Err(e) => {
                errors.push(format!("{e} (predicting on {}'s commits)", side.branch));
                side.branch.clone()
            }
        },
        None => side.branch.clone(),
    }
}

/// Predicts conflicts of `ours` against each other side, in memory, with the lane's long-lived
/// `predictor` (opened on first use; answers cached per pair of commits). Returns the
/// predictions that could be made and the errors of the rest (one sentence).
pub fn predict(
    predictor: &mut Option<crate::host::integrate::Predictor>,
    repo: &Path,
    ours: &Side,
    against: &[(Option<usize>, Side)],
) -> (Predictions, Option<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    if predictor.is_none() {
        match crate::host::integrate::Predictor::open(repo) {
            Ok(p) => *predictor = Some(p),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    let Some(p) = predictor.as_mut() else {
        return (out, None);
    };
    let mine = side_rev(ours, &mut errors);
    for (who, other) in against {
        let theirs = side_rev(other, &mut errors);
        match p.predict_labeled(&mine, &theirs, &ours.branch, &other.branch) {
            Ok(list) => out.push((*who, list.into_iter().map(conflict).collect())),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (out, error)
}

/// Pushes the task's branch ([`crate::host::pr::push`]) and opens its pull request
/// ([`crate::host::pr::create`], body by [`crate::host::pr::body`] with the files changed since the merge base
/// of `req.diff_from` and the branch) — or, with `req.existing`, only pushes. Returns the pull
/// request's number; errors are [`crate::host::pr::PrError`]'s sentences (with the fix).
pub fn open_pr(repo: &Path, req: &PrRequest) -> Result<u64, String> {
    crate::host::pr::push(repo, &req.remote, &req.branch).map_err(|e| e.to_string())?;
    if let Some(n) = req.existing {
        return Ok(n);
    }
    let mut summary = req.summary.clone();
    if let Some(files) = changed_since_fork(repo, &req.diff_from, &req.branch) {
        summary.files = files;
    }
    let spec = crate::host::pr::PrSpec {
        title: req.title.clone(),
        body: crate::host::pr::body(&summary),
        base: req.base.clone(),
        head: req.branch.clone(),
    };
    crate::host::pr::create(&req.gh, repo, &spec).map_err(|e| e.to_string())
}

/// Files changed on `branch` since it forked from `from`; `None` when git cannot tell.
fn changed_since_fork(repo: &Path, from: &str, branch: &str) -> Option<Vec<String>> {
    let r = git2::Repository::open(repo).ok()?;
    let a = r.revparse_single(from).ok()?.peel_to_commit().ok()?.id();
    let b = r.revparse_single(branch).ok()?.peel_to_commit().ok()?.id();
    let base = r.merge_base(a, b).ok()?;
    crate::host::git::changed_paths(repo, &base.to_string(), branch).ok()
}

/// Reads a pull request's state ([`crate::host::pr::view`]); when changes are requested, also what the
/// reviewers wrote ([`crate::host::pr::requested_changes`], for the fix round's prompt; a failure to
/// read it leaves the text empty and the prompt points at the pull request).
pub fn poll_pr(repo: &Path, gh: &[String], number: u64) -> Result<PrStatus, String> {
    use crate::host::pr::PrState;
    Ok(
        match crate::host::pr::view(gh, repo, number).map_err(|e| e.to_string())? {
            PrState::Open => PrStatus::Open,
            PrState::Merged => PrStatus::Merged,
            PrState::Closed => PrStatus::Closed,
            PrState::ChangesRequested => PrStatus::ChangesRequested(
                crate::host::pr::requested_changes(gh, repo, number).unwrap_or_default(),
            ),
        },
    )
}

/// The start of a resolve round: merges `branch` (the integration branch) into the task's
/// branch in its worktree with [`crate::host::integrate::merge_in_worktree`] (committed when clean,
/// else conflict markers and `MERGE_HEAD` left for the agent; a merge already under way is left
/// as it is). Errors name the worktree and the fix.
pub fn merge_into_worktree(worktree: &Path, branch: &str) -> Result<(), String> {
    let message = format!("Merge {branch} (switchyard resolve round)");
    crate::host::integrate::merge_in_worktree(worktree, branch, &message)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_come_from_the_file_else_the_final_screen() {
        let dir = tempfile::tempdir().unwrap();
        let file = findings_path(dir.path(), "t1", 1);
        assert!(file.ends_with("t1.review-1.json"));
        let screen = "done\n```json\n[{\"severity\":\"major\",\"message\":\"m\"}]\n```\n";
        assert_eq!(collect_findings(&file, Some(screen)).unwrap().len(), 1);
        let err = collect_findings(&file, None).unwrap_err();
        assert!(err.contains("was not written"), "{err}");
        std::fs::write(&file, "[]").unwrap();
        assert!(collect_findings(&file, Some(screen)).unwrap().is_empty());
        std::fs::write(&file, "{\"findings\": 3}").unwrap();
        assert!(collect_findings(&file, None)
            .unwrap_err()
            .contains("t1.review-1.json"));
    }

    #[test]
    fn a_missing_gh_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = poll_pr(dir.path(), &["/nonexistent/gh".into()], 3).unwrap_err();
        assert!(
            err.contains("was not found") && err.contains("cli.github.com"),
            "{err}"
        );
    }
}
