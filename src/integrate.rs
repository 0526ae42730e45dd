//! The integration branch: in-memory merges with git2 (no network, never a checkout of anyone's
//! working copy except the one case documented at [`merge_into`]).
//!
//! Interface (used by the runtime for the merge queue and early conflict warnings):
//! - [`ensure_branch`]`(repo, name, start) -> oid hex`: creates the integration branch
//!   (default [`DEFAULT_BRANCH`]) at `start` when it is missing; an existing branch is left as it is.
//! - [`predict`]`(repo, ours, theirs) -> Vec<Conflict>`: merges two revisions in memory (merge
//!   base, recursive virtual base when there are several) and returns the conflicting files; no
//!   ref, index or file changes. Cheap enough to run on every commit of every running task
//!   (measured: see `tests/git_integrate.rs`, `predict_is_cheap`).
//! - [`Predictor`]: the same with the repository opened once and answers cached per pair of
//!   commits (a debounced prediction on every commit of every running task mostly asks again
//!   about pairs whose tips did not move).
//! - [`snapshot_worktree`]`(worktree) -> commit hex`: a commit (on no branch) of a worktree's
//!   files as they are, uncommitted changes included, to predict on every file change before the
//!   agent commits: `predict(repo, &snapshot, "switchyard/integration")`.
//! - [`merge_into`]`(repo, target, source, mode, message) -> MergeResult`: merges `source` into the
//!   branch `target`, moving only `refs/heads/<target>` (compare-and-swap).
//! - [`merge_in_worktree`]`(worktree, source, message) -> WorktreeMerge`: the start of a resolve
//!   round: merges `source` (the integration branch) into the branch checked out in a task's own
//!   worktree, committing when clean, else leaving conflict markers and `MERGE_HEAD` for the agent
//!   (whose `git commit` then completes the merge).
//! - [`Conflict`]: one conflicting file, with 1-based inclusive line ranges on each side and a
//!   bounded text of its conflict blocks (standard conflict markers).
//!
//! Revisions (`ours`, `theirs`, `source`, `start`) are anything `git rev-parse` takes: a branch
//! name, `refs/...`, or a commit id.

use crate::git::GitError;
use git2::{BranchType, MergeFileInput, MergeFileOptions, Oid, Repository};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The integration branch's name when the config names none.
pub const DEFAULT_BRANCH: &str = "switchyard/integration";

/// Most bytes of conflict text kept per file in [`Conflict::hunks`]; the rest is cut at a line
/// boundary and counted in a last line `… N more bytes`.
pub const MAX_HUNK_BYTES: usize = 4096;

/// One file that does not merge cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Path in the repository (`/`-separated), as on the `ours` side (or `theirs` when ours
    /// deleted it).
    pub path: String,
    /// Line ranges (1-based, inclusive, sorted, disjoint) of `ours`'s version that conflict. A
    /// change on this side that only deleted lines is shown as the line before the deletion (or
    /// line 1). Empty when this side deleted the file.
    pub ours: Vec<(u32, u32)>,
    /// The same for `theirs`.
    pub theirs: Vec<(u32, u32)>,
    /// The conflict blocks as git writes them (`<<<<<<< ours` / `=======` / `>>>>>>> theirs`,
    /// labels = the revisions given), at most [`MAX_HUNK_BYTES`]; a one-line description for a
    /// binary file or a file deleted on one side. Text from the repository: escape it
    /// ([`crate::text::escape_lines`]) before it reaches a terminal.
    pub hunks: String,
}

/// How [`merge_into`] may move the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Only a fast-forward; a diverged target gives [`MergeResult::Diverged`].
    FastForward,
    /// Always a merge commit with two parents (like `git merge --no-ff`), even when a
    /// fast-forward is possible.
    MergeCommit,
    /// A fast-forward when possible, else a merge commit (like `git merge`).
    FfOrMerge,
}

