//! The inside of a hash store: its state record, the lock layout, and every write
//! (set, delete, clear, resize). Opening and rebuilding live in `open.rs`, optimisation
//! in `optimize.rs`; the public face in `mod.rs`.
//!
//! Locks: `writer` serializes every change; `shared` guards the index and the data
//! generations. Readers take `shared` for reading only. A writer finds and appends under
//! an upgradable read (readers go on), and takes it exclusively only for the slot writes,
//! so a reader waits at most for one change of the index, never for a record's copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytemuck::{Pod, Zeroable};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockUpgradableReadGuard};

use super::HashOptions;
use super::data::{DataGen, HashValue, footprint};
use super::index::{self, Index, LEVEL_MAX, LEVEL_MIN, OFFSET_MAX};
use super::record::{Header, Kind};
use crate::limits::{HASH_KEY_LEN_BYTES_MAX, HASH_VALUE_LEN_BYTES_MAX};
use crate::{Dir, Entropy, Error, Journal, Result};

/// "accretion hash store" state, as a magic number.
pub(super) const STATE_MAGIC: u64 = u64::from_le_bytes(*b"acc-hash");
/// The format this build writes.
pub(super) const FORMAT: u32 = 1;
/// `State::flags`: the index is durable and covers exactly the data log's first
/// `covered_len` bytes: an open trusts it and reads no record.
pub(super) const CLEAN: u32 = 1;
/// `State::prev_gen` when no optimisation is under way.
pub(super) const NO_GEN: u64 = u64::MAX;

/// The store's state, in its Journal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(super) struct State {
    pub magic: u64,
    pub format: u32,
    pub flags: u32,
    /// The data generation writes go to.
    pub data_gen: u64,
    /// The generation an optimisation is moving records out of, or [`NO_GEN`].
    pub prev_gen: u64,
    pub index_gen: u64,
    pub index_level: u32,
    pub _reserved: u32,
    /// Clean: the data log's length the index covers.
    pub covered_len: u64,
    /// Clean: entries, and log bytes their records take (frames included).
    pub entries: u64,
    pub live_bytes: u64,
    /// Clean: the index's [`digest`](super::index::Index::digest).
    pub index_sum: u64,
    /// Random at creation: the first record of every data log names it.
    pub store_id: u64,
    /// The entropy's keyed hash of `store_id`: an entropy file of another store (or a
    /// new one) is told apart, and the index rebuilt with its hashes.
    pub entropy_check: u64,
    /// Clean: the dead bytes the last optimisation left (padding it cannot free).
    pub dead_floor: u64,
}
// The catalog tells an unrecorded store from a user's `state` journal by this size.
const _: () = assert!(
    size_of::<State>() as u64 == crate::catalog::state_bytes(crate::catalog::Kind::HashStore)
);

/// The index and the data generations: what readers read.
pub(super) struct Shared {
    pub index: Index,
    pub data: Arc<DataGen>,
    /// The generation an optimisation is moving records out of.
    pub prev: Option<Arc<DataGen>>,
}

impl Shared {
    /// The generation a position word's parity names.
    pub fn gen_of(&self, parity: u64) -> Option<&Arc<DataGen>> {
        if self.data.number & 1 == parity {
            Some(&self.data)
        } else {
            self.prev.as_ref().filter(|p| p.number & 1 == parity)
        }
    }

    /// Log bytes of every live generation.
    pub fn data_bytes(&self) -> u64 {
        self.data.log.len() + self.prev.as_ref().map_or(0, |p| p.log.len())
    }
}

/// What only the writer touches.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// The state says the index is not clean (made durable before the first change).
    pub dirty: bool,
}

/// A key found in the index.
pub(super) struct Hit {
    pub slot: u64,
    pub dg: Arc<DataGen>,
    pub offset: u64,
    pub header: Header,
}

impl Hit {
    pub fn value(&self) -> HashValue {
        HashValue::new(
            &self.dg,
            self.offset,
            self.header.value_at(),
            self.header.value_len,
        )
    }

