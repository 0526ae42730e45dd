//! The integration branch on real repositories: ensure_branch, predict and merge_into for clean,
//! fast-forward, conflicting, up-to-date, diverged and checked-out targets.

mod git_fixture;

use git_fixture::{lines, Fixture};
use switchyard::host::integrate::{
    ensure_branch, merge_into, predict, MergeMode, MergeResult, DEFAULT_BRANCH,
};

fn ten() -> String {
    lines("line", 10)
}

/// `ten()` with line `n` (1-based) replaced by `with`.
fn edit(n: usize, with: &str) -> String {
    (1..=10)
        .map(|i| {
            if i == n {
                format!("{with}\n")
            } else {
                format!("line{i}\n")
            }
        })
        .collect()
}

#[test]
fn ensure_branch_creates_once_and_checks_the_name() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let main = f.tip("main").to_string();
    assert_eq!(
        ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap(),
        main
    );
    f.commit(DEFAULT_BRANCH, &[("b.txt", Some("b\n"))], "on integration");
    let moved = f.tip(DEFAULT_BRANCH).to_string();
    assert_eq!(
        ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap(),
        moved,
        "an existing branch is left where it is"
    );
    let e = ensure_branch(&f.repo, "bad..name", "main")
        .unwrap_err()
        .to_string();
    assert!(e.contains("merge.into"), "{e}");
    let e = ensure_branch(&f.repo, "x", "no-such-rev")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-rev"), "{e}");
}

#[test]
fn clean_merge_is_predicted_empty_and_makes_a_merge_commit() {
    let f = Fixture::new(&[("a.txt", &ten()), ("b.txt", &ten())]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    f.commit(DEFAULT_BRANCH, &[("a.txt", Some(&edit(2, "A")))], "a");
    f.commit("task/t1", &[("b.txt", Some(&edit(9, "B")))], "b");
    assert_eq!(predict(&f.repo, DEFAULT_BRANCH, "task/t1").unwrap(), vec![]);
    let before = f.tip(DEFAULT_BRANCH);
    let r = merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t1",
        MergeMode::FfOrMerge,
        "merge t1",
    )
    .unwrap();
    let MergeResult::Merged {
        commit,
        fast_forward,
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(!fast_forward);
    assert_eq!(commit, f.tip(DEFAULT_BRANCH).to_string());
    let g = f.git();
    let c = g.find_commit(f.tip(DEFAULT_BRANCH)).unwrap();
    assert_eq!(
        c.parent_ids().collect::<Vec<_>>(),
        vec![before, f.tip("task/t1")]
    );
    assert_eq!(c.message().unwrap(), "merge t1");
    assert_eq!(f.read(DEFAULT_BRANCH, "a.txt").unwrap(), edit(2, "A"));
    assert_eq!(f.read(DEFAULT_BRANCH, "b.txt").unwrap(), edit(9, "B"));
    // The user's checkout (main) did not move.
    assert_eq!(f.read("main", "a.txt").unwrap(), ten());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        ten()
    );
    // Merging it again: up to date.
    assert_eq!(
        merge_into(
            &f.repo,
            DEFAULT_BRANCH,
            "task/t1",
            MergeMode::FfOrMerge,
            "x"
        )
        .unwrap(),
        MergeResult::UpToDate
    );
}

#[test]
fn fast_forward_in_each_mode() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    let t1 = f.commit("task/t1", &[("b.txt", Some("b\n"))], "b");
    for mode in [MergeMode::FastForward, MergeMode::FfOrMerge] {
        f.git()
            .reference(
                &format!("refs/heads/{DEFAULT_BRANCH}"),
                f.tip("main"),
                true,
                "reset",
            )
            .unwrap();
        assert_eq!(
            merge_into(&f.repo, DEFAULT_BRANCH, "task/t1", mode, "m").unwrap(),
            MergeResult::Merged {
                commit: t1.to_string(),
                fast_forward: true
            },
            "{mode:?}"
        );
    }
    f.git()
        .reference(
            &format!("refs/heads/{DEFAULT_BRANCH}"),
            f.tip("main"),
            true,
            "reset",
        )
        .unwrap();
    let r = merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t1",
        MergeMode::MergeCommit,
        "m",
    )
    .unwrap();
    assert!(
        matches!(
            r,
            MergeResult::Merged {
                fast_forward: false,
                ..
            }
        ),
        "{r:?}"
    );
    let g = f.git();
    let c = g.find_commit(f.tip(DEFAULT_BRANCH)).unwrap();
    assert_eq!(c.parent_count(), 2, "--no-ff makes a merge commit");
}

