//! The server: one per manifest, it owns the run — the engine, the workers' PTYs and emulators,
//! git work, the manifest and the journal — and serves clients on a Unix socket (see
//! [`protocol`]). The loop exists once, here: shell messages, the 100 ms tick, client messages
//! and signals in; effects, frames and journal lines out.
//!
//! Clients: control rooms (the server keeps one [`Room`] per client and sends it the changed
//! cells of each frame, at most every [`crate::ui::FRAME_MS`]), headless reporters (journal
//! lines, then the summary when the run settles) and one-shot requests (`ctl`, `status`,
//! `stop`). Every client has a bounded queue; one that falls behind is dropped (it can attach
//! again), so a slow client never slows the run. Garbage, a wrong protocol version or a client
//! vanishing mid-message closes that connection only.
//!
//! PTY size: every worker's PTY follows the control room that attached or resized last (tmux's
//! "latest" policy), sized to that client's attach view, so attaching to a worker is lossless for
//! the person who did it last; other clients show it cropped or padded.
//!
//! The server ends when `stop` is asked (ctl, a control room, SIGTERM or SIGINT), or when the run
//! has settled, no worker is alive and no client is connected.

pub mod client;
pub mod files;
pub mod protocol;

use crate::core::action::ActionKind;
use crate::host::runtime::Runtime;
use crate::host::worker::now_ms;
use crate::ui::room::{Room, RoomOut};
use files::{ServerFiles, ServerInfo};
use protocol::{ClientMsg, Frame, Role, ServerMsg, PROTOCOL};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Exit status of `switchyard serve` when another server holds the manifest's lock.
pub const EXIT_LOCK_HELD: i32 = 75;

/// Frames a client may have queued before it counts as fallen behind and is dropped.
pub const CLIENT_QUEUE: usize = 256;

/// How the server runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Started for a headless run: a worker waiting for a person is stopped (nobody answers),
    /// until a control room attaches.
    pub headless: bool,
    /// The run lives in the process of its first client (`--foreground`): when that client
    /// leaves, the run stops.
    pub foreground: bool,
}

type ClientId = u64;

enum Incoming {
    Msg(ClientId, ClientMsg),
    Gone(ClientId, String),
}

struct Client {
    tx: mpsc::Sender<Vec<u8>>,
    role: Option<Role>,
    room: Option<Room>,
    gone: Option<String>,
    /// A headless client that was sent the summary: it waits only for the run to end.
    summarized: bool,
}

impl Client {
    /// Queues a frame; a full queue drops the client (it fell behind).
    fn send(&mut self, frame: Vec<u8>) {
        if self.gone.is_some() {
            return;
        }
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.gone = Some("fell behind (its queue is full); attach again".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.gone = Some("connection closed".into())
            }
        }
    }

    fn send_msg(&mut self, m: &ServerMsg) {
        self.send(protocol::encode_msg(m));
    }
}

/// Binds the socket (replacing a stale one; the caller holds the lock), owner-only.
pub fn bind(files: &ServerFiles) -> std::io::Result<UnixListener> {
    if let Some(dir) = files.socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&files.socket);
    let listener = UnixListener::bind(&files.socket)?;
    files::restrict_socket(&files.socket)?;
    Ok(listener)
}

