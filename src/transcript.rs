//! A worker's raw transcript (`logs/<id>.log`) with a bounded size on disk.
//!
//! A worker can print without end (a flood of random bytes wrote 625 MB in 30 s). The transcript
//! keeps the **head** (the first [`TranscriptLimits::head_bytes`] bytes: how the agent started)
//! and the **tail** (the newest output, rotated in segments of
//! [`TranscriptLimits::tail_bytes`]):
//!
//! - `<id>.log` holds the head, then, once the output went past it, a one-line marker, then the
//!   newest tail segment (at most `tail_bytes`).
//! - When that segment is full it is moved to `<id>.log.1` (replacing the older one) and
//!   `<id>.log` goes back to head + marker.
//!
//! So the files never exceed `head_bytes + marker + tail_bytes` and `tail_bytes`, and the newest
//! `tail_bytes` of output (or more) are always on disk. Read in order: the head part of
//! `<id>.log`, then `<id>.log.1`, then the rest of `<id>.log`. Output in the middle is dropped.
//! Reopening the same file (a new attempt of the task) carries on where it was, provided the
//! limits are the same.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Sizes of a [`Transcript`], in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscriptLimits {
    /// The first bytes of output kept for good (default 256 KiB; 0 keeps no head).
    pub head_bytes: u64,
    /// The size of one tail segment (default 4 MiB; at least 1). Between `tail_bytes` and
    /// `2 * tail_bytes` of the newest output are kept.
    pub tail_bytes: u64,
}

