//! The embedded demo: a throwaway git repository with a small real project, a manifest of eight
//! tasks in two phases (with shared files and `dependsOn`), and a `switchyard.toml` whose agents
//! are the scripted fake agent (`switchyard fake-agent`) in its scenarios: asks a y/n question,
//! fails once, stalls until nudged, draws a full-screen TUI.

use crate::core::manifest::{Manifest, Phase, Task};
use crate::host::git;
use color_eyre::eyre::{bail, eyre, Result, WrapErr};
use std::path::{Path, PathBuf};

/// The manifest file name the demo writes.
pub const MANIFEST_NAME: &str = "manifest.json";
/// What the import of the demo's issues inferred and why, written beside the manifest.
pub const IMPORT_NOTES: &str = "import-notes.txt";

const PROJECT: &[(&str, &str)] = &[
    (
        "README.md",
        "# wordcount\n\nA tiny word-count tool, used by the switchyard demo.\n",
    ),
    (
        "Cargo.toml",
        "[package]\nname = \"wordcount\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    ),
    (
        "src/main.rs",
        "mod parse;\n\nfn main() {\n    let text = std::io::read_to_string(std::io::stdin()).unwrap_or_default();\n    println!(\"{}\", parse::count_words(&text));\n}\n",
    ),
    (
        "src/parse.rs",
        "/// Counts whitespace-separated words.\npub fn count_words(text: &str) -> usize {\n    text.split_whitespace().count()\n}\n",
    ),
    ("src/config.rs", "// configuration (to be written)\n"),
    (
        "tests/roundtrip.rs",
        "#[test]\nfn counts() {\n    assert_eq!(2 + 2, 4);\n}\n",
    ),
    (
        ".gitignore",
        "/target\n/manifest.json\n/switchyard.toml\n/.switchyard/\n/import-notes.txt\n",
    ),
];

/// (id, issue, title, files, dependsOn, agent)
type DemoTask = (
    &'static str,
    u64,
    &'static str,
    &'static [&'static str],
    Option<&'static [&'static str]>,
    &'static str,
);

const PHASE1: &[DemoTask] = &[
    (
        "d1",
        1,
        "Add a tokenizer to the parser",
        &["src/parse.rs"],
        None,
        "fake",
    ),
    (
        "d2",
        2,
        "Validate configuration keys",
        &["src/config.rs"],
        None,
        "fake-asks",
    ),
    (
        "d3",
        3,
        "Fix the flaky round-trip test",
        &["tests/roundtrip.rs"],
        None,
        "fake-flaky",
    ),
    (
        "d4",
        4,
        "Handle empty input in the parser",
        &["src/parse.rs"],
        None,
        "fake-tui",
    ),
];
const PHASE2: &[DemoTask] = &[
    (
        "d5",
        5,
        "Add a --json output mode",
        &["src/main.rs", "src/output.rs"],
        None,
        "fake-stalls",
    ),
    (
        "d6",
        6,
        "Document the CLI in the README",
        &["README.md"],
        Some(&["d5"]),
        "fake",
    ),
    (
        "d7",
        7,
        "Colour the error output",
        &["src/output.rs"],
        None,
        "fake",
    ),
    (
        "d8",
        8,
        "Write the release notes",
        &["CHANGELOG.md"],
        Some(&["d6"]),
        "fake-asks",
    ),
];

/// The demo's manifest.
pub fn manifest() -> Manifest {
    let mut m = base_manifest();
    lifecycle_tasks(&mut m);
    m
}

fn base_manifest() -> Manifest {
    let phase = |name: &str, tasks: &[DemoTask]| Phase {
        name: name.to_string(),
        tasks: tasks
            .iter()
            .map(|(id, issue, title, files, deps, agent)| {
                let mut t = Task::new(id, title);
                t.issue = Some(*issue);
                t.files = files.iter().map(|f| f.to_string()).collect();
                t.depends_on = deps.map(|d| d.iter().map(|s| s.to_string()).collect());
                t.agent = Some(agent.to_string());
                t
            })
            .collect(),
        extra: Default::default(),
    };
    Manifest {
        project: "switchyard-demo".into(),
        repo: Some("local/wordcount".into()),
        workdir: Some(".switchyard".into()),
        created: Some(crate::core::engine::rfc3339(crate::host::worker::now_ms())),
        model: Some("fake-agent".into()),
        model_tier: None,
        phases: vec![
            phase("Phase 1: Foundations", PHASE1),
            phase("Phase 2: Features", PHASE2),
        ],
        extra: Default::default(),
    }
}

/// The GitHub issues the demo starts from (`gh issue list --json number,title,body,labels`
/// output), shipped as `assets/demo-issues.json`.
pub const ISSUES: &str = include_str!("../assets/demo-issues.json");

