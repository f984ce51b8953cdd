//! One face for every key-value store: [`Store`] (point reads and writes, iteration,
//! sync, stats, verify, compact), and [`OrderedStore`] for the stores that keep their
//! keys in order (ranges both ways, first, last, above, below). [`LogStore`],
//! [`BTreeStore`], [`HashStore`] and [`ShardedStore`] implement the first; the log and
//! B-tree stores the second. Code written against them (the tour, the command-line tool,
//! the benchmark suite's adapters) works with any store.
//!
//! Each method keeps its store's own contract (what `sync` promises, what iteration
//! sees, what a value handle keeps alive): see the store's documentation.
//!
//! ```
//! use accretion::face::{OrderedStore, Store};
//! use accretion::{BTreeStore, Dir, HashStore};
//!
//! fn count_a<S: Store>(store: &S) -> accretion::Result<usize> {
//!     store.put(b"a1", b"x")?;
//!     store.put(b"b1", b"y")?;
//!     let mut n = 0;
//!     for entry in store.entries()? {
//!         let (key, _value) = entry?;
//!         n += usize::from(key.starts_with(b"a"));
//!     }
//!     Ok(n)
//! }
//!
//! let dir = Dir::temporary()?;
//! let hash = HashStore::open(&dir, "h", Default::default())?;
//! let tree = BTreeStore::open(&dir, "t", Default::default())?;
//! assert_eq!(count_a(&hash)?, 1);
//! assert_eq!(count_a(&tree)?, 1);
//! let (last, _) = tree.last()?.expect("two keys");
//! assert_eq!(&*last, b"b1");
//! # Ok::<(), accretion::Error>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Bound, Deref};
use std::path::PathBuf;

use crate::catalog::Kind;
use crate::{
    BTreeStore, BTreeValue, HashStore, HashValue, KeyRange, LogStore, OptimizeMode, Result,
    ShardedStore, ShardedValue, Value,
};

/// One figure of a store's stats or verify report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Figure {
    /// A count: keys, bytes, pages, a generation number.
    Count(u64),
    /// A ratio or a mean.
    Ratio(f64),
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Figure::Count(n) => write!(f, "{n}"),
            Figure::Ratio(x) => write!(f, "{x:.3}"),
        }
    }
}

