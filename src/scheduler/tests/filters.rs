//! The filters, case by case. Where a case comes from kube-scheduler's tests
//! its name is kept, so the two can be compared.

use std::collections::BTreeMap;

use super::*;
use crate::api::pod::{ContainerPort, Protocol, ResourceName};
use crate::api::status::ConditionStatus;
use crate::api::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
    NodeSelectorTerm,
};
use crate::scheduler::{FilterPlugin, Reason, TAINT_NOT_READY};

// --- NodeUnschedulable (node_unschedulable_test.go) ---

#[test]
fn node_unschedulable() {
    let p = pod(vec![]);
    let mut cordoned = node("n", 1000, 1000);
    cordoned.unschedulable = true;
    let rejection = filter(&p, &cordoned).err();
    assert_eq!(
        rejection.as_ref().map(|r| r.plugin),
        Some(FilterPlugin::NodeUnschedulable),
        "Does not schedule pod to unschedulable node"
    );
    assert_eq!(reasons(&p, &cordoned), ["node(s) were unschedulable"]);

    assert!(
        filter(&p, &node("n", 1000, 1000)).is_ok(),
        "Schedule pod to normal node"
    );

    let tolerant = pod_with(PodSpec {
        tolerations: vec![toleration(
            "node.kubernetes.io/unschedulable",
            Some(TolerationOperator::Exists),
            "",
            Some(TaintEffect::NoSchedule),
        )],
        ..PodSpec::default()
    });
    assert!(
        filter(&tolerant, &cordoned).is_ok(),
        "Schedule pod with toleration to unschedulable node"
    );
}

// --- node not Ready: the taints of Kubernetes' node lifecycle controller ---

#[test]
fn a_node_that_is_not_ready_has_the_not_ready_taint() {
    let p = pod(vec![]);
    let mut n = node("n", 1000, 1000);
    n.ready = ConditionStatus::False;
    let rejection = filter(&p, &n).err();
    assert_eq!(
        rejection.map(|r| r.plugin),
        Some(FilterPlugin::TaintToleration)
    );
    assert_eq!(
        reasons(&p, &n),
        ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
    );

    n.ready = ConditionStatus::Unknown;
    assert_eq!(
        reasons(&p, &n),
        ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
    );
}

#[test]
fn a_pod_that_tolerates_not_ready_may_go_on_such_a_node() {
    let mut n = node("n", 1000, 1000);
    n.ready = ConditionStatus::False;
    let all_effects = pod_with(PodSpec {
        tolerations: vec![toleration(
            TAINT_NOT_READY,
            Some(TolerationOperator::Exists),
            "",
            None,
        )],
        ..PodSpec::default()
    });
    assert!(filter(&all_effects, &n).is_ok());

    // The node has the NoExecute taint too, as Kubernetes' nodes do.
    let no_schedule_only = pod_with(PodSpec {
        tolerations: vec![toleration(
            TAINT_NOT_READY,
            Some(TolerationOperator::Exists),
            "",
            Some(TaintEffect::NoSchedule),
        )],
        ..PodSpec::default()
    });
    let rejection = filter(&no_schedule_only, &n).err();
    assert!(matches!(
        rejection.as_ref().map(|r| &r.reasons[0]),
        Some(Reason::UntoleratedTaint(t)) if t.effect == TaintEffect::NoExecute
    ));
}

#[test]
fn the_cluster_files_taints_come_before_the_not_ready_taint() {
    let mut n = node("n", 1000, 1000);
    n.ready = ConditionStatus::False;
    n.taints = vec![taint("dedicated=db:NoSchedule")];
    assert_eq!(
        reasons(&pod(vec![]), &n),
        ["node(s) had untolerated taint {dedicated: db}"]
    );
}

// --- NodeName (node_name_test.go) ---

