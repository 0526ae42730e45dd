//! The control room: a ratatui front end over the runtime. Rendering is event-driven: a frame is
//! drawn only when something changed (a screen, a status, the size, a key), at most once per
//! [`FRAME_MS`], and always once more after a burst. The terminal is restored on quit, error and
//! panic.

pub mod app;
pub mod dag;
pub mod encode;
pub mod keys;
pub mod scroll;
pub mod view;

#[cfg(test)]
mod tests;

use crate::runtime::Runtime;
use crate::worker::now_ms;
use app::{App, Intent, Mode};
use color_eyre::eyre::Result;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::ExecutableCommand;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{stdout, Write};
use std::time::Duration;
use tokio::time::Instant;

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

/// Runs the control room until the person quits. Returns the exit code (as headless would).
pub async fn run(rt: &mut Runtime) -> Result<i32> {
    let keys = keys::KeyMap::new(&rt.engine.config.keys).map_err(|e| {
        color_eyre::eyre::eyre!(
            "{}: {e}",
            rt.config_files
                .last()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    })?;
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
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
    let size = terminal.size()?;
    let (r, c) = pty_size_for(size.height, size.width);
    rt.resize(r, c);

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

    let mut rx = rt.take_receiver();
    let mut app = App::new();
    app.keys = keys;
    app.logs_dir = Some(rt.paths.logs.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_frame = Instant::now() - Duration::from_secs(1);
    let mut dirty = true;
    rt.apply(crate::engine::Event::Tick);
    loop {
        if dirty || rt.changed {
            let due = last_frame + Duration::from_millis(FRAME_MS);
            if Instant::now() >= due {
                if rt.attention {
                    rt.attention = false;
                    let _ = stdout().write_all(b"\x07");
                }
                draw(&mut terminal, rt, &mut app)?;
                last_frame = Instant::now();
                dirty = false;
                rt.changed = false;
            }
        }
        let frame_due =
            (dirty || rt.changed).then_some(last_frame + Duration::from_millis(FRAME_MS));
        tokio::select! {
            msg = rx.recv() => if let Some(m) = msg { rt.handle(m) },
            _ = tick.tick() => rt.poll(),
            ev = key_rx.recv() => {
                let Some(ev) = ev else { break };
                dirty = true;
                if let crossterm::event::Event::Resize(cols, rows) = ev {
                    let (r, c) = pty_size_for(rows, cols);
                    rt.resize(r, c);
                    terminal.autoresize()?;
                    continue;
                }
                let screens = screens_of(rt);
                let modes = screens.get(&attached_or_selected(&app)).map(|p| {
                    let p = p.lock().unwrap_or_else(|e| e.into_inner());
                    encode::Modes {
                        application_cursor: p.screen().application_cursor(),
                        bracketed_paste: p.screen().bracketed_paste(),
                        mouse: p.screen().mouse_protocol_mode(),
                        mouse_encoding: p.screen().mouse_protocol_encoding(),
                    }
                }).unwrap_or_default();
                let mut quit = false;
                for intent in app.on_event(&ev, &rt.engine, &screens, modes) {
                    match intent {
                        Intent::Command(c) => rt.command(c),
                        Intent::Type(task, bytes) => rt.type_into(task, &bytes),
                        Intent::Copy(text) => {
                            let _ = stdout().write_all(&scroll::osc52(&text));
                            let _ = stdout().flush();
                        }
                        Intent::Quit => quit = true,
                    }
                }
                if quit {
                    break;
                }
            }
            _ = sleep_until_opt(frame_due) => {}
        }
        // Detach automatically when the attached worker is gone.
        if let Mode::Attached(t) = app.mode {
            if !rt.workers.contains_key(&t) {
                app.mode = Mode::Normal;
                app.message = Some(format!("{} exited; detached", rt.engine.plan.ids[t]));
                dirty = true;
            }
        }
    }
    app.message = Some("stopping workers…".into());
    draw(&mut terminal, rt, &mut app)?;
    rt.shutdown(&mut rx, Duration::from_secs(3)).await;
    Ok(rt.engine.exit_code())
}

fn attached_or_selected(app: &App) -> usize {
    match app.mode {
        Mode::Attached(t) => t,
        _ => app.selected,
    }
}

fn screens_of(rt: &Runtime) -> view::Screens {
    rt.workers
        .iter()
        .map(|(&i, w)| (i, w.parser.clone()))
        .collect()
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn draw(
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    rt: &Runtime,
    app: &mut App,
) -> Result<()> {
    let screens: view::Screens = rt
        .workers
        .iter()
        .map(|(&i, w)| (i, w.parser.clone()))
        .collect();
    let recent: Vec<String> = rt.recent.iter().cloned().collect();
    let now = now_ms();
    terminal.draw(|f| view::draw(f, &rt.engine, &screens, app, &recent, now))?;
    Ok(())
}
