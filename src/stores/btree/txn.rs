//! Transactions and the tree handles they give: [`ReadTxn`] (a snapshot) with [`Tree`],
//! and [`WriteTxn`] with [`TreeMut`]; and [`Range`], the ordered walk both use. Reads of
//! either kind go through one private `Snap`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use super::node::{Dirty, OwnedVal, Reader, Slot, View, freeze};
use super::page::{self, Val};
use super::records::{self, Op, footprint};
use super::store::{Inner, Root, Version, WriterState, append_value};
use super::tree::{self, Cursor, Cx, Seek, TxnTree};
use crate::limits::{
    BTREE_KEY_LEN_BYTES_MAX, BTREE_TREE_NAME_BYTES_MAX, BTREE_TREES_MAX, BTREE_VALUE_LEN_BYTES_MAX,
};
use crate::{Error, KeyRange, Result};

/// Bytes of logged operations past which a transaction commits by writing its pages and
/// a checkpoint rather than a commit record: for a large transaction (a bulk load) that
/// costs less than logging every operation and writing the pages later too.
const BULK_BYTES: usize = 1 << 20;

/// A read-only view of one tree, shared by both kinds of handle.
#[derive(Clone, Copy)]
struct Snap<'t> {
    rd: Reader<'t>,
    root: View<'t>,
    len: u64,
    height: u32,
}

type Entry<'t> = (&'t [u8], &'t [u8]);

impl<'t> Snap<'t> {
    fn get(&self, key: &[u8]) -> Result<Option<&'t [u8]>> {
        match tree::get(&self.rd, self.root, key)? {
            Some(v) => Ok(Some(self.rd.value(v)?)),
            None => Ok(None),
        }
    }

    fn at(&self, c: &Cursor<'t>) -> Result<Option<Entry<'t>>> {
        match c.current()? {
            Some((k, v)) => Ok(Some((k, self.rd.value(v)?))),
            None => Ok(None),
        }
    }

    fn first(&self) -> Result<Option<Entry<'t>>> {
        let mut c = Cursor::new(self.rd);
        c.first(self.root)?;
        self.at(&c)
    }

    fn last(&self) -> Result<Option<Entry<'t>>> {
        let mut c = Cursor::new(self.rd);
        c.last(self.root)?;
        self.at(&c)
    }

    fn seek(&self, key: &[u8], how: Seek) -> Result<Option<Entry<'t>>> {
        let mut c = Cursor::new(self.rd);
        c.seek(self.root, key, how)?;
        self.at(&c)
    }

    fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'t> {
        Range {
            snap: *self,
            start: start.map(Box::from),
            end: end.map(Box::from),
            front: None,
            back: None,
            last_front: None,
            last_back: None,
            done: false,
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

/// The read operations of a tree, on [`Tree`] (in a snapshot) and on [`TreeMut`] (in a
/// write transaction, which sees its own changes). Written once, as a macro, since the
/// two differ only in where the view comes from and how long what they return lives.
macro_rules! read_methods {
    ($snap:ident, $lt:lifetime) => {
        /// The value of `key`, borrowed from the store's mapping (or the transaction).
        ///
        /// # Errors
        /// `Corrupted` if a page or value on the way fails its checks.
        pub fn get(&self, key: &[u8]) -> Result<Option<&$lt [u8]>> {
            self.$snap()?.get(key)
        }

        /// True if `key` is set.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn contains(&self, key: &[u8]) -> Result<bool> {
            Ok(self.$snap()?.get(key)?.is_some())
        }

        /// Keys in the tree.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn len(&self) -> Result<u64> {
            Ok(self.$snap()?.len)
        }

        /// True if the tree holds no key.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.$snap()?.len == 0)
        }

        /// Levels of pages: 1 for a tree that is one leaf.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn height(&self) -> Result<u32> {
            Ok(self.$snap()?.height)
        }

        /// The smallest key and its value.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn first(&self) -> Result<Option<(&$lt [u8], &$lt [u8])>> {
            self.$snap()?.first()
        }

        /// The largest key and its value.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn last(&self) -> Result<Option<(&$lt [u8], &$lt [u8])>> {
            self.$snap()?.last()
        }

        /// The smallest key strictly greater than `key`, and its value.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn above(&self, key: &[u8]) -> Result<Option<(&$lt [u8], &$lt [u8])>> {
            self.$snap()?.seek(key, Seek::Gt)
        }

        /// The largest key strictly smaller than `key`, and its value.
        ///
        /// # Errors
        /// As [`get`](Self::get).
        pub fn below(&self, key: &[u8]) -> Result<Option<(&$lt [u8], &$lt [u8])>> {
            self.$snap()?.seek(key, Seek::Lt)
        }

        /// The entries whose keys lie in `range`, in key order, from either end
        /// (double-ended). Takes any std range of byte strings, or a pair of `Bound`s.
        ///
        /// # Errors
        /// As [`get`](Self::get); the iterator yields `Corrupted` items for damage it meets.
        pub fn range(&self, range: impl KeyRange) -> Result<Range<$lt>> {
            Ok(self.$snap()?.range(range.start_key(), range.end_key()))
        }

        /// The entries whose keys start with `prefix`, in key order.
        ///
        /// # Errors
        /// As [`range`](Self::range).
        pub fn prefix(&self, prefix: &[u8]) -> Result<Range<$lt>> {
            let end = prefix_end(prefix);
            Ok(self
                .$snap()?
                .range(Bound::Included(prefix), end.as_ref().map(|e| e.as_slice())))
        }

        /// Every entry, in key order.
        ///
        /// # Errors
        /// As [`range`](Self::range).
        pub fn iter(&self) -> Result<Range<$lt>> {
            self.range(..)
        }
    };
}

