//! The store's shared state: the committed versions readers take, the single writer's
//! state, commits, checkpoints (writing the pages that commits left in memory) and
//! compaction (copying the live trees into a new generation). Opening and recovery are
//! in `recovery.rs`; the public face is in `mod.rs` and `txn.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytemuck::{Pod, Zeroable};
use parking_lot::{Mutex, RwLock};

use super::BTreeOptions;
use super::generation::{Generation, generation_name};
use super::node::{MemPage, NodeRef, Reader, View};
use super::page::{self, MEM_CHILD, Val};
use super::records::{self, Checkpoint, TreeEntry, footprint};
use crate::{Dir, Error, Journal, Result, Span};

/// Magic of the store's state (`{name}/state`): "ACCBTREE".
pub(super) const STATE_MAGIC: u64 = u64::from_le_bytes(*b"ACCBTREE");
/// Format of the store (state and log records).
pub(super) const FORMAT: u32 = 1;

/// The store's state, in its Journal: which generation is current and where its newest
/// checkpoint record lies (the walk at open starts past it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(super) struct State {
    pub magic: u64,
    pub format: u32,
    pub page_size: u32,
    pub generation: u64,
    /// Log offset and length of the newest checkpoint record; length 0 for none.
    pub checkpoint_offset: u64,
    pub checkpoint_len: u64,
}
// The catalog tells an unrecorded store from a user's `state` journal by this size.
const _: () = assert!(
    size_of::<State>() as u64 == crate::catalog::state_bytes(crate::catalog::Kind::BTreeStore)
);

/// One tree's root in a committed version.
#[derive(Clone, Debug)]
pub(super) struct Root {
    pub node: NodeRef,
    pub len: u64,
    pub height: u32,
}

/// A committed state of every tree: what a snapshot reads.
#[derive(Debug)]
pub(super) struct Version {
    /// Commits so far.
    pub seq: u64,
    pub generation: Arc<Generation>,
    pub trees: BTreeMap<Arc<str>, Root>,
    /// Log bytes that live pages on disk, live out-of-line values and the newest
    /// checkpoint record take.
    pub live_bytes: u64,
    /// Pages of every tree, on disk or in memory.
    pub pages: u64,
    /// Pages committed but held in memory, not yet in the log.
    pub mem_pages: u64,
    /// Key and value bytes of every put committed.
    pub user_bytes: u64,
    /// Bytes appended to earlier generations' logs.
    pub appended_before: u64,
}

/// What only the writer touches (held under the writer lock).
#[derive(Debug)]
pub(super) struct WriterState {
    /// Log offset past the newest checkpoint record: recovery replays from there.
    pub checkpoint_end: u64,
    /// The newest checkpoint record.
    pub checkpoint: Span,
    /// Set while open replays the log: commits are not logged again, nor checkpointed.
    pub replaying: bool,
}

/// Everything a store handle shares.
pub(super) struct Inner {
    pub dir: Dir,
    pub name: String,
    pub page_size: usize,
    pub options: BTreeOptions,
    pub state: Journal<State>,
    pub current: RwLock<Arc<Version>>,
    pub writer: Mutex<WriterState>,
    /// The thread that holds the writer lock (a thread tag), 0 if none.
    pub writer_thread: AtomicUsize,
    pub snapshots: AtomicU64,
    /// Set by a failure after which the files may not match memory (a failed flush of a
    /// commit, a failed checkpoint or state write): writes are refused until reopened.
    pub poisoned: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BTreeStore")
            .field("name", &self.name)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// A tag of the calling thread, never 0.
pub(super) fn thread_tag() -> usize {
    thread_local! {
        static TAG: u8 = const { 0 };
    }
    TAG.with(|t| std::ptr::from_ref(t) as usize)
}

impl Inner {
    /// The current version.
    pub fn version(&self) -> Arc<Version> {
        Arc::clone(&self.current.read())
    }

