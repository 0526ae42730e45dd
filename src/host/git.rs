//! Worktrees and branches (git2, no network): create or reuse a task's worktree, count commits
//! ahead of base, remove the worktrees switchyard made, decide which branches `clean` may delete.
//! The integration branch (in-memory merges) is [`crate::host::integrate`]; pushing and pull requests
//! (the git and gh CLIs) are [`crate::host::pr`]. Nothing else in switchyard calls git.

use crate::core::text::escape_control;
use git2::{BranchType, Repository, WorktreeAddOptions, WorktreePruneOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Prefix of the git worktree names switchyard creates (`sy-<task id>`); `clean` removes only these.
pub const WORKTREE_PREFIX: &str = "sy-";

/// A task's worktree, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Absolute path.
    pub path: PathBuf,
    /// Branch checked out there.
    pub branch: String,
    /// Commit the branch counts its commits from.
    pub base_commit: String,
    /// True when it existed already and was reused.
    pub reused: bool,
}

/// Errors from git, with what was being done.
///
/// Displayed with control characters escaped ([`crate::core::text::escape_control`]): branch names
/// and paths can come from a manifest.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", escape_control(action), escape_control(message))]
pub struct GitError {
    /// What switchyard was doing, e.g. "creating worktree for t3 at /x".
    pub action: String,
    /// git's message, with a hint where one helps.
    pub message: String,
}

fn err(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |e| GitError {
        action,
        message: e.message().to_string(),
    }
}

/// Finds the repository containing `dir` and returns its working-tree root.
pub fn repo_root(dir: &Path) -> Result<PathBuf, GitError> {
    let repo = Repository::discover(dir).map_err(|e| GitError {
        action: format!("finding the git repository containing {}", dir.display()),
        message: format!(
            "{}; put the manifest inside a git repository or pass --repo DIR",
            e.message()
        ),
    })?;
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| GitError {
            action: format!("opening {}", dir.display()),
            message: "it is a bare repository; switchyard needs a working tree".into(),
        })
}

/// Turns for worktree operations, one per branch: starts on different branches make their
/// worktrees side by side (each in its own `.git/worktrees/<name>` and directory, each branch
/// its own ref), while two starts naming one branch take turns, so the second sees the first's
/// worktree and gets git's "already checked out" error instead of a second checkout.
#[derive(Debug, Default)]
pub struct BranchLocks {
    turns:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
}

impl BranchLocks {
    /// The turn of `branch` (short name, e.g. `sy/t1`): lock it around the branch's worktree
    /// operations.
    pub fn turn(&self, branch: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.entry(branch.to_string()).or_default().clone()
    }
}

/// Resolves the run's `base` (a branch, ref or commit) to a commit id, for a check at start-up:
/// a missing base or a repository without commits is bad input for the whole run (exit 3), not
/// a failure of every task.
///
/// Errors: the repository cannot be opened, or `base` does not name a commit (the message says
/// to set `base` in switchyard.toml, or to make a first commit).
pub fn resolve_base(repo_dir: &Path, base: &str) -> Result<String, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let id = resolve_commit(&repo, base)?.id();
    Ok(id.to_string())
}

/// Creates the worktree for a task at `path` on `branch` from `base` (a ref or commit), or reuses
/// it when it is already there and complete. An existing branch is reused as it is (its work is
/// kept).
///
/// Kept for source compatibility: `base` given as a full 40-hex commit id is taken as the
/// task's recorded starting commit, any other `base` as the branch to start a missing branch
/// from; see [`ensure_worktree_from`], which takes the two apart and which new code should call.
pub fn ensure_worktree(
    repo_dir: &Path,
    task_id: &str,
    path: &Path,
    branch: &str,
    base: &str,
) -> Result<WorktreeInfo, GitError> {
    let recorded =
        (base.len() == 40 && base.bytes().all(|b| b.is_ascii_hexdigit())).then_some(base);
    ensure_worktree_from(repo_dir, task_id, path, branch, base, recorded)
}

