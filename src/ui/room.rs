//! One control room as the server keeps it for a client: its own [`App`] state (selection,
//! mode, views) and a ratatui terminal of the client's size that renders into bytes. ratatui
//! keeps the last frame and emits only the cells that changed, so what goes down the socket is
//! the damage of each frame as terminal output; the client writes it to its terminal as it is.

use super::app::{App, Intent, Mode};
use super::{encode, keys, scroll, view};
use crate::host::runtime::Runtime;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Shared byte sink the backend writes into; the room takes the bytes after each frame.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shortest time between frames driven by worker output alone, ms: 10 frames a second is enough
/// to watch agents work and halves the control room's cost against 20 (measured with
/// `cargo bench --bench vs_tmux`); typing still echoes at [`super::FRAME_MS`].
pub const OUTPUT_FRAME_MS: u64 = 100;

/// What the server must do after a control room handled input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomOut {
    /// Send these bytes to the client's terminal now (an OSC 52 copy).
    Output(Vec<u8>),
    /// The person detached: close this client, the run goes on.
    Detach,
    /// The person chose to stop the run.
    Stop,
}

/// A control room of one client.
pub struct Room {
    /// The UI state.
    pub app: App,
    term: Terminal<CrosstermBackend<Sink>>,
    sink: Sink,
    /// Terminal rows × cols of the client.
    pub size: (u16, u16),
    /// Something this client sees changed since its last frame (its own input).
    pub dirty: bool,
    /// When its last frame was drawn.
    pub last_frame: std::time::Instant,
    last_input: std::time::Instant,
    /// The transcript replay under way for this room (one at a time): task and where it lands.
    history_job: Option<(usize, HistoryRx)>,
    /// Unix ms at which a tile's crop is due a sample although no screen changes
    /// ([`crate::ui::pane::Tiles::next_sample_at`]).
    resample_at: Option<u64>,
}

type HistoryRx = std::sync::mpsc::Receiver<Result<scroll::History, String>>;

impl Room {
    /// A room of `rows × cols` with this key map. `foreground` rooms stop the run on quit.
    pub fn new(
        rows: u16,
        cols: u16,
        keys: keys::KeyMap,
        logs: std::path::PathBuf,
        foreground: bool,
    ) -> Room {
        let mut app = App::new();
        app.keys = keys;
        app.logs_dir = Some(logs);
        app.foreground = foreground;
        let (sink, term) = terminal(rows, cols);
        Room {
            app,
            term,
            sink,
            size: (rows, cols),
            dirty: true,
            last_frame: std::time::Instant::now() - std::time::Duration::from_secs(1),
            last_input: std::time::Instant::now(),
            history_job: None,
            resample_at: None,
        }
    }

    /// Whether this room needs a frame now (`now` in Unix ms): the run changed, the person
    /// did something, or a tile's crop is due its last sample.
    pub fn wants_frame(&self, changed: bool, now: u64) -> bool {
        changed || self.dirty || self.resample_at.is_some_and(|t| now >= t)
    }

    /// When this room's next frame is due, if one is wanted (`now` in Unix ms): at the frame
    /// interval after the last one, and for a crop's sample not before it is due.
    pub fn next_frame_at(&self, changed: bool, now: u64) -> Option<std::time::Instant> {
        let paced = self.last_frame + self.frame_interval();
        if changed || self.dirty {
            return Some(paced);
        }
        let wait = std::time::Duration::from_millis(self.resample_at?.saturating_sub(now));
        Some(paced.max(std::time::Instant::now() + wait))
    }

