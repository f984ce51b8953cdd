//! [`BTreeStore::verify`](super::BTreeStore::verify): a structural check of every tree of
//! a committed version. Reads only; the first problem found is the error.

use std::collections::HashSet;

use super::node::{Reader, View};
use super::page::{MEM_CHILD, Val};
use super::store::Version;
use super::tree::{HEIGHT_MAX, fill_min};
use crate::Result;

/// What [`BTreeStore::verify`](super::BTreeStore::verify) checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Trees, the default one included.
    pub trees: u64,
    /// Pages of every tree (on disk and in memory).
    pub pages: u64,
    /// Keys of every tree.
    pub entries: u64,
    /// Values stored out of line (each checked against its checksum).
    pub out_of_line_values: u64,
}

struct Walk<'t> {
    rd: Reader<'t>,
    page_size: usize,
    seen: HashSet<u64>,
    report: VerifyReport,
    tree: String,
}

impl<'t> Walk<'t> {
    fn fail(&self, at: u64, what: String) -> crate::Error {
        self.rd.generation.corrupted(
            if at == MEM_CHILD { 0 } else { at },
            format!("B-tree {:?}: {what}", self.tree),
        )
    }

    /// Checks the subtree at `v` whose keys must lie in `[low, high)`; returns its keys.
    fn node(
        &mut self,
        v: View<'t>,
        low: Option<&'t [u8]>,
        high: Option<&'t [u8]>,
        depth: usize,
        height: usize,
    ) -> Result<u64> {
        let rd = self.rd;
        let at = match v {
            View::Page { page, at, .. } => {
                if at != MEM_CHILD {
                    if !self.seen.insert(at) {
                        return Err(self.fail(at, format!("page at {at} is reached twice")));
                    }
                    if !page.checksum_holds() {
                        return Err(self.fail(at, format!("page at {at}: checksum does not hold")));
                    }
                }
                let used = page
                    .used_bytes()
                    .map_err(|d| rd.generation.page_damage(at, d))?;
                if used > self.page_size {
                    return Err(self.fail(at, format!("page holds {used} bytes, more than a page")));
                }
                if depth > 1 && used < fill_min(self.page_size) {
                    return Err(self.fail(
                        at,
                        format!("page at depth {depth} holds {used} bytes, under the minimum fill"),
                    ));
                }
                at
            }
            View::Dirty(_) => MEM_CHILD,
        };
        self.report.pages += 1;
        let n = rd.len(&v);
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let k = rd.key(&v, i)?;
            if prev.is_some_and(|p| p >= k) {
                return Err(self.fail(at, format!("keys out of order at cell {i}")));
            }
            if low.is_some_and(|l| k < l) || high.is_some_and(|h| k >= h) {
                return Err(self.fail(
                    at,
                    format!("key of cell {i} lies outside its parent's range"),
                ));
            }
            prev = Some(k);
        }
        if rd.is_leaf(&v) {
            if depth != height {
                return Err(self.fail(
                    at,
                    format!("a leaf at depth {depth} of a tree of height {height}"),
                ));
            }
            for i in 0..n {
                if let (_, val @ Val::Out(..)) = rd.entry(&v, i)? {
                    rd.value(val)?;
                    self.report.out_of_line_values += 1;
                }
            }
            return Ok(n as u64);
        }
        if n == 0 {
            return Err(self.fail(at, "a branch without keys".into()));
        }
        if depth >= height || depth >= HEIGHT_MAX {
            return Err(self.fail(
                at,
                format!("a branch at depth {depth} of a tree of height {height}"),
            ));
        }
        let mut keys = 0;
        for i in 0..=n {
            let lo = if i == 0 {
                low
            } else {
                Some(rd.key(&v, i - 1)?)
            };
            let hi = if i == n { high } else { Some(rd.key(&v, i)?) };
            keys += self.node(rd.child(&v, i)?, lo, hi, depth + 1, height)?;
        }
        Ok(keys)
    }
}

/// Checks every tree of `v`.
pub(super) fn verify(v: &Version) -> Result<VerifyReport> {
    let rd = Reader {
        generation: &v.generation,
    };
    let mut walk = Walk {
        rd,
        page_size: v.generation.page_size,
        seen: HashSet::new(),
        report: VerifyReport::default(),
        tree: String::new(),
    };
    for (name, root) in &v.trees {
        walk.tree = name.to_string();
        let keys = walk.node(rd.node(&root.node)?, None, None, 1, root.height as usize)?;
        if keys != root.len {
            return Err(walk.fail(0, format!("holds {keys} keys, its count says {}", root.len)));
        }
        walk.report.trees += 1;
        walk.report.entries += keys;
    }
    Ok(walk.report)
}
