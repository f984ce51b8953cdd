//! `BTreeStore`: an ordered key-value store, a copy-on-write B+tree of pages written once
//! into an [`AppendOnly`](crate::AppendOnly) log, with transactions, snapshots, named
//! trees and ordered scans. The design is yakvdb's (pages never changed in place, the
//! root committed apart), on the grow-only primitives: the log holds pages, out-of-line
//! values, each transaction's operations and checkpoints; a [`Journal`](crate::Journal)
//! names the current generation and its newest checkpoint.
//!
//! The store's design, durability and space management are documented on
//! [`BTreeStore`].

mod generation;
mod node;
mod page;
mod records;
mod recovery;
mod store;
mod tree;
mod txn;
mod value;
mod verify;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::limits::{BTREE_PAGE_BYTES_MAX, BTREE_PAGE_BYTES_MIN};
use crate::{Dir, Error, Result, catalog};
use store::{Inner, thread_tag};

pub use txn::{Range, ReadTxn, Tree, TreeMut, WriteTxn};
pub use value::BTreeValue;
pub use verify::VerifyReport;

/// How a [`BTreeStore`] is opened.
#[derive(Clone, Debug)]
pub struct BTreeOptions {
    /// Bytes of a page (a power of two from [`BTREE_PAGE_BYTES_MIN`] to
    /// [`BTREE_PAGE_BYTES_MAX`]; default 4 KiB). Recorded when the store is created; a
    /// later open uses the recorded size whatever this says.
    pub page_size: usize,
    /// Log bytes past the last checkpoint that make a commit write a checkpoint. Also
    /// bounds what an open replays. Default 32 MiB.
    pub checkpoint_bytes: u64,
    /// Bytes of committed pages held in memory (not yet written) that make a commit
    /// write a checkpoint. The larger, the more commits a page's one write covers (with
    /// random keys, once most leaves are dirty every further commit is free); the memory
    /// it costs is at most this. Default 256 MiB.
    pub memory_pages_bytes: u64,
    /// Share of the log that garbage may take before a checkpoint compacts the store
    /// (default 0.4). The log then stays under `1 / (1 - ratio)` times the live pages
    /// and values (1.67 times by default) but for the commits since the last
    /// checkpoint. With random keys, a checkpoint rewrites most leaves: a ratio of 0.5
    /// let the log sit just under twice the live pages after one.
    pub garbage_ratio: f64,
    /// Log size under which the store is never compacted automatically (default 64 MiB).
    pub compact_min_bytes: u64,
}

impl Default for BTreeOptions {
    fn default() -> Self {
        BTreeOptions {
            page_size: 4096,
            checkpoint_bytes: 32 << 20,
            memory_pages_bytes: 256 << 20,
            garbage_ratio: 0.4,
            compact_min_bytes: 64 << 20,
        }
    }
}

/// Whether `p` can be a page size.
pub(super) fn page_size_ok(p: usize) -> bool {
    p.is_power_of_two() && (BTREE_PAGE_BYTES_MIN..=BTREE_PAGE_BYTES_MAX).contains(&p)
}

fn check_page_size(p: usize) -> Result<()> {
    if p > BTREE_PAGE_BYTES_MAX {
        return Err(Error::limit(
            "BTREE_PAGE_BYTES_MAX",
            p as u64,
            BTREE_PAGE_BYTES_MAX as u64,
        ));
    }
    if !page_size_ok(p) {
        return Err(Error::InvalidOption {
            option: "BTreeOptions::page_size",
            reason: "a power of two of at least BTREE_PAGE_BYTES_MIN bytes",
        });
    }
    Ok(())
}

