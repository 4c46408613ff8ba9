//! `flotilla controller`: the reconcile loop with no console. It connects to
//! every node, takes the cluster lease when it is free (and waits while
//! another process holds it), and reconciles while it holds it, until
//! Ctrl-C or SIGTERM, when it releases the lease so another can take over at
//! once.

use std::process::ExitCode;
use std::time::Duration;

use super::control::{LEASE_TTL, with_control};
use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::config::paths::Dirs;
use crate::controller::lease::LeaseKeeper;
use crate::controller::run::ControllerOptions;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// How long a node may be NotReady before its deployments' pods are
    /// replaced on other nodes (Kubernetes waits 5m).
    #[arg(long = "lost-after", default_value = "30s", value_parser = parse_timeout)]
    pub lost_after: Duration,
    /// How long to wait for nodes to answer at start.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

pub fn run(
    args: &ControllerArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let mut options = ControllerOptions::default();
    options.plan.lost_after = args.lost_after;
    with_control(cluster, dirs, args.timeout, options, async |control| {
        let keeper = LeaseKeeper::new(control.agents(), control.holder.clone(), LEASE_TTL);
        let cancel = CancellationToken::new();
        let (held, keeper_task) = keeper.spawn(cancel.clone());
        let holder = control.holder.clone();
        let mut announce = held.clone();
        let announcer = tokio::spawn(async move {
            let mut was = false;
            while announce.changed().await.is_ok() {
                let now = *announce.borrow_and_update();
                if now != was {
                    if now {
                        println!("controller {holder}: holding the lease, reconciling");
                    } else {
                        println!("controller {holder}: lease not held, standing by");
                    }
                    was = now;
                }
            }
        });
        let stop = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            stop.cancel();
        });
        println!(
            "controller {}: {} node(s); waiting for the lease",
            control.holder,
            control.fleet.state().snapshot().nodes.len()
        );
        control.controller.run(held, cancel.clone()).await;
        let _ = keeper_task.await;
        announcer.abort();
        println!("controller {}: stopped, lease released", control.holder);
        Ok(ExitCode::SUCCESS)
    })
}
