//! `cargo bench --bench footprint` — what a run costs a person beyond CPU:
//!
//! 1. **Attach latency**: 16 busy workers (`fake-agent --scenario busy`) and one probe worker
//!    (this bench binary re-run as `probe FILE`: raw mode, one timestamp per byte it reads);
//!    a control room in a 160×48 PTY attaches to the probe and types `SY_BENCH_KEYS` keys
//!    (default 300), one every 25 ms. Latency = the probe's clock when the byte arrived minus
//!    the bench's clock when it wrote the key into the control room's terminal (same machine, same
//!    clock): the whole path client → socket → server → writer thread → PTY. p50 / p99 / max.
//!    `SY_BENCH_KEYS=0` skips this part.
//! 2. **Memory of the server** (`run --headless --foreground`: the server is that process):
//!    resident memory with 16 workers that printed 6 000 lines each (`scrollback_lines = 5000`)
//!    against 16 that printed nothing, for each `scrollback_memory_lines` in
//!    `SY_BENCH_MEMORY_LINES` (default `5000,1000,500`: 5000 is everything in memory, as before
//!    the transcript served old lines); and while one worker floods `SY_BENCH_FLOOD_MB` (default
//!    200) MB of coloured log, then of random bytes (shipped defaults): the most and the last
//!    resident memory against the figure before the flood.
//! 3. **Scrollback replay**: the time to replay a transcript into a 47×160 emulator with 5 000
//!    lines of scrollback ([`switchyard::ui::scroll::replay_history`], what the control room does
//!    off its loop when a person reads past memory): the newest 5 000 lines of a 4 MiB
//!    transcript of coloured log, and the whole 4 MiB of a transcript of screen redraws (few
//!    line feeds: the replay reads back until it has the rows).

mod common;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Resident memory of a process, bytes (VmRSS from /proc).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The probe worker: raw mode, and for every byte read from the terminal one line with the
/// time (ns since the epoch) appended to `file`.
fn probe(file: &str) {
    let _ = crossterm::terminal::enable_raw_mode();
    println!("probe ready\r");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("the probe's file");
    let mut stdin = std::io::stdin();
    let mut b = [0u8; 64];
    while let Ok(n) = stdin.read(&mut b) {
        if n == 0 {
            break;
        }
        let t = now_ns();
        for _ in 0..n {
            let _ = writeln!(out, "{t}");
        }
    }
}

