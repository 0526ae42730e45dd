//! Drawing: a pure function of engine state, worker screens and UI state. Widgets only draw.

use super::app::{App, HitKind, InputPurpose, Mode, TopViews};
use super::dag::{self, DagLayout};
use crate::core::engine::Engine;
use crate::core::manifest::Status;
use crate::host::worker::{Emulator, LastScreens};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, BorderType, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap,
};
use ratatui::Frame;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The worker screens the view may show, by task index.
pub type Screens = BTreeMap<usize, Arc<Mutex<Emulator>>>;

/// Glyph and colour per status, so status reads without colour too.
pub fn status_style(s: Status) -> (&'static str, Style) {
    let c = |c: Color| Style::default().fg(c);
    match s {
        Status::Running => ("●", c(Color::Green)),
        Status::Stuck => ("◐", c(Color::Yellow)),
        Status::NeedsAttention => ("▲", c(Color::Red).add_modifier(Modifier::BOLD)),
        Status::Pending => ("○", c(Color::DarkGray)),
        Status::Blocked => ("⊘", c(Color::Magenta)),
        Status::Error => ("✖", c(Color::Red)),
        Status::Complete => ("✔", c(Color::Green)),
        Status::PrOpen => ("⇡", c(Color::Cyan)),
        Status::Merged => ("◆", c(Color::Blue)),
        Status::Skipped => ("↷", c(Color::DarkGray)),
        Status::Review => ("◎", c(Color::Cyan)),
        Status::Fix => ("✎", c(Color::Yellow)),
        Status::Merging => ("⇉", c(Color::Blue)),
    }
}

