//! The dependency DAG: explicit `dependsOn`, same-file serialization, phase gates, cycle
//! reporting, layering into batches and the critical path.
//!
//! Rules (from DESIGN.md "Planning rules", after the seed orchestrator): `dependsOn` waits; tasks
//! sharing a file run one after another in manifest order; a task that writes its own `dependsOn`
//! key (even `[]`) is trusted as planned by its author, as the seed's planner does, and gets no
//! inferred same-file edge (the seed example runs t4 ∥ t7 although both touch
//! `container_executor.js`) — [`Plan::warnings`] names every such pair so nothing is silent; phase N+1 waits for phase N unless the
//! phase says `"waitForPrevious": false`; a task with no `files` runs alone (enforced by the
//! scheduler, see [`Plan::runs_alone`]); among ready tasks the one with the longest remaining
//! critical path goes first.

use crate::manifest::{Location, Manifest, Problem};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Why one task waits for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeKind {
    /// The later task lists the earlier one in `dependsOn`.
    DependsOn,
    /// Both touch this file; the later one in manifest order waits.
    SameFile(String),
    /// The later task's phase waits for the earlier task's phase.
    Phase,
}

/// The planned DAG over a manifest's tasks. Task indices are manifest order (0-based).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Task ids in manifest order.
    pub ids: Vec<String>,
    /// Phase index of each task.
    pub phase: Vec<usize>,
    /// Phase names, in order.
    pub phase_names: Vec<String>,
    /// Every edge, earlier → later, including phase gates.
    pub graph: DiGraph<usize, EdgeKind>,
    /// Layer of each task: 0 for tasks that wait for nothing, else 1 + the deepest predecessor.
    pub depth: Vec<usize>,
    /// Length, in tasks, of the longest path from each task to the end (itself included).
    pub height: Vec<usize>,
    /// The longest path through the DAG, as task indices.
    pub critical_path: Vec<usize>,
    /// Tasks that share a file but are not ordered (their `dependsOn` was written by hand).
    pub warnings: Vec<String>,
    alone: Vec<bool>,
    index: HashMap<String, usize>,
}

impl Plan {
    /// Builds the DAG. Errors: every dependency cycle, with its path and the reason for each step
    /// (as [`Problem`]s naming the first task of the cycle). The manifest should already have
    /// passed [`Manifest::validate`]; unknown dependencies are skipped here.
    pub fn build(m: &Manifest) -> Result<Plan, Vec<Problem>> {
        let mut ids = Vec::new();
        let mut phase = Vec::new();
        let mut alone = Vec::new();
        for (p, ph) in m.phases.iter().enumerate() {
            for t in &ph.tasks {
                ids.push(t.id.clone());
                phase.push(p);
                alone.push(t.files.is_empty());
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

        for (i, t) in tasks.iter().enumerate() {
            for dep in t.deps() {
                if let Some(&j) = index.get(dep) {
                    if j != i {
                        graph.update_edge(nodes[j], nodes[i], EdgeKind::DependsOn);
                    }
                }
            }
        }
        let mut touched_by: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut shared: Vec<(usize, usize, String)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            for f in &t.files {
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
            Err(_) => return Err(cycle_problems(&graph, &ids)),
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

    /// True when the task lists no files and so must run with no other worker beside it.
    pub fn runs_alone(&self, i: usize) -> bool {
        self.alone[i]
    }

    /// Every task `i` waits for (direct predecessors, phase gates included), with the reason.
    pub fn preds(&self, i: usize) -> impl Iterator<Item = (usize, &EdgeKind)> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(i), petgraph::Incoming)
            .map(move |e| (self.graph[e.source()], e.weight()))
    }

    /// Every task that waits directly for `i`.
    pub fn succs(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Outgoing)
            .map(move |n| self.graph[n])
    }

    /// Tasks grouped into batches that may run together: by depth, with tasks that run alone in
    /// batches of their own. Each batch lists task indices in manifest order.
    pub fn batches(&self) -> Vec<Vec<usize>> {
        let max_depth = self.depth.iter().copied().max().unwrap_or(0);
        let mut out = Vec::new();
        for d in 0..=max_depth {
            let layer: Vec<usize> = (0..self.len()).filter(|&i| self.depth[i] == d).collect();
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
        let mut phase_gate = false;
        let mut preds: Vec<(usize, &EdgeKind)> = self.preds(i).collect();
        preds.sort_by_key(|(j, _)| *j);
        for (j, kind) in preds {
            match kind {
                EdgeKind::DependsOn => out.push(format!("{} (dependsOn)", self.ids[j])),
                EdgeKind::SameFile(f) => out.push(format!("{} (same file {f})", self.ids[j])),
                EdgeKind::Phase => phase_gate = true,
            }
        }
        if phase_gate && self.phase[i] > 0 {
            out.insert(0, format!("all of {}", self.phase_label(self.phase[i] - 1)));
        }
        out
    }
}

/// One problem per cycle: its path, each step with its reason.
fn cycle_problems(graph: &DiGraph<usize, EdgeKind>, ids: &[String]) -> Vec<Problem> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn seed() -> Manifest {
        Manifest::parse(include_str!("../tests/fixtures/seed-manifest.json")).unwrap()
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
mod props {
    use super::*;
    use crate::manifest::{Phase, Task};
    use proptest::prelude::*;

    /// Random manifests: tasks depend only on earlier ones (so there is no cycle), touch files
    /// from a small set, and sit in 1–3 phases.
    fn manifests() -> impl Strategy<Value = Manifest> {
        (1usize..40).prop_flat_map(|n| {
            (proptest::collection::vec(
                (
                    proptest::collection::vec(0usize..n, 0..3),
                    proptest::collection::vec(0u8..6, 0..3),
                    any::<bool>(),
                    0usize..3,
                ),
                n,
            ),)
                .prop_map(move |(specs,)| {
                    let mut phases: Vec<Phase> = (0..3)
                        .map(|p| Phase {
                            name: format!("p{p}"),
                            tasks: vec![],
                            extra: Default::default(),
                        })
                        .collect();
                    let mut phase_of = 0;
                    for (i, (deps, files, explicit, phase_step)) in specs.into_iter().enumerate() {
                        phase_of = (phase_of + usize::from(phase_step == 2)).min(2);
                        let mut t = Task::new(&format!("t{i}"), "x");
                        t.files = files.iter().map(|f| format!("f{f}")).collect();
                        let deps: Vec<String> = deps
                            .into_iter()
                            .filter(|&d| d < i)
                            .map(|d| format!("t{d}"))
                            .collect();
                        t.depends_on = (explicit || !deps.is_empty()).then_some(deps);
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

    proptest! {
        #[test]
        fn every_edge_goes_to_a_deeper_layer_and_batches_cover_every_task_once(m in manifests()) {
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
            // Tasks that share a file are ordered one way or the other, or warned about.
            let tasks: Vec<&Task> = m.tasks().collect();
            for i in 0..tasks.len() {
                for j in 0..i {
                    if tasks[i].files.iter().any(|f| tasks[j].files.contains(f)) {
                        let (a, b) = (NodeIndex::new(j), NodeIndex::new(i));
                        let ordered = petgraph::algo::has_path_connecting(&plan.graph, a, b, None);
                        let warned = plan.warnings.iter().any(|w| w.starts_with(&format!("t{j} and t{i} ")));
                        prop_assert!(ordered || warned, "t{} and t{} share a file", j, i);
                    }
                }
            }
        }
    }
}
