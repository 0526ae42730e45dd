//! Importers (gh issues JSON, Kiro specs) and the report, through their public functions:
//! fixtures under tests/fixtures/import → manifest snapshots (tests/fixtures/import/snapshots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use switchyard::core::manifest::{Manifest, Status};
use switchyard::core::plan::Plan;
use switchyard::import::{self, gh, kiro, ImportError, Imported, MergeKey};
use switchyard::report;

const NOW: &str = "2026-11-22T12:00:00Z";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

/// The files of the repository the gh fixtures talk about.
const REPO: &[&str] = &[
    "README.md",
    "Cargo.toml",
    "src/main.rs",
    "src/parse.rs",
    "src/config.rs",
    "tests/roundtrip.rs",
];

fn in_repo(p: &str) -> bool {
    REPO.contains(&p)
}

fn gh_opts() -> gh::GhOptions {
    gh::GhOptions {
        project: "tool".into(),
        repo: Some("acme/tool".into()),
        created: Some(NOW.into()),
        ..Default::default()
    }
}

fn gh_import(rel: &str) -> Result<Imported, ImportError> {
    let issues = gh::parse_issues(&read(rel), rel)?;
    gh::import(&issues, &gh_opts(), rel, &in_repo)
}

/// The manifest and the notes as one text, for a snapshot.
fn shown(i: &Imported) -> String {
    format!(
        "{}\n--- inferred ---\n{}\n",
        i.manifest.to_json(),
        i.notes.join("\n")
    )
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "fixtures/import/snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(name, text);
    });
}

/// Every manifest an importer returns must validate, plan, and survive a save/load round trip.
fn plans(m: &Manifest) -> Plan {
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    m.save(&path).unwrap();
    assert_eq!(&Manifest::load(&path).unwrap(), m);
    Plan::build(m).unwrap_or_else(|p| panic!("does not plan: {p:?}"))
}

#[test]
fn gh_issues_become_tasks_with_files_deps_and_phases() {
    let i = gh_import("gh/issues.json").unwrap();
    let m = &i.manifest;
    let plan = plans(m);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let names: Vec<&str> = m.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Phase 1: Critical",
            "Phase 2: High",
            "Phase 3: Medium",
            "Phase 4: Low"
        ]
    );
    let t12 = m.task("issue-12").unwrap();
    assert_eq!(t12.files, ["src/config.rs", "src/main.rs", "README.md"]);
    assert!(t12
        .prompt
        .as_deref()
        .unwrap()
        .starts_with("Fix GitHub issue #12: Crash"));
    let t15 = m.task("issue-15").unwrap();
    assert_eq!(t15.deps(), ["issue-14"], "#99 is not in the import");
    assert_eq!(t15.files, ["src/parse.rs"], "src/unicode.rs does not exist");
    // #21 is P0 but waits for #17 (low): it moves to the low phase.
    assert_eq!(
        m.phases[3]
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["issue-17", "issue-21"]
    );
    // Control characters are gone from the title; a null body is an empty one.
    assert_eq!(
        m.task("issue-18").unwrap().title,
        "Tidy up the red warnings"
    );
    assert!(m
        .task("issue-20")
        .unwrap()
        .prompt
        .as_deref()
        .unwrap()
        .contains("no description"));
    let notes = i.notes.join("\n");
    assert!(
        notes.contains("warning: #17 names \"/etc/tool/defaults.toml\", which is absolute"),
        "{notes}"
    );
    assert!(
        notes.contains("warning: #17 names \"../shared/keys.md\", which contains '..'"),
        "{notes}"
    );
    assert!(
        notes.contains("#15: \"after #99\" names #99, which is not among the imported open issues"),
        "{notes}"
    );
    assert!(
        notes.contains("issue-21 (#21) moved from \"Phase 1: Critical\" to \"Phase 4: Low\""),
        "{notes}"
    );
    snapshot("gh_issues", &shown(&i));
}

