//! The headless run's summary, computed by the server when the run settles and printed by the
//! headless client (see [`crate::server::client::headless`]). Exit code 0 when every task completed, 1
//! when halted or failed, 2 when a person must decide (a task in `needs_attention`).

use crate::core::manifest::Status;
use crate::host::git;
use crate::host::runtime::Runtime;
use crate::host::worker::now_ms;
use std::fmt::Write as _;
use std::path::Path;

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
            "  {} {:<16} attempts {:<2} files {:<3} {:>8}{}",
            crate::core::text::cell(&t.id, 10),
            t.status.as_str(),
            t.attempts.unwrap_or(0),
            files,
            dur,
            why
        );
    }
    if let Some(err) = &rt.save_error {
        let _ = writeln!(s, "NOT SAVED: {err}");
    }
    let code = rt.exit_code();
    let _ = writeln!(
        s,
        "exit {code}: {}",
        crate::core::engine::Engine::exit_meaning(code)
    );
    s
}
