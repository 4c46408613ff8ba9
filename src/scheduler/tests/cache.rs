//! The cache: its running sums against sums from scratch, kube-scheduler's
//! sampling rule and round robin, and its decisions against the filters and
//! against [`Profile::schedule`].

use rand::Rng;

use super::*;
use crate::api::pod::{ContainerPort, Protocol};
use crate::api::status::ConditionStatus;
use crate::scheduler::{
    Cache, MIN_FEASIBLE_NODES_TO_FIND, Outcome, ScoreOutcome, ScorePlugin, feasible_nodes_to_find,
    image_key,
};

const GI: i64 = 1024 * 1024 * 1024;
const MI: i64 = 1024 * 1024;

/// A replica of `app{d}` named `name`, requesting `cpu` and `memory` (none
/// when zero), on `image`, taking `host_port` when not zero.
fn replica(name: &str, cpu: i64, memory: i64, image: &str, host_port: i32) -> Pod {
    let mut c = if cpu == 0 && memory == 0 {
        container(None, None)
    } else {
        req(cpu, memory)
    };
    c.image = image.to_owned();
    if host_port != 0 {
        c.ports = vec![ContainerPort {
            container_port: 80,
            host_port,
            protocol: if host_port % 2 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            ..ContainerPort::default()
        }];
    }
    let mut p = pod(vec![c]);
    p.metadata.name = name.to_owned();
    p
}

fn deployment(d: usize) -> DeploymentRef {
    DeploymentRef::new("default", format!("app{d}"))
}

/// A varied cluster: four sizes, some taints, a cordoned and a not-Ready
/// node, images here and there, and some pods already bound.
fn varied_nodes(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|n| {
            let mut node = node(
                &format!("node{n:03}"),
                [2000, 4000, 8000, 16000][n % 4],
                [4 * GI, 8 * GI, 16 * GI, 32 * GI][n % 4],
            );
            node.allocatable.pods = 20 + (n % 3) as i64 * 10;
            node.labels
                .insert("disktype".to_owned(), ["ssd", "hdd"][n % 2].to_owned());
            node.labels
                .insert("zone".to_owned(), ["a", "b", "c"][n % 3].to_owned());
            if n % 5 == 0 {
                node.taints.push(taint("spot=true:PreferNoSchedule"));
            }
            if n % 9 == 4 {
                node.taints.push(taint("dedicated=db:NoSchedule"));
            }
            node.unschedulable = n % 23 == 7;
            if n % 31 == 11 {
                node.ready = ConditionStatus::Unknown;
            }
            for i in 0..3 {
                node.add_image(&format!("app{}", (n + i) % 7), (100 + 50 * i as i64) * MI);
            }
            if n % 4 == 1 {
                let p = replica(&format!("old-{n}"), 500, GI, "app1", 8000);
                node.pods.push(BoundPod::new(&p, Some(deployment(n % 3))));
            }
            node
        })
        .collect()
}

/// The i-th pod of a varied stream: some with selectors, preferences,
/// tolerations, host ports; all replicas.
fn varied_pod(i: usize) -> (Pod, DeploymentRef) {
    let d = i % 12;
    let mut p = replica(
        &format!("app{d}-{i}"),
        [0, 100, 250, 500, 1000][i % 5],
        [0, 64 * MI, 256 * MI, GI][i % 4],
        &format!("app{}", d % 7),
        if d % 6 == 5 { 8000 + (d / 6) as i32 } else { 0 },
    );
    if d % 4 == 1 {
        p.spec
            .node_selector
            .insert("disktype".to_owned(), "ssd".to_owned());
    }
    if d % 3 == 2 {
        p.spec.tolerations.push(toleration(
            "dedicated",
            Some(TolerationOperator::Equal),
            "db",
            Some(TaintEffect::NoSchedule),
        ));
    }
    if d % 5 == 3 {
        p.spec.tolerations.push(toleration(
            "spot",
            Some(TolerationOperator::Exists),
            "",
            None,
        ));
    }
    (p, deployment(d))
}