#[test]
fn gh_strict_refuses_a_path_outside_the_repository_naming_the_issue() {
    let issues = gh::parse_issues(&read("gh/issues.json"), "issues.json").unwrap();
    let opts = gh::GhOptions {
        strict: true,
        ..gh_opts()
    };
    let e = gh::import(&issues, &opts, "issues.json", &in_repo)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("issues.json: issue #17: the body names \"/etc/tool/defaults.toml\""),
        "{e}"
    );
    assert!(e.contains("Fix: edit the issue"), "{e}");
}

#[test]
fn gh_malformed_json_names_file_line_and_column() {
    let e = gh::parse_issues(&read("gh/malformed.json"), "gh/malformed.json").unwrap_err();
    match &e {
        ImportError::Json {
            file, line, column, ..
        } => {
            assert_eq!(
                (file.as_str(), *line, *column),
                ("gh/malformed.json", 3, 35)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .contains("Fix: give the unchanged output of `gh issue list"),
        "{e}"
    );
    let e = gh::parse_issues(&read("gh/wrong-shape.json"), "w.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("w.json: line 1, column 0: invalid type: map, expected a sequence"),
        "{e}"
    );
    assert!(e.contains("each element needs \"number\""), "{e}");
}

#[test]
fn gh_dependency_cycle_names_the_issues() {
    let e = gh_import("gh/cycle.json").unwrap_err().to_string();
    assert_eq!(
        e,
        "gh/cycle.json: dependency cycle: issue-1 (#1) → issue-3 (#3) → issue-2 (#2) → issue-1 (#1). \
         Fix: remove one of these dependencies (\"depends on #N\", \"after #N\", \"blocked by #N\", or `_Depends: N_`) \
         so the tasks can run in some order"
    );
}

#[test]
fn gh_label_filter_and_priority_mapping() {
    let issues = gh::parse_issues(&read("gh/issues.json"), "i").unwrap();
    let mut opts = gh_opts();
    opts.labels = vec!["documentation".into()];
    let i = gh::import(&issues, &opts, "i", &in_repo).unwrap();
    assert_eq!(
        i.manifest
            .tasks()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["issue-17"]
    );
    let mut opts = gh_opts();
    opts.priorities.add("performance", "critical").unwrap();
    opts.priorities.set_default("low").unwrap();
    let i = gh::import(&issues, &opts, "i", &in_repo).unwrap();
    let m = &i.manifest;
    assert_eq!(
        m.phases[0]
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["issue-12", "issue-20"]
    );
    assert!(
        m.phases
            .last()
            .unwrap()
            .tasks
            .iter()
            .any(|t| t.id == "issue-18"),
        "unlabelled → low"
    );
    opts.labels = vec!["no-such-label".into()];
    let e = gh::import(&issues, &opts, "i", &in_repo)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no open issue carries every label"), "{e}");
}

#[test]
fn gh_reimport_adds_updates_pending_keeps_started_and_reports_closed() {
    let existing = Manifest::parse(&read("gh/existing-manifest.json")).unwrap();
    let fresh = gh_import("gh/issues-v2.json").unwrap();
    let i = import::merge(existing.clone(), fresh, &MergeKey::Issue, "issues-v2.json").unwrap();
    let m = &i.manifest;
    plans(m);
    // finished: untouched
    assert_eq!(m.task("issue-12"), existing.task("issue-12"));
    // started: untouched, with a note
    assert_eq!(m.task("issue-15"), existing.task("issue-15"));
    // pending: updated, its own fields kept, its id kept
    let t14 = m.task("t14").unwrap();
    assert_eq!(t14.title, "Parser drops the last token at EOF");
    assert_eq!(t14.files, ["src/parse.rs", "src/main.rs"]);
    assert_eq!(t14.agent.as_deref(), Some("claude"));
    assert_eq!(t14.extra["note"], "hand-added field");
    assert!(m.task("issue-14").is_none());
    // new: #30 joins the critical phase, #31 the low one and waits for t14 (matched by issue)
    assert_eq!(
        m.phases[0]
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["issue-12", "issue-30"]
    );
    assert_eq!(m.task("issue-31").unwrap().deps(), ["t14"]);
    assert!(m.phases[2].tasks.iter().any(|t| t.id == "issue-31"));
    // unchanged and hand-written tasks stay, as do unknown fields
    assert_eq!(m.task("issue-17"), existing.task("issue-17"));
    assert_eq!(m.task("handmade"), existing.task("handmade"));
    assert_eq!(m.extra["customTopLevel"]["kept"], true);
    let notes = i.notes.join("\n");
    assert!(
        notes.contains("issue #12 (issue-12, complete) is not among the open issues imported"),
        "{notes}"
    );
    assert!(
        notes.contains("updated pending task t14: title, prompt, files"),
        "{notes}"
    );
    assert!(
        notes.contains("kept issue-15 as it is (running): it was started"),
        "{notes}"
    );
    assert!(
        notes.contains(
            "re-import: 2 added, 1 updated, 1 unchanged, 1 started or finished and left alone"
        ),
        "{notes}"
    );
    snapshot("gh_reimport", &shown(&i));
}

#[test]
fn gh_reimport_of_the_same_issues_changes_nothing() {
    let first = gh_import("gh/issues.json").unwrap();
    let again = import::merge(
        first.manifest.clone(),
        gh_import("gh/issues.json").unwrap(),
        &MergeKey::Issue,
        "i",
    )
    .unwrap();
    assert_eq!(again.manifest, first.manifest);
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains("0 added, 0 updated, 7 unchanged")),
        "{:?}",
        again.notes
    );
}

