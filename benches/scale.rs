//! `cargo bench --bench scale` — the core at scale, printed as plain figures:
//!
//! 1. `Plan::build` + `Plan::render` of a manifest of N tasks in 2 phases over 500 shared files,
//!    a fifth of the tasks with their own `dependsOn` (1–2 earlier tasks of their phase), the rest
//!    ordered by the files they share (target: under 100 ms at N = 10 000);
//! 2. one engine tick (`Engine::update(Event::Tick, now)`) with N tasks, 100 of them running
//!    (target: under 2 ms), and the cost of one `Screen` event beside it;
//! 3. one control-room frame (`ui::view::draw` into a ratatui `TestBackend`) at 160×48 and
//!    200×60 with the same engine, with no worker screen and with the 100 running workers' screens
//!    (target: under 4 ms).
//!
//! Environment: `SY_SCALE_N` task counts, comma-separated (default `10000`);
//! `SY_SCALE_ONLY` one of `plan`, `tick`, `frame` to run one part; `SY_SCALE_FORWARD=1` adds one
//! `dependsOn` that points at a later task (the planner's searches then lose their index bound).

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::core::classify::ScreenSnapshot;
use switchyard::core::config::Config;
use switchyard::core::engine::{Effect, Engine, Event};
use switchyard::core::manifest::{Manifest, Phase, Task};
use switchyard::core::plan::Plan;
use switchyard::host::worker::Term;
use switchyard::ui::app::App;
use switchyard::ui::view::{self, Screens};

/// Shared files in the manifest.
const FILES: u64 = 500;
/// Workers running during the tick and frame measurements.
const RUNNING: usize = 100;

/// A small deterministic generator (xorshift), so every run measures the same manifest.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// N tasks in 2 phases over [`FILES`] files: each task touches 1–3 files; one in five lists its
/// own `dependsOn` (1–2 of the 200 tasks before it in its phase), the others are ordered by the
/// files they share.
fn manifest(n: usize) -> Manifest {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut phases = vec![];
    for p in 0..2 {
        let lo = n * p / 2;
        let hi = n * (p + 1) / 2;
        let mut tasks = vec![];
        for i in lo..hi {
            let mut t = Task::new(&format!("t{i}"), &format!("Task {i}: change the module"));
            t.agent = Some("bench".into());
            let nf = 1 + rng.below(3);
            t.files = (0..nf)
                .map(|_| format!("src/m{}.rs", rng.below(FILES)))
                .collect();
            if i > lo && rng.below(5) == 0 {
                let nd = 1 + rng.below(2);
                let mut deps: Vec<String> = (0..nd)
                    .map(|_| {
                        let back = 1 + rng.below(((i - lo) as u64).min(200));
                        format!("t{}", i - back as usize)
                    })
                    .collect();
                deps.dedup();
                t.depends_on = Some(deps);
            }
            tasks.push(t);
        }
        if p == 0 && std::env::var_os("SY_SCALE_FORWARD").is_some() {
            // One dependency on a later task (no cycle): planning loses its index bound.
            let mut last = Task::new("late", "A task listed after the one that waits for it");
            last.agent = Some("bench".into());
            last.files = vec!["late.rs".into()];
            last.depends_on = Some(vec![]);
            tasks[0].depends_on = Some(vec!["late".into()]);
            tasks.push(last);
        }
        phases.push(Phase {
            name: format!("phase {}", p + 1),
            tasks,
            extra: Default::default(),
        });
    }
    Manifest {
        project: "scale".into(),
        repo: None,
        workdir: Some(".sy".into()),
        created: None,
        model: None,
        model_tier: None,
        phases,
        extra: Default::default(),
    }
}

