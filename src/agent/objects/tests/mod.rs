//! Tests of the object store (generation rules, tombstones, persistence,
//! name checks, torn writes, concurrent writers) and of the lease (grants,
//! renewals, refusals, expiry, release, terms, the restart hold-back), on a
//! clock the tests move by hand.

mod lease;
mod store;
