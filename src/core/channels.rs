//! The agents' own channels: what a CLI says about itself through its hooks, its notify program
//! or its server's event stream, read into [`AgentReport`]s (pure functions over the JSON the CLI
//! sends). These outrank the title and the screen (see the order of authority in
//! [`crate::core::engine`]'s heal module and the README's profile table).
//!
//! | agent | channel | how switchyard sets it up | checked against |
//! |---|---|---|---|
//! | claude | hooks (JSON on stdin) | `--settings {claude_settings}` | Claude Code hooks reference, 2.1.x (PermissionRequest since 2.0.45) |
//! | codex | `notify` program (JSON as the last argument) | `-c notify=[...]` | codex-cli 0.169 config reference (`agent-turn-complete`) |
//! | gemini | hooks (JSON on stdin) | `GEMINI_CLI_HOME={gemini_home}` (a per-run user settings overlay; older profiles: `GEMINI_CLI_SYSTEM_SETTINGS_PATH={gemini_settings}`) | gemini-cli 0.61.0 (its bundled source and a live run) |
//! | gemini | local telemetry (OpenTelemetry log records appended to a file) | `GEMINI_TELEMETRY_OUTFILE={gemini_telemetry}` (followed by [`crate::host::channel_io::follow_gemini_telemetry`]) | gemini-cli 0.61.0 (`gemini_cli.api_error` / `gemini_cli.api_response`, live run against the scripted model server) |
//! | opencode | server events (SSE `GET /event`), permission replies through its API | `--port {opencode_port}` (followed by [`crate::host::channel_io::follow_opencode`]) | opencode 1.x server docs (`session.status`, `permission.asked`/`permission.replied`, `session.idle`, `session.error`) |
//!
//! Fixtures: `tests/fixtures/channels/*.jsonl`, one event per line as the CLI sends it, with the
//! report expected (see `tests/fixtures/channels/README.md`).

use crate::core::classify::{AgentReport, VerdictKind};
use serde_json::Value;

/// The channel kinds switchyard reads, named as `switchyard hook --agent NAME` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Claude Code hooks.
    Claude,
    /// codex's notify program.
    Codex,
    /// gemini-cli hooks.
    Gemini,
    /// gemini-cli's local telemetry file, summarised by [`GeminiTelemetry`].
    GeminiTelemetry,
    /// opencode's server event stream.
    Opencode,
}

impl Channel {
    /// Parses `claude`, `codex`, `gemini`, `gemini-telemetry` or `opencode`.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "claude" => Some(Channel::Claude),
            "codex" => Some(Channel::Codex),
            "gemini" => Some(Channel::Gemini),
            "gemini-telemetry" => Some(Channel::GeminiTelemetry),
            "opencode" => Some(Channel::Opencode),
            _ => None,
        }
    }

    /// The channel's name as evidence shows it, e.g. `claude hooks`.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Claude => "claude hooks",
            Channel::Codex => "codex notify",
            Channel::Gemini => "gemini hooks",
            Channel::GeminiTelemetry => "gemini telemetry",
            Channel::Opencode => "opencode events",
        }
    }

    /// The report an event of this channel makes, `None` for events that say nothing about the
    /// agent's state.
    pub fn report(self, event: &Value) -> Option<AgentReport> {
        match self {
            Channel::Claude => claude(event),
            Channel::Codex => codex_notify(event),
            Channel::Gemini => gemini(event),
            Channel::GeminiTelemetry => gemini_telemetry(event),
            Channel::Opencode => opencode(event),
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

fn report(channel: Channel, kind: VerdictKind, event: &str, line: String) -> AgentReport {
    AgentReport {
        kind,
        event: event.to_string(),
        line,
        channel: channel.label().to_string(),
        permission: None,
        answered: None,
        sent_us: None,
        session: None,
    }
}

/// `v` when it can be an agent's session id on a command line: 1–128 bytes of ASCII letters,
/// digits, `-`, `_` and `.` (opencode 1.18.33 ids look like `ses_5f2a…`), not starting with `-`
/// (never taken for an option). Anything else is no id.
pub fn session_id(v: &str) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| v.to_string())
}

/// What a tool call is about, in one line: the tool and its command, file or pattern.
fn tool_line(tool: &str, input: &Value) -> String {
    let what = [
        "command",
        "file_path",
        "path",
        "url",
        "pattern",
        "description",
    ]
    .iter()
    .map(|k| s(input, k))
    .find(|v| !v.is_empty())
    .unwrap_or("");
    let what: String = what
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    if what.is_empty() {
        tool.to_string()
    } else {
        format!("{tool}: {what}")
    }
}

