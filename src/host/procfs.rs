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

use crate::core::classify::{Foreground, TerminalRead};

/// System call numbers a terminal read blocks in, on this architecture.
struct Calls {
    read: u64,
    /// `select(nfds, readfds, …)`; x86_64 only.
    select: Option<u64>,
    /// `pselect6(nfds, readfds, …)`.
    pselect6: u64,
    /// `poll(fds, nfds, timeout)`; x86_64 only.
    poll: Option<u64>,
    /// `ppoll(fds, nfds, …)`.
    ppoll: u64,
}

#[cfg(target_arch = "x86_64")]
const CALLS: Option<Calls> = Some(Calls {
    read: 0,
    select: Some(23),
    pselect6: 270,
    poll: Some(7),
    ppoll: 271,
});
#[cfg(target_arch = "aarch64")]
const CALLS: Option<Calls> = Some(Calls {
    read: 63,
    select: None,
    pselect6: 72,
    poll: None,
    ppoll: 73,
});
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CALLS: Option<Calls> = None;

/// Shells, whose wait at their own prompt means "idle", not "a question".
const SHELLS: [&str; 7] = ["bash", "sh", "dash", "zsh", "fish", "ksh", "mksh"];

/// True when this platform shows what [`terminal_reader`] needs (Linux with
/// `/proc/<pid>/syscall`, on x86_64 or aarch64).
pub fn available() -> bool {
    CALLS.is_some() && std::fs::read_to_string("/proc/self/syscall").is_ok()
}

/// The foreground process of the terminal whose session `leader` (the worker's own process)
/// leads, if one is blocked reading that terminal now. Looks at the leader and its descendants
/// (at most 64) in the terminal's foreground process group.
pub fn terminal_reader(leader: u32) -> Option<TerminalRead> {
    let calls = CALLS.as_ref()?;
    let fg = stat_fields(leader)?.tpgid;
    let mut queue = vec![leader];
    let mut seen = 0;
    while let Some(pid) = queue.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if stat_fields(pid).is_some_and(|s| s.pgrp == fg) && reads_terminal(pid, calls) {
            let process = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim()
                .to_string();
            let shell = SHELLS.contains(&process.as_str())
                && interactive_shell(pid)
                && shells_down_to(leader, pid);
            return Some(TerminalRead { process, shell });
        }
        queue.extend(children(pid));
    }
    None
}

/// The program in the foreground of the terminal whose session `leader` leads: of the
/// processes in the terminal's foreground process group (`tpgid`, field 8 of
/// `/proc/<leader>/stat`, what `tcgetpgrp(3)` on the PTY gives) that descend from the leader
/// (at most 64 looked at), the deepest — `rm` for `sh -c 'rm -i f'`, where a shell without job
/// control leaves its command in its own group. `None` when the platform cannot tell.
pub fn foreground(leader: u32) -> Option<Foreground> {
    let fg = stat_fields(leader)?.tpgid;
    let mut best: Option<(usize, u32)> = None;
    let mut queue = vec![(leader, 0usize)];
    let mut seen = 0;
    while let Some((pid, depth)) = queue.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if stat_fields(pid).is_some_and(|s| s.pgrp == fg) && best.is_none_or(|(d, _)| depth > d) {
            best = Some((depth, pid));
        }
        queue.extend(children(pid).into_iter().map(|c| (c, depth + 1)));
    }
    let pid = best.map_or(fg, |(_, p)| p);
    let process = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()?
        .trim()
        .to_string();
    Some(Foreground {
        pid,
        process,
        own: pid == leader,
    })
}

/// The children of `pid`, from every one of its threads (a multi-threaded program starts them
/// from any thread).
fn children(pid: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// True when `pid` is `leader` or every process from `pid`'s parent up to `leader` is a shell
/// (`sh -c 'bash -i'`): a shell the worker's own command started, not one an agent's tool runs.
fn shells_down_to(leader: u32, pid: u32) -> bool {
    let mut p = pid;
    for _ in 0..8 {
        if p == leader {
            return true;
        }
        let Some(parent) = stat_fields(p).map(|s| s.ppid) else {
            return false;
        };
        let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
        if !SHELLS.contains(&comm.trim()) {
            return false;
        }
        p = parent;
    }
    false
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

/// True when `pid` is blocked waiting for its terminal: in `read(2)` on a terminal; in
/// `select`/`pselect6` without a timeout, watching no more than the first 16 fds, every open
/// one of which is a terminal (bash 5 / readline at its prompt: `pselect6(1, …, NULL, NULL)`);
/// or in `poll`/`ppoll` without a timeout on one fd that is a terminal (the `pollfd` read from
/// `/proc/<pid>/mem`, which a worker's parent may read). A program waiting on sockets and the
/// terminal together (an event loop), or polling with a timeout (a loop that ticks), is not.
fn reads_terminal(pid: u32, calls: &Calls) -> bool {
    let Ok(syscall) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = syscall.split_whitespace();
    let Some(nr) = fields.next().and_then(|n| n.parse::<u64>().ok()) else {
        return false;
    };
    let args: Vec<u64> = fields
        .take(5)
        .filter_map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .collect();
    let tty = |fd: u64| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|t| {
            let t = t.to_string_lossy();
            t.starts_with("/dev/pts/") || t == "/dev/tty"
        })
    };
    match args.as_slice() {
        [fd, ..] if nr == calls.read => tty(*fd).unwrap_or(false),
        // No timeout (a NULL pointer): waiting for the person, not ticking.
        [nfds, _, _, _, 0] if nr == calls.pselect6 || Some(nr) == calls.select => {
            (1..=16).contains(nfds) && {
                let open: Vec<bool> = (0..*nfds).filter_map(|fd| tty(fd).ok()).collect();
                !open.is_empty() && open.iter().all(|t| *t)
            }
        }
        // poll's timeout is -1 (no timeout); ppoll's is a NULL pointer.
        [fds, 1, timeout, ..]
            if (Some(nr) == calls.poll && *timeout as i32 == -1)
                || (nr == calls.ppoll && *timeout == 0) =>
        {
            poll_fd(pid, *fds).is_some_and(|fd| tty(fd).unwrap_or(false))
        }
        _ => false,
    }
}

/// The fd of the one `struct pollfd` at `addr` in `pid`'s memory (its first 4 bytes), if it
/// asks for input (`POLLIN`).
fn poll_fd(pid: u32, addr: u64) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    mem.seek(SeekFrom::Start(addr)).ok()?;
    let mut b = [0u8; 8];
    mem.read_exact(&mut b).ok()?;
    let fd = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let events = i16::from_ne_bytes([b[4], b[5]]);
    (events & 1 != 0).then(|| u64::try_from(fd).ok()).flatten()
}

struct Stat {
    ppid: u32,
    pgrp: u32,
    tpgid: u32,
}

/// Parent (field 4), process group (field 5) and the terminal's foreground process group
/// (field 8) of `pid`.
fn stat_fields(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        ppid: u32::try_from(num(1)?).ok()?,
        pgrp: u32::try_from(num(2)?).ok()?,
        tpgid: u32::try_from(num(5)?).ok().filter(|&p| p > 0)?,
    })
}

#[cfg(test)]
mod programs_tests;

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