#[test]
fn gh_reimport_creates_a_missing_phase_in_priority_order() {
    let low = r#"[{"number": 1, "title": "later", "body": "", "labels": [{"name": "low"}]}]"#;
    let first = gh::import(
        &gh::parse_issues(low, "a").unwrap(),
        &gh_opts(),
        "a",
        &in_repo,
    )
    .unwrap();
    assert_eq!(first.manifest.phases[0].name, "Phase 1: Low");
    let both = r#"[{"number": 1, "title": "later", "body": "", "labels": [{"name": "low"}]},
                   {"number": 2, "title": "now", "body": "", "labels": [{"name": "P0"}]}]"#;
    let fresh = gh::import(
        &gh::parse_issues(both, "b").unwrap(),
        &gh_opts(),
        "b",
        &in_repo,
    )
    .unwrap();
    let m = import::merge(first.manifest, fresh, &MergeKey::Issue, "b")
        .unwrap()
        .manifest;
    let names: Vec<&str> = m.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Phase 1: Critical", "Phase 2: Low"]);
    plans(&m);
}

fn user_auth() -> Imported {
    let spec = kiro::Spec {
        name: "user-auth",
        dir: ".kiro/specs/user-auth",
        tasks_md: &read("kiro/user-auth/tasks.md"),
        requirements_md: Some(&read("kiro/user-auth/requirements.md")),
        design_md: Some(&read("kiro/user-auth/design.md")),
    };
    let opts = kiro::KiroOptions {
        created: Some(NOW.into()),
        ..Default::default()
    };
    kiro::import(&spec, &opts, &|p| p == "src/lib.rs").unwrap()
}

