//! The control room's own state (selection, mode, input line) and its `update`: input events in,
//! [`Intent`]s out. It holds no policy: every change to a task is an [`Action`] of the one
//! vocabulary, addressed by task id.

use super::dag::DagLayout;
use super::encode::{encode_key, encode_mouse, encode_paste, Modes};
use super::keys::{KeyCommand, KeyMap};
use super::scroll::{self, ScrollState};
use super::view::Screens;
use crate::core::action::{Action, ActionKind};
use crate::core::engine::Engine;
use crate::core::manifest::Status;
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
    /// Sent as raw keys (escapes such as `\e` and `\r` are turned into bytes).
    Keys,
}

/// The screen the person is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Table, DAG and panes.
    Normal,
    /// The help overlay.
    Help,
    /// "Detach (the default) or stop the run?"
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
    /// Reading a worker's scrollback (PgUp, wheel, `/`).
    Scroll(ScrollState),
    /// Reading a task's log.
    Log {
        /// Task index.
        task: usize,
        /// Lines scrolled up from the newest.
        offset: usize,
    },
}

/// Which views share the top of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopViews {
    /// The task table beside the DAG.
    Both,
    /// The task table only.
    Table,
    /// The DAG only.
    Dag,
}

/// What a clickable area on screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    /// A row of the task table.
    Row,
    /// A worker pane.
    Pane,
    /// A DAG node.
    Node,
}

