//! Supervision policies against the shipped profiles (assets/switchyard.toml), with plain values
//! and a fake clock (ms from 0): what the agents' next releases are expected to show, not the
//! bytes of one recording.

use crate::core::classify::{AgentReport, ScreenSnapshot, VerdictKind};
use crate::core::config::Config;
use crate::core::engine::{Effect, Engine, Event, Ms};
use crate::core::manifest::{Manifest, Status};
use crate::core::plan::Plan;

fn engine_for(agent: &str, extra: &str) -> Engine {
    let json = format!(
        r#"{{"phases":[{{"tasks":[{{"id":"a","agent":"{agent}","files":["x"]}},{{"id":"b","agent":"{agent}","files":["y"]}}]}}]}}"#
    );
    let m = Manifest::parse(&json).unwrap();
    let plan = Plan::build(&m).unwrap();
    let config = Config::from_layers(&[
        ("defaults".into(), crate::core::config::DEFAULTS.into()),
        (
            "test.toml".into(),
            format!("max_parallel = 1\n[heal]\nstall_ms = 60000\nbackoff_ms = 1000\n{extra}"),
        ),
    ])
    .unwrap();
    let mut e = Engine::new(m, plan, config, 0).unwrap();
    e.update(Event::Tick, 0);
    mark_started(&mut e, vec![agent.into()], 10);
    e
}

/// The runtime's word that task 0's worker started (at `/w/a` on `b` from `abc`) with `argv`.
fn mark_started(e: &mut Engine, argv: Vec<String>, now: Ms) {
    e.update(
        Event::Started {
            task: 0,
            worktree: "/w/a".into(),
            branch: "b".into(),
            base_commit: "abc".into(),
            argv,
        },
        now,
    );
}

fn show(e: &mut Engine, text: &str, title: &str, now: Ms) {
    let mut s = ScreenSnapshot::from_text(text);
    s.title = title.into();
    e.update(
        Event::Screen {
            task: 0,
            screen: s,
            last_output_at: now,
        },
        now,
    );
}

fn writes(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Write { bytes, submit, .. } => {
                let mut t = String::from_utf8_lossy(bytes).into_owned();
                if *submit {
                    t.push('\r');
                }
                Some(t)
            }
            _ => None,
        })
        .collect()
}

fn verdict(e: &Engine) -> (VerdictKind, String) {
    let v = e.runs[0].verdict.clone().unwrap();
    (v.kind, v.evidence.rule)
}

const GEMINI_SHELL: &str = "✦ I will commit the change.\n\
╭──────────────────────────────────────────────╮\n\
│ ?  Shell git commit -am 'fix' [current working directory /w/a]\n\
│\n\
│ git commit -am 'fix'\n\
│\n\
│ Allow execution of [Shell]?\n\
│\n\
│ ● 1. Allow once\n\
│   2. Allow for this session\n\
│   3. No, suggest changes (esc)\n\
╰──────────────────────────────────────────────╯";

#[test]
fn gemini_shell_approval_is_answered_even_with_the_action_required_title() {
    let mut e = engine_for("gemini", "");
    show(&mut e, GEMINI_SHELL, "◇  Action Required (w)", 1_000);
    let fx = e.update(Event::Tick, 1_600);
    assert_eq!(writes(&fx), vec!["\r"], "allow once: {:?}", verdict(&e));
    assert_eq!(verdict(&e).1, "gemini-approval");
    // The same dialog with a destructive command escalates instead.
    let mut e = engine_for("gemini", "");
    show(
        &mut e,
        &GEMINI_SHELL.replace("git commit -am 'fix'", "rm -rf build"),
        "◇  Action Required (w)",
        1_000,
    );
    let fx = e.update(Event::Tick, 1_600);
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::NeedsAttention);
}

#[test]
fn gemini_shell_approval_reported_by_its_notification_hook_is_answered_on_screen() {
    // gemini 0.61 without --yolo: its Notification hook says "Tool Confirm Shell Command
    // requires execution" (no command, no answer of its own); the dialog is on the screen.
    let ask = |e: &mut Engine, screen: &str| {
        show(e, screen, "◇  Action Required (w)", 1_000);
        let mut r = report(
            VerdictKind::WaitingInput,
            "Notification",
            "Tool Confirm Shell Command requires execution",
        );
        r.channel = "gemini hooks".into();
        e.update(Event::Reported { task: 0, report: r }, 1_010);
        e.update(Event::Tick, 1_100)
    };
    let mut e = engine_for("gemini", "");
    // Its banner, far above the dialog, says "Authenticated": not part of the dialog.
    let banner = format!(
        "Authenticated with gemini-api-key /auth\n{}\n{GEMINI_SHELL}",
        "\n".repeat(12)
    );
    let fx = ask(&mut e, &banner);
    assert_eq!(verdict(&e).1, "hook:Notification");
    assert_eq!(writes(&fx), vec!["\r"], "allow once");
    assert_eq!(e.status(0), Status::Running);
    // The hook comes before the dialog is drawn: it is answered once it shows.
    let mut e = engine_for("gemini", "");
    let fx = ask(&mut e, "⠇ Executing Hooks: switchyard (esc to cancel, 0s)");
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::Running);
    show(&mut e, GEMINI_SHELL, "◇  Action Required (w)", 1_500);
    let fx = e.update(Event::Tick, 1_600);
    assert_eq!(writes(&fx), vec!["\r"], "answered once drawn");
    // The deny-list sees the whole dialog, not only the rows around the cursor.
    let mut e = engine_for("gemini", "");
    let fx = ask(
        &mut e,
        &GEMINI_SHELL.replace("git commit -am 'fix'", "rm -rf build"),
    );
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::NeedsAttention);
}

#[test]
fn a_dialog_still_drawn_after_its_channel_answer_is_not_escalated() {
    // opencode 1.18.33: permission.asked (answered through its API), then busy, while the
    // "△ Permission required" dialog is still drawn for a moment.
    let mut e = engine_for("opencode", "");
    let mut r = report(
        VerdictKind::WaitingInput,
        "permission.asked",
        "permission asked for bash: git commit -m x",
    );
    r.channel = "opencode events".into();
    r.answered = Some("allow".into());
    e.update(Event::Reported { task: 0, report: r }, 1_000);
    let mut r = report(VerdictKind::Running, "session.status", "busy");
    r.channel = "opencode events".into();
    e.update(Event::Reported { task: 0, report: r }, 1_050);
    show(
        &mut e,
        "┃  △ Permission required\n┃  $ git commit -m x\n┃  Allow once   Allow always   Reject",
        "",
        1_100,
    );
    let fx = e.update(Event::Tick, 2_000);
    assert!(writes(&fx).is_empty());
    assert_eq!(e.status(0), Status::Running);
    assert_eq!(verdict(&e).0, VerdictKind::Running);
    // A dialog that stays is a prompt again once the agent's word is old.
    show(
        &mut e,
        "┃  △ Permission required\n┃  $ git commit -m y\n┃  Allow once   Allow always   Reject",
        "",
        4_500,
    );
    e.update(Event::Tick, 5_200);
    assert_eq!(verdict(&e).0, VerdictKind::WaitingInput);
}

