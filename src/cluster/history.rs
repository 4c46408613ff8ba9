//! Bounded histories of what an agent numbers with a `seq`: its metrics samples
//! (ten minutes, for sparklines) and its events (the last thousand).
//!
//! Two jobs live here:
//!
//! * **Deduplication across reconnects and agent restarts.** After a reconnect
//!   the session may be sent samples or events it already has, and an agent
//!   that restarted numbers from 1 again. [`SeqLog::offer`] keeps an item when
//!   its `seq` is above the last kept one, or, when it is not, when its time is
//!   later than the last kept one's: a lower `seq` with a later time can only
//!   come from a new agent process, a lower `seq` with an earlier (or equal) time
//!   is a replay. Times are the agent's own, compared only with each other, so
//!   clock skew between the operator's machine and the host does not matter.
//! * **Cheap snapshots.** A snapshot of 50 nodes must not copy 50 × 600
//!   samples. The log stores its items in sealed chunks of [`CHUNK`] behind
//!   `Arc`s plus a short open tail; a [`Series`] (what readers get) shares the
//!   chunks and copies at most the tail, so taking one is O(len / CHUNK + CHUNK)
//!   whatever a reader still holds, and a reader's `Series` never changes.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::agent::node::MetricsSample;
use crate::agent::protocol::messages::Event;

/// Items per sealed chunk: a new series copies at most this many items.
pub const CHUNK: usize = 32;

/// Something an agent numbers: `seq` increases by one per item for the life of
/// the agent process, `time` is the agent's clock when it was made.
pub trait Sequenced {
    fn seq(&self) -> u64;
    fn time(&self) -> DateTime<Utc>;
}

impl Sequenced for MetricsSample {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn time(&self) -> DateTime<Utc> {
        self.time
    }
}

impl Sequenced for Event {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn time(&self) -> DateTime<Utc> {
        self.time
    }
}

/// What [`SeqLog::offer`] did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    Appended,
    /// Kept, and it shows that the agent restarted since the last kept item.
    AppendedAfterRestart,
    /// Already held (or older than what is held): dropped.
    Duplicate,
}

impl Offered {
    pub fn appended(self) -> bool {
        self != Offered::Duplicate
    }
}

/// The writer's side: a bounded log that deduplicates by `seq`.
#[derive(Debug)]
pub struct SeqLog<T> {
    capacity: usize,
    /// Full chunks, oldest first; each exactly [`CHUNK`] long.
    sealed: VecDeque<Arc<[T]>>,
    /// Items of `sealed[0]` already dropped off the front.
    head_skip: usize,
    tail: Vec<T>,
    len: usize,
    /// `seq` and time of the last kept item.
    last: Option<(u64, DateTime<Utc>)>,
    restarts: u64,
    /// What the last [`SeqLog::series`] built, reused until the log changes.
    sealed_view: Option<Arc<[Arc<[T]>]>>,
    tail_view: Option<Arc<[T]>>,
}

