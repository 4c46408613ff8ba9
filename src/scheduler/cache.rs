//! The scheduler's cache, as kube-scheduler keeps one: every node with the
//! running sums of its bound pods ([`Usage`]), updated by [`Cache::bind`] and
//! [`Cache::unbind`] instead of re-adding every bound pod at each decision;
//! the nodes' labels and images by number, with how many nodes hold each
//! image; and
//! where the last search stopped, for kube-scheduler's sampling of big
//! clusters ([`feasible_nodes_to_find`]).
//!
//! A decision over the cache reads the same numbers as
//! [`Profile::schedule`] over the same nodes, and with every node evaluated
//! (any cluster of up to 100 nodes) decides the same.

use std::collections::HashMap;
use std::hash::BuildHasher;

use rand::Rng;

use crate::api::Pod;

use super::Profile;
use super::columns::{self, Column};
use super::cycle::{self, Search, View};
use super::explain::Decision;
use super::input::{BoundPod, DeploymentRef, IdMap, Ids, NodeInfo, PodFacts, Ports, Row, Usage};
use super::scores::Raw;

/// kube-scheduler's `minFeasibleNodesToFind`: a search stops no sooner.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// kube-scheduler's `minFeasibleNodesPercentageToFind`: the adaptive share
/// goes no lower.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes end the search for a pod's node in a cluster of
/// `all_nodes`, given `percentageOfNodesToScore` (0 for the adaptive default).
///
/// This is kube-scheduler's rule (`numFeasibleNodesToFind`): below 100 nodes,
/// all of them; otherwise `percentage` of the nodes, where the adaptive
/// default is 50% − 1% per 125 nodes, at least 5%; and never fewer than 100.
/// With 1,000 nodes that is 42%, 420 nodes; with 5,000, 10%, 500.
pub fn feasible_nodes_to_find(all_nodes: usize, percentage: u32) -> usize {
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return all_nodes;
    }
    let percentage = match percentage {
        0 => 50usize
            .saturating_sub(all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
        p => (p as usize).min(100),
    };
    (all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The nodes and their bound pods, kept between decisions.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    /// Per node, what every decision reads, with the sums of its bound pods.
    rows: Vec<Row>,
    /// Per node, the host ports its bound pods take.
    ports: Vec<Ports>,
    /// Label keys and values, taints.
    ids: Ids,
    /// By key id, the nodes' values.
    label_columns: Vec<Column<u32>>,
    image_ids: IdMap<String>,
    /// By image id, the nodes holding the image, with its size there.
    image_columns: Vec<Column<i64>>,
    deployment_ids: IdMap<DeploymentRef>,
    /// By deployment id, the nodes holding replicas, with their count.
    replica_columns: Vec<Column<u32>>,
    /// Where the next search starts: kube-scheduler's `nextStartNodeIndex`.
    next_start: usize,
    /// `percentageOfNodesToScore`; 0 for the adaptive default.
    percentage: u32,
    /// The feasible nodes' raw scores, reused from one decision to the next.
    feasible: Vec<Raw>,
}

impl Cache {
    /// A cache of these nodes, with the sums of the pods already bound to them.
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let mut cache = Cache::default();
        for node in nodes {
            cache.add_node(node);
        }
        cache
    }

    /// The nodes, in the order decisions refer to them by index.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The index of the node of that name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Adds a node (with any pods already bound to it); returns its index.
    pub fn add_node(&mut self, node: NodeInfo) -> usize {
        let index = self.nodes.len();
        self.rows
            .push(Row::new(&node, Usage::of(&node), &mut self.ids.taints));
        self.ports.push(Ports::of(&node));
        self.nodes.push(node);
        self.index_columns(index);
        index
    }

    /// Replaces what is known of node `index` (its labels, taints, state,
    /// images or pods changed), as kube-scheduler's `UpdateNode`.
    ///
    /// # Panics
    /// When there is no node `index`.
    pub fn set_node(&mut self, index: usize, node: NodeInfo) {
        self.unindex_columns(index);
        self.rows[index] = Row::new(&node, Usage::of(&node), &mut self.ids.taints);
        self.ports[index] = Ports::of(&node);
        self.nodes[index] = node;
        self.index_columns(index);
    }

    /// Removes node `index` and returns it; the nodes after it move down one.
    ///
    /// # Panics
    /// When there is no node `index`.
    pub fn remove_node(&mut self, index: usize) -> NodeInfo {
        let node = self.nodes.remove(index);
        self.rows.remove(index);
        self.ports.remove(index);
        // Every later node's index changes: the columns are made again.
        self.label_columns.iter_mut().for_each(Vec::clear);
        self.image_columns.iter_mut().for_each(Vec::clear);
        self.replica_columns.iter_mut().for_each(Vec::clear);
        for i in 0..self.nodes.len() {
            self.index_columns(i);
        }
        if self.next_start > index {
            self.next_start -= 1;
        }
        if self.next_start >= self.nodes.len() {
            self.next_start = 0;
        }
        node
    }

    /// Binds a pod to node `index`: later decisions count it, as
    /// kube-scheduler's cache counts an assumed pod.
    ///
    /// # Panics
    /// When there is no node `index`.
    pub fn bind(&mut self, index: usize, pod: BoundPod) {
        self.rows[index].usage.add(&pod);
        self.ports[index].add(&pod);
        if let Some(deployment) = &pod.deployment {
            let id = intern(
                &mut self.deployment_ids,
                &mut self.replica_columns,
                deployment,
            );
            columns::increment(&mut self.replica_columns[id as usize], index as u32);
        }
        self.nodes[index].pods.push(pod);
    }

    /// Unbinds the pod named `name` (`namespace/name`) from node `index`,
    /// when it ended or was deleted; returns it, or None when the node has
    /// no such pod.
    ///
    /// # Panics
    /// When there is no node `index`.
    pub fn unbind(&mut self, index: usize, name: &str) -> Option<BoundPod> {
        let at = self.nodes[index].pods.iter().position(|p| p.name == name)?;
        let pod = self.nodes[index].pods.remove(at);
        self.rows[index].usage.remove(&pod);
        self.ports[index].remove(&pod);
        if let Some(&id) = pod
            .deployment
            .as_ref()
            .and_then(|d| self.deployment_ids.get(d))
        {
            columns::decrement(&mut self.replica_columns[id as usize], index as u32);
        }
        Some(pod)
    }

    /// kube-scheduler's `percentageOfNodesToScore`: 0 (the default) for the
    /// adaptive share, or 1–100.
    pub fn percentage_of_nodes_to_score(&self) -> u32 {
        self.percentage
    }

    /// Sets `percentageOfNodesToScore`; above 100 counts as 100.
    pub fn set_percentage_of_nodes_to_score(&mut self, percentage: u32) {
        self.percentage = percentage.min(100);
    }

    /// How many feasible nodes end a search in this cluster.
    pub fn feasible_nodes_to_find(&self) -> usize {
        feasible_nodes_to_find(self.nodes.len(), self.percentage)
    }

    /// Decides where `pod` (a replica of `deployment`, if any) goes, with
    /// every evaluated node's verdict. In a cluster of more than 100 nodes
    /// the search stops once it has found [`Cache::feasible_nodes_to_find`]
    /// feasible nodes, starting where the last search stopped (kube-scheduler's
    /// round robin), so the decision holds the verdicts of the nodes it
    /// evaluated only; when no node fits, it evaluated them all.
    ///
    /// The cache does not bind the pod: call [`Cache::bind`] with the node.
    pub fn schedule<R: Rng + ?Sized>(
        &mut self,
        profile: &Profile,
        pod: &Pod,
        deployment: Option<&DeploymentRef>,
        rng: &mut R,
    ) -> Decision {
        let cycle = self.cycle(profile, pod, deployment, true, rng);
        cycle
            .decision
            .expect("a cycle run with an explanation returns its decision")
    }

    /// [`Cache::schedule`] without the explanation when the pod fits: the
    /// index of the chosen node, the same node `schedule` would choose with
    /// the same random numbers. When no node fits, the decision says why
    /// (Kubernetes' `FailedScheduling` message and every node's rejection).
    pub fn place<R: Rng + ?Sized>(
        &mut self,
        profile: &Profile,
        pod: &Pod,
        deployment: Option<&DeploymentRef>,
        rng: &mut R,
    ) -> Result<usize, Decision> {
        let start = self.next_start;
        let cycle = self.cycle(profile, pod, deployment, false, rng);
        match cycle.chosen {
            Some(index) => Ok(index),
            None => {
                // No node fits, so the search went round every node and
                // drew no random number: the same search again, explained.
                self.next_start = start;
                let cycle = self.cycle(profile, pod, deployment, true, rng);
                Err(cycle
                    .decision
                    .expect("a cycle run with an explanation returns its decision"))
            }
        }
    }

    fn cycle<R: Rng + ?Sized>(
        &mut self,
        profile: &Profile,
        pod: &Pod,
        deployment: Option<&DeploymentRef>,
        explain: bool,
        rng: &mut R,
    ) -> cycle::Cycle {
        let facts = PodFacts::new(pod, deployment, &self.ids);
        let count = self.nodes.len();
        let view = View {
            nodes: &self.nodes,
            rows: &self.rows,
            ports: &self.ports,
            labels: cycle::slot_columns(&facts, &self.label_columns),
            images: facts
                .images
                .iter()
                .map(|key| {
                    self.image_ids
                        .get(key)
                        .map_or(&[][..], |&id| &self.image_columns[id as usize][..])
                })
                .collect(),
            replicas: deployment
                .and_then(|d| self.deployment_ids.get(d))
                .map_or(&[][..], |&id| &self.replica_columns[id as usize][..]),
        };
        let search = Search {
            start: self.next_start,
            want: feasible_nodes_to_find(count, self.percentage),
        };
        let cycle = cycle::run(
            profile,
            pod,
            &facts,
            &view,
            search,
            explain,
            &mut self.feasible,
            rng,
        );
        // kube-scheduler's round robin: the next search starts after the
        // last node this one evaluated.
        if count > 0 {
            self.next_start = (search.start + cycle.processed) % count;
        }
        cycle
    }

    /// Enters node `index`'s labels, images and replicas in the columns.
    fn index_columns(&mut self, index: usize) {
        let at = index as u32;
        let node = &self.nodes[index];
        for (key, value) in self.ids.labels.node_labels(node) {
            let key = key as usize;
            if key >= self.label_columns.len() {
                self.label_columns.resize_with(key + 1, Vec::new);
            }
            columns::set(&mut self.label_columns[key], at, value);
        }
        for (image, &size) in &node.images {
            let id = intern(&mut self.image_ids, &mut self.image_columns, image);
            columns::set(&mut self.image_columns[id as usize], at, size);
        }
        for pod in &node.pods {
            if let Some(deployment) = &pod.deployment {
                let id = intern(
                    &mut self.deployment_ids,
                    &mut self.replica_columns,
                    deployment,
                );
                columns::increment(&mut self.replica_columns[id as usize], at);
            }
        }
    }

    /// Takes node `index`'s labels, images and replicas out of the columns.
    fn unindex_columns(&mut self, index: usize) {
        let at = index as u32;
        let node = &self.nodes[index];
        for key in node.labels.keys() {
            if let Some(key) = self.ids.labels.key(key) {
                columns::unset(&mut self.label_columns[key as usize], at);
            }
        }
        for image in node.images.keys() {
            if let Some(&id) = self.image_ids.get(image) {
                columns::unset(&mut self.image_columns[id as usize], at);
            }
        }
        for pod in &node.pods {
            if let Some(&id) = pod
                .deployment
                .as_ref()
                .and_then(|d| self.deployment_ids.get(d))
            {
                columns::unset(&mut self.replica_columns[id as usize], at);
            }
        }
    }

    /// Every node's rows, ports and columns worked out from scratch with
    /// the same ids: what [`Cache::bind`], [`Cache::unbind`] and the node
    /// changes must keep equal to [`Cache::kept`].
    #[cfg(test)]
    pub(super) fn recomputed(&self) -> Kept {
        let mut again = Cache {
            ids: self.ids.clone(),
            label_columns: vec![Vec::new(); self.label_columns.len()],
            image_ids: self.image_ids.clone(),
            image_columns: vec![Vec::new(); self.image_columns.len()],
            deployment_ids: self.deployment_ids.clone(),
            replica_columns: vec![Vec::new(); self.replica_columns.len()],
            ..Cache::default()
        };
        for node in &self.nodes {
            again.add_node(node.clone());
        }
        again.kept()
    }

    /// The rows, ports and columns the cache keeps.
    #[cfg(test)]
    pub(super) fn kept(&self) -> Kept {
        Kept {
            rows: self.rows.clone(),
            ports: self.ports.clone(),
            label_columns: self.label_columns.clone(),
            image_columns: self.image_columns.clone(),
            replica_columns: self.replica_columns.clone(),
        }
    }

    /// Where the next search starts.
    #[cfg(test)]
    pub(super) fn next_start(&self) -> usize {
        self.next_start
    }
}

/// What a cache keeps beside its nodes, to compare.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Kept {
    pub rows: Vec<Row>,
    pub ports: Vec<Ports>,
    pub label_columns: Vec<Column<u32>>,
    pub image_columns: Vec<Column<i64>>,
    pub replica_columns: Vec<Column<u32>>,
}

/// The id of `key`, given one (and an empty column) if it has none.
fn intern<K, T, S>(ids: &mut HashMap<K, u32, S>, columns: &mut Vec<Column<T>>, key: &K) -> u32
where
    K: std::hash::Hash + Eq + Clone,
    S: BuildHasher,
{
    if let Some(&id) = ids.get(key) {
        return id;
    }
    let id = ids.len() as u32;
    ids.insert(key.clone(), id);
    columns.push(Vec::new());
    id
}
