use std::cell::RefCell;
use std::fs;
use std::time::{Duration, Instant};

use crate::agent::objects::lease::{
    DEFAULT_MAX_TTL, Grant, Lease, LeaseError, LeaseKeeper, Status,
};

const MAX: Duration = DEFAULT_MAX_TTL;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A lease on a clock the test moves: `at(ms)` is that long after start.
struct Clock {
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    fn at(&self, millis: u64) -> Instant {
        self.start + ms(millis)
    }
}

/// Records every term the lease asks to record.
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl Recorder {
    fn record(&self) -> impl FnOnce(u64) -> Result<(), LeaseError> + '_ {
        |term| {
            self.0.borrow_mut().push(term);
            Ok(())
        }
    }

    fn terms(&self) -> Vec<u64> {
        self.0.borrow().clone()
    }
}

fn acquire(
    lease: &mut Lease,
    recorder: &Recorder,
    holder: &str,
    ttl_ms: u64,
    now: Instant,
) -> Result<Grant, LeaseError> {
    lease.acquire(holder, ms(ttl_ms), now, recorder.record())
}

#[test]
fn a_free_lease_is_granted_and_renewed_by_its_holder_in_the_same_term() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(0, MAX, MAX, clock.at(0));
    let grant = acquire(&mut lease, &rec, "a", 5000, clock.at(0)).unwrap();
    assert_eq!(
        grant,
        Grant {
            holder: "a".into(),
            term: 1,
            ttl: ms(5000),
            renewed: false
        }
    );
    assert_eq!(rec.terms(), [1], "a new term is recorded before the grant");
    let renewal = acquire(&mut lease, &rec, "a", 5000, clock.at(4000)).unwrap();
    assert!(renewal.renewed);
    assert_eq!(renewal.term, 1);
    assert_eq!(rec.terms(), [1], "a renewal records nothing");
    // The renewal moved the expiry: at 8 s (past the first 5 s) it is still held.
    let status = lease.status(clock.at(8000));
    assert_eq!(status.held, Some(("a".to_string(), ms(1000))));
}

#[test]
fn another_holder_is_refused_with_the_holder_and_its_remaining_time() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(0, MAX, MAX, clock.at(0));
    acquire(&mut lease, &rec, "a", 3000, clock.at(0)).unwrap();
    match acquire(&mut lease, &rec, "b", 3000, clock.at(1000)) {
        Err(LeaseError::Held {
            holder,
            term,
            remaining,
        }) => {
            assert_eq!((holder.as_str(), term, remaining), ("a", 1, ms(2000)));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let err = acquire(&mut lease, &rec, "b", 3000, clock.at(2999))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("held by \"a\" (term 1) for 1 ms more"),
        "{err}"
    );
}

#[test]
fn an_expired_lease_goes_to_the_next_holder_in_a_new_term() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(0, MAX, MAX, clock.at(0));
    acquire(&mut lease, &rec, "a", 3000, clock.at(0)).unwrap();
    // Expired exactly at its expiry.
    let grant = acquire(&mut lease, &rec, "b", 3000, clock.at(3000)).unwrap();
    assert_eq!((grant.term, grant.renewed), (2, false));
    // The old holder's "renewal" is now a refusal.
    assert!(matches!(
        acquire(&mut lease, &rec, "a", 3000, clock.at(3500)),
        Err(LeaseError::Held { .. })
    ));
    // The same holder again after a lapse is a new tenure, not a renewal.
    let again = acquire(&mut lease, &rec, "b", 3000, clock.at(7000)).unwrap();
    assert_eq!((again.term, again.renewed), (3, false));
    assert_eq!(rec.terms(), [1, 2, 3]);
}

#[test]
fn release_frees_the_lease_for_its_holder_only() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(0, MAX, MAX, clock.at(0));
    acquire(&mut lease, &rec, "a", 10_000, clock.at(0)).unwrap();
    assert!(
        !lease.release("b", clock.at(1)).unwrap(),
        "not b's to release"
    );
    assert!(lease.status(clock.at(1)).held.is_some());
    assert!(lease.release("a", clock.at(2)).unwrap());
    assert!(!lease.release("a", clock.at(3)).unwrap(), "idempotent");
    assert_eq!(lease.status(clock.at(3)).held, None);
    let grant = acquire(&mut lease, &rec, "b", 10_000, clock.at(4)).unwrap();
    assert_eq!(grant.term, 2);
    // Releasing a lapsed lease says it was not live.
    assert!(!lease.release("b", clock.at(20_000)).unwrap());
}

#[test]
fn the_ttl_is_capped_and_bad_requests_refused() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(0, ms(1000), ms(1000), clock.at(0));
    let grant = acquire(&mut lease, &rec, "a", 60_000, clock.at(0)).unwrap();
    assert_eq!(grant.ttl, ms(1000));
    assert!(
        lease.status(clock.at(1000)).held.is_none(),
        "the cap applied"
    );
    for (holder, ttl) in [
        ("", 1000),
        ("a", 0),
        ("line\nbreak", 1000),
        (&"x".repeat(257)[..], 1000),
    ] {
        let r = acquire(&mut lease, &rec, holder, ttl, clock.at(2000));
        assert!(
            matches!(r, Err(LeaseError::Invalid(_))),
            "{holder:?} {ttl}: {r:?}"
        );
    }
    assert_eq!(rec.terms(), [1]);
}

