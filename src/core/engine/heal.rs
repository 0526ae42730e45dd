//! Classification of live workers and the heal ladders: per situation, the configured steps
//! (`[heal.ladder]` in switchyard.toml) are tried in order, each at most `max` times, and the
//! ladders reset once a worker has been `running` for `stable_ms`. Every keystroke switchyard
//! injects is journaled with its reason and counts against `max_auto_keys`.

use super::{error_line, Effect, Engine, Ms, StopReason};
use crate::core::classify::{classify_with, Evidence, Source, Timing, Verdict, VerdictKind};
use crate::core::config::{HealAction, Step};
use crate::core::manifest::Status;
use serde_json::{json, Value};

/// The situations a ladder exists for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Situation {
    /// A prompt waits (and is not on the deny-list).
    WaitingInput,
    /// An error rule matched on screen, or the verify command failed.
    Error,
    /// Nothing happened for the stall threshold.
    Stalled,
    /// At its own prompt with nothing (or not everything) committed.
    Idle,
    /// Exited with a failure, or with success and nothing committed.
    Exited,
    /// A rate-limit message.
    RateLimited,
}

impl Situation {
    /// The ladder's name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Situation::WaitingInput => "waiting_input",
            Situation::Error => "error",
            Situation::Stalled => "stalled",
            Situation::Idle => "idle",
            Situation::Exited => "exited",
            Situation::RateLimited => "rate_limited",
        }
    }
}

/// An answered prompt still on screen (same line, same dialog) is not answered again for this
/// long, ms: an agent that restarts itself (gemini after trusting a folder) leaves the old dialog
/// on screen until it redraws.
pub const ANSWER_AGAIN_AFTER_MS: Ms = 15_000;

/// What went wrong, for the step that handles it.
#[derive(Debug, Clone, Default)]
pub struct Trouble {
    /// The evidence line (a prompt, an error line, a rate-limit message).
    pub line: String,
    /// The rows around it (the dialog a prompt sits in).
    pub context: Vec<String>,
    /// The screen tail, for a restart's context and the error log.
    pub tail: String,
    /// One line for the journal.
    pub why: String,
    /// The verdict came from the agent's own channel (a hook, notify, server event), not from
    /// the screen: its line is the channel's words, the dialog itself is on the screen.
    pub channel: bool,
}

/// How long after its screen first shows text an idle screen is taken for the agent's start-up
/// while it has not been seen at work yet (no busy rule matched, no word from its channel), ms. Only for profiles
/// that have a busy rule to see work by.
pub(super) const START_GRACE_MS: Ms = 10_000;

/// How long after its start a resumed agent that still shows the broken-off turn as running
/// (and whose channel has not said it works) gets its `resume_prompt` anyway, ms.
pub(super) const RESUME_PROMPT_AFTER_MS: Ms = 15_000;

