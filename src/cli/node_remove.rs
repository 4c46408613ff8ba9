//! `flotilla node remove NAME [--purge]`: the node leaves the cluster. It is
//! cordoned and its pods evicted (deployments replace theirs elsewhere),
//! then it is taken out of the cluster file. With `--purge` its agent is
//! stopped, its pod network taken down (`flotilla-agent leave`: routes,
//! iptables chains, bridge) and its state on the host (`/var/lib/flotilla`,
//! `/run/flotilla`) deleted too, leaving the host as it was before flotilla.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::join_all;

use super::control::{reconcile_until, with_control};
use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::agent::protocol::Client;
use crate::agent::protocol::messages::PodRef;
use crate::config::cluster_file::{self, ClusterConfig};
use crate::config::paths::Dirs;
use crate::controller::run::ControllerOptions;
use crate::controller::status::counts;
use crate::controller::world::{KIND_NODE, NodeFlags};
use crate::ssh::bootstrap::sh_quote;
use crate::ssh::target::TargetContext;

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The node's name in the cluster file.
    pub name: String,
    /// Also stop the node's agent and delete flotilla's state on the host.
    #[arg(long)]
    pub purge: bool,
    /// Seconds between the stop signal and SIGKILL for its pods (default: each pod's own).
    #[arg(long = "grace-period")]
    pub grace_period: Option<u64>,
    /// How long to wait for nodes to answer.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

pub fn remove(
    args: &RemoveArgs,
    path: &Path,
    cluster: Option<PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<()> {
    let original =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let before = cluster_file::parse(path, &original)?;
    let node = before.node(&args.name).cloned().ok_or_else(|| {
        super::nodes::NodeNotFound::new(&args.name, before.nodes.iter().map(|n| n.name.as_str()))
    })?;
    let updated = without_node(path, &original, &before, &args.name)?;
    let name = args.name.as_str();
    with_control(
        cluster,
        dirs,
        args.timeout,
        ControllerOptions::default(),
        async |control| {
            // Cordoned first, so nothing new lands there meanwhile.
            control
                .store()
                .update(KIND_NODE, "", name, |current| {
                    let mut flags: NodeFlags = current
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .unwrap_or_default();
                    flags.unschedulable = true;
                    serde_json::to_value(&flags).map_err(|e| e.to_string())
                })
                .await?;
            println!("node/{name} cordoned");
            let client = control.fleet.client(name);
            if args.purge && client.is_none() {
                bail!(
                    "node {name} is not connected, so it cannot be purged; remove it without --purge, or bring it back first"
                );
            }
            match &client {
                Some(client) => evict_all(client, name, args.grace_period).await?,
                None => eprintln!(
                    "warning: node {name} is not connected: its pods were not evicted and may still run there"
                ),
            }
            // The deployments it ran are whole again elsewhere, while it is still
            // a cordoned member (this process reconciles if no controller runs).
            let outcome = reconcile_until(control, Duration::from_secs(120), false, |world| {
                world
                    .deployments
                    .iter()
                    .all(|d| counts(world, &d.deployment).rolled_out())
            })
            .await?;
            for error in &outcome.errors {
                eprintln!("warning: {error}");
            }
            if args.purge
                && let Some(client) = &client
            {
                // Anything that landed meanwhile goes too: stopping the agent
                // alone would leave containers running under their shims.
                evict_all(client, name, args.grace_period).await?;
                purge(&node, client.hello().pid, dirs).await?;
                println!(
                    "node/{name} purged: its agent stopped, its pod network taken down, /var/lib/flotilla and /run/flotilla deleted"
                );
            }
            control.store().delete(KIND_NODE, "", name).await?;
            Ok(())
        },
    )?;
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    println!("node {name} removed from {}", path.display());
    Ok(())
}

/// Deletes every pod the node's agent holds, each with its grace period.
async fn evict_all(client: &Client, node: &str, grace: Option<u64>) -> anyhow::Result<()> {
    let pods = client
        .list_pods(None)
        .await
        .with_context(|| format!("listing the pods of {node}"))?
        .pods;
    let evictions = pods.iter().map(|r| {
        let pod = PodRef::new(&r.pod.metadata.namespace, &r.pod.metadata.name);
        println!("evicting pod {}/{}", pod.namespace, pod.name);
        async move { (client.delete_pod(&pod, grace).await, pod) }
    });
    for (result, pod) in join_all(evictions).await {
        result.with_context(|| format!("evicting pod {}/{} on {node}", pod.namespace, pod.name))?;
    }
    Ok(())
}

/// The cluster file's text without the `[[nodes]]` entry of `name`: each
/// entry is tried, and the one whose removal leaves exactly the other nodes
/// is it. Comments and layout elsewhere stay as they were.
fn without_node(
    path: &Path,
    text: &str,
    before: &ClusterConfig,
    name: &str,
) -> anyhow::Result<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('['))
        .map(|(i, _)| i)
        .collect();
    for (k, &start) in starts.iter().enumerate() {
        if lines[start].trim() != "[[nodes]]" {
            continue;
        }
        let end = starts.get(k + 1).copied().unwrap_or(lines.len());
        let candidate: String = lines[..start].concat() + &lines[end..].concat();
        let Ok(after) = cluster_file::parse(path, &candidate) else {
            continue;
        };
        let left: Vec<&str> = after.nodes.iter().map(|n| n.name.as_str()).collect();
        let expected: Vec<&str> = before
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| *n != name)
            .collect();
        if left == expected {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find node {name:?} as a [[nodes]] entry of {} (is `nodes` an inline array?); remove it by hand",
        path.display()
    )
}

