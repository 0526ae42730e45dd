//! `switchyard clean` (the real binary) on a real repository: it removes worktrees and deletes
//! only the task branches whose commits are safe elsewhere (integration branch, base, remote),
//! lists what it kept and why, and `--force` deletes the rest, printing how to recover it.

mod git_fixture;

use git_fixture::Fixture;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard::host::integrate::{ensure_branch, merge_into, MergeMode, DEFAULT_BRANCH};

fn clean(manifest: &Path, force: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("clean").arg(manifest);
    if force {
        cmd.arg("--force");
    }
    let runtime = manifest.parent().unwrap().join("rt");
    let out = cmd.env("SWITCHYARD_RUNTIME_DIR", runtime).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn branch_exists(f: &Fixture, b: &str) -> bool {
    f.git().find_branch(b, git2::BranchType::Local).is_ok()
}

#[test]
fn clean_keeps_unmerged_work_and_says_why() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    f.bare_remote();
    let work = f.tmp.path().join("work");
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6"];
    let tasks: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id":"{id}","title":"{id}","files":["{id}.txt"]}}"#))
        .collect();
    let manifest = f.repo.join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"project":"t","workdir":{:?},"phases":[{{"name":"p1","tasks":[{}]}}]}}"#,
            work.display().to_string(),
            tasks.join(",")
        ),
    )
    .unwrap();
    let wt = |id: &str| -> PathBuf { work.join("worktrees").join(id) };
    for id in ["t1", "t2", "t3", "t4", "t6"] {
        switchyard::host::git::ensure_worktree(&f.repo, id, &wt(id), &format!("task/{id}"), "main")
            .unwrap();
    }
    for id in ["t1", "t2", "t3", "t4"] {
        std::fs::write(wt(id).join(format!("{id}.txt")), "work\n").unwrap();
        f.git_cli(&wt(id), &["add", "-A"]);
        f.git_cli(&wt(id), &["commit", "-qm", id]);
    }
    // t1 merged into the integration branch, t2 pushed, t3 only local, t4 with uncommitted
    // changes, t5 never started, t6 started but committed nothing.
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t1",
        MergeMode::FfOrMerge,
        "m",
    )
    .unwrap();
    switchyard::host::pr::push(&f.repo, "origin", "task/t2").unwrap();
    std::fs::write(wt("t4").join("unsaved.txt"), "x\n").unwrap();
    let t3_tip = f.tip("task/t3").to_string();

    let out = clean(&manifest, false);
    assert!(
        out.contains(&format!(
            "deleted branch task/t1: its commits are in {DEFAULT_BRANCH}"
        )),
        "{out}"
    );
    assert!(
        out.contains("deleted branch task/t2: its commits are in origin/task/t2"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "deleted branch task/t6: its commits are in {DEFAULT_BRANCH}"
        )),
        "{out}"
    );
    assert!(
        out.contains("kept branch task/t3: 1 commit(s) in neither switchyard/integration, the base (HEAD) nor a remote"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "kept worktree {}: 1 file(s) with uncommitted changes",
            wt("t4").display()
        )),
        "{out}"
    );
    assert!(out.contains("kept the integration branch"), "{out}");
    assert!(
        out.contains("4 worktree(s) removed, 1 kept; 3 branch(es) deleted, 1 kept"),
        "{out}"
    );
    assert!(!branch_exists(&f, "task/t1") && !branch_exists(&f, "task/t2"));
    assert!(!branch_exists(&f, "task/t6"));
    assert!(branch_exists(&f, "task/t3") && branch_exists(&f, "task/t4"));
    assert!(wt("t4").join("unsaved.txt").exists() && !wt("t3").exists());
    assert!(branch_exists(&f, DEFAULT_BRANCH));

    let out = clean(&manifest, true);
    assert!(
        out.contains(&format!(
            "deleted branch task/t3: with 1 commit(s) in no other branch; recover with `git branch task/t3 {t3_tip}`"
        )),
        "{out}"
    );
    assert!(!wt("t4").exists(), "{out}");
    assert!(!branch_exists(&f, "task/t3") && !branch_exists(&f, "task/t4"));
    // The printed recovery works: the commit is still in the object database.
    f.git_cli(&f.repo, &["branch", "task/t3", &t3_tip]);
    assert_eq!(f.read("task/t3", "t3.txt").as_deref(), Some("work\n"));
}

#[test]
fn clean_reads_the_integration_branch_from_merge_into() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let work = f.tmp.path().join("work");
    let manifest = f.repo.join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"project":"t","workdir":{:?},"phases":[{{"name":"p1","tasks":[{{"id":"t1","title":"t1","files":["b.txt"]}}]}}]}}"#,
            work.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        f.repo.join("switchyard.toml"),
        "[merge]\ninto = \"release/next\"\n",
    )
    .unwrap();
    let wt = work.join("worktrees/t1");
    switchyard::host::git::ensure_worktree(&f.repo, "t1", &wt, "task/t1", "main").unwrap();
    std::fs::write(wt.join("b.txt"), "b\n").unwrap();
    f.git_cli(&wt, &["add", "-A"]);
    f.git_cli(&wt, &["commit", "-qm", "t1"]);
    ensure_branch(&f.repo, "release/next", "main").unwrap();
    merge_into(
        &f.repo,
        "release/next",
        "task/t1",
        MergeMode::FfOrMerge,
        "m",
    )
    .unwrap();
    let out = clean(&manifest, false);
    assert!(
        out.contains("deleted branch task/t1: its commits are in release/next"),
        "{out}"
    );
    assert!(
        out.contains("kept the integration branch release/next"),
        "{out}"
    );
    assert!(!branch_exists(&f, "task/t1") && branch_exists(&f, "release/next"));
}
