//! The B+tree's algorithms on one tree: lookups on any view, and inserts and removes on a
//! write transaction's copy (copy on write, splits, merges and redistribution), plus the
//! cursor that ordered reads walk with. Knows nothing of the log or of commits.
//!
//! Invariant: every node but the root holds at least a quarter of a page; every node
//! holds at most a page; a leaf cell is at most a quarter of a page (larger values go
//! out of line), so any overfull node splits into two halves of over a quarter page each.

use std::ops::Bound;

use super::node::{Branch, Dirty, Leaf, OwnedVal, Reader, Slot, View, decode};
use super::page::{self, Val};
use crate::{Error, Result};

/// Deepest tree a lookup follows before it calls the tree damaged (a cycle of page
/// pointers would otherwise never end): far past any real height.
pub(super) const HEIGHT_MAX: usize = 64;

/// A tree as a write transaction holds it.
#[derive(Debug)]
pub(super) struct TxnTree {
    pub root: Slot,
    pub len: u64,
    pub height: u32,
}

/// What an edit needs besides the tree: the page size, and the log bytes that nodes
/// copied on write stop using.
pub(super) struct Cx {
    pub page_size: usize,
    /// Log bytes that pages and values replaced or removed no longer use.
    pub freed: u64,
    /// Committed pages copied on write (they leave the tree at commit).
    pub dropped: u64,
    /// ... of which pages in memory.
    pub dropped_mem: u64,
}

fn too_deep(rd: &Reader<'_>) -> Error {
    rd.generation.corrupted(
        0,
        format!("a B-tree path is longer than {HEIGHT_MAX} pages: its page pointers form a cycle"),
    )
}

/// The value of `key` under `root`.
pub(super) fn get<'t>(
    rd: &Reader<'t>,
    root: View<'t>,
    key: &[u8],
) -> Result<Option<Val<&'t [u8]>>> {
    let mut v = root;
    for _ in 0..HEIGHT_MAX {
        if rd.is_leaf(&v) {
            return Ok(match rd.search(&v, key)? {
                Ok(i) => Some(rd.entry(&v, i)?.1),
                Err(_) => None,
            });
        }
        let i = rd.child_for(&v, key)?;
        v = rd.child(&v, i)?;
    }
    Err(too_deep(rd))
}

/// True if `key` is under `root` (a slot of a write transaction).
pub(super) fn exists(rd: &Reader<'_>, root: &Slot, key: &[u8]) -> Result<bool> {
    // A reader borrowing `root` only for this call.
    let rd = Reader {
        generation: rd.generation,
    };
    Ok(get(&rd, rd.slot(root)?, key)?.is_some())
}

fn make_dirty<'s>(rd: &Reader<'_>, slot: &'s mut Slot, cx: &mut Cx) -> Result<&'s mut Dirty> {
    if let Slot::Clean(r) = slot {
        let (d, freed) = decode(rd, r)?;
        cx.freed += freed;
        cx.dropped += 1;
        if matches!(r, super::node::NodeRef::Mem(_)) {
            cx.dropped_mem += 1;
        }
        *slot = Slot::Dirty(Box::new(d));
    }
    match slot {
        Slot::Dirty(d) => Ok(d),
        Slot::Clean(_) => unreachable!("made dirty just above"),
    }
}

/// Sets `key` to `val` in `t`; returns the value it replaced.
pub(super) fn insert(
    rd: &Reader<'_>,
    t: &mut TxnTree,
    key: &[u8],
    val: OwnedVal,
    cx: &mut Cx,
) -> Result<Option<OwnedVal>> {
    let (old, split) = insert_at(rd, &mut t.root, key, val, cx, 0)?;
    grow_root(t, split);
    collapse_root(t);
    if old.is_none() {
        t.len += 1;
    }
    Ok(old)
}

type Split = Option<(Box<[u8]>, Slot)>;

