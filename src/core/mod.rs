//! The functional core: pure functions over plain data with an injected clock (ms). Nothing
//! here touches a PTY, a socket or the terminal; the manifest's and the config's own files are
//! read and written through the functions that name them.
//!
//! Layers point down: [`manifest`] ← [`plan`] ← [`classify`] ← [`engine`]; [`config`] is the
//! policy the engine is given, [`action`] the one action vocabulary.

pub mod action;
pub mod channels;
pub mod classify;
pub mod config;
pub mod edits;
pub mod engine;
pub mod final_message;
pub mod findings;
pub mod manifest;
pub mod plan;
pub mod text;
