//! Worktree set-up: the config's `setup` commands (argv, never a shell string) run in each new
//! worktree before its agent starts — copy `.env`, `npm ci`, … — with a time limit and bounded
//! output that goes to the task's set-up log (`<workdir>/logs/<id>.setup.log`).
//!
//! Interface (the runtime calls these on its start thread, in order, once per new worktree):
//! - [`fill`]`(template, vars) -> argv`: replaces `{repo}`, `{worktree}`, `{task_id}`, `{branch}`
//!   inside each element (a placeholder never splits or joins elements).
//! - [`run_setup`]`(argv, worktree, timeout_ms) -> output`: runs one command in the worktree,
//!   stdin closed, stdout and stderr interleaved into one text of at most [`MAX_OUTPUT`] bytes
//!   (the tail is kept). A failure is a [`SetupError`] that carries the output.
//!
//! - [`prepare_worktree`]`(commands, vars, timeout_ms, log, fresh)`: what the runtime calls when it
//!   starts a task's worker: runs every command once per worktree (again when the worktree is new,
//!   or when an earlier set-up did not finish), writing `logs/<id>.setup.log`.
//!
//! [`run_bounded`] is the process runner under it, also used by [`crate::host::pr`].

use crate::core::text::escape_control;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Most bytes of a command's output kept (its tail, where failures are reported); what was cut
/// is counted on a first line.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// The config's `setup_timeout_ms` when absent: 10 minutes (an `npm ci` on a cold cache).
pub fn default_timeout_ms() -> u64 {
    600_000
}

/// The config's `setup` key: one argv, or a list of them (run in order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum SetupCommands {
    /// `setup = [["cp", "{repo}/.env", ".env"], ["npm", "ci"]]`
    Many(Vec<Vec<String>>),
    /// `setup = ["npm", "ci"]`
    One(Vec<String>),
}

impl Default for SetupCommands {
    fn default() -> Self {
        SetupCommands::Many(Vec::new())
    }
}

impl SetupCommands {
    /// The commands in order (none when `setup` is absent or empty).
    pub fn commands(&self) -> Vec<Vec<String>> {
        match self {
            SetupCommands::Many(v) => v.clone(),
            SetupCommands::One(v) if v.is_empty() => Vec::new(),
            SetupCommands::One(v) => vec![v.clone()],
        }
    }
}

/// Values for the placeholders of a `setup` argv.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// `{repo}`: the repository's working-tree root (where an untracked `.env` lives).
    pub repo: &'a Path,
    /// `{worktree}`: the task's new worktree (also the working directory).
    pub worktree: &'a Path,
    /// `{task_id}`.
    pub task_id: &'a str,
    /// `{branch}`: the task's branch.
    pub branch: &'a str,
}

/// `template` with the placeholders of [`Vars`] replaced inside each element.
pub fn fill(template: &[String], vars: Vars<'_>) -> Vec<String> {
    template
        .iter()
        .map(|a| {
            a.replace("{repo}", &vars.repo.to_string_lossy())
                .replace("{worktree}", &vars.worktree.to_string_lossy())
                .replace("{task_id}", vars.task_id)
                .replace("{branch}", vars.branch)
        })
        .collect()
}

/// Why a setup command did not succeed. Every variant carries what the command printed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `setup` holds an empty argv.
    #[error("a `setup` command in switchyard.toml is empty; give it as an argv, e.g. setup = [[\"npm\", \"ci\"]]")]
    Empty,
    /// The program could not be started.
    #[error("setup command {} could not start in {}: {io}; check that the program is installed and on PATH (or give its full path in `setup`)", escape_control(program), worktree.display())]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The worktree.
        worktree: PathBuf,
        /// The operating system's error.
        io: std::io::Error,
    },
    /// It exited with a failure status or was killed by a signal.
    #[error("setup command {} failed in {} ({status}){}; fix the command in `setup` in switchyard.toml, or the project, then retry the task", escape_control(argv), worktree.display(), last_line(output))]
    Failed {
        /// The command, words joined by spaces (for display only).
        argv: String,
        /// The worktree.
        worktree: PathBuf,
        /// `exit status 1`, `signal 9`, ….
        status: String,
        /// Its output (bounded, see [`MAX_OUTPUT`]).
        output: String,
    },
    /// It ran past its time limit and was killed (with its process group).
    #[error("setup command {} ran longer than {timeout_ms} ms in {} and was killed{}; raise `setup_timeout_ms` or make the command faster", escape_control(argv), worktree.display(), last_line(output))]
    TimedOut {
        /// The command (for display only).
        argv: String,
        /// The worktree.
        worktree: PathBuf,
        /// The limit.
        timeout_ms: u64,
        /// Its output so far (bounded).
        output: String,
    },
}

