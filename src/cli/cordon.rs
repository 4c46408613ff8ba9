//! `flotilla cordon|uncordon|drain NODE`: the node's cordon flag lives in the
//! replicated store (`Node/<name>`), so every controller and console sees
//! it; drain cordons, then evicts the node's pods (each with its grace
//! period) so their deployments replace them elsewhere.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use super::control::{Control, reconcile_until, with_control};
use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::config::paths::Dirs;
use crate::controller::ops;
use crate::controller::run::ControllerOptions;
use crate::controller::status::counts;

#[derive(clap::Args, Debug)]
pub struct CordonArgs {
    pub node: String,
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    pub node: String,
    /// Also delete pods no deployment manages (they are not recreated).
    #[arg(long)]
    pub force: bool,
    /// Seconds between the stop signal and SIGKILL (default: each pod's own).
    #[arg(long = "grace-period")]
    pub grace_period: Option<u64>,
    /// How long to wait for the evicted pods' replacements.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

pub fn cordon(
    args: &CordonArgs,
    unschedulable: bool,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    with_control(
        cluster,
        dirs,
        args.timeout,
        ControllerOptions::default(),
        async |control| {
            let changed = set_cordon(control, &args.node, unschedulable).await?;
            let verb = if unschedulable {
                "cordoned"
            } else {
                "uncordoned"
            };
            if changed {
                println!("node/{} {verb}", args.node);
            } else {
                println!("node/{} already {verb}", args.node);
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}

/// Sets the flag; false when it already had that value.
async fn set_cordon(control: &Control, node: &str, unschedulable: bool) -> anyhow::Result<bool> {
    let known: Vec<String> = control
        .snapshot()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    Ok(ops::set_cordon(control.store(), &known, node, unschedulable).await?)
}

pub fn drain(
    args: &DrainArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let connect = parse_timeout(DEFAULT_TIMEOUT).unwrap_or(Duration::from_secs(10));
    with_control(
        cluster,
        dirs,
        connect,
        ControllerOptions::default(),
        async |control| {
            let node = args.node.as_str();
            set_cordon(control, node, true).await?;
            println!("node/{node} cordoned");
            let world = control.controller.read_world().await?;
            let pods = ops::drain_plan(&world, node, args.force)?;
            let client = control
                .fleet
                .client(node)
                .ok_or_else(|| anyhow::anyhow!("node {node} is not connected"))?;
            for pod in &pods {
                println!("evicting pod {}/{}", pod.namespace, pod.name);
            }
            let mut failed = false;
            for (pod, result) in ops::evict(&client, pods, args.grace_period).await {
                match result {
                    Ok(()) => println!("pod/{} evicted", pod.name),
                    Err(err) => {
                        failed = true;
                        eprintln!("error: evicting pod {}/{}: {err}", pod.namespace, pod.name);
                    }
                }
            }
            if failed {
                bail!("node {node} is cordoned but not drained: some pods could not be evicted");
            }
            // Their deployments bring them back elsewhere.
            let outcome = reconcile_until(control, args.timeout, false, |world| {
                world
                    .deployments
                    .iter()
                    .all(|d| counts(world, &d.deployment).rolled_out())
            })
            .await?;
            for error in &outcome.errors {
                eprintln!("warning: {error}");
            }
            println!("node/{node} drained");
            Ok(ExitCode::SUCCESS)
        },
    )
}
