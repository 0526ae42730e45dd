//! The DAG view as it was drawn before it was culled to the viewport (every edge and node
//! marked on the whole canvas, then clipped). Kept for the tests only, as the reference the
//! culled drawing must match cell for cell.

use super::super::view::status_style;
use super::{box_char, DOWN, GAP, LEFT, RIGHT, SLOT, UP};
use crate::core::engine::Engine;
use crate::core::plan::{EdgeKind, Plan};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};

/// The old layout.
pub(super) struct Old {
    pub pos: Vec<(u16, u16)>,
    pub node_w: u16,
    pub width: u16,
    pub height: u16,
    pub edges: Vec<(usize, usize)>,
}

impl Old {
    fn node_xy(&self, i: usize) -> (u16, u16) {
        let (c, s) = self.pos[i];
        (c * (self.node_w + GAP), s * SLOT)
    }
}

pub(super) fn layout(plan: &Plan) -> Old {
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
    let mut height_slots = 0u16;
    for d in 0..=max_depth {
        let mut col: Vec<(f64, usize)> = (0..n)
            .filter(|&i| plan.depth[i] == d)
            .map(|i| {
                let preds: Vec<f64> = edges
                    .iter()
                    .filter(|(_, b)| *b == i)
                    .map(|(a, _)| pos[*a].1 as f64)
                    .collect();
                let key = if preds.is_empty() {
                    f64::MAX
                } else {
                    preds.iter().sum::<f64>() / preds.len() as f64
                };
                (key, i)
            })
            .collect();
        col.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (slot, (_, i)) in col.iter().enumerate() {
            pos[*i] = (d as u16, slot as u16);
        }
        height_slots = height_slots.max(col.len() as u16);
    }
    Old {
        pos,
        node_w,
        width: (max_depth as u16 + 1) * (node_w + GAP),
        height: height_slots * SLOT,
        edges,
    }
}

pub(super) fn draw(
    buf: &mut Buffer,
    area: Rect,
    engine: &Engine,
    layout: &Old,
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
    let on_path = |a: usize, b: usize| {
        engine
            .plan
            .critical_path
            .windows(2)
            .any(|w| w[0] == a && w[1] == b)
    };
    // Edge bits on the canvas, plus whether the cell is on the critical path.
    let mut bits: std::collections::HashMap<(u16, u16), (u8, bool)> =
        std::collections::HashMap::new();
    let mut mark = |x: u16, y: u16, b: u8, crit: bool| {
        let e = bits.entry((x, y)).or_insert((0, false));
        e.0 |= b;
        e.1 |= crit;
    };
    let mut arrows = Vec::new();
    for &(a, b) in &layout.edges {
        let crit = on_path(a, b);
        let (ax, ay) = layout.node_xy(a);
        let (bx, by) = layout.node_xy(b);
        let start = ax + layout.node_w; // first cell right of the source label
        let vx = start + GAP / 2; // the vertical run, in the gap after the source column
        let end = bx.saturating_sub(2); // the cell before the arrow head
        for x in start..vx {
            mark(x, ay, LEFT | RIGHT, crit);
        }
        if ay == by {
            mark(vx, ay, LEFT | RIGHT, crit);
        } else {
            let (lo, hi) = if ay < by { (ay, by) } else { (by, ay) };
            mark(vx, ay, LEFT | if by > ay { DOWN } else { UP }, crit);
            for y in lo + 1..hi {
                mark(vx, y, UP | DOWN, crit);
            }
            mark(vx, by, RIGHT | if by > ay { UP } else { DOWN }, crit);
        }
        for x in vx + 1..=end {
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
    for (&(x, y), &(b, crit)) in &bits {
        if let Some((px, py)) = to_screen(x, y) {
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
    for i in 0..layout.pos.len() {
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
    hits
}
