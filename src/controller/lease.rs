//! The controller lease, the console's side: only one flotilla process
//! reconciles at a time. It holds a lease that a majority of the agents
//! grant for a few seconds at a time, renews it, and stops acting the
//! moment it cannot. The agent's side and the rules a client must keep are
//! in [`crate::agent::objects::lease`]; this is a client that keeps them.
//!
//! # How long the lease is believed
//!
//! Each `lease.acquire` is timed from just before it is sent: the agent's
//! grant starts no earlier, so it lasts at least until `sent + ttl granted`
//! on that agent. The lease is held while a majority of all the members
//! granted, until the earliest of those ends among the majority that lasts
//! longest, less a margin for clock-rate differences (a tenth of the TTL
//! plus 100 ms): so the holder always believes it expires before any agent
//! does. A late answer never lengthens it.
//!
//! The deadline is kept on two clocks: tokio's (monotonic, which stops
//! while the machine is suspended) for the timer, and the kernel's boot
//! clock (`/proc/uptime`, which counts suspended time) checked a few times a
//! second, so a laptop that wakes up does not go on believing in a lease the
//! agents let lapse long ago.
//!
//! # Keeping it
//!
//! [`LeaseKeeper::spawn`] renews every third of the TTL, publishes `true`
//! while the lease is held and `false` the moment the deadline passes
//! without a fresh majority (a timer on the deadline races the renewal),
//! and keeps trying to get the lease back. A round that wins only a
//! minority while the lease is not held releases what it won, so that two
//! contenders with a minority each (an agent down) do not block each other
//! for good; retries are jittered.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::agents::Agents;
use crate::agent::protocol::messages::{LeaseGrant, LeaseRefused};
use crate::agent::protocol::{Client, ErrorCode};

/// How long each grant is asked for.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6);
/// How often the boot clock is checked while the lease is held.
const BOOT_CHECK: Duration = Duration::from_millis(250);

/// A holder id unique to this call, never reused: the hostname, the pid and
/// 64 random bits (`host/1234/9f3a…`).
pub fn holder_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| !c.is_control() && *c != '/')
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "unknown".to_string()
    } else {
        host
    };
    format!(
        "{host}/{}/{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// The outcome of an acquire round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// A majority granted; held until `until` (monotonic) unless renewed.
    Held {
        until: Instant,
        /// Each granting agent's term: unchanged across renewals while the
        /// tenure on that agent is unbroken.
        term_by_node: BTreeMap<String, u64>,
    },
    /// Not held: `holder` is who holds it, when a majority of the answers
    /// name the same one; try again in `retry_in`.
    NotHeld {
        holder: Option<String>,
        retry_in: Duration,
    },
}

impl LeaseState {
    pub fn is_held(&self) -> bool {
        matches!(self, LeaseState::Held { .. })
    }
}

/// When a held lease ends, on both clocks.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    mono: Instant,
    /// On the boot clock; `None` when `/proc/uptime` cannot be read.
    boot: Option<Duration>,
}

impl Deadline {
    fn passed(&self) -> bool {
        Instant::now() >= self.mono
            || self
                .boot
                .zip(boot_clock())
                .is_some_and(|(deadline, now)| now >= deadline)
    }

    fn later(self, other: Deadline) -> Deadline {
        if other.mono > self.mono { other } else { self }
    }
}

/// Time since boot, suspended time included (`CLOCK_BOOTTIME`, as
/// `/proc/uptime` shows it, to a hundredth of a second).
fn boot_clock() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// One round's result and what it needs for the next.
struct Round {
    state: LeaseState,
    deadline: Option<Deadline>,
    /// When the round's first request was sent.
    started: Instant,
    /// The shortest TTL granted (the agents cap what is asked).
    ttl: Duration,
}

/// Acquires, renews and releases the lease for one holder.
pub struct LeaseKeeper {
    agents: Arc<dyn Agents>,
    holder: String,
    ttl: Duration,
    /// `None`: a tenth of the TTL granted plus 100 ms.
    margin: Option<Duration>,
    call_timeout: Duration,
    /// The current deadline, while held.
    held: Mutex<Option<Deadline>>,
}