#[test]
fn node_name() {
    let on = |name: &str| {
        pod_with(PodSpec {
            node_name: name.to_owned(),
            ..PodSpec::default()
        })
    };
    let n = node("foo", 1000, 1000);
    assert!(filter(&on(""), &n).is_ok(), "no host specified");
    assert!(filter(&on("foo"), &n).is_ok(), "host matches");
    assert_eq!(
        reasons(&on("bar"), &n),
        ["node(s) didn't match the requested node name"],
        "host doesn't match"
    );
}

// --- TaintToleration (taint_toleration_test.go, TestTaintTolerationFilter) ---

fn tainted(taints: &[&str]) -> NodeInfo {
    let mut n = node("nodeA", 1000, 1000);
    n.taints = taints.iter().map(|t| taint(t)).collect();
    n
}

fn tolerating(tolerations: Vec<Toleration>) -> Pod {
    pod_with(PodSpec {
        tolerations,
        ..PodSpec::default()
    })
}

#[test]
fn taint_toleration_filter() {
    use TaintEffect::*;
    use TolerationOperator::*;
    let untolerated = |taint: &str| vec![format!("node(s) had untolerated taint {taint}")];

    assert_eq!(
        reasons(
            &tolerating(vec![]),
            &tainted(&["dedicated=user1:NoSchedule"])
        ),
        untolerated("{dedicated: user1}"),
        "A pod having no tolerations can't be scheduled onto a node with nonempty taints"
    );
    assert!(
        filter(
            &tolerating(vec![toleration(
                "dedicated",
                Some(Equal),
                "user1",
                Some(NoSchedule)
            )]),
            &tainted(&["dedicated=user1:NoSchedule"])
        )
        .is_ok(),
        "A pod which can be scheduled on a dedicated node assigned to user1 with effect NoSchedule"
    );
    assert_eq!(
        reasons(
            &tolerating(vec![toleration(
                "dedicated",
                Some(Equal),
                "user2",
                Some(NoSchedule)
            )]),
            &tainted(&["dedicated=user1:NoSchedule"])
        ),
        untolerated("{dedicated: user1}"),
        "A pod which can't be scheduled on a dedicated node assigned to user2 with effect NoSchedule"
    );
    assert!(
        filter(
            &tolerating(vec![toleration("foo", Some(Exists), "", Some(NoSchedule))]),
            &tainted(&["foo=bar:NoSchedule"])
        )
        .is_ok(),
        "A pod can be scheduled onto the node, with a toleration uses operator Exists that tolerates the taints on the node"
    );
    assert!(
        filter(
            &tolerating(vec![
                toleration("dedicated", Some(Equal), "user2", Some(NoSchedule)),
                toleration("foo", Some(Exists), "", Some(NoSchedule)),
            ]),
            &tainted(&["dedicated=user2:NoSchedule", "foo=bar:NoSchedule"])
        )
        .is_ok(),
        "A pod has multiple tolerations, node has multiple taints, all the taints are tolerated"
    );
    assert_eq!(
        reasons(
            &tolerating(vec![toleration(
                "foo",
                Some(Equal),
                "bar",
                Some(PreferNoSchedule)
            )]),
            &tainted(&["foo=bar:NoSchedule"])
        ),
        untolerated("{foo: bar}"),
        "A pod has a toleration that keys and values match the taint on the node, but (non-empty) effect doesn't match"
    );
    assert!(
        filter(
            &tolerating(vec![toleration("foo", Some(Equal), "bar", None)]),
            &tainted(&["foo=bar:NoSchedule"])
        )
        .is_ok(),
        "The pod has a toleration that keys and values match the taint on the node, the effect of toleration is empty"
    );
    assert!(
        filter(
            &tolerating(vec![toleration(
                "dedicated",
                Some(Equal),
                "user2",
                Some(NoSchedule)
            )]),
            &tainted(&["dedicated=user1:PreferNoSchedule"])
        )
        .is_ok(),
        "The pod has a toleration that key and value don't match the taint on the node, but the effect of taint on node is PreferNoSchedule"
    );
    assert!(
        filter(
            &tolerating(vec![]),
            &tainted(&["dedicated=user1:PreferNoSchedule"])
        )
        .is_ok(),
        "The pod has no toleration, but the effect of taint on node is PreferNoSchedule"
    );
    assert_eq!(
        reasons(&tolerating(vec![]), &tainted(&["gpu:NoExecute"])),
        untolerated("{gpu: }"),
        "NoExecute taints filter too; a taint without a value prints an empty one"
    );
}