fn secs(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Elapsed time of task `i`'s current or last run, ms.
pub fn elapsed(engine: &Engine, i: usize, now: u64) -> Option<u64> {
    let run = &engine.runs[i];
    run.run_started_at
        .map(|a| run.run_ended_at.unwrap_or(now).saturating_sub(a))
}

/// The verdict text shown for task `i`: the live verdict with its evidence, else the last one saved.
pub fn verdict_text(engine: &Engine, i: usize) -> String {
    if engine.status(i) == Status::NeedsAttention {
        if let Some(v) = &engine.task(i).last_verdict {
            return v.clone();
        }
    }
    match (&engine.runs[i].verdict, engine.runs[i].worker.is_some()) {
        (Some(v), true) => v.to_string(),
        _ => engine.task(i).last_verdict.clone().unwrap_or_default(),
    }
}

/// Draws the whole control room.
pub fn draw(
    frame: &mut Frame,
    engine: &Engine,
    screens: &Screens,
    last: &LastScreens,
    app: &mut App,
    recent: &[String],
    now: u64,
) {
    let area = frame.area();
    app.hits.clear();
    app.tiles.begin_frame();
    if let Mode::Attached(task) = app.mode {
        let detach = app.keys.detach.label();
        draw_attached(frame, engine, screens, task, area, &detach);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame.buffer_mut(), header, engine, now);
    let live: Vec<usize> = screens.keys().copied().collect();
    let scrolled = match &app.mode {
        Mode::Scroll(st)
            if screens.contains_key(&st.task)
                || app.history.as_ref().is_some_and(|h| h.task == st.task)
                || app.history_wanted.is_some_and(|(t, _, _)| t == st.task) =>
        {
            Some(st.task)
        }
        _ => None,
    };
    let finished = |t: usize| {
        (!screens.contains_key(&t))
            .then(|| last.emulator(t))
            .flatten()
    };
    if let Mode::Log { task, offset } = app.mode {
        // A finished task's log shows its worker's last screen below the entries.
        let body = match finished(task) {
            Some(p) if body.height >= 16 => {
                let [top, bottom] =
                    Layout::vertical([Constraint::Percentage(45), Constraint::Min(0)]).areas(body);
                draw_last_screen(frame.buffer_mut(), bottom, engine, task, &p);
                top
            }
            _ => body,
        };
        draw_log(frame.buffer_mut(), body, engine, app, recent, task, offset);
    } else if let Some(p) = (app.zoom && scrolled.is_none())
        .then(|| finished(app.selected))
        .flatten()
    {
        draw_last_screen(frame.buffer_mut(), body, engine, app.selected, &p);
    } else if let Some(task) =
        scrolled.or((app.zoom && screens.contains_key(&app.selected)).then_some(app.selected))
    {
        draw_tile(frame.buffer_mut(), body, engine, screens, task, app, now);
    } else {
        let rows_wanted = engine.plan.len() as u16 + 3;
        let top_h = if live.is_empty() {
            body.height.saturating_sub(6).max(3)
        } else {
            (body.height * app.top_pct / 100).max(5).min(body.height)
        };
        let dag_rows = app
            .dag
            .get_or_insert_with(|| DagLayout::new(&engine.plan))
            .height
            + 2;
        let top_h = match app.views {
            TopViews::Table => top_h.min(rows_wanted),
            TopViews::Dag => top_h.min(dag_rows),
            TopViews::Both => top_h.min(rows_wanted.max(dag_rows)),
        };
        let [top, rest] =
            Layout::vertical([Constraint::Length(top_h), Constraint::Min(0)]).areas(body);
        // Side by side needs room; a narrow terminal shows the table alone (v shows the DAG).
        let views = match app.views {
            TopViews::Both if top.width < 120 => TopViews::Table,
            v => v,
        };
        match views {
            TopViews::Table => draw_table(frame, top, engine, app, now),
            TopViews::Dag => draw_dag(frame.buffer_mut(), top, engine, app),
            TopViews::Both => {
                let [left, right] =
                    Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
                        .areas(top);
                draw_table(frame, left, engine, app, now);
                draw_dag(frame.buffer_mut(), right, engine, app);
            }
        }
        if live.is_empty() {
            draw_recent(frame.buffer_mut(), rest, recent);
        } else {
            draw_grid(frame.buffer_mut(), rest, engine, screens, &live, app, now);
        }
    }
    draw_footer(frame.buffer_mut(), footer, app, recent);
    match &app.mode {
        Mode::Help => draw_help(frame, area, app),
        Mode::ConfirmQuit => draw_confirm(frame, area, engine, app.foreground),
        _ => {}
    }
}

/// Most findings listed in a task's log view (the rest are counted; all are in `<id>.review.md`).
const LOG_FINDINGS: usize = 3;

/// The log view's lines for the latest review's findings: the severity counts, then the worst
/// [`LOG_FINDINGS`] (reviewer text, escaped).
fn findings_lines(list: &[crate::core::findings::Finding]) -> Vec<Line<'static>> {
    if list.is_empty() {
        return Vec::new();
    }
    let cyan = Style::default().fg(Color::Cyan);
    let mut out = vec![Line::from(vec![
        Span::styled(" findings   ", cyan),
        Span::raw(crate::core::findings::count_line(list)),
    ])];
    let mut worst: Vec<&crate::core::findings::Finding> = list.iter().collect();
    worst.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in worst.iter().take(LOG_FINDINGS) {
        let place = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("{file}:{line}: "),
            (Some(file), None) => format!("{file}: "),
            _ => String::new(),
        };
        let text = format!(
            "{place}{}",
            f.message.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        out.push(Line::from(vec![
            Span::styled(format!("   {:<9}", f.severity.as_str()), cyan),
            Span::raw(crate::core::text::escape_control(&text).into_owned()),
        ]));
    }
    if list.len() > LOG_FINDINGS {
        out.push(Line::from(format!(
            "   … {} more",
            list.len() - LOG_FINDINGS
        )));
    }
    out
}

/// The task's log: where its files are, its last verdict, and its journal entries (newest last).
fn draw_log(
    buf: &mut Buffer,
    area: Rect,
    engine: &Engine,
    app: &App,
    recent: &[String],
    task: usize,
    offset: usize,
) {
    let t = engine.task(task);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(dir) = &app.logs_dir {
        for (what, file) in [
            ("transcript", format!("{}.log", t.id)),
            ("error log", format!("{}.errors.log", t.id)),
            ("verify log", format!("{}.verify.log", t.id)),
            ("final msg", crate::core::final_message::file_name(&t.id)),
            ("review", format!("{}.review.md", t.id)),
            ("journal", "events.jsonl".to_string()),
        ] {
            let path = dir.join(file);
            let mark = if path.exists() { "" } else { " (none yet)" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {what:<11}"), Style::default().fg(Color::Cyan)),
                Span::raw(format!("{}{mark}", path.display())),
            ]));
        }
    }
    if let Some(w) = &t.worktree {
        lines.push(Line::from(vec![
            Span::styled(" worktree   ", Style::default().fg(Color::Cyan)),
            Span::raw(format!("{w} ({})", t.branch.clone().unwrap_or_default())),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(" verdict    ", Style::default().fg(Color::Cyan)),
        Span::raw(verdict_text(engine, task)),
    ]));
    lines.extend(findings_lines(engine.findings_of(task)));
    lines.push(Line::from(""));
    let mine: Vec<&String> = recent
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some(t.id.as_str()))
        .collect();
    let room = (area.height as usize).saturating_sub(lines.len() + 2);
    let end = mine.len().saturating_sub(offset);
    for l in &mine[end.saturating_sub(room)..end] {
        lines.push(Line::from(format!(" {l}")));
    }
    Paragraph::new(lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .title(format!(
                    " log · {} · {} events · ↑↓ PgUp/PgDn scroll · Esc closes ",
                    t.id,
                    mine.len()
                )),
        )
        .render_ref_to(area, buf);
}