    /// The client's terminal changed size: the next frame is drawn in full.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (sink, term) = terminal(rows, cols);
        self.sink = sink;
        self.term = term;
        self.size = (rows, cols);
        self.dirty = true;
    }

    /// Handles one terminal event from the client against the live run.
    pub fn on_input(&mut self, ev: &crossterm::event::Event, rt: &mut Runtime) -> Vec<RoomOut> {
        self.dirty = true;
        self.last_input = std::time::Instant::now();
        self.app.scrollback = (rt.config.scrollback_in_memory(), rt.config.scrollback_lines);
        let screens = super::screens_of(rt);
        let target = match self.app.mode {
            Mode::Attached(t) => t,
            _ => self.app.selected,
        };
        let modes = screens
            .get(&target)
            .map(|p| {
                let p = p.lock().unwrap_or_else(|e| e.into_inner());
                encode::Modes {
                    application_cursor: p.screen().application_cursor(),
                    bracketed_paste: p.screen().bracketed_paste(),
                    mouse: p.screen().mouse_protocol_mode(),
                    mouse_encoding: p.screen().mouse_protocol_encoding(),
                }
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for intent in self.app.on_event(ev, &rt.engine, &screens, modes) {
            match intent {
                Intent::Action(a) => {
                    if let Err(e) = rt.act(a) {
                        self.app.message = Some(e.to_string());
                    }
                }
                Intent::Type(task, bytes) => rt.type_into(task, &bytes),
                Intent::Copy(text) => out.push(RoomOut::Output(scroll::osc52(&text))),
                Intent::LoadHistory(task) => self.load_history(task, rt),
                Intent::Detach => out.push(if self.app.foreground {
                    RoomOut::Stop
                } else {
                    RoomOut::Detach
                }),
                Intent::Stop => out.push(RoomOut::Stop),
            }
        }
        out
    }

    /// Starts replaying `task`'s transcript (of its live worker, or of a finished task) on the
    /// runtime's scrollback lane, unless a replay of it is already under way for this room (a replay of another task is let go: its result
    /// is dropped when it ends).
    fn load_history(&mut self, task: usize, rt: &Runtime) {
        if self.history_job.as_ref().is_some_and(|(t, _)| *t == task) {
            return;
        }
        // The worker's size now; a finished task's last screen size, else the PTY size.
        let size = match rt.workers.get(&task) {
            Some(w) => w
                .parser
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .screen()
                .size(),
            None => rt
                .last_screens
                .emulator(task)
                .map_or(rt.pty_size, |p| p.screen().size()),
        };
        let req = scroll::HistoryRequest {
            task,
            transcript: rt.paths.transcript(&rt.engine.plan.ids[task]),
            limits: crate::host::transcript::TranscriptLimits::default(),
            size,
            lines: rt.config.scrollback_lines,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = rt.on_scrollback_lane(move || {
            let _ = tx.send(scroll::replay_history(&req).map_err(|e| e.to_string()));
        });
        if queued {
            self.history_job = Some((task, rx));
        } else {
            self.app
                .history_ready(task, Err("the scrollback lane has stopped".into()));
        }
    }

    /// Hands a finished transcript replay to the control room state (the next frame shows it).
    fn poll_history(&mut self) {
        let Some((task, rx)) = &self.history_job else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the replay stopped before it ended".into())
            }
        };
        let task = *task;
        self.history_job = None;
        self.app.history_ready(task, result);
        self.dirty = true;
    }

    /// The shortest time between two frames for this client: [`super::FRAME_MS`] while the
    /// person is typing (so an echo shows at once), [`OUTPUT_FRAME_MS`] when only the workers'
    /// output changed (watching panes does not need more than 10 frames a second).
    pub fn frame_interval(&self) -> std::time::Duration {
        let typing = self.last_input.elapsed() < std::time::Duration::from_millis(500);
        std::time::Duration::from_millis(if typing || self.dirty {
            super::FRAME_MS
        } else {
            OUTPUT_FRAME_MS
        })
    }

    /// Leaves attach mode when the attached worker is gone (e.g. it exited).
    pub fn follow_workers(&mut self, rt: &Runtime) {
        if let Mode::Attached(t) = self.app.mode {
            if !rt.workers.contains_key(&t) {
                self.app.mode = Mode::Normal;
                self.app.message = Some(format!("{} exited; detached", rt.engine.plan.ids[t]));
                self.dirty = true;
            }
        }
    }

    /// Draws a frame and returns the bytes that bring the client's terminal up to date (empty
    /// when nothing on screen changed).
    pub fn render(&mut self, rt: &Runtime, now: u64) -> Vec<u8> {
        self.poll_history();
        let screens = super::screens_of(rt);
        let recent: Vec<String> = rt.recent.iter().cloned().collect();
        if let Some(e) = &rt.save_error {
            self.app.message = Some(e.clone());
        }
        let app = &mut self.app;
        let _ = self
            .term
            .draw(|f| view::draw(f, &rt.engine, &screens, &rt.last_screens, app, &recent, now));
        self.dirty = false;
        self.resample_at = self.app.tiles.next_sample_at();
        self.last_frame = std::time::Instant::now();
        damage(std::mem::take(
            &mut *self.sink.0.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Bytes that restore the client's terminal to its first frame state: clear and redraw all.
    pub fn clear_bytes() -> &'static [u8] {
        b"\x1b[0m\x1b[2J\x1b[H"
    }
}

/// What ratatui's crossterm backend writes after a frame in which no cell changed (a style reset
/// and "hide the cursor"; checked against ratatui 0.30 / ratatui-crossterm 0.1).
const NO_DAMAGE: &[u8] = b"\x1b[39m\x1b[49m\x1b[59m\x1b[0m\x1b[?25l";

/// The bytes of a frame worth sending: none when no cell changed.
pub(crate) fn damage(bytes: Vec<u8>) -> Vec<u8> {
    if bytes == NO_DAMAGE {
        Vec::new()
    } else {
        bytes
    }
}

fn terminal(rows: u16, cols: u16) -> (Sink, Terminal<CrosstermBackend<Sink>>) {
    let sink = Sink::default();
    let area = Rect::new(0, 0, cols.max(1), rows.max(1));
    let term = Terminal::with_options(
        CrosstermBackend::new(sink.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(area),
        },
    )
    .expect("a fixed viewport needs no terminal queries");
    // The first frame draws on a cleared screen.
    sink.0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend_from_slice(Room::clear_bytes());
    (sink, term)
}