fn assert_sums_match(cache: &Cache, when: &str) {
    assert!(cache.kept() == cache.recomputed(), "{when}");
}

#[test]
fn kept_sums_equal_sums_from_scratch_after_binds_and_unbinds() {
    let mut cache = Cache::new(varied_nodes(40));
    assert_sums_match(&cache, "at the start");
    let profile = Profile::default();
    let mut rng = rng();
    let mut bound: Vec<(usize, String)> = Vec::new();
    for i in 0..400 {
        let (p, d) = varied_pod(i);
        if let Ok(node) = cache.place(&profile, &p, Some(&d), &mut rng) {
            let b = BoundPod::new(&p, Some(d));
            bound.push((node, b.name.clone()));
            cache.bind(node, b);
        }
        // Now and then a pod ends.
        if i % 7 == 3 && !bound.is_empty() {
            let (node, name) = bound.swap_remove(rng.random_range(0..bound.len()));
            assert!(cache.unbind(node, &name).is_some(), "{name} on {node}");
        }
        if i % 50 == 0 {
            assert_sums_match(&cache, &format!("after pod {i}"));
        }
    }
    assert!(bound.len() > 200, "most pods found a node: {}", bound.len());
    assert_sums_match(&cache, "after 400 pods");

    // A pod listing the same port twice, bound and unbound.
    let (mut twice, d) = varied_pod(5);
    twice.metadata.name = "twice".to_owned();
    let port = twice.spec.containers[0].ports[0].clone();
    twice.spec.containers[0].ports.push(port);
    cache.bind(0, BoundPod::new(&twice, Some(d)));
    assert_sums_match(&cache, "a pod holding a port twice");
    assert!(cache.unbind(0, "default/twice").is_some());
    assert_sums_match(&cache, "it left");
    assert!(cache.unbind(0, "default/nobody").is_none());

    // Every pod ends: the sums go back to those of the pods bound at the start.
    for (node, name) in bound {
        assert!(cache.unbind(node, &name).is_some(), "{name} on {node}");
    }
    let (now, before) = (cache.kept(), Cache::new(varied_nodes(40)).kept());
    assert!(now.rows == before.rows && now.ports == before.ports);
    assert!(now.label_columns == before.label_columns && now.image_columns == before.image_columns);
    // Deployments first seen in a bind keep an id, with an empty column.
    let (kept, extra) = now.replica_columns.split_at(before.replica_columns.len());
    assert!(kept == before.replica_columns && extra.iter().all(|c| c.is_empty()));
}

#[test]
fn node_changes_keep_the_image_counts() {
    let mut cache = Cache::new(varied_nodes(10));
    let mut changed = cache.nodes()[3].clone();
    changed.images.clear();
    changed.add_image("app6", 700 * MI);
    changed.add_image("brand-new", 30 * MI);
    cache.set_node(3, changed);
    assert_sums_match(&cache, "after set_node");
    let removed = cache.remove_node(0);
    assert_eq!(removed.name, "node000");
    assert_sums_match(&cache, "after remove_node");
    let index = cache.add_node(node("late", 4000, 4 * GI));
    assert_eq!(index, 9);
    assert_eq!(cache.position("late"), Some(9));
    assert_sums_match(&cache, "after add_node");
    // Node 3 moved down one with the removal.
    assert!(
        cache.nodes()[2]
            .images
            .contains_key(&image_key("brand-new"))
    );
}

