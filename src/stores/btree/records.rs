//! The B-tree log's records other than pages: out-of-line values, the operations of a
//! transaction (its commit record), and checkpoints. Encoding and decoding only;
//! what the store does with them is in `store.rs` and `recovery.rs`.
//!
//! Every such record starts with the same 16 bytes: kind (u8), seven zero bytes, and an
//! XXH3-64 checksum of the bytes after them, seeded with the kind. A page record starts with its own kind byte
//! (`page::LEAF`, `page::BRANCH`), so the first byte tells every record apart.

use std::ops::Bound;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::page::Val;

/// An out-of-line value: head, then the value's bytes.
pub const KIND_VALUE: u8 = 3;
/// A transaction: head, its commit sequence (u64), a reserved u64 (0), its operations.
pub const KIND_COMMIT: u8 = 5;
/// Every tree's root page as of a commit sequence: see [`Checkpoint`].
pub const KIND_CHECKPOINT: u8 = 6;
/// Bytes of the head every non-page record starts with.
pub const HEAD_BYTES: usize = 16;
/// Bytes before an out-of-line value's first byte.
pub const VALUE_HEAD_BYTES: usize = HEAD_BYTES;
/// Bytes before a commit record's operations.
pub const COMMIT_HEAD_BYTES: usize = HEAD_BYTES + 16;

const OP_TREE: u8 = 1;
const OP_PUT: u8 = 2;
const OP_REMOVE: u8 = 3;
const OP_REMOVE_RANGE: u8 = 4;
const OP_CREATE: u8 = 5;
const OP_DELETE: u8 = 6;
const PUT_INLINE: u8 = 0;
const PUT_OUT: u8 = 1;
const BOUND_UNBOUNDED: u8 = 0;
const BOUND_INCLUDED: u8 = 1;
const BOUND_EXCLUDED: u8 = 2;

/// A new record of `kind` with room for its head.
pub fn begin(kind: u8, capacity: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(capacity.max(HEAD_BYTES));
    r.push(kind);
    r.resize(HEAD_BYTES, 0);
    r
}

/// The checksum of a record: over its bytes past the head, seeded with its kind.
pub fn checksum(kind: u8, body: &[u8]) -> u64 {
    xxh3_64_with_seed(body, u64::from(kind))
}

/// Writes the checksum of a record built with [`begin`].
pub fn seal(record: &mut [u8]) {
    let sum = checksum(record[0], &record[HEAD_BYTES..]);
    record[8..HEAD_BYTES].copy_from_slice(&sum.to_le_bytes());
}

/// The kind of a non-page record whose head and checksum hold.
pub fn check(record: &[u8]) -> Result<u8, &'static str> {
    if record.len() < HEAD_BYTES {
        return Err("record shorter than its head");
    }
    if record[1..8].iter().any(|b| *b != 0) {
        return Err("record head is damaged");
    }
    let sum = u64::from_le_bytes(record[8..16].try_into().unwrap_or([0; 8]));
    if sum != checksum(record[0], &record[HEAD_BYTES..]) {
        return Err("record checksum does not hold");
    }
    Ok(record[0])
}

