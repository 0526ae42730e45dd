//! The key table: ONE list drives both dispatch and the `?` help overlay. Every binding can be
//! changed in `switchyard.toml` under `[keys]` (`retry = "R"`, `quit = ["q", "ctrl-c"]`,
//! `detach = "ctrl-b"`); key names are described at [`parse_key`].

use crate::core::action::ActionKind;
use crate::core::config::KeyNames;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

/// What a key does in the control room (outside attach mode): a view command, or an action of
/// the one vocabulary ([`KeyCommand::action`]) on the selected task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommand {
    /// Select the previous task.
    Up,
    /// Select the next task.
    Down,
    /// Attach to the selected worker (keys go to its PTY).
    Attach,
    /// Restart the selected task now.
    Retry,
    /// Type a nudge into the selected worker (the text can be edited first).
    Nudge,
    /// Answer the selected worker's prompt with `y` + Enter.
    Yes,
    /// Answer the selected worker's prompt with `n` + Enter.
    No,
    /// Type custom text into the selected worker.
    Answer,
    /// Kill the selected worker (task becomes `error`).
    Kill,
    /// Skip the selected task (dependents may go on).
    Skip,
    /// Mark the selected task complete by hand.
    MarkDone,
    /// Pause or resume starting new workers.
    TogglePause,
    /// One more worker at once.
    MoreParallel,
    /// One fewer worker at once.
    LessParallel,
    /// Select the next task that needs attention.
    NextAttention,
    /// Zoom the selected worker's pane / back to the grid.
    Zoom,
    /// Tiles: crop (the rows that changed last) / scaled overview of the whole screen.
    Overview,
    /// Cycle the table's status filter (all, then each status present).
    Filter,
    /// Cycle the top views: table and DAG, table only, DAG only.
    CycleViews,
    /// Give the top views more rows.
    GrowTop,
    /// Give the worker panes more rows.
    ShrinkTop,
    /// Scroll the selected worker's screen back (enters scrollback).
    ScrollBack,
    /// Search the selected worker's scrollback.
    Search,
    /// Show the selected task's log: its journal entries and where its files are.
    Log,
    /// Show or hide the help overlay.
    Help,
    /// Quit: asks whether to detach (the default) or stop the run.
    Quit,
    /// Detach this control room: the server and its workers go on.
    Detach,
    /// Restart the selected worker with its screen tail as context (counts an attempt).
    Restart,
    /// Restart the selected worker with its profile's resume command.
    Resume,
    /// Type raw keys (with escapes such as `\e`, `\r`) into the selected worker.
    Keys,
    /// Commit the selected task's uncommitted changes.
    Commit,
    /// Hand the selected task to a person (needs_attention).
    Escalate,
    /// Give up on the selected task (error).
    Fail,
    /// Pause (or resume) every task of the selected task's agent.
    PauseAgent,
}

impl KeyCommand {
    /// The action of the one vocabulary this key produces, if it acts on the run (`None` for
    /// view commands such as zoom or search). Yes/No produce `answer`; pause toggles between
    /// `pause_scheduler` and `resume_scheduler` (this returns the first).
    pub fn action(self) -> Option<ActionKind> {
        Some(match self {
            KeyCommand::Retry => ActionKind::Retry,
            KeyCommand::Restart => ActionKind::Restart,
            KeyCommand::Resume => ActionKind::Resume,
            KeyCommand::Nudge => ActionKind::Nudge,
            KeyCommand::Yes | KeyCommand::No | KeyCommand::Answer => ActionKind::Answer,
            KeyCommand::Keys => ActionKind::Keys,
            KeyCommand::Kill => ActionKind::Kill,
            KeyCommand::Fail => ActionKind::Fail,
            KeyCommand::Skip => ActionKind::Skip,
            KeyCommand::MarkDone => ActionKind::MarkDone,
            KeyCommand::Commit => ActionKind::Commit,
            KeyCommand::Escalate => ActionKind::Escalate,
            KeyCommand::PauseAgent => ActionKind::PauseAgent,
            KeyCommand::TogglePause => ActionKind::PauseScheduler,
            KeyCommand::MoreParallel => ActionKind::MoreParallel,
            KeyCommand::LessParallel => ActionKind::LessParallel,
            _ => return None,
        })
    }
}

