//! The lifecycle after a task's agent is done (policy only, no I/O): review → fix rounds → the
//! merge queue (conflicts → resolve rounds) → finish (a pull request, followed to `merged`), and
//! early conflict warnings while tasks run. The shell carries out the effects (a reviewer worker,
//! git merges and predictions with git2, `git push` and `gh`) and answers with events.
//!
//! Stages, with the statuses they show:
//! - work: `running` (the implementer; verify runs before the task counts as done)
//! - review: `review` (a reviewer worker writes findings); blocking findings → fix
//! - fix: `fix` (the implementer again, the findings as the prompt; fix rounds do not use up
//!   restart attempts) → verify → review again
//! - merge: `merging` (queued, one merge at a time, dependency order); conflicts → a resolve
//!   round (`fix`) on top of the integration branch → merge again
//! - finish: `complete`, or with `finish = "pr"`: push + pull request → `pr_open` → `merged`
//!   (requested changes → a fix round, then pushed again)

use super::{Effect, Engine, Ms, StopReason};
use crate::core::config::lifecycle::{Finish, MergeModeConfig, OnConflict};
use crate::core::findings::{self, Finding};
use crate::core::manifest::Status;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a task's worker does in its current (or next) start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Round {
    /// The task's own work (the first run and its restarts).
    #[default]
    Work,
    /// Review round N (1-based): a reviewer, read-only, writes findings.
    Review(u32),
    /// Fix round N (1-based): the implementer works on findings or requested changes.
    Fix(u32),
    /// Resolve round N (1-based): the implementer resolves merge conflicts with the
    /// integration branch, merged into its branch in its worktree.
    Resolve(u32),
}

impl Round {
    /// `work`, `review 1`, `fix 2`, `resolve 1`.
    pub fn label(self) -> String {
        match self {
            Round::Work => "work".into(),
            Round::Review(n) => format!("review {n}"),
            Round::Fix(n) => format!("fix {n}"),
            Round::Resolve(n) => format!("resolve {n}"),
        }
    }

    /// The round a [`Round::label`] names (`fix 2` → `Fix(2)`); `None` for anything else.
    pub fn from_label(label: &str) -> Option<Round> {
        let (kind, n) = match label.split_once(' ') {
            Some((kind, n)) => (kind, n.parse::<u32>().ok().filter(|&n| n > 0)?),
            None if label == "work" => return Some(Round::Work),
            None => return None,
        };
        match kind {
            "review" => Some(Round::Review(n)),
            "fix" => Some(Round::Fix(n)),
            "resolve" => Some(Round::Resolve(n)),
            _ => None,
        }
    }

    /// The status a task shows while a worker does this round.
    pub fn status(self) -> Status {
        match self {
            Round::Work => Status::Running,
            Round::Review(_) => Status::Review,
            Round::Fix(_) | Round::Resolve(_) => Status::Fix,
        }
    }
}

/// The round counters a fix-like round counts against ([`Engine::count_round`]).
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// Fix rounds after reviews (`fixRounds`, limit `review.max_rounds`).
    Fixes,
    /// Fix rounds for requested changes on the pull request (`prFixRounds`, limit
    /// `review.max_rounds`).
    PrFixes,
    /// Resolve rounds (`resolveRounds`, limit `merge.max_resolve_rounds`).
    Resolves,
}

/// A conflict in one file between two branches, with line ranges (1-based, inclusive) on each
/// side and the conflicting hunks as text (for the prompt of a resolve round).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictInfo {
    /// The file, relative to the repository root.
    pub path: String,
    /// Line ranges on the task's side.
    pub ours: Vec<(u32, u32)>,
    /// Line ranges on the other side.
    pub theirs: Vec<(u32, u32)>,
    /// The conflicting hunks (diff3-style text), possibly shortened.
    pub hunks: String,
}

impl ConflictInfo {
    /// `src/a.rs lines 3-5 / 3-4`: the file with the ranges on both sides.
    pub fn describe(&self) -> String {
        let r = |v: &[(u32, u32)]| {
            v.iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        if self.ours.is_empty() && self.theirs.is_empty() {
            self.path.clone()
        } else {
            format!(
                "{} lines {} / {}",
                self.path,
                r(&self.ours),
                r(&self.theirs)
            )
        }
    }
}

/// What a merge into the integration branch did (the shell's answer to [`Effect::Merge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The integration branch already had every commit.
    UpToDate,
    /// Merged: the integration branch's new tip.
    Merged {
        /// The new commit (or the fast-forwarded tip).
        commit: String,
        /// True when it was a fast-forward.
        fast_forward: bool,
    },
    /// The branches conflict; nothing was changed.
    Conflicts(Vec<ConflictInfo>),
    /// git could not do it (the message says why and how to fix it).
    Failed(String),
}

