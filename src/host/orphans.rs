//! Workers' processes that must not outlive them: what a worker started that left its process
//! group (`setsid`, `set -m` jobs) or ignored SIGHUP, found again after the worker ended, after
//! a clean stop, and after a kill -9 of the server.
//!
//! The server records each live worker in `<workdir>/run/workers.json` ([`WorkerRecord`]: pid,
//! process group, session, start time, and a token). Every worker gets the token in its
//! environment as [`TOKEN_VAR`], and its descendants inherit it, including those that call
//! `setsid` and so leave the worker's session. What is left of a worker ([`leftovers`]) is every
//! process of the same user that is in the worker's session (when that session is still the
//! recorded one) or that carries its token, found by one scan of `/proc`. Processes that both
//! leave the session and clear their environment are not found.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable holding a worker's token (inherited by everything it starts).
pub const TOKEN_VAR: &str = "SWITCHYARD_WORKER";

/// One live worker as the server records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRecord {
    /// Task id.
    pub task: String,
    /// The worker's process id.
    pub pid: u32,
    /// Its process group id.
    pub pgid: u32,
    /// Its session id (the worker leads its own session: the same as `pid`).
    pub sid: u32,
    /// When the worker's process started, in clock ticks since boot (`/proc/<pid>/stat` field
    /// 22): a pid or session id reused by an unrelated process is told apart by it.
    pub start_ticks: u64,
    /// The value of [`TOKEN_VAR`] in the worker's environment.
    pub token: String,
}

/// Errors reading or writing the records.
#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    /// The records file cannot be read or written.
    #[error("{path}: {source}; check the workdir's permissions (the file is rewritten as workers start and exit)")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The records file is not what switchyard writes.
    #[error("{path}: not a list of worker records ({source}); it is replaced by this run's, so processes it named must be found by hand (`ps -eo pid,sid,args`)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Process group id.
    pub pgid: u32,
    /// Session id.
    pub sid: u32,
    /// Start time, clock ticks since boot.
    pub start_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone (or is a zombie, which holds no
/// resources and cannot be killed further).
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields restart after the
    // last ')'. After it: state, ppid, pgrp, session, …, starttime is the 20th.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    Some(ProcStat {
        pid,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// The record of a worker that has just started (`None` when it is already gone).
pub fn record(task: &str, pid: u32, token: &str) -> Option<WorkerRecord> {
    let s = proc_stat(pid)?;
    Some(WorkerRecord {
        task: task.to_string(),
        pid,
        pgid: s.pgid,
        sid: s.sid,
        start_ticks: s.start_ticks,
        token: token.to_string(),
    })
}

/// A token no other worker of this machine has: server pid, time, task index and attempt.
pub fn new_token(task: usize, attempt: u32) -> String {
    format!(
        "{}-{}-{task}-{attempt}",
        std::process::id(),
        crate::host::worker::now_ms()
    )
}

/// Reads the records (none when the file does not exist).
pub fn load(path: &Path) -> Result<Vec<WorkerRecord>, OrphanError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| OrphanError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(OrphanError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the records atomically (a temp file beside it, then rename): a kill leaves the old
/// list or the new one, never half of one.
pub fn save(path: &Path, records: &[WorkerRecord]) -> Result<(), OrphanError> {
    let io = |source| OrphanError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(records).expect("records serialize");
    std::io::Write::write_all(&mut tmp, &json).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// One process left of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its process id.
    pub pid: u32,
    /// The task whose worker it belongs to.
    pub task: String,
}

/// Every live process of this user (except this one) left of the recorded workers: in a
/// recorded session that is still the recorded one, or carrying a recorded token. Includes the
/// workers themselves when they are still alive.
pub fn leftovers(records: &[WorkerRecord]) -> Vec<Leftover> {
    if records.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let earliest = records.iter().map(|r| r.start_ticks).min().unwrap_or(0);
    // A session is still the recorded one while its leader is the recorded process, or the
    // leader is gone (a session id is not reused while members live).
    let live_session = |r: &WorkerRecord| {
        r.sid == r.pid && proc_stat(r.sid).is_none_or(|leader| leader.start_ticks == r.start_ticks)
    };
    let sessions: Vec<&WorkerRecord> = records.iter().filter(|r| live_session(r)).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(st) = proc_stat(pid) else { continue };
        // Everything a worker started, started after it.
        if st.start_ticks < earliest {
            continue;
        }
        let by_session = sessions
            .iter()
            .find(|r| st.sid == r.sid && st.start_ticks >= r.start_ticks);
        let owner = match by_session {
            Some(r) => Some(*r),
            None => token_of(pid).and_then(|t| records.iter().find(|r| r.token == t)),
        };
        if let Some(r) = owner {
            found.push(Leftover {
                pid,
                task: r.task.clone(),
            });
        }
    }
    found
}

/// The worker token in a process's environment, if it has one and we may read it.
fn token_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TOKEN_VAR}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sends SIGKILL to each process; returns those that were signalled.
pub fn kill_all(found: &[Leftover]) -> Vec<Leftover> {
    found
        .iter()
        .filter(|l| signal(l.pid, libc::SIGKILL))
        .cloned()
        .collect()
}