#[test]
fn the_sampling_rule_is_kube_schedulers() {
    // (nodes, percentageOfNodesToScore, feasible nodes that end the search)
    let cases = [
        (0, 0, 0),
        (1, 0, 1),
        (3, 0, 3),
        (50, 0, 50),
        (99, 0, 99),
        // From 100 nodes, the adaptive 50% − nodes/125, but never below 100.
        (100, 0, 100),
        (101, 0, 100),
        (200, 0, 100),
        (250, 0, 120),
        (500, 0, 230),
        (1_000, 0, 420),
        (2_500, 0, 750),
        (5_000, 0, 500),
        // 50 − 48 = 2% is below the 5% floor.
        (6_000, 0, 300),
        (10_000, 0, 500),
        (100_000, 0, 5_000),
        // An explicit percentage, still with the floor of 100 nodes.
        (1_000, 10, 100),
        (1_000, 50, 500),
        (1_000, 100, 1_000),
        (1_000, 150, 1_000),
        (5_000, 1, 100),
        (50, 10, 50),
    ];
    for (nodes, percentage, want) in cases {
        assert_eq!(
            feasible_nodes_to_find(nodes, percentage),
            want,
            "{nodes} nodes at {percentage}%"
        );
    }
    assert_eq!(MIN_FEASIBLE_NODES_TO_FIND, 100);
}

fn uniform(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|n| node(&format!("n{n:04}"), 4000, 8 * GI))
        .collect()
}

#[test]
fn a_search_stops_at_enough_feasible_nodes_and_the_next_goes_on_from_there() {
    let mut cache = Cache::new(uniform(1_000));
    assert_eq!(cache.feasible_nodes_to_find(), 420);
    let p = pod(vec![req(100, 100 * MI)]);
    let profile = Profile::default();
    let mut rng = rng();
    let indices = |d: &Decision| d.nodes.iter().map(|v| v.index).collect::<Vec<_>>();

    let first = cache.schedule(&profile, &p, None, &mut rng);
    assert_eq!(first.total_nodes, 1_000);
    assert_eq!(indices(&first), (0..420).collect::<Vec<_>>());
    assert_eq!(cache.next_start(), 420);
    let headline = first.to_string();
    let headline = headline.lines().next().unwrap_or_default();
    assert!(
        headline.contains(
            "of 420 feasible node(s) out of 1000; the search stopped there, after evaluating 420 \
             (kube-scheduler's percentageOfNodesToScore)."
        ),
        "{headline}"
    );

    let second = cache.schedule(&profile, &p, None, &mut rng);
    assert_eq!(indices(&second), (420..840).collect::<Vec<_>>());
    // The third wraps round the end; its verdicts stay in the nodes' order.
    let third = cache.schedule(&profile, &p, None, &mut rng);
    assert_eq!(
        indices(&third),
        (0..260).chain(840..1_000).collect::<Vec<_>>()
    );
    assert_eq!(cache.next_start(), 260);
    let chosen = third.node_index().unwrap_or(usize::MAX);
    assert_eq!(third.node(), Some(cache.nodes()[chosen].name.as_str()));
}

#[test]
fn rejected_nodes_count_as_evaluated() {
    // Every other node is cordoned: 100 feasible nodes take 199 evaluated.
    let mut nodes = uniform(200);
    for (n, node) in nodes.iter_mut().enumerate() {
        node.unschedulable = n % 2 == 1;
    }
    let mut cache = Cache::new(nodes);
    assert_eq!(cache.feasible_nodes_to_find(), 100);
    let decision = cache.schedule(&Profile::default(), &pod(vec![]), None, &mut rng());
    assert_eq!(decision.nodes.len(), 199);
    let scored = decision
        .nodes
        .iter()
        .filter(|v| v.total().is_some())
        .count();
    assert_eq!(scored, 100);
    assert_eq!(cache.next_start(), 199);
}

#[test]
fn with_a_hundred_nodes_or_fewer_every_node_is_evaluated_and_the_cache_decides_as_schedule() {
    for count in [1, 3, 50, 100] {
        let nodes = varied_nodes(count);
        let mut cache = Cache::new(nodes.clone());
        for i in 0..30 {
            let (p, d) = varied_pod(i);
            let from_cache = cache.schedule(&Profile::default(), &p, Some(&d), &mut rng());
            let from_slice = Profile::default().schedule(&p, Some(&d), cache.nodes(), &mut rng());
            assert_eq!(from_cache.nodes.len(), count);
            assert_eq!(from_cache, from_slice, "pod {i} over {count} nodes");
            if let Some(n) = from_cache.node_index() {
                cache.bind(n, BoundPod::new(&p, Some(d)));
            }
        }
    }
}

