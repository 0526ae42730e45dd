//! The dependency DAG: explicit `dependsOn`, same-file serialization, phase gates, cycle
//! reporting, layering into batches and the critical path.
//!
//! Rules (from DESIGN.md "Planning rules", after the seed orchestrator): `dependsOn` and
//! `context` wait; tasks writing a file run one after another in manifest order, and tasks that
//! only read it run beside each other and beside its writer ("many readers, one writer", the
//! Codex orchestration guide; see [`writes_of`]); a task that writes its own `dependsOn`
//! key (even `[]`) is trusted as planned by its author, as the seed's planner does, and gets no
//! inferred same-file edge (the seed example runs t4 ∥ t7 although both touch
//! `container_executor.js`) — [`Plan::warnings`] names every such pair so nothing is silent; phase N+1 waits for phase N unless the
//! phase says `"waitForPrevious": false`; a task with no `files` runs alone (enforced by the
//! scheduler, see [`Plan::runs_alone`]); among ready tasks the one with the longest remaining
//! critical path goes first.
//!
//! Scale: a phase gate is one barrier per phase ([`Plan::gate`]), never an edge from every task of
//! one phase to every task of the next; every search is bounded (by index or by depth), so
//! planning 10 000 tasks takes milliseconds.

use crate::core::manifest::{Location, Manifest, Problem, Task};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

#[cfg(test)]
mod reference;

/// Why one task waits for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeKind {
    /// The later task lists the earlier one in `dependsOn`.
    DependsOn,
    /// The later task lists the earlier one in `context` (it is given its final message).
    Context,
    /// Both touch this file; the later one in manifest order waits.
    SameFile(String),
    /// The later task's phase waits for the earlier task's phase.
    Phase,
}

/// The files a task writes, as the planner serializes them: `writes` when the task gives `reads`
/// or `writes`, else `files` (a task that names only `files` writes them all). Tasks sharing a
/// written file run one after another; files that are only read order nothing.
pub fn writes_of(t: &Task) -> &[String] {
    if t.reads.is_some() || t.writes.is_some() {
        t.writes.as_deref().unwrap_or(&[])
    } else {
        &t.files
    }
}

/// True when the task only reads: it gives `reads` and no `writes` (or `writes: []`). A
/// read-only task may finish without commits.
pub fn read_only(t: &Task) -> bool {
    t.reads.is_some() && t.writes.as_ref().is_none_or(|w| w.is_empty())
}

/// True when a task names no file at all (`files`, `reads`, `writes`): it runs alone.
fn names_no_file(t: &Task) -> bool {
    writes_of(t).is_empty() && t.reads.as_ref().is_none_or(|r| r.is_empty())
}

/// The one `Phase` edge kind that [`Plan::preds`] hands out for a phase gate.
static PHASE: EdgeKind = EdgeKind::Phase;

/// The planned DAG over a manifest's tasks. Task indices are manifest order (0-based).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Task ids in manifest order.
    pub ids: Vec<String>,
    /// Phase index of each task.
    pub phase: Vec<usize>,
    /// Phase names, in order.
    pub phase_names: Vec<String>,
    /// The task-to-task edges, earlier → later: `dependsOn`, same-file order, and, between tasks
    /// that share a file across a phase gate, the order that gate gives them (kind `Phase`, so
    /// every shared file's order can be read off the graph). Node `i` is task `i`. The rest of a
    /// phase gate is not edges but one barrier per phase: see [`Plan::gate`] and [`Plan::preds`].
    pub graph: DiGraph<usize, EdgeKind>,
    /// Layer of each task: 0 for tasks that wait for nothing, else 1 + the deepest predecessor
    /// (phase gates included).
    pub depth: Vec<usize>,
    /// Length, in tasks, of the longest path from each task to the end (itself included).
    pub height: Vec<usize>,
    /// The longest path through the DAG, as task indices.
    pub critical_path: Vec<usize>,
    /// Tasks that share a file but are not ordered (their `dependsOn` was written by hand).
    pub warnings: Vec<String>,
    alone: Vec<bool>,
    index: HashMap<String, usize>,
    /// First task index of each phase, plus the task count at the end.
    phase_start: Vec<usize>,
    /// Per phase: it waits for every task of the phase before it (false for phase 0, for a phase
    /// that says `"waitForPrevious": false`, and after an empty phase).
    gated: Vec<bool>,
}

/// The DAG with one barrier node per gated phase, as the searches below walk it: node `i < n` is
/// task `i`, node `n + p` the barrier in front of phase `p` (every task of phase `p - 1` → it →
/// every task of phase `p`).
struct Walk<'a> {
    graph: &'a DiGraph<usize, EdgeKind>,
    phase: &'a [usize],
    phase_start: &'a [usize],
    gated: &'a [bool],
}

impl Walk<'_> {
    fn n(&self) -> usize {
        self.phase.len()
    }

    /// Calls `f` on every successor of node `u` (tasks and barriers).
    fn succs(&self, u: usize, mut f: impl FnMut(usize)) {
        let n = self.n();
        if u < n {
            for s in self.graph.neighbors(NodeIndex::new(u)) {
                f(s.index());
            }
            let next = self.phase[u] + 1;
            if self.gated.get(next) == Some(&true) {
                f(n + next);
            }
        } else {
            let p = u - n;
            for k in self.phase_start[p]..self.phase_start[p + 1] {
                f(k);
            }
        }
    }

    /// A topological order of tasks and barriers, or `None` when there is a cycle.
    fn topo_order(&self) -> Option<Vec<usize>> {
        let n = self.n();
        let total = n + self.gated.len();
        let mut indeg = vec![0usize; total];
        for u in 0..total {
            self.succs(u, |v| indeg[v] += 1);
        }
        let mut order: Vec<usize> = (0..total).filter(|&u| indeg[u] == 0).collect();
        let mut head = 0;
        while head < order.len() {
            let u = order[head];
            head += 1;
            self.succs(u, |v| {
                indeg[v] -= 1;
                if indeg[v] == 0 {
                    order.push(v);
                }
            });
        }
        (order.len() == total).then_some(order)
    }
}

