//! The task manifest: model, load, validation with locations, atomic save.
//!
//! The format is the seed orchestrator's JSON manifest (`../shared/seeds/`, "task-orchestrator"):
//! top level `project, repo, workdir, created, model, modelTier, phases[]`, each task `id, issue,
//! title, files[], dependsOn[], status, worktree, tmuxSession, startedAt, lastProgress,
//! completedAt, prNumber`. switchyard adds optional task fields (`agent`, `prompt`, `attempts`,
//! `lastVerdict`, `baseCommit`, `branch`, `verify`). Every field switchyard does not know is kept in
//! `extra` and written back unchanged, in its original order. Numbers keep their digits exactly
//! (serde_json's `arbitrary_precision`: `123456789012345678901234567890` stays an integer, `1.50`
//! keeps its zero; an exponent is written with its sign, `1e2` as `1e+2`).
//!
//! Saving is atomic, keeps the file's mode and writes through a symlink; a kill mid-save leaves a
//! temp file that [`Manifest::clean_stale_temps`] removes. Loading rejects non-UTF-8 files with
//! the encoding and byte offset ([`ManifestError::Encoding`]).

use crate::core::text::escape_control;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// A task's lifecycle status as stored in the manifest.
///
/// The first eight are the seed's statuses; `needs_attention` (a person must decide: a prompt on
/// the deny-list or not on the allow-list, or the heal ladder ran out) and `skipped` (a person
/// skipped it; it counts as finished for its dependents) are switchyard's additions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started yet (possibly waiting for a dependency, a phase or a free slot).
    #[default]
    Pending,
    /// Cannot start: a dependency ended in `error` or `needs_attention`.
    Blocked,
    /// A worker is (or is about to be) running it, including a restart waiting out its back-off.
    Running,
    /// Seed status for a stuck worker; switchyard reads it and treats it like `running`.
    Stuck,
    /// Failed and the heal ladder is exhausted (or the agent could not be started).
    Error,
    /// Finished: the agent succeeded and the branch has commits ahead of base.
    Complete,
    /// Finished, and a pull request was opened (`prNumber`).
    PrOpen,
    /// Finished, and the pull request was merged.
    Merged,
    /// A person must decide (see the task's `lastVerdict`).
    NeedsAttention,
    /// A person skipped it; dependents may go on.
    Skipped,
    /// A reviewer agent reviews the task's branch (`[review]`); findings at or above
    /// `review.block_on` send it to `fix`.
    Review,
    /// The task's agent works again in its worktree: a fix round (the reviewer's findings or a
    /// pull request's requested changes as the prompt) or a resolve round (merge conflicts with
    /// the integration branch). Does not use up restart attempts.
    Fix,
    /// Waiting in the merge queue or being merged into the integration branch (`[merge]`);
    /// dependents wait for it so they start from the integration branch with its work.
    Merging,
}

impl Status {
    /// Every status, in the order the header counts them.
    pub const ALL: [Status; 13] = [
        Status::Running,
        Status::Review,
        Status::Fix,
        Status::Merging,
        Status::NeedsAttention,
        Status::Pending,
        Status::Blocked,
        Status::Stuck,
        Status::Error,
        Status::Complete,
        Status::PrOpen,
        Status::Merged,
        Status::Skipped,
    ];

