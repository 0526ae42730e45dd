//! Replaying a recorded session through the same emulator and classifier the workers use: the
//! tool for writing and debugging rules (`switchyard classify`) and the fixture measurements.
//!
//! A recording is `NAME.bytes` (raw PTY output), optionally `NAME.timing.jsonl` (one line per
//! chunk: `{"t_ms": 170.8, "dir": "out", "len": 8, "off": 0}`; `dir: "in"` lines are what the
//! recorder typed and are skipped) and `NAME.meta.json` (`{"size": {"cols": 120, "rows": 40}}`),
//! the format of the recorder in `tests/fixtures/codex/record.py`.

use crate::core::classify::{classify, Rule, Timing, Verdict, VerdictKind};
use crate::host::worker::{snapshot_of, Term};
use regex::Regex;
use std::path::{Path, PathBuf};

/// A recorded session: output chunks with their time (ms from start) and the terminal size.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// (time ms, bytes), in order.
    pub chunks: Vec<(u64, Vec<u8>)>,
    /// Rows of the terminal it was recorded in.
    pub rows: u16,
    /// Columns of the terminal it was recorded in.
    pub cols: u16,
}

impl Recording {
    /// Loads `PATH` (or `PATH.bytes`) with its timing and meta files when present. Without
    /// timing, all bytes arrive at t=0. Errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Recording, String> {
        let (base, bytes_path) = match path.to_str().and_then(|s| s.strip_suffix(".bytes")) {
            Some(b) => (PathBuf::from(b), path.to_path_buf()),
            None if path.is_file() => (path.to_path_buf(), path.to_path_buf()),
            None => (
                path.to_path_buf(),
                PathBuf::from(format!("{}.bytes", path.display())),
            ),
        };
        let bytes = std::fs::read(&bytes_path)
            .map_err(|e| format!("{}: cannot read the recording: {e}", bytes_path.display()))?;
        let sibling = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
        let (mut rows, mut cols) = (40u16, 120u16);
        if let Ok(text) = std::fs::read_to_string(sibling("meta.json")) {
            let meta: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", sibling("meta.json").display()))?;
            if let (Some(r), Some(c)) =
                (meta["size"]["rows"].as_u64(), meta["size"]["cols"].as_u64())
            {
                rows = r as u16;
                cols = c as u16;
            }
        }
        let mut chunks = Vec::new();
        match std::fs::read_to_string(sibling("timing.jsonl")) {
            Ok(text) => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                        format!(
                            "{}: line {}: not JSON: {e}",
                            sibling("timing.jsonl").display(),
                            n + 1
                        )
                    })?;
                    if v["dir"].as_str().is_some_and(|d| d != "out") {
                        continue;
                    }
                    let t = v["t_ms"].as_f64().unwrap_or(0.0).max(0.0) as u64;
                    let off = v["off"].as_u64().unwrap_or(0) as usize;
                    let len = v["len"].as_u64().unwrap_or(0) as usize;
                    let end = (off + len).min(bytes.len());
                    if off < end {
                        chunks.push((t, bytes[off..end].to_vec()));
                    }
                }
            }
            Err(_) => chunks.push((0, bytes)),
        }
        Ok(Recording { chunks, rows, cols })
    }

    /// Time of the last chunk, ms.
    pub fn end_ms(&self) -> u64 {
        self.chunks.last().map_or(0, |c| c.0)
    }
}

/// One change in the verdict timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When, ms from the start of the recording.
    pub at_ms: u64,
    /// The verdict from then on (after its rule's hold time).
    pub verdict: Verdict,
}

/// Replays the recording, classifying every `tick_ms` until `settle_ms` after the last byte, as a
/// live worker would be. Returns the verdict changes; the last one is the final verdict.
pub fn replay(rec: &Recording, rules: &[Rule], stall_ms: u64, settle_ms: u64) -> Vec<Step> {
    const TICK_MS: u64 = 100;
    let mut p = vt100::Parser::new_with_callbacks(rec.rows, rec.cols, 1000, Term::default());
    let mut next = 0;
    let mut last_output = 0;
    let mut last_change = 0;
    let mut last_screen = None;
    let mut held: Option<(VerdictKind, String, u64)> = None;
    let mut steps: Vec<Step> = Vec::new();
    let end = rec.end_ms() + settle_ms;
    let mut now = 0;
    while now <= end {
        while next < rec.chunks.len() && rec.chunks[next].0 <= now {
            p.process(&rec.chunks[next].1);
            last_output = rec.chunks[next].0;
            next += 1;
        }
        let snap = snapshot_of(&p);
        if last_screen.as_ref() != Some(&snap) {
            last_change = now;
            last_screen = Some(snap.clone());
        }
        let timing = Timing {
            now,
            started_at: 0,
            last_output_at: last_output,
            last_change_at: last_change,
            last_activity_at: 0,
        };
        let v = classify(&snap, &timing, rules, stall_ms);
        let since = match &held {
            Some((k, r, s)) if *k == v.kind && *r == v.evidence.rule => *s,
            _ => now,
        };
        held = Some((v.kind, v.evidence.rule.clone(), since));
        let hold = rules
            .iter()
            .find(|r| r.name == v.evidence.rule)
            .map_or(0, |r| r.hold_ms);
        if now.saturating_sub(since) >= hold {
            let changed = steps.last().is_none_or(|s| {
                s.verdict.kind != v.kind || s.verdict.evidence.rule != v.evidence.rule
            });
            if changed {
                steps.push(Step {
                    at_ms: now,
                    verdict: v,
                });
            }
        }
        now += TICK_MS;
    }
    steps
}

