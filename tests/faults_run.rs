//! Misbehaving workers against the real binary (issue 12): escape sequences that never end,
//! terminal-query floods, children that outlive their worker, command lines too long for Linux.
//! Real PTYs, real processes, real git repositories in temp dirs.

mod common;

use common::{bin, repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a one-phase manifest (workdir `.sy`) and a config into `dir`; returns the manifest.
fn write_project(dir: &Path, tasks_json: &str, config: &str) -> PathBuf {
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

/// The tasks of a manifest on disk.
fn tasks(manifest: &Path) -> Vec<Value> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    m["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().clone())
        .collect()
}

/// The journal's entries (`<workdir>/logs/events.jsonl`).
fn journal(workdir: &Path) -> Vec<Value> {
    std::fs::read_to_string(workdir.join("logs/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
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
