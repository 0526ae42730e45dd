//! Verdicts from a worker's screen, its timings and process facts, each with the evidence that
//! produced it.
//!
//! The classifier is a pure function: [`classify`] takes a [`ScreenSnapshot`] (the full emulated
//! screen, whatever the UI shows), a [`Timing`] (all times in ms on the engine's clock) and the
//! profile's compiled [`Rule`]s. A screen rule only fires once output has been quiet for the rule's
//! `quiet_ms`, and only on the rows of its region (by default the cursor's row and its
//! neighbours), so the word "error:" scrolling past in a log is not an error.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a worker is doing, as far as switchyard can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Producing output or working.
    Running,
    /// A prompt waits for an answer: y/n, a trust dialog, a menu, a login.
    WaitingInput,
    /// The agent sits at its own empty prompt.
    Idle,
    /// No output, no screen change and no worktree activity for the stall threshold.
    Stalled,
    /// The screen shows a failure near the cursor, with output quiet.
    Error,
    /// The screen says the work is finished.
    Done,
    /// The agent says it hit a rate limit (its tasks pause until the reset time it printed).
    RateLimited,
    /// The process exited with this status.
    Exited(i32),
}

impl VerdictKind {
    /// snake_case name, with the code for `exited(code)`.
    pub fn label(self) -> String {
        match self {
            VerdictKind::Running => "running".into(),
            VerdictKind::WaitingInput => "waiting_input".into(),
            VerdictKind::Idle => "idle".into(),
            VerdictKind::Stalled => "stalled".into(),
            VerdictKind::Error => "error".into(),
            VerdictKind::Done => "done".into(),
            VerdictKind::RateLimited => "rate_limited".into(),
            VerdictKind::Exited(c) => format!("exited({c})"),
        }
    }
}

/// Why a verdict was reached: the rule (or signal) and the screen line (or measurement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Rule name (from the config) or signal name (`exit-status`, `silence`, `output`).
    pub rule: String,
    /// The matched screen line, trimmed, or a description of the signal.
    pub line: String,
    /// The screen row (0-based) of the matched line; `None` for signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

/// A verdict with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// What the worker is doing.
    pub kind: VerdictKind,
    /// What produced the verdict.
    pub evidence: Evidence,
}

impl Verdict {
    /// A verdict from a signal rather than a screen rule.
    pub fn signal(kind: VerdictKind, rule: &str, line: impl Into<String>) -> Verdict {
        Verdict {
            kind,
            evidence: Evidence {
                rule: rule.into(),
                line: line.into(),
                row: None,
            },
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}",
            self.kind.label(),
            self.evidence.rule,
            self.evidence.line
        )
    }
}

/// Which rows of the screen a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The cursor's row and the non-blank rows just above and below it.
    Cursor,
    /// The last N non-blank rows of the screen.
    LastLines(usize),
    /// Every row.
    Screen,
}

impl Region {
    /// Parses `cursor`, `screen` or `last:N`.
    pub fn parse(s: &str) -> Result<Region, String> {
        match s {
            "cursor" => Ok(Region::Cursor),
            "screen" => Ok(Region::Screen),
            _ => s
                .strip_prefix("last:")
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .map(Region::LastLines)
                .ok_or_else(|| {
                    format!("unknown region {s:?}: use \"cursor\", \"screen\" or \"last:N\"")
                }),
        }
    }
}

/// What a rule's pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Rows of the screen region.
    Screen,
    /// The window title.
    Title,
    /// The agent's announced state (OSC 7501).
    AgentState,
}

/// A rule as written in the config (`[[rules]]` or `[[agents.NAME.rules]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Name shown as evidence.
    pub name: String,
    /// Verdict when it matches: `waiting_input`, `idle`, `error`, `done` or `running`.
    pub verdict: VerdictKind,
    /// A regex (Rust `regex` syntax) matched against each row of the region.
    pub pattern: String,
    /// `cursor` (default), `screen` or `last:N`; only for `source = "screen"`.
    #[serde(default = "default_region")]
    pub region: String,
    /// What the pattern is matched against: `screen` (default; rows of the region), `title`
    /// (the window title, OSC 0/2) or `agent_state` (the agent's own state announcement,
    /// OSC 7501, e.g. `state=blocked:app=codex:kind=permission`).
    #[serde(default = "default_source")]
    pub source: String,
    /// Output must have been quiet this long (ms) before the rule counts. Default 500.
    #[serde(default = "default_quiet_ms")]
    pub quiet_ms: u64,
    /// The match must persist this long (ms) before a heal action acts on it. Default 0. For
    /// agents that animate a spinner while failing (output is never quiet), use `quiet_ms = 0`
    /// with a hold instead.
    #[serde(default)]
    pub hold_ms: u64,
    /// For a `rate_limited` rule: the line says the agent is retrying by itself (claude's
    /// "retrying in 23s · attempt 3/10", opencode's "[retrying in 1s attempt #4]"). Its worker is
    /// left alone (no keys, no restart) while the agent's other tasks wait; only a rate limit
    /// the agent gave up on pauses and resumes it. Default false.
    #[serde(default)]
    pub retrying: bool,
}

fn default_source() -> String {
    "screen".into()
}
fn default_region() -> String {
    "cursor".into()
}
fn default_quiet_ms() -> u64 {
    500
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name shown as evidence.
    pub name: String,
    /// Verdict when it matches.
    pub verdict: VerdictKind,
    /// Compiled pattern.
    pub re: Regex,
    /// Rows it looks at (screen rules).
    pub region: Region,
    /// What it matches.
    pub source: Source,
    /// Required quiet time before it counts, ms.
    pub quiet_ms: u64,
    /// How long the match must persist before a heal action acts, ms.
    pub hold_ms: u64,
    /// A `rate_limited` match means the agent retries by itself (see [`RuleSpec::retrying`]).
    pub retrying: bool,
}