/// Marks for repeated graph searches without clearing: a node is seen when its mark equals the
/// current round.
struct Seen {
    mark: Vec<u32>,
    round: u32,
    stack: Vec<usize>,
}

impl Seen {
    fn new(n: usize) -> Seen {
        Seen {
            mark: vec![0; n],
            round: 0,
            stack: Vec::new(),
        }
    }

    fn next_round(&mut self) {
        self.round += 1;
        self.stack.clear();
    }

    /// True the first time `u` is seen this round.
    fn visit(&mut self, u: usize) -> bool {
        if self.mark[u] == self.round {
            return false;
        }
        self.mark[u] = self.round;
        self.stack.push(u);
        true
    }
}

impl Plan {
    /// Builds the DAG. Errors: every dependency cycle, with its path and the reason for each step
    /// (as [`Problem`]s naming the first task of the cycle). The manifest should already have
    /// passed [`Manifest::validate`]; unknown dependencies are skipped here.
    pub fn build(m: &Manifest) -> Result<Plan, Vec<Problem>> {
        let mut ids = Vec::new();
        let mut phase = Vec::new();
        let mut alone = Vec::new();
        let mut phase_start = vec![0];
        for (p, ph) in m.phases.iter().enumerate() {
            for t in &ph.tasks {
                ids.push(t.id.clone());
                phase.push(p);
                alone.push(names_no_file(t));
            }
            phase_start.push(ids.len());
        }
        let n = ids.len();
        let gated: Vec<bool> = (0..m.phases.len())
            .map(|p| {
                p > 0 && m.phases[p].waits_for_previous() && phase_start[p] > phase_start[p - 1]
            })
            .collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut graph = DiGraph::<usize, EdgeKind>::with_capacity(n, n * 2);
        let nodes: Vec<NodeIndex> = (0..n).map(|i| graph.add_node(i)).collect();
        let tasks: Vec<_> = m.tasks().collect();

        add_stated_edges(&mut graph, &nodes, &tasks, &index);
        // A rank that grows along every edge the graph will have, so a search for a path from j
        // never needs to look at a task ranked below j. (No rank with a cycle: then the searches
        // are unbounded, and the plan is an error anyway.)
        let rank = rank_before_inference(&graph, &tasks);
        let mut seen = Seen::new(n + m.phases.len());
        // Is there a path j → … → i in the graph as built so far? (Searched backwards from i:
        // while the same-file edges are inferred, i has only the few edges of its earlier files.)
        let mut has_path = |graph: &DiGraph<usize, EdgeKind>, j: usize, i: usize| -> bool {
            seen.next_round();
            seen.visit(i);
            while let Some(u) = seen.stack.pop() {
                for p in graph.neighbors_directed(NodeIndex::new(u), petgraph::Incoming) {
                    let p = p.index();
                    if p == j {
                        return true;
                    }
                    if rank.as_ref().is_none_or(|r| r[p] > r[j]) {
                        seen.visit(p);
                    }
                }
            }
            false
        };
        let mut touched_by: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut shared: Vec<(usize, usize, String)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            for f in writes_of(t) {
                let earlier = touched_by.entry(f.as_str()).or_default();
                if t.depends_on.is_none() {
                    // Wait for every earlier task on this file that is not already ordered before
                    // this one. A task that inferred its own order on this file is reached by
                    // every task before it there, so once it reaches this one the rest do too.
                    // A file listed twice in one task must not make it wait for itself.
                    for &j in earlier.iter().rev().filter(|&&j| j != i) {
                        if !has_path(&graph, j, i) {
                            graph.add_edge(nodes[j], nodes[i], EdgeKind::SameFile(f.clone()));
                        }
                        if tasks[j].depends_on.is_none() {
                            break;
                        }
                    }
                } else {
                    shared.extend(
                        earlier
                            .iter()
                            .filter(|&&j| j != i)
                            .map(|&j| (j, i, f.clone())),
                    );
                }
                if earlier.last() != Some(&i) {
                    earlier.push(i);
                }
            }
        }

        let walk = Walk {
            graph: &graph,
            phase: &phase,
            phase_start: &phase_start,
            gated: &gated,
        };
        let Some(order) = walk.topo_order() else {
            return Err(cycle_problems(&walk, &ids));
        };
        // Depth and height over tasks and barriers; a barrier adds no step of its own.
        let mut depth = vec![0usize; n + gated.len()];
        for &u in &order {
            let d = if u < n { depth[u] + 1 } else { depth[u] };
            walk.succs(u, |v| depth[v] = depth[v].max(d));
        }
        let mut height = vec![0usize; n + gated.len()];
        let mut next_on_path: Vec<Option<usize>> = vec![None; n + gated.len()];
        for &u in order.iter().rev() {
            // The successor with the longest path, the earliest in manifest order among equals.
            let mut best: Option<usize> = None;
            walk.succs(u, |v| {
                let cand = if v < n { Some(v) } else { next_on_path[v] };
                if let Some(c) = cand {
                    if best.is_none_or(|b| {
                        (height[c], std::cmp::Reverse(c)) > (height[b], std::cmp::Reverse(b))
                    }) {
                        best = Some(c);
                    }
                }
            });
            height[u] = best.map_or(0, |b| height[b]) + usize::from(u < n);
            next_on_path[u] = best;
        }
        let gate_of = |i: usize| gated[phase[i]];
        let start = (0..n)
            .filter(|&i| {
                !gate_of(i)
                    && graph
                        .neighbors_directed(nodes[i], petgraph::Incoming)
                        .next()
                        .is_none()
            })
            .max_by_key(|&i| (height[i], std::cmp::Reverse(i)));
        let mut critical_path = Vec::new();
        let mut cur = start;
        while let Some(i) = cur {
            critical_path.push(i);
            cur = next_on_path[i];
        }

