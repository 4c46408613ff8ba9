//! What the scheduler is given: a [`NodeInfo`] per node (its labels, taints,
//! cordon and Ready state, allocatable resources, images, and the pods bound to
//! it as [`BoundPod`]s), and the pod to place. The controller fills these from
//! cluster state; they hold plain numbers rather than `Quantity`s so that one
//! scheduling pass over a full cluster costs additions, not quantity arithmetic.
//!
//! Also here: how a pod's requests are counted, the one rule both the pod to
//! place and the bound pods go through, so the two always agree.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::api::deployment::Deployment;
use crate::api::image::NormalizedImage;
use crate::api::pod::{Pod, PodSpec, Protocol, ResourceName};
use crate::api::status::ConditionStatus;
use crate::api::{Taint, TaintEffect, Toleration};

use super::filters::condition_taints;
use super::labels::{LabelIds, Selection};

/// kube-scheduler's `DefaultMilliCPURequest`: what a container that requests no
/// CPU counts as when nodes are scored (never when they are filtered).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;

/// kube-scheduler's `DefaultMemoryRequest` (200 MiB), the memory counterpart.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The Deployment a pod belongs to; replicas of one deployment are spread
/// across nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentRef {
    pub namespace: String,
    pub name: String,
}

impl DeploymentRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(deployment: &Deployment) -> Self {
        Self::new(
            deployment.metadata.namespace.clone(),
            deployment.metadata.name.clone(),
        )
    }
}

impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// CPU in millicores and memory in bytes, as kube-scheduler counts them
/// (`MilliValue()` and `Value()` of the quantities, rounded up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Requests {
    pub fn get(&self, name: ResourceName) -> i64 {
        match name {
            ResourceName::Cpu => self.cpu_millis,
            ResourceName::Memory => self.memory_bytes,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.cpu_millis == 0 && self.memory_bytes == 0
    }

    fn add(&mut self, other: Requests) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
    }

    fn sub(&mut self, other: Requests) {
        self.cpu_millis = self.cpu_millis.saturating_sub(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
    }
}

/// What a node may give to pods: its `status.allocatable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    /// How many pods the node takes (kubelet's `--max-pods`, 110 by default).
    pub pods: i64,
}

impl Allocatable {
    pub fn get(&self, name: ResourceName) -> i64 {
        match name {
            ResourceName::Cpu => self.cpu_millis,
            ResourceName::Memory => self.memory_bytes,
        }
    }
}

/// A port a pod takes on its node's addresses. flotilla binds host ports on
/// every address (a `hostIP` is refused at apply), so a port conflicts with
/// the same port and protocol and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub port: i32,
    pub protocol: Protocol,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// A pod bound to a node and not yet terminated, reduced to what the
/// scheduler weighs: its requests, its host ports and its deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundPod {
    /// `namespace/name`, to name it in explanations.
    pub name: String,
    /// As the filter counts them: a missing request is 0.
    pub requests: Requests,
    /// As the scores count them: a missing request is the non-zero default.
    pub non_zero_requests: Requests,
    pub host_ports: Vec<HostPort>,
    pub deployment: Option<DeploymentRef>,
}

impl BoundPod {
    pub fn new(pod: &Pod, deployment: Option<DeploymentRef>) -> Self {
        let (requests, non_zero_requests) = pod_requests(&pod.spec);
        Self {
            name: pod_name(pod),
            requests,
            non_zero_requests,
            host_ports: host_ports(&pod.spec),
            deployment,
        }
    }
}

/// One node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The taints of the cluster file. Those Kubernetes derives from the node's
    /// state (unschedulable, not-ready, unreachable) are not listed here: the
    /// scheduler derives them from `unschedulable` and `ready`.
    pub taints: Vec<Taint>,
    /// Cordoned (`flotilla cordon`).
    pub unschedulable: bool,
    /// The node's Ready condition: False while its agent is known to be
    /// unhealthy, Unknown while its node session is lost.
    pub ready: ConditionStatus,
    pub allocatable: Allocatable,
    /// Images present, by normalised reference ([`image_key`]), with their
    /// sizes in bytes.
    pub images: BTreeMap<String, i64>,
    /// The pods bound to the node that have not terminated.
    pub pods: Vec<BoundPod>,
}

