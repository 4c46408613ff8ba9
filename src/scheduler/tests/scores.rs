//! The score plugins, with the numbers kube-scheduler's tests expect. Node
//! sizes are kube-scheduler's: where its tests give a node "4000" cores and
//! pods "1000", these give 4000 millicores and 1000m, which scores the same.

use super::*;
use crate::api::{
    Affinity, NodeAffinity, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm,
};
use crate::scheduler::{ScoreOutcome, ScorePlugin, ScoringStrategy};

/// Each node's (raw, normalised) score from `plugin`, or None where it was
/// skipped; panics if a node was filtered out.
fn scores_with(
    profile: Profile,
    plugin: ScorePlugin,
    pod: &Pod,
    deployment: Option<&DeploymentRef>,
    nodes: &[NodeInfo],
) -> Vec<Option<(i64, i64)>> {
    let decision = profile.schedule(pod, deployment, nodes, &mut rng());
    decision
        .nodes
        .iter()
        .map(|v| match v.score(plugin) {
            Some(s) => match s.outcome {
                ScoreOutcome::Scored { raw, normalized } => Some((raw, normalized)),
                ScoreOutcome::Skipped(_) => None,
            },
            None => panic!("{} was not scored: {:?}", v.node, v.outcome),
        })
        .collect()
}

/// The normalised scores, for plugins where that is what the case states.
fn normalized(plugin: ScorePlugin, pod: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
    scores_with(Profile::default(), plugin, pod, None, nodes)
        .into_iter()
        .map(|s| s.map_or(-1, |(_, n)| n))
        .collect()
}

fn fit(strategy: ScoringStrategy, pod: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
    let profile = Profile {
        strategy,
        ..Profile::default()
    };
    scores_with(profile, ScorePlugin::NodeResourcesFit, pod, None, nodes)
        .into_iter()
        .map(|s| s.map_or(-1, |(_, n)| n))
        .collect()
}

/// kube-scheduler's `cpuAndMemory` pod: 3000m of cpu and 5000 bytes in two containers.
fn cpu_and_memory() -> Vec<Container> {
    vec![req(1000, 2000), req(2000, 3000)]
}

/// Its `cpuOnly` pod: 3000m of cpu and memory explicitly 0.
fn cpu_only() -> Vec<Container> {
    vec![req(1000, 0), req(2000, 0)]
}

// --- NodeResourcesFit, LeastAllocated (least_allocated_test.go) ---

#[test]
fn least_allocated() {
    use ScoringStrategy::LeastAllocated as L;
    assert_eq!(
        fit(
            L,
            &pod(vec![]),
            &[node("node1", 4000, 10000), node("node2", 4000, 10000)]
        ),
        [100, 100],
        "nothing scheduled, nothing requested"
    );
    assert_eq!(
        fit(
            L,
            &pod(cpu_and_memory()),
            &[node("node1", 4000, 10000), node("node2", 6000, 10000)]
        ),
        [37, 50],
        "nothing scheduled, resources requested, differently sized nodes"
    );
    assert_eq!(
        fit(
            L,
            &pod(vec![]),
            &[
                with_pods(
                    node("node1", 10000, 20000),
                    vec![bound(vec![req(3000, 0)]), bound(vec![req(3000, 0)])]
                ),
                with_pods(
                    node("node2", 10000, 20000),
                    vec![bound(vec![req(3000, 0)]), bound(vec![req(3000, 5000)])]
                ),
            ]
        ),
        [70, 57],
        "no resources requested, pods scheduled with resources"
    );
    let scheduled = |memory2| {
        [
            with_pods(node("node1", 10000, 20000), vec![bound(vec![req(3000, 0)])]),
            with_pods(
                node("node2", 10000, memory2),
                vec![bound(vec![req(3000, 5000)])],
            ),
        ]
    };
    assert_eq!(
        fit(L, &pod(cpu_and_memory()), &scheduled(20000)),
        [57, 45],
        "resources requested, pods scheduled with resources"
    );
    assert_eq!(
        fit(L, &pod(cpu_and_memory()), &scheduled(50000)),
        [57, 60],
        "resources requested, pods scheduled with resources, differently sized nodes"
    );
    let mut zero = [node("node1", 0, 0), node("node2", 0, 0)];
    zero[0].pods = vec![bound(vec![req(3000, 0)])];
    zero[1].pods = vec![bound(vec![req(3000, 5000)])];
    assert_eq!(
        fit(L, &pod(vec![]), &zero),
        [0, 0],
        "zero node resources, pods scheduled with resources"
    );
}

