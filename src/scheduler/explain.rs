//! A scheduling decision and how it reads: the chosen node (if any) with every
//! node's verdict, the filter that rejected it or each plugin's score; the
//! one-line message of Kubernetes' `Scheduled` / `FailedScheduling` events;
//! and a table a person can read, for `flotilla describe pod` and the console.

use std::collections::BTreeMap;
use std::fmt;

use super::filters::Rejection;
use super::scores::{PluginScore, ScoreOutcome, ScorePlugin, ScoringStrategy};

/// Kubernetes' `ErrNoNodesAvailable`: the message when there are no nodes at all.
pub const NO_NODES_MESSAGE: &str = "no nodes available to schedule pods";

/// What the scheduler decided for one pod, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `namespace/name` of the pod.
    pub pod: String,
    pub strategy: ScoringStrategy,
    /// One verdict per node evaluated, in the order the nodes were given:
    /// every node, unless a [`Cache`](super::Cache) of more than 100 nodes
    /// stopped its search once it had found enough feasible nodes
    /// (kube-scheduler's `percentageOfNodesToScore`).
    pub nodes: Vec<NodeVerdict>,
    /// Index into `nodes` of the chosen node; None when no node passed the filters.
    pub chosen: Option<usize>,
    /// Indices of the nodes that shared the best total; the chosen one was
    /// drawn at random among them.
    pub tied: Vec<usize>,
    /// How many nodes there were: `nodes.len()` when every node was evaluated.
    pub total_nodes: usize,
}

/// One node's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVerdict {
    /// The node's index among the nodes given (or in the [`Cache`](super::Cache)).
    pub index: usize,
    pub node: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A filter rejected the node.
    Rejected(Rejection),
    /// The node passed every filter: each plugin's score and the weighted total.
    Scored {
        scores: Vec<PluginScore>,
        total: i64,
    },
}

impl NodeVerdict {
    pub fn total(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Scored { total, .. } => Some(*total),
            Outcome::Rejected(_) => None,
        }
    }

    pub fn rejection(&self) -> Option<&Rejection> {
        match &self.outcome {
            Outcome::Rejected(rejection) => Some(rejection),
            Outcome::Scored { .. } => None,
        }
    }

    /// One plugin's score on this node, if the node was scored.
    pub fn score(&self, plugin: ScorePlugin) -> Option<&PluginScore> {
        match &self.outcome {
            Outcome::Scored { scores, .. } => scores.iter().find(|s| s.plugin == plugin),
            Outcome::Rejected(_) => None,
        }
    }
}

impl Decision {
    /// The chosen node's name.
    pub fn node(&self) -> Option<&str> {
        self.chosen.map(|i| self.nodes[i].node.as_str())
    }

    /// The chosen node's index among the nodes given (or in the
    /// [`Cache`](super::Cache)).
    pub fn node_index(&self) -> Option<usize> {
        self.chosen.map(|i| self.nodes[i].index)
    }

    /// The verdict on the node of that name.
    pub fn verdict(&self, node: &str) -> Option<&NodeVerdict> {
        self.nodes.iter().find(|v| v.node == node)
    }

    /// The message of the event Kubernetes records: `Successfully assigned
    /// default/web to node2`, or `0/3 nodes are available: 1 Insufficient
    /// memory, 2 node(s) had untolerated taint {dedicated: db}.`
    pub fn message(&self) -> String {
        match self.node() {
            Some(node) => format!("Successfully assigned {} to {node}", self.pod),
            None => self.unschedulable_message(),
        }
    }

    /// Kubernetes' `FitError` message: each rejection reason with the number
    /// of nodes that gave it, as `"<count> <reason>"` strings sorted as
    /// strings (so `10 …` sorts before `2 …`, as kube-scheduler prints it).
    fn unschedulable_message(&self) -> String {
        if self.nodes.is_empty() {
            return NO_NODES_MESSAGE.to_owned();
        }
        let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
        for verdict in &self.nodes {
            if let Some(rejection) = verdict.rejection() {
                for reason in &rejection.reasons {
                    *histogram.entry(reason.to_string()).or_default() += 1;
                }
            }
        }
        let mut entries: Vec<String> = histogram
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        entries.sort();
        // A search that found no feasible node evaluated every node, so the
        // count is all of them, as in kube-scheduler's `NumAllNodes`.
        let mut message = format!("0/{} nodes are available:", self.total_nodes);
        if !entries.is_empty() {
            message.push(' ');
            message.push_str(&entries.join(", "));
            message.push('.');
        }
        message
    }

    fn feasible(&self) -> usize {
        self.nodes.iter().filter(|v| v.total().is_some()).count()
    }
}

impl fmt::Display for Decision {
    /// The decision as a person reads it: a headline, then a line per node,
    /// scored nodes followed by their plugins' scores.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.chosen {
            Some(chosen) => {
                let best = self.nodes[chosen].total().unwrap_or(0);
                write!(
                    f,
                    "Scheduled {} on {}: the best total score, {best}, of {} feasible node(s) out of {}",
                    self.pod,
                    self.nodes[chosen].node,
                    self.feasible(),
                    self.total_nodes
                )?;
                if self.nodes.len() < self.total_nodes {
                    write!(
                        f,
                        "; the search stopped there, after evaluating {} (kube-scheduler's percentageOfNodesToScore)",
                        self.nodes.len()
                    )?;
                }
                f.write_str(".")?;
                if self.tied.len() > 1 {
                    let names: Vec<&str> = self
                        .tied
                        .iter()
                        .map(|&i| self.nodes[i].node.as_str())
                        .collect();
                    write!(f, " Tied: {}; chosen at random.", names.join(", "))?;
                }
                writeln!(f)?;
            }
            None => writeln!(f, "Cannot schedule {}: {}", self.pod, self.message())?,
        }
        let width = self.nodes.iter().map(|v| v.node.len()).max().unwrap_or(0);
        let label_width = ScorePlugin::ALL
            .iter()
            .map(|&p| self.plugin_label(p).len())
            .max()
            .unwrap_or(0);
        for (i, verdict) in self.nodes.iter().enumerate() {
            let name = &verdict.node;
            match &verdict.outcome {
                Outcome::Rejected(rejection) => {
                    let reasons: Vec<String> = rejection
                        .reasons
                        .iter()
                        .map(|r| format!("{r} ({})", r.detail()))
                        .collect();
                    writeln!(
                        f,
                        "{name:<width$}  rejected by {}: {}",
                        rejection.plugin,
                        reasons.join("; ")
                    )?;
                }
                Outcome::Scored { scores, total } => {
                    let mark = if self.chosen == Some(i) {
                        "  (chosen)"
                    } else {
                        ""
                    };
                    writeln!(f, "{name:<width$}  total {total}{mark}")?;
                    for score in scores {
                        let label = self.plugin_label(score.plugin);
                        write!(f, "{:width$}    {label:<label_width$}  ", "")?;
                        match score.outcome {
                            ScoreOutcome::Skipped(why) => writeln!(f, "skipped: {why}")?,
                            ScoreOutcome::Scored { raw, normalized } => writeln!(
                                f,
                                "raw {raw:>4}  normalised {normalized:>3}  x {} = {:>4}",
                                score.weight,
                                score.weighted()
                            )?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Decision {
    fn plugin_label(&self, plugin: ScorePlugin) -> String {
        match plugin {
            ScorePlugin::NodeResourcesFit => format!("{plugin} ({})", self.strategy),
            _ => plugin.to_string(),
        }
    }
}
