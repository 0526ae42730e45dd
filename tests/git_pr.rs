//! Pushing to a bare repository in a temp dir and driving a fake `gh` that records its argv.

mod git_fixture;

use git_fixture::Fixture;
use std::path::Path;
use switchyard::host::pr::{self, PrError, PrSpec, PrState};

/// A fake `gh` in `dir`: each call writes its argv (NUL-separated) to `dir/calls/N`, then acts
/// on `dir/mode`: `ok` (answers like gh 2.x), `auth` (exit 4 with gh's login hint), `fail`.
fn fake_gh(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("calls")).unwrap();
    std::fs::write(dir.join("mode"), "ok").unwrap();
    std::fs::write(
        dir.join("view.json"),
        r#"{"mergedAt":null,"reviewDecision":"","state":"OPEN"}"#,
    )
    .unwrap();
    let d = dir.display();
    let script = format!(
        r#"#!/bin/sh
n=$(ls "{d}/calls" | wc -l)
printf '%s\0' "$@" > "{d}/calls/$n"
mode=$(cat "{d}/mode")
if [ "$mode" = auth ]; then
  echo "To get started with GitHub CLI, please run:  gh auth login" >&2
  exit 4
fi
if [ "$mode" = fail ]; then
  echo 'a pull request for branch "task/t1" into branch "main" already exists:' >&2
  echo "https://github.com/o/r/pull/6" >&2
  exit 1
fi
case "$1 $2" in
  "pr create") echo "https://github.com/o/r/pull/17" ;;
  "pr view") if [ "$5" = reviews ]; then cat "{d}/reviews.json"; else cat "{d}/view.json"; fi ;;
  *) echo "unknown command $1 $2" >&2; exit 1 ;;
esac
"#
    );
    let gh = dir.join("gh");
    std::fs::write(&gh, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    vec![gh.display().to_string()]
}

fn calls(dir: &Path) -> Vec<Vec<String>> {
    let mut names: Vec<usize> = std::fs::read_dir(dir.join("calls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let raw = std::fs::read(dir.join("calls").join(n.to_string())).unwrap();
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .collect()
}

#[test]
fn push_sends_the_branch_to_the_remote() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let bare = f.bare_remote();
    let tip = f.commit("task/t1", &[("b.txt", Some("b\n"))], "t1");
    pr::push(&f.repo, "origin", "task/t1").unwrap();
    let remote = git2::Repository::open_bare(&bare).unwrap();
    assert_eq!(remote.refname_to_id("refs/heads/task/t1").unwrap(), tip);
    // Again with nothing new: fine.
    pr::push(&f.repo, "origin", "task/t1").unwrap();
}

#[test]
fn a_rejected_push_names_gits_reason() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let bare = f.bare_remote();
    f.commit("task/t1", &[("b.txt", Some("b\n"))], "t1");
    pr::push(&f.repo, "origin", "task/t1").unwrap();
    // Someone else's commit lands on the remote branch; ours diverges.
    let other = f.tmp.path().join("other");
    f.git_cli(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            "-b",
            "task/t1",
            bare.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("c.txt"), "c\n").unwrap();
    f.git_cli(&other, &["add", "-A"]);
    f.git_cli(&other, &["commit", "-qm", "theirs"]);
    f.git_cli(&other, &["push", "-q", "origin", "task/t1"]);
    f.commit("task/t1", &[("d.txt", Some("d\n"))], "ours");
    let e = pr::push(&f.repo, "origin", "task/t1").unwrap_err();
    let PrError::PushRejected { line, .. } = &e else {
        panic!("{e}")
    };
    assert!(line.contains("rejected"), "{line}");
    let msg = e.to_string();
    assert!(msg.contains("bring the branch up to date"), "{msg}");
}

#[test]
fn no_remote_and_an_unreachable_remote_are_clear() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let e = pr::push(&f.repo, "origin", "main").unwrap_err();
    assert!(matches!(e, PrError::NoRemote { .. }), "{e}");
    assert!(e.to_string().contains("git remote add origin"), "{e}");
    f.git()
        .remote("gone", f.tmp.path().join("nowhere.git").to_str().unwrap())
        .unwrap();
    let e = pr::push(&f.repo, "gone", "main").unwrap_err();
    let PrError::PushRejected { line, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        line.contains("fatal") || line.contains("does not appear"),
        "{line}"
    );
}