/// What [`merge_into`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeResult {
    /// `source` is already in `target`: nothing changed.
    UpToDate,
    /// `target` now points at `commit` (hex id): `source` itself when `fast_forward`, else a new
    /// merge commit whose parents are the old target and `source`.
    Merged {
        /// The target's new tip (hex).
        commit: String,
        /// True when the target was moved forward to `source` without a merge commit.
        fast_forward: bool,
    },
    /// The merge conflicts; nothing changed. The task should resolve these on top of the target
    /// (a resolve round).
    Conflicts(Vec<Conflict>),
    /// [`MergeMode::FastForward`] and the target has commits `source` lacks: nothing changed.
    /// The task must first bring in the target (a resolve round), or the mode must allow a merge
    /// commit. `conflicts` is what a merge would conflict on (empty when it would merge cleanly).
    Diverged {
        /// What merging the two would conflict on.
        conflicts: Vec<Conflict>,
    },
}

fn gerr(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |e| GitError {
        action,
        message: e.message().to_string(),
    }
}

fn open(repo: &Path) -> Result<Repository, GitError> {
    Repository::open(repo).map_err(gerr(format!("opening the repository {}", repo.display())))
}

fn commit_of<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>, GitError> {
    repo.revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("resolving {rev:?}"),
            message: format!(
                "{}; name an existing branch, ref or commit (the repository needs at least one commit)",
                e.message()
            ),
        })
}

fn check_branch_name(name: &str) -> Result<(), GitError> {
    if git2::Branch::name_is_valid(name).unwrap_or(false) {
        Ok(())
    } else {
        Err(GitError {
            action: format!("using {name:?} as the integration branch"),
            message: "it is not a valid git branch name; set `merge.into` in switchyard.toml to a name like switchyard/integration".into(),
        })
    }
}

/// Creates branch `name` at `start` (a revision) when it does not exist; returns the branch's tip
/// (hex), which for an existing branch is left where it is.
///
/// Errors: the repository cannot be opened; `name` is not a valid branch name; `start` does not
/// resolve to a commit; git cannot create the ref (e.g. a stale lock, named by git).
pub fn ensure_branch(repo: &Path, name: &str, start: &str) -> Result<String, GitError> {
    check_branch_name(name)?;
    let r = open(repo)?;
    if let Ok(b) = r.find_branch(name, BranchType::Local) {
        let tip = b
            .get()
            .peel_to_commit()
            .map_err(gerr(format!("reading branch {name}")))?;
        return Ok(tip.id().to_string());
    }
    let c = commit_of(&r, start)?;
    r.branch(name, &c, false)
        .map_err(gerr(format!("creating branch {name} at {start}")))?;
    Ok(c.id().to_string())
}

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

/// Most changed files [`snapshot_worktree`] takes in; more is an error (predict on the branch).
pub const MAX_SNAPSHOT_FILES: usize = 2000;
/// Files larger than this (bytes) are left out of a snapshot: their committed version stands.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 8 << 20;

