//! Edits a person makes to the manifest file while a run owns it, merged instead of lost.
//!
//! Three-way: `base` is what the run last wrote (or loaded), `disk` what the file holds now,
//! `ours` the run's state. What the person changed (disk against base) is applied where the run
//! can take it, and kept in the file where it cannot; everything is reported in one line each:
//!
//! - a task set to `skipped` by hand is skipped (the caller turns it into a `skip` action);
//! - title, prompt, verify, agent, role, lens and unknown fields of a task that has not started,
//!   and unknown top-level and phase fields, are taken;
//! - a task added by hand is kept in the file and runs next run (this run's plan is fixed);
//! - any other change (another status, the fields the plan is built from — files, dependsOn,
//!   reads, writes, context —, a started task's fields, a removed task) is not applied, said so,
//!   and the run's value is written back.

use crate::core::manifest::{Manifest, Status, Task};

/// The result of a merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    /// What to write to the file: the run's state with the person's edits applied, and tasks
    /// added by hand kept.
    pub manifest: Manifest,
    /// Ids of tasks the person set to `skipped`.
    pub skip: Vec<String>,
    /// One line per edit: taken, kept for the next run, or not applied and why.
    pub notes: Vec<String>,
}

/// Merges the person's edits (`disk` against `base`) into `ours`.
pub fn merge_hand_edits(ours: &Manifest, base: &Manifest, disk: &Manifest) -> Merge {
    let mut out = ours.clone();
    let mut skip = Vec::new();
    let mut notes = Vec::new();
    if disk.extra != base.extra {
        out.extra = disk.extra.clone();
        notes.push("top-level fields edited by hand: taken".into());
    }
    for (p, phase) in disk.phases.iter().enumerate() {
        let base_phase = base.phases.iter().find(|b| b.name == phase.name);
        if base_phase.is_some_and(|b| b.extra != phase.extra) {
            if let Some(o) = out.phases.iter_mut().find(|o| o.name == phase.name) {
                o.extra = phase.extra.clone();
                notes.push(format!(
                    "phase {:?}: fields edited by hand: taken",
                    phase.name
                ));
            }
        }
        for t in &phase.tasks {
            let Some(b) = base.task(&t.id) else {
                if ours.task(&t.id).is_some() {
                    continue;
                }
                // Added by hand: kept in the file, in its phase (or the last one).
                let target = out
                    .phases
                    .iter()
                    .position(|o| o.name == phase.name)
                    .unwrap_or_else(|| p.min(out.phases.len().saturating_sub(1)));
                if let Some(o) = out.phases.get_mut(target) {
                    o.tasks.push(t.clone());
                    notes.push(format!(
                        "task {} was added by hand: kept in the manifest; it runs in the next run (this run's plan is fixed)",
                        t.id
                    ));
                }
                continue;
            };
            let Some(o) = out.task_mut(&t.id) else {
                continue;
            };
            merge_task(o, b, t, &mut skip, &mut notes);
        }
    }
    for b in base.tasks() {
        if disk.task(&b.id).is_none() {
            notes.push(format!(
                "task {} was removed by hand: kept (the run owns it); stop the run to remove it",
                b.id
            ));
        }
    }
    Merge {
        manifest: out,
        skip,
        notes,
    }
}

