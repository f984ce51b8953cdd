//! The B-tree's page format: a page is one [`AppendOnly`](crate::AppendOnly) record of
//! exactly `page_size` bytes, written once and never changed. This file encodes nodes
//! into page bytes ([`encode_leaf`], [`encode_branch`]), reads page bytes in place
//! ([`Page`]: binary search without decoding) and edits a copy in memory ([`PageBuf`]). It knows nothing of transactions,
//! of the log's other records, or of where a page lies.
//!
//! Every read of page bytes is bounds-checked: a damaged page is a [`Damage`], never a
//! panic and never an out-of-range slice.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::limits::BTREE_KEY_LEN_BYTES_MAX;

// Layout of a page of P bytes (little-endian throughout):
//
//   0   kind      u8   LEAF or BRANCH
//   1   reserved  u8   0
//   2   count     u16  cells
//   4   checksum  u32  low half of XXH3-64 over bytes 8..P, seeded with bytes 0..4
//   8   leftmost  u64  branch: the child for keys below the first cell's key; leaf: 0
//   16  offsets   count × u16, the cells' offsets in key order
//   ..  free
//   ..  cells, packed from the end of the page down
//
//   leaf cell:   key_len u16, flags u8, then
//                  INLINE:      value_len u16, key, value
//                  OUT_OF_LINE: key, value offset u64, value len u64 (a span of the log)
//   branch cell: key_len u16, child u64, key  (the child holds keys >= key)

/// First byte of a leaf page.
pub const LEAF: u8 = 1;
/// First byte of a branch page.
pub const BRANCH: u8 = 2;
const COUNT_AT: usize = 2;
const CHECKSUM_AT: usize = 4;
const LEFTMOST_AT: usize = 8;
/// Bytes before the cell offsets.
pub const HEADER_BYTES: usize = 16;
/// Bytes of one cell offset.
pub const SLOT_BYTES: usize = 2;
/// Leaf cell bytes before the key: key_len, flags, value_len (inline).
const LEAF_INLINE_HEAD: usize = 5;
/// Leaf cell bytes around the key when the value is out of line: key_len, flags, span.
const LEAF_OUT_HEAD: usize = 3;
const SPAN_BYTES: usize = 16;
/// Branch cell bytes before the key: key_len, child.
const BRANCH_HEAD: usize = 10;
const FLAG_INLINE: u8 = 0;
const FLAG_OUT_OF_LINE: u8 = 1;
/// The child pointer written for a child that lives only in memory (not yet on disk):
/// never a page offset, since no page starts at the last byte of the log's range.
pub const MEM_CHILD: u64 = u64::MAX;

/// A leaf's value: in the page, or a span of the log holding a value record's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val<B> {
    /// The value's bytes, in the leaf.
    Inline(B),
    /// A value stored out of line: `(offset, len)` of its bytes in the log.
    Out(u64, u64),
}

impl<B: AsRef<[u8]>> Val<B> {
    /// Bytes of the leaf cell that holds this value under a key of `key_len` bytes,
    /// its cell offset included.
    pub fn cell_bytes(&self, key_len: usize) -> usize {
        SLOT_BYTES
            + match self {
                Val::Inline(v) => LEAF_INLINE_HEAD + key_len + v.as_ref().len(),
                Val::Out(..) => LEAF_OUT_HEAD + key_len + SPAN_BYTES,
            }
    }
}

/// Bytes of a branch cell (its offset included) for a separator of `key_len` bytes.
pub fn branch_cell_bytes(key_len: usize) -> usize {
    SLOT_BYTES + BRANCH_HEAD + key_len
}

/// Largest leaf cell that stays inline in a page of `page_size` bytes: a quarter of the
/// page, so that any node that overflows can be split into two halves that each hold
/// over a quarter page.
pub fn cell_bytes_max(page_size: usize) -> usize {
    (page_size - HEADER_BYTES) / 4
}

/// What is wrong with a page, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset within the page.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

