//! The Robin Hood index of a hash store: one generation `{store}/i{N}`, two
//! [`RandomAccess`] arrays: `slots` (two `u64` words a slot: the key's hash and where its
//! record lies) and `tags` (one `u16` a slot: a fingerprint of the hash and the slot's
//! probe distance). It owns the probing (insert with stealing, backward-shift delete,
//! lookup that stops at the first richer slot) and the structural check; it knows nothing
//! of records beyond the position words it stores.
//!
//! A lookup probes the tags, an eighth of the slots' size (4 MiB at a million keys, so
//! they stay in the processor's cache): an absent key costs one cached load, and a
//! present one reads the slot words of its own slot only.
//!
//! Readers and the writer never touch a generation at once: the store holds its index
//! behind a lock that writers take exclusively for each change, so a probe never sees a
//! half-shifted run.

use std::cell::Cell;

use super::data::Remover;
use crate::limits::{HASH_INDEX_SLOTS_MAX, RANDOM_ACCESS_LANE_BASE_ELEMENTS};
use crate::{Dir, Error, RandomAccess, Result};

// A slot is two words:
//
//   word 0: the key's keyed 64-bit hash with its lowest bit set (0 = empty slot);
//           the home slot is `hash * slots / 2^64` (the slots need not be a power of
//           two: see `capacity`)
//   word 1: bit 63: the parity of the data generation the record lies in;
//           bits 0-47: the record's log offset / 16 (records start on 16-byte frames)
//
// and its tag, a u16:
//   bits 8-15: the slot's probe distance + 1, at most 255 (0 = empty slot; 255 = "254
//              or more": the distance is then computed from word 0)
//   bits 0-7:  bits 8-15 of the hash (a fingerprint: a slot whose differs is not read)
/// The position word's generation bit.
const PARITY_BIT: u64 = 1 << 63;
/// Log offsets are stored in units of this (the data log's frame grain).
const OFFSET_GRAIN: u64 = 16;
/// Largest log offset a slot holds.
pub(super) const OFFSET_MAX: u64 = ((1 << 48) - 1) * OFFSET_GRAIN;
/// The smallest index level: [`capacity`] 4096 slots.
pub(super) const LEVEL_MIN: u32 = 1;
/// The largest index level (about 2^40 slots, [`HASH_INDEX_SLOTS_MAX`]).
pub(super) const LEVEL_MAX: u32 = 28;
const _: () = assert!(capacity(LEVEL_MAX) <= HASH_INDEX_SLOTS_MAX);

/// Slots of an index of level `level`: `4096 × (2^level − 1)`, which is what the first
/// `level` lanes of a [`RandomAccess`] hold (lanes of 4096 × 2^i elements), so the tags
/// fill their lanes exactly and the slot words leave 4096 words of their last lane unused.
/// A level more is about twice the slots.
pub(super) const fn capacity(level: u32) -> u64 {
    RANDOM_ACCESS_LANE_BASE_ELEMENTS * ((1 << level) - 1)
}

/// Distances a tag holds exactly; longer ones are read from the slot.
const DISTANCE_CAPPED: u64 = 254;

/// The fingerprint a tag keeps of a slot's hash.
fn fingerprint(tag: u64) -> u16 {
    ((tag >> 8) & 0xff) as u16
}

/// The index's word 0 for a key whose hash is `hash`.
pub(super) fn tag(hash: u64) -> u64 {
    hash | 1
}

/// The position word of the record at `offset` of a generation numbered `number`.
pub(super) fn position(number: u64, offset: u64) -> u64 {
    debug_assert!(offset.is_multiple_of(OFFSET_GRAIN) && offset <= OFFSET_MAX);
    (offset / OFFSET_GRAIN) | if number & 1 == 1 { PARITY_BIT } else { 0 }
}

/// The parity of the generation and the log offset of a position word. Bits 48 to 62
/// are never set by the store; a damaged word's are ignored (the offset they would make
/// is no record's, which the read then finds).
pub(super) fn locate(pos: u64) -> (u64, u64) {
    (pos >> 63, (pos & OFFSET_UNITS_MASK) * OFFSET_GRAIN)
}

/// The bits of a position word that hold the offset, in units of [`OFFSET_GRAIN`].
const OFFSET_UNITS_MASK: u64 = (1 << 48) - 1;

