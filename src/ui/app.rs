//! The control room's own state (selection, mode, input line) and its `update`: input events in,
//! [`Intent`]s out. It holds no policy: every change to a task is an engine [`Command`].

use super::encode::{encode_key, encode_paste, Modes};
use super::keys::{action_for, is_detach, Action};
use crate::engine::{Command, Engine};
use crate::manifest::Status;
use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use ratatui::layout::Rect;
use ratatui::widgets::TableState;

/// What a line of typed text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputPurpose {
    /// Sent followed by Enter as a nudge.
    Nudge,
    /// Sent followed by Enter as an answer.
    Answer,
}

/// The screen the person is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Table, DAG and panes.
    Normal,
    /// The help overlay.
    Help,
    /// "Quit and stop workers?"
    ConfirmQuit,
    /// Editing a line to send to a worker.
    Input {
        /// Nudge or answer.
        purpose: InputPurpose,
        /// Task index.
        task: usize,
        /// The text so far.
        text: String,
    },
    /// Attached to a worker: keys pass through; Ctrl-] detaches.
    Attached(usize),
}

/// What the loop must do after an input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Give the engine a command.
    Command(Command),
    /// Write bytes to a worker's PTY (attach mode).
    Type(usize, Vec<u8>),
    /// Leave the control room.
    Quit,
}

/// UI state.
#[derive(Debug)]
pub struct App {
    /// Selected task index.
    pub selected: usize,
    /// Current mode.
    pub mode: Mode,
    /// Show only the selected worker's pane, full size.
    pub zoom: bool,
    /// Show only tasks with this status.
    pub filter: Option<Status>,
    /// A one-line message for the footer.
    pub message: Option<String>,
    /// Table scroll state.
    pub table_state: TableState,
    /// Screen areas that select a task when clicked (filled by the last draw).
    pub hits: Vec<(Rect, usize)>,
}

impl App {
    /// A fresh control room state.
    pub fn new() -> App {
        App {
            selected: 0,
            mode: Mode::Normal,
            zoom: false,
            filter: None,
            message: None,
            table_state: TableState::default(),
            hits: Vec::new(),
        }
    }

    /// Task indices the table shows (after the filter), in manifest order.
    pub fn visible_tasks(&self, engine: &Engine) -> Vec<usize> {
        (0..engine.plan.len())
            .filter(|&i| self.filter.is_none_or(|f| engine.status(i) == f))
            .collect()
    }

    fn move_selection(&mut self, engine: &Engine, delta: i32) {
        let visible = self.visible_tasks(engine);
        if visible.is_empty() {
            return;
        }
        let pos = visible
            .iter()
            .position(|&i| i == self.selected)
            .unwrap_or(0) as i32;
        let next = (pos + delta).clamp(0, visible.len() as i32 - 1) as usize;
        self.selected = visible[next];
    }