impl LeaseKeeper {
    /// A keeper asking for `ttl` ([`DEFAULT_TTL`] is a good one; the agents
    /// may grant less). The margin is a tenth of the TTL granted plus
    /// 100 ms, and an agent that has not answered in a third of the TTL
    /// asked counts as not granting.
    pub fn new(agents: Arc<dyn Agents>, holder: String, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(300));
        LeaseKeeper {
            agents,
            holder,
            ttl,
            margin: None,
            call_timeout: ttl / 3,
            held: Mutex::new(None),
        }
    }

    /// How much earlier than the agents the holder believes the lease ends.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// One round: `lease.acquire` on every connected agent at once; held
    /// when a majority of the members granted, until the deadline of the
    /// module comment. A round that is not held, while no earlier round's
    /// lease still runs, releases whatever it was granted.
    pub async fn try_acquire(&self) -> LeaseState {
        self.round().await.state
    }

    async fn round(&self) -> Round {
        let members = self.agents.members();
        let quorum = self.agents.quorum();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let started = Instant::now();
        let calls = members.iter().map(|node| {
            let client = self.agents.client(node);
            async move {
                let client = client?;
                // Read the clocks before sending: the grant starts later.
                let sent = Instant::now();
                let sent_boot = boot_clock();
                let answer = tokio::time::timeout(
                    self.call_timeout,
                    client.acquire_lease(&self.holder, ttl_ms),
                )
                .await;
                Some((node.clone(), client, sent, sent_boot, answer))
            }
        });
        let answers: Vec<_> = join_all(calls).await.into_iter().flatten().collect();

        // (ends on both clocks, node, term) of every grant.
        let mut grants: Vec<(Deadline, String, u64)> = Vec::new();
        let mut refusals: Vec<LeaseRefused> = Vec::new();
        let mut unsure: Vec<Client> = Vec::new();
        let mut ttl = self.ttl;
        for (node, client, sent, sent_boot, answer) in answers {
            match answer {
                Ok(Ok(LeaseGrant {
                    holder,
                    term,
                    ttl_ms,
                    renewed,
                })) if holder == self.holder => {
                    let granted = Duration::from_millis(ttl_ms);
                    ttl = ttl.min(granted);
                    if !renewed && self.deadline().is_some() {
                        tracing::debug!(
                            node,
                            term,
                            "the lease had lapsed on this agent; granted again"
                        );
                    }
                    let ends = Deadline {
                        mono: sent + granted,
                        boot: sent_boot.map(|b| b + granted),
                    };
                    grants.push((ends, node, term));
                    unsure.push(client);
                }
                Ok(Ok(grant)) => {
                    tracing::warn!(node, holder = %grant.holder, "an agent granted the lease to another holder");
                }
                Ok(Err(e)) if e.code() == Some(ErrorCode::Conflict) => {
                    if let Some(refused) = e.details::<LeaseRefused>() {
                        refusals.push(refused);
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(node, "lease.acquire failed: {e}");
                    unsure.push(client);
                }
                // It may have granted after all.
                Err(_) => unsure.push(client),
            }
        }

        if grants.len() >= quorum {
            // The majority that lasts longest; it ends when its earliest does.
            grants.sort_by_key(|g| std::cmp::Reverse(g.0.mono));
            let chosen = &grants[..quorum];
            let mono = chosen.iter().map(|g| g.0.mono).min().unwrap_or(started);
            let boot = chosen
                .iter()
                .map(|g| g.0.boot)
                .collect::<Option<Vec<_>>>()
                .and_then(|b| b.into_iter().min());
            let margin = self.margin.unwrap_or(ttl / 10 + Duration::from_millis(100));
            let deadline = Deadline {
                mono: mono.checked_sub(margin).unwrap_or(started),
                boot: boot.map(|b| b.saturating_sub(margin)),
            };
            if !deadline.passed() {
                let deadline = self.extend(deadline);
                return Round {
                    state: LeaseState::Held {
                        until: deadline.mono,
                        term_by_node: grants
                            .into_iter()
                            .map(|(_, node, term)| (node, term))
                            .collect(),
                    },
                    deadline: Some(deadline),
                    started,
                    ttl,
                };
            }
        }

        // Not held by this round. Unless an earlier round's lease still runs,
        // give back what was granted, so others can win a majority.
        let still_held = self.deadline();
        if still_held.is_none() && !unsure.is_empty() {
            self.release_on(unsure).await;
        }
        Round {
            state: LeaseState::NotHeld {
                holder: majority_holder(refusals.iter().filter_map(|r| r.holder.clone()), quorum),
                retry_in: self.retry_in(&refusals, grants.len(), quorum),
            },
            deadline: still_held,
            started,
            ttl,
        }
    }

    /// When to try again after a round that did not win: when enough of
    /// the refusing agents' leases (or hold-backs) have run out to make a
    /// majority, jittered; within a third of the TTL at most.
    fn retry_in(&self, refusals: &[LeaseRefused], granted: usize, quorum: usize) -> Duration {
        let mut remaining: Vec<u64> = refusals.iter().map(|r| r.remaining_ms).collect();
        remaining.sort_unstable();
        let wait = quorum
            .checked_sub(granted + 1)
            .and_then(|i| remaining.get(i))
            .map_or(self.ttl / 3, |ms| Duration::from_millis(*ms));
        let wait = wait.clamp(Duration::from_millis(20), self.ttl / 3);
        wait + Duration::from_millis(rand::rng().random_range(0..=50))
    }

    /// The current deadline, unless it has passed.
    fn deadline(&self) -> Option<Deadline> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_some_and(|d| d.passed()) {
            *held = None;
        }
        *held
    }

    fn extend(&self, deadline: Deadline) -> Deadline {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = match *held {
            Some(current) if !current.passed() => current.later(deadline),
            _ => deadline,
        };
        *held = Some(deadline);
        deadline
    }

    fn lapse(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Keeps the lease: renews every third of the TTL; publishes `true`
    /// while held and `false` the moment the deadline passes without a
    /// successful majority renewal, then keeps trying to acquire it again.
    /// When `cancel` fires it publishes `false`, releases on every agent and
    /// ends. If the task is dropped or aborted, it publishes `false` too.
    pub fn spawn(self, cancel: CancellationToken) -> (watch::Receiver<bool>, JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(self.keep(Publisher(tx), cancel));
        (rx, task)
    }

    async fn keep(self, publisher: Publisher, cancel: CancellationToken) {
        let mut round: Option<Pin<Box<dyn Future<Output = Round> + Send + '_>>> = None;
        let mut next_round = Instant::now();
        let mut deadline: Option<Deadline> = None;
        let mut boot_check = tokio::time::interval(BOOT_CHECK);
        boot_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let lapse_at = deadline.map_or(next_round, |d| d.mono);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(lapse_at), if deadline.is_some() => {
                    self.lapsed(&publisher, &mut deadline);
                }
                _ = boot_check.tick(), if deadline.is_some() => {
                    if deadline.is_some_and(|d| d.passed()) {
                        self.lapsed(&publisher, &mut deadline);
                    }
                }
                done = async {
                    match round.as_mut() {
                        Some(round) => round.await,
                        None => std::future::pending().await,
                    }
                } => {
                    round = None;
                    let renew_every = done.ttl / 3;
                    match done.state {
                        LeaseState::Held { .. } => {
                            deadline = done.deadline;
                            publisher.set(true);
                            next_round = done.started + renew_every;
                        }
                        LeaseState::NotHeld { retry_in, .. } => {
                            // A failed renewal: the lease runs on until its
                            // deadline; try again soon, several times before.
                            next_round = if deadline.is_some() {
                                Instant::now() + renew_every / 4
                            } else {
                                Instant::now() + retry_in
                            };
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_round), if round.is_none() => {
                    round = Some(Box::pin(self.round()));
                }
            }
        }
        drop(round);
        publisher.set(false);
        self.release().await;
    }

    fn lapsed(&self, publisher: &Publisher, deadline: &mut Option<Deadline>) {
        tracing::warn!(holder = %self.holder, "the controller lease lapsed: no majority renewed it in time");
        *deadline = None;
        self.lapse();
        publisher.set(false);
    }

    /// Gives the lease up on every connected agent (refusals are expected:
    /// it may have lapsed, or be another's).
    pub async fn release(&self) {
        self.lapse();
        let clients = self
            .agents
            .members()
            .iter()
            .filter_map(|node| self.agents.client(node))
            .collect();
        self.release_on(clients).await;
    }

    async fn release_on(&self, clients: Vec<Client>) {
        let releases = clients.into_iter().map(|client| async move {
            let released =
                tokio::time::timeout(self.call_timeout, client.release_lease(&self.holder)).await;
            if let Ok(Err(e)) = released {
                tracing::debug!("lease.release failed: {e}");
            }
        });
        join_all(releases).await;
    }

    /// Who holds the lease now, by a majority of the members' `lease.status`
    /// answers, if anyone: for verbs that only want to know whether a
    /// controller runs.
    pub async fn current_holder(&self) -> Option<String> {
        let quorum = self.agents.quorum();
        let calls = self.agents.members().into_iter().map(|node| {
            let client = self.agents.client(&node);
            async move {
                let client = client?;
                let status = tokio::time::timeout(self.call_timeout, client.lease_status()).await;
                match status {
                    Ok(Ok(status)) => status.holder,
                    Ok(Err(e)) => {
                        tracing::debug!(node, "lease.status failed: {e}");
                        None
                    }
                    Err(_) => None,
                }
            }
        });
        majority_holder(join_all(calls).await.into_iter().flatten(), quorum)
    }
}

