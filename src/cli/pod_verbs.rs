//! `flotilla delete pod`, `kill` and `logs`: the verbs that act on one pod.
//! Each connects to every node (any may hold the pod), finds the node or
//! nodes whose agent reports the pod, and sends that agent the request over
//! the node's session.
//!
//! A pod can briefly exist on two nodes (a copy left on a node that came
//! back after its pods were replaced elsewhere, until it is fenced): delete
//! and kill act on every copy; logs reads the first node in cluster-file
//! order and says which when there are several.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;

use super::get::{DEFAULT_TIMEOUT, Resource, not_yet, parse_timeout};
use crate::agent::protocol::messages::{LogRecord, LogsQuery, PodRef};
use crate::agent::protocol::{Client, ClientError};
use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file;
use crate::config::paths::{Dirs, cluster_file_path};
use crate::controller::replicated::ReplicatedStore;
use crate::controller::world::KIND_POD;
use crate::ssh::fleet::Fleet;

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// What to delete: pod (po) or deployment (deploy).
    pub resource: Resource,
    pub name: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Seconds between the stop signal and SIGKILL (default: the pod's
    /// terminationGracePeriodSeconds).
    #[arg(long = "grace-period")]
    pub grace_period: Option<u64>,
    /// How long to wait for nodes to answer.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// The pod whose containers get SIGKILL now.
    pub pod: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// How long to wait for nodes to answer.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    pub pod: String,
    /// The container (required when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing what the container writes, until it ends or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u64>,
    /// Prefix each line with the time it was written (RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
    /// The previous run of the container, after a restart.
    #[arg(short = 'p', long)]
    pub previous: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// How long to wait for nodes to answer.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// kubectl's NotFound, saying which nodes could not be asked.
pub(super) fn not_found(snapshot: &ClusterSnapshot, namespace: &str, name: &str) -> anyhow::Error {
    let silent: Vec<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| n.pods_at.is_none())
        .map(|n| n.name.as_str())
        .collect();
    let mut message = format!("pods {name:?} not found in namespace {namespace:?}");
    if !silent.is_empty() {
        message.push_str(&format!(
            " (not asked: {}, which did not answer; see `flotilla get nodes`)",
            silent.join(", ")
        ));
    }
    anyhow::anyhow!(message)
}

fn client_of(fleet: &Fleet, node: &str) -> anyhow::Result<Client> {
    fleet.client(node).with_context(|| {
        format!("node {node} holds the pod but its connection is down; see `flotilla get nodes`")
    })
}

/// Runs `verb` on a runtime with a connected fleet, stopping it afterwards.
pub(super) fn with_fleet<T>(
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    wait: Duration,
    verb: impl AsyncFnOnce(&Fleet, &ClusterSnapshot) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let path = cluster_file_path(cluster, dirs);
    let config = cluster_file::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let fleet = super::connect::connect(&config, dirs, wait).await?;
        let snapshot = fleet.state().snapshot();
        let result = verb(&fleet, &snapshot).await;
        fleet.stop().await;
        result
    })
}

pub fn delete(
    args: &DeleteArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    match args.resource {
        Resource::Pods => {}
        Resource::Deployments => {
            return super::deployments::delete(
                &args.namespace,
                &args.name,
                args.timeout,
                cluster,
                dirs,
            );
        }
        Resource::Nodes => return Err(not_yet("delete", args.resource)),
    }
    let grace = args.grace_period;
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    // A pod no node took yet lives in the cluster's store: deleting it is
    // removing it there.
    let pending = with_fleet(
        cluster.clone(),
        dirs,
        args.timeout,
        async |fleet, snapshot| {
            if !snapshot.holders(namespace, name).is_empty() {
                return Ok(false);
            }
            let store = ReplicatedStore::new(std::sync::Arc::new(fleet.handle()));
            Ok(store.delete(KIND_POD, namespace, name).await?)
        },
    )?;
    if pending {
        println!("pod {name:?} deleted");
        return Ok(ExitCode::SUCCESS);
    }
    on_every_copy(
        cluster,
        dirs,
        args.timeout,
        (&args.namespace, &args.name),
        "deleted",
        async |client, pod| client.delete_pod(pod, grace).await.map(drop),
    )
}

pub fn kill(
    args: &KillArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    on_every_copy(
        cluster,
        dirs,
        args.timeout,
        (&args.namespace, &args.pod),
        "killed",
        async |client, pod| client.kill_pod(pod).await.map(drop),
    )
}

