//! The v1 Pod as flotilla runs it: the Kubernetes fields flotilla supports, with
//! Kubernetes' names, so a stored pod serializes back to the JSON `kubectl` would
//! show. Fields whose Kubernetes default is a constant are plain values filled by
//! serde; `imagePullPolicy`, whose default depends on the image, is filled by
//! `defaults`. Anything a manifest may say that is not here has been reported and
//! removed by `unsupported` before these types are read.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::affinity::{Affinity, NodeAffinity, NodeSelector, PreferredSchedulingTerm};
use super::image::default_pull_policy;
use super::meta::ObjectMeta;
use super::node::Toleration;
use super::quantity::Quantity;

pub const POD_API_VERSION: &str = "v1";
pub const POD_KIND: &str = "Pod";

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pod {
    #[serde(default = "pod_api_version")]
    pub api_version: String,
    #[serde(default = "pod_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

fn pod_api_version() -> String {
    POD_API_VERSION.to_owned()
}

fn pod_kind() -> String {
    POD_KIND.to_owned()
}

impl Pod {
    pub fn new(metadata: ObjectMeta, spec: PodSpec) -> Self {
        Self {
            api_version: pod_api_version(),
            kind: pod_kind(),
            metadata,
            spec,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default = "default_grace")]
    pub termination_grace_period_seconds: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Binds the pod to this node, bypassing the scheduler.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_network: bool,
}

impl Default for PodSpec {
    fn default() -> Self {
        Self {
            containers: Vec::new(),
            restart_policy: RestartPolicy::default(),
            termination_grace_period_seconds: DEFAULT_GRACE_SECONDS,
            node_selector: BTreeMap::new(),
            node_name: String::new(),
            affinity: None,
            tolerations: Vec::new(),
            host_network: false,
        }
    }
}

impl PodSpec {
    /// The ports the pod takes on its node: each `hostPort`, and under
    /// `hostNetwork` each `containerPort` that names none (what defaulting
    /// makes of it), so a reader gets the same answer before and after defaults.
    pub fn host_ports(&self) -> impl Iterator<Item = (i32, Protocol)> + '_ {
        let host_network = self.host_network;
        self.containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(move |p| match p.host_port {
                0 if host_network && p.container_port != 0 => Some((p.container_port, p.protocol)),
                0 => None,
                port => Some((port, p.protocol)),
            })
    }

    /// The node affinity's required selector, if any.
    pub fn required_node_selector(&self) -> Option<&NodeSelector> {
        self.node_affinity()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()
    }

    /// The node affinity's preferred terms (none when absent).
    pub fn preferred_node_terms(&self) -> &[PreferredSchedulingTerm] {
        self.node_affinity().map_or(&[], |na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_slice()
        })
    }

    fn node_affinity(&self) -> Option<&NodeAffinity> {
        self.affinity.as_ref()?.node_affinity.as_ref()
    }
}

fn default_grace() -> i64 {
    DEFAULT_GRACE_SECONDS
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub resources: ResourceRequirements,
    /// Filled by `defaults` from the image when a manifest leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
}

impl Container {
    /// The pull policy in force: the one written (or defaulted), else Kubernetes'
    /// default for the image.
    pub fn pull_policy(&self) -> PullPolicy {
        self.image_pull_policy
            .unwrap_or_else(|| default_pull_policy(&self.image))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    /// An IANA service name, unique within the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub container_port: i32,
    /// 0 when the port is not published on the node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// A literal environment variable (`valueFrom` is not supported and is refused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Requests (what the scheduler reserves) and limits (what the kernel enforces).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,
}

impl ResourceRequirements {
    /// The amount reserved for `name`: the request, or the limit when no request
    /// is set, as the API server's defaulting fills it. Records written before
    /// defaulting (or by hand) then count the same as defaulted ones.
    pub fn request(&self, name: ResourceName) -> Option<&Quantity> {
        self.requests.get(name).or_else(|| self.limits.get(name))
    }
}

/// The resources flotilla schedules and enforces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl ResourceList {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }

    /// The named resources that are set, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceName, &Quantity)> {
        [
            (ResourceName::Cpu, self.cpu.as_ref()),
            (ResourceName::Memory, self.memory.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, q)| q.map(|q| (name, q)))
    }

    pub fn get(&self, name: ResourceName) -> Option<&Quantity> {
        match name {
            ResourceName::Cpu => self.cpu.as_ref(),
            ResourceName::Memory => self.memory.as_ref(),
        }
    }

    pub fn get_mut(&mut self, name: ResourceName) -> &mut Option<Quantity> {
        match name {
            ResourceName::Cpu => &mut self.cpu,
            ResourceName::Memory => &mut self.memory,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceName {
    Cpu,
    Memory,
}

impl ResourceName {
    pub const ALL: [ResourceName; 2] = [ResourceName::Cpu, ResourceName::Memory];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub const NAMES: &'static [&'static str] = &["Always", "OnFailure", "Never"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::OnFailure => "OnFailure",
            Self::Never => "Never",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub const NAMES: &'static [&'static str] = &["Always", "IfNotPresent", "Never"];
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub const NAMES: &'static [&'static str] = &["TCP", "UDP", "SCTP"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn a_request_defaults_to_the_limit() {
        let mut r = ResourceRequirements::default();
        assert_eq!(r.request(ResourceName::Cpu), None);
        r.limits.cpu = Some(q("500m"));
        assert_eq!(r.request(ResourceName::Cpu), Some(&q("500m")));
        r.requests.cpu = Some(q("0"));
        assert_eq!(r.request(ResourceName::Cpu), Some(&q("0")));
        assert_eq!(r.request(ResourceName::Memory), None);
    }

    #[test]
    fn host_ports_include_container_ports_under_host_network() {
        let port = |container_port, host_port, protocol| ContainerPort {
            container_port,
            host_port,
            protocol,
            ..ContainerPort::default()
        };
        let mut spec = PodSpec {
            containers: vec![
                Container {
                    ports: vec![port(80, 8080, Protocol::Tcp), port(53, 0, Protocol::Udp)],
                    ..Container::default()
                },
                Container {
                    ports: vec![port(9000, 9000, Protocol::Tcp)],
                    ..Container::default()
                },
            ],
            ..PodSpec::default()
        };
        let ports: Vec<_> = spec.host_ports().collect();
        assert_eq!(ports, [(8080, Protocol::Tcp), (9000, Protocol::Tcp)]);
        spec.host_network = true;
        let ports: Vec<_> = spec.host_ports().collect();
        assert_eq!(
            ports,
            [
                (8080, Protocol::Tcp),
                (53, Protocol::Udp),
                (9000, Protocol::Tcp)
            ]
        );
    }
}