/// This server's info for the lock file and the registry.
pub fn info(files: &ServerFiles) -> ServerInfo {
    ServerInfo {
        pid: std::process::id(),
        manifest: files.manifest.clone(),
        socket: files.socket.clone(),
        started_ms: now_ms(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Runs the loop until the run stops or ends; returns the run's exit code.
pub async fn serve(
    mut rt: Runtime,
    files: ServerFiles,
    listener: UnixListener,
    opts: ServeOptions,
) -> i32 {
    let started = now_ms();
    let keys = match crate::ui::keys::KeyMap::new(&rt.config.keys) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}");
            crate::ui::keys::KeyMap::default()
        }
    };
    rt.engine.hold_for_person = !opts.headless;
    let mut shell = rt.take_receiver();
    let (in_tx, mut incoming) = mpsc::channel::<Incoming>(1024);
    let mut clients: BTreeMap<ClientId, Client> = BTreeMap::new();
    let mut next_id: ClientId = 1;
    let mut owner: Option<ClientId> = None;
    let mut had_client = false;
    let mut was_settled = false;
    let mut stop_requested = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("a SIGINT handler");
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("a SIGHUP handler");
    rt.apply(crate::core::engine::Event::Tick);
    tracing::info!(
        "server {} for {} on {}",
        std::process::id(),
        files.manifest.display(),
        files.socket.display()
    );
    loop {
        let frame_due = next_frame(&clients, rt.changed);
        tokio::select! {
            msg = shell.recv() => if let Some(m) = msg { rt.handle(m) },
            _ = tick.tick() => rt.poll(),
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    if !same_user(&stream) {
                        tracing::warn!("refused a connection from another user");
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    let tx = start_connection(id, stream, in_tx.clone());
                    clients.insert(id, Client { tx, role: None, room: None, gone: None, summarized: false });
                }
            }
            m = incoming.recv() => match m {
                Some(Incoming::Msg(id, msg)) => {
                    let stop = on_message(&mut rt, &mut clients, id, msg, &files, &keys, &opts, started);
                    if let Some(c) = clients.get(&id) {
                        if matches!(c.role, Some(Role::ControlRoom { .. }) | Some(Role::Headless)) {
                            had_client = true;
                            if opts.foreground && owner.is_none() {
                                owner = Some(id);
                            }
                        }
                    }
                    stop_requested |= stop;
                }
                Some(Incoming::Gone(id, why)) => {
                    if let Some(c) = clients.get_mut(&id) {
                        c.gone.get_or_insert(why);
                    }
                }
                None => {}
            },
            _ = sigterm.recv() => stop_requested = true,
            _ = sigint.recv() => stop_requested = true,
            _ = sighup.recv() => {} // no terminal to lose: a server outlives its clients
            _ = sleep_until_opt(frame_due) => {}
        }

        send_lines(&mut rt, &mut clients);

        // Frames for the control rooms.
        let bell = std::mem::take(&mut rt.attention);
        let now = Instant::now();
        let changed = rt.changed;
        let mut drew_all = true;
        for c in clients.values_mut() {
            let Some(room) = c.room.as_mut() else {
                continue;
            };
            room.follow_workers(&rt);
            if bell {
                c.send(protocol::encode_output(b"\x07"));
            }
            let room = c.room.as_mut().expect("checked above");
            if !room.wants_frame(changed, now_ms()) {
                continue;
            }
            if now.duration_since(Instant::from_std(room.last_frame)) < room.frame_interval() {
                drew_all = false;
                continue;
            }
            let bytes = room.render(&rt, now_ms());
            if !bytes.is_empty() {
                c.send(protocol::encode_output(&bytes));
            }
        }
        if drew_all {
            rt.changed = false;
            if clients.values().any(|c| c.room.is_some()) {
                rt.rearm_wakes();
            }
        }

        // The summary for headless reporters when the run settles.
        let settled = rt.engine.is_settled() && !stop_requested;
        if settled && !was_settled {
            // What the summary reports is on disk before anyone reads it.
            let summary = summarize(&mut rt, started);
            write_report(&mut rt);
            send_lines(&mut rt, &mut clients);
            for c in clients.values_mut() {
                if c.role == Some(Role::Headless) {
                    c.summarized = true;
                    c.send_msg(&summary);
                }
            }
        }
        was_settled = settled;

        // Drop the clients that left or fell behind.
        let gone: Vec<ClientId> = clients
            .iter()
            .filter(|(_, c)| c.gone.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(c) = clients.remove(&id) {
                tracing::info!(
                    "client {id} ({:?}) left: {}",
                    c.role,
                    c.gone.unwrap_or_default()
                );
            }
            if owner == Some(id) {
                stop_requested = true;
            }
        }

        if stop_requested {
            break;
        }
        let live = rt.engine.live_workers().count() > 0;
        let waited = now_ms().saturating_sub(started) > 10_000;
        // Nobody attached, or only headless reporters that already have their summary.
        let nobody = clients.values().all(|c| c.summarized);
        if rt.engine.is_settled() && !live && nobody && (had_client || waited) {
            tracing::info!("the run settled and nobody is attached: the server ends");
            break;
        }
    }

    // Stop: workers stop, running tasks stay `running` for the next run.
    let stopping = ServerMsg::Line {
        text: "stopping: workers stop; running tasks resume next run".into(),
    };
    for c in clients.values_mut() {
        if c.role == Some(Role::Headless) {
            c.send_msg(&stopping);
        }
    }
    rt.shutdown(&mut shell, Duration::from_secs(3)).await;
    let code = rt.exit_code();
    let reason = crate::server::client::ended_line(code);
    send_lines(&mut rt, &mut clients);
    let headless = clients.values().any(|c| c.role == Some(Role::Headless));
    let summary = (headless && !was_settled).then(|| summarize(&mut rt, started));
    for c in clients.values_mut() {
        if let (Some(Role::Headless), Some(summary)) = (&c.role, &summary) {
            c.send_msg(summary);
        }
        c.send_msg(&ServerMsg::Bye {
            reason: reason.clone(),
            code: Some(code),
        });
    }
    // Give the writers a moment to flush the goodbyes.
    drop(clients);
    tokio::time::sleep(Duration::from_millis(50)).await;
    files.remove_remains();
    tracing::info!("server {} ended: {reason}", std::process::id());
    code
}