/// What the loop must do after an input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Carry out an action (the server checks it first).
    Action(Action),
    /// Write bytes to a worker's PTY (attach mode).
    Type(usize, Vec<u8>),
    /// Put text on the clipboard (OSC 52 to the person's terminal).
    Copy(String),
    /// Replay this task's transcript off the loop into a [`scroll::History`] and hand it to
    /// [`App::history_ready`] (lines older than its emulator holds were asked for).
    LoadHistory(usize),
    /// Leave the control room; the run goes on in its server.
    Detach,
    /// Stop the run (workers stop; running tasks resume next time), then leave.
    Stop,
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
    pub hits: Vec<(Rect, usize, HitKind)>,
    /// Which views share the top of the screen.
    pub views: TopViews,
    /// Share of the body, in percent, the table and DAG get when worker panes are shown.
    pub top_pct: u16,
    /// The DAG layout (computed once; the plan does not change during a run).
    pub dag: Option<DagLayout>,
    /// The key map in force (defaults plus the config's `[keys]`).
    pub keys: KeyMap,
    /// Where the transcripts and logs are (shown in the log view).
    pub logs_dir: Option<std::path::PathBuf>,
    /// The run lives in this process (`--foreground`): quitting stops it, there is no detach.
    pub foreground: bool,
    /// How tiles show screens larger than themselves: crop or scaled overview.
    pub fit: super::pane::Fit,
    /// Each tile's cells from the last frame, rebuilt only when its screen changed.
    pub tiles: super::pane::Tiles,
    /// The task table's cells from the last frame (with its scroll offset).
    pub table_cache: super::pane::Region<usize>,
    /// The DAG's cells from the last frame (with its click areas).
    pub dag_cache: super::pane::Region<Vec<(Rect, usize)>>,
    /// Lines of scrollback a worker's emulator keeps in memory, and lines a person may read
    /// (config `scrollback_memory_lines` capped, `scrollback_lines`). Older lines than memory
    /// holds come from the transcript only when the first is smaller; (0, 0) never asks.
    pub scrollback: (usize, usize),
    /// The scrollback being read, replayed from the transcript (kept while in scrollback).
    pub history: Option<scroll::History>,
    /// A replay asked for and not here yet: task, what to do when it comes, and how many lines
    /// the emulator held when it was asked (to carry the current match over).
    pub history_wanted: Option<(usize, scroll::Pending, usize)>,
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
            views: TopViews::Both,
            top_pct: 40,
            dag: None,
            keys: KeyMap::default(),
            logs_dir: None,
            foreground: false,
            fit: super::pane::Fit::default(),
            tiles: super::pane::Tiles::default(),
            table_cache: Default::default(),
            dag_cache: Default::default(),
            scrollback: (0, 0),
            history: None,
            history_wanted: None,
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

    /// Handles one terminal event. `modes` are the attached worker's key modes.
    pub fn on_event(
        &mut self,
        ev: &TermEvent,
        engine: &Engine,
        screens: &Screens,
        modes: Modes,
    ) -> Vec<Intent> {
        let out = self.handle(ev, engine, screens, modes);
        // A replayed scrollback lives only while its worker's scrollback is read.
        let reading = match &self.mode {
            Mode::Scroll(st) => Some(st.task),
            _ => None,
        };
        if self
            .history
            .as_ref()
            .is_some_and(|h| Some(h.task) != reading)
        {
            self.history = None;
        }
        if self
            .history_wanted
            .is_some_and(|(t, _, _)| Some(t) != reading)
        {
            self.history_wanted = None;
        }
        out
    }

    fn handle(
        &mut self,
        ev: &TermEvent,
        engine: &Engine,
        screens: &Screens,
        modes: Modes,
    ) -> Vec<Intent> {
        let live = screens.contains_key(&self.selected);
        match ev {
            TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                if let Mode::Scroll(st) = &mut self.mode {
                    let mut st = st.clone();
                    let out = self.on_scroll_key(k, &mut st, screens);
                    if matches!(self.mode, Mode::Scroll(_)) {
                        self.mode = Mode::Scroll(st);
                    }
                    return out;
                }
                self.on_key(k, engine, screens, modes, live)
            }
            TermEvent::Paste(text) => match (&mut self.mode, text) {
                (Mode::Attached(task), _) => vec![Intent::Type(*task, encode_paste(text, modes))],
                (Mode::Input { text: line, .. }, t) => {
                    line.push_str(&t.replace('\n', " "));
                    vec![]
                }
                _ => vec![],
            },
            TermEvent::Mouse(m) if matches!(self.mode, Mode::Attached(_)) => {
                let Mode::Attached(task) = self.mode else {
                    unreachable!()
                };
                let bytes = encode_mouse(m, modes, 1);
                if bytes.is_empty() {
                    vec![]
                } else {
                    vec![Intent::Type(task, bytes)]
                }
            }
            TermEvent::Mouse(m) => {
                let hit = self
                    .hits
                    .iter()
                    .find(|(r, _, _)| {
                        m.column >= r.x
                            && m.column < r.right()
                            && m.row >= r.y
                            && m.row < r.bottom()
                    })
                    .map(|&(_, task, kind)| (task, kind));
                match (m.kind, hit) {
                    (MouseEventKind::Down(MouseButton::Left), Some((task, _))) => {
                        self.selected = task
                    }
                    (MouseEventKind::ScrollUp, Some((task, HitKind::Pane))) => {
                        self.selected = task;
                        return self.scroll_by(task, 3, screens);
                    }
                    (MouseEventKind::ScrollDown, Some((task, HitKind::Pane))) => {
                        return self.scroll_by(task, -3, screens);
                    }
                    (MouseEventKind::ScrollDown, _) => self.move_selection(engine, 1),
                    (MouseEventKind::ScrollUp, _) => self.move_selection(engine, -1),
                    _ => {}
                }
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_key(
        &mut self,
        k: &KeyEvent,
        engine: &Engine,
        screens: &Screens,
        modes: Modes,
        live: bool,
    ) -> Vec<Intent> {
        self.message = None;
        match &mut self.mode {
            Mode::Attached(task) => {
                let task = *task;
                if self.keys.is_detach(k) {
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
                    KeyCode::Enter | KeyCode::Char('d') | KeyCode::Char('D') => {
                        vec![Intent::Detach]
                    }
                    KeyCode::Char('s') | KeyCode::Char('S') => vec![Intent::Stop],
                    KeyCode::Char('y') | KeyCode::Char('Y') if self.foreground => {
                        vec![Intent::Stop]
                    }
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
                        let id = engine.plan.ids[task].clone();
                        let kind = match purpose {
                            InputPurpose::Nudge => ActionKind::Nudge,
                            InputPurpose::Answer => ActionKind::Answer,
                            InputPurpose::Keys => ActionKind::Keys,
                        };
                        return vec![Intent::Action(Action::with_text(kind, id, text))];
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
            Mode::Log { offset, .. } => {
                match k.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('l') => {
                        self.mode = Mode::Normal
                    }
                    KeyCode::Up | KeyCode::Char('k') => *offset += 1,
                    KeyCode::Down | KeyCode::Char('j') => *offset = offset.saturating_sub(1),
                    KeyCode::PageUp => *offset += 10,
                    KeyCode::PageDown => *offset = offset.saturating_sub(10),
                    _ => {}
                }
                return vec![];
            }
            Mode::Normal | Mode::Scroll(_) => {}
        }
        let Some(action) = self.keys.action_for(k) else {
            return vec![];
        };
        let sel = self.selected;
        let id = engine.plan.ids[sel].clone();
        let need_worker = |me: &mut App| {
            me.message = Some(format!("{} has no running worker", engine.plan.ids[sel]));
            vec![]
        };
        match action {
            KeyCommand::Up => self.move_selection(engine, -1),
            KeyCommand::Down => self.move_selection(engine, 1),
            KeyCommand::Attach => {
                if live {
                    self.mode = Mode::Attached(sel);
                } else {
                    return need_worker(self);
                }
            }
            KeyCommand::Zoom => self.zoom = !self.zoom,
            KeyCommand::Overview => {
                self.fit = self.fit.toggled();
                self.message = Some(match self.fit {
                    super::pane::Fit::Crop => "tiles: crop (the rows that changed last)".into(),
                    super::pane::Fit::Overview => "tiles: scaled overview of whole screens".into(),
                });
            }
            KeyCommand::CycleViews => {
                self.views = match self.views {
                    TopViews::Both => TopViews::Table,
                    TopViews::Table => TopViews::Dag,
                    TopViews::Dag => TopViews::Both,
                }
            }
            KeyCommand::GrowTop => self.top_pct = (self.top_pct + 10).min(90),
            KeyCommand::ShrinkTop => self.top_pct = self.top_pct.saturating_sub(10).max(10),
            KeyCommand::ScrollBack => {
                if !live && !self.replayable(engine, sel) {
                    return need_worker(self);
                }
                let page = self.page_rows(screens, sel);
                return self.scroll_by(sel, page as i64, screens);
            }
            KeyCommand::Log => {
                self.mode = Mode::Log {
                    task: sel,
                    offset: 0,
                }
            }
            KeyCommand::Search => {
                if !live && !self.replayable(engine, sel) {
                    return need_worker(self);
                }
                let mut st = ScrollState::new(sel);
                st.editing = true;
                self.mode = Mode::Scroll(st);
            }
            KeyCommand::Filter => {
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
            KeyCommand::Nudge | KeyCommand::Answer | KeyCommand::Keys => {
                if !live {
                    return need_worker(self);
                }
                let (purpose, text) = match action {
                    KeyCommand::Nudge => {
                        (InputPurpose::Nudge, engine.policy.heal.nudge_text.clone())
                    }
                    KeyCommand::Answer => (InputPurpose::Answer, String::new()),
                    _ => (InputPurpose::Keys, String::new()),
                };
                self.mode = Mode::Input {
                    purpose,
                    task: sel,
                    text,
                };
            }
            KeyCommand::Yes | KeyCommand::No => {
                if !live {
                    return need_worker(self);
                }
                let a = if action == KeyCommand::Yes { "y" } else { "n" };
                return vec![Intent::Action(Action::with_text(ActionKind::Answer, id, a))];
            }
            KeyCommand::TogglePause => {
                return vec![Intent::Action(Action::global(if engine.paused {
                    ActionKind::ResumeScheduler
                } else {
                    ActionKind::PauseScheduler
                }))]
            }
            KeyCommand::PauseAgent => {
                let paused = engine.paused_agents.contains_key(
                    engine
                        .task(sel)
                        .agent
                        .as_deref()
                        .unwrap_or(&engine.policy.default_agent),
                );
                let kind = if paused {
                    ActionKind::ResumeAgent
                } else {
                    ActionKind::PauseAgent
                };
                return vec![Intent::Action(Action::on(kind, id))];
            }
            KeyCommand::MoreParallel | KeyCommand::LessParallel => {
                return vec![Intent::Action(Action::global(
                    action.action().expect("a run action"),
                ))]
            }
            KeyCommand::Retry
            | KeyCommand::Restart
            | KeyCommand::Resume
            | KeyCommand::Kill
            | KeyCommand::Fail
            | KeyCommand::Skip
            | KeyCommand::MarkDone
            | KeyCommand::Commit
            | KeyCommand::Escalate => {
                return vec![Intent::Action(Action::on(
                    action.action().expect("a task action"),
                    id,
                ))]
            }
            KeyCommand::Detach => return vec![Intent::Detach],
            KeyCommand::NextAttention => {
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
            KeyCommand::Help => self.mode = Mode::Help,
            KeyCommand::Quit => {
                if engine.is_settled() && engine.live_workers().count() == 0 {
                    // Nothing left to stop: leaving ends a settled run's server too.
                    return vec![Intent::Detach];
                }
                self.mode = Mode::ConfirmQuit;
            }
        }
        vec![]
    }
}

impl App {
    /// Rows a page moves in `task`'s scrollback: its screen's less two.
    fn page_rows(&self, screens: &Screens, task: usize) -> usize {
        screens
            .get(&task)
            .map(|p| {
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .screen()
                    .size()
                    .0 as usize
            })
            .or_else(|| self.history_of(task).map(|h| h.rows))
            .unwrap_or(24)
            .saturating_sub(2)
            .max(1)
    }

    /// Whether a task without a worker has scrollback to read from its transcript: it was
    /// started at least once, and the transcript is read (the room set [`App::scrollback`]).
    fn replayable(&self, engine: &Engine, task: usize) -> bool {
        self.scrollback.1 > 0 && engine.task(task).attempts.unwrap_or(0) > 0
    }

    /// The replayed scrollback of `task`, when it is here.
    fn history_of(&self, task: usize) -> Option<&scroll::History> {
        self.history.as_ref().filter(|h| h.task == task)
    }

    /// Whether lines older than an emulator holding `depth` rows of scrollback may be in the
    /// transcript only: it holds all it keeps in memory, and a person may read more.
    fn beyond_memory(&self, depth: usize) -> bool {
        let (memory, readable) = self.scrollback;
        memory < readable && depth >= memory
    }

    /// Asks (once) for `task`'s scrollback replayed from its transcript, to do `then` when it
    /// comes; `held` is how many lines the emulator holds now.
    fn want_history(&mut self, task: usize, then: scroll::Pending, held: usize) -> Vec<Intent> {
        let asked = self.history_wanted.is_some_and(|(t, _, _)| t == task);
        self.history_wanted = Some((task, then, held));
        self.message = Some("reading older lines from the transcript…".into());
        if asked {
            vec![]
        } else {
            vec![Intent::LoadHistory(task)]
        }
    }

    /// Moves to `want` rows above the screen (clamped to what there is), asking for the
    /// transcript replay when `want` is past what the emulator holds in memory.
    /// `p` is the worker's emulator; `None` for a task whose worker exited (all of its
    /// scrollback comes from the transcript).
    fn scroll_to(
        &mut self,
        st: &mut ScrollState,
        want: usize,
        top: bool,
        p: Option<&SharedEmulator>,
    ) -> Vec<Intent> {
        if let Some(h) = self.history_of(st.task) {
            st.offset = want.min(h.depth);
            if st.offset == 0 && p.is_some() {
                // Back at the newest line: the live emulator again (the replay is a snapshot).
                self.history = None;
                st.found = None;
            }
            return vec![];
        }
        let (depth, held, older) = match p {
            Some(p) => {
                let mut em = p.lock().unwrap_or_else(|e| e.into_inner());
                let depth = scroll::depth(&mut em);
                let held = depth + em.screen().size().0 as usize;
                (depth, held, want > depth && self.beyond_memory(depth))
            }
            None => (0, 0, true),
        };
        st.offset = want.min(depth);
        if older {
            let then = if top {
                scroll::Pending::Top
            } else {
                scroll::Pending::Offset(want)
            };
            return self.want_history(st.task, then, held);
        }
        vec![]
    }

    /// Scrolls `task`'s pane by `delta` rows (positive = back in time), entering or leaving
    /// scrollback mode as needed.
    fn scroll_by(&mut self, task: usize, delta: i64, screens: &Screens) -> Vec<Intent> {
        let p = screens.get(&task);
        let mut st = match &self.mode {
            Mode::Scroll(st) if st.task == task => st.clone(),
            _ => ScrollState::new(task),
        };
        let want = (st.offset as i64 + delta).max(0) as usize;
        let out = self.scroll_to(&mut st, want, false, p);
        self.mode = if st.offset == 0 && st.query.is_empty() && out.is_empty() {
            Mode::Normal
        } else {
            Mode::Scroll(st)
        };
        out
    }

    fn on_scroll_key(
        &mut self,
        k: &KeyEvent,
        st: &mut ScrollState,
        screens: &Screens,
    ) -> Vec<Intent> {
        let p = screens.get(&st.task);
        let replayed = self.history_of(st.task).is_some()
            || self.history_wanted.is_some_and(|(t, _, _)| t == st.task);
        if p.is_none() && !replayed && !st.editing {
            self.mode = Mode::Normal;
            return vec![];
        }
        if st.editing {
            match k.code {
                KeyCode::Esc => st.editing = false,
                KeyCode::Enter => {
                    st.editing = false;
                    return self.search(st, p, true, true);
                }
                KeyCode::Backspace => {
                    st.query.pop();
                }
                KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                    st.query.push(c)
                }
                _ => {}
            }
            return vec![];
        }
        let page = self.page_rows(screens, st.task);
        let off = st.offset;
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => self.mode = Mode::Normal,
            KeyCode::PageUp => return self.scroll_to(st, off + page, false, p),
            KeyCode::PageDown => return self.scroll_to(st, off.saturating_sub(page), false, p),
            KeyCode::Up | KeyCode::Char('k') => return self.scroll_to(st, off + 1, false, p),
            KeyCode::Down | KeyCode::Char('j') => {
                return self.scroll_to(st, off.saturating_sub(1), false, p)
            }
            KeyCode::Home | KeyCode::Char('g') => return self.scroll_to(st, usize::MAX, true, p),
            KeyCode::End | KeyCode::Char('G') => return self.scroll_to(st, 0, false, p),
            KeyCode::Char('/') => {
                st.editing = true;
                st.query.clear();
            }
            KeyCode::Char('n') => return self.search(st, p, true, false),
            KeyCode::Char('N') => return self.search(st, p, false, false),
            KeyCode::Char('y') => {
                let (lines, rows) = match (self.history_of(st.task), p) {
                    (Some(h), _) => (h.lines.clone(), h.rows),
                    (None, Some(p)) => {
                        let mut em = p.lock().unwrap_or_else(|e| e.into_inner());
                        let rows = em.screen().size().0 as usize;
                        (scroll::all_lines(&mut em), rows)
                    }
                    (None, None) => return vec![],
                };
                let text = match st.found.and_then(|l| lines.get(l)) {
                    Some(line) => line.trim_end().to_string(),
                    None => {
                        let end = lines.len().saturating_sub(st.offset);
                        lines[end.saturating_sub(rows)..end]
                            .iter()
                            .map(|l| l.trim_end())
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                };
                self.message = Some(format!(
                    "copied {} characters (OSC 52)",
                    text.chars().count()
                ));
                return vec![Intent::Copy(text)];
            }
            _ => {}
        }
        vec![]
    }

    /// Moves to the next match older (`back`) or newer than the current one; `fresh` starts
    /// from the live screen. An older match not in memory is looked for in the transcript
    /// replay (asked for here, searched when it comes).
    fn search(
        &mut self,
        st: &mut ScrollState,
        p: Option<&SharedEmulator>,
        back: bool,
        fresh: bool,
    ) -> Vec<Intent> {
        if let Some(h) = self.history_of(st.task) {
            let from = match (st.found, fresh) {
                (Some(l), false) => l,
                _ => h.lines.len(),
            };
            let hit = scroll::find(&h.lines, &st.query, from, back);
            let (total, rows, depth) = (h.lines.len(), h.rows, h.depth);
            self.show_match(st, hit, total, rows, depth);
            return vec![];
        }
        let Some(p) = p else {
            // No worker: the whole scrollback is in the transcript.
            let then = scroll::Pending::Search {
                back,
                from_bottom: None,
            };
            return self.want_history(st.task, then, 0);
        };
        let mut em = p.lock().unwrap_or_else(|e| e.into_inner());
        let lines = scroll::all_lines(&mut em);
        let rows = em.screen().size().0 as usize;
        let in_memory = scroll::depth(&mut em);
        drop(em);
        let depth = lines.len().saturating_sub(rows);
        let from = match (st.found, fresh) {
            (Some(l), false) => l,
            _ => lines.len(),
        };
        let hit = scroll::find(&lines, &st.query, from, back);
        if hit.is_none() && back && !st.query.is_empty() && self.beyond_memory(in_memory) {
            let from_bottom = (from < lines.len()).then(|| lines.len() - from);
            return self.want_history(
                st.task,
                scroll::Pending::Search { back, from_bottom },
                lines.len(),
            );
        }
        self.show_match(st, hit, lines.len(), rows, depth);
        vec![]
    }

    /// Shows match `hit` (a line of `total`, `rows` on screen, `depth` above it), or says the
    /// query was not found.
    fn show_match(
        &mut self,
        st: &mut ScrollState,
        hit: Option<usize>,
        total: usize,
        rows: usize,
        depth: usize,
    ) {
        match hit {
            Some(l) => {
                st.found = Some(l);
                st.offset = scroll::offset_showing(l, total, rows, depth);
                self.message = None;
            }
            None => self.message = Some(format!("{:?} not found", st.query)),
        }
    }

    /// The transcript replay of `task` asked for by [`Intent::LoadHistory`] arrived (or failed,
    /// with the reason): the scrollback view reads it from now on and does what was waiting
    /// (the offset asked for, the top, a search). Ignored when the person left that scrollback.
    pub fn history_ready(&mut self, task: usize, result: Result<scroll::History, String>) {
        let Some((t, then, held)) = self.history_wanted else {
            return;
        };
        let Mode::Scroll(st) = &self.mode else {
            return;
        };
        if t != task || st.task != task {
            return;
        }
        let mut st = st.clone();
        self.history_wanted = None;
        let h = match result {
            Ok(h) => h,
            Err(e) => {
                self.message = Some(format!(
                    "older lines are not available: {}",
                    crate::core::text::escape_control(&e)
                ));
                return;
            }
        };
        self.message = None;
        let total = h.lines.len();
        // Lines counted from the end are the same lines in both (the replay ends where the
        // worker's output was when it was read).
        st.found = st
            .found
            .map(|l| total.saturating_sub(held.saturating_sub(l)));
        match then {
            scroll::Pending::Offset(n) => st.offset = n.min(h.depth),
            scroll::Pending::Top => st.offset = h.depth,
            scroll::Pending::Search { back, from_bottom } => {
                let from = from_bottom.map_or(total, |b| total.saturating_sub(b));
                let hit = scroll::find(&h.lines, &st.query, from, back);
                self.show_match(&mut st, hit, total, h.rows, h.depth);
            }
        }
        self.history = Some(h);
        self.mode = Mode::Scroll(st);
    }
}

type SharedEmulator = std::sync::Arc<std::sync::Mutex<crate::host::worker::Emulator>>;

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::manifest::Manifest;
    use crate::core::plan::Plan;
    use crate::host::worker::Term;
    use std::sync::{Arc, Mutex};

    fn engine() -> Engine {
        let m = Manifest::parse(include_str!("../../tests/fixtures/seed-manifest.json")).unwrap();
        let plan = Plan::build(&m).unwrap();
        Engine::new(m, plan, Config::defaults(), 0).unwrap()
    }

    fn screens(task: usize, lines: usize) -> Screens {
        let mut p = vt100::Parser::new_with_callbacks(6, 30, 200, Term::default());
        for i in 0..lines {
            p.process(format!("line {i}\r\n").as_bytes());
        }
        let mut s = Screens::new();
        s.insert(task, Arc::new(Mutex::new(p)));
        s
    }

    fn key(app: &mut App, e: &Engine, s: &Screens, code: KeyCode) -> Vec<Intent> {
        app.on_event(
            &TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)),
            e,
            s,
            Modes::default(),
        )
    }

    #[test]
    fn search_types_into_the_query_then_finds_and_copies() {
        let e = engine();
        let s = screens(0, 40);
        let mut app = App::new();
        assert!(key(&mut app, &e, &s, KeyCode::Char('/')).is_empty());
        for c in "line 7".chars() {
            assert!(
                key(&mut app, &e, &s, KeyCode::Char(c)).is_empty(),
                "typing {c} stays in the query"
            );
        }
        key(&mut app, &e, &s, KeyCode::Enter);
        let Mode::Scroll(st) = &app.mode else {
            panic!("in scrollback: {:?}", app.mode)
        };
        assert_eq!(st.query, "line 7");
        assert_eq!(st.found, Some(7));
        assert!(st.offset > 0);
        let out = key(&mut app, &e, &s, KeyCode::Char('y'));
        assert_eq!(out, vec![Intent::Copy("line 7".into())]);
        key(&mut app, &e, &s, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn page_up_scrolls_back_and_down_to_live_leaves_scrollback() {
        let e = engine();
        let s = screens(0, 40);
        let mut app = App::new();
        key(&mut app, &e, &s, KeyCode::PageUp);
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert_eq!(st.offset, 4);
        key(&mut app, &e, &s, KeyCode::PageDown);
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert_eq!(st.offset, 0);
    }

    /// A worker that printed `printed` lines (`row 0.` …) into its transcript and into an
    /// emulator keeping `memory` lines of scrollback; the app may read `readable`.
    fn worker_with_transcript(
        printed: usize,
        memory: usize,
        readable: usize,
    ) -> (tempfile::TempDir, scroll::HistoryRequest, Screens, App) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1.log");
        let limits = crate::host::transcript::TranscriptLimits::default();
        let mut t = crate::host::transcript::Transcript::open(&path, limits).unwrap();
        let mut p = vt100::Parser::new_with_callbacks(6, 30, memory, Term::default());
        for i in 0..printed {
            let line = format!("row {i}.\r\n");
            std::io::Write::write_all(&mut t, line.as_bytes()).unwrap();
            p.process(line.as_bytes());
        }
        let mut s = Screens::new();
        s.insert(0, Arc::new(Mutex::new(p)));
        let req = scroll::HistoryRequest {
            task: 0,
            transcript: path,
            limits,
            size: (6, 30),
            lines: readable,
        };
        let mut app = App::new();
        app.scrollback = (memory, readable);
        (dir, req, s, app)
    }

    #[test]
    fn going_to_the_top_past_memory_replays_the_transcript() {
        let e = engine();
        let (_dir, req, s, mut app) = worker_with_transcript(3000, 100, 2000);
        key(&mut app, &e, &s, KeyCode::PageUp);
        let out = key(&mut app, &e, &s, KeyCode::Char('g'));
        assert_eq!(out, vec![Intent::LoadHistory(0)]);
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert_eq!(
            st.offset, 100,
            "the oldest line in memory while the replay runs"
        );
        assert!(
            key(&mut app, &e, &s, KeyCode::Char('g')).is_empty(),
            "asked once"
        );
        let h = scroll::replay_history(&req).unwrap();
        assert_eq!(h.depth, 2000);
        app.history_ready(0, Ok(h));
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert_eq!(st.offset, 2000, "at the top of the replayed scrollback");
        let h = app.history.as_ref().unwrap();
        // 2000 lines of scrollback and the 6-row screen (the last row empty): rows 995…2999.
        assert_eq!(h.lines[0].trim_end(), "row 995.");
        assert_eq!(h.lines[h.lines.len() - 2].trim_end(), "row 2999.");
        // Copy takes the screenful shown, from the replay.
        let out = key(&mut app, &e, &s, KeyCode::Char('y'));
        assert_eq!(
            out,
            vec![Intent::Copy(
                "row 995.\nrow 996.\nrow 997.\nrow 998.\nrow 999.\nrow 1000.".into()
            )]
        );
        // The newest line is the live emulator's again; leaving scrollback drops a replay.
        key(&mut app, &e, &s, KeyCode::Char('G'));
        assert!(app.history.is_none(), "G returns to the live screen");
        key(&mut app, &e, &s, KeyCode::Char('g'));
        app.history_ready(0, Ok(scroll::replay_history(&req).unwrap()));
        assert!(app.history.is_some());
        key(&mut app, &e, &s, KeyCode::Esc);
        assert!(app.history.is_none() && app.history_wanted.is_none());
    }

    #[test]
    fn a_search_older_than_memory_finds_its_line_in_the_replay() {
        let e = engine();
        let (_dir, req, s, mut app) = worker_with_transcript(3000, 100, 2000);
        key(&mut app, &e, &s, KeyCode::Char('/'));
        for c in "row 2950.".chars() {
            key(&mut app, &e, &s, KeyCode::Char(c));
        }
        assert!(
            key(&mut app, &e, &s, KeyCode::Enter).is_empty(),
            "found in memory"
        );
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert!(st.found.is_some());
        key(&mut app, &e, &s, KeyCode::Char('/'));
        for c in "row 1200.".chars() {
            key(&mut app, &e, &s, KeyCode::Char(c));
        }
        let out = key(&mut app, &e, &s, KeyCode::Enter);
        assert_eq!(out, vec![Intent::LoadHistory(0)], "not in memory: replay");
        app.history_ready(0, Ok(scroll::replay_history(&req).unwrap()));
        let Mode::Scroll(st) = app.mode.clone() else {
            panic!("{:?}", app.mode)
        };
        let h = app.history.as_ref().unwrap();
        let found = st.found.expect("found in the replay");
        assert_eq!(h.lines[found].trim_end(), "row 1200.");
        assert!(
            st.offset > 100,
            "shown past what memory holds: {}",
            st.offset
        );
        // n goes on to older matches within the replay; none is left.
        assert!(key(&mut app, &e, &s, KeyCode::Char('n')).is_empty());
        assert_eq!(app.message.as_deref(), Some("\"row 1200.\" not found"));
    }

    #[test]
    fn everything_in_memory_never_asks_for_the_transcript() {
        let e = engine();
        let (_dir, _req, s, mut app) = worker_with_transcript(50, 100, 2000);
        key(&mut app, &e, &s, KeyCode::PageUp);
        assert!(key(&mut app, &e, &s, KeyCode::Char('g')).is_empty());
        key(&mut app, &e, &s, KeyCode::Char('/'));
        for c in "absent".chars() {
            key(&mut app, &e, &s, KeyCode::Char(c));
        }
        assert!(key(&mut app, &e, &s, KeyCode::Enter).is_empty());
        assert!(app.history_wanted.is_none());
    }

    #[test]
    fn a_finished_task_s_scrollback_is_read_from_its_transcript() {
        let mut e = engine();
        let (_dir, mut req, _, mut app) = worker_with_transcript(300, 100, 2000);
        let none = Screens::new();
        let id = e.plan.ids[0].clone();
        key(&mut app, &e, &none, KeyCode::PageUp);
        assert_eq!(
            app.message,
            Some(format!("{id} has no running worker")),
            "never started: nothing to read"
        );
        e.manifest.task_mut(&id).unwrap().attempts = Some(1);
        let out = key(&mut app, &e, &none, KeyCode::PageUp);
        assert_eq!(out, vec![Intent::LoadHistory(0)]);
        req.lines = 2000;
        app.history_ready(0, Ok(scroll::replay_history(&req).unwrap()));
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        assert_eq!(
            st.offset, 22,
            "a page up (24 rows less two: no screen to measure)"
        );
        // The newest line is still the replay's (there is no live screen to go back to).
        key(&mut app, &e, &none, KeyCode::Char('G'));
        assert!(app.history.is_some());
        key(&mut app, &e, &none, KeyCode::Char('/'));
        for c in "row 7.".chars() {
            key(&mut app, &e, &none, KeyCode::Char(c));
        }
        assert!(key(&mut app, &e, &none, KeyCode::Enter).is_empty());
        let Mode::Scroll(st) = &app.mode else {
            panic!("{:?}", app.mode)
        };
        let h = app.history.as_ref().unwrap();
        assert_eq!(h.lines[st.found.unwrap()].trim_end(), "row 7.");
        key(&mut app, &e, &none, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Normal);
        assert!(app.history.is_none());
    }

    #[test]
    fn next_attention_jumps_to_the_task_that_needs_a_person() {
        let mut e = engine();
        e.manifest.task_mut("t5").unwrap().status = Status::NeedsAttention;
        let s = Screens::new();
        let mut app = App::new();
        key(&mut app, &e, &s, KeyCode::Char('!'));
        assert_eq!(e.plan.ids[app.selected], "t5");
    }
}
