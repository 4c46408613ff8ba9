//! How a verb that changes the cluster works: it connects to every node,
//! writes desired state to the replicated store, and makes sure someone
//! reconciles it. If a controller (a console, `flotilla controller`) holds
//! the lease, the verb only watches; if nobody does, the verb takes the
//! lease and reconciles itself for as long as it runs, then releases it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterSnapshot, ClusterState};
use crate::config::cluster_file;
use crate::config::paths::{Dirs, cluster_file_path};
use crate::controller::agents::Agents;
use crate::controller::lease::{LeaseKeeper, LeaseState, holder_id};
use crate::controller::plan::Action;
use crate::controller::replicated::ReplicatedStore;
use crate::controller::run::{Controller, ControllerOptions, PassReport};
use crate::controller::world::World;
use crate::ssh::fleet::Fleet;

/// How long a lease lasts between renewals (the agents cap it at 15 s).
pub const LEASE_TTL: Duration = Duration::from_secs(6);

/// A connected fleet with the controller's machinery over it.
pub struct Control {
    pub fleet: Fleet,
    pub controller: Controller,
    pub holder: String,
}

impl Control {
    pub fn store(&self) -> &Arc<ReplicatedStore> {
        self.controller.store()
    }

    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.fleet.state().snapshot()
    }

    pub fn agents(&self) -> Arc<dyn Agents> {
        Arc::new(self.fleet.handle())
    }
}

/// Runs `verb` on a runtime with a connected [`Control`], then closes the
/// sessions.
pub fn with_control<T>(
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    wait: Duration,
    options: ControllerOptions,
    verb: impl AsyncFnOnce(&mut Control) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let path = cluster_file_path(cluster, dirs);
    let config = cluster_file::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let fleet = super::connect::connect(&config, dirs, wait).await?;
        let holder = holder_id();
        let controller = Controller::new(
            Arc::new(fleet.handle()),
            fleet.state().clone(),
            holder.clone(),
            ControllerOptions {
                pod_cidr: config.pod_cidr,
                ..options
            },
        );
        let mut control = Control {
            fleet,
            controller,
            holder,
        };
        let result = verb(&mut control).await;
        control.fleet.stop().await;
        result
    })
}

/// Who reconciled while [`reconcile_until`] ran.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The condition was met before the deadline.
    pub done: bool,
    /// The holder that reconciled, when it was another process.
    pub other_holder: Option<String>,
    /// What this process's own passes did.
    pub actions: Vec<Action>,
    /// Failures of this process's own passes, each once.
    pub errors: Vec<String>,
}

/// Makes sure the cluster is reconciled until `done` says the world is as
/// wanted or `timeout` passes: as the lease holder when nobody holds it
/// (passes of our own), else by watching the holder's work. With
/// `one_pass`, stops after the first pass of our own, or at once when
/// another process holds the lease.
pub async fn reconcile_until(
    control: &mut Control,
    timeout: Duration,
    one_pass: bool,
    mut done: impl FnMut(&World) -> bool,
) -> anyhow::Result<Reconciled> {
    let deadline = Instant::now() + timeout;
    let mut outcome = Reconciled::default();
    let mut lease: Option<Lease> = None;
    let mut next_try = Instant::now();
    let mut events = EventWatch::new(control.fleet.state());
    let result = loop {
        if lease.is_none() && Instant::now() >= next_try {
            let keeper = LeaseKeeper::new(control.agents(), control.holder.clone(), LEASE_TTL);
            match keeper.try_acquire().await {
                LeaseState::Held { .. } => {
                    let cancel = CancellationToken::new();
                    let (mut held, task) = keeper.spawn(cancel.clone());
                    // The keeper renews at once and says so.
                    let confirmed = tokio::time::timeout(LEASE_TTL / 3, held.wait_for(|h| *h))
                        .await
                        .is_ok_and(|r| r.is_ok());
                    let taken = Lease { held, cancel, task };
                    if confirmed {
                        lease = Some(taken);
                    } else {
                        taken.end().await;
                    }
                }
                LeaseState::NotHeld { holder, retry_in } => {
                    if holder.is_some() {
                        outcome.other_holder = holder;
                    }
                    next_try = Instant::now()
                        + retry_in.clamp(Duration::from_millis(200), Duration::from_secs(2));
                }
            }
        }
        let mut passed = false;
        if let Some(taken) = &lease {
            if *taken.held.borrow() {
                match control.controller.pass(&taken.held).await {
                    Ok(report) => {
                        passed = true;
                        collect(&mut outcome, report);
                    }
                    Err(err) => note(&mut outcome, err.to_string()),
                }
            } else if let Some(lost) = lease.take() {
                lost.end().await;
            }
        }
        if one_pass && (passed || outcome.other_holder.is_some()) {
            break Ok(());
        }
        match control.controller.read_world().await {
            Ok(world) if done(&world) => {
                outcome.done = true;
                break Ok(());
            }
            Ok(_) => {}
            Err(err) if Instant::now() >= deadline => break Err(err.into()),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            break Ok(());
        }
        let most = Duration::from_millis(if passed { 100 } else { 250 });
        events.wait(most).await;
    };
    if let Some(taken) = lease {
        taken.end().await;
    }
    result.map(|()| outcome)
}

