//! Pull requests: push a task's branch with the git CLI and open / follow its pull request with
//! the GitHub CLI `gh`. Everything goes through argv ([`std::process::Command`]), never a shell
//! string; the `gh` command is a parameter (an argv prefix, the config's `pr.gh`, e.g. `["gh"]`)
//! so tests put a fake one in its place.
//!
//! Interface (the runtime calls these on a job thread; each call is bounded in time):
//! - [`push`]`(repo, remote, branch)`: `git push <remote> refs/heads/B:refs/heads/B` (git2 is
//!   built without network support, so pushing is the one thing done with the git CLI).
//! - [`create`]`(gh, repo, spec) -> PR number`: `gh pr create [--base B] --head H --title --body`.
//! - [`view`]`(gh, repo, number) -> PrState`: `gh pr view N --json state,mergedAt,reviewDecision`.
//! - [`requested_changes`]`(gh, repo, number) -> text`: what the reviewers who requested changes
//!   wrote (`gh pr view N --json reviews`), for the prompt of a fix round.
//! - [`body`]`(summary) -> text`: the PR's body: "Closes #N", files changed, verify and review
//!   results, attempts.
//!
//! Formats checked against the GitHub CLI manual for gh 2.x (cli.github.com/manual): `gh pr
//! create` prints the new pull request's URL (`…/pull/N`) on stdout; `gh pr view --json` prints
//! `{"state": "OPEN"|"CLOSED"|"MERGED", "mergedAt": null|time, "reviewDecision":
//! "APPROVED"|"CHANGES_REQUESTED"|"REVIEW_REQUIRED"|""}`; exit status 4 means authentication is
//! required (`gh help exit-codes`).

use crate::core::text::escape_control;
use crate::host::setup::{describe_status, run_bounded_split, Ran};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Time limit for one `git push`.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Time limit for one `gh` call.
pub const GH_TIMEOUT: Duration = Duration::from_secs(60);
/// Most changed files named in a PR body; the rest are counted.
pub const MAX_BODY_FILES: usize = 50;

/// What a pull request is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrSpec {
    /// The task's title.
    pub title: String,
    /// See [`body`].
    pub body: String,
    /// The branch it merges into (e.g. `main`); `None`: gh's default (the repository's default
    /// branch).
    pub base: Option<String>,
    /// The task's branch (pushed first with [`push`]).
    pub head: String,
}

/// A pull request's state as switchyard follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    /// Open, no changes requested.
    Open,
    /// Open, and a reviewer requested changes (`reviewDecision` `CHANGES_REQUESTED`).
    ChangesRequested,
    /// Merged (`state` `MERGED`, or a `mergedAt` time).
    Merged,
    /// Closed without merging.
    Closed,
}

/// Why a push or a `gh` call did not work; each message ends with the fix.
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// The `gh` program is not there (or `pr.gh` is empty).
    #[error("the GitHub CLI {} was not found: install gh (https://cli.github.com), or set `pr.gh` in switchyard.toml to its path", gh.display())]
    GhNotFound {
        /// The program that was tried.
        gh: PathBuf,
    },
    /// gh is there but not logged in (exit status 4, or it said so).
    #[error(
        "gh is not authenticated ({}); run `gh auth login`, then retry the task",
        escape_control(detail)
    )]
    NotAuthenticated {
        /// gh's own line about it.
        detail: String,
    },
    /// The repository has no such remote.
    #[error("the repository {} has no remote {}; add one (`git remote add {} URL`) or set `finish` to something other than \"pr\"", repo.display(), escape_control(remote), escape_control(remote))]
    NoRemote {
        /// The repository.
        repo: PathBuf,
        /// The remote's name.
        remote: String,
    },
    /// git push failed; `line` is the line of git's stderr that says why.
    #[error("pushing {} to {} was rejected: {}; bring the branch up to date with the remote's (or check your access to the remote), then retry the task", escape_control(branch), escape_control(remote), escape_control(line))]
    PushRejected {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
        /// git's reason (`! [rejected] … (non-fast-forward)`, `fatal: …`).
        line: String,
    },
    /// A command could not be started, ran too long or failed otherwise.
    #[error(
        "{} failed ({status}): {}; fix what it says, then retry the task",
        escape_control(what),
        escape_control(line)
    )]
    Failed {
        /// The command, for display (`gh pr create`, `git push origin b`).
        what: String,
        /// `exit status 1`, `timed out after 60 s`, ….
        status: String,
        /// The most telling line of its output.
        line: String,
    },
    /// gh answered something switchyard cannot read.
    #[error("{} printed something switchyard cannot read ({}): {}; check `gh --version` (checked against gh 2.x)", escape_control(what), escape_control(problem), escape_control(output))]
    Unreadable {
        /// The command.
        what: String,
        /// What was wrong with it.
        problem: String,
        /// The output (first 200 characters).
        output: String,
    },
}