impl Rule {
    /// Compiles a rule. Errors name the rule and say what is wrong with the pattern or region.
    pub fn compile(spec: &RuleSpec) -> Result<Rule, String> {
        if matches!(spec.verdict, VerdictKind::Exited(_) | VerdictKind::Stalled) {
            return Err(format!(
                "rule {:?}: verdict {} comes from signals, not screen rules; use waiting_input, idle, error, done or running",
                spec.name,
                spec.verdict.label()
            ));
        }
        let re = Regex::new(&spec.pattern)
            .map_err(|e| format!("rule {:?}: pattern does not compile: {e}", spec.name))?;
        let region =
            Region::parse(&spec.region).map_err(|e| format!("rule {:?}: {e}", spec.name))?;
        let source = match spec.source.as_str() {
            "screen" => Source::Screen,
            "title" => Source::Title,
            "agent_state" => Source::AgentState,
            other => {
                return Err(format!(
                "rule {:?}: unknown source {other:?}: use \"screen\", \"title\" or \"agent_state\"",
                spec.name
            ))
            }
        };
        Ok(Rule {
            name: spec.name.clone(),
            verdict: spec.verdict,
            re,
            region,
            source,
            quiet_ms: spec.quiet_ms,
            hold_ms: spec.hold_ms,
            retrying: spec.retrying,
        })
    }
}

/// The visible screen of a worker as plain text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScreenSnapshot {
    /// Every row, left to right, trailing blanks trimmed. Length = the PTY's rows.
    pub rows: Vec<String>,
    /// Cursor row (0-based).
    pub cursor_row: usize,
    /// Cursor column (0-based).
    pub cursor_col: usize,
    /// True while the child uses the alternate screen (a full-screen TUI).
    pub alternate: bool,
    /// The window title the child set (OSC 0/2), if any.
    pub title: String,
    /// The state the agent announced with its own escape sequence (OSC 7501), if any.
    pub agent_state: Option<String>,
    /// The terminal's foreground process is blocked reading the terminal (seen by the PTY's
    /// owner in /proc, not on screen); `None` when it is not or the platform cannot tell.
    pub reading: Option<TerminalRead>,
    /// The program in the terminal's foreground (its process group's leader), read from /proc
    /// when output pauses; `None` before that or where the platform cannot tell.
    pub foreground: Option<Foreground>,
    /// What the program last said with OSC 133 prompt marks, OSC 9;4 progress and OSC 9 / 777
    /// notifications.
    pub marks: Marks,
}

/// The program in a terminal's foreground (see [`crate::host::procfs::foreground`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Foreground {
    /// Process id of the foreground process group's leader.
    pub pid: u32,
    /// Its name (`/proc/<pid>/comm`), e.g. `git`, `rm`, `node`.
    pub process: String,
    /// It is the worker's own process (nothing else has taken the terminal's foreground).
    pub own: bool,
}

/// A shell's OSC 133 prompt mark (FinalTerm semantic prompts, as emitted by the shell
/// integrations of iTerm2, WezTerm, kitty, VS Code and Windows Terminal):
/// `ESC]133;A` prompt starts, `;B` command input starts, `;C` command output starts,
/// `;D[;exit]` command finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptMark {
    /// `A`: the shell is drawing its prompt.
    Prompt,
    /// `B`: the prompt is drawn; the person types the command here.
    Input,
    /// `C`: the command runs and prints its output.
    Output,
    /// `D`: the command finished, with its exit status when the shell gave one.
    Finished(Option<i32>),
}

impl PromptMark {
    /// Reads the parameters after `133` (`["D", "1"]`); `None` for anything else. Extra
    /// `key=value` parameters (`aid=…`, `cl=m`) are ignored.
    pub fn parse<S: AsRef<str>>(params: &[S]) -> Option<PromptMark> {
        match params.first()?.as_ref() {
            "A" | "P" => Some(PromptMark::Prompt),
            "B" => Some(PromptMark::Input),
            "C" => Some(PromptMark::Output),
            "D" => Some(PromptMark::Finished(
                params.get(1).and_then(|c| c.as_ref().parse().ok()),
            )),
            _ => None,
        }
    }

    /// True when the shell sits at its prompt (marks A, B and D).
    pub fn at_prompt(self) -> bool {
        !matches!(self, PromptMark::Output)
    }
}

/// A progress report, OSC 9;4 (ConEmu, Windows Terminal, Ghostty; emitted by winget, systemd,
/// Claude Code and others): `ESC]9;4;STATE;PERCENT BEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    /// 1 normal, 2 error, 3 indeterminate, 4 paused/warning (0, "remove", is stored as no
    /// progress at all).
    pub state: u8,
    /// Percent done (0–100), when the state carries one.
    pub percent: Option<u8>,
}

impl Progress {
    /// Reads the parameters after `9;4` (`["1", "42"]`): `Ok(None)` for state 0 (progress
    /// removed), `Err(())` for anything that is not a progress report.
    #[allow(clippy::result_unit_err)]
    pub fn parse<S: AsRef<str>>(params: &[S]) -> Result<Option<Progress>, ()> {
        let state: u8 = params
            .first()
            .and_then(|s| s.as_ref().parse().ok())
            .ok_or(())?;
        let percent = params
            .get(1)
            .and_then(|p| p.as_ref().parse::<u8>().ok())
            .map(|p| p.min(100));
        match state {
            0 => Ok(None),
            1..=4 => Ok(Some(Progress { state, percent })),
            _ => Err(()),
        }
    }

    /// The report for people: `42%`, `error at 42%`, `indeterminate`, `paused at 42%`.
    pub fn describe(&self) -> String {
        let pct = self.percent.map(|p| format!("{p}%"));
        match (self.state, pct) {
            (3, _) => "indeterminate".into(),
            (2, Some(p)) => format!("error at {p}"),
            (2, None) => "error".into(),
            (4, Some(p)) => format!("paused at {p}"),
            (4, None) => "paused".into(),
            (_, Some(p)) => p,
            (_, None) => "busy".into(),
        }
    }
}

/// A desktop notification the program sent (OSC 9 text, OSC 777 `notify`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Notice {
    /// Its text (`title: body` for OSC 777).
    pub text: String,
    /// When it arrived, Unix ms (the same clock as the output times).
    pub at: u64,
}