/// A Claude Code hook event (the JSON its hooks get on stdin: `hook_event_name`; for
/// `Notification` a `message` and a `notification_type` of `permission_prompt` or
/// `idle_prompt`; for `PreToolUse`/`PermissionRequest` a `tool_name` and `tool_input`), checked
/// against the Claude Code hooks reference for 2.1.x.
pub fn claude(event: &Value) -> Option<AgentReport> {
    let name = s(event, "hook_event_name");
    let message = s(event, "message").to_string();
    let tool = s(event, "tool_name");
    let c = Channel::Claude;
    let r = match name {
        "SessionStart" | "UserPromptSubmit" | "PostToolUse" => {
            report(c, VerdictKind::Running, name, "working".into())
        }
        "PreToolUse" => report(
            c,
            VerdictKind::Running,
            name,
            format!("using {}", tool_line(tool, &event["tool_input"])),
        ),
        // The permission dialog is about to show: a decision is asked of switchyard.
        "PermissionRequest" => {
            let what = tool_line(tool, &event["tool_input"]);
            let mut r = report(
                c,
                VerdictKind::WaitingInput,
                name,
                format!("permission asked for {what}"),
            );
            r.permission = Some(what);
            r
        }
        "Notification" => {
            let t = s(event, "notification_type");
            let m = message.to_ascii_lowercase();
            let kind = if t == "permission_prompt" || m.contains("permission") {
                VerdictKind::WaitingInput
            } else if t == "idle_prompt" || m.contains("waiting for your input") {
                VerdictKind::Idle
            } else {
                VerdictKind::WaitingInput
            };
            report(c, kind, name, message)
        }
        "Stop" => report(c, VerdictKind::Idle, name, "the turn ended (Stop)".into()),
        "StopFailure" => {
            let line = if message.is_empty() {
                let e = s(event, "error");
                if e.is_empty() {
                    "the turn failed (StopFailure)".to_string()
                } else {
                    e.to_string()
                }
            } else {
                message
            };
            // Claude Code 2.1.330 names the failure's kind in `error` ("rate_limit" after its
            // 10 attempts at a 429; the message with the reset time is on its screen).
            let kind = if s(event, "error") == "rate_limit"
                || crate::core::classify::is_rate_limit(&line)
            {
                VerdictKind::RateLimited
            } else {
                VerdictKind::Error
            };
            report(c, kind, name, line)
        }
        _ => return None,
    };
    Some(r)
}

/// True for a channel event that reports a failure the agent is retrying by itself (opencode
/// 1.18.33's `session.status` of type `retry`, the only such event a channel sends as
/// `rate_limited`): the engine leaves the worker alone and waits, rather than pausing and
/// resuming it. A rate limit reported by any other event (`session.error`, claude's
/// `StopFailure`) is one the agent gave up on.
pub fn is_retry_event(event: &str) -> bool {
    event == "session.status" || event == GEMINI_RATE_LIMIT_EVENT
}

/// The event name of a gemini 429 from its telemetry ([`gemini_telemetry`]): gemini-cli 0.61.0
/// retries a rate limit by itself until the window passes.
pub const GEMINI_RATE_LIMIT_EVENT: &str = "gemini_cli.rate_limit";

/// The reply a Claude Code `PermissionRequest` hook prints to allow the tool call
/// (`hookSpecificOutput.decision.behavior = "allow"`). A denied request gets no reply: the
/// dialog shows and a person decides (the task needs attention).
pub fn claude_permission_allow() -> Value {
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PermissionRequest",
            "decision": { "behavior": "allow" }
        }
    })
}

/// The reply body that allows an opencode permission once (`POST /permission/{id}/reply`,
/// opencode 1.x). A denied request gets no reply: the dialog stays for a person.
pub fn opencode_permission_allow() -> Value {
    serde_json::json!({ "reply": "once" })
}

