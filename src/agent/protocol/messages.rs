//! The protocol's messages: the envelope (requests, replies, stream items,
//! events) and, for every method, its name, its params and what it returns.
//! One table (the `methods!` invocation below) declares each method once; from it come the marker
//! types the client calls with ([`method`]), the decoded [`Call`] the server
//! dispatches, and the list of method names hello advertises.
//!
//! Strictness follows direction. What a client sends is read strictly (unknown
//! fields are refused): a misspelt `graceSeconds` must not quietly become the
//! default. What the agent sends is read leniently (unknown fields ignored), so
//! a newer agent that adds a field keeps older consoles working.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::exec::{
    Delivered, ExecInputParams, ExecOutput, ExecResizeParams, ExecSignalParams, ExecStartParams,
};
use crate::agent::node::MetricsSeries;
use crate::api::Pod;
use crate::api::status::{PodPhase, PodStatus};

/// The protocol version this build speaks best.
pub const PROTOCOL_VERSION: &str = "flotilla/1";
/// Every version this build speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[PROTOCOL_VERSION];

/// The feature flag an agent lists in hello's `capabilities` when its
/// `pods.logs` takes `batch: true` (items are [`LogBatch`]es). An additive
/// change within `flotilla/1`: an older agent reads params strictly and
/// would refuse the field, so a client sends it only to an agent that lists
/// this flag.
pub const LOG_BATCH_CAPABILITY: &str = "pods.logs.batch";

/// The feature flags hello lists after the method names.
pub const FEATURES: &[&str] = &[LOG_BATCH_CAPABILITY];

/// A request id, chosen by the client, unique among its requests in flight.
pub type RequestId = u64;

// ---------------------------------------------------------------------------
// Errors

/// The `code` of an error reply. A client reads codes it does not know as
/// [`ErrorCode::Other`], so a new code is an additive change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not UTF-8, not an envelope, missing or ill-typed params, a
    /// request before hello, an id already in flight.
    BadRequest,
    UnknownMethod,
    /// A line longer than the cap; it was skipped up to its newline.
    TooLarge,
    NotFound,
    /// The object exists, or is in a state that forbids the request.
    Conflict,
    /// The agent failed; the message says what it was doing.
    Internal,
    /// Hello named no version the agent speaks.
    UnsupportedVersion,
    /// The connection has as many requests in flight as the agent allows.
    Busy,
    #[serde(other)]
    Other,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Busy => "busy",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` member of an error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// What a client needs to act on the refusal, per method: the stored
    /// generation of an `objects.put` conflict ([`ObjectConflict`]), the
    /// holder of a refused `lease.acquire` ([`LeaseRefused`]). Absent from
    /// most errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The details read as `T`, when there are details of that shape.
    pub fn details<T: DeserializeOwned>(&self) -> Option<T> {
        self.details
            .as_ref()
            .and_then(|d| serde_json::from_value(d.clone()).ok())
    }
}

/// A request the agent could not accept, with the id when it could read one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub id: Option<RequestId>,
    pub error: ErrorBody,
}

impl Refusal {
    fn new(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            error: ErrorBody::new(code, message),
        }
    }

    pub fn reply(&self) -> Reply {
        Reply::Error {
            id: self.id,
            error: self.error.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// The envelope

/// A request line, its params not yet read: `{"id", "method", "params"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    /// Always an object (absent or `null` params read as `{}`).
    pub params: Map<String, Value>,
}

