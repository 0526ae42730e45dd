//! The imperative shell around the engine: turns the outside world (worker output and exits,
//! file changes, time) into [`Event`]s and carries out the engine's [`Effect`]s (worktrees,
//! PTYs, the manifest, the journal). The headless reporter and the control room both drive it.

use crate::core::action::Action;
use crate::core::config::{render_argv, Config, Vars};
use crate::core::engine::{ActionError, Effect, Engine, Event, JournalEntry};
use crate::core::manifest::{Manifest, ManifestError};
use crate::core::plan::Plan;
use crate::host::git;
use crate::host::worker::{now_ms, ShellMsg, SpawnSpec, Spawned, Worker};
use color_eyre::eyre::{eyre, Result, WrapErr};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// The modification time of a file, if it can be read.
fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Output quiet this long (ms) makes a changed screen worth copying for the classifier now.
pub const SNAPSHOT_QUIET_MS: u64 = 200;

/// A changed screen is copied for the classifier at least this often (ms) while output flows.
pub const SNAPSHOT_MAX_MS: u64 = 1000;

/// Where things live for one manifest.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The manifest file.
    pub manifest: PathBuf,
    /// The git repository's working-tree root.
    pub repo: PathBuf,
    /// The manifest's `workdir` (default: `<repo>/../<repo name>.switchyard`).
    pub workdir: PathBuf,
    /// `<workdir>/worktrees`: one worktree per task.
    pub worktrees: PathBuf,
    /// `<workdir>/logs`: transcripts, error logs, `events.jsonl`.
    pub logs: PathBuf,
}

impl Paths {
    /// Resolves the repository (the one containing the manifest unless `repo` is given) and the
    /// workdir (relative to the manifest's directory; default beside the repository, outside it).
    pub fn resolve(manifest_path: &Path, m: &Manifest, repo: Option<&Path>) -> Result<Paths> {
        let manifest = std::path::absolute(manifest_path)
            .wrap_err_with(|| format!("resolving {}", manifest_path.display()))?;
        let dir = manifest.parent().unwrap_or(Path::new("/")).to_path_buf();
        let repo = git::repo_root(repo.unwrap_or(&dir))?;
        let workdir = match m.workdir.as_deref() {
            Some(w) if !w.is_empty() => {
                let p = Path::new(w);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    dir.join(p)
                }
            }
            _ => {
                let name = repo
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "repo".into());
                repo.parent()
                    .unwrap_or(Path::new("/"))
                    .join(format!("{name}.switchyard"))
            }
        };
        Ok(Paths {
            worktrees: workdir.join("worktrees"),
            logs: workdir.join("logs"),
            manifest,
            repo,
            workdir,
        })
    }

    /// The worktree path of a task.
    pub fn worktree(&self, task_id: &str) -> PathBuf {
        self.worktrees.join(task_id)
    }

    /// A task's transcript, `<workdir>/logs/<id>.log` (see [`crate::host::transcript`]).
    pub fn transcript(&self, task_id: &str) -> PathBuf {
        self.logs.join(format!("{task_id}.log"))
    }
}

/// Loads and checks everything a run needs: manifest, plan, config.
pub fn load(manifest_path: &Path) -> Result<(Manifest, Plan, Config, Vec<PathBuf>)> {
    let manifest = Manifest::load(manifest_path).map_err(|e| eyre!("{e}"))?;
    let plan = Plan::build(&manifest).map_err(|problems| {
        eyre!(
            "{}",
            ManifestError::Invalid {
                path: manifest_path.to_path_buf(),
                problems
            }
        )
    })?;
    let (config, files) = Config::load_for(manifest_path).map_err(|e| eyre!("{e}"))?;
    Ok((manifest, plan, config, files))
}

