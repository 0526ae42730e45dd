//! Worktree set-up end to end: the real binary runs the config's `setup` commands in each new
//! worktree before the agent starts; a failing one is an error on that task, with its output.

mod common;

use common::{bin, git, repo, tasks, write_project};
use std::process::Command;

const AGENT: &str = r#"
default_agent = "commit"
[heal]
backoff_ms = 100
max_attempts = 1
[agents.commit]
command = ["sh", "-c", "test -f .env && cp .env seen.txt && git add seen.txt && git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm work"]
"#;

fn run(manifest: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(manifest)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn setup_runs_in_the_new_worktree_before_the_agent() {
    let r = repo();
    std::fs::write(r.path().join(".env"), "SECRET=1\n").unwrap();
    std::fs::write(
        r.path().join(".gitignore"),
        "/manifest.json\n/switchyard.toml\n/.sy/\n.env\n",
    )
    .unwrap();
    git(r.path(), &["commit", "-qam", "ignore .env"]);
    let config = format!(
        "setup = [[\"cp\", \"{{repo}}/.env\", \".env\"], [\"sh\", \"-c\", \"echo installing {{task_id}} on {{branch}}\"]]\n{AGENT}"
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"t1","title":"x","files":["seen.txt"]}"#,
        &config,
    );
    let (code, out) = run(&manifest);
    assert_eq!(code, Some(0), "{out}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(tasks(&m)[0]["status"], "complete", "{out}");
    // The agent saw the copied .env (it committed what it read).
    assert_eq!(git(r.path(), &["show", "task/t1:seen.txt"]), "SECRET=1\n");
    let log = std::fs::read_to_string(r.path().join(".sy/logs/t1.setup.log")).unwrap();
    assert!(log.contains("installing t1 on task/t1\n"), "{log}");
}

#[test]
fn a_failing_setup_is_an_error_on_its_task_with_the_output() {
    let r = repo();
    let config = format!("setup = [\"sh\", \"-c\", \"echo 'npm ERR! missing package-lock.json' >&2; exit 1\"]\n{AGENT}");
    let manifest = write_project(
        r.path(),
        r#"{"id":"t1","title":"x","files":["seen.txt"]}"#,
        &config,
    );
    let (code, out) = run(&manifest);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("npm ERR! missing package-lock.json"), "{out}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(tasks(&m)[0]["status"], "error", "{out}");
    let log = std::fs::read_to_string(r.path().join(".sy/logs/t1.setup.log")).unwrap();
    assert!(log.contains("npm ERR! missing package-lock.json"), "{log}");
}

#[test]
fn a_killed_server_takes_its_setup_command_with_it() {
    let r = repo();
    let config = format!(
        "setup = [\"sh\", \"-c\", \"echo $$ > {{repo}}/setup.pid; exec sleep 60\"]\n{AGENT}"
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"t1","title":"x","files":["seen.txt"]}"#,
        &config,
    );
    let mut server = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = r.path().join("setup.pid");
    let t = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            t.elapsed().as_secs() < 20,
            "the setup command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    assert!(alive(pid), "the setup command runs");
    server.kill().unwrap();
    server.wait().unwrap();
    let t = std::time::Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed().as_secs() < 10,
            "setup command {pid} outlived the killed server"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
