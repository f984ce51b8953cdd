//! ShardedStore: VickyStore's design (today's CandyStore) rebuilt from the primitives. A
//! key's keyed 64-bit hash picks a shard (its top 16 bits, the selector), a row in it
//! (the next 16) and a 32-bit signature (the rest). A shard owns its files: rows of
//! signatures and entry pointers ([`RandomAccess`](crate::RandomAccess)es) and a log of
//! checksummed records ([`AppendOnly`](crate::AppendOnly)). The shard map (which shard
//! covers which selectors) is the state in a [`Journal`](crate::Journal).
//!
//! Files under the store's name: `state`, `entropy` and `s{N}` (a shard: `sigs`, `ptrs`,
//! `data`, `meta`). Code map: `row.rs` (the signature compare), `record.rs` (the record
//! layout), `map.rs` (the state and the map), `shard.rs` (one shard: lookups, writes,
//! rebuild, copies; value handles), `store.rs` (routing, the writer loop, splits,
//! compactions, commits), `open.rs` (open, trust or rebuild, leftovers), `lists.rs`
//! (lists and queues, each operation one batch record in its collection's shard).

mod lists;
mod map;
mod open;
mod record;
pub mod row;
mod shard;
mod store;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use lists::{ListItem, ListIter, QueueItem, QueueIter};
pub use shard::ShardedValue;

use shard::{Found, Hashed, SLOTS, Shard};
use store::{Action, Inner};

use crate::{Dir, Result};

/// Options of a [`ShardedStore`].
#[derive(Clone, Debug)]
pub struct ShardedOptions {
    /// Keys the store is expected to hold: a new store (and a cleared one) starts with
    /// enough shards for them, each about half full, instead of splitting its way there.
    /// Default 0 (one shard).
    pub expected_keys: u64,
    /// A shard's log may grow to about this many bytes: a write that would take it
    /// further first compacts the shard (if dead records take at least half of it) or
    /// splits it (if its live records take over half of this). Default 64 MiB.
    pub shard_bytes_max: u64,
    /// Make every write (and every list and queue operation) durable before it returns:
    /// one flush of its shard's log, shared by every concurrent writer whose record it
    /// covers (group commit). A write that changes nothing (a `get_or_create` of a key
    /// that exists, a `remove` of an absent one, a pop of an empty queue) waits too, for
    /// the flush of the writes it answered from. Reads (`get`, the list and queue reads)
    /// see every write at once and wait for nothing. Default false: writes survive the death of the process,
    /// and [`ShardedStore::sync`] makes them durable against power loss. A durable write
    /// whose flush fails returns an `Io` error saying it is applied (visible in this
    /// process; a crash may keep it or not), and the store refuses writes until reopened.
    pub sync_each_write: bool,
}

impl Default for ShardedOptions {
    fn default() -> Self {
        ShardedOptions {
            expected_keys: 0,
            shard_bytes_max: 64 << 20,
            sync_each_write: false,
        }
    }
}

/// What [`ShardedStore::replace`] did.
#[derive(Debug)]
pub enum Replace {
    /// The key held the expected value and now holds the new one; the previous value.
    Replaced(ShardedValue),
    /// The key holds another value (given), left as it is.
    WrongValue(ShardedValue),
    /// The key is absent; nothing was written.
    Absent,
}

/// What [`ShardedStore::get_or_create`] did.
#[derive(Debug)]
pub enum GetOrCreate {
    /// The key was absent and now holds the given value (its handle).
    Created(ShardedValue),
    /// The key was present with this value, left as it is.
    Existing(ShardedValue),
}

/// What [`ShardedStore::stats`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardedStats {
    /// Keys of the key-value map.
    pub entries: u64,
    /// Shards in the map.
    pub shards: u64,
    /// Entry slots in use (the key-value map's, and lists' and queues': a list item
    /// takes two, a queue entry one, each list or queue one more) / (shards × 32,768).
    pub fill: f64,
    /// Bytes of every shard's log (frames and padding included).
    pub data_bytes: u64,
    /// Of those, bytes no key's current value needs.
    pub dead_bytes: u64,
    /// Splits, compactions and merges since open.
    pub splits: u64,
    /// See `splits`.
    pub compactions: u64,
    /// See `splits`.
    pub merges: u64,
    /// Shards whose rows the open rebuilt from their records.
    pub rebuilt_at_open: u64,
    /// Flushes made by durable writes ([`ShardedOptions::sync_each_write`]) since open:
    /// fewer than the writes when concurrent writers share them.
    pub flushes: u64,
}

