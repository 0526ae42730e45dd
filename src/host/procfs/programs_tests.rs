//! Ordinary programs at their prompts, each run in a real PTY with the worker's emulator and
//! classified with the shipped `shell` profile's rules: what a person sees as "it is asking me
//! something" must come out `waiting_input` (a shell at its prompt: `idle`), a busy program
//! `running`. A program missing on this machine is skipped, saying so.

use super::{available, foreground, terminal_reader};
use crate::core::classify::{classify, Rule, ScreenSnapshot, Timing, VerdictKind};
use crate::host::worker::{now_ms, snapshot_of, Emulator, Term};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Running {
    emu: Arc<Mutex<Emulator>>,
    last: Arc<AtomicU64>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    pid: u32,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn installed(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start(argv: &[&str], cwd: &Path) -> Running {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(argv[0]);
    cmd.args(&argv[1..]);
    cmd.cwd(cwd);
    cmd.env("TERM", "xterm-256color");
    cmd.env("NO_UPDATE_NOTIFIER", "1");
    cmd.env("npm_config_update_notifier", "false");
    let child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let pid = child.process_id().unwrap();
    let emu = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
        24,
        100,
        0,
        Term::default(),
    )));
    let last = Arc::new(AtomicU64::new(now_ms()));
    let mut reader = pair.master.try_clone_reader().unwrap();
    let (e, l) = (emu.clone(), last.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            e.lock().unwrap().process(&buf[..n]);
            l.store(now_ms(), Ordering::Relaxed);
        }
    });
    Running {
        emu,
        last,
        child,
        pid,
        _master: pair.master,
    }
}

fn shell_rules() -> Vec<Rule> {
    crate::core::config::Config::defaults()
        .compile()
        .unwrap()
        .rules["shell"]
        .clone()
}

/// Classifies the program as switchyard's runtime does after its output pauses, until the
/// verdict is `want` or 30 s pass; returns the last verdict and screen.
fn verdict(
    p: &Running,
    want: VerdictKind,
    rules: &[Rule],
) -> (crate::core::classify::Verdict, ScreenSnapshot) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let last = p.last.load(Ordering::Relaxed);
        let now = now_ms();
        let mut screen = snapshot_of(&p.emu.lock().unwrap());
        screen.reading = terminal_reader(p.pid);
        screen.foreground = foreground(p.pid);
        let timing = Timing {
            now,
            started_at: 0,
            last_output_at: last,
            last_change_at: last,
            last_activity_at: last,
        };
        let v = classify(&screen, &timing, rules, 300_000);
        // Judge only once output paused long enough for every channel to speak.
        if (now.saturating_sub(last) >= 1_700 && v.kind == want)
            || std::time::Instant::now() > deadline
        {
            return (v, screen);
        }
    }
}

fn check(name: &str, p: &Running, want: VerdictKind, channel: &str, fg: Option<&str>) {
    let (v, screen) = verdict(p, want, &shell_rules());
    assert_eq!(
        v.kind,
        want,
        "{name}: {v}\nforeground {:?}, reading {:?}\nscreen:\n{}",
        screen.foreground,
        screen.reading,
        screen.rows.join("\n")
    );
    assert!(
        v.evidence.rule == channel,
        "{name}: wanted evidence from {channel}, got {v}"
    );
    if let Some(fg) = fg {
        assert_eq!(
            screen.foreground.as_ref().map(|f| f.process.as_str()),
            Some(fg),
            "{name}: the foreground program"
        );
    }
    eprintln!("{name}: {v}");
}