impl Request {
    /// Reads one line (without its newline). Refuses, with the id when there is
    /// one: bytes that are not UTF-8, text that is not JSON, JSON that is not an
    /// object, an id that is not an unsigned 64-bit integer, a method that is not
    /// a string, params that are not an object, and members beyond these three.
    pub fn decode(line: &[u8]) -> Result<Request, Refusal> {
        let text = std::str::from_utf8(line).map_err(|e| {
            Refusal::new(
                None,
                ErrorCode::BadRequest,
                format!("the message is not UTF-8 (byte {})", e.valid_up_to()),
            )
        })?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Refusal::new(None, ErrorCode::BadRequest, format!("invalid JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(Refusal::new(
                None,
                ErrorCode::BadRequest,
                "a request is a JSON object {\"id\", \"method\", \"params\"}",
            ));
        };
        let bad_id = || {
            Refusal::new(
                None,
                ErrorCode::BadRequest,
                "\"id\" must be an integer from 0 to 2^64-1",
            )
        };
        let id = match object.remove("id") {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(bad_id)?,
            Some(_) => return Err(bad_id()),
            None => {
                return Err(Refusal::new(
                    None,
                    ErrorCode::BadRequest,
                    "the request has no \"id\"",
                ));
            }
        };
        let refuse = |message: String| Refusal::new(Some(id), ErrorCode::BadRequest, message);
        let method = match object.remove("method") {
            Some(Value::String(m)) => m,
            Some(_) => return Err(refuse("\"method\" must be a string".into())),
            None => return Err(refuse("the request has no \"method\"".into())),
        };
        let params = match object.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(refuse("\"params\" must be an object".into())),
        };
        if let Some(extra) = object.keys().next() {
            return Err(refuse(format!(
                "unknown member {extra:?} in the request (only id, method, params)"
            )));
        }
        Ok(Request { id, method, params })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut object = Map::new();
        object.insert("id".into(), self.id.into());
        object.insert("method".into(), self.method.clone().into());
        object.insert("params".into(), Value::Object(self.params.clone()));
        line(&Value::Object(object))
    }
}

/// One line from the agent.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `{"id", "result"}`: a call's answer.
    Result { id: RequestId, result: Value },
    /// `{"id", "error"}`: a call failed, or a stream ended in failure. `id` is
    /// `null` when the request could not be read far enough to find it.
    Error {
        id: Option<RequestId>,
        error: ErrorBody,
    },
    /// `{"id", "stream"}`: one item of a streamed reply.
    Stream { id: RequestId, item: Value },
    /// `{"id", "end": true}`: a streamed reply is complete.
    End { id: RequestId },
    /// `{"event"}`: a notice about the connection, not tied to a request.
    Event { event: Value },
}

impl Reply {
    pub fn result<T: Serialize>(id: RequestId, result: &T) -> Reply {
        match serde_json::to_value(result) {
            Ok(result) => Reply::Result { id, result },
            Err(e) => Reply::internal(Some(id), e),
        }
    }

