//! The `switchyard` command line.

use clap::{Parser, Subcommand};
use color_eyre::eyre::{eyre, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchyard::server::client::{self, ClientError, Joined, StartArgs};
use switchyard::server::files::{Probe, ServerFiles};
use switchyard::server::protocol::Role;
use switchyard::{
    core::manifest::Manifest, core::plan::Plan, demo, fake_agent, host::git, host::runtime, ui,
};

/// Exit code for bad input (manifest, config or arguments) — nothing was run.
const EXIT_BAD_INPUT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A terminal control room for running many AI coding agents in parallel on one repository",
    after_help = "Exit codes: 0 all tasks complete · 1 halted or failed · 2 a task needs a person · 3 bad input\n\nA run lives in a background server per manifest: `run` starts it (or joins it) and opens the control room; `D` detaches, `attach` returns, `ls` lists, `ctl` acts, `stop` ends."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start (or join) the manifest's server and open the control room (or, with --headless, print
    /// a line per event); resumes where an earlier run stopped.
    Run {
        /// The manifest (JSON, seed orchestrator format).
        manifest: PathBuf,
        /// Print a line per event and the summary instead of opening the control room; exits
        /// with the run's code when it settles.
        #[arg(long)]
        headless: bool,
        /// Keep the whole run in this process (no background server; for CI and containers):
        /// leaving the control room, or the headless run ending, stops it.
        #[arg(long)]
        foreground: bool,
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
        /// Keep the whole run in this process (as `run --foreground`).
        #[arg(long)]
        foreground: bool,
        /// Where to create the demo (an empty or new directory; default: a new temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Pace of the fake agent's pauses (2.0 = twice as slow, 0.5 = twice as fast); default 2
        /// in the control room, so there is time to watch, and 1 headless.
        #[arg(long)]
        pace: Option<f64>,
    },
    /// Show each task's status: the live server's view (verdicts with evidence, workers) when
    /// one runs, the manifest's otherwise.
    Status {
        /// The manifest.
        manifest: PathBuf,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Why a task's verdict is what it is: each channel's latest word (agent state, title,
    /// terminal read, screen rules, timing), the verdict and why it won, the heal ladders.
    Explain {
        /// The manifest.
        manifest: PathBuf,
        /// The task id.
        task: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check this machine for switchyard: each agent profile's CLI (installed? which version,
    /// and does it match the version its rules were checked against?), git, and the
    /// terminal-read channel.
    Doctor {
        /// A manifest whose switchyard.toml to use (default: the defaults and your user config).
        manifest: Option<PathBuf>,
    },
    /// Reopen the control room of a running server (without MANIFEST: the only live one, or a
    /// list to pick from).
    Attach {
        /// The manifest.
        manifest: Option<PathBuf>,
    },
    /// List the live servers: manifest, pid, uptime, tasks per status.
    Ls,
    /// Send an action to a running server, e.g. `ctl run.json retry t3`,
    /// `ctl run.json answer t3 y`, `ctl run.json nudge t3 "use the new API"`.
    #[command(after_help = ctl_help())]
    Ctl {
        /// The manifest.
        manifest: PathBuf,
        /// The action (see below).
        action: String,
        /// TASK id, then TEXT (or an agent name, or a number), as the action needs.
        args: Vec<String>,
    },
    /// End a running server's run cleanly: workers stop, running tasks stay `running` to resume.
    Stop {
        /// The manifest.
        manifest: PathBuf,
    },
    /// Make or update a manifest from open GitHub issues or a Kiro spec; prints what it inferred.
    Import(switchyard::import::ImportArgs),
    /// Write a Markdown progress report of a manifest (standard output, or -o FILE).
    Report(switchyard::report::ReportArgs),
    /// Hands an agent's own event (JSON on stdin, or as the last argument: codex's notify) to
    /// the run's server; used by the channels switchyard configures (`{claude_settings}`,
    /// `{gemini_home}`, codex's `-c notify=[...]`); for gemini's AfterAgent it also keeps the
    /// answer in `$SWITCHYARD_FINAL_MESSAGE`. Never fails and never waits long: the
    /// agent must not be held up by its supervisor (a permission decision waits at most 3 s).
    #[command(hide = true)]
    Hook {
        /// Whose event it is: claude (default), codex, gemini or opencode.
        #[arg(long)]
        agent: Option<String>,
        /// The event's JSON (codex passes it as an argument); else read from stdin.
        event: Option<String>,
    },
    /// The server process of a run (started by `run`; not for people).
    #[command(hide = true)]
    Serve {
        /// The manifest.
        manifest: PathBuf,
        /// The git repository.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Most workers at once.
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Started for a headless run.
        #[arg(long)]
        headless: bool,
    },
    /// Remove the worktrees switchyard made for this manifest, and the task branches whose
    /// commits are safe elsewhere (in the integration branch, the base or a remote). A worktree
    /// with uncommitted changes, and a branch with commits nowhere else, are kept (and listed,
    /// with why) unless --force. Logs are always kept.
    Clean {
        /// The manifest.
        manifest: PathBuf,
        /// The git repository (default: the one containing the manifest).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Also remove worktrees holding uncommitted changes (they are lost) and branches with
        /// commits nowhere else (their tips are printed, to recover with `git branch`).
        #[arg(long)]
        force: bool,
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
        /// Also write the final message to this file (like codex exec --output-last-message).
        #[arg(long)]
        final_message: Option<std::path::PathBuf>,
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
        final_message,
        prompt,
    } = cli.command
    {
        let code = fake_agent::run(&fake_agent::FakeAgentArgs {
            scenario,
            prompt,
            speed,
            final_message,
        });
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let _ = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install();
    if let Cmd::Hook { agent, event } = &cli.command {
        if let Some(out) = hook(agent.as_deref(), event.as_deref()) {
            println!("{out}");
        }
        return ExitCode::SUCCESS;
    }
    if let Cmd::Serve {
        manifest,
        repo,
        max_parallel,
        headless,
    } = cli.command
    {
        return ExitCode::from(serve(&manifest, repo.as_deref(), max_parallel, headless));
    }
    init_tracing();
    if matches!(
        cli.command,
        Cmd::Plan { .. } | Cmd::Status { .. } | Cmd::Ls | Cmd::Classify { .. }
    ) {
        // Commands that only print die quietly when their reader goes away (`| head`), as
        // Unix tools do; the others talk on sockets and keep SIGPIPE ignored.
        // SAFETY: restoring a signal's default disposition touches no memory.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
            foreground,
            repo,
            max_parallel,
        } => run(
            &manifest,
            repo.as_deref(),
            max_parallel,
            headless,
            foreground,
        ),
        Cmd::Plan {
            manifest,
            max_parallel,
        } => plan(&manifest, max_parallel),
        Cmd::Demo {
            headless,
            foreground,
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
                "imported the demo's GitHub issues (assets/demo-issues.json) with the gh importer; what it inferred and why: {}",
                dir.join(demo::IMPORT_NOTES).display()
            );
            eprintln!(
                "switchyard demo in {} — re-run or resume with: switchyard run {}",
                dir.display(),
                manifest.display()
            );
            run(&manifest, None, None, headless, foreground)
        }
        Cmd::Status { manifest, json } => status(&manifest, json),
        Cmd::Attach { manifest } => attach(manifest.as_deref()),
        Cmd::Explain {
            manifest,
            task,
            json,
        } => explain(&manifest, &task, json),
        Cmd::Doctor { manifest } => doctor(manifest.as_deref()),
        Cmd::Ls => ls(),
        Cmd::Ctl {
            manifest,
            action,
            args,
        } => ctl(&manifest, &action, &args),
        Cmd::Stop { manifest } => stop(&manifest),
        Cmd::Import(args) => switchyard::import::cli(args),
        Cmd::Report(args) => switchyard::report::cli(args),
        Cmd::Classify {
            recording,
            profile,
            config,
            settle_ms,
            seed,
        } => classify(&recording, &profile, config.as_deref(), settle_ms, seed),
        Cmd::Clean {
            manifest,
            repo,
            force,
        } => clean(&manifest, repo.as_deref(), force),
        Cmd::FakeAgent { .. } | Cmd::Serve { .. } | Cmd::Hook { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

fn tokio_rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The server files of a manifest (loads it to find its workdir). Bad input is an error here.
fn server_files(manifest: &Path, repo: Option<&Path>) -> Result<ServerFiles> {
    let m = Manifest::load(manifest).map_err(|e| eyre!("{e}"))?;
    let paths = runtime::Paths::resolve(manifest, &m, repo)?;
    Ok(ServerFiles::new(&paths.manifest, &paths.workdir))
}

fn terminal_size() -> (u16, u16) {
    crossterm::terminal::size()
        .map(|(c, r)| (r, c))
        .unwrap_or((24, 80))
}

fn run(
    manifest: &Path,
    repo: Option<&Path>,
    max_parallel: Option<usize>,
    headless: bool,
    foreground: bool,
) -> Result<u8> {
    // Everything is checked here first, so bad input is exit 3 on this terminal, not a line in
    // a background server's log.
    let (m, _, config, _) = runtime::load(manifest)?;
    let paths = runtime::Paths::resolve(manifest, &m, repo)?;
    git::resolve_base(&paths.repo, &config.base).map_err(|e| {
        eyre!("{e}; set `base` in switchyard.toml to a branch or commit that exists (the repository needs at least one commit)")
    })?;
    let files = ServerFiles::new(&paths.manifest, &paths.workdir);
    let role = if headless {
        Role::Headless
    } else {
        let (rows, cols) = terminal_size();
        Role::ControlRoom { rows, cols }
    };
    let tokio = tokio_rt()?;
    if foreground {
        return run_foreground(&tokio, manifest, repo, max_parallel, headless, files, role);
    }
    let args = StartArgs {
        repo: repo.map(Path::to_path_buf),
        max_parallel,
        headless,
    };
    let code = tokio.block_on(async {
        let (conn, joined) = match client::ensure_server(&files, &args, role).await {
            Ok(x) => x,
            Err(e) => return Err(eyre!("{e}")),
        };
        if let Joined::Existing(pid) = joined {
            eprintln!(
                "switchyard: joined the run already going for {} (server pid {pid})",
                files.manifest.display()
            );
        }
        if headless {
            return Ok(client::headless(conn, &files).await);
        }
        let end = ui::run_client(conn).await?;
        println!("{}", switchyard::core::text::escape_lines(&end.reason));
        Ok(end.code.unwrap_or(0))
    })?;
    Ok(code as u8)
}

/// `--foreground`: the server loop on a thread of this process, and the client beside it on
/// the same socket (so `ctl`, `status` and other clients work as usual). The run ends with its
/// first client.
fn run_foreground(
    tokio: &tokio::runtime::Runtime,
    manifest: &Path,
    repo: Option<&Path>,
    max_parallel: Option<usize>,
    headless: bool,
    files: ServerFiles,
    role: Role,
) -> Result<u8> {
    let (rt, listener, lock) = tokio
        .block_on(async { open_server(manifest, repo, max_parallel, &files) })
        .map_err(|e| eyre!("{e}"))?;
    let opts = switchyard::server::ServeOptions {
        headless,
        foreground: true,
    };
    let server_files = files.clone();
    // The server task owns the lock: it is released the moment the server ends, so the client
    // (which waits for that before it returns) does not wait out its 5 s limit.
    let server = tokio.spawn(async move {
        let code = switchyard::server::serve(rt, server_files, listener, opts).await;
        drop(lock);
        code
    });
    let code = tokio.block_on(async {
        let conn = client::connect(&files.socket, &files.manifest.display().to_string(), role)
            .await
            .map_err(|e| eyre!("{e}"))?;
        let client_code = if headless {
            client::headless(conn, &files).await
        } else {
            let end = ui::run_client(conn).await?;
            println!("{}", switchyard::core::text::escape_lines(&end.reason));
            end.code.unwrap_or(0)
        };
        let code = server.await.unwrap_or(client_code);
        Ok::<i32, color_eyre::Report>(if headless { client_code } else { code })
    })?;
    Ok(code as u8)
}

/// What a server needs before its loop: the lock (or an error naming who holds it), the
/// runtime over the manifest, the bound socket and the registry entry. A stale lock or socket
/// is reported in one line and replaced.
fn open_server(
    manifest: &Path,
    repo: Option<&Path>,
    max_parallel: Option<usize>,
    files: &ServerFiles,
) -> Result<
    (
        runtime::Runtime,
        tokio::net::UnixListener,
        switchyard::server::files::ServerLock,
    ),
    String,
> {
    if let Probe::Stale(info) = files.probe() {
        eprintln!("{}", client::stale_line(info.as_ref(), files));
    }
    let info = switchyard::server::info(files);
    let lock = files.acquire(&info).map_err(|e| e.to_string())?;
    let mut rt =
        runtime::Runtime::open(manifest, repo, max_parallel).map_err(|e| format!("{e:#}"))?;
    // The listener registers with the reactor of the tokio runtime this runs in.
    let listener = switchyard::server::bind(files)
        .map_err(|e| format!("cannot listen on {}: {e}", files.socket.display()))?;
    rt.socket = Some(files.socket.clone());
    files.register(&info);
    Ok((rt, listener, lock))
}

/// `switchyard serve`: the background server of `run`. Its stdout and stderr are the log.
fn serve(manifest: &Path, repo: Option<&Path>, max_parallel: Option<usize>, headless: bool) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let files = match server_files(manifest, repo) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_BAD_INPUT;
        }
    };
    let tokio = match tokio_rt() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let opened = tokio.block_on(async { open_server(manifest, repo, max_parallel, &files) });
    let (rt, listener, _lock) = match opened {
        Ok(x) => x,
        Err(e) if e.contains("already runs") => {
            eprintln!("{e}");
            return switchyard::server::EXIT_LOCK_HELD as u8;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let opts = switchyard::server::ServeOptions {
        headless,
        foreground: false,
    };
    let code = tokio.block_on(switchyard::server::serve(rt, files, listener, opts));
    code.clamp(0, 255) as u8
}

fn attach(manifest: Option<&Path>) -> Result<u8> {
    let tokio = tokio_rt()?;
    let (rows, cols) = terminal_size();
    let role = Role::ControlRoom { rows, cols };
    tokio.block_on(async {
        let files = match manifest {
            Some(m) => server_files(m, None)?,
            None => {
                let live = client::list().await;
                let pick = match live.len() {
                    0 => {
                        eprintln!(
                            "no switchyard server runs; `switchyard run MANIFEST` starts one"
                        );
                        return Ok(1);
                    }
                    1 => 0,
                    _ => match pick_server(&live) {
                        Some(i) => i,
                        None => return Ok(1),
                    },
                };
                server_files(&live[pick].info.manifest, None)?
            }
        };
        let conn = match client::connect_live(&files, role).await {
            Ok(c) => c,
            Err(e @ ClientError::NoServer { .. }) => {
                eprintln!("{e}");
                return Ok(1);
            }
            Err(e) => return Err(eyre!("{e}")),
        };
        let end = ui::run_client(conn).await?;
        println!("{}", switchyard::core::text::escape_lines(&end.reason));
        Ok(end.code.unwrap_or(0) as u8)
    })
}

/// Asks which of several live servers to attach to (on a terminal); None without an answer.
fn pick_server(live: &[client::Listed]) -> Option<usize> {
    use std::io::IsTerminal;
    let now = switchyard::host::worker::now_ms();
    eprintln!("several switchyard servers run:");
    for (i, l) in live.iter().enumerate() {
        eprintln!("  {}  {}", i + 1, client::ls_line(l, now));
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("name one: `switchyard attach MANIFEST`");
        return None;
    }
    eprint!("attach to which (1-{})? ", live.len());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    match line.trim().parse::<usize>() {
        Ok(n) if (1..=live.len()).contains(&n) => Some(n - 1),
        _ => {
            eprintln!("no server picked");
            None
        }
    }
}

fn ls() -> Result<u8> {
    let tokio = tokio_rt()?;
    let live = tokio.block_on(client::list());
    if live.is_empty() {
        println!("no switchyard server runs");
        return Ok(0);
    }
    let now = switchyard::host::worker::now_ms();
    for l in &live {
        println!("{}", client::ls_line(l, now));
    }
    Ok(0)
}

fn ctl(manifest: &Path, action: &str, args: &[String]) -> Result<u8> {
    let action = match switchyard::core::action::Action::parse(action, args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let files = server_files(manifest, None)?;
    let tokio = tokio_rt()?;
    match tokio.block_on(client::act(&files, action)) {
        Ok((true, message)) => {
            println!("{}", switchyard::core::text::escape_control(&message));
            Ok(0)
        }
        Ok((false, message)) => {
            eprintln!(
                "switchyard ctl: {}",
                switchyard::core::text::escape_control(&message)
            );
            Ok(1)
        }
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            Ok(1)
        }
    }
}

fn stop(manifest: &Path) -> Result<u8> {
    let files = server_files(manifest, None)?;
    let tokio = tokio_rt()?;
    match tokio.block_on(client::stop(&files)) {
        Ok(code) => {
            println!("{}", client::ended_line(code));
            Ok(0)
        }
        Err(e) => {
            eprintln!("switchyard stop: {e}");
            Ok(1)
        }
    }
}

fn explain(manifest: &Path, task: &str, json: bool) -> Result<u8> {
    let m = Manifest::load(manifest).map_err(|e| eyre!("{e}"))?;
    if m.task(task).is_none() {
        eprintln!(
            "no task {:?} in {}",
            switchyard::core::text::escape_control(task),
            manifest.display()
        );
        return Ok(1);
    }
    let files = server_files(manifest, None)?;
    let tokio = tokio_rt()?;
    let live = match files.probe() {
        Probe::Live(_) => tokio.block_on(client::explain(&files, task)).ok(),
        _ => None,
    };
    match live {
        Some(Ok(x)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&x)?);
            } else {
                print!("{}", x.render());
            }
            Ok(0)
        }
        Some(Err(message)) => {
            eprintln!("{}", switchyard::core::text::escape_control(&message));
            Ok(1)
        }
        None => {
            // No server: what the manifest and the journal remember.
            let t = m.task(task).expect("checked above");
            let paths = runtime::Paths::resolve(manifest, &m, None)?;
            let journal = switchyard::host::journal::read_journal(&paths.logs.join("events.jsonl"))
                .map(|j| j.entries)
                .unwrap_or_default();
            let esc = |s: &str| switchyard::core::text::escape_control(s).into_owned();
            println!(
                "{} — {} (no server runs; from the manifest and the journal)",
                esc(&t.id),
                t.status.as_str()
            );
            println!(
                "last verdict: {}",
                esc(t.last_verdict.as_deref().unwrap_or("—"))
            );
            let mine: Vec<&serde_json::Value> = journal
                .iter()
                .filter(|e| e["task"].as_str() == Some(task))
                .collect();
            for e in mine.iter().rev().take(10).rev() {
                println!(
                    "  {} {:<8} {}",
                    e["ts"].as_str().unwrap_or(""),
                    e["kind"].as_str().unwrap_or(""),
                    esc(e["message"].as_str().unwrap_or(""))
                );
            }
            Ok(0)
        }
    }
}

fn doctor(manifest: Option<&Path>) -> Result<u8> {
    use switchyard::core::config::{compare_versions, VersionCheck};
    let anchor = manifest
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/nonexistent/switchyard.toml"));
    let (config, files) =
        switchyard::core::config::Config::load_for(&anchor).map_err(|e| eyre!("{e}"))?;
    println!(
        "config: {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    );
    let path = std::env::var_os("PATH");
    let mut problems = 0;
    println!("agent profiles:");
    for (name, profile) in &config.agents {
        let Some(program) = profile.command.first() else {
            continue;
        };
        if program.contains("{switchyard}") {
            println!("  {name:<12} switchyard itself");
            continue;
        }
        let notes = || {
            for n in switchyard::core::channels::profile_notes(&profile.command, &profile.env) {
                println!("  {:<12}   {n}", "");
            }
        };
        let Some(found) = switchyard::host::worker::find_program(program, path.as_deref()) else {
            println!("  {name:<12} {program}: not installed (not on PATH)");
            notes();
            continue;
        };
        let version = version_output(&found);
        let line = match compare_versions(&version, profile.checked_version.as_deref()) {
            VersionCheck::Same(v) => format!("{v}: the version its rules were checked against"),
            VersionCheck::Differs { found, checked } => {
                problems += 1;
                format!(
                    "{found}: its rules were checked against {checked}; dialogs change between releases — record a session and check (see the README)"
                )
            }
            VersionCheck::Unknown => format!(
                "version {:?}; no checked version to compare",
                switchyard::core::text::escape_control(version.lines().next().unwrap_or(""))
                    .into_owned()
            ),
        };
        println!("  {name:<12} {}: {line}", found.display());
        notes();
    }
    // gemini's hooks: through the per-run GEMINI_CLI_HOME (any user, any path), or, in older
    // profiles, a system settings file it reads only from a root-owned path.
    let mentions = |p: &str| {
        config.agents.values().any(|a| {
            a.command.iter().any(|x| x.contains(p)) || a.env.values().any(|v| v.contains(p))
        })
    };
    if let (true, Some(mpath)) = (
        mentions("{gemini_home}") || mentions("{gemini_settings}"),
        manifest,
    ) {
        if let Ok(m) = switchyard::core::manifest::Manifest::load(mpath) {
            if let Ok(paths) = switchyard::host::runtime::Paths::resolve(mpath, &m, None) {
                if mentions("{gemini_home}") {
                    let user = switchyard::host::channel_io::user_gemini_dir();
                    let settings = user.as_ref().map(|u| u.join("settings.json"));
                    if let Some(Ok(text)) = settings
                        .as_ref()
                        .filter(|p| p.exists())
                        .map(std::fs::read_to_string)
                    {
                        let text = switchyard::core::config::strip_json_comments(&text);
                        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                            println!(
                                "gemini hooks: {} is not JSON ({e}): gemini workers will not start; fix the file",
                                settings.as_ref().map_or(String::new(), |p| p.display().to_string())
                            );
                        }
                    }
                    println!(
                        "gemini hooks: on; GEMINI_CLI_HOME = {} holds your gemini settings ({}) plus switchyard's hooks, every other file of that directory linked; settings gemini saves during a run stay in the copy",
                        paths.workdir.join("run").join("gemini-home").display(),
                        user.map_or("none: no home directory".into(), |u| u
                            .join("settings.json")
                            .display()
                            .to_string())
                    );
                }
                if mentions("{gemini_settings}") {
                    let file = paths.workdir.join("run").join("gemini-settings.json");
                    match switchyard::host::channel_io::gemini_settings_trusted(&file) {
                        Ok(()) => println!("gemini hooks ({{gemini_settings}}): {} will be read", file.display()),
                        Err(why) => println!(
                            "gemini hooks ({{gemini_settings}}): off for this run, {why}; gemini 0.61 reads a system settings file only from a root-owned path no one else can write (fix: use GEMINI_CLI_HOME = \"{{gemini_home}}\" as the shipped profile does)"
                        ),
                    }
                }
            }
        }
    }
    let git_ok = std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "git: {}",
        if git_ok {
            "found (agents commit with it)"
        } else {
            "NOT FOUND: agents need git to commit"
        }
    );
    println!(
        "terminal-read channel (/proc/<pid>/syscall): {}",
        if switchyard::host::procfs::available() {
            "available"
        } else {
            "not available here: prompts of plain programs are read from the screen only"
        }
    );
    Ok(if git_ok && problems == 0 { 0 } else { 1 })
}

