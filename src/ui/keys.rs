//! The key table: ONE list drives both dispatch and the `?` help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key does in the control room (outside attach mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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
    /// Show or hide the help overlay.
    Help,
    /// Quit (asks first while workers run).
    Quit,
}

/// One row of the key table.
pub struct Binding {
    /// The keys, as shown in the help.
    pub label: &'static str,
    /// What they do.
    pub action: Action,
    /// The help text.
    pub help: &'static str,
    matches: fn(&KeyEvent) -> bool,
}

fn plain(k: &KeyEvent, c: char) -> bool {
    k.code == KeyCode::Char(c)
        && !k
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

/// The control room's keys.
pub const BINDINGS: &[Binding] = &[
    Binding {
        label: "↑ / k",
        action: Action::Up,
        help: "select the previous task",
        matches: |k| k.code == KeyCode::Up || plain(k, 'k'),
    },
    Binding {
        label: "↓ / j",
        action: Action::Down,
        help: "select the next task",
        matches: |k| k.code == KeyCode::Down || plain(k, 'j'),
    },
    Binding {
        label: "Enter",
        action: Action::Attach,
        help: "attach to the selected worker (Ctrl-] detaches)",
        matches: |k| k.code == KeyCode::Enter,
    },
    Binding {
        label: "z",
        action: Action::Zoom,
        help: "zoom the selected worker's pane / back to the grid",
        matches: |k| plain(k, 'z'),
    },
    Binding {
        label: "r",
        action: Action::Retry,
        help: "retry: restart the task now",
        matches: |k| plain(k, 'r'),
    },
    Binding {
        label: "n",
        action: Action::Nudge,
        help: "nudge: type a message (editable) into the worker",
        matches: |k| plain(k, 'n'),
    },
    Binding {
        label: "y",
        action: Action::Yes,
        help: "answer the worker's prompt with y",
        matches: |k| plain(k, 'y'),
    },
    Binding {
        label: "N",
        action: Action::No,
        help: "answer the worker's prompt with n",
        matches: |k| plain(k, 'N'),
    },
    Binding {
        label: "a",
        action: Action::Answer,
        help: "answer: type custom text into the worker",
        matches: |k| plain(k, 'a'),
    },
    Binding {
        label: "x",
        action: Action::Kill,
        help: "kill the worker (task becomes error; r retries)",
        matches: |k| plain(k, 'x'),
    },
    Binding {
        label: "s",
        action: Action::Skip,
        help: "skip the task (dependents may go on)",
        matches: |k| plain(k, 's'),
    },
    Binding {
        label: "d",
        action: Action::MarkDone,
        help: "mark the task complete by hand",
        matches: |k| plain(k, 'd'),
    },
    Binding {
        label: "p",
        action: Action::TogglePause,
        help: "pause / resume starting new workers",
        matches: |k| plain(k, 'p'),
    },
    Binding {
        label: "+ / -",
        action: Action::MoreParallel,
        help: "raise / lower max parallel workers",
        matches: |k| plain(k, '+') || plain(k, '='),
    },
    Binding {
        label: "",
        action: Action::LessParallel,
        help: "",
        matches: |k| plain(k, '-'),
    },
    Binding {
        label: "v",
        action: Action::CycleViews,
        help: "views: table + DAG / table / DAG",
        matches: |k| plain(k, 'v'),
    },
    Binding {
        label: "< / >",
        action: Action::ShrinkTop,
        help: "fewer / more rows for the table and DAG",
        matches: |k| plain(k, '<'),
    },
    Binding {
        label: "",
        action: Action::GrowTop,
        help: "",
        matches: |k| plain(k, '>'),
    },
    Binding {
        label: "PgUp",
        action: Action::ScrollBack,
        help: "scroll the selected worker's screen back (wheel too)",
        matches: |k| k.code == KeyCode::PageUp,
    },
    Binding {
        label: "/",
        action: Action::Search,
        help: "search the selected worker's scrollback",
        matches: |k| plain(k, '/'),
    },
    Binding {
        label: "f",
        action: Action::Filter,
        help: "filter the table by status (cycles)",
        matches: |k| plain(k, 'f'),
    },
    Binding {
        label: "!",
        action: Action::NextAttention,
        help: "jump to the next task that needs attention",
        matches: |k| plain(k, '!') || k.code == KeyCode::Tab,
    },
    Binding {
        label: "?",
        action: Action::Help,
        help: "show / hide this help",
        matches: |k| plain(k, '?'),
    },
    Binding {
        label: "q",
        action: Action::Quit,
        help: "quit (asks first while workers run)",
        matches: |k| {
            plain(k, 'q')
                || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL))
        },
    },
];

/// The action for a key press, if any.
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    BINDINGS.iter().find(|b| (b.matches)(key)).map(|b| b.action)
}

/// True for the detach chord (Ctrl-]), which crossterm may report as Ctrl-5 or as the raw 0x1d.
pub fn is_detach(key: &KeyEvent) -> bool {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    matches!(key.code, KeyCode::Char(']') | KeyCode::Char('5')) && ctrl
        || key.code == KeyCode::Char('\u{1d}')
}

/// Help rows (keys, text) for the overlay, from the same table.
pub fn help_rows() -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| !b.label.is_empty())
        .map(|b| (b.label, b.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn every_help_row_has_a_key_that_triggers_its_action() {
        for b in BINDINGS.iter().filter(|b| !b.label.is_empty()) {
            let first = b.label.split(" / ").next().unwrap();
            let k = match first {
                "↑" => key(KeyCode::Up),
                "↓" => key(KeyCode::Down),
                "Enter" => key(KeyCode::Enter),
                "PgUp" => key(KeyCode::PageUp),
                s if s.chars().count() == 1 => key(KeyCode::Char(s.chars().next().unwrap())),
                other => panic!("unparseable label {other}"),
            };
            assert_eq!(action_for(&k), Some(b.action), "{}", b.label);
        }
        assert_eq!(
            action_for(&key(KeyCode::Char('-'))),
            Some(Action::LessParallel)
        );
    }

    #[test]
    fn detach_chord_is_recognised_in_its_encodings() {
        assert!(is_detach(&KeyEvent::new(
            KeyCode::Char(']'),
            KeyModifiers::CONTROL
        )));
        assert!(is_detach(&KeyEvent::new(
            KeyCode::Char('5'),
            KeyModifiers::CONTROL
        )));
        assert!(!is_detach(&key(KeyCode::Char(']'))));
    }
}
