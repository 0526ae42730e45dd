//! `cargo bench --bench emulator` — the terminal emulator workers parse into (vt100 0.16 with
//! switchyard's callbacks and the stream cap in front, exactly as a worker's reader feeds it):
//!
//! 1. **Parse speed**, MB/s, at 47×160 with no scrollback and with 5 000 lines, on: coloured log
//!    lines (the flood workload's output), the recorded agent sessions in `tests/fixtures`
//!    (each at its recorded size, replayed until 8 MiB went through) and random bytes.
//! 2. **Memory**: resident memory per emulator holding 5 000 lines of scrollback (16 of them,
//!    full of coloured log, 160 columns); and the change in this process's resident memory while
//!    one emulator parses 200 MB of coloured log, then 200 MB of random bytes.
//!
//! Environment: `SY_BENCH_FLOOD_MB` (default 200) for part 2.

use std::path::Path;
use std::time::Instant;
use switchyard::stream_cap::StreamCap;
use switchyard::worker::{Emulator, Term};

const ROWS: u16 = 47;
const COLS: u16 = 160;

/// Resident memory of this process, bytes (from /proc/self/statm).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `mb` MiB of the flood workload's coloured log lines (as `fake-agent --scenario flood`).
fn log_lines(mb: usize) -> Vec<u8> {
    let mut out = String::with_capacity(mb << 20);
    let mut i = 0u64;
    while out.len() < mb << 20 {
        i += 1;
        out.push_str(&format!(
            "\x1b[2m{i:>8}\x1b[0m \x1b[32mINFO\x1b[0m compiling crate_{} \x1b[33m[{}/1000]\x1b[0m src/lib.rs:{}\r\n",
            i % 97,
            i % 1000,
            i % 400
        ));
    }
    out.into_bytes()
}

/// `n` pseudo-random bytes (xorshift64*, fixed seed).
fn random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn emulator(rows: u16, cols: u16, scrollback: usize) -> Emulator {
    vt100::Parser::new_with_callbacks(rows, cols, scrollback, Term::default())
}

/// Feeds `bytes` in 4 KiB chunks (what a PTY read returns under load) the way a worker does.
fn feed(p: &mut Emulator, cap: &mut StreamCap, bytes: &[u8]) {
    for chunk in bytes.chunks(4096) {
        cap.feed(chunk, |part| p.process(part));
        p.callbacks_mut().generation += 1;
        p.callbacks_mut().replies.clear();
    }
}

/// MB/s parsing `bytes` (repeated until at least `min` bytes went through).
fn speed(bytes: &[u8], rows: u16, cols: u16, scrollback: usize, min: usize) -> f64 {
    let mut p = emulator(rows, cols, scrollback);
    let mut cap = StreamCap::default();
    let start = Instant::now();
    let mut done = 0;
    while done < min.max(1) {
        feed(&mut p, &mut cap, bytes);
        done += bytes.len().max(1);
    }
    done as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// The recorded sessions under tests/fixtures: (name, rows, cols, bytes).
fn fixtures() -> Vec<(String, u16, u16, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "bytes") {
                if let Ok(rec) = switchyard::replay::Recording::load(&path) {
                    let bytes: Vec<u8> = rec.chunks.into_iter().flat_map(|(_, b)| b).collect();
                    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                    out.push((name, rec.rows, rec.cols, bytes));
                }
            }
        }
    }
    out.sort();
    out
}

fn main() {
    println!("terminal emulator: vt100 0.16 + switchyard callbacks + stream cap, 4 KiB chunks");
    let lines = log_lines(16);
    let noise = random(16 << 20);
    let fx = fixtures();
    let fx_bytes: usize = fx.iter().map(|f| f.3.len()).sum();

    println!("\nparse speed, MB/s ({ROWS}x{COLS} unless noted)");
    println!("  corpus                                   no scrollback   5000 lines");
    for (name, bytes) in [("coloured log (flood)", &lines), ("random bytes", &noise)] {
        let a = speed(bytes, ROWS, COLS, 0, 64 << 20);
        let b = speed(bytes, ROWS, COLS, 5000, 64 << 20);
        println!("  {name:<40} {a:>8.1}      {b:>8.1}");
    }
    let (mut t0, mut t5) = (0.0, 0.0);
    for (_, rows, cols, bytes) in &fx {
        // Time per fixture, at its recorded size; weighted by its size.
        let per = (8 << 20) / fx.len().max(1);
        let a = speed(bytes, *rows, *cols, 0, per);
        let b = speed(bytes, *rows, *cols, 5000, per);
        t0 += bytes.len() as f64 / a;
        t5 += bytes.len() as f64 / b;
    }
    if fx_bytes > 0 {
        println!(
            "  {:<40} {:>8.1}      {:>8.1}",
            format!("{} recorded sessions ({} KiB)", fx.len(), fx_bytes / 1024),
            fx_bytes as f64 / t0,
            fx_bytes as f64 / t5
        );
    }

    println!("\nmemory");
    let before = rss();
    let mut ems: Vec<Emulator> = (0..16).map(|_| emulator(ROWS, COLS, 5000)).collect();
    let full = log_lines(1);
    for p in &mut ems {
        let mut cap = StreamCap::default();
        // 5 000 lines of scrollback and a full screen: ~6 000 lines of 90 bytes.
        feed(p, &mut cap, &full);
        assert!(full.len() / 90 > 5000 + ROWS as usize);
    }
    let per = rss().saturating_sub(before) as f64 / 16.0 / (1 << 20) as f64;
    println!("  resident per emulator, 5000 lines of scrollback x {COLS} cols  {per:6.2} MiB");
    drop(ems);

    let mb: usize = std::env::var("SY_BENCH_FLOOD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for (name, unit) in [
        ("coloured log", log_lines(8)),
        ("random bytes", random(8 << 20)),
    ] {
        let mut p = emulator(ROWS, COLS, 5000);
        let mut cap = StreamCap::default();
        feed(&mut p, &mut cap, &unit[..1 << 20]);
        let base = rss();
        let mut high = base;
        let start = Instant::now();
        for _ in 0..mb.div_ceil(8) {
            feed(&mut p, &mut cap, &unit);
            high = high.max(rss());
        }
        let secs = start.elapsed().as_secs_f64();
        let mib = |b: u64| (b as f64 - base as f64) / (1 << 20) as f64;
        println!(
            "  {mb} MB of {name:<13} into one emulator: resident {:+.1} MiB after, {:+.1} MiB at most, {:.0} MB/s",
            mib(rss()),
            mib(high),
            (mb.div_ceil(8) * unit.len()) as f64 / 1e6 / secs
        );
    }
}