impl<T: Sequenced + Clone> SeqLog<T> {
    /// A log keeping the last `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            sealed: VecDeque::new(),
            head_skip: 0,
            tail: Vec::with_capacity(CHUNK),
            len: 0,
            last: None,
            restarts: 0,
            sealed_view: None,
            tail_view: None,
        }
    }

    /// Keeps `item` unless it is one already seen (see the module doc).
    pub fn offer(&mut self, item: T) -> Offered {
        let (seq, time) = (item.seq(), item.time());
        let offered = match self.last {
            None => Offered::Appended,
            Some((last_seq, _)) if seq > last_seq => Offered::Appended,
            Some((_, last_time)) if time > last_time => Offered::AppendedAfterRestart,
            Some(_) => return Offered::Duplicate,
        };
        if offered == Offered::AppendedAfterRestart {
            self.restarts += 1;
        }
        self.last = Some((seq, time));
        self.push(item);
        offered
    }

    fn push(&mut self, item: T) {
        self.tail.push(item);
        self.tail_view = None;
        self.len += 1;
        if self.tail.len() == CHUNK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(CHUNK));
            self.sealed.push_back(Arc::from(full));
            self.sealed_view = None;
        }
        while self.len > self.capacity {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if self.sealed.is_empty() {
            // Only with a capacity under one chunk; O(CHUNK) at worst.
            self.tail.remove(0);
            self.tail_view = None;
        } else {
            self.head_skip += 1;
            if self.head_skip == CHUNK {
                self.sealed.pop_front();
                self.head_skip = 0;
                self.sealed_view = None;
            }
        }
        self.len -= 1;
    }

    /// The `seq` of the last kept item.
    pub fn last_seq(&self) -> Option<u64> {
        self.last.map(|(seq, _)| seq)
    }

    /// Whether `item` is the last one kept (same `seq` and time): a reply that
    /// holds it comes from the agent process the log has been following.
    pub fn is_last(&self, item: &T) -> bool {
        self.last == Some((item.seq(), item.time()))
    }

    /// The newest item kept.
    pub fn last(&self) -> Option<&T> {
        self.tail
            .last()
            .or_else(|| self.sealed.back().and_then(|chunk| chunk.last()))
    }

    /// How many times items showed the agent had restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An immutable view of the log as it is now. Shares the sealed chunks;
    /// copies the open tail once per change.
    pub fn series(&mut self) -> Series<T> {
        let sealed = self
            .sealed_view
            .get_or_insert_with(|| self.sealed.iter().cloned().collect())
            .clone();
        let tail = self
            .tail_view
            .get_or_insert_with(|| Arc::from(self.tail.as_slice()))
            .clone();
        Series {
            sealed,
            head_skip: self.head_skip,
            tail,
            len: self.len,
        }
    }
}

/// A reader's view of a log: oldest first, immutable, cheap to clone (three
/// `Arc`s and two numbers).
#[derive(Debug)]
pub struct Series<T> {
    sealed: Arc<[Arc<[T]>]>,
    head_skip: usize,
    tail: Arc<[T]>,
    len: usize,
}

// Not derived: a derive would ask for `T: Clone`, which sharing does not need.
impl<T> Clone for Series<T> {
    fn clone(&self) -> Self {
        Self {
            sealed: Arc::clone(&self.sealed),
            head_skip: self.head_skip,
            tail: Arc::clone(&self.tail),
            len: self.len,
        }
    }
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Self {
            sealed: Arc::from(Vec::new()),
            head_skip: 0,
            tail: Arc::from(Vec::new()),
            len: 0,
        }
    }
}