    pub fn key(&self) -> HashValue {
        HashValue::new(
            &self.dg,
            self.offset,
            super::record::HEADER_BYTES,
            self.header.key_len,
        )
    }

    pub fn footprint(&self) -> u64 {
        footprint(self.header.record_len() as u64)
    }
}

pub(super) struct Inner {
    pub dir: Dir,
    pub name: String,
    pub options: HashOptions,
    pub entropy: Entropy,
    pub state: Journal<State>,
    pub shared: RwLock<Shared>,
    pub writer: Mutex<Writer>,
    pub writer_thread: AtomicUsize,
    pub poisoned: AtomicBool,
    pub optimizing: AtomicBool,
    pub entries: AtomicU64,
    pub live_bytes: AtomicU64,
    /// The state's `store_id`.
    pub store_id: u64,
    /// Dead bytes right after the last optimisation of this session: padding no copy
    /// frees (where a large record skipped to the next lane), left out of the measure of
    /// waste so that it does not make every write optimise again.
    pub dead_floor: AtomicU64,
    /// This open rebuilt the index from the records.
    pub rebuilt: bool,
}

/// A tag of the calling thread, never 0.
fn thread_tag() -> usize {
    thread_local! {
        static TAG: u8 = const { 0 };
    }
    TAG.with(|t| std::ptr::from_ref(t) as usize)
}

/// The writer lock; clears the owner tag when dropped.
pub(super) struct WriterGuard<'a> {
    inner: &'a Inner,
    pub w: MutexGuard<'a, Writer>,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.inner.writer_thread.store(0, Ordering::Release);
    }
}

pub(super) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > HASH_KEY_LEN_BYTES_MAX {
        return Err(Error::limit(
            "HASH_KEY_LEN_BYTES_MAX",
            key.len() as u64,
            HASH_KEY_LEN_BYTES_MAX as u64,
        ));
    }
    Ok(())
}

pub(super) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > HASH_VALUE_LEN_BYTES_MAX {
        return Err(Error::limit(
            "HASH_VALUE_LEN_BYTES_MAX",
            value.len() as u64,
            HASH_VALUE_LEN_BYTES_MAX as u64,
        ));
    }
    Ok(())
}

impl Inner {
    /// The index tag of `key`.
    pub fn tag(&self, key: &[u8]) -> u64 {
        index::tag(self.entropy.hash(key))
    }

