//! Ordered iteration over a snapshot of the key directory. The snapshot is a clone of
//! the persistent map (constant time), so writers are never blocked and nothing written
//! after the iterator was made changes what it yields. Entries are fetched in small
//! batches from each end, so the iterator is double-ended without holding a borrow.

use std::collections::VecDeque;
use std::ops::Bound;

use super::{Key, Loc, Map, Value, value_of};

/// Entries fetched from the snapshot at a time, at each end.
const BATCH: usize = 64;

/// Iterator over `(key, value)` in key order, over a consistent snapshot; from
/// [`LogStore::iter`](super::LogStore::iter), [`range`](super::LogStore::range) and
/// [`prefix`](super::LogStore::prefix). Expired keys are skipped.
pub struct Iter {
    snapshot: Map,
    /// Everything not yet fetched lies between these bounds.
    front: Bound<Key>,
    back: Bound<Key>,
    /// Fetched from the front, in ascending order.
    ahead: VecDeque<(Key, Loc)>,
    /// Fetched from the back, in descending order.
    behind: VecDeque<(Key, Loc)>,
    now_ms: u64,
}

impl Iter {
    pub(super) fn new(snapshot: Map, front: Bound<Key>, back: Bound<Key>, now_ms: u64) -> Iter {
        Iter {
            snapshot,
            front,
            back,
            ahead: VecDeque::new(),
            behind: VecDeque::new(),
            now_ms,
        }
    }

    /// Whether the unfetched range is empty (a range whose start is past its end would
    /// make the map panic).
    fn exhausted(&self) -> bool {
        match (&self.front, &self.back) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a >= b
            }
            _ => false,
        }
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_slice(&self.front), as_slice(&self.back))
    }

    fn fetch_front(&mut self) {
        if self.exhausted() {
            return;
        }
        let bounds = self.bounds();
        let batch: Vec<_> = self
            .snapshot
            .range::<_, [u8]>(bounds)
            .take(BATCH)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some((last, _)) = batch.last() {
            self.front = Bound::Excluded(last.clone());
        }
        self.ahead.extend(batch);
    }

    fn fetch_back(&mut self) {
        if self.exhausted() {
            return;
        }
        let bounds = self.bounds();
        let batch: Vec<_> = self
            .snapshot
            .range::<_, [u8]>(bounds)
            .rev()
            .take(BATCH)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some((last, _)) = batch.last() {
            self.back = Bound::Excluded(last.clone());
        }
        self.behind.extend(batch);
    }

    fn yield_entry(&self, (key, loc): (Key, Loc)) -> Option<(Key, Value)> {
        if loc.expired(|| self.now_ms) {
            return None;
        }
        // Every location in the key directory was checked against its segment when it
        // was recorded, and its lane is mapped since then.
        let value = value_of(&loc).expect("a recorded value's span is readable");
        Some((key, value))
    }
}

fn as_slice(b: &Bound<Key>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(&**k),
        Bound::Excluded(k) => Bound::Excluded(&**k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for Iter {
    type Item = (Key, Value);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ahead.is_empty() {
                self.fetch_front();
            }
            // Nothing left between the bounds: what remains was fetched from the back.
            let entry = match self.ahead.pop_front() {
                Some(e) => e,
                None => self.behind.pop_back()?,
            };
            if let Some(item) = self.yield_entry(entry) {
                return Some(item);
            }
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if self.behind.is_empty() {
                self.fetch_back();
            }
            let entry = match self.behind.pop_front() {
                Some(e) => e,
                None => self.ahead.pop_back()?,
            };
            if let Some(item) = self.yield_entry(entry) {
                return Some(item);
            }
        }
    }
}
