//! The B-tree's page format: a page is one [`AppendOnly`](crate::AppendOnly) record of
//! exactly `page_size` bytes, written once and never changed. This file encodes a decoded
//! node into page bytes ([`encode_leaf`], [`encode_branch`]) and reads page bytes in
//! place ([`Page`]: binary search without decoding). It knows nothing of transactions,
//! of the log's other records, or of where a page lies.
//!
//! Every read of page bytes is bounds-checked: a damaged page is a [`Damage`], never a
//! panic and never an out-of-range slice.

use xxhash_rust::xxh3::xxh3_64_with_seed;

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

/// Page bytes read in place.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    bytes: &'a [u8],
}

impl<'a> Page<'a> {
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
            match self.key(mid)?.cmp(key) {
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