        // Shared files of tasks that wrote their own dependsOn: ordered one way or the other, or
        // a warning. Between phases the gates usually decide; the other pairs are answered all
        // at once by `reach_all` (only the shallower task can reach the deeper one).
        let mut lowest_gated = vec![0usize; gated.len()];
        for p in 0..gated.len() {
            lowest_gated[p] = if gated[p] { lowest_gated[p - 1] } else { p };
        }
        let gate_orders =
            |j: usize, i: usize| phase[j] < phase[i] && phase[j] >= lowest_gated[phase[i]];
        let queries: Vec<(usize, usize)> = shared
            .iter()
            .filter(|&&(j, i, _)| !gate_orders(j, i) && depth[j] != depth[i])
            .map(|&(j, i, _)| if depth[j] < depth[i] { (j, i) } else { (i, j) })
            .collect();
        let answers = reach_all(&walk, &order, &queries);
        let mut answer = answers.into_iter();
        let mut warnings = Vec::new();
        let mut gate_edges = Vec::new();
        for (j, i, f) in shared {
            let (forward, ordered) = if gate_orders(j, i) {
                (true, true)
            } else if depth[j] == depth[i] {
                (false, false)
            } else {
                let r = answer.next().expect("one answer per query");
                (r && depth[j] < depth[i], r)
            };
            // A pair the gates order across phases gets its Phase edge, unless the graph's own
            // edges already order it.
            if forward
                && phase[j] != phase[i]
                && (gate_orders(j, i) || !path_without_gates(&graph, &depth, j, i, &mut seen))
            {
                gate_edges.push((j, i));
            }
            if !ordered {
                warnings.push(format!(
                    "{} and {} both touch {f} and may run at the same time: {} lists its own \
                     dependsOn, so no order was inferred (add \"{}\" to its dependsOn to serialize them)",
                    ids[j], ids[i], ids[i], ids[j]
                ));
            }
        }
        for (j, i) in gate_edges {
            if graph.find_edge(nodes[j], nodes[i]).is_none() {
                graph.add_edge(nodes[j], nodes[i], EdgeKind::Phase);
            }
        }
        depth.truncate(n);
        height.truncate(n);
        Ok(Plan {
            warnings,
            ids,
            phase,
            phase_names: m.phases.iter().map(|p| p.name.clone()).collect(),
            graph,
            depth,
            height,
            critical_path,
            alone,
            index,
            phase_start,
            gated,
        })
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the manifest has no tasks.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Manifest-order index of a task id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// True when the task names no files (`files`, `reads`, `writes`) and so must run with no
    /// other worker beside it.
    pub fn runs_alone(&self, i: usize) -> bool {
        self.alone[i]
    }

    /// The task indices of phase `p` (contiguous: tasks are numbered in manifest order).
    pub fn phase_tasks(&self, p: usize) -> Range<usize> {
        self.phase_start[p]..self.phase_start[p + 1]
    }

    /// True when every task of phase `p` waits for every task of phase `p - 1` (the phase gate,
    /// one barrier per phase). False for phase 0, after an empty phase, and for a phase that says
    /// `"waitForPrevious": false`.
    pub fn gate(&self, p: usize) -> bool {
        self.gated[p]
    }

