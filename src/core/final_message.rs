//! Final messages: each worker's last answer, kept at `<workdir>/logs/<id>.final.md` and given to
//! the tasks that list it under `context` (after the Codex orchestration guide: "capture only the
//! final worker message to keep context small").
//!
//! Where a final message comes from, in order (the runtime reads the files; everything here is
//! pure):
//! 1. the file the agent wrote itself through `{final_message}` (codex exec
//!    `--output-last-message FILE`, codex-cli 0.169.0);
//! 2. with `final_message = "json"` in the profile, JSON lines in the transcript's tail
//!    ([`from_json_lines`]): the last `codex exec --json` event `item.completed` whose item is an
//!    `agent_message` (its `text`), or `claude -p --output-format json`'s object with
//!    `"type": "result"` (its `result`; Claude Code 2.x headless docs);
//! 3. otherwise the transcript heuristic ([`from_transcript`]): the transcript's tail is replayed
//!    through a terminal emulator 400 columns wide (so nothing wraps), trailing blank lines and
//!    the agent's own chrome (box-drawing rules, input boxes, a bare prompt such as `>` or `›`)
//!    are dropped, and the block of text above them, up to the previous such line (at most 200
//!    lines), is the message. It is a heuristic: it can include tool output printed just before
//!    the answer, and it cannot see past a full-screen agent's last frame.
//!
//! Every message is cleaned of control characters ([`clean`]) before it is kept, so the file is
//! safe to print and to pass on.
//!
//! A task whose `context` names reviewers (role `reviewer`) gets their findings merged
//! ([`render_context`]): each reviewer's final message is read with [`crate::core::findings::parse`],
//! the lists are merged with [`crate::core::findings::merge`] into one ranked, de-duplicated list, kept
//! at `<workdir>/logs/<id>.context-findings.md` and put in the prompt under "Review findings".

use crate::core::findings::{self, Finding};
use std::fmt::Write as _;

/// Longest final message kept, in bytes (the end is cut, at a character boundary).
pub const MAX_BYTES: usize = 64 * 1024;
/// How much of the transcript's end is read for a final message, in bytes.
pub const TAIL_BYTES: u64 = 256 * 1024;
/// Most lines the transcript heuristic takes.
const MAX_LINES: usize = 200;
/// Rows of the emulator the transcript heuristic replays the tail through (no scrollback).
pub const TRANSCRIPT_ROWS: u16 = MAX_LINES as u16 + 56;
/// Columns of that emulator: wide enough that no line wraps.
pub const TRANSCRIPT_COLS: u16 = 400;

/// The file name of a task's final message inside `<workdir>/logs`.
pub fn file_name(id: &str) -> String {
    format!("{id}.final.md")
}

/// The file name of the merged findings a task is given, inside `<workdir>/logs`.
pub fn findings_file_name(id: &str) -> String {
    format!("{id}.context-findings.md")
}

/// One task named under another task's `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSource {
    /// Its id.
    pub id: String,
    /// Its role is `reviewer`: its final message holds findings to merge.
    pub reviewer: bool,
    /// Its `lens`, if any.
    pub lens: Option<String>,
}

/// Removes what must not reach a terminal or a prompt: control characters other than newline
/// and tab (escape sequences lose their ESC and become inert text), `\r` line ends, trailing
/// spaces; cuts at [`MAX_BYTES`]. Trims blank lines at both ends.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_BYTES));
    for line in text.replace("\r\n", "\n").split('\n') {
        let line: String = line
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .filter(|c| !is_bidi_control(*c))
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
        if out.len() > MAX_BYTES {
            let mut cut = MAX_BYTES;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("\n[… cut at 64 KiB]\n");
            break;
        }
    }
    out.trim_matches('\n').to_string()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// The last agent message in JSON lines (see the module doc for the two shapes), or `None`.
/// Lines that are not JSON objects are skipped; `\r` and leading spaces are ignored.
pub fn from_json_lines(text: &str) -> Option<String> {
    let mut last = None;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let found = match v.get("type").and_then(|t| t.as_str()) {
            Some("item.completed") => v
                .get("item")
                .filter(|i| i.get("type").and_then(|t| t.as_str()) == Some("agent_message"))
                .and_then(|i| i.get("text"))
                .and_then(|t| t.as_str()),
            Some("result") => v.get("result").and_then(|r| r.as_str()),
            _ => None,
        };
        if let Some(text) = found.filter(|t| !t.trim().is_empty()) {
            last = Some(text.to_string());
        }
    }
    last
}