/// The agents' events as the fleet hears them, for a wait that ends early
/// when one arrives.
struct EventWatch {
    changes: tokio::sync::watch::Receiver<Arc<ClusterSnapshot>>,
    /// Each node's last event number when last looked at.
    seen: Vec<Option<u64>>,
}

impl EventWatch {
    fn new(state: &ClusterState) -> EventWatch {
        let mut changes = state.subscribe();
        // Cloned out: no borrow may be held across other calls.
        let snapshot = changes.borrow_and_update().clone();
        EventWatch {
            seen: event_marks(&snapshot),
            changes,
        }
    }

    /// Waits `most`, or less if an agent reports an event meanwhile (a pod
    /// created, its container started or ended): the look that follows
    /// then sees it at once, not up to a poll later. Only events end it,
    /// not the nodes' figures, which change every second on every node.
    async fn wait(&mut self, most: Duration) {
        let timer = tokio::time::sleep(most);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                _ = &mut timer => return,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        // The fleet is gone; the timer still paces the loop.
                        timer.await;
                        return;
                    }
                    let snapshot = self.changes.borrow_and_update().clone();
                    let marks = event_marks(&snapshot);
                    if marks != self.seen {
                        self.seen = marks;
                        return;
                    }
                }
            }
        }
    }
}

/// Each node's last event number, as the fleet has heard them.
fn event_marks(snapshot: &ClusterSnapshot) -> Vec<Option<u64>> {
    snapshot
        .nodes
        .iter()
        .map(|node| node.events.last().map(|e| e.seq))
        .collect()
}

/// The lease while this verb holds it: its keeper's task and signal.
struct Lease {
    held: tokio::sync::watch::Receiver<bool>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Stops renewing and releases it on every agent.
    async fn end(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

fn collect(outcome: &mut Reconciled, report: PassReport) {
    outcome.actions.extend(report.actions);
    for error in report.errors {
        note(outcome, error);
    }
}

fn note(outcome: &mut Reconciled, error: String) {
    if !outcome.errors.contains(&error) {
        outcome.errors.push(error);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::protocol::messages::Event;

    fn state() -> ClusterState {
        let text =
            "[cluster]\nname = \"c\"\n\n[[nodes]]\nname = \"n1\"\naddress = \"10.77.0.11\"\n";
        ClusterState::new(&cluster_file::parse(Path::new("c.toml"), text).expect("valid"))
    }

    #[tokio::test]
    async fn an_agents_event_ends_the_wait_early() {
        let state = state();
        let mut events = EventWatch::new(&state);
        let node = state.node("n1").expect("node");
        let publisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            node.event(Event::started(1, chrono::Utc::now()));
        });
        // A minute unless the event wakes it; the outer bound only keeps a
        // broken wait from hanging the test run.
        tokio::time::timeout(
            Duration::from_secs(30),
            events.wait(Duration::from_secs(60)),
        )
        .await
        .expect("the event should end the wait");
        assert_eq!(events.seen, vec![Some(1)]);
        publisher.await.expect("publisher");
    }

    #[tokio::test]
    async fn other_changes_do_not_end_the_wait() {
        let state = state();
        let mut events = EventWatch::new(&state);
        let node = state.node("n1").expect("node");
        let most = Duration::from_millis(150);
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            for _ in 0..5 {
                node.alive();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        events.wait(most).await;
        // A timer never fires early, so only a wrong wake ends it sooner.
        assert!(start.elapsed() >= most, "woken by a change with no event");
        assert_eq!(events.seen, vec![None]);
        publisher.await.expect("publisher");
    }
}