impl Engine {
    /// Classifies a live worker and starts the matching ladder when its verdict calls for it.
    pub(super) fn classify_and_heal(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        if let Some(w) = self.runs[i].worker.as_mut() {
            lapse_resume_echo(w);
        }
        let Some(w) = self.runs[i].worker.as_ref() else {
            return;
        };
        // A held worker is stopped on purpose (warn.pause_on_conflict): not stalled.
        if !w.live || w.stop.is_some() || self.runs[i].life.held_by.is_some() {
            return;
        }
        let timing = Timing {
            now,
            started_at: w.spawned_at,
            last_output_at: w.last_output_at,
            last_change_at: w.last_change_at,
            last_activity_at: w.last_activity_at,
        };
        let rules = &self.policy.compiled.rules[self.agent_of(i)];
        let stall_ms = self.policy.heal.stall_ms;
        let v = classify_with(&w.screen, &timing, rules, stall_ms, w.echo.as_ref());
        let v = merge_report(
            v,
            w.reported.as_ref(),
            now.saturating_sub(w.reported_at),
            stall_ms,
        );
        let v = no_progress(
            v,
            w.reported.as_ref(),
            now.saturating_sub(w.last_progress_at),
            stall_ms,
        );
        let rule = rules.iter().find(|r| r.name == v.evidence.rule);
        let hold_ms = rule.map_or(0, |r| r.hold_ms);
        let retrying = v.kind == VerdictKind::RateLimited
            && (rule.is_some_and(|r| r.retrying)
                || v.evidence
                    .rule
                    .strip_prefix("hook:")
                    .is_some_and(crate::core::channels::is_retry_event));
        let since = match &w.held {
            Some((k, r, since)) if *k == v.kind && *r == v.evidence.rule => *since,
            _ => now,
        };
        // Only a verdict a ladder may act on needs the context (a hot path: every tick, every worker).
        let trouble = if v.kind == VerdictKind::Running {
            Trouble::default()
        } else {
            Trouble {
                line: v.evidence.line.clone(),
                // A prompt the channel reported has no row: its dialog is where the screen shows
                // a line one of the profile's answers or prompt rules knows (else the cursor),
                // and the deny-list sees the rows around it (not the whole screen: gemini's
                // banner says "Authenticated").
                context: w
                    .screen
                    .context_around(
                        v.evidence
                            .row
                            .or_else(|| {
                                v.evidence
                                    .rule
                                    .starts_with("hook:")
                                    .then(|| self.dialog_row(i))
                                    .flatten()
                            })
                            .unwrap_or(w.screen.cursor_row),
                        8,
                    )
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                tail: w.screen.tail(self.policy.heal.error_tail_lines),
                why: format!(
                    "{} [{}] {}",
                    v.kind.label(),
                    v.evidence.rule,
                    v.evidence.line
                ),
                channel: v.evidence.rule.starts_with("hook:"),
            }
        };
        let acted = w.acted_on == Some(w.screen_hash);
        let inspecting = w.inspecting;
        let own_word = v.evidence.rule.starts_with("hook:");
        // A resumed agent that still shows the turn the rate limit broke off as running, with no
        // word of work from its own channel (opencode 1.18.33 `--continue` after a limit that hit
        // mid-turn draws that turn's spinner forever): it waits for the resume prompt too.
        let stale_resume = w.resume_prompt.is_some()
            && v.kind == VerdictKind::Running
            && !own_word
            && now.saturating_sub(w.spawned_at) >= RESUME_PROMPT_AFTER_MS
            && w.reported
                .as_ref()
                .is_none_or(|r| r.kind != VerdictKind::Running);
        // (A resumed agent waiting for its `resume_prompt` submits nothing of its own.)
        let starting = !w.turn_seen
            && !own_word
            && w.resume_prompt.is_none()
            && now.saturating_sub(w.drawn_at.unwrap_or(now)) < START_GRACE_MS
            && rules.iter().any(|r| r.verdict == VerdictKind::Running);
        // An agent retrying its request (a rate limit it retries by itself) is at work too.
        let busy = (v.kind == VerdictKind::Running && v.evidence.rule != "output") || retrying;
        let screen_hash = w.screen_hash;
        let kind = v.kind;
        if let Some(w) = self.runs[i].worker.as_mut() {
            w.held = Some((v.kind, v.evidence.rule.clone(), since));
            w.turn_seen |= busy;
            // Retrying a rate limit of its own: from here on a rate-limit line is about this one
            // (codex-cli 0.169.0 shows "└ Exceeded retry limit, last status: 429" under its retry
            // line, the same words as the redrawn one, so counting rows cannot tell).
            if retrying && w.echo_expires {
                w.echo = None;
                w.echo_expires = false;
            }
        }
        // A failure that must hold before it counts (an agent retrying with a live timer) is
        // shown as running until then, with the line it holds.
        let held_for = now.saturating_sub(since);
        let v = if held_for < hold_ms
            && matches!(kind, VerdictKind::Error | VerdictKind::RateLimited)
        {
            Verdict {
                kind: VerdictKind::Running,
                evidence: Evidence {
                    line: format!(
                        "{} (held {}s; {} after {}s)",
                        v.evidence.line,
                        held_for / 1000,
                        kind.label(),
                        hold_ms / 1000
                    ),
                    ..v.evidence
                },
            }
        } else {
            v
        };
        self.set_verdict(i, v, now, fx);
        // Ladders reset after a stable stretch of work.
        let run = &mut self.runs[i];
        if kind == VerdictKind::Running {
            let start = *run.running_since.get_or_insert(now);
            if now.saturating_sub(start) >= self.policy.heal.stable_ms {
                run.ladder.clear();
                // Work went on for a stable stretch: the agent's next rate limit backs off
                // from the first step again.
                if !self.rate_limit_streak.is_empty() {
                    let agent = self.agent_of(i).to_string();
                    self.rate_limit_streak.remove(&agent);
                }
            }
        } else {
            run.running_since = None;
        }
        let status = self.status(i);
        if now.saturating_sub(since) < hold_ms {
            return;
        }
        if kind == VerdictKind::Error && self.runs[i].worker.is_some() {
            // An attempt whose branch moved is verified, not restarted: ask for the branch first.
            if acted || inspecting || status == Status::NeedsAttention {
                return;
            }
            if let Some(w) = self.runs[i].worker.as_mut() {
                w.inspecting = true;
                w.acted_on = Some(screen_hash);
                w.error_check = Some(trouble);
            }
            fx.push(Effect::Inspect { task: i });
            return;
        }
        match kind {
            VerdictKind::Running => {
                if stale_resume {
                    self.type_resume_prompt(i, now, fx);
                }
                if matches!(status, Status::Stuck | Status::NeedsAttention) {
                    self.set_status(i, self.runs[i].life.round.status(), now, fx);
                }
            }
            // The agent retries the rate limit by itself: leave it be (every tick, so the
            // other tasks' wait follows its countdown).
            VerdictKind::RateLimited if retrying => self.wait_out_rate_limit(i, &trouble, now, fx),
            // A stall re-arms on its own (every action restarts the silence clock); everything
            // else is acted on once per screen.
            _ if status == Status::NeedsAttention => {}
            VerdictKind::Stalled => {
                if status != Status::Stuck {
                    self.set_status(i, Status::Stuck, now, fx);
                }
                self.climb(i, Situation::Stalled, trouble, now, fx);
            }
            // Acted on, and nothing has changed since for a whole stall period: the answer did
            // not take; treat it as a stall rather than wait forever.
            _ if acted => {
                if timing.idle_ms() >= self.policy.heal.stall_ms {
                    if status != Status::Stuck {
                        self.set_status(i, Status::Stuck, now, fx);
                    }
                    let t = Trouble {
                        why: format!("no change since acting on: {}", trouble.why),
                        ..trouble
                    };
                    self.climb(i, Situation::Stalled, t, now, fx);
                }
            }
            VerdictKind::WaitingInput => {
                let denied = std::iter::once(&trouble.line)
                    .chain(trouble.context.iter())
                    .find_map(|l| {
                        self.policy
                            .compiled
                            .deny
                            .iter()
                            .find_map(|d| d.find(l))
                            .map(|m| (l.clone(), format!("{:?}", m.as_str())))
                    });
                match denied {
                    Some((l, word)) => {
                        let reason = if l == trouble.line {
                            format!("prompt matches the deny-list (says {word}): {l}")
                        } else {
                            format!(
                                "prompt {:?} is in a dialog that matches the deny-list (says {word}): {l}",
                                trouble.line
                            )
                        };
                        self.escalate(i, reason, now, fx);
                    }
                    None => self.climb(i, Situation::WaitingInput, trouble, now, fx),
                }
            }
            VerdictKind::Error => self.climb(i, Situation::Error, trouble, now, fx),
            VerdictKind::RateLimited => self.climb(i, Situation::RateLimited, trouble, now, fx),
            // An idle screen in the first seconds, before the agent was ever seen at work, is
            // its start-up (gemini 0.61 draws its empty input box ~2 s before it submits the
            // --prompt-interactive prompt): nothing is done yet, and nothing is typed into it.
            VerdictKind::Idle | VerdictKind::Done if starting => {}
            // A resumed agent whose resume argv carries no prompt waits at its prompt: say
            // what to do, once.
            VerdictKind::Idle | VerdictKind::Done
                if self.runs[i]
                    .worker
                    .as_ref()
                    .is_some_and(|w| w.resume_prompt.is_some())
                    && self.at_its_prompt(i, Situation::Idle).is_ok() =>
            {
                self.type_resume_prompt(i, now, fx);
            }
            VerdictKind::Idle | VerdictKind::Done => {
                if !inspecting {
                    if let Some(w) = self.runs[i].worker.as_mut() {
                        w.inspecting = true;
                        w.acted_on = Some(screen_hash);
                    }
                    fx.push(Effect::Inspect { task: i });
                }
            }
            VerdictKind::Exited(_) => {}
        }
        if let Some(w) = self.runs[i].worker.as_mut() {
            // Waiting out an agent's own retries acts on nothing: what it shows next is new.
            if !retrying
                && !matches!(
                    kind,
                    VerdictKind::Running | VerdictKind::Idle | VerdictKind::Done
                )
            {
                w.acted_on = Some(screen_hash);
            }
        }
    }

