//! Taints (on nodes, from the cluster file: `dedicated=db:NoSchedule`) and the
//! tolerations pods carry against them, with Kubernetes' matching rules. Both sides
//! live here so the rule that joins them has one home.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::meta::{label_value_errors, qualified_name_errors};

/// What a taint does to pods that do not tolerate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods are not scheduled onto the node.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
}

impl TaintEffect {
    pub const NAMES: &'static [&'static str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

impl fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown taint effect {0:?}: use NoSchedule, PreferNoSchedule or NoExecute")]
pub struct UnknownEffect(pub String);

impl FromStr for TaintEffect {
    type Err = UnknownEffect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NoSchedule" => Ok(Self::NoSchedule),
            "PreferNoSchedule" => Ok(Self::PreferNoSchedule),
            "NoExecute" => Ok(Self::NoExecute),
            other => Err(UnknownEffect(other.to_owned())),
        }
    }
}

/// A node taint. Written `key=value:Effect` or `key:Effect`, as `kubectl taint` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// Why a taint does not parse; each names the part that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaintParseError {
    #[error(
        "taint {0:?} has no effect: write key=value:Effect or key:Effect, with Effect NoSchedule, PreferNoSchedule or NoExecute"
    )]
    MissingEffect(String),
    #[error("taint {taint:?}: {source}")]
    Effect {
        taint: String,
        #[source]
        source: UnknownEffect,
    },
    #[error("taint {taint:?}: key {key:?} {message}")]
    Key {
        taint: String,
        key: String,
        message: String,
    },
    #[error("taint {taint:?}: value {value:?} {message}")]
    Value {
        taint: String,
        value: String,
        message: String,
    },
}

impl FromStr for Taint {
    type Err = TaintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key_value, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| TaintParseError::MissingEffect(s.to_owned()))?;
        if effect.is_empty() {
            return Err(TaintParseError::MissingEffect(s.to_owned()));
        }
        let effect = effect
            .parse::<TaintEffect>()
            .map_err(|source| TaintParseError::Effect {
                taint: s.to_owned(),
                source,
            })?;
        let (key, value) = match key_value.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (key_value, None),
        };
        if let Some(message) = qualified_name_errors(key).into_iter().next() {
            return Err(TaintParseError::Key {
                taint: s.to_owned(),
                key: key.to_owned(),
                message: format!("is not a valid key: {message}"),
            });
        }
        if let Some(value) = value
            && let Some(message) = label_value_errors(value).into_iter().next()
        {
            return Err(TaintParseError::Value {
                taint: s.to_owned(),
                value: value.to_owned(),
                message: format!("is not a valid value: {message}"),
            });
        }
        Ok(Taint {
            key: key.to_owned(),
            value: value.filter(|v| !v.is_empty()).map(str::to_owned),
            effect,
        })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value.as_deref() {
            Some(value) if !value.is_empty() => write!(f, "{}={value}:{}", self.key, self.effect),
            _ => write!(f, "{}:{}", self.key, self.effect),
        }
    }
}

/// How a toleration compares its value with a taint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// Any value (and, with an empty key, any taint at all).
    Exists,
    /// The same value; what an absent operator means.
    Equal,
}

impl TolerationOperator {
    pub const NAMES: &'static [&'static str] = &["Exists", "Equal"];
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown toleration operator {0:?}: use Exists or Equal")]
pub struct UnknownOperator(pub String);

impl FromStr for TolerationOperator {
    type Err = UnknownOperator;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Exists" => Ok(Self::Exists),
            "Equal" => Ok(Self::Equal),
            other => Err(UnknownOperator(other.to_owned())),
        }
    }
}

/// A pod's toleration, as Kubernetes writes it. An empty `operator` or `effect`
/// in a manifest reads as absent: Equal, and every effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub operator: Option<TolerationOperator>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub effect: Option<TaintEffect>,
    /// How long a pod stays bound after a NoExecute taint appears (not yet
    /// enforced: flotilla does not evict on taints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.unwrap_or(TolerationOperator::Equal) {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value.as_deref().unwrap_or(""),
        }
    }
}

/// Reads `""` as absent, as Kubernetes' string enums do.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(deserializer)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(s: &str) -> Taint {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn taints_parse_and_print_in_kubectl_form() {
        let t = taint("dedicated=db:NoSchedule");
        assert_eq!(t.key, "dedicated");
        assert_eq!(t.value.as_deref(), Some("db"));
        assert_eq!(t.effect, TaintEffect::NoSchedule);
        assert_eq!(t.to_string(), "dedicated=db:NoSchedule");
        let t = taint("example.com/gpu:NoExecute");
        assert_eq!(t.value, None);
        assert_eq!(t.to_string(), "example.com/gpu:NoExecute");
        assert_eq!(
            taint("k=:PreferNoSchedule").to_string(),
            "k:PreferNoSchedule"
        );
    }

    #[test]
    fn taint_errors_name_the_bad_part() {
        let err = |s: &str| match s.parse::<Taint>() {
            Ok(t) => panic!("{s:?} parsed as {t}"),
            Err(e) => e.to_string(),
        };
        assert!(err("dedicated=db").contains("has no effect"));
        assert!(err("dedicated=db:").contains("has no effect"));
        assert!(err("dedicated=db:NoScheduel").contains("unknown taint effect \"NoScheduel\""));
        assert!(err("bad key=db:NoSchedule").contains("key \"bad key\" is not a valid key"));
        assert!(err("=db:NoSchedule").contains("key \"\""));
        assert!(err("k=bad value:NoSchedule").contains("value \"bad value\" is not a valid value"));
    }

    #[test]
    fn tolerations_follow_kubernetes() {
        let t = taint("dedicated=db:NoSchedule");
        let tol = |key: &str, op: Option<TolerationOperator>, value: &str, effect| Toleration {
            key: key.to_owned(),
            operator: op,
            value: value.to_owned(),
            effect,
            toleration_seconds: None,
        };
        use TolerationOperator::*;
        // Empty key with Exists tolerates everything.
        assert!(tol("", Some(Exists), "", None).tolerates(&t));
        assert!(tol("dedicated", Some(Exists), "", None).tolerates(&t));
        assert!(tol("dedicated", None, "db", None).tolerates(&t));
        assert!(
            tol(
                "dedicated",
                Some(Equal),
                "db",
                Some(TaintEffect::NoSchedule)
            )
            .tolerates(&t)
        );
        assert!(!tol("dedicated", Some(Equal), "web", None).tolerates(&t));
        assert!(!tol("dedicated", Some(Exists), "", Some(TaintEffect::NoExecute)).tolerates(&t));
        assert!(!tol("other", Some(Exists), "", None).tolerates(&t));
        let no_value = taint("gpu:NoSchedule");
        assert!(tol("gpu", None, "", None).tolerates(&no_value));
    }

    #[test]
    fn empty_operator_and_effect_read_as_absent() {
        let parsed: Result<Toleration, _> = serde_json::from_value(serde_json::json!({
            "key": "k", "operator": "", "effect": ""
        }));
        let parsed = parsed.ok();
        assert_eq!(parsed.as_ref().and_then(|t| t.operator), None);
        assert_eq!(parsed.and_then(|t| t.effect), None);
    }
}
