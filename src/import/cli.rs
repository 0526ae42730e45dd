//! The edge of `switchyard import`: clap arguments, reading inputs, running `gh`, merging into an
//! existing manifest and writing it atomically. Everything that decides is in [`super::gh`],
//! [`super::kiro`] and [`super::merge`].

use super::{gh, kiro, merge, ImportError, Imported, MergeKey};
use crate::core::manifest::Manifest;
use color_eyre::eyre::Result;
use std::ffi::OsStr;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit code for bad input (as everywhere in switchyard).
pub const EXIT_BAD_INPUT: u8 = 3;

/// `switchyard import gh|kiro`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Where the tasks come from.
    #[command(subcommand)]
    pub source: ImportCmd,
}

/// The import sources.
#[derive(Debug, clap::Subcommand)]
pub enum ImportCmd {
    /// Open GitHub issues (via `gh issue list`, or its JSON from a file or stdin) → manifest.
    Gh(GhArgs),
    /// A Kiro spec folder (tasks.md, requirements.md, design.md) → manifest.
    Kiro(KiroArgs),
}

/// `switchyard import gh`.
#[derive(Debug, Clone, clap::Args)]
pub struct GhArgs {
    /// The GitHub repository, OWNER/REPO (passed to gh as --repo; stored as the manifest's repo).
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: Option<String>,
    /// Read the JSON of `gh issue list --state open --json number,title,body,labels` from FILE
    /// ('-' for standard input) instead of running gh.
    #[arg(long, value_name = "FILE|-")]
    pub from: Option<PathBuf>,
    /// Only issues with this label (repeat for several; an issue needs all of them).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// The manifest to write; if it exists, the issues are merged into it.
    #[arg(short, long, value_name = "MANIFEST")]
    pub output: PathBuf,
    /// The checkout that paths in issue bodies are checked against (default: the git repository
    /// containing the manifest).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Map another label to a priority level, e.g. --priority sev1=critical (repeatable).
    /// Levels: critical, high, medium, low.
    #[arg(long = "priority", value_name = "LABEL=LEVEL")]
    pub priorities: Vec<String>,
    /// The priority of issues without a priority label.
    #[arg(long, value_name = "LEVEL", default_value = "medium")]
    pub default_priority: String,
    /// How many issues gh fetches at most (gh's own default is 30).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// A path outside the repository in an issue body is an error instead of a warning.
    #[arg(long)]
    pub strict: bool,
    /// Print the manifest instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `switchyard import kiro`.
#[derive(Debug, Clone, clap::Args)]
pub struct KiroArgs {
    /// The spec folder, e.g. .kiro/specs/user-auth (holding tasks.md, and optionally
    /// requirements.md and design.md).
    pub spec_dir: PathBuf,
    /// The manifest to write; if it exists, the spec's tasks are merged into it.
    #[arg(short, long, value_name = "MANIFEST")]
    pub output: PathBuf,
    /// Task ids are `PREFIX-<number>` (default: the spec folder's name).
    #[arg(long, value_name = "PREFIX")]
    pub id_prefix: Option<String>,
    /// The checkout that backticked file names are checked against (default: the git repository
    /// containing the manifest).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print the manifest instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `program argv…` (never through a shell) and returns its standard output. `path` replaces
/// the child's `PATH` (and so where `program` is looked up) when given. Errors: the program
/// cannot be started, exits non-zero (with the tail of its stderr), or prints non-UTF-8.
pub fn run_gh(
    program: &OsStr,
    argv: &[String],
    path: Option<&OsStr>,
) -> Result<String, ImportError> {
    let mut cmd = Command::new(program);
    cmd.args(argv).stdin(std::process::Stdio::null());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let full: Vec<String> = std::iter::once(program.to_string_lossy().into_owned())
        .chain(argv.iter().cloned())
        .collect();
    let out = cmd.output().map_err(|e| ImportError::Gh {
        argv: full.clone(),
        outcome: format!("could not be started ({e})"),
        stderr: String::new(),
        fix:
            "install the GitHub CLI (https://cli.github.com) and run `gh auth login`, or pass the \
              issues' JSON with --from FILE"
                .into(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(ImportError::Gh {
            argv: full,
            outcome: match out.status.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".into(),
            },
            stderr: super::one_line(&tail.join(" ")),
            fix: "check `gh auth status` and the --repo OWNER/REPO, or pass the issues' JSON with --from FILE".into(),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| ImportError::Gh {
        argv: full,
        outcome: "printed output that is not UTF-8".into(),
        stderr: String::new(),
        fix: "pass the issues' JSON with --from FILE".into(),
    })
}

/// The checkout to check paths against: `root`, else the git work tree containing `near`'s
/// directory, else that directory.
fn checkout(root: Option<&Path>, near: &Path) -> PathBuf {
    if let Some(r) = root {
        return r.to_path_buf();
    }
    let dir = match near.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    git2::Repository::discover(&dir)
        .ok()
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or(dir)
}

fn read(path: &Path, fix: &str) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
        fix: fix.to_string(),
    })
}

/// Loads the manifest at `path` if it exists (to merge into).
fn existing(path: &Path) -> Result<Option<Manifest>, ImportError> {
    if !path.exists() {
        return Ok(None);
    }
    Manifest::load(path)
        .map(Some)
        .map_err(|e| ImportError::Invalid {
            file: path.display().to_string(),
            place: "manifest".into(),
            message: format!("the manifest to merge into cannot be used: {e}"),
            fix: "correct it, or write the import to another file with -o".into(),
        })
}

/// Does the whole gh import without writing: reads the JSON (from `--from`, or from `run`, which
/// is given gh's argv), parses, infers, merges into the existing manifest at `-o`. `now` is the
/// RFC 3339 creation time for a new manifest.
pub fn import_gh(
    args: &GhArgs,
    run: &dyn Fn(&[String]) -> Result<String, ImportError>,
    now: &str,
) -> Result<Imported, ImportError> {
    let (text, file) = match &args.from {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|source| ImportError::Io {
                path: PathBuf::from("<stdin>"),
                action: "read",
                source,
                fix: "pipe the JSON of `gh issue list --state open --json number,title,body,labels` in".into(),
            })?;
            (s, "<stdin>".to_string())
        }
        Some(p) => (
            read(p, "name the file holding `gh issue list --state open --json number,title,body,labels` output")?,
            p.display().to_string(),
        ),
        None => {
            let argv = gh::gh_argv(args.repo.as_deref(), &args.labels, args.limit);
            let text = run(&argv)?;
            (text, format!("output of `gh {}`", argv.join(" ")))
        }
    };
    let issues = gh::parse_issues(&text, &file)?;
    let mut priorities = gh::PriorityMap::default();
    let bad_flag = |flag: &str, message: String, fix: &str| ImportError::Invalid {
        file: "command line".into(),
        place: flag.to_string(),
        message,
        fix: fix.to_string(),
    };
    for p in &args.priorities {
        let (label, level) = p.split_once('=').ok_or_else(|| {
            bad_flag(
                "--priority",
                format!("{p:?} is not LABEL=LEVEL"),
                "write e.g. --priority sev1=critical",
            )
        })?;
        priorities
            .add(label, level)
            .map_err(|m| bad_flag("--priority", m, "use one of the levels"))?;
    }
    priorities
        .set_default(&args.default_priority)
        .map_err(|m| bad_flag("--default-priority", m, "use one of the levels"))?;
    let root = checkout(args.root.as_deref(), &args.output);
    let exists = |p: &str| root.join(p).is_file();
    let project = args
        .repo
        .as_deref()
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
        .or_else(|| {
            root.canonicalize()
                .ok()
                .and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    let opts = gh::GhOptions {
        priorities,
        labels: args.labels.clone(),
        project,
        repo: args.repo.clone(),
        created: Some(now.to_string()),
        strict: args.strict,
    };
    let fresh = gh::import(&issues, &opts, &file, &exists)?;
    match existing(&args.output)? {
        Some(m) => merge(m, fresh, &MergeKey::Issue, &file),
        None => Ok(fresh),
    }
}

/// Does the whole Kiro import without writing.
pub fn import_kiro(args: &KiroArgs, now: &str) -> Result<Imported, ImportError> {
    let dir = &args.spec_dir;
    let tasks_path = dir.join("tasks.md");
    if !dir.is_dir() {
        return Err(ImportError::Invalid {
            file: dir.display().to_string(),
            place: "spec folder".into(),
            message: "is not a folder".into(),
            fix: "pass a Kiro spec folder, e.g. .kiro/specs/<feature>".into(),
        });
    }
    let tasks_md = read(
        &tasks_path,
        "a Kiro spec folder holds tasks.md (with requirements.md and design.md); pass the folder, \
         e.g. .kiro/specs/<feature>, or let Kiro generate the task list first",
    )?;
    let optional = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let requirements = optional("requirements.md");
    let design = optional("design.md");
    let name = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "spec".into());
    let label = dir.display().to_string();
    let spec = kiro::Spec {
        name: &name,
        dir: &label,
        tasks_md: &tasks_md,
        requirements_md: requirements.as_deref(),
        design_md: design.as_deref(),
    };
    let root = checkout(args.root.as_deref(), &args.output);
    let exists = |p: &str| root.join(p).is_file();
    let opts = kiro::KiroOptions {
        id_prefix: args.id_prefix.clone(),
        project: None,
        created: Some(now.to_string()),
    };
    let fresh = kiro::import(&spec, &opts, &exists)?;
    let prefix = format!(
        "{}-",
        args.id_prefix.clone().unwrap_or_else(|| kiro::slug(&name))
    );
    match existing(&args.output)? {
        Some(m) => merge(
            m,
            fresh,
            &MergeKey::Id(prefix),
            &tasks_path.display().to_string(),
        ),
        None => Ok(fresh),
    }
}

/// Runs `switchyard import`: prints what was inferred and why, then writes the manifest
/// atomically (or prints it with --dry-run). Returns 0, or 3 after printing the error for bad
/// input (including gh failing); nothing is written then.
pub fn cli(args: ImportArgs) -> Result<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (result, output, dry_run) = match &args.source {
        ImportCmd::Gh(a) => (
            import_gh(a, &|argv| run_gh(OsStr::new("gh"), argv, None), &now),
            &a.output,
            a.dry_run,
        ),
        ImportCmd::Kiro(a) => (import_kiro(a, &now), &a.output, a.dry_run),
    };
    let imported = match result {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let m = &imported.manifest;
    let summary = format!(
        "{} tasks in {} phases ({} complete)",
        m.tasks().count(),
        m.phases.len(),
        m.tasks().filter(|t| t.status.is_done()).count()
    );
    if dry_run {
        for n in &imported.notes {
            eprintln!("  {n}");
        }
        print!("{}", m.to_json());
        eprintln!("dry run: {summary}; nothing written");
        return Ok(0);
    }
    println!("What was inferred and why:");
    for n in &imported.notes {
        println!("  {n}");
    }
    if let Err(e) = m.save(output) {
        eprintln!("error: {e}. Fix: choose a writable -o path");
        return Ok(EXIT_BAD_INPUT);
    }
    println!(
        "wrote {}: {summary}; check it with `switchyard plan {}`",
        output.display(),
        output.display()
    );
    Ok(0)
}