    pub fn stream<T: Serialize>(id: RequestId, item: &T) -> Reply {
        match serde_json::to_value(item) {
            Ok(item) => Reply::Stream { id, item },
            Err(e) => Reply::internal(Some(id), e),
        }
    }

    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            id,
            error: ErrorBody::new(code, message),
        }
    }

    fn internal(id: Option<RequestId>, e: serde_json::Error) -> Reply {
        tracing::error!(error = %e, "a reply could not be serialized");
        Reply::error(
            id,
            ErrorCode::Internal,
            format!("cannot encode the reply: {e}"),
        )
    }

    /// The request this line answers, if any.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Reply::Result { id, .. } | Reply::Stream { id, .. } | Reply::End { id } => Some(*id),
            Reply::Error { id, .. } => *id,
            Reply::Event { .. } => None,
        }
    }

    /// Whether this line is the last one for its request.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Reply::Result { .. } | Reply::Error { .. } | Reply::End { .. }
        )
    }

    /// The line of a stream item whose JSON is already encoded, the same
    /// line as `Reply::Stream { id, item }.encode()` up to the order of the
    /// item's members. A stream's items skip the `Value` built for other
    /// replies: a log stream writes hundreds of thousands of records a
    /// second, and building, cloning and walking a tree per item was most
    /// of its cost.
    pub fn encode_stream_item(id: RequestId, item: &[u8]) -> Vec<u8> {
        let mut line = Vec::with_capacity(item.len() + 32);
        line.extend_from_slice(b"{\"id\":");
        line.extend_from_slice(id.to_string().as_bytes());
        line.extend_from_slice(b",\"stream\":");
        line.extend_from_slice(item);
        line.extend_from_slice(b"}\n");
        line
    }

    /// The line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut object = Map::new();
        match self {
            Reply::Result { id, result } => {
                object.insert("id".into(), (*id).into());
                object.insert("result".into(), result.clone());
            }
            Reply::Error { id, error } => {
                object.insert("id".into(), id.map_or(Value::Null, Value::from));
                let error = serde_json::to_value(error).unwrap_or(Value::Null);
                object.insert("error".into(), error);
            }
            Reply::Stream { id, item } => {
                object.insert("id".into(), (*id).into());
                object.insert("stream".into(), item.clone());
            }
            Reply::End { id } => {
                object.insert("id".into(), (*id).into());
                object.insert("end".into(), true.into());
            }
            Reply::Event { event } => {
                object.insert("event".into(), event.clone());
            }
        }
        line(&Value::Object(object))
    }

    /// Reads one line from the agent (the client's side). Members it does not
    /// know are ignored, as the versioning rules ask of a reader.
    pub fn decode(line: &[u8]) -> Result<Reply, String> {
        let mut object = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("a reply is a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        if let Some(event) = object.remove("event") {
            return Ok(Reply::Event { event });
        }
        let id = match object.remove("id") {
            Some(Value::Null) | None => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or("the reply's id is not a u64")?),
            Some(_) => return Err("the reply's id is not a number".into()),
        };
        if let Some(error) = object.remove("error") {
            let error = serde_json::from_value(error).map_err(|e| format!("bad error: {e}"))?;
            return Ok(Reply::Error { id, error });
        }
        let id = id.ok_or("a reply other than an error has no id")?;
        if let Some(result) = object.remove("result") {
            return Ok(Reply::Result { id, result });
        }
        if let Some(item) = object.remove("stream") {
            return Ok(Reply::Stream { id, item });
        }
        match object.remove("end") {
            Some(Value::Bool(true)) => Ok(Reply::End { id }),
            _ => Err("a reply has one of result, error, stream, end or event".into()),
        }
    }
}

fn line(value: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail: its maps have string keys.
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

// ---------------------------------------------------------------------------
// Methods

/// A method of the protocol: its wire name and its params.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned + Send + 'static;
}

/// A method answered by one `result`.
pub trait Unary: Method {
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// A method answered by `stream` items ending in `end` (or an error).
pub trait Streaming: Method {
    type Item: Serialize + DeserializeOwned + Send + 'static;
}

macro_rules! methods {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $params:ty, $kind:ident $out:ty;
    )*) => {
        /// Marker types naming each method, for [`super::client::Client::call`]
        /// and [`super::client::Client::stream`].
        pub mod method {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Clone, Copy, Debug)]
                pub struct $variant;
                impl Method for $variant {
                    const NAME: &'static str = $name;
                    type Params = $params;
                }
                methods!(@kind $kind $variant $out);
            )*
        }

        /// A request the agent has read in full: method and typed params.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Call {
            $( $(#[$doc])* $variant($params), )*
        }

        /// Every method name, in the table's order (hello's `capabilities`).
        pub const METHODS: &[&str] = &[$($name),*];

        impl Call {
            /// Reads a request's params for its method.
            pub fn decode(request: Request) -> Result<(RequestId, Call), Refusal> {
                let Request { id, method, params } = request;
                let call = match method.as_str() {
                    $( $name => Call::$variant(read_params(id, $name, params)?), )*
                    _ => {
                        let mut shown = method;
                        truncate(&mut shown, 100);
                        return Err(Refusal::new(
                            Some(id),
                            ErrorCode::UnknownMethod,
                            format!("unknown method {shown:?}"),
                        ));
                    }
                };
                Ok((id, call))
            }

            pub fn method(&self) -> &'static str {
                match self { $( Call::$variant(_) => $name, )* }
            }

            /// Whether the reply is a stream (items, then `end`).
            pub fn is_streaming(&self) -> bool {
                match self { $( Call::$variant(_) => methods!(@streams $kind), )* }
            }

            /// The request line for this call.
            pub fn to_request(&self, id: RequestId) -> Request {
                let params = match self {
                    $( Call::$variant(p) => serde_json::to_value(p), )*
                };
                let params = match params {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                Request { id, method: self.method().to_string(), params }
            }
        }
    };
    (@streams unary) => { false };
    (@streams stream) => { true };
    (@kind unary $variant:ident $out:ty) => {
        impl Unary for $variant { type Output = $out; }
    };
    (@kind stream $variant:ident $out:ty) => {
        impl Streaming for $variant { type Item = $out; }
    };
}