/// The name of index generation `n` of store `store`.
pub(super) fn index_name(store: &str, n: u64) -> String {
    format!("{store}/i{n}")
}

/// Where an index's slot words and tags live: in files (an index generation), or in
/// memory (the scratch index a rebuild builds before writing it out at once).
pub(super) trait Table {
    /// Word `i` (slot `i / 2`'s word `i % 2`).
    fn word(&self, i: u64) -> Result<u64>;
    fn set_word(&self, i: u64, word: u64) -> Result<()>;
    fn tag(&self, slot: u64) -> Result<u16>;
    fn set_tag(&self, slot: u64, tag: u16) -> Result<()>;
}

/// An index generation's arrays.
pub(super) struct Files {
    words: RandomAccess<u64>,
    tags: RandomAccess<u16>,
}

impl Table for Files {
    fn word(&self, i: u64) -> Result<u64> {
        self.words.read(i)
    }

    fn set_word(&self, i: u64, word: u64) -> Result<()> {
        self.words.set(i, word)
    }

    fn tag(&self, slot: u64) -> Result<u16> {
        self.tags.read(slot)
    }

    fn set_tag(&self, slot: u64, tag: u16) -> Result<()> {
        self.tags.set(slot, tag)
    }
}

/// A scratch index's arrays, in memory.
pub(super) struct Memory {
    words: Vec<Cell<u64>>,
    tags: Vec<Cell<u16>>,
}

impl Table for Memory {
    fn word(&self, i: u64) -> Result<u64> {
        Ok(self.words[i as usize].get())
    }

    fn set_word(&self, i: u64, word: u64) -> Result<()> {
        self.words[i as usize].set(word);
        Ok(())
    }

    fn tag(&self, slot: u64) -> Result<u16> {
        Ok(self.tags[slot as usize].get())
    }

    fn set_tag(&self, slot: u64, tag: u16) -> Result<()> {
        self.tags[slot as usize].set(tag);
        Ok(())
    }
}

/// Robin Hood probing over a table of `capacity(level)` slots.
pub(super) struct Probing<T> {
    table: T,
    pub level: u32,
    slots: u64,
}

/// A rebuild's index, in memory.
pub(super) type Scratch = Probing<Memory>;

impl Scratch {
    /// An empty scratch index of level `level`.
    pub fn new(level: u32) -> Scratch {
        let slots = capacity(level);
        Probing {
            table: Memory {
                words: (0..2 * slots).map(|_| Cell::new(0)).collect(),
                tags: (0..slots).map(|_| Cell::new(0)).collect(),
            },
            level,
            slots,
        }
    }
}

/// One index generation.
pub(super) struct Index {
    probing: Probing<Files>,
    pub number: u64,
    remover: Remover,
}

impl std::ops::Deref for Index {
    type Target = Probing<Files>;

    fn deref(&self) -> &Probing<Files> {
        &self.probing
    }
}

/// What [`Index::check`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Shape {
    pub entries: u64,
    pub distance_sum: u64,
    pub distance_max: u64,
}

impl Index {
    /// Opens (or creates) index generation `number` of `store`, of level `level`: the
    /// files hold its every slot (zeros in a new one).
    pub fn open(dir: &Dir, store: &str, number: u64, level: u32) -> Result<Index> {
        let index = Self::open_as_is(dir, store, number, level)?;
        let t = &index.probing.table;
        t.words.extend_len(2 * index.slots)?;
        t.tags.extend_len(index.slots)?;
        Ok(index)
    }

    /// Opens index generation `number` as its files are, allocating nothing: for the
    /// open that decides whether to trust it (see [`whole`](Self::whole)).
    pub fn open_as_is(dir: &Dir, store: &str, number: u64, level: u32) -> Result<Index> {
        assert!(
            (LEVEL_MIN..=LEVEL_MAX).contains(&level),
            "index level {level}"
        );
        let name = index_name(store, number);
        let words = RandomAccess::<u64>::open(dir, &format!("{name}/slots"))?;
        let tags = RandomAccess::<u16>::open(dir, &format!("{name}/tags"))?;
        let slots = capacity(level);
        if words.len() > 2 * slots || tags.len() > slots {
            return Err(Error::corrupted(
                &dir.path().join(&name),
                0,
                format!(
                    "an index of {slots} slots holds {} words and {} tags",
                    words.len(),
                    tags.len()
                ),
            ));
        }
        Ok(Index {
            probing: Probing {
                table: Files { words, tags },
                level,
                slots,
            },
            number,
            remover: Remover::new(dir, name),
        })
    }

