//! The run's view model: what every client shows (status, `ls`, the headless reporter, `ctl`
//! answers), computed once here from the engine's state, never by a client from engine
//! internals.

use super::{Engine, Ms};
use crate::core::manifest::{Manifest, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One task as clients show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Title, as written (clients escape control characters before printing).
    pub title: String,
    /// Status name (`pending`, `running`, …).
    pub status: String,
    /// The live verdict (`running`, `waiting_input`, …) when a worker runs, else the last one
    /// recorded in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The verdict's evidence: the rule or signal and the line that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Worker starts so far.
    pub attempts: u32,
    /// A worker process exists now.
    pub worker: bool,
    /// Time in the current (or last) run of the task, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Tasks (ids) or the integration branch this task is predicted to conflict with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

/// The whole run as clients show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// Project name from the manifest (may be empty).
    pub project: String,
    /// Tasks per status name.
    pub counts: BTreeMap<String, usize>,
    /// Tasks in all.
    pub total: usize,
    /// Tasks complete (or pr_open / merged).
    pub done: usize,
    /// The scheduler starts no new workers.
    pub paused: bool,
    /// Most workers at once.
    pub max_parallel: usize,
    /// Nothing more happens without a person.
    pub settled: bool,
    /// The exit code the run would end with now (0, 1 or 2).
    pub exit_code: i32,
    /// Since the run (this server) began, ms.
    pub elapsed_ms: u64,
    /// Every task, in manifest order.
    pub tasks: Vec<TaskView>,
}

impl RunView {
    /// The view of a manifest with no live run (statuses and last verdicts as saved).
    pub fn of_manifest(m: &Manifest) -> RunView {
        let tasks: Vec<TaskView> = m
            .tasks()
            .map(|t| {
                let (verdict, evidence) = split_last_verdict(t.last_verdict.as_deref());
                TaskView {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    status: t.status.as_str().to_string(),
                    verdict,
                    evidence,
                    attempts: t.attempts.unwrap_or(0),
                    worker: false,
                    elapsed_ms: None,
                    conflicts: Vec::new(),
                }
            })
            .collect();
        let statuses: Vec<Status> = m.tasks().map(|t| t.status).collect();
        RunView {
            project: m.project.clone(),
            counts: counts(statuses.iter().copied()),
            total: statuses.len(),
            done: statuses.iter().filter(|s| s.is_done()).count(),
            paused: false,
            max_parallel: 0,
            settled: true,
            exit_code: exit_code(&statuses),
            elapsed_ms: 0,
            tasks,
        }
    }

    /// A count line: `3 complete · 2 running · 1 pending`.
    pub fn counts_line(&self) -> String {
        self.counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

fn split_last_verdict(v: Option<&str>) -> (Option<String>, Option<String>) {
    match v {
        None => (None, None),
        Some(v) => match v.split_once(' ') {
            Some((k, rest)) => (Some(k.trim_end_matches(':').into()), Some(rest.into())),
            None => (Some(v.into()), None),
        },
    }
}

fn counts(statuses: impl Iterator<Item = Status>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in statuses {
        *m.entry(s.as_str().to_string()).or_insert(0) += 1;
    }
    m
}

/// The exit code for a set of final statuses: 0 all done, 2 a person must decide, 1 otherwise.
pub fn exit_code(statuses: &[Status]) -> i32 {
    if statuses.iter().all(|s| s.is_done()) {
        0
    } else if statuses.contains(&Status::NeedsAttention) {
        2
    } else {
        1
    }
}

impl Engine {
    /// The run's view model at `now` (ms).
    pub fn view(&self, now: Ms) -> RunView {
        let statuses: Vec<Status> = self.manifest.tasks().map(|t| t.status).collect();
        let tasks = self
            .manifest
            .tasks()
            .enumerate()
            .map(|(i, t)| {
                let run = &self.runs[i];
                let live = run.worker.is_some();
                let (verdict, evidence) = match (&run.verdict, live) {
                    (Some(v), true) => (
                        Some(v.kind.label()),
                        Some(format!("[{}] {}", v.evidence.rule, v.evidence.line)),
                    ),
                    _ => split_last_verdict(t.last_verdict.as_deref()),
                };
                let elapsed_ms = run
                    .run_started_at
                    .map(|a| run.run_ended_at.unwrap_or(now).saturating_sub(a));
                TaskView {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    status: t.status.as_str().to_string(),
                    verdict,
                    evidence,
                    attempts: t.attempts.unwrap_or(0),
                    worker: live,
                    elapsed_ms,
                    conflicts: self.conflicts_of(i),
                }
            })
            .collect();
        RunView {
            project: self.manifest.project.clone(),
            counts: counts(statuses.iter().copied()),
            total: statuses.len(),
            done: statuses.iter().filter(|s| s.is_done()).count(),
            paused: self.paused,
            max_parallel: self.max_parallel,
            settled: self.is_settled(),
            exit_code: exit_code(&statuses),
            elapsed_ms: now.saturating_sub(self.started_at),
            tasks,
        }
    }
}

/// One channel's latest word about a worker, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelWord {
    /// The channel, e.g. `agent state (OSC 7501)`.
    pub channel: String,
    /// What it says now (`—` when it says nothing).
    pub word: String,
}

/// Why a task's verdict is what it is: every channel's latest word in the order of authority,
/// the verdict and the channel it came from, and where the heal ladders stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Task id.
    pub task: String,
    /// Status name.
    pub status: String,
    /// Worker starts so far.
    pub attempts: u32,
    /// The verdict now (or the last one recorded).
    pub verdict: Option<String>,
    /// Its evidence.
    pub evidence: Option<String>,
    /// The channel the verdict came from, and why it won.
    pub why: String,
    /// Each channel's latest word, most authoritative first.
    pub channels: Vec<ChannelWord>,
    /// Heal ladders in use: `situation: step N (action), used K`.
    pub ladders: Vec<String>,
    /// Automatic keystroke injections sent to this task.
    pub auto_keys: u32,
}