    pub fn publish(&self, v: Arc<Version>) {
        *self.current.write() = v;
    }

    /// Marks the store poisoned and passes `e` on.
    pub fn poison(&self, e: Error) -> Error {
        self.poisoned.store(true, Ordering::Release);
        e
    }

    /// For a commit whose record may be on disk although a step after it failed: the
    /// commit is published (a reopen would replay it, so this process must see it too),
    /// the store is poisoned, and `e` passed on.
    pub fn applied_but(&self, v: Arc<Version>, e: Error) -> Error {
        self.publish(v);
        self.poison(e)
    }

    /// `Poisoned` if a failure poisoned the store.
    pub fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                path: self.dir.path().join(&self.name),
            });
        }
        Ok(())
    }

    /// Writes every page of `v` still in memory, appends a checkpoint record naming each
    /// tree's root, makes it durable, and points the state at it. Returns the version
    /// with every root on disk (the same content).
    pub fn checkpoint(&self, w: &mut WriterState, v: &Version) -> Result<Arc<Version>> {
        let generation = &v.generation;
        let mut written = 0u64;
        let (entries, trees) = disk_roots(v, |node| write_out(generation, node, &mut written, 0))?;
        let mut cp = Checkpoint {
            seq: v.seq,
            live_bytes: 0,
            pages: v.pages,
            user_bytes: v.user_bytes,
            appended_before: v.appended_before,
            trees: entries,
        };
        let record_bytes = footprint(cp.encode().len() as u64);
        let previous = if w.checkpoint.is_empty() {
            0
        } else {
            footprint(w.checkpoint.len())
        };
        cp.live_bytes = (v.live_bytes + written * footprint(self.page_size as u64) + record_bytes)
            .saturating_sub(previous);
        let span = generation.log.append(&cp.encode())?;
        // Recorded, not only flushed: an open then trusts the pages below the checkpoint
        // by their own checksums and walks frames only past it.
        generation.log.sync_recorded()?;
        self.state.update(|s| {
            s.checkpoint_offset = span.offset();
            s.checkpoint_len = span.len();
        })?;
        self.state.sync()?;
        w.checkpoint = span;
        w.checkpoint_end = span.end();
        Ok(Arc::new(Version {
            seq: v.seq,
            generation: Arc::clone(generation),
            trees,
            live_bytes: cp.live_bytes,
            pages: v.pages,
            mem_pages: 0,
            user_bytes: v.user_bytes,
            appended_before: v.appended_before,
        }))
    }

    /// True if the log has grown enough past the newest checkpoint (or enough pages wait
    /// in memory) that a checkpoint is due.
    pub fn checkpoint_due(&self, w: &WriterState, v: &Version) -> bool {
        let since = v.generation.log.len().saturating_sub(w.checkpoint_end);
        since >= self.options.checkpoint_bytes
            || v.mem_pages.saturating_mul(self.page_size as u64) >= self.options.memory_pages_bytes
    }

    /// True if garbage is over the options' share of the log.
    pub fn compaction_due(&self, v: &Version) -> bool {
        self.over_garbage_ratio(v.generation.log.len(), v.live_bytes)
    }

    /// True if a checkpoint of `v` now would be followed by a compaction: it appends the
    /// pages in memory, all live, so the garbage stays and the log grows by them. Then
    /// the checkpoint is better done as the compaction, which writes the live pages once
    /// instead of twice (with random keys a checkpoint rewrites most leaves, so every
    /// checkpoint of a large tree ended in a compaction).
    pub fn compaction_due_after_checkpoint(&self, v: &Version) -> bool {
        let pages = v.mem_pages.saturating_mul(footprint(self.page_size as u64));
        self.over_garbage_ratio(
            v.generation.log.len().saturating_add(pages),
            v.live_bytes.saturating_add(pages),
        )
    }

    fn over_garbage_ratio(&self, len: u64, live: u64) -> bool {
        len >= self.options.compact_min_bytes
            && (len.saturating_sub(live) as f64) > self.options.garbage_ratio * len as f64
    }

    /// Copies every tree of `v` into a new generation, makes it durable, switches the
    /// state to it, and returns its version. The old generation is retired: its files go
    /// once the last snapshot reading it is dropped.
    pub fn compact(&self, w: &mut WriterState, v: &Version) -> Result<Arc<Version>> {
        let number = v.generation.number + 1;
        // A compaction that crashed before its switch may have left this generation.
        self.dir.remove(&generation_name(&self.name, number))?;
        let ng = Arc::new(Generation::open(
            &self.dir,
            &self.name,
            number,
            self.page_size,
        )?);
        let rd = Reader {
            generation: &v.generation,
        };
        let mut copy = Copier {
            to: &ng,
            live: 0,
            pages: 0,
        };
        let (entries, trees) = disk_roots(v, |node| copy.node(&rd, rd.node(node)?, 0))?;
        let appended_before = v.appended_before + v.generation.log.len();
        let mut cp = Checkpoint {
            seq: v.seq,
            live_bytes: 0,
            pages: copy.pages,
            user_bytes: v.user_bytes,
            appended_before,
            trees: entries,
        };
        cp.live_bytes = copy.live + footprint(cp.encode().len() as u64);
        let span = ng.log.append(&cp.encode())?;
        ng.log.sync_recorded()?;
        // Until here a failure leaves the old generation current and whole; from here on
        // whether the state names the new one is unknown: the store is poisoned.
        self.state
            .update(|s| {
                s.generation = number;
                s.checkpoint_offset = span.offset();
                s.checkpoint_len = span.len();
            })
            .and_then(|()| self.state.sync())
            .map_err(|e| self.poison(e))?;
        v.generation.retire();
        w.checkpoint = span;
        w.checkpoint_end = span.end();
        Ok(Arc::new(Version {
            seq: v.seq,
            generation: Arc::clone(&ng),
            trees,
            live_bytes: cp.live_bytes,
            pages: copy.pages,
            mem_pages: 0,
            user_bytes: v.user_bytes,
            appended_before,
        }))
    }
}

