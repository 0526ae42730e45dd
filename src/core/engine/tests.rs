//! Engine policies with plain values and a fake clock (ms counted from 0).

use super::*;
use crate::core::action::{Action, ActionKind};
use crate::core::config::Config;

const SEED: &str = include_str!("../../../tests/fixtures/seed-manifest.json");

/// An action by hand on task `i` (by its id, as keys and `ctl` send it).
fn act(e: &Engine, kind: ActionKind, i: usize) -> Event {
    Event::Action(Action::on(kind, e.plan.ids[i].clone()))
}

fn config(extra: &str) -> Config {
    Config::from_layers(&[
        ("defaults".into(), crate::core::config::DEFAULTS.into()),
        (
            "test.toml".into(),
            "[heal]\nstall_ms = 10000\nbackoff_ms = 1000\nmax_attempts = 3\n[agents.fake]\ncommand = [\"fake\", \"{prompt}\"]\n".into(),
        ),
        ("extra.toml".into(), extra.into()),
    ])
    .unwrap()
}

fn engine_with(json: &str, extra: &str) -> Engine {
    let m = Manifest::parse(json).unwrap();
    let plan = Plan::build(&m).unwrap();
    Engine::new(m, plan, config(extra), 0).unwrap()
}

fn engine(json: &str) -> Engine {
    engine_with(json, "")
}

fn starts(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Start(s) => Some(s.task_id.clone()),
            _ => None,
        })
        .collect()
}

fn writes(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Write { bytes, submit, .. } => {
                let mut text = String::from_utf8_lossy(bytes).into_owned();
                if *submit {
                    text.push('\r');
                }
                Some(text)
            }
            _ => None,
        })
        .collect()
}

fn started(e: &mut Engine, i: usize, now: Ms) -> Vec<Effect> {
    e.update(
        Event::Started {
            task: i,
            worktree: format!("/w/{}", e.plan.ids[i]),
            branch: "b".into(),
            base_commit: "abc".into(),
            argv: vec!["fake".into()],
        },
        now,
    )
}

fn screen(e: &mut Engine, i: usize, text: &str, now: Ms) -> Vec<Effect> {
    e.update(
        Event::Screen {
            task: i,
            screen: ScreenSnapshot::from_text(text),
            last_output_at: now,
        },
        now,
    )
}

fn exited(e: &mut Engine, i: usize, code: i32, commits: usize, now: Ms) -> Vec<Effect> {
    e.update(
        Event::Exited {
            task: i,
            code,
            commits_ahead: Some(commits),
            uncommitted: Some(0),
        },
        now,
    )
}

const ONE: &str = r#"{"phases":[{"tasks":[{"id":"a","agent":"fake","files":["x"]}]}]}"#;

#[test]
fn seed_example_starts_t1_and_t3_then_t2_after_t1() {
    let mut e = engine(SEED);
    let fx = e.update(Event::Tick, 0);
    assert_eq!(
        starts(&fx),
        vec!["t1", "t3"],
        "t1 has the longer critical path"
    );
    for i in 0..2 {
        started(&mut e, if i == 0 { 0 } else { 2 }, 10);
    }
    let fx = exited(&mut e, 0, 0, 1, 100);
    assert_eq!(e.status(0), Status::Complete);
    assert_eq!(starts(&fx), vec!["t2"]);
    // Phase 2 waits for all of phase 1.
    let t2 = e.plan.index_of("t2").unwrap();
    started(&mut e, t2, 110);
    let fx = exited(&mut e, t2, 0, 2, 200);
    assert!(starts(&fx).is_empty(), "t3 still runs: phase 2 waits");
    let fx = exited(&mut e, 2, 0, 1, 300);
    assert_eq!(
        starts(&fx),
        vec!["t4", "t7", "t6"],
        "by critical path, then manifest order"
    );
}

#[test]
fn max_parallel_caps_workers_and_a_task_without_files_runs_alone() {
    let json = r#"{"phases":[{"tasks":[
        {"id":"a","files":["1"]},{"id":"b","files":["2"]},{"id":"c","files":["3"]},
        {"id":"lone"},{"id":"d","files":["4"]}]}]}"#;
    let mut e = engine_with(json, "");
    e.max_parallel = 2;
    let fx = e.update(Event::Tick, 0);
    assert_eq!(starts(&fx), vec!["a", "b"]);
    started(&mut e, 0, 1);
    started(&mut e, 1, 1);
    let fx = exited(&mut e, 0, 0, 1, 50);
    assert_eq!(starts(&fx), vec!["c"]);
    started(&mut e, 2, 51);
    exited(&mut e, 1, 0, 1, 60);
    let fx = exited(&mut e, 2, 0, 1, 70);
    assert_eq!(
        starts(&fx),
        vec!["lone"],
        "the lone task waits for the others to drain"
    );
    let lone = e.plan.index_of("lone").unwrap();
    started(&mut e, lone, 71);
    assert!(
        starts(&e.update(Event::Tick, 80)).is_empty(),
        "nothing beside the lone task"
    );
    let fx = exited(&mut e, lone, 0, 1, 90);
    assert_eq!(starts(&fx), vec!["d"]);
}

