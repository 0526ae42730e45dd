//! The run's view model: what every client shows (status, `ls`, the headless reporter, `ctl`
//! answers), computed once here from the engine's state, never by a client from engine
//! internals.

use super::{Engine, Ms};
use crate::manifest::{Manifest, Status};
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
