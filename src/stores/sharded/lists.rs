//! Lists and queues inside a sharded store (CandyStore's): ordered collections of
//! entries, each operation one batch record in the shard of the collection's key, so that
//! a crash leaves it whole, before or after, never half done.
//!
//! Both are sequences: a meta entry (the bounds: head, tail, length, and the lowest and
//! next indices given out) and entries at indices in `head..tail` (holes where items
//! were removed; `head` and `tail - 1` are always live while the sequence is not empty).
//! Indices start at 2^63, so that a queue can grow at both ends, and are never given out
//! twice while the collection exists (its bounds stay when it empties; only a discard
//! removes them). A list's item is keyed: its index entry holds the item's key, and the
//! item's entry (keyed by list and item key) holds its index and its value. A queue's
//! entry at an index holds its value. Entry keys start with the collection's key (a u16
//! length, then the bytes), which places every entry of a collection in one shard.
//!
//! Key spaces: 1 list meta, 2 list item, 3 list index, 4 queue meta, 5 queue entry.

use std::collections::VecDeque;

use super::shard::{Found, SLOTS};
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
const META_BYTES: usize = 40;
/// Bytes of values one step of [`ShardedStore::compact_list`] rewrites at most (or one
/// item's, if larger).
const COMPACT_STEP_BYTES: usize = 64 << 20;
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

/// A sequence's bounds: its live entries lie in `head..tail`; indices given out lie in
/// `low..high` (the next at the head is `low - 1`, at the tail `high`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    head: u64,
    tail: u64,
    len: u64,
    low: u64,
    high: u64,
}

impl Bounds {
    const NEW: Bounds = Bounds {
        head: START,
        tail: START,
        len: 0,
        low: START,
        high: START,
    };

    fn encode(self) -> Vec<u8> {
        [self.head, self.tail, self.len, self.low, self.high]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect()
    }

    fn holds(&self) -> bool {
        self.low <= self.head
            && self.head <= self.tail
            && self.tail <= self.high
            && self.len <= self.tail - self.head
            && (self.len == 0) == (self.head == self.tail)
            && self.len <= SLOTS as u64
    }

    /// The bounds once index `i` (just given out at the tail or the head) is live.
    fn with(self, i: u64) -> Bounds {
        let (head, tail) = if self.len == 0 {
            (i, i + 1)
        } else {
            (self.head.min(i), self.tail.max(i + 1))
        };
        Bounds {
            head,
            tail,
            len: self.len + 1,
            low: self.low.min(i),
            high: self.high.max(i + 1),
        }
    }

