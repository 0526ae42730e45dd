//! Crash-safety faults (issue 12) against real files and real git repositories: what a kill -9
//! leaves behind is recovered, never reused as if whole.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use switchyard::host::git::{
    commit_all, commits_ahead, ensure_worktree, ensure_worktree_from, init_repo_with,
    recover_stale_state, remove_worktrees, remove_worktrees_at, uncommitted,
};

/// A repository with three files on `main`, and where task t1's worktree goes.
fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init_repo_with(
        &repo,
        &[
            ("README.md", "hi\n"),
            ("src/lib.rs", "fn a() {}\n"),
            ("src/b.rs", "b\n"),
        ],
        "init",
    )
    .unwrap();
    let wt = tmp.path().join("work/worktrees/t1");
    (tmp, repo, wt)
}

/// Sets a file's modification time `age` into the past.
fn age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// The state a kill -9 during the checkout of `git worktree add` leaves: the registration and
/// the `.git` file, no index, only some of the files.
fn kill_mid_checkout(wt: &Path, keep: &[&str]) {
    let gitdir = PathBuf::from(git(wt, &["rev-parse", "--absolute-git-dir"]));
    std::fs::remove_file(gitdir.join("index")).unwrap();
    for f in ["README.md", "src/lib.rs", "src/b.rs"] {
        if !keep.contains(&f) {
            std::fs::remove_file(wt.join(f)).unwrap();
        }
    }
}

/// `common::git` with its output trimmed (these tests compare commit ids).
fn git(dir: &Path, args: &[&str]) -> String {
    common::git(dir, args).trim().to_string()
}

#[test]
fn a_half_made_worktree_is_made_again_not_reused() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    kill_mid_checkout(&wt, &["README.md"]);
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(!info.reused, "a half-made worktree is not reused");
    for f in ["README.md", "src/lib.rs", "src/b.rs"] {
        assert!(wt.join(f).exists(), "{f} checked out");
    }
    assert_eq!(uncommitted(&wt).unwrap(), 0);
    assert_eq!(
        commit_all(&wt, "agent's git add -A").unwrap(),
        None,
        "nothing to commit: no file is deleted on the branch"
    );
    assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 0);
}

#[test]
fn a_file_the_killed_checkout_was_writing_does_not_stop_the_repair() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    kill_mid_checkout(&wt, &["README.md", "src/lib.rs"]);
    std::fs::write(wt.join("src/lib.rs"), "fn a(").unwrap();
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(!info.reused);
    assert_eq!(
        std::fs::read_to_string(wt.join("src/lib.rs")).unwrap(),
        "fn a() {}\n"
    );
    assert_eq!(uncommitted(&wt).unwrap(), 0);
}

#[test]
fn a_half_made_worktree_with_someone_elses_files_is_kept_and_named() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    kill_mid_checkout(&wt, &["README.md"]);
    std::fs::write(wt.join("notes.txt"), "mine").unwrap();
    let e = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap_err();
    assert!(e.to_string().contains("notes.txt"), "{e}");
    assert!(e.to_string().contains("half-made"), "{e}");
    assert_eq!(
        std::fs::read_to_string(wt.join("notes.txt")).unwrap(),
        "mine"
    );
    // An edited tracked file is someone's work too.
    std::fs::remove_file(wt.join("notes.txt")).unwrap();
    std::fs::write(wt.join("README.md"), "hi\nedited\n").unwrap();
    let e = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap_err();
    assert!(e.to_string().contains("README.md"), "{e}");
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md")).unwrap(),
        "hi\nedited\n"
    );
}

#[test]
fn a_complete_worktree_with_uncommitted_work_is_reused_as_it_is() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    std::fs::remove_file(wt.join("src/b.rs")).unwrap();
    std::fs::write(wt.join("new.rs"), "work").unwrap();
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(info.reused);
    assert!(
        !wt.join("src/b.rs").exists(),
        "the agent's deletion is kept"
    );
    assert_eq!(std::fs::read_to_string(wt.join("new.rs")).unwrap(), "work");
}

#[test]
fn a_registration_without_gitdir_from_a_kill_mid_add_is_recovered() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    // Killed before git wrote the registration's gitdir and before the checkout.
    kill_mid_checkout(&wt, &[]);
    std::fs::remove_file(repo.join(".git/worktrees/sy-t1/gitdir")).unwrap();
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(!info.reused);
    assert!(wt.join("src/lib.rs").exists());
    assert!(repo.join(".git/worktrees/sy-t1/gitdir").exists());
}

#[test]
fn a_registration_whose_directory_is_gone_is_recovered() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    std::fs::remove_dir_all(&wt).unwrap();
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(!info.reused);
    assert!(wt.join("README.md").exists());
}

