//! `cargo bench --bench vs_tmux` — switchyard against tmux on the same workloads, measured side by
//! side in one run, printed as ratios against the baseline of that run:
//!
//! 1. **Busy agents**: 16 workers each redrawing a spinner ~12 times a second and printing a
//!    coloured log line every second (`switchyard fake-agent --scenario busy`), shown in a 160×48
//!    terminal. CPU (user + system, from /proc) over `SY_BENCH_BUSY_S` seconds of: switchyard's
//!    server + an attached control room; tmux's server + an attached client showing the same 16
//!    programs as tiled panes; switchyard's server with a headless client; tmux's server detached.
//!    The workers' own CPU is not counted on either side.
//! 2. **Flood**: N workers each writing M MiB of coloured log as fast as they can
//!    (`--scenario flood`): wall time until every byte is drained, through plain PTY readers that
//!    discard the bytes (the floor), through switchyard (first spawn to last exit, from its
//!    journal) and through tmux (detached windows; until every window's program signalled).
//!
//! Needs `tmux` on PATH (skips the tmux columns otherwise). Environment: `SY_BENCH_BUSY_S`
//! (default 20; 0 skips the busy workload), `SY_BENCH_FLOOD` (default `8x8,16x20`: N×MiB
//! pairs), `SY_BENCH_ROUNDS` (default 3: flood rounds, interleaved; medians are printed),
//! `SY_BENCH_BASELINE` (the path of another switchyard binary, e.g. built from an older
//! commit: measured in the same run on the same workloads, for before/after figures).

mod common;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TMUX_SOCKET: &str = "switchyard-bench";

/// The switchyard binary being measured (this build, or the baseline of `SY_BENCH_BASELINE`).
static MEASURED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn bin() -> PathBuf {
    MEASURED
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(workload_bin)
}

/// The binary that runs the workloads (`fake-agent`): always this build, so two switchyard
/// binaries compared in one run watch the same programs.
fn workload_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// CPU ticks (user + system, 1/100 s) of a process, from /proc.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after) = stat.rfind(')') else {
        return 0;
    };
    let f: Vec<&str> = stat[after + 2..].split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Percent of one core the processes used over `secs`.
fn cpu_percent(pids: &[u32], secs: u64) -> f64 {
    let before: u64 = pids.iter().map(|&p| ticks(p)).sum();
    std::thread::sleep(Duration::from_secs(secs));
    let after: u64 = pids.iter().map(|&p| ticks(p)).sum();
    (after.saturating_sub(before)) as f64 / secs as f64
}

/// A program in a rows × cols PTY whose output is read and thrown away (a terminal that draws
/// nothing), so the program never blocks on output.
struct Pty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Pty {
    fn spawn(argv: &[&str], cwd: &Path, env: &[(&str, &str)], rows: u16, cols: u16) -> Pty {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a PTY");
        let mut cmd = CommandBuilder::new(argv[0]);
        cmd.args(&argv[1..]);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair.slave.spawn_command(cmd).expect("spawn");
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
        Pty {
            child,
            _master: pair.master,
        }
    }

    fn pid(&self) -> u32 {
        self.child.process_id().unwrap_or(0)
    }

    /// Ends the program (a client leaving) and waits for it, so the next phase measures
    /// without it.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository with a manifest of `n` tasks run by `fake-agent --scenario <scenario>`.
fn project(n: usize, scenario: &str, flood_mb: u64) -> tempfile::TempDir {
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
    let tasks: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"w{i:02}","title":"Worker {i}","files":["f{i}"]}}"#))
        .collect();
    std::fs::write(
        p.join("manifest.json"),
        format!(
            r#"{{"project":"bench","workdir":".sy","phases":[{{"name":"p","tasks":[{}]}}]}}"#,
            tasks.join(",")
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("switchyard.toml"),
        format!(
            r#"max_parallel = {n}
default_agent = "bench"
pty_rows = 47
pty_cols = 160
[agents.bench]
command = [{bin:?}, "fake-agent", "--scenario", "{scenario}"]
env = {{ SY_FLOOD_MB = "{flood_mb}" }}
[heal]
stall_ms = 3600000
[heal.ladder]
exited = [{{ action = "fail" }}]
error = [{{ action = "fail" }}]
"#,
            bin = workload_bin().display().to_string()
        ),
    )
    .unwrap();
    dir
}

fn server_pid(workdir: &Path) -> Option<u32> {
    for e in std::fs::read_dir(workdir.join("run")).ok()?.flatten() {
        if e.path().extension().is_some_and(|x| x == "lock") {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            return v["pid"].as_u64().map(|p| p as u32);
        }
    }
    None
}

