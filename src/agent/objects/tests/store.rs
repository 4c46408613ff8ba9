use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::agent::objects::store::{NAME_MAX, ObjectKey, ObjectStore, Put, StoreError};

fn scratch() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let objects = dir.path().join("objects");
    (dir, objects)
}

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, namespace, name).expect("a valid key")
}

fn web() -> ObjectKey {
    key("Deployment", "default", "web")
}

fn put(store: &ObjectStore, key: &ObjectKey, generation: u64, object: Value) -> bool {
    store
        .put(Put {
            key: key.clone(),
            generation,
            object: Some(object),
        })
        .unwrap_or_else(|e| panic!("put {key} at {generation}: {e}"))
        .changed
}

fn delete(store: &ObjectStore, key: &ObjectKey, generation: u64) -> Result<bool, StoreError> {
    store
        .put(Put {
            key: key.clone(),
            generation,
            object: None,
        })
        .map(|o| o.changed)
}

fn conflict(result: Result<impl std::fmt::Debug, StoreError>) -> (u64, bool) {
    match result {
        Err(StoreError::Conflict {
            generation,
            deleted,
            ..
        }) => (generation, deleted),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn body(replicas: u64) -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas}})
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_put_is_stored_when_its_generation_is_higher() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    assert!(store.get(&web(), true).is_none());
    assert!(put(&store, &web(), 1, body(1)));
    assert!(put(&store, &web(), 2, body(2)));
    // Generations need not be consecutive.
    assert!(put(&store, &web(), 10, body(3)));
    let stored = store.get(&web(), false).expect("stored");
    assert_eq!(stored.generation, 10);
    assert_eq!(stored.object, Some(body(3)));
    assert!(!stored.deleted);
    assert_eq!(
        (stored.kind.as_str(), stored.namespace.as_str()),
        ("Deployment", "default")
    );
}

#[test]
fn the_same_version_again_is_an_idempotent_success_that_writes_nothing() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    put(&store, &web(), 3, body(1));
    let before = store.get(&web(), false).unwrap();
    let path = root.join("Deployment/default/web.json");
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    // The same body, its keys in another order, is the same JSON.
    let again = json!({"spec": {"replicas": 1}, "metadata": {"name": "web"}});
    assert!(
        !put(&store, &web(), 3, again),
        "an identical repeat changes nothing"
    );
    assert_eq!(store.get(&web(), false).unwrap(), before);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
}

#[test]
fn a_lower_or_equal_but_different_generation_is_a_conflict_naming_the_stored_one() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    put(&store, &web(), 5, body(1));
    let lower = store.put(Put {
        key: web(),
        generation: 4,
        object: Some(body(1)),
    });
    assert_eq!(
        conflict(lower),
        (5, false),
        "lower, even with the same body"
    );
    let different = store.put(Put {
        key: web(),
        generation: 5,
        object: Some(body(2)),
    });
    let err = different.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("Deployment default/web is stored at generation 5"),
        "{err}"
    );
    assert_eq!(conflict(different), (5, false));
    assert_eq!(store.get(&web(), false).unwrap().object, Some(body(1)));
    // The writer retries higher and wins.
    assert!(put(&store, &web(), 6, body(2)));
}

#[test]
fn generation_zero_and_bodies_that_are_not_objects_are_refused() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    let zero = store.put(Put {
        key: web(),
        generation: 0,
        object: Some(body(1)),
    });
    assert!(matches!(zero, Err(StoreError::Invalid(_))), "{zero:?}");
    for not_an_object in [json!(null), json!([1]), json!("x"), json!(3)] {
        let r = store.put(Put {
            key: web(),
            generation: 1,
            object: Some(not_an_object.clone()),
        });
        assert!(
            matches!(r, Err(StoreError::Invalid(_))),
            "{not_an_object}: {r:?}"
        );
    }
    assert!(files_under(&root).is_empty(), "{:?}", files_under(&root));
}