/// The first line a program prints for `--version` (at most 5 s; empty when it fails).
fn version_output(program: &Path) -> String {
    let child = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return String::new();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut out);
    }
    out.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `switchyard hook`: takes the event's JSON (the argument, else at most 1 MiB of stdin) and
/// sends it to the socket in `SWITCHYARD_SOCKET` for the task in `SWITCHYARD_TASK_ID`. A Claude
/// Code `PermissionRequest` waits up to [`switchyard::host::channel_io::DECISION_WAIT`] for the server's
/// decision and returns the JSON to print; everything else returns at once. Any failure (no
/// server, bad JSON, no answer in time) is silent and prints nothing.
fn hook(agent: Option<&str>, arg: Option<&str>) -> Option<String> {
    use std::io::Read;
    let socket = std::env::var_os("SWITCHYARD_SOCKET")?;
    let task = std::env::var("SWITCHYARD_TASK_ID").ok()?;
    let event: serde_json::Value = match arg {
        Some(a) => serde_json::from_str(a).ok()?,
        None => {
            let mut input = Vec::new();
            let _ = std::io::stdin().take(1 << 20).read_to_end(&mut input);
            serde_json::from_slice(&input).ok()?
        }
    };
    let reply = agent.unwrap_or("claude") == "claude"
        && event.get("hook_event_name").and_then(|n| n.as_str()) == Some("PermissionRequest");
    // gemini's AfterAgent carries the turn's answer: kept as the final message (before the event
    // reaches the run, which reads the file once the task settles).
    if let (Some("gemini"), Some(path)) = (agent, std::env::var_os("SWITCHYARD_FINAL_MESSAGE")) {
        if let Some(text) = switchyard::core::channels::gemini_final_message(&event) {
            let _ = std::fs::write(
                path,
                format!("{}\n", switchyard::core::final_message::clean(text)),
            );
        }
    }
    switchyard::host::channel_io::send_event(Path::new(&socket), &task, agent, event, reply)
        .map(|o| o.to_string())
}