impl Explanation {
    /// The explanation as lines for people (task text escaped).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let esc = |s: &str| crate::core::text::escape_control(s).into_owned();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} — {}, attempt {}",
            esc(&self.task),
            self.status,
            self.attempts
        );
        let _ = writeln!(
            s,
            "verdict: {} {}",
            self.verdict.as_deref().unwrap_or("—"),
            esc(self.evidence.as_deref().unwrap_or(""))
        );
        let _ = writeln!(s, "why: {}", esc(&self.why));
        let _ = writeln!(s, "channels, most authoritative first:");
        for c in &self.channels {
            let _ = writeln!(s, "  {:<28} {}", c.channel, esc(&c.word));
        }
        if !self.ladders.is_empty() {
            let _ = writeln!(s, "heal ladders: {}", self.ladders.join(" · "));
        }
        let _ = writeln!(s, "automatic keystrokes sent: {}", self.auto_keys);
        s
    }
}

/// Which channel a verdict's evidence (rule or signal name) came from.
fn channel_of(rule: &str, rules: &[crate::core::classify::Rule]) -> &'static str {
    use crate::core::classify::Source;
    match rules.iter().find(|r| r.name == rule).map(|r| r.source) {
        Some(Source::AgentState) => "agent state (OSC 7501)",
        Some(Source::Title) => "window title (OSC 0/2)",
        Some(Source::Screen) => "screen rules",
        None if rule.starts_with("hook:") => "the agent's own channel",
        None => match rule {
            "terminal-read" => "terminal read (/proc)",
            "osc-133" => "shell prompt (OSC 133)",
            "osc-progress" => "progress (OSC 9;4)",
            "osc-notification" => "notification (OSC 9/777)",
            "cursor-question" => "cursor after a question",
            "exit-status" => "exit status",
            "silence" => "silence (output, screen, files, CPU)",
            "output" => "output",
            "start" => "start",
            "manual" => "a person",
            "verify" => "verify command",
            _ => "signal",
        },
    }
}