#[test]
fn kiro_spec_becomes_one_task_per_major_task_with_a_context_pack() {
    let i = user_auth();
    let m = &i.manifest;
    let plan = plans(m);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let ids: Vec<&str> = m.tasks().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "user-auth-1",
            "user-auth-2",
            "user-auth-3",
            "user-auth-4",
            "user-auth-5"
        ]
    );
    assert_eq!(m.task("user-auth-1").unwrap().status, Status::Complete);
    assert_eq!(
        m.task("user-auth-5").unwrap().status,
        Status::Complete,
        "all subtasks checked"
    );
    let t2 = m.task("user-auth-2").unwrap();
    assert_eq!(t2.status, Status::Pending);
    assert_eq!(t2.files, ["src/auth/hash.rs", "src/config.rs"]);
    assert_eq!(t2.writes, Some(vec!["src/auth/hash.rs".to_string()]));
    assert_eq!(t2.reads, Some(vec!["src/config.rs".to_string()]));
    let p = t2.prompt.as_deref().unwrap();
    let (a, b, c) = (
        p.find("2.1 Add").unwrap(),
        p.find("2.2 Verify").unwrap(),
        p.find("2.3 Property").unwrap(),
    );
    assert!(a < b && b < c, "subtasks in order:\n{p}");
    assert!(
        p.contains("2.1 Add the Argon2id hashing helper (already done)"),
        "{p}"
    );
    assert!(
        p.contains("2.3 Property tests for the hashing helper (optional)"),
        "{p}"
    );
    assert!(
        p.contains("2.2: (Password storage) WHEN a user signs in THEN the system SHALL verify"),
        "{p}"
    );
    assert!(
        p.contains("- Goal: Users sign in with an email and a password"),
        "{p}"
    );
    assert!(
        !p.contains("Long section"),
        "the context pack has headings, not whole files:\n{p}"
    );
    let t3 = m.task("user-auth-3").unwrap();
    assert_eq!(t3.title, "Sign-in handler", "(P) marker removed");
    assert!(t3.deps().contains(&"user-auth-2".to_string()));
    assert!(
        m.task("user-auth-4").unwrap().files.is_empty(),
        "names no file: runs alone"
    );
    assert!(plan.runs_alone(plan.index_of("user-auth-4").unwrap()));
    let notes = i.notes.join("\n");
    assert!(
        notes.contains("references requirement(s) 9.9 that requirements.md does not have"),
        "{notes}"
    );
    snapshot("kiro_user_auth", &shown(&i));
}

#[test]
fn kiro_errors_name_file_and_line() {
    let err = |dir: &str| {
        let spec = kiro::Spec {
            name: dir,
            dir,
            tasks_md: &read(&format!("kiro/{dir}/tasks.md")),
            requirements_md: None,
            design_md: None,
        };
        kiro::import(&spec, &Default::default(), &|_| false)
            .unwrap_err()
            .to_string()
    };
    let e = err("malformed");
    assert!(
        e.starts_with(
            "malformed/tasks.md:5: not a task line: \"- [?] 2. A task with a strange box\""
        ),
        "{e}"
    );
    let e = err("bad-ref");
    assert!(
        e.starts_with("bad-ref/tasks.md:2: requirement reference \"see\" is not a number"),
        "{e}"
    );
    let e = err("outside");
    assert!(
        e.starts_with("outside/tasks.md:2: file \"../other/secret.rs\" contains '..'"),
        "{e}"
    );
    let e = err("cycle");
    assert!(
        e.starts_with("cycle/tasks.md: dependency cycle: cycle-1 → cycle-3 → cycle-2 → cycle-1."),
        "{e}"
    );
}

#[test]
fn kiro_folder_without_tasks_md_is_bad_input_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let args = import::KiroArgs {
        spec_dir: fixture("kiro/no-tasks"),
        output: out.clone(),
        id_prefix: None,
        root: Some(dir.path().to_path_buf()),
        dry_run: false,
    };
    let e = import::cli::import_kiro(&args, NOW)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-tasks/tasks.md: read failed"), "{e}");
    assert!(e.contains("Fix: a Kiro spec folder holds tasks.md"), "{e}");
    let code = import::cli(import::ImportArgs {
        source: import::ImportCmd::Kiro(args),
    })
    .unwrap();
    assert_eq!(code, 3);
    assert!(!out.exists(), "nothing written on bad input");
}

