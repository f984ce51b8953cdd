//! The B+tree's algorithms on one tree: lookups on any view, and inserts and removes on a
//! write transaction's copy (copy on write, splits, merges and redistribution), plus the
//! cursor that ordered reads walk with. Knows nothing of the log or of commits.
//!
//! Invariant: every node but the root holds at least a quarter of a page; every node
//! holds at most a page; a leaf cell is at most a quarter of a page (larger values go
//! out of line), so any overfull node splits into two halves of over a quarter page each.

use std::ops::Bound;
use std::sync::Arc;

use super::node::{Dirty, MemPage, OwnedVal, Reader, Slot, View, copy, own};
use super::page::{self, PageBuf, Val};
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
    /// Scratch space for a leaf cell.
    pub scratch: Vec<u8>,
    /// Scratch space for a branch cell.
    pub scratch_branch: Vec<u8>,
}

pub(super) fn too_deep(rd: &Reader<'_>) -> Error {
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
        let (d, freed) = copy(rd, r)?;
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
        Slot::Base(_) => unreachable!("a base child is made a counted reference first"),
    }
}

/// Sets `key` to `val` in `t`; returns the value it replaced. `cell` is scratch space
/// for the leaf cell.
pub(super) fn insert(
    rd: &Reader<'_>,
    t: &mut TxnTree,
    key: &[u8],
    val: Val<&[u8]>,
    cx: &mut Cx,
) -> Result<Option<OwnedVal>> {
    let mut cell = std::mem::take(&mut cx.scratch);
    page::leaf_cell(&mut cell, key, &val);
    let out = insert_at(rd, &mut t.root, key, &cell, cx, 0);
    cx.scratch = cell;
    let (old, split) = out?;
    grow_root(t, split, cx.page_size);
    collapse_root(rd, t)?;
    if old.is_none() {
        t.len += 1;
    }
    Ok(old)
}

/// A node's split: the separator (the least key of the right half) and the right half.
type Split = Option<(Box<[u8]>, Slot)>;

/// Packs `cells` (whole cells of a node of `kind`, in order; a branch's `kids` one
/// longer) into one node, or, if they overflow a page, into two halves balanced by
/// bytes: returns the node (the left half) and the split.
///
/// With cells of at most a quarter page and a node under two pages, each half holds
/// over a quarter page (see [`split_point`]).
fn pack(
    kind: u8,
    page_size: usize,
    cells: &[&[u8]],
    mut kids: Vec<Slot>,
    base: Option<&Arc<MemPage>>,
) -> (Dirty, Split) {
    let sizes: Vec<usize> = cells.iter().map(|c| c.len() + page::SLOT_BYTES).collect();
    // Both halves keep the base that `kids` may name.
    let node = |cells: &[&[u8]], kids: Vec<Slot>| {
        Dirty::new(
            PageBuf::from_cells(kind, page_size, cells.iter().copied()),
            kids,
            base.cloned(),
        )
    };
    if page::HEADER_BYTES + sizes.iter().sum::<usize>() <= page_size {
        return (node(cells, kids), None);
    }
    if kind == page::LEAF {
        let m = split_point(&sizes, 0);
        let sep = page::cell_key(kind, cells[m]).into();
        let right = node(&cells[m..], Vec::new());
        (
            node(&cells[..m], Vec::new()),
            Some((sep, Slot::Dirty(Box::new(right)))),
        )
    } else {
        // Key `m` moves up; its child becomes the right half's leftmost.
        let m = split_point(&sizes, 1);
        let sep = page::cell_key(kind, cells[m]).into();
        let right = node(&cells[m + 1..], kids.split_off(m + 1));
        (
            node(&cells[..m], kids),
            Some((sep, Slot::Dirty(Box::new(right)))),
        )
    }
}