/// The latest of each terminal mark a program sent (kept by the worker's emulator callbacks).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Marks {
    /// The last OSC 133 prompt mark.
    pub prompt: Option<PromptMark>,
    /// The exit status the last OSC 133 `D` mark gave (kept while the next prompt is drawn).
    pub last_exit: Option<i32>,
    /// The current OSC 9;4 progress (`None` once removed with state 0).
    pub progress: Option<Progress>,
    /// The last notification.
    pub notification: Option<Notice>,
}

impl Marks {
    /// Each mark in words for `explain`: (OSC 133, OSC 9;4, notification).
    pub fn describe(&self) -> (String, String, String) {
        let prompt = match self.prompt {
            None => "—".to_string(),
            Some(PromptMark::Prompt) => "A: prompt shown".into(),
            Some(PromptMark::Input) => "B: at the prompt, command input".into(),
            Some(PromptMark::Output) => "C: a command runs".into(),
            Some(PromptMark::Finished(Some(c))) => format!("D: command finished, exit {c}"),
            Some(PromptMark::Finished(None)) => "D: command finished".into(),
        };
        let prompt = match (self.last_exit, self.prompt) {
            (Some(c), Some(PromptMark::Prompt | PromptMark::Input)) => {
                format!("{prompt} (last command exited {c})")
            }
            _ => prompt,
        };
        let progress = self
            .progress
            .map_or_else(|| "—".to_string(), |p| p.describe());
        let note = self
            .notification
            .as_ref()
            .map_or_else(|| "—".to_string(), |n| n.text.clone());
        (prompt, progress, note)
    }
}

/// A process blocked reading its terminal (see [`crate::host::procfs::terminal_reader`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TerminalRead {
    /// Its name (`/proc/<pid>/comm`), e.g. `rm`, `ssh`, `bash`.
    pub process: String,
    /// It is the worker's own process and a shell: a shell at its prompt.
    pub shell: bool,
}

/// What an agent said about itself through its own channel (a hook, a notify program, a server
/// event), the most authoritative word. Read by [`crate::core::channels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// What it means: `running`, `waiting_input`, `idle`, `error` or `rate_limited`.
    pub kind: VerdictKind,
    /// The event's name as the agent sent it (e.g. `Stop`, `Notification`, `session.status`).
    pub event: String,
    /// A line for people (the notification's message, or a description).
    pub line: String,
    /// The channel it came through, e.g. `claude hooks` (see [`crate::core::channels::Channel::label`]).
    pub channel: String,
    /// For a permission request: what is asked (`Bash: git commit -m x`), judged by the
    /// allow/deny policy.
    pub permission: Option<String>,
    /// Set when switchyard answered the request through the channel itself (the answer given).
    pub answered: Option<String>,
    /// When the sender read the event (Unix µs, increasing per sender); `None` when unknown. A
    /// report sent before the one the engine holds is stale: it counts as activity, never as
    /// the agent's latest word.
    pub sent_us: Option<u64>,
    /// The agent's own session (conversation) id the event names, when it looks like one (see
    /// [`crate::core::channels::session_id`]): opencode's `properties.sessionID`. The engine keeps
    /// the first of each attempt for `{session_id}` in the profile's `resume_session`.
    pub session: Option<String>,
}

/// Reads a Claude Code hook event; see [`crate::core::channels::claude`].
pub fn report_from_claude_hook(event: &serde_json::Value) -> Option<AgentReport> {
    crate::core::channels::claude(event)
}

/// True when a line says the provider refused for a rate limit or quota (HTTP 429, "rate limit
/// reached", "usage limit", "quota exceeded", RESOURCE_EXHAUSTED).
pub fn is_rate_limit(line: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)(\b429\b|too many requests|rate.?limit(ed)?\b.*(reached|exceeded|hit)|(rate|usage) limit|quota exceeded|resource_exhausted)")
            .expect("a valid pattern")
    })
    .is_match(line)
}

/// Why an agent that exited failed, when its last screen says something switchyard recognises
/// (a fix for people, in one line). Checked against claude 2.1.330 (as root), codex-cli 0.169
/// and git 2.x messages.
pub fn exit_hint(tail: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            r"cannot be used with root/sudo privileges",
            "claude refuses --dangerously-skip-permissions as root: run switchyard as a normal user, or (inside a real sandbox only) add IS_SANDBOX = \"1\" to the profile's env",
        ),
        (
            r"(?i)not logged in|please run /login|run `?codex login",
            "the agent is not logged in: run it once by hand in a terminal and log in",
        ),
        (
            r"(?i)index\.lock.*(permission denied|read-only)|(permission denied|read-only file system).*\.git/",
            "the agent could not write the worktree's git index (codex without --yolo runs in a sandbox that cannot write .git)",
        ),
        (
            r"(?i)command not found|no such file or directory \(os error 2\)",
            "a command the agent needs is not installed or not on PATH",
        ),
    ];
    HINTS.iter().find_map(|(p, hint)| {
        Regex::new(p)
            .expect("a valid pattern")
            .is_match(tail)
            .then_some(*hint)
    })
}

/// Output quiet this long (ms) before a terminal read counts as waiting for input (a program
/// that prints and reads in a loop is not waiting on a person).
pub const TERMINAL_READ_QUIET_MS: u64 = 300;

impl ScreenSnapshot {
    /// A snapshot from text lines with the cursor at the end of the last line (for tests).
    pub fn from_text(text: &str) -> ScreenSnapshot {
        let rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        let cursor_row = rows.len().saturating_sub(1);
        let cursor_col = rows.last().map_or(0, |r| r.chars().count());
        ScreenSnapshot {
            rows,
            cursor_row,
            cursor_col,
            ..Default::default()
        }
    }

    /// The non-blank rows from `n` rows above `row` to `n` rows below it: the dialog a prompt is
    /// judged in (a menu's options sit above its "Press enter" line; an approval's command sits
    /// below its question).
    pub fn context_around(&self, row: usize, n: usize) -> Vec<&str> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        let r = row.min(self.rows.len() - 1);
        let end = (r + n + 1).min(self.rows.len());
        self.rows[r.saturating_sub(n)..end]
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// The last `n` non-blank rows, joined with newlines (the error tail given to a restart).
    pub fn tail(&self, n: usize) -> String {
        let rows: Vec<&str> = self
            .rows
            .iter()
            .map(|r| r.as_str())
            .filter(|r| !r.trim().is_empty())
            .collect();
        rows[rows.len().saturating_sub(n)..].join("\n")
    }