/// Sends `sig` to every member of session `sid` (the session a worker leads), the leader too.
/// Returns how many were signalled.
pub fn signal_session(sid: u32, sig: libc::c_int) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && proc_stat(pid).is_some_and(|s| s.sid == sid))
        .filter(|&pid| signal(pid, sig))
        .count()
}

fn signal(pid: u32, sig: libc::c_int) -> bool {
    match i32::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; no memory is touched.
        Ok(p) if p > 1 => unsafe { libc::kill(p, sig) == 0 },
        _ => false,
    }
}

/// One line saying what was killed, per task: `t1 (pids 12, 13), t2 (pid 14)`.
pub fn describe(killed: &[Leftover]) -> String {
    let mut by_task: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for l in killed {
        by_task.entry(&l.task).or_default().push(l.pid);
    }
    by_task
        .into_iter()
        .map(|(task, pids)| {
            let list = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let s = if pids.len() == 1 { "" } else { "s" };
            format!("{task} (pid{s} {list})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn wait_gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if proc_stat(pid).is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn finds_what_left_the_session_by_token_and_the_rest_by_session() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let token = new_token(0, 1);
        // A worker leading its own session (as in its PTY): one child leaves the session, one
        // ignores SIGHUP in its own process group.
        let mut worker = Command::new("setsid")
            .args([
                "sh",
                "-c",
                "setsid sleep 1000 & a=$!; (trap '' HUP; sleep 1000) & b=$!; echo \"$a $b\" > \"$1\"; wait",
                "worker",
            ])
            .arg(&pids)
            .env(TOKEN_VAR, &token)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&pids).map_or(true, |s| s.split_whitespace().count() < 2) {
            assert!(
                Instant::now() < deadline,
                "the worker wrote its children's pids"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let kids: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let rec = record("t1", worker.id(), &token).unwrap();
        assert_eq!(rec.sid, worker.id(), "the worker leads its session");
        // The shell wrote the pid when it forked; `setsid` leaves the session a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_stat(kids[0]).is_some_and(|s| s.sid == rec.sid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_ne!(proc_stat(kids[0]).unwrap().sid, rec.sid, "setsid left it");

        // Records survive a save and a load.
        let file = dir.path().join("run/workers.json");
        save(&file, std::slice::from_ref(&rec)).unwrap();
        assert_eq!(load(&file).unwrap(), vec![rec.clone()]);

        let found = leftovers(std::slice::from_ref(&rec));
        let found_pids: Vec<u32> = found.iter().map(|l| l.pid).collect();
        for pid in [worker.id(), kids[0], kids[1]] {
            assert!(found_pids.contains(&pid), "{pid} in {found:?}");
        }
        assert!(!found_pids.contains(&std::process::id()));
        let killed = kill_all(&found);
        assert!(describe(&killed).starts_with("t1 (pids "));
        let _ = worker.wait();
        for pid in kids {
            assert!(wait_gone(pid), "{pid} was killed");
        }
        assert!(leftovers(&[rec]).is_empty());
    }

    #[test]
    fn a_reused_session_id_is_not_ours() {
        let mut other = Command::new("setsid")
            .args(["sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = other.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_stat(pid).is_none_or(|s| s.sid != pid) {
            assert!(Instant::now() < deadline, "setsid ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = proc_stat(pid).unwrap();
        // A record of an earlier process that had this pid and session: started before it.
        let rec = WorkerRecord {
            task: "t".into(),
            pid,
            pgid: pid,
            sid: pid,
            start_ticks: st.start_ticks.saturating_sub(100),
            token: "no-such-token".into(),
        };
        let found = leftovers(&[rec]);
        let _ = other.kill();
        let _ = other.wait();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_corrupt_record_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("workers.json");
        std::fs::write(&file, "{not json").unwrap();
        let e = load(&file).unwrap_err().to_string();
        assert!(e.contains("workers.json") && e.contains("by hand"), "{e}");
        assert!(load(&dir.path().join("none.json")).unwrap().is_empty());
    }
}