/// A pull request's state as polled (the shell's answer to [`Effect::PollPr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrStatus {
    /// Open, no decision yet.
    Open,
    /// A reviewer requested changes; the text is what they asked for (may be empty).
    ChangesRequested(String),
    /// Merged.
    Merged,
    /// Closed without merging.
    Closed,
}

/// What the shell needs to push a branch and open (or update) its pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrRequest {
    /// The task's branch.
    pub branch: String,
    /// The remote to push to.
    pub remote: String,
    /// The branch the pull request targets; `None`: the repository's default branch (gh's).
    pub base: Option<String>,
    /// Title: the task's title (with its issue number).
    pub title: String,
    /// What the body summarizes ([`crate::host::pr::body`]); `files` holds the task's declared files,
    /// which the shell replaces with the files changed since `diff_from` when it can read them.
    pub summary: crate::host::pr::PrSummary,
    /// The revision the branch's changed files are counted from (the run's base branch; the
    /// merge base of it and the branch is used).
    pub diff_from: String,
    /// The pull request already opened for this branch: push only.
    pub existing: Option<u64>,
    /// The GitHub CLI's argv prefix.
    pub gh: Vec<String>,
}

/// A task's lifecycle bookkeeping beside its run state.
#[derive(Debug, Clone, Default)]
pub struct LifeRun {
    /// What the worker does now (or at its next start).
    pub round: Round,
    /// The next start begins a new round (it does not count as a restart attempt).
    pub fresh: bool,
    /// The prompt of the current fix or resolve round.
    pub round_prompt: Option<String>,
    /// Review rounds done.
    pub reviews: u32,
    /// Fix rounds after reviews done.
    pub fixes: u32,
    /// Fix rounds for requested changes on the pull request done.
    pub pr_fixes: u32,
    /// Resolve rounds done.
    pub resolves: u32,
    /// The latest review's findings.
    pub findings: Vec<Finding>,
    /// Predicted conflicts by the other side (a task id, or the integration branch's name).
    pub warnings: BTreeMap<String, Vec<ConflictInfo>>,
    /// A file changed since the last prediction, at this time (ms).
    pub changed_at: Option<Ms>,
    /// When the last prediction was asked for (ms).
    pub predicted_at: Option<Ms>,
    /// A prediction is under way.
    pub predicting: bool,
    /// A push / pull request is under way.
    pub pr_pending: bool,
    /// The pull request's number, once open.
    pub pr: Option<u64>,
    /// When the pull request was last polled (ms), and whether a poll is under way.
    pub polled_at: Option<Ms>,
    /// A poll is under way.
    pub polling: bool,
    /// The commit the task's branch landed as in the integration branch.
    pub merged_as: Option<String>,
    /// Held (its worker stopped) until this task merged or stopped (`warn.pause_on_conflict`).
    pub held_by: Option<usize>,
}

/// The merge queue and the open pull requests (engine-wide lifecycle state).
#[derive(Debug, Default)]
pub struct Queue {
    /// Tasks waiting to merge, in the order they finished.
    pub waiting: VecDeque<usize>,
    /// The task being merged now (one at a time).
    pub merging: Option<usize>,
    /// Tasks with an open pull request (polled at `pr.poll_ms`).
    pub open_prs: BTreeSet<usize>,
}

impl Engine {
    /// True when task `i` is reviewed: `[review] enabled`, or its own `"review": true|false`.
    fn review_on(&self, i: usize) -> bool {
        match self.task(i).extra.get("review").and_then(Value::as_bool) {
            Some(b) => b,
            None => self.policy.lifecycle.review.enabled,
        }
    }

    /// The ref a task's new branch starts from: the integration branch when the merge queue is
    /// on (so it sees the work its dependencies merged there), else `base`.
    pub(super) fn start_base(&self) -> String {
        if self.policy.lifecycle.merge.enabled {
            self.policy.lifecycle.merge.into.clone()
        } else {
            self.policy.base.clone()
        }
    }

    /// The task's work round (or fix or resolve round) is done and verified: review, merge
    /// queue or finish, as configured. (Also what "mark done" by hand does.)
    pub(super) fn complete(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let ended = self.runs[i].life.round;
        self.runs[i].restart_at = None;
        match ended {
            // A resolve round goes straight back to the merge queue.
            Round::Resolve(_) => self.after_review(i, now, fx),
            _ if self.review_on(i) => self.begin_review(i, now, fx),
            _ => self.after_review(i, now, fx),
        }
    }

    /// Starts review round N: the reviewer takes the task's worker slot once the implementer
    /// has exited.
    fn begin_review(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let n = self.runs[i].life.reviews + 1;
        self.begin_round(i, Round::Review(n), None, now, fx);
    }