#[test]
fn an_allow_listed_prompt_is_answered_once_quiet_and_journaled() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 10);
    screen(&mut e, 0, "working\nApply these edits to x? (y/n)", 1_000);
    assert!(
        writes(&e.update(Event::Tick, 1_100)).is_empty(),
        "not quiet long enough"
    );
    let fx = e.update(Event::Tick, 1_500);
    assert_eq!(writes(&fx), vec!["y\r"]);
    let journal: Vec<&JournalEntry> = fx
        .iter()
        .filter_map(|f| match f {
            Effect::Journal(j) if j.kind == "heal" => Some(j),
            _ => None,
        })
        .collect();
    assert_eq!(journal[0].data["bytes"], "y\r");
    assert!(journal[0].message.contains("answer (yes-no)"));
    // The same screen is not answered twice.
    assert!(writes(&e.update(Event::Tick, 3_000)).is_empty());
}

#[test]
fn a_deny_listed_prompt_escalates_and_is_never_answered() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 10);
    screen(&mut e, 0, "Overwrite config.toml? (y/n)", 1_000);
    let fx = e.update(Event::Tick, 2_000);
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::NeedsAttention);
    assert!(fx.iter().any(|f| matches!(f, Effect::Attention { .. })));
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("deny-list"));
    // A person answers; output resumes; the task runs again.
    e.update(
        Event::Action(Action::with_text(
            ActionKind::Answer,
            e.plan.ids[0].clone(),
            "n",
        )),
        3_000,
    );
    screen(
        &mut e,
        0,
        "Overwrite config.toml? (y/n) n\nok, skipping",
        3_100,
    );
    e.update(Event::Tick, 3_200);
    assert_eq!(e.status(0), Status::Running);
}

#[test]
fn an_unknown_prompt_escalates() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 10);
    screen(&mut e, 0, "Pick a model: Continue?", 1_000);
    // "continue" is allow-listed; a menu is not.
    assert_eq!(writes(&e.update(Event::Tick, 2_000)), vec!["y\r"]);
    screen(&mut e, 0, "Which branch? [main/dev] (y/n)", 3_000);
    let fx = e.update(Event::Tick, 4_000);
    assert_eq!(writes(&fx), vec!["y\r"], "the y/n form is allow-listed");
}

#[test]
fn a_failure_restarts_with_the_error_as_context_then_gives_up() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 10);
    screen(
        &mut e,
        0,
        "step 1\nerror: test suite failed: assertion failed",
        500,
    );
    let fx = exited(&mut e, 0, 1, 0, 600);
    assert!(starts(&fx).is_empty(), "back-off first");
    assert!(fx.iter().any(
        |f| matches!(f, Effect::SaveErrorLog { text, .. } if text.contains("assertion failed"))
    ));
    assert_eq!(e.status(0), Status::Running);
    assert!(starts(&e.update(Event::Tick, 1_500)).is_empty());
    let fx = e.update(Event::Tick, 1_600);
    let spec = fx
        .iter()
        .find_map(|f| match f {
            Effect::Start(s) => Some(s.clone()),
            _ => None,
        })
        .expect("restarted after 1000 ms");
    assert_eq!(spec.attempt, 2);
    assert!(spec
        .prompt
        .starts_with("CONTEXT: WORKER\nROLE: implementer"));
    assert!(spec
        .prompt
        .contains("\nTASK: Previous attempt 1 failed (exited with status 1)"));
    assert!(spec.prompt.contains("error: test suite failed"));
    let verdict = e.task(0).last_verdict.clone().unwrap();
    assert!(
        verdict.ends_with("exited with status 1: error: test suite failed: assertion failed"),
        "{verdict}"
    );
    started(&mut e, 0, 1_700);
    exited(&mut e, 0, 1, 0, 2_000);
    assert!(
        starts(&e.update(Event::Tick, 3_999)).is_empty(),
        "second back-off is 2000 ms"
    );
    assert_eq!(starts(&e.update(Event::Tick, 4_000)), vec!["a"]);
    started(&mut e, 0, 4_100);
    exited(&mut e, 0, 2, 0, 4_200);
    assert_eq!(e.status(0), Status::Error, "three attempts used");
    assert!(e.is_settled());
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn exit_zero_without_commits_is_not_complete() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 10);
    exited(&mut e, 0, 0, 0, 100);
    assert_eq!(e.status(0), Status::Running, "restart pending");
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("no commits ahead"));
}