fn ctl_help() -> String {
    let mut s = String::from("Actions:\n");
    for k in switchyard::core::action::ActionKind::ALL {
        let args = match k.needs() {
            switchyard::core::action::Needs::Nothing => "",
            switchyard::core::action::Needs::Task => " TASK",
            switchyard::core::action::Needs::TaskText => " TASK [TEXT]",
            switchyard::core::action::Needs::TaskAndText => " TASK TEXT",
            switchyard::core::action::Needs::Agent => " TASK|AGENT",
            switchyard::core::action::Needs::Number => " N",
        };
        s.push_str(&format!(
            "  {:<28} {}\n",
            format!("{}{args}", k.name()),
            k.help()
        ));
    }
    s.push_str("\nExit: 0 accepted · 1 refused (no server, unknown task, not possible now) · 3 bad arguments");
    s
}

fn plan(manifest_path: &Path, max_parallel: Option<usize>) -> Result<u8> {
    let manifest = match Manifest::load(manifest_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let config = switchyard::core::config::Config::load_for(manifest_path)
        .map(|(c, _)| c)
        .map_err(|e| eyre!("{e}"))?;
    let max = max_parallel.unwrap_or(config.max_parallel);
    // An agent with no profile or an unknown role is bad input before anything runs.
    let profiles: Vec<&str> = config.agents.keys().map(String::as_str).collect();
    let mut unknown = manifest.check_agents(&profiles);
    let roles: Vec<&str> = config.roles.keys().map(String::as_str).collect();
    unknown.extend(manifest.check_roles(&roles));
    if !unknown.is_empty() {
        eprintln!(
            "{}",
            switchyard::core::manifest::ManifestError::Invalid {
                path: manifest_path.to_path_buf(),
                problems: unknown
            }
        );
        return Ok(EXIT_BAD_INPUT);
    }
    match Plan::build(&manifest) {
        Ok(plan) => {
            // Ids are validated, but the project name and file names are text from the manifest.
            print!(
                "{}",
                switchyard::core::text::escape_lines(&plan.render(&manifest.project, max))
            );
            Ok(0)
        }
        Err(problems) => {
            eprintln!(
                "{}",
                switchyard::core::manifest::ManifestError::Invalid {
                    path: manifest_path.to_path_buf(),
                    problems
                }
            );
            Ok(EXIT_BAD_INPUT)
        }
    }
}

fn status(manifest_path: &Path, json: bool) -> Result<u8> {
    let manifest = Manifest::load(manifest_path).map_err(|e| eyre!("{e}"))?;
    let files = server_files(manifest_path, None)?;
    let tokio = tokio_rt()?;
    let live = match files.probe() {
        Probe::Live(info) => tokio
            .block_on(client::status(&files))
            .ok()
            .map(|v| (v, info.pid)),
        _ => None,
    };
    let source = match &live {
        Some((_, pid)) => format!("live: server pid {pid}"),
        None => "no server runs; from the manifest".into(),
    };
    let view = live
        .map(|(v, _)| v)
        .unwrap_or_else(|| switchyard::core::engine::RunView::of_manifest(&manifest));
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(0);
    }
    let esc = |s: &str| switchyard::core::text::escape_control(s).into_owned();
    println!(
        "{} ({source})",
        if view.project.is_empty() {
            "(unnamed project)".to_string()
        } else {
            esc(&view.project)
        }
    );
    for t in &view.tasks {
        let verdict = match (&t.verdict, &t.evidence) {
            (Some(v), Some(e)) => format!("  ← {v} {e}"),
            (Some(v), None) => format!("  ← {v}"),
            _ => String::new(),
        };
        println!(
            "  {} {:<16} attempts {:<2} {}{}{}",
            // Columns in display width (CJK and emoji count 2), text escaped.
            switchyard::core::text::cell(&t.id, 10),
            t.status,
            t.attempts,
            switchyard::core::text::cell(&t.title, 40).trim_end(),
            if t.worker { "  [worker]" } else { "" },
            esc(&verdict)
        );
    }
    println!("complete {}/{}", view.done, view.total);
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
        switchyard::core::config::Config::load_for(&anchor).map_err(|e| eyre!("{e}"))?;
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
    let rec = switchyard::host::replay::Recording::load(recording).map_err(|e| eyre!("{e}"))?;
    let steps = switchyard::host::replay::replay(&rec, rules, config.heal.stall_ms, settle_ms);
    println!(
        "{} — {} chunks over {:.1}s, {}x{}, profile {profile}",
        recording.display(),
        rec.chunks.len(),
        rec.end_ms() as f64 / 1000.0,
        rec.cols,
        rec.rows
    );
    print!("{}", switchyard::host::replay::render(&steps));
    if seed {
        println!(
            "seed regexes: {}",
            switchyard::host::replay::seed_classify(&rec).label()
        );
    }
    Ok(0)
}