// --- NodeAffinity (node_affinity_test.go, TestNodeAffinity) ---

fn labelled(labels: &[(&str, &str)]) -> NodeInfo {
    let mut n = node("node1", 1000, 1000);
    n.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n
}

fn expr(key: &str, operator: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: expressions,
        match_fields: Vec::new(),
    }
}

/// A pod whose required node affinity is these terms (None: no selector).
fn requiring(terms: Option<Vec<NodeSelectorTerm>>) -> Pod {
    pod_with(PodSpec {
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: terms.map(
                    |node_selector_terms| NodeSelector {
                        node_selector_terms,
                    },
                ),
                preferred_during_scheduling_ignored_during_execution: Vec::new(),
            }),
        }),
        ..PodSpec::default()
    })
}

fn selecting(selector: &[(&str, &str)]) -> Pod {
    pod_with(PodSpec {
        node_selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PodSpec::default()
    })
}

const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

#[test]
fn node_affinity_node_selector() {
    let n = labelled(&[("foo", "bar")]);
    assert!(filter(&pod(vec![]), &n).is_ok(), "no selector");
    assert_eq!(
        reasons(&selecting(&[("foo", "bar")]), &labelled(&[])),
        [AFFINITY],
        "missing labels"
    );
    assert!(
        filter(&selecting(&[("foo", "bar")]), &n).is_ok(),
        "same labels"
    );
    assert!(
        filter(
            &selecting(&[("foo", "bar")]),
            &labelled(&[("foo", "bar"), ("baz", "blah")])
        )
        .is_ok(),
        "node labels are superset"
    );
    assert_eq!(
        reasons(&selecting(&[("foo", "bar"), ("baz", "blah")]), &n),
        [AFFINITY],
        "node labels are subset"
    );
}

