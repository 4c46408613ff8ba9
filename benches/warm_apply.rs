//! Issue 6's warm figure: with the connections a console keeps open (a
//! connected fleet, the lease held), how long from the operator's key (the
//! pod written to the cluster's store) to the pod Running: one reconcile
//! pass schedules and binds it, then its agent reports it Running. Needs a
//! running cluster: `FLOTILLA_CLUSTER=FILE cargo bench --bench warm_apply`
//! (scripts/bench-apply runs it on its demo). Without one it says so and
//! exits 0. `RUNS=N` sets the run count (default 20).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::agent::protocol::messages::PodRef;
use flotilla::api::status::PodPhase;
use flotilla::config::cluster_file;
use flotilla::config::paths::Dirs;
use flotilla::controller::lease::{LeaseKeeper, holder_id};
use flotilla::controller::run::{Controller, ControllerOptions};
use flotilla::controller::world::{KIND_POD, PendingPod};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let Ok(path) = std::env::var("FLOTILLA_CLUSTER") else {
        eprintln!(
            "warm_apply: set FLOTILLA_CLUSTER to a running cluster's file (scripts/bench-apply does)"
        );
        return Ok(());
    };
    let image =
        std::env::var("IMAGE").unwrap_or_else(|_| "10.77.0.1:5000/demo/busybox:latest".into());
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let config = cluster_file::load(std::path::Path::new(&path))?;
    let dirs = Dirs::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fleet = flotilla::cli::connect::connect(&config, &dirs, Duration::from_secs(60)).await?;
        let holder = holder_id();
        let agents = Arc::new(fleet.handle());
        let cancel = CancellationToken::new();
        let (mut held, keeper) =
            LeaseKeeper::new(agents.clone(), holder.clone(), Duration::from_secs(6)).spawn(cancel.clone());
        tokio::time::timeout(Duration::from_secs(30), held.wait_for(|h| *h)).await??;
        let mut controller =
            Controller::new(agents, fleet.state().clone(), holder, ControllerOptions::default());
        let mut times = Vec::new();
        for run in 0..runs {
            let name = format!("warm-{run}");
            let pod: flotilla::api::Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": image, "command": ["sleep", "600"]}]},
            }))?;
            let started = Instant::now();
            let pending = PendingPod { pod, status: Default::default() };
            controller.store().put(KIND_POD, "default", &name, serde_json::to_value(&pending)?).await?;
            let report = controller.pass(&held).await?;
            let node = report
                .actions
                .iter()
                .find_map(|a| match a {
                    flotilla::controller::plan::Action::Bind { node, pod, .. } if pod.metadata.name == name => Some(node.clone()),
                    _ => None,
                })
                .ok_or_else(|| anyhow::anyhow!("{name} was not bound: {:?}", report.errors))?;
            let client = fleet.client(&node).ok_or_else(|| anyhow::anyhow!("{node} not connected"))?;
            let pod_ref = PodRef::new("default", &name);
            loop {
                let record = client.pod_status(&pod_ref).await?;
                if record.status.phase == PodPhase::Running {
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    anyhow::bail!("{name} not Running after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            times.push(started.elapsed());
            client.delete_pod(&pod_ref, Some(0)).await?;
        }
        cancel.cancel();
        let _ = keeper.await;
        fleet.stop().await;
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "key to Running, warm ({} runs): mean {:.1} ms, median {:.1} ms, min {:.1} ms, max {:.1} ms",
            times.len(),
            mean.as_secs_f64() * 1000.0,
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
        anyhow::Ok(())
    })
}
