//! Field paths and field errors in Kubernetes' own form
//! (`spec.containers[0].resources.limits.memory: Invalid value: "-1": ...`),
//! shared by the unsupported-field pre-pass and the validators so that every
//! problem a manifest has reads the same way, whoever found it.

use std::fmt;

/// A path to a field, written as Kubernetes writes it: `spec.containers[0].name`,
/// map entries as `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// A path starting at a top-level field.
    pub fn new(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The path of a named child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field; the names and wording are Kubernetes' (`field.ErrorType`),
/// so that people who know `kubectl` recognise them, plus the two that are flotilla's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`
    Required,
    /// `Invalid value: V: detail`
    Invalid,
    /// `Unsupported value: V: supported values: "a", "b"`
    NotSupported(Vec<&'static str>),
    /// `Duplicate value: V`
    Duplicate,
    /// `Forbidden: detail`
    Forbidden,
    /// `Too long: detail`
    TooLong,
    /// `unknown field "path"`, as strict field validation reports a typo.
    UnknownField,
    /// A Kubernetes field that flotilla does not run (yet) and that would change
    /// what the workload does if it were ignored.
    Unsupported,
}

/// One problem with one field. Problems are collected, never returned one at a time:
/// a manifest should be fixable in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: FieldPath,
    pub kind: FieldErrorKind,
    /// The bad value, already quoted as Kubernetes prints it (strings in quotes).
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn required(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::make(path, FieldErrorKind::Required, None, detail)
    }

    pub fn invalid(path: &FieldPath, value: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self::make(
            path,
            FieldErrorKind::Invalid,
            Some(value.to_string()),
            detail,
        )
    }

    /// `Invalid value` for a string, quoted the way Kubernetes quotes it.
    pub fn invalid_str(path: &FieldPath, value: &str, detail: impl Into<String>) -> Self {
        Self::invalid(path, quote(value), detail)
    }

    pub fn not_supported(path: &FieldPath, value: &str, supported: &[&'static str]) -> Self {
        Self::make(
            path,
            FieldErrorKind::NotSupported(supported.to_vec()),
            Some(quote(value)),
            "",
        )
    }

    pub fn duplicate(path: &FieldPath, value: impl fmt::Display) -> Self {
        Self::make(path, FieldErrorKind::Duplicate, Some(value.to_string()), "")
    }

    pub fn forbidden(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::make(path, FieldErrorKind::Forbidden, None, detail)
    }

    pub fn too_long(path: &FieldPath, max: usize) -> Self {
        Self::make(
            path,
            FieldErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    pub fn unknown_field(path: &FieldPath, suggestion: Option<&str>) -> Self {
        let detail = suggestion
            .map(|s| format!("did you mean \"{s}\"?"))
            .unwrap_or_default();
        Self::make(path, FieldErrorKind::UnknownField, None, detail)
    }

    pub fn unsupported(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::make(path, FieldErrorKind::Unsupported, None, detail)
    }

    fn make(
        path: &FieldPath,
        kind: FieldErrorKind,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            path: path.clone(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// The message without the path, as it follows `PATH: ` in a report. An unknown
    /// field names its own path in the message, as Kubernetes' strict validation does.
    pub fn message(&self) -> String {
        let value = self.value.as_deref().unwrap_or("");
        let with_detail = |head: String| {
            if self.detail.is_empty() {
                head
            } else {
                format!("{head}: {}", self.detail)
            }
        };
        match &self.kind {
            FieldErrorKind::Required => with_detail("Required value".to_owned()),
            FieldErrorKind::Invalid => with_detail(format!("Invalid value: {value}")),
            FieldErrorKind::NotSupported(supported) => {
                let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                )
            }
            FieldErrorKind::Duplicate => format!("Duplicate value: {value}"),
            FieldErrorKind::Forbidden => with_detail("Forbidden".to_owned()),
            FieldErrorKind::TooLong => with_detail("Too long".to_owned()),
            FieldErrorKind::UnknownField => {
                let head = format!("unknown field \"{}\"", self.path);
                if self.detail.is_empty() {
                    head
                } else {
                    format!("{head} ({})", self.detail)
                }
            }
            // The detail says what flotilla does not do and what would go wrong.
            FieldErrorKind::Unsupported => self.detail.clone(),
        }
    }

    /// Whether `message()` already names the path, so a report need not repeat it.
    pub fn message_names_path(&self) -> bool {
        self.kind == FieldErrorKind::UnknownField
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message_names_path() || self.path.is_root() {
            f.write_str(&self.message())
        } else {
            write!(f, "{}: {}", self.path, self.message())
        }
    }
}

/// A string as Kubernetes quotes a bad value (Go's `%q`): in double quotes, with
/// quotes, backslashes and control characters escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_kubernetes() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("resources")
            .child("limits")
            .child("memory");
        assert_eq!(p.as_str(), "spec.containers[0].resources.limits.memory");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(FieldPath::root().child("kind").as_str(), "kind");
    }

    #[test]
    fn messages_read_like_kubernetes() {
        let p = FieldPath::new("spec").child("restartPolicy");
        assert_eq!(
            FieldError::not_supported(&p, "Sometimes", &["Always", "OnFailure", "Never"])
                .to_string(),
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
        );
        assert_eq!(
            FieldError::required(&FieldPath::new("spec").child("containers"), "").to_string(),
            "spec.containers: Required value"
        );
        let typo = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("imagePullPolicyy");
        assert_eq!(
            FieldError::unknown_field(&typo, Some("imagePullPolicy")).to_string(),
            r#"unknown field "spec.containers[0].imagePullPolicyy" (did you mean "imagePullPolicy"?)"#
        );
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
    }
}