#[test]
fn node_affinity_required_terms() {
    use NodeSelectorOperator::*;
    let foo_bar = labelled(&[("foo", "bar")]);
    let in_bar_value2 = term(vec![expr("foo", In, &["bar", "value2"])]);

    assert!(
        filter(&requiring(Some(vec![in_bar_value2.clone()])), &foo_bar).is_ok(),
        "Pod with matchExpressions using In operator that matches the existing node"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![expr(
                "kernel-version",
                Gt,
                &["0204"]
            )])])),
            &labelled(&[("kernel-version", "0206")])
        )
        .is_ok(),
        "Pod with matchExpressions using Gt operator that matches the existing node"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![expr(
                "mem-type",
                NotIn,
                &["DDR", "DDR2"]
            )])])),
            &labelled(&[("mem-type", "DDR3")])
        )
        .is_ok(),
        "Pod with matchExpressions using NotIn operator that matches the existing node"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![expr("GPU", Exists, &[])])])),
            &labelled(&[("GPU", "NVIDIA-GRID-K1")])
        )
        .is_ok(),
        "Pod with matchExpressions using Exists operator that matches the existing node"
    );
    assert_eq!(
        reasons(
            &requiring(Some(vec![term(vec![expr(
                "foo",
                In,
                &["value1", "value2"]
            )])])),
            &foo_bar
        ),
        [AFFINITY],
        "Pod with affinity that don't match node's labels won't schedule onto the node"
    );
    assert_eq!(
        reasons(&requiring(Some(vec![])), &foo_bar),
        [AFFINITY],
        "Pod with an empty []NodeSelectorTerm in affinity, can't match the node's labels"
    );
    assert_eq!(
        reasons(&requiring(Some(vec![term(vec![])])), &foo_bar),
        [AFFINITY],
        "Pod with empty MatchExpressions is not a valid value will match no objects"
    );
    assert!(
        filter(&pod(vec![]), &foo_bar).is_ok(),
        "Pod with no Affinity will schedule onto a node"
    );
    assert!(
        filter(&requiring(None), &foo_bar).is_ok(),
        "Pod with Affinity but nil NodeSelector will schedule onto a node"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![
                expr("GPU", Exists, &[]),
                expr("GPU", NotIn, &["AMD", "INTER"]),
            ])])),
            &labelled(&[("GPU", "NVIDIA-GRID-K1")])
        )
        .is_ok(),
        "Pod with multiple matchExpressions ANDed that matches the existing node"
    );
    assert_eq!(
        reasons(
            &requiring(Some(vec![term(vec![
                expr("GPU", Exists, &[]),
                expr("GPU", In, &["AMD", "INTER"]),
            ])])),
            &labelled(&[("GPU", "NVIDIA-GRID-K1")])
        ),
        [AFFINITY],
        "Pod with multiple matchExpressions ANDed that doesn't match the existing node"
    );
    assert!(
        filter(
            &requiring(Some(vec![
                term(vec![expr("foo", In, &["bar", "value2"])]),
                term(vec![expr("diffkey", In, &["wrong", "value2"])]),
            ])),
            &foo_bar
        )
        .is_ok(),
        "Pod with multiple NodeSelectorTerms ORed in affinity, matches the node's labels"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![expr("foo", DoesNotExist, &[])])])),
            &labelled(&[("bar", "foo")])
        )
        .is_ok(),
        "Pod with matchExpressions using DoesNotExist operator that matches the existing node"
    );
    assert_eq!(
        reasons(
            &requiring(Some(vec![term(vec![expr("cores", Lt, &["4"])])])),
            &labelled(&[("cores", "eight")])
        ),
        [AFFINITY],
        "Lt reads the label as an integer; a label that is not one matches nothing"
    );
    assert!(
        filter(
            &requiring(Some(vec![term(vec![expr("cores", Lt, &["16"])])])),
            &labelled(&[("cores", "8")])
        )
        .is_ok(),
        "Lt: 8 < 16"
    );
}

#[test]
fn node_affinity_and_node_selector_must_both_match() {
    use NodeSelectorOperator::*;
    let mut both = requiring(Some(vec![term(vec![expr("foo", Exists, &[])])]));
    both.spec.node_selector = BTreeMap::from([("foo".to_owned(), "bar".to_owned())]);
    assert!(
        filter(&both, &labelled(&[("foo", "bar")])).is_ok(),
        "Pod with an Affinity and a PodSpec.NodeSelector(the old thing that we are deprecating) both are satisfied"
    );
    assert_eq!(
        reasons(&both, &labelled(&[("foo", "barrrrrr")])),
        [AFFINITY],
        "Pod with an Affinity matches node's labels but the PodSpec.NodeSelector is not satisfied"
    );
}

#[test]
fn node_affinity_match_fields_name_the_node() {
    let pod = requiring(Some(vec![NodeSelectorTerm {
        match_expressions: Vec::new(),
        match_fields: vec![expr("metadata.name", NodeSelectorOperator::In, &["node1"])],
    }]));
    assert!(
        filter(&pod, &labelled(&[])).is_ok(),
        "Pod with matchFields using In operator that matches the existing node"
    );
    let mut other = labelled(&[]);
    other.name = "node2".to_owned();
    assert_eq!(reasons(&pod, &other), [AFFINITY]);
}

// --- NodePorts (node_ports_test.go). flotilla refuses a hostIP, so every
// port binds 0.0.0.0 and the cases that differ only by host IP become
// conflicts; "different host ip" has no equivalent. ---

fn ports(ports: &[(Protocol, i32)]) -> Vec<Container> {
    vec![Container {
        ports: ports
            .iter()
            .map(|&(protocol, host_port)| ContainerPort {
                container_port: host_port,
                host_port,
                protocol,
                ..ContainerPort::default()
            })
            .collect(),
        ..Container::default()
    }]
}

