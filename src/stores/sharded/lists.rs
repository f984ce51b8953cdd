//! Lists and queues inside a sharded store (CandyStore's): ordered collections of
//! entries, each operation one batch record in the shard of the collection's key, so that
//! a crash leaves it whole, before or after, never half done.
//!
//! Both are sequences: a meta entry (head, tail, length) and entries at indices in
//! `head..tail` (holes where items were removed; `head` and `tail - 1` are always live
//! while the sequence is not empty). Indices start at 2^63, so that a queue can grow at
//! both ends. A list's item is keyed: its index entry holds the item's key, and the
//! item's entry (keyed by list and item key) holds its index and its value. A queue's
//! entry at an index holds its value. Entry keys start with the collection's key (a u16
//! length, then the bytes), which places every entry of a collection in one shard.
//!
//! Key spaces: 1 list meta, 2 list item, 3 list index, 4 queue meta, 5 queue entry.

use super::store::{Change, Group, check_key, check_value};
use super::{Replace, ShardedStore, ShardedValue};
use crate::limits::SHARDED_KEY_LEN_BYTES_MAX;
use crate::{Error, Result};

const LIST_META: u8 = 1;
const LIST_ITEM: u8 = 2;
const LIST_INDEX: u8 = 3;
const QUEUE_META: u8 = 4;
const QUEUE_ENTRY: u8 = 5;

/// The first index of a new sequence: room on both sides.
const START: u64 = 1 << 63;
const META_BYTES: usize = 24;
const INDEX_BYTES: usize = 8;

/// One of a list's items.
#[derive(Clone, Debug)]
pub struct ListItem {
    /// The item's key.
    pub key: ShardedValue,
    /// Its value.
    pub value: ShardedValue,
}

/// One of a queue's entries.
#[derive(Clone, Debug)]
pub struct QueueItem {
    /// Its index: what [`ShardedStore::remove_from_queue`] takes. Indices grow toward the
    /// tail.
    pub index: u64,
    /// Its value.
    pub value: ShardedValue,
}

/// The key of an entry of group `group` (a list or queue): its length, its bytes, then
/// `rest`.
fn entry_key(group: &[u8], rest: &[u8]) -> Result<Vec<u8>> {
    let len = 2 + group.len() + rest.len();
    if len > SHARDED_KEY_LEN_BYTES_MAX {
        return Err(Error::limit(
            "SHARDED_KEY_LEN_BYTES_MAX (a list's or queue's key, with its item's key, plus 2)",
            len as u64,
            SHARDED_KEY_LEN_BYTES_MAX as u64,
        ));
    }
    let mut key = Vec::with_capacity(len);
    key.extend_from_slice(&(group.len() as u16).to_le_bytes());
    key.extend_from_slice(group);
    key.extend_from_slice(rest);
    Ok(key)
}

/// A sequence's bounds and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    head: u64,
    tail: u64,
    len: u64,
}

impl Bounds {
    const EMPTY: Bounds = Bounds {
        head: START,
        tail: START,
        len: 0,
    };

    fn encode(self) -> Vec<u8> {
        [self.head, self.tail, self.len]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect()
    }
}

/// The spaces of a sequence: its meta entry and its entries at indices.
#[derive(Clone, Copy)]
struct Seq<'k> {
    group: &'k [u8],
    meta: u8,
    at: u8,
}

