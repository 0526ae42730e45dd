//! Flood: parse only what can still be seen.
//!
//! A worker that prints megabytes of log as fast as it can costs the control room a full
//! terminal-emulator parse of every byte (vt100: per-character cell writes, a new row allocated
//! per scrolled line), though nearly all of it scrolls out of the kept history (screen rows +
//! scrollback) before anyone could look at it. The transcript on disk keeps every byte; the
//! emulator only has to end in the state a full parse would have left. This module finds, in a
//! backlog of output (a *batch*, built by the worker's reader while the worker floods), a *cut*
//! before which nothing can still be seen, and parses only the tail after it into a fresh
//! emulator, after a prelude that carries the state a full parse of the head would have left.
//!
//! # The cut, and why skipping the head is exact
//!
//! Let `R` be the screen's rows and `S` the emulator's scrollback (its `spec.scrollback`, read from
//! the caller, never assumed). The cut is a position right after the bytes `\r\n` such that the
//! tail after it holds at least `N = 2R + S` executed line feeds (LF, VT, FF). Skipping the head is
//! exact — the same screen, the same kept scrollback rows, the same title, marks, notifications,
//! bells, input modes, attributes and saved cursor as a full parse, byte for byte in
//! `contents_formatted` — when all of the following hold; otherwise the batch is parsed whole
//! ([`Refusal`] names why).
//!
//! 1. **At the cut the parser is in its ground state** (no escape sequence, string or UTF-8
//!    character open), so a fresh parser starting there reads the tail the same way. The tracker
//!    knows this without a grid: only ESC opens a sequence (vte 0.15 takes 8-bit C1 bytes as
//!    text), and after the last ESC, any dispatch (ESC, CSI, OSC, DCS end) or CAN/SUB returns vte
//!    to ground ([`Tracker`] keeps `esc_open`). A CSI that ends silently (an over-long one vte
//!    ignores) leaves `esc_open` set: refused, never guessed. The cursor column is 0 there (CR
//!    then LF, both executed in ground).
//! 2. **At the cut the primary screen is active, with no scroll region, origin mode off, no
//!    alternate-screen content that could come back** (mode 47 never used; 1049 clears the
//!    alternate grid on entry), **and the saved cursor is known**: no DECSC (ESC 7, `?1049h`) in
//!    the head, and the one saved before the batch did not save origin mode. The saved position
//!    and attributes are then read from the old emulator and saved again in the new one.
//! 3. **The tail moves rows only down**: no CUU, CPL, CUP, HVP, VPA, IL, DL, SU, SD, DECSTBM, RI,
//!    DECSC/DECRC, RIS, origin-mode or alternate-screen switch, clear-scrollback (`ED 3`), save or
//!    restore (`CSI s`/`u`), window ops. CR, BS, TAB (fixed stops in vt100), CUF/CUB/CHA/CUD/CNL,
//!    EL, ED 0–2, ECH, DCH, ICH, SGR, other modes and text are fine.
//! 4. **The head holds no query** a full parse would answer (DSR/CPR, DA, OSC `?` colour
//!    queries) nor any other query (XTVERSION, DECRQM, window reports, DECRQSS/XTGETTCAP), and
//!    the tail asks for no cursor position (DSR, whose answer tells the row, which differs until
//!    the cursor reaches the bottom): the child's answers stay exactly those of a full parse.
//!
//! Proof of the grid part. Both the real emulator (which parsed the head) and the fresh one
//! (cursor at row 0, column 0) start the tail at column 0 with the same attributes and modes, on
//! the primary screen with no scroll region and no origin mode, and condition 3 keeps it so. The
//! tail's operations then act identically on the cursor column and on the cursor's row, whatever
//! that row holds. Without upward moves the cursor reaches the bottom row after at most `R - 1`
//! line feeds in either emulator (CUD/CNL only bring it there sooner) and stays there; from then
//! on every line feed scrolls: it creates a blank row at the bottom (the same in both) and pushes
//! the top row into the scrollback, which keeps the newest `S`. After `R + S` such scrolls every
//! row that existed when the cursor reached the bottom — the only rows that can differ, since
//! they held head output in one emulator and blanks in the other — has left both the screen and
//! the scrollback. Every row kept at the end was created by a scroll after that point and then
//! changed only by operations that act identically (text and erasures on the cursor's row; ED 1/2
//! set rows above to the same blanks in both). `N = (R - 1) + (R + S) + 1` line feeds suffice;
//! the cursor ends on the bottom row at the same column in both.
//!
//! Proof of the state part. Everything else a full parse leaves is carried by a [`Tracker`] that
//! sees every byte (head and tail, flood or not): SGR attributes, keypad/cursor/bracketed-paste/
//! mouse modes, cursor visibility and the saved attributes come from a *shadow* vt100 emulator
//! that receives only the sequences that change them (`CSI m`, `CSI ? h/l`, ESC 7/8/=/>/c) — its
//! state is vt100's own by construction; the flags of condition 2 follow vt100's code
//! (`Screen::decset`, `Grid::set_scroll_region`, `Grid::save_cursor`). The head's OSC sequences
//! (title, OSC 7501, 133, 9, 777 …) are replayed, in order, into the fresh emulator, so the
//! [`crate::host::worker::Term`] callbacks see what they would have seen; its bells are added; its
//! queries were refused above. The [`crate::host::worker::Term`] itself (generation, title, marks) moves
//! over to the fresh emulator.
//!
//! Cost: the tracker scans text for ESC, line feeds and bells without decoding it, copies plain
//! SGRs (`ESC [ digits ; … m`, most of a coloured log's sequences) as they are, and hands vte only
//! the other sequences — a small fraction of vt100's per-character grid work. The tail parsed is
//! about `N` lines (~400 KB at 160 columns with 5 000 lines of scrollback), so a batch of a few
//! MiB skips most of its bytes.