#[test]
fn place_chooses_the_node_schedule_would() {
    let mut placing = Cache::new(varied_nodes(300));
    let mut scheduling = placing.clone();
    let profile = Profile::bin_packing();
    let (mut rng1, mut rng2) = (rng(), rng());
    for i in 0..300 {
        let (p, d) = varied_pod(i);
        let placed = placing.place(&profile, &p, Some(&d), &mut rng1);
        let decision = scheduling.schedule(&profile, &p, Some(&d), &mut rng2);
        match placed {
            Ok(n) => assert_eq!(Some(n), decision.node_index(), "pod {i}"),
            Err(unschedulable) => assert_eq!(unschedulable, decision, "pod {i}"),
        }
        if let Some(n) = decision.node_index() {
            placing.bind(n, BoundPod::new(&p, Some(d.clone())));
            scheduling.bind(n, BoundPod::new(&p, Some(d)));
        }
    }
}

#[test]
fn a_chosen_node_passes_every_filter_and_each_verdict_is_the_filters() {
    let mut cache = Cache::new(varied_nodes(120));
    let profile = Profile::default();
    let mut rng = rng();
    let mut placed = 0;
    for i in 0..3_000 {
        let (p, d) = varied_pod(i);
        let decision = cache.schedule(&profile, &p, Some(&d), &mut rng);
        // Every verdict of one decision in ten (each check works the node
        // out from scratch).
        let verdicts = if i % 10 == 0 {
            &decision.nodes[..]
        } else {
            &[]
        };
        for verdict in verdicts {
            let node = &cache.nodes()[verdict.index];
            assert_eq!(verdict.node, node.name);
            let run = filter(&p, node);
            match &verdict.outcome {
                Outcome::Rejected(rejection) => assert_eq!(run.as_ref(), Err(rejection)),
                Outcome::Scored { .. } => assert_eq!(run, Ok(()), "{}", verdict.node),
            }
        }
        if let Some(n) = decision.node_index() {
            let node = &cache.nodes()[n];
            assert_eq!(filter(&p, node), Ok(()));
            cache.bind(n, BoundPod::new(&p, Some(d)));
            placed += 1;
        }
    }
    // The cluster fills up: the last pods find no room, so rejections for
    // resources and pod counts were checked too.
    assert!((1_000..3_000).contains(&placed), "{placed} placed");
}

#[test]
fn an_unschedulable_pod_reads_as_kubernetes_says_over_every_node() {
    let mut cache = Cache::new(uniform(150));
    let mut p = pod(vec![req(100, MI)]);
    p.spec
        .node_selector
        .insert("disktype".to_owned(), "ssd".to_owned());
    let mut rng = rng();
    let start = cache.next_start();
    let Err(decision) = cache.place(&Profile::default(), &p, None, &mut rng) else {
        panic!("no node has the label");
    };
    assert_eq!(decision.nodes.len(), 150);
    assert_eq!(
        decision.message(),
        "0/150 nodes are available: 150 node(s) didn't match Pod's node affinity/selector."
    );
    // The search went round every node: it starts at the same place next.
    assert_eq!(cache.next_start(), start);
}