fn holding(held: &[(Protocol, i32)]) -> NodeInfo {
    with_pods(node("m1", 1000, 1000), vec![bound(ports(held))])
}

const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

#[test]
fn node_ports() {
    use Protocol::*;
    let check = |want: &[(Protocol, i32)], held: &[(Protocol, i32)]| {
        reasons(&pod(ports(want)), &holding(held))
    };
    assert!(
        check(&[(Udp, 8080)], &[(Udp, 9090)]).is_empty(),
        "other port"
    );
    assert_eq!(
        check(&[(Udp, 8080)], &[(Udp, 8080)]),
        [PORTS],
        "same udp port"
    );
    assert_eq!(
        check(&[(Tcp, 8080)], &[(Tcp, 8080)]),
        [PORTS],
        "same tcp port"
    );
    assert!(
        check(&[(Udp, 8080)], &[(Tcp, 8080)]).is_empty(),
        "different protocol"
    );
    assert_eq!(
        check(&[(Udp, 8000), (Udp, 8080)], &[(Udp, 8080)]),
        [PORTS],
        "second udp port conflict"
    );
    assert_eq!(
        check(&[(Tcp, 8001), (Udp, 8080)], &[(Tcp, 8001), (Udp, 8081)]),
        [PORTS],
        "first tcp port conflict"
    );
    assert!(
        check(&[(Udp, 8001)], &[(Tcp, 8001)]).is_empty(),
        "second different protocol"
    );
    assert_eq!(
        check(&[(Udp, 8001)], &[(Tcp, 8001), (Udp, 8001)]),
        [PORTS],
        "UDP hostPort conflict due to 0.0.0.0 hostIP"
    );
    assert!(
        check(&[], &[(Tcp, 8001)]).is_empty(),
        "a pod without host ports"
    );
}

#[test]
fn a_port_conflict_names_the_pod_holding_it() {
    let rejection = filter(
        &pod(ports(&[(Protocol::Tcp, 80)])),
        &holding(&[(Protocol::Tcp, 80)]),
    )
    .err();
    let detail = rejection.map(|r| r.reasons[0].detail());
    assert_eq!(detail.as_deref(), Some("80/TCP is taken by default/web-1"));
}

#[test]
fn host_network_pods_take_their_container_ports() {
    let mut spec = PodSpec {
        containers: ports(&[(Protocol::Tcp, 0)]),
        host_network: true,
        ..PodSpec::default()
    };
    spec.containers[0].ports[0].container_port = 9100;
    let exporter = pod_with(spec);
    let n = with_pods(node("m1", 1000, 1000), vec![BoundPod::new(&exporter, None)]);
    assert_eq!(reasons(&exporter, &n), [PORTS]);
}

// --- NodeResourcesFit (fit_test.go, TestEnoughRequests): allocatable is
// 10m cpu, 20 bytes of memory and 32 pods; each node holds one pod. Cases
// with init containers, overhead and extended resources do not apply: flotilla
// pods have none. ---

fn fit_node(used_cpu: i64, used_memory: i64, pods: i64) -> NodeInfo {
    let mut n = with_pods(
        node("n", 10, 20),
        vec![bound(vec![req(used_cpu, used_memory)])],
    );
    n.allocatable.pods = pods;
    n
}

fn insufficient(resource: ResourceName, requested: i64, used: i64, capacity: i64) -> Reason {
    Reason::Insufficient {
        resource,
        requested,
        used,
        capacity,
    }
}

