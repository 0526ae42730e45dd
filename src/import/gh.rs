//! GitHub issues → manifest.
//!
//! Input: the JSON array `gh issue list --state open --json number,title,body,labels` prints
//! (GitHub CLI manual, "gh issue list", JSON fields; checked against gh 2.x: each element is
//! `{"number": 12, "title": "…", "body": "…", "labels": [{"id", "name", "description", "color"}]}`;
//! fields other than these four are ignored, `body` may be empty or `null`).
//!
//! One task per issue:
//! - `id` is `issue-<number>` (letters, digits and `-`: a valid git ref and file name; the branch
//!   is `fix/issue-<number>` as in the seed), `issue` the number, `title` the title (control
//!   characters removed), `prompt` "Fix GitHub issue #N: TITLE" and the body, `labels` (extra
//!   field) the label names;
//! - `files`: paths named in the body (see the path rules in `paths.rs`: backticked, bare words
//!   with `/` or an extension, GitHub permalinks) that exist in the repository — the caller says
//!   which exist. An absolute path or one with `..` is reported as a warning naming the issue
//!   and never added; with `strict` it is an error;
//! - `dependsOn`: "depends on #N", "after #N", "blocked by #N" (also "depends on: #N",
//!   "blocked on #N", and lists "after #3, #4 and #5"), case-insensitive, only to issues in the
//!   same import; other numbers are reported and ignored;
//! - phase: from the priority labels (see [`PriorityMap`]); a task that depends on a task in a
//!   later phase moves to that phase.

use super::{multi_line, one_line, paths, phase, settle, ImportError, Imported};
use crate::core::manifest::{Manifest, Task};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

/// One issue as `gh issue list --json number,title,body,labels` prints it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Issue {
    /// The issue number.
    pub number: u64,
    /// The title.
    #[serde(default)]
    pub title: String,
    /// The body (Markdown); `null` reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub body: String,
    /// The labels.
    #[serde(default)]
    pub labels: Vec<Label>,
}

/// A label as gh prints it; only the name is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Label {
    /// The label's name, e.g. `priority: high`.
    pub name: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Parses gh's JSON. `file` names the input in errors (a path, `<stdin>` or the gh command).
/// Errors: malformed JSON or a wrong shape (with line and column), duplicate issue numbers.
pub fn parse_issues(text: &str, file: &str) -> Result<Vec<Issue>, ImportError> {
    let issues: Vec<Issue> = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let message = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        ImportError::Json {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message,
            fix: if e.is_syntax() || e.is_eof() {
                "give the unchanged output of `gh issue list --state open --json number,title,body,labels` \
                 (a JSON array); correct the JSON there if it was edited by hand"
                    .into()
            } else {
                "each element needs \"number\" (an integer) and \"title\"; produce the file with \
                 `gh issue list --state open --json number,title,body,labels`"
                    .into()
            },
        }
    })?;
    let mut seen = HashSet::new();
    for i in &issues {
        if !seen.insert(i.number) {
            return Err(ImportError::Invalid {
                file: file.to_string(),
                place: format!("issue #{}", i.number),
                message: "the issue appears twice".into(),
                fix: "list every issue once".into(),
            });
        }
    }
    Ok(issues)
}

/// Priority levels and the labels that select them, most urgent first. Labels are compared
/// case-insensitively after removing a `priority:`, `priority/`, `priority-`, `prio:` or
/// `prio-` prefix and surrounding spaces (so `priority: high`, `Priority/High` and `high` are
/// one label).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityMap {
    /// (level name used in the phase name, normalised labels) in order, most urgent first.
    pub levels: Vec<(String, Vec<String>)>,
    /// The level of issues without a priority label (an index into `levels`).
    pub default_level: usize,
}

