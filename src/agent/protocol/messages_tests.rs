//! Round trips of every message, the envelope's refusals, and property tests
//! feeding the decoder arbitrary bytes and arbitrary JSON.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::agent::node::{DiskUsage, MetricsSample, NodeFacts};
use crate::agent::protocol::exec::{Bytes, ExecTerminal};
use crate::api::status::{ContainerState, ContainerStateWaiting, ContainerStatus};
use crate::api::{Container, ObjectMeta, PodSpec};

fn time(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn pod() -> Pod {
    Pod::new(
        ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        },
        PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: "busybox:1.36".into(),
                command: vec!["httpd".into(), "-f".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

fn record() -> PodRecord {
    PodRecord {
        uid: "0b4c9a7e".into(),
        pod: pod(),
        status: PodStatus {
            phase: PodPhase::Pending,
            container_statuses: vec![ContainerStatus {
                name: "web".into(),
                state: ContainerState::Waiting(ContainerStateWaiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                }),
                last_state: None,
                ready: false,
                restart_count: 0,
                image: "busybox:1.36".into(),
                image_id: String::new(),
                container_id: String::new(),
                started: None,
            }],
            ..Default::default()
        },
    }
}

/// Every method with params worth sending.
fn sample_calls() -> Vec<Call> {
    let web = PodRef::new("default", "web");
    vec![
        Call::Hello(HelloParams {
            versions: vec!["flotilla/2".into(), "flotilla/1".into()],
            client: "flotilla test".into(),
        }),
        Call::NodeFacts(Empty {}),
        Call::NodeMetrics(MetricsQuery { since: Some(41) }),
        Call::PodsCreate(CreatePod { pod: pod() }),
        Call::PodsList(ListPods {
            namespace: Some("kube".into()),
        }),
        Call::PodsStatus(web.clone()),
        Call::PodsStop(StopPod {
            namespace: "default".into(),
            name: "web".into(),
            grace_seconds: Some(5),
        }),
        Call::PodsKill(web.clone()),
        Call::PodsDelete(DeletePod {
            namespace: "default".into(),
            name: "web".into(),
            grace_seconds: None,
        }),
        Call::PodsPause(web.clone()),
        Call::PodsResume(web.clone()),
        Call::PodsLogs(LogsQuery {
            container: Some("web".into()),
            tail: Some(100),
            since: Some(time("2026-11-27T10:00:00Z")),
            follow: true,
            previous: false,
            timestamps: true,
            ..LogsQuery::new(&web)
        }),
        Call::PodsStats(StatsQuery {
            namespace: None,
            name: Some("web".into()),
        }),
        Call::EventsSubscribe(EventFilter {
            namespace: Some("default".into()),
            since: Some(7),
        }),
        Call::Cancel(CancelParams { id: 12 }),
        Call::ObjectsPut(PutObject {
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
            generation: 3,
            object: Some(json!({"spec": {"replicas": 3}})),
            deleted: false,
        }),
        Call::ObjectsGet(GetObject {
            kind: "Node".into(),
            namespace: String::new(),
            name: "node1".into(),
            include_deleted: true,
        }),
        Call::ObjectsList(ListObjects {
            kind: "Deployment".into(),
            namespace: Some("default".into()),
            include_deleted: false,
        }),
        Call::ObjectsWatch(WatchObjects {
            kind: Some("Deployment".into()),
            namespace: None,
        }),
        Call::LeaseAcquire(AcquireLease {
            holder: "op@laptop:4242:9f3a".into(),
            ttl_ms: 5000,
        }),
        Call::LeaseRelease(ReleaseLease {
            holder: "op@laptop:4242:9f3a".into(),
        }),
        Call::LeaseStatus(Empty {}),
        Call::NetworkConfigure(NetworkSettings {
            pod_subnet: "10.88.1.0/24".into(),
            cluster_cidr: "10.88.0.0/16".into(),
            routes: vec![NetworkRoute {
                destination: "10.88.2.0/24".into(),
                via: "10.77.0.12".into(),
                node: "node2".into(),
            }],
        }),
        Call::NetworkStatus(Empty {}),
        Call::ExecStart(ExecStartParams {
            namespace: "default".into(),
            name: "web".into(),
            container: Some("main".into()),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            stdin: true,
            tty: Some(ExecTerminal {
                term: "xterm-256color".into(),
                cols: 120,
                rows: 40,
            }),
        }),
        Call::ExecInput(ExecInputParams {
            id: 5,
            data: Bytes(b"ls\r".to_vec()),
            eof: true,
        }),
        Call::ExecResize(ExecResizeParams {
            id: 5,
            cols: 100,
            rows: 30,
        }),
        Call::ExecSignal(ExecSignalParams {
            id: 5,
            signal: "INT".into(),
        }),
    ]
}

fn object_record() -> ObjectRecord {
    ObjectRecord {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: "web".into(),
        generation: 3,
        deleted: false,
        object: Some(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}})),
        updated_at: time("2026-11-27T10:00:00Z"),
    }
}

