//! The host side of the agents' own channels (see [`crate::core::channels`] for what the events mean):
//! handing an event to the run's server over its socket (what `switchyard hook` does), and
//! following opencode's server event stream (`GET /event`, server-sent events) with permission
//! replies through its API. Plain HTTP/1.1 over a local TCP socket (127.0.0.1 only): the
//! stream is one request, so no HTTP client dependency is needed.
//!
//! Checked against opencode 1.x's server: `GET /event` streams `data: {"type", "properties"}`
//! events; a permission is answered with `POST /permission/{id}/reply` `{"reply": "once"}`
//! (1.x), falling back to `POST /session/{sessionID}/permissions/{id}` `{"response": "once"}`
//! (0.x). Not yet checked against a live opencode here.

use crate::server::protocol as p;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The longest a hook waits for switchyard's decision on a permission (the hook's own timeout in
/// the generated settings is longer, so the agent never sees the hook fail).
pub const DECISION_WAIT: Duration = Duration::from_secs(3);

/// Sends one agent event to the run's server at `socket` for task `task`, as the channel `agent`
/// (`claude`, `codex`, `gemini`, `opencode`). With `reply`, waits up to [`DECISION_WAIT`] for the
/// server's [`p::ServerMsg::HookReply`] and returns its output. Every failure (no server, a
/// closed socket, no answer in time) is `None`: the agent goes on as if no hook were set.
pub fn send_event(
    socket: &Path,
    task: &str,
    agent: Option<&str>,
    event: Value,
    reply: bool,
) -> Option<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_read_timeout(Some(DECISION_WAIT));
    let mut bytes = p::encode_msg(&p::hello(p::Role::Control));
    bytes.extend(p::encode_msg(&p::ClientMsg::Hook {
        task: task.to_string(),
        event,
        agent: agent.map(str::to_string),
        reply,
        sent_us: Some(stamp_us()),
    }));
    stream.write_all(&bytes).ok()?;
    let _ = stream.flush();
    if !reply {
        return None;
    }
    let deadline = Instant::now() + DECISION_WAIT;
    while Instant::now() < deadline {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).ok()?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > p::MAX_FRAME {
            return None;
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        if body[0] != 0 {
            continue;
        }
        if let Ok(p::ServerMsg::HookReply { output }) = serde_json::from_slice(&body[1..]) {
            return output;
        }
    }
    None
}