methods! {
    /// The first request on a connection: versions spoken, client name.
    Hello = "hello", HelloParams, unary HelloReply;
    /// What this host is.
    NodeFacts = "node.facts", Empty, unary crate::agent::node::NodeFacts;
    /// The metrics ring, or the part of it newer than `since`.
    NodeMetrics = "node.metrics", MetricsQuery, unary MetricsSeries;
    /// Create and start a pod on this node.
    PodsCreate = "pods.create", CreatePod, unary PodRecord;
    PodsList = "pods.list", ListPods, unary PodList;
    PodsStatus = "pods.status", PodRef, unary PodRecord;
    /// Stop the containers (SIGTERM, then SIGKILL after the grace period);
    /// the pod stays, terminal.
    PodsStop = "pods.stop", StopPod, unary PodRecord;
    /// SIGKILL every container now.
    PodsKill = "pods.kill", PodRef, unary PodRecord;
    /// Stop (gracefully) and remove the pod and its logs.
    PodsDelete = "pods.delete", DeletePod, unary Empty;
    /// Freeze the pod's processes (cgroup freezer).
    PodsPause = "pods.pause", PodRef, unary PodRecord;
    PodsResume = "pods.resume", PodRef, unary PodRecord;
    /// Log records of one container, streamed.
    PodsLogs = "pods.logs", LogsQuery, stream LogRecord;
    /// CPU, memory and pids of every container of the matching pods.
    PodsStats = "pods.stats", StatsQuery, unary PodStatsList;
    /// Pod state changes with reasons, streamed until cancelled.
    EventsSubscribe = "events.subscribe", EventFilter, stream Event;
    /// End a streamed reply by its request id.
    Cancel = "cancel", CancelParams, unary Cancelled;
    /// Store a version of a cluster object (or its tombstone) if its
    /// generation is higher than the stored one.
    ObjectsPut = "objects.put", PutObject, unary PutReply;
    /// One cluster object with its generation.
    ObjectsGet = "objects.get", GetObject, unary ObjectRecord;
    /// The cluster objects of a kind.
    ObjectsList = "objects.list", ListObjects, unary ObjectList;
    /// The current cluster objects, then every change, until cancelled.
    ObjectsWatch = "objects.watch", WatchObjects, stream ObjectRecord;
    /// Take or renew the controller lease.
    LeaseAcquire = "lease.acquire", AcquireLease, unary LeaseGrant;
    /// Give the controller lease up.
    LeaseRelease = "lease.release", ReleaseLease, unary LeaseReleased;
    /// Who holds the controller lease, for how long, in which term.
    LeaseStatus = "lease.status", Empty, unary LeaseState;
    /// Set this node's pod network (its pod subnet, routes to the other
    /// nodes' subnets); kept on disk, so it outlives the agent.
    NetworkConfigure = "network.configure", NetworkSettings, unary NetworkState;
    /// The node's pod network as set, and its addresses.
    NetworkStatus = "network.status", Empty, unary NetworkState;
    /// Run a process in a running container; its output, then its exit
    /// code, streamed ([`super::exec`]).
    ExecStart = "exec.start", ExecStartParams, stream ExecOutput;
    /// Bytes for a running exec's stdin, or its end.
    ExecInput = "exec.input", ExecInputParams, unary Delivered;
    /// A running exec's terminal has a new size.
    ExecResize = "exec.resize", ExecResizeParams, unary Delivered;
    /// A signal for a running exec's process.
    ExecSignal = "exec.signal", ExecSignalParams, unary Delivered;
}