/// A commit (hex) holding the worktree's files as they are now — its HEAD plus every staged,
/// unstaged and untracked (not ignored) change — with HEAD as its parent; HEAD's own id when
/// nothing changed. Like `git stash create`: it writes objects to the object database (blobs of
/// the changed files, a tree, a commit that no ref names, pruned by git's gc in time) and never
/// the index, a ref or a file. Files over [`MAX_SNAPSHOT_FILE_BYTES`] and nested repositories are
/// left out.
///
/// Errors: the worktree cannot be opened or its HEAD does not resolve; more than
/// [`MAX_SNAPSHOT_FILES`] changed files (named: predict on the branch's commits instead); a
/// changed file cannot be read.
pub fn snapshot_worktree(worktree: &Path) -> Result<String, GitError> {
    let r = Repository::open(worktree)
        .map_err(gerr(format!("opening the worktree {}", worktree.display())))?;
    let head = r
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = r.statuses(Some(&mut opts)).map_err(gerr(format!(
        "reading the status of {}",
        worktree.display()
    )))?;
    if statuses.is_empty() {
        return Ok(head.id().to_string());
    }
    if statuses.len() > MAX_SNAPSHOT_FILES {
        return Err(GitError {
            action: format!("taking a snapshot of {}", worktree.display()),
            message: format!(
                "{} changed files (more than {MAX_SNAPSHOT_FILES}): predict on the branch's commits instead, or ignore build output in .gitignore",
                statuses.len()
            ),
        });
    }
    let head_tree = head.tree().map_err(gerr("reading HEAD's tree"))?;
    let mut index = git2::Index::new().map_err(gerr("making an index in memory"))?;
    index
        .read_tree(&head_tree)
        .map_err(gerr("reading HEAD's tree"))?;
    for st in statuses.iter() {
        let Ok(rel) = st.path().map(str::to_string) else {
            continue;
        };
        let full = worktree.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            let _ = index.remove_path(Path::new(&rel));
            continue;
        };
        let (id, mode) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| snapshot_io(&full, e))?;
            let id = r
                .blob(target.as_os_str().as_encoded_bytes())
                .map_err(gerr(format!("storing {rel}")))?;
            (id, 0o120000)
        } else if meta.is_file() {
            if meta.len() > MAX_SNAPSHOT_FILE_BYTES {
                continue;
            }
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let id = r.blob_path(&full).map_err(gerr(format!("storing {rel}")))?;
            (id, if exec { 0o100755 } else { 0o100644 })
        } else {
            continue;
        };
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                file_size: u32::try_from(meta.len()).unwrap_or(u32::MAX),
                id,
                flags: 0,
                flags_extended: 0,
                path: rel.into_bytes(),
            })
            .map_err(gerr("adding a changed file to the snapshot"))?;
    }
    let tree_id = index
        .write_tree_to(&r)
        .map_err(gerr("writing the snapshot's tree"))?;
    if tree_id == head_tree.id() {
        return Ok(head.id().to_string());
    }
    let tree = r
        .find_tree(tree_id)
        .map_err(gerr("reading the snapshot's tree"))?;
    let sig = git2::Signature::now("switchyard", "switchyard@localhost")
        .map_err(gerr("making the commit's signature"))?;
    let id = r
        .commit(
            None,
            &sig,
            &sig,
            "switchyard: snapshot of uncommitted work",
            &tree,
            &[&head],
        )
        .map_err(gerr("writing the snapshot commit"))?;
    Ok(id.to_string())
}

fn snapshot_io(path: &Path, e: std::io::Error) -> GitError {
    GitError {
        action: format!("reading {} for a snapshot", path.display()),
        message: e.to_string(),
    }
}

/// Most answers a [`Predictor`] keeps (oldest dropped first).
pub const PREDICTOR_CACHE: usize = 512;

/// [`predict`] with the repository opened once and answers cached by the pair of commits (and
/// labels) asked about. Not `Sync` (a git2 repository): one per job thread.
pub struct Predictor {
    repo: Repository,
    cache: std::collections::HashMap<(Oid, Oid, String, String), Vec<Conflict>>,
    order: std::collections::VecDeque<(Oid, Oid, String, String)>,
}

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
        let o = commit_of(&self.repo, ours)?;
        let t = commit_of(&self.repo, theirs)?;
        let key = (o.id(), t.id(), ours.to_string(), theirs.to_string());
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let found = conflicts_between(&self.repo, &o, &t, ours, theirs)?;
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

