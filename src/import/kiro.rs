//! Kiro spec (`requirements.md`, `design.md`, `tasks.md`) → manifest.
//!
//! `tasks.md` as Kiro writes it (Kiro docs "Specs"; the kiro spec-tasks generators' format rules:
//! numbered major tasks `1.`, subtasks `1.1`, at most two levels, `_Requirements: 1.1, 2.3_`
//! lines, `- [ ]*` for optional tasks, `(P)` for parallel-capable tasks, `_Depends: 2_` lines).
//! Recognised, line by line:
//! - a task line `- [ ] 1. Title`, `- [x] 1.1 Title` (`*` or `+` bullets too; `[x]`/`[X]` done,
//!   `[ ]` not done, `[-]`/`[~]` in progress, which counts as not done; `]*` optional; a trailing
//!   `(P)` is removed from the title). Its level comes from its number, not its indentation:
//!   `2.1` belongs to `2` wherever it is indented (deeper numbers like `2.1.1` belong to `2` too);
//! - `_Requirements: 1.2, 3.1_` (also without underscores, or bold): requirement `1`,
//!   acceptance criterion `2`, looked up in requirements.md;
//! - `_Depends: 2, 3_` / `_Depends on: 2_`: the task waits for major tasks 2 and 3;
//! - file lines `Files:`, `Writes:`, `Creates:`, `Modifies:` (→ `writes`) and `Reads:`
//!   (→ `reads`), paths separated by commas or spaces, backticks optional; any other backticked
//!   path in a title or detail that contains `/` or exists in the repository (→ `writes`);
//! - other bullets and indented lines under a task are its details (given to the agent).
//!
//! A major task with subtasks is one task (a dispatch unit, as the Kiro orchestrator seed
//! dispatches it) whose prompt lists its subtasks in order. It is complete when its box is
//! checked, or when all its subtasks are. `files` is `writes` then `reads` (so that, until the
//! planner knows readers from writers, a reader waits for the writer of its files); `writes` and
//! `reads` are also written as task fields. A task naming no file runs alone.
//!
//! Every prompt carries a short context pack (after the Codex orchestration guide's "Context
//! Pack"): the goal (requirements.md's introduction), constraints (this task only; the files it
//! may write and only read), pointers (the spec files and design.md's section headings) and the
//! referenced requirements with their acceptance criteria as the success check — not whole files.

use super::{multi_line, one_line, paths, phase, settle, ImportError, Imported};
use crate::core::manifest::{Manifest, Status, Task};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// One task line of tasks.md with what belongs to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecItem {
    /// `2` or `2.1`.
    pub number: String,
    /// The title (control characters and a `(P)` marker removed).
    pub title: String,
    /// Checked `[x]`.
    pub done: bool,
    /// Marked optional (`- [ ]*`).
    pub optional: bool,
    /// Marked parallel-capable (`(P)`).
    pub parallel: bool,
    /// Detail bullets, in order.
    pub details: Vec<String>,
    /// Requirement references, e.g. `1.2`.
    pub requirements: Vec<String>,
    /// Major task numbers it waits for.
    pub depends: Vec<String>,
    /// Files it writes.
    pub writes: Vec<String>,
    /// Files it only reads.
    pub reads: Vec<String>,
    /// 1-based line in tasks.md.
    pub line: usize,
    /// Subtasks (only on major tasks), in order.
    pub subtasks: Vec<SpecItem>,
}

static BOX_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*[-*+]\s+\[").expect("valid regex"));
static TASK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\s*)[-*+]\s+\[([ xX~-])\](\*)?\s*(\d+(?:\.\d+)*)\.?\s+(\S.*)$")
        .expect("valid regex")
});
static KEYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:[-*+]\s+)?[_*]*\s*(requirements?|depends(?:\s+on)?|files?|writes?|creates?|modif(?:y|ies)|reads?)\s*[_*]*\s*:\s*[_*]*\s*(.*?)\s*[_*]*\s*$")
        .expect("valid regex")
});
static BULLET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*[-*+]\s+(\S.*)$").expect("valid regex"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d+(?:\.\d+)*$").expect("valid regex"));

