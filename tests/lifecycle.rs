//! End-to-end lifecycle runs of the real binary on real git repositories, headless: a review
//! round and a fix round (fake reviewer), an early conflict warning and a resolve round through
//! the merge queue (also from uncommitted edits, and with the later task held), a pull request
//! pushed to a bare remote and followed with a fake `gh` (also through a fix round on requested
//! changes).

mod common;

use common::{bin, git, repo, tasks, write_project};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn journal(dir: &Path) -> Vec<Value> {
    common::journal(&dir.join(".sy/logs"))
}

fn run_headless(manifest: &Path, path_prefix: Option<&Path>) -> (i32, String) {
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--foreground"]).arg(manifest);
    if let Some(p) = path_prefix {
        let old = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{old}", p.display()));
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn messages(j: &[Value], kind: &str) -> Vec<String> {
    j.iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            format!(
                "{} {}",
                e["task"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

fn fake_profile(name: &str, scenario: &str) -> String {
    format!(
        "[agents.{name}]\ncommand = [\"{{switchyard}}\", \"fake-agent\", \"--scenario\", \"{scenario}\", \"--speed\", \"0\", \"{{prompt}}\"]\n"
    )
}

#[test]
fn a_critical_finding_is_fixed_in_a_second_round() {
    let r = repo();
    let config = format!(
        "default_agent = \"fake\"\n[review]\nenabled = true\nagent = \"reviewer\"\nblock_on = \"major\"\nmax_rounds = 2\n{}{}",
        fake_profile("fake", "normal"),
        fake_profile("reviewer", "review")
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"Add notes","files":["notes.md"]}"#,
        &config,
    );
    let (code, out) = run_headless(&manifest, None);
    assert_eq!(code, 0, "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let t = &tasks(&m)[0];
    assert_eq!(t["status"], "complete", "{t}");
    assert_eq!(t["attempts"], 1, "fix rounds use no attempts: {t}");
    let j = journal(r.path());
    let reviews = messages(&j, "review");
    assert!(
        reviews
            .iter()
            .any(|m| m.contains("review 1: 1 critical, 0 major, 0 minor (blocks at major)")),
        "{reviews:?}"
    );
    assert!(
        reviews
            .iter()
            .any(|m| m.contains("review 2: 0 critical, 0 major, 0 minor")),
        "{reviews:?}"
    );
    let statuses = messages(&j, "status");
    for s in [
        "running → review",
        "review → fix",
        "fix → review",
        "review → complete",
    ] {
        assert!(
            statuses.iter().any(|m| m.contains(s)),
            "{s} in {statuses:?}"
        );
    }
    // The fix round's agent got the findings as its prompt and committed again.
    let prompt = std::fs::read_to_string(r.path().join(".sy/logs/a.prompt.md")).unwrap_or_default();
    let log = std::fs::read_to_string(r.path().join(".sy/logs/a.review.md")).unwrap();
    assert!(
        log.contains("critical") && log.contains("notes.md"),
        "{log}"
    );
    let n = git(
        &r.path().join(".sy/worktrees/a"),
        &["rev-list", "--count", "HEAD", "^main"],
    );
    assert!(
        n.trim().parse::<u32>().unwrap_or(0) >= 2 || prompt.contains("Fix round"),
        "work and fix commits"
    );
}

/// An agent that appends a line to shared.md, commits, and keeps working a while (so both run
/// at once with committed work); in a resolve round it drops the conflict markers and commits.
const SHARED_AGENT: &str = r#"
default_agent = "sh"
[warn]
enabled = true
interval_ms = 300
quiet_ms = 100
[merge]
enabled = true
into = "switchyard/integration"
[agents.sh]
command = ["sh", "-c", "if git rev-parse -q --verify MERGE_HEAD >/dev/null; then grep -v -e '^<<<<<<<' -e '^=======' -e '^>>>>>>>' shared.md > s.tmp; mv s.tmp shared.md; git add -A; git commit -qm resolve; exit 0; fi; echo \"$SWITCHYARD_TASK_ID was here\" >> shared.md; git add -A; git commit -qm \"$SWITCHYARD_TASK_ID\"; sleep 4", "agent"]
[agents.sh.env]
GIT_AUTHOR_NAME = "a"
GIT_AUTHOR_EMAIL = "a@a"
GIT_COMMITTER_NAME = "a"
GIT_COMMITTER_EMAIL = "a@a"
"#;

#[test]
fn two_tasks_on_the_same_lines_are_warned_early_and_the_second_is_resolved() {
    let r = repo();
    std::fs::write(r.path().join("shared.md"), "# shared\n").unwrap();
    git(r.path(), &["add", "shared.md"]);
    git(
        r.path(),
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@a",
            "commit",
            "-qm",
            "shared",
        ],
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"A","files":["shared.md"],"dependsOn":[]},{"id":"b","title":"B","files":["shared.md"],"dependsOn":[]}"#,
        SHARED_AGENT,
    );
    let (code, out) = run_headless(&manifest, None);
    assert_eq!(code, 0, "{out}");
    let j = journal(r.path());
    let first_merge = j
        .iter()
        .position(|e| {
            e["kind"] == "merge" && e["message"].as_str().unwrap().starts_with("merged into")
        })
        .expect("a merge");
    let warned = j
        .iter()
        .position(|e| {
            e["kind"] == "conflict"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("predicted conflict with")
                && e["message"].as_str().unwrap().contains("shared.md lines")
        })
        .unwrap_or_else(|| panic!("a predicted conflict: {:?}", messages(&j, "conflict")));
    assert!(warned < first_merge, "warned before either finished");
    let statuses = messages(&j, "status");
    assert!(
        statuses.iter().any(|m| m.contains("merging → fix")),
        "a resolve round: {statuses:?}"
    );
    let starts = messages(&j, "start");
    assert!(starts.iter().any(|m| m.contains("resolve 1")), "{starts:?}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for t in tasks(&m) {
        assert_eq!(t["status"], "complete", "{t}");
    }
    let merged = git(r.path(), &["show", "switchyard/integration:shared.md"]);
    assert!(
        merged.contains("a was here")
            && merged.contains("b was here")
            && !merged.contains("<<<<<<<"),
        "{merged}"
    );
}

/// An agent that edits shared.md at once but commits only when it is done (4 s later), as the
/// fake agent's normal scenario does: the warning must come from its uncommitted edits.
fn late_commit_agent() -> String {
    SHARED_AGENT.replace(
        r#"echo \"$SWITCHYARD_TASK_ID was here\" >> shared.md; git add -A; git commit -qm \"$SWITCHYARD_TASK_ID\"; sleep 4"#,
        r#"echo \"$SWITCHYARD_TASK_ID was here\" >> shared.md; sleep 4; git add -A; git commit -qm \"$SWITCHYARD_TASK_ID\""#,
    )
}

#[test]
fn uncommitted_edits_on_the_same_lines_are_warned_before_either_agent_commits() {
    let r = repo();
    std::fs::write(r.path().join("shared.md"), "# shared\n").unwrap();
    git(r.path(), &["add", "shared.md"]);
    git(
        r.path(),
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@a",
            "commit",
            "-qm",
            "shared",
        ],
    );
    let agent = late_commit_agent();
    assert_ne!(agent, SHARED_AGENT, "the agent commits late");
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"A","files":["shared.md"],"dependsOn":[]},{"id":"b","title":"B","files":["shared.md"],"dependsOn":[]}"#,
        &agent,
    );
    let (code, out) = run_headless(&manifest, None);
    assert_eq!(code, 0, "{out}");
    let j = journal(r.path());
    let warned = j
        .iter()
        .position(|e| {
            e["kind"] == "conflict"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("predicted conflict with")
        })
        .unwrap_or_else(|| panic!("a predicted conflict: {:?}", messages(&j, "conflict")));
    let first_done = j
        .iter()
        .position(|e| {
            e["kind"] == "status" && e["message"].as_str().unwrap().starts_with("running →")
        })
        .expect("a task leaves running");
    assert!(
        warned < first_done,
        "warned while both still ran: {:?}",
        messages(&j, "status")
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for t in tasks(&m) {
        assert_eq!(t["status"], "complete", "{t}");
    }
}

#[test]
fn pause_on_conflict_holds_the_later_task_until_the_earlier_merged() {
    let r = repo();
    std::fs::write(r.path().join("shared.md"), "# shared\n").unwrap();
    git(r.path(), &["add", "shared.md"]);
    git(
        r.path(),
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@a",
            "commit",
            "-qm",
            "shared",
        ],
    );
    let agent = late_commit_agent().replace(
        "quiet_ms = 100\n",
        "quiet_ms = 100\npause_on_conflict = true\n",
    );
    assert!(agent.contains("pause_on_conflict = true"));
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"A","files":["shared.md"],"dependsOn":[]},{"id":"b","title":"B","files":["shared.md"],"dependsOn":[]}"#,
        &agent,
    );
    let (code, out) = run_headless(&manifest, None);
    assert_eq!(code, 0, "{out}");
    let j = journal(r.path());
    let conflicts = messages(&j, "conflict");
    let at = |f: &dyn Fn(&Value) -> bool| j.iter().position(f);
    let held = at(&|e| {
        e["kind"] == "conflict" && e["message"].as_str().unwrap().starts_with("held until")
    })
    .unwrap_or_else(|| panic!("a task is held: {conflicts:?}"));
    let held_task = j[held]["task"].as_str().unwrap().to_string();
    let goes_on = at(&|e| {
        e["task"] == held_task.as_str() && e["message"].as_str().unwrap().starts_with("goes on")
    })
    .unwrap_or_else(|| panic!("the held task goes on: {conflicts:?}"));
    let other_merged = at(&|e| {
        e["task"] != held_task.as_str()
            && e["kind"] == "merge"
            && e["message"].as_str().unwrap().starts_with("merged into")
    })
    .expect("the earlier task merged");
    assert!(
        held < other_merged && other_merged < goes_on,
        "{conflicts:?}"
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for t in tasks(&m) {
        assert_eq!(t["status"], "complete", "{t}");
    }
}

