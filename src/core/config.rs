//! Configuration: agent profiles (argv templates), classifier rules, heal policy, limits.
//!
//! Layers, later ones overriding earlier ones key by key (tables merge, other values replace):
//! the defaults shipped in `assets/switchyard.toml`, then `switchyard.toml` in the user config
//! directory (`$XDG_CONFIG_HOME/switchyard/` or `~/.config/switchyard/`), then `switchyard.toml`
//! beside the manifest.

use crate::core::classify::{Rule, RuleSpec};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "config/lifecycle.rs"]
pub mod lifecycle;
pub use lifecycle::{Finish, Lifecycle, MergeConfig, PrConfig, ReviewConfig, WarnConfig};

/// The defaults shipped with switchyard.
pub const DEFAULTS: &str = include_str!("../../assets/switchyard.toml");

/// The whole configuration after merging every layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Most workers running at once.
    pub max_parallel: usize,
    /// The ref new task branches start from (`HEAD`, a branch or a commit).
    pub base: String,
    /// Agent profile for tasks that do not name one.
    pub default_agent: String,
    /// Prompt for tasks without `prompt`; placeholders `{id} {issue} {title}`.
    pub prompt_template: String,
    /// PTY size for workers when no terminal decides it (headless), rows × cols.
    pub pty_rows: u16,
    /// See `pty_rows`.
    pub pty_cols: u16,
    /// Scrollback a person can read per worker, in lines (the newest ones; older lines than the
    /// emulator holds in memory are replayed from the worker's transcript on demand).
    pub scrollback_lines: usize,
    /// Lines of scrollback each worker's emulator keeps in memory (at most `scrollback_lines`:
    /// a larger value keeps them all). Memory per worker is about this × PTY columns × 32 bytes
    /// (vt100 0.16's cell).
    pub scrollback_memory_lines: usize,
    /// Commands run in each new worktree before its agent starts (argv each, never a shell
    /// string; placeholders `{repo} {worktree} {task_id} {branch}`): `setup = [["cp",
    /// "{repo}/.env", ".env"], ["npm", "ci"]]`, or one argv `setup = ["npm", "ci"]`. Output goes
    /// to `<workdir>/logs/<id>.setup.log`; a failure is an error on the task (see [`crate::host::setup`]).
    #[serde(default)]
    pub setup: crate::host::setup::SetupCommands,
    /// Time limit per `setup` command, ms (default 600000).
    #[serde(default = "crate::host::setup::default_timeout_ms")]
    pub setup_timeout_ms: u64,
    /// Heal policy.
    pub heal: HealPolicy,
    /// Screen rules applied to every profile, after the profile's own rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Agent profiles by name.
    pub agents: BTreeMap<String, AgentProfile>,
    /// Key bindings for the control room: action name → key name(s) (see README, "Keys").
    #[serde(default)]
    pub keys: BTreeMap<String, KeyNames>,
    /// A command (argv, no shell) run when a task needs attention; placeholders `{task_id}`,
    /// `{title}`, `{reason}`.
    #[serde(default)]
    pub notify_command: Option<Vec<String>>,
    /// `[review]`: review and fix rounds after verify (see [`lifecycle`]).
    #[serde(default)]
    pub review: ReviewConfig,
    /// `[merge]`: the merge queue into the integration branch.
    #[serde(default)]
    pub merge: MergeConfig,
    /// `[warn]`: early conflict warnings while tasks run.
    #[serde(default)]
    pub warn: WarnConfig,
    /// `finish = "branch" | "pr"`: what finishes a task.
    #[serde(default)]
    pub finish: Finish,
    /// `[pr]`: pull requests when `finish = "pr"`.
    #[serde(default)]
    pub pr: PrConfig,
    /// Worker roles by name (`[roles.<name>]`): the preamble of a task's `role` goes before its
    /// prompt (see [`role_prompt`]). Shipped: implementer (the default), scout, reviewer,
    /// verifier, researcher.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
}

/// The role a task without a `role` field has.
pub const DEFAULT_ROLE: &str = "implementer";

/// One worker role (`[roles.<name>]`), after the Codex orchestration guide's worker templates
/// (seeds: "Worker preamble", reviewer/research/implementer/verifier workers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Text put before the prompt of every task with this role (empty: the prompt goes alone).
    pub preamble: String,
}

/// Where a profile's final message (the agent's last answer) is read from when the agent does
/// not write it to `{final_message}` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalChannel {
    /// JSON on the agent's output: `codex exec --json` events (the last `item.completed` of type
    /// `agent_message`) or `claude -p --output-format json` (the `result` field).
    Json,
    /// The last block of text in the transcript's tail (see `crate::core::final_message`).
    Transcript,
}

/// Key names as written in the config: one or several.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyNames {
    /// `retry = "R"`
    One(String),
    /// `quit = ["q", "ctrl-c"]`
    Many(Vec<String>),
}