impl Default for TranscriptLimits {
    fn default() -> Self {
        TranscriptLimits {
            head_bytes: 256 * 1024,
            tail_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Errors from a transcript, naming the file and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("transcript {path}: {action} failed: {source}; check the log directory is writable and has space")]
pub struct TranscriptError {
    /// The transcript (or its rotated segment).
    pub path: PathBuf,
    /// What was being done (`open`, `write`, `rotate`).
    pub action: &'static str,
    /// The OS error.
    pub source: std::io::Error,
}

impl From<TranscriptError> for std::io::Error {
    fn from(e: TranscriptError) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

/// An open transcript, appending with the head/tail bound. Also a [`std::io::Write`].
#[derive(Debug)]
pub struct Transcript {
    path: PathBuf,
    rotated: PathBuf,
    file: File,
    limits: TranscriptLimits,
    /// Bytes of the head written so far (≤ `head_bytes`).
    head: u64,
    /// Whether the marker follows the head.
    marked: bool,
    /// Bytes of the current tail segment in `path`.
    tail: u64,
}

impl Transcript {
    /// Opens (creating it and its directory) the transcript at `path` for appending.
    ///
    /// Errors: the directory or file cannot be created, opened or read.
    pub fn open(path: &Path, limits: TranscriptLimits) -> Result<Transcript, TranscriptError> {
        let limits = TranscriptLimits {
            tail_bytes: limits.tail_bytes.max(1),
            ..limits
        };
        let e = |action| {
            let path = path.to_path_buf();
            move |source| TranscriptError {
                path,
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(e("create the log directory"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(e("open"))?;
        let len = file.metadata().map_err(e("open"))?.len();
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        let mut t = Transcript {
            path: path.to_path_buf(),
            rotated: PathBuf::from(rotated),
            file: File::open(path).map_err(e("open"))?,
            limits,
            head: len.min(limits.head_bytes),
            marked: false,
            tail: 0,
        };
        if len > limits.head_bytes {
            let marker = t.marker();
            let mut found = vec![0u8; marker.len()];
            file.seek(SeekFrom::Start(limits.head_bytes))
                .map_err(e("read"))?;
            t.marked = file.read_exact(&mut found).is_ok() && found == marker;
            t.tail = len - t.tail_start();
        }
        t.file = file;
        Ok(t)
    }

    /// Appends `bytes`, rotating the tail as needed (see the module documentation).
    ///
    /// Errors: a write, or the move of the tail segment to `<id>.log.1`, failed.
    pub fn append(&mut self, mut bytes: &[u8]) -> Result<(), TranscriptError> {
        if self.head < self.limits.head_bytes {
            let n = bytes
                .len()
                .min((self.limits.head_bytes - self.head) as usize);
            self.write_raw(&bytes[..n])?;
            self.head += n as u64;
            bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            if self.tail >= self.limits.tail_bytes {
                self.rotate()?;
            }
            let room = self.limits.tail_bytes - self.tail;
            let n = bytes.len().min(room as usize);
            self.write_raw(&bytes[..n])?;
            self.tail += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// The transcript file (`<id>.log`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotated tail segment (`<id>.log.1`), which exists once the first segment filled.
    pub fn rotated_path(&self) -> &Path {
        &self.rotated
    }

    /// The line written after the head when output first goes past it.
    fn marker(&self) -> Vec<u8> {
        let name = self
            .rotated
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "\r\n[switchyard: the first {} bytes are above; older output is in {name}, the newest below; output in between was dropped]\r\n",
            self.limits.head_bytes
        )
        .into_bytes()
    }

    fn tail_start(&self) -> u64 {
        self.limits.head_bytes
            + if self.marked {
                self.marker().len() as u64
            } else {
                0
            }
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), TranscriptError> {
        self.file
            .write_all(bytes)
            .map_err(|source| TranscriptError {
                path: self.path.clone(),
                action: "write",
                source,
            })
    }

    /// Moves the current tail segment to `<id>.log.1` and cuts `<id>.log` back to head + marker.
    fn rotate(&mut self) -> Result<(), TranscriptError> {
        let e = |path: &Path, action| {
            let path = path.to_path_buf();
            move |source| TranscriptError {
                path,
                action,
                source,
            }
        };
        let start = self.tail_start();
        let mut tmp = self.rotated.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut src = File::open(&self.path).map_err(e(&self.path, "rotate (read)"))?;
            src.seek(SeekFrom::Start(start))
                .map_err(e(&self.path, "rotate (read)"))?;
            let mut dst = File::create(&tmp).map_err(e(&tmp, "rotate (write)"))?;
            std::io::copy(&mut src.take(self.tail), &mut dst).map_err(e(&tmp, "rotate (write)"))?;
        }
        std::fs::rename(&tmp, &self.rotated).map_err(e(&self.rotated, "rotate (rename)"))?;
        self.file
            .set_len(start)
            .map_err(e(&self.path, "rotate (truncate)"))?;
        self.tail = 0;
        if !self.marked {
            let marker = self.marker();
            self.write_raw(&marker)?;
            self.marked = true;
        }
        Ok(())
    }
}

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(head: u64, tail: u64) -> TranscriptLimits {
        TranscriptLimits {
            head_bytes: head,
            tail_bytes: tail,
        }
    }

    #[test]
    fn small_output_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/t1.log");
        let mut t = Transcript::open(&path, limits(10, 20)).unwrap();
        t.write_all(b"hello ").unwrap();
        t.write_all(b"world, all of it").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world, all of it");
        assert!(!t.rotated_path().exists());
    }

    #[test]
    fn a_flood_keeps_head_and_newest_tail_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let mut t = Transcript::open(&path, limits(100, 1000)).unwrap();
        let marker_len = t.marker().len() as u64;
        let mut all = Vec::new();
        for i in 0..5000u32 {
            let line = format!("line {i}\n");
            all.extend_from_slice(line.as_bytes());
            t.write_all(line.as_bytes()).unwrap();
        }
        let log = std::fs::read(&path).unwrap();
        let older = std::fs::read(t.rotated_path()).unwrap();
        assert!(log.len() as u64 <= 100 + marker_len + 1000);
        assert_eq!(older.len(), 1000);
        assert_eq!(&log[..100], &all[..100], "the head is the first bytes");
        assert_eq!(&log[100..100 + marker_len as usize], &t.marker()[..]);
        let newest = &log[100 + marker_len as usize..];
        let mut kept = older.clone();
        kept.extend_from_slice(newest);
        assert!(
            all.ends_with(&kept),
            "older segment then newest, contiguous"
        );
        assert!(kept.len() >= 1000);
        assert!(String::from_utf8_lossy(&log).ends_with("line 4999\n"));
    }

    #[test]
    fn reopening_carries_on_with_the_same_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let mut all = Vec::new();
        for attempt in 0..4u8 {
            let mut t = Transcript::open(&path, limits(50, 300)).unwrap();
            for i in 0..100u8 {
                let chunk = [b'a' + attempt, i, b'\n'];
                all.extend_from_slice(&chunk);
                t.write_all(&chunk).unwrap();
            }
        }
        let t = Transcript::open(&path, limits(50, 300)).unwrap();
        let log = std::fs::read(&path).unwrap();
        let marker = t.marker();
        assert_eq!(&log[..50], &all[..50]);
        assert_eq!(&log[50..50 + marker.len()], &marker[..], "one marker only");
        let mut kept = std::fs::read(t.rotated_path()).unwrap();
        kept.extend_from_slice(&log[50 + marker.len()..]);
        assert!(all.ends_with(&kept));
        assert!(log.len() <= 50 + marker.len() + 300);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn files_never_exceed_their_caps(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..40),
            head in 0u64..200,
            tail in 1u64..500,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.log");
            let mut t = Transcript::open(&path, limits(head, tail)).unwrap();
            let marker = t.marker().len() as u64;
            let mut total = 0u64;
            for c in &chunks {
                t.write_all(c).unwrap();
                total += c.len() as u64;
                let len = std::fs::metadata(&path).unwrap().len();
                prop_assert!(len <= head + marker + tail);
            }
            let rotated = std::fs::metadata(t.rotated_path()).map(|m| m.len()).unwrap_or(0);
            prop_assert!(rotated <= tail);
            let len = std::fs::metadata(&path).unwrap().len();
            if total <= head + tail {
                prop_assert_eq!(len, total, "nothing dropped below the caps");
            }
        }
    }
}