    /// The worker exited. Its exit was switchyard's doing (stop set) or the agent's own.
    pub(super) fn on_exited(
        &mut self,
        i: usize,
        code: i32,
        commits: Option<usize>,
        uncommitted: Option<usize>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let Some(w) = self.runs[i].worker.take() else {
            return;
        };
        let tail = w.screen.tail(self.policy.heal.error_tail_lines);
        self.journal(
            fx,
            now,
            Some(i),
            "exit",
            format!("exited with status {code}"),
            json!({ "code": code, "commitsAhead": commits, "uncommitted": uncommitted,
                    "stop": w.stop.map(|s| format!("{s:?}")) }),
        );
        if w.stop.is_some() || self.status(i).is_finished() {
            return;
        }
        let ahead = commits.unwrap_or(0);
        let dirty = uncommitted.unwrap_or(0);
        // A read-only task (reads, no writes: a reviewer, a scout) may finish without commits.
        let read_only = crate::core::plan::read_only(self.task(i));
        if code == 0 && (ahead > 0 || read_only) && dirty == 0 {
            let line = format!("exited 0 with {ahead} commit(s) ahead of base");
            self.set_verdict(
                i,
                Verdict::signal(VerdictKind::Exited(0), "exit-status", line),
                now,
                fx,
            );
            self.verify_or_complete(i, now, fx);
            return;
        }
        let why = match (code, ahead, dirty) {
            (0, _, d) if d > 0 => format!("exited 0 with {d} uncommitted file(s)"),
            (0, _, _) => "exited 0 but its branch has no commits ahead of base".to_string(),
            (c, _, _) => format!("exited with status {c}"),
        };
        let why = match crate::core::classify::exit_hint(&tail) {
            Some(hint) => format!("{why}: {hint}"),
            None => why,
        };
        let last = error_line(&tail);
        let line = if last.is_empty() {
            why.clone()
        } else {
            format!("{why}: {last}")
        };
        self.set_verdict(
            i,
            Verdict::signal(VerdictKind::Exited(code), "exit-status", line.clone()),
            now,
            fx,
        );
        let trouble = Trouble {
            line,
            context: Vec::new(),
            tail,
            why,
            channel: false,
        };
        self.climb(i, Situation::Exited, trouble, now, fx);
    }

