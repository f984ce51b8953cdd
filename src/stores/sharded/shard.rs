//! One shard of a sharded store (`{store}/s{incarnation}`): its rows of signatures
//! (`sigs`, a [`RandomAccess`] of 64 rows), the entry pointers beside them (`ptrs`, a
//! [`RandomAccess`] of 64 × 512 words), its records (`data`, an [`AppendOnly`]) and the
//! check of its rows written at a clean shutdown (`meta`, a [`Journal`]). Lookups, the
//! writes of one entry, rebuilding the rows from the records, and copying live records
//! into new shards live here; the choice of when to split, merge or compact, and the
//! commit that swaps shards in the map, are the store's (`store.rs`).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};
use parking_lot::Mutex;

use super::map::Spec;
use super::record::{self, Header, IDENTITY_BYTES, Kind, Op};
use super::row::{self, FREE, Filters, ROW_WIDTH, ROWS, Sigs};
use crate::{AppendOnly, Dir, Entropy, Error, Journal, RandomAccess, Result, Span};

/// Entry slots of a shard.
pub(super) const SLOTS: usize = ROWS * ROW_WIDTH;
/// A pointer word's mark of a used slot; the low 48 bits are the record's offset / 16.
const USED: u64 = 1 << 63;
const OFFSET_MASK: u64 = (1 << 48) - 1;
/// How far past its end a shard's log has space made ahead of its appends (by the
/// AppendOnly's helper thread), at most. A store holds many shards of a few MiB each, and
/// the AppendOnly's own look-ahead (up to two lanes, each as large as all before it)
/// would triple their disk.
const AHEAD_BYTES: u64 = 1 << 20;
/// Removals from a row after which its filter is rebuilt (they leave their bits set,
/// which makes the filter claim more keys than the row holds).
const STALE_MAX: u32 = (ROW_WIDTH / 8) as u32;
/// Records (their frames) start at multiples of this in the log.
const GRAIN: u64 = AppendOnly::FRAME_BYTES;

/// Where a key's hash sends it: the top 16 bits pick the shard, the next 16 the row,
/// the low 32 are the signature (0, which marks a free entry, is taken as 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hashed(pub u64);

impl Hashed {
    pub fn selector(self) -> u32 {
        (self.0 >> 48) as u32
    }

    fn row(self) -> usize {
        ((self.0 >> 32) & 0xFFFF) as usize % ROWS
    }

    fn sig(self) -> u32 {
        match self.0 as u32 {
            FREE => 1,
            s => s,
        }
    }
}

/// The hash that places the entry of `key` in key space `space`: the key's keyed hash
/// for the key-value map's keys (space 0); for a list's or queue's entries, whose keys
/// start with their group's key (a u16 length, then the bytes), the group's hash picks
/// the shard (its top 16 bits), so that every entry of a group lives in one shard and one
/// batch record can change several atomically. `None` for a key without that prefix.
pub(super) fn entry_hash(entropy: &Entropy, space: u8, key: &[u8]) -> Option<Hashed> {
    const LOW: u64 = (1 << 48) - 1;
    if space == 0 {
        return Some(Hashed(entropy.hash(key)));
    }
    let group = group_of(key)?;
    Some(Hashed(
        (entropy.hash(group) & !LOW) | (entropy.hash(key) & LOW),
    ))
}

/// The group key a list's or queue's entry key starts with.
pub(super) fn group_of(key: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_le_bytes(key.get(..2)?.try_into().ok()?));
    key.get(2..2 + len)
}

/// A shard's check of its rows, written at a clean shutdown.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub(super) struct Meta {
    pub incarnation: u64,
    pub entries: u64,
    /// Of `entries`, the key-value map's (the rest are lists' and queues').
    pub kv_entries: u64,
    pub live_bytes: u64,
    /// Log bytes of every record but the identity, live or not (`record_bytes -
    /// live_bytes` is what a compaction frees; padding is not counted). Each record counts
    /// as it would stand alone, as a compaction copies it: one inside a batch counts a
    /// frame it does not have.
    pub record_bytes: u64,
    /// The data log's length the rows cover.
    pub data_len: u64,
    /// XXH3-64 of the rows' and pointers' bytes.
    pub digest: u64,
}

/// A live entry found by a lookup.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    pub slot: usize,
    pub offset: u64,
    pub header: Header,
}

impl Found {
    /// Log bytes the entry's record takes.
    pub fn footprint(&self) -> u64 {
        footprint(self.header.record_len() as u64)
    }
}

/// A record read and checked.
pub(super) struct Read<'a> {
    pub header: Header,
    pub bytes: &'a [u8],
}

