//! Rows of signatures: the compare at the heart of a sharded store's lookup. A row holds
//! [`ROW_WIDTH`] 32-bit signatures (0 marks a free entry); a lookup compares the key's
//! signature against the whole row at once and reads only the records whose signature
//! matches. The compare is written in chunks of 16 lanes that build a bit mask, a shape
//! the compiler turns into SIMD compares on stable Rust (SSE2 on x86-64, NEON on
//! aarch64), in safe code on stable Rust, with no intrinsics. This file owns the row's shape and
//! the compare, nothing else. It is public (as `accretion::signature_row`) for the
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
}