/// One operation of a transaction, as logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// The operations that follow apply to this tree.
    Tree(&'a str),
    /// Set a key.
    Put(&'a [u8], Val<&'a [u8]>),
    /// Remove a key.
    Remove(&'a [u8]),
    /// Remove every key in a range.
    RemoveRange(Bound<&'a [u8]>, Bound<&'a [u8]>),
    /// Create a tree.
    Create(&'a str),
    /// Delete a tree and everything in it.
    Delete(&'a str),
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(
        &u16::try_from(n)
            .expect("keys and tree names are checked against their limits first")
            .to_le_bytes(),
    );
}

fn put_bound(out: &mut Vec<u8>, b: Bound<&[u8]>) {
    match b {
        Bound::Unbounded => out.push(BOUND_UNBOUNDED),
        Bound::Included(k) | Bound::Excluded(k) => {
            out.push(if matches!(b, Bound::Included(_)) {
                BOUND_INCLUDED
            } else {
                BOUND_EXCLUDED
            });
            put_len(out, k.len());
            out.extend_from_slice(k);
        }
    }
}

/// Appends the encoding of `op` to `out`.
pub fn encode(out: &mut Vec<u8>, op: &Op<'_>) {
    match op {
        Op::Tree(name) | Op::Create(name) | Op::Delete(name) => {
            out.push(match op {
                Op::Tree(_) => OP_TREE,
                Op::Create(_) => OP_CREATE,
                _ => OP_DELETE,
            });
            put_len(out, name.len());
            out.extend_from_slice(name.as_bytes());
        }
        Op::Put(key, value) => {
            out.push(OP_PUT);
            put_len(out, key.len());
            match value {
                Val::Inline(v) => {
                    out.push(PUT_INLINE);
                    out.extend_from_slice(
                        &u32::try_from(v.len())
                            .expect("inline values are shorter than a page")
                            .to_le_bytes(),
                    );
                    out.extend_from_slice(key);
                    out.extend_from_slice(v);
                }
                Val::Out(offset, len) => {
                    out.push(PUT_OUT);
                    out.extend_from_slice(key);
                    out.extend_from_slice(&offset.to_le_bytes());
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
        }
        Op::Remove(key) => {
            out.push(OP_REMOVE);
            put_len(out, key.len());
            out.extend_from_slice(key);
        }
        Op::RemoveRange(start, end) => {
            out.push(OP_REMOVE_RANGE);
            put_bound(out, *start);
            put_bound(out, *end);
        }
    }
}

/// Reads operations from the bytes of a commit record past its head.
pub struct Ops<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Ops<'a> {
    /// The operations in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Ops<'a> {
        Ops { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let s = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or("operation runs past its record")?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, &'static str> {
        let s = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([s[0], s[1]])))
    }

    fn u32(&mut self) -> Result<usize, &'static str> {
        let s = self.take(4)?;
        usize::try_from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .map_err(|_| "length does not fit this machine")
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
    }

    fn name(&mut self) -> Result<&'a str, &'static str> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| "tree name is not UTF-8")
    }

    fn bound(&mut self) -> Result<Bound<&'a [u8]>, &'static str> {
        match self.u8()? {
            BOUND_UNBOUNDED => Ok(Bound::Unbounded),
            BOUND_INCLUDED => {
                let n = self.u16()?;
                Ok(Bound::Included(self.take(n)?))
            }
            BOUND_EXCLUDED => {
                let n = self.u16()?;
                Ok(Bound::Excluded(self.take(n)?))
            }
            _ => Err("unknown range bound"),
        }
    }

    fn op(&mut self) -> Result<Op<'a>, &'static str> {
        match self.u8()? {
            OP_TREE => Ok(Op::Tree(self.name()?)),
            OP_CREATE => Ok(Op::Create(self.name()?)),
            OP_DELETE => Ok(Op::Delete(self.name()?)),
            OP_PUT => {
                let key_len = self.u16()?;
                match self.u8()? {
                    PUT_INLINE => {
                        let value_len = self.u32()?;
                        let key = self.take(key_len)?;
                        Ok(Op::Put(key, Val::Inline(self.take(value_len)?)))
                    }
                    PUT_OUT => {
                        let key = self.take(key_len)?;
                        Ok(Op::Put(key, Val::Out(self.u64()?, self.u64()?)))
                    }
                    _ => Err("unknown value kind"),
                }
            }
            OP_REMOVE => {
                let n = self.u16()?;
                Ok(Op::Remove(self.take(n)?))
            }
            OP_REMOVE_RANGE => Ok(Op::RemoveRange(self.bound()?, self.bound()?)),
            _ => Err("unknown operation"),
        }
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<Op<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            self.at = self.bytes.len();
        }
        Some(op)
    }
}

/// One tree's entry in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// The tree's name ("" for the default tree).
    pub name: String,
    /// Log offset of its root page.
    pub root: u64,
    /// Keys in the tree.
    pub len: u64,
    /// Levels of pages, 1 for a lone leaf.
    pub height: u32,
}