/// Sends `request` to every node whose agent holds the pod (a copy awaiting
/// fencing included), then says, as kubectl does, `pod "NAME" <done>`.
fn on_every_copy(
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    wait: Duration,
    (namespace, name): (&str, &str),
    done: &str,
    request: impl AsyncFn(&Client, &PodRef) -> Result<(), ClientError>,
) -> anyhow::Result<ExitCode> {
    with_fleet(cluster, dirs, wait, async |fleet, snapshot| {
        let nodes = snapshot.holders(namespace, name);
        if nodes.is_empty() {
            return Err(not_found(snapshot, namespace, name));
        }
        let pod = PodRef::new(namespace, name);
        for node in &nodes {
            request(&client_of(fleet, node)?, &pod)
                .await
                .with_context(|| format!("pod {name:?} on {node}: not {done}"))?;
        }
        println!("pod {name:?} {done}");
        Ok(ExitCode::SUCCESS)
    })
}

pub fn logs(
    args: &LogsArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    if args.follow && args.previous {
        bail!("--follow and --previous cannot be used together: a previous run has ended");
    }
    let (namespace, name) = (&args.namespace, &args.pod);
    with_fleet(cluster, dirs, args.timeout, async |fleet, snapshot| {
        let nodes = snapshot.holders(namespace, name);
        let Some(node) = nodes.first() else {
            return Err(not_found(snapshot, namespace, name));
        };
        if nodes.len() > 1 {
            eprintln!(
                "pod {name:?} is on {} (a copy being fenced); showing {node}'s",
                nodes.join(" and ")
            );
        }
        let query = LogsQuery {
            container: args.container.clone(),
            tail: args.tail,
            follow: args.follow,
            previous: args.previous,
            timestamps: args.timestamps,
            ..LogsQuery::new(&PodRef::new(namespace, name))
        };
        let mut stream = client_of(fleet, node)?
            .log_batches(&query)
            .await
            .with_context(|| format!("logs of pod {name:?} on {node}"))?;
        // Stdout alone is line-buffered: a write per record. Buffered here
        // and flushed once a batch, a busy log costs a write per batch, and
        // a follower still shows each batch as soon as it arrives.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        loop {
            let batch = tokio::select! {
                batch = stream.next() => batch,
                _ = tokio::signal::ctrl_c() => break,
            };
            let Some(batch) = batch else { break };
            let batch = batch.with_context(|| format!("logs of pod {name:?} on {node}"))?;
            let written = batch
                .iter()
                .try_for_each(|record| write_record(&mut out, record, args.timestamps))
                .and_then(|()| if args.follow { out.flush() } else { Ok(()) });
            if written.is_err() {
                // The reader went away (`| head`): not an error.
                break;
            }
        }
        let _ = out.flush();
        Ok(ExitCode::SUCCESS)
    })
}

/// One record as kubectl prints it: raw, the time first if asked, and a
/// newline unless the runtime split the line and it goes on.
fn write_record(out: &mut impl Write, record: &LogRecord, timestamps: bool) -> std::io::Result<()> {
    if timestamps && let Some(time) = record.time {
        write!(
            out,
            "{} ",
            time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )?;
    }
    out.write_all(record.text.as_bytes())?;
    if !record.partial {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::messages::LogStream;

    #[test]
    fn records_print_raw_with_partial_lines_joined() {
        let time = "2026-11-27T10:00:00.123456789Z".parse().ok();
        let records = [
            LogRecord {
                time,
                stream: LogStream::Stdout,
                partial: true,
                text: "first half, ".into(),
            },
            LogRecord {
                time,
                stream: LogStream::Stdout,
                partial: false,
                text: "second half".into(),
            },
            LogRecord {
                time,
                stream: LogStream::Stderr,
                partial: false,
                text: "\x1b[31mred\x1b[0m".into(),
            },
        ];
        let mut out = Vec::new();
        for r in &records {
            write_record(&mut out, r, false).unwrap();
        }
        assert_eq!(out, b"first half, second half\n\x1b[31mred\x1b[0m\n");
        let mut out = Vec::new();
        write_record(&mut out, &records[1], true).unwrap();
        assert_eq!(out, b"2026-11-27T10:00:00.123456789Z second half\n");
    }
}
