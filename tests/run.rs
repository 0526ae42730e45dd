//! End-to-end runs of the real binary on real git repositories, headless.

mod common;

use common::{bin, git, journal, repo, tasks, write_project};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn manifest_status(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_headless_demo_completes_every_task_with_heals_in_the_journal() {
    // In one process (--foreground): no background server is started.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(bin())
        .args(["demo", "--headless", "--foreground", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tasks complete 8/8"), "{stdout}");
    // The run's Markdown report is written when it settles.
    assert!(stdout.contains("report: "), "{stdout}");
    let report = std::fs::read_to_string(dir.join(".switchyard/logs/report.md")).unwrap();
    assert!(report.contains("8/8"), "{report}");
    assert!(
        !dir.join(".switchyard/logs/server.log").exists(),
        "--foreground keeps the run in this process"
    );
    let m = manifest_status(&dir.join("manifest.json"));
    for t in tasks(&m) {
        assert_eq!(t["status"], "complete", "{t}");
        let branch = t["branch"].as_str().unwrap();
        let base = t["baseCommit"].as_str().unwrap();
        let n = git(&dir, &["rev-list", "--count", &format!("{base}..{branch}")]);
        assert!(
            n.trim().parse::<u32>().unwrap() >= 1,
            "{branch} has commits"
        );
    }
    let j = journal(&dir.join(".switchyard/logs"));
    let heal = |needle: &str| {
        j.iter()
            .any(|e| e["kind"] == "heal" && e["message"].as_str().unwrap().contains(needle))
    };
    assert!(heal("answer (yes-no)"), "a prompt was answered");
    assert!(heal("restart in"), "a failure was restarted");
    assert!(heal("nudge 1 (stalled)"), "a stall was nudged");
    let answer = j
        .iter()
        .find(|e| e["kind"] == "heal" && e["message"].as_str().unwrap().contains("answer"))
        .unwrap();
    assert_eq!(
        answer["data"]["bytes"], "y\r",
        "the exact bytes are journaled"
    );
    // The restarted agent got the error as context.
    let restart = j
        .iter()
        .find(|e| e["message"].as_str().unwrap().starts_with("restart in"))
        .unwrap();
    assert!(restart["data"]["context"]
        .as_str()
        .unwrap()
        .contains("error: test suite failed"));
    // Transcripts exist per task.
    assert!(dir.join(".switchyard/logs/d1.log").exists());
    // The lifecycle: d1 and d4 both edit src/parse.rs while under way; the conflict is predicted
    // before either merges, and the later to merge is resolved in a resolve round.
    let at = |pred: &dyn Fn(&Value) -> bool| j.iter().position(pred);
    let msg = |e: &Value| e["message"].as_str().unwrap_or("").to_string();
    let warned = at(&|e| {
        e["kind"] == "conflict"
            && msg(e).starts_with("predicted conflict with")
            && msg(e).contains("src/parse.rs lines")
    })
    .unwrap_or_else(|| panic!("a predicted conflict: {stdout}"));
    let first_merge = at(&|e| {
        (e["task"] == "d1" || e["task"] == "d4")
            && e["kind"] == "merge"
            && msg(e).starts_with("merged into")
    })
    .expect("d1 or d4 merged");
    assert!(warned < first_merge, "warned before either merged");
    assert!(
        at(&|e| e["kind"] == "start" && msg(e).starts_with("resolve 1")).is_some(),
        "a resolve round: {stdout}"
    );
    assert!(
        at(&|e| e["kind"] == "review" && msg(e).starts_with("review 1: 1 critical")).is_some(),
        "a review round with a blocking finding: {stdout}"
    );
}

/// `switchyard run --headless MANIFEST`, to completion.
fn run_headless(manifest: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["run", "--headless"])
        .arg(manifest)
        .output()
        .unwrap()
}

const COMMIT_AGENT: &str = r#"
default_agent = "commit"
[heal]
backoff_ms = 100
max_attempts = 2
[agents.commit]
command = ["sh", "-c", "printf '%s' \"$1\" > prompt.txt && git add prompt.txt && git -c user.name=a -c user.email=a@a -c commit.gpgsign=false commit -qm work", "agent", "{prompt}"]
"#;

#[test]
fn a_hostile_title_reaches_the_agent_as_one_inert_argument() {
    let r = repo();
    let pwned = r.path().join("PWNED");
    let pwned2 = r.path().join("PWNED2");
    let title = format!(
        "'; touch {}; '$(touch {})`touch {}`",
        pwned.display(),
        pwned2.display(),
        pwned2.display()
    );
    let task =
        serde_json::json!({"id": "evil", "title": title, "files": ["prompt.txt"], "prompt": title});
    let manifest = write_project(r.path(), &task.to_string(), COMMIT_AGENT);
    let out = run_headless(&manifest);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let wt = r.path().join(".sy/worktrees/evil");
    // The prompt is the implementer's preamble, then the task.
    let prompt = std::fs::read_to_string(wt.join("prompt.txt")).unwrap();
    assert!(prompt.ends_with(&format!("\nTASK: {title}")), "{prompt}");
    assert!(
        !pwned.exists() && !pwned2.exists(),
        "nothing in the title was executed"
    );
}

#[test]
fn a_missing_agent_binary_is_an_error_on_that_task_not_a_crash() {
    let r = repo();
    let config = format!(
        "{COMMIT_AGENT}\n[agents.ghost]\ncommand = [\"no-such-agent-cli-xyz\", \"{{prompt}}\"]\n"
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"x","files":["a"],"agent":"ghost"},{"id":"b","title":"y","files":["prompt.txt"]}"#,
        &config,
    );
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let m = manifest_status(&manifest);
    let t = tasks(&m);
    assert_eq!(t[0]["status"], "error");
    assert!(
        t[0]["lastVerdict"]
            .as_str()
            .unwrap()
            .contains("\"no-such-agent-cli-xyz\" not found on PATH"),
        "{}",
        t[0]
    );
    assert_eq!(t[1]["status"], "complete");
}

#[test]
fn a_plain_programs_prompt_is_seen_as_a_terminal_read_and_never_answered() {
    // `rm -i` asks in words no rule knows; it blocks reading its terminal, which the PTY's owner
    // sees in /proc: waiting for input, and on the deny-list ("remove"), so a person decides.
    if !switchyard::host::procfs::available() {
        eprintln!("skipped: this kernel does not show /proc/<pid>/syscall");
        return;
    }
    let r = repo();
    let config = r#"
default_agent = "careful"
[agents.careful]
command = ["sh", "-c", "touch scratch.txt; rm -i scratch.txt; sleep 30"]
"#;
    let manifest = write_project(r.path(), r#"{"id":"c","title":"x","files":["a"]}"#, config);
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("waiting_input [terminal-read] rm: remove"),
        "the verdict names the channel and the question: {stdout}"
    );
    assert!(!stdout.contains("sent \"y"), "never answered: {stdout}");
}

#[test]
fn an_event_loop_programs_field_prompt_is_seen_by_the_cursor_after_it() {
    // Like `npm init` (node): the program waits in epoll, not in a terminal read, and its field
    // prompt matches no rule; the cursor sitting right after `package name: (demo)` after quiet
    // says it waits. Not on the allow-list: a person answers.
    let has_python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let r = repo();
    let config = r#"
default_agent = "init"
[agents.init]
command = ["python3", "-c", "import selectors; print('package name: (demo) ', end='', flush=True); s = selectors.DefaultSelector(); s.register(0, selectors.EVENT_READ); s.select(60)"]
"#;
    let manifest = write_project(r.path(), r#"{"id":"n","title":"x","files":["a"]}"#, config);
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "waiting_input [cursor-question] cursor after a question: package name: (demo)"
        ),
        "the verdict names the channel and the field: {stdout}"
    );
    assert!(!stdout.contains("sent \""), "never answered: {stdout}");
}

