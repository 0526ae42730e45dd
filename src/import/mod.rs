//! Importers: GitHub issues ([`gh`]) and Kiro specs ([`kiro`]) → a manifest.
//!
//! The parsers are pure functions over strings and plain data; what they need from the world
//! (which files exist, the current time) is passed in. The edge ([`cli`](mod@cli)) reads files, runs `gh`
//! (an argv, never a shell string) and writes the manifest with [`Manifest::save`] (atomic) only
//! after the whole import — parsing, merging, validation and [`Plan::build`] — has succeeded.
//!
//! Every import returns, beside the manifest, the lines of "what was inferred and why" that the
//! command prints.
//!
//! Fields the manifest model has no slot for are written to a task's `extra` map, so they
//! round-trip: `writes` and `reads` (Kiro file manifests, see [`kiro`]) and `labels` (gh).

pub mod cli;
pub mod gh;
pub mod kiro;
mod merge;
mod paths;

pub use cli::{cli, GhArgs, ImportArgs, ImportCmd, KiroArgs};
pub use merge::{merge, MergeKey};

use crate::core::manifest::{Manifest, Phase, Task};
use crate::core::plan::Plan;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// What went wrong in an import. Every variant names the input (file, `<stdin>` or the `gh`
/// command), the place in it, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not the JSON `gh issue list --json number,title,body,labels` prints.
    #[error("{file}: line {line}, column {column}: {message}. Fix: {fix}")]
    Json {
        /// The input's name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json found.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A line of a text input (tasks.md) is not understood.
    #[error("{file}:{line}: {message}. Fix: {fix}")]
    Line {
        /// The input file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The tasks wait for each other in a circle.
    #[error("{file}: dependency cycle: {}. Fix: {fix}", cycle.join(" → "))]
    Cycle {
        /// The input's name.
        file: String,
        /// The tasks on the cycle, each with where it came from, e.g. `issue-3 (#3)`; the first
        /// is repeated at the end.
        cycle: Vec<String>,
        /// How to fix it.
        fix: String,
    },
    /// Anything else that is wrong with the input or with the result.
    #[error("{file}: {place}: {message}. Fix: {fix}")]
    Invalid {
        /// The input's (or the manifest's) name.
        file: String,
        /// Where: an issue, a task, a line.
        place: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A file could not be read.
    #[error("{}: {action} failed: {source}. Fix: {fix}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
        /// How to fix it.
        fix: String,
    },
    /// Running `gh` failed.
    #[error("`{}` {outcome}{}. Fix: {fix}", argv.join(" "), if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Gh {
        /// The argv that was run.
        argv: Vec<String>,
        /// `could not be started`, `exited with status 1`, ...
        outcome: String,
        /// The last lines gh printed on stderr.
        stderr: String,
        /// How to fix it.
        fix: String,
    },
}

/// An import's result: the manifest to write and what was inferred and why, one line each.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The manifest; it passed [`Manifest::validate`] and [`Plan::build`].
    pub manifest: Manifest,
    /// "What I inferred and why", in order, for the person to read.
    pub notes: Vec<String>,
    /// The dependencies each task's source states (by task id), before the same-file orderings
    /// the importer adds; a re-import merges from these.
    pub(crate) stated_deps: HashMap<String, Vec<String>>,
}