/// The demo's manifest as `switchyard demo` builds it: the shipped issues ([`ISSUES`]) imported
/// with the gh importer (files from the bodies that exist in the demo project, dependencies from
/// "depends on #N" and the like, phases from the priority labels), then each task given the id,
/// agent (fake-agent scenario) and any other switchyard fields of the hand-built [`manifest`]'s
/// task for the same issue. Returns the manifest and the importer's notes (what it inferred and
/// why). Errors: the shipped issues do not import (a bug in this build).
pub fn imported_manifest() -> Result<(Manifest, Vec<String>)> {
    use crate::import::gh;
    let file = "assets/demo-issues.json";
    let issues = gh::parse_issues(ISSUES, file).map_err(|e| eyre!("{e}"))?;
    let opts = gh::GhOptions {
        project: "switchyard-demo".into(),
        repo: Some("local/wordcount".into()),
        created: Some(crate::core::engine::rfc3339(crate::host::worker::now_ms())),
        ..Default::default()
    };
    let exists = |p: &str| PROJECT.iter().any(|(f, _)| *f == p);
    let imported = gh::import(&issues, &opts, file, &exists).map_err(|e| eyre!("{e}"))?;
    let mut m = imported.manifest;
    let hand = manifest();
    let by_issue: std::collections::HashMap<u64, &Task> = hand
        .tasks()
        .filter_map(|t| t.issue.map(|n| (n, t)))
        .collect();
    let renames: std::collections::HashMap<String, String> = m
        .tasks()
        .filter_map(|t| Some((t.id.clone(), by_issue.get(&t.issue?)?.id.clone())))
        .collect();
    for t in m.phases.iter_mut().flat_map(|p| p.tasks.iter_mut()) {
        if let Some(h) = t.issue.and_then(|n| by_issue.get(&n)) {
            t.agent = h.agent.clone();
            t.role = h.role.clone();
            t.lens = h.lens.clone();
            t.verify = h.verify.clone();
            t.extra.extend(h.extra.clone());
        }
        if let Some(id) = renames.get(&t.id) {
            t.id = id.clone();
        }
        for d in t.depends_on.iter_mut().flatten() {
            if let Some(id) = renames.get(d) {
                *d = id.clone();
            }
        }
    }
    conflicting_pair(&mut m);
    m.workdir = hand.workdir.clone();
    m.model = hand.model.clone();
    if let Some(p) = m.validate().first() {
        bail!("the demo's imported manifest is invalid: {p}");
    }
    Ok((m, imported.notes))
}

/// The demo's `switchyard.toml`: fake-agent profiles and short timings so the demo runs in
/// well under a minute.
pub fn config_toml(speed: f64) -> String {
    let profile = |name: &str, scenario: &str| {
        format!(
            "[agents.{name}]\ncommand = [\"{{switchyard}}\", \"fake-agent\", \"--scenario\", \"{scenario}\", \"--speed\", \"{speed}\", \"{{prompt}}\"]\n\n"
        )
    };
    let mut s = String::from(
        "# switchyard demo configuration: the agents are switchyard's scripted fake agent.\n\
         max_parallel = 4\n\
         default_agent = \"fake\"\n\n\
         [heal]\n\
         # Short timings for the demo; the defaults are minutes.\n\
         stall_ms = 2500\n\
         backoff_ms = 500\n\
         max_attempts = 3\n\n",
    );
    for (name, scenario) in [
        ("fake", "normal"),
        ("fake-asks", "asks"),
        ("fake-flaky", "flaky"),
        ("fake-stalls", "stalls"),
        ("fake-tui", "tui"),
    ] {
        s.push_str(&profile(name, scenario));
    }
    s.push_str(&lifecycle_toml(speed));
    s
}

