//! The scheduler's benchmarks (issue 6). Run with `cargo bench --bench scheduler`.
//!
//! Throughput: 10,000 pods placed one after another onto 1,000 nodes and onto
//! 5,000 nodes, each placement binding the pod to the chosen node in a
//! [`Cache`] so that later placements count it, as kube-scheduler's cache
//! counts an assumed pod. Every plugin works: the pods request cpu and
//! memory (a few nothing), some have a nodeSelector, a required or preferred
//! node affinity, tolerations and host ports; all are replicas of
//! deployments, so they are spread, and their images are on some nodes. The
//! nodes come in four sizes with labels, some carry taints (PreferNoSchedule,
//! and NoSchedule on the GPU pool), some are cordoned or not Ready. Criterion
//! reports placements per second ("elem/s"). `place` skips the explanation;
//! `schedule` builds every evaluated node's verdict. The `_cpu_time` lines
//! time the same by the thread's CPU time instead of the clock, which on a
//! shared machine leaves out the time spent waiting for a core.
//!
//! One decision: one pod over 50 nodes with 1,000 bound pods, through
//! [`Profile::schedule`] (no cache, every node evaluated, the sums added up
//! from the bound pods). The cluster is built so that every plugin does its
//! work: nodes carry labels, a few taints and images; the bound pods are
//! replicas of ten deployments with requests and some host ports; the pod
//! placed is a replica with requests, a nodeSelector, a preferred node
//! affinity, a toleration and a host port, so no filter or score is skipped.
//! A few nodes are cordoned, one is not Ready, and some are full, so the
//! filters reject some nodes too. `explain` adds rendering the decision as
//! text.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flotilla::api::meta::ObjectMeta;
use flotilla::api::pod::{Container, ContainerPort, Pod, PodSpec, Protocol, ResourceList};
use flotilla::api::status::ConditionStatus;
use flotilla::api::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
    NodeSelectorTerm, PreferredSchedulingTerm, Quantity, QuantityFormat, TaintEffect, Toleration,
    TolerationOperator,
};
use flotilla::scheduler::{Allocatable, BoundPod, Cache, DeploymentRef, NodeInfo, Profile};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NODES: usize = 50;
const PODS: usize = 10_000;
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

// The throughput workload: N nodes and 10,000 pods that make every plugin work.

/// Nodes of four sizes, labelled by zone, disk, pool and size; every seventh
/// carries a PreferNoSchedule taint, every tenth is a GPU node with a
/// NoSchedule taint only GPU pods tolerate, one in fifty is cordoned and about
/// one in a hundred is not Ready. Each holds 8 of 40 images.
fn throughput_nodes(count: usize) -> Vec<NodeInfo> {
    const SHAPES: [(i64, i64); 4] = [(4_000, 16), (8_000, 32), (16_000, 64), (32_000, 128)];
    (0..count)
        .map(|n| {
            let (cpu_millis, memory_gi) = SHAPES[n % SHAPES.len()];
            let name = format!("node{n:04}");
            let mut node = NodeInfo::new(
                name.clone(),
                Allocatable {
                    cpu_millis,
                    memory_bytes: memory_gi * GI,
                    pods: 110,
                },
            );
            let gpu = n % 10 == 9;
            node.labels = BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), name),
                ("zone".to_owned(), ["a", "b", "c"][n % 3].to_owned()),
                (
                    "disktype".to_owned(),
                    if n % 2 == 0 { "ssd" } else { "hdd" }.to_owned(),
                ),
                (
                    "pool".to_owned(),
                    if gpu { "gpu" } else { "general" }.to_owned(),
                ),
                ("cores".to_owned(), (cpu_millis / 1000).to_string()),
            ]);
            if n % 7 == 0 {
                node.taints
                    .push("spot=true:PreferNoSchedule".parse().expect("taint"));
            }
            if gpu {
                node.taints
                    .push("dedicated=gpu:NoSchedule".parse().expect("taint"));
            }
            node.unschedulable = n % 50 == 25;
            if n % 97 == 41 {
                node.ready = ConditionStatus::False;
            }
            for i in 0..8 {
                node.add_image(
                    &image((n * 3 + i) % 40),
                    (40 + 30 * ((n + i) % 20) as i64) * MI,
                );
            }
            node
        })
        .collect()
}

