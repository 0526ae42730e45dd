//! The event journal (`<workdir>/logs/events.jsonl`): one JSON object per line, appended.
//!
//! A kill in the middle of a write can leave a torn last line (no newline at its end). A run
//! opens the journal with [`Journal::open`], which cuts such a line off before appending, and
//! writes each entry with one `write` call of the whole line ([`Journal::append`]), so later
//! lines never glue onto a torn one. Readers ([`read_journal`]) skip lines that do not parse
//! and say how many they skipped.

use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Errors from the journal, naming the file and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {action} failed: {source}; check the log directory exists and is writable")]
pub struct JournalError {
    /// The journal file.
    pub path: PathBuf,
    /// What was being done (`open`, `truncate a torn last line`, `append`, `read`).
    pub action: &'static str,
    /// The OS error.
    pub source: std::io::Error,
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending, after cutting off a torn last line
    /// a kill left. Returns the journal and the number of bytes cut off (0 when the file was
    /// whole), which the caller should report (e.g. as a journal entry).
    ///
    /// Errors: the file cannot be opened, read or truncated.
    pub fn open(path: &Path) -> Result<(Journal, u64), JournalError> {
        let e = |action| {
            let path = path.to_path_buf();
            move |source| JournalError {
                path,
                action,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(e("open"))?;
        let len = file.metadata().map_err(e("open"))?.len();
        let keep = whole_lines_len(&mut file, len).map_err(e("read"))?;
        if keep < len {
            file.set_len(keep).map_err(e("truncate a torn last line"))?;
            file.sync_all().map_err(e("truncate a torn last line"))?;
        }
        drop(file);
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(e("open"))?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            len - keep,
        ))
    }

    /// Appends `entry` as one line, with a single write of the whole line, so a kill leaves
    /// either the whole line or a torn tail that the next [`Journal::open`] cuts off.
    ///
    /// Errors: the write failed (disk full, file removed read-only, ...).
    pub fn append(&mut self, entry: &Value) -> Result<(), JournalError> {
        let mut line = entry.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| JournalError {
                path: self.path.clone(),
                action: "append",
                source,
            })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The length of `file` up to and including its last newline (`len` when it ends in one or is
/// empty). Reads backwards from the end in 64 KiB blocks, so a long journal costs one block.
fn whole_lines_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// What [`read_journal`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalRead {
    /// Every line that parsed as JSON, in file order.
    pub entries: Vec<Value>,
    /// 1-based numbers of the lines that did not (torn, not UTF-8, not JSON); empty lines are
    /// ignored without counting.
    pub skipped: Vec<usize>,
}

/// Reads every entry of the journal at `path`, skipping lines that do not parse.
///
/// Errors: the file cannot be opened or read.
pub fn read_journal(path: &Path) -> Result<JournalRead, JournalError> {
    let e = |action| {
        let path = path.to_path_buf();
        move |source| JournalError {
            path,
            action,
            source,
        }
    };
    let mut reader = BufReader::new(File::open(path).map_err(e("open"))?);
    let mut out = JournalRead::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(e("read"))? == 0 {
            break;
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v) => out.entries.push(v),
            Err(_) => out.skipped.push(number),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"kind\":\"start\"}\n{\"kind\":\"spa").unwrap();
        let (mut j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut, 12);
        j.append(&json!({"kind": "resume"})).unwrap();
        drop(j);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"kind\":\"start\"}\n{\"kind\":\"resume\"}\n"
        );
        let read = read_journal(&path).unwrap();
        assert_eq!(read.entries.len(), 2);
        assert!(read.skipped.is_empty());
    }

    #[test]
    fn a_whole_or_new_journal_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (mut j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut, 0);
        j.append(&json!({"n": 1})).unwrap();
        drop(j);
        let (mut j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut, 0);
        j.append(&json!({"n": 2})).unwrap();
        assert_eq!(
            std::fs::read_to_string(j.path()).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
    }

    #[test]
    fn a_journal_of_one_torn_line_longer_than_a_block_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text = "{\"ok\":1}\n".to_string();
        text.push_str(&"x".repeat(200_000));
        std::fs::write(&path, &text).unwrap();
        let (_j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut, 200_000);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"ok\":1}\n");
        std::fs::write(&path, "y".repeat(100_000)).unwrap();
        let (_j, cut) = Journal::open(&path).unwrap();
        assert_eq!(cut, 100_000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn readers_skip_lines_that_do_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut bytes = b"{\"a\":1}\n{\"torn\":\n\n".to_vec();
        bytes.extend_from_slice(b"\xff\xfe\n{\"b\":2}\n{\"c\":");
        std::fs::write(&path, bytes).unwrap();
        let read = read_journal(&path).unwrap();
        assert_eq!(read.entries, vec![json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(read.skipped, vec![2, 4, 6]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/events.jsonl");
        let e = Journal::open(&path).unwrap_err().to_string();
        assert!(e.contains("missing/events.jsonl: open failed"), "{e}");
    }
}