#[test]
fn every_method_has_a_sample_and_a_unique_name() {
    let names: Vec<&str> = sample_calls().iter().map(Call::method).collect();
    assert_eq!(names, METHODS);
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
}

#[test]
fn every_request_round_trips() {
    for (n, call) in sample_calls().into_iter().enumerate() {
        let id = n as u64 * 1000 + u64::MAX / 2;
        let line = call.to_request(id).encode();
        assert_eq!(line.last(), Some(&b'\n'));
        assert!(!line[..line.len() - 1].contains(&b'\n'));
        let request = Request::decode(&line[..line.len() - 1]).unwrap();
        let (back_id, back) = Call::decode(request).unwrap();
        assert_eq!((back_id, &back), (id, &call), "{}", call.method());
    }
}

fn round_trip_result<M: Unary>(output: M::Output)
where
    M::Output: PartialEq + std::fmt::Debug,
{
    let line = Reply::result(3, &output).encode();
    let Reply::Result { id: 3, result } = Reply::decode(&line).unwrap() else {
        panic!("{} did not come back as a result", M::NAME)
    };
    let back: M::Output = serde_json::from_value(result).unwrap();
    assert_eq!(back, output, "{}", M::NAME);
}

fn round_trip_item<M: Streaming>(item: M::Item)
where
    M::Item: PartialEq + std::fmt::Debug,
{
    let line = Reply::stream(4, &item).encode();
    let Reply::Stream { id: 4, item: value } = Reply::decode(&line).unwrap() else {
        panic!("{} did not come back as a stream item", M::NAME)
    };
    let back: M::Item = serde_json::from_value(value).unwrap();
    assert_eq!(back, item, "{}", M::NAME);
}

#[test]
fn a_hello_reply_from_an_agent_without_pid_and_binary_still_reads() {
    let old = serde_json::json!({
        "version": "flotilla/1",
        "agentVersion": "flotilla-agent 0.1.0",
        "node": "node1",
        "capabilities": ["hello"],
    });
    let reply: HelloReply = serde_json::from_value(old).unwrap();
    assert_eq!((reply.pid, reply.agent_binary), (None, None));
    let new = serde_json::to_value(HelloReply {
        pid: Some(7),
        agent_binary: Some("/x".into()),
        ..reply
    })
    .unwrap();
    assert_eq!(new["pid"], 7);
    assert_eq!(new["agentBinary"], "/x");
}