/// A checkpoint: every tree's root page on disk as of commit `seq`, and the counters
/// the store keeps across reopens.
// Layout past the head: seq u64, live_bytes u64, pages u64, user_bytes u64,
// appended_before u64, trees u32, then per tree: name_len u16, name, root u64, len u64,
// height u32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last commit it covers.
    pub seq: u64,
    /// Bytes of the log that live pages, live values and this record take.
    pub live_bytes: u64,
    /// Pages of every tree.
    pub pages: u64,
    /// Key and value bytes of every put committed so far (for write amplification).
    pub user_bytes: u64,
    /// Bytes appended to earlier generations' logs.
    pub appended_before: u64,
    /// The trees.
    pub trees: Vec<TreeEntry>,
}

impl Checkpoint {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut r = begin(KIND_CHECKPOINT, 64 + self.trees.len() * 40);
        for n in [
            self.seq,
            self.live_bytes,
            self.pages,
            self.user_bytes,
            self.appended_before,
        ] {
            r.extend_from_slice(&n.to_le_bytes());
        }
        let count = u32::try_from(self.trees.len()).expect("tree count is limited");
        r.extend_from_slice(&count.to_le_bytes());
        for t in &self.trees {
            put_len(&mut r, t.name.len());
            r.extend_from_slice(t.name.as_bytes());
            r.extend_from_slice(&t.root.to_le_bytes());
            r.extend_from_slice(&t.len.to_le_bytes());
            r.extend_from_slice(&t.height.to_le_bytes());
        }
        seal(&mut r);
        r
    }

    /// Decodes a record whose head was checked.
    pub fn decode(record: &[u8]) -> Result<Checkpoint, &'static str> {
        let mut ops = Ops::new(record.get(HEAD_BYTES..).ok_or("short checkpoint")?);
        let seq = ops.u64()?;
        let live_bytes = ops.u64()?;
        let pages = ops.u64()?;
        let user_bytes = ops.u64()?;
        let appended_before = ops.u64()?;
        let count = ops.u32()?;
        let mut trees = Vec::new();
        for _ in 0..count {
            let name = ops.name()?.to_owned();
            let root = ops.u64()?;
            let len = ops.u64()?;
            let height = u32::try_from(ops.u32()?).map_err(|_| "height out of range")?;
            trees.push(TreeEntry {
                name,
                root,
                len,
                height,
            });
        }
        Ok(Checkpoint {
            seq,
            live_bytes,
            pages,
            user_bytes,
            appended_before,
            trees,
        })
    }
}

/// Bytes a record of `len` bytes takes in the log: its frame, itself, and the padding
/// to the next frame.
pub fn footprint(len: u64) -> u64 {
    crate::AppendOnly::FRAME_BYTES + len.div_ceil(16) * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip() {
        let ops = [
            Op::Tree("t"),
            Op::Put(b"k", Val::Inline(&b"v"[..])),
            Op::Put(b"", Val::Out(4096, 1 << 20)),
            Op::Remove(b"gone"),
            Op::RemoveRange(Bound::Included(&b"a"[..]), Bound::Unbounded),
            Op::RemoveRange(Bound::Unbounded, Bound::Excluded(&b"z"[..])),
            Op::Create("new"),
            Op::Delete("old"),
        ];
        let mut bytes = Vec::new();
        for op in &ops {
            encode(&mut bytes, op);
        }
        let back: Vec<Op<'_>> = Ops::new(&bytes).map(Result::unwrap).collect();
        assert_eq!(back, ops);
        // Every cut is an error, never a panic.
        for cut in 0..bytes.len() {
            let _ = Ops::new(&bytes[..cut]).count();
        }
    }

    #[test]
    fn checkpoints_round_trip_and_check() {
        let c = Checkpoint {
            seq: 7,
            live_bytes: 100,
            pages: 1,
            user_bytes: 50,
            appended_before: 4096,
            trees: vec![TreeEntry {
                name: "a".into(),
                root: 16,
                len: 3,
                height: 1,
            }],
        };
        let mut r = c.encode();
        assert_eq!(check(&r), Ok(KIND_CHECKPOINT));
        assert_eq!(Checkpoint::decode(&r).unwrap(), c);
        r[30] ^= 1;
        assert!(check(&r).is_err());
    }
}
