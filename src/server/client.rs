//! The client side of the socket: connecting (and starting a server when none runs), and the
//! clients that are not the control room: the headless reporter and one-shot requests (`ctl`,
//! `status`, `ls`, `stop`).

use crate::core::action::Action;
use crate::core::engine::{Engine, RunView};
use crate::server::files::{self, Probe, ServerFiles, ServerInfo};
use crate::server::protocol::{self, ClientMsg, Frame, Role, ServerMsg};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Why a client could not talk to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("no switchyard server runs for {manifest}; `switchyard run {manifest}` starts one")]
    NoServer {
        /// The manifest.
        manifest: String,
    },
    /// The server refused the connection (e.g. another protocol version).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server could not be started; the text has the end of its log.
    #[error("the server did not start: {0}")]
    Start(String),
    /// The connection broke.
    #[error("talking to the server at {socket}: {source}")]
    Io {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A connection after the server's welcome. Frames arrive through a reader task, so receiving
/// is safe to race against other futures.
pub struct Conn {
    /// The server's pid.
    pub pid: u32,
    /// The manifest it runs.
    pub manifest: String,
    rx: mpsc::Receiver<Frame<ServerMsg>>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Conn {
    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> std::io::Result<()> {
        protocol::write_msg(&mut self.writer, msg).await
    }

    /// The next frame from the server; `None` when the connection ended.
    pub async fn recv(&mut self) -> Option<Frame<ServerMsg>> {
        self.rx.recv().await
    }

    /// The next JSON message, skipping terminal output.
    pub async fn recv_msg(&mut self) -> Option<ServerMsg> {
        loop {
            match self.recv().await? {
                Frame::Msg(m) => return Some(m),
                Frame::Output(_) => {}
            }
        }
    }
}

/// Connects to the socket and says hello in `role`.
pub async fn connect(socket: &Path, manifest: &str, role: Role) -> Result<Conn, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|_| ClientError::NoServer {
            manifest: manifest.into(),
        })?;
    let (mut reader, mut writer) = stream.into_split();
    let io = |source| ClientError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    protocol::write_msg(&mut writer, &protocol::hello(role))
        .await
        .map_err(io)?;
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok(Some(frame)) = protocol::read_frame::<ServerMsg, _>(&mut reader).await {
            if tx.send(frame).await.is_err() {
                break;
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to hello in 10 s",
            ))
        })?;
    match first {
        Some(Frame::Msg(ServerMsg::Welcome { pid, manifest, .. })) => Ok(Conn {
            pid,
            manifest,
            rx,
            writer,
        }),
        Some(Frame::Msg(ServerMsg::Refused { reason })) => Err(ClientError::Refused(reason)),
        _ => Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the server closed the connection without a welcome",
        ))),
    }
}

/// Connects to the live server of a manifest, if there is one.
pub async fn connect_live(files: &ServerFiles, role: Role) -> Result<Conn, ClientError> {
    let manifest = files.manifest.display().to_string();
    let socket = match files.probe() {
        Probe::Live(info) => info.socket,
        Probe::Starting => files.socket.clone(),
        _ => return Err(ClientError::NoServer { manifest }),
    };
    connect(&socket, &manifest, role).await
}

/// How [`ensure_server`] found the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A server was already running (pid).
    Existing(u32),
    /// This call started one (pid).
    Started(u32),
}

/// The one line that reports a stale lock or socket of a server that no longer runs.
pub fn stale_line(info: Option<&ServerInfo>, files: &ServerFiles) -> String {
    let who = info
        .map(|i| format!("server pid {} (no longer running)", i.pid))
        .unwrap_or_else(|| "a server that is no longer running".into());
    format!(
        "switchyard: replacing the stale lock and socket of {who} for {}",
        files.manifest.display()
    )
}

/// What the started server needs to know.
#[derive(Debug, Clone, Default)]
pub struct StartArgs {
    /// `--repo`.
    pub repo: Option<PathBuf>,
    /// `--max-parallel`.
    pub max_parallel: Option<usize>,
    /// Started for a headless run: nobody will answer a prompt.
    pub headless: bool,
}