#[test]
fn a_stale_ref_lock_from_a_kill_during_branch_creation_is_recovered() {
    let (_tmp, repo, wt) = repo();
    let lock = repo.join(".git/refs/heads/task/t1.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    age(&lock, Duration::from_secs(3600));
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    assert!(!lock.exists());
    assert_eq!(info.branch, "task/t1");
    assert!(wt.join("README.md").exists());
}

#[test]
fn recover_stale_state_removes_old_locks_and_broken_registrations_only() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    let wt2 = wt.with_file_name("t2");
    ensure_worktree(&repo, "t2", &wt2, "task/t2", "main").unwrap();
    std::fs::remove_dir_all(&wt2).unwrap();
    let old = repo.join(".git/refs/heads/fix/issue-3.lock");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "").unwrap();
    age(&old, Duration::from_secs(600));
    let fresh = repo.join(".git/refs/heads/other.lock");
    std::fs::write(&fresh, "").unwrap();
    let started = SystemTime::now() - Duration::from_secs(60);
    let r = recover_stale_state(&repo, started).unwrap();
    assert_eq!(r.locks, vec![old.clone()]);
    assert_eq!(r.registrations, vec![repo.join(".git/worktrees/sy-t2")]);
    assert!(
        fresh.exists(),
        "a lock taken during this run is not ours to remove"
    );
    assert!(
        repo.join(".git/worktrees/sy-t1").exists(),
        "a healthy worktree is kept"
    );
    assert!(wt.join("README.md").exists());
}

#[test]
fn clean_removes_broken_registrations_and_half_made_directories() {
    let (_tmp, repo, wt) = repo();
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    kill_mid_checkout(&wt, &["src/b.rs"]);
    std::fs::remove_file(repo.join(".git/worktrees/sy-t1/gitdir")).unwrap();
    let lock = repo.join(".git/refs/heads/task/t9.lock");
    std::fs::write(&lock, "").unwrap();
    age(&lock, Duration::from_secs(3600));
    let removed = remove_worktrees_at(&repo, &[("t1".into(), wt.clone())]).unwrap();
    assert!(
        removed.contains(&repo.join(".git/worktrees/sy-t1")),
        "{removed:?}"
    );
    assert!(removed.contains(&wt), "{removed:?}");
    assert!(!wt.exists());
    assert!(!repo.join(".git/worktrees/sy-t1").exists());
    assert!(!lock.exists());
    // And by id alone, a broken registration goes too.
    ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    std::fs::remove_file(repo.join(".git/worktrees/sy-t1/gitdir")).unwrap();
    let removed = remove_worktrees(&repo, &["t1".into()]).unwrap();
    assert_eq!(removed, vec![repo.join(".git/worktrees/sy-t1")]);
    assert!(
        git(&repo, &["branch", "--list", "task/t1"]).contains("task/t1"),
        "branch kept"
    );
}

#[test]
fn an_existing_branch_counts_only_commits_after_the_tasks_first_start() {
    let (_tmp, repo, wt) = repo();
    // The branch exists with two commits made elsewhere.
    git(&repo, &["checkout", "-qb", "fix/issue-5"]);
    for f in ["x.txt", "y.txt"] {
        std::fs::write(repo.join(f), f).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", f]);
    }
    git(&repo, &["checkout", "-q", "main"]);
    let tip = git(&repo, &["rev-parse", "fix/issue-5"]);

    let info = ensure_worktree_from(&repo, "t5", &wt, "fix/issue-5", "main", None).unwrap();
    assert_eq!(info.base_commit, tip, "the branch's tip at the first start");
    assert_eq!(
        commits_ahead(&wt, &info.base_commit).unwrap(),
        0,
        "not the agent's work"
    );
    // The old entry point gives the same for a branch name as base.
    let again = ensure_worktree(&repo, "t5", &wt, "fix/issue-5", "main").unwrap();
    assert_eq!(again.base_commit, tip);

    std::fs::write(wt.join("agent.txt"), "work").unwrap();
    commit_all(&wt, "agent").unwrap();
    // Later starts pass the recorded base back: the agent's commit counts.
    let later = ensure_worktree_from(&repo, "t5", &wt, "fix/issue-5", "main", Some(&tip)).unwrap();
    assert_eq!(later.base_commit, tip);
    assert_eq!(commits_ahead(&wt, &later.base_commit).unwrap(), 1);
    let compat = ensure_worktree(&repo, "t5", &wt, "fix/issue-5", &tip).unwrap();
    assert_eq!(compat.base_commit, tip);
    // Also when the worktree was removed (switchyard clean) and is made again.
    remove_worktrees(&repo, &["t5".into()]).unwrap();
    let remade = ensure_worktree_from(&repo, "t5", &wt, "fix/issue-5", "main", Some(&tip)).unwrap();
    assert!(!remade.reused);
    assert_eq!(commits_ahead(&wt, &remade.base_commit).unwrap(), 1);
}

#[test]
fn a_new_branch_starts_at_base() {
    let (_tmp, repo, wt) = repo();
    let main = git(&repo, &["rev-parse", "main"]);
    let info = ensure_worktree_from(&repo, "t1", &wt, "task/t1", "main", None).unwrap();
    assert_eq!(info.base_commit, main);
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), main);
}