#[test]
fn every_result_and_item_round_trips() {
    round_trip_result::<method::Hello>(HelloReply {
        version: "flotilla/1".into(),
        agent_version: "flotilla-agent 0.1.0".into(),
        node: "node1".into(),
        capabilities: METHODS.iter().map(|m| m.to_string()).collect(),
        pid: Some(4242),
        agent_binary: Some("/var/lib/flotilla/bin/flotilla-agent-ab12".into()),
    });
    round_trip_result::<method::NodeFacts>(NodeFacts {
        hostname: "node1".into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0-28-amd64".into(),
        architecture: "amd64".into(),
        cpus: 4,
        memory_bytes: 8 << 30,
        disk: DiskUsage {
            path: "/var/lib/flotilla".into(),
            total_bytes: 100 << 30,
            free_bytes: 40 << 30,
        },
        boot_time: Some(time("2026-11-27T09:00:00Z")),
        pod_network: None,
        addresses: Vec::new(),
    });
    round_trip_result::<method::NodeMetrics>(MetricsSeries {
        interval_ms: 1000,
        capacity: 600,
        samples: vec![MetricsSample {
            seq: 9,
            time: time("2026-11-27T10:00:00.5Z"),
            cpu_percent: Some(12.5),
            memory_total_bytes: 100,
            memory_available_bytes: 50,
            disk_total_bytes: 10,
            disk_free_bytes: 5,
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
            net_rx_bytes: 1,
            net_tx_bytes: 2,
            net_rx_bytes_per_sec: Some(3.0),
            net_tx_bytes_per_sec: None,
        }],
    });
    round_trip_result::<method::PodsCreate>(record());
    round_trip_result::<method::PodsList>(PodList {
        pods: vec![record(), record()],
    });
    round_trip_result::<method::PodsStatus>(record());
    round_trip_result::<method::PodsStop>(record());
    round_trip_result::<method::PodsKill>(record());
    round_trip_result::<method::PodsDelete>(Empty {});
    round_trip_result::<method::PodsPause>(record());
    round_trip_result::<method::PodsResume>(record());
    round_trip_result::<method::PodsStats>(PodStatsList {
        pods: vec![PodStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u".into(),
            time: time("2026-11-27T10:00:00Z"),
            containers: vec![ContainerStats {
                name: "web".into(),
                cpu_usage_usec: 1_000_000,
                cpu_millicores: Some(250),
                memory_bytes: 4 << 20,
                memory_limit_bytes: Some(128 << 20),
                pids: 3,
            }],
        }],
    });
    round_trip_result::<method::Cancel>(Cancelled { found: true });
    round_trip_item::<method::PodsLogs>(LogRecord {
        time: Some(time("2026-11-27T10:00:00.123456789Z")),
        stream: LogStream::Stderr,
        partial: true,
        text: "half a line \u{fffd}".into(),
    });
    round_trip_result::<method::ObjectsPut>(PutReply {
        generation: 3,
        changed: false,
    });
    round_trip_result::<method::ObjectsGet>(object_record());
    round_trip_result::<method::ObjectsList>(ObjectList {
        objects: vec![
            object_record(),
            ObjectRecord {
                deleted: true,
                object: None,
                generation: 4,
                ..object_record()
            },
        ],
    });
    round_trip_item::<method::ObjectsWatch>(object_record());
    round_trip_result::<method::LeaseAcquire>(LeaseGrant {
        holder: "h".into(),
        term: 7,
        ttl_ms: 5000,
        renewed: true,
    });
    round_trip_result::<method::LeaseRelease>(LeaseReleased { released: true });
    round_trip_result::<method::LeaseStatus>(LeaseState {
        holder: Some("h".into()),
        remaining_ms: Some(1200),
        term: 7,
        max_ttl_ms: 15_000,
        hold_back_ms: None,
    });
    round_trip_item::<method::EventsSubscribe>(Event {
        seq: 1,
        time: time("2026-11-27T10:00:00Z"),
        type_: EventType::Warning,
        reason: "BackOff".into(),
        message: "Back-off restarting failed container".into(),
        namespace: "default".into(),
        pod: "web".into(),
        uid: "u".into(),
        container: Some("web".into()),
        phase: Some(PodPhase::Running),
    });
}

