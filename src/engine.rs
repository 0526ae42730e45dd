//! The engine: a deterministic state machine `(state, event, now) -> (state, effects)`.
//!
//! It owns the manifest data, the plan and each task's run state, and decides everything:
//! scheduling, classification, heal actions, retries and the lifecycle. It never touches a PTY,
//! git, the disk or the clock: the shell feeds it [`Event`]s with `now` (ms on any monotonic-ish
//! clock; real runs use Unix epoch ms so manifest times are real) and carries out the
//! [`Effect`]s it returns.

use crate::classify::{ScreenSnapshot, Verdict, VerdictKind};
use crate::config::{render_prompt, Compiled, Config};
use crate::manifest::{Manifest, Status};
use crate::plan::Plan;
use serde_json::{json, Value};
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;

mod actions;
mod heal;
mod view;
pub use actions::{ActionError, Target};
pub use heal::Situation;
use std::hash::{Hash, Hasher};
pub use view::{RunView, TaskView};

/// Milliseconds on the engine's clock.
pub type Ms = u64;

/// Something that happened, reported by the shell (or the person, through an [`Event::Action`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// Time passed: classify live workers, heal, schedule.
    Tick,
    /// A worker's screen as it is now (sent when it changed) and when its last byte arrived.
    Screen {
        /// Task index (manifest order).
        task: usize,
        /// The full emulated screen.
        screen: ScreenSnapshot,
        /// When the last byte of output arrived, ms.
        last_output_at: Ms,
    },
    /// A file changed in the task's worktree.
    Activity {
        /// Task index.
        task: usize,
    },
    /// The worktree is ready and the worker's process runs.
    Started {
        /// Task index.
        task: usize,
        /// Absolute worktree path.
        worktree: String,
        /// Branch checked out there.
        branch: String,
        /// Commit the branch was created from.
        base_commit: String,
        /// The argv actually run (for the journal).
        argv: Vec<String>,
    },
    /// The worktree or the process could not be set up; the message says why.
    StartFailed {
        /// Task index.
        task: usize,
        /// What went wrong, e.g. "agent binary `codex` not found on PATH".
        error: String,
    },
    /// The worker's process exited.
    Exited {
        /// Task index.
        task: usize,
        /// Exit status (128+signal when killed by a signal).
        code: i32,
        /// Commits on the task's branch ahead of its base, if git could tell.
        commits_ahead: Option<usize>,
        /// Files with uncommitted changes in the worktree, if git could tell.
        uncommitted: Option<usize>,
    },
    /// Answer to [`Effect::Inspect`]: the task's branch state while its agent is idle.
    Inspected {
        /// Task index.
        task: usize,
        /// Commits ahead of base.
        commits_ahead: usize,
        /// Files with uncommitted changes in the worktree.
        uncommitted: usize,
    },
    /// Answer to [`Effect::Verify`].
    Verified {
        /// Task index.
        task: usize,
        /// The attempt it verifies (a result for an earlier attempt is ignored).
        attempt: u32,
        /// True when the verify command exited 0.
        ok: bool,
        /// The last lines of its output (or why it could not run).
        output: String,
    },
    /// A person's action (a key, `switchyard ctl`, a client on the socket), by task id. Checked
    /// with [`Engine::check`]; a refused one is journaled and changes nothing.
    Action(crate::action::Action),
}

/// What the engine needs to start a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct StartSpec {
    /// Task index.
    pub task: usize,
    /// Task id.
    pub task_id: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Agent profile name.
    pub agent: String,
    /// The profile's argv template.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// The full prompt (with the error context on a restart).
    pub prompt: String,
    /// Task title.
    pub title: String,
    /// Issue number, if any.
    pub issue: Option<u64>,
    /// Branch name.
    pub branch: String,
    /// Ref to branch from when the branch does not exist yet.
    pub base: String,
    /// Files the task touches (given to the worker as `SWITCHYARD_FILES`).
    pub files: Vec<String>,
}

/// One line of the event journal (`<workdir>/logs/events.jsonl`).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// When, ms.
    pub at: Ms,
    /// Task id, if about one task.
    pub task: Option<String>,
    /// `start`, `spawn`, `verdict`, `heal`, `status`, `exit`, `command`, `error`.
    pub kind: &'static str,
    /// One human-readable line.
    pub message: String,
    /// Details (e.g. the exact bytes sent).
    pub data: Value,
}