#[test]
fn a_pull_request_is_pushed_opened_and_followed_to_merged_with_a_fake_gh() {
    let r = repo();
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    git(
        r.path(),
        &["remote", "add", "origin", remote.path().to_str().unwrap()],
    );
    let bin_dir = tempfile::tempdir().unwrap();
    let argv_log = bin_dir.path().join("gh-argv.txt");
    let gh = bin_dir.path().join("gh");
    std::fs::write(
        &gh,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\necho --- >> '{}'\ncase \"$2\" in\n  create) echo https://github.com/o/r/pull/42 ;;\n  view) echo '{{\"state\":\"MERGED\",\"reviewDecision\":\"\"}}' ;;\nesac\n",
            argv_log.display(),
            argv_log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "default_agent = \"fake\"\nfinish = \"pr\"\n[pr]\nbase = \"main\"\npoll_ms = 1000\nwait_for_merge = true\n{}",
        fake_profile("fake", "normal")
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","issue":9,"title":"Add notes","files":["notes.md"]}"#,
        &config,
    );
    let (code, out) = run_headless(&manifest, Some(bin_dir.path()));
    assert_eq!(code, 0, "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let t = &tasks(&m)[0];
    assert_eq!(t["status"], "merged", "{t}");
    assert_eq!(t["prNumber"], 42);
    let branch = t["branch"].as_str().unwrap();
    let pushed = git(remote.path(), &["branch", "--list", branch]);
    assert!(
        pushed.contains(branch),
        "the branch is on the remote: {pushed}"
    );
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.contains("pr\ncreate\n--base\nmain\n--head\n"),
        "{argv}"
    );
    assert!(
        argv.contains("--title\nAdd notes (#9)\n--body\nCloses #9"),
        "{argv}"
    );
    assert!(argv.contains("- `notes.md`"), "the files changed: {argv}");
    assert!(
        argv.contains("pr\nview\n42\n--json\nstate,mergedAt,reviewDecision"),
        "{argv}"
    );
}