    /// The branch state after an idle verdict, an exit or an automatic commit.
    pub(super) fn on_inspected(
        &mut self,
        i: usize,
        commits: usize,
        uncommitted: usize,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        // Only a task in flight asked for this; a late answer for any other is stale.
        if !self.status(i).is_working() {
            return;
        }
        let mut error_check = None;
        let live = match self.runs[i].worker.as_mut() {
            Some(w) => {
                w.inspecting = false;
                error_check = w.error_check.take();
                if w.stop.is_some() {
                    return;
                }
                true
            }
            None => false,
        };
        if let Some(t) = error_check {
            if commits > 0 && uncommitted == 0 {
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "heal",
                    format!("the branch has {commits} commit(s) and nothing uncommitted: verifying instead of restarting ({})", t.why),
                    Value::Null,
                );
                self.verify_or_complete(i, now, fx);
            } else {
                self.climb(i, Situation::Error, t, now, fx);
            }
            return;
        }
        if (commits > 0 || crate::core::plan::read_only(self.task(i))) && uncommitted == 0 {
            if !live && self.runs[i].restart_at.take().is_some() {
                // Work a killed run finished but did not record: verify it, do not redo it.
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "resume",
                    format!("the branch has {commits} commit(s) from the interrupted run and nothing uncommitted: verifying instead of starting the agent again"),
                    Value::Null,
                );
            }
            self.verify_or_complete(i, now, fx);
            return;
        }
        let why = if uncommitted > 0 {
            format!("{uncommitted} file(s) changed but not committed")
        } else {
            "nothing committed on the branch yet".to_string()
        };
        let trouble = Trouble {
            line: why.clone(),
            context: Vec::new(),
            tail: String::new(),
            why,
            channel: false,
        };
        let situation = if live {
            Situation::Idle
        } else {
            Situation::Exited
        };
        self.climb(i, situation, trouble, now, fx);
    }

    /// The verify command finished.
    pub(super) fn on_verified(
        &mut self,
        i: usize,
        attempt: u32,
        ok: bool,
        output: String,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        // Only the answer for the attempt still being verified counts (after a kill, a retry or
        // a restart it is stale).
        if self.runs[i].verifying != Some(attempt) || !self.status(i).is_working() {
            return;
        }
        self.runs[i].verifying = None;
        let last = error_line(&output);
        self.journal(
            fx,
            now,
            Some(i),
            "verify",
            format!("verify {}: {last}", if ok { "passed" } else { "failed" }),
            json!({ "ok": ok, "output": output }),
        );
        if ok {
            if self.runs[i].worker.is_some() {
                self.stop_worker(i, StopReason::Complete, fx);
            }
            self.complete(i, now, fx);
            return;
        }
        let line = format!("verify failed: {last}");
        self.set_verdict(
            i,
            Verdict::signal(VerdictKind::Error, "verify", line.clone()),
            now,
            fx,
        );
        let situation = if self.runs[i].worker.is_some() {
            Situation::Error
        } else {
            Situation::Exited
        };
        let trouble = Trouble {
            line,
            context: Vec::new(),
            tail: output,
            why: "the verify command failed".into(),
            channel: false,
        };
        self.climb(i, situation, trouble, now, fx);
    }

    /// Runs the verify command if the task or its profile has one; else the task is complete.
    fn verify_or_complete(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let argv = self
            .task(i)
            .verify
            .clone()
            .or_else(|| self.policy.agents[self.agent_of(i)].verify.clone());
        match argv {
            Some(argv) if !argv.is_empty() => {
                let attempt = self.task(i).attempts.unwrap_or(0);
                if self.runs[i].verifying.is_none() {
                    self.runs[i].verifying = Some(attempt);
                    self.journal(
                        fx,
                        now,
                        Some(i),
                        "verify",
                        format!("running {argv:?}"),
                        Value::Null,
                    );
                    fx.push(Effect::Verify {
                        task: i,
                        argv,
                        attempt,
                    });
                }
            }
            _ => {
                if self.runs[i].worker.is_some() {
                    self.stop_worker(i, StopReason::Complete, fx);
                }
                self.complete(i, now, fx);
            }
        }
    }

    /// Takes the next step of a situation's ladder.
    pub(super) fn climb(
        &mut self,
        i: usize,
        sit: Situation,
        t: Trouble,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let steps: Vec<Step> = self.policy.heal.ladder.steps(sit.name()).to_vec();
        loop {
            let (idx, used) = self.runs[i].ladder.get(&sit).copied().unwrap_or((0, 0));
            let Some(step) = steps.get(idx) else {
                let reason = format!("heal ladder `{}` used up: {}", sit.name(), t.why);
                self.escalate(i, reason, now, fx);
                return;
            };
            if step.max != 0 && used >= step.max {
                self.runs[i].ladder.insert(sit, (idx + 1, 0));
                continue;
            }
            if self.act(i, sit, step, &t, now, fx) {
                self.runs[i].ladder.insert(sit, (idx, used + 1));
                return;
            }
            self.runs[i].ladder.insert(sit, (idx + 1, 0));
        }
    }

    /// Carries out one step. False when it does not apply (so the ladder moves on).
    fn act(
        &mut self,
        i: usize,
        sit: Situation,
        step: &Step,
        t: &Trouble,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let typing = matches!(
            step.action,
            HealAction::Answer | HealAction::Nudge | HealAction::Keys
        );
        if typing {
            if self.runs[i].worker.is_none() {
                return false;
            }
            if self.runs[i].auto_keys >= self.policy.heal.max_auto_keys {
                let reason = format!(
                    "{} automatic keystrokes already sent (heal.max_auto_keys): {}",
                    self.runs[i].auto_keys, t.why
                );
                self.escalate(i, reason, now, fx);
                return true;
            }
        }
        match step.action {
            HealAction::Answer => {
                let answers = &self.policy.compiled.answers[self.agent_of(i)];
                let find = |line: &str| {
                    answers
                        .iter()
                        .find(|(_, re, _, _)| re.is_match(line))
                        .map(|(name, _, keys, once)| (name.clone(), keys.clone(), *once))
                };
                // A prompt the agent's channel reported (gemini 0.61's Notification hook says
                // "Tool Confirm Shell Command requires execution") is answered by the dialog it
                // shows: the first screen row an answer of the profile matches.
                let on_screen = || {
                    let w = self.runs[i].worker.as_ref()?;
                    w.screen.rows.iter().find_map(|row| find(row))
                };
                let found = find(&t.line).or_else(|| if t.channel { on_screen() } else { None });
                let Some((name, keys, once)) = found else {
                    // The channel tells before the dialog is drawn (gemini's Notification hook):
                    // wait a moment for it rather than escalate a prompt that may be allowed.
                    let fresh = self.runs[i]
                        .worker
                        .as_ref()
                        .is_some_and(|w| now.saturating_sub(w.reported_at) < DIALOG_AFTER_WORK_MS);
                    return t.channel && fresh;
                };
                let dialog = dialog_hash(&t.line, &t.context);
                if let Some(w) = self.runs[i].worker.as_mut() {
                    if once && w.answered_once.contains(&name) {
                        // Asked once per process, answered: what shows now is the old dialog
                        // drawn again while the agent restarts itself (or something a person
                        // must see: the ladder's next step decides, no second keystroke).
                        return w.answered.as_ref().is_some_and(|(_, _, at)| {
                            now.saturating_sub(*at) < ANSWER_AGAIN_AFTER_MS
                        });
                    }
                    if once {
                        w.answered_once.push(name.clone());
                    }
                    match &w.answered {
                        Some((line, h, at))
                            if *line == t.line
                                && *h == dialog
                                && now.saturating_sub(*at) < ANSWER_AGAIN_AFTER_MS =>
                        {
                            // Answered already: the old dialog is still on screen. Wait for it
                            // to go (or for the cool-down), do not type into what replaced it.
                            return true;
                        }
                        _ => w.answered = Some((t.line.clone(), dialog, now)),
                    }
                }
                self.runs[i].auto_keys += 1;
                self.send(
                    i,
                    keys.into_bytes(),
                    "heal",
                    &format!("answer ({name}) to: {}", t.line),
                    now,
                    fx,
                );
            }
            HealAction::Nudge => {
                if let Err(why) = self.at_its_prompt(i, sit) {
                    self.journal(
                        fx,
                        now,
                        Some(i),
                        "heal",
                        format!("no nudge: {why} ({})", t.why),
                        Value::Null,
                    );
                    return false;
                }
                let text = step.text.clone().unwrap_or_else(|| self.nudge_text(i));
                self.runs[i].auto_keys += 1;
                let n = self.runs[i].ladder.get(&sit).map_or(0, |l| l.1) + 1;
                let reason = format!("nudge {n} ({}): {}", sit.name(), t.why);
                self.send(
                    i,
                    format!("{text}\r").into_bytes(),
                    "heal",
                    &reason,
                    now,
                    fx,
                );
            }
            HealAction::Keys => {
                let text = step.text.clone().unwrap_or_default();
                self.runs[i].auto_keys += 1;
                let reason = format!("keys ({}): {}", sit.name(), t.why);
                self.send(i, text.into_bytes(), "heal", &reason, now, fx);
            }
            HealAction::Restart | HealAction::Resume => self.restart(
                i,
                t,
                step.action == HealAction::Resume,
                step.backoff_ms,
                now,
                fx,
            ),
            HealAction::Commit => self.commit_worktree(
                i,
                "heal",
                format!("commit the worktree's changes: {}", t.why),
                ": the agent left these changes uncommitted",
                now,
                fx,
            ),
            HealAction::Escalate => self.escalate(i, t.why.clone(), now, fx),
            HealAction::Fail => self.fail(i, &t.why, now, fx),
            HealAction::PauseAgent => self.pause_agent(i, t, now, fx),
            // Not ladder steps (the config check refuses them there).
            _ => return false,
        }
        true
    }

    /// Stops the worker and schedules a restart with the error tail as context, or fails the
    /// task when its attempts are used up.
    pub(super) fn restart(
        &mut self,
        i: usize,
        t: &Trouble,
        resume: bool,
        backoff: Option<Ms>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let attempts = self.task(i).attempts.unwrap_or(0);
        let id = self.plan.ids[i].clone();
        fx.push(Effect::SaveErrorLog {
            task: i,
            text: format!("--- {id} attempt {attempts}: {}\n{}\n", t.why, t.tail),
        });
        if attempts >= self.policy.heal.max_attempts {
            self.fail(
                i,
                &format!("{attempts} attempts used (heal.max_attempts): {}", t.why),
                now,
                fx,
            );
            return;
        }
        self.stop_worker(i, StopReason::Restart, fx);
        let context = restart_context(attempts, t, &self.policy.compiled.rules[self.agent_of(i)]);
        let shift = attempts.saturating_sub(1).min(20);
        let delay = backoff
            .unwrap_or((self.policy.heal.backoff_ms << shift).min(self.policy.heal.backoff_max_ms));
        let run = &mut self.runs[i];
        run.restart_at = Some(now + delay);
        run.resume_next = resume;
        run.restart_context = Some(context);
        let verb = if resume { "resume" } else { "restart" };
        self.journal(
            fx,
            now,
            Some(i),
            "heal",
            format!("{verb} in {:.1}s with the error as context: {}", delay as f64 / 1000.0, t.why),
            json!({ "delayMs": delay, "attempt": attempts + 1, "context": t.tail, "resume": resume }),
        );
        if self.status(i) != self.runs[i].life.round.status() {
            self.set_status(i, self.runs[i].life.round.status(), now, fx);
        }
    }

    /// Gives up on the task: `error`.
    pub(super) fn fail(&mut self, i: usize, why: &str, now: Ms, fx: &mut Vec<Effect>) {
        self.stop_worker(i, StopReason::Kill, fx);
        let run = &mut self.runs[i];
        run.restart_at = None;
        run.run_ended_at = Some(now);
        self.journal(
            fx,
            now,
            Some(i),
            "heal",
            format!("giving up: {why}"),
            Value::Null,
        );
        self.task_mut(i).last_verdict = Some(format!("error: {why}"));
        self.set_status(i, Status::Error, now, fx);
    }

    /// Pauses every task of this task's agent until the reset time in the message (or the
    /// default pause), and starts this one again then: with the profile's `resume` argv when
    /// it has one, so the agent picks its conversation up, else a plain restart.
    pub(super) fn pause_agent(&mut self, i: usize, t: &Trouble, now: Ms, fx: &mut Vec<Effect>) {
        let agent = self.agent_of(i).to_string();
        let (reset, line) = rate_limit_line(t);
        let streak = self.rate_limit_streak.get(&agent).copied().unwrap_or(0);
        let heal = &self.policy.heal;
        let wait = rate_limit_pause(
            reset,
            streak,
            heal.rate_limit_backoff_ms,
            heal.rate_limit_pause_ms,
        );
        if reset.is_none() {
            self.rate_limit_streak.insert(agent.clone(), streak + 1);
        }
        let until = now + wait;
        self.paused_agents.insert(agent.clone(), until);
        self.stop_worker(i, StopReason::Restart, fx);
        let run = &mut self.runs[i];
        run.restart_at = Some(until);
        run.restart_context = None;
        run.resume_echo = Some(line.clone());
        // The conversation is worth keeping: the start after the pause uses the profile's
        // `resume` argv when it has one (a plain restart otherwise).
        run.resume_next = true;
        self.journal(
            fx,
            now,
            Some(i),
            "heal",
            format!(
                "rate limited: {agent}'s tasks pause for {}s ({}): {}",
                wait / 1000,
                if reset.is_some() {
                    "the reset time on screen".to_string()
                } else {
                    format!("no reset time on screen: back-off step {}", streak + 1)
                },
                line
            ),
            json!({ "agent": agent, "untilMs": until, "resetOnScreen": reset.is_some() }),
        );
    }
}

