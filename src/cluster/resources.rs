//! A node's resources in Kubernetes' terms: capacity (what the host has),
//! allocatable (what pods may be given: capacity less the kubelet's default
//! reservation) and allocated (what the pods on it request and are limited to,
//! as `kubectl describe node` shows under "Allocated resources"). Amounts are
//! [`Quantity`]s so the scheduler can compare them with pod requests directly.

use serde::Serialize;

use crate::agent::node::NodeFacts;
use crate::agent::protocol::messages::PodRecord;
use crate::api::pod::ResourceName;
use crate::api::{Quantity, QuantityFormat};

/// Kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// Kubelet's default hard eviction threshold `memory.available<100Mi`.
pub const EVICTION_HARD_MEMORY_BYTES: u64 = 100 * 1024 * 1024;

/// Kubelet's default hard eviction threshold `nodefs.available<10%`. The
/// agent's root holds both the images and the containers' layers, so it is
/// nodefs and imagefs at once; the imagefs default (`<15%`) is left out
/// because flotilla has no image garbage collector for it to trigger.
pub const EVICTION_HARD_NODEFS_PERCENT: u64 = 10;

/// The four resources kubelet reports, with their Kubernetes names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeResources {
    /// CPUs online, in cores.
    pub cpu: Quantity,
    /// Bytes.
    pub memory: Quantity,
    /// Bytes of the file system holding the agent's root (kubelet's nodefs).
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Quantity,
    /// How many pods the node takes.
    pub pods: Quantity,
}

impl NodeResources {
    /// What the host has, from its facts. Memory and storage are binary
    /// quantities (as kubelet makes them), so they print as `16318420Ki`.
    pub fn capacity(facts: &NodeFacts) -> Self {
        Self {
            cpu: Quantity::from_value(i64::from(facts.cpus), QuantityFormat::DecimalSI),
            memory: bytes(facts.memory_bytes),
            ephemeral_storage: bytes(facts.disk.total_bytes),
            pods: Quantity::from_value(DEFAULT_MAX_PODS, QuantityFormat::DecimalSI),
        }
    }

    /// Capacity less what kubelet reserves by default: no kube-reserved or
    /// system-reserved, but the hard eviction thresholds, which kubelet also
    /// subtracts (`memory.available` 100Mi from memory, `nodefs.available` 10%
    /// of capacity from ephemeral-storage; Kubernetes' `GetNodeAllocatableReservation`).
    /// Never below zero.
    pub fn allocatable(capacity: &NodeResources) -> Self {
        let memory_reserve = bytes(EVICTION_HARD_MEMORY_BYTES);
        // Integer percent of the capacity, rounded down (kubelet multiplies by
        // a float32 percentage; the difference is a few bytes).
        let storage_bytes = capacity.ephemeral_storage.value().max(0) as i128;
        let storage_reserve = Quantity::from_nanos(
            storage_bytes * i128::from(EVICTION_HARD_NODEFS_PERCENT) / 100 * 1_000_000_000,
            QuantityFormat::BinarySI,
        )
        .unwrap_or_else(|_| Quantity::zero());
        Self {
            cpu: capacity.cpu.clone(),
            memory: minus(&capacity.memory, &memory_reserve),
            ephemeral_storage: minus(&capacity.ephemeral_storage, &storage_reserve),
            pods: capacity.pods.clone(),
        }
    }

    /// The resources by Kubernetes name, in the order `kubectl describe` prints them.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Quantity)> {
        [
            ("cpu", &self.cpu),
            ("ephemeral-storage", &self.ephemeral_storage),
            ("memory", &self.memory),
            ("pods", &self.pods),
        ]
        .into_iter()
    }
}

/// CPU and memory amounts, zero when nothing asks for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuMemory {
    pub cpu: Quantity,
    pub memory: Quantity,
}

impl Default for CpuMemory {
    fn default() -> Self {
        Self {
            cpu: Quantity::zero(),
            memory: Quantity::zero(),
        }
    }
}