impl KeyNames {
    /// The names, one or several.
    pub fn list(&self) -> Vec<&str> {
        match self {
            KeyNames::One(s) => vec![s.as_str()],
            KeyNames::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// How to run one agent CLI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProfile {
    /// argv template; placeholders `{prompt} {prompt_file} {task_id} {issue} {title} {worktree}
    /// {branch} {attempt} {switchyard}` are replaced inside each element; never run through a
    /// shell (see [`Vars`]).
    pub command: Vec<String>,
    /// Extra environment variables for the worker.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Screen rules for this agent, tried before the global `rules`.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Dialogs of this agent that are safe to answer automatically, and with which keys; tried
    /// before the global `[[heal.answers]]` (the deny-list still wins).
    #[serde(default)]
    pub answers: Vec<AnswerSpec>,
    /// Text typed (followed by Enter) to nudge a stalled worker; the heal policy's if absent.
    #[serde(default)]
    pub nudge: Option<String>,
    /// The CLI version the rules were checked against (documentation only).
    #[serde(default)]
    pub checked_version: Option<String>,
    /// argv template for the `resume` heal action (e.g. `["codex", "resume", "--last"]`);
    /// `resume` acts as `restart` without it.
    #[serde(default)]
    pub resume: Option<Vec<String>>,
    /// argv template for the `resume` heal action once the agent's channel has named its
    /// session: `{session_id}` is replaced by the first id it reported in the attempt (or in the
    /// attempt a resume continued; opencode 1.18.33:
    /// `["opencode", "--session", "{session_id}"]`, exact where `--continue` takes the newest
    /// session of any worktree of the repository). `resume` is used while no id is known, and
    /// always when this is empty (`[]`: off). A config layer that sets `resume` without this
    /// drops the one of the layers below.
    #[serde(default)]
    pub resume_session: Option<Vec<String>>,
    /// Typed (then Enter) into a resumed agent once, the first time it sits at its prompt: for a
    /// CLI whose `resume` argv cannot carry a prompt (opencode 1.18.33 continues the session with
    /// `--continue` but ignores `--prompt` there).
    #[serde(default)]
    pub resume_prompt: Option<String>,
    /// A verify command (argv, run in the worktree) every task of this profile must pass before
    /// it is `complete`; a task's own `verify` wins.
    #[serde(default)]
    pub verify: Option<Vec<String>>,
    /// Where the profile gets its state from, for the docs: "screen" (rules over the emulated
    /// screen), "osc" (the agent's own escape sequences) or both.
    #[serde(default)]
    pub signals: Option<String>,
    /// Where the final message comes from when `{final_message}` is not in `command` or the
    /// agent left that file empty: `json` or `transcript` (the default).
    #[serde(default)]
    pub final_message: Option<FinalChannel>,
}

/// A heal action (one step of a ladder) is an [`ActionKind`](crate::core::action::ActionKind) of the one action vocabulary:
/// `answer`, `nudge`, `keys`, `restart`, `resume`, `commit`, `escalate`, `fail`, `pause_agent`
/// (old name `pause`). Each also has a key and a `switchyard ctl` form.
pub type HealAction = crate::core::action::ActionKind;

/// One step of a ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What to do.
    pub action: HealAction,
    /// How often this step may run before the ladder moves on (default 1; 0 = no limit).
    #[serde(default = "one")]
    pub max: u32,
    /// Back-off before a restart or resume at this step, ms (default: the policy's back-off).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Text for nudge and keys.
    #[serde(default)]
    pub text: Option<String>,
}

fn one() -> u32 {
    1
}

/// The heal ladders: per situation, the steps tried in order; past the last step the task needs
/// attention.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// A prompt waits (and is not on the deny-list).
    pub waiting_input: Vec<Step>,
    /// An error rule matched on screen, or the verify command failed.
    pub error: Vec<Step>,
    /// Nothing happened for `stall_ms`.
    pub stalled: Vec<Step>,
    /// At its own prompt, but the branch has no commits ahead of base, or changes are uncommitted.
    pub idle: Vec<Step>,
    /// Exited with a failure status, or with success but nothing committed.
    pub exited: Vec<Step>,
    /// A rate-limit message.
    pub rate_limited: Vec<Step>,
}

impl Ladder {
    /// The steps for a situation by its name (`waiting_input`, `error`, ...).
    pub fn steps(&self, situation: &str) -> &[Step] {
        match situation {
            "waiting_input" => &self.waiting_input,
            "error" => &self.error,
            "stalled" => &self.stalled,
            "idle" => &self.idle,
            "exited" => &self.exited,
            _ => &self.rate_limited,
        }
    }

