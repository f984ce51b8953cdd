//! The key directory: where each live key's value is. Point operations go to a hash
//! map; ordered reads go to a sorted run (an immutable, shared `Vec`) overlaid with a
//! small ordered delta of the changes since the run was built (an `imbl::OrdMap`, whose
//! clone is O(1)). A snapshot is the pair (run, delta), taken in constant time, so an
//! iterator sees one moment of the store without blocking writers. When the delta grows
//! past a quarter of the run, run and delta are merged into a new run (linear time, so
//! each change is copied a bounded number of times).
//!
//! Invariant: for every key, the delta's entry if it has one (`None` = deleted), else the
//! run's entry, else absence, equals the hash map's entry.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use super::Loc;
use super::key::Key;
#[cfg(test)]
use super::segment::Segment;

/// The delta never triggers a rebuild below this many entries.
const DELTA_MIN: usize = 8192;
/// Entries fetched from the delta at a time by a cursor, at each end.
const BATCH: usize = 64;

type Delta = imbl::OrdMap<Key, Option<Loc>>;
type Run = Arc<Vec<(Key, Loc)>>;

/// The key directory and the counts derived from it.
#[derive(Default)]
pub(super) struct KeyDir {
    /// Hashed with foldhash, seeded at random per process (hash flooding needs the seed).
    map: HashMap<Key, Loc, foldhash::fast::RandomState>,
    run: Run,
    delta: Delta,
    live_bytes: u64,
    /// Entries with an expiry, so `len` knows whether it must look.
    expiring: u64,
}

/// The ordered view at one moment.
#[derive(Clone)]
pub(super) struct Snapshot {
    run: Run,
    delta: Delta,
}

impl KeyDir {
    pub(super) fn get(&self, key: &[u8]) -> Option<&Loc> {
        self.map.get(key)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub(super) fn expiring(&self) -> u64 {
        self.expiring
    }

    pub(super) fn locs(&self) -> impl Iterator<Item = &Loc> {
        self.map.values()
    }

    /// Puts during replay: the hash map only. The ordered view is built once at the end
    /// by [`finish_replay`](Self::finish_replay).
    pub(super) fn replay_put(&mut self, key: &[u8], loc: Loc) {
        self.live_bytes += u64::from(loc.op_bytes);
        self.expiring += u64::from(loc.expires_ms != 0);
        if let Some(old) = self.map.insert(Key::new(key), loc) {
            self.forget(&old);
        }
    }

    /// Deletes during replay: the hash map only.
    pub(super) fn replay_delete(&mut self, key: &[u8]) {
        if let Some(old) = self.map.remove(key) {
            self.forget(&old);
        }
    }

    /// Builds the ordered view from the hash map after a replay: one sort.
    pub(super) fn finish_replay(&mut self) {
        let mut run: Vec<(Key, Loc)> = self
            .map
            .iter()
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        run.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.install(run);
    }

    pub(super) fn put(&mut self, key: &[u8], loc: Loc) {
        self.live_bytes += u64::from(loc.op_bytes);
        self.expiring += u64::from(loc.expires_ms != 0);
        let key = Key::new(key);
        if let Some(old) = self.map.insert(key.clone(), loc.clone()) {
            self.forget(&old);
        }
        self.delta.insert(key, Some(loc));
    }

    pub(super) fn delete(&mut self, key: &[u8]) {
        if let Some((key, old)) = self.map.remove_entry(key) {
            self.forget(&old);
            self.delta.insert(key, None);
        }
    }

    pub(super) fn clear(&mut self) {
        *self = KeyDir::default();
    }

    fn forget(&mut self, old: &Loc) {
        self.live_bytes -= u64::from(old.op_bytes);
        self.expiring -= u64::from(old.expires_ms != 0);
    }

    /// Replaces the location of `key` with `new` if it is still `was` (compaction moved
    /// the value and nobody wrote the key since). The ordered view is brought up to date
    /// by [`rebuild_from_map`](Self::rebuild_from_map) afterwards.
    pub(super) fn repoint(&mut self, key: &[u8], was: &Loc, new: Loc) {
        if let Some(cur) = self.map.get_mut(key)
            && Arc::ptr_eq(&cur.seg, &was.seg)
            && cur.value_offset == was.value_offset
        {
            *cur = new;
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            run: Arc::clone(&self.run),
            delta: self.delta.clone(),
        }
    }

    /// Whether the delta is big enough that run and delta should be merged.
    pub(super) fn needs_rebuild(&self) -> bool {
        self.delta.len() > DELTA_MIN.max(self.run.len() / 4)
    }

    /// Installs `run`, built by [`Snapshot::merged`] from a snapshot of this directory
    /// with no change since (the caller holds the writer lock throughout).
    pub(super) fn install(&mut self, run: Vec<(Key, Loc)>) {
        debug_assert_eq!(run.len(), self.map.len());
        self.run = Arc::new(run);
        self.delta = Delta::new();
    }

    /// Merges run and delta in place.
    #[cfg(test)]
    pub(super) fn rebuild(&mut self) {
        let run = self.snapshot().merged();
        self.install(run);
    }

    /// Rebuilds the ordered view with every location taken from the hash map (after
    /// [`repoint`](Self::repoint)).
    pub(super) fn rebuild_from_map(&mut self) {
        let run: Vec<_> = self
            .snapshot()
            .cursor(Bound::Unbounded, Bound::Unbounded)
            .map(|(key, _)| {
                let loc = self.map.get(&key).expect("the ordered view holds map keys");
                (key, loc.clone())
            })
            .collect();
        self.install(run);
    }
}

impl Snapshot {
    /// Every entry, in key order, as one run: a two-way merge of run and delta.
    pub(super) fn merged(&self) -> Vec<(Key, Loc)> {
        let mut out = Vec::with_capacity(self.run.len() + self.delta.len());
        let mut run = self.run.iter().peekable();
        for (key, change) in &self.delta {
            while let Some(entry) = run.next_if(|(k, _)| k < key) {
                out.push(entry.clone());
            }
            run.next_if(|(k, _)| k == key);
            if let Some(loc) = change {
                out.push((key.clone(), loc.clone()));
            }
        }
        out.extend(run.cloned());
        out
    }