/// Log bytes a record of `len` bytes takes: its frame, and padding to the grain.
pub(super) fn footprint(len: u64) -> u64 {
    GRAIN + len.div_ceil(GRAIN) * GRAIN
}

/// The directory name of shard incarnation `n` of store `store`.
pub(super) fn shard_name(store: &str, n: u64) -> String {
    format!("{store}/s{n}")
}

/// Removes a retired shard's files when dropped (declared after the structures it
/// removes, so that they and their claims on the names are gone first).
struct Remover {
    dir: Dir,
    name: String,
    retired: AtomicBool,
}

impl Drop for Remover {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // A failure leaves the files behind; the next open removes every shard the
            // map does not name.
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// One shard.
pub(super) struct Shard {
    pub spec: Spec,
    sigs: RandomAccess<Sigs>,
    /// The rows' filters, in memory: built from the rows at open and kept with them.
    filters: Filters,
    /// Per row, removals since its filter was last rebuilt (see [`STALE_MAX`]).
    stale: Box<[AtomicU32]>,
    ptrs: RandomAccess<u64>,
    meta: Journal<Meta>,
    pub data: AppendOnly,
    /// Held by the shard's writers, and by a split, merge or compaction of it.
    pub writer: Mutex<()>,
    /// Held by the one durable writer flushing the log for every writer waiting (see
    /// [`sync_to`](Self::sync_to)).
    group: Mutex<()>,
    entries: AtomicU64,
    kv_entries: AtomicU64,
    live_bytes: AtomicU64,
    /// See [`Meta::record_bytes`].
    record_bytes: AtomicU64,
    /// The log's look-ahead limit last set (see [`AHEAD_BYTES`]).
    ahead: AtomicU64,
    remover: Remover,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("spec", &self.spec)
            .field("entries", &self.entries())
            .finish_non_exhaustive()
    }
}

/// How a shard is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Opening {
    /// A new shard: its files must not hold anything yet.
    New,
    /// A shard of a store that was never written: it may have no files yet.
    Fresh,
    /// A shard the map names: its log must begin with its identity.
    Existing,
}

impl Shard {
    /// Opens the files of shard `spec` of the store `store` whose id is `id`.
    ///
    /// # Errors
    /// `Incompatible` for a log that names another store or shard; `Corrupted` for an
    /// existing shard whose log is empty (its files were lost); as opening the
    /// structures.
    pub fn open(dir: &Dir, store: &str, spec: Spec, id: u64, how: Opening) -> Result<Shard> {
        let name = shard_name(store, spec.incarnation);
        let shard = Shard {
            spec,
            sigs: RandomAccess::open_with_first_lane(dir, &format!("{name}/sigs"), ROWS as u64)?,
            filters: Filters::new(ROWS),
            stale: (0..ROWS).map(|_| AtomicU32::new(0)).collect(),
            ptrs: RandomAccess::open_with_first_lane(dir, &format!("{name}/ptrs"), SLOTS as u64)?,
            meta: Journal::open(dir, &format!("{name}/meta"))?,
            data: AppendOnly::open(dir, &format!("{name}/data"))?,
            writer: Mutex::new(()),
            group: Mutex::new(()),
            entries: AtomicU64::new(0),
            kv_entries: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            record_bytes: AtomicU64::new(0),
            ahead: AtomicU64::new(AHEAD_BYTES),
            remover: Remover {
                dir: dir.clone(),
                name,
                retired: AtomicBool::new(false),
            },
        };
        shard.data.limit_ahead(AHEAD_BYTES);
        shard.refresh_filters()?;
        let path = || dir.path().join(&shard.remover.name);
        if shard.data.format() < 2 {
            return Err(Error::incompatible(
                &path(),
                "a sharded store's data log must be framed (AppendOnly format 2)",
            ));
        }
        let identity = identity(id, spec.incarnation);
        match shard.data.records(0).next() {
            None if how != Opening::Existing => {
                shard.append(Kind::Identity, 0, &identity, &[])?;
            }
            None => {
                return Err(Error::corrupted(
                    &path(),
                    0,
                    format!(
                        "shard {} of the sharded store {store:?} has an empty log: its files \
                         were lost",
                        spec.incarnation
                    ),
                ));
            }
            Some(_) if how == Opening::New => {
                return Err(Error::incompatible(
                    &path(),
                    "a new shard's files already hold records",
                ));
            }
            Some(span) => {
                let rec = shard.read(span?.offset())?;
                if rec.header.kind != Kind::Identity || rec.header.key(rec.bytes) != identity {
                    return Err(Error::incompatible(
                        &path(),
                        format!(
                            "this log is not shard {} of the sharded store {store:?} (its \
                             first record names another store or shard)",
                            spec.incarnation
                        ),
                    ));
                }
            }
        }
        Ok(shard)
    }

