//! Object metadata (name, namespace, labels, annotations), label selectors, and
//! the name and label rules of Kubernetes (`k8s.io/apimachinery/pkg/util/validation`),
//! with its exact messages. The rules are `pub` because node names and node labels
//! in the cluster file follow them too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::field::{FieldError, FieldPath};

/// The namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The part of Kubernetes' `ObjectMeta` a manifest sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Empty only in a pod template; top-level objects default it to `default`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Kubernetes' `LabelSelector`: all of `matchLabels` and all of `matchExpressions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelectorOperator {
    pub const NAMES: &'static [&'static str] = &["In", "NotIn", "Exists", "DoesNotExist"];
}

impl LabelSelector {
    /// An empty selector: Kubernetes reads it as "everything", which a Deployment refuses.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every label and every expression.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelSelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            LabelSelectorOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            LabelSelectorOperator::Exists => value.is_some(),
            LabelSelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// Kubernetes' limit on the total size of an object's annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// Kubernetes' `RegexError`, double space and all, so messages match `kubectl`'s.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first)
                && alnum(last)
                && b.iter()
                    .all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Kubernetes' `IsDNS1123Label`: what is wrong with `s`, empty if nothing.
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_dns1123_label(s) {
        errs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Kubernetes' `IsDNS1123Subdomain`.
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(matches_dns1123_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Kubernetes' `IsQualifiedName`: label keys, annotation keys, taint keys
/// (`example.com/name` or `name`).
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Kubernetes' `IsValidLabelValue` (empty is valid).
pub fn label_value_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !matches_qualified_name_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A label key and value, for callers outside manifests (node labels in the
/// cluster file): `Err` holds every message, joined.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    let mut errs: Vec<String> = qualified_name_errors(key)
        .into_iter()
        .map(|m| format!("key {key:?}: {m}"))
        .collect();
    errs.extend(
        label_value_errors(value)
            .into_iter()
            .map(|m| format!("value {value:?}: {m}")),
    );
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Every problem with a map of labels at `path` (Kubernetes' `ValidateLabels`,
/// with the key in the path so each error points at its entry).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        for msg in qualified_name_errors(key) {
            errs.push(FieldError::invalid_str(path, key, msg));
        }
        for msg in label_value_errors(value) {
            errs.push(FieldError::invalid_str(&path.key(key), value, msg));
        }
    }
    errs
}

/// Kubernetes' `ValidateAnnotations`: qualified keys (case-insensitive), bounded size.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in annotations {
        for msg in qualified_name_errors(&key.to_lowercase()) {
            errs.push(FieldError::invalid_str(path, key, msg));
        }
        total += key.len() + value.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(dns1123_label_errors("nginx-1").is_empty());
        assert!(dns1123_label_errors("a").is_empty());
        for bad in ["", "Nginx", "-a", "a-", "a.b", "a_b"] {
            assert_eq!(dns1123_label_errors(bad).len(), 1, "{bad:?}");
        }
        assert_eq!(
            dns1123_label_errors("Nginx")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(dns1123_label_errors(&"a".repeat(64)).len(), 1);
        assert!(dns1123_subdomain_errors("my.app-1").is_empty());
        for bad in ["", "a..b", ".a", "a.", "A.b", "a_b"] {
            assert!(!dns1123_subdomain_errors(bad).is_empty(), "{bad:?}");
        }
        assert!(dns1123_subdomain_errors(&"a".repeat(253)).is_empty());
        assert_eq!(dns1123_subdomain_errors(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "A_b.c-D",
            "example.com/MyName",
        ] {
            assert!(qualified_name_errors(good).is_empty(), "{good:?}");
        }
        assert_eq!(
            qualified_name_errors("/name"),
            ["prefix part must be non-empty"]
        );
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert_eq!(qualified_name_errors("").len(), 2);
        assert_eq!(qualified_name_errors("Example.com/x").len(), 1);
        assert!(qualified_name_errors("-app")[0].starts_with("name part must consist"));
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_x").is_empty());
        assert_eq!(label_value_errors("has space").len(), 1);
        assert_eq!(label_value_errors(&"v".repeat(64)).len(), 1);
        assert!(validate_label("zone", "a").is_ok());
        let err = validate_label("bad key", "-x").err().unwrap_or_default();
        assert!(
            err.contains("key \"bad key\"") && err.contains("value \"-x\""),
            "{err}"
        );
    }

    #[test]
    fn label_errors_name_entry_and_value() {
        let labels = BTreeMap::from([("app".to_owned(), "bad value".to_owned())]);
        let errs = validate_labels(&labels, &FieldPath::new("metadata").child("labels"));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with("metadata.labels[app]: Invalid value: \"bad value\": a valid label"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "front".to_owned()),
        ]);
        let req = |key: &str, operator, values: &[&str]| LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        use LabelSelectorOperator::*;
        let sel = |exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            match_expressions: exprs,
        };
        assert!(sel(vec![]).matches(&labels));
        assert!(sel(vec![req("tier", In, &["front", "back"])]).matches(&labels));
        assert!(!sel(vec![req("tier", NotIn, &["front"])]).matches(&labels));
        assert!(sel(vec![req("zone", NotIn, &["a"])]).matches(&labels));
        assert!(sel(vec![req("tier", Exists, &[])]).matches(&labels));
        assert!(!sel(vec![req("tier", DoesNotExist, &[])]).matches(&labels));
        assert!(LabelSelector::default().matches(&labels));
        assert!(LabelSelector::default().is_empty());
    }
}