    pub fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                path: self.dir.path().join(&self.name),
            });
        }
        Ok(())
    }

    /// Marks the store poisoned (a change of the index failed half-way) and passes `e`.
    pub fn poison(&self, e: Error) -> Error {
        self.poisoned.store(true, Ordering::Release);
        e
    }

    /// The writer lock, refused from inside an `update` closure on the same thread.
    pub fn lock_writer(&self, call: &'static str) -> Result<WriterGuard<'_>> {
        let me = thread_tag();
        if self.writer_thread.load(Ordering::Acquire) == me {
            return Err(Error::Reentrant {
                call,
                inside: "a HashStore::update or retain closure of the same store",
            });
        }
        let w = self.writer.lock();
        self.writer_thread.store(me, Ordering::Release);
        let guard = WriterGuard { inner: self, w };
        self.check_poison()?;
        Ok(guard)
    }

    /// Before the first change after a clean state: says durably that the index is no
    /// longer clean, so that a crash from here on makes the next open rebuild it.
    pub fn make_dirty(&self, w: &mut Writer) -> Result<()> {
        if !w.dirty {
            self.state.update(|s| s.flags &= !CLEAN)?;
            self.state.sync()?;
            w.dirty = true;
        }
        Ok(())
    }

    /// `key` in the index: its slot and its record, checked.
    pub fn lookup(&self, s: &Shared, key: &[u8], tag: u64) -> Result<Option<Hit>> {
        let mut hit = None;
        s.index
            .find(tag, |pos| {
                let (parity, offset) = index::locate(pos);
                let dg = s.gen_of(parity).ok_or_else(|| {
                    self.corrupted_index(format!(
                        "a slot names a data generation of parity {parity}, which is not live"
                    ))
                })?;
                let rec = dg.read(offset)?;
                if rec.header.kind != Kind::Put {
                    return Err(dg.corrupted(offset, "the index points at a record that is no put"));
                }
                if rec.header.key(rec.bytes) != key {
                    return Ok(false);
                }
                hit = Some((Arc::clone(dg), offset, rec.header));
                Ok(true)
            })
            .map(|found| {
                found.and_then(|(slot, _)| {
                    hit.map(|(dg, offset, header)| Hit {
                        slot,
                        dg,
                        offset,
                        header,
                    })
                })
            })
    }

    pub fn corrupted_index(&self, what: String) -> Error {
        Error::corrupted(&self.dir.path().join(&self.name), 0, what)
    }

    /// Sets `key` (whose index entry is `found`) to `value`, or deletes it for `None`;
    /// returns the handle of the value it had.
    pub fn write_locked(
        &self,
        w: &mut Writer,
        tag: u64,
        key: &[u8],
        found: Option<Hit>,
        value: Option<&[u8]>,
    ) -> Result<Option<HashValue>> {
        self.make_dirty(w)?;
        if found.is_none() && value.is_some() {
            // Grown before the record is written: a failed growth (a full disk) refuses
            // the write with nothing changed, and the index never fills up.
            self.fit_index(w, 1)?;
        }
        let s = self.shared.upgradable_read();
        let data = Arc::clone(&s.data);
        let old = found.as_ref().map(Hit::value);
        match (found, value) {
            (None, None) => return Ok(None),
            (found, Some(value)) => {
                let (offset, bytes) = data.append(Kind::Put, key, value)?;
                check_offset(&data, offset)?;
                let pos = index::position(data.number, offset);
                let s = RwLockUpgradableReadGuard::upgrade(s);
                match &found {
                    Some(hit) => {
                        s.index.replace(hit.slot, pos).map_err(|e| self.poison(e))?;
                        self.live_bytes.fetch_sub(hit.footprint(), Ordering::AcqRel);
                    }
                    None => {
                        s.index.insert(tag, pos).map_err(|e| self.poison(e))?;
                        self.entries.fetch_add(1, Ordering::AcqRel);
                    }
                }
                self.live_bytes.fetch_add(bytes, Ordering::AcqRel);
            }
            (Some(hit), None) => {
                data.append(Kind::Delete, key, &[])?;
                let s = RwLockUpgradableReadGuard::upgrade(s);
                s.index.remove(hit.slot).map_err(|e| self.poison(e))?;
                drop(s);
                self.live_bytes.fetch_sub(hit.footprint(), Ordering::AcqRel);
                self.entries.fetch_sub(1, Ordering::AcqRel);
                // The delete is done: a shrink that fails (a full disk) leaves the index
                // as it is, larger than it need be, and is tried again by the next one.
                let _ = self.fit_index(w, 0);
            }
        }
        Ok(old)
    }

    /// Removes every key: a clear record, then a new, empty index.
    ///
    /// The empty index is made before the record is written, so that a failure to make
    /// it (a full disk) leaves the store as it was. Once the record is written the clear
    /// has happened: a failure to switch to the new index poisons the store, and the
    /// reopen's rebuild applies the clear.
    pub fn clear_locked(&self, w: &mut Writer) -> Result<()> {
        self.make_dirty(w)?;
        let s = self.shared.upgradable_read();
        let empty = self.new_index(&s, LEVEL_MIN)?;
        s.data.append(Kind::Clear, &[], &[])?;
        // Readers see the clear whatever the state's write does: it is in the log.
        let named = self.switch_index(s, empty, true);
        self.entries.store(0, Ordering::Release);
        self.live_bytes.store(0, Ordering::Release);
        named.map_err(|e| self.poison(e))
    }

    /// Grows the index if `coming` more entries would make it over 90% full; shrinks it
    /// below 35% (to a level where it is at most 70% full, so that it does not grow back
    /// at once).
    ///
    /// # Errors
    /// `LimitExceeded` if the index is at its largest level and full; as
    /// [`replace_index`](Self::replace_index).
    pub fn fit_index(&self, w: &mut Writer, coming: u64) -> Result<()> {
        let entries = self.entries.load(Ordering::Acquire) + coming;
        let level = self.shared.read().index.level;
        let slots = index::capacity(level);
        if entries * 10 > slots * 9 {
            if level >= LEVEL_MAX {
                // The last level is let fill to 97%: past it, writes of new keys are
                // refused (probes would grow without bound).
                if entries * 100 > slots * 97 {
                    return Err(Error::limit(
                        "HASH_INDEX_SLOTS_MAX (entries at 97% of the largest index)",
                        entries,
                        slots * 97 / 100,
                    ));
                }
                return Ok(());
            }
            self.replace_index(w, level + 1, true)
        } else if level > LEVEL_MIN
            && entries * 100 < slots * 35
            && entries * 10 <= index::capacity(level - 1) * 7
        {
            self.replace_index(w, level - 1, true)
        } else {
            Ok(())
        }
    }

    /// Builds a new index generation of level `level` (holding every entry of the
    /// current one if `copy`), then switches to it through the state. Readers use the old
    /// one until the switch; it is removed after.
    pub fn replace_index(&self, w: &mut Writer, level: u32, copy: bool) -> Result<()> {
        self.make_dirty(w)?;
        let s = self.shared.upgradable_read();
        let new = self.new_index(&s, level)?;
        if copy {
            for e in s.index.entries() {
                let (_, tag, pos) = e?;
                new.insert(tag, pos)?;
            }
        }
        self.switch_index(s, new, false)
    }

    /// An empty index generation of level `level`, numbered after the current one.
    fn new_index(&self, s: &Shared, level: u32) -> Result<Index> {
        let number = s.index.number + 1;
        // Files a failed resize or clear of this session may have left.
        self.dir.remove(&index::index_name(&self.name, number))?;
        Index::open(&self.dir, &self.name, number, level)
    }

    /// Names `new` in the state (durably), then makes it the index readers use; the old
    /// one is removed.
    ///
    /// If the state cannot be written, a resize keeps the old index (it holds the same
    /// entries), while a clear (`always`) switches all the same, its record being in the
    /// log; either way the error is returned. The state is not clean, so the next open
    /// rebuilds, whatever index it names.
    fn switch_index(
        &self,
        s: RwLockUpgradableReadGuard<'_, Shared>,
        new: Index,
        always: bool,
    ) -> Result<()> {
        let (number, level) = (new.number, new.level);
        let named = self
            .state
            .update(|st| {
                st.index_gen = number;
                st.index_level = level;
            })
            .and_then(|()| self.state.sync());
        if named.is_err() && !always {
            return named;
        }
        let mut s = RwLockUpgradableReadGuard::upgrade(s);
        let old = std::mem::replace(&mut s.index, new);
        drop(s);
        old.retire();
        named
    }

    /// Makes every change made before the call durable: the data logs' flush.
    pub fn sync(&self) -> Result<()> {
        let (data, prev) = {
            let s = self.shared.read();
            (Arc::clone(&s.data), s.prev.clone())
        };
        if let Some(prev) = prev {
            prev.log.sync()?;
        }
        data.log.sync()
    }

    /// A clean shutdown: makes the data and the index durable and says so in the state,
    /// so that the next open trusts the index and reads no record.
    pub fn close(&self) -> Result<()> {
        // An optimisation cut short (it failed) is finished first, or its error returned.
        if self.shared.read().prev.is_some() {
            self.move_prev()?;
        }
        let mut g = self.lock_writer("HashStore::close")?;
        let s = self.shared.read();
        if !g.w.dirty {
            return Ok(());
        }
        s.data.log.sync_recorded()?;
        s.index.sync()?;
        let index_sum = s.index.digest()?;
        let covered_len = s.data.log.len();
        let (index_gen, index_level) = (s.index.number, s.index.level);
        let entries = self.entries.load(Ordering::Acquire);
        let live_bytes = self.live_bytes.load(Ordering::Acquire);
        let dead_floor = self.dead_floor.load(Ordering::Acquire);
        let entropy_check = self.entropy.hash(&self.store_id.to_le_bytes());
        self.state.update(|st| {
            st.flags |= CLEAN;
            st.covered_len = covered_len;
            st.index_gen = index_gen;
            st.index_level = index_level;
            st.entries = entries;
            st.live_bytes = live_bytes;
            st.index_sum = index_sum;
            st.dead_floor = dead_floor;
            st.entropy_check = entropy_check;
        })?;
        self.state.sync()?;
        g.w.dirty = false;
        Ok(())
    }
}