/// Creates the worktree for a task at `path` on `branch`, or reuses it when it is complete.
///
/// - `base` (a ref or commit) is where a missing branch starts.
/// - `recorded_base` is the task's `baseCommit` from the manifest: the branch's commit at the
///   task's first start. The returned [`WorktreeInfo::base_commit`] is `recorded_base` when given;
///   otherwise the branch's current tip when the branch already exists (commits made on it
///   elsewhere are not the agent's work), or `base` for a new branch. The caller records it once,
///   at the first start, and passes it back on every later start.
///
/// Recovery before use: a `refs/heads/<branch>.lock` or worktree `index.lock` older than
/// [`STALE_LOCK_AGE`] (left by a kill) is removed; a half-made worktree (its checkout never
/// finished: no index, or HEAD does not resolve, or a directory without its `.git` file) is
/// removed and made again, but only when every file in it is what the checkout wrote (same
/// content as the branch); a broken registration of the worktree's name is pruned.
///
/// Errors: the repository cannot be opened; `base` or `recorded_base` does not resolve to a
/// commit (the repository needs at least one commit); a half-made worktree holds files that are
/// not the branch's (named, with the fix: move them away); git cannot create the branch or the
/// worktree (e.g. the branch is checked out elsewhere).
pub fn ensure_worktree_from(
    repo_dir: &Path,
    task_id: &str,
    path: &Path,
    branch: &str,
    base: &str,
    recorded_base: Option<&str>,
) -> Result<WorktreeInfo, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let base_commit = resolve_commit(&repo, base)?;
    let recorded = match recorded_base {
        Some(r) => Some(
            repo.revparse_single(r)
                .and_then(|o| o.peel_to_commit())
                .map_err(|e| GitError {
                    action: format!("resolving the task's recorded baseCommit {r:?}"),
                    message: format!(
                        "{}; the commit is gone from the repository: remove \"baseCommit\" from the task in the manifest to count from the branch's current tip",
                        e.message()
                    ),
                })?
                .id(),
        ),
        None => None,
    };
    let name = format!("{WORKTREE_PREFIX}{task_id}");
    let cutoff = SystemTime::now()
        .checked_sub(STALE_LOCK_AGE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    remove_if_older(
        &repo
            .commondir()
            .join("refs/heads")
            .join(format!("{branch}.lock")),
        cutoff,
    )?;

    match worktree_health(path) {
        Health::Complete(wt) => {
            remove_if_older(&wt.path().join("index.lock"), cutoff)?;
            let head = wt.head().ok();
            let tip = head
                .as_ref()
                .and_then(|h| h.peel_to_commit().ok())
                .map(|c| c.id());
            let branch_now = head
                .as_ref()
                .and_then(|h| h.shorthand().ok().map(str::to_string))
                .unwrap_or_else(|| branch.to_string());
            let base_id = recorded.or(tip).unwrap_or(base_commit.id());
            return Ok(WorktreeInfo {
                path: path.to_path_buf(),
                branch: branch_now,
                base_commit: base_id.to_string(),
                reused: true,
            });
        }
        Health::HalfMade(why) => discard_half_made(&repo, &name, path, &why)?,
        Health::Absent => {}
    }
    prune_registration(&repo, &name, path)?;

    let (branch_ref, base_id) = match repo.find_branch(branch, BranchType::Local) {
        Ok(b) => {
            let tip = b
                .get()
                .peel_to_commit()
                .map_err(err(format!("reading branch {branch}")))?;
            (b, recorded.unwrap_or(tip.id()))
        }
        Err(_) => {
            let start = match recorded {
                Some(id) => repo
                    .find_commit(id)
                    .map_err(err("reading the recorded base commit"))?,
                None => base_commit,
            };
            let b = repo
                .branch(branch, &start, false)
                .map_err(err(format!("creating branch {branch}")))?;
            (b, start.id())
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    let reference = branch_ref.into_reference();
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    // libgit2 (1.9) is not safe with two adds on one repository at once: one add can see
    // another's half-written registration and take its own branch for checked out elsewhere
    // (reproduced by `worktrees_on_distinct_branches_are_made_side_by_side`). Adds take turns
    // in this process; what comes before them runs side by side.
    static ADD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let added = {
        let _turn = ADD.lock().unwrap_or_else(|e| e.into_inner());
        repo.worktree(&name, path, Some(&opts))
    };
    added.map_err(|e| GitError {
        action: format!("creating worktree {} on {branch}", path.display()),
        message: format!(
            "{}; if the branch is checked out elsewhere, remove that worktree (switchyard clean)",
            e.message()
        ),
    })?;
    Ok(WorktreeInfo {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        base_commit: base_id.to_string(),
        reused: false,
    })
}

/// How old a git lock file must be before switchyard takes it for one a killed process left:
/// git holds its ref and index locks for milliseconds.
pub const STALE_LOCK_AGE: Duration = Duration::from_secs(10);

/// What [`recover_stale_state`] repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Lock files removed (`refs/**/*.lock`, `packed-refs.lock`, and `index.lock`/`HEAD.lock`
    /// of switchyard's worktrees).
    pub locks: Vec<PathBuf>,
    /// Registrations removed (`.git/worktrees/sy-*` whose worktree directory or `.git` file is gone).
    pub registrations: Vec<PathBuf>,
}

/// Repairs what a killed switchyard (or git) leaves in the repository: lock files last modified
/// before `older_than` (pass the run's start time; a lock from before the run cannot be ours
/// and blocks every later branch update), and registrations of switchyard's worktrees
/// (`sy-*`) whose directory or `.git` file is missing. Never touches a worktree directory.
/// Call it at the start of a run, while holding the run's lock.
///
/// Errors: the repository cannot be opened, or a stale file cannot be removed (named).
pub fn recover_stale_state(repo_dir: &Path, older_than: SystemTime) -> Result<Recovery, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let common = repo.commondir().to_path_buf();
    let mut out = Recovery::default();
    let mut candidates = Vec::new();
    lock_files_under(&common.join("refs"), &mut candidates);
    candidates.push(common.join("packed-refs.lock"));
    for (_, reg) in registrations(&common) {
        candidates.push(reg.join("index.lock"));
        candidates.push(reg.join("HEAD.lock"));
    }
    for lock in candidates {
        if remove_if_older(&lock, older_than)? {
            out.locks.push(lock);
        }
    }
    for (_, reg) in registrations(&common) {
        if registered_target(&reg).is_none() {
            std::fs::remove_dir_all(&reg).map_err(io_err(format!("removing {}", reg.display())))?;
            out.registrations.push(reg);
        }
    }
    Ok(out)
}