use crate::host::worker::{Emulator, Term};
use std::time::{Duration, Instant};

/// Line feeds beyond `2 × rows + scrollback` a cut leaves in the tail (slack; the proof needs
/// none).
pub const MARGIN_LINES: usize = 2;

/// Why a batch was parsed whole rather than cut (see the module docs for each condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer than `2 × rows + scrollback` line feeds after any `\r\n` (the usual case for
    /// interactive output).
    FewLines,
    /// At the cut, an escape sequence or string was still open.
    MidSequence,
    /// At the cut the alternate screen was active, or mode 47 was used (its content could return).
    AltScreen,
    /// At the cut a scroll region (DECSTBM) was set.
    ScrollRegion,
    /// At the cut origin mode (DECOM) was on, or the saved cursor saved it on.
    OriginMode,
    /// The head saved the cursor (DECSC): its row is not known without the grid.
    SavedCursor,
    /// The head holds a query (DSR/CPR, DA, an OSC colour query, XTVERSION, DECRQM, …), or the
    /// tail asks for the cursor position.
    Query,
    /// The head resets the terminal (RIS).
    Reset,
    /// The tail moves rows other than by line feeds (CUU, CUP, IL, RI, DECSTBM, …).
    TailMoves,
    /// The emulator's size changed between planning and parsing.
    Resized,
}

/// What was done with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed whole, for this reason.
    Whole(Refusal),
    /// The first `skipped` bytes were skipped, the rest parsed into a fresh emulator.
    Cut {
        /// Bytes not parsed into the grid.
        skipped: usize,
    },
}

/// What [`Tracker::plan`] decided for a batch; carried out by [`apply`].
#[derive(Debug)]
pub enum Plan {
    /// Parse the whole batch into the emulator.
    Whole(Refusal),
    /// Skip `batch[..cut]`.
    Cut(Cut),
}

/// A cut with what the fresh emulator needs before the tail.
#[derive(Debug)]
pub struct Cut {
    /// Bytes skipped (the tail starts here).
    pub cut: usize,
    /// Rows the cut was computed for.
    pub rows: u16,
    /// Modes, cursor visibility and attributes at the cut (vt100 formatted sequences).
    pub prelude: Vec<u8>,
    /// The head's OSC sequences, re-encoded, in order.
    pub osc: Vec<u8>,
    /// Bells the head rang.
    pub bells: u32,
}

/// Per-grid flags vt100 keeps but does not expose.
#[derive(Debug, Default, Clone, Copy)]
struct GridFlags {
    origin: bool,
    saved_origin: bool,
    region: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Live,
    Head,
    Tail,
}

/// Above this many bytes of pending shadow input, it is parsed into the shadow.
const PENDING_FLUSH: usize = 4096;

/// The tracker's `vte::Perform`: state without a grid.
struct State {
    rows: u16,
    alt: bool,
    alt47: bool,
    grids: [GridFlags; 2],
    /// Dispatches and CAN/SUB seen (each returns vte to ground).
    closing: u64,
    /// vte stops once `closing` reaches this ([`vte::Perform::terminated`]).
    stop_at: u64,
    /// The sequence vte reads now starts with its ESC in the bytes at hand.
    raw_ok: bool,
    /// It was an SGR, to be copied into `pending` as it is.
    sgr_raw: bool,
    /// A vt100 emulator of one cell fed only SGR, DECSET/DECRST, ESC 7/8/=/>/c.
    shadow: vt100::Parser,
    /// Shadow input not parsed yet (SGRs since the last reset are dropped when a reset comes).
    pending: Vec<u8>,
    /// Where the current run of SGRs in `pending` starts.
    sgr_run: usize,
    phase: Phase,
    head_refusal: Option<Refusal>,
    osc: Vec<u8>,
    bells: u32,
    /// The head holds a BEL byte somewhere (else its text runs need no count).
    head_bells: bool,
    tail_refusal: Option<Refusal>,
    tail_lfs: usize,
}

/// Follows a worker's output stream without a grid (see the module docs): every byte the
/// emulator parses or a cut skips goes through [`Tracker::plan`], in order.
pub struct Tracker {
    vte: vte::Parser,
    st: State,
    /// An ESC was seen and no dispatch or CAN/SUB after it: the parser may be mid-sequence.
    esc_open: bool,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("alt", &self.st.alt)
            .field("esc_open", &self.esc_open)
            .finish()
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    /// A tracker for a stream that starts on a fresh terminal.
    pub fn new() -> Tracker {
        Tracker {
            vte: vte::Parser::new(),
            st: State {
                rows: 24,
                alt: false,
                alt47: false,
                grids: [GridFlags::default(); 2],
                closing: 0,
                stop_at: u64::MAX,
                raw_ok: false,
                sgr_raw: false,
                shadow: vt100::Parser::new(1, 1, 0),
                pending: Vec::new(),
                sgr_run: 0,
                phase: Phase::Live,
                head_refusal: None,
                osc: Vec::new(),
                bells: 0,
                head_bells: false,
                tail_refusal: None,
                tail_lfs: 0,
            },
            esc_open: false,
        }
    }