/// Work for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Create (or reuse) the worktree and spawn the worker; answer with Started/StartFailed.
    Start(StartSpec),
    /// Write bytes to the worker's PTY.
    Write {
        /// Task index.
        task: usize,
        /// Exact bytes (without the final Enter when `submit` is set).
        bytes: Vec<u8>,
        /// Type `bytes` as text (bracketed paste when the child asked for it), then press Enter
        /// after a short pause: agents such as codex (0.169) take text and `\r` arriving in one
        /// write as a newline in their input box, not as "send".
        submit: bool,
    },
    /// Kill the worker's process; an Exited event follows.
    Kill {
        /// Task index.
        task: usize,
    },
    /// Count commits ahead of base and uncommitted files; answer with Inspected.
    Inspect {
        /// Task index.
        task: usize,
    },
    /// Commit every change in the worktree (`git add -A`, commit); then answer with Inspected.
    Commit {
        /// Task index.
        task: usize,
        /// The commit message.
        message: String,
    },
    /// Run the verify command (argv) in the worktree; answer with Verified.
    Verify {
        /// Task index.
        task: usize,
        /// The attempt it verifies (a result for an earlier attempt is ignored).
        attempt: u32,
        /// The command.
        argv: Vec<String>,
    },
    /// Append the error context of a failed attempt to the task's log.
    SaveErrorLog {
        /// Task index.
        task: usize,
        /// The text (screen tail with a header).
        text: String,
    },
    /// Save the manifest (atomically).
    Persist,
    /// Append to the journal.
    Journal(JournalEntry),
    /// A task needs a person: ring the bell, run the notify command.
    Attention {
        /// Task index.
        task: usize,
        /// Why.
        reason: String,
    },
}

/// Why switchyard itself stopped a worker (so its exit is not taken as a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A restart follows.
    Restart,
    /// Killed by hand or by the heal ladder; the task is `error`.
    Kill,
    /// Skipped by hand.
    Skip,
    /// The task is complete.
    Complete,
    /// switchyard is quitting.
    Quit,
}

/// A live (or starting) worker's state as the engine sees it.
#[derive(Debug, Clone)]
pub struct WorkerState {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the start was requested, ms.
    pub spawned_at: Ms,
    /// True once the process runs (Started received).
    pub live: bool,
    /// Last byte of output, ms.
    pub last_output_at: Ms,
    /// Last change of the screen text, ms.
    pub last_change_at: Ms,
    /// Last worktree activity or heal action, ms.
    pub last_activity_at: Ms,
    /// The latest full screen.
    pub screen: ScreenSnapshot,
    screen_hash: u64,
    acted_on: Option<u64>,
    inspecting: bool,
    /// The (verdict, rule) seen on consecutive ticks and since when, ms.
    held: Option<(VerdictKind, String, Ms)>,
    /// Set when switchyard stopped it on purpose.
    pub stop: Option<StopReason>,
}

/// A task's run state beside its manifest entry.
#[derive(Debug, Clone, Default)]
pub struct TaskRun {
    /// The latest verdict.
    pub verdict: Option<Verdict>,
    /// The worker, while one exists.
    pub worker: Option<WorkerState>,
    /// A (re)start is due at this time.
    pub restart_at: Option<Ms>,
    restart_context: Option<String>,
    /// Where each heal ladder stands: situation → (step, times used).
    pub ladder: BTreeMap<Situation, (usize, u32)>,
    /// Automatic keystroke injections sent (answers, nudges, keys).
    pub auto_keys: u32,
    running_since: Option<Ms>,
    resume_next: bool,
    verifying: Option<u32>,
    /// When the current run of this task began, ms (for elapsed time).
    pub run_started_at: Option<Ms>,
    /// When it ended, ms.
    pub run_ended_at: Option<Ms>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    /// The manifest, kept up to date; persisted on every status change.
    pub manifest: Manifest,
    /// The DAG.
    pub plan: Plan,
    /// The configuration.
    pub config: Config,
    compiled: Compiled,
    /// Run state per task, in manifest order.
    pub runs: Vec<TaskRun>,
    /// No new workers start while paused.
    pub paused: bool,
    /// Most workers at once.
    pub max_parallel: usize,
    /// When this run began, ms.
    pub started_at: Ms,
    /// Agents paused by a rate limit, until when (ms).
    pub paused_agents: BTreeMap<String, Ms>,
    /// Keep a worker that needs a person alive for them (the control room); when false (headless,
    /// where nobody can answer) it is stopped and the task stays `needs_attention`.
    pub hold_for_person: bool,
    quitting: bool,
}

