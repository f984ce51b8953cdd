//! The Robin Hood index of a hash store: one generation `{store}/i{N}`, a
//! [`RandomAccess`] of `u64` words, two per slot. It owns the probing (insert with
//! stealing, backward-shift delete, lookup that stops at the first richer slot) and the
//! structural check; it knows nothing of records beyond the position words it stores.
//!
//! Readers and the writer never touch a generation at once: the store holds its index
//! behind a lock that writers take exclusively for each change, so a probe never sees a
//! half-shifted run.

use super::data::Remover;
use crate::{Dir, Error, RandomAccess, Result};

// A slot is two words:
//
//   word 0: the key's keyed 64-bit hash with its lowest bit set (0 = empty slot);
//           the home slot is its top `bits` bits
//   word 1: bit 63: the parity of the data generation the record lies in;
//           bits 0-47: the record's log offset / 16 (records start on 16-byte frames)
/// The position word's generation bit.
const PARITY_BIT: u64 = 1 << 63;
/// Log offsets are stored in units of this (the data log's frame grain).
const OFFSET_GRAIN: u64 = 16;
/// Largest log offset a slot holds.
pub(super) const OFFSET_MAX: u64 = ((1 << 48) - 1) * OFFSET_GRAIN;
/// Fewest slots of an index (2^8).
pub(super) const BITS_MIN: u32 = 8;

/// The index's word 0 for a key whose hash is `hash`.
pub(super) fn tag(hash: u64) -> u64 {
    hash | 1
}

/// The position word of the record at `offset` of a generation numbered `number`.
pub(super) fn position(number: u64, offset: u64) -> u64 {
    debug_assert!(offset.is_multiple_of(OFFSET_GRAIN) && offset <= OFFSET_MAX);
    (offset / OFFSET_GRAIN) | if number & 1 == 1 { PARITY_BIT } else { 0 }
}

/// The parity of the generation and the log offset of a position word.
pub(super) fn locate(pos: u64) -> (u64, u64) {
    (pos >> 63, (pos & !PARITY_BIT) * OFFSET_GRAIN)
}

/// The name of index generation `n` of store `store`.
pub(super) fn index_name(store: &str, n: u64) -> String {
    format!("{store}/i{n}")
}

/// One index generation.
pub(super) struct Index {
    words: RandomAccess<u64>,
    pub number: u64,
    pub bits: u32,
    mask: u64,
    remover: Remover,
}

/// What [`Index::check`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Shape {
    pub entries: u64,
    pub distance_sum: u64,
    pub distance_max: u64,
}

impl Index {
    /// Opens (or creates) index generation `number` of `store` with 2^`bits` slots.
    pub fn open(dir: &Dir, store: &str, number: u64, bits: u32) -> Result<Index> {
        let name = index_name(store, number);
        let words = RandomAccess::<u64>::open(dir, &name)?;
        let slots = 1u64 << bits;
        let len = words.len();
        if len > 2 * slots {
            return Err(Error::corrupted(
                &dir.path().join(&name),
                0,
                format!("an index of {slots} slots holds {len} words"),
            ));
        }
        words.extend_len(2 * slots)?;
        Ok(Index {
            words,
            number,
            bits,
            mask: slots - 1,
            remover: Remover::new(dir, name),
        })
    }

    /// Marks the generation for removal once dropped.
    pub fn retire(&self) {
        self.remover.retire();
    }

    /// Slots of the index.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn home(&self, tag: u64) -> u64 {
        (tag >> (64 - self.bits)) & self.mask
    }

    /// How far slot `i`, holding `tag`, lies from its home slot.
    fn distance(&self, i: u64, tag: u64) -> u64 {
        i.wrapping_sub(self.home(tag)) & self.mask
    }

    /// Slot `i`: (tag, position); a tag of 0 is an empty slot.
    pub fn slot(&self, i: u64) -> Result<(u64, u64)> {
        Ok((self.words.read(2 * i)?, self.words.read(2 * i + 1)?))
    }

    fn put(&self, i: u64, tag: u64, pos: u64) -> Result<()> {
        self.words.set(2 * i, tag)?;
        self.words.set(2 * i + 1, pos)
    }

    /// The slot holding `tag` whose position `is_it` accepts, and that position; probing
    /// stops at an empty slot or one closer to its home than the key would be to its own.
    pub fn find(
        &self,
        tag: u64,
        mut is_it: impl FnMut(u64) -> Result<bool>,
    ) -> Result<Option<(u64, u64)>> {
        let mut i = self.home(tag);
        for d in 0..=self.mask {
            let t = self.words.read(2 * i)?;
            if t == 0 || self.distance(i, t) < d {
                return Ok(None);
            }
            if t == tag {
                let pos = self.words.read(2 * i + 1)?;
                if is_it(pos)? {
                    return Ok(Some((i, pos)));
                }
            }
            i = (i + 1) & self.mask;
        }
        Ok(None)
    }

    /// Points slot `i` at `pos` (an overwrite of its key).
    pub fn replace(&self, i: u64, pos: u64) -> Result<()> {
        self.words.set(2 * i + 1, pos)
    }

    /// Inserts a key known to be absent. The caller keeps the index below full.
    pub fn insert(&self, mut tag: u64, mut pos: u64) -> Result<()> {
        let mut i = self.home(tag);
        let mut d = 0;
        for _ in 0..=self.mask {
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
            i = (i + 1) & self.mask;
            d += 1;
        }
        panic!("a hash index was full: the store keeps it below 90% of its slots");
    }

    /// Removes the entry in slot `i`, shifting the run after it back by one.
    pub fn remove(&self, mut i: u64) -> Result<()> {
        for _ in 0..self.mask {
            let next = (i + 1) & self.mask;
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
        let (last, _) = self.slot(self.mask)?;
        let mut before = (last != 0).then(|| self.distance(self.mask, last));
        for i in 0..self.capacity() {
            let (t, _) = self.slot(i)?;
            if t == 0 {
                before = None;
                continue;
            }
            if t & 1 == 0 {
                return Ok(Err((i, "a slot's tag lacks its low bit".into())));
            }
            let d = self.distance(i, t);
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

    /// Makes the index durable (a clean shutdown's).
    pub fn sync(&self) -> Result<()> {
        self.words.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_and_removes_keep_the_shape_against_a_model() {
        let dir = Dir::temporary().unwrap();
        let index = Index::open(&dir, "h", 0, BITS_MIN).unwrap();
        let mut model = std::collections::HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..20_000u64 {
            let key = next() % 400;
            let t = tag(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let found = index.find(t, |p| Ok(p == key)).unwrap();
            assert_eq!(found.is_some(), model.contains_key(&key), "step {step}");
            if let Some((slot, _)) = found {
                index.remove(slot).unwrap();
                model.remove(&key);
            } else if model.len() < 230 {
                index.insert(t, key).unwrap();
                model.insert(key, ());
            }
            let shape = index.check().unwrap().unwrap();
            assert_eq!(shape.entries, model.len() as u64, "step {step}");
        }
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(locate(position(7, 4096)), (1, 4096));
        assert_eq!(locate(position(8, OFFSET_MAX)), (0, OFFSET_MAX));
    }
}