fn damage<T>(at: usize, what: &'static str) -> Result<T, Damage> {
    Err(Damage { at, what })
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Damage> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_le_bytes([s[0], s[1]])),
        None => damage(at, "field past the page's end"),
    }
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, Damage> {
    match b.get(at..at + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
        Some(s) => Ok(u64::from_le_bytes(s)),
        None => damage(at, "field past the page's end"),
    }
}

/// The checksum stored in a page's header: over its bytes past the checksum, seeded with
/// the header's first four (kind, reserved, count), so that it covers every byte but its
/// own.
pub fn checksum(bytes: &[u8]) -> u32 {
    let head = bytes
        .get(..CHECKSUM_AT)
        .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    xxh3_64_with_seed(bytes.get(LEFTMOST_AT..).unwrap_or(&[]), u64::from(head)) as u32
}

/// Byte-wise order of two keys, as `a.cmp(b)`, with the first eight bytes compared as
/// one big-endian word: most comparisons in a search end there, without a call to
/// `memcmp`.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

/// Page bytes read in place.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    bytes: &'a [u8],
}

impl<'a> Page<'a> {
    /// The page's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Checks the header (kind, count, the offsets' range) of `bytes`; the cells are
    /// checked as they are read. The checksum is checked apart ([`Page::checksum_holds`]),
    /// once per page (see the store's checked-page set).
    pub fn new(bytes: &'a [u8]) -> Result<Page<'a>, Damage> {
        if bytes.len() < HEADER_BYTES {
            return damage(0, "page shorter than its header");
        }
        if bytes[0] != LEAF && bytes[0] != BRANCH {
            return damage(0, "unknown page kind");
        }
        let page = Page { bytes };
        let count = usize::from(u16_at(bytes, COUNT_AT)?);
        if HEADER_BYTES + count * SLOT_BYTES > bytes.len() {
            return damage(COUNT_AT, "more cells than the page can hold");
        }
        Ok(page)
    }

    /// True if the stored checksum matches the bytes.
    pub fn checksum_holds(&self) -> bool {
        let stored = u32::from_le_bytes([
            self.bytes[CHECKSUM_AT],
            self.bytes[CHECKSUM_AT + 1],
            self.bytes[CHECKSUM_AT + 2],
            self.bytes[CHECKSUM_AT + 3],
        ]);
        stored == checksum(self.bytes)
    }

    /// True for a leaf.
    pub fn is_leaf(&self) -> bool {
        self.bytes[0] == LEAF
    }

    /// Cells in the page.
    pub fn len(&self) -> usize {
        usize::from(u16::from_le_bytes([
            self.bytes[COUNT_AT],
            self.bytes[COUNT_AT + 1],
        ]))
    }

    /// Bytes the page's content takes (header, offsets, cells): its fill.
    pub fn used_bytes(&self) -> Result<usize, Damage> {
        let mut used = HEADER_BYTES;
        for i in 0..self.len() {
            used += if self.is_leaf() {
                let (k, v) = self.entry(i)?;
                v.cell_bytes(k.len())
            } else {
                branch_cell_bytes(self.key(i)?.len())
            };
        }
        Ok(used)
    }

    fn cell(&self, i: usize) -> Result<usize, Damage> {
        let at = HEADER_BYTES + i * SLOT_BYTES;
        let cell = usize::from(u16_at(self.bytes, at)?);
        if cell < HEADER_BYTES + self.len() * SLOT_BYTES || cell >= self.bytes.len() {
            return damage(at, "cell offset outside the cell area");
        }
        Ok(cell)
    }

    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], Damage> {
        match self.bytes.get(at..at.saturating_add(len)) {
            Some(s) if at.checked_add(len).is_some() => Ok(s),
            _ => damage(at, "cell runs past the page's end"),
        }
    }