    /// True when dependents may start (`complete`, `pr_open`, `merged`, `skipped`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Status::Complete | Status::PrOpen | Status::Merged | Status::Skipped
        )
    }

    /// True for `complete`, `pr_open` and `merged`: the work exists on its branch.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Complete | Status::PrOpen | Status::Merged)
    }

    /// True while a worker does the task's own work: `running`, `stuck`, `fix` (a restart keeps
    /// the status; the heal policy acts on these).
    pub fn is_working(self) -> bool {
        matches!(self, Status::Running | Status::Stuck | Status::Fix)
    }

    /// The manifest spelling, e.g. `needs_attention`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Blocked => "blocked",
            Status::Running => "running",
            Status::Stuck => "stuck",
            Status::Error => "error",
            Status::Complete => "complete",
            Status::PrOpen => "pr_open",
            Status::Merged => "merged",
            Status::NeedsAttention => "needs_attention",
            Status::Skipped => "skipped",
            Status::Review => "review",
            Status::Fix => "fix",
            Status::Merging => "merging",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task of the manifest. Unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique id, e.g. `t1`; used in branch, worktree and log names, so it must be a plain name.
    pub id: String,
    /// The issue number this task fixes, if any; names the branch `fix/issue-<issue>`.
    #[serde(default)]
    pub issue: Option<u64>,
    /// One-line title; the default prompt is built from it.
    #[serde(default)]
    pub title: String,
    /// Files (relative to the repository root) the task touches; tasks sharing a file run in order.
    #[serde(default)]
    pub files: Vec<String>,
    /// Ids of tasks that must be finished first. `None` when the key is absent: only then does
    /// the planner infer same-file ordering into this task (see [`crate::core::plan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Lifecycle status.
    #[serde(default)]
    pub status: Status,
    /// Absolute path of the task's worktree, once created.
    #[serde(default)]
    pub worktree: Option<String>,
    /// Seed field (tmux session name); kept for compatibility, switchyard never sets it.
    #[serde(default)]
    pub tmux_session: Option<Value>,
    /// RFC 3339 time the task first started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339 time of the last status or verdict change.
    #[serde(default)]
    pub last_progress: Option<String>,
    /// RFC 3339 time the task finished.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Pull request number, once one was opened.
    #[serde(default)]
    pub pr_number: Option<Value>,
    /// Agent profile name (a key of `[agents]` in the config); the config's `default_agent` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The prompt given to the agent; built from the config's `prompt_template` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// How many times a worker was started for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The last verdict with its evidence, e.g. `waiting_input: rule yes-no matched "Apply? (y/n)"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<String>,
    /// The commit the task's branch was created from (commits ahead are counted from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// The task's branch, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A verify command (argv) run in the worktree before the task counts as complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Vec<String>>,
    /// The worker's role (`implementer` when absent; `scout`, `reviewer`, `verifier`,
    /// `researcher`, or any role named under `[roles]` in the config): its preamble goes before
    /// the prompt. Source: the Codex orchestration guide's worker roles (seeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Files (relative to the repository root) the task only reads. Tasks with `reads` and no
    /// `writes` are read-only: they run beside each other and beside the one writer of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
    /// Files (relative to the repository root) the task writes; two writers of a file run one
    /// after another. `files` counts as `writes` when neither `reads` nor `writes` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Vec<String>>,
    /// Ids of tasks whose final messages (`<workdir>/logs/<id>.final.md`) are given to this task
    /// as context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// What a reviewer looks at (`correctness`, `security`, `style` …): given to the worker as
    /// `LENS:` after its role's preamble, and naming its findings when a fan-out is merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<String>,
    /// Review rounds done (`reviewRound`), so a resumed run reviews next in round N+1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_round: Option<u32>,
    /// Fix rounds done after reviews (`fixRounds`), counted against `review.max_rounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_rounds: Option<u32>,
    /// Fix rounds done for requested changes on the pull request (`prFixRounds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_fix_rounds: Option<u32>,
    /// Resolve rounds done (`resolveRounds`), counted against `merge.max_resolve_rounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_rounds: Option<u32>,
    /// Fields switchyard does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Task {
    /// A pending task with only an id and title (used by importers, the demo and tests).
    pub fn new(id: &str, title: &str) -> Task {
        Task {
            id: id.to_string(),
            issue: None,
            title: title.to_string(),
            files: Vec::new(),
            depends_on: None,
            status: Status::Pending,
            worktree: None,
            tmux_session: None,
            started_at: None,
            last_progress: None,
            completed_at: None,
            pr_number: None,
            agent: None,
            prompt: None,
            attempts: None,
            last_verdict: None,
            base_commit: None,
            branch: None,
            verify: None,
            role: None,
            reads: None,
            writes: None,
            context: None,
            lens: None,
            review_round: None,
            fix_rounds: None,
            pr_fix_rounds: None,
            resolve_rounds: None,
            extra: Map::new(),
        }
    }

    /// The ids this task explicitly waits for (empty when `dependsOn` is absent).
    pub fn deps(&self) -> &[String] {
        self.depends_on.as_deref().unwrap_or(&[])
    }

    /// The branch name for this task: `fix/issue-<issue>`, or `task/<id>` without an issue.
    pub fn branch_name(&self) -> String {
        match self.issue {
            Some(n) => format!("fix/issue-{n}"),
            None => format!("task/{}", self.id),
        }
    }
}

/// A phase: a named group of tasks; phase N+1 waits for phase N unless `parallel` is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Display name, e.g. `Phase 1: Critical`.
    #[serde(default)]
    pub name: String,
    /// The phase's tasks in manifest order.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Fields switchyard does not know (e.g. `parallel`, read by the planner), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Phase {
    /// True when the phase says it need not wait for the phase before it (`"waitForPrevious": false`).
    pub fn waits_for_previous(&self) -> bool {
        self.extra
            .get("waitForPrevious")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Project name shown in the header.
    #[serde(default)]
    pub project: String,
    /// Seed field: `owner/repo` on GitHub (informational).
    #[serde(default)]
    pub repo: Option<String>,
    /// Where worktrees and logs go; relative paths are relative to the manifest's directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
    /// Seed field: the model name (informational).
    #[serde(default)]
    pub model: Option<String>,
    /// Seed field: the model tier (informational).
    #[serde(default, rename = "modelTier")]
    pub model_tier: Option<String>,
    /// Phases in order.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// Fields switchyard does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a validation problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based line and column in the JSON text.
    LineCol(usize, usize),
    /// A task, by id (or by position when its id is unusable).
    Task(String),
    /// The manifest as a whole.
    Whole,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::LineCol(l, c) => write!(f, "line {l}, column {c}"),
            Location::Task(id) => write!(f, "task {}", escape_control(id)),
            Location::Whole => f.write_str("manifest"),
        }
    }
}

/// One problem found in a manifest: what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}. Fix: {}", self.location, self.message, self.fix)
    }
}