/// The seed orchestrator's classifier (its `check_progress.sh`): three regexes over the last 50
/// lines of the pane, tried in order DONE, ERROR, STUCK; otherwise RUNNING.
pub fn seed_classify(rec: &Recording) -> VerdictKind {
    let mut p = vt100::Parser::new_with_callbacks(rec.rows, rec.cols, 1000, Term::default());
    for (_, c) in &rec.chunks {
        p.process(c);
    }
    let lines = crate::ui::scroll::all_lines(&mut p);
    let tail = lines[lines.len().saturating_sub(50)..].join("\n");
    let done = Regex::new(r"(?m)(All tests passed|Successfully pushed|❯ $)").expect("valid");
    let error = Regex::new(r"(?i)(error:|failed:|FATAL|panic)").expect("valid");
    let stuck = Regex::new(r"(\? |Continue\?|y/n|Press any key)").expect("valid");
    if done.is_match(&tail) {
        VerdictKind::Done
    } else if error.is_match(&tail) {
        VerdictKind::Error
    } else if stuck.is_match(&tail) {
        VerdictKind::WaitingInput
    } else {
        VerdictKind::Running
    }
}

/// The timeline as text: one line per change, then the final verdict.
pub fn render(steps: &[Step]) -> String {
    let mut s = String::new();
    for st in steps {
        s.push_str(&format!(
            "{:>8.2}s  {:<14} [{}] {}\n",
            st.at_ms as f64 / 1000.0,
            st.verdict.kind.label(),
            st.verdict.evidence.rule,
            st.verdict.evidence.line
        ));
    }
    match steps.last() {
        Some(last) => s.push_str(&format!("final: {}\n", last.verdict)),
        None => s.push_str("final: (no verdict)\n"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::classify::RuleSpec;

    fn rules() -> Vec<Rule> {
        let spec = |name: &str, verdict, pattern: &str, quiet_ms, hold_ms| RuleSpec {
            name: name.into(),
            verdict,
            pattern: pattern.into(),
            region: "cursor".into(),
            source: "screen".into(),
            quiet_ms,
            hold_ms,
            retrying: false,
        };
        vec![
            Rule::compile(&spec(
                "yn",
                VerdictKind::WaitingInput,
                r"\(y/n\)\s*$",
                300,
                0,
            ))
            .unwrap(),
            Rule::compile(&spec("err", VerdictKind::Error, r"^error:", 0, 1000)).unwrap(),
        ]
    }

    fn rec(chunks: &[(u64, &str)]) -> Recording {
        Recording {
            chunks: chunks
                .iter()
                .map(|(t, s)| (*t, s.as_bytes().to_vec()))
                .collect(),
            rows: 10,
            cols: 40,
        }
    }

    #[test]
    fn a_prompt_is_waiting_input_after_its_quiet_time() {
        let steps = replay(
            &rec(&[(0, "working\r\n"), (1000, "Apply? (y/n) ")]),
            &rules(),
            60_000,
            2000,
        );
        let kinds: Vec<_> = steps.iter().map(|s| s.verdict.kind).collect();
        assert_eq!(kinds, vec![VerdictKind::Running, VerdictKind::WaitingInput]);
        assert_eq!(steps[1].at_ms, 1300);
    }

    #[test]
    fn a_held_rule_counts_only_after_its_hold() {
        let steps = replay(&rec(&[(0, "error: boom")]), &rules(), 60_000, 3000);
        let last = steps.last().unwrap();
        assert_eq!(last.verdict.kind, VerdictKind::Error);
        assert_eq!(last.at_ms, 1000);
        assert!(render(&steps).ends_with("final: error [err] error: boom\n"));
    }

    #[test]
    fn the_seed_regexes_fire_on_any_error_word_in_the_last_50_lines() {
        assert_eq!(
            seed_classify(&rec(&[(0, "error: warming cache\r\nstill going")])),
            VerdictKind::Error
        );
        assert_eq!(
            seed_classify(&rec(&[(0, "Apply? (y/n) ")])),
            VerdictKind::WaitingInput
        );
        assert_eq!(
            seed_classify(&rec(&[(0, "All tests passed\r\n")])),
            VerdictKind::Done
        );
    }

    #[test]
    fn loads_the_recorder_format() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("s");
        std::fs::write(base.with_extension("bytes"), b"hello world").unwrap();
        std::fs::write(
            dir.path().join("s.timing.jsonl"),
            "{\"t_ms\": 1.5, \"dir\": \"out\", \"len\": 5, \"off\": 0}\n{\"t_ms\": 2, \"dir\": \"in\", \"len\": 1, \"b64\": \"eQ==\"}\n{\"t_ms\": 900, \"dir\": \"out\", \"len\": 6, \"off\": 5}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("s.meta.json"),
            r#"{"size": {"cols": 80, "rows": 24}}"#,
        )
        .unwrap();
        let r = Recording::load(&base.with_extension("bytes")).unwrap();
        assert_eq!(
            r.chunks,
            vec![(1, b"hello".to_vec()), (900, b" world".to_vec())]
        );
        assert_eq!((r.rows, r.cols), (24, 80));
        let e = Recording::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing.bytes: cannot read"), "{e}");
    }
}