/// Files with uncommitted changes (untracked included) in a worktree whose checkout finished;
/// `None` when there is no worktree at `path` or it is half-made (its missing files are not
/// anyone's work). `switchyard clean` keeps a worktree for which this is more than 0.
pub fn unsaved_files(path: &Path) -> Option<usize> {
    match worktree_health(path) {
        Health::Complete(_) => uncommitted(path).ok(),
        Health::Absent | Health::HalfMade(_) => None,
    }
}

/// A worktree directory's state.
enum Health {
    /// Nothing there.
    Absent,
    /// A worktree whose checkout finished.
    Complete(Repository),
    /// A worktree (or its directory) that a kill left unfinished, and why.
    HalfMade(String),
}

fn worktree_health(path: &Path) -> Health {
    if std::fs::symlink_metadata(path).is_err() {
        return Health::Absent;
    }
    if std::fs::symlink_metadata(path.join(".git")).is_err() {
        return Health::HalfMade("the directory has no .git file".into());
    }
    let wt = match Repository::open(path) {
        Ok(r) => r,
        Err(e) => return Health::HalfMade(format!("git cannot open it ({})", e.message())),
    };
    if wt.head().and_then(|h| h.peel_to_commit()).is_err() {
        return Health::HalfMade("its HEAD does not resolve to a commit".into());
    }
    // A checkout writes the index last; without one the checkout never finished (and nobody
    // staged anything there).
    if !wt.path().join("index").exists() {
        return Health::HalfMade("its checkout never finished (it has no index)".into());
    }
    Health::Complete(wt)
}

/// Removes a half-made worktree at `path` and its registration, after checking that every file
/// in it is what the checkout of its HEAD wrote, or was writing when killed (a beginning of the
/// file), so no one's work is lost.
fn discard_half_made(
    repo: &Repository,
    name: &str,
    path: &Path,
    why: &str,
) -> Result<(), GitError> {
    let head_tree = Repository::open(path)
        .ok()
        .and_then(|wt| wt.head().ok()?.peel_to_tree().ok().map(|t| t.id()))
        .and_then(|id| repo.find_tree(id).ok());
    if let Some(foreign) = first_foreign_file(repo, path, path, head_tree.as_ref()) {
        return Err(GitError {
            action: format!("reusing worktree {}", path.display()),
            message: format!(
                "it is half-made ({why}) but {} is not a file of its branch; move your files out of {} and remove the directory, then run again",
                foreign.display(),
                path.display()
            ),
        });
    }
    std::fs::remove_dir_all(path).map_err(io_err(format!(
        "removing half-made worktree {}",
        path.display()
    )))?;
    prune_registration(repo, name, path)
}

