//! Review findings: what a reviewer reports about a branch (severity, file, line, message).
//!
//! A reviewer writes its findings as JSON to the path switchyard gives it, or ends its final
//! message with them. Accepted shapes (checked by [`parse`]):
//! - a JSON array of findings: `[{"severity": "major", "file": "src/a.rs", "line": 12, "message": "…"}]`
//! - an object with a `findings` array: `{"findings": [ … ]}`
//! - Markdown (a final message) holding either of the above in a fenced block (` ```json `); the
//!   last block that parses wins.
//!
//! Severities are `critical`, `major` and `minor` (the Kiro-spec orchestrator's review step, see
//! `seeds/`); common synonyms are read as one of them (`blocker` → critical, `high`/`error` →
//! major, `medium`/`low`/`warning`/`nit`/`info` → minor). Many reviewers' lists are merged by
//! [`merge`] into one ranked, de-duplicated list.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad a finding is. Ordered: `Minor < Major < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Style, naming, small improvements.
    Minor,
    /// A bug or a missing piece that should be fixed before merging.
    Major,
    /// Wrong, unsafe or broken: must be fixed.
    Critical,
}

impl Severity {
    /// Reads a severity name or a common synonym (case-insensitive); `None` for anything else.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "blocker" | "blocking" | "severe" => Some(Severity::Critical),
            "major" | "high" | "error" | "important" => Some(Severity::Major),
            "minor" | "medium" | "low" | "warning" | "warn" | "nit" | "info" | "suggestion" => {
                Some(Severity::Minor)
            }
            _ => None,
        }
    }

    /// The lowercase name (`critical`, `major`, `minor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Severity::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown severity {s:?}: use critical, major or minor"
            ))
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The file it is about, relative to the repository root, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line in `file`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// What is wrong (and how to fix it).
    pub message: String,
    /// Which reviewers reported it (filled by [`merge`]; task ids or lens names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
}

/// Why a findings text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindingsError {
    /// The text is JSON (or holds a JSON block) of the wrong shape.
    #[error(
        "findings: {what} at line {line}, column {column}; write a JSON array of \
         {{\"severity\": \"critical|major|minor\", \"file\", \"line\", \"message\"}} \
         (or {{\"findings\": [...]}})"
    )]
    Shape {
        /// serde's description.
        what: String,
        /// 1-based line in the JSON text.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// No JSON findings anywhere in the text.
    #[error(
        "findings: no JSON findings found; end the review with a ```json block holding an \
         array of {{\"severity\", \"file\", \"line\", \"message\"}} (an empty array when there \
         are none)"
    )]
    Missing,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Shape {
    List(Vec<Finding>),
    Wrapped { findings: Vec<Finding> },
}

fn parse_json(text: &str) -> Result<Vec<Finding>, FindingsError> {
    match serde_json::from_str::<Shape>(text) {
        Ok(Shape::List(v)) | Ok(Shape::Wrapped { findings: v }) => Ok(v),
        Err(_) => {
            // The untagged error says nothing useful; try each shape for a located message.
            let err = match serde_json::from_str::<serde_json::Value>(text) {
                Err(e) => e,
                Ok(serde_json::Value::Object(_)) => {
                    #[derive(Deserialize)]
                    #[allow(dead_code)]
                    struct W {
                        findings: Vec<Finding>,
                    }
                    match serde_json::from_str::<W>(text) {
                        Err(e) => e,
                        Ok(_) => unreachable_shape(),
                    }
                }
                Ok(_) => match serde_json::from_str::<Vec<Finding>>(text) {
                    Err(e) => e,
                    Ok(_) => unreachable_shape(),
                },
            };
            Err(FindingsError::Shape {
                what: err
                    .to_string()
                    .split(" at line")
                    .next()
                    .unwrap_or("")
                    .to_string(),
                line: err.line(),
                column: err.column(),
            })
        }
    }
}

#[cold]
fn unreachable_shape() -> serde_json::Error {
    serde::de::Error::custom("inconsistent JSON shape")
}

/// Reads findings from a reviewer's output: a JSON file's text or a final message (see the
/// module doc for the shapes). Errors: [`FindingsError::Shape`] with the place when JSON is there
/// but wrong, [`FindingsError::Missing`] when there is no JSON at all.
pub fn parse(text: &str) -> Result<Vec<Finding>, FindingsError> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    let blocks = fenced_blocks(text);
    let mut last_err = None;
    for b in blocks.iter().rev() {
        let b = b.trim();
        if !(b.starts_with('[') || b.starts_with('{')) {
            continue;
        }
        match parse_json(b) {
            Ok(v) => return Ok(v),
            Err(e) => {
                last_err.get_or_insert(e);
            }
        }
    }
    Err(last_err.unwrap_or(FindingsError::Missing))
}