/// A snapshot: one committed state of every tree, unchanged for as long as it lives,
/// whatever writers do meanwhile. Taking one never waits for a writer, and a writer
/// never waits for it. Values read through it borrow from the store's mapping for the
/// snapshot's lifetime:
///
/// ```compile_fail
/// # use accretion::{BTreeStore, Dir};
/// let dir = Dir::temporary().unwrap();
/// let store = BTreeStore::open(&dir, "db", Default::default()).unwrap();
/// store.insert(b"k", b"v").unwrap();
/// let value = {
///     let snapshot = store.begin_read();
///     let tree = snapshot.default_tree().unwrap();
///     tree.get(b"k").unwrap().unwrap()
/// }; // the snapshot is gone here, so `value` may not outlive it
/// println!("{value:?}");
/// ```
pub struct ReadTxn<'s> {
    pub(super) inner: &'s Inner,
    pub(super) version: Arc<Version>,
}

impl std::fmt::Debug for ReadTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTxn")
            .field("seq", &self.version.seq)
            .finish()
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        self.inner.snapshots.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<'s> ReadTxn<'s> {
    /// The tree `name` as of this snapshot, or `None` if it does not exist.
    ///
    /// # Errors
    /// `Corrupted` if its root page fails its checks.
    pub fn open_tree(&self, name: &str) -> Result<Option<Tree<'_>>> {
        let Some(root) = self.version.trees.get(name) else {
            return Ok(None);
        };
        let rd = Reader {
            generation: &self.version.generation,
        };
        Ok(Some(Tree {
            snap: Snap {
                rd,
                root: rd.node(&root.node)?,
                len: root.len,
                height: root.height,
            },
        }))
    }

    /// The default tree (named `""`), which every store has.
    ///
    /// # Errors
    /// As [`open_tree`](Self::open_tree).
    pub fn default_tree(&self) -> Result<Tree<'_>> {
        self.open_tree("")?
            .ok_or_else(|| self.inner.missing_default())
    }

    /// Names of the named trees (the default tree aside), in order.
    pub fn trees(&self) -> Vec<String> {
        names(self.version.trees.keys().map(|k| &**k))
    }

    /// Commits this snapshot includes.
    pub fn seq(&self) -> u64 {
        self.version.seq
    }
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> Vec<String> {
    all.filter(|n| !n.is_empty()).map(str::to_owned).collect()
}

/// One tree of a [`ReadTxn`]; see [`ReadTxn::open_tree`]. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Tree<'t> {
    snap: Snap<'t>,
}

impl std::fmt::Debug for Tree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("len", &self.snap.len).finish()
    }
}

