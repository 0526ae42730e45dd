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
        let e = |action| failed(path, action);
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
        marker_for(&self.rotated, self.limits)
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
            .map_err(failed(&self.path, "write"))
    }

    /// Moves the current tail segment to `<id>.log.1` and cuts `<id>.log` back to head + marker.
    fn rotate(&mut self) -> Result<(), TranscriptError> {
        let start = self.tail_start();
        let mut tmp = self.rotated.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut src = File::open(&self.path).map_err(failed(&self.path, "rotate (read)"))?;
            src.seek(SeekFrom::Start(start))
                .map_err(failed(&self.path, "rotate (read)"))?;
            let mut dst = File::create(&tmp).map_err(failed(&tmp, "rotate (write)"))?;
            std::io::copy(&mut src.take(self.tail), &mut dst)
                .map_err(failed(&tmp, "rotate (write)"))?;
        }
        std::fs::rename(&tmp, &self.rotated).map_err(failed(&self.rotated, "rotate (rename)"))?;
        self.file
            .set_len(start)
            .map_err(failed(&self.path, "rotate (truncate)"))?;
        self.tail = 0;
        if !self.marked {
            let marker = self.marker();
            self.write_raw(&marker)?;
            self.marked = true;
        }
        Ok(())
    }
}

/// The marker line a transcript with these limits writes after its head (names `rotated`).
fn marker_for(rotated: &Path, limits: TranscriptLimits) -> Vec<u8> {
    let name = rotated
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "\r\n[switchyard: the first {} bytes are above; older output is in {name}, the newest below; output in between was dropped]\r\n",
        limits.head_bytes
    )
    .into_bytes()
}