/// The first file under `dir` (skipping the top-level `.git`) that is not in `tree` with the
/// same content or a beginning of it (a file the checkout was writing), if any.
fn first_foreign_file(
    repo: &Repository,
    root: &Path,
    dir: &Path,
    tree: Option<&git2::Tree<'_>>,
) -> Option<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Some(dir.to_path_buf()),
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return Some(dir.to_path_buf());
        };
        let p = entry.path();
        let rel = p.strip_prefix(root).unwrap_or(&p);
        if rel == Path::new(".git") {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            return Some(p);
        };
        if kind.is_dir() {
            if let Some(f) = first_foreign_file(repo, root, &p, tree) {
                return Some(f);
            }
            continue;
        }
        let on_disk = if kind.is_symlink() {
            std::fs::read_link(&p).ok().and_then(|t| {
                git2::Oid::hash_object(git2::ObjectType::Blob, t.to_string_lossy().as_bytes()).ok()
            })
        } else {
            git2::Oid::hash_file(git2::ObjectType::Blob, &p).ok()
        };
        let in_tree = tree.and_then(|t| t.get_path(rel).ok()).map(|e| e.id());
        if on_disk.is_some() && on_disk == in_tree {
            continue;
        }
        // The file the checkout was writing when it was killed: a beginning of its blob.
        let partial = kind.is_file()
            && in_tree
                .and_then(|id| repo.find_blob(id).ok())
                .zip(std::fs::read(&p).ok())
                .is_some_and(|(blob, bytes)| blob.content().starts_with(&bytes));
        if !partial {
            return Some(p);
        }
    }
    None
}

/// Removes the registration `.git/worktrees/<name>` when it is broken (no readable `gitdir`, or
/// its worktree's `.git` file is gone) or points at `path` whose `.git` file is gone. A
/// registration of another, healthy directory is left alone.
fn prune_registration(repo: &Repository, name: &str, path: &Path) -> Result<(), GitError> {
    let reg = repo.commondir().join("worktrees").join(name);
    if !reg.exists() {
        return Ok(());
    }
    let remove = match registered_target(&reg) {
        None => true,
        Some(target) => same_path(&target, path) && !path.join(".git").exists(),
    };
    if remove {
        std::fs::remove_dir_all(&reg).map_err(io_err(format!(
            "removing the stale registration {}",
            reg.display()
        )))?;
    }
    Ok(())
}

/// The worktree directory a registration points at, when its `gitdir` file is readable and the
/// `.git` file it names exists.
fn registered_target(reg: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(reg.join("gitdir")).ok()?;
    let dotgit = PathBuf::from(text.trim_end_matches(['\n', '\r']));
    if dotgit.as_os_str().is_empty() || !dotgit.is_file() {
        return None;
    }
    dotgit.parent().map(Path::to_path_buf)
}

/// Switchyard's registrations (`<commondir>/worktrees/sy-*`): name and directory.
fn registrations(common: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(common.join("worktrees")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            (name.starts_with(WORKTREE_PREFIX) && e.file_type().ok()?.is_dir())
                .then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        // The directory may be gone: canonicalize its parent.
        match (
            p.parent().and_then(|d| d.canonicalize().ok()),
            p.file_name(),
        ) {
            (Some(d), Some(n)) => d.join(n),
            _ => p.to_path_buf(),
        }
    };
    a == b || canon(a) == canon(b)
}

/// Every `*.lock` file under `dir`, recursively.
fn lock_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => lock_files_under(&p, out),
            Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "lock") => out.push(p),
            _ => {}
        }
    }
}

/// Removes `path` when it is a file last modified before `cutoff`. Returns whether it did.
fn remove_if_older(path: &Path, cutoff: SystemTime) -> Result<bool, GitError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(false);
    };
    let old = meta.is_file() && meta.modified().is_ok_and(|m| m < cutoff);
    if old {
        std::fs::remove_file(path).map_err(io_err(format!(
            "removing the stale lock {} (left by a killed git or switchyard)",
            path.display()
        )))?;
    }
    Ok(old)
}

fn resolve_commit<'r>(repo: &'r Repository, spec: &str) -> Result<git2::Commit<'r>, GitError> {
    repo.revparse_single(spec)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError {
            action: format!("resolving base {spec:?}"),
            message: format!(
                "{}; set `base` in switchyard.toml to an existing branch or commit (the repository needs at least one commit)",
                e.message()
            ),
        })
}

fn io_err(action: String) -> impl FnOnce(std::io::Error) -> GitError {
    move |e| GitError {
        action,
        message: e.to_string(),
    }
}

