//! The control room: a ratatui front end over the runtime. Rendering is event-driven: a frame is
//! drawn only when something changed (a screen, a status, the size, a key), at most once per
//! [`FRAME_MS`], and always once more after a burst. The terminal is restored on quit, error and
//! panic.

pub mod app;
pub mod dag;
pub mod encode;
pub mod headless;
pub mod keys;
pub mod pane;
pub mod room;
pub mod scroll;
pub mod view;

#[cfg(test)]
mod tests;

use crate::host::runtime::Runtime;
use color_eyre::eyre::Result;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::ExecutableCommand;
use std::io::{stdout, Write};

/// Minimum time between two frames, ms (≈ 60 frames per second at most).
pub const FRAME_MS: u64 = 16;

/// Restores the terminal: raw mode off, main screen, mouse and paste reporting off, cursor shown.
pub fn restore_terminal() {
    let mut out = stdout();
    let _ = out.execute(DisableMouseCapture);
    let _ = out.execute(DisableBracketedPaste);
    let _ = out.execute(LeaveAlternateScreen);
    let _ = out.execute(crossterm::cursor::Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The PTY size for workers given the terminal size: the attach view (all but the top bar).
pub fn pty_size_for(rows: u16, cols: u16) -> (u16, u16) {
    (rows.saturating_sub(1).max(2), cols.max(10))
}

/// How a control-room client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEnd {
    /// Why, in one line (from the server, or "the server went away").
    pub reason: String,
    /// The run's exit code when the run ended (stopped); `None` when only this client left.
    pub code: Option<i32>,
}

/// The thin control-room client: raw mode and the alternate screen here, every terminal event
/// up the socket, and the server's rendered output (changed cells, bell, OSC 52) written to the
/// terminal as it comes. The terminal is restored on every way out, panics included.
pub async fn run_client(mut conn: crate::server::client::Conn) -> Result<ClientEnd> {
    use crate::server::protocol::{ClientMsg, Frame, ServerMsg};
    enable_raw_mode()?;
    let _guard = TerminalGuard;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let mut out = stdout();
    out.execute(EnterAlternateScreen)?;
    out.execute(EnableMouseCapture)?;
    out.execute(EnableBracketedPaste)?;

    // Terminal input on a thread of its own, into a bounded channel.
    let (key_tx, mut key_rx) = tokio::sync::mpsc::channel(256);
    std::thread::Builder::new()
        .name("terminal-input".into())
        .spawn(move || {
            while let Ok(ev) = crossterm::event::read() {
                if key_tx.blocking_send(ev).is_err() {
                    break;
                }
            }
        })?;
    let mut term_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let end = loop {
        tokio::select! {
            frame = conn.recv() => match frame {
                Some(Frame::Output(bytes)) => {
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
                Some(Frame::Msg(ServerMsg::Bye { reason, code })) => break ClientEnd { reason, code },
                Some(Frame::Msg(_)) => {}
                None => break ClientEnd {
                    reason: "the server went away (see its log)".into(),
                    code: None,
                },
            },
            ev = key_rx.recv() => {
                let Some(ev) = ev else {
                    break ClientEnd { reason: "the terminal closed".into(), code: None };
                };
                let msg = match ev {
                    crossterm::event::Event::Resize(cols, rows) => ClientMsg::Resize { rows, cols },
                    event => ClientMsg::Input { event },
                };
                if conn.send(&msg).await.is_err() {
                    break ClientEnd {
                        reason: "the server went away (see its log)".into(),
                        code: None,
                    };
                }
            }
            _ = term_signal.recv() => break ClientEnd {
                reason: "terminated; the run goes on".into(),
                code: None,
            },
        }
    };
    Ok(end)
}

/// The live workers' emulators by task index.
pub fn screens_of(rt: &Runtime) -> view::Screens {
    rt.workers
        .iter()
        .map(|(&i, w)| (i, w.parser.clone()))
        .collect()
}
