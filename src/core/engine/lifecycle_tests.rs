//! Lifecycle policy with plain values and a fake clock (ms from 0): review and fix rounds, the
//! merge queue and resolve rounds, conflict warnings, pull requests.

use super::*;
use crate::core::config::Config;
use crate::core::engine::{Event, Round};
use crate::core::findings::{Finding, Severity};
use crate::core::manifest::Manifest;
use crate::core::plan::Plan;

fn engine(json: &str, extra: &str) -> Engine {
    let config = Config::from_layers(&[
        ("defaults".into(), crate::core::config::DEFAULTS.into()),
        (
            "test.toml".into(),
            "[heal]\nstall_ms = 10000\nbackoff_ms = 1000\nmax_attempts = 2\n[agents.fake]\ncommand = [\"fake\", \"{prompt}\"]\n[agents.rev]\ncommand = [\"rev\", \"{prompt}\"]\n".into(),
        ),
        ("extra.toml".into(), extra.into()),
    ])
    .unwrap();
    let m = Manifest::parse(json).unwrap();
    let plan = Plan::build(&m).unwrap();
    Engine::new(m, plan, config, 0).unwrap()
}

fn spec(fx: &[Effect]) -> Option<crate::core::engine::StartSpec> {
    fx.iter().find_map(|e| match e {
        Effect::Start(s) => Some(s.clone()),
        _ => None,
    })
}

fn started(e: &mut Engine, i: usize, now: Ms) {
    e.update(
        Event::Started {
            task: i,
            worktree: format!("/w/{}", e.plan.ids[i]),
            branch: format!("b-{}", e.plan.ids[i]),
            base_commit: "abc".into(),
            argv: vec!["x".into()],
        },
        now,
    );
}

fn exited(e: &mut Engine, i: usize, now: Ms) -> Vec<Effect> {
    e.update(
        Event::Exited {
            task: i,
            code: 0,
            commits_ahead: Some(1),
            uncommitted: Some(0),
        },
        now,
    )
}

fn finding(sev: Severity) -> Finding {
    Finding {
        severity: sev,
        file: Some("a.md".into()),
        line: Some(3),
        message: "wrong".into(),
        reviewers: vec![],
    }
}

fn reviewed(e: &mut Engine, i: usize, round: u32, list: Vec<Finding>, now: Ms) -> Vec<Effect> {
    e.update(
        Event::Reviewed {
            task: i,
            round,
            result: Ok(list),
        },
        now,
    )
}

const ONE: &str = r#"{"phases":[{"tasks":[{"id":"a","agent":"fake","files":["a.md"]}]}]}"#;
const TWO: &str = r#"{"phases":[{"tasks":[
  {"id":"a","agent":"fake","files":["a.md"]},
  {"id":"b","agent":"fake","files":["b.md"]}]}]}"#;
const CHAIN: &str = r#"{"phases":[{"tasks":[
  {"id":"a","agent":"fake","files":["a.md"]},
  {"id":"b","agent":"fake","files":["b.md"],"dependsOn":["a"]}]}]}"#;

#[test]
fn without_lifecycle_config_a_done_task_is_complete() {
    let mut e = engine(ONE, "");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    assert_eq!(e.status(0), Status::Complete);
    assert!(e.is_settled());
}