impl<'t> Tree<'t> {
    fn snap(&self) -> Result<Snap<'t>> {
        Ok(self.snap)
    }

    read_methods!(snap, 't);
}

/// Iterator over `(key, value)` in key order, from either end; see [`Tree::range`].
/// Items borrow from the snapshot (or write transaction) it was made from.
pub struct Range<'t> {
    snap: Snap<'t>,
    start: Bound<Box<[u8]>>,
    end: Bound<Box<[u8]>>,
    front: Option<Cursor<'t>>,
    back: Option<Cursor<'t>>,
    last_front: Option<&'t [u8]>,
    last_back: Option<&'t [u8]>,
    done: bool,
}

impl std::fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range").field("done", &self.done).finish()
    }
}

impl<'t> Range<'t> {
    fn step(&mut self, forward: bool) -> Result<Option<Entry<'t>>> {
        let snap = self.snap;
        let cursor = if forward {
            &mut self.front
        } else {
            &mut self.back
        };
        if cursor.is_none() {
            let mut c = Cursor::new(snap.rd);
            match (forward, &self.start, &self.end) {
                (true, Bound::Unbounded, _) => c.first(snap.root)?,
                (true, Bound::Included(k), _) => c.seek(snap.root, k, Seek::Ge)?,
                (true, Bound::Excluded(k), _) => c.seek(snap.root, k, Seek::Gt)?,
                (false, _, Bound::Unbounded) => c.last(snap.root)?,
                (false, _, Bound::Included(k)) => c.seek(snap.root, k, Seek::Le)?,
                (false, _, Bound::Excluded(k)) => c.seek(snap.root, k, Seek::Lt)?,
            }
            *cursor = Some(c);
        }
        let c = cursor.as_mut().expect("set just above");
        let Some((key, val)) = c.current()? else {
            return Ok(None);
        };
        let past = if forward {
            tree::beyond_end(key, self.end.as_ref().map(|k| &**k))
                || self.last_back.is_some_and(|b| key >= b)
        } else {
            tree::before_start(key, self.start.as_ref().map(|k| &**k))
                || self.last_front.is_some_and(|f| key <= f)
        };
        if past {
            return Ok(None);
        }
        if forward {
            c.next()?;
            self.last_front = Some(key);
        } else {
            c.prev()?;
            self.last_back = Some(key);
        }
        Ok(Some((key, snap.rd.value(val)?)))
    }

    fn item(&mut self, forward: bool) -> Option<Result<Entry<'t>>> {
        if self.done {
            return None;
        }
        match self.step(forward) {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'t> Iterator for Range<'t> {
    type Item = Result<(&'t [u8], &'t [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        self.item(true)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.item(false)
    }
}

/// A write transaction: changes to any number of keys and trees, applied all together by
/// [`commit`](Self::commit) (or [`commit_unsynced`](Self::commit_unsynced)), or not at
/// all by [`abort`](Self::abort) or a drop. Writers are serialized: `begin_write` waits
/// for the one before to end. Readers are never blocked by it, and see nothing of it
/// until it commits.
pub struct WriteTxn<'s> {
    inner: &'s Inner,
    w: MutexGuard<'s, WriterState>,
    base: Arc<Version>,
    /// Trees this transaction created or changed (`Some`) or deleted (`None`).
    touched: BTreeMap<Arc<str>, Option<TxnTree>>,
    /// Operations not yet written as a body record.
    ops: Vec<u8>,
    /// The tree the last operation in `ops` named.
    op_tree: Option<Arc<str>>,
    /// Too large to log: commits by a checkpoint.
    bulk: bool,
    cx: Cx,
    /// Log bytes of the out-of-line values this transaction added.
    added: u64,
    user_bytes: u64,
    changed: bool,
    /// An operation failed part-way: the transaction can only be dropped.
    failed: bool,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("base_seq", &self.base.seq)
            .field("changed", &self.changed)
            .finish()
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        self.inner.writer_thread.store(0, Ordering::Release);
    }
}

