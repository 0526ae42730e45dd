//! The `switchyard` command line.

use clap::{Parser, Subcommand};
use color_eyre::eyre::{eyre, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchyard::{demo, fake_agent, git, headless, manifest::Manifest, plan::Plan, runtime, ui};

/// Exit code for bad input (manifest, config or arguments) — nothing was run.
const EXIT_BAD_INPUT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A terminal control room for running many AI coding agents in parallel on one repository",
    after_help = "Exit codes: 0 all tasks complete · 1 halted or failed · 2 a task needs a person · 3 bad input"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a manifest in the control room (or headless with --headless); resumes where it stopped.
    Run {
        /// The manifest (JSON, seed orchestrator format).
        manifest: PathBuf,
        /// Print a line per event instead of opening the control room.
        #[arg(long)]
        headless: bool,
        /// The git repository to work on (default: the one containing the manifest).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Most workers at once (overrides the config's max_parallel).
        #[arg(long)]
        max_parallel: Option<usize>,
    },
    /// Print the plan (batches, what waits for what, critical path) and every problem; runs nothing.
    Plan {
        /// The manifest.
        manifest: PathBuf,
        /// Most workers at once, for the batch notes (default: from the config).
        #[arg(long)]
        max_parallel: Option<usize>,
    },
    /// Make a throwaway repository with demo tasks run by a scripted fake agent, and run it.
    Demo {
        /// Run without the control room, a line per event (exit codes as for `run`).
        #[arg(long)]
        headless: bool,
        /// Where to create the demo (an empty or new directory; default: a new temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Pace of the fake agent's pauses (2.0 = twice as slow, 0.5 = twice as fast); default 2
        /// in the control room, so there is time to watch, and 1 headless.
        #[arg(long)]
        pace: Option<f64>,
    },
    /// Show each task's status from the manifest.
    Status {
        /// The manifest.
        manifest: PathBuf,
    },
    /// Remove the worktrees switchyard made for this manifest (branches and logs are kept).
    Clean {
        /// The manifest.
        manifest: PathBuf,
        /// The git repository (default: the one containing the manifest).
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Replay a recorded session (raw bytes, optionally with timing) through the emulator and
    /// classifier, and print the verdict timeline with evidence and the final verdict.
    Classify {
        /// The recording: NAME.bytes (NAME.timing.jsonl and NAME.meta.json are used when present),
        /// or any file of raw terminal output (then all bytes arrive at once).
        recording: PathBuf,
        /// The agent profile whose rules to use.
        #[arg(long, default_value = "codex")]
        profile: String,
        /// A switchyard.toml to layer over the defaults (and the user config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long to keep classifying after the last byte, ms (lets quiet and hold times pass).
        #[arg(long, default_value_t = 10_000)]
        settle_ms: u64,
        /// Also print the seed orchestrator's three-regex verdict, for comparison.
        #[arg(long)]
        seed: bool,
    },
    /// The scripted fake coding agent the demo runs (a real program in a PTY).
    #[command(hide = true)]
    FakeAgent {
        /// normal, asks, flaky, stalls or tui.
        #[arg(long, default_value = "normal")]
        scenario: fake_agent::Scenario,
        /// Multiplier on every pause (0 = no pauses).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// The task prompt.
        #[arg(default_value = "")]
        prompt: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Cmd::FakeAgent {
        scenario,
        speed,
        prompt,
    } = cli.command
    {
        let code = fake_agent::run(&fake_agent::FakeAgentArgs {
            scenario,
            prompt,
            speed,
        });
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let _ = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install();
    init_tracing();
    match real_main(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn init_tracing() {
    // Logs go to a file only when asked for (SWITCHYARD_LOG=debug and SWITCHYARD_LOG_FILE=path):
    // the terminal belongs to the control room.
    let Ok(path) = std::env::var("SWITCHYARD_LOG_FILE") else {
        return;
    };
    if let Ok(file) = std::fs::File::create(path) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SWITCHYARD_LOG"))
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
}

fn real_main(cmd: Cmd) -> Result<u8> {
    match cmd {
        Cmd::Run {
            manifest,
            headless,
            repo,
            max_parallel,
        } => run(&manifest, repo.as_deref(), max_parallel, headless),
        Cmd::Plan {
            manifest,
            max_parallel,
        } => plan(&manifest, max_parallel),
        Cmd::Demo {
            headless,
            dir,
            pace,
        } => {
            let dir = match dir {
                Some(d) => d,
                None => tempfile::Builder::new()
                    .prefix("switchyard-demo-")
                    .tempdir()?
                    .keep(),
            };
            let pace = pace.unwrap_or(if headless { 1.0 } else { 2.0 });
            let manifest = demo::create(&dir, pace)?;
            eprintln!(
                "switchyard demo in {} — re-run or resume with: switchyard run {}",
                dir.display(),
                manifest.display()
            );
            run(&manifest, None, None, headless)
        }
        Cmd::Status { manifest } => status(&manifest),
        Cmd::Classify {
            recording,
            profile,
            config,
            settle_ms,
            seed,
        } => classify(&recording, &profile, config.as_deref(), settle_ms, seed),
        Cmd::Clean { manifest, repo } => clean(&manifest, repo.as_deref()),
        Cmd::FakeAgent { .. } => unreachable!("handled before the runtime starts"),
    }
}

fn run(
    manifest: &Path,
    repo: Option<&Path>,
    max_parallel: Option<usize>,
    headless: bool,
) -> Result<u8> {
    let mut rt = runtime::Runtime::open(manifest, repo, max_parallel)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = if headless {
        tokio.block_on(headless::run(&mut rt))
    } else {
        tokio.block_on(ui::run(&mut rt))?
    };
    Ok(code as u8)
}

fn plan(manifest_path: &Path, max_parallel: Option<usize>) -> Result<u8> {
    let manifest = match Manifest::load(manifest_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let max = match max_parallel {
        Some(n) => n,
        None => switchyard::config::Config::load_for(manifest_path)
            .map(|(c, _)| c.max_parallel)
            .map_err(|e| eyre!("{e}"))?,
    };
    match Plan::build(&manifest) {
        Ok(plan) => {
            print!("{}", plan.render(&manifest.project, max));
            Ok(0)
        }
        Err(problems) => {
            eprintln!(
                "{}",
                switchyard::manifest::ManifestError::Invalid {
                    path: manifest_path.to_path_buf(),
                    problems
                }
            );
            Ok(EXIT_BAD_INPUT)
        }
    }
}

fn status(manifest_path: &Path) -> Result<u8> {
    let manifest = Manifest::load(manifest_path).map_err(|e| eyre!("{e}"))?;
    println!(
        "{}",
        if manifest.project.is_empty() {
            "(unnamed project)"
        } else {
            &manifest.project
        }
    );
    for phase in &manifest.phases {
        println!("{}", phase.name);
        for t in &phase.tasks {
            println!(
                "  {:<10} {:<16} attempts {:<2} {}{}",
                t.id,
                t.status.as_str(),
                t.attempts.unwrap_or(0),
                t.title,
                t.last_verdict
                    .as_deref()
                    .filter(|_| !t.status.is_done())
                    .map(|v| format!("  ← {v}"))
                    .unwrap_or_default()
            );
        }
    }
    let done = manifest.tasks().filter(|t| t.status.is_done()).count();
    println!("complete {done}/{}", manifest.tasks().count());
    Ok(0)
}

fn classify(
    recording: &Path,
    profile: &str,
    config: Option<&Path>,
    settle_ms: u64,
    seed: bool,
) -> Result<u8> {
    let anchor = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/nonexistent/switchyard.toml"));
    let (config, files) =
        switchyard::config::Config::load_for(&anchor).map_err(|e| eyre!("{e}"))?;
    let compiled = config.compile().map_err(|e| eyre!("{e}"))?;
    let Some(rules) = compiled.rules.get(profile) else {
        return Err(eyre!(
            "no agent profile {profile:?}; profiles: {} (config: {})",
            compiled
                .rules
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let rec = switchyard::replay::Recording::load(recording).map_err(|e| eyre!("{e}"))?;
    let steps = switchyard::replay::replay(&rec, rules, config.heal.stall_ms, settle_ms);
    println!(
        "{} — {} chunks over {:.1}s, {}x{}, profile {profile}",
        recording.display(),
        rec.chunks.len(),
        rec.end_ms() as f64 / 1000.0,
        rec.cols,
        rec.rows
    );
    print!("{}", switchyard::replay::render(&steps));
    if seed {
        println!(
            "seed regexes: {}",
            switchyard::replay::seed_classify(&rec).label()
        );
    }
    Ok(0)
}

fn clean(manifest_path: &Path, repo: Option<&Path>) -> Result<u8> {
    let manifest = Manifest::load(manifest_path).map_err(|e| eyre!("{e}"))?;
    let paths = runtime::Paths::resolve(manifest_path, &manifest, repo)?;
    let ids: Vec<String> = manifest.tasks().map(|t| t.id.clone()).collect();
    let removed = git::remove_worktrees(&paths.repo, &ids)?;
    for p in &removed {
        println!("removed worktree {}", p.display());
    }
    println!(
        "{} worktree(s) removed; branches and logs ({}) are kept",
        removed.len(),
        paths.logs.display()
    );
    Ok(0)
}
