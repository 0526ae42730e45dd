//! Actions by hand: [`Engine::check`] says whether an [`Action`] is possible now (the server
//! answers `switchyard ctl` with it), and `on_action` carries it out. Every automatic heal step
//! has the same action here, so a person can do by hand what a ladder would do.

use super::heal::Trouble;
use super::{Effect, Engine, Ms, StopReason};
use crate::core::action::{unescape_keys, Action, ActionKind, Needs};
use crate::core::classify::{Verdict, VerdictKind};
use crate::core::manifest::Status;
use serde_json::{json, Value};

/// Why an action was refused. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No task has this id.
    #[error("no task {id:?} in this manifest; tasks: {known}")]
    UnknownTask {
        /// The id asked for.
        id: String,
        /// Some ids that exist.
        known: String,
    },
    /// No task and no agent profile has this name.
    #[error(
        "no task or agent {0:?}; give a task id (its agent is meant) or an agent profile name"
    )]
    UnknownAgent(String),
    /// The action needs a task id.
    #[error("`{0}` needs a task id")]
    NeedsTask(ActionKind),
    /// The action needs text or a number.
    #[error("`{0}` needs {1}")]
    NeedsText(ActionKind, &'static str),
    /// The task's state does not allow it.
    #[error("cannot {kind} {task}: {why}")]
    NotPossible {
        /// The action.
        kind: ActionKind,
        /// The task id.
        task: String,
        /// Why, and what would work.
        why: String,
    },
}

/// What an action resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The whole run.
    Run,
    /// A task, by index.
    Task(usize),
}