impl SetupError {
    /// What the command printed before it failed (empty when it never started).
    pub fn output(&self) -> &str {
        match self {
            SetupError::Failed { output, .. } | SetupError::TimedOut { output, .. } => output,
            SetupError::Empty | SetupError::Spawn { .. } => "",
        }
    }
}

fn last_line(output: &str) -> String {
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!(": {}", escape_control(l.trim())),
        None => String::new(),
    }
}

/// A command for `program` run in `dir`, with `PWD` set to `dir` too: a program that is not a
/// shell keeps the `PWD` it inherits (the server's), whatever its working directory.
pub fn command_in(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).env("PWD", dir);
    cmd
}

/// Runs one setup command in `worktree` (stdin closed) and returns its output (stdout and
/// stderr interleaved, at most [`MAX_OUTPUT`] bytes, tail kept). `timeout_ms` bounds the run;
/// past it the command and its process group are killed.
///
/// Errors: [`SetupError`] — empty argv, the program cannot start, non-zero exit or signal, time
/// limit; the last two carry the output.
pub fn run_setup(argv: &[String], worktree: &Path, timeout_ms: u64) -> Result<String, SetupError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SetupError::Empty);
    };
    let mut cmd = command_in(program, worktree);
    cmd.args(args);
    let shown = argv.join(" ");
    match run_bounded(cmd, Duration::from_millis(timeout_ms)) {
        Err(io) => Err(SetupError::Spawn {
            program: program.clone(),
            worktree: worktree.to_path_buf(),
            io,
        }),
        Ok(r) if r.timed_out => Err(SetupError::TimedOut {
            argv: shown,
            worktree: worktree.to_path_buf(),
            timeout_ms,
            output: r.output,
        }),
        Ok(r) if r.status.is_some_and(|s| s.success()) => Ok(r.output),
        Ok(r) => Err(SetupError::Failed {
            argv: shown,
            worktree: worktree.to_path_buf(),
            status: describe_status(r.status),
            output: r.output,
        }),
    }
}

/// Sets up a task's worktree before its agent starts: runs `commands` (each [`fill`]ed with
/// `vars`) in order in the worktree, each within `timeout_ms`, and writes what each printed to
/// `log` (`$ argv` then its output). Done once per worktree: a marker beside the log (`log` with
/// the extension `ok`, e.g. `logs/t1.setup.ok`) records success; it runs again when `fresh` (a
/// worktree just created) or when the marker is missing (an earlier set-up failed or was killed).
/// Returns whether it ran anything.
///
/// Errors: one sentence for the task's error, naming the command, why (see [`SetupError`]),
/// its last line of output and where the whole output is.
pub fn prepare_worktree(
    commands: &[Vec<String>],
    vars: Vars<'_>,
    timeout_ms: u64,
    log: &Path,
    fresh: bool,
) -> Result<bool, String> {
    let marker = log.with_extension("ok");
    if commands.is_empty() || (!fresh && marker.exists()) {
        return Ok(false);
    }
    let _ = std::fs::remove_file(&marker);
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut text = String::new();
    let write = |text: &str| {
        std::fs::write(log, text).map_err(|e| {
            format!(
                "cannot write the set-up log {}: {e}; check the workdir's permissions and free space",
                log.display()
            )
        })
    };
    for template in commands {
        let argv = fill(template, vars);
        text.push_str(&format!("$ {}\n", argv.join(" ")));
        match run_setup(&argv, vars.worktree, timeout_ms) {
            Ok(out) => text.push_str(&out),
            Err(e) => {
                text.push_str(e.output());
                text.push_str(&format!("\n{e}\n"));
                write(&text)?;
                return Err(format!("{e} (whole output: {})", log.display()));
            }
        }
    }
    write(&text)?;
    std::fs::write(&marker, "").map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(true)
}

/// `exit status N` or `signal N`.
pub fn describe_status(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".into(),
        },
        None => "killed".into(),
    }
}