#[test]
fn a_blocking_finding_sends_the_task_to_a_fix_round_then_review_passes() {
    let mut e = engine(
        ONE,
        "[review]\nenabled = true\nagent = \"rev\"\nblock_on = \"major\"\nmax_rounds = 2\n",
    );
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    let fx = exited(&mut e, 0, 10);
    assert_eq!(e.status(0), Status::Review);
    // The reviewer starts in the implementer's slot, with the reviewer profile and no new attempt.
    let s = spec(&fx).expect("the reviewer starts at once (no worker left)");
    assert_eq!(s.agent, "rev");
    assert_eq!(s.round, Round::Review(1));
    assert_eq!(s.attempt, 1);
    assert_eq!(
        s.env.get("SWITCHYARD_ROLE").map(String::as_str),
        Some("reviewer")
    );
    assert!(
        s.prompt.contains("{findings_file}"),
        "the shell fills in the path"
    );
    assert!(!e.is_settled());
    started(&mut e, 0, 11);
    let fx = exited(&mut e, 0, 20);
    assert!(fx.contains(&Effect::CollectFindings { task: 0, round: 1 }));
    // A result for another round is ignored.
    reviewed(&mut e, 0, 2, vec![], 21);
    assert_eq!(e.status(0), Status::Review);
    let fx = reviewed(&mut e, 0, 1, vec![finding(Severity::Critical)], 22);
    assert_eq!(e.status(0), Status::Fix);
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::TaskLog { text, .. } if text.contains("critical"))));
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Journal(j) if j.kind == "review")));
    let s = spec(&fx).expect("the fix round starts");
    assert_eq!(s.agent, "fake");
    assert_eq!(s.round, Round::Fix(1));
    assert_eq!(s.attempt, 1, "a fix round does not use up an attempt");
    assert!(s.prompt.contains("wrong") && s.prompt.contains("a.md"));
    assert_eq!(e.task(0).attempts, Some(1));
    started(&mut e, 0, 23);
    let fx = exited(&mut e, 0, 30);
    assert_eq!(e.status(0), Status::Review);
    assert_eq!(spec(&fx).unwrap().round, Round::Review(2));
    started(&mut e, 0, 31);
    exited(&mut e, 0, 40);
    reviewed(&mut e, 0, 2, vec![finding(Severity::Minor)], 41);
    assert_eq!(
        e.status(0),
        Status::Complete,
        "minor findings do not block at major"
    );
    assert!(e.is_settled());
}

#[test]
fn blocking_findings_after_max_rounds_need_a_person() {
    let mut e = engine(ONE, "[review]\nenabled = true\nmax_rounds = 1\n");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    started(&mut e, 0, 11);
    exited(&mut e, 0, 12);
    reviewed(&mut e, 0, 1, vec![finding(Severity::Major)], 13);
    assert_eq!(e.status(0), Status::Fix);
    started(&mut e, 0, 14);
    exited(&mut e, 0, 15);
    started(&mut e, 0, 16);
    exited(&mut e, 0, 17);
    let fx = reviewed(&mut e, 0, 2, vec![finding(Severity::Major)], 18);
    assert_eq!(e.status(0), Status::NeedsAttention);
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Attention { reason, .. } if reason.contains("max_rounds"))));
}

#[test]
fn unreadable_findings_need_a_person_and_a_per_task_override_skips_review() {
    let mut e = engine(ONE, "[review]\nenabled = true\n");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    started(&mut e, 0, 11);
    exited(&mut e, 0, 12);
    e.update(
        Event::Reviewed {
            task: 0,
            round: 1,
            result: Err("no JSON findings found".into()),
        },
        13,
    );
    assert_eq!(e.status(0), Status::NeedsAttention);

    let json =
        r#"{"phases":[{"tasks":[{"id":"a","agent":"fake","files":["a.md"],"review":false}]}]}"#;
    let mut e = engine(json, "[review]\nenabled = true\n");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    assert_eq!(e.status(0), Status::Complete);
}

#[test]
fn an_idle_reviewer_is_stopped_and_its_findings_read() {
    let mut e = engine(ONE, "[review]\nenabled = true\n");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    started(&mut e, 0, 11);
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 1,
            uncommitted: 0,
        },
        20,
    );
    assert!(fx.contains(&Effect::Kill { task: 0 }));
    assert!(fx.contains(&Effect::CollectFindings { task: 0, round: 1 }));
    // Its exit after the stop reads nothing twice.
    let fx = exited(&mut e, 0, 21);
    assert!(!fx
        .iter()
        .any(|f| matches!(f, Effect::CollectFindings { .. })));
    assert_eq!(e.status(0), Status::Review);
}

const MERGE: &str = "[merge]\nenabled = true\ninto = \"int\"\nmax_resolve_rounds = 1\n";