    /// Checks every step is possible where it stands. Errors name the ladder and step.
    pub fn check(&self) -> Result<(), String> {
        use crate::core::action::ActionKind::*;
        for (name, steps, allowed) in [
            (
                "waiting_input",
                &self.waiting_input,
                &[Answer, Nudge, Keys, Restart, Resume, Escalate, Fail][..],
            ),
            (
                "error",
                &self.error,
                &[Nudge, Keys, Restart, Resume, Escalate, Fail][..],
            ),
            (
                "stalled",
                &self.stalled,
                &[Nudge, Keys, Restart, Resume, Escalate, Fail][..],
            ),
            (
                "idle",
                &self.idle,
                &[Nudge, Keys, Commit, Restart, Resume, Escalate, Fail][..],
            ),
            (
                "exited",
                &self.exited,
                &[Commit, Restart, Resume, Escalate, Fail][..],
            ),
            (
                "rate_limited",
                &self.rate_limited,
                &[PauseAgent, Restart, Escalate, Fail][..],
            ),
        ] {
            for (n, s) in steps.iter().enumerate() {
                if !allowed.contains(&s.action) {
                    return Err(format!(
                        "heal.ladder.{name} step {}: `{}` is not possible there; use one of: {}",
                        n + 1,
                        s.action,
                        allowed
                            .iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if s.action == Keys && s.text.as_deref().is_none_or(str::is_empty) {
                    return Err(format!(
                        "heal.ladder.{name} step {}: keys needs `text`",
                        n + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The policy the engine runs by, compiled from a [`Config`]: scheduling, the prompt template,
/// agent profiles, heal ladders and rules. It holds none of the control room's or the shell's
/// settings (keys, PTY size, scrollback, notify command): those stay with the runtime.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Most workers at once (the run starts with this).
    pub max_parallel: usize,
    /// Ref new task branches start from.
    pub base: String,
    /// Agent profile for tasks that name none.
    pub default_agent: String,
    /// Prompt for tasks without their own.
    pub prompt_template: String,
    /// Heal ladders and limits.
    pub heal: HealPolicy,
    /// Agent profiles by name.
    pub agents: BTreeMap<String, AgentProfile>,
    /// Worker roles by name.
    pub roles: BTreeMap<String, RoleSpec>,
    /// Rules, answers and the deny-list, compiled.
    pub compiled: Compiled,
    /// Review, merge queue, conflict warnings and finish.
    pub lifecycle: Lifecycle,
}

impl Policy {
    /// Compiles the engine's policy from a config. Errors name the rule or pattern at fault.
    pub fn compile(config: &Config) -> Result<Policy, String> {
        Ok(Policy {
            max_parallel: config.max_parallel,
            base: config.base.clone(),
            default_agent: config.default_agent.clone(),
            prompt_template: config.prompt_template.clone(),
            heal: config.heal.clone(),
            agents: config.agents.clone(),
            roles: config.roles.clone(),
            compiled: config.compile()?,
            lifecycle: config.lifecycle(),
        })
    }
}

/// How an installed CLI's `--version` compares with the version a profile was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionCheck {
    /// The same version number.
    Same(String),
    /// Another version: the profile's rules may not fit (dialogs change between releases).
    Differs {
        /// What the CLI says it is.
        found: String,
        /// What the profile was checked against.
        checked: String,
    },
    /// The profile names no checked version, or no version number could be read.
    Unknown,
}

/// Compares the first `N.N.N` version number in a CLI's `--version` output with the one in the
/// profile's `checked_version` (e.g. "codex-cli 0.169.0" and "codex-cli 0.169.0", or
/// "2.1.330 (Claude Code)" and "Claude Code 2.1.330").
pub fn compare_versions(found: &str, checked: Option<&str>) -> VersionCheck {
    let number = |s: &str| {
        regex::Regex::new(r"\d+\.\d+(?:\.\d+)?")
            .expect("a valid pattern")
            .find(s)
            .map(|m| m.as_str().to_string())
    };
    match (number(found), checked.and_then(number)) {
        (Some(f), Some(c)) if f == c => VersionCheck::Same(f),
        (Some(f), Some(c)) => VersionCheck::Differs {
            found: f,
            checked: c,
        },
        _ => VersionCheck::Unknown,
    }
}

/// One allow-listed automatic answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    /// Name shown in the journal.
    pub name: String,
    /// Regex the prompt line must match.
    pub pattern: String,
    /// Text to type; `\r` is Enter.
    pub keys: String,
    /// Answer this prompt at most once per attempt (default false): for a dialog the agent asks
    /// once per process and draws again while it restarts itself (gemini-cli 0.61's trust dialog),
    /// where a second answer would be typed into whatever comes next. A second one in the same
    /// attempt is left to the `waiting_input` ladder's later steps.
    #[serde(default)]
    pub once: bool,
}

/// The heal policy: what happens automatically, and how often at most.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealPolicy {
    /// Most worker starts per task (the first run included) before the task is `error`.
    pub max_attempts: u32,
    /// Back-off before restart N is `backoff_ms × 2^(N-1)`, at most `backoff_max_ms`.
    pub backoff_ms: u64,
    /// Cap on the back-off, ms.
    pub backoff_max_ms: u64,
    /// No output, screen change or file change for this long (ms) is a stall.
    pub stall_ms: u64,
    /// Default nudge text.
    pub nudge_text: String,
    /// Most automatic keystroke injections (answers, nudges, keys) per task; past it, the task
    /// needs attention instead.
    pub max_auto_keys: u32,
    /// A worker that has been `running` this long (ms) gets its heal ladders reset.
    pub stable_ms: u64,
    /// The longest a rate-limited agent's tasks pause when the CLI printed no reset time (ms):
    /// the cap of the back-off.
    pub rate_limit_pause_ms: u64,
    /// The first pause of a rate-limited agent whose CLI printed no reset time (ms); each further
    /// pause of that agent doubles it, up to `rate_limit_pause_ms`, until one of its workers has
    /// been `running` for `stable_ms`. 0 = always `rate_limit_pause_ms`.
    pub rate_limit_backoff_ms: u64,
    /// What happens, step by step, in each situation.
    pub ladder: Ladder,
    /// Rows of screen tail given to a restarted agent and kept in its log.
    pub error_tail_lines: usize,
    /// Prompts that may be answered automatically.
    pub answers: Vec<AnswerSpec>,
    /// Prompts matching any of these are never answered automatically.
    pub deny: Vec<String>,
}

/// Errors loading the configuration; each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file exists but cannot be read.
    #[error("{0}: cannot read: {1}")]
    Read(PathBuf, std::io::Error),
    /// A file is not valid TOML.
    #[error("{0}: not valid TOML: {1}")]
    Syntax(PathBuf, String),
    /// The merged configuration has a wrong key or value.
    #[error("configuration ({files}): {message}. Fix the key in one of those files (defaults: assets/switchyard.toml)")]
    Invalid {
        /// The files that were merged, in order.
        files: String,
        /// What is wrong.
        message: String,
    },
}

/// The compiled, ready-to-use policy parts of a config.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Screen rules per agent profile (the profile's own, then the global ones).
    pub rules: BTreeMap<String, Vec<Rule>>,
    /// Allow-listed answers per agent profile (the profile's own, then the global ones):
    /// (name, pattern, keys, once).
    pub answers: BTreeMap<String, Vec<(String, Regex, String, bool)>>,
    /// Deny-list patterns.
    pub deny: Vec<Regex>,
}

impl Config {
    /// The lifecycle settings (`[review]`, `[merge]`, `[warn]`, `finish`, `[pr]`) in one value.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            review: self.review.clone(),
            merge: self.merge.clone(),
            warn: self.warn.clone(),
            finish: self.finish,
            pr: self.pr.clone(),
        }
    }

    /// Lines of scrollback a worker's emulator keeps in memory: `scrollback_memory_lines`, at
    /// most `scrollback_lines`.
    pub fn scrollback_in_memory(&self) -> usize {
        self.scrollback_memory_lines.min(self.scrollback_lines)
    }

    /// The shipped defaults alone.
    pub fn defaults() -> Config {
        Config::from_layers(&[(
            PathBuf::from("assets/switchyard.toml"),
            DEFAULTS.to_string(),
        )])
        .expect("the shipped defaults are valid")
    }

    /// Loads defaults, the user config and the config beside the manifest (if present).
    /// Returns the config and the files it was read from.
    pub fn load_for(manifest: &Path) -> Result<(Config, Vec<PathBuf>), ConfigError> {
        let mut layers = vec![(
            PathBuf::from("assets/switchyard.toml"),
            DEFAULTS.to_string(),
        )];
        let mut candidates = Vec::new();
        if let Some(dir) = dirs::config_dir() {
            candidates.push(dir.join("switchyard").join("switchyard.toml"));
        }
        let beside = manifest
            .parent()
            .map(|d| d.join("switchyard.toml"))
            .unwrap_or_else(|| PathBuf::from("switchyard.toml"));
        candidates.push(beside);
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => layers.push((path, text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ConfigError::Read(path, e)),
            }
        }
        let files: Vec<PathBuf> = layers.iter().map(|(p, _)| p.clone()).collect();
        Ok((Config::from_layers(&layers)?, files))
    }

    /// Merges TOML layers (path, text) in order and checks the result.
    pub fn from_layers(layers: &[(PathBuf, String)]) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        for (path, text) in layers {
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax(path.clone(), e.to_string()))?;
            drop_outdated_resume_session(&mut merged, &table);
            merge(&mut merged, table);
        }
        let files = layers
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let invalid = |message: String| ConfigError::Invalid {
            files: files.clone(),
            message,
        };
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        config.compile().map_err(invalid)?;
        config.heal.ladder.check().map_err(invalid)?;
        config.lifecycle().check(&config.agents).map_err(invalid)?;
        if !config.agents.contains_key(&config.default_agent) {
            return Err(invalid(format!(
                "default_agent {:?} is not a profile under [agents]",
                config.default_agent
            )));
        }
        if config.pty_rows < 2 || config.pty_cols < 10 {
            return Err(invalid(format!(
                "pty_rows × pty_cols is {}×{}: give at least 2 rows and 10 columns",
                config.pty_rows, config.pty_cols
            )));
        }
        if config.max_parallel == 0 {
            return Err(invalid("max_parallel must be at least 1".into()));
        }
        if let Some(n) = config.setup.commands().iter().position(|c| c.is_empty()) {
            return Err(invalid(format!(
                "setup command {} is empty: give each as an argv, e.g. setup = [[\"npm\", \"ci\"]]",
                n + 1
            )));
        }
        if !config.roles.contains_key(DEFAULT_ROLE) {
            return Err(invalid(format!(
                "[roles.{DEFAULT_ROLE}] is missing: tasks without a role are {DEFAULT_ROLE}s; give it a preamble (\"\" for none)"
            )));
        }
        Ok(config)
    }

    /// Compiles every rule, answer and deny pattern. Errors name the profile and rule.
    pub fn compile(&self) -> Result<Compiled, String> {
        let global: Vec<Rule> = self
            .rules
            .iter()
            .map(Rule::compile)
            .collect::<Result<_, _>>()?;
        let compile_answers = |list: &[AnswerSpec],
                               place: &str|
         -> Result<Vec<(String, Regex, String, bool)>, String> {
            list.iter()
                .map(|a| {
                    Regex::new(&a.pattern)
                        .map(|re| (a.name.clone(), re, a.keys.clone(), a.once))
                        .map_err(|e| format!("{place} {:?}: pattern does not compile: {e}", a.name))
                })
                .collect()
        };
        let global_answers = compile_answers(&self.heal.answers, "[[heal.answers]]")?;
        let mut answers = BTreeMap::new();
        let mut rules = BTreeMap::new();
        for (name, profile) in &self.agents {
            let mut own = compile_answers(&profile.answers, &format!("[[agents.{name}.answers]]"))?;
            own.extend(global_answers.iter().cloned());
            answers.insert(name.clone(), own);
            if profile.command.is_empty() {
                return Err(format!(
                    "[agents.{name}] command is empty: give an argv list"
                ));
            }
            let mut own: Vec<Rule> = profile
                .rules
                .iter()
                .map(Rule::compile)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("[agents.{name}] {e}"))?;
            own.extend(global.iter().cloned());
            rules.insert(name.clone(), own);
        }
        let deny = self
            .heal
            .deny
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("heal.deny {p:?} does not compile: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            rules,
            answers,
            deny,
        })
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, everything else replaces.
/// A layer that sets an agent's `resume` without its `resume_session` means its own resume: the
/// `resume_session` of the layers below (the shipped one, say) goes, since it would take over
/// once the agent names its session.
fn drop_outdated_resume_session(merged: &mut toml::Table, over: &toml::Table) {
    let (Some(toml::Value::Table(below)), Some(toml::Value::Table(above))) =
        (merged.get_mut("agents"), over.get("agents"))
    else {
        return;
    };
    for (name, profile) in above {
        let sets_resume_only = profile
            .as_table()
            .is_some_and(|t| t.contains_key("resume") && !t.contains_key("resume_session"));
        if let (true, Some(toml::Value::Table(b))) = (sets_resume_only, below.get_mut(name)) {
            b.remove("resume_session");
        }
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Values for an argv template's placeholders.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `{prompt}`: the whole prompt as one argument. Linux refuses a single argument longer
    /// than 128 KiB (and a command line of a few MiB): a start with a longer one fails with an
    /// error that says so; use `{prompt_file}` for prompts that large.
    pub prompt: String,
    /// `{prompt_file}`: the absolute path of a file holding the prompt,
    /// `<workdir>/logs/<task id>.prompt.md`, written before every start (for agents that read
    /// the task from a file, and for prompts too long for an argument).
    pub prompt_file: String,
    /// `{task_id}`
    pub task_id: String,
    /// `{issue}` (empty without one)
    pub issue: String,
    /// `{title}`
    pub title: String,
    /// `{worktree}`
    pub worktree: String,
    /// `{branch}`
    pub branch: String,
    /// `{attempt}` (1-based)
    pub attempt: String,
    /// `{switchyard}`: the path of the running switchyard binary (for the demo's fake agent).
    pub switchyard: String,
    /// `{claude_settings}`: a Claude Code settings file whose hooks report the agent's own
    /// events to switchyard (`claude --settings {claude_settings}`); see [`claude_settings`].
    pub claude_settings: String,
    /// `{final_message}`: the absolute path of `<workdir>/logs/<task id>.final.md`, where an agent
    /// that can (`codex exec --output-last-message {final_message}`) writes its last message.
    pub final_message: String,
    /// `{gemini_settings}`: a gemini-cli settings file whose hooks report the agent's own events
    /// to switchyard (given as `GEMINI_CLI_SYSTEM_SETTINGS_PATH`); see [`gemini_settings`].
    pub gemini_settings: String,
    /// `{gemini_home}`: a per-run directory given to gemini-cli as `GEMINI_CLI_HOME` (gemini
    /// 0.61 reads its user files from `$GEMINI_CLI_HOME/.gemini/` instead of `~/.gemini/`):
    /// `.gemini/settings.json` is the user's settings plus switchyard's hooks
    /// ([`gemini_user_settings`]), every other entry links to the user's own; see
    /// [`crate::host::channel_io::prepare_gemini_home`].
    pub gemini_home: String,
    /// `{gemini_telemetry}`: `<workdir>/run/gemini-telemetry-<task id>-a<attempt>.json`, given as
    /// `GEMINI_TELEMETRY_OUTFILE`; switchyard follows it for API errors (see
    /// [`crate::host::channel_io::follow_gemini_telemetry`]).
    pub gemini_telemetry: String,
    /// `{opencode_port}`: a free port on 127.0.0.1 for opencode's own server, whose event stream
    /// switchyard follows (see [`crate::host::channel_io::follow_opencode`]); empty when unused.
    pub opencode_port: String,
}

/// The Claude Code settings (JSON) that hand its lifecycle events to switchyard: each hook runs
/// `'<switchyard>' hook`, which passes the event's JSON to the run's server and never blocks or
/// fails the agent. Events: SessionStart, UserPromptSubmit, PreToolUse, PermissionRequest
/// (answered by switchyard's allow/deny policy through the hook's reply; the hook waits at most
/// 3 s, its timeout here is 10 s), Notification (`permission_prompt`, `idle_prompt`), Stop,
/// StopFailure. Format: Claude Code's hooks reference (`{"hooks": {EVENT: [{"matcher", "hooks":
/// [{"type": "command", "command", "timeout"}]}]}}`), checked against the hooks documentation for
/// Claude Code 2.1.x (PermissionRequest exists since 2.0.45); not against a live CLI here.
pub fn claude_settings(switchyard: &str) -> String {
    let command = format!("'{}' hook", switchyard.replace('\'', "'\\''"));
    let hook = serde_json::json!([{ "matcher": "*", "hooks": [{ "type": "command", "command": command, "timeout": 5 }] }]);
    let decide = serde_json::json!([{ "matcher": "*", "hooks": [{ "type": "command", "command": command, "timeout": 10 }] }]);
    let plain =
        serde_json::json!([{ "hooks": [{ "type": "command", "command": command, "timeout": 5 }] }]);
    serde_json::json!({
        "hooks": {
            "SessionStart": plain,
            "UserPromptSubmit": plain,
            "PreToolUse": hook,
            "PermissionRequest": decide,
            "Notification": plain,
            "Stop": plain,
            "StopFailure": plain,
        }
    })
    .to_string()
}

/// The gemini-cli settings (JSON) whose hooks run `'<switchyard>' hook --agent gemini`:
/// SessionStart, BeforeAgent, BeforeTool, AfterTool, AfterAgent, Notification. Given to gemini as
/// the user settings of the per-run `GEMINI_CLI_HOME` (merged into the user's own by
/// [`gemini_user_settings`]), or in older profiles as `GEMINI_CLI_SYSTEM_SETTINGS_PATH` (which
/// gemini 0.61 reads only from a root-owned path); neither the user's files nor the worktree
/// change. Format: gemini-cli's hooks reference (`{"hooks": {EVENT: [{"matcher", "hooks":
/// [{"type": "command", "command", "name", "timeout" (ms)}]}]}}`, and `hooksConfig.enabled`,
/// which stable releases need). Checked against gemini-cli 0.61.0 live (the harness records
/// SessionStart, BeforeAgent, BeforeTool, AfterTool and AfterAgent through it).
pub fn gemini_settings(switchyard: &str) -> String {
    let command = format!(
        "'{}' hook --agent gemini",
        switchyard.replace('\'', "'\\''")
    );
    let group = |matcher: Option<&str>| {
        let mut g = serde_json::json!({ "hooks": [{ "type": "command", "name": "switchyard", "command": command, "timeout": 5000 }] });
        if let Some(m) = matcher {
            g["matcher"] = m.into();
        }
        serde_json::json!([g])
    };
    serde_json::json!({
        // Stable releases run hooks only when this is set (gemini-cli docs/hooks/index.md).
        "hooksConfig": { "enabled": true },
        "hooks": {
            "SessionStart": group(None),
            "BeforeAgent": group(None),
            "BeforeTool": group(Some(".*")),
            "AfterTool": group(Some(".*")),
            "AfterAgent": group(None),
            "Notification": group(None),
        }
    })
    .to_string()
}

/// JSON with comments, as gemini-cli 0.61 reads its settings files (it strips `// …` and
/// `/* … */` outside strings with strip-json-comments before `JSON.parse`): the same text with
/// each comment replaced by spaces (newlines kept, so error positions stay right).
pub fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
            }
            ('/', Some('*')) => {
                chars.next();
                out.push_str("  ");
                let mut prev = ' ';
                for c in chars.by_ref() {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The user settings gemini-cli reads from the per-run `{gemini_home}`: `user` (the user's own
/// `~/.gemini/settings.json`, `None` when there is none) with switchyard's hooks
/// ([`gemini_settings`]) added after the user's own hooks for each event, and `hooksConfig.enabled`
/// set. Everything else of the user's is kept as it is. Err: the user's file is not a JSON object
/// (then gemini itself would refuse it).
pub fn gemini_user_settings(
    user: Option<serde_json::Value>,
    switchyard: &str,
) -> Result<serde_json::Value, String> {
    let ours: serde_json::Value =
        serde_json::from_str(&gemini_settings(switchyard)).map_err(|e| e.to_string())?;
    let mut merged = user.unwrap_or_else(|| serde_json::json!({}));
    let Some(obj) = merged.as_object_mut() else {
        return Err("it is not a JSON object".into());
    };
    let config = obj
        .entry("hooksConfig")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(c) = config.as_object_mut() {
        c.insert("enabled".into(), true.into());
    } else {
        *config = serde_json::json!({ "enabled": true });
    }
    let Some(hooks) = obj
        .entry("hooks")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
    else {
        return Err("its \"hooks\" is not an object".into());
    };
    for (event, groups) in ours["hooks"].as_object().into_iter().flatten() {
        let list = hooks
            .entry(event.clone())
            .or_insert_with(|| serde_json::json!([]));
        match list.as_array_mut() {
            Some(a) => a.extend(groups.as_array().into_iter().flatten().cloned()),
            None => return Err(format!("its \"hooks.{event}\" is not a list")),
        }
    }
    Ok(merged)
}

/// Fills an argv template. Each element is substituted on its own and stays ONE argv element,
/// whatever the values contain: no shell ever sees them.
pub fn render_argv(template: &[String], vars: &Vars) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            // One pass over the template so a value containing "{title}" is not expanded again.
            let mut out = String::with_capacity(arg.len());
            let mut rest = arg.as_str();
            while let Some(start) = rest.find('{') {
                out.push_str(&rest[..start]);
                let after = &rest[start..];
                let end = after.find('}').map(|e| e + 1).unwrap_or(after.len());
                let value = match &after[..end] {
                    "{prompt}" => Some(&vars.prompt),
                    "{prompt_file}" => Some(&vars.prompt_file),
                    "{task_id}" => Some(&vars.task_id),
                    "{issue}" => Some(&vars.issue),
                    "{title}" => Some(&vars.title),
                    "{worktree}" => Some(&vars.worktree),
                    "{branch}" => Some(&vars.branch),
                    "{attempt}" => Some(&vars.attempt),
                    "{switchyard}" => Some(&vars.switchyard),
                    "{claude_settings}" => Some(&vars.claude_settings),
                    "{final_message}" => Some(&vars.final_message),
                    "{gemini_settings}" => Some(&vars.gemini_settings),
                    "{gemini_home}" => Some(&vars.gemini_home),
                    "{gemini_telemetry}" => Some(&vars.gemini_telemetry),
                    "{opencode_port}" => Some(&vars.opencode_port),
                    _ => None,
                };
                match value {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&after[..end]),
                }
                rest = &after[end..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Fills the prompt template (`{id}`, `{issue}`, `{title}`).
pub fn render_prompt(template: &str, id: &str, issue: Option<u64>, title: &str) -> String {
    let issue = issue.map(|n| n.to_string()).unwrap_or_default();
    render_argv(
        &[template.replace("{id}", "{task_id}")],
        &Vars {
            task_id: id.into(),
            issue,
            title: title.into(),
            ..Default::default()
        },
    )
    .remove(0)
}

/// The prompt a worker of this role gets: the role's preamble, the task's lens and scope (when a
/// preamble is given), then `TASK:` and the prompt. An empty preamble gives the prompt alone.
/// `writes` is `None` for a read-only task (see [`crate::core::plan::read_only`]).
pub fn role_prompt(
    preamble: &str,
    lens: Option<&str>,
    writes: Option<&[String]>,
    prompt: &str,
) -> String {
    let preamble = preamble.trim_end();
    if preamble.is_empty() {
        return prompt.to_string();
    }
    let mut s = String::with_capacity(preamble.len() + prompt.len() + 64);
    s.push_str(preamble);
    s.push('\n');
    if let Some(lens) = lens.filter(|l| !l.trim().is_empty()) {
        s.push_str("LENS: ");
        s.push_str(lens.trim());
        s.push('\n');
    }
    match writes {
        None => s.push_str("SCOPE: read-only (do not edit or commit files)\n"),
        Some(w) if !w.is_empty() => {
            s.push_str("SCOPE: may edit ");
            s.push_str(&w.join(", "));
            s.push('\n');
        }
        Some(_) => {}
    }
    s.push_str("TASK: ");
    s.push_str(prompt);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_role_preamble_goes_before_the_prompt_with_lens_and_scope() {
        let p = role_prompt(
            "CONTEXT: WORKER\n",
            Some("security"),
            None,
            "Review src/a.rs",
        );
        assert_eq!(
            p,
            "CONTEXT: WORKER\nLENS: security\nSCOPE: read-only (do not edit or commit files)\nTASK: Review src/a.rs"
        );
        let w = vec!["src/a.rs".to_string()];
        let p = role_prompt("R", None, Some(&w), "Fix it");
        assert_eq!(p, "R\nSCOPE: may edit src/a.rs\nTASK: Fix it");
        assert_eq!(role_prompt("  \n", Some("x"), None, "Fix it"), "Fix it");
    }

    #[test]
    fn the_shipped_roles_are_the_guide_s_workers() {
        let c = Config::defaults();
        for r in ["implementer", "scout", "reviewer", "verifier", "researcher"] {
            assert!(c.roles[r].preamble.starts_with("CONTEXT: WORKER"), "{r}");
        }
        assert!(c.roles["reviewer"].preamble.contains("```json"));
        let e = Config::from_layers(&[
            ("defaults".into(), DEFAULTS.into()),
            ("mine".into(), "[roles.critic]\nprompt = \"x\"\n".into()),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `prompt`"), "{e}");
    }

    #[test]
    fn scrollback_in_memory_is_at_most_the_readable_scrollback() {
        let c = Config::defaults();
        assert_eq!((c.scrollback_in_memory(), c.scrollback_lines), (1000, 5000));
        let small = Config::from_layers(&[
            ("defaults".into(), DEFAULTS.into()),
            ("mine".into(), "scrollback_lines = 300\n".into()),
        ])
        .unwrap();
        assert_eq!(small.scrollback_in_memory(), 300, "all of it in memory");
    }

    #[test]
    fn generated_agent_settings_run_switchyard_hook_for_each_event() {
        let c: serde_json::Value =
            serde_json::from_str(&super::claude_settings("/opt/sy'x/switchyard")).unwrap();
        let pr = &c["hooks"]["PermissionRequest"][0]["hooks"][0];
        assert_eq!(pr["command"], "'/opt/sy'\\''x/switchyard' hook");
        assert!(
            pr["timeout"].as_u64().unwrap() * 1000
                > crate::host::channel_io::DECISION_WAIT.as_millis() as u64,
            "the hook's timeout outlasts switchyard's decision wait"
        );
        for e in ["Stop", "StopFailure", "Notification", "UserPromptSubmit"] {
            assert!(c["hooks"][e].is_array(), "{e}");
        }
        let g: serde_json::Value =
            serde_json::from_str(&super::gemini_settings("/bin/switchyard")).unwrap();
        assert_eq!(g["hooksConfig"]["enabled"], true);
        for e in ["BeforeAgent", "BeforeTool", "AfterAgent", "Notification"] {
            assert_eq!(
                g["hooks"][e][0]["hooks"][0]["command"], "'/bin/switchyard' hook --agent gemini",
                "{e}"
            );
        }
    }

    #[test]
    fn installed_versions_are_compared_by_number() {
        assert_eq!(
            compare_versions("codex-cli 0.169.0\n", Some("codex-cli 0.169.0")),
            VersionCheck::Same("0.169.0".into())
        );
        assert_eq!(
            compare_versions("2.0.14 (Claude Code)", Some("Claude Code 2.1.330")),
            VersionCheck::Differs {
                found: "2.0.14".into(),
                checked: "2.1.330".into()
            }
        );
        assert_eq!(
            compare_versions("dev build", Some("x 1.0.0")),
            VersionCheck::Unknown
        );
        assert_eq!(compare_versions("1.0.0", None), VersionCheck::Unknown);
    }

    use super::*;

    #[test]
    fn shipped_defaults_load_and_compile() {
        let c = Config::defaults();
        assert_eq!(c.max_parallel, 4);
        assert!(c.agents.contains_key("codex"));
        assert!(c.agents.contains_key("shell"));
        let compiled = c.compile().unwrap();
        assert!(!compiled.deny.is_empty());
        assert!(compiled
            .deny
            .iter()
            .any(|d| d.is_match("Overwrite existing file? (y/n)")));
        assert!(compiled.answers["codex"]
            .iter()
            .any(|(_, re, _, _)| re.is_match("Apply these edits? (y/n)")));
    }

    #[test]
    fn later_layers_override_and_merge_tables() {
        let local = r#"
            max_parallel = 2
            [heal]
            stall_ms = 1000
            [agents.mine]
            command = ["my-agent", "{prompt}"]
        "#;
        let c = Config::from_layers(&[
            ("defaults".into(), DEFAULTS.into()),
            ("local.toml".into(), local.into()),
        ])
        .unwrap();
        assert_eq!(c.max_parallel, 2);
        assert_eq!(c.heal.stall_ms, 1000);
        assert_eq!(c.heal.max_attempts, Config::defaults().heal.max_attempts);
        assert!(c.agents.contains_key("mine") && c.agents.contains_key("codex"));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = Config::from_layers(&[
            ("defaults".into(), DEFAULTS.into()),
            ("local.toml".into(), "max_paralel = 3".into()),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("local.toml") && e.contains("max_paralel"), "{e}");
        let e = Config::from_layers(&[("bad.toml".into(), "x = [".into())])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.toml: not valid TOML"), "{e}");
        let e = Config::from_layers(&[
            ("defaults".into(), DEFAULTS.into()),
            (
                "local.toml".into(),
                "[[agents.codex.rules]]\nname='x'\nverdict='error'\npattern='('".into(),
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[agents.codex] rule \"x\": pattern does not compile"),
            "{e}"
        );
    }

    #[test]
    fn hostile_values_stay_one_argv_element() {
        let title = "'; touch /tmp/pwned; '$(reboot) {prompt}";
        let argv = render_argv(
            &[
                "agent".into(),
                "--yolo".into(),
                "{prompt}".into(),
                "--id={task_id}".into(),
            ],
            &Vars {
                prompt: format!("Fix: {title}"),
                task_id: "t1".into(),
                ..Default::default()
            },
        );
        assert_eq!(argv.len(), 4);
        assert_eq!(argv[2], format!("Fix: {title}"));
        assert_eq!(argv[3], "--id=t1");
    }

    #[test]
    fn json_comments_are_stripped_outside_strings() {
        let text =
            "{\n  // the theme\n  \"ui\": {\"theme\": \"a//b /* c */\"}, /* x\n y */ \"n\": 1\n}";
        let v: serde_json::Value = serde_json::from_str(&super::strip_json_comments(text)).unwrap();
        assert_eq!(v["ui"]["theme"], "a//b /* c */");
        assert_eq!(v["n"], 1);
        assert_eq!(super::strip_json_comments("\"\\\"//\""), "\"\\\"//\"");
    }

    #[test]
    fn a_layer_with_its_own_resume_drops_the_resume_session_below() {
        let with = |user: &str| {
            Config::from_layers(&[
                ("defaults".into(), DEFAULTS.into()),
                ("user.toml".into(), user.into()),
            ])
            .unwrap()
            .agents["opencode"]
                .resume_session
                .clone()
        };
        assert!(with("").is_some_and(|r| r.iter().any(|a| a == "{session_id}")));
        assert!(with("[agents.opencode]\nnudge = \"go on\"\n").is_some());
        assert_eq!(
            with(
                "[agents.opencode]\nresume = [\"opencode\", \"--continue\", \"--model\", \"m\"]\n"
            ),
            None
        );
        assert_eq!(
            with(
                "[agents.opencode]\nresume = [\"a\"]\nresume_session = [\"b\", \"{session_id}\"]\n"
            ),
            Some(vec!["b".to_string(), "{session_id}".to_string()])
        );
    }

    #[test]
    fn unknown_placeholders_are_left_alone() {
        let argv = render_argv(
            &["{nope} {task_id} {".into()],
            &Vars {
                task_id: "a".into(),
                ..Default::default()
            },
        );
        assert_eq!(argv, vec!["{nope} a {"]);
        assert_eq!(
            render_prompt("Fix #{issue}: {title} ({id})", "t1", Some(7), "X"),
            "Fix #7: X (t1)"
        );
    }

    #[test]
    fn prompt_file_expands_to_the_path_not_the_prompt() {
        let argv = render_argv(
            &["agent".into(), "Read {prompt_file}; not {prompt}".into()],
            &Vars {
                prompt: "P".into(),
                prompt_file: "/w/logs/t1.prompt.md".into(),
                ..Default::default()
            },
        );
        assert_eq!(argv, vec!["agent", "Read /w/logs/t1.prompt.md; not P"]);
    }
}
