//! Node labels by number, and the pod's node selection compiled against
//! them, so that matching a node costs integer comparisons instead of string
//! lookups in a map: with a thousand nodes a decision matches the same
//! selector hundreds of times.
//!
//! [`LabelIds`] numbers label keys and values; each key has a column of the
//! nodes' values for it ([`columns`](super::columns)). [`Selection`] is the
//! pod's `nodeSelector`, required and preferred node affinity with every key
//! and value looked up once, each key it names given a slot: a decision
//! reads the node's value for each slot from the key's column. A key or
//! value no node has gets no id: a requirement on it reads as the label
//! being absent, or the value matching nothing, which is what every node
//! would answer. The semantics are those of
//! [`NodeSelectorRequirement::matches`] and [`NodeSelectorTerm::matches`];
//! debug builds check every compiled answer against them.

use crate::api::pod::PodSpec;
use crate::api::{NodeSelectorOperator, NodeSelectorTerm};

use super::input::{IdMap, NodeInfo};

/// Ids for label keys and values.
#[derive(Clone, Debug, Default)]
pub(super) struct LabelIds {
    keys: IdMap<String>,
    values: IdMap<String>,
    /// Per value id, the value read as an integer (for Gt and Lt).
    numbers: Vec<Option<i64>>,
}

impl LabelIds {
    pub fn intern_key(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.keys.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.insert(key.to_owned(), id);
        id
    }

    pub fn intern_value(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.values.get(value) {
            return id;
        }
        let id = self.numbers.len() as u32;
        self.values.insert(value.to_owned(), id);
        self.numbers.push(value.parse().ok());
        id
    }

    pub fn key(&self, key: &str) -> Option<u32> {
        self.keys.get(key).copied()
    }

    fn value(&self, value: &str) -> Option<u32> {
        self.values.get(value).copied()
    }

    /// A node's labels by id, interning what is new.
    pub fn node_labels(&mut self, node: &NodeInfo) -> Vec<(u32, u32)> {
        node.labels
            .iter()
            .map(|(k, v)| (self.intern_key(k), self.intern_value(v)))
            .collect()
    }
}

/// The label keys the pod's node selection names, each once, in the order
/// they first appear: the slots of its [`Selection`].
pub(super) fn pod_keys(spec: &PodSpec) -> Vec<&str> {
    let mut all: Vec<&str> = spec.node_selector.keys().map(String::as_str).collect();
    let required = spec
        .required_node_selector()
        .into_iter()
        .flat_map(|s| &s.node_selector_terms);
    let preferred = spec.preferred_node_terms().iter().map(|p| &p.preference);
    for term in required.chain(preferred) {
        all.extend(term.match_expressions.iter().map(|r| r.key.as_str()));
    }
    let mut keys: Vec<&str> = Vec::with_capacity(all.len());
    for key in all {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

enum Op {
    In(Vec<u32>),
    NotIn(Vec<u32>),
    Exists,
    DoesNotExist,
    /// The label read as an integer is greater than this; None: never.
    Gt(Option<i64>),
    Lt(Option<i64>),
}

struct Requirement {
    slot: usize,
    op: Op,
}

enum Term<'a> {
    /// A term with no requirement matches no node.
    Never,
    Expressions(Vec<Requirement>),
    /// A term naming node fields (`metadata.name`) is matched as written.
    AsWritten(&'a NodeSelectorTerm),
}

/// The pod's node selection, compiled.
pub(super) struct Selection<'a> {
    /// Per slot, the id of its key; None when no node has the key.
    pub slots: Vec<Option<u32>>,
    /// `nodeSelector` as (slot, value id); None when a value has no id, so
    /// that no node matches.
    node_selector: Option<Vec<(usize, u32)>>,
    required: Option<Vec<Term<'a>>>,
    /// The preferred terms of non-zero weight.
    preferred: Vec<(i64, Term<'a>)>,
    /// Each label value read as an integer, by value id.
    numbers: &'a [Option<i64>],
    // The source, for debug builds to check each answer against.
    spec: &'a PodSpec,
}

impl<'a> Selection<'a> {
    pub fn new(spec: &'a PodSpec, ids: &'a LabelIds) -> Self {
        let keys = pod_keys(spec);
        let slot = |key: &str| keys.iter().position(|k| *k == key).unwrap_or(0);
        let node_selector = spec
            .node_selector
            .iter()
            .map(|(k, v)| Some((slot(k), ids.value(v)?)))
            .collect::<Option<Vec<_>>>();
        let required = spec.required_node_selector().map(|selector| {
            selector
                .node_selector_terms
                .iter()
                .map(|t| compile_term(t, ids, &slot))
                .collect()
        });
        let preferred = spec
            .preferred_node_terms()
            .iter()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), compile_term(&t.preference, ids, &slot)))
            .collect();
        Self {
            slots: keys.iter().map(|k| ids.key(k)).collect(),
            node_selector,
            required,
            preferred,
            numbers: &ids.numbers,
            spec,
        }
    }

    /// NodeAffinity's filter: `nodeSelector` and the required terms, given
    /// the node's value for each slot.
    pub fn admits(&self, node: &NodeInfo, values: &[Option<u32>]) -> bool {
        let selector = match &self.node_selector {
            None => false,
            Some(pairs) => pairs.iter().all(|&(slot, v)| values[slot] == Some(v)),
        };
        let answer = selector
            && self.required.as_ref().is_none_or(|terms| {
                terms
                    .iter()
                    .any(|t| term_matches(t, node, values, self.numbers))
            });
        debug_assert_eq!(answer, admits_as_written(self.spec, node), "{}", node.name);
        answer
    }

    /// NodeAffinity's raw score: the weights of the preferred terms the node
    /// matches.
    pub fn preference(&self, node: &NodeInfo, values: &[Option<u32>]) -> i64 {
        let answer = self
            .preferred
            .iter()
            .filter(|(_, t)| term_matches(t, node, values, self.numbers))
            .map(|&(weight, _)| weight)
            .sum();
        debug_assert_eq!(
            answer,
            preference_as_written(self.spec, node),
            "{}",
            node.name
        );
        answer
    }
}