    /// Every task `i` waits for directly, with the reason: its own edges (`dependsOn`, same
    /// file), then, behind a phase gate, every task of the phase before that has no edge of its
    /// own to `i` (as `Phase`). The gate part is as long as that phase: to ask whether `i` may
    /// start, count unfinished tasks per phase rather than walking this for every task.
    pub fn preds(&self, i: usize) -> impl Iterator<Item = (usize, &EdgeKind)> + '_ {
        let p = self.phase[i];
        let gate = if self.gated[p] {
            self.phase_tasks(p - 1)
        } else {
            0..0
        };
        gate.rev()
            .filter(move |&j| !self.has_own_edge(j, i))
            .map(|j| (j, &PHASE))
            .chain(self.own_preds(i))
    }

    /// Task `i`'s own edges in (`dependsOn`, same file), newest first.
    pub fn own_preds(&self, i: usize) -> impl Iterator<Item = (usize, &EdgeKind)> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(i), petgraph::Incoming)
            .filter(|e| *e.weight() != EdgeKind::Phase)
            .map(move |e| (e.source().index(), e.weight()))
    }

    /// True when task `i` has an edge of its own (`dependsOn`, same file) from task `j`.
    pub fn has_own_edge(&self, j: usize, i: usize) -> bool {
        self.own_preds(i).any(|(k, _)| k == j)
    }

    /// Every task that waits directly for `i` (phase gates included).
    pub fn succs(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let next = self.phase[i] + 1;
        let gate = if self.gated.get(next) == Some(&true) {
            self.phase_tasks(next)
        } else {
            0..0
        };
        let own = self
            .graph
            .edges_directed(NodeIndex::new(i), petgraph::Outgoing)
            .filter(|e| *e.weight() != EdgeKind::Phase)
            .map(|e| e.target().index());
        own.chain(gate.filter(move |&k| !self.has_own_edge(i, k)))
    }

    /// Tasks grouped into batches that may run together: by depth, with tasks that run alone in
    /// batches of their own. Each batch lists task indices in manifest order.
    pub fn batches(&self) -> Vec<Vec<usize>> {
        let max_depth = self.depth.iter().copied().max().unwrap_or(0);
        let mut layers: Vec<Vec<usize>> = vec![Vec::new(); max_depth + 1];
        for i in 0..self.len() {
            layers[self.depth[i]].push(i);
        }
        let mut out = Vec::new();
        for layer in layers {
            let together: Vec<usize> = layer.iter().copied().filter(|&i| !self.alone[i]).collect();
            if !together.is_empty() {
                out.push(together);
            }
            for i in layer.into_iter().filter(|&i| self.alone[i]) {
                out.push(vec![i]);
            }
        }
        out
    }

    /// Human-readable plan: batches with what each task waits for, and the critical path.
    pub fn render(&self, project: &str, max_parallel: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Plan for {} — {} tasks in {} phases, at most {} workers at once",
            if project.is_empty() {
                "(unnamed)"
            } else {
                project
            },
            self.len(),
            self.phase_names.len(),
            max_parallel
        );
        for (b, batch) in self.batches().iter().enumerate() {
            let phases: Vec<usize> = {
                let mut p: Vec<usize> = batch.iter().map(|&i| self.phase[i]).collect();
                p.dedup();
                p
            };
            let phase_label: Vec<String> = phases.iter().map(|&p| self.phase_label(p)).collect();
            let members: Vec<String> = batch.iter().map(|&i| self.ids[i].clone()).collect();
            let _ = write!(
                s,
                "\nBatch {} [{}]: {}",
                b + 1,
                phase_label.join(", "),
                members.join(" ∥ ")
            );
            if batch.len() == 1 && self.alone[batch[0]] {
                s.push_str("   (no files listed: runs alone)");
            }
            if batch.len() > max_parallel {
                let _ = write!(s, "   ({} at a time)", max_parallel);
            }
            s.push('\n');
            for &i in batch {
                let waits = self.describe_waits(i);
                if !waits.is_empty() {
                    let _ = writeln!(s, "  {} after {}", self.ids[i], waits.join(", "));
                }
            }
        }
        for w in &self.warnings {
            let _ = write!(s, "\nwarning: {w}");
        }
        if !self.warnings.is_empty() {
            s.push('\n');
        }
        let path: Vec<&str> = self
            .critical_path
            .iter()
            .map(|&i| self.ids[i].as_str())
            .collect();
        let _ = writeln!(
            s,
            "\nCritical path ({} tasks): {}",
            path.len(),
            path.join(" → ")
        );
        s
    }

    fn phase_label(&self, p: usize) -> String {
        match self.phase_names.get(p) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("phase {}", p + 1),
        }
    }

    /// "t1 (dependsOn)", "t4 (same file kill_switch.js)", "phase 1" — what task `i` waits for.
    pub fn describe_waits(&self, i: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut preds: Vec<(usize, &EdgeKind)> = self.own_preds(i).collect();
        preds.sort_by_key(|(j, _)| *j);
        let p = self.phase[i];
        // The gate shows when some task of the phase before has no edge of its own to this one.
        let phase_gate = self.gated[p]
            && preds
                .iter()
                .filter(|(j, _)| self.phase[*j] + 1 == p)
                .count()
                < self.phase_tasks(p - 1).len();
        for (j, kind) in preds {
            match kind {
                EdgeKind::DependsOn => out.push(format!("{} (dependsOn)", self.ids[j])),
                EdgeKind::Context => out.push(format!("{} (context)", self.ids[j])),
                EdgeKind::SameFile(f) => out.push(format!("{} (same file {f})", self.ids[j])),
                EdgeKind::Phase => {}
            }
        }
        if phase_gate {
            out.insert(0, format!("all of {}", self.phase_label(p - 1)));
        }
        out
    }
}

/// The edges a task states itself: `dependsOn`, then `context` (a task in both is one
/// `DependsOn` edge). Unknown ids and self-references are skipped (validation reports them).
fn add_stated_edges(
    graph: &mut DiGraph<usize, EdgeKind>,
    nodes: &[NodeIndex],
    tasks: &[&Task],
    index: &HashMap<String, usize>,
) {
    for (i, t) in tasks.iter().enumerate() {
        for dep in t.deps() {
            if let Some(&j) = index.get(dep) {
                if j != i {
                    graph.update_edge(nodes[j], nodes[i], EdgeKind::DependsOn);
                }
            }
        }
        for c in t.context.iter().flatten() {
            if let Some(&j) = index.get(c) {
                if j != i && graph.find_edge(nodes[j], nodes[i]).is_none() {
                    graph.add_edge(nodes[j], nodes[i], EdgeKind::Context);
                }
            }
        }
    }
}