impl Default for PriorityMap {
    /// critical/urgent/blocker/P0 · high/P1 · medium/normal/P2 · low/minor/P3; unlabelled issues
    /// are medium.
    fn default() -> Self {
        let level = |name: &str, labels: &[&str]| {
            (
                name.to_string(),
                labels.iter().map(|s| s.to_string()).collect(),
            )
        };
        PriorityMap {
            levels: vec![
                level("Critical", &["critical", "urgent", "blocker", "p0"]),
                level("High", &["high", "p1"]),
                level("Medium", &["medium", "normal", "p2"]),
                level("Low", &["low", "minor", "p3"]),
            ],
            default_level: 2,
        }
    }
}

impl PriorityMap {
    /// Adds `label` to the level named `level` (case-insensitive), e.g. `("sev1", "critical")`.
    /// Errors when no level has that name (the message lists the levels).
    pub fn add(&mut self, label: &str, level: &str) -> Result<(), String> {
        let i = self.level_index(level)?;
        let label = normalise(label);
        for (_, labels) in &mut self.levels {
            labels.retain(|l| *l != label);
        }
        self.levels[i].1.push(label);
        Ok(())
    }

    /// Sets the level of issues without a priority label.
    pub fn set_default(&mut self, level: &str) -> Result<(), String> {
        self.default_level = self.level_index(level)?;
        Ok(())
    }