    /// The whole of cell `i`: its head, key, and value or child pointer, checked to lie
    /// inside the page.
    pub fn raw_cell(&self, i: usize) -> Result<&'a [u8], Damage> {
        let cell = self.cell(i)?;
        match cell_len(self.bytes[0], &self.bytes[cell..]) {
            Some(len) => self.slice(cell, len),
            None => damage(cell, "cell head cut short or of an unknown value flag"),
        }
    }

    /// Key of cell `i`.
    pub fn key(&self, i: usize) -> Result<&'a [u8], Damage> {
        let cell = self.cell(i)?;
        let key_len = usize::from(u16_at(self.bytes, cell)?);
        let head = if self.is_leaf() {
            match self.bytes.get(cell + 2) {
                Some(&FLAG_INLINE) => LEAF_INLINE_HEAD,
                Some(&FLAG_OUT_OF_LINE) => LEAF_OUT_HEAD,
                _ => return damage(cell + 2, "unknown value flag"),
            }
        } else {
            BRANCH_HEAD
        };
        self.slice(cell + head, key_len)
    }

    /// Key and value of leaf cell `i`.
    pub fn entry(&self, i: usize) -> Result<(&'a [u8], Val<&'a [u8]>), Damage> {
        let cell = self.cell(i)?;
        let key_len = usize::from(u16_at(self.bytes, cell)?);
        match self.bytes.get(cell + 2) {
            Some(&FLAG_INLINE) => {
                let value_len = usize::from(u16_at(self.bytes, cell + 3)?);
                let key = self.slice(cell + LEAF_INLINE_HEAD, key_len)?;
                let value = self.slice(cell + LEAF_INLINE_HEAD + key_len, value_len)?;
                Ok((key, Val::Inline(value)))
            }
            Some(&FLAG_OUT_OF_LINE) => {
                let key = self.slice(cell + LEAF_OUT_HEAD, key_len)?;
                let at = cell + LEAF_OUT_HEAD + key_len;
                Ok((
                    key,
                    Val::Out(u64_at(self.bytes, at)?, u64_at(self.bytes, at + 8)?),
                ))
            }
            _ => damage(cell + 2, "unknown value flag"),
        }
    }

    /// Child `i` of a branch: 0 is the leftmost, `i > 0` the child of cell `i - 1`.
    /// [`MEM_CHILD`] for a child that lives in memory.
    pub fn child(&self, i: usize) -> Result<u64, Damage> {
        if i == 0 {
            return u64_at(self.bytes, LEFTMOST_AT);
        }
        let cell = self.cell(i - 1)?;
        u64_at(self.bytes, cell + 2)
    }

    /// Leaf: the index of `key` (`Ok`) or where it would go (`Err`).
    pub fn search(&self, key: &[u8]) -> Result<Result<usize, usize>, Damage> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match compare(self.key(mid)?, key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Branch: the child that holds `key`: the number of separators `<= key`.
    pub fn child_for(&self, key: &[u8]) -> Result<usize, Damage> {
        Ok(match self.search(key)? {
            Ok(i) => i + 1,
            Err(i) => i,
        })
    }
}

/// Length of the cell of a page of `kind` that `cell` starts with, or `None` if its
/// head is cut short or names an unknown value flag. The length may run past `cell`:
/// the caller checks that.
pub fn cell_len(kind: u8, cell: &[u8]) -> Option<usize> {
    let key_len = usize::from(u16::from_le_bytes([*cell.first()?, *cell.get(1)?]));
    if kind != LEAF {
        return Some(BRANCH_HEAD + key_len);
    }
    match *cell.get(2)? {
        FLAG_INLINE => {
            let value_len = usize::from(u16::from_le_bytes([*cell.get(3)?, *cell.get(4)?]));
            Some(LEAF_INLINE_HEAD + key_len + value_len)
        }
        FLAG_OUT_OF_LINE => Some(LEAF_OUT_HEAD + key_len + SPAN_BYTES),
        _ => None,
    }
}

/// The key of a whole cell of a page of `kind` (a cell [`Page::raw_cell`] returned or
/// [`leaf_cell`] or [`branch_cell`] made).
///
/// # Panics
/// If `cell` is not a whole cell.
pub fn cell_key(kind: u8, cell: &[u8]) -> &[u8] {
    let key_len = usize::from(u16::from_le_bytes([cell[0], cell[1]]));
    let head = if kind != LEAF {
        BRANCH_HEAD
    } else if cell[2] == FLAG_INLINE {
        LEAF_INLINE_HEAD
    } else {
        LEAF_OUT_HEAD
    };
    &cell[head..head + key_len]
}

