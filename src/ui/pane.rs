//! What a worker's tile shows, and the damage cache that keeps it.
//!
//! A worker's screen (say 47 × 160) is larger than its tile in the grid (say 10 × 38). The tile
//! shows either a **crop** — whole cells, the rows that changed most recently (not only the rows
//! around the cursor: opencode's conversation scrolls above an input box that holds the cursor),
//! left columns first — or a **scaled overview** of the whole screen (every tile cell stands for a
//! block of screen cells and shows the first visible character in it), toggled by the `overview`
//! key ([`Fit`]).
//!
//! [`Tiles`] caches each tile's cells keyed by the emulator's generation
//! ([`crate::host::worker::Term::generation`]), the tile's size and the fit: a pane whose emulator did
//! not move since the last frame is copied from the cache, not rebuilt from the emulator. Which
//! rows changed is sampled at most every [`SAMPLE_MS`] from each screen row's text, so a spinner
//! redrawing twelve times a second costs one row scan per sample, not one per frame; a row that
//! changes in every sample (a spinner, a timer) weighs less than the text an agent writes.

use crate::host::worker::Emulator;
use ratatui::buffer::{Buffer, Cell};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;

/// A rectangle of the frame (the task table, the DAG) as drawn last time, with a fingerprint of
/// what it was drawn from and what drawing it produced (`T`: the table's scroll offset, the DAG's
/// click areas): when the fingerprint and the area are the same, the cells are copied, not drawn.
#[derive(Debug, Default)]
pub struct Region<T> {
    key: u64,
    area: Rect,
    cells: Vec<Cell>,
    extra: Option<T>,
    /// Times this region was drawn rather than copied.
    pub rebuilds: u64,
}

impl<T: Clone> Region<T> {
    /// Copies the cells into `buf` and returns what drawing produced, when `key` and `area` are
    /// those of the last [`Region::store`]; `None` means draw it (then store it).
    pub fn restore(&self, buf: &mut Buffer, area: Rect, key: u64) -> Option<T> {
        let extra = self.extra.as_ref()?;
        if self.key != key || self.area != area {
            return None;
        }
        let mut k = 0;
        for y in area.top()..area.bottom() {
            for x in area.left()..area.right() {
                buf[(x, y)] = self.cells[k].clone();
                k += 1;
            }
        }
        Some(extra.clone())
    }

    /// Keeps the cells of `area` just drawn into `buf`, with their fingerprint.
    pub fn store(&mut self, buf: &Buffer, area: Rect, key: u64, extra: T) {
        let area = area.intersection(buf.area);
        self.cells.clear();
        for y in area.top()..area.bottom() {
            for x in area.left()..area.right() {
                self.cells.push(buf[(x, y)].clone());
            }
        }
        self.key = key;
        self.area = area;
        self.extra = Some(extra);
        self.rebuilds += 1;
    }
}

/// How a tile shows a screen larger than itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Whole cells: the most recently changed rows, the left columns.
    #[default]
    Crop,
    /// The whole screen scaled down to the tile (nearest block, first visible character).
    Overview,
}

impl Fit {
    /// The other fit (what the `overview` key switches to).
    pub fn toggled(self) -> Fit {
        match self {
            Fit::Crop => Fit::Overview,
            Fit::Overview => Fit::Crop,
        }
    }
}

/// Shortest time between two scans of a screen's rows for what changed, ms.
pub const SAMPLE_MS: u64 = 500;

