//! End-to-end: a fan-out review with roles, read-only reviewers beside each other, their final
//! messages (from the file the agent writes and from the transcript) merged into one ranked
//! findings list that becomes the next task's context. The real binary, real git, the fake agent.

mod common;

use common::{bin, git, journal, repo};
use serde_json::Value;
use std::process::Command;

fn fake(name: &str, scenario: &str, final_message: bool) -> String {
    let file = if final_message {
        r#""--final-message", "{final_message}", "#
    } else {
        ""
    };
    format!(
        "[agents.{name}]\ncommand = [\"{{switchyard}}\", \"fake-agent\", \"--scenario\", \"{scenario}\", \"--speed\", \"1\", {file}\"{{prompt}}\"]\n"
    )
}

#[test]
fn a_fan_out_review_merges_three_lenses_into_the_fixers_context() {
    let r = repo();
    let dir = r.path();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.rs"), "pub fn count() {}\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "a.rs"]);
    let manifest = dir.join("manifest.json");
    let reviewer = |id: &str, lens: &str, agent: &str| {
        serde_json::json!({"id": id, "title": "Review the counter", "role": "reviewer", "lens": lens,
                           "reads": ["src/a.rs"], "agent": agent})
    };
    let m = serde_json::json!({
        "project": "fanout", "workdir": ".sy",
        "phases": [
            {"name": "Build", "tasks": [{"id": "w", "title": "Write the counter", "files": ["src/a.rs"], "agent": "fake"}]},
            {"name": "Review", "tasks": [
                reviewer("r1", "correctness", "fake-review"),
                reviewer("r2", "risks", "fake-review"),
                reviewer("r3", "style", "fake-review-screen"),
            ]},
            {"name": "Fix", "tasks": [{"id": "f", "title": "Fix the findings", "writes": ["src/a.rs"],
                                        "context": ["r1", "r2", "r3"], "agent": "fake"}]}
        ]
    });
    std::fs::write(&manifest, m.to_string()).unwrap();
    let config = format!(
        "default_agent = \"fake\"\n[heal]\nbackoff_ms = 100\nmax_attempts = 2\n{}{}{}",
        fake("fake", "normal", false),
        fake("fake-review", "review-findings", true),
        fake("fake-review-screen", "review-findings", false),
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();

    let plan = Command::new(bin())
        .arg("plan")
        .arg(&manifest)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("r1 ∥ r2 ∥ r3"), "{plan}");
    assert!(
        plan.contains("f after w (same file src/a.rs), r1 (context), r2 (context), r3 (context)"),
        "{plan}"
    );

    let out = Command::new(bin())
        .args(["run", "--headless", "--foreground"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for p in m["phases"].as_array().unwrap() {
        for t in p["tasks"].as_array().unwrap() {
            assert_eq!(t["status"], "complete", "{t}");
        }
    }
    let logs = dir.join(".sy/logs");

    // The reviewers ran side by side (read-only: they only read src/a.rs) and committed nothing.
    let j = journal(&logs);
    let first_exit = j
        .iter()
        .position(|e| e["kind"] == "exit" && e["task"].as_str().is_some_and(|t| t.starts_with('r')))
        .unwrap();
    for id in ["r1", "r2", "r3"] {
        let start = j
            .iter()
            .position(|e| e["kind"] == "start" && e["task"] == id)
            .unwrap();
        assert!(
            start < first_exit,
            "{id} started before the first reviewer ended"
        );
        let wt = dir.join(".sy/worktrees").join(id);
        assert_eq!(
            git(&wt, &["rev-list", "--count", "HEAD"]).trim(),
            "2",
            "{id} made no commit"
        );
    }
    // The reviewer's prompt: its role's preamble, lens and scope, then the task.
    let prompt = std::fs::read_to_string(logs.join("r2.prompt.md")).unwrap();
    assert!(
        prompt.starts_with("CONTEXT: WORKER\nROLE: reviewer"),
        "{prompt}"
    );
    assert!(
        prompt.contains("\nLENS: risks\nSCOPE: read-only (do not edit or commit files)\nTASK: "),
        "{prompt}"
    );

    // Final messages: r1 wrote its own file; r3's came from the transcript; both journaled.
    let r1 = std::fs::read_to_string(logs.join("r1.final.md")).unwrap();
    assert!(
        r1.starts_with("Review of src/a.rs through the correctness lens"),
        "{r1}"
    );
    let r3 = std::fs::read_to_string(logs.join("r3.final.md")).unwrap();
    assert!(
        r3.starts_with("Review of src/a.rs through the style lens: 2 findings."),
        "{r3}"
    );
    assert!(
        r3.trim_end().ends_with("```") && !r3.contains("reading src/a.rs"),
        "{r3}"
    );
    let from = |id: &str| {
        j.iter()
            .find(|e| e["kind"] == "final" && e["task"] == id)
            .map(|e| e["data"]["from"].as_str().unwrap().to_string())
    };
    assert_eq!(from("r1").as_deref(), Some("the agent's file"));
    assert_eq!(from("r3").as_deref(), Some("the transcript"));
    assert!(logs.join("w.final.md").exists());

    // One ranked, de-duplicated list, kept and given to the fixer.
    let findings = std::fs::read_to_string(logs.join("f.context-findings.md")).unwrap();
    let list: Vec<&str> = findings.lines().filter(|l| l.starts_with("- **")).collect();
    assert_eq!(
        list,
        [
            "- **critical** src/a.rs:1: Empty input is not handled. (r1, r2, r3)",
            "- **major** src/a.rs:2: correctness: name the unit of the count. (r1)",
            "- **major** src/a.rs:2: risks: name the unit of the count. (r2)",
            "- **minor** src/a.rs:2: style: name the unit of the count. (r3)",
        ],
        "{findings}"
    );
    let prompt = std::fs::read_to_string(logs.join("f.prompt.md")).unwrap();
    assert!(
        prompt.contains("# Context from earlier tasks\n\n## Review findings\n"),
        "{prompt}"
    );
    assert!(
        prompt.contains("- **critical** src/a.rs:1: Empty input is not handled. (r1, r2, r3)"),
        "{prompt}"
    );

    // The report points at both.
    let report = std::fs::read_to_string(logs.join("report.md")).unwrap();
    assert!(report.contains("f.context-findings.md"), "{report}");
    assert!(report.contains("r3.final.md"), "{report}");
}
