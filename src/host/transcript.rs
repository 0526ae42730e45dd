//! A worker's raw transcript (`logs/<id>.log`) with a bounded size on disk.
//!
//! A worker can print without end (a flood of random bytes wrote 625 MB in 30 s). The transcript
//! keeps the **head** (the first [`TranscriptLimits::head_bytes`] bytes: how the agent started)
//! and the **tail** (the newest output, rotated in segments of
//! [`TranscriptLimits::tail_bytes`]):
//!
//! - `<id>.log` holds the head, then, once the output went past it, a one-line marker, then the
//!   newest tail segment (at most `tail_bytes`).
//! - When that segment is full, `<id>.log` *becomes* `<id>.log.1` (replacing the older one, by
//!   a hard link and two renames: no copy of the segment) and a new `<id>.log` starts with a
//!   copy of the head and the marker. The first rotation, whose file has no marker yet, copies
//!   its segment into `<id>.log.1` instead (so a transcript shorter than head + tail stays the
//!   plain output, with no marker in it).
//! - So `<id>.log.1` is either the tail segment alone (the first rotation, or a transcript of
//!   an older version) or head + marker + tail segment; a reader tells them apart by the marker
//!   at `head_bytes`.
//!
//! So each file stays within `head_bytes + marker + tail_bytes`, and the newest `tail_bytes` of
//! output (or more) are always on disk; a rotation copies at most the head (not the 4 MiB
//! segment) after the first one. Read in order: the head part of `<id>.log`, then the segment
//! of `<id>.log.1`, then the rest of `<id>.log`. Output in the middle is dropped. Reopening the
//! same file (a new attempt of the task) carries on where it was, provided the limits are the
//! same.

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

    /// Moves the current tail segment to `<id>.log.1` and starts `<id>.log` again at head +
    /// marker: by renaming the whole file once it has its marker (see the module documentation),
    /// by copying the segment before that (and where the file system has no hard links).
    fn rotate(&mut self) -> Result<(), TranscriptError> {
        if !self.marked || !self.rotate_by_rename()? {
            self.rotate_by_copy()?;
        }
        self.tail = 0;
        if !self.marked {
            let marker = self.marker();
            self.write_raw(&marker)?;
            self.marked = true;
        }
        Ok(())
    }

    /// `<id>.log` (head + marker + segment) becomes `<id>.log.1`; a new `<id>.log` holds a copy
    /// of the head and the marker. Both names exist at every moment: the new file is written
    /// beside, `<id>.log` is linked to a temporary name that replaces `<id>.log.1`, and the new
    /// file replaces `<id>.log`. Returns false (nothing changed) when the file system refuses
    /// the hard link.
    fn rotate_by_rename(&mut self) -> Result<bool, TranscriptError> {
        let head_end = self.tail_start();
        let fresh_path = sibling(&self.path, ".new");
        let linked = sibling(&self.rotated, ".tmp");
        let _ = std::fs::remove_file(&linked);
        if std::fs::hard_link(&self.path, &linked).is_err() {
            return Ok(false);
        }
        let mut fresh = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&fresh_path)
            .map_err(failed(&fresh_path, "rotate (write)"))?;
        {
            let mut src = File::open(&self.path).map_err(failed(&self.path, "rotate (read)"))?;
            std::io::copy(&mut (&mut src).take(head_end), &mut fresh)
                .map_err(failed(&fresh_path, "rotate (write)"))?;
        }
        std::fs::rename(&linked, &self.rotated)
            .map_err(failed(&self.rotated, "rotate (rename)"))?;
        std::fs::rename(&fresh_path, &self.path).map_err(failed(&self.path, "rotate (rename)"))?;
        self.file = fresh;
        Ok(true)
    }

    /// Copies the current segment to `<id>.log.1` (by way of a temporary file) and cuts
    /// `<id>.log` back to its head (and marker, when it has one).
    fn rotate_by_copy(&mut self) -> Result<(), TranscriptError> {
        let start = self.tail_start();
        let tmp = sibling(&self.rotated, ".tmp");
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
        Ok(())
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
            let log_ino = std::os::unix::fs::MetadataExt::ino(
                &log.metadata().map_err(failed(&self.path, "read"))?,
            );
            // The same file under both names: a rotation is half done and `<id>.log` still
            // holds everything (`<id>.log.1` is its link).
            if let Some(mut f) = older.filter(|_| rotated_ino != Some(log_ino)) {
                let n = f.metadata().map_err(failed(&rotated, "read"))?.len();
                // A segment renamed with its file keeps the head and marker before it; the
                // first rotation's (or an older version's) segment is alone in the file.
                let with_head = n >= head_end && {
                    let mut found = vec![0u8; marker.len()];
                    f.seek(SeekFrom::Start(self.limits.head_bytes))
                        .map_err(failed(&rotated, "read"))?;
                    f.read_exact(&mut found).is_ok() && found == marker
                };
                files.push((f, if with_head { head_end } else { 0 }, n));
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
        // Rotated by renaming: `.log.1` is a whole former `.log` (head, marker, segment).
        assert_eq!(older.len() as u64, 100 + marker_len + 1000);
        assert_eq!(
            &older[..100 + marker_len as usize],
            &log[..100 + marker_len as usize]
        );
        let older = older[100 + marker_len as usize..].to_vec();
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
        let mut kept = segment(&std::fs::read(t.rotated_path()).unwrap(), 50, &marker);
        kept.extend_from_slice(&log[50 + marker.len()..]);
        assert!(all.ends_with(&kept));
        assert!(log.len() <= 50 + marker.len() + 300);
    }

    /// The tail segment of a `.log.1`: after the head and marker when it has them.
    fn segment(older: &[u8], head: usize, marker: &[u8]) -> Vec<u8> {
        if older.len() >= head + marker.len() && &older[head..head + marker.len()] == marker {
            older[head + marker.len()..].to_vec()
        } else {
            older.to_vec()
        }
    }

    #[test]
    fn rotations_after_the_first_rename_the_file_instead_of_copying_the_segment() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let lim = limits(100, 1000);
        let mut t = Transcript::open(&path, lim).unwrap();
        let marker = t.marker();
        let line = |i: u32| format!("line {i:05}\n");
        let mut i = 0;
        // The first rotation copies the segment: `.log.1` is the segment alone.
        while !t.rotated_path().exists() {
            t.write_all(line(i).as_bytes()).unwrap();
            i += 1;
        }
        let first = std::fs::read(t.rotated_path()).unwrap();
        assert_eq!(first.len(), 1000);
        assert!(!first.windows(marker.len()).any(|w| w == marker));
        // The next one moves the file itself: the inode `.log` had becomes `.log.1`.
        let before = std::fs::metadata(&path).unwrap().ino();
        while std::fs::metadata(t.rotated_path()).unwrap().ino() != before {
            t.write_all(line(i).as_bytes()).unwrap();
            i += 1;
            assert!(i < 10_000, "a second rotation happened");
        }
        let log = std::fs::read(&path).unwrap();
        assert_eq!(
            &log[..100 + marker.len()],
            &std::fs::read(t.rotated_path()).unwrap()[..100 + marker.len()]
        );
        assert!(!dir.path().join("t1.log.new").exists());
        assert!(!dir.path().join("t1.log.1.tmp").exists());
        // Read back across `.log.1` (a whole former `.log`) and `.log`: the printed lines, in
        // order (the newest 1 000 bytes, 90 lines, are always kept).
        let (bytes, _) = TranscriptReader::new(&path, lim)
            .newest_lines(90, u64::MAX)
            .unwrap();
        let expect: String = (i - 90..i).map(line).collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), expect);
    }

    #[test]
    fn the_reader_reads_a_rotation_caught_halfway_once() {
        // Between the hard link and the last rename, `.log` and `.log.1` are one file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let lim = limits(100, 1000);
        let mut t = Transcript::open(&path, lim).unwrap();
        let all = lines_text(0, 400);
        t.write_all(all.as_bytes()).unwrap();
        let (before, _) = TranscriptReader::new(&path, lim)
            .newest_lines(usize::MAX, u64::MAX)
            .unwrap();
        std::fs::remove_file(t.rotated_path()).unwrap();
        std::fs::hard_link(&path, t.rotated_path()).unwrap();
        let (during, _) = TranscriptReader::new(&path, lim)
            .newest_lines(usize::MAX, u64::MAX)
            .unwrap();
        let marker = t.marker();
        let mut expect = std::fs::read(&path).unwrap();
        assert_eq!(&expect[100..100 + marker.len()], &marker[..]);
        assert_eq!(
            during,
            std::mem::take(&mut expect),
            "head, marker and segment, once"
        );
        assert!(before.ends_with(&during[100 + marker.len()..]));
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
        let older = segment(&std::fs::read(t.rotated_path()).unwrap(), 100, &marker);
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
            prop_assert!(rotated <= head + marker + tail);
            let len = std::fs::metadata(&path).unwrap().len();
            if total <= head + tail {
                prop_assert_eq!(len, total, "nothing dropped below the caps");
            }
        }
    }
}
