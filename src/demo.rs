//! The embedded demo: a throwaway git repository with a small real project, a manifest of eight
//! tasks in two phases (with shared files and `dependsOn`), and a `switchyard.toml` whose agents
//! are the scripted fake agent (`switchyard fake-agent`) in its scenarios: asks a y/n question,
//! fails once, stalls until nudged, draws a full-screen TUI.

use crate::git;
use crate::manifest::{Manifest, Phase, Task};
use color_eyre::eyre::{bail, Result, WrapErr};
use std::path::{Path, PathBuf};

/// The manifest file name the demo writes.
pub const MANIFEST_NAME: &str = "manifest.json";

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
        "/target\n/manifest.json\n/switchyard.toml\n/.switchyard/\n",
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
        created: Some(crate::engine::rfc3339(crate::worker::now_ms())),
        model: Some("fake-agent".into()),
        model_tier: None,
        phases: vec![
            phase("Phase 1: Foundations", PHASE1),
            phase("Phase 2: Features", PHASE2),
        ],
        extra: Default::default(),
    }
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

/// Creates the demo in `dir` (which must be empty or absent): the git repository, the manifest and
/// the config. Returns the manifest path.
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
    manifest().save(&manifest_path)?;
    std::fs::write(dir.join("switchyard.toml"), config_toml(speed))
        .wrap_err("writing switchyard.toml")?;
    Ok(manifest_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

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
        let c = crate::config::Config::from_layers(&[
            ("defaults".into(), crate::config::DEFAULTS.into()),
            ("demo".into(), config_toml(0.5)),
        ])
        .unwrap();
        assert_eq!(c.default_agent, "fake");
        assert_eq!(c.agents["fake-asks"].command[3], "asks");
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x"), "").unwrap();
        let e = create(tmp.path(), 1.0).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
    }
}