/// What [`BTreeStore::stats`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct BTreeStats {
    /// Levels of pages of the default tree.
    pub height: u32,
    /// Pages of every tree, on disk or waiting in memory for a checkpoint.
    pub pages: u64,
    /// ... of which in memory.
    pub pages_in_memory: u64,
    /// Bytes of the current generation's log.
    pub log_bytes: u64,
    /// Log bytes that live pages, live out-of-line values and the newest checkpoint take.
    pub live_bytes: u64,
    /// The rest of the log: replaced pages, removed values, and operation records (which
    /// a checkpoint makes obsolete).
    pub garbage_bytes: u64,
    /// The current generation (one more per compaction).
    pub generation: u64,
    /// Bytes appended to the store's logs, every generation's, per byte of keys and
    /// values put by commits (0 before the first put).
    pub write_amplification: f64,
    /// Snapshots ([`ReadTxn`]) alive now.
    pub snapshots: u64,
    /// Commits so far.
    pub commits: u64,
    /// Trees, the default one included.
    pub trees: u64,
}

/// An ordered key-value store of named trees: a copy-on-write B+tree whose pages are
/// written once into an append-only log.
///
/// # How a commit works
/// A write transaction copies the pages it changes into memory and changes them in
/// place, in the page format. Its operations (puts, removes, range removes, tree
/// creation and deletion) are logged as it goes. Its commit appends a commit record,
/// then freezes its pages into pages held in memory and publishes the new roots: readers that begin after
/// it see them. Pages reach the log at a checkpoint: once the log has grown by
/// [`BTreeOptions::checkpoint_bytes`] past the last one, or the pages waiting in memory
/// reach [`BTreeOptions::memory_pages_bytes`] (or at [`BTreeStore::checkpoint`]),
/// every page still in memory is appended, children before parents, then a checkpoint
/// record naming each tree's root; the log is flushed and the Journal points at it. So a
/// page that many commits change is written once per checkpoint, not once per commit.
///
/// # Durability
/// [`WriteTxn::commit`] is durable when it returns: the log is flushed (one msync of its
/// new bytes; the commit record proves itself with its frame's checksum).
/// [`WriteTxn::commit_unsynced`] is visible at once and survives the death of the
/// process (its records are in the page cache, and the next open adopts them);
/// [`BTreeStore::sync`] makes every commit before it durable. A crash at any instant
/// leaves the last durable commit intact: open replays, from the newest checkpoint on,
/// every commit whose record the log holds, in order, and nothing of a transaction whose
/// commit record it lacks. A power loss can take unsynced commits, newest first.
///
/// # Space
/// The log only grows; pages replaced by later checkpoints, removed values and the
/// operation records a checkpoint covers are garbage. [`BTreeStore::compact`] (and
/// automatically, at a checkpoint, once garbage passes
/// [`BTreeOptions::garbage_ratio`]) copies every live page and value into a new
/// generation and switches to it through the Journal. Snapshots of the old generation
/// keep it mapped until they end; its files go with the last of them.
///
/// ```
/// use accretion::{BTreeStore, Dir};
///
/// let dir = Dir::temporary()?;
/// let store = BTreeStore::open(&dir, "db", Default::default())?;
/// let mut txn = store.begin_write()?;
/// {
///     let mut fruit = txn.open_tree("fruit")?;
///     fruit.insert(b"apple", b"red")?;
///     fruit.insert(b"banana", b"yellow")?;
/// }
/// txn.commit()?;
///
/// let snapshot = store.begin_read();
/// let fruit = snapshot.open_tree("fruit")?.expect("created above");
/// assert_eq!(fruit.get(b"apple")?, Some(&b"red"[..]));
/// let keys: Vec<&[u8]> = fruit.range(&b"b"[..]..)?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [&b"banana"[..]]);
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// `Send + Sync`: any number of threads read (each through its own snapshot) while one
/// writes. Keys are at most [`BTREE_KEY_LEN_BYTES_MAX`](crate::limits::BTREE_KEY_LEN_BYTES_MAX)
/// bytes and values at most
/// [`BTREE_VALUE_LEN_BYTES_MAX`](crate::limits::BTREE_VALUE_LEN_BYTES_MAX). The methods on
/// the store itself work on the default tree (named `""`), each write its own
/// transaction committed unsynced (as [`WriteTxn::commit_unsynced`]). A drop is not a
/// sync: what was committed unsynced survives the death of the process, not a power loss.
#[derive(Clone, Debug)]
pub struct BTreeStore {
    inner: Arc<Inner>,
}