/// Puts `cell` at place `i` of `d` (replacing the cell there if `replace`) and, for a
/// branch, `kid` at child `i + 1`; splits `d` if it overflows.
fn put_cell(
    rd: &Reader<'_>,
    d: &mut Dirty,
    i: usize,
    replace: bool,
    cell: &[u8],
    kid: Option<Slot>,
    page_size: usize,
) -> Result<Split> {
    if kid.is_some() {
        // Children are about to move: list them all while the page still says which
        // is which.
        d.kids_mut(rd)?;
    }
    let fits = if replace {
        d.page.replace(i, cell)
    } else if d.page.fits(cell.len()) {
        d.page.insert(i, cell);
        true
    } else {
        false
    };
    if fits {
        if let Some(kid) = kid {
            d.kids_mut(rd)?.insert(i + 1, kid);
        }
        return Ok(None);
    }
    let mut kids = Vec::new();
    if let Some(kid) = kid {
        kids = std::mem::take(d.kids_mut(rd)?);
        kids.insert(i + 1, kid);
    }
    let (node, split) = {
        let mut cells: Vec<&[u8]> = d.page.cells().collect();
        if replace {
            cells[i] = cell;
        } else {
            cells.insert(i, cell);
        }
        pack(d.page.kind(), page_size, &cells, kids, d.base())
    };
    *d = node;
    Ok(split)
}

/// Takes in the split of child `i` of branch `b`: its separator and its right half.
/// Returns `b`'s own split if that overflows it.
fn take_split(
    rd: &Reader<'_>,
    b: &mut Dirty,
    i: usize,
    (sep, right): (Box<[u8]>, Slot),
    cx: &mut Cx,
) -> Result<Split> {
    let mut cell = std::mem::take(&mut cx.scratch_branch);
    page::branch_cell(&mut cell, &sep);
    let split = put_cell(rd, b, i, false, &cell, Some(right), cx.page_size);
    cx.scratch_branch = cell;
    split
}

fn insert_at(
    rd: &Reader<'_>,
    slot: &mut Slot,
    key: &[u8],
    cell: &[u8],
    cx: &mut Cx,
    depth: usize,
) -> Result<(Option<OwnedVal>, Split)> {
    if depth >= HEIGHT_MAX {
        return Err(too_deep(rd));
    }
    let page_size = cx.page_size;
    let d = make_dirty(rd, slot, cx)?;
    if d.is_leaf() {
        return Ok(match d.page.search(key) {
            Ok(i) => {
                let old = own(check_dirty(rd, d.page.page().entry(i))?.1);
                (Some(old), put_cell(rd, d, i, true, cell, None, page_size)?)
            }
            Err(i) => (None, put_cell(rd, d, i, false, cell, None, page_size)?),
        });
    }
    let i = d.child_for(key);
    let (old, split) = insert_at(rd, d.kid_mut(rd, i)?, key, cell, cx, depth + 1)?;
    let split = match split {
        Some(split) => take_split(rd, d, i, split, cx)?,
        // A smaller value can leave the child under the minimum fill.
        None => rebalance(rd, d, i, cx)?,
    };
    Ok((old, split))
}

/// A damage read from a dirty node: its bytes were checked as they were copied, so this
/// is a defect, reported as damage rather than a panic.
fn check_dirty<T>(rd: &Reader<'_>, r: std::result::Result<T, page::Damage>) -> Result<T> {
    r.map_err(|d| rd.generation.page_damage(page::MEM_CHILD, d))
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
    grow_root(t, split, cx.page_size);
    collapse_root(rd, t)?;
    if old.is_some() {
        t.len -= 1;
    }
    Ok(old)
}

/// A root that split gives way to a new root branch over its two halves.
fn grow_root(t: &mut TxnTree, split: Split, page_size: usize) {
    if let Some((sep, right)) = split {
        let left = std::mem::replace(
            &mut t.root,
            Slot::Dirty(Box::new(Dirty::empty_leaf(page_size))),
        );
        let mut cell = Vec::new();
        page::branch_cell(&mut cell, &sep);
        let root = Dirty::new(
            PageBuf::from_cells(page::BRANCH, page_size, [&cell[..]]),
            vec![left, right],
            None,
        );
        t.root = Slot::Dirty(Box::new(root));
        t.height += 1;
    }
}

