//! Conflict predictions: two revisions merged in memory, the conflicting files described with
//! line ranges on each side and the conflict blocks (see the interface in [`super`]).

use super::{commit_of, gerr, open, Conflict, MAX_HUNK_BYTES};
use crate::host::git::GitError;
use git2::{MergeFileInput, MergeFileOptions, Oid, Repository};
use std::path::Path;

/// Merges `theirs` into `ours` in memory and returns the files that conflict (empty: it merges
/// cleanly, or one side already contains the other). Nothing in the repository changes (merges
/// of several merge bases write their virtual base's objects to the object database, as git does).
///
/// Errors: the repository cannot be opened, a revision does not resolve, or git fails to merge
/// (e.g. an object is missing).
pub fn predict(repo: &Path, ours: &str, theirs: &str) -> Result<Vec<Conflict>, GitError> {
    let r = open(repo)?;
    let o = commit_of(&r, ours)?;
    let t = commit_of(&r, theirs)?;
    conflicts_between(&r, &o, &t, ours, theirs)
}

/// Most answers a [`Predictor`] keeps (oldest dropped first).
pub const PREDICTOR_CACHE: usize = 512;

/// [`predict`] with the repository opened once and answers cached by the pair of commits (and
/// labels) asked about. `Send` but not `Sync` (it holds a git2 repository): keep one on a job
/// lane's thread, or share it as `Arc<Mutex<Predictor>>`.
pub struct Predictor {
    repo: Repository,
    cache: std::collections::HashMap<(Oid, Oid, String, String), Vec<Conflict>>,
    order: std::collections::VecDeque<(Oid, Oid, String, String)>,
}

// Checked when compiling: a Predictor can move to a job lane's thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Predictor>();
};

impl Predictor {
    /// Opens the repository. Errors: it cannot be opened.
    pub fn open(repo: &Path) -> Result<Predictor, GitError> {
        Ok(Predictor {
            repo: open(repo)?,
            cache: Default::default(),
            order: Default::default(),
        })
    }

    /// As [`predict`]; the revisions are resolved on every call (cheap), the merge only when this
    /// pair of commits was not asked about before.
    pub fn predict(&mut self, ours: &str, theirs: &str) -> Result<Vec<Conflict>, GitError> {
        self.predict_labeled(ours, theirs, ours, theirs)
    }

    /// As [`Predictor::predict`], with the names the conflict text shows for each side given
    /// apart from the revisions (e.g. a [`super::snapshot_worktree`] commit labelled with its
    /// task's branch).
    pub fn predict_labeled(
        &mut self,
        ours: &str,
        theirs: &str,
        ours_label: &str,
        theirs_label: &str,
    ) -> Result<Vec<Conflict>, GitError> {
        let o = commit_of(&self.repo, ours)?;
        let t = commit_of(&self.repo, theirs)?;
        let key = (
            o.id(),
            t.id(),
            ours_label.to_string(),
            theirs_label.to_string(),
        );
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let found = conflicts_between(&self.repo, &o, &t, ours_label, theirs_label)?;
        if self.order.len() >= PREDICTOR_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.cache.insert(key, found.clone());
        Ok(found)
    }
}