fn conflicts_between(
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

/// Merges `source` (a revision) into the local branch `target` and moves only
/// `refs/heads/<target>` (compare-and-swap against the tip read at the start, so a concurrent
/// move is an error, never lost). Merge commits are signed `switchyard <switchyard@localhost>`.
///
/// A target branch checked out in a worktree (the user's working copy or any other) is never
/// left silently behind its checkout: when no tracked file there has uncommitted changes, its
/// files and index are updated to the new tip together with the branch, like git's
/// `receive.denyCurrentBranch=updateInstead` (untracked files, e.g. a manifest kept in the
/// repository, stay; one in the way of an incoming file stops it); otherwise the merge is
/// refused with an error naming the worktree and the fix, and nothing changes.
///
/// Errors: the repository cannot be opened; `target` is not a local branch (create it with
/// [`ensure_branch`]); `source` does not resolve; the target is checked out in a worktree with
/// changes; the branch moved during the merge; git cannot write the commit, files or ref.
pub fn merge_into(
    repo: &Path,
    target: &str,
    source: &str,
    mode: MergeMode,
    message: &str,
) -> Result<MergeResult, GitError> {
    let r = open(repo)?;
    let refname = format!("refs/heads/{target}");
    let target_commit = r
        .find_reference(&refname)
        .and_then(|rf| rf.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("merging into {target}"),
            message: format!(
                "{}; the branch does not exist: create it first (switchyard creates the integration branch at the run's base)",
                e.message()
            ),
        })?;
    let source_commit = commit_of(&r, source)?;
    let (t, s) = (target_commit.id(), source_commit.id());
    if t == s
        || r.graph_descendant_of(t, s)
            .map_err(gerr("comparing histories"))?
    {
        return Ok(MergeResult::UpToDate);
    }
    let can_ff = r
        .graph_descendant_of(s, t)
        .map_err(gerr("comparing histories"))?;
    let new_tip = if can_ff && mode != MergeMode::MergeCommit {
        s
    } else {
        let conflicts = conflicts_between(&r, &target_commit, &source_commit, target, source)?;
        if mode == MergeMode::FastForward {
            return Ok(MergeResult::Diverged { conflicts });
        }
        if !conflicts.is_empty() {
            return Ok(MergeResult::Conflicts(conflicts));
        }
        let mut index = r
            .merge_commits(&target_commit, &source_commit, None)
            .map_err(gerr(format!("merging {source} into {target}")))?;
        let tree_id = index
            .write_tree_to(&r)
            .map_err(gerr("writing the merged tree"))?;
        let tree = r
            .find_tree(tree_id)
            .map_err(gerr("reading the merged tree"))?;
        let sig = git2::Signature::now("switchyard", "switchyard@localhost")
            .map_err(gerr("making the commit's signature"))?;
        r.commit(
            None,
            &sig,
            &sig,
            message,
            &tree,
            &[&target_commit, &source_commit],
        )
        .map_err(gerr(format!(
            "committing the merge of {source} into {target}"
        )))?
    };
    let checkouts = checked_out_in(&r, &refname)?;
    let refuse = |wt: &Path, why: String| {
        GitError {
        action: format!("merging {source} into {target}"),
        message: format!(
            "{target} is checked out in {} and {why}; switchyard moves a checked-out branch only when its checkout can follow cleanly. Commit or stash there, check out another branch there, or set `merge.into` in switchyard.toml to a branch nobody has checked out (default {DEFAULT_BRANCH})",
            wt.display()
        ),
    }
    };
    for wt in &checkouts {
        let dirty = tracked_changes(wt)?;
        if dirty > 0 {
            return Err(refuse(
                wt,
                format!("{dirty} tracked file(s) there have uncommitted changes"),
            ));
        }
    }
    for (i, wt) in checkouts.iter().enumerate() {
        if let Err(e) = update_checkout(wt, new_tip) {
            // Put the ones already moved back where their branch still is.
            for done in &checkouts[..i] {
                let _ = update_checkout(done, t);
            }
            return Err(refuse(
                wt,
                format!(
                    "its files cannot follow ({}: an untracked file is in the way of an incoming one?)",
                    e.message
                ),
            ));
        }
    }
    let log = format!("switchyard: merge {source}");
    if let Err(e) = r.reference_matching(&refname, new_tip, true, t, &log) {
        // Put the clean checkouts back on whatever the branch now is.
        for wt in &checkouts {
            if let Ok(now) = r.refname_to_id(&refname) {
                let _ = update_checkout(wt, now);
            }
        }
        return Err(GitError {
            action: format!("moving {target} to {new_tip}"),
            message: format!(
                "{}; the branch moved while switchyard merged: run the merge again",
                e.message()
            ),
        });
    }
    Ok(MergeResult::Merged {
        commit: new_tip.to_string(),
        fast_forward: new_tip == s,
    })
}

