//! switchyard: a terminal control room for running many AI coding agents in parallel on one
//! repository. See `DESIGN.md` in the shared folder and the README.
//!
//! Layers point down: [`core`] (pure: the manifest model, the plan, the classifier, the engine
//! and its policy — plain values and an injected clock), [`host`] (the edge: PTYs and emulators,
//! git, the loop that feeds the engine), [`server`] (one per manifest: the socket, locks,
//! clients) and [`ui`] (the control room and the headless reporter). [`import`] and [`report`]
//! turn other formats into a manifest and back.

pub mod core;
pub mod demo;
pub mod fake_agent;
pub mod host;
pub mod import;
pub mod report;
pub mod server;
pub mod ui;