    /// Handles one terminal event. `modes` are the attached worker's key modes, `live` tells
    /// whether the selected task has a worker.
    pub fn on_event(
        &mut self,
        ev: &TermEvent,
        engine: &Engine,
        modes: Modes,
        live: bool,
    ) -> Vec<Intent> {
        match ev {
            TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                self.on_key(k, engine, modes, live)
            }
            TermEvent::Paste(text) => match (&mut self.mode, text) {
                (Mode::Attached(task), _) => vec![Intent::Type(*task, encode_paste(text, modes))],
                (Mode::Input { text: line, .. }, t) => {
                    line.push_str(&t.replace('\n', " "));
                    vec![]
                }
                _ => vec![],
            },
            TermEvent::Mouse(m) if !matches!(self.mode, Mode::Attached(_)) => {
                match m.kind {
                    MouseEventKind::Down(MouseButton::Left) => {
                        if let Some(&(_, task)) = self.hits.iter().find(|(r, _)| {
                            m.column >= r.x
                                && m.column < r.right()
                                && m.row >= r.y
                                && m.row < r.bottom()
                        }) {
                            self.selected = task;
                        }
                    }
                    MouseEventKind::ScrollDown => self.move_selection(engine, 1),
                    MouseEventKind::ScrollUp => self.move_selection(engine, -1),
                    _ => {}
                }
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_key(&mut self, k: &KeyEvent, engine: &Engine, modes: Modes, live: bool) -> Vec<Intent> {
        self.message = None;
        match &mut self.mode {
            Mode::Attached(task) => {
                let task = *task;
                if is_detach(k) {
                    self.mode = Mode::Normal;
                    return vec![];
                }
                let bytes = encode_key(k, modes);
                return if bytes.is_empty() {
                    vec![]
                } else {
                    vec![Intent::Type(task, bytes)]
                };
            }
            Mode::Help => {
                if matches!(
                    k.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    self.mode = Mode::Normal;
                }
                return vec![];
            }
            Mode::ConfirmQuit => {
                return match k.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => vec![Intent::Quit],
                    _ => {
                        self.mode = Mode::Normal;
                        vec![]
                    }
                };
            }
            Mode::Input {
                purpose,
                task,
                text,
            } => {
                match k.code {
                    KeyCode::Esc => self.mode = Mode::Normal,
                    KeyCode::Enter => {
                        let (task, text, purpose) = (*task, text.clone(), *purpose);
                        self.mode = Mode::Normal;
                        return vec![Intent::Command(match purpose {
                            InputPurpose::Nudge => Command::Nudge(task, Some(text)),
                            InputPurpose::Answer => Command::Answer(task, format!("{text}\r")),
                        })];
                    }
                    KeyCode::Backspace => {
                        text.pop();
                    }
                    KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        text.clear()
                    }
                    KeyCode::Char(c)
                        if !k
                            .modifiers
                            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                    {
                        text.push(c)
                    }
                    _ => {}
                }
                return vec![];
            }
            Mode::Normal => {}
        }
        let Some(action) = action_for(k) else {
            return vec![];
        };
        let sel = self.selected;
        let need_worker = |me: &mut App| {
            me.message = Some(format!("{} has no running worker", engine.plan.ids[sel]));
            vec![]
        };
        match action {
            Action::Up => self.move_selection(engine, -1),
            Action::Down => self.move_selection(engine, 1),
            Action::Attach => {
                if live {
                    self.mode = Mode::Attached(sel);
                } else {
                    return need_worker(self);
                }
            }
            Action::Zoom => self.zoom = !self.zoom,
            Action::Filter => {
                let present: Vec<Status> = Status::ALL
                    .into_iter()
                    .filter(|s| (0..engine.plan.len()).any(|i| engine.status(i) == *s))
                    .collect();
                self.filter = match self.filter {
                    None => present.first().copied(),
                    Some(f) => present.iter().skip_while(|s| **s != f).nth(1).copied(),
                };
                if let Some(first) = self.visible_tasks(engine).first() {
                    if !self.visible_tasks(engine).contains(&self.selected) {
                        self.selected = *first;
                    }
                }
            }
            Action::Retry => return vec![Intent::Command(Command::Retry(sel))],
            Action::Nudge => {
                if !live {
                    return need_worker(self);
                }
                self.mode = Mode::Input {
                    purpose: InputPurpose::Nudge,
                    task: sel,
                    text: engine.config.heal.nudge_text.clone(),
                };
            }
            Action::Answer => {
                if !live {
                    return need_worker(self);
                }
                self.mode = Mode::Input {
                    purpose: InputPurpose::Answer,
                    task: sel,
                    text: String::new(),
                };
            }
            Action::Yes | Action::No => {
                if !live {
                    return need_worker(self);
                }
                let a = if action == Action::Yes { "y\r" } else { "n\r" };
                return vec![Intent::Command(Command::Answer(sel, a.into()))];
            }
            Action::Kill => return vec![Intent::Command(Command::Kill(sel))],
            Action::Skip => return vec![Intent::Command(Command::Skip(sel))],
            Action::MarkDone => return vec![Intent::Command(Command::MarkDone(sel))],
            Action::TogglePause => {
                return vec![Intent::Command(if engine.paused {
                    Command::Resume
                } else {
                    Command::Pause
                })]
            }
            Action::MoreParallel => {
                return vec![Intent::Command(Command::SetMaxParallel(
                    engine.max_parallel + 1,
                ))]
            }
            Action::LessParallel => {
                return vec![Intent::Command(Command::SetMaxParallel(
                    engine.max_parallel.saturating_sub(1).max(1),
                ))]
            }
            Action::NextAttention => {
                let n = engine.plan.len();
                match (1..=n)
                    .map(|d| (sel + d) % n)
                    .find(|&i| engine.status(i) == Status::NeedsAttention)
                {
                    Some(i) => {
                        self.filter = None;
                        self.selected = i;
                    }
                    None => self.message = Some("no task needs attention".into()),
                }
            }
            Action::Help => self.mode = Mode::Help,
            Action::Quit => {
                if engine.live_workers().count() > 0 {
                    self.mode = Mode::ConfirmQuit;
                } else {
                    return vec![Intent::Quit];
                }
            }
        }
        vec![]
    }
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}