    /// A new round for the task's worker slot: the worker starts at the next schedule (after
    /// the one now stopping has exited).
    fn begin_round(
        &mut self,
        i: usize,
        round: Round,
        prompt: Option<String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        if let (Round::Fix(_) | Round::Resolve(_), Some(text)) = (round, &prompt) {
            fx.push(Effect::SaveRound {
                task: i,
                round,
                prompt: text.clone(),
            });
        }
        let life = &mut self.runs[i].life;
        life.round = round;
        life.fresh = true;
        life.round_prompt = prompt;
        self.runs[i].restart_at = Some(now);
        self.runs[i].restart_context = None;
        self.runs[i].ladder.clear();
        self.runs[i].run_ended_at = None;
        let agent = match round {
            Round::Review(_) => self.review_agent(i),
            _ => self.agent_of(i).to_string(),
        };
        self.journal(
            fx,
            now,
            Some(i),
            "lifecycle",
            format!("{} round with agent {agent}", round.label()),
            json!({ "round": round.label(), "agent": agent }),
        );
        self.set_status(i, round.status(), now, fx);
        self.sched.active.insert(i);
    }

    /// The reviewer's agent profile: `review.agent`, else the task's own.
    pub(super) fn review_agent(&self, i: usize) -> String {
        self.policy
            .lifecycle
            .review
            .agent
            .clone()
            .unwrap_or_else(|| self.agent_of(i).to_string())
    }

    /// The prompt for a start in round `round` (the base prompt for a work round is built by
    /// the caller).
    pub(super) fn round_prompt(&self, i: usize, round: Round) -> Option<String> {
        match round {
            Round::Work => None,
            Round::Review(n) => {
                let t = self.task(i);
                Some(
                    self.policy
                        .lifecycle
                        .review
                        .prompt
                        .replace("{id}", &t.id)
                        .replace(
                            "{issue}",
                            &t.issue.map(|n| n.to_string()).unwrap_or_default(),
                        )
                        .replace("{title}", &t.title)
                        .replace("{round}", &n.to_string()),
                )
            }
            Round::Fix(_) | Round::Resolve(_) => self.runs[i].life.round_prompt.clone(),
        }
    }

    /// The reviewer is done (it exited, or sits idle): stop it and read its findings.
    pub(super) fn review_done(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let Round::Review(round) = self.runs[i].life.round else {
            return;
        };
        if self.runs[i].worker.is_some() {
            self.stop_worker(i, StopReason::Complete, fx);
        }
        self.journal(
            fx,
            now,
            Some(i),
            "review",
            format!("review {round}: reading the findings"),
            Value::Null,
        );
        fx.push(Effect::CollectFindings { task: i, round });
    }

    /// The reviewer's findings (or why there are none to read).
    pub(super) fn on_reviewed(
        &mut self,
        i: usize,
        round: u32,
        result: Result<Vec<Finding>, String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        if self.status(i) != Status::Review || self.runs[i].life.round != Round::Review(round) {
            return;
        }
        self.runs[i].life.reviews = round;
        self.save_rounds(i, fx);
        let list = match result {
            Ok(list) => list,
            Err(e) => {
                let why = format!("review {round}: the reviewer's findings cannot be read: {e}");
                self.escalate(i, why, now, fx);
                return;
            }
        };
        let block_on = self.policy.lifecycle.review.block_on;
        let blocking = findings::blocks(&list, block_on);
        let summary = format!(
            "review {round}: {}{}",
            findings::count_line(&list),
            if blocking {
                format!(" (blocks at {block_on})")
            } else {
                String::new()
            }
        );
        let md = findings::to_markdown(&list);
        self.journal(
            fx,
            now,
            Some(i),
            "review",
            summary.clone(),
            json!({ "round": round, "blocking": blocking, "findings": list }),
        );
        fx.push(Effect::TaskLog {
            task: i,
            text: format!("\n--- switchyard: {summary}\n{md}\n"),
        });
        self.task_mut(i).last_verdict = Some(summary.clone());
        self.runs[i].life.findings = list;
        if !blocking {
            self.after_review(i, now, fx);
            return;
        }
        let max = self.policy.lifecycle.review.max_rounds;
        let Some(next) = self.count_round(i, Counter::Fixes, max, now, fx, |done| {
            format!("{summary} after {done} fix round(s) (review.max_rounds = {max})")
        }) else {
            return;
        };
        let t = self.task(i);
        let prompt = format!(
            "Fix round {next} for task {} (\"{}\"). A reviewer found these problems on your branch; fix every one at or above {block_on}, run the tests, and commit:\n\n{md}",
            t.id,
            t.title
        );
        self.begin_round(i, Round::Fix(next), Some(prompt), now, fx);
    }

