//! The object store and the controller lease of a real `flotilla-agent
//! serve` (a node of the test's own, support::pods), spoken to through the
//! real protocol client over its unix socket: generations, tombstones,
//! conflicts with their details, concurrent writers, a watch; and across a
//! SIGKILL and restart of `serve`, the objects kept and the lease held back.
//! The lease's maximum TTL (and so the hold-back) is shortened with the
//! hidden FLOTILLA_LEASE_MAX_TTL_MS, so nothing waits 15 s.

mod support;

use std::time::{Duration, Instant};

use flotilla::agent::protocol::messages::{
    GetObject, LeaseRefused, ListObjects, ObjectConflict, ObjectRecord, PutObject, PutReply,
    WatchObjects,
};
use flotilla::agent::protocol::{CallStream, Client, ClientError, ClientOptions, ErrorCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::pods::Node;
use tokio::net::UnixStream;

/// Generous: a debug build on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(node: &Node) -> Client {
    let stream = UnixStream::connect(node.socket())
        .await
        .expect("connect to the agent socket");
    Client::connect(stream, ClientOptions::default())
        .await
        .expect("hello")
}

fn deployment(name: &str, generation: u64, replicas: u64) -> PutObject {
    PutObject {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: name.into(),
        generation,
        object: Some(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas},
        })),
        deleted: false,
    }
}

fn tombstone(name: &str, generation: u64) -> PutObject {
    PutObject {
        object: None,
        deleted: true,
        ..deployment(name, generation, 0)
    }
}

fn get(name: &str, include_deleted: bool) -> GetObject {
    GetObject {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: name.into(),
        include_deleted,
    }
}

fn list(kind: &str, namespace: Option<&str>, include_deleted: bool) -> ListObjects {
    ListObjects {
        kind: kind.into(),
        namespace: namespace.map(str::to_string),
        include_deleted,
    }
}

async fn put(client: &Client, put: &PutObject) -> PutReply {
    client
        .put_object(put)
        .await
        .unwrap_or_else(|e| panic!("put {} at {}: {e}", put.name, put.generation))
}

fn replicas(record: &ObjectRecord) -> Option<&Value> {
    record.object.as_ref().map(|o| &o["spec"]["replicas"])
}

fn names(objects: &[ObjectRecord]) -> Vec<&str> {
    objects.iter().map(|o| o.name.as_str()).collect()
}

