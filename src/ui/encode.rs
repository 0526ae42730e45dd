//! Key and paste encoding for attach mode: the bytes an xterm-compatible terminal would send for
//! each key, honouring the child's application-cursor mode and bracketed paste.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use vt100::{MouseProtocolEncoding, MouseProtocolMode};

/// The child's terminal modes that change how keys are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modes {
    /// DECCKM: arrows send `ESC O A` instead of `ESC [ A`.
    pub application_cursor: bool,
    /// Mode 2004: pastes are wrapped in `ESC [200~` … `ESC [201~`.
    pub bracketed_paste: bool,
    /// Which mouse events the child asked for (modes 9/1000/1002/1003).
    pub mouse: MouseProtocolMode,
    /// How it wants them encoded (default or SGR, mode 1006).
    pub mouse_encoding: MouseProtocolEncoding,
}

/// The bytes for a mouse event in attach mode, or nothing when the child did not ask for this
/// kind of event. `top` is the screen row where the child's screen starts (rows above it belong
/// to the control room).
pub fn encode_mouse(ev: &MouseEvent, modes: Modes, top: u16) -> Vec<u8> {
    if ev.row < top {
        return Vec::new();
    }
    let button = |b: MouseButton| match b {
        MouseButton::Left => 0u16,
        MouseButton::Middle => 1,
        MouseButton::Right => 2,
    };
    let (code, release) = match ev.kind {
        MouseEventKind::Down(b) => (button(b), false),
        MouseEventKind::Up(b) => (button(b), true),
        MouseEventKind::Drag(b) => (button(b) + 32, false),
        MouseEventKind::Moved => (3 + 32, false),
        MouseEventKind::ScrollUp => (64, false),
        MouseEventKind::ScrollDown => (65, false),
        MouseEventKind::ScrollLeft => (66, false),
        MouseEventKind::ScrollRight => (67, false),
    };
    let wanted = match modes.mouse {
        MouseProtocolMode::None => false,
        MouseProtocolMode::Press => !release && code < 32,
        MouseProtocolMode::PressRelease => !(32..64).contains(&code),
        MouseProtocolMode::ButtonMotion => !matches!(ev.kind, MouseEventKind::Moved),
        MouseProtocolMode::AnyMotion => true,
    };
    if !wanted {
        return Vec::new();
    }
    let mut code = code;
    if ev.modifiers.contains(KeyModifiers::SHIFT) {
        code += 4;
    }
    if ev.modifiers.contains(KeyModifiers::ALT) {
        code += 8;
    }
    if ev.modifiers.contains(KeyModifiers::CONTROL) {
        code += 16;
    }
    let (x, y) = (ev.column + 1, ev.row - top + 1);
    match modes.mouse_encoding {
        MouseProtocolEncoding::Sgr => {
            format!("\x1b[<{code};{x};{y}{}", if release { 'm' } else { 'M' }).into_bytes()
        }
        _ => {
            let code = if release { 3 + (code & !3) } else { code };
            let clamp = |v: u16| (v + 32).min(255) as u8;
            vec![0x1b, b'[', b'M', clamp(code), clamp(x), clamp(y)]
        }
    }
}

/// xterm's modifier parameter: 1 + shift + 2·alt + 4·ctrl.
fn modifier_param(m: KeyModifiers) -> u8 {
    1 + u8::from(m.contains(KeyModifiers::SHIFT))
        + 2 * u8::from(m.contains(KeyModifiers::ALT))
        + 4 * u8::from(m.contains(KeyModifiers::CONTROL))
}

/// `CSI 1;m X` with modifiers, else `CSI X` (or `SS3 X` in application-cursor mode).
fn cursor_key(letter: char, mods: KeyModifiers, modes: Modes) -> Vec<u8> {
    let m = modifier_param(mods);
    if m > 1 {
        format!("\x1b[1;{m}{letter}").into_bytes()
    } else if modes.application_cursor {
        format!("\x1bO{letter}").into_bytes()
    } else {
        format!("\x1b[{letter}").into_bytes()
    }
}

