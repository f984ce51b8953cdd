//! Ordered iteration over a snapshot of the key directory (see `keydir.rs`): nothing
//! written after the iterator was made changes what it yields, and writers are never
//! blocked by it.

use std::sync::Arc;

use super::keydir::Cursor;
use super::{Value, value_of};
use crate::Result;

/// Iterator over `(key, value)` in key order, over a consistent snapshot; from
/// [`LogStore::iter`](super::LogStore::iter), [`range`](super::LogStore::range) and
/// [`prefix`](super::LogStore::prefix). Double-ended. Keys that had expired when it was
/// made are skipped. Each value is checked against its checksum as it is yielded: a
/// damaged one is an `Err` item (naming the segment and offset), and iteration can go on
/// past it.
pub struct Iter {
    cursor: Cursor,
    now_ms: u64,
}

impl Iter {
    pub(super) fn new(cursor: Cursor, now_ms: u64) -> Iter {
        Iter { cursor, now_ms }
    }
}

impl Iterator for Iter {
    type Item = Result<(Arc<[u8]>, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        let now = self.now_ms;
        self.cursor
            .by_ref()
            .find(|(_, loc)| !loc.expired(|| now))
            .map(item)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        let now = self.now_ms;
        self.cursor
            .by_ref()
            .rfind(|(_, loc)| !loc.expired(|| now))
            .map(item)
    }
}

fn item((key, loc): (super::Key, super::Loc)) -> Result<(Arc<[u8]>, Value)> {
    let value = value_of(key.bytes(), &loc)?;
    Ok((key.bytes().clone(), value))
}
