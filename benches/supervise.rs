//! `cargo bench --bench supervise` — the control room's cost, measured in one run, printed as
//! figures with their baselines:
//!
//! 1. frame time for 16 panes of 120×40 (vs. a frame with the table alone);
//! 2. 16 workers each writing 20 MB of coloured agent-like log as fast as they can: wall time
//!    until all are drained through switchyard's workers (PTY + vt100 + transcript) vs. the same
//!    bytes drained by plain PTY readers with no emulator;
//! 3. CPU used by the real control room (the run's server, which draws it, and the client) over
//!    30 s with 16 idle workers.
//!
//! Environment: SY_BENCH_MB (default 20), SY_BENCH_WORKERS (16), SY_BENCH_IDLE_S (30).

mod common;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::core::config::Config;
use switchyard::core::engine::{Engine, Event};
use switchyard::core::manifest::{Manifest, Phase, Task};
use switchyard::core::plan::Plan;
use switchyard::host::worker::{ShellMsg, SpawnSpec, Term, Worker};
use switchyard::ui::app::App;
use switchyard::ui::view::{self, Screens};

/// A manifest of `n` independent tasks using the `bench` agent.
fn manifest(n: usize) -> Manifest {
    let tasks = (0..n)
        .map(|i| {
            let mut t = Task::new(&format!("w{i:02}"), &format!("Worker {i}"));
            t.files = vec![format!("f{i}")];
            t
        })
        .collect();
    Manifest {
        project: "bench".into(),
        repo: None,
        workdir: Some(".sy".into()),
        created: None,
        model: None,
        model_tier: None,
        phases: vec![Phase {
            name: "p".into(),
            tasks,
            extra: Default::default(),
        }],
        extra: Default::default(),
    }
}

