//! `switchyard report`: a Markdown progress report of a manifest, after the Kiro orchestrator
//! seed's completion summary ("Tasks Completed: X/Y", task results, key files changed, review
//! findings) and its PROJECT_PULSE progress page.
//!
//! [`render`] is a pure function of the manifest, the journal lines (`<workdir>/logs/events.jsonl`,
//! one JSON object per line: `ts`, `tsMs`, `task`, `kind`, `message`, `data`, as the runtime
//! writes them) and per-task facts the edge gathers (files changed on the task's branch,
//! findings), and the time of the report. All text from tasks and the journal is stripped of
//! terminal control characters ([`strip_controls`]) and escaped for Markdown ([`escape_md`]).

use crate::core::manifest::{Manifest, Status, Task};
use chrono::{DateTime, FixedOffset};
use color_eyre::eyre::Result;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One journal line, as far as the report uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalLine {
    /// RFC 3339 time.
    pub ts: String,
    /// The task, when the event is about one.
    pub task: Option<String>,
    /// `start`, `spawn`, `verdict`, `heal`, `status`, `exit`, `command`, `error`.
    pub kind: String,
    /// The human-readable line.
    pub message: String,
}

/// Parses `events.jsonl`. Lines that are not JSON objects with a `kind` (a torn last line after a
/// crash, say) are skipped and counted.
pub fn parse_journal(text: &str) -> (Vec<JournalLine>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            skipped += 1;
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match s("kind") {
            Some(kind) => out.push(JournalLine {
                ts: s("ts").unwrap_or_default(),
                task: s("task"),
                kind,
                message: s("message").unwrap_or_default(),
            }),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

/// Facts about one task that only the edge can know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFacts {
    /// Files changed on the task's branch since its base commit.
    pub files_changed: Vec<String>,
    /// Review findings, one line each.
    pub findings: Vec<String>,
    /// Where the task's final message is kept (`<workdir>/logs/<id>.final.md`), when it left one.
    pub final_message: Option<String>,
    /// Where the merged review findings given to the task are kept
    /// (`<workdir>/logs/<id>.context-findings.md`), when its context named reviewers.
    pub findings_file: Option<String>,
}

/// Everything the report is made from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// Journal lines, oldest first.
    pub journal: &'a [JournalLine],
    /// Facts by task id.
    pub facts: &'a HashMap<String, TaskFacts>,
    /// The time of the report (durations of running tasks run to it).
    pub now: Option<DateTime<FixedOffset>>,
}

/// Removes terminal control characters: escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL`
/// or `ESC \`, other two-byte `ESC x`), the other C0 controls (newline and tab included), DEL, C1
/// controls (U+0080–U+009F) and the bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069) that make text display in another order than it reads.
pub fn strip_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // parameters and intermediates, then one final byte 0x40..=0x7e
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') | Some('P') | Some('_') | Some('^') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || c == '\u{9c}' {
                            break;
                        }
                        if c == '\x1b' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            },
            c if c.is_control() => {}
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

/// One line of text, safe inside Markdown (a paragraph, a list item or a table cell): controls
/// removed, line breaks as spaces, and every character Markdown could read as syntax escaped
/// with a backslash (`\ ` * _ [ ] < > | ~ # & !`).
pub fn escape_md(s: &str) -> String {
    let flat = strip_controls(&s.replace(['\n', '\r', '\t'], " "));
    let mut out = String::with_capacity(flat.len());
    for c in flat
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
    {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '#' | '&' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_time(s: Option<&str>) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s?).ok()
}

/// `45s`, `2m 05s`, `1h 02m`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// The task's duration: started → completed, or started → now while it is not finished.
fn duration(t: &Task, now: Option<DateTime<FixedOffset>>) -> String {
    let Some(start) = parse_time(t.started_at.as_deref()) else {
        return String::new();
    };
    match parse_time(t.completed_at.as_deref()) {
        Some(end) => human_duration((end - start).num_seconds()),
        None if !t.status.is_finished() => match now {
            Some(now) => format!("{} so far", human_duration((now - start).num_seconds())),
            None => String::new(),
        },
        None => String::new(),
    }
}

fn pr(t: &Task) -> String {
    match &t.pr_number {
        Some(Value::Number(n)) => format!("\\#{n}"),
        Some(Value::String(s)) if !s.is_empty() => escape_md(s),
        _ => String::new(),
    }
}

