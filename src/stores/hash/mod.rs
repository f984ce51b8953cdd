//! HashStore: rust-persist's design, a Robin Hood hash index over records in a log,
//! rebuilt from the primitives. Records (checksummed key-value puts, deletes and clears)
//! live in an [`AppendOnly`](crate::AppendOnly) per data generation; the index is a
//! [`RandomAccess`](crate::RandomAccess) per index generation; the key hash is keyed
//! from the store's [`Entropy`](crate::Entropy); which generations are current, and
//! whether the index may be trusted as it is, is the state in a [`Journal`](crate::Journal).
//!
//! Files under the store's name: `state`, `entropy`, `d{N}` (data generations) and
//! `i{N}` (index generations). Code map: `record.rs` (the record layout), `data.rs` (data
//! generations and value handles), `index.rs` (Robin Hood probing), `store.rs` (the
//! state, locks and writes), `open.rs` (open and rebuild), `optimize.rs` (free space).

mod data;
mod index;
mod open;
mod optimize;
mod record;
mod store;

use std::sync::atomic::Ordering;

pub use data::HashValue;

use store::Inner;

use crate::{Dir, Result};

/// Options of a [`HashStore`].
#[derive(Clone, Debug)]
pub struct HashOptions {
    /// Optimise on its own ([`OptimizeMode::Normal`], on the writing thread) when live
    /// records take less than half of the data log. Default `true`.
    pub auto_optimize: bool,
    /// No automatic optimisation while the data log is smaller than this. Default 1 MiB.
    pub auto_optimize_min_bytes: u64,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 1 << 20,
        }
    }
}

/// When [`HashStore::optimize`] copies the live records into a new data generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizeMode {
    /// Only if dead records take more than half of the data log.
    Normal,
    /// Always.
    Aggressive,
}

/// What [`HashStore::stats`] reports (rust-persist's figures).
#[derive(Clone, Debug, PartialEq)]
pub struct HashStats {
    /// Keys stored.
    pub entries: u64,
    /// Slots of the index.
    pub index_capacity: u64,
    /// `entries / index_capacity`.
    pub index_fill: f64,
    /// Mean distance of an entry from its home slot (0 when empty).
    pub probe_distance_mean: f64,
    /// Largest distance of an entry from its home slot.
    pub probe_distance_max: u64,
    /// Bytes of every live data log (frames and padding included).
    pub data_bytes: u64,
    /// Of those, bytes no key's current value needs (overwritten, deleted, tombstones).
    pub dead_bytes: u64,
    /// Mean bytes a live entry's record takes in the log (0 when empty).
    pub record_bytes_mean: f64,
    /// Number of the current data generation (one more per optimisation).
    pub data_generation: u64,
    /// Number of the current index generation (one more per resize or rebuild).
    pub index_generation: u64,
}

/// What [`HashStore::verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashReport {
    /// Entries found, each record read and its checksum checked.
    pub entries: u64,
    /// Largest distance of an entry from its home slot.
    pub probe_distance_max: u64,
}

/// A persistent hash map of byte keys to byte values.
///
/// `get` returns a [`HashValue`]: a zero-copy handle into the data file that stays valid
/// across later writes, resizes and optimisations. Every write is atomic. Any number of
/// threads may read and write at once: readers never wait for each other, and wait for a
/// writer only while it changes a few index slots; writers are serialized.
///
/// # Durability
/// A write lands in the page cache at once and survives the death of the process (the
/// data log's records prove themselves, and an open after an unclean shutdown rebuilds
/// the index from them). [`sync`](Self::sync) makes every write before it durable, with
/// one flush of the data log. A power loss keeps every synced write, and of later writes
/// a prefix in the order they were made, never a torn record.
///
/// Dropping the store (or [`close`](Self::close)) is a clean shutdown: the data and the
/// index are made durable and the state says so, so that the next open reads no record.
/// After anything else the next open rebuilds the index from the records (see
/// ARCHITECTURE.md for the cost).
///
/// ```
/// use accretion::{Dir, HashOptions, HashStore};
///
/// let dir = Dir::temporary()?;
/// let store = HashStore::open(&dir, "kv", HashOptions::default())?;
/// assert!(store.set(b"apple", b"red")?.is_none());
/// let old = store.set(b"apple", b"green")?.expect("was set");
/// assert_eq!(old, b"red"); // the old value's handle still reads it
/// assert_eq!(store.get(b"apple")?.expect("present"), b"green");
/// store.update(b"count", |old| {
///     let n = old.map_or(0, |b| b[0]);
///     Some(vec![n + 1])
/// })?;
/// assert_eq!(store.get(b"count")?.expect("present"), [1]);
/// store.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
pub struct HashStore {
    inner: Inner,
}

