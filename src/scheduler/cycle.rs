//! One scheduling cycle, shared by [`Profile::schedule`](super::Profile::schedule)
//! (a slice of nodes, every node evaluated) and [`Cache`](super::Cache)
//! (sums kept between decisions, kube-scheduler's sampling in big
//! clusters): search the nodes for feasible ones from a starting node, stop
//! once enough are found, score those, and draw among the best.
//!
//! The search allocates nothing per node when no explanation is wanted: a
//! rejected node only counts, a feasible node adds its raw scores to a
//! reused buffer. When an explanation is wanted, each evaluated node also
//! gets its verdict, with the reasons of its rejection or every plugin's
//! score.

use rand::Rng;

use crate::api::Pod;

use super::Profile;
use super::columns::{Column, Cursor};
use super::explain::{Decision, NodeVerdict, Outcome};
use super::filters::{self, Candidate};
use super::input::{self, DeploymentRef, HostPort, Ids, NodeInfo, PodFacts, Ports, Row, Usage};
use super::labels;
use super::scores::{Holdings, Plan, Raw};

/// The nodes as a cycle reads them for one pod: each node with its row and
/// ports at the same index, and the columns of what the pod names.
pub(super) struct View<'a> {
    pub nodes: &'a [NodeInfo],
    pub rows: &'a [Row],
    pub ports: &'a [Ports],
    /// Per slot of the pod's selection, the column of the key's values.
    pub labels: Vec<&'a [(u32, u32)]>,
    /// Per image of the pod, the column of the nodes holding it, with its size.
    pub images: Vec<&'a [(u32, i64)]>,
    /// The column of the pod's deployment's replicas.
    pub replicas: &'a [(u32, u32)],
}

/// Per slot of the pod's selection, the column of that label key's values
/// (empty for a key no node has).
pub(super) fn slot_columns<'a>(
    facts: &PodFacts<'_>,
    columns: &'a [Column<u32>],
) -> Vec<&'a [(u32, u32)]> {
    facts
        .selection
        .slots
        .iter()
        .map(|key| key.map_or(&[][..], |k| &columns[k as usize][..]))
        .collect()
}

/// Where the search starts and how many feasible nodes end it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Search {
    pub start: usize,
    pub want: usize,
}

pub(super) struct Cycle {
    /// The chosen node's index among all nodes.
    pub chosen: Option<usize>,
    /// How many nodes the search evaluated, feasible or not.
    pub processed: usize,
    /// The decision with every evaluated node's verdict, when asked for.
    pub decision: Option<Decision>,
}

/// Runs one cycle. `feasible` is a buffer the caller may keep between
/// cycles so that none allocates it.
#[allow(clippy::too_many_arguments)]
pub(super) fn run<R: Rng + ?Sized>(
    profile: &Profile,
    pod: &Pod,
    facts: &PodFacts<'_>,
    view: &View<'_>,
    search: Search,
    explain: bool,
    feasible: &mut Vec<Raw>,
    rng: &mut R,
) -> Cycle {
    // Two copies of the search, so that the one without explanation has
    // none of its branches.
    if explain {
        run_as::<true, R>(profile, pod, facts, view, search, feasible, rng)
    } else {
        run_as::<false, R>(profile, pod, facts, view, search, feasible, rng)
    }
}

