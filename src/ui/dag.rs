//! The live DAG view: tasks layered by depth into columns, edges drawn with box-drawing
//! characters, nodes marked by status glyph and colour, the critical path highlighted, the
//! selected task in sync with the table. The layout is computed once per plan, in time linear in
//! tasks and edges; drawing scrolls a viewport over it and visits only the nodes in view and the
//! edges whose box crosses it, so manifests of 10 000 tasks stay usable.

use super::view::status_style;
use crate::core::engine::Engine;
use crate::core::plan::{EdgeKind, Plan};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};

#[cfg(test)]
mod reference;

/// Gap between columns, in cells (room for the vertical edge runs).
const GAP: u16 = 5;
/// Rows per node slot (the node's row and one spare row).
const SLOT: u16 = 2;

/// Where every node sits on the virtual canvas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagLayout {
    /// (column, slot) per task index.
    pub pos: Vec<(u16, u16)>,
    /// Width of a node label, cells.
    pub node_w: u16,
    /// Canvas size, cells.
    pub width: u16,
    /// Canvas size, cells.
    pub height: u16,
    /// Edges to draw (explicit ones; phase gates are shown by the columns themselves).
    pub edges: Vec<(usize, usize)>,
    /// Task index per column and slot, so drawing visits only the nodes in view.
    columns: Vec<Vec<usize>>,
}

impl DagLayout {
    /// Lays the plan out: column = depth; within a column, nodes ordered by the mean slot of
    /// their predecessors (fewer crossings), then manifest order.
    pub fn new(plan: &Plan) -> DagLayout {
        let n = plan.len();
        let max_depth = plan.depth.iter().copied().max().unwrap_or(0);
        let id_w = plan
            .ids
            .iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(1)
            .min(14) as u16;
        let node_w = id_w + 2;
        let mut pos = vec![(0u16, 0u16); n];
        let edges: Vec<(usize, usize)> = plan
            .graph
            .edge_indices()
            .filter_map(|e| {
                let (a, b) = plan.graph.edge_endpoints(e)?;
                (plan.graph[e] != EdgeKind::Phase).then(|| (plan.graph[a], plan.graph[b]))
            })
            .collect();
        // Predecessors per node in edge order, and nodes per depth in manifest order: one pass
        // each, so the layout is linear in tasks and edges.
        let mut preds_of: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in &edges {
            preds_of[b].push(a);
        }
        let mut by_depth: Vec<Vec<usize>> = vec![Vec::new(); max_depth + 1];
        for i in 0..n {
            by_depth[plan.depth[i]].push(i);
        }
        let mut height_slots = 0u16;
        let mut columns = Vec::with_capacity(max_depth + 1);
        for layer in &by_depth {
            let mut col: Vec<(f64, usize)> = layer
                .iter()
                .map(|&i| {
                    let preds: Vec<f64> = preds_of[i].iter().map(|&a| pos[a].1 as f64).collect();
                    let key = if preds.is_empty() {
                        f64::MAX
                    } else {
                        preds.iter().sum::<f64>() / preds.len() as f64
                    };
                    (key, i)
                })
                .collect();
            col.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let d = columns.len();
            for (slot, (_, i)) in col.iter().enumerate() {
                pos[*i] = (d as u16, slot as u16);
            }
            height_slots = height_slots.max(col.len() as u16);
            columns.push(col.into_iter().map(|(_, i)| i).collect());
        }
        DagLayout {
            pos,
            node_w,
            width: (max_depth as u16 + 1) * (node_w + GAP),
            height: height_slots * SLOT,
            edges,
            columns,
        }
    }

    /// The canvas cell where a node's label starts.
    pub fn node_xy(&self, i: usize) -> (u16, u16) {
        let (c, s) = self.pos[i];
        (c * (self.node_w + GAP), s * SLOT)
    }
}

const UP: u8 = 1;
const DOWN: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;

fn box_char(bits: u8) -> char {
    match bits {
        b if b == LEFT | RIGHT => '─',
        b if b == UP | DOWN => '│',
        b if b == DOWN | RIGHT => '┌',
        b if b == DOWN | LEFT => '┐',
        b if b == UP | RIGHT => '└',
        b if b == UP | LEFT => '┘',
        b if b == UP | DOWN | RIGHT => '├',
        b if b == UP | DOWN | LEFT => '┤',
        b if b == LEFT | RIGHT | DOWN => '┬',
        b if b == LEFT | RIGHT | UP => '┴',
        b if b == UP | DOWN | LEFT | RIGHT => '┼',
        b if b & (LEFT | RIGHT) != 0 => '─',
        b if b & (UP | DOWN) != 0 => '│',
        _ => ' ',
    }
}