    /// Feeds bytes. Text between sequences (the bulk of a log) is scanned here, counting line
    /// feeds and bells; vte reads each sequence from its ESC until a dispatch or CAN/SUB returns
    /// it to ground ([`vte::Parser::advance_until_terminated`]), so its per-character path never
    /// runs over text. Same result as feeding vte everything: in ground, vte leaves only on ESC,
    /// and text changes no tracked state but the counts.
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if !self.esc_open {
                let rest = &bytes[i..];
                let run = crate::host::stream_cap::find_byte(0x1b, rest).unwrap_or(rest.len());
                self.st.text(&rest[..run]);
                i += run;
                if i == bytes.len() {
                    break;
                }
            }
            if !self.esc_open {
                if let Some(len) = plain_sgr(&bytes[i..]) {
                    self.st.sgr_bytes(&bytes[i..i + len]);
                    i += len;
                    continue;
                }
            }
            let start = self.st.closing;
            self.st.stop_at = start + 1;
            self.st.raw_ok = bytes[i] == 0x1b;
            let used = self.vte.advance_until_terminated(&mut self.st, &bytes[i..]);
            self.st.stop_at = u64::MAX;
            self.st.raw_ok = false;
            if std::mem::take(&mut self.st.sgr_raw) {
                self.st.pending.extend_from_slice(&bytes[i..i + used]);
                self.st.maybe_flush();
            }
            i += used;
            // An OSC or DCS ended by ESC dispatches on that ESC, which starts the next
            // sequence: vte is in its escape state then, not in ground.
            self.esc_open = self.st.closing == start || bytes[i - 1] == 0x1b;
        }
    }

    /// Reads `batch` (the next bytes of the stream) and decides whether its head can be skipped
    /// for an emulator of `rows` rows keeping `scrollback` lines. Always reads the whole batch:
    /// the tracker stays in step whatever [`apply`] does.
    pub fn plan(&mut self, batch: &[u8], rows: u16, scrollback: usize) -> Plan {
        self.st.rows = rows.max(1);
        let need = 2 * usize::from(rows) + scrollback;
        let Some(cut) = find_cut(batch, need + MARGIN_LINES) else {
            self.st.phase = Phase::Live;
            self.feed(batch);
            return Plan::Whole(Refusal::FewLines);
        };
        self.st.phase = Phase::Head;
        self.st.head_refusal = None;
        self.st.osc.clear();
        self.st.bells = 0;
        self.st.head_bells = memchr::memchr(0x07, &batch[..cut]).is_some();
        self.feed(&batch[..cut]);
        let at_cut = self.refusal_at_cut();
        let prelude = self.prelude();
        let osc = std::mem::take(&mut self.st.osc);
        let bells = self.st.bells;
        self.st.phase = Phase::Tail;
        self.st.tail_refusal = None;
        self.st.tail_lfs = 0;
        self.feed(&batch[cut..]);
        self.st.phase = Phase::Live;
        let refusal = at_cut
            .or(self.st.tail_refusal)
            .or_else(|| (self.st.tail_lfs < need).then_some(Refusal::FewLines));
        match refusal {
            Some(r) => Plan::Whole(r),
            None => Plan::Cut(Cut {
                cut,
                rows,
                prelude,
                osc,
                bells,
            }),
        }
    }

    fn refusal_at_cut(&self) -> Option<Refusal> {
        let g = self.st.grids[0];
        if self.esc_open {
            Some(Refusal::MidSequence)
        } else if self.st.alt || self.st.alt47 {
            Some(Refusal::AltScreen)
        } else if g.region {
            Some(Refusal::ScrollRegion)
        } else if g.origin || g.saved_origin {
            Some(Refusal::OriginMode)
        } else {
            self.st.head_refusal
        }
    }

    /// Modes, cursor visibility and attributes now, as vt100 writes them.
    fn prelude(&mut self) -> Vec<u8> {
        self.st.flush();
        let s = self.st.shadow.screen();
        let mut v = s.input_mode_formatted();
        if s.hide_cursor() {
            v.extend_from_slice(b"\x1b[?25l");
        }
        v.extend(s.attributes_formatted());
        v
    }
}

/// The length of the SGR at the start of `bytes` when it is the plain kind a coloured log is made
/// of — `ESC [`, digits and `;`, `m`, all within `bytes` — which vte would dispatch as
/// `csi_dispatch(params, [], _, 'm')` and nothing else.
fn plain_sgr(bytes: &[u8]) -> Option<usize> {
    if bytes.get(1) != Some(&b'[') {
        return None;
    }
    let body = bytes[2..]
        .iter()
        .take(64)
        .position(|&b| !(b.is_ascii_digit() || b == b';'))?;
    (bytes[2 + body] == b'm').then_some(body + 3)
}

/// The position right after a `\r\n` with at least `lines` `\n` bytes after it (the latest such
/// position, trying the 64 `\n` before it when one is not preceded by `\r`), if any.
pub fn find_cut(batch: &[u8], lines: usize) -> Option<usize> {
    let mut seen = 0;
    let mut tries = 0;
    let mut end = batch.len();
    while let Some(i) = batch[..end].iter().rposition(|&b| b == b'\n') {
        if seen >= lines {
            if i > 0 && batch[i - 1] == b'\r' {
                return Some(i + 1);
            }
            tries += 1;
            if tries > 64 {
                return None;
            }
        }
        seen += 1;
        end = i;
    }
    None
}

/// Where parsing `bytes` (a stream that starts on a fresh terminal) may start so that a fresh
/// emulator of `rows` rows keeping `scrollback` lines ends with the same text on its screen and
/// in its kept scrollback as one that parsed all of `bytes`: the cut of [`Tracker::plan`] when
/// skipping the head is exact (see the module docs), else 0. Attributes, modes, the title and
/// bells of the head are not carried: for readers of text only (the final message).
pub fn text_cut(bytes: &[u8], rows: u16, scrollback: usize) -> usize {
    match Tracker::new().plan(bytes, rows, scrollback) {
        Plan::Cut(c) => c.cut,
        Plan::Whole(_) => 0,
    }
}