/// One tile's cached cells and what they were built from.
#[derive(Debug)]
struct Tile {
    generation: u64,
    size: (u16, u16),
    screen: (u16, u16),
    fit: Fit,
    /// `size.0 * size.1` cells, row-major; `None` leaves the buffer's cell as it is.
    cells: Vec<Option<Cell>>,
    /// First screen row the crop shows.
    first: u16,
    /// Each screen row's text at the last sample.
    texts: Vec<String>,
    /// Per screen row: how much it changed lately (characters changed per sample, decaying by
    /// [`HEAT_DECAY`] a sample), and whether it changed in each of the last 8 samples (bit 0 the
    /// newest).
    heat: Vec<(f64, u8)>,
    /// Unix ms of the last sample; the generation it saw.
    sampled_at: u64,
    sampled_generation: u64,
    /// Frame counter of the last draw (tiles not drawn for a while are dropped).
    drawn: u64,
    /// Whether the last draw cropped (a crop of a screen taller than the tile: the only case
    /// in which samples choose what is shown).
    crops: bool,
}

/// The tiles of one control room, by task index.
#[derive(Debug, Default)]
pub struct Tiles {
    tiles: BTreeMap<usize, Tile>,
    frame: u64,
    /// Tiles rebuilt from their emulator since this cache was made (the rest were copied).
    pub rebuilds: u64,
}

impl Tiles {
    /// Starts a frame: tiles not drawn in the previous frame are dropped (their task left the
    /// grid or its worker exited).
    pub fn begin_frame(&mut self) {
        let last = self.frame;
        self.tiles.retain(|_, t| t.drawn >= last);
        self.frame += 1;
    }

    /// Draws task `task`'s screen `p` into `area` of `buf`, rebuilding the tile only when the
    /// emulator's generation, the area's size, the screen's size or `fit` changed (or the rows
    /// that changed most recently moved out of view). `now` is Unix ms (the view's clock).
    pub fn draw(
        &mut self,
        buf: &mut Buffer,
        area: Rect,
        task: usize,
        p: &Emulator,
        fit: Fit,
        now: u64,
    ) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let screen = p.screen();
        let generation = p.callbacks().generation;
        let size = (area.height, area.width);
        let screen_size = screen.size();
        let frame = self.frame;
        let tile = self.tiles.entry(task).or_insert_with(|| Tile {
            generation: u64::MAX,
            size: (0, 0),
            screen: (0, 0),
            fit,
            cells: Vec::new(),
            first: 0,
            texts: Vec::new(),
            heat: Vec::new(),
            sampled_at: 0,
            sampled_generation: u64::MAX,
            drawn: frame,
            crops: false,
        });
        tile.drawn = frame;
        tile.crops = fit == Fit::Crop && screen_size.0 > size.0;
        let mut stale = tile.generation != generation
            || tile.size != size
            || tile.screen != screen_size
            || tile.fit != fit;
        // Which rows changed: sampled at most every SAMPLE_MS, and once more after the output
        // stopped (so the last change is seen).
        let sample_due = tile.sampled_generation != generation
            && (now.saturating_sub(tile.sampled_at) >= SAMPLE_MS || tile.screen != screen_size);
        if tile.crops && (sample_due || tile.texts.is_empty()) {
            let first = tile.sample(screen, size.0, now, generation);
            if first != tile.first {
                tile.first = first;
                stale = true;
            }
        }
        if stale {
            tile.generation = generation;
            tile.size = size;
            tile.screen = screen_size;
            tile.fit = fit;
            tile.build(screen);
            self.rebuilds += 1;
        }
        for y in 0..size.0 {
            for x in 0..size.1 {
                if let Some(c) = &tile.cells[y as usize * size.1 as usize + x as usize] {
                    buf[(area.x + x, area.y + y)] = c.clone();
                }
            }
        }
    }
}

impl Tiles {
    /// When a frame must be drawn although no screen changes any more (Unix ms): a cropped
    /// tile whose screen changed after its last sample is sampled again [`SAMPLE_MS`] after
    /// that sample, so the crop follows the last burst of output even when nothing follows it.
    /// `None` when every crop has seen its screen's last change.
    pub fn next_sample_at(&self) -> Option<u64> {
        self.tiles
            .values()
            .filter(|t| t.crops && t.sampled_generation != t.generation)
            .map(|t| t.sampled_at + SAMPLE_MS)
            .min()
    }
}