#[test]
fn a_deny_listed_prompt_ends_headless_with_exit_2() {
    let r = repo();
    let config = r#"
default_agent = "asker"
[agents.asker]
command = ["sh", "-c", "printf 'Overwrite prompt.txt? (y/n) '; read a; echo got $a"]
"#;
    let manifest = write_project(r.path(), r#"{"id":"a","title":"x","files":["a"]}"#, config);
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("escalate: prompt matches the deny-list"),
        "{stdout}"
    );
    assert!(!stdout.contains("sent \"y"), "never answered: {stdout}");
    assert_eq!(
        tasks(&manifest_status(&manifest))[0]["status"],
        "needs_attention"
    );
}

#[test]
fn plan_prints_the_seed_batches_and_critical_path() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-manifest.json");
    let out = Command::new(bin()).arg("plan").arg(&seed).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("Batch 1 [Phase 1: Critical]: t1 ∥ t3"), "{s}");
    assert!(
        s.contains("Batch 2 [Phase 1: Critical]: t2\n  t2 after t1 (dependsOn)"),
        "{s}"
    );
    assert!(s.contains("Batch 3 [Phase 2: High]: t4 ∥ t6 ∥ t7"), "{s}");
    assert!(s.contains("Batch 4 [Phase 2: High]: t5 ∥ t8"), "{s}");
    assert!(
        s.contains("t5 after all of Phase 1: Critical, t4 (dependsOn)"),
        "{s}"
    );
    assert!(
        s.contains("t8 after all of Phase 1: Critical, t7 (dependsOn)"),
        "{s}"
    );
    assert!(
        s.contains("Critical path (4 tasks): t1 → t2 → t4 → t5"),
        "{s}"
    );
}

