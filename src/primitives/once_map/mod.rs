//! OnceMap: byte-string keys each set once to a byte-string value; `get` returns plain
//! references that live as long as the map.
//!
//! Composed only from the leaf primitives' public types, under the map's name:
//! `{name}/log` ([`AppendOnly`]: the entries, in insertion order, the source of truth),
//! `{name}/index` ([`RandomAccess<u64>`]: the hash index), `{name}/meta` ([`Journal`]:
//! entry count and log length at the last sync) and `{name}/entropy` ([`Entropy`]: the
//! hash key).
//!
//! # The index
//! A sequence of open-addressing tables ("levels") laid end to end in one array, each four
//! times the size of the one before: level `k` has `LEVEL0_SLOTS * 4^k` slots. New keys go
//! to the level chosen by the entry count, which fills each level to half before moving
//! on, so nothing is ever rehashed or moved. A slot is a `u64`: a 24-bit tag from the
//! key's hash above a 40-bit entry offset plus one (0 means empty). Every hit is confirmed
//! by the entry's header checksum (which covers its offset) and a full comparison of the
//! key. See `OnceMap::find` for the lookup order.

mod record;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};
use parking_lot::{Mutex, RwLock};

use crate::catalog;
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::limits::{KEY_LEN_BYTES_MAX, ONCE_MAP_LOG_BYTES_MAX, VALUE_LEN_BYTES_MAX};
use crate::primitives::append_only::{AppendOnly, Span};
use crate::primitives::entropy::Entropy;
use crate::primitives::journal::Journal;
use crate::primitives::random_access::RandomAccess;