#[test]
fn the_merge_queue_merges_one_at_a_time_and_dependents_start_from_the_integration_branch() {
    let mut e = engine(CHAIN, MERGE);
    let fx = e.update(Event::Tick, 0);
    assert_eq!(
        spec(&fx).unwrap().base,
        "int",
        "new branches start from the integration branch"
    );
    started(&mut e, 0, 1);
    let fx = exited(&mut e, 0, 10);
    assert_eq!(e.status(0), Status::Merging);
    assert!(spec(&fx).is_none(), "b waits until a merged");
    let m = fx.iter().find_map(|f| match f {
        Effect::Merge { branch, into, .. } => Some((branch.clone(), into.clone())),
        _ => None,
    });
    assert_eq!(m, Some(("b-a".into(), "int".into())));
    assert!(!e.is_settled());
    let fx = e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::Merged {
                commit: "0123456789abcdef".into(),
                fast_forward: true,
            },
        },
        11,
    );
    assert_eq!(e.status(0), Status::Complete);
    let s = spec(&fx).expect("b starts once a merged");
    assert_eq!((s.task_id.as_str(), s.base.as_str()), ("b", "int"));
}

#[test]
fn merges_queue_behind_the_one_running() {
    let mut e = engine(TWO, MERGE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    started(&mut e, 1, 1);
    let fx = exited(&mut e, 0, 10);
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Merge { task: 0, .. })));
    let fx = exited(&mut e, 1, 11);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Merge { .. })),
        "one merge at a time"
    );
    let fx = e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::UpToDate,
        },
        12,
    );
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Merge { task: 1, .. })));
}

fn conflict() -> ConflictInfo {
    ConflictInfo {
        path: "shared.md".into(),
        ours: vec![(3, 5)],
        theirs: vec![(3, 4)],
        hunks: "<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs".into(),
    }
}

#[test]
fn a_merge_conflict_gets_a_resolve_round_then_merges_or_needs_a_person() {
    let mut e = engine(ONE, MERGE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    let fx = e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::Conflicts(vec![conflict()]),
        },
        11,
    );
    assert_eq!(e.status(0), Status::Fix);
    let s = spec(&fx).expect("the resolve round starts");
    assert_eq!(s.round, Round::Resolve(1));
    assert_eq!(s.merge_first.as_deref(), Some("int"));
    assert!(s.prompt.contains("shared.md lines 3-5 / 3-4") && s.prompt.contains("<<<<<<<"));
    assert!(fx.iter().any(|f| matches!(f, Effect::Journal(j) if j.kind == "conflict" && j.message.contains("shared.md"))));
    started(&mut e, 0, 12);
    let fx = exited(&mut e, 0, 20);
    assert_eq!(
        e.status(0),
        Status::Merging,
        "a resolved task goes straight back to the queue"
    );
    assert!(fx.iter().any(|f| matches!(f, Effect::Merge { .. })));
    e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::Conflicts(vec![conflict()]),
        },
        21,
    );
    assert_eq!(
        e.status(0),
        Status::NeedsAttention,
        "max_resolve_rounds = 1"
    );
}

#[test]
fn on_conflict_needs_attention_and_a_failed_merge_is_an_error() {
    let mut e = engine(ONE, &format!("{MERGE}on_conflict = \"needs_attention\"\n"));
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::Conflicts(vec![conflict()]),
        },
        11,
    );
    assert_eq!(e.status(0), Status::NeedsAttention);

    let mut e = engine(ONE, MERGE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    e.update(
        Event::MergeDone {
            task: 0,
            outcome: MergeOutcome::Failed("int is checked out with changes in /repo".into()),
        },
        11,
    );
    assert_eq!(e.status(0), Status::Error);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("checked out"));
}

const WARN: &str = "[warn]\nenabled = true\ninterval_ms = 5000\nquiet_ms = 1000\n";