#[test]
fn a_stall_is_nudged_then_restarted() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "• thinking…", 100);
    assert!(writes(&e.update(Event::Tick, 9_000)).is_empty());
    let fx = e.update(Event::Tick, 10_200);
    assert_eq!(e.status(0), Status::Stuck);
    assert_eq!(writes(&fx).len(), 1);
    assert!(writes(&fx)[0].starts_with("Please continue"));
    // Output resumes after the nudge: running again.
    screen(&mut e, 0, "• thinking…\n↻ nudged: continuing", 11_000);
    e.update(Event::Tick, 11_100);
    assert_eq!(e.status(0), Status::Running);
    // Stalls again: nudges are used up, so it restarts.
    let fx = e.update(Event::Tick, 21_200);
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    assert!(e.runs[0].restart_at.is_some());
    exited(&mut e, 0, 143, 0, 21_300);
    assert_eq!(
        e.status(0),
        Status::Running,
        "the kill was ours: no failure counted"
    );
    assert_eq!(e.task(0).attempts, Some(1));
}

#[test]
fn idle_at_its_prompt_with_commits_is_complete() {
    let json = r#"{"phases":[{"tasks":[{"id":"a","agent":"fake","files":["x"]}]}]}"#;
    let extra = "[[agents.fake.rules]]\nname = \"idle\"\nverdict = \"idle\"\npattern = \"^›\\\\s*$\"\nquiet_ms = 300\n";
    let mut e = engine_with(json, "");
    // Add an idle rule through the profile.
    e.policy = crate::core::config::Policy::compile(&config(extra)).unwrap();
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "done editing\n› ", 100);
    let fx = e.update(Event::Tick, 1_000);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 0,
            uncommitted: 0,
        },
        1_100,
    );
    assert!(writes(&fx)[0].contains("Commit your work"));
    screen(&mut e, 0, "committed\n› ", 2_000);
    let fx = e.update(Event::Tick, 3_000);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 1,
            uncommitted: 0,
        },
        3_100,
    );
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    assert_eq!(e.status(0), Status::Complete);
    exited(&mut e, 0, 143, 1, 3_200);
    assert_eq!(e.status(0), Status::Complete);
    assert_eq!(e.exit_code(), 0);
}

#[test]
fn an_idle_screen_before_the_first_turn_is_start_up_not_a_nudge() {
    // gemini 0.61 draws its empty input box ~2 s before it submits its --prompt-interactive
    // prompt: that idle screen must not be inspected or nudged.
    let json = r#"{"phases":[{"tasks":[{"id":"a","agent":"fake","files":["x"]}]}]}"#;
    let extra = "[[agents.fake.rules]]\nname = \"busy\"\nverdict = \"running\"\npattern = \"esc to cancel\"\nquiet_ms = 0\n\
                 [[agents.fake.rules]]\nname = \"idle\"\nverdict = \"idle\"\npattern = \"^>\\\\s+Type your message\"\nquiet_ms = 300\n";
    let mut e = engine_with(json, "");
    e.policy = crate::core::config::Policy::compile(&config(extra)).unwrap();
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "Tips\n>   Type your message", 100);
    for t in [1_000, 2_000, 3_000] {
        let fx = e.update(Event::Tick, t);
        assert!(
            !fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })),
            "at {t}"
        );
        assert!(writes(&fx).is_empty(), "at {t}");
    }
    // Then the turn runs and ends: the idle screen is acted on at once.
    screen(&mut e, 0, "⠋ Thinking (esc to cancel, 1s)", 3_100);
    e.update(Event::Tick, 3_200);
    screen(&mut e, 0, "Done.\n>   Type your message", 4_000);
    let fx = e.update(Event::Tick, 4_500);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    // An agent that never starts working is inspected (and nudged) once the grace is over.
    let mut e = engine_with(json, "");
    e.policy = crate::core::config::Policy::compile(&config(extra)).unwrap();
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, ">   Type your message", 100);
    assert!(!e
        .update(Event::Tick, 5_000)
        .iter()
        .any(|f| matches!(f, Effect::Inspect { task: 0 })));
    let fx = e.update(Event::Tick, heal::START_GRACE_MS + 100);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
}