/// Writes the leaf cell of `key` and `value` into `out` (cleared first).
///
/// # Panics
/// If the key or an inline value is 64 KiB or longer (callers check the limits first).
pub fn leaf_cell<V: AsRef<[u8]>>(out: &mut Vec<u8>, key: &[u8], value: &Val<V>) {
    out.clear();
    out.extend_from_slice(&len16(key.len()));
    match value {
        Val::Inline(v) => {
            let v = v.as_ref();
            out.push(FLAG_INLINE);
            out.extend_from_slice(&len16(v.len()));
            out.extend_from_slice(key);
            out.extend_from_slice(v);
        }
        Val::Out(offset, len) => {
            out.push(FLAG_OUT_OF_LINE);
            out.extend_from_slice(key);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
}

/// Writes the branch cell of separator `key` into `out` (cleared first), with a child
/// pointer of [`MEM_CHILD`]: a node's children are set when it is sealed
/// ([`set_child`]).
pub fn branch_cell(out: &mut Vec<u8>, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&len16(key.len()));
    out.extend_from_slice(&MEM_CHILD.to_le_bytes());
    out.extend_from_slice(key);
}

/// Writes whole cells (in key order) into `page` (zeroed, `page_size` long) as a page of
/// `kind` whose header holds everything but the leftmost child and the checksum;
/// returns the offset of the lowest cell.
///
/// # Panics
/// If the cells do not fit the page: callers measure before they pack.
pub fn pack<'c>(page: &mut [u8], kind: u8, cells: impl IntoIterator<Item = &'c [u8]>) -> usize {
    let top = page.len();
    let mut w = Cells { page, top, n: 0 };
    for cell in cells {
        w.push(&[cell]);
    }
    let (n, top) = (w.n, w.top);
    page[0] = kind;
    let count = u16::try_from(n).expect("cells fit a page, so their count fits u16");
    page[COUNT_AT..COUNT_AT + 2].copy_from_slice(&count.to_le_bytes());
    top
}

/// A page in memory, in the page format itself: cells are inserted and removed in
/// place, so that a change to one key copies no other. The bytes are always a
/// well-formed page, every cell inside it, but for the checksum, which
/// [`PageBuf::to_log`] writes; a branch's child pointers are set by its owner.
/// Removed cells leave holes until the page is repacked: when an insert needs the room,
/// or on the page's way to the log.
#[derive(Clone, Debug)]
pub struct PageBuf {
    bytes: Box<[u8]>,
    /// Header, offsets and cells: the fill.
    used: usize,
    /// Offset of the lowest cell; below it, down to the offsets, the page is free.
    top: usize,
}