/// `CSI n ~` with an optional modifier parameter.
fn tilde_key(n: u8, mods: KeyModifiers) -> Vec<u8> {
    let m = modifier_param(mods);
    if m > 1 {
        format!("\x1b[{n};{m}~").into_bytes()
    } else {
        format!("\x1b[{n}~").into_bytes()
    }
}

/// The bytes for a key press; empty for keys with no encoding.
pub fn encode_key(key: &KeyEvent, modes: Modes) -> Vec<u8> {
    let mods = key.modifiers;
    let alt = mods.contains(KeyModifiers::ALT);
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    let mut out = match key.code {
        KeyCode::Char(c) if ctrl => {
            let b = match c.to_ascii_lowercase() {
                c @ 'a'..='z' => c as u8 - b'a' + 1,
                '@' | ' ' | '2' => 0,
                '[' | '3' => 0x1b,
                '\\' | '4' => 0x1c,
                ']' | '5' => 0x1d,
                '^' | '6' => 0x1e,
                '_' | '7' | '/' => 0x1f,
                '8' | '?' => 0x7f,
                _ => return Vec::new(),
            };
            vec![b]
        }
        KeyCode::Char(c) => c.to_string().into_bytes(),
        KeyCode::Enter => vec![b'\r'],
        KeyCode::Tab => vec![b'\t'],
        KeyCode::BackTab => b"\x1b[Z".to_vec(),
        KeyCode::Backspace => vec![if ctrl { 0x08 } else { 0x7f }],
        KeyCode::Esc => vec![0x1b],
        KeyCode::Up => cursor_key('A', mods, modes),
        KeyCode::Down => cursor_key('B', mods, modes),
        KeyCode::Right => cursor_key('C', mods, modes),
        KeyCode::Left => cursor_key('D', mods, modes),
        KeyCode::Home => cursor_key('H', mods, modes),
        KeyCode::End => cursor_key('F', mods, modes),
        KeyCode::Insert => tilde_key(2, mods),
        KeyCode::Delete => tilde_key(3, mods),
        KeyCode::PageUp => tilde_key(5, mods),
        KeyCode::PageDown => tilde_key(6, mods),
        KeyCode::F(n @ 1..=4) => {
            let letter = (b'P' + n - 1) as char;
            let m = modifier_param(mods);
            if m > 1 {
                format!("\x1b[1;{m}{letter}").into_bytes()
            } else {
                format!("\x1bO{letter}").into_bytes()
            }
        }
        KeyCode::F(n @ 5..=12) => {
            let code = [15, 17, 18, 19, 20, 21, 23, 24][(n - 5) as usize];
            tilde_key(code, mods)
        }
        _ => Vec::new(),
    };
    // Alt prefixes ESC, except for keys whose sequence already carries the modifier (xterm's
    // `CSI 1;3D` for Alt+Left: an ESC prefix would read as a lone Esc to crossterm-based agents).
    let carries_mod = matches!(
        key.code,
        KeyCode::Up
            | KeyCode::Down
            | KeyCode::Left
            | KeyCode::Right
            | KeyCode::Home
            | KeyCode::End
            | KeyCode::Insert
            | KeyCode::Delete
            | KeyCode::PageUp
            | KeyCode::PageDown
            | KeyCode::F(_)
    );
    if alt && !out.is_empty() && !carries_mod {
        out.insert(0, 0x1b);
    }
    out
}