impl Engine {
    /// Types the profile's `resume_prompt` (then Enter) into a resumed agent, once.
    fn type_resume_prompt(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let Some(text) = self.runs[i]
            .worker
            .as_mut()
            .and_then(|w| w.resume_prompt.take())
        else {
            return;
        };
        self.runs[i].auto_keys += 1;
        self.send(
            i,
            format!("{text}\r").into_bytes(),
            "heal",
            "resumed: the profile's resume_prompt typed at the agent's prompt",
            now,
            fx,
        );
    }

    /// The agent retries a rate limit by itself (its retry line is on screen, or its channel
    /// says so): its worker is left alone — no keys, no restart — and the agent's other tasks
    /// wait until the reset time the line names (else the back-off's current step), so they do
    /// not run into the same limit. Journaled once per wait; a pause set by hand stays.
    pub(super) fn wait_out_rate_limit(
        &mut self,
        i: usize,
        t: &Trouble,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let agent = self.agent_of(i).to_string();
        let streak = self.rate_limit_streak.get(&agent).copied().unwrap_or(0);
        let heal = &self.policy.heal;
        let wait = rate_limit_pause(
            reset_after_ms(&t.line),
            streak,
            heal.rate_limit_backoff_ms,
            heal.rate_limit_pause_ms,
        );
        let until = now + wait;
        let was = self.paused_agents.get(&agent).copied();
        if was.is_some_and(|w| w >= until) {
            return;
        }
        self.paused_agents.insert(agent.clone(), until);
        if was.is_none_or(|w| w <= now) {
            self.journal(
                fx,
                now,
                Some(i),
                "heal",
                format!(
                    "rate limited: {agent} retries by itself, left alone; its other tasks wait {}s: {}",
                    wait / 1000,
                    t.line
                ),
                json!({ "agent": agent, "untilMs": until, "retrying": true }),
            );
        }
    }