/// The running shell.
pub struct Runtime {
    /// The engine it drives.
    pub engine: Engine,
    /// Live workers by task index.
    pub workers: BTreeMap<usize, Worker>,
    /// Paths for this manifest.
    pub paths: Paths,
    /// Config files that were merged.
    pub config_files: Vec<PathBuf>,
    /// The shell's and the control room's settings (PTY size, scrollback, notify command, keys);
    /// the engine has its own compiled [`crate::core::config::Policy`].
    pub config: Config,
    /// The last journal lines, formatted (newest last, at most 500).
    pub recent: VecDeque<String>,
    /// Journal lines (formatted for people) not yet handed to clients; the server drains it.
    pub outbox: Vec<String>,
    /// A task needed attention since this was last cleared (the UI rings the bell).
    pub attention: bool,
    /// Something the view shows changed.
    pub changed: bool,
    /// Rows × cols every worker's PTY gets.
    pub pty_size: (u16, u16),
    /// The server's socket, given to workers for `switchyard hook` (set by the server).
    pub socket: Option<PathBuf>,
    /// Why the last manifest save failed, while it keeps failing.
    pub save_error: Option<String>,
    /// The last screens of workers that exited (shown for finished tasks).
    pub last_screens: crate::host::worker::LastScreens,
    save_due: bool,
    snapshot_at: BTreeMap<usize, u64>,
    /// What the run last wrote to (or read from) the manifest file: text, parsed, mtime.
    written: Option<(String, Manifest, Option<std::time::SystemTime>)>,
    /// Tasks a person added to the file during the run, by phase name: kept in the file.
    kept_tasks: Vec<(String, crate::core::manifest::Task)>,
    tx: mpsc::Sender<ShellMsg>,
    rx: Option<mpsc::Receiver<ShellMsg>>,
    /// The wake flag every worker's reader shares: one [`ShellMsg::Wake`] until the loop drew.
    wake: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cpu: BTreeMap<usize, (std::time::Instant, u64)>,
    starting: std::collections::BTreeSet<usize>,
    early_exits: BTreeMap<usize, ShellMsg>,
    /// Tasks whose exit is being read off the loop ([`ShellMsg::ExitRead`] not back yet).
    exiting: std::collections::BTreeSet<usize>,
    /// Worktree operations of starts take turns per branch (git::BranchLocks).
    branch_locks: std::sync::Arc<git::BranchLocks>,
    inspect_lane: crate::host::jobs::Lane,
    /// Merges, conflict predictions, pushes and pull requests (crate::host::stages), one at a time.
    life_lane: crate::host::jobs::Lane,
    /// Transcript replays for control rooms reading old scrollback, one at a time.
    scrollback_lane: crate::host::jobs::Lane,
    /// The lifecycle lane's conflict predictor (opened on first use, answers cached per commit
    /// pair); only the lane's jobs lock it.
    predictor: std::sync::Arc<std::sync::Mutex<Option<crate::host::integrate::Predictor>>>,
    /// Each task's last worker screen as text (a reviewer's final message).
    final_screens: BTreeMap<usize, String>,
    verify_cancel: BTreeMap<usize, std::sync::Arc<std::sync::atomic::AtomicBool>>,
    journal: crate::host::journal::Journal,
    /// Live workers' processes by pid, mirrored in `<workdir>/run/workers.json` so what they
    /// leave behind is found after a kill -9 of the server (crate::host::orphans).
    worker_records: BTreeMap<u32, crate::host::orphans::WorkerRecord>,
    /// File activity per task since the last tick, set by the watcher (coalesced: one
    /// `Activity` per task per tick however many files changed).
    activity: std::sync::Arc<Vec<std::sync::atomic::AtomicBool>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Runtime {
    /// Opens a manifest: loads and checks it, prepares the workdir and journal, builds the engine.
    pub fn open(
        manifest_path: &Path,
        repo: Option<&Path>,
        max_parallel: Option<usize>,
    ) -> Result<Runtime> {
        let (manifest, plan, config, config_files) = load(manifest_path)?;
        let paths = Paths::resolve(manifest_path, &manifest, repo)?;
        std::fs::create_dir_all(&paths.logs)
            .wrap_err_with(|| format!("creating {}", paths.logs.display()))?;
        std::fs::create_dir_all(&paths.worktrees)
            .wrap_err_with(|| format!("creating {}", paths.worktrees.display()))?;
        let (journal, torn) = crate::host::journal::Journal::open(&paths.logs.join("events.jsonl"))
            .map_err(|e| eyre!("{e}"))?;
        let pty_size = (config.pty_rows, config.pty_cols);
        let policy = crate::core::config::Policy::compile(&config).map_err(|e| eyre!("{e}"))?;
        let mut engine = Engine::with_policy(manifest, plan, policy, now_ms())
            .map_err(|e| eyre!("{}: {e}", manifest_path.display()))?;
        let config_base = config.base.clone();
        if let Some(n) = max_parallel {
            engine.max_parallel = n.max(1);
        }
        let (tx, rx) = mpsc::channel(1024);
        let activity: std::sync::Arc<Vec<std::sync::atomic::AtomicBool>> = std::sync::Arc::new(
            (0..engine.plan.len())
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
        );
        let watcher = watch_worktrees(&paths.worktrees, engine.plan.ids.clone(), activity.clone());
        crate::host::git::resolve_base(&paths.repo, &config_base).map_err(|e| {
            eyre!(
                "{e}; set `base` in switchyard.toml to a branch or commit that exists (the repository needs at least one commit)"
            )
        })?;
        if config.merge.enabled {
            // The merge queue's target exists before the first task branches from it.
            crate::host::integrate::ensure_branch(&paths.repo, &config.merge.into, &config_base)
                .map_err(|e| eyre!("merge.into {:?}: {e}", config.merge.into))?;
        }
        let mut rt = Runtime {
            engine,
            workers: BTreeMap::new(),
            paths,
            config_files,
            config,
            recent: VecDeque::new(),
            outbox: Vec::new(),
            attention: false,
            changed: true,
            pty_size,
            socket: None,
            save_error: None,
            last_screens: Default::default(),
            save_due: false,
            snapshot_at: BTreeMap::new(),
            written: None,
            kept_tasks: Vec::new(),
            tx,
            rx: Some(rx),
            wake: Default::default(),
            cpu: BTreeMap::new(),
            starting: Default::default(),
            early_exits: BTreeMap::new(),
            exiting: Default::default(),
            branch_locks: Default::default(),
            inspect_lane: crate::host::jobs::Lane::new("inspect")
                .wrap_err("starting the inspect lane")?,
            life_lane: crate::host::jobs::Lane::new("lifecycle")
                .wrap_err("starting the lifecycle lane")?,
            scrollback_lane: crate::host::jobs::Lane::new("scrollback")
                .wrap_err("starting the scrollback lane")?,
            predictor: Default::default(),
            final_screens: BTreeMap::new(),
            verify_cancel: BTreeMap::new(),
            worker_records: BTreeMap::new(),
            journal,
            activity,
            _watcher: watcher,
        };
        rt.written = std::fs::read_to_string(&rt.paths.manifest)
            .ok()
            .and_then(|text| {
                let m = Manifest::parse(&text).ok()?;
                Some((text, m, mtime(&rt.paths.manifest)))
            });
        rt.recover(torn);
        rt.restore_rounds();
        // Tasks whose agent finished and committed before a kill, unrecorded: verify them.
        for w in crate::host::resume::unrecorded_work(&rt.engine) {
            if w.work.uncommitted == 0 {
                rt.apply(Event::Inspected {
                    task: w.task,
                    commits_ahead: w.work.commits_ahead,
                    uncommitted: 0,
                });
            }
        }
        Ok(rt)
    }

    /// Tasks a killed run left in `fix` go on with the round they were in and its prompt (the
    /// findings or conflicts), from `logs/<id>.round.json`; without that file (or with one
    /// that does not read) the task restarts with its own prompt, and the journal says so.
    fn restore_rounds(&mut self) {
        for i in 0..self.engine.plan.len() {
            if self.engine.status(i) != crate::core::manifest::Status::Fix {
                continue;
            }
            let id = self.engine.plan.ids[i].clone();
            let path = round_file(&self.paths.logs, &id);
            let saved = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    let round =
                        crate::core::engine::lifecycle::Round::from_label(v["round"].as_str()?)?;
                    Some((round, v["prompt"].as_str()?.to_string()))
                });
            match saved {
                Some((round, prompt)) => {
                    self.push_recent(format!("{id}: resuming its {} round", round.label()));
                    self.engine.restore_round(i, round, prompt);
                }
                None => self.push_recent(format!(
                    "{id}: was in a fix round, but {} is missing or unreadable: it starts again with its own prompt",
                    path.display()
                )),
            }
        }
    }

    /// Repairs what a killed run left behind (the caller holds the run's lock), and says so in
    /// the journal lines: a torn last journal line, temp files of an interrupted manifest save,
    /// stale git ref and index locks, registrations of half-made worktrees.
    fn recover(&mut self, torn_bytes: u64) {
        if torn_bytes > 0 {
            self.push_recent(format!(
                "recovered: cut a torn last line ({torn_bytes} bytes) off the journal, left by a killed run"
            ));
        }
        match Manifest::clean_stale_temps(&self.paths.manifest) {
            Ok(removed) => {
                for p in removed {
                    self.push_recent(format!(
                        "recovered: removed {}, a temp file of an interrupted manifest save",
                        p.display()
                    ));
                }
            }
            Err(e) => self.push_recent(format!("cannot clean stale manifest temp files: {e}")),
        }
        match git::recover_stale_state(&self.paths.repo, std::time::SystemTime::now()) {
            Ok(r) => {
                for p in r.locks {
                    self.push_recent(format!(
                        "recovered: removed the stale git lock {}",
                        p.display()
                    ));
                }
                for p in r.registrations {
                    self.push_recent(format!(
                        "recovered: pruned the broken worktree registration {}",
                        p.display()
                    ));
                }
            }
            Err(e) => self.push_recent(format!("cannot check git for stale locks: {e}")),
        }
        self.kill_left_workers();
    }

    /// `<workdir>/run/workers.json`: the live workers, for the next run after a kill -9.
    fn records_path(&self) -> PathBuf {
        self.paths.workdir.join("run").join("workers.json")
    }

    /// At start (under the run's lock): kills what is left of the workers a killed run
    /// recorded — workers that ignored SIGHUP and whatever they started, even what left their
    /// session — and says so in one journal line.
    fn kill_left_workers(&mut self) {
        let path = self.records_path();
        let records = match crate::host::orphans::load(&path) {
            Ok(r) => r,
            Err(e) => {
                self.push_recent(format!(
                    "cannot check for processes left by a killed run: {e}"
                ));
                Vec::new()
            }
        };
        if records.is_empty() {
            return;
        }
        let killed = crate::host::orphans::kill_all(&crate::host::orphans::leftovers(&records));
        if !killed.is_empty() {
            let message = format!(
                "recovered: killed {} process(es) left by the workers of a run that was killed: {}",
                killed.len(),
                crate::host::orphans::describe(&killed)
            );
            self.journal(&JournalEntry {
                at: now_ms(),
                task: None,
                kind: "recover",
                message,
                data: serde_json::json!({
                    "pids": killed.iter().map(|l| l.pid).collect::<Vec<_>>(),
                    "tasks": killed.iter().map(|l| l.task.clone()).collect::<Vec<_>>(),
                }),
            });
        }
        self.save_worker_records();
    }

    /// Writes the live workers' records (small, atomic); a failure is shown, never fatal.
    fn save_worker_records(&mut self) {
        let records: Vec<_> = self.worker_records.values().cloned().collect();
        if let Err(e) = crate::host::orphans::save(&self.records_path(), &records) {
            self.push_recent(format!(
                "cannot record the workers' processes (what they leave behind after a kill -9 may outlive the run): {e}"
            ));
        }
    }

    /// Kills what is left of ended workers (their session, and everything carrying their
    /// token), forgets their records, and journals what was killed.
    fn reap_workers(&mut self, pids: &[u32]) {
        let records = self.take_worker_records(pids);
        if records.is_empty() {
            return;
        }
        let killed = crate::host::orphans::kill_all(&crate::host::orphans::leftovers(&records));
        let task = (records.len() == 1).then(|| records[0].task.clone());
        self.journal_reaped(task, &killed);
    }

    /// Forgets the records of the workers with these pids (saved at once) and returns them.
    fn take_worker_records(&mut self, pids: &[u32]) -> Vec<crate::host::orphans::WorkerRecord> {
        let records: Vec<_> = pids
            .iter()
            .filter_map(|p| self.worker_records.remove(p))
            .collect();
        if !records.is_empty() {
            self.save_worker_records();
        }
        records
    }

    /// Journals the processes that workers left behind and that were killed (nothing when none).
    fn journal_reaped(&mut self, task: Option<String>, killed: &[crate::host::orphans::Leftover]) {
        if killed.is_empty() {
            return;
        }
        self.journal(&JournalEntry {
            at: now_ms(),
            task,
            kind: "reap",
            message: format!(
                "killed {} process(es) a worker left behind: {}",
                killed.len(),
                crate::host::orphans::describe(killed)
            ),
            data: serde_json::json!({
                "pids": killed.iter().map(|l| l.pid).collect::<Vec<_>>(),
            }),
        });
    }

    /// Takes the receiving end of the shell's channel (once), for the caller's select loop.
    pub fn take_receiver(&mut self) -> mpsc::Receiver<ShellMsg> {
        self.rx.take().expect("the receiver is taken once")
    }

    /// Feeds an event through the engine and carries out its effects (answers from threads —
    /// starts, inspections, verifies — come back later through the shell channel).
    pub fn apply(&mut self, event: Event) {
        let effects = self.engine.update(event, now_ms());
        let mut persist = false;
        for fx in effects {
            if matches!(fx, Effect::Persist) {
                persist = true;
            } else {
                self.perform(fx);
            }
        }
        // Saved at the next tick (at most every 100 ms), however many changes came before.
        if persist {
            self.save_due = true;
        }
    }

    /// Checks an action (a key, `ctl`, a client) against the engine and carries it out.
    /// Returns what was done, or why it is not possible (nothing changes then).
    pub fn act(&mut self, a: Action) -> Result<String, ActionError> {
        self.engine.check(&a)?;
        let said = a.to_string();
        self.apply(Event::Action(a));
        Ok(said)
    }

    /// Handles one message from the edge.
    pub fn handle(&mut self, msg: ShellMsg) {
        match msg {
            ShellMsg::Wake => self.changed = true,
            ShellMsg::Lifecycle(event) => {
                self.apply(*event);
                self.changed = true;
            }
            ShellMsg::Activity { task } => self.apply(Event::Activity { task }),
            ShellMsg::Inspected {
                task,
                commits_ahead,
                uncommitted,
                error,
            } => {
                if let Some(e) = error {
                    self.push_recent(e);
                }
                self.apply(Event::Inspected {
                    task,
                    commits_ahead,
                    uncommitted,
                });
            }
            ShellMsg::Verified {
                task,
                attempt,
                ok,
                output,
            } => self.apply(Event::Verified {
                task,
                attempt,
                ok,
                output,
            }),
            ShellMsg::Spawned { task, result } => {
                self.starting.remove(&task);
                match result {
                    Ok(s) => {
                        let Spawned {
                            mut worker,
                            worktree,
                            branch,
                            base_commit,
                            argv,
                            token,
                        } = *s;
                        if let Some(pid) = worker.pid {
                            let id = &self.engine.plan.ids[task];
                            // Gone already: its token still finds what it started.
                            let rec = crate::host::orphans::record(id, pid, &token).unwrap_or(
                                crate::host::orphans::WorkerRecord {
                                    task: id.clone(),
                                    pid,
                                    pgid: 0,
                                    sid: 0,
                                    start_ticks: 0,
                                    token,
                                },
                            );
                            self.worker_records.insert(pid, rec);
                            self.save_worker_records();
                        }
                        // The terminal may have been resized while the worker started.
                        worker.resize(self.pty_size.0, self.pty_size.1);
                        self.workers.insert(task, worker);
                        self.apply(Event::Started {
                            task,
                            worktree,
                            branch,
                            base_commit,
                            argv,
                        });
                        // Stopped (or quit) while it was starting: stop it now that it exists.
                        let stopped = self.engine.runs[task]
                            .worker
                            .as_ref()
                            .is_none_or(|w| w.stop.is_some());
                        if stopped {
                            if let Some(w) = self.workers.get_mut(&task) {
                                w.kill();
                            }
                        }
                        if let Some(exit) = self.early_exits.remove(&task) {
                            self.handle(exit);
                        }
                    }
                    Err(error) => self.apply(Event::StartFailed { task, error }),
                }
                self.changed = true;
            }
            ShellMsg::Exited { task, .. }
                if self.starting.contains(&task) && !self.workers.contains_key(&task) =>
            {
                // The child exited before its Spawned message was handled: keep the exit for then.
                self.early_exits.insert(task, msg);
            }
            ShellMsg::Exited {
                task,
                code,
                signal,
                pid,
            } => {
                // The final screen first, so the engine's error context is the last thing shown.
                if let Some(w) = self.workers.get(&task) {
                    self.last_screens
                        .keep(task, &w.parser.lock().unwrap_or_else(|e| e.into_inner()));
                    let screen = w.snapshot();
                    self.final_screens.insert(task, screen.rows.join("\n"));
                    let last = w.last_output_ms.load(std::sync::atomic::Ordering::Relaxed);
                    self.apply(Event::Screen {
                        task,
                        screen,
                        last_output_at: last,
                    });
                }
                self.workers.remove(&task);
                // What the worker left in its session or started elsewhere goes with it.
                let records = self.take_worker_records(pid.as_slice());
                // Workers switchyard stopped had theirs captured when they were stopped.
                let stopped = self.engine.runs[task]
                    .worker
                    .as_ref()
                    .is_some_and(|w| w.stop.is_some());
                let final_job = if stopped {
                    None
                } else {
                    self.final_message_job(task)
                };
                let attempt = self.engine.runs[task]
                    .worker
                    .as_ref()
                    .map_or(0, |w| w.attempt);
                let t = self.engine.task(task);
                let worktree = t.worktree.clone().map(PathBuf::from);
                let base = t.base_commit.clone();
                let code = if signal.is_some() && code == 0 {
                    1
                } else {
                    code
                };
                // The rest reads /proc, the transcript and git: off the loop, one thread per
                // exit (16 workers ending together took 10–50 ms each on the loop under load,
                // and a large repository's status scan takes seconds).
                let tx = self.tx.clone();
                let job = move || {
                    let killed = if records.is_empty() {
                        Vec::new()
                    } else {
                        crate::host::orphans::kill_all(&crate::host::orphans::leftovers(&records))
                    };
                    let final_message = final_job.and_then(|j| j());
                    let (commits_ahead, uncommitted) =
                        branch_state(worktree.as_deref(), base.as_deref());
                    let _ = tx.blocking_send(ShellMsg::ExitRead(Box::new(
                        crate::host::worker::ExitRead {
                            task,
                            attempt,
                            code,
                            killed,
                            final_message,
                            commits_ahead,
                            uncommitted,
                        },
                    )));
                };
                self.exiting.insert(task);
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("exit-{task}"))
                    .spawn(job)
                {
                    self.exiting.remove(&task);
                    self.push_recent(format!(
                        "cannot start a thread to read an exit ({e}): its branch state is unknown"
                    ));
                    self.apply(Event::Exited {
                        task,
                        code,
                        commits_ahead: None,
                        uncommitted: None,
                    });
                }
                self.changed = true;
            }
            ShellMsg::ExitRead(read) => {
                let crate::host::worker::ExitRead {
                    task,
                    attempt,
                    code,
                    killed,
                    final_message,
                    commits_ahead,
                    uncommitted,
                } = *read;
                self.exiting.remove(&task);
                let id = self.engine.plan.ids[task].clone();
                self.journal_reaped(Some(id), &killed);
                self.journal_final_message(task, final_message);
                // Only for the attempt that exited: a newer one may have started meanwhile.
                let current = self.engine.runs[task].worker.as_ref().map(|w| w.attempt);
                if current == Some(attempt) && !self.workers.contains_key(&task) {
                    self.apply(Event::Exited {
                        task,
                        code,
                        commits_ahead,
                        uncommitted,
                    });
                }
                self.changed = true;
            }
        }
    }

    /// Sends changed screens to the engine, then a tick.
    pub fn poll(&mut self) {
        // A screen is copied for the classifier only when it changed and either its output
        // paused (SNAPSHOT_QUIET_MS: the moment prompts and idle screens become readable) or
        // SNAPSHOT_MAX_MS passed since its last copy: a spinner redrawing 12 times a second costs
        // one copy a second, not ten.
        let now = now_ms();
        let mut screens = Vec::new();
        for (&task, w) in &self.workers {
            if !w.dirty.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            let last = w.last_output_ms.load(std::sync::atomic::Ordering::Relaxed);
            let copied = self.snapshot_at.get(&task).copied().unwrap_or(0);
            let quiet = now.saturating_sub(last) >= SNAPSHOT_QUIET_MS;
            if !quiet && now.saturating_sub(copied) < SNAPSHOT_MAX_MS {
                continue;
            }
            // A copy taken while output still flows leaves the screen marked changed, so it is
            // copied once more when the output pauses (with the terminal-read check).
            if quiet {
                w.dirty.store(false, std::sync::atomic::Ordering::Release);
            }
            self.snapshot_at.insert(task, now);
            // Only when the output paused: a program printing as it reads is not waiting. /proc
            // is read before the screen is copied, so a question printed just before the read
            // is on the copy; output that arrived meanwhile voids the read (the screen is copied
            // again when it pauses).
            let (reading, foreground) = if quiet {
                (
                    w.pid.and_then(crate::host::procfs::terminal_reader),
                    w.pid.and_then(crate::host::procfs::foreground),
                )
            } else {
                (None, None)
            };
            let mut screen = w.snapshot();
            let moved = w.last_output_ms.load(std::sync::atomic::Ordering::Relaxed) != last;
            screen.reading = reading.filter(|_| !moved);
            screen.foreground = foreground;
            screens.push(Event::Screen {
                task,
                screen,
                last_output_at: last,
            });
        }
        self.snapshot_at.retain(|t, _| self.workers.contains_key(t));
        if !screens.is_empty() {
            self.changed = true;
        }
        for ev in screens {
            self.apply(ev);
        }
        let active: Vec<usize> = self
            .activity
            .iter()
            .enumerate()
            .filter(|(_, f)| f.swap(false, std::sync::atomic::Ordering::AcqRel))
            .map(|(i, _)| i)
            .collect();
        for task in self.busy_cpu() {
            if !active.contains(&task) {
                self.apply(Event::Busy { task });
            }
        }
        for task in active {
            self.apply(Event::Activity { task });
        }
        self.apply(Event::Tick);
        self.persist();
    }

    /// Runs `job` off the loop on the scrollback lane (transcript replays for control rooms, one
    /// after another), then wakes the loop so the room that asked draws the result. Returns false
    /// when the lane has stopped.
    pub fn on_scrollback_lane(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let wake = self.tx.clone();
        self.scrollback_lane.push(None, move || {
            job();
            let _ = wake.try_send(ShellMsg::Wake);
        })
    }

    /// Lets every worker's reader send a wake-up again (call after drawing what woke you).
    pub fn rearm_wakes(&self) {
        // Workers share one flag (Worker::spawn_sharing_wake).
        self.wake.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Workers whose process tree used more than 5% of a core since the last sample (sampled
    /// at most once a second, from /proc): an agent running tests prints nothing for minutes but
    /// is not stalled.
    fn busy_cpu(&mut self) -> Vec<usize> {
        let now = std::time::Instant::now();
        let mut busy = Vec::new();
        for (&task, w) in &self.workers {
            let Some(pid) = w.pid else { continue };
            let due = self
                .cpu
                .get(&task)
                .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1));
            if !due {
                continue;
            }
            let ticks = crate::host::worker::tree_cpu_ticks(pid);
            if let Some((at, before)) = self.cpu.insert(task, (now, ticks)) {
                let secs = now.duration_since(at).as_secs_f64();
                // USER_HZ is 100 on Linux: 5 ticks a second is 5% of a core.
                if ticks.saturating_sub(before) as f64 >= 5.0 * secs {
                    busy.push(task);
                }
            }
        }
        self.cpu.retain(|t, _| self.workers.contains_key(t));
        busy
    }

    /// Resizes every worker's PTY (rows × cols) and remembers the size for new ones.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.pty_size = (rows.max(2), cols.max(10));
        for w in self.workers.values_mut() {
            w.resize(self.pty_size.0, self.pty_size.1);
        }
        self.changed = true;
    }

    /// Writes bytes typed by the person into a worker (attach mode).
    pub fn type_into(&mut self, task: usize, bytes: &[u8]) {
        if let Some(w) = self.workers.get(&task) {
            let _ = w.write(bytes);
            // A person's keystroke is a state change: the heal ladders start afresh.
            self.apply(Event::Typed { task });
        }
    }

    /// Stops every worker and waits (up to `grace`) for them to exit; the manifest keeps
    /// running tasks as `running` so the next run resumes them.
    pub async fn shutdown(&mut self, rx: &mut mpsc::Receiver<ShellMsg>, grace: Duration) {
        self.apply(Event::Action(Action::global(
            crate::core::action::ActionKind::Stop,
        )));
        let deadline = tokio::time::Instant::now() + grace;
        while !self.workers.is_empty() || !self.starting.is_empty() || !self.exiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => self.handle(msg),
                _ => break,
            }
        }
        self.workers.clear();
        // Workers that did not exit in time, and everything any worker left, go now.
        let pids: Vec<u32> = self.worker_records.keys().copied().collect();
        self.reap_workers(&pids);
        for task in self.verify_cancel.keys().copied().collect::<Vec<_>>() {
            self.cancel_verify(task);
        }
        self.save_due = true;
        self.persist();
    }

    /// Reads a task's branch state (after committing everything, when `commit` has a message)
    /// on the inspect lane, so a large repository does not stall the loop; the answer comes
    /// back as [`ShellMsg::Inspected`]. A plain inspection already queued for the task is not
    /// queued twice.
    fn inspect(&mut self, task: usize, commit: Option<String>) {
        let t = self.engine.task(task);
        let worktree = t.worktree.clone().map(PathBuf::from);
        let base = t.base_commit.clone();
        let tx = self.tx.clone();
        let key = commit.is_none().then_some((task, "inspect"));
        self.inspect_lane.push(key, move || {
            let mut error = None;
            if let (Some(wt), Some(message)) = (&worktree, commit) {
                if let Err(e) = git::commit_all(wt, &message) {
                    error = Some(format!("automatic commit failed: {e}"));
                }
            }
            let (ahead, dirty) = branch_state(worktree.as_deref(), base.as_deref());
            let _ = tx.blocking_send(ShellMsg::Inspected {
                task,
                commits_ahead: ahead.unwrap_or(0),
                uncommitted: dirty.unwrap_or(0),
                error,
            });
        });
    }

    /// The run's exit code: the engine's, but never 0 while the manifest could not be saved
    /// (the next run would redo work this one finished).
    pub fn exit_code(&self) -> i32 {
        match (self.engine.exit_code(), &self.save_error) {
            (0, Some(_)) => 1,
            (c, _) => c,
        }
    }

    /// The one manifest writer: saves (atomically) when something changed since the last save.
    /// A failed save is kept due and retried at the next tick; the person sees it in the journal
    /// lines and in [`Runtime::save_error`], and it is never reported as success.
    pub fn persist(&mut self) {
        let disk_changed = self.hand_edited();
        if !self.save_due && !disk_changed {
            return;
        }
        if disk_changed && !self.merge_hand_edits() {
            return;
        }
        let to_save = self.file_manifest();
        match to_save.save(&self.paths.manifest) {
            Ok(()) => {
                self.save_due = false;
                let text = to_save.to_json();
                // The mtime is only a shortcut for "unchanged since we wrote it": taken before a
                // read-back, so a person's write landing right after our rename is never taken
                // for ours (the file's text then differs and no mtime is trusted).
                let at = mtime(&self.paths.manifest);
                let ours = std::fs::read_to_string(&self.paths.manifest).is_ok_and(|t| t == text);
                self.written = Some((text, to_save, if ours { at } else { None }));
                if self.save_error.take().is_some() {
                    self.push_recent("the manifest is saved again".into());
                }
            }
            Err(e) => self.save_failed(format!(
                "cannot save the manifest (retrying every tick): {e}"
            )),
        }
    }

    fn save_failed(&mut self, line: String) {
        if self.save_error.as_deref() != Some(line.as_str()) {
            tracing::error!("{line}");
            self.push_recent(line.clone());
        }
        self.save_error = Some(line);
    }

    /// The manifest as the file should hold it: the run's state plus tasks a person added by
    /// hand during the run (kept for the next run).
    fn file_manifest(&self) -> Manifest {
        let mut m = self.engine.manifest.clone();
        for (phase, task) in &self.kept_tasks {
            let at = m
                .phases
                .iter()
                .position(|p| &p.name == phase)
                .unwrap_or(m.phases.len().saturating_sub(1));
            if let Some(p) = m.phases.get_mut(at) {
                p.tasks.push(task.clone());
            }
        }
        m
    }

    /// True when the file changed since the run last wrote (or loaded) it: someone edited it.
    fn hand_edited(&self) -> bool {
        let Some((text, _, at)) = &self.written else {
            return false;
        };
        if at.is_some() && mtime(&self.paths.manifest) == *at {
            return false;
        }
        std::fs::read_to_string(&self.paths.manifest).is_ok_and(|now| &now != text)
    }

    /// Merges a person's edits of the file into the run (see [`crate::core::edits`]). False when the
    /// file does not parse: then it is not overwritten, and the run says so until it is fixed.
    fn merge_hand_edits(&mut self) -> bool {
        let Some((_, base, _)) = self.written.clone() else {
            return true;
        };
        let text = std::fs::read_to_string(&self.paths.manifest).unwrap_or_default();
        let disk = match Manifest::parse(&text) {
            Ok(m) => m,
            Err(problems) => {
                let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
                self.save_failed(format!(
                    "the manifest was edited by hand and does not parse ({first}); it is not overwritten: fix it and the run merges it"
                ));
                return false;
            }
        };
        let merged = crate::core::edits::merge_hand_edits(&self.file_manifest(), &base, &disk);
        // Take the accepted field edits into the run's own manifest.
        for t in self.engine.manifest.tasks_mut() {
            if let Some(m) = merged.manifest.task(&t.id) {
                t.title.clone_from(&m.title);
                t.prompt.clone_from(&m.prompt);
                t.verify.clone_from(&m.verify);
                t.agent.clone_from(&m.agent);
                t.extra.clone_from(&m.extra);
            }
        }
        self.engine.manifest.extra = merged.manifest.extra.clone();
        for p in &mut self.engine.manifest.phases {
            if let Some(m) = merged.manifest.phases.iter().find(|m| m.name == p.name) {
                p.extra.clone_from(&m.extra);
            }
        }
        self.kept_tasks = merged
            .manifest
            .phases
            .iter()
            .flat_map(|p| p.tasks.iter().map(move |t| (p.name.clone(), t.clone())))
            .filter(|(_, t)| self.engine.manifest.task(&t.id).is_none())
            .collect();
        for note in merged.notes {
            self.push_recent(format!("manifest: {note}"));
        }
        for id in merged.skip {
            self.apply(Event::Action(Action::on(
                crate::core::action::ActionKind::Skip,
                id,
            )));
        }
        self.save_due = true;
        true
    }

    fn perform(&mut self, fx: Effect) {
        match fx {
            Effect::Start(spec) => self.start(spec),
            Effect::Write {
                task,
                bytes,
                submit,
            } => {
                if let Some(w) = self.workers.get(&task) {
                    if submit {
                        w.submit(&bytes);
                    } else {
                        let _ = w.write(&bytes);
                    }
                }
            }
            Effect::Hold { task, on } => {
                if let Some(w) = self.workers.get(&task) {
                    w.hold(on);
                }
            }
            Effect::Kill { task } => {
                if let Some(w) = self.workers.get_mut(&task) {
                    w.kill();
                    // Before any dependent starts (a completed task's Kill comes first): its
                    // final message is what the agent left on screen, not what a signal prints.
                    self.capture_final_message(task);
                }
                self.cancel_verify(task);
            }
            Effect::Inspect { task } => self.inspect(task, None),
            Effect::Commit { task, message } => self.inspect(task, Some(message)),
            Effect::Verify {
                task,
                argv,
                attempt,
            } => self.verify(task, attempt, argv),
            Effect::SaveErrorLog { task, text } => self.append_task_log(task, "errors.log", &text),
            Effect::Persist => self.save_due = true,
            Effect::Journal(entry) => self.journal(&entry),
            Effect::CollectFindings { task, round } => {
                let id = &self.engine.plan.ids[task];
                let file = crate::host::stages::findings_path(&self.paths.logs, id, round);
                let screen = self.final_screens.get(&task).map(String::as_str);
                let result = crate::host::stages::collect_findings(&file, screen);
                self.apply(Event::Reviewed {
                    task,
                    round,
                    result,
                });
            }
            Effect::SaveRound {
                task,
                round,
                prompt,
            } => {
                let id = &self.engine.plan.ids[task];
                let path = round_file(&self.paths.logs, id);
                let text = serde_json::json!({ "round": round.label(), "prompt": prompt });
                let _ = std::fs::create_dir_all(&self.paths.logs);
                if let Err(e) =
                    crate::core::manifest::write_atomic(&path, text.to_string().as_bytes())
                {
                    self.push_recent(format!(
                        "{id}: cannot keep the round's prompt for a resume: {e}"
                    ));
                }
            }
            Effect::TaskLog { task, text } => self.append_task_log(task, "review.md", &text),
            Effect::Merge {
                task,
                branch,
                into,
                mode,
                message,
            } => {
                let repo = self.paths.repo.clone();
                self.life_job(None, move || {
                    let outcome = crate::host::stages::merge(&repo, &into, &branch, mode, &message);
                    Event::MergeDone { task, outcome }
                });
            }
            Effect::Predict {
                task,
                branch,
                against,
            } => {
                let repo = self.paths.repo.clone();
                // Each running task's worktree stands for its branch (uncommitted edits count).
                let side = |i: usize, branch: String| crate::host::stages::Side {
                    branch,
                    worktree: Some(self.paths.worktree(&self.engine.plan.ids[i])),
                };
                let ours = side(task, branch);
                let against: Vec<(Option<usize>, crate::host::stages::Side)> = against
                    .into_iter()
                    .map(|(who, b)| match who {
                        Some(j) => (who, side(j, b)),
                        None => (
                            None,
                            crate::host::stages::Side {
                                branch: b,
                                worktree: None,
                            },
                        ),
                    })
                    .collect();
                let predictor = self.predictor.clone();
                self.life_job(Some((task, "predict")), move || {
                    let mut p = predictor.lock().unwrap_or_else(|e| e.into_inner());
                    let (results, error) =
                        crate::host::stages::predict(&mut p, &repo, &ours, &against);
                    Event::Predicted {
                        task,
                        results,
                        error,
                    }
                });
            }
            Effect::OpenPr { task, req } => {
                let repo = self.paths.repo.clone();
                self.life_job(None, move || Event::PrOpened {
                    task,
                    result: crate::host::stages::open_pr(&repo, &req),
                });
            }
            Effect::PollPr { task, number, gh } => {
                let repo = self.paths.repo.clone();
                self.life_job(Some((task, "poll-pr")), move || Event::PrPolled {
                    task,
                    result: crate::host::stages::poll_pr(&repo, &gh, number),
                });
            }
            Effect::Attention { task, reason } => {
                self.attention = true;
                self.notify(task, &reason);
            }
        }
        self.changed = true;
    }

    /// Runs a lifecycle job on its lane; its event comes back through the shell channel.
    fn life_job(
        &mut self,
        key: Option<(usize, &'static str)>,
        job: impl FnOnce() -> Event + Send + 'static,
    ) {
        let tx = self.tx.clone();
        let queued = self.life_lane.push(key, move || {
            let event = job();
            let _ = tx.blocking_send(ShellMsg::Lifecycle(Box::new(event)));
        });
        if !queued && key.is_none() {
            self.push_recent(
                "the lifecycle lane has stopped: merges and pull requests wait".into(),
            );
        }
    }

    /// Starts a worker off the loop, on a thread of its own (at most `max_parallel` at once), so
    /// a large repository never freezes the control room and starts do not wait on each other:
    /// worktree operations take turns per branch ([`git::BranchLocks`]) and libgit2's worktree
    /// add (registration and checkout) takes turns across the run; the rest of making a worktree,
    /// set-up commands and spawns run side by side.
    /// The result comes back as [`ShellMsg::Spawned`].
    fn start(&mut self, mut spec: crate::core::engine::StartSpec) {
        let task = spec.task;
        if let crate::core::engine::Round::Review(round) = spec.round {
            // The reviewer is told where its findings go (crate::host::stages::findings_path).
            let file = crate::host::stages::findings_path(&self.paths.logs, &spec.task_id, round);
            let _ = std::fs::remove_file(&file);
            let shown = file.display().to_string();
            spec.prompt = spec.prompt.replace("{findings_file}", &shown);
            spec.env.insert("SWITCHYARD_FINDINGS".into(), shown);
        }
        self.final_screens.remove(&task);
        if let Some(mut old) = self.workers.remove(&task) {
            old.kill();
        }
        self.cancel_verify(task);
        self.starting.insert(task);
        let ctx = StartContext {
            repo: self.paths.repo.clone(),
            worktree: self.paths.worktree(&spec.task_id),
            transcript: self.paths.transcript(&spec.task_id),
            logs: self.paths.logs.clone(),
            prompt_file: self.paths.logs.join(format!("{}.prompt.md", spec.task_id)),
            claude_settings: self.paths.workdir.join("run").join("claude-settings.json"),
            socket: self.socket.clone(),
            rows: self.pty_size.0,
            cols: self.pty_size.1,
            // The rest of `scrollback_lines` is replayed from the transcript (crate::ui::scroll).
            scrollback: self.config.scrollback_in_memory(),
            branch_locks: self.branch_locks.clone(),
            tx: self.tx.clone(),
            wake: self.wake.clone(),
            setup: self.config.setup.commands(),
            setup_timeout_ms: self.config.setup_timeout_ms,
            setup_log: self.paths.logs.join(format!("{}.setup.log", spec.task_id)),
        };
        let tx = self.tx.clone();
        let job = move || {
            let result = prepare_worker(spec, ctx).map(Box::new);
            let _ = tx.blocking_send(ShellMsg::Spawned { task, result });
        };
        // One after another, a start waited for the spawns before it: under load (other workers
        // busy on every core) the last of 16 began more than a second after the first. Set-up
        // commands (`npm ci`, …) may take minutes and must not hold up the other starts either.
        if let Err(e) = std::thread::Builder::new()
            .name(format!("start-{task}"))
            .spawn(job)
        {
            self.starting.remove(&task);
            self.apply(Event::StartFailed {
                task,
                error: format!("cannot start a thread for the start: {e}"),
            });
        }
    }

    /// Runs a verify command in the task's worktree on a thread of its own (at most 10 minutes),
    /// keeps its output in `logs/<id>.verify.log`, and reports through the shell channel.
    fn verify(&mut self, task: usize, attempt: u32, argv: Vec<String>) {
        let id = self.engine.plan.ids[task].clone();
        let cwd = self.engine.task(task).worktree.clone().unwrap_or_default();
        let log = self.paths.logs.join(format!("{id}.verify.log"));
        let tx = self.tx.clone();
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.cancel_verify(task);
        self.verify_cancel.insert(task, cancel.clone());
        let _ = std::thread::Builder::new()
            .name(format!("verify-{id}"))
            .spawn(move || {
                let (ok, output) =
                    run_verify(&argv, Path::new(&cwd), Duration::from_secs(600), &cancel);
                let _ = std::fs::write(&log, &output);
                let tail: Vec<&str> = output.lines().rev().take(40).collect();
                let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                let _ = tx.blocking_send(ShellMsg::Verified {
                    task,
                    attempt,
                    ok,
                    output: tail,
                });
            });
    }

    /// Keeps the exited worker's final message at `<workdir>/logs/<id>.final.md` (see
    /// [`crate::core::final_message`]) now, on the loop: for a worker switchyard stops (its Kill
    /// comes before any dependent starts). Journaled with its first line; nothing is written
    /// when no message is found.
    fn capture_final_message(&mut self, task: usize) {
        if let Some(job) = self.final_message_job(task) {
            let read = job();
            self.journal_final_message(task, read);
        }
    }

    /// What reading a task's final message needs, taken on the loop; the returned job reads it
    /// (the agent's `{final_message}` file, else its JSON output or the transcript's heuristic;
    /// see [`crate::core::final_message`]) and writes it to `logs/<id>.final.md`, off the loop.
    /// `None` when the task's profile is unknown.
    fn final_message_job(
        &self,
        task: usize,
    ) -> Option<impl FnOnce() -> crate::host::worker::FinalRead + Send + 'static> {
        use crate::core::config::FinalChannel;
        use crate::core::final_message as fm;
        let t = self.engine.task(task);
        let id = t.id.clone();
        let agent = t
            .agent
            .clone()
            .unwrap_or_else(|| self.engine.policy.default_agent.clone());
        let profile = self.engine.policy.agents.get(&agent)?;
        let path = self.paths.logs.join(fm::file_name(&id));
        let transcript = self.paths.logs.join(format!("{id}.log"));
        let by_file = profile
            .command
            .iter()
            .chain(profile.env.values())
            .any(|a| a.contains("{final_message}"));
        let channel = profile.final_message.unwrap_or(FinalChannel::Transcript);
        Some(move || {
            let written = by_file
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten()
                .filter(|t| !t.trim().is_empty());
            let (text, from) = match written {
                Some(t) => (Some(t), "the agent's file"),
                None => {
                    // The newest output across the transcript's rotation (`<id>.log.1` then the
                    // rest of `<id>.log`), not just the current file's end.
                    let tail = crate::host::transcript::TranscriptReader::new(
                        &transcript,
                        crate::host::transcript::TranscriptLimits::default(),
                    )
                    .newest_lines(usize::MAX, fm::TAIL_BYTES)
                    .map(|(bytes, _)| bytes)
                    .unwrap_or_default();
                    let json = (channel == FinalChannel::Json)
                        .then(|| fm::from_json_lines(&String::from_utf8_lossy(&tail)))
                        .flatten();
                    match json {
                        Some(t) => (Some(t), "its JSON output"),
                        None => {
                            // Only the text the heuristic's emulator still shows at the end is
                            // parsed (a flood's 256 KiB tail is thousands of lines).
                            let from = crate::host::flood::text_cut(&tail, fm::TRANSCRIPT_ROWS, 0);
                            (fm::from_transcript(&tail[from..]), "the transcript")
                        }
                    }
                }
            };
            let text = text.map(|t| fm::clean(&t)).filter(|t| !t.is_empty())?;
            Some(match std::fs::write(&path, format!("{text}\n")) {
                Ok(()) => Ok((text, from, path)),
                Err(e) => Err(format!("{id}: cannot write {}: {e}", path.display())),
            })
        })
    }

    /// Appends `text` to the task's `logs/<id>.<suffix>` (best effort: the journal has what
    /// matters, these files are for reading at leisure).
    fn append_task_log(&self, task: usize, suffix: &str, text: &str) {
        let id = &self.engine.plan.ids[task];
        let path = self.paths.logs.join(format!("{id}.{suffix}"));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }

    /// Journals a final message [`Runtime::final_message_job`] read (or why it was not written).
    fn journal_final_message(&mut self, task: usize, read: crate::host::worker::FinalRead) {
        match read {
            None => {}
            Some(Err(why)) => self.push_recent(why),
            Some(Ok((text, from, path))) => {
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let entry = JournalEntry {
                    at: now_ms(),
                    task: Some(self.engine.plan.ids[task].clone()),
                    kind: "final",
                    message: format!(
                        "final message from {from} in {}: {}",
                        path.display(),
                        crate::core::text::truncate_to_width(first, 100)
                    ),
                    data: serde_json::json!({ "path": path.display().to_string(), "from": from, "bytes": text.len() }),
                };
                self.journal(&entry);
            }
        }
    }

    /// Stops a verify command still running for this task (killed, retried, restarted, quit).
    fn cancel_verify(&mut self, task: usize) {
        if let Some(c) = self.verify_cancel.remove(&task) {
            c.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn journal(&mut self, e: &JournalEntry) {
        let line = serde_json::json!({
            "ts": crate::core::engine::rfc3339(e.at),
            "tsMs": e.at,
            "task": e.task,
            "kind": e.kind,
            "message": e.message,
            "data": e.data,
        });
        if let Err(err) = self.journal.append(&line) {
            tracing::error!("{err}");
        }
        let text = format_entry(e);
        self.push_recent(text);
    }

    fn push_recent(&mut self, line: String) {
        // Bounded: a server with no headless client drains it every loop turn anyway.
        if self.outbox.len() < 10_000 {
            self.outbox.push(line.clone());
        }
        if self.recent.len() >= 500 {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    fn notify(&mut self, task: usize, reason: &str) {
        let Some(cmd) = self.config.notify_command.clone() else {
            return;
        };
        let t = self.engine.task(task);
        let vars = Vars {
            task_id: t.id.clone(),
            title: t.title.clone(),
            prompt: reason.to_string(),
            ..Default::default()
        };
        let argv: Vec<String> = render_argv(&cmd, &vars)
            .into_iter()
            .map(|a| a.replace("{reason}", reason))
            .collect();
        if let Some((program, args)) = argv.split_first() {
            let spawned = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match spawned {
                // Reaped on a thread of its own, so no zombie is left behind.
                Ok(mut child) => {
                    let _ = std::thread::Builder::new()
                        .name("notify".into())
                        .spawn(move || child.wait());
                }
                Err(e) => self.push_recent(format!("notify_command {program:?} failed: {e}")),
            }
        }
    }
}

/// Commits ahead of base and files with uncommitted changes in a task's worktree, where git can
/// tell (`None` when the worktree or base is not known yet, or git fails).
fn branch_state(worktree: Option<&Path>, base: Option<&str>) -> (Option<usize>, Option<usize>) {
    let Some(wt) = worktree else {
        return (None, None);
    };
    let ahead = base.and_then(|b| git::commits_ahead(wt, b).ok());
    (ahead, git::uncommitted(wt).ok())
}

/// What a start thread needs.
struct StartContext {
    repo: PathBuf,
    worktree: PathBuf,
    transcript: PathBuf,
    /// `<workdir>/logs`: final messages of the task's context are read there.
    logs: PathBuf,
    /// `<workdir>/logs/<id>.prompt.md`, what `{prompt_file}` names.
    prompt_file: PathBuf,
    /// `<workdir>/run/claude-settings.json`, what `{claude_settings}` names.
    claude_settings: PathBuf,
    /// The run's socket, for `switchyard hook` (`SWITCHYARD_SOCKET`), when a server listens.
    socket: Option<PathBuf>,
    rows: u16,
    cols: u16,
    scrollback: usize,
    branch_locks: std::sync::Arc<git::BranchLocks>,
    tx: mpsc::Sender<ShellMsg>,
    wake: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The config's `setup` commands (crate::host::setup), run once per new worktree.
    setup: Vec<Vec<String>>,
    setup_timeout_ms: u64,
    /// `<workdir>/logs/<id>.setup.log`.
    setup_log: PathBuf,
}

impl StartContext {
    /// `<workdir>/run/gemini-settings.json` (beside the Claude settings), what
    /// `{gemini_settings}` names.
    fn gemini_settings(&self) -> PathBuf {
        self.claude_settings.with_file_name("gemini-settings.json")
    }

    /// `<workdir>/run/gemini-home`, what `{gemini_home}` names (one for every gemini worker of
    /// the run: its content is the same for all).
    fn gemini_home(&self) -> PathBuf {
        self.claude_settings.with_file_name("gemini-home")
    }

    /// `<workdir>/run/gemini-telemetry-<task id>-a<attempt>.json`, what `{gemini_telemetry}`
    /// names.
    fn gemini_telemetry(&self, task_id: &str, attempt: u32) -> PathBuf {
        self.claude_settings
            .with_file_name(format!("gemini-telemetry-{task_id}-a{attempt}.json"))
    }
}

/// Creates (or reuses) the worktree and spawns the worker. Errors are one readable sentence.
fn prepare_worker(
    mut spec: crate::core::engine::StartSpec,
    ctx: StartContext,
) -> Result<Spawned, String> {
    add_context(&mut spec, &ctx.logs);
    let final_message = ctx
        .logs
        .join(crate::core::final_message::file_name(&spec.task_id));
    // A final message of an earlier attempt is not this attempt's.
    let _ = std::fs::remove_file(&final_message);
    // Written before every start (the prompt carries the last error on a restart); needed
    // only when the profile names {prompt_file}, so a failure matters only then.
    let wrote_prompt = std::fs::write(&ctx.prompt_file, &spec.prompt);
    let uses_file = spec
        .command
        .iter()
        .chain(spec.env.values())
        .any(|a| a.contains("{prompt_file}"));
    if let (Err(e), true) = (&wrote_prompt, uses_file) {
        return Err(format!(
            "cannot write the prompt file {} for {{prompt_file}}: {e}; check the workdir's permissions and free space",
            ctx.prompt_file.display()
        ));
    }
    // The branch's worktree operations in turn (two tasks naming one branch: the second gets
    // git's "checked out elsewhere"); other branches' starts go on side by side.
    let turn = ctx.branch_locks.turn(&spec.branch);
    let info = {
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        git::ensure_worktree(
            &ctx.repo,
            &spec.task_id,
            &ctx.worktree,
            &spec.branch,
            &spec.base,
        )
        .map_err(|e| e.to_string())?
    };
    crate::host::setup::prepare_worktree(
        &ctx.setup,
        crate::host::setup::Vars {
            repo: &ctx.repo,
            worktree: &info.path,
            task_id: &spec.task_id,
            branch: &info.branch,
        },
        ctx.setup_timeout_ms,
        &ctx.setup_log,
        !info.reused,
    )?;
    if let Some(branch) = &spec.merge_first {
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        crate::host::stages::merge_into_worktree(&info.path, branch)?;
    }
    let vars = Vars {
        prompt: spec.prompt.clone(),
        prompt_file: ctx.prompt_file.display().to_string(),
        task_id: spec.task_id.clone(),
        issue: spec.issue.map(|n| n.to_string()).unwrap_or_default(),
        title: spec.title.clone(),
        worktree: info.path.display().to_string(),
        branch: info.branch.clone(),
        attempt: spec.attempt.to_string(),
        switchyard: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "switchyard".into()),
        claude_settings: ctx.claude_settings.display().to_string(),
        final_message: final_message.display().to_string(),
        gemini_settings: ctx.gemini_settings().display().to_string(),
        gemini_home: ctx.gemini_home().display().to_string(),
        gemini_telemetry: ctx
            .gemini_telemetry(&spec.task_id, spec.attempt)
            .display()
            .to_string(),
        opencode_port: String::new(),
    };
    let mut vars = vars;
    let opencode_port = if spec.command.iter().any(|a| a.contains("{opencode_port}")) {
        let port = crate::host::channel_io::free_port()
            .map_err(|e| format!("no free local port for {{opencode_port}}: {e}"))?;
        vars.opencode_port = port.to_string();
        Some(port)
    } else {
        None
    };
    if spec.env.values().any(|v| v.contains("{gemini_settings}"))
        || spec.command.iter().any(|a| a.contains("{gemini_settings}"))
    {
        let path = ctx.gemini_settings();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Every start writes it (the same content): atomically, so starts running side by
        // side never leave it torn for an agent reading it at that moment.
        crate::core::manifest::write_atomic(
            &path,
            crate::core::config::gemini_settings(&vars.switchyard).as_bytes(),
        )
        .map_err(|e| format!("cannot write {{gemini_settings}}: {e}"))?;
    }
    let mentions = |p: &str| {
        spec.env.values().any(|v| v.contains(p)) || spec.command.iter().any(|a| a.contains(p))
    };
    let user_gemini = crate::host::channel_io::user_gemini_dir();
    if mentions("{gemini_home}") {
        crate::host::channel_io::prepare_gemini_home(
            &ctx.gemini_home(),
            user_gemini.as_deref(),
            &vars.switchyard,
        )?;
    }
    let gemini_telemetry = mentions("{gemini_telemetry}").then(|| {
        let path = ctx.gemini_telemetry(&spec.task_id, spec.attempt);
        // A file left by an earlier run of this attempt number is not this worker's.
        let _ = std::fs::remove_file(&path);
        path
    });
    if spec.command.iter().any(|a| a.contains("{claude_settings}")) {
        if let Some(dir) = ctx.claude_settings.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        crate::core::manifest::write_atomic(
            &ctx.claude_settings,
            crate::core::config::claude_settings(&vars.switchyard).as_bytes(),
        )
        .map_err(|e| format!("cannot write {{claude_settings}}: {e}"))?;
    }
    let argv = render_argv(&spec.command, &vars);
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                render_argv(std::slice::from_ref(v), &vars).remove(0),
            )
        })
        .collect();
    // The per-run gemini home links the user's files; trust decisions go to the user's own file
    // (gemini 0.61 replaces trustedFolders.json by a rename, which would cut a link).
    if mentions("{gemini_home}")
        && !env
            .iter()
            .any(|(k, _)| k == "GEMINI_CLI_TRUSTED_FOLDERS_PATH")
    {
        if let Some(dir) = &user_gemini {
            env.push((
                "GEMINI_CLI_TRUSTED_FOLDERS_PATH".into(),
                dir.join("trustedFolders.json").display().to_string(),
            ));
        }
    }
    env.push(("SWITCHYARD_TASK_ID".into(), spec.task_id.clone()));
    env.push(("SWITCHYARD_ATTEMPT".into(), spec.attempt.to_string()));
    env.push(("SWITCHYARD_FILES".into(), spec.files.join(",")));
    env.push(("SWITCHYARD_WORKTREE".into(), vars.worktree.clone()));
    if let Some(socket) = &ctx.socket {
        // Where `switchyard hook` hands the agent's own events to this run.
        env.push(("SWITCHYARD_SOCKET".into(), socket.display().to_string()));
    }
    // Everything the worker starts inherits it, even what leaves its session (crate::host::orphans).
    let token = crate::host::orphans::new_token(spec.task, spec.attempt);
    env.push((crate::host::orphans::TOKEN_VAR.into(), token.clone()));
    check_command_line(&spec, &argv, &env, &ctx.prompt_file)?;
    let socket = ctx.socket.clone();
    let worker = Worker::spawn_sharing_wake(
        SpawnSpec {
            task: spec.task,
            argv: argv.clone(),
            cwd: info.path.clone(),
            env,
            rows: ctx.rows,
            cols: ctx.cols,
            scrollback: ctx.scrollback,
            transcript: ctx.transcript,
        },
        ctx.tx,
        ctx.wake,
    )?;
    if let (Some(path), Some(socket), Some(pid)) = (gemini_telemetry, socket.clone(), worker.pid) {
        // gemini's API errors: its local telemetry file, summarised and handed to the run.
        let task_id = spec.task_id.clone();
        let _ = std::thread::Builder::new()
            .name(format!("gemini-telemetry-{task_id}"))
            .spawn(move || {
                let why = crate::host::channel_io::follow_gemini_telemetry(
                    &path,
                    std::time::Duration::from_secs(120),
                    || crate::server::files::pid_alive(pid),
                    |event| {
                        crate::host::channel_io::send_event(
                            &socket,
                            &task_id,
                            Some("gemini-telemetry"),
                            event,
                            false,
                        );
                    },
                );
                tracing::debug!("task {task_id}: {why}");
            });
    }
    if let (Some(port), Some(socket)) = (opencode_port, socket) {
        // opencode's own word: its server's event stream, handed to the run like a hook's.
        let task_id = spec.task_id.clone();
        let _ = std::thread::Builder::new()
            .name(format!("opencode-events-{task_id}"))
            .spawn(move || {
                let why = crate::host::channel_io::follow_opencode(
                    port,
                    std::time::Duration::from_secs(60),
                    |event| {
                        let ask = matches!(
                            event["type"].as_str(),
                            Some("permission.asked" | "permission.updated")
                        );
                        crate::host::channel_io::send_event(
                            &socket,
                            &task_id,
                            Some("opencode"),
                            event,
                            ask,
                        )
                    },
                );
                tracing::debug!("task {task_id}: {why}");
            });
    }
    Ok(Spawned {
        worker,
        worktree: info.path.display().to_string(),
        branch: info.branch,
        base_commit: info.base_commit,
        argv,
        token,
    })
}