#[test]
fn channel_events_count_in_the_order_they_were_sent_not_received() {
    // opencode's permission.replied and session.idle, sent a moment apart, each on its own
    // connection to the server: under load the idle one was read first, and the replied one
    // (busy) then stood as the agent's word for good — the task sat `running` for 10 minutes.
    let mut e = engine_for("opencode", "");
    let sent = |kind, event: &str, line: &str, us| {
        let mut r = report(kind, event, line);
        r.channel = "opencode events".into();
        r.sent_us = Some(us);
        r
    };
    e.update(
        Event::Reported {
            task: 0,
            report: sent(VerdictKind::Idle, "session.idle", "idle", 3),
        },
        1_000,
    );
    e.update(
        Event::Reported {
            task: 0,
            report: sent(VerdictKind::Running, "permission.replied", "replied", 2),
        },
        1_001,
    );
    e.update(Event::Tick, 1_100);
    assert_eq!(verdict(&e).0, VerdictKind::Idle, "the later word stands");
    // A newer word replaces it as before.
    e.update(
        Event::Reported {
            task: 0,
            report: sent(VerdictKind::Running, "session.status", "busy", 4),
        },
        1_200,
    );
    e.update(Event::Tick, 1_300);
    assert_eq!(verdict(&e).0, VerdictKind::Running);
}

#[test]
fn a_failure_then_idle_from_the_channel_stays_a_failure() {
    // opencode 1.18.33 after its own retries: session.error, then idle, in the same millisecond.
    let mut e = engine_for("opencode", "");
    let mut r = report(VerdictKind::Error, "session.error", "internal error (500)");
    r.channel = "opencode events".into();
    e.update(Event::Reported { task: 0, report: r }, 1_000);
    let mut r = report(VerdictKind::Idle, "session.idle", "idle");
    r.channel = "opencode events".into();
    e.update(Event::Reported { task: 0, report: r }, 1_001);
    let fx = e.update(Event::Tick, 1_100);
    assert_eq!(verdict(&e).0, VerdictKind::Error);
    assert!(writes(&fx).is_empty(), "no nudge");
}

#[test]
fn a_rate_limit_after_a_pause_pauses_again() {
    let mut e = engine_for("opencode", "");
    for (k, at) in [(1, 1_000), (2, 30_000)] {
        // opencode gave up (session.error), so it is paused and resumed, not left alone.
        let r = opencode_gave_up();
        e.update(Event::Reported { task: 0, report: r }, at);
        let fx = e.update(Event::Tick, at + 100);
        assert!(
            fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })),
            "pause {k}"
        );
        assert_ne!(e.status(0), Status::NeedsAttention, "pause {k}");
        e.update(
            Event::Exited {
                task: 0,
                code: 143,
                commits_ahead: Some(0),
                uncommitted: Some(0),
            },
            at + 200,
        );
        e.update(Event::Tick, at + 21_000);
        mark_started(&mut e, vec!["opencode".into()], at + 21_100);
    }
    assert_eq!(e.status(0), Status::Running);
}

#[test]
fn a_transient_action_required_title_alone_does_not_escalate() {
    let mut e = engine_for("gemini", "");
    show(&mut e, "✦ Working on it", "◇  Action Required (w)", 1_000);
    e.update(Event::Tick, 1_500);
    assert_eq!(verdict(&e).0, VerdictKind::WaitingInput);
    assert_eq!(e.status(0), Status::Running, "held 3 s before it counts");
    show(
        &mut e,
        "✦ Working on it\n⠏ Thinking (esc to cancel, 2s)",
        "✦  Working… (w)",
        2_000,
    );
    e.update(Event::Tick, 2_100);
    assert_eq!(e.status(0), Status::Running);
}

const GEMINI_TRUST: &str = "Do you trust the files in this folder?\n\
● 1. Trust folder (a)\n  2. Trust parent folder (w)\n  3. Don't trust";

#[test]
fn the_trust_dialog_is_answered_once_while_it_stays_on_screen() {
    let mut e = engine_for("gemini", "");
    show(&mut e, GEMINI_TRUST, "", 1_000);
    assert_eq!(writes(&e.update(Event::Tick, 1_500)), vec!["\r"]);
    // gemini restarts itself: output, a redraw (the cursor moves), the old dialog still shown.
    let mut s = ScreenSnapshot::from_text(GEMINI_TRUST);
    s.cursor_col = 0;
    e.update(
        Event::Screen {
            task: 0,
            screen: s,
            last_output_at: 3_000,
        },
        3_000,
    );
    assert!(writes(&e.update(Event::Tick, 3_500)).is_empty());
    show(&mut e, GEMINI_TRUST, "", 6_000);
    assert!(writes(&e.update(Event::Tick, 6_500)).is_empty());
    // Still there well after the cool-down, on a changed screen: gemini asks once per process,
    // so it did not take; no second Enter (the profile's answer is `once`), a person decides.
    show(&mut e, GEMINI_TRUST, "gemini", 20_000);
    assert!(writes(&e.update(Event::Tick, 20_500)).is_empty());
    assert_eq!(e.status(0), Status::NeedsAttention, "{:?}", verdict(&e));
}

fn classify_shipped(agent: &str, text: &str) -> (VerdictKind, String) {
    let e = engine_for(agent, "");
    let rules = &e.policy.compiled.rules[agent];
    let s = ScreenSnapshot::from_text(text);
    let t = crate::core::classify::Timing {
        now: 100_000,
        started_at: 0,
        last_output_at: 90_000,
        last_change_at: 90_000,
        last_activity_at: 90_000,
    };
    let v = crate::core::classify::classify(&s, &t, rules, 300_000);
    (v.kind, v.evidence.rule)
}

