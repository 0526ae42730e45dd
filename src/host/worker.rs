//! Workers: one child process per task in its own PTY (portable-pty), its output read
//! continuously on a thread of its own, parsed there by a vt100 emulator with bounded scrollback,
//! and appended raw to a transcript file.
//!
//! The reader never waits on the UI: it parses, records the time of the last byte, sets a dirty
//! flag and sends at most one wake-up through a bounded channel (dropped when full). Terminal
//! queries the child sends (cursor position, device attributes, colours) are answered from the
//! emulator so full-screen TUIs such as codex start correctly; at most [`REPLIES_PER_WINDOW`]
//! answers per [`REPLY_WINDOW`], so a query flood swamps nothing. Between the PTY and the
//! emulator, [`crate::host::stream_cap::StreamCap`] keeps an OSC/DCS that never ends from growing
//! the emulator's buffer past 64 KiB. While a worker floods ([`crate::host::flood::FLOOD_BYTES`]
//! read with the PTY never running dry), its reader holds what it reads (at most
//! [`crate::host::flood::BACKLOG_CAP`], at most [`crate::host::flood::MAX_AGE`] old, parsed once
//! the PTY is quiet for [`crate::host::flood::QUIET`]) and parses only the part of each batch that
//! can still be seen ([`crate::host::flood`]). The PTY's master is non-blocking: a read that finds
//! it dry is followed by a `poll`, never a read by a `poll` while it floods.