#[test]
fn a_bound_host_port_keeps_the_next_replica_off_until_it_is_unbound() {
    let mut cache = Cache::new(uniform(2));
    let profile = Profile::default();
    let mut rng = rng();
    let web = |i: usize| replica(&format!("web-{i}"), 100, MI, "nginx", 8080);
    let first = cache.place(&profile, &web(0), None, &mut rng);
    let Ok(first) = first else {
        panic!("two empty nodes");
    };
    cache.bind(first, BoundPod::new(&web(0), None));
    let Ok(second) = cache.place(&profile, &web(1), None, &mut rng) else {
        panic!("one node is free");
    };
    assert_ne!(first, second);
    cache.bind(second, BoundPod::new(&web(1), None));
    let Err(full) = cache.place(&profile, &web(2), None, &mut rng) else {
        panic!("both nodes hold the port");
    };
    let names: Vec<String> = full
        .nodes
        .iter()
        .filter_map(|v| v.rejection())
        .map(|r| r.reasons[0].detail())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names
            .iter()
            .any(|n| n == "8080/TCP is taken by default/web-0"),
        "{names:?}"
    );
    assert!(cache.unbind(first, "default/web-0").is_some());
    assert_eq!(cache.place(&profile, &web(2), None, &mut rng), Ok(first));
}

#[test]
fn a_node_with_more_taints_than_its_row_holds_is_judged_by_its_taints() {
    // Four taints of its own and two for not being Ready: more than a row
    // holds by id.
    let mut crowded = node("crowded", 4000, 4 * GI);
    crowded.taints = [
        "a=1:PreferNoSchedule",
        "b=2:PreferNoSchedule",
        "c=3:NoSchedule",
        "d=4:NoExecute",
    ]
    .iter()
    .map(|t| taint(t))
    .collect();
    crowded.ready = ConditionStatus::False;
    let mut p = pod(vec![req(100, MI)]);
    let mut cache = Cache::new(vec![crowded.clone(), node("plain", 4000, 4 * GI)]);
    let decision = cache.schedule(&Profile::default(), &p, None, &mut rng());
    assert_eq!(decision.node(), Some("plain"));
    assert_eq!(
        decision.nodes[0]
            .rejection()
            .map(|r| r.reasons[0].to_string()),
        Some("node(s) had untolerated taint {c: 3}".to_owned())
    );
    // Tolerating everything but the PreferNoSchedule taint `b`.
    for key in ["a", "c", "d", "node.kubernetes.io/not-ready"] {
        p.spec
            .tolerations
            .push(toleration(key, Some(TolerationOperator::Exists), "", None));
    }
    let decision = cache.schedule(&Profile::default(), &p, None, &mut rng());
    let raw = decision
        .verdict("crowded")
        .and_then(|v| v.score(ScorePlugin::TaintToleration));
    assert_eq!(
        raw.map(|s| &s.outcome),
        Some(&ScoreOutcome::Scored {
            raw: 1,
            normalized: 0
        })
    );
    assert_eq!(
        decision,
        Profile::default().schedule(
            &p,
            None,
            &[crowded, node("plain", 4000, 4 * GI)],
            &mut rng()
        )
    );
}

#[test]
fn a_cursor_reads_a_column_from_any_start_round_the_end() {
    use crate::scheduler::columns::{Column, Cursor};
    let mut rng = rng();
    for nodes in [1usize, 7, 100, 1_000] {
        for density in [0.0, 0.05, 0.5, 1.0] {
            // Some columns bunched at one end, where a guess by share is far out.
            for bunched in [false, true] {
                let column: Column<u32> = (0..nodes as u32)
                    .filter(|&n| {
                        rng.random_bool(density) && (!bunched || n as usize >= nodes * 3 / 4)
                    })
                    .map(|n| (n, n * 10))
                    .collect();
                for start in [0, nodes / 3, nodes / 2, nodes - 1] {
                    let mut cursor = Cursor::new(&column, start, nodes);
                    // Round the nodes from `start`, skipping some as a search
                    // skips the nodes it rejects.
                    for step in 0..nodes {
                        let node = (start + step) % nodes;
                        if step % 3 == 1 {
                            continue;
                        }
                        let want = column.iter().find(|e| e.0 as usize == node).map(|e| e.1);
                        assert_eq!(
                            cursor.at(node),
                            want,
                            "{nodes} nodes from {start}, node {node}"
                        );
                    }
                }
            }
        }
    }
}