/// Parses tasks.md into major tasks with their subtasks. `file` names it in errors, which carry
/// the line: a task line without a number or title, an unknown checkbox mark, a subtask whose
/// major task is missing, a number used twice, a requirement or dependency that is not a number,
/// a dependency on a task that does not exist, a `Files:` path outside the repository, no tasks.
pub fn parse_tasks(
    text: &str,
    file: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<SpecItem>, ImportError> {
    let err = |line: usize, message: String, fix: &str| ImportError::Line {
        file: file.to_string(),
        line,
        message,
        fix: fix.to_string(),
    };
    let mut majors: Vec<SpecItem> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (major index, Some(sub index)) of the item lines attach to.
    let mut current: Option<(usize, Option<usize>)> = None;
    let mut dep_lines: Vec<(usize, usize, String)> = Vec::new(); // (line, major, number)
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        if let Some(c) = TASK.captures(raw) {
            let number = c[4].to_string();
            if let Some(first) = seen.get(&number) {
                return Err(err(
                    line,
                    format!("task number {number} is used twice (first on line {first})"),
                    "give every task its own number",
                ));
            }
            seen.insert(number.clone(), line);
            let mut title = one_line(&c[5]);
            let parallel = title.ends_with("(P)");
            if parallel {
                title = title.trim_end_matches("(P)").trim_end().to_string();
            }
            let item = SpecItem {
                number: number.clone(),
                title,
                done: matches!(&c[2], "x" | "X"),
                optional: c.get(3).is_some(),
                parallel,
                line,
                ..Default::default()
            };
            match number.split_once('.') {
                None => {
                    majors.push(item);
                    current = Some((majors.len() - 1, None));
                }
                Some((major, _)) => {
                    let Some(m) = majors.iter().position(|t| t.number == major) else {
                        return Err(err(
                            line,
                            format!("subtask {number} has no major task {major} above it"),
                            &format!("add a line `- [ ] {major}. Title` before it, or renumber the subtask"),
                        ));
                    };
                    majors[m].subtasks.push(item);
                    current = Some((m, Some(majors[m].subtasks.len() - 1)));
                }
            }
            continue;
        }
        if BOX_START.is_match(raw) {
            return Err(err(
                line,
                format!("not a task line: {:?}", one_line(raw.trim())),
                "write task lines as `- [ ] 3. Title` (major task) or `- [ ] 3.1 Title` (subtask); the box holds a space, x or -",
            ));
        }
        let Some((m, sub)) = current else { continue };
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let item = match sub {
            Some(s) => &mut majors[m].subtasks[s],
            None => &mut majors[m],
        };
        if let Some(c) = KEYED.captures(raw) {
            let key = c[1].to_lowercase();
            let value = c[2].trim_matches(['_', '*', ' ']).to_string();
            let values: Vec<String> = value
                .split([',', ' '])
                .map(|v| v.trim().trim_matches('`').trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if key.starts_with("requirement") {
                for v in values {
                    if !NUMBER.is_match(&v) {
                        return Err(err(line, format!("requirement reference {v:?} is not a number like 1.2"), "list requirement numbers separated by commas, e.g. `_Requirements: 1.2, 3.1_`"));
                    }
                    if !item.requirements.contains(&v) {
                        item.requirements.push(v);
                    }
                }
            } else if key.starts_with("depends") {
                for v in values {
                    let major = v.split('.').next().unwrap_or("").to_string();
                    if !NUMBER.is_match(&v) {
                        return Err(err(
                            line,
                            format!("dependency {v:?} is not a task number"),
                            "name major task numbers, e.g. `_Depends: 2, 3_`",
                        ));
                    }
                    dep_lines.push((line, m, major));
                }
            } else {
                let reads = key.starts_with("read");
                for v in values {
                    if let Some(why) = paths::outside_reason(&v) {
                        return Err(err(
                            line,
                            format!("file {v:?} {why}"),
                            "name files relative to the repository root, without '..'",
                        ));
                    }
                    let v = v.strip_prefix("./").unwrap_or(&v).to_string();
                    let list = if reads {
                        &mut item.reads
                    } else {
                        &mut item.writes
                    };
                    if !list.contains(&v) {
                        list.push(v);
                    }
                }
            }
            continue;
        }
        let text = match BULLET.captures(raw) {
            Some(c) => {
                item.details.push(multi_line(&c[1]));
                item.details.last().cloned().unwrap_or_default()
            }
            None if raw.starts_with([' ', '\t']) && !item.details.is_empty() => {
                let more = multi_line(raw.trim());
                let last = item.details.last_mut().expect("checked");
                last.push(' ');
                last.push_str(&more);
                more
            }
            None => continue,
        };
        for c in paths::candidates(&text) {
            if c.backticked
                && !c.outside
                && (c.path.contains('/') || exists(&c.path))
                && !item.writes.contains(&c.path)
            {
                item.writes.push(c.path);
            }
        }
    }
    if majors.is_empty() {
        return Err(err(
            1,
            "no task lines found".into(),
            "tasks.md lists tasks as `- [ ] 1. Title`, subtasks as `- [ ] 1.1 Title`",
        ));
    }
    // Backticked paths in titles count too.
    let title_paths = |it: &mut SpecItem| {
        for c in paths::candidates(&it.title) {
            if c.backticked
                && !c.outside
                && (c.path.contains('/') || exists(&c.path))
                && !it.writes.contains(&c.path)
            {
                it.writes.push(c.path);
            }
        }
    };
    for major in &mut majors {
        title_paths(major);
        for sub in &mut major.subtasks {
            title_paths(sub);
        }
    }
    for (line, m, major) in dep_lines {
        if !majors.iter().any(|t| t.number == major) {
            return Err(err(
                line,
                format!(
                    "task {} depends on task {major}, which tasks.md does not have",
                    majors[m].number
                ),
                "name an existing major task number",
            ));
        }
        if majors[m].number != major && !majors[m].depends.contains(&major) {
            majors[m].depends.push(major);
        }
    }
    Ok(majors)
}

/// The spec's texts.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The feature name (the spec folder's name), e.g. `user-auth`.
    pub name: &'a str,
    /// The spec folder as the person named it (for pointers and messages), e.g. `.kiro/specs/user-auth`.
    pub dir: &'a str,
    /// tasks.md.
    pub tasks_md: &'a str,
    /// requirements.md, if present.
    pub requirements_md: Option<&'a str>,
    /// design.md, if present.
    pub design_md: Option<&'a str>,
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct KiroOptions {
    /// Task ids are `<prefix>-<major number>`; default: the spec name as a slug.
    pub id_prefix: Option<String>,
    /// The manifest's `project` (default: the spec name).
    pub project: Option<String>,
    /// The manifest's `created` (RFC 3339).
    pub created: Option<String>,
}

/// The id prefix for a spec name: lowercase letters, digits and `-`.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "kiro".into()
    } else {
        s
    }
}