#[test]
fn a_missing_gh_is_an_error_on_that_task_with_the_fix() {
    let r = repo();
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    git(
        r.path(),
        &["remote", "add", "origin", remote.path().to_str().unwrap()],
    );
    let config = format!(
        "default_agent = \"fake\"\nfinish = \"pr\"\n[pr]\ngh = [\"/nonexistent/gh-cli\"]\n{}",
        fake_profile("fake", "normal")
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"x","files":["n.md"]},{"id":"b","title":"y","files":["m.md"]}"#,
        &config,
    );
    let (code, out) = run_headless(&manifest, None);
    assert_eq!(code, 1, "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for t in tasks(&m) {
        assert_eq!(t["status"], "error", "{t}");
        assert!(
            t["lastVerdict"].as_str().unwrap().contains("install gh"),
            "{t}"
        );
    }
}

#[test]
fn requested_changes_on_the_pull_request_are_the_fix_rounds_prompt() {
    let r = repo();
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    git(
        r.path(),
        &["remote", "add", "origin", remote.path().to_str().unwrap()],
    );
    let bin_dir = tempfile::tempdir().unwrap();
    let views = bin_dir.path().join("views");
    let gh = bin_dir.path().join("gh");
    // The first state poll says changes are requested, later ones that it merged.
    std::fs::write(
        &gh,
        format!(
            r#"#!/bin/sh
case "$2" in
  create) echo https://github.com/o/r/pull/7 ;;
  view)
    if [ "$5" = reviews ]; then
      echo '{{"reviews":[{{"author":{{"login":"kim"}},"state":"CHANGES_REQUESTED","body":"rename foo to bar"}}]}}'
    elif [ -e '{v}' ]; then
      echo '{{"state":"MERGED","mergedAt":"2026-01-01T00:00:00Z","reviewDecision":"APPROVED"}}'
    else
      touch '{v}'
      echo '{{"state":"OPEN","mergedAt":null,"reviewDecision":"CHANGES_REQUESTED"}}'
    fi ;;
esac
"#,
            v = views.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "default_agent = \"fake\"\nfinish = \"pr\"\n[pr]\nbase = \"main\"\npoll_ms = 1000\nwait_for_merge = true\n{}",
        fake_profile("fake", "normal")
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","issue":9,"title":"Add notes","files":["notes.md"]}"#,
        &config,
    );
    let (code, out) = run_headless(&manifest, Some(bin_dir.path()));
    assert_eq!(code, 0, "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let t = &tasks(&m)[0];
    assert_eq!(t["status"], "merged", "{t}");
    assert_eq!(t["prFixRounds"], 1, "{t}");
    let prompt = std::fs::read_to_string(r.path().join(".sy/logs/a.prompt.md")).unwrap();
    assert!(
        prompt.contains("@kim: rename foo to bar") && prompt.contains("#7"),
        "{prompt}"
    );
}

