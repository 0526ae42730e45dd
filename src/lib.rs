//! switchyard: a terminal control room for running many AI coding agents in parallel on one
//! repository. See `DESIGN.md` in the shared folder and the README.
//!
//! Layers point down: [`manifest`] ← [`plan`] ← [`classify`] ← [`engine`] (the pure core), then
//! the shell: [`worker`] (PTYs), [`git`] (worktrees), [`runtime`] (the loop that feeds the engine),
//! [`headless`] and [`ui`] (two renderings of the same state).

pub mod action;
pub mod channel_io;
pub mod channels;
pub mod classify;
pub mod client;
pub mod config;
pub mod demo;
pub mod edits;
pub mod engine;
pub mod fake_agent;
pub mod final_message;
pub mod findings;
pub mod flood;
pub mod git;
pub mod headless;
pub mod import;
pub mod integrate;
pub mod jobs;
pub mod journal;
pub mod manifest;
pub mod orphans;
pub mod plan;
pub mod pr;
pub mod procfs;
pub mod replay;
pub mod report;
pub mod resume;
pub mod runtime;
pub mod server;
pub mod setup;
pub mod stages;
pub mod stream_cap;
pub mod text;
pub mod transcript;
pub mod ui;
pub mod worker;