fn stop(dir: &Path, rt: &Path) {
    let _ = Command::new(bin())
        .args(["stop", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", rt)
        .stdout(Stdio::null())
        .status();
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", TMUX_SOCKET, "-f", "/dev/null"])
        .args(args)
        .output()
        .expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (control room, headless) CPU % of one core for the switchyard binary being measured.
fn busy_switchyard(n: usize, secs: u64) -> (f64, f64) {
    let proj = project(n, "busy", 0);
    let dir = proj.path();
    let rt = dir.join("rt");
    let rt_s = rt.display().to_string();
    let env = [("SWITCHYARD_RUNTIME_DIR", rt_s.as_str())];
    let b = bin().display().to_string();

    let room = Pty::spawn(&[&b, "run", "manifest.json"], dir, &env, 48, 160);
    common::wait_for("16 busy workers", 60, || {
        common::live_workers(&bin(), dir, &rt) == n
    });
    std::thread::sleep(Duration::from_secs(3));
    let server = server_pid(&dir.join(".sy")).expect("a server");
    let sy_room = cpu_percent(&[server, room.pid()], secs);
    room.stop();

    let mut headless = Command::new(&b)
        .args(["run", "--headless", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", &rt)
        .stdout(Stdio::null())
        .spawn()
        .expect("headless run");
    std::thread::sleep(Duration::from_secs(3));
    let sy_headless = cpu_percent(&[server, headless.id()], secs);
    let _ = headless.kill();
    let _ = headless.wait();
    stop(dir, &rt);
    (sy_room, sy_headless)
}

/// (tmux attached, tmux detached) CPU % of one core on the same workload.
fn busy_tmux(n: usize, secs: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let dir = dir.path();
    let b = workload_bin().display().to_string();
    let cmd = format!("{b} fake-agent --scenario busy");
    tmux(&["kill-server"]);
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "busy",
        "-x",
        "160",
        "-y",
        "48",
        &cmd,
    ]);
    for _ in 1..n {
        tmux(&["split-window", "-t", "busy", &cmd]);
        tmux(&["select-layout", "-t", "busy", "tiled"]);
    }
    let tmux_pid: u32 = tmux(&["display-message", "-p", "#{pid}"])
        .parse()
        .unwrap_or(0);
    let client = Pty::spawn(
        &["tmux", "-L", TMUX_SOCKET, "attach", "-t", "busy"],
        dir,
        &[],
        48,
        160,
    );
    std::thread::sleep(Duration::from_secs(3));
    let tmux_attached = cpu_percent(&[tmux_pid, client.pid()], secs);
    client.stop();
    std::thread::sleep(Duration::from_secs(1));
    let tmux_detached = cpu_percent(&[tmux_pid], secs);
    tmux(&["kill-server"]);
    (tmux_attached, tmux_detached)
}

/// Seconds to drain `n` × `mb` MiB through plain PTY readers that discard the bytes.
fn flood_plain(n: usize, mb: u64) -> f64 {
    let b = workload_bin().display().to_string();
    let mb_s = mb.to_string();
    let tmp = tempfile::tempdir().unwrap();

    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..n {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 47,
                cols: 160,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a PTY");
        let mut cmd = CommandBuilder::new(&b);
        cmd.args(["fake-agent", "--scenario", "flood"]);
        cmd.env("SY_FLOOD_MB", &mb_s);
        cmd.cwd(tmp.path());
        let mut child = pair.slave.spawn_command(cmd).expect("spawn");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("reader");
        handles.push(std::thread::spawn(move || {
            let _master = pair.master;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(k) = reader.read(&mut buf) {
                if k == 0 {
                    break;
                }
            }
            let _ = child.wait();
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    start.elapsed().as_secs_f64()
}

/// Seconds to drain `n` × `mb` MiB through the switchyard binary being measured (first spawn to
/// last exit, from its journal).
fn flood_switchyard(n: usize, mb: u64) -> f64 {
    let b = bin().display().to_string();
    let proj = project(n, "flood", mb);
    let dir = proj.path();
    let out = Command::new(&b)
        .args(["run", "--headless", "--foreground", "manifest.json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", dir.join("rt"))
        .output()
        .expect("headless run");
    assert!(out.status.code().is_some(), "the run ended");
    let journal = std::fs::read_to_string(dir.join(".sy/logs/events.jsonl")).unwrap_or_default();
    let mut first_spawn = u64::MAX;
    let mut last_exit = 0u64;
    for line in journal.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = v["tsMs"].as_u64().unwrap_or(0);
        match v["kind"].as_str() {
            Some("spawn") => first_spawn = first_spawn.min(at),
            Some("exit") => last_exit = last_exit.max(at),
            _ => {}
        }
    }
    last_exit.saturating_sub(first_spawn) as f64 / 1000.0
}

/// Seconds to drain `n` × `mb` MiB through tmux (detached windows; until every window's
/// program ended and left its marker file: `tmux wait-for` could miss a signal and hang).
fn flood_tmux(n: usize, mb: u64) -> f64 {
    let b = workload_bin().display().to_string();
    let marks = tempfile::tempdir().expect("a temp dir");
    let done = |i: usize| marks.path().join(format!("done{i}"));
    tmux(&["kill-server"]);
    let start = Instant::now();
    for i in 0..n {
        let cmd = format!(
            "SY_FLOOD_MB={mb} {b} fake-agent --scenario flood; touch {}",
            done(i).display()
        );
        if i == 0 {
            tmux(&[
                "new-session",
                "-d",
                "-s",
                "flood",
                "-x",
                "160",
                "-y",
                "48",
                &cmd,
            ]);
        } else {
            tmux(&["new-window", "-d", "-t", "flood", &cmd]);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(0..n).all(|i| done(i).exists()) {
        assert!(Instant::now() < deadline, "tmux drained the flood");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = start.elapsed().as_secs_f64();
    tmux(&["kill-server"]);
    t
}

/// The median of `v` (the mean of the middle two for an even count; NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Each round's figure, for the spread.
fn rounds(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The switchyard binaries measured: this build, then `SY_BENCH_BASELINE` (another build's
/// binary, e.g. of an older commit) when set, each as (label, path).
fn measured() -> Vec<(String, Option<PathBuf>)> {
    let mut out = vec![("switchyard".to_string(), None)];
    if let Ok(p) = std::env::var("SY_BENCH_BASELINE") {
        out.push(("baseline".to_string(), Some(PathBuf::from(p))));
    }
    out
}

fn measure_with(path: &Option<PathBuf>) {
    *MEASURED.lock().unwrap() = path.clone();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let with_tmux = Command::new("tmux").arg("-V").output().is_ok();
    let tmux_v = if with_tmux {
        tmux(&["-V"])
    } else {
        "tmux not found: its columns are skipped".into()
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("switchyard vs tmux — {tmux_v}; {cores} cores");
    let bins = measured();

    let secs = common::env_num("SY_BENCH_BUSY_S", 20);
    if secs > 0 {
        println!("\nbusy agents: 16 workers (spinner ~12 Hz + a log line/s), 160x48, {secs} s, % of one core");
        let (a, d) = if with_tmux {
            busy_tmux(16, secs)
        } else {
            (f64::NAN, f64::NAN)
        };
        for (label, path) in &bins {
            measure_with(path);
            let (room, headless) = busy_switchyard(16, secs);
            println!("  {label:<10} server + control room   {room:6.2} %   / tmux attached {:5.2}  (target ≤ 1.0)", room / a.max(0.01));
            println!("  {label:<10} server + headless       {headless:6.2} %   / tmux detached {:5.2}  (target ≤ 1.5)", headless / d.max(0.01));
        }
        if with_tmux {
            println!("  tmux server + attached client      {a:6.2} %");
            println!("  tmux server, detached              {d:6.2} %");
        }
    }

    let spec = std::env::var("SY_BENCH_FLOOD").unwrap_or_else(|_| "8x8,16x20".into());
    let repeat = common::env_num("SY_BENCH_ROUNDS", 3).max(1) as usize;
    for pair in spec.split(',') {
        let Some((n, mb)) = pair.split_once('x') else {
            continue;
        };
        let (Ok(n), Ok(mb)) = (n.trim().parse::<usize>(), mb.trim().parse::<u64>()) else {
            continue;
        };
        println!(
            "\nflood: {n} workers x {mb} MiB of coloured log, seconds to drain (median of {repeat} interleaved rounds)"
        );
        // Rounds interleave the measured programs so that a busy spell of the machine falls on
        // all of them; each ratio is the median of the per-round ratios.
        let mut plain = Vec::new();
        let mut t = Vec::new();
        let mut sy: Vec<Vec<f64>> = vec![Vec::new(); bins.len()];
        for _ in 0..repeat {
            plain.push(flood_plain(n, mb));
            if with_tmux {
                t.push(flood_tmux(n, mb));
            }
            for (k, (_, path)) in bins.iter().enumerate() {
                measure_with(path);
                sy[k].push(flood_switchyard(n, mb));
            }
        }
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
        println!(
            "  plain PTY readers (floor)          {:6.2} s   (rounds: {})",
            median(plain.clone()),
            rounds(&plain)
        );
        if with_tmux {
            println!(
                "  tmux, detached windows             {:6.2} s   {:5.2}x floor   (rounds: {})",
                median(t.clone()),
                ratio(&t, &plain),
                rounds(&t)
            );
        }
        for (k, (label, _)) in bins.iter().enumerate() {
            print!(
                "  {label:<34} {:6.2} s   {:5.2}x floor (target ≤ 1.5)",
                median(sy[k].clone()),
                ratio(&sy[k], &plain)
            );
            if with_tmux {
                print!("; / tmux {:5.2} (target ≤ 0.5)", ratio(&sy[k], &t));
            }
            println!("   (rounds: {})", rounds(&sy[k]));
        }
    }
}
