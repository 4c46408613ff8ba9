//! The cluster's desired state, kept on the agents: every cluster object
//! (Deployments, ReplicaSets, Node flags such as cordon, pending Pods,
//! controller Events) is copied to every agent's object store with a
//! generation, and a reader takes the highest generation it finds.
//!
//! # Majorities
//!
//! A write succeeds once a majority of all the cluster's members (not of
//! those connected) stored it, and a read needs answers from a majority.
//! Any two majorities share an agent, so a read always sees the latest
//! successful write. With fewer than a majority the store refuses with
//! [`StoreError::NoQuorum`], naming the nodes that did not answer.
//!
//! Reads ask every connected agent and wait for all of them (each call
//! bounded by a timeout), not just for the first majority: the more
//! versions a reader sees, the better the tie-break below decides.
//!
//! # Merging
//!
//! An agent holds one version of each object: a body or a tombstone, with
//! its generation. The versions agents answer with are merged by [`merge`]:
//!
//! 1. The highest generation wins; tombstones count like any version, so an
//!    agent that missed a delete cannot bring the object back.
//! 2. Two writers can, rarely, store different contents under the same
//!    generation (each got there first on some agents; an agent keeps the
//!    first and refuses the other). The tie-break, deterministic so every
//!    reader picks the same: the content held by more of the answering
//!    agents wins (a successful write is on a majority, so when every agent
//!    answers it always wins); between equal counts, the greater canonical
//!    JSON (keys sorted, no spaces) of the body wins, and any body sorts above
//!    a tombstone. Such a tie is settled for good by the next write, at a
//!    higher generation: [`ReplicatedStore::update`], [`ReplicatedStore::put`]
//!    and [`ReplicatedStore::delete`] always write above everything they
//!    read, and [`ReplicatedStore::catch_up`] rewrites the winner one
//!    generation up when it finds such siblings.
//!
//! # Write ids
//!
//! The agent takes a put of the same generation *and the same content* as an
//! idempotent repeat. Two writers that turn the same body into the same new
//! body (two `scale --replicas 3`, or two increments of a counter from the
//! same value) would then both "win" the same generation, and one increment
//! would be lost without either writer knowing. So every body this store
//! writes carries a member [`WRITE_ID`] unique to that write (the process's
//! holder id and a counter): two writes never have the same content, an
//! agent keeps exactly one of them, and a writer can recognise its own
//! version when it reads. The member is taken out again before any record is
//! returned; callers never see it, and a body must not use it.
//!
//! # Compare-and-set
//!
//! [`ReplicatedStore::update`] reads the merged current version, has the
//! caller's closure compute the new body, and writes it as the next
//! generation. If another writer stored that generation first on enough
//! agents that this write cannot reach a majority (conflicts), it reads
//! again and retries, a bounded number of times. A failed attempt's own
//! version may linger on a minority of agents; a retry does not build on it
//! (its change would be applied twice) unless it turns out to be on a
//! majority after all, in which case the update has succeeded.
//!
//! # Limits
//!
//! Agents keep only the latest version of an object, and nothing here is a
//! consensus protocol: a write that reached only a minority (the rest were
//! down) is refused with [`StoreError::NoQuorum`], yet stays on that
//! minority and may still win later, when catch-up copies it or a reader
//! with few answers picks it. With every agent answering, the merge picks
//! the version that reached a majority whenever one did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use serde_json::{Map, Value};

use super::agents::Agents;
use super::lease::holder_id;
use crate::agent::objects::ObjectKey;
use crate::agent::protocol::messages::{
    GetObject, ListObjects, ObjectConflict, ObjectRecord, PutObject,
};
use crate::agent::protocol::{Client, ClientError, ErrorCode};

/// The body member that makes every write's content unique (see the module
/// comment). Reserved: the store sets it and strips it.
pub const WRITE_ID: &str = "_write";

/// The kinds [`ReplicatedStore::catch_up`] copies, besides every kind the
/// store has read or written since it was made. The agent lists one kind at
/// a time, so catch-up has to name them.
pub const CLUSTER_KINDS: &[&str] = &["Deployment", "ReplicaSet", "Pod", "Node", "Event"];

