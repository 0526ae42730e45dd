//! Re-import: merging a fresh import into an existing manifest.
//!
//! Rules: a task of the fresh import that the manifest lacks is added (to the phase of the same
//! name or level; a missing phase is created in priority order); a task the manifest has and
//! that was never started ([`super::untouched`]) gets the fresh `title`, `prompt`, `files`,
//! `dependsOn` and `writes`/`reads`, everything else kept; a started or finished task is never
//! changed (a note says when its source changed); a task from the same source that the fresh
//! import lacks is reported (an issue no longer open, a task no longer in tasks.md) and kept.

use super::{phase, settle, untouched, ImportError, Imported};
use crate::core::manifest::{Manifest, Task};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// How a fresh task finds its counterpart in the existing manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeKey {
    /// By `issue` number (gh): the existing task may have any id (the seed's `t1` with issue 1).
    /// Existing tasks with an issue number absent from the import are reported as closed.
    Issue,
    /// By id (Kiro); existing tasks whose id starts with this prefix and that the import lacks
    /// are reported as gone from the spec.
    Id(String),
}

static NUMBERED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^Phase \d+: (.+)$").expect("valid regex"));

/// The level part of a phase name: `Phase 2: High` → `high`.
fn level(name: &str) -> String {
    NUMBERED
        .captures(name)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| name.to_string())
        .trim()
        .to_lowercase()
}

/// Merges `fresh` into `existing` (see the module rules). `file` names the input in errors.
pub fn merge(
    existing: Manifest,
    fresh: Imported,
    key: &MergeKey,
    file: &str,
) -> Result<Imported, ImportError> {
    let mut m = existing;
    let mut notes = fresh.notes;
    let fresh_levels: Vec<String> = fresh
        .manifest
        .phases
        .iter()
        .map(|p| level(&p.name))
        .collect();
    // Fresh id → the existing task's id, for every matched task.
    let mut rename: HashMap<String, String> = HashMap::new();
    for t in fresh.manifest.tasks() {
        if let Some(e) = find(&m, t, key) {
            rename.insert(t.id.clone(), e.id.clone());
        }
    }
    let map_deps = |deps: &[String]| -> Vec<String> {
        deps.iter()
            .map(|d| rename.get(d).cloned().unwrap_or_else(|| d.clone()))
            .collect()
    };
    let files_of: HashMap<String, Vec<String>> =
        m.tasks().map(|t| (t.id.clone(), t.files.clone())).collect();
    let (mut added, mut updated, mut same, mut kept) = (0, 0, 0, 0);
    let mut stated = HashSet::new();
    for (p, fresh_phase) in fresh.manifest.phases.iter().enumerate() {
        for t in &fresh_phase.tasks {
            let deps = fresh.stated_deps.get(&t.id).map(|d| map_deps(d));
            match rename.get(&t.id).cloned() {
                None => {
                    if m.task(&t.id).is_some() {
                        return Err(ImportError::Invalid {
                            file: file.to_string(),
                            place: format!("task {}", t.id),
                            message: "the manifest already has a task with this id for other work"
                                .into(),
                            fix: "rename that task in the manifest, or import into a new manifest"
                                .into(),
                        });
                    }
                    let mut t = t.clone();
                    t.depends_on = deps.clone();
                    if deps.is_some() {
                        stated.insert(t.id.clone());
                    }
                    let at = phase_for(&mut m, &fresh_phase.name, &fresh_levels, p, &mut notes);
                    notes.push(format!(
                        "added {} to \"{}\"",
                        super::gh::label(&t),
                        m.phases[at].name
                    ));
                    m.phases[at].tasks.push(t);
                    added += 1;
                }
                Some(id) => {
                    let shares = |d: &str, files: &[String]| {
                        files_of
                            .get(d)
                            .is_some_and(|fs| fs.iter().any(|f| files.contains(f)))
                    };
                    let changed = differences(
                        m.task(&id).expect("matched above"),
                        t,
                        deps.as_deref(),
                        &shares,
                    );
                    let e = m.task_mut(&id).expect("matched above");
                    if t.status.is_done() && !e.status.is_finished() {
                        notes.push(format!(
                            "{id} is done in its source but {} in the manifest; its status is left as it is \
                             (a re-import never changes a status)",
                            e.status
                        ));
                    }
                    if changed.is_empty() {
                        same += 1;
                    } else if untouched(e) {
                        e.title = t.title.clone();
                        e.prompt = t.prompt.clone();
                        e.files = t.files.clone();
                        e.depends_on = deps.clone();
                        e.writes = t.writes.clone();
                        e.reads = t.reads.clone();
                        match t.extra.get("labels") {
                            Some(v) => e.extra.insert("labels".into(), v.clone()),
                            None => e.extra.remove("labels"),
                        };
                        if deps.is_some() {
                            stated.insert(id.clone());
                        }
                        notes.push(format!("updated pending task {id}: {}", changed.join(", ")));
                        updated += 1;
                    } else {
                        notes.push(format!(
                            "kept {id} as it is ({}): it was started, and its source changed ({})",
                            e.status,
                            changed.join(", ")
                        ));
                        kept += 1;
                    }
                }
            }
        }
    }
    // Tasks in the fresh import, under their ids in the merged manifest.
    let present: HashSet<String> = fresh
        .manifest
        .tasks()
        .map(|t| rename.get(&t.id).cloned().unwrap_or_else(|| t.id.clone()))
        .collect();
    for t in m.tasks() {
        if present.contains(&t.id) {
            continue;
        }
        match (key, t.issue) {
            (MergeKey::Issue, Some(n)) => notes.push(format!(
                "issue #{n} ({}, {}) is not among the open issues imported (closed, or filtered out); \
                 the task is kept — remove it by hand if it is no longer wanted",
                t.id, t.status
            )),
            (MergeKey::Id(prefix), _) if t.id.starts_with(prefix.as_str()) => notes.push(format!(
                "{} ({}) is no longer in the spec's tasks.md; the task is kept — remove it by hand if it is no longer wanted",
                t.id, t.status
            )),
            _ => {}
        }
    }
    notes.push(format!(
        "re-import: {added} added, {updated} updated, {same} unchanged, {kept} started or finished and left alone"
    ));
    settle(
        &mut m,
        file,
        &|t| untouched(t),
        &stated,
        &super::gh::label,
        &mut notes,
    )?;
    // Keep the stated deps of the merged manifest for a later merge.
    let mut stated_deps: HashMap<String, Vec<String>> = HashMap::new();
    for (id, d) in fresh.stated_deps {
        stated_deps.insert(rename.get(&id).cloned().unwrap_or(id), map_deps(&d));
    }
    Ok(Imported {
        manifest: m,
        notes,
        stated_deps,
    })
}