/// The tree `name` as `touched` holds it, taken from `base` the first time.
fn touch<'a>(
    touched: &'a mut BTreeMap<Arc<str>, Option<TxnTree>>,
    base: &Version,
    name: &Arc<str>,
) -> Option<&'a mut TxnTree> {
    if !touched.contains_key(name) {
        let root = base.trees.get(name)?;
        touched.insert(
            Arc::clone(name),
            Some(TxnTree {
                root: Slot::Clean(root.node.clone()),
                len: root.len,
                height: root.height,
            }),
        );
    }
    touched.get_mut(name).and_then(Option::as_mut)
}

impl<'s> WriteTxn<'s> {
    pub(super) fn new(inner: &'s Inner, w: MutexGuard<'s, WriterState>) -> WriteTxn<'s> {
        let base = inner.version();
        WriteTxn {
            inner,
            w,
            base,
            touched: BTreeMap::new(),
            ops: Vec::new(),
            op_tree: None,
            bulk: false,
            cx: Cx {
                page_size: inner.page_size,
                freed: 0,
                dropped: 0,
                dropped_mem: 0,
                scratch: Vec::new(),
                scratch_branch: Vec::new(),
            },
            added: 0,
            user_bytes: 0,
            changed: false,
            failed: false,
        }
    }

    fn exists(&self, name: &str) -> bool {
        match self.touched.get(name) {
            Some(t) => t.is_some(),
            None => self.base.trees.contains_key(name),
        }
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::TransactionFailed {
                store: self.inner.name.clone(),
            });
        }
        Ok(())
    }

    /// The tree `name`, created (empty) if it does not exist yet.
    ///
    /// # Errors
    /// `InvalidName` for a name longer than [`BTREE_TREE_NAME_BYTES_MAX`];
    /// `LimitExceeded` past [`BTREE_TREES_MAX`] trees; `TransactionFailed`; as
    /// [`TreeMut::insert`] for the log write.
    pub fn open_tree(&mut self, name: &str) -> Result<TreeMut<'_, 's>> {
        self.check_usable()?;
        if name.len() > BTREE_TREE_NAME_BYTES_MAX {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "a B-tree name is at most BTREE_TREE_NAME_BYTES_MAX bytes",
            });
        }
        let name: Arc<str> = Arc::from(name);
        if !self.exists(&name) {
            let count = self.tree_count();
            if count >= BTREE_TREES_MAX {
                return Err(Error::limit(
                    "BTREE_TREES_MAX",
                    count as u64 + 1,
                    BTREE_TREES_MAX as u64,
                ));
            }
            self.log_op(&name, &Op::Create(&name))?;
            self.touched.insert(
                Arc::clone(&name),
                Some(TxnTree {
                    root: Slot::Dirty(Box::new(Dirty::empty_leaf(self.inner.page_size))),
                    len: 0,
                    height: 1,
                }),
            );
            self.changed = true;
        }
        Ok(TreeMut { txn: self, name })
    }

    /// The default tree (named `""`).
    ///
    /// # Errors
    /// As [`open_tree`](Self::open_tree).
    pub fn default_tree(&mut self) -> Result<TreeMut<'_, 's>> {
        self.open_tree("")
    }

    fn tree_count(&self) -> usize {
        let mut n = self.base.trees.len();
        for (name, t) in &self.touched {
            match (self.base.trees.contains_key(name), t.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        n
    }

    /// Deletes tree `name` and every key in it; returns whether it existed.
    ///
    /// # Errors
    /// `InvalidName` for the default tree (`""`), which cannot be deleted;
    /// `Corrupted` if a page of the tree fails its checks; `TransactionFailed`.
    pub fn delete_tree(&mut self, name: &str) -> Result<bool> {
        self.check_usable()?;
        if name.is_empty() {
            return Err(Error::InvalidName {
                name: String::new(),
                reason: "the default tree cannot be deleted",
            });
        }
        if !self.exists(name) {
            return Ok(false);
        }
        let name: Arc<str> = Arc::from(name);
        let generation = Arc::clone(&self.base.generation);
        let rd = Reader {
            generation: &generation,
        };
        let t = touch(&mut self.touched, &self.base, &name).expect("exists");
        let usage = usage(&rd, rd.slot(&t.root)?, 0)?;
        self.cx.freed += usage.freed;
        self.cx.dropped += usage.pages;
        self.cx.dropped_mem += usage.mem_pages;
        self.touched.insert(Arc::clone(&name), None);
        self.changed = true;
        self.log_op(&name, &Op::Delete(&name))?;
        Ok(true)
    }

    /// Names of the named trees as this transaction sees them, in order.
    pub fn trees(&self) -> Vec<String> {
        let mut all: std::collections::BTreeSet<&str> =
            self.base.trees.keys().map(|k| &**k).collect();
        for (name, t) in &self.touched {
            if t.is_some() {
                all.insert(name);
            } else {
                all.remove(&**name);
            }
        }
        names(all.into_iter())
    }

    /// Appends `op` (on tree `tree`) to the transaction's operations. Once they pass
    /// [`BULK_BYTES`] the transaction stops logging them: it will commit by writing its
    /// pages instead (see `finish`). Nothing while open replays the log.
    fn log_op(&mut self, tree: &Arc<str>, op: &Op<'_>) -> Result<()> {
        if self.w.replaying || self.bulk {
            return Ok(());
        }
        if self.op_tree.as_ref() != Some(tree) && !matches!(op, Op::Create(_) | Op::Delete(_)) {
            records::encode(&mut self.ops, &Op::Tree(tree));
            self.op_tree = Some(Arc::clone(tree));
        }
        records::encode(&mut self.ops, op);
        if self.ops.len() >= BULK_BYTES {
            self.bulk = true;
            self.ops = Vec::new();
        }
        Ok(())
    }

    /// Runs one change to a tree, marking the transaction failed if it errs part-way.
    fn change<R>(
        &mut self,
        name: &Arc<str>,
        f: impl FnOnce(&Reader<'_>, &mut TxnTree, &mut Cx) -> Result<R>,
    ) -> Result<R> {
        self.check_usable()?;
        let generation = Arc::clone(&self.base.generation);
        let rd = Reader {
            generation: &generation,
        };
        let Some(t) = touch(&mut self.touched, &self.base, name) else {
            return Err(self.inner.missing_tree(name));
        };
        let out = f(&rd, t, &mut self.cx);
        if out.is_err() {
            self.failed = true;
        }
        out
    }

    /// Value bytes a removed or replaced value held, and what its removal frees.
    /// The bytes of a value an operation replaced or removed (the caller gets them back),
    /// and what its removal frees. The tree has changed already: if the value cannot be
    /// read (damaged at rest), the transaction fails, so that the change is never
    /// committed (found by review).
    fn release(&mut self, v: OwnedVal) -> Result<Vec<u8>> {
        match v {
            Val::Inline(b) => Ok(b.into_vec()),
            Val::Out(offset, len) => {
                self.cx.freed += footprint(records::VALUE_HEAD_BYTES as u64 + len);
                match self.base.generation.value(offset, len) {
                    Ok(bytes) => Ok(bytes.to_vec()),
                    Err(e) => {
                        self.failed = true;
                        Err(e)
                    }
                }
            }
        }
    }

    /// What a replaced or removed value frees, without reading it.
    fn forget(&mut self, v: &OwnedVal) {
        if let Val::Out(_, len) = v {
            self.cx.freed += footprint(records::VALUE_HEAD_BYTES as u64 + len);
        }
    }

    fn insert(&mut self, name: &Arc<str>, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_usable()?;
        if key.len() > BTREE_KEY_LEN_BYTES_MAX {
            return Err(Error::limit(
                "BTREE_KEY_LEN_BYTES_MAX",
                key.len() as u64,
                BTREE_KEY_LEN_BYTES_MAX as u64,
            ));
        }
        if value.len() > BTREE_VALUE_LEN_BYTES_MAX {
            return Err(Error::limit(
                "BTREE_VALUE_LEN_BYTES_MAX",
                value.len() as u64,
                BTREE_VALUE_LEN_BYTES_MAX as u64,
            ));
        }
        let inline =
            Val::Inline(value).cell_bytes(key.len()) <= page::cell_bytes_max(self.inner.page_size);
        let val = if inline {
            Val::Inline(value)
        } else {
            // Appended before the tree changes: a full disk leaves the tree as it was.
            let (offset, fp) = append_value(&self.base.generation.log, value)?;
            self.added += fp;
            Val::Out(offset, value.len() as u64)
        };
        let old = self.change(name, |rd, t, cx| tree::insert(rd, t, key, val.clone(), cx))?;
        self.changed = true;
        self.user_bytes += (key.len() + value.len()) as u64;
        if let Err(e) = self.log_op(name, &Op::Put(key, val)) {
            self.failed = true;
            return Err(e);
        }
        old.map(|v| self.release(v)).transpose()
    }

    fn remove(&mut self, name: &Arc<str>, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.change(name, |rd, t, cx| tree::remove(rd, t, key, cx))?;
        let Some(old) = old else {
            return Ok(None);
        };
        self.changed = true;
        if let Err(e) = self.log_op(name, &Op::Remove(key)) {
            self.failed = true;
            return Err(e);
        }
        self.release(old).map(Some)
    }

    fn remove_range(
        &mut self,
        name: &Arc<str>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<u64> {
        self.check_usable()?;
        let keys: Vec<Box<[u8]>> = {
            let snap = self.snap(name)?;
            snap.range(start, end)
                .map(|e| e.map(|(k, _)| Box::from(k)))
                .collect::<Result<_>>()?
        };
        for key in &keys {
            let old = self.change(name, |rd, t, cx| tree::remove(rd, t, key, cx))?;
            if let Some(old) = old {
                self.forget(&old);
            }
        }
        if !keys.is_empty() {
            self.changed = true;
            if let Err(e) = self.log_op(name, &Op::RemoveRange(start, end)) {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(keys.len() as u64)
    }

    /// A read view of tree `name` as this transaction sees it.
    fn snap(&self, name: &str) -> Result<Snap<'_>> {
        let rd = Reader {
            generation: &self.base.generation,
        };
        match self.touched.get(name) {
            Some(Some(t)) => Ok(Snap {
                rd,
                root: rd.slot(&t.root)?,
                len: t.len,
                height: t.height,
            }),
            Some(None) => Err(self.inner.missing_tree(name)),
            None => match self.base.trees.get(name) {
                Some(root) => Ok(Snap {
                    rd,
                    root: rd.node(&root.node)?,
                    len: root.len,
                    height: root.height,
                }),
                None => Err(self.inner.missing_tree(name)),
            },
        }
    }

    /// Applies the operations of a logged commit record (recovery).
    pub(super) fn replay(&mut self, ops: &[u8], at: u64) -> Result<()> {
        let generation = Arc::clone(&self.base.generation);
        let bad = |what: &str| {
            generation.corrupted(
                at,
                format!("B-tree commit record at log offset {at}: {what}"),
            )
        };
        let mut tree: Option<Arc<str>> = None;
        for op in records::Ops::new(ops) {
            let op = op.map_err(bad)?;
            match op {
                Op::Tree(name) => tree = Some(Arc::from(name)),
                Op::Create(name) => {
                    self.open_tree(name)?;
                }
                Op::Delete(name) => {
                    self.delete_tree(name)?;
                }
                Op::Put(key, val) => {
                    let name = tree.clone().ok_or_else(|| bad("a put names no tree"))?;
                    if let Val::Out(_, len) = val {
                        self.added += footprint(records::VALUE_HEAD_BYTES as u64 + len);
                    }
                    let user = (key.len() as u64)
                        + match val {
                            Val::Inline(v) => v.len() as u64,
                            Val::Out(_, l) => l,
                        };
                    // The writer never logs these: a record that holds one was not
                    // written by this format.
                    if key.len() > BTREE_KEY_LEN_BYTES_MAX {
                        return Err(bad("a put's key is over the key limit"));
                    }
                    if matches!(val, Val::Inline(_))
                        && val.cell_bytes(key.len()) > page::cell_bytes_max(self.inner.page_size)
                    {
                        return Err(bad("a put's value is inline but over a page's share"));
                    }
                    let old = self.change(&name, |rd, t, cx| tree::insert(rd, t, key, val, cx))?;
                    self.changed = true;
                    self.user_bytes += user;
                    if let Some(old) = old {
                        self.forget(&old);
                    }
                }
                Op::Remove(key) => {
                    let name = tree.clone().ok_or_else(|| bad("a remove names no tree"))?;
                    let old = self.change(&name, |rd, t, cx| tree::remove(rd, t, key, cx))?;
                    if let Some(old) = old {
                        self.changed = true;
                        self.forget(&old);
                    }
                }
                Op::RemoveRange(start, end) => {
                    let name = tree
                        .clone()
                        .ok_or_else(|| bad("a range removal names no tree"))?;
                    self.remove_range(&name, start, end)?;
                }
            }
        }
        Ok(())
    }

    /// Applies the transaction and makes it durable before returning: a crash after
    /// this returns keeps it. Costs one device flush (of the log's new bytes).
    ///
    /// # Errors
    /// `TransactionFailed` if one of its operations failed; `Io` (a full disk is
    /// `StorageFull`) or `Poisoned` if the commit record cannot be appended, and then
    /// nothing of the transaction is applied. If the flush fails, the commit is applied
    /// already (its record is in the page cache, and a reopen replays it): readers see
    /// it, whether a power loss would keep it is unknown, and the store refuses writes
    /// (`Poisoned`) until reopened. An error from the checkpoint that may follow a commit
    /// (see [`BTreeOptions::checkpoint_bytes`](super::BTreeOptions)) is returned the same
    /// way, with the commit applied and the store poisoned.
    pub fn commit(self) -> Result<()> {
        self.finish(true)
    }

    /// Applies the transaction without waiting for the device: visible at once, it
    /// survives the death of the process, and a power loss can take it (with every
    /// commit after it) until a later [`commit`](Self::commit) or
    /// [`BTreeStore::sync`](super::BTreeStore::sync). A transaction whose operations
    /// pass 1 MiB (a bulk load) commits by writing its pages and a checkpoint, durably,
    /// either way.
    ///
    /// # Errors
    /// As [`commit`](Self::commit).
    pub fn commit_unsynced(self) -> Result<()> {
        self.finish(false)
    }

    /// Drops every change of the transaction (as a drop does).
    pub fn abort(self) {}

    pub(super) fn finish(mut self, durable: bool) -> Result<()> {
        self.check_usable()?;
        let generation = Arc::clone(&self.base.generation);
        if !self.changed {
            // Nothing to apply; a durable commit still makes the unsynced commits before it
            // durable, as promised (found by review).
            if durable && !self.w.replaying {
                generation.log.sync()?;
            }
            return Ok(());
        }
        let seq = self.base.seq + 1;
        let mut synced = Ok(());
        if !self.w.replaying && !self.bulk {
            let mut r = records::begin(
                records::KIND_COMMIT,
                records::COMMIT_HEAD_BYTES + self.ops.len(),
            );
            r.extend_from_slice(&seq.to_le_bytes());
            r.extend_from_slice(&0u64.to_le_bytes());
            r.extend_from_slice(&self.ops);
            records::seal(&mut r);
            // An append that fails leaves no commit record: nothing is applied.
            generation.log.append(&r)?;
            if durable {
                synced = generation.log.sync();
            }
        }
        let mut trees = self.base.trees.clone();
        let mut made = 0;
        for (name, t) in std::mem::take(&mut self.touched) {
            match t {
                None => {
                    trees.remove(&name);
                }
                Some(t) => {
                    let node = match t.root {
                        Slot::Clean(r) => r,
                        Slot::Dirty(d) => freeze(*d, &mut made),
                        Slot::Base(_) => unreachable!("a tree's root is no node's child"),
                    };
                    trees.insert(
                        name,
                        Root {
                            node,
                            len: t.len,
                            height: t.height,
                        },
                    );
                }
            }
        }
        let b = &self.base;
        let v = Arc::new(Version {
            seq,
            generation: Arc::clone(&generation),
            trees,
            live_bytes: (b.live_bytes + self.added).saturating_sub(self.cx.freed),
            pages: (b.pages + made).saturating_sub(self.cx.dropped),
            mem_pages: (b.mem_pages + made).saturating_sub(self.cx.dropped_mem),
            user_bytes: b.user_bytes + self.user_bytes,
            appended_before: b.appended_before,
        });
        if self.bulk {
            // The checkpoint is the commit: durable once it returns, whatever was asked.
            return match self.inner.checkpoint(&mut self.w, &v) {
                Ok(v) => {
                    self.inner.publish(v);
                    Ok(())
                }
                Err(e) => Err(self.inner.applied_but(v, e)),
            };
        }
        if let Err(e) = synced {
            // The commit record is in the page cache, so a reopen replays it: it is
            // applied here too, and the store refuses writes from now on.
            return Err(self.inner.applied_but(v, e));
        }
        self.inner.publish(Arc::clone(&v));
        if !self.w.replaying && self.inner.checkpoint_due(&self.w, &v) {
            // A compaction writes every page in memory too: when one would follow the
            // checkpoint anyway, it is the checkpoint.
            let direct = self.inner.compaction_due_after_checkpoint(&v);
            let v = if direct {
                v
            } else {
                let v = self
                    .inner
                    .checkpoint(&mut self.w, &v)
                    .map_err(|e| self.inner.poison(e))?;
                self.inner.publish(Arc::clone(&v));
                v
            };
            if direct || self.inner.compaction_due(&v) {
                let v = self
                    .inner
                    .compact(&mut self.w, &v)
                    .map_err(|e| self.inner.poison(e))?;
                self.inner.publish(v);
            }
        }
        Ok(())
    }

    /// The write lock's state (recovery and the store's own operations).
    pub(super) fn writer(&mut self) -> &mut WriterState {
        &mut self.w
    }
}

/// What a tree holds in the log, for the accounting of a deleted tree.
struct Usage {
    freed: u64,
    pages: u64,
    mem_pages: u64,
}

fn usage(rd: &Reader<'_>, v: View<'_>, depth: usize) -> Result<Usage> {
    let mut u = Usage {
        freed: 0,
        pages: 0,
        mem_pages: 0,
    };
    if depth >= tree::HEIGHT_MAX {
        return Err(rd
            .generation
            .corrupted(0, "a B-tree path is longer than any height"));
    }
    match v {
        View::Page { at, .. } => {
            u.pages += 1;
            if at == page::MEM_CHILD {
                u.mem_pages += 1;
            } else {
                u.freed += footprint(rd.generation.page_size as u64);
            }
        }
        View::Dirty(_) => {}
    }
    if rd.is_leaf(&v) {
        for i in 0..rd.len(&v) {
            if let (_, Val::Out(_, len)) = rd.entry(&v, i)? {
                u.freed += footprint(records::VALUE_HEAD_BYTES as u64 + len);
            }
        }
    } else {
        for i in 0..rd.kids(&v) {
            let k = usage(rd, rd.child(&v, i)?, depth + 1)?;
            u.freed += k.freed;
            u.pages += k.pages;
            u.mem_pages += k.mem_pages;
        }
    }
    Ok(u)
}

/// One tree of a [`WriteTxn`]; see [`WriteTxn::open_tree`]. Reads see the
/// transaction's own changes.
pub struct TreeMut<'w, 's> {
    txn: &'w mut WriteTxn<'s>,
    name: Arc<str>,
}

impl std::fmt::Debug for TreeMut<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeMut").field("name", &self.name).finish()
    }
}

impl TreeMut<'_, '_> {
    fn snap(&self) -> Result<Snap<'_>> {
        self.txn.snap(&self.name)
    }

    read_methods!(snap, '_);

    /// Sets `key` to `value`; returns the value it replaced. A value too large to share
    /// a page is stored out of line, in a record of its own.
    ///
    /// # Errors
    /// `LimitExceeded` for a key over [`BTREE_KEY_LEN_BYTES_MAX`] or a value over
    /// [`BTREE_VALUE_LEN_BYTES_MAX`] (the tree is unchanged); `Io` from the log (a full
    /// disk is `StorageFull`; the tree is unchanged); `Corrupted` if a page on the way
    /// fails its checks, after which the transaction fails (`TransactionFailed`).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let name = Arc::clone(&self.name);
        self.txn.insert(&name, key, value)
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let name = Arc::clone(&self.name);
        self.txn.remove(&name, key)
    }

    /// Removes every key in `range`; returns how many.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn remove_range(&mut self, range: impl KeyRange) -> Result<u64> {
        let name = Arc::clone(&self.name);
        self.txn
            .remove_range(&name, range.start_key(), range.end_key())
    }
}
