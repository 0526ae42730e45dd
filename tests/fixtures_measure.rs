//! Measured: over every labelled recorded session (tests/fixtures/verdicts.toml), how many final
//! verdicts switchyard's classifier gets right, and how many the seed orchestrator's three
//! regexes get right, in the same run. Needs neither the agent CLIs nor a network.

use std::path::Path;
use switchyard::core::classify::VerdictKind;
use switchyard::core::config::Config;
use switchyard::host::replay::{replay, seed_classify, Recording};

#[derive(serde::Deserialize)]
struct Labels {
    fixture: Vec<Label>,
}

#[derive(serde::Deserialize)]
struct Label {
    path: String,
    profile: String,
    expected: String,
    #[serde(default)]
    skip: Option<String>,
}

/// `idle` and `done` are one class: the agent finished its turn and waits.
fn class(kind: VerdictKind) -> &'static str {
    match kind {
        VerdictKind::Idle | VerdictKind::Done => "idle",
        VerdictKind::WaitingInput => "waiting_input",
        VerdictKind::Error => "error",
        VerdictKind::RateLimited => "rate_limited",
        VerdictKind::Stalled => "stalled",
        VerdictKind::Running => "running",
        VerdictKind::Exited(_) => "exited",
    }
}

#[test]
fn switchyard_classifier_versus_the_seed_regexes_on_recorded_sessions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let labels: Labels =
        toml::from_str(&std::fs::read_to_string(root.join("verdicts.toml")).unwrap()).unwrap();
    let config = Config::defaults();
    let compiled = config.compile().unwrap();
    let (mut ours, mut seed, mut total) = (0, 0, 0);
    let mut misses = Vec::new();
    println!(
        "{:<44} {:<14} {:<14} {:<14}",
        "fixture", "expected", "switchyard", "seed regexes"
    );
    for l in &labels.fixture {
        if l.skip.is_some() {
            continue;
        }
        let expected = if l.expected == "done" {
            "idle"
        } else {
            l.expected.as_str()
        };
        let rec = Recording::load(&root.join(format!("{}.bytes", l.path))).unwrap();
        let rules = &compiled.rules[&l.profile];
        let steps = replay(&rec, rules, config.heal.stall_ms, 10_000);
        let got = steps
            .last()
            .map(|s| class(s.verdict.kind))
            .unwrap_or("running");
        let seed_got = class(seed_classify(&rec));
        total += 1;
        if got == expected {
            ours += 1;
        } else {
            misses.push(format!("{}: expected {expected}, got {got}", l.path));
        }
        if seed_got == expected {
            seed += 1;
        }
        println!(
            "{:<44} {:<14} {:<14} {:<14}",
            l.path, expected, got, seed_got
        );
    }
    println!(
        "final verdicts right: switchyard {ours}/{total} ({:.0}%), seed regexes {seed}/{total} ({:.0}%)",
        100.0 * ours as f64 / total as f64,
        100.0 * seed as f64 / total as f64
    );
    assert!(total >= 30, "the fixtures are there");
    assert!(ours * 10 >= total * 9, "switchyard below 90%: {misses:#?}");
    assert!(ours > seed, "switchyard must beat the seed's regexes");
}
