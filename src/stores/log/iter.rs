//! Ordered iteration over a snapshot of the key directory (see `keydir.rs`): nothing
//! written after the iterator was made changes what it yields, and writers are never
//! blocked by it. Values sit in the log in write order, not key order, so each is a cache
//! miss: the iterator pulls a few entries ahead and prefetches their bytes so that the
//! misses overlap.

use std::collections::VecDeque;

use super::keydir::Cursor;
use super::record::OP_HEADER_BYTES;
use super::{Loc, Value, value_of_len};
use crate::{Result, Span};

/// Entries pulled ahead of the one being yielded, at each end.
const LOOKAHEAD: usize = 16;

/// Iterator over `(key, value)` in key order, over a consistent snapshot; from
/// [`LogStore::iter`](super::LogStore::iter), [`range`](super::LogStore::range) and
/// [`prefix`](super::LogStore::prefix). Double-ended. Keys that had expired when it was
/// made are skipped. Each value is checked against its checksum as it is yielded: a
/// damaged one is an `Err` item (naming the segment and offset), and iteration can go on
/// past it. Keys are yielded as [`Value`] handles too: their bytes are read from the log,
/// next to the value.
pub struct Iter {
    cursor: Cursor,
    now_ms: u64,
    /// Pulled from the cursor's front, ascending: locations and key lengths.
    ahead: VecDeque<(Loc, usize)>,
    /// Pulled from the cursor's back, descending.
    behind: VecDeque<(Loc, usize)>,
}

impl Iter {
    pub(super) fn new(cursor: Cursor, now_ms: u64) -> Iter {
        Iter {
            cursor,
            now_ms,
            ahead: VecDeque::with_capacity(LOOKAHEAD),
            behind: VecDeque::new(),
        }
    }

    fn live(&self, (loc, _): &(Loc, usize)) -> bool {
        !loc.expired(|| self.now_ms)
    }
}

/// Starts loading the operation (header, key, value) of an entry.
fn prefetch((loc, key_len): &(Loc, usize)) {
    let header = (OP_HEADER_BYTES + key_len) as u64;
    if let Some(start) = loc.value_offset.checked_sub(header) {
        loc.seg
            .buf()
            .prefetch(Span::new(start, header + u64::from(loc.value_len)));
    }
}

impl Iterator for Iter {
    type Item = Result<(Value, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while self.ahead.len() < LOOKAHEAD {
                let Some(entry) = self.cursor.next_loc(false) else {
                    break;
                };
                prefetch(&entry);
                self.ahead.push_back(entry);
            }
            // The cursor is spent: what remains was pulled from the back.
            let entry = self.ahead.pop_front().or_else(|| self.behind.pop_back())?;
            if self.live(&entry) {
                return Some(item(entry));
            }
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            while self.behind.len() < LOOKAHEAD {
                let Some(entry) = self.cursor.next_loc(true) else {
                    break;
                };
                prefetch(&entry);
                self.behind.push_back(entry);
            }
            let entry = self.behind.pop_front().or_else(|| self.ahead.pop_back())?;
            if self.live(&entry) {
                return Some(item(entry));
            }
        }
    }
}

/// The key and value handles of an entry: both point into the log, so yielding an entry
/// touches the log's bytes (prefetched) and nothing else.
fn item((loc, key_len): (Loc, usize)) -> Result<(Value, Value)> {
    let value = value_of_len(key_len, &loc)?;
    let key = value.key(key_len as u64);
    Ok((key, value))
}