/// Pushes `branch` to `remote` (`git push --porcelain <remote> refs/heads/B:refs/heads/B`, no
/// prompts: `GIT_TERMINAL_PROMPT=0`), at most [`PUSH_TIMEOUT`].
///
/// Errors: [`PrError::NoRemote`] when the remote is not configured (checked first, offline);
/// [`PrError::PushRejected`] with git's reason; [`PrError::Failed`] when git cannot start or
/// times out.
pub fn push(repo: &Path, remote: &str, branch: &str) -> Result<(), PrError> {
    let has_remote = git2::Repository::open(repo)
        .ok()
        .is_some_and(|r| r.find_remote(remote).is_ok());
    if !has_remote {
        return Err(PrError::NoRemote {
            repo: repo.to_path_buf(),
            remote: remote.to_string(),
        });
    }
    let what = format!("git push {remote} {branch}");
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    let mut cmd = Command::new("git");
    cmd.args(["push", "--porcelain", "--", remote, &refspec])
        .current_dir(repo)
        .env("GIT_TERMINAL_PROMPT", "0");
    let ran = run(cmd, PUSH_TIMEOUT, &what)?;
    if ran.status.is_some_and(|s| s.success()) {
        return Ok(());
    }
    // --porcelain puts the per-ref result on stdout: `!\trefs/heads/b:refs/heads/b\t[rejected] (fetch first)`.
    let line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with('!'))
        .map(|l| l.split('\t').skip(2).collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .or_else(|| telling_line(&ran.output))
        .unwrap_or_else(|| describe_status(ran.status));
    Err(PrError::PushRejected {
        remote: remote.to_string(),
        branch: branch.to_string(),
        line,
    })
}

/// Opens a pull request (`<gh…> pr create [--base B] --head H --title T --body BODY`, run in
/// `repo`, at most [`GH_TIMEOUT`]) and returns its number, read from the URL gh prints. `gh` is
/// the argv prefix (program first).
///
/// Errors: [`PrError::GhNotFound`], [`PrError::NotAuthenticated`], [`PrError::Failed`] (gh's
/// reason, e.g. a pull request for the branch exists already), [`PrError::Unreadable`] when no
/// `…/pull/N` URL is printed.
pub fn create(gh: &[String], repo: &Path, spec: &PrSpec) -> Result<u64, PrError> {
    let what = "gh pr create";
    let mut cmd = gh_command(gh)?;
    cmd.args(["pr", "create"]);
    if let Some(base) = &spec.base {
        cmd.args(["--base", base]);
    }
    cmd.args(["--head", &spec.head])
        .args(["--title", &spec.title, "--body", &spec.body])
        .current_dir(repo)
        .env("GH_PROMPT_DISABLED", "1");
    let ran = gh_run(gh, cmd, what)?;
    ran.stdout
        .split_whitespace()
        .rev()
        .find_map(|w| {
            let (_, n) = w.trim_end_matches('/').rsplit_once("/pull/")?;
            n.parse::<u64>().ok()
        })
        .ok_or_else(|| PrError::Unreadable {
            what: what.into(),
            problem: "no pull request URL (…/pull/N)".into(),
            output: ran.stdout.chars().take(200).collect(),
        })
}