#[test]
fn plan_reports_every_problem_with_its_place_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"phases\": [\n    {\"tasks\": [{\"id\": \"a\",}]}\n  ]\n}\n",
    )
    .unwrap();
    let out = Command::new(bin()).arg("plan").arg(&bad).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        e.contains("bad.json") && e.contains("line 3, column") && e.contains("Fix:"),
        "{e}"
    );

    let cyc = tmp.path().join("cycle.json");
    std::fs::write(
        &cyc,
        r#"{"phases":[{"tasks":[{"id":"a","files":["x"],"dependsOn":["b"]},{"id":"b","files":["y"],"dependsOn":["a"]},{"id":"c","dependsOn":["zz"]}]}]}"#,
    )
    .unwrap();
    let out = Command::new(bin()).arg("plan").arg(&cyc).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        e.contains("task c: dependsOn names unknown task \"zz\""),
        "{e}"
    );

    std::fs::write(
        &cyc,
        r#"{"phases":[{"tasks":[{"id":"a","files":["x"],"dependsOn":["b"]},{"id":"b","files":["y"],"dependsOn":["a"]}]}]}"#,
    )
    .unwrap();
    let out = Command::new(bin()).arg("plan").arg(&cyc).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("dependency cycle: a → b (dependsOn) → a (dependsOn)"),
        "{e}"
    );
}