/// How long one agent call may take before that agent counts as silent.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts of one put, update or delete before [`StoreError::Contended`].
const MAX_ATTEMPTS: u32 = 16;

/// What the store fails with.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// Fewer than a majority of the members answered (a read) or stored
    /// (a write).
    #[error("{}", no_quorum_text(.action, *.needed, *.answered, *.members, .silent, .reasons, .stored_on))]
    NoQuorum {
        /// What was tried, e.g. `store Deployment default/web`.
        action: String,
        /// A majority of the members.
        needed: usize,
        /// How many answered (a read) or stored the write (a write).
        answered: usize,
        /// How many members the cluster has.
        members: usize,
        /// The members that did not answer or store, in cluster order.
        silent: Vec<String>,
        /// Why, one per silent member: `node2: not connected`.
        reasons: Vec<String>,
        /// For a write: the members that did store it. It stays there and
        /// may still take effect later (see the module comment).
        stored_on: Vec<String>,
    },
    /// An update lost to concurrent writers too many times.
    #[error(
        "{kind} {name} kept changing under other writers ({MAX_ATTEMPTS} attempts lost); try again"
    )]
    Contended { kind: String, name: String },
    /// The update closure refused (e.g. the object is missing); its message.
    #[error("{0}")]
    Refused(String),
    /// A kind, namespace, name or body the object store does not accept.
    #[error("{0}")]
    Invalid(String),
}

fn no_quorum_text(
    action: &str,
    needed: usize,
    answered: usize,
    members: usize,
    silent: &[String],
    reasons: &[String],
    stored_on: &[String],
) -> String {
    let verb = if action.starts_with("store") || action.starts_with("delete") {
        "stored it"
    } else {
        "answered"
    };
    let mut text = format!(
        "cannot {action}: {answered} of {members} agents {verb}, and {needed} (a majority) are needed"
    );
    if !reasons.is_empty() {
        text.push_str(&format!("; {}", reasons.join(", ")));
    }
    if !stored_on.is_empty() {
        text.push_str(&format!(
            ". It was stored on {}, where it stays and may still take effect",
            stored_on.join(", ")
        ));
    }
    if silent.is_empty() {
        text.push_str(". Retry.");
    } else {
        text.push_str(&format!(
            ". See how {} are doing with `flotilla get nodes`, bring them back (or fix their agents), then retry.",
            silent.join(", ")
        ));
    }
    text
}

// ---------------------------------------------------------------------------
// Merging (pure)

/// The merged view of one object over the versions agents hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The winning version, as stored (its body still carries [`WRITE_ID`]).
    pub record: ObjectRecord,
    /// How many of the merged versions are this one (same generation and
    /// content).
    pub holders: usize,
    /// Other contents were found at the same generation: a tie the next
    /// write (at a higher generation) settles.
    pub contested: bool,
}

/// Merges the versions of one object that agents answered with (one per
/// agent; absent where an agent has none): highest generation, then the
/// tie-break of the module comment. `None` for no versions.
pub fn merge<'a>(versions: impl IntoIterator<Item = &'a ObjectRecord>) -> Option<Merged> {
    let versions: Vec<&ObjectRecord> = versions.into_iter().collect();
    let top = versions.iter().map(|v| v.generation).max()?;
    // Content → its holders, at the top generation.
    let mut groups: BTreeMap<String, Vec<&ObjectRecord>> = BTreeMap::new();
    for version in versions.iter().filter(|v| v.generation == top) {
        groups
            .entry(content_key(version))
            .or_default()
            .push(version);
    }
    let contested = groups.len() > 1;
    let (_, holders) = groups
        .into_iter()
        .max_by(|(a_key, a), (b_key, b)| a.len().cmp(&b.len()).then_with(|| a_key.cmp(b_key)))?;
    // The same content everywhere; the latest store time for people.
    let record = holders
        .iter()
        .max_by_key(|v| v.updated_at)
        .map(|v| (*v).clone())?;
    Some(Merged {
        record,
        holders: holders.len(),
        contested,
    })
}