impl Engine {
    /// Why task `i`'s verdict is what it is, at `now` (ms).
    pub fn explain(&self, i: usize, now: Ms) -> Explanation {
        let t = self.task(i);
        let run = &self.runs[i];
        let agent = self.agent_of(i);
        let rules: &[crate::core::classify::Rule] = self
            .policy
            .compiled
            .rules
            .get(agent)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let dash = || "—".to_string();
        let mut channels = Vec::new();
        let (verdict, evidence, why) = match (&run.verdict, &run.worker) {
            (Some(v), Some(w)) => {
                let s = &w.screen;
                channels.push(ChannelWord {
                    channel: "the agent's own channel".into(),
                    word: w
                        .reported
                        .as_ref()
                        .map(|r| {
                            format!(
                                "{} {} ({}, {:.1}s ago): {}",
                                r.channel,
                                r.event,
                                r.kind.label(),
                                now.saturating_sub(w.reported_at) as f64 / 1000.0,
                                r.line
                            )
                        })
                        .unwrap_or_else(dash),
                });
                channels.push(ChannelWord {
                    channel: "agent state (OSC 7501)".into(),
                    word: s.agent_state.clone().unwrap_or_else(dash),
                });
                channels.push(ChannelWord {
                    channel: "window title (OSC 0/2)".into(),
                    word: if s.title.is_empty() {
                        dash()
                    } else {
                        s.title.clone()
                    },
                });
                let at_cursor = s.rows.get(s.cursor_row).map(|l| l.trim()).unwrap_or("");
                let matched = rules
                    .iter()
                    .filter(|r| r.source == crate::core::classify::Source::Screen)
                    .find(|r| s.rows.iter().any(|row| r.re.is_match(row)))
                    .map(|r| {
                        format!(
                            "{} would match ({}, quiet {} ms)",
                            r.name,
                            r.verdict.label(),
                            r.quiet_ms
                        )
                    })
                    .unwrap_or_else(|| "no rule of this profile matches the screen".into());
                channels.push(ChannelWord {
                    channel: "screen rules".into(),
                    word: format!("{matched}; cursor line: {at_cursor}"),
                });
                let (prompt, progress, note) = s.marks.describe();
                channels.push(ChannelWord {
                    channel: "shell prompt (OSC 133)".into(),
                    word: prompt,
                });
                channels.push(ChannelWord {
                    channel: "progress (OSC 9;4)".into(),
                    word: progress,
                });
                channels.push(ChannelWord {
                    channel: "notification (OSC 9/777)".into(),
                    word: s.marks.notification.as_ref().map_or(note, |n| {
                        format!(
                            "{} ({:.1}s ago)",
                            n.text,
                            now.saturating_sub(n.at) as f64 / 1000.0
                        )
                    }),
                });
                channels.push(ChannelWord {
                    channel: "foreground program".into(),
                    word: match &s.foreground {
                        Some(f) if f.own => {
                            format!("{} (pid {}, the worker itself)", f.process, f.pid)
                        }
                        Some(f) => format!("{} (pid {})", f.process, f.pid),
                        None => "— (read when output pauses; Linux only)".into(),
                    },
                });
                channels.push(ChannelWord {
                    channel: "terminal read (/proc)".into(),
                    word: match &s.reading {
                        Some(r) if r.shell => format!("{} waits at its prompt", r.process),
                        Some(r) => format!("{} is blocked reading the terminal", r.process),
                        None => "no process is reading the terminal".into(),
                    },
                });
                channels.push(ChannelWord {
                    channel: "cursor after a question".into(),
                    word: crate::core::classify::question_at_cursor(s).map_or_else(
                        || "no".into(),
                        |q| {
                            format!(
                                "yes, after {} s of quiet: {q}",
                                crate::core::classify::QUESTION_QUIET_MS / 1000
                            )
                        },
                    ),
                });
                channels.push(ChannelWord {
                    channel: "timing".into(),
                    word: format!(
                        "last output {:.1}s ago, screen changed {:.1}s ago, last file or CPU activity {:.1}s ago, running {:.0}s",
                        now.saturating_sub(w.last_output_at) as f64 / 1000.0,
                        now.saturating_sub(w.last_change_at) as f64 / 1000.0,
                        now.saturating_sub(w.last_activity_at) as f64 / 1000.0,
                        now.saturating_sub(w.spawned_at) as f64 / 1000.0
                    ),
                });
                let channel = channel_of(&v.evidence.rule, rules);
                (
                    Some(v.kind.label()),
                    Some(format!("[{}] {}", v.evidence.rule, v.evidence.line)),
                    format!(
                        "from {channel} ({}): channels are read in the order above and the first with a word wins (the agent's own \"working\" outranks an idle title or screen while it is recent; OSC 133 C and OSC 9;4 progress only say \"running\" when nothing else speaks); screen rules fire only after their quiet time",
                        v.evidence.rule
                    ),
                )
            }
            _ => {
                let (v, e) = split_last_verdict(t.last_verdict.as_deref());
                channels.push(ChannelWord {
                    channel: "worker".into(),
                    word: "none is running; the verdict is the last one recorded".into(),
                });
                (
                    v,
                    e,
                    "no worker runs now: the last verdict recorded in the manifest".into(),
                )
            }
        };
        let mut ladders: Vec<String> = run
            .ladder
            .iter()
            .map(|(sit, (step, used))| {
                let action = self
                    .policy
                    .heal
                    .ladder
                    .steps(sit.name())
                    .get(*step)
                    .map(|s| s.action.name())
                    .unwrap_or("used up");
                format!("{}: step {} ({action}), used {used}", sit.name(), step + 1)
            })
            .collect();
        ladders.sort();
        Explanation {
            task: t.id.clone(),
            status: t.status.as_str().to_string(),
            attempts: t.attempts.unwrap_or(0),
            verdict,
            evidence,
            why,
            channels,
            ladders,
            auto_keys: run.auto_keys,
        }
    }
}