/// Commits on the worktree's HEAD that are not reachable from `base_commit`.
pub fn commits_ahead(worktree: &Path, base_commit: &str) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(err("reading HEAD"))?;
    let base = git2::Oid::from_str(base_commit).map_err(err("parsing base commit"))?;
    let mut walk = repo.revwalk().map_err(err("walking history"))?;
    walk.push(head.id()).map_err(err("walking history"))?;
    walk.hide(base).map_err(err("walking history"))?;
    Ok(walk.count())
}

/// Files with uncommitted changes (staged, unstaged or untracked, not ignored) in a worktree.
pub fn uncommitted(worktree: &Path) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(err("reading the status"))?;
    Ok(statuses.len())
}

/// Commits every change in the worktree (like `git add -A && git commit`) as "switchyard".
/// Returns the new commit id, or `None` when there was nothing to commit.
pub fn commit_all(worktree: &Path, message: &str) -> Result<Option<String>, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let mut index = repo.index().map_err(err("opening the index"))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(err("adding files"))?;
    index
        .update_all(["*"].iter(), None)
        .map_err(err("recording deletions"))?;
    index.write().map_err(err("writing the index"))?;
    let tree_id = index.write_tree().map_err(err("writing the tree"))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(err("reading HEAD"))?;
    if head.tree_id() == tree_id {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).map_err(err("reading the tree"))?;
    let sig =
        git2::Signature::now("switchyard", "switchyard@localhost").map_err(err("signature"))?;
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&head])
        .map_err(err("committing"))?;
    Ok(Some(id.to_string()))
}

/// Files changed between `base_commit` and the worktree's HEAD.
pub fn files_changed(worktree: &Path, base_commit: &str) -> Result<usize, GitError> {
    let repo =
        Repository::open(worktree).map_err(err(format!("opening {}", worktree.display())))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_tree())
        .map_err(err("reading HEAD"))?;
    let base = repo
        .find_commit(git2::Oid::from_str(base_commit).map_err(err("parsing base commit"))?)
        .and_then(|c| c.tree())
        .map_err(err("reading base"))?;
    let diff = repo
        .diff_tree_to_tree(Some(&base), Some(&head), None)
        .map_err(err("diffing"))?;
    Ok(diff.deltas().len())
}

/// Paths (`/`-separated, sorted) that differ between the trees of revisions `from` and `to`
/// in the repository at `repo` (renames count as their new path), e.g. for a pull request's
/// summary.
///
/// Errors: the repository cannot be opened, or a revision does not resolve to a commit.
pub fn changed_paths(repo: &Path, from: &str, to: &str) -> Result<Vec<String>, GitError> {
    let r = Repository::open(repo).map_err(err(format!("opening {}", repo.display())))?;
    let tree = |rev: &str| {
        r.revparse_single(rev)
            .and_then(|o| o.peel_to_tree())
            .map_err(err(format!("resolving {rev:?}")))
    };
    let (a, b) = (tree(from)?, tree(to)?);
    let diff = r
        .diff_tree_to_tree(Some(&a), Some(&b), None)
        .map_err(err("diffing"))?;
    let mut out: Vec<String> = diff
        .deltas()
        .filter_map(|d| d.new_file().path().or(d.old_file().path()))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Where a task branch's commits are, for `switchyard clean`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchWork {
    /// There is no such local branch.
    Absent,
    /// Every commit on it is also on `held_by`: one of the refs given, a remote-tracking branch
    /// (`origin/x`), or "them together" when no single one holds them all.
    Safe {
        /// Where its work is (a ref name, or a description).
        held_by: String,
    },
    /// `commits` commits are in none of the given refs nor any remote-tracking branch.
    Unmerged {
        /// How many.
        commits: usize,
        /// The branch's tip (hex), to recover it with `git branch NAME TIP` after a forced delete.
        tip: String,
    },
}

