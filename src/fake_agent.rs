//! Scripted fake coding agent used by the demo and the integration tests.
//!
//! Invoked as the hidden subcommand `switchyard fake-agent --scenario NAME --prompt TEXT`.
//! It behaves like a small coding agent in a terminal: a coloured banner, progress
//! steps, edits to the task's files, a `git commit`, and a success line. Scenarios add
//! the situations the healer must handle: a y/n question, a failing first attempt, a
//! silent stall, and a full-screen TUI phase.
//!
//! Exit codes: 0 success, 1 test failure (`flaky`, first attempt), 2 edit or commit
//! failure, 3 declined or unanswered question (`asks`), 4 stdin closed while stalled.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Component, Path};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

const RESET: &str = "\x1b[0m";
const BOLD_CYAN: &str = "\x1b[1;36m";
const DIM: &str = "\x1b[2m";
const BLUE: &str = "\x1b[34m";
const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const BOLD_GREEN: &str = "\x1b[1;32m";
const RED: &str = "\x1b[1;31m";
/// What the `flaky` scenario prints on its first attempt.
const FLAKY_ERROR: &str =
    "error: test suite failed: assertion failed at tests/parse.rs:12 (left: 3, right: 4)";

/// Which behaviour the fake agent plays. Parsed from `--scenario NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Read, plan, edit, test, commit; no interaction.
    Normal,
    /// Asks `Apply these edits to <file>? (y/n)` before editing.
    Asks,
    /// Fails the test suite on attempt 1, succeeds on later attempts.
    Flaky,
    /// Goes silent after "thinking…" until a line arrives on stdin.
    Stalls,
    /// Draws a full-screen frame on the alternate screen before editing.
    Tui,
    /// A benchmark workload that never ends: a spinner line redrawn about 12 times a second and
    /// a coloured log line every second, as claude and gemini print while they think.
    Busy,
    /// A benchmark workload: `SY_FLOOD_MB` MiB (default 8) of coloured log lines as fast as
    /// the terminal takes them, then exit 0.
    Flood,
    /// A reviewer (read-only): writes findings JSON to `SWITCHYARD_FINDINGS` — one critical
    /// finding on the first file in review round 1 (`SWITCHYARD_REVIEW_ROUND`), none after —
    /// and ends its final message with the same JSON, then exits 0.
    Review,
    /// A read-only reviewer of a fan-out: reads the task's files, edits and commits nothing,
    /// and ends with a final message holding a findings JSON block (one finding every lens
    /// reports, one of its own lens from the prompt's `LENS:` line); also written to
    /// `--final-message FILE` when given. Exit 0.
    ReviewFindings,
}

const SCENARIOS: [(&str, Scenario); 9] = [
    ("normal", Scenario::Normal),
    ("asks", Scenario::Asks),
    ("flaky", Scenario::Flaky),
    ("stalls", Scenario::Stalls),
    ("tui", Scenario::Tui),
    ("busy", Scenario::Busy),
    ("flood", Scenario::Flood),
    ("review", Scenario::Review),
    ("review-findings", Scenario::ReviewFindings),
];

impl Scenario {
    /// The name used on the command line, e.g. `"stalls"`.
    pub fn name(self) -> &'static str {
        SCENARIOS
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("normal", |(n, _)| n)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        SCENARIOS
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, scenario)| *scenario)
            .ok_or_else(|| {
                let valid: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                format!("unknown scenario {s:?} (valid: {})", valid.join(", "))
            })
    }
}

/// Command-line arguments of `switchyard fake-agent`.
#[derive(Debug, Clone)]
pub struct FakeAgentArgs {
    /// Behaviour to play.
    pub scenario: Scenario,
    /// The task prompt; its first line is echoed and used in the commit message.
    pub prompt: String,
    /// Multiplier on every sleep (1.0 = normal pace, 0 = no sleeping).
    pub speed: f64,
    /// Where to write the final message as well (like `codex exec --output-last-message`).
    pub final_message: Option<std::path::PathBuf>,
}

