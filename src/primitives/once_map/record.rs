//! The byte layout of one OnceMap entry in its log, and the walk over a log's entries.
//!
//! ```text
//! offset      size  field
//!      0         4  key length, u32 LE
//!      4         4  value length, u32 LE
//!      8         8  key hash, u64 LE (the map's keyed hash of the key)
//!     16         8  value checksum, u64 LE (XXH3-64, seed 0, of the value)
//!     24         8  header checksum, u64 LE: keyed hash of (entry offset u64 LE ++
//!                   bytes 0..24); never 0 (a computed 0 is stored as 1)
//!     32         K  key
//!   32+K    pad16   zeros, so the value starts 16-aligned
//!      V            value
//! ```
//! Entries start at multiples of 16. An all-zero header marks the zeroed rest of a lane.
//! The header checksum covers the entry's own offset, so an index slot left pointing at
//! the wrong place (after a crash) fails the check instead of misreading other bytes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::primitives::append_only::{AppendOnly, Records, Span};
use crate::primitives::entropy::Entropy;

/// Entries start at multiples of this many bytes.
pub(super) const ALIGN: usize = 16;
/// Bytes of an entry's header.
pub(super) const HEADER_BYTES: usize = 32;

const KEY_LEN_AT: usize = 0;
const VALUE_LEN_AT: usize = KEY_LEN_AT + 4;
const KEY_HASH_AT: usize = VALUE_LEN_AT + 4;
const VALUE_SUM_AT: usize = KEY_HASH_AT + 8;
const HEADER_SUM_AT: usize = VALUE_SUM_AT + 8;
const _: () = assert!(HEADER_SUM_AT + 8 == HEADER_BYTES);

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The value checksum: XXH3-64 with seed 0, as everywhere in the crate's files.
fn value_checksum(value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(value)
}

/// A checked entry header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Head {
    pub key_len: usize,
    pub value_len: usize,
    pub key_hash: u64,
    pub value_sum: u64,
}

impl Head {
    /// Offset of the value from the entry's start.
    pub fn value_at(&self) -> usize {
        HEADER_BYTES + self.key_len.next_multiple_of(ALIGN)
    }

    /// Total bytes of the entry.
    pub fn len(&self) -> usize {
        self.value_at() + self.value_len
    }
}

/// True if `value` matches the value checksum in `head`.
pub(super) fn value_matches(head: &Head, value: &[u8]) -> bool {
    value_checksum(value) == head.value_sum
}

/// Total bytes of an entry for these lengths.
pub(super) fn entry_len(key_len: usize, value_len: usize) -> usize {
    HEADER_BYTES + key_len.next_multiple_of(ALIGN) + value_len
}

fn header_sum(entropy: &Entropy, offset: u64, head: &[u8]) -> u64 {
    let mut input = [0u8; 8 + HEADER_SUM_AT];
    input[..8].copy_from_slice(&offset.to_le_bytes());
    input[8..].copy_from_slice(&head[..HEADER_SUM_AT]);
    entropy.hash(&input).max(1)
}

/// Writes the entry for `key`/`value` (whose keyed hash is `key_hash`) at `offset` into
/// `dest`, which is exactly [`entry_len`] bytes.
pub(super) fn encode(
    entropy: &Entropy,
    offset: u64,
    key_hash: u64,
    key: &[u8],
    value: &[u8],
    dest: &mut [u8],
) {
    debug_assert_eq!(dest.len(), entry_len(key.len(), value.len()));
    put_u32(dest, KEY_LEN_AT, key.len() as u32);
    put_u32(dest, VALUE_LEN_AT, value.len() as u32);
    put_u64(dest, KEY_HASH_AT, key_hash);
    put_u64(dest, VALUE_SUM_AT, value_checksum(value));
    let sum = header_sum(entropy, offset, dest);
    put_u64(dest, HEADER_SUM_AT, sum);
    let key_end = HEADER_BYTES + key.len();
    dest[HEADER_BYTES..key_end].copy_from_slice(key);
    let value_at = HEADER_BYTES + key.len().next_multiple_of(ALIGN);
    dest[key_end..value_at].fill(0);
    dest[value_at..].copy_from_slice(value);
}

/// True if `head` (at least [`HEADER_BYTES`]) is all zeros: the unused rest of a lane.
pub(super) fn is_blank(head: &[u8]) -> bool {
    head[..HEADER_BYTES].iter().all(|b| *b == 0)
}