#[test]
fn a_failed_dependency_blocks_its_dependents_until_retried() {
    let json = r#"{"phases":[{"tasks":[{"id":"a","files":["x"]},{"id":"b","files":["y"],"dependsOn":["a"]}]}]}"#;
    let mut e = engine_with(json, "[heal]\nmax_attempts = 1");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    exited(&mut e, 0, 1, 0, 10);
    assert_eq!(e.status(0), Status::Error);
    assert_eq!(e.status(1), Status::Blocked);
    assert!(e.is_settled());
    let fx = e.update(act(&e, ActionKind::Retry, 0), 20);
    assert_eq!(starts(&fx), vec!["a"]);
    assert_eq!(e.status(1), Status::Pending);
}

#[test]
fn a_missing_agent_binary_is_an_error_on_that_task_only() {
    let json = r#"{"phases":[{"tasks":[{"id":"a","files":["x"]},{"id":"b","files":["y"]}]}]}"#;
    let mut e = engine(json);
    e.update(Event::Tick, 0);
    e.update(
        Event::StartFailed {
            task: 0,
            error: "agent binary \"codex\" not found on PATH".into(),
        },
        5,
    );
    assert_eq!(e.status(0), Status::Error);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("not found on PATH"));
    assert_eq!(e.status(1), Status::Running);
}

#[test]
fn a_killed_run_resumes_running_tasks_and_keeps_finished_ones() {
    let json = r#"{"phases":[{"tasks":[
        {"id":"a","files":["x"],"status":"complete"},
        {"id":"b","files":["y"],"status":"running","attempts":1,"worktree":"/w/b","baseCommit":"abc"}]}]}"#;
    let mut e = engine(json);
    let fx = e.update(Event::Tick, 0);
    let spec = fx
        .iter()
        .find_map(|f| match f {
            Effect::Start(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(spec.task_id, "b");
    assert_eq!(
        spec.base, "abc",
        "same base, so the existing worktree is reused"
    );
    assert_eq!(spec.attempt, 2);
    assert_eq!(e.status(0), Status::Complete);
}

#[test]
fn quit_stops_workers_but_leaves_them_resumable() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    let fx = e.update(Event::Action(Action::global(ActionKind::Stop)), 10);
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    exited(&mut e, 0, 143, 0, 20);
    assert_eq!(e.status(0), Status::Running);
    assert!(starts(&e.update(Event::Tick, 30)).is_empty());
}

#[test]
fn skip_and_mark_done_let_dependents_go() {
    let json = r#"{"phases":[{"tasks":[{"id":"a","files":["x"]},{"id":"b","files":["x"]},{"id":"c","files":["x"]}]}]}"#;
    let mut e = engine(json);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    let fx = e.update(act(&e, ActionKind::Skip, 0), 10);
    assert_eq!(e.status(0), Status::Skipped);
    assert_eq!(starts(&fx), vec!["b"]);
    exited(&mut e, 0, 143, 0, 11);
    started(&mut e, 1, 12);
    let fx = e.update(act(&e, ActionKind::MarkDone, 1), 20);
    assert_eq!(e.status(1), Status::Complete);
    assert_eq!(starts(&fx), vec!["c"]);
}

#[test]
fn pause_holds_new_starts() {
    let mut e = engine(SEED);
    e.update(Event::Action(Action::global(ActionKind::PauseScheduler)), 0);
    assert!(starts(&e.update(Event::Tick, 1)).is_empty());
    let fx = e.update(
        Event::Action(Action::global(ActionKind::ResumeScheduler)),
        2,
    );
    assert_eq!(starts(&fx).len(), 2);
}

#[test]
fn an_unknown_agent_is_a_clear_error() {
    let m = Manifest::parse(r#"{"phases":[{"tasks":[{"id":"a","agent":"nope"}]}]}"#).unwrap();
    let plan = Plan::build(&m).unwrap();
    let err = Engine::new(m, plan, Config::defaults(), 0).unwrap_err();
    assert!(
        err.starts_with("task a: agent \"nope\" has no profile"),
        "{err}"
    );
}

#[test]
fn a_role_s_preamble_lens_scope_and_context_go_into_the_start() {
    let mut e = engine(
        r#"{"phases":[{"tasks":[
        {"id":"w","title":"Write it","files":["src/a.rs"],"agent":"fake"},
        {"id":"r1","title":"Review","role":"reviewer","lens":"risks","reads":["src/a.rs"],"agent":"fake","dependsOn":["w"]},
        {"id":"f","title":"Fix","role":"implementer","writes":["src/a.rs"],"context":["r1"],"agent":"fake","prompt":"Fix what the review found."}
        ]}]}"#,
    );
    let spec = spec_of(&e.update(Event::Tick, 0)).unwrap();
    assert_eq!(spec.task_id, "w");
    assert!(
        spec.prompt
            .starts_with("CONTEXT: WORKER\nROLE: implementer"),
        "{}",
        spec.prompt
    );
    assert!(
        spec.prompt
            .contains("\nSCOPE: may edit src/a.rs\nTASK: Fix issue #: Write it."),
        "{}",
        spec.prompt
    );
    assert!(spec.context.is_empty());
    // The reviewer: read-only, its lens, and it finishes without commits.
    let r1 = e.plan.index_of("r1").unwrap();
    let f = e.plan.index_of("f").unwrap();
    assert_eq!(e.plan.describe_waits(f), vec!["r1 (context)"]); // after w through r1
    let spec = spec_of(&e.update(Event::Action(Action::on(ActionKind::MarkDone, "w")), 1)).unwrap();
    assert_eq!(spec.task_id, "r1");
    assert!(
        spec.prompt.starts_with("CONTEXT: WORKER\nROLE: reviewer"),
        "{}",
        spec.prompt
    );
    assert!(
        spec.prompt
            .contains("\nLENS: risks\nSCOPE: read-only (do not edit or commit files)\nTASK: "),
        "{}",
        spec.prompt
    );
    started(&mut e, r1, 3);
    let fx = e.update(
        Event::Exited {
            task: r1,
            code: 0,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        4,
    );
    assert_eq!(e.task(r1).status, Status::Complete);
    let spec = spec_of(&fx).unwrap();
    assert_eq!(spec.task_id, "f");
    assert!(
        spec.prompt.ends_with("TASK: Fix what the review found."),
        "{}",
        spec.prompt
    );
    assert_eq!(
        spec.context,
        vec![crate::core::final_message::ContextSource {
            id: "r1".into(),
            reviewer: true,
            lens: Some("risks".into())
        }]
    );
}