/// The bytes for pasted text: bracketed when the child asked for it, newlines as Enter.
pub fn encode_paste(text: &str, modes: Modes) -> Vec<u8> {
    let body = text.replace("\r\n", "\r").replace('\n', "\r");
    if modes.bracketed_paste {
        format!("\x1b[200~{body}\x1b[201~").into_bytes()
    } else {
        body.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode, m: KeyModifiers) -> Vec<u8> {
        encode_key(&KeyEvent::new(code, m), Modes::default())
    }

    #[test]
    fn plain_keys() {
        assert_eq!(k(KeyCode::Char('a'), KeyModifiers::NONE), b"a");
        assert_eq!(k(KeyCode::Char('é'), KeyModifiers::NONE), "é".as_bytes());
        assert_eq!(k(KeyCode::Enter, KeyModifiers::NONE), b"\r");
        assert_eq!(k(KeyCode::Backspace, KeyModifiers::NONE), b"\x7f");
        assert_eq!(k(KeyCode::BackTab, KeyModifiers::SHIFT), b"\x1b[Z");
    }

    #[test]
    fn control_and_alt() {
        assert_eq!(k(KeyCode::Char('c'), KeyModifiers::CONTROL), b"\x03");
        assert_eq!(k(KeyCode::Char(' '), KeyModifiers::CONTROL), b"\x00");
        assert_eq!(k(KeyCode::Char('b'), KeyModifiers::ALT), b"\x1bb");
        assert_eq!(
            k(
                KeyCode::Char('x'),
                KeyModifiers::CONTROL | KeyModifiers::ALT
            ),
            b"\x1b\x18"
        );
    }

    #[test]
    fn cursor_keys_follow_the_mode_and_modifiers() {
        assert_eq!(k(KeyCode::Up, KeyModifiers::NONE), b"\x1b[A");
        let app = Modes {
            application_cursor: true,
            ..Default::default()
        };
        assert_eq!(
            encode_key(&KeyEvent::new(KeyCode::Up, KeyModifiers::NONE), app),
            b"\x1bOA"
        );
        assert_eq!(k(KeyCode::Right, KeyModifiers::CONTROL), b"\x1b[1;5C");
        assert_eq!(k(KeyCode::Home, KeyModifiers::NONE), b"\x1b[H");
        assert_eq!(k(KeyCode::End, KeyModifiers::SHIFT), b"\x1b[1;2F");
        assert_eq!(k(KeyCode::Left, KeyModifiers::ALT), b"\x1b[1;3D");
        assert_eq!(
            k(KeyCode::Right, KeyModifiers::CONTROL | KeyModifiers::ALT),
            b"\x1b[1;7C"
        );
    }

    #[test]
    fn function_and_editing_keys() {
        assert_eq!(k(KeyCode::F(1), KeyModifiers::NONE), b"\x1bOP");
        assert_eq!(k(KeyCode::F(5), KeyModifiers::NONE), b"\x1b[15~");
        assert_eq!(k(KeyCode::F(12), KeyModifiers::SHIFT), b"\x1b[24;2~");
        assert_eq!(k(KeyCode::Delete, KeyModifiers::NONE), b"\x1b[3~");
        assert_eq!(k(KeyCode::PageUp, KeyModifiers::CONTROL), b"\x1b[5;5~");
    }

    #[test]
    fn mouse_reports_only_when_asked_and_in_the_asked_encoding() {
        let click = MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 4,
            row: 3,
            modifiers: KeyModifiers::NONE,
        };
        assert!(encode_mouse(&click, Modes::default(), 1).is_empty());
        let sgr = Modes {
            mouse: MouseProtocolMode::PressRelease,
            mouse_encoding: MouseProtocolEncoding::Sgr,
            ..Default::default()
        };
        assert_eq!(encode_mouse(&click, sgr, 1), b"\x1b[<0;5;3M");
        let up = MouseEvent {
            kind: MouseEventKind::Up(MouseButton::Left),
            ..click
        };
        assert_eq!(encode_mouse(&up, sgr, 1), b"\x1b[<0;5;3m");
        let x10 = Modes {
            mouse: MouseProtocolMode::Press,
            ..Default::default()
        };
        assert_eq!(
            encode_mouse(&click, x10, 1),
            vec![0x1b, b'[', b'M', 32, 37, 35]
        );
        assert!(encode_mouse(&up, x10, 1).is_empty(), "press-only mode");
        let wheel = MouseEvent {
            kind: MouseEventKind::ScrollUp,
            ..click
        };
        assert_eq!(encode_mouse(&wheel, sgr, 1), b"\x1b[<64;5;3M");
        let on_bar = MouseEvent { row: 0, ..click };
        assert!(
            encode_mouse(&on_bar, sgr, 1).is_empty(),
            "the control room's own bar"
        );
    }

    #[test]
    fn paste_is_bracketed_only_when_asked() {
        let on = Modes {
            bracketed_paste: true,
            ..Default::default()
        };
        assert_eq!(encode_paste("a\nb", on), b"\x1b[200~a\rb\x1b[201~");
        assert_eq!(encode_paste("a\nb", Modes::default()), b"a\rb");
    }
}