/// Renders the report.
pub fn render(input: &ReportInput) -> String {
    let m = input.manifest;
    let tasks: Vec<&Task> = m.tasks().collect();
    let mut s = String::new();
    let project = if m.project.is_empty() {
        "(unnamed project)"
    } else {
        &m.project
    };
    let _ = writeln!(s, "# Progress report: {}\n", escape_md(project));
    let mut meta = Vec::new();
    if let Some(r) = &m.repo {
        meta.push(format!("repository {}", escape_md(r)));
    }
    if let Some(c) = &m.created {
        meta.push(format!("manifest created {}", escape_md(c)));
    }
    if let Some(now) = input.now {
        meta.push(format!(
            "report of {}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if !meta.is_empty() {
        let _ = writeln!(s, "{}\n", capitalise(&meta.join(" · ")));
    }
    let done = tasks.iter().filter(|t| t.status.is_done()).count();
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|st| {
            let n = tasks.iter().filter(|t| t.status == *st).count();
            (n > 0).then(|| format!("{} {n}", st.as_str().replace('_', " ")))
        })
        .collect();
    let _ = writeln!(
        s,
        "**Tasks complete: {done}/{}** ({})\n",
        tasks.len(),
        counts.join(", ")
    );
    let starts: Vec<_> = tasks
        .iter()
        .filter_map(|t| parse_time(t.started_at.as_deref()))
        .collect();
    let ends: Vec<_> = tasks
        .iter()
        .filter_map(|t| parse_time(t.completed_at.as_deref()))
        .collect();
    if let Some(first) = starts.iter().min() {
        let all_finished = tasks.iter().all(|t| t.status.is_finished());
        let (end, how) = if all_finished {
            (ends.iter().max().copied(), "first start to last finish")
        } else {
            (input.now, "first start to now")
        };
        if let Some(end) = end {
            let _ = writeln!(
                s,
                "Elapsed: {} ({how})\n",
                human_duration((end - *first).num_seconds())
            );
        }
    }

    // What waits for a person.
    let _ = writeln!(s, "## Waiting for a person\n");
    let waiting: Vec<&&Task> = tasks
        .iter()
        .filter(|t| {
            matches!(
                t.status,
                Status::NeedsAttention | Status::Error | Status::Blocked
            )
        })
        .collect();
    if waiting.is_empty() {
        let _ = writeln!(s, "Nothing waits for a person.\n");
    } else {
        for t in waiting {
            let why = t
                .last_verdict
                .as_deref()
                .map(escape_md)
                .unwrap_or_else(|| "no verdict recorded".into());
            let _ = write!(
                s,
                "- **{}** {} — {}: {why}",
                escape_md(&t.id),
                escape_md(&t.title),
                t.status.as_str().replace('_', " ")
            );
            if let Some(e) = input
                .journal
                .iter()
                .rev()
                .find(|e| e.task.as_deref() == Some(t.id.as_str()))
            {
                let _ = write!(
                    s,
                    " (last event {} {}: {})",
                    escape_md(&e.ts),
                    escape_md(&e.kind),
                    escape_md(&e.message)
                );
            }
            s.push('\n');
        }
        s.push('\n');
    }

    // Phases.
    let _ = writeln!(s, "## Phases\n");
    let _ = writeln!(
        s,
        "| Phase | Tasks | Complete | State |\n|---|---:|---:|---|"
    );
    for ph in &m.phases {
        let n = ph.tasks.len();
        let c = ph.tasks.iter().filter(|t| t.status.is_done()).count();
        let state = if ph.tasks.iter().all(|t| t.status.is_finished()) {
            "finished"
        } else if ph
            .tasks
            .iter()
            .any(|t| t.started_at.is_some() || !matches!(t.status, Status::Pending))
        {
            "in progress"
        } else {
            "not started"
        };
        let _ = writeln!(s, "| {} | {n} | {c} | {state} |", escape_md(&ph.name));
    }
    s.push('\n');

    // Tasks, a table per phase.
    let heals: HashMap<&str, usize> =
        input
            .journal
            .iter()
            .filter(|e| e.kind == "heal")
            .fold(HashMap::new(), |mut acc, e| {
                if let Some(t) = &e.task {
                    *acc.entry(t.as_str()).or_default() += 1;
                }
                acc
            });
    let _ = writeln!(s, "## Tasks\n");
    for ph in &m.phases {
        let _ = writeln!(s, "### {}\n", escape_md(&ph.name));
        let _ = writeln!(
            s,
            "| Task | Issue | Title | Status | Attempts | Heals | Duration | Files | PR |\n|---|---|---|---|---:|---:|---|---|---|"
        );
        for t in &ph.tasks {
            let files = match input.facts.get(&t.id) {
                Some(f) if !f.files_changed.is_empty() => &f.files_changed,
                _ => &t.files,
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                escape_md(&t.id),
                t.issue.map(|n| format!("\\#{n}")).unwrap_or_default(),
                escape_md(&t.title),
                t.status.as_str().replace('_', " "),
                t.attempts.unwrap_or(0),
                heals.get(t.id.as_str()).copied().unwrap_or(0),
                duration(t, input.now),
                files
                    .iter()
                    .map(|f| escape_md(f))
                    .collect::<Vec<_>>()
                    .join(", "),
                pr(t),
            );
        }
        s.push('\n');
    }

    // Files changed and findings, when the edge knows them.
    let changed: BTreeSet<&String> = input
        .facts
        .values()
        .flat_map(|f| f.files_changed.iter())
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(s, "## Files changed\n");
        for f in changed {
            let _ = writeln!(s, "- {}", escape_md(f));
        }
        s.push('\n');
    }
    let findings: Vec<(&Task, &String)> = tasks
        .iter()
        .filter_map(|t| input.facts.get(&t.id).map(|f| (*t, f)))
        .flat_map(|(t, f)| f.findings.iter().map(move |x| (t, x)))
        .collect();
    if !findings.is_empty() {
        let _ = writeln!(s, "## Findings\n");
        for (t, f) in findings {
            let _ = writeln!(s, "- **{}** {}", escape_md(&t.id), escape_md(f));
        }
        s.push('\n');
    }
    let files: Vec<(&Task, &str, &str)> = tasks
        .iter()
        .filter_map(|t| input.facts.get(&t.id).map(|f| (*t, f)))
        .flat_map(|(t, f)| {
            let merged = f
                .findings_file
                .as_deref()
                .map(|p| (t, "merged review findings given to it", p));
            let last = f.final_message.as_deref().map(|p| (t, "final message", p));
            merged.into_iter().chain(last)
        })
        .collect();
    if !files.is_empty() {
        let _ = writeln!(s, "## Final messages and findings\n");
        for (t, what, path) in files {
            let _ = writeln!(
                s,
                "- **{}** {what}: `{}`",
                escape_md(&t.id),
                strip_controls(path).replace('`', "'")
            );
        }
        s.push('\n');
    }
    if !input.journal.is_empty() {
        let _ = writeln!(s, "## Latest events\n");
        let from = input.journal.len().saturating_sub(10);
        for e in &input.journal[from..] {
            let _ = writeln!(
                s,
                "- {} {} {}: {}",
                escape_md(&e.ts),
                e.task
                    .as_deref()
                    .map(escape_md)
                    .unwrap_or_else(|| "-".into()),
                escape_md(&e.kind),
                escape_md(&e.message)
            );
        }
        s.push('\n');
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `switchyard report MANIFEST [-o FILE]`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The manifest.
    pub manifest: PathBuf,
    /// Write the report to this file (atomically) instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The event journal to read (default: `<workdir>/logs/events.jsonl` of the manifest, when it exists).
    #[arg(long)]
    pub journal: Option<PathBuf>,
}

/// Runs `switchyard report`. Returns the exit code: 0, or 3 for bad input (after printing the
/// error, which names the file and the fix).
pub fn cli(args: ReportArgs) -> Result<u8> {
    let manifest = match Manifest::load(&args.manifest) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(3);
        }
    };
    let paths = crate::host::runtime::Paths::resolve(&args.manifest, &manifest, None).ok();
    let journal_path = args
        .journal
        .clone()
        .or_else(|| paths.as_ref().map(|p| p.logs.join("events.jsonl")));
    let mut journal = Vec::new();
    if let Some(p) = &journal_path {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                let (lines, skipped) = parse_journal(&text);
                if skipped > 0 {
                    eprintln!(
                        "{}: skipped {skipped} line(s) that are not journal entries",
                        p.display()
                    );
                }
                journal = lines;
            }
            Err(e) if args.journal.is_some() => {
                eprintln!("{}: cannot read the journal: {e}. Fix: name an existing events.jsonl, or leave out --journal", p.display());
                return Ok(3);
            }
            Err(_) => {}
        }
    }
    let mut facts = paths
        .as_ref()
        .map(|p| branch_facts(&p.repo, &manifest))
        .unwrap_or_default();
    if let Some(p) = &paths {
        log_facts(&p.logs, &manifest, &mut facts);
    }
    let now = chrono::Utc::now().fixed_offset();
    let text = render(&ReportInput {
        manifest: &manifest,
        journal: &journal,
        facts: &facts,
        now: Some(now),
    });
    match &args.output {
        Some(path) => {
            if let Err(e) = crate::core::manifest::write_atomic(path, text.as_bytes()) {
                eprintln!("{e}. Fix: choose a writable -o path");
                return Ok(3);
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}

/// The report of a run as it stands: the manifest, its journal (`<logs>/events.jsonl`, lines
/// that do not parse skipped) and the files changed on each branch. The headless run writes it
/// to `<workdir>/logs/report.md` when the run settles.
pub fn render_for_run(manifest: &Manifest, paths: &crate::host::runtime::Paths) -> String {
    let journal = std::fs::read_to_string(paths.logs.join("events.jsonl"))
        .map(|t| parse_journal(&t).0)
        .unwrap_or_default();
    let mut facts = branch_facts(&paths.repo, manifest);
    log_facts(&paths.logs, manifest, &mut facts);
    render(&ReportInput {
        manifest,
        journal: &journal,
        facts: &facts,
        now: Some(chrono::Utc::now().fixed_offset()),
    })
}

/// What the run's logs hold for each task: its final message and the merged review findings it
/// was given (their paths, and the findings one per line; see [`crate::core::final_message`]).
fn log_facts(logs: &Path, m: &Manifest, facts: &mut HashMap<String, TaskFacts>) {
    use crate::core::final_message as fm;
    for t in m.tasks() {
        let last = logs.join(fm::file_name(&t.id));
        let merged = logs.join(fm::findings_file_name(&t.id));
        let merged_text = std::fs::read_to_string(&merged).ok();
        if !last.exists() && merged_text.is_none() {
            continue;
        }
        let f = facts.entry(t.id.clone()).or_default();
        if last.exists() {
            f.final_message = Some(last.display().to_string());
        }
        if let Some(text) = merged_text {
            f.findings.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("- **"))
                    .map(|l| l.replacen("** ", ": ", 1)),
            );
            f.findings_file = Some(merged.display().to_string());
        }
    }
}