/// Reads a pull request's state (`gh pr view N --json state,mergedAt,reviewDecision`, run in
/// `repo`, at most [`GH_TIMEOUT`]). Poll it at a bounded rate: each call is a GitHub API request.
///
/// Errors: as [`create`]; [`PrError::Unreadable`] when the JSON lacks `state` or has an unknown one.
pub fn view(gh: &[String], repo: &Path, number: u64) -> Result<PrState, PrError> {
    let what = format!("gh pr view {number}");
    let mut cmd = gh_command(gh)?;
    cmd.args(["pr", "view", &number.to_string()])
        .args(["--json", "state,mergedAt,reviewDecision"])
        .current_dir(repo)
        .env("GH_PROMPT_DISABLED", "1");
    let ran = gh_run(gh, cmd, &what)?;
    parse_view(&ran.stdout).map_err(|problem| PrError::Unreadable {
        what,
        problem,
        output: ran.stdout.chars().take(200).collect(),
    })
}

/// What the reviewers who requested changes on pull request `number` wrote, for the prompt of a
/// fix round: for each reviewer whose latest review is `CHANGES_REQUESTED`, `@login: body` (in
/// review order; at most [`MAX_REQUESTED`] bytes). Reads `<gh…> pr view N --json reviews`
/// (`{"reviews": [{"author": {"login"}, "state", "body", "submittedAt"}]}`). Text from GitHub:
/// escape it before it reaches a terminal.
///
/// Errors: as [`view`]; [`PrError::Unreadable`] when the JSON lacks `reviews`.
pub fn requested_changes(gh: &[String], repo: &Path, number: u64) -> Result<String, PrError> {
    let what = format!("gh pr view {number} --json reviews");
    let mut cmd = gh_command(gh)?;
    cmd.args(["pr", "view", &number.to_string(), "--json", "reviews"])
        .current_dir(repo)
        .env("GH_PROMPT_DISABLED", "1");
    let ran = gh_run(gh, cmd, &what)?;
    parse_requested(&ran.stdout).map_err(|problem| PrError::Unreadable {
        what,
        problem,
        output: ran.stdout.chars().take(200).collect(),
    })
}

/// Most bytes of [`requested_changes`]' text.
pub const MAX_REQUESTED: usize = 8192;

/// Reads `gh pr view --json reviews` output into the text of [`requested_changes`].
pub fn parse_requested(json: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Author {
        #[serde(default)]
        login: String,
    }
    #[derive(Deserialize)]
    struct Review {
        #[serde(default)]
        author: Option<Author>,
        #[serde(default)]
        state: String,
        #[serde(default)]
        body: String,
    }
    #[derive(Deserialize)]
    struct Reviews {
        reviews: Vec<Review>,
    }
    let v: Reviews =
        serde_json::from_str(json.trim()).map_err(|e| format!("not the JSON asked for: {e}"))?;
    let login = |r: &Review| {
        r.author
            .as_ref()
            .map(|a| a.login.clone())
            .unwrap_or_default()
    };
    // A reviewer's latest review decides (comments alone do not change it).
    let mut latest: Vec<(String, &Review)> = Vec::new();
    for r in &v.reviews {
        if !matches!(
            r.state.as_str(),
            "CHANGES_REQUESTED" | "APPROVED" | "DISMISSED"
        ) {
            continue;
        }
        let who = login(r);
        latest.retain(|(w, _)| *w != who);
        latest.push((who, r));
    }
    let mut out = String::new();
    for (who, r) in latest
        .iter()
        .filter(|(_, r)| r.state == "CHANGES_REQUESTED")
    {
        let body = if r.body.trim().is_empty() {
            "(no text: see the review's comments on GitHub)"
        } else {
            r.body.trim()
        };
        out.push_str(&format!("@{who}: {body}\n\n"));
    }
    if out.len() > MAX_REQUESTED {
        let mut cut = MAX_REQUESTED;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n… (cut)\n");
    }
    Ok(out.trim_end().to_string())
}

/// Reads `gh pr view --json state,mergedAt,reviewDecision` output.
pub fn parse_view(json: &str) -> Result<PrState, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct View {
        state: String,
        #[serde(default)]
        merged_at: Option<String>,
        #[serde(default)]
        review_decision: Option<String>,
    }
    let v: View =
        serde_json::from_str(json.trim()).map_err(|e| format!("not the JSON asked for: {e}"))?;
    let merged = v.merged_at.as_deref().is_some_and(|m| !m.is_empty());
    match v.state.as_str() {
        "MERGED" => Ok(PrState::Merged),
        _ if merged => Ok(PrState::Merged),
        "CLOSED" => Ok(PrState::Closed),
        "OPEN" if v.review_decision.as_deref() == Some("CHANGES_REQUESTED") => {
            Ok(PrState::ChangesRequested)
        }
        "OPEN" => Ok(PrState::Open),
        other => Err(format!("unknown state {other:?}")),
    }
}