impl NodeInfo {
    /// A Ready, schedulable node with no labels, taints, images or pods.
    pub fn new(name: impl Into<String>, allocatable: Allocatable) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            ready: ConditionStatus::True,
            allocatable,
            images: BTreeMap::new(),
            pods: Vec::new(),
        }
    }

    /// Records an image present on the node, under its normalised reference.
    pub fn add_image(&mut self, reference: &str, size_bytes: i64) {
        self.images.insert(image_key(reference), size_bytes);
    }
}

/// The key an image is known by on nodes and in pods: the reference as Docker
/// normalises it (`busybox` → `docker.io/library/busybox:latest`), which is also
/// how the agent's image store names it. Kubernetes only appends `:latest`, and
/// so misses `busybox` against `docker.io/library/busybox:latest`; a reference
/// that does not parse falls back to that rule.
pub fn image_key(reference: &str) -> String {
    match NormalizedImage::parse(reference) {
        Ok(image) => image.to_string(),
        Err(_) => {
            let last_slash = reference.rfind('/');
            let last_colon = reference.rfind(':');
            if last_colon <= last_slash {
                format!("{reference}:latest")
            } else {
                reference.to_owned()
            }
        }
    }
}

/// The ids a decision looks the pod's wants up by: label keys and values,
/// taints.
#[derive(Clone, Debug, Default)]
pub(super) struct Ids {
    pub labels: LabelIds,
    pub taints: TaintIds,
}

/// The pod being placed, with what every plugin needs worked out once.
pub(super) struct PodFacts<'a> {
    pub spec: &'a PodSpec,
    /// Its node selection, compiled against the nodes' label ids.
    pub selection: Selection<'a>,
    /// By taint id, [`UNTOLERATED_HARD`] and [`UNTOLERATED_SOFT`].
    pub taints: Vec<u8>,
    pub requests: Requests,
    pub non_zero_requests: Requests,
    pub host_ports: Vec<HostPort>,
    /// One key per container, in order ([`image_key`]).
    pub images: Vec<String>,
    pub deployment: Option<&'a DeploymentRef>,
}

impl<'a> PodFacts<'a> {
    pub fn new(pod: &'a Pod, deployment: Option<&'a DeploymentRef>, ids: &'a Ids) -> Self {
        let (requests, non_zero_requests) = pod_requests(&pod.spec);
        let tolerated = |taint: &Taint| pod.spec.tolerations.iter().any(|t| t.tolerates(taint));
        Self {
            spec: &pod.spec,
            selection: Selection::new(&pod.spec, &ids.labels),
            taints: ids
                .taints
                .taints
                .iter()
                .map(|taint| match taint.effect {
                    _ if tolerated(taint) => 0,
                    TaintEffect::PreferNoSchedule => UNTOLERATED_SOFT,
                    TaintEffect::NoSchedule | TaintEffect::NoExecute => UNTOLERATED_HARD,
                })
                .collect(),
            requests,
            non_zero_requests,
            host_ports: host_ports(&pod.spec),
            images: pod
                .spec
                .containers
                .iter()
                .map(|c| image_key(&c.image))
                .collect(),
            deployment,
        }
    }

    pub fn tolerations(&self) -> &'a [Toleration] {
        &self.spec.tolerations
    }
}

/// What a node's bound pods take: the running sums kube-scheduler's cache
/// keeps in its `NodeInfo` (`Requested`, `NonZeroRequested`, the pod count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Usage {
    pub requests: Requests,
    pub non_zero_requests: Requests,
    pub pods: i64,
}

impl Usage {
    /// The sums of a node's bound pods, from scratch.
    pub fn of(node: &NodeInfo) -> Self {
        let mut usage = Usage::default();
        for pod in &node.pods {
            usage.add(pod);
        }
        usage
    }