/// Refuses a record past what a slot can name (16 × 2^48 bytes of log).
fn check_offset(data: &DataGen, offset: u64) -> Result<()> {
    if offset > OFFSET_MAX {
        return Err(Error::limit(
            "hash store data log bytes",
            offset,
            OFFSET_MAX,
        ));
    }
    debug_assert!(data.log.len() >= offset);
    Ok(())
}

impl Inner {
    /// The entry whose record is at position word `pos` (its slot is not looked up).
    pub fn hit_at(&self, pos: u64) -> Result<Hit> {
        let s = self.shared.read();
        let (parity, offset) = index::locate(pos);
        let dg = s.gen_of(parity).ok_or_else(|| {
            self.corrupted_index(format!(
                "a slot names a data generation of parity {parity}, which is not live"
            ))
        })?;
        let header = dg.read(offset)?.header;
        Ok(Hit {
            slot: 0,
            dg: Arc::clone(dg),
            offset,
            header,
        })
    }

    /// See [`HashStore::verify`](super::HashStore::verify).
    pub fn verify(&self) -> Result<super::HashReport> {
        let _g = self.lock_writer("HashStore::verify")?;
        let s = self.shared.read();
        let shape = s
            .index
            .check()?
            .map_err(|(slot, what)| self.corrupted_index(format!("index slot {slot}: {what}")))?;
        let mut live = 0;
        for e in s.index.entries() {
            let (slot, tag, pos) = e?;
            let (parity, offset) = index::locate(pos);
            let dg = s.gen_of(parity).ok_or_else(|| {
                self.corrupted_index(format!(
                    "index slot {slot} names a data generation of parity {parity}, which is not live"
                ))
            })?;
            let rec = dg.read(offset)?;
            if rec.header.kind != Kind::Put {
                return Err(dg.corrupted(
                    offset,
                    format!("index slot {slot} points at a record that is no put"),
                ));
            }
            let key = rec.header.key(rec.bytes);
            if self.tag(key) != tag {
                return Err(self.corrupted_index(format!(
                    "index slot {slot} holds a hash its record's key does not have"
                )));
            }
            match self.lookup(&s, key, tag)? {
                Some(hit) if hit.slot == slot => {}
                Some(hit) => {
                    return Err(self.corrupted_index(format!(
                        "index slots {} and {slot} hold the same key",
                        hit.slot
                    )));
                }
                None => {
                    return Err(self.corrupted_index(format!(
                        "the key in index slot {slot} is not found by a lookup"
                    )));
                }
            }
            live += footprint(rec.header.record_len() as u64);
        }
        let entries = self.entries.load(Ordering::Acquire);
        if shape.entries != entries {
            return Err(self.corrupted_index(format!(
                "the index holds {} entries where the store counts {entries}",
                shape.entries
            )));
        }
        let counted = self.live_bytes.load(Ordering::Acquire);
        if live != counted {
            return Err(self.corrupted_index(format!(
                "live records take {live} bytes where the store counts {counted}"
            )));
        }
        Ok(super::HashReport {
            entries,
            probe_distance_max: shape.distance_max,
        })
    }
}