    /// The index the next push at the tail takes.
    fn next_tail(&self) -> u64 {
        self.high
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

    /// The bounds (new ones if the sequence does not exist).
    fn bounds(&self, g: &Group<'_>) -> Result<Bounds> {
        let Some(found) = g.find(self.meta, &self.meta_key()?)? else {
            return Ok(Bounds::NEW);
        };
        let v = g.value(&found, 0);
        let n = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let b = (v.len() == META_BYTES).then(|| Bounds {
            head: n(0),
            tail: n(1),
            len: n(2),
            low: n(3),
            high: n(4),
        });
        match b {
            Some(b) if b.holds() => Ok(b),
            _ => Err(g.malformed(&found, "a list's or queue's bounds do not hold")),
        }
    }

    /// The entry at index `i`.
    fn at(&self, g: &Group<'_>, i: u64) -> Result<Option<Found>> {
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

    /// The change of the meta entry to `b` (kept when empty: indices are not given out
    /// twice).
    fn set_bounds(&self, b: Bounds) -> Result<Change> {
        Ok(Change {
            space: self.meta,
            key: self.meta_key()?,
            value: Some(b.encode()),
        })
    }

    /// The removal of the meta entry (a discard).
    fn drop_bounds(&self) -> Result<Change> {
        Ok(Change {
            space: self.meta,
            key: self.meta_key()?,
            value: None,
        })
    }

    /// The bounds once the live entry at `i` is gone, `i` being neither rewritten nor
    /// the only index given back (head and tail stay on live entries).
    fn without(&self, g: &Group<'_>, b: Bounds, i: u64) -> Result<Bounds> {
        let len = b.len - 1;
        if len == 0 {
            return Ok(Bounds {
                head: b.high,
                tail: b.high,
                len,
                ..b
            });
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
        Ok(Bounds {
            head,
            tail,
            len,
            ..b
        })
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
        // `len` is checked against the slots a shard has.
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
fn item_index(g: &Group<'_>, found: &Found) -> Result<u64> {
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
                let i = b.next_tail();
                let changes = vec![
                    seq.put_at(i, key)?,
                    Change {
                        space: LIST_ITEM,
                        key: item_key.clone(),
                        value: Some(item_value(i, value)),
                    },
                    seq.set_bounds(b.with(i))?,
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
            let new = b.next_tail();
            let bounds = seq.without(g, b, i)?.with(new);
            let changes = vec![
                seq.delete_at(i)?,
                seq.put_at(new, key)?,
                Change {
                    space: LIST_ITEM,
                    key: item_key.clone(),
                    value: Some(item_value(new, value)),
                },
                seq.set_bounds(bounds)?,
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
        self.inner.read_group(list, |g| {
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
            .read_group(list, |g| Ok((Vec::new(), seq.bounds(g)?.len)))
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
        self.inner.on_group(list, pop, |g| {
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

    /// Removes list `list` and every item in it, at once (and its bounds: a list made
    /// again under its name starts over). Returns whether it held any item.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list); `LimitExceeded` for a list whose removal
    /// would take a record over the value limit (about 4 million items).
    pub fn discard_list(&self, list: &[u8]) -> Result<bool> {
        let seq = Seq::list(list);
        self.inner.atomically(list, |g| {
            let b = seq.bounds(g)?;
            if b == Bounds::NEW {
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
            changes.push(seq.drop_bounds()?);
            Ok((changes, b.len > 0))
        })
    }

    /// Closes the holes removals left in list `list`: its items take consecutive
    /// indices again, in the same order. Returns the holes closed. Done in steps that
    /// each rewrite at most 64 MiB of values (or one item), each one atomic batch, so
    /// that a crash between them leaves the list in order, partly compacted.
    ///
    /// # Errors
    /// As [`set_in_list`](Self::set_in_list).
    pub fn compact_list(&self, list: &[u8]) -> Result<u64> {
        let seq = Seq::list(list);
        let mut closed = None;
        loop {
            let done = self.inner.atomically(list, |g| {
                let b = seq.bounds(g)?;
                let holes = b.tail - b.head - b.len;
                closed.get_or_insert(holes);
                if holes == 0 {
                    return Ok((Vec::new(), true));
                }
                let live = seq.live(g, b)?;
                // Items before the first hole are in place; move the next ones down, each
                // to `head + rank`, below every item not moved yet: order holds after
                // every step.
                let Some(first) = (0..live.len()).find(|&n| live[n] != b.head + n as u64) else {
                    return Err(g
                        .shard
                        .corrupted(0, "a list's bounds count holes its entries do not have"));
                };
                let mut changes = Vec::new();
                let mut moved = Vec::new();
                let mut bytes = 0;
                for (n, &i) in live.iter().enumerate().skip(first) {
                    if bytes >= COMPACT_STEP_BYTES {
                        break;
                    }
                    let j = b.head + n as u64;
                    let (item, item_key) = list_item_at(g, &seq, i)?;
                    bytes += item.value.len() + item.key.len();
                    changes.push(seq.put_at(j, &item.key)?);
                    changes.push(Change {
                        space: LIST_ITEM,
                        key: item_key,
                        value: Some(item_value(j, &item.value)),
                    });
                    moved.push((i, j));
                }
                let last = first + moved.len() == live.len();
                let new_positions = b.head + first as u64..b.head + (first + moved.len()) as u64;
                for &(i, _) in &moved {
                    if !new_positions.contains(&i) {
                        changes.push(seq.delete_at(i)?);
                    }
                }
                let tail = if last {
                    b.head + live.len() as u64
                } else {
                    b.tail
                };
                changes.push(seq.set_bounds(Bounds { tail, ..b })?);
                Ok((changes, last))
            })?;
            if done {
                return Ok(closed.unwrap_or(0));
            }
        }
    }

    /// The items of list `list` from head to tail (reversible with
    /// [`Iterator::rev`]), as they were when this call took them: one
    /// consistent view, each item once, whatever changes the list meanwhile (the values
    /// are handles into the records, which never change).
    pub fn iter_list(&self, list: &[u8]) -> ListIter {
        let seq = Seq::list(list);
        let items = self.inner.read_group(list, |g| {
            let b = seq.bounds(g)?;
            let mut items = VecDeque::with_capacity(b.len as usize);
            for i in seq.live(g, b)? {
                items.push_back(list_item_at(g, &seq, i)?.0);
            }
            Ok((Vec::new(), items))
        });
        ListIter {
            items: Snapshot::new(items),
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
            let i = match end {
                // The first index of a collection is the same at either end.
                _ if b.low == b.high => b.high,
                End::Tail => b.next_tail(),
                End::Head => b.low.checked_sub(1).ok_or_else(|| {
                    Error::limit(
                        "queue indices given out at the head (2^63)",
                        1 << 63,
                        1 << 63,
                    )
                })?,
            };
            Ok((vec![seq.put_at(i, value)?, seq.set_bounds(b.with(i))?], i))
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
        self.inner.on_group(queue, pop, |g| {
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
            .read_group(queue, |g| Ok((Vec::new(), seq.bounds(g)?.len)))
    }

    /// Removes queue `queue` and every entry in it, at once (and its bounds: indices start
    /// over, and an index kept from before may name an entry pushed after). Returns
    /// whether it held any entry.
    ///
    /// # Errors
    /// As [`discard_list`](Self::discard_list).
    pub fn discard_queue(&self, queue: &[u8]) -> Result<bool> {
        let seq = Seq::queue(queue);
        self.inner.atomically(queue, |g| {
            let b = seq.bounds(g)?;
            if b == Bounds::NEW {
                return Ok((Vec::new(), false));
            }
            let mut changes = Vec::with_capacity(b.len as usize + 1);
            for i in seq.live(g, b)? {
                changes.push(seq.delete_at(i)?);
            }
            changes.push(seq.drop_bounds()?);
            Ok((changes, b.len > 0))
        })
    }

    /// The entries of queue `queue` from head to tail (reversible), as they were when
    /// this call took them, as [`iter_list`](Self::iter_list).
    pub fn iter_queue(&self, queue: &[u8]) -> QueueIter {
        let seq = Seq::queue(queue);
        let items = self.inner.read_group(queue, |g| {
            let b = seq.bounds(g)?;
            let mut items = VecDeque::with_capacity(b.len as usize);
            for index in seq.live(g, b)? {
                let value = queue_value_at(g, &seq, index)?;
                items.push_back(QueueItem { index, value });
            }
            Ok((Vec::new(), items))
        });
        QueueIter {
            items: Snapshot::new(items),
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

/// The items an iteration took, or the error that stopped it (returned once).
#[derive(Debug)]
struct Snapshot<T> {
    items: VecDeque<T>,
    error: Option<Error>,
}

impl<T> Snapshot<T> {
    fn new(taken: Result<VecDeque<T>>) -> Snapshot<T> {
        match taken {
            Ok(items) => Snapshot { items, error: None },
            Err(e) => Snapshot {
                items: VecDeque::new(),
                error: Some(e),
            },
        }
    }

    fn next(&mut self, back: bool) -> Option<Result<T>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let item = if back {
            self.items.pop_back()
        } else {
            self.items.pop_front()
        };
        item.map(Ok)
    }
}

/// The items of a list: see [`ShardedStore::iter_list`].
#[derive(Debug)]
pub struct ListIter {
    items: Snapshot<ListItem>,
}

impl Iterator for ListIter {
    type Item = Result<ListItem>;

    fn next(&mut self) -> Option<Result<ListItem>> {
        self.items.next(false)
    }
}

impl DoubleEndedIterator for ListIter {
    fn next_back(&mut self) -> Option<Result<ListItem>> {
        self.items.next(true)
    }
}

/// The entries of a queue: see [`ShardedStore::iter_queue`].
#[derive(Debug)]
pub struct QueueIter {
    items: Snapshot<QueueItem>,
}

impl Iterator for QueueIter {
    type Item = Result<QueueItem>;

    fn next(&mut self) -> Option<Result<QueueItem>> {
        self.items.next(false)
    }
}

impl DoubleEndedIterator for QueueIter {
    fn next_back(&mut self) -> Option<Result<QueueItem>> {
        self.items.next(true)
    }
}
