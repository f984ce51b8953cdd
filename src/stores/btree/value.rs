//! [`BTreeValue`]: a value of a committed tree held without a snapshot and without a
//! copy. A value lies in the log of the tree's generation (in a page written there, or
//! out of line) or in a page a non-durable commit keeps in memory; the handle holds
//! that generation, or that page, and the value's place in it. Neither ever changes
//! once written: the log only grows and a page in memory is copied, not changed, by
//! later commits; so the bytes stay what they were when the value was read.

use std::ops::Deref;
use std::sync::Arc;

use super::node::{MemPage, Reader, View};
use super::page::{MEM_CHILD, Val};
use super::store::{Root, Version};
use super::tree::{HEIGHT_MAX, too_deep};
use crate::{Result, Span};

use super::generation::Generation;

/// The value of a key in a [`BTreeStore`](super::BTreeStore), from
/// [`BTreeStore::get`](super::BTreeStore::get): derefs to the bytes where they lie, in
/// the store's mapping or in a page held in memory, without copying them. It stays valid
/// whatever happens to the key later (overwritten, removed, the store compacted or
/// dropped), as a snapshot does, but holds only the value's page or generation, not a
/// whole snapshot. Checked when it was read (the page's, or the out-of-line value's,
/// checksum), so `deref` cannot fail. (Values from the common face's iteration,
/// [`Store::entries`](crate::face::Store::entries), are copies: it reads in batches.)
#[derive(Clone)]
pub struct BTreeValue {
    held: Held,
}

#[derive(Clone)]
enum Held {
    /// Bytes of the generation's log.
    Log(Arc<Generation>, Span),
    /// Bytes of a page in memory: `(start, len)` in it.
    Mem(Arc<MemPage>, usize, usize),
    /// A copy (the common face's iteration reads entries in batches, copied out of
    /// short-lived snapshots).
    Copied(Box<[u8]>),
}

impl BTreeValue {
    /// The bytes (the same as `&*value`).
    pub fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl From<&[u8]> for BTreeValue {
    /// A handle holding a copy of `bytes`.
    fn from(bytes: &[u8]) -> BTreeValue {
        BTreeValue {
            held: Held::Copied(bytes.into()),
        }
    }
}

impl Deref for BTreeValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.held {
            Held::Log(generation, span) => generation
                .log
                .get(*span)
                .expect("a value's span was read when its handle was made"),
            Held::Mem(page, start, len) => &page.page.page().bytes()[*start..*start + *len],
            Held::Copied(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for BTreeValue {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq<[u8]> for BTreeValue {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for BTreeValue {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for BTreeValue {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for BTreeValue {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for BTreeValue {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl PartialEq for BTreeValue {
    fn eq(&self, other: &BTreeValue) -> bool {
        **self == **other
    }
}

impl Eq for BTreeValue {}

impl std::fmt::Debug for BTreeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BTreeValue").field(&&**self).finish()
    }
}

/// The value of `key` in the tree of `version` whose root is `root`, as a handle.
pub(super) fn get(version: &Version, root: &Root, key: &[u8]) -> Result<Option<BTreeValue>> {
    let generation = &version.generation;
    let rd = Reader { generation };
    let mut v = rd.node(&root.node)?;
    // The page in memory `v` is, if it is one.
    let mut mem: Option<&Arc<MemPage>> = match &root.node {
        super::node::NodeRef::Mem(m) => Some(m),
        super::node::NodeRef::Disk(_) => None,
    };
    for _ in 0..HEIGHT_MAX {
        if rd.is_leaf(&v) {
            let Ok(i) = rd.search(&v, key)? else {
                return Ok(None);
            };
            let held = match rd.entry(&v, i)?.1 {
                Val::Out(offset, len) => {
                    rd.value(Val::Out(offset, len))?;
                    Held::Log(Arc::clone(generation), Span::new(offset, len))
                }
                Val::Inline(bytes) => {
                    let View::Page { page, at, .. } = &v else {
                        unreachable!("a committed tree holds no dirty nodes");
                    };
                    // Where the value lies in its page (both are in the page's bytes).
                    let start = bytes.as_ptr().addr() - page.bytes().as_ptr().addr();
                    match mem {
                        Some(m) => Held::Mem(Arc::clone(m), start, bytes.len()),
                        None => Held::Log(
                            Arc::clone(generation),
                            Span::new(at + start as u64, bytes.len() as u64),
                        ),
                    }
                }
            };
            return Ok(Some(BTreeValue { held }));
        }
        let i = rd.child_for(&v, key)?;
        mem = match &v {
            View::Page { page, kids, at } if *at == MEM_CHILD => match page.child(i) {
                Ok(MEM_CHILD) => kids.get(i),
                _ => None,
            },
            _ => None,
        };
        v = rd.child(&v, i)?;
    }
    Err(too_deep(&rd))
}
