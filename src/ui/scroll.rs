//! Scrollback and search over a worker's emulator. The emulator's view offset is only moved
//! while the lock is held and always put back to 0, so the classifier (which reads the same
//! emulator) always sees the live screen.
//!
//! A worker's emulator keeps `scrollback_memory_lines` of history; a person may read
//! `scrollback_lines`. Past what the emulator holds (PgUp beyond it, `g`, a search that finds
//! nothing newer), the control room replays the newest part of the worker's transcript into a
//! [`History`] (off the loop, [`replay_history`]) and reads that until the person leaves
//! scrollback.

use crate::host::transcript::{TranscriptError, TranscriptLimits, TranscriptReader};
use crate::host::worker::{Emulator, Term};
use std::path::PathBuf;

/// The person's place in one worker's scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrollState {
    /// Task index.
    pub task: usize,
    /// Rows scrolled back from the live screen (0 = live).
    pub offset: usize,
    /// The search text.
    pub query: String,
    /// True while the search text is being typed.
    pub editing: bool,
    /// The line (index into [`all_lines`]) of the current match.
    pub found: Option<usize>,
}

impl ScrollState {
    /// Scrollback for `task` at the live screen.
    pub fn new(task: usize) -> ScrollState {
        ScrollState {
            task,
            offset: 0,
            query: String::new(),
            editing: false,
            found: None,
        }
    }
}

/// What to replay for [`replay_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Task index.
    pub task: usize,
    /// The worker's transcript (`logs/<id>.log`).
    pub transcript: PathBuf,
    /// The limits it is written with (where its marker is).
    pub limits: TranscriptLimits,
    /// The worker's screen size now, rows × cols.
    pub size: (u16, u16),
    /// Lines of scrollback wanted (`scrollback_lines`).
    pub lines: usize,
}

/// A worker's scrollback replayed from its transcript: a temporary emulator of the worker's
/// size with `lines` of history, and those lines as text (oldest first, the screen last), taken
/// once so search and copy do not walk the emulator again. Memory: about `lines × cols × 32` B
/// for the emulator plus the text (5 000 × 160 columns: 24.6 MiB + ~1 MiB); one per control room
/// at most, dropped when the person leaves scrollback.
pub struct History {
    /// Task index.
    pub task: usize,
    /// The replayed emulator (its view offset is moved only while drawing and put back to 0).
    pub emulator: Emulator,
    /// Every line it holds, oldest first (as [`all_lines`] gives them).
    pub lines: Vec<String>,
    /// Rows of scrollback above its screen.
    pub depth: usize,
    /// Rows of its screen.
    pub rows: usize,
    /// Bytes of transcript replayed.
    pub bytes: usize,
    /// How long reading and replaying took, ms.
    pub took_ms: u64,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("task", &self.task)
            .field("lines", &self.lines.len())
            .field("depth", &self.depth)
            .field("bytes", &self.bytes)
            .field("took_ms", &self.took_ms)
            .finish()
    }
}

/// What to do when a [`History`] asked for arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Show this many rows above the screen (or the oldest there is).
    Offset(usize),
    /// Go to the oldest line.
    Top,
    /// Search older (`back`) or newer, from the line `from_bottom` lines above the end (`None`:
    /// from the end).
    Search {
        /// Older matches.
        back: bool,
        /// Where the search starts, counted from the last line.
        from_bottom: Option<usize>,
    },
}

/// Most bytes of transcript one replay reads (the default transcript keeps at most about 8.3 MiB).
pub const REPLAY_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Replays the newest part of a worker's transcript into a fresh emulator of `req.size` with
/// `req.lines` of history: first the bytes holding `lines + rows` line feeds, and twice as many
/// again while the emulator ends up with fewer rows than wanted (lines redrawn in place, cursor
/// moves) and the transcript has more. Queries in the replay are not answered.
///
/// Errors: the transcript cannot be opened or read ([`TranscriptError`] names the file).
pub fn replay_history(req: &HistoryRequest) -> Result<History, TranscriptError> {
    let started = std::time::Instant::now();
    let reader = TranscriptReader::new(&req.transcript, req.limits);
    let (rows, cols) = req.size;
    let mut want = req.lines.saturating_add(rows as usize);
    let mut before = 0usize;
    loop {
        let (bytes, whole) = reader.newest_lines(want, REPLAY_MAX_BYTES)?;
        let mut em = vt100::Parser::new_with_callbacks(rows, cols, req.lines, Term::default());
        em.callbacks_mut().reply_allowance = Some(0);
        let mut cap = crate::host::stream_cap::StreamCap::default();
        for chunk in bytes.chunks(64 * 1024) {
            cap.feed(chunk, |part| em.process(part));
        }
        let got = depth(&mut em);
        // More line feeds bring no more bytes once the budget is reached.
        let read_all = whole || bytes.len() <= before;
        before = bytes.len();
        if got >= req.lines || read_all || want >= usize::MAX / 2 {
            let lines = all_lines(&mut em);
            return Ok(History {
                task: req.task,
                emulator: em,
                lines,
                depth: got,
                rows: rows as usize,
                bytes: bytes.len(),
                took_ms: started.elapsed().as_millis() as u64,
            });
        }
        want *= 2;
    }
}