    fn level_index(&self, level: &str) -> Result<usize, String> {
        self.levels
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(level.trim()))
            .ok_or_else(|| {
                format!(
                    "no priority level {level:?}; the levels are {}",
                    self.levels
                        .iter()
                        .map(|(n, _)| n.to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The most urgent level any of `labels` selects, with the label that selected it.
    pub fn level_of<'a>(
        &self,
        labels: impl IntoIterator<Item = &'a str>,
    ) -> Option<(usize, &'a str)> {
        labels
            .into_iter()
            .filter_map(|l| {
                let n = normalise(l);
                self.levels
                    .iter()
                    .position(|(_, ls)| ls.contains(&n))
                    .map(|i| (i, l))
            })
            .min_by_key(|(i, _)| *i)
    }
}

fn normalise(label: &str) -> String {
    let l = label.trim().to_lowercase();
    for prefix in [
        "priority:",
        "priority/",
        "priority-",
        "prio:",
        "prio-",
        "prio/",
    ] {
        if let Some(rest) = l.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
    l
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct GhOptions {
    /// Priority labels → phases.
    pub priorities: PriorityMap,
    /// Only issues carrying every one of these labels (as `gh issue list --label` filters).
    pub labels: Vec<String>,
    /// The manifest's `project`.
    pub project: String,
    /// The manifest's `repo` (`OWNER/REPO`).
    pub repo: Option<String>,
    /// The manifest's `created` (RFC 3339); the edge passes the current time.
    pub created: Option<String>,
    /// A path outside the repository in a body is an error instead of a warning.
    pub strict: bool,
}

/// The argv for gh (program not included): `issue list --state open --json
/// number,title,body,labels --limit LIMIT [--repo R] [--label L]…`. gh lists 30 issues unless
/// `--limit` says otherwise.
pub fn gh_argv(repo: Option<&str>, labels: &[String], limit: u32) -> Vec<String> {
    let mut argv: Vec<String> = [
        "issue",
        "list",
        "--state",
        "open",
        "--json",
        "number,title,body,labels",
        "--limit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(limit.to_string());
    if let Some(r) = repo {
        argv.push("--repo".into());
        argv.push(r.to_string());
    }
    for l in labels {
        argv.push("--label".into());
        argv.push(l.clone());
    }
    argv
}

static DEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(depends\s+on|dependent\s+on|after|blocked\s+by|blocked\s+on)\s*:?\s*(#\d+(?:\s*(?:,|and|&|/)\s*#\d+)*)",
    )
    .expect("valid regex")
});
static NUM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"#(\d+)").expect("valid regex"));

/// The issue numbers `body` says it waits for, each with the phrase that said so.
pub fn stated_dependencies(body: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for cap in DEP.captures_iter(body) {
        let phrase = cap[0].split_whitespace().collect::<Vec<_>>().join(" ");
        for n in NUM.captures_iter(&cap[2]) {
            if let Ok(n) = n[1].parse::<u64>() {
                if !out.iter().any(|(m, _)| *m == n) {
                    out.push((n, phrase.clone()));
                }
            }
        }
    }
    out
}

/// The task id for an issue number.
pub fn task_id(number: u64) -> String {
    format!("issue-{number}")
}

/// Builds the manifest from open issues. `exists(path)` says whether a repository-relative path
/// is a file in the repository. Errors: a dependency cycle (naming the issues), a path outside
/// the repository when `opts.strict`, a result that does not plan.
pub fn import(
    issues: &[Issue],
    opts: &GhOptions,
    file: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Imported, ImportError> {
    let mut notes = Vec::new();
    if opts.priorities.default_level >= opts.priorities.levels.len() {
        return Err(ImportError::Invalid {
            file: "priority mapping".into(),
            place: "default level".into(),
            message: format!(
                "the default level {} is not one of the {} levels",
                opts.priorities.default_level,
                opts.priorities.levels.len()
            ),
            fix: "give at least one level and a default level among them".into(),
        });
    }
    let mut issues: Vec<&Issue> = issues
        .iter()
        .filter(|i| {
            opts.labels
                .iter()
                .all(|want| i.labels.iter().any(|l| l.name.eq_ignore_ascii_case(want)))
        })
        .collect();
    issues.sort_by_key(|i| i.number);
    let numbers: HashSet<u64> = issues.iter().map(|i| i.number).collect();
    let mut by_level: BTreeMap<usize, Vec<Task>> = BTreeMap::new();
    let mut stated_deps = HashMap::new();
    for issue in &issues {
        let n = issue.number;
        let id = task_id(n);
        let title = one_line(&issue.title);
        let body = multi_line(&issue.body);
        if title != issue.title.trim() {
            notes.push(format!(
                "#{n}: removed control characters or line breaks from the title"
            ));
        }
        let mut task = Task::new(&id, &title);
        task.issue = Some(n);
        task.prompt = Some(if body.is_empty() {
            format!("Fix GitHub issue #{n}: {title}\n\n(The issue has no description.)")
        } else {
            format!("Fix GitHub issue #{n}: {title}\n\n{body}")
        });
        if body.is_empty() {
            notes.push(format!("#{n}: the body is empty; the prompt is the title alone, and no files are known (the task runs alone)"));
        }
        // files
        for c in paths::candidates(&body) {
            if c.outside {
                if !(c.backticked || c.has_extension() || c.path.contains("..")) {
                    continue;
                }
                let why = paths::outside_reason(&c.path).unwrap_or("is outside the repository");
                if opts.strict {
                    return Err(ImportError::Invalid {
                        file: file.to_string(),
                        place: format!("issue #{n}"),
                        message: format!("the body names {:?}, which {why}", c.path),
                        fix: "edit the issue to name the file relative to the repository root, or import \
                              without --strict to skip such paths with a warning"
                            .into(),
                    });
                }
                notes.push(format!(
                    "warning: #{n} names {:?}, which {why}; not added to files",
                    c.path
                ));
            } else if exists(&c.path) {
                if !task.files.contains(&c.path) {
                    task.files.push(c.path.clone());
                }
            } else if c.backticked || (c.has_extension() && c.path.contains('/')) {
                notes.push(format!(
                    "#{n}: {:?} is named in the body but is not a file in the repository; not added \
                     (if the task creates it, add it to files by hand)",
                    c.path
                ));
            }
        }
        if !task.files.is_empty() {
            notes.push(format!(
                "#{n}: files {} (named in the body, present in the repository)",
                task.files.join(", ")
            ));
        } else if !body.is_empty() {
            notes.push(format!(
                "#{n}: no repository file named in the body; the task runs alone"
            ));
        }
        // dependencies
        let mut deps = Vec::new();
        for (d, phrase) in stated_dependencies(&body) {
            if d == n {
                notes.push(format!(
                    "#{n}: \"{phrase}\" names the issue itself; ignored"
                ));
            } else if numbers.contains(&d) {
                notes.push(format!("#{n}: waits for #{d} (\"{phrase}\")"));
                deps.push(task_id(d));
            } else {
                notes.push(format!(
                    "#{n}: \"{phrase}\" names #{d}, which is not among the imported open issues \
                     (closed, filtered out, or not an issue); ignored"
                ));
            }
        }
        if !deps.is_empty() {
            stated_deps.insert(id.clone(), deps.clone());
            task.depends_on = Some(deps);
        }
        // labels and phase
        let names: Vec<&str> = issue.labels.iter().map(|l| l.name.as_str()).collect();
        if !names.is_empty() {
            task.extra.insert(
                "labels".into(),
                Value::Array(names.iter().map(|s| Value::String(one_line(s))).collect()),
            );
        }
        let level = match opts.priorities.level_of(names.iter().copied()) {
            Some((level, label)) => {
                notes.push(format!(
                    "#{n}: priority {} (label {label:?})",
                    opts.priorities.levels[level].0.to_lowercase()
                ));
                level
            }
            None => {
                let d = opts.priorities.default_level;
                notes.push(format!(
                    "#{n}: no priority label; priority {} (the default)",
                    opts.priorities.levels[d].0.to_lowercase()
                ));
                d
            }
        };
        by_level.entry(level).or_default().push(task);
    }
    if issues.is_empty() {
        return Err(ImportError::Invalid {
            file: file.to_string(),
            place: "issue list".into(),
            message: if opts.labels.is_empty() {
                "there are no open issues to import".into()
            } else {
                format!("no open issue carries every label of {:?}", opts.labels)
            },
            fix: "check the repository (--repo OWNER/REPO) and the --label filters".into(),
        });
    }
    let mut manifest = Manifest {
        project: opts.project.clone(),
        repo: opts.repo.clone(),
        workdir: None,
        created: opts.created.clone(),
        model: None,
        model_tier: None,
        phases: Vec::new(),
        extra: Default::default(),
    };
    for (k, (level, tasks)) in by_level.into_iter().enumerate() {
        let mut p = phase(&phase_name(k + 1, &opts.priorities.levels[level].0));
        p.tasks = tasks;
        manifest.phases.push(p);
    }
    let stated: HashSet<String> = stated_deps.keys().cloned().collect();
    settle(&mut manifest, file, &|_| true, &stated, &label, &mut notes)?;
    Ok(Imported {
        manifest,
        notes,
        stated_deps,
    })
}

/// `Phase N: Level`, the seed's phase naming.
pub(crate) fn phase_name(n: usize, level: &str) -> String {
    format!("Phase {n}: {level}")
}

/// How a task is named in messages: `issue-3 (#3)`.
pub(crate) fn label(t: &Task) -> String {
    match t.issue {
        Some(n) => format!("{} (#{n})", t.id),
        None => t.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_phrases() {
        let deps = stated_dependencies(
            "Depends on #3. Do this after #4, #5 and #6; blocked by: #7. See #8.",
        );
        let ns: Vec<u64> = deps.iter().map(|(n, _)| *n).collect();
        assert_eq!(ns, [3, 4, 5, 6, 7]);
        assert_eq!(deps[0].1, "Depends on #3");
    }

    #[test]
    fn priority_labels_normalise_and_pick_the_most_urgent() {
        let mut p = PriorityMap::default();
        assert_eq!(
            p.level_of(["bug", "Priority: High"]),
            Some((1, "Priority: High"))
        );
        assert_eq!(
            p.level_of(["P3", "priority/critical"]).map(|x| x.0),
            Some(0)
        );
        assert_eq!(p.level_of(["bug"]), None);
        p.add("sev1", "critical").unwrap();
        assert_eq!(p.level_of(["SEV1"]).map(|x| x.0), Some(0));
        assert!(p
            .add("x", "urgentish")
            .unwrap_err()
            .contains("critical, high, medium, low"));
    }

    #[test]
    fn argv_has_limit_repo_and_labels() {
        let a = gh_argv(Some("o/r"), &["bug".into()], 200);
        assert_eq!(
            a.join(" "),
            "issue list --state open --json number,title,body,labels --limit 200 --repo o/r --label bug"
        );
    }
}
