//! The one standard workload: which keys and values exist, how many operations each phase
//! makes, and how a value read back is checked.
//!
//! Keys and values are not stored: each is regenerated from its index by a counter-based
//! generator, so a child process holds no multi-gigabyte key table (which would swamp the
//! peak RSS we report) and any value can be checked in a few nanoseconds. The first eight
//! bytes of a key are a bijection of its index, so keys are distinct by construction and
//! the index can be recovered from a key (the scan uses that to check every value). Random
//! access orders come from `rand`'s seeded generators (see `Workload::order_rng`). This file
//! does not talk to any engine.

use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Index at which absent keys start: far above every key any phase inserts, and the key
/// generator is a bijection, so an absent key is never present.
pub const ABSENT_BASE: u64 = 1 << 62;
/// Index at which the keys written by the mixed phases start.
pub const MIXED_BASE: u64 = 1 << 40;
/// Index at which the keys written by the durable phases start.
pub const DURABLE_BASE: u64 = 1 << 41;
/// Keys one thread of a multi-threaded write phase may use before the next thread's range.
pub const THREAD_STRIDE: u64 = 1 << 34;
/// Shortest key: the first eight bytes carry the bijection of the index.
pub const KEY_LEN_MIN: usize = 8;
/// Key length of the standard workload (the command line's default).
pub const KEY_LEN_DEFAULT: usize = 16;
/// Value length of the standard workload (the command line's default).
pub const VALUE_LEN_DEFAULT: usize = 100;

/// The workload's shape: sizes, counts and the seed every generator derives from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Keys loaded by the bulk and single-insert phases.
    pub n: u64,
    /// Key length in bytes (at least [`KEY_LEN_MIN`]).
    pub key_len: usize,
    /// Value length in bytes.
    pub value_len: usize,
    /// Seed of keys, values and access orders.
    pub seed: u64,
    /// Operations of each mixed 90/10 phase (all threads together).
    pub mixed_ops: u64,
    /// Most operations of each durable-write phase (all threads together).
    pub durable_ops: u64,
    /// Time budget of each durable-write phase in milliseconds; the phase stops at
    /// whichever of this and `durable_ops` comes first.
    pub durable_ms: u64,
}

impl Workload {
    /// Writes key `index` into `out` (cleared first).
    pub fn key(&self, index: u64, out: &mut Vec<u8>) {
        out.clear();
        let head = permute(index ^ self.seed);
        out.extend_from_slice(&head.to_be_bytes());
        let mut j = 0u64;
        while out.len() < self.key_len {
            let word = mix(head ^ 0x6b65_795f_7461_696c ^ j.wrapping_mul(GOLDEN));
            let take = (self.key_len - out.len()).min(8);
            out.extend_from_slice(&word.to_le_bytes()[..take]);
            j += 1;
        }
        out.truncate(self.key_len);
    }

    /// The index of `key`, if it is one of this workload's keys.
    pub fn index_of(&self, key: &[u8]) -> Option<u64> {
        let head: [u8; 8] = key.get(..8)?.try_into().ok()?;
        let index = unpermute(u64::from_be_bytes(head)) ^ self.seed;
        let mut expected = Vec::with_capacity(self.key_len);
        self.key(index, &mut expected);
        (expected == key).then_some(index)
    }

    /// Writes value `index` into `out` (cleared first): incompressible pseudo-random bytes.
    pub fn value(&self, index: u64, out: &mut Vec<u8>) {
        out.clear();
        let mut j = 0u64;
        while out.len() < self.value_len {
            let take = (self.value_len - out.len()).min(8);
            out.extend_from_slice(&self.value_word(index, j).to_le_bytes()[..take]);
            j += 1;
        }
    }

    /// True if `got` is exactly value `index`. Compares word by word without building the
    /// expected value, so checking costs a few nanoseconds per read.
    pub fn value_matches(&self, index: u64, got: &[u8]) -> bool {
        if got.len() != self.value_len {
            return false;
        }
        got.chunks(8)
            .zip(0u64..)
            .all(|(chunk, j)| chunk == &self.value_word(index, j).to_le_bytes()[..chunk.len()])
    }

    /// The 32-byte id an absent content-addressed lookup uses: random bytes that are the
    /// BLAKE3 hash of no stored value (with overwhelming probability, which the run checks).
    pub fn absent_id(&self, j: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        for (w, chunk) in id.chunks_mut(8).enumerate() {
            let word = mix(self.seed ^ 0x6162_7365_6e74_5f69 ^ (j << 2 | w as u64));
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        id
    }

    /// The seeded generator of access orders for `stream` (a phase and thread number), so
    /// every engine sees the same sequence of indices.
    pub fn order_rng(&self, stream: u64) -> SmallRng {
        SmallRng::seed_from_u64(self.seed ^ mix(stream.wrapping_add(0x006f_7264_6572)))
    }

    fn value_word(&self, index: u64, j: u64) -> u64 {
        mix(self.seed
            ^ 0x7661_6c75_6573_0000
            ^ index.wrapping_mul(0xff51_afd7_ed55_8ccd)
            ^ j.wrapping_mul(GOLDEN))
    }
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function on `x + GOLDEN`: a good, cheap mixer.
fn mix(x: u64) -> u64 {
    permute(x.wrapping_add(GOLDEN))
}

/// A bijection of u64 (xor-shifts and odd multiplications are each invertible).
fn permute(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The inverse of [`permute`].
fn unpermute(z: u64) -> u64 {
    let mut x = unshift(z, 31);
    x = unshift(x.wrapping_mul(inverse(0x94d0_49bb_1331_11eb)), 27);
    unshift(x.wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9)), 30)
}

/// Inverts `y = x ^ (x >> s)`.
fn unshift(y: u64, s: u32) -> u64 {
    let mut x = y;
    let mut shift = s;
    while shift < 64 {
        x = y ^ (x >> s);
        shift += s;
    }
    y ^ (x >> s)
}

/// The multiplicative inverse of an odd `a` modulo 2^64 (Newton's iteration).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            n: 1000,
            key_len: 16,
            value_len: 100,
            seed: 42,
            mixed_ops: 10,
            durable_ops: 10,
            durable_ms: 10,
        }
    }

    #[test]
    fn permute_inverts() {
        for x in [0, 1, 2, u64::MAX, 1 << 40, 0x1234_5678_9abc_def0] {
            assert_eq!(unpermute(permute(x)), x);
        }
    }

    #[test]
    fn keys_round_trip_and_values_check() {
        let w = workload();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in [0, 7, 999, ABSENT_BASE + 3] {
            w.key(i, &mut k);
            assert_eq!(k.len(), 16);
            assert_eq!(w.index_of(&k), Some(i));
            w.value(i, &mut v);
            assert!(w.value_matches(i, &v));
            assert!(!w.value_matches(i + 1, &v));
        }
        let odd = Workload {
            key_len: 13,
            value_len: 7,
            ..w
        };
        odd.key(5, &mut k);
        odd.value(5, &mut v);
        assert_eq!((k.len(), v.len()), (13, 7));
        assert_eq!(odd.index_of(&k), Some(5));
        assert!(odd.value_matches(5, &v));
    }
}