fn conflict<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ClientError {
    match result {
        Err(e) if e.code() == Some(ErrorCode::Conflict) => e,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_keep_the_generation_rules_and_survive_a_killed_agent() {
    let mut node = Node::new("o-store");
    node.serve();
    let client = connect(&node).await;
    for method in [
        "objects.put",
        "objects.get",
        "objects.list",
        "objects.watch",
        "lease.acquire",
        "lease.release",
        "lease.status",
    ] {
        assert!(client.supports(method), "{method} not advertised");
    }

    // Stored, repeated (idempotent), refused when stale, replaced when higher.
    assert_eq!(
        put(&client, &deployment("web", 1, 1)).await,
        PutReply {
            generation: 1,
            changed: true
        }
    );
    assert!(!put(&client, &deployment("web", 1, 1)).await.changed);
    let stale = conflict(client.put_object(&deployment("web", 1, 5)).await);
    assert_eq!(
        stale.details::<ObjectConflict>(),
        Some(ObjectConflict {
            generation: 1,
            deleted: false
        }),
        "{stale}"
    );
    assert!(put(&client, &deployment("web", 2, 3)).await.changed);
    assert!(put(&client, &deployment("api", 1, 1)).await.changed);
    let web = client.get_object(&get("web", false)).await.unwrap();
    assert_eq!((web.generation, replicas(&web)), (2, Some(&json!(3))));

    // A node's flags: cluster-scoped, namespace "".
    let node1 = PutObject {
        kind: "Node".into(),
        namespace: String::new(),
        name: "node1".into(),
        generation: 1,
        object: Some(json!({"spec": {"unschedulable": true, "taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})),
        deleted: false,
    };
    put(&client, &node1).await;
    let nodes = client
        .list_objects(&list("Node", Some(""), false))
        .await
        .unwrap()
        .objects;
    assert_eq!(names(&nodes), ["node1"]);
    assert_eq!(nodes[0].object, node1.object);

    // A delete leaves a tombstone that outranks a writer that missed it.
    assert!(put(&client, &tombstone("api", 2)).await.changed);
    let gone = client.get_object(&get("api", false)).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::NotFound), "{gone}");
    let kept = client.get_object(&get("api", true)).await.unwrap();
    assert!(kept.deleted && kept.object.is_none() && kept.generation == 2);
    let stale = conflict(client.put_object(&deployment("api", 1, 1)).await);
    assert_eq!(
        stale.details::<ObjectConflict>(),
        Some(ObjectConflict {
            generation: 2,
            deleted: true
        })
    );
    let listed = client
        .list_objects(&list("Deployment", None, false))
        .await
        .unwrap();
    assert_eq!(names(&listed.objects), ["web"]);
    let listed = client
        .list_objects(&list("Deployment", Some("default"), true))
        .await
        .unwrap();
    assert_eq!(names(&listed.objects), ["api", "web"]);

    // Refused as bad requests: names that are not safe paths, bodies that
    // are not objects, a delete with a body.
    for bad in [
        PutObject {
            name: "../../escape".into(),
            ..deployment("x", 1, 1)
        },
        PutObject {
            namespace: "_".into(),
            ..deployment("x", 1, 1)
        },
        PutObject {
            kind: "deployment".into(),
            ..deployment("x", 1, 1)
        },
        PutObject {
            object: Some(json!([1, 2])),
            ..deployment("x", 1, 1)
        },
        PutObject {
            deleted: true,
            ..deployment("x", 1, 1)
        },
        PutObject {
            object: None,
            ..deployment("x", 1, 1)
        },
        deployment("x", 0, 1),
    ] {
        let err = client.put_object(&bad).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{bad:?}: {err}");
    }
    assert!(!node.root.join("escape.json").exists());

    // Writers on several connections at once: serialised, highest wins.
    let clients = [connect(&node).await, connect(&node).await];
    let writes = (3..=22u64).map(|g| {
        let client = &clients[g as usize % 2];
        async move { (g, client.put_object(&deployment("web", g, g)).await) }
    });
    for (g, result) in futures_util::future::join_all(writes).await {
        match result {
            Ok(reply) => assert!(reply.changed, "{g}"),
            Err(e) => {
                let stored = e.details::<ObjectConflict>().expect("conflict details");
                assert!(stored.generation > g, "{g} refused by {stored:?}");
            }
        }
    }
    let web = client.get_object(&get("web", false)).await.unwrap();
    assert_eq!((web.generation, replicas(&web)), (22, Some(&json!(22))));

    // SIGKILL the agent: everything is as it was after a restart.
    let before = client
        .list_objects(&list("Deployment", None, true))
        .await
        .unwrap();
    drop((client, clients));
    node.kill_serve();
    assert!(
        node.root
            .join("objects/Deployment/default/web.json")
            .is_file()
    );
    assert!(node.root.join("objects/Node/_/node1.json").is_file());
    node.serve();
    let client = connect(&node).await;
    let after = client
        .list_objects(&list("Deployment", None, true))
        .await
        .unwrap();
    assert_eq!(after, before);
    let nodes = client
        .list_objects(&list("Node", None, false))
        .await
        .unwrap();
    assert_eq!(names(&nodes.objects), ["node1"]);
    conflict(client.put_object(&deployment("api", 1, 1)).await);
    node.assert_clean();
}

async fn next(watch: &mut CallStream<ObjectRecord>) -> ObjectRecord {
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("a watch item in time")
        .expect("the watch goes on")
        .expect("a watch item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sends_the_current_objects_then_each_change() {
    let mut node = Node::new("o-watch");
    node.serve();
    let client = connect(&node).await;
    put(&client, &deployment("web", 1, 1)).await;
    put(&client, &deployment("api", 1, 1)).await;
    put(&client, &tombstone("api", 2)).await;

    let mut watch = client
        .watch_objects(&WatchObjects {
            kind: Some("Deployment".into()),
            namespace: None,
        })
        .await
        .expect("objects.watch");
    // Now: both, the tombstone included (a watcher must see deletes).
    let mut current = [next(&mut watch).await, next(&mut watch).await];
    current.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        current
            .iter()
            .map(|o| (o.name.as_str(), o.generation, o.deleted))
            .collect::<Vec<_>>(),
        [("api", 2, true), ("web", 1, false)]
    );
    // Then each change; another kind is not this watch's.
    put(
        &client,
        &PutObject {
            kind: "Node".into(),
            namespace: String::new(),
            name: "node1".into(),
            generation: 1,
            object: Some(json!({})),
            deleted: false,
        },
    )
    .await;
    put(&client, &deployment("web", 2, 4)).await;
    put(&client, &tombstone("web", 3)).await;
    let change = next(&mut watch).await;
    assert_eq!((change.name.as_str(), change.generation), ("web", 2));
    assert_eq!(replicas(&change), Some(&json!(4)));
    let change = next(&mut watch).await;
    assert_eq!(
        (change.name.as_str(), change.generation, change.deleted),
        ("web", 3, true)
    );
    watch.cancel().await.expect("cancel the watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_goes_to_one_holder_and_is_held_back_after_a_restart() {
    const MAX_TTL_MS: u64 = 2000;
    let mut node = Node::new("o-lease");
    node.env
        .push(("FLOTILLA_LEASE_MAX_TTL_MS".into(), MAX_TTL_MS.to_string()));
    node.serve();
    let client = connect(&node).await;

    // A fresh agent has never granted: no hold-back.
    let status = client.lease_status().await.unwrap();
    assert_eq!((status.term, status.hold_back_ms), (0, None));
    assert_eq!(status.max_ttl_ms, MAX_TTL_MS);

    // Granted, capped at the maximum; renewed in the same term.
    let grant = client.acquire_lease("console-a", 60_000).await.unwrap();
    assert_eq!(
        (grant.term, grant.ttl_ms, grant.renewed),
        (1, MAX_TTL_MS, false)
    );
    let renewal = client.acquire_lease("console-a", 1500).await.unwrap();
    assert_eq!(
        (renewal.term, renewal.ttl_ms, renewal.renewed),
        (1, 1500, true)
    );

    // Another holder is refused, told who holds it and for how long.
    let refused = conflict(client.acquire_lease("console-b", 1000).await);
    let details: LeaseRefused = refused.details().expect("lease details");
    assert_eq!(details.holder.as_deref(), Some("console-a"));
    assert_eq!(details.term, 1);
    assert!(
        details.remaining_ms > 0 && details.remaining_ms <= 1500,
        "{details:?}"
    );
    let status = client.lease_status().await.unwrap();
    assert_eq!(status.holder.as_deref(), Some("console-a"));

    // Released by its holder only; then the next holder gets a new term.
    assert!(!client.release_lease("console-b").await.unwrap().released);
    assert!(client.release_lease("console-a").await.unwrap().released);
    let grant = client.acquire_lease("console-b", 1000).await.unwrap();
    assert_eq!((grant.term, grant.renewed), (2, false));

    // The agent dies while console-b holds the lease. Restarted, it refuses
    // everyone — console-b's renewal too — for one maximum TTL.
    drop(client);
    node.kill_serve();
    let restarted = Instant::now();
    node.serve();
    let client = connect(&node).await;
    let held_back = conflict(client.acquire_lease("console-b", 1000).await);
    let details: LeaseRefused = held_back.details().expect("lease details");
    assert_eq!(details.holder, None, "{held_back}");
    assert_eq!(details.term, 2, "the term survives the restart");
    assert!(
        details.remaining_ms > 0 && details.remaining_ms <= MAX_TTL_MS,
        "{details:?}"
    );
    conflict(client.acquire_lease("console-c", 1000).await);
    assert!(client.lease_status().await.unwrap().hold_back_ms.is_some());

    // Once it has passed, grants resume, terms going on from the record.
    tokio::time::sleep(Duration::from_millis(details.remaining_ms)).await;
    // A TTL long enough that a busy machine cannot let it lapse before the
    // release below (with 1 s it did, and the release found nothing held).
    let grant = client.acquire_lease("console-c", 10_000).await.unwrap();
    assert_eq!((grant.term, grant.renewed), (3, false));
    assert!(restarted.elapsed() >= Duration::from_millis(details.remaining_ms));
    assert!(client.release_lease("console-c").await.unwrap().released);
    node.assert_clean();
}