fn predicts(fx: &[Effect]) -> Vec<(usize, Vec<Option<usize>>)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Predict { task, against, .. } => {
                Some((*task, against.iter().map(|a| a.0).collect()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn predictions_are_debounced_and_bounded_per_task() {
    let mut e = engine(TWO, WARN);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    started(&mut e, 1, 1);
    e.update(Event::Activity { task: 0 }, 100);
    assert!(
        predicts(&e.update(Event::Tick, 500)).is_empty(),
        "not quiet yet"
    );
    e.update(Event::Activity { task: 0 }, 600);
    let fx = e.update(Event::Tick, 1700);
    assert_eq!(predicts(&fx), vec![(0, vec![Some(1)])]);
    // Busy: more changes, but at most one prediction per interval (and none while one runs).
    e.update(Event::Activity { task: 0 }, 1800);
    assert!(predicts(&e.update(Event::Tick, 3000)).is_empty());
    e.update(
        Event::Predicted {
            task: 0,
            results: vec![(Some(1), vec![])],
            error: None,
        },
        3100,
    );
    assert!(
        predicts(&e.update(Event::Tick, 4000)).is_empty(),
        "interval not over"
    );
    assert_eq!(
        predicts(&e.update(Event::Tick, 6800)),
        vec![(0, vec![Some(1)])]
    );
}

#[test]
fn a_predicted_conflict_marks_both_tasks_and_can_pause_the_later_one() {
    let mut e = engine(TWO, &format!("{WARN}pause_on_conflict = true\n"));
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    started(&mut e, 1, 1);
    e.runs[1].run_started_at = Some(5); // b started later
    e.update(Event::Activity { task: 0 }, 100);
    e.update(Event::Tick, 1200);
    let fx = e.update(
        Event::Predicted {
            task: 0,
            results: vec![(Some(1), vec![conflict()])],
            error: None,
        },
        1300,
    );
    assert_eq!(e.conflicts_of(0), vec!["b".to_string()]);
    assert_eq!(e.conflicts_of(1), vec!["a".to_string()]);
    let j = fx.iter().find_map(|f| match f {
        Effect::Journal(j) if j.kind == "conflict" => Some(j.message.clone()),
        _ => None,
    });
    assert_eq!(
        j.as_deref(),
        Some("predicted conflict with b: shared.md lines 3-5 / 3-4")
    );
    assert!(
        fx.contains(&Effect::Hold { task: 1, on: true }),
        "the later task is held: {fx:?}"
    );
    assert_eq!(e.status(1), Status::Running, "held, not needs_attention");
    assert!(e
        .task(1)
        .last_verdict
        .as_deref()
        .unwrap()
        .starts_with("held until a merged"));
    assert_eq!(e.status(0), Status::Running);

    // The same conflict again is not journaled twice; a clean prediction clears both marks.
    let fx = e.update(
        Event::Predicted {
            task: 0,
            results: vec![(Some(1), vec![conflict()])],
            error: None,
        },
        7000,
    );
    assert!(!fx
        .iter()
        .any(|f| matches!(f, Effect::Journal(j) if j.kind == "conflict")));
    e.update(
        Event::Predicted {
            task: 0,
            results: vec![(Some(1), vec![])],
            error: None,
        },
        8000,
    );
    assert!(e.conflicts_of(0).is_empty() && e.conflicts_of(1).is_empty());
    // Held, it is not taken for stalled however long it is silent (stall_ms = 10 s).
    let fx = e.update(Event::Tick, 30_000);
    assert!(
        !fx.iter()
            .any(|f| matches!(f, Effect::Write { task: 1, .. })),
        "{fx:?}"
    );
    assert_eq!(e.status(1), Status::Running);
    // The earlier task finishes: the later one goes on.
    let fx = exited(&mut e, 0, 30_100);
    assert_eq!(e.status(0), Status::Complete);
    assert!(fx.contains(&Effect::Hold { task: 1, on: false }), "{fx:?}");
}

const PR: &str = "finish = \"pr\"\n[pr]\nremote = \"origin\"\nbase = \"main\"\npoll_ms = 2000\nwait_for_merge = true\n";

fn open_pr(fx: &[Effect]) -> Option<PrRequest> {
    fx.iter().find_map(|f| match f {
        Effect::OpenPr { req, .. } => Some(req.clone()),
        _ => None,
    })
}

#[test]
fn a_pull_request_is_opened_polled_at_a_bounded_rate_and_merged() {
    let json = r#"{"phases":[{"tasks":[{"id":"a","issue":7,"title":"Fix it","agent":"fake","files":["a.md"]}]}]}"#;
    let mut e = engine(json, PR);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    let fx = exited(&mut e, 0, 10);
    let req = open_pr(&fx).expect("push and open a PR");
    assert_eq!(
        (
            req.branch.as_str(),
            req.base.as_deref().unwrap(),
            req.remote.as_str()
        ),
        ("b-a", "main", "origin")
    );
    assert!(crate::host::pr::body(&req.summary).starts_with("Closes #7"));
    assert_eq!(req.title, "Fix it (#7)");
    assert!(!e.is_settled(), "the push is under way");
    e.update(
        Event::PrOpened {
            task: 0,
            result: Ok(12),
        },
        20,
    );
    assert_eq!(e.status(0), Status::PrOpen);
    assert_eq!(e.task(0).pr_number, Some(serde_json::json!(12)));
    assert!(!e.is_settled(), "wait_for_merge");
    let polls = |fx: &[Effect]| {
        fx.iter()
            .filter(|f| matches!(f, Effect::PollPr { .. }))
            .count()
    };
    assert_eq!(polls(&e.update(Event::Tick, 1000)), 0, "poll_ms not over");
    assert_eq!(polls(&e.update(Event::Tick, 2100)), 1);
    assert_eq!(polls(&e.update(Event::Tick, 5000)), 0, "one poll at a time");
    e.update(
        Event::PrPolled {
            task: 0,
            result: Ok(PrStatus::Open),
        },
        5100,
    );
    assert_eq!(polls(&e.update(Event::Tick, 6000)), 0);
    assert_eq!(polls(&e.update(Event::Tick, 7200)), 1);
    e.update(
        Event::PrPolled {
            task: 0,
            result: Ok(PrStatus::Merged),
        },
        7300,
    );
    assert_eq!(e.status(0), Status::Merged);
    assert!(e.is_settled());
    assert_eq!(e.exit_code(), 0);
}

#[test]
fn requested_changes_get_a_fix_round_and_the_branch_is_pushed_again() {
    let mut e = engine(ONE, PR);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    e.update(
        Event::PrOpened {
            task: 0,
            result: Ok(3),
        },
        20,
    );
    e.update(Event::Tick, 2100);
    let fx = e.update(
        Event::PrPolled {
            task: 0,
            result: Ok(PrStatus::ChangesRequested("rename foo".into())),
        },
        2200,
    );
    assert_eq!(e.status(0), Status::Fix);
    let s = spec(&fx).unwrap();
    assert!(s.prompt.contains("rename foo") && s.prompt.contains("#3"));
    started(&mut e, 0, 2300);
    let fx = exited(&mut e, 0, 2400);
    let req = open_pr(&fx).expect("pushed again");
    assert_eq!(req.existing, Some(3), "the same pull request, updated");
}

#[test]
fn a_pull_request_error_is_an_error_on_that_task_only() {
    let mut e = engine(TWO, PR);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    started(&mut e, 1, 1);
    exited(&mut e, 0, 10);
    e.update(
        Event::PrOpened {
            task: 0,
            result: Err(
                "`gh` not found on PATH: install the GitHub CLI and run `gh auth login`".into(),
            ),
        },
        20,
    );
    assert_eq!(e.status(0), Status::Error);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("gh auth login"));
    assert_eq!(e.status(1), Status::Running, "the rest of the run goes on");
}

#[test]
fn a_run_resumed_in_review_or_merging_picks_up_where_it_was() {
    let json = r#"{"phases":[{"tasks":[
      {"id":"a","agent":"fake","files":["a.md"],"status":"review","branch":"b-a","attempts":1},
      {"id":"b","agent":"fake","files":["b.md"],"status":"merging","branch":"b-b","attempts":1}]}]}"#;
    let mut e = engine(json, &format!("{MERGE}[review]\nenabled = true\n"));
    let fx = e.update(Event::Tick, 0);
    assert_eq!(spec(&fx).map(|s| s.round), Some(Round::Review(1)));
    assert!(e.queue.waiting.contains(&1) || e.queue.merging == Some(1));
}