fn read_params<P: DeserializeOwned>(
    id: RequestId,
    method: &str,
    params: Map<String, Value>,
) -> Result<P, Refusal> {
    serde_path_to_error::deserialize(Value::Object(params)).map_err(|e| {
        let path = e.path().to_string();
        let mut message = format!("bad params for {method}: {}", e.into_inner());
        if path != "." {
            message = format!("{message} (at params.{path})");
        }
        truncate(&mut message, 1000);
        Refusal::new(Some(id), ErrorCode::BadRequest, message)
    })
}

/// Cuts `s` to at most `max` bytes on a character boundary, so an error
/// message never echoes a megabyte back.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

// ---------------------------------------------------------------------------
// Params and results

/// Params or a result with nothing in it: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `hello` params. Unlike other params, unknown fields are allowed: hello is
/// read before a version is agreed, so it must stay readable by every agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloParams {
    /// Protocol versions the client speaks, e.g. `["flotilla/1"]`.
    pub versions: Vec<String>,
    /// Who is calling, for the agent's log: `flotilla 0.1.0 (console)`.
    #[serde(default)]
    pub client: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloReply {
    /// The version chosen for this connection.
    pub version: String,
    /// The agent's build: `flotilla-agent 0.1.0`.
    pub agent_version: String,
    /// The node this agent runs (its name in the cluster file).
    pub node: String,
    /// Method names and feature flags this agent serves; a client checks here
    /// before using anything added after its version.
    pub capabilities: Vec<String>,
    /// The agent's process id on its host, so a bootstrap can stop it for an
    /// upgrade. Absent from agents older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The absolute path of the agent's executable: the bootstrap compares it
    /// with the content-addressed path of the build it wants running. Absent
    /// from agents older than this field (they count as another build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_binary: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsQuery {
    /// Only samples with a greater `seq` (the last one the caller has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// Pods are named as in Kubernetes: namespace (default `default`) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodRef {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
}