impl Default for FakeAgentArgs {
    fn default() -> Self {
        Self {
            scenario: Scenario::Normal,
            prompt: String::new(),
            speed: 1.0,
            final_message: None,
        }
    }
}

/// The environment the agent reads, captured once so tests can inject it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnv {
    /// `SWITCHYARD_TASK_ID` (default `"t0"`).
    pub task_id: String,
    /// `SWITCHYARD_ATTEMPT`, 1-based (default 1).
    pub attempt: u32,
    /// `SWITCHYARD_FILES`, split on commas; empty means `notes/<task_id>.md`.
    pub files: Vec<String>,
    /// Terminal width from `$COLUMNS` (default 80).
    pub cols: u16,
    /// Terminal height from `$LINES` (default 24).
    pub rows: u16,
}

impl AgentEnv {
    /// Reads the agent's settings from the process environment.
    pub fn from_process_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Builds the settings from an arbitrary variable lookup (used by tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let dim = |key: &str, default: u16, min: u16, max: u16| {
            get(key)
                .and_then(|v| v.trim().parse::<u16>().ok())
                .map_or(default, |v| v.clamp(min, max))
        };
        Self {
            task_id: get("SWITCHYARD_TASK_ID")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "t0".to_string()),
            attempt: get("SWITCHYARD_ATTEMPT")
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(1)
                .max(1),
            files: get("SWITCHYARD_FILES")
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            cols: dim("COLUMNS", 80, 20, 500),
            rows: dim("LINES", 24, 6, 200),
        }
    }
}

/// Runs in the current directory (a git worktree). Returns the process exit code.
pub fn run(args: &FakeAgentArgs) -> i32 {
    let env = AgentEnv::from_process_env();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => {
            let _ = writeln!(out, "{RED}error: no current directory: {e}{RESET}");
            return 2;
        }
    };
    let stdin = io::stdin();
    let mut input = stdin.lock();
    run_with(args, &env, &cwd, &mut input, &mut out)
}