#[test]
fn kiro_cli_writes_a_manifest_that_plans_and_reimports_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let args = import::KiroArgs {
        spec_dir: fixture("kiro/user-auth"),
        output: out.clone(),
        id_prefix: Some("auth".into()),
        root: Some(dir.path().to_path_buf()),
        dry_run: false,
    };
    let cmd = || import::ImportArgs {
        source: import::ImportCmd::Kiro(args.clone()),
    };
    assert_eq!(import::cli(cmd()).unwrap(), 0);
    let first = Manifest::load(&out).unwrap();
    plans(&first);
    assert!(first.task("auth-3").is_some());
    assert_eq!(import::cli(cmd()).unwrap(), 0);
    assert_eq!(
        Manifest::load(&out).unwrap(),
        first,
        "a second import of the same spec changes nothing"
    );
}

/// A fake `gh` on PATH: records its argv, prints a fixture (or fails).
fn fake_gh(dir: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("gh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"{}/argv\"\n{body}\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn runs_gh_from_path_as_an_argv_and_imports_its_output() {
    let bin = tempfile::tempdir().unwrap();
    fake_gh(
        bin.path(),
        &format!("/bin/cat '{}'", fixture("gh/issues.json").display()),
    );
    let repo = tempfile::tempdir().unwrap();
    for f in REPO {
        let p = repo.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    let args = import::GhArgs {
        repo: Some("acme/tool".into()),
        from: None,
        labels: vec!["bug fix; rm -rf /".into()],
        output: repo.path().join("manifest.json"),
        root: None,
        priorities: vec![],
        default_priority: "medium".into(),
        limit: 50,
        strict: false,
        dry_run: false,
    };
    let path = bin.path().as_os_str().to_owned();
    let run = |argv: &[String]| import::cli::run_gh("gh".as_ref(), argv, Some(&path));
    // The label filter matches no issue, but gh got it as one argv element, unquoted.
    let e = import::cli::import_gh(&args, &run, NOW)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no open issue carries every label"), "{e}");
    let argv = std::fs::read_to_string(bin.path().join("argv")).unwrap();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "issue",
            "list",
            "--state",
            "open",
            "--json",
            "number,title,body,labels",
            "--limit",
            "50",
            "--repo",
            "acme/tool",
            "--label",
            "bug fix; rm -rf /"
        ]
    );
    let args = import::GhArgs {
        labels: vec![],
        ..args
    };
    let i = import::cli::import_gh(&args, &run, NOW).unwrap();
    plans(&i.manifest);
    assert_eq!(i.manifest.tasks().count(), 7);
    assert_eq!(i.manifest.project, "tool");
    assert_eq!(
        i.manifest.task("issue-14").unwrap().files,
        ["src/parse.rs"],
        "checked against the checkout"
    );
}

#[test]
fn gh_failures_name_the_command_and_the_fix() {
    let bin = tempfile::tempdir().unwrap();
    fake_gh(bin.path(), "echo 'HTTP 401: Bad credentials' >&2; exit 4");
    let path = bin.path().as_os_str().to_owned();
    let e = import::cli::run_gh("gh".as_ref(), &["issue".into()], Some(&path))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "`gh issue` exited with status 4: HTTP 401: Bad credentials. Fix: check `gh auth status` and the --repo OWNER/REPO, or pass the issues' JSON with --from FILE");
    let empty = tempfile::tempdir().unwrap();
    let e = import::cli::run_gh("gh".as_ref(), &[], Some(empty.path().as_os_str()))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("`gh` could not be started"), "{e}");
    assert!(e.contains("--from FILE"), "{e}");
}

#[test]
fn the_demo_issues_import_into_a_plannable_manifest() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-issues.json"),
    )
    .unwrap();
    let issues = gh::parse_issues(&text, "assets/demo-issues.json").unwrap();
    let demo_files = [
        "README.md",
        "Cargo.toml",
        "src/main.rs",
        "src/parse.rs",
        "src/config.rs",
        "tests/roundtrip.rs",
    ];
    let i = gh::import(&issues, &gh_opts(), "demo", &|p| demo_files.contains(&p)).unwrap();
    let m = &i.manifest;
    let plan = plans(m);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(m.tasks().count(), 8);
    assert_eq!(m.phases.len(), 4);
    assert_eq!(m.task("issue-4").unwrap().deps(), ["issue-1"]);
    assert!(
        m.tasks().all(|t| !t.files.is_empty() || t.id == "issue-8"),
        "{}",
        m.to_json()
    );
}