/// Linux's limit on one argument or one environment string, NUL included (MAX_ARG_STRLEN:
/// 32 pages of 4 KiB): 128 KiB.
const MAX_ARG_BYTES: usize = 128 * 1024;

/// The most bytes of arguments and environment together switchyard passes to a worker: 1 MiB,
/// well inside the usual limit (a quarter of the 8 MiB stack limit, and never below 128 KiB
/// of pages on any Linux).
const MAX_COMMAND_LINE_BYTES: usize = 1024 * 1024;

/// Refuses a command line Linux would refuse (or that the child would die of before it runs),
/// saying which argument is too long, which placeholder made it so and how to pass it instead.
fn check_command_line(
    spec: &crate::core::engine::StartSpec,
    argv: &[String],
    env: &[(String, String)],
    prompt_file: &Path,
) -> Result<(), String> {
    let how = format!(
        "Pass the prompt through a file instead: put \"{{prompt_file}}\" in the agent profile's command in switchyard.toml (e.g. \"Do the task described in {{prompt_file}}\"); switchyard writes the prompt to {} before every start",
        prompt_file.display()
    );
    let placeholders = |template: Option<&String>| {
        let found: Vec<&str> = ["{prompt}", "{title}", "{task_id}", "{worktree}", "{branch}"]
            .into_iter()
            .filter(|p| template.is_some_and(|t| t.contains(p)))
            .collect();
        if found.is_empty() {
            String::new()
        } else {
            format!(" (made from {})", found.join(" "))
        }
    };
    for (i, arg) in argv.iter().enumerate() {
        if arg.len() + 1 > MAX_ARG_BYTES {
            return Err(format!(
                "task {}: argument {i} of the agent command{} is {} bytes; Linux refuses an argument over 128 KiB. {how}",
                spec.task_id,
                placeholders(spec.command.get(i)),
                arg.len(),
            ));
        }
    }
    for (k, v) in env {
        if k.len() + v.len() + 2 > MAX_ARG_BYTES {
            return Err(format!(
                "task {}: the environment variable {k}{} is {} bytes; Linux refuses a variable over 128 KiB. {how}",
                spec.task_id,
                placeholders(spec.env.get(k)),
                v.len(),
            ));
        }
    }
    let inherited: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let total = argv.iter().map(|a| a.len() + 1).sum::<usize>()
        + env
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
        + inherited;
    if total > MAX_COMMAND_LINE_BYTES {
        return Err(format!(
            "task {}: the agent's command line and environment come to {total} bytes, more than switchyard passes to a worker (1 MiB). {how}",
            spec.task_id,
        ));
    }
    Ok(())
}