impl BTreeStore {
    /// Opens or creates the store `name` in `dir`, replaying the commits logged after its
    /// newest checkpoint.
    ///
    /// # Errors
    /// `InvalidOption` or `LimitExceeded` for a bad page size; `Corrupted` for a damaged
    /// state, checkpoint or commit record (naming the file and offset);
    /// `UnsupportedVersion` for a store of a newer format; `Incompatible` for another
    /// kind of structure under `name`; `NameInUse`; `Io`.
    pub fn open(dir: &Dir, name: &str, options: BTreeOptions) -> Result<BTreeStore> {
        catalog::admit(dir, name, catalog::Kind::BTreeStore)?;
        let inner =
            recovery::open(dir, name, options).map_err(|e| e.in_open_of(name, "a BTreeValue"))?;
        catalog::record(dir, name, catalog::Kind::BTreeStore, store::FORMAT)?;
        Ok(BTreeStore { inner })
    }

    /// A snapshot of the last commit. Never waits for a writer's transaction (at most for
    /// the instant in which a commit swaps its roots in).
    pub fn begin_read(&self) -> ReadTxn<'_> {
        self.inner.snapshots.fetch_add(1, Ordering::Relaxed);
        ReadTxn {
            inner: &self.inner,
            version: self.inner.version(),
        }
    }

    /// A write transaction; waits for the one before it (in any thread) to end.
    ///
    /// # Errors
    /// `Reentrant` if this thread already holds a write transaction of this store (it
    /// would wait for itself); `Poisoned` after a failure that left the files in doubt
    /// (a failed flush of a commit, a failed checkpoint): reopen the store.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        let me = thread_tag();
        if self.inner.writer_thread.load(Ordering::Acquire) == me {
            return Err(Error::Reentrant {
                call: "BTreeStore::begin_write",
                inside: "a write transaction of the same store on this thread",
            });
        }
        let guard = self.inner.writer.lock();
        // Checked under the lock: the writer before may have poisoned the store.
        self.inner.check_poison()?;
        self.inner.writer_thread.store(me, Ordering::Release);
        Ok(WriteTxn::new(&self.inner, guard))
    }

    /// The value of `key` in the default tree, as a handle that derefs to its bytes
    /// where they lie (no copy) and stays valid whatever happens to the key later; see
    /// [`BTreeValue`].
    ///
    /// # Errors
    /// `Corrupted` if a page or value on the way fails its checks.
    pub fn get(&self, key: &[u8]) -> Result<Option<BTreeValue>> {
        let version = self.inner.version();
        let root = version
            .trees
            .get("")
            .ok_or_else(|| self.inner.missing_default())?;
        value::get(&version, root, key)
    }

    /// True if `key` is set in the default tree.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        let r = self.begin_read();
        r.default_tree()?.contains(key)
    }

    /// Where the store's files are: its directory inside the store directory.
    pub fn path(&self) -> std::path::PathBuf {
        self.inner.dir.path().join(&self.inner.name)
    }

    /// Keys in the default tree.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn len(&self) -> Result<u64> {
        let r = self.begin_read();
        r.default_tree()?.len()
    }

    /// True if the default tree is empty.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn owned(e: Option<(&[u8], &[u8])>) -> Option<(Vec<u8>, Vec<u8>)> {
        e.map(|(k, v)| (k.to_vec(), v.to_vec()))
    }

    /// The smallest key of the default tree and its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn first(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let r = self.begin_read();
        Ok(Self::owned(r.default_tree()?.first()?))
    }

    /// The largest key of the default tree and its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let r = self.begin_read();
        Ok(Self::owned(r.default_tree()?.last()?))
    }

    /// The smallest key of the default tree strictly greater than `key`, and its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn above(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let r = self.begin_read();
        Ok(Self::owned(r.default_tree()?.above(key)?))
    }

    /// The largest key of the default tree strictly smaller than `key`, and its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn below(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let r = self.begin_read();
        Ok(Self::owned(r.default_tree()?.below(key)?))
    }

    /// Sets `key` to `value` in the default tree, in a transaction of its own committed
    /// unsynced; returns the value it replaced.
    ///
    /// # Errors
    /// As [`TreeMut::insert`] and [`WriteTxn::commit_unsynced`]; `Reentrant` from inside a
    /// write transaction of this store on this thread.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut txn = self.begin_write()?;
        let old = txn.default_tree()?.insert(key, value)?;
        txn.commit_unsynced()?;
        Ok(old)
    }

    /// Removes `key` from the default tree, in a transaction of its own committed
    /// unsynced; returns its value.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut txn = self.begin_write()?;
        let old = txn.default_tree()?.remove(key)?;
        txn.commit_unsynced()?;
        Ok(old)
    }

    /// Names of the named trees (the default tree aside), in order.
    pub fn trees(&self) -> Vec<String> {
        self.begin_read().trees()
    }

    /// Makes every commit made before this call durable: one flush of the log.
    ///
    /// # Errors
    /// `Io` if the flush fails (the store then refuses writes until reopened); `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        self.inner.version().generation.log.sync()
    }

    /// Writes every page held in memory and a checkpoint naming them, durably, so that
    /// the next open replays nothing before it.
    ///
    /// # Errors
    /// `Io` from the log or the Journal (the store then refuses writes until reopened);
    /// `Reentrant` from inside a write transaction of this store on this thread.
    pub fn checkpoint(&self) -> Result<()> {
        let mut txn = self.begin_write()?;
        let v = self.inner.version();
        let v = self
            .inner
            .checkpoint(txn.writer(), &v)
            .map_err(|e| self.inner.poison(e))?;
        self.inner.publish(v);
        Ok(())
    }

    /// Copies every live page and value into a new generation and switches to it (see
    /// [`BTreeStore`]'s docs). Writers wait while it runs; readers do not.
    ///
    /// # Errors
    /// `Io` (a full disk is `StorageFull`): the old generation stays current;
    /// `Corrupted` if a live page or value fails its checks; `Reentrant` as
    /// [`checkpoint`](Self::checkpoint).
    pub fn compact(&self) -> Result<()> {
        let mut txn = self.begin_write()?;
        let v = self.inner.version();
        let v = self.inner.compact(txn.writer(), &v)?;
        self.inner.publish(v);
        Ok(())
    }

    /// Counters of the store as of the last commit.
    pub fn stats(&self) -> BTreeStats {
        let v = self.inner.version();
        let log_bytes = v.generation.log.len();
        let appended = v.appended_before + log_bytes;
        BTreeStats {
            height: v.trees.get("").map_or(0, |r| r.height),
            pages: v.pages,
            pages_in_memory: v.mem_pages,
            log_bytes,
            // Live bytes are counted with each record's frame and alignment as a full
            // footprint, which the log's last record may not take yet: never more than
            // the log.
            live_bytes: v.live_bytes.min(log_bytes),
            garbage_bytes: log_bytes.saturating_sub(v.live_bytes),
            generation: v.generation.number,
            write_amplification: if v.user_bytes == 0 {
                0.0
            } else {
                appended as f64 / v.user_bytes as f64
            },
            snapshots: self.inner.snapshots.load(Ordering::Relaxed),
            commits: v.seq,
            trees: v.trees.len() as u64,
        }
    }

    /// Checks the whole store as of the last commit: every page's checksum, key order
    /// inside and across pages, fill bounds, that every leaf lies at the tree's height,
    /// that no page is reached twice, key counts, and every out-of-line value's checksum.
    ///
    /// # Errors
    /// `Corrupted` naming the first problem found (file, offset, what).
    pub fn verify(&self) -> Result<VerifyReport> {
        let r = self.begin_read();
        verify::verify(&r.version)
    }
}

impl Inner {
    pub(super) fn missing_default(&self) -> Error {
        Error::corrupted(
            self.state.path(),
            0,
            format!("B-tree store {:?} has no default tree", self.name),
        )
    }

    pub(super) fn missing_tree(&self, tree: &str) -> Error {
        Error::NoSuchTree {
            store: self.name.clone(),
            tree: tree.to_owned(),
        }
    }
}