impl PodRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn default_namespace() -> String {
    crate::api::meta::DEFAULT_NAMESPACE.to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePod {
    /// The pod as the manifest parser produced it (defaults applied).
    pub pod: Pod,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListPods {
    /// Every namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StopPod {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL; the pod's
    /// `terminationGracePeriodSeconds` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeletePod {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// A pod on this node: its spec and what the agent knows of it.
/// A node's pod network as the controller sets it: the node's own pod
/// subnet out of the cluster's, and a route to each other node's subnet
/// through that node (host-gw: the nodes share one L2 segment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSettings {
    /// This node's pods' subnet, e.g. `10.88.3.0/24`.
    pub pod_subnet: String,
    /// Every pod subnet together, e.g. `10.88.0.0/16`.
    pub cluster_cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<NetworkRoute>,
}

/// Another node's pod subnet and that node's address to reach it by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkRoute {
    pub destination: String,
    pub via: String,
    /// The node the subnet belongs to, for messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// What a node's pod network is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkState {
    /// As last set; `None` until the controller sets it (pods then get
    /// only loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<NetworkSettings>,
    /// The node's IPv4 addresses with their prefix lengths (`10.77.0.11/24`),
    /// from which the controller picks next hops.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// What stops pods getting addresses here (a CNI plugin missing), if
    /// anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// Set by the agent at creation; a pod recreated under the same name gets
    /// a new one, which is how fencing tells copies apart.
    pub uid: String,
    pub pod: Pod,
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodList {
    pub pods: Vec<PodRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogsQuery {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The pod.
    pub name: String,
    /// Required when the pod has more than one container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Only the last N lines (before following).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
    /// Only records at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Keep streaming new records until cancelled or the container ends for good.
    #[serde(default)]
    pub follow: bool,
    /// The previous run of the container (after a restart).
    #[serde(default)]
    pub previous: bool,
    /// Include each record's `time`.
    #[serde(default)]
    pub timestamps: bool,
    /// Stream [`LogBatch`]es (several records an item) instead of one
    /// record an item. Sent only to an agent that lists
    /// [`LOG_BATCH_CAPABILITY`], and left out when false, so an older agent,
    /// which refuses unknown params, is never sent it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

impl LogsQuery {
    pub fn new(pod: &PodRef) -> Self {
        Self {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            container: None,
            tail: None,
            since: None,
            follow: false,
            previous: false,
            timestamps: false,
            batch: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    pub stream: LogStream,
    /// The line continues in the next record (the CRI `P` tag): the runtime
    /// splits very long lines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The text without its newline; bytes that are not UTF-8 are replaced by
    /// U+FFFD, as kubectl shows them.
    pub text: String,
}

/// Consecutive records of one container's log, oldest first: the item of
/// `pods.logs` asked with `batch: true`. The agent puts in one batch what
/// its reader finds written at once (at most 1,024 records or about 64 KiB
/// of text, more only for one longer record), so a busy log costs one line
/// on the wire per batch instead of one per record; a quiet one still sends
/// each record as soon as it is read. Never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatch {
    pub records: Vec<LogRecord>,
}

/// `pods.logs` asked with `batch: true`: the same method as
/// [`method::PodsLogs`], whose items are [`LogBatch`]es. Not a line of the
/// method table, which names each method once.
#[derive(Clone, Copy, Debug)]
pub struct PodsLogBatches;

impl Method for PodsLogBatches {
    const NAME: &'static str = <method::PodsLogs as Method>::NAME;
    type Params = LogsQuery;
}

impl Streaming for PodsLogBatches {
    type Item = LogBatch;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatsQuery {
    /// Every namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Every pod (of the namespace) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatsList {
    pub pods: Vec<PodStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub time: DateTime<Utc>,
    pub containers: Vec<ContainerStats>,
}

/// One container's cgroup figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    /// Cumulative CPU time (cgroup `cpu.stat` usage_usec).
    pub cpu_usage_usec: u64,
    /// CPU over the agent's last sampling interval, in millicores as
    /// `kubectl top` shows it (1000 = one CPU busy); absent until two readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    /// Working set: `memory.current` less inactive file cache, as `kubectl top`.
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventFilter {
    /// Every namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Replay the events after this `seq` that the agent still holds, then
    /// follow (a console catching up after a reconnect). Only new events when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// `Normal` or `Warning`, as Kubernetes types events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// A state change on this node, with its reason in Kubernetes' words
/// (`Pulling`, `Started`, `Killing`, `BackOff`, `OOMKilled`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increases by one per event for the life of the agent.
    pub seq: u64,
    pub time: DateTime<Utc>,
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The pod concerned; empty for an event about the node itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The pod's phase after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodPhase>,
}

#[cfg(test)]
impl Event {
    /// For tests: event `seq`, `Started` for pod default/web (uid u1), at
    /// `time`; other fields by struct update.
    pub(crate) fn started(seq: u64, time: DateTime<Utc>) -> Event {
        Event {
            seq,
            time,
            type_: EventType::Normal,
            reason: "Started".into(),
            message: String::new(),
            namespace: "default".into(),
            pod: "web".into(),
            uid: "u1".into(),
            container: None,
            phase: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CancelParams {
    /// The id of the streamed request to end.
    pub id: RequestId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    /// False when no stream with that id was running (it had ended, or was
    /// never one): cancel is idempotent.
    pub found: bool,
}

// ---------------------------------------------------------------------------
// Cluster objects and the controller lease (crate::agent::objects)

/// `objects.put` params: one version of a cluster object, or its tombstone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutObject {
    /// `Deployment`, `Node`, …: an upper-case letter, then letters and digits.
    pub kind: String,
    /// `""` for a cluster-scoped object (a Node). Required, so a forgotten
    /// namespace is an error rather than another object.
    pub namespace: String,
    pub name: String,
    /// At least 1; stored if higher than the stored one, or equal to it
    /// with the same content (an idempotent repeat).
    pub generation: u64,
    /// The object, a JSON object the agent stores as it is. Absent for a
    /// tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// A tombstone: the object is deleted as of this generation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// `objects.put` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutReply {
    /// The generation now stored (the one put).
    pub generation: u64,
    /// False when the put repeated the stored version: nothing changed.
    pub changed: bool,
}

/// The `details` of an `objects.put` conflict: what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectConflict {
    /// Retry with a higher one.
    pub generation: u64,
    /// The stored version is a tombstone.
    #[serde(default)]
    pub deleted: bool,
}

/// `objects.get` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetObject {
    pub kind: String,
    /// `""` for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
    /// Answer with the tombstone of a deleted object instead of
    /// `not_found`. A reader merging agents' answers by generation needs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_deleted: bool,
}

/// `objects.list` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListObjects {
    pub kind: String,
    /// Every namespace when absent; `""` for the cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// List tombstones too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_deleted: bool,
}

/// `objects.watch` params.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WatchObjects {
    /// Every kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Every namespace when absent; `""` for the cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A stored version of a cluster object, or a tombstone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRecord {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// As put; absent for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// When this agent stored it, by its clock (not for ordering: compare
    /// generations).
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    /// By namespace, then name.
    pub objects: Vec<ObjectRecord>,
}

/// `lease.acquire` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcquireLease {
    /// Who asks: unique to the asking process, never reused.
    pub holder: String,
    /// How long the lease should last from when the agent grants it; the
    /// agent caps it (`maxTtlMs` of `lease.status`, 15 s by default).
    pub ttl_ms: u64,
}

/// `lease.acquire` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseGrant {
    pub holder: String,
    /// This agent's tenure counter: unchanged by a renewal, higher after
    /// any lapse, release or change of holder.
    pub term: u64,
    /// The lease lasts this long from the grant (as asked, or capped).
    pub ttl_ms: u64,
    /// The holder already held the lease: its tenure on this agent is unbroken.
    pub renewed: bool,
}

/// The `details` of a refused `lease.acquire`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRefused {
    /// The current holder; absent while the agent holds back after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    pub term: u64,
    /// How long until the agent could grant (the holder's remaining time,
    /// or the rest of the hold-back).
    pub remaining_ms: u64,
}

/// `lease.release` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseLease {
    pub holder: String,
}

/// `lease.release` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseReleased {
    /// False when the holder did not hold a live lease (it had lapsed, or
    /// was never its): release is idempotent.
    pub released: bool,
}

/// `lease.status` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseState {
    /// Absent when the lease is free or has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The holder's remaining time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
    /// The last term granted.
    pub term: u64,
    /// The longest TTL this agent grants.
    pub max_ttl_ms: u64,
    /// Present while the agent holds back after a restart: how much longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_back_ms: Option<u64>,
}

/// The `event` of an unsolicited line: something about the connection itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The agent is stopping (an upgrade or a restart); reconnect.
    ShuttingDown { message: String },
    /// A kind of notice this build does not know.
    #[serde(other)]
    Unknown,
}

/// Picks the newest version both sides speak.
pub fn choose_version(offered: &[String]) -> Option<&'static str> {
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .find(|ours| offered.iter().any(|theirs| theirs == ours))
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