/// Now as Unix µs, strictly greater than any earlier stamp of this process (two events read in
/// the same microsecond keep their order).
fn stamp_us() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A free TCP port on 127.0.0.1 for an agent's own server (`{opencode_port}`): bound, read and
/// released (another process could take it in between; the agent then fails to start and is
/// restarted with another).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Follows opencode's event stream on 127.0.0.1:`port` until it ends: connects (retrying every
/// 200 ms until `connect_within` passes, while opencode starts), then hands each event that
/// says something about the agent (see [`crate::core::channels::opencode`]) to `on_event`. For a
/// permission request, `on_event` returns the reply body to send (`{"reply": "once"}`), or
/// `None` to leave the dialog to a person. Returns why it stopped.
pub fn follow_opencode(
    port: u16,
    connect_within: Duration,
    mut on_event: impl FnMut(Value) -> Option<Value>,
) -> String {
    let deadline = Instant::now() + connect_within;
    loop {
        let stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(e) if Instant::now() >= deadline => {
                return format!("opencode's server on port {port} did not answer: {e}")
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // opencode 1.18.33 accepts connections a moment before it serves them: a request sent
        // then is never answered. A healthy stream starts with `server.connected` at once, so a
        // connection silent for FIRST_EVENT_WITHIN is dropped and made again.
        let first = std::cell::Cell::new(false);
        let timer = stream.try_clone();
        let _ = stream.set_read_timeout(Some(FIRST_EVENT_WITHIN));
        let result = read_events(stream, port, |payload| {
            if !first.replace(true) {
                if let Ok(s) = &timer {
                    let _ = s.set_read_timeout(None);
                }
            }
            on_payload(port, payload, &mut on_event)
        });
        match result {
            Err(e) if !first.get() && Instant::now() < deadline => {
                tracing::debug!(
                    "opencode's event stream on port {port} is silent ({e}): connecting again"
                );
            }
            Ok(()) => return "opencode's event stream ended".into(),
            Err(e) => return format!("opencode's event stream failed: {e}"),
        }
    }
}

/// How long a new connection to opencode's event stream may stay silent before it is made
/// again (its first event, `server.connected`, comes at once from a server that is ready).
const FIRST_EVENT_WITHIN: Duration = Duration::from_secs(2);

/// One `data:` payload of opencode's stream: handed to `on_event` when it says something about
/// the agent; a permission request gets the reply `on_event` returns, through opencode's API.
fn on_payload(port: u16, payload: &str, on_event: &mut impl FnMut(Value) -> Option<Value>) {
    let Ok(event) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    if crate::core::channels::opencode(&event).is_none() {
        return;
    }
    let permission = matches!(
        event["type"].as_str(),
        Some("permission.asked" | "permission.updated")
    );
    let id = event["properties"]["id"].as_str().map(str::to_string);
    let session = event["properties"]["sessionID"]
        .as_str()
        .map(str::to_string);
    let answer = on_event(event);
    if let (true, Some(body), Some(id)) = (permission, answer, id) {
        let status = post(port, &format!("/permission/{id}/reply"), &body);
        if status.is_none_or(|s| s == 404) {
            if let Some(sid) = session {
                let old = serde_json::json!({ "response": body["reply"] });
                let _ = post(port, &format!("/session/{sid}/permissions/{id}"), &old);
            }
        }
    }
}

/// Reads an HTTP response of server-sent events (plain or chunked) and calls `on_payload` with
/// each event's `data:` (lines joined with newlines).
fn read_events(
    mut stream: TcpStream,
    port: u16,
    mut on_payload: impl FnMut(&str),
) -> io::Result<()> {
    write!(
        stream,
        "GET /event HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nConnection: keep-alive\r\n\r\n"
    )?;
    stream.flush()?;
    let mut r = BufReader::new(stream);
    let chunked = read_head(&mut r)?;
    let mut body: Box<dyn BufRead> = if chunked {
        Box::new(BufReader::new(Dechunk {
            inner: r,
            left: 0,
            done: false,
        }))
    } else {
        Box::new(r)
    };
    let mut line = String::new();
    let mut data: Vec<String> = Vec::new();
    loop {
        line.clear();
        if body.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() {
                on_payload(&data.join("\n"));
                data.clear();
            }
        } else if let Some(d) = l.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
        }
    }
}

/// Reads the status line and headers; an error unless the status is 2xx. True when the body is
/// chunked.
fn read_head(r: &mut impl BufRead) -> io::Result<bool> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(io::Error::other(format!("answered {:?}", line.trim_end())));
    }
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            return Ok(chunked);
        }
        let l = line.to_ascii_lowercase();
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
}

/// A chunked transfer-encoded body as plain bytes.
struct Dechunk<R: BufRead> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Dechunk<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            // The CRLF that ends the previous chunk, then the size line.
            while size.trim().is_empty() {
                size.clear();
                if self.inner.read_line(&mut size)? == 0 {
                    self.done = true;
                    return Ok(0);
                }
            }
            let hex = size.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(hex, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {hex:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            self.done = true;
        }
        self.left -= n;
        Ok(n)
    }
}