#[test]
fn the_other_reply_lines_round_trip() {
    for reply in [
        Reply::End { id: 5 },
        Reply::error(Some(6), ErrorCode::NotFound, "pod default/x not found"),
        Reply::error(None, ErrorCode::TooLarge, "too long"),
        Reply::Event {
            event: serde_json::to_value(Notice::ShuttingDown {
                message: "bye".into(),
            })
            .unwrap(),
        },
    ] {
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
    }
    assert_eq!(
        Reply::error(None, ErrorCode::BadRequest, "x").encode(),
        b"{\"error\":{\"code\":\"bad_request\",\"message\":\"x\"},\"id\":null}\n"
    );
}

#[test]
fn wire_shapes_are_as_documented() {
    let line = Call::PodsStop(StopPod {
        namespace: "default".into(),
        name: "web".into(),
        grace_seconds: Some(3),
    })
    .to_request(7)
    .encode();
    let value: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        value,
        json!({"id": 7, "method": "pods.stop", "params": {"namespace": "default", "name": "web", "graceSeconds": 3}})
    );
    let end: Value = serde_json::from_slice(&Reply::End { id: 8 }.encode()).unwrap();
    assert_eq!(end, json!({"id": 8, "end": true}));
    let notice = serde_json::to_value(Notice::ShuttingDown {
        message: "m".into(),
    })
    .unwrap();
    assert_eq!(notice, json!({"kind": "shutting_down", "message": "m"}));
}

#[test]
fn log_batches_are_as_documented_and_left_out_unless_asked() {
    let pod = PodRef::new("default", "web");
    // `batch` is not sent when false: an older agent refuses unknown params.
    let plain = Call::PodsLogs(LogsQuery::new(&pod)).to_request(1).encode();
    let value: Value = serde_json::from_slice(&plain).unwrap();
    assert!(value["params"].get("batch").is_none(), "{value}");
    let batched = Call::PodsLogs(LogsQuery {
        batch: true,
        ..LogsQuery::new(&pod)
    })
    .to_request(2)
    .encode();
    let value: Value = serde_json::from_slice(&batched).unwrap();
    assert_eq!(value["params"]["batch"], true);

    let batch = LogBatch {
        records: vec![
            LogRecord {
                time: None,
                stream: LogStream::Stdout,
                partial: false,
                text: "a".into(),
            },
            LogRecord {
                time: None,
                stream: LogStream::Stderr,
                partial: true,
                text: "b\n\u{1b}".into(),
            },
        ],
    };
    round_trip_item::<PodsLogBatches>(batch.clone());
    assert_eq!(PodsLogBatches::NAME, "pods.logs");
    // The agent's pre-encoded item line reads as the same reply.
    let item = serde_json::to_vec(&batch).unwrap();
    let line = Reply::encode_stream_item(9, &item);
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(!line[..line.len() - 1].contains(&b'\n'));
    let Reply::Stream { id: 9, item } = Reply::decode(&line[..line.len() - 1]).unwrap() else {
        panic!("not a stream item")
    };
    assert_eq!(
        item,
        json!({"records": [{"stream": "stdout", "text": "a"}, {"stream": "stderr", "partial": true, "text": "b\n\u{1b}"}]})
    );
    assert!(FEATURES.contains(&LOG_BATCH_CAPABILITY));
}

#[test]
fn object_and_lease_wire_shapes_are_as_documented() {
    let line = Call::ObjectsPut(PutObject {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: "web".into(),
        generation: 4,
        object: None,
        deleted: true,
    })
    .to_request(1)
    .encode();
    let value: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        value["params"],
        json!({"kind": "Deployment", "namespace": "default", "name": "web", "generation": 4, "deleted": true})
    );
    let tombstone = ObjectRecord {
        deleted: true,
        object: None,
        ..object_record()
    };
    assert_eq!(
        serde_json::to_value(&tombstone).unwrap(),
        json!({"kind": "Deployment", "namespace": "default", "name": "web", "generation": 3,
               "deleted": true, "updatedAt": "2026-11-27T10:00:00Z"})
    );
    let params = serde_json::to_value(AcquireLease {
        holder: "h".into(),
        ttl_ms: 5000,
    })
    .unwrap();
    assert_eq!(params, json!({"holder": "h", "ttlMs": 5000}));
    let status = serde_json::to_value(LeaseState {
        holder: None,
        remaining_ms: None,
        term: 2,
        max_ttl_ms: 15_000,
        hold_back_ms: Some(900),
    })
    .unwrap();
    assert_eq!(
        status,
        json!({"term": 2, "maxTtlMs": 15000, "holdBackMs": 900})
    );
}