/// A run killed (SIGKILL) during a fix round resumes that round with the reviewer's findings as
/// the prompt, not with the task's own prompt.
#[test]
fn a_run_killed_in_a_fix_round_resumes_it_with_the_findings() {
    let r = repo();
    let out = tempfile::tempdir().unwrap();
    let config = format!(
        r#"default_agent = "sh"
[review]
enabled = true
agent = "reviewer"
block_on = "major"
max_rounds = 2
{}
[agents.sh]
command = ["sh", "-c", "case \"$1\" in *'Fix round'*) printf '%s' \"$1\" > \"$SY_OUT/fix-prompt-$(date +%s%N)\"; if [ ! -e \"$SY_OUT/once\" ]; then touch \"$SY_OUT/once\"; sleep 60; fi; echo fixed >> notes.md;; *) echo work >> notes.md;; esac; git add -A; git commit -qm step", "agent", "{{prompt}}"]
[agents.sh.env]
SY_OUT = "{}"
GIT_AUTHOR_NAME = "a"
GIT_AUTHOR_EMAIL = "a@a"
GIT_COMMITTER_NAME = "a"
GIT_COMMITTER_EMAIL = "a@a"
"#,
        fake_profile("reviewer", "review"),
        out.path().display()
    );
    let manifest = write_project(
        r.path(),
        r#"{"id":"a","title":"Add notes","files":["notes.md"]}"#,
        &config,
    );
    let mut first = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The fix round's agent started and the manifest (saved a moment after a change) says so.
    common::wait_until("the fix round started and was saved", 60, || {
        out.path().join("once").exists()
            && std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("\"status\": \"fix\""))
    });
    // --foreground: the client is the server. Kill it outright, as a crash would.
    first.kill().unwrap();
    first.wait().unwrap();
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(tasks(&m)[0]["status"], "fix", "killed in the fix round");

    let (code, text) = run_headless(&manifest, None);
    assert_eq!(code, 0, "{text}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(tasks(&m)[0]["status"], "complete", "{m}");
    let mut prompts: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("fix-prompt-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    prompts.sort();
    assert_eq!(
        prompts.len(),
        2,
        "the fix round ran before and after the kill"
    );
    for p in &prompts {
        assert!(
            p.contains("Fix round 1") && p.contains("critical") && p.contains("notes.md"),
            "the findings are the prompt each time: {p}"
        );
    }
    let reviews = messages(&journal(r.path()), "review");
    assert!(
        reviews.iter().any(|m| m.contains("review 2: 0 critical")),
        "the second review passes: {reviews:?}"
    );
}