/// What [`merge_in_worktree`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorktreeMerge {
    /// `source` is already in the worktree's branch: nothing changed.
    UpToDate,
    /// The branch had nothing of its own: it was moved forward to `source` (files updated).
    FastForward {
        /// The new tip (hex).
        commit: String,
    },
    /// Merged without conflicts and committed (two parents: the branch's tip and `source`).
    Merged {
        /// The merge commit (hex).
        commit: String,
    },
    /// The merge stopped on conflicts: the files hold conflict markers (labels `HEAD` and the
    /// source's name), the index the three stages, `MERGE_HEAD` the source; resolving the files
    /// and `git commit` (or `git add -A && git commit`) completes it.
    Conflicts(Vec<Conflict>),
    /// A merge was already under way there (`MERGE_HEAD` exists): left as it is, for the agent.
    InProgress,
}

/// Merges `source` (a revision, usually the integration branch) into the branch checked out in
/// `worktree` — a task's own worktree, never the user's — with git2: no hooks, no user config, no
/// signing prompts. The worktree must be clean (the agent's work committed).
///
/// Errors: the worktree cannot be opened, its HEAD is detached or unborn, it has uncommitted
/// changes (named, with the fix), `source` does not resolve, or git cannot write the files,
/// index or commit.
pub fn merge_in_worktree(
    worktree: &Path,
    source: &str,
    message: &str,
) -> Result<WorktreeMerge, GitError> {
    let r = Repository::open(worktree)
        .map_err(gerr(format!("opening the worktree {}", worktree.display())))?;
    if r.state() == git2::RepositoryState::Merge {
        return Ok(WorktreeMerge::InProgress);
    }
    let head = r
        .head()
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let Some(head_ref) = head
        .name()
        .ok()
        .filter(|_| head.is_branch())
        .map(str::to_string)
    else {
        return Err(GitError {
            action: format!("merging {source} into {}", worktree.display()),
            message: "its HEAD is not on a branch; check out the task's branch there".into(),
        });
    };
    let label = head.shorthand().unwrap_or("HEAD").to_string();
    let ours = head
        .peel_to_commit()
        .map_err(gerr(format!("reading HEAD of {}", worktree.display())))?;
    let dirty = crate::git::uncommitted(worktree)?;
    if dirty > 0 {
        return Err(GitError {
            action: format!("merging {source} into {}", worktree.display()),
            message: format!(
                "{dirty} file(s) there have uncommitted changes; commit them first (the merge would mix with them)"
            ),
        });
    }
    let theirs = commit_of(&r, source)?;
    let (o, t) = (ours.id(), theirs.id());
    if o == t
        || r.graph_descendant_of(o, t)
            .map_err(gerr("comparing histories"))?
    {
        return Ok(WorktreeMerge::UpToDate);
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.safe();
    if r.graph_descendant_of(t, o)
        .map_err(gerr("comparing histories"))?
    {
        let tree = theirs.tree().map_err(gerr(format!("reading {source}")))?;
        r.checkout_tree(tree.as_object(), Some(&mut checkout))
            .map_err(gerr(format!(
                "updating the files of {}",
                worktree.display()
            )))?;
        r.reference_matching(
            &head_ref,
            t,
            true,
            o,
            &format!("switchyard: fast-forward to {source}"),
        )
        .map_err(gerr(format!("moving {label} to {source}")))?;
        return Ok(WorktreeMerge::FastForward {
            commit: t.to_string(),
        });
    }
    let annotated = match r.resolve_reference_from_short_name(source) {
        Ok(rf) if rf.peel_to_commit().is_ok_and(|c| c.id() == t) => {
            r.reference_to_annotated_commit(&rf)
        }
        _ => r.find_annotated_commit(t),
    }
    .map_err(gerr(format!("reading {source}")))?;
    checkout.conflict_style_merge(true);
    r.merge(&[&annotated], None, Some(&mut checkout))
        .map_err(gerr(format!(
            "merging {source} into {}",
            worktree.display()
        )))?;
    let mut index = r.index().map_err(gerr("reading the index"))?;
    if index.has_conflicts() {
        return Ok(WorktreeMerge::Conflicts(conflicts_between(
            &r, &ours, &theirs, &label, source,
        )?));
    }
    let tree_id = index
        .write_tree()
        .map_err(gerr("writing the merged tree"))?;
    let tree = r
        .find_tree(tree_id)
        .map_err(gerr("reading the merged tree"))?;
    let sig = git2::Signature::now("switchyard", "switchyard@localhost")
        .map_err(gerr("making the commit's signature"))?;
    let id = r
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&ours, &theirs])
        .map_err(gerr(format!("committing the merge of {source}")))?;
    r.cleanup_state().map_err(gerr("ending the merge"))?;
    Ok(WorktreeMerge::Merged {
        commit: id.to_string(),
    })
}

