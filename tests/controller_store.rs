//! The controller's replicated store and lease over three real agents
//! (`flotilla-agent serve`, nodes of the test's own from support::pods),
//! through the real protocol client over their unix sockets: majorities of
//! all members with an agent down or gone, the merge by generation and its
//! tie-break, catch-up of an agent that was away, compare-and-set under two
//! concurrent writers, tombstones; and the lease going to one keeper at a
//! time, passing on when its holder stops renewing, and let go by a holder
//! that lost its agents before the agents let it go.
//!
//! The agents' maximum lease TTL is shortened with the hidden
//! FLOTILLA_LEASE_MAX_TTL_MS so nothing waits 15 s. Every node (process
//! and directories) is removed when its `Node` drops, a failed test too.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::agent::protocol::messages::{GetObject, ListObjects, PutObject};
use flotilla::agent::protocol::{Client, ClientOptions};
use flotilla::controller::agents::{Agents, StaticAgents};
use flotilla::controller::lease::{LeaseKeeper, LeaseState, holder_id};
use flotilla::controller::replicated::{ReplicatedStore, StoreError, WRITE_ID};
use serde_json::{Value, json};
use support::pods::Node;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Generous: a debug build on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
/// The agents' longest grant (and their hold-back after a restart).
const MAX_TTL_MS: u64 = 2000;
const TTL: Duration = Duration::from_millis(MAX_TTL_MS);

/// Three agents, `node1` to `node3`.
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(label: &str) -> Cluster {
        Cluster::start_with_max_ttl(label, MAX_TTL_MS)
    }

    fn start_with_max_ttl(label: &str, max_ttl_ms: u64) -> Cluster {
        let nodes = (1..=3)
            .map(|i| {
                let mut node = Node::new(&format!("{label}{i}"));
                node.env
                    .push(("FLOTILLA_LEASE_MAX_TTL_MS".into(), max_ttl_ms.to_string()));
                node.serve();
                node
            })
            .collect();
        Cluster { nodes }
    }

    fn names() -> Vec<String> {
        (1..=3).map(|i| format!("node{i}")).collect()
    }

    /// A fresh connection to each agent, in order.
    async fn connect(&self) -> Vec<Client> {
        let mut clients = Vec::new();
        for node in &self.nodes {
            clients.push(connect(node).await);
        }
        clients
    }

    /// The three members over fresh connections, those not `up` absent.
    async fn agents(&self, up: [bool; 3]) -> Arc<StaticAgents> {
        let clients = self.connect().await;
        Arc::new(StaticAgents {
            agents: Cluster::names()
                .into_iter()
                .zip(clients)
                .zip(up)
                .map(|((name, client), up)| (name, up.then_some(client)))
                .collect(),
        })
    }

    async fn switch(&self) -> Arc<Switch> {
        Arc::new(Switch {
            agents: Cluster::names()
                .into_iter()
                .zip(self.connect().await)
                .collect(),
            up: Mutex::new([true; 3]),
        })
    }
}

async fn connect(node: &Node) -> Client {
    let stream = UnixStream::connect(node.socket())
        .await
        .expect("connect to the agent socket");
    Client::connect(stream, ClientOptions::default())
        .await
        .expect("hello")
}

/// Members whose connections come and go as the test says.
struct Switch {
    agents: Vec<(String, Client)>,
    up: Mutex<[bool; 3]>,
}

impl Switch {
    fn set(&self, up: [bool; 3]) {
        *self.up.lock().unwrap() = up;
    }
}

impl Agents for Switch {
    fn members(&self) -> Vec<String> {
        self.agents.iter().map(|(name, _)| name.clone()).collect()
    }

    fn client(&self, node: &str) -> Option<Client> {
        let up = *self.up.lock().unwrap();
        self.agents
            .iter()
            .zip(up)
            .find(|((name, _), _)| name == node)
            .and_then(|((_, client), up)| up.then(|| client.clone()))
    }
}

fn deployment(name: &str, replicas: u64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas},
    })
}

fn replicas(body: &Value) -> u64 {
    body["spec"]["replicas"].as_u64().expect("spec.replicas")
}

