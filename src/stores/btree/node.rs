//! The three forms a B-tree node takes, and one read-only view over all of them:
//!
//! - on disk: a page in the generation's log ([`NodeRef::Disk`], its offset);
//! - committed but not yet written: page bytes in memory ([`MemPage`]), shared by every
//!   snapshot that reaches it and immutable, with its in-memory children beside it;
//! - dirty: a decoded node ([`Dirty`]) that only the write transaction holding it can see,
//!   changed in place; a commit encodes it into a [`MemPage`].
//!
//! A write transaction copies a node on write (a `Disk` or `Mem` node it changes becomes
//! `Dirty`); nothing ever changes a page or a `MemPage`.

use std::sync::Arc;

use super::generation::Generation;
use super::page::{self, MEM_CHILD, Page, Val};
use crate::Result;

/// Page bytes held in memory until a checkpoint writes them: the children whose pointer
/// in `bytes` is [`MEM_CHILD`] are in `kids`, at the same index (0 = leftmost).
#[derive(Debug)]
pub(super) struct MemPage {
    pub bytes: Box<[u8]>,
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

/// A decoded node, private to one write transaction.
#[derive(Debug)]
pub(super) enum Dirty {
    Leaf(Leaf),
    Branch(Branch),
}

/// An owned value.
pub(super) type OwnedVal = Val<Box<[u8]>>;

#[derive(Debug, Default)]
pub(super) struct Leaf {
    pub entries: Vec<(Box<[u8]>, OwnedVal)>,
    /// Encoded size: header, offsets and cells.
    pub bytes: usize,
}

#[derive(Debug)]
pub(super) struct Branch {
    pub keys: Vec<Box<[u8]>>,
    pub kids: Vec<Slot>,
    pub bytes: usize,
}

impl Leaf {
    pub fn empty() -> Leaf {
        Leaf {
            entries: Vec::new(),
            bytes: page::HEADER_BYTES,
        }
    }