/// Coloured, agent-like log text of about `bytes` bytes.
fn agent_log(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 200);
    let mut i = 0u64;
    while out.len() < bytes {
        let line = match i % 5 {
            0 => format!(
                "\x1b[1;36m● step {i}\x1b[0m reading \x1b[33msrc/module_{}.rs\x1b[0m\r\n",
                i % 97
            ),
            1 => format!(
                "  \x1b[2m│\x1b[0m fn handler_{i}(req: &Request) -> Result<Response, Error> {{\r\n"
            ),
            2 => format!(
                "\x1b[32m✔\x1b[0m test suite::case_{i} ... \x1b[32mok\x1b[0m (0.{:03}s)\r\n",
                i % 1000
            ),
            3 => format!(
                "\x1b[38;5;245m  {}\x1b[0m\r\n",
                "lorem ipsum dolor sit amet ".repeat(3)
            ),
            _ => format!(
                "\x1b[35m✎\x1b[0m editing src/lib.rs:{} \x1b[7m+{} -{}\x1b[0m\r\n",
                i % 500,
                i % 9,
                i % 4
            ),
        };
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn frame_times() {
    let n = common::env_num("SY_BENCH_WORKERS", 16) as usize;
    let m = manifest(n);
    let plan = Plan::build(&m).unwrap();
    let cfg = Config::from_layers(&[
        ("defaults".into(), switchyard::core::config::DEFAULTS.into()),
        ("bench".into(), format!("default_agent = \"bench\"\nmax_parallel = {n}\n[agents.bench]\ncommand = [\"true\"]\n")),
    ])
    .unwrap();
    let mut engine = Engine::new(m, plan, cfg, 0).unwrap();
    engine.update(Event::Tick, 0);
    let log = agent_log(200_000);
    let mut screens = Screens::new();
    for i in 0..n {
        let mut p = vt100::Parser::new_with_callbacks(40, 120, 1000, Term::default());
        p.process(&log);
        screens.insert(i, Arc::new(Mutex::new(p)));
    }
    let recent = vec![String::from("bench")];
    // `changing`: every pane's screen changes before every frame (a spinner on its last row),
    // so no pane can be copied from the last frame.
    let time_with = |screens: &Screens, w: u16, h: u16, frames: u32, changing: bool| {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        let mut app = App::new();
        let start = Instant::now();
        for k in 0..frames {
            if changing {
                for p in screens.values() {
                    let spin = ["|", "/", "-", "\\"][k as usize % 4];
                    switchyard::host::worker::feed(
                        &mut p.lock().unwrap(),
                        format!("\r{spin}").as_bytes(),
                    );
                }
            }
            term.draw(|f| {
                view::draw(
                    f,
                    &engine,
                    screens,
                    &Default::default(),
                    &mut app,
                    &recent,
                    1_000,
                )
            })
            .unwrap();
        }
        start.elapsed().as_secs_f64() * 1000.0 / frames as f64
    };
    let time =
        |screens: &Screens, w: u16, h: u16, frames: u32| time_with(screens, w, h, frames, false);
    let empty = Screens::new();
    let frames = 200;
    let base = time(&empty, 200, 60, frames);
    let grid = time(&screens, 200, 60, frames);
    let big = time(&screens, 480, 160, frames / 4);
    let busy = time_with(&screens, 200, 60, frames, true);
    println!("frame time, {n} panes of 120x40 PTYs:");
    println!("  table + DAG only (baseline), 200x60 terminal:  {base:7.3} ms");
    println!("  {n} panes tiled, 200x60 terminal:             {grid:7.3} ms  ({:.1}x baseline; {:.0} fps possible)", grid / base, 1000.0 / grid);
    println!(
        "  {n} panes tiled, 480x160 terminal (each ~120x40): {big:7.3} ms  ({:.1}x baseline)",
        big / base
    );
    println!(
        "  {n} panes tiled, 200x60, every pane changed since the last frame: {busy:7.3} ms  ({:.1}x the unchanged panes)",
        busy / grid
    );
}

/// Drains `n` children each `cat`-ing `file` through plain PTY readers (no emulator).
fn drain_plain(n: usize, file: &Path) -> Duration {
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..n {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new("cat");
        cmd.arg(file);
        let mut child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        handles.push(std::thread::spawn(move || {
            let _master = pair.master;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while let Ok(k) = reader.read(&mut buf) {
                if k == 0 {
                    break;
                }
                total += k as u64;
            }
            let _ = child.wait();
            total
        }));
    }
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    start.elapsed()
}

/// The same through switchyard's workers: PTY, vt100 with scrollback, transcript, query replies.
fn drain_switchyard(n: usize, file: &Path, logs: &Path) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let start = Instant::now();
        let mut workers = Vec::new();
        for i in 0..n {
            let spec = SpawnSpec {
                task: i,
                argv: vec!["cat".into(), file.display().to_string()],
                cwd: std::env::temp_dir(),
                env: vec![],
                rows: 40,
                cols: 120,
                scrollback: 5000,
                transcript: logs.join(format!("w{i}.log")),
            };
            workers.push(Worker::spawn(spec, tx.clone()).unwrap());
        }
        let mut exited = 0;
        while exited < n {
            if let Some(ShellMsg::Exited { .. }) = rx.recv().await {
                exited += 1;
            }
        }
        let elapsed = start.elapsed();
        let bytes: u64 = workers
            .iter()
            .map(|w| w.bytes_read.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        assert!(bytes > 0);
        elapsed
    })
}