/// POSTs a JSON body to 127.0.0.1:`port`; the status code, or `None` when it could not be sent.
fn post(port: u16, path: &str, body: &Value) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A stand-in for opencode's server: streams the events (chunked), then answers POSTs and
    /// reports each request line and body.
    fn fake_opencode(events: Vec<&'static str>) -> (u16, mpsc::Receiver<String>) {
        fake_opencode_after(events, 0)
    }

    /// As [`fake_opencode`], but the first `silent` connections are accepted and never answered
    /// (opencode 1.18.33 just after it starts listening).
    fn fake_opencode_after(
        events: Vec<&'static str>,
        silent: usize,
    ) -> (u16, mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                if held.len() < silent {
                    held.push(c);
                    continue;
                }
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if h.trim().is_empty() {
                        break;
                    }
                }
                if first.starts_with("GET /event") {
                    c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
                    for e in &events {
                        let chunk = format!("data: {e}\n\n");
                        // Split each event over two chunks, as a server may.
                        let (a, b) = chunk.split_at(chunk.len() / 2);
                        for part in [a, b] {
                            write!(c, "{:x}\r\n{part}\r\n", part.len()).unwrap();
                        }
                    }
                    c.write_all(b"0\r\n\r\n").unwrap();
                } else {
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).unwrap();
                    tx.send(format!(
                        "{} {}",
                        first.trim_end(),
                        String::from_utf8_lossy(&body)
                    ))
                    .unwrap();
                    c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntrue")
                        .unwrap();
                }
            }
        });
        (port, rx)
    }

    #[test]
    fn a_stream_silent_after_connecting_is_made_again() {
        let (port, _) = fake_opencode_after(
            vec![
                r#"{"type":"server.connected","properties":{}}"#,
                r#"{"type":"session.idle","properties":{"sessionID":"s"}}"#,
            ],
            1,
        );
        let mut seen = Vec::new();
        let t0 = Instant::now();
        let why = follow_opencode(port, Duration::from_secs(10), |e| {
            seen.push(e["type"].as_str().unwrap_or("").to_string());
            None
        });
        assert_eq!(seen, ["session.idle"], "{why}");
        assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    }

    #[test]
    fn opencode_events_are_followed_and_permissions_answered_through_its_api() {
        let (port, posts) = fake_opencode(vec![
            r#"{"type":"server.connected","properties":{}}"#,
            r#"{"type":"session.status","properties":{"sessionID":"s","status":{"type":"busy"}}}"#,
            r#"{"type":"message.part.updated","properties":{"part":{}}}"#,
            r#"{"type":"permission.asked","properties":{"id":"per_1","sessionID":"s","permission":"bash","patterns":["git commit -am x"]}}"#,
            r#"{"type":"permission.asked","properties":{"id":"per_2","sessionID":"s","permission":"bash","patterns":["rm -rf build"]}}"#,
            r#"{"type":"session.idle","properties":{"sessionID":"s"}}"#,
        ]);
        let mut seen = Vec::new();
        let why = follow_opencode(port, Duration::from_secs(5), |e| {
            seen.push(e["type"].as_str().unwrap_or("").to_string());
            let pattern = e["properties"]["patterns"][0].as_str().unwrap_or("");
            (!pattern.contains("rm ")).then(|| serde_json::json!({ "reply": "once" }))
        });
        assert_eq!(why, "opencode's event stream ended");
        assert_eq!(
            seen,
            vec![
                "session.status",
                "permission.asked",
                "permission.asked",
                "session.idle"
            ]
        );
        let post = posts.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            post,
            r#"POST /permission/per_1/reply HTTP/1.1 {"reply":"once"}"#
        );
        assert!(
            posts.recv_timeout(Duration::from_millis(300)).is_err(),
            "the denied one is left to a person"
        );
    }

    #[test]
    fn a_server_that_never_comes_gives_up_in_time() {
        let port = free_port().unwrap();
        let t = Instant::now();
        let why = follow_opencode(port, Duration::from_millis(500), |_| None);
        assert!(why.contains("did not answer"), "{why}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}

/// The user's own gemini-cli directory, as gemini 0.61 finds it: `$GEMINI_CLI_HOME/.gemini` when
/// that is set, else `~/.gemini`. `None` without a home directory.
pub fn user_gemini_dir() -> Option<std::path::PathBuf> {
    match std::env::var_os("GEMINI_CLI_HOME").filter(|h| !h.is_empty()) {
        Some(h) => Some(std::path::PathBuf::from(h).join(".gemini")),
        None => dirs::home_dir().map(|h| h.join(".gemini")),
    }
}

/// Builds the per-run gemini home `home` (what `{gemini_home}` names, given as
/// `GEMINI_CLI_HOME`): `home/.gemini/settings.json` is the user's `user_dir/settings.json` with
/// switchyard's hooks added ([`crate::core::config::gemini_user_settings`]); every other entry of
/// `user_dir` (credentials, `trustedFolders.json`, `tmp/` with chat history, extensions,
/// commands, `GEMINI.md`, …) is a symbolic link to the user's own, and `home/.agents` links to
/// `~/.agents` (gemini 0.61 looks for skills there relative to the same home). gemini reads user
/// settings from any path (only system settings must be root-owned), so the hooks work for
/// every user. What changes for the agent: a setting it saves (e.g. `/settings`) lands in the
/// copy and is gone after the run; a file it creates at the top of `.gemini` that the user did
/// not have yet (first login's `oauth_creds.json`, `tmp/` of a user who never ran gemini) stays
/// in the copy; comments in the user's settings are allowed, as gemini allows them. Safe to call for every
/// start (the settings are written to a temporary file and renamed). Err: one sentence naming
/// the file and the fix.
pub fn prepare_gemini_home(
    home: &Path,
    user_dir: Option<&Path>,
    switchyard: &str,
) -> Result<(), String> {
    let dir = home.join(".gemini");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let user_settings = match user_dir.map(|d| d.join("settings.json")) {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read your gemini settings {}: {e}", path.display()))?;
            let v: Value = serde_json::from_str(&crate::core::config::strip_json_comments(&text))
                .map_err(|e| {
                    format!(
                        "cannot read your gemini settings {} as JSON ({e}); switchyard adds its hooks to a copy of them: fix the file (gemini itself would refuse it too)",
                        path.display()
                    )
                })?;
            Some((path, v))
        }
        _ => None,
    };
    let (from, user) = match user_settings {
        Some((p, v)) => (Some(p), Some(v)),
        None => (None, None),
    };
    let merged = crate::core::config::gemini_user_settings(user, switchyard).map_err(|e| {
        format!(
            "your gemini settings {} cannot take switchyard's hooks: {e}",
            from.as_ref()
                .map_or("(none)".into(), |p| p.display().to_string())
        )
    })?;
    // Atomically: starts of several gemini workers may run at once.
    crate::core::manifest::write_atomic(&dir.join("settings.json"), merged.to_string().as_bytes())
        .map_err(|e| format!("cannot write the gemini settings: {e}"))?;
    let mut links: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
    if let Some(user_dir) = user_dir {
        for entry in std::fs::read_dir(user_dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name != "settings.json" {
                links.push((dir.join(&name), entry.path()));
            }
        }
        if let Some(agents) = user_dir
            .parent()
            .map(|h| h.join(".agents"))
            .filter(|a| a.exists())
        {
            links.push((home.join(".agents"), agents));
        }
    }
    for (link, to) in links {
        if std::fs::read_link(&link).is_ok_and(|t| t == to) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&to, &link) {
            // Another start made it in between: fine when it points the same way.
            if !std::fs::read_link(&link).is_ok_and(|t| t == to) {
                return Err(format!(
                    "cannot link {} to {}: {e}",
                    link.display(),
                    to.display()
                ));
            }
        }
    }
    Ok(())
}