/// Carries out `plan` on `p` for `batch` (the bytes the plan was made from): parses it whole,
/// or replaces `p` by a fresh emulator of the same size and `scrollback`, moving its
/// [`Term`] over, saving the old saved cursor again, replaying the prelude and the head's OSCs,
/// then parsing the tail. Does not bump [`Term::generation`].
pub fn apply(p: &mut Emulator, batch: &[u8], plan: Plan, scrollback: usize) -> Outcome {
    let cut = match plan {
        Plan::Whole(r) => {
            p.process(batch);
            return Outcome::Whole(r);
        }
        Plan::Cut(c) => c,
    };
    let (rows, cols) = p.screen().size();
    if rows != cut.rows {
        p.process(batch);
        return Outcome::Whole(Refusal::Resized);
    }
    let offset = p.screen().scrollback();
    let term: Term = std::mem::take(p.callbacks_mut());
    // The saved cursor (position and attributes) on the primary grid, set before this batch:
    // restore it in the old emulator (about to be dropped, its callbacks already moved out) and
    // read it. CAN first ends whatever sequence the previous batch left open there (the head,
    // which the tracker read, finishes it).
    if p.screen().alternate_screen() {
        p.process(b"\x18\x1b[?1049l");
    } else {
        p.process(b"\x18\x1b8");
    }
    let (row, col) = p.screen().cursor_position();
    let mut prelude = p.screen().attributes_formatted();
    if col >= cols {
        // Saved with a wrap pending (column = cols): print one cell at the last column to get
        // there again (that row is scrolled away by the tail, like every row before it).
        prelude.extend(format!("\x1b[{};{}H ", row + 1, cols).into_bytes());
    } else {
        prelude.extend(format!("\x1b[{};{}H", row + 1, col + 1).into_bytes());
    }
    prelude.extend_from_slice(b"\x1b7\x1b[H");
    prelude.extend_from_slice(&cut.prelude);
    prelude.extend_from_slice(&cut.osc);
    let mut fresh = vt100::Parser::new_with_callbacks(rows, cols, scrollback, term);
    fresh.process(&prelude);
    fresh.callbacks_mut().bells += cut.bells;
    // The old emulator (its full scrollback) goes before the tail fills the new one: one
    // scrollback's memory at a time.
    *p = fresh;
    p.process(&batch[cut.cut..]);
    p.screen_mut().set_scrollback(offset);
    Outcome::Cut { skipped: cut.cut }
}

impl State {
    /// Text vte would read in ground: only line feeds (LF, VT, FF) in the tail and bells in
    /// the head count (nothing else reads either).
    fn text(&mut self, run: &[u8]) {
        match self.phase {
            Phase::Tail => self.tail_lfs += memchr::memchr3_iter(0x0a, 0x0b, 0x0c, run).count(),
            Phase::Head if self.head_bells => {
                self.bells += memchr::memchr_iter(0x07, run).count() as u32
            }
            Phase::Head | Phase::Live => {}
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.shadow.process(&self.pending);
            self.pending.clear();
        }
        self.sgr_run = 0;
    }

    /// A plain SGR (see [`plain_sgr`]), as its bytes.
    fn sgr_bytes(&mut self, seq: &[u8]) {
        let body = &seq[2..seq.len() - 1];
        let first = body.split(|&b| b == b';').next().unwrap_or_default();
        if first.iter().all(|&b| b == b'0') {
            // Empty, or a leading 0: a reset (as `csi_dispatch` sees it).
            self.pending.truncate(self.sgr_run);
        }
        self.pending.extend_from_slice(seq);
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.pending.len() > PENDING_FLUSH {
            self.flush();
        }
    }

    /// Queues a non-SGR shadow sequence.
    fn push_other(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.sgr_run = self.pending.len();
        self.maybe_flush();
    }

    fn head(&mut self, r: Refusal) {
        if self.phase == Phase::Head && self.head_refusal.is_none() {
            self.head_refusal = Some(r);
        }
    }

    fn tail(&mut self) {
        self.tail_because(Refusal::TailMoves);
    }

    fn tail_because(&mut self, r: Refusal) {
        if self.phase == Phase::Tail && self.tail_refusal.is_none() {
            self.tail_refusal = Some(r);
        }
    }

    fn cur(&mut self) -> &mut GridFlags {
        &mut self.grids[usize::from(self.alt)]
    }
}

