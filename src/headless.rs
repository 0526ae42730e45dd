//! The headless reporter: the same engine and shell as the control room, with a line per event
//! on stdout and a final summary. Exit code 0 when every task completed, 1 when halted or
//! failed, 2 when a person must decide (a task in `needs_attention`).

use crate::git;
use crate::manifest::Status;
use crate::runtime::Runtime;
use crate::worker::now_ms;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Runs until nothing more can happen without a person (or Ctrl-C), then prints the summary.
/// Returns the exit code.
pub async fn run(rt: &mut Runtime) -> i32 {
    rt.echo = true;
    rt.engine.hold_for_person = false;
    let started = now_ms();
    println!(
        "switchyard: {} — {} tasks, at most {} workers; journal {}",
        display_project(rt),
        rt.engine.plan.len(),
        rt.engine.max_parallel,
        rt.paths.logs.join("events.jsonl").display()
    );
    let mut rx = rt.take_receiver();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut interrupted = false;
    loop {
        tokio::select! {
            msg = rx.recv() => if let Some(m) = msg { rt.handle(m) },
            _ = tick.tick() => rt.poll(),
            _ = tokio::signal::ctrl_c() => { interrupted = true; }
        }
        if interrupted || rt.engine.is_settled() {
            break;
        }
    }
    rt.shutdown(&mut rx, Duration::from_secs(3)).await;
    print!("{}", summary(rt, now_ms().saturating_sub(started)));
    if interrupted {
        println!("interrupted: running tasks stay `running` in the manifest; run again to resume");
        return 1;
    }
    rt.engine.exit_code()
}

fn display_project(rt: &Runtime) -> String {
    let p = &rt.engine.manifest.project;
    if p.is_empty() {
        rt.paths.manifest.display().to_string()
    } else {
        p.clone()
    }
}

/// The final summary: tasks complete X/Y, each task's result, attempts, files changed, duration.
pub fn summary(rt: &Runtime, elapsed_ms: u64) -> String {
    let e = &rt.engine;
    let total = e.plan.len();
    let done = e.manifest.tasks().filter(|t| t.status.is_done()).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n── summary ──────────────────────────────────────────────"
    );
    let _ = writeln!(
        s,
        "tasks complete {done}/{total} in {:.1}s",
        elapsed_ms as f64 / 1000.0
    );
    for (i, t) in e.manifest.tasks().enumerate() {
        let files = match (t.worktree.as_deref(), t.base_commit.as_deref()) {
            (Some(w), Some(b)) if Path::new(w).exists() => git::files_changed(Path::new(w), b)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
            _ => "-".into(),
        };
        let run = &e.runs[i];
        let dur = match (run.run_started_at, run.run_ended_at) {
            (Some(a), Some(b)) => format!("{:.1}s", b.saturating_sub(a) as f64 / 1000.0),
            (Some(a), None) => format!("{:.1}s+", now_ms().saturating_sub(a) as f64 / 1000.0),
            _ => "-".into(),
        };
        let why = match t.status {
            Status::Complete | Status::PrOpen | Status::Merged | Status::Pending => String::new(),
            _ => t
                .last_verdict
                .as_deref()
                .map(|v| format!("  ← {v}"))
                .unwrap_or_default(),
        };
        let _ = writeln!(
            s,
            "  {:<10} {:<16} attempts {:<2} files {:<3} {:>8}{}",
            t.id,
            t.status.as_str(),
            t.attempts.unwrap_or(0),
            files,
            dur,
            why
        );
    }
    let code = e.exit_code();
    let meaning = match code {
        0 => "all tasks complete",
        2 => "a task needs a person: run `switchyard run` on the manifest to attach and answer",
        _ => "halted or failed: see the tasks above and the journal",
    };
    let _ = writeln!(s, "exit {code}: {meaning}");
    s
}