fn draw_dag(buf: &mut Buffer, area: Rect, engine: &Engine, app: &mut App) {
    let layout = app.dag.get_or_insert_with(|| DagLayout::new(&engine.plan));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .title(format!(
            " DAG · {} tasks · critical path {} (bold) ",
            engine.plan.len(),
            engine.plan.critical_path.len()
        ));
    // The DAG shows statuses and the selection only: unchanged, its cells are copied.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (area, app.selected).hash(&mut h);
        for i in 0..engine.plan.len() {
            engine.status(i).hash(&mut h);
            engine.conflict_names(i).for_each(|c| c.hash(&mut h));
        }
        h.finish()
    };
    let hits = match app.dag_cache.restore(buf, area, key) {
        Some(hits) => hits,
        None => {
            let inner = block.inner(area);
            block.render_ref_to(area, buf);
            let hits = dag::draw(buf, inner, engine, layout, app.selected);
            app.dag_cache.store(buf, area, key, hits.clone());
            hits
        }
    };
    app.hits
        .extend(hits.into_iter().map(|(r, i)| (r, i, HitKind::Node)));
}

fn draw_header(buf: &mut Buffer, area: Rect, engine: &Engine, now: u64) {
    let counts = engine.counts();
    let project = if engine.manifest.project.is_empty() {
        "switchyard"
    } else {
        &engine.manifest.project
    };
    let mut spans = vec![
        Span::styled(
            " switchyard ",
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" {project} ")),
    ];
    // The phase in progress: the first with an unfinished task.
    let phase = (0..engine.plan.phase_names.len()).find(|&p| {
        engine
            .plan
            .phase_tasks(p)
            .any(|i| !engine.status(i).is_finished())
    });
    if let Some(p) = phase {
        spans.push(Span::styled(
            format!("· phase {}/{} ", p + 1, engine.plan.phase_names.len()),
            Style::default().fg(Color::Gray),
        ));
    }
    for s in Status::ALL {
        if let Some(n) = counts.get(&s) {
            let (g, st) = status_style(s);
            spans.push(Span::styled(format!("{g} {n} {s}  "), st));
        }
    }
    spans.push(Span::raw(format!(
        "· {} ",
        secs(now.saturating_sub(engine.started_at))
    )));
    let sched = if engine.paused {
        Span::styled(
            " PAUSED (p resumes) ",
            Style::default().fg(Color::Black).bg(Color::Yellow),
        )
    } else {
        Span::styled(
            format!("· scheduler running, max {} ", engine.max_parallel),
            Style::default().fg(Color::Gray),
        )
    };
    spans.push(sched);
    if engine.is_settled() {
        spans.push(match engine.exit_code() {
            0 => Span::styled(
                " ALL COMPLETE · q quits ",
                Style::default().fg(Color::Black).bg(Color::Green),
            ),
            2 => Span::styled(
                " WAITING FOR YOU · ! jumps ",
                Style::default().fg(Color::White).bg(Color::Red),
            ),
            _ => Span::styled(
                " HALTED · r retries ",
                Style::default().fg(Color::White).bg(Color::Red),
            ),
        });
    }
    Paragraph::new(Line::from(spans)).render_ref_to(area, buf);
}

trait RenderTo {
    fn render_ref_to(self, area: Rect, buf: &mut Buffer);
}
impl<W: ratatui::widgets::Widget> RenderTo for W {
    fn render_ref_to(self, area: Rect, buf: &mut Buffer) {
        self.render(area, buf);
    }
}