impl CpuMemory {
    pub fn get(&self, name: ResourceName) -> &Quantity {
        match name {
            ResourceName::Cpu => &self.cpu,
            ResourceName::Memory => &self.memory,
        }
    }

    fn add(&mut self, name: ResourceName, amount: &Quantity) {
        let sum = match name {
            ResourceName::Cpu => &mut self.cpu,
            ResourceName::Memory => &mut self.memory,
        };
        *sum = plus(sum, amount);
    }
}

/// What the pods on a node take, as `kubectl describe node` sums it: the
/// requests and the limits of the containers of every pod that has not
/// terminated (phase neither Succeeded nor Failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Allocated {
    pub requests: CpuMemory,
    pub limits: CpuMemory,
    /// Pods counted (not terminated).
    pub pods: usize,
}

impl Allocated {
    pub fn of<'a>(pods: impl IntoIterator<Item = &'a PodRecord>) -> Self {
        let mut allocated = Allocated::default();
        for record in pods {
            if record.status.phase.is_terminal() {
                continue;
            }
            allocated.pods += 1;
            for container in &record.pod.spec.containers {
                for name in ResourceName::ALL {
                    if let Some(request) = container.resources.request(name) {
                        allocated.requests.add(name, request);
                    }
                    if let Some(limit) = container.resources.limits.get(name) {
                        allocated.limits.add(name, limit);
                    }
                }
            }
        }
        allocated
    }
}

/// `part` as a whole percentage of `whole`, truncated as `kubectl describe
/// node` prints it (`250m (12%)`); 0 when `whole` is zero.
pub fn percent_of(part: &Quantity, whole: &Quantity) -> i64 {
    if whole.is_zero() {
        return 0;
    }
    (part.nanos() as f64 / whole.nanos() as f64 * 100.0) as i64
}

fn bytes(n: u64) -> Quantity {
    Quantity::from_value(
        i64::try_from(n).unwrap_or(i64::MAX),
        QuantityFormat::BinarySI,
    )
}

/// `a + b`, saturating at the largest quantity rather than failing: an absurd
/// limit on one pod must not hide the others' figures.
fn plus(a: &Quantity, b: &Quantity) -> Quantity {
    a.checked_add(b).unwrap_or_else(|| {
        let max = i128::from(i64::MAX) * 1_000_000_000;
        let format = if a.is_zero() { b.format() } else { a.format() };
        let nanos = if a.nanos() + b.nanos() < 0 { -max } else { max };
        Quantity::from_nanos(nanos, format).unwrap_or_else(|_| Quantity::zero())
    })
}