#[test]
fn up_to_date_when_the_source_is_already_in() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    f.commit(DEFAULT_BRANCH, &[("b.txt", Some("b\n"))], "b");
    let tip = f.tip(DEFAULT_BRANCH);
    for src in ["main", DEFAULT_BRANCH] {
        assert_eq!(
            merge_into(&f.repo, DEFAULT_BRANCH, src, MergeMode::MergeCommit, "m").unwrap(),
            MergeResult::UpToDate
        );
    }
    assert_eq!(f.tip(DEFAULT_BRANCH), tip);
    assert_eq!(predict(&f.repo, "main", DEFAULT_BRANCH).unwrap(), vec![]);
}

#[test]
fn conflicting_edits_give_files_ranges_and_markers_and_change_nothing() {
    let f = Fixture::new(&[("src/a.rs", &ten()), ("b.txt", "b\n")]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    f.commit(
        "task/t1",
        &[("src/a.rs", Some(&edit(4, "ONE")))],
        "t1 edits line 4",
    );
    f.commit(
        "task/t2",
        &[("src/a.rs", Some(&edit(4, "TWO"))), ("b.txt", Some("b2\n"))],
        "t2 edits line 4",
    );
    let c = predict(&f.repo, "task/t1", "task/t2").unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].path, "src/a.rs");
    assert_eq!(c[0].ours, vec![(4, 4)]);
    assert_eq!(c[0].theirs, vec![(4, 4)]);
    assert!(
        c[0].hunks
            .contains("<<<<<<< task/t1\nONE\n=======\nTWO\n>>>>>>> task/t2\n"),
        "{}",
        c[0].hunks
    );
    assert!(
        c[0].hunks.starts_with("@@ merged line 4\n"),
        "{}",
        c[0].hunks
    );
    // t1 merges first (fast-forward), then t2 conflicts with the integration branch.
    merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t1",
        MergeMode::FfOrMerge,
        "m",
    )
    .unwrap();
    let tip = f.tip(DEFAULT_BRANCH);
    let r = merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t2",
        MergeMode::FfOrMerge,
        "m",
    )
    .unwrap();
    let MergeResult::Conflicts(c) = r else {
        panic!("{r:?}")
    };
    assert_eq!(c[0].path, "src/a.rs");
    assert!(c[0]
        .hunks
        .contains(&format!("<<<<<<< {DEFAULT_BRANCH}\nONE")));
    assert_eq!(f.tip(DEFAULT_BRANCH), tip, "nothing moved");
    // Fast-forward only: diverged, with what a merge would conflict on.
    let r = merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t2",
        MergeMode::FastForward,
        "m",
    )
    .unwrap();
    assert!(
        matches!(&r, MergeResult::Diverged { conflicts } if conflicts.len() == 1),
        "{r:?}"
    );
}

#[test]
fn diverged_without_conflicts_in_fast_forward_mode() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    f.commit(DEFAULT_BRANCH, &[("x.txt", Some("x\n"))], "x");
    f.commit("task/t1", &[("y.txt", Some("y\n"))], "y");
    let tip = f.tip(DEFAULT_BRANCH);
    assert_eq!(
        merge_into(
            &f.repo,
            DEFAULT_BRANCH,
            "task/t1",
            MergeMode::FastForward,
            "m"
        )
        .unwrap(),
        MergeResult::Diverged { conflicts: vec![] }
    );
    assert_eq!(f.tip(DEFAULT_BRANCH), tip);
}

#[test]
fn ranges_count_lines_of_each_side_not_of_the_merged_text() {
    // ours inserts 3 lines at the top (merges cleanly) and edits line 8; theirs edits line 8.
    let f = Fixture::new(&[("a.txt", &ten())]);
    let ours: String = format!("new1\nnew2\nnew3\n{}", edit(8, "OURS"));
    f.commit("task/o", &[("a.txt", Some(&ours))], "o");
    f.commit("task/t", &[("a.txt", Some(&edit(8, "THEIRS")))], "t");
    let c = predict(&f.repo, "task/o", "task/t").unwrap();
    assert_eq!(c[0].ours, vec![(11, 11)]);
    assert_eq!(c[0].theirs, vec![(8, 8)]);
}