#[test]
fn least_allocated_counts_missing_requests_as_the_non_zero_defaults() {
    // cpu (4000 - 100) * 100 / 4000 = 97; memory (2Gi - 200Mi) * 100 / 2Gi = 90.
    let gib2 = 2 * 1024 * 1024 * 1024;
    assert_eq!(
        fit(
            ScoringStrategy::LeastAllocated,
            &pod(vec![container(None, None)]),
            &[node("node1", 4000, gib2)]
        ),
        [93]
    );
    // Bound pods without requests count the defaults too: 2 × 100m and 2 × 200Mi.
    let busy = with_pods(
        node("node1", 4000, gib2),
        vec![
            bound(vec![container(None, None)]),
            bound(vec![container(None, None)]),
        ],
    );
    // cpu (4000 - 300) * 100 / 4000 = 92; memory (2048 - 600) * 100 / 2048 = 70.
    assert_eq!(
        fit(
            ScoringStrategy::LeastAllocated,
            &pod(vec![container(None, None)]),
            &[busy]
        ),
        [81]
    );
}

// --- NodeResourcesFit, MostAllocated (most_allocated_test.go) ---

#[test]
fn most_allocated() {
    use ScoringStrategy::MostAllocated as M;
    assert_eq!(
        fit(
            M,
            &pod(vec![]),
            &[node("node1", 4000, 10000), node("node2", 4000, 10000)]
        ),
        [0, 0],
        "nothing scheduled, nothing requested"
    );
    // node1: cpu 3000/4000 = 75, memory 5000/10000 = 50; node2: 50 and 50.
    assert_eq!(
        fit(
            M,
            &pod(cpu_and_memory()),
            &[node("node1", 4000, 10000), node("node2", 6000, 10000)]
        ),
        [62, 50],
        "nothing scheduled, resources requested, differently sized nodes"
    );
    // node1: cpu 6000/10000 = 60, memory 5000/20000 = 25; node2: 60 and 50.
    assert_eq!(
        fit(
            M,
            &pod(cpu_and_memory()),
            &[
                with_pods(node("node1", 10000, 20000), vec![bound(vec![req(3000, 0)])]),
                with_pods(
                    node("node2", 10000, 20000),
                    vec![bound(vec![req(3000, 5000)])]
                ),
            ]
        ),
        [42, 55],
        "resources requested, pods scheduled with resources"
    );
    // The memory default (200Mi) is more than the node has: capped at 100.
    assert_eq!(
        fit(
            M,
            &pod(vec![container(Some(1000), None)]),
            &[node("node1", 4000, 10000)]
        ),
        [62],
        "requested resources exceed node capacity"
    );
}

// --- NodeResourcesBalancedAllocation (balanced_allocation_test.go) ---

#[test]
fn balanced_allocation() {
    let plugin = ScorePlugin::NodeResourcesBalancedAllocation;
    assert_eq!(
        normalized(
            plugin,
            &pod(cpu_and_memory()),
            &[node("node1", 4000, 10000), node("node2", 6000, 10000)]
        ),
        [87, 100],
        "nothing scheduled, resources requested, differently sized nodes"
    );
    let scheduled = |memory2| {
        [
            with_pods(node("node1", 10000, 20000), vec![bound(cpu_only())]),
            with_pods(node("node2", 10000, memory2), vec![bound(cpu_and_memory())]),
        ]
    };
    assert_eq!(
        normalized(plugin, &pod(cpu_and_memory()), &scheduled(20000)),
        [82, 95],
        "resources requested, pods scheduled with resources"
    );
    assert_eq!(
        normalized(plugin, &pod(cpu_and_memory()), &scheduled(50000)),
        [82, 80],
        "resources requested, pods scheduled with resources, differently sized nodes"
    );
    assert_eq!(
        normalized(
            plugin,
            &pod(cpu_only()),
            &[
                with_pods(node("node1", 6000, 10000), vec![bound(cpu_only())]),
                with_pods(node("node2", 6000, 10000), vec![bound(cpu_and_memory())]),
            ]
        ),
        [50, 75],
        "requested resources at node capacity"
    );
}

