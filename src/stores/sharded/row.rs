//! Rows of signatures: the compare at the heart of a sharded store's lookup. A row holds
//! [`ROW_WIDTH`] 32-bit signatures (0 marks a free entry); a lookup compares the key's
//! signature against the whole row at once and reads only the records whose signature
//! matches. The compare is written in chunks of 64 lanes that build a bit mask, a shape
//! the compiler turns into SIMD compares on stable Rust (SSE2 on x86-64, NEON on
//! aarch64), in safe code on stable Rust, with no intrinsics. This file owns the row's shape, the
//! compare, and the rows' filters (`Filters`: a lookup of an absent key asks one
//! before it compares a row). It is public (as `accretion::signature_row`) for the
//! benchmark that compares it with a plain loop, and for anyone building rows of their own.
//!
//! ```
//! use accretion::signature_row::{self, ROW_WIDTH};
//!
//! let mut row = [signature_row::FREE; ROW_WIDTH];
//! row[300] = 0xfeed;
//! assert_eq!(signature_row::first(&row, 0xfeed), Some(300));
//! assert_eq!(signature_row::first(&row, signature_row::FREE), Some(0));
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

/// Entries in a row.
pub const ROW_WIDTH: usize = 512;
/// Rows in a shard.
pub const ROWS: usize = 64;
/// Lanes compared at once (one bit each of a u64 mask): 256 bytes, a few dozen vector
/// compares; the widths tried (16, 32, 64) put 64 first on this machine.
const CHUNK: usize = 64;
const _: () = assert!(CHUNK <= 64);
const _: () = assert!(ROW_WIDTH.is_multiple_of(CHUNK));

/// One row's signatures.
pub type Sigs = [u32; ROW_WIDTH];

/// The signature that marks a free entry.
pub const FREE: u32 = 0;

/// Whether any lane of `chunk` holds `sig`: an or-reduction with no early exit, which
/// LLVM turns into lane compares and one test.
#[inline]
fn chunk_has(chunk: &[u32; CHUNK], sig: u32) -> bool {
    chunk.iter().fold(false, |any, &s| any | (s == sig))
}

/// Mask of the lanes of `chunk` equal to `sig`: bit `i` for lane `i`. Only run on a
/// chunk [`chunk_has`] found a match in.
#[inline]
fn chunk_mask(chunk: &[u32; CHUNK], sig: u32) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0u64, |mask, (i, &s)| mask | (u64::from(s == sig) << i))
}

/// The positions in `row` holding `sig`, in increasing order.
pub fn matches(row: &Sigs, sig: u32) -> Matches<'_> {
    Matches {
        row,
        sig,
        chunk: 0,
        mask: 0,
    }
}

/// The first position in `row` holding `sig`, by the chunked compare.
pub fn first(row: &Sigs, sig: u32) -> Option<usize> {
    matches(row, sig).next()
}

/// The first position in `row` holding `sig`, by a plain loop: the baseline the
/// criterion benchmark compares [`first`] against.
pub fn first_plain(row: &Sigs, sig: u32) -> Option<usize> {
    row.iter().position(|&s| s == sig)
}

/// Iterator over the positions of a row holding one signature.
pub struct Matches<'a> {
    row: &'a Sigs,
    sig: u32,
    /// The next chunk to compare.
    chunk: usize,
    /// Matches of the chunk before `chunk` not yet returned.
    mask: u64,
}

impl Iterator for Matches<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            if self.chunk * CHUNK >= ROW_WIDTH {
                return None;
            }
            let at = self.chunk * CHUNK;
            let chunk: &[u32; CHUNK] = self.row[at..at + CHUNK]
                .try_into()
                .expect("a chunk is CHUNK lanes");
            if chunk_has(chunk, self.sig) {
                self.mask = chunk_mask(chunk, self.sig);
            }
            self.chunk += 1;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some((self.chunk - 1) * CHUNK + bit)
    }
}

/// Blocks of a row's filter: 16 blocks of 256 bits, 8 bits for each of the row's 512
/// entries (more per entry in a row not full), for about 2 % false positives in a full
/// row and well under 1 % at the fill rows usually have.
const FILTER_BLOCKS: usize = 16;
/// 32-bit words of a filter block: one bit is set in each.
const BLOCK_WORDS: usize = 8;
/// Words of one row's filter.
const ROW_WORDS: usize = FILTER_BLOCKS * BLOCK_WORDS;
/// The odd multipliers that pick a signature's bit in each word of its block (those of
/// the split-block Bloom filter of Parquet and Impala).
const SALTS: [u32; BLOCK_WORDS] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// The block of a row's filter that holds `sig`'s bits: from a mix of the signature (the
/// murmur3 finaliser) that the salted multiplies do not correlate with.
#[inline]
fn block_of(sig: u32) -> usize {
    let mut x = sig;
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^= x >> 16;
    (x as usize) % FILTER_BLOCKS
}