#[test]
fn rate_limits_are_rate_limited_not_errors() {
    assert_eq!(
        classify_shipped(
            "codex",
            "• Working\n\n■ exceeded retry limit, last status: 429 Too Many Requests, request id: abc\n\n› Ask Codex to do anything"
        ),
        (VerdictKind::RateLimited, "codex-rate-limit".into())
    );
    assert_eq!(
        classify_shipped(
            "claude",
            "> fix it\n● API Error: Request rejected (429) · Rate limit reached for requests · try again in 20s\n\n> "
        ),
        (VerdictKind::RateLimited, "claude-rate-limit".into())
    );
    assert_eq!(
        classify_shipped(
            "opencode",
            "┃  Rate limit reached, retrying\n\n  ctrl+p commands"
        ),
        (VerdictKind::RateLimited, "opencode-rate-limit".into())
    );
    // A plain API error is still an error.
    assert_eq!(
        classify_shipped("claude", "● API Error: 500 Internal Server Error\n\n> ").0,
        VerdictKind::Error
    );
}

#[test]
fn a_429_with_a_retry_time_pauses_the_agents_tasks_then_resumes() {
    let mut e = engine_for("claude", "");
    show(
        &mut e,
        "● API Error: Request rejected (429) · Rate limit reached · try again in 20s\n\n> ",
        "",
        1_000,
    );
    // Held 2 s (claude may animate its title while it waits), then acted on.
    assert!(!e
        .update(Event::Tick, 1_100)
        .iter()
        .any(|f| matches!(f, Effect::Kill { .. })));
    let fx = e.update(Event::Tick, 3_100);
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    assert_eq!(e.paused_agents["claude"], 23_100);
    e.update(
        Event::Exited {
            task: 0,
            code: 143,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        3_200,
    );
    let starts = |fx: &[Effect]| fx.iter().filter(|f| matches!(f, Effect::Start(_))).count();
    assert_eq!(
        starts(&e.update(Event::Tick, 23_000)),
        0,
        "paused until 23.1 s"
    );
    assert_eq!(starts(&e.update(Event::Tick, 23_100)), 1, "resumed");
    assert_eq!(e.task(0).attempts, Some(2));
}

#[test]
fn a_rate_limit_pause_ends_with_the_profiles_resume_command() {
    let mut e = engine_for(
        "claude",
        "[agents.claude]\nresume = [\"claude\", \"--continue\", \"{prompt}\"]\n",
    );
    show(
        &mut e,
        "● API Error: Request rejected (429) · Rate limit reached · try again in 5s\n\n> ",
        "",
        1_000,
    );
    e.update(Event::Tick, 1_100);
    let fx = e.update(Event::Tick, 3_100);
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    e.update(
        Event::Exited {
            task: 0,
            code: 143,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        3_200,
    );
    let spec = e
        .update(Event::Tick, 8_100)
        .into_iter()
        .find_map(|f| match f {
            Effect::Start(s) => Some(s),
            _ => None,
        })
        .expect("started again after the pause");
    assert_eq!(
        spec.command[..2],
        ["claude".to_string(), "--continue".to_string()]
    );
}

#[test]
fn an_api_that_keeps_retrying_becomes_an_error_with_that_line() {
    let mut e = engine_for("claude", "");
    let retry = |n: u32| {
        format!("✶ Working…\n  ⎿ API Error (500) · retrying in {n}s · attempt {n}/10\n\n> ")
    };
    let mut now = 1_000;
    for n in 1..=9 {
        show(&mut e, &retry(n), "◐ claude", now);
        e.update(Event::Tick, now + 100);
        now += 10_000;
    }
    // Held for 90 s of constantly changing output: running (held) until then.
    assert_eq!(verdict(&e).0, VerdictKind::Running);
    assert!(e.runs[0]
        .verdict
        .as_ref()
        .unwrap()
        .evidence
        .line
        .contains("held"));
    show(&mut e, &retry(10), "◐ claude", now);
    let fx = e.update(Event::Tick, now + 200);
    assert_eq!(verdict(&e), (VerdictKind::Error, "claude-retrying".into()));
    // The branch is checked before a restart.
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
}

#[test]
fn a_rate_limit_counting_down_is_one_journal_line_not_one_a_second() {
    // claude 2.1.330 redraws "retrying in Ns · attempt k/10" every second while it rides out a
    // 429 by itself: the verdict stays rate_limited by the same rule; only its numbers move.
    let mut e = engine_for("claude", "");
    let retry = |s: u32, k: u32| {
        format!("✶ Working…\n  ⎿ API Error (429) · Rate limit reached · retrying in {s}s · attempt {k}/10\n\n> ")
    };
    let mut lines = Vec::new();
    let mut now = 1_000;
    for k in 1..=3 {
        for s in (1..=5).rev() {
            let mut shown = ScreenSnapshot::from_text(&retry(s, k));
            shown.title = "◐ claude".into();
            let mut fx = e.update(
                Event::Screen {
                    task: 0,
                    screen: shown,
                    last_output_at: now,
                },
                now,
            );
            fx.extend(e.update(Event::Tick, now + 100));
            lines.extend(fx.into_iter().filter_map(|f| match f {
                Effect::Journal(j) if j.kind == "verdict" => Some(j.message),
                _ => None,
            }));
            now += 1_000;
        }
    }
    assert_eq!(verdict(&e).0, VerdictKind::RateLimited);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // Another line of the same kind is still news: a different error is journaled.
    let mut fx = e.update(
        Event::Screen {
            task: 0,
            screen: ScreenSnapshot::from_text("● API Error: Request rejected (429) · Rate limit reached for requests · try again in 20s\n\n> "),
            last_output_at: now,
        },
        now,
    );
    fx.extend(e.update(Event::Tick, now + 100));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Journal(j) if j.kind == "verdict")),
        "{fx:#?}"
    );
}

#[test]
fn a_stall_in_an_unclassified_dialog_gets_no_keystroke() {
    let mut e = engine_for("opencode", "");
    // A dialog no rule knows, no idle footer: a stall restarts instead of typing into it.
    show(
        &mut e,
        "┃  Some new dialog\n┃  [a] Accept   [d] Decline",
        "",
        1_000,
    );
    let fx = e.update(Event::Tick, 61_500);
    assert!(writes(&fx).is_empty(), "{:?}", writes(&fx));
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
    // At its own prompt, a stall is nudged.
    let mut e = engine_for("codex", "");
    show(&mut e, "› Ask Codex to do anything", "", 1_000);
    e.runs[0].worker.as_mut().unwrap().screen.title = String::new();
    // The idle rule would fire first; a stall at the idle screen is what a hung turn shows.
    let rules = &e.policy.compiled.rules["codex"];
    assert!(rules.iter().any(|r| r.name == "codex-idle-footer"));
    assert!(e.at_its_prompt(0, super::Situation::Stalled).is_ok());
}