/// Builds the manifest from a spec: one phase, one task per major task. `exists` says which
/// repository paths exist (used for backticked names without `/`).
pub fn import(
    spec: &Spec,
    opts: &KiroOptions,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Imported, ImportError> {
    let tasks_file = format!("{}/tasks.md", spec.dir.trim_end_matches('/'));
    let majors = parse_tasks(spec.tasks_md, &tasks_file, exists)?;
    let reqs = spec
        .requirements_md
        .map(Requirements::parse)
        .unwrap_or_default();
    let design_sections: Vec<String> = spec.design_md.map(headings).unwrap_or_default();
    let prefix = opts.id_prefix.clone().unwrap_or_else(|| slug(spec.name));
    let mut notes = Vec::new();
    if spec.requirements_md.is_none() {
        notes.push(format!(
            "{}: no requirements.md; prompts carry no requirements",
            spec.dir
        ));
    }
    if spec.design_md.is_none() {
        notes.push(format!(
            "{}: no design.md; prompts point to no design sections",
            spec.dir
        ));
    }
    let mut p = phase(&format!("Spec: {}", one_line(spec.name)));
    let mut stated_deps = HashMap::new();
    for major in &majors {
        let id = format!("{prefix}-{}", major.number);
        let mut task = Task::new(&id, &major.title);
        let all: Vec<&SpecItem> = std::iter::once(major)
            .chain(major.subtasks.iter())
            .collect();
        let mut writes: Vec<String> = Vec::new();
        let mut refs: Vec<String> = Vec::new();
        for it in &all {
            for w in &it.writes {
                if !writes.contains(w) {
                    writes.push(w.clone());
                }
            }
            for r in &it.requirements {
                if !refs.contains(r) {
                    refs.push(r.clone());
                }
            }
        }
        let mut reads: Vec<String> = Vec::new();
        for it in &all {
            for r in &it.reads {
                if !writes.contains(r) && !reads.contains(r) {
                    reads.push(r.clone());
                }
            }
        }
        task.files = writes.iter().chain(reads.iter()).cloned().collect();
        let at = format!("{tasks_file}:{}", major.line);
        if !writes.is_empty() {
            task.writes = Some(writes.clone());
        }
        if !reads.is_empty() {
            task.reads = Some(reads.clone());
        }
        if task.files.is_empty() {
            notes.push(format!("{id} ({at}): names no files; it runs alone"));
        } else {
            notes.push(format!(
                "{id} ({at}): writes [{}], reads [{}]",
                writes.join(", "),
                reads.join(", ")
            ));
        }
        let done =
            major.done || (!major.subtasks.is_empty() && major.subtasks.iter().all(|s| s.done));
        if done {
            task.status = Status::Complete;
            notes.push(format!(
                "{id} ({at}): complete ({})",
                if major.done {
                    "checked in tasks.md"
                } else {
                    "all its subtasks are checked"
                }
            ));
        }
        if !major.subtasks.is_empty() {
            notes.push(format!(
                "{id} ({at}): one task with subtasks {}",
                major
                    .subtasks
                    .iter()
                    .map(|s| s.number.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if major.parallel {
            notes.push(format!("{id} ({at}): marked (P), parallel-capable; the file lists decide what runs in parallel"));
        }
        for it in &all {
            if it.optional {
                notes.push(format!("{id}: {} is marked optional (`]*`); it is included, marked optional in the prompt", it.number));
            }
        }
        let missing: Vec<&String> = refs.iter().filter(|r| reqs.lookup(r).is_none()).collect();
        if spec.requirements_md.is_some() && !missing.is_empty() {
            notes.push(format!(
                "warning: {id} ({at}) references requirement(s) {} that requirements.md does not have",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if !major.depends.is_empty() {
            let deps: Vec<String> = major
                .depends
                .iter()
                .map(|d| format!("{prefix}-{d}"))
                .collect();
            notes.push(format!(
                "{id} ({at}): waits for {} (`_Depends:_`)",
                deps.join(", ")
            ));
            stated_deps.insert(id.clone(), deps.clone());
            task.depends_on = Some(deps);
        }
        task.prompt = Some(prompt(
            spec,
            major,
            &refs,
            &reqs,
            &design_sections,
            &writes,
            &reads,
        ));
        p.tasks.push(task);
    }
    let mut manifest = Manifest {
        project: opts.project.clone().unwrap_or_else(|| one_line(spec.name)),
        repo: None,
        workdir: None,
        created: opts.created.clone(),
        model: None,
        model_tier: None,
        phases: vec![p],
        extra: Default::default(),
    };
    let stated: HashSet<String> = stated_deps.keys().cloned().collect();
    let label = |t: &Task| t.id.clone();
    settle(
        &mut manifest,
        &tasks_file,
        &|_| true,
        &stated,
        &label,
        &mut notes,
    )?;
    Ok(Imported {
        manifest,
        notes,
        stated_deps,
    })
}

/// The prompt for one major task.
fn prompt(
    spec: &Spec,
    major: &SpecItem,
    refs: &[String],
    reqs: &Requirements,
    design: &[String],
    writes: &[String],
    reads: &[String],
) -> String {
    let mut s = format!(
        "Kiro spec \"{}\", task {}: {}\n",
        one_line(spec.name),
        major.number,
        major.title
    );
    let item = |s: &mut String, it: &SpecItem, indent: &str| {
        for d in &it.details {
            s.push_str(&format!("{indent}- {d}\n"));
        }
        if !it.requirements.is_empty() {
            s.push_str(&format!(
                "{indent}- Requirements: {}\n",
                it.requirements.join(", ")
            ));
        }
    };
    item(&mut s, major, "");
    if !major.subtasks.is_empty() {
        s.push_str("\nSubtasks, in order:\n");
        for sub in &major.subtasks {
            let mut marks = Vec::new();
            if sub.done {
                marks.push("already done");
            }
            if sub.optional {
                marks.push("optional");
            }
            let marks = if marks.is_empty() {
                String::new()
            } else {
                format!(" ({})", marks.join(", "))
            };
            s.push_str(&format!("{} {}{marks}\n", sub.number, sub.title));
            item(&mut s, sub, "   ");
        }
    }
    let dir = spec.dir.trim_end_matches('/');
    s.push_str("\nContext pack\n");
    if let Some(goal) = &reqs.goal {
        s.push_str(&format!("- Goal: {goal}\n"));
    }
    let mut constraints =
        String::from("do only this task; the spec's other tasks are done separately");
    if !writes.is_empty() {
        constraints.push_str(&format!("; change only {}", writes.join(", ")));
    }
    if !reads.is_empty() {
        constraints.push_str(&format!("; read but do not change {}", reads.join(", ")));
    }
    s.push_str(&format!("- Constraints: {constraints}.\n"));
    let mut pointers = vec![format!("{dir}/tasks.md (task {})", major.number)];
    if spec.requirements_md.is_some() {
        pointers.push(format!("{dir}/requirements.md"));
    }
    if spec.design_md.is_some() {
        if design.is_empty() {
            pointers.push(format!("{dir}/design.md"));
        } else {
            pointers.push(format!("{dir}/design.md (sections: {})", design.join("; ")));
        }
    }
    s.push_str(&format!("- Pointers: {}.\n", pointers.join(", ")));
    let found: Vec<(String, String)> = refs
        .iter()
        .filter_map(|r| reqs.lookup(r).map(|t| (r.clone(), t)))
        .collect();
    if !found.is_empty() {
        s.push_str("- Requirements:\n");
        for (r, t) in &found {
            s.push_str(&format!("  - {r}: {t}\n"));
        }
        s.push_str("- Success check: the requirements above hold, and the project's tests pass.\n");
    } else {
        s.push_str(
            "- Success check: the task and its subtasks are done, and the project's tests pass.\n",
        );
    }
    s
}

/// What the context pack takes from requirements.md (Kiro's format: `## Introduction`, then
/// `### Requirement N` sections with `**User Story:**` and numbered `#### Acceptance Criteria`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// The introduction's first paragraph, shortened to 300 characters.
    pub goal: Option<String>,
    /// Requirements by number.
    pub items: HashMap<String, Requirement>,
}

/// One `### Requirement N: Title` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirement {
    /// The heading's title after the number (may be empty).
    pub title: String,
    /// The `**User Story:**` line.
    pub story: Option<String>,
    /// Acceptance criteria by their number in the list.
    pub criteria: HashMap<String, String>,
}

static REQ_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^#{2,4}\s+requirement\s+(\d+(?:\.\d+)*)\s*[:.\-–—]?\s*(.*)$")
        .expect("valid regex")
});
static CRITERION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(\d+)\.\s+(\S.*)$").expect("valid regex"));

impl Requirements {
    /// Reads requirements.md.
    pub fn parse(text: &str) -> Requirements {
        let mut r = Requirements::default();
        let mut current: Option<String> = None;
        let mut in_intro = false;
        let mut intro = String::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(c) = REQ_HEADING.captures(t) {
                in_intro = false;
                let n = c[1].to_string();
                r.items.insert(
                    n.clone(),
                    Requirement {
                        title: one_line(&c[2]),
                        ..Default::default()
                    },
                );
                current = Some(n);
                continue;
            }
            if t.starts_with('#') {
                in_intro = t.to_lowercase().contains("introduction");
                if current.is_some() && t.starts_with("## ") {
                    current = None;
                }
                continue;
            }
            if in_intro {
                if t.is_empty() {
                    if !intro.is_empty() {
                        in_intro = false;
                    }
                } else {
                    intro.push_str(if intro.is_empty() { "" } else { " " });
                    intro.push_str(t);
                }
                continue;
            }
            let Some(n) = &current else { continue };
            let entry = r.items.get_mut(n).expect("inserted");
            if let Some(story) = t.strip_prefix("**User Story:**") {
                entry.story = Some(one_line(story));
            } else if let Some(c) = CRITERION.captures(t) {
                entry.criteria.insert(c[1].to_string(), one_line(&c[2]));
            }
        }
        if !intro.is_empty() {
            let intro = one_line(&intro);
            r.goal = Some(if intro.chars().count() > 300 {
                format!("{}…", intro.chars().take(299).collect::<String>())
            } else {
                intro
            });
        }
        r
    }

    /// The text for a reference: `1.2` → requirement 1's acceptance criterion 2 (with the
    /// requirement's title); `1` → requirement 1's title and user story.
    pub fn lookup(&self, reference: &str) -> Option<String> {
        if let Some(Requirement { title, story, .. }) = self.items.get(reference) {
            let mut s = format!("Requirement {reference}");
            if !title.is_empty() {
                s.push_str(&format!(" ({title})"));
            }
            if let Some(story) = story {
                s.push_str(&format!(": {story}"));
            }
            return Some(s);
        }
        let (req, crit) = reference.rsplit_once('.')?;
        let Requirement {
            title, criteria, ..
        } = self.items.get(req)?;
        let text = criteria.get(crit)?;
        Some(if title.is_empty() {
            text.clone()
        } else {
            format!("({title}) {text}")
        })
    }
}

/// The `##` headings of a Markdown text, in order.
fn headings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| one_line(h.trim()))
        .filter(|h| !h.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_decide_nesting_not_indentation() {
        let text = "# Plan\n- [ ] 1. A\n- [ ] 1.1 B\n  - detail `src/b.rs`\n  - _Requirements: 1.2_\n- [x] 2. C\n";
        let t = parse_tasks(text, "tasks.md", &|_| false).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].subtasks[0].number, "1.1");
        assert_eq!(t[0].subtasks[0].writes, ["src/b.rs"]);
        assert_eq!(t[0].subtasks[0].requirements, ["1.2"]);
        assert!(t[1].done);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = parse_tasks("- [ ] 1. A\n- [ ] Untitled\n", "spec/tasks.md", &|_| false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("spec/tasks.md:2: not a task line"), "{e}");
        let e = parse_tasks("- [ ] 2.1 A\n", "t.md", &|_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.md:1: subtask 2.1 has no major task 2"), "{e}");
    }

    #[test]
    fn requirements_lookup() {
        let r = Requirements::parse("# R\n\n## Introduction\n\nCount words fast.\n\n## Requirements\n\n### Requirement 1: Counting\n\n**User Story:** As a user, I want counts.\n\n#### Acceptance Criteria\n\n1. WHEN input is empty THEN the system SHALL print 0\n");
        assert_eq!(r.goal.as_deref(), Some("Count words fast."));
        assert_eq!(
            r.lookup("1.1").unwrap(),
            "(Counting) WHEN input is empty THEN the system SHALL print 0"
        );
        assert_eq!(
            r.lookup("1").unwrap(),
            "Requirement 1 (Counting): As a user, I want counts."
        );
        assert!(r.lookup("2.1").is_none());
    }
}
