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
use crate::{Result, Span};

/// A page held in memory until a checkpoint writes it: the children whose pointer in
/// `page` is [`MEM_CHILD`] are in `kids`, at the same index (0 = leftmost).
#[derive(Debug)]
pub(super) struct MemPage {
    pub page: PageBuf,
    pub kids: Kids,
}

/// Children in [`Kids`] chunk.
const KIDS_CHUNK: usize = 16;

/// The in-memory children of a page in memory, by child index, in chunks of
/// [`KIDS_CHUNK`] that a page shares with its copies: copying a branch of `n` children
/// costs `n / 16` reference counts, not `n`, and a commit that changes one child
/// builds one chunk anew and shares the others. Empty when every child is on disk.
#[derive(Clone, Debug, Default)]
pub(super) struct Kids {
    chunks: Vec<Arc<[Option<Arc<MemPage>>]>>,
}

impl Kids {
    /// The in-memory child at index `i`, if it is one.
    pub fn get(&self, i: usize) -> Option<&Arc<MemPage>> {
        self.chunks
            .get(i / KIDS_CHUNK)?
            .get(i % KIDS_CHUNK)?
            .as_ref()
    }

    /// Every in-memory child, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Arc<MemPage>)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter_map(move |(j, k)| k.as_ref().map(|k| (c * KIDS_CHUNK + j, k)))
        })
    }

    /// True if no child is in memory.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
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
    /// Child `j` of the in-memory page the holding node was copied from (its `base`),
    /// not yet touched: a reference held without counting it.
    Base(usize),
    Dirty(Box<Dirty>),
}

/// Children a [`Kids2::Patched`] list holds before it is made full.
const PATCHED_MAX: usize = 8;

/// A dirty branch's children.
#[derive(Debug)]
pub(super) enum Kids2 {
    /// As the page's child pointers and the base say, but for the children listed
    /// (by index): while no child was added, removed or moved, which is most commits'
    /// case, a copy costs nothing per child.
    Patched(Vec<(usize, Slot)>),
    /// Every child (one more than the cells).
    Full(Vec<Slot>),
}

/// A node a write transaction is changing, private to it: page bytes edited in place
/// ([`PageBuf`]) and, for a branch, its children as the transaction holds them (their
/// pointers in the bytes are written when the node is frozen).
#[derive(Debug)]
pub(super) struct Dirty {
    pub page: PageBuf,
    /// A branch's children; nothing for a leaf.
    kids: Kids2,
    /// The in-memory page this node was copied from, whose children its
    /// [`Slot::Base`] children and its unlisted [`Kids2::Patched`] children are.
    base: Option<Arc<MemPage>>,
}

/// An owned value.
pub(super) type OwnedVal = Val<Box<[u8]>>;

impl Dirty {
    pub fn empty_leaf(page_size: usize) -> Dirty {
        Dirty::new(
            PageBuf::from_cells(page::LEAF, page_size, []),
            Vec::new(),
            None,
        )
    }

    /// A node of `page` and every child, `kids`, which may name children of `base`.
    pub fn new(page: PageBuf, kids: Vec<Slot>, base: Option<Arc<MemPage>>) -> Dirty {
        Dirty {
            page,
            kids: Kids2::Full(kids),
            base,
        }
    }

    /// The base this node's children may name.
    pub fn base(&self) -> Option<&Arc<MemPage>> {
        self.base.as_ref()
    }

    fn base_kids(&self) -> &Kids {
        kids_of(&self.base)
    }

    /// Children of a branch.
    pub fn kid_count(&self) -> usize {
        self.page.len() + 1
    }