#[test]
fn an_unknown_role_is_a_clear_error() {
    let m = Manifest::parse(r#"{"phases":[{"tasks":[{"id":"a","role":"critic"}]}]}"#).unwrap();
    let plan = Plan::build(&m).unwrap();
    let err = Engine::new(m, plan, Config::defaults(), 0).unwrap_err();
    assert_eq!(
        err,
        "task a: role \"critic\" is not a known role. Fix: use one of: implementer, researcher, reviewer, scout, verifier, or add [roles.critic] with a preamble to switchyard.toml"
    );
}

fn spec_of(fx: &[Effect]) -> Option<StartSpec> {
    fx.iter().find_map(|f| match f {
        Effect::Start(s) => Some(s.clone()),
        _ => None,
    })
}

#[test]
fn a_custom_ladder_from_toml_is_followed_step_by_step() {
    let extra = r#"
[heal.ladder]
stalled = [
  { action = "keys", text = "/clear\r" },
  { action = "nudge", text = "go on" },
  { action = "escalate" },
]
"#;
    let mut e = engine_with(ONE, extra);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "thinking", 100);
    assert_eq!(writes(&e.update(Event::Tick, 10_200)), vec!["/clear\r"]);
    assert_eq!(writes(&e.update(Event::Tick, 20_300)), vec!["go on\r"]);
    let fx = e.update(Event::Tick, 30_400);
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::NeedsAttention);
}

#[test]
fn ladders_reset_after_a_stable_stretch_of_work() {
    let extra = "[heal]\nstable_ms = 5000\n";
    let mut e = engine_with(ONE, extra);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "thinking", 100);
    assert_eq!(writes(&e.update(Event::Tick, 10_200)).len(), 1, "nudge 1");
    // Working again for longer than stable_ms: the stall ladder starts over.
    for t in (11_000..17_000).step_by(500) {
        screen(&mut e, 0, &format!("working {t}"), t);
        e.update(Event::Tick, t + 100);
    }
    assert!(e.runs[0].ladder.is_empty(), "{:?}", e.runs[0].ladder);
    let fx = e.update(Event::Tick, 27_000);
    assert_eq!(writes(&fx).len(), 1, "a nudge again, not a restart");
}

