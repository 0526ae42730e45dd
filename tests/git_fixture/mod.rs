//! One builder for the git fixtures of the `tests/git_*.rs` tests: a real repository in a temp
//! dir, commits made on any branch without checking it out (git2, in memory), a bare remote.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

use git2::{Oid, Repository};
use std::path::{Path, PathBuf};

/// A repository in a temp dir with `main` checked out and one commit.
pub struct Fixture {
    /// Holds the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// The repository's working-tree root.
    pub repo: PathBuf,
}

impl Fixture {
    /// A repository with `files` committed on `main` (checked out, clean).
    pub fn new(files: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        switchyard::host::git::init_repo_with(&repo, files, "init").unwrap();
        Fixture { tmp, repo }
    }

    /// The git2 handle.
    pub fn git(&self) -> Repository {
        Repository::open(&self.repo).unwrap()
    }

    /// Creates `branch` at `start` (a revision).
    pub fn branch(&self, branch: &str, start: &str) {
        let r = self.git();
        let c = r.revparse_single(start).unwrap().peel_to_commit().unwrap();
        r.branch(branch, &c, false).unwrap();
    }

    /// Commits on `branch` (created from `main` when missing) the given files (`None` deletes),
    /// without touching any checkout. Returns the commit id.
    pub fn commit(&self, branch: &str, files: &[(&str, Option<&str>)], msg: &str) -> Oid {
        let r = self.git();
        let refname = format!("refs/heads/{branch}");
        if r.find_reference(&refname).is_err() {
            self.branch(branch, "main");
        }
        let parent = r
            .find_reference(&refname)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let mut index = git2::Index::new().unwrap();
        index.read_tree(&parent.tree().unwrap()).unwrap();
        for (path, content) in files {
            match content {
                Some(text) => {
                    let id = r.blob(text.as_bytes()).unwrap();
                    index.add(&entry(path, id, text.len())).unwrap();
                }
                None => index.remove_path(Path::new(path)).unwrap(),
            }
        }
        let tree = r.find_tree(index.write_tree_to(&r).unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        r.commit(Some(&refname), &sig, &sig, msg, &tree, &[&parent])
            .unwrap()
    }

    /// The tip of a branch.
    pub fn tip(&self, branch: &str) -> Oid {
        self.git()
            .refname_to_id(&format!("refs/heads/{branch}"))
            .unwrap()
    }

    /// A file's content at a revision, or `None` when absent.
    pub fn read(&self, rev: &str, path: &str) -> Option<String> {
        let r = self.git();
        let tree = r.revparse_single(rev).unwrap().peel_to_tree().unwrap();
        let e = tree.get_path(Path::new(path)).ok()?;
        let blob = r.find_blob(e.id()).unwrap();
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    }

    /// A bare repository in the temp dir, added as remote `origin`. Returns its path.
    pub fn bare_remote(&self) -> PathBuf {
        let bare = self.tmp.path().join("remote.git");
        Repository::init_bare(&bare).unwrap();
        self.git().remote("origin", bare.to_str().unwrap()).unwrap();
        bare
    }

    /// Runs the git CLI in `dir` (identity and signing fixed); asserts success, returns stdout.
    pub fn git_cli(&self, dir: &Path, args: &[&str]) -> String {
        common::git(dir, args)
    }
}

fn entry(path: &str, id: Oid, len: usize) -> git2::IndexEntry {
    git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        file_size: len as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// `n` numbered lines `prefix1\n..prefixN\n`.
pub fn lines(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix}{i}\n")).collect()
}
