//! The sharded store's shared state and its writes: routing a key to its shard, the
//! writer loop that splits or compacts a shard that has no room, the commit that swaps
//! shards in the map, merges, clear, sync and the clean shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::ShardedOptions;
use super::map::{self, CLEAN, FRESH, INCARNATION_MAX, Spec, State};
use super::record::{self, Kind, Op};
use super::shard::{Found, Hashed, Opening, Shard, ShardedValue, entry_hash, footprint};
use crate::limits::{SHARDED_KEY_LEN_BYTES_MAX, SHARDED_SHARDS_MAX, SHARDED_VALUE_LEN_BYTES_MAX};
use crate::{Dir, Entropy, Error, Journal, Result};

/// The shards in force, and for each selector the index of its shard.
pub(super) struct Map {
    pub shards: Vec<Arc<Shard>>,
    route: Box<[u16]>,
}

impl Map {
    pub fn new(shards: Vec<Arc<Shard>>) -> Map {
        let specs: Vec<Spec> = shards.iter().map(|s| s.spec).collect();
        Map {
            route: map::route(&specs),
            shards,
        }
    }

    fn shard_of(&self, h: Hashed) -> &Arc<Shard> {
        &self.shards[usize::from(self.route[h.selector() as usize])]
    }
}

/// What a write does once it has seen the key's current value.
pub(super) enum Action<'v> {
    Keep,
    Put(&'v [u8]),
    Delete,
}

/// What [`Inner::write`] did: the value before, and the new value's handle if it put one.
pub(super) struct Written {
    pub old: Option<ShardedValue>,
    pub new: Option<ShardedValue>,
}

/// The shard a write wrote to, and its log's end after the write's record.
type Wrote = (Arc<Shard>, u64);

/// Counters of the maintenance done since open.
#[derive(Default)]
pub(super) struct Counters {
    pub splits: AtomicU64,
    pub compactions: AtomicU64,
    pub merges: AtomicU64,
    /// Flushes of durable writes (`sync_each_write`): fewer than the writes when
    /// concurrent writers share them.
    pub flushes: AtomicU64,
}

pub(super) struct Inner {
    pub dir: Dir,
    pub name: String,
    pub options: ShardedOptions,
    pub state: Journal<State>,
    pub entropy: Entropy,
    pub store_id: u64,
    /// The map in force: loaded without a lock by every lookup (a shared lock's counter
    /// would bounce between the cores of concurrent readers), replaced whole by a commit.
    pub map: ArcSwap<Map>,
    /// Serializes changes of the map (and of the state) and their commits.
    pub map_lock: Mutex<()>,
    /// Set once the state says durably that the store is not clean.
    pub dirty: AtomicBool,
    /// Set when a commit failed: the store refuses writes until reopened.
    pub poisoned: AtomicBool,
    pub rebuilt: u64,
    pub counters: Counters,
}

pub(super) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > SHARDED_KEY_LEN_BYTES_MAX {
        return Err(Error::limit(
            "SHARDED_KEY_LEN_BYTES_MAX",
            key.len() as u64,
            SHARDED_KEY_LEN_BYTES_MAX as u64,
        ));
    }
    Ok(())
}

pub(super) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > SHARDED_VALUE_LEN_BYTES_MAX {
        return Err(Error::limit(
            "SHARDED_VALUE_LEN_BYTES_MAX",
            value.len() as u64,
            SHARDED_VALUE_LEN_BYTES_MAX as u64,
        ));
    }
    Ok(())
}

impl Inner {
    pub fn hash(&self, key: &[u8]) -> Hashed {
        Hashed(self.entropy.hash(key))
    }

    pub fn shard_of(&self, h: Hashed) -> Arc<Shard> {
        Arc::clone(self.map.load().shard_of(h))
    }

