//! Snapshot tests of every view at two terminal sizes (ratatui TestBackend + insta).

use super::app::{App, Mode, TopViews};
use super::scroll::ScrollState;
use super::view::{self, Screens};
use crate::core::config::Config;
use crate::core::engine::{Engine, Event};
use crate::host::worker::Term;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::{Arc, Mutex};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// The demo manifest, started at t=0, with d1..d3 running and d2 at its y/n prompt.
fn fixture() -> (Engine, Screens) {
    let manifest = crate::demo::manifest();
    let plan = crate::core::plan::Plan::build(&manifest).unwrap();
    let config = Config::from_layers(&[
        ("defaults".into(), crate::core::config::DEFAULTS.into()),
        ("demo".into(), crate::demo::config_toml(1.0)),
    ])
    .unwrap();
    let mut e = Engine::new(manifest, plan, config, 0).unwrap();
    e.update(Event::Tick, 0);
    let mut screens = Screens::new();
    let texts = [
        "\x1b[1;36m● fake-agent\x1b[0m task d1\r\n• reading src/parse.rs\r\n\x1b[33m✎ editing src/parse.rs\x1b[0m\r\n",
        "\x1b[1;36m● fake-agent\x1b[0m task d2\r\n• planning changes\r\nApply these edits to src/config.rs? (y/n) ",
        "\x1b[1;36m● fake-agent\x1b[0m task d3\r\n\x1b[31merror: test suite failed\x1b[0m\r\n",
    ];
    for (i, text) in texts.iter().enumerate() {
        e.update(
            Event::Started {
                task: i,
                worktree: format!("/w/d{}", i + 1),
                branch: format!("fix/issue-{}", i + 1),
                base_commit: "0".repeat(40),
                argv: vec!["fake".into()],
            },
            10,
        );
        let mut p = vt100::Parser::new_with_callbacks(22, 100, 100, Term::default());
        for n in 0..30 {
            p.process(format!("log line {n}\r\n").as_bytes());
        }
        p.process(text.as_bytes());
        e.update(
            Event::Screen {
                task: i,
                screen: crate::host::worker::snapshot_of(&p),
                last_output_at: 500,
            },
            500,
        );
        screens.insert(i, Arc::new(Mutex::new(p)));
    }
    e.update(Event::Tick, 2_000);
    (e, screens)
}