/// What the tie-break compares: "" for a tombstone, else the canonical JSON
/// of the body (which sorts above "", every body starting with `{`).
fn content_key(record: &ObjectRecord) -> String {
    match (&record.object, record.deleted) {
        (Some(body), false) => canonical_json(body),
        _ => String::new(),
    }
}

/// JSON with every object's keys sorted and no whitespace, whatever order
/// the maps keep.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    out.insert(key.clone(), sorted(&map[key]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The write id in a stored version's body, if it has one.
pub fn write_id(record: &ObjectRecord) -> Option<&str> {
    record.object.as_ref()?.get(WRITE_ID)?.as_str()
}

/// The record as callers see it: without [`WRITE_ID`].
fn public(mut record: ObjectRecord) -> ObjectRecord {
    if let Some(Value::Object(body)) = &mut record.object {
        body.remove(WRITE_ID);
    }
    record
}

// ---------------------------------------------------------------------------
// Talking to the agents

/// Why a member gave no usable answer.
#[derive(Debug)]
enum Silence {
    NotConnected,
    TimedOut(Duration),
    Failed(ClientError),
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Silence::NotConnected => f.write_str("not connected"),
            Silence::TimedOut(after) => write!(f, "no answer in {} ms", after.as_millis()),
            Silence::Failed(ClientError::Remote(body)) => write!(f, "{}", body.message),
            Silence::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Every member's answer to one call, in cluster order.
struct Answers<T> {
    answers: Vec<(String, Result<T, Silence>)>,
}

impl<T> Answers<T> {
    fn answered(&self) -> impl Iterator<Item = (&str, &T)> {
        self.answers
            .iter()
            .filter_map(|(node, r)| r.as_ref().ok().map(|t| (node.as_str(), t)))
    }

    fn count(&self) -> usize {
        self.answered().count()
    }

    fn silent(&self) -> impl Iterator<Item = (&str, &Silence)> {
        self.answers
            .iter()
            .filter_map(|(node, r)| r.as_ref().err().map(|s| (node.as_str(), s)))
    }

    /// The agent's own verdict that the request is malformed, if one said so.
    fn bad_request(&self) -> Option<String> {
        self.silent().find_map(|(_, s)| match s {
            Silence::Failed(ClientError::Remote(body)) if body.code == ErrorCode::BadRequest => {
                Some(body.message.clone())
            }
            _ => None,
        })
    }
}

/// What one write did on each member.
enum Wrote {
    Stored,
    Conflict(ObjectConflict),
}

/// The cluster objects over the agents: see the module comment.
pub struct ReplicatedStore {
    agents: Arc<dyn Agents>,
    call_timeout: Duration,
    /// Kinds read or written here, for catch-up.
    kinds: Mutex<BTreeSet<String>>,
    /// This store's writer id; each write adds a counter.
    writer: String,
    writes: AtomicU64,
}

impl ReplicatedStore {
    pub fn new(agents: Arc<dyn Agents>) -> Self {
        ReplicatedStore {
            agents,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            kinds: Mutex::new(CLUSTER_KINDS.iter().map(|k| k.to_string()).collect()),
            writer: holder_id(),
            writes: AtomicU64::new(0),
        }
    }

    /// How long one agent may take to answer one call (default 5 s).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// More kinds for [`ReplicatedStore::catch_up`] to copy.
    pub fn with_kinds<'a>(self, kinds: impl IntoIterator<Item = &'a str>) -> Self {
        self.kinds_lock()
            .extend(kinds.into_iter().map(str::to_string));
        self
    }

    /// The members and their agents.
    pub fn agents(&self) -> &Arc<dyn Agents> {
        &self.agents
    }