#[test]
fn node_resources_fit_enough_requests() {
    use ResourceName::*;
    let fit = |pod: Vec<Container>, used_cpu, used_memory| {
        filter(&super::pod(pod), &fit_node(used_cpu, used_memory, 32)).map_err(|r| r.reasons)
    };
    assert_eq!(
        fit(vec![], 10, 20),
        Ok(()),
        "no resources requested always fits"
    );
    assert_eq!(
        fit(vec![req(1, 1)], 10, 20),
        Err(vec![
            insufficient(Cpu, 1, 10, 10),
            insufficient(Memory, 1, 20, 20)
        ]),
        "too many resources fails"
    );
    assert_eq!(fit(vec![req(1, 1)], 5, 5), Ok(()), "both resources fit");
    assert_eq!(
        fit(vec![req(2, 1)], 9, 5),
        Err(vec![insufficient(Cpu, 2, 9, 10)]),
        "one resource memory fits"
    );
    assert_eq!(
        fit(vec![req(1, 2)], 5, 19),
        Err(vec![insufficient(Memory, 2, 19, 20)]),
        "one resource cpu fits"
    );
    assert_eq!(fit(vec![req(5, 1)], 5, 19), Ok(()), "equal edge case");
    assert_eq!(
        fit(vec![req(3, 1), req(2, 1)], 5, 18),
        Ok(()),
        "the containers' requests add up"
    );
    assert_eq!(
        fit(vec![req(3, 1), req(3, 1)], 5, 18),
        Err(vec![insufficient(Cpu, 6, 5, 10)]),
        "the containers' requests add up past the allocatable"
    );
    let reasons: Vec<String> = fit(vec![req(1, 1)], 10, 20)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(reasons, ["Insufficient cpu", "Insufficient memory"]);
}

#[test]
fn node_resources_fit_not_enough_pods() {
    // TestEnoughRequests' notEnoughPodsTests: one pod slot, already taken.
    let fit = |pod: Vec<Container>, used_cpu, used_memory| {
        reasons(&super::pod(pod), &fit_node(used_cpu, used_memory, 1))
    };
    assert_eq!(
        fit(vec![], 10, 20),
        ["Too many pods"],
        "even without specified resources predicate fails when there's no space for additional pod"
    );
    assert_eq!(
        fit(vec![req(1, 1)], 5, 5),
        ["Too many pods"],
        "even if both resources fit predicate fails when there's no space for additional pod"
    );
    assert_eq!(
        fit(vec![req(5, 1)], 5, 19),
        ["Too many pods"],
        "even for equal edge case predicate fails when there's no space for additional pod"
    );
    assert_eq!(
        fit(vec![req(1, 1)], 10, 20),
        ["Too many pods", "Insufficient cpu", "Insufficient memory"],
        "every shortfall is a reason"
    );
}

#[test]
fn the_filter_counts_a_missing_request_as_zero() {
    // The non-zero defaults are for scoring only: a pod that requests nothing
    // fits a node whose cpu and memory are fully requested.
    let full = fit_node(10, 20, 32);
    assert!(filter(&pod(vec![container(None, None)]), &full).is_ok());
    // A pod that requests only cpu is not checked for memory.
    assert_eq!(
        reasons(&pod(vec![container(Some(1), None)]), &full),
        ["Insufficient cpu"]
    );
}

#[test]
fn a_limit_without_a_request_reserves_the_limit() {
    let mut c = container(None, None);
    c.resources.limits.memory = Some(Quantity::from_value(5, QuantityFormat::BinarySI));
    assert_eq!(
        reasons(&pod(vec![c]), &fit_node(0, 16, 32)),
        ["Insufficient memory"]
    );
}

// --- the order of the filters ---

#[test]
fn the_first_failing_filter_is_the_only_reason() {
    let mut n = fit_node(10, 20, 1);
    n.unschedulable = true;
    n.ready = ConditionStatus::False;
    n.taints = vec![taint("dedicated=db:NoSchedule")];
    let rejection = filter(&pod(vec![req(1, 1)]), &n).err();
    assert_eq!(
        rejection.map(|r| (r.plugin, r.reasons)),
        Some((FilterPlugin::NodeUnschedulable, vec![Reason::Unschedulable]))
    );
    n.unschedulable = false;
    assert_eq!(
        filter(&pod(vec![req(1, 1)]), &n).err().map(|r| r.plugin),
        Some(FilterPlugin::TaintToleration)
    );
}