/// Files changed on each task's branch since its base commit, best effort (a task without a
/// branch or base commit, or a repository that cannot be read, has no facts).
fn branch_facts(repo: &Path, m: &Manifest) -> HashMap<String, TaskFacts> {
    let mut out = HashMap::new();
    let Ok(repo) = git2::Repository::open(repo) else {
        return out;
    };
    for t in m.tasks() {
        let (Some(base), Some(branch)) = (t.base_commit.as_deref(), t.branch.as_deref()) else {
            continue;
        };
        let files = (|| -> Result<Vec<String>, git2::Error> {
            let base = repo.revparse_single(base)?.peel_to_tree()?;
            let head = repo.revparse_single(branch)?.peel_to_tree()?;
            let diff = repo.diff_tree_to_tree(Some(&base), Some(&head), None)?;
            Ok(diff
                .deltas()
                .filter_map(|d| {
                    d.new_file()
                        .path()
                        .or(d.old_file().path())
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .collect())
        })();
        if let Ok(files) = files {
            out.insert(
                t.id.clone(),
                TaskFacts {
                    files_changed: files,
                    ..TaskFacts::default()
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escape_sequences_and_controls() {
        assert_eq!(
            strip_controls("a\x1b[1;31mb\x1b]0;title\x07c\x1b]8;;x\x1b\\d\u{9b}e\u{202e}f\x00"),
            "abcdef"
        );
    }

    #[test]
    fn escapes_markdown_syntax_in_one_line() {
        assert_eq!(
            escape_md("a|b *c*\n# [x](y) <b>"),
            "a\\|b \\*c\\* \\# \\[x\\](y) \\<b\\>"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(125), "2m 05s");
        assert_eq!(human_duration(3720), "1h 02m");
    }

    #[test]
    fn journal_skips_torn_lines() {
        let (lines, skipped) = parse_journal(
            "{\"ts\":\"t\",\"task\":\"a\",\"kind\":\"heal\",\"message\":\"m\"}\n{\"ts\":\n",
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(skipped, 1);
        assert_eq!(lines[0].task.as_deref(), Some("a"));
    }
}