    /// The agent said something about itself through its own channel.
    pub(super) fn on_reported(
        &mut self,
        i: usize,
        report: crate::core::classify::AgentReport,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let run = &mut self.runs[i];
        let Some(w) = run.worker.as_mut() else {
            return;
        };
        // The attempt's first session is the agent's own (opencode's subagents report theirs
        // later); a resumed attempt reports the one it continues.
        if !w.session_seen {
            if let Some(id) = &report.session {
                w.session_seen = true;
                run.agent_session = Some(id.clone());
            }
        }
        w.last_activity_at = now;
        w.last_progress_at = now;
        // The turn ended because of the failure it just reported (opencode 1.18.33 sends
        // session.error, then session.status idle and session.idle in the same millisecond):
        // the failure stays the agent's word, not "idle with nothing committed".
        let failed_just_now = w.reported.as_ref().is_some_and(|r| {
            matches!(r.kind, VerdictKind::Error | VerdictKind::RateLimited)
                && now.saturating_sub(w.reported_at) < IDLE_AFTER_FAILURE_MS
        });
        if report.kind == VerdictKind::Idle && failed_just_now {
            return;
        }
        // Events come on connections of their own and may arrive out of order (opencode's
        // permission.replied after the session.idle it sent next): an older one is not the
        // agent's latest word.
        let stale = match (report.sent_us, w.reported.as_ref().and_then(|r| r.sent_us)) {
            (Some(new), Some(held)) => new < held,
            _ => false,
        };
        let answered = report.answered.clone();
        let channel = report.channel.clone();
        if !stale {
            w.reported_at = now;
            w.reported = Some(report);
        }
        if let Some(a) = answered {
            self.runs[i].auto_keys += 1;
            self.journal(
                fx,
                now,
                Some(i),
                "heal",
                format!("answered through {channel}: {a}"),
                Value::Null,
            );
        }
    }

    /// A person typed into the worker: whatever prompt was there is theirs; the ladders start
    /// afresh for the next one.
    pub(super) fn on_typed(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let Some(w) = self.runs[i].worker.as_mut() else {
            return;
        };
        w.last_activity_at = now;
        w.last_progress_at = now;
        w.answered = None;
        // The prompt the agent reported is the person's now; its next event says what follows.
        if w.reported
            .as_ref()
            .is_some_and(|r| r.kind == VerdictKind::WaitingInput)
        {
            w.reported = None;
        }
        let run = &mut self.runs[i];
        if !run.ladder.is_empty() {
            run.ladder.clear();
            self.journal(
                fx,
                now,
                Some(i),
                "heal",
                "a person typed: the heal ladders start afresh".into(),
                Value::Null,
            );
        }
        if self.status(i) == Status::NeedsAttention {
            self.set_status(i, Status::Running, now, fx);
        }
    }

    /// Whether a permission the agent asks for through its channel may be granted: `Ok` when no
    /// deny pattern matches it and the `waiting_input` ladder begins with `answer` (the same
    /// policy as for a prompt on screen), else `Err` with the reason (the task needs a person).
    pub fn permission_decision(&self, i: usize, what: &str) -> Result<(), String> {
        if let Some(m) = self.policy.compiled.deny.iter().find_map(|d| d.find(what)) {
            return Err(format!(
                "permission matches the deny-list (says {:?}): {what}",
                m.as_str()
            ));
        }
        let answers = self
            .policy
            .heal
            .ladder
            .steps(Situation::WaitingInput.name())
            .first()
            .is_some_and(|s| s.action == HealAction::Answer);
        if !answers {
            return Err(format!("the waiting_input ladder does not answer: {what}"));
        }
        if self.runs[i].auto_keys >= self.policy.heal.max_auto_keys {
            return Err(format!(
                "{} automatic answers already sent (heal.max_auto_keys): {what}",
                self.runs[i].auto_keys
            ));
        }
        Ok(())
    }

    /// The screen row of the dialog the agent's channel reported: the first row one of the
    /// profile's answers or `waiting_input` screen rules matches.
    fn dialog_row(&self, i: usize) -> Option<usize> {
        let w = self.runs[i].worker.as_ref()?;
        let agent = self.agent_of(i);
        let answers = &self.policy.compiled.answers[agent];
        let rules = &self.policy.compiled.rules[agent];
        w.screen.rows.iter().position(|row| {
            answers.iter().any(|(_, re, _, _)| re.is_match(row))
                || rules.iter().any(|r| {
                    r.verdict == VerdictKind::WaitingInput
                        && r.source == Source::Screen
                        && r.re.is_match(row)
                })
        })
    }