#[test]
fn an_error_after_the_branch_moved_is_verified_not_restarted() {
    let mut e = engine_for("opencode", "");
    show(
        &mut e,
        "┃  Cannot connect to API: fetch failed\n\n  ctrl+p commands",
        "",
        1_000,
    );
    let fx = e.update(Event::Tick, 3_000);
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    assert!(!fx.iter().any(|f| matches!(f, Effect::Kill { .. })));
    e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 1,
            uncommitted: 0,
        },
        3_100,
    );
    assert_eq!(
        e.status(0),
        Status::Complete,
        "committed work is kept, not redone"
    );
    // Without commits the error restarts with the context quoted.
    let mut e = engine_for("opencode", "");
    show(
        &mut e,
        "┃  Cannot connect to API: fetch failed\n\n  ctrl+p commands",
        "",
        1_000,
    );
    e.update(Event::Tick, 3_000);
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 0,
            uncommitted: 0,
        },
        3_100,
    );
    assert!(
        fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })),
        "{fx:#?}"
    );
    e.update(
        Event::Exited {
            task: 0,
            code: 143,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        3_200,
    );
    let fx = e.update(Event::Tick, 4_200);
    let spec = fx
        .iter()
        .find_map(|f| match f {
            Effect::Start(s) => Some(s.clone()),
            _ => None,
        })
        .expect("restarted");
    assert!(
        spec.prompt
            .contains("| ┃  Cannot connect to API: fetch failed"),
        "{}",
        spec.prompt
    );
    // The restarted agent shows its prompt with the context: not an error again.
    mark_started(&mut e, vec!["opencode".into()], 4_300);
    let echoed: Vec<String> = spec.prompt.lines().map(|l| format!("┃  {l}")).collect();
    show(&mut e, &echoed.join("\n"), "", 5_000);
    let fx = e.update(Event::Tick, 8_000);
    assert_ne!(verdict(&e).0, VerdictKind::Error, "{:?}", e.runs[0].verdict);
    assert!(!fx
        .iter()
        .any(|f| matches!(f, Effect::Inspect { .. } | Effect::Kill { .. })));
}

#[test]
fn a_person_typing_restarts_the_ladders() {
    let mut e = engine_for("fake", "[agents.fake]\ncommand = [\"fake\"]\n");
    show(&mut e, "Overwrite notes.txt? (y/n)", "", 1_000);
    e.update(Event::Tick, 1_500);
    assert_eq!(e.status(0), Status::NeedsAttention);
    e.update(Event::Typed { task: 0 }, 2_000);
    assert_eq!(e.status(0), Status::Running);
    assert!(e.runs[0].ladder.is_empty());
    // A later allow-listed prompt is answered, not "ladder used up".
    show(&mut e, "Continue? (y/n)", "", 3_000);
    assert_eq!(writes(&e.update(Event::Tick, 3_500)), vec!["y\r"]);
}

/// opencode 1.18.33 giving up on a rate limit: its `session.error` event.
fn opencode_gave_up() -> AgentReport {
    let mut r = report(
        VerdictKind::RateLimited,
        "session.error",
        "Rate limit reached. Please try again in 20s.",
    );
    r.channel = "opencode events".into();
    r
}

fn report(kind: VerdictKind, event: &str, line: &str) -> AgentReport {
    AgentReport {
        kind,
        event: event.into(),
        line: line.into(),
        channel: "claude hooks".into(),
        permission: None,
        answered: None,
        sent_us: None,
        session: None,
    }
}

#[test]
fn claude_running_by_its_hooks_is_not_idle_by_its_title() {
    let mut e = engine_for("claude", "");
    e.update(
        Event::Reported {
            task: 0,
            report: report(VerdictKind::Running, "PreToolUse", "using Bash: npm test"),
        },
        500,
    );
    show(&mut e, "> ", "✳ Claude Code", 1_000);
    let fx = e.update(Event::Tick, 5_000);
    assert_eq!(
        verdict(&e),
        (VerdictKind::Running, "hook:PreToolUse".into())
    );
    assert!(writes(&fx).is_empty() && !fx.iter().any(|f| matches!(f, Effect::Inspect { .. })));
    // The turn ends (Stop): idle, and the branch is checked.
    e.update(
        Event::Reported {
            task: 0,
            report: report(VerdictKind::Idle, "Stop", "the turn ended (Stop)"),
        },
        6_000,
    );
    let fx = e.update(Event::Tick, 6_100);
    assert_eq!(verdict(&e).0, VerdictKind::Idle);
    assert!(e.runs[0]
        .verdict
        .as_ref()
        .unwrap()
        .evidence
        .line
        .starts_with("claude hooks:"));
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
}

#[test]
fn permissions_asked_through_a_channel_follow_the_allow_and_deny_lists() {
    let e = engine_for("claude", "");
    assert!(e
        .permission_decision(0, "Bash: git commit -m 'fix'")
        .is_ok());
    let why = e.permission_decision(0, "Bash: rm -rf build").unwrap_err();
    assert!(why.contains("deny-list"), "{why}");
    // A denied request stays a waiting prompt, which escalates.
    let mut e = engine_for("claude", "");
    let mut r = report(
        VerdictKind::WaitingInput,
        "PermissionRequest",
        "permission asked for Bash: rm -rf build",
    );
    r.permission = Some("Bash: rm -rf build".into());
    e.update(Event::Reported { task: 0, report: r }, 500);
    e.update(Event::Tick, 600);
    assert_eq!(e.status(0), Status::NeedsAttention);
    // The person answers in the dialog: the reported prompt is theirs, the task runs again.
    e.update(Event::Typed { task: 0 }, 1_000);
    show(&mut e, "✶ Running npm test…", "◐ claude", 1_100);
    e.update(Event::Tick, 1_200);
    assert_eq!(e.status(0), Status::Running);
    assert_eq!(verdict(&e).0, VerdictKind::Running);
}

