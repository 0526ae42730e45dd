//! A streaming filter between a worker's PTY and its terminal emulator that bounds what the
//! emulator buffers for string sequences (OSC, DCS, SOS, PM, APC).
//!
//! The emulator (vte under vt100) keeps the whole body of an OSC in memory until its terminator
//! comes, so a worker printing 50 MB of `ESC ]` without ending it grows the process by 100+ MB.
//! [`StreamCap`] passes every byte through unchanged except that the body of a string sequence
//! longer than its cap is cut: the first `cap` bytes pass, the rest is dropped up to (not
//! including) the terminator, which passes so the emulator leaves the sequence where it would
//! have. The emulator then sees a sequence of at most `cap` bytes (an over-long title is shown
//! truncated; an over-long clipboard write, which switchyard ignores anyway, never completes).
//!
//! It recognizes sequences the way the emulator does (vte 0.15): 7-bit introducers only
//! (`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _`; 8-bit C1 bytes in UTF-8 text are not
//! introducers), ended by CAN, SUB or ESC (as in `ESC \`), BEL for OSC, and C1 ST (0x9c) for a
//! DCS body. Its state survives chunk boundaries and takes a few bytes whatever the input: no
//! buffer, so memory is O(1).

/// The default cap on a string sequence's body, in bytes: 64 KiB. An OSC 52 clipboard write of
/// a few KiB, a long title or a sixel-free DCS pass whole.
pub const DEFAULT_CAP: usize = 64 * 1024;

const BEL: u8 = 0x07;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const ESC: u8 = 0x1b;
const ST: u8 = 0x9c;

/// Which string sequence the filter is in, with the emulator's DCS sub-states (a DCS body only
/// begins after its final byte; only a body ends on C1 ST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Osc,
    DcsEntry,
    DcsParam,
    DcsIntermediate,
    DcsIgnore,
    DcsBody,
    /// SOS, PM and APC: ignored by the emulator, ended only by CAN, SUB or ESC.
    SosPmApc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    EscapeIntermediate,
    /// Inside a string sequence: `len` body bytes passed so far (at most the cap); `dropping`
    /// once the cap was reached.
    Str {
        kind: Kind,
        len: usize,
        dropping: bool,
    },
}

/// The filter for one stream (one worker's PTY output).
#[derive(Debug, Clone)]
pub struct StreamCap {
    cap: usize,
    state: State,
    dropped: u64,
}

impl Default for StreamCap {
    fn default() -> Self {
        StreamCap::new(DEFAULT_CAP)
    }
}

impl StreamCap {
    /// A filter that passes at most `cap` bytes of any string sequence's body.
    pub fn new(cap: usize) -> StreamCap {
        StreamCap {
            cap,
            state: State::Ground,
            dropped: 0,
        }
    }

    /// Bytes dropped so far (the parts of over-long sequences beyond the cap).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Filters the next chunk of the stream: calls `emit` with the runs of bytes to keep, in
    /// order (the whole chunk at once when nothing is dropped).
    pub fn feed(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut kept_from = 0;
        let mut i = 0;
        while i < input.len() {
            // Fast paths: skip what cannot change the state.
            match self.state {
                State::Ground => match memchr::memchr(ESC, &input[i..]) {
                    Some(k) => {
                        i += k;
                        // ESC and a final byte that starts no string (`ESC [` of every CSI,
                        // `ESC 7`, …): back in ground, as two steps would leave it.
                        if let Some(&next) = input.get(i + 1) {
                            if (0x30..=0x7e).contains(&next)
                                && !matches!(next, b']' | b'P' | b'X' | b'^' | b'_')
                            {
                                i += 2;
                                continue;
                            }
                        }
                    }
                    None => break,
                },
                State::Str {
                    kind: kind @ (Kind::Osc | Kind::DcsBody | Kind::DcsIgnore | Kind::SosPmApc),
                    len,
                    dropping,
                } => {
                    let room = if dropping {
                        input.len() - i
                    } else {
                        (self.cap - len).min(input.len() - i)
                    };
                    let window = &input[i..i + room];
                    // The terminators: BEL, CAN, SUB, ESC and C1 ST (three at a time for memchr).
                    let k = match (
                        memchr::memchr3(BEL, CAN, SUB, window),
                        memchr::memchr2(ESC, ST, window),
                    ) {
                        (Some(a), Some(b)) => a.min(b),
                        (a, b) => a.or(b).unwrap_or(room),
                    };
                    if k > 0 {
                        if dropping {
                            if kept_from < i {
                                emit(&input[kept_from..i]);
                            }
                            self.dropped += k as u64;
                            kept_from = i + k;
                        } else {
                            self.state = State::Str {
                                kind,
                                len: len + k,
                                dropping,
                            };
                        }
                        i += k;
                        continue;
                    }
                }
                _ => {}
            }
            if !self.step(input[i]) {
                if kept_from < i {
                    emit(&input[kept_from..i]);
                }
                kept_from = i + 1;
            }
            i += 1;
        }
        if kept_from < input.len() {
            emit(&input[kept_from..]);
        }
    }