    /// Counts one more bound pod (kube-scheduler's `NodeInfo.AddPod`).
    pub fn add(&mut self, pod: &BoundPod) {
        self.requests.add(pod.requests);
        self.non_zero_requests.add(pod.non_zero_requests);
        self.pods += 1;
    }

    /// Counts one bound pod less (kube-scheduler's `NodeInfo.RemovePod`):
    /// the inverse of [`Usage::add`] (short of sums saturating at 8 EiB).
    pub fn remove(&mut self, pod: &BoundPod) {
        self.requests.sub(pod.requests);
        self.non_zero_requests.sub(pod.non_zero_requests);
        self.pods -= 1;
    }
}

/// What every filter and score reads of a node, whatever the pod, in one
/// small record: the nodes' records lie side by side, so a search over
/// hundreds of nodes reads memory in order rather than chasing each node's
/// allocations. The rest (labels, ports, images) is read only when the pod
/// names some.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Row {
    pub allocatable: Allocatable,
    pub usage: Usage,
    pub unschedulable: bool,
    /// The node has a NoSchedule or NoExecute taint, its own or one for not
    /// being Ready.
    pub hard_taints: bool,
    /// The node has a PreferNoSchedule taint.
    pub soft_taints: bool,
    /// How many taints the node has, its own and then those for not being
    /// Ready, when [`ROW_TAINTS`] or fewer; more are read from the node.
    taint_count: u8,
    /// Their ids ([`TaintIds`]).
    taints: [u32; ROW_TAINTS],
}

/// How many taint ids a [`Row`] holds.
const ROW_TAINTS: usize = 4;

impl Row {
    pub fn new(node: &NodeInfo, usage: Usage, ids: &mut TaintIds) -> Self {
        let effect = |e: TaintEffect| node.taints.iter().any(|t| t.effect == e);
        let all = node.taints.iter().chain(condition_taints(node.ready));
        let mut taints = [0; ROW_TAINTS];
        let mut taint_count = 0;
        for taint in all {
            if taint_count == ROW_TAINTS {
                taint_count = usize::from(u8::MAX);
                break;
            }
            taints[taint_count] = ids.intern(taint);
            taint_count += 1;
        }
        Self {
            allocatable: node.allocatable,
            usage,
            unschedulable: node.unschedulable,
            hard_taints: node.ready != ConditionStatus::True
                || effect(TaintEffect::NoSchedule)
                || effect(TaintEffect::NoExecute),
            soft_taints: effect(TaintEffect::PreferNoSchedule),
            taint_count: taint_count as u8,
            taints,
        }
    }

    /// The ids of the node's taints, its own and then those for not being
    /// Ready; None when there are too many to hold here.
    pub fn taint_ids(&self) -> Option<&[u32]> {
        self.taints.get(..usize::from(self.taint_count))
    }
}

/// A map from the nodes' strings (label keys and values, image references,
/// deployments, taints) to the numbers decisions use instead. The keys come
/// from the operator's own cluster file and manifests, so the hash is a fast
/// one rather than one that resists chosen collisions.
pub(super) type IdMap<K> = HashMap<K, u32, BuildHasherDefault<FxHasher>>;

/// rustc's FxHash: one rotate, xor and multiply per 8 bytes.
#[derive(Clone, Copy, Default)]
pub(super) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Ids for the distinct taints of the nodes, so that a decision works out
/// once per taint whether the pod tolerates it ([`PodFacts::taints`]), not
/// once per node.
#[derive(Clone, Debug, Default)]
pub(super) struct TaintIds {
    ids: IdMap<Taint>,
    taints: Vec<Taint>,
}

impl TaintIds {
    pub fn intern(&mut self, taint: &Taint) -> u32 {
        if let Some(&id) = self.ids.get(taint) {
            return id;
        }
        let id = self.taints.len() as u32;
        self.ids.insert(taint.clone(), id);
        self.taints.push(taint.clone());
        id
    }
}