    /// Live objects of `kind` (tombstones dropped) in `namespace` (all when
    /// `None`; `Some("")` for cluster-scoped ones), merged over every
    /// connected agent by highest generation; needs answers from a majority
    /// of members. Sorted by namespace, then name.
    pub async fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        crate::agent::objects::store::check_kind(kind).map_err(invalid)?;
        if let Some(ns) = namespace {
            crate::agent::objects::store::check_namespace(ns).map_err(invalid)?;
        }
        self.note_kind(kind);
        let params = ListObjects {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            include_deleted: true,
        };
        let action = match namespace {
            Some("") => format!("list the cluster-scoped {kind} objects"),
            Some(ns) => format!("list {kind} objects in {ns}"),
            None => format!("list {kind} objects"),
        };
        let answers = self
            .ask(move |client| {
                let params = params.clone();
                async move { client.list_objects(&params).await.map(|l| l.objects) }
            })
            .await;
        self.require_quorum(&answers, &action)?;
        let mut by_key: BTreeMap<(String, String), Vec<&ObjectRecord>> = BTreeMap::new();
        for (_, objects) in answers.answered() {
            for object in objects {
                by_key
                    .entry((object.namespace.clone(), object.name.clone()))
                    .or_default()
                    .push(object);
            }
        }
        Ok(by_key
            .into_values()
            .filter_map(merge)
            .filter(|m| !m.record.deleted)
            .map(|m| public(m.record))
            .collect())
    }

    /// The live object (`None` when absent or deleted), merged as `list` does.
    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let key = self.key(kind, namespace, name)?;
        let read = self.read(&key).await?;
        Ok(merge(read.iter().flatten())
            .filter(|m| !m.record.deleted)
            .map(|m| public(m.record)))
    }

    /// Writes `object` as the next generation (the highest seen on a
    /// majority read, plus one) to every connected agent; `Ok(generation)`
    /// once a majority of members stored it. When another writer got that
    /// generation first, retries above it (bounded).
    pub async fn put(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<u64, StoreError> {
        let key = self.key(kind, namespace, name)?;
        check_body(&key, &object)?;
        let mut generation = max_generation(&self.read(&key).await?) + 1;
        for attempt in 0..MAX_ATTEMPTS {
            let body = self.stamp(object.clone());
            let wrote = self.write(&key, generation, Some(body)).await;
            match self.settle("store", &key, generation, &wrote)? {
                Some(generation) => return Ok(generation),
                None => {
                    generation = generation.max(max_conflict(&wrote)) + 1;
                    backoff(attempt).await;
                }
            }
        }
        Err(contended(&key))
    }

    /// Read-modify-write, compare-and-set by generation: reads the merged
    /// current version, calls `change(current body)` (`None` when absent or
    /// deleted), which returns the new body or a refusal
    /// ([`StoreError::Refused`]), and writes it as the next generation. If
    /// another writer got that generation first, reads again and retries,
    /// up to a bound ([`StoreError::Contended`]). Two writers never silently
    /// lose each other's change. `change` may be called several times; only
    /// its last result is stored. When it returns the current body as it
    /// is (and that version is settled on a majority), nothing is written
    /// and the current generation is returned.
    pub async fn update(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        mut change: impl FnMut(Option<&Value>) -> Result<Value, String> + Send,
    ) -> Result<u64, StoreError> {
        let key = self.key(kind, namespace, name)?;
        // Write ids of this call's attempts that did not reach a majority.
        let mut mine: Vec<String> = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let read = self.read(&key).await?;
            let seen: Vec<&ObjectRecord> = read.iter().flatten().collect();
            if let Some(generation) =
                self.mine_committed(&seen, &mine, |r| write_id(r).map(str::to_string))
            {
                return Ok(generation);
            }
            let base = merge(
                seen.iter()
                    .copied()
                    .filter(|r| write_id(r).is_none_or(|id| !mine.iter().any(|m| m == id))),
            );
            let top = max_generation(&read);
            // The base is on a majority, alone at its generation, and
            // nothing lingers above it.
            let settled = base.as_ref().is_some_and(|m| {
                !m.contested && m.holders >= self.agents.quorum() && m.record.generation == top
            });
            let current = base
                .filter(|m| !m.record.deleted)
                .map(|m| public(m.record))
                .and_then(|r| r.object);
            let object = change(current.as_ref()).map_err(StoreError::Refused)?;
            check_body(&key, &object)?;
            if settled && current.as_ref() == Some(&object) {
                return Ok(top);
            }
            let generation = top + 1;
            let id = self.next_write_id();
            let body = stamp_with(object, &id);
            let wrote = self.write(&key, generation, Some(body)).await;
            match self.settle("store", &key, generation, &wrote)? {
                Some(generation) => return Ok(generation),
                None => {
                    mine.push(id);
                    backoff(attempt).await;
                }
            }
        }
        Err(contended(&key))
    }

    /// Writes a tombstone as the next generation; `Ok(false)` when there was
    /// nothing live to delete.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let key = self.key(kind, namespace, name)?;
        // Generations this call tried a tombstone at (tombstones carry no id).
        let mut mine: Vec<u64> = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let read = self.read(&key).await?;
            let seen: Vec<&ObjectRecord> = read.iter().flatten().collect();
            let tried = |r: &ObjectRecord| {
                (r.deleted && mine.contains(&r.generation)).then_some(r.generation)
            };
            if self.mine_committed(&seen, &mine, tried).is_some() {
                return Ok(true);
            }
            match merge(seen.iter().copied()) {
                Some(m) if !m.record.deleted || m.contested => {}
                _ => return Ok(false),
            }
            let generation = max_generation(&read) + 1;
            let wrote = self.write(&key, generation, None).await;
            match self.settle("delete", &key, generation, &wrote)? {
                Some(_) => return Ok(true),
                None => {
                    mine.push(generation);
                    backoff(attempt).await;
                }
            }
        }
        Err(contended(&key))
    }

    /// Catch-up: lists every object (tombstones included) of every known
    /// kind ([`CLUSTER_KINDS`], [`ReplicatedStore::with_kinds`] and those
    /// used through this store) on every connected agent, and puts the
    /// merged version onto each agent that lags (one that was down while
    /// the cluster changed). Siblings (different contents at the top
    /// generation) are settled by writing the winner one generation up.
    /// Returns how many puts stored something. When nothing lags it costs
    /// one list per kind per agent.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let kinds: Vec<String> = self.kinds_lock().iter().cloned().collect();
        let lists = kinds.iter().map(|kind| {
            let params = ListObjects {
                kind: kind.clone(),
                namespace: None,
                include_deleted: true,
            };
            self.ask(move |client| {
                let params = params.clone();
                async move { client.list_objects(&params).await.map(|l| l.objects) }
            })
        });
        let lists = join_all(lists).await;
        let mut copies = Vec::new();
        let mut settles = Vec::new();
        for (kind, answers) in kinds.iter().zip(&lists) {
            self.require_quorum(answers, &format!("catch up {kind} objects"))?;
            // Key → (node → its version).
            let mut by_key: BTreeMap<(&str, &str), BTreeMap<&str, &ObjectRecord>> = BTreeMap::new();
            for (node, objects) in answers.answered() {
                for object in objects {
                    by_key
                        .entry((object.namespace.as_str(), object.name.as_str()))
                        .or_default()
                        .insert(node, object);
                }
            }
            for held in by_key.values() {
                let Some(winner) = merge(held.values().copied()) else {
                    continue;
                };
                if winner.contested {
                    settles.push(self.settle_siblings(winner.record));
                    continue;
                }
                for (node, _) in answers.answered() {
                    let lags = held
                        .get(node)
                        .is_none_or(|v| v.generation < winner.record.generation);
                    if lags {
                        copies.push(self.copy_to(node.to_string(), winner.record.clone()));
                    }
                }
            }
        }
        let (copied, settled) = tokio::join!(join_all(copies), join_all(settles));
        Ok(copied.into_iter().sum::<usize>() + settled.into_iter().sum::<usize>())
    }

    // -----------------------------------------------------------------------

    fn key(&self, kind: &str, namespace: &str, name: &str) -> Result<ObjectKey, StoreError> {
        let key = ObjectKey::new(kind, namespace, name).map_err(invalid)?;
        self.note_kind(kind);
        Ok(key)
    }

    fn note_kind(&self, kind: &str) {
        let mut kinds = self.kinds_lock();
        if !kinds.contains(kind) {
            kinds.insert(kind.to_string());
        }
    }

    fn kinds_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_write_id(&self) -> String {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.writer)
    }

    fn stamp(&self, object: Value) -> Value {
        stamp_with(object, &self.next_write_id())
    }

    /// Calls every member's agent at once, each call bounded by the timeout.
    async fn ask<T, F, Fut>(&self, call: F) -> Answers<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let timeout = self.call_timeout;
        let calls = self.agents.members().into_iter().map(|node| {
            let call = self.agents.client(&node).map(&call);
            async move {
                let result = match call {
                    None => Err(Silence::NotConnected),
                    Some(call) => match tokio::time::timeout(timeout, call).await {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(e)) => Err(Silence::Failed(e)),
                        Err(_) => Err(Silence::TimedOut(timeout)),
                    },
                };
                (node, result)
            }
        });
        Answers {
            answers: join_all(calls).await,
        }
    }

    fn require_quorum<T>(&self, answers: &Answers<T>, action: &str) -> Result<(), StoreError> {
        let needed = self.agents.quorum();
        if answers.count() >= needed {
            return Ok(());
        }
        if let Some(message) = answers.bad_request() {
            return Err(StoreError::Invalid(message));
        }
        Err(no_quorum(action, needed, answers, Vec::new()))
    }

    /// Every member's version of `key` (`None`: it has none), for members
    /// that answered; a majority must have.
    async fn read(&self, key: &ObjectKey) -> Result<Vec<Option<ObjectRecord>>, StoreError> {
        let params = GetObject {
            kind: key.kind().to_string(),
            namespace: key.namespace().to_string(),
            name: key.name().to_string(),
            include_deleted: true,
        };
        let answers = self
            .ask(move |client| {
                let params = params.clone();
                async move {
                    match client.get_object(&params).await {
                        Ok(record) => Ok(Some(record)),
                        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await;
        self.require_quorum(&answers, &format!("read {key}"))?;
        Ok(answers
            .answers
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .collect())
    }

    /// Puts one version on every connected member.
    async fn write(&self, key: &ObjectKey, generation: u64, body: Option<Value>) -> Answers<Wrote> {
        let put = PutObject {
            kind: key.kind().to_string(),
            namespace: key.namespace().to_string(),
            name: key.name().to_string(),
            generation,
            deleted: body.is_none(),
            object: body,
        };
        self.ask(move |client| {
            let put = put.clone();
            async move { put_one(&client, &put).await }
        })
        .await
    }

    /// A write's verdict: `Some(generation)` when a majority stored it,
    /// `None` when other writers got in the way (retry), else an error.
    fn settle(
        &self,
        action: &str,
        key: &ObjectKey,
        generation: u64,
        wrote: &Answers<Wrote>,
    ) -> Result<Option<u64>, StoreError> {
        let needed = self.agents.quorum();
        let stored: Vec<String> = wrote
            .answered()
            .filter(|(_, w)| matches!(w, Wrote::Stored))
            .map(|(node, _)| node.to_string())
            .collect();
        if stored.len() >= needed {
            return Ok(Some(generation));
        }
        let conflicts = wrote
            .answered()
            .filter(|(_, w)| matches!(w, Wrote::Conflict(_)))
            .count();
        if conflicts > 0 {
            tracing::debug!(%key, generation, conflicts, "lost a write to another writer; retrying");
            return Ok(None);
        }
        if let Some(message) = wrote.bad_request() {
            return Err(StoreError::Invalid(message));
        }
        let action = format!("{action} {key}");
        let mut err = no_quorum(&action, needed, wrote, stored.clone());
        if let StoreError::NoQuorum { answered, .. } = &mut err {
            *answered = stored.len();
        }
        Err(err)
    }

    /// The generation of a version this call wrote earlier (recognised by
    /// `mine_of`) when it is the merged winner held by a majority: the
    /// earlier attempt succeeded after all.
    fn mine_committed<M>(
        &self,
        seen: &[&ObjectRecord],
        mine: &[M],
        mine_of: impl Fn(&ObjectRecord) -> Option<M>,
    ) -> Option<u64>
    where
        M: PartialEq,
    {
        let winner = merge(seen.iter().copied())?;
        let id = mine_of(&winner.record)?;
        (mine.contains(&id) && winner.holders >= self.agents.quorum())
            .then_some(winner.record.generation)
    }

    /// Puts `version` as it is on `node`; 1 if stored.
    async fn copy_to(&self, node: String, version: ObjectRecord) -> usize {
        let Some(client) = self.agents.client(&node) else {
            return 0;
        };
        let put = PutObject {
            kind: version.kind,
            namespace: version.namespace,
            name: version.name,
            generation: version.generation,
            deleted: version.deleted,
            object: version.object,
        };
        match tokio::time::timeout(self.call_timeout, put_one(&client, &put)).await {
            Ok(Ok(Wrote::Stored)) => {
                tracing::debug!(node, kind = %put.kind, namespace = %put.namespace, name = %put.name,
                    generation = put.generation, "caught up a lagging agent");
                1
            }
            // A writer got there first: nothing lags any more.
            Ok(Ok(Wrote::Conflict(_))) => 0,
            Ok(Err(e)) => {
                tracing::debug!(node, "catch-up put failed: {e}");
                0
            }
            Err(_) => 0,
        }
    }

    /// Writes the winner of a tie one generation up, on every member; how
    /// many stored it.
    async fn settle_siblings(&self, winner: ObjectRecord) -> usize {
        let Ok(key) = ObjectKey::new(&winner.kind, &winner.namespace, &winner.name) else {
            return 0;
        };
        let body = match (winner.deleted, winner.object) {
            (false, Some(body)) => Some(self.stamp(body)),
            _ => None,
        };
        let generation = winner.generation + 1;
        tracing::info!(%key, generation, "settling different versions stored at one generation");
        let wrote = self.write(&key, generation, body).await;
        wrote
            .answered()
            .filter(|(_, w)| matches!(w, Wrote::Stored))
            .count()
    }
}

async fn put_one(client: &Client, put: &PutObject) -> Result<Wrote, ClientError> {
    match client.put_object(put).await {
        Ok(_) => Ok(Wrote::Stored),
        Err(e) if e.code() == Some(ErrorCode::Conflict) => Ok(Wrote::Conflict(
            e.details::<ObjectConflict>().unwrap_or(ObjectConflict {
                generation: put.generation,
                deleted: false,
            }),
        )),
        Err(e) => Err(e),
    }
}

fn no_quorum<T>(
    action: &str,
    needed: usize,
    answers: &Answers<T>,
    stored_on: Vec<String>,
) -> StoreError {
    let (silent, reasons) = answers
        .silent()
        .map(|(node, why)| (node.to_string(), format!("{node}: {why}")))
        .unzip();
    StoreError::NoQuorum {
        action: action.to_string(),
        needed,
        answered: answers.count(),
        members: answers.answers.len(),
        silent,
        reasons,
        stored_on,
    }
}

fn invalid(e: crate::agent::objects::StoreError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

fn contended(key: &ObjectKey) -> StoreError {
    StoreError::Contended {
        kind: key.kind().to_string(),
        name: if key.namespace().is_empty() {
            key.name().to_string()
        } else {
            format!("{}/{}", key.namespace(), key.name())
        },
    }
}

fn check_body(key: &ObjectKey, object: &Value) -> Result<(), StoreError> {
    if object.is_object() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "the body of {key} must be a JSON object"
        )))
    }
}