impl Tile {
    /// Reads the screen's rows and picks the crop's first row from how much each changed lately
    /// (see [`crop_first`]). A row that changed in [`FLICKER`] of the last 4 samples (a spinner,
    /// a timer, a status line) counts one character a sample however much it changes, so the
    /// text an agent writes outweighs its spinner.
    fn sample(&mut self, screen: &vt100::Screen, h: u16, now: u64, generation: u64) -> u16 {
        let (rows, cols) = screen.size();
        let texts: Vec<String> = screen
            .rows(0, cols)
            .map(|t| t.trim_end().to_string())
            .collect();
        let comparable = self.texts.len() == texts.len();
        if !comparable {
            self.heat = vec![(0.0, 0); texts.len()];
        }
        let mut any = false;
        for (r, text) in texts.iter().enumerate() {
            let diff = if comparable {
                changed_chars(&self.texts[r], text)
            } else {
                0
            };
            let (heat, history) = &mut self.heat[r];
            *history = (*history << 1) | u8::from(diff > 0);
            let flicker = (*history & 0b1111).count_ones() >= FLICKER;
            let gain = if flicker { diff.min(1) } else { diff };
            *heat = *heat * HEAT_DECAY + gain as f64;
            any |= diff > 0 && !text.is_empty();
        }
        self.sampled_at = now;
        self.sampled_generation = generation;
        let old = (self.screen == (rows, cols) && self.size.0 == h).then_some(self.first);
        let weights: Vec<f64> = if any {
            self.heat
                .iter()
                .zip(&texts)
                .map(|(&(heat, _), t)| if t.is_empty() { 0.0 } else { heat })
                .collect()
        } else {
            vec![0.0; texts.len()]
        };
        let first = match old {
            Some(old) => crop_first(&weights, h, Some(old), old),
            None => {
                let text: Vec<bool> = texts.iter().map(|t| !t.is_empty()).collect();
                let fallback = tail_of(&text, screen.cursor_position().0, h);
                crop_first(&weights, h, None, fallback)
            }
        };
        self.texts = texts;
        first
    }

    fn build(&mut self, screen: &vt100::Screen) {
        let (h, w) = self.size;
        let (rows, cols) = screen.size();
        self.cells.clear();
        self.cells.resize(h as usize * w as usize, None);
        let scaled = self.fit == Fit::Overview && (rows > h || cols > w);
        for y in 0..h {
            for x in 0..w {
                let cell = if scaled {
                    overview_cell(screen, (h, w), (y, x))
                } else {
                    let row = if self.fit == Fit::Crop && rows > h {
                        self.first.min(rows - h) + y
                    } else {
                        y
                    };
                    if row >= rows || x >= cols {
                        continue;
                    }
                    match screen.cell(row, x) {
                        Some(c) if !c.is_wide_continuation() => Some(to_cell(c)),
                        _ => None,
                    }
                };
                self.cells[y as usize * w as usize + x as usize] = cell;
            }
        }
    }
}

/// Of its last 4 samples, how many a row must have changed in to count as flicker (a spinner, a
/// timer), not new text.
pub const FLICKER: u32 = 3;

/// How much of a row's change is still counted one sample later.
pub const HEAT_DECAY: f64 = 0.7;

/// Characters that differ between two versions of a row (position by position, plus the
/// difference in length).
fn changed_chars(old: &str, new: &str) -> usize {
    let mut a = old.chars();
    let mut b = new.chars();
    let mut n = 0;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return n,
            (Some(x), Some(y)) if x == y => {}
            _ => n += 1,
        }
    }
}