pub(super) fn conflicts_between(
    r: &Repository,
    o: &git2::Commit<'_>,
    t: &git2::Commit<'_>,
    ours_label: &str,
    theirs_label: &str,
) -> Result<Vec<Conflict>, GitError> {
    if o.id() == t.id() {
        return Ok(Vec::new());
    }
    // One side already holds the other (e.g. the integration branch has not moved since the
    // task started): nothing to merge.
    if let Ok(base) = r.merge_base(o.id(), t.id()) {
        if base == o.id() || base == t.id() {
            return Ok(Vec::new());
        }
    }
    let index = r.merge_commits(o, t, None).map_err(gerr(format!(
        "merging {theirs_label} into {ours_label} in memory"
    )))?;
    if !index.has_conflicts() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in index
        .conflicts()
        .map_err(gerr("reading the merge's conflicts"))?
    {
        let c = c.map_err(gerr("reading the merge's conflicts"))?;
        out.push(describe(r, &c, ours_label, theirs_label)?);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn entry_path(e: &git2::IndexEntry) -> String {
    String::from_utf8_lossy(&e.path).into_owned()
}

fn blob_of(r: &Repository, e: Option<&git2::IndexEntry>) -> Result<Option<Vec<u8>>, GitError> {
    match e {
        None => Ok(None),
        // A submodule (gitlink) has no blob: compare it as its commit id.
        Some(e) if e.mode == 0o160000 => Ok(Some(format!("Subproject commit {}\n", e.id).into())),
        Some(e) => r
            .find_blob(e.id)
            .map(|b| Some(b.content().to_vec()))
            .map_err(gerr(format!("reading {}", entry_path(e)))),
    }
}

fn describe(
    r: &Repository,
    c: &git2::IndexConflict,
    ours_label: &str,
    theirs_label: &str,
) -> Result<Conflict, GitError> {
    let path = c
        .our
        .as_ref()
        .or(c.their.as_ref())
        .or(c.ancestor.as_ref())
        .map(entry_path)
        .unwrap_or_default();
    let base = blob_of(r, c.ancestor.as_ref())?.unwrap_or_default();
    let ours = blob_of(r, c.our.as_ref())?;
    let theirs = blob_of(r, c.their.as_ref())?;
    let (ours, theirs) = match (ours, theirs) {
        (Some(o), Some(t)) => (o, t),
        (o, t) => {
            let (kept, deleted_by) = if o.is_some() {
                (o, theirs_label)
            } else {
                (t, ours_label)
            };
            let lines = kept.as_deref().map(line_count).unwrap_or(0);
            let whole = if lines > 0 { vec![(1, lines)] } else { vec![] };
            let (ours_r, theirs_r) = if c.our.is_some() {
                (whole, vec![])
            } else {
                (vec![], whole)
            };
            return Ok(Conflict {
                path,
                ours: ours_r,
                theirs: theirs_r,
                hunks: format!(
                    "deleted in {deleted_by}, changed in {}",
                    if c.our.is_some() {
                        ours_label
                    } else {
                        theirs_label
                    }
                ),
            });
        }
    };
    let binary = [&base, &ours, &theirs]
        .iter()
        .any(|b| b.iter().take(8000).any(|&x| x == 0));
    if binary {
        return Ok(Conflict {
            path,
            ours: whole_file(&ours),
            theirs: whole_file(&theirs),
            hunks: format!("binary file changed in both {ours_label} and {theirs_label}"),
        });
    }
    let (ours_r, theirs_r) = overlapping_ranges(&base, &ours, &theirs)?;
    Ok(Conflict {
        path,
        ours: ours_r,
        theirs: theirs_r,
        hunks: conflict_text(&base, &ours, &theirs, ours_label, theirs_label)?,
    })
}

fn line_count(b: &[u8]) -> u32 {
    let n = b.iter().filter(|&&x| x == b'\n').count();
    let tail = usize::from(!b.is_empty() && !b.ends_with(b"\n"));
    u32::try_from(n + tail).unwrap_or(u32::MAX)
}

fn whole_file(b: &[u8]) -> Vec<(u32, u32)> {
    match line_count(b) {
        0 => vec![],
        n => vec![(1, n)],
    }
}

/// A diff hunk: where it sits in the base (a half-open span of line gaps, so two insertions at
/// the same place and touching changes overlap, as git's merge treats them) and its lines on
/// the changed side.
struct Hunk {
    base: (u32, u32),
    side: (u32, u32),
}

fn hunks(base: &[u8], side: &[u8]) -> Result<Vec<Hunk>, GitError> {
    let mut opts = git2::DiffOptions::new();
    opts.context_lines(0);
    let patch = git2::Patch::from_buffers(base, None, side, None, Some(&mut opts))
        .map_err(gerr("diffing a conflicting file"))?;
    let mut out = Vec::new();
    for i in 0..patch.num_hunks() {
        let (h, _) = patch.hunk(i).map_err(gerr("diffing a conflicting file"))?;
        let base_span = if h.old_lines() == 0 {
            (h.old_start(), h.old_start())
        } else {
            (h.old_start() - 1, h.old_start() - 1 + h.old_lines())
        };
        let side_lines = if h.new_lines() == 0 {
            (h.new_start().max(1), h.new_start().max(1))
        } else {
            (h.new_start(), h.new_start() + h.new_lines() - 1)
        };
        out.push(Hunk {
            base: base_span,
            side: side_lines,
        });
    }
    Ok(out)
}

/// The lines of each side whose changes overlap (or touch) a change of the other side.
#[allow(clippy::type_complexity)]
fn overlapping_ranges(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
) -> Result<(Vec<(u32, u32)>, Vec<(u32, u32)>), GitError> {
    let a = hunks(base, ours)?;
    let b = hunks(base, theirs)?;
    let touch = |x: &Hunk, y: &Hunk| x.base.0 <= y.base.1 && y.base.0 <= x.base.1;
    let pick = |xs: &[Hunk], ys: &[Hunk]| {
        merge_ranges(
            xs.iter()
                .filter(|x| ys.iter().any(|y| touch(x, y)))
                .map(|x| x.side)
                .collect(),
        )
    };
    let (mut o, mut t) = (pick(&a, &b), pick(&b, &a));
    // Git saw a conflict the span test did not (it refines differently): fall back to every
    // change of each side, so the ranges are never empty for a side that has lines.
    if o.is_empty() && t.is_empty() {
        o = merge_ranges(a.iter().map(|h| h.side).collect());
        t = merge_ranges(b.iter().map(|h| h.side).collect());
    }
    Ok((o, t))
}

fn merge_ranges(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The conflict blocks of git's three-way merge of the file, at most [`MAX_HUNK_BYTES`].
fn conflict_text(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    ours_label: &str,
    theirs_label: &str,
) -> Result<String, GitError> {
    let mut a = MergeFileInput::new();
    a.content(base);
    let mut o = MergeFileInput::new();
    o.content(ours);
    let mut t = MergeFileInput::new();
    t.content(theirs);
    let mut opts = MergeFileOptions::new();
    opts.our_label(ours_label)
        .their_label(theirs_label)
        .style_standard(true);
    let merged = git2::merge_file(&a, &o, &t, Some(&mut opts))
        .map_err(gerr("merging a conflicting file's text"))?;
    let text = String::from_utf8_lossy(merged.content());
    let mut blocks = String::new();
    let mut inside = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("<<<<<<< ") {
            inside = true;
            blocks.push_str(&format!("@@ merged line {}\n", i + 1));
        }
        if inside {
            blocks.push_str(line);
            if !line.ends_with('\n') {
                blocks.push('\n');
            }
        }
        if line.starts_with(">>>>>>> ") {
            inside = false;
        }
    }
    Ok(bound(blocks, MAX_HUNK_BYTES))
}

/// `s` cut at the last line boundary within `max` bytes, with a count of what was cut.
fn bound(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = s[..cut].rfind('\n').map(|i| i + 1).unwrap_or(cut);
    format!("{}… {} more bytes\n", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch_or_overlap() {
        assert_eq!(
            merge_ranges(vec![(4, 6), (1, 2), (3, 3), (2, 3), (9, 9)]),
            vec![(1, 6), (9, 9)]
        );
    }

    #[test]
    fn bound_cuts_at_a_line_and_counts_the_rest() {
        let s = "aaaa\nbbbb\ncccc\n".to_string();
        assert_eq!(bound(s.clone(), 100), s);
        assert_eq!(bound(s, 12), "aaaa\nbbbb\n… 5 more bytes\n");
    }

    #[test]
    fn overlapping_edits_give_the_lines_of_each_side() {
        let base = b"1\n2\n3\n4\n5\n6\n7\n8\n";
        let ours = b"1\n2\nOURS\nOURS2\n4\n5\n6\n7\nx\n";
        let theirs = b"1\n2\nTHEIRS\n4\n5\n6\n7\n8\n";
        let (o, t) = overlapping_ranges(base, ours, theirs).unwrap();
        assert_eq!(o, vec![(3, 4)], "only the overlapping change, not line 9");
        assert_eq!(t, vec![(3, 3)]);
    }
}