/// Every tree of `v` with its root placed on disk by `place` (which returns the root
/// page's offset): the checkpoint record's list, and the roots of the version it makes.
type DiskRoots = (Vec<TreeEntry>, BTreeMap<Arc<str>, Root>);

fn disk_roots(v: &Version, mut place: impl FnMut(&NodeRef) -> Result<u64>) -> Result<DiskRoots> {
    let mut entries = Vec::with_capacity(v.trees.len());
    let mut trees = BTreeMap::new();
    for (name, root) in &v.trees {
        let at = place(&root.node)?;
        entries.push(TreeEntry {
            name: name.to_string(),
            root: at,
            len: root.len,
            height: root.height,
        });
        trees.insert(
            Arc::clone(name),
            Root {
                node: NodeRef::Disk(at),
                len: root.len,
                height: root.height,
            },
        );
    }
    Ok((entries, trees))
}

/// Appends the pages of `node` that are in memory (children first) and returns the
/// node's offset on disk; `written` counts the pages appended.
fn write_out(
    generation: &Generation,
    node: &NodeRef,
    written: &mut u64,
    depth: usize,
) -> Result<u64> {
    if depth >= super::tree::HEIGHT_MAX {
        return Err(generation.corrupted(0, "B-tree pages in memory nest past any height"));
    }
    let m: &MemPage = match node {
        NodeRef::Disk(at) => return Ok(*at),
        NodeRef::Mem(m) => m,
    };
    let mut bytes = m.page.to_log();
    if !m.kids.is_empty() {
        for (i, kid) in m.kids.iter() {
            let at = write_out(
                generation,
                &NodeRef::Mem(Arc::clone(kid)),
                written,
                depth + 1,
            )?;
            page::set_child(&mut bytes, i, at).map_err(|d| generation.page_damage(MEM_CHILD, d))?;
        }
        page::reseal(&mut bytes);
    }
    let span = generation.log.append(&bytes)?;
    *written += 1;
    Ok(span.offset())
}

