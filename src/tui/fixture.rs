//! A made-up cluster for the console's snapshot tests and its frame
//! benchmark: nodes driven through the same [`ClusterState`] writer the
//! sessions use, on a fixed clock, so every render of it is the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::model::{ConsoleData, LeaseView};
use crate::agent::node::{DiskUsage, MetricsSample, MetricsSeries, NodeFacts};
use crate::agent::protocol::messages::{HelloReply, PodRecord};
use crate::api::status::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodPhase, PodStatus,
};
use crate::api::{Container, ObjectMeta, Pod, PodSpec};
use crate::cluster::{ClusterState, ManualClock, StateOptions};
use crate::config::cluster_file::{ClusterConfig, NodeConfig};

const GIB: u64 = 1024 * 1024 * 1024;

/// The fixture's "now".
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn node_config(i: usize) -> NodeConfig {
    NodeConfig {
        name: format!("node{i}"),
        address: format!("10.77.0.{}", 10 + i),
        port: Some(22),
        user: Some("root".into()),
        identity: None,
        labels: BTreeMap::from([("zone".to_string(), ["a", "b", "c"][i % 3].to_string())]),
        taints: Vec::new(),
        host_key: None,
        cgroup_parent: "flotilla".into(),
    }
}

fn sample(seq: u64, at: DateTime<Utc>, node: usize) -> MetricsSample {
    MetricsSample {
        seq,
        time: at,
        cpu_percent: Some(((seq * 7 + node as u64 * 13) % 100) as f64),
        memory_total_bytes: 8 * GIB,
        memory_available_bytes: (2 + node as u64 % 5) * GIB,
        disk_total_bytes: 100 * GIB,
        disk_free_bytes: 60 * GIB,
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        net_rx_bytes_per_sec: None,
        net_tx_bytes_per_sec: None,
    }
}

/// Pod `i`, the `k`th on node index `node`: mostly Running, some Pending,
/// CrashLoopBackOff or Completed. Each has an address in its node's /24 but
/// the Pending ones, whose sandbox is still being made.
fn pod(i: usize, node: usize, k: usize, started: DateTime<Utc>) -> PodRecord {
    let (phase, state, restarts) = match i % 10 {
        7 => (
            PodPhase::Running,
            ContainerState::Waiting(ContainerStateWaiting {
                reason: "CrashLoopBackOff".into(),
                ..Default::default()
            }),
            4,
        ),
        8 => (
            PodPhase::Pending,
            ContainerState::Waiting(ContainerStateWaiting {
                reason: "ContainerCreating".into(),
                ..Default::default()
            }),
            0,
        ),
        9 => (
            PodPhase::Succeeded,
            ContainerState::Terminated(ContainerStateTerminated {
                exit_code: 0,
                reason: "Completed".into(),
                ..Default::default()
            }),
            0,
        ),
        _ => (
            PodPhase::Running,
            ContainerState::Running(ContainerStateRunning {
                started_at: Some(started),
            }),
            0,
        ),
    };
    let ready = matches!(state, ContainerState::Running(_));
    let pod_ip = if phase == PodPhase::Pending {
        String::new()
    } else {
        format!("10.88.{node}.{}", 2 + k % 250)
    };
    PodRecord {
        uid: format!("uid-{i}"),
        pod: Pod::new(
            ObjectMeta {
                name: format!("web-{i:05}"),
                namespace: if i.is_multiple_of(4) {
                    "kube"
                } else {
                    "default"
                }
                .into(),
                ..Default::default()
            },
            PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: "10.77.0.1:5000/demo/httpd:latest".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
        status: PodStatus {
            phase,
            start_time: Some(started),
            pod_ip,
            container_statuses: vec![ContainerStatus {
                name: "main".into(),
                state,
                ready,
                restart_count: restarts,
                last_state: None,
                image: String::new(),
                image_id: String::new(),
                container_id: String::new(),
                started: None,
            }],
            ..Default::default()
        },
    }
}

/// `nodes` nodes (the last one unreachable when there are more than two),
/// `pods` pods spread over them, ten minutes of figures each.
pub fn cluster(nodes: usize, pods: usize) -> ConsoleData {
    let config = ClusterConfig {
        path: PathBuf::from("cluster.toml"),
        name: "fixture".into(),
        nodes: (1..=nodes).map(node_config).collect(),
        registries: BTreeMap::new(),
        manifests: Vec::new(),
        pod_cidr: crate::config::cluster_file::DEFAULT_POD_CIDR,
    };
    let start = now() - Duration::minutes(10);
    // The figures arrive "now", covering the ten minutes before it.
    let clock = Arc::new(ManualClock::new(now()));
    let state = ClusterState::with_clock(&config, clock.clone(), StateOptions::default());
    let mut by_node: Vec<Vec<PodRecord>> = vec![Vec::new(); nodes];
    for i in 0..pods {
        let node = i % nodes;
        by_node[node].push(pod(
            i,
            node,
            i / nodes,
            start + Duration::seconds(i as i64 % 500),
        ));
    }
    for (n, pods) in by_node.into_iter().enumerate() {
        let name = format!("node{}", n + 1);
        let Ok(writer) = state.node(&name) else {
            continue;
        };
        writer.connecting();
        writer.connected(
            HelloReply {
                version: "flotilla/1".into(),
                agent_version: "flotilla-agent 0.1.0".into(),
                node: name.clone(),
                capabilities: vec!["node.metrics".into()],
                pid: None,
                agent_binary: None,
            },
            NodeFacts {
                hostname: name.clone(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0".into(),
                architecture: "amd64".into(),
                cpus: 4,
                memory_bytes: 8 * GIB,
                disk: DiskUsage {
                    path: "/var/lib/flotilla".into(),
                    total_bytes: 100 * GIB,
                    free_bytes: 60 * GIB,
                },
                boot_time: Some(start - Duration::days(3)),
                pod_network: None,
                addresses: Vec::new(),
            },
        );
        writer.metrics(MetricsSeries {
            interval_ms: 1000,
            capacity: 600,
            samples: (0..600)
                .map(|s| sample(s, start + Duration::seconds(s as i64), n))
                .collect(),
        });
        writer.pods(pods);
    }
    state.tick();
    if nodes > 2 {
        let last = format!("node{nodes}");
        if let Ok(writer) = state.node(&last) {
            writer.failed(
                crate::cluster::FailureKind::Unreachable,
                "connect: no route to host",
            );
        }
    }
    ConsoleData {
        snapshot: state.snapshot(),
        world: None,
        store_events: Arc::default(),
        manifests: Arc::default(),
        lease: LeaseView::Mine,
    }
}