    /// The next round against one of the task's round counters: `Some(n)` (1-based) after
    /// counting it and saving the counters in the manifest, or `None` after escalating with
    /// `exhausted(done)` when `done` rounds already reached `max`.
    fn count_round(
        &mut self,
        i: usize,
        counter: Counter,
        max: u32,
        now: Ms,
        fx: &mut Vec<Effect>,
        exhausted: impl FnOnce(u32) -> String,
    ) -> Option<u32> {
        let life = &mut self.runs[i].life;
        let slot = match counter {
            Counter::Fixes => &mut life.fixes,
            Counter::PrFixes => &mut life.pr_fixes,
            Counter::Resolves => &mut life.resolves,
        };
        let done = *slot;
        if done >= max {
            self.escalate(i, exhausted(done), now, fx);
            return None;
        }
        *slot = done + 1;
        self.save_rounds(i, fx);
        Some(done + 1)
    }

    /// Reviewed (or not reviewed): the merge queue, or the finish.
    fn after_review(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        self.runs[i].life.round = Round::Work;
        if self.policy.lifecycle.merge.enabled {
            if !self.queue.waiting.contains(&i) && self.queue.merging != Some(i) {
                self.queue.waiting.push_back(i);
            }
            let into = self.policy.lifecycle.merge.into.clone();
            self.journal(
                fx,
                now,
                Some(i),
                "merge",
                format!(
                    "queued to merge into {into} ({} waiting)",
                    self.queue.waiting.len()
                ),
                Value::Null,
            );
            self.runs[i].run_ended_at = Some(now);
            self.set_status(i, Status::Merging, now, fx);
            self.pump_merges(now, fx);
        } else {
            self.finish(i, now, fx);
        }
    }

    /// Starts the next merge when none runs: the first waiting task (tasks reach the queue in
    /// dependency order: a dependent starts only once its dependencies merged).
    pub(super) fn pump_merges(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        if self.queue.merging.is_some() || self.quitting {
            return;
        }
        while let Some(i) = self.queue.waiting.pop_front() {
            if self.status(i) != Status::Merging {
                continue; // skipped or failed by hand meanwhile
            }
            let t = self.task(i);
            let Some(branch) = t.branch.clone() else {
                self.fail(
                    i,
                    "no branch to merge (the task never started a worktree)",
                    now,
                    fx,
                );
                continue;
            };
            let m = &self.policy.lifecycle.merge;
            let message = format!("Merge {} ({}): {}", t.id, branch, t.title);
            let (into, mode) = (m.into.clone(), m.mode);
            self.queue.merging = Some(i);
            self.journal(
                fx,
                now,
                Some(i),
                "merge",
                format!("merging {branch} into {into}"),
                Value::Null,
            );
            fx.push(Effect::Merge {
                task: i,
                branch,
                into,
                mode,
                message,
            });
            return;
        }
    }

    /// The merge of task `i` is done.
    pub(super) fn on_merged(
        &mut self,
        i: usize,
        outcome: MergeOutcome,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        if self.queue.merging != Some(i) {
            return;
        }
        self.queue.merging = None;
        let into = self.policy.lifecycle.merge.into.clone();
        if self.status(i) == Status::Merging {
            match outcome {
                MergeOutcome::UpToDate | MergeOutcome::Merged { .. } => {
                    let line = match &outcome {
                        MergeOutcome::Merged {
                            commit,
                            fast_forward,
                        } => {
                            self.runs[i].life.merged_as = Some(commit.clone());
                            let how = if *fast_forward {
                                "fast-forward"
                            } else {
                                "merge commit"
                            };
                            format!("merged into {into} ({how} {})", short(commit))
                        }
                        _ => format!("already in {into}"),
                    };
                    self.journal(fx, now, Some(i), "merge", line.clone(), Value::Null);
                    self.task_mut(i).last_verdict = Some(line);
                    // Its warnings against others are settled now.
                    self.clear_warnings(i, now, fx);
                    self.finish(i, now, fx);
                }
                MergeOutcome::Conflicts(list) => self.on_merge_conflicts(i, list, now, fx),
                MergeOutcome::Failed(e) => {
                    self.fail(i, &format!("merge into {into} failed: {e}"), now, fx)
                }
            }
        }
        self.pump_merges(now, fx);
    }