    /// The entries between two bounds, in key order, double-ended.
    pub(super) fn cursor(&self, start: Bound<Key>, end: Bound<Key>) -> Cursor {
        let lo = match &start {
            Bound::Included(k) => self.run.partition_point(|(x, _)| x < k),
            Bound::Excluded(k) => self.run.partition_point(|(x, _)| x <= k),
            Bound::Unbounded => 0,
        };
        let hi = match &end {
            Bound::Included(k) => self.run.partition_point(|(x, _)| x <= k),
            Bound::Excluded(k) => self.run.partition_point(|(x, _)| x < k),
            Bound::Unbounded => self.run.len(),
        };
        Cursor {
            run: Arc::clone(&self.run),
            lo,
            hi: hi.max(lo),
            delta: self.delta.clone(),
            front: start,
            back: end,
            ahead: VecDeque::new(),
            behind: VecDeque::new(),
            drained: self.delta.is_empty(),
        }
    }
}

/// A double-ended walk over a snapshot between two bounds: the run's entries merged with
/// the delta's, the delta winning on equal keys and its deletions hiding run entries.
pub(super) struct Cursor {
    run: Run,
    /// The run entries not yet visited are `run[lo..hi]`.
    lo: usize,
    hi: usize,
    delta: Delta,
    /// The delta entries not yet fetched lie between these bounds.
    front: Bound<Key>,
    back: Bound<Key>,
    /// Fetched from the delta's front, ascending.
    ahead: VecDeque<(Key, Option<Loc>)>,
    /// Fetched from the delta's back, descending.
    behind: VecDeque<(Key, Option<Loc>)>,
    /// Set once a fetch found the unfetched delta range empty: the snapshot does not
    /// change, so there is nothing more to fetch from either end.
    drained: bool,
}

impl Cursor {
    /// Whether the unfetched delta range is empty (a range whose start is past its end
    /// would make the map panic).
    fn exhausted(&self) -> bool {
        match (&self.front, &self.back) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a >= b
            }
            _ => false,
        }
    }

    fn fetch(&mut self, from_back: bool) {
        if self.drained || self.exhausted() {
            self.drained = true;
            return;
        }
        let range = self
            .delta
            .range::<_, Key>((self.front.as_ref(), self.back.as_ref()));
        let batch: Vec<_> = if from_back {
            range.rev().take(BATCH).map(clone_entry).collect()
        } else {
            range.take(BATCH).map(clone_entry).collect()
        };
        if batch.len() < BATCH {
            self.drained = true;
        }
        if let Some((last, _)) = batch.last() {
            let bound = Bound::Excluded(last.clone());
            if from_back {
                self.back = bound;
            } else {
                self.front = bound;
            }
        }
        if from_back {
            self.behind.extend(batch);
        } else {
            self.ahead.extend(batch);
        }
    }

    /// The next delta key from the front, fetching if needed.
    fn delta_front(&mut self) -> Option<&Key> {
        if self.ahead.is_empty() {
            self.fetch(false);
        }
        self.ahead.front().or(self.behind.back()).map(|(k, _)| k)
    }

    fn pop_delta_front(&mut self) -> Option<(Key, Option<Loc>)> {
        self.ahead.pop_front().or_else(|| self.behind.pop_back())
    }

    fn delta_back(&mut self) -> Option<&Key> {
        if self.behind.is_empty() {
            self.fetch(true);
        }
        self.behind.front().or(self.ahead.back()).map(|(k, _)| k)
    }

    fn pop_delta_back(&mut self) -> Option<(Key, Option<Loc>)> {
        self.behind.pop_front().or_else(|| self.ahead.pop_back())
    }
}