/// The first row of an `h`-row crop of a screen whose rows changed by `weights` lately: the
/// window with the most weight, ending at a row with weight; the window shown now (`old`) when
/// it holds as much; the lowest among equals. With no weight anywhere, `old` stays, or
/// `fallback` when there is none.
pub fn crop_first(weights: &[f64], h: u16, old: Option<u16>, fallback: u16) -> u16 {
    let rows = weights.len();
    let h = usize::from(h);
    if rows <= h {
        return 0;
    }
    let sum = |first: usize| weights[first..first + h].iter().sum::<f64>();
    let mut best: Option<(usize, f64)> = None;
    for (r, _) in weights.iter().enumerate().filter(|(_, &w)| w > 0.0) {
        let first = (r + 1).saturating_sub(h).min(rows - h);
        let n = sum(first);
        if best.is_none_or(|(_, m)| n >= m) {
            best = Some((first, n));
        }
    }
    match (best, old) {
        (None, Some(old)) => old,
        (None, None) => fallback,
        (Some((_, n)), Some(old))
            if usize::from(old) + h <= rows && sum(old.into()) >= n * 0.999 =>
        {
            old
        }
        (Some((first, _)), _) => first as u16,
    }
}

/// The first row of an `h`-row crop that ends at the cursor row or the last row with text,
/// whichever is lower (a log's newest line, a prompt's cursor).
pub fn tail_first(screen: &vt100::Screen, h: u16) -> u16 {
    let (_, cols) = screen.size();
    let text: Vec<bool> = screen
        .rows(0, cols)
        .map(|r| !r.trim_end().is_empty())
        .collect();
    tail_of(&text, screen.cursor_position().0, h)
}

/// [`tail_first`] from which rows have text and the cursor's row.
fn tail_of(text: &[bool], cursor_row: u16, h: u16) -> u16 {
    let rows = text.len() as u16;
    let h = h.min(rows);
    let last_text = (cursor_row + 1..rows)
        .rev()
        .find(|&r| text[usize::from(r)])
        .unwrap_or(0);
    let bottom = cursor_row.max(last_text);
    (bottom + 1).saturating_sub(h).min(rows - h)
}

/// The overview's cell at tile position `(y, x)` of a tile `size` (rows × cols): the first
/// visible character of the screen block it stands for, else a blank in that block's colours.
fn overview_cell(screen: &vt100::Screen, size: (u16, u16), (y, x): (u16, u16)) -> Option<Cell> {
    let (rows, cols) = screen.size();
    let span = |i: u16, n: u16, total: u16| -> (u16, u16) {
        if total <= n {
            (i, i + 1)
        } else {
            let a = (u32::from(i) * u32::from(total) / u32::from(n)) as u16;
            let b = (u32::from(i + 1) * u32::from(total) / u32::from(n)) as u16;
            (a, b.max(a + 1))
        }
    };
    let (r0, r1) = span(y, size.0, rows);
    let (c0, c1) = span(x, size.1, cols);
    if r0 >= rows || c0 >= cols {
        return None;
    }
    for r in r0..r1.min(rows) {
        for c in c0..c1.min(cols) {
            if let Some(cell) = screen.cell(r, c) {
                if cell.has_contents() && !cell.contents().trim().is_empty() {
                    return Some(to_cell(cell));
                }
            }
        }
    }
    screen.cell(r0, c0).map(|c| {
        let mut cell = to_cell(c);
        cell.set_symbol(" ");
        cell
    })
}

/// A ratatui cell with a vt100 cell's character, colours and attributes.
pub fn to_cell(cell: &vt100::Cell) -> Cell {
    let mut out = Cell::default();
    out.set_symbol(if cell.has_contents() {
        cell.contents()
    } else {
        " "
    });
    out.set_style(cell_style(cell));
    out
}

/// A vt100 cell's colours and attributes as a ratatui style.
pub fn cell_style(cell: &vt100::Cell) -> Style {
    let mut m = Modifier::empty();
    if cell.bold() {
        m |= Modifier::BOLD;
    }
    if cell.dim() {
        m |= Modifier::DIM;
    }
    if cell.italic() {
        m |= Modifier::ITALIC;
    }
    if cell.underline() {
        m |= Modifier::UNDERLINED;
    }
    if cell.inverse() {
        m |= Modifier::REVERSED;
    }
    Style::default()
        .fg(color(cell.fgcolor()))
        .bg(color(cell.bgcolor()))
        .add_modifier(m)
}