#[test]
fn a_running_task_shows_what_it_does_now_not_the_dialog_it_passed() {
    let mut e = engine_for("gemini", "");
    show(&mut e, GEMINI_TRUST, "", 1_000);
    e.update(Event::Tick, 1_500);
    assert!(e
        .task(0)
        .last_verdict
        .as_deref()
        .unwrap()
        .starts_with("waiting_input"));
    show(
        &mut e,
        "✦ Working\n⠏ Thinking (esc to cancel, 2s)",
        "",
        2_000,
    );
    e.update(Event::Tick, 2_100);
    let v = e.task(0).last_verdict.as_deref().unwrap();
    assert!(v.starts_with("running"), "{v}");
}

#[test]
fn a_failed_exit_says_why_when_the_screen_does() {
    let mut e = engine_for("claude", "");
    show(
        &mut e,
        "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons",
        "",
        100,
    );
    e.update(
        Event::Exited {
            task: 0,
            code: 1,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        200,
    );
    let v = e.task(0).last_verdict.clone().unwrap();
    assert!(v.contains("IS_SANDBOX"), "{v}");
}

#[test]
fn a_spinner_over_a_silent_channel_is_a_stall_not_running_forever() {
    let mut e = engine_for("gemini", "");
    let mut r = report(VerdictKind::Running, "BeforeModel", "working");
    r.channel = "gemini hooks".into();
    e.update(Event::Reported { task: 0, report: r }, 1_000);
    // The spinner keeps redrawing (output never quiet) and uses the CPU (gemini 0.61 under a
    // 500: its router call retried forever), the hooks say nothing more.
    let mut now = 2_000;
    while now < 121_000 {
        show(
            &mut e,
            &format!(
                "⠏ Thinking (esc to cancel, {}s)\n>   Type your message or @path/to/file",
                now / 1000
            ),
            "",
            now,
        );
        e.update(Event::Busy { task: 0 }, now + 5);
        e.update(Event::Tick, now + 10);
        now += 5_000;
    }
    assert_eq!(verdict(&e).0, VerdictKind::Running, "within twice stall_ms");
    // Its input box stays drawn while it thinks: still not at its prompt.
    show(
        &mut e,
        "⠏ Thinking (esc to cancel, 122s)\n>   Type your message or @path/to/file",
        "",
        122_000,
    );
    let fx = e.update(Event::Tick, 122_010);
    assert_eq!(verdict(&e), (VerdictKind::Stalled, "no-progress".into()));
    // Not at its prompt: no nudge is typed; the ladder restarts it.
    assert!(writes(&fx).is_empty());
    assert!(fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })));
}

#[test]
fn explain_names_the_foreground_program_the_terminal_read_and_the_osc_marks() {
    let mut e = engine_for("shell", "");
    let mut s = ScreenSnapshot::from_text("$ make\nRemove build/? ");
    s.foreground = Some(crate::core::classify::Foreground {
        pid: 4242,
        process: "rm".into(),
        own: false,
    });
    s.reading = Some(crate::core::classify::TerminalRead {
        process: "rm".into(),
        shell: false,
    });
    s.marks.prompt = Some(crate::core::classify::PromptMark::Output);
    s.marks.progress = Some(crate::core::classify::Progress {
        state: 1,
        percent: Some(60),
    });
    e.update(
        Event::Screen {
            task: 0,
            screen: s,
            last_output_at: 1_000,
        },
        1_000,
    );
    e.update(Event::Tick, 3_000);
    let x = e.explain(0, 3_000);
    assert_eq!(x.verdict.as_deref(), Some("waiting_input"), "{x:?}");
    assert!(x.why.contains("terminal read (/proc)"), "{}", x.why);
    let text = x.render();
    for want in [
        "foreground program           rm (pid 4242)",
        "terminal read (/proc)        rm is blocked reading the terminal",
        "shell prompt (OSC 133)       C: a command runs",
        "progress (OSC 9;4)           60%",
        "cursor after a question      yes",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    // Most authoritative first: the profile's rules, then the marks, then /proc, then the cursor.
    let order: Vec<&str> = x.channels.iter().map(|c| c.channel.as_str()).collect();
    let at = |c: &str| order.iter().position(|o| *o == c).unwrap();
    assert!(at("screen rules") < at("shell prompt (OSC 133)"));
    assert!(at("progress (OSC 9;4)") < at("terminal read (/proc)"));
    assert!(at("terminal read (/proc)") < at("cursor after a question"));
}

#[test]
fn a_shell_at_its_prompt_is_idle_and_never_gets_a_nudge_typed_as_a_command() {
    let mut e = engine_for("shell", "");
    let mut s = ScreenSnapshot::from_text("bash-5.2$ ");
    s.reading = Some(crate::core::classify::TerminalRead {
        process: "bash".into(),
        shell: true,
    });
    e.update(
        Event::Screen {
            task: 0,
            screen: s,
            last_output_at: 1_000,
        },
        1_000,
    );
    let fx = e.update(Event::Tick, 3_000);
    assert_eq!(verdict(&e), (VerdictKind::Idle, "terminal-read".into()));
    assert!(fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 })));
    let fx = e.update(
        Event::Inspected {
            task: 0,
            commits_ahead: 0,
            uncommitted: 1,
        },
        3_100,
    );
    assert!(writes(&fx).is_empty(), "no nudge into bash: {fx:#?}");
    assert_eq!(e.status(0), Status::NeedsAttention);
}

/// Replays a recorded session (tests/fixtures/e2e) into the engine as a live worker's screens,
/// ticking every 100 ms up to `until_ms` (a look at the branch finds nothing committed); returns
/// the journal lines of its heal actions.
fn replay_heals(e: &mut Engine, name: &str, until_ms: Ms) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/e2e")
        .join(name);
    let rec = crate::host::replay::Recording::load(&path).unwrap();
    let mut p = vt100::Parser::new_with_callbacks(
        rec.rows,
        rec.cols,
        1000,
        crate::host::worker::Term::default(),
    );
    let (mut next, mut last_output, mut heals) = (0, 0, Vec::new());
    let mut last = None;
    let mut now = 100;
    while now <= until_ms {
        while next < rec.chunks.len() && rec.chunks[next].0 <= now {
            p.process(&rec.chunks[next].1);
            last_output = rec.chunks[next].0;
            next += 1;
        }
        let snap = crate::host::worker::snapshot_of(&p);
        let mut fx = Vec::new();
        if last.as_ref() != Some(&snap) {
            last = Some(snap.clone());
            fx.extend(e.update(
                Event::Screen {
                    task: 0,
                    screen: snap,
                    last_output_at: last_output.max(10),
                },
                now,
            ));
        }
        fx.extend(e.update(Event::Tick, now));
        // The branch, when the engine looks while the agent is idle: nothing committed yet.
        let inspect = fx.iter().any(|f| matches!(f, Effect::Inspect { task: 0 }));
        if inspect {
            fx.extend(e.update(
                Event::Inspected {
                    task: 0,
                    commits_ahead: 0,
                    uncommitted: 0,
                },
                now + 50,
            ));
        }
        for f in fx {
            if let Effect::Journal(j) = f {
                if j.kind == "heal" {
                    heals.push(format!("{} {}", now, j.message));
                }
            }
        }
        now += 100;
    }
    heals
}

