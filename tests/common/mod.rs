//! Helpers for end-to-end tests: the real binary, real git repositories, real PTYs.
#![allow(dead_code)]

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The switchyard binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// Runs a git command in `dir` and returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository with one commit, in a temp dir.
pub fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
    std::fs::write(
        dir.path().join(".gitignore"),
        "/manifest.json\n/switchyard.toml\n/.sy/\n",
    )
    .unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "init"]);
    dir
}

/// The binary running in a PTY, its screen parsed by vt100 as a person would see it.
pub struct PtyApp {
    parser: Arc<Mutex<vt100::Parser<switchyard::host::worker::Term>>>,
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl PtyApp {
    /// Starts `switchyard ARGS` in `cwd` in a rows × cols PTY.
    pub fn spawn(args: &[&str], cwd: &Path, rows: u16, cols: u16) -> PtyApp {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(bin());
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        // The emulator answers terminal queries (cursor position, attributes) as a real
        // terminal would, using switchyard's own responder.
        let parser = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
            rows,
            cols,
            0,
            switchyard::host::worker::Term::default(),
        )));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = Arc::new(Mutex::new(pair.master.take_writer().unwrap()));
        let p = parser.clone();
        let w = writer.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let replies = {
                    let mut p = p.lock().unwrap();
                    p.process(&buf[..n]);
                    std::mem::take(&mut p.callbacks_mut().replies)
                };
                if !replies.is_empty() {
                    let mut w = w.lock().unwrap();
                    let _ = w.write_all(&replies);
                    let _ = w.flush();
                }
            }
        });
        PtyApp {
            parser,
            writer,
            child,
            _master: pair.master,
        }
    }

    /// The screen's text, rows joined by newlines.
    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// The background colour of the cell at the first occurrence of `text` on screen.
    pub fn bg_of(&self, text: &str) -> Option<vt100::Color> {
        let p = self.parser.lock().unwrap();
        let screen = p.screen();
        let (rows, cols) = screen.size();
        for (r, line) in screen.rows(0, cols).enumerate().take(rows as usize) {
            if let Some(byte_col) = line.find(text) {
                let col = line[..byte_col].chars().count() as u16;
                return screen.cell(r as u16, col).map(|c| c.bgcolor());
            }
        }
        None
    }

    /// The text of the screen row containing `text`.
    pub fn row_with(&self, text: &str) -> Option<String> {
        self.screen()
            .lines()
            .find(|l| l.contains(text))
            .map(str::to_string)
    }

    /// True while the app shows the alternate screen.
    pub fn alternate(&self) -> bool {
        self.parser.lock().unwrap().screen().alternate_screen()
    }

    /// Waits until the screen contains `text`; panics with the screen after `secs`.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {text:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `f(screen)` holds.
    pub fn wait_until(&self, what: &str, secs: u64, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types bytes as a person would.
    pub fn send(&mut self, bytes: &[u8]) {
        self.send_quiet(bytes);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types bytes without pausing afterwards.
    pub fn send_quiet(&mut self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.exit_code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PtyApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Stops the run of a manifest when dropped (a failing test leaves no server behind).
pub struct StopOnDrop(pub PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .arg("stop")
            .arg(&self.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The pid of the live server for a workdir, read from its lock file (`<workdir>/run/*.lock`).
pub fn server_pid(workdir: &Path) -> Option<u32> {
    let dir = std::fs::read_dir(workdir.join("run")).ok()?;
    for e in dir.flatten() {
        if e.path().extension().is_some_and(|x| x == "lock") {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            return v["pid"].as_u64().map(|p| p as u32);
        }
    }
    None
}

/// True while a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Waits until `f()` holds; panics with `what` after `secs`.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a one-phase manifest (workdir `.sy`) with these tasks (JSON objects, comma-separated)
/// and a `switchyard.toml` into `dir`; returns the manifest's path.
pub fn write_project(dir: &Path, tasks_json: &str, config: &str) -> PathBuf {
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"project":"t","workdir":".sy","phases":[{{"name":"p1","tasks":[{tasks_json}]}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    manifest
}

/// Every task of a manifest (as JSON), in manifest order.
pub fn tasks(m: &serde_json::Value) -> Vec<serde_json::Value> {
    m["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().clone())
        .collect()
}

/// The journal's entries: `events.jsonl` in the given logs folder (`<workdir>/logs`), one JSON
/// value per line; a torn last line is skipped; no file = no entries.
pub fn journal(logs: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(logs.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