impl Engine {
    /// Builds an engine over a validated manifest. Tasks left `running`/`stuck` (or
    /// `needs_attention` without a worker) by an earlier run are restarted in their worktree.
    pub fn new(manifest: Manifest, plan: Plan, config: Config, now: Ms) -> Result<Engine, String> {
        let compiled = config.compile()?;
        for t in manifest.tasks() {
            let agent = t.agent.as_deref().unwrap_or(&config.default_agent);
            if !config.agents.contains_key(agent) {
                return Err(format!(
                    "task {}: agent {agent:?} has no profile; add [agents.{agent}] to switchyard.toml or use one of: {}",
                    t.id,
                    config.agents.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let mut runs = vec![TaskRun::default(); plan.len()];
        for (i, t) in manifest.tasks().enumerate() {
            if matches!(
                t.status,
                Status::Running | Status::Stuck | Status::NeedsAttention
            ) {
                runs[i].restart_at = Some(now);
            }
        }
        Ok(Engine {
            max_parallel: config.max_parallel,
            manifest,
            plan,
            config,
            compiled,
            runs,
            paused: false,
            started_at: now,
            hold_for_person: true,
            paused_agents: BTreeMap::new(),
            quitting: false,
        })
    }

    /// The task's manifest entry.
    pub fn task(&self, i: usize) -> &crate::manifest::Task {
        self.manifest
            .task(&self.plan.ids[i])
            .expect("plan and manifest agree")
    }

    fn task_mut(&mut self, i: usize) -> &mut crate::manifest::Task {
        let id = self.plan.ids[i].clone();
        self.manifest
            .task_mut(&id)
            .expect("plan and manifest agree")
    }

    /// Status of task `i`.
    pub fn status(&self, i: usize) -> Status {
        self.task(i).status
    }

    /// Number of tasks per status.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut m = BTreeMap::new();
        for t in self.manifest.tasks() {
            *m.entry(t.status).or_insert(0) += 1;
        }
        m
    }

    /// Workers that exist now (starting, running, or stopping).
    pub fn live_workers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.runs.len()).filter(|&i| self.runs[i].worker.is_some())
    }

    /// True when nothing more will happen without a person: no worker runs except ones waiting
    /// for a person, no restart is due, and no task can start.
    pub fn is_settled(&self) -> bool {
        (0..self.runs.len()).all(|i| {
            let st = self.status(i);
            let run = &self.runs[i];
            match st {
                Status::Running | Status::Stuck => false,
                Status::Pending => false,
                Status::NeedsAttention => run.restart_at.is_none(),
                _ => run.worker.is_none() && run.restart_at.is_none(),
            }
        })
    }

    /// What an exit code of a run means, in one line (the one place this text lives).
    pub fn exit_meaning(code: i32) -> &'static str {
        match code {
            0 => "all tasks complete",
            2 => "a task needs a person: `switchyard attach` (or `run`) on the manifest to answer",
            3 => "bad input: nothing was run",
            _ => "halted or failed: see the tasks above and the journal",
        }
    }

