//! The object store: this agent's copy of the cluster's replicated objects
//! (deployments, node flags), each named by (kind, namespace, name) and
//! carrying a generation. The agent never reads the objects' bodies — the
//! console validates them — it only orders versions by generation.
//!
//! # Rules
//!
//! * A put is stored when its generation is higher than the stored one (or
//!   nothing is stored). The same generation with the same content (body
//!   and deleted flag) is an idempotent success that writes nothing, so a
//!   writer may retry after a lost reply. Anything else is a
//!   [`StoreError::Conflict`] naming the stored generation, so the writer
//!   can read, merge and retry with a higher one.
//! * A delete is a put of a tombstone (`deleted`, no body) at a higher
//!   generation. Tombstones are kept, so an agent that missed the delete
//!   and still has the object cannot bring it back: a reader that merges
//!   replicas by highest generation sees the tombstone win. They are never
//!   pruned today; they are a few hundred bytes each. Pruning by age
//!   (`updatedAt`) would be safe only if an agent that was away longer than
//!   that age had its copy replaced on return, so it is left undone.
//! * Writes are serialised (one writer at a time, from its generation check
//!   to its directory fsync); reads are served from memory and never wait
//!   on a disk.
//!
//! # On disk
//!
//! ```text
//! ROOT/objects/KIND/NAMESPACE/NAME.json   one object or tombstone
//! ROOT/objects/KIND/_/NAME.json           a cluster-scoped one (namespace "")
//! ```
//!
//! Each file is written atomically with fsync ([`super::files`]) and the
//! whole store is read into memory at start. Kinds are `UpperCamelCase`
//! (`Deployment`, `Node`); namespaces are RFC 1123 labels and names RFC
//! 1123 subdomains (Kubernetes' rules, from [`crate::api::meta`]), so none
//! can climb out of its directory, and `_` can never be a namespace.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::files;
use crate::api::meta::{dns1123_label_errors, dns1123_subdomain_errors};

/// The directory of cluster-scoped objects (those with namespace `""`).
const CLUSTER_SCOPED_DIR: &str = "_";
/// Longest kind: Kubernetes kinds are short CamelCase words.
const KIND_MAX: usize = 63;
/// Longest name: 255 bytes of file name less `.json`. Kubernetes allows 253;
/// a name that long has no room for the pods a deployment names after it.
pub const NAME_MAX: usize = 250;
/// Changes a watcher may fall behind by before its watch ends.
const CHANGES_BUFFERED: usize = 1024;

/// What the store refuses or fails with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A kind, namespace, name or body the store does not accept.
    #[error("{0}")]
    Invalid(String),
    /// The put's generation is lower than the stored one, or equal to it
    /// with other content.
    #[error(
        "{key} is stored at generation {generation}{}; write a higher generation",
        if *deleted { " (deleted)" } else { "" }
    )]
    Conflict {
        key: ObjectKey,
        generation: u64,
        deleted: bool,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, source }
}

/// An object's identity. Made only by [`ObjectKey::new`], which checks each
/// part, so every key is a safe path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

impl ObjectKey {
    /// Checks the parts: `kind` is `UpperCamelCase` letters and digits,
    /// `namespace` is `""` (cluster-scoped) or an RFC 1123 label, `name` an
    /// RFC 1123 subdomain of at most [`NAME_MAX`] bytes.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Result<ObjectKey, StoreError> {
        check_kind(kind)?;
        check_namespace(namespace)?;
        check_name(name)?;
        Ok(ObjectKey {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of this key's file, under the store's.
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.kind).join(namespace_dir(&self.namespace))
    }

    fn file_name(&self) -> String {
        format!("{}.json", self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

pub fn check_kind(kind: &str) -> Result<(), StoreError> {
    let b = kind.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_uppercase)
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b.len() <= KIND_MAX;
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid kind {:?}: a kind is an upper-case letter then letters and digits, at most {KIND_MAX} (e.g. 'Deployment')",
            shorten(kind)
        )))
    }
}