#[test]
fn report_of_a_run_in_progress() {
    let mut m = user_auth().manifest;
    let t = m.task_mut("user-auth-1").unwrap();
    t.started_at = Some("2026-11-22T10:00:00Z".into());
    t.completed_at = Some("2026-11-22T10:12:30Z".into());
    t.attempts = Some(1);
    t.status = Status::PrOpen;
    t.pr_number = Some(serde_json::json!(41));
    let t = m.task_mut("user-auth-2").unwrap();
    t.status = Status::NeedsAttention;
    t.attempts = Some(2);
    t.started_at = Some("2026-11-22T10:05:00Z".into());
    t.last_verdict = Some(
        "waiting_input: deny-list matched \"Overwrite src/auth/hash.rs? (y/n)\" \x1b[31m|x|\x1b[0m"
            .into(),
    );
    let t = m.task_mut("user-auth-3").unwrap();
    t.status = Status::Running;
    t.title = "Sign-in \x1b]0;pwned\x07handler | *bold* <b>".into();
    t.started_at = Some("2026-11-22T11:00:00Z".into());
    let (journal, skipped) = report::parse_journal(concat!(
        "{\"ts\":\"2026-11-22T10:06:00Z\",\"tsMs\":1,\"task\":\"user-auth-2\",\"kind\":\"heal\",\"message\":\"answered y to Continue?\",\"data\":null}\n",
        "{\"ts\":\"2026-11-22T10:07:00Z\",\"tsMs\":2,\"task\":\"user-auth-2\",\"kind\":\"verdict\",\"message\":\"waiting_input on a deny-listed prompt\",\"data\":null}\n",
        "torn line\n",
    ));
    assert_eq!(skipped, 1);
    let mut facts = HashMap::new();
    facts.insert(
        "user-auth-1".to_string(),
        report::TaskFacts {
            files_changed: vec!["src/auth/mod.rs".into(), "src/lib.rs".into()],
            findings: vec!["minor: missing doc comment".into()],
            final_message: Some("/w/logs/user-auth-1.final.md".into()),
            findings_file: None,
        },
    );
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap();
    let text = report::render(&report::ReportInput {
        manifest: &m,
        journal: &journal,
        facts: &facts,
        now: Some(now),
    });
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "no control characters:\n{text}"
    );
    assert!(text.contains("**Tasks complete: 2/5** (running 1, needs attention 1, pending 1, complete 1, pr open 1)"), "{text}");
    assert!(
        text.contains(
            "- **user-auth-2** Store passwords safely — needs attention: waiting\\_input"
        ),
        "{text}"
    );
    assert!(
        text.contains("Sign-in handler \\| \\*bold\\* \\<b\\>"),
        "{text}"
    );
    assert!(text.contains("| user-auth-1 |  | Set up the auth module skeleton | pr open | 1 | 0 | 12m 30s | src/auth/mod.rs, src/lib.rs | \\#41 |"), "{text}");
    assert!(text.contains("1h 00m so far"), "{text}");
    assert!(
        text.contains("- **user-auth-1** final message: `/w/logs/user-auth-1.final.md`"),
        "{text}"
    );
    snapshot("report", &text);
}

#[test]
fn report_cli_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    user_auth().manifest.save(&manifest).unwrap();
    let out = dir.path().join("REPORT.md");
    let code = report::cli(report::ReportArgs {
        manifest: manifest.clone(),
        output: Some(out.clone()),
        journal: None,
    })
    .unwrap();
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("# Progress report: user-auth\n"));
    std::fs::write(&manifest, "{ not json").unwrap();
    let code = report::cli(report::ReportArgs {
        manifest,
        output: None,
        journal: None,
    })
    .unwrap();
    assert_eq!(code, 3);
}