#[test]
fn balanced_allocation_skips_best_effort_pods() {
    let plugin = ScorePlugin::NodeResourcesBalancedAllocation;
    let nodes = [node("node1", 4000, 10000), node("node2", 4000, 10000)];
    assert_eq!(
        scores_with(
            Profile::default(),
            plugin,
            &pod(vec![container(None, None)]),
            None,
            &nodes
        ),
        [None, None],
        "nothing scheduled, nothing requested, skip in PreScore"
    );
}

// --- ImageLocality (image_locality_test.go; thresholds per container, as
// since Kubernetes 1.23) ---

const MB: i64 = 1024 * 1024;

fn with_images(name: &str, images: &[(&str, i64)]) -> NodeInfo {
    let mut n = node(name, 4000, 10000);
    for (image, size) in images {
        n.add_image(image, size * MB);
    }
    n
}

fn images(names: &[&str]) -> Pod {
    pod(names
        .iter()
        .map(|image| Container {
            image: image.to_string(),
            ..Container::default()
        })
        .collect())
}

#[test]
fn image_locality() {
    let plugin = ScorePlugin::ImageLocality;
    let node1 = with_images(
        "machine1",
        &[
            ("gcr.io/40:latest", 40),
            ("gcr.io/300:v1", 300),
            ("gcr.io/300:latest", 300),
            ("gcr.io/2000:latest", 2000),
        ],
    );
    let node2 = with_images(
        "machine2",
        &[("gcr.io/250:latest", 250), ("gcr.io/10:latest", 10)],
    );
    let two = [node1.clone(), node2.clone()];

    // machine1: 40M × 1/2 = 20M, under the 23M floor: 0.
    // machine2: 250M × 1/2 = 125M; 100 × (125M − 23M) / (2 × 1000M − 23M) = 5.
    assert_eq!(
        normalized(plugin, &images(&["gcr.io/40", "gcr.io/250"]), &two),
        [0, 5],
        "two images spread on two nodes, prefer the larger image one"
    );
    // machine1: (40M + 300M) / 2 = 170M; 100 × 147M / 1977M = 7.
    assert_eq!(
        normalized(plugin, &images(&["gcr.io/40", "gcr.io/300"]), &two),
        [7, 0],
        "two images on one node, prefer this node"
    );
    // machine1: 2000M / 2 = 1000M; 100 × 977M / 1977M = 49. machine2: 10M / 2: 0.
    assert_eq!(
        normalized(plugin, &images(&["gcr.io/10", "gcr.io/2000"]), &two),
        [49, 0],
        "if exceed limit, use limit"
    );
    // machine1: 2000M / 3 = 666.7M; 100 × 643.7M / 1977M = 32.
    assert_eq!(
        normalized(
            plugin,
            &images(&["gcr.io/10", "gcr.io/2000"]),
            &[node1, node2, with_images("machine3", &[])]
        ),
        [32, 0, 0],
        "if exceed limit, use limit (with node which has no images present)"
    );
}

#[test]
fn image_locality_matches_references_as_docker_normalises_them() {
    // The agent stores `docker.io/library/busybox:latest`; a pod says `busybox`.
    // 500M on one node of two: 250M; 100 × (250M − 23M) / (1000M − 23M) = 23.
    let nodes = [
        with_images("node1", &[("docker.io/library/busybox:latest", 500)]),
        with_images("node2", &[]),
    ];
    assert_eq!(
        normalized(ScorePlugin::ImageLocality, &images(&["busybox"]), &nodes),
        [23, 0]
    );
}

// --- TaintToleration (taint_toleration_test.go, TestTaintTolerationScore) ---