/// Decodes the header in `head` as the entry at `offset`, or `None` if its checksum does
/// not hold there.
pub(super) fn decode(entropy: &Entropy, offset: u64, head: &[u8]) -> Option<Head> {
    if u64_at(head, HEADER_SUM_AT) != header_sum(entropy, offset, head) {
        return None;
    }
    Some(Head {
        key_len: u32_at(head, KEY_LEN_AT) as usize,
        value_len: u32_at(head, VALUE_LEN_AT) as usize,
        key_hash: u64_at(head, KEY_HASH_AT),
        value_sum: u64_at(head, VALUE_SUM_AT),
    })
}

/// One entry: its offset in the log, key and value.
pub(super) type Entry<'a> = (u64, &'a [u8], &'a [u8]);

/// Walks the entries of a log, lane by lane, checking every checksum. A damaged entry is
/// one `Err` item, and the walk goes on with the next entry:
/// - if the entry's header checksum holds, its lengths do too, and the next entry starts
///   where the header says this one ends (a damaged key or value costs that entry only);
/// - otherwise the lengths cannot be trusted, and the walk looks for the next entry at
///   each following multiple of [`ALIGN`] in the lane: a header there whose checksum
///   holds *for that offset* (the checksum is keyed and covers the entry's offset, so
///   neither stale bytes, nor a copy of an entry, nor a value's bytes pass it by chance,
///   1 in 2^64). The search costs one keyed hash per 16 bytes of the damaged stretch.
///
/// An all-zero header ends a lane only if zeros fill the rest of it (the padding a lane
/// ends with); a zeroed header followed by data is damage, found and skipped as above.
/// An error reading a lane ends the walk.
pub(super) struct Entries<'a, C> {
    entropy: &'a Entropy,
    log: &'a Path,
    chunks: C,
    current: Option<(u64, &'a [u8])>,
    pos: usize,
    failed: bool,
}

/// What the walk found at a position.
enum Step<'a> {
    /// A whole entry, and where the next one starts.
    Entry(Entry<'a>, usize),
    /// The rest of the lane is padding.
    End,
    /// Damage, and where to look for the next entry.
    Damaged(Error, usize),
}