fn config() -> Config {
    Config::from_layers(&[
        ("defaults".into(), switchyard::core::config::DEFAULTS.into()),
        (
            "bench".into(),
            format!(
                "default_agent = \"bench\"\nmax_parallel = {RUNNING}\n[agents.bench]\ncommand = [\"true\"]\n"
            ),
        ),
    ])
    .unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `f` until `budget` has passed (at least `min` times); returns the median time, ms.
fn median(min: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut times = vec![];
    let start = Instant::now();
    while times.len() < min || (start.elapsed() < budget && times.len() < 10_000) {
        let t = Instant::now();
        f();
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn plan(n: usize) {
    let m = manifest(n);
    let t = Instant::now();
    let p = Plan::build(&m).unwrap();
    let build = ms(t.elapsed());
    let t = Instant::now();
    let text = p.render(&m.project, RUNNING);
    let render = ms(t.elapsed());
    let edges = p.graph.edge_count();
    let runs = median(3, Duration::from_secs(3), || {
        let p = Plan::build(&m).unwrap();
        std::hint::black_box(p.render(&m.project, RUNNING));
    });
    println!(
        "plan, {n} tasks, 2 phases, {FILES} files: build {build:.1} ms + render {render:.1} ms \
         (first run); median build+render {runs:.1} ms; {edges} graph edges, {} warnings, {} lines, \
         critical path {} tasks",
        p.warnings.len(),
        text.lines().count(),
        p.critical_path.len()
    );
}

/// An engine over `n` tasks with [`RUNNING`] workers started and showing a screen.
fn running_engine(n: usize) -> (Engine, Vec<usize>, u64) {
    let m = manifest(n);
    let p = Plan::build(&m).unwrap();
    let mut e = Engine::new(m, p, config(), 0).unwrap();
    let fx = e.update(Event::Tick, 0);
    let started: Vec<usize> = fx
        .iter()
        .filter_map(|f| match f {
            Effect::Start(s) => Some(s.task),
            _ => None,
        })
        .collect();
    let mut now = 10;
    for &i in &started {
        e.update(
            Event::Started {
                task: i,
                worktree: format!("/w/{i}"),
                branch: format!("sy/{i}"),
                base_commit: "0".into(),
                argv: vec!["true".into()],
            },
            now,
        );
        e.update(
            Event::Screen {
                task: i,
                screen: ScreenSnapshot::from_text(&format!(
                    "• Editing src/m{i}.rs\n  compiling switchyard v0.1.0\n  tests: 12 passed\n\n› "
                )),
                last_output_at: now,
            },
            now,
        );
        now += 1;
    }
    (e, started, now)
}

fn tick(n: usize) {
    let t = Instant::now();
    let (mut e, started, mut now) = running_engine(n);
    let setup = ms(t.elapsed());
    // 1 000 ticks 250 ms apart: 250 s, inside the 300 s stall threshold, so every worker stays
    // live and is classified on every tick (checked below).
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        now += 250;
        let t = Instant::now();
        std::hint::black_box(e.update(Event::Tick, now));
        times.push(ms(t.elapsed()));
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    let tick = times[times.len() / 2];
    let classified = started
        .iter()
        .filter(|&&i| {
            e.runs[i].worker.as_ref().is_some_and(|w| w.live) && e.runs[i].verdict.is_some()
        })
        .count();
    let mut k = 0;
    let screen = ScreenSnapshot::from_text("• Running tests\n  ok\n");
    let screen_ev = median(20, Duration::from_secs(1), || {
        now += 1;
        k += 1;
        let i = started[k % started.len()];
        std::hint::black_box(e.update(
            Event::Screen {
                task: i,
                screen: screen.clone(),
                last_output_at: now,
            },
            now,
        ));
    });
    let live = e.live_workers().count();
    println!(
        "engine, {n} tasks, {live} running ({classified} live and classified every tick): tick \
         {tick:.3} ms (median of 1000, p99 {:.3} ms, first {first:.3} ms); Screen event {screen_ev:.4} ms; setup (plan, \
         new, {RUNNING} starts) {setup:.0} ms",
        times[times.len() * 99 / 100]
    );
}

fn frame(n: usize) {
    let (e, started, now) = running_engine(n);
    let recent: Vec<String> = (0..200)
        .map(|i| format!("12:00:{i:02} t{i} status"))
        .collect();
    let mut screens = Screens::new();
    for &i in &started {
        let mut p = vt100::Parser::new_with_callbacks(24, 80, 0, Term::default());
        p.process(
            format!("\x1b[1;32m● t{i}\x1b[0m editing src/m{i}.rs\r\n$ cargo test\r\n").as_bytes(),
        );
        screens.insert(i, Arc::new(Mutex::new(p)));
    }
    let none = Screens::new();
    for (w, h) in [(160u16, 48u16), (200, 60)] {
        for (label, scr) in [("no screens", &none), ("100 screens", &screens)] {
            let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
            let mut app = App::new();
            let t = Instant::now();
            term.draw(|f| view::draw(f, &e, scr, &Default::default(), &mut app, &recent, now))
                .unwrap();
            let first = ms(t.elapsed());
            let mut k = 0usize;
            let per = median(10, Duration::from_secs(2), || {
                // Move the selection through the table, as a person scrolling would.
                k += 37;
                app.selected = k % n;
                term.draw(|f| view::draw(f, &e, scr, &Default::default(), &mut app, &recent, now))
                    .unwrap();
            });
            println!(
                "frame, {n} tasks, {w}x{h}, {label}: {per:.3} ms (median; first frame with \
                 the DAG layout {first:.1} ms)"
            );
        }
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SY_SCALE_N")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let only = std::env::var("SY_SCALE_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    println!(
        "scale bench ({} cores available)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for &n in &sizes {
        if run("plan") {
            plan(n);
        }
        if run("tick") {
            tick(n);
        }
        if run("frame") {
            frame(n);
        }
    }
}