    /// Child `i` as the page and the base name it (for a child not listed).
    fn kid_from_page(&self, i: usize) -> std::result::Result<Slot, &'static str> {
        let at = self
            .page
            .page()
            .child(i)
            .map_err(|_| "a B-tree branch has no such child")?;
        if at != MEM_CHILD {
            Ok(Slot::Clean(NodeRef::Disk(at)))
        } else if self.base_kids().get(i).is_some() {
            Ok(Slot::Base(i))
        } else {
            Err("a B-tree page points to an in-memory child it does not have")
        }
    }

    /// Child `i` if the transaction holds it as a slot of its own: always in a full
    /// list; in a patched one, if listed.
    pub fn kid_ref(&self, i: usize) -> Option<&Slot> {
        match &self.kids {
            Kids2::Full(k) => k.get(i),
            Kids2::Patched(p) => p.iter().find(|(j, _)| *j == i).map(|(_, s)| s),
        }
    }

    /// Child `i` as a counted reference or a dirty node, so that it can be changed.
    pub fn kid_mut(&mut self, rd: &Reader<'_>, i: usize) -> Result<&mut Slot> {
        if let Kids2::Patched(p) = &self.kids
            && p.len() >= PATCHED_MAX
            && !p.iter().any(|(j, _)| *j == i)
        {
            // A long list costs more to search than a full one to build.
            self.kids_mut(rd)?;
        }
        if let Kids2::Patched(p) = &self.kids
            && !p.iter().any(|(j, _)| *j == i)
        {
            let slot = self.kid_from_page(i).map_err(|e| rd.damaged_mem(e))?;
            if let Kids2::Patched(p) = &mut self.kids {
                p.push((i, slot));
            }
        }
        let base = kids_of(&self.base);
        let slot = match &mut self.kids {
            Kids2::Full(k) => &mut k[i],
            Kids2::Patched(p) => {
                let at = p
                    .iter()
                    .position(|(j, _)| *j == i)
                    .expect("listed just above");
                &mut p[at].1
            }
        };
        if let Slot::Base(j) = *slot {
            let m = base.get(j).ok_or_else(|| {
                rd.damaged_mem("a B-tree node names a child its base does not have")
            })?;
            *slot = Slot::Clean(NodeRef::Mem(Arc::clone(m)));
        }
        Ok(slot)
    }

    /// Every child as a slot of its own, in a full list: before children are added,
    /// removed or moved (the page's child pointers then no longer say which is which).
    pub fn kids_mut(&mut self, rd: &Reader<'_>) -> Result<&mut Vec<Slot>> {
        if let Kids2::Patched(listed) = &mut self.kids {
            let mut listed = std::mem::take(listed);
            let mut all = Vec::with_capacity(self.kid_count() + 1);
            for i in 0..self.kid_count() {
                all.push(match listed.iter().position(|(j, _)| *j == i) {
                    Some(at) => listed.swap_remove(at).1,
                    None => self.kid_from_page(i).map_err(|e| rd.damaged_mem(e))?,
                });
            }
            self.kids = Kids2::Full(all);
        }
        match &mut self.kids {
            Kids2::Full(k) => Ok(k),
            Kids2::Patched(_) => unreachable!("made full just above"),
        }
    }

    /// Every child a counted reference (see [`kid_mut`](Self::kid_mut)), and the base
    /// let go: for children about to move to a node with another base.
    pub fn own_kids(&mut self, rd: &Reader<'_>) -> Result<Vec<Slot>> {
        if self.is_leaf() {
            return Ok(Vec::new());
        }
        self.kids_mut(rd)?;
        for i in 0..self.kid_count() {
            self.kid_mut(rd, i)?;
        }
        self.base = None;
        Ok(std::mem::take(self.kids_mut(rd)?))
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
        kids: &'t Kids,
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
                kids: &NO_KIDS,
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

    /// The view of a slot held outside any node (a tree's root).
    pub fn slot(&self, s: &'t Slot) -> Result<View<'t>> {
        self.kid(s, &NO_KIDS)
    }

    /// The view of a slot of a node whose base is `base`.
    fn kid(&self, s: &'t Slot, base: &'t Kids) -> Result<View<'t>> {
        match s {
            Slot::Clean(r) => self.node(r),
            Slot::Base(j) => match base.get(*j) {
                Some(m) => self.mem(m),
                None => Err(self.generation.corrupted(
                    MEM_CHILD,
                    "a B-tree node names a child its base does not have",
                )),
            },
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

    /// Damage found in a page in memory.
    pub fn damaged_mem(&self, what: &str) -> crate::Error {
        self.generation.corrupted(MEM_CHILD, what)
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

    /// Starts loading every cache line of a page on disk, so that a walk through its
    /// cells (which lie in the page in the order they were inserted, not in key order)
    /// overlaps their misses instead of taking them one after another. Nothing for a
    /// node in memory.
    pub fn prefetch(&self, v: &View<'t>) {
        if let View::Page { at, .. } = v {
            self.prefetch_at(*at);
        }
    }

    /// As [`prefetch`](Self::prefetch), for child `i` of branch `v`, before it is read: a
    /// walk in key order prefetches the next leaf while it reads the one before.
    pub fn prefetch_child(&self, v: &View<'t>, i: usize) {
        if let View::Page { page, .. } = v
            && let Ok(at) = page.child(i)
        {
            self.prefetch_at(at);
        }
    }

    fn prefetch_at(&self, at: u64) {
        const STEP: usize = 256;
        if at != MEM_CHILD {
            for within in (0..self.generation.page_size).step_by(STEP) {
                self.generation
                    .log
                    .prefetch(Span::new(at + within as u64, STEP as u64));
            }
        }
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
                        Some(m) => self.mem(m),
                        _ => Err(self.generation.corrupted(
                            *at,
                            "a B-tree page points to an in-memory child it does not have",
                        )),
                    }
                } else {
                    Ok(View::Page {
                        page: self.generation.page(child)?,
                        kids: &NO_KIDS,
                        at: child,
                    })
                }
            }
            View::Dirty(d) => match d.kid_ref(i) {
                Some(kid) => self.kid(kid, d.base_kids()),
                // Not listed: where the page and the base say.
                None if matches!(d.kids, Kids2::Patched(_)) => self.child(
                    &View::Page {
                        page: d.page.page(),
                        kids: d.base_kids(),
                        at: MEM_CHILD,
                    },
                    i,
                ),
                None => Err(self.damaged_mem("a B-tree node is read for a child it does not have")),
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
    let View::Page { page, at, .. } = rd.node(r)? else {
        unreachable!("a committed node is a page")
    };
    let (page, base, freed) = match r {
        // A page of this process's making: copied as it is.
        NodeRef::Mem(m) => (m.page.clone(), Some(Arc::clone(m)), 0),
        // Read from the log: repacked, every cell checked as it is copied.
        NodeRef::Disk(_) => (
            rd.check(at, PageBuf::copy_of(&page))?,
            None,
            super::records::footprint(rd.generation.page_size as u64),
        ),
    };
    Ok((
        Dirty {
            page,
            kids: Kids2::Patched(Vec::new()),
            base,
        },
        freed,
    ))
}

/// Encodes a dirty node (and its dirty descendants) into pages in memory; `made` counts
/// the pages.
pub(super) fn freeze(node: Dirty, made: &mut u64) -> NodeRef {
    *made += 1;
    let Dirty {
        mut page,
        kids,
        base,
    } = node;
    let base_kids = kids_of(&base);
    let kids = match kids {
        Kids2::Patched(listed) => freeze_patched(&mut page, listed, base_kids, made),
        Kids2::Full(all) => freeze_full(&mut page, all, base_kids, made),
    };
    NodeRef::Mem(Arc::new(MemPage { page, kids }))
}

/// A frozen child: its pointer, and the page if it is in memory.
fn freeze_kid(kid: Slot, base: &Kids, made: &mut u64) -> (u64, Option<Arc<MemPage>>) {
    match kid {
        Slot::Clean(NodeRef::Disk(at)) => (at, None),
        Slot::Clean(NodeRef::Mem(m)) => (MEM_CHILD, Some(m)),
        Slot::Base(j) => (MEM_CHILD, base.get(j).cloned()),
        Slot::Dirty(d) => match freeze(*d, made) {
            NodeRef::Disk(at) => (at, None),
            NodeRef::Mem(m) => (MEM_CHILD, Some(m)),
        },
    }
}

/// The children of a branch whose children are where they were in its base, but for
/// `listed`: the base's chunks are shared but for those a listed child falls in.
fn freeze_patched(
    page: &mut PageBuf,
    listed: Vec<(usize, Slot)>,
    base: &Kids,
    made: &mut u64,
) -> Kids {
    if listed.is_empty() {
        return base.clone();
    }
    let n = page.len() + 1;
    let mut frozen = Vec::with_capacity(listed.len());
    for (i, kid) in listed {
        let (at, m) = freeze_kid(kid, base, made);
        page.set_child(i, at);
        frozen.push((i, m));
    }
    let mut chunks = Vec::with_capacity(n.div_ceil(KIDS_CHUNK));
    let mut any = !base.is_empty();
    for c in 0..n.div_ceil(KIDS_CHUNK) {
        let range = c * KIDS_CHUNK..n.min((c + 1) * KIDS_CHUNK);
        if !frozen.iter().any(|(i, _)| range.contains(i))
            && let Some(b) = base.chunks.get(c).filter(|b| b.len() == range.len())
        {
            chunks.push(Arc::clone(b));
            continue;
        }
        let chunk: Vec<Option<Arc<MemPage>>> = range
            .map(|i| match frozen.iter().find(|(j, _)| *j == i) {
                Some((_, m)) => m.clone(),
                None => base.get(i).cloned(),
            })
            .collect();
        any |= chunk.iter().any(Option::is_some);
        chunks.push(Arc::from(chunk));
    }
    if !any {
        chunks.clear();
    }
    Kids { chunks }
}

/// The children of a branch from the full list of them: a chunk of the base whose
/// in-memory children all stand where they stood is shared.
fn freeze_full(page: &mut PageBuf, mut kids: Vec<Slot>, base: &Kids, made: &mut u64) -> Kids {
    let n = kids.len();
    let mut chunks = Vec::with_capacity(n.div_ceil(KIDS_CHUNK));
    let mut any = false;
    for c in 0..n.div_ceil(KIDS_CHUNK) {
        let range = c * KIDS_CHUNK..n.min((c + 1) * KIDS_CHUNK);
        // Children on disk are in the page, not in a chunk: any may stand where the
        // base had one on disk.
        let shared = base.chunks.get(c).filter(|b| {
            b.len() == range.len()
                && kids[range.clone()]
                    .iter()
                    .enumerate()
                    .all(|(j, k)| match k {
                        Slot::Base(at) => *at == range.start + j,
                        Slot::Clean(NodeRef::Disk(_)) => b[j].is_none(),
                        _ => false,
                    })
        });
        if let Some(b) = shared {
            for i in range {
                if let Slot::Clean(NodeRef::Disk(at)) = kids[i] {
                    page.set_child(i, at);
                } else {
                    page.set_child(i, MEM_CHILD);
                }
            }
            any |= b.iter().any(Option::is_some);
            chunks.push(Arc::clone(b));
            continue;
        }
        let mut chunk = Vec::with_capacity(range.len());
        for i in range {
            let kid = std::mem::replace(&mut kids[i], Slot::Clean(NodeRef::Disk(MEM_CHILD)));
            let (at, m) = freeze_kid(kid, base, made);
            page.set_child(i, at);
            any |= m.is_some();
            chunk.push(m);
        }
        chunks.push(Arc::from(chunk));
    }
    if !any {
        chunks.clear();
    }
    Kids { chunks }
}

/// The children of a page with none in memory.
static NO_KIDS: Kids = Kids { chunks: Vec::new() };

/// The in-memory children of `base`, if there is one (a free function, so that it
/// borrows only the base, not the node holding it).
fn kids_of(base: &Option<Arc<MemPage>>) -> &Kids {
    base.as_ref().map_or(&NO_KIDS, |m| &m.kids)
}
