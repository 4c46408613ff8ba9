//! Node affinity: the required and preferred node-selector terms of a pod, and
//! how a node's labels and name satisfy them (Kubernetes' `nodeaffinity` helpers),
//! so the scheduler only has to call `matches`. Pod affinity is not supported
//! and is refused before these types are read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms ORed together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Requirements ANDed together; an empty term matches no node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// Against the node's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Against the node's fields; Kubernetes allows only `metadata.name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label, read as an integer, is greater than the single value.
    Gt,
    /// The label, read as an integer, is less than the single value.
    Lt,
}

impl NodeSelectorOperator {
    pub const NAMES: &'static [&'static str] =
        &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreferredSchedulingTerm {
    /// 1..=100, added to a node's score when the preference matches.
    #[serde(default)]
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

/// The one node field a `matchFields` requirement may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

impl NodeSelector {
    /// Whether a node with these labels and this name satisfies any term.
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        self.node_selector_terms
            .iter()
            .any(|t| t.matches(labels, node_name))
    }
}

impl NodeSelectorTerm {
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        let fields = BTreeMap::from([(NODE_NAME_FIELD.to_owned(), node_name.to_owned())]);
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self.match_fields.iter().all(|r| r.matches(&fields))
    }
}

impl NodeSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let compare = |want: std::cmp::Ordering| {
            let (Some(have), [limit]) = (value, self.values.as_slice()) else {
                return false;
            };
            match (have.parse::<i64>(), limit.parse::<i64>()) {
                (Ok(have), Ok(limit)) => have.cmp(&limit) == want,
                _ => false,
            }
        };
        match self.operator {
            NodeSelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            NodeSelectorOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            NodeSelectorOperator::Exists => value.is_some(),
            NodeSelectorOperator::DoesNotExist => value.is_none(),
            NodeSelectorOperator::Gt => compare(std::cmp::Ordering::Greater),
            NodeSelectorOperator::Lt => compare(std::cmp::Ordering::Less),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, operator: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn requirements_match_like_kubernetes() {
        use NodeSelectorOperator::*;
        let labels = BTreeMap::from([
            ("disktype".to_owned(), "ssd".to_owned()),
            ("cores".to_owned(), "8".to_owned()),
        ]);
        assert!(req("disktype", In, &["ssd", "nvme"]).matches(&labels));
        assert!(!req("disktype", NotIn, &["ssd"]).matches(&labels));
        assert!(req("zone", NotIn, &["a"]).matches(&labels));
        assert!(req("cores", Gt, &["4"]).matches(&labels));
        assert!(!req("cores", Lt, &["4"]).matches(&labels));
        assert!(!req("disktype", Gt, &["4"]).matches(&labels));
        assert!(!req("zone", Lt, &["4"]).matches(&labels));
        assert!(req("zone", DoesNotExist, &[]).matches(&labels));
    }

    #[test]
    fn terms_or_requirements_and() {
        use NodeSelectorOperator::*;
        let labels = BTreeMap::from([("disktype".to_owned(), "ssd".to_owned())]);
        let selector = NodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm {
                    match_expressions: vec![req("disktype", In, &["hdd"])],
                    match_fields: vec![],
                },
                NodeSelectorTerm {
                    match_expressions: vec![req("disktype", Exists, &[])],
                    match_fields: vec![req(NODE_NAME_FIELD, In, &["node1"])],
                },
            ],
        };
        assert!(selector.matches(&labels, "node1"));
        assert!(!selector.matches(&labels, "node2"));
        assert!(!NodeSelectorTerm::default().matches(&labels, "node1"));
    }
}