#[test]
fn error_details_travel_and_are_optional() {
    let mut body = ErrorBody::new(ErrorCode::Conflict, "stale");
    body.details = Some(
        serde_json::to_value(ObjectConflict {
            generation: 9,
            deleted: true,
        })
        .unwrap(),
    );
    let reply = Reply::Error {
        id: Some(2),
        error: body.clone(),
    };
    let line = reply.encode();
    let value: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        value["error"],
        json!({"code": "conflict", "message": "stale", "details": {"generation": 9, "deleted": true}})
    );
    let Reply::Error { error, .. } = Reply::decode(&line).unwrap() else {
        panic!("not an error")
    };
    assert_eq!(
        error.details::<ObjectConflict>(),
        Some(ObjectConflict {
            generation: 9,
            deleted: true
        })
    );
    // Details of another shape read as none, not as garbage.
    assert_eq!(error.details::<LeaseRefused>(), None);
    let refused = LeaseRefused {
        holder: None,
        term: 3,
        remaining_ms: 14_000,
    };
    assert_eq!(
        serde_json::to_value(&refused).unwrap(),
        json!({"term": 3, "remainingMs": 14000})
    );
    // An older agent's errors have none.
    let old = Reply::decode(br#"{"id":1,"error":{"code":"conflict","message":"m"}}"#).unwrap();
    let Reply::Error { error, .. } = old else {
        panic!("not an error")
    };
    assert_eq!(error.details, None);
}

fn refusal(line: &str) -> Refusal {
    match Request::decode(line.as_bytes()).and_then(Call::decode) {
        Ok(call) => panic!("{line} was accepted as {call:?}"),
        Err(r) => r,
    }
}