impl Seq<'_> {
    fn list(group: &[u8]) -> Seq<'_> {
        Seq {
            group,
            meta: LIST_META,
            at: LIST_INDEX,
        }
    }

    fn queue(group: &[u8]) -> Seq<'_> {
        Seq {
            group,
            meta: QUEUE_META,
            at: QUEUE_ENTRY,
        }
    }

    fn meta_key(&self) -> Result<Vec<u8>> {
        entry_key(self.group, &[])
    }

    fn at_key(&self, i: u64) -> Result<Vec<u8>> {
        entry_key(self.group, &i.to_be_bytes())
    }

    /// The bounds (empty if the sequence does not exist).
    fn bounds(&self, g: &Group<'_>) -> Result<Bounds> {
        let Some(found) = g.find(self.meta, &self.meta_key()?)? else {
            return Ok(Bounds::EMPTY);
        };
        let v = g.value(&found, 0);
        let n = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let b = (v.len() == META_BYTES).then(|| Bounds {
            head: n(0),
            tail: n(1),
            len: n(2),
        });
        match b {
            Some(b)
                if b.head <= b.tail
                    && b.len <= b.tail - b.head
                    && (b.len == 0) == (b.head == b.tail) =>
            {
                Ok(b)
            }
            _ => Err(g.malformed(&found, "a list's or queue's bounds do not hold")),
        }
    }

    /// The entry at index `i`.
    fn at(&self, g: &Group<'_>, i: u64) -> Result<Option<super::shard::Found>> {
        g.find(self.at, &self.at_key(i)?)
    }

    /// The first live index in `from..to`.
    fn next_live(&self, g: &Group<'_>, from: u64, to: u64) -> Result<Option<u64>> {
        for i in from..to {
            if self.at(g, i)?.is_some() {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The last live index in `from..to`.
    fn prev_live(&self, g: &Group<'_>, from: u64, to: u64) -> Result<Option<u64>> {
        for i in (from..to).rev() {
            if self.at(g, i)?.is_some() {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The change of the meta entry to `b` (its removal once empty).
    fn set_bounds(&self, b: Bounds) -> Result<Change> {
        Ok(Change {
            space: self.meta,
            key: self.meta_key()?,
            value: (b.len > 0).then(|| b.encode()),
        })
    }

    /// The bounds once the live entry at `i` is gone, `i` being neither rewritten nor
    /// the only index given back (head and tail stay on live entries).
    fn without(&self, g: &Group<'_>, b: Bounds, i: u64) -> Result<Bounds> {
        let len = b.len - 1;
        if len == 0 {
            return Ok(Bounds::EMPTY);
        }
        let head = if i == b.head {
            self.next_live(g, i + 1, b.tail)?.unwrap_or(b.tail)
        } else {
            b.head
        };
        let tail = if i + 1 == b.tail {
            self.prev_live(g, head, i)?.map_or(head, |t| t + 1)
        } else {
            b.tail
        };
        Ok(Bounds { head, tail, len })
    }

    fn delete_at(&self, i: u64) -> Result<Change> {
        Ok(Change {
            space: self.at,
            key: self.at_key(i)?,
            value: None,
        })
    }

    fn put_at(&self, i: u64, value: &[u8]) -> Result<Change> {
        Ok(Change {
            space: self.at,
            key: self.at_key(i)?,
            value: Some(value.to_vec()),
        })
    }

    /// The live indices in `b`, in order.
    fn live(&self, g: &Group<'_>, b: Bounds) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(b.len as usize);
        for i in b.head..b.tail {
            if self.at(g, i)?.is_some() {
                out.push(i);
            }
        }
        Ok(out)
    }
}

/// Which end of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Head,
    Tail,
}

/// A list item's entry: its index and value.
fn item_index(g: &Group<'_>, found: &super::shard::Found) -> Result<u64> {
    let v = g.value(found, 0);
    v.get(..INDEX_BYTES)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| g.malformed(found, "a list item without its index"))
}

fn item_value(index: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(INDEX_BYTES + value.len());
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(value);
    v
}

impl ShardedStore {
    fn check_item(list: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        check_key(&entry_key(list, key)?)?;
        if value.len() + INDEX_BYTES > crate::limits::SHARDED_VALUE_LEN_BYTES_MAX {
            return Err(Error::limit(
                "SHARDED_VALUE_LEN_BYTES_MAX (a list item's value, plus 8)",
                (value.len() + INDEX_BYTES) as u64,
                crate::limits::SHARDED_VALUE_LEN_BYTES_MAX as u64,
            ));
        }
        Ok(())
    }

    /// Sets item `key` of list `list` to `value`: a new item goes to the tail, an
    /// existing one keeps its place. Returns the previous value. Atomic, as every list
    /// operation: a crash leaves the list as it was or as it is after.
    ///
    /// A list's entries live in one shard (its key's): a list holds up to about 15,000
    /// items (two entries each, in a shard of 32,768 slots); past that a write is
    /// `LimitExceeded`.
    ///
    /// # Errors
    /// `LimitExceeded` for a key or value over its limit (the list's and the item's keys
    /// together take 2 bytes more than their lengths); as [`set`](Self::set).
    pub fn set_in_list(
        &self,
        list: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<ShardedValue>> {
        self.set_item(list, key, value, false)
    }

    /// As [`set_in_list`](Self::set_in_list), and moves the item to the tail if it was
    /// elsewhere (for least-recently-used orders: pop the head to evict).
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn set_in_list_promoting(
        &self,
        list: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<ShardedValue>> {
        self.set_item(list, key, value, true)
    }

    fn set_item(
        &self,
        list: &[u8],
        key: &[u8],
        value: &[u8],
        promote: bool,
    ) -> Result<Option<ShardedValue>> {
        Self::check_item(list, key, value)?;
        let seq = Seq::list(list);
        let item_key = entry_key(list, key)?;
        self.inner.atomically(list, |g| {
            let b = seq.bounds(g)?;
            let Some(found) = g.find(LIST_ITEM, &item_key)? else {
                let i = b.tail;
                let changes = vec![
                    seq.put_at(i, key)?,
                    Change {
                        space: LIST_ITEM,
                        key: item_key.clone(),
                        value: Some(item_value(i, value)),
                    },
                    seq.set_bounds(Bounds {
                        head: if b.len == 0 { i } else { b.head },
                        tail: i + 1,
                        len: b.len + 1,
                    })?,
                ];
                return Ok((changes, None));
            };
            let i = item_index(g, &found)?;
            let old = Some(g.value(&found, INDEX_BYTES));
            if !promote || i + 1 == b.tail {
                let change = Change {
                    space: LIST_ITEM,
                    key: item_key.clone(),
                    value: Some(item_value(i, value)),
                };
                return Ok((vec![change], old));
            }
            // Moved to the tail: its old index becomes a hole.
            let new = b.tail;
            let head = if i == b.head {
                seq.next_live(g, i + 1, b.tail)?.unwrap_or(new)
            } else {
                b.head
            };
            let changes = vec![
                seq.delete_at(i)?,
                seq.put_at(new, key)?,
                Change {
                    space: LIST_ITEM,
                    key: item_key.clone(),
                    value: Some(item_value(new, value)),
                },
                seq.set_bounds(Bounds {
                    head,
                    tail: new + 1,
                    len: b.len,
                })?,
            ];
            Ok((changes, old))
        })
    }

    /// Compare-and-swap of a list item: sets it to `value` only if it holds `expected`.
    /// The item keeps its place.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn replace_in_list(
        &self,
        list: &[u8],
        key: &[u8],
        value: &[u8],
        expected: &[u8],
    ) -> Result<Replace> {
        Self::check_item(list, key, value)?;
        let item_key = entry_key(list, key)?;
        self.inner.atomically(list, |g| {
            let Some(found) = g.find(LIST_ITEM, &item_key)? else {
                return Ok((Vec::new(), Replace::Absent));
            };
            let old = g.value(&found, INDEX_BYTES);
            if old.as_bytes() != expected {
                return Ok((Vec::new(), Replace::WrongValue(old)));
            }
            let change = Change {
                space: LIST_ITEM,
                key: item_key.clone(),
                value: Some(item_value(item_index(g, &found)?, value)),
            };
            Ok((vec![change], Replace::Replaced(old)))
        })
    }

    /// The value of item `key` of list `list`, if any.
    ///
    /// # Errors
    /// `Corrupted` if the entries it reads are damaged; `Io`.
    pub fn get_from_list(&self, list: &[u8], key: &[u8]) -> Result<Option<ShardedValue>> {
        let item_key = entry_key(list, key)?;
        self.inner.atomically(list, |g| {
            let value = g
                .find(LIST_ITEM, &item_key)?
                .map(|found| g.value(&found, INDEX_BYTES));
            Ok((Vec::new(), value))
        })
    }

    /// Removes item `key` of list `list`; returns its value, if it was there.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn remove_from_list(&self, list: &[u8], key: &[u8]) -> Result<Option<ShardedValue>> {
        let seq = Seq::list(list);
        let item_key = entry_key(list, key)?;
        self.inner.atomically(list, |g| {
            let Some(found) = g.find(LIST_ITEM, &item_key)? else {
                return Ok((Vec::new(), None));
            };
            let i = item_index(g, &found)?;
            let b = seq.bounds(g)?;
            let changes = vec![
                Change {
                    space: LIST_ITEM,
                    key: item_key.clone(),
                    value: None,
                },
                seq.delete_at(i)?,
                seq.set_bounds(seq.without(g, b, i)?)?,
            ];
            Ok((changes, Some(g.value(&found, INDEX_BYTES))))
        })
    }

    /// Items in list `list`.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn list_len(&self, list: &[u8]) -> Result<u64> {
        let seq = Seq::list(list);
        self.inner
            .atomically(list, |g| Ok((Vec::new(), seq.bounds(g)?.len)))
    }

    /// The item at the head (the oldest) of list `list`, if any.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn peek_list_head(&self, list: &[u8]) -> Result<Option<ListItem>> {
        self.list_end(list, End::Head, false)
    }

    /// The item at the tail (the newest) of list `list`, if any.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn peek_list_tail(&self, list: &[u8]) -> Result<Option<ListItem>> {
        self.list_end(list, End::Tail, false)
    }

    /// Removes and returns the item at the head of list `list`, if any.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn pop_list_head(&self, list: &[u8]) -> Result<Option<ListItem>> {
        self.list_end(list, End::Head, true)
    }

    /// Removes and returns the item at the tail of list `list`, if any.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn pop_list_tail(&self, list: &[u8]) -> Result<Option<ListItem>> {
        self.list_end(list, End::Tail, true)
    }

    fn list_end(&self, list: &[u8], end: End, pop: bool) -> Result<Option<ListItem>> {
        let seq = Seq::list(list);
        self.inner.atomically(list, |g| {
            let b = seq.bounds(g)?;
            if b.len == 0 {
                return Ok((Vec::new(), None));
            }
            let i = match end {
                End::Head => b.head,
                End::Tail => b.tail - 1,
            };
            let (item, item_key) = list_item_at(g, &seq, i)?;
            let changes = if pop {
                vec![
                    Change {
                        space: LIST_ITEM,
                        key: item_key,
                        value: None,
                    },
                    seq.delete_at(i)?,
                    seq.set_bounds(seq.without(g, b, i)?)?,
                ]
            } else {
                Vec::new()
            };
            Ok((changes, Some(item)))
        })
    }

    /// Removes list `list` and every item in it, at once. Returns whether it existed.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list); `LimitExceeded` for a list whose removal
    /// would take a record over the value limit (about 4 million items).
    pub fn discard_list(&self, list: &[u8]) -> Result<bool> {
        let seq = Seq::list(list);
        self.inner.atomically(list, |g| {
            let b = seq.bounds(g)?;
            if b.len == 0 {
                return Ok((Vec::new(), false));
            }
            let mut changes = Vec::with_capacity(2 * b.len as usize + 1);
            for i in seq.live(g, b)? {
                let (_, item_key) = list_item_at(g, &seq, i)?;
                changes.push(Change {
                    space: LIST_ITEM,
                    key: item_key,
                    value: None,
                });
                changes.push(seq.delete_at(i)?);
            }
            changes.push(seq.set_bounds(Bounds::EMPTY)?);
            Ok((changes, true))
        })
    }

    /// Closes the holes removals left in list `list` (its items take consecutive
    /// indices again, in the same order), at once. Returns the holes closed.
    ///
    /// # Errors
    /// As [`discard_list`](Self::discard_list).
    pub fn compact_list(&self, list: &[u8]) -> Result<u64> {
        let seq = Seq::list(list);
        self.inner.atomically(list, |g| {
            let b = seq.bounds(g)?;
            let holes = b.tail - b.head - b.len;
            if holes == 0 {
                return Ok((Vec::new(), 0));
            }
            let live = seq.live(g, b)?;
            let mut changes = Vec::new();
            for (n, &i) in live.iter().enumerate() {
                let j = b.head + n as u64;
                if i == j {
                    continue;
                }
                let (item, item_key) = list_item_at(g, &seq, i)?;
                changes.push(seq.put_at(j, &item.key)?);
                changes.push(Change {
                    space: LIST_ITEM,
                    key: item_key,
                    value: Some(item_value(j, &item.value)),
                });
            }
            // Indices past the new tail held moved items (or holes): gone.
            let new_tail = b.head + live.len() as u64;
            for &i in live.iter().filter(|&&i| i >= new_tail) {
                changes.push(seq.delete_at(i)?);
            }
            changes.push(seq.set_bounds(Bounds {
                head: b.head,
                tail: new_tail,
                len: b.len,
            })?);
            Ok((changes, holes))
        })
    }

    /// The items of list `list` from head to tail (reversible with
    /// [`DoubleEndedIterator::rev`]). Each step reads the list as it is then: items
    /// added after the iteration began are not returned, items removed meanwhile are
    /// skipped.
    pub fn iter_list<'a>(&'a self, list: &[u8]) -> ListIter<'a> {
        ListIter {
            cursor: Cursor::new(self, list, false),
        }
    }

    /// Pushes `value` at the tail of queue `queue`; returns its index. Atomic, as every
    /// queue operation. A queue's entries live in one shard (its key's): a queue holds
    /// up to about 30,000 entries.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn push_to_queue_tail(&self, queue: &[u8], value: &[u8]) -> Result<u64> {
        self.push(queue, value, End::Tail)
    }

    /// Pushes `value` at the head of queue `queue`; returns its index.
    ///
    /// # Errors
    /// As [`push_to_queue_tail`](Self::push_to_queue_tail).
    pub fn push_to_queue_head(&self, queue: &[u8], value: &[u8]) -> Result<u64> {
        self.push(queue, value, End::Head)
    }

    fn push(&self, queue: &[u8], value: &[u8], end: End) -> Result<u64> {
        check_key(&entry_key(queue, &[0; INDEX_BYTES])?)?;
        check_value(value)?;
        let seq = Seq::queue(queue);
        self.inner.atomically(queue, |g| {
            let b = seq.bounds(g)?;
            let (i, bounds) = match end {
                _ if b.len == 0 => (
                    START,
                    Bounds {
                        head: START,
                        tail: START + 1,
                        len: 1,
                    },
                ),
                End::Tail => (
                    b.tail,
                    Bounds {
                        tail: b.tail + 1,
                        len: b.len + 1,
                        ..b
                    },
                ),
                End::Head => {
                    let i = b
                        .head
                        .checked_sub(1)
                        .ok_or_else(|| Error::limit("queue indices below the head", 0, 0))?;
                    (
                        i,
                        Bounds {
                            head: i,
                            len: b.len + 1,
                            ..b
                        },
                    )
                }
            };
            Ok((vec![seq.put_at(i, value)?, seq.set_bounds(bounds)?], i))
        })
    }

    /// The entry at the head of queue `queue`, if any.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn peek_queue_head(&self, queue: &[u8]) -> Result<Option<QueueItem>> {
        self.queue_end(queue, End::Head, false)
    }

    /// The entry at the tail of queue `queue`, if any.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn peek_queue_tail(&self, queue: &[u8]) -> Result<Option<QueueItem>> {
        self.queue_end(queue, End::Tail, false)
    }

    /// Removes and returns the entry at the head of queue `queue`, if any.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn pop_queue_head(&self, queue: &[u8]) -> Result<Option<QueueItem>> {
        self.queue_end(queue, End::Head, true)
    }

    /// Removes and returns the entry at the tail of queue `queue`, if any.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn pop_queue_tail(&self, queue: &[u8]) -> Result<Option<QueueItem>> {
        self.queue_end(queue, End::Tail, true)
    }

    fn queue_end(&self, queue: &[u8], end: End, pop: bool) -> Result<Option<QueueItem>> {
        let seq = Seq::queue(queue);
        self.inner.atomically(queue, |g| {
            let b = seq.bounds(g)?;
            if b.len == 0 {
                return Ok((Vec::new(), None));
            }
            let index = match end {
                End::Head => b.head,
                End::Tail => b.tail - 1,
            };
            let value = queue_value_at(g, &seq, index)?;
            let changes = if pop {
                vec![
                    seq.delete_at(index)?,
                    seq.set_bounds(seq.without(g, b, index)?)?,
                ]
            } else {
                Vec::new()
            };
            Ok((changes, Some(QueueItem { index, value })))
        })
    }

    /// Removes the entry at `index` of queue `queue`; returns its value, if it was there.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn remove_from_queue(&self, queue: &[u8], index: u64) -> Result<Option<ShardedValue>> {
        let seq = Seq::queue(queue);
        self.inner.atomically(queue, |g| {
            let Some(found) = seq.at(g, index)? else {
                return Ok((Vec::new(), None));
            };
            let b = seq.bounds(g)?;
            let changes = vec![
                seq.delete_at(index)?,
                seq.set_bounds(seq.without(g, b, index)?)?,
            ];
            Ok((changes, Some(g.value(&found, 0))))
        })
    }

    /// Entries in queue `queue`.
    ///
    /// # Errors
    /// As [`get_from_list`](Self::get_from_list).
    pub fn queue_len(&self, queue: &[u8]) -> Result<u64> {
        let seq = Seq::queue(queue);
        self.inner
            .atomically(queue, |g| Ok((Vec::new(), seq.bounds(g)?.len)))
    }

    /// Removes queue `queue` and every entry in it, at once. Returns whether it existed.
    ///
    /// # Errors
    /// As [`discard_list`](Self::discard_list).
    pub fn discard_queue(&self, queue: &[u8]) -> Result<bool> {
        let seq = Seq::queue(queue);
        self.inner.atomically(queue, |g| {
            let b = seq.bounds(g)?;
            if b.len == 0 {
                return Ok((Vec::new(), false));
            }
            let mut changes = Vec::with_capacity(b.len as usize + 1);
            for i in seq.live(g, b)? {
                changes.push(seq.delete_at(i)?);
            }
            changes.push(seq.set_bounds(Bounds::EMPTY)?);
            Ok((changes, true))
        })
    }

    /// The entries of queue `queue` from head to tail (reversible), as
    /// [`iter_list`](Self::iter_list).
    pub fn iter_queue<'a>(&'a self, queue: &[u8]) -> QueueIter<'a> {
        QueueIter {
            cursor: Cursor::new(self, queue, true),
        }
    }
}