#[test]
fn gemini_trust_dialog_redrawn_after_its_restart_is_answered_once() {
    // gemini-cli 0.61.0 in a folder it does not trust (recorded by the harness without
    // --pretrust): the trust dialog, answered; gemini restarts itself and draws the dialog again
    // a second later with other rows around it before the new process takes over. Live, it was
    // answered twice. Up to 11 s: before its shell approval comes.
    let mut e = engine_for("gemini", "");
    let heals = replay_heals(&mut e, "gemini-untrusted-a1", 11_000);
    let trust: Vec<&String> = heals
        .iter()
        .filter(|h| h.contains("gemini-trust-folder"))
        .collect();
    assert_eq!(trust.len(), 1, "{heals:#?}");
    // The same with the shipped profile's channels (recorded with --untrusted): answered at
    // 3.2 s; the old process draws the submitted prompt above the dialog and the dialog again
    // (3.4–3.6 s) before it exits (4.0 s) and the new one starts (5.7 s) trusted. Live, the
    // redrawn dialog was answered again at 4.0 s.
    let mut e = engine_for("gemini", "");
    let heals = replay_heals(&mut e, "gemini-untrusted-home-a1", 7_000);
    let trust: Vec<&String> = heals
        .iter()
        .filter(|h| h.contains("gemini-trust-folder"))
        .collect();
    assert_eq!(trust.len(), 1, "{heals:#?}");
}

#[test]
fn gemini_slow_to_start_is_not_nudged_before_it_submits_its_prompt() {
    // gemini-cli 0.61.0 on a loaded machine (recorded by the harness): nothing on screen for
    // 9.6 s, its empty input box at 10.9 s, the prompt submitted at 14.8 s. Live, the idle rule
    // fired at 13.4 s (more than 10 s after the start) and a nudge was typed into the box.
    let mut e = engine_for("gemini", "");
    let heals = replay_heals(&mut e, "gemini-normal-home-a1", 15_000);
    assert!(heals.is_empty(), "{heals:#?}");
}

/// Drives one codex rate limit (no reset time on screen) at `at`: returns when the agent's
/// tasks are paused until, ms.
fn codex_rate_limit(e: &mut Engine, at: Ms) -> Ms {
    // At work first (a resumed codex's old line is not taken for a new one before that).
    show(e, "• Working (0s • esc to interrupt)", "", at - 900);
    e.update(Event::Tick, at - 800);
    show(
        e,
        "■ exceeded retry limit, last status: 429 Too Many Requests\n\n› ",
        "",
        at,
    );
    e.update(Event::Tick, at + 100);
    e.update(Event::Tick, at + 2_100);
    e.update(
        Event::Exited {
            task: 0,
            code: 143,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        at + 2_200,
    );
    *e.paused_agents.get("codex").expect("codex is paused")
}

fn started(e: &mut Engine, now: Ms) -> bool {
    let fx = e.update(Event::Tick, now);
    let started = fx
        .iter()
        .any(|f| matches!(f, Effect::Start(s) if s.task == 0));
    if started {
        mark_started(e, vec!["codex".into()], now + 100);
    }
    started
}

#[test]
fn a_rate_limit_without_a_reset_time_backs_off_from_30s_doubling() {
    let mut e = engine_for("codex", "rate_limit_backoff_ms = 30000\n");
    let mut at = 1_000;
    let mut pauses = vec![];
    for _ in 0..3 {
        let until = codex_rate_limit(&mut e, at);
        let wait = until - (at + 2_100);
        pauses.push(wait);
        assert!(!started(&mut e, until - 1), "still paused 1 ms before");
        assert!(started(&mut e, until), "started again at the end");
        at = until + 5_000;
    }
    assert_eq!(pauses, [30_000, 60_000, 120_000]);
    // A stable stretch of work (stable_ms) and the back-off starts over.
    show(&mut e, "• Working (5s • esc to interrupt)", "", at);
    e.update(Event::Tick, at + 100);
    show(
        &mut e,
        "• Working (200s • esc to interrupt)",
        "",
        at + 200_000,
    );
    e.update(Event::Tick, at + 200_100);
    let at = at + 201_000;
    assert_eq!(codex_rate_limit(&mut e, at) - (at + 2_100), 30_000);
}

#[test]
fn an_agent_retrying_a_rate_limit_by_itself_is_left_alone_and_its_other_tasks_wait() {
    // Claude Code 2.1.330 retrying (10 attempts) under 429 with retry-after 20.
    let mut e = engine_for("claude", "");
    let retry = |n: u32| {
        format!(
            "✻ Working…\n  ⎿ 429 Rate limit reached. Please try again in 20s. · retrying in 23s · attempt {n}/10\n\n> "
        )
    };
    let mut journaled = 0;
    for (n, at) in [(2, 1_000), (3, 24_000), (4, 47_000)] {
        show(&mut e, &retry(n), "◐ claude", at);
        for t in [at + 100, at + 3_000, at + 10_000] {
            let fx = e.update(Event::Tick, t);
            assert!(
                !fx.iter()
                    .any(|f| matches!(f, Effect::Kill { .. } | Effect::Write { .. })),
                "no kill, no keys while it retries: {fx:?}"
            );
            journaled += fx
                .iter()
                .filter(
                    |f| matches!(f, Effect::Journal(j) if j.message.contains("retries by itself")),
                )
                .count();
        }
        assert_eq!(
            verdict(&e),
            (
                VerdictKind::RateLimited,
                "claude-rate-limit-retrying".into()
            )
        );
        assert_eq!(e.status(0), Status::Running);
        // The other task of the agent waits until the reset time the line names.
        let until = e.paused_agents["claude"];
        assert!(
            until >= at + 10_000 + 20_000 - 1,
            "waits with the countdown: {until}"
        );
        assert!(
            e.runs[1].worker.is_none(),
            "task b not started while claude is rate limited"
        );
    }
    assert_eq!(journaled, 1, "journaled once per wait");
    // It recovers by itself: back to work, nothing was restarted.
    show(
        &mut e,
        "✻ Working… (3s · esc to interrupt)",
        "◐ claude",
        60_000,
    );
    e.update(Event::Tick, 60_100);
    assert_eq!(verdict(&e).0, VerdictKind::Running);
    assert_eq!(e.task(0).attempts, Some(1));
}

#[test]
fn opencodes_retry_status_leaves_it_alone_but_its_error_pauses_it() {
    let mut e = engine_for("opencode", "");
    let mut r = report(
        VerdictKind::RateLimited,
        "session.status",
        "retry 3: Rate limit reached. Please try again in 20s.",
    );
    r.channel = "opencode events".into();
    e.update(Event::Reported { task: 0, report: r }, 1_000);
    let fx = e.update(Event::Tick, 1_100);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Kill { .. })),
        "{fx:?}"
    );
    assert!(e.paused_agents.contains_key("opencode"));
    let r = opencode_gave_up();
    e.update(Event::Reported { task: 0, report: r }, 150_000);
    let fx = e.update(Event::Tick, 150_100);
    assert!(
        fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })),
        "{fx:?}"
    );
}