    /// Builds every row's filter from the row as it is.
    fn refresh_filters(&self) -> Result<()> {
        let mut sigs = vec![[FREE; ROW_WIDTH]; ROWS];
        self.sigs.read_many(0, &mut sigs)?;
        for (r, row) in sigs.iter().enumerate() {
            self.filters.rebuild_row(r, row);
            self.stale[r].store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes the log durable up to `end` at least; returns whether this call flushed (a
    /// flush made meanwhile by another writer may have covered `end` already: writers
    /// waiting here while one flushes find their records covered, and return).
    pub fn sync_to(&self, end: u64) -> Result<bool> {
        if self.data.durable_len() >= end {
            return Ok(false);
        }
        let _group = self.group.lock();
        if self.data.durable_len() >= end {
            return Ok(false);
        }
        self.data.sync()?;
        Ok(true)
    }

    /// Marks the shard's files for removal once the last handle to it is dropped.
    pub fn retire(&self) {
        self.remover.retired.store(true, Ordering::Release);
    }

    /// Entries of every key space: the slots in use.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Entries of the key-value map.
    pub fn kv_entries(&self) -> u64 {
        self.kv_entries.load(Ordering::Relaxed)
    }

    /// Log bytes the live entries' records take.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Log bytes of records no live entry needs: what a compaction would free. Padding
    /// (at a lane's end, which a copy has too) and the identity record are not counted,
    /// so that a shard just compacted has none, whatever its records' sizes.
    pub fn dead_bytes(&self) -> u64 {
        self.record_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.live_bytes())
    }

    /// The error for damage at log offset `offset`, naming the file and position.
    pub fn corrupted(&self, offset: u64, what: impl Into<String>) -> Error {
        let (path, position) = self
            .data
            .file_position(offset)
            .unwrap_or_else(|| (self.remover.dir.path().join(&self.remover.name), offset));
        Error::corrupted(&path, position, what)
    }

    /// The record at `offset`, its checksum checked.
    ///
    /// # Errors
    /// `Corrupted` (naming the data file and position) if it is not there, or damaged.
    pub fn read(&self, offset: u64) -> Result<Read<'_>> {
        let head = self
            .data
            .get(Span::new(offset, record::HEADER_BYTES as u64))
            .map_err(|_| self.corrupted(offset, "a record's header lies outside the log"))?;
        let header = Header::parse(head).map_err(|what| {
            self.corrupted(offset, format!("the record at log offset {offset}: {what}"))
        })?;
        let bytes = self
            .data
            .get(Span::new(offset, header.record_len() as u64))
            .map_err(|_| self.corrupted(offset, "a record runs past the log's end"))?;
        if !header.holds(bytes) {
            return Err(self.corrupted(
                offset,
                format!("the record at log offset {offset}: checksum does not hold"),
            ));
        }
        Ok(Read { header, bytes })
    }

    /// Appends a record; returns its offset and footprint.
    pub fn append(&self, kind: Kind, space: u8, key: &[u8], value: &[u8]) -> Result<(u64, u64)> {
        let span = self
            .data
            .append_with(record::len(key, value), 1, |_, dest| {
                record::encode(dest, kind, space, key, value)
            })?;
        self.look_ahead(span.end());
        Ok((span.offset(), footprint(span.len())))
    }

    /// Moves the log's look-ahead limit along once its end `end` nears it.
    fn look_ahead(&self, end: u64) {
        if end + AHEAD_BYTES / 2 > self.ahead.load(Ordering::Relaxed) {
            self.ahead.store(end + AHEAD_BYTES, Ordering::Relaxed);
            self.data.limit_ahead(end + AHEAD_BYTES);
        }
    }

    /// The live entry of `key`, if any.
    ///
    /// # Errors
    /// `Corrupted` if a pointer leads to a damaged record.
    pub fn find(&self, space: u8, key: &[u8], h: Hashed) -> Result<Option<Found>> {
        if !self.filters.may_hold(h.row(), h.sig()) {
            return Ok(None);
        }
        match self.sigs.get(h.row() as u64)? {
            None => Ok(None),
            Some(sigs) => self.find_in(&sigs, space, key, h),
        }
    }

    /// The live entry of `key` among the matches of `h`'s signature in `sigs`, its row.
    fn find_in(&self, sigs: &Sigs, space: u8, key: &[u8], h: Hashed) -> Result<Option<Found>> {
        let row = h.row();
        for i in row::matches(sigs, h.sig()) {
            let slot = row * ROW_WIDTH + i;
            let word = self.ptrs.read(slot as u64)?;
            if word & USED == 0 {
                continue;
            }
            let offset = (word & OFFSET_MASK) * GRAIN;
            let rec = self.read(offset)?;
            if rec.header.kind == Kind::Put
                && rec.header.space == space
                && rec.header.key(rec.bytes) == key
            {
                return Ok(Some(Found {
                    slot,
                    offset,
                    header: rec.header,
                }));
            }
        }
        Ok(None)
    }

    /// The live entry of `key` (as [`find`](Self::find)) or, if there is none, the first
    /// free slot of its row (`None` if the row is full): one read of the row for a write.
    pub fn find_or_free(
        &self,
        space: u8,
        key: &[u8],
        h: Hashed,
    ) -> Result<std::result::Result<Found, Option<usize>>> {
        let row = h.row();
        let Some(sigs) = self.sigs.get(row as u64)? else {
            return Ok(Err(Some(row * ROW_WIDTH)));
        };
        if self.filters.may_hold(row, h.sig())
            && let Some(found) = self.find_in(&sigs, space, key, h)?
        {
            return Ok(Ok(found));
        }
        Ok(Err(row::first(&sigs, FREE).map(|i| row * ROW_WIDTH + i)))
    }

    /// The first free slot of `h`'s row, if the row is not full.
    pub fn free_slot(&self, h: Hashed) -> Result<Option<usize>> {
        let row = h.row();
        // Copied out and the guard dropped before any write of the row (see
        // `RandomAccess::with_mut`).
        let free = match self.sigs.get(row as u64)? {
            None => Some(0),
            Some(sigs) => row::first(&sigs, FREE),
        };
        Ok(free.map(|i| row * ROW_WIDTH + i))
    }

    /// Writes `key`'s new value: a record, then its pointer (and, for a new key, its
    /// signature in `slot`, a free slot of its row). The caller holds the writer lock.
    /// Returns the record's offset.
    pub fn put(
        &self,
        space: u8,
        key: &[u8],
        value: &[u8],
        h: Hashed,
        old: Option<Found>,
        slot: usize,
    ) -> Result<u64> {
        let (offset, footprint) = self.append(Kind::Put, space, key, value)?;
        self.record_bytes.fetch_add(footprint, Ordering::Relaxed);
        self.point(space, h, old, slot, offset, footprint)?;
        Ok(offset)
    }

    /// Points slot `slot` (the entry `old`'s, or a free one of `h`'s row) at the record
    /// at `offset`.
    fn point(
        &self,
        space: u8,
        h: Hashed,
        old: Option<Found>,
        slot: usize,
        offset: u64,
        footprint: u64,
    ) -> Result<()> {
        // The pointer before the signature: a reader that sees the signature finds it.
        self.ptrs.set(slot as u64, pointer(offset))?;
        match old {
            Some(old) => {
                self.live_bytes
                    .fetch_sub(old.footprint(), Ordering::Relaxed);
            }
            None => {
                // The filter before the row: a reader that finds the signature in the
                // row finds it in the filter first.
                self.filters.insert(h.row(), h.sig());
                self.sigs.with_mut(h.row() as u64, |sigs| {
                    sigs[slot % ROW_WIDTH] = h.sig();
                })?;
                self.entries.fetch_add(1, Ordering::Relaxed);
                if space == 0 {
                    self.kv_entries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.live_bytes.fetch_add(footprint, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `key`'s entry `old`: a delete record, then its signature and pointer. The
    /// caller holds the writer lock.
    pub fn delete(&self, space: u8, key: &[u8], h: Hashed, old: Found) -> Result<()> {
        let (_, footprint) = self.append(Kind::Delete, space, key, &[])?;
        self.record_bytes.fetch_add(footprint, Ordering::Relaxed);
        self.unpoint(space, h, old)
    }

    /// Frees the slot of the entry `old`.
    fn unpoint(&self, space: u8, h: Hashed, old: Found) -> Result<()> {
        let row = h.row();
        self.sigs.with_mut(row as u64, |sigs| {
            sigs[old.slot % ROW_WIDTH] = FREE;
        })?;
        if self.stale[row].fetch_add(1, Ordering::Relaxed) + 1 >= STALE_MAX {
            // Writers of this shard hold its writer lock: no signature enters the row
            // between this read and the rebuild.
            self.filters.rebuild_row(row, &self.sigs.read(row as u64)?);
            self.stale[row].store(0, Ordering::Relaxed);
        }
        self.ptrs.set(old.slot as u64, 0)?;
        self.entries.fetch_sub(1, Ordering::Relaxed);
        if space == 0 {
            self.kv_entries.fetch_sub(1, Ordering::Relaxed);
        }
        self.live_bytes
            .fetch_sub(old.footprint(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether the rows have a free slot for every entry of `new` (the hashes of entries
    /// to create), once the entries of `freed` (in the same batch, applied in order: a
    /// slot freed may be taken by a later entry) are gone.
    pub fn has_room(&self, new: &[Hashed], freed: &[Hashed]) -> Result<bool> {
        let mut need = std::collections::HashMap::<usize, isize>::new();
        for h in new {
            *need.entry(h.row()).or_default() += 1;
        }
        for h in freed {
            *need.entry(h.row()).or_default() -= 1;
        }
        for (row, n) in need {
            let Ok(n) = usize::try_from(n) else {
                continue;
            };
            let free = match self.sigs.get(row as u64)? {
                None => ROW_WIDTH,
                Some(sigs) => sigs.iter().filter(|&&s| s == FREE).count(),
            };
            if free < n {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes `ops` as one batch record, then each op's entry: `targets[i]` is op `i`'s
    /// key's hash and current entry. The caller holds the writer lock, checked
    /// [`has_room`](Self::has_room) for the new entries, and names each key once.
    pub fn write_batch(&self, ops: &[Op<'_>], targets: &[(Hashed, Option<Found>)]) -> Result<()> {
        debug_assert_eq!(ops.len(), targets.len());
        let mut starts = Vec::new();
        let span = self
            .data
            .append_with(record::batch_len(ops), 1, |_, dest| {
                starts = record::encode_batch(dest, ops);
            })?;
        self.look_ahead(span.end());
        for ((op, &(h, old)), at) in ops.iter().zip(targets).zip(starts) {
            let offset = span.offset() + at as u64;
            let fp = footprint(record::len(op.key, op.value) as u64);
            self.record_bytes.fetch_add(fp, Ordering::Relaxed);
            match (op.kind, old) {
                (Kind::Put, _) => {
                    let slot = match old {
                        Some(f) => f.slot,
                        None => self.free_slot(h)?.ok_or_else(|| {
                            self.corrupted(offset, "a batch found no free slot it was promised")
                        })?,
                    };
                    self.point(op.space, h, old, slot, offset, fp)?;
                }
                (Kind::Delete, Some(old)) => self.unpoint(op.space, h, old)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Offsets of the live records, in slot order.
    pub fn live_offsets(&self) -> Result<Vec<u64>> {
        let mut ptrs = vec![0u64; SLOTS];
        self.ptrs.read_many(0, &mut ptrs)?;
        Ok(ptrs
            .into_iter()
            .filter(|w| w & USED != 0)
            .map(|w| (w & OFFSET_MASK) * GRAIN)
            .collect())
    }

    /// Whether this shard's entries and `other`'s fit one shard's rows with a quarter of
    /// each row to spare (the test before a merge).
    pub fn rows_fit_with(&self, other: &Shard) -> Result<bool> {
        let mut a = vec![[FREE; ROW_WIDTH]; ROWS];
        let mut b = vec![[FREE; ROW_WIDTH]; ROWS];
        self.sigs.read_many(0, &mut a)?;
        other.sigs.read_many(0, &mut b)?;
        let used = |row: &Sigs| row.iter().filter(|&&s| s != FREE).count();
        Ok(a.iter()
            .zip(&b)
            .all(|(x, y)| used(x) + used(y) <= ROW_WIDTH * 3 / 4))
    }

    /// The rows' and pointers' digest.
    fn digest(&self) -> Result<u64> {
        let mut sigs = vec![[FREE; ROW_WIDTH]; ROWS];
        self.sigs.read_many(0, &mut sigs)?;
        let mut ptrs = vec![0u64; SLOTS];
        self.ptrs.read_many(0, &mut ptrs)?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(bytemuck::cast_slice(&sigs));
        h.update(bytemuck::cast_slice(&ptrs));
        Ok(h.digest())
    }

    /// Trusts the rows as they are if the check a clean shutdown wrote holds; returns
    /// whether it did.
    pub fn trust(&self) -> Result<bool> {
        let m = self.meta.get();
        let holds = m.incarnation == self.spec.incarnation
            && m.data_len == self.data.len()
            && self.data.adopted_bytes() == 0
            && m.entries <= SLOTS as u64
            && m.kv_entries <= m.entries
            && m.live_bytes <= m.record_bytes
            && self.digest()? == m.digest;
        if holds {
            self.entries.store(m.entries, Ordering::Relaxed);
            self.kv_entries.store(m.kv_entries, Ordering::Relaxed);
            self.live_bytes.store(m.live_bytes, Ordering::Relaxed);
            self.record_bytes.store(m.record_bytes, Ordering::Relaxed);
        }
        Ok(holds)
    }

    /// Rebuilds the rows from the records, hashing keys with `entropy`.
    ///
    /// # Errors
    /// `Corrupted` for a damaged record, a record of a key outside the shard's range, or
    /// more live keys in a row than it holds.
    pub fn rebuild(&self, entropy: &Entropy) -> Result<()> {
        let mut rows = Rows::new();
        for (i, span) in self.data.records(0).enumerate() {
            let offset = span?.offset();
            let rec = self.read(offset)?;
            if i == 0 {
                continue; // The identity, checked at open.
            }
            match rec.header.kind {
                Kind::Identity => {
                    return Err(self.corrupted(offset, "a second identity record in a log"));
                }
                Kind::Batch => {
                    let starts = record::batch_starts(rec.bytes).map_err(|what| {
                        self.corrupted(offset, format!("the batch at log offset {offset}: {what}"))
                    })?;
                    for at in starts {
                        self.replay(entropy, &mut rows, offset + at as u64)?;
                    }
                }
                Kind::Put | Kind::Delete => self.replay(entropy, &mut rows, offset)?,
            }
        }
        rows.write_to(self)
    }

    /// Applies the put or delete record at `offset` to `rows`.
    fn replay(&self, entropy: &Entropy, rows: &mut Rows, offset: u64) -> Result<()> {
        let rec = self.read(offset)?;
        let (space, key) = (rec.header.space, rec.header.key(rec.bytes));
        let h = self.placed(entropy, space, key, offset)?;
        let old = rows.find(self, space, key, h)?;
        let fp = footprint(rec.header.record_len() as u64);
        rows.record_bytes += fp;
        match rec.header.kind {
            Kind::Put => {
                if !rows.place(space, h, old, offset, fp) {
                    return Err(self.corrupted(offset, "more live keys in one row than it holds"));
                }
            }
            Kind::Delete => {
                if let Some((slot, fp)) = old {
                    rows.remove(space, slot, fp);
                }
            }
            Kind::Identity | Kind::Batch => {
                return Err(self.corrupted(offset, "an identity or batch inside a batch"));
            }
        }
        Ok(())
    }

    /// The hash of the record at `offset` (key `key` of `space`), checked to belong here.
    fn placed(&self, entropy: &Entropy, space: u8, key: &[u8], offset: u64) -> Result<Hashed> {
        let h = entry_hash(entropy, space, key)
            .ok_or_else(|| self.corrupted(offset, "a list's or queue's key without its group"))?;
        if !(self.spec.start..self.spec.end()).contains(&h.selector()) {
            return Err(self.corrupted(
                offset,
                "a record of a key outside the shard's range of selectors",
            ));
        }
        Ok(h)
    }

    /// Copies the live records of `sources` into `targets` (new shards covering their
    /// ranges), each to the one covering its key's selector, and writes the targets'
    /// rows.
    ///
    /// # Errors
    /// As reading and appending records; `Corrupted` for a record of a key outside every
    /// target, or more live keys in a target's row than it holds.
    pub fn copy_all(entropy: &Entropy, sources: &[&Shard], targets: &[&Shard]) -> Result<()> {
        let mut rows: Vec<Rows> = targets.iter().map(|_| Rows::new()).collect();
        for source in sources {
            for offset in source.live_offsets()? {
                let rec = source.read(offset)?;
                let (space, key) = (rec.header.space, rec.header.key(rec.bytes));
                let h = entry_hash(entropy, space, key).ok_or_else(|| {
                    source.corrupted(offset, "a list's or queue's key without its group")
                })?;
                let Some(t) = targets
                    .iter()
                    .position(|t| (t.spec.start..t.spec.end()).contains(&h.selector()))
                else {
                    return Err(source.corrupted(offset, "a live key outside the shard's range"));
                };
                let span = targets[t].data.append(rec.bytes)?;
                targets[t].look_ahead(span.end());
                rows[t].record_bytes += footprint(span.len());
                if !rows[t].place(space, h, None, span.offset(), footprint(span.len())) {
                    return Err(source.corrupted(offset, "more live keys in one row than it holds"));
                }
            }
        }
        for (r, t) in rows.into_iter().zip(targets) {
            r.write_to(t)?;
        }
        Ok(())
    }

    /// Makes the shard durable with a check of its rows, so that the next open trusts
    /// them (a clean shutdown). The caller holds the writer lock.
    pub fn close(&self) -> Result<()> {
        self.data.sync_recorded()?;
        self.sigs.sync()?;
        self.ptrs.sync()?;
        self.meta.set(Meta {
            incarnation: self.spec.incarnation,
            entries: self.entries(),
            kv_entries: self.kv_entries(),
            live_bytes: self.live_bytes(),
            record_bytes: self.record_bytes.load(Ordering::Relaxed),
            data_len: self.data.len(),
            digest: self.digest()?,
        })?;
        self.meta.sync()
    }
}

/// The pointer word of the record at `offset` (a multiple of the grain).
fn pointer(offset: u64) -> u64 {
    debug_assert!(offset.is_multiple_of(GRAIN) && offset / GRAIN <= OFFSET_MASK);
    USED | (offset / GRAIN)
}

/// The identity record's key of shard `incarnation` of the store `id`.
fn identity(id: u64, incarnation: u64) -> [u8; IDENTITY_BYTES] {
    let mut key = [0u8; IDENTITY_BYTES];
    key[..8].copy_from_slice(&id.to_le_bytes());
    key[8..].copy_from_slice(&incarnation.to_le_bytes());
    key
}

/// A shard's rows and pointers being built in memory (by a rebuild or a copy), written
/// out whole at the end.
struct Rows {
    sigs: Vec<Sigs>,
    ptrs: Vec<u64>,
    entries: u64,
    kv_entries: u64,
    live_bytes: u64,
    record_bytes: u64,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            sigs: vec![[FREE; ROW_WIDTH]; ROWS],
            ptrs: vec![0; SLOTS],
            entries: 0,
            kv_entries: 0,
            live_bytes: 0,
            record_bytes: 0,
        }
    }

    /// The slot and footprint of `key`'s entry so far, reading records from `shard`.
    fn find(
        &self,
        shard: &Shard,
        space: u8,
        key: &[u8],
        h: Hashed,
    ) -> Result<Option<(usize, u64)>> {
        let row = h.row();
        for i in row::matches(&self.sigs[row], h.sig()) {
            let slot = row * ROW_WIDTH + i;
            let rec = shard.read((self.ptrs[slot] & OFFSET_MASK) * GRAIN)?;
            if rec.header.space == space && rec.header.key(rec.bytes) == key {
                return Ok(Some((slot, footprint(rec.header.record_len() as u64))));
            }
        }
        Ok(None)
    }

    /// Points `h`'s entry at the record at `offset` (replacing `old`, or in a free slot
    /// of its row); `false` if the row is full.
    fn place(
        &mut self,
        space: u8,
        h: Hashed,
        old: Option<(usize, u64)>,
        offset: u64,
        fp: u64,
    ) -> bool {
        let slot = match old {
            Some((slot, old_fp)) => {
                self.live_bytes -= old_fp;
                slot
            }
            None => {
                let row = h.row();
                let Some(i) = row::first(&self.sigs[row], FREE) else {
                    return false;
                };
                self.sigs[row][i] = h.sig();
                self.entries += 1;
                self.kv_entries += u64::from(space == 0);
                row * ROW_WIDTH + i
            }
        };
        self.ptrs[slot] = pointer(offset);
        self.live_bytes += fp;
        true
    }

    fn remove(&mut self, space: u8, slot: usize, fp: u64) {
        self.sigs[slot / ROW_WIDTH][slot % ROW_WIDTH] = FREE;
        self.ptrs[slot] = 0;
        self.entries -= 1;
        self.kv_entries -= u64::from(space == 0);
        self.live_bytes -= fp;
    }

    /// Writes the rows and pointers into `shard`'s arrays, and its counts.
    fn write_to(self, shard: &Shard) -> Result<()> {
        // Both arrays always hold every element, so that `read_many` and the digest see
        // the same bytes whatever was written. First: past an array's recorded length a
        // read gives zeros while the file may hold a crashed session's rows, which a
        // compare with those zeros would leave in place (found by review).
        shard.sigs.extend_len(ROWS as u64)?;
        shard.ptrs.extend_len(SLOTS as u64)?;
        for (r, sigs) in self.sigs.iter().enumerate() {
            let r = r as u64;
            if *sigs != shard.sigs.read(r)? {
                shard.sigs.set(r, *sigs)?;
            }
        }
        let mut now = vec![0u64; SLOTS];
        shard.ptrs.read_many(0, &mut now)?;
        for (slot, (&want, &have)) in self.ptrs.iter().zip(&now).enumerate() {
            if want != have {
                shard.ptrs.set(slot as u64, want)?;
            }
        }
        for (r, sigs) in self.sigs.iter().enumerate() {
            shard.filters.rebuild_row(r, sigs);
            shard.stale[r].store(0, Ordering::Relaxed);
        }
        shard.entries.store(self.entries, Ordering::Relaxed);
        shard.kv_entries.store(self.kv_entries, Ordering::Relaxed);
        shard.live_bytes.store(self.live_bytes, Ordering::Relaxed);
        shard
            .record_bytes
            .store(self.record_bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// A value (or key) of a [`ShardedStore`](crate::ShardedStore), read in place from its
/// shard's data file: it derefs to `&[u8]` without a copy and stays valid however the
/// store changes after it was read (overwrites, removals, splits, compactions). It keeps
/// its shard's files alive: a shard replaced by a split or a compaction is removed only
/// when its last handle is dropped.
///
/// Its record's checksum was checked when the handle was made.
#[derive(Clone)]
pub struct ShardedValue {
    shard: Arc<Shard>,
    span: Span,
}

impl ShardedValue {
    /// The value of the entry `found` of `shard`.
    pub(super) fn value(shard: &Arc<Shard>, found: &Found) -> Self {
        Self::value_after(shard, found, 0)
    }

    /// The value of the entry `found` of `shard` past its first `skip` bytes (at most
    /// its length).
    pub(super) fn value_after(shard: &Arc<Shard>, found: &Found, skip: usize) -> Self {
        let at = found.header.value_at() + skip;
        ShardedValue {
            shard: Arc::clone(shard),
            span: Span::new(
                found.offset + at as u64,
                (found.header.value_len - skip) as u64,
            ),
        }
    }

    /// The key of the entry `found` of `shard`.
    pub(super) fn key(shard: &Arc<Shard>, found: &Found) -> Self {
        ShardedValue {
            shard: Arc::clone(shard),
            span: Span::new(
                found.offset + record::HEADER_BYTES as u64,
                found.header.key_len as u64,
            ),
        }
    }

    /// The bytes (the same as `&*value`).
    pub fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl Deref for ShardedValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.shard
            .data
            .get(self.span)
            .expect("a value's span was checked when its handle was made")
    }
}

impl AsRef<[u8]> for ShardedValue {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<T: AsRef<[u8]> + ?Sized> PartialEq<T> for ShardedValue {
    fn eq(&self, other: &T) -> bool {
        **self == *other.as_ref()
    }
}

impl fmt::Debug for ShardedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedValue")
            .field("shard", &self.shard.spec.incarnation)
            .field("span", &self.span)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The shard shape's simulation (ARCHITECTURE.md cites it): keys with random hashes
    /// go into `rows` rows of `width` entries until one row is full (the split); returns
    /// the mean fill of the shard's slots at that moment over `trials` shards.
    fn fill_at_first_full_row(rows: usize, width: usize, trials: u64) -> f64 {
        let mut total = 0.0;
        for seed in 0..trials {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut counts = vec![0usize; rows];
            let mut keys = 0usize;
            loop {
                let r = rng.random_range(0..rows);
                if counts[r] == width {
                    break;
                }
                counts[r] += 1;
                keys += 1;
            }
            total += keys as f64 / (rows * width) as f64;
        }
        total / trials as f64
    }

    /// Fill at a split against the row shape, with what a lookup costs: the signatures
    /// compared (the row's width) and the odds of reading a record of another key (a
    /// 32-bit signature match among the row's other entries). 64 × 512 splits at about
    /// 90% full; narrower rows split emptier, wider ones compare more per lookup.
    #[test]
    fn row_fill_at_first_full_row() {
        let mut table = String::new();
        for (rows, width) in [(256, 128), (128, 256), (64, 512), (32, 1024)] {
            let fill = fill_at_first_full_row(rows, width, 40);
            let false_reads = (width as f64 * fill) / 2f64.powi(32);
            table.push_str(&format!(
                "{rows:>4} rows x {width:>4}: split at {:.1}% full, {width} compares a \
                 lookup, {false_reads:.1e} records of other keys read a lookup\n",
                fill * 100.0
            ));
            if (rows, width) == (64, 512) {
                assert!((0.85..0.95).contains(&fill), "{fill}");
            }
        }
        println!("{table}");
        let narrow = fill_at_first_full_row(256, 128, 40);
        let wide = fill_at_first_full_row(32, 1024, 40);
        assert!(
            narrow < wide,
            "wider rows fill the shard further before a split"
        );
    }
}