/// A repository with a manifest of tasks `(id, agent)` and the agent profiles `(name, argv)`;
/// `extra` is appended to the top of its switchyard.toml.
fn project(
    tasks: &[(String, &str)],
    agents: &[(&str, Vec<String>)],
    extra: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = dir.path();
    common::git(p, &["init", "-q", "-b", "main"]);
    std::fs::write(
        p.join(".gitignore"),
        "/manifest.json\n/switchyard.toml\n/.sy/\n",
    )
    .unwrap();
    common::git(p, &["add", "-A"]);
    common::git(p, &["commit", "-qm", "init"]);
    let tasks: Vec<String> = tasks
        .iter()
        .map(|(id, agent)| {
            format!(r#"{{"id":"{id}","title":"{id}","files":["{id}"],"agent":"{agent}"}}"#)
        })
        .collect();
    std::fs::write(
        p.join("manifest.json"),
        format!(
            r#"{{"project":"bench","workdir":".sy","phases":[{{"name":"p","tasks":[{}]}}]}}"#,
            tasks.join(",")
        ),
    )
    .unwrap();
    let mut toml = format!(
        "max_parallel = {}\ndefault_agent = \"{}\"\npty_rows = 47\npty_cols = 160\nscrollback_lines = 5000\n{extra}",
        tasks.len(),
        agents[0].0
    );
    for (name, argv) in agents {
        toml.push_str(&format!("[agents.{name}]\ncommand = {argv:?}\n"));
    }
    toml.push_str(
        "[heal]\nstall_ms = 3600000\n[heal.ladder]\nexited = [{ action = \"fail\" }]\nerror = [{ action = \"fail\" }]\n",
    );
    std::fs::write(p.join("switchyard.toml"), toml).unwrap();
    dir
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Attach latency in ms (sorted), with 16 busy workers beside the probe.
fn attach_latency(keys: usize) -> Vec<f64> {
    let me = std::env::current_exe().expect("this bench's path");
    let stamps = tempfile::NamedTempFile::new().expect("a temp file");
    let stamps_path = stamps.path().display().to_string();
    let mut tasks = vec![("probe".to_string(), "probe")];
    tasks.extend((0..16).map(|i| (format!("w{i:02}"), "busy")));
    let b = bin().display().to_string();
    let proj = project(
        &tasks,
        &[
            (
                "busy",
                vec![
                    b.clone(),
                    "fake-agent".into(),
                    "--scenario".into(),
                    "busy".into(),
                ],
            ),
            (
                "probe",
                vec![
                    me.display().to_string(),
                    "probe".into(),
                    stamps_path.clone(),
                ],
            ),
        ],
        "",
    );
    let dir = proj.path();
    let rt = dir.join("rt");
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 48,
            cols: 160,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a PTY");
    let mut cmd = CommandBuilder::new(&b);
    cmd.args(["run", "manifest.json"]);
    cmd.cwd(dir);
    cmd.env("TERM", "xterm-256color");
    cmd.env("SWITCHYARD_RUNTIME_DIR", &rt);
    let mut room = pair.slave.spawn_command(cmd).expect("the control room");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("reader");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    let mut keyboard = pair.master.take_writer().expect("writer");
    common::wait_for("17 workers", 60, || {
        common::live_workers(&bin(), dir, &rt) == 17
    });
    std::thread::sleep(Duration::from_secs(2));
    // The probe is the first task, selected at start: Enter attaches.
    keyboard.write_all(b"\r").unwrap();
    keyboard.flush().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let count = |p: &str| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let mut sent = Vec::with_capacity(keys);
    for i in 0..keys {
        let t0 = now_ns();
        keyboard.write_all(b"a").unwrap();
        keyboard.flush().unwrap();
        sent.push(t0);
        let deadline = Instant::now() + Duration::from_secs(2);
        while count(&stamps_path) < i + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let got: Vec<u128> = std::fs::read_to_string(&stamps_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let _ = Command::new(bin())
        .args(["stop", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", &rt)
        .stdout(Stdio::null())
        .status();
    let _ = room.kill();
    let _ = room.wait();
    assert_eq!(got.len(), keys, "every key reached the probe");
    let mut ms: Vec<f64> = got
        .iter()
        .zip(&sent)
        .map(|(&t1, &t0)| t1.saturating_sub(t0) as f64 / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// A headless foreground run of `tasks` tasks of agent `argv`; `sample` is called with the
/// server's pid until it returns true (then the run is stopped). Returns what `sample` kept.
fn headless_run(
    n: usize,
    argv: Vec<String>,
    extra: &str,
    mut sample: impl FnMut(u32, &Path, &Path) -> bool,
) {
    let tasks: Vec<(String, &str)> = (0..n).map(|i| (format!("w{i:02}"), "a")).collect();
    let proj = project(&tasks, &[("a", argv)], extra);
    let dir = proj.path();
    let rt = dir.join("rt");
    let mut run = Command::new(bin())
        .args(["run", "--headless", "--foreground", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", &rt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a headless run");
    let pid = run.id();
    while !sample(pid, dir, &rt) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new(bin())
        .args(["stop", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", &rt)
        .stdout(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = run.kill();
    let _ = run.wait();
}

/// Server resident memory with `n` workers that printed `lines` lines each and then wait;
/// `extra` goes into the config (e.g. `scrollback_memory_lines = 1000`).
fn rss_with_lines(n: usize, lines: usize, extra: &str) -> u64 {
    let script = format!(
        "i=0; while [ $i -lt {lines} ]; do i=$((i+1)); printf '\\033[32m%6d\\033[0m a log line that fills the scrollback with some text %s\\r\\n' $i $i; done; exec sleep 600"
    );
    let mut out = 0;
    let mut settled_at: Option<Instant> = None;
    headless_run(
        n,
        vec!["sh".into(), "-c".into(), script],
        extra,
        |pid, dir, rt| {
            if settled_at.is_none() && common::live_workers(&bin(), dir, rt) == n {
                settled_at = Some(Instant::now());
            }
            // Enough time for every worker to print its lines (sh prints ~5 000 lines a second).
            match settled_at {
                Some(t) if t.elapsed() > Duration::from_secs(8 + lines as u64 / 1000) => {
                    out = rss(pid);
                    true
                }
                _ => false,
            }
        },
    );
    out
}

/// (most, last) server resident memory while one worker writes what `argv` writes.
fn rss_under_flood(argv: Vec<String>) -> (u64, u64) {
    let (mut most, mut last) = (0, 0);
    let start = Instant::now();
    headless_run(1, argv, "", |pid, _, _| {
        let now = rss(pid);
        if now == 0 {
            // Not started yet, or gone: the run settled when its worker exited.
            return last != 0 || start.elapsed() > Duration::from_secs(120);
        }
        most = most.max(now);
        last = now;
        // The worker exited (the run settled and the process ends) or the time is up.
        !Path::new(&format!("/proc/{pid}")).exists() || start.elapsed() > Duration::from_secs(120)
    });
    (most, last)
}

/// Times [`switchyard::ui::scroll::replay_history`] on two 4 MiB transcripts (see the module
/// documentation) and prints the figures.
fn replay_times() {
    use switchyard::host::transcript::{Transcript, TranscriptLimits};
    use switchyard::ui::scroll::{replay_history, HistoryRequest};
    println!("\nscrollback replay from the transcript into 47×160 with 5 000 lines (best of 3)");
    let dir = tempfile::tempdir().expect("a temp dir");
    let log_line = |i: usize| {
        format!("\x1b[32m{i:6}\x1b[0m a log line that fills the scrollback with some text {i}\r\n")
    };
    let redraw = |i: usize| {
        format!("\x1b[H\x1b[2K\x1b[1;33m⠋ thinking {i}\x1b[0m\x1b[10;1H\x1b[Ksome status text at row ten {i}\r")
    };
    let cases: [(&str, &dyn Fn(usize) -> String); 2] = [
        ("coloured log lines", &log_line),
        ("screen redraws", &redraw),
    ];
    for (name, make) in cases {
        let path = dir.path().join(format!("{}.log", name.replace(' ', "-")));
        let limits = TranscriptLimits::default();
        let mut t = Transcript::open(&path, limits).expect("a transcript");
        let (mut written, mut i) = (0u64, 0usize);
        while written < 4 << 20 {
            let b = make(i);
            t.write_all(b.as_bytes()).expect("written");
            written += b.len() as u64;
            i += 1;
        }
        let req = HistoryRequest {
            task: 0,
            transcript: path,
            limits,
            size: (47, 160),
            lines: 5000,
        };
        let mut best: Option<switchyard::ui::scroll::History> = None;
        for _ in 0..3 {
            let h = replay_history(&req).expect("a replay");
            if best.as_ref().is_none_or(|b| h.took_ms < b.took_ms) {
                best = Some(h);
            }
        }
        let h = best.expect("three replays");
        println!(
            "  4 MiB of {name:<18}: read {:.2} MiB, {} rows of scrollback, {} ms",
            mib(h.bytes as u64),
            h.depth,
            h.took_ms
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        probe(&args[2]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let keys = common::env_num("SY_BENCH_KEYS", 300) as usize;
    if keys > 0 {
        let ms = attach_latency(keys);
        println!("attach latency: {keys} keys typed into a worker while 16 workers are busy, ms");
        println!(
            "  p50 {:.2}   p99 {:.2}   max {:.2}   (target p99 < 5)",
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
    }

    println!("\nserver resident memory, 16 workers at 47×160, scrollback_lines = 5000");
    let idle = rss_with_lines(16, 0, "");
    println!("  nothing printed: {:.1} MiB", mib(idle));
    let settings =
        std::env::var("SY_BENCH_MEMORY_LINES").unwrap_or_else(|_| "5000,1000,500".into());
    for memory in settings
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        let full = rss_with_lines(16, 6000, &format!("scrollback_memory_lines = {memory}\n"));
        println!(
            "  scrollback_memory_lines = {memory:>4}: 6 000 lines each {:.1} MiB; per worker {:.2} MiB (target ≤ 10)",
            mib(full),
            mib(full.saturating_sub(idle)) / 16.0
        );
    }
    replay_times();

    let mb = common::env_num("SY_BENCH_FLOOD_MB", 200);
    let flood = rss_under_flood(vec![
        "sh".into(),
        "-c".into(),
        format!(
            "SY_FLOOD_MB={mb} exec {:?} fake-agent --scenario flood",
            bin().display().to_string()
        ),
    ]);
    let random = rss_under_flood(vec![
        "sh".into(),
        "-c".into(),
        format!("head -c {} /dev/urandom", mb << 20),
    ]);
    let before = rss_with_lines(1, 0, "");
    println!("  one worker that printed nothing: {:.1} MiB", mib(before));
    for (name, (most, last)) in [("coloured log", flood), ("random bytes", random)] {
        println!(
            "  one worker, {mb} MiB of {name:<13}: {:+.1} MiB at most, {:+.1} MiB at the end",
            mib(most) - mib(before),
            mib(last) - mib(before)
        );
    }
}