    /// Row indices a region covers, in top-to-bottom order.
    fn region_rows(&self, region: Region) -> Vec<usize> {
        let nonblank = |i: &usize| !self.rows[*i].trim().is_empty();
        match region {
            Region::Screen => (0..self.rows.len()).filter(nonblank).collect(),
            Region::LastLines(n) => {
                let mut v: Vec<usize> = (0..self.rows.len())
                    .rev()
                    .filter(nonblank)
                    .take(n)
                    .collect();
                v.reverse();
                v
            }
            Region::Cursor => {
                if self.rows.is_empty() {
                    return Vec::new();
                }
                let c = self.cursor_row.min(self.rows.len() - 1);
                let mut v = Vec::new();
                if let Some(above) = (0..c).rev().find(nonblank) {
                    v.push(above);
                }
                v.push(c);
                if let Some(below) = (c + 1..self.rows.len()).find(nonblank) {
                    v.push(below);
                }
                v
            }
        }
    }
}

/// Times the classifier needs, in ms on the engine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Now.
    pub now: u64,
    /// When the worker started.
    pub started_at: u64,
    /// When the last byte of output arrived.
    pub last_output_at: u64,
    /// When the screen text last changed.
    pub last_change_at: u64,
    /// When a file in the worktree last changed (or a commit was made).
    pub last_activity_at: u64,
}

impl Timing {
    /// ms since the last byte of output.
    pub fn quiet_ms(&self) -> u64 {
        self.now
            .saturating_sub(self.last_output_at.max(self.started_at))
    }

    /// ms since anything happened: output, screen change or worktree activity.
    pub fn idle_ms(&self) -> u64 {
        let last = self
            .last_output_at
            .max(self.last_change_at)
            .max(self.last_activity_at)
            .max(self.started_at);
        self.now.saturating_sub(last)
    }
}

/// Classifies a live worker (one that has not exited).
///
/// The channels, most authoritative first (the agent's own channel — hooks, notify, server
/// events — comes before all of these; see `engine::heal`):
/// 1. the profile's rules in the profile's order: agent state (OSC 7501) and window-title rules,
///    and screen rules; the first whose quiet time has passed and whose pattern matches wins,
///    with that rule and row as evidence;
/// 2. the program's own terminal marks ([`Marks`]), after [`TERMINAL_READ_QUIET_MS`] of quiet:
///    OSC 9;4 state 2 is `error`, a fresh OSC 9 / 777 notification is the end of a turn (`idle`)
///    or a request (`waiting_input`), an OSC 133 prompt mark (A, B, D) is a shell at its prompt
///    (`idle`);
/// 3. terminal read (/proc): the foreground process blocked reading the terminal is
///    `waiting_input`, or `idle` for an interactive shell at its prompt;
/// 4. the cursor right after a question or field prompt after [`QUESTION_QUIET_MS`] of quiet
///    ([`question_at_cursor`]) is `waiting_input`;
/// 5. nothing happening for `stall_ms` is `stalled` (evidence: the silence), otherwise `running`
///    (evidence: OSC 9;4 progress, an OSC 133 running command, or the last output).
///
/// A screen rule whose pattern is on screen but whose quiet time has not passed yet holds back
/// 2–4: it knows the screen better.
pub fn classify(
    screen: &ScreenSnapshot,
    timing: &Timing,
    rules: &[Rule],
    stall_ms: u64,
) -> Verdict {
    classify_with(screen, timing, rules, stall_ms, None)
}

/// Text switchyard itself gave the agent (the whole prompt of a restart: role preamble, error
/// context, task), which the agent may echo on its screen: error and rate-limit rules never match
/// a row that is part of it, so the context cannot re-trigger the rule that caused the restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Echo {
    /// The prompt, letters and digits only, lowercased.
    text: String,
    /// The opening (first [`Echo::OPENING`] letters and digits) of each of the prompt's lines
    /// that has at least [`Echo::MIN_CHARS`], at most [`Echo::MAX_OPENINGS`] of them.
    openings: Vec<String>,
}

impl Echo {
    /// Rows shorter than this (letters and digits) are never taken for an echo.
    pub const MIN_CHARS: usize = 12;
    /// Letters and digits of a line's opening.
    pub const OPENING: usize = 32;
    /// Most line openings kept (a prompt of thousands of lines keeps its first ones).
    pub const MAX_OPENINGS: usize = 256;

    /// The echo of the given prompt text.
    pub fn new(prompt: &str) -> Echo {
        let mut openings: Vec<String> = Vec::new();
        for line in prompt.lines() {
            let o: String = normalize(line).chars().take(Echo::OPENING).collect();
            if o.len() >= Echo::MIN_CHARS && !openings.contains(&o) {
                openings.push(o);
                if openings.len() == Echo::MAX_OPENINGS {
                    break;
                }
            }
        }
        Echo {
            text: normalize(prompt),
            openings,
        }
    }