/// The default key table: (config name, action, default keys, help). The help overlay lists
/// these rows with the keys actually bound.
pub const DEFAULTS: &[(&str, KeyCommand, &[&str], &str)] = &[
    (
        "up",
        KeyCommand::Up,
        &["up", "k"],
        "select the previous task",
    ),
    (
        "down",
        KeyCommand::Down,
        &["down", "j"],
        "select the next task",
    ),
    (
        "attach",
        KeyCommand::Attach,
        &["enter"],
        "attach to the selected worker (keys go to it)",
    ),
    (
        "zoom",
        KeyCommand::Zoom,
        &["z"],
        "zoom the selected worker's pane / back to the grid",
    ),
    (
        "overview",
        KeyCommand::Overview,
        &["o"],
        "tiles: crop (rows that changed last) / scaled overview",
    ),
    (
        "retry",
        KeyCommand::Retry,
        &["r"],
        "retry: restart the task now",
    ),
    (
        "nudge",
        KeyCommand::Nudge,
        &["n"],
        "nudge: type a message (editable) into the worker",
    ),
    (
        "yes",
        KeyCommand::Yes,
        &["y"],
        "answer the worker's prompt with y",
    ),
    (
        "no",
        KeyCommand::No,
        &["N"],
        "answer the worker's prompt with n",
    ),
    (
        "answer",
        KeyCommand::Answer,
        &["a"],
        "answer: type custom text into the worker",
    ),
    (
        "kill",
        KeyCommand::Kill,
        &["x"],
        "kill the worker (task becomes error; r retries)",
    ),
    (
        "skip",
        KeyCommand::Skip,
        &["s"],
        "skip the task (dependents may go on)",
    ),
    (
        "mark_done",
        KeyCommand::MarkDone,
        &["d"],
        "mark the task complete by hand",
    ),
    (
        "pause",
        KeyCommand::TogglePause,
        &["p"],
        "pause / resume starting new workers",
    ),
    (
        "more_parallel",
        KeyCommand::MoreParallel,
        &["+", "="],
        "one more worker at once",
    ),
    (
        "less_parallel",
        KeyCommand::LessParallel,
        &["-"],
        "one fewer worker at once",
    ),
    (
        "views",
        KeyCommand::CycleViews,
        &["v"],
        "views: table + DAG / table / DAG",
    ),
    (
        "shrink_top",
        KeyCommand::ShrinkTop,
        &["<"],
        "fewer rows for the table and DAG",
    ),
    (
        "grow_top",
        KeyCommand::GrowTop,
        &[">"],
        "more rows for the table and DAG",
    ),
    (
        "scroll_back",
        KeyCommand::ScrollBack,
        &["pgup"],
        "scroll the selected worker's screen back (wheel too)",
    ),
    (
        "search",
        KeyCommand::Search,
        &["/"],
        "search the selected worker's scrollback",
    ),
    (
        "log",
        KeyCommand::Log,
        &["l"],
        "open the task's log (its events, transcript and error log)",
    ),
    (
        "filter",
        KeyCommand::Filter,
        &["f"],
        "filter the table by status (cycles)",
    ),
    (
        "next_attention",
        KeyCommand::NextAttention,
        &["!", "tab"],
        "jump to the next task that needs attention",
    ),
    (
        "restart",
        KeyCommand::Restart,
        &["R"],
        "restart the worker with its screen tail as context",
    ),
    (
        "resume",
        KeyCommand::Resume,
        &["u"],
        "restart the worker with its profile's resume command",
    ),
    (
        "keys",
        KeyCommand::Keys,
        &["K"],
        "type raw keys into the worker (\\e, \\r, \\xHH)",
    ),
    (
        "commit",
        KeyCommand::Commit,
        &["c"],
        "commit the task's uncommitted changes",
    ),
    (
        "escalate",
        KeyCommand::Escalate,
        &["e"],
        "hand the task to a person (needs_attention)",
    ),
    (
        "fail",
        KeyCommand::Fail,
        &["F"],
        "give up on the task (error)",
    ),
    (
        "pause_agent",
        KeyCommand::PauseAgent,
        &["P"],
        "pause / resume every task of the task's agent",
    ),
    ("help", KeyCommand::Help, &["?"], "show / hide this help"),
    (
        "detach_client",
        KeyCommand::Detach,
        &["D"],
        "detach: leave the control room, the run goes on",
    ),
    (
        "quit",
        KeyCommand::Quit,
        &["q", "ctrl-c"],
        "quit: detach (default) or stop the run",
    ),
];