fn color(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => Color::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::worker::{feed, Term};

    fn emulator(rows: u16, cols: u16) -> Emulator {
        vt100::Parser::new_with_callbacks(rows, cols, 100, Term::default())
    }

    fn text(buf: &Buffer, area: Rect) -> Vec<String> {
        (area.y..area.bottom())
            .map(|y| {
                (area.x..area.right())
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn an_unchanged_pane_is_not_rebuilt_and_a_changed_one_is() {
        let area = Rect::new(0, 0, 20, 4);
        let mut tiles = Tiles::default();
        let mut p = emulator(10, 40);
        feed(&mut p, b"one\r\ntwo\r\n");
        let mut buf = Buffer::empty(area);
        for frame in 0..3 {
            tiles.begin_frame();
            tiles.draw(&mut buf, area, 0, &p, Fit::Crop, frame * 1000);
        }
        assert_eq!(
            tiles.rebuilds, 1,
            "two frames of an unchanged pane are copies"
        );
        assert_eq!(text(&buf, area)[0], "one");
        feed(&mut p, b"three\r\n");
        tiles.begin_frame();
        let mut buf = Buffer::empty(area);
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 5000);
        assert_eq!(tiles.rebuilds, 2, "a changed pane is rebuilt");
        assert_eq!(text(&buf, area)[2], "three");
        // A new size or fit rebuilds too.
        tiles.draw(&mut buf, Rect::new(0, 0, 10, 4), 0, &p, Fit::Crop, 5000);
        tiles.draw(&mut buf, Rect::new(0, 0, 10, 4), 0, &p, Fit::Overview, 5000);
        assert_eq!(tiles.rebuilds, 4);
    }

    #[test]
    fn the_crop_follows_the_rows_that_changed_not_the_cursor() {
        // Like opencode: a conversation streams in rows 2..8 while the cursor waits in an input
        // box at the bottom.
        let area = Rect::new(0, 0, 30, 4);
        let mut tiles = Tiles::default();
        let mut p = emulator(20, 40);
        feed(&mut p, b"\x1b[18;1H> your message\x1b[18;3H");
        let mut buf = Buffer::empty(area);
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 0);
        assert!(text(&buf, area).iter().any(|l| l.contains("your message")));
        for (i, at) in [(3, 1000), (4, 2000), (5, 3000)] {
            feed(
                &mut p,
                format!("\x1b7\x1b[{i};1Hassistant line {i}\x1b8").as_bytes(),
            );
            tiles.draw(&mut buf, area, 0, &p, Fit::Crop, at);
        }
        let shown = text(&buf, area);
        assert!(
            shown.iter().any(|l| l == "assistant line 5"),
            "the newest changed row is shown: {shown:?}"
        );
        // The window stays put while the changes stay inside it.
        feed(&mut p, b"\x1b7\x1b[4;1Hassistant line 4 (edited)\x1b8");
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 4000);
        assert_eq!(
            text(&buf, area),
            [
                "",
                "assistant line 3",
                "assistant line 4 (edited)",
                "assistant line 5"
            ]
        );
    }

    #[test]
    fn a_burst_that_ends_between_samples_is_sampled_once_more() {
        let mut p = emulator(20, 40);
        let area = Rect::new(0, 0, 30, 4);
        let mut buf = Buffer::empty(area);
        let mut tiles = Tiles::default();
        feed(&mut p, b"\x1b[2;1Hfirst words");
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 1000);
        assert_eq!(tiles.next_sample_at(), None, "sampled what it shows");
        // The last output lands 100 ms after that sample, far down the screen, and nothing
        // follows it: the frame it causes is too early for a sample.
        feed(&mut p, b"\x1b[17;1Hthe agent's answer");
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 1100);
        assert!(!text(&buf, area).iter().any(|l| l == "the agent's answer"));
        assert_eq!(tiles.next_sample_at(), Some(1000 + SAMPLE_MS));
        // The frame drawn then (with no new output) moves the crop to the answer.
        tiles.begin_frame();
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 1000 + SAMPLE_MS);
        assert!(
            text(&buf, area).iter().any(|l| l == "the agent's answer"),
            "{:?}",
            text(&buf, area)
        );
        assert_eq!(tiles.next_sample_at(), None);
        // The overview needs no samples.
        feed(&mut p, b"\x1b[3;1Hmore");
        tiles.draw(&mut buf, area, 0, &p, Fit::Overview, 1600);
        assert_eq!(tiles.next_sample_at(), None);
    }

    #[test]
    fn crop_window_choice() {
        let c = |v: &[usize], rows: usize| {
            let mut ch = vec![0.0; rows];
            for &i in v {
                ch[i] = 1.0;
            }
            ch
        };
        // Nothing changed: keep, or fall back.
        assert_eq!(crop_first(&c(&[], 20), 5, Some(3), 9), 3);
        assert_eq!(crop_first(&c(&[], 20), 5, None, 9), 9);
        // The densest window, ending at a changed row.
        assert_eq!(crop_first(&c(&[2, 3, 4, 17], 20), 5, None, 0), 0);
        assert_eq!(crop_first(&c(&[10, 11], 20), 5, None, 0), 7);
        // The current window wins a tie.
        assert_eq!(crop_first(&c(&[10], 20), 5, Some(8), 0), 8);
        // A screen that fits shows from the top.
        assert_eq!(crop_first(&c(&[1], 4), 5, Some(3), 2), 0);
    }

    #[test]
    fn the_overview_shows_the_whole_width_scaled() {
        let mut p = emulator(8, 80);
        feed(&mut p, b"left");
        feed(&mut p, b"\x1b[8;70Hright end");
        let area = Rect::new(0, 0, 20, 4);
        let mut buf = Buffer::empty(area);
        let mut tiles = Tiles::default();
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, 0);
        assert!(!text(&buf, area).concat().contains('r'));
        tiles.draw(&mut buf, area, 0, &p, Fit::Overview, 0);
        let shown = text(&buf, area);
        assert!(shown[0].starts_with('l'), "{shown:?}");
        assert!(shown[3].len() > 15, "the right end is in view: {shown:?}");
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::host::worker::{feed, Term};

    /// The crop of a recorded session's tile (10 × 60) at the end, drawn as the session ran.
    fn tile_at_end(fixture: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
        let rec = crate::host::replay::Recording::load(&path).unwrap();
        let mut p = vt100::Parser::new_with_callbacks(rec.rows, rec.cols, 0, Term::default());
        let area = Rect::new(0, 0, 60, 10);
        let mut tiles = Tiles::default();
        let mut buf = Buffer::empty(area);
        for (t, bytes) in &rec.chunks {
            feed(&mut p, bytes);
            tiles.draw(&mut buf, area, 0, &p, Fit::Crop, *t);
        }
        let end = rec.chunks.last().map_or(0, |c| c.0) + 1000;
        tiles.draw(&mut buf, area, 0, &p, Fit::Crop, end);
        (0..area.height)
            .map(|y| (0..area.width).map(|x| buf[(x, y)].symbol()).collect())
            .collect()
    }

    #[test]
    fn opencodes_tile_shows_the_answer_not_only_its_input_box() {
        let shown = tile_at_end("tests/fixtures/opencode/opencode-mock-message");
        assert!(
            shown.iter().any(|l| l.contains("Done: I added a README")),
            "{shown:#?}"
        );
    }
}