    /// True when the row (letters and digits only) is part of the prompt, or holds the opening
    /// of one of its lines after the agent's own decoration (`│ You  TASK: Previous attempt 1
    /// failed (…`: the label and the frame are the agent's, the rest is the prompt's).
    pub fn covers(&self, row: &str) -> bool {
        let r = normalize(row);
        r.len() >= Echo::MIN_CHARS
            && (self.text.contains(&r) || self.openings.iter().any(|o| r.contains(o.as_str())))
    }
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`classify`], with rows that echo switchyard's own context ignored by error and rate-limit
/// rules.
pub fn classify_with(
    screen: &ScreenSnapshot,
    timing: &Timing,
    rules: &[Rule],
    stall_ms: u64,
    echo: Option<&Echo>,
) -> Verdict {
    let quiet = timing.quiet_ms();
    // A rule whose pattern is on screen but whose quiet time has not passed yet knows better
    // than the terminal-read signal: wait for it.
    let mut rule_pending = false;
    for rule in rules {
        if quiet < rule.quiet_ms {
            if !rule_pending && rule.source == Source::Screen {
                rule_pending = screen
                    .region_rows(rule.region)
                    .into_iter()
                    .any(|i| rule.re.is_match(&screen.rows[i]));
            }
            continue;
        }
        let signal = match rule.source {
            Source::Screen => None,
            Source::Title => Some(("title", Some(screen.title.as_str()))),
            Source::AgentState => Some(("OSC 7501", screen.agent_state.as_deref())),
        };
        if let Some((what, value)) = signal {
            if let Some(v) = value.filter(|v| rule.re.is_match(v)) {
                return Verdict {
                    kind: rule.verdict,
                    evidence: Evidence {
                        rule: rule.name.clone(),
                        line: format!("{what} {v}"),
                        row: None,
                    },
                };
            }
            continue;
        }
        let echoes = matches!(rule.verdict, VerdictKind::Error | VerdictKind::RateLimited);
        for i in screen.region_rows(rule.region) {
            let row = &screen.rows[i];
            if rule.re.is_match(row) && !(echoes && echo.is_some_and(|e| e.covers(row))) {
                return Verdict {
                    kind: rule.verdict,
                    evidence: Evidence {
                        rule: rule.name.clone(),
                        line: row.trim().to_string(),
                        row: Some(i),
                    },
                };
            }
        }
    }
    // The program's own marks: a shell at its OSC 133 prompt, an OSC 9;4 error, a fresh
    // notification (the end of a turn, or a request for approval).
    if !rule_pending {
        if let Some(v) = from_marks(screen, timing) {
            return v;
        }
    }
    if let Some(r) = screen
        .reading
        .as_ref()
        .filter(|_| quiet >= TERMINAL_READ_QUIET_MS && !rule_pending)
    {
        let at_cursor = screen
            .rows
            .get(screen.cursor_row)
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        return if r.shell {
            Verdict {
                kind: VerdictKind::Idle,
                evidence: Evidence {
                    rule: "terminal-read".into(),
                    line: format!("{} waits at its prompt: {at_cursor}", r.process),
                    row: Some(screen.cursor_row),
                },
            }
        } else {
            Verdict {
                kind: VerdictKind::WaitingInput,
                evidence: Evidence {
                    rule: "terminal-read".into(),
                    line: if at_cursor.is_empty() {
                        format!("{} waits for input", r.process)
                    } else {
                        at_cursor
                    },
                    row: Some(screen.cursor_row),
                },
            }
        };
    }
    let progress = screen.marks.progress.filter(|p| p.state != 2);
    if !rule_pending && progress.is_none() && quiet >= QUESTION_QUIET_MS {
        if let Some(row) = question_at_cursor(screen) {
            return Verdict {
                kind: VerdictKind::WaitingInput,
                evidence: Evidence {
                    rule: "cursor-question".into(),
                    line: format!("cursor after a question: {row}"),
                    row: Some(screen.cursor_row),
                },
            };
        }
    }
    let idle = timing.idle_ms();
    if idle >= stall_ms {
        return Verdict::signal(
            VerdictKind::Stalled,
            "silence",
            format!(
                "no output, screen change, file change or CPU use for {}s",
                idle / 1000
            ),
        );
    }
    if let Some(p) = progress {
        return Verdict::signal(
            VerdictKind::Running,
            "osc-progress",
            format!("OSC 9;4 progress {}", p.describe()),
        );
    }
    if screen.marks.prompt == Some(PromptMark::Output) {
        return Verdict::signal(
            VerdictKind::Running,
            "osc-133",
            format!(
                "OSC 133: a command runs (last output {:.1}s ago)",
                quiet as f64 / 1000.0
            ),
        );
    }
    Verdict::signal(
        VerdictKind::Running,
        "output",
        format!("last output {:.1}s ago", quiet as f64 / 1000.0),
    )
}

/// Output quiet this long (ms) before a cursor sitting right after a question counts as a
/// prompt ([`question_at_cursor`]); longer than [`TERMINAL_READ_QUIET_MS`], since the text is
/// all there is to go on.
pub const QUESTION_QUIET_MS: u64 = 1_500;

/// A notification counts as the latest word while no output came more than this long (ms)
/// after it (an agent redraws its screen right after notifying).
pub const NOTICE_FRESH_MS: u64 = 1_000;

/// What the program's own terminal marks say, once output is quiet: a shell at its OSC 133
/// prompt is `idle`; OSC 9;4 state 2 is `error`; a notification with no output after it is the
/// end of a turn (`idle`), or `waiting_input` when it asks for approval or permission (codex
/// 0.169: `Approval requested: <command>`; claude: `Claude needs your permission to use Bash`).
fn from_marks(screen: &ScreenSnapshot, timing: &Timing) -> Option<Verdict> {
    let quiet = timing.quiet_ms();
    if quiet < TERMINAL_READ_QUIET_MS {
        return None;
    }
    let m = &screen.marks;
    if let Some(p) = m.progress.filter(|p| p.state == 2) {
        return Some(Verdict::signal(
            VerdictKind::Error,
            "osc-progress",
            format!("OSC 9;4 progress {}", p.describe()),
        ));
    }
    if let Some(n) = m
        .notification
        .as_ref()
        .filter(|n| n.at + NOTICE_FRESH_MS >= timing.last_output_at)
    {
        static ASKS: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let asks = ASKS
            .get_or_init(|| {
                Regex::new(r"(?i)(approv|permission|needs? your (input|attention|answer)|confirm)")
                    .expect("a valid pattern")
            })
            .is_match(&n.text);
        let kind = if asks {
            VerdictKind::WaitingInput
        } else {
            VerdictKind::Idle
        };
        let mut v = Verdict::signal(
            kind,
            "osc-notification",
            format!("notification: {}", n.text),
        );
        if asks {
            v.evidence.row = Some(screen.cursor_row);
        }
        return Some(v);
    }
    match m.prompt {
        Some(p) if p.at_prompt() => {
            let at_cursor = screen
                .rows
                .get(screen.cursor_row)
                .map(|l| l.trim())
                .unwrap_or("");
            let last = m
                .last_exit
                .map(|c| format!(" (last command exited {c})"))
                .unwrap_or_default();
            Some(Verdict {
                kind: VerdictKind::Idle,
                evidence: Evidence {
                    rule: "osc-133".into(),
                    line: format!("OSC 133: at the shell's prompt{last}: {at_cursor}"),
                    row: Some(screen.cursor_row),
                },
            })
        }
        _ => None,
    }
}