/// The default detach chord in attach mode.
pub const DEFAULT_DETACH: &str = "ctrl-]";

/// A key with its modifiers (shift is part of the character for printable keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Ctrl and Alt (Shift only for non-character keys).
    pub mods: KeyModifiers,
}

impl Key {
    fn matches(&self, k: &KeyEvent) -> bool {
        let relevant = |m: KeyModifiers| match k.code {
            KeyCode::Char(_) => m & (KeyModifiers::CONTROL | KeyModifiers::ALT),
            _ => m,
        };
        let same_code = match (self.code, k.code) {
            (KeyCode::Char(a), KeyCode::Char(b)) if self.mods.contains(KeyModifiers::CONTROL) => {
                a.eq_ignore_ascii_case(&b)
                    // crossterm reports Ctrl-] as Ctrl-5 on some terminals, and Ctrl-\ as Ctrl-4.
                    || (a == ']' && b == '5')
                    || (a == '\\' && b == '4')
            }
            (a, b) => a == b,
        };
        (same_code && relevant(self.mods) == relevant(k.modifiers))
            // The raw control character (e.g. 0x1d for Ctrl-]) arrives as a plain char sometimes.
            || (self.mods == KeyModifiers::CONTROL
                && matches!(self.code, KeyCode::Char(c) if k.code == KeyCode::Char(((c as u8) & 0x1f) as char)))
    }

    /// How the key is written in the help and the config.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("Ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("Alt-");
        }
        match self.code {
            KeyCode::Char(' ') => s.push_str("Space"),
            KeyCode::Char(c) => s.push(c),
            KeyCode::Up => s.push('↑'),
            KeyCode::Down => s.push('↓'),
            KeyCode::Left => s.push('←'),
            KeyCode::Right => s.push('→'),
            KeyCode::Enter => s.push_str("Enter"),
            KeyCode::Tab => s.push_str("Tab"),
            KeyCode::Esc => s.push_str("Esc"),
            KeyCode::PageUp => s.push_str("PgUp"),
            KeyCode::PageDown => s.push_str("PgDn"),
            KeyCode::Home => s.push_str("Home"),
            KeyCode::End => s.push_str("End"),
            KeyCode::F(n) => s.push_str(&format!("F{n}")),
            other => s.push_str(&format!("{other:?}")),
        }
        s
    }
}

/// Parses a key name: a single character (`r`, `R`, `?`, `/`), a named key (`enter`, `tab`,
/// `esc`, `space`, `up`, `down`, `left`, `right`, `pgup`, `pgdn`, `home`, `end`, `f1`…`f12`),
/// optionally prefixed by `ctrl-` and/or `alt-` (e.g. `ctrl-]`, `alt-x`). Case matters for
/// single characters only.
pub fn parse_key(text: &str) -> Result<Key, String> {
    let mut mods = KeyModifiers::NONE;
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        if rest.chars().count() > 1 && lower.starts_with("ctrl-") {
            mods |= KeyModifiers::CONTROL;
            rest = &rest[5..];
        } else if rest.chars().count() > 1 && lower.starts_with("alt-") {
            mods |= KeyModifiers::ALT;
            rest = &rest[4..];
        } else {
            break;
        }
    }
    let mut chars = rest.chars();
    let code = match (chars.next(), chars.next()) {
        (Some(c), None) => KeyCode::Char(c),
        _ => match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "tab" => KeyCode::Tab,
            "esc" | "escape" => KeyCode::Esc,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            f if f.starts_with('f') && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) => {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                return Err(format!(
                    "unknown key {text:?}: use one character, or enter, tab, esc, space, up, down, left, right, pgup, pgdn, home, end, f1..f12, with optional ctrl-/alt-"
                ))
            }
        },
    };
    Ok(Key { code, mods })
}