/// Writes a CSI as bytes vte parses back to the same dispatch: private markers (`<=>?`) before
/// the parameters, other intermediates after them.
fn write_csi(out: &mut Vec<u8>, params: &vte::Params, intermediates: &[u8], c: char) {
    out.extend_from_slice(b"\x1b[");
    out.extend(intermediates.iter().filter(|b| (0x3c..=0x3f).contains(*b)));
    for (i, group) in params.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        for (j, v) in group.iter().enumerate() {
            if j > 0 {
                out.push(b':');
            }
            push_num(out, *v);
        }
    }
    out.extend(intermediates.iter().filter(|b| !(0x3c..=0x3f).contains(*b)));
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Appends `v` in decimal.
fn push_num(out: &mut Vec<u8>, v: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn first(params: &vte::Params) -> u16 {
    params
        .iter()
        .next()
        .and_then(|g| g.first().copied())
        .unwrap_or(0)
}

impl vte::Perform for State {
    fn terminated(&self) -> bool {
        self.closing >= self.stop_at
    }

    fn execute(&mut self, b: u8) {
        match b {
            0x07 if self.phase == Phase::Head => self.bells += 1,
            0x0a..=0x0c => self.tail_lfs += 1,
            0x18 | 0x1a => self.closing += 1,
            _ => {}
        }
    }

    fn hook(&mut self, _params: &vte::Params, intermediates: &[u8], _ignore: bool, c: char) {
        // DECRQSS (`DCS $ q`) and XTGETTCAP (`DCS + q`) ask for an answer.
        if c == 'q' && intermediates.iter().any(|&i| i == b'$' || i == b'+') {
            self.head(Refusal::Query);
        }
    }

    fn unhook(&mut self) {
        self.closing += 1;
    }

    fn osc_dispatch(&mut self, params: &[&[u8]], _bell_terminated: bool) {
        self.closing += 1;
        if self.phase != Phase::Head {
            return;
        }
        if params.iter().skip(1).any(|p| *p == b"?") {
            self.head(Refusal::Query);
        }
        self.osc.extend_from_slice(b"\x1b]");
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                self.osc.push(b';');
            }
            self.osc.extend_from_slice(p);
        }
        self.osc.push(0x07);
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], _ignore: bool, b: u8) {
        self.closing += 1;
        if !intermediates.is_empty() {
            return;
        }
        match b {
            b'7' => {
                let g = self.cur();
                g.saved_origin = g.origin;
                self.push_other(b"\x1b7");
                self.head(Refusal::SavedCursor);
                self.tail();
            }
            b'8' => {
                let g = self.cur();
                g.origin = g.saved_origin;
                self.push_other(b"\x1b8");
                self.tail();
            }
            b'=' => self.push_other(b"\x1b="),
            b'>' => self.push_other(b"\x1b>"),
            b'M' => self.tail(),
            b'c' => {
                self.alt = false;
                self.alt47 = false;
                self.grids = [GridFlags::default(); 2];
                self.push_other(b"\x1bc");
                self.head(Refusal::Reset);
                self.tail();
            }
            // DECID asks for an answer.
            b'Z' => self.head(Refusal::Query),
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &vte::Params, intermediates: &[u8], _ignore: bool, c: char) {
        self.closing += 1;
        match (intermediates.first().copied(), c) {
            (None, 'm') => {
                if params.is_empty() || params.iter().next() == Some(&[0][..]) {
                    // A leading reset makes the SGRs before it (since anything else) moot.
                    self.pending.truncate(self.sgr_run);
                }
                if self.raw_ok {
                    // The caller copies the sequence's own bytes (cheaper than writing it).
                    self.sgr_raw = true;
                } else {
                    let mut seq = std::mem::take(&mut self.pending);
                    write_csi(&mut seq, params, intermediates, c);
                    self.pending = seq;
                    self.maybe_flush();
                }
            }
            (Some(b'?'), 'h' | 'l') => {
                let on = c == 'h';
                for group in params.iter() {
                    match group {
                        [6] => {
                            self.cur().origin = on;
                            self.tail();
                        }
                        [47] => {
                            self.alt = on;
                            self.alt47 |= on;
                            self.tail();
                        }
                        [1049] => {
                            if on {
                                let g = self.cur();
                                g.saved_origin = g.origin;
                                self.grids[1] = GridFlags::default();
                                self.alt = true;
                                self.head(Refusal::SavedCursor);
                            } else {
                                self.alt = false;
                                let g = &mut self.grids[0];
                                g.origin = g.saved_origin;
                            }
                            self.tail();
                        }
                        [1047] => self.tail(),
                        _ => {}
                    }
                }
                let mut seq = Vec::with_capacity(16);
                write_csi(&mut seq, params, intermediates, c);
                self.push_other(&seq);
            }
            (None, 'r') => {
                let rows = self.rows;
                let mut it = params.iter();
                let top = it.next().and_then(|g| g.first().copied()).unwrap_or(0);
                let bottom = it.next().and_then(|g| g.first().copied()).unwrap_or(0);
                let top = if top == 0 { 1 } else { top } - 1;
                let bottom = (if bottom == 0 { rows } else { bottom } - 1).min(rows - 1);
                self.cur().region = top < bottom && (top != 0 || bottom != rows - 1);
                self.tail();
            }
            (None, 'A' | 'F' | 'H' | 'f' | 'd' | 'L' | 'M' | 'S' | 'T' | 's' | 'u') => self.tail(),
            (None, 'J') if first(params) == 3 => self.tail(),
            (None, 't') => {
                self.head(Refusal::Query);
                self.tail();
            }
            (_, 'n' | 'c') => {
                self.head(Refusal::Query);
                // A cursor position report in the tail tells the row, which differs between
                // the fresh emulator and the real one until the cursor reaches the bottom.
                if c == 'n' {
                    self.tail_because(Refusal::Query);
                }
            }
            (Some(b'>'), 'q') => self.head(Refusal::Query),
            (_, 'p') if intermediates.contains(&b'$') => self.head(Refusal::Query),
            _ => {}
        }
    }
}

/// Bytes read without the PTY once running dry that make a worker count as flooding: 64 KiB.
/// An agent's TUI redraws a few KiB at a time and waits (the largest burst in the 122 recorded
/// sessions of `tests/fixtures` is 11 KiB); a build log or `cat` of a big file keeps the PTY
/// full. Until a flood is recognised its output is parsed read by read. Counted in bytes the PTY had ready, not in time, so a reader slowed down
/// by parsing still sees the flood.
pub const FLOOD_BYTES: usize = 64 * 1024;

/// While flooding, a batch is parsed once the worker has been quiet this long…
pub const QUIET: Duration = Duration::from_millis(10);

/// …or once its first byte is this old (the screen of a flooding worker updates at least this
/// often)…
pub const MAX_AGE: Duration = Duration::from_millis(1000);