#[test]
fn a_tombstone_hides_the_object_and_stops_an_older_version_coming_back() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    let api = key("Deployment", "default", "api");
    put(&store, &web(), 1, body(1));
    put(&store, &api, 1, body(1));
    assert!(delete(&store, &web(), 2).unwrap());

    assert!(store.get(&web(), false).is_none(), "hidden by default");
    let tombstone = store.get(&web(), true).expect("kept");
    assert!(tombstone.deleted);
    assert_eq!(tombstone.generation, 2);
    assert_eq!(tombstone.object, None);
    let names = |objects: Vec<crate::agent::objects::StoredObject>| -> Vec<String> {
        objects.into_iter().map(|o| o.name).collect()
    };
    assert_eq!(names(store.list("Deployment", None, false)), ["api"]);
    assert_eq!(names(store.list("Deployment", None, true)), ["api", "web"]);

    // A writer that missed the delete cannot resurrect the object…
    let stale = store.put(Put {
        key: web(),
        generation: 1,
        object: Some(body(1)),
    });
    assert_eq!(conflict(stale), (2, true));
    // …a repeated delete is idempotent, a different one at 2 is not…
    assert!(!delete(&store, &web(), 2).unwrap());
    let recreate_at_same = store.put(Put {
        key: web(),
        generation: 2,
        object: Some(body(1)),
    });
    assert_eq!(conflict(recreate_at_same), (2, true));
    // …and a higher generation creates it anew.
    assert!(put(&store, &web(), 3, body(9)));
    assert_eq!(store.get(&web(), false).unwrap().object, Some(body(9)));
}

#[test]
fn a_delete_of_an_object_never_seen_is_kept_as_a_tombstone() {
    // A replica that missed the create still learns of the delete, so the
    // lagging create cannot land after it.
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    assert!(delete(&store, &web(), 4).unwrap());
    let late_create = store.put(Put {
        key: web(),
        generation: 3,
        object: Some(body(1)),
    });
    assert_eq!(conflict(late_create), (4, true));
    assert!(store.get(&web(), false).is_none());
}