/// Stops the agent (its pid from its hello) and deletes its state, over SSH,
/// as root or through `sudo -n`.
async fn purge(
    node: &crate::config::cluster_file::NodeConfig,
    pid: Option<u32>,
    dirs: &Dirs,
) -> anyhow::Result<()> {
    let context = TargetContext::from_env(dirs)?;
    let target = context.target(node);
    let session = crate::ssh::connect(&target)
        .await
        .with_context(|| format!("purging {}", node.name))?;
    let stop = match pid {
        Some(pid) => format!(
            r#"pid={pid}
case "$(readlink /proc/$pid/exe 2>/dev/null)" in
  */flotilla-agent*)
    agent=$(readlink /proc/$pid/exe)
    kill -TERM $pid
    i=0
    while [ -e /proc/$pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL $pid 2>/dev/null || true ;;
esac
"#
        ),
        None => String::new(),
    };
    // With the agent stopped (it would configure the network again), its
    // binary takes the node's pod network down: routes, iptables chains,
    // bridge. If that fails nothing is deleted, so a later purge can retry.
    // A directory that is a mount point (as the demo's nodes have) stays,
    // emptied.
    let leave = r#"[ -n "$agent" ] || agent=$(ls -t /var/lib/flotilla/bin/flotilla-agent-* 2>/dev/null | head -n 1)
if [ -n "$agent" ] && [ -x "$agent" ]; then
  "$agent" leave || { echo "taking the pod network down failed (see above); nothing deleted" >&2; exit 1; }
fi
"#;
    let script = format!(
        "agent=\n{stop}{leave}for d in /var/lib/flotilla /run/flotilla; do\n  rm -rf \"$d\" 2>/dev/null || find \"$d\" -mindepth 1 -delete\ndone\n"
    );
    let command = format!(
        "if [ \"$(id -u)\" -eq 0 ]; then sh -c {q}; else sudo -n sh -c {q}; fi",
        q = sh_quote(&script)
    );
    let out = session
        .exec(&command)
        .await
        .with_context(|| format!("purging {}", node.name))?;
    if !out.success() {
        bail!(
            "purging {}: the host said: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let _ = session.close().await;
    Ok(())
}
