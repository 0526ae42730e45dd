//! Finding file paths in free text (issue bodies, spec lines), and checking they stay inside the
//! repository.
//!
//! What counts as a path (documented in the README's import section):
//! - a backticked span without spaces, e.g. `` `src/parse.rs` ``;
//! - a bare word containing `/`, or ending in `.<ext>` where the extension has a letter
//!   (`parse.rs`, `Cargo.toml`; not `1.2.3`);
//! - a GitHub permalink `https://github.com/OWNER/REPO/blob/REF/PATH#L10` (the PATH part);
//! - trailing punctuation, `:LINE[:COL]` and `#L10` suffixes and a leading `./` are removed.
//!
//! Other URLs (`scheme://…`) are never paths. A path with a `..` component or an absolute path
//! (`/…`, `~/…`, `C:\…`) is "outside": importers warn about it (or refuse it) and never add it.

/// One path-like word found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The cleaned path as written (relative paths without a leading `./`).
    pub path: String,
    /// It was written in backticks (a strong signal that a file is meant).
    pub backticked: bool,
    /// Absolute, home-relative or containing `..`: it cannot name a file inside the repository.
    pub outside: bool,
}

impl Candidate {
    /// True when the last segment has a file extension (`parse.rs`).
    pub fn has_extension(&self) -> bool {
        let last = self.path.rsplit(['/', '\\']).next().unwrap_or("");
        extension_ok(last)
    }
}

/// Every path-like word in `text`, in order of first appearance, without duplicates.
pub(crate) fn candidates(text: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |word: &str, backticked: bool| {
        if let Some(c) = clean(word, backticked) {
            match out.iter_mut().find(|o| o.path == c.path) {
                Some(o) => o.backticked |= c.backticked,
                None => out.push(c),
            }
        }
    };
    // Backticked spans first (inline code), then every other word.
    let mut rest = String::with_capacity(text.len());
    let mut parts = text.split('`');
    if let Some(first) = parts.next() {
        rest.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if i % 2 == 0 && !part.contains('\n') && !part.trim().is_empty() {
            let span = part.trim();
            if !span.contains(char::is_whitespace) {
                push(span, true);
            }
            rest.push(' ');
        } else {
            rest.push(' ');
            rest.push_str(part);
        }
    }
    for word in rest.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '(' | ')' | '[' | ']' | '<' | '>' | '{' | '}' | ',' | ';' | '|'
            )
    }) {
        push(word, false);
    }
    out
}

/// Cleans one word and decides whether it looks like a path.
fn clean(word: &str, backticked: bool) -> Option<Candidate> {
    let mut w = word.trim();
    if let Some(i) = w.find("://") {
        // A GitHub permalink names a file in the repository: take the part after blob/REF/.
        let after = &w[i + 3..];
        let segs: Vec<&str> = after.split('/').collect();
        let blob = segs.iter().position(|s| *s == "blob" || *s == "tree")?;
        if segs.len() < blob + 3 {
            return None;
        }
        let joined = segs[blob + 2..].join("/");
        return clean_plain(&joined, backticked);
    }
    w = w.trim_start_matches(['*', '_']);
    clean_plain(w, backticked)
}

fn clean_plain(word: &str, backticked: bool) -> Option<Candidate> {
    let mut w = word.trim_end_matches(['.', ',', ':', ';', '!', '?', '*', '_']);
    if let Some(i) = w.find("#L") {
        w = &w[..i];
    }
    // `src/a.rs:42` or `src/a.rs:42:7`
    while let Some(i) = w.rfind(':') {
        let tail = &w[i + 1..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            w = &w[..i];
        } else {
            break;
        }
    }
    let w = w.strip_prefix("./").unwrap_or(w);
    if w.is_empty() || w.len() > 300 || w.chars().any(|c| c.is_control()) {
        return None;
    }
    if w.contains('#') || w.contains('@') || w.contains('=') || w.contains('*') {
        return None;
    }
    let outside = w.starts_with('/')
        || w.starts_with('\\')
        || w.starts_with('~')
        || (w.len() > 2 && w.as_bytes()[1] == b':' && w.as_bytes()[0].is_ascii_alphabetic())
        || w.split(['/', '\\']).any(|s| s == "..");
    let last = w.rsplit(['/', '\\']).next().unwrap_or("");
    let has_sep = w.contains('/');
    if !(has_sep || extension_ok(last)) {
        return None;
    }
    if !outside && (w.ends_with('/') || last.is_empty()) {
        return None; // a directory
    }
    // A word needs at least one letter somewhere to be a file name ("1/2" is a fraction).
    if !w.chars().any(char::is_alphabetic) {
        return None;
    }
    Some(Candidate {
        path: w.to_string(),
        backticked,
        outside,
    })
}

/// `name.ext` with a non-empty stem and an extension of 1–10 alphanumerics including a letter.
fn extension_ok(last: &str) -> bool {
    match last.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && !stem.ends_with('.')
                && (1..=10).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
                && ext.chars().any(|c| c.is_ascii_alphabetic())
        }
        None => false,
    }
}

/// Why `p` cannot be a repository file path, if it cannot (same rules as the manifest's check).
pub(crate) fn outside_reason(p: &str) -> Option<&'static str> {
    if p.starts_with('/') || p.starts_with('\\') || p.starts_with('~') {
        return Some("is absolute, outside the repository");
    }
    if p.len() > 2 && p.as_bytes()[1] == b':' && p.as_bytes()[0].is_ascii_alphabetic() {
        return Some("is absolute, outside the repository");
    }
    if p.split(['/', '\\']).any(|s| s == "..") {
        return Some("contains '..' and would leave the repository");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        candidates(text).into_iter().map(|c| c.path).collect()
    }

    #[test]
    fn finds_backticked_bare_and_permalink_paths() {
        let text = "Crash in `src/parse.rs` (see src/main.rs:12, and ./README.md.) \
            https://github.com/o/r/blob/main/src/config.rs#L3 and/or version 1.2.3 https://x.org/a";
        assert_eq!(
            paths(text),
            vec![
                "src/parse.rs",
                "src/main.rs",
                "README.md",
                "src/config.rs",
                "and/or"
            ]
        );
    }

    #[test]
    fn marks_outside_paths() {
        let c = candidates("see `/etc/passwd` and ../secrets.env or ~/x.txt");
        assert!(c.iter().all(|c| c.outside), "{c:?}");
        assert_eq!(c.len(), 3);
        assert_eq!(
            outside_reason("a/../b"),
            Some("contains '..' and would leave the repository")
        );
        assert_eq!(outside_reason("src/a.rs"), None);
    }

    #[test]
    fn ignores_code_words_and_directories() {
        assert!(paths("call `User.validate()` in `src/` with x=1.5 or `a b.rs`").is_empty());
    }
}