    /// A nudge goes only to an agent at its own prompt: the situation is `idle`, its channel
    /// said it is idle, one of its profile's idle rules matches now (quiet time aside), or the
    /// profile has no idle rule to tell by (a plain command) — never to a shell at its prompt.
    /// `Err` says why not.
    fn at_its_prompt(&self, i: usize, sit: Situation) -> Result<(), String> {
        let Some(w) = self.runs[i].worker.as_ref() else {
            return Err("no worker".into());
        };
        // A shell at its own prompt (its OSC 133 mark, or its terminal read) would run the
        // nudge's words as a command.
        let s = &w.screen;
        if s.marks.prompt.is_some_and(|p| p.at_prompt())
            || s.reading.as_ref().is_some_and(|r| r.shell)
        {
            return Err("a shell at its prompt takes commands, not a nudge".into());
        }
        if sit == Situation::Idle {
            return Ok(());
        }
        if w.reported
            .as_ref()
            .is_some_and(|r| r.kind == VerdictKind::Idle)
        {
            return Ok(());
        }
        let rules = &self.policy.compiled.rules[self.agent_of(i)];
        let s = &w.screen;
        // gemini 0.61 keeps its input box (its idle rule's line) drawn while it thinks: a busy
        // line on screen says it is not at its prompt.
        if rules.iter().any(|r| {
            r.verdict == VerdictKind::Running
                && r.source == Source::Screen
                && s.rows.iter().any(|row| r.re.is_match(row))
        }) {
            return Err("the agent shows it is busy".into());
        }
        let idle: Vec<_> = rules
            .iter()
            .filter(|r| r.verdict == VerdictKind::Idle)
            .collect();
        if idle.is_empty() {
            return Ok(());
        }
        let matches = idle.iter().any(|r| match r.source {
            Source::Title => r.re.is_match(&s.title),
            Source::AgentState => s.agent_state.as_deref().is_some_and(|a| r.re.is_match(a)),
            Source::Screen => s.rows.iter().any(|row| r.re.is_match(row)),
        });
        if matches {
            Ok(())
        } else {
            Err("the screen shows no prompt of the agent (an unclassified dialog gets no keystroke)".into())
        }
    }
}

/// An idle report this soon after a reported error or rate limit is the end of the failed turn,
/// not a turn that ended well, ms.
pub const IDLE_AFTER_FAILURE_MS: Ms = 2_000;

/// How long the agent's own "working" outranks a dialog on its screen, ms: opencode 1.18.33
/// reports `permission.replied` and `busy` before it takes its permission dialog down.
pub const DIALOG_AFTER_WORK_MS: Ms = 3_000;

/// The verdict from every channel, in the order of authority: the agent's own word (hooks,
/// notify, server events) when it says anything but "working"; "working" from the agent outranks
/// an idle guess from the title or screen while it is recent (less than `stall_ms` old: claude
/// in auto mode shows its idle title while its own permission check runs); otherwise the
/// classifier's verdict (the profile's agent-state, title and screen rules; OSC 133 / 9;4 / 9
/// marks; terminal read; a cursor after a question; timing — see [`crate::core::classify::classify`]).
pub fn merge_report(
    v: Verdict,
    reported: Option<&crate::core::classify::AgentReport>,
    age_ms: Ms,
    stall_ms: Ms,
) -> Verdict {
    let Some(r) = reported else {
        return v;
    };
    let from_channel = |kind| Verdict {
        kind,
        evidence: Evidence {
            rule: format!("hook:{}", r.event),
            line: format!("{}: {}", r.channel, r.line),
            row: None,
        },
    };
    match r.kind {
        VerdictKind::Running if v.kind == VerdictKind::Idle && age_ms < stall_ms => {
            from_channel(VerdictKind::Running)
        }
        // The agent works again after a prompt (its permission answered through the channel):
        // the dialog still drawn for a moment is not a new prompt.
        VerdictKind::Running
            if v.kind == VerdictKind::WaitingInput && age_ms < DIALOG_AFTER_WORK_MS =>
        {
            from_channel(VerdictKind::Running)
        }
        VerdictKind::Running => v,
        k => from_channel(k),
    }
}

/// An agent with a channel of its own that has said nothing, and changed no file, for twice the
/// stall threshold while its screen keeps moving (a spinner over an API that keeps failing, as
/// gemini 0.61 shows for a 500) is `stalled`, not running forever. `quiet_ms`: since its last
/// channel event, file change or heal action.
pub fn no_progress(
    v: Verdict,
    reported: Option<&crate::core::classify::AgentReport>,
    quiet_ms: Ms,
    stall_ms: Ms,
) -> Verdict {
    match reported {
        Some(r) if v.kind == VerdictKind::Running && quiet_ms >= 2 * stall_ms => Verdict::signal(
            VerdictKind::Stalled,
            "no-progress",
            format!(
                "{} said nothing and no file changed for {}s while the screen kept moving ({})",
                r.channel,
                quiet_ms / 1000,
                v.evidence.line
            ),
        ),
        _ => v,
    }
}

/// The context a restarted agent gets: why the last attempt ended and its screen tail, each
/// line quoted with `| `. Rows of the tail that one of the profile's other screen rules (idle
/// footer, busy line, dialog) would match are left out: the agent echoes its prompt, and its old
/// chrome must not pass for its state. Error rows stay; the classifier ignores their echo (see
/// [`crate::core::classify::Echo`]).
pub fn restart_context(attempt: u32, t: &Trouble, rules: &[crate::core::classify::Rule]) -> String {
    let chrome = |l: &str| {
        rules.iter().any(|r| {
            r.source == Source::Screen
                && !matches!(r.verdict, VerdictKind::Error | VerdictKind::RateLimited)
                && r.re.is_match(l)
        })
    };
    let quoted: Vec<String> = t
        .tail
        .lines()
        .filter(|l| !chrome(l))
        .map(|l| format!("| {l}"))
        .collect();
    format!(
        "Previous attempt {attempt} failed ({}). The last lines of its screen were:\n{}\n\n",
        t.why,
        quoted.join("\n")
    )
}

fn dialog_hash(line: &str, context: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    line.hash(&mut h);
    context.hash(&mut h);
    h.finish()
}

/// The wait a rate-limit message names ("try again in 20s", "retry after 5 minutes",
/// "resets in 2h"), in ms.
/// A resumed attempt's echo (the rate-limit line that paused it, which the agent redraws with
/// its conversation: codex-cli 0.169.0 `resume`, opencode 1.18.33 `--continue`) lapses once the
/// agent has worked and its screen shows the line on more rows than before, on a row below where
/// it last showed (a new line under the redrawn one: codex's history scrolls the old one up or
/// away as the new one comes), or on none: from then on such a line is a new rate limit.
fn lapse_resume_echo(w: &mut super::WorkerState) {
    if !w.echo_expires {
        return;
    }
    let Some(e) = &w.echo else {
        return;
    };
    let covered: Vec<usize> = (0..w.screen.rows.len())
        .filter(|&r| e.covers(&w.screen.rows[r]))
        .collect();
    let lowest = covered.last().copied();
    let (count, last_lowest) = w.echo_rows;
    let new_line = covered.len() > count || lowest.zip(last_lowest).is_some_and(|(l, o)| l > o);
    if w.turn_seen && (covered.is_empty() || new_line) {
        w.echo = None;
        w.echo_expires = false;
    } else {
        w.echo_rows = (count.max(covered.len()), lowest.or(last_lowest));
    }
}

