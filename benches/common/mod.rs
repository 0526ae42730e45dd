//! Helpers the whole-program benchmarks share (each bench is its own crate: `mod common;`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A number from the environment (a bench's size knob), or `default` when unset or not a number.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs git in `dir` with a fixed identity; panics naming the arguments when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?}");
}

/// How many tasks of the run of `dir/manifest.json` have a live worker, asked of its server with
/// `bin status --json` (registry in `rt`); 0 when the server does not answer.
pub fn live_workers(bin: &Path, dir: &Path, rt: &Path) -> usize {
    let out = Command::new(bin)
        .args(["status", "manifest.json", "--json"])
        .current_dir(dir)
        .env("SWITCHYARD_RUNTIME_DIR", rt)
        .output();
    let Ok(out) = out else { return 0 };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    v["tasks"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["worker"] == true).count())
        .unwrap_or(0)
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
