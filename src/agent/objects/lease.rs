//! The controller lease, this agent's share of it: a single named lease
//! ("controller") that the agent grants to one holder at a time, for a
//! time-to-live. Only one flotilla process may reconcile the cluster; it
//! is the one holding the lease on a majority of the agents.
//!
//! # What the agent does
//!
//! * `acquire(holder, ttl)` grants when the lease is free, expired, or held
//!   by this same holder (a renewal, which keeps the term). It answers with
//!   the TTL granted (capped at the maximum TTL, 15 s by default) and the
//!   term. Otherwise it refuses, naming the holder and its remaining time.
//! * The term increases by one with every new tenure: every grant that is
//!   not a renewal of a live lease — to a new holder, or to the same holder
//!   after its lease lapsed or was released. It is recorded on disk (under
//!   the object store's directory) before the grant is answered, so terms
//!   never go backwards, across restarts too. Terms are per agent: they
//!   tell a holder whether its tenure on this agent was unbroken, and are
//!   not comparable between agents.
//! * `release(holder)` frees the lease if that holder has it.
//! * Expiry is measured on the monotonic clock ([`Instant`]), never the
//!   wall clock, which may be stepped.
//!
//! # The restart rule
//!
//! An agent keeps its grants in memory. After it restarts it has forgotten
//! them, yet a holder may still believe a lease it granted. So an agent that
//! has ever granted (a term is on record) refuses every acquire, renewals
//! included, for one maximum TTL after it starts: by then every grant it made
//! before has expired. The hold-back is tied to the maximum TTL (there is
//! one setting for both), so it cannot be made shorter than a grant; and the
//! maximum TTL is recorded with the term, so an agent restarted with a
//! shorter one still holds back for the longer one it may have granted. An
//! agent with no term on record has never granted and starts granting at
//! once. If the record cannot be read the agent grants nothing (the term
//! could go backwards) and logs why; it still serves everything else.
//!
//! # What a client must do (the console's side)
//!
//! * Use a holder id unique to the process (host, pid and a random part),
//!   never reused.
//! * Send `acquire` to every agent. Read the local clock *before* sending
//!   each request (`sent`): the agent's lease starts no earlier than that.
//!   The client holds the lease only while a majority of all the cluster's
//!   agents (not of those that answered) have granted it, and only until the
//!   earliest `sent + ttl granted` among that majority, less a safety margin
//!   for clock-rate differences (say a tenth of the TTL plus 100 ms).
//! * Renew well before that (every third of the TTL), each renewal timed
//!   from its own `sent`, and stop acting — no new agent calls for the
//!   controller, decisions in progress abandoned — the moment the deadline
//!   passes without a fresh majority. A renewal answered `renewed: false`
//!   means the lease had lapsed on that agent in between.
//! * Time it on a clock that counts a suspended machine (`CLOCK_BOOTTIME`):
//!   a laptop that sleeps must not wake up believing in an old lease.
//! * Release on every agent when done; refusals are expected, not errors
//!   to report: another process holds the lease, or an agent has just
//!   restarted and is holding back.
//!
//! Two holders cannot both have majorities at once, since two majorities
//! share an agent, and each agent's grant lasts at least as long as its
//! holder believes it does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::files;

/// The one lease this agent grants.
pub const CONTROLLER: &str = "controller";
/// The longest TTL granted, and how long a restarted agent holds back.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(15);
/// Longest holder id, in bytes.
pub const HOLDER_MAX: usize = 256;
/// Where, under the object store's directory, the lease records its term.
/// Not an object kind (kinds start with an upper-case letter).
const LEASES_DIR: &str = "leases";

/// Why an acquire (or any lease call) did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the {CONTROLLER} lease is held by {holder:?} (term {term}) for {} ms more",
        remaining.as_millis()
    )]
    Held {
        holder: String,
        term: u64,
        remaining: Duration,
    },
    #[error(
        "this agent restarted and grants no lease for {} ms more: a lease it granted before may still be believed",
        remaining.as_millis()
    )]
    HoldingBack { term: u64, remaining: Duration },
    /// The term record could not be read at start; nothing is granted.
    #[error("the {CONTROLLER} lease is unavailable on this agent: {0}")]
    Unavailable(String),
    #[error("recording the lease's term in {path}: {source}")]
    Record { path: PathBuf, source: io::Error },
}