#[test]
fn ordinary_programs_at_their_prompts_wait_for_input() {
    if !available() {
        eprintln!("skipped: this kernel does not show /proc/<pid>/syscall");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f"), "x").unwrap();

    // rm -i started by a shell: the shell waits, rm reads the terminal in front.
    let p = start(&["sh", "-c", "rm -i f; echo done; sleep 30"], d);
    check(
        "rm -i",
        &p,
        VerdictKind::WaitingInput,
        "terminal-read",
        Some("rm"),
    );
    drop(p);

    // A python input() field prompt.
    if installed("python3") {
        let p = start(&["python3", "-c", "input('Name: ')"], d);
        check(
            "python input()",
            &p,
            VerdictKind::WaitingInput,
            "terminal-read",
            None,
        );
    } else {
        eprintln!("skipped python input(): python3 is not installed");
    }

    // bash's read -p (a script's question, not a shell prompt).
    let p = start(
        &[
            "bash",
            "--norc",
            "-c",
            "read -r -p 'Overwrite the branch? ' x",
        ],
        d,
    );
    check(
        "read -p",
        &p,
        VerdictKind::WaitingInput,
        "terminal-read",
        Some("bash"),
    );
    drop(p);

    // git clean -i's menu.
    if installed("git") {
        let repo = d.join("repo");
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .output()
                .unwrap()
        };
        git(&["init", "-q"]);
        std::fs::write(repo.join("untracked.txt"), "x").unwrap();
        let p = start(&["git", "clean", "-i"], &repo);
        check(
            "git clean -i",
            &p,
            VerdictKind::WaitingInput,
            "terminal-read",
            Some("git"),
        );
    } else {
        eprintln!("skipped git clean -i: git is not installed");
    }

    // ssh-keygen's passphrase prompt (offline: it generates a key locally).
    if installed("ssh-keygen") {
        let key = d.join("key");
        let p = start(
            &[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-f",
                key.to_str().unwrap(),
            ],
            d,
        );
        check(
            "ssh-keygen passphrase",
            &p,
            VerdictKind::WaitingInput,
            "terminal-read",
            Some("ssh-keygen"),
        );
    } else {
        eprintln!("skipped ssh-keygen: not installed");
    }

    // npm init: node waits in epoll, not in read(2); its field prompt is seen by the cursor
    // sitting right after `package name: (dir)`.
    if installed("npm") {
        let app = d.join("demo-app");
        std::fs::create_dir(&app).unwrap();
        let p = start(&["npm", "init"], &app);
        check(
            "npm init",
            &p,
            VerdictKind::WaitingInput,
            "cursor-question",
            None,
        );
    } else {
        eprintln!("skipped npm init: npm is not installed");
    }
}

#[test]
fn a_shell_at_its_prompt_is_idle_and_a_busy_program_runs() {
    if !available() {
        eprintln!("skipped: this kernel does not show /proc/<pid>/syscall");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = start(&["bash", "--norc", "--noprofile", "-i"], d);
    check(
        "bash -i",
        &p,
        VerdictKind::Idle,
        "terminal-read",
        Some("bash"),
    );
    drop(p);

    // A shell started by the worker's own command shell is still a shell at its prompt.
    let p = start(&["sh", "-c", "bash --norc --noprofile -i; true"], d);
    check(
        "sh -c 'bash -i'",
        &p,
        VerdictKind::Idle,
        "terminal-read",
        Some("bash"),
    );
    drop(p);

    // A script with OSC 133 marks (shell integration) sitting at its prompt, no read(2).
    let p = start(
        &[
            "sh",
            "-c",
            r"printf 'make\n\033]133;D;2\007\033]133;A\007$ \033]133;B\007'; sleep 30",
        ],
        d,
    );
    let (v, _) = verdict(&p, VerdictKind::Idle, &shell_rules());
    assert_eq!(v.kind, VerdictKind::Idle, "{v}");
    assert_eq!(v.evidence.rule, "osc-133");
    assert!(v.evidence.line.contains("exited 2"), "{v}");
    drop(p);

    // A command reporting OSC 9;4 progress: running, with the progress as evidence.
    let p = start(
        &["sh", "-c", r"printf 'Fetching\033]9;4;1;42\007'; sleep 30"],
        d,
    );
    let (v, screen) = verdict(&p, VerdictKind::Running, &shell_rules());
    assert_eq!(v.kind, VerdictKind::Running, "{v}");
    assert_eq!(v.evidence.line, "OSC 9;4 progress 42%");
    // The cursor sits after "Fetching" with no question: nothing else fires either.
    assert_eq!(
        screen.foreground.as_ref().map(|f| f.process.as_str()),
        Some("sleep")
    );
    drop(p);

    // Waiting on the terminal in select(2) with no timeout is a read; a loop that ticks with a
    // timeout (an event loop, a stalled agent) is not.
    if installed("python3") {
        let p = start(
            &[
                "python3",
                "-c",
                "import select,sys; print('Ready? ', end='', flush=True); select.select([0],[],[])",
            ],
            d,
        );
        check(
            "select on the terminal",
            &p,
            VerdictKind::WaitingInput,
            "terminal-read",
            None,
        );
        drop(p);
        let p = start(
            &[
                "python3",
                "-c",
                "import select\nprint('thinking', flush=True)\nwhile not select.select([0],[],[],1.0)[0]: pass",
            ],
            d,
        );
        let (v, screen) = verdict(&p, VerdictKind::Running, &shell_rules());
        assert_eq!(v.kind, VerdictKind::Running, "{v}");
        assert_eq!(screen.reading, None);
    } else {
        eprintln!("skipped the select tests: python3 is not installed");
    }

    // Sleeping is not reading.
    let p = start(&["sh", "-c", "echo working; sleep 30"], d);
    let (v, _) = verdict(&p, VerdictKind::Running, &shell_rules());
    assert_eq!(v.kind, VerdictKind::Running, "{v}");
    assert_eq!(v.evidence.rule, "output");
}