impl PageBuf {
    /// A page of `kind` holding `cells` (whole cells, in key order).
    ///
    /// # Panics
    /// If the cells do not fit `page_size`.
    pub fn from_cells<'c>(
        kind: u8,
        page_size: usize,
        cells: impl IntoIterator<Item = &'c [u8]>,
    ) -> PageBuf {
        let mut bytes = vec![0u8; page_size].into_boxed_slice();
        let top = pack(&mut bytes, kind, cells);
        let mut p = PageBuf {
            bytes,
            used: 0,
            top,
        };
        p.used = HEADER_BYTES + p.len() * SLOT_BYTES + (page_size - top);
        p
    }

    /// An editable copy of `page` (its header, leftmost child and cells), its cells
    /// packed anew: every cell is checked to lie inside the page as it is copied, so the
    /// copy is well-formed whatever the page was.
    pub fn copy_of(page: &Page<'_>) -> Result<PageBuf, Damage> {
        let size = page.bytes.len();
        let mut bytes = vec![0u8; size].into_boxed_slice();
        let n = page.len();
        let mut w = Cells {
            page: &mut bytes,
            top: size,
            n: 0,
        };
        for i in 0..n {
            let cell = page.raw_cell(i)?;
            if w.top < cell.len() || w.top - cell.len() < HEADER_BYTES + n * SLOT_BYTES {
                return damage(HEADER_BYTES + i * SLOT_BYTES, "cells overfill the page");
            }
            // The edits (tree.rs) rely on the limits the writer keeps: a key of at most
            // BTREE_KEY_LEN_BYTES_MAX bytes, an inline leaf cell of at most a quarter
            // page; a cell over them could make a node no split can fit (found by
            // review: a 4069-byte key came up as a separator and panicked the write).
            let key_len = usize::from(u16::from_le_bytes([cell[0], cell[1]]));
            if key_len > BTREE_KEY_LEN_BYTES_MAX {
                return damage(page.cell(i)?, "a key over the key limit");
            }
            if page.is_leaf()
                && cell[2] == FLAG_INLINE
                && cell.len() + SLOT_BYTES > cell_bytes_max(size)
            {
                return damage(page.cell(i)?, "an inline cell over a page's share");
            }
            w.push(&[cell]);
        }
        let top = w.top;
        bytes[0] = page.bytes[0];
        bytes[COUNT_AT..COUNT_AT + 2].copy_from_slice(&page.bytes[COUNT_AT..COUNT_AT + 2]);
        bytes[LEFTMOST_AT..LEFTMOST_AT + 8]
            .copy_from_slice(&page.bytes[LEFTMOST_AT..LEFTMOST_AT + 8]);
        Ok(PageBuf {
            bytes,
            used: HEADER_BYTES + n * SLOT_BYTES + (size - top),
            top,
        })
    }

    /// The bytes read as a page.
    pub fn page(&self) -> Page<'_> {
        Page { bytes: &self.bytes }
    }

    /// LEAF or BRANCH.
    pub fn kind(&self) -> u8 {
        self.bytes[0]
    }

    /// Cells.
    pub fn len(&self) -> usize {
        usize::from(u16::from_le_bytes([
            self.bytes[COUNT_AT],
            self.bytes[COUNT_AT + 1],
        ]))
    }

    fn set_len(&mut self, n: usize) {
        let n = u16::try_from(n).expect("cells fit a page, so their count fits u16");
        self.bytes[COUNT_AT..COUNT_AT + 2].copy_from_slice(&n.to_le_bytes());
    }

    /// Header, offsets and cells: the bytes a page of these cells fills.
    pub fn used(&self) -> usize {
        self.used
    }

    fn offset(&self, i: usize) -> usize {
        let at = HEADER_BYTES + i * SLOT_BYTES;
        usize::from(u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]))
    }

    /// Whole cell `i`.
    pub fn cell(&self, i: usize) -> &[u8] {
        let at = self.offset(i);
        let len = cell_len(self.kind(), &self.bytes[at..]).expect("an edited page is well-formed");
        &self.bytes[at..at + len]
    }

    /// Key of cell `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        cell_key(self.kind(), self.cell(i))
    }

    /// Every cell, in order.
    pub fn cells(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.cell(i))
    }

    /// The index of `key` (`Ok`) or where it would go (`Err`).
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match compare(self.key(mid), key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// True if a cell of `len` bytes more would fit.
    pub fn fits(&self, len: usize) -> bool {
        self.used + len + SLOT_BYTES <= self.bytes.len()
    }

    /// Repacks the cells so that the free bytes are all in one run.
    fn defragment(&mut self) {
        let fresh = PageBuf::from_cells(self.kind(), self.bytes.len(), self.cells());
        let leftmost = self.bytes[LEFTMOST_AT..LEFTMOST_AT + 8].to_vec();
        *self = fresh;
        self.bytes[LEFTMOST_AT..LEFTMOST_AT + 8].copy_from_slice(&leftmost);
    }

    /// Puts `cell` in place `i`, moving cells `i..` one place up.
    ///
    /// # Panics
    /// If it does not [fit](Self::fits).
    pub fn insert(&mut self, i: usize, cell: &[u8]) {
        assert!(
            self.fits(cell.len()),
            "a cell is inserted only where it fits"
        );
        let n = self.len();
        if self.top < HEADER_BYTES + (n + 1) * SLOT_BYTES + cell.len() {
            self.defragment();
        }
        self.top -= cell.len();
        let top = self.top;
        self.bytes[top..top + cell.len()].copy_from_slice(cell);
        let at = HEADER_BYTES + i * SLOT_BYTES;
        self.bytes
            .copy_within(at..HEADER_BYTES + n * SLOT_BYTES, at + SLOT_BYTES);
        let top16 = u16::try_from(top).expect("page sizes are at most 64 KiB");
        self.bytes[at..at + SLOT_BYTES].copy_from_slice(&top16.to_le_bytes());
        self.set_len(n + 1);
        self.used += cell.len() + SLOT_BYTES;
    }

    /// Takes cell `i` out, moving cells `i + 1..` one place down. Its bytes stay in the
    /// page, unreferenced, until the page is repacked.
    pub fn remove(&mut self, i: usize) {
        let n = self.len();
        let len = self.cell(i).len();
        let slot = HEADER_BYTES + i * SLOT_BYTES;
        self.bytes
            .copy_within(slot + SLOT_BYTES..HEADER_BYTES + n * SLOT_BYTES, slot);
        self.set_len(n - 1);
        self.used -= len + SLOT_BYTES;
    }

    /// Replaces cell `i` by `cell` if it fits; returns false (and changes nothing) if not.
    pub fn replace(&mut self, i: usize, cell: &[u8]) -> bool {
        let len = self.cell(i).len();
        if self.used - len + cell.len() > self.bytes.len() {
            return false;
        }
        self.remove(i);
        self.insert(i, cell);
        true
    }

    /// Points child `i` of a branch at `at` (0 is the leftmost, `i > 0` the child of
    /// cell `i - 1`).
    pub fn set_child(&mut self, i: usize, at: u64) {
        let field = if i == 0 {
            LEFTMOST_AT
        } else {
            self.offset(i - 1) + 2
        };
        self.bytes[field..field + 8].copy_from_slice(&at.to_le_bytes());
    }

    /// The page as it goes to the log: a copy, repacked if removals left holes (so that
    /// no removed bytes reach the log), and checksummed. The caller may still point
    /// children at their pages, and then [`reseal`]s.
    pub fn to_log(&self) -> Box<[u8]> {
        let cells = self.used - HEADER_BYTES - self.len() * SLOT_BYTES;
        let mut bytes = if self.top == self.bytes.len() - cells {
            self.bytes.clone()
        } else {
            let mut fresh = PageBuf::from_cells(self.kind(), self.bytes.len(), self.cells());
            fresh.bytes[LEFTMOST_AT..LEFTMOST_AT + 8]
                .copy_from_slice(&self.bytes[LEFTMOST_AT..LEFTMOST_AT + 8]);
            fresh.bytes
        };
        reseal(&mut bytes);
        bytes
    }
}