impl<T> Series<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th item, oldest first.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        // Every sealed chunk holds exactly CHUNK items, so the index is arithmetic.
        let j = self.head_skip + i;
        let in_sealed = self.sealed.len() * CHUNK;
        if j < in_sealed {
            self.sealed.get(j / CHUNK)?.get(j % CHUNK)
        } else {
            self.tail.get(j - in_sealed)
        }
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&T> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Every item, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        let skip = self.head_skip;
        self.sealed
            .iter()
            .enumerate()
            .flat_map(move |(k, chunk)| {
                let from = if k == 0 { skip } else { 0 };
                chunk.get(from..).unwrap_or(&[]).iter()
            })
            .chain(self.tail.iter())
    }

    /// Whether the two share their sealed chunks (all but the open tail).
    pub fn shares_chunks_with(&self, other: &Series<T>) -> bool {
        !self.sealed.is_empty()
            && self
                .sealed
                .iter()
                .all(|mine| other.sealed.iter().any(|theirs| Arc::ptr_eq(mine, theirs)))
    }

    /// The last `n` items (fewer if the series is shorter), oldest first.
    pub fn last_n(&self, n: usize) -> impl Iterator<Item = &T> + '_ {
        (self.len.saturating_sub(n)..self.len).filter_map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Item(u64, i64);

    impl Sequenced for Item {
        fn seq(&self) -> u64 {
            self.0
        }
        fn time(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_800_000_000 + self.1, 0).unwrap_or_default()
        }
    }

    fn seqs(s: &Series<Item>) -> Vec<u64> {
        s.iter().map(|i| i.0).collect()
    }

    #[test]
    fn bounded_at_capacity_and_indexable() {
        let mut log = SeqLog::new(600);
        for i in 1..=1000u64 {
            assert!(log.offer(Item(i, i as i64)).appended());
        }
        let s = log.series();
        assert_eq!((s.len(), log.len()), (600, 600));
        assert_eq!(seqs(&s), (401..=1000).collect::<Vec<_>>());
        assert_eq!(s.first().map(|i| i.0), Some(401));
        assert_eq!(s.last().map(|i| i.0), Some(1000));
        for i in 0..600 {
            assert_eq!(s.get(i).map(|x| x.0), Some(401 + i as u64));
        }
        assert!(s.get(600).is_none());
        assert_eq!(
            s.last_n(3).map(|i| i.0).collect::<Vec<_>>(),
            vec![998, 999, 1000]
        );
        assert_eq!(s.last_n(10_000).count(), 600);
        assert_eq!(s.iter().next_back().map(|i| i.0), Some(1000));
        // The chunks still held are the ones that cover the window, no more.
        assert!(log.sealed.len() <= 600 / CHUNK + 1);
    }

    #[test]
    fn tiny_capacities_work_without_a_sealed_chunk() {
        let mut log = SeqLog::new(3);
        for i in 1..=10 {
            log.offer(Item(i, i as i64));
        }
        assert_eq!(seqs(&log.series()), vec![8, 9, 10]);
        assert_eq!(seqs(&SeqLog::<Item>::new(0).series()), Vec::<u64>::new());
    }

    #[test]
    fn replays_are_dropped_and_a_restart_is_recognised() {
        let mut log = SeqLog::new(600);
        for i in 1..=50 {
            log.offer(Item(i, i as i64));
        }
        // A reconnect to the same agent: its whole ring again, plus two new.
        let replay: Vec<_> = (1..=52).map(|i| log.offer(Item(i, i as i64))).collect();
        assert!(replay[..50].iter().all(|o| *o == Offered::Duplicate));
        assert_eq!(replay[50..], [Offered::Appended, Offered::Appended]);
        // The agent restarted: seq from 1 again, at later times.
        assert_eq!(log.offer(Item(1, 100)), Offered::AppendedAfterRestart);
        assert_eq!(log.offer(Item(2, 101)), Offered::Appended);
        // ...and a reconnect to the new agent replays its ring.
        assert_eq!(log.offer(Item(1, 100)), Offered::Duplicate);
        assert_eq!(log.offer(Item(2, 101)), Offered::Duplicate);
        assert_eq!(log.offer(Item(3, 102)), Offered::Appended);
        assert_eq!(log.restarts(), 1);
        assert_eq!(log.last_seq(), Some(3));
        let s = log.series();
        assert_eq!(s.len(), 55);
        assert_eq!(
            s.last_n(4).map(|i| (i.0, i.1)).collect::<Vec<_>>(),
            vec![(52, 52), (1, 100), (2, 101), (3, 102)]
        );
    }

    #[test]
    fn a_series_is_unaffected_by_later_writes_and_shares_chunks() {
        let mut log = SeqLog::new(100);
        for i in 1..=70 {
            log.offer(Item(i, i as i64));
        }
        let before = log.series();
        let again = log.series();
        assert!(Arc::ptr_eq(&before.sealed, &again.sealed), "cached view");
        assert!(Arc::ptr_eq(&before.tail, &again.tail), "cached tail");
        for i in 71..=500 {
            log.offer(Item(i, i as i64));
        }
        assert_eq!(seqs(&before), (1..=70).collect::<Vec<_>>());
        let after = log.series();
        assert_eq!(seqs(&after), (401..=500).collect::<Vec<_>>());
        // A write into the tail keeps the sealed chunks shared.
        log.offer(Item(501, 501));
        let next = log.series();
        assert!(Arc::ptr_eq(&after.sealed[0], &next.sealed[0]));
        assert_eq!(next.last().map(|i| i.0), Some(501));
    }
}