/// The rows of a table of `total` one-line rows that fit in `height` rows, as ratatui's `Table`
/// picks them: from `offset`, scrolled just enough to show `selected`. Returns `start..end`
/// (with no room at all, just the selected row, which still sets the highlight column).
fn table_window(
    total: usize,
    height: usize,
    offset: usize,
    selected: Option<usize>,
) -> std::ops::Range<usize> {
    if total == 0 {
        return 0..0;
    }
    let last = total - 1;
    let mut start = offset.min(last);
    if let Some(s) = selected {
        start = start.min(s);
    }
    let mut end = (start + height).min(total);
    if let Some(s) = selected.map(|s| s.min(last)) {
        if s >= end {
            end = s + 1;
            start = end.saturating_sub(height);
        }
        if height == 0 {
            // Nothing fits, but the selected row still sets the highlight column's width.
            return s..s + 1;
        }
    }
    start..end
}

fn draw_table(frame: &mut Frame, area: Rect, engine: &Engine, app: &mut App, now: u64) {
    let visible: Vec<usize> = app.visible_tasks(engine);
    let pos = visible.iter().position(|&i| i == app.selected);
    // Only the rows in view are built: inside the border, below the header.
    let window = table_window(
        visible.len(),
        area.height.saturating_sub(3) as usize,
        app.table_state.offset(),
        pos,
    );
    // What the rows show: when it, the area, the filter and the selection are as in the last
    // frame, the table's cells are copied from it instead of laid out again.
    let shown: Vec<(usize, String, String)> = visible[window.clone()]
        .iter()
        .map(|&i| {
            let elapsed = elapsed(engine, i, now).map(secs).unwrap_or_default();
            (i, verdict_text(engine, i), elapsed)
        })
        .collect();
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (area, app.filter, pos, &window, app.table_state.offset()).hash(&mut h);
        for (i, verdict, elapsed) in &shown {
            let t = engine.task(*i);
            (i, &t.id, &t.title, t.status, t.attempts, verdict, elapsed).hash(&mut h);
            engine.conflict_names(*i).for_each(|c| c.hash(&mut h));
        }
        h.finish()
    };
    let restored = app.table_cache.restore(frame.buffer_mut(), area, key);
    if let Some(offset) = restored {
        app.table_state.select(pos);
        *app.table_state.offset_mut() = offset;
    } else {
        render_table(frame, area, engine, app, &shown, pos, &window);
        let offset = app.table_state.offset();
        app.table_cache.store(frame.buffer_mut(), area, key, offset);
    }
    // Row hit areas for the mouse: rows start below the border and header.
    let offset = app.table_state.offset();
    for (k, &i) in visible.iter().enumerate().skip(offset) {
        let y = area.y + 2 + (k - offset) as u16;
        if y >= area.bottom().saturating_sub(1) {
            break;
        }
        app.hits
            .push((Rect::new(area.x, y, area.width, 1), i, HitKind::Row));
    }
}

/// Lays out and draws the task table's rows `shown` (task, verdict, elapsed) of `window`.
fn render_table(
    frame: &mut Frame,
    area: Rect,
    engine: &Engine,
    app: &mut App,
    shown: &[(usize, String, String)],
    pos: Option<usize>,
    window: &std::ops::Range<usize>,
) {
    let rows: Vec<Row> = shown
        .iter()
        .map(|(i, verdict, elapsed)| {
            let t = engine.task(*i);
            let (g, st) = status_style(t.status);
            let attention = t.status == Status::NeedsAttention;
            let row = Row::new(vec![
                Cell::from(t.id.clone()),
                Cell::from(t.title.clone()),
                // ↯: a conflict with another task (or the integration branch) is predicted.
                Cell::from(Span::styled(
                    match engine.conflict_names(*i).next().is_none() {
                        true => format!("{g} {}", t.status),
                        false => format!("{g} {} ↯", t.status),
                    },
                    st,
                )),
                Cell::from(verdict.clone()),
                Cell::from(t.attempts.unwrap_or(0).to_string()),
                Cell::from(elapsed.clone()),
            ]);
            if attention {
                row.style(Style::default().bg(Color::Rgb(80, 0, 0)))
            } else {
                row
            }
        })
        .collect();
    let title = match app.filter {
        Some(s) => format!(" tasks · filter: {s} (f cycles) "),
        None => " tasks ".to_string(),
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Fill(2),
            Constraint::Length(17),
            Constraint::Fill(3),
            Constraint::Length(3),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            "id",
            "title",
            "status",
            "verdict · evidence",
            "try",
            "elapsed",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Rounded)
            .title(title),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("▶ ");
    let mut state = TableState::default()
        .with_selected(pos.filter(|p| window.contains(p)).map(|p| p - window.start));
    frame.render_stateful_widget(table, area, &mut state);
    app.table_state.select(pos);
    *app.table_state.offset_mut() = window.start + state.offset();
}