    pub fn recount(&mut self) {
        self.bytes = page::HEADER_BYTES
            + self
                .entries
                .iter()
                .map(|(k, v)| v.cell_bytes(k.len()))
                .sum::<usize>();
    }
}

impl Branch {
    pub fn recount(&mut self) {
        self.bytes = page::HEADER_BYTES
            + self
                .keys
                .iter()
                .map(|k| page::branch_cell_bytes(k.len()))
                .sum::<usize>();
    }
}

impl Dirty {
    pub fn bytes(&self) -> usize {
        match self {
            Dirty::Leaf(l) => l.bytes,
            Dirty::Branch(b) => b.bytes,
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
        let page = Page::new(&m.bytes).map_err(|d| self.generation.page_damage(MEM_CHILD, d))?;
        Ok(View::Page {
            page,
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

    pub fn is_leaf(&self, v: &View<'t>) -> bool {
        match v {
            View::Page { page, .. } => page.is_leaf(),
            View::Dirty(d) => matches!(d, Dirty::Leaf(_)),
        }
    }

    /// Cells: entries of a leaf, separators of a branch.
    pub fn len(&self, v: &View<'t>) -> usize {
        match v {
            View::Page { page, .. } => page.len(),
            View::Dirty(Dirty::Leaf(l)) => l.entries.len(),
            View::Dirty(Dirty::Branch(b)) => b.keys.len(),
        }
    }

    pub fn key(&self, v: &View<'t>, i: usize) -> Result<&'t [u8]> {
        match v {
            View::Page { page, at, .. } => self.check(*at, page.key(i)),
            View::Dirty(Dirty::Leaf(l)) => Ok(&l.entries[i].0[..]),
            View::Dirty(Dirty::Branch(b)) => Ok(&b.keys[i][..]),
        }
    }

    pub fn entry(&self, v: &View<'t>, i: usize) -> Result<(&'t [u8], Val<&'t [u8]>)> {
        match v {
            View::Page { page, at, .. } => self.check(*at, page.entry(i)),
            View::Dirty(Dirty::Leaf(l)) => {
                let (k, val) = &l.entries[i];
                Ok((
                    &k[..],
                    match val {
                        Val::Inline(b) => Val::Inline(&b[..]),
                        Val::Out(o, n) => Val::Out(*o, *n),
                    },
                ))
            }
            View::Dirty(Dirty::Branch(_)) => unreachable!("entries are read from leaves only"),
        }
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
            View::Dirty(Dirty::Branch(b)) => self.slot(&b.kids[i]),
            View::Dirty(Dirty::Leaf(_)) => unreachable!("children are read from branches only"),
        }
    }

    /// Leaf: index of `key` or where it would go.
    pub fn search(&self, v: &View<'t>, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        match v {
            View::Page { page, at, .. } => self.check(*at, page.search(key)),
            View::Dirty(Dirty::Leaf(l)) => Ok(l.entries.binary_search_by(|(k, _)| (**k).cmp(key))),
            View::Dirty(Dirty::Branch(b)) => Ok(b.keys.binary_search_by(|k| (**k).cmp(key))),
        }
    }

    /// Branch: the child that holds `key`.
    pub fn child_for(&self, v: &View<'t>, key: &[u8]) -> Result<usize> {
        if let View::Page { page, at, .. } = v {
            return self.check(*at, page.child_for(key));
        }
        Ok(match self.search(v, key)? {
            Ok(i) => i + 1,
            Err(i) => i,
        })
    }

    /// Children of a branch.
    pub fn kids(&self, v: &View<'t>) -> usize {
        self.len(v) + 1
    }
}

/// Decodes the committed node `r` into a dirty node (the copy of copy-on-write).
/// Returns it with the log bytes the copy frees once committed (a page on disk is no
/// longer reachable from this tree; a page in memory was never in the log).
pub(super) fn decode(rd: &Reader<'_>, r: &NodeRef) -> Result<(Dirty, u64)> {
    // A reader borrowing `r` only for this call.
    let rd = &Reader {
        generation: rd.generation,
    };
    let view = rd.node(r)?;
    let freed = match r {
        NodeRef::Disk(_) => super::records::footprint(rd.generation.page_size as u64),
        NodeRef::Mem(_) => 0,
    };
    let n = rd.len(&view);
    let dirty = if rd.is_leaf(&view) {
        let mut leaf = Leaf {
            entries: Vec::with_capacity(n + 1),
            bytes: 0,
        };
        for i in 0..n {
            let (k, v) = rd.entry(&view, i)?;
            leaf.entries.push((k.into(), own(v)));
        }
        leaf.recount();
        Dirty::Leaf(leaf)
    } else {
        let mut keys = Vec::with_capacity(n + 1);
        let mut kids = Vec::with_capacity(n + 2);
        let View::Page {
            page,
            kids: mem,
            at,
        } = view
        else {
            unreachable!("a committed node is a page")
        };
        for i in 0..=n {
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
            if i < n {
                keys.push(rd.check(at, page.key(i))?.into());
            }
        }
        let mut b = Branch {
            keys,
            kids,
            bytes: 0,
        };
        b.recount();
        Dirty::Branch(b)
    };
    Ok((dirty, freed))
}

/// Encodes a dirty node (and its dirty descendants) into pages in memory; `made` counts
/// the pages.
pub(super) fn freeze(node: Dirty, page_size: usize, made: &mut u64) -> NodeRef {
    *made += 1;
    let mut bytes = vec![0u8; page_size].into_boxed_slice();
    match node {
        Dirty::Leaf(l) => {
            page::encode_leaf(&mut bytes, l.entries.iter().map(|(k, v)| (k, v)));
            NodeRef::Mem(Arc::new(MemPage {
                bytes,
                kids: Box::new([]),
            }))
        }
        Dirty::Branch(b) => {
            let mut children = Vec::with_capacity(b.kids.len());
            let mut mem = Vec::with_capacity(b.kids.len());
            for kid in b.kids {
                let r = match kid {
                    Slot::Clean(r) => r,
                    Slot::Dirty(d) => freeze(*d, page_size, made),
                };
                match r {
                    NodeRef::Disk(at) => {
                        children.push(at);
                        mem.push(None);
                    }
                    NodeRef::Mem(m) => {
                        children.push(MEM_CHILD);
                        mem.push(Some(m));
                    }
                }
            }
            page::encode_branch(&mut bytes, &b.keys, &children);
            if mem.iter().all(Option::is_none) {
                mem.clear();
            }
            NodeRef::Mem(Arc::new(MemPage {
                bytes,
                kids: mem.into_boxed_slice(),
            }))
        }
    }
}