fn compile_term<'a>(
    term: &'a NodeSelectorTerm,
    ids: &LabelIds,
    slot: &dyn Fn(&str) -> usize,
) -> Term<'a> {
    if !term.match_fields.is_empty() {
        return Term::AsWritten(term);
    }
    if term.match_expressions.is_empty() {
        return Term::Never;
    }
    Term::Expressions(
        term.match_expressions
            .iter()
            .map(|r| {
                let values = || r.values.iter().filter_map(|v| ids.value(v)).collect();
                let limit = || match r.values.as_slice() {
                    [limit] => limit.parse().ok(),
                    _ => None,
                };
                Requirement {
                    slot: slot(&r.key),
                    op: match r.operator {
                        NodeSelectorOperator::In => Op::In(values()),
                        NodeSelectorOperator::NotIn => Op::NotIn(values()),
                        NodeSelectorOperator::Exists => Op::Exists,
                        NodeSelectorOperator::DoesNotExist => Op::DoesNotExist,
                        NodeSelectorOperator::Gt => Op::Gt(limit()),
                        NodeSelectorOperator::Lt => Op::Lt(limit()),
                    },
                }
            })
            .collect(),
    )
}

fn term_matches(
    term: &Term<'_>,
    node: &NodeInfo,
    values: &[Option<u32>],
    numbers: &[Option<i64>],
) -> bool {
    match term {
        Term::Never => false,
        Term::AsWritten(term) => term.matches(&node.labels, &node.name),
        Term::Expressions(requirements) => requirements.iter().all(|r| {
            let value = values[r.slot];
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(&v)),
                Op::NotIn(values) => !value.is_some_and(|v| values.contains(&v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Gt(limit) => compare(value, *limit, numbers, |have, limit| have > limit),
                Op::Lt(limit) => compare(value, *limit, numbers, |have, limit| have < limit),
            }
        }),
    }
}

/// Gt and Lt: false unless both the label and the limit read as integers.
fn compare(
    value: Option<u32>,
    limit: Option<i64>,
    numbers: &[Option<i64>],
    cmp: fn(i64, i64) -> bool,
) -> bool {
    let (Some(value), Some(limit)) = (value, limit) else {
        return false;
    };
    numbers
        .get(value as usize)
        .copied()
        .flatten()
        .is_some_and(|have| cmp(have, limit))
}

/// NodeAffinity's filter as the api states it.
fn admits_as_written(spec: &PodSpec, node: &NodeInfo) -> bool {
    spec.node_selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value))
        && spec
            .required_node_selector()
            .is_none_or(|selector| selector.matches(&node.labels, &node.name))
}

/// NodeAffinity's raw score as the api states it.
fn preference_as_written(spec: &PodSpec, node: &NodeInfo) -> i64 {
    spec.preferred_node_terms()
        .iter()
        .filter(|t| t.weight != 0 && t.preference.matches(&node.labels, &node.name))
        .map(|t| i64::from(t.weight))
        .sum()
}
