//! Lifecycle settings after a task's agent is done: review and fix rounds (`[review]`), the
//! merge queue (`[merge]`), early conflict warnings (`[warn]`) and the finish (`finish`,
//! `[pr]`). Every table is optional; the shipped defaults (assets/switchyard.toml) leave
//! review, the merge queue and pull requests off, so a task ends `complete` on its branch.

use crate::core::findings::Severity;
use serde::Deserialize;

/// `[review]`: an optional review after verify, and fix rounds for what it finds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// Review every task (a task's own `"review": false|true` in the manifest overrides it).
    pub enabled: bool,
    /// Agent profile the reviewer runs with; the task's own profile when absent.
    pub agent: Option<String>,
    /// Findings at or above this severity (`critical`, `major`, `minor`) send the task to a
    /// fix round.
    pub block_on: Severity,
    /// Most fix rounds per task; blocking findings after the last one make it `needs_attention`.
    pub max_rounds: u32,
    /// The reviewer's prompt. Placeholders: `{id} {issue} {title} {findings_file} {round}`.
    pub prompt: String,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            enabled: false,
            agent: None,
            block_on: Severity::Major,
            max_rounds: 2,
            prompt: DEFAULT_REVIEW_PROMPT.into(),
        }
    }
}

/// The reviewer's default prompt (role: reviewer, read-only).
pub const DEFAULT_REVIEW_PROMPT: &str = "You are the reviewer of task {id} (\"{title}\"), review round {round}. \
Read-only: do not edit, commit or push anything. Review the commits on this branch against the base for bugs, \
missing pieces and risks. Write your findings as a JSON array to {findings_file}: \
[{\"severity\": \"critical|major|minor\", \"file\": \"path\", \"line\": 12, \"message\": \"what is wrong and how to fix it\"}] \
(an empty array [] when you find nothing), or end your final message with that array in a ```json block. Then exit.";

/// How a finished branch lands in the integration branch.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MergeModeConfig {
    /// Fast-forward when possible, else a merge commit.
    #[default]
    FfOrMerge,
    /// Fast-forward only; a diverged integration branch is a conflict-free failure → resolve.
    Ff,
    /// Always a merge commit.
    Merge,
}

/// What a merge conflict leads to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// A resolve round: the integration branch is merged into the task's branch in its
    /// worktree (conflict markers left) and the agent resolves and commits.
    #[default]
    Resolve,
    /// The task needs a person.
    NeedsAttention,
}

/// `[merge]`: the merge queue into the integration branch.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Merge finished tasks, in dependency order, into `into`.
    pub enabled: bool,
    /// The integration branch (created from `base` when missing); may be the base branch.
    pub into: String,
    /// `ff-or-merge`, `ff` or `merge`.
    pub mode: MergeModeConfig,
    /// `resolve` (a resolve round) or `needs_attention`.
    pub on_conflict: OnConflict,
    /// Most resolve rounds per task before it needs a person.
    pub max_resolve_rounds: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            enabled: false,
            into: "switchyard/integration".into(),
            mode: MergeModeConfig::FfOrMerge,
            on_conflict: OnConflict::Resolve,
            max_resolve_rounds: 2,
        }
    }
}

/// `[warn]`: early conflict warnings while tasks run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WarnConfig {
    /// Predict conflicts of running branches (against the integration branch when the merge
    /// queue is on, and against each other).
    pub enabled: bool,
    /// At most one prediction per task this often (ms).
    pub interval_ms: u64,
    /// A prediction waits until the worktree was quiet this long (ms) after a change.
    pub quiet_ms: u64,
    /// A predicted conflict stops the later of the two tasks for a person (`needs_attention`).
    pub pause_on_conflict: bool,
}

impl Default for WarnConfig {
    fn default() -> Self {
        WarnConfig {
            enabled: true,
            interval_ms: 10_000,
            quiet_ms: 1_000,
            pause_on_conflict: false,
        }
    }
}

/// What finishes a task after review (and the merge queue).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The work stays on its branch (and in the integration branch): `complete`.
    #[default]
    Branch,
    /// Push the branch and open a pull request: `pr_open`, then `merged`.
    Pr,
}

/// `[pr]`: pull requests when `finish = "pr"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrConfig {
    /// The remote branches are pushed to.
    pub remote: String,
    /// The branch pull requests target; when absent, `merge.into` if the merge queue is on,
    /// else the repository's default branch (gh's choice).
    pub base: Option<String>,
    /// The GitHub CLI (argv prefix, no shell).
    pub gh: Vec<String>,
    /// Poll each open pull request at most this often (ms).
    pub poll_ms: u64,
    /// A pull request with requested changes goes back to its agent for a fix round.
    pub fix_on_changes_requested: bool,
    /// The run goes on until every pull request is merged or closed (else `pr_open` ends it).
    pub wait_for_merge: bool,
}

impl Default for PrConfig {
    fn default() -> Self {
        PrConfig {
            remote: "origin".into(),
            base: None,
            gh: vec!["gh".into()],
            poll_ms: 60_000,
            fix_on_changes_requested: true,
            wait_for_merge: false,
        }
    }
}

/// Everything the engine needs for the lifecycle, compiled into [`crate::core::config::Policy`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifecycle {
    /// `[review]`.
    pub review: ReviewConfig,
    /// `[merge]`.
    pub merge: MergeConfig,
    /// `[warn]`.
    pub warn: WarnConfig,
    /// `finish`.
    pub finish: Finish,
    /// `[pr]`.
    pub pr: PrConfig,
}

impl Lifecycle {
    /// Checks the values a TOML type cannot: errors name the key and the fix.
    pub fn check(
        &self,
        agents: &std::collections::BTreeMap<String, crate::core::config::AgentProfile>,
    ) -> Result<(), String> {
        if let Some(a) = &self.review.agent {
            if !agents.contains_key(a) {
                return Err(format!(
                    "review.agent {a:?} is not a profile under [agents]"
                ));
            }
        }
        if self.merge.enabled && self.merge.into.trim().is_empty() {
            return Err("merge.into is empty: name the integration branch (e.g. \"switchyard/integration\")".into());
        }
        if self.finish == Finish::Pr && self.pr.gh.is_empty() {
            return Err("pr.gh is empty: give the GitHub CLI's argv, e.g. [\"gh\"]".into());
        }
        if self.pr.poll_ms < 1000 {
            return Err(format!(
                "pr.poll_ms is {}: poll at most once a second (1000 or more)",
                self.pr.poll_ms
            ));
        }
        Ok(())
    }
}