/// A compaction's copy of live pages and values into a new generation.
struct Copier<'g> {
    to: &'g Generation,
    live: u64,
    pages: u64,
}

impl Copier<'_> {
    fn node(&mut self, rd: &Reader<'_>, v: View<'_>, depth: usize) -> Result<u64> {
        if depth >= super::tree::HEIGHT_MAX {
            return Err(rd
                .generation
                .corrupted(0, "a B-tree path is longer than any height"));
        }
        let page_size = self.to.page_size;
        // The cells are encoded anew: a damaged page whose cells overlap (each inside
        // it, the checksum holding) can hold more than a page of them, which the
        // encoders would panic on (found by review).
        if let View::Page { page, at, .. } = &v {
            let used = page
                .used_bytes()
                .map_err(|d| rd.generation.page_damage(*at, d))?;
            if used > page_size {
                return Err(rd.generation.corrupted(
                    *at,
                    format!("B-tree page at log offset {at}: its cells hold {used} bytes, more than a page"),
                ));
            }
        }
        let mut bytes = vec![0u8; page_size];
        if rd.is_leaf(&v) {
            let mut entries = Vec::with_capacity(rd.len(&v));
            for i in 0..rd.len(&v) {
                let (k, val) = rd.entry(&v, i)?;
                let val = match val {
                    Val::Inline(b) => Val::Inline(b),
                    Val::Out(..) => {
                        let value = rd.value(val)?;
                        let (offset, fp) = append_value(&self.to.log, value)?;
                        self.live += fp;
                        Val::Out(offset, value.len() as u64)
                    }
                };
                entries.push((k, val));
            }
            page::encode_leaf(&mut bytes, entries.iter().map(|(k, v)| (k, v)));
        } else {
            let n = rd.len(&v);
            let mut keys = Vec::with_capacity(n);
            let mut children = Vec::with_capacity(n + 1);
            for i in 0..=n {
                let child = rd.child(&v, i)?;
                children.push(self.node(rd, child, depth + 1)?);
                if i < n {
                    keys.push(rd.key(&v, i)?);
                }
            }
            page::encode_branch(&mut bytes, &keys, &children);
        }
        let span = self.to.log.append(&bytes)?;
        self.live += footprint(page_size as u64);
        self.pages += 1;
        Ok(span.offset())
    }
}

/// Appends an out-of-line value record; returns the offset of the value's first byte and
/// the record's footprint in the log.
pub(super) fn append_value(log: &crate::AppendOnly, value: &[u8]) -> Result<(u64, u64)> {
    let head = records::VALUE_HEAD_BYTES;
    let sum = records::checksum(records::KIND_VALUE, value);
    let span = log.append_with(head + value.len(), 1, |_, dest| {
        dest[..head].fill(0);
        dest[0] = records::KIND_VALUE;
        dest[8..head].copy_from_slice(&sum.to_le_bytes());
        dest[head..].copy_from_slice(value);
    })?;
    Ok((span.offset() + head as u64, footprint(span.len())))
}

/// The error for a store whose state names a format or page size this build cannot use.
pub(super) fn check_state(path: &std::path::Path, s: &State) -> Result<()> {
    if s.magic != STATE_MAGIC {
        return Err(Error::incompatible(path, "not the state of a B-tree store"));
    }
    if s.format > FORMAT || s.format == 0 {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: s.format,
            supported: FORMAT,
        });
    }
    let p = s.page_size as usize;
    if !super::page_size_ok(p) {
        return Err(Error::corrupted(
            path,
            0,
            format!("B-tree state names page size {p}, which no store can have"),
        ));
    }
    Ok(())
}