/// Named figures, in the store's order. Every store names its key count `keys`; where
/// it knows them, also `live_bytes`, `dead_bytes` and `generation`.
pub type Figures = Vec<(&'static str, Figure)>;

/// The entries of a store, key and value handles.
pub type Entries<'a, K, V> = Box<dyn Iterator<Item = Result<(K, V)>> + 'a>;

/// The entries of a range of an ordered store, in key order, from either end.
pub type OrderedEntries<'a, K, V> = Box<dyn DoubleEndedIterator<Item = Result<(K, V)>> + 'a>;

/// What every key-value store does.
pub trait Store: Send + Sync {
    /// A key as iteration hands it out.
    type Key: Deref<Target = [u8]>;
    /// A value as `get` and iteration hand it out: a zero-copy handle into the store's
    /// files (or, for a B-tree, a page it holds in memory); the B-tree's iteration hands
    /// out copies, read in batches.
    type Value: Deref<Target = [u8]>;

    /// Which store this is.
    fn kind(&self) -> Kind;

    /// Where the store's files are (errors name files below it).
    fn path(&self) -> PathBuf;

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// As the store's `get`.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>>;

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// As the store's write (`put`, `insert` or `set`).
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key`, returning whether it was set (removing an absent key is not an
    /// error). For a [`LogStore`], whose `delete` does not look, the answer is whether
    /// the key was set just before the removal (a writer racing on the same key may
    /// change that).
    ///
    /// # Errors
    /// As the store's removal (`delete` or `remove`).
    fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Whether `key` is set.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    fn contains(&self, key: &[u8]) -> Result<bool>;

    /// Keys in the store.
    ///
    /// # Errors
    /// As the store's `len`.
    fn len(&self) -> Result<u64>;

    /// Whether the store holds no key.
    ///
    /// # Errors
    /// As [`len`](Self::len).
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every entry, each once, in key order where the store keeps one.
    ///
    /// # Errors
    /// As the store's iteration; each item may also be an error (a damaged record).
    fn entries(&self) -> Result<Entries<'_, Self::Key, Self::Value>>;

    /// Makes every write so far durable, as the store's `sync` promises.
    ///
    /// # Errors
    /// As the store's `sync`.
    fn sync(&self) -> Result<()>;

    /// The store's figures, named.
    ///
    /// # Errors
    /// As the store's `stats`.
    fn stats(&self) -> Result<Figures>;

    /// Walks every checksum and structural invariant the store can check, returning
    /// what it counted.
    ///
    /// # Errors
    /// `Corrupted` naming the file and the first problem found; `Io`.
    fn verify(&self) -> Result<Figures>;

    /// Reclaims the space of overwritten and removed entries now.
    ///
    /// # Errors
    /// As the store's compaction.
    fn compact(&self) -> Result<()>;
}

/// A store whose keys are kept in order.
pub trait OrderedStore: Store {
    /// The entries whose keys lie in `range`, in key order; `rev()` walks it backwards.
    ///
    /// # Errors
    /// As the store's range read; each item may also be an error.
    fn range(&self, range: impl KeyRange) -> Result<OrderedEntries<'_, Self::Key, Self::Value>>;

    /// The smallest key and its value.
    ///
    /// # Errors
    /// As [`range`](Self::range).
    fn first(&self) -> Result<Option<(Self::Key, Self::Value)>> {
        self.range(..)?.next().transpose()
    }

    /// The largest key and its value.
    ///
    /// # Errors
    /// As [`range`](Self::range).
    fn last(&self) -> Result<Option<(Self::Key, Self::Value)>> {
        self.range(..)?.next_back().transpose()
    }

    /// The smallest key strictly greater than `key`, and its value.
    ///
    /// # Errors
    /// As [`range`](Self::range).
    fn above(&self, key: &[u8]) -> Result<Option<(Self::Key, Self::Value)>> {
        self.range((Bound::Excluded(key), Bound::<&[u8]>::Unbounded))?
            .next()
            .transpose()
    }

    /// The largest key strictly smaller than `key`, and its value.
    ///
    /// # Errors
    /// As [`range`](Self::range).
    fn below(&self, key: &[u8]) -> Result<Option<(Self::Key, Self::Value)>> {
        self.range((Bound::<&[u8]>::Unbounded, Bound::Excluded(key)))?
            .next_back()
            .transpose()
    }
}

fn count(n: u64) -> Figure {
    Figure::Count(n)
}

impl Store for LogStore {
    type Key = Value;
    type Value = Value;

    fn kind(&self) -> Kind {
        Kind::LogStore
    }

    fn path(&self) -> PathBuf {
        LogStore::path(self)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        LogStore::get(self, key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        LogStore::put(self, key, value)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let was = LogStore::contains(self, key);
        LogStore::delete(self, key)?;
        Ok(was)
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(LogStore::contains(self, key))
    }

    fn len(&self) -> Result<u64> {
        Ok(LogStore::len(self))
    }

    fn entries(&self) -> Result<Entries<'_, Value, Value>> {
        Ok(Box::new(self.iter()))
    }

    fn sync(&self) -> Result<()> {
        LogStore::sync(self)
    }

    fn stats(&self) -> Result<Figures> {
        let s = LogStore::stats(self);
        Ok(vec![
            ("keys", count(s.keys)),
            ("live_bytes", count(s.live_bytes)),
            ("dead_bytes", count(s.dead_bytes)),
            ("generation", count(s.generation)),
            ("segments", count(s.segments)),
            ("active_log", count(s.active_log)),
            ("damaged_records", count(s.damaged_records)),
            ("damaged_bytes", count(s.damaged_bytes)),
        ])
    }

    /// Reads every live entry's key and value (each record's checksum is checked on
    /// the way), in key order, and checks that they number `len`.
    fn verify(&self) -> Result<Figures> {
        let (mut keys, mut bytes) = (0u64, 0u64);
        let mut previous: Option<Value> = None;
        for entry in self.iter() {
            let (key, value) = entry?;
            if previous.as_deref().is_some_and(|p| p >= &*key) {
                return Err(crate::Error::corrupted(
                    &Store::path(self),
                    0,
                    "the log store's keys came out of order",
                ));
            }
            keys += 1;
            bytes += (key.len() + value.len()) as u64;
            previous = Some(key);
        }
        let stats = LogStore::stats(self);
        if stats.damaged_records > 0 {
            return Err(crate::Error::corrupted(
                &Store::path(self),
                0,
                format!(
                    "the open met {} damaged record(s) in the log segments and dropped {} bytes \
                     from them on (what those records wrote is lost)",
                    stats.damaged_records, stats.damaged_bytes
                ),
            ));
        }
        let len = LogStore::len(self);
        if keys != len {
            return Err(crate::Error::corrupted(
                &Store::path(self),
                0,
                format!("the log store counts {len} keys, its entries are {keys}"),
            ));
        }
        Ok(vec![("keys", count(keys)), ("payload_bytes", count(bytes))])
    }

    fn compact(&self) -> Result<()> {
        LogStore::compact(self)
    }
}

impl OrderedStore for LogStore {
    fn range(&self, range: impl KeyRange) -> Result<OrderedEntries<'_, Value, Value>> {
        Ok(Box::new(LogStore::range(self, range)))
    }
}

impl Store for HashStore {
    type Key = HashValue;
    type Value = HashValue;

    fn kind(&self) -> Kind {
        Kind::HashStore
    }

    fn path(&self) -> PathBuf {
        HashStore::path(self)
    }

    fn get(&self, key: &[u8]) -> Result<Option<HashValue>> {
        HashStore::get(self, key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        HashStore::set(self, key, value).map(drop)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Ok(HashStore::delete(self, key)?.is_some())
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        HashStore::contains(self, key)
    }

    fn len(&self) -> Result<u64> {
        Ok(HashStore::len(self))
    }

    fn entries(&self) -> Result<Entries<'_, HashValue, HashValue>> {
        Ok(Box::new(self.iter()?))
    }

    fn sync(&self) -> Result<()> {
        HashStore::sync(self)
    }

    fn stats(&self) -> Result<Figures> {
        let s = HashStore::stats(self)?;
        Ok(vec![
            ("keys", count(s.entries)),
            (
                "live_bytes",
                count(s.data_bytes.saturating_sub(s.dead_bytes)),
            ),
            ("dead_bytes", count(s.dead_bytes)),
            ("generation", count(s.data_generation)),
            ("data_bytes", count(s.data_bytes)),
            ("index_generation", count(s.index_generation)),
            ("index_capacity", count(s.index_capacity)),
            ("index_fill", Figure::Ratio(s.index_fill)),
            ("probe_distance_mean", Figure::Ratio(s.probe_distance_mean)),
            ("probe_distance_max", count(s.probe_distance_max)),
        ])
    }

    fn verify(&self) -> Result<Figures> {
        let r = HashStore::verify(self)?;
        Ok(vec![
            ("keys", count(r.entries)),
            ("probe_distance_max", count(r.probe_distance_max)),
        ])
    }

    fn compact(&self) -> Result<()> {
        self.optimize(OptimizeMode::Aggressive).map(drop)
    }
}

impl Store for ShardedStore {
    type Key = ShardedValue;
    type Value = ShardedValue;

    fn kind(&self) -> Kind {
        Kind::ShardedStore
    }

    fn path(&self) -> PathBuf {
        ShardedStore::path(self)
    }

    fn get(&self, key: &[u8]) -> Result<Option<ShardedValue>> {
        ShardedStore::get(self, key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        ShardedStore::set(self, key, value).map(drop)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Ok(ShardedStore::remove(self, key)?.is_some())
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        ShardedStore::contains(self, key)
    }

    fn len(&self) -> Result<u64> {
        Ok(ShardedStore::len(self))
    }

    fn entries(&self) -> Result<Entries<'_, ShardedValue, ShardedValue>> {
        Ok(Box::new(self.iter().map(|e| e.map(|e| (e.key, e.value)))))
    }

    fn sync(&self) -> Result<()> {
        ShardedStore::sync(self)
    }

    fn stats(&self) -> Result<Figures> {
        let s = ShardedStore::stats(self);
        Ok(vec![
            ("keys", count(s.entries)),
            (
                "live_bytes",
                count(s.data_bytes.saturating_sub(s.dead_bytes)),
            ),
            ("dead_bytes", count(s.dead_bytes)),
            ("data_bytes", count(s.data_bytes)),
            ("shards", count(s.shards)),
            ("fill", Figure::Ratio(s.fill)),
            ("splits", count(s.splits)),
            ("compactions", count(s.compactions)),
            ("merges", count(s.merges)),
            ("rebuilt_at_open", count(s.rebuilt_at_open)),
        ])
    }

    /// Reads every entry (each record's checksum is checked on the way), and checks
    /// that they number `len` and that each is found by a lookup of its key.
    fn verify(&self) -> Result<Figures> {
        let (mut keys, mut bytes) = (0u64, 0u64);
        for entry in self.iter() {
            let entry = entry?;
            if ShardedStore::get(self, &entry.key)?.as_deref() != Some(&*entry.value) {
                return Err(crate::Error::corrupted(
                    &Store::path(self),
                    0,
                    "an entry of the sharded store is not found by its key",
                ));
            }
            keys += 1;
            bytes += (entry.key.len() + entry.value.len()) as u64;
        }
        let len = ShardedStore::len(self);
        if keys != len {
            return Err(crate::Error::corrupted(
                &Store::path(self),
                0,
                format!("the sharded store counts {len} keys, its entries are {keys}"),
            ));
        }
        Ok(vec![("keys", count(keys)), ("payload_bytes", count(bytes))])
    }

    fn compact(&self) -> Result<()> {
        ShardedStore::compact(self).map(drop)
    }
}

impl Store for BTreeStore {
    type Key = Vec<u8>;
    type Value = BTreeValue;

    fn kind(&self) -> Kind {
        Kind::BTreeStore
    }

    fn path(&self) -> PathBuf {
        BTreeStore::path(self)
    }

    fn get(&self, key: &[u8]) -> Result<Option<BTreeValue>> {
        BTreeStore::get(self, key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.insert(key, value).map(drop)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Ok(self.remove(key)?.is_some())
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        BTreeStore::contains(self, key)
    }

    fn len(&self) -> Result<u64> {
        BTreeStore::len(self)
    }

    fn entries(&self) -> Result<Entries<'_, Vec<u8>, BTreeValue>> {
        Ok(Box::new(Batches::new(
            self,
            Bound::Unbounded,
            Bound::Unbounded,
        )))
    }

    fn sync(&self) -> Result<()> {
        BTreeStore::sync(self)
    }

    fn stats(&self) -> Result<Figures> {
        let s = BTreeStore::stats(self);
        Ok(vec![
            ("keys", count(BTreeStore::len(self)?)),
            ("live_bytes", count(s.live_bytes)),
            ("dead_bytes", count(s.garbage_bytes)),
            ("generation", count(s.generation)),
            ("height", count(u64::from(s.height))),
            ("pages", count(s.pages)),
            ("log_bytes", count(s.log_bytes)),
            ("trees", count(s.trees)),
            ("commits", count(s.commits)),
            ("write_amplification", Figure::Ratio(s.write_amplification)),
        ])
    }

    fn verify(&self) -> Result<Figures> {
        let r = BTreeStore::verify(self)?;
        Ok(vec![
            ("keys", count(r.entries)),
            ("trees", count(r.trees)),
            ("pages", count(r.pages)),
            ("out_of_line_values", count(r.out_of_line_values)),
        ])
    }

    fn compact(&self) -> Result<()> {
        BTreeStore::compact(self)
    }
}

impl OrderedStore for BTreeStore {
    fn range(&self, range: impl KeyRange) -> Result<OrderedEntries<'_, Vec<u8>, BTreeValue>> {
        let own = |b: Bound<&[u8]>| b.map(<[u8]>::to_vec);
        Ok(Box::new(Batches::new(
            self,
            own(range.start_key()),
            own(range.end_key()),
        )))
    }
}

/// Entries of a B-tree's default tree read in batches, each from a snapshot of its own
/// (a snapshot borrows from the store, so one cannot live inside the iterator): every
/// key present throughout comes out once, in order, from either end; a key written
/// meanwhile may or may not. Batches start at one entry and double up to [`BATCH`], so
/// `first` or `above` read one entry, and a scan soon reads many per snapshot. An error
/// comes after the entries read before it, and ends the iteration.
struct Batches<'a> {
    store: &'a BTreeStore,
    /// What is left to read: the ends move inwards as batches are read.
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// Read from the front, in order, not handed out yet.
    front: VecDeque<(Vec<u8>, BTreeValue)>,
    /// Read from the back, in order, not handed out yet.
    back: VecDeque<(Vec<u8>, BTreeValue)>,
    /// Entries the next batch from each end reads.
    size: [usize; 2],
    /// An error met by a batch, handed out once the entries before it are.
    error: Option<crate::Error>,
    /// Nothing is left between `lo` and `hi` (or an error ended the iteration).
    drained: bool,
}

/// A key and its value, borrowed from a snapshot.
type Pair<'s> = (&'s [u8], &'s [u8]);

/// Most entries read per snapshot.
const BATCH: usize = 256;

impl<'a> Batches<'a> {
    fn new(store: &'a BTreeStore, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Self {
        Batches {
            store,
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            size: [1, 1],
            error: None,
            drained: false,
        }
    }

    /// Reads the next batch from the front (or the back) of what is left.
    fn fill(&mut self, from_front: bool) {
        let side = usize::from(!from_front);
        let size = self.size[side];
        self.size[side] = (size * 2).min(BATCH);
        let mut batch = Vec::with_capacity(size);
        let read = (|| -> Result<()> {
            let snapshot = self.store.begin_read();
            let tree = snapshot.default_tree()?;
            let range = tree.range((self.lo.clone(), self.hi.clone()))?;
            let entries: Box<dyn Iterator<Item = Result<Pair<'_>>>> = if from_front {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in entries.take(size) {
                let (k, v) = entry?;
                batch.push((k.to_vec(), BTreeValue::from(v)));
            }
            Ok(())
        })();
        match read {
            Err(e) => {
                self.error = Some(e);
                self.drained = true;
            }
            Ok(()) if batch.len() < size => self.drained = true,
            Ok(()) => {}
        }
        if let Some((k, _)) = batch.last() {
            let past = Bound::Excluded(k.clone());
            if from_front {
                self.lo = past;
            } else {
                self.hi = past;
            }
        }
        if from_front {
            self.front.extend(batch);
        } else {
            for e in batch {
                self.back.push_front(e);
            }
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Vec<u8>, BTreeValue)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front.is_empty() && !self.drained {
            self.fill(true);
        }
        if let Some(e) = self.front.pop_front() {
            return Some(Ok(e));
        }
        if let Some(e) = self.error.take() {
            self.back.clear();
            return Some(Err(e));
        }
        self.back.pop_front().map(Ok)
    }
}

impl DoubleEndedIterator for Batches<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_empty() && !self.drained {
            self.fill(false);
        }
        if let Some(e) = self.back.pop_back() {
            return Some(Ok(e));
        }
        if let Some(e) = self.error.take() {
            self.front.clear();
            return Some(Err(e));
        }
        self.front.pop_back().map(Ok)
    }
}