#[test]
fn automatic_keystrokes_are_capped() {
    let mut e = engine_with(ONE, "[heal]\nmax_auto_keys = 2\n");
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    for (k, t) in [1_000u64, 3_000, 5_000].iter().enumerate() {
        screen(&mut e, 0, &format!("step {k}\nContinue? (y/n)"), *t);
        e.update(Event::Tick, t + 600);
    }
    assert_eq!(e.runs[0].auto_keys, 2);
    assert_eq!(e.status(0), Status::NeedsAttention);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .contains("max_auto_keys"));
}

#[test]
fn uncommitted_changes_are_committed_when_the_ladder_says_so_then_verified() {
    let extra = r#"
[heal.ladder]
idle = [{ action = "commit" }, { action = "escalate" }]
[agents.fake]
verify = ["cargo", "test"]
[[agents.fake.rules]]
name = "idle"
verdict = "idle"
pattern = "^>$"
quiet_ms = 300
"#;
    let mut e = engine_with(ONE, extra);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "edited\n>", 100);
    let fx = e.update(Event::Tick, 1_000);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 0,
            uncommitted: 2,
        },
        1_100,
    );
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Commit { task: 0, .. })));
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 1,
            uncommitted: 0,
        },
        1_200,
    );
    let argv = fx.iter().find_map(|f| match f {
        Effect::Verify { argv, .. } => Some(argv.clone()),
        _ => None,
    });
    assert_eq!(argv, Some(vec!["cargo".to_string(), "test".to_string()]));
    assert_eq!(
        e.status(0),
        Status::Running,
        "not complete before verify passes"
    );
    // Verify fails: restart with its output as context.
    let fx = e.update(
        Event::Verified {
            task: 0,
            attempt: 1,
            ok: false,
            output: "test parse ... FAILED\nerror: 1 test failed".into(),
        },
        2_000,
    );
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    exited(&mut e, 0, 143, 1, 2_100);
    let spec = spec_of(&e.update(Event::Tick, 3_100)).expect("restarted");
    assert!(
        spec.prompt.contains("error: 1 test failed"),
        "{}",
        spec.prompt
    );
    started(&mut e, 0, 3_200);
    // A late pass for attempt 1 means nothing for attempt 2.
    e.update(
        Event::Verified {
            task: 0,
            attempt: 1,
            ok: true,
            output: "ok".into(),
        },
        3_300,
    );
    assert_eq!(e.status(0), Status::Running);
    exited(&mut e, 0, 0, 2, 4_000);
    let fx = e.update(Event::Tick, 4_100);
    let _ = fx;
    e.update(
        Event::Verified {
            task: 0,
            attempt: 2,
            ok: true,
            output: "ok".into(),
        },
        4_500,
    );
    assert_eq!(e.status(0), Status::Complete);
}

#[test]
fn a_rate_limit_pauses_the_agents_tasks_until_the_reset_time() {
    let json = r#"{"phases":[{"tasks":[
        {"id":"a","agent":"fake","files":["x"]},{"id":"b","agent":"fake","files":["y"]}]}]}"#;
    let extra = r#"
max_parallel = 1
[[agents.fake.rules]]
name = "limit"
verdict = "rate_limited"
pattern = "(?i)rate limit"
region = "last:3"
quiet_ms = 200
"#;
    let mut e = engine_with(json, extra);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "Rate limit reached. Try again in 30s.", 1_000);
    let fx = e.update(Event::Tick, 1_500);
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    assert_eq!(e.paused_agents["fake"], 31_500);
    exited(&mut e, 0, 143, 0, 1_600);
    assert!(
        starts(&e.update(Event::Tick, 20_000)).is_empty(),
        "b waits too: same agent"
    );
    assert_eq!(starts(&e.update(Event::Tick, 31_500)), vec!["a"]);
}

#[test]
fn resume_restarts_with_the_profiles_resume_command() {
    let extra = r#"
[heal.ladder]
exited = [{ action = "resume" }, { action = "fail" }]
[agents.fake]
resume = ["fake", "resume", "--last"]
"#;
    let mut e = engine_with(ONE, extra);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    exited(&mut e, 0, 1, 0, 100);
    let spec = spec_of(&e.update(Event::Tick, 1_100)).unwrap();
    assert_eq!(spec.command, vec!["fake", "resume", "--last"]);
    started(&mut e, 0, 1_200);
    exited(&mut e, 0, 1, 0, 1_300);
    assert_eq!(e.status(0), Status::Error);
}