/// A successful acquire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub holder: String,
    pub term: u64,
    /// The TTL granted: the one asked for, capped at the maximum.
    pub ttl: Duration,
    /// True when the holder already held the lease (the term is unchanged).
    pub renewed: bool,
}

/// The lease as a person or a console would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The holder and its remaining time, while the lease is held.
    pub held: Option<(String, Duration)>,
    pub term: u64,
    /// How long this agent still holds back after its start.
    pub hold_back: Option<Duration>,
    pub max_ttl: Duration,
}

#[derive(Clone, Debug)]
struct Held {
    holder: String,
    expires: Instant,
}

/// The lease's rules, with time passed in (`now`) so they are tested
/// without a clock or sleeps. [`LeaseKeeper`] runs them on the real clock.
#[derive(Debug)]
pub struct Lease {
    max_ttl: Duration,
    /// No grant before this (set after a restart of an agent that granted).
    hold_back_until: Option<Instant>,
    /// The last term granted (and recorded).
    term: u64,
    held: Option<Held>,
}

impl Lease {
    /// A lease whose last recorded term is `recorded_term` (0: never
    /// granted), in an agent that started at `started`, granting at most
    /// `max_ttl` and, if it granted before, nothing for `hold_back` (at
    /// least `max_ttl`).
    pub fn new(
        recorded_term: u64,
        max_ttl: Duration,
        hold_back: Duration,
        started: Instant,
    ) -> Lease {
        let hold_back = hold_back.max(max_ttl);
        Lease {
            max_ttl,
            hold_back_until: (recorded_term > 0).then(|| started + hold_back),
            term: recorded_term,
            held: None,
        }
    }

    /// Grants the lease to `holder` for `ttl` (capped) if it may; a new
    /// term is handed to `record` first and granted only if that succeeds.
    pub fn acquire(
        &mut self,
        holder: &str,
        ttl: Duration,
        now: Instant,
        record: impl FnOnce(u64) -> Result<(), LeaseError>,
    ) -> Result<Grant, LeaseError> {
        check_holder(holder)?;
        if ttl.is_zero() {
            return Err(LeaseError::Invalid("ttlMs must be at least 1".into()));
        }
        let ttl = ttl.min(self.max_ttl);
        if let Some(until) = self.hold_back_until {
            if now < until {
                return Err(LeaseError::HoldingBack {
                    term: self.term,
                    remaining: until - now,
                });
            }
            self.hold_back_until = None;
        }
        if let Some(held) = self.live(now) {
            if held.holder != holder {
                return Err(LeaseError::Held {
                    holder: held.holder.clone(),
                    term: self.term,
                    remaining: held.expires - now,
                });
            }
            self.held = Some(Held {
                holder: holder.to_string(),
                expires: now + ttl,
            });
            return Ok(Grant {
                holder: holder.to_string(),
                term: self.term,
                ttl,
                renewed: true,
            });
        }
        let term = self.term + 1;
        record(term)?;
        self.term = term;
        self.held = Some(Held {
            holder: holder.to_string(),
            expires: now + ttl,
        });
        Ok(Grant {
            holder: holder.to_string(),
            term,
            ttl,
            renewed: false,
        })
    }

    /// Frees the lease if `holder` has it; true if it was live. Releasing
    /// a lease one does not hold is not an error (it may have lapsed and
    /// gone to another), so a client can always release on its way out.
    pub fn release(&mut self, holder: &str, now: Instant) -> Result<bool, LeaseError> {
        check_holder(holder)?;
        match &self.held {
            Some(held) if held.holder == holder => {
                let live = held.expires > now;
                self.held = None;
                Ok(live)
            }
            _ => Ok(false),
        }
    }

    pub fn status(&self, now: Instant) -> Status {
        Status {
            held: self.live(now).map(|h| (h.holder.clone(), h.expires - now)),
            term: self.term,
            hold_back: self
                .hold_back_until
                .filter(|until| now < *until)
                .map(|until| until - now),
            max_ttl: self.max_ttl,
        }
    }