    /// Marks the generation for removal once dropped.
    pub fn retire(&self) {
        self.remover.retire();
    }

    /// Writes the occupied slots of `scratch`, an index of the same level, into this one,
    /// which is empty: in slot order, so that the files' pages are written one after the
    /// other.
    pub fn fill_from(&self, scratch: &Scratch) -> Result<()> {
        assert_eq!(
            scratch.slots, self.slots,
            "a scratch index of another level"
        );
        for i in 0..self.slots {
            let tag = scratch.table.tag(i)?;
            if tag != 0 {
                let t = &self.probing.table;
                t.set_word(2 * i, scratch.table.word(2 * i)?)?;
                t.set_word(2 * i + 1, scratch.table.word(2 * i + 1)?)?;
                t.set_tag(i, tag)?;
            }
        }
        Ok(())
    }

    /// A checksum of every slot and tag: written into the state at a clean shutdown and
    /// checked by the open that trusts the index, so that an index damaged at rest is
    /// rebuilt rather than trusted. Reads the arrays in bulk (about 10 ms a million keys).
    pub fn digest(&self) -> Result<u64> {
        let t = &self.probing.table;
        digest_of(self.slots, |at, words, tags| {
            t.words.read_many(2 * at, words)?;
            t.tags.read_many(at, tags)
        })
    }

    /// The [`digest`](Self::digest) of an empty index of level `level`.
    pub fn empty_digest(level: u32) -> u64 {
        digest_of(capacity(level), |_, _, _| Ok(())).expect("zeros cannot fail")
    }

    /// Whether the files hold exactly the slots of this index's level, as a clean
    /// shutdown leaves them (every slot written out): an index of another size is not
    /// trusted, whatever its state says.
    pub fn whole(&self) -> bool {
        let t = &self.probing.table;
        t.words.len() == 2 * self.slots && t.tags.len() == self.slots
    }

    /// Occupied slots, counted from the tags.
    pub fn count(&self) -> Result<u64> {
        let mut tags = vec![0u16; 1 << 16];
        let mut n = 0;
        let mut at = 0;
        while at < self.slots {
            let k = (self.slots - at).min(1 << 16);
            self.probing
                .table
                .tags
                .read_many(at, &mut tags[..k as usize])?;
            n += tags[..k as usize].iter().filter(|t| **t != 0).count() as u64;
            at += k;
        }
        Ok(n)
    }

    /// Makes the index durable (a clean shutdown's).
    pub fn sync(&self) -> Result<()> {
        self.probing.table.words.sync()?;
        self.probing.table.tags.sync()
    }
}

impl<T: Table> Probing<T> {
    /// Slots of the index.
    pub fn capacity(&self) -> u64 {
        self.slots
    }

    fn home(&self, tag: u64) -> u64 {
        // Lemire's multiply-shift: the high bits of the hash pick the slot.
        ((u128::from(tag) * u128::from(self.slots)) >> 64) as u64
    }

    /// The slot after `i` (runs wrap around the end).
    fn next(&self, i: u64) -> u64 {
        if i + 1 == self.slots { 0 } else { i + 1 }
    }

    /// How far slot `i`, holding `tag`, lies from its home slot.
    fn distance(&self, i: u64, tag: u64) -> u64 {
        let home = self.home(tag);
        if i >= home {
            i - home
        } else {
            i + self.slots - home
        }
    }

    /// Slot `i`: (tag, position); a tag of 0 is an empty slot.
    pub fn slot(&self, i: u64) -> Result<(u64, u64)> {
        Ok((self.table.word(2 * i)?, self.table.word(2 * i + 1)?))
    }

    fn put(&self, i: u64, tag: u64, pos: u64) -> Result<()> {
        self.table.set_word(2 * i, tag)?;
        self.table.set_word(2 * i + 1, pos)?;
        let short = if tag == 0 {
            0
        } else {
            let distance = self.distance(i, tag).min(DISTANCE_CAPPED);
            (distance as u16 + 1) << 8 | fingerprint(tag)
        };
        self.table.set_tag(i, short)
    }