/// Every line the emulator still has, oldest first: the scrollback, then the visible screen.
pub fn all_lines(p: &mut Emulator) -> Vec<String> {
    let (rows, cols) = p.screen().size();
    p.screen_mut().set_scrollback(usize::MAX);
    let depth = p.screen().scrollback();
    let mut lines = Vec::with_capacity(depth + rows as usize);
    // Walk from the oldest window to the live one, a screenful at a time; the window at offset
    // `off` shows lines [depth - off, depth - off + rows).
    let mut off = depth;
    loop {
        p.screen_mut().set_scrollback(off);
        let top = depth - off;
        let skip = lines.len().saturating_sub(top);
        lines.extend(p.screen().rows(0, cols).skip(skip));
        if off == 0 {
            break;
        }
        off = off.saturating_sub(rows as usize);
    }
    p.screen_mut().set_scrollback(0);
    lines
}

/// The scrollback depth (rows above the live screen) the emulator holds now.
pub fn depth(p: &mut Emulator) -> usize {
    p.screen_mut().set_scrollback(usize::MAX);
    let d = p.screen().scrollback();
    p.screen_mut().set_scrollback(0);
    d
}

/// Finds `query` (case-insensitive) in `lines`, searching older (`back`) or newer from `from`
/// (exclusive). Returns the line index.
pub fn find(lines: &[String], query: &str, from: usize, back: bool) -> Option<usize> {
    if query.is_empty() {
        return None;
    }
    let q = query.to_lowercase();
    let hit = |i: &usize| lines[*i].to_lowercase().contains(&q);
    if back {
        (0..from.min(lines.len())).rev().find(hit)
    } else {
        (from + 1..lines.len()).find(hit)
    }
}

/// The offset that shows line `line` (of `total` lines, `rows` visible) near the top third.
pub fn offset_showing(line: usize, total: usize, rows: usize, depth: usize) -> usize {
    let live_top = total.saturating_sub(rows);
    let want_top = line.saturating_sub(rows / 3);
    live_top.saturating_sub(want_top).min(depth)
}

/// OSC 52 "copy to clipboard" for `text` (the terminal puts it on the system clipboard).
pub fn osc52(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("\x1b]52;c;{b64}\x07").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::worker::Term;

    fn emulator_with(lines: usize) -> Emulator {
        let mut p = vt100::Parser::new_with_callbacks(5, 20, 100, Term::default());
        for i in 0..lines {
            p.process(format!("line {i}\r\n").as_bytes());
        }
        p
    }

    #[test]
    fn all_lines_walks_scrollback_then_screen_and_restores_the_view() {
        let mut p = emulator_with(12);
        let lines = all_lines(&mut p);
        let text: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
        assert_eq!(
            &text[..12],
            (0..12)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()
                .as_slice()
        );
        assert_eq!(
            text.len(),
            12 + 1,
            "8 scrolled off + 5 visible (the last one empty)"
        );
        assert_eq!(p.screen().scrollback(), 0, "the live view is restored");
        assert_eq!(depth(&mut p), 8);
    }

    fn transcript_of(dir: &std::path::Path, bytes: &[u8]) -> HistoryRequest {
        let path = dir.join("t1.log");
        let limits = TranscriptLimits::default();
        let mut t = crate::host::transcript::Transcript::open(&path, limits).unwrap();
        std::io::Write::write_all(&mut t, bytes).unwrap();
        HistoryRequest {
            task: 3,
            transcript: path,
            limits,
            size: (5, 20),
            lines: 100,
        }
    }

    #[test]
    fn a_replay_reads_only_the_newest_lines_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..1000).map(|i| format!("line {i}\r\n")).collect();
        let h = replay_history(&transcript_of(dir.path(), text.as_bytes())).unwrap();
        assert_eq!((h.task, h.depth, h.rows), (3, 100, 5));
        assert!(
            h.bytes < text.len() / 5,
            "{} of {} bytes",
            h.bytes,
            text.len()
        );
        assert_eq!(h.lines[0].trim_end(), "line 896");
        assert_eq!(h.lines[h.lines.len() - 2].trim_end(), "line 999");
        assert_eq!(h.emulator.screen().scrollback(), 0, "the live view");
    }

    #[test]
    fn a_replay_reads_further_back_when_line_feeds_made_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut text: String = (0..300).map(|i| format!("line {i}\r\n")).collect();
        // A status line redrawn in place: cursor up, rewrite, line feed (no row scrolls off).
        for i in 0..2000 {
            text.push_str(&format!("\x1b[A\rstatus {i}\r\n"));
        }
        let h = replay_history(&transcript_of(dir.path(), text.as_bytes())).unwrap();
        assert_eq!(h.depth, 100, "the rows came from before the redraws");
        assert_eq!(h.lines[0].trim_end(), "line 196");
        assert!(h.lines.iter().any(|l| l.starts_with("status 1999")));
    }

    #[test]
    fn search_goes_both_ways_case_insensitively() {
        let lines: Vec<String> = ["a", "Error one", "b", "error two", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(find(&lines, "ERROR", 5, true), Some(3));
        assert_eq!(find(&lines, "error", 3, true), Some(1));
        assert_eq!(find(&lines, "error", 1, false), Some(3));
        assert_eq!(find(&lines, "nothing", 5, true), None);
    }

    #[test]
    fn offsets_and_clipboard() {
        assert_eq!(offset_showing(0, 100, 10, 90), 90);
        assert_eq!(offset_showing(95, 100, 10, 90), 0);
        assert_eq!(osc52("hi"), b"\x1b]52;c;aGk=\x07");
    }
}