/// `a - b`, never below zero.
fn minus(a: &Quantity, b: &Quantity) -> Quantity {
    match a.checked_sub(b) {
        Some(q) if !q.is_negative() => q,
        _ => Quantity::from_value(0, a.format()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::node::DiskUsage;
    use crate::api::status::{PodPhase, PodStatus};
    use crate::api::{Container, ObjectMeta, Pod, PodSpec, ResourceList, ResourceRequirements};

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    pub(crate) fn facts(cpus: u32, memory: u64, disk: u64) -> NodeFacts {
        NodeFacts {
            hostname: "host".into(),
            os: "Test OS".into(),
            kernel: "6.1.0".into(),
            architecture: "amd64".into(),
            cpus,
            memory_bytes: memory,
            disk: DiskUsage {
                path: "/var/lib/flotilla".into(),
                total_bytes: disk,
                free_bytes: disk / 2,
            },
            boot_time: None,
            pod_network: None,
            addresses: Vec::new(),
        }
    }

    fn container(requests: (&str, &str), limits: (&str, &str)) -> Container {
        let list = |(cpu, memory): (&str, &str)| ResourceList {
            cpu: (!cpu.is_empty()).then(|| q(cpu)),
            memory: (!memory.is_empty()).then(|| q(memory)),
        };
        Container {
            name: "c".into(),
            image: "busybox".into(),
            resources: ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
            },
            ..Default::default()
        }
    }

    fn record(name: &str, phase: PodPhase, containers: Vec<Container>) -> PodRecord {
        PodRecord {
            uid: format!("uid-{name}"),
            pod: Pod::new(
                ObjectMeta {
                    name: name.into(),
                    namespace: "default".into(),
                    ..Default::default()
                },
                PodSpec {
                    containers,
                    ..Default::default()
                },
            ),
            status: PodStatus {
                phase,
                ..Default::default()
            },
        }
    }

    #[test]
    fn capacity_and_allocatable_follow_kubelet_defaults() {
        let gib = 1024 * 1024 * 1024;
        let cap = NodeResources::capacity(&facts(4, 8 * gib, 100 * gib));
        assert_eq!(cap.cpu.to_string(), "4");
        assert_eq!(cap.memory.to_string(), "8Gi");
        assert_eq!(cap.ephemeral_storage.to_string(), "100Gi");
        assert_eq!(cap.pods.to_string(), "110");
        let alloc = NodeResources::allocatable(&cap);
        assert_eq!(alloc.cpu, q("4"));
        assert_eq!(alloc.memory, q("8092Mi"), "8Gi less 100Mi");
        assert_eq!(alloc.memory.to_string(), "8092Mi");
        assert_eq!(alloc.ephemeral_storage, q("90Gi"), "less 10%");
        assert_eq!(alloc.pods, q("110"));
        // A byte count that is not a multiple of 1024 prints as plain bytes, as kubelet's does.
        let odd = NodeResources::capacity(&facts(1, 1_000_001, 0));
        assert_eq!(odd.memory.to_string(), "1000001");
        let tiny = NodeResources::allocatable(&odd);
        assert_eq!(tiny.memory, Quantity::zero(), "never negative");
        assert_eq!(tiny.ephemeral_storage, Quantity::zero());
        assert_eq!(
            cap.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["cpu", "ephemeral-storage", "memory", "pods"]
        );
    }

    #[test]
    fn allocated_sums_requests_and_limits_of_pods_still_running() {
        let pods = [
            record(
                "a",
                PodPhase::Running,
                vec![
                    container(("100m", "64Mi"), ("500m", "128Mi")),
                    container(("", ""), ("250m", "")), // request defaults to the limit
                ],
            ),
            record(
                "b",
                PodPhase::Pending,
                vec![container(("1", "1Gi"), ("", ""))],
            ),
            record(
                "done",
                PodPhase::Succeeded,
                vec![container(("8", "8Gi"), ("8", "8Gi"))],
            ),
            record(
                "failed",
                PodPhase::Failed,
                vec![container(("8", "8Gi"), ("", ""))],
            ),
            record("unknown", PodPhase::Unknown, vec![]),
        ];
        let a = Allocated::of(&pods);
        assert_eq!(a.pods, 3);
        assert_eq!(a.requests.cpu, q("1350m"));
        assert_eq!(a.requests.cpu.to_string(), "1350m");
        assert_eq!(a.requests.memory, q("1088Mi"));
        assert_eq!(a.limits.cpu, q("750m"));
        assert_eq!(a.limits.memory, q("128Mi"));
        assert_eq!(a.limits.get(ResourceName::Memory).to_string(), "128Mi");
        assert_eq!(Allocated::of(&[]).requests.cpu.to_string(), "0");
        // kubectl's percentages: truncated.
        assert_eq!(percent_of(&a.requests.cpu, &q("2")), 67);
        assert_eq!(percent_of(&q("128Mi"), &q("8092Mi")), 1);
        assert_eq!(percent_of(&q("1"), &Quantity::zero()), 0);
    }

    #[test]
    fn sums_saturate_instead_of_failing() {
        let huge = q("9223372036854775807");
        let pods = [
            record(
                "a",
                PodPhase::Running,
                vec![container(("", ""), ("1", "9223372036854775807"))],
            ),
            record(
                "b",
                PodPhase::Running,
                vec![container(("", ""), ("1", "1Gi"))],
            ),
        ];
        let a = Allocated::of(&pods);
        assert_eq!(a.limits.memory, huge);
        assert_eq!(a.limits.cpu, q("2"));
    }
}