fn stamp_with(mut object: Value, id: &str) -> Value {
    if let Value::Object(body) = &mut object {
        body.insert(WRITE_ID.to_string(), Value::String(id.to_string()));
    }
    object
}

fn max_generation(read: &[Option<ObjectRecord>]) -> u64 {
    read.iter()
        .flatten()
        .map(|r| r.generation)
        .max()
        .unwrap_or(0)
}

fn max_conflict(wrote: &Answers<Wrote>) -> u64 {
    wrote
        .answered()
        .filter_map(|(_, w)| match w {
            Wrote::Conflict(c) => Some(c.generation),
            Wrote::Stored => None,
        })
        .max()
        .unwrap_or(0)
}

/// A short random pause after a lost write, growing with the attempts, so
/// two writers that collided do not collide again in step.
async fn backoff(attempt: u32) {
    let most = 5 * u64::from(attempt + 1);
    let ms = rand::rng().random_range(1..=most);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn version(generation: u64, object: Option<Value>, at: i64) -> ObjectRecord {
        ObjectRecord {
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
            generation,
            deleted: object.is_none(),
            object,
            updated_at: Utc.timestamp_opt(at, 0).unwrap(),
        }
    }

    #[test]
    fn nothing_merges_to_nothing() {
        assert_eq!(merge(&[]), None);
    }

    #[test]
    fn the_highest_generation_wins_tombstones_included() {
        let a = version(3, Some(json!({"n": 3})), 1);
        let b = version(5, Some(json!({"n": 5})), 2);
        let c = version(4, Some(json!({"n": 4})), 3);
        let m = merge([&a, &b, &c]).unwrap();
        assert_eq!((m.record.generation, m.holders, m.contested), (5, 1, false));

        // A tombstone outranks a lower live version on another agent.
        let gone = version(6, None, 4);
        let m = merge([&a, &gone, &b]).unwrap();
        assert!(m.record.deleted);
        assert_eq!(m.record.generation, 6);
    }

    #[test]
    fn a_tie_goes_to_the_content_more_agents_hold() {
        let x = json!({"n": 1, WRITE_ID: "w1"});
        let y = json!({"n": 2, WRITE_ID: "w2"});
        let a = version(7, Some(x.clone()), 1);
        let b = version(7, Some(x.clone()), 5);
        let c = version(7, Some(y.clone()), 9);
        for order in [[&a, &b, &c], [&c, &b, &a], [&b, &c, &a]] {
            let m = merge(order).unwrap();
            assert_eq!(m.record.object, Some(x.clone()));
            assert_eq!((m.holders, m.contested), (2, true));
            // The latest store time among its holders.
            assert_eq!(m.record.updated_at, b.updated_at);
        }
    }

    #[test]
    fn an_even_tie_goes_to_the_greater_canonical_json_whatever_the_order() {
        let small = version(2, Some(json!({"a": 1, "b": {"y": 1, "x": 2}})), 1);
        let great = version(2, Some(json!({"b": 0, "a": 2})), 1);
        for order in [[&small, &great], [&great, &small]] {
            let m = merge(order).unwrap();
            assert_eq!(m.record.object, great.object);
            assert!(m.contested);
        }
        // Any body sorts above a tombstone.
        let gone = version(2, None, 1);
        for order in [[&gone, &small], [&small, &gone]] {
            assert_eq!(merge(order).unwrap().record.object, small.object);
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": [{"d": 1, "c": 2}], "a": null});
        assert_eq!(canonical_json(&v), r#"{"a":null,"b":[{"c":2,"d":1}]}"#);
    }

    #[test]
    fn the_write_id_is_read_and_stripped() {
        let v = version(1, Some(json!({"spec": {}, WRITE_ID: "me#1"})), 0);
        assert_eq!(write_id(&v), Some("me#1"));
        let p = public(v);
        assert_eq!(p.object, Some(json!({"spec": {}})));
        assert_eq!(write_id(&p), None);
        assert_eq!(stamp_with(json!({}), "x"), json!({WRITE_ID: "x"}));
    }

    #[test]
    fn no_quorum_names_the_silent_nodes_and_what_to_do() {
        let text = no_quorum_text(
            "read Deployment default/web",
            2,
            1,
            3,
            &["node2".into(), "node3".into()],
            &[
                "node2: not connected".into(),
                "node3: no answer in 5000 ms".into(),
            ],
            &[],
        );
        assert!(text.contains("1 of 3"), "{text}");
        assert!(text.contains("node2: not connected"), "{text}");
        assert!(text.contains("flotilla get nodes"), "{text}");
    }
}