/// Draws the DAG into `area`, scrolled so the selected task is visible. Returns the clickable
/// node rectangles (screen coordinates, task index).
pub fn draw(
    buf: &mut Buffer,
    area: Rect,
    engine: &Engine,
    layout: &DagLayout,
    selected: usize,
) -> Vec<(Rect, usize)> {
    let mut hits = Vec::new();
    if area.width == 0 || area.height == 0 || layout.pos.is_empty() {
        return hits;
    }
    // Scroll: keep the selected node inside the viewport, centred when it would leave it.
    let (sx, sy) = layout.node_xy(selected.min(layout.pos.len() - 1));
    let off_x = if sx + layout.node_w > area.width {
        (sx + layout.node_w).saturating_sub(area.width) + GAP
    } else {
        0
    };
    let off_y = if sy + 1 > area.height {
        sy + 1 - area.height / 2
    } else {
        0
    };
    let critical: std::collections::HashSet<usize> =
        engine.plan.critical_path.iter().copied().collect();
    let critical_steps: std::collections::HashSet<(usize, usize)> = engine
        .plan
        .critical_path
        .windows(2)
        .map(|w| (w[0], w[1]))
        .collect();
    // The viewport on the canvas; everything outside it is skipped, not drawn and clipped.
    let (vx0, vy0) = (off_x, off_y);
    let (vx1, vy1) = (off_x + area.width, off_y + area.height); // exclusive
                                                                // Edge bits per viewport cell, plus whether the cell is on the critical path.
    let w = area.width as usize;
    let mut bits = vec![(0u8, false); w * area.height as usize];
    let mut mark = |x: u16, y: u16, b: u8, crit: bool| {
        if (vx0..vx1).contains(&x) && (vy0..vy1).contains(&y) {
            let e = &mut bits[(y - vy0) as usize * w + (x - vx0) as usize];
            e.0 |= b;
            e.1 |= crit;
        }
    };
    let mut arrows = Vec::new();
    for &(a, b) in &layout.edges {
        let (ax, ay) = layout.node_xy(a);
        let (bx, by) = layout.node_xy(b);
        let start = ax + layout.node_w; // first cell right of the source label
        let vx = start + GAP / 2; // the vertical run, in the gap after the source column
        let end = bx.saturating_sub(2); // the cell before the arrow head
        let (lo, hi) = if ay < by { (ay, by) } else { (by, ay) };
        // The edge's bounding box; an edge wholly outside the viewport costs this test only.
        if start.max(end.max(vx) + 1) < vx0 || start >= vx1 || hi < vy0 || lo >= vy1 {
            continue;
        }
        let crit = critical_steps.contains(&(a, b));
        for x in start.max(vx0)..vx.min(vx1) {
            mark(x, ay, LEFT | RIGHT, crit);
        }
        if ay == by {
            mark(vx, ay, LEFT | RIGHT, crit);
        } else {
            mark(vx, ay, LEFT | if by > ay { DOWN } else { UP }, crit);
            for y in (lo + 1).max(vy0)..hi.min(vy1) {
                mark(vx, y, UP | DOWN, crit);
            }
            mark(vx, by, RIGHT | if by > ay { UP } else { DOWN }, crit);
        }
        for x in (vx + 1).max(vx0)..=end.min(vx1.saturating_sub(1)) {
            mark(x, by, LEFT | RIGHT, crit);
        }
        arrows.push((bx.saturating_sub(1), by, crit));
    }
    let to_screen = |x: u16, y: u16| -> Option<(u16, u16)> {
        let x = x.checked_sub(off_x)?;
        let y = y.checked_sub(off_y)?;
        (x < area.width && y < area.height).then_some((area.x + x, area.y + y))
    };
    let edge_style = |crit: bool| {
        if crit {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default().fg(Color::DarkGray)
        }
    };
    for (k, &(b, crit)) in bits.iter().enumerate() {
        if b != 0 {
            let (px, py) = (area.x + (k % w) as u16, area.y + (k / w) as u16);
            buf[(px, py)]
                .set_char(box_char(b))
                .set_style(edge_style(crit));
        }
    }
    for (x, y, crit) in arrows {
        if let Some((px, py)) = to_screen(x, y) {
            buf[(px, py)].set_char('▶').set_style(edge_style(crit));
        }
    }
    // The nodes in view: columns that overlap it, slots whose row is inside it.
    let col_w = layout.node_w + GAP;
    let first_col = (vx0.saturating_sub(layout.node_w) / col_w) as usize;
    let last_col = (vx1 / col_w) as usize;
    let first_slot = vy0.div_ceil(SLOT) as usize;
    let last_slot = (vy1.saturating_sub(1) / SLOT) as usize;
    let mut in_view: Vec<usize> = layout
        .columns
        .iter()
        .take(last_col + 1)
        .skip(first_col)
        .flat_map(|col| col.iter().take(last_slot + 1).skip(first_slot).copied())
        .collect();
    in_view.sort_unstable();
    for &i in &in_view {
        let (x, y) = layout.node_xy(i);
        let status = engine.status(i);
        let (glyph, mut style) = status_style(status);
        if critical.contains(&i) {
            style = style.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        }
        if i == selected {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let id: String = engine.plan.ids[i]
            .chars()
            .take(layout.node_w as usize - 2)
            .collect();
        let label = format!("{glyph} {id:<w$}", w = layout.node_w as usize - 2);
        let mut first: Option<(u16, u16)> = None;
        for (k, ch) in label.chars().enumerate() {
            if let Some((px, py)) = to_screen(x + k as u16, y) {
                first.get_or_insert((px, py));
                buf[(px, py)].set_char(ch).set_style(style);
            }
        }
        if let Some((px, py)) = first {
            let w = layout.node_w.min(area.right() - px);
            hits.push((Rect::new(px, py, w, 1), i));
        }
    }
    draw_conflicts(buf, engine, layout, &in_view, (vy0, vy1), &to_screen);
    hits
}

/// Predicted conflicts (see [`Engine::conflicts_of`]): a `↯` after the status glyph of each task
/// in view that has one, and two conflicting tasks in one column joined by a dashed line (`┆`)
/// right of their labels (a cell edges use only on node rows: an edge leaves a node there).
fn draw_conflicts(
    buf: &mut Buffer,
    engine: &Engine,
    layout: &DagLayout,
    in_view: &[usize],
    (vy0, vy1): (u16, u16),
    to_screen: &dyn Fn(u16, u16) -> Option<(u16, u16)>,
) {
    let style = Style::default()
        .fg(Color::Magenta)
        .add_modifier(Modifier::BOLD);
    for &i in in_view {
        let others = engine.conflicts_of(i);
        if others.is_empty() {
            continue;
        }
        let (x, y) = layout.node_xy(i);
        if let Some((px, py)) = to_screen(x + 1, y) {
            buf[(px, py)].set_char('↯').set_fg(Color::Magenta);
        }
        for j in others.iter().filter_map(|k| engine.plan.index_of(k)) {
            if j <= i || layout.pos[j].0 != layout.pos[i].0 {
                continue;
            }
            let (_, yj) = layout.node_xy(j);
            let (lo, hi) = if y < yj { (y, yj) } else { (yj, y) };
            for row in (lo + 1).max(vy0)..hi.min(vy1) {
                if let Some((px, py)) = to_screen(x + layout.node_w, row) {
                    if buf[(px, py)].symbol() == " " {
                        buf[(px, py)].set_char('┆').set_style(style);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::manifest::Manifest;

    #[test]
    fn seed_layout_puts_depths_in_columns_and_keeps_chains_on_one_row() {
        let m = Manifest::parse(include_str!("../../tests/fixtures/seed-manifest.json")).unwrap();
        let plan = Plan::build(&m).unwrap();
        let l = DagLayout::new(&plan);
        let at = |id: &str| l.pos[plan.index_of(id).unwrap()];
        assert_eq!(at("t1").0, 0);
        assert_eq!(at("t3").0, 0);
        assert_eq!(at("t2"), (1, at("t1").1), "a chain stays on its row");
        assert_eq!(at("t5").0, 3);
        assert_eq!(
            l.edges.len(),
            4,
            "dependsOn edges only; phase gates are the columns"
        );
    }

    #[test]
    fn box_characters_join_runs() {
        assert_eq!(box_char(LEFT | RIGHT), '─');
        assert_eq!(box_char(UP | DOWN | RIGHT), '├');
        assert_eq!(box_char(LEFT | DOWN), '┐');
    }

    #[test]
    fn a_predicted_conflict_marks_both_tasks_and_joins_them() {
        let json = r#"{"phases":[{"tasks":[{"id":"a","files":["x"]},{"id":"b","files":["y"]},{"id":"c","files":["z"]}]}]}"#;
        let m = Manifest::parse(json).unwrap();
        let plan = Plan::build(&m).unwrap();
        let config = crate::core::config::Config::from_layers(&[
            ("defaults".into(), crate::core::config::DEFAULTS.into()),
            (
                "t".into(),
                "default_agent = \"fake\"\n[agents.fake]\ncommand = [\"true\"]\n".into(),
            ),
        ])
        .unwrap();
        let mut e = Engine::new(m, plan, config, 0).unwrap();
        let conflict = crate::core::engine::ConflictInfo {
            path: "x".into(),
            ours: vec![(1, 2)],
            theirs: vec![(1, 3)],
            hunks: String::new(),
        };
        e.update(
            crate::core::engine::Event::Predicted {
                task: 0,
                results: vec![(Some(2), vec![conflict])],
                error: None,
            },
            5,
        );
        let layout = DagLayout::new(&e.plan);
        assert_eq!(layout.pos.iter().map(|p| p.0).max(), Some(0), "one column");
        let area = Rect::new(0, 0, 30, 6);
        let mut buf = Buffer::empty(area);
        draw(&mut buf, area, &e, &layout, 1);
        let at = |i: usize, dx: u16, dy: u16| {
            let (x, y) = layout.node_xy(i);
            buf[(x + dx, y + dy)].symbol().to_string()
        };
        assert_eq!((at(0, 1, 0), at(2, 1, 0)), ("↯".into(), "↯".into()));
        assert_eq!(at(1, 1, 0), " ", "b has no conflict");
        let w = layout.node_w;
        assert_eq!(
            (at(0, w, 1), at(1, w, 1)),
            ("┆".into(), "┆".into()),
            "a ┆ c"
        );
    }

    /// A plan like the scale bench's, small enough for the old drawing: 2 phases, shared files,
    /// some hand-written dependsOn.
    fn bench_like(n: usize) -> Engine {
        let mut tasks = vec![String::new(); 2];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for i in 0..n {
            let p = usize::from(i >= n / 2);
            let files: Vec<String> = (0..1 + next(2))
                .map(|_| format!(r#""f{}""#, next(12)))
                .collect();
            let deps = if i % 5 == 3 {
                format!(r#","dependsOn":["t{}"]"#, i - 1 - next(3) as usize)
            } else {
                String::new()
            };
            if !tasks[p].is_empty() {
                tasks[p].push(',');
            }
            tasks[p].push_str(&format!(
                r#"{{"id":"t{i}","files":[{}]{deps}}}"#,
                files.join(",")
            ));
        }
        let json = format!(
            r#"{{"phases":[{{"tasks":[{}]}},{{"tasks":[{}]}}]}}"#,
            tasks[0], tasks[1]
        );
        let m = Manifest::parse(&json).unwrap();
        let plan = Plan::build(&m).unwrap();
        let config = crate::core::config::Config::from_layers(&[
            ("defaults".into(), crate::core::config::DEFAULTS.into()),
            (
                "t".into(),
                "default_agent = \"fake\"\n[agents.fake]\ncommand = [\"true\"]\n".into(),
            ),
        ])
        .unwrap();
        let mut e = Engine::new(m, plan, config, 0).unwrap();
        e.update(crate::core::engine::Event::Tick, 0);
        e
    }

    #[test]
    fn the_linear_layout_and_the_culled_drawing_match_the_old_ones_cell_for_cell() {
        let e = bench_like(120);
        let new = DagLayout::new(&e.plan);
        let old = reference::layout(&e.plan);
        assert_eq!(new.pos, old.pos);
        assert_eq!(
            (new.node_w, new.width, new.height),
            (old.node_w, old.width, old.height)
        );
        assert_eq!(new.edges, old.edges);
        let mut compared = 0;
        for (w, h) in [(40u16, 12u16), (97, 31), (300, 200)] {
            for selected in [0, 7, 33, 59, 60, 88, 119] {
                let area = Rect::new(2, 1, w, h);
                let mut a = Buffer::empty(Rect::new(0, 0, w + 4, h + 2));
                let mut b = a.clone();
                let hits_new = draw(&mut a, area, &e, &new, selected);
                let hits_old = reference::draw(&mut b, area, &e, &old, selected);
                assert_eq!(a, b, "{w}x{h}, selected t{selected}");
                assert_eq!(hits_new, hits_old, "{w}x{h}, selected t{selected}");
                compared += hits_new.len();
            }
        }
        assert!(compared > 100, "the views showed nodes ({compared})");
    }
}