/// Runs `argv` in `cwd` (no shell), killing it after `limit`. Returns success and the
/// combined output.
fn run_verify(
    argv: &[String],
    cwd: &Path,
    limit: Duration,
    cancel: &std::sync::atomic::AtomicBool,
) -> (bool, String) {
    use std::io::{Read, Seek};
    let Some((program, args)) = argv.split_first() else {
        return (false, "the verify command is empty".into());
    };
    let Ok(mut out) = tempfile::tempfile() else {
        return (
            false,
            "cannot create a temp file for the verify output".into(),
        );
    };
    let pipe = |f: &std::fs::File| {
        f.try_clone()
            .map(std::process::Stdio::from)
            .unwrap_or(std::process::Stdio::null())
    };
    let spawned = crate::host::setup::command_in(program, cwd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(pipe(&out))
        .stderr(pipe(&out))
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot run verify command {program:?}: {e}")),
    };
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None)
                if start.elapsed() > limit || cancel.load(std::sync::atomic::Ordering::Acquire) =>
            {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break None,
        }
    };
    let mut text = String::new();
    let _ = out.seek(std::io::SeekFrom::Start(0));
    let _ = out.read_to_string(&mut text);
    match status {
        Some(s) => (s.success(), text),
        None => (
            false,
            format!(
                "{text}\nverify command timed out after {}s",
                limit.as_secs()
            ),
        ),
    }
}