    /// Filters a chunk into a new vector (for tests and small inputs).
    pub fn filter(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.feed(input, |part| out.extend_from_slice(part));
        out
    }

    /// Takes one byte; returns whether it is kept.
    fn step(&mut self, b: u8) -> bool {
        self.state = match self.state {
            State::Ground => {
                if b == ESC {
                    State::Escape
                } else {
                    State::Ground
                }
            }
            State::Escape => match b {
                CAN | SUB => State::Ground,
                0x20..=0x2f => State::EscapeIntermediate,
                b']' => Self::string(Kind::Osc),
                b'P' => Self::string(Kind::DcsEntry),
                b'X' | b'^' | b'_' => Self::string(Kind::SosPmApc),
                0x30..=0x7e => State::Ground,
                // Other C0 controls are executed inside an escape; ESC restarts it; DEL and
                // 8-bit bytes are ignored there.
                _ => State::Escape,
            },
            State::EscapeIntermediate => match b {
                CAN | SUB | 0x30..=0x7e => State::Ground,
                ESC => State::Escape,
                _ => State::EscapeIntermediate,
            },
            State::Str {
                kind,
                len,
                dropping,
            } => {
                let end = match (b, kind) {
                    (CAN | SUB, _) => Some(State::Ground),
                    (ESC, _) => Some(State::Escape),
                    (BEL, Kind::Osc) | (ST, Kind::DcsBody) => Some(State::Ground),
                    _ => None,
                };
                if let Some(next) = end {
                    // The terminator always passes: the emulator ends the sequence here.
                    self.state = next;
                    return true;
                }
                if dropping || len >= self.cap {
                    // A dropped byte never reaches the emulator, so it moves no DCS sub-state.
                    self.state = State::Str {
                        kind,
                        len,
                        dropping: true,
                    };
                    self.dropped += 1;
                    return false;
                }
                State::Str {
                    kind: dcs_next(kind, b),
                    len: len + 1,
                    dropping: false,
                }
            }
        };
        true
    }

    fn string(kind: Kind) -> State {
        State::Str {
            kind,
            len: 0,
            dropping: false,
        }
    }
}

/// The first `b` in `hay`. Text between escape sequences in agents' output is often 10–20 bytes
/// (colours), where a call into memchr costs more than looking at 16 bytes one by one: those
/// are looked at first, memchr takes the rest. (The flood tracker's text runs gain by it; this
/// filter's own scan, which starts right after each `ESC [`, measured faster with memchr alone:
/// `cargo bench --bench emulator`, part 4.)
pub fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    let near = hay.len().min(16);
    match hay[..near].iter().position(|&x| x == b) {
        Some(i) => Some(i),
        None => memchr::memchr(b, &hay[near..]).map(|i| i + near),
    }
}