fn find<'a>(m: &'a Manifest, t: &Task, key: &MergeKey) -> Option<&'a Task> {
    match key {
        MergeKey::Issue => t.issue.and_then(|n| m.tasks().find(|e| e.issue == Some(n))),
        MergeKey::Id(_) => m.task(&t.id),
    }
}

/// Which of the merged fields differ.
fn differences(
    e: &Task,
    t: &Task,
    deps: Option<&[String]>,
    shares_file: &dyn Fn(&str, &[String]) -> bool,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if e.title != t.title {
        out.push("title");
    }
    if e.prompt != t.prompt {
        out.push("prompt");
    }
    if e.files != t.files {
        out.push("files");
    }
    // Compare stated dependencies; same-file orderings the importer added are not "changes".
    let have = e.deps();
    let want = deps.unwrap_or(&[]);
    let added = want.iter().any(|d| !have.contains(d));
    let removed = have
        .iter()
        .any(|d| !want.contains(d) && !shares_file(d, &e.files));
    if added || removed {
        out.push("dependsOn");
    }
    if e.writes != t.writes {
        out.push("writes");
    }
    if e.reads != t.reads {
        out.push("reads");
    }
    out
}

/// The index of the phase a new task from fresh phase `name` (the `p`-th, of `levels`) joins:
/// the phase with that name, else the one with that level, else a new one placed before the
/// first existing phase of a later level (renumbering `Phase N:` names).
fn phase_for(
    m: &mut Manifest,
    name: &str,
    levels: &[String],
    p: usize,
    notes: &mut Vec<String>,
) -> usize {
    if let Some(i) = m.phases.iter().position(|ph| ph.name == name) {
        return i;
    }
    let lv = &levels[p];
    if let Some(i) = m.phases.iter().position(|ph| level(&ph.name) == *lv) {
        return i;
    }
    let rank = |ph_name: &str| levels.iter().position(|l| *l == level(ph_name));
    let at = m
        .phases
        .iter()
        .position(|ph| rank(&ph.name).is_some_and(|r| r > p))
        .unwrap_or(m.phases.len());
    m.phases.insert(at, phase(name));
    // Renumber the seed-style names so "Phase N" follows the order again.
    for (n, ph) in m.phases.iter_mut().enumerate() {
        if let Some(c) = NUMBERED.captures(&ph.name.clone()) {
            ph.name = super::gh::phase_name(n + 1, &c[1]);
        }
    }
    notes.push(format!(
        "created phase \"{}\" for new {lv} tasks",
        m.phases[at].name
    ));
    at
}