/// How often the telemetry follower looks for new records, and how long it waits for the file.
const TELEMETRY_POLL: Duration = Duration::from_millis(500);

/// The size, bytes, past which the follower empties gemini's telemetry file once it has read it
/// all (gemini-cli 0.61.0 appends 11–40 MB an hour, mostly metrics and spans switchyard does not
/// use: 3.7 MB in 340 s of retrying 429s under the harness).
pub const TELEMETRY_KEEP_BYTES: u64 = 8 * 1024 * 1024;

/// Follows gemini-cli's local telemetry file at `path` (what `{gemini_telemetry}` names, given as
/// `GEMINI_TELEMETRY_OUTFILE`; gemini-cli 0.61.0 appends pretty-printed OpenTelemetry records to
/// it, its log records in batches about a second apart) while `alive()` says the worker runs:
/// reads what was appended every 500 ms, splits it into JSON values (a value cut off at the end
/// waits for the rest; a file past [`TELEMETRY_KEEP_BYTES`] is emptied once read, which can lose
/// a record gemini appends in that instant), runs each through a [`crate::core::channels::GeminiTelemetry`] and hands the
/// events it makes to `on_event` when [`crate::core::channels::gemini_telemetry`] has something to say.
/// Waits up to `appear_within` for the file to appear. Returns why it stopped.
pub fn follow_gemini_telemetry(
    path: &Path,
    appear_within: Duration,
    mut alive: impl FnMut() -> bool,
    mut on_event: impl FnMut(Value),
) -> String {
    let deadline = Instant::now() + appear_within;
    let mut file = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => break f,
            Err(_) if Instant::now() < deadline && alive() => std::thread::sleep(TELEMETRY_POLL),
            Err(e) => return format!("gemini's telemetry file {} never came: {e}", path.display()),
        }
    };
    let mut tracker = crate::core::channels::GeminiTelemetry::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if !alive() {
            return "the worker ended".into();
        }
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) => return format!("cannot read {}: {e}", path.display()),
            }
        }
        let used = telemetry_records(&pending, |record| {
            if let Some(event) = tracker.observe(&record) {
                if crate::core::channels::gemini_telemetry(&event).is_some() && alive() {
                    on_event(event);
                }
            }
        });
        pending.drain(..used);
        // gemini writes its metrics (about 30 KB every 10 s) and spans to the same file, appending
        // (O_APPEND): once everything read is used, a file past the cap starts again at 0.
        if pending.is_empty() {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let read = file.stream_position().unwrap_or(0);
            if len > TELEMETRY_KEEP_BYTES && len == read && file.set_len(0).is_ok() {
                let _ = file.seek(io::SeekFrom::Start(0));
            }
        }
        std::thread::sleep(TELEMETRY_POLL);
    }
}