/// Writes the header and checksum of a page whose cells are in place.
fn finish(page: &mut [u8], kind: u8, count: usize, leftmost: u64) {
    page[0] = kind;
    page[1] = 0;
    let count = u16::try_from(count).expect("cells fit a page, so their count fits u16");
    page[COUNT_AT..COUNT_AT + 2].copy_from_slice(&count.to_le_bytes());
    page[LEFTMOST_AT..LEFTMOST_AT + 8].copy_from_slice(&leftmost.to_le_bytes());
    let sum = checksum(page);
    page[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
}

/// Points child `i` of the branch page `page` at `at` (the page's checksum must then be
/// recomputed with [`reseal`]).
pub fn set_child(page: &mut [u8], i: usize, at: u64) -> Result<(), Damage> {
    let field = if i == 0 {
        LEFTMOST_AT
    } else {
        Page::new(page)?.cell(i - 1)? + 2
    };
    match page.get_mut(field..field + 8) {
        Some(f) => {
            f.copy_from_slice(&at.to_le_bytes());
            Ok(())
        }
        None => damage(field, "child pointer past the page's end"),
    }
}

/// Recomputes the checksum of a page whose bytes were changed.
pub fn reseal(page: &mut [u8]) {
    let sum = checksum(page);
    page[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
}

/// Cell writer: cells go down from the page's end, their offsets up from the header.
struct Cells<'p> {
    page: &'p mut [u8],
    top: usize,
    n: usize,
}

impl Cells<'_> {
    fn push(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.top -= len;
        assert!(
            self.top >= HEADER_BYTES + (self.n + 1) * SLOT_BYTES,
            "a node is encoded only once it fits its page"
        );
        let mut at = self.top;
        for part in parts {
            self.page[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let offset = u16::try_from(self.top).expect("page sizes are at most 64 KiB");
        let slot = HEADER_BYTES + self.n * SLOT_BYTES;
        self.page[slot..slot + 2].copy_from_slice(&offset.to_le_bytes());
        self.n += 1;
    }
}

fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n)
        .expect("keys and inline values are shorter than a page")
        .to_le_bytes()
}

