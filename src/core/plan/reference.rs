//! The planner as it was before phase gates became barriers: n×m phase edges and a
//! `has_path_connecting` search per shared file. Kept for the tests only, as the reference the
//! fast planner must agree with.

use super::EdgeKind;
use crate::core::manifest::{Location, Manifest, Problem};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write as _;

/// What the old planner computed.
pub(crate) struct Old {
    pub graph: DiGraph<usize, EdgeKind>,
    pub depth: Vec<usize>,
    pub height: Vec<usize>,
    pub critical_path: Vec<usize>,
    pub warnings: Vec<String>,
}

pub(crate) fn build(m: &Manifest) -> Result<Old, Vec<Problem>> {
    let mut ids = Vec::new();
    let mut phase = Vec::new();
    for (p, ph) in m.phases.iter().enumerate() {
        for t in &ph.tasks {
            ids.push(t.id.clone());
            phase.push(p);
        }
    }
    let index: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    let mut graph = DiGraph::<usize, EdgeKind>::with_capacity(ids.len(), ids.len() * 2);
    let nodes: Vec<NodeIndex> = (0..ids.len()).map(|i| graph.add_node(i)).collect();
    let tasks: Vec<_> = m.tasks().collect();

    super::add_stated_edges(&mut graph, &nodes, &tasks, &index);
    let mut touched_by: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut shared: Vec<(usize, usize, String)> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        for f in super::writes_of(t) {
            let earlier = touched_by.entry(f.as_str()).or_default();
            if t.depends_on.is_none() {
                // Wait for every earlier task on this file that is not already ordered before
                // this one (usually just the last: the others reach it through the chain).
                // A file listed twice in one task must not make it wait for itself.
                for &j in earlier.iter().rev().filter(|&&j| j != i) {
                    if !petgraph::algo::has_path_connecting(&graph, nodes[j], nodes[i], None) {
                        graph.add_edge(nodes[j], nodes[i], EdgeKind::SameFile(f.clone()));
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
    for p in 1..m.phases.len() {
        if !m.phases[p].waits_for_previous() {
            continue;
        }
        for i in (0..ids.len()).filter(|&i| phase[i] == p) {
            for j in (0..ids.len()).filter(|&j| phase[j] == p - 1) {
                if graph.find_edge(nodes[j], nodes[i]).is_none() {
                    graph.add_edge(nodes[j], nodes[i], EdgeKind::Phase);
                }
            }
        }
    }

    let order = match toposort(&graph, None) {
        Ok(order) => order,
        Err(_) => return Err(cycle_problems_full(&graph, &ids)),
    };
    let mut depth = vec![0usize; ids.len()];
    for &n in &order {
        let i = graph[n];
        for e in graph.edges(n) {
            let k = graph[e.target()];
            depth[k] = depth[k].max(depth[i] + 1);
        }
    }
    let mut height = vec![1usize; ids.len()];
    let mut next_on_path: Vec<Option<usize>> = vec![None; ids.len()];
    for &n in order.iter().rev() {
        let i = graph[n];
        // Prefer the earliest successor in manifest order among equals, for stable output.
        let mut succs: Vec<usize> = graph.neighbors(n).map(|s| graph[s]).collect();
        succs.sort_unstable();
        for k in succs {
            if height[k] + 1 > height[i] {
                height[i] = height[k] + 1;
                next_on_path[i] = Some(k);
            }
        }
    }
    let mut critical_path = Vec::new();
    let start = (0..ids.len())
        .filter(|&i| {
            graph
                .neighbors_directed(nodes[i], petgraph::Incoming)
                .count()
                == 0
        })
        .max_by_key(|&i| (height[i], std::cmp::Reverse(i)));
    let mut cur = start;
    while let Some(i) = cur {
        critical_path.push(i);
        cur = next_on_path[i];
    }
    let warnings = shared
        .into_iter()
        .filter(|(j, i, _)| {
            let ordered = |a: usize, b: usize| {
                petgraph::algo::has_path_connecting(&graph, nodes[a], nodes[b], None)
            };
            !ordered(*j, *i) && !ordered(*i, *j)
        })
        .map(|(j, i, f)| {
            format!(
                "{} and {} both touch {f} and may run at the same time: {} lists its own \
                 dependsOn, so no order was inferred (add \"{}\" to its dependsOn to serialize them)",
                ids[j], ids[i], ids[i], ids[j]
            )
        })
        .collect();
    Ok(Old {
        graph,
        depth,
        height,
        critical_path,
        warnings,
    })
}

/// One problem per cycle: its path, each step with its reason.
fn cycle_problems_full(graph: &DiGraph<usize, EdgeKind>, ids: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for scc in tarjan_scc(graph) {
        if scc.len() < 2 {
            continue;
        }
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| graph[**n]).unwrap();
        // Walk inside the component until a node repeats; the repeated stretch is a cycle.
        let mut path = vec![start];
        let mut steps: Vec<&EdgeKind> = Vec::new();
        let mut cur = start;
        loop {
            let e = graph
                .edges(cur)
                .filter(|e| members.contains(&e.target()))
                .min_by_key(|e| graph[e.target()])
                .expect("every node of a strongly connected component has an edge inside it");
            steps.push(e.weight());
            cur = e.target();
            if let Some(pos) = path.iter().position(|&n| n == cur) {
                path.drain(..pos);
                steps.drain(..pos);
                path.push(cur);
                break;
            }
            path.push(cur);
        }
        let mut text = ids[graph[path[0]]].clone();
        for (k, step) in steps.iter().enumerate() {
            let why = match step {
                EdgeKind::DependsOn => "dependsOn".to_string(),
                EdgeKind::Context => "context".to_string(),
                EdgeKind::SameFile(f) => format!("same file {f}, manifest order"),
                EdgeKind::Phase => "later phase waits for earlier phase".to_string(),
            };
            let _ = write!(text, " → {} ({why})", ids[graph[path[k + 1]]]);
        }
        problems.push(Problem {
            location: Location::Task(ids[graph[path[0]]].clone()),
            message: format!("dependency cycle: {text}"),
            fix:
                "remove one of these dependencies, or reorder the tasks so a shared file or phase \
                  does not point backwards"
                    .into(),
        });
    }
    problems
}

/// The old `describe_waits`, over a plan whose graph holds the old n×m phase edges.
pub(crate) fn describe_waits(plan: &super::Plan, i: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut phase_gate = false;
    let mut preds: Vec<(usize, &EdgeKind)> = plan
        .graph
        .edges_directed(NodeIndex::new(i), petgraph::Incoming)
        .map(|e| (e.source().index(), e.weight()))
        .collect();
    preds.sort_by_key(|(j, _)| *j);
    for (j, kind) in preds {
        match kind {
            EdgeKind::DependsOn => out.push(format!("{} (dependsOn)", plan.ids[j])),
            EdgeKind::Context => out.push(format!("{} (context)", plan.ids[j])),
            EdgeKind::SameFile(f) => out.push(format!("{} (same file {f})", plan.ids[j])),
            EdgeKind::Phase => phase_gate = true,
        }
    }
    if phase_gate && plan.phase[i] > 0 {
        let label = match plan.phase_names.get(plan.phase[i] - 1) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("phase {}", plan.phase[i]),
        };
        out.insert(0, format!("all of {label}"));
    }
    out
}