/// The demo's lifecycle settings: every task merges into `switchyard/integration` through the
/// merge queue (dependents start from it, running branches are checked for conflicts), and the
/// tasks marked by [`lifecycle_tasks`] get a review by the fake reviewer, which finds a critical
/// problem in round 1 (a fix round follows) and none in round 2.
fn lifecycle_toml(speed: f64) -> String {
    format!(
        "[review]
         # Only tasks with \"review\": true in the manifest are reviewed in the demo.
         enabled = false
         agent = \"fake-review\"
         block_on = \"major\"
         max_rounds = 2

         [merge]
         enabled = true
         into = \"switchyard/integration\"

         [warn]
         enabled = true
         interval_ms = 2000
         quiet_ms = 300

         [agents.fake-review]
         command = [\"{{switchyard}}\", \"fake-agent\", \"--scenario\", \"review\", \"--speed\", \"{speed}\", \"{{prompt}}\"]

"
    )
}

/// Marks the demo tasks that are reviewed (`"review": true`): d1.
fn lifecycle_tasks(m: &mut Manifest) {
    if let Some(t) = m.task_mut("d1") {
        t.extra
            .insert("review".into(), serde_json::Value::Bool(true));
    }
}

/// Plans d4 beside d1 in the imported demo (`"dependsOn": []`, replacing the dependency its issue
/// names; trusted as its author's plan although both edit `src/parse.rs`, see [`crate::core::plan`]),
/// so the demo shows a conflict predicted while both are under way, then resolved in a resolve
/// round by whichever of the two reaches the merge queue second.
fn conflicting_pair(m: &mut Manifest) {
    if let Some(t) = m.task_mut("d4") {
        t.depends_on = Some(Vec::new());
    }
}

/// Creates the demo in `dir` (which must be empty or absent): the git repository, the manifest
/// (imported from the shipped issues, see [`imported_manifest`]; the notes are written to
/// `import-notes.txt` beside it) and the config. Returns the manifest path.
pub fn create(dir: &Path, speed: f64) -> Result<PathBuf> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .wrap_err_with(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        let manifest = dir.join(MANIFEST_NAME);
        if manifest.exists() {
            bail!(
                "{} already holds a demo; resume it with `switchyard run {}`, or pass another --dir",
                dir.display(),
                manifest.display()
            );
        }
        bail!(
            "{} is not empty; the demo needs an empty or new directory (pass another --dir)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
    git::init_repo_with(dir, PROJECT, "wordcount: initial project")?;
    let manifest_path = dir.join(MANIFEST_NAME);
    let (imported, notes) = imported_manifest()?;
    imported.save(&manifest_path)?;
    std::fs::write(dir.join(IMPORT_NOTES), notes.join("\n") + "\n")
        .wrap_err_with(|| format!("writing {IMPORT_NOTES}"))?;
    std::fs::write(dir.join("switchyard.toml"), config_toml(speed))
        .wrap_err("writing switchyard.toml")?;
    Ok(manifest_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Plan;

    #[test]
    fn the_demo_manifest_plans_into_two_phases_with_serialized_files() {
        let m = manifest();
        assert_eq!(m.tasks().count(), 8);
        assert!(m.validate().is_empty());
        let plan = Plan::build(&m).unwrap();
        let d4 = plan.index_of("d4").unwrap();
        assert_eq!(plan.describe_waits(d4), vec!["d1 (same file src/parse.rs)"]);
        let d7 = plan.index_of("d7").unwrap();
        assert!(plan
            .describe_waits(d7)
            .contains(&"d5 (same file src/output.rs)".to_string()));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn the_demo_config_loads_over_the_defaults() {
        let c = crate::core::config::Config::from_layers(&[
            ("defaults".into(), crate::core::config::DEFAULTS.into()),
            ("demo".into(), config_toml(0.5)),
        ])
        .unwrap();
        assert_eq!(c.default_agent, "fake");
        assert_eq!(c.agents["fake-asks"].command[3], "asks");
    }

    #[test]
    fn the_demo_is_imported_from_the_shipped_issues() {
        let (m, notes) = imported_manifest().unwrap();
        assert_eq!(m.tasks().count(), 8);
        let ids: Vec<&str> = m.tasks().map(|t| t.id.as_str()).collect();
        // Phases by priority: critical (#3), high (#1, #2, #4), medium (#5, #6), low (#7, #8).
        assert_eq!(ids, ["d3", "d1", "d2", "d4", "d5", "d6", "d7", "d8"]);
        assert_eq!(m.phases.len(), 4);
        let t = |id: &str| m.task(id).unwrap();
        // The issue says "Depends on #1"; the demo plans d4 beside d1 (a warned conflict).
        assert!(t("d4").deps().is_empty(), "planned beside d1");
        assert_eq!(t("d4").agent.as_deref(), Some("fake-tui"));
        assert_eq!(t("d3").agent.as_deref(), Some("fake-flaky"));
        assert_eq!(t("d1").files, ["src/parse.rs"]);
        assert!(t("d1")
            .prompt
            .as_deref()
            .unwrap()
            .contains("splits on whitespace only"));
        assert!(!notes.is_empty());
        let plan = Plan::build(&m).unwrap();
        assert_eq!(plan.warnings.len(), 1, "d1 ∥ d4: {:?}", plan.warnings);
        assert!(plan.warnings[0].contains("d1") && plan.warnings[0].contains("d4"));
        let tmp = tempfile::tempdir().unwrap();
        let path = create(&tmp.path().join("d"), 0.0).unwrap();
        assert_eq!(Manifest::load(&path).unwrap().tasks().count(), 8);
        assert!(tmp.path().join("d").join(IMPORT_NOTES).exists());
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x"), "").unwrap();
        let e = create(tmp.path(), 1.0).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
    }
}