fn run_as<const EXPLAIN: bool, R: Rng + ?Sized>(
    profile: &Profile,
    pod: &Pod,
    facts: &PodFacts<'_>,
    view: &View<'_>,
    search: Search,
    feasible: &mut Vec<Raw>,
    rng: &mut R,
) -> Cycle {
    let explain = EXPLAIN; // a constant in each copy
    let count = view.nodes.len();
    let start = if search.start < count {
        search.start
    } else {
        0
    };
    let shares: Vec<f64> = view
        .images
        .iter()
        .map(|holders| holders.len() as f64 / count as f64)
        .collect();
    let plan = Plan::new(facts, profile.strategy, profile.weights, &shares);
    let mut label_cursors: Vec<Cursor<'_, u32>> = view
        .labels
        .iter()
        .map(|c| Cursor::new(c, start, count))
        .collect();
    let mut image_cursors: Vec<Cursor<'_, i64>> = view
        .images
        .iter()
        .map(|c| Cursor::new(c, start, count))
        .collect();
    let mut replica_cursor = Cursor::new(view.replicas, start, count);
    let mut labels: Vec<Option<u32>> = vec![None; view.labels.len()];
    let mut image_sizes: Vec<Option<i64>> = vec![None; view.images.len()];

    feasible.clear();
    let mut verdicts: Vec<NodeVerdict> = Vec::new();
    let mut processed = 0;
    let mut index = start;
    while processed < count && feasible.len() < search.want {
        for (value, cursor) in labels.iter_mut().zip(&mut label_cursors) {
            *value = cursor.at(index);
        }
        let candidate = Candidate {
            node: &view.nodes[index],
            row: &view.rows[index],
            ports: &view.ports[index],
            labels: &labels,
        };
        let passed = if explain {
            let outcome = match filters::run(facts, candidate) {
                Err(rejection) => Outcome::Rejected(rejection),
                // Filled in once every feasible node is known: some scores
                // normalise over all of them.
                Ok(()) => Outcome::Scored {
                    scores: Vec::new(),
                    total: 0,
                },
            };
            let passed = matches!(outcome, Outcome::Scored { .. });
            verdicts.push(NodeVerdict {
                index,
                node: candidate.node.name.clone(),
                outcome,
            });
            passed
        } else {
            filters::passes(facts, candidate)
        };
        if passed {
            for (size, cursor) in image_sizes.iter_mut().zip(&mut image_cursors) {
                *size = cursor.at(index);
            }
            let holds = Holdings {
                labels: &labels,
                replicas: replica_cursor.at(index).unwrap_or(0),
                image_sizes: &image_sizes,
            };
            feasible.push(plan.raw(index, candidate.node, candidate.row, holds));
        }
        processed += 1;
        index += 1;
        if index == count {
            index = 0;
        }
    }

    // A search that wrapped around the end found nodes out of order: the
    // tie-break and the explanation go in the nodes' order.
    let wrap = wrap_point(feasible.iter().map(|raw| raw.index));
    let in_order = feasible[wrap..].iter().chain(&feasible[..wrap]);
    if explain {
        let wrap = wrap_point(verdicts.iter().map(|v| v.index));
        verdicts.rotate_left(wrap);
    }

    let norm = plan.normalizer(feasible);
    let mut best: Option<i64> = None;
    // Verdict positions when explaining, node indices when not.
    let mut tied: Vec<usize> = Vec::new();
    // Where each feasible node's verdict is: verdicts hold the feasible
    // nodes in the same order, among the rejected ones.
    let mut verdict = 0;
    for raw in in_order {
        let total = plan.total_of(&norm, raw);
        let position = if explain {
            while verdicts[verdict].index != raw.index {
                verdict += 1;
            }
            verdicts[verdict].outcome = Outcome::Scored {
                scores: plan.explain(&plan.scores(&norm, raw)),
                total,
            };
            verdict
        } else {
            raw.index
        };
        match best {
            Some(b) if total < b => {}
            Some(b) if total == b => tied.push(position),
            _ => {
                best = Some(total);
                tied.clear();
                tied.push(position);
            }
        }
    }
    let drawn = match tied.len() {
        0 => None,
        1 => Some(tied[0]),
        n => Some(tied[rng.random_range(0..n)]),
    };
    let chosen = drawn.map(|p| if explain { verdicts[p].index } else { p });
    let decision = explain.then(|| Decision {
        pod: input::pod_name(pod),
        strategy: profile.strategy,
        nodes: verdicts,
        chosen: drawn,
        tied,
        total_nodes: count,
    });
    Cycle {
        chosen,
        processed,
        decision,
    }
}

/// Where a list of node indices found by a search starts over from the
/// first nodes (0 when it does not).
fn wrap_point(mut indices: impl Iterator<Item = usize>) -> usize {
    let mut previous = 0;
    indices
        .position(|index| std::mem::replace(&mut previous, index) > index)
        .unwrap_or(0)
}

/// What a decision over a plain slice of nodes reads, worked out from the
/// nodes for that one decision: each node's row and ports from its bound
/// pods, and the columns of only what the pod names.
pub(super) struct Scratch {
    pub ids: Ids,
    rows: Vec<Row>,
    ports: Vec<Ports>,
    /// By key id: only the keys the pod names have ids.
    labels: Vec<Column<u32>>,
    /// Per image of the pod.
    images: Vec<Column<i64>>,
    replicas: Column<u32>,
}

impl Scratch {
    pub fn new(pod: &Pod, deployment: Option<&DeploymentRef>, nodes: &[NodeInfo]) -> Self {
        let mut ids = Ids::default();
        let labels = labels::pod_keys(&pod.spec)
            .into_iter()
            .map(|key| {
                ids.labels.intern_key(key);
                nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, node)| {
                        let value = node.labels.get(key)?;
                        Some((i as u32, ids.labels.intern_value(value)))
                    })
                    .collect()
            })
            .collect();
        let images = pod
            .spec
            .containers
            .iter()
            .map(|c| {
                let key = input::image_key(&c.image);
                nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, node)| Some((i as u32, *node.images.get(&key)?)))
                    .collect()
            })
            .collect();
        let replicas = match deployment {
            None => Column::new(),
            Some(deployment) => nodes
                .iter()
                .enumerate()
                .filter_map(|(i, node)| {
                    let count = node
                        .pods
                        .iter()
                        .filter(|p| p.deployment.as_ref() == Some(deployment))
                        .count();
                    (count > 0).then_some((i as u32, count as u32))
                })
                .collect(),
        };
        let wanted_ports: Vec<HostPort> = pod
            .spec
            .host_ports()
            .map(|(port, protocol)| HostPort { port, protocol })
            .collect();
        let rows = nodes
            .iter()
            .map(|node| Row::new(node, Usage::of(node), &mut ids.taints))
            .collect();
        Self {
            ids,
            rows,
            ports: nodes
                .iter()
                .map(|node| Ports::among(node, &wanted_ports))
                .collect(),
            labels,
            images,
            replicas,
        }
    }

    pub fn view<'a>(&'a self, nodes: &'a [NodeInfo], facts: &PodFacts<'_>) -> View<'a> {
        View {
            nodes,
            rows: &self.rows,
            ports: &self.ports,
            labels: slot_columns(facts, &self.labels),
            images: self.images.iter().map(|c| &c[..]).collect(),
            replicas: &self.replicas,
        }
    }
}