/// codex's notify program argument (codex-cli 0.169: one JSON object as the last argv element,
/// `{"type": "agent-turn-complete", "thread-id", "turn-id", "cwd", "input-messages",
/// "last-assistant-message"}`). The end of a turn is an idle agent.
pub fn codex_notify(event: &Value) -> Option<AgentReport> {
    let t = s(event, "type");
    match t {
        "agent-turn-complete" => {
            let last = s(event, "last-assistant-message");
            let last: String = last
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            Some(report(
                Channel::Codex,
                VerdictKind::Idle,
                t,
                if last.is_empty() {
                    "the turn is complete".into()
                } else {
                    format!("the turn is complete: {last}")
                },
            ))
        }
        _ => None,
    }
}

/// A gemini-cli hook event (JSON on stdin: `hook_event_name`; `BeforeTool`/`AfterTool` with
/// `tool_name` and `tool_input`; `Notification` with `notification_type` (`ToolPermission`) and
/// `message`), checked against gemini-cli's hooks reference (docs/hooks/reference.md) and live
/// against gemini-cli 0.61.0 (SessionStart, BeforeAgent, BeforeTool, AfterTool, AfterAgent and,
/// without `--yolo`, Notification; recorded in tests/fixtures/channels/gemini-*.jsonl).
pub fn gemini(event: &Value) -> Option<AgentReport> {
    let name = s(event, "hook_event_name");
    let c = Channel::Gemini;
    let r = match name {
        "SessionStart" | "BeforeAgent" | "BeforeModel" | "AfterTool" => {
            report(c, VerdictKind::Running, name, "working".into())
        }
        "BeforeTool" => report(
            c,
            VerdictKind::Running,
            name,
            format!(
                "using {}",
                tool_line(s(event, "tool_name"), &event["tool_input"])
            ),
        ),
        "AfterAgent" => report(
            c,
            VerdictKind::Idle,
            name,
            "the turn ended (AfterAgent)".into(),
        ),
        "Notification" => {
            let t = s(event, "notification_type");
            let m = s(event, "message");
            let kind = if t == "ToolPermission" || m.to_ascii_lowercase().contains("permission") {
                VerdictKind::WaitingInput
            } else {
                return None;
            };
            report(c, kind, name, m.to_string())
        }
        _ => return None,
    };
    Some(r)
}

/// How many API errors in a row (no successful answer between them) make gemini's API "keeps
/// failing", together with [`GEMINI_API_FAILING_FOR_MS`].
pub const GEMINI_API_FAILURES_IN_A_ROW: u64 = 3;

/// How long, ms, from the first to the latest of the errors in a row before gemini's API "keeps
/// failing". gemini-cli 0.61.0 retries a 5xx 5 times with backoff (about 5, 11, 18 and 35 s
/// apart), then starts over, forever; its screen shows only "Thinking… (esc to cancel, Nm Ns)".
/// A transient failure that one backoff rides out ends well inside 60 s.
pub const GEMINI_API_FAILING_FOR_MS: u64 = 60_000;

/// The run of API errors in gemini-cli's local telemetry (`GEMINI_TELEMETRY_OUTFILE`): the file
/// holds OpenTelemetry log records, one pretty-printed JSON object after another, each with
/// `hrTime` (`[seconds, nanoseconds]`) and `attributes` (`event.name`; for
/// `gemini_cli.api_error`: `status_code` (absent for network errors), `error.message` (the API's
/// JSON error body or a plain message), `model`). Checked against gemini-cli 0.61.0 (live run
/// against tests/harness/model-server/server.py, error500 and normal). Spans and metrics in the same
/// file, and every other event, are skipped. A 429 neither counts nor ends the run of errors:
/// gemini rides a rate window out itself (it shows only "Thinking…"), so it is reported as a
/// rate limit the agent retries by itself (its other tasks wait, it is left alone), and the
/// first success after it as the API answering again.
#[derive(Debug, Default, Clone)]
pub struct GeminiTelemetry {
    errors: u64,
    first_ms: u64,
    /// A 429 came since the last success.
    limited: bool,
}

