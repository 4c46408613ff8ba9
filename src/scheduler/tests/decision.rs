//! Whole decisions: Kubernetes' messages, the weighted totals, the random
//! tie-break, the scoring strategy, and the explanation a person reads.

use super::*;
use crate::api::status::ConditionStatus;
use crate::scheduler::{
    NO_NODES_MESSAGE, Outcome, ScoreOutcome, ScorePlugin, Weights, image_key, schedule,
};

const GI: i64 = 1024 * 1024 * 1024;
const MI: i64 = 1024 * 1024;

fn tainted(name: &str, t: &str) -> NodeInfo {
    let mut n = node(name, 4000, 4 * GI);
    n.taints = vec![taint(t)];
    n
}

#[test]
fn the_issues_example_message() {
    let nodes = [
        with_pods(
            node("node1", 4000, 4 * GI),
            vec![bound(vec![req(0, 3584 * MI)])],
        ),
        tainted("node2", "dedicated=db:NoSchedule"),
        tainted("node3", "dedicated=db:NoSchedule"),
    ];
    let decision = decide(&pod(vec![req(500, 512 * MI + 1)]), None, &nodes);
    assert_eq!(decision.node(), None);
    assert_eq!(
        decision.message(),
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {dedicated: db}."
    );
}

#[test]
fn the_histogram_sorts_as_strings_like_kube_scheduler() {
    // "10 …" sorts before "2 …": kube-scheduler sorts the "<count> <reason>"
    // strings, not the reasons or the counts.
    let mut nodes = Vec::new();
    for i in 0..10 {
        let mut n = node(&format!("c{i}"), 4000, GI);
        n.unschedulable = true;
        nodes.push(n);
    }
    let mut not_ready = node("n1", 4000, GI);
    not_ready.ready = ConditionStatus::False;
    nodes.push(not_ready);
    nodes.push(node("n2", 4000, GI));
    nodes[11].labels.insert("zone".to_owned(), "b".to_owned());
    let p = pod_with(PodSpec {
        node_selector: [("zone".to_owned(), "a".to_owned())].into(),
        ..PodSpec::default()
    });
    assert_eq!(
        decide(&p, None, &nodes).message(),
        "0/12 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         10 node(s) were unschedulable."
    );
}

#[test]
fn every_reason_of_a_node_counts() {
    let full = with_pods(node("node1", 1000, GI), vec![bound(vec![req(1000, GI)])]);
    assert_eq!(
        decide(&pod(vec![req(100, MI)]), None, &[full]).message(),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    );
}

#[test]
fn no_nodes_at_all() {
    let decision = decide(&pod(vec![]), None, &[]);
    assert_eq!(decision.node(), None);
    assert_eq!(decision.message(), NO_NODES_MESSAGE);
}

#[test]
fn a_scheduled_pod_reads_as_kubernetes_scheduled_event() {
    let decision = decide(&pod(vec![]), None, &[node("node2", 1000, GI)]);
    assert_eq!(decision.node(), Some("node2"));
    assert_eq!(
        decision.message(),
        "Successfully assigned default/web-1 to node2"
    );
}

#[test]
fn the_total_is_the_weighted_sum_and_the_best_total_wins() {
    // node1 is emptier, but carries a PreferNoSchedule taint the pod does not
    // tolerate: TaintToleration's weight of 3 outweighs the resource scores.
    let mut node1 = node("node1", 8000, 8 * GI);
    node1.taints = vec![taint("spot=true:PreferNoSchedule")];
    let node2 = with_pods(
        node("node2", 8000, 8 * GI),
        vec![bound(vec![req(4000, 4 * GI)])],
    );
    let decision = decide(&pod(vec![req(1000, GI)]), None, &[node1, node2]);
    for verdict in &decision.nodes {
        let Outcome::Scored { scores, total } = &verdict.outcome else {
            panic!("{} was rejected", verdict.node);
        };
        let sum: i64 = scores.iter().map(|s| s.weighted()).sum();
        assert_eq!(*total, sum);
        for score in scores {
            assert_eq!(score.weight, Weights::default().of(score.plugin));
            if let ScoreOutcome::Scored { normalized, .. } = score.outcome {
                assert!((0..=100).contains(&normalized), "{score:?}");
            }
        }
    }
    assert_eq!(decision.node(), Some("node2"));
    let taint_score = |node: &str| {
        decision
            .verdict(node)
            .and_then(|v| v.score(ScorePlugin::TaintToleration))
            .map(|s| s.weighted())
    };
    assert_eq!(taint_score("node1"), Some(0));
    assert_eq!(taint_score("node2"), Some(300));
}