/// Removes terminal control characters from one-line text (titles): C0, DEL, C1, escape
/// sequences and bidirectional overrides; newlines and tabs become spaces.
pub(crate) fn one_line(s: &str) -> String {
    let cleaned = crate::report::strip_controls(&s.replace(['\n', '\r', '\t'], " "));
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes terminal control characters from multi-line text (bodies), keeping newlines and tabs;
/// `\r\n` becomes `\n`.
pub(crate) fn multi_line(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    s.split('\n')
        .map(|l| {
            crate::report::strip_controls(&l.replace('\t', "    "))
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// True when a task has not been started: `pending`, never given a start time or an attempt.
/// Only such tasks are updated by a re-import.
pub fn untouched(t: &Task) -> bool {
    t.status == crate::core::manifest::Status::Pending
        && t.started_at.is_none()
        && t.attempts.unwrap_or(0) == 0
        && t.worktree.is_none()
}

/// Arranges a manifest so that it plans, then checks it. Steps:
/// 1. a dependency cycle is an error naming its tasks (`label` names a task for messages);
/// 2. a `movable` task that depends on a task in a later phase moves to the end of that phase
///    (a phase waits for the one before it, so staying would be a cycle);
/// 3. within each phase, tasks are put in dependency order (stable: otherwise manifest order);
/// 4. a task in `stated` (its `dependsOn` was set from its source, so the planner infers no
///    same-file order into it) also waits for the last earlier task of its phase on each of its
///    files, as the planner would have inferred;
/// 5. [`Manifest::validate`] and [`Plan::build`] must pass; the plan's warnings become notes.
pub(crate) fn settle(
    m: &mut Manifest,
    file: &str,
    movable: &dyn Fn(&Task) -> bool,
    stated: &HashSet<String>,
    label: &dyn Fn(&Task) -> String,
    notes: &mut Vec<String>,
) -> Result<(), ImportError> {
    // 1. cycles
    let ids: Vec<String> = m.tasks().map(|t| t.id.clone()).collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = m
        .tasks()
        .map(|t| {
            t.deps()
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    if let Some(cycle) = find_cycle(&deps) {
        let tasks: Vec<&Task> = m.tasks().collect();
        let mut names: Vec<String> = cycle.iter().map(|&i| label(tasks[i])).collect();
        names.push(names[0].clone());
        return Err(ImportError::Cycle {
            file: file.to_string(),
            cycle: names,
            fix: "remove one of these dependencies (\"depends on #N\", \"after #N\", \"blocked by #N\", \
                  or `_Depends: N_`) so the tasks can run in some order"
                .into(),
        });
    }
    // 2. phase moves, until nothing moves (terminates: moves only go to later phases).
    loop {
        let phase_of: HashMap<String, usize> = m
            .phases
            .iter()
            .enumerate()
            .flat_map(|(p, ph)| ph.tasks.iter().map(move |t| (t.id.clone(), p)))
            .collect();
        let mut moved = None;
        'find: for (p, ph) in m.phases.iter().enumerate() {
            for (k, t) in ph.tasks.iter().enumerate() {
                if !movable(t) {
                    continue;
                }
                if let Some((dep, &q)) = t
                    .deps()
                    .iter()
                    .filter_map(|d| phase_of.get(d).map(|q| (d, q)))
                    .max_by_key(|(_, q)| **q)
                {
                    if q > p {
                        moved = Some((p, k, q, dep.clone()));
                        break 'find;
                    }
                }
            }
        }
        let Some((p, k, q, dep)) = moved else { break };
        let t = m.phases[p].tasks.remove(k);
        notes.push(format!(
            "{} moved from \"{}\" to \"{}\": it depends on {dep}, which is in that later phase",
            label(&t),
            m.phases[p].name,
            m.phases[q].name
        ));
        m.phases[q].tasks.push(t);
    }
    // 3. dependency order within each phase
    for ph in &mut m.phases {
        let before: Vec<String> = ph.tasks.iter().map(|t| t.id.clone()).collect();
        ph.tasks = stable_topo(std::mem::take(&mut ph.tasks));
        let after: Vec<String> = ph.tasks.iter().map(|t| t.id.clone()).collect();
        if before != after {
            notes.push(format!(
                "reordered \"{}\" so that every task comes after the tasks it depends on: {}",
                ph.name,
                after.join(", ")
            ));
        }
    }
    // 4. same-file order for tasks whose dependsOn is stated
    for ph in &mut m.phases {
        let mut last_on: HashMap<String, String> = HashMap::new();
        for k in 0..ph.tasks.len() {
            let t = &ph.tasks[k];
            if stated.contains(&t.id) && t.depends_on.is_some() {
                let mut add = Vec::new();
                for f in &t.files {
                    if let Some(prev) = last_on.get(f) {
                        if !t.deps().contains(prev) && !add.contains(prev) {
                            add.push(prev.clone());
                            notes.push(format!(
                                "{} also waits for {prev}: both touch {f} (tasks on one file run one after another)",
                                label(t)
                            ));
                        }
                    }
                }
                if !add.is_empty() {
                    ph.tasks[k]
                        .depends_on
                        .get_or_insert_with(Vec::new)
                        .extend(add);
                }
            }
            let t = &ph.tasks[k];
            for f in &t.files {
                last_on.insert(f.clone(), t.id.clone());
            }
        }
    }
    // 5. the result must plan
    m.phases.retain(|p| !p.tasks.is_empty());
    let problems = m.validate();
    if let Some(p) = problems.first() {
        return Err(ImportError::Invalid {
            file: file.to_string(),
            place: p.location.to_string(),
            message: format!("the imported manifest would be invalid: {}", p.message),
            fix: p.fix.clone(),
        });
    }
    match Plan::build(m) {
        Ok(plan) => {
            notes.extend(plan.warnings.iter().map(|w| format!("plan: {w}")));
            Ok(())
        }
        Err(problems) => {
            let (place, message, fix) = match problems.first() {
                Some(p) => (p.location.to_string(), p.message.clone(), p.fix.clone()),
                None => (
                    "manifest".into(),
                    "unknown planning problem".into(),
                    "run `switchyard plan` on it".into(),
                ),
            };
            Err(ImportError::Invalid {
                file: file.to_string(),
                place,
                message: format!("the imported manifest does not plan: {message}"),
                fix,
            })
        }
    }
}

/// A cycle in a dependency graph (`deps[i]` = what task i waits for), as task indices in
/// waiting order, or `None`.
pub(crate) fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; deps.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..deps.len() {
        if state[start] != 0 {
            continue;
        }
        stack.push((start, 0));
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&d) = deps[node].get(*next) {
                *next += 1;
                match state[d] {
                    0 => {
                        state[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(n, _)| n == d).unwrap_or(0);
                        return Some(stack[from..].iter().map(|&(n, _)| n).collect());
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// Orders tasks so each comes after its dependencies within the list, otherwise keeping the
/// given order (Kahn's algorithm taking the earliest ready task). Assumes no cycle.
fn stable_topo(tasks: Vec<Task>) -> Vec<Task> {
    let index: HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let n = tasks.len();
    let mut waiting = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in tasks.iter().enumerate() {
        for d in t.deps() {
            if let Some(&j) = index.get(d) {
                if j != i {
                    waiting[i] += 1;
                    dependents[j].push(i);
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.insert(k);
            }
        }
    }
    // A cycle would leave tasks out; keep them (in order) rather than lose them.
    for i in 0..n {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    let mut slots: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// A new, empty phase.
pub(crate) fn phase(name: &str) -> Phase {
    Phase {
        name: name.to_string(),
        tasks: Vec::new(),
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cycle_in_waiting_order() {
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2])
        );
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0, 1]]), None);
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
    }

    #[test]
    fn stable_topo_moves_only_what_must_move() {
        let mut a = Task::new("a", "");
        a.depends_on = Some(vec!["c".into()]);
        let b = Task::new("b", "");
        let c = Task::new("c", "");
        let ids: Vec<String> = stable_topo(vec![a, b, c])
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }

    #[test]
    fn text_cleaning_removes_controls() {
        assert_eq!(one_line("a\x1b[31mred\x1b[0m\nb\u{9b}c"), "ared bc");
        assert_eq!(multi_line("x\r\ny\x07\n\n"), "x\ny");
    }
}