fn render(e: &Engine, screens: &Screens, app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let recent = vec!["12:00:00  d2       heal    answer (yes-no)".to_string()];
    t.draw(|f| view::draw(f, e, screens, &Default::default(), app, &recent, 65_000))
        .unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snap(name: &str, setup: impl Fn(&mut App)) {
    let (e, screens) = fixture();
    for (w, h) in SIZES {
        let mut app = App::new();
        setup(&mut app);
        let text = render(&e, &screens, &mut app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text);
    }
}

#[test]
fn control_room_table_dag_and_panes() {
    snap("both", |_| {});
}

#[test]
fn table_only() {
    snap("table", |a| a.views = TopViews::Table);
}

#[test]
fn dag_only() {
    snap("dag", |a| a.views = TopViews::Dag);
}

#[test]
fn zoomed_pane() {
    snap("zoom", |a| {
        a.zoom = true;
        a.selected = 1;
    });
}

#[test]
fn help_overlay() {
    snap("help", |a| a.mode = Mode::Help);
}

#[test]
fn attached() {
    snap("attached", |a| a.mode = Mode::Attached(1));
}

#[test]
fn scrollback_with_a_match() {
    snap("scrollback", |a| {
        let mut st = ScrollState::new(0);
        st.offset = 10;
        st.query = "line 12".into();
        st.found = Some(12);
        a.mode = Mode::Scroll(st);
    });
}

#[test]
fn every_view_fits_a_tiny_terminal_without_panicking() {
    let (e, screens) = fixture();
    for (w, h) in [(20, 5), (1, 1), (40, 10), (300, 100)] {
        for views in [TopViews::Both, TopViews::Table, TopViews::Dag] {
            let mut app = App::new();
            app.views = views;
            render(&e, &screens, &mut app, w, h);
            app.mode = Mode::Help;
            render(&e, &screens, &mut app, w, h);
        }
    }
}

#[test]
fn log_view() {
    snap("log", |a| a.mode = Mode::Log { task: 1, offset: 0 });
}

/// Bytes a backend wrote, shared with the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A frame drawn through the crossterm backend the server uses, returning the bytes it emitted.
fn frame_bytes(
    t: &mut Terminal<ratatui::backend::CrosstermBackend<Shared>>,
    out: &Shared,
    e: &Engine,
    screens: &Screens,
    app: &mut App,
    now: u64,
) -> Vec<u8> {
    t.draw(|f| view::draw(f, e, screens, &Default::default(), app, &[], now))
        .unwrap();
    super::room::damage(std::mem::take(&mut *out.0.lock().unwrap()))
}

#[test]
fn an_unchanged_frame_ships_nothing_and_rebuilds_no_pane() {
    let (e, screens) = fixture();
    let area = ratatui::layout::Rect::new(0, 0, 160, 48);
    let out = Shared::default();
    let mut t = Terminal::with_options(
        ratatui::backend::CrosstermBackend::new(out.clone()),
        ratatui::TerminalOptions {
            viewport: ratatui::Viewport::Fixed(area),
        },
    )
    .unwrap();
    let mut app = App::new();
    assert!(!frame_bytes(&mut t, &out, &e, &screens, &mut app, 65_000).is_empty());
    assert_eq!(app.tiles.rebuilds, 3, "the first frame builds every pane");
    let second = frame_bytes(&mut t, &out, &e, &screens, &mut app, 65_000);
    assert!(second.is_empty(), "{:?}", String::from_utf8_lossy(&second));
    assert_eq!(app.tiles.rebuilds, 3, "unchanged panes are copied");
    assert_eq!(app.table_cache.rebuilds, 1, "an unchanged table is copied");
    assert_eq!(app.dag_cache.rebuilds, 1, "an unchanged DAG is copied");
    // One pane changes: only it is rebuilt, and only its changed cells are shipped.
    crate::host::worker::feed(&mut screens[&1].lock().unwrap(), b"\x1b[2K\rnew words");
    let bytes = frame_bytes(&mut t, &out, &e, &screens, &mut app, 65_000);
    assert_eq!(app.tiles.rebuilds, 4);
    let shipped = String::from_utf8_lossy(&bytes);
    assert!(shipped.contains("new"), "{shipped:?}");
    assert!(
        bytes.len() < 200,
        "a small damage ships small: {} bytes",
        bytes.len()
    );
}

#[test]
fn a_finished_tasks_last_screen_stays_in_its_log_and_zoom() {
    let (e, mut screens) = fixture();
    let mut last = crate::host::worker::LastScreens::default();
    last.keep(2, &screens[&2].lock().unwrap());
    screens.remove(&2);
    for mode in [Mode::Log { task: 2, offset: 0 }, Mode::Normal] {
        let mut app = App::new();
        app.selected = 2;
        app.zoom = true;
        app.mode = mode.clone();
        let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
        t.draw(|f| view::draw(f, &e, &screens, &last, &mut app, &[], 65_000))
            .unwrap();
        let text: String = format!("{:?}", t.backend().buffer());
        assert!(text.contains("last screen"), "{mode:?}: {text}");
        assert!(
            text.contains("error: test suite failed"),
            "{mode:?}: {text}"
        );
    }
}

#[test]
fn a_finished_task_s_scrollback_replayed_from_its_transcript_is_drawn_with_its_label() {
    let (e, mut screens) = fixture();
    // d1's worker is gone; its scrollback came back from the transcript.
    screens.remove(&0);
    let mut p = vt100::Parser::new_with_callbacks(22, 100, 500, Term::default());
    for n in 0..300 {
        p.process(format!("old line {n}\r\n").as_bytes());
    }
    let lines = super::scroll::all_lines(&mut p);
    let mut app = App::new();
    app.scrollback = (100, 500);
    let mut st = ScrollState::new(0);
    st.offset = 279;
    app.mode = Mode::Scroll(st);
    app.history_wanted = Some((0, super::scroll::Pending::Top, 0));
    let s = render(&e, &screens, &mut app, 160, 48);
    assert!(s.contains("scrollback · reading the transcript…"), "{s}");
    app.history_wanted = None;
    app.history = Some(super::scroll::History {
        task: 0,
        emulator: p,
        lines,
        depth: 279,
        rows: 22,
        bytes: 0,
        took_ms: 0,
    });
    let s = render(&e, &screens, &mut app, 160, 48);
    assert!(
        s.contains("scrollback −279 / 279 (from the transcript)"),
        "{s}"
    );
    assert!(s.contains("old line 0") && s.contains("old line 20"), "{s}");
    assert!(!s.contains("old line 299"), "the top, not the end: {s}");
}