/// The holder named by at least `quorum` of `holders`.
fn majority_holder(holders: impl Iterator<Item = String>, quorum: usize) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for holder in holders {
        *counts.entry(holder).or_default() += 1;
    }
    counts
        .into_iter()
        .find(|(_, n)| *n >= quorum)
        .map(|(holder, _)| holder)
}

/// The keeper's side of the watch channel: `false` goes out when it is
/// dropped, so a keeper that ends in any way never leaves `true` behind.
struct Publisher(watch::Sender<bool>);

impl Publisher {
    fn set(&self, held: bool) {
        self.0.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_ids_are_unique_and_printable() {
        let a = holder_id();
        let b = holder_id();
        assert_ne!(a, b);
        assert!(a.len() <= 256 && !a.chars().any(char::is_control), "{a}");
        assert_eq!(a.split('/').count(), 3, "{a}");
        assert!(a.contains(&format!("/{}/", std::process::id())), "{a}");
    }

    #[test]
    fn a_majority_holder_needs_a_quorum_of_answers() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            majority_holder(names(&["a", "b", "a"]).into_iter(), 2),
            Some("a".into())
        );
        assert_eq!(majority_holder(names(&["a", "b"]).into_iter(), 2), None);
        assert_eq!(majority_holder(names(&[]).into_iter(), 2), None);
    }

    #[test]
    fn the_boot_clock_runs() {
        let a = boot_clock().expect("/proc/uptime");
        std::thread::sleep(Duration::from_millis(30));
        assert!(boot_clock().unwrap() > a);
    }

    #[tokio::test]
    async fn a_lease_with_no_agents_is_not_held() {
        let agents = Arc::new(crate::controller::agents::StaticAgents {
            agents: vec![("n1".into(), None), ("n2".into(), None)],
        });
        let keeper = LeaseKeeper::new(agents, holder_id(), Duration::from_secs(3));
        match keeper.try_acquire().await {
            LeaseState::NotHeld { holder, retry_in } => {
                assert_eq!(holder, None);
                assert!(retry_in <= Duration::from_secs(2));
            }
            held => panic!("{held:?}"),
        }
        assert_eq!(keeper.current_holder().await, None);
    }
}