#[test]
fn create_passes_every_field_as_one_argv_element() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let gh_dir = f.tmp.path().join("fake-gh");
    let gh = fake_gh(&gh_dir);
    let spec = PrSpec {
        title: "Fix $(touch pwned); `id` & \"quotes\"".into(),
        body: pr::body(&pr::PrSummary {
            task_id: "t1".into(),
            issue: Some(12),
            files: vec!["src/a.rs".into()],
            verify: Some("passed".into()),
            review: None,
            attempts: 1,
        }),
        base: Some("main".into()),
        head: "task/t1".into(),
    };
    assert_eq!(pr::create(&gh, &f.repo, &spec).unwrap(), 17);
    let default_base = PrSpec {
        base: None,
        ..spec.clone()
    };
    assert_eq!(pr::create(&gh, &f.repo, &default_base).unwrap(), 17);
    let c = calls(&gh_dir);
    assert_eq!(
        c[0],
        vec![
            "pr",
            "create",
            "--base",
            "main",
            "--head",
            "task/t1",
            "--title",
            &spec.title,
            "--body",
            &spec.body
        ]
    );
    assert!(c[0][9].starts_with("Closes #12\n"));
    assert_eq!(
        c[1][..4],
        ["pr", "create", "--head", "task/t1"],
        "no --base: gh's default"
    );
    assert!(!f.repo.join("pwned").exists() && !gh_dir.join("pwned").exists());
}

#[test]
fn view_follows_the_state() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let gh_dir = f.tmp.path().join("fake-gh");
    let gh = fake_gh(&gh_dir);
    assert_eq!(pr::view(&gh, &f.repo, 17).unwrap(), PrState::Open);
    std::fs::write(
        gh_dir.join("view.json"),
        r#"{"mergedAt":null,"reviewDecision":"CHANGES_REQUESTED","state":"OPEN"}"#,
    )
    .unwrap();
    assert_eq!(
        pr::view(&gh, &f.repo, 17).unwrap(),
        PrState::ChangesRequested
    );
    std::fs::write(
        gh_dir.join("view.json"),
        r#"{"mergedAt":"2026-11-23T00:00:00Z","reviewDecision":"APPROVED","state":"MERGED"}"#,
    )
    .unwrap();
    assert_eq!(pr::view(&gh, &f.repo, 17).unwrap(), PrState::Merged);
    assert_eq!(
        calls(&gh_dir)[0],
        vec![
            "pr",
            "view",
            "17",
            "--json",
            "state,mergedAt,reviewDecision"
        ]
    );
    std::fs::write(
        gh_dir.join("reviews.json"),
        r#"{"reviews":[{"author":{"login":"ann"},"state":"CHANGES_REQUESTED","body":"add a test"}]}"#,
    )
    .unwrap();
    assert_eq!(
        pr::requested_changes(&gh, &f.repo, 17).unwrap(),
        "@ann: add a test"
    );
    assert_eq!(
        calls(&gh_dir).last().unwrap(),
        &["pr", "view", "17", "--json", "reviews"]
    );
    std::fs::write(gh_dir.join("view.json"), "<html>rate limited</html>").unwrap();
    let e = pr::view(&gh, &f.repo, 17).unwrap_err();
    assert!(matches!(e, PrError::Unreadable { .. }), "{e}");
}

#[test]
fn gh_missing_unauthenticated_or_failing_say_the_fix() {
    let f = Fixture::new(&[("a.txt", "a\n")]);
    let spec = PrSpec {
        title: "t".into(),
        body: "b".into(),
        base: Some("main".into()),
        head: "task/t1".into(),
    };
    let missing = vec![f.tmp.path().join("no-gh-here").display().to_string()];
    let e = pr::create(&missing, &f.repo, &spec).unwrap_err();
    assert!(matches!(e, PrError::GhNotFound { .. }), "{e}");
    assert!(e.to_string().contains("install gh"), "{e}");
    let e = pr::view(&[], &f.repo, 1).unwrap_err();
    assert!(e.to_string().contains("pr.gh"), "{e}");

    let gh_dir = f.tmp.path().join("fake-gh");
    let gh = fake_gh(&gh_dir);
    std::fs::write(gh_dir.join("mode"), "auth").unwrap();
    let e = pr::view(&gh, &f.repo, 1).unwrap_err();
    assert!(matches!(e, PrError::NotAuthenticated { .. }), "{e}");
    assert!(e.to_string().contains("run `gh auth login`"), "{e}");

    std::fs::write(gh_dir.join("mode"), "fail").unwrap();
    let e = pr::create(&gh, &f.repo, &spec).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PrError::Failed { .. }), "{e}");
    assert!(
        msg.contains("already exists") && msg.contains("exit status 1"),
        "{msg}"
    );
}

#[test]
fn changed_paths_for_the_summary() {
    let f = Fixture::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    f.commit(
        "task/t1",
        &[
            ("a.txt", Some("A\n")),
            ("b.txt", None),
            ("src/c.rs", Some("c\n")),
        ],
        "t1",
    );
    assert_eq!(
        switchyard::host::git::changed_paths(&f.repo, "main", "task/t1").unwrap(),
        vec!["a.txt", "b.txt", "src/c.rs"]
    );
}