#[test]
fn an_impossible_ladder_step_is_a_clear_config_error() {
    let err = Config::from_layers(&[
        ("defaults".into(), crate::core::config::DEFAULTS.into()),
        (
            "x.toml".into(),
            "[heal.ladder]\nexited = [{ action = \"nudge\" }]\n".into(),
        ),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("heal.ladder.exited step 1: `nudge` is not possible there"),
        "{err}"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    // A random run: tasks with random files and earlier dependencies; events arrive in random
    // order (starts confirmed, screens, exits with random status and commits, commands).
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_scheduler_never_exceeds_max_parallel_or_starts_a_task_before_its_dependencies(
            n in 1usize..12,
            max in 1usize..4,
            ops in proptest::collection::vec((0u8..6, 0usize..12, 0i32..3, 0usize..3), 1..120),
        ) {
            let tasks: Vec<String> = (0..n)
                .map(|i| {
                    let dep = if i > 0 && i % 3 == 0 { format!(r#","dependsOn":["t{}"]"#, i - 1) } else { String::new() };
                    format!(r#"{{"id":"t{i}","agent":"fake","files":["f{}"]{dep}}}"#, i % 4)
                })
                .collect();
            let json = format!(r#"{{"phases":[{{"tasks":[{}]}}]}}"#, tasks.join(","));
            let mut e = engine(&json);
            e.max_parallel = max;
            let mut now = 0;
            for (op, t, code, commits) in ops {
                now += 700;
                let t = t % n;
                let ev = match op {
                    0 => Event::Tick,
                    1 => Event::Started { task: t, worktree: "/w".into(), branch: "b".into(), base_commit: "0".into(), argv: vec![] },
                    2 => Event::Screen { task: t, screen: ScreenSnapshot::from_text("Continue? (y/n)"), last_output_at: now },
                    3 => Event::Exited { task: t, code, commits_ahead: Some(commits), uncommitted: Some(0) },
                    4 => act(&e, match code { 0 => ActionKind::Retry, 1 => ActionKind::Skip, _ => ActionKind::Kill }, t),
                    _ => Event::Inspected { task: t, commits_ahead: commits, uncommitted: 0 },
                };
                let fx = e.update(ev, now);
                for f in &fx {
                    // First starts wait for dependencies; a restart continues a task that already
                    // began (even if a person re-opened one of its dependencies meanwhile).
                    if let Effect::Start(s) = f.clone() {
                        if s.attempt > 1 {
                            continue;
                        }
                        let i = s.task;
                        for (j, _) in e.plan.preds(i) {
                            prop_assert!(e.status(j).is_finished(), "t{} started before t{} finished", i, j);
                        }
                    }
                }
                let slots = (0..n).filter(|&i| e.runs[i].worker.is_some() && e.runs[i].worker.as_ref().unwrap().stop.is_none()).count();
                prop_assert!(slots <= max, "{} live workers with max_parallel {}", slots, max);
            }
        }
    }
}

#[test]
fn an_answer_that_does_not_take_becomes_a_stall_instead_of_a_hang() {
    let mut e = engine(ONE);
    e.update(Event::Tick, 0);
    started(&mut e, 0, 0);
    screen(&mut e, 0, "Continue? (y/n)", 100);
    assert_eq!(writes(&e.update(Event::Tick, 1_000)), vec!["y\r"]);
    // The agent ignored it: the same dialog, no output, for a whole stall period.
    assert!(writes(&e.update(Event::Tick, 5_000)).is_empty());
    let fx = e.update(Event::Tick, 11_100);
    assert_eq!(e.status(0), Status::Stuck);
    assert!(
        writes(&fx)[0].starts_with("Please continue"),
        "{:?}",
        writes(&fx)
    );
}

mod scheduling_bookkeeping {
    //! The incremental scheduler (per-phase counters for the gate, a ready set, slot holders)
    //! against its definition, recomputed from scratch after every event: a task is ready when
    //! it is pending and everything [`Plan::preds`] names (phase gate included) is finished; no
    //! pending task waits for a blocking one, and no blocked task is left without one.
    use super::*;
    use proptest::prelude::*;

    fn check(e: &Engine) -> Result<(), TestCaseError> {
        let n = e.plan.len();
        for i in 0..n {
            let st = e.status(i);
            let ready =
                st == Status::Pending && e.plan.preds(i).all(|(j, _)| e.status(j).is_finished());
            let key = (Reverse(e.plan.height[i]), i);
            prop_assert_eq!(e.sched.ready.contains(&key), ready, "t{} ready ({})", i, st);
            prop_assert_eq!(
                e.sched.active.contains(&i),
                e.occupies_slot(i),
                "t{} holds a slot",
                i
            );
            let blocker = e
                .plan
                .preds(i)
                .find(|&(j, _)| blocks_dependents(e.status(j)));
            match st {
                Status::Pending => {
                    prop_assert!(blocker.is_none(), "t{} pending behind {:?}", i, blocker)
                }
                Status::Blocked => prop_assert!(blocker.is_some(), "t{} blocked by nothing", i),
                _ => {}
            }
        }
        let live: Vec<usize> = (0..n).filter(|&i| e.runs[i].worker.is_some()).collect();
        prop_assert_eq!(e.live_workers().collect::<Vec<_>>(), live);
        prop_assert!(e.sched.recheck.is_empty());
        Ok(())
    }

    /// Nothing is left that a schedule at `now` would start: no due restart, and no ready task
    /// with a free slot (the scheduler ran whenever something that could start one happened).
    fn settled_schedule(e: &Engine, now: Ms) -> Result<(), TestCaseError> {
        if e.paused || e.quitting {
            return Ok(());
        }
        let n = e.plan.len();
        for i in 0..n {
            let due = e.runs[i].worker.is_none() && e.runs[i].restart_at.is_some_and(|t| t <= now);
            prop_assert!(!due, "t{} has a due restart", i);
        }
        let holders: Vec<usize> = (0..n).filter(|&i| e.occupies_slot(i)).collect();
        if holders.len() >= e.max_parallel || holders.iter().any(|&j| e.plan.runs_alone(j)) {
            return Ok(());
        }
        let mut ready: Vec<usize> = (0..n)
            .filter(|&i| e.status(i) == Status::Pending && !e.occupies_slot(i))
            .filter(|&i| e.plan.preds(i).all(|(j, _)| e.status(j).is_finished()))
            .collect();
        ready.sort_by_key(|&i| (Reverse(e.plan.height[i]), i));
        if let Some(&i) = ready.first() {
            prop_assert!(
                e.plan.runs_alone(i) && !holders.is_empty(),
                "t{} is ready with {} of {} slots taken",
                i,
                holders.len(),
                e.max_parallel
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn the_bookkeeping_matches_the_definition_after_every_event(
            n in 2usize..14,
            phases in 1usize..4,
            max in 1usize..4,
            ops in proptest::collection::vec((0u8..7, 0usize..14, 0i32..3, 0usize..3), 1..100),
        ) {
            let mut by_phase: Vec<Vec<String>> = vec![Vec::new(); phases];
            for i in 0..n {
                let dep = if i > 0 && i % 3 == 0 { format!(r#","dependsOn":["t{}"]"#, i - 1) } else { String::new() };
                let files = if i % 5 == 4 { String::new() } else { format!(r#","files":["f{}"]"#, i % 4) };
                by_phase[(i * phases) / n].push(format!(r#"{{"id":"t{i}","agent":"fake"{files}{dep}}}"#));
            }
            let json = format!(
                r#"{{"phases":[{}]}}"#,
                by_phase
                    .iter()
                    .enumerate()
                    .map(|(p, ts)| {
                        let wait = if p == 2 { r#""waitForPrevious":false,"# } else { "" };
                        format!(r#"{{{wait}"tasks":[{}]}}"#, ts.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut e = engine(&json);
            e.max_parallel = max;
            let mut now = 0;
            e.update(Event::Tick, now);
            check(&e)?;
            for (op, t, code, commits) in ops {
                now += 700;
                let t = t % n;
                let is_tick = op == 0;
                let ev = match op {
                    0 => Event::Tick,
                    1 => Event::Started { task: t, worktree: "/w".into(), branch: "b".into(), base_commit: "0".into(), argv: vec![] },
                    2 => Event::Screen { task: t, screen: ScreenSnapshot::from_text("Continue? (y/n)"), last_output_at: now },
                    3 => Event::Exited { task: t, code, commits_ahead: Some(commits), uncommitted: Some(0) },
                    4 => act(&e, match code { 0 => ActionKind::Retry, 1 => ActionKind::Skip, _ => ActionKind::Kill }, t),
                    5 => match code {
                        0 => act(&e, ActionKind::MarkDone, t),
                        1 => Event::Action(Action::global(ActionKind::PauseScheduler)),
                        _ => Event::Action(Action::global(ActionKind::ResumeScheduler)),
                    },
                    _ => Event::Inspected { task: t, commits_ahead: commits, uncommitted: 0 },
                };
                e.update(ev, now);
                check(&e)?;
                if is_tick {
                    settled_schedule(&e, now)?;
                }
            }
        }
    }
}