    pub fn current(&self) -> Arc<Map> {
        self.map.load_full()
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<ShardedValue>> {
        let h = self.hash(key);
        let map = self.map.load();
        let shard = map.shard_of(h);
        Ok(shard
            .find(0, key, h)?
            .map(|found| ShardedValue::value(shard, &found)))
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                path: self.state.path().to_path_buf(),
            });
        }
        Ok(())
    }

    /// Says durably, before the first write of a session, that the store is not clean.
    fn make_dirty(&self) -> Result<()> {
        if self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let _map = self.map_lock.lock();
        if !self.dirty.load(Ordering::Acquire) {
            let mut s = self.state.get();
            if s.flags & (CLEAN | FRESH) != 0 {
                s.flags &= !(CLEAN | FRESH);
                self.commit_state(s)?;
            }
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Writes and syncs the state; a failure poisons the store.
    fn commit_state(&self, s: State) -> Result<()> {
        let result = self.state.set(s).and_then(|()| self.state.sync());
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// Applies `decide` to `key`'s current value atomically: the shard's writer lock is
    /// held from the lookup to the write. `decide` may be called again if the shard had
    /// to split or be compacted first. The new value's handle is made only if `want_new`.
    pub fn write<'v>(
        &self,
        key: &[u8],
        want_new: bool,
        decide: impl FnMut(Option<&ShardedValue>) -> Action<'v>,
    ) -> Result<Written> {
        check_key(key)?;
        self.check_writable()?;
        self.make_dirty()?;
        let (written, wrote) = self.write_locked(key, want_new, decide)?;
        if let Some((shard, end)) = wrote {
            self.make_durable(&shard, end)?;
        }
        Ok(written)
    }

    /// With [`ShardedOptions::sync_each_write`], makes `shard`'s log durable up to `end`
    /// (the end of a write's record, or of the log a write that changed nothing saw),
    /// sharing the flush with every writer whose record it covers (group commit: one
    /// flush of the log's new bytes, however many wait). Nothing to flush: no flush.
    fn make_durable(&self, shard: &Shard, end: u64) -> Result<()> {
        if !self.options.sync_each_write {
            return Ok(());
        }
        match shard.sync_to(end) {
            Ok(flushed) => {
                self.counters
                    .flushes
                    .fetch_add(u64::from(flushed), Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // The log is poisoned; the store refuses writes until reopened.
                self.poisoned.store(true, Ordering::Release);
                Err(e.applied_but_not_synced())
            }
        }
    }

    /// [`write`](Self::write) under the shard's writer lock; returns what it did and, if
    /// it wrote, the shard and its log's end after the record.
    fn write_locked<'v>(
        &self,
        key: &[u8],
        want_new: bool,
        mut decide: impl FnMut(Option<&ShardedValue>) -> Action<'v>,
    ) -> Result<(Written, Option<Wrote>)> {
        let h = self.hash(key);
        loop {
            let shard = self.shard_of(h);
            let _writer = shard.writer.lock();
            if self.is_replaced(&shard) {
                continue;
            }
            let (found, free) = match shard.find_or_free(0, key, h)? {
                Ok(found) => (Some(found), None),
                Err(free) => (None, free),
            };
            let old = found.as_ref().map(|f| ShardedValue::value(&shard, f));
            // A write that changes nothing still answers from what it saw, which a
            // durable writer's flush may not cover yet: it waits for the log up to here.
            let seen = || Some((Arc::clone(&shard), shard.data.len()));
            match decide(old.as_ref()) {
                Action::Keep => return Ok((Written { old, new: None }, seen())),
                Action::Delete => {
                    let Some(f) = found else {
                        return Ok((Written { old, new: None }, seen()));
                    };
                    shard.delete(0, key, h, f)?;
                    let end = shard.data.len();
                    return Ok((Written { old, new: None }, Some((Arc::clone(&shard), end))));
                }
                Action::Put(value) => {
                    check_value(value)?;
                    let slot = match (found, free) {
                        (Some(f), _) => f.slot,
                        (None, Some(slot)) => slot,
                        (None, None) => {
                            self.relieve(&shard, true)?;
                            continue;
                        }
                    };
                    let fp = footprint(record::len(key, value) as u64);
                    if shard.data.len() + fp > self.options.shard_bytes_max
                        && self.relieve(&shard, false)?
                    {
                        continue;
                    }
                    let offset = shard.put(0, key, value, h, found, slot)?;
                    let new = match want_new {
                        true => {
                            let header = shard.read(offset)?.header;
                            let found = Found {
                                slot,
                                offset,
                                header,
                            };
                            Some(ShardedValue::value(&shard, &found))
                        }
                        false => None,
                    };
                    let end = shard.data.len();
                    return Ok((Written { old, new }, Some((Arc::clone(&shard), end))));
                }
            }
        }
    }

    /// Runs `f` on the entries of group `group` (a list or queue: every entry of a
    /// group lives in the shard of the group's hash) with the shard's writer lock held,
    /// then writes the changes it returns as one batch record: all of them or, after a
    /// crash, none. `f` may be called again if the shard had to split or be compacted
    /// first.
    pub fn atomically<R>(
        &self,
        group: &[u8],
        f: impl FnMut(&Group<'_>) -> Result<(Vec<Change>, R)>,
    ) -> Result<R> {
        self.on_group(group, true, f)
    }

    /// As [`atomically`](Self::atomically) for a read, which returns no changes: it sees
    /// writes at once, as [`get`](Self::get) does, and waits for no flush.
    pub fn read_group<R>(
        &self,
        group: &[u8],
        f: impl FnMut(&Group<'_>) -> Result<(Vec<Change>, R)>,
    ) -> Result<R> {
        self.on_group(group, false, f)
    }

    /// [`atomically`](Self::atomically) (`write`) or [`read_group`](Self::read_group).
    pub fn on_group<R>(
        &self,
        group: &[u8],
        write: bool,
        f: impl FnMut(&Group<'_>) -> Result<(Vec<Change>, R)>,
    ) -> Result<R> {
        let (out, wrote) = self.atomically_locked(group, f)?;
        if let Some((shard, end)) = wrote.filter(|_| write) {
            self.make_durable(&shard, end)?;
        }
        Ok(out)
    }

    fn atomically_locked<R>(
        &self,
        group: &[u8],
        mut f: impl FnMut(&Group<'_>) -> Result<(Vec<Change>, R)>,
    ) -> Result<(R, Option<Wrote>)> {
        let h = self.hash(group);
        loop {
            let shard = self.shard_of(h);
            let _writer = shard.writer.lock();
            if self.is_replaced(&shard) {
                continue;
            }
            let g = Group {
                shard: &shard,
                entropy: &self.entropy,
            };
            let (mut changes, out) = f(&g)?;
            if changes.is_empty() {
                // As a write that changes nothing (see `write_locked`).
                return Ok((out, Some((Arc::clone(&shard), shard.data.len()))));
            }
            // Deletes first (each key is named once, so the order of different keys'
            // changes is free): a slot a delete frees can then take a put of the same
            // batch, here and when a rebuild replays the batch.
            changes.sort_by_key(|c| c.value.is_some());
            self.check_writable()?;
            self.make_dirty()?;
            let mut targets = Vec::with_capacity(changes.len());
            let mut new = Vec::new();
            let mut freed = Vec::new();
            for c in &changes {
                let h = g.hash(c.space, &c.key)?;
                let old = shard.find(c.space, &c.key, h)?;
                match (&old, &c.value) {
                    (None, Some(_)) => new.push(h),
                    (Some(_), None) => freed.push(h),
                    _ => {}
                }
                targets.push((h, old));
            }
            if !shard.has_room(&new, &freed)? {
                self.relieve(&shard, true)?;
                continue;
            }
            let ops: Vec<Op<'_>> = changes
                .iter()
                .map(|c| Op {
                    kind: if c.value.is_some() {
                        Kind::Put
                    } else {
                        Kind::Delete
                    },
                    space: c.space,
                    key: &c.key,
                    value: c.value.as_deref().unwrap_or_default(),
                })
                .collect();
            let len = record::batch_len(&ops);
            if len > record::HEADER_BYTES + record::BATCH_BYTES_MAX {
                return Err(Error::limit(
                    "SHARDED batch bytes (what one list or queue operation writes: \
                     SHARDED_VALUE_LEN_BYTES_MAX + 1 MiB)",
                    len as u64,
                    (record::HEADER_BYTES + record::BATCH_BYTES_MAX) as u64,
                ));
            }
            if shard.data.len() + footprint(len as u64) > self.options.shard_bytes_max
                && self.relieve(&shard, false)?
            {
                continue;
            }
            shard.write_batch(&ops, &targets)?;
            let end = shard.data.len();
            return Ok((out, Some((Arc::clone(&shard), end))));
        }
    }

    /// Whether `shard` has left the map (a split, merge, compaction or clear replaced
    /// it): a writer that locked it goes back to the map.
    fn is_replaced(&self, shard: &Arc<Shard>) -> bool {
        let map = self.map.load();
        !Arc::ptr_eq(
            map.shard_of(Hashed(u64::from(shard.spec.start) << 48)),
            shard,
        )
    }

    /// Makes room in `shard`, whose writer lock the caller holds: a split if its row is
    /// full (`row_full`) or its live data is over half the shard size, a compaction if
    /// dead records take at least half its log. Returns whether it did either (the
    /// shard is then replaced).
    fn relieve(&self, shard: &Arc<Shard>, row_full: bool) -> Result<bool> {
        let live = shard.live_bytes();
        let dead = shard.dead_bytes();
        // Only a compaction that frees a good part of the shard: right after one, the
        // next write over the size must not start another.
        if !row_full && dead >= live && dead > self.options.shard_bytes_max / 4 {
            self.rewrite(&[shard], &[shard.spec])?;
            self.counters.compactions.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        // A split for size needs two entries to part; one huge value stays where it is.
        let too_big = live * 2 > self.options.shard_bytes_max && shard.entries() >= 2;
        if shard.spec.can_split() && (row_full || too_big) {
            if self.current().shards.len() >= SHARDED_SHARDS_MAX {
                return Err(Error::limit(
                    "SHARDED_SHARDS_MAX",
                    SHARDED_SHARDS_MAX as u64 + 1,
                    SHARDED_SHARDS_MAX as u64,
                ));
            }
            self.rewrite(&[shard], &shard.spec.halves(0, 0))?;
            self.counters.splits.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        if row_full {
            return Err(Error::limit(
                "SHARDED row entries (a shard of one selector cannot split)",
                super::row::ROW_WIDTH as u64 + 1,
                super::row::ROW_WIDTH as u64,
            ));
        }
        Ok(false)
    }

    /// Reserves `n` incarnations, durably, before their files are made.
    fn reserve(&self, n: u64) -> Result<u64> {
        let _map = self.map_lock.lock();
        let mut s = self.state.get();
        let first = s.next_incarnation;
        if first + n > INCARNATION_MAX {
            return Err(Error::limit(
                "shard incarnations",
                first + n,
                INCARNATION_MAX,
            ));
        }
        s.next_incarnation = first + n;
        self.commit_state(s)?;
        Ok(first)
    }

    /// Replaces `old` (shards whose writer locks the caller holds, adjacent, in map
    /// order) by new shards covering `targets` (their ranges; the incarnations are
    /// assigned here): makes them, copies every live record into them, makes them
    /// durable, and commits the map. On failure the new shards' files are removed and
    /// the old ones stay in force.
    pub fn rewrite(&self, old: &[&Arc<Shard>], targets: &[Spec]) -> Result<()> {
        self.replace(old, targets, true)
    }

    /// Replaces `old` by new, empty shards covering `targets` (a clear).
    fn rewrite_empty(&self, old: &[&Arc<Shard>], targets: &[Spec]) -> Result<()> {
        self.replace(old, targets, false)
    }

    fn replace(&self, old: &[&Arc<Shard>], targets: &[Spec], copy: bool) -> Result<()> {
        self.check_writable()?;
        let first = self.reserve(targets.len() as u64)?;
        let mut made = Vec::with_capacity(targets.len());
        let result = (|| {
            for (i, t) in targets.iter().enumerate() {
                let spec = Spec {
                    incarnation: first + i as u64,
                    ..*t
                };
                made.push(Arc::new(Shard::open(
                    &self.dir,
                    &self.name,
                    spec,
                    self.store_id,
                    Opening::New,
                )?));
            }
            if copy {
                let sources: Vec<&Shard> = old.iter().map(|s| &***s).collect();
                let targets: Vec<&Shard> = made.iter().map(|s| &**s).collect();
                Shard::copy_all(&self.entropy, &sources, &targets)?;
            }
            for shard in &made {
                shard.data.sync()?;
            }
            self.swap(old, &made)
        })();
        match result {
            Ok(()) => {
                for shard in old {
                    shard.retire();
                }
                Ok(())
            }
            Err(e) => {
                for shard in &made {
                    shard.retire();
                }
                Err(e)
            }
        }
    }

    /// Commits a map in which `made` stand where `old` stood.
    fn swap(&self, old: &[&Arc<Shard>], made: &[Arc<Shard>]) -> Result<()> {
        let _map = self.map_lock.lock();
        let current = self.current();
        let mut shards: Vec<Arc<Shard>> = current
            .shards
            .iter()
            .filter(|s| !old.iter().any(|o| Arc::ptr_eq(o, s)))
            .cloned()
            .collect();
        debug_assert_eq!(shards.len() + old.len(), current.shards.len());
        shards.extend(made.iter().cloned());
        shards.sort_by_key(|s| s.spec.start);
        let specs: Vec<Spec> = shards.iter().map(|s| s.spec).collect();
        let mut s = self.state.get();
        map::set_specs(&mut s, &specs);
        self.commit_state(s)?;
        self.map.store(Arc::new(Map::new(shards)));
        Ok(())
    }

    /// Runs `f` with every shard's writer lock held (taken in map order, the order
    /// every path that holds two takes them in) and a map no one can change meanwhile.
    pub fn with_all_locked<R>(&self, f: impl FnOnce(&Map) -> Result<R>) -> Result<R> {
        loop {
            let map = self.current();
            let guards: Vec<_> = map.shards.iter().map(|s| s.writer.lock()).collect();
            // A change of the map needs the writer lock of a shard it replaces: once all
            // are held, the map is the one they were taken from, or it changed before.
            if Arc::ptr_eq(&map, &self.current()) {
                let out = f(&map);
                drop(guards);
                return out;
            }
        }
    }

    /// Removes every key: one empty shard (or the number `expected_keys` asks for)
    /// takes the place of all.
    pub fn clear(&self) -> Result<()> {
        self.check_writable()?;
        self.make_dirty()?;
        self.with_all_locked(|map| {
            let old: Vec<&Arc<Shard>> = map.shards.iter().collect();
            let targets = map::even(initial_shards(self.options.expected_keys), 0);
            self.rewrite_empty(&old, &targets)
        })
    }

    /// Makes every write before it durable: one flush of each shard's log.
    pub fn sync(&self) -> Result<()> {
        for shard in &self.current().shards {
            shard.data.sync()?;
        }
        Ok(())
    }

    /// A clean shutdown: every shard durable with a check of its rows, then the state
    /// clean.
    pub fn close(&self) -> Result<()> {
        self.check_writable()?;
        self.with_all_locked(|map| {
            for shard in &map.shards {
                shard.close()?;
            }
            let _map = self.map_lock.lock();
            let mut s = self.state.get();
            if s.flags & CLEAN == 0 {
                s.flags |= CLEAN;
                self.commit_state(s)?;
            }
            self.dirty.store(false, Ordering::Release);
            Ok(())
        })
    }
}

/// A group's entries, seen under its shard's writer lock (see [`Inner::atomically`]).
pub(super) struct Group<'a> {
    pub shard: &'a Arc<Shard>,
    entropy: &'a Entropy,
}

impl Group<'_> {
    fn hash(&self, space: u8, key: &[u8]) -> Result<Hashed> {
        entry_hash(self.entropy, space, key).ok_or_else(|| {
            self.shard
                .corrupted(0, "a list's or queue's key without its group")
        })
    }

    /// The live entry of `key` in `space`.
    pub fn find(&self, space: u8, key: &[u8]) -> Result<Option<Found>> {
        self.shard.find(space, key, self.hash(space, key)?)
    }

    /// The value of the entry `found`, past its first `skip` bytes.
    pub fn value(&self, found: &Found, skip: usize) -> ShardedValue {
        ShardedValue::value_after(self.shard, found, skip)
    }

    /// The error for an entry whose value has the wrong shape.
    pub fn malformed(&self, found: &Found, what: &str) -> Error {
        self.shard.corrupted(found.offset, what)
    }
}

/// A put (`value` given) or delete of one entry of a group.
pub(super) struct Change {
    pub space: u8,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Shards a new (or cleared) store starts with for `expected_keys` keys: enough for each
/// to be about half full, a power of two.
pub(super) fn initial_shards(expected_keys: u64) -> u32 {
    let per_shard = super::shard::SLOTS as u64 / 2;
    let n = expected_keys.div_ceil(per_shard).max(1).next_power_of_two();
    n.min(SHARDED_SHARDS_MAX as u64) as u32
}