/// A topological rank of the tasks valid for every edge `Plan::build` may add: the `dependsOn`
/// edges already in `graph`, plus, for each task without its own `dependsOn`, an edge from every
/// earlier task on each of its files (the same-file edges it infers are a subset of those, and
/// the ones it leaves out are implied by paths, so the order is the same). Per file, a chain of
/// prefix nodes ("every task so far on this file") keeps that linear. Ties go to manifest order,
/// so ranks stay close to indices. `None` when there is a cycle.
fn rank_before_inference(graph: &DiGraph<usize, EdgeKind>, tasks: &[&Task]) -> Option<Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = tasks.len();
    // Nodes: tasks 0..n, then one prefix node per (file, task on it). Edges as adjacency lists.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut key: Vec<(usize, u8)> = (0..n).map(|i| (i, 0)).collect();
    let mut last_prefix: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let files = writes_of(t);
        for (k, f) in files.iter().enumerate() {
            if files[..k].contains(f) {
                continue; // a file listed twice: the task does not wait for itself
            }
            let before = last_prefix.get(f.as_str()).copied();
            if let Some(q) = before {
                if t.depends_on.is_none() {
                    succ[q].push(i);
                }
            }
            // The new prefix: every task on f up to and including this one.
            let q = succ.len();
            succ.push(Vec::new());
            key.push((i, 1));
            succ[i].push(q);
            if let Some(prev) = before {
                succ[prev].push(q);
            }
            last_prefix.insert(f.as_str(), q);
        }
    }
    for e in graph.edge_references() {
        succ[e.source().index()].push(e.target().index());
    }
    let mut indeg = vec![0usize; succ.len()];
    for s in &succ {
        for &v in s {
            indeg[v] += 1;
        }
    }
    let mut heap: BinaryHeap<Reverse<((usize, u8), usize)>> = (0..succ.len())
        .filter(|&u| indeg[u] == 0)
        .map(|u| Reverse((key[u], u)))
        .collect();
    let mut rank = vec![0usize; n];
    let mut next = 0;
    while let Some(Reverse((_, u))) = heap.pop() {
        if u < n {
            rank[u] = next;
        }
        next += 1;
        for &v in &succ[u] {
            indeg[v] -= 1;
            if indeg[v] == 0 {
                heap.push(Reverse((key[v], v)));
            }
        }
    }
    (next == succ.len()).then_some(rank)
}

/// For each query `(a, b)`: is there a path from `a` to `b` through tasks and barriers? One
/// pass over the DAG (reverse topological `order`) per 4 096 distinct targets, each node
/// carrying the set of targets it reaches as bits.
fn reach_all(walk: &Walk, order: &[usize], queries: &[(usize, usize)]) -> Vec<bool> {
    let total = walk.n() + walk.gated.len();
    let mut targets: Vec<usize> = queries.iter().map(|&(_, b)| b).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut answers = vec![false; queries.len()];
    let mut slot = vec![usize::MAX; total];
    const CHUNK: usize = 4096;
    for chunk in targets.chunks(CHUNK) {
        let words = chunk.len().div_ceil(64);
        for (k, &t) in chunk.iter().enumerate() {
            slot[t] = k;
        }
        let mut bits = vec![0u64; total * words];
        let mut acc = vec![0u64; words];
        for &u in order.iter().rev() {
            acc.iter_mut().for_each(|w| *w = 0);
            walk.succs(u, |v| {
                let row = &bits[v * words..(v + 1) * words];
                for (a, r) in acc.iter_mut().zip(row) {
                    *a |= r;
                }
                if slot[v] != usize::MAX {
                    acc[slot[v] / 64] |= 1 << (slot[v] % 64);
                }
            });
            bits[u * words..(u + 1) * words].copy_from_slice(&acc);
        }
        for (q, &(a, b)) in queries.iter().enumerate() {
            if slot[b] != usize::MAX {
                answers[q] = bits[a * words + slot[b] / 64] & (1 << (slot[b] % 64)) != 0;
            }
        }
        for &t in chunk {
            slot[t] = usize::MAX;
        }
    }
    answers
}

/// Is there a path from task `a` to task `b` over the graph's own edges (no phase gate)? Depth
/// grows along every edge, so the search stays above `b`'s depth.
fn path_without_gates(
    graph: &DiGraph<usize, EdgeKind>,
    depth: &[usize],
    a: usize,
    b: usize,
    seen: &mut Seen,
) -> bool {
    seen.next_round();
    seen.visit(a);
    while let Some(u) = seen.stack.pop() {
        for v in graph.neighbors(NodeIndex::new(u)) {
            let v = v.index();
            if v == b {
                return true;
            }
            if depth[v] < depth[b] {
                seen.visit(v);
            }
        }
    }
    false
}

/// One problem per cycle: its path, each step with its reason. `walk` has a cycle.
fn cycle_problems(walk: &Walk, ids: &[String]) -> Vec<Problem> {
    // The strongly connected components of the graph with its barrier nodes.
    let n = walk.n();
    let mut g = DiGraph::<usize, ()>::with_capacity(n + walk.gated.len(), 0);
    for u in 0..n + walk.gated.len() {
        g.add_node(u);
    }
    for u in 0..n + walk.gated.len() {
        walk.succs(u, |v| {
            g.add_edge(NodeIndex::new(u), NodeIndex::new(v), ());
        });
    }
    let mut problems = Vec::new();
    for scc in tarjan_scc(&g) {
        let mut members: Vec<usize> = scc.iter().map(|x| x.index()).filter(|&u| u < n).collect();
        if members.len() < 2 {
            continue;
        }
        members.sort_unstable();
        let inside = |u: usize| members.binary_search(&u).is_ok();
        // The step from `cur` to the earliest task inside the component, with its reason: an own
        // edge, else the phase gate.
        let step = |cur: usize| -> (usize, EdgeKind) {
            let own = walk
                .graph
                .edges(NodeIndex::new(cur))
                .filter(|e| inside(e.target().index()))
                .min_by_key(|e| e.target().index())
                .map(|e| (e.target().index(), e.weight().clone()));
            let next = walk.phase[cur] + 1;
            let gate = (walk.gated.get(next) == Some(&true))
                .then(|| members.iter().copied().find(|&k| walk.phase[k] == next))
                .flatten();
            match (own, gate) {
                (Some((k, kind)), Some(g)) if k <= g => (k, kind),
                (_, Some(g)) => (g, EdgeKind::Phase),
                (Some(o), None) => o,
                (None, None) => unreachable!("every task of a cycle has a step inside it"),
            }
        };
        let start = members[0];
        // Walk inside the component until a task repeats; the repeated stretch is a cycle.
        let mut path = vec![start];
        let mut steps: Vec<EdgeKind> = Vec::new();
        let mut cur = start;
        loop {
            let (next, kind) = step(cur);
            steps.push(kind);
            cur = next;
            if let Some(pos) = path.iter().position(|&u| u == cur) {
                path.drain(..pos);
                steps.drain(..pos);
                path.push(cur);
                break;
            }
            path.push(cur);
        }
        let mut text = ids[path[0]].clone();
        for (k, step) in steps.iter().enumerate() {
            let _ = write!(text, " → {} ({})", ids[path[k + 1]], why(step));
        }
        problems.push(cycle_problem(&ids[path[0]], text));
    }
    problems
}