/// Tells whether deleting local branch `branch` would lose commits: its commits are looked for
/// in `safe_refs` (revisions, e.g. the integration branch and the run's base; ones that do not
/// resolve are skipped) and in every remote-tracking branch. Reads only.
///
/// Errors: the repository cannot be opened, or git cannot walk the history.
pub fn branch_work(
    repo: &Path,
    branch: &str,
    safe_refs: &[String],
) -> Result<BranchWork, GitError> {
    let r = Repository::open(repo).map_err(err(format!("opening {}", repo.display())))?;
    let tip = match r.find_branch(branch, BranchType::Local) {
        Ok(b) => b
            .get()
            .peel_to_commit()
            .map_err(err(format!("reading branch {branch}")))?
            .id(),
        Err(_) => return Ok(BranchWork::Absent),
    };
    let own = format!("refs/heads/{branch}");
    let mut holders: Vec<(String, git2::Oid)> = Vec::new();
    for spec in safe_refs {
        let Ok(obj) = r.revparse_single(spec) else {
            continue;
        };
        let Ok(c) = obj.peel_to_commit() else {
            continue;
        };
        let is_own = r
            .resolve_reference_from_short_name(spec)
            .ok()
            .map(|rf| rf.name().is_ok_and(|n| n == own))
            .unwrap_or(false);
        if !is_own {
            holders.push((spec.clone(), c.id()));
        }
    }
    let remotes = r
        .references_glob("refs/remotes/*")
        .map_err(err("listing remote branches"))?;
    for rf in remotes.flatten() {
        if let (Ok(name), Ok(c)) = (rf.shorthand().map(str::to_string), rf.peel_to_commit()) {
            holders.push((name, c.id()));
        }
    }
    for (name, id) in &holders {
        if *id == tip || r.graph_descendant_of(*id, tip).unwrap_or(false) {
            return Ok(BranchWork::Safe {
                held_by: name.clone(),
            });
        }
    }
    let mut walk = r.revwalk().map_err(err("walking history"))?;
    walk.push(tip).map_err(err("walking history"))?;
    for (_, id) in &holders {
        walk.hide(*id).map_err(err("walking history"))?;
    }
    let commits = walk.count();
    if commits == 0 {
        return Ok(BranchWork::Safe {
            held_by: "those branches together".into(),
        });
    }
    Ok(BranchWork::Unmerged {
        commits,
        tip: tip.to_string(),
    })
}

/// Deletes local branch `branch` and returns the commit it pointed at (hex).
///
/// Errors: the repository cannot be opened, there is no such branch, or git refuses (e.g. the
/// branch is checked out in a worktree: git's message names it).
pub fn delete_branch(repo: &Path, branch: &str) -> Result<String, GitError> {
    let r = Repository::open(repo).map_err(err(format!("opening {}", repo.display())))?;
    let mut b = r
        .find_branch(branch, BranchType::Local)
        .map_err(err(format!("finding branch {branch}")))?;
    let tip = b
        .get()
        .peel_to_commit()
        .map_err(err(format!("reading branch {branch}")))?
        .id();
    b.delete()
        .map_err(err(format!("deleting branch {branch}")))?;
    Ok(tip.to_string())
}

/// Removes the worktrees switchyard made for these task ids (`sy-<id>`): their directories and
/// their entries in git, including half-made ones a kill left (a registration whose `gitdir` is
/// missing, or whose directory is gone or has no `.git` file). Ref lock files older than
/// [`STALE_LOCK_AGE`] are removed too. Branches (and so the work on them) are kept. Returns the
/// removed worktree directories and broken registrations.
///
/// Errors: the repository cannot be opened, or a directory or registration cannot be removed.
pub fn remove_worktrees(repo_dir: &Path, task_ids: &[String]) -> Result<Vec<PathBuf>, GitError> {
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    let cutoff = SystemTime::now()
        .checked_sub(STALE_LOCK_AGE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = recover_stale_state(repo_dir, cutoff)?.registrations;
    for id in task_ids {
        let name = format!("{WORKTREE_PREFIX}{id}");
        let reg = repo.commondir().join("worktrees").join(&name);
        if let Ok(wt) = repo.find_worktree(&name) {
            let path = wt.path().to_path_buf();
            wt.prune(Some(
                WorktreePruneOptions::new()
                    .valid(true)
                    .locked(false)
                    .working_tree(true),
            ))
            .map_err(err(format!("removing worktree {}", path.display())))?;
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
            }
            removed.push(path);
        }
        // What git cannot look up any more (no `gitdir`): remove the registration by hand.
        if reg.exists() {
            std::fs::remove_dir_all(&reg).map_err(io_err(format!("removing {}", reg.display())))?;
            removed.push(reg);
        }
    }
    Ok(removed)
}