fn draw_recent(buf: &mut Buffer, area: Rect, recent: &[String]) {
    if area.height < 3 {
        return;
    }
    let n = (area.height - 2) as usize;
    let lines: Vec<Line> = recent[recent.len().saturating_sub(n)..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    Paragraph::new(lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .title(" events (no worker running) "),
        )
        .render_ref_to(area, buf);
}

/// Columns × rows for `n` tiles in an area, keeping tiles roughly 3:1 (w:h) in cells.
pub fn grid_shape(n: usize, area: Rect) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut best = (1, n);
    let mut best_score = f64::MAX;
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let w = area.width as f64 / cols as f64;
        let h = area.height as f64 / rows as f64;
        let score = ((w / h) / 3.0).ln().abs() + 0.05 * (cols * rows - n) as f64;
        if score < best_score {
            best_score = score;
            best = (cols, rows);
        }
    }
    best
}

fn draw_grid(
    buf: &mut Buffer,
    area: Rect,
    engine: &Engine,
    screens: &Screens,
    live: &[usize],
    app: &mut App,
    now: u64,
) {
    let (cols, rows) = grid_shape(live.len(), area);
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(area);
    for (r, row_area) in row_areas.iter().enumerate() {
        let in_row: Vec<usize> = live.iter().copied().skip(r * cols).take(cols).collect();
        let col_areas = Layout::horizontal(vec![
            Constraint::Ratio(1, in_row.len().max(1) as u32);
            in_row.len()
        ])
        .split(*row_area);
        for (c, &task) in in_row.iter().enumerate() {
            draw_tile(buf, col_areas[c], engine, screens, task, app, now);
        }
    }
}