/// Working-tree paths (the main one and linked worktrees) whose HEAD is the symbolic ref
/// `refname`.
fn checked_out_in(r: &Repository, refname: &str) -> Result<Vec<PathBuf>, GitError> {
    let mut out = Vec::new();
    let head_is = |repo: &Repository| {
        repo.find_reference("HEAD")
            .ok()
            .map(|h| h.symbolic_target().ok().flatten() == Some(refname))
            .unwrap_or(false)
    };
    if let Ok(main) = Repository::open(r.commondir()) {
        if let Some(wd) = main.workdir() {
            if head_is(&main) {
                out.push(wd.to_path_buf());
            }
        }
    }
    let names = r.worktrees().map_err(gerr("listing worktrees"))?;
    for name in names.iter() {
        let Ok(Some(name)) = name else {
            continue;
        };
        let Ok(wt) = r.find_worktree(name) else {
            continue;
        };
        if wt.validate().is_err() {
            continue;
        }
        if let Ok(repo) = Repository::open_from_worktree(&wt) {
            if head_is(&repo) {
                out.push(wt.path().to_path_buf());
            }
        }
    }
    Ok(out)
}

/// Tracked files with staged or unstaged changes in a worktree (untracked and ignored files do
/// not count: a checkout keeps them, and refuses when one is in the way).
fn tracked_changes(wt: &Path) -> Result<usize, GitError> {
    let repo =
        Repository::open(wt).map_err(gerr(format!("opening the worktree {}", wt.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(false).include_ignored(false);
    let st = repo
        .statuses(Some(&mut opts))
        .map_err(gerr(format!("reading the status of {}", wt.display())))?;
    Ok(st.len())
}

/// Updates a worktree's files and index from its HEAD's tree to `to`'s tree (HEAD itself moves
/// with the branch ref). Safe: touches only files that match HEAD, and fails without writing
/// anything when a change or an untracked file is in the way.
fn update_checkout(wt: &Path, to: Oid) -> Result<(), GitError> {
    let repo =
        Repository::open(wt).map_err(gerr(format!("opening the worktree {}", wt.display())))?;
    let tree = repo
        .find_commit(to)
        .and_then(|c| c.tree())
        .map_err(gerr(format!("reading {to}")))?;
    let mut cb = git2::build::CheckoutBuilder::new();
    cb.safe();
    repo.checkout_tree(tree.as_object(), Some(&mut cb))
        .map_err(gerr(format!("updating the files of {}", wt.display())))
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