/// The exact wiring the lead adds to src/main.rs, checked with clap's own consistency checks.
#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Make or update a manifest from open GitHub issues or a Kiro spec.
    Import(import::ImportArgs),
    /// Write a Markdown progress report of a manifest.
    Report(report::ReportArgs),
}

#[test]
fn the_commands_parse_as_main_will_wire_them() {
    use clap::{CommandFactory, Parser};
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "switchyard",
        "import",
        "gh",
        "--repo",
        "acme/tool",
        "--label",
        "bug",
        "--label",
        "help wanted",
        "--priority",
        "sev1=critical",
        "-o",
        "m.json",
    ])
    .unwrap();
    let Cmd::Import(import::ImportArgs {
        source: import::ImportCmd::Gh(a),
    }) = cli.command
    else {
        panic!("not gh")
    };
    assert_eq!(a.labels, ["bug", "help wanted"]);
    assert_eq!((a.limit, a.default_priority.as_str()), (1000, "medium"));
    let cli = Cli::try_parse_from([
        "switchyard",
        "import",
        "kiro",
        ".kiro/specs/auth",
        "-o",
        "m.json",
        "--dry-run",
    ])
    .unwrap();
    assert!(
        matches!(cli.command, Cmd::Import(import::ImportArgs { source: import::ImportCmd::Kiro(ref k) }) if k.dry_run)
    );
    let cli = Cli::try_parse_from(["switchyard", "report", "m.json", "-o", "REPORT.md"]).unwrap();
    assert!(
        matches!(cli.command, Cmd::Report(ref r) if r.output.as_deref() == Some(Path::new("REPORT.md")))
    );
    assert!(
        Cli::try_parse_from(["switchyard", "import", "gh"]).is_err(),
        "-o is required"
    );
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic_and_reports_carry_no_controls(text in "(?s).{0,400}", lines in proptest::collection::vec("[ -~\\t\\x1b\\u{9b}]{0,40}", 0..12)) {
        let _ = gh::parse_issues(&text, "x");
        let _ = gh::stated_dependencies(&text);
        let tasks_md: String = lines.iter().map(|l| format!("- [ ] 1. {l}\n  {l}\n")).collect::<String>() + &text;
        let _ = kiro::parse_tasks(&tasks_md, "t", &|_| true);
        let _ = kiro::Requirements::parse(&text);
        let escaped = report::escape_md(&text);
        proptest::prop_assert!(!escaped.chars().any(char::is_control));
        let body = serde_json::to_string(&text).unwrap();
        let json = format!(r#"[{{"number": 1, "title": {body}, "body": {body}, "labels": []}}]"#);
        if let Ok(issues) = gh::parse_issues(&json, "x") {
            if let Ok(i) = gh::import(&issues, &gh_opts(), "x", &|_| true) {
                proptest::prop_assert!(Plan::build(&i.manifest).is_ok());
                proptest::prop_assert!(!i.manifest.tasks().any(|t| t.title.chars().any(char::is_control)));
            }
        }
    }
}

#[test]
fn kiro_reimport_updates_pending_tasks_and_reports_checked_ones() {
    let first = user_auth();
    let mut existing = first.manifest.clone();
    existing.task_mut("user-auth-1").unwrap().status = Status::Pending;
    existing.task_mut("user-auth-3").unwrap().status = Status::Running;
    existing.task_mut("user-auth-4").unwrap().title = "old title".into();
    let i = import::merge(
        existing,
        user_auth(),
        &MergeKey::Id("user-auth-".into()),
        "tasks.md",
    )
    .unwrap();
    plans(&i.manifest);
    assert_eq!(
        i.manifest.task("user-auth-4").unwrap().title,
        "Password reset by email"
    );
    assert_eq!(
        i.manifest.task("user-auth-1").unwrap().status,
        Status::Pending
    );
    let notes = i.notes.join("\n");
    assert!(
        notes.contains("user-auth-1 is done in its source but pending in the manifest"),
        "{notes}"
    );
    assert!(
        notes.contains("updated pending task user-auth-4: title"),
        "{notes}"
    );
}