/// A key-value store of shards of signature rows (VickyStore's design, CandyStore's
/// API), on the primitives.
///
/// # Durability
/// Every write lands in its shard's log (a checksummed record) and rows at once, and
/// survives the death of the process. [`sync`](Self::sync) makes every write before it
/// durable (one flush of each shard's log). A crash at any instant leaves each key with
/// its last synced value or a later written one, and nothing else; each list and queue
/// operation is one record, so a crash leaves a collection as it was after one of its
/// operations (the last synced one or a later one), never half changed; a split, merge,
/// compaction or clear is all or nothing (its new shards are made durable before one
/// Journal write swaps them into the map). Dropping the store (or
/// [`close`](Self::close)) is a clean shutdown: the next open trusts the rows after
/// checking them, and reads no record. After anything else, each shard whose check does
/// not hold (every shard written since the last clean shutdown) has its rows rebuilt
/// from its records.
///
/// ```
/// use accretion::{Dir, ShardedOptions, ShardedStore};
///
/// let dir = Dir::temporary()?;
/// let store = ShardedStore::open(&dir, "kv", ShardedOptions::default())?;
/// assert!(store.set(b"apple", b"red")?.is_none());
/// assert_eq!(store.get(b"apple")?.unwrap(), b"red");
/// let old = store.set(b"apple", b"green")?.unwrap();
/// assert_eq!(old, b"red"); // a handle stays valid after the key changes
/// store.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
pub struct ShardedStore {
    inner: Inner,
    /// Set by [`close`](Self::close), which did the clean shutdown the drop would do.
    closed: bool,
}

impl std::fmt::Debug for ShardedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedStore")
            .field("name", &self.inner.name)
            .field("entries", &self.len())
            .finish()
    }
}