    /// The exit code of a finished headless run: 0 all done, 2 a person must decide, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        let statuses: Vec<Status> = self.manifest.tasks().map(|t| t.status).collect();
        view::exit_code(&statuses)
    }

    /// Feeds one event; returns the effects to carry out, in order.
    pub fn update(&mut self, event: Event, now: Ms) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::Tick => {
                for i in 0..self.runs.len() {
                    self.classify_and_heal(i, now, &mut fx);
                }
            }
            Event::Screen {
                task,
                screen,
                last_output_at,
            } => {
                if let Some(w) = self.runs[task].worker.as_mut() {
                    let h = hash_screen(&screen);
                    if h != w.screen_hash {
                        w.screen_hash = h;
                        w.last_change_at = now;
                    }
                    w.last_output_at = w.last_output_at.max(last_output_at);
                    w.screen = screen;
                }
            }
            Event::Activity { task } => {
                if let Some(w) = self.runs[task].worker.as_mut() {
                    w.last_activity_at = now;
                }
            }
            Event::Started {
                task,
                worktree,
                branch,
                base_commit,
                argv,
            } => self.on_started(task, worktree, branch, base_commit, argv, now, &mut fx),
            Event::StartFailed { task, error } => {
                self.runs[task].worker = None;
                self.runs[task].run_ended_at = Some(now);
                self.set_verdict(
                    task,
                    Verdict::signal(VerdictKind::Error, "start", error.clone()),
                    now,
                    &mut fx,
                );
                self.journal(&mut fx, now, Some(task), "error", error, Value::Null);
                self.set_status(task, Status::Error, now, &mut fx);
            }
            Event::Exited {
                task,
                code,
                commits_ahead,
                uncommitted,
            } => self.on_exited(task, code, commits_ahead, uncommitted, now, &mut fx),
            Event::Inspected {
                task,
                commits_ahead,
                uncommitted,
            } => self.on_inspected(task, commits_ahead, uncommitted, now, &mut fx),
            Event::Verified {
                task,
                attempt,
                ok,
                output,
            } => self.on_verified(task, attempt, ok, output, now, &mut fx),
            Event::Action(a) => self.on_action(a, now, &mut fx),
        }
        self.schedule(now, &mut fx);
        fx
    }

    #[allow(clippy::too_many_arguments)]
    fn on_started(
        &mut self,
        i: usize,
        worktree: String,
        branch: String,
        base_commit: String,
        argv: Vec<String>,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let Some(w) = self.runs[i].worker.as_mut() else {
            return;
        };
        w.live = true;
        w.last_output_at = now;
        w.last_change_at = now;
        w.last_activity_at = now;
        let attempt = w.attempt;
        let t = self.task_mut(i);
        t.worktree = Some(worktree.clone());
        t.branch = Some(branch.clone());
        t.base_commit = Some(base_commit);
        self.journal(
            fx,
            now,
            Some(i),
            "spawn",
            format!(
                "attempt {attempt}: {} in {worktree} on {branch}",
                argv.first().map(String::as_str).unwrap_or("")
            ),
            json!({ "argv": argv, "worktree": worktree, "branch": branch, "attempt": attempt }),
        );
        fx.push(Effect::Persist);
    }

    fn stop_worker(&mut self, i: usize, reason: StopReason, fx: &mut Vec<Effect>) {
        if let Some(w) = self.runs[i].worker.as_mut() {
            if w.stop.is_none() {
                w.stop = Some(reason);
                fx.push(Effect::Kill { task: i });
            } else {
                w.stop = Some(reason);
            }
        }
    }

    fn nudge_text(&self, i: usize) -> String {
        let agent = self.agent_of(i);
        self.config
            .agents
            .get(agent)
            .and_then(|p| p.nudge.clone())
            .unwrap_or_else(|| self.config.heal.nudge_text.clone())
    }

    fn agent_of(&self, i: usize) -> &str {
        self.task(i)
            .agent
            .as_deref()
            .unwrap_or(&self.config.default_agent)
    }

    /// Writes bytes to a worker and journals them with the reason; marks the screen as acted on.
    fn send(
        &mut self,
        i: usize,
        bytes: Vec<u8>,
        kind: &'static str,
        reason: &str,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let Some(w) = self.runs[i].worker.as_mut() else {
            self.journal(
                fx,
                now,
                Some(i),
                kind,
                format!("{reason}: no worker to send to"),
                Value::Null,
            );
            return;
        };
        w.acted_on = Some(w.screen_hash);
        w.last_activity_at = now;
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        // A line of text followed by Enter is typed, then submitted; single keys go as they are.
        // (Key sequences such as "\x1b[B\r" go as they are: a paste would not move a menu.)
        let submit = bytes.len() > 2
            && bytes.ends_with(b"\r")
            && bytes[..bytes.len() - 1]
                .iter()
                .all(|&b| b >= 0x20 && b != 0x7f);
        self.journal(
            fx,
            now,
            Some(i),
            kind,
            format!("{reason} — sent {shown:?}"),
            json!({ "bytes": shown, "reason": reason, "submit": submit }),
        );
        let mut bytes = bytes;
        if submit {
            bytes.pop();
        }
        fx.push(Effect::Write {
            task: i,
            bytes,
            submit,
        });
    }

    fn escalate(&mut self, i: usize, reason: String, now: Ms, fx: &mut Vec<Effect>) {
        if self.status(i) == Status::NeedsAttention {
            return;
        }
        self.journal(
            fx,
            now,
            Some(i),
            "heal",
            format!("escalate: {reason}"),
            Value::Null,
        );
        self.task_mut(i).last_verdict = Some(format!("needs_attention: {reason}"));
        self.set_status(i, Status::NeedsAttention, now, fx);
        if !self.hold_for_person {
            self.stop_worker(i, StopReason::Kill, fx);
            self.runs[i].run_ended_at = Some(now);
        }
        fx.push(Effect::Attention { task: i, reason });
    }

    fn complete(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        self.runs[i].run_ended_at = Some(now);
        self.runs[i].restart_at = None;
        self.task_mut(i).completed_at = Some(rfc3339(now));
        self.set_status(i, Status::Complete, now, fx);
    }

    fn set_verdict(&mut self, i: usize, v: Verdict, now: Ms, fx: &mut Vec<Effect>) {
        let changed = self.runs[i].verdict.as_ref().is_none_or(|old| {
            old.kind != v.kind
                || (old.kind != VerdictKind::Running && old.evidence.line != v.evidence.line)
        });
        if changed {
            let text = v.to_string();
            self.journal(
                fx,
                now,
                Some(i),
                "verdict",
                text.clone(),
                json!({
                    "verdict": v.kind.label(), "rule": v.evidence.rule, "line": v.evidence.line
                }),
            );
            if v.kind != VerdictKind::Running {
                let t = self.task_mut(i);
                t.last_verdict = Some(text);
                t.last_progress = Some(rfc3339(now));
                fx.push(Effect::Persist);
            }
        }
        self.runs[i].verdict = Some(v);
    }

    fn set_status(&mut self, i: usize, st: Status, now: Ms, fx: &mut Vec<Effect>) {
        let old = self.status(i);
        if old == st {
            return;
        }
        let t = self.task_mut(i);
        t.status = st;
        t.last_progress = Some(rfc3339(now));
        self.journal(
            fx,
            now,
            Some(i),
            "status",
            format!("{old} → {st}"),
            json!({ "from": old.as_str(), "to": st.as_str() }),
        );
        fx.push(Effect::Persist);
    }

    fn journal(
        &self,
        fx: &mut Vec<Effect>,
        now: Ms,
        task: Option<usize>,
        kind: &'static str,
        message: String,
        data: Value,
    ) {
        fx.push(Effect::Journal(JournalEntry {
            at: now,
            task: task.map(|i| self.plan.ids[i].clone()),
            kind,
            message,
            data,
        }));
    }

    fn occupies_slot(&self, i: usize) -> bool {
        let run = &self.runs[i];
        run.worker.is_some() || run.restart_at.is_some()
    }

    fn schedule(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        // Blocked bookkeeping first, in manifest order (a topological order of earlier phases).
        for i in 0..self.runs.len() {
            let st = self.status(i);
            if !matches!(st, Status::Pending | Status::Blocked) {
                continue;
            }
            let failed_pred = self.plan.preds(i).map(|(j, _)| j).find(|&j| {
                matches!(
                    self.status(j),
                    Status::Error | Status::NeedsAttention | Status::Blocked
                )
            });
            match (st, failed_pred) {
                (Status::Pending, Some(j)) => {
                    let msg = format!("waits for {} which is {}", self.plan.ids[j], self.status(j));
                    self.task_mut(i).last_verdict = Some(format!("blocked: {msg}"));
                    self.set_status(i, Status::Blocked, now, fx);
                }
                (Status::Blocked, None) => self.set_status(i, Status::Pending, now, fx),
                _ => {}
            }
        }
        if self.quitting {
            return;
        }
        // Due restarts hold their slot already.
        for i in 0..self.runs.len() {
            if self.runs[i].worker.is_none()
                && self.runs[i].restart_at.is_some_and(|t| t <= now)
                && !self.paused
            {
                self.start(i, now, fx);
            }
        }
        if self.paused {
            return;
        }
        let mut occupied: Vec<usize> = (0..self.runs.len())
            .filter(|&i| self.occupies_slot(i))
            .collect();
        let mut ready: Vec<usize> = (0..self.runs.len())
            .filter(|&i| self.status(i) == Status::Pending && !self.occupies_slot(i))
            .filter(|&i| {
                self.paused_agents
                    .get(self.agent_of(i))
                    .is_none_or(|&until| until <= now)
            })
            .filter(|&i| {
                self.plan
                    .preds(i)
                    .all(|(j, _)| self.status(j).is_finished())
            })
            .collect();
        ready.sort_by_key(|&i| (std::cmp::Reverse(self.plan.height[i]), i));
        for i in ready {
            if occupied.len() >= self.max_parallel
                || occupied.iter().any(|&j| self.plan.runs_alone(j))
            {
                break;
            }
            if self.plan.runs_alone(i) && !occupied.is_empty() {
                break; // let the workers drain so the lone task is not starved
            }
            self.start(i, now, fx);
            occupied.push(i);
        }
    }

    fn start(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let run = &mut self.runs[i];
        run.restart_at = None;
        run.running_since = None;
        run.verifying = None;
        let resume = std::mem::take(&mut run.resume_next);
        let context = run.restart_context.take();
        if run.run_started_at.is_none() || run.run_ended_at.is_some() {
            run.run_started_at = Some(now);
            run.run_ended_at = None;
        }
        let agent = self.agent_of(i).to_string();
        let profile = self.config.agents[&agent].clone();
        let t = self.task(i).clone();
        let attempt = t.attempts.unwrap_or(0) + 1;
        let base_prompt = t.prompt.clone().unwrap_or_else(|| {
            render_prompt(&self.config.prompt_template, &t.id, t.issue, &t.title)
        });
        let prompt = match context {
            Some(c) => format!("{c}Fix that, then do the task:\n{base_prompt}"),
            None => base_prompt,
        };
        let spec = StartSpec {
            task: i,
            task_id: t.id.clone(),
            attempt,
            agent: agent.clone(),
            command: match (&profile.resume, resume) {
                (Some(r), true) => r.clone(),
                _ => profile.command.clone(),
            },
            env: profile.env.clone(),
            prompt,
            title: t.title.clone(),
            issue: t.issue,
            branch: t.branch.clone().unwrap_or_else(|| t.branch_name()),
            base: t
                .base_commit
                .clone()
                .unwrap_or_else(|| self.config.base.clone()),
            files: t.files.clone(),
        };
        self.runs[i].worker = Some(WorkerState {
            attempt,
            spawned_at: now,
            live: false,
            last_output_at: now,
            last_change_at: now,
            last_activity_at: now,
            screen: ScreenSnapshot::default(),
            screen_hash: 0,
            acted_on: None,
            inspecting: false,
            held: None,
            stop: None,
        });
        {
            let tm = self.task_mut(i);
            tm.attempts = Some(attempt);
            if tm.started_at.is_none() {
                tm.started_at = Some(rfc3339(now));
            }
        }
        self.journal(
            fx,
            now,
            Some(i),
            "start",
            format!("attempt {attempt} with agent {agent}"),
            json!({ "attempt": attempt, "agent": agent }),
        );
        self.set_status(i, Status::Running, now, fx);
        fx.push(Effect::Persist);
        fx.push(Effect::Start(spec));
    }
}

/// The line of a screen tail that best explains a failure: the last one that says error, failed,
/// fatal or panic, else the last line.
fn error_line(tail: &str) -> String {
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let re = regex::Regex::new(r"(?i)\b(error|failed|fatal|panic(ked)?|cannot|denied)\b")
        .expect("a valid pattern");
    lines
        .iter()
        .rev()
        .find(|l| re.is_match(l))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

fn hash_screen(s: &ScreenSnapshot) -> u64 {
    let mut h = DefaultHasher::new();
    s.rows.hash(&mut h);
    s.cursor_row.hash(&mut h);
    s.cursor_col.hash(&mut h);
    s.title.hash(&mut h);
    s.agent_state.hash(&mut h);
    h.finish()
}

/// RFC 3339 UTC text for a time in Unix epoch ms (what the manifest's time fields hold).
pub fn rfc3339(ms: Ms) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