/// The DCS sub-state after byte `b` (other kinds stay as they are), as the emulator moves.
fn dcs_next(kind: Kind, b: u8) -> Kind {
    match (kind, b) {
        (Kind::DcsEntry | Kind::DcsParam | Kind::DcsIntermediate, 0x40..=0x7e) => Kind::DcsBody,
        (Kind::DcsEntry | Kind::DcsParam, 0x20..=0x2f) => Kind::DcsIntermediate,
        (Kind::DcsEntry, 0x30..=0x3f) => Kind::DcsParam,
        (Kind::DcsParam, 0x3c..=0x3f) | (Kind::DcsIntermediate, 0x30..=0x3f) => Kind::DcsIgnore,
        (k, _) => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` split at `cuts` (chunk boundaries anywhere).
    fn chunked(f: &mut StreamCap, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([input.len()]) {
            f.feed(&input[from..c.max(from)], |p| out.extend_from_slice(p));
            from = c.max(from);
        }
        out
    }

    fn title_after(bytes: &[u8]) -> (String, String) {
        let mut p =
            vt100::Parser::new_with_callbacks(5, 40, 0, crate::host::worker::Term::default());
        let mut f = StreamCap::new(16);
        f.feed(bytes, |part| p.process(part));
        (p.callbacks().title.clone(), p.screen().contents())
    }

    #[test]
    fn an_over_long_osc_is_cut_to_the_cap_and_what_follows_is_shown() {
        let mut input = b"ab\x1b]0;".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1000));
        input.extend_from_slice(b"\x07after");
        let mut f = StreamCap::new(16);
        let out = f.filter(&input);
        assert_eq!(
            out,
            [b"ab\x1b]0;".as_slice(), &[b'x'; 14], b"\x07after"].concat()
        );
        assert_eq!(f.dropped(), 1000 - 14);
        let (title, screen) = title_after(&input);
        assert_eq!(title, "x".repeat(14));
        assert_eq!(screen, "abafter");
    }

    #[test]
    fn every_terminator_ends_a_sequence_where_the_emulator_does() {
        for (intro, end) in [
            (b"\x1b]2;".as_slice(), b"\x1b\\".as_slice()),
            (b"\x1b]2;", b"\x18"),
            (b"\x1bP1;2q", b"\x9c"),
            (b"\x1bP1;2q", b"\x1b\\"),
            (b"\x1b_", b"\x1b\\"),
            (b"\x1bX", b"\x1a"),
            (b"\x1b^", b"\x1b\\"),
        ] {
            let input = [intro, &[b'y'; 100], end, b"ok"].concat();
            let (_, screen) = title_after(&input);
            assert!(screen.ends_with("ok"), "{intro:?} {end:?}: {screen:?}");
            let mut f = StreamCap::new(16);
            let out = f.filter(&input);
            assert!(out.ends_with(&[end, b"ok"].concat()), "{intro:?} {end:?}");
        }
        // BEL is body in a DCS and 0x9c is body in an OSC, as in the emulator.
        let mut f = StreamCap::new(4);
        let out = f.filter(b"\x1bPq\x07\x07\x07\x07\x07\x07\x1b\\z");
        assert_eq!(out, b"\x1bPq\x07\x07\x07\x1b\\z");
        let mut f = StreamCap::new(4);
        let out = f.filter(b"\x1b]0;\x9c\x9c\x9c\x9c\x07z");
        assert_eq!(out, b"\x1b]0;\x9c\x9c\x07z");
    }

    #[test]
    fn an_osc_52_clipboard_write_of_a_few_kib_passes_whole() {
        let payload = "QUJD".repeat(2048); // 8 KiB of base64
        let input = format!("\x1b]52;c;{payload}\x07");
        let mut f = StreamCap::default();
        assert_eq!(f.filter(input.as_bytes()), input.as_bytes());
        assert_eq!(f.dropped(), 0);
    }

    #[test]
    fn c1_bytes_in_utf8_text_start_nothing() {
        // U+275D (❝) is E2 9D 9D: 0x9d is an 8-bit OSC introducer the emulator does not honour.
        let text = "❝".repeat(100);
        let mut f = StreamCap::new(4);
        assert_eq!(f.filter(text.as_bytes()), text.as_bytes());
    }

    #[test]
    fn memory_is_constant_whatever_the_input() {
        // No buffer: the filter is a few words, and an endless sequence emits at most the cap.
        assert!(std::mem::size_of::<StreamCap>() <= 48);
        let mut f = StreamCap::new(1024);
        let mut emitted = 0;
        f.feed(b"\x1b]0;", |p| emitted += p.len());
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..160 {
            f.feed(&chunk, |p| emitted += p.len());
        }
        assert_eq!(emitted, 2 + 1024, "ESC ] and the capped body");
        assert_eq!(f.dropped(), 2 + 160 * 64 * 1024 - 1024);
    }

    /// Pieces a stream is made of: text (with any bytes but ESC), complete string sequences
    /// of up to `max` bytes, and other escapes.
    fn piece(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let body = proptest::collection::vec(
            any::<u8>().prop_filter("no terminator", |b| {
                !matches!(*b, BEL | CAN | SUB | ESC | ST)
            }),
            // Room for a DCS head within `max`.
            0..max.saturating_sub(8),
        );
        prop_oneof![
            proptest::collection::vec(any::<u8>().prop_filter("no ESC", |b| *b != ESC), 0..40),
            (
                prop_oneof![
                    Just(b"\x1b]".to_vec()),
                    Just(b"\x1bP".to_vec()),
                    Just(b"\x1bP1;2|".to_vec()),
                    Just(b"\x1b_".to_vec()),
                    Just(b"\x1b^".to_vec()),
                    Just(b"\x1bX".to_vec()),
                ],
                body,
                prop_oneof![
                    Just(b"\x07".to_vec()),
                    Just(b"\x1b\\".to_vec()),
                    Just(b"\x18".to_vec()),
                    Just(b"\x1a".to_vec()),
                ],
            )
                // BEL ends only an OSC.
                .prop_map(|(a, b, c)| {
                    let c = if c == b"\x07" && a != b"\x1b]" {
                        b"\x1b\\".to_vec()
                    } else {
                        c
                    };
                    [a, b, c].concat()
                }),
            Just(b"\x1b[6n".to_vec()),
            Just(b"\x1b(B".to_vec()),
            Just(b"\x1b7".to_vec()),
            Just(b"\x1b\x1b[A".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Nothing over-long: output == input, however the stream is chunked.
        #[test]
        fn short_sequences_pass_unchanged(
            pieces in proptest::collection::vec(piece(64), 0..40),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let input = pieces.concat();
            let mut f = StreamCap::new(64);
            prop_assert_eq!(chunked(&mut f, &input, &cuts), input);
            prop_assert_eq!(f.dropped(), 0);
        }

        /// Any bytes shorter than the cap pass unchanged (no body can be longer than the input).
        #[test]
        fn any_input_within_the_cap_passes_unchanged(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut f = StreamCap::new(300);
            prop_assert_eq!(chunked(&mut f, &input, &cuts), input);
        }

        /// With over-long sequences: the result does not depend on chunking, only bytes beyond
        /// the cap are dropped, and what reaches the emulator per sequence is bounded.
        #[test]
        fn chunking_does_not_matter_and_drops_are_bounded(
            pieces in proptest::collection::vec(piece(200), 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let input = pieces.concat();
            let whole = StreamCap::new(16).filter(&input);
            let mut f = StreamCap::new(16);
            let parts = chunked(&mut f, &input, &cuts);
            prop_assert_eq!(&parts, &whole);
            prop_assert_eq!(input.len() as u64 - f.dropped(), whole.len() as u64);
            // The same screen text as the unfiltered stream: only sequence bodies were cut.
            let screen = |bytes: &[u8]| {
                let mut p = vt100::Parser::new(5, 40, 0);
                p.process(bytes);
                p.screen().contents()
            };
            prop_assert_eq!(screen(&whole), screen(&input));
        }
    }
}