impl GeminiTelemetry {
    /// One record of the file: for an API error, the event switchyard hands to the run (see
    /// [`gemini_telemetry`]): `{"event.name", "status_code", "message", "model", "errors_in_a_row",
    /// "failing_ms"}`, or for a 429 `{"event.name", "status_code", "message", "model",
    /// "rate_limited": true}`; for the first success after a 429 `{"event.name", "recovered":
    /// true}`; `None` for everything else (a successful `gemini_cli.api_response` ends the run of
    /// errors).
    pub fn observe(&mut self, record: &Value) -> Option<Value> {
        let a = &record["attributes"];
        let at_ms =
            record["hrTime"][0].as_u64()? * 1000 + record["hrTime"][1].as_u64()? / 1_000_000;
        match s(a, "event.name") {
            "gemini_cli.api_response" => {
                let ok = a["status_code"].as_u64().is_none_or(|c| c < 400);
                if ok {
                    self.errors = 0;
                    if std::mem::take(&mut self.limited) {
                        return Some(serde_json::json!({
                            "event.name": "gemini_cli.api_response",
                            "recovered": true,
                        }));
                    }
                }
                None
            }
            "gemini_cli.api_error" => {
                let status = a["status_code"].as_u64();
                let message = api_error_message(s(a, "error.message"));
                if status == Some(429) || crate::core::classify::is_rate_limit(&message) {
                    self.limited = true;
                    return Some(serde_json::json!({
                        "event.name": "gemini_cli.api_error",
                        "status_code": status,
                        "message": message,
                        "model": s(a, "model"),
                        "rate_limited": true,
                    }));
                }
                if self.errors == 0 {
                    self.first_ms = at_ms;
                }
                self.errors += 1;
                Some(serde_json::json!({
                    "event.name": "gemini_cli.api_error",
                    "status_code": status,
                    "message": message,
                    "model": s(a, "model"),
                    "errors_in_a_row": self.errors,
                    "failing_ms": at_ms.saturating_sub(self.first_ms),
                }))
            }
            _ => None,
        }
    }
}

/// The message of an API error as gemini-cli 0.61 logs it: the API's JSON body
/// (`{"error": {"code", "message", "status"}}`) gives `message (STATUS)`, anything else its first
/// line; at most 300 characters.
fn api_error_message(raw: &str) -> String {
    let body = serde_json::from_str::<Value>(raw).ok();
    let e = body.as_ref().map(|b| &b["error"]);
    let m = match e {
        Some(e) if !s(e, "message").is_empty() => match s(e, "status") {
            "" => s(e, "message").to_string(),
            st => format!("{} ({st})", s(e, "message")),
        },
        _ => raw.lines().next().unwrap_or("").to_string(),
    };
    m.chars().take(300).collect()
}

/// What one summarised telemetry event says (see [`GeminiTelemetry::observe`]): `error` once the
/// API has failed [`GEMINI_API_FAILURES_IN_A_ROW`] times in a row over at least
/// [`GEMINI_API_FAILING_FOR_MS`], with the status code and message; `None` before (gemini retries
/// by itself and its hooks and screen keep the word).
///
/// A 429 is `rate_limited` with the event name [`GEMINI_RATE_LIMIT_EVENT`] (an agent retrying by
/// itself: see [`is_retry_event`]); the first success after it is `running`.
pub fn gemini_telemetry(event: &Value) -> Option<AgentReport> {
    let model = match s(event, "model") {
        "" => String::new(),
        m => format!(" from {m}"),
    };
    if event["rate_limited"].as_bool() == Some(true) {
        return Some(report(
            Channel::GeminiTelemetry,
            VerdictKind::RateLimited,
            GEMINI_RATE_LIMIT_EVENT,
            format!(
                "HTTP 429{model}: {} (gemini retries by itself)",
                s(event, "message")
            ),
        ));
    }
    if event["recovered"].as_bool() == Some(true) {
        return Some(report(
            Channel::GeminiTelemetry,
            VerdictKind::Running,
            "gemini_cli.api_response",
            "the API answers again after a rate limit".into(),
        ));
    }
    let n = event["errors_in_a_row"].as_u64()?;
    let ms = event["failing_ms"].as_u64()?;
    if n < GEMINI_API_FAILURES_IN_A_ROW || ms < GEMINI_API_FAILING_FOR_MS {
        return None;
    }
    let status = event["status_code"]
        .as_u64()
        .map_or("network error".to_string(), |c| format!("HTTP {c}"));
    Some(report(
        Channel::GeminiTelemetry,
        VerdictKind::Error,
        "gemini_cli.api_error",
        format!(
            "{status}{model}: {} ({n} API errors in a row over {}s)",
            s(event, "message"),
            ms / 1000
        ),
    ))
}