#[test]
fn a_flooding_process_leaves_a_bounded_transcript_with_head_and_tail() {
    use std::io::{Read, Write};
    use switchyard::host::transcript::{Transcript, TranscriptLimits};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/t1.log");
    let limits = TranscriptLimits {
        head_bytes: 4096,
        tail_bytes: 64 * 1024,
    };
    let mut t = Transcript::open(&path, limits).unwrap();
    // 8 MB of random bytes, like a worker gone wrong, then a last line.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "head -c 8000000 /dev/urandom; printf '\\nthe last line\\n'",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        t.write_all(&buf[..n]).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert!(total > 8_000_000);
    let log = std::fs::metadata(&path).unwrap().len();
    let older = std::fs::metadata(t.rotated_path()).unwrap().len();
    assert!(log <= 4096 + 300 + 64 * 1024, "{log}");
    // From the second rotation on, `.log.1` is a whole former `.log`: head, marker, segment.
    assert!(
        older > 4096 + 64 * 1024 && older <= 4096 + 300 + 64 * 1024,
        "{older}"
    );
    let text = std::fs::read(&path).unwrap();
    assert!(
        text.ends_with(b"the last line\n"),
        "the newest output is kept"
    );
}

#[test]
fn a_journal_torn_by_a_killed_writer_is_repaired_and_read() {
    use switchyard::host::journal::{read_journal, Journal};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // A writer killed with -9 after half a line.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '{{\"kind\":\"start\"}}\\n{{\"kind\":\"sp' >> '{}'; sleep 30",
            path.display()
        ))
        .spawn()
        .unwrap();
    while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 22 {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let torn = read_journal(&path).unwrap();
    assert_eq!(torn.entries.len(), 1);
    assert_eq!(torn.skipped, vec![2], "a reader skips the torn line");
    let (mut j, cut) = Journal::open(&path).unwrap();
    assert_eq!(cut, 11);
    j.append(&serde_json::json!({"kind": "resume"})).unwrap();
    let whole = read_journal(&path).unwrap();
    assert_eq!(whole.entries.len(), 2);
    assert!(whole.skipped.is_empty());
}

#[test]
fn a_recorded_base_that_is_gone_says_how_to_recover() {
    let (_tmp, repo, wt) = repo();
    let e = ensure_worktree_from(
        &repo,
        "t1",
        &wt,
        "task/t1",
        "main",
        Some("0123456789012345678901234567890123456789"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("remove \"baseCommit\""), "{e}");
}

#[test]
fn branch_work_reports_commits_after_the_recorded_base_and_uncommitted_files() {
    use switchyard::host::resume::branch_work;
    let (_tmp, repo, wt) = repo();
    let info = ensure_worktree(&repo, "t1", &wt, "task/t1", "main").unwrap();
    let w = branch_work(&wt, &info.base_commit).unwrap();
    assert_eq!((w.commits_ahead, w.uncommitted), (0, 0));
    assert_eq!(w.head_branch.as_deref(), Some("task/t1"));
    std::fs::write(wt.join("a.txt"), "a").unwrap();
    commit_all(&wt, "agent work").unwrap();
    std::fs::write(wt.join("b.txt"), "b").unwrap();
    std::fs::write(wt.join("README.md"), "changed").unwrap();
    let w = branch_work(&wt, &info.base_commit).unwrap();
    assert_eq!((w.commits_ahead, w.uncommitted), (1, 2));
    let e = branch_work(&wt.with_file_name("gone"), &info.base_commit).unwrap_err();
    assert!(e.to_string().contains("gone"), "{e}");
}

#[test]
fn unrecorded_work_names_in_flight_tasks_with_commits_on_their_branch() {
    use switchyard::host::resume::unrecorded_work;
    let (tmp, repo, _) = repo();
    let work = tmp.path().join("work/worktrees");
    let mut tasks = Vec::new();
    for (id, status, commit) in [
        ("done", "running", true),
        ("fresh", "running", false),
        ("over", "complete", true),
        ("stuck", "stuck", true),
    ] {
        let wt = work.join(id);
        let branch = format!("task/{id}");
        let info = ensure_worktree(&repo, id, &wt, &branch, "main").unwrap();
        if commit {
            std::fs::write(wt.join(format!("{id}.txt")), id).unwrap();
            commit_all(&wt, "agent").unwrap();
        }
        tasks.push(serde_json::json!({
            "id": id, "title": id, "files": [format!("{id}.txt")], "status": status,
            "worktree": wt, "branch": branch, "baseCommit": info.base_commit,
        }));
    }
    let manifest = repo.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"project": "p", "phases": [{"name": "p", "tasks": tasks}]}).to_string(),
    )
    .unwrap();
    let (m, plan, config, _) = switchyard::host::runtime::load(&manifest).unwrap();
    let engine = switchyard::core::engine::Engine::new(m, plan, config, 0).unwrap();
    let found: Vec<(String, usize, usize)> = unrecorded_work(&engine)
        .into_iter()
        .map(|u| (u.id, u.work.commits_ahead, u.work.uncommitted))
        .collect();
    assert_eq!(
        found,
        vec![("done".to_string(), 1, 0), ("stuck".to_string(), 1, 0)]
    );
}