#[test]
fn envelope_refusals_carry_the_id_when_there_is_one() {
    let cases: &[(&str, Option<u64>, ErrorCode, &str)] = &[
        ("not json", None, ErrorCode::BadRequest, "invalid JSON"),
        ("[1,2]", None, ErrorCode::BadRequest, "JSON object"),
        (
            r#"{"method":"hello"}"#,
            None,
            ErrorCode::BadRequest,
            "no \"id\"",
        ),
        (
            r#"{"id":-1,"method":"x"}"#,
            None,
            ErrorCode::BadRequest,
            "\"id\"",
        ),
        (
            r#"{"id":1.5,"method":"x"}"#,
            None,
            ErrorCode::BadRequest,
            "\"id\"",
        ),
        (
            r#"{"id":"1","method":"x"}"#,
            None,
            ErrorCode::BadRequest,
            "\"id\"",
        ),
        (
            r#"{"id":1}"#,
            Some(1),
            ErrorCode::BadRequest,
            "no \"method\"",
        ),
        (
            r#"{"id":2,"method":3}"#,
            Some(2),
            ErrorCode::BadRequest,
            "string",
        ),
        (
            r#"{"id":3,"method":"pods.list","params":[]}"#,
            Some(3),
            ErrorCode::BadRequest,
            "object",
        ),
        (
            r#"{"id":4,"method":"pods.list","extra":1}"#,
            Some(4),
            ErrorCode::BadRequest,
            "\"extra\"",
        ),
        (
            r#"{"id":5,"method":"pods.frobnicate"}"#,
            Some(5),
            ErrorCode::UnknownMethod,
            "pods.frobnicate",
        ),
        (
            r#"{"id":6,"method":"pods.status","params":{}}"#,
            Some(6),
            ErrorCode::BadRequest,
            "name",
        ),
        (
            r#"{"id":7,"method":"pods.status","params":{"name":1}}"#,
            Some(7),
            ErrorCode::BadRequest,
            "params.name",
        ),
        (
            r#"{"id":8,"method":"pods.stop","params":{"name":"w","graceSecond":3}}"#,
            Some(8),
            ErrorCode::BadRequest,
            "graceSecond",
        ),
        (
            r#"{"id":9,"method":"pods.stop","params":{"name":"w","graceSeconds":-3}}"#,
            Some(9),
            ErrorCode::BadRequest,
            "graceSeconds",
        ),
        (
            r#"{"id":10,"method":"pods.create","params":{"pod":{"spec":{"containers":[{"nam":"x"}]}}}}"#,
            Some(10),
            ErrorCode::BadRequest,
            "nam",
        ),
        (
            r#"{"id":11,"method":"pods.logs","params":{"name":"w","since":"yesterday"}}"#,
            Some(11),
            ErrorCode::BadRequest,
            "since",
        ),
        (
            r#"{"id":12,"method":"hello","params":{}}"#,
            Some(12),
            ErrorCode::BadRequest,
            "versions",
        ),
        (
            // The namespace is required: "" is how a cluster-scoped object says so.
            r#"{"id":13,"method":"objects.put","params":{"kind":"Node","name":"n","generation":1,"object":{}}}"#,
            Some(13),
            ErrorCode::BadRequest,
            "namespace",
        ),
        (
            r#"{"id":14,"method":"objects.put","params":{"kind":"Node","namespace":"","name":"n","generation":-1}}"#,
            Some(14),
            ErrorCode::BadRequest,
            "generation",
        ),
        (
            r#"{"id":15,"method":"objects.get","params":{"kind":"Node","namespace":"","name":"n","includeDeleted":"yes"}}"#,
            Some(15),
            ErrorCode::BadRequest,
            "includeDeleted",
        ),
        (
            r#"{"id":16,"method":"lease.acquire","params":{"holder":"h","ttl":5000}}"#,
            Some(16),
            ErrorCode::BadRequest,
            "ttl",
        ),
        (
            r#"{"id":17,"method":"lease.status","params":{"holder":"h"}}"#,
            Some(17),
            ErrorCode::BadRequest,
            "holder",
        ),
    ];
    for (line, id, code, needle) in cases {
        let r = refusal(line);
        assert_eq!(
            (r.id, r.error.code),
            (*id, *code),
            "{line}: {}",
            r.error.message
        );
        assert!(
            r.error.message.contains(needle),
            "{line}: {}",
            r.error.message
        );
    }
}