impl Branch {
    /// The child that holds `key`.
    fn child_for(&self, key: &[u8]) -> usize {
        match self.keys.binary_search_by(|k| (**k).cmp(key)) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Takes in the split of child `i`: its separator and its right half.
    fn take_split(&mut self, i: usize, (sep, right): (Box<[u8]>, Slot)) {
        self.bytes += page::branch_cell_bytes(sep.len());
        self.keys.insert(i, sep);
        self.kids.insert(i + 1, right);
    }
}

fn insert_at(
    rd: &Reader<'_>,
    slot: &mut Slot,
    key: &[u8],
    val: OwnedVal,
    cx: &mut Cx,
    depth: usize,
) -> Result<(Option<OwnedVal>, Split)> {
    if depth >= HEIGHT_MAX {
        return Err(too_deep(rd));
    }
    let page_size = cx.page_size;
    match make_dirty(rd, slot, cx)? {
        Dirty::Leaf(l) => {
            let cell = val.cell_bytes(key.len());
            let old = match l.entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
                Ok(i) => {
                    l.bytes = l.bytes + cell - l.entries[i].1.cell_bytes(key.len());
                    Some(std::mem::replace(&mut l.entries[i].1, val))
                }
                Err(i) => {
                    l.entries.insert(i, (key.into(), val));
                    l.bytes += cell;
                    None
                }
            };
            let split = (l.bytes > page_size).then(|| split_leaf(l));
            Ok((old, split))
        }
        Dirty::Branch(b) => {
            let i = b.child_for(key);
            let (old, split) = insert_at(rd, &mut b.kids[i], key, val, cx, depth + 1)?;
            if let Some(split) = split {
                b.take_split(i, split);
            } else {
                // A smaller value can leave the child under the minimum fill.
                rebalance(rd, b, i, cx)?;
            }
            let split = (b.bytes > page_size).then(|| split_branch(b));
            Ok((old, split))
        }
    }
}

/// The split point of cells of `sizes` bytes: the `m` that best balances `sizes[..m]`
/// against `sizes[m + skip..]` (`skip` is 1 for a branch, whose middle key moves up, 0
/// for a leaf), with both sides non-empty. Each side then holds at least half of what
/// the node holds less three cells: with cells of at most a quarter page and a node over
/// a page, over a quarter page each (found by review: a split at the first half-way
/// point could leave a branch's right side under the minimum).
fn split_point(sizes: &[usize], skip: usize) -> usize {
    let total: usize = sizes.iter().sum();
    let mut best = (usize::MAX, 1);
    let mut left = 0;
    for m in 1..sizes.len() - skip {
        left += sizes[m - 1];
        let right = total - left - if skip == 1 { sizes[m] } else { 0 };
        let gap = left.abs_diff(right);
        if gap < best.0 {
            best = (gap, m);
        }
    }
    best.1
}

/// Splits an overfull leaf in two halves by bytes; returns the separator (the right
/// half's first key) and the right half.
fn split_leaf(l: &mut Leaf) -> (Box<[u8]>, Slot) {
    let sizes: Vec<usize> = l
        .entries
        .iter()
        .map(|(k, v)| v.cell_bytes(k.len()))
        .collect();
    let m = split_point(&sizes, 0);
    let mut right = Leaf {
        entries: l.entries.split_off(m),
        bytes: 0,
    };
    right.recount();
    l.recount();
    let sep = right.entries[0].0.clone();
    (sep, Slot::Dirty(Box::new(Dirty::Leaf(right))))
}

/// Splits an overfull branch: key `m` moves up, the keys before it stay.
fn split_branch(b: &mut Branch) -> (Box<[u8]>, Slot) {
    let sizes: Vec<usize> = b
        .keys
        .iter()
        .map(|k| page::branch_cell_bytes(k.len()))
        .collect();
    let m = split_point(&sizes, 1);
    let right_keys = b.keys.split_off(m + 1);
    let sep = b.keys.pop().expect("m >= 1 keys stay on the left");
    let right_kids = b.kids.split_off(m + 1);
    let mut right = Branch {
        keys: right_keys,
        kids: right_kids,
        bytes: 0,
    };
    right.recount();
    b.recount();
    (sep, Slot::Dirty(Box::new(Dirty::Branch(right))))
}

/// Removes `key` from `t`; returns its value. A key that is absent changes nothing
/// (no node is copied).
pub(super) fn remove(
    rd: &Reader<'_>,
    t: &mut TxnTree,
    key: &[u8],
    cx: &mut Cx,
) -> Result<Option<OwnedVal>> {
    if !exists(rd, &t.root, key)? {
        return Ok(None);
    }
    let (old, split) = remove_at(rd, &mut t.root, key, cx, 0)?;
    grow_root(t, split);
    collapse_root(t);
    if old.is_some() {
        t.len -= 1;
    }
    Ok(old)
}

/// A root that split gives way to a new root branch over its two halves.
fn grow_root(t: &mut TxnTree, split: Split) {
    if let Some((sep, right)) = split {
        let left = std::mem::replace(
            &mut t.root,
            Slot::Dirty(Box::new(Dirty::Leaf(Leaf::empty()))),
        );
        let mut b = Branch {
            keys: vec![sep],
            kids: vec![left, right],
            bytes: 0,
        };
        b.recount();
        t.root = Slot::Dirty(Box::new(Dirty::Branch(b)));
        t.height += 1;
    }
}

