//! The agent's wire protocol, `flotilla/1`: how the console (over SSH) and
//! local tools talk to `flotilla-agent serve` on `/run/flotilla/agent.sock`.
//! This comment is the protocol's specification; the code in [`messages`]
//! (types), [`codec`] (framing), [`server`] (the agent's side) and [`client`]
//! (the console's side) follows it.
//!
//! # Transport and framing
//!
//! A byte stream: the unix socket `/run/flotilla/agent.sock` (directory mode
//! 0700, socket 0600, so only root on the host reaches it), which the console
//! reaches through an SSH `direct-streamlocal` channel. On it, JSON lines: one
//! UTF-8 JSON object per line, ended by `\n`. A `\r` before the `\n` is
//! tolerated and blank lines are skipped; the agent writes `\n` only and never
//! puts a raw newline inside a message (JSON escapes it).
//!
//! A request line is at most 1 MiB ([`codec::MAX_REQUEST_LINE`]; the largest
//! requests are `pods.create` and `objects.put`, a few KiB in practice, and
//! Kubernetes itself caps objects at 1.5 MiB). A longer line is refused with
//! `too_large` as soon as the cap is passed; the rest of it is skipped,
//! unbuffered, up to its newline, and the connection goes on. The console
//! reads reply lines of up to 16 MiB.
//!
//! # Envelope
//!
//! Client to agent, a request:
//!
//! ```json
//! {"id": 7, "method": "pods.status", "params": {"namespace": "default", "name": "web"}}
//! ```
//!
//! `id` is an integer in 0..2^64 chosen by the client, unique among its
//! requests in flight on the connection (it may be reused once the request's
//! last line has arrived). `params` is an object; absent or `null` reads as
//! `{}`. No other members are allowed.
//!
//! Agent to client, one of:
//!
//! * `{"id": 7, "result": {...}}` — the answer to a call;
//! * `{"id": 7, "error": {"code": "not_found", "message": "pod default/web not found"}}`
//!   — a call failed, or a stream ended in failure. `id` is `null` when the
//!   line could not be read far enough to find one (not JSON, no id, too large).
//!   Some refusals add `details`, an object whose shape the method defines
//!   (an `objects.put` conflict's stored generation, a refused lease's holder);
//! * `{"id": 8, "stream": {...}}` — one item of a streamed reply;
//! * `{"id": 8, "end": true}` — a streamed reply is complete;
//! * `{"event": {"kind": "shutting_down", "message": "..."}}` — a notice about
//!   the connection itself, tied to no request (today only `shutting_down`,
//!   sent before the agent closes for a restart or upgrade).
//!
//! Every request gets exactly one last line: `result` or `error` for a call,
//! `end` or `error` for a stream (after any number of `stream` items). Replies
//! to different requests interleave in any order; items of one stream keep
//! their order.
//!
//! # Hello and versions
//!
//! The first request must be `hello`; anything else before it is refused with
//! `bad_request` (the connection stays open), and a connection that has not
//! said hello within 10 s is closed.
//!
//! ```json
//! {"id": 1, "method": "hello", "params": {"versions": ["flotilla/1"], "client": "flotilla 0.1.0"}}
//! {"id": 1, "result": {"version": "flotilla/1", "agentVersion": "flotilla-agent 0.1.0",
//!   "node": "node1", "capabilities": ["hello", "node.facts", ...]}}
//! ```
//!
//! The agent picks the newest version both sides list, or answers
//! `unsupported_version` naming the ones it speaks. `capabilities` lists every
//! method the agent serves, then feature flags: today `pods.logs.batch`
//! (`pods.logs` takes `batch`, below).
//!
//! Versioning rules:
//! * An additive change keeps the version: a new method, a new optional param,
//!   a new field in a result, item or event, a new error code, a new notice.
//!   Readers ignore result fields they do not know and read unknown error codes
//!   as a generic failure; a client uses a new method or param only when the
//!   agent lists it in `capabilities`.
//! * The agent reads params strictly (unknown fields are `bad_request`): a
//!   misspelt option must not silently fall back to a default. Only `hello`'s
//!   params accept unknown fields, since hello must stay readable by every agent.
//! * Anything else (renaming or removing a field, changing a type or a meaning,
//!   changing framing) is a breaking change and bumps the version to
//!   `flotilla/2`. Both sides advertise the versions they speak; during a
//!   transition an agent serves both.
//!
//! New request kinds come in this envelope, not as a new protocol: the
//! object store and the lease came so (`objects.*`, `lease.*`), and so did
//! exec (`exec.start` streaming output; `exec.input`, `exec.resize` and
//! `exec.signal` naming the exec's request id, as `cancel` names a stream).
//!
//! # Errors
//!
//! | code | when |
//! |---|---|
//! | `bad_request` | not UTF-8, not JSON, not a request object, missing or ill-typed params, unknown param fields, a request before hello, an id already in flight; or a request the service finds invalid |
//! | `unknown_method` | a method this agent does not serve |
//! | `too_large` | a line over 1 MiB (skipped) |
//! | `not_found` | no such pod, container or object |
//! | `conflict` | the pod exists already, or its state forbids the request; an `objects.put` whose generation is stale (`details: {generation, deleted?}`, what is stored); a `lease.acquire` refused (`details: {holder?, term, remainingMs}`) |
//! | `internal` | the agent failed (its log says why) |
//! | `unsupported_version` | hello offered no version the agent speaks |
//! | `busy` | 64 requests already in flight on this connection, or too many connections; an `objects.watch` that fell 1024 changes behind (it ends; `details: {missed}`) |
//!
//! After any error the connection stays usable (except the "no hello in
//! time" one and `busy` for too many connections, which close it).
//!
//! # Streams and cancel
//!
//! `pods.logs`, `events.subscribe` and `objects.watch` reply with `stream`
//! items. The client ends one early with
//! `{"id": 9, "method": "cancel", "params": {"id": 8}}`, answered
//! `{"found": true}` and followed by the stream's `end` (`found` is false
//! when no stream with that id runs: cancel is idempotent). Closing the
//! connection, or its write half, ends its streams; calls in flight still
//! answer after a half-close.
//!
//! Flow control: the agent queues at most 256 lines and 4 MiB per connection
//! and a stream waits for room, so a slow reader slows its streams; a client that
//! reads nothing for 30 s is disconnected. The agent gathers the lines queued
//! in a burst into one write of up to 64 KiB. The console's client buffers
//! 1024 items per stream (64 for a batched log, each up to ~64 KiB) and
//! cancels a stream whose consumer falls further behind for 2 s.
//!
//! # Methods
//!
//! Field names are camelCase, like the Kubernetes objects inside them;
//! timestamps are RFC 3339 UTC. Pods are named by `namespace` (default
//! `"default"`) and `name`.
//!
//! | method | params | result |
//! |---|---|---|
//! | `hello` | `versions: [string]`, `client: string` | `version`, `agentVersion`, `node`, `capabilities: [string]`, `pid?`, `agentBinary?` (the agent's process id and executable path, for upgrades) |
//! | `node.facts` | — | `hostname`, `os`, `kernel`, `architecture` (OCI), `cpus`, `memoryBytes`, `disk: {path, totalBytes, freeBytes}`, `bootTime` |
//! | `node.metrics` | `since?: seq` | `intervalMs`, `capacity`, `samples: [{seq, time, cpuPercent?, memoryTotalBytes, memoryAvailableBytes, diskTotalBytes, diskFreeBytes, load1, load5, load15, netRxBytes, netTxBytes, netRxBytesPerSec?, netTxBytesPerSec?}]` — one per second, the last 600, those after `since` when given |
//! | `pods.create` | `pod`: a v1 Pod (Kubernetes JSON) | PodRecord `{uid, pod, status}`; `conflict` if it exists |
//! | `pods.list` | `namespace?` | `{pods: [PodRecord]}` |
//! | `pods.status` | `namespace`, `name` | PodRecord |
//! | `pods.stop` | `namespace`, `name`, `graceSeconds?` | PodRecord, once stopped (SIGTERM, SIGKILL after the grace period, the pod's own by default) |
//! | `pods.kill` | `namespace`, `name` | PodRecord (SIGKILL now) |
//! | `pods.delete` | `namespace`, `name`, `graceSeconds?` | `{}` once stopped and removed |
//! | `pods.pause` / `pods.resume` | `namespace`, `name` | PodRecord (cgroup freezer) |
//! | `pods.logs` | `namespace`, `name`, `container?`, `tail?`, `since?` (time), `follow`, `previous`, `timestamps`, `batch?` | stream of records `{time?, stream: "stdout"\|"stderr", partial?, text}`; with `batch: true`, of batches `{records: [record]}` |
//! | `network.configure` | `podSubnet`, `clusterCidr`, `routes?: [{destination, via, node?}]` | NetworkState `{settings?, addresses: [string], problem?}`; saved, routes applied |
//! | `network.status` | — | NetworkState |
//! | `pods.stats` | `namespace?`, `name?` | `{pods: [{namespace, name, uid, time, containers: [{name, cpuUsageUsec, cpuMillicores?, memoryBytes, memoryLimitBytes?, pids}]}]}` |
//! | `events.subscribe` | `namespace?`, `since?: seq` | stream of `{seq, time, type: "Normal"\|"Warning", reason, message, namespace, pod, uid, container?, phase?}` until cancelled |
//! | `cancel` | `id` | `{found: bool}` |
//! | `objects.put` | `kind`, `namespace` (`""`: cluster-scoped), `name`, `generation` (≥ 1), `object?` (a JSON object), `deleted?` (a tombstone: no `object`) | `{generation, changed}` (`changed` false for an idempotent repeat); `conflict` with `details: {generation, deleted?}` when stale |
//! | `objects.get` | `kind`, `namespace`, `name`, `includeDeleted?` | ObjectRecord; `not_found` if absent, or deleted and `includeDeleted` is not set |
//! | `objects.list` | `kind`, `namespace?`, `includeDeleted?` | `{objects: [ObjectRecord]}` by namespace, then name |
//! | `objects.watch` | `kind?`, `namespace?` | stream of ObjectRecord: every matching object and tombstone now, then each one stored, until cancelled |
//! | `lease.acquire` | `holder`, `ttlMs` | `{holder, term, ttlMs, renewed}` (`ttlMs` as granted, capped); `conflict` with `details: {holder?, term, remainingMs}` when refused |
//! | `lease.release` | `holder` | `{released: bool}` (false if that holder held no live lease) |
//! | `lease.status` | — | `{holder?, remainingMs?, term, maxTtlMs, holdBackMs?}` |
//! | `exec.start` | `namespace`, `name`, `container?`, `command?: [string]` (none: the container's shell), `stdin`, `tty?: {term, cols, rows}` | stream of `{stdout: base64}` / `{stderr: base64}`, then `{exit: {code}}`; `not_found` / `conflict` when it cannot start ([`exec`]) |
//! | `exec.input` | `id` (of the `exec.start`), `data?: base64`, `eof?` | `{found: bool}` |
//! | `exec.resize` | `id`, `cols`, `rows` | `{found: bool}` |
//! | `exec.signal` | `id`, `signal` (`INT`, `TERM`, `HUP`, `KILL`, …) | `{found: bool}` |
//!
//! A PodRecord's `status` is Kubernetes' PodStatus ([`crate::api::status`]):
//! `phase`, `conditions`, `containerStatuses` with `state`
//! (`waiting{reason,message}` / `running{startedAt}` /
//! `terminated{exitCode,signal,reason,startedAt,finishedAt}`), `lastState`,
//! `ready`, `restartCount`, `image`, `imageID`, `containerID`.
//!
//! An ObjectRecord is `{kind, namespace, name, generation, deleted?, object?,
//! updatedAt}`: `object` as it was put, absent from a tombstone
//! (`deleted: true`); `updatedAt` is when this agent stored it, by its clock.
//!
//! Log records carry text decoded as UTF-8 with invalid bytes replaced;
//! `partial: true` means the line continues in the next record (the runtime
//! splits very long lines, as CRI logs do). `time` is present when
//! `timestamps` was asked for.
//!
//! `batch: true` (only to an agent that lists `pods.logs.batch`; an older
//! agent refuses the unknown param) asks for the records in batches:
//!
//! ```json
//! {"id": 8, "stream": {"records": [{"stream": "stdout", "text": "a"}, {"stream": "stdout", "text": "b"}]}}
//! ```
//!
//! A batch is what the agent's reader found written together: never empty,
//! at most 1,024 records or about 64 KiB of text (a single longer record
//! goes whole), records in log order within and across batches, none lost
//! or repeated. A follower sends each batch as soon as it is read, so a
//! quiet log's records still come one by one without delay, and a busy
//! log costs one line (one encode, one decode, one channel send) per batch
//! rather than per record: per-record items topped out near 50,000 lines a
//! second end to end over SSH, batches keep up with what a container writes
//! well past 100,000 (BENCHMARKS.md, "Log stream end to end").
//!
//! # Cluster objects and the controller lease
//!
//! Every agent keeps a copy of the cluster's objects (deployments, node
//! flags), each with a generation chosen by its writer; the console writes
//! to every agent and a reader takes, per object, the highest generation
//! among the agents' answers ([`crate::agent::objects::store`] has the
//! rules). Kinds are `UpperCamelCase` (`Deployment`; `Node`, cluster-scoped
//! with namespace `""`); namespaces and names follow Kubernetes' rules, names
//! at most 250 characters. The agent never reads the objects' bodies.
//!
//! * A put is stored if its generation is higher than the stored one. The
//!   same generation with the same content is an idempotent success
//!   (`changed: false`); a lower one, or the same with other content, is
//!   `conflict` naming the stored generation: read, merge, retry higher.
//! * A delete is a put with `deleted: true` and a higher generation. The
//!   tombstone is kept, so an agent that missed the delete cannot bring the
//!   object back: readers merging agents' answers must ask with
//!   `includeDeleted` and let a tombstone win when its generation is highest.
//! * `objects.watch` starts with every matching object and tombstone, then
//!   sends each one stored; an object may come twice, so keep the highest
//!   generation per object.
//!
//! The controller lease ([`crate::agent::objects::lease`] says what a client
//! must do with it): one holder at a time; `lease.acquire` grants when the
//! lease is free, expired, or already the holder's (a renewal, `renewed:
//! true`, same term); `term` rises with every new tenure; the TTL is capped
//! (15 s by default; `maxTtlMs` in `lease.status`). A restarted agent that
//! had granted refuses every acquire for one maximum TTL (`details` without
//! a `holder`). A client holds the lease only while a majority of all the
//! agents grant it, until the earliest `sent + ttlMs` less a margin.

pub mod client;
pub mod codec;
pub mod exec;
pub mod messages;
pub mod server;

pub use client::{
    CallStream, Client, ClientError, ClientOptions, ExecControls, ExecSession, LogBatches,
    LogRecords,
};
pub use messages::{
    Call, ErrorBody, ErrorCode, LOG_BATCH_CAPABILITY, METHODS, PROTOCOL_VERSION, Reply, Request,
    RequestId, SUPPORTED_VERSIONS, method,
};
pub use server::{
    AgentService, BindError, Server, ServerConfig, ServiceError, ServiceResult, ServiceStream,
    bind_socket, serve,
};

/// Where the agent listens.
pub const SOCKET_PATH: &str = "/run/flotilla/agent.sock";
