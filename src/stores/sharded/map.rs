//! The shard map: which shard covers which range of shard selectors (the top 16 bits of
//! a key's hash), durable as the store's state in a Journal, and routed in memory by a
//! table of all 65,536 selectors. A split, a merge, a compaction and a clear each end in
//! one Journal write that swaps shards in the map: that write is their commit point.
//!
//! This file owns the state's byte layout and the map's invariants (shards sorted,
//! aligned, covering every selector once), checked whenever a state is read.

use std::path::Path;

use bytemuck::{Pod, Zeroable};

use crate::limits::SHARDED_SHARDS_MAX;
use crate::{Error, Result};

/// "accretion sharded store" state, as a magic number.
pub(super) const STATE_MAGIC: u64 = u64::from_le_bytes(*b"acc-shrd");
/// The format this build writes.
pub(super) const FORMAT: u32 = 1;
/// `State::flags`: every shard's rows were made durable with a check of them (its
/// `meta`) at a clean shutdown, and nothing was written since: an open trusts rows whose
/// check holds and reads no record.
pub(super) const CLEAN: u32 = 1;
/// `State::flags`: nothing was ever written to the store, whose shards may have no files
/// yet (a crash cut its creation short): they are made at open.
pub(super) const FRESH: u32 = 2;
/// Selectors: the top 16 bits of a key's hash.
pub(super) const SELECTORS: u32 = 1 << 16;
/// Bits of a shard's range size (a range of `1 << bits` selectors).
const BITS_MAX: u32 = 16;

// A shard entry, one u64:
//   bits 0..16   first selector
//   bits 16..21  log2 of the number of selectors (0..=16)
//   bits 21..24  zero
//   bits 24..64  incarnation (its files are `{store}/s{incarnation}`)
const START_MASK: u64 = 0xFFFF;
const BITS_SHIFT: u32 = 16;
const INCARNATION_SHIFT: u32 = 24;
/// Largest incarnation an entry holds.
pub(super) const INCARNATION_MAX: u64 = (1 << (64 - INCARNATION_SHIFT)) - 1;

/// The store's state, in its Journal: a 64-byte head and the shard map.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct State {
    pub magic: u64,
    pub format: u32,
    pub flags: u32,
    /// Random at creation: every shard's first record names it.
    pub store_id: u64,
    /// The entropy's keyed hash of `store_id`: another store's (or a new) entropy file
    /// is told apart, and the rows rebuilt with its hashes.
    pub entropy_check: u64,
    /// Every incarnation below this may have files; none at or above it has. Raised
    /// durably before a new shard's files are made, so that an open can tell a leftover
    /// of ours (below it, not in the map) from anything else.
    pub next_incarnation: u64,
    pub shard_count: u32,
    pub _reserved: u32,
    pub _reserved2: [u64; 2],
    pub shards: [u64; SHARDED_SHARDS_MAX],
}

const _: () = assert!(size_of::<State>() == 64 + 8 * SHARDED_SHARDS_MAX);
const _: () = assert!(
    size_of::<State>() as u64 == crate::catalog::state_bytes(crate::catalog::Kind::ShardedStore)
);

/// One shard's place in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Spec {
    /// First selector.
    pub start: u32,
    /// The shard covers `1 << bits` selectors.
    pub bits: u32,
    pub incarnation: u64,
}

impl Spec {
    /// One past the last selector.
    pub fn end(&self) -> u32 {
        self.start + (1 << self.bits)
    }

    /// Whether the shard can split (it covers more than one selector).
    pub fn can_split(&self) -> bool {
        self.bits > 0
    }

    /// The two halves of the range, with the given incarnations.
    pub fn halves(&self, low: u64, high: u64) -> [Spec; 2] {
        let bits = self.bits - 1;
        [
            Spec {
                start: self.start,
                bits,
                incarnation: low,
            },
            Spec {
                start: self.start + (1 << bits),
                bits,
                incarnation: high,
            },
        ]
    }

    fn encode(&self) -> u64 {
        u64::from(self.start)
            | u64::from(self.bits) << BITS_SHIFT
            | self.incarnation << INCARNATION_SHIFT
    }

    fn decode(word: u64) -> Option<Spec> {
        let bits = ((word >> BITS_SHIFT) & 0xFF) as u32;
        let spec = Spec {
            start: (word & START_MASK) as u32,
            bits,
            incarnation: word >> INCARNATION_SHIFT,
        };
        (bits <= BITS_MAX && spec.start.is_multiple_of(1 << bits)).then_some(spec)
    }
}