#[test]
fn delete_against_modify_and_add_against_add() {
    let f = Fixture::new(&[("a.txt", &ten())]);
    f.commit("task/del", &[("a.txt", None)], "delete");
    f.commit("task/mod", &[("a.txt", Some(&edit(1, "M")))], "modify");
    let c = predict(&f.repo, "task/del", "task/mod").unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].path, "a.txt");
    assert_eq!(c[0].ours, vec![]);
    assert_eq!(c[0].theirs, vec![(1, 10)]);
    assert_eq!(c[0].hunks, "deleted in task/del, changed in task/mod");

    f.commit("task/add1", &[("new.txt", Some("one\ntwo\n"))], "add");
    f.commit("task/add2", &[("new.txt", Some("uno\n"))], "add");
    let c = predict(&f.repo, "task/add1", "task/add2").unwrap();
    assert_eq!(c[0].path, "new.txt");
    assert_eq!(c[0].ours, vec![(1, 2)]);
    assert_eq!(c[0].theirs, vec![(1, 1)]);
    assert!(c[0].hunks.contains("<<<<<<< task/add1"), "{}", c[0].hunks);
}

#[test]
fn hunk_text_is_bounded() {
    let f = Fixture::new(&[("big.txt", &lines("l", 3000))]);
    f.commit("task/a", &[("big.txt", Some(&lines("a", 3000)))], "a");
    f.commit("task/b", &[("big.txt", Some(&lines("b", 3000)))], "b");
    let c = predict(&f.repo, "task/a", "task/b").unwrap();
    assert!(
        c[0].hunks.len() <= switchyard::host::integrate::MAX_HUNK_BYTES + 40,
        "{}",
        c[0].hunks.len()
    );
    assert!(c[0].hunks.ends_with(" more bytes\n"));
    assert_eq!(c[0].ours, vec![(1, 3000)]);
}

#[test]
fn a_checked_out_target_is_updated_when_clean_and_refused_when_dirty() {
    // The user's working copy has `main` checked out; the run integrates into main.
    let f = Fixture::new(&[("a.txt", &ten())]);
    f.commit("task/t1", &[("a.txt", Some(&edit(1, "T1")))], "t1");
    let r = merge_into(&f.repo, "main", "task/t1", MergeMode::FfOrMerge, "m").unwrap();
    assert!(
        matches!(
            r,
            MergeResult::Merged {
                fast_forward: true,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        edit(1, "T1"),
        "the clean checkout follows its branch"
    );
    assert_eq!(switchyard::host::git::uncommitted(&f.repo).unwrap(), 0);
    assert_eq!(f.git_cli(&f.repo, &["status", "--porcelain"]), "");

    // An untracked file (a manifest kept in the repository) does not stop it, and stays.
    std::fs::write(f.repo.join("manifest.json"), "{}").unwrap();
    f.commit("task/t2", &[("b.txt", Some("b\n"))], "t2");
    let r = merge_into(&f.repo, "main", "task/t2", MergeMode::FfOrMerge, "m").unwrap();
    assert!(matches!(r, MergeResult::Merged { .. }), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(f.repo.join("b.txt")).unwrap(),
        "b\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.repo.join("manifest.json")).unwrap(),
        "{}"
    );

    // A changed tracked file: refused, naming the worktree and the fix; nothing moves.
    f.commit("task/t3", &[("c.txt", Some("c\n"))], "t3");
    std::fs::write(f.repo.join("a.txt"), "mine\n").unwrap();
    let tip = f.tip("main");
    let e = merge_into(&f.repo, "main", "task/t3", MergeMode::FfOrMerge, "m")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&f.repo.display().to_string()), "{e}");
    assert!(
        e.contains("1 tracked file(s)") && e.contains("merge.into"),
        "{e}"
    );
    assert_eq!(f.tip("main"), tip);
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "mine\n"
    );
    assert!(!f.repo.join("c.txt").exists());

    // An untracked file in the way of an incoming one: refused, nothing moves or is overwritten.
    f.git_cli(&f.repo, &["checkout", "-q", "--", "a.txt"]);
    std::fs::write(f.repo.join("c.txt"), "my own c\n").unwrap();
    let e = merge_into(&f.repo, "main", "task/t3", MergeMode::FfOrMerge, "m")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot follow"), "{e}");
    assert_eq!(f.tip("main"), tip);
    assert_eq!(
        std::fs::read_to_string(f.repo.join("c.txt")).unwrap(),
        "my own c\n"
    );
}