/// What a decision knows of each distinct taint, by id: whether the pod
/// leaves it untolerated with a NoSchedule or NoExecute effect
/// ([`UNTOLERATED_HARD`]) or a PreferNoSchedule one ([`UNTOLERATED_SOFT`]).
pub(super) const UNTOLERATED_HARD: u8 = 1;
pub(super) const UNTOLERATED_SOFT: u8 = 2;

/// The host ports a node's bound pods take: kube-scheduler's `UsedPorts`,
/// each port with how many bound pods take it (a pod listing a port twice
/// counts twice), sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Ports(Vec<(HostPort, u32)>);

impl Ports {
    pub fn of(node: &NodeInfo) -> Self {
        let mut ports = Ports::default();
        for pod in &node.pods {
            ports.add(pod);
        }
        ports
    }

    /// Only those of `wanted` the node's bound pods take: all one decision
    /// asks about.
    pub fn among(node: &NodeInfo, wanted: &[HostPort]) -> Self {
        let mut ports = Ports::default();
        if wanted.is_empty() {
            return ports;
        }
        for pod in &node.pods {
            for port in pod.host_ports.iter().filter(|p| wanted.contains(p)) {
                match ports.find(port) {
                    Ok(i) => ports.0[i].1 += 1,
                    Err(i) => ports.0.insert(i, (*port, 1)),
                }
            }
        }
        ports
    }

    pub fn add(&mut self, pod: &BoundPod) {
        for port in &pod.host_ports {
            match self.find(port) {
                Ok(i) => self.0[i].1 += 1,
                Err(i) => self.0.insert(i, (*port, 1)),
            }
        }
    }

    pub fn remove(&mut self, pod: &BoundPod) {
        for port in &pod.host_ports {
            if let Ok(i) = self.find(port) {
                self.0[i].1 -= 1;
                if self.0[i].1 == 0 {
                    self.0.remove(i);
                }
            }
        }
    }

    /// Whether a bound pod takes `port`.
    pub fn holds(&self, port: &HostPort) -> bool {
        !self.0.is_empty() && self.find(port).is_ok()
    }

    fn find(&self, port: &HostPort) -> Result<usize, usize> {
        self.0
            .binary_search_by_key(&port_key(port), |(p, _)| port_key(p))
    }
}

/// The order [`Ports`] are kept in.
fn port_key(port: &HostPort) -> (i32, u8) {
    let protocol = match port.protocol {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    };
    (port.port, protocol)
}

/// A pod's requests as the filter counts them and as the scores count them.
///
/// Kubernetes' rule is max(sum of the containers, each init container) plus
/// the pod's overhead. flotilla's pods have neither init containers nor
/// overhead (`api` refuses both), so the rule comes down to the sum; when
/// either arrives, it belongs here.
fn pod_requests(spec: &PodSpec) -> (Requests, Requests) {
    let mut requests = Requests::default();
    let mut non_zero = Requests::default();
    for container in &spec.containers {
        let resources = &container.resources;
        let cpu = resources.request(ResourceName::Cpu).map(|q| q.millis());
        let memory = resources.request(ResourceName::Memory).map(|q| q.value());
        requests.add(Requests {
            cpu_millis: cpu.unwrap_or(0),
            memory_bytes: memory.unwrap_or(0),
        });
        // Only a missing request takes the default: an explicit 0 stays 0,
        // as in kube-scheduler's `GetNonzeroRequestForResource`.
        non_zero.add(Requests {
            cpu_millis: cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory_bytes: memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
        });
    }
    (requests, non_zero)
}

fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.host_ports()
        .map(|(port, protocol)| HostPort { port, protocol })
        .collect()
}

/// `namespace/name`, or just the name when the pod names no namespace.
pub(super) fn pod_name(pod: &Pod) -> String {
    let meta = &pod.metadata;
    if meta.namespace.is_empty() {
        meta.name.clone()
    } else {
        format!("{}/{}", meta.namespace, meta.name)
    }
}