/// The specs a state lists, checked: sorted, aligned, covering every selector exactly
/// once, incarnations distinct and below `next_incarnation`.
///
/// # Errors
/// `Corrupted`, naming `path` (the state's file) and what does not hold.
pub(super) fn specs(state: &State, path: &Path) -> Result<Vec<Spec>> {
    let bad = |what: String| Error::corrupted(path, 0, what);
    let count = state.shard_count as usize;
    if count == 0 || count > SHARDED_SHARDS_MAX {
        return Err(bad(format!(
            "the shard map lists {count} shards (1 to {SHARDED_SHARDS_MAX})"
        )));
    }
    let mut specs = Vec::with_capacity(count);
    let mut next = 0u32;
    for (i, &word) in state.shards[..count].iter().enumerate() {
        let spec = Spec::decode(word)
            .ok_or_else(|| bad(format!("shard map entry {i} ({word:#x}) is malformed")))?;
        if spec.start != next {
            return Err(bad(format!(
                "shard map entry {i} starts at selector {} where {next} was due",
                spec.start
            )));
        }
        if spec.incarnation >= state.next_incarnation {
            return Err(bad(format!(
                "shard map entry {i} names incarnation {} at or past the next one ({})",
                spec.incarnation, state.next_incarnation
            )));
        }
        next = spec.end();
        specs.push(spec);
    }
    if next != SELECTORS {
        return Err(bad(format!(
            "the shard map covers selectors up to {next}, not all {SELECTORS}"
        )));
    }
    let mut seen: Vec<u64> = specs.iter().map(|s| s.incarnation).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("two shards of the map share an incarnation".into()));
    }
    Ok(specs)
}

/// Writes `specs` (sorted, covering every selector) into `state`'s map.
pub(super) fn set_specs(state: &mut State, specs: &[Spec]) {
    debug_assert!(specs.len() <= SHARDED_SHARDS_MAX);
    debug_assert!(specs.windows(2).all(|w| w[0].end() == w[1].start));
    state.shards = [0; SHARDED_SHARDS_MAX];
    for (slot, spec) in state.shards.iter_mut().zip(specs) {
        *slot = spec.encode();
    }
    state.shard_count = specs.len() as u32;
}

/// `n` (a power of two, at most 65,536) shards of equal ranges, with incarnations
/// `first..first + n`.
pub(super) fn even(n: u32, first: u64) -> Vec<Spec> {
    debug_assert!(n.is_power_of_two() && n <= SELECTORS);
    let bits = (SELECTORS / n).trailing_zeros();
    (0..n)
        .map(|i| Spec {
            start: i << bits,
            bits,
            incarnation: first + u64::from(i),
        })
        .collect()
}

/// For each selector, the index of the shard covering it in `specs`.
pub(super) fn route(specs: &[Spec]) -> Box<[u16]> {
    let mut route = vec![0u16; SELECTORS as usize].into_boxed_slice();
    for (i, spec) in specs.iter().enumerate() {
        let i = u16::try_from(i).expect("at most SHARDED_SHARDS_MAX shards");
        route[spec.start as usize..spec.end() as usize].fill(i);
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_of(specs: &[Spec], next: u64) -> State {
        let mut s = State::zeroed();
        s.next_incarnation = next;
        set_specs(&mut s, specs);
        s
    }

    #[test]
    fn a_map_round_trips_and_its_invariants_are_checked() {
        let path = Path::new("state");
        let mut specs = even(4, 0);
        let halves = specs[1].halves(4, 5);
        specs.splice(1..2, halves);
        let s = state_of(&specs, 6);
        assert_eq!(super::specs(&s, path).unwrap(), specs);
        let r = route(&specs);
        assert_eq!(r[0], 0);
        assert_eq!(r[16384], 1);
        assert_eq!(r[16384 + 8192], 2);
        assert_eq!(r[65535], 4);
        // A gap, an overlap, a misaligned start, an incarnation past the next one, a
        // shared incarnation, an empty map: each refused.
        let mut gap = state_of(&specs, 6);
        gap.shards.copy_within(2..5, 1);
        gap.shard_count -= 1;
        let mut shared = specs.clone();
        shared[2].incarnation = shared[0].incarnation;
        for bad in [
            gap,
            state_of(&specs, 5),
            state_of(&shared, 6),
            state_of(&[], 6),
        ] {
            assert!(super::specs(&bad, path).is_err());
        }
        let mut misaligned = state_of(&specs, 6);
        misaligned.shards[1] += 1;
        assert!(super::specs(&misaligned, path).is_err());
    }
}