use crate::core::classify::ScreenSnapshot;
use portable_pty::{native_pty_system, ChildKiller, CommandBuilder, MasterPty, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A worker that has just been started, with where it runs.
#[derive(Debug)]
pub struct Spawned {
    /// The worker.
    pub worker: Worker,
    /// Absolute worktree path.
    pub worktree: String,
    /// Branch checked out there.
    pub branch: String,
    /// Commit the branch counts from.
    pub base_commit: String,
    /// The argv that runs.
    pub argv: Vec<String>,
    /// The worker's token ([`crate::host::orphans::TOKEN_VAR`] in its environment).
    pub token: String,
}

/// Messages from the edge (worker threads, the file watcher) to the runtime loop.
#[derive(Debug)]
pub enum ShellMsg {
    /// A start finished: the worker runs, or why it could not start.
    Spawned {
        /// Task index.
        task: usize,
        /// The worker, or one readable sentence saying what went wrong.
        result: Result<Box<Spawned>, String>,
    },
    /// Some worker produced output (coalesced: one per burst).
    Wake,
    /// A lifecycle job's answer (review findings, a merge, a prediction, a pull request),
    /// fed to the engine as it is.
    Lifecycle(Box<crate::core::engine::Event>),
    /// A worker's process exited with this status (after its output was drained).
    Exited {
        /// Task index.
        task: usize,
        /// Exit status; 128+signal number is not available from portable-pty, so a signal death
        /// is reported as 1 with `signal` set.
        code: i32,
        /// The signal that ended it, if any (e.g. "Hangup").
        signal: Option<String>,
        /// Its process id, if known (tells this worker from a newer one of the same task).
        pid: Option<u32>,
    },
    /// What an exit left, read off the loop (see `Runtime`'s handling of [`ShellMsg::Exited`]):
    /// the exit is applied to the engine when this comes back.
    ExitRead(Box<ExitRead>),
    /// A file changed in a task's worktree (from the file watcher).
    Activity {
        /// Task index.
        task: usize,
    },
    /// The branch state a git thread read (after an idle verdict or an automatic commit).
    Inspected {
        /// Task index.
        task: usize,
        /// Commits ahead of base.
        commits_ahead: usize,
        /// Files with uncommitted changes.
        uncommitted: usize,
        /// Why an automatic commit failed, if it did.
        error: Option<String>,
    },
    /// A verify command finished.
    Verified {
        /// Task index.
        task: usize,
        /// The attempt it verifies (a result for an earlier attempt is ignored).
        attempt: u32,
        /// True when it exited 0.
        ok: bool,
        /// The tail of its output.
        output: String,
    },
}

/// A final message read after an exit: (text, where from, the file it was written to), why it
/// could not be written, or `None` when there was none.
pub type FinalRead = Option<Result<(String, &'static str, std::path::PathBuf), String>>;

/// An exited worker's leftovers, final message and branch state, read on a thread of its own
/// so that a large repository's status scan or a long transcript never holds up the loop.
#[derive(Debug)]
pub struct ExitRead {
    /// Task index.
    pub task: usize,
    /// The attempt that exited (an answer for an earlier attempt is not applied).
    pub attempt: u32,
    /// Exit status, as in [`ShellMsg::Exited`] (a signal death with status 0 made 1).
    pub code: i32,
    /// Processes the worker left behind that were killed (for the journal).
    pub killed: Vec<crate::host::orphans::Leftover>,
    /// The final message found (`None` also when switchyard stopped the worker: its message
    /// was read when it was stopped).
    pub final_message: FinalRead,
    /// Commits ahead of base (`None`: unknown).
    pub commits_ahead: Option<usize>,
    /// Files with uncommitted changes (`None`: unknown).
    pub uncommitted: Option<usize>,
}

/// What the vt100 callbacks collect: replies to terminal queries, the title, bells, notifications.
#[derive(Debug, Default)]
pub struct Term {
    /// Bytes to write back to the child (answers to its queries).
    pub replies: Vec<u8>,
    /// The window title (OSC 0/2).
    pub title: String,
    /// Bells rung since last taken.
    pub bells: u32,
    /// Desktop notifications the child sent (OSC 9 / OSC 777), newest last (the last 16).
    pub notifications: Vec<String>,
    /// The latest OSC 133 prompt mark, OSC 9;4 progress and notification.
    pub marks: crate::core::classify::Marks,
    /// The state the agent last announced with OSC 7501 (codex: `state=working:app=codex`);
    /// `None` before any, and after `state=clear`.
    pub agent_state: Option<String>,
    /// Query replies still allowed in the current window; `None` (the default) answers every
    /// query. A worker's reader refills it to [`REPLIES_PER_WINDOW`] every [`REPLY_WINDOW`].
    pub reply_allowance: Option<u32>,
    /// Queries left unanswered because the allowance was used up (a query flood).
    pub replies_dropped: u64,
    /// Bumped after every chunk parsed and every resize ([`feed`], [`Worker::resize`]): a screen
    /// whose generation did not move has not changed, so the view copies its pane instead of
    /// rebuilding it ([`crate::ui::pane::Tiles`]).
    pub generation: u64,
}

/// Parses `bytes` into the emulator and bumps its generation ([`Term::generation`]).
pub fn feed(p: &mut Emulator, bytes: &[u8]) {
    p.process(bytes);
    p.callbacks_mut().generation += 1;
}

/// Waits at most `wait` (`None`: as long as it takes) for `fd` to be ready for `events`
/// (`POLLIN`, `POLLOUT`), or to be closed; true when it is. Without a descriptor, true at once
/// (the reader then reads as it always did). `None` when `poll` calls the descriptor invalid
/// (`POLLNVAL`): nothing will ever be ready, the caller stops rather than spin.
fn ready(
    fd: Option<&std::os::fd::OwnedFd>,
    events: libc::c_short,
    wait: Option<Duration>,
) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let Some(fd) = fd else { return Some(true) };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = wait.map_or(-1, |w| {
        w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: one valid pollfd, for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r > 0 && p.revents & libc::POLLNVAL != 0 {
        return None;
    }
    Some(r != 0)
}

/// Waits at most `wait` for `fd` to have bytes to read (or to be closed); true when it does,
/// false for an invalid descriptor.
fn readable(fd: Option<&std::os::fd::OwnedFd>, wait: Duration) -> bool {
    ready(fd, libc::POLLIN, Some(wait)).unwrap_or(false)
}

/// Makes reads and writes of the PTY's master (every descriptor of it: they share one open
/// file) return `WouldBlock` instead of waiting: the reader then reads without a `poll` before
/// every read, and waits in `poll` only when the PTY ran dry. True when it is set.
fn set_nonblocking(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    }
}

/// Writes all of `bytes`, waiting in `poll` for room whenever the PTY is full (its master is
/// non-blocking, see [`set_nonblocking`]). Errors: the write's own, other than `WouldBlock`.
fn write_waiting(
    w: &mut (dyn Write + Send),
    fd: Option<&std::os::fd::OwnedFd>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if ready(fd, libc::POLLOUT, None).is_none() {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// Most terminal-query replies a worker gets per [`REPLY_WINDOW`]: a TUI asks a handful at
/// start-up and on resize; a child that asks thousands a second (a flood) gets no more, so
/// neither the reader nor the child's input is swamped by answers it never reads.
pub const REPLIES_PER_WINDOW: u32 = 32;

/// The window [`REPLIES_PER_WINDOW`] counts in: 100 ms.
pub const REPLY_WINDOW: Duration = Duration::from_millis(100);

impl Term {
    /// Queues a reply to a query, unless the allowance is used up.
    fn reply(&mut self, bytes: &[u8]) {
        match self.reply_allowance.as_mut() {
            Some(0) => self.replies_dropped += 1,
            Some(n) => {
                *n -= 1;
                self.replies.extend_from_slice(bytes);
            }
            None => self.replies.extend_from_slice(bytes),
        }
    }
}

impl vt100::Callbacks for Term {
    fn audible_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }

    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.title = String::from_utf8_lossy(title).into_owned();
    }

    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        let first = params.first().and_then(|p| p.first()).copied().unwrap_or(0);
        match (i1, c, first) {
            // DSR: cursor position report (CPR), 1-based.
            (None | Some(b'?'), 'n', 6) => {
                let (row, col) = screen.cursor_position();
                self.reply(format!("\x1b[{};{}R", row + 1, col + 1).as_bytes());
            }
            // DSR: device status "OK".
            (None, 'n', 5) => self.reply(b"\x1b[0n"),
            // DA1: a VT220-class terminal with ANSI colour, like xterm answers.
            (None, 'c', 0) => self.reply(b"\x1b[?62;22c"),
            // DA2: terminal type and version.
            (Some(b'>'), 'c', 0) => self.reply(b"\x1b[>1;10;0c"),
            _ => {}
        }
    }

    fn unhandled_osc(&mut self, _: &mut vt100::Screen, params: &[&[u8]]) {
        match params {
            // Colour queries: answer a light-on-dark palette.
            [b"10", b"?"] => self.reply(b"\x1b]10;rgb:e5e5/e5e5/e5e5\x1b\\"),
            [b"11", b"?"] => self.reply(b"\x1b]11;rgb:1e1e/1e1e/1e1e\x1b\\"),
            [b"7501", rest @ ..] => {
                let text = rest
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<Vec<_>>()
                    .join(";");
                self.agent_state = (text != "state=clear").then_some(text);
            }
            [b"133", rest @ ..] => {
                if let Some(m) = crate::core::classify::PromptMark::parse(&texts(rest)) {
                    if let crate::core::classify::PromptMark::Finished(c) = m {
                        self.marks.last_exit = c;
                    }
                    self.marks.prompt = Some(m);
                }
            }
            // ConEmu's OSC 9;N commands (9;4 is progress, the others are ignored); any other
            // OSC 9 is a notification.
            [b"9", b"4", rest @ ..] => {
                if let Ok(p) = crate::core::classify::Progress::parse(&texts(rest)) {
                    self.marks.progress = p;
                }
            }
            [b"9", n, ..] if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => {}
            [b"9", rest @ ..] if !rest.is_empty() => self.notify(texts(rest).join(";")),
            [b"777", b"notify", rest @ ..] => self.notify(texts(rest).join(": ")),
            _ => {}
        }
    }
}

/// OSC parameters as text (lossy UTF-8).
fn texts(params: &[&[u8]]) -> Vec<String> {
    params
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Notifications kept in [`Term::notifications`]; older ones are dropped.
const NOTIFICATIONS_KEPT: usize = 16;

impl Term {
    /// Records a notification, stamped with the time it arrived.
    fn notify(&mut self, text: String) {
        if self.notifications.len() >= NOTIFICATIONS_KEPT {
            self.notifications.remove(0);
        }
        self.notifications.push(text.clone());
        self.marks.notification = Some(crate::core::classify::Notice { text, at: now_ms() });
    }
}

/// The emulator type every worker uses.
pub type Emulator = vt100::Parser<Term>;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Task index (echoed in [`ShellMsg::Exited`]).
    pub task: usize,
    /// Program and arguments; never run through a shell.
    pub argv: Vec<String>,
    /// Working directory (the task's worktree).
    pub cwd: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// PTY rows.
    pub rows: u16,
    /// PTY columns.
    pub cols: u16,
    /// Scrollback kept by the emulator, in lines.
    pub scrollback: usize,
    /// Raw output is appended here.
    pub transcript: PathBuf,
}

/// Writes queued per worker before [`Worker::write`] refuses more (the child is not reading).
pub const WRITE_QUEUE: usize = 256;

/// One job for a worker's writer thread.
enum WriteJob {
    /// Write these bytes now.
    Now(Vec<u8>),
    /// Wait, then write (Enter after a typed line).
    After(Duration, Vec<u8>),
}

/// A running worker: its PTY, emulator and counters.
pub struct Worker {
    /// Task index.
    pub task: usize,
    /// The emulator (shared with the reader thread).
    pub parser: Arc<Mutex<Emulator>>,
    /// Set by the reader when new output was parsed; cleared by whoever snapshots.
    pub dirty: Arc<AtomicBool>,
    /// Set by the reader when new output arrived and a wake-up was sent; the loop clears it
    /// after drawing, so wake-ups come at most once per frame however fast the output. Workers
    /// started with [`Worker::spawn_sharing_wake`] share one flag: one wake-up per frame for all
    /// of them, not one per worker.
    pub wake: Arc<AtomicBool>,
    /// Unix ms of the last byte read.
    pub last_output_ms: Arc<AtomicU64>,
    /// Total bytes read.
    pub bytes_read: Arc<AtomicU64>,
    /// Bytes of a flood not parsed into the emulator because they had scrolled out of its
    /// history before they were parsed ([`crate::host::flood`]; the transcript has them).
    pub bytes_skipped: Arc<AtomicU64>,
    writer: std::sync::mpsc::SyncSender<WriteJob>,
    master: Box<dyn MasterPty + Send>,
    killer: Box<dyn ChildKiller + Send + Sync>,
    exited: Arc<AtomicBool>,
    size: (u16, u16),
    /// OS process id, if known.
    pub pid: Option<u32>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("task", &self.task)
            .field("pid", &self.pid)
            .field("size", &self.size)
            .finish()
    }
}