fn drain() {
    let n = common::env_num("SY_BENCH_WORKERS", 16) as usize;
    let mb = common::env_num("SY_BENCH_MB", 20) as usize;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.txt");
    std::fs::write(&file, agent_log(mb * 1024 * 1024)).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let plain = drain_plain(n, &file);
    let sy = drain_switchyard(n, &file, &logs);
    let total_mb = (n * mb) as f64;
    println!("drain, {n} workers x {mb} MB of coloured log ({total_mb:.0} MB):");
    println!(
        "  plain PTY readers, no emulator (baseline): {:6.2} s  ({:.0} MB/s)",
        plain.as_secs_f64(),
        total_mb / plain.as_secs_f64()
    );
    println!(
        "  switchyard workers (PTY + vt100 + transcript): {:6.2} s  ({:.0} MB/s)  ratio {:.2}x",
        sy.as_secs_f64(),
        total_mb / sy.as_secs_f64(),
        sy.as_secs_f64() / plain.as_secs_f64()
    );
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn idle_cpu() {
    let n = common::env_num("SY_BENCH_WORKERS", 16) as usize;
    let secs = common::env_num("SY_BENCH_IDLE_S", 30);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        assert!(std::process::Command::new("git")
            .args([
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "-c",
                "commit.gpgsign=false"
            ])
            .args(args)
            .current_dir(repo)
            .status()
            .unwrap()
            .success())
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join(".gitignore"),
        "/manifest.json\n/switchyard.toml\n/.sy/\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "init"]);
    manifest(n).save(&repo.join("manifest.json")).unwrap();
    std::fs::write(
        repo.join("switchyard.toml"),
        format!("default_agent = \"idle\"\nmax_parallel = {n}\n[heal]\nstall_ms = 3600000\n[agents.idle]\ncommand = [\"sh\", \"-c\", \"echo idle worker; sleep 3600\"]\n"),
    )
    .unwrap();
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 60,
            cols: 200,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/switchyard");
    let mut cmd = CommandBuilder::new(&bin);
    cmd.args(["run", "manifest.json"]);
    cmd.cwd(repo);
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let pid = child.process_id().unwrap();
    // A terminal that answers queries and discards the drawing.
    let mut reader = pair.master.try_clone_reader().unwrap();
    let writer = Arc::new(Mutex::new(pair.master.take_writer().unwrap()));
    let w2 = writer.clone();
    std::thread::spawn(move || {
        let mut p = vt100::Parser::new_with_callbacks(60, 200, 0, Term::default());
        let mut buf = vec![0u8; 65536];
        while let Ok(k) = reader.read(&mut buf) {
            if k == 0 {
                break;
            }
            p.process(&buf[..k]);
            let r = std::mem::take(&mut p.callbacks_mut().replies);
            if !r.is_empty() {
                let _ = w2.lock().unwrap().write_all(&r);
            }
        }
    });
    std::thread::sleep(Duration::from_secs(5)); // let all workers start
                                                // The control room is drawn by the run's server (its lock file names it) and shown by the
                                                // client: both count.
    let server = server_pid(repo).expect("the run's server");
    let hz = 100.0; // USER_HZ on Linux
    let ticks =
        || cpu_ticks(pid).expect("switchyard runs") + cpu_ticks(server).expect("its server runs");
    let t0 = ticks();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let t1 = ticks();
    let wall = start.elapsed().as_secs_f64();
    let cpu_s = (t1 - t0) as f64 / hz;
    println!("idle, the control room with {n} idle workers over {wall:.0} s (release binary):");
    println!(
        "  CPU {cpu_s:.2} s = {:.2}% of one core (baseline: 0% for a process that sleeps)",
        100.0 * cpu_s / wall
    );
    // Quit, then `s`: stop the run (its server and workers), not only detach.
    let _ = writer.lock().unwrap().write_all(b"q");
    std::thread::sleep(Duration::from_millis(300));
    let _ = writer.lock().unwrap().write_all(b"s");
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
}

/// The pid of the server of the run in `repo` (from `<workdir>/run/*.lock`, workdir anywhere
/// two levels down).
fn server_pid(repo: &Path) -> Option<u32> {
    let mut dirs = vec![(repo.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = e.path();
            if path.is_dir() && depth < 3 {
                dirs.push((path, depth + 1));
            } else if path.extension().is_some_and(|x| x == "lock")
                && path.parent().is_some_and(|p| p.ends_with("run"))
            {
                let text = std::fs::read_to_string(&path).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                return v["pid"].as_u64().map(|p| p as u32);
            }
        }
    }
    None
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if want("frame") {
        frame_times();
    }
    if want("drain") {
        drain();
    }
    if want("idle") {
        if Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/release/switchyard")
            .exists()
        {
            idle_cpu();
        } else {
            println!("idle: build the release binary first (cargo build --release)");
        }
    }
}