#[test]
fn a_killed_run_resumes_and_keeps_finished_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(bin())
        .args(["demo", "--headless", "--pace", "2", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let manifest = dir.join("manifest.json");
    // Kill it (SIGKILL: no chance to clean up) once some tasks are complete.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if let Ok(m) = serde_json::from_str::<Value>(&text) {
                if tasks(&m)
                    .iter()
                    .filter(|t| t["status"] == "complete")
                    .count()
                    >= 2
                {
                    break;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo made no progress"
        );
    }
    // kill -9 of the server (the run's owner), not of the headless client.
    let server = common::server_pid(&dir.join(".switchyard")).expect("a live server");
    unsafe {
        libc::kill(server as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
    // kill(2) only sends the signal: wait until the server is gone (or a zombie, its lock and
    // socket closed) before starting again, so the next run finds a stale lock, not a live one.
    common::wait_until("the killed server is gone", 20, || {
        std::fs::read_to_string(format!("/proc/{server}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    let before = manifest_status(&manifest);
    let done_before: Vec<Value> = tasks(&before)
        .into_iter()
        .filter(|t| t["status"] == "complete")
        .collect();
    assert!(
        tasks(&before).iter().any(|t| t["status"] != "complete"),
        "killed mid-run"
    );

    let out = run_headless(&manifest);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "replacing the stale lock and socket of server pid {server}"
        )),
        "the stale lock is reported in one line: {err}"
    );
    let after = manifest_status(&manifest);
    for t in tasks(&after) {
        assert_eq!(t["status"], "complete");
    }
    for t in done_before {
        let now = tasks(&after)
            .into_iter()
            .find(|x| x["id"] == t["id"])
            .unwrap();
        assert_eq!(
            now["completedAt"], t["completedAt"],
            "finished work is not redone"
        );
        assert_eq!(now["attempts"], t["attempts"]);
    }
}

#[test]
fn clean_removes_only_the_worktrees_it_made() {
    let r = repo();
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"x","files":["prompt.txt"]}"#,
        COMMIT_AGENT,
    );
    let out = run_headless(&manifest);
    assert_eq!(out.status.code(), Some(0));
    // A worktree made by hand must survive (in a temp dir of its own).
    let elsewhere = tempfile::tempdir().unwrap();
    let mine = elsewhere.path().join("mine-wt");
    git(
        r.path(),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "mine",
            mine.to_str().unwrap(),
        ],
    );
    let out = Command::new(bin())
        .arg("clean")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!r.path().join(".sy/worktrees/a").exists());
    let list = git(r.path(), &["worktree", "list"]);
    assert!(!list.contains(".sy/worktrees/a"), "{list}");
    assert!(list.contains("mine-wt"), "{list}");
    assert!(
        git(r.path(), &["branch", "--list", "task/a"]).contains("task/a"),
        "branch kept"
    );
    assert!(r.path().join(".sy/logs/events.jsonl").exists(), "logs kept");
    git(
        r.path(),
        &["worktree", "remove", "--force", mine.to_str().unwrap()],
    );
}

