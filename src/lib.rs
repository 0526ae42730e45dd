//! switchyard: a terminal control room for running many AI coding agents in parallel on one
//! repository. See `DESIGN.md` in the shared folder and the README.
//!
//! Layers point down: [`manifest`] ← [`plan`] ← [`classify`] ← [`engine`] (the pure core), then
//! the shell: [`worker`] (PTYs), [`git`] (worktrees), [`runtime`] (the loop that feeds the engine),
//! [`headless`] and [`ui`] (two renderings of the same state).

pub mod action;
pub mod classify;
pub mod client;
pub mod config;
pub mod demo;
pub mod engine;
pub mod fake_agent;
pub mod git;
pub mod headless;
pub mod jobs;
pub mod manifest;
pub mod plan;
pub mod replay;
pub mod runtime;
pub mod server;
pub mod ui;
pub mod worker;

/// Text from tasks, agents and files made safe for a person's terminal: every control
/// character but newline and tab (C0, DEL, C1, so ESC sequences, BEL and OSC clipboard writes)
/// is shown as a visible `\xHH` escape instead of acting.
pub fn text_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n' && c != '\t') || c == '\u{7f}' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}
