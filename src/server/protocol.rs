//! The client/server protocol on the run's Unix socket.
//!
//! A frame is `[u32 big-endian length][u8 kind][payload]`, the length counting the kind byte and
//! the payload, at most [`MAX_FRAME`] bytes. Kind 0 carries one JSON message ([`ClientMsg`] up,
//! [`ServerMsg`] down); kind 1 (server to client only) carries terminal output: the bytes a
//! control-room client writes to its terminal as they are (the changed cells of the frame the
//! server rendered for it, a bell, an OSC 52 copy).
//!
//! The first message of a connection is [`ClientMsg::Hello`] with [`PROTOCOL`]; the server
//! answers [`ServerMsg::Welcome`] or [`ServerMsg::Refused`] (e.g. another protocol version,
//! naming both). A connection that sends anything else, a frame over the limit or bad JSON is
//! closed; the server goes on.

use crate::core::action::Action;
use serde::{Deserialize, Serialize};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version. Bumped on any change to the messages below.
pub const PROTOCOL: u32 = 1;

/// The largest frame either side accepts, bytes.
pub const MAX_FRAME: usize = 16 << 20;

/// What kind of client a connection is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// A control room of `rows × cols` cells: input events up, terminal output down.
    ControlRoom {
        /// Terminal rows.
        rows: u16,
        /// Terminal columns.
        cols: u16,
    },
    /// The headless reporter: journal lines down, then the summary when the run settles.
    Headless,
    /// One request and its answer (`ctl`, `status`, `ls`, `stop`).
    Control,
}

/// A message from a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ClientMsg {
    /// The first message: who is asking, in which protocol version.
    Hello {
        /// [`PROTOCOL`] of the client.
        protocol: u32,
        /// The client's switchyard version.
        version: String,
        /// What kind of client.
        role: Role,
    },
    /// A terminal event (key, mouse, paste, focus) from a control room.
    Input {
        /// The event as crossterm read it.
        event: crossterm::event::Event,
    },
    /// The control room's terminal changed size (rows × cols).
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Carry out an action; the server answers [`ServerMsg::Ack`].
    Act {
        /// The action.
        action: Action,
    },
    /// Ask for the run's state; the server answers [`ServerMsg::Status`].
    Status,
    /// An agent's own event (a hook's JSON, e.g. Claude Code's), for the task it runs; sent by
    /// `switchyard hook` from inside the worker. No answer.
    Hook {
        /// Task id (`SWITCHYARD_TASK_ID`).
        task: String,
        /// The event as the agent gave it.
        event: serde_json::Value,
        /// Whose channel it is: `claude` (the default), `codex`, `gemini` or `opencode` (see
        /// [`crate::core::channels::Channel`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// The hook waits for a decision: the server answers [`ServerMsg::HookReply`].
        #[serde(default)]
        reply: bool,
        /// When the sender read the event, Unix µs, strictly increasing within one sending
        /// process ([`crate::host::channel_io::send_event`]). Each event comes on a connection of its
        /// own and the server reads connections side by side, so this, not arrival, orders them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_us: Option<u64>,
    },
    /// Ask why a task's verdict is what it is; the server answers [`ServerMsg::Explain`], or
    /// [`ServerMsg::Ack`] with `ok: false` for an unknown task.
    Explain {
        /// Task id.
        task: String,
    },
}