/// What [`run_bounded`] saw.
#[derive(Debug)]
pub struct Ran {
    /// The exit status (`None` when it was killed for its time limit).
    pub status: Option<ExitStatus>,
    /// stdout and stderr through one pipe, in the order written ([`run_bounded_split`]: stderr
    /// alone); the tail of at most [`MAX_OUTPUT`] bytes, lossily decoded, with a first line
    /// counting what was cut.
    pub output: String,
    /// stdout alone (at most [`MAX_OUTPUT`] bytes), for commands whose answer is on stdout;
    /// empty when `cmd` was run with combined output.
    pub stdout: String,
    /// True when the time limit killed it.
    pub timed_out: bool,
}

/// Runs `cmd` (stdin closed, its own process group, killed if switchyard dies: Linux's parent-death
/// signal) with stdout and stderr read through one pipe, waiting at most `timeout` before killing
/// the group (SIGKILL). A background process the
/// command left holding the pipe is not waited for beyond a short grace after the command exits.
///
/// Errors: the command cannot be started (e.g. the program is not found: `ErrorKind::NotFound`).
pub fn run_bounded(cmd: Command, timeout: Duration) -> std::io::Result<Ran> {
    run_inner(cmd, timeout, false)
}

/// Like [`run_bounded`] with stdout kept apart in [`Ran::stdout`] and stderr alone in
/// [`Ran::output`].
pub fn run_bounded_split(cmd: Command, timeout: Duration) -> std::io::Result<Ran> {
    run_inner(cmd, timeout, true)
}

fn run_inner(mut cmd: Command, timeout: Duration, split: bool) -> std::io::Result<Ran> {
    let (reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null()).process_group(0);
    let out_reader = if split {
        let (r, w) = std::io::pipe()?;
        cmd.stdout(w).stderr(writer);
        Some(r)
    } else {
        cmd.stdout(writer.try_clone()?).stderr(writer);
        None
    };
    // SAFETY: prctl(2) is async-signal-safe; between fork and exec it only asks the kernel to
    // SIGKILL the child when the thread that started it dies (a killed server), so a set-up
    // command or a push does not outlive switchyard (its own children may: they are not ours
    // to find).
    #[cfg(target_os = "linux")]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // The pipes' write ends now live only in the child (the Command held our copies).
    drop(cmd);
    let drain = |mut r: std::io::PipeReader| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tail = Tail::default();
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => tail.push(&buf[..n]),
                }
            }
            let _ = tx.send(tail.text());
        });
        rx
    };
    let combined = drain(reader);
    let stdout = out_reader.map(drain);
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            // SAFETY: kill(2) on the child's own process group (process_group(0) above).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let grace = Duration::from_millis(500);
    let output = combined
        .recv_timeout(grace)
        .unwrap_or_else(|_| "(output cut: a background process kept it open)\n".into());
    let stdout = stdout
        .map(|rx| rx.recv_timeout(grace).unwrap_or_default())
        .unwrap_or_default();
    Ok(Ran {
        status,
        output,
        stdout,
        timed_out,
    })
}