/// The final message in a gemini-cli hook event: `prompt_response` of `AfterAgent` (the turn's
/// whole answer; gemini-cli 0.61.0, recorded in tests/fixtures/channels/gemini-normal-home.jsonl),
/// `None` for other events or an empty answer. `switchyard hook --agent gemini` writes it to
/// `$SWITCHYARD_FINAL_MESSAGE` (the shipped profile sets it to `{final_message}`), since the
/// transcript heuristic would take gemini's footer for the answer.
pub fn gemini_final_message(event: &Value) -> Option<&str> {
    (s(event, "hook_event_name") == "AfterAgent")
        .then(|| s(event, "prompt_response"))
        .filter(|m| !m.is_empty())
}

/// An opencode server event (one `data:` payload of `GET /event`: `{"type", "properties"}`),
/// checked against opencode 1.x: `session.status` (`status.type` = `busy`, `idle` or `retry` with
/// `message`), `session.idle`, `permission.asked` (older: `permission.updated`) with `permission`
/// and `patterns`, `permission.replied`, `session.error` with `error.data.message`. Every one
/// names its session (`properties.sessionID`), kept as [`AgentReport::session`].
pub fn opencode(event: &Value) -> Option<AgentReport> {
    let t = s(event, "type");
    let p = &event["properties"];
    let c = Channel::Opencode;
    let r = match t {
        "session.status" => {
            let st = &p["status"];
            match s(st, "type") {
                "busy" => report(c, VerdictKind::Running, t, "busy".into()),
                "idle" => report(c, VerdictKind::Idle, t, "idle".into()),
                "retry" => {
                    let m = s(st, "message");
                    let kind = if crate::core::classify::is_rate_limit(m) {
                        VerdictKind::RateLimited
                    } else {
                        VerdictKind::Running
                    };
                    let attempt = st.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                    report(c, kind, t, format!("retry {attempt}: {m}"))
                }
                _ => return None,
            }
        }
        "session.idle" => report(c, VerdictKind::Idle, t, "idle".into()),
        "permission.asked" | "permission.updated" => {
            let what = [s(p, "permission"), s(p, "type"), s(p, "title")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or("permission")
                .to_string();
            let patterns: Vec<&str> = p["patterns"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let what = if patterns.is_empty() {
                what
            } else {
                format!("{what}: {}", patterns.join(" "))
            };
            let mut r = report(
                c,
                VerdictKind::WaitingInput,
                t,
                format!("permission asked for {what}"),
            );
            r.permission = Some(what);
            r
        }
        "permission.replied" => report(c, VerdictKind::Running, t, "permission answered".into()),
        "session.error" => {
            let e = &p["error"];
            let m = [s(&e["data"], "message"), s(e, "name")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or("session error")
                .to_string();
            let kind = if crate::core::classify::is_rate_limit(&m) {
                VerdictKind::RateLimited
            } else {
                VerdictKind::Error
            };
            report(c, kind, t, m)
        }
        _ => return None,
    };
    let mut r = r;
    r.session = session_id(s(p, "sessionID"));
    Some(r)
}

/// What a person should know about a profile's command line (for `switchyard doctor`): the agent
/// channel it sets up, and flags whose absence changes what the agent does (checked against
/// codex-cli 0.169, Claude Code 2.1.330, opencode 1.18.33).
pub fn profile_notes(
    command: &[String],
    env: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let program = command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    let has = |flag: &str| {
        command
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let mentions = |text: &str| command.iter().any(|a| a.contains(text));
    let mut notes = Vec::new();
    let channel = match program {
        "claude" if mentions("{claude_settings}") => "claude hooks (--settings {claude_settings})",
        "codex" if mentions("notify=") => "codex notify (-c notify=[...])",
        "gemini" if env.values().any(|v| v.contains("{gemini_home}")) => {
            if env.values().any(|v| v.contains("{gemini_telemetry}")) {
                "gemini hooks (GEMINI_CLI_HOME = {gemini_home}) and local telemetry for API errors (GEMINI_TELEMETRY_OUTFILE = {gemini_telemetry})"
            } else {
                "gemini hooks (GEMINI_CLI_HOME = {gemini_home})"
            }
        }
        "gemini" if env.values().any(|v| v.contains("{gemini_settings}")) => {
            "gemini hooks (GEMINI_CLI_SYSTEM_SETTINGS_PATH = {gemini_settings}; read only from a root-owned path)"
        }
        "codex" if has("exec") && has("--json") => "events (codex exec --json, on its screen)",
        "opencode" if mentions("{opencode_port}") => {
            "opencode server events (--port {opencode_port}; permissions answered through its API)"
        }
        "claude" | "codex" | "gemini" | "opencode" => {
            "none: the profile does not set it up (see the shipped profile)"
        }
        _ => "screen, title and terminal read only",
    };
    notes.push(format!("agent channel: {channel}"));
    match program {
        "codex" if !has("--yolo") && !has("--dangerously-bypass-approvals-and-sandbox") => notes.push(
            "without --yolo codex's sandbox cannot write the worktree's git index: its commits fail".into(),
        ),
        "claude" if !has("--dangerously-skip-permissions") && !has("--permission-mode") => notes.push(
            "without a permission flag claude 2.1.330 runs in auto mode and never shows a dialog; add --permission-mode manual to have each permission decided by switchyard's allow/deny policy".into(),
        ),
        "opencode" if !has("--auto") => notes.push(
            "without --auto opencode 1.18.33 does not ask before shell commands".into(),
        ),
        _ => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(c: Channel, v: Value) -> Option<(VerdictKind, String)> {
        c.report(&v).map(|r| (r.kind, r.line))
    }

    #[test]
    fn claude_events_become_reports() {
        let c = Channel::Claude;
        assert_eq!(
            k(
                c,
                json!({"hook_event_name": "Notification", "notification_type": "permission_prompt", "message": "Claude needs your permission to use Bash"})
            ),
            Some((
                VerdictKind::WaitingInput,
                "Claude needs your permission to use Bash".into()
            ))
        );
        assert_eq!(
            k(
                c,
                json!({"hook_event_name": "Notification", "message": "Claude is waiting for your input"})
            ),
            Some((VerdictKind::Idle, "Claude is waiting for your input".into()))
        );
        assert_eq!(
            k(c, json!({"hook_event_name": "Stop"})).map(|x| x.0),
            Some(VerdictKind::Idle)
        );
        assert_eq!(
            k(
                c,
                json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "git commit -m x"}})
            ),
            Some((VerdictKind::Running, "using Bash: git commit -m x".into()))
        );
        let r = c
            .report(&json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}))
            .unwrap();
        assert_eq!(r.kind, VerdictKind::WaitingInput);
        assert_eq!(r.permission.as_deref(), Some("Bash: rm -rf build"));
        assert_eq!(r.channel, "claude hooks");
        assert_eq!(
            k(
                c,
                json!({"hook_event_name": "StopFailure", "error": "API Error: Request rejected (429) · Rate limit reached, try again in 20s"})
            )
            .map(|x| x.0),
            Some(VerdictKind::RateLimited)
        );
        assert_eq!(k(c, json!({"hook_event_name": "PreCompact"})), None);
        assert_eq!(k(c, json!({"no": "name"})), None);
        assert_eq!(
            claude_permission_allow()["hookSpecificOutput"]["decision"]["behavior"],
            "allow"
        );
    }

    #[test]
    fn codex_turn_complete_is_idle() {
        let v = json!({"type": "agent-turn-complete", "thread-id": "t", "turn-id": "1", "cwd": "/w", "input-messages": ["fix it"], "last-assistant-message": "Committed the fix.\nDetails…"});
        assert_eq!(
            k(Channel::Codex, v),
            Some((
                VerdictKind::Idle,
                "the turn is complete: Committed the fix.".into()
            ))
        );
        assert_eq!(k(Channel::Codex, json!({"type": "other"})), None);
    }

    #[test]
    fn gemini_events_become_reports() {
        let g = Channel::Gemini;
        assert_eq!(
            k(g, json!({"hook_event_name": "AfterAgent"})).map(|x| x.0),
            Some(VerdictKind::Idle)
        );
        assert_eq!(
            k(
                g,
                json!({"hook_event_name": "BeforeTool", "tool_name": "run_shell_command", "tool_input": {"command": "git status"}})
            ),
            Some((
                VerdictKind::Running,
                "using run_shell_command: git status".into()
            ))
        );
        assert_eq!(
            k(
                g,
                json!({"hook_event_name": "Notification", "notification_type": "ToolPermission", "message": "Allow execution of [Shell]?"})
            )
            .map(|x| x.0),
            Some(VerdictKind::WaitingInput)
        );
        assert_eq!(
            k(
                g,
                json!({"hook_event_name": "Notification", "notification_type": "Info", "message": "hello"})
            ),
            None
        );
    }

    #[test]
    fn opencode_events_become_reports() {
        let o = Channel::Opencode;
        let st = |t: &str| json!({"type": "session.status", "properties": {"sessionID": "s", "status": {"type": t}}});
        assert_eq!(k(o, st("busy")).map(|x| x.0), Some(VerdictKind::Running));
        assert_eq!(k(o, st("idle")).map(|x| x.0), Some(VerdictKind::Idle));
        let retry = json!({"type": "session.status", "properties": {"sessionID": "s", "status": {"type": "retry", "attempt": 2, "message": "Rate limit reached, try again in 20s", "next": 1}}});
        assert_eq!(k(o, retry).map(|x| x.0), Some(VerdictKind::RateLimited));
        let asked = json!({"type": "permission.asked", "properties": {"id": "per_1", "sessionID": "s", "permission": "bash", "patterns": ["git commit -m x"]}});
        let r = o.report(&asked).unwrap();
        assert_eq!(r.kind, VerdictKind::WaitingInput);
        assert_eq!(r.permission.as_deref(), Some("bash: git commit -m x"));
        let err = json!({"type": "session.error", "properties": {"sessionID": "s", "error": {"name": "APIError", "data": {"message": "Cannot connect to API"}}}});
        assert_eq!(
            k(o, err),
            Some((VerdictKind::Error, "Cannot connect to API".into()))
        );
        assert_eq!(
            k(o, json!({"type": "message.part.updated", "properties": {}})),
            None
        );
    }

    /// Replays a trimmed telemetry recording (tests/fixtures/channels/telemetry) through the
    /// tracker: the reports it makes, with the seconds since the first record.
    fn replay_telemetry(name: &str) -> (usize, Vec<(u64, AgentReport)>) {
        let path = format!(
            "{}/tests/fixtures/channels/telemetry/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut t = GeminiTelemetry::default();
        let mut records = 0;
        let mut start = None;
        let mut out = Vec::new();
        let used = crate::host::channel_io::telemetry_records(&text, |r| {
            records += 1;
            let at = r["hrTime"][0].as_u64().unwrap_or(0);
            let start = *start.get_or_insert(at);
            if let Some(e) = t.observe(&r) {
                if let Some(rep) = Channel::GeminiTelemetry.report(&e) {
                    out.push((at - start, rep));
                }
            }
        });
        assert_eq!(used, text.len(), "{path}: every byte is a record");
        (records, out)
    }

    #[test]
    fn gemini_telemetry_recordings_replay() {
        // gemini-cli 0.61.0 against a server answering 500 to everything: it retries (errors
        // about 5, 11, 18 and 35 s apart, then again from the start) and never gives up.
        // Recorded by the harness (error500, three attempts): the first report comes past 60 s
        // of errors in a row, with the status and the API's message.
        for name in [
            "gemini-error500-a1.json",
            "gemini-error500-a2.json",
            "gemini-error500-a3.json",
        ] {
            let (n, reports) = replay_telemetry(name);
            assert!(n >= 15, "{name}: {n} records");
            let (at, first) = reports
                .first()
                .unwrap_or_else(|| panic!("{name}: no error report"));
            assert_eq!(first.kind, VerdictKind::Error);
            assert!(
                (60..=80).contains(at),
                "{name}: first error report at {at}s"
            );
            assert_eq!(first.channel, "gemini telemetry");
            assert!(
                first.line.starts_with(
                    "HTTP 500 from gemini-3.5-flash-lite: scripted model server: internal error (mode error500) (INTERNAL) ("
                ),
                "{name}: {}",
                first.line
            );
        }
        // A normal session: no error, no report.
        let (n, reports) = replay_telemetry("gemini-normal.json");
        assert!(n > 0, "no records");
        assert!(reports.is_empty(), "{:?}", reports[0].1.line);
        // A 300 s window of 429s (gemini-cli 0.61.0 rides it out): rate limits it retries by
        // itself, then the API answering again; never an error.
        let (_, reports) = replay_telemetry("gemini-rate429.json");
        let kinds: Vec<VerdictKind> = reports.iter().map(|(_, r)| r.kind).collect();
        assert!(kinds.len() >= 2, "{kinds:?}");
        assert_eq!(kinds.last(), Some(&VerdictKind::Running), "{kinds:?}");
        assert!(kinds[..kinds.len() - 1]
            .iter()
            .all(|k| *k == VerdictKind::RateLimited));
        let first = &reports[0].1;
        assert_eq!(first.event, GEMINI_RATE_LIMIT_EVENT);
        assert!(is_retry_event(&first.event));
        assert!(
            first.line.contains("HTTP 429") && first.line.contains("try again in 20s"),
            "{}",
            first.line
        );
    }

    #[test]
    fn gemini_after_agent_carries_the_final_message() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/channels/gemini-normal-home.jsonl"
        );
        let finals: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                gemini_final_message(&v["event"]).map(str::to_string)
            })
            .collect();
        assert_eq!(
            finals,
            vec!["I'll write the file and commit it. \nDone: I wrote HARNESS.md and committed it."]
        );
        assert_eq!(
            gemini_final_message(&json!({"hook_event_name": "AfterAgent", "prompt_response": ""})),
            None
        );
    }

    #[test]
    fn gemini_api_errors_count_in_a_row_and_a_success_ends_the_run() {
        let rec = |secs: u64, name: &str, status: Option<u64>| {
            json!({"hrTime": [secs, 5_000_000], "attributes": {"event.name": name, "status_code": status,
                "error.message": "fetch failed\nat x", "model": "m"}})
        };
        let mut t = GeminiTelemetry::default();
        let mut verdict = |r: Value| {
            t.observe(&r)
                .and_then(|e| gemini_telemetry(&e))
                .map(|r| r.line)
        };
        assert_eq!(verdict(rec(100, "gemini_cli.api_error", Some(503))), None);
        assert_eq!(verdict(rec(150, "gemini_cli.api_error", Some(503))), None);
        // A success ends the run: two more errors are not enough, however long.
        assert_eq!(
            verdict(rec(151, "gemini_cli.api_response", Some(200))),
            None
        );
        assert_eq!(verdict(rec(160, "gemini_cli.api_error", None)), None);
        assert_eq!(verdict(rec(200, "gemini_cli.api_error", None)), None);
        // 429s neither count nor end the run of errors: they are a rate limit gemini retries.
        assert_eq!(
            verdict(rec(210, "gemini_cli.api_error", Some(429))).as_deref(),
            Some("HTTP 429 from m: fetch failed (gemini retries by itself)")
        );
        assert_eq!(
            verdict(rec(225, "gemini_cli.api_error", None)).as_deref(),
            Some("network error from m: fetch failed (3 API errors in a row over 65s)")
        );
        // Three in a row within a minute are not yet "keeps failing".
        let mut t = GeminiTelemetry::default();
        for s in [0, 10, 20, 30] {
            let e = t
                .observe(&rec(s, "gemini_cli.api_error", Some(500)))
                .unwrap();
            assert!(gemini_telemetry(&e).is_none());
        }
        assert!(t
            .observe(&json!({"resource": {}, "scopeMetrics": []}))
            .is_none());
        assert!(t
            .observe(&json!({"attributes": {"event.name": "gemini_cli.api_error"}}))
            .is_none());
    }

    #[test]
    fn fixtures_replay() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/channels");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let at = format!("{}:{}", path.display(), i + 1);
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
                let c = Channel::parse(v["channel"].as_str().unwrap_or(""))
                    .unwrap_or_else(|| panic!("{at}: unknown channel"));
                let got = c
                    .report(&v["event"])
                    .map_or("none".to_string(), |r| r.kind.label());
                assert_eq!(
                    got,
                    v["expect"].as_str().unwrap_or(""),
                    "{at}: {}",
                    v["note"]
                );
                n += 1;
            }
        }
        assert!(n >= 20, "{n} fixture events");
    }

    #[test]
    fn doctor_notes_name_the_channel_and_the_flags_that_matter() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = std::collections::BTreeMap::new();
        let profile_notes = |c: &[String]| super::profile_notes(c, &none);
        let n = profile_notes(&argv(&["codex", "{prompt}"]));
        assert!(n.iter().any(|l| l.contains("--yolo")), "{n:?}");
        let n = profile_notes(&argv(&[
            "claude",
            "--settings",
            "{claude_settings}",
            "{prompt}",
        ]));
        assert!(n[0].contains("claude hooks"), "{n:?}");
        assert!(
            n.iter().any(|l| l.contains("--permission-mode manual")),
            "{n:?}"
        );
        let n = profile_notes(&argv(&["opencode", "--prompt", "{prompt}"]));
        assert!(n.iter().any(|l| l.contains("--auto")), "{n:?}");
        assert_eq!(profile_notes(&argv(&["opencode", "--auto"])).len(), 1);
    }
}