fn why(step: &EdgeKind) -> String {
    match step {
        EdgeKind::DependsOn => "dependsOn".to_string(),
        EdgeKind::Context => "context".to_string(),
        EdgeKind::SameFile(f) => format!("same file {f}, manifest order"),
        EdgeKind::Phase => "later phase waits for earlier phase".to_string(),
    }
}

fn cycle_problem(first: &str, text: String) -> Problem {
    Problem {
        location: Location::Task(first.to_string()),
        message: format!("dependency cycle: {text}"),
        fix: "remove one of these dependencies, or reorder the tasks so a shared file or phase \
              does not point backwards"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::manifest::Manifest;

    fn seed() -> Manifest {
        Manifest::parse(include_str!("../../tests/fixtures/seed-manifest.json")).unwrap()
    }

    fn ids(plan: &Plan, batch: &[usize]) -> Vec<String> {
        batch.iter().map(|&i| plan.ids[i].clone()).collect()
    }

    #[test]
    fn seed_example_batches_match_the_seed_text() {
        let plan = Plan::build(&seed()).unwrap();
        let batches: Vec<Vec<String>> = plan.batches().iter().map(|b| ids(&plan, b)).collect();
        assert_eq!(
            batches,
            vec![
                vec!["t1", "t3"],
                vec!["t2"],
                vec!["t4", "t6", "t7"],
                vec!["t5", "t8"]
            ]
        );
        let t5 = plan.index_of("t5").unwrap();
        assert!(plan.describe_waits(t5).iter().any(|w| w.starts_with("t4 ")));
        let t8 = plan.index_of("t8").unwrap();
        assert!(plan.describe_waits(t8).iter().any(|w| w.starts_with("t7 ")));
        assert_eq!(plan.describe_waits(t8)[0], "all of Phase 1: Critical");
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
        assert!(plan.warnings[0].starts_with("t4 and t7 both touch container_executor.js"));
        assert!(plan.warnings[1].starts_with("t4 and t8 both touch container_executor.js"));
    }

    #[test]
    fn critical_path_is_longest_and_first_in_manifest_order() {
        let plan = Plan::build(&seed()).unwrap();
        assert_eq!(
            ids(&plan, &plan.critical_path),
            vec!["t1", "t2", "t4", "t5"]
        );
        assert_eq!(plan.height[plan.index_of("t1").unwrap()], 4);
        assert_eq!(plan.height[plan.index_of("t3").unwrap()], 3);
    }

    #[test]
    fn same_file_serializes_in_manifest_order() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[
            {"id":"a","files":["x"]},{"id":"b","files":["y"]},{"id":"c","files":["x","y"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        assert_eq!(plan.depth, vec![0, 0, 1]);
        let waits = plan.describe_waits(2);
        assert_eq!(waits, vec!["a (same file x)", "b (same file y)"]);
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[
            {"id":"a","files":["f"],"dependsOn":["c"]},{"id":"b","files":["g"],"dependsOn":["a"]},
            {"id":"c","files":["h"],"dependsOn":["b"]}]}]}"#,
        )
        .unwrap();
        let problems = Plan::build(&m).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            "dependency cycle: a → b (dependsOn) → c (dependsOn) → a (dependsOn)"
        );
    }

    #[test]
    fn a_dependency_pointing_at_a_later_phase_is_a_cycle() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","files":["f"],"dependsOn":["b"]}]},
                         {"tasks":[{"id":"b","files":["g"]}]}]}"#,
        )
        .unwrap();
        let problems = Plan::build(&m).unwrap_err();
        assert!(
            problems[0].message.contains("later phase waits"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_phase_may_opt_out_of_waiting() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","files":["f"]}]},
                {"waitForPrevious":false,"tasks":[{"id":"b","files":["g"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        assert_eq!(plan.depth, vec![0, 0]);
    }

    #[test]
    fn readers_run_beside_each_other_and_the_writer_and_writers_in_turn() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[
            {"id":"w1","writes":["src/a.rs"],"reads":["src/b.rs"]},
            {"id":"r1","role":"reviewer","reads":["src/a.rs"]},
            {"id":"r2","role":"scout","reads":["src/a.rs","src/b.rs"],"writes":[]},
            {"id":"w2","files":["src/a.rs"]},
            {"id":"w3","writes":["src/a.rs"],"files":["src/c.rs"]},
            {"id":"w4","files":["src/b.rs"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        let batches: Vec<Vec<String>> = plan.batches().iter().map(|b| ids(&plan, b)).collect();
        // Readers of src/a.rs beside its first writer (and a writer of src/b.rs, which w1 only
        // reads); the writers of src/a.rs one after another in manifest order.
        assert_eq!(
            batches,
            vec![vec!["w1", "r1", "r2", "w4"], vec!["w2"], vec!["w3"]]
        );
        assert_eq!(plan.describe_waits(3), vec!["w1 (same file src/a.rs)"]);
        assert_eq!(plan.describe_waits(4), vec!["w2 (same file src/a.rs)"]);
        let tasks: Vec<&Task> = m.tasks().collect();
        assert!(read_only(tasks[1]) && read_only(tasks[2]));
        assert!(!read_only(tasks[0]) && !read_only(tasks[3]));
        // `writes` given: `files` is not written (w3 and w4 do not meet on src/c.rs or src/b.rs).
        assert_eq!(writes_of(tasks[4]), ["src/a.rs"]);
        assert!((0..6).all(|i| !plan.runs_alone(i)));
    }

    #[test]
    fn a_task_with_reads_and_writes_empty_runs_alone() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","files":["f"]},{"id":"b","reads":[]},{"id":"c","reads":["f"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        let batches: Vec<Vec<String>> = plan.batches().iter().map(|b| ids(&plan, b)).collect();
        assert_eq!(batches, vec![vec!["a", "c"], vec!["b"]]);
    }

    #[test]
    fn context_waits_and_a_context_cycle_is_reported() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","reads":["f"]},{"id":"b","reads":["f"],"context":["a"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        assert_eq!(plan.describe_waits(1), vec!["a (context)"]);
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","reads":["f"],"context":["b"]},{"id":"b","reads":["f"],"context":["a"]}]}]}"#,
        )
        .unwrap();
        let problems = Plan::build(&m).unwrap_err();
        assert_eq!(
            problems[0].message,
            "dependency cycle: a → b (context) → a (context)"
        );
    }

    #[test]
    fn tasks_without_files_get_batches_of_their_own() {
        let m = Manifest::parse(
            r#"{"phases":[{"tasks":[{"id":"a","files":["f"]},{"id":"b"},{"id":"c","files":["g"]}]}]}"#,
        )
        .unwrap();
        let plan = Plan::build(&m).unwrap();
        let batches: Vec<Vec<String>> = plan.batches().iter().map(|b| ids(&plan, b)).collect();
        assert_eq!(batches, vec![vec!["a", "c"], vec!["b"]]);
        assert!(plan.render("p", 4).contains("runs alone"));
    }
}

#[cfg(test)]
mod gen {
    //! The one generator of random manifests for the planner's property tests.
    use crate::core::manifest::{Manifest, Phase, Task};
    use proptest::prelude::*;

    /// Random manifests of 1 to `max_tasks - 1` tasks in 4 phases (some empty, phase 2 unnamed,
    /// phases 1 and 3 sometimes not waiting for the previous one). Files come from a small set,
    /// as `files`, as `writes` with `reads`, or as `reads` only; `dependsOn` (sometimes written
    /// as `[]`) and `context` name earlier tasks, and, when `forward`, now and then a later one
    /// (which makes cycles).
    pub(super) fn manifests(max_tasks: usize, forward: bool) -> impl Strategy<Value = Manifest> {
        (1usize..max_tasks).prop_flat_map(move |n| {
            (
                proptest::collection::vec(
                    (
                        proptest::collection::vec((0usize..n, 0u8..8), 0..3),
                        proptest::collection::vec(0u8..6, 0..3),
                        any::<bool>(),
                        0usize..4,
                        (0u8..4, proptest::collection::vec(0u8..6, 0..3)),
                        proptest::option::of(0usize..n),
                    ),
                    n,
                ),
                proptest::collection::vec(any::<bool>(), 4),
            )
                .prop_map(move |(specs, waits)| {
                    let mut phases: Vec<Phase> = (0..4)
                        .map(|p| {
                            let mut ph = Phase {
                                name: if p == 2 {
                                    String::new()
                                } else {
                                    format!("p{p}")
                                },
                                tasks: vec![],
                                extra: Default::default(),
                            };
                            if !waits[p] && p % 2 == 1 {
                                ph.extra.insert("waitForPrevious".into(), false.into());
                            }
                            ph
                        })
                        .collect();
                    let mut phase_of = 0;
                    let allowed =
                        |d: usize, i: usize, fwd: u8| d < i || (forward && d != i && fwd == 0);
                    for (i, (deps, files, explicit, step, (mode, reads), context)) in
                        specs.into_iter().enumerate()
                    {
                        phase_of = (phase_of + usize::from(step == 3)).min(3);
                        let mut t = Task::new(&format!("t{i}"), "x");
                        let files: Vec<String> = files.iter().map(|f| format!("f{f}")).collect();
                        let reads: Vec<String> = reads.iter().map(|f| format!("f{f}")).collect();
                        match mode {
                            0 | 1 => t.files = files,
                            2 => {
                                t.writes = Some(files);
                                t.reads = Some(reads);
                            }
                            _ => t.reads = Some(reads),
                        }
                        let deps: Vec<String> = deps
                            .into_iter()
                            .filter(|&(d, fwd)| allowed(d, i, fwd))
                            .map(|(d, _)| format!("t{d}"))
                            .collect();
                        t.depends_on = (explicit || !deps.is_empty()).then_some(deps);
                        t.context = context
                            .filter(|&c| allowed(c, i, (i % 8) as u8))
                            .map(|c| vec![format!("t{c}")]);
                        phases[phase_of].tasks.push(t);
                    }
                    Manifest {
                        project: "p".into(),
                        repo: None,
                        workdir: None,
                        created: None,
                        model: None,
                        model_tier: None,
                        phases,
                        extra: Default::default(),
                    }
                })
        })
    }
}

#[cfg(test)]
mod props {
    use super::gen::manifests;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_edge_goes_to_a_deeper_layer_and_batches_cover_every_task_once(m in manifests(40, false)) {
            let plan = Plan::build(&m).unwrap();
            for e in plan.graph.edge_indices() {
                let (a, b) = plan.graph.edge_endpoints(e).unwrap();
                prop_assert!(plan.depth[plan.graph[a]] < plan.depth[plan.graph[b]]);
                prop_assert!(plan.height[plan.graph[a]] > plan.height[plan.graph[b]]);
            }
            let mut seen: Vec<usize> = plan.batches().into_iter().flatten().collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..plan.len()).collect::<Vec<_>>());
            prop_assert_eq!(plan.critical_path.len(), plan.height.iter().copied().max().unwrap_or(0));
            let tasks: Vec<&Task> = m.tasks().collect();
            // A same-file edge is between two writers of that file: readers order nothing.
            for e in plan.graph.edge_references() {
                if let EdgeKind::SameFile(f) = e.weight() {
                    for end in [e.source().index(), e.target().index()] {
                        prop_assert!(writes_of(tasks[end]).contains(f), "t{} does not write {}", end, f);
                    }
                }
            }
            // Tasks that write a common file are ordered one way or the other, or warned about.
            for i in 0..tasks.len() {
                for j in 0..i {
                    if writes_of(tasks[i]).iter().any(|f| writes_of(tasks[j]).contains(f)) {
                        let (a, b) = (NodeIndex::new(j), NodeIndex::new(i));
                        let ordered = petgraph::algo::has_path_connecting(&plan.graph, a, b, None);
                        let warned = plan.warnings.iter().any(|w| w.starts_with(&format!("t{j} and t{i} ")));
                        prop_assert!(ordered || warned, "t{} and t{} write a common file", j, i);
                    }
                }
            }
            // A task runs alone exactly when it names no file at all.
            for (i, t) in tasks.iter().enumerate() {
                let none = t.files.is_empty()
                    && t.reads.as_ref().is_none_or(|r| r.is_empty())
                    && t.writes.as_ref().is_none_or(|w| w.is_empty());
                prop_assert_eq!(plan.runs_alone(i), none);
            }
        }
    }
}