/// The cursor's row, trimmed, when it is the last non-blank row of a normal (not alternate)
/// screen, ends like a question or a field prompt (`?`, `:`, `]`, `(y/n)`, `: (default)`) and
/// the cursor sits right after it (at most two cells on): `Name: `, `Overwrite? [y/N] `,
/// `package name: (demo) `.
pub fn question_at_cursor(screen: &ScreenSnapshot) -> Option<&str> {
    if screen.alternate {
        return None;
    }
    let row = screen.rows.get(screen.cursor_row)?;
    let text = row.trim_end();
    if text.trim().is_empty()
        || screen.rows[screen.cursor_row + 1..]
            .iter()
            .any(|r| !r.trim().is_empty())
    {
        return None;
    }
    let end = text.chars().count();
    if screen.cursor_col < end || screen.cursor_col > end + 2 {
        return None;
    }
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)(\?|:|\]|\(\s*[a-z]{1,5}\s*/\s*[a-z]{1,5}[^()]{0,20}\)|[?:]\s*\([^()]{0,80}\))\s*$")
            .expect("a valid pattern")
    })
    .is_match(text)
    .then(|| text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, verdict: VerdictKind, pattern: &str, region: &str) -> Rule {
        Rule::compile(&RuleSpec {
            name: name.into(),
            verdict,
            pattern: pattern.into(),
            region: region.into(),
            source: "screen".into(),
            quiet_ms: 500,
            hold_ms: 0,
            retrying: false,
        })
        .unwrap()
    }

    fn rules() -> Vec<Rule> {
        vec![
            rule(
                "yes-no",
                VerdictKind::WaitingInput,
                r"\(y/n\)\s*$",
                "cursor",
            ),
            rule(
                "error-line",
                VerdictKind::Error,
                r"(?i)^\s*error:",
                "cursor",
            ),
        ]
    }

    fn at(now: u64, last_output: u64) -> Timing {
        Timing {
            now,
            started_at: 0,
            last_output_at: last_output,
            last_change_at: last_output,
            last_activity_at: 0,
        }
    }

    #[test]
    fn a_prompt_at_the_cursor_waits_for_input_once_quiet() {
        let s = ScreenSnapshot::from_text("building\nApply these edits to src/lib.rs? (y/n)");
        let busy = classify(&s, &at(10_100, 10_000), &rules(), 60_000);
        assert_eq!(busy.kind, VerdictKind::Running);
        let v = classify(&s, &at(11_000, 10_000), &rules(), 60_000);
        assert_eq!(v.kind, VerdictKind::WaitingInput);
        assert_eq!(v.evidence.rule, "yes-no");
        assert_eq!(v.evidence.line, "Apply these edits to src/lib.rs? (y/n)");
    }

    #[test]
    fn an_error_scrolling_past_far_from_the_cursor_is_not_an_error() {
        let s =
            ScreenSnapshot::from_text("error: warming cache\nstep 2\nstep 3\nstep 4\n• thinking");
        let v = classify(&s, &at(20_000, 10_000), &rules(), 60_000);
        assert_eq!(v.kind, VerdictKind::Running, "{v}");
        let s = ScreenSnapshot::from_text("step 4\nerror: test failed\n$");
        let v = classify(&s, &at(20_000, 10_000), &rules(), 60_000);
        assert_eq!(v.kind, VerdictKind::Error);
        assert_eq!(v.evidence.line, "error: test failed");
    }

    #[test]
    fn silence_past_the_threshold_is_a_stall() {
        let s = ScreenSnapshot::from_text("• thinking…");
        let v = classify(&s, &at(70_000, 5_000), &rules(), 60_000);
        assert_eq!(v.kind, VerdictKind::Stalled);
        assert_eq!(v.evidence.rule, "silence");
        let mut t = at(70_000, 5_000);
        t.last_activity_at = 69_000; // a file changed in the worktree: not a stall
        assert_eq!(
            classify(&s, &t, &rules(), 60_000).kind,
            VerdictKind::Running
        );
    }

    #[test]
    fn bad_rules_are_clear_errors() {
        let spec = RuleSpec {
            name: "broken".into(),
            verdict: VerdictKind::Error,
            pattern: "(unclosed".into(),
            region: "cursor".into(),
            source: "screen".into(),
            quiet_ms: 0,
            hold_ms: 0,
            retrying: false,
        };
        let e = Rule::compile(&spec).unwrap_err();
        assert!(
            e.starts_with("rule \"broken\": pattern does not compile"),
            "{e}"
        );
        let e = Region::parse("bottom").unwrap_err();
        assert!(e.contains("last:N"));
        assert_eq!(Region::parse("last:5"), Ok(Region::LastLines(5)));
    }

    #[test]
    fn last_lines_region_skips_blank_rows() {
        let r = rule("done", VerdictKind::Done, "All tests passed", "last:2");
        let s = ScreenSnapshot {
            rows: vec!["All tests passed".into(), "".into(), "$".into(), "".into()],
            cursor_row: 0,
            ..Default::default()
        };
        assert_eq!(
            classify(&s, &at(9_000, 0), &[r], 60_000).kind,
            VerdictKind::Done
        );
    }

    #[test]
    fn a_terminal_read_after_quiet_is_a_question_or_a_shell_prompt() {
        let t = |quiet: u64| Timing {
            now: 10_000,
            started_at: 0,
            last_output_at: 10_000 - quiet,
            last_change_at: 10_000 - quiet,
            last_activity_at: 10_000 - quiet,
        };
        let mut s = ScreenSnapshot::from_text("rm: remove regular file 'a.txt'?");
        s.reading = Some(TerminalRead {
            process: "rm".into(),
            shell: false,
        });
        let v = classify(&s, &t(500), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::WaitingInput);
        assert_eq!(v.evidence.rule, "terminal-read");
        assert_eq!(v.evidence.line, "rm: remove regular file 'a.txt'?");
        // Still printing: not yet.
        assert_eq!(
            classify(&s, &t(100), &[], 300_000).kind,
            VerdictKind::Running
        );
        s.reading = Some(TerminalRead {
            process: "bash".into(),
            shell: true,
        });
        let v = classify(&s, &t(500), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::Idle);
        assert!(
            v.evidence.line.starts_with("bash waits at its prompt"),
            "{v:?}"
        );
    }

    fn quiet_for(quiet: u64) -> Timing {
        Timing {
            now: 1_000_000,
            started_at: 0,
            last_output_at: 1_000_000 - quiet,
            last_change_at: 1_000_000 - quiet,
            last_activity_at: 1_000_000 - quiet,
        }
    }

    #[test]
    fn osc_marks_parse() {
        assert_eq!(PromptMark::parse(&["A"]), Some(PromptMark::Prompt));
        assert_eq!(
            PromptMark::parse(&["A", "cl=m", "aid=12"]),
            Some(PromptMark::Prompt)
        );
        assert_eq!(PromptMark::parse(&["B"]), Some(PromptMark::Input));
        assert_eq!(PromptMark::parse(&["C"]), Some(PromptMark::Output));
        assert_eq!(
            PromptMark::parse(&["D", "130"]),
            Some(PromptMark::Finished(Some(130)))
        );
        assert_eq!(PromptMark::parse(&["D"]), Some(PromptMark::Finished(None)));
        assert_eq!(PromptMark::parse(&["Z"]), None);
        assert_eq!(PromptMark::parse::<&str>(&[]), None);
        assert_eq!(
            Progress::parse(&["1", "42"]),
            Ok(Some(Progress {
                state: 1,
                percent: Some(42)
            }))
        );
        assert_eq!(Progress::parse(&["0"]), Ok(None));
        assert_eq!(
            Progress::parse(&["3"]).unwrap().unwrap().describe(),
            "indeterminate"
        );
        assert_eq!(
            Progress::parse(&["2", "70"]).unwrap().unwrap().describe(),
            "error at 70%"
        );
        assert_eq!(Progress::parse(&["7"]), Err(()));
        assert_eq!(Progress::parse(&["x"]), Err(()));
    }

    #[test]
    fn a_shell_at_its_osc_133_prompt_is_idle_and_a_running_command_runs() {
        let mut s = ScreenSnapshot::from_text("make: *** [all] Error 2\n$");
        s.marks.prompt = Some(PromptMark::Input);
        s.marks.last_exit = Some(2);
        let v = classify(&s, &quiet_for(500), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::Idle, "{v}");
        assert_eq!(v.evidence.rule, "osc-133");
        assert!(v.evidence.line.contains("last command exited 2"), "{v}");
        // Still drawing: not yet.
        assert_eq!(
            classify(&s, &quiet_for(100), &[], 300_000).kind,
            VerdictKind::Running
        );
        // A command runs: running, and a program it started that reads the terminal waits.
        s.marks.prompt = Some(PromptMark::Output);
        let v = classify(&s, &quiet_for(500), &[], 300_000);
        assert_eq!(
            (v.kind, v.evidence.rule.as_str()),
            (VerdictKind::Running, "osc-133")
        );
        s.reading = Some(TerminalRead {
            process: "rm".into(),
            shell: false,
        });
        let v = classify(&s, &quiet_for(500), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::WaitingInput, "{v}");
        assert_eq!(v.evidence.rule, "terminal-read");
    }

    #[test]
    fn osc_9_4_progress_runs_and_its_error_state_is_an_error() {
        let mut s = ScreenSnapshot::from_text("Downloading");
        s.marks.progress = Some(Progress {
            state: 1,
            percent: Some(42),
        });
        let v = classify(&s, &quiet_for(5_000), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::Running);
        assert_eq!(v.evidence.line, "OSC 9;4 progress 42%");
        // Progress does not hide a stall.
        assert_eq!(
            classify(&s, &quiet_for(400_000), &[], 300_000).kind,
            VerdictKind::Stalled
        );
        s.marks.progress = Some(Progress {
            state: 2,
            percent: Some(42),
        });
        let v = classify(&s, &quiet_for(1_000), &[], 300_000);
        assert_eq!(v.kind, VerdictKind::Error);
        assert_eq!(v.evidence.line, "OSC 9;4 progress error at 42%");
    }

    #[test]
    fn a_fresh_notification_ends_a_turn_or_asks_for_approval() {
        let mut s = ScreenSnapshot::from_text("• I added README.md\n› Ask Codex to do anything");
        let t = quiet_for(2_000);
        s.marks.notification = Some(Notice {
            text: "I added README.md with a short project description.".into(),
            at: t.last_output_at - 200,
        });
        let v = classify(&s, &t, &[], 300_000);
        assert_eq!(v.kind, VerdictKind::Idle, "{v}");
        assert_eq!(v.evidence.rule, "osc-notification");
        assert_eq!(
            v.evidence.line,
            "notification: I added README.md with a short project description."
        );
        s.marks.notification = Some(Notice {
            text: "Approval requested: cargo test".into(),
            at: t.last_output_at,
        });
        assert_eq!(
            classify(&s, &t, &[], 300_000).kind,
            VerdictKind::WaitingInput
        );
        // Output long after it: a new turn began, the notification is old news.
        s.marks.notification = Some(Notice {
            text: "done".into(),
            at: t.last_output_at - 5_000,
        });
        assert_eq!(classify(&s, &t, &[], 300_000).kind, VerdictKind::Running);
    }

    #[test]
    fn the_profiles_rules_outrank_the_marks_and_a_pending_rule_holds_them_back() {
        let mut s = ScreenSnapshot::from_text("Delete 3 files? (y/n)");
        s.marks.prompt = Some(PromptMark::Input);
        let v = classify(&s, &quiet_for(600), &rules(), 300_000);
        assert_eq!(v.evidence.rule, "yes-no");
        // The rule's quiet time (500 ms) has not passed: nothing else speaks before it.
        let v = classify(&s, &quiet_for(350), &rules(), 300_000);
        assert_eq!(v.kind, VerdictKind::Running, "{v}");
    }

    #[test]
    fn a_cursor_right_after_a_question_waits_for_input_after_quiet() {
        for q in [
            "Name: ",
            "Overwrite existing key? ",
            "Proceed [Y/n] ",
            "Continue (yes/no) ",
            "package name: (demo-app) ",
            "? Pick a template › ",
        ] {
            let mut s = ScreenSnapshot::from_text(&format!("setup\n{q}"));
            s.cursor_col = q.chars().count();
            let expect_match = !q.ends_with("› ");
            let v = classify(&s, &quiet_for(2_000), &[], 300_000);
            assert_eq!(
                v.kind == VerdictKind::WaitingInput,
                expect_match,
                "{q:?}: {v}"
            );
            if expect_match {
                assert_eq!(v.evidence.rule, "cursor-question");
                assert!(v.evidence.line.starts_with("cursor after a question: "));
                // Too soon.
                assert_eq!(
                    classify(&s, &quiet_for(1_000), &[], 300_000).kind,
                    VerdictKind::Running
                );
            }
        }
        // Not a question: the cursor elsewhere, text below it, a full-screen TUI, progress.
        let mut s = ScreenSnapshot::from_text("Name: ");
        s.cursor_col = 0;
        assert_eq!(question_at_cursor(&s), None);
        let mut s = ScreenSnapshot::from_text("Name:\nstill loading");
        s.cursor_row = 0;
        s.cursor_col = 6;
        assert_eq!(question_at_cursor(&s), None);
        let mut s = ScreenSnapshot::from_text("Name: ");
        s.alternate = true;
        assert_eq!(question_at_cursor(&s), None);
        assert_eq!(
            question_at_cursor(&ScreenSnapshot::from_text("Compiling serde (3/10)")),
            None
        );
        let mut s = ScreenSnapshot::from_text("Name: ");
        s.marks.progress = Some(Progress {
            state: 3,
            percent: None,
        });
        assert_eq!(
            classify(&s, &quiet_for(2_000), &[], 300_000).kind,
            VerdictKind::Running
        );
    }

    #[test]
    fn an_echo_of_switchyards_own_context_is_not_an_error() {
        let ctx = "Previous attempt 1 failed (error [error-line] Error: Cannot connect to API). The last lines of its screen were:\n| Error: Cannot connect to API";
        let echo = Echo::new(ctx);
        // The agent shows the prompt it was given, the quoted context in it.
        let s = ScreenSnapshot::from_text(
            "Previous attempt 1 failed\n  Error: Cannot connect to API\n$",
        );
        let t = at(20_000, 10_000);
        assert_eq!(
            classify_with(&s, &t, &rules(), 60_000, Some(&echo)).kind,
            VerdictKind::Running
        );
        assert_eq!(classify(&s, &t, &rules(), 60_000).kind, VerdictKind::Error);
        // A new, different error is still one.
        let s = ScreenSnapshot::from_text("step\nError: disk quota exceeded on /w\n$");
        assert_eq!(
            classify_with(&s, &t, &rules(), 60_000, Some(&echo)).kind,
            VerdictKind::Error
        );
        // Short rows are never taken for an echo.
        assert!(!echo.covers("Error:"));
    }

    #[test]
    fn an_echo_is_recognised_behind_the_agents_own_decoration_on_any_prompt_line() {
        let prompt = "You are an implementer: make the change, run the tests, commit.\nSCOPE: may edit a.md\nTASK: Previous attempt 1 failed (error [error-line] Error: Cannot connect to API). The last lines of its screen were:\n| Error: Cannot connect to API\nFix that, then do the task:\nWrite the notes";
        let echo = Echo::new(prompt);
        // A frame and a speaker label with letters of their own, on the context's line (not
        // the prompt's first line) and cut at the tile's width.
        assert!(echo.covers("│ user  TASK: Previous attempt 1 failed (error [error-li"));
        assert!(echo.covers("│ user  | Error: Cannot connect to API"));
        // The agent's own new errors are not the prompt's.
        assert!(!echo.covers("│ Error: disk quota exceeded on /w"));
        assert!(!echo.covers("✗ Error: Cannot reach the model (connection reset)"));
        let s = ScreenSnapshot::from_text(
            "│ user  TASK: Previous attempt 1 failed (error [error-line]\nError: Cannot connect to API          (you, 12:01)\n$",
        );
        let t = at(20_000, 10_000);
        assert_eq!(classify(&s, &t, &rules(), 60_000).kind, VerdictKind::Error);
        assert_eq!(
            classify_with(&s, &t, &rules(), 60_000, Some(&echo)).kind,
            VerdictKind::Running
        );
    }

    #[test]
    fn exit_hints_say_why() {
        let h = exit_hint("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons").unwrap();
        assert!(h.contains("IS_SANDBOX"), "{h}");
        assert!(exit_hint(
            "fatal: Unable to create '/w/.git/worktrees/a/index.lock': Permission denied"
        )
        .unwrap()
        .contains("--yolo"));
        assert_eq!(exit_hint("all good"), None);
    }

    #[test]
    fn rate_limit_lines_are_recognised() {
        for l in [
            "API Error: Request rejected (429) · Rate limit reached · try again in 20s",
            "■ exceeded retry limit, last status: 429 Too Many Requests",
            "Rate limit reached",
            "You've hit your usage limit. Try again in 2 hours.",
            "RESOURCE_EXHAUSTED: quota exceeded",
        ] {
            assert!(is_rate_limit(l), "{l}");
        }
        assert!(!is_rate_limit("API Error: 500 Internal Server Error"));
    }

    #[test]
    fn tail_keeps_the_last_nonblank_rows() {
        let s = ScreenSnapshot::from_text("a\n\nb\nc\n\n");
        assert_eq!(s.tail(2), "b\nc");
    }
}
