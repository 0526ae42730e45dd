//! The imperative shell: turns the world into engine events and carries out the engine's
//! effects. Per worker a PTY with reader and writer threads ([`worker`]), git and worktrees
//! ([`git`], [`integrate`], [`pr`], [`setup`]), the agents' channels ([`channel_io`]), the
//! journal and transcripts on disk, and [`runtime`], the loop that feeds the engine.

pub mod channel_io;
pub mod flood;
pub mod git;
pub mod integrate;
pub mod jobs;
pub mod journal;
pub mod orphans;
pub mod pr;
pub mod procfs;
pub mod replay;
pub mod resume;
pub mod runtime;
pub mod setup;
pub mod stages;
pub mod stream_cap;
pub mod transcript;
pub mod worker;