/// The rate-limit line a pause goes by and the reset time it names (ms, when it names one): the
/// trouble's own line when it names a reset time or no screen row is a rate-limit line, else the
/// last rate-limit line of the screen tail (a channel's word — claude's StopFailure
/// `rate_limit` — names no time; the message on screen does).
pub fn rate_limit_line(t: &Trouble) -> (Option<Ms>, String) {
    if let Some(ms) = reset_after_ms(&t.line) {
        return (Some(ms), t.line.clone());
    }
    let on_screen = t
        .tail
        .lines()
        .rev()
        .filter(|l| crate::core::classify::is_rate_limit(l))
        .map(|l| (reset_after_ms(l), l.trim().to_string()))
        .max_by_key(|(ms, _)| ms.is_some());
    match on_screen {
        Some((ms, l)) if t.channel || ms.is_some() => (ms, l),
        _ => (None, t.line.clone()),
    }
}

/// How long a rate-limited agent's tasks pause, ms: the reset time the CLI printed
/// (`reset_after`, from [`reset_after_ms`]) when there is one; otherwise a back-off that starts at
/// `first_ms` and doubles with each earlier pause of that agent without a reset time (`streak`:
/// 0 for the first), never longer than `cap_ms` (`heal.rate_limit_backoff_ms` and
/// `heal.rate_limit_pause_ms`). A `first_ms` of 0 means no back-off: always `cap_ms`.
pub fn rate_limit_pause(reset_after: Option<Ms>, streak: u32, first_ms: Ms, cap_ms: Ms) -> Ms {
    if let Some(ms) = reset_after {
        return ms;
    }
    if first_ms == 0 {
        return cap_ms;
    }
    first_ms
        .checked_shl(streak.min(63))
        .filter(|&ms| ms >> streak.min(63) == first_ms)
        .unwrap_or(Ms::MAX)
        .min(cap_ms)
}

pub fn reset_after_ms(line: &str) -> Option<Ms> {
    let re = regex::Regex::new(
        r"(?i)(?:in|after)\s+(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b",
    )
    .expect("a valid pattern");
    let c = re.captures(line)?;
    let n: f64 = c[1].parse().ok()?;
    let unit = c[2].to_ascii_lowercase();
    let ms = match unit.chars().next()? {
        'h' => n * 3_600_000.0,
        'm' if unit.starts_with("ms") || unit.starts_with("milli") => n,
        'm' => n * 60_000.0,
        _ => n * 1000.0,
    };
    Some(ms as Ms)
}

#[cfg(test)]
#[path = "heal/supervision_tests.rs"]
mod supervision_tests;

#[cfg(test)]
mod tests {
    use super::{rate_limit_pause, reset_after_ms};

    #[test]
    fn a_pause_without_a_reset_time_backs_off_doubling_up_to_the_cap() {
        let steps: Vec<_> = (0..8)
            .map(|n| rate_limit_pause(None, n, 30_000, 900_000))
            .collect();
        assert_eq!(
            steps,
            [30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000]
        );
        // A long streak neither overflows nor passes the cap.
        assert_eq!(rate_limit_pause(None, 200, 30_000, 900_000), 900_000);
        // No back-off configured: the cap every time (the old behaviour).
        assert_eq!(rate_limit_pause(None, 0, 0, 900_000), 900_000);
        // A first step above the cap is cut to it.
        assert_eq!(rate_limit_pause(None, 0, 1_000_000, 900_000), 900_000);
    }

    #[test]
    fn a_channels_rate_limit_takes_the_reset_time_from_the_screen() {
        let t = |line: &str, tail: &str, channel: bool| super::Trouble {
            line: line.into(),
            tail: tail.into(),
            channel,
            ..Default::default()
        };
        // Claude Code 2.1.330's StopFailure says only "rate_limit"; its screen says when.
        let screen = "> Create HARNESS.md\n● API Error: Request rejected (429) · Rate limit reached. Please try again in 20s.\n\n> ";
        assert_eq!(
            super::rate_limit_line(&t("claude hooks: rate_limit", screen, true)),
            (
                Some(20_000),
                "● API Error: Request rejected (429) · Rate limit reached. Please try again in 20s."
                    .into()
            )
        );
        // Nothing on screen: the channel's line, no reset time (the back-off decides).
        assert_eq!(
            super::rate_limit_line(&t("claude hooks: rate_limit", "> ", true)),
            (None, "claude hooks: rate_limit".into())
        );
        // A screen rule's own line with a time wins.
        let l = "Rate limit reached. Try again in 5s.";
        assert_eq!(
            super::rate_limit_line(&t(l, screen, false)),
            (Some(5_000), l.into())
        );
    }

    #[test]
    fn a_reset_time_on_screen_wins_over_the_back_off() {
        assert_eq!(rate_limit_pause(Some(20_000), 5, 30_000, 900_000), 20_000);
        // Even past the cap: the provider said when.
        assert_eq!(
            rate_limit_pause(Some(3_600_000), 0, 30_000, 900_000),
            3_600_000
        );
    }

    #[test]
    fn reset_times_are_read_from_rate_limit_messages() {
        assert_eq!(
            reset_after_ms("Rate limit reached. Try again in 20s."),
            Some(20_000)
        );
        assert_eq!(reset_after_ms("429: retry after 5 minutes"), Some(300_000));
        assert_eq!(
            reset_after_ms("usage limit; resets in 2 hours"),
            Some(7_200_000)
        );
        assert_eq!(reset_after_ms("rate limited"), None);
    }
}