/// The item at live index `i` of a list, and its item entry's key.
fn list_item_at(g: &Group<'_>, seq: &Seq<'_>, i: u64) -> Result<(ListItem, Vec<u8>)> {
    let at = seq.at(g, i)?.ok_or_else(|| {
        g.shard
            .corrupted(0, format!("a list's index {i} is missing"))
    })?;
    let key = g.value(&at, 0);
    let item_key = entry_key(seq.group, &key)?;
    let found = g
        .find(LIST_ITEM, &item_key)?
        .ok_or_else(|| g.malformed(&at, "a list's index names an item that is missing"))?;
    if item_index(g, &found)? != i {
        return Err(g.malformed(&found, "a list's item and its index disagree"));
    }
    let value = g.value(&found, INDEX_BYTES);
    Ok((ListItem { key, value }, item_key))
}

fn queue_value_at(g: &Group<'_>, seq: &Seq<'_>, i: u64) -> Result<ShardedValue> {
    let at = seq.at(g, i)?.ok_or_else(|| {
        g.shard
            .corrupted(0, format!("a queue's entry {i} is missing"))
    })?;
    Ok(g.value(&at, 0))
}

/// A double-ended walk over a sequence's live indices, one locked step at a time.
struct Cursor<'a> {
    store: &'a ShardedStore,
    group: Vec<u8>,
    queue: bool,
    /// `front..back` is left to walk; `None` before the first step.
    range: Option<(u64, u64)>,
}

