//! Scheduling one pod over a full cluster: one pod over 50 nodes with 1,000
//! bound pods. (Issue 6's figure is a throughput, 10,000 pods onto 1,000 and
//! 5,000 nodes; that case is still to be added, see BENCHMARKS.md.)
//!
//! Run with `cargo bench --bench scheduler`.
//!
//! The cluster is built so that every plugin does its work: nodes carry
//! labels, a few taints and images; the bound pods are replicas of ten
//! deployments with requests and some host ports; the pod placed is a replica
//! with requests, a nodeSelector, a preferred node affinity, a toleration and
//! a host port, so no filter or score is skipped. A few nodes are cordoned,
//! one is not Ready, and some are full, so the filters reject some nodes too.
//! `explain` adds rendering the decision as text.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::api::meta::ObjectMeta;
use flotilla::api::pod::{Container, ContainerPort, Pod, PodSpec, Protocol, ResourceList};
use flotilla::api::status::ConditionStatus;
use flotilla::api::{
    Affinity, NodeAffinity, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm, Quantity, QuantityFormat, Toleration, TolerationOperator,
};
use flotilla::scheduler::{Allocatable, BoundPod, DeploymentRef, NodeInfo, Profile};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NODES: usize = 50;
const PODS_PER_NODE: usize = 20;
const DEPLOYMENTS: usize = 10;
const GI: i64 = 1024 * 1024 * 1024;
const MI: i64 = 1024 * 1024;

fn container(image: &str, cpu_millis: i64, memory_bytes: i64, host_port: i32) -> Container {
    let mut c = Container {
        name: "app".to_owned(),
        image: image.to_owned(),
        ..Container::default()
    };
    c.resources.requests = ResourceList {
        cpu: Some(Quantity::from_millis(cpu_millis)),
        memory: Some(Quantity::from_value(memory_bytes, QuantityFormat::BinarySI)),
    };
    if host_port != 0 {
        c.ports = vec![ContainerPort {
            container_port: 8080,
            host_port,
            protocol: Protocol::Tcp,
            ..ContainerPort::default()
        }];
    }
    c
}

fn pod(name: &str, spec: PodSpec) -> Pod {
    Pod::new(
        ObjectMeta {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            ..ObjectMeta::default()
        },
        spec,
    )
}

fn image(i: usize) -> String {
    format!("10.77.0.1:5000/demo/app{i}:1.0")
}

fn cluster() -> Vec<NodeInfo> {
    (0..NODES)
        .map(|n| {
            let mut node = NodeInfo::new(
                format!("node{n:02}"),
                Allocatable {
                    cpu_millis: 16_000,
                    memory_bytes: 64 * GI,
                    pods: 110,
                },
            );
            node.labels = BTreeMap::from([
                ("zone".to_owned(), ["a", "b", "c"][n % 3].to_owned()),
                (
                    "disktype".to_owned(),
                    if n % 2 == 0 { "ssd" } else { "hdd" }.to_owned(),
                ),
                ("cores".to_owned(), "16".to_owned()),
            ]);
            if n % 7 == 0 {
                node.taints = vec!["spot=true:PreferNoSchedule".parse().expect("taint")];
            }
            if n % 11 == 0 {
                node.taints
                    .push("dedicated=db:NoSchedule".parse().expect("taint"));
            }
            node.unschedulable = n % 17 == 5;
            if n == 13 {
                node.ready = ConditionStatus::False;
            }
            for i in 0..10 {
                node.add_image(&image((n + i) % 30), (50 + 20 * i as i64) * MI);
            }
            // Node 49 is full: its pods request all its memory.
            let memory = if n == NODES - 1 {
                64 * GI / PODS_PER_NODE as i64
            } else {
                512 * MI
            };
            node.pods = (0..PODS_PER_NODE)
                .map(|p| {
                    let d = (n + p) % DEPLOYMENTS;
                    let host_port = if p == 0 { 9000 + (n % 5) as i32 } else { 0 };
                    let spec = PodSpec {
                        containers: vec![container(&image(d), 250, memory, host_port)],
                        ..PodSpec::default()
                    };
                    let deployment = DeploymentRef::new("default", format!("app{d}"));
                    BoundPod::new(&pod(&format!("app{d}-{n}-{p}"), spec), Some(deployment))
                })
                .collect();
            node
        })
        .collect()
}

fn incoming() -> Pod {
    let preference = |weight, key: &str, value: &str| PreferredSchedulingTerm {
        weight,
        preference: NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: key.to_owned(),
                operator: NodeSelectorOperator::In,
                values: vec![value.to_owned()],
            }],
            match_fields: Vec::new(),
        },
    };
    pod(
        "app3-new",
        PodSpec {
            containers: vec![container(&image(3), 500, GI, 9001)],
            node_selector: BTreeMap::from([("cores".to_owned(), "16".to_owned())]),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: None,
                    preferred_during_scheduling_ignored_during_execution: vec![
                        preference(10, "disktype", "ssd"),
                        preference(5, "zone", "b"),
                    ],
                }),
            }),
            tolerations: vec![Toleration {
                key: "spot".to_owned(),
                operator: Some(TolerationOperator::Exists),
                ..Toleration::default()
            }],
            ..PodSpec::default()
        },
    )
}

fn bench(c: &mut Criterion) {
    let nodes = cluster();
    let pod = incoming();
    let deployment = DeploymentRef::new("default", "app3");
    let profile = Profile::default();
    let mut rng = StdRng::seed_from_u64(1);

    let decision = profile.schedule(&pod, Some(&deployment), &nodes, &mut rng);
    assert!(decision.node().is_some(), "{decision}");
    assert!(
        decision.nodes.iter().any(|v| v.rejection().is_some()),
        "the bench should exercise rejections too"
    );

    let mut group = c.benchmark_group("scheduler");
    group.bench_function("schedule_50_nodes_1000_pods", |b| {
        b.iter(|| {
            black_box(profile.schedule(
                black_box(&pod),
                Some(&deployment),
                black_box(&nodes),
                &mut rng,
            ))
        })
    });
    group.bench_function("schedule_and_explain_50_nodes_1000_pods", |b| {
        b.iter(|| {
            let decision = profile.schedule(
                black_box(&pod),
                Some(&deployment),
                black_box(&nodes),
                &mut rng,
            );
            black_box(decision.to_string())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