/// Handles one client message. Returns true when the run must stop.
#[allow(clippy::too_many_arguments)]
fn on_message(
    rt: &mut Runtime,
    clients: &mut BTreeMap<ClientId, Client>,
    id: ClientId,
    msg: ClientMsg,
    files: &ServerFiles,
    keys: &crate::ui::keys::KeyMap,
    opts: &ServeOptions,
    started: u64,
) -> bool {
    let Some(c) = clients.get_mut(&id) else {
        return false;
    };
    match (c.role.clone(), msg) {
        (
            None,
            ClientMsg::Hello {
                protocol,
                version,
                role,
            },
        ) => {
            if protocol != PROTOCOL {
                c.send_msg(&ServerMsg::Refused {
                    reason: format!(
                        "this server is switchyard {} (protocol {PROTOCOL}); the client is switchyard {version} (protocol {protocol}). Use the same switchyard binary for both, or `switchyard stop` the old run and start it again",
                        env!("CARGO_PKG_VERSION")
                    ),
                });
                c.gone = Some("protocol mismatch".into());
                return false;
            }
            c.send_msg(&ServerMsg::Welcome {
                protocol: PROTOCOL,
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                manifest: files.manifest.display().to_string(),
            });
            match &role {
                Role::ControlRoom { rows, cols } => {
                    rt.engine.hold_for_person = true;
                    let (r, k) = crate::ui::pty_size_for(*rows, *cols);
                    rt.resize(r, k);
                    c.room = Some(Room::new(
                        *rows,
                        *cols,
                        keys.clone(),
                        rt.paths.logs.clone(),
                        opts.foreground,
                    ));
                }
                Role::Headless => {
                    c.send_msg(&ServerMsg::Line {
                        text: format!(
                            "switchyard: {} — {} tasks, at most {} workers; journal {}; server pid {}",
                            display_project(rt),
                            rt.engine.plan.len(),
                            rt.engine.max_parallel,
                            rt.paths.logs.join("events.jsonl").display(),
                            std::process::id()
                        ),
                    });
                    // Everything this server said so far (its whole output on a fresh run).
                    for text in rt.recent.iter().chain(rt.outbox.iter()) {
                        c.send_msg(&ServerMsg::Line { text: text.clone() });
                    }
                    if rt.engine.is_settled() {
                        c.summarized = true;
                        c.send_msg(&summarize(rt, started));
                    }
                }
                Role::Control => {}
            }
            c.role = Some(role);
            false
        }
        (None, _) => {
            c.gone = Some("spoke before saying hello".into());
            false
        }
        (Some(_), ClientMsg::Hello { .. }) => {
            c.gone = Some("said hello twice".into());
            false
        }
        (Some(Role::ControlRoom { .. }), ClientMsg::Input { event }) => {
            let Some(room) = c.room.as_mut() else {
                return false;
            };
            let mut stop = false;
            for out in room.on_input(&event, rt) {
                match out {
                    RoomOut::Output(bytes) => c.send(protocol::encode_output(&bytes)),
                    RoomOut::Detach => {
                        let over = rt.engine.is_settled() && rt.engine.live_workers().count() == 0;
                        let reason = if over {
                            // Nothing left to run: the server ends once nobody is attached.
                            format!(
                                "left the control room; the run is over — {}",
                                crate::core::engine::Engine::exit_meaning(rt.exit_code())
                            )
                        } else {
                            format!(
                                "detached: the run goes on (server pid {}); `switchyard attach {}` returns",
                                std::process::id(),
                                files.manifest.display()
                            )
                        };
                        c.send_msg(&ServerMsg::Bye { reason, code: None });
                        c.gone = Some("detached".into());
                    }
                    RoomOut::Stop => stop = true,
                }
            }
            stop
        }
        (Some(Role::ControlRoom { .. }), ClientMsg::Resize { rows, cols }) => {
            if let Some(room) = c.room.as_mut() {
                room.resize(rows, cols);
            }
            // The latest client to resize sets every worker's PTY size (tmux's "latest").
            let (r, k) = crate::ui::pty_size_for(rows, cols);
            rt.resize(r, k);
            false
        }
        (Some(_), ClientMsg::Act { action }) => {
            let stop = action.kind == ActionKind::Stop;
            let answer = match rt.act(action) {
                Ok(done) => ServerMsg::Ack {
                    ok: true,
                    message: if stop {
                        "stopping the run".into()
                    } else {
                        format!("done: {done}")
                    },
                },
                Err(e) => ServerMsg::Ack {
                    ok: false,
                    message: e.to_string(),
                },
            };
            c.send_msg(&answer);
            stop
        }
        (
            Some(_),
            ClientMsg::Hook {
                task,
                event,
                agent,
                reply,
                sent_us,
            },
        ) => {
            let channel = agent
                .as_deref()
                .and_then(crate::core::channels::Channel::parse)
                .unwrap_or(crate::core::channels::Channel::Claude);
            let mut output = None;
            match (rt.engine.index_of(&task), channel.report(&event)) {
                (Some(i), Some(mut report)) => {
                    report.sent_us = sent_us;
                    tracing::debug!(
                        "task {task}: {} {} ({:?})",
                        report.channel,
                        report.event,
                        report.kind
                    );
                    if let (Some(what), true) = (report.permission.clone(), reply) {
                        // Decided by the allow/deny policy and answered through the hook; a
                        // denied one stays a waiting prompt, which escalates.
                        let allow = match channel {
                            crate::core::channels::Channel::Claude => {
                                Some(crate::core::channels::claude_permission_allow())
                            }
                            crate::core::channels::Channel::Opencode => {
                                Some(crate::core::channels::opencode_permission_allow())
                            }
                            _ => None,
                        };
                        if let Some(allow) =
                            allow.filter(|_| rt.engine.permission_decision(i, &what).is_ok())
                        {
                            report.kind = crate::core::classify::VerdictKind::Running;
                            report.line = format!("allowed {what}");
                            report.answered = Some(format!("allow {what}"));
                            output = Some(allow);
                        }
                    }
                    rt.apply(crate::core::engine::Event::Reported { task: i, report });
                }
                (None, _) => tracing::warn!("a hook for an unknown task {task:?}"),
                (_, None) => {}
            }
            if reply {
                c.send_msg(&ServerMsg::HookReply { output });
            }
            c.gone = Some("hook delivered".into());
            false
        }
        (Some(_), ClientMsg::Explain { task }) => {
            let answer = match rt.engine.index_of(&task) {
                Some(i) => ServerMsg::Explain {
                    explanation: rt.engine.explain(i, now_ms()),
                },
                None => ServerMsg::Ack {
                    ok: false,
                    message: format!("no task {task:?} in this manifest"),
                },
            };
            c.send_msg(&answer);
            false
        }
        (Some(_), ClientMsg::Status) => {
            let view = rt.engine.view(now_ms());
            c.send_msg(&ServerMsg::Status { view });
            false
        }
        (Some(_), other) => {
            tracing::debug!("client {id}: ignored {other:?}");
            false
        }
    }
}

