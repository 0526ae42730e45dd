//! The engine: a deterministic state machine `(state, event, now) -> (state, effects)`.
//!
//! It owns the manifest data, the plan and each task's run state, and decides everything:
//! scheduling, classification, heal actions, retries and the lifecycle. It never touches a PTY,
//! git, the disk or the clock: the shell feeds it [`Event`]s with `now` (ms on any monotonic-ish
//! clock; real runs use Unix epoch ms so manifest times are real) and carries out the
//! [`Effect`]s it returns.

use crate::core::classify::{ScreenSnapshot, Verdict, VerdictKind};
use crate::core::config::{render_prompt, Config, Policy};
use crate::core::manifest::{Manifest, Status};
use crate::core::plan::Plan;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};

mod actions;
mod heal;
pub mod lifecycle;
mod view;
pub use actions::{ActionError, Target};
pub use heal::Situation;
pub use lifecycle::{ConflictInfo, MergeOutcome, PrRequest, PrStatus, Round};
use std::hash::{Hash, Hasher};
pub use view::{ChannelWord, Explanation, RunView, TaskView};

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
    /// The worker's processes used the CPU (at least 5 % of a core over the last second): not a
    /// stall, but not progress either (a spinner over a failing API uses the CPU too).
    Busy {
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
    /// What the agent said about itself through its own channel (a hook event).
    Reported {
        /// Task index.
        task: usize,
        /// The report.
        report: crate::core::classify::AgentReport,
    },
    /// Answer to [`Effect::CollectFindings`]: the reviewer's findings, or why they cannot be read.
    Reviewed {
        /// Task index.
        task: usize,
        /// The review round (a result for another round is ignored).
        round: u32,
        /// The findings (crate::core::findings::parse of the findings file or final message).
        result: Result<Vec<crate::core::findings::Finding>, String>,
    },
    /// Answer to [`Effect::Merge`].
    MergeDone {
        /// Task index.
        task: usize,
        /// What the merge did.
        outcome: MergeOutcome,
    },
    /// Answer to [`Effect::Predict`]: conflicts per other side (`None` = the integration
    /// branch; an empty list = no conflict).
    Predicted {
        /// Task index.
        task: usize,
        /// Per other side, the predicted conflicts.
        results: Vec<(Option<usize>, Vec<ConflictInfo>)>,
        /// Why some prediction could not be made, if so.
        error: Option<String>,
    },
    /// Answer to [`Effect::OpenPr`]: the pull request's number, or the error with its fix.
    PrOpened {
        /// Task index.
        task: usize,
        /// The number, or what went wrong (e.g. "`gh` not found on PATH: install the GitHub CLI").
        result: Result<u64, String>,
    },
    /// Answer to [`Effect::PollPr`].
    PrPolled {
        /// Task index.
        task: usize,
        /// The state, or why it could not be read.
        result: Result<PrStatus, String>,
    },
    /// A person typed into the worker (attached): a state change that restarts its ladders.
    Typed {
        /// Task index.
        task: usize,
    },
    /// A person's action (a key, `switchyard ctl`, a client on the socket), by task id. Checked
    /// with [`Engine::check`]; a refused one is journaled and changes nothing.
    Action(crate::core::action::Action),
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
    /// What this start does: the work, a review, a fix or a resolve round.
    pub round: Round,
    /// Before the agent starts, merge this branch into the task's branch in its worktree,
    /// leaving conflict markers uncommitted (the first start of a resolve round).
    pub merge_first: Option<String>,
    /// The tasks its `context` names, whose final messages the shell appends to `prompt` (see
    /// [`crate::core::final_message::render_context`]).
    pub context: Vec<crate::core::final_message::ContextSource>,
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
    /// Hold the worker (`on`: its processes stopped, SIGSTOP) or let it go on (SIGCONT):
    /// `warn.pause_on_conflict` holds the later of two conflicting tasks until the earlier merged.
    Hold {
        /// Task index.
        task: usize,
        /// True to hold, false to let it go on.
        on: bool,
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
    /// Read review round `round`'s findings (the findings file the reviewer was given, else its
    /// final screen); answer with Reviewed.
    CollectFindings {
        /// Task index.
        task: usize,
        /// The review round.
        round: u32,
    },
    /// Keep the prompt of a fix or resolve round on disk (`logs/<id>.round.json`), so a run
    /// killed during the round resumes it with the same findings or conflicts
    /// ([`Engine::restore_round`]).
    SaveRound {
        /// Task index.
        task: usize,
        /// The round (`Fix` or `Resolve`).
        round: crate::core::engine::lifecycle::Round,
        /// The round's prompt.
        prompt: String,
    },
    /// Append text (switchyard's own, e.g. review findings) to the task's log.
    TaskLog {
        /// Task index.
        task: usize,
        /// The text.
        text: String,
    },
    /// Merge the task's branch into the integration branch in memory (git2, no checkout);
    /// answer with MergeDone.
    Merge {
        /// Task index.
        task: usize,
        /// The task's branch.
        branch: String,
        /// The integration branch.
        into: String,
        /// Fast-forward and/or merge commit.
        mode: crate::core::config::lifecycle::MergeModeConfig,
        /// The merge commit's message.
        message: String,
    },
    /// Predict conflicts of the task's branch against each other branch (in memory); answer
    /// with Predicted.
    Predict {
        /// Task index.
        task: usize,
        /// The task's branch.
        branch: String,
        /// The other sides: (task index or `None` for the integration branch, branch).
        against: Vec<(Option<usize>, String)>,
    },
    /// Push the branch and open (or update) its pull request; answer with PrOpened.
    OpenPr {
        /// Task index.
        task: usize,
        /// What to push and open.
        req: PrRequest,
    },
    /// Read a pull request's state; answer with PrPolled.
    PollPr {
        /// Task index.
        task: usize,
        /// The pull request's number.
        number: u64,
        /// The GitHub CLI's argv prefix.
        gh: Vec<String>,
    },
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
    /// When the screen first showed any text, ms (the start-up grace counts from here: gemini
    /// 0.61 on a loaded machine prints nothing for 10 s, then draws its input box seconds before
    /// it submits the `--prompt-interactive` prompt).
    pub drawn_at: Option<Ms>,
    /// Last change of the screen text, ms.
    pub last_change_at: Ms,
    /// Last worktree activity, CPU use or heal action, ms.
    pub last_activity_at: Ms,
    /// Last sign of progress, ms: a file change in the worktree, a word from the agent's own
    /// channel, a heal action or a keystroke (CPU use alone is not progress).
    pub last_progress_at: Ms,
    /// The latest full screen.
    pub screen: ScreenSnapshot,
    screen_hash: u64,
    acted_on: Option<u64>,
    inspecting: bool,
    /// The (verdict, rule) seen on consecutive ticks and since when, ms.
    held: Option<(VerdictKind, String, Ms)>,
    /// Set when switchyard stopped it on purpose.
    pub stop: Option<StopReason>,
    /// The agent's latest word about itself (a hook), until its next one.
    pub reported: Option<crate::core::classify::AgentReport>,
    /// When that word came, ms.
    pub reported_at: Ms,
    /// The prompt answered last: (its line, a hash of its dialog, when), so a dialog still on
    /// screen after the answer (an agent restarting itself) is not answered again.
    answered: Option<(String, u64, Ms)>,
    /// The names of the `once` answers sent in this attempt (see
    /// [`crate::core::config::AnswerSpec::once`]).
    answered_once: Vec<String>,
    /// The error context this attempt was started with (never taken for a new error).
    echo: Option<crate::core::classify::Echo>,
    /// The echo is the rate-limit line a resumed attempt's history shows again (see
    /// `TaskRun::resume_echo`): it lapses once the agent retries a rate limit of its own, or has
    /// worked and the line shows on no row, on more rows, or lower down than before (see
    /// `heal::lapse_resume_echo`), so a later rate limit of its own counts.
    echo_expires: bool,
    /// How many rows showed that line at most, and the lowest row that showed it last time
    /// (where the redrawn history has it).
    echo_rows: (usize, Option<usize>),
    /// The profile's `resume_prompt`, for a resumed attempt until it was typed.
    resume_prompt: Option<String>,
    /// An error waits for the branch state before the ladder acts (a moved branch is verified,
    /// not restarted).
    error_check: Option<heal::Trouble>,
    /// The agent has been seen at work (a busy rule, its own channel saying it works): before
    /// that, an idle screen in its first seconds is its start-up, not the end of a turn.
    turn_seen: bool,
    /// Its channel named its session already (the first one is the agent's own).
    session_seen: bool,
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
    /// The rate-limit line that paused the task: a resumed agent redraws its conversation, that
    /// line included, and it must not pause the task again.
    resume_echo: Option<String>,
    /// The agent's own session id: the first its channel reported in an attempt (opencode's
    /// root session; its subagents report sessions of their own later), kept across resumes
    /// and dropped at a fresh start ([`crate::core::classify::AgentReport::session`]): what
    /// `{session_id}` in the profile's `resume_session` continues.
    agent_session: Option<String>,
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
    /// Review, fix, merge and pull-request bookkeeping.
    pub life: lifecycle::LifeRun,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    /// The manifest, kept up to date; persisted on every status change. Statuses change only
    /// through [`Engine::update`]: the scheduler keeps its counters in step with them.
    pub manifest: Manifest,
    /// The DAG.
    pub plan: Plan,
    /// The policy it runs by (compiled from the config; no UI or shell settings).
    pub policy: Policy,
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
    /// Per agent, its rate-limit pauses without a reset time on screen since it last worked for
    /// `heal.stable_ms` (the step of the back-off, see `heal::rate_limit_pause`).
    rate_limit_streak: BTreeMap<String, u32>,
    /// Keep a worker that needs a person alive for them (the control room); when false (headless,
    /// where nobody can answer) it is stopped and the task stays `needs_attention`.
    pub hold_for_person: bool,
    quitting: bool,
    sched: Sched,
    queue: lifecycle::Queue,
}

/// Scheduling bookkeeping, kept in step with every status change (see
/// [`Engine::status_changed`]) so that neither a tick nor an event walks all tasks.
#[derive(Debug, Default)]
struct Sched {
    /// Per phase: tasks not finished (the phase gate is open when the phase before has none).
    unfinished: Vec<usize>,
    /// Per phase: tasks that are `error`, `needs_attention` or `blocked`.
    failed: Vec<BTreeSet<usize>>,
    /// Per task: its own predecessors (dependsOn, same file) not finished.
    waiting: Vec<u32>,
    /// `pending` tasks whose predecessors and phase gate are finished, in start order (longest
    /// remaining critical path first, then manifest order).
    ready: BTreeSet<(Reverse<usize>, usize)>,
    /// Tasks holding a worker slot: a worker exists or a restart is due.
    active: BTreeSet<usize>,
    /// Tasks whose blocked state may have changed since the last schedule.
    recheck: BTreeSet<usize>,
    /// A status or a slot changed since the last schedule.
    changed: bool,
    /// `max_parallel`, `paused` and the time, as the last schedule saw them (the shell may set
    /// the public fields directly; a paused agent's pause may have run out since).
    seen: Option<(usize, bool, Ms)>,
}

/// `error`, `needs_attention` and `blocked` block the tasks that wait for them.
fn blocks_dependents(s: Status) -> bool {
    matches!(s, Status::Error | Status::NeedsAttention | Status::Blocked)
}

/// Task `i` of the manifest, found through the plan's phase ranges (no search).
fn task_at<'a>(m: &'a Manifest, plan: &Plan, i: usize) -> &'a crate::core::manifest::Task {
    let p = plan.phase[i];
    let t = &m.phases[p].tasks[i - plan.phase_tasks(p).start];
    debug_assert_eq!(t.id, plan.ids[i], "plan and manifest agree");
    t
}