#[cfg(test)]
mod against_reference {
    //! The planner with barrier phase gates and bounded searches against the old planner (n×m
    //! phase edges, a full path search per shared file): the same graph apart from phase edges,
    //! the same predecessors, depths, heights, critical path, warnings, text and cycles.
    use super::*;
    use proptest::prelude::*;

    use super::gen::manifests;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn the_fast_planner_agrees_with_the_reference(m in manifests(30, true)) {
            match (Plan::build(&m), reference::build(&m)) {
                (Ok(plan), Ok(old)) => {
                    let own = |g: &DiGraph<usize, EdgeKind>| {
                        let mut v: Vec<(usize, usize, EdgeKind)> = g
                            .edge_references()
                            .filter(|e| *e.weight() != EdgeKind::Phase)
                            .map(|e| (e.source().index(), e.target().index(), e.weight().clone()))
                            .collect();
                        v.sort_by_key(|a| (a.0, a.1));
                        v
                    };
                    prop_assert_eq!(own(&plan.graph), own(&old.graph));
                    for i in 0..plan.len() {
                        let new: Vec<(usize, EdgeKind)> =
                            plan.preds(i).map(|(j, k)| (j, k.clone())).collect();
                        let was: Vec<(usize, EdgeKind)> = old
                            .graph
                            .edges_directed(NodeIndex::new(i), petgraph::Incoming)
                            .map(|e| (e.source().index(), e.weight().clone()))
                            .collect();
                        prop_assert_eq!(new, was, "preds of t{}", i);
                        let mut new: Vec<usize> = plan.succs(i).collect();
                        let mut was: Vec<usize> =
                            old.graph.neighbors(NodeIndex::new(i)).map(|s| s.index()).collect();
                        new.sort_unstable();
                        was.sort_unstable();
                        prop_assert_eq!(new, was, "succs of t{}", i);
                    }
                    prop_assert_eq!(&plan.depth, &old.depth);
                    prop_assert_eq!(&plan.height, &old.height);
                    prop_assert_eq!(&plan.critical_path, &old.critical_path);
                    prop_assert_eq!(&plan.warnings, &old.warnings);
                    let mut old_plan = plan.clone();
                    old_plan.graph = old.graph.clone();
                    old_plan.gated = vec![false; plan.gated.len()];
                    // The old text, from the old graph (its phase edges make the gate).
                    let was: Vec<Vec<String>> =
                        (0..plan.len()).map(|i| reference::describe_waits(&old_plan, i)).collect();
                    let new: Vec<Vec<String>> = (0..plan.len()).map(|i| plan.describe_waits(i)).collect();
                    prop_assert_eq!(new, was);
                }
                (Err(mut new), Err(mut old)) => {
                    new.sort_by(|a, b| a.message.cmp(&b.message));
                    old.sort_by(|a, b| a.message.cmp(&b.message));
                    let text = |v: &[Problem]| v.iter().map(|p| p.message.clone()).collect::<Vec<_>>();
                    prop_assert_eq!(text(&new), text(&old));
                }
                (new, old) => prop_assert!(false, "new {:?} vs old {:?}", new.is_ok(), old.is_ok()),
            }
        }
    }
}