/// The bit `sig` sets in word `i` of its block.
#[inline]
fn bit_of(sig: u32, i: usize) -> u32 {
    1 << (sig.wrapping_mul(SALTS[i]) >> 27)
}

/// The words of one row's filter holding `sigs` (free entries left out).
fn row_words(sigs: &Sigs) -> [u32; ROW_WORDS] {
    let mut words = [0u32; ROW_WORDS];
    for &sig in sigs.iter().filter(|&&s| s != FREE) {
        let block = block_of(sig) * BLOCK_WORDS;
        for i in 0..BLOCK_WORDS {
            words[block + i] |= bit_of(sig, i);
        }
    }
    words
}

/// A split-block Bloom filter of each row's signatures, kept in memory beside the rows
/// (derived from them, so never written to disk): a lookup of a key that is not there
/// reads one 32-byte block instead of comparing the whole 2 KiB row, and compares the
/// row only on a hit (every present signature, or a false positive).
///
/// It never says no for a signature in its row: [`insert`](Self::insert) sets a
/// signature's bits before the row holds it, and [`rebuild_row`](Self::rebuild_row),
/// which drops the bits of signatures removed since, stores each word as the bits of
/// every signature in the row, so that a concurrent reader sees, word by word, either
/// the old bits or the new, both holding every signature in the row. Removals clear no
/// bits: the owner rebuilds a row once enough were removed. Inserts and rebuilds of one
/// row are serialised by the owner (a shard's writer lock); lookups take no lock.
pub(crate) struct Filters {
    words: Box<[AtomicU32]>,
}

impl Filters {
    /// Empty filters for `rows` rows.
    pub fn new(rows: usize) -> Filters {
        Filters {
            words: (0..rows * ROW_WORDS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn block(&self, row: usize, sig: u32) -> &[AtomicU32] {
        let at = row * ROW_WORDS + block_of(sig) * BLOCK_WORDS;
        &self.words[at..at + BLOCK_WORDS]
    }

    /// Whether row `row` may hold `sig`: `false` means it does not.
    #[inline]
    pub fn may_hold(&self, row: usize, sig: u32) -> bool {
        self.block(row, sig)
            .iter()
            .enumerate()
            .fold(true, |all, (i, w)| {
                let bit = bit_of(sig, i);
                all & (w.load(Ordering::Relaxed) & bit == bit)
            })
    }

    /// Counts `sig` as held by row `row`; before the row holds it.
    pub fn insert(&self, row: usize, sig: u32) {
        for (i, w) in self.block(row, sig).iter().enumerate() {
            let bit = bit_of(sig, i);
            if w.load(Ordering::Relaxed) & bit != bit {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// Makes row `row`'s filter hold exactly `sigs`, the row's signatures now.
    pub fn rebuild_row(&self, row: usize, sigs: &Sigs) {
        let words = row_words(sigs);
        let at = row * ROW_WORDS;
        for (w, new) in self.words[at..at + ROW_WORDS].iter().zip(words) {
            w.store(new, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_agree_with_a_plain_scan() {
        let mut row = [FREE; ROW_WIDTH];
        for (i, s) in row.iter_mut().enumerate() {
            *s = (i as u32).wrapping_mul(2_654_435_761) % 7;
        }
        for sig in 0..8 {
            let want: Vec<usize> = (0..ROW_WIDTH).filter(|&i| row[i] == sig).collect();
            assert_eq!(matches(&row, sig).collect::<Vec<_>>(), want);
            assert_eq!(first(&row, sig), first_plain(&row, sig));
        }
        row[ROW_WIDTH - 1] = 99;
        assert_eq!(first(&row, 99), Some(ROW_WIDTH - 1));
        assert_eq!(first(&row, 100), None);
    }
    #[test]
    fn filters_never_miss_a_signature_and_rarely_claim_one() {
        let f = Filters::new(2);
        let mut row = [FREE; ROW_WIDTH];
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u32).max(1)
        };
        for s in row.iter_mut() {
            *s = next();
            f.insert(1, *s);
        }
        assert!(row.iter().all(|&s| f.may_hold(1, s)));
        // Row 0 holds nothing.
        assert!(row.iter().all(|&s| !f.may_hold(0, s)));
        let trials = 200_000;
        let false_hits = (0..trials).filter(|_| f.may_hold(1, next())).count();
        // A full row: 8 bits per signature.
        assert!(false_hits * 100 < trials * 4, "{false_hits} of {trials}");
        // Half removed: a rebuilt row holds the rest, and claims fewer.
        for s in row.iter_mut().step_by(2) {
            *s = FREE;
        }
        f.rebuild_row(1, &row);
        assert!(
            row.iter()
                .filter(|&&s| s != FREE)
                .all(|&s| f.may_hold(1, s))
        );
        let false_half = (0..trials).filter(|_| f.may_hold(1, next())).count();
        assert!(false_half * 200 < trials, "{false_half} of {trials}");
        assert!(false_half < false_hits);
    }
}