    fn on_merge_conflicts(
        &mut self,
        i: usize,
        list: Vec<ConflictInfo>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let m = self.policy.lifecycle.merge.clone();
        let files: Vec<String> = list.iter().map(ConflictInfo::describe).collect();
        let line = format!("conflicts with {}: {}", m.into, files.join("; "));
        self.journal(
            fx,
            now,
            Some(i),
            "conflict",
            line.clone(),
            json!({ "with": m.into, "files": list.iter().map(|c| json!({
                "path": c.path, "ours": c.ours, "theirs": c.theirs })).collect::<Vec<_>>() }),
        );
        if m.on_conflict == OnConflict::NeedsAttention {
            let why = format!("{line} (merge.on_conflict = \"needs_attention\")");
            self.escalate(i, why, now, fx);
            return;
        }
        let Some(next) = self.count_round(
            i,
            Counter::Resolves,
            m.max_resolve_rounds,
            now,
            fx,
            |done| format!("{line} after {done} resolve round(s) (merge.max_resolve_rounds)"),
        ) else {
            return;
        };
        let t = self.task(i);
        let mut prompt = format!(
            "Resolve round {next} for task {} (\"{}\"). Merging your branch into {} conflicts. switchyard merged {} into your branch in this worktree and left the conflict markers. Resolve every conflict keeping both sides' intent, run the tests, then `git add` the files and `git commit` to finish the merge. Conflicting files:\n",
            t.id,
            t.title,
            m.into,
            m.into
        );
        for c in &list {
            prompt.push_str(&format!("\n## {}\n", c.describe()));
            if !c.hunks.is_empty() {
                prompt.push_str(&format!("```\n{}\n```\n", c.hunks.trim_end()));
            }
        }
        self.begin_round(i, Round::Resolve(next), Some(prompt), now, fx);
    }

    /// The last stage: `complete`, or push + pull request.
    fn finish(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        self.runs[i].life.round = Round::Work;
        if self.policy.lifecycle.finish == Finish::Pr {
            let req = self.pr_request(i);
            self.runs[i].life.pr_pending = true;
            self.journal(
                fx,
                now,
                Some(i),
                "pr",
                match req.existing {
                    Some(n) => format!("pushing {} to update pull request #{n}", req.branch),
                    None => format!(
                        "pushing {} and opening a pull request into {}",
                        req.branch,
                        req.base.as_deref().unwrap_or("the default branch")
                    ),
                },
                Value::Null,
            );
            self.complete_final(i, now, fx);
            fx.push(Effect::OpenPr { task: i, req });
        } else {
            self.complete_final(i, now, fx);
        }
    }

    /// What the pull request of task `i` is made of.
    fn pr_request(&self, i: usize) -> PrRequest {
        let lc = &self.policy.lifecycle;
        let t = self.task(i);
        let run = &self.runs[i];
        let title = match t.issue {
            Some(n) => format!("{} (#{n})", t.title),
            None => t.title.clone(),
        };
        let verify = t.verify.clone().or_else(|| {
            self.policy
                .agents
                .get(self.agent_of(i))
                .and_then(|p| p.verify.clone())
        });
        let mut review = (run.life.reviews > 0).then(|| {
            format!(
                "{} round(s), {} fix round(s); last: {}",
                run.life.reviews,
                run.life.fixes,
                findings::count_line(&run.life.findings)
            )
        });
        if let Some(c) = &run.life.merged_as {
            let merged = format!("merged into `{}` as {}", lc.merge.into, short(c));
            review = Some(match review {
                Some(r) => format!("{r}; {merged}"),
                None => format!("not reviewed; {merged}"),
            });
        }
        let summary = crate::host::pr::PrSummary {
            task_id: t.id.clone(),
            issue: t.issue,
            files: t.files.clone(),
            verify: verify.map(|v| format!("passed (`{}`)", v.join(" "))),
            review,
            attempts: t.attempts.unwrap_or(0),
        };
        PrRequest {
            branch: t.branch.clone().unwrap_or_else(|| t.branch_name()),
            remote: lc.pr.remote.clone(),
            base: lc
                .pr
                .base
                .clone()
                .or_else(|| lc.merge.enabled.then(|| lc.merge.into.clone())),
            title,
            summary,
            diff_from: self.policy.base.clone(),
            existing: run.life.pr,
            gh: lc.pr.gh.clone(),
        }
    }