#[test]
fn round_counters_are_kept_in_the_manifest_and_a_resumed_run_goes_on_counting() {
    let review =
        "[review]\nenabled = true\nagent = \"rev\"\nblock_on = \"major\"\nmax_rounds = 2\n";
    let mut e = engine(ONE, review);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    started(&mut e, 0, 11);
    exited(&mut e, 0, 20);
    reviewed(&mut e, 0, 1, vec![finding(Severity::Critical)], 22);
    let t = e.task(0);
    assert_eq!((t.review_round, t.fix_rounds), (Some(1), Some(1)));
    let json = e.manifest.to_json();
    assert!(
        json.contains("\"reviewRound\": 1") && json.contains("\"fixRounds\": 1"),
        "{json}"
    );
    // A run killed during review 2 after fix round 2 resumes in review 3, and blocking findings
    // then exceed review.max_rounds instead of starting fix round 1 again.
    let killed = r#"{"phases":[{"tasks":[{"id":"a","title":"A","agent":"fake","files":["a.md"],"status":"review","branch":"b-a","reviewRound":2,"fixRounds":2}]}]}"#;
    let mut e = engine(killed, review);
    let fx = e.update(Event::Tick, 0);
    let s = spec(&fx).expect("the review resumes");
    assert_eq!(s.round, Round::Review(3));
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    reviewed(&mut e, 0, 3, vec![finding(Severity::Major)], 12);
    assert_eq!(e.status(0), Status::NeedsAttention);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("after 2 fix round(s)"));
}