/// A root branch left with one child gives way to it.
fn collapse_root(t: &mut TxnTree) {
    while let Slot::Dirty(d) = &mut t.root {
        let Dirty::Branch(b) = &mut **d else { break };
        if !b.keys.is_empty() {
            break;
        }
        let only = b.kids.pop().expect("a branch has a child");
        t.root = only;
        t.height -= 1;
    }
}

fn remove_at(
    rd: &Reader<'_>,
    slot: &mut Slot,
    key: &[u8],
    cx: &mut Cx,
    depth: usize,
) -> Result<(Option<OwnedVal>, Split)> {
    if depth >= HEIGHT_MAX {
        return Err(too_deep(rd));
    }
    let page_size = cx.page_size;
    match make_dirty(rd, slot, cx)? {
        Dirty::Leaf(l) => match l.entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => {
                let (k, v) = l.entries.remove(i);
                l.bytes -= v.cell_bytes(k.len());
                Ok((Some(v), None))
            }
            Err(_) => Ok((None, None)),
        },
        Dirty::Branch(b) => {
            let i = b.child_for(key);
            let (old, split) = remove_at(rd, &mut b.kids[i], key, cx, depth + 1)?;
            if let Some(split) = split {
                b.take_split(i, split);
            } else if old.is_some() {
                rebalance(rd, b, i, cx)?;
            }
            // A merge below can bring up a longer separator than the one it replaced, so
            // a branch can overflow on a removal too (found by review).
            let split = (b.bytes > page_size).then(|| split_branch(b));
            Ok((old, split))
        }
    }
}

/// The fill under which a node other than the root is merged or refilled.
pub(super) fn fill_min(page_size: usize) -> usize {
    page_size / 4
}

/// If child `i` of `b` fell under the minimum fill, merges it with a sibling, or, if the
/// two do not fit one page, shares their cells evenly between them.
fn rebalance(rd: &Reader<'_>, b: &mut Branch, i: usize, cx: &mut Cx) -> Result<()> {
    let under = match &b.kids[i] {
        Slot::Dirty(d) => d.bytes() < fill_min(cx.page_size),
        Slot::Clean(_) => false,
    };
    if !under || b.kids.len() < 2 {
        return Ok(());
    }
    let l = if i + 1 < b.kids.len() { i } else { i - 1 };
    make_dirty(rd, &mut b.kids[l], cx)?;
    make_dirty(rd, &mut b.kids[l + 1], cx)?;
    let Slot::Dirty(right) = b.kids.remove(l + 1) else {
        unreachable!("made dirty just above")
    };
    let sep = b.keys.remove(l);
    b.bytes -= page::branch_cell_bytes(sep.len());
    let Slot::Dirty(left) = &mut b.kids[l] else {
        unreachable!("made dirty just above")
    };
    let split = match (&mut **left, *right) {
        (Dirty::Leaf(a), Dirty::Leaf(c)) => {
            a.entries.extend(c.entries);
            a.recount();
            (a.bytes > cx.page_size).then(|| split_leaf(a))
        }
        (Dirty::Branch(a), Dirty::Branch(c)) => {
            a.keys.push(sep);
            a.keys.extend(c.keys);
            a.kids.extend(c.kids);
            a.recount();
            (a.bytes > cx.page_size).then(|| split_branch(a))
        }
        _ => {
            return Err(rd.generation.corrupted(
                0,
                "two sibling B-tree nodes lie at different levels (the tree is damaged)",
            ));
        }
    };
    if let Some(split) = split {
        b.take_split(l, split);
    }
    Ok(())
}

/// A key and its value as a leaf holds it.
pub(super) type LeafEntry<'t> = (&'t [u8], Val<&'t [u8]>);

/// Where a seek lands relative to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seek {
    /// The first key `>=` it.
    Ge,
    /// The first key `>` it.
    Gt,
    /// The last key `<=` it.
    Le,
    /// The last key `<` it.
    Lt,
}

/// A position in a tree: the path of nodes from the root, and the index taken in each
/// (in the leaf, the entry). Empty once it has walked off either end.
pub(super) struct Cursor<'t> {
    rd: Reader<'t>,
    stack: Vec<(View<'t>, usize)>,
}