/// 10,000 replicas of 200 deployments (50 each). Most request cpu and
/// memory (one deployment in twenty requests nothing); one in ten has a
/// nodeSelector, one in ten a required node affinity, three in ten preferred
/// terms; a quarter tolerate the spot taint; one in ten are GPU pods (a
/// selector and a toleration); one in ten take a host port.
fn throughput_pods(count: usize) -> Vec<(Pod, DeploymentRef)> {
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
    (0..count)
        .map(|i| {
            let d = i % 200;
            let host_port = if d % 10 == 7 { 20_000 + d as i32 } else { 0 };
            let mut c = container(
                &image(d % 40),
                100 + 100 * (d % 8) as i64,
                128 * MI * (1 + (d % 8) as i64),
                host_port,
            );
            if d % 20 == 0 {
                c.resources.requests = ResourceList::default();
            }
            let mut spec = PodSpec {
                containers: vec![c],
                ..PodSpec::default()
            };
            match d % 10 {
                1 => {
                    spec.node_selector =
                        BTreeMap::from([("disktype".to_owned(), "ssd".to_owned())]);
                }
                9 => {
                    spec.node_selector = BTreeMap::from([("pool".to_owned(), "gpu".to_owned())]);
                    spec.tolerations.push(Toleration {
                        key: "dedicated".to_owned(),
                        operator: Some(TolerationOperator::Equal),
                        value: "gpu".to_owned(),
                        effect: Some(TaintEffect::NoSchedule),
                        toleration_seconds: None,
                    });
                }
                _ => {}
            }
            if matches!(d % 10, 2..=4) {
                let required = (d % 10 == 2).then(|| NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: vec![NodeSelectorRequirement {
                            key: "zone".to_owned(),
                            operator: NodeSelectorOperator::In,
                            values: vec!["a".to_owned(), "b".to_owned()],
                        }],
                        match_fields: Vec::new(),
                    }],
                });
                spec.affinity = Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: required,
                        preferred_during_scheduling_ignored_during_execution: vec![
                            preference(10, "zone", "b"),
                            preference(5, "disktype", "ssd"),
                        ],
                    }),
                });
            }
            if d % 4 == 0 {
                spec.tolerations.push(Toleration {
                    key: "spot".to_owned(),
                    operator: Some(TolerationOperator::Exists),
                    ..Toleration::default()
                });
            }
            let deployment = DeploymentRef::new("default", format!("app{d}"));
            (pod(&format!("app{d}-{i}"), spec), deployment)
        })
        .collect()
}

/// Places every pod in turn, binding each to its node; returns how many
/// found no node.
fn place_all(cache: &mut Cache, pods: &[(Pod, DeploymentRef)], rng: &mut StdRng) -> usize {
    let profile = Profile::default();
    let mut unschedulable = 0;
    for (pod, deployment) in pods {
        match cache.place(&profile, pod, Some(deployment), rng) {
            Ok(node) => cache.bind(node, BoundPod::new(pod, Some(deployment.clone()))),
            Err(_) => unschedulable += 1,
        }
    }
    unschedulable
}

/// [`place_all`] with the explained decision of each placement.
fn schedule_all(cache: &mut Cache, pods: &[(Pod, DeploymentRef)], rng: &mut StdRng) -> usize {
    let profile = Profile::default();
    let mut unschedulable = 0;
    for (pod, deployment) in pods {
        let decision = cache.schedule(&profile, pod, Some(deployment), rng);
        match decision.node_index() {
            Some(node) => cache.bind(node, BoundPod::new(pod, Some(deployment.clone()))),
            None => unschedulable += 1,
        }
        black_box(decision);
    }
    unschedulable
}

/// The CPU time this thread has used: on a shared machine, where other jobs
/// take turns on the cores, it leaves out the time spent waiting for one.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn throughput(c: &mut Criterion) {
    let pods = throughput_pods(PODS);
    let mut group = c.benchmark_group("scheduler_throughput");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(PODS as u64));
    for count in [1_000, 5_000] {
        let cache = Cache::new(throughput_nodes(count));
        // Every pod finds a node, so each iteration is 10,000 placements.
        let unschedulable = place_all(&mut cache.clone(), &pods, &mut StdRng::seed_from_u64(1));
        assert_eq!(unschedulable, 0, "{count} nodes");
        let mut rng = StdRng::seed_from_u64(1);
        group.bench_function(format!("place_{PODS}_pods_onto_{count}_nodes"), |b| {
            b.iter_batched_ref(
                || cache.clone(),
                |cache| black_box(place_all(cache, &pods, &mut rng)),
                BatchSize::PerIteration,
            )
        });
        // The same, timed by the thread's CPU time rather than the clock.
        group.bench_function(
            format!("place_{PODS}_pods_onto_{count}_nodes_cpu_time"),
            |b| {
                b.iter_custom(|iterations| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        let mut cache = cache.clone();
                        let started = thread_cpu_time();
                        black_box(place_all(&mut cache, &pods, &mut rng));
                        spent += thread_cpu_time() - started;
                    }
                    spent
                })
            },
        );
    }
    let cache = Cache::new(throughput_nodes(1_000));
    let mut rng = StdRng::seed_from_u64(1);
    group.bench_function(
        format!("schedule_{PODS}_pods_onto_1000_nodes_explained"),
        |b| {
            b.iter_batched_ref(
                || cache.clone(),
                |cache| black_box(schedule_all(cache, &pods, &mut rng)),
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
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

criterion_group!(benches, bench, throughput);
criterion_main!(benches);