/// Encodes a leaf of `entries` (in key order) into `page` (zeroed, `page_size` long).
///
/// # Panics
/// If the entries do not fit the page: callers split before they encode.
pub fn encode_leaf<'e, K, V>(page: &mut [u8], entries: impl Iterator<Item = (K, &'e Val<V>)>)
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]> + 'e,
{
    let top = page.len();
    let mut cells = Cells { page, top, n: 0 };
    for (key, value) in entries {
        let key = key.as_ref();
        match value {
            Val::Inline(v) => {
                let v = v.as_ref();
                cells.push(&[&len16(key.len()), &[FLAG_INLINE], &len16(v.len()), key, v]);
            }
            Val::Out(offset, len) => cells.push(&[
                &len16(key.len()),
                &[FLAG_OUT_OF_LINE],
                key,
                &offset.to_le_bytes(),
                &len.to_le_bytes(),
            ]),
        }
    }
    let n = cells.n;
    finish(page, LEAF, n, 0);
}

/// Encodes a branch: `children[0]` is the leftmost child, `children[i + 1]` the child of
/// separator `keys[i]`.
///
/// # Panics
/// If the cells do not fit the page, or `children` is not one longer than `keys`.
pub fn encode_branch<K: AsRef<[u8]>>(page: &mut [u8], keys: &[K], children: &[u64]) {
    assert_eq!(
        children.len(),
        keys.len() + 1,
        "a branch has one child more than keys"
    );
    let top = page.len();
    let mut cells = Cells { page, top, n: 0 };
    for (key, child) in keys.iter().zip(&children[1..]) {
        let key = key.as_ref();
        cells.push(&[&len16(key.len()), &child.to_le_bytes(), key]);
    }
    let n = cells.n;
    finish(page, BRANCH, n, children[0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_reads_back_what_was_encoded() {
        let mut page = vec![0u8; 4096];
        let entries: Vec<(Vec<u8>, Val<Vec<u8>>)> = vec![
            (b"a".to_vec(), Val::Inline(b"one".to_vec())),
            (b"b".to_vec(), Val::Out(4096, 70_000)),
            (Vec::new(), Val::Inline(Vec::new())),
        ];
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        encode_leaf(&mut page, sorted.iter().map(|(k, v)| (k, v)));
        let p = Page::new(&page).unwrap();
        assert!(p.is_leaf() && p.checksum_holds());
        assert_eq!(p.len(), 3);
        assert_eq!(p.entry(0).unwrap(), (&b""[..], Val::Inline(&b""[..])));
        assert_eq!(p.entry(2).unwrap(), (&b"b"[..], Val::Out(4096, 70_000)));
        assert_eq!(p.search(b"a").unwrap(), Ok(1));
        assert_eq!(p.search(b"ab").unwrap(), Err(2));
        let used: usize = HEADER_BYTES
            + sorted
                .iter()
                .map(|(k, v)| v.cell_bytes(k.len()))
                .sum::<usize>();
        assert_eq!(p.used_bytes().unwrap(), used);
        page[100] ^= 1;
        assert!(!Page::new(&page).unwrap().checksum_holds());
    }

    #[test]
    fn a_branch_routes_keys_to_children() {
        let mut page = vec![0u8; 4096];
        encode_branch(&mut page, &[b"m".to_vec(), b"t".to_vec()], &[10, 20, 30]);
        let p = Page::new(&page).unwrap();
        assert!(!p.is_leaf());
        assert_eq!(p.child_for(b"a").unwrap(), 0);
        assert_eq!(p.child_for(b"m").unwrap(), 1);
        assert_eq!(p.child_for(b"s").unwrap(), 1);
        assert_eq!(p.child_for(b"z").unwrap(), 2);
        assert_eq!(
            (0..3).map(|i| p.child(i).unwrap()).collect::<Vec<_>>(),
            [10, 20, 30]
        );
    }

    proptest::proptest! {
        /// A page edited in place reads like a model of its cells after every insert,
        /// removal and replacement, packed or full of holes, and goes to the log as a
        /// page that reads the same and whose checksum holds.
        #[test]
        fn an_edited_page_reads_like_its_model(
            ops in proptest::collection::vec((0u8..3, 0usize..64, 0usize..4, 0usize..300), 1..400)
        ) {
            let size = 4096;
            let mut buf = PageBuf::from_cells(LEAF, size, []);
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut cell = Vec::new();
            for (what, at, key_len, value_len) in ops {
                let key: Vec<u8> = (0..key_len).map(|j| (at + j) as u8).collect();
                let value = vec![value_len as u8; value_len];
                leaf_cell(&mut cell, &key, &Val::Inline(&value[..]));
                match what {
                    0 if buf.fits(cell.len()) => {
                        let i = at.min(model.len());
                        buf.insert(i, &cell);
                        model.insert(i, cell.clone());
                    }
                    1 if !model.is_empty() => {
                        let i = at % model.len();
                        buf.remove(i);
                        model.remove(i);
                    }
                    2 if !model.is_empty() => {
                        let i = at % model.len();
                        if buf.replace(i, &cell) {
                            model[i] = cell.clone();
                        }
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(buf.len(), model.len());
                let cells: Vec<&[u8]> = buf.cells().collect();
                proptest::prop_assert_eq!(&cells, &model.iter().map(|c| &c[..]).collect::<Vec<_>>());
                let used = HEADER_BYTES + model.iter().map(|c| c.len() + SLOT_BYTES).sum::<usize>();
                proptest::prop_assert_eq!(buf.used(), used);
                proptest::prop_assert!(used <= size);
            }
            let bytes = buf.to_log();
            let page = Page::new(&bytes).unwrap();
            proptest::prop_assert!(page.checksum_holds());
            proptest::prop_assert_eq!(page.used_bytes().unwrap(), buf.used());
            for (i, c) in model.iter().enumerate() {
                proptest::prop_assert_eq!(page.raw_cell(i).unwrap(), &c[..]);
            }
            let copy = PageBuf::copy_of(&page).unwrap();
            proptest::prop_assert_eq!(copy.cells().collect::<Vec<_>>(), buf.cells().collect::<Vec<_>>());
        }
    }

    #[test]
    fn compare_orders_keys_as_bytes_do() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"abcdefghz",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x00",
            b"b",
            b"\x00\x00\x00\x00\x00\x00\x00\x01",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare(a, b), a.cmp(b), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn damaged_pages_are_errors_not_panics() {
        let mut page = vec![0u8; 4096];
        encode_leaf(
            &mut page,
            [(b"key".to_vec(), Val::Inline(b"value".to_vec()))]
                .iter()
                .map(|(k, v)| (k, v)),
        );
        // Every byte, every bit: reading every cell either works or is a Damage.
        for at in 0..64.min(page.len()) {
            for bit in 0..8 {
                let mut bad = page.clone();
                bad[at] ^= 1 << bit;
                if let Ok(p) = Page::new(&bad) {
                    for i in 0..p.len() {
                        let _ = p.key(i);
                        let _ = p.entry(i);
                        let _ = p.child(i);
                    }
                    let _ = p.search(b"key");
                    let _ = p.used_bytes();
                }
            }
        }
        for at in 4000..4096 {
            let mut bad = page.clone();
            bad[at] = 0xFF;
            if let Ok(p) = Page::new(&bad) {
                let _ = p.entry(0);
            }
        }
    }
}