impl<'a, C> Entries<'a, C>
where
    C: Iterator<Item = Result<(u64, &'a [u8])>>,
{
    /// Entries of the log at `log` whose lanes' bytes `chunks` yields.
    pub fn new(entropy: &'a Entropy, log: &'a Path, chunks: C) -> Self {
        Entries {
            entropy,
            log,
            chunks,
            current: None,
            pos: 0,
            failed: false,
        }
    }

    /// The first position at or after `from` (a multiple of [`ALIGN`]) where a header
    /// whose checksum holds for its offset starts, or the chunk's end.
    fn resync(&self, base: u64, chunk: &[u8], from: usize) -> usize {
        let mut at = from;
        while at + HEADER_BYTES <= chunk.len() {
            let head = &chunk[at..at + HEADER_BYTES];
            if !is_blank(head) && decode(self.entropy, base + at as u64, head).is_some() {
                return at;
            }
            at += ALIGN;
        }
        chunk.len()
    }

    fn step(&self, base: u64, chunk: &'a [u8], pos: usize) -> Step<'a> {
        if pos + HEADER_BYTES > chunk.len() {
            return Step::End;
        }
        let offset = base + pos as u64;
        let head = &chunk[pos..pos + HEADER_BYTES];
        let damaged = |what: String, next: usize| {
            Step::Damaged(Error::corrupted(self.log, offset, what), next)
        };
        if is_blank(head) {
            if chunk[pos..].iter().all(|b| *b == 0) {
                return Step::End;
            }
            return damaged(
                "zeroed entry header followed by data".into(),
                self.resync(base, chunk, pos + ALIGN),
            );
        }
        let Some(h) = decode(self.entropy, offset, head) else {
            return damaged(
                "entry header checksum mismatch".into(),
                self.resync(base, chunk, pos + ALIGN),
            );
        };
        if pos + h.len() > chunk.len() {
            return damaged(
                format!("entry of {} bytes runs past the written data", h.len()),
                self.resync(base, chunk, pos + ALIGN),
            );
        }
        // The header checksum holds, so its lengths do: the next entry starts after this one.
        let next = (pos + h.len()).next_multiple_of(ALIGN);
        let key = &chunk[pos + HEADER_BYTES..pos + HEADER_BYTES + h.key_len];
        let value = &chunk[pos + h.value_at()..pos + h.len()];
        if self.entropy.hash(key) != h.key_hash {
            return damaged("key does not match its hash".into(), next);
        }
        if value_checksum(value) != h.value_sum {
            return damaged("value checksum mismatch".into(), next);
        }
        Step::Entry((offset, key, value), next)
    }
}

impl<'a, C> Iterator for Entries<'a, C>
where
    C: Iterator<Item = Result<(u64, &'a [u8])>>,
{
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let Some((base, chunk)) = self.current else {
                match self.chunks.next()? {
                    Ok(c) => {
                        self.current = Some(c);
                        self.pos = 0;
                        continue;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            };
            match self.step(base, chunk, self.pos) {
                Step::Entry(entry, next) => {
                    self.pos = next;
                    return Some(Ok(entry));
                }
                Step::End => self.current = None,
                Step::Damaged(e, next) => {
                    self.pos = next;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Walks the entries of a format-2 log (one entry per framed record), checking every
/// checksum, from the record end `from` on. A damaged entry is one `Err` item and the walk
/// goes on: after the entry if its frame held (the frame gives its length), else at the
/// next multiple of 16 where an entry header holds for its offset (as [`Entries`] does),
/// whose frame is the 16 bytes before it.
pub(super) struct FramedEntries<'a> {
    entropy: &'a Entropy,
    log_path: &'a Path,
    log: &'a AppendOnly,
    records: Records<'a>,
    /// Where the current walk started (a record end), for the resync after damage.
    position: u64,
}

impl<'a> FramedEntries<'a> {
    pub fn new(entropy: &'a Entropy, log_path: &'a Path, log: &'a AppendOnly, from: u64) -> Self {
        FramedEntries {
            entropy,
            log_path,
            log,
            records: log.records(from),
            position: from,
        }
    }

    /// The entry in `span`, checked.
    fn entry(&self, span: Span) -> Result<Entry<'a>> {
        let offset = span.offset();
        let bytes = self.log.get(span)?;
        let damaged = |what: &str| Error::corrupted(self.log_path, offset, what);
        if bytes.len() < HEADER_BYTES {
            return Err(damaged("record too short for an entry"));
        }
        let Some(h) = decode(self.entropy, offset, &bytes[..HEADER_BYTES]) else {
            return Err(damaged("entry header checksum mismatch"));
        };
        if h.len() != bytes.len() {
            return Err(damaged("entry length differs from its record's"));
        }
        let key = &bytes[HEADER_BYTES..HEADER_BYTES + h.key_len];
        let value = &bytes[h.value_at()..];
        if self.entropy.hash(key) != h.key_hash {
            return Err(damaged("key does not match its hash"));
        }
        if value_checksum(value) != h.value_sum {
            return Err(damaged("value checksum mismatch"));
        }
        Ok((offset, key, value))
    }

    /// The first multiple of 16 past the payload of the damaged frame at `frame_at` where
    /// an entry header holds for its offset, below the log's end; the walk goes on from
    /// its frame.
    fn resync(&self, frame_at: u64) -> Option<u64> {
        let end = self.log.len();
        let mut at = frame_at + 2 * ALIGN as u64;
        while at + HEADER_BYTES as u64 <= end {
            if let Ok(head) = self.log.get(Span::new(at, HEADER_BYTES as u64))
                && !is_blank(head)
                && decode(self.entropy, at, head).is_some()
            {
                return Some(at);
            }
            at += ALIGN as u64;
        }
        None
    }
}

impl<'a> Iterator for FramedEntries<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.records.next()? {
            Ok(span) => {
                self.position = span.end();
                Some(self.entry(span))
            }
            Err(e @ Error::Corrupted { .. }) => {
                // The frame after `position` does not hold: look for the next entry.
                let frame_at = self.position.next_multiple_of(ALIGN as u64);
                if let Some(at) = self.resync(frame_at) {
                    self.records = self.log.records(at - ALIGN as u64);
                    self.position = at - ALIGN as u64;
                }
                Some(Err(e))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