#[test]
fn ties_are_broken_at_random_among_the_best() {
    let nodes = [
        node("node1", 4000, 4 * GI),
        node("node2", 4000, 4 * GI),
        node("node3", 4000, 4 * GI),
        // Fuller, so never among the best.
        with_pods(
            node("node4", 4000, 4 * GI),
            vec![bound(vec![req(2000, 2 * GI)])],
        ),
    ];
    let p = pod(vec![req(100, 100 * MI)]);
    let mut rng = rng();
    let mut counts = [0usize; 4];
    for _ in 0..3000 {
        let decision = schedule(&p, None, &nodes, &mut rng);
        assert_eq!(decision.tied, [0, 1, 2]);
        counts[decision.chosen.unwrap_or(3)] += 1;
    }
    assert_eq!(counts[3], 0);
    for count in &counts[..3] {
        assert!((900..=1100).contains(count), "{counts:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_decision() {
    let nodes: Vec<NodeInfo> = (0..10).map(|i| node(&format!("n{i}"), 4000, GI)).collect();
    let p = pod(vec![]);
    let first = decide(&p, None, &nodes);
    for _ in 0..5 {
        assert_eq!(decide(&p, None, &nodes), first);
    }
}

#[test]
fn most_allocated_packs_and_least_allocated_spreads() {
    let nodes = [
        with_pods(
            node("busy", 4000, 4 * GI),
            vec![bound(vec![req(3000, 3 * GI)])],
        ),
        node("empty", 4000, 4 * GI),
    ];
    let p = pod(vec![req(500, 512 * MI)]);
    assert_eq!(decide(&p, None, &nodes).node(), Some("empty"));
    let packed = Profile::bin_packing().schedule(&p, None, &nodes, &mut rng());
    assert_eq!(packed.node(), Some("busy"));
}

#[test]
fn replicas_go_to_the_node_with_fewest_of_them() {
    let web = DeploymentRef::new("default", "web");
    let replica = |n| {
        (0..n)
            .map(|_| BoundPod::new(&pod(vec![req(100, 64 * MI)]), Some(web.clone())))
            .collect::<Vec<_>>()
    };
    // Same load on each node; only the replicas differ.
    let other = |n| {
        (0..n)
            .map(|_| bound(vec![req(100, 64 * MI)]))
            .collect::<Vec<_>>()
    };
    let nodes = [
        with_pods(node("node1", 4000, 4 * GI), replica(2)),
        with_pods(node("node2", 4000, 4 * GI), [replica(1), other(1)].concat()),
        with_pods(node("node3", 4000, 4 * GI), other(2)),
    ];
    let decision = decide(&pod(vec![req(100, 64 * MI)]), Some(&web), &nodes);
    assert_eq!(decision.node(), Some("node3"));
}

#[test]
fn the_explanation_names_each_rejection_and_each_score() {
    let mut node4 = node("node4", 4000, 4 * GI);
    node4.ready = ConditionStatus::False;
    let mut node5 = node("node5", 4000, 4 * GI);
    node5.add_image("busybox", 300 * MI);
    let nodes = [
        with_pods(
            node("node1", 4000, 4 * GI),
            vec![bound(vec![req(0, 3600 * MI)])],
        ),
        tainted("node2", "dedicated=db:NoSchedule"),
        node("node3", 4000, 4 * GI),
        node4,
        node5,
    ];
    let decision = decide(&pod(vec![req(500, 512 * MI)]), None, &nodes);
    // node3 and node5: cpu and memory 87% free (87), perfectly balanced (100);
    // node5 holds the image, 300Mi on 1 node of 5: 100 × (60Mi − 23Mi) / 977Mi = 3.
    assert_eq!(
        decision.to_string(),
        "\
Scheduled default/web-1 on node5: the best total score, 490, of 2 feasible node(s) out of 5.
node1  rejected by NodeResourcesFit: Insufficient memory (the pod requests 512Mi, 3600Mi of 4Gi allocatable is requested already)
node2  rejected by TaintToleration: node(s) had untolerated taint {dedicated: db} (dedicated=db:NoSchedule)
node3  total 487
         TaintToleration                    raw    0  normalised 100  x 3 =  300
         NodeAffinity                       skipped: the pod states no preferred node affinity
         NodeResourcesFit (LeastAllocated)  raw   87  normalised  87  x 1 =   87
         PodTopologySpread                  skipped: the pod belongs to no deployment
         NodeResourcesBalancedAllocation    raw  100  normalised 100  x 1 =  100
         ImageLocality                      raw    0  normalised   0  x 1 =    0
node4  rejected by TaintToleration: node(s) had untolerated taint {node.kubernetes.io/not-ready: } (node.kubernetes.io/not-ready:NoSchedule: the node is not Ready)
node5  total 490  (chosen)
         TaintToleration                    raw    0  normalised 100  x 3 =  300
         NodeAffinity                       skipped: the pod states no preferred node affinity
         NodeResourcesFit (LeastAllocated)  raw   87  normalised  87  x 1 =   87
         PodTopologySpread                  skipped: the pod belongs to no deployment
         NodeResourcesBalancedAllocation    raw  100  normalised 100  x 1 =  100
         ImageLocality                      raw    3  normalised   3  x 1 =    3
"
    );
}

#[test]
fn an_explanation_names_the_tied_nodes() {
    let nodes = [node("node1", 4000, GI), node("node2", 4000, GI)];
    let text = decide(&pod(vec![]), None, &nodes).to_string();
    let headline = text.lines().next().unwrap_or_default();
    assert!(
        headline.ends_with("of 2 feasible node(s) out of 2. Tied: node1, node2; chosen at random."),
        "{headline}"
    );
}

#[test]
fn an_unschedulable_explanation_starts_with_the_message() {
    let mut n = node("node1", 4000, GI);
    n.unschedulable = true;
    let text = decide(&pod(vec![]), None, &[n]).to_string();
    assert_eq!(
        text,
        "Cannot schedule default/web-1: 0/1 nodes are available: 1 node(s) were unschedulable.\n\
         node1  rejected by NodeUnschedulable: node(s) were unschedulable (the node is cordoned)\n"
    );
}

#[test]
fn bound_pods_take_their_requests_from_limits_when_they_set_none() {
    let mut c = container(None, None);
    c.resources.limits.cpu = Some(Quantity::from_millis(250));
    let b = bound(vec![c, req(100, 0)]);
    assert_eq!(b.requests.cpu_millis, 350);
    assert_eq!(b.requests.memory_bytes, 0);
    // The memory of the first container is missing, of the second explicitly 0.
    assert_eq!(b.non_zero_requests.cpu_millis, 350);
    assert_eq!(
        b.non_zero_requests.memory_bytes,
        crate::scheduler::DEFAULT_MEMORY_REQUEST
    );
}

#[test]
fn image_keys_are_normalised_references() {
    assert_eq!(image_key("busybox"), "docker.io/library/busybox:latest");
    assert_eq!(image_key("gcr.io/40"), "gcr.io/40:latest");
    assert_eq!(
        image_key("10.77.0.1:5000/demo/busybox:1.36"),
        "10.77.0.1:5000/demo/busybox:1.36"
    );
    // Not a valid reference: Kubernetes' rule, `:latest` when no tag.
    assert_eq!(image_key("Bad/Name"), "Bad/Name:latest");
}