    /// The push / pull request of task `i` is done.
    pub(super) fn on_pr_opened(
        &mut self,
        i: usize,
        result: Result<u64, String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        if !std::mem::take(&mut self.runs[i].life.pr_pending) {
            return;
        }
        match result {
            Ok(n) => {
                self.runs[i].life.pr = Some(n);
                self.runs[i].life.polled_at = Some(now);
                self.task_mut(i).pr_number = Some(json!(n));
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "pr",
                    format!("pull request #{n} open"),
                    json!({ "number": n }),
                );
                self.queue.open_prs.insert(i);
                self.set_status(i, Status::PrOpen, now, fx);
            }
            Err(e) => self.fail(i, &format!("pull request: {e}"), now, fx),
        }
    }

    /// Polls open pull requests that are due (at most one poll per `pr.poll_ms` each).
    pub(super) fn poll_prs(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        let every = self.policy.lifecycle.pr.poll_ms;
        let due: Vec<usize> = self
            .queue
            .open_prs
            .iter()
            .copied()
            .filter(|&i| {
                let l = &self.runs[i].life;
                !l.polling && l.polled_at.is_none_or(|t| now.saturating_sub(t) >= every)
            })
            .collect();
        for i in due {
            let Some(number) = self.runs[i].life.pr else {
                continue;
            };
            let l = &mut self.runs[i].life;
            l.polling = true;
            l.polled_at = Some(now);
            fx.push(Effect::PollPr {
                task: i,
                number,
                gh: self.policy.lifecycle.pr.gh.clone(),
            });
        }
    }

    /// A pull request's polled state.
    pub(super) fn on_pr_polled(
        &mut self,
        i: usize,
        result: Result<PrStatus, String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        self.runs[i].life.polling = false;
        // The next poll is a whole interval after this answer.
        self.runs[i].life.polled_at = Some(now);
        if self.status(i) != Status::PrOpen {
            return;
        }
        let n = self.runs[i].life.pr.unwrap_or(0);
        match result {
            Ok(PrStatus::Open) => {}
            Ok(PrStatus::Merged) => {
                self.queue.open_prs.remove(&i);
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "pr",
                    format!("pull request #{n} merged"),
                    Value::Null,
                );
                self.set_status(i, Status::Merged, now, fx);
            }
            Ok(PrStatus::Closed) => {
                self.queue.open_prs.remove(&i);
                self.escalate(
                    i,
                    format!("pull request #{n} was closed without merging"),
                    now,
                    fx,
                );
            }
            Ok(PrStatus::ChangesRequested(text)) => {
                let pr = &self.policy.lifecycle.pr;
                let max = self.policy.lifecycle.review.max_rounds;
                if !pr.fix_on_changes_requested {
                    return; // it stays open for the person
                }
                self.queue.open_prs.remove(&i);
                let Some(next) = self.count_round(i, Counter::PrFixes, max, now, fx, |done| {
                    format!("pull request #{n} has requested changes after {done} fix round(s) (review.max_rounds)")
                }) else {
                    return;
                };
                let t = self.task(i);
                let prompt = format!(
                    "Fix round for task {} (\"{}\"): the pull request #{n} has requested changes. Make them, run the tests, and commit:\n\n{}",
                    t.id,
                    t.title,
                    if text.trim().is_empty() { "(no comment text; see the pull request)" } else { text.trim() }
                );
                let round = Round::Fix(self.runs[i].life.fixes + next);
                self.begin_round(i, round, Some(prompt), now, fx);
            }
            Err(e) => self.journal(
                fx,
                now,
                Some(i),
                "error",
                format!("pull request #{n}: cannot read its state: {e} (polling again later)"),
                Value::Null,
            ),
        }
    }

    /// A file changed in task `i`'s worktree: a prediction becomes due once it is quiet.
    pub(super) fn note_change(&mut self, i: usize, now: Ms) {
        if self.policy.lifecycle.warn.enabled && self.status(i).is_working() {
            self.runs[i].life.changed_at = Some(now);
        }
    }

    /// Asks for conflict predictions that are due (quiet for `warn.quiet_ms` after a change,
    /// at most one per `warn.interval_ms` per task).
    pub(super) fn predict_due(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        let w = self.policy.lifecycle.warn.clone();
        if !w.enabled {
            return;
        }
        let due: Vec<usize> = self
            .sched
            .active
            .iter()
            .copied()
            .filter(|&i| {
                let l = &self.runs[i].life;
                !l.predicting
                    && l.changed_at
                        .is_some_and(|c| now.saturating_sub(c) >= w.quiet_ms)
                    && l.predicted_at
                        .is_none_or(|p| now.saturating_sub(p) >= w.interval_ms)
                    && self.task(i).branch.is_some()
            })
            .collect();
        for i in due {
            let mut against: Vec<(Option<usize>, String)> = Vec::new();
            if self.policy.lifecycle.merge.enabled {
                against.push((None, self.policy.lifecycle.merge.into.clone()));
            }
            // Every branch still on its way to the integration branch: working, under review
            // or queued to merge.
            for j in 0..self.runs.len() {
                let st = self.status(j);
                let in_flight = st.is_working() || matches!(st, Status::Review | Status::Merging);
                if j != i && in_flight {
                    if let Some(b) = &self.task(j).branch {
                        against.push((Some(j), b.clone()));
                    }
                }
            }
            let l = &mut self.runs[i].life;
            l.changed_at = None;
            if against.is_empty() {
                continue;
            }
            l.predicting = true;
            l.predicted_at = Some(now);
            let branch = self.task(i).branch.clone().unwrap_or_default();
            fx.push(Effect::Predict {
                task: i,
                branch,
                against,
            });
        }
    }

    /// Predicted conflicts of task `i` against each other side asked about (an empty list: no
    /// conflict with it).
    pub(super) fn on_predicted(
        &mut self,
        i: usize,
        results: Vec<(Option<usize>, Vec<ConflictInfo>)>,
        error: Option<String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        self.runs[i].life.predicting = false;
        if let Some(e) = error {
            self.journal(
                fx,
                now,
                Some(i),
                "error",
                format!("conflict prediction failed: {e}"),
                Value::Null,
            );
        }
        let into = self.policy.lifecycle.merge.into.clone();
        for (other, list) in results {
            let key = match other {
                Some(j) => self.plan.ids[j].clone(),
                None => into.clone(),
            };
            let me = self.plan.ids[i].clone();
            let before = self.runs[i].life.warnings.get(&key).cloned();
            if list.is_empty() {
                if before.is_some() {
                    self.runs[i].life.warnings.remove(&key);
                    if let Some(j) = other {
                        self.runs[j].life.warnings.remove(&me);
                    }
                    self.journal(
                        fx,
                        now,
                        Some(i),
                        "conflict",
                        format!("no longer conflicts with {key}"),
                        Value::Null,
                    );
                }
                continue;
            }
            let same_files = before
                .as_ref()
                .is_some_and(|b| b.iter().map(|c| &c.path).eq(list.iter().map(|c| &c.path)));
            self.runs[i].life.warnings.insert(key.clone(), list.clone());
            if let Some(j) = other {
                let mirrored: Vec<ConflictInfo> = list
                    .iter()
                    .map(|c| ConflictInfo {
                        path: c.path.clone(),
                        ours: c.theirs.clone(),
                        theirs: c.ours.clone(),
                        hunks: c.hunks.clone(),
                    })
                    .collect();
                self.runs[j].life.warnings.insert(me.clone(), mirrored);
            }
            if same_files {
                continue;
            }
            let files: Vec<String> = list.iter().map(ConflictInfo::describe).collect();
            let line = format!("predicted conflict with {key}: {}", files.join("; "));
            self.journal(
                fx,
                now,
                Some(i),
                "conflict",
                line.clone(),
                json!({ "with": key, "predicted": true, "files": list.iter().map(|c| json!({
                    "path": c.path, "ours": c.ours, "theirs": c.theirs })).collect::<Vec<_>>() }),
            );
            if let (true, Some(j)) = (self.policy.lifecycle.warn.pause_on_conflict, other) {
                // The later of the two waits, its worker stopped, until the earlier merged.
                // Against the integration branch nothing is held: that work is merged already,
                // and the merge queue's resolve round takes it in.
                let key = |k: usize| (self.runs[k].run_started_at, k);
                let (later, earlier) = if key(j) > key(i) { (j, i) } else { (i, j) };
                self.hold(later, earlier, &line, now, fx);
            }
        }
    }

    /// Holds task `later` (its worker stopped) until `earlier` merged (`warn.pause_on_conflict`).
    fn hold(&mut self, later: usize, earlier: usize, why: &str, now: Ms, fx: &mut Vec<Effect>) {
        let l = &self.runs[later];
        if l.life.held_by.is_some() || l.worker.is_none() || !self.status(later).is_working() {
            return;
        }
        self.runs[later].life.held_by = Some(earlier);
        let first = self.plan.ids[earlier].clone();
        let line = format!("held until {first} merged ({why}; warn.pause_on_conflict)");
        self.journal(
            fx,
            now,
            Some(later),
            "conflict",
            line.clone(),
            json!({ "heldBy": first }),
        );
        self.task_mut(later).last_verdict = Some(line);
        fx.push(Effect::Hold {
            task: later,
            on: true,
        });
    }

    /// Task `i` is now `st`: when it is no longer on its way to the integration branch (merged,
    /// finished, failed, stopped by hand), the tasks held for it go on.
    pub(super) fn release_held_by(&mut self, i: usize, st: Status, now: Ms, fx: &mut Vec<Effect>) {
        if !st.is_working() {
            // A held task stopped or finished by hand is held no more (a new worker runs free).
            self.runs[i].life.held_by = None;
        }
        if st.is_working() || matches!(st, Status::Review | Status::Merging) {
            return;
        }
        let held: Vec<usize> = (0..self.runs.len())
            .filter(|&k| self.runs[k].life.held_by == Some(i))
            .collect();
        for k in held {
            self.runs[k].life.held_by = None;
            let first = self.plan.ids[i].clone();
            self.journal(
                fx,
                now,
                Some(k),
                "conflict",
                format!("goes on: {first} is {st}"),
                Value::Null,
            );
            fx.push(Effect::Hold { task: k, on: false });
            // Its silence while held is not a stall.
            if let Some(w) = self.runs[k].worker.as_mut() {
                w.last_output_at = now;
                w.last_change_at = now;
                w.last_activity_at = now;
            }
        }
    }

    /// Takes task `i`'s conflict warnings off it and off the other tasks.
    fn clear_warnings(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let me = self.plan.ids[i].clone();
        let keys: Vec<String> = std::mem::take(&mut self.runs[i].life.warnings)
            .into_keys()
            .collect();
        for k in keys {
            if let Some(j) = self.plan.index_of(&k) {
                self.runs[j].life.warnings.remove(&me);
            }
        }
        let _ = (now, fx);
    }

    /// Names of the tasks (or the integration branch) task `i` is predicted to conflict with.
    pub fn conflicts_of(&self, i: usize) -> Vec<String> {
        self.conflict_names(i).map(str::to_string).collect()
    }

    /// [`Engine::conflicts_of`] without a copy (for the view's per-frame cache keys), in name
    /// order.
    pub fn conflict_names(&self, i: usize) -> impl Iterator<Item = &str> + '_ {
        self.runs[i].life.warnings.keys().map(String::as_str)
    }

    /// The latest review's findings of task `i` (empty before a review, or when it found none).
    pub fn findings_of(&self, i: usize) -> &[Finding] {
        &self.runs[i].life.findings
    }

    /// True while lifecycle work for task `i` is under way without a worker (a merge queued or
    /// running, a push, a pull request polled while the run waits for merges).
    pub(super) fn lifecycle_busy(&self, i: usize) -> bool {
        let l = &self.runs[i].life;
        let st = self.status(i);
        st == Status::Merging
            || l.pr_pending
            || (st == Status::PrOpen && self.policy.lifecycle.pr.wait_for_merge)
    }

    /// Writes task `i`'s round counters to its manifest fields (`reviewRound`, `fixRounds`,
    /// `prFixRounds`, `resolveRounds`; absent while 0), so a resumed run goes on counting.
    fn save_rounds(&mut self, i: usize, fx: &mut Vec<Effect>) {
        let l = &self.runs[i].life;
        let some = |n: u32| (n > 0).then_some(n);
        let (r, f, p, s) = (
            some(l.reviews),
            some(l.fixes),
            some(l.pr_fixes),
            some(l.resolves),
        );
        let t = self.task_mut(i);
        t.review_round = r;
        t.fix_rounds = f;
        t.pr_fix_rounds = p;
        t.resolve_rounds = s;
        fx.push(Effect::Persist);
    }

    /// At start-up, for a task a killed run left in `fix`: the round it was in and that
    /// round's prompt, as [`Effect::SaveRound`] kept them. The worker starts again in that round
    /// (not as fresh work, and a resolve round does not merge again: the merge is in the
    /// worktree already). Ignored unless the task is in `fix` and `round` is a fix or resolve
    /// round.
    pub fn restore_round(&mut self, i: usize, round: Round, prompt: String) {
        if self.status(i) != Status::Fix || !matches!(round, Round::Fix(_) | Round::Resolve(_)) {
            return;
        }
        let life = &mut self.runs[i].life;
        life.round = round;
        life.round_prompt = Some(prompt);
    }

    /// At start-up: takes the round counters from the manifest and picks up tasks a killed run
    /// left in a lifecycle stage (a review resumes in the round after the last one done).
    pub(super) fn resume_lifecycle(&mut self, now: Ms) {
        for i in 0..self.runs.len() {
            let t = self.task(i);
            let counts = (
                t.review_round.unwrap_or(0),
                t.fix_rounds.unwrap_or(0),
                t.pr_fix_rounds.unwrap_or(0),
                t.resolve_rounds.unwrap_or(0),
            );
            let l = &mut self.runs[i].life;
            (l.reviews, l.fixes, l.pr_fixes, l.resolves) = counts;
            match self.status(i) {
                Status::Review => {
                    self.runs[i].life.round = Round::Review(counts.0 + 1);
                    self.runs[i].life.fresh = true;
                    self.runs[i].restart_at = Some(now);
                }
                Status::Merging => self.queue.waiting.push_back(i),
                Status::PrOpen => {
                    if let Some(n) = self.task(i).pr_number.as_ref().and_then(Value::as_u64) {
                        self.runs[i].life.pr = Some(n);
                        self.queue.open_prs.insert(i);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The first 10 characters of a commit id.
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// The merge mode as the config names it (`ff-or-merge`, `ff`, `merge`).
pub fn mode_name(m: MergeModeConfig) -> &'static str {
    match m {
        MergeModeConfig::FfOrMerge => "ff-or-merge",
        MergeModeConfig::Ff => "ff",
        MergeModeConfig::Merge => "merge",
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
