//! What only the owner of a PTY can see about the program in it, read from Linux's /proc: which
//! process is in the terminal's foreground, and whether it is blocked reading the terminal.
//!
//! A program blocked in `read(2)` on its terminal after printing something is waiting for input,
//! whatever the text says (`rm -i`, `npm init` fields, `git clean -i` menus, ssh's host-key and
//! password prompts, a shell at its prompt). Agents built on an event loop (Node, Python asyncio)
//! wait in `epoll_wait`/`poll` instead and are never taken for this; their own channels speak
//! for them. Checked on Linux 5.x/6.x (x86_64 and aarch64): `/proc/<pid>/stat` field 8 is the
//! terminal's foreground process group, `/proc/<pid>/syscall` starts with the number of the
//! system call the process is blocked in and its first argument (the fd), and
//! `/proc/<pid>/fd/<fd>` links to the terminal. Elsewhere every function returns `None`.

use crate::classify::TerminalRead;

/// The `read` system call number on this architecture.
#[cfg(target_arch = "x86_64")]
const SYS_READ: Option<u64> = Some(0);
#[cfg(target_arch = "aarch64")]
const SYS_READ: Option<u64> = Some(63);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_READ: Option<u64> = None;

/// Shells, whose wait at their own prompt means "idle", not "a question".
const SHELLS: [&str; 7] = ["bash", "sh", "dash", "zsh", "fish", "ksh", "mksh"];

/// True when this platform shows what [`terminal_reader`] needs (Linux with
/// `/proc/<pid>/syscall`, on x86_64 or aarch64).
pub fn available() -> bool {
    SYS_READ.is_some() && std::fs::read_to_string("/proc/self/syscall").is_ok()
}

/// The foreground process of the terminal whose session `leader` (the worker's own process)
/// leads, if one is blocked reading that terminal now. Looks at the leader and its descendants
/// (at most 64) in the terminal's foreground process group.
pub fn terminal_reader(leader: u32) -> Option<TerminalRead> {
    let sys_read = SYS_READ?;
    let fg = stat_fields(leader)?.tpgid;
    let mut queue = vec![leader];
    let mut seen = 0;
    while let Some(pid) = queue.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if stat_fields(pid).is_some_and(|s| s.pgrp == fg) && reads_terminal(pid, sys_read) {
            let process = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim()
                .to_string();
            let shell =
                pid == leader && SHELLS.contains(&process.as_str()) && interactive_shell(pid);
            return Some(TerminalRead { process, shell });
        }
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            queue.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    None
}

/// A shell run without a command or script to execute (only options such as `-i`,
/// `--norc`): one that reads commands from the person. `sh -c '…; read a'` is a script asking a
/// question, not a prompt.
fn interactive_shell(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .all(|a| a.starts_with(b"-") && a != b"-c")
}

/// True when `pid` is blocked in `read(2)` on a terminal.
fn reads_terminal(pid: u32, sys_read: u64) -> bool {
    let Ok(syscall) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = syscall.split_whitespace();
    if fields.next().and_then(|n| n.parse::<u64>().ok()) != Some(sys_read) {
        return false;
    }
    let Some(fd) = fields
        .next()
        .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
    else {
        return false;
    };
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|t| {
        let t = t.to_string_lossy();
        t.starts_with("/dev/pts/") || t == "/dev/tty"
    })
}

struct Stat {
    pgrp: u32,
    tpgid: u32,
}

/// Process group (field 5) and the terminal's foreground process group (field 8) of `pid`.
fn stat_fields(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        pgrp: u32::try_from(num(2)?).ok()?,
        tpgid: u32::try_from(num(5)?).ok().filter(|&p| p > 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};

    fn in_pty(script: &str) -> (Box<dyn portable_pty::Child + Send + Sync>, u32) {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new("sh");
        cmd.args(["-c", script]);
        let child = pair.slave.spawn_command(cmd).unwrap();
        let pid = child.process_id().unwrap();
        // Keep the master open while the child runs.
        std::mem::forget(pair.master);
        (child, pid)
    }

    fn settle(pid: u32, want: bool) -> Option<TerminalRead> {
        for _ in 0..50 {
            let r = terminal_reader(pid);
            if r.is_some() == want {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        terminal_reader(pid)
    }

    #[test]
    fn a_program_blocked_reading_its_terminal_is_seen_and_a_sleeper_is_not() {
        if !available() {
            eprintln!("skipped: this kernel does not show /proc/<pid>/syscall");
            return;
        }
        let (mut asker, pid) = in_pty("printf 'Remove file? '; read a");
        let r = settle(pid, true).expect("sh blocked in read on its terminal");
        assert_eq!(r.process, "sh");
        assert!(
            !r.shell,
            "a script's `read` is a question, not a shell prompt"
        );
        let _ = asker.kill();

        // A child in the foreground reading: not the leader, so a question, not a shell prompt.
        let (mut cat, pid) = in_pty("cat");
        let r = settle(pid, true);
        let _ = cat.kill();
        let r = r.expect("cat reads the terminal");
        assert_eq!(r.process, "cat");
        assert!(!r.shell);

        let (mut sleeper, pid) = in_pty("sleep 5");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(settle(pid, false), None, "sleeping is not reading");
        let _ = sleeper.kill();
    }
}