/// Errors from loading or saving a manifest. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read or written.
    #[error("{path}: {action} failed: {source}")]
    Io {
        /// The manifest file.
        path: PathBuf,
        /// What was being done (`read`, `write`, `rename`, ...).
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text (UTF-16 with or without a byte-order mark, or a byte that is not
    /// valid UTF-8). One line: the encoding, the byte offset and how to fix it.
    #[error("{path}: {encoding} at byte offset {offset}; {fix}")]
    Encoding {
        /// The manifest file.
        path: PathBuf,
        /// What was found, e.g. `UTF-16LE text (byte-order mark FF FE)` or `a byte 0xFF that is not UTF-8`.
        encoding: String,
        /// 0-based offset of the first offending byte in the file.
        offset: usize,
        /// How to fix it.
        fix: &'static str,
    },
    /// The file is not a valid manifest; every problem found is listed.
    #[error("{path}: invalid manifest:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
}

impl Manifest {
    /// Parses manifest JSON text. Errors carry the JSON line:column and a fix.
    pub fn parse(text: &str) -> Result<Manifest, Vec<Problem>> {
        serde_json::from_str::<Manifest>(text).map_err(|e| {
            let fix = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "correct the JSON syntax there (a missing comma, quote or bracket is typical)"
                }
                _ => {
                    "give the field the type the seed format expects (see README, \"The manifest\")"
                }
            };
            vec![Problem {
                location: Location::LineCol(e.line(), e.column()),
                message: strip_serde_position(&e.to_string()),
                fix: fix.to_string(),
            }]
        })
    }

    /// Reads and validates the manifest at `path`.
    ///
    /// Errors: [`ManifestError::Io`] when unreadable, [`ManifestError::Encoding`] when the file is
    /// not UTF-8 (a UTF-8 byte-order mark is accepted and dropped), [`ManifestError::Invalid`] listing every
    /// syntax or validation problem (duplicate id, unknown `dependsOn`, unsafe id or file path).
    /// Dependency cycles are reported by [`crate::core::plan::Plan::build`].
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        })?;
        let text = decode_utf8(&bytes).map_err(|(encoding, offset)| ManifestError::Encoding {
            path: path.to_path_buf(),
            encoding,
            offset,
            fix: "save the manifest as UTF-8 without a byte-order mark (e.g. `iconv -f UTF-16 -t UTF-8`)",
        })?;
        let manifest = Manifest::parse(text).map_err(|problems| ManifestError::Invalid {
            path: path.to_path_buf(),
            problems,
        })?;
        let problems = manifest.validate();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks ids and paths: empty or duplicate ids, ids that are not valid in a git branch name
    /// (`a..b`, `x.lock`, a trailing dot, a leading `-`, spaces, control characters,
    /// `~^:?*[\`, `@{`), ids or files that would escape the worktree directory (`..`, absolute
    /// paths), NUL bytes in any text git or the agent's argv receives (id, title, prompt, files,
    /// agent, dependsOn, verify), unknown or self `dependsOn`. Returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.tasks().next().is_none() {
            problems.push(Problem {
                location: Location::Whole,
                message: "the manifest has no tasks".into(),
                fix: "add tasks under \"phases\": [{\"name\": ..., \"tasks\": [{\"id\": \"t1\", ...}]}]".into(),
            });
        }
        let mut seen = HashSet::new();
        let ids: HashSet<&str> = self.tasks().map(|t| t.id.as_str()).collect();
        for (n, task) in self.tasks().enumerate() {
            let at = if task.id.is_empty() {
                Location::Task(format!("#{} (no id)", n + 1))
            } else {
                Location::Task(task.id.clone())
            };
            if let Err(why) = check_id(&task.id) {
                problems.push(Problem {
                    location: at.clone(),
                    message: format!("id {:?} {why}", task.id),
                    fix: "use letters, digits, '-', '_' or '.' only (not at the start: '-', '.'; \
                          not at the end: '.', \".lock\"; never \"..\"), e.g. \"t1\""
                        .into(),
                });
            }
            if let Some(branch) = &task.branch {
                if let Err(why) = check_branch(branch) {
                    problems.push(Problem {
                        location: at.clone(),
                        message: format!("branch {branch:?} {why}"),
                        fix: "name a valid git branch, e.g. \"fix/issue-12\", or remove \"branch\" to use the default".into(),
                    });
                }
            }
            for (field, value) in task_texts(task) {
                if let Some(offset) = value.find('\0') {
                    problems.push(Problem {
                        location: at.clone(),
                        message: format!(
                            "{field} contains a NUL byte (\\0) at byte {offset}; git and the agent's command line cannot carry it"
                        ),
                        fix: format!("remove the \\u0000 escape from {field}"),
                    });
                }
            }
            if !task.id.is_empty() && !seen.insert(task.id.as_str()) {
                problems.push(Problem {
                    location: at.clone(),
                    message: format!("duplicate task id {:?}", task.id),
                    fix: "give every task a unique id".into(),
                });
            }
            let listed = [
                ("files", Some(&task.files)),
                ("reads", task.reads.as_ref()),
                ("writes", task.writes.as_ref()),
            ];
            for (field, list) in listed {
                for file in list.into_iter().flatten() {
                    if let Err(why) = check_relative_path(file) {
                        let what = if field == "files" {
                            "file".to_string()
                        } else {
                            format!("{field} entry")
                        };
                        problems.push(Problem {
                            location: at.clone(),
                            message: format!("{what} {file:?} {why}"),
                            fix: "list files relative to the repository root, without '..'".into(),
                        });
                    }
                }
            }
            for c in task.context.iter().flatten() {
                if c == &task.id {
                    problems.push(Problem {
                        location: at.clone(),
                        message: "lists itself under context".into(),
                        fix: format!("remove {c:?} from its context"),
                    });
                } else if !ids.contains(c.as_str()) {
                    problems.push(Problem {
                        location: at.clone(),
                        message: format!("context names unknown task {c:?}"),
                        fix: "name an existing task id (its final message is given to this task), or remove the entry".into(),
                    });
                }
            }
            for dep in task.deps() {
                if dep == &task.id {
                    problems.push(Problem {
                        location: at.clone(),
                        message: "depends on itself".into(),
                        fix: format!("remove {dep:?} from its dependsOn"),
                    });
                } else if !ids.contains(dep.as_str()) {
                    problems.push(Problem {
                        location: at.clone(),
                        message: format!("dependsOn names unknown task {dep:?}"),
                        fix: "name an existing task id, or remove the entry".into(),
                    });
                }
            }
        }
        problems
    }

    /// Tasks naming an agent that is not among `profiles` (the keys of `[agents]` in the
    /// config). A pure check, so `switchyard plan` can report what `run` would refuse: one
    /// [`Problem`] per task, naming the task, the agent and the profiles there are. Tasks
    /// without an `agent` use the config's `default_agent`, which the config itself checks.
    pub fn check_agents(&self, profiles: &[&str]) -> Vec<Problem> {
        self.tasks()
            .filter_map(|t| {
                let agent = t.agent.as_deref()?;
                if profiles.contains(&agent) {
                    return None;
                }
                Some(Problem {
                    location: Location::Task(t.id.clone()),
                    message: format!("agent {agent:?} has no profile"),
                    fix: format!(
                        "add [agents.{}] to switchyard.toml, or use one of: {}",
                        escape_control(agent),
                        escape_control(&profiles.join(", "))
                    ),
                })
            })
            .collect()
    }

    /// Tasks naming a `role` that is not among `roles` (the keys of `[roles]` in the config),
    /// one [`Problem`] per task naming the task, the role and the roles there are. Tasks without
    /// a role are implementers.
    pub fn check_roles(&self, roles: &[&str]) -> Vec<Problem> {
        self.tasks()
            .filter_map(|t| {
                let role = t.role.as_deref()?;
                if roles.contains(&role) {
                    return None;
                }
                Some(Problem {
                    location: Location::Task(t.id.clone()),
                    message: format!("role {role:?} is not a known role"),
                    fix: format!(
                        "use one of: {}, or add [roles.{}] with a preamble to switchyard.toml",
                        escape_control(&roles.join(", ")),
                        escape_control(role)
                    ),
                })
            })
            .collect()
    }

    /// Removes temporary files a killed [`Manifest::save`] left beside the manifest at `path`
    /// (`.<file name>.switchyard-XXXXXX.tmp` in the directory of the file a symlinked manifest
    /// points to), and temp files of the older naming (`.switchyard-XXXXXX.tmp`) that are more
    /// than a minute old. Call it at the start of a run while holding the run's lock: a save in
    /// progress by another process on the same manifest would lose its temp file. Returns the
    /// removed paths.
    ///
    /// Errors: [`ManifestError::Io`] when the directory cannot be listed or a temp file cannot
    /// be removed.
    pub fn clean_stale_temps(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
        let target = resolve_link(path);
        let dir = parent_dir(&target);
        let own = temp_prefix(&target);
        let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Io {
            path: dir.to_path_buf(),
            action: "list the directory for stale temp files",
            source,
        })?;
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.starts_with(&own) && name.ends_with(TEMP_SUFFIX);
            let legacy = name.starts_with(LEGACY_TEMP_PREFIX)
                && name.ends_with(TEMP_SUFFIX)
                && name.len() == LEGACY_TEMP_PREFIX.len() + 6 + TEMP_SUFFIX.len()
                && entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() >= 60);
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if (ours || legacy) && is_file {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(|source| ManifestError::Io {
                    path: p.clone(),
                    action: "remove a stale temp file",
                    source,
                })?;
                removed.push(p);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// All tasks in manifest order (phase by phase).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.phases.iter().flat_map(|p| p.tasks.iter())
    }

    /// All tasks in manifest order, mutably.
    pub fn tasks_mut(&mut self) -> impl Iterator<Item = &mut Task> {
        self.phases.iter_mut().flat_map(|p| p.tasks.iter_mut())
    }

    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks().find(|t| t.id == id)
    }

    /// The task with this id, mutably.
    pub fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        self.tasks_mut().find(|t| t.id == id)
    }

    /// Pretty JSON text of the manifest (2-space indent, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        s.push('\n');
        s
    }

    /// Writes the manifest atomically: a temp file in the same directory, fsync, rename, fsync of
    /// the directory. A crash leaves either the old or the new file, never half of one (and a
    /// temp file that [`Manifest::clean_stale_temps`] removes). The file keeps its permission
    /// bits; a symlinked manifest is written through the link (the link stays a link).
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        write_atomic(path, self.to_json().as_bytes())
    }
}