fn names(records: &[flotilla::agent::protocol::messages::ObjectRecord]) -> Vec<&str> {
    records.iter().map(|r| r.name.as_str()).collect()
}

/// One agent's own copy, tombstones included: (generation, deleted, body
/// without the write id).
async fn raw(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<(u64, bool, Value)> {
    let get = GetObject {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        include_deleted: true,
    };
    let record = client.get_object(&get).await.ok()?;
    let mut body = record.object.unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.remove(WRITE_ID);
    }
    Some((record.generation, record.deleted, body))
}

fn raw_put(name: &str, generation: u64, object: Value) -> PutObject {
    PutObject {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: name.into(),
        generation,
        object: Some(object),
        deleted: false,
    }
}

fn no_quorum(result: Result<impl std::fmt::Debug, StoreError>) -> StoreError {
    match result {
        Err(e @ StoreError::NoQuorum { .. }) => e,
        other => panic!("expected NoQuorum, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_need_a_majority_of_all_members() {
    let mut cluster = Cluster::start("cs-quorum");
    let store = ReplicatedStore::new(cluster.agents([true; 3]).await);
    assert_eq!(
        store
            .put("Deployment", "default", "web", deployment("web", 1))
            .await
            .unwrap(),
        1
    );
    let web = store
        .get("Deployment", "default", "web")
        .await
        .unwrap()
        .expect("web");
    assert_eq!(
        (web.generation, replicas(web.object.as_ref().unwrap())),
        (1, 1)
    );
    assert_eq!(
        web.object,
        Some(deployment("web", 1)),
        "the write id is not shown"
    );

    // node3's agent dies: two of three is a majority, for reads and writes.
    cluster.nodes[2].kill_serve();
    let g = store
        .put("Deployment", "default", "web", deployment("web", 2))
        .await
        .unwrap();
    assert_eq!(g, 2);
    let web = store
        .get("Deployment", "default", "web")
        .await
        .unwrap()
        .expect("web");
    assert_eq!(
        (web.generation, replicas(web.object.as_ref().unwrap())),
        (2, 2)
    );
    assert_eq!(
        names(&store.list("Deployment", None).await.unwrap()),
        ["web"]
    );

    // node2 is not connected either: one of three is not.
    let clients = cluster.connect_some([true, false, false]).await;
    let lonely = ReplicatedStore::new(Arc::new(StaticAgents {
        agents: vec![
            ("node1".into(), clients[0].clone()),
            ("node2".into(), None),
            // Connected before node3 died: a closed connection.
            ("node3".into(), store.agents().client("node3")),
        ],
    }));
    let err = no_quorum(lonely.get("Deployment", "default", "web").await);
    let StoreError::NoQuorum {
        needed,
        answered,
        members,
        silent,
        stored_on,
        ..
    } = &err
    else {
        unreachable!()
    };
    assert_eq!((*needed, *answered, *members), (2, 1, 3), "{err}");
    assert_eq!(silent, &["node2", "node3"], "{err}");
    assert!(stored_on.is_empty());
    let text = err.to_string();
    assert!(text.contains("node2: not connected"), "{text}");
    assert!(text.contains("node3"), "{text}");
    assert!(text.contains("flotilla get nodes"), "{text}");
    no_quorum(lonely.list("Deployment", None).await);
    // A write needs a majority read first: nothing is stored anywhere.
    let err = no_quorum(
        lonely
            .put("Deployment", "default", "api", deployment("api", 1))
            .await,
    );
    let StoreError::NoQuorum {
        answered,
        silent,
        stored_on,
        ..
    } = &err
    else {
        unreachable!()
    };
    assert_eq!((*answered, silent.len()), (1, 2), "{err}");
    assert!(stored_on.is_empty(), "{err}");
    assert_eq!(
        raw(clients[0].as_ref().unwrap(), "Deployment", "default", "api").await,
        None
    );

    // What the object store refuses is refused before any agent is asked.
    for bad in [
        ("deployment", "default", "x"),
        ("Deployment", "_", "x"),
        ("Deployment", "default", "../x"),
    ] {
        let err = lonely.get(bad.0, bad.1, bad.2).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    let err = store
        .put("Deployment", "default", "x", json!([1]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

impl Cluster {
    /// Fresh connections to the agents marked, `None` for the others.
    async fn connect_some(&self, which: [bool; 3]) -> Vec<Option<Client>> {
        let mut clients = Vec::new();
        for (node, wanted) in self.nodes.iter().zip(which) {
            clients.push(if wanted {
                Some(connect(node).await)
            } else {
                None
            });
        }
        clients
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_brings_an_agent_that_was_away_up_to_date() {
    let cluster = Cluster::start("cs-catch");
    let agents = cluster.switch().await;
    let store = ReplicatedStore::new(agents.clone());
    let node3 = connect(&cluster.nodes[2]).await;

    // node3 is away while the cluster changes.
    agents.set([true, true, false]);
    store
        .put("Deployment", "default", "web", deployment("web", 1))
        .await
        .unwrap();
    store
        .put("Deployment", "default", "api", deployment("api", 1))
        .await
        .unwrap();
    store
        .update("Deployment", "default", "web", |web| {
            let mut web = web.cloned().ok_or("web is gone")?;
            web["spec"]["replicas"] = json!(5);
            Ok(web)
        })
        .await
        .unwrap();
    assert!(store.delete("Deployment", "default", "api").await.unwrap());
    store
        .put(
            "Node",
            "",
            "node2",
            json!({"spec": {"unschedulable": true}}),
        )
        .await
        .unwrap();
    // A kind catch-up knows only because this store used it.
    store
        .put(
            "ConfigMap",
            "default",
            "settings",
            json!({"data": {"a": "1"}}),
        )
        .await
        .unwrap();
    assert_eq!(raw(&node3, "Deployment", "default", "web").await, None);

    // node3 is back and node1 away: node2 alone has the latest, and a
    // majority read (node2, node3) still finds it.
    agents.set([false, true, true]);
    let web = store
        .get("Deployment", "default", "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (web.generation, replicas(web.object.as_ref().unwrap())),
        (2, 5)
    );
    assert_eq!(
        store.get("Deployment", "default", "api").await.unwrap(),
        None
    );

    // Everyone back; catch-up copies the four objects node3 missed.
    agents.set([true; 3]);
    assert_eq!(store.catch_up().await.unwrap(), 4);
    assert_eq!(
        raw(&node3, "Deployment", "default", "web").await,
        Some((2, false, deployment("web", 5)))
    );
    let api = raw(&node3, "Deployment", "default", "api").await.unwrap();
    assert_eq!((api.0, api.1), (2, true), "the tombstone is copied");
    assert_eq!(
        raw(&node3, "Node", "", "node2").await.map(|r| r.2),
        Some(json!({"spec": {"unschedulable": true}}))
    );
    assert!(
        raw(&node3, "ConfigMap", "default", "settings")
            .await
            .is_some()
    );
    // Nothing lags any more.
    assert_eq!(store.catch_up().await.unwrap(), 0);

    // With one agent away catch-up still works; with two it cannot.
    agents.set([true, true, false]);
    assert_eq!(store.catch_up().await.unwrap(), 0);
    agents.set([true, false, false]);
    no_quorum(store.catch_up().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_stored_at_one_generation_are_settled_the_same_way_everywhere() {
    let cluster = Cluster::start("cs-tie");
    let clients = cluster.connect().await;
    let store = ReplicatedStore::new(cluster.agents([true; 3]).await);

    // Two writers each got generation 5 on some agents.
    let x = deployment("web", 2);
    let y = deployment("web", 3);
    clients[0]
        .put_object(&raw_put("web", 5, x.clone()))
        .await
        .unwrap();
    clients[1]
        .put_object(&raw_put("web", 5, x.clone()))
        .await
        .unwrap();
    clients[2]
        .put_object(&raw_put("web", 5, y.clone()))
        .await
        .unwrap();
    // The version more agents hold wins.
    let web = store
        .get("Deployment", "default", "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((web.generation, web.object), (5, Some(x.clone())));
    // Catch-up settles the tie one generation up, on every agent.
    assert_eq!(store.catch_up().await.unwrap(), 3);
    for client in &clients {
        assert_eq!(
            raw(client, "Deployment", "default", "web").await,
            Some((6, false, x.clone()))
        );
    }

    // An even tie (one each, node3 has none): the greater canonical JSON,
    // whichever reader looks; an update writes above it.
    clients[0]
        .put_object(&raw_put("api", 1, json!({"spec": {"replicas": 1}})))
        .await
        .unwrap();
    clients[1]
        .put_object(&raw_put("api", 1, json!({"spec": {"replicas": 9}})))
        .await
        .unwrap();
    for up in [[true, true, false], [true, true, true]] {
        let reader = ReplicatedStore::new(cluster.agents(up).await);
        let api = reader
            .get("Deployment", "default", "api")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(api.object, Some(json!({"spec": {"replicas": 9}})));
    }
    let g = store
        .update("Deployment", "default", "api", |api| {
            let mut api = api.cloned().ok_or("api is gone")?;
            api["spec"]["replicas"] = json!(replicas(&api) + 1);
            Ok(api)
        })
        .await
        .unwrap();
    assert_eq!(g, 2);
    for client in &clients {
        assert_eq!(
            raw(client, "Deployment", "default", "api").await,
            Some((2, false, json!({"spec": {"replicas": 10}})))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_writers_lose_no_increment() {
    const EACH: u64 = 20;
    let cluster = Cluster::start("cs-cas");
    let setup = ReplicatedStore::new(cluster.agents([true; 3]).await);
    setup
        .put("Deployment", "default", "counter", json!({"count": 0}))
        .await
        .unwrap();

    // Two writers as two processes would be: stores of their own, over
    // connections of their own.
    let mut writers = Vec::new();
    for _ in 0..2 {
        let store = ReplicatedStore::new(cluster.agents([true; 3]).await);
        writers.push(tokio::spawn(async move {
            let mut generations = Vec::new();
            for _ in 0..EACH {
                let g = store
                    .update("Deployment", "default", "counter", |current| {
                        let mut body = current.cloned().ok_or("the counter is gone")?;
                        let count = body["count"].as_u64().ok_or("count is not a number")?;
                        body["count"] = json!(count + 1);
                        Ok(body)
                    })
                    .await
                    .expect("update");
                generations.push(g);
            }
            generations
        }));
    }
    let mut all = BTreeSet::new();
    for writer in writers {
        let generations = tokio::time::timeout(DEADLINE, writer)
            .await
            .expect("the writers finish")
            .expect("a writer panicked");
        all.extend(generations);
    }
    let counter = setup
        .get("Deployment", "default", "counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter.object, Some(json!({"count": 2 * EACH})));
    assert_eq!(
        all.len() as u64,
        2 * EACH,
        "every update has its own generation"
    );
    assert_eq!(counter.generation, *all.last().unwrap());

    // An update that changes nothing writes nothing.
    let same = setup
        .update("Deployment", "default", "counter", |current| {
            current
                .cloned()
                .ok_or_else(|| "the counter is gone".to_string())
        })
        .await
        .unwrap();
    assert_eq!(same, counter.generation);

    // A refusal from the closure comes back as it was said.
    let err = setup
        .update(
            "Deployment",
            "default",
            "missing",
            |current| match current {
                Some(_) => Ok(json!({})),
                None => Err("deployment \"missing\" not found".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused(m) if m.contains("not found")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_leaves_a_tombstone_that_lists_leave_out() {
    let cluster = Cluster::start("cs-del");
    let clients = cluster.connect().await;
    let store = ReplicatedStore::new(cluster.agents([true; 3]).await);
    store
        .put("Deployment", "default", "a", deployment("a", 1))
        .await
        .unwrap();
    store
        .put("Deployment", "default", "b", deployment("b", 1))
        .await
        .unwrap();
    store
        .put("Deployment", "other", "c", deployment("c", 1))
        .await
        .unwrap();
    assert_eq!(
        names(&store.list("Deployment", None).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(&store.list("Deployment", Some("other")).await.unwrap()),
        ["c"]
    );

    assert!(store.delete("Deployment", "default", "a").await.unwrap());
    assert!(
        !store.delete("Deployment", "default", "a").await.unwrap(),
        "already gone"
    );
    assert!(
        !store
            .delete("Deployment", "default", "never")
            .await
            .unwrap()
    );
    assert_eq!(
        names(&store.list("Deployment", None).await.unwrap()),
        ["b", "c"]
    );
    assert_eq!(store.get("Deployment", "default", "a").await.unwrap(), None);
    for client in &clients {
        let (generation, deleted, _) = raw(client, "Deployment", "default", "a").await.unwrap();
        assert_eq!((generation, deleted), (2, true));
        // The agents list it only when asked for tombstones.
        let listed = client
            .list_objects(&ListObjects {
                kind: "Deployment".into(),
                namespace: Some("default".into()),
                include_deleted: false,
            })
            .await
            .unwrap();
        assert_eq!(names(&listed.objects), ["b"]);
    }
    // Made again, above its tombstone.
    assert_eq!(
        store
            .put("Deployment", "default", "a", deployment("a", 7))
            .await
            .unwrap(),
        3
    );
    let a = store
        .get("Deployment", "default", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replicas(a.object.as_ref().unwrap()), 7);
}

/// Waits until `rx` reads `want`.
async fn until(rx: &mut watch::Receiver<bool>, want: bool, what: &str) {
    tokio::time::timeout(DEADLINE, rx.wait_for(|held| *held == want))
        .await
        .unwrap_or_else(|_| panic!("{what}: not {want} within {DEADLINE:?}"))
        .expect("the keeper's channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_grants_one_holder_and_release_frees_it() {
    // Nothing here waits for a lapse: a long TTL, so a slow machine does
    // not lose the lease between two calls.
    const LONG: Duration = Duration::from_secs(20);
    let cluster = Cluster::start_with_max_ttl("cs-round", LONG.as_millis() as u64);
    let a = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), LONG);
    let b = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), LONG);
    let LeaseState::Held {
        until,
        term_by_node,
    } = a.try_acquire().await
    else {
        panic!("a fresh cluster grants the first asker");
    };
    // Never later than an agent's grant could end.
    assert!(until <= Instant::now() + LONG);
    assert_eq!(
        term_by_node.keys().collect::<Vec<_>>(),
        ["node1", "node2", "node3"]
    );
    match b.try_acquire().await {
        LeaseState::NotHeld { holder, retry_in } => {
            assert_eq!(holder.as_deref(), Some(a.holder()));
            assert!(retry_in <= LONG, "{retry_in:?}");
        }
        held => panic!("two holders: {held:?}"),
    }
    assert_eq!(b.current_holder().await.as_deref(), Some(a.holder()));
    // A renewal keeps the terms.
    let LeaseState::Held {
        term_by_node: renewed,
        ..
    } = a.try_acquire().await
    else {
        panic!("the holder renews");
    };
    assert_eq!(renewed, term_by_node);
    a.release().await;
    assert_eq!(a.current_holder().await, None);
    assert!(b.try_acquire().await.is_held());
    b.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keepers_never_hold_at_once_and_the_lease_passes_on() {
    let cluster = Cluster::start("cs-keep");
    let keepers = [
        LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL),
        LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL),
    ];
    let holders: Vec<String> = keepers.iter().map(|k| k.holder().to_string()).collect();
    let cancels = [CancellationToken::new(), CancellationToken::new()];
    let [ka, kb] = keepers;
    let (mut rx_a, task_a) = ka.spawn(cancels[0].clone());
    let (mut rx_b, task_b) = kb.spawn(cancels[1].clone());

    // Sample both for a few seconds (several renewals): never both.
    let (mut both, mut seen_a, mut seen_b) = (0, false, false);
    let stop = Instant::now() + Duration::from_secs(3);
    while Instant::now() < stop {
        let (a, b) = (*rx_a.borrow(), *rx_b.borrow());
        both += usize::from(a && b);
        seen_a |= a;
        seen_b |= b;
        tokio::select! {
            _ = rx_a.changed() => {}
            _ = rx_b.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    assert_eq!(both, 0, "both keepers held the lease at once");
    assert!(seen_a || seen_b, "neither keeper got the lease");
    // One holds (a busy machine may have let it lapse for a moment).
    tokio::time::timeout(DEADLINE, async {
        while !*rx_a.borrow() && !*rx_b.borrow() {
            tokio::select! {
                _ = rx_a.changed() => {}
                _ = rx_b.changed() => {}
            }
        }
    })
    .await
    .expect("one keeper holds the lease");
    let (mut holder_rx, holder, mut other_rx, other) = if *rx_a.borrow() {
        (rx_a, 0, rx_b, 1)
    } else {
        (rx_b, 1, rx_a, 0)
    };

    // The holder stops and releases: the other takes over.
    let probe = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL);
    cancels[holder].cancel();
    until(&mut holder_rx, false, "the cancelled holder").await;
    until(&mut other_rx, true, "the other keeper").await;
    assert!(!*holder_rx.borrow());
    eventually_held_by(&probe, Some(&holders[other])).await;
    cancels[other].cancel();
    for task in [task_a, task_b] {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the keeper ends")
            .unwrap();
    }
    // Released on the way out.
    assert_eq!(probe.current_holder().await, None);
}

/// Waits until a majority of the agents name `holder`.
async fn eventually_held_by(probe: &LeaseKeeper, holder: Option<&str>) {
    let start = Instant::now();
    loop {
        let now = probe.current_holder().await;
        if now.as_deref() == holder {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the lease is held by {now:?}, not {holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stops_renewing_is_replaced_after_its_lease_lapses() {
    let cluster = Cluster::start("cs-lapse");
    let a = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL);
    let b = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL);
    let b_holder = b.holder().to_string();
    let probe = LeaseKeeper::new(cluster.agents([true; 3]).await, holder_id(), TTL);
    let (mut rx_a, task_a) = a.spawn(CancellationToken::new());
    until(&mut rx_a, true, "the first keeper").await;
    let cancel_b = CancellationToken::new();
    let (mut rx_b, task_b) = b.spawn(cancel_b.clone());

    // The holder dies without releasing (its task is aborted): its channel
    // says false, the agents still name it, and the other keeper gets the
    // lease once it has lapsed.
    task_a.abort();
    assert!(task_a.await.unwrap_err().is_cancelled());
    assert!(!*rx_a.borrow(), "an aborted keeper leaves false behind");
    until(&mut rx_b, true, "the second keeper").await;
    eventually_held_by(&probe, Some(&b_holder)).await;
    cancel_b.cancel();
    tokio::time::timeout(DEADLINE, task_b)
        .await
        .expect("the keeper ends")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_loses_its_agents_lets_go_before_they_do() {
    let cluster = Cluster::start("cs-gone");
    let agents = cluster.switch().await;
    // A wide margin, so the check below does not race a busy machine.
    let keeper =
        LeaseKeeper::new(agents.clone(), holder_id(), TTL).with_margin(Duration::from_millis(1000));
    let holder = keeper.holder().to_string();
    let observers = cluster.connect().await;
    let cancel = CancellationToken::new();
    let (mut rx, task) = keeper.spawn(cancel.clone());
    until(&mut rx, true, "the keeper").await;
    // Let it renew a few times; then, while it holds the lease, its
    // connections vanish (the agents run on). It must say false while the
    // agents still hold its grant.
    tokio::time::sleep(TTL).await;
    until(&mut rx, true, "the keeper").await;
    agents.set([false; 3]);
    until(&mut rx, false, "the keeper without agents").await;
    let statuses = futures_util::future::join_all(observers.iter().map(|c| c.lease_status())).await;
    let still = statuses
        .into_iter()
        .filter(|s| s.as_ref().unwrap().holder.as_deref() == Some(holder.as_str()))
        .count();
    assert!(
        still >= 2,
        "the keeper said false only after a majority of agents let its lease go ({still} still hold it)"
    );
    // Its agents back, it takes the lease again.
    agents.set([true; 3]);
    until(&mut rx, true, "the keeper with its agents back").await;
    cancel.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the keeper ends")
        .unwrap();
}