/// The bodies of the fenced code blocks (``` or ~~~) of a Markdown text, in order.
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        match &mut cur {
            None => {
                if let Some(fence) = ["```", "~~~"].iter().find(|f| t.starts_with(**f)) {
                    cur = Some((fence.to_string(), String::new()));
                }
            }
            Some((fence, body)) => {
                if t.starts_with(fence.as_str())
                    && t.trim_start_matches(fence.as_str()).trim().is_empty()
                {
                    out.push(std::mem::take(body));
                    cur = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

fn norm(msg: &str) -> String {
    msg.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Merges many reviewers' findings into one list: findings with the same file, line and message
/// (compared without case, punctuation or spacing) become one, at the highest severity any
/// reviewer gave it, naming every reviewer. Ranked by severity (critical first), then by how many
/// reviewers agree, then by file and line. Input: (reviewer name, its findings) pairs.
pub fn merge(lists: &[(String, Vec<Finding>)]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut keys: Vec<(Option<String>, Option<u32>, String)> = Vec::new();
    for (reviewer, findings) in lists {
        for f in findings {
            let key = (f.file.clone(), f.line, norm(&f.message));
            match keys.iter().position(|k| *k == key) {
                Some(i) => {
                    let m = &mut out[i];
                    m.severity = m.severity.max(f.severity);
                    for r in f.reviewers.iter().chain(std::iter::once(reviewer)) {
                        if !m.reviewers.contains(r) {
                            m.reviewers.push(r.clone());
                        }
                    }
                }
                None => {
                    let mut m = f.clone();
                    if !m.reviewers.contains(reviewer) {
                        m.reviewers.push(reviewer.clone());
                    }
                    keys.push(key);
                    out.push(m);
                }
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.reviewers.len().cmp(&a.reviewers.len()))
            .then(a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    out
}

/// True when any finding is at or above `threshold`.
pub fn blocks(findings: &[Finding], threshold: Severity) -> bool {
    findings.iter().any(|f| f.severity >= threshold)
}

/// The severity counts of a list of findings: `1 critical, 0 major, 2 minor`.
pub fn count_line(findings: &[Finding]) -> String {
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{} critical, {} major, {} minor",
        n(Severity::Critical),
        n(Severity::Major),
        n(Severity::Minor)
    )
}

/// A Markdown list of findings, one per line (`- **major** src/a.rs:12: message (r1, r2)`), for
/// prompts, logs and reports. Messages are kept on one line.
pub fn to_markdown(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        s.push_str("- **");
        s.push_str(f.severity.as_str());
        s.push_str("** ");
        match (&f.file, f.line) {
            (Some(file), Some(line)) => s.push_str(&format!("{file}:{line}: ")),
            (Some(file), None) => s.push_str(&format!("{file}: ")),
            _ => {}
        }
        s.push_str(&f.message.split_whitespace().collect::<Vec<_>>().join(" "));
        if !f.reviewers.is_empty() {
            s.push_str(&format!(" ({})", f.reviewers.join(", ")));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(sev: Severity, file: &str, line: u32, msg: &str) -> Finding {
        Finding {
            severity: sev,
            file: Some(file.into()),
            line: Some(line),
            message: msg.into(),
            reviewers: vec![],
        }
    }

    #[test]
    fn parses_array_object_and_fenced_block() {
        let a = parse(r#"[{"severity":"major","file":"a.rs","line":3,"message":"x"}]"#).unwrap();
        assert_eq!(a, vec![f(Severity::Major, "a.rs", 3, "x")]);
        let b = parse(r#"{"findings":[{"severity":"HIGH","message":"y"}]}"#).unwrap();
        assert_eq!(b[0].severity, Severity::Major);
        assert_eq!(b[0].file, None);
        let md = "I looked.\n\n```json\n[]\n```\nthen\n```json\n[{\"severity\":\"blocker\",\"file\":\"b.rs\",\"line\":1,\"message\":\"z\"}]\n```\n";
        assert_eq!(
            parse(md).unwrap(),
            vec![f(Severity::Critical, "b.rs", 1, "z")]
        );
    }

    #[test]
    fn errors_name_the_place_and_the_fix() {
        let e = parse("[{\"severity\":\"bad\",\"message\":\"x\"}]").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("unknown severity \"bad\""), "{s}");
        assert!(s.contains("line 1"), "{s}");
        assert_eq!(
            parse("all good, nothing to report").unwrap_err(),
            FindingsError::Missing
        );
        let e = parse("{\"findings\": 3}").unwrap_err();
        assert!(matches!(e, FindingsError::Shape { .. }), "{e}");
    }

    #[test]
    fn merge_dedups_ranks_and_keeps_the_worst_severity() {
        let r1 = vec![
            f(Severity::Minor, "a.rs", 3, "Unused import."),
            f(Severity::Major, "b.rs", 9, "off by one"),
        ];
        let r2 = vec![
            f(Severity::Major, "a.rs", 3, "unused  import"),
            f(Severity::Critical, "c.rs", 1, "SQL injection"),
        ];
        let m = merge(&[("security".into(), r2), ("style".into(), r1)]);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].file.as_deref(), Some("c.rs"));
        assert_eq!(m[1].file.as_deref(), Some("a.rs"));
        assert_eq!(m[1].severity, Severity::Major);
        assert_eq!(
            m[1].reviewers,
            vec!["security".to_string(), "style".to_string()]
        );
        assert_eq!(m[2].file.as_deref(), Some("b.rs"));
        assert!(blocks(&m, Severity::Critical));
        assert!(!blocks(&m[1..], Severity::Critical));
        let md = to_markdown(&m);
        assert!(
            md.starts_with("- **critical** c.rs:1: SQL injection (security)\n"),
            "{md}"
        );
    }
}