pub fn check_namespace(namespace: &str) -> Result<(), StoreError> {
    if namespace.is_empty() {
        return Ok(());
    }
    match dns1123_label_errors(namespace).into_iter().next() {
        None => Ok(()),
        Some(message) => Err(StoreError::Invalid(format!(
            "invalid namespace {:?}: {message} (\"\" for a cluster-scoped object)",
            shorten(namespace)
        ))),
    }
}

pub fn check_name(name: &str) -> Result<(), StoreError> {
    let mut errors = dns1123_subdomain_errors(name);
    if errors.is_empty() && name.len() > NAME_MAX {
        errors.push(format!(
            "must be no more than {NAME_MAX} characters in the agent's object store"
        ));
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some(message) => Err(StoreError::Invalid(format!(
            "invalid name {:?}: {message}",
            shorten(name)
        ))),
    }
}

/// Enough of a refused string to recognise it, never a megabyte of it.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn namespace_dir(namespace: &str) -> &str {
    if namespace.is_empty() {
        CLUSTER_SCOPED_DIR
    } else {
        namespace
    }
}

/// One stored version: an object, or the tombstone of a deleted one. Also
/// the format of its file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The body, as the console wrote it; `None` for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// When this agent stored this version (its own clock): for people, and
    /// for pruning tombstones some day; never for ordering.
    pub updated_at: DateTime<Utc>,
}

impl StoredObject {
    fn same_content(&self, deleted: bool, object: &Option<Value>) -> bool {
        self.deleted == deleted && self.object == *object
    }
}

/// A version to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Put {
    pub key: ObjectKey,
    /// At least 1.
    pub generation: u64,
    /// `Some` JSON object to store it, `None` for a tombstone.
    pub object: Option<Value>,
}

/// What a put did.
#[derive(Clone, Debug, PartialEq)]
pub struct PutOutcome {
    /// The version now stored.
    pub stored: StoredObject,
    /// False when the put repeated the stored version (nothing was written).
    pub changed: bool,
}

/// See the module comment.
pub struct ObjectStore {
    dir: PathBuf,
    /// Held by a writer from its generation check to its directory fsync, so
    /// two writers of one object cannot both pass the check.
    writer: Mutex<()>,
    /// What is on disk. Written only under `writer`, after the file is
    /// durable, and only for a moment; so a reader never waits on a disk.
    objects: RwLock<BTreeMap<ObjectKey, StoredObject>>,
    /// Every stored change, sent under `writer` so watchers see them in order.
    changes: broadcast::Sender<StoredObject>,
}