fn draw_tile(
    buf: &mut Buffer,
    area: Rect,
    engine: &Engine,
    screens: &Screens,
    task: usize,
    app: &mut App,
    now: u64,
) {
    let t = engine.task(task);
    let selected = task == app.selected;
    let attention = t.status == Status::NeedsAttention;
    let border = if attention {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else if selected {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let agent = t.agent.as_deref().unwrap_or(&engine.policy.default_agent);
    let (g, _) = status_style(t.status);
    let title = format!(
        " {g} {} · {agent} · {} · #{} · {} ",
        t.id,
        verdict_text(engine, task),
        t.attempts.unwrap_or(0),
        elapsed(engine, task, now).map(secs).unwrap_or_default()
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(if selected {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(border)
        .title(Span::styled(title, border));
    let inner = block.inner(area);
    block.render_ref_to(area, buf);
    app.hits.push((area, task, HitKind::Pane));
    let live = screens.get(&task);
    let mut p = live.map(|p| p.lock().unwrap_or_else(|e| e.into_inner()));
    match &app.mode {
        Mode::Scroll(st) if st.task == task => {
            let (memory, readable) = app.scrollback;
            let label = match (app.history.as_mut().filter(|h| h.task == task), p.as_mut()) {
                (Some(h), _) => {
                    let offset = draw_scrolled(buf, inner, &mut h.emulator, st);
                    format!(" scrollback −{offset} / {} (from the transcript) ", h.depth)
                }
                // A finished task: all of it comes from the transcript.
                (None, None) => " scrollback · reading the transcript… ".to_string(),
                (None, Some(p)) => {
                    let offset = draw_scrolled(buf, inner, p, st);
                    let depth = super::scroll::depth(p);
                    let more = if app.history_wanted.is_some_and(|(t, _, _)| t == task) {
                        " · reading the transcript…"
                    } else if memory < readable && depth >= memory {
                        " in memory"
                    } else {
                        ""
                    };
                    format!(" scrollback −{offset} / {depth}{more} ")
                }
            };
            let w = label.chars().count() as u16;
            if area.width > w + 2 {
                Paragraph::new(Span::styled(
                    label,
                    Style::default().fg(Color::Black).bg(Color::Yellow),
                ))
                .render_ref_to(
                    Rect::new(area.right() - w - 2, area.bottom() - 1, w, 1),
                    buf,
                );
            }
        }
        _ => {
            if let Some(p) = &p {
                app.tiles.draw(buf, inner, task, p, app.fit, now)
            }
        }
    }
}

/// Draws `p` scrolled back by `st.offset` rows into `inner` (the view offset is moved only for
/// the drawing and put back to 0), highlighting the current match; returns the offset shown
/// (clamped to what the emulator holds).
fn draw_scrolled(
    buf: &mut Buffer,
    inner: Rect,
    p: &mut Emulator,
    st: &super::scroll::ScrollState,
) -> usize {
    let lines_total = {
        p.screen_mut().set_scrollback(usize::MAX);
        p.screen().scrollback() + p.screen().size().0 as usize
    };
    p.screen_mut().set_scrollback(st.offset);
    let offset = p.screen().scrollback();
    render_rows(buf, inner, p.screen(), 0);
    p.screen_mut().set_scrollback(0);
    let rows = p.screen().size().0 as usize;
    let top_line = lines_total - rows - offset;
    if let Some(found) = st.found {
        if found >= top_line && found < top_line + inner.height as usize {
            let y = inner.y + (found - top_line) as u16;
            buf.set_style(
                Rect::new(inner.x, y, inner.width, 1),
                Style::default().bg(Color::Rgb(90, 70, 0)),
            );
        }
    }
    offset
}

/// A finished task's last screen (its worker exited), cropped to the rows at its end.
fn draw_last_screen(buf: &mut Buffer, area: Rect, engine: &Engine, task: usize, p: &Emulator) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(format!(
            " {} · last screen (the worker exited) · {} ",
            engine.task(task).id,
            verdict_text(engine, task)
        ));
    let inner = block.inner(area);
    block.render_ref_to(area, buf);
    let screen = p.screen();
    render_rows(
        buf,
        inner,
        screen,
        super::pane::tail_first(screen, inner.height),
    );
}

/// Renders screen rows from `first` down into `area`, with colours and attributes, cropping
/// columns that do not fit.
pub fn render_rows(buf: &mut Buffer, area: Rect, screen: &vt100::Screen, first: u16) {
    let (rows, cols) = screen.size();
    for y in 0..area.height.min(rows.saturating_sub(first)) {
        for x in 0..area.width.min(cols) {
            match screen.cell(first + y, x) {
                Some(cell) if !cell.is_wide_continuation() => {
                    buf[(area.x + x, area.y + y)] = super::pane::to_cell(cell);
                }
                _ => {}
            }
        }
    }
}

fn draw_footer(buf: &mut Buffer, area: Rect, app: &App, recent: &[String]) {
    let line = match &app.mode {
        Mode::Scroll(st) if st.editing => Line::from(vec![
            Span::styled(" search scrollback (Enter finds, Esc cancels): /", Style::default().fg(Color::Yellow)),
            Span::raw(st.query.clone()),
            Span::styled("█", Style::default().fg(Color::Yellow)),
        ]),
        Mode::Scroll(_) => Line::from(vec![
            Span::styled(
                " SCROLLBACK  PgUp/PgDn ↑↓ g/G move  / search  n/N older/newer match  y copy  Esc back ",
                Style::default().fg(Color::Black).bg(Color::Yellow),
            ),
            Span::raw(" "),
            Span::styled(app.message.clone().unwrap_or_default(), Style::default().fg(Color::Gray)),
        ]),
        Mode::Input { purpose, text, .. } => {
            let label = match purpose {
                InputPurpose::Nudge => "nudge text",
                InputPurpose::Answer => "answer text",
                InputPurpose::Keys => "keys (\\e \\r \\t \\xHH)",
            };
            Line::from(vec![
                Span::styled(
                    format!(" {label} (Enter sends, Esc cancels): "),
                    Style::default().fg(Color::Yellow),
                ),
                Span::raw(text.clone()),
                Span::styled("█", Style::default().fg(Color::Yellow)),
            ])
        }
        _ => {
            let msg = app
                .message
                .clone()
                .or_else(|| recent.last().cloned())
                .unwrap_or_default();
            Line::from(vec![
                Span::styled(
                    app.keys.footer(),
                    Style::default().fg(Color::Black).bg(Color::Gray),
                ),
                Span::raw(" "),
                Span::styled(msg, Style::default().fg(Color::Gray)),
            ])
        }
    };
    Paragraph::new(line).render_ref_to(area, buf);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.keys.help_rows();
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|(k, h)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<12}"),
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                ),
                Span::raw(*h),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!(
            " attached: keys go to the worker, {} detaches · mouse: click selects, wheel scrolls",
            app.keys.detach.label()
        ),
        Style::default().fg(Color::Gray),
    )));
    lines.push(Line::from(Span::styled(
        " scrollback: PgUp/PgDn ↑↓ g/G move · / search · n/N older/newer · y copy · Esc back",
        Style::default().fg(Color::Gray),
    )));
    let popup = centered(area, 92, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .title(" keys — ? or Esc closes "),
        ),
        popup,
    );
}