impl<'t> Cursor<'t> {
    pub fn new(rd: Reader<'t>) -> Cursor<'t> {
        Cursor {
            rd,
            stack: Vec::new(),
        }
    }

    /// Descends from `v` along its first (or last) child to a leaf, onto its first (or
    /// last) entry; walks on past empty leaves.
    fn descend(&mut self, mut v: View<'t>, last: bool) -> Result<()> {
        let rd = self.rd;
        loop {
            if self.stack.len() >= HEIGHT_MAX {
                return Err(too_deep(&rd));
            }
            if rd.is_leaf(&v) {
                let n = rd.len(&v);
                if n == 0 {
                    self.stack.push((v, 0));
                    return if last {
                        self.step_back_leaf()
                    } else {
                        self.step_leaf()
                    };
                }
                self.stack.push((v, if last { n - 1 } else { 0 }));
                return Ok(());
            }
            let i = if last { rd.kids(&v) - 1 } else { 0 };
            self.stack.push((v, i));
            v = rd.child(&v, i)?;
        }
    }

    pub fn first(&mut self, root: View<'t>) -> Result<()> {
        self.stack.clear();
        self.descend(root, false)
    }

    pub fn last(&mut self, root: View<'t>) -> Result<()> {
        self.stack.clear();
        self.descend(root, true)
    }

    pub fn seek(&mut self, root: View<'t>, key: &[u8], how: Seek) -> Result<()> {
        let rd = self.rd;
        self.stack.clear();
        let mut v = root;
        loop {
            if self.stack.len() >= HEIGHT_MAX {
                return Err(too_deep(&rd));
            }
            if rd.is_leaf(&v) {
                let n = rd.len(&v);
                let (found, at) = match rd.search(&v, key)? {
                    Ok(i) => (true, i),
                    Err(i) => (false, i),
                };
                return match how {
                    Seek::Ge | Seek::Gt => {
                        let i = if found && how == Seek::Gt { at + 1 } else { at };
                        self.stack.push((v, i));
                        if i >= n { self.step_leaf() } else { Ok(()) }
                    }
                    Seek::Le | Seek::Lt => {
                        let keep = found && how == Seek::Le;
                        if keep {
                            self.stack.push((v, at));
                            Ok(())
                        } else if at == 0 {
                            self.stack.push((v, 0));
                            self.step_back_leaf()
                        } else {
                            self.stack.push((v, at - 1));
                            Ok(())
                        }
                    }
                };
            }
            let i = rd.child_for(&v, key)?;
            self.stack.push((v, i));
            v = rd.child(&v, i)?;
        }
    }

    /// The entry under the cursor.
    pub fn current(&self) -> Result<Option<LeafEntry<'t>>> {
        match self.stack.last() {
            Some((v, i)) if *i < self.rd.len(v) => self.rd.entry(v, *i).map(Some),
            _ => Ok(None),
        }
    }

    /// Moves to the next entry.
    pub fn next(&mut self) -> Result<()> {
        if let Some((v, i)) = self.stack.last_mut() {
            *i += 1;
            if *i < self.rd.len(v) {
                return Ok(());
            }
            self.step_leaf()?;
        }
        Ok(())
    }

    /// Moves to the previous entry.
    pub fn prev(&mut self) -> Result<()> {
        if let Some((_, i)) = self.stack.last_mut() {
            if *i > 0 {
                *i -= 1;
                return Ok(());
            }
            self.step_back_leaf()?;
        }
        Ok(())
    }

    /// Leaves the current leaf for the first entry of the next one.
    fn step_leaf(&mut self) -> Result<()> {
        let rd = self.rd;
        self.stack.pop();
        while let Some((v, i)) = self.stack.last_mut() {
            if *i + 1 < rd.kids(v) {
                *i += 1;
                let child = rd.child(v, *i)?;
                return self.descend(child, false);
            }
            self.stack.pop();
        }
        Ok(())
    }

    /// Leaves the current leaf for the last entry of the one before.
    fn step_back_leaf(&mut self) -> Result<()> {
        let rd = self.rd;
        self.stack.pop();
        while let Some((v, i)) = self.stack.last_mut() {
            if *i > 0 {
                *i -= 1;
                let child = rd.child(v, *i)?;
                return self.descend(child, true);
            }
            self.stack.pop();
        }
        Ok(())
    }
}

/// True if `key` is past `end` (for a walk forward).
pub(super) fn beyond_end(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Unbounded => false,
        Bound::Included(e) => key > e,
        Bound::Excluded(e) => key >= e,
    }
}

/// True if `key` is before `start` (for a walk backward).
pub(super) fn before_start(key: &[u8], start: Bound<&[u8]>) -> bool {
    match start {
        Bound::Unbounded => false,
        Bound::Included(s) => key < s,
        Bound::Excluded(s) => key <= s,
    }
}
