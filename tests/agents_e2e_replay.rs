//! Replays the sessions the agents end-to-end harness (tests/harness/agents-e2e/run.py) recorded from the
//! real CLIs under `switchyard run --headless` against the scripted model server, and checks the
//! verdict timeline the shipped profiles give: the labelled verdicts must appear in that order,
//! and the last one must be the final verdict. Needs neither the CLIs nor a network.
//!
//! The labels are in tests/fixtures/e2e/verdicts.toml (what a person watching the screen would
//! say, with why); fixtures the classifier gets wrong today are listed there with `wrong = "…"`
//! and are only printed, so the file is also the list of rule defects left to fix.

use std::path::Path;
use switchyard::core::classify::VerdictKind;
use switchyard::core::config::Config;
use switchyard::host::replay::{replay, Recording, Step};

#[derive(serde::Deserialize)]
struct Labels {
    fixture: Vec<Label>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)] // `why` is for the reader of the TOML
struct Label {
    path: String,
    profile: String,
    /// Verdict kinds in the order they must appear (a subsequence of the timeline); the last is
    /// the final verdict.
    sequence: Vec<String>,
    why: String,
    /// Replay only the output up to this time (ms from the start of the recording): the moment
    /// switchyard decided, as its journal says; what the CLI printed while it was being stopped
    /// (exit screens, "resume this session") is not part of the question.
    #[serde(default)]
    until_ms: Option<u64>,
    /// The folded timeline must be exactly `sequence` (no other verdict in between).
    #[serde(default)]
    exact: bool,
    /// Set when today's rules get this session wrong: what they say instead.
    #[serde(default)]
    wrong: Option<String>,
}

fn label(kind: VerdictKind) -> String {
    match kind {
        VerdictKind::Exited(_) => "exited".into(),
        k => k.label(),
    }
}