/// The headless summary as it stands, after saving the manifest (what it reports is on disk
/// before anyone reads it).
fn summarize(rt: &mut Runtime, started: u64) -> ServerMsg {
    rt.persist();
    ServerMsg::Summary {
        text: crate::ui::headless::summary(rt, now_ms().saturating_sub(started)),
        code: rt.exit_code(),
    }
}

/// Journal lines not yet sent, to the headless reporters.
fn send_lines(rt: &mut Runtime, clients: &mut BTreeMap<ClientId, Client>) {
    let lines = std::mem::take(&mut rt.outbox);
    if lines.is_empty() {
        return;
    }
    for c in clients.values_mut() {
        if c.role == Some(Role::Headless) {
            for text in &lines {
                c.send_msg(&ServerMsg::Line { text: text.clone() });
            }
        }
    }
}

/// Writes the run's Markdown report to `<workdir>/logs/report.md` (best effort, said in the
/// journal lines).
fn write_report(rt: &mut Runtime) {
    let path = rt.paths.logs.join("report.md");
    let text = crate::report::render_for_run(&rt.engine.manifest, &rt.paths);
    let line = match crate::core::manifest::write_atomic(&path, text.as_bytes()) {
        Ok(()) => format!("report: {}", path.display()),
        Err(e) => format!("cannot write the report: {e}"),
    };
    rt.outbox.push(line.clone());
    rt.recent.push_back(line);
}