#[test]
fn a_target_checked_out_in_a_linked_worktree_gets_a_merge_commit_there() {
    let f = Fixture::new(&[("a.txt", &ten())]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    let wt = f.tmp.path().join("integration-wt");
    f.git_cli(
        &f.repo,
        &[
            "worktree",
            "add",
            "-q",
            wt.to_str().unwrap(),
            DEFAULT_BRANCH,
        ],
    );
    f.commit(DEFAULT_BRANCH, &[("x.txt", Some("x\n"))], "x");
    // The checkout is now behind its own branch (we committed without it): bring it level.
    f.git_cli(&wt, &["reset", "-q", "--hard", DEFAULT_BRANCH]);
    f.commit("task/t1", &[("a.txt", Some(&edit(3, "T1")))], "t1");
    let r = merge_into(
        &f.repo,
        DEFAULT_BRANCH,
        "task/t1",
        MergeMode::FfOrMerge,
        "m",
    )
    .unwrap();
    assert!(
        matches!(
            r,
            MergeResult::Merged {
                fast_forward: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join("a.txt")).unwrap(),
        edit(3, "T1")
    );
    assert!(wt.join("x.txt").exists());
    assert_eq!(f.git_cli(&wt, &["status", "--porcelain"]), "");
    // main's checkout is untouched.
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        ten()
    );
}

#[test]
fn the_predictor_caches_per_commit_pair_and_sees_new_commits() {
    let f = Fixture::new(&[("a.txt", &ten())]);
    f.commit("task/t1", &[("a.txt", Some(&edit(4, "ONE")))], "t1");
    f.commit("task/t2", &[("b.txt", Some("b\n"))], "t2");
    let mut p = switchyard::host::integrate::Predictor::open(&f.repo).unwrap();
    assert_eq!(p.predict("task/t1", "task/t2").unwrap(), vec![]);
    assert_eq!(p.predict("task/t1", "task/t2").unwrap(), vec![]);
    // t2 moves on and now touches line 4: the new pair is merged afresh.
    f.commit("task/t2", &[("a.txt", Some(&edit(4, "TWO")))], "t2 again");
    let c = p.predict("task/t1", "task/t2").unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c, predict(&f.repo, "task/t1", "task/t2").unwrap());
}

#[test]
fn a_missing_target_is_a_clear_error() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let e = merge_into(&f.repo, "nope", "main", MergeMode::FfOrMerge, "m")
        .unwrap_err()
        .to_string();
    assert!(e.contains("create it first"), "{e}");
}

/// Measures `predict` on a repository of 400 files where two branches each change 20 files and
/// conflict on one: run with `cargo test --release --test git_integrate measure -- --ignored
/// --nocapture`. A measurement, not a timed test.
#[test]
#[ignore]
fn measure_predict() {
    let files: Vec<(String, String)> = (0..400)
        .map(|i| {
            (
                format!("src/m{}/f{i}.rs", i % 20),
                lines(&format!("f{i} "), 200),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let f = Fixture::new(&refs);
    let change = |who: &str, range: std::ops::Range<usize>| -> Vec<(String, String)> {
        range
            .map(|i| {
                let mut text = files[i].1.clone();
                text = text.replacen(&format!("f{i} 100\n"), &format!("{who} 100\n"), 1);
                (files[i].0.clone(), text)
            })
            .collect()
    };
    let mut a = change("A", 0..20);
    a.extend(change("A", 100..101));
    let b = change("B", 100..120);
    let ca: Vec<(&str, Option<&str>)> = a
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    let cb: Vec<(&str, Option<&str>)> = b
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    f.commit("task/a", &ca, "a");
    f.commit("task/b", &cb, "b");
    let c = change("C", 200..220);
    let cc: Vec<(&str, Option<&str>)> = c
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    f.commit("task/c", &cc, "c");
    let n = 50;
    let t = std::time::Instant::now();
    let mut found = 0;
    for _ in 0..n {
        found = predict(&f.repo, "task/a", "task/b").unwrap().len();
    }
    let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    assert_eq!(found, 1);
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(predict(&f.repo, "task/a", "task/c").unwrap().is_empty());
    }
    let clean = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(predict(&f.repo, "task/a", "main").unwrap().is_empty());
    }
    let ancestor = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let mut p = switchyard::host::integrate::Predictor::open(&f.repo).unwrap();
    assert_eq!(p.predict("task/a", "task/b").unwrap().len(), 1);
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert_eq!(p.predict("task/a", "task/b").unwrap().len(), 1);
    }
    let cached = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        git2::Repository::open(&f.repo).unwrap();
    }
    let open = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!("predict, 400 files x 200 lines, 20 changed per side: {per:.2} ms with one conflict, {clean:.2} ms clean, {ancestor:.3} ms when one side holds the other, {cached:.3} ms cached (Predictor), of which opening the repository {open:.3} ms (mean of {n})");
    // Uncommitted edits of 20 files in the working copy (main): snapshot, then predict.
    for (path, text) in &b {
        std::fs::write(f.repo.join(path), text.replace("B 100", "W 100")).unwrap();
    }
    let t = std::time::Instant::now();
    let mut snap = String::new();
    for _ in 0..n {
        snap = switchyard::host::integrate::snapshot_worktree(&f.repo).unwrap();
    }
    let snap_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    assert_eq!(predict(&f.repo, &snap, "task/a").unwrap().len(), 1);
    println!("snapshot_worktree with 20 files changed, 400 tracked: {snap_ms:.2} ms (mean of {n})");
}

