//! Misbehaving workers against the real binary (issue 12): escape sequences that never end,
//! terminal-query floods, children that outlive their worker, command lines too long for Linux.
//! Real PTYs, real processes, real git repositories in temp dirs.

mod common;

use common::{bin, repo, write_project};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tasks of a manifest on disk.
fn tasks(manifest: &Path) -> Vec<Value> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    common::tasks(&m)
}

/// The journal's entries (`<workdir>/logs/events.jsonl`).
fn journal(workdir: &Path) -> Vec<Value> {
    common::journal(&workdir.join("logs"))
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`), if the process is there.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{field}:")))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `switchyard run --headless --foreground` on the manifest while sampling the process's
/// peak resident memory; returns (exit code, stdout, peak KiB).
fn run_measured(manifest: &Path) -> (Option<i32>, String, u64) {
    let mut child = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        // VmHWM is the peak so far; the last reading before the exit is the run's peak.
        if let Some(hwm) = status_kib(pid, "VmHWM") {
            peak = peak.max(hwm);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap(), peak)
}

/// An agent that prints `intro`, then 50 MB without a terminator, then ends the sequence with
/// `end`, prints a line and commits.
fn flood_config(intro: &str, end: &str) -> String {
    format!(
        r#"
default_agent = "flood"
[heal]
stall_ms = 600000
max_attempts = 1
[agents.flood]
command = ["sh", "-c", "printf '{intro}'; head -c 50000000 /dev/zero | tr '\\0' a; printf '{end}after the flood\\n'; echo x > f.txt; git add f.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm flood"]
"#
    )
}

#[test]
fn fifty_megabytes_of_unterminated_osc_or_dcs_keep_memory_bounded() {
    let mut figures = Vec::new();
    for (kind, intro, end) in [
        // printf escapes inside a TOML string: `\\033` is ESC.
        ("osc", r"\\033]0;", r"\\007"),
        ("dcs", r"\\033P1;2q", r"\\033\\\\"),
    ] {
        let r = repo();
        let manifest = write_project(
            r.path(),
            r#"{"id":"f1","title":"Flood","files":["f.txt"]}"#,
            &flood_config(intro, end),
        );
        let (code, stdout, peak) = run_measured(&manifest);
        eprintln!("{kind}: peak resident memory {} KiB", peak);
        figures.push((kind, peak));
        assert_eq!(code, Some(0), "{kind}: {stdout}");
        assert!(stdout.contains("tasks complete 1/1"), "{kind}: {stdout}");
        assert_eq!(tasks(&manifest)[0]["status"], "complete", "{kind}");
    }
    for (kind, peak) in figures {
        // Without a cap the parser buffers the whole sequence: 100+ MB for 50 MB.
        assert!(
            peak < 48 * 1024,
            "{kind}: peak resident memory {peak} KiB for 50 MB of an unterminated sequence"
        );
    }
}

/// The headless run's stdout lines, each with the time it arrived since the start.
fn run_timed(manifest: &Path, limit: Duration) -> (Option<i32>, Vec<(Duration, String)>) {
    use std::io::BufRead;
    let start = Instant::now();
    let mut child = Command::new(bin())
        .args(["run", "--headless"])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .map(|l| (start.elapsed(), l))
            .collect::<Vec<_>>()
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = Command::new(bin()).arg("stop").arg(manifest).status();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), reader.join().unwrap())
}

const FLOOD_QUERIES: &str = r#"
[heal]
stall_ms = 600000
max_attempts = 1
[agents.flood]
command = ["sh", "-c", "timeout 4 yes \"$(printf '\\033[6n\\033[c\\033[5n\\033]11;?\\007')\"; echo x > q.txt; git add q.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm flood; echo flood-done"]
[agents.quick]
command = ["sh", "-c", "sleep 1; echo y > r.txt; git add r.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm quick"]
"#;

#[test]
fn a_worker_flooding_terminal_queries_freezes_nothing_and_the_run_ends() {
    let r = repo();
    let manifest = write_project(
        r.path(),
        r#"{"id":"q1","title":"Flood queries","files":["q.txt"],"agent":"flood"},
           {"id":"q2","title":"Quick","files":["r.txt"],"agent":"quick"}"#,
        FLOOD_QUERIES,
    );
    let (code, lines) = run_timed(&manifest, Duration::from_secs(20));
    let text: String = lines
        .iter()
        .map(|(t, l)| format!("{:>6.2}s {l}\n", t.as_secs_f64()))
        .collect();
    eprintln!("{text}");
    assert_eq!(code, Some(0), "{text}");
    let at = |needle: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{text}"))
    };
    // The other worker's progress reaches the headless client while the flood goes on (the
    // flood lasts 4 s), not after it.
    let quick = at("q2       status  running → complete");
    let flood = at("q1       status  running → complete");
    assert!(
        quick + Duration::from_millis(1500) < flood,
        "q2 at {quick:?} was held back by q1's flood (ends {flood:?}):\n{text}"
    );
    for t in tasks(&manifest) {
        assert_eq!(t["status"], "complete", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
    }
}

/// Kills the listed processes when dropped (a failing test leaves no sleepers behind).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if is_sleeper(pid) {
                // SAFETY: kill(2) only sends a signal.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

/// True while `pid` is a live `sleep` (not a zombie, not a reused pid of something else).
fn is_sleeper(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.contains("(sleep)") && !stat.contains(") Z")
}

/// Waits for `name` in `dir` to hold a pid; returns it.
fn pid_file(dir: &Path, name: &str) -> u32 {
    let mut pid = None;
    common::wait_until(&format!("{name} written"), 20, || {
        pid = std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

const COMMIT_AGENTS: &str = r#"
[heal]
stall_ms = 600000
max_attempts = 1
[agents.orphan]
command = ["sh", "-c", "echo x > o.txt; git add o.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm o"]
[agents.hup]
command = ["sh", "-c", "echo x > h.txt; git add h.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm h"]
"#;

#[test]
fn what_workers_leave_after_a_kill_9_of_the_server_is_killed_at_the_next_start() {
    let r = repo();
    let pids = tempfile::tempdir().unwrap();
    let p = pids.path().display();
    // One worker starts a child that leaves its session; one ignores SIGHUP (and so does its
    // child): both outlive their PTY closing when the server dies.
    let config = format!(
        r#"
[heal]
stall_ms = 600000
[agents.orphan]
command = ["sh", "-c", "setsid sleep 1000 & echo $! > {p}/orphan.pid; sleep 1000"]
[agents.hup]
command = ["sh", "-c", "trap '' HUP; sleep 1000 & echo $! > {p}/hup.pid; wait"]
"#
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"o1","title":"Orphan","files":["o.txt"],"agent":"orphan"},
           {"id":"h1","title":"Ignores HUP","files":["h.txt"],"agent":"hup"}"#,
        &config,
    );
    let _stop = common::StopOnDrop(manifest.clone());
    let workdir = r.path().join(".sy");
    let mut client = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let orphan = pid_file(pids.path(), "orphan.pid");
    let hup = pid_file(pids.path(), "hup.pid");
    let _guard = KillOnDrop(vec![orphan, hup]);
    // Give the server the time to record both workers (their leftovers are asserted below).
    let recorded = || {
        std::fs::read_to_string(workdir.join("run/workers.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
            .is_some_and(|v| v.len() == 2)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !recorded() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = common::server_pid(&workdir).expect("the lock names the server");
    // SAFETY: kill(2) only sends a signal.
    unsafe {
        libc::kill(server as i32, libc::SIGKILL);
    }
    common::wait_until("the server is gone", 10, || !common::alive(server));
    let _ = client.kill();
    let _ = client.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(is_sleeper(orphan), "the setsid child outlived the server");
    assert!(
        is_sleeper(hup),
        "the HUP-ignoring worker outlived the server"
    );

    // The next run (agents that just commit now) kills them first and says so.
    std::fs::write(r.path().join("switchyard.toml"), COMMIT_AGENTS).unwrap();
    let out = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    common::wait_until("the leftovers are gone", 5, || {
        !is_sleeper(orphan) && !is_sleeper(hup)
    });
    let recover: Vec<Value> = journal(&workdir)
        .into_iter()
        .filter(|e| e["kind"] == "recover")
        .collect();
    assert_eq!(recover.len(), 1, "one journal line: {recover:?}");
    let msg = recover[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("killed") && msg.contains("o1") && msg.contains("h1"),
        "{msg}"
    );
    let killed = recover[0]["data"]["pids"].as_array().unwrap();
    for pid in [orphan, hup] {
        assert!(killed.contains(&Value::from(pid)), "{pid} in {killed:?}");
    }
    assert!(stdout.contains("recovered: killed"), "{stdout}");
    for t in tasks(&manifest) {
        assert_eq!(t["status"], "complete", "{t}");
    }
}

#[test]
fn a_clean_stop_kills_the_workers_whole_session_and_what_left_it() {
    let r = repo();
    let pids = tempfile::tempdir().unwrap();
    let p = pids.path().display();
    // A child that leaves the session, and a job-control child in its own process group of
    // the worker's session (the PTY gives `set -m` a terminal).
    let config = format!(
        r#"
[heal]
stall_ms = 600000
[agents.spawner]
command = ["sh", "-c", "setsid sleep 1000 & echo $! > {p}/setsid.pid; set -m; sleep 1000 & echo $! > {p}/job.pid; wait"]
"#
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"s1","title":"Spawner","files":["s.txt"],"agent":"spawner"}"#,
        &config,
    );
    let _stop = common::StopOnDrop(manifest.clone());
    let mut client = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let setsid = pid_file(pids.path(), "setsid.pid");
    let job = pid_file(pids.path(), "job.pid");
    let _guard = KillOnDrop(vec![setsid, job]);
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let field = |s: &str, i: usize| {
        s[s.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(i)
            .unwrap()
            .to_string()
    };
    // `$!` is written as soon as the child is forked: wait for it to call setsid.
    common::wait_until("the setsid child has a session of its own", 10, || {
        field(&stat(setsid), 3) == setsid.to_string()
    });
    let job_stat = stat(job);
    assert_ne!(
        field(&job_stat, 2),
        field(&job_stat, 3),
        "the job has its own process group in the worker's session"
    );
    let out = Command::new(bin())
        .arg("stop")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = client.wait();
    common::wait_until("the worker's children are gone", 8, || {
        !is_sleeper(setsid) && !is_sleeper(job)
    });
    let reaped = journal(&r.path().join(".sy"))
        .into_iter()
        .any(|e| e["kind"] == "reap" && e["message"].as_str().unwrap().contains("killed"));
    assert!(reaped, "the kill is journaled");
}

const ARGV_AGENTS: &str = r#"
[heal]
stall_ms = 600000
backoff_ms = 100
[agents.byarg]
command = ["sh", "-c", "printf '%s' \"$1\" > p.txt; git add p.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm p", "agent", "{prompt}"]
[agents.byfile]
command = ["sh", "-c", "cp \"$1\" p2.txt; git add p2.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm p", "agent", "{prompt_file}"]
"#;

#[test]
fn a_prompt_too_long_for_an_argument_fails_once_saying_how_to_pass_it() {
    let r = repo();
    let title = "t".repeat(1024 * 1024);
    let prompt = format!("Do this: {}", "p".repeat(1024 * 1024));
    let tasks_json = serde_json::json!([
        {"id": "big", "title": title, "files": ["p.txt"], "agent": "byarg"},
        {"id": "file", "title": "By file", "prompt": prompt, "files": ["p2.txt"], "agent": "byfile"},
    ])
    .to_string();
    let manifest = write_project(r.path(), &tasks_json[1..tasks_json.len() - 1], ARGV_AGENTS);
    let started = Instant::now();
    let out = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let ts = tasks(&manifest);
    let big = &ts[0];
    assert_eq!(big["status"], "error", "not retried in a loop");
    assert_eq!(big["attempts"], 1, "one start, no retries");
    let verdict = big["lastVerdict"].as_str().unwrap();
    for needle in [
        "argument 4 of the agent command (made from {prompt})",
        "over 128 KiB",
        "{prompt_file}",
    ] {
        assert!(verdict.contains(needle), "{needle:?} in {verdict}");
    }
    let errors: Vec<Value> = journal(&r.path().join(".sy"))
        .into_iter()
        .filter(|e| e["kind"] == "error" && e["task"] == "big")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        stdout.contains("{prompt_file}"),
        "shown to the person: {stdout}"
    );

    // The same size through {prompt_file} reaches the agent whole.
    assert_eq!(ts[1]["status"], "complete", "{stdout}");
    let file = r.path().join(".sy/logs/file.prompt.md");
    // The implementer's preamble, then the task.
    let task = format!("\nTASK: {prompt}");
    assert!(std::fs::read_to_string(&file).unwrap().ends_with(&task));
    let committed = std::fs::read_to_string(r.path().join(".sy/worktrees/file/p2.txt")).unwrap();
    assert!(committed.ends_with(&task));
}

#[test]
fn work_committed_before_a_kill_9_is_verified_on_resume_not_redone() {
    let r = repo();
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    // The agent commits its work, then lingers (as agents do before they exit).
    let config = format!(
        r#"
[heal]
stall_ms = 600000
[agents.work]
command = ["sh", "-c", "echo x > w.txt; git add w.txt; git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm w; touch {m}/committed; sleep 1000"]
"#
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"w1","title":"Work","files":["w.txt"],"agent":"work"}"#,
        &config,
    );
    let _stop = common::StopOnDrop(manifest.clone());
    let workdir = r.path().join(".sy");
    let mut client = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("the agent committed", 20, || {
        marks.path().join("committed").exists()
    });
    // The start (worktree, branch, base commit) is on disk; the commit is not recorded.
    common::wait_until("the start is saved", 10, || {
        tasks(&manifest)[0]["baseCommit"].is_string()
    });
    let server = common::server_pid(&workdir).expect("the lock names the server");
    // SAFETY: kill(2) only sends a signal.
    unsafe {
        libc::kill(server as i32, libc::SIGKILL);
    }
    common::wait_until("the server is gone", 10, || !common::alive(server));
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(tasks(&manifest)[0]["status"], "running", "not recorded yet");

    // Resumed: an agent that would mark that it ran again (and fail).
    let again = format!(
        r#"
[agents.work]
command = ["sh", "-c", "touch {m}/ran-again; exit 1"]
verify = ["sh", "-c", "test -f w.txt && touch {m}/verified"]
"#
    );
    std::fs::write(r.path().join("switchyard.toml"), again).unwrap();
    let out = Command::new(bin())
        .args(["run", "--headless"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let t = &tasks(&manifest)[0];
    assert_eq!(t["status"], "complete", "{t}");
    assert_eq!(t["attempts"], 1, "{t}");
    assert!(
        !marks.path().join("ran-again").exists(),
        "the agent was started again:\n{stdout}"
    );
    assert!(
        marks.path().join("verified").exists(),
        "the committed work was verified:\n{stdout}"
    );
}