fn display_project(rt: &Runtime) -> String {
    let p = &rt.engine.manifest.project;
    if p.is_empty() {
        rt.paths.manifest.display().to_string()
    } else {
        crate::core::text::escape_control(p).into_owned()
    }
}

/// A reader task (frames in, until garbage or the end) and a writer task (queued frames out)
/// for one connection; returns the writer's bounded queue.
fn start_connection(
    id: ClientId,
    stream: UnixStream,
    incoming: mpsc::Sender<Incoming>,
) -> mpsc::Sender<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
    tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            if writer.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    tokio::spawn(async move {
        // The first message must come soon: a connection that says nothing is dropped.
        let mut first = true;
        loop {
            let read = protocol::read_frame::<ClientMsg, _>(&mut reader);
            let frame = if first {
                match tokio::time::timeout(Duration::from_secs(10), read).await {
                    Ok(f) => f,
                    Err(_) => {
                        let _ = incoming
                            .send(Incoming::Gone(id, "said nothing for 10 s".into()))
                            .await;
                        return;
                    }
                }
            } else {
                read.await
            };
            first = false;
            let event = match frame {
                Ok(Some(Frame::Msg(m))) => Incoming::Msg(id, m),
                Ok(Some(Frame::Output(_))) => {
                    Incoming::Gone(id, "sent terminal output, which only a server sends".into())
                }
                Ok(None) => Incoming::Gone(id, "disconnected".into()),
                Err(e) => Incoming::Gone(id, format!("bad frame: {e}")),
            };
            let end = matches!(event, Incoming::Gone(..));
            if incoming.send(event).await.is_err() || end {
                return;
            }
        }
    });
    tx
}

/// Only the owner of the server may connect (the socket is 0600 too).
fn same_user(stream: &UnixStream) -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    stream.peer_cred().map(|c| c.uid() == me).unwrap_or(false)
}

fn next_frame(clients: &BTreeMap<ClientId, Client>, changed: bool) -> Option<Instant> {
    let now = now_ms();
    clients
        .values()
        .filter_map(|c| c.room.as_ref())
        .filter_map(|r| r.next_frame_at(changed, now))
        .map(Instant::from_std)
        .min()
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