/// The last [`MAX_OUTPUT`] bytes of a stream, and how many came before them.
#[derive(Default)]
struct Tail {
    buf: std::collections::VecDeque<u8>,
    cut: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        let over = self.buf.len().saturating_sub(MAX_OUTPUT);
        if over > 0 {
            self.buf.drain(..over);
            self.cut += over;
        }
    }

    fn text(self) -> String {
        let (a, b) = self.buf.as_slices();
        let body = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        if self.cut == 0 {
            body
        } else {
            // Start at a line boundary so the first line is whole.
            let body = match body.find('\n') {
                Some(i) => body[i + 1..].to_string(),
                None => body,
            };
            format!("… {} earlier bytes cut\n{body}", self.cut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn setup_key_takes_one_argv_or_a_list() {
        use crate::core::config::Config;
        let layer = |t: &str| {
            Config::from_layers(&[
                (
                    "assets/switchyard.toml".into(),
                    crate::core::config::DEFAULTS.into(),
                ),
                ("x/switchyard.toml".into(), t.into()),
            ])
        };
        assert_eq!(
            Config::defaults().setup.commands(),
            Vec::<Vec<String>>::new()
        );
        assert_eq!(Config::defaults().setup_timeout_ms, 600_000);
        assert_eq!(
            layer(r#"setup = ["npm", "ci"]"#).unwrap().setup.commands(),
            vec![argv(&["npm", "ci"])]
        );
        assert_eq!(
            layer(r#"setup = [["cp", "{repo}/.env", ".env"], ["npm", "ci"]]"#)
                .unwrap()
                .setup
                .commands(),
            vec![argv(&["cp", "{repo}/.env", ".env"]), argv(&["npm", "ci"])]
        );
        let e = layer(r#"setup = [["npm", "ci"], []]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("setup command 2 is empty") && e.contains("x/switchyard.toml"),
            "{e}"
        );
        assert!(
            layer(r#"setup = "npm ci""#).is_err(),
            "a shell string is refused"
        );
    }

    #[test]
    fn prepare_runs_once_per_worktree_and_again_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(repo.join(".env"), "KEY=1\n").unwrap();
        let log = dir.path().join("logs/t1.setup.log");
        let vars = Vars {
            repo: &repo,
            worktree: &wt,
            task_id: "t1",
            branch: "task/t1",
        };
        let cmds = vec![
            argv(&["cp", "{repo}/.env", ".env"]),
            argv(&["sh", "-c", "echo set up {task_id}; echo x >> count"]),
        ];
        assert!(prepare_worktree(&cmds, vars, 10_000, &log, true).unwrap());
        assert_eq!(std::fs::read_to_string(wt.join(".env")).unwrap(), "KEY=1\n");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("$ sh -c echo set up t1; echo x >> count\nset up t1\n"),
            "{text}"
        );
        // A restart in the same worktree: not again.
        assert!(!prepare_worktree(&cmds, vars, 10_000, &log, false).unwrap());
        assert_eq!(std::fs::read_to_string(wt.join("count")).unwrap(), "x\n");
        // A failure: the error names the log; the next start runs it again.
        let failing = vec![argv(&["sh", "-c", "echo boom >&2; exit 2"])];
        let e = prepare_worktree(&failing, vars, 10_000, &log, true).unwrap_err();
        assert!(e.contains("exit status 2") && e.contains("boom"), "{e}");
        assert!(e.contains("t1.setup.log"), "{e}");
        assert!(std::fs::read_to_string(&log).unwrap().contains("boom\n"));
        assert!(!log.with_extension("ok").exists());
        assert!(prepare_worktree(&cmds, vars, 10_000, &log, false).unwrap());
        assert!(!prepare_worktree(&[], vars, 10_000, &log, true).unwrap());
    }

    #[test]
    fn placeholders_fill_inside_elements() {
        let v = Vars {
            repo: Path::new("/r"),
            worktree: Path::new("/w t"),
            task_id: "t1",
            branch: "task/t1",
        };
        assert_eq!(
            fill(
                &argv(&["cp", "{repo}/.env", "{worktree}/.env.{task_id}", "{branch}"]),
                v
            ),
            argv(&["cp", "/r/.env", "/w t/.env.t1", "task/t1"])
        );
    }

    #[test]
    fn output_of_both_streams_in_order_and_failures_carry_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_setup(
            &argv(&["sh", "-c", "echo one; echo two >&2; pwd"]),
            dir.path(),
            10_000,
        )
        .unwrap();
        let pwd = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("one\ntwo\n{}\n", pwd.display()));
        let e = run_setup(
            &argv(&["sh", "-c", "echo npm ERR! missing lockfile >&2; exit 3"]),
            dir.path(),
            10_000,
        )
        .unwrap_err();
        assert_eq!(e.output(), "npm ERR! missing lockfile\n");
        let msg = e.to_string();
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("npm ERR! missing lockfile"), "{msg}");
    }

    #[test]
    fn a_setup_command_sees_its_worktree_as_pwd() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_setup(&argv(&["printenv", "PWD"]), dir.path(), 5_000).unwrap();
        assert_eq!(out.trim(), dir.path().display().to_string());
    }

    #[test]
    fn a_missing_program_and_an_empty_argv_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = run_setup(&argv(&["no-such-program-xyz"]), dir.path(), 1000).unwrap_err();
        assert!(
            matches!(&e, SetupError::Spawn { io, .. } if io.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(e.to_string().contains("on PATH"), "{e}");
        assert!(matches!(
            run_setup(&[], dir.path(), 1000),
            Err(SetupError::Empty)
        ));
    }

    #[test]
    fn a_slow_command_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let e = run_setup(
            &argv(&["sh", "-c", "echo started; sleep 30 & sleep 30"]),
            dir.path(),
            300,
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(matches!(e, SetupError::TimedOut { .. }), "{e}");
        assert_eq!(e.output(), "started\n", "the killed group closed the pipe");
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_setup(
            &argv(&[
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do echo line$i; i=$((i+1)); done",
            ]),
            dir.path(),
            20_000,
        )
        .unwrap();
        assert!(out.len() <= MAX_OUTPUT + 64, "{}", out.len());
        assert!(out.starts_with("… ") && out.ends_with("line19999\n"));
    }
}