#[test]
fn a_verify_command_decides_complete_in_the_worktree() {
    let r = repo();
    let manifest = write_project(
        r.path(),
        r#"{"id":"good","title":"x","files":["prompt.txt"],"verify":["sh","-c","test -s prompt.txt && echo verified"]},
           {"id":"bad","title":"y","files":["other.txt"],"verify":["sh","-c","echo 'error: 2 tests failed'; exit 1"]}"#,
        COMMIT_AGENT,
    );
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let t = tasks(&manifest_status(&manifest));
    assert_eq!(t[0]["status"], "complete", "{stdout}");
    assert_eq!(t[1]["status"], "error", "{stdout}");
    assert_eq!(
        t[1]["attempts"], 2,
        "restarted once with the verify output, then failed"
    );
    assert!(
        stdout.contains("verify failed: error: 2 tests failed"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(r.path().join(".sy/logs/good.verify.log")).unwrap();
    assert_eq!(log.trim(), "verified");
}

#[test]
fn changes_left_uncommitted_at_the_agents_prompt_are_committed_when_the_ladder_says_so() {
    let r = repo();
    let config = r#"
default_agent = "lazy"
[heal.ladder]
idle = [{ action = "commit" }, { action = "escalate" }]
[agents.lazy]
command = ["sh", "-c", "echo notes > notes.txt; echo edited; printf '> '; read answer; sleep 30"]
[[agents.lazy.rules]]
name = "lazy-idle"
verdict = "idle"
pattern = "^>$"
quiet_ms = 300
"#;
    let manifest = write_project(
        r.path(),
        r#"{"id":"lazy","title":"x","files":["notes.txt"]}"#,
        config,
    );
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("commit the worktree's changes"), "{stdout}");
    let wt = r.path().join(".sy/worktrees/lazy");
    let log = git(&wt, &["log", "-1", "--format=%an %s"]);
    assert!(log.starts_with("switchyard lazy: x"), "{log}");
}

#[test]
fn hand_edits_to_the_manifest_during_a_run_are_merged_not_lost() {
    let r = repo();
    // t1 works for a while; t2 waits behind it (same file) and is skipped by hand meanwhile.
    let config = r#"
default_agent = "slow"
[agents.slow]
command = ["sh", "-c", "sleep 3; echo x > out.txt; git add out.txt; git -c user.name=a -c user.email=a@a commit -qm done"]
"#;
    let manifest = write_project(
        r.path(),
        r#"{"id":"t1","title":"First","files":["a"]},{"id":"t2","title":"Second","files":["a"]}"#,
        config,
    );
    let child = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("t1 runs", 20, || {
        std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("\"status\": \"running\""))
    });
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let list = m["phases"][0]["tasks"].as_array_mut().unwrap();
    list[1]["status"] = "skipped".into();
    list[1]["reviewer"] = "kim".into();
    list.push(serde_json::json!({"id": "t3", "title": "Added by hand", "files": ["b"]}));
    m["owner"] = "platform-team".into();
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();

    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("t2 was set to skipped by hand: skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("t3 was added by hand"), "{stdout}");
    let after = manifest_status(&manifest);
    let t = tasks(&after);
    assert_eq!(t[0]["status"], "complete", "{after}");
    assert_eq!(
        t[1]["status"], "skipped",
        "the skip was applied, not overwritten"
    );
    assert_eq!(
        t[1]["reviewer"], "kim",
        "unknown fields added by hand are kept"
    );
    assert_eq!(
        t[2]["id"], "t3",
        "the task added by hand is kept for the next run"
    );
    assert_eq!(after["owner"], "platform-team");
}

#[test]
fn clean_keeps_a_worktree_with_uncommitted_work_unless_forced() {
    let r = repo();
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"x","files":["prompt.txt"]},{"id":"b","title":"y","files":["other.txt"]}"#,
        COMMIT_AGENT,
    );
    let out = run_headless(&manifest);
    assert_eq!(out.status.code(), Some(0));
    // Work left in a's worktree by hand after the run.
    let wt = r.path().join(".sy/worktrees/a");
    std::fs::write(wt.join("draft.txt"), "not committed yet\n").unwrap();
    let clean = |force: bool| {
        let mut c = Command::new(bin());
        c.arg("clean").arg(&manifest);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let out = clean(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(wt.join("draft.txt").exists(), "uncommitted work is kept");
    assert!(
        stdout.contains("kept worktree") && stdout.contains("1 file(s) with uncommitted changes"),
        "{stdout}"
    );
    assert!(
        !r.path().join(".sy/worktrees/b").exists(),
        "a clean worktree goes"
    );
    let out = clean(true);
    assert!(out.status.success());
    assert!(!wt.exists(), "--force removes it");
}

#[test]
fn doctor_says_which_agent_clis_match_the_versions_their_rules_were_checked_against() {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = tempfile::tempdir().unwrap();
    let fake = |name: &str, version: &str| {
        let p = bin_dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho '{version}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    fake("codex", "codex-cli 0.169.0");
    fake("claude", "2.0.14 (Claude Code)");
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(bin())
        .arg("doctor")
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0.169.0: the version its rules were checked against"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2.0.14: its rules were checked against 2.1.330"),
        "{stdout}"
    );
    assert!(stdout.contains("gemini: not installed"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a version that differs is worth a look"
    );
}

#[test]
fn the_agents_own_hook_events_decide_the_verdict_over_the_screen() {
    // An agent that reports through `switchyard hook` as Claude Code's hooks and codex's notify
    // program do, while its screen says nothing a rule knows. A permission request on the
    // deny-list gets no answer and makes the task wait for a person; an allowed one is answered
    // through the hook's reply; the end of a turn after committing completes the task without
    // waiting for the process to exit.
    let r = repo();
    let decision = r.path().join("decision.json");
    let config = format!(
        r#"
default_agent = "hooked"
[agents.hooked]
command = ["sh", "-c", "echo thinking; printf '{{\"hook_event_name\":\"UserPromptSubmit\"}}' | \"$0\" hook; sleep 1; if [ \"$SWITCHYARD_TASK_ID\" = asks ]; then printf '{{\"hook_event_name\":\"PermissionRequest\",\"tool_name\":\"Bash\",\"tool_input\":{{\"command\":\"rm -rf build\"}}}}' | \"$0\" hook; else printf '{{\"hook_event_name\":\"PermissionRequest\",\"tool_name\":\"Bash\",\"tool_input\":{{\"command\":\"git commit -m done\"}}}}' | \"$0\" hook > {d}; echo x > out.txt; git add out.txt; git -c user.name=a -c user.email=a@a commit -qm done; \"$0\" hook --agent codex '{{\"type\":\"agent-turn-complete\",\"last-assistant-message\":\"Committed.\"}}'; fi; sleep 30", "{{switchyard}}"]
"#,
        d = decision.display()
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"asks","title":"x","files":["a"]},{"id":"done","title":"y","files":["b"]}"#,
        &config,
    );
    let start = std::time::Instant::now();
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "waiting_input [hook:PermissionRequest] claude hooks: permission asked for Bash: rm -rf build"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "idle [hook:agent-turn-complete] codex notify: the turn is complete: Committed."
        ),
        "{stdout}"
    );
    let reply: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&decision).unwrap()).unwrap();
    assert_eq!(
        reply["hookSpecificOutput"]["decision"]["behavior"], "allow",
        "{reply}"
    );
    let t = tasks(&manifest_status(&manifest));
    assert_eq!(t[0]["status"], "needs_attention");
    assert_eq!(t[1]["status"], "complete");
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "done from the notify event, not from the process exiting after 30 s"
    );
}