#[test]
fn objects_and_tombstones_survive_a_reopen() {
    let (_dir, root) = scratch();
    let node1 = key("Node", "", "node1");
    let node_body = json!({"spec": {"unschedulable": true}, "metadata": {"labels": {"zone": "a"}}});
    {
        let store = ObjectStore::open(&root).unwrap();
        put(&store, &web(), 7, body(3));
        put(&store, &key("Deployment", "prod", "web"), 1, body(1));
        put(&store, &node1, 2, node_body.clone());
        put(&store, &key("Deployment", "default", "gone"), 1, body(1));
        delete(&store, &key("Deployment", "default", "gone"), 2).unwrap();
    }
    assert_eq!(
        files_under(&root),
        [
            "Deployment/default/gone.json",
            "Deployment/default/web.json",
            "Deployment/prod/web.json",
            "Node/_/node1.json",
        ]
    );
    let mode = fs::metadata(root.join("Node/_/node1.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let store = ObjectStore::open(&root).unwrap();
    let web = store.get(&web(), false).unwrap();
    assert_eq!((web.generation, web.object), (7, Some(body(3))));
    let node = store.get(&node1, false).unwrap();
    assert_eq!(node.namespace, "");
    assert_eq!(node.object, Some(node_body));
    let gone = store
        .get(&key("Deployment", "default", "gone"), true)
        .unwrap();
    assert!(gone.deleted && gone.generation == 2);
    assert_eq!(store.list("Deployment", Some("prod"), false).len(), 1);
    assert_eq!(store.list("Deployment", Some("default"), true).len(), 2);
    assert_eq!(store.list("Node", Some(""), false).len(), 1);
    assert!(store.list("Node", Some("default"), false).is_empty());
    // The rules hold across the reopen.
    let stale = store.put(Put {
        key: key("Deployment", "default", "web"),
        generation: 6,
        object: Some(body(1)),
    });
    assert_eq!(conflict(stale), (7, false));
}

#[test]
fn unsafe_kinds_namespaces_and_names_are_refused() {
    let long = "a".repeat(NAME_MAX + 1);
    let cases = [
        ("deployment", "default", "web"),
        ("", "default", "web"),
        ("../Deployment", "default", "web"),
        ("Deploy-ment", "default", "web"),
        ("Deployment", "..", "web"),
        ("Deployment", ".", "web"),
        ("Deployment", "_", "web"),
        ("Deployment", "a/b", "web"),
        ("Deployment", "Default", "web"),
        ("Deployment", "default", ""),
        ("Deployment", "default", "."),
        ("Deployment", "default", ".."),
        ("Deployment", "default", "../../etc/passwd"),
        ("Deployment", "default", "a/b"),
        ("Deployment", "default", ".tmp-1-2"),
        ("Deployment", "default", "Web"),
        ("Deployment", "default", "web\0"),
        ("Deployment", "default", long.as_str()),
    ];
    for (kind, namespace, name) in cases {
        let r = ObjectKey::new(kind, namespace, name);
        assert!(
            matches!(r, Err(StoreError::Invalid(_))),
            "{kind:?} {namespace:?} {name:?}: {r:?}"
        );
    }
    // The longest name the store takes fits a file name with its suffix.
    let longest = format!("{}.{}", "a".repeat(63), "b".repeat(NAME_MAX - 64));
    assert_eq!(longest.len(), NAME_MAX);
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    put(&store, &key("Deployment", "default", &longest), 1, body(1));
    // Dotted names, as Kubernetes allows.
    put(&store, &key("Node", "", "node1.example.com"), 1, json!({}));
    drop(store);
    assert_eq!(ObjectStore::open(&root).unwrap().all().len(), 2);
}

#[test]
fn a_torn_write_is_ignored_and_cleared_and_a_bad_file_skipped() {
    let (_dir, root) = scratch();
    {
        let store = ObjectStore::open(&root).unwrap();
        put(&store, &web(), 1, body(1));
        put(&store, &key("Deployment", "default", "api"), 1, body(1));
    }
    let ns = root.join("Deployment/default");
    // A crash between the temporary file's creation and its rename.
    fs::write(ns.join(".tmp-4242-0"), b"{\"kind\":\"Deploym").unwrap();
    // A file that is not JSON (a disk fault), one that claims another
    // name, and a stray file: each skipped, the rest loaded.
    fs::write(ns.join("api.json"), b"{\"kind\":").unwrap();
    let mut other: Value = serde_json::from_slice(&fs::read(ns.join("web.json")).unwrap()).unwrap();
    other["name"] = json!("db");
    fs::write(ns.join("cache.json"), other.to_string()).unwrap();
    fs::write(ns.join("README"), b"hello").unwrap();

    let store = ObjectStore::open(&root).unwrap();
    let all: Vec<String> = store.all().into_iter().map(|o| o.name).collect();
    assert_eq!(all, ["web"]);
    assert!(
        !ns.join(".tmp-4242-0").exists(),
        "the torn write is removed"
    );
    // A put over the unreadable file replaces it.
    put(&store, &key("Deployment", "default", "api"), 1, body(1));
    drop(store);
    assert_eq!(ObjectStore::open(&root).unwrap().all().len(), 2);
}

#[test]
fn the_lease_directory_and_other_files_are_not_objects() {
    let (_dir, root) = scratch();
    fs::create_dir_all(root.join("leases")).unwrap();
    fs::write(root.join("leases/controller.json"), br#"{"term":3}"#).unwrap();
    fs::write(root.join("notes.txt"), b"x").unwrap();
    let store = ObjectStore::open(&root).unwrap();
    assert!(store.all().is_empty());
}

#[test]
fn concurrent_writers_are_serialised_and_the_highest_generation_wins() {
    let (_dir, root) = scratch();
    let store = Arc::new(ObjectStore::open(&root).unwrap());
    let mut changes = store.subscribe();
    let threads: Vec<_> = (1..=16u64)
        .map(|g| {
            let store = store.clone();
            std::thread::spawn(move || {
                // Each generation twice: one of the pair may find the other stored.
                (0..2)
                    .map(|_| {
                        store.put(Put {
                            key: web(),
                            generation: g,
                            object: Some(body(g)),
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut stored = Vec::new();
    for (g, thread) in (1..=16u64).zip(threads) {
        for result in thread.join().unwrap() {
            match result {
                Ok(outcome) if outcome.changed => stored.push(g),
                Ok(_) => {}
                Err(StoreError::Conflict { generation, .. }) => assert!(generation >= g),
                Err(e) => panic!("{e}"),
            }
        }
    }
    let last = store.get(&web(), false).unwrap();
    assert_eq!((last.generation, last.object), (16, Some(body(16))));
    // Each stored change was announced once, in increasing generations.
    let mut announced = Vec::new();
    while let Ok(change) = changes.try_recv() {
        announced.push(change.generation);
    }
    stored.sort();
    assert_eq!(announced, stored);
    assert_eq!(announced.last(), Some(&16));
    drop(store);
    let reopened = ObjectStore::open(&root).unwrap();
    assert_eq!(reopened.get(&web(), false).unwrap().generation, 16);
    assert!(
        files_under(&root)
            .iter()
            .all(|f| f == "Deployment/default/web.json"),
        "{:?}",
        files_under(&root)
    );
}

#[test]
fn watchers_hear_stored_changes_and_not_repeats() {
    let (_dir, root) = scratch();
    let store = ObjectStore::open(&root).unwrap();
    let mut changes = store.subscribe();
    put(&store, &web(), 1, body(1));
    put(&store, &web(), 1, body(1));
    delete(&store, &web(), 2).unwrap();
    let first = changes.try_recv().unwrap();
    assert_eq!((first.generation, first.deleted), (1, false));
    let second = changes.try_recv().unwrap();
    assert_eq!((second.generation, second.deleted), (2, true));
    assert!(changes.try_recv().is_err(), "the repeat is not announced");
}