/// Like [`remove_worktrees`], given where each task's worktree should be (`(task id, path)`,
/// e.g. from `Paths`): also removes a half-made worktree directory git no longer knows (a kill
/// mid-way through `git worktree add` can leave a directory holding its `.git` file and part of
/// the checkout, and a registration without `gitdir`). Such a directory is removed when its
/// `.git` file names the task's registration (`sy-<id>`), or when every file in it is the
/// branch's own; any other directory is left for the person and not returned.
///
/// Errors: as [`remove_worktrees`].
pub fn remove_worktrees_at(
    repo_dir: &Path,
    worktrees: &[(String, PathBuf)],
) -> Result<Vec<PathBuf>, GitError> {
    let ids: Vec<String> = worktrees.iter().map(|(id, _)| id.clone()).collect();
    let mut removed = remove_worktrees(repo_dir, &ids)?;
    let repo =
        Repository::open(repo_dir).map_err(err(format!("opening {}", repo_dir.display())))?;
    for (id, path) in worktrees {
        if let Health::HalfMade(why) = worktree_health(path) {
            let name = format!("{WORKTREE_PREFIX}{id}");
            // Ours for certain: its `.git` file names our registration. `clean` removes a
            // worktree's directory in any case, so its half-made one goes too.
            let ours = std::fs::read_to_string(path.join(".git")).is_ok_and(|t| {
                t.trim_end()
                    .trim_end_matches('/')
                    .ends_with(&format!("worktrees/{name}"))
            });
            if ours {
                std::fs::remove_dir_all(path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
                removed.push(path.clone());
            } else if discard_half_made(&repo, &name, path, &why).is_ok() {
                removed.push(path.clone());
            }
        }
    }
    Ok(removed)
}

/// Creates a repository at `dir` with `files` (relative path, content) committed on `main`.
/// Used by the demo and by tests.
pub fn init_repo_with(
    dir: &Path,
    files: &[(&str, &str)],
    message: &str,
) -> Result<String, GitError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts)
        .map_err(err(format!("creating a repository in {}", dir.display())))?;
    for (rel, content) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError {
                action: format!("creating {}", parent.display()),
                message: e.to_string(),
            })?;
        }
        std::fs::write(&p, content).map_err(|e| GitError {
            action: format!("writing {}", p.display()),
            message: e.to_string(),
        })?;
    }
    let mut index = repo.index().map_err(err("opening the index"))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(err("adding files"))?;
    index.write().map_err(err("writing the index"))?;
    let tree_id = index.write_tree().map_err(err("writing the tree"))?;
    let tree = repo.find_tree(tree_id).map_err(err("reading the tree"))?;
    let sig =
        git2::Signature::now("switchyard", "switchyard@localhost").map_err(err("signature"))?;
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
        .map_err(err("committing"))?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn commit_in(dir: &Path, file: &str) {
        std::fs::write(dir.join(file), "x\n").unwrap();
        let who = [
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ];
        git_cli(dir, &[&who[..], &["add", "-A"]].concat());
        git_cli(dir, &[&who[..], &["commit", "-qm", "work"]].concat());
    }

    fn git_cli(dir: &Path, args: &[&str]) {
        assert!(Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success());
    }

    #[test]
    fn creates_reuses_counts_and_cleans_worktrees() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        init_repo_with(&repo, &[("README.md", "hi\n")], "init").unwrap();
        let wt = tmp.path().join("work/worktrees/t1");
        let info = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", "HEAD").unwrap();
        assert!(!info.reused);
        assert!(wt.join("README.md").exists());
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 0);
        commit_in(&wt, "a.txt");
        commit_in(&wt, "b.txt");
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 2);
        assert_eq!(files_changed(&wt, &info.base_commit).unwrap(), 2);
        assert_eq!(uncommitted(&wt).unwrap(), 0);
        std::fs::write(wt.join("left-over.txt"), "x").unwrap();
        assert_eq!(uncommitted(&wt).unwrap(), 1);
        assert!(commit_all(&wt, "switchyard: commit left-overs")
            .unwrap()
            .is_some());
        assert_eq!(uncommitted(&wt).unwrap(), 0);
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 3);
        assert_eq!(commit_all(&wt, "nothing").unwrap(), None);
        git_cli(&wt, &["reset", "-q", "--hard", "HEAD~1"]);
        let again = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", &info.base_commit).unwrap();
        assert!(again.reused);
        assert_eq!(again.branch, "fix/issue-1");
        assert_eq!(
            commits_ahead(&wt, &again.base_commit).unwrap(),
            2,
            "work kept"
        );

        let removed = remove_worktrees(&repo, &["t1".into(), "t9".into()]).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!wt.exists());
        let r = Repository::open(&repo).unwrap();
        assert!(r.find_worktree("sy-t1").is_err(), "pruned in git");
        assert!(
            r.find_branch("fix/issue-1", BranchType::Local).is_ok(),
            "branch kept"
        );
        // Recreated on the existing branch from the recorded base, the work is still there.
        let info = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", &info.base_commit).unwrap();
        assert_eq!(commits_ahead(&wt, &info.base_commit).unwrap(), 2);
        // Without a recorded base, an existing branch's commits are not the task's.
        remove_worktrees(&repo, &["t1".into()]).unwrap();
        let fresh = ensure_worktree(&repo, "t1", &wt, "fix/issue-1", "HEAD").unwrap();
        assert_eq!(commits_ahead(&wt, &fresh.base_commit).unwrap(), 0);
    }

    /// Starts run side by side, each on its own branch: worktrees made at the same moment on
    /// one repository (the first ones too, before `.git/worktrees` exists) all come out whole.
    #[test]
    fn worktrees_on_distinct_branches_are_made_side_by_side() {
        for round in 0..4 {
            let tmp = tempfile::tempdir().unwrap();
            let repo = tmp.path().join("repo");
            init_repo_with(
                &repo,
                &[("README.md", "hi\n"), ("src/a.rs", "fn a() {}\n")],
                "init",
            )
            .unwrap();
            let locks = BranchLocks::default();
            let start = std::sync::Barrier::new(12);
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..12)
                    .map(|i| {
                        let (repo, tmp, locks, start) = (&repo, tmp.path(), &locks, &start);
                        s.spawn(move || {
                            let branch = format!("sy/t{i}");
                            start.wait();
                            let turn = locks.turn(&branch);
                            let _held = turn.lock().unwrap();
                            ensure_worktree(
                                repo,
                                &format!("t{i}"),
                                &tmp.join(format!("work/worktrees/t{i}")),
                                &branch,
                                "HEAD",
                            )
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (i, r) in results.iter().enumerate() {
                let info = r
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round}, t{i}: {e}"));
                assert!(info.path.join("src/a.rs").exists());
                assert_eq!(
                    uncommitted(&info.path).unwrap(),
                    0,
                    "t{i} checked out whole"
                );
                let head = Repository::open(&info.path).unwrap();
                assert_eq!(
                    head.head().unwrap().shorthand().ok(),
                    Some(&*format!("sy/t{i}"))
                );
            }
            let r = Repository::open(&repo).unwrap();
            assert_eq!(r.worktrees().unwrap().len(), 12);
        }
    }

    /// Two tasks naming the same branch take turns: one gets the worktree, the other the error
    /// that the branch is checked out elsewhere.
    #[test]
    fn two_starts_on_one_branch_take_turns() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        init_repo_with(&repo, &[("README.md", "hi\n")], "init").unwrap();
        let locks = BranchLocks::default();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let (repo, tmp, locks) = (&repo, tmp.path(), &locks);
                    s.spawn(move || {
                        let turn = locks.turn("shared");
                        let _held = turn.lock().unwrap();
                        ensure_worktree(
                            repo,
                            &format!("t{i}"),
                            &tmp.join(format!("w{i}")),
                            "shared",
                            "HEAD",
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(e.to_string().contains("checked out"), "{e}");
    }

    #[test]
    fn a_repository_without_commits_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        Repository::init(tmp.path()).unwrap();
        let e = ensure_worktree(tmp.path(), "t1", &tmp.path().join("w"), "b", "HEAD").unwrap_err();
        assert!(e.to_string().contains("needs at least one commit"), "{e}");
    }

    #[test]
    fn git_errors_show_control_characters_escaped() {
        let tmp = tempfile::tempdir().unwrap();
        init_repo_with(tmp.path(), &[("a", "a")], "init").unwrap();
        let e = ensure_worktree(tmp.path(), "t1", &tmp.path().join("w"), "b", "\x1b]0;x\x07")
            .unwrap_err()
            .to_string();
        assert!(e.contains("␛]0;x␇") && !e.contains('\x1b'), "{e}");
    }

    #[test]
    fn the_base_is_checked_before_any_task() {
        let tmp = tempfile::tempdir().unwrap();
        Repository::init(tmp.path()).unwrap();
        let e = resolve_base(tmp.path(), "HEAD").unwrap_err().to_string();
        assert!(e.contains("needs at least one commit"), "{e}");
        let id = init_repo_with(tmp.path(), &[("a", "a")], "init").unwrap();
        assert_eq!(resolve_base(tmp.path(), "HEAD").unwrap(), id);
        let e = resolve_base(tmp.path(), "no-such-branch")
            .unwrap_err()
            .to_string();
        assert!(e.contains("set `base` in switchyard.toml"), "{e}");
    }
}