    /// The holder, unless the lease is free or has expired.
    fn live(&self, now: Instant) -> Option<&Held> {
        self.held.as_ref().filter(|h| h.expires > now)
    }
}

fn check_holder(holder: &str) -> Result<(), LeaseError> {
    if holder.is_empty() || holder.len() > HOLDER_MAX || holder.chars().any(char::is_control) {
        return Err(LeaseError::Invalid(format!(
            "a lease holder is 1 to {HOLDER_MAX} bytes of printable text"
        )));
    }
    Ok(())
}

/// The term file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TermRecord {
    term: u64,
    /// The maximum TTL of the agent that granted the term: its grants may
    /// have lasted that long.
    #[serde(default)]
    max_ttl_ms: u64,
}

/// The lease on the real clock, its term recorded in
/// `OBJECTS/leases/controller.json`. Calls block while a new term is
/// fsynced, so the daemon makes them on its blocking pool.
pub struct LeaseKeeper {
    dir: PathBuf,
    /// `Err` when the term record could not be read: nothing is granted.
    lease: Result<Mutex<Lease>, String>,
    max_ttl: Duration,
}

impl LeaseKeeper {
    /// Reads the recorded term from under `objects_dir`; `started` is when
    /// this agent started (the hold-back counts from it).
    pub fn open(objects_dir: &Path, max_ttl: Duration, started: Instant) -> LeaseKeeper {
        let dir = objects_dir.join(LEASES_DIR);
        files::remove_temporaries(&dir);
        let path = dir.join(format!("{CONTROLLER}.json"));
        let lease = match read_term(&path) {
            Ok(record) => {
                let hold_back = Duration::from_millis(record.max_ttl_ms).max(max_ttl);
                let lease = Lease::new(record.term, max_ttl, hold_back, started);
                if record.term > 0 {
                    tracing::info!(
                        term = record.term,
                        "granting no lease for {} ms (the agent restarted)",
                        hold_back.as_millis()
                    );
                }
                Ok(Mutex::new(lease))
            }
            Err(why) => {
                tracing::error!("the lease grants nothing: {why}");
                Err(why)
            }
        };
        LeaseKeeper {
            dir,
            lease,
            max_ttl,
        }
    }

    pub fn acquire(&self, holder: &str, ttl: Duration) -> Result<Grant, LeaseError> {
        let mut lease = self.lock()?;
        // Read after the lock: `now` never runs backwards between calls.
        let now = Instant::now();
        lease.acquire(holder, ttl, now, |term| self.record(term))
    }

    pub fn release(&self, holder: &str) -> Result<bool, LeaseError> {
        let mut lease = self.lock()?;
        lease.release(holder, Instant::now())
    }

    pub fn status(&self) -> Result<Status, LeaseError> {
        Ok(self.lock()?.status(Instant::now()))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Lease>, LeaseError> {
        match &self.lease {
            Ok(lease) => Ok(lease.lock().unwrap_or_else(PoisonError::into_inner)),
            Err(why) => Err(LeaseError::Unavailable(why.clone())),
        }
    }

    fn record(&self, term: u64) -> Result<(), LeaseError> {
        let record = TermRecord {
            term,
            max_ttl_ms: u64::try_from(self.max_ttl.as_millis()).unwrap_or(u64::MAX),
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other);
        let file_name = format!("{CONTROLLER}.json");
        bytes
            .and_then(|bytes| {
                files::create_dir_durable(&self.dir)?;
                files::write_atomic(&self.dir, &file_name, &bytes)
            })
            .map_err(|source| LeaseError::Record {
                path: self.dir.join(&file_name),
                source,
            })
    }
}

/// The recorded term; term 0 when none was ever recorded.
fn read_term(path: &Path) -> Result<TermRecord, String> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<TermRecord>(&bytes)
            .map_err(|e| format!("{} is unreadable ({e})", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TermRecord {
            term: 0,
            max_ttl_ms: 0,
        }),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