mod resolve_round {
    use super::*;
    use switchyard::host::integrate::{merge_in_worktree, WorktreeMerge};

    fn task_worktree(f: &Fixture, id: &str) -> std::path::PathBuf {
        let wt = f.tmp.path().join("work").join(id);
        switchyard::host::git::ensure_worktree(&f.repo, id, &wt, &format!("task/{id}"), "main")
            .unwrap();
        wt
    }

    fn commit_file(f: &Fixture, wt: &std::path::Path, file: &str, text: &str) {
        std::fs::write(wt.join(file), text).unwrap();
        f.git_cli(wt, &["add", "-A"]);
        f.git_cli(wt, &["commit", "-qm", file]);
    }

    #[test]
    fn conflicts_are_left_for_the_agent_and_its_commit_completes_the_merge() {
        let f = Fixture::new(&[("a.txt", &ten())]);
        ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
        f.commit(
            DEFAULT_BRANCH,
            &[("a.txt", Some(&edit(4, "INTEGRATED")))],
            "other task",
        );
        let wt = task_worktree(&f, "t1");
        commit_file(&f, &wt, "a.txt", &edit(4, "MINE"));
        let r = merge_in_worktree(&wt, DEFAULT_BRANCH, "merge integration").unwrap();
        let WorktreeMerge::Conflicts(c) = r else {
            panic!("{r:?}")
        };
        assert_eq!(c[0].path, "a.txt");
        assert_eq!(
            (c[0].ours.clone(), c[0].theirs.clone()),
            (vec![(4, 4)], vec![(4, 4)])
        );
        let text = std::fs::read_to_string(wt.join("a.txt")).unwrap();
        assert!(
            text.contains("<<<<<<< ") && text.contains("MINE\n=======\nINTEGRATED\n>>>>>>> "),
            "{text}"
        );
        assert!(f
            .git_cli(&wt, &["status", "--porcelain"])
            .contains("UU a.txt"));
        assert_eq!(
            merge_in_worktree(&wt, DEFAULT_BRANCH, "again").unwrap(),
            WorktreeMerge::InProgress
        );
        // The agent resolves and commits; the commit is the merge.
        std::fs::write(wt.join("a.txt"), edit(4, "BOTH")).unwrap();
        f.git_cli(&wt, &["add", "-A"]);
        f.git_cli(&wt, &["commit", "-q", "--no-edit"]);
        let g = f.git();
        let tip = g.find_commit(f.tip("task/t1")).unwrap();
        assert_eq!(tip.parent_count(), 2);
        assert_eq!(tip.parent_id(1).unwrap(), f.tip(DEFAULT_BRANCH));
        // Now it lands on the integration branch without a conflict.
        let r = merge_into(
            &f.repo,
            DEFAULT_BRANCH,
            "task/t1",
            MergeMode::FfOrMerge,
            "m",
        )
        .unwrap();
        assert!(
            matches!(
                r,
                MergeResult::Merged {
                    fast_forward: true,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn clean_merge_commits_fast_forward_moves_and_dirty_is_refused() {
        let f = Fixture::new(&[("a.txt", &ten())]);
        ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
        f.commit(DEFAULT_BRANCH, &[("x.txt", Some("x\n"))], "other task");
        // Nothing of its own yet: fast-forward.
        let wt0 = task_worktree(&f, "t0");
        let r = merge_in_worktree(&wt0, DEFAULT_BRANCH, "m").unwrap();
        assert_eq!(
            r,
            WorktreeMerge::FastForward {
                commit: f.tip(DEFAULT_BRANCH).to_string()
            }
        );
        assert!(wt0.join("x.txt").exists());
        assert_eq!(f.git_cli(&wt0, &["status", "--porcelain"]), "");
        assert_eq!(
            merge_in_worktree(&wt0, DEFAULT_BRANCH, "m").unwrap(),
            WorktreeMerge::UpToDate
        );
        // Its own commit on another file: a merge commit, files updated, state clean.
        let wt = task_worktree(&f, "t1");
        commit_file(&f, &wt, "b.txt", "b\n");
        let r = merge_in_worktree(&wt, DEFAULT_BRANCH, "merge integration").unwrap();
        let WorktreeMerge::Merged { commit } = r else {
            panic!("{r:?}")
        };
        assert_eq!(commit, f.tip("task/t1").to_string());
        assert!(wt.join("x.txt").exists() && wt.join("b.txt").exists());
        assert_eq!(f.git_cli(&wt, &["status", "--porcelain"]), "");
        let gd = f.git_cli(&wt, &["rev-parse", "--git-dir"]);
        assert!(!std::path::Path::new(gd.trim()).join("MERGE_HEAD").exists());
        // Uncommitted work: refused, nothing touched.
        f.commit(DEFAULT_BRANCH, &[("y.txt", Some("y\n"))], "more");
        std::fs::write(wt.join("wip.txt"), "wip").unwrap();
        let e = merge_in_worktree(&wt, DEFAULT_BRANCH, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("commit them first"), "{e}");
        assert!(!wt.join("y.txt").exists());
    }
}

#[test]
fn a_snapshot_sees_uncommitted_work_and_changes_nothing() {
    use switchyard::host::integrate::snapshot_worktree;
    let f = Fixture::new(&[("a.txt", &ten()), ("gone.txt", "g\n")]);
    ensure_branch(&f.repo, DEFAULT_BRANCH, "main").unwrap();
    f.commit(
        DEFAULT_BRANCH,
        &[("a.txt", Some(&edit(4, "INTEGRATED")))],
        "other task",
    );
    let wt = f.tmp.path().join("work/t1");
    switchyard::host::git::ensure_worktree(&f.repo, "t1", &wt, "task/t1", "main").unwrap();
    assert_eq!(
        snapshot_worktree(&wt).unwrap(),
        f.tip("task/t1").to_string(),
        "nothing changed: HEAD itself"
    );
    std::fs::write(wt.join("a.txt"), edit(4, "MINE")).unwrap();
    std::fs::write(wt.join("new.txt"), "new\n").unwrap();
    std::fs::remove_file(wt.join("gone.txt")).unwrap();
    let status = f.git_cli(&wt, &["status", "--porcelain"]);
    let refs = f.git_cli(&f.repo, &["for-each-ref"]);
    let snap = snapshot_worktree(&wt).unwrap();
    assert_eq!(predict(&f.repo, "task/t1", DEFAULT_BRANCH).unwrap(), vec![]);
    let c = predict(&f.repo, &snap, DEFAULT_BRANCH).unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].path.as_str(), c[0].ours.clone()),
        ("a.txt", vec![(4, 4)])
    );
    assert_eq!(f.read(&snap, "new.txt").as_deref(), Some("new\n"));
    assert_eq!(f.read(&snap, "gone.txt"), None);
    let g = f.git();
    let snap_commit = g.find_commit(git2::Oid::from_str(&snap).unwrap()).unwrap();
    assert_eq!(snap_commit.parent_id(0).unwrap(), f.tip("task/t1"));
    // The worktree, its index and the refs are as they were.
    assert_eq!(f.git_cli(&wt, &["status", "--porcelain"]), status);
    assert_eq!(f.git_cli(&f.repo, &["for-each-ref"]), refs);
}