/// The key map in force: defaults with the config's `[keys]` applied.
#[derive(Debug, Clone)]
pub struct KeyMap {
    bindings: Vec<(KeyCommand, Vec<Key>, &'static str)>,
    /// The chord that leaves attach mode.
    pub detach: Key,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::new(&BTreeMap::new()).expect("the default keys parse")
    }
}

impl KeyMap {
    /// Builds the key map. Errors name the unknown action or key; a key bound to two actions is
    /// an error too (the later one would never fire).
    pub fn new(overrides: &BTreeMap<String, KeyNames>) -> Result<KeyMap, String> {
        for name in overrides.keys() {
            if name != "detach" && !DEFAULTS.iter().any(|(n, ..)| n == name) {
                return Err(format!(
                    "[keys] {name:?} is not an action; use one of: detach, {}",
                    DEFAULTS
                        .iter()
                        .map(|(n, ..)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let parse_all = |name: &str, names: Vec<&str>| -> Result<Vec<Key>, String> {
            names
                .into_iter()
                .map(|k| parse_key(k).map_err(|e| format!("[keys] {name}: {e}")))
                .collect()
        };
        let mut bindings = Vec::new();
        for (name, action, keys, help) in DEFAULTS {
            let keys = match overrides.get(*name) {
                Some(v) => parse_all(name, v.list())?,
                None => parse_all(name, keys.to_vec())?,
            };
            bindings.push((*action, keys, *help));
        }
        let detach = match overrides.get("detach") {
            Some(v) => *parse_all("detach", v.list())?
                .first()
                .ok_or("[keys] detach: give a key")?,
            None => parse_key(DEFAULT_DETACH)?,
        };
        for (i, (a, keys, _)) in bindings.iter().enumerate() {
            for k in keys {
                if let Some((b, ..)) = bindings[i + 1..].iter().find(|(_, ks, _)| ks.contains(k)) {
                    return Err(format!(
                        "[keys] {} is bound to both {a:?} and {b:?}",
                        k.label()
                    ));
                }
            }
        }
        Ok(KeyMap { bindings, detach })
    }

    /// The action for a key press, if any.
    pub fn action_for(&self, key: &KeyEvent) -> Option<KeyCommand> {
        self.bindings
            .iter()
            .find(|(_, keys, _)| keys.iter().any(|k| k.matches(key)))
            .map(|(a, ..)| *a)
    }

    /// True for the detach chord.
    pub fn is_detach(&self, key: &KeyEvent) -> bool {
        self.detach.matches(key)
    }

    /// The footer's key hints, from the same table that dispatches: the first key bound to each
    /// of the most used actions, most needed first (a narrow terminal cuts the end), e.g.
    /// ` ↑↓ select  ⏎ attach  r retry …`.
    pub fn footer(&self) -> String {
        const HINTS: [(KeyCommand, &str); 9] = [
            (KeyCommand::Attach, "attach"),
            (KeyCommand::Retry, "retry"),
            (KeyCommand::Nudge, "nudge"),
            (KeyCommand::Yes, "answer"),
            (KeyCommand::Help, "help"),
            (KeyCommand::Detach, "detach"),
            (KeyCommand::Quit, "quit"),
            (KeyCommand::Kill, "kill"),
            (KeyCommand::Skip, "skip"),
        ];
        let first = |cmd: KeyCommand| {
            self.bindings
                .iter()
                .find(|(c, ..)| *c == cmd)
                .and_then(|(_, keys, _)| keys.first())
                .map(|k| match k.code {
                    KeyCode::Enter if k.mods.is_empty() => "⏎".to_string(),
                    _ => k.label(),
                })
        };
        let mut s = String::from(" ↑↓ select ");
        for (cmd, what) in HINTS {
            if let Some(k) = first(cmd) {
                s.push_str(&format!(" {k} {what} "));
            }
        }
        s
    }

    /// Help rows (keys, text) for the overlay, from the same table that dispatches.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        self.bindings
            .iter()
            .map(|(_, keys, help)| {
                (
                    keys.iter().map(Key::label).collect::<Vec<_>>().join(" / "),
                    *help,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn every_help_row_has_a_key_that_triggers_its_action() {
        let map = KeyMap::default();
        for (name, action, keys, _) in DEFAULTS {
            for k in *keys {
                let parsed = parse_key(k).unwrap();
                let ev = KeyEvent::new(parsed.code, parsed.mods);
                assert_eq!(map.action_for(&ev), Some(*action), "{name}: {k}");
            }
        }
        assert_eq!(map.help_rows().len(), DEFAULTS.len());
        assert_eq!(map.help_rows()[0].0, "↑ / k");
    }

    #[test]
    fn keys_ladder_steps_and_ctl_arguments_name_the_same_actions() {
        // Every action a ladder may take has a key, and the key's config name parses (as ctl
        // and the ladder parse it) to the same action.
        let ladder_kinds: Vec<ActionKind> = ActionKind::ALL
            .into_iter()
            .filter(|k| k.in_ladder())
            .collect();
        for kind in ladder_kinds {
            let (name, cmd, ..) = DEFAULTS
                .iter()
                .find(|(_, c, ..)| c.action() == Some(kind))
                .unwrap_or_else(|| panic!("no key for the ladder action {kind}"));
            assert_eq!(cmd.action(), Some(kind));
            let step: crate::core::config::Step =
                toml::from_str(&format!("action = \"{}\"", kind.name())).unwrap();
            assert_eq!(step.action, kind, "ladder step {name}");
            let args = match kind.needs() {
                crate::core::action::Needs::TaskAndText => vec!["t1".to_string(), "y".to_string()],
                _ => vec!["t1".to_string()],
            };
            assert_eq!(
                crate::core::action::Action::parse(kind.name(), &args)
                    .unwrap()
                    .kind,
                kind
            );
            if ActionKind::parse(name) == Some(kind) {
                continue;
            }
            // Keys named otherwise: yes/no/answer all answer; pause toggles the scheduler.
            assert!(
                matches!(kind, ActionKind::Answer),
                "key {name} should be named {kind}"
            );
        }
    }

    #[test]
    fn detach_chord_is_recognised_in_its_encodings() {
        let map = KeyMap::default();
        assert!(map.is_detach(&KeyEvent::new(KeyCode::Char(']'), KeyModifiers::CONTROL)));
        assert!(map.is_detach(&KeyEvent::new(KeyCode::Char('5'), KeyModifiers::CONTROL)));
        assert!(map.is_detach(&key(KeyCode::Char('\u{1d}'))));
        assert!(!map.is_detach(&key(KeyCode::Char(']'))));
    }

    #[test]
    fn keys_can_be_rebound_and_bad_names_are_clear_errors() {
        let mut o = BTreeMap::new();
        o.insert("retry".to_string(), KeyNames::One("T".into()));
        o.insert("detach".to_string(), KeyNames::One("ctrl-b".into()));
        o.insert(
            "quit".to_string(),
            KeyNames::Many(vec!["Q".into(), "ctrl-q".into()]),
        );
        let map = KeyMap::new(&o).unwrap();
        assert_eq!(
            map.action_for(&key(KeyCode::Char('T'))),
            Some(KeyCommand::Retry)
        );
        assert_eq!(map.action_for(&key(KeyCode::Char('r'))), None);
        assert_eq!(
            map.action_for(&KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(KeyCommand::Quit)
        );
        assert!(map.is_detach(&KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL)));
        let mut bad = BTreeMap::new();
        bad.insert("retyr".to_string(), KeyNames::One("r".into()));
        assert!(KeyMap::new(&bad)
            .unwrap_err()
            .contains("\"retyr\" is not an action"));
        let mut bad = BTreeMap::new();
        bad.insert("retry".to_string(), KeyNames::One("ctrl-nope".into()));
        assert!(KeyMap::new(&bad).unwrap_err().contains("unknown key"));
        let mut clash = BTreeMap::new();
        clash.insert("retry".to_string(), KeyNames::One("q".into()));
        assert!(KeyMap::new(&clash).unwrap_err().contains("bound to both"));
    }
}