/// The reviewer: findings by round (see [`Scenario::Review`]).
fn review(env: &AgentEnv, out: &mut dyn Write) -> i32 {
    let round: u32 = std::env::var("SWITCHYARD_REVIEW_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let file = env
        .files
        .first()
        .cloned()
        .unwrap_or_else(|| format!("notes/{}.md", slug(&env.task_id)));
    let json = if round <= 1 {
        format!(
            "[{{\"severity\": \"critical\", \"file\": \"{file}\", \"line\": 1, \"message\": \"the change in {file} has no test; add one\"}}]"
        )
    } else {
        "[]".to_string()
    };
    let _ = write!(
        out,
        "{BOLD_CYAN}● fake-reviewer{RESET} {DIM}task {} · review round {round}{RESET}\r\n",
        env.task_id
    );
    if let Ok(path) = std::env::var("SWITCHYARD_FINDINGS") {
        if let Err(e) = fs::write(&path, &json) {
            let _ = write!(out, "{RED}error: cannot write {path}: {e}{RESET}\r\n");
            return 2;
        }
    }
    let _ = write!(out, "review done\r\n```json\r\n{json}\r\n```\r\n");
    let _ = out.flush();
    0
}

/// Removes conflict marker lines (keeping both sides) from the files git reports unmerged in
/// `cwd`; returns how many files it resolved.
fn resolve_markers(cwd: &Path) -> Result<usize, String> {
    let Ok(list) = git(cwd, &["diff", "--name-only", "--diff-filter=U"]) else {
        return Ok(0); // not a git worktree: nothing to resolve
    };
    let mut n = 0;
    for rel in list.lines().filter(|l| !l.trim().is_empty()) {
        let path = cwd.join(rel);
        let text = fs::read_to_string(&path).map_err(|e| format!("{rel}: {e}"))?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                !(l.starts_with("<<<<<<<")
                    || l.starts_with("=======")
                    || l.starts_with(">>>>>>>")
                    || l.starts_with("|||||||"))
            })
            .collect();
        fs::write(&path, kept.join("\n") + "\n").map_err(|e| format!("{rel}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// The busy workload: spinner at ~12 Hz, a log line a second, forever (until killed or the
/// terminal goes away).
fn busy(out: &mut dyn Write) -> i32 {
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    let start = std::time::Instant::now();
    let mut n: u64 = 0;
    loop {
        let secs = start.elapsed().as_secs();
        let mut frame = format!(
            "\r{BOLD_CYAN}{}{RESET} Thinking… {DIM}({secs}s · esc to interrupt){RESET}\x1b[K",
            FRAMES[(n % 10) as usize]
        );
        if n.is_multiple_of(12) {
            frame = format!(
                "\r\x1b[K{GREEN}✓{RESET} step {} {DIM}read src/module_{}.rs, 42 lines{RESET}\r\n{frame}",
                n / 12,
                n % 7
            );
        }
        if out
            .write_all(frame.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return 0;
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(83));
    }
}

/// The flood workload: `SY_FLOOD_MB` MiB of coloured log lines as fast as they are taken.
fn flood(out: &mut dyn Write) -> i32 {
    let mb: usize = std::env::var("SY_FLOOD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let total = mb << 20;
    let mut written = 0usize;
    let mut i = 0u64;
    let mut chunk = String::with_capacity(64 * 1024);
    while written < total {
        chunk.clear();
        while chunk.len() < 60 * 1024 {
            i += 1;
            chunk.push_str(&format!(
                "{DIM}{:>8}{RESET} {GREEN}INFO{RESET} compiling crate_{} {YELLOW}[{}/{}]{RESET} src/lib.rs:{}\r\n",
                i,
                i % 97,
                i % 1000,
                1000,
                i % 400
            ));
        }
        if out.write_all(chunk.as_bytes()).is_err() {
            return 1;
        }
        written += chunk.len();
    }
    let _ = out.flush();
    0
}

/// The whole agent, with its environment, working directory and terminal injected.
pub fn run_with(
    args: &FakeAgentArgs,
    env: &AgentEnv,
    cwd: &Path,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> i32 {
    match args.scenario {
        Scenario::Busy => return busy(out),
        Scenario::Flood => return flood(out),
        Scenario::Review => return review(env, out),
        _ => {}
    }
    let mut t = Term {
        out,
        speed: args.speed,
    };
    let summary = task_line(&args.prompt);
    t.line(&format!(
        "{BOLD_CYAN}● fake-agent{RESET} {DIM}task {} · attempt {} · {}{RESET}",
        env.task_id, env.attempt, args.scenario
    ));
    if !summary.is_empty() {
        t.line(&format!("{DIM}›{RESET} {}", truncate_chars(summary, 100)));
    }
    t.pause(200);
    if args.scenario == Scenario::Flaky
        && env.attempt >= 2
        && args.prompt.contains("Previous attempt")
    {
        t.line(&format!(
            "{YELLOW}↻ retrying with the previous error as context{RESET}"
        ));
    }

    let mut files = Vec::new();
    for f in &env.files {
        if is_safe_relative(f) {
            files.push(f.clone());
        } else {
            t.line(&format!(
                "{YELLOW}! skipping {f}: outside the worktree{RESET}"
            ));
        }
    }
    if files.is_empty() {
        files.push(format!("notes/{}.md", slug(&env.task_id)));
    }
    for f in files.iter().take(3) {
        t.step(&format!("reading {f}"), 250);
    }
    if args.scenario == Scenario::ReviewFindings {
        return review_findings(&mut t, args, &files);
    }
    t.step("planning changes", 350);

    match args.scenario {
        Scenario::Flaky if env.attempt <= 1 => {
            t.step("running tests …", 300);
            t.line(&format!("{RED}{FLAKY_ERROR}{RESET}"));
            return 1;
        }
        Scenario::Stalls => {
            t.line(&format!("{BLUE}•{RESET} thinking…"));
            // Like a stalled agent's event loop: waiting in poll(2), not in a terminal read
            // (which switchyard would rightly take for a question).
            wait_in_poll();
            if read_reply(input).is_none() {
                return 4;
            }
            t.line(&format!("{YELLOW}↻ nudged: continuing{RESET}"));
        }
        Scenario::Asks => {
            t.raw(&format!("Apply these edits to {}? (y/n) ", files[0]));
            match read_reply(input) {
                Some(a) if a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes") => {}
                Some(_) => {
                    t.line(&format!("{RED}aborted by user{RESET}"));
                    return 3;
                }
                None => {
                    t.line(&format!("{RED}aborted by user (no answer){RESET}"));
                    return 3;
                }
            }
        }
        Scenario::Tui => play_tui(&mut t, env, &files),
        Scenario::Normal
        | Scenario::Flaky
        | Scenario::Busy
        | Scenario::Flood
        | Scenario::Review
        | Scenario::ReviewFindings => {}
    }
    // A resolve round: switchyard left a merge with conflict markers; keep both sides.
    match resolve_markers(cwd) {
        Ok(0) => {}
        Ok(n) => t.line(&format!(
            "{YELLOW}⇄{RESET} resolved conflicts in {n} file(s), keeping both sides"
        )),
        Err(e) => {
            t.line(&format!(
                "{RED}error: could not resolve conflicts: {e}{RESET}"
            ));
            return 2;
        }
    }

    for f in &files {
        t.line(&format!("{YELLOW}✎{RESET} editing {f}"));
        let text = edit_text(f, &env.task_id, env.attempt, summary);
        if let Err(e) = append_edit(cwd, f, &text) {
            t.line(&format!("{RED}error: could not edit {f}: {e}{RESET}"));
            return 2;
        }
        t.pause(300);
    }
    t.raw(&format!("{BLUE}•{RESET} running tests … "));
    t.pause(400);
    t.line(&format!("{GREEN}ok{RESET}"));
    t.line(&format!("{BOLD_GREEN}✔ All tests passed{RESET}"));
    match commit(cwd, &commit_message(&env.task_id, &args.prompt)) {
        Ok(sha) => {
            t.line(&format!("done: committed {sha}"));
            0
        }
        Err(e) => {
            for (i, l) in e.lines().enumerate() {
                let prefix = if i == 0 {
                    "error: git commit failed: "
                } else {
                    "  "
                };
                t.line(&format!("{RED}{prefix}{l}{RESET}"));
            }
            2
        }
    }
}

/// The fake terminal: writes are flushed immediately and errors ignored (a closed
/// PTY must not crash the agent); pauses are scaled by `speed`.
struct Term<'a> {
    out: &'a mut dyn Write,
    speed: f64,
}

impl Term<'_> {
    fn raw(&mut self, s: &str) {
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
    }

    fn line(&mut self, s: &str) {
        self.raw(&format!("{s}\n"));
    }

    fn step(&mut self, s: &str, ms: u64) {
        self.line(&format!("{BLUE}•{RESET} {s}"));
        self.pause(ms);
    }

    fn pause(&self, ms: u64) {
        sleep_scaled(ms, self.speed);
    }
}

/// The one sleep helper: `ms` milliseconds times `speed`; zero, negative or NaN
/// speed means no sleeping.
fn sleep_scaled(ms: u64, speed: f64) {
    if speed.is_nan() || speed <= 0.0 {
        return;
    }
    if let Ok(d) = Duration::try_from_secs_f64(ms as f64 / 1000.0 * speed) {
        std::thread::sleep(d);
    }
}

/// Reads one line; `None` on EOF or a read error, else the trimmed answer.
/// Waits until standard input has something to read, in poll(2) (only when it is a terminal).
fn wait_in_poll() {
    // SAFETY: isatty and poll only read the fd table and the pollfd given; no memory is shared.
    unsafe {
        if libc::isatty(0) != 1 {
            return;
        }
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        while libc::poll(&mut fd, 1, 1000) == 0 {}
    }
}

fn read_reply(input: &mut dyn BufRead) -> Option<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Redraws a full-screen frame 15 times on the alternate screen, then leaves it.
fn play_tui(t: &mut Term<'_>, env: &AgentEnv, files: &[String]) {
    const FRAMES: usize = 15;
    t.raw("\x1b[?1049h\x1b[?25l");
    for step in 1..=FRAMES {
        let status = match step * 4 / (FRAMES + 1) {
            0 => "indexing repository".to_string(),
            1 => format!("reading {}", files[0]),
            2 => "planning changes".to_string(),
            _ => "drafting edits".to_string(),
        };
        t.raw(&render_frame(
            env.cols,
            env.rows,
            &env.task_id,
            step,
            FRAMES,
            &status,
        ));
        t.pause(100);
    }
    t.raw("\x1b[?1049l\x1b[?25h");
}

/// One TUI frame: clear, a box filling `cols`×`rows` with a title, a progress bar
/// and a status line. Every row is cursor-addressed, so nothing ever scrolls.
fn render_frame(
    cols: u16,
    rows: u16,
    task_id: &str,
    step: usize,
    total: usize,
    status: &str,
) -> String {
    let (w, h) = (usize::from(cols.max(20)), usize::from(rows.max(6)));
    let inner = w - 2;
    let title = truncate_chars(&format!(" fake-agent — {task_id} "), inner - 2);
    let mut s = String::from("\x1b[2J\x1b[H");
    s.push_str(&format!(
        "┌─{title}{}┐",
        "─".repeat(inner - 1 - title.chars().count())
    ));
    let bar_w = (inner - 12).min(50);
    let filled = bar_w * step.min(total) / total.max(1);
    let bar = format!(
        "  [{}{}] {:>3}%",
        "█".repeat(filled),
        "░".repeat(bar_w - filled),
        100 * step.min(total) / total.max(1)
    );
    let (mid, last) = (((h - 1) / 2).max(2), h - 2);
    for row in 1..=last {
        let text = match row {
            1 => format!("  Working on task {task_id}"),
            r if r == mid => bar.clone(),
            r if r == last => format!("  step {step}/{total} · {status}"),
            _ => String::new(),
        };
        let text = truncate_chars(&text, inner);
        let pad = inner - text.chars().count();
        s.push_str(&format!("\x1b[{};1H│{text}{}│", row + 1, " ".repeat(pad)));
    }
    s.push_str(&format!("\x1b[{h};1H└{}┘", "─".repeat(inner)));
    s
}

/// Appends `text` to `cwd/rel`, creating parent directories and the file as needed.
fn append_edit(cwd: &Path, rel: &str, text: &str) -> io::Result<()> {
    let path = cwd.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let existing = fs::read(&path).unwrap_or_default();
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    if existing.is_empty() {
        file.write_all(text.trim_start_matches('\n').as_bytes())
    } else {
        if !existing.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
        file.write_all(text.as_bytes())
    }
}

/// The lines appended to `path`, plausible for its extension and unique per task
/// and attempt (so repeated attempts never define the same function twice).
fn edit_text(path: &str, task_id: &str, attempt: u32, summary: &str) -> String {
    let ident = slug(task_id);
    let name = format!("task_{ident}_attempt{attempt}_change");
    let digits: String = task_id.chars().filter(char::is_ascii_digit).collect();
    let value: u32 = digits.parse().unwrap_or(0);
    let note = match truncate_chars(summary, 60) {
        n if n.is_empty() => "fake-agent edit".to_string(),
        n => n,
    };
    let about = format!("{task_id} (attempt {attempt}): {note}");
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "rs" => format!(
            "\n/// {about}\n#[allow(dead_code)]\npub fn {name}() -> u32 {{\n    {value}\n}}\n"
        ),
        "md" | "txt" => format!("- {about}\n"),
        "js" | "mjs" | "cjs" | "ts" => {
            format!("\n// {about}\nfunction {name}() {{\n  return {value};\n}}\n")
        }
        "py" => format!("\n\n# {about}\ndef {name}():\n    return {value}\n"),
        "c" | "h" | "cpp" | "go" | "java" | "kt" | "swift" | "cs" => format!("// {about}\n"),
        _ => format!("# {about}\n"),
    }
}

/// `"<task_id>: <first prompt line, at most 60 chars>"`.
/// The reviewer's end: a rule, then its final message with the findings block (see
/// [`Scenario::ReviewFindings`]).
fn review_findings(t: &mut Term<'_>, args: &FakeAgentArgs, files: &[String]) -> i32 {
    let lens = args
        .prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix("LENS:"))
        .map(str::trim)
        .unwrap_or("general")
        .to_string();
    t.step(&format!("reviewing through the {lens} lens"), 300);
    let file = &files[0];
    let severity = if lens == "risks" { "critical" } else { "major" };
    let own = if lens == "style" { "minor" } else { "major" };
    let message = format!(
        "Review of {file} through the {lens} lens: 2 findings.\n\n\
         ```json\n[\n  {{\"severity\": \"{severity}\", \"file\": \"{file}\", \"line\": 1, \"message\": \"Empty input is not handled.\"}},\n  \
         {{\"severity\": \"{own}\", \"file\": \"{file}\", \"line\": 2, \"message\": \"{lens}: name the unit of the count.\"}}\n]\n```"
    );
    if let Some(path) = &args.final_message {
        if let Err(e) = fs::write(path, format!("{message}\n")) {
            t.line(&format!(
                "{RED}error: cannot write {}: {e}{RESET}",
                path.display()
            ));
            return 2;
        }
    }
    t.line("────────────────────────────────────────");
    for l in message.lines() {
        t.line(l);
    }
    0
}

/// The line that says what to do: the rest of a `TASK:` line (after a role's preamble), else
/// the first non-blank line.
fn task_line(prompt: &str) -> &str {
    prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix("TASK:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| first_line(prompt))
}

fn commit_message(task_id: &str, prompt: &str) -> String {
    match truncate_chars(task_line(prompt), 60) {
        s if s.is_empty() => format!("{task_id}: fake-agent edits"),
        s => format!("{task_id}: {s}"),
    }
}

/// The first non-blank line of `s`, trimmed.
fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// At most `max` chars; longer strings end in `…` (which counts toward `max`).
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let head: String = s.chars().take(max - 1).collect();
    format!("{}…", head.trim_end())
}

/// A non-empty relative path that cannot leave the worktree.
fn is_safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// `task_id` lower-cased with anything but `[a-z0-9]` replaced by `_`: usable both
/// in identifiers and as a file name.
fn slug(task_id: &str) -> String {
    let map = |c: char| match c.is_ascii_alphanumeric() {
        true => c.to_ascii_lowercase(),
        false => '_',
    };
    task_id.chars().map(map).collect()
}

/// Runs git in `cwd` with a fixed identity, no signing and no inherited repo overrides.
fn git(cwd: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(["-c", "user.name=fake-agent"])
        .args(["-c", "user.email=fake-agent@switchyard.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(cwd)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run git: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(if stderr.is_empty() { stdout } else { stderr })
}

/// Stages everything, commits with `message`, and returns the short sha.
fn commit(cwd: &Path, message: &str) -> Result<String, String> {
    git(cwd, &["add", "-A"])?;
    git(cwd, &["commit", "-q", "--no-verify", "-m", message])?;
    git(cwd, &["rev-parse", "--short", "HEAD"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(git_init: bool) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "switchyard-fake-agent-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            if git_init {
                git(&dir, &["init", "-q"]).unwrap();
                fs::write(dir.join("README.md"), "# demo\n").unwrap();
                commit(&dir, "initial").unwrap();
            }
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn env(files: &str, attempt: &str) -> AgentEnv {
        AgentEnv::from_lookup(|k| match k {
            "SWITCHYARD_TASK_ID" => Some("t3".to_string()),
            "SWITCHYARD_ATTEMPT" => Some(attempt.to_string()),
            "SWITCHYARD_FILES" => Some(files.to_string()),
            _ => None,
        })
    }

    fn play(
        scenario: Scenario,
        prompt: &str,
        env: &AgentEnv,
        cwd: &Path,
        stdin: &str,
    ) -> (i32, String) {
        let args = FakeAgentArgs {
            scenario,
            prompt: prompt.to_string(),
            speed: 0.0,
            ..Default::default()
        };
        let mut out = Vec::new();
        let code = run_with(&args, env, cwd, &mut stdin.as_bytes(), &mut out);
        (code, String::from_utf8(out).unwrap())
    }

    fn commits(dir: &Path) -> usize {
        git(dir, &["rev-list", "--count", "HEAD"])
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn parses_scenarios() {
        assert_eq!("normal".parse(), Ok(Scenario::Normal));
        assert_eq!(" Stalls ".parse(), Ok(Scenario::Stalls));
        for (name, s) in SCENARIOS {
            assert_eq!(name.parse(), Ok(s));
            assert_eq!(s.to_string(), name);
        }
        let err = "bogus".parse::<Scenario>().unwrap_err();
        assert!(err.contains("bogus") && err.contains("normal, asks, flaky, stalls, tui"));
    }

    #[test]
    fn reads_env_with_defaults() {
        let e = AgentEnv::from_lookup(|_| None);
        assert_eq!(
            (e.task_id.as_str(), e.attempt, e.cols, e.rows),
            ("t0", 1, 80, 24)
        );
        assert!(e.files.is_empty());
        let e = env(" src/lib.rs , ,notes/a.md", "2");
        assert_eq!(e.files, ["src/lib.rs", "notes/a.md"]);
        assert_eq!(e.attempt, 2);
    }

    #[test]
    fn edit_text_matches_extension() {
        let rs = edit_text("src/lib.rs", "t3", 2, "add parser");
        assert!(rs.contains("pub fn task_t3_attempt2_change() -> u32 {\n    3\n}"));
        assert_eq!(edit_text("a/b.md", "t3", 1, "x"), "- t3 (attempt 1): x\n");
        assert_eq!(
            edit_text("b.TXT", "t3", 1, ""),
            "- t3 (attempt 1): fake-agent edit\n"
        );
        assert!(edit_text("app.js", "t-9", 1, "x")
            .contains("function task_t_9_attempt1_change() {\n  return 9;"));
        assert_eq!(edit_text("Makefile", "t3", 1, "x"), "# t3 (attempt 1): x\n");
        assert_eq!(edit_text("main.go", "t3", 1, "x"), "// t3 (attempt 1): x\n");
    }

    #[test]
    fn truncates_commit_message() {
        assert_eq!(
            commit_message("t3", "\n  Fix the parser  \nmore"),
            "t3: Fix the parser"
        );
        assert_eq!(commit_message("t3", ""), "t3: fake-agent edits");
        let long = commit_message("t3", &"é".repeat(80));
        assert_eq!(long.chars().count(), "t3: ".len() + 60);
        assert!(long.ends_with('…'));
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
    }

    #[test]
    fn rejects_paths_outside_worktree() {
        assert!(is_safe_relative("src/lib.rs") && is_safe_relative("./a.md"));
        assert!(
            !is_safe_relative("/etc/passwd") && !is_safe_relative("../x") && !is_safe_relative("")
        );
    }

    #[test]
    fn frame_fits_the_terminal() {
        for (cols, rows) in [(80u16, 24u16), (20, 6), (132, 40)] {
            let frame = render_frame(
                cols,
                rows,
                "t3",
                7,
                15,
                "reading a very long status that will not fit anywhere at all",
            );
            let rows_drawn: Vec<&str> = frame
                .split("\x1b[")
                .filter(|p| p.contains("H│") || p.contains("H┌") || p.contains("H└"))
                .collect();
            assert_eq!(rows_drawn.len(), usize::from(rows));
            for r in rows_drawn {
                let text = &r[r.find('H').unwrap() + 1..];
                assert_eq!(text.chars().count(), usize::from(cols), "{text:?}");
            }
            assert_eq!(frame.contains("fake-agent — t3"), cols >= 21);
        }
    }

    #[test]
    fn normal_run_edits_and_commits() {
        let dir = TempDir::new(true);
        let e = env("src/lib.rs,docs/notes.txt", "1");
        let (code, out) = play(
            Scenario::Normal,
            "Add a parser\nwith details",
            &e,
            &dir.0,
            "",
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("● fake-agent") && out.contains("✔ All tests passed"));
        let sha = git(&dir.0, &["rev-parse", "--short", "HEAD"]).unwrap();
        assert!(out.trim_end().ends_with(&format!("done: committed {sha}")));
        assert_eq!(commits(&dir.0), 2);
        assert_eq!(
            git(&dir.0, &["log", "-1", "--format=%s"]).unwrap(),
            "t3: Add a parser"
        );
        let lib = fs::read_to_string(dir.0.join("src/lib.rs")).unwrap();
        assert!(lib.starts_with("/// t3 (attempt 1)") && lib.contains("task_t3_attempt1_change"));
        assert!(dir.0.join("docs/notes.txt").exists());
    }

    #[test]
    fn default_file_is_task_notes() {
        let dir = TempDir::new(true);
        let (code, _) = play(Scenario::Tui, "x", &env("", "1"), &dir.0, "");
        assert_eq!(code, 0);
        assert!(dir.0.join("notes/t3.md").exists());
    }

    #[test]
    fn the_reviewer_ends_with_findings_and_commits_nothing() {
        let dir = TempDir::new(true);
        let before = commits(&dir.0);
        let prompt = "CONTEXT: WORKER\nLENS: risks\nTASK: Review the parser";
        let (code, out) = play(
            Scenario::ReviewFindings,
            prompt,
            &env("src/a.rs", "1"),
            &dir.0,
            "",
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("›\x1b[0m Review the parser"), "{out}");
        assert_eq!(commits(&dir.0), before);
        let last = out
            .rsplit("────────────────────────────────────────")
            .next()
            .unwrap();
        let f = crate::core::findings::parse(last).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].severity, crate::core::findings::Severity::Critical);
        assert_eq!(f[1].message, "risks: name the unit of the count.");
    }

    #[test]
    fn scenarios_interact_as_scripted() {
        let dir = TempDir::new(true);
        let e = env("a.md", "1");
        let (code, out) = play(Scenario::Asks, "x", &e, &dir.0, "n\n");
        assert_eq!(code, 3);
        assert!(
            out.contains("Apply these edits to a.md? (y/n) ") && out.contains("aborted by user")
        );
        assert_eq!(play(Scenario::Asks, "x", &e, &dir.0, "").0, 3);
        assert_eq!(play(Scenario::Asks, "x", &e, &dir.0, " YES \n").0, 0);
        let (code, out) = play(Scenario::Flaky, "x", &e, &dir.0, "");
        assert_eq!(code, 1);
        assert!(out.contains("error: test suite failed: assertion failed at tests/parse.rs:12"));
        assert_eq!(commits(&dir.0), 2);
        let (code, out) = play(
            Scenario::Flaky,
            "x\nPrevious attempt failed",
            &env("a.md", "2"),
            &dir.0,
            "",
        );
        assert_eq!(code, 0);
        assert!(out.contains("↻ retrying with the previous error as context"));
        assert_eq!(play(Scenario::Stalls, "x", &e, &dir.0, "").0, 4);
        let (code, out) = play(Scenario::Stalls, "x", &env("a.md", "3"), &dir.0, "\n");
        assert_eq!(code, 0);
        assert!(out.contains("thinking…") && out.contains("↻ nudged: continuing"));
        let (code, out) = play(Scenario::Tui, "x", &env("a.md", "4"), &dir.0, "");
        assert_eq!(code, 0);
        assert!(out.contains("\x1b[?1049h") && out.contains("\x1b[?1049l\x1b[?25h"));
        assert_eq!(commits(&dir.0), 5);
    }

    #[test]
    fn commit_failure_exits_2() {
        let dir = TempDir::new(false);
        let (code, out) = play(
            Scenario::Normal,
            "x",
            &env("a.md", "1"),
            &dir.0.join("sub"),
            "",
        );
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("error: git commit failed"));
    }
}