/// Slots in the first index level.
const LEVEL0_SLOTS: u64 = 1024;
/// Probes an insert makes in its level before it moves to the next one.
const PROBE_LIMIT: u64 = 64;
/// Stripes of the insert locks (inserts of one key always take the same stripe).
const INSERT_STRIPES: usize = 64;
/// Levels whose home slots a lookup prefetches before it reads the first.
const PREFETCH_LEVELS: usize = 3;
/// Most index levels: level 20 alone would hold 2^50 slots, past any log.
const LEVELS_MAX: u64 = 21;
const OFFSET_BITS: u32 = 40;
/// A sync also makes the index durable (and records how far it covers) once the log has
/// grown this much past what the index covers: an open re-indexes at most about this
/// much of the log.
const INDEX_SYNC_BYTES: u64 = 4 << 20;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// What [`OnceMap::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert<'a, V: ?Sized = [u8]> {
    /// The key was new; this is the value now stored.
    Inserted(&'a V),
    /// The key was already set; this is its value, unchanged.
    Existing(&'a V),
}

impl<V: ?Sized> Clone for Insert<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V: ?Sized> Copy for Insert<'_, V> {}

impl<'a, V: ?Sized> Insert<'a, V> {
    /// True if this call set the key.
    pub fn is_inserted(&self) -> bool {
        matches!(self, Insert::Inserted(_))
    }

    /// The key's value, whichever call set it.
    pub fn value(&self) -> &'a V {
        match *self {
            Insert::Inserted(v) | Insert::Existing(v) => v,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Meta {
    count: u64,
    log_len: u64,
}

/// A map of byte-string keys set once to byte-string values, shared by any number of
/// threads. Values are never changed or removed, so [`get`](Self::get) returns a `&[u8]`
/// valid for the life of the map.
///
/// # Durability
/// [`insert`](Self::insert) is visible to every thread at once. [`sync`](Self::sync)
/// makes every insert that returned before it durable with one flush: the log's new
/// entries, which prove themselves (a checksummed frame each). The index is flushed
/// lazily (every 4 MiB of log), and open gives the entries it does not cover their slots.
/// An insert that returned survives a drop without sync and the death of the process;
/// only a power loss or an OS crash can take inserts not yet synced (the newest ones).
/// Index slots that a crash left pointing past the log, or at bytes that are not their
/// entry, fail the entry's checksum and are skipped.
///
/// A map made before format 2 (its log of format 1) keeps the old contract: each sync
/// flushes the index and the log and records the count, and a reopen holds exactly the
/// entries of the last sync.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let map = accretion::OnceMap::open(&dir, "users")?;
/// assert!(map.insert(b"ada", b"lovelace")?.is_inserted());
/// assert_eq!(map.insert(b"ada", b"byron")?.value(), b"lovelace");
/// assert_eq!(map.get(b"ada")?, Some(&b"lovelace"[..]));
/// map.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// A value cannot outlive its map:
/// ```compile_fail
/// let dir = accretion::Dir::temporary().unwrap();
/// let map = accretion::OnceMap::open(&dir, "m").unwrap();
/// map.insert(b"k", b"v").unwrap();
/// let v = map.get(b"k").unwrap().unwrap();
/// drop(map);
/// println!("{v:?}");
/// ```
#[derive(Debug)]
pub struct OnceMap {
    log: AppendOnly,
    index: RandomAccess<u64>,
    /// One filter word per 8 index slots, level by level (see [`filter_word`]).
    filter: RandomAccess<u64>,
    meta: Journal<Meta>,
    entropy: Entropy,
    count: AtomicU64,
    /// Highest level that may hold slots.
    top_level: AtomicU64,
    /// Index slots known to be backed by allocated lanes.
    reserved_slots: AtomicU64,
    insert_locks: Box<[Mutex<()>]>,
    /// Inserts hold it shared; `sync` holds it exclusively, so that a sync never sees an
    /// entry whose index slot is not yet written.
    gate: RwLock<()>,
    log_path: std::path::PathBuf,
    /// Damaged entries (or stretches of them) that open's log walk met.
    damaged_at_open: u64,
}

/// A walk of the log's entries, of either format: `(offset, key, value)` or damage.
type EntryWalk<'a> = Box<dyn Iterator<Item = Result<record::Entry<'a>>> + 'a>;

/// Slots in level `level`: each level is four times the one before, so the newest level
/// holds about three quarters of the keys and most lookups end there.
fn level_slots(level: u64) -> u64 {
    LEVEL0_SLOTS << (2 * level)
}

/// First slot of level `level`: the sum of the sizes before it, `L0 * (4^level - 1) / 3`.
fn level_start(level: u64) -> u64 {
    LEVEL0_SLOTS * (((1u64 << (2 * level)) - 1) / 3)
}

/// Word 0 of the filter once it covers every entry the index holds (a filter being
/// rebuilt, or cut short by a crash while it was, lacks it and is rebuilt at open).
const FILTER_BUILT: u64 = u64::from_le_bytes(*b"ACCFILT1");
/// Filter words before the first level's.
const FILTER_HEADER_WORDS: u64 = 1;

/// The filter word of `level` for a key of keyed hash `hash`, and the four bits the key
/// sets in it: a Bloom filter blocked to one word per key (16 bits per key at a level's
/// fill of half its slots: about 0.3% false positives), so that a level that does not
/// hold a key costs one load, from a filter an eighth of the index's size, instead of a
/// probe of the index.
fn filter_word(level: u64, hash: u64) -> (u64, u64) {
    let h = (hash ^ (hash >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let words = level_slots(level) / 8;
    let at = ((h >> 32) * words) >> 32;
    let bits = (1u64 << (h & 63))
        | (1u64 << ((h >> 6) & 63))
        | (1u64 << ((h >> 12) & 63))
        | (1u64 << ((h >> 18) & 63));
    (FILTER_HEADER_WORDS + level_start(level) / 8 + at, bits)
}

fn level_of_slot(slot: u64) -> u64 {
    let mut level = 0;
    while slot >= level_start(level + 1) {
        level += 1;
    }
    level
}

/// The level that takes the entry when `count` entries are in: each level is filled to
/// half its slots.
fn level_for_count(count: u64) -> u64 {
    let mut level = 0;
    let mut filled = level_slots(0) / 2;
    while count >= filled {
        level += 1;
        filled += level_slots(level) / 2;
    }
    level
}

fn tag_of(hash: u64) -> u64 {
    hash >> OFFSET_BITS
}

impl OnceMap {
    /// Opens or creates the map at `name` in `dir`.
    ///
    /// When the log was synced after the entry count (a crash between the two), open
    /// counts the entries by walking the log; a damaged entry met there does not fail the
    /// open: it is counted in [`damaged_at_open`](Self::damaged_at_open), and
    /// [`iter`](Self::iter) reports it.
    ///
    /// # Errors
    /// `Corrupted` if a file is damaged (a register, a lane's header, a count the log
    /// cannot hold, a data file of the log or index lost or cut short below what the map
    /// holds: `get` does not check values, so lost bytes could not be told from data) or
    /// the entropy file is missing beside entries; `NameInUse`; `Io`.
    pub fn open(dir: &Dir, name: &str) -> Result<OnceMap> {
        Self::open_as(dir, name, catalog::Kind::OnceMap)
    }

    /// [`open`](Self::open), recording the map in the catalog as a `kind` (a Content
    /// store is a OnceMap on disk).
    pub(crate) fn open_as(dir: &Dir, name: &str, kind: catalog::Kind) -> Result<OnceMap> {
        catalog::admit(dir, name, kind)?;
        let map = Self::open_map(dir, name)?;
        catalog::record(dir, name, kind, map.log.format())?;
        Ok(map)
    }

    /// [`open`](Self::open) without recording the kind: an unrecorded map may be a
    /// Content store (their files are alike), which a check (`catalog::verify`) must not
    /// relabel.
    pub(crate) fn open_unrecorded(dir: &Dir, name: &str) -> Result<OnceMap> {
        catalog::admit(dir, name, catalog::Kind::OnceMap)?;
        Self::open_map(dir, name)
    }

    fn open_map(dir: &Dir, name: &str) -> Result<OnceMap> {
        let entropy_name = format!("{name}/entropy");
        let had_entropy = Entropy::exists(dir, &entropy_name)?;
        // A log data file found short or missing below the log's length is refused, not
        // restored: `get` checks an entry's header and key but not its value (only
        // `get_verified` does), so an entry whose value lay in the lost bytes would read
        // as zeros, and after a restoration nothing would tell which entries those are.
        let log = AppendOnly::open(dir, &format!("{name}/log"))?;
        let index = RandomAccess::<u64>::open(dir, &format!("{name}/index"))?;
        let filter = RandomAccess::<u64>::open(dir, &format!("{name}/filter"))?;
        // The entropy is created (durably) before any entry is written: entries without
        // it mean it was lost, and with it every key's slot. Refuse before creating a
        // new one, so the next open refuses too.
        if !had_entropy && (!log.is_empty() || !index.is_empty()) {
            return Err(Error::corrupted(
                &dir.path().join(&entropy_name),
                0,
                "the entropy is missing but the map holds entries (was it deleted?)",
            ));
        }
        let entropy = Entropy::open(dir, &entropy_name)?;
        let meta = Journal::<Meta>::open(dir, &format!("{name}/meta"))?;
        let top_level = match index.len() {
            0 => 0,
            n => level_of_slot(n - 1),
        };
        let mut map = OnceMap {
            log,
            index,
            filter,
            meta,
            entropy,
            count: AtomicU64::new(0),
            top_level: AtomicU64::new(top_level),
            reserved_slots: AtomicU64::new(0),
            insert_locks: (0..INSERT_STRIPES).map(|_| Mutex::new(())).collect(),
            gate: RwLock::new(()),
            log_path: dir.path().join(name).join("log"),
            damaged_at_open: 0,
        };
        if map.filter.read(0)? != FILTER_BUILT {
            map.rebuild_filter()?;
        }
        let recorded = map.meta.get();
        let count = if recorded.log_len == map.log.len() {
            // The count sizes the index's levels (a shift) and the lookup order: it must
            // be one the log can hold, whatever the meta's checksum says.
            map.check_count(recorded.count)?;
            recorded.count
        } else if map.log.format() != 1
            && recorded.log_len < map.log.len()
            && map.check_count(recorded.count).is_ok()
            && let Some(n) = map.index_tail(recorded.log_len, recorded.count)?
        {
            n
        } else {
            // The log was synced after the count was: count by walking it. A damaged
            // entry (or stretch of them) still holds an index slot, so it counts; it is
            // reported by `damaged_at_open` and, as an error item, by `iter`. A framed
            // log's entries are indexed on the way (a crash may have kept an entry but
            // not its slot).
            let mut n = 0;
            let mut damaged = 0;
            let framed = map.log.format() != 1;
            for entry in map.entries() {
                match entry {
                    Ok((offset, key, _)) if framed => map.index_entry(offset, key, n)?,
                    Ok(_) => {}
                    Err(Error::Corrupted { .. }) => damaged += 1,
                    Err(e) => return Err(e),
                }
                n += 1;
            }
            map.damaged_at_open = damaged;
            n
        };
        *map.count.get_mut() = count;
        Ok(map)
    }

    /// Builds the filter from the index: a map made before the filter existed, or a
    /// rebuild cut short. Each slot's entry header gives its key's hash; a slot whose
    /// entry does not hold is skipped (lookups skip it too). Synced, then marked built.
    fn rebuild_filter(&self) -> Result<()> {
        self.reserve_slots(self.index.len())?;
        for slot in 0..self.index.len() {
            let value = self.index.read(slot)?;
            let Some(offset) = (value & OFFSET_MASK).checked_sub(1) else {
                continue;
            };
            let Some(head) = self.log_bytes(offset, record::HEADER_BYTES)? else {
                continue;
            };
            if let Some(h) = record::decode(&self.entropy, offset, head) {
                self.set_filter(level_of_slot(slot), h.key_hash)?;
            }
        }
        self.filter.sync()?;
        self.filter.set(0, FILTER_BUILT)?;
        self.filter.sync()
    }

    /// Sets the filter bits of a key of hash `hash` in `level`.
    fn set_filter(&self, level: u64, hash: u64) -> Result<()> {
        let (word, bits) = filter_word(level, hash);
        self.filter.with_mut(word, |w| *w |= bits)
    }

    fn check_count(&self, count: u64) -> Result<()> {
        let most = self.log.len() / record::HEADER_BYTES as u64;
        if count > most {
            return Err(Error::corrupted(
                self.meta.path(),
                0,
                format!(
                    "entry count {count} is more than a log of {} bytes can hold (at most {most})",
                    self.log.len()
                ),
            ));
        }
        Ok(())
    }

    /// Indexes the entries of a framed log past `from` (where the recorded `count`
    /// ends): the entries a sync made durable since the index last was, and those an
    /// earlier session appended and its process did not sync (adopted by the log's
    /// open). Returns the count, or `None` if the walk meets damage right away (the
    /// recorded length is not an entry's end: the caller walks the whole log).
    fn index_tail(&mut self, from: u64, count: u64) -> Result<Option<u64>> {
        let mut n = count;
        let mut damaged = 0;
        for (i, entry) in self.entries_from(from).enumerate() {
            match entry {
                Ok((offset, key, _)) => self.index_entry(offset, key, n)?,
                Err(Error::Corrupted { .. }) if i == 0 => return Ok(None),
                Err(Error::Corrupted { .. }) => damaged += 1,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        self.damaged_at_open = damaged;
        Ok(Some(n))
    }

    /// Gives the entry at log `offset` its index slot unless it has one (open, with
    /// `count` entries before it).
    fn index_entry(&self, offset: u64, key: &[u8], count: u64) -> Result<()> {
        self.count.store(count, Ordering::Release);
        // The slots and filter bits the session that appended the entry wrote lie past the
        // index's synced length, which is all a reopen counts; they survive in the page
        // cache (a drop, a killed process): read them, or every open would add a slot
        // for each entry again (found by review). A stale one is harmless: each slot is
        // checked against its entry, and a filter bit too many costs one probe.
        let level = level_for_count(count);
        let (slots, words) = (
            level_start(level + 1),
            FILTER_HEADER_WORDS + level_start(level + 1) / 8,
        );
        if self.index.len() < slots || self.filter.len() < words {
            self.index.extend_len(slots)?;
            self.filter.extend_len(words)?;
        }
        self.top_level.fetch_max(level, Ordering::AcqRel);
        let hash = self.entropy.hash(key);
        if self.find(key, hash, false)?.is_some() {
            return Ok(());
        }
        let level = level_for_count(count);
        self.reserve_slots(level_start(level + 1))?;
        self.place(level, hash, (tag_of(hash) << OFFSET_BITS) | (offset + 1))
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Damaged entries (or runs of adjacent damaged entries) that open met while it
    /// counted the entries by walking the log. Open walks the log only when the count
    /// recorded at the last sync does not cover it, so 0 does not mean the log is
    /// undamaged: [`iter`](Self::iter) checks every entry.
    pub fn damaged_at_open(&self) -> u64 {
        self.damaged_at_open
    }

    /// True if the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`, borrowed for the life of the map.
    ///
    /// The entry's header checksum and its full key are checked on every hit; the value
    /// itself is not re-hashed (that would cost a pass over every value read): it was
    /// fully written before it became durable, and a value damaged later on disk is
    /// caught by [`get_verified`](Self::get_verified) and by [`iter`](Self::iter).
    ///
    /// # Errors
    /// `Io` if a file cannot be mapped; `Corrupted` if one is damaged.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        Ok(self.get_located(key)?.map(|(_, v)| v))
    }

    /// As [`get`](Self::get), with the value's byte offset in the log, for errors that
    /// name where a value is.
    pub(crate) fn get_located(&self, key: &[u8]) -> Result<Option<(u64, &[u8])>> {
        self.find(key, self.entropy.hash(key), false)
    }

    /// As [`get`](Self::get), and also checks the value against its checksum.
    ///
    /// # Errors
    /// `Corrupted` if the value no longer matches its checksum; as [`get`](Self::get).
    pub fn get_verified(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        Ok(self
            .find(key, self.entropy.hash(key), true)?
            .map(|(_, v)| v))
    }

    /// True if `key` is set.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Looks `key` up in every level, most-populated level first: full levels hold half their slots,
    /// so they are already in descending order; the level now filling goes before the first
    /// full level that holds fewer entries than it does; levels above it (used only when a
    /// probe run overflowed) come last.
    fn find(&self, key: &[u8], hash: u64, verify: bool) -> Result<Option<(u64, &[u8])>> {
        let count = self.count.load(Ordering::Acquire);
        let filling = level_for_count(count);
        let filling_entries = count - level_start(filling) / 2;
        let top = self
            .top_level
            .load(Ordering::Acquire)
            .max(filling)
            .min(LEVELS_MAX - 1);
        let mut order = [0u64; LEVELS_MAX as usize];
        let mut n = 0;
        let mut push = |level: u64| {
            order[n] = level;
            n += 1;
        };
        let mut filling_placed = false;
        for level in (0..filling).rev() {
            if !filling_placed && filling_entries >= level_slots(level) / 2 {
                push(filling);
                filling_placed = true;
            }
            push(level);
        }
        if !filling_placed {
            push(filling);
        }
        for level in filling + 1..=top {
            push(level);
        }
        // The filter words first (small, mostly cached, loaded together): only the levels
        // whose filter may hold the key are probed.
        for &level in &order[..n] {
            self.filter.prefetch(filter_word(level, hash).0);
        }
        let mut kept = 0;
        for i in 0..n {
            let (word, bits) = filter_word(order[i], hash);
            if self.filter.read(word)? & bits == bits {
                order[kept] = order[i];
                kept += 1;
            }
        }
        let n = kept;
        // Start the home-slot loads of the likeliest levels together, so their cache misses
        // overlap instead of following one another.
        for &level in order[..n].iter().take(PREFETCH_LEVELS) {
            self.index
                .prefetch(level_start(level) + (hash & (level_slots(level) - 1)));
        }
        for &level in &order[..n] {
            let first = self
                .index
                .read(level_start(level) + (hash & (level_slots(level) - 1)))?;
            if first != 0
                && let Some(value) = self.find_in(level, first, key, hash, verify)?
            {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Probes one level for `key`, given its first slot `first` (already loaded), up to
    /// the first empty slot.
    fn find_in(
        &self,
        level: u64,
        first: u64,
        key: &[u8],
        hash: u64,
        verify: bool,
    ) -> Result<Option<(u64, &[u8])>> {
        let cap = level_slots(level);
        let start = level_start(level);
        let mut pos = hash & (cap - 1);
        let mut slot = first;
        for _ in 0..cap {
            if slot == 0 {
                break;
            }
            if slot >> OFFSET_BITS == tag_of(hash)
                && let Some(value) = self.entry_value(slot & OFFSET_MASK, hash, key, verify)?
            {
                return Ok(Some(value));
            }
            pos = (pos + 1) & (cap - 1);
            slot = self.index.read(start + pos)?;
        }
        Ok(None)
    }

    /// The value (and its offset in the log) of the entry that slot value
    /// `offset_plus_one` points to, if that entry is intact, really starts there, and
    /// holds `key`.
    fn entry_value(
        &self,
        offset_plus_one: u64,
        hash: u64,
        key: &[u8],
        verify: bool,
    ) -> Result<Option<(u64, &[u8])>> {
        // A damaged slot may hold offset + 1 == 0: not an entry.
        let Some(offset) = offset_plus_one.checked_sub(1) else {
            return Ok(None);
        };
        let Some(head) = self.log_bytes(offset, record::HEADER_BYTES)? else {
            return Ok(None);
        };
        let Some(h) = record::decode(&self.entropy, offset, head) else {
            return Ok(None);
        };
        if h.key_hash != hash || h.key_len != key.len() {
            return Ok(None);
        }
        let Some(entry) = self.log_bytes(offset, h.len())? else {
            return Ok(None);
        };
        if &entry[record::HEADER_BYTES..record::HEADER_BYTES + key.len()] != key {
            return Ok(None);
        }
        let value = &entry[h.value_at()..];
        if verify && !record::value_matches(&h, value) {
            return Err(self.damaged_at(offset, "value checksum mismatch".into()));
        }
        Ok(Some((offset + h.value_at() as u64, value)))
    }

    /// Log bytes, or `None` if they are not (all) written: a stale index slot.
    fn log_bytes(&self, offset: u64, len: usize) -> Result<Option<&[u8]>> {
        match self.log.get(Span::new(offset, len as u64)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::OutOfBounds { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `key` to `value` unless it is already set. Of many threads inserting one key
    /// at once, exactly one inserts and all see its value.
    ///
    /// # Errors
    /// `LimitExceeded` for a key over [`KEY_LEN_BYTES_MAX`], a value over
    /// [`VALUE_LEN_BYTES_MAX`], or a log past [`ONCE_MAP_LOG_BYTES_MAX`]; `Io` when space
    /// cannot be allocated (a full disk is `StorageFull`); `Poisoned` after a failed sync.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Insert<'_>> {
        if key.len() > KEY_LEN_BYTES_MAX {
            return Err(Error::limit(
                "KEY_LEN_BYTES_MAX",
                key.len() as u64,
                KEY_LEN_BYTES_MAX as u64,
            ));
        }
        if value.len() > VALUE_LEN_BYTES_MAX {
            return Err(Error::limit(
                "VALUE_LEN_BYTES_MAX",
                value.len() as u64,
                VALUE_LEN_BYTES_MAX as u64,
            ));
        }
        let hash = self.entropy.hash(key);
        let _same_key = self.insert_locks[(hash as usize) % INSERT_STRIPES].lock();
        if let Some((_, existing)) = self.find(key, hash, false)? {
            return Ok(Insert::Existing(existing));
        }
        let _no_sync = self.gate.read();
        let level = level_for_count(self.count.load(Ordering::Acquire));
        // Allocate the whole level before the entry is appended, so that placing its slot
        // cannot fail and leave an entry in the log that the index does not know.
        self.reserve_slots(level_start(level + 1))?;
        let len = record::entry_len(key.len(), value.len());
        if self.log.len() + (len + record::ALIGN) as u64 > ONCE_MAP_LOG_BYTES_MAX {
            return Err(Error::limit(
                "ONCE_MAP_LOG_BYTES_MAX",
                self.log.len() + len as u64,
                ONCE_MAP_LOG_BYTES_MAX,
            ));
        }
        let span = self.log.append_with(len, record::ALIGN, |offset, dest| {
            record::encode(&self.entropy, offset, hash, key, value, dest);
        })?;
        self.place(
            level,
            hash,
            (tag_of(hash) << OFFSET_BITS) | (span.offset() + 1),
        )?;
        self.count.fetch_add(1, Ordering::AcqRel);
        let entry = self.log.get(span)?;
        Ok(Insert::Inserted(&entry[len - value.len()..]))
    }

    fn reserve_slots(&self, slots: u64) -> Result<()> {
        if self.reserved_slots.load(Ordering::Acquire) < slots {
            self.index.reserve(slots)?;
            self.filter.reserve(FILTER_HEADER_WORDS + slots / 8)?;
            self.reserved_slots.fetch_max(slots, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Writes `slot` into the first empty slot of its probe sequence in `level`, or of a
    /// later level if `level`'s run is longer than [`PROBE_LIMIT`].
    fn place(&self, level: u64, hash: u64, slot: u64) -> Result<()> {
        let mut level = level;
        let mut limit = PROBE_LIMIT;
        loop {
            self.reserve_slots(level_start(level + 1))?;
            // The filter bit before the slot: a lookup that sees the slot sees the bit.
            self.set_filter(level, hash)?;
            self.top_level.fetch_max(level, Ordering::AcqRel);
            let cap = level_slots(level);
            let start = level_start(level);
            let mut pos = hash & (cap - 1);
            for _ in 0..limit.min(cap) {
                let placed = self.index.with_mut(start + pos, |s| {
                    let empty = *s == 0;
                    if empty {
                        *s = slot;
                    }
                    empty
                })?;
                if placed {
                    return Ok(());
                }
                pos = (pos + 1) & (cap - 1);
            }
            level += 1;
            limit = u64::MAX;
        }
    }

    /// Every entry as `(key, value)`, in insertion order, each checked against its
    /// checksums. Entries inserted while iterating may or may not be seen. A damaged
    /// entry is an `Err` item (`Corrupted`, naming the log and the entry's offset in it,
    /// or, where its frame does not hold, the log's data file and the frame's position)
    /// and iteration goes on with the entries after it; only a lane that cannot be read
    /// ends it early.
    pub fn iter(&self) -> impl Iterator<Item = Result<(&[u8], &[u8])>> + '_ {
        self.entries().map(|e| e.map(|(_, k, v)| (k, v)))
    }

    /// The log's directory, which errors about entries name.
    /// A `Corrupted` error for the entry at log `offset`, naming the data file that holds
    /// it and its position there (or the log and the offset, past the last lane).
    pub(crate) fn damaged_at(&self, offset: u64, what: String) -> Error {
        match self.log.file_position(offset) {
            Some((file, at)) => Error::corrupted(
                &file,
                at,
                format!(
                    "{what} (entry at offset {offset} of {})",
                    self.log_path.display()
                ),
            ),
            None => Error::corrupted(&self.log_path, offset, what),
        }
    }

    pub(crate) fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// As [`iter`](Self::iter), with each entry's offset in the log.
    pub(crate) fn entries(&self) -> EntryWalk<'_> {
        self.entries_from(0)
    }

    /// The entries from the log position `from` (0, or an entry's end) on.
    fn entries_from(&self, from: u64) -> EntryWalk<'_> {
        if self.log.format() == 1 {
            Box::new(record::Entries::new(
                &self.entropy,
                &self.log_path,
                self.log.chunks(),
            ))
        } else {
            Box::new(record::FramedEntries::new(
                &self.entropy,
                &self.log_path,
                &self.log,
                from,
            ))
        }
    }

    /// Makes every insert that returned before this call durable; see the type's docs.
    ///
    /// # Errors
    /// `Io` if a flush fails (the failing part is then poisoned); `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        if self.log.format() == 1 {
            return self.sync_index();
        }
        // The commit: the log's entries prove themselves (their frames), and open indexes
        // those the index does not cover, so the log's own flush is all a sync needs.
        self.log.sync()?;
        // Saturating: an index sync on another thread may record a log length past the
        // one read here (an underflow panicked in debug builds).
        if self.log.len().saturating_sub(self.meta.get().log_len) >= INDEX_SYNC_BYTES {
            self.sync_index()?;
        }
        Ok(())
    }

    /// Makes the index durable up to the log's end and records how far it covers, so
    /// that open re-indexes only the entries after: flushes the index (the slots written
    /// since the last such sync), then the log, then records `(count, log length)`.
    fn sync_index(&self) -> Result<()> {
        let _no_inserts = self.gate.write();
        self.index.sync()?;
        self.filter.sync()?;
        self.log.sync()?;
        self.meta.set(Meta {
            count: self.len(),
            log_len: self.log.len(),
        })?;
        self.meta.sync()
    }

    /// Bytes flushed to disk by this map's syncs so far (its log's and its index's):
    /// a sync flushes what changed since the one before, not the whole index.
    pub fn flushed_bytes(&self) -> u64 {
        self.log.flushed_bytes() + self.index.flushed_bytes() + self.filter.flushed_bytes()
    }
}

/// A [`OnceMap`] whose keys and values are plain-data types, read in place.
///
/// Entries keep keys and values 16-byte aligned in the mapped log, so `get` returns
/// `&V` without copying; `K` and `V` may be aligned to at most 16 bytes.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let map = accretion::TypedOnceMap::<u64, [u32; 4]>::open(&dir, "points")?;
/// map.insert(&7, &[1, 2, 3, 4])?;
/// assert_eq!(map.get(&7)?, Some(&[1, 2, 3, 4]));
/// # Ok::<(), accretion::Error>(())
/// ```
#[derive(Debug)]
pub struct TypedOnceMap<K, V> {
    map: OnceMap,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Pod, V: Pod> TypedOnceMap<K, V> {
    const ALIGNED: () = assert!(
        align_of::<K>() <= record::ALIGN && align_of::<V>() <= record::ALIGN,
        "TypedOnceMap keys and values may be aligned to at most 16 bytes"
    );

    /// Opens or creates the map at `name` in `dir`.
    ///
    /// # Errors
    /// As [`OnceMap::open`].
    pub fn open(dir: &Dir, name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        Ok(TypedOnceMap {
            map: OnceMap::open(dir, name)?,
            _types: PhantomData,
        })
    }

    fn cast<'a, T: Pod>(&self, bytes: &'a [u8]) -> Result<&'a T> {
        bytemuck::try_from_bytes(bytes).map_err(|e| {
            Error::incompatible(
                &self.map.log_path,
                format!(
                    "stored {} bytes do not form a {}: {e}",
                    bytes.len(),
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Sets `key` to `value` unless it is already set.
    ///
    /// # Errors
    /// As [`OnceMap::insert`].
    pub fn insert(&self, key: &K, value: &V) -> Result<Insert<'_, V>> {
        Ok(
            match self
                .map
                .insert(bytemuck::bytes_of(key), bytemuck::bytes_of(value))?
            {
                Insert::Inserted(v) => Insert::Inserted(self.cast(v)?),
                Insert::Existing(v) => Insert::Existing(self.cast(v)?),
            },
        )
    }

    /// The value of `key`, borrowed for the life of the map.
    ///
    /// # Errors
    /// As [`OnceMap::get`]; `Incompatible` if the stored bytes are not a `V`.
    pub fn get(&self, key: &K) -> Result<Option<&V>> {
        self.map
            .get(bytemuck::bytes_of(key))?
            .map(|v| self.cast(v))
            .transpose()
    }

    /// Every entry, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(&K, &V)>> + '_ {
        self.map
            .iter()
            .map(|e| e.and_then(|(k, v)| Ok((self.cast(k)?, self.cast(v)?))))
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.map.len()
    }

    /// True if the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Makes every insert that returned before this call durable.
    ///
    /// # Errors
    /// As [`OnceMap::sync`].
    pub fn sync(&self) -> Result<()> {
        self.map.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_geometry() {
        assert_eq!(level_for_count(0), 0);
        assert_eq!(level_for_count(511), 0);
        assert_eq!(level_for_count(512), 1);
        assert_eq!(level_for_count(512 + 2047), 1);
        assert_eq!(level_for_count(512 + 2048), 2);
        assert_eq!(level_start(1), 1024);
        assert_eq!(level_start(2), 1024 + 4096);
        for level in 0..20 {
            assert_eq!(level_of_slot(level_start(level)), level);
            assert_eq!(level_of_slot(level_start(level + 1) - 1), level);
        }
    }

    #[test]
    fn many_keys_across_levels_and_reopen() {
        let dir = Dir::temporary().unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        for i in 0..20_000u32 {
            let v = i.to_le_bytes().repeat((i % 7) as usize);
            assert!(map.insert(&i.to_be_bytes(), &v).unwrap().is_inserted());
        }
        map.sync().unwrap();
        for i in 0..20_001u32 {
            let got = map.get(&i.to_be_bytes()).unwrap();
            if i < 20_000 {
                assert_eq!(got.unwrap(), &i.to_le_bytes().repeat((i % 7) as usize)[..]);
            } else {
                assert!(got.is_none());
            }
        }
        drop(map);
        let map = OnceMap::open(&dir, "m").unwrap();
        assert_eq!(map.len(), 20_000);
        assert_eq!(map.iter().count(), 20_000);
        let first = map.iter().next().unwrap().unwrap();
        assert_eq!(first.0, 0u32.to_be_bytes());
    }
}