#[test]
fn taint_toleration_score() {
    use TaintEffect::*;
    use TolerationOperator::*;
    let plugin = ScorePlugin::TaintToleration;
    let tainted = |name: &str, taints: &[&str]| {
        let mut n = node(name, 1000, 1000);
        n.taints = taints.iter().map(|t| taint(t)).collect();
        n
    };
    let tolerating = |tolerations| {
        pod_with(PodSpec {
            tolerations,
            ..PodSpec::default()
        })
    };

    let foo_bar = tolerating(vec![toleration(
        "foo",
        Some(Equal),
        "bar",
        Some(PreferNoSchedule),
    )]);
    assert_eq!(
        scores_with(
            Profile::default(),
            plugin,
            &foo_bar,
            None,
            &[
                tainted("nodeA", &["foo=bar:PreferNoSchedule"]),
                tainted("nodeB", &["foo=blah:PreferNoSchedule"])
            ]
        ),
        [Some((0, 100)), Some((1, 0))],
        "node with taints tolerated by the pod, gets a higher score than those node with intolerable taints"
    );
    assert_eq!(
        normalized(
            plugin,
            &foo_bar,
            &[
                tainted("nodeA", &[]),
                tainted("nodeB", &["cpu-type=arm64:PreferNoSchedule"]),
                tainted(
                    "nodeC",
                    &[
                        "cpu-type=arm64:PreferNoSchedule",
                        "disk-type=ssd:PreferNoSchedule"
                    ]
                ),
            ]
        ),
        [100, 50, 0],
        "the more intolerable taints a node has, the lower score it gets"
    );
    assert_eq!(
        normalized(
            plugin,
            &tolerating(vec![
                toleration("cpu-type", Some(Equal), "arm64", Some(NoSchedule)),
                toleration("disk-type", Some(Equal), "ssd", Some(NoSchedule)),
            ]),
            &[
                tainted("nodeA", &[]),
                tainted("nodeB", &["cpu-type=arm64:NoSchedule"]),
                tainted(
                    "nodeC",
                    &[
                        "cpu-type=arm64:PreferNoSchedule",
                        "disk-type=ssd:PreferNoSchedule"
                    ]
                ),
            ]
        ),
        [100, 100, 0],
        "only taints and tolerations that have effect PreferNoSchedule are checked by prioritizer"
    );
    assert_eq!(
        normalized(
            plugin,
            &tolerating(vec![]),
            &[
                tainted("nodeA", &[]),
                tainted("nodeB", &["cpu-type=arm64:PreferNoSchedule"])
            ]
        ),
        [100, 0],
        "Default behaviour No taints and tolerations, lands on node with no taints"
    );
}

// --- NodeAffinity, preferred terms (node_affinity_test.go, TestNodeAffinityPriority) ---

fn preferring(terms: Vec<(i32, Vec<(&str, &str)>)>) -> Pod {
    let preferred = terms
        .into_iter()
        .map(|(weight, ins)| PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: ins
                    .into_iter()
                    .map(|(key, value)| NodeSelectorRequirement {
                        key: key.to_owned(),
                        operator: NodeSelectorOperator::In,
                        values: vec![value.to_owned()],
                    })
                    .collect(),
                match_fields: Vec::new(),
            },
        })
        .collect();
    pod_with(PodSpec {
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: None,
                preferred_during_scheduling_ignored_during_execution: preferred,
            }),
        }),
        ..PodSpec::default()
    })
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
    let mut n = node(name, 1000, 1000);
    n.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n
}

#[test]
fn node_affinity_score() {
    let plugin = ScorePlugin::NodeAffinity;
    let label1 = labelled("node1", &[("foo", "bar")]);
    let label2 = labelled("node2", &[("key", "value")]);
    let label3 = labelled("node3", &[("az", "az1")]);
    let label5 = labelled("node5", &[("foo", "bar"), ("key", "value"), ("az", "az1")]);
    let affinity1 = preferring(vec![(2, vec![("foo", "bar")])]);
    let affinity2 = preferring(vec![
        (2, vec![("foo", "bar")]),
        (4, vec![("key", "value")]),
        (5, vec![("foo", "bar"), ("key", "value"), ("az", "az1")]),
    ]);

    assert_eq!(
        scores_with(
            Profile::default(),
            plugin,
            &pod(vec![]),
            None,
            &[label1.clone(), label2.clone(), label3.clone()]
        ),
        [None, None, None],
        "all nodes are same priority as NodeAffinity is nil (skipped)"
    );
    assert_eq!(
        normalized(plugin, &affinity1, &[label3.clone(), label2.clone()]),
        [0, 0],
        "no node matches preferred scheduling requirements in NodeAffinity of pod"
    );
    assert_eq!(
        normalized(
            plugin,
            &affinity1,
            &[label1.clone(), label2.clone(), label3]
        ),
        [100, 0, 0],
        "only node1 matches the preferred scheduling requirements of pod"
    );
    assert_eq!(
        scores_with(
            Profile::default(),
            plugin,
            &affinity2,
            None,
            &[label1, label5, label2]
        ),
        [Some((2, 18)), Some((11, 100)), Some((4, 36))],
        "all nodes matches the preferred scheduling requirements of pod but with different priorities"
    );
}