#[test]
fn gemini_riding_out_a_rate_limit_is_left_alone_and_runs_on_when_the_api_answers() {
    // gemini-cli 0.61.0 under a 300 s window of 429s shows only "Thinking…"; its telemetry
    // logs each 429 (tests/fixtures/channels/telemetry/gemini-rate429.json).
    let mut e = engine_for("gemini", "");
    let event = serde_json::json!({"event.name": "gemini_cli.api_error", "status_code": 429,
        "message": "Rate limit reached. Please try again in 20s. (RESOURCE_EXHAUSTED)",
        "model": "m", "rate_limited": true});
    let r = crate::core::channels::gemini_telemetry(&event).unwrap();
    e.update(Event::Reported { task: 0, report: r }, 1_000);
    let fx = e.update(Event::Tick, 1_100);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Kill { .. })) && writes(&fx).is_empty(),
        "left alone: {fx:?}"
    );
    assert_eq!(verdict(&e).0, VerdictKind::RateLimited);
    assert!(
        e.paused_agents.contains_key("gemini"),
        "its other tasks wait"
    );
    let event = serde_json::json!({"event.name": "gemini_cli.api_response", "recovered": true});
    let r = crate::core::channels::gemini_telemetry(&event).unwrap();
    e.update(Event::Reported { task: 0, report: r }, 40_000);
    let fx = e.update(Event::Tick, 40_100);
    assert!(!fx.iter().any(|f| matches!(f, Effect::Kill { .. })));
    assert_eq!(verdict(&e).0, VerdictKind::Running);
    assert_ne!(e.status(0), Status::NeedsAttention);
}

#[test]
fn a_resumed_agent_redrawing_its_old_rate_limit_line_is_not_paused_again() {
    let mut e = engine_for(
        "opencode",
        "[agents.opencode]\nresume = [\"opencode\", \"--continue\", \"--prompt\", \"Continue.\"]\n",
    );
    let gave_up = "┃  Rate limit reached. Please try again in 20s.\n┃\n\n  ▣  Build · Mock Model";
    show(&mut e, gave_up, "", 1_000);
    e.update(Event::Tick, 2_100);
    let fx = e.update(Event::Tick, 2_200);
    let paused = e.paused_agents.contains_key("opencode");
    assert!(paused, "paused: {fx:?}");
    e.update(
        Event::Exited {
            task: 0,
            code: 1,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        2_300,
    );
    assert!(started(&mut e, 30_000), "resumed after the pause");
    // Its history on screen again, the old line included: not a new rate limit.
    show(&mut e, gave_up, "", 31_000);
    for t in [32_100, 34_000, 40_000] {
        let fx = e.update(Event::Tick, t);
        assert!(
            !fx.iter().any(|f| matches!(f, Effect::Kill { .. })),
            "not paused by its own history at {t}: {fx:?}"
        );
    }
    assert_ne!(verdict(&e).0, VerdictKind::RateLimited);
    // It works, the old line scrolls away; a new rate limit later counts again.
    show(&mut e, "  ⬝⬝■■ esc interrupt", "", 41_000);
    e.update(Event::Tick, 41_100);
    show(&mut e, "  ⬝■■⬝ esc interrupt", "", 42_000);
    e.update(Event::Tick, 42_100);
    show(&mut e, gave_up, "", 50_000);
    let mut fx = e.update(Event::Tick, 51_100);
    fx.extend(e.update(Event::Tick, 51_200));
    assert!(
        fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })),
        "a new rate limit pauses it: {fx:?}"
    );
}

#[test]
fn a_resumed_codex_giving_up_again_with_the_same_line_is_paused_again() {
    // codex-cli 0.169.0 `resume` redraws the conversation, the old give-up line included; when
    // it gives up again the same line shows twice, or (the history scrolled away) once, lower.
    for scrolled in [false, true] {
        resumed_codex_gives_up_again(scrolled);
    }
}

fn resumed_codex_gives_up_again(scrolled: bool) {
    let mut e = engine_for("codex", "rate_limit_backoff_ms = 30000\n");
    let old = "› Do the task.\n■ exceeded retry limit, last status: 429 Too Many Requests";
    let until = codex_rate_limit(&mut e, 1_000);
    assert!(started(&mut e, until));
    show(
        &mut e,
        &format!("{old}\n\n› Continue where you left off.\n\n› "),
        "",
        until + 1_000,
    );
    let fx = e.update(Event::Tick, until + 3_000);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Kill { .. })),
        "{fx:?}"
    );
    // Live (codex-cli 0.169.0, harness rate429): its first sign of work is its own retrying.
    show(
        &mut e,
        &format!(
            "{old}\n\n› Continue where you left off.\n• Server is busy, reconnecting 1/5 (3s • esc to interrupt)\n  └ Exceeded retry limit, last status: 429 Too Many Requests\n\n"
        ),
        "",
        until + 4_000,
    );
    let fx = e.update(Event::Tick, until + 4_100);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Kill { .. })),
        "{fx:?}"
    );
    assert_eq!(
        verdict(&e),
        (VerdictKind::RateLimited, "codex-rate-limit-retrying".into())
    );
    let again = if scrolled {
        "› Continue where you left off.\n\n\n■ exceeded retry limit, last status: 429 Too Many Requests\n\n› ".to_string()
    } else {
        format!(
            "{old}\n\n› Continue where you left off.\n■ exceeded retry limit, last status: 429 Too Many Requests\n\n› "
        )
    };
    show(&mut e, &again, "", until + 100_000);
    let fx = e.update(Event::Tick, until + 100_600);
    assert!(
        fx.iter().any(|f| matches!(f, Effect::Kill { task: 0 })),
        "paused again: {fx:?}"
    );
    assert_eq!(
        e.paused_agents["codex"] - (until + 100_600),
        60_000,
        "the back-off's second step"
    );
}