fn clean(manifest_path: &Path, repo: Option<&Path>, force: bool) -> Result<u8> {
    let manifest = Manifest::load(manifest_path).map_err(|e| eyre!("{e}"))?;
    let paths = runtime::Paths::resolve(manifest_path, &manifest, repo)?;
    let (config, _) = switchyard::core::config::Config::load_for(&paths.manifest)?;
    let files = ServerFiles::new(&paths.manifest, &paths.workdir);
    if let Probe::Live(info) = files.probe() {
        eprintln!(
            "a run of {} is going (server pid {}): its agents work in these worktrees; `switchyard stop {}` first",
            paths.manifest.display(),
            info.pid,
            paths.manifest.display()
        );
        return Ok(1);
    }
    let mut at: Vec<(String, PathBuf)> = Vec::new();
    let mut kept: Vec<(PathBuf, usize)> = Vec::new();
    let mut branches: Vec<String> = Vec::new();
    for t in manifest.tasks() {
        let wt = paths.worktree(&t.id);
        let branch = t.branch.clone().unwrap_or_else(|| t.branch_name());
        match git::unsaved_files(&wt) {
            Some(n) if n > 0 && !force => kept.push((wt, n)),
            _ => {
                at.push((t.id.clone(), wt));
                branches.push(branch);
            }
        }
    }
    let removed = git::remove_worktrees_at(&paths.repo, &at)?;
    for p in &removed {
        println!("removed worktree {}", p.display());
    }
    for (wt, n) in &kept {
        println!(
            "kept worktree {}: {n} file(s) with uncommitted changes — commit them there, or `switchyard clean --force` to drop them (its branch is kept too)",
            wt.display()
        );
    }
    // A task branch goes only when its commits are safe elsewhere: in the integration branch,
    // the run's base, or a remote-tracking branch (pushed). `--force` deletes it anyway and
    // prints how to get it back.
    // The merge queue's branch (`merge.into`), whether or not the queue is on this run.
    let integration = config.merge.into.clone();
    let safe_refs = [integration.clone(), config.base.clone()];
    let (mut deleted, mut branches_kept) = (0usize, 0usize);
    for branch in &branches {
        if safe_refs.contains(branch) {
            continue;
        }
        let work = git::branch_work(&paths.repo, branch, &safe_refs)?;
        let held = match &work {
            git::BranchWork::Absent => continue,
            git::BranchWork::Safe { held_by } => format!("its commits are in {held_by}"),
            git::BranchWork::Unmerged { commits, tip } if force => format!(
                "with {commits} commit(s) in no other branch; recover with `git branch {branch} {tip}`"
            ),
            git::BranchWork::Unmerged { commits, .. } => {
                branches_kept += 1;
                println!(
                    "kept branch {branch}: {commits} commit(s) in neither {integration}, the base ({}) nor a remote — merge or push it, or `switchyard clean --force` to delete it",
                    config.base
                );
                continue;
            }
        };
        match git::delete_branch(&paths.repo, branch) {
            Ok(_) => {
                deleted += 1;
                println!("deleted branch {branch}: {held}");
            }
            Err(e) => {
                branches_kept += 1;
                println!("kept branch {branch}: {e}");
            }
        }
    }
    if git::branch_work(&paths.repo, &integration, &[])? != git::BranchWork::Absent {
        println!("kept the integration branch {integration} (switchyard never deletes it)");
    }
    println!(
        "{} worktree(s) removed, {} kept; {deleted} branch(es) deleted, {branches_kept} kept; logs ({}) are kept",
        removed.len(),
        kept.len(),
        paths.logs.display()
    );
    Ok(0)
}
