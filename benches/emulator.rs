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
//! 3. **Against alacritty_terminal 0.25** (with `--features compare-alacritty`, which adds it as
//!    a dependency; nothing else uses it): the same parse speeds,
//!    resident memory per terminal with 5 000 lines of scrollback, and fidelity: the share of
//!    the recorded sessions whose final visible text is row for row the same as vt100's.
//!
//! 4. **The flood path**: what a worker's reader does per byte while it floods (see
//!    `switchyard::host::flood`), MB/s of one thread on 64 MiB, at 47×160 with 1 000 lines in
//!    memory: the stream cap alone, the tracker's plan of 4 MiB batches alone, and the whole
//!    path (cap, batch, plan, then the cut or the whole parse).
//!
//! Environment: `SY_BENCH_FLOOD_MB` (default 200) for part 2; `SY_BENCH_ONLY=flood` runs part 4
//! alone.

use std::path::Path;
use std::time::Instant;
use switchyard::host::stream_cap::StreamCap;
use switchyard::host::worker::{Emulator, Term};

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
                if let Ok(rec) = switchyard::host::replay::Recording::load(&path) {
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

/// alacritty_terminal's side of the comparison.
#[cfg(feature = "compare-alacritty")]
mod alacritty {
    use alacritty_terminal::event::VoidListener;
    use alacritty_terminal::grid::Dimensions;
    use alacritty_terminal::index::{Column, Line, Point};
    use alacritty_terminal::term::{Config, Term};
    use alacritty_terminal::vte::ansi::Processor;
    use std::time::Instant;

    struct Size(usize, usize);

    impl Dimensions for Size {
        fn total_lines(&self) -> usize {
            self.0
        }
        fn screen_lines(&self) -> usize {
            self.0
        }
        fn columns(&self) -> usize {
            self.1
        }
    }

    /// A terminal of rows × cols with `scrollback` lines of history, and its parser.
    pub struct Alac {
        term: Term<VoidListener>,
        parser: Processor,
    }

    impl Alac {
        pub fn new(rows: u16, cols: u16, scrollback: usize) -> Alac {
            let config = Config {
                scrolling_history: scrollback,
                ..Config::default()
            };
            Alac {
                term: Term::new(config, &Size(rows.into(), cols.into()), VoidListener),
                parser: Processor::new(),
            }
        }

        pub fn feed(&mut self, bytes: &[u8]) {
            for chunk in bytes.chunks(4096) {
                self.parser.advance(&mut self.term, chunk);
            }
        }

        /// The visible rows' text, trailing blanks trimmed.
        pub fn rows(&self) -> Vec<String> {
            let grid = self.term.grid();
            (0..grid.screen_lines())
                .map(|l| {
                    let text: String = (0..grid.columns())
                        .map(|c| grid[Point::new(Line(l as i32), Column(c))].c)
                        .filter(|&ch| ch != '\0')
                        .collect();
                    text.trim_end().to_string()
                })
                .collect()
        }
    }

    /// MB/s parsing `bytes` (repeated until at least `min` bytes went through).
    pub fn speed(bytes: &[u8], rows: u16, cols: u16, scrollback: usize, min: usize) -> f64 {
        let mut t = Alac::new(rows, cols, scrollback);
        let start = Instant::now();
        let mut done = 0;
        while done < min.max(1) {
            t.feed(bytes);
            done += bytes.len().max(1);
        }
        done as f64 / 1e6 / start.elapsed().as_secs_f64()
    }
}

/// vt100's visible rows' text, trailing blanks trimmed (as the classifier reads them).
#[cfg(feature = "compare-alacritty")]
fn vt100_rows(p: &Emulator) -> Vec<String> {
    let (_, cols) = p.screen().size();
    p.screen()
        .rows(0, cols)
        .map(|r| r.trim_end().to_string())
        .collect()
}

/// Resident MiB per terminal holding 5 000 lines of scrollback (16 of them, full of coloured
/// log), measured in a fresh process (this bench re-run as `rss KIND`) so memory freed by
/// other measurements cannot be reused unseen.
fn per_terminal_mib(kind: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .args(["rss", kind])
        .output()
        .expect("the memory measurement runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

/// The child side of [`per_terminal_mib`]: prints MiB per terminal.
fn measure_rss(kind: &str) {
    let full = log_lines(1);
    assert!(full.len() / 90 > 5000 + ROWS as usize);
    let before = rss();
    let mut vt: Vec<Emulator> = Vec::new();
    #[cfg(feature = "compare-alacritty")]
    let mut al: Vec<alacritty::Alac> = Vec::new();
    for _ in 0..16 {
        if kind == "vt100" {
            let mut p = emulator(ROWS, COLS, 5000);
            feed(&mut p, &mut StreamCap::default(), &full);
            vt.push(p);
        } else {
            #[cfg(feature = "compare-alacritty")]
            {
                let mut t = alacritty::Alac::new(ROWS, COLS, 5000);
                t.feed(&full);
                al.push(t);
            }
        }
    }
    println!(
        "{:.2}",
        rss().saturating_sub(before) as f64 / 16.0 / (1 << 20) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rss") {
        measure_rss(&args[2]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    println!("terminal emulator: vt100 0.16 + switchyard callbacks + stream cap, 4 KiB chunks");
    let lines = log_lines(16);
    let noise = random(16 << 20);
    if std::env::var("SY_BENCH_ONLY").as_deref() == Ok("flood") {
        flood_path(&lines, &noise);
        return;
    }
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
    println!(
        "  resident per emulator, 5000 lines of scrollback x {COLS} cols  {:6.2} MiB",
        per_terminal_mib("vt100")
    );

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

    flood_path(&lines, &noise);

    #[cfg(feature = "compare-alacritty")]
    compare_alacritty(&lines, &noise, &fx);
}

/// Part 4: the reader's work per byte under a flood, MB/s of one thread over 64 MiB.
fn flood_path(lines: &[u8], noise: &[u8]) {
    use switchyard::host::flood::{apply, Tracker, BACKLOG_CAP};
    const TOTAL: usize = 64 << 20;
    const KEPT: usize = 1000;
    let rate = |start: Instant| TOTAL as f64 / 1e6 / start.elapsed().as_secs_f64();
    // The input as the PTY hands it over: 4 KiB reads, cycling through the corpus.
    let reads = |bytes: &[u8]| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        for _ in 0..TOTAL / 4096 {
            let end = (at + 4096).min(bytes.len());
            out.push(bytes[at..end].to_vec());
            at = if end == bytes.len() { 0 } else { end };
        }
        out
    };
    println!("\nthe flood path, MB/s of one thread ({ROWS}x{COLS}, {KEPT} lines in memory, 4 MiB batches)");
    println!("  corpus                 stream cap   tracker plan   whole path (parsed whole)");
    for (name, bytes) in [("coloured log (flood)", lines), ("random bytes", noise)] {
        let input = reads(bytes);
        let mut batches: Vec<Vec<u8>> = vec![Vec::new()];
        let start = Instant::now();
        let mut cap = StreamCap::default();
        for r in &input {
            let b = batches.last_mut().expect("one batch");
            cap.feed(r, |part| b.extend_from_slice(part));
            if b.len() >= BACKLOG_CAP {
                batches.push(Vec::new());
            }
        }
        let cap_rate = rate(start);
        let start = Instant::now();
        let mut tracker = Tracker::new();
        for b in &batches {
            std::hint::black_box(tracker.plan(b, ROWS, KEPT));
        }
        let plan_rate = rate(start);
        let start = Instant::now();
        let mut p = emulator(ROWS, COLS, KEPT);
        let mut tracker = Tracker::new();
        let mut cap = StreamCap::default();
        let mut backlog = Vec::new();
        let mut whole = 0usize;
        let mut n = 0usize;
        for r in &input {
            cap.feed(r, |part| backlog.extend_from_slice(part));
            if backlog.len() >= BACKLOG_CAP {
                let plan = tracker.plan(&backlog, ROWS, KEPT);
                let out = apply(&mut p, &backlog, plan, KEPT);
                n += 1;
                whole += usize::from(matches!(out, switchyard::host::flood::Outcome::Whole(_)));
                backlog.clear();
            }
        }
        let path_rate = rate(start);
        println!(
            "  {name:<22} {cap_rate:>10.0}   {plan_rate:>12.0}   {path_rate:>10.0} ({whole} of {n} batches)"
        );
    }
}

/// Part 3: alacritty_terminal on the same corpora.
#[cfg(feature = "compare-alacritty")]
fn compare_alacritty(lines: &[u8], noise: &[u8], fx: &[(String, u16, u16, Vec<u8>)]) {
    let fx_bytes: usize = fx.iter().map(|f| f.3.len()).sum();
    println!("\nalacritty_terminal 0.25, same corpora, MB/s     no scrollback   5000 lines");
    for (name, bytes) in [("coloured log (flood)", lines), ("random bytes", noise)] {
        let a = alacritty::speed(bytes, ROWS, COLS, 0, 64 << 20);
        let b = alacritty::speed(bytes, ROWS, COLS, 5000, 64 << 20);
        println!("  {name:<40} {a:>8.1}      {b:>8.1}");
    }
    let (mut t0, mut t5) = (0.0, 0.0);
    let mut same = 0;
    for (_, rows, cols, bytes) in fx {
        let per = (8 << 20) / fx.len().max(1);
        t0 += bytes.len() as f64 / alacritty::speed(bytes, *rows, *cols, 0, per);
        t5 += bytes.len() as f64 / alacritty::speed(bytes, *rows, *cols, 5000, per);
        let mut v = emulator(*rows, *cols, 0);
        v.process(bytes);
        let mut a = alacritty::Alac::new(*rows, *cols, 0);
        a.feed(bytes);
        if vt100_rows(&v) == a.rows() {
            same += 1;
        }
    }
    if fx_bytes > 0 {
        println!(
            "  {:<40} {:>8.1}      {:>8.1}",
            format!("{} recorded sessions", fx.len()),
            fx_bytes as f64 / t0,
            fx_bytes as f64 / t5
        );
        println!(
            "  recorded sessions whose final screen text equals vt100's: {same} of {}",
            fx.len()
        );
    }
    println!(
        "  resident per terminal, 5000 lines of scrollback x {COLS} cols  {:6.2} MiB",
        per_terminal_mib("alacritty")
    );
}
