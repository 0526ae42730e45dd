//! Hostile text made safe to print: control characters shown, widths measured in terminal
//! columns.
//!
//! Task titles, prompts, ids and evidence come from manifests, issue trackers and agents' screens;
//! any of them may carry escape sequences (an OSC 52 clipboard write, a title change, `ESC[2J`, a
//! bell). Everything switchyard prints from them goes through [`escape_control`] first. Widths
//! are display columns (`unicode-width`, per grapheme cluster as ratatui draws them), so wide
//! (CJK, emoji) and zero-width characters (combining marks, ZWJ) keep tables aligned.

use std::borrow::Cow;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// What [`truncate_to_width`] puts where it cut: one column.
pub const ELLIPSIS: char = '…';

/// Shows every control character visibly, keeping all other text (ordinary Unicode) as it is:
///
/// - C0 controls U+0000..U+001F as their Unicode control pictures (`ESC` → `␛`, `BEL` → `␇`,
///   `NUL` → `␀`, tab → `␉`, newline → `␊`), DEL U+007F as `␡`;
/// - C1 controls U+0080..U+009F (a terminal may read U+009B as CSI) as `\u{9b}`;
/// - bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069), which reorder what
///   follows on screen, as `\u{202e}`.
///
/// Borrows when there is nothing to escape. The result contains no control character, so it is
/// safe to print to a terminal and is one line.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0'..='\x1f' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\x7f' => out.push('\u{2421}'),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_control`] for text of several lines: each line escaped, the newlines kept.
pub fn escape_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| escape_control(l.strip_suffix('\r').unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True for the characters [`escape_control`] replaces.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Display width of `s` in terminal columns: the sum of the widths of its grapheme clusters
/// (`unicode-width`), as ratatui lays text out. A CJK character or an emoji counts 2, a combining
/// mark or a zero-width joiner 0. Escape control characters first ([`escape_control`]): their
/// width on a real terminal is not defined.
pub fn display_width(s: &str) -> usize {
    s.graphemes(true).map(UnicodeWidthStr::width).sum()
}

/// `s` cut to at most `cols` display columns, ending in [`ELLIPSIS`] where it was cut. Cuts
/// between grapheme clusters (never inside an emoji sequence or before a combining mark); a
/// wide character that would overflow is dropped, so the result may be one column short.
/// `cols == 0` gives the empty string.
pub fn truncate_to_width(s: &str, cols: usize) -> String {
    if display_width(s) <= cols {
        return s.to_string();
    }
    if cols == 0 {
        return String::new();
    }
    let room = cols - 1; // one column for the ellipsis
    let mut used = 0;
    let mut out = String::new();
    for g in s.graphemes(true) {
        let w = g.width();
        if used + w > room {
            break;
        }
        used += w;
        out.push_str(g);
    }
    out.push(ELLIPSIS);
    out
}

/// `s` fitted to exactly `cols` display columns: cut with [`truncate_to_width`] when wider,
/// padded with spaces on the right when narrower.
pub fn pad_to_width(s: &str, cols: usize) -> String {
    let mut out = truncate_to_width(s, cols);
    let w = display_width(&out);
    out.extend(std::iter::repeat_n(' ', cols.saturating_sub(w)));
    out
}

/// [`escape_control`] then [`pad_to_width`]: one table cell of task text.
pub fn cell(s: &str, cols: usize) -> String {
    pad_to_width(&escape_control(s), cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        let title = "fix \x1b]52;c;aGVsbG8=\x07 and \x1b[2J\x1b]0;pwned\x1b\\ \0 \u{9b}31m";
        let shown = escape_control(title);
        assert_eq!(
            shown,
            "fix ␛]52;c;aGVsbG8=␇ and ␛[2J␛]0;pwned␛\\ ␀ \\u{9b}31m"
        );
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn newlines_tabs_del_and_bidi_overrides_are_shown() {
        assert_eq!(escape_control("a\nb\tc\rd\x7f"), "a␊b␉c␍d␡");
        assert_eq!(escape_control("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn ordinary_unicode_is_borrowed_unchanged() {
        for s in [
            "plain",
            "日本語のタイトル",
            "emoji 👨‍👩‍👧 ok",
            "e\u{301}",
            "Ünïcödé ✓ ␛",
        ] {
            assert!(
                matches!(escape_control(s), Cow::Borrowed(b) if b == s),
                "{s}"
            );
        }
    }

    #[test]
    fn widths_are_columns() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本"), 4);
        assert_eq!(display_width("👨‍👩‍👧"), 2, "a ZWJ family is one emoji");
        assert_eq!(
            display_width("e\u{301}"),
            1,
            "a combining mark adds nothing"
        );
    }

    #[test]
    fn truncation_cuts_by_columns_with_an_ellipsis() {
        assert_eq!(truncate_to_width("hello world", 8), "hello w…");
        assert_eq!(truncate_to_width("hello", 5), "hello");
        assert_eq!(truncate_to_width("日本語テキスト", 7), "日本語…");
        assert_eq!(
            truncate_to_width("日本語テキスト", 6),
            "日本…",
            "no half of a wide char"
        );
        assert_eq!(
            truncate_to_width("ab👨‍👩‍👧cd", 4),
            "ab…",
            "never inside a ZWJ sequence"
        );
        assert_eq!(truncate_to_width("abc", 0), "");
        assert_eq!(truncate_to_width("abc", 1), "…");
    }

    #[test]
    fn padding_fills_to_exact_columns() {
        assert_eq!(pad_to_width("ab", 4), "ab  ");
        assert_eq!(pad_to_width("日本", 5), "日本 ");
        assert_eq!(pad_to_width("日本語", 5), "日本…");
        assert_eq!(display_width(&pad_to_width("日本語テ", 6)), 6);
        assert_eq!(cell("a\x1bb", 5), "a␛b  ");
    }

    proptest! {
        #[test]
        fn no_control_char_survives(s in any::<String>()) {
            let e = escape_control(&s);
            prop_assert!(!e.chars().any(needs_escape));
            if !s.chars().any(needs_escape) {
                prop_assert_eq!(e.as_ref(), s.as_str());
            }
        }

        #[test]
        fn width_is_never_exceeded(s in any::<String>(), cols in 0usize..40) {
            let t = truncate_to_width(&s, cols);
            prop_assert!(display_width(&t) <= cols);
            let p = pad_to_width(&s, cols);
            prop_assert!(display_width(&p) <= cols);
            if display_width(&s) <= cols {
                prop_assert_eq!(&t, &s);
            } else {
                prop_assert!(t.ends_with(ELLIPSIS) || cols == 0);
            }
        }

        #[test]
        fn wide_text_pads_to_exact_width(s in "[a-z日本語👍\u{301}]{0,20}", cols in 1usize..30) {
            // Every grapheme here is 1 or 2 columns; a cut one column short is padded.
            let p = pad_to_width(&s, cols);
            prop_assert_eq!(display_width(&p), cols, "{:?} -> {:?}", s, p);
        }
    }
}
