//! The one action vocabulary. A key in the control room, a step of a heal ladder, a message on
//! the server's socket and `switchyard ctl MANIFEST ACTION [TASK] [TEXT]` all name an
//! [`ActionKind`] and produce an [`Action`]; the engine checks ([`crate::core::engine::Engine::check`])
//! and carries out exactly these. Tasks are addressed by their manifest id, never by position.
//!
//! Names are snake_case everywhere (`mark_done`, `pause_agent`): the same string in
//! `switchyard.toml` (`[heal.ladder]` steps, `[keys]`), on the command line and on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of an action, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Restart the task now, resetting its heal ladders (a task without a worker queues again).
    Retry,
    /// Stop the worker and start it again in the same worktree with the screen tail as context;
    /// counts against `heal.max_attempts`, with back-off.
    Restart,
    /// Like restart, with the profile's `resume` command (e.g. `codex resume --last`).
    Resume,
    /// Type a line (the given text, or the profile's nudge text), then Enter.
    Nudge,
    /// Answer the worker's prompt: the text, then Enter. In a ladder: the allow-listed keys for
    /// the prompt on screen (the deny-list wins).
    Answer,
    /// Type exactly these keys (escapes: `\r`, `\n`, `\t`, `\e`, `\xHH`, `\\`).
    Keys,
    /// Kill the worker; the task becomes `error` until retried.
    Kill,
    /// Give up on the task: the worker stops and the task is `error`.
    Fail,
    /// Stop the task and mark it `skipped` (dependents may go on).
    Skip,
    /// Mark the task `complete` by hand (stops a live worker).
    MarkDone,
    /// Commit the worktree's uncommitted changes (`git add -A`, commit as "switchyard").
    Commit,
    /// Hand the task to a person: `needs_attention`, bell, notify command.
    Escalate,
    /// Pause every task of an agent (until the reset time a rate-limit message named, else for
    /// the back-off's next step: `heal.rate_limit_backoff_ms` doubling up to
    /// `heal.rate_limit_pause_ms`). In a ladder `pause` is accepted as the old name.
    #[serde(alias = "pause")]
    PauseAgent,
    /// Let a paused agent's tasks start again now.
    ResumeAgent,
    /// Start no new workers.
    PauseScheduler,
    /// Start workers again.
    ResumeScheduler,
    /// One more worker at once.
    MoreParallel,
    /// One fewer worker at once (at least 1).
    LessParallel,
    /// Set the most workers at once (TEXT is the number).
    SetMaxParallel,
    /// End the run cleanly: workers stop, running tasks stay `running` to resume next time.
    Stop,
}

/// What an action needs besides its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing.
    Nothing,
    /// A task id.
    Task,
    /// A task id and, optionally, text.
    TaskText,
    /// A task id and text.
    TaskAndText,
    /// A task id or an agent name (a task stands for its agent).
    Agent,
    /// A number.
    Number,
}

impl ActionKind {
    /// Every action, in the order `switchyard ctl --help` lists them.
    pub const ALL: [ActionKind; 20] = [
        ActionKind::Retry,
        ActionKind::Restart,
        ActionKind::Resume,
        ActionKind::Nudge,
        ActionKind::Answer,
        ActionKind::Keys,
        ActionKind::Kill,
        ActionKind::Fail,
        ActionKind::Skip,
        ActionKind::MarkDone,
        ActionKind::Commit,
        ActionKind::Escalate,
        ActionKind::PauseAgent,
        ActionKind::ResumeAgent,
        ActionKind::PauseScheduler,
        ActionKind::ResumeScheduler,
        ActionKind::MoreParallel,
        ActionKind::LessParallel,
        ActionKind::SetMaxParallel,
        ActionKind::Stop,
    ];

