//! The apps/v1 Deployment as flotilla runs it: replicas of a pod template, the
//! label selector that claims them, and the rollout strategy, with Kubernetes'
//! field names so a stored deployment serializes back as `kubectl` shows it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::meta::{LabelSelector, ObjectMeta};
use super::pod::PodSpec;

pub const DEPLOYMENT_API_VERSION: &str = "apps/v1";
pub const DEPLOYMENT_KIND: &str = "Deployment";

/// Kubernetes' default for both `maxSurge` and `maxUnavailable`.
pub const DEFAULT_ROLLING_PERCENT: &str = "25%";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Deployment {
    #[serde(default = "deployment_api_version")]
    pub api_version: String,
    #[serde(default = "deployment_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeploymentSpec,
}

fn deployment_api_version() -> String {
    DEPLOYMENT_API_VERSION.to_owned()
}

fn deployment_kind() -> String {
    DEPLOYMENT_KIND.to_owned()
}

impl Deployment {
    pub fn new(metadata: ObjectMeta, spec: DeploymentSpec) -> Self {
        Self {
            api_version: deployment_api_version(),
            kind: deployment_kind(),
            metadata,
            spec,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentSpec {
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default)]
    pub template: PodTemplateSpec,
    #[serde(default)]
    pub strategy: DeploymentStrategy,
}

impl Default for DeploymentSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            selector: LabelSelector::default(),
            template: PodTemplateSpec::default(),
            strategy: DeploymentStrategy::default(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Labels and annotations for the pods; their names and namespace come from
    /// the Deployment.
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentStrategy {
    #[serde(default, rename = "type")]
    pub strategy_type: StrategyType,
    /// Present (after defaulting) exactly when the type is RollingUpdate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyType {
    /// Replace pods a few at a time, within maxSurge and maxUnavailable.
    #[default]
    RollingUpdate,
    /// Stop every old pod before starting new ones.
    Recreate,
}

impl StrategyType {
    pub const NAMES: &'static [&'static str] = &["Recreate", "RollingUpdate"];
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

impl RollingUpdate {
    /// Kubernetes' defaults: 25% either way.
    pub fn kubernetes_default() -> Self {
        Self {
            max_surge: Some(IntOrString::default_percent()),
            max_unavailable: Some(IntOrString::default_percent()),
        }
    }
}

/// A count or a percentage (`3` or `"25%"`), as Kubernetes' `IntOrString`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl IntOrString {
    fn default_percent() -> Self {
        Self::String(DEFAULT_ROLLING_PERCENT.to_owned())
    }

    /// The percentage, if this is a well-formed `N%` string.
    pub fn percent(&self) -> Option<i64> {
        match self {
            Self::Int(_) => None,
            Self::String(s) => {
                let digits = s.strip_suffix('%')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok()
            }
        }
    }

    /// Kubernetes' `GetScaledValueFromIntOrPercent`: a count as is, a percentage of
    /// `total` rounded up (maxSurge) or down (maxUnavailable). `None` for a
    /// malformed string, which validation has already refused.
    pub fn scaled(&self, total: i32, round_up: bool) -> Option<i32> {
        match self {
            Self::Int(n) => Some(*n),
            Self::String(_) => {
                let percent = self.percent()?;
                let scaled = percent * i64::from(total);
                let value = if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                };
                i32::try_from(value).ok()
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_scale_like_kubernetes() {
        let pct = IntOrString::String("25%".to_owned());
        assert_eq!(pct.scaled(10, true), Some(3));
        assert_eq!(pct.scaled(10, false), Some(2));
        assert_eq!(pct.scaled(4, true), Some(1));
        assert_eq!(IntOrString::Int(2).scaled(10, true), Some(2));
        assert_eq!(IntOrString::String("x%".to_owned()).scaled(10, true), None);
        assert_eq!(IntOrString::String("25".to_owned()).percent(), None);
    }

    #[test]
    fn int_or_string_reads_both() {
        let read = |v| serde_json::from_value::<IntOrString>(v).ok();
        assert_eq!(read(serde_json::json!(1)), Some(IntOrString::Int(1)));
        assert_eq!(
            read(serde_json::json!("30%")),
            Some(IntOrString::String("30%".to_owned()))
        );
    }
}