/// One journal entry as a line for people: `HH:MM:SS  task  kind    message`.
pub fn format_entry(e: &JournalEntry) -> String {
    let time = chrono::DateTime::from_timestamp_millis(e.at as i64)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    // Task ids and messages (agents' screen lines among them) are shown, never obeyed.
    format!(
        "{time}  {} {:<7} {}",
        crate::core::text::cell(e.task.as_deref().unwrap_or("-"), 8),
        e.kind,
        crate::core::text::escape_control(&e.message)
    )
}

/// Folders whose changes are build output or git's own, never a sign of an agent's work (and
/// the usual source of floods: a `cargo build` or `npm ci` touches thousands of files).
pub const IGNORED_DIRS: [&str; 4] = [".git", "target", "node_modules", ".switchyard"];

/// The task a changed path belongs to: `<worktrees>/<id>/…`, outside [`IGNORED_DIRS`].
pub fn task_of_path(root: &Path, path: &Path, index: &BTreeMap<String, usize>) -> Option<usize> {
    let rel = path.strip_prefix(root).ok()?;
    let mut comps = rel.components();
    let first = comps.next()?;
    if comps.any(|c| IGNORED_DIRS.iter().any(|d| c.as_os_str() == *d)) {
        return None;
    }
    index
        .get(first.as_os_str().to_string_lossy().as_ref())
        .copied()
}