    /// The probe distance of slot `i` from its tag `short` (reading the slot's hash only
    /// for a distance too long for the tag), or `None` for an empty slot.
    fn tag_distance(&self, i: u64, short: u16) -> Result<Option<u64>> {
        match short >> 8 {
            0 => Ok(None),
            d if u64::from(d) <= DISTANCE_CAPPED => Ok(Some(u64::from(d) - 1)),
            _ => Ok(Some(self.distance(i, self.table.word(2 * i)?))),
        }
    }

    /// The slot holding `tag` whose position `is_it` accepts, and that position; probing
    /// stops at an empty slot or one closer to its home than the key would be to its own.
    pub fn find(
        &self,
        tag: u64,
        mut is_it: impl FnMut(u64) -> Result<bool>,
    ) -> Result<Option<(u64, u64)>> {
        let mut i = self.home(tag);
        let fp = fingerprint(tag);
        for d in 0..self.slots {
            let short = self.table.tag(i)?;
            match self.tag_distance(i, short)? {
                None => return Ok(None),
                Some(theirs) if theirs < d => return Ok(None),
                Some(_) => {}
            }
            if short & 0xff == fp && self.table.word(2 * i)? == tag {
                let pos = self.table.word(2 * i + 1)?;
                if is_it(pos)? {
                    return Ok(Some((i, pos)));
                }
            }
            i = self.next(i);
        }
        Ok(None)
    }

    /// Points slot `i` at `pos` (an overwrite of its key).
    pub fn replace(&self, i: u64, pos: u64) -> Result<()> {
        self.table.set_word(2 * i + 1, pos)
    }

    /// Inserts a key known to be absent. The caller keeps the index below full; if it
    /// is full all the same (its entry count was wrong: a damaged state), the insert is
    /// refused before any slot changes.
    ///
    /// # Errors
    /// `LimitExceeded` if no slot is empty; as reading and writing the table.
    pub fn insert(&self, mut tag: u64, mut pos: u64) -> Result<()> {
        let mut i = self.home(tag);
        // The run ends at an empty slot, which Robin Hood moves reach and never pass.
        let mut room = false;
        for _ in 0..self.slots {
            if self.table.tag(i)? == 0 {
                room = true;
                break;
            }
            i = self.next(i);
        }
        if !room {
            return Err(Error::limit(
                "hash index slots (the index is full: its entry count was wrong)",
                self.slots + 1,
                self.slots,
            ));
        }
        let mut i = self.home(tag);
        let mut d = 0;
        for _ in 0..self.slots {
            let (t, p) = self.slot(i)?;
            if t == 0 {
                return self.put(i, tag, pos);
            }
            let theirs = self.distance(i, t);
            if theirs < d {
                // Robin Hood: the richer entry gives up its slot and probes on.
                self.put(i, tag, pos)?;
                (tag, pos, d) = (t, p, theirs);
            }
            i = self.next(i);
            d += 1;
        }
        panic!("a hash index was full: the store keeps it below 90% of its slots");
    }

    /// Removes the entry in slot `i`, shifting the run after it back by one.
    pub fn remove(&self, mut i: u64) -> Result<()> {
        for _ in 1..self.slots {
            let next = self.next(i);
            let (t, p) = self.slot(next)?;
            if t == 0 || self.distance(next, t) == 0 {
                break;
            }
            self.put(i, t, p)?;
            i = next;
        }
        self.put(i, 0, 0)
    }

