//! The shell's side of the lifecycle stages (see [`crate::engine::lifecycle`]): each function
//! does one piece of git or GitHub work for a job lane and returns the engine's plain answer.
//! Nothing here decides anything; errors come back as one sentence with the fix.
//!
//! Merges and predictions are computed in memory by [`crate::integrate`] (git2: no checkout of
//! anyone's working copy). Pushes run `git push`, pull requests the GitHub CLI (`gh`, checked
//! against gh 2.x: `pr create --head --base --title --body` prints the URL; `pr view N --json
//! state,reviewDecision` prints `{"state":"OPEN|MERGED|CLOSED","reviewDecision":"…"}`), always
//! as argv, never through a shell.

use crate::engine::{ConflictInfo, MergeOutcome, PrRequest, PrStatus};
use crate::findings::{self, Finding};
use std::path::Path;
use std::process::Command;

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

fn conflict(c: crate::integrate::Conflict) -> ConflictInfo {
    ConflictInfo {
        path: c.path,
        ours: c.ours,
        theirs: c.theirs,
        hunks: c.hunks,
    }
}

/// Merges `branch` into `into` (in memory, see [`crate::integrate::merge_into`]).
pub fn merge(
    repo: &Path,
    into: &str,
    branch: &str,
    mode: crate::config::lifecycle::MergeModeConfig,
    message: &str,
) -> MergeOutcome {
    use crate::config::lifecycle::MergeModeConfig as M;
    use crate::integrate::{MergeMode, MergeResult};
    let mode = match mode {
        M::FfOrMerge => MergeMode::FfOrMerge,
        M::Ff => MergeMode::FastForward,
        M::Merge => MergeMode::MergeCommit,
    };
    match crate::integrate::merge_into(repo, into, branch, mode, message) {
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

/// Predicts conflicts of `branch` against each other side (in memory).
pub fn predict(
    repo: &Path,
    branch: &str,
    against: &[(Option<usize>, String)],
) -> (Predictions, Option<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (who, other) in against {
        match crate::integrate::predict(repo, branch, other) {
            Ok(list) => out.push((*who, list.into_iter().map(conflict).collect())),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (out, error)
}

/// Runs a command (argv) in `dir`; Ok(stdout) on success, Err(combined output) otherwise, or
/// Err with the fix when the program is missing.
fn run(argv: &[String], dir: &Path, missing_fix: &str) -> Result<String, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{program}` not found on PATH: {missing_fix}")
            } else {
                format!("cannot run `{program}`: {e}")
            }
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text.trim().to_string())
    }
}

const GH_FIX: &str = "install the GitHub CLI (https://cli.github.com) and run `gh auth login`, or set pr.gh in switchyard.toml";

fn gh_error(what: &str, out: String) -> String {
    let lower = out.to_ascii_lowercase();
    if lower.contains("auth login") || lower.contains("not logged") || lower.contains("authenticat")
    {
        format!(
            "{what}: gh is not authenticated ({}); run `gh auth login`",
            last_line(&out)
        )
    } else {
        format!("{what}: {}", last_line(&out))
    }
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Pushes the task's branch and opens its pull request (or, with `existing`, only pushes).
/// Returns the pull request's number.
pub fn open_pr(repo: &Path, req: &PrRequest) -> Result<u64, String> {
    let push: Vec<String> = ["git", "push", "--set-upstream", &req.remote, &req.branch]
        .iter()
        .map(|s| s.to_string())
        .collect();
    run(&push, repo, "install git").map_err(|out| {
        format!(
            "git push {} {} was rejected: {}; check the remote's URL and your permission to push, and that the branch is not behind the remote",
            req.remote,
            req.branch,
            last_line(&out)
        )
    })?;
    if let Some(n) = req.existing {
        return Ok(n);
    }
    let mut argv = req.gh.clone();
    argv.extend(["pr", "create", "--head", &req.branch].map(String::from));
    if let Some(base) = &req.base {
        argv.extend(["--base".to_string(), base.clone()]);
    }
    argv.extend(["--title", &req.title, "--body", &req.body].map(String::from));
    let out = run(&argv, repo, GH_FIX).map_err(|o| gh_error("gh pr create failed", o))?;
    // gh prints the pull request's URL: .../pull/<n>
    out.lines()
        .rev()
        .find_map(|l| l.trim().rsplit('/').next()?.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "gh pr create printed no pull request URL: {}",
                last_line(&out)
            )
        })
}

/// Reads a pull request's state with `gh pr view N --json state,reviewDecision`.
pub fn poll_pr(repo: &Path, gh: &[String], number: u64) -> Result<PrStatus, String> {
    let mut argv = gh.to_vec();
    argv.extend(
        [
            "pr",
            "view",
            &number.to_string(),
            "--json",
            "state,reviewDecision",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let out = run(&argv, repo, GH_FIX).map_err(|o| gh_error("gh pr view failed", o))?;
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("gh pr view printed no JSON ({e}): {}", last_line(&out)))?;
    let state = v["state"].as_str().unwrap_or("").to_ascii_uppercase();
    let decision = v["reviewDecision"]
        .as_str()
        .unwrap_or("")
        .to_ascii_uppercase();
    Ok(match state.as_str() {
        "MERGED" => PrStatus::Merged,
        "CLOSED" => PrStatus::Closed,
        _ if decision == "CHANGES_REQUESTED" => PrStatus::ChangesRequested(String::new()),
        _ => PrStatus::Open,
    })
}

/// Merges `branch` into the task's branch in its worktree, leaving conflict markers for the
/// agent (the first start of a resolve round). A merge already under way is left as it is.
pub fn merge_into_worktree(worktree: &Path, branch: &str) -> Result<(), String> {
    let git_dir = run(
        &["git".into(), "rev-parse".into(), "--git-dir".into()],
        worktree,
        "install git",
    )?;
    let merge_head = worktree.join(git_dir.trim()).join("MERGE_HEAD");
    if merge_head.exists() {
        return Ok(());
    }
    let argv: Vec<String> = [
        "git",
        "-c",
        "user.name=switchyard",
        "-c",
        "user.email=switchyard@localhost",
        "merge",
        "--no-ff",
        "--no-edit",
        branch,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match run(&argv, worktree, "install git") {
        Ok(_) => Ok(()),
        // Conflicts: markers left in the files, MERGE_HEAD set: the agent's job now.
        Err(_) if merge_head.exists() => Ok(()),
        Err(out) => Err(format!(
            "merging {branch} into the worktree {} failed: {}",
            worktree.display(),
            last_line(&out)
        )),
    }
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
            err.contains("not found on PATH") && err.contains("gh auth login"),
            "{err}"
        );
    }
}