/// Watches the worktrees directory; a change under `<worktrees>/<id>/` (outside build output
/// and `.git`) sets that task's activity flag, which the loop reads once per tick. Returns None
/// when the platform watcher cannot start (stall detection then relies on output alone).
fn watch_worktrees(
    dir: &Path,
    ids: Vec<String>,
    flags: std::sync::Arc<Vec<std::sync::atomic::AtomicBool>>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let root = dir.to_path_buf();
    let index: BTreeMap<String, usize> =
        ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        // Reads are not changes (conflict predictions read the worktrees' files: counting
        // them would keep a stalled agent "active" and predictions due forever).
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            if let Some(task) = task_of_path(&root, &p, &index) {
                if let Some(f) = flags.get(task) {
                    f.store(true, std::sync::atomic::Ordering::Release);
                }
            }
        }
    })
    .ok()?;
    watcher.watch(dir, notify::RecursiveMode::Recursive).ok()?;
    Some(watcher)
}

/// Appends the task's context (the final messages of the tasks its `context` names, reviewers'
/// findings merged) to its prompt, and keeps merged findings at
/// `<logs>/<id>.context-findings.md`. A context task without a final message is named as such.
fn add_context(spec: &mut crate::core::engine::StartSpec, logs: &Path) {
    use crate::core::final_message as fm;
    if spec.context.is_empty() {
        return;
    }
    let sources: Vec<(fm::ContextSource, Option<String>)> = spec
        .context
        .iter()
        .map(|c| {
            let text = std::fs::read_to_string(logs.join(fm::file_name(&c.id)))
                .ok()
                .map(|t| fm::clean(&t))
                .filter(|t| !t.is_empty());
            (c.clone(), text)
        })
        .collect();
    let rendered = fm::render_context(&spec.task_id, &sources);
    if let Some(findings) = &rendered.findings {
        let path = logs.join(fm::findings_file_name(&spec.task_id));
        if let Err(e) = std::fs::write(&path, findings) {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
    spec.prompt.push_str(&rendered.section);
}

/// Where a task's current fix or resolve round is kept for a resume: `logs/<id>.round.json`
/// (`{"round": "fix 2", "prompt": "..."}`).
fn round_file(logs: &Path, id: &str) -> PathBuf {
    logs.join(format!("{id}.round.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_output_and_git_never_count_as_activity() {
        let root = Path::new("/w/worktrees");
        let index: BTreeMap<String, usize> = [("t1".to_string(), 0), ("t2".to_string(), 1)]
            .into_iter()
            .collect();
        let of = |p: &str| task_of_path(root, Path::new(p), &index);
        assert_eq!(of("/w/worktrees/t1/src/lib.rs"), Some(0));
        assert_eq!(of("/w/worktrees/t2/README.md"), Some(1));
        assert_eq!(of("/w/worktrees/t1/target/debug/x.o"), None);
        assert_eq!(of("/w/worktrees/t1/web/node_modules/a/b.js"), None);
        assert_eq!(of("/w/worktrees/t1/.git"), None);
        assert_eq!(of("/w/worktrees/t9/src/lib.rs"), None);
        assert_eq!(of("/elsewhere/t1/src/lib.rs"), None);
    }
}