/// Connects to the manifest's server, starting one in the background first when none runs: a
/// process of its own session (`switchyard serve`), standard streams on `logs/server.log`. A
/// stale lock or socket of a killed server is reported in one line on stderr and replaced.
/// Two callers racing both end up on the one server that won the lock.
pub async fn ensure_server(
    files: &ServerFiles,
    args: &StartArgs,
    role: Role,
) -> Result<(Conn, Joined), ClientError> {
    let manifest = files.manifest.display().to_string();
    match files.probe() {
        Probe::Live(info) => match connect(&info.socket, &manifest, role.clone()).await {
            Ok(c) => {
                let pid = c.pid;
                return Ok((c, Joined::Existing(pid)));
            }
            Err(ClientError::NoServer { .. }) => {
                // Locked but not answering: it is starting or stopping; wait below.
            }
            Err(e) => return Err(e),
        },
        Probe::Stale(info) => {
            eprintln!("{}", stale_line(info.as_ref(), files));
            files.remove_remains();
        }
        Probe::Starting | Probe::None => {}
    }
    let mut child = spawn_server(files, args)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Probe::Live(info) = files.probe() {
            match connect(&info.socket, &manifest, role.clone()).await {
                Ok(c) => {
                    let pid = c.pid;
                    let joined = if pid == child.id() {
                        Joined::Started(pid)
                    } else {
                        Joined::Existing(pid)
                    };
                    return Ok((c, joined));
                }
                Err(ClientError::NoServer { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost the race for the lock: another server runs; keep waiting for its socket.
            if status.code() != Some(crate::server::EXIT_LOCK_HELD) {
                return Err(ClientError::Start(log_tail(&files.log)));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ClientError::Start(format!(
                "no answer on {} after 30 s; {}",
                files.socket.display(),
                log_tail(&files.log)
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn spawn_server(files: &ServerFiles, args: &StartArgs) -> Result<std::process::Child, ClientError> {
    use std::os::unix::process::CommandExt;
    let start = |e: std::io::Error| ClientError::Start(e.to_string());
    let exe = std::env::current_exe().map_err(start)?;
    if let Some(dir) = files.log.parent() {
        std::fs::create_dir_all(dir).map_err(start)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(start)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve").arg(&files.manifest);
    if let Some(r) = &args.repo {
        cmd.arg("--repo").arg(r);
    }
    if let Some(n) = args.max_parallel {
        cmd.arg("--max-parallel").arg(n.to_string());
    }
    if args.headless {
        cmd.arg("--headless");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(start)?)
        .stderr(log);
    // SAFETY: setsid(2) is async-signal-safe; between fork and exec it only makes the child a
    // session leader, so closing the person's terminal (SIGHUP) never reaches the server.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(start)
}

/// The last lines of the server's log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    format!(
        "the end of {}:\n{}",
        log.display(),
        crate::core::text::escape_lines(&tail.join("\n"))
    )
}

/// The headless reporter: prints each journal line the server sends and, when the run settles,
/// the summary; returns the run's exit code. Ctrl-C leaves the run going (it says how to stop
/// it) and returns 1.
pub async fn headless(mut conn: Conn, files: &ServerFiles) -> i32 {
    let manifest = files.manifest.display().to_string();
    loop {
        tokio::select! {
            m = conn.recv_msg() => match m {
                Some(ServerMsg::Line { text }) => println!("{}", crate::core::text::escape_control(&text)),
                Some(ServerMsg::Summary { text, code }) => {
                    print!("{}", crate::core::text::escape_lines(&text));
                    wait_for_end(&mut conn, files).await;
                    return code;
                }
                Some(ServerMsg::Bye { reason, code }) => {
                    println!("{}", crate::core::text::escape_lines(&reason));
                    return code.unwrap_or(1);
                }
                Some(_) => {}
                None => {
                    println!("the server went away before the run settled; see {}", files.log.display());
                    return 1;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                println!(
                    "interrupted: the run goes on in its server (pid {}); `switchyard attach {manifest}` to watch, `switchyard stop {manifest}` to end it",
                    conn.pid
                );
                return 1;
            }
        }
    }
}

/// After the summary: when nobody else is attached the server ends now; wait (up to 5 s) until
/// it has, so the next command (`clean`, another `run`) does not find it still going.
async fn wait_for_end(conn: &mut Conn, files: &ServerFiles) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, conn.recv_msg()).await {
        if matches!(m, ServerMsg::Bye { .. }) {
            break;
        }
    }
    while tokio::time::Instant::now() < deadline && matches!(files.probe(), Probe::Live(_)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one request on a fresh control connection and returns the first answer `pick` takes
/// (other messages are skipped); an error when the server closes without one.
async fn request<T>(
    files: &ServerFiles,
    msg: ClientMsg,
    mut pick: impl FnMut(ServerMsg) -> Option<T>,
) -> Result<T, ClientError> {
    let mut conn = connect_live(files, Role::Control).await?;
    let io = |source| ClientError::Io {
        socket: files.socket.clone(),
        source,
    };
    conn.send(&msg).await.map_err(io)?;
    while let Some(m) = conn.recv_msg().await {
        if let Some(answer) = pick(m) {
            return Ok(answer);
        }
    }
    Err(io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection without an answer",
    )))
}

/// Sends one action and returns the server's answer (accepted, and what was done or why not).
pub async fn act(files: &ServerFiles, action: Action) -> Result<(bool, String), ClientError> {
    request(files, ClientMsg::Act { action }, |m| match m {
        ServerMsg::Ack { ok, message } => Some((ok, message)),
        _ => None,
    })
    .await
}

/// Asks the live server for its view of the run.
pub async fn status(files: &ServerFiles) -> Result<RunView, ClientError> {
    request(files, ClientMsg::Status, |m| match m {
        ServerMsg::Status { view } => Some(view),
        _ => None,
    })
    .await
}

/// Asks the live server why a task's verdict is what it is. `Ok(Err(message))` when the server
/// does not know the task.
pub async fn explain(
    files: &ServerFiles,
    task: &str,
) -> Result<Result<crate::core::engine::Explanation, String>, ClientError> {
    request(
        files,
        ClientMsg::Explain { task: task.into() },
        |m| match m {
            ServerMsg::Explain { explanation } => Some(Ok(explanation)),
            ServerMsg::Ack { ok: false, message } => Some(Err(message)),
            _ => None,
        },
    )
    .await
}

/// Stops the run: sends `stop`, then waits (up to 30 s) for the server to end. Returns the
/// run's exit code.
pub async fn stop(files: &ServerFiles) -> Result<i32, ClientError> {
    let mut conn = connect_live(files, Role::Headless).await?;
    let io = |source| ClientError::Io {
        socket: files.socket.clone(),
        source,
    };
    conn.send(&ClientMsg::Act {
        action: Action::global(crate::core::action::ActionKind::Stop),
    })
    .await
    .map_err(io)?;
    let pid = conn.pid;
    let mut code = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, conn.recv_msg()).await {
        if let ServerMsg::Bye { code: c, .. } = m {
            code = c;
        }
    }
    for _ in 0..200 {
        if !files::pid_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(code.unwrap_or(1))
}

/// A live server found in the registry, with its view when it answered.
#[derive(Debug, Clone)]
pub struct Listed {
    /// What the server registered.
    pub info: ServerInfo,
    /// Its view of the run (None when it did not answer in time).
    pub view: Option<RunView>,
}

/// Every live server of this user (stale registry entries are removed on the way).
pub async fn list() -> Vec<Listed> {
    let mut out = Vec::new();
    for info in files::registered() {
        let workdir_files = lookup_files(&info);
        match workdir_files.probe() {
            Probe::Live(_) | Probe::Starting => {}
            _ if files::pid_alive(info.pid) => {}
            _ => {
                let _ = std::fs::remove_file(&workdir_files.registry);
                continue;
            }
        }
        let view = tokio::time::timeout(Duration::from_secs(2), status(&workdir_files))
            .await
            .ok()
            .and_then(Result::ok);
        out.push(Listed { info, view });
    }
    out
}

/// The files of a registered server (its lock beside its socket, or found from the manifest).
fn lookup_files(info: &ServerInfo) -> ServerFiles {
    let key = files::key_of(&info.manifest);
    let mut f = ServerFiles::new(&info.manifest, Path::new("/nonexistent"));
    f.socket = info.socket.clone();
    f.registry = files::runtime_dir()
        .join("servers")
        .join(format!("{key}.json"));
    if let Some(dir) = info.socket.parent() {
        let stem = info
            .socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        f.lock = dir.join(format!("{stem}.lock"));
    }
    f
}

/// One line for `ls`: manifest, pid, counts per status, uptime.
pub fn ls_line(l: &Listed, now_ms: u64) -> String {
    let up = now_ms.saturating_sub(l.info.started_ms) / 1000;
    let counts = l
        .view
        .as_ref()
        .map(|v| format!("{} ({}/{} done)", v.counts_line(), v.done, v.total))
        .unwrap_or_else(|| "(not answering)".into());
    format!(
        "{}  pid {}  up {}  {}",
        crate::core::text::escape_control(&l.info.manifest.display().to_string()),
        l.info.pid,
        human_secs(up),
        counts
    )
}

fn human_secs(s: u64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The line `stop` and the control room print when a run ended.
pub fn ended_line(code: i32) -> String {
    format!("run stopped — exit {code}: {}", Engine::exit_meaning(code))
}