/// Sends `sig` to the process group led by `pid` and to every other process of the session it
/// leads (portable-pty makes every worker a session leader): the worker and everything it
/// started that did not leave its session, job-control groups (`set -m`) included. What left
/// the session (`setsid`) is found by the runtime through the worker's token
/// ([`crate::host::orphans`]).
fn signal_group(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 1 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
            unsafe {
                libc::kill(-pid, sig);
            }
            crate::host::orphans::signal_session(pid as u32, sig);
        }
    }
}

/// Finds a program on PATH the way `execvp` would (a name with a `/` is taken as a path).
pub fn find_program(program: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Unix epoch milliseconds now (the runtime's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Worker {
    /// Starts the child in a new PTY and its reader and waiter threads.
    ///
    /// Errors (as one readable sentence): an empty argv, the program not found on PATH, the PTY
    /// or the process could not be created, the transcript could not be opened.
    pub fn spawn(
        spec: SpawnSpec,
        tx: tokio::sync::mpsc::Sender<ShellMsg>,
    ) -> Result<Worker, String> {
        Worker::spawn_sharing_wake(spec, tx, Arc::new(AtomicBool::new(false)))
    }

    /// [`Worker::spawn`] with a wake flag shared with other workers: a reader sends
    /// [`ShellMsg::Wake`] only when the flag was clear, so however many workers print, the loop
    /// is woken once until it clears the flag ([`crate::host::runtime::Runtime::rearm_wakes`]).
    pub fn spawn_sharing_wake(
        spec: SpawnSpec,
        tx: tokio::sync::mpsc::Sender<ShellMsg>,
        wake: Arc<AtomicBool>,
    ) -> Result<Worker, String> {
        let program = spec.argv.first().ok_or("the agent command is empty")?;
        let path_var = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v))
            .or_else(|| std::env::var_os("PATH"));
        if find_program(program, path_var.as_deref()).is_none() {
            return Err(format!(
                "agent binary {program:?} not found on PATH; install it or fix the profile's command in switchyard.toml"
            ));
        }
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows: spec.rows,
                cols: spec.cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| format!("cannot open a PTY: {e}"))?;
        let mut cmd = CommandBuilder::new(program);
        cmd.args(&spec.argv[1..]);
        cmd.cwd(&spec.cwd);
        // A program that is not a shell keeps the PWD it inherits: the server's directory, not
        // the worktree (opencode 1.18.33 takes `PWD` over its working directory for its project).
        cmd.env("PWD", &spec.cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env("COLORTERM", "truecolor");
        cmd.env("COLUMNS", spec.cols.to_string());
        cmd.env("LINES", spec.rows.to_string());
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| format!("cannot start {program:?}: {e}"))?;
        drop(pair.slave);
        let pid = child.process_id();
        let killer = child.clone_killer();
        let mut reader = pair
            .master
            .try_clone_reader()
            .map_err(|e| format!("cannot read the PTY: {e}"))?;
        let mut pty_writer = pair
            .master
            .take_writer()
            .map_err(|e| format!("cannot write the PTY: {e}"))?;
        // The one writer of this PTY: keys, answers, nudges and query replies queue here, so
        // neither the loop nor the reader ever blocks on a child that does not read its input.
        let (writer, jobs) = std::sync::mpsc::sync_channel::<WriteJob>(WRITE_QUEUE);
        // Copies of the master's descriptor to wait on: the reader's (the master itself may
        // close first) and the writer's. Both set the master non-blocking, for both.
        let dup_master = || {
            pair.master.as_raw_fd().and_then(|fd| {
                use std::os::fd::BorrowedFd;
                // SAFETY: the master's descriptor is open for this call (pair.master is alive).
                unsafe { BorrowedFd::borrow_raw(fd) }
                    .try_clone_to_owned()
                    .ok()
            })
        };
        let poll_fd = dup_master();
        let write_fd = dup_master();
        // Both copies first: the flag is the master's, for every descriptor of it.
        let nonblocking = write_fd.is_some() && poll_fd.as_ref().is_some_and(set_nonblocking);
        std::thread::Builder::new()
            .name(format!("pty-write-{}", spec.task))
            .spawn(move || {
                for job in jobs {
                    let bytes = match job {
                        WriteJob::Now(b) => b,
                        WriteJob::After(wait, b) => {
                            std::thread::sleep(wait);
                            b
                        }
                    };
                    if write_waiting(&mut *pty_writer, write_fd.as_ref(), &bytes).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        if let Some(dir) = spec.transcript.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Bounded on disk: the first 256 KiB and the newest 4–8 MiB (crate::host::transcript).
        let mut transcript = crate::host::transcript::Transcript::open(
            &spec.transcript,
            crate::host::transcript::TranscriptLimits::default(),
        )
        .map_err(|e| e.to_string())?;
        let parser = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
            spec.rows,
            spec.cols,
            spec.scrollback,
            Term::default(),
        )));
        let dirty = Arc::new(AtomicBool::new(false));
        let last_output_ms = Arc::new(AtomicU64::new(now_ms()));
        let bytes_read = Arc::new(AtomicU64::new(0));
        let bytes_skipped = Arc::new(AtomicU64::new(0));

        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        {
            let parser = parser.clone();
            let dirty = dirty.clone();
            let wake = wake.clone();
            let last = last_output_ms.clone();
            let count = bytes_read.clone();
            let skipped = bytes_skipped.clone();
            let writer = writer.clone();
            let tx = tx.clone();
            let scrollback = spec.scrollback;
            std::thread::Builder::new()
                .name(format!("pty-read-{}", spec.task))
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    // The emulator never buffers more than 64 KiB of an OSC/DCS that does not
                    // end (the transcript keeps the raw bytes, bounded on its own).
                    let mut cap = crate::host::stream_cap::StreamCap::default();
                    let mut window = std::time::Instant::now();
                    // Interactive output is parsed as it comes; while the worker floods, what
                    // it prints is held (at most flood::BACKLOG_CAP) and parsed in batches whose
                    // head, scrolled out of sight, is skipped when that is exact (crate::host::flood).
                    let mut gate = crate::host::flood::Gate::new();
                    let mut tracker = crate::host::flood::Tracker::new();
                    let mut backlog: Vec<u8> = Vec::new();
                    let mut log: Vec<u8> = Vec::new();
                    parser
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .callbacks_mut()
                        .reply_allowance = Some(REPLIES_PER_WINDOW);
                    let mut parse =
                        |backlog: &mut Vec<u8>, window: &mut std::time::Instant, flooding: bool| {
                            if backlog.is_empty() {
                                return;
                            }
                            let rows = parser
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .screen()
                                .size()
                                .0;
                            let plan = tracker.plan(backlog, rows, scrollback);
                            let replies = {
                                let mut p = parser.lock().unwrap_or_else(|e| e.into_inner());
                                if window.elapsed() >= REPLY_WINDOW {
                                    *window = std::time::Instant::now();
                                    p.callbacks_mut().reply_allowance = Some(REPLIES_PER_WINDOW);
                                }
                                let outcome =
                                    crate::host::flood::apply(&mut p, backlog, plan, scrollback);
                                if let crate::host::flood::Outcome::Cut { skipped: n } = outcome {
                                    skipped.fetch_add(n as u64, Ordering::Relaxed);
                                }
                                p.callbacks_mut().generation += 1;
                                std::mem::take(&mut p.callbacks_mut().replies)
                            };
                            backlog.clear();
                            if !flooding && backlog.capacity() > 256 * 1024 {
                                // Give a flood's batch memory back once it is over (kept while it
                                // lasts: a buffer grown anew for every batch costs page faults).
                                backlog.shrink_to(64 * 1024);
                            }
                            if !replies.is_empty() {
                                // At most REPLIES_PER_WINDOW answers per window; a child that floods
                                // queries and never reads the replies loses replies once its queue
                                // is full too: the reader never waits on it.
                                let _ = writer.try_send(WriteJob::Now(replies));
                            }
                            dirty.store(true, Ordering::Release);
                            // Shared by every worker: read first, so a flag already set costs no
                            // write to a cache line the other readers use.
                            if !wake.load(Ordering::Acquire) && !wake.swap(true, Ordering::AcqRel) {
                                let _ = tx.try_send(ShellMsg::Wake);
                            }
                        };
                    // The reader waits on its copy of the PTY's descriptor: a flooding worker's
                    // backlog is parsed once the PTY stays quiet. With the master non-blocking it
                    // waits only when a read found the PTY dry (a flood's reads need no poll).
                    let mut dry = !nonblocking;
                    loop {
                        if dry {
                            if backlog.is_empty() {
                                if nonblocking
                                    && ready(poll_fd.as_ref(), libc::POLLIN, None).is_none()
                                {
                                    break;
                                }
                            } else if !readable(
                                poll_fd.as_ref(),
                                gate.wait(std::time::Instant::now()),
                            ) {
                                gate.on_quiet();
                                let _ = transcript.write_all(&log);
                                log.clear();
                                parse(&mut backlog, &mut window, false);
                                continue;
                            }
                        }
                        let n = match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e)
                                if nonblocking
                                    && matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::Interrupted
                                    ) =>
                            {
                                dry = true;
                                continue;
                            }
                            Err(_) => break,
                        };
                        dry = !nonblocking;
                        let chunk = &buf[..n];
                        // A PTY gives at most 4 KiB a read: under a flood the transcript is
                        // written 64 KiB at a time (one write instead of sixteen).
                        if gate.flooding() {
                            log.extend_from_slice(chunk);
                            if log.len() >= 64 * 1024 {
                                let _ = transcript.write_all(&log);
                                log.clear();
                            }
                        } else {
                            let _ = transcript.write_all(&log);
                            log.clear();
                            let _ = transcript.write_all(chunk);
                        }
                        if gate.flooding() && backlog.capacity() < crate::host::flood::BACKLOG_CAP {
                            // A batch's whole room at once, kept while the flood lasts: grown
                            // by doubling, it copied and faulted in twice its size per flood.
                            backlog.reserve_exact(
                                crate::host::flood::BACKLOG_CAP + buf.len() - backlog.len(),
                            );
                        }
                        cap.feed(chunk, |part| backlog.extend_from_slice(part));
                        last.store(now_ms(), Ordering::Relaxed);
                        count.fetch_add(n as u64, Ordering::Relaxed);
                        // Outside a flood, whether the PTY already holds more (a poll that
                        // does not wait) tells a flood from bursts of interactive output. A PTY
                        // hands out up to 4 KiB a read: a short read means it ran dry (no poll).
                        let more = !gate.flooding()
                            && n >= 2048
                            && readable(poll_fd.as_ref(), Duration::ZERO);
                        if gate.on_read(n, backlog.len(), more, std::time::Instant::now()) {
                            parse(&mut backlog, &mut window, gate.flooding());
                        }
                    }
                    let _ = transcript.write_all(&log);
                    parse(&mut backlog, &mut window, false);
                    let _ = done_tx.send(());
                })
                .map_err(|e| format!("cannot start the reader thread: {e}"))?;
        }
        let exited = Arc::new(AtomicBool::new(false));
        {
            let task = spec.task;
            let exited_flag = exited.clone();
            std::thread::Builder::new()
                .name(format!("pty-wait-{task}"))
                .spawn(move || {
                    let status = child.wait();
                    exited_flag.store(true, Ordering::Release);
                    // Let the reader drain what the child wrote before it exited; a grandchild
                    // holding the PTY open must not keep the exit from being reported. Whatever
                    // is left of the worker's session (the agent's own children) goes with it.
                    if done_rx.recv_timeout(Duration::from_millis(1500)).is_err() {
                        if let Some(pid) = pid {
                            signal_group(pid, libc::SIGKILL);
                        }
                    }
                    let (code, signal) = match status {
                        Ok(s) => (s.exit_code() as i32, s.signal().map(str::to_string)),
                        Err(_) => (1, None),
                    };
                    let _ = tx.blocking_send(ShellMsg::Exited {
                        task,
                        code,
                        signal,
                        pid,
                    });
                })
                .map_err(|e| format!("cannot start the waiter thread: {e}"))?;
        }
        Ok(Worker {
            task: spec.task,
            parser,
            dirty,
            wake,
            last_output_ms,
            bytes_read,
            bytes_skipped,
            writer,
            master: pair.master,
            killer,
            exited,
            size: (spec.rows, spec.cols),
            pid,
        })
    }

    /// Queues bytes for the child's terminal (keys, answers, nudges); the worker's writer
    /// thread writes them in order. Never blocks: when the child has not read its last
    /// [`WRITE_QUEUE`] writes, this one is refused with `WouldBlock`.
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer
            .try_send(WriteJob::Now(bytes.to_vec()))
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the worker is not reading its input (write queue full)",
                ),
                std::sync::mpsc::TrySendError::Disconnected(_) => std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the worker's terminal is closed",
                ),
            })
    }

    /// Types `text` as a line and submits it: the text (as a bracketed paste when the child
    /// enabled mode 2004), then Enter 200 ms later from a short-lived thread, so TUIs that treat
    /// a fast `\r` as part of a paste still see "send".
    pub fn submit(&self, text: &[u8]) {
        let bracketed = self
            .parser
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .screen()
            .bracketed_paste();
        let body = if bracketed {
            [b"\x1b[200~".as_slice(), text, b"\x1b[201~"].concat()
        } else {
            text.to_vec()
        };
        let _ = self.write(&body);
        let _ = self
            .writer
            .try_send(WriteJob::After(Duration::from_millis(200), b"\r".to_vec()));
    }

    /// Resizes the PTY and the emulator (rows × cols). No-op when unchanged.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        if self.size == (rows, cols) || rows == 0 || cols == 0 {
            return;
        }
        self.size = (rows, cols);
        let _ = self.master.resize(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        });
        {
            let mut p = self.parser.lock().unwrap_or_else(|e| e.into_inner());
            p.screen_mut().set_size(rows, cols);
            p.callbacks_mut().generation += 1;
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// The PTY size, rows × cols.
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Holds the worker (`true`: SIGSTOP to its process group and session, the agent keeps its
    /// state and its PTY) or lets it go on (`false`: SIGCONT). Nothing when it has exited.
    pub fn hold(&self, on: bool) {
        let Some(pid) = self.pid else { return };
        if !self.exited.load(Ordering::Acquire) {
            signal_group(pid, if on { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Stops the worker: SIGHUP to its process group and its whole session (the agent and what
    /// it started), then SIGKILL to them if it is still there 2 s later.
    pub fn kill(&mut self) {
        let _ = self.killer.kill();
        let Some(pid) = self.pid else { return };
        // Already reaped: its pid may belong to someone else by now (what it left behind is the
        // runtime's to kill when the exit is handled).
        if self.exited.load(Ordering::Acquire) {
            return;
        }
        signal_group(pid, libc::SIGHUP);
        // A held (stopped) worker gets its SIGHUP once it runs again.
        signal_group(pid, libc::SIGCONT);
        let exited = self.exited.clone();
        let _ = std::thread::Builder::new()
            .name(format!("pty-kill-{}", self.task))
            .spawn(move || {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(100));
                    if exited.load(Ordering::Acquire) {
                        return;
                    }
                }
                signal_group(pid, libc::SIGKILL);
            });
    }

    /// The visible screen as text, with cursor, alternate-screen flag and title.
    pub fn snapshot(&self) -> ScreenSnapshot {
        let p = self.parser.lock().unwrap_or_else(|e| e.into_inner());
        snapshot_of(&p)
    }
}

/// CPU time (clock ticks, user + system) used by a process and its descendants, from /proc;
/// 0 where /proc cannot tell. Walks at most 64 processes.
pub fn tree_cpu_ticks(pid: u32) -> u64 {
    let mut total = 0;
    let mut queue = vec![pid];
    let mut seen = 0;
    while let Some(p) = queue.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let f: Vec<&str> = after.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                total += num(11) + num(12);
            }
        }
        // Children are listed per thread: a multi-threaded agent (node, codex) or this test
        // harness starts them from threads other than the main one.
        let threads = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for t in threads.flatten() {
            let children = t.path().join("children");
            if let Ok(children) = std::fs::read_to_string(children) {
                queue.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    total
}

/// Last screens kept of workers that exited, at most this many (the oldest is dropped first).
pub const KEPT_SCREENS: usize = 256;

/// The last screens of workers that exited, by task index, so a finished task's screen stays
/// reachable (zoom, log view) after its PTY closed. Each is kept as the bytes that redraw its
/// visible screen (vt100 `contents_formatted`, a few KiB; no scrollback), at most
/// [`KEPT_SCREENS`] of them.
#[derive(Debug, Default)]
pub struct LastScreens {
    screens: std::collections::BTreeMap<usize, (u16, u16, Vec<u8>)>,
    order: std::collections::VecDeque<usize>,
}

impl LastScreens {
    /// Keeps task `task`'s screen as `p` shows it now (replacing an older one of the task).
    pub fn keep(&mut self, task: usize, p: &Emulator) {
        let (rows, cols) = p.screen().size();
        let bytes = p.screen().contents_formatted();
        if self.screens.insert(task, (rows, cols, bytes)).is_some() {
            self.order.retain(|&t| t != task);
        }
        self.order.push_back(task);
        while self.order.len() > KEPT_SCREENS {
            if let Some(old) = self.order.pop_front() {
                self.screens.remove(&old);
            }
        }
    }

    /// Task `task`'s last screen as a fresh emulator (no scrollback), if one is kept.
    pub fn emulator(&self, task: usize) -> Option<Emulator> {
        let (rows, cols, bytes) = self.screens.get(&task)?;
        let mut p = vt100::Parser::new_with_callbacks(*rows, *cols, 0, Term::default());
        feed(&mut p, bytes);
        Some(p)
    }
}

/// Plain-text snapshot of an emulator's visible screen.
pub fn snapshot_of(p: &Emulator) -> ScreenSnapshot {
    let screen = p.screen();
    let (_, cols) = screen.size();
    let (row, col) = screen.cursor_position();
    ScreenSnapshot {
        rows: screen
            .rows(0, cols)
            .map(|r| r.trim_end().to_string())
            .collect(),
        cursor_row: row as usize,
        cursor_col: col as usize,
        alternate: screen.alternate_screen(),
        title: p.callbacks().title.clone(),
        agent_state: p.callbacks().agent_state.clone(),
        reading: None,
        foreground: None,
        marks: p.callbacks().marks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Emulator {
        let mut p = vt100::Parser::new_with_callbacks(24, 80, 0, Term::default());
        p.process(bytes);
        p
    }

    #[test]
    fn answers_cursor_position_at_the_moment_it_is_asked() {
        let mut p = parse(b"hello\r\nab\x1b[6n more text");
        assert_eq!(p.callbacks_mut().replies, b"\x1b[2;3R");
    }

    #[test]
    fn answers_device_attributes_and_colour_queries() {
        let p = parse(b"\x1b[c\x1b]11;?\x07\x1b[>c");
        let r = String::from_utf8(p.callbacks().replies.clone()).unwrap();
        assert_eq!(
            r,
            "\x1b[?62;22c\x1b]11;rgb:1e1e/1e1e/1e1e\x1b\\\x1b[>1;10;0c"
        );
    }

    #[test]
    fn a_query_flood_gets_at_most_the_allowance_of_replies() {
        let mut p = vt100::Parser::new_with_callbacks(24, 80, 0, Term::default());
        p.callbacks_mut().reply_allowance = Some(REPLIES_PER_WINDOW);
        p.process(&b"\x1b[6n\x1b[c".repeat(1000));
        let t = p.callbacks();
        let answered = t.replies.windows(2).filter(|w| w == b"\x1b[").count();
        assert_eq!(answered, REPLIES_PER_WINDOW as usize);
        assert_eq!(t.replies_dropped, 2000 - u64::from(REPLIES_PER_WINDOW));
        // Without an allowance (the default) every query is answered.
        let p = parse(&b"\x1b[6n".repeat(100));
        assert_eq!(p.callbacks().replies.len(), 100 * b"\x1b[1;1R".len());
    }

    #[test]
    fn records_title_bell_and_notifications() {
        let p = parse(b"\x1b]0;codex: working\x07\x07\x1b]9;Approval needed\x07");
        assert_eq!(p.callbacks().title, "codex: working");
        assert_eq!(p.callbacks().bells, 1);
        assert_eq!(p.callbacks().notifications, vec!["Approval needed"]);
        assert_eq!(snapshot_of(&p).title, "codex: working");
    }

    #[test]
    fn keeps_the_latest_prompt_mark_progress_and_notification() {
        let mut p = parse(b"\x1b]133;A\x07$ \x1b]133;B\x07");
        assert_eq!(
            p.callbacks().marks.prompt,
            Some(crate::core::classify::PromptMark::Input)
        );
        p.process(b"make\r\n\x1b]133;C\x07\x1b]9;4;1;30\x1b\\");
        let m = &p.callbacks().marks;
        assert_eq!(m.prompt, Some(crate::core::classify::PromptMark::Output));
        assert_eq!(m.progress.map(|p| p.percent), Some(Some(30)));
        p.process(b"\x1b]9;4;0;0\x07\x1b]133;D;2\x07\x1b]133;A\x07");
        let m = &p.callbacks().marks;
        assert_eq!(m.progress, None, "state 0 removes the progress");
        assert_eq!(m.last_exit, Some(2));
        assert_eq!(
            snapshot_of(&p).marks.prompt,
            Some(crate::core::classify::PromptMark::Prompt)
        );
        // ConEmu's other OSC 9 commands are not notifications; a notification keeps its `;`.
        p.process(b"\x1b]9;1;500\x07\x1b]9;Approval requested: a; b\x07");
        assert_eq!(
            p.callbacks()
                .marks
                .notification
                .as_ref()
                .map(|n| n.text.as_str()),
            Some("Approval requested: a; b")
        );
        p.process(b"\x1b]777;notify;Claude Code;Task finished\x07");
        assert_eq!(
            p.callbacks().notifications.last().map(String::as_str),
            Some("Claude Code: Task finished")
        );
    }

    #[test]
    fn codex_turn_end_notification_from_a_recording() {
        // codex-cli 0.169 with tui.notifications: OSC 9 with its last message at the turn's end.
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/codex/codex-mock-osc9-done.bytes"
        ))
        .unwrap();
        let mut p = vt100::Parser::new_with_callbacks(40, 120, 0, Term::default());
        p.process(&bytes);
        let n = p.callbacks().marks.notification.clone().unwrap();
        assert_eq!(
            n.text,
            "I added README.md with a short project description."
        );
    }

    #[test]
    fn records_the_agent_state_codex_announces() {
        let mut p = parse(b"\x1b]7501;state=working:app=codex\x1b\\");
        assert_eq!(
            snapshot_of(&p).agent_state.as_deref(),
            Some("state=working:app=codex")
        );
        p.process(b"\x1b]7501;state=blocked:app=codex:kind=permission\x1b\\");
        assert_eq!(
            p.callbacks().agent_state.as_deref(),
            Some("state=blocked:app=codex:kind=permission")
        );
        p.process(b"\x1b]7501;state=clear\x1b\\");
        assert_eq!(p.callbacks().agent_state, None);
    }

    #[test]
    fn last_screens_are_kept_bounded_and_redraw_the_screen() {
        let mut kept = LastScreens::default();
        let p = parse(b"\x1b[31mfailed\x1b[0m: exit 1\r\nbye");
        kept.keep(3, &p);
        let back = kept.emulator(3).unwrap();
        assert_eq!(back.screen().contents(), p.screen().contents());
        assert_eq!(
            back.screen().cell(0, 0).unwrap().fgcolor(),
            vt100::Color::Idx(1)
        );
        for t in 0..KEPT_SCREENS + 10 {
            kept.keep(1000 + t, &p);
        }
        assert!(kept.emulator(3).is_none(), "the oldest went first");
        assert!(kept.emulator(1000 + KEPT_SCREENS + 9).is_some());
        assert_eq!(kept.screens.len(), KEPT_SCREENS);
    }

    #[test]
    fn counts_cpu_of_a_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let busy = tree_cpu_ticks(std::process::id());
        let _ = child.wait();
        assert!(busy > 0, "this test process and its busy child used CPU");
        assert_eq!(tree_cpu_ticks(u32::MAX), 0);
    }

    #[test]
    fn finds_programs_on_path() {
        let path = std::env::var_os("PATH");
        assert!(find_program("sh", path.as_deref()).is_some());
        assert!(find_program("surely-no-such-agent-xyz", path.as_deref()).is_none());
    }
}

#[cfg(test)]
mod kill_tests {
    use super::*;

    fn spec(dir: &Path, script: &str) -> SpawnSpec {
        SpawnSpec {
            task: 3,
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            env: vec![],
            rows: 10,
            cols: 60,
            scrollback: 10,
            transcript: dir.join("t.log"),
        }
    }

    /// Waits at most `within` for `text` on the worker's screen.
    fn wait_for(w: &Worker, text: &str, within: Duration) {
        let start = std::time::Instant::now();
        while !w.snapshot().rows.iter().any(|r| r.contains(text)) {
            assert!(
                start.elapsed() < within,
                "waited for {text:?}: {:?}",
                w.snapshot().rows
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_worker_sees_its_worktree_as_pwd() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        // `exec printenv` so no shell sets PWD on its own: what the worker inherited is printed.
        let w = Worker::spawn(spec(dir.path(), "exec printenv PWD"), tx).unwrap();
        wait_for(
            &w,
            &dir.path().display().to_string(),
            Duration::from_secs(10),
        );
    }

    #[test]
    fn keys_beyond_what_the_pty_holds_wait_for_room_and_all_arrive() {
        // The child reads nothing for a while: 64 000 bytes typed meanwhile fill the PTY's
        // input, the (non-blocking) writer waits for room, and every byte arrives in order.
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let w = Worker::spawn(
            spec(
                dir.path(),
                "stty -echo; echo ready; sleep 1; echo count=$(wc -c)",
            ),
            tx,
        )
        .unwrap();
        wait_for(&w, "ready", Duration::from_secs(10));
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..64 {
            w.write(line.repeat(10).as_bytes()).unwrap();
        }
        w.write(b"\x04").unwrap();
        wait_for(&w, "count=64000", Duration::from_secs(10));
    }

    #[test]
    fn a_worker_that_ignores_sighup_is_killed_anyway() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let spec = spec(dir.path(), "trap '' HUP; echo ready; sleep 30 & wait");
        let task = spec.task;
        let mut w = Worker::spawn(spec, tx).unwrap();
        wait_for(&w, "ready", Duration::from_secs(5));
        w.kill();
        let start = std::time::Instant::now();
        loop {
            match rx.try_recv() {
                Ok(ShellMsg::Exited { task: exited, .. }) => {
                    assert_eq!(exited, task);
                    break;
                }
                _ => {
                    assert!(
                        start.elapsed() < Duration::from_secs(6),
                        "still alive after SIGKILL"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

#[cfg(test)]
mod flood_tests {
    use super::*;

    /// A worker flooding a real PTY ends with the screen and scrollback a full parse of its
    /// transcript gives, though most of the flood was never parsed into the emulator.
    #[test]
    fn a_flooding_worker_ends_as_a_full_parse_of_its_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (rows, cols, scrollback) = (10, 60, 40);
        let spec = SpawnSpec {
            task: 3,
            argv: vec![
                "sh".into(),
                "-c".into(),
                // ~3 MiB of coloured log (under the transcript's 4 MiB tail: it keeps it all),
                // then a title and a last line.
                "printf '\\033]0;flooding\\007'; yes \"$(printf '\\033[32mok\\033[0m a line of coloured build log output')\" | head -n 60000; printf 'done\\n'".into(),
            ],
            cwd: dir.path().to_path_buf(),
            env: vec![],
            rows,
            cols,
            scrollback,
            transcript: dir.path().join("t.log"),
        };
        let w = Worker::spawn(spec, tx).unwrap();
        let start = std::time::Instant::now();
        loop {
            match rx.try_recv() {
                Ok(ShellMsg::Exited { .. }) => break,
                _ => {
                    assert!(start.elapsed() < Duration::from_secs(60), "the flood ended");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // Under the transcript's bounds (256 KiB head + 4 MiB tail) it holds every byte, with
        // no marker line.
        let raw = std::fs::read(dir.path().join("t.log")).unwrap();
        assert_eq!(raw.len() as u64, w.bytes_read.load(Ordering::Relaxed));
        let mut full = vt100::Parser::new_with_callbacks(rows, cols, scrollback, Term::default());
        full.process(&raw);
        let mut p = w.parser.lock().unwrap();
        assert_eq!(
            p.screen().contents_formatted(),
            full.screen().contents_formatted()
        );
        for off in [1, scrollback / 2, scrollback] {
            p.screen_mut().set_scrollback(off);
            full.screen_mut().set_scrollback(off);
            assert_eq!(
                p.screen().contents(),
                full.screen().contents(),
                "offset {off}"
            );
        }
        p.screen_mut().set_scrollback(0);
        assert_eq!(p.callbacks().title, "flooding");
        assert!(p.screen().contents().contains("done"));
        let skipped = w.bytes_skipped.load(Ordering::Relaxed);
        assert!(
            skipped > raw.len() as u64 / 2,
            "most of the flood was skipped ({skipped} of {} bytes)",
            raw.len()
        );
    }
}