/// …or once it holds this many bytes: the most a worker's reader holds besides its 64 KiB read
/// buffer (the bound on memory under flood).
pub const BACKLOG_CAP: usize = 4 * 1024 * 1024;

/// When a worker's reader parses what it read: at once while output is interactive, in
/// batches while the worker floods. Pure: the caller passes the clock and what the PTY holds.
#[derive(Debug, Default)]
pub struct Gate {
    burst: usize,
    flooding: bool,
    batch_start: Option<Instant>,
}

impl Gate {
    /// A gate for a worker that has not printed yet.
    pub fn new() -> Gate {
        Gate::default()
    }

    /// True while the worker counts as flooding.
    pub fn flooding(&self) -> bool {
        self.flooding
    }

    /// Records `n` bytes read at `now` into a backlog now `backlog` bytes long, with `more`
    /// telling whether the PTY had more ready right after (asked only while not flooding);
    /// true when the backlog should be parsed now (interactive output, a full or old batch).
    pub fn on_read(&mut self, n: usize, backlog: usize, more: bool, now: Instant) -> bool {
        if !self.flooding {
            self.burst = if more { self.burst + n } else { 0 };
            if self.burst < FLOOD_BYTES {
                return true;
            }
            self.flooding = true;
        }
        let start = *self.batch_start.get_or_insert(now);
        if backlog >= BACKLOG_CAP || now.duration_since(start) >= MAX_AGE {
            self.batch_start = None;
            return true;
        }
        false
    }

    /// How long to wait for more output before parsing the backlog held now (at most
    /// [`QUIET`], never past the batch's [`MAX_AGE`]).
    pub fn wait(&self, now: Instant) -> Duration {
        match self.batch_start {
            Some(start) => QUIET.min((start + MAX_AGE).saturating_duration_since(now)),
            None => Duration::ZERO,
        }
    }

    /// The worker was quiet for the wait: the flood is over (for now); parse the backlog.
    pub fn on_quiet(&mut self) {
        self.flooding = false;
        self.batch_start = None;
        self.burst = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    const ROWS: u16 = 4;
    const COLS: u16 = 12;
    const SB: usize = 6;

    fn emulator() -> Emulator {
        vt100::Parser::new_with_callbacks(ROWS, COLS, SB, Term::default())
    }

    /// Everything a reader of the emulator can see: the screen as bytes, every kept scrollback
    /// row, title, marks, agent state, notifications, bells, replies, input modes, cursor, and
    /// the saved cursor (restored on a copy of the stream's end).
    fn state(p: &mut Emulator) -> Vec<String> {
        let mut out = vec![format!("{:?}", p.screen().contents_formatted())];
        p.screen_mut().set_scrollback(usize::MAX);
        let depth = p.screen().scrollback();
        for off in 1..=depth {
            p.screen_mut().set_scrollback(off);
            out.push(p.screen().rows(0, COLS).next().unwrap_or_default());
        }
        p.screen_mut().set_scrollback(0);
        let t = p.callbacks();
        out.push(format!(
            "title={:?} state={:?} notes={:?} bells={} replies={:?} prompt={:?} exit={:?} progress={:?}",
            t.title,
            t.agent_state,
            t.notifications,
            t.bells,
            t.replies,
            t.marks.prompt,
            t.marks.last_exit,
            t.marks.progress
        ));
        let s = p.screen();
        out.push(format!(
            "modes={:?} hide={} alt={} cursor={:?} attrs={:?}",
            s.input_mode_formatted(),
            s.hide_cursor(),
            s.alternate_screen(),
            s.cursor_position(),
            s.attributes_formatted()
        ));
        // The saved cursor and what later output does: restore it and print.
        p.process(b"\x1b8X\x1b[5;5HY\r\nZ");
        out.push(format!("{:?}", p.screen().contents_formatted()));
        out
    }

    /// Parses `stream` split at `cuts` through a tracker (batched, cutting where it may) and
    /// whole; returns both states and the outcomes.
    fn both(stream: &[u8], cuts: &[usize]) -> (Vec<String>, Vec<String>, Vec<Outcome>) {
        let mut whole = emulator();
        whole.process(stream);
        let mut batched = emulator();
        let mut tracker = Tracker::new();
        let mut outcomes = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            let batch = &stream[from..c.max(from)];
            from = c.max(from);
            let rows = batched.screen().size().0;
            let plan = tracker.plan(batch, rows, SB);
            outcomes.push(apply(&mut batched, batch, plan, SB));
        }
        (state(&mut whole), state(&mut batched), outcomes)
    }