#[test]
fn node_affinity_ignores_zero_weights() {
    let pod = preferring(vec![(0, vec![("foo", "bar")])]);
    assert_eq!(
        normalized(
            ScorePlugin::NodeAffinity,
            &pod,
            &[labelled("node1", &[("foo", "bar")]), labelled("node2", &[])]
        ),
        [0, 0]
    );
}

// --- PodTopologySpread, the default system spreading over hostnames ---

fn replicas(of: &DeploymentRef, n: usize) -> Vec<BoundPod> {
    (0..n)
        .map(|_| BoundPod::new(&pod(vec![req(100, 100)]), Some(of.clone())))
        .collect()
}

#[test]
fn replicas_of_a_deployment_spread_across_nodes() {
    let web = DeploymentRef::new("default", "web");
    let nodes = [
        with_pods(node("node1", 4000, 1 << 30), replicas(&web, 2)),
        with_pods(node("node2", 4000, 1 << 30), replicas(&web, 1)),
        node("node3", 4000, 1 << 30),
    ];
    // weight ln(3 + 2) = 1.609; raw = round(count × 1.609 + (maxSkew 3 − 1)):
    // 5, 4, 2. Normalised 100 × (max + min − raw) / max: 40, 60, 100.
    assert_eq!(
        scores_with(
            Profile::default(),
            ScorePlugin::PodTopologySpread,
            &pod(vec![]),
            Some(&web),
            &nodes
        ),
        [Some((5, 40)), Some((4, 60)), Some((2, 100))]
    );
}

#[test]
fn only_replicas_of_the_same_deployment_count() {
    let web = DeploymentRef::new("default", "web");
    let nodes = [
        with_pods(
            node("node1", 4000, 1 << 30),
            [
                replicas(&DeploymentRef::new("default", "db"), 3),
                replicas(&DeploymentRef::new("staging", "web"), 3),
                vec![bound(vec![])],
            ]
            .concat(),
        ),
        node("node2", 4000, 1 << 30),
    ];
    assert_eq!(
        scores_with(
            Profile::default(),
            ScorePlugin::PodTopologySpread,
            &pod(vec![]),
            Some(&web),
            &nodes
        ),
        [Some((2, 100)), Some((2, 100))]
    );
}

#[test]
fn a_pod_of_no_deployment_is_not_spread() {
    let nodes = [node("node1", 4000, 1 << 30)];
    assert_eq!(
        scores_with(
            Profile::default(),
            ScorePlugin::PodTopologySpread,
            &pod(vec![]),
            None,
            &nodes
        ),
        [None]
    );
}

// --- normalisation ---

#[test]
fn default_normalize_score() {
    // helper/normalize_score_test.go
    use crate::scheduler::scores::default_normalize;
    assert_eq!(
        default_normalize(&[1, 2, 3, 4, 5], false),
        [20, 40, 60, 80, 100]
    );
    assert_eq!(
        default_normalize(&[1, 2, 3, 4, 5], true),
        [80, 60, 40, 20, 0]
    );
    assert_eq!(
        default_normalize(&[1000, 10, 20, 30], false),
        [100, 1, 2, 3]
    );
    assert_eq!(
        default_normalize(&[1000, 10, 20, 30], true),
        [0, 99, 98, 97]
    );
    assert_eq!(default_normalize(&[0, 0, 0], false), [0, 0, 0]);
    assert_eq!(default_normalize(&[0, 0, 0], true), [100, 100, 100]);
}