impl<'a> Cursor<'a> {
    fn new(store: &'a ShardedStore, group: &[u8], queue: bool) -> Cursor<'a> {
        Cursor {
            store,
            group: group.to_vec(),
            queue,
            range: None,
        }
    }

    fn seq(&self) -> Seq<'_> {
        if self.queue {
            Seq::queue(&self.group)
        } else {
            Seq::list(&self.group)
        }
    }

    /// The next live index from `end` and what `f` reads there.
    fn step<T>(
        &mut self,
        end: End,
        f: impl Fn(&Group<'_>, &Seq<'_>, u64) -> Result<T>,
    ) -> Option<Result<T>> {
        let seq = self.seq();
        let range = self.range;
        let out = self.store.inner.atomically(&self.group, |g| {
            let (front, back) = match range {
                Some(r) => r,
                None => {
                    let b = seq.bounds(g)?;
                    (b.head, b.tail)
                }
            };
            let live = match end {
                End::Head => seq.next_live(g, front, back)?,
                End::Tail => seq.prev_live(g, front, back)?,
            };
            let Some(i) = live else {
                return Ok((Vec::new(), (back, back, None)));
            };
            let (front, back) = match end {
                End::Head => (i + 1, back),
                End::Tail => (front, i),
            };
            Ok((Vec::new(), (front, back, Some(f(g, &seq, i)?))))
        });
        match out {
            Ok((front, back, item)) => {
                self.range = Some((front, back));
                item.map(Ok)
            }
            Err(e) => {
                self.range = Some((0, 0));
                Some(Err(e))
            }
        }
    }
}