impl std::fmt::Debug for HashStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashStore")
            .field("name", &self.inner.name)
            .field("entries", &self.len())
            .finish()
    }
}

impl HashStore {
    /// Opens or creates the store `name` in `dir`.
    ///
    /// # Errors
    /// `Corrupted` if the state is damaged, names a data log that is missing, or a
    /// record fails its checksum during a rebuild; `UnsupportedVersion` for a newer
    /// format; `Incompatible` for another structure's files; `NameInUse` (naming the
    /// store) if it is open already; `HandlesAlive` while value handles of an earlier open
    /// still hold its current data generation; `Io`.
    pub fn open(dir: &Dir, name: &str, options: HashOptions) -> Result<HashStore> {
        crate::catalog::admit(dir, name, crate::catalog::Kind::HashStore)?;
        let inner = open::open(dir, name, options)
            .map_err(|e| e.in_open_of(name, "a HashValue or an unfinished HashIter"))?;
        crate::catalog::record(dir, name, crate::catalog::Kind::HashStore, store::FORMAT)?;
        Ok(HashStore { inner })
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// `Corrupted` if the record the index names is damaged; `Io`.
    pub fn get(&self, key: &[u8]) -> Result<Option<HashValue>> {
        let tag = self.inner.tag(key);
        let s = self.inner.shared.read();
        Ok(self.inner.lookup(&s, key, tag)?.map(|hit| hit.value()))
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Whether this open rebuilt the index from the records (the store was not shut
    /// down cleanly, or its index was lost or damaged) rather than trusting it.
    pub fn rebuilt_at_open(&self) -> bool {
        self.inner.rebuilt
    }

    /// Where the store's files are: its directory inside the store directory.
    pub fn path(&self) -> std::path::PathBuf {
        self.inner.dir.path().join(&self.inner.name)
    }

    /// Keys stored.
    pub fn len(&self) -> u64 {
        self.inner.entries.load(Ordering::Acquire)
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`; returns the old value, if any.
    ///
    /// # Errors
    /// `LimitExceeded` for a key longer than
    /// [`HASH_KEY_LEN_BYTES_MAX`](crate::limits::HASH_KEY_LEN_BYTES_MAX) or a value longer
    /// than [`HASH_VALUE_LEN_BYTES_MAX`](crate::limits::HASH_VALUE_LEN_BYTES_MAX) (nothing
    /// is stored); `Io` (a full disk is `StorageFull`); `Reentrant` from inside an
    /// [`update`](Self::update) or [`retain`](Self::retain) closure; `Poisoned` after a
    /// failure that left the index in doubt: reopen the store.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<Option<HashValue>> {
        store::check_key(key)?;
        store::check_value(value)?;
        self.change(key, "HashStore::set", |_| Ok(Some(value)))
    }

    /// Removes `key`; returns its value, if it had one.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn delete(&self, key: &[u8]) -> Result<Option<HashValue>> {
        store::check_key(key)?;
        self.change(key, "HashStore::delete", |_| Ok(None::<&[u8]>))
    }

    /// Atomically replaces `key`'s value by what `f` makes of it: `f` gets the current
    /// value (or `None`) and returns the new one (or `None` to delete the key). No other
    /// write to the store happens in between. Returns the old value.
    ///
    /// `f` may read the store, but a write from inside it is refused (`Reentrant`).
    ///
    /// # Errors
    /// As [`set`](Self::set); `LimitExceeded` if `f` returns a value over its limit.
    pub fn update<V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<V>,
    ) -> Result<Option<HashValue>> {
        store::check_key(key)?;
        self.change(key, "HashStore::update", |old| {
            let new = f(old);
            if let Some(v) = &new {
                store::check_value(v.as_ref())?;
            }
            Ok(new)
        })
    }

    /// The one write path: under the writer lock, finds `key`, asks `decide` for its new
    /// value (or `None` to delete it), and writes that.
    fn change<D: AsRef<[u8]>>(
        &self,
        key: &[u8],
        call: &'static str,
        decide: impl FnOnce(Option<&[u8]>) -> Result<Option<D>>,
    ) -> Result<Option<HashValue>> {
        let inner = &self.inner;
        let tag = inner.tag(key);
        let old = {
            let mut g = inner.lock_writer(call)?;
            let found = inner.lookup(&inner.shared.read(), key, tag)?;
            let old = found.as_ref().map(|hit| hit.value());
            let value = decide(old.as_deref())?;
            if found.is_none() && value.is_none() {
                return Ok(None);
            }
            inner.write_locked(&mut g.w, tag, key, found, value.as_ref().map(AsRef::as_ref))?
        };
        self.after_write();
        Ok(old)
    }

    /// Removes every key.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn clear(&self) -> Result<()> {
        {
            let mut g = self.inner.lock_writer("HashStore::clear")?;
            self.inner.clear_locked(&mut g.w)?;
        }
        self.after_write();
        Ok(())
    }

    /// Sets every key-value pair of `pairs`, in order.
    ///
    /// # Errors
    /// As [`set`](Self::set); the pairs before the failing one are set.
    pub fn extend<K, V>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        for (k, v) in pairs {
            self.set(k.as_ref(), v.as_ref())?;
        }
        Ok(())
    }

    /// Keeps only the entries for which `keep(key, value)` is true (rust-persist's
    /// `filter`); returns how many were removed. Writers wait until it is done; `keep`
    /// may read the store but not write it (`Reentrant`).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn retain(&self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) -> Result<u64> {
        let inner = &self.inner;
        let mut removed = 0;
        {
            let mut g = inner.lock_writer("HashStore::retain")?;
            let positions = Self::positions(&inner.shared.read())?;
            for pos in positions {
                let hit = inner.hit_at(pos)?;
                if keep(&hit.key(), &hit.value()) {
                    continue;
                }
                let key = hit.key();
                let tag = inner.tag(&key);
                let found = inner.lookup(&inner.shared.read(), &key, tag)?;
                inner.write_locked(&mut g.w, tag, &key, found, None)?;
                removed += 1;
            }
        }
        self.after_write();
        Ok(removed)
    }

    /// The position words of every entry, in slot order.
    fn positions(s: &store::Shared) -> Result<Vec<u64>> {
        s.index
            .entries()
            .map(|e| e.map(|(_, _, pos)| pos))
            .collect()
    }

    /// Every entry as `(key, value)` handles, as the store held them when `iter` was
    /// called (it notes where each record is, 8 bytes per entry, then reads them as it
    /// goes). In no particular order.
    ///
    /// # Errors
    /// `Io` from the index; each item may be `Corrupted` if its record is damaged.
    pub fn iter(&self) -> Result<Iter> {
        let s = self.inner.shared.read();
        let positions = Self::positions(&s);
        Ok(Iter {
            data: std::sync::Arc::clone(&s.data),
            prev: s.prev.clone(),
            positions: positions?.into_iter(),
        })
    }

    /// Optimises now if `mode` calls for it (see [`OptimizeMode`]); returns whether it
    /// did. Reads and writes go on meanwhile. Value handles into the old data
    /// generation stay valid; its files are removed when the last one is dropped.
    ///
    /// # Errors
    /// `Io` (a full disk is `StorageFull`: the optimisation stops, nothing is lost, and
    /// the next call resumes it); `Corrupted` if a record is damaged.
    pub fn optimize(&self, mode: OptimizeMode) -> Result<bool> {
        self.inner.optimize(mode)
    }

    /// After a write: an automatic optimisation if one is due. Its failure is not the
    /// write's (which is done); the next write or call to `optimize` tries again.
    fn after_write(&self) {
        let o = &self.inner.options;
        if o.auto_optimize
            && !self.inner.optimizing.load(Ordering::Acquire)
            && self.inner.shared.read().data_bytes() >= o.auto_optimize_min_bytes
            && self.inner.wasteful()
        {
            let _ = self.inner.optimize(OptimizeMode::Normal);
        }
    }

    /// Makes every write that returned before this call durable: one flush of the data
    /// log (the index is not flushed: an open after a crash rebuilds it).
    ///
    /// # Errors
    /// `Io` if a flush fails; `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        self.inner.check_poison()?;
        self.inner.sync()
    }

    /// A clean shutdown, reporting errors (dropping the store does the same and ignores
    /// them): the data and the index are made durable, and the state says so, so that
    /// the next open trusts the index and reads no record.
    ///
    /// # Errors
    /// `Io` if a flush fails (the next open then rebuilds the index); `Poisoned`.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }

    /// Checks the index against the records: the Robin Hood shape (every entry within
    /// its probe distance of its home slot, distances along a run rising by at most one),
    /// every entry's record (there, checksum holding, a put of a key whose hash is the
    /// slot's), every key found by a lookup (no entry lost behind another), and the
    /// counts. Writers wait while it runs.
    ///
    /// # Errors
    /// `Corrupted` naming the first problem found; `Io`.
    pub fn verify(&self) -> Result<HashReport> {
        self.inner.verify()
    }

    /// Counts and sizes; see [`HashStats`]. Scans the index for the probe distances.
    ///
    /// # Errors
    /// `Io` from the index.
    pub fn stats(&self) -> Result<HashStats> {
        let inner = &self.inner;
        let s = inner.shared.read();
        let shape = match s.index.check()? {
            Ok(shape) => shape,
            Err((slot, what)) => {
                return Err(inner.corrupted_index(format!("index slot {slot}: {what}")));
            }
        };
        let entries = inner.entries.load(Ordering::Acquire);
        let live = inner.live_bytes.load(Ordering::Acquire);
        let data_bytes = s.data_bytes();
        let per = |x: u64| {
            if entries == 0 {
                0.0
            } else {
                x as f64 / entries as f64
            }
        };
        Ok(HashStats {
            entries,
            index_capacity: s.index.capacity(),
            index_fill: entries as f64 / s.index.capacity() as f64,
            probe_distance_mean: per(shape.distance_sum),
            probe_distance_max: shape.distance_max,
            data_bytes,
            dead_bytes: data_bytes.saturating_sub(live),
            record_bytes_mean: per(live),
            data_generation: s.data.number,
            index_generation: s.index.number,
        })
    }
}

impl Drop for HashStore {
    fn drop(&mut self) {
        // A failure leaves the state not clean: the next open rebuilds the index.
        let _ = self.inner.close();
    }
}

/// The entries of a [`HashStore`]: see [`HashStore::iter`].
pub struct Iter {
    data: std::sync::Arc<data::DataGen>,
    prev: Option<std::sync::Arc<data::DataGen>>,
    positions: std::vec::IntoIter<u64>,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("hash::Iter")
            .field("left", &self.positions.len())
            .finish()
    }
}

impl Iterator for Iter {
    type Item = Result<(HashValue, HashValue)>;

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.positions.next()?;
        let (parity, offset) = index::locate(pos);
        let dg = if self.data.number & 1 == parity {
            &self.data
        } else {
            match &self.prev {
                Some(prev) => prev,
                // Only a damaged index names a generation that is not live.
                None => {
                    return Some(Err(self.data.corrupted(
                        0,
                        format!("an index slot names a data generation of parity {parity}, which is not live"),
                    )));
                }
            }
        };
        Some(dg.read(offset).map(|rec| {
            let hit = store::Hit {
                slot: 0,
                dg: std::sync::Arc::clone(dg),
                offset,
                header: rec.header,
            };
            (hit.key(), hit.value())
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.positions.len()))
    }
}