fn clone_entry((k, v): (&Key, &Option<Loc>)) -> (Key, Option<Loc>) {
    (k.clone(), v.clone())
}

/// Which source the next entry comes from.
enum Next {
    Run,
    Delta,
    /// The same key in both: the delta's entry wins, the run's is skipped.
    Both,
}

impl Iterator for Cursor {
    type Item = (Key, Loc);

    fn next(&mut self) -> Option<(Key, Loc)> {
        loop {
            let delta = self.delta_front().cloned();
            let run = (self.lo < self.hi).then(|| &self.run[self.lo].0);
            let next = match (run, delta) {
                (None, None) => return None,
                (Some(_), None) => Next::Run,
                (None, Some(_)) => Next::Delta,
                (Some(r), Some(d)) => match d.cmp(r) {
                    std::cmp::Ordering::Less => Next::Delta,
                    std::cmp::Ordering::Equal => Next::Both,
                    std::cmp::Ordering::Greater => Next::Run,
                },
            };
            if let Next::Run = next {
                self.lo += 1;
                return Some(self.run[self.lo - 1].clone());
            }
            if let Next::Both = next {
                self.lo += 1;
            }
            if let Some((key, Some(loc))) = self.pop_delta_front() {
                return Some((key, loc));
            }
        }
    }
}