#[test]
fn lenient_where_documented() {
    // Absent and null params read as {}; pods default to namespace "default".
    let (_, call) =
        Call::decode(Request::decode(br#"{"id":1,"method":"pods.list"}"#).unwrap()).unwrap();
    assert_eq!(call, Call::PodsList(ListPods::default()));
    let (_, call) = Call::decode(
        Request::decode(br#"{"id":1,"method":"pods.kill","params":{"name":"w"}}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(call, Call::PodsKill(PodRef::new("default", "w")));
    let (_, call) =
        Call::decode(Request::decode(br#"{"id":1,"method":"node.facts","params":null}"#).unwrap())
            .unwrap();
    assert_eq!(call, Call::NodeFacts(Empty {}));
    // Hello accepts fields it does not know: a future client may add some.
    let (_, call) = Call::decode(
        Request::decode(
            br#"{"id":1,"method":"hello","params":{"versions":["flotilla/1"],"features":["x"]}}"#,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(call, Call::Hello(_)));
    // Results from a newer agent: unknown fields and codes are read.
    let reply = Reply::decode(
        br#"{"id":1,"error":{"code":"quota_exceeded","message":"m"},"retryAfter":3}"#,
    )
    .unwrap();
    assert!(matches!(
        reply,
        Reply::Error {
            error: ErrorBody {
                code: ErrorCode::Other,
                ..
            },
            ..
        }
    ));
    let c: Cancelled = serde_json::from_str(r#"{"found":true,"extra":1}"#).unwrap();
    assert!(c.found);
}

#[test]
fn an_unknown_method_name_is_not_echoed_in_full() {
    let long = "m".repeat(10_000);
    let r = refusal(&format!(r#"{{"id":1,"method":"{long}"}}"#));
    assert!(r.error.message.len() < 200, "{}", r.error.message.len());
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let deep = format!(
        r#"{{"id":1,"method":"pods.list","params":{{"namespace":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = refusal(&deep);
    assert_eq!(r.error.code, ErrorCode::BadRequest);
}

#[test]
fn versions_are_chosen_newest_first() {
    assert_eq!(choose_version(&["flotilla/1".into()]), Some("flotilla/1"));
    assert_eq!(
        choose_version(&["flotilla/9".into(), "flotilla/1".into()]),
        Some("flotilla/1")
    );
    assert_eq!(choose_version(&["flotilla/0".into()]), None);
    assert_eq!(choose_version(&[]), None);
}

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request-shaped object whose parts are arbitrary: method from the real
/// table or not, params arbitrary, id sometimes valid.
fn request_like() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        prop::sample::select(METHODS.to_vec()).prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        any_json(),
    ];
    let id = prop_oneof![any::<u64>().prop_map(Value::from), any_json()];
    let params = prop_oneof![
        any_json(),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "name",
                "namespace",
                "pod",
                "versions",
                "graceSeconds",
                "tail",
                "since",
                "follow",
                "id",
                "container",
                "x",
            ]),
            any_json(),
            0..5,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
    ];
    (id, method, params, any::<u8>()).prop_map(|(id, method, params, drop)| {
        let mut object = Map::new();
        if drop & 1 == 0 {
            object.insert("id".into(), id);
        }
        if drop & 2 == 0 {
            object.insert("method".into(), method);
        }
        if drop & 4 == 0 {
            object.insert("params".into(), params);
        }
        if drop & 8 != 0 {
            object.insert("extra".into(), Value::Null);
        }
        Value::Object(object)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the decoder, and whatever is refused says why.
    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match Request::decode(&bytes).and_then(Call::decode) {
            Ok((_, call)) => { let _ = call.to_request(1).encode(); }
            Err(r) => prop_assert!(!r.error.message.is_empty()),
        }
    }

    /// Arbitrary JSON values: a non-object is refused without an id; an object
    /// is either a valid call that re-encodes to the same call, or is refused.
    #[test]
    fn arbitrary_json_decodes_or_is_refused(value in prop_oneof![any_json(), request_like()]) {
        let line = serde_json::to_vec(&value).unwrap();
        match Request::decode(&line).and_then(Call::decode) {
            Ok((id, call)) => {
                let again = call.to_request(id).encode();
                let (id2, call2) = Request::decode(&again[..again.len() - 1]).and_then(Call::decode).unwrap();
                prop_assert_eq!((id, call), (id2, call2));
            }
            Err(r) => {
                prop_assert!(!r.error.message.is_empty());
                if !value.is_object() {
                    prop_assert_eq!(r.id, None);
                }
                if let Some(id) = r.id {
                    prop_assert_eq!(value.get("id").and_then(Value::as_u64), Some(id));
                }
            }
        }
    }

    /// Whatever the agent might send, the client's reader returns or refuses.
    #[test]
    fn arbitrary_reply_lines_never_panic(value in any_json(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Reply::decode(&serde_json::to_vec(&value).unwrap());
        let _ = Reply::decode(&bytes);
    }
}
