//! The three forms a B-tree node takes, and one read-only view over all of them:
//!
//! - on disk: a page in the generation's log ([`NodeRef::Disk`], its offset);
//! - committed but not yet written: a page in memory ([`MemPage`]), shared by every
//!   snapshot that reaches it and immutable, with its in-memory children beside it;
//! - dirty: a copy of a page ([`Dirty`]) that only the write transaction holding it can
//!   see, changed in place; a commit freezes it into a [`MemPage`].
//!
//! A write transaction copies a node on write (a `Disk` or `Mem` node it changes becomes
//! `Dirty`); nothing ever changes a page or a `MemPage`.

use std::sync::Arc;

use super::generation::Generation;
use super::page::{self, MEM_CHILD, Page, PageBuf, Val};
use crate::Result;

/// A page held in memory until a checkpoint writes it: the children whose pointer in
/// `page` is [`MEM_CHILD`] are in `kids`, at the same index (0 = leftmost).
#[derive(Debug)]
pub(super) struct MemPage {
    pub page: PageBuf,
    pub kids: Box<[Option<Arc<MemPage>>]>,
}

/// A committed node: on disk, or in memory.
#[derive(Clone, Debug)]
pub(super) enum NodeRef {
    Disk(u64),
    Mem(Arc<MemPage>),
}

/// A node as a write transaction holds it.
#[derive(Debug)]
pub(super) enum Slot {
    Clean(NodeRef),
    Dirty(Box<Dirty>),
}

/// A node a write transaction is changing, private to it: page bytes edited in place
/// ([`PageBuf`]) and, for a branch, its children as the transaction holds them (their
/// pointers in the bytes are written when the node is frozen).
#[derive(Debug)]
pub(super) struct Dirty {
    pub page: PageBuf,
    /// A branch's children (one more than its cells); empty for a leaf.
    pub kids: Vec<Slot>,
}

/// An owned value.
pub(super) type OwnedVal = Val<Box<[u8]>>;