/// A message from the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ServerMsg {
    /// The connection is accepted.
    Welcome {
        /// [`PROTOCOL`] of the server.
        protocol: u32,
        /// The server's switchyard version.
        version: String,
        /// The server's process id.
        pid: u32,
        /// The manifest it runs (absolute path).
        manifest: String,
    },
    /// The connection is refused; the reason says why and what to do.
    Refused {
        /// One paragraph.
        reason: String,
    },
    /// A journal line, formatted for people (control characters escaped).
    Line {
        /// The line.
        text: String,
    },
    /// The run settled (nothing more happens without a person): the headless summary.
    Summary {
        /// The summary text.
        text: String,
        /// The run's exit code (0, 1 or 2).
        code: i32,
    },
    /// The answer to [`ClientMsg::Act`].
    Ack {
        /// True when the action was accepted.
        ok: bool,
        /// What was done, or why not.
        message: String,
    },
    /// The answer to [`ClientMsg::Status`].
    Status {
        /// The run's state.
        view: crate::core::engine::RunView,
    },
    /// The answer to [`ClientMsg::Explain`].
    Explain {
        /// Every channel's word, the verdict and why it won.
        explanation: crate::core::engine::Explanation,
    },
    /// The answer to a [`ClientMsg::Hook`] that waits for one: the JSON the hook prints for the
    /// agent (e.g. Claude Code's PermissionRequest decision), or nothing (the agent decides as if
    /// no hook had answered).
    HookReply {
        /// What to print on the hook's standard output.
        output: Option<serde_json::Value>,
    },
    /// The server is closing this connection (stopping, or the client fell behind).
    Bye {
        /// Why.
        reason: String,
        /// The run's exit code, when the run ended.
        code: Option<i32>,
    },
}

/// One frame read from a connection.
#[derive(Debug)]
pub enum Frame<T> {
    /// A JSON message.
    Msg(T),
    /// Terminal output (server to client).
    Output(Vec<u8>),
}

const KIND_JSON: u8 = 0;
const KIND_OUTPUT: u8 = 1;

/// Encodes a JSON message as a frame.
pub fn encode_msg<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol messages always serialize");
    frame(KIND_JSON, &body)
}

/// Encodes terminal output as a frame.
pub fn encode_output(bytes: &[u8]) -> Vec<u8> {
    frame(KIND_OUTPUT, bytes)
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// Reads one frame. `Ok(None)` at a clean end of the connection; an error for a frame over
/// [`MAX_FRAME`], an unknown kind, or JSON that is not a `T`.
pub async fn read_frame<T, R>(r: &mut R) -> io::Result<Option<Frame<T>>>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (limit {MAX_FRAME})"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    match body[0] {
        KIND_JSON => serde_json::from_slice(&body[1..])
            .map(|m| Some(Frame::Msg(m)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        KIND_OUTPUT => {
            body.remove(0);
            Ok(Some(Frame::Output(body)))
        }
        k => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown frame kind {k}"),
        )),
    }
}

/// Writes a JSON message as one frame.
pub async fn write_msg<T: Serialize, W: AsyncWrite + Unpin>(w: &mut W, msg: &T) -> io::Result<()> {
    w.write_all(&encode_msg(msg)).await?;
    w.flush().await
}

/// The hello a client of this build sends.
pub fn hello(role: Role) -> ClientMsg {
    ClientMsg::Hello {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_string(),
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_an_error_not_a_panic() {
        let mut buf = encode_msg(&hello(Role::Headless));
        buf.extend(encode_output(b"\x1b[2J"));
        let mut r = &buf[..];
        let Some(Frame::Msg(ClientMsg::Hello { protocol, role, .. })) =
            read_frame::<ClientMsg, _>(&mut r).await.unwrap()
        else {
            panic!("a hello")
        };
        assert_eq!((protocol, role), (PROTOCOL, Role::Headless));
        let Some(Frame::Output(b)) = read_frame::<ClientMsg, _>(&mut r).await.unwrap() else {
            panic!("output")
        };
        assert_eq!(b, b"\x1b[2J");
        assert!(read_frame::<ClientMsg, _>(&mut r).await.unwrap().is_none());

        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(read_frame::<ClientMsg, _>(&mut &huge[..]).await.is_err());
        let bad = frame(KIND_JSON, b"{not json");
        assert!(read_frame::<ClientMsg, _>(&mut &bad[..]).await.is_err());
        let odd = frame(7, b"x");
        assert!(read_frame::<ClientMsg, _>(&mut &odd[..]).await.is_err());
        // A message cut off mid-way is an error too (the client vanished).
        let cut = &encode_msg(&hello(Role::Control))[..7];
        assert!(read_frame::<ClientMsg, _>(&mut &cut[..]).await.is_err());
    }
}