#[test]
fn a_resume_prompt_is_typed_once_the_resumed_agent_sits_at_its_prompt() {
    let mut e = opencode_resumed(0);
    let idle =
        "┃  Create HARNESS.md\n\n  ▣  Build · Mock Model\n\n  ~/w/a    tab agents  ctrl+p commands";
    let mut typed = vec![];
    for t in [32_000, 34_000, 36_000] {
        show(&mut e, idle, "", t);
        for f in e.update(Event::Tick, t + 1_600) {
            if let Effect::Write { bytes, submit, .. } = f {
                typed.push((String::from_utf8(bytes).unwrap(), submit));
            }
        }
    }
    assert_eq!(
        typed,
        [("Continue where you left off.".to_string(), true)],
        "typed and submitted, once"
    );
}

/// opencode gives up on a rate limit at `now`, is paused (stopped) and exits, `commits` ahead.
fn gives_up_and_exits(e: &mut Engine, now: Ms, commits: usize) {
    e.update(
        Event::Reported {
            task: 0,
            report: opencode_gave_up(),
        },
        now,
    );
    e.update(Event::Tick, now + 100);
    e.update(
        Event::Exited {
            task: 0,
            code: 0,
            commits_ahead: Some(commits),
            uncommitted: Some(0),
        },
        now + 200,
    );
}

/// An opencode task (with `resume` and `resume_prompt`) that gave up on a rate limit with
/// `commits` ahead, was paused, and has just been started again with its resume argv.
fn opencode_resumed(commits: usize) -> Engine {
    let mut e = engine_for(
        "opencode",
        "[agents.opencode]\nresume = [\"opencode\", \"--continue\"]\nresume_prompt = \"Continue where you left off.\"\n",
    );
    gives_up_and_exits(&mut e, 1_000, commits);
    assert!(started(&mut e, 21_100));
    e
}

/// The argv of the next start after a rate limit that stopped the worker.
fn resumed_argv(e: &mut Engine, now: Ms) -> Vec<String> {
    gives_up_and_exits(e, now, 0);
    let fx = e.update(Event::Tick, now + 20_100);
    fx.iter()
        .find_map(|f| match f {
            Effect::Start(s) if s.task == 0 => Some(s.command.clone()),
            _ => None,
        })
        .expect("resumed")
}

#[test]
fn a_resume_continues_the_session_the_agent_named_else_its_last() {
    let profile = "[agents.opencode]\nresume = [\"opencode\", \"--continue\"]\nresume_session = [\"opencode\", \"--session\", \"{session_id}\"]\n";
    // No session named yet: the plain resume.
    let mut e = engine_for("opencode", profile);
    assert_eq!(resumed_argv(&mut e, 1_000), ["opencode", "--continue"]);
    // Its channel named its session, then a subagent's: the agent's own, the first named.
    let mut e = engine_for("opencode", profile);
    for id in ["ses_root", "ses_subagent"] {
        let mut busy = report(VerdictKind::Running, "session.status", "busy");
        busy.session = crate::core::channels::session_id(id);
        e.update(
            Event::Reported {
                task: 0,
                report: busy,
            },
            500,
        );
    }
    assert_eq!(
        resumed_argv(&mut e, 1_000),
        ["opencode", "--session", "ses_root"]
    );
    // Kept across the resume; a fresh start begins a new session and forgets it.
    assert_eq!(e.runs[0].agent_session.as_deref(), Some("ses_root"));
    mark_started(&mut e, vec![], 21_200);
    e.update(
        Event::Exited {
            task: 0,
            code: 1,
            commits_ahead: Some(0),
            uncommitted: Some(0),
        },
        22_000,
    );
    let restart = (22_100..300_000).step_by(1_000).find_map(|t| {
        e.update(Event::Tick, t).into_iter().find_map(|f| match f {
            Effect::Start(s) => Some(s.command),
            _ => None,
        })
    });
    let restart = restart.expect("restarted");
    assert!(!restart.iter().any(|a| a == "--session"), "{restart:?}");
    assert_eq!(e.runs[0].agent_session, None, "a fresh start forgets it");
    // An empty resume_session is off.
    let mut e = engine_for(
        "opencode",
        "[agents.opencode]\nresume = [\"opencode\", \"--continue\"]\nresume_session = []\n",
    );
    let mut busy = report(VerdictKind::Running, "session.status", "busy");
    busy.session = Some("ses_1".into());
    e.update(
        Event::Reported {
            task: 0,
            report: busy,
        },
        500,
    );
    assert_eq!(resumed_argv(&mut e, 1_000), ["opencode", "--continue"]);
}

#[test]
fn only_plain_ids_are_taken_for_a_session() {
    use crate::core::channels::{opencode, session_id};
    assert_eq!(session_id("ses_5f2a-1.b").as_deref(), Some("ses_5f2a-1.b"));
    for bad in ["", "--help", "a b", "x;rm", "é", &"a".repeat(129)] {
        assert_eq!(session_id(bad), None, "{bad:?}");
    }
    let ev = serde_json::json!({"type": "session.status", "properties": {"sessionID": "ses_1", "status": {"type": "busy"}}});
    assert_eq!(opencode(&ev).unwrap().session.as_deref(), Some("ses_1"));
}

#[test]
fn a_resumed_agent_showing_its_broken_off_turn_as_running_gets_the_resume_prompt() {
    // opencode 1.18.33 `--continue` after a limit that hit mid-turn: the old turn's spinner.
    let mut e = opencode_resumed(1);
    let mut typed = vec![];
    for t in (22_000..60_000).step_by(2_000) {
        show(
            &mut e,
            &format!("┃  bash git commit\n\n  ⬝⬝■■ {t} esc interrupt"),
            "",
            t,
        );
        for f in e.update(Event::Tick, t + 100) {
            if let Effect::Write { bytes, .. } = f {
                typed.push((t, String::from_utf8(bytes).unwrap()));
            }
        }
    }
    assert_eq!(typed.len(), 1, "{typed:?}");
    assert!(typed[0].0 >= 36_000, "not before 15 s: {typed:?}");
}