#[test]
fn a_restarted_agent_that_granted_holds_back_for_one_maximum_ttl() {
    let clock = Clock::new();
    let rec = Recorder::default();
    // Term 5 on record: this agent granted before it restarted at 0.
    let mut lease = Lease::new(5, MAX, MAX, clock.at(0));
    for holder in ["old-holder", "new-holder"] {
        match acquire(&mut lease, &rec, holder, 1000, clock.at(1000)) {
            Err(LeaseError::HoldingBack { term, remaining }) => {
                assert_eq!((term, remaining), (5, MAX - ms(1000)));
            }
            other => panic!("expected the hold-back, got {other:?}"),
        }
    }
    assert_eq!(
        lease.status(clock.at(1000)),
        Status {
            held: None,
            term: 5,
            hold_back: Some(MAX - ms(1000)),
            max_ttl: MAX,
        }
    );
    let late = MAX.as_millis() as u64 - 1;
    assert!(matches!(
        acquire(&mut lease, &rec, "a", 1000, clock.at(late)),
        Err(LeaseError::HoldingBack { .. })
    ));
    let grant = acquire(&mut lease, &rec, "a", 1000, clock.at(late + 1)).unwrap();
    assert_eq!(grant.term, 6, "terms go on from the record");
    assert_eq!(lease.status(clock.at(late + 1)).hold_back, None);

    // An agent that never granted has nothing to hold back for.
    let mut fresh = Lease::new(0, MAX, MAX, clock.at(0));
    assert_eq!(
        acquire(&mut fresh, &rec, "a", 1000, clock.at(0))
            .unwrap()
            .term,
        1
    );
}

#[test]
fn a_term_that_cannot_be_recorded_is_not_granted() {
    let clock = Clock::new();
    let mut lease = Lease::new(0, MAX, MAX, clock.at(0));
    let failed = lease.acquire("a", ms(1000), clock.at(0), |_| {
        Err(LeaseError::Invalid("disk full".into()))
    });
    assert!(failed.is_err());
    assert_eq!(lease.status(clock.at(0)).held, None);
    let rec = Recorder::default();
    let grant = acquire(&mut lease, &rec, "b", 1000, clock.at(1)).unwrap();
    assert_eq!(grant.term, 1, "the failed term was never granted");
}

#[test]
fn the_keeper_records_terms_and_holds_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let max = ms(60_000);
    // A fresh agent grants at once.
    let keeper = LeaseKeeper::open(&objects, max, Instant::now());
    assert_eq!(keeper.acquire("a", ms(1000)).unwrap().term, 1);
    assert!(keeper.release("a").unwrap());
    assert_eq!(keeper.acquire("b", ms(1000)).unwrap().term, 2);
    let record = fs::read_to_string(objects.join("leases/controller.json")).unwrap();
    assert_eq!(record, r#"{"term":2,"maxTtlMs":60000}"#);
    drop(keeper);

    // Restarted just now: nothing for a whole maximum TTL, renewals included.
    let keeper = LeaseKeeper::open(&objects, max, Instant::now());
    assert!(matches!(
        keeper.acquire("b", ms(1000)),
        Err(LeaseError::HoldingBack { term: 2, .. })
    ));
    assert!(keeper.status().unwrap().hold_back.is_some());
    drop(keeper);

    // Restarted a maximum TTL ago: granting, and the term goes on.
    let long_ago = Instant::now().checked_sub(max).expect("an old instant");
    let keeper = LeaseKeeper::open(&objects, max, long_ago);
    assert_eq!(keeper.acquire("c", ms(1000)).unwrap().term, 3);
    drop(keeper);

    // Restarted with a shorter maximum: it still waits out the longer one
    // its predecessor may have granted.
    let short = ms(1000);
    let two_seconds_ago = Instant::now()
        .checked_sub(ms(2000))
        .expect("an old instant");
    let keeper = LeaseKeeper::open(&objects, short, two_seconds_ago);
    match keeper.acquire("d", ms(1000)) {
        Err(LeaseError::HoldingBack { remaining, .. }) => {
            assert!(remaining > max - ms(3000), "{remaining:?}")
        }
        other => panic!("expected the hold-back, got {other:?}"),
    }
}

#[test]
fn the_hold_back_is_never_shorter_than_the_maximum_ttl() {
    let clock = Clock::new();
    let rec = Recorder::default();
    let mut lease = Lease::new(1, ms(5000), ms(10), clock.at(0));
    assert!(matches!(
        acquire(&mut lease, &rec, "a", 1000, clock.at(4999)),
        Err(LeaseError::HoldingBack { .. })
    ));
    assert!(acquire(&mut lease, &rec, "a", 1000, clock.at(5000)).is_ok());
}

#[test]
fn an_unreadable_term_record_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    fs::create_dir_all(objects.join("leases")).unwrap();
    fs::write(objects.join("leases/controller.json"), b"{\"ter").unwrap();
    let long_ago = Instant::now().checked_sub(MAX).expect("an old instant");
    let keeper = LeaseKeeper::open(&objects, MAX, long_ago);
    let err = keeper.acquire("a", ms(1000)).unwrap_err();
    assert!(matches!(err, LeaseError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("controller.json"), "{err}");
    assert!(keeper.status().is_err());
}