#[test]
fn a_run_killed_in_a_fix_round_resumes_that_round_with_its_findings() {
    let review =
        "[review]\nenabled = true\nagent = \"rev\"\nblock_on = \"major\"\nmax_rounds = 2\n";
    let mut e = engine(ONE, review);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 1);
    exited(&mut e, 0, 10);
    started(&mut e, 0, 11);
    exited(&mut e, 0, 20);
    let fx = reviewed(&mut e, 0, 1, vec![finding(Severity::Critical)], 22);
    let (round, prompt) = fx
        .iter()
        .find_map(|f| match f {
            Effect::SaveRound {
                task: 0,
                round,
                prompt,
            } => Some((*round, prompt.clone())),
            _ => None,
        })
        .expect("the fix round's prompt is kept for a resume");
    assert_eq!(round, Round::Fix(1));
    assert_eq!(Round::from_label(&round.label()), Some(round));
    // The run is killed while the fix round works: the manifest says `fix`.
    started(&mut e, 0, 23);
    let killed = e.manifest.to_json();
    assert!(killed.contains("\"status\": \"fix\""), "{killed}");

    // Without the kept prompt the task would start over with its own prompt.
    let mut plain = engine(&killed, review);
    let s = spec(&plain.update(Event::Tick, 0)).expect("it starts again");
    assert!(!s.prompt.contains("wrong"));

    let mut e = engine(&killed, review);
    e.restore_round(0, round, prompt);
    let s = spec(&e.update(Event::Tick, 0)).expect("the fix round starts again");
    assert_eq!(s.round, Round::Fix(1));
    assert!(
        s.prompt.contains("wrong") && s.prompt.contains("a.md"),
        "{}",
        s.prompt
    );
    assert_eq!(e.status(0), Status::Fix);
    // Done with the fix: the next review is round 2, as without the kill.
    started(&mut e, 0, 1);
    let fx = exited(&mut e, 0, 10);
    assert_eq!(spec(&fx).map(|s| s.round), Some(Round::Review(2)));
}

#[test]
fn round_labels_read_back_and_nothing_else_does() {
    for r in [
        Round::Work,
        Round::Review(3),
        Round::Fix(1),
        Round::Resolve(2),
    ] {
        assert_eq!(Round::from_label(&r.label()), Some(r));
    }
    for bad in ["", "fix", "fix 0", "fix x", "mend 2", "fix  2"] {
        assert_eq!(Round::from_label(bad), None, "{bad:?}");
    }
}