    /// Every occupied slot's (slot, tag, position), in slot order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(u64, u64, u64)>> + '_ {
        (0..self.capacity()).filter_map(move |i| match self.slot(i) {
            Ok((0, _)) => None,
            Ok((t, p)) => Some(Ok((i, t, p))),
            Err(e) => Some(Err(e)),
        })
    }

    /// Checks the Robin Hood shape: every entry within its probe distance of home, the
    /// distances along a run rising by at most one, a run's first entry at its home.
    /// Returns what it counted, or the slot where the shape breaks and why.
    pub fn check(&self) -> Result<std::result::Result<Shape, (u64, String)>> {
        let mut shape = Shape::default();
        // The slot before slot 0 is the last one (runs wrap).
        let (last, _) = self.slot(self.slots - 1)?;
        let mut before = (last != 0).then(|| self.distance(self.slots - 1, last));
        for i in 0..self.capacity() {
            let (t, _) = self.slot(i)?;
            if t == 0 {
                if self.table.tag(i)? != 0 {
                    return Ok(Err((i, "an empty slot has a tag".into())));
                }
                before = None;
                continue;
            }
            if t & 1 == 0 {
                return Ok(Err((i, "a slot's hash lacks its low bit".into())));
            }
            let d = self.distance(i, t);
            let short = self.table.tag(i)?;
            if self.tag_distance(i, short)? != Some(d) || short & 0xff != fingerprint(t) {
                return Ok(Err((
                    i,
                    format!("tag {short:#06x} does not match the slot"),
                )));
            }
            let allowed = before.map_or(0, |b| b + 1);
            if d > allowed {
                return Ok(Err((
                    i,
                    format!("probe distance {d} where at most {allowed} is possible"),
                )));
            }
            shape.entries += 1;
            shape.distance_sum += d;
            shape.distance_max = shape.distance_max.max(d);
            before = Some(d);
        }
        Ok(Ok(shape))
    }
}

/// The index checksum over `slots` slots whose words and tags `fill` copies out, a
/// chunk at a time (`fill(first slot, words, tags)`).
fn digest_of(
    slots: u64,
    mut fill: impl FnMut(u64, &mut [u64], &mut [u16]) -> Result<()>,
) -> Result<u64> {
    const CHUNK: u64 = 1 << 16;
    let mut sum = slots;
    let mut words = vec![0u64; 2 * CHUNK as usize];
    let mut tags = vec![0u16; CHUNK as usize];
    let mut bytes = Vec::with_capacity(CHUNK as usize * 18);
    let mut at = 0;
    while at < slots {
        let n = CHUNK.min(slots - at);
        let (words, tags) = (&mut words[..2 * n as usize], &mut tags[..n as usize]);
        fill(at, words, tags)?;
        // Little-endian bytes, so that the sum is the same on any host: on a
        // little-endian one, the arrays' own bytes.
        bytes.clear();
        if cfg!(target_endian = "little") {
            bytes.extend_from_slice(bytemuck::cast_slice(words));
            bytes.extend_from_slice(bytemuck::cast_slice(tags));
        } else {
            bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
            bytes.extend(tags.iter().flat_map(|t| t.to_le_bytes()));
        }
        sum = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, sum);
        at += n;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_and_removes_keep_the_shape_against_a_model() {
        let dir = Dir::temporary().unwrap();
        let index = Index::open(&dir, "h", 0, LEVEL_MIN).unwrap();
        let mut model = std::collections::HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..20_000u64 {
            let key = next() % 6_000;
            let t = tag(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let found = index.find(t, |p| Ok(p == key)).unwrap();
            assert_eq!(found.is_some(), model.contains_key(&key), "step {step}");
            if let Some((slot, _)) = found {
                index.remove(slot).unwrap();
                model.remove(&key);
            } else if model.len() < 3_600 {
                index.insert(t, key).unwrap();
                model.insert(key, ());
            }
            let shape = index.check().unwrap().unwrap();
            assert_eq!(shape.entries, model.len() as u64, "step {step}");
        }
    }

    /// Keys that all share one home slot make runs longer than a tag can count: the
    /// distance is then read from the slot, and lookups and removals still hold.
    #[test]
    fn distances_past_what_a_tag_holds_are_read_from_the_slot() {
        let dir = Dir::temporary().unwrap();
        let index = Index::open(&dir, "h", 0, LEVEL_MIN).unwrap();
        let same_home = |k: u64| tag(k << 9);
        for k in 0..400 {
            index.insert(same_home(k), k).unwrap();
        }
        let shape = index.check().unwrap().unwrap();
        assert_eq!((shape.entries, shape.distance_max), (400, 399));
        for k in (0..400).rev().step_by(3) {
            let (slot, pos) = index.find(same_home(k), |p| Ok(p == k)).unwrap().unwrap();
            assert_eq!(pos, k);
            index.remove(slot).unwrap();
            assert!(index.find(same_home(k), |p| Ok(p == k)).unwrap().is_none());
        }
        index.check().unwrap().unwrap();
        assert!(index.find(same_home(1), |p| Ok(p == 1)).unwrap().is_some());
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(locate(position(7, 4096)), (1, 4096));
        assert_eq!(locate(position(8, OFFSET_MAX)), (0, OFFSET_MAX));
    }
}