/// A root branch left with one child gives way to it.
fn collapse_root(rd: &Reader<'_>, t: &mut TxnTree) -> Result<()> {
    while let Slot::Dirty(d) = &mut t.root {
        if d.is_leaf() || d.page.len() > 0 {
            break;
        }
        d.kid_mut(rd, 0)?;
        let only = d.kids_mut(rd)?.pop().expect("a branch has a child");
        t.root = only;
        t.height -= 1;
    }
    Ok(())
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
    let d = make_dirty(rd, slot, cx)?;
    if d.is_leaf() {
        return Ok(match d.page.search(key) {
            Ok(i) => {
                let old = own(check_dirty(rd, d.page.page().entry(i))?.1);
                d.page.remove(i);
                (Some(old), None)
            }
            Err(_) => (None, None),
        });
    }
    let i = d.child_for(key);
    let (old, split) = remove_at(rd, d.kid_mut(rd, i)?, key, cx, depth + 1)?;
    // A merge below can bring up a longer separator than the one it replaced, so a
    // branch can overflow on a removal too (found by review).
    let split = match split {
        Some(split) => take_split(rd, d, i, split, cx)?,
        None if old.is_some() => rebalance(rd, d, i, cx)?,
        None => None,
    };
    Ok((old, split))
}

/// The fill under which a node other than the root is merged or refilled.
pub(super) fn fill_min(page_size: usize) -> usize {
    page_size / 4
}

/// If child `i` of `b` fell under the minimum fill, merges it with a sibling, or, if the
/// two do not fit one page, shares their cells evenly between them. Returns `b`'s split
/// if the separator that comes up overflows it.
fn rebalance(rd: &Reader<'_>, b: &mut Dirty, i: usize, cx: &mut Cx) -> Result<Split> {
    let under = match b.kid_ref(i) {
        Some(Slot::Dirty(d)) => d.bytes() < fill_min(cx.page_size),
        _ => false,
    };
    if !under || b.kid_count() < 2 {
        return Ok(None);
    }
    let l = if i + 1 < b.kid_count() { i } else { i - 1 };
    make_dirty(rd, b.kid_mut(rd, l)?, cx)?;
    make_dirty(rd, b.kid_mut(rd, l + 1)?, cx)?;
    let Slot::Dirty(mut right) = b.kids_mut(rd)?.remove(l + 1) else {
        unreachable!("made dirty just above")
    };
    let mut sep = std::mem::take(&mut cx.scratch_branch);
    sep.clear();
    sep.extend_from_slice(b.page.cell(l));
    b.page.remove(l);
    let Slot::Dirty(left) = &mut b.kids_mut(rd)?[l] else {
        unreachable!("made dirty just above")
    };
    let kind = left.page.kind();
    if kind != right.page.kind() {
        return Err(rd.generation.corrupted(
            0,
            "two sibling B-tree nodes lie at different levels (the tree is damaged)",
        ));
    }
    // The two nodes' children come together under one node: each names its own base.
    let mut kids = left.own_kids(rd)?;
    kids.extend(right.own_kids(rd)?);
    let (node, split) = {
        let mut cells: Vec<&[u8]> = left.page.cells().collect();
        if kind == page::BRANCH {
            cells.push(&sep);
        }
        cells.extend(right.page.cells());
        pack(kind, cx.page_size, &cells, kids, None)
    };
    **left = node;
    cx.scratch_branch = sep;
    match split {
        Some(split) => take_split(rd, b, l, split, cx),
        None => Ok(None),
    }
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
                rd.prefetch(&v);
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
                if *i + 1 < rd.kids(v) {
                    rd.prefetch_child(v, *i + 1);
                }
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
                if *i > 0 {
                    rd.prefetch_child(v, *i - 1);
                }
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