/// The items of a list: see [`ShardedStore::iter_list`].
pub struct ListIter<'a> {
    cursor: Cursor<'a>,
}

impl std::fmt::Debug for ListIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListIter")
            .field("range", &self.cursor.range)
            .finish()
    }
}

impl Iterator for ListIter<'_> {
    type Item = Result<ListItem>;

    fn next(&mut self) -> Option<Result<ListItem>> {
        self.cursor
            .step(End::Head, |g, seq, i| Ok(list_item_at(g, seq, i)?.0))
    }
}

impl DoubleEndedIterator for ListIter<'_> {
    fn next_back(&mut self) -> Option<Result<ListItem>> {
        self.cursor
            .step(End::Tail, |g, seq, i| Ok(list_item_at(g, seq, i)?.0))
    }
}

/// The entries of a queue: see [`ShardedStore::iter_queue`].
pub struct QueueIter<'a> {
    cursor: Cursor<'a>,
}

impl std::fmt::Debug for QueueIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueIter")
            .field("range", &self.cursor.range)
            .finish()
    }
}

impl Iterator for QueueIter<'_> {
    type Item = Result<QueueItem>;

    fn next(&mut self) -> Option<Result<QueueItem>> {
        self.cursor.step(End::Head, |g, seq, index| {
            Ok(QueueItem {
                index,
                value: queue_value_at(g, seq, index)?,
            })
        })
    }
}

impl DoubleEndedIterator for QueueIter<'_> {
    fn next_back(&mut self) -> Option<Result<QueueItem>> {
        self.cursor.step(End::Tail, |g, seq, index| {
            Ok(QueueItem {
                index,
                value: queue_value_at(g, seq, index)?,
            })
        })
    }
}