impl DoubleEndedIterator for Cursor {
    fn next_back(&mut self) -> Option<(Key, Loc)> {
        loop {
            let delta = self.delta_back().cloned();
            let run = (self.lo < self.hi).then(|| &self.run[self.hi - 1].0);
            let next = match (run, delta) {
                (None, None) => return None,
                (Some(_), None) => Next::Run,
                (None, Some(_)) => Next::Delta,
                (Some(r), Some(d)) => match d.cmp(r) {
                    std::cmp::Ordering::Greater => Next::Delta,
                    std::cmp::Ordering::Equal => Next::Both,
                    std::cmp::Ordering::Less => Next::Run,
                },
            };
            if let Next::Run = next {
                self.hi -= 1;
                return Some(self.run[self.hi].clone());
            }
            if let Next::Both = next {
                self.hi -= 1;
            }
            if let Some((key, Some(loc))) = self.pop_delta_back() {
                return Some((key, loc));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Dir;

    fn loc(seg: &Arc<Segment>, n: u64) -> Loc {
        Loc {
            seg: Arc::clone(seg),
            value_offset: n,
            value_len: 0,
            op_bytes: 1,
            expires_ms: 0,
        }
    }

    fn listed(c: impl Iterator<Item = (Key, Loc)>) -> Vec<(Vec<u8>, u64)> {
        c.map(|(k, l)| (k.bytes().to_vec(), l.value_offset))
            .collect()
    }

    /// Random puts and deletes with rebuilds at random moments: every snapshot, walked
    /// forwards, backwards, alternately and over random bounds, equals a model taken at
    /// the same moment, whatever happened after it.
    #[test]
    fn cursors_match_a_model_at_their_snapshot() {
        let dir = Dir::temporary().unwrap();
        let seg = Segment::open(&dir, "s".into()).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let mut kd = KeyDir::default();
        let mut model = BTreeMap::new();
        let mut saved: Vec<(Snapshot, BTreeMap<Vec<u8>, u64>)> = Vec::new();
        for step in 0..4000u64 {
            let key = vec![rng.random_range(0..40u8); rng.random_range(0..3usize)];
            if rng.random_bool(0.7) {
                kd.put(&key, loc(&seg, step));
                model.insert(key, step);
            } else {
                kd.delete(&key);
                model.remove(&key);
            }
            if rng.random_bool(0.01) {
                kd.rebuild();
            }
            assert_eq!(kd.len(), model.len());
            if step % 97 == 0 {
                saved.push((kd.snapshot(), model.clone()));
            }
        }
        let bound = |rng: &mut StdRng| match rng.random_range(0..3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(vec![rng.random_range(0..40u8); rng.random_range(0..3usize)]),
            _ => Bound::Excluded(vec![rng.random_range(0..40u8); rng.random_range(0..3usize)]),
        };
        for (snap, model) in &saved {
            let all: Vec<_> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let fwd = listed(snap.cursor(Bound::Unbounded, Bound::Unbounded));
            assert_eq!(fwd, all);
            let mut back = listed(snap.cursor(Bound::Unbounded, Bound::Unbounded).rev());
            back.reverse();
            assert_eq!(back, all);
            assert_eq!(
                snap.merged()
                    .iter()
                    .map(|(k, l)| (k.bytes().to_vec(), l.value_offset))
                    .collect::<Vec<_>>(),
                all
            );
            // Alternating ends meet in the middle without losing or repeating anything.
            let mut c = snap.cursor(Bound::Unbounded, Bound::Unbounded);
            let (mut front, mut rear) = (Vec::new(), Vec::new());
            loop {
                let Some(a) = c.next() else { break };
                front.push((a.0.bytes().to_vec(), a.1.value_offset));
                let Some(b) = c.next_back() else { break };
                rear.push((b.0.bytes().to_vec(), b.1.value_offset));
            }
            rear.reverse();
            front.extend(rear);
            assert_eq!(front, all);
            for _ in 0..20 {
                let (lo, hi) = (bound(&mut rng), bound(&mut rng));
                let valid = match (&lo, &hi) {
                    (Bound::Included(a), Bound::Included(b)) => a <= b,
                    (
                        Bound::Included(a) | Bound::Excluded(a),
                        Bound::Included(b) | Bound::Excluded(b),
                    ) => a < b,
                    _ => true,
                };
                let expect: Vec<_> = if valid {
                    model
                        .range::<Vec<u8>, _>((lo.as_ref(), hi.as_ref()))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect()
                } else {
                    Vec::new()
                };
                let key = |b: &Bound<Vec<u8>>| b.as_ref().map(|k| Key::new(k));
                assert_eq!(
                    listed(snap.cursor(key(&lo), key(&hi))),
                    expect,
                    "{lo:?}..{hi:?}"
                );
                let mut back = listed(snap.cursor(key(&lo), key(&hi)).rev());
                back.reverse();
                assert_eq!(back, expect);
            }
        }
    }
}