    /// The snake_case name used in config, on the command line and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Retry => "retry",
            ActionKind::Restart => "restart",
            ActionKind::Resume => "resume",
            ActionKind::Nudge => "nudge",
            ActionKind::Answer => "answer",
            ActionKind::Keys => "keys",
            ActionKind::Kill => "kill",
            ActionKind::Fail => "fail",
            ActionKind::Skip => "skip",
            ActionKind::MarkDone => "mark_done",
            ActionKind::Commit => "commit",
            ActionKind::Escalate => "escalate",
            ActionKind::PauseAgent => "pause_agent",
            ActionKind::ResumeAgent => "resume_agent",
            ActionKind::PauseScheduler => "pause_scheduler",
            ActionKind::ResumeScheduler => "resume_scheduler",
            ActionKind::MoreParallel => "more_parallel",
            ActionKind::LessParallel => "less_parallel",
            ActionKind::SetMaxParallel => "set_max_parallel",
            ActionKind::Stop => "stop",
        }
    }

    /// Parses a name (`mark_done`; `mark-done` and the ladder's old `pause` are accepted too).
    pub fn parse(name: &str) -> Option<ActionKind> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        if n == "pause" {
            return Some(ActionKind::PauseAgent);
        }
        ActionKind::ALL.into_iter().find(|k| k.name() == n)
    }

    /// What the action takes.
    pub fn needs(self) -> Needs {
        match self {
            ActionKind::Nudge => Needs::TaskText,
            ActionKind::Answer | ActionKind::Keys => Needs::TaskAndText,
            ActionKind::Escalate | ActionKind::Fail => Needs::TaskText,
            ActionKind::PauseAgent | ActionKind::ResumeAgent => Needs::Agent,
            ActionKind::PauseScheduler
            | ActionKind::ResumeScheduler
            | ActionKind::MoreParallel
            | ActionKind::LessParallel
            | ActionKind::Stop => Needs::Nothing,
            ActionKind::SetMaxParallel => Needs::Number,
            _ => Needs::Task,
        }
    }

    /// True when a heal ladder may name this action as a step.
    pub fn in_ladder(self) -> bool {
        matches!(
            self,
            ActionKind::Answer
                | ActionKind::Nudge
                | ActionKind::Keys
                | ActionKind::Restart
                | ActionKind::Resume
                | ActionKind::Commit
                | ActionKind::Escalate
                | ActionKind::Fail
                | ActionKind::PauseAgent
        )
    }

    /// One line for help texts.
    pub fn help(self) -> &'static str {
        match self {
            ActionKind::Retry => "restart the task now, resetting its heal ladders",
            ActionKind::Restart => {
                "restart the worker with its screen tail as context (counts an attempt)"
            }
            ActionKind::Resume => "restart the worker with the profile's resume command",
            ActionKind::Nudge => "type TEXT (default: the nudge text) and Enter",
            ActionKind::Answer => "answer the prompt: TEXT, then Enter",
            ActionKind::Keys => "type TEXT exactly (escapes \\r \\n \\t \\e \\xHH)",
            ActionKind::Kill => "kill the worker; the task becomes error",
            ActionKind::Fail => "give up on the task: error",
            ActionKind::Skip => "skip the task (dependents may go on)",
            ActionKind::MarkDone => "mark the task complete by hand",
            ActionKind::Commit => "commit the worktree's uncommitted changes",
            ActionKind::Escalate => "hand the task to a person (needs_attention)",
            ActionKind::PauseAgent => "pause every task of the task's agent (or AGENT)",
            ActionKind::ResumeAgent => "let a paused agent's tasks start again",
            ActionKind::PauseScheduler => "start no new workers",
            ActionKind::ResumeScheduler => "start workers again",
            ActionKind::MoreParallel => "one more worker at once",
            ActionKind::LessParallel => "one fewer worker at once",
            ActionKind::SetMaxParallel => "set the most workers at once to N",
            ActionKind::Stop => "end the run (running tasks resume next time)",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An action with its arguments, addressed by task id. This is what the socket carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Which action.
    pub kind: ActionKind,
    /// The task id, for actions on a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Text (nudge, answer, keys, escalate/fail reason), an agent name, or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why arguments do not make an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The name is not an action.
    #[error("unknown action {0:?}; actions: {list}", list = ActionKind::ALL.map(|k| k.name()).join(", "))]
    Unknown(String),
    /// A task id was needed.
    #[error("`{0}` needs a TASK id, e.g. `switchyard ctl run.json {0} t3`")]
    NeedsTask(ActionKind),
    /// Text was needed.
    #[error("`{0}` needs TEXT after the task, e.g. `switchyard ctl run.json {0} t3 y`")]
    NeedsText(ActionKind),
    /// A number was needed.
    #[error("`{0}` needs a number, e.g. `switchyard ctl run.json {0} 4`")]
    NeedsNumber(ActionKind),
    /// Too many arguments.
    #[error("`{0}` takes {1}; got more")]
    TooMany(ActionKind, &'static str),
}

impl Action {
    /// An action on a task.
    pub fn on(kind: ActionKind, task: impl Into<String>) -> Action {
        Action {
            kind,
            task: Some(task.into()),
            text: None,
        }
    }

    /// An action on a task, with text.
    pub fn with_text(kind: ActionKind, task: impl Into<String>, text: impl Into<String>) -> Action {
        Action {
            kind,
            task: Some(task.into()),
            text: Some(text.into()),
        }
    }

    /// An action on the whole run.
    pub fn global(kind: ActionKind) -> Action {
        Action {
            kind,
            task: None,
            text: None,
        }
    }

    /// Parses `ACTION [TASK] [TEXT]` as `switchyard ctl` takes them. For `pause_agent` and
    /// `resume_agent` the argument is a task id (meaning its agent) or an agent name; for
    /// `set_max_parallel` a number.
    pub fn parse(name: &str, args: &[String]) -> Result<Action, ParseError> {
        let kind = ActionKind::parse(name).ok_or_else(|| ParseError::Unknown(name.into()))?;
        let mut a = Action::global(kind);
        match kind.needs() {
            Needs::Nothing => {
                if !args.is_empty() {
                    return Err(ParseError::TooMany(kind, "no arguments"));
                }
            }
            Needs::Number => {
                let [n] = args else {
                    return Err(ParseError::NeedsNumber(kind));
                };
                if n.parse::<usize>().is_err() {
                    return Err(ParseError::NeedsNumber(kind));
                }
                a.text = Some(n.clone());
            }
            Needs::Task | Needs::Agent => match args {
                [] => return Err(ParseError::NeedsTask(kind)),
                [t] => a.task = Some(t.clone()),
                _ => return Err(ParseError::TooMany(kind, "one TASK")),
            },
            Needs::TaskText | Needs::TaskAndText => match args {
                [] => return Err(ParseError::NeedsTask(kind)),
                [_] if kind.needs() == Needs::TaskAndText => {
                    return Err(ParseError::NeedsText(kind));
                }
                [t] => a.task = Some(t.clone()),
                [t, rest @ ..] => {
                    a.task = Some(t.clone());
                    a.text = Some(rest.join(" "));
                }
            },
        }
        Ok(a)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(t) = &self.task {
            write!(f, " {t}")?;
        }
        if let Some(t) = &self.text {
            write!(f, " {t:?}")?;
        }
        Ok(())
    }
}

/// Turns `keys` text with escapes into bytes: `\r`, `\n`, `\t`, `\e` (ESC), `\xHH`, `\\`.
/// Anything else after a backslash is kept as written.
pub fn unescape_keys(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let next = b[i + 1];
            let simple = match next {
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'e' => Some(0x1b),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if next == b'x'
                && i + 3 < b.len()
                && b[i + 2].is_ascii_hexdigit()
                && b[i + 3].is_ascii_hexdigit()
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 2]) * 16 + hex(b[i + 3]));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_parse_serde_and_display() {
        for k in ActionKind::ALL {
            assert_eq!(ActionKind::parse(k.name()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<ActionKind>(&json).unwrap(), k);
        }
        assert_eq!(ActionKind::parse("mark-done"), Some(ActionKind::MarkDone));
        assert_eq!(ActionKind::parse("pause"), Some(ActionKind::PauseAgent));
        assert_eq!(ActionKind::parse("explode"), None);
    }

    #[test]
    fn ctl_arguments_parse_into_actions_with_clear_errors() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Action::parse("retry", &s(&["t3"])).unwrap(),
            Action::on(ActionKind::Retry, "t3")
        );
        assert_eq!(
            Action::parse("answer", &s(&["t3", "y"])).unwrap(),
            Action::with_text(ActionKind::Answer, "t3", "y")
        );
        assert_eq!(
            Action::parse("nudge", &s(&["t3", "use", "the", "new", "API"])).unwrap(),
            Action::with_text(ActionKind::Nudge, "t3", "use the new API")
        );
        assert_eq!(
            Action::parse("nudge", &s(&["t3"])).unwrap(),
            Action::on(ActionKind::Nudge, "t3")
        );
        assert_eq!(
            Action::parse("answer", &s(&["t3"])),
            Err(ParseError::NeedsText(ActionKind::Answer))
        );
        assert_eq!(
            Action::parse("retry", &[]),
            Err(ParseError::NeedsTask(ActionKind::Retry))
        );
        assert_eq!(
            Action::parse("stop", &s(&["t1"])),
            Err(ParseError::TooMany(ActionKind::Stop, "no arguments"))
        );
        assert_eq!(
            Action::parse("set_max_parallel", &s(&["x"])),
            Err(ParseError::NeedsNumber(ActionKind::SetMaxParallel))
        );
        let e = Action::parse("explode", &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown action") && e.contains("mark_done"),
            "{e}"
        );
    }

    #[test]
    fn actions_cross_the_wire_unchanged() {
        let a = Action::with_text(ActionKind::Keys, "t1", "\\e[A");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
        let g = Action::global(ActionKind::PauseScheduler);
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"kind":"pause_scheduler"}"#
        );
    }

    #[test]
    fn keys_escapes_become_bytes() {
        assert_eq!(unescape_keys("y\\r"), b"y\r");
        assert_eq!(unescape_keys("\\e[A\\x03"), b"\x1b[A\x03");
        assert_eq!(unescape_keys("a\\\\b\\q"), b"a\\b\\q");
        assert_eq!(unescape_keys("\\x4"), b"\\x4");
    }
}