#[test]
fn opencodes_event_stream_decides_the_verdict_and_its_permission_is_answered_through_its_api() {
    // A stand-in for opencode's server on {opencode_port}: it asks permission for a commit over
    // its event stream, commits once switchyard answers through its API, then reports idle. The
    // task completes from the stream's word, without any screen rule.
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let r = repo();
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/channels/fake_opencode_server.py"
    );
    let config = format!(
        r#"
default_agent = "oc"
[agents.oc]
command = ["python3", "{server}", "{{opencode_port}}", "echo x > out.txt && git add out.txt && git -c user.name=a -c user.email=a@a commit -qm done"]
"#
    );
    let manifest = write_project(r.path(), r#"{"id":"t","title":"x","files":["a"]}"#, &config);
    let start = std::time::Instant::now();
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("answered through opencode events: allow bash: echo x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("idle [hook:session.idle] opencode events"),
        "{stdout}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_hook_with_no_server_returns_at_once_and_prints_nothing() {
    // switchyard gone (a dead socket): the agent is never held up and no decision is made for it.
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["hook"])
        .env("SWITCHYARD_SOCKET", dir.path().join("gone.sock"))
        .env("SWITCHYARD_TASK_ID", "a")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(br#"{"hook_event_name":"PermissionRequest","tool_name":"Bash","tool_input":{"command":"ls"}}"#)
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_manifest_that_cannot_be_saved_is_an_error_the_person_sees_never_success() {
    // The manifest's path stops being writable mid-run (here: replaced by a directory, which
    // stops even root). Saves fail, are retried and shown, and the run does not end with 0.
    let r = repo();
    let config = r#"
default_agent = "slow"
[agents.slow]
command = ["sh", "-c", "sleep 2; echo x > out.txt; git add out.txt; git -c user.name=a -c user.email=a@a commit -qm done"]
"#;
    let manifest = write_project(r.path(), r#"{"id":"t1","title":"x","files":["a"]}"#, config);
    let child = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("t1 runs", 20, || {
        std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("\"status\": \"running\""))
    });
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cannot save the manifest"), "{stdout}");
    assert!(
        stdout.contains("NOT SAVED"),
        "the summary says so: {stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "never reported as success: {stdout}"
    );
}

#[test]
fn gemini_telemetry_reporting_api_errors_in_a_row_ends_in_error_with_the_status() {
    // A stand-in for gemini-cli 0.61 retrying a dead API: it appends OpenTelemetry records of
    // `gemini_cli.api_error` (503, its JSON body) to $GEMINI_TELEMETRY_OUTFILE ({gemini_telemetry})
    // the way gemini does, dated 40 s apart, and keeps "thinking". switchyard reads them, says
    // `error` with the status and message, restarts, and ends `error`.
    let r = repo();
    let records: String = [1000, 1040, 1080]
        .iter()
        .map(|t| {
            let v = serde_json::json!({"hrTime": [t, 0], "attributes": {
                "event.name": "gemini_cli.api_error", "status_code": 503, "model": "m",
                "error.message": r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#}});
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        })
        .collect();
    let fake = tempfile::tempdir().unwrap();
    let file = fake.path().join("records.json");
    std::fs::write(&file, records).unwrap();
    let config = format!(
        r#"
default_agent = "gem"
[heal]
backoff_ms = 100
max_attempts = 2
[agents.gem]
command = ["sh", "-c", "cat \"$1\" >> \"$GEMINI_TELEMETRY_OUTFILE\"; echo 'Thinking... (esc to cancel, 2m 0s)'; sleep 30", "gem", "{}"]
env = {{ GEMINI_TELEMETRY_OUTFILE = "{{gemini_telemetry}}" }}
"#,
        file.display()
    );
    let config = config.as_str();
    let manifest = write_project(r.path(), r#"{"id":"t","title":"x","files":["a"]}"#, config);
    let start = std::time::Instant::now();
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let t = tasks(&manifest_status(&manifest));
    assert_eq!(t[0]["status"], "error", "{stdout}");
    assert_eq!(t[0]["attempts"], 2, "{stdout}");
    assert!(
        stdout.contains(
            "gemini telemetry: HTTP 503 from m: overloaded (UNAVAILABLE) (3 API errors in a row over 80s)"
        ),
        "{stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "not the 30 s sleep"
    );
}

#[test]
fn geminis_after_agent_hook_keeps_the_turns_answer_as_the_final_message() {
    // A stand-in for gemini-cli 0.61: it commits, then its AfterAgent hook runs
    // `switchyard hook --agent gemini` with the turn's answer in `prompt_response`, and it keeps
    // its footer on screen ("YOLO Ctrl+Y", which the transcript heuristic would take).
    let r = repo();
    let config = r#"
default_agent = "gem"
[agents.gem]
command = ["sh", "-c", "echo x > out.txt && git add out.txt && git -c user.name=a -c user.email=a@a commit -qm done && echo '{\"hook_event_name\":\"AfterAgent\",\"prompt_response\":\"Done: out.txt committed.\"}' | \"$0\" hook --agent gemini; echo 'YOLO Ctrl+Y'; sleep 20", "{switchyard}"]
env = { SWITCHYARD_FINAL_MESSAGE = "{final_message}" }
"#;
    let manifest = write_project(r.path(), r#"{"id":"t","title":"x","files":["a"]}"#, config);
    let start = std::time::Instant::now();
    let out = run_headless(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        tasks(&manifest_status(&manifest))[0]["status"],
        "complete",
        "{stdout}"
    );
    let text = std::fs::read_to_string(r.path().join(".sy/logs/t.final.md")).unwrap();
    assert_eq!(text, "Done: out.txt committed.\n");
    assert!(
        stdout.contains("idle [hook:AfterAgent] gemini hooks"),
        "{stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "done from the hook, not the exit"
    );
}

#[test]
fn a_foreground_run_returns_as_soon_as_its_server_has_ended() {
    // The client waits (up to 5 s) until the server has released its lock, so that the next
    // command does not find it still going. In one process the server's lock was held by the
    // caller until the client returned, so every foreground run waited out the whole 5 s.
    let r = repo();
    let config = r#"
default_agent = "quick"
[agents.quick]
command = ["sh", "-c", "echo x > out.txt; git add out.txt; git -c user.name=a -c user.email=a@a commit -qm done"]
"#;
    let manifest = write_project(
        r.path(),
        r#"{"id":"t1","title":"Quick","files":["out.txt"]}"#,
        config,
    );
    let out = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .output()
        .unwrap();
    let ended_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j = journal(&r.path().join(".sy/logs"));
    let last = j.iter().filter_map(|e| e["tsMs"].as_u64()).max().unwrap();
    let after = ended_ms.saturating_sub(last);
    assert!(
        after < 4_000,
        "the command returned {after} ms after the server's last journal entry"
    );
}