/// Splits `bytes` (JSON values one after another, whitespace between) into values, handing each
/// to `each`; returns how many bytes were used (a value cut off at the end is left for later; a
/// value that is not JSON is skipped up to the next line that starts with `{`).
pub fn telemetry_records(bytes: &[u8], mut each: impl FnMut(Value)) -> usize {
    let mut used = 0;
    loop {
        let mut it = serde_json::Deserializer::from_slice(&bytes[used..]).into_iter::<Value>();
        match it.next() {
            None => return bytes.len(),
            Some(Ok(v)) => {
                used += it.byte_offset();
                each(v);
            }
            Some(Err(e)) if e.is_eof() => return used,
            Some(Err(_)) => {
                // Skip to the next record's start ("\n{"), or wait for more.
                match bytes[used + 1..].windows(2).position(|w| w == b"\n{") {
                    Some(p) => used += 1 + p + 1,
                    None => return used,
                }
            }
        }
    }
}

/// Whether gemini-cli would read a system settings file at `path` (what `{gemini_settings}`
/// names): gemini 0.61 skips one unless it and every directory above it are owned by root and
/// writable by nobody else ("Security Warning: Skipping system settings file … Parent directory
/// '/tmp' is insecure"; seen with gemini-cli 0.61.0 under the harness). Since switchyard writes
/// the file itself, the user running it must be root too. Checks the directories that exist
/// (the file and `run/` may not exist yet). Err: one sentence naming what fails; then gemini's
/// hooks are off and its screen rules and title decide.
pub fn gemini_settings_trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "switchyard does not run as root, so the settings file it writes is not root-owned"
                .into(),
        );
    }
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.uid() != 0 {
            return Err(format!("{} is not owned by root", dir.display()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by group or others (mode {:o})",
                dir.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod gemini_path_tests {
    use super::{gemini_settings_trusted, prepare_gemini_home, telemetry_records};
    use serde_json::{json, Value};

    #[test]
    fn the_gemini_home_copies_the_users_settings_with_the_hooks_and_links_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let user = t.path().join("me/.gemini");
        std::fs::create_dir_all(user.join("tmp")).unwrap();
        std::fs::create_dir_all(t.path().join("me/.agents")).unwrap();
        std::fs::write(user.join("oauth_creds.json"), "{}").unwrap();
        std::fs::write(
            user.join("settings.json"),
            json!({"ui": {"theme": "Dracula"}, "hooks": {"AfterAgent": [{"hooks": [{"type": "command", "command": "mine"}]}]}}).to_string(),
        )
        .unwrap();
        let home = t.path().join("run/gemini-home");
        for _ in 0..2 {
            // Every start prepares it again: the second time finds the links in place.
            prepare_gemini_home(&home, Some(&user), "/bin/sy").unwrap();
        }
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(home.join(".gemini/settings.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(s["ui"]["theme"], "Dracula", "the user's settings are kept");
        assert_eq!(s["hooksConfig"]["enabled"], true);
        let after = s["hooks"]["AfterAgent"].as_array().unwrap();
        assert_eq!(
            after[0]["hooks"][0]["command"], "mine",
            "the user's hook first"
        );
        assert_eq!(
            after[1]["hooks"][0]["command"],
            "'/bin/sy' hook --agent gemini"
        );
        assert!(s["hooks"]["BeforeTool"][0]["hooks"][0]["command"].is_string());
        assert_eq!(
            std::fs::read_link(home.join(".gemini/tmp")).unwrap(),
            user.join("tmp")
        );
        assert_eq!(
            std::fs::read_link(home.join(".gemini/oauth_creds.json")).unwrap(),
            user.join("oauth_creds.json")
        );
        assert_eq!(
            std::fs::read_link(home.join(".agents")).unwrap(),
            t.path().join("me/.agents")
        );
        // The user's own file is untouched.
        assert!(!std::fs::read_to_string(user.join("settings.json"))
            .unwrap()
            .contains("switchyard"));
        // No user directory at all: the hooks alone.
        let bare = t.path().join("bare");
        prepare_gemini_home(&bare, None, "/bin/sy").unwrap();
        assert!(std::fs::read_to_string(bare.join(".gemini/settings.json"))
            .unwrap()
            .contains("hook --agent gemini"));
        // Comments are fine (gemini strips them too); a file that is not JSON is named.
        std::fs::write(user.join("settings.json"), "{ // mine\n \"a\": 1 }").unwrap();
        prepare_gemini_home(&home, Some(&user), "/bin/sy").unwrap();
        std::fs::write(user.join("settings.json"), "{ \"a\": 1,, }").unwrap();
        let e = prepare_gemini_home(&home, Some(&user), "/bin/sy").unwrap_err();
        assert!(
            e.contains("settings.json") && e.contains("fix the file"),
            "{e}"
        );
        std::fs::write(user.join("settings.json"), r#"{"hooks": []}"#).unwrap();
        let e = prepare_gemini_home(&home, Some(&user), "/bin/sy").unwrap_err();
        assert!(e.contains("\"hooks\" is not an object"), "{e}");
    }

    #[test]
    fn the_telemetry_follower_hands_on_a_failing_api_and_stops_with_the_worker() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("tel.json");
        let rec = |s: u64| {
            serde_json::to_string_pretty(&json!({"hrTime": [s, 0], "attributes": {
                "event.name": "gemini_cli.api_error", "status_code": 500, "error.message": "boom"}}))
            .unwrap()
        };
        // The last record is cut off: it waits for the rest, which never comes.
        let text = format!("{}\n{}\n{}\n{}", rec(0), rec(30), rec(61), &rec(90)[..20]);
        std::fs::write(&path, text).unwrap();
        let mut calls = 0;
        let mut got = Vec::new();
        let why = super::follow_gemini_telemetry(
            &path,
            std::time::Duration::from_secs(1),
            || {
                calls += 1;
                calls < 4
            },
            |e| got.push(e),
        );
        assert_eq!(why, "the worker ended");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["errors_in_a_row"], 3);
        assert_eq!(got[0]["failing_ms"], 61_000);
        let why = super::follow_gemini_telemetry(
            &t.path().join("none.json"),
            std::time::Duration::from_millis(10),
            || true,
            |_| {},
        );
        assert!(why.contains("never came"), "{why}");
    }

    #[test]
    fn telemetry_records_wait_for_a_record_cut_off_at_the_end() {
        let whole = "{\n  \"a\": 1\n}\n{\n  \"b\": [1, 2]\n}\n";
        let cut = &whole[..whole.len() - 6];
        let mut got = Vec::new();
        let used = telemetry_records(cut.as_bytes(), |v| got.push(v));
        assert_eq!(got, vec![json!({"a": 1})]);
        assert_eq!(&cut[..used].trim_end(), &"{\n  \"a\": 1\n}");
        let mut got = Vec::new();
        let used = telemetry_records(whole.as_bytes(), |v| got.push(v));
        assert_eq!((got.len(), used), (2, whole.len()));
        // Garbage is skipped up to the next record.
        let mut got = Vec::new();
        telemetry_records(b"oops\n{\"c\": 3}\n", |v| got.push(v));
        assert_eq!(got, vec![json!({"c": 3})]);
    }

    #[test]
    fn a_world_writable_parent_or_a_non_root_user_is_named() {
        let e = gemini_settings_trusted(std::path::Path::new("/tmp/x/run/gemini-settings.json"))
            .unwrap_err();
        // /tmp is world-writable on every machine; as a non-root user the first check names that.
        assert!(
            e.contains("/tmp is writable by group or others") || e.contains("not run as root"),
            "{e}"
        );
    }
}