/// The transcript's tail (raw PTY bytes) as plain lines, replayed through a terminal emulator
/// wide enough that no line wraps.
pub fn transcript_lines(tail: &[u8]) -> Vec<String> {
    let mut p = vt100::Parser::new(TRANSCRIPT_ROWS, TRANSCRIPT_COLS, 0);
    p.process(tail);
    let screen = p.screen();
    screen
        .rows(0, TRANSCRIPT_COLS)
        .map(|r| r.trim_end().to_string())
        .collect()
}

/// A line that belongs to the agent's frame, not to its message: a bare prompt (`>`, `›`, `❯`,
/// `$`, `#`, `%` alone, or inside an input box) or a line of box-drawing characters.
fn is_chrome(line: &str) -> bool {
    let t = line.trim();
    if t.is_empty() {
        return false;
    }
    let inner = t
        .trim_matches(|c: char| matches!(c, '│' | '┃' | '|'))
        .trim();
    if matches!(inner, ">" | "›" | "❯" | "$" | "#" | "%" | "> " | "›_") {
        return true;
    }
    t.chars()
        .all(|c| ('\u{2500}'..='\u{257f}').contains(&c) || c == ' ' || c == '-' || c == '=')
        && t.chars().filter(|c| !c.is_whitespace()).count() >= 3
}

/// The transcript heuristic (see the module doc) over the transcript's tail, or `None` when it
/// holds no text.
pub fn from_transcript(tail: &[u8]) -> Option<String> {
    let lines = transcript_lines(tail);
    let mut end = lines.len();
    while end > 0 && (lines[end - 1].trim().is_empty() || is_chrome(&lines[end - 1])) {
        end -= 1;
    }
    if end == 0 {
        return None;
    }
    let mut start = end;
    while start > 0 && end - start < MAX_LINES && !is_chrome(&lines[start - 1]) {
        start -= 1;
    }
    let text = clean(&lines[start..end].join("\n"));
    (!text.is_empty()).then_some(text)
}

/// What a task's `context` adds to its prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedContext {
    /// Markdown appended to the prompt (empty when the task has no context).
    pub section: String,
    /// The merged findings file's text, when reviewers are among the context.
    pub findings: Option<String>,
    /// The merged list itself.
    pub merged: Vec<Finding>,
}