impl Engine {
    /// Builds an engine over a validated manifest. Tasks left `running`/`stuck` (or
    /// `needs_attention` without a worker) by an earlier run are restarted in their worktree.
    pub fn new(manifest: Manifest, plan: Plan, config: Config, now: Ms) -> Result<Engine, String> {
        Engine::with_policy(manifest, plan, Policy::compile(&config)?, now)
    }

    /// Builds an engine over a validated manifest with an already compiled policy.
    pub fn with_policy(
        manifest: Manifest,
        plan: Plan,
        config: Policy,
        now: Ms,
    ) -> Result<Engine, String> {
        let roles: Vec<&str> = config.roles.keys().map(String::as_str).collect();
        if let Some(p) = manifest.check_roles(&roles).first() {
            return Err(p.to_string());
        }
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
                Status::Running | Status::Stuck | Status::NeedsAttention | Status::Fix
            ) {
                runs[i].restart_at = Some(now);
            }
        }
        let mut engine = Engine {
            max_parallel: config.max_parallel,
            manifest,
            plan,
            policy: config,
            runs,
            paused: false,
            started_at: now,
            hold_for_person: true,
            paused_agents: BTreeMap::new(),
            rate_limit_streak: BTreeMap::new(),
            quitting: false,
            sched: Sched::default(),
            queue: Default::default(),
        };
        engine.resume_lifecycle(now);
        engine.init_sched();
        Ok(engine)
    }

    /// The task's manifest entry (found by index, no search).
    pub fn task(&self, i: usize) -> &crate::core::manifest::Task {
        task_at(&self.manifest, &self.plan, i)
    }

    fn task_mut(&mut self, i: usize) -> &mut crate::core::manifest::Task {
        let p = self.plan.phase[i];
        let t = &mut self.manifest.phases[p].tasks[i - self.plan.phase_tasks(p).start];
        debug_assert_eq!(t.id, self.plan.ids[i], "plan and manifest agree");
        t
    }

    /// Builds the scheduling bookkeeping from the statuses and run states as they are.
    fn init_sched(&mut self) {
        let n = self.plan.len();
        let phases = self.plan.phase_names.len();
        let mut s = Sched {
            unfinished: vec![0; phases],
            failed: vec![BTreeSet::new(); phases],
            waiting: vec![0; n],
            recheck: (0..n).collect(),
            ..Sched::default()
        };
        for i in 0..n {
            let st = self.status(i);
            if !st.is_finished() {
                s.unfinished[self.plan.phase[i]] += 1;
            }
            if blocks_dependents(st) {
                s.failed[self.plan.phase[i]].insert(i);
            }
            s.waiting[i] = self
                .plan
                .own_preds(i)
                .filter(|&(j, _)| !self.status(j).is_finished())
                .count() as u32;
            if self.occupies_slot(i) {
                s.active.insert(i);
            }
        }
        self.sched = s;
        for i in 0..n {
            self.refresh_ready(i);
        }
    }

    /// Puts task `i` in the ready set, or takes it out, as its state says now.
    fn refresh_ready(&mut self, i: usize) {
        let p = self.plan.phase[i];
        let gate_open = !self.plan.gate(p) || self.sched.unfinished[p - 1] == 0;
        let key = (Reverse(self.plan.height[i]), i);
        if self.status(i) == Status::Pending && self.sched.waiting[i] == 0 && gate_open {
            self.sched.ready.insert(key);
        } else {
            self.sched.ready.remove(&key);
        }
    }

    /// Keeps the scheduling bookkeeping in step with task `i` going from `old` to `new`.
    fn status_changed(&mut self, i: usize, old: Status, new: Status) {
        let p = self.plan.phase[i];
        let next_gated = p + 1 < self.plan.phase_names.len() && self.plan.gate(p + 1);
        let succs: Vec<usize> = self
            .plan
            .graph
            .edges_directed(petgraph::graph::NodeIndex::new(i), petgraph::Outgoing)
            .filter(|e| *e.weight() != crate::core::plan::EdgeKind::Phase)
            .map(|e| petgraph::visit::EdgeRef::target(&e).index())
            .collect();
        if old.is_finished() != new.is_finished() {
            let was_open = self.sched.unfinished[p] == 0;
            for &k in &succs {
                if new.is_finished() {
                    self.sched.waiting[k] -= 1;
                } else {
                    self.sched.waiting[k] += 1;
                }
            }
            if new.is_finished() {
                self.sched.unfinished[p] -= 1;
            } else {
                self.sched.unfinished[p] += 1;
            }
            for &k in &succs {
                self.refresh_ready(k);
            }
            if next_gated && was_open != (self.sched.unfinished[p] == 0) {
                for k in self.plan.phase_tasks(p + 1) {
                    self.refresh_ready(k);
                }
            }
        }
        if blocks_dependents(old) != blocks_dependents(new) {
            let was_empty = self.sched.failed[p].is_empty();
            if blocks_dependents(new) {
                self.sched.failed[p].insert(i);
            } else {
                self.sched.failed[p].remove(&i);
            }
            self.sched.recheck.extend(succs.iter().copied());
            if next_gated && was_empty != self.sched.failed[p].is_empty() {
                self.sched.recheck.extend(self.plan.phase_tasks(p + 1));
            }
        }
        if matches!(new, Status::Pending | Status::Blocked) {
            self.sched.recheck.insert(i);
        }
        self.refresh_ready(i);
    }

    /// The task `i` waits for that blocks it, if any: behind its phase gate the latest blocking
    /// task of the phase before, then its own predecessors, newest edge first.
    fn blocking_pred(&self, i: usize) -> Option<usize> {
        let p = self.plan.phase[i];
        if self.plan.gate(p) {
            if let Some(&j) = self.sched.failed[p - 1]
                .iter()
                .rev()
                .find(|&&j| !self.plan.has_own_edge(j, i))
            {
                return Some(j);
            }
        }
        self.plan
            .own_preds(i)
            .map(|(j, _)| j)
            .find(|&j| blocks_dependents(self.status(j)))
    }

    /// Adds task `i` to the slot holders, or takes it out, as its run state says now.
    fn sync_active(&mut self, i: usize) {
        let changed = if self.occupies_slot(i) {
            self.sched.active.insert(i)
        } else {
            self.sched.active.remove(&i)
        };
        self.sched.changed |= changed;
    }

    /// True when something that can start a task happened since the last schedule: a status or
    /// a slot changed, a restart fell due, an agent's rate-limit pause ran out, or `max_parallel`
    /// or `paused` were set. Costs a look at the slot holders and the paused agents only.
    fn schedule_due(&self, now: Ms) -> bool {
        let Some((max, paused, at)) = self.sched.seen else {
            return true;
        };
        self.sched.changed
            || max != self.max_parallel
            || paused != self.paused
            || self
                .paused_agents
                .values()
                .any(|&until| at < until && until <= now)
            || self.sched.active.iter().any(|&i| {
                self.runs[i].worker.is_none() && self.runs[i].restart_at.is_some_and(|t| t <= now)
            })
    }

    /// Status of task `i`.
    pub fn status(&self, i: usize) -> Status {
        self.task(i).status
    }

    /// Number of tasks per status.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        // One pass counting into an array; the map is built from the few statuses seen.
        let mut n = [0usize; Status::ALL.len()];
        for t in self.manifest.tasks() {
            if let Some(k) = Status::ALL.iter().position(|&s| s == t.status) {
                n[k] += 1;
            }
        }
        Status::ALL
            .iter()
            .zip(n)
            .filter(|&(_, c)| c > 0)
            .map(|(&s, c)| (s, c))
            .collect()
    }

    /// Workers that exist now (starting, running, or stopping), in manifest order.
    pub fn live_workers(&self) -> impl Iterator<Item = usize> + '_ {
        self.sched
            .active
            .iter()
            .copied()
            .filter(|&i| self.runs[i].worker.is_some())
    }

    /// True when nothing more will happen without a person: no worker runs except ones waiting
    /// for a person, no restart is due, and no task can start.
    pub fn is_settled(&self) -> bool {
        (0..self.runs.len()).all(|i| {
            let st = self.status(i);
            let run = &self.runs[i];
            match st {
                Status::Running | Status::Stuck => false,
                Status::Review | Status::Fix | Status::Merging => false,
                Status::Pending => false,
                _ if self.lifecycle_busy(i) => false,
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
        // What may have changed which tasks hold a slot: the event's own task, or (a tick, a
        // command) the tasks holding one now. Only these can change the ready set or the slots:
        // a screen, file activity or a start report cannot, so they schedule nothing.
        let is_tick = matches!(event, Event::Tick);
        let (own_task, sweep, mut schedule) = match &event {
            Event::Tick => (None, true, false),
            Event::Action(_) => (None, true, true),
            Event::Screen { task, .. }
            | Event::Activity { task }
            | Event::Busy { task }
            | Event::Started { task, .. }
            | Event::Reported { task, .. }
            | Event::Typed { task } => (Some(*task), false, false),
            Event::StartFailed { task, .. }
            | Event::Exited { task, .. }
            | Event::Inspected { task, .. }
            | Event::Verified { task, .. }
            | Event::Reviewed { task, .. }
            | Event::MergeDone { task, .. }
            | Event::PrOpened { task, .. }
            | Event::PrPolled { task, .. } => (Some(*task), false, true),
            Event::Predicted { task, .. } => (Some(*task), false, false),
        };
        let holders: Vec<usize> = if sweep {
            self.sched.active.iter().copied().collect()
        } else {
            Vec::new()
        };
        match event {
            Event::Tick => {
                for &i in &holders {
                    self.classify_and_heal(i, now, &mut fx);
                }
                self.predict_due(now, &mut fx);
                self.poll_prs(now, &mut fx);
                self.pump_merges(now, &mut fx);
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
                    if w.drawn_at.is_none() && screen.rows.iter().any(|r| !r.trim().is_empty()) {
                        w.drawn_at = Some(now);
                    }
                    w.screen = screen;
                }
            }
            Event::Activity { task } => {
                if let Some(w) = self.runs[task].worker.as_mut() {
                    w.last_activity_at = now;
                    w.last_progress_at = now;
                }
                self.note_change(task, now);
            }
            Event::Busy { task } => {
                if let Some(w) = self.runs[task].worker.as_mut() {
                    w.last_activity_at = now;
                }
            }
            Event::Reported { task, report } => self.on_reported(task, report, now, &mut fx),
            Event::Typed { task } => self.on_typed(task, now, &mut fx),
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
            // A reviewer that exits (or sits idle) on its own is done: read its findings.
            Event::Exited { task, code, .. }
                if self.status(task) == Status::Review
                    && self.runs[task]
                        .worker
                        .as_ref()
                        .is_some_and(|w| w.stop.is_none()) =>
            {
                self.runs[task].worker = None;
                self.journal(
                    &mut fx,
                    now,
                    Some(task),
                    "exit",
                    format!("reviewer exited with status {code}"),
                    json!({ "code": code }),
                );
                self.review_done(task, now, &mut fx);
            }
            Event::Exited {
                task,
                code,
                commits_ahead,
                uncommitted,
            } => self.on_exited(task, code, commits_ahead, uncommitted, now, &mut fx),
            Event::Inspected { task, .. } if self.status(task) == Status::Review => {
                if self.runs[task]
                    .worker
                    .as_ref()
                    .is_some_and(|w| w.stop.is_none())
                {
                    self.review_done(task, now, &mut fx);
                }
            }
            Event::Inspected {
                task,
                commits_ahead,
                uncommitted,
            } => self.on_inspected(task, commits_ahead, uncommitted, now, &mut fx),
            Event::Reviewed {
                task,
                round,
                result,
            } => self.on_reviewed(task, round, result, now, &mut fx),
            Event::MergeDone { task, outcome } => self.on_merged(task, outcome, now, &mut fx),
            Event::Predicted {
                task,
                results,
                error,
            } => self.on_predicted(task, results, error, now, &mut fx),
            Event::PrOpened { task, result } => self.on_pr_opened(task, result, now, &mut fx),
            Event::PrPolled { task, result } => self.on_pr_polled(task, result, now, &mut fx),
            Event::Verified {
                task,
                attempt,
                ok,
                output,
            } => self.on_verified(task, attempt, ok, output, now, &mut fx),
            Event::Action(a) => self.on_action(a, now, &mut fx),
        }
        for i in holders.into_iter().chain(own_task) {
            self.sync_active(i);
        }
        // A tick schedules only when something that can start a task happened.
        schedule |= is_tick && self.schedule_due(now);
        if schedule {
            self.schedule(now, &mut fx);
        }
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
        w.last_progress_at = now;
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
        self.policy
            .agents
            .get(agent)
            .and_then(|p| p.nudge.clone())
            .unwrap_or_else(|| self.policy.heal.nudge_text.clone())
    }

    fn agent_of(&self, i: usize) -> &str {
        self.task(i)
            .agent
            .as_deref()
            .unwrap_or(&self.policy.default_agent)
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
        w.last_progress_at = now;
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

    /// Journals `what` (as `kind`: "command" by hand, "heal" from a ladder) and asks the shell
    /// to commit everything in the task's worktree with the message "<id>: <title>", then
    /// "Committed by switchyard<how>." (`how`: " at a person's request", ": the agent left…").
    fn commit_worktree(
        &mut self,
        i: usize,
        kind: &'static str,
        what: String,
        how: &str,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let id = self.plan.ids[i].clone();
        let title = self.task(i).title.clone();
        self.journal(fx, now, Some(i), kind, what, Value::Null);
        fx.push(Effect::Commit {
            task: i,
            message: format!("{id}: {title}\n\nCommitted by switchyard{how}."),
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

    /// The task is finished (the last lifecycle stage): `complete`.
    fn complete_final(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        self.runs[i].run_ended_at = Some(now);
        self.runs[i].restart_at = None;
        self.task_mut(i).completed_at = Some(rfc3339(now));
        self.set_status(i, Status::Complete, now, fx);
    }

    fn set_verdict(&mut self, i: usize, v: Verdict, now: Ms, fx: &mut Vec<Effect>) {
        let changed = self.runs[i].verdict.as_ref().is_none_or(|old| {
            old.kind != v.kind
                || (old.kind != VerdictKind::Running
                    && !same_retry_line(old, &v)
                    && old.evidence.line != v.evidence.line)
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
            // A running task's summary shows what it does now, not the dialog it passed.
            let was_other = self.runs[i]
                .verdict
                .as_ref()
                .is_some_and(|old| old.kind != VerdictKind::Running);
            if v.kind != VerdictKind::Running || was_other {
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
        self.status_changed(i, old, st);
        self.release_held_by(i, st, now, fx);
        self.sched.changed = true;
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
        self.schedule_once(now, fx);
        self.sched.changed = false;
        self.sched.seen = Some((self.max_parallel, self.paused, now));
    }

    fn schedule_once(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        // Blocked bookkeeping first, in manifest order, for the tasks whose predecessors changed
        // (until nothing changes: a task that becomes blocked blocks its dependents).
        while let Some(i) = self.sched.recheck.pop_first() {
            let st = self.status(i);
            if !matches!(st, Status::Pending | Status::Blocked) {
                continue;
            }
            match (st, self.blocking_pred(i)) {
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
        if !self.paused {
            let due: Vec<usize> = self
                .sched
                .active
                .iter()
                .copied()
                .filter(|&i| {
                    self.runs[i].worker.is_none()
                        && self.runs[i].restart_at.is_some_and(|t| t <= now)
                })
                .collect();
            for i in due {
                self.start(i, now, fx);
            }
        }
        if self.paused {
            return;
        }
        let mut occupied = self.sched.active.len();
        let mut lone = self.sched.active.iter().any(|&j| self.plan.runs_alone(j));
        // Ready tasks in start order; starting one takes it out of the set, so walk by key.
        let mut after: Option<(Reverse<usize>, usize)> = None;
        loop {
            if occupied >= self.max_parallel || lone {
                break;
            }
            let next = match after {
                None => self.sched.ready.first().copied(),
                Some(k) => self
                    .sched
                    .ready
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some(key) = next else { break };
            after = Some(key);
            let i = key.1;
            if self.occupies_slot(i)
                || self
                    .paused_agents
                    .get(self.agent_of(i))
                    .is_some_and(|&until| until > now)
            {
                continue;
            }
            if self.plan.runs_alone(i) && occupied > 0 {
                break; // let the workers drain so the lone task is not starved
            }
            self.start(i, now, fx);
            occupied += 1;
            lone |= self.plan.runs_alone(i);
        }
    }

    fn start(&mut self, i: usize, now: Ms, fx: &mut Vec<Effect>) {
        let run = &mut self.runs[i];
        run.restart_at = None;
        run.running_since = None;
        run.verifying = None;
        let resume = std::mem::take(&mut run.resume_next);
        let context = run.restart_context.take();
        let resume_echo = run.resume_echo.take();
        if run.run_started_at.is_none() || run.run_ended_at.is_some() {
            run.run_started_at = Some(now);
            run.run_ended_at = None;
        }
        let round = self.runs[i].life.round;
        // A new round is not a restart: it does not use up an attempt.
        let fresh = std::mem::take(&mut self.runs[i].life.fresh);
        let agent = match round {
            Round::Review(_) => self.review_agent(i),
            _ => self.agent_of(i).to_string(),
        };
        let profile = self.policy.agents[&agent].clone();
        // The profile's resume argv continues the agent's conversation (after a rate-limit
        // pause or a `resume` step); without one it is a plain restart.
        let session = self.runs[i].agent_session.clone();
        let by_id = profile.resume_session.as_ref().filter(|a| !a.is_empty());
        let resume_argv = match (by_id, &session, &profile.resume) {
            (Some(by_id), Some(id), _) => Some(
                by_id
                    .iter()
                    .map(|a| a.replace("{session_id}", id))
                    .collect::<Vec<_>>(),
            ),
            (_, _, r) => r.clone(),
        };
        let resumed = resume && resume_argv.is_some();
        if !resumed {
            // A fresh start (or a new round, maybe another agent) begins a new session: the old
            // id is not its to continue.
            self.runs[i].agent_session = None;
        }
        let t = self.task(i).clone();
        let attempt = match (fresh, t.attempts.unwrap_or(0)) {
            (true, n) => n.max(1),
            (false, n) => n + 1,
        };
        let base_prompt = self.round_prompt(i, round).unwrap_or_else(|| {
            t.prompt.clone().unwrap_or_else(|| {
                render_prompt(&self.policy.prompt_template, &t.id, t.issue, &t.title)
            })
        });
        let mut env = profile.env.clone();
        if let Round::Review(n) = round {
            env.insert("SWITCHYARD_ROLE".into(), "reviewer".into());
            env.insert("SWITCHYARD_REVIEW_ROUND".into(), n.to_string());
        }
        let merge_first = match round {
            Round::Resolve(_) if fresh => Some(self.policy.lifecycle.merge.into.clone()),
            _ => None,
        };
        let prompt = match &context {
            Some(c) => format!("{c}Fix that, then do the task:\n{base_prompt}"),
            None => base_prompt,
        };
        let role = t
            .role
            .as_deref()
            .unwrap_or(crate::core::config::DEFAULT_ROLE);
        let preamble = self
            .policy
            .roles
            .get(role)
            .map_or("", |r| r.preamble.as_str());
        let writes = (!crate::core::plan::read_only(&t)).then(|| crate::core::plan::writes_of(&t));
        let prompt = crate::core::config::role_prompt(preamble, t.lens.as_deref(), writes, &prompt);
        let context_sources = t
            .context
            .iter()
            .flatten()
            .filter_map(|c| self.plan.index_of(c))
            .map(|j| {
                let c = self.task(j);
                crate::core::final_message::ContextSource {
                    id: c.id.clone(),
                    reviewer: c.role.as_deref() == Some("reviewer"),
                    lens: c.lens.clone(),
                }
            })
            .collect();
        // Everything switchyard typed (preamble, restart context, findings) may come back on the
        // agent's screen after a restart: none of it may trigger an error or rate-limit rule.
        let echo = context
            .as_ref()
            .map(|_| crate::core::classify::Echo::new(&prompt));
        // A resumed agent shows its conversation again, the rate-limit line that paused it too.
        let echo_expires = echo.is_none() && resumed && resume_echo.is_some();
        let echo = match (echo, &resume_echo) {
            (None, Some(line)) if resumed => Some(crate::core::classify::Echo::new(line)),
            (e, _) => e,
        };
        let spec = StartSpec {
            task: i,
            task_id: t.id.clone(),
            attempt,
            agent: agent.clone(),
            command: match resume_argv {
                Some(r) if resumed => r,
                _ => profile.command.clone(),
            },
            env,
            prompt,
            title: t.title.clone(),
            issue: t.issue,
            branch: t.branch.clone().unwrap_or_else(|| t.branch_name()),
            base: t.base_commit.clone().unwrap_or_else(|| self.start_base()),
            files: if t.files.is_empty() {
                let mut f = crate::core::plan::writes_of(&t).to_vec();
                f.extend(
                    t.reads
                        .iter()
                        .flatten()
                        .filter(|r| !f.contains(r))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                f
            } else {
                t.files.clone()
            },
            round,
            merge_first,
            context: context_sources,
        };
        self.runs[i].worker = Some(WorkerState {
            attempt,
            spawned_at: now,
            live: false,
            last_output_at: now,
            drawn_at: None,
            last_change_at: now,
            last_activity_at: now,
            last_progress_at: now,
            screen: ScreenSnapshot::default(),
            screen_hash: 0,
            acted_on: None,
            inspecting: false,
            held: None,
            stop: None,
            reported: None,
            reported_at: now,
            answered: None,
            answered_once: Vec::new(),
            turn_seen: false,
            session_seen: false,
            echo,
            echo_expires,
            echo_rows: (0, None),
            resume_prompt: if resumed {
                profile.resume_prompt.clone()
            } else {
                None
            },
            error_check: None,
        });
        {
            let tm = self.task_mut(i);
            tm.attempts = Some(attempt);
            if tm.started_at.is_none() {
                tm.started_at = Some(rfc3339(now));
            }
        }
        let what = match round {
            Round::Work => format!("attempt {attempt}"),
            r => format!("{} (attempt {attempt})", r.label()),
        };
        self.journal(
            fx,
            now,
            Some(i),
            "start",
            format!("{what} with agent {agent}"),
            json!({ "attempt": attempt, "agent": agent, "round": round.label(), "resume": resumed }),
        );
        self.set_status(i, round.status(), now, fx);
        self.sched.active.insert(i);
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

/// Two rate-limit verdicts by the same rule whose lines differ only in their numbers: an agent
/// retrying by itself redraws its countdown and attempt every second ("retrying in 4s · attempt
/// 2/10", claude 2.1.330), which is not news for the journal or the manifest.
fn same_retry_line(old: &Verdict, new: &Verdict) -> bool {
    let shape = |line: &str| -> String {
        let mut out = String::with_capacity(line.len());
        for c in line.chars() {
            if c.is_ascii_digit() {
                if !out.ends_with('#') {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    old.kind == VerdictKind::RateLimited
        && new.kind == VerdictKind::RateLimited
        && old.evidence.rule == new.evidence.rule
        && shape(&old.evidence.line) == shape(&new.evidence.line)
}