impl Engine {
    /// The index of a task id (O(1)).
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.plan.index_of(id)
    }

    /// Checks an action against the engine's state now, without changing anything: the task
    /// exists, the action has its arguments, and the task's state allows it (e.g. `answer`
    /// needs a live worker, `retry` a task that is not complete).
    pub fn check(&self, a: &Action) -> Result<Target, ActionError> {
        let kind = a.kind;
        match kind.needs() {
            Needs::Nothing => return Ok(Target::Run),
            Needs::Number => {
                return match a.text.as_deref().map(str::parse::<usize>) {
                    Some(Ok(n)) if n >= 1 => Ok(Target::Run),
                    _ => Err(ActionError::NeedsText(kind, "a number of at least 1")),
                }
            }
            Needs::Agent => {
                let name = a.task.as_deref().ok_or(ActionError::NeedsTask(kind))?;
                if let Some(i) = self.index_of(name) {
                    return Ok(Target::Task(i));
                }
                if self.policy.agents.contains_key(name) {
                    return Ok(Target::Run);
                }
                return Err(ActionError::UnknownAgent(name.into()));
            }
            Needs::TaskAndText if a.text.as_deref().is_none_or(str::is_empty) => {
                return Err(ActionError::NeedsText(kind, "text"));
            }
            _ => {}
        }
        let id = a.task.as_deref().ok_or(ActionError::NeedsTask(kind))?;
        let i = self.index_of(id).ok_or_else(|| ActionError::UnknownTask {
            id: id.into(),
            known: self.known_ids(),
        })?;
        let st = self.status(i);
        let run = &self.runs[i];
        let live = run.worker.as_ref().is_some_and(|w| w.stop.is_none());
        let no = |why: String| ActionError::NotPossible {
            kind,
            task: id.into(),
            why,
        };
        match kind {
            ActionKind::Nudge | ActionKind::Answer | ActionKind::Keys if !live => Err(no(format!(
                "it has no running worker (status {}); `retry` starts one",
                st.as_str()
            ))),
            ActionKind::Retry | ActionKind::Restart | ActionKind::Resume | ActionKind::Escalate
                if st.is_done() =>
            {
                Err(no(format!("it is already {}", st.as_str())))
            }
            ActionKind::MarkDone if st.is_done() => {
                Err(no(format!("it is already {}", st.as_str())))
            }
            ActionKind::Kill | ActionKind::Fail | ActionKind::Skip if st.is_finished() => {
                Err(no(format!("it is already {}", st.as_str())))
            }
            ActionKind::Commit if self.task(i).worktree.is_none() => {
                Err(no("it has no worktree yet (it never started)".into()))
            }
            _ => Ok(Target::Task(i)),
        }
    }

    fn known_ids(&self) -> String {
        let n = self.plan.ids.len();
        let mut s = self
            .plan
            .ids
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if n > 8 {
            s.push_str(&format!(", … ({n} in all)"));
        }
        s
    }

    /// Carries out an action; a refused one is journaled as `command` with the reason.
    pub(super) fn on_action(&mut self, a: Action, now: Ms, fx: &mut Vec<Effect>) {
        let target = match self.check(&a) {
            Ok(t) => t,
            Err(e) => {
                let task = a.task.as_deref().and_then(|id| self.index_of(id));
                self.journal(
                    fx,
                    now,
                    task,
                    "command",
                    format!("refused: {e}"),
                    Value::Null,
                );
                return;
            }
        };
        let i = match target {
            Target::Task(i) => i,
            Target::Run => usize::MAX,
        };
        match a.kind {
            ActionKind::Retry => self.retry(i, now, fx),
            ActionKind::Restart | ActionKind::Resume => {
                let resume = a.kind == ActionKind::Resume;
                let tail = self.runs[i]
                    .worker
                    .as_ref()
                    .map(|w| w.screen.tail(self.policy.heal.error_tail_lines))
                    .unwrap_or_default();
                let t = Trouble {
                    line: String::new(),
                    context: Vec::new(),
                    why: format!("{} by hand", a.kind),
                    tail,
                    channel: false,
                };
                self.journal(fx, now, Some(i), "command", t.why.clone(), Value::Null);
                self.restart(i, &t, resume, Some(0), now, fx);
            }
            ActionKind::Nudge => {
                let text = a
                    .text
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| self.nudge_text(i));
                self.send(
                    i,
                    format!("{text}\r").into_bytes(),
                    "command",
                    "nudge by hand",
                    now,
                    fx,
                );
            }
            ActionKind::Answer | ActionKind::Keys => {
                let text = a.text.unwrap_or_default();
                let bytes = if a.kind == ActionKind::Answer {
                    format!("{text}\r").into_bytes()
                } else {
                    unescape_keys(&text)
                };
                let what = format!("{} by hand", a.kind);
                self.send(i, bytes, "command", &what, now, fx);
                // A person answered: the prompt's ladder starts afresh for the next prompt.
                self.runs[i].ladder.clear();
                if self.status(i) == Status::NeedsAttention {
                    self.set_status(i, self.runs[i].life.round.status(), now, fx);
                }
            }
            ActionKind::Kill => {
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "command",
                    "kill by hand".into(),
                    Value::Null,
                );
                self.stop_worker(i, StopReason::Kill, fx);
                self.runs[i].restart_at = None;
                self.runs[i].run_ended_at = Some(now);
                self.set_verdict(
                    i,
                    Verdict::signal(VerdictKind::Error, "manual", "killed by hand"),
                    now,
                    fx,
                );
                self.set_status(i, Status::Error, now, fx);
            }
            ActionKind::Fail => {
                let why = a.text.unwrap_or_else(|| "failed by hand".into());
                self.fail(i, &why, now, fx);
            }
            ActionKind::Skip => {
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "command",
                    "skip by hand".into(),
                    Value::Null,
                );
                self.stop_worker(i, StopReason::Skip, fx);
                self.runs[i].restart_at = None;
                self.runs[i].run_ended_at = Some(now);
                self.set_status(i, Status::Skipped, now, fx);
            }
            ActionKind::MarkDone => {
                self.journal(
                    fx,
                    now,
                    Some(i),
                    "command",
                    "marked done by hand".into(),
                    Value::Null,
                );
                self.stop_worker(i, StopReason::Complete, fx);
                self.runs[i].restart_at = None;
                self.complete(i, now, fx);
            }
            ActionKind::Commit => self.commit_worktree(
                i,
                "command",
                "commit the worktree's changes by hand".into(),
                " at a person's request",
                now,
                fx,
            ),
            ActionKind::Escalate => {
                let why = a.text.unwrap_or_else(|| "escalated by hand".into());
                self.escalate(i, why, now, fx);
            }
            ActionKind::PauseAgent | ActionKind::ResumeAgent => {
                let agent = match target {
                    Target::Task(i) => self.agent_of(i).to_string(),
                    Target::Run => a.task.clone().unwrap_or_default(),
                };
                if a.kind == ActionKind::PauseAgent {
                    self.paused_agents.insert(agent.clone(), Ms::MAX);
                    self.journal(
                        fx,
                        now,
                        None,
                        "command",
                        format!("{agent}'s tasks paused by hand (running workers go on; resume_agent lets new ones start)"),
                        json!({ "agent": agent }),
                    );
                } else {
                    self.paused_agents.remove(&agent);
                    for j in 0..self.runs.len() {
                        if self.agent_of(j) == agent
                            && self.runs[j].worker.is_none()
                            && self.runs[j].restart_at.is_some_and(|t| t > now)
                        {
                            self.runs[j].restart_at = Some(now);
                        }
                    }
                    self.journal(
                        fx,
                        now,
                        None,
                        "command",
                        format!("{agent}'s tasks resumed by hand"),
                        json!({ "agent": agent }),
                    );
                }
            }
            ActionKind::PauseScheduler | ActionKind::ResumeScheduler => {
                self.paused = a.kind == ActionKind::PauseScheduler;
                let what = if self.paused { "paused" } else { "resumed" };
                self.journal(
                    fx,
                    now,
                    None,
                    "command",
                    format!("scheduler {what}"),
                    Value::Null,
                );
            }
            ActionKind::MoreParallel | ActionKind::LessParallel | ActionKind::SetMaxParallel => {
                self.max_parallel = match a.kind {
                    ActionKind::MoreParallel => self.max_parallel + 1,
                    ActionKind::LessParallel => self.max_parallel.saturating_sub(1),
                    _ => a.text.as_deref().and_then(|t| t.parse().ok()).unwrap_or(1),
                }
                .max(1);
                let m = self.max_parallel;
                self.journal(
                    fx,
                    now,
                    None,
                    "command",
                    format!("max_parallel = {m}"),
                    Value::Null,
                );
            }
            ActionKind::Stop => {
                self.quitting = true;
                self.journal(
                    fx,
                    now,
                    None,
                    "command",
                    "stop: workers stop; running tasks resume next run".into(),
                    Value::Null,
                );
                for j in 0..self.runs.len() {
                    self.stop_worker(j, StopReason::Quit, fx);
                }
            }
        }
    }

    fn retry(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        self.journal(
            fx,
            now,
            Some(i),
            "command",
            "retry by hand".into(),
            Value::Null,
        );
        let run = &mut self.runs[i];
        run.ladder.clear();
        run.auto_keys = 0;
        run.resume_next = false;
        run.restart_context = None;
        let holds_slot = run.worker.is_some() || run.restart_at.is_some();
        if holds_slot {
            // A live (or restarting) worker restarts now, in its own slot.
            run.restart_at = Some(now);
            if let Some(w) = run.worker.as_mut() {
                if w.stop.is_none() || w.stop == Some(StopReason::Kill) {
                    w.stop = Some(StopReason::Restart);
                    fx.push(Effect::Kill { task: i });
                }
            }
            self.set_status(i, self.runs[i].life.round.status(), now, fx);
        } else {
            // Without a worker the task queues again: the scheduler starts it when its
            // dependencies are done and a slot is free (max_parallel holds).
            self.set_status(i, Status::Pending, now, fx);
        }
    }
}