impl ObjectStore {
    /// Opens (creating it if need be) the store in `dir` and reads every
    /// object into memory. Temporary files of torn writes are removed;
    /// files that cannot be read are skipped with a warning (another agent
    /// still has the object, and the next put replaces the file).
    pub fn open(dir: &Path) -> Result<ObjectStore, StoreError> {
        files::create_dir_durable(dir).map_err(io_error(dir))?;
        let objects = load(dir)?;
        tracing::info!(objects = objects.len(), dir = %dir.display(), "object store opened");
        Ok(ObjectStore {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            objects: RwLock::new(objects),
            changes: broadcast::channel(CHANGES_BUFFERED).0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `put` by the rules of the module comment; blocks on fsync.
    pub fn put(&self, put: Put) -> Result<PutOutcome, StoreError> {
        if put.generation == 0 {
            return Err(StoreError::Invalid(
                "generation must be at least 1".to_string(),
            ));
        }
        if let Some(object) = &put.object
            && !object.is_object()
        {
            return Err(StoreError::Invalid(format!(
                "the body of {} must be a JSON object",
                put.key
            )));
        }
        let deleted = put.object.is_none();
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.read().get(&put.key).cloned();
        if let Some(current) = current {
            if current.generation == put.generation && current.same_content(deleted, &put.object) {
                return Ok(PutOutcome {
                    stored: current,
                    changed: false,
                });
            }
            if current.generation >= put.generation {
                return Err(StoreError::Conflict {
                    key: put.key,
                    generation: current.generation,
                    deleted: current.deleted,
                });
            }
        }
        let stored = StoredObject {
            kind: put.key.kind.clone(),
            namespace: put.key.namespace.clone(),
            name: put.key.name.clone(),
            generation: put.generation,
            deleted,
            object: put.object,
            updated_at: Utc::now(),
        };
        let dir = put.key.dir(&self.dir);
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| StoreError::Invalid(format!("cannot encode {}: {e}", put.key)))?;
        files::create_dir_durable(&dir).map_err(io_error(&dir))?;
        files::write_atomic(&dir, &put.key.file_name(), &bytes).map_err(io_error(&dir))?;
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(put.key, stored.clone());
        // No watcher is not an error.
        let _ = self.changes.send(stored.clone());
        Ok(PutOutcome {
            stored,
            changed: true,
        })
    }

    /// The stored version of `key`; a tombstone only when `include_deleted`.
    pub fn get(&self, key: &ObjectKey, include_deleted: bool) -> Option<StoredObject> {
        self.read()
            .get(key)
            .filter(|o| include_deleted || !o.deleted)
            .cloned()
    }

    /// The objects of `kind` (in `namespace` when given; `Some("")` is the
    /// cluster-scoped ones), by namespace then name; tombstones only when
    /// `include_deleted`.
    pub fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
        include_deleted: bool,
    ) -> Vec<StoredObject> {
        self.read()
            .values()
            .filter(|o| o.kind == kind)
            .filter(|o| namespace.is_none_or(|ns| o.namespace == ns))
            .filter(|o| include_deleted || !o.deleted)
            .cloned()
            .collect()
    }

    /// Every object and tombstone (a watch's starting point).
    pub fn all(&self) -> Vec<StoredObject> {
        self.read().values().cloned().collect()
    }

    /// Every change stored from now on, tombstones included. A receiver
    /// more than 1024 changes behind loses the oldest (it reads `Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<StoredObject> {
        self.changes.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, StoredObject>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads `ROOT/objects/KIND/NAMESPACE/NAME.json`, skipping what is not an
/// object of ours (the lease's directory, stray files) with a warning for
/// anything that looks like one but cannot be read.
fn load(dir: &Path) -> Result<BTreeMap<ObjectKey, StoredObject>, StoreError> {
    let mut objects = BTreeMap::new();
    for kind in subdirectories(dir)? {
        if check_kind(&kind).is_err() {
            continue;
        }
        let kind_dir = dir.join(&kind);
        for ns_dir_name in subdirectories(&kind_dir)? {
            let namespace = if ns_dir_name == CLUSTER_SCOPED_DIR {
                String::new()
            } else {
                ns_dir_name.clone()
            };
            let ns_dir = kind_dir.join(&ns_dir_name);
            if ns_dir_name.is_empty() || check_namespace(&namespace).is_err() {
                tracing::warn!(path = %ns_dir.display(), "skipping a directory that names no namespace");
                continue;
            }
            files::remove_temporaries(&ns_dir);
            for entry in fs::read_dir(&ns_dir).map_err(io_error(&ns_dir))? {
                let entry = entry.map_err(io_error(&ns_dir))?;
                let path = entry.path();
                match load_one(&path, &kind, &namespace) {
                    Ok(Some((key, object))) => {
                        objects.insert(key, object);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        tracing::warn!(path = %path.display(), "skipping an unreadable object: {why}")
                    }
                }
            }
        }
    }
    Ok(objects)
}

fn load_one(
    path: &Path,
    kind: &str,
    namespace: &str,
) -> Result<Option<(ObjectKey, StoredObject)>, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if files::is_temporary(&file_name) {
        // A torn write that could not be removed: its target is intact.
        return Ok(None);
    }
    let Some(name) = file_name.strip_suffix(".json") else {
        return Err("not a .json file".into());
    };
    let key = ObjectKey::new(kind, namespace, name).map_err(|e| e.to_string())?;
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let object: StoredObject = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if (
        object.kind.as_str(),
        object.namespace.as_str(),
        object.name.as_str(),
    ) != (kind, namespace, name)
    {
        return Err(format!(
            "it holds {} {}/{}, not what its path says",
            object.kind, object.namespace, object.name
        ));
    }
    if object.deleted != object.object.is_none() || object.generation == 0 {
        return Err("it is neither an object nor a tombstone".into());
    }
    Ok(Some((key, object)))
}

/// The names of the directories in `dir` (an absent `dir` has none).
fn subdirectories(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}