/// The error of `action` on the file at `path`, for `map_err`.
fn failed(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> TranscriptError {
    let path = path.to_path_buf();
    move |source| TranscriptError {
        path,
        action,
        source,
    }
}

fn rotated_of(path: &Path) -> PathBuf {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    PathBuf::from(rotated)
}

/// The output a transcript kept, read back in the order it was printed (the reading side of
/// [`Transcript`], used to serve scrollback older than a worker's emulator holds).
///
/// The kept output is one byte stream made of up to three parts: the head of `<id>.log` (with
/// the marker line after it, once output went past the head), `<id>.log.1`, and the rest of
/// `<id>.log`. Only the newest bytes are read, from a line start. The reader works while the
/// worker is still writing: a rotation between opening and reading is noticed (`<id>.log.1` is
/// another file then) and the read starts over.
#[derive(Debug)]
pub struct TranscriptReader {
    path: PathBuf,
    limits: TranscriptLimits,
}

/// The kept parts of a transcript at one moment: (file, start, end) byte ranges in order.
struct Parts {
    files: Vec<(File, u64, u64)>,
    /// Inode of `<id>.log.1` when the parts were taken (`None`: it did not exist).
    rotated_ino: Option<u64>,
}

impl TranscriptReader {
    /// A reader of the transcript at `path` (`<id>.log`) written with `limits` (the writer's
    /// limits: the marker's place depends on `head_bytes`).
    pub fn new(path: &Path, limits: TranscriptLimits) -> TranscriptReader {
        TranscriptReader {
            path: path.to_path_buf(),
            limits,
        }
    }

    /// The newest kept output holding at least `lines` line feeds (or all of it when it holds
    /// fewer), starting at a line start (just after a `\n`, or at the very beginning), at most
    /// `max_bytes` long (then cut at a line start inside that window). Returns the bytes and
    /// whether they are everything the transcript kept.
    ///
    /// Errors: `<id>.log` cannot be opened or read (a missing transcript is an error; a missing
    /// `<id>.log.1` is not: nothing rotated yet).
    pub fn newest_lines(
        &self,
        lines: usize,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, bool), TranscriptError> {
        // A rotation while reading replaces `<id>.log.1`: read again (it takes the writer a
        // whole tail segment to rotate twice, so a second try does not meet another).
        let mut tries = 0;
        loop {
            let mut parts = self.parts()?;
            let got = read_newest(&mut parts.files, lines, max_bytes)
                .map_err(failed(&self.path, "read"))?;
            tries += 1;
            if tries >= 3 || ino(&rotated_of(&self.path)) == parts.rotated_ino {
                return Ok(got);
            }
        }
    }

    fn parts(&self) -> Result<Parts, TranscriptError> {
        let rotated = rotated_of(&self.path);
        // `<id>.log.1` first: a rotation after this leaves `<id>.log` shorter than its head +
        // marker + tail only for an instant, and the inode check catches it.
        let older = match File::open(&rotated) {
            Ok(f) => Some(f),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(failed(&rotated, "open")(err)),
        };
        let rotated_ino = match &older {
            Some(f) => Some(std::os::unix::fs::MetadataExt::ino(
                &f.metadata().map_err(failed(&rotated, "read"))?,
            )),
            None => None,
        };
        let mut log = File::open(&self.path).map_err(failed(&self.path, "open"))?;
        let len = log.metadata().map_err(failed(&self.path, "read"))?.len();
        let marker = marker_for(&rotated, self.limits);
        let head_end = self.limits.head_bytes + marker.len() as u64;
        let marked = len >= head_end && {
            let mut found = vec![0u8; marker.len()];
            log.seek(SeekFrom::Start(self.limits.head_bytes))
                .map_err(failed(&self.path, "read"))?;
            log.read_exact(&mut found).is_ok() && found == marker
        };
        let mut files = Vec::new();
        if marked {
            let again = File::open(&self.path).map_err(failed(&self.path, "open"))?;
            files.push((again, 0, head_end));
            if let Some(f) = older {
                let n = f.metadata().map_err(failed(&rotated, "read"))?.len();
                files.push((f, 0, n));
            }
            files.push((log, head_end, len));
        } else {
            // Nothing rotated (or written with other limits): the file is the whole output.
            files.push((log, 0, len));
        }
        Ok(Parts { files, rotated_ino })
    }
}

fn ino(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Reads backwards through `parts` (in order, newest last) until `lines` line feeds are found,
/// `max_bytes` are read or the start is reached; returns the bytes from the line start after
/// the oldest line feed read (all when the start was reached) and whether that is everything.
fn read_newest(
    parts: &mut [(File, u64, u64)],
    lines: usize,
    max_bytes: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    const CHUNK: u64 = 64 * 1024;
    // Chunks read from the newest end, newest first.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut read = 0u64;
    let mut feeds = 0usize;
    let mut cut: Option<(usize, usize)> = None; // (chunk, index after the line feed)
    'parts: for (file, start, end) in parts.iter_mut().rev() {
        let mut pos = *end;
        while pos > *start {
            let want = CHUNK.min(pos - *start).min(max_bytes - read);
            if want == 0 {
                break 'parts;
            }
            pos -= want;
            let mut buf = vec![0u8; want as usize];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut buf)?;
            read += want;
            for i in (0..buf.len()).rev() {
                if buf[i] == b'\n' {
                    feeds += 1;
                    // The line feed that ends the line before the oldest wanted line.
                    if feeds > lines {
                        cut = Some((chunks.len(), i + 1));
                        chunks.push(buf);
                        break 'parts;
                    }
                }
            }
            chunks.push(buf);
        }
    }
    let total: u64 = parts.iter().map(|(_, s, e)| e.saturating_sub(*s)).sum();
    let whole = cut.is_none() && read >= total;
    let mut out = Vec::with_capacity(read as usize);
    for (n, chunk) in chunks.into_iter().enumerate().rev() {
        match cut {
            Some((c, at)) if c == n => out.extend_from_slice(&chunk[at..]),
            _ => out.extend_from_slice(&chunk),
        }
    }
    if cut.is_none() && !whole {
        // Cut by max_bytes: start after the first line feed in the window.
        let skip = out.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        out.drain(..skip);
    }
    Ok((out, whole))
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

    fn lines_text(from: u32, to: u32) -> String {
        (from..to).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn the_reader_returns_the_newest_lines_from_a_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let mut t = Transcript::open(&path, limits(1000, 4000)).unwrap();
        t.write_all(lines_text(0, 10).as_bytes()).unwrap();
        t.write_all(b"partial").unwrap();
        let r = TranscriptReader::new(&path, limits(1000, 4000));
        let (bytes, whole) = r.newest_lines(3, u64::MAX).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "line 7\nline 8\nline 9\npartial"
        );
        assert!(!whole);
        let (bytes, whole) = r.newest_lines(100, u64::MAX).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(&path).unwrap(),
            "fewer lines: all of it"
        );
        assert!(whole);
        // A byte budget cuts inside a line: the read starts at the next line start.
        let (bytes, whole) = r.newest_lines(100, 20).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "line 9\npartial");
        assert!(!whole);
    }

    #[test]
    fn the_reader_puts_head_marker_rotated_and_newest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let lim = limits(100, 1000);
        let mut t = Transcript::open(&path, lim).unwrap();
        let all = lines_text(0, 3000);
        // Written in odd-sized pieces, as a PTY hands them over.
        for piece in all.as_bytes().chunks(77) {
            t.write_all(piece).unwrap();
        }
        let marker = t.marker();
        let older = std::fs::read(t.rotated_path()).unwrap();
        let log = std::fs::read(&path).unwrap();
        let r = TranscriptReader::new(&path, lim);

        // Everything kept: head, marker, the rotated segment, then the newest.
        let (bytes, whole) = r.newest_lines(usize::MAX, u64::MAX).unwrap();
        assert!(whole);
        let mut expect = all.as_bytes()[..100].to_vec();
        expect.extend_from_slice(&marker);
        expect.extend_from_slice(&older);
        expect.extend_from_slice(&log[100 + marker.len()..]);
        assert_eq!(bytes, expect);

        // The newest 150 lines reach back into `.log.1` and are the printed lines, in order,
        // from a line start.
        let newest_in_log = log[100 + marker.len()..]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        assert!(newest_in_log < 150, "the read spans both files");
        let (bytes, whole) = r.newest_lines(150, u64::MAX).unwrap();
        assert!(!whole);
        assert_eq!(String::from_utf8(bytes).unwrap(), lines_text(2850, 3000));
    }

    #[test]
    fn the_reader_names_a_missing_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.log");
        let err = TranscriptReader::new(&path, limits(10, 10))
            .newest_lines(5, u64::MAX)
            .unwrap_err();
        assert!(err.to_string().contains("gone.log"), "{err}");
        assert_eq!(err.action, "open");
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