/// The timeline's kinds with consecutive repeats folded.
fn kinds(steps: &[Step]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in steps {
        let k = label(s.verdict.kind);
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

/// True when `want` is a subsequence of `got` and ends where `got` ends.
fn matches(got: &[String], want: &[String]) -> bool {
    let mut it = got.iter();
    want.iter().all(|w| it.any(|g| g == w)) && got.last() == want.last()
}

#[test]
fn real_agent_sessions_from_the_harness_give_the_labelled_verdicts_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let labels: Labels =
        toml::from_str(&std::fs::read_to_string(root.join("e2e/verdicts.toml")).unwrap()).unwrap();
    let config = Config::defaults();
    let compiled = config.compile().unwrap();
    let (mut checked, mut failures, mut known_wrong) = (0, Vec::new(), Vec::new());
    for l in &labels.fixture {
        let mut rec = Recording::load(&root.join(format!("{}.bytes", l.path)))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(until) = l.until_ms {
            rec.chunks.retain(|c| c.0 <= until);
        }
        assert!(!rec.chunks.is_empty(), "{}: empty recording", l.path);
        let rules = compiled
            .rules
            .get(&l.profile)
            .unwrap_or_else(|| panic!("{}: no profile {}", l.path, l.profile));
        let steps = replay(&rec, rules, config.heal.stall_ms, 10_000);
        let got = kinds(&steps);
        let ok = if l.exact {
            got == l.sequence
        } else {
            matches(&got, &l.sequence)
        };
        println!(
            "{:<36} {:<5} got {:?}  want {:?}",
            l.path,
            if ok { "ok" } else { "MISS" },
            got,
            l.sequence
        );
        match (&l.wrong, ok) {
            (None, true) => checked += 1,
            (None, false) => failures.push(format!(
                "{}: got {got:?}, want {:?} in order\n{}",
                l.path,
                l.sequence,
                switchyard::host::replay::render(&steps)
            )),
            (Some(w), _) => known_wrong.push(format!("{}: {w} (rules now: {got:?})", l.path)),
        }
    }
    for w in &known_wrong {
        println!("known wrong: {w}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 4, "at least one session per CLI is checked");
}

/// Reads a JSONL side file of a fixture (`t` in epoch seconds on every line).
fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Claude Code 2.1.330's raw hook events, recorded by the harness (tests/harness/agents-e2e/hooklog.py),
/// through the same reader `switchyard hook` uses: a turn that edits and commits reads as
/// running (session start, prompt, the Bash tool before and after) and then idle (Stop), and
/// the Stop event comes within 2 s of the model's final message (what makes "done within 2 s"
/// hold for claude). With the deny-listed command the session never reaches Stop.
#[test]
fn claude_hook_events_recorded_by_the_harness_read_as_the_turn_went() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e");
    let reports = |name: &str| -> Vec<(f64, String, String)> {
        jsonl(&root.join(format!("{name}.hooks.jsonl")))
            .iter()
            .filter_map(|e| {
                let r = switchyard::core::classify::report_from_claude_hook(&e["hook"])?;
                Some((e["t"].as_f64().unwrap(), r.event, label(r.kind)))
            })
            .collect()
    };
    for name in ["claude-normal", "claude-normal-ask"] {
        let got = reports(name);
        let events: Vec<&str> = got.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            events,
            [
                "SessionStart",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "Stop"
            ],
            "{name}"
        );
        let kinds: Vec<&str> = got.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(
            kinds,
            ["running", "running", "running", "running", "idle"],
            "{name}"
        );
        let model = jsonl(&root.join(format!("{name}.model.jsonl")));
        let final_at = model
            .iter()
            .rev()
            .find(|e| e["event"] == "final")
            .map(|e| e["t"].as_f64().unwrap())
            .expect("the model sent its final message");
        let stop_at = got.last().unwrap().0;
        assert!(
            (0.0..2.0).contains(&(stop_at - final_at)),
            "{name}: Stop {:.2} s after the final message",
            stop_at - final_at
        );
    }
    let deny = reports("claude-deny-ask");
    assert!(!deny.is_empty() && deny.iter().all(|r| r.2 == "running"));
    assert!(deny.iter().all(|r| r.1 != "Stop"));
}

/// The `rate429` sessions recorded with resuming (codex-cli 0.169.0, Claude Code 2.1.330,
/// opencode 1.18.33; 300 s of 429 with retry-after 20 from the model server;
/// `<cli>-rate429resume.*`): each agent was left alone while it retried by itself, paused once
/// it gave up, started again with its profile's `resume` argv and ended `complete`; the model
/// server saw the resumed conversation (the task's prompt, then the resume prompt) and one tool
/// call per task. Replayed through today's rules, the first attempt's screen shows the agent's
/// own retrying (a `retrying` rule, or opencode's retry line) before the limit it gave up on.
#[test]
fn rate_limited_agents_are_left_alone_while_retrying_then_resumed_with_their_conversation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e");
    let config = Config::defaults();
    let compiled = config.compile().unwrap();
    for cli in ["codex", "claude", "opencode"] {
        let name = format!("{cli}-rate429resume");
        let journal = jsonl(&root.join(format!("{name}.journal.jsonl")));
        let text = |e: &serde_json::Value| e["message"].as_str().unwrap_or("").to_string();
        let at = |pred: &dyn Fn(&serde_json::Value) -> bool| journal.iter().position(pred);
        let left_alone = at(&|e| e["kind"] == "heal" && text(e).contains("retries by itself"))
            .unwrap_or_else(|| panic!("{name}: never left alone while retrying"));
        let paused = at(&|e| e["kind"] == "heal" && text(e).contains("tasks pause for"))
            .unwrap_or_else(|| panic!("{name}: never paused"));
        let resumed = at(&|e| e["kind"] == "start" && e["data"]["resume"] == true)
            .unwrap_or_else(|| panic!("{name}: never started with the resume argv"));
        assert!(
            left_alone < paused && paused < resumed,
            "{name}: left alone, paused, resumed in that order"
        );
        let last_status = journal
            .iter()
            .rev()
            .find(|e| e["kind"] == "status")
            .map(|e| e["data"]["to"].clone());
        assert_eq!(last_status, Some("complete".into()), "{name}");
        let model = jsonl(&root.join(format!("{name}.model.jsonl")));
        let carried = model.iter().any(|e| {
            let users: Vec<&str> = e["users"]
                .as_array()
                .map(|a| a.iter().filter_map(|u| u.as_str()).collect())
                .unwrap_or_default();
            let joined = users.join("\n");
            e["event"] == "request"
                && joined.find("This is a test of").is_some_and(|task| {
                    joined
                        .rfind("Continue where you left off")
                        .is_some_and(|r| task < r)
                })
        });
        assert!(
            carried,
            "{name}: no request carried the earlier conversation"
        );
        let tool_calls = model.iter().filter(|e| e["event"] == "tool_call").count();
        assert!(tool_calls >= 1, "{name}: the task's tool was called");
        let rec = Recording::load(&root.join(format!("{name}-a1.bytes")))
            .unwrap_or_else(|e| panic!("{e}"));
        let steps = replay(&rec, &compiled.rules[cli], config.heal.stall_ms, 10_000);
        assert!(
            steps
                .iter()
                .any(|s| s.verdict.kind == VerdictKind::RateLimited
                    && s.verdict.evidence.rule.ends_with("-rate-limit-retrying")),
            "{name}: the first attempt's retrying is recognised\n{}",
            switchyard::host::replay::render(&steps)
        );
    }
}