/// Suffix of the temp files [`write_atomic`] creates.
const TEMP_SUFFIX: &str = ".tmp";
/// Prefix of the temp files of switchyard versions that did not name the target file.
const LEGACY_TEMP_PREFIX: &str = ".switchyard-";

/// The temp-file prefix for `target`: `.<file name>.switchyard-`.
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.switchyard-")
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Follows symlinks at `path` (up to 40, like the kernel) to the file they name; the target
/// need not exist. Relative link targets are taken from the link's directory.
fn resolve_link(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&p) {
                Ok(next) => p = parent_dir(&p).join(next),
                Err(_) => break,
            },
            _ => break,
        }
    }
    p
}

/// Writes `bytes` to `path` atomically (temp file `.<name>.switchyard-XXXXXX.tmp` in the same
/// directory, fsync, rename, fsync of the directory). An existing file keeps its permission
/// bits; a new one gets `0666` minus the umask. When `path` is a symlink, the file it points to
/// is replaced and the link is kept.
///
/// Errors: [`ManifestError::Io`] naming `path` and the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let io = |action: &'static str| {
        move |source| ManifestError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let target = resolve_link(path);
    let dir = parent_dir(&target);
    let mode = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let prefix = temp_prefix(&target);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(TEMP_SUFFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io("create temp file"))?;
    if let Some(perms) = mode {
        tmp.as_file()
            .set_permissions(perms)
            .map_err(io("keep the file's permissions"))?;
    }
    tmp.write_all(bytes).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("fsync"))?;
    tmp.persist(&target).map_err(|e| ManifestError::Io {
        path: path.to_path_buf(),
        action: "rename",
        source: e.error,
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Decodes manifest bytes as UTF-8, dropping a UTF-8 byte-order mark. Otherwise returns what
/// the bytes are (UTF-16/32 by byte-order mark or by NUL pattern, or the invalid byte) and the
/// 0-based byte offset of the first offending byte.
fn decode_utf8(bytes: &[u8]) -> Result<&str, (String, usize)> {
    let boms: [(&[u8], &str); 4] = [
        (
            &[0xFF, 0xFE, 0, 0],
            "UTF-32LE text (byte-order mark FF FE 00 00)",
        ),
        (
            &[0, 0, 0xFE, 0xFF],
            "UTF-32BE text (byte-order mark 00 00 FE FF)",
        ),
        (&[0xFF, 0xFE], "UTF-16LE text (byte-order mark FF FE)"),
        (&[0xFE, 0xFF], "UTF-16BE text (byte-order mark FE FF)"),
    ];
    for (bom, what) in boms {
        if bytes.starts_with(bom) {
            return Err((what.to_string(), 0));
        }
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
    let skipped = bytes.len() - body.len();
    // UTF-16 without a mark: JSON starts with ASCII, so one of the first two bytes is NUL.
    if body.len() >= 2 && (body[0] == 0) != (body[1] == 0) {
        let (what, at) = if body[0] == 0 {
            ("UTF-16BE text (no byte-order mark)", 0)
        } else {
            ("UTF-16LE text (no byte-order mark)", 1)
        };
        return Err((what.to_string(), skipped + at));
    }
    std::str::from_utf8(body).map_err(|e| {
        let at = e.valid_up_to();
        (
            format!("a byte 0x{:02X} that is not valid UTF-8", body[at]),
            skipped + at,
        )
    })
}

/// The text fields of a task (besides the id and branch, which [`check_id`] and
/// [`check_branch`] check) that reach git, a file name or the agent's command line, by
/// manifest field name.
fn task_texts(task: &Task) -> Vec<(String, &str)> {
    let mut out = vec![("title".to_string(), task.title.as_str())];
    if let Some(p) = &task.prompt {
        out.push(("prompt".into(), p));
    }
    if let Some(a) = &task.agent {
        out.push(("agent".into(), a));
    }
    for (n, f) in task.files.iter().enumerate() {
        out.push((format!("files[{n}]"), f));
    }
    for (field, v) in [("role", &task.role), ("lens", &task.lens)] {
        if let Some(v) = v {
            out.push((field.into(), v));
        }
    }
    for (field, list) in [
        ("reads", &task.reads),
        ("writes", &task.writes),
        ("context", &task.context),
    ] {
        for (n, f) in list.iter().flatten().enumerate() {
            out.push((format!("{field}[{n}]"), f));
        }
    }
    for (n, d) in task.deps().iter().enumerate() {
        out.push((format!("dependsOn[{n}]"), d));
    }
    for (n, v) in task.verify.iter().flatten().enumerate() {
        out.push((format!("verify[{n}]"), v));
    }
    out
}

/// Checks a task id is usable in a branch (`task/<id>`, see `git check-ref-format`), a
/// directory, a file name and an argv element.
fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id == "." || id == ".." || id.starts_with('.') {
        return Err("would escape the worktree directory");
    }
    if id.len() > 100 {
        return Err("is longer than 100 characters");
    }
    if id.contains('\0') {
        return Err("contains a NUL byte");
    }
    if id.chars().any(char::is_control) {
        return Err("contains a control character, which git does not allow in a branch name");
    }
    if id.contains("..") {
        return Err("contains \"..\", which git does not allow in a branch name");
    }
    if id.contains("@{") {
        return Err("contains \"@{\", which git does not allow in a branch name");
    }
    if id.ends_with(".lock") {
        return Err("ends with \".lock\", which git does not allow in a branch name");
    }
    if id.ends_with('.') {
        return Err("ends with '.', which git does not allow in a branch name");
    }
    if id.starts_with('-') {
        return Err("starts with '-', which git and the agent's command line read as an option");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "has characters that cannot appear in a branch or file name (spaces, '/', ~^:?*[\\ and non-ASCII)",
        );
    }
    Ok(())
}

/// Checks a branch name as `git check-ref-format --branch` would (without the `@{-N}` forms).
fn check_branch(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "@" {
        return Err("is not a branch name");
    }
    if name.starts_with('-') {
        return Err("starts with '-'");
    }
    if name.ends_with('/') || name.ends_with('.') || name.contains("//") {
        return Err("ends with '/' or '.', or contains \"//\"");
    }
    if name.contains("..") || name.contains("@{") {
        return Err("contains \"..\" or \"@{\"");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
    {
        return Err("contains a space, a control character or one of ~^:?*[\\");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err("has a part starting with '.' or ending with \".lock\"");
    }
    Ok(())
}

/// Checks a file path stays inside the worktree: relative, no `..`.
fn check_relative_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    let path = Path::new(p);
    if path.is_absolute() || p.starts_with('/') || p.starts_with('\\') {
        return Err("is absolute and would escape the worktree");
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("contains '..' and would escape the worktree");
    }
    Ok(())
}

/// serde_json appends " at line L column C"; the location is reported separately.
fn strip_serde_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SEED: &str = r#"{
  "project": "nuri-security-framework",
  "repo": "jdrhyne/nuri-security-framework",
  "phases": [
    { "name": "Phase 1: Critical", "tasks": [
      {"id": "t1", "issue": 1, "files": ["ceo_root_manager.js"], "dependsOn": []},
      {"id": "t2", "issue": 2, "files": ["ceo_root_manager.js"], "dependsOn": ["t1"]},
      {"id": "t3", "issue": 3, "files": ["workspace_validator.js"], "dependsOn": []}
    ]},
    { "name": "Phase 2: High", "tasks": [
      {"id": "t4", "issue": 4, "files": ["kill_switch.js", "container_executor.js"], "dependsOn": []},
      {"id": "t5", "issue": 5, "files": ["kill_switch.js"], "dependsOn": ["t4"]},
      {"id": "t6", "issue": 6, "files": ["ceo_root_manager.js"], "dependsOn": ["t2"]},
      {"id": "t7", "issue": 7, "files": ["container_executor.js"], "dependsOn": []},
      {"id": "t8", "issue": 8, "files": ["container_executor.js", "egress_proxy.js"], "dependsOn": ["t7"]}
    ]}
  ]
}"#;

    #[test]
    fn reads_the_seed_example() {
        let m = Manifest::parse(SEED).unwrap();
        assert_eq!(m.project, "nuri-security-framework");
        assert_eq!(m.tasks().count(), 8);
        assert_eq!(m.task("t8").unwrap().deps(), ["t7"]);
        assert!(m.validate().is_empty());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip_in_order() {
        let text = r#"{"project":"p","socket":"/tmp/s","phases":[{"name":"a","parallel":true,
            "tasks":[{"id":"t1","custom":{"k":[1,2]},"status":"running","labels":["x"]}]}],"zzz":1}"#;
        let m = Manifest::parse(text).unwrap();
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(out["socket"], "/tmp/s");
        assert_eq!(out["zzz"], 1);
        assert_eq!(out["phases"][0]["parallel"], true);
        assert_eq!(out["phases"][0]["tasks"][0]["custom"]["k"][1], 2);
        assert_eq!(out["phases"][0]["tasks"][0]["labels"][0], "x");
        assert_eq!(out["phases"][0]["tasks"][0]["status"], "running");
        // A second round trip is byte-identical.
        let again = Manifest::parse(&m.to_json()).unwrap();
        assert_eq!(again.to_json(), m.to_json());
    }

    #[test]
    fn seed_fields_are_written_with_seed_names() {
        let mut m = Manifest::parse(SEED).unwrap();
        let t = m.task_mut("t1").unwrap();
        t.status = Status::PrOpen;
        t.started_at = Some("2026-01-17T00:00:00Z".into());
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        let t1 = &out["phases"][0]["tasks"][0];
        assert_eq!(t1["status"], "pr_open");
        assert_eq!(t1["startedAt"], "2026-01-17T00:00:00Z");
        assert!(t1.get("dependsOn").is_some());
        assert!(t1.get("tmuxSession").is_some());
        assert!(
            t1.get("agent").is_none(),
            "optional additions are omitted when unset"
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let problems =
            Manifest::parse("{\n  \"project\": \"x\",\n  \"phases\": [,]\n}").unwrap_err();
        assert_eq!(problems[0].location, Location::LineCol(3, 14));
        assert!(problems[0].fix.contains("JSON syntax"));
    }

    #[test]
    fn wrong_status_is_a_located_error() {
        let problems =
            Manifest::parse(r#"{"phases":[{"tasks":[{"id":"a","status":"finished"}]}]}"#)
                .unwrap_err();
        assert!(problems[0].message.contains("finished"), "{:?}", problems);
        assert!(matches!(problems[0].location, Location::LineCol(1, _)));
    }

    #[test]
    fn validation_finds_every_problem() {
        let text = r#"{"phases":[{"tasks":[
            {"id":"a","files":["../etc/passwd"]},
            {"id":"a","dependsOn":["ghost"]},
            {"id":"../x"},
            {"id":"b","files":["/abs"],"dependsOn":["b"]}]}]}"#;
        let problems = Manifest::parse(text).unwrap().validate();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|p| p.contains("task a: file \"../etc/passwd\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("duplicate task id \"a\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("unknown task \"ghost\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("\"../x\" would escape")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("\"/abs\" is absolute")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("task b: depends on itself")),
            "{text:?}"
        );
        assert_eq!(problems.len(), 6);
    }

    #[test]
    fn a_manifest_without_tasks_is_an_error() {
        let problems = Manifest::parse(r#"{"project":"x","phases":[]}"#)
            .unwrap()
            .validate();
        assert_eq!(problems.len(), 1);
        assert!(problems[0]
            .to_string()
            .starts_with("manifest: the manifest has no tasks"));
    }

    #[test]
    fn atomic_save_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, "old").unwrap();
        let m = Manifest::parse(SEED).unwrap();
        m.save(&path).unwrap();
        let back = Manifest::load(&path).unwrap();
        assert_eq!(back, m);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn branch_names_follow_the_seed() {
        let m = Manifest::parse(SEED).unwrap();
        assert_eq!(m.task("t3").unwrap().branch_name(), "fix/issue-3");
        assert_eq!(Task::new("x-1", "t").branch_name(), "task/x-1");
    }

    fn one_task(task: &str) -> String {
        format!(r#"{{"phases":[{{"name":"p","tasks":[{task}]}}]}}"#)
    }

    #[test]
    fn numbers_are_kept_exactly_as_written() {
        let text = one_task(
            r#"{"id":"t1","issue":7,"attempts":3,"prNumber":42,"tmuxSession":1.0e-3,"big":123456789012345678901234567890,"e":1e2,"f":1.50,"neg":-0,"small":-12}"#,
        );
        let m = Manifest::parse(&text).unwrap();
        let t = m.task("t1").unwrap();
        assert_eq!(t.issue, Some(7));
        assert_eq!(t.attempts, Some(3));
        let out = m.to_json();
        for written in [
            "123456789012345678901234567890",
            // serde_json spells an exponent with its sign: same digits, same value.
            "\"e\": 1e+2",
            "\"f\": 1.50",
            "\"neg\": -0",
            "\"small\": -12",
            "\"prNumber\": 42",
            "\"tmuxSession\": 1.0e-3",
        ] {
            assert!(out.contains(written), "{written} not kept in {out}");
        }
    }

    #[test]
    fn every_id_git_refuses_as_a_branch_is_a_problem_naming_the_task() {
        for id in [
            "a..b",
            "x.lock",
            "trail.",
            "a@{b",
            "-lead",
            "sp ace",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "bell\u{7}",
            "nul\u{0}",
        ] {
            let m = Manifest {
                phases: vec![Phase {
                    name: "p".into(),
                    tasks: vec![Task::new(id, "t")],
                    extra: Map::new(),
                }],
                ..Manifest::parse(&one_task(r#"{"id":"ok"}"#)).unwrap()
            };
            let problems = m.validate();
            assert_eq!(problems.len(), 1, "{id:?}: {problems:?}");
            assert_eq!(problems[0].location, Location::Task(id.to_string()));
            assert!(problems[0].fix.contains("letters, digits"), "{id:?}");
        }
        for id in ["t1", "fix-2", "a.b", "A_9"] {
            let m = Manifest::parse(&one_task(&format!(r#"{{"id":"{id}"}}"#))).unwrap();
            assert!(m.validate().is_empty(), "{id} is fine");
        }
    }

    #[test]
    fn nul_bytes_in_task_text_are_problems_naming_the_field() {
        let text = one_task(
            r#"{"id":"t1","title":"a\u0000b","prompt":"p\u0000","files":["ok.rs","x\u0000y"],"verify":["make","\u0000"]}"#,
        );
        let problems = Manifest::parse(&text).unwrap().validate();
        let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for field in ["title", "prompt", "files[1]", "verify[1]"] {
            assert!(
                said.iter()
                    .any(|p| p.starts_with(&format!("task t1: {field} contains a NUL byte"))),
                "{field}: {said:?}"
            );
        }
        assert_eq!(problems.len(), 4, "{said:?}");
    }

    #[test]
    fn a_manifest_in_another_encoding_is_one_line_naming_encoding_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(
                one_task(r#"{"id":"t1"}"#)
                    .encode_utf16()
                    .flat_map(|u| u.to_le_bytes()),
            )
            .collect();
        std::fs::write(&path, &utf16).unwrap();
        let e = Manifest::load(&path).unwrap_err().to_string();
        assert!(e.contains("UTF-16LE") && e.contains("byte offset 0"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");

        let no_bom: Vec<u8> = utf16[2..].to_vec();
        std::fs::write(&path, &no_bom).unwrap();
        let e = Manifest::load(&path).unwrap_err().to_string();
        assert!(e.contains("UTF-16LE text (no byte-order mark)"), "{e}");

        let mut latin1 = one_task(r#"{"id":"t1","title":"caf_"}"#).into_bytes();
        let at = latin1.iter().position(|&b| b == b'_').unwrap();
        latin1[at] = 0xE9;
        std::fs::write(&path, &latin1).unwrap();
        let e = Manifest::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("0xE9 that is not valid UTF-8") && e.contains(&format!("byte offset {at}")),
            "{e}"
        );

        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend(one_task(r#"{"id":"t1"}"#).bytes());
        std::fs::write(&path, &bom).unwrap();
        assert!(Manifest::load(&path).is_ok(), "a UTF-8 BOM is accepted");
    }

    #[test]
    fn roles_reads_writes_and_context_are_checked() {
        let text = one_task(
            r#"{"id":"a","role":"critic","reads":["../x"],"writes":["/etc/y"],"context":["a","nope"]},{"id":"b","role":"reviewer"}"#,
        );
        let m = Manifest::parse(&text).unwrap();
        let roles = m.check_roles(&["implementer", "reviewer"]);
        assert_eq!(roles.len(), 1);
        assert_eq!(
            roles[0].to_string(),
            "task a: role \"critic\" is not a known role. Fix: use one of: implementer, reviewer, or add [roles.critic] with a preamble to switchyard.toml"
        );
        let text: Vec<String> = m.validate().iter().map(|p| p.message.clone()).collect();
        assert!(
            text.iter().any(|t| t.starts_with("reads entry \"../x\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("writes entry \"/etc/y\"")),
            "{text:?}"
        );
        assert!(
            text.contains(&"lists itself under context".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"context names unknown task \"nope\"".to_string()),
            "{text:?}"
        );
    }

    #[test]
    fn agents_without_a_profile_are_problems() {
        let text = one_task(r#"{"id":"a","agent":"nope"},{"id":"b","agent":"codex"},{"id":"c"}"#);
        let m = Manifest::parse(&text).unwrap();
        let problems = m.check_agents(&["codex", "claude"]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "task a: agent \"nope\" has no profile. Fix: add [agents.nope] to switchyard.toml, or use one of: codex, claude"
        );
    }

    #[cfg(unix)]
    #[test]
    fn save_keeps_the_mode_and_writes_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("m.json");
        let m = Manifest::parse(SEED).unwrap();
        std::fs::write(&real, "{}").unwrap();
        for mode in [0o644, 0o640, 0o664] {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).unwrap();
            m.save(&real).unwrap();
            let got = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
            assert_eq!(got, mode, "mode {mode:o} kept");
        }
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real/m.json", &link).unwrap();
        let mut changed = m.clone();
        changed.project = "through the link".into();
        changed.save(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(Manifest::load(&real).unwrap().project, "through the link");
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777,
            0o664
        );
        assert_eq!(
            std::fs::read_dir(&real_dir).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn stale_temp_files_of_this_manifest_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        Manifest::parse(SEED).unwrap().save(&path).unwrap();
        // What a kill between create and rename leaves: a temp file named by the saver.
        let left = tempfile::Builder::new()
            .prefix(&temp_prefix(&path))
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir.path())
            .unwrap()
            .keep()
            .unwrap()
            .1;
        let other = dir.path().join(".other.json.switchyard-abc123.tmp");
        let recent_legacy = dir.path().join(".switchyard-abc123.tmp");
        std::fs::write(&other, "x").unwrap();
        std::fs::write(&recent_legacy, "x").unwrap();
        let removed = Manifest::clean_stale_temps(&path).unwrap();
        assert_eq!(removed, vec![left.clone()]);
        assert!(!left.exists());
        assert!(other.exists(), "another manifest's temp is not ours");
        assert!(recent_legacy.exists(), "a fresh legacy temp may be in use");
        assert!(path.exists());
        assert!(Manifest::clean_stale_temps(&path).unwrap().is_empty());
    }

    #[test]
    fn task_text_in_problems_is_escaped_and_bad_branches_are_problems() {
        let text = one_task(
            r#"{"id":"a\u001b]52;c;eA==\u0007","branch":"fix/x..y"},{"id":"b","branch":"ok/name"},{"id":"c","branch":"a/.b"}"#,
        );
        let problems = Manifest::parse(&text).unwrap().validate();
        let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            said.iter()
                .all(|p| !p.contains('\x1b') && !p.contains('\x07')),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|p| p.starts_with("task a␛]52;c;eA==␇: branch \"fix/x..y\"")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|p| p.starts_with("task c: branch \"a/.b\"")),
            "{said:?}"
        );
        assert!(!said.iter().any(|p| p.starts_with("task b")), "{said:?}");
    }
}