/// Builds the context part of a prompt for `task` from its context tasks and their final
/// messages (`None`: the task left none). Reviewers' messages become one merged findings list;
/// a reviewer whose message holds no findings JSON is named with the reason and its message is
/// passed on as it is, so nothing is lost silently.
pub fn render_context(task: &str, sources: &[(ContextSource, Option<String>)]) -> RenderedContext {
    let mut out = RenderedContext::default();
    if sources.is_empty() {
        return out;
    }
    let mut section = String::from("\n\n# Context from earlier tasks\n");
    let mut lists: Vec<(String, Vec<Finding>)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut unparsed: Vec<(String, String)> = Vec::new();
    for (src, text) in sources {
        let label = match &src.lens {
            Some(l) => format!("{} (lens: {})", src.id, l),
            None => src.id.clone(),
        };
        if src.reviewer {
            match text.as_deref().map(findings::parse) {
                Some(Ok(list)) => {
                    notes.push(format!("- {label}: {} finding(s)", list.len()));
                    lists.push((src.id.clone(), list));
                }
                Some(Err(e)) => {
                    notes.push(format!(
                        "- {label}: its final message could not be read as findings ({e})"
                    ));
                    unparsed.push((label, text.clone().unwrap_or_default()));
                }
                None => notes.push(format!("- {label}: left no final message")),
            }
            continue;
        }
        let _ = write!(section, "\n## Final message of {label}\n\n");
        match text {
            Some(t) => {
                section.push_str(t.trim_end());
                section.push('\n');
            }
            None => section.push_str("(none: the task left no final message)\n"),
        }
    }
    if !notes.is_empty() {
        let merged = findings::merge(&lists);
        let mut file = format!("# Review findings for {task}\n\nMerged from {} reviewer(s), ranked by severity and agreement, duplicates (same file, line and message) removed:\n\n", notes.len());
        for n in &notes {
            file.push_str(n);
            file.push('\n');
        }
        file.push('\n');
        if merged.is_empty() {
            file.push_str("No findings.\n");
        } else {
            file.push_str(&findings::to_markdown(&merged));
        }
        for (label, text) in &unparsed {
            let _ = write!(
                file,
                "\n## Final message of {label} (no findings JSON)\n\n{}\n",
                text.trim_end()
            );
        }
        let body = file.split_once("\n\n").map_or("", |(_, b)| b);
        let _ = write!(section, "\n## Review findings\n\n{body}");
        out.findings = Some(file);
        out.merged = merged;
    }
    out.section = section;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(id: &str, reviewer: bool, lens: Option<&str>) -> ContextSource {
        ContextSource {
            id: id.into(),
            reviewer,
            lens: lens.map(str::to_string),
        }
    }

    #[test]
    fn codex_and_claude_json_give_their_last_message() {
        let codex = concat!(
            "{\"type\":\"thread.started\",\"thread_id\":\"x\"}\r\n",
            "{\"type\":\"item.completed\",\"item\":{\"id\":\"i0\",\"type\":\"agent_message\",\"text\":\"first\"}}\r\n",
            "{\"type\":\"item.completed\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\",\"text\":\"ls\"}}\r\n",
            "{\"type\":\"item.completed\",\"item\":{\"id\":\"i2\",\"type\":\"agent_message\",\"text\":\"Done: edited src/a.rs\"}}\r\n",
            "{\"type\":\"turn.completed\",\"usage\":{}}\r\n",
        );
        assert_eq!(
            from_json_lines(codex).as_deref(),
            Some("Done: edited src/a.rs")
        );
        let claude = "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"All tests pass.\\nSee src/b.rs.\",\"session_id\":\"s\"}\n";
        assert_eq!(
            from_json_lines(claude).as_deref(),
            Some("All tests pass.\nSee src/b.rs.")
        );
        assert_eq!(from_json_lines("no json here\n{broken"), None);
    }

    #[test]
    fn the_transcript_heuristic_takes_the_block_above_the_prompt() {
        let tail = concat!(
            "\x1b[1;36m● agent\x1b[0m working\r\n",
            "────────────────────\r\n",
            "Summary: fixed the \x1b[1mparser\x1b[0m.\r\n",
            "\r\n",
            "Run `cargo test` to check.\r\n",
            "╭──────────╮\r\n",
            "│ >        │\r\n",
            "╰──────────╯\r\n",
            "\r\n",
        );
        assert_eq!(
            from_transcript(tail.as_bytes()).as_deref(),
            Some("Summary: fixed the parser.\n\nRun `cargo test` to check.")
        );
        assert_eq!(from_transcript(b"\r\n\r\n"), None);
        // A line longer than a PTY is wide stays one line.
        let long = format!("{}\r\n", "x".repeat(300));
        assert_eq!(from_transcript(long.as_bytes()).unwrap().len(), 300);
    }

    #[test]
    fn cleaning_removes_controls_and_caps_the_size() {
        assert_eq!(
            clean("a\x1b]0;pwned\x07b\r\n\u{202e}c  \n\n"),
            "a]0;pwnedb\nc"
        );
        let big = "y".repeat(MAX_BYTES + 10);
        assert!(clean(&big).ends_with("[… cut at 64 KiB]"));
    }

    #[test]
    fn reviewers_are_merged_and_other_context_is_quoted() {
        let a = "Looks mostly fine.\n```json\n[{\"severity\":\"major\",\"file\":\"src/a.rs\",\"line\":3,\"message\":\"Unchecked unwrap\"},{\"severity\":\"minor\",\"file\":\"README.md\",\"message\":\"typo\"}]\n```\n";
        let b = "{\"findings\":[{\"severity\":\"critical\",\"file\":\"src/a.rs\",\"line\":3,\"message\":\"unchecked  unwrap!\"}]}";
        let r = render_context(
            "fix",
            &[
                (
                    src("scout", false, None),
                    Some("src/a.rs holds the parser.".into()),
                ),
                (src("r1", true, Some("correctness")), Some(a.into())),
                (src("r2", true, Some("risks")), Some(b.into())),
                (
                    src("r3", true, Some("style")),
                    Some("I found nothing to say.".into()),
                ),
                (src("r4", true, None), None),
            ],
        );
        assert_eq!(r.merged.len(), 2);
        assert_eq!(r.merged[0].severity, findings::Severity::Critical);
        assert_eq!(r.merged[0].reviewers, ["r1", "r2"]);
        let f = r.findings.unwrap();
        assert!(f.starts_with("# Review findings for fix\n"), "{f}");
        assert!(
            f.contains("- r3 (lens: style): its final message could not be read as findings"),
            "{f}"
        );
        assert!(f.contains("- r4: left no final message"), "{f}");
        assert!(f.contains("## Final message of r3 (lens: style) (no findings JSON)\n\nI found nothing to say."), "{f}");
        assert!(r
            .section
            .contains("## Final message of scout\n\nsrc/a.rs holds the parser.\n"));
        assert!(
            r.section.contains("## Review findings\n\n"),
            "{}",
            r.section
        );
        assert!(
            r.section
                .contains("- **critical** src/a.rs:3: Unchecked unwrap (r1, r2)"),
            "{}",
            r.section
        );
        assert_eq!(render_context("x", &[]), RenderedContext::default());
    }
}