/// What a PR body summarizes about a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrSummary {
    /// The task's id.
    pub task_id: String,
    /// The task's issue: the body says `Closes #N`.
    pub issue: Option<u64>,
    /// Files changed on the branch (paths), e.g. from [`crate::host::git::changed_paths`].
    pub files: Vec<String>,
    /// The verify result, e.g. "passed: cargo test"; `None` when the task has no verify command.
    pub verify: Option<String>,
    /// The review result, e.g. "2 rounds; last: no findings at or above major"; `None` without review.
    pub review: Option<String>,
    /// Worker starts (the first included).
    pub attempts: u32,
}

/// The pull request body for a task: `Closes #N` (when it has an issue), the files changed (at
/// most [`MAX_BODY_FILES`] named), verify and review results, attempts, and a line saying
/// switchyard opened it. Markdown.
pub fn body(s: &PrSummary) -> String {
    let mut out = String::new();
    if let Some(n) = s.issue {
        out.push_str(&format!("Closes #{n}\n\n"));
    }
    out.push_str(&format!("## Files changed ({})\n\n", s.files.len()));
    for f in s.files.iter().take(MAX_BODY_FILES) {
        out.push_str(&format!("- `{}`\n", f.replace('`', "'")));
    }
    if s.files.len() > MAX_BODY_FILES {
        out.push_str(&format!(
            "- … and {} more\n",
            s.files.len() - MAX_BODY_FILES
        ));
    }
    out.push_str("\n## Checks\n\n");
    out.push_str(&format!(
        "- Verify: {}\n",
        s.verify.as_deref().unwrap_or("no verify command")
    ));
    out.push_str(&format!(
        "- Review: {}\n",
        s.review.as_deref().unwrap_or("no review")
    ));
    out.push_str(&format!("- Attempts: {}\n", s.attempts));
    out.push_str(&format!(
        "\nOpened by switchyard for task `{}`.\n",
        s.task_id.replace('`', "'")
    ));
    out
}

fn run(cmd: Command, timeout: Duration, what: &str) -> Result<Ran, PrError> {
    let ran = run_bounded_split(cmd, timeout).map_err(|e| PrError::Failed {
        what: what.into(),
        status: "could not start".into(),
        line: e.to_string(),
    })?;
    if ran.timed_out {
        return Err(PrError::Failed {
            what: what.into(),
            status: format!("timed out after {} s", timeout.as_secs()),
            line: telling_line(&ran.output).unwrap_or_else(|| "no output".into()),
        });
    }
    Ok(ran)
}

/// A [`Command`] for the argv prefix `gh` (program first).
fn gh_command(gh: &[String]) -> Result<Command, PrError> {
    let (program, args) = gh.split_first().ok_or_else(|| PrError::GhNotFound {
        gh: PathBuf::from("(pr.gh is empty)"),
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

fn gh_run(gh: &[String], mut cmd: Command, what: &str) -> Result<Ran, PrError> {
    // Never wait on a pager or a prompt.
    cmd.env("GH_PAGER", "cat").env("NO_COLOR", "1");
    let ran = match run_bounded_split(cmd, GH_TIMEOUT) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PrError::GhNotFound {
                gh: PathBuf::from(gh.first().map(String::as_str).unwrap_or("")),
            })
        }
        Err(e) => {
            return Err(PrError::Failed {
                what: what.into(),
                status: "could not start".into(),
                line: e.to_string(),
            })
        }
        Ok(r) => r,
    };
    if ran.timed_out {
        return Err(PrError::Failed {
            what: what.into(),
            status: format!("timed out after {} s", GH_TIMEOUT.as_secs()),
            line: telling_line(&ran.output).unwrap_or_else(|| "no output".into()),
        });
    }
    if ran.status.is_some_and(|s| s.success()) {
        return Ok(ran);
    }
    let line = telling_line(&ran.output).unwrap_or_else(|| "no output".into());
    let auth = ran.status.and_then(|s| s.code()) == Some(4) || {
        let l = ran.output.to_ascii_lowercase();
        l.contains("gh auth login") || l.contains("not logged in")
    };
    if auth {
        return Err(PrError::NotAuthenticated { detail: line });
    }
    Err(PrError::Failed {
        what: what.into(),
        status: describe_status(ran.status),
        line,
    })
}