fn draw_confirm(frame: &mut Frame, area: Rect, engine: &Engine, foreground: bool) {
    let n = engine.live_workers().count();
    let text = if foreground {
        vec![
            Line::from(format!(
                " {n} worker(s) still running in this process (--foreground)."
            )),
            Line::from(" Quit and stop them? Running tasks stay `running` and resume next time."),
            Line::from(""),
            Line::from(Span::styled(
                " y / s: stop and quit   n / Esc: stay",
                Style::default().add_modifier(Modifier::BOLD),
            )),
        ]
    } else {
        vec![
            Line::from(format!(" {n} worker(s) running. Leave the control room:")),
            Line::from(" detach keeps the run going in its server (`switchyard attach` returns);"),
            Line::from(" stop ends it (running tasks stay `running` and resume next time)."),
            Line::from(Span::styled(
                " Enter / d: detach   s: stop the run   Esc: stay",
                Style::default().add_modifier(Modifier::BOLD),
            )),
        ]
    };
    let popup = centered(area, 76, 6);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .title(" quit? "),
        ),
        popup,
    );
}

fn draw_attached(
    frame: &mut Frame,
    engine: &Engine,
    screens: &Screens,
    task: usize,
    area: Rect,
    detach: &str,
) {
    let [bar, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let t = engine.task(task);
    let line = Line::from(vec![
        Span::styled(
            " ATTACHED ",
            Style::default()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" {} · {} — keys go to the agent · ", t.id, t.title)),
        Span::styled(
            format!("{detach} detaches"),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), bar);
    match screens.get(&task) {
        Some(p) => {
            let p = p.lock().unwrap_or_else(|e| e.into_inner());
            frame.render_widget(tui_term::widget::PseudoTerminal::new(p.screen()), rest);
        }
        None => frame.render_widget(
            Paragraph::new(" the worker has exited — Ctrl-] returns to the control room"),
            rest,
        ),
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use proptest::prelude::*;

    /// A table like the control room's, of the given rows.
    fn table(rows: std::ops::Range<usize>) -> Table<'static> {
        Table::new(
            rows.map(|i| Row::new(vec![Cell::from(format!("t{i}")), Cell::from("x")])),
            [Constraint::Length(8), Constraint::Fill(1)],
        )
        .header(Row::new(vec!["id", "title"]))
        .block(Block::default().borders(Borders::ALL))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
    }

    proptest! {
        /// Building only the rows in view draws what ratatui draws from all of them, and leaves
        /// the same scroll offset.
        #[test]
        fn the_window_matches_ratatuis_own_scrolling(
            total in 0usize..60,
            height in 3u16..24,
            offset in 0usize..70,
            selected in proptest::option::of(0usize..60),
        ) {
            let selected = selected.filter(|&s| s < total);
            let area = Rect::new(0, 0, 30, height);
            let mut full = Buffer::empty(area);
            let mut state = TableState::default().with_offset(offset).with_selected(selected);
            ratatui::widgets::StatefulWidget::render(table(0..total), area, &mut full, &mut state);

            let window = table_window(total, height as usize - 3, offset, selected);
            let mut part = Buffer::empty(area);
            let mut inner = TableState::default()
                .with_selected(selected.filter(|s| window.contains(s)).map(|s| s - window.start));
            ratatui::widgets::StatefulWidget::render(table(window.clone()), area, &mut part, &mut inner);
            prop_assert_eq!(part, full);
            if total > 0 {
                prop_assert_eq!(window.start + inner.offset(), state.offset());
            }
        }
    }
}