impl Dirty {
    pub fn empty_leaf(page_size: usize) -> Dirty {
        Dirty {
            page: PageBuf::from_cells(page::LEAF, page_size, []),
            kids: Vec::new(),
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.page.kind() == page::LEAF
    }

    /// The bytes a page of this node fills.
    pub fn bytes(&self) -> usize {
        self.page.used()
    }

    /// Branch: the child that holds `key`: the number of separators `<= key`.
    pub fn child_for(&self, key: &[u8]) -> usize {
        match self.page.search(key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Owned copy of a borrowed value.
pub(super) fn own(v: Val<&[u8]>) -> OwnedVal {
    match v {
        Val::Inline(b) => Val::Inline(b.into()),
        Val::Out(o, l) => Val::Out(o, l),
    }
}

/// A node read in place: page bytes (on disk or in memory) or a dirty node.
#[derive(Clone, Copy, Debug)]
pub(super) enum View<'t> {
    Page {
        page: Page<'t>,
        /// In-memory children of a `MemPage`; empty for a page on disk.
        kids: &'t [Option<Arc<MemPage>>],
        /// Log offset of a page on disk (for error messages); `MEM_CHILD` in memory.
        at: u64,
    },
    Dirty(&'t Dirty),
}

/// Reads nodes of one generation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reader<'t> {
    pub generation: &'t Generation,
}

impl<'t> Reader<'t> {
    pub fn node(&self, r: &'t NodeRef) -> Result<View<'t>> {
        match r {
            NodeRef::Disk(at) => Ok(View::Page {
                page: self.generation.page(*at)?,
                kids: &[],
                at: *at,
            }),
            NodeRef::Mem(m) => self.mem(m),
        }
    }

    pub fn mem(&self, m: &'t MemPage) -> Result<View<'t>> {
        Ok(View::Page {
            page: m.page.page(),
            kids: &m.kids,
            at: MEM_CHILD,
        })
    }

    pub fn slot(&self, s: &'t Slot) -> Result<View<'t>> {
        match s {
            Slot::Clean(r) => self.node(r),
            Slot::Dirty(d) => Ok(View::Dirty(d)),
        }
    }

    /// The bytes of a value found in a leaf.
    pub fn value(&self, v: Val<&'t [u8]>) -> Result<&'t [u8]> {
        match v {
            Val::Inline(b) => Ok(b),
            Val::Out(offset, len) => self.generation.value(offset, len),
        }
    }

    /// Checks a view's result, naming the page on damage.
    fn check<T>(&self, at: u64, r: std::result::Result<T, page::Damage>) -> Result<T> {
        r.map_err(|d| self.generation.page_damage(at, d))
    }

    /// The page bytes of a view, and the log offset to name if they are damaged.
    fn page_of(v: &View<'t>) -> (Page<'t>, u64) {
        match v {
            View::Page { page, at, .. } => (*page, *at),
            View::Dirty(d) => (d.page.page(), MEM_CHILD),
        }
    }

    pub fn is_leaf(&self, v: &View<'t>) -> bool {
        Self::page_of(v).0.is_leaf()
    }

    /// Cells: entries of a leaf, separators of a branch.
    pub fn len(&self, v: &View<'t>) -> usize {
        Self::page_of(v).0.len()
    }

    pub fn key(&self, v: &View<'t>, i: usize) -> Result<&'t [u8]> {
        let (page, at) = Self::page_of(v);
        self.check(at, page.key(i))
    }

    pub fn entry(&self, v: &View<'t>, i: usize) -> Result<(&'t [u8], Val<&'t [u8]>)> {
        let (page, at) = Self::page_of(v);
        self.check(at, page.entry(i))
    }

    pub fn child(&self, v: &View<'t>, i: usize) -> Result<View<'t>> {
        match v {
            View::Page { page, kids, at } => {
                let child = self.check(*at, page.child(i))?;
                if child == MEM_CHILD {
                    match kids.get(i) {
                        Some(Some(m)) => self.mem(m),
                        _ => Err(self.generation.corrupted(
                            *at,
                            "a B-tree page points to an in-memory child it does not have",
                        )),
                    }
                } else {
                    Ok(View::Page {
                        page: self.generation.page(child)?,
                        kids: &[],
                        at: child,
                    })
                }
            }
            View::Dirty(d) => match d.kids.get(i) {
                Some(kid) => self.slot(kid),
                None => Err(self.generation.corrupted(
                    MEM_CHILD,
                    "a B-tree node is read for a child it does not have",
                )),
            },
        }
    }

    /// Leaf: index of `key` or where it would go.
    pub fn search(&self, v: &View<'t>, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let (page, at) = Self::page_of(v);
        self.check(at, page.search(key))
    }

    /// Branch: the child that holds `key`.
    pub fn child_for(&self, v: &View<'t>, key: &[u8]) -> Result<usize> {
        let (page, at) = Self::page_of(v);
        self.check(at, page.child_for(key))
    }

    /// Children of a branch.
    pub fn kids(&self, v: &View<'t>) -> usize {
        self.len(v) + 1
    }
}

/// Copies the committed node `r` into a dirty node (the copy of copy-on-write).
/// Returns it with the log bytes the copy frees once committed (a page on disk is no
/// longer reachable from this tree; a page in memory was never in the log).
pub(super) fn copy(rd: &Reader<'_>, r: &NodeRef) -> Result<(Dirty, u64)> {
    // A reader borrowing `r` only for this call.
    let rd = &Reader {
        generation: rd.generation,
    };
    let View::Page {
        page,
        kids: mem,
        at,
    } = rd.node(r)?
    else {
        unreachable!("a committed node is a page")
    };
    let (copy, freed) = match r {
        // A page of this process's making: copied as it is.
        NodeRef::Mem(m) => (m.page.clone(), 0),
        // Read from the log: repacked, every cell checked as it is copied.
        NodeRef::Disk(_) => (
            rd.check(at, PageBuf::copy_of(&page))?,
            super::records::footprint(rd.generation.page_size as u64),
        ),
    };
    let mut kids = Vec::new();
    if !page.is_leaf() {
        kids.reserve(page.len() + 2);
        for i in 0..=page.len() {
            let child = rd.check(at, page.child(i))?;
            kids.push(Slot::Clean(if child == MEM_CHILD {
                match mem.get(i) {
                    Some(Some(m)) => NodeRef::Mem(Arc::clone(m)),
                    _ => {
                        return Err(rd.generation.corrupted(
                            at,
                            "a B-tree page points to an in-memory child it does not have",
                        ));
                    }
                }
            } else {
                NodeRef::Disk(child)
            }));
        }
    }
    Ok((Dirty { page: copy, kids }, freed))
}

/// Encodes a dirty node (and its dirty descendants) into pages in memory; `made` counts
/// the pages.
pub(super) fn freeze(node: Dirty, made: &mut u64) -> NodeRef {
    *made += 1;
    let Dirty { mut page, kids } = node;
    let mut mem = Vec::with_capacity(kids.len());
    for (i, kid) in kids.into_iter().enumerate() {
        let r = match kid {
            Slot::Clean(r) => r,
            Slot::Dirty(d) => freeze(*d, made),
        };
        match r {
            NodeRef::Disk(at) => {
                page.set_child(i, at);
                mem.push(None);
            }
            NodeRef::Mem(m) => {
                page.set_child(i, MEM_CHILD);
                mem.push(Some(m));
            }
        }
    }
    if mem.iter().all(Option::is_none) {
        mem.clear();
    }
    NodeRef::Mem(Arc::new(MemPage {
        page,
        kids: mem.into_boxed_slice(),
    }))
}