impl ShardedStore {
    /// Opens or creates the store `name` in `dir`.
    ///
    /// # Errors
    /// `Corrupted` if the state is damaged, its entropy file is missing or another
    /// store's, a shard it names lost its files, or a record fails its checksum during a
    /// rebuild; `UnsupportedVersion` for a newer format; `Incompatible` for another
    /// structure's files; `NameInUse` (naming the store) if it is open already;
    /// `HandlesAlive` while value handles of an earlier open still hold one of its
    /// shards; `Io`.
    pub fn open(dir: &Dir, name: &str, options: ShardedOptions) -> Result<ShardedStore> {
        crate::catalog::admit(dir, name, crate::catalog::Kind::ShardedStore)?;
        let inner = open::open(dir, name, options)
            .map_err(|e| e.in_open_of(name, "a ShardedValue or an unfinished ShardedIter"))?;
        crate::catalog::record(dir, name, crate::catalog::Kind::ShardedStore, map::FORMAT)?;
        Ok(ShardedStore {
            inner,
            closed: false,
        })
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// `Corrupted` if a record the rows point at is damaged; `Io`.
    pub fn get(&self, key: &[u8]) -> Result<Option<ShardedValue>> {
        self.inner.get(key)
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Where the store's files are: its directory inside the store directory.
    pub fn path(&self) -> std::path::PathBuf {
        self.inner.dir.path().join(&self.inner.name)
    }

    /// Keys stored.
    pub fn len(&self) -> u64 {
        self.inner
            .current()
            .shards
            .iter()
            .map(|s| s.kv_entries())
            .sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`; returns the previous value, `None` if the key was created.
    ///
    /// # Errors
    /// `LimitExceeded` for a key or value over its limit (nothing is stored); `Poisoned`
    /// after a failed commit; `StorageFull`; `Io`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<Option<ShardedValue>> {
        store::check_value(value)?;
        Ok(self.inner.write(key, false, |_| Action::Put(value))?.old)
    }

    /// Removes `key`; returns its value, if it was there.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn remove(&self, key: &[u8]) -> Result<Option<ShardedValue>> {
        Ok(self.inner.write(key, false, |_| Action::Delete)?.old)
    }

    /// Compare-and-swap: sets `key` to `value` only if it holds `expected`.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn replace(&self, key: &[u8], value: &[u8], expected: &[u8]) -> Result<Replace> {
        store::check_value(value)?;
        let mut matched = false;
        let w = self.inner.write(key, false, |old| {
            matched = old.is_some_and(|v| v.as_bytes() == expected);
            if matched {
                Action::Put(value)
            } else {
                Action::Keep
            }
        })?;
        Ok(match (w.old, matched) {
            (None, _) => Replace::Absent,
            (Some(old), true) => Replace::Replaced(old),
            (Some(old), false) => Replace::WrongValue(old),
        })
    }

    /// Sets `key` to `value` only if it is absent, atomically; either way, returns the
    /// value it holds now.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn get_or_create(&self, key: &[u8], value: &[u8]) -> Result<GetOrCreate> {
        store::check_value(value)?;
        let w = self.inner.write(key, true, |old| match old {
            Some(_) => Action::Keep,
            None => Action::Put(value),
        })?;
        match (w.old, w.new) {
            (Some(old), _) => Ok(GetOrCreate::Existing(old)),
            (None, Some(new)) => Ok(GetOrCreate::Created(new)),
            (None, None) => unreachable!("an absent key is always put"),
        }
    }

    /// Removes every key. All or nothing across a crash.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn clear(&self) -> Result<()> {
        self.inner.clear()
    }

    /// Every entry, in the order of the keys' hashes: see [`iter_from`](Self::iter_from).
    pub fn iter(&self) -> ShardedIter<'_> {
        self.iter_from(0)
    }

    /// The entries from cookie `cookie` on (0: from the start; otherwise the
    /// [`Entry::cookie`] of the last entry a previous iteration returned). Entries come
    /// in the order of their keys' keyed hashes, an order no split, merge or compaction
    /// changes: so an iteration resumed from a cookie, after any number of them,
    /// returns every key present throughout that it had not reached yet, and none it
    /// had returned. (Two keys whose 64-bit hashes are equal, odds of 2^-64 a pair, are
    /// returned together; resuming from the first one's cookie returns it again.)
    pub fn iter_from(&self, cookie: u64) -> ShardedIter<'_> {
        ShardedIter {
            inner: &self.inner,
            next: cookie,
            done: false,
            batch: VecDeque::new(),
        }
    }

    /// Merges sibling shards (the two halves of one range) whose entries would fill less
    /// than a quarter of one shard, and whose logs together take less than a quarter of
    /// [`ShardedOptions::shard_bytes_max`], until none is left (CandyStore's
    /// `merge_small_shards`). Returns the number of merges.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn merge_small_shards(&self) -> Result<u64> {
        let mut merges = 0;
        while let Some((a, b)) = self.small_siblings() {
            let done = {
                let _a = a.writer.lock();
                let _b = b.writer.lock();
                let current = self.inner.current();
                let in_map = |s: &Arc<Shard>| current.shards.iter().any(|c| Arc::ptr_eq(c, s));
                if in_map(&a) && in_map(&b) {
                    let parent = map::Spec {
                        start: a.spec.start,
                        bits: a.spec.bits + 1,
                        incarnation: 0,
                    };
                    self.inner.rewrite(&[&a, &b], &[parent])?;
                    true
                } else {
                    false
                }
            };
            if done {
                merges += 1;
                self.inner.counters.merges.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(merges)
    }

    /// The first pair of small siblings in map order, if any.
    fn small_siblings(&self) -> Option<(Arc<Shard>, Arc<Shard>)> {
        let map = self.inner.current();
        let max = self.inner.options.shard_bytes_max;
        map.shards.windows(2).find_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let siblings = a.spec.bits == b.spec.bits
                && a.spec.bits < 16
                && a.spec.start.is_multiple_of(1 << (a.spec.bits + 1));
            let small = a.entries() + b.entries() < SLOTS as u64 / 4
                && a.live_bytes() + b.live_bytes() < max / 4
                && a.rows_fit_with(b).unwrap_or(false);
            (siblings && small).then(|| (Arc::clone(a), Arc::clone(b)))
        })
    }

    /// Compacts every shard whose dead records take at least half its log, one at a
    /// time (reads and writes of every other shard go on). Returns how many it compacted.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn compact(&self) -> Result<u64> {
        let mut compacted = 0;
        for shard in &self.inner.current().shards {
            let _w = shard.writer.lock();
            let in_map = self
                .inner
                .current()
                .shards
                .iter()
                .any(|c| Arc::ptr_eq(c, shard));
            if in_map && shard.dead_bytes() >= shard.live_bytes() && shard.dead_bytes() > 0 {
                self.inner.rewrite(&[shard], &[shard.spec])?;
                self.inner
                    .counters
                    .compactions
                    .fetch_add(1, Ordering::Relaxed);
                compacted += 1;
            }
        }
        Ok(compacted)
    }

    /// Makes every write before it durable.
    ///
    /// # Errors
    /// `Poisoned` after a failed flush; `Io`.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// A clean shutdown (as dropping the store), reporting its errors.
    ///
    /// # Errors
    /// As [`sync`](Self::sync); after a failure the next open rebuilds the rows.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        self.inner.close()
        // The store drops here, releasing its files.
    }

    /// Figures of the store.
    pub fn stats(&self) -> ShardedStats {
        let map = self.inner.current();
        let entries: u64 = map.shards.iter().map(|s| s.kv_entries()).sum();
        let slots_used: u64 = map.shards.iter().map(|s| s.entries()).sum();
        let data_bytes = map.shards.iter().map(|s| s.data.len()).sum();
        let dead_bytes = map.shards.iter().map(|s| s.dead_bytes()).sum();
        let c = &self.inner.counters;
        ShardedStats {
            entries,
            shards: map.shards.len() as u64,
            fill: slots_used as f64 / (map.shards.len() * SLOTS) as f64,
            data_bytes,
            dead_bytes,
            splits: c.splits.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            merges: c.merges.load(Ordering::Relaxed),
            rebuilt_at_open: self.inner.rebuilt,
            flushes: c.flushes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ShardedStore {
    fn drop(&mut self) {
        // A failure leaves the state not clean: the next open rebuilds the rows.
        if !self.closed {
            let _ = self.inner.close();
        }
    }
}

/// One entry of a [`ShardedIter`].
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: ShardedValue,
    /// Its value.
    pub value: ShardedValue,
    /// Where an iteration resumed with [`ShardedStore::iter_from`] goes on after this
    /// entry.
    pub cookie: u64,
}

/// The entries of a [`ShardedStore`], shard by shard in the order of the keys' hashes:
/// see [`ShardedStore::iter_from`].
pub struct ShardedIter<'a> {
    inner: &'a Inner,
    /// The smallest hash not returned yet.
    next: u64,
    done: bool,
    batch: VecDeque<(u64, Arc<Shard>, Found)>,
}

impl std::fmt::Debug for ShardedIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedIter")
            .field("next", &self.next)
            .field("batch", &self.batch.len())
            .finish()
    }
}

impl ShardedIter<'_> {
    /// Fills the batch with the entries of the shard holding hash `self.next`, from it
    /// on, sorted by hash; moves `next` to that shard's end.
    fn fill(&mut self) -> Result<()> {
        let shard = self.inner.shard_of(Hashed(self.next));
        let mut found = Vec::new();
        for offset in shard.live_offsets()? {
            let rec = shard.read(offset)?;
            if rec.header.kind != record::Kind::Put || rec.header.space != 0 {
                continue;
            }
            let key = rec.header.key(rec.bytes);
            let h = self.inner.hash(key).0;
            if h >= self.next {
                found.push((h, key, offset, rec.header));
            }
        }
        // A slot emptied and another filled for the same key while the pointers were
        // read can show one key twice: keep one.
        found.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        self.batch
            .extend(found.into_iter().map(|(h, _, offset, header)| {
                (
                    h,
                    Arc::clone(&shard),
                    Found {
                        slot: 0,
                        offset,
                        header,
                    },
                )
            }));
        let end = u64::from(shard.spec.end());
        if end >= u64::from(map::SELECTORS) {
            self.done = true;
        } else {
            self.next = end << 48;
        }
        Ok(())
    }
}

impl Iterator for ShardedIter<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        while self.batch.is_empty() {
            if self.done {
                return None;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        let (h, shard, found) = self.batch.pop_front()?;
        // Resume after this entry, unless the next one shares its hash.
        let cookie = match self.batch.front() {
            Some((next, _, _)) if *next == h => h,
            _ => h.saturating_add(1),
        };
        Some(Ok(Entry {
            key: ShardedValue::key(&shard, &found),
            value: ShardedValue::value(&shard, &found),
            cookie,
        }))
    }
}