/// The line of an error output that says most: the first `error:`/`fatal:`/`! ` line, else
/// its first two non-empty lines (gh says what and then where).
fn telling_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("error") || l.starts_with("fatal") || l.starts_with("! ")
        })
        .map(|l| l.to_string())
        .or_else(|| (!lines.is_empty()).then(|| lines[..lines.len().min(2)].join(" ")))
        .map(|l| l.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_states() {
        let s = |j: &str| parse_view(j);
        assert_eq!(
            s(r#"{"state":"OPEN","mergedAt":null,"reviewDecision":""}"#),
            Ok(PrState::Open)
        );
        assert_eq!(
            s(r#"{"state":"OPEN","mergedAt":null,"reviewDecision":"CHANGES_REQUESTED"}"#),
            Ok(PrState::ChangesRequested)
        );
        assert_eq!(
            s(
                r#"{"state":"MERGED","mergedAt":"2026-01-02T03:04:05Z","reviewDecision":"APPROVED"}"#
            ),
            Ok(PrState::Merged)
        );
        assert_eq!(
            s(r#"{"state":"CLOSED","mergedAt":null}"#),
            Ok(PrState::Closed)
        );
        assert!(s(r#"{"state":"DRAFTY"}"#).unwrap_err().contains("DRAFTY"));
        assert!(s("not json").is_err());
    }

    #[test]
    fn requested_changes_take_each_reviewers_latest_word() {
        let j = r#"{"reviews":[
            {"author":{"login":"ann"},"state":"CHANGES_REQUESTED","body":"rename x","submittedAt":"1"},
            {"author":{"login":"bob"},"state":"CHANGES_REQUESTED","body":"add a test","submittedAt":"2"},
            {"author":{"login":"ann"},"state":"COMMENTED","body":"see line 3","submittedAt":"3"},
            {"author":{"login":"bob"},"state":"APPROVED","body":"","submittedAt":"4"},
            {"author":{"login":"cy"},"state":"CHANGES_REQUESTED","body":"","submittedAt":"5"}]}"#;
        assert_eq!(
            parse_requested(j).unwrap(),
            "@ann: rename x\n\n@cy: (no text: see the review's comments on GitHub)"
        );
        assert_eq!(parse_requested(r#"{"reviews":[]}"#).unwrap(), "");
        assert!(parse_requested("{}").is_err());
    }

    #[test]
    fn body_closes_the_issue_and_summarizes() {
        let b = body(&PrSummary {
            task_id: "t1".into(),
            issue: Some(42),
            files: (0..53).map(|i| format!("src/f{i}.rs")).collect(),
            verify: Some("passed: cargo test".into()),
            review: Some("1 fix round; no findings left at or above major".into()),
            attempts: 2,
        });
        assert!(b.starts_with("Closes #42\n"), "{b}");
        assert!(b.contains("## Files changed (53)"));
        assert!(b.contains("- `src/f49.rs`\n- … and 3 more\n"), "{b}");
        assert!(b.contains("- Verify: passed: cargo test\n"));
        assert!(b.contains("- Review: 1 fix round"));
        assert!(b.contains("- Attempts: 2\n"));
        let b = body(&PrSummary {
            task_id: "t2".into(),
            ..Default::default()
        });
        assert!(!b.contains("Closes"), "{b}");
        assert!(b.contains("- Verify: no verify command"));
    }

    #[test]
    fn the_telling_line_prefers_errors() {
        assert_eq!(
            telling_line(
                "To x\n ! [rejected] b -> b (fetch first)\nerror: failed to push\nhint: …\n"
            ),
            Some("! [rejected] b -> b (fetch first)".into())
        );
        assert_eq!(telling_line("a\n\nb\nc\n"), Some("a b".into()));
        assert_eq!(telling_line(""), None);
    }
}