    fn log_lines(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("\x1b[2m{i:>4}\x1b[0m \x1b[32mok\x1b[0m line {i}\r\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn outcome_of(stream: &[u8]) -> Outcome {
        let (w, b, o) = both(stream, &[]);
        assert_eq!(w, b);
        o[0]
    }

    #[test]
    fn a_coloured_log_is_cut_and_ends_as_a_full_parse() {
        let mut s = b"\x1b]0;building\x07\x1b[?2004h\x1b[?1h\x1b[?25l\x1b[1;31m".to_vec();
        s.extend(b"\x1b]7501;state=working:app=codex\x1b\\\x07\x1b]133;D;2\x07\x1b]133;A\x07");
        s.extend(log_lines(100));
        s.extend(b"\x1b[4mtail");
        let o = outcome_of(&s);
        assert!(
            matches!(o, Outcome::Cut { skipped } if skipped > s.len() / 2),
            "{o:?}"
        );
        let mut p = emulator();
        let mut t = Tracker::new();
        let plan = t.plan(&s, ROWS, SB);
        apply(&mut p, &s, plan, SB);
        let term = p.callbacks();
        assert_eq!(term.title, "building");
        assert_eq!(term.bells, 1);
        assert_eq!(term.marks.last_exit, Some(2));
        assert!(p.screen().bracketed_paste() && p.screen().application_cursor());
        assert!(p.screen().underline());
    }

    #[test]
    fn a_cut_keeps_the_saved_cursor_of_earlier_batches() {
        // Saved in an earlier batch (parsed whole), then a flood: the cut carries it over.
        let (w, b, o) = both(
            &[
                b"ab\x1b[3;7H\x1b[35m\x1b7\x1b[m\r\n".as_slice(),
                &log_lines(60),
            ]
            .concat(),
            &[20],
        );
        assert_eq!(w, b);
        assert!(matches!(o[1], Outcome::Cut { .. }), "{o:?}");
        // Saved with a wrap pending (the cursor one past the last column).
        let (w, b, o) = both(
            &[b"123456789012\x1b7\r\n".as_slice(), &log_lines(60)].concat(),
            &[16],
        );
        assert_eq!(w, b);
        assert!(matches!(o[1], Outcome::Cut { .. }), "{o:?}");
    }

    #[test]
    fn each_refusal_reason_parses_whole() {
        let log = log_lines(60);
        let cases: Vec<(Vec<u8>, Refusal)> = vec![
            (log_lines(5), Refusal::FewLines),
            (log.clone(), Refusal::FewLines).clone(),
            (
                [b"\x1b[?1049h".as_slice(), &log].concat(),
                Refusal::AltScreen,
            ),
            (
                [b"\x1b[?47h\x1b[?47l".as_slice(), &log].concat(),
                Refusal::AltScreen,
            ),
            (
                [b"\x1b[2;3r".as_slice(), &log].concat(),
                Refusal::ScrollRegion,
            ),
            ([b"\x1b[?6h".as_slice(), &log].concat(), Refusal::OriginMode),
            ([b"\x1b7".as_slice(), &log].concat(), Refusal::SavedCursor),
            ([b"\x1b[6n".as_slice(), &log].concat(), Refusal::Query),
            ([b"\x1b[>c".as_slice(), &log].concat(), Refusal::Query),
            ([b"\x1b]11;?\x07".as_slice(), &log].concat(), Refusal::Query),
            ([b"\x1b[>0q".as_slice(), &log].concat(), Refusal::Query),
            ([b"\x1b[?2004$p".as_slice(), &log].concat(), Refusal::Query),
            (
                [b"\x1bP$qm\x1b\\".as_slice(), &log].concat(),
                Refusal::Query,
            ),
            ([b"\x1bc".as_slice(), &log].concat(), Refusal::Reset),
            ([&log[..], b"\x1b[5A"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1b[2;1H"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1bM"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1b[L"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1b[3J"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1b8"].concat(), Refusal::TailMoves),
            ([&log[..], b"\x1b[6n"].concat(), Refusal::Query),
        ];
        for (i, (stream, want)) in cases.into_iter().enumerate() {
            let got = outcome_of(&stream);
            if i == 1 {
                // The bare log is the control: it is cut.
                assert!(matches!(got, Outcome::Cut { .. }), "control: {got:?}");
                continue;
            }
            assert_eq!(
                got,
                Outcome::Whole(want),
                "case {i}: {:?}",
                String::from_utf8_lossy(&stream[..20.min(stream.len())])
            );
        }
    }

    #[test]
    fn a_cut_inside_a_sequence_is_refused() {
        // The "\r\n" the cut would follow is inside an OSC that ends after it.
        let log = log_lines(60);
        let mut s = log[..log.len() / 3].to_vec();
        s.extend(b"\x1b]0;a title with\r\n");
        let k = 2 * usize::from(ROWS) + SB + MARGIN_LINES;
        s.extend(std::iter::repeat_n(b"x\r\n".as_slice(), k).flatten());
        s.extend(b"\x07");
        s.extend(log_lines(3));
        // The cut finder counts the OSC's "\r\n"s; the tracker knows it is open there.
        let mut t = Tracker::new();
        let lines = 2 * usize::from(ROWS) + SB;
        let plan = t.plan(&s, ROWS, SB);
        assert!(
            matches!(plan, Plan::Whole(Refusal::MidSequence | Refusal::FewLines)),
            "{plan:?} (need {lines})"
        );
        // And parsed whole, it ends as a full parse (outcome_of compares the two).
        assert!(matches!(outcome_of(&s), Outcome::Whole(_)));
    }

    #[test]
    fn the_size_changing_between_plan_and_apply_parses_whole() {
        let log = log_lines(60);
        let mut t = Tracker::new();
        let plan = t.plan(&log, ROWS, SB);
        let mut p = emulator();
        p.screen_mut().set_size(ROWS + 2, COLS);
        assert_eq!(
            apply(&mut p, &log, plan, SB),
            Outcome::Whole(Refusal::Resized)
        );
    }

    #[test]
    fn the_gate_batches_only_a_flood() {
        let t0 = Instant::now();
        let mut g = Gate::new();
        let k = FLOOD_BYTES / 4;
        // Interactive: parsed at once, even in large pieces when the PTY runs dry after each.
        assert!(g.on_read(4096, 4096, true, t0));
        for _ in 0..10 {
            assert!(g.on_read(2 * FLOOD_BYTES, 2 * FLOOD_BYTES, false, t0));
        }
        assert!(!g.flooding());
        // FLOOD_BYTES while the PTY stays full: a flood, held from the read that shows it.
        for _ in 0..3 {
            assert!(g.on_read(k, k, true, t0));
        }
        let t1 = t0 + Duration::from_millis(5);
        assert!(!g.on_read(k, k, true, t1));
        assert!(g.flooding());
        assert!(!g.on_read(k, 2 * k, false, t1));
        assert_eq!(g.wait(t1), QUIET);
        // Until the batch is old…
        assert_eq!(
            g.wait(t1 + MAX_AGE - Duration::from_millis(3)),
            Duration::from_millis(3)
        );
        assert!(g.on_read(k, 3 * k, true, t1 + MAX_AGE));
        // …or full.
        assert!(!g.on_read(k, k, true, t1 + MAX_AGE));
        assert!(g.on_read(k, BACKLOG_CAP, true, t1 + MAX_AGE));
        // A quiet PTY ends the flood.
        g.on_quiet();
        assert!(!g.flooding());
        assert!(g.on_read(100, 100, true, t1 + MAX_AGE * 2));
    }

    /// Pieces of log-like output a cut may skip: text, long lines that wrap, SGR, CR/LF, titles,
    /// OSC 7501/133/9, bells, mode changes, in-line edits, wide characters.
    fn safe_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => "[a-z ]{0,8}".prop_map(|s| format!("{s}\r\n").into_bytes()),
            4 => (0u32..3000).prop_map(|i| format!("\x1b[2m{i}\x1b[0m \x1b[3{}mline\x1b[m {i}\r\n", i % 8).into_bytes()),
            2 => "[a-z]{13,40}".prop_map(|s| format!("{s}\r\n").into_bytes()),
            1 => Just(b"\x1b[1;31m".to_vec()),
            1 => Just(b"\x1b[38;5;200;48:2::10:20:30m".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => "[a-z]{0,10}".prop_map(|s| format!("\x1b]0;{s}\x07").into_bytes()),
            1 => Just(b"\x1b]7501;state=working:app=codex\x1b\\".to_vec()),
            1 => Just(b"\x1b]133;D;1\x07\x1b]9;4;1;40\x07\x1b]9;done\x07".to_vec()),
            1 => Just(b"\x07".to_vec()),
            1 => Just(b"\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b=".to_vec()),
            1 => Just(b"\x1b[?2004l\x1b[?1000l\x1b>\x1b[?25l".to_vec()),
            1 => Just(b"\x1b[K\x1b[3D\x1b[2P\x1b[1X\x1b[2@\t\x08".to_vec()),
            1 => Just("ümlaut 漢字 wide\r\n".as_bytes().to_vec()),
        ]
    }

    /// Pieces that refuse a cut where they are: progress lines redrawn with cursor-up, an
    /// alternate-screen excursion, a query, saves and restores, a scroll region.
    fn moving_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u32..100).prop_map(|p| format!("\x1b[1A\x1b[2K[{p:>3}%]\r\n").into_bytes()),
            Just(b"\x1b[?1049hfull screen\x1b[5;2Hx\x1b[?1049l".to_vec()),
            Just(b"\x1b[6n".to_vec()),
            Just(b"\x1b7".to_vec()),
            Just(b"\x1b8".to_vec()),
            Just(b"\x1b[2;3r\x1b[r".to_vec()),
            Just(b"\x1b]0;unterminated\r\n".to_vec()),
        ]
    }

    /// A stream: stretches of plain flood with now and then a few pieces of anything.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                3 => proptest::collection::vec(safe_piece(), 0..80),
                1 => proptest::collection::vec(prop_oneof![safe_piece(), moving_piece()], 0..6),
            ],
            0..6,
        )
        .prop_map(|segments| segments.concat().concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Batched parsing with cuts ends exactly as a full parse, however the stream is split.
        #[test]
        fn cut_parsing_ends_as_a_full_parse(
            stream in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let (whole, batched, _) = both(&stream, &cuts);
            prop_assert_eq!(whole, batched);
        }

        /// Parsing from `text_cut` leaves the text a full parse leaves (screen and kept
        /// scrollback, the final message's view).
        #[test]
        fn text_cut_keeps_the_text_of_a_full_parse(stream in stream()) {
            let text = |bytes: &[u8]| {
                let mut p = vt100::Parser::new(ROWS, COLS, SB);
                p.process(bytes);
                let mut rows: Vec<String> = p.screen().rows(0, COLS).collect();
                p.screen_mut().set_scrollback(usize::MAX);
                let depth = p.screen().scrollback();
                for off in 1..=depth {
                    p.screen_mut().set_scrollback(off);
                    rows.push(p.screen().rows(0, COLS).next().unwrap_or_default());
                }
                rows
            };
            let from = text_cut(&stream, ROWS, SB);
            prop_assert_eq!(text(&stream), text(&stream[from..]));
        }
    }

    #[test]
    fn text_cut_skips_a_long_log_and_nothing_of_a_short_one() {
        let long = log_lines(100);
        let from = text_cut(&long, ROWS, SB);
        assert!(from > long.len() / 2, "{from} of {}", long.len());
        assert_eq!(text_cut(&log_lines(5), ROWS, SB), 0);
    }

    #[test]
    fn the_property_streams_do_get_cut() {
        // Guard against a property that passes because nothing is ever cut.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (stream(), proptest::collection::vec(any::<usize>(), 0..6));
        let (mut cut, mut batches) = (0, 0);
        for _ in 0..64 {
            let (stream, cuts) = strategy.new_tree(&mut runner).unwrap().current();
            let (_, _, o) = both(&stream, &cuts);
            batches += o.len();
            cut += o
                .iter()
                .filter(|o| matches!(o, Outcome::Cut { .. }))
                .count();
        }
        assert!(
            cut * 10 >= batches,
            "only {cut} of {batches} batches were cut"
        );
    }
}