fn merge_task(o: &mut Task, b: &Task, d: &Task, skip: &mut Vec<String>, notes: &mut Vec<String>) {
    let id = &d.id;
    if d.status != b.status {
        if d.status == Status::Skipped && !o.status.is_finished() {
            skip.push(id.clone());
            notes.push(format!("task {id} was set to skipped by hand: skipped"));
        } else {
            notes.push(format!(
                "task {id}: status changed by hand to {} — not applied while the run owns it; use `switchyard ctl` (retry, skip, mark_done, …)",
                d.status.as_str()
            ));
        }
    }
    let started = o.status != Status::Pending || o.attempts.unwrap_or(0) > 0;
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    let mut field = |name: &str, changed: bool, apply: &mut dyn FnMut()| {
        if !changed {
            return;
        }
        if started {
            refused.push(name.to_string());
        } else {
            apply();
            taken.push(name.to_string());
        }
    };
    field("title", d.title != b.title, &mut || {
        o.title = d.title.clone()
    });
    field("prompt", d.prompt != b.prompt, &mut || {
        o.prompt = d.prompt.clone()
    });
    field("verify", d.verify != b.verify, &mut || {
        o.verify = d.verify.clone()
    });
    field("agent", d.agent != b.agent, &mut || {
        o.agent = d.agent.clone()
    });
    field("role", d.role != b.role, &mut || o.role = d.role.clone());
    field("lens", d.lens != b.lens, &mut || o.lens = d.lens.clone());
    if d.extra != b.extra {
        // Unknown fields belong to other tools: always taken.
        o.extra = d.extra.clone();
        taken.push("unknown fields".into());
    }
    let plan_fields: Vec<&str> = [
        ("files", d.files != b.files),
        ("dependsOn", d.depends_on != b.depends_on),
        ("reads", d.reads != b.reads),
        ("writes", d.writes != b.writes),
        ("context", d.context != b.context),
    ]
    .iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| *name)
    .collect();
    if !plan_fields.is_empty() {
        notes.push(format!(
            "task {id}: {} edited by hand: not applied (this run's plan is fixed); stop the run and start it again to plan with them",
            plan_fields.join(", ")
        ));
    }
    if !taken.is_empty() {
        notes.push(format!(
            "task {id}: {} edited by hand: taken",
            taken.join(", ")
        ));
    }
    if !refused.is_empty() {
        notes.push(format!(
            "task {id}: {} edited by hand: not applied to a task that started; stop the run to change it",
            refused.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> Manifest {
        Manifest::parse(json).unwrap()
    }

    const BASE: &str = r#"{"project":"p","phases":[{"name":"a","tasks":[
        {"id":"t1","title":"One","files":["x"],"status":"running","attempts":1},
        {"id":"t2","title":"Two","files":["y"],"status":"pending"},
        {"id":"t3","title":"Three","files":["z"],"status":"pending"}]}]}"#;

    #[test]
    fn skips_fields_and_new_tasks_are_merged_and_the_rest_is_reported() {
        let base = m(BASE);
        let mut ours = base.clone();
        ours.task_mut("t1").unwrap().last_verdict = Some("running".into());
        let disk = m(
            r#"{"project":"p","owner":"me","phases":[{"name":"a","tasks":[
            {"id":"t1","title":"One (renamed)","files":["x"],"status":"running","attempts":1},
            {"id":"t2","title":"Two, better","files":["y"],"status":"pending","note":"keep me"},
            {"id":"t3","title":"Three","files":["z"],"status":"skipped"},
            {"id":"t4","title":"Four","files":["w"],"status":"pending"}]}]}"#,
        );
        let r = merge_hand_edits(&ours, &base, &disk);
        assert_eq!(r.skip, vec!["t3".to_string()]);
        let saved = &r.manifest;
        assert_eq!(saved.extra["owner"], "me", "top-level unknown field taken");
        assert_eq!(
            saved.task("t1").unwrap().title,
            "One",
            "a started task keeps its title"
        );
        assert_eq!(
            saved.task("t1").unwrap().last_verdict.as_deref(),
            Some("running"),
            "the run's own state is kept"
        );
        assert_eq!(saved.task("t2").unwrap().title, "Two, better");
        assert_eq!(saved.task("t2").unwrap().extra["note"], "keep me");
        assert!(
            saved.task("t4").is_some(),
            "a task added by hand is kept in the file"
        );
        let notes = r.notes.join("\n");
        assert!(notes.contains("t4 was added by hand"), "{notes}");
        assert!(
            notes.contains("t1: title edited by hand: not applied"),
            "{notes}"
        );
        assert!(notes.contains("t3 was set to skipped by hand"), "{notes}");
    }

    #[test]
    fn role_and_lens_are_taken_by_pending_tasks_and_plan_fields_are_refused() {
        let base = m(BASE);
        let disk = m(r#"{"project":"p","phases":[{"name":"a","tasks":[
            {"id":"t1","title":"One","files":["x"],"status":"running","attempts":1,"role":"reviewer","lens":"security"},
            {"id":"t2","title":"Two","files":["y"],"status":"pending","role":"reviewer","lens":"security"},
            {"id":"t3","title":"Three","files":["z"],"status":"pending","reads":["y"],"writes":["z"],"context":["t2"]}]}]}"#);
        let r = merge_hand_edits(&base, &base, &disk);
        let t = |id: &str| r.manifest.task(id).unwrap().clone();
        assert_eq!(
            (t("t2").role.as_deref(), t("t2").lens.as_deref()),
            (Some("reviewer"), Some("security")),
            "a pending task takes them"
        );
        assert_eq!(
            (t("t1").role, t("t1").lens),
            (None, None),
            "a running task keeps its own"
        );
        assert_eq!(
            (t("t3").reads, t("t3").writes, t("t3").context),
            (None, None, None)
        );
        let notes = r.notes.join("\n");
        assert!(
            notes.contains("t2: role, lens edited by hand: taken"),
            "{notes}"
        );
        assert!(
            notes.contains("t1: role, lens edited by hand: not applied"),
            "{notes}"
        );
        assert!(
            notes.contains(
                "t3: reads, writes, context edited by hand: not applied (this run's plan is fixed)"
            ),
            "{notes}"
        );
    }

    #[test]
    fn a_removed_task_and_a_forbidden_status_change_are_reported_not_applied() {
        let base = m(BASE);
        let disk = m(r#"{"project":"p","phases":[{"name":"a","tasks":[
            {"id":"t1","title":"One","files":["x"],"status":"complete","attempts":1},
            {"id":"t2","title":"Two","files":["y"],"status":"pending"}]}]}"#);
        let r = merge_hand_edits(&base, &base, &disk);
        assert!(r.skip.is_empty());
        assert_eq!(r.manifest.task("t1").unwrap().status, Status::Running);
        assert!(r.manifest.task("t3").is_some());
        let notes = r.notes.join("\n");
        assert!(notes.contains("t3 was removed by hand"), "{notes}");
        assert!(
            notes.contains("status changed by hand to complete"),
            "{notes}"
        );
    }
}
