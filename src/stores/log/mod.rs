//! `LogStore`: a Bitcask-style key-value store. Records are appended to log segments
//! (AppendOnly buffers); an ordered key directory in memory points at each live value;
//! the store's state (generation, segment range) lives in a Journal. Finished segments get
//! a hint file so that opening does not have to read their values. Compaction copies live
//! values into a new generation and switches to it through the Journal.
//!
//! What it does not do: keep the key directory on disk (it is rebuilt on open), or bound
//! memory by anything but the number of keys.
//!
//! # Durability
//! A write is visible to every reader as soon as it returns. [`LogStore::sync`] returns
//! once everything written before it is durable. With [`LogOptions::sync_each_write`],
//! every write is durable before it returns; concurrent writers share fsyncs. A crash at
//! any instant leaves a store that opens and holds every durable write; a write batch is
//! all there or not at all; compaction is atomic (old or new generation, never a mix).
//!
//! A durable write whose sync fails has been applied already: it returns the sync's
//! error, readers in this process see the write, and whether a crash keeps it is unknown
//! (the device may have taken part of it). The store refuses writes from then on
//! (`Poisoned`) until it is reopened; the reopened store holds the write or not, never
//! part of it.
//!
//! A write that returned survives the death of the process (SIGKILL, a panic that
//! aborts) and a drop of the store without sync: its record is in the page cache, and
//! the next open adopts it (each record proves itself with a checksum). Only a power loss
//! or an OS crash can take writes not yet synced, and then it takes the newest ones: the
//! store reopens holding a prefix of the writes that holds every synced one. A durable
//! write costs one device flush (an msync of its segment's new bytes).

mod compact;
mod iter;
mod key;
mod keydir;
mod open;
pub mod operators;
pub(crate) mod record;
mod segment;
mod shards;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytemuck::{Pod, Zeroable};
use parking_lot::{Mutex, RwLock};

use crate::limits::{
    LOG_KEY_LEN_BYTES_MAX, LOG_SEGMENT_BYTES_DEFAULT, LOG_VALUE_LEN_BYTES_MAX, RECORD_LEN_BYTES_MAX,
};
use crate::{AppendOnly, Dir, Error, Journal, KeyRange, Result, Span, catalog};

pub use iter::Iter;
use key::Key;
use keydir::KeyDir;
use record::{Kind, Op};
pub use segment::Value;
use segment::{Segment, Writers};

/// A merge operator: `(key, current value, operand) -> new value`, where `None` deletes
/// the key.
///
/// It runs while the store's writer lock is held, so it must not write to the same
/// store: `put`, `delete`, `write`, `merge`, `clear`, `sync` or `compact` of that store
/// called from it on the same thread return [`Error::Reentrant`] (reads such as `get`
/// and `iter` are fine). Restriction (a deadlock, not detected): it must not hand such a
/// call to another thread and wait for it.
pub type MergeFn = dyn Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>> + Send + Sync;

/// How a [`LogStore`] behaves; `LogOptions::default()` suits most uses.
#[derive(Clone)]
pub struct LogOptions {
    /// A segment is finished and a new one started once it holds this many bytes,
    /// rounded down to where one of its files ends ([`AppendOnly::fitted_len`]: the
    /// default 64 MiB becomes 64 MiB less 64 KiB), so that no segment allocates a file for
    /// its last few bytes. A single record larger than that gets a segment of its own.
    pub segment_bytes: u64,
    /// Make every write durable before it returns (concurrent writers share fsyncs). A
    /// write whose sync fails returns the error but stays applied (see the module's
    /// durability section): its outcome after a crash is unknown, and the store refuses
    /// later writes until reopened.
    pub sync_each_write: bool,
    /// Compact automatically, in the background, when dead bytes exceed this fraction of
    /// all segment bytes (checked when a segment is finished). `None` turns it off.
    pub compact_dead_ratio: Option<f64>,
    /// The default merge operator used by [`LogStore::merge_default`], with its name. The
    /// name is recorded in the store; opening it later with an operator of another name
    /// is refused, since old operands would be read by the wrong operator. It must not
    /// write to the store (see [`MergeFn`]).
    pub merge_operator: Option<(String, Arc<MergeFn>)>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: LOG_SEGMENT_BYTES_DEFAULT,
            sync_each_write: false,
            compact_dead_ratio: Some(0.5),
            merge_operator: None,
        }
    }
}

impl fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogOptions")
            .field("segment_bytes", &self.segment_bytes)
            .field("sync_each_write", &self.sync_each_write)
            .field("compact_dead_ratio", &self.compact_dead_ratio)
            .field(
                "merge_operator",
                &self.merge_operator.as_ref().map(|(name, _)| name),
            )
            .finish()
    }
}

/// Counters describing a store, from [`LogStore::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Keys in the key directory (expired keys not yet dropped included).
    pub keys: u64,
    /// Bytes of the records that hold the live values (a batch's header is charged to
    /// each of its operations, so this can slightly exceed the real figure).
    pub live_bytes: u64,
    /// Every other byte of the segments: overwritten and deleted values, tombstones,
    /// record headers, padding.
    pub dead_bytes: u64,
    /// Segments in use: the generation's base segments and the log segments.
    pub segments: u64,
    /// Id of the log segment that takes writes (its files are under `<name>/log-<id>`,
    /// ten digits). The store makes the next one ahead of time, empty.
    pub active_log: u64,
    /// The current generation: the number of compactions so far.
    pub generation: u64,
    /// When the last compaction finished, if any.
    pub last_compaction: Option<SystemTime>,
    /// Damaged records found on open (each ends the replay of its segment).
    pub damaged_records: u64,
    /// Bytes skipped on open because of damage.
    pub damaged_bytes: u64,
    /// Segments replayed from their hint file on open.
    pub segments_from_hints: u64,
    /// Segments replayed by reading every record on open.
    pub segments_scanned: u64,
    /// Hint files that could not be written (their segments are scanned on open).
    pub hint_failures: u64,
    /// Compactions that failed (the old generation stayed). After a failed background
    /// compaction no other starts automatically until an explicit `compact` succeeds.
    pub compaction_failures: u64,
    /// Values compaction found damaged at rest (checksum mismatch) since open: each is
    /// dropped with its key, which reads as absent afterwards (before, its `get` was a
    /// `Corrupted` error), rather than fail every compaction.
    pub damaged_values_dropped: u64,
    /// Syncs made since open by `sync` and by durable writes (`sync_each_write`).
    /// Concurrent durable writers share syncs, so this grows slower than their writes.
    pub syncs: u64,
    /// Segments finished by writers whose sync and hint the background finisher has not
    /// done yet (until then, `sync` syncs them itself; see [`LogStore::sync`]).
    pub finishing: u64,
}

/// The store's state, in its Journal. 64 bytes, little-endian u64s:
/// format version, generation, base segment count, first and active log segment ids,
/// last compaction time (Unix ms), hash of the merge operator's name, reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct State {
    version: u64,
    generation: u64,
    base_count: u64,
    log_first: u64,
    log_active: u64,
    last_compaction_ms: u64,
    merge_name_hash: u64,
    reserved: u64,
}
const _: () = assert!(size_of::<State>() == 64);
const _: () = assert!(
    size_of::<State>() as u64 == crate::catalog::state_bytes(crate::catalog::Kind::LogStore)
);

/// What [`State`] records of a merge operator's name (never 0, which means none).
fn merge_name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes()) | 1
}

/// The format version written in [`State`].
/// 2: log segments are format-2 AppendOnly buffers (framed records, sealed when
/// finished); a store of version 1 is upgraded at open (its old segments are served as
/// they are, new ones are framed).
const STATE_VERSION: u64 = 2;

/// Where a live value is.
#[derive(Clone)]
struct Loc {
    seg: Arc<Segment>,
    value_offset: u64,
    value_len: u32,
    /// Bytes charged to the value, for the live-byte count: see `op_bytes`.
    op_bytes: u32,
    expires_ms: u64,
}

impl Loc {
    /// The value of `value_len` bytes at `value_offset` of `seg`, whose key is `key_len`
    /// bytes long.
    fn new(
        seg: &Arc<Segment>,
        value_offset: u64,
        key_len: usize,
        value_len: usize,
        expires_ms: u64,
    ) -> Loc {
        Loc {
            seg: Arc::clone(seg),
            value_offset,
            value_len: value_len as u32,
            op_bytes: op_bytes(key_len, value_len),
            expires_ms,
        }
    }

    fn expired(&self, now_ms: impl FnOnce() -> u64) -> bool {
        self.expires_ms != 0 && self.expires_ms <= now_ms()
    }
}

/// The writer's side: the active segment. Held (locked) by every write, so records are
/// appended and applied to the key directory in one order.
struct Writer {
    active: Arc<Segment>,
    active_id: u64,
}

/// Every segment in use, in replay order.
#[derive(Default)]
struct Segments {
    base: Vec<Arc<Segment>>,
    logs: Vec<(u64, Arc<Segment>)>,
}

impl Segments {
    fn all(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.base.iter().chain(self.logs.iter().map(|(_, s)| s))
    }

    /// Bytes in all segments, live and dead.
    fn bytes(&self) -> u64 {
        self.all().map(|s| s.buf().len()).sum()
    }
}

struct Inner {
    dir: Dir,
    name: String,
    opts: LogOptions,
    /// Shared with the segment a roll starts, which syncs it before its own bytes.
    state: Arc<Journal<State>>,
    /// The next log segment, created ahead by the finisher thread so that a roll does no
    /// file I/O under the writer lock: `(id, segment)`.
    next_segment: Mutex<Option<(u64, Arc<Segment>)>>,
    keys: RwLock<KeyDir>,
    writer: Mutex<Writer>,
    segments: Mutex<Segments>,
    compacting: Mutex<()>,
    /// The background compaction, if one was started; joined when the store is dropped.
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The background merges of the key directory's levels: the one running, and any
    /// still freeing the levels it replaced; joined when the store is dropped.
    mergers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The thread that syncs and hints the segments writers finish, started at the first
    /// roll; it drains its queue and ends when the store is dropped.
    finisher: Mutex<Option<Finisher>>,
    /// Segments handed to the finisher and not finished yet.
    finishing: AtomicU64,
    /// Values compaction found damaged and dropped (with their keys).
    damaged_dropped: AtomicU64,
    damaged_records: u64,
    damaged_bytes: u64,
    segments_from_hints: u64,
    segments_scanned: u64,
    hint_failures: AtomicU64,
    /// Set when a background compaction failed: no more are started until an explicit
    /// `compact` succeeds.
    auto_compaction_failed: AtomicBool,
    /// Set once a sync of the store's data or state failed (a writer's, `sync`'s, the
    /// finisher's, a compaction's commit): the kernel may have dropped dirty pages, so the
    /// store refuses writes and compactions (`Poisoned`) until it is reopened, as each
    /// primitive does for its own files.
    poisoned: AtomicBool,
    /// Set when the store is being dropped: the finisher makes no segment ahead.
    closing: AtomicBool,
    compaction_failures: AtomicU64,
    /// Shared by writers for group commit (see `Segment::sync_to`).
    writers: Writers,
}

/// Counts a writer in `Writers::appending` until dropped (with `sync_each_write` only).
struct Appending<'a>(Option<&'a AtomicUsize>);

impl<'a> Appending<'a> {
    fn start(inner: &'a Inner) -> Self {
        let counter = inner
            .opts
            .sync_each_write
            .then_some(&inner.writers.appending);
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::AcqRel);
        }
        Appending(counter)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

thread_local! {
    /// The stores (by the address of their `Inner`) whose merge operator runs on this
    /// thread, innermost last. Each holds its writer lock meanwhile, so a write to it
    /// from this thread would wait for itself.
    static MERGING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks a store as running a merge operator on this thread until dropped (also by a
/// panic in the operator).
struct Merging(usize);

impl Merging {
    fn start(inner: &Inner) -> Merging {
        let at = std::ptr::from_ref(inner) as usize;
        // During thread teardown the marker is gone; no merge runs from there.
        let _ = MERGING.try_with(|m| m.borrow_mut().push(at));
        Merging(at)
    }

    /// `Reentrant` if a merge operator of `inner` runs on this thread: `call` would wait
    /// for the writer lock its caller holds.
    fn refuse(inner: &Inner, call: &'static str) -> Result<()> {
        let at = std::ptr::from_ref(inner) as usize;
        if MERGING
            .try_with(|m| m.borrow().contains(&at))
            .unwrap_or(false)
        {
            return Err(Error::Reentrant {
                call,
                inside: "a merge operator of the same LogStore",
            });
        }
        Ok(())
    }
}

impl Drop for Merging {
    fn drop(&mut self) {
        let _ = MERGING.try_with(|m| {
            let mut m = m.borrow_mut();
            if let Some(i) = m.iter().rposition(|a| *a == self.0) {
                m.remove(i);
            }
        });
    }
}

/// A Bitcask-style key-value store: an append-only log of records in segments, an
/// ordered key directory in memory, hint files for fast opening, and compaction into new
/// generations.
///
/// # Durability
/// A write is visible to every reader as soon as it returns. [`sync`](Self::sync)
/// returns once everything written before it is durable; with
/// [`LogOptions::sync_each_write`] every write is durable before it returns (concurrent
/// writers share fsyncs). A crash at any instant leaves a store that opens and holds every
/// durable write; a [`WriteBatch`] is all there or not at all; compaction is atomic.
///
/// Dropping the store is not a sync, but a write that returned survives the drop and the
/// death of the process: the next open adopts it. Only a power loss or an OS crash can
/// take writes not yet synced (the newest ones: what remains is a prefix of the writes).
///
/// A durable write whose sync fails returns the error but has been applied: readers in
/// this process see it, a crash may or may not keep it, and the store refuses writes
/// (`Poisoned`) until reopened.
///
/// ```
/// use accretion::{Dir, LogOptions, LogStore};
/// let dir = Dir::temporary()?;
/// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
/// store.put(b"apple", b"red")?;
/// store.put(b"banana", b"yellow")?;
/// assert_eq!(store.get(b"apple")?.unwrap(), b"red");
/// store.delete(b"apple")?;
/// assert!(store.get(b"apple")?.is_none());
/// let keys = store
///     .iter()
///     .map(|entry| entry.map(|(key, _value)| key.to_vec()))
///     .collect::<accretion::Result<Vec<_>>>()?;
/// assert_eq!(keys, [b"banana".to_vec()]);
/// store.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
pub struct LogStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("name", &self.inner.name)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl Drop for LogStore {
    /// Waits for a background compaction and merge, and for the finisher to sync and hint
    /// the segments it was handed, so that once the store is dropped it can be opened
    /// again at once.
    fn drop(&mut self) {
        self.inner.closing.store(true, Ordering::Release);
        if let Some(finisher) = self.inner.finisher.lock().take() {
            drop(finisher.jobs);
            let _ = finisher.thread.join();
        }
        self.inner.remove_next_segment();
        if let Some(thread) = self.inner.background.lock().take() {
            let _ = thread.join();
        }
        for thread in std::mem::take(&mut *self.inner.mergers.lock()) {
            let _ = thread.join();
        }
    }
}

/// Operations gathered to be applied atomically by [`LogStore::write`]: after a crash
/// the batch is all there or not at all. Later operations see earlier ones.
///
/// `'op` is how long the merge operators given to [`merge`](Self::merge) may borrow
/// from their surroundings; a batch without merges can live as long as you like.
#[derive(Default)]
pub struct WriteBatch<'op> {
    ops: Vec<BatchOp<'op>>,
}

/// A merge operator kept in a batch until it is written.
type BatchMergeFn<'op> = dyn Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'op;

enum BatchOp<'op> {
    Put(Vec<u8>, Vec<u8>, u64),
    Delete(Vec<u8>),
    Merge(Vec<u8>, Vec<u8>, Box<BatchMergeFn<'op>>),
}

impl<'op> WriteBatch<'op> {
    /// An empty batch.
    pub fn new() -> WriteBatch<'op> {
        WriteBatch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(BatchOp::Put(key.to_vec(), value.to_vec(), 0));
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.ops.push(BatchOp::Delete(key.to_vec()));
        self
    }

    /// Merges `operand` into `key` with `op` (see [`LogStore::merge`]) when the batch is
    /// written, against the value the store holds then (or the value an earlier
    /// operation of the batch gave it).
    ///
    /// `op` may borrow, like the operator of [`LogStore::merge`]. Unlike that one, which
    /// runs at once on the caller's thread, `op` is kept in the batch until
    /// [`LogStore::write`], so it must be `Send + Sync`: a batch can then be built on one
    /// thread and written, or shared, on another. Like every merge operator, `op` runs
    /// under the store's writer lock and must not write to the store (see [`MergeFn`]).
    ///
    /// ```
    /// use accretion::{Dir, LogOptions, LogStore, WriteBatch};
    /// let dir = Dir::temporary()?;
    /// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
    /// let suffix = String::from("!"); // borrowed by the operator, not moved into it
    /// let mut batch = WriteBatch::new();
    /// batch.put(b"greeting", b"hello");
    /// batch.merge(b"greeting", b"", |_, current, _| {
    ///     let mut value = current.unwrap_or_default().to_vec();
    ///     value.extend_from_slice(suffix.as_bytes());
    ///     Some(value)
    /// });
    /// store.write(&batch)?;
    /// assert_eq!(store.get(b"greeting")?.unwrap(), b"hello!");
    /// # Ok::<(), accretion::Error>(())
    /// ```
    pub fn merge(
        &mut self,
        key: &[u8],
        operand: &[u8],
        op: impl Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'op,
    ) -> &mut Self {
        self.ops
            .push(BatchOp::Merge(key.to_vec(), operand.to_vec(), Box::new(op)));
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl LogStore {
    /// Opens or creates the store `name` in `dir`: replays hint files where they are
    /// whole and scans the other segments. A damaged record ends its segment's replay
    /// and is counted in [`stats`](Self::stats); opening does not fail because of it.
    ///
    /// # Errors
    /// `NameInUse` (naming the store) if it is open already; `HandlesAlive` if a
    /// [`Value`] or an unfinished [`Iter`] from an earlier open of it is still alive
    /// (each keeps the segment it reads from open; the error names one); `Incompatible`
    /// for a different merge operator name; `UnsupportedVersion` for a newer format;
    /// `Corrupted` for a damaged state journal or segment file header; `Io`.
    ///
    /// ```
    /// use accretion::{Dir, Error, LogOptions, LogStore};
    /// let dir = Dir::temporary()?;
    /// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
    /// store.put(b"k", b"v")?;
    /// let value = store.get(b"k")?.unwrap();
    /// drop(store);
    /// let again = LogStore::open(&dir, "kv", LogOptions::default());
    /// assert!(matches!(again, Err(Error::HandlesAlive { .. })));
    /// drop(value);
    /// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
    /// # Ok::<(), accretion::Error>(())
    /// ```
    pub fn open(dir: &Dir, name: &str, mut opts: LogOptions) -> Result<LogStore> {
        // A segment ends where a lane ends, so that its last bytes never take a lane of
        // their own (lanes double: 64 MiB would allocate 128 MiB for its last 64 KiB).
        opts.segment_bytes = AppendOnly::fitted_len(opts.segment_bytes);
        catalog::admit(dir, name, catalog::Kind::LogStore)?;
        let inner = open::open(dir, name, opts)
            .map_err(|e| e.in_open_of(name, "a Value or an unfinished Iter"))?;
        catalog::record(dir, name, catalog::Kind::LogStore, STATE_VERSION as u32)?;
        Ok(LogStore {
            inner: Arc::new(inner),
        })
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// `LimitExceeded` for a key over [`LOG_KEY_LEN_BYTES_MAX`] or a value over
    /// [`LOG_VALUE_LEN_BYTES_MAX`]; `Io` (a full disk, say) or `Poisoned` after a
    /// failed sync; `Reentrant` when called from a merge operator of this store (see
    /// [`MergeFn`]). With [`sync_each_write`](LogOptions::sync_each_write), an `Io` error
    /// whose operation starts with "sync a durable write" came after the write was
    /// applied: it is visible, and a crash may or may not keep it.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write_ops(
            "LogStore::put",
            &[Op {
                kind: Kind::Put,
                key,
                value,
                expires_ms: 0,
            }],
        )
    }

    /// Sets `key` to `value` for `ttl`; afterwards the key reads as absent, and
    /// compaction drops it.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.write_ops(
            "LogStore::put_with_ttl",
            &[Op {
                kind: Kind::Put,
                key,
                value,
                expires_ms: now_ms().saturating_add(ttl_ms),
            }],
        )
    }

    /// Removes `key` (writing a tombstone). Removing an absent key is not an error.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.write_ops(
            "LogStore::delete",
            &[Op {
                kind: Kind::Delete,
                key,
                value: &[],
                expires_ms: 0,
            }],
        )
    }

    /// The value of `key`, or `None` if it is absent or expired. The handle derefs to
    /// the bytes without copying and stays valid whatever happens to the key later.
    ///
    /// # Errors
    /// `Io` if a segment cannot be mapped.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let keys = self.inner.keys.read();
        match keys.get(key) {
            Some(loc) if !loc.expired(now_ms) => value_of(key, loc).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether `key` has a value that has not expired.
    pub fn contains(&self, key: &[u8]) -> bool {
        let keys = self.inner.keys.read();
        keys.get(key).is_some_and(|loc| !loc.expired(now_ms))
    }

    /// Where the store's files are: its directory inside the store directory.
    pub fn path(&self) -> std::path::PathBuf {
        self.inner.dir.path().join(&self.inner.name)
    }

    /// Number of keys with a value. Constant time unless some keys have a time to live,
    /// when it counts the ones not yet expired.
    pub fn len(&self) -> u64 {
        let keys = self.inner.keys.read();
        if keys.expiring() == 0 {
            return keys.len() as u64;
        }
        let now = now_ms();
        keys.locs().filter(|loc| !loc.expired(|| now)).count() as u64
    }

    /// True if no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Atomically replaces the value of `key` with `op(key, current, operand)`; `None`
    /// from `op` deletes the key. Merges into one key from many threads are applied one
    /// at a time, each seeing the result of the one before.
    ///
    /// `op` runs on the calling thread, under the store's writer lock: it may read the
    /// store (`get`, `iter`), but a write to it (`put`, `delete`, `write`, `merge`,
    /// `clear`, `sync`, `compact`) returns `Reentrant` (see [`MergeFn`]).
    ///
    /// ```
    /// use accretion::{Dir, Error, LogOptions, LogStore};
    /// let dir = Dir::temporary()?;
    /// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
    /// store.merge(b"n", b"", |_, current, _| {
    ///     assert!(matches!(store.put(b"other", b"x"), Err(Error::Reentrant { .. })));
    ///     Some(current.unwrap_or(b"0").to_vec())
    /// })?;
    /// assert_eq!(store.get(b"n")?.unwrap(), b"0");
    /// # Ok::<(), accretion::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`put`](Self::put), for the value `op` returns.
    pub fn merge(
        &self,
        key: &[u8],
        operand: &[u8],
        op: impl Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>>,
    ) -> Result<()> {
        Merging::refuse(&self.inner, "LogStore::merge")?;
        let appending = Appending::start(&self.inner);
        let mut writer = self.inner.writer.lock();
        let current = self.get(key)?;
        let new = {
            let _merging = Merging::start(&self.inner);
            op(key, current.as_deref(), operand)
        };
        let done = match &new {
            Some(value) => self.append_locked(
                &mut writer,
                &[Op {
                    kind: Kind::Put,
                    key,
                    value,
                    expires_ms: 0,
                }],
            )?,
            None if current.is_some() => self.append_locked(
                &mut writer,
                &[Op {
                    kind: Kind::Delete,
                    key,
                    value: &[],
                    expires_ms: 0,
                }],
            )?,
            None => return Ok(()),
        };
        drop(writer);
        drop(appending);
        self.finish_write(done)
    }

    /// [`merge`](Self::merge) with the operator given in [`LogOptions::merge_operator`].
    ///
    /// # Errors
    /// `Incompatible` if the store was opened without a merge operator; otherwise as
    /// [`merge`](Self::merge).
    pub fn merge_default(&self, key: &[u8], operand: &[u8]) -> Result<()> {
        let Some((_, op)) = self.inner.opts.merge_operator.clone() else {
            return Err(Error::incompatible(
                self.inner.state.path(),
                "merge_default needs a merge operator given at open",
            ));
        };
        self.merge(key, operand, |k, cur, operand| op(k, cur, operand))
    }

    /// Whether the store records a merge operator (its name is recorded by the first open
    /// that gives one in [`LogOptions::merge_operator`]) and, if so, whether it is the one
    /// named `name`: `None` if none is recorded. A tool uses it to find, among the
    /// operators it knows (such as [`operators::OPERATORS`]), the one a store was
    /// written with.
    pub fn records_merge_operator(&self, name: &str) -> Option<bool> {
        match self.inner.state.get().merge_name_hash {
            0 => None,
            recorded => Some(recorded == merge_name_hash(name)),
        }
    }

    /// Applies every operation of `batch` atomically: one record, so after a crash the
    /// batch is all there or not at all.
    ///
    /// # Errors
    /// As [`put`](Self::put); `LimitExceeded` if the batch's record is over
    /// [`RECORD_LEN_BYTES_MAX`]. An error before the batch's record is written (a limit,
    /// a full disk, `Poisoned`, `Reentrant`) leaves nothing of it applied; with
    /// [`sync_each_write`](LogOptions::sync_each_write), an error from the sync after it
    /// leaves the whole batch applied and of unknown durability (see
    /// [`put`](Self::put)).
    pub fn write(&self, batch: &WriteBatch<'_>) -> Result<()> {
        Merging::refuse(&self.inner, "LogStore::write")?;
        if batch.is_empty() {
            return Ok(());
        }
        let appending = Appending::start(&self.inner);
        let mut writer = self.inner.writer.lock();
        // Resolve merges against the store and the batch's earlier operations.
        let mut seen: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
        // (key, new value or None for a delete, expiry)
        type Resolved<'b> = (&'b [u8], Option<Vec<u8>>, u64);
        let mut resolved: Vec<Resolved<'_>> = Vec::with_capacity(batch.len());
        for op in &batch.ops {
            match op {
                BatchOp::Put(k, v, expires) => {
                    seen.insert(k, Some(v.clone()));
                    resolved.push((k, Some(v.clone()), *expires));
                }
                BatchOp::Delete(k) => {
                    seen.insert(k, None);
                    resolved.push((k, None, 0));
                }
                BatchOp::Merge(k, operand, f) => {
                    let current = match seen.get(k.as_slice()) {
                        Some(v) => v.clone(),
                        None => self.get(k)?.map(|v| v.to_vec()),
                    };
                    let new = {
                        let _merging = Merging::start(&self.inner);
                        f(k, current.as_deref(), operand)
                    };
                    seen.insert(k, new.clone());
                    resolved.push((k, new, 0));
                }
            }
        }
        let ops: Vec<Op<'_>> = resolved
            .iter()
            .map(|(key, value, expires_ms)| match value {
                Some(value) => Op {
                    kind: Kind::Put,
                    key,
                    value,
                    expires_ms: *expires_ms,
                },
                None => Op {
                    kind: Kind::Delete,
                    key,
                    value: &[],
                    expires_ms: 0,
                },
            })
            .collect();
        let done = self.append_locked(&mut writer, &ops)?;
        drop(writer);
        drop(appending);
        self.finish_write(done)
    }

    /// Removes every key: `get` and iteration see nothing afterwards. The space is
    /// reclaimed by the next compaction.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn clear(&self) -> Result<()> {
        self.write_ops(
            "LogStore::clear",
            &[Op {
                kind: Kind::Clear,
                key: &[],
                value: &[],
                expires_ms: 0,
            }],
        )
    }

    /// Every live key and value in key order, over a snapshot taken now: later writes
    /// (including deletes) do not change what it yields. Double-ended.
    pub fn iter(&self) -> Iter {
        self.range(..)
    }

    /// The live keys in `range`, in key order, over a snapshot taken now. Double-ended.
    ///
    /// `range` is any std range whose ends are byte strings of one type (`&[u8]`,
    /// `&[u8; N]`, `Vec<u8>`, `&str`, ...), or a pair of [`Bound`](std::ops::Bound)s whose
    /// ends may differ in type (see [`KeyRange`]); no type annotation is needed:
    ///
    /// ```
    /// use std::ops::Bound;
    /// use accretion::{Dir, LogOptions, LogStore};
    /// let dir = Dir::temporary()?;
    /// let store = LogStore::open(&dir, "kv", LogOptions::default())?;
    /// for key in ["a", "b", "ba", "bb", "c"] {
    ///     store.put(key.as_bytes(), b"")?;
    /// }
    /// let keys = |iter: accretion::Iter| -> accretion::Result<Vec<String>> {
    ///     iter.map(|e| e.map(|(k, _)| String::from_utf8_lossy(&k).into_owned())).collect()
    /// };
    /// assert_eq!(keys(store.range(..))?, ["a", "b", "ba", "bb", "c"]);
    /// assert_eq!(keys(store.range(b"b"..b"c"))?, ["b", "ba", "bb"]);
    /// assert_eq!(keys(store.range(&b"a"[..]..&b"bb"[..]))?, ["a", "b", "ba"]);
    /// assert_eq!(keys(store.range(b"a".as_slice()..=b"bb".as_slice()))?, ["a", "b", "ba", "bb"]);
    /// assert_eq!(keys(store.range(b"ba".to_vec()..))?, ["ba", "bb", "c"]);
    /// assert_eq!(keys(store.range(..=b"b"))?, ["a", "b"]);
    /// assert_eq!(keys(store.range("b".."bb"))?, ["b", "ba"]);
    /// let ends = (Bound::Excluded(b"a"), Bound::Included(b"bb"));
    /// assert_eq!(keys(store.range(ends))?, ["b", "ba", "bb"]);
    /// # Ok::<(), accretion::Error>(())
    /// ```
    ///
    /// A std range has one type for both ends, and `b"a"` (`&[u8; 1]`) and `b"bb"`
    /// (`&[u8; 2]`) are two types, so `b"a"..b"bb"` is not a range at all (a
    /// `BTreeMap<Vec<u8>, _>` cannot take it either): write `&b"a"[..]..&b"bb"[..]`, or
    /// a pair of bounds.
    ///
    /// ```compile_fail,E0308
    /// # let dir = accretion::Dir::temporary().unwrap();
    /// # let store = accretion::LogStore::open(&dir, "kv", Default::default()).unwrap();
    /// store.range(b"a"..b"bb");
    /// ```
    pub fn range(&self, range: impl KeyRange) -> Iter {
        let own = |b: std::ops::Bound<&[u8]>| b.map(Key::new);
        let snapshot = self.snapshot();
        Iter::new(
            snapshot.cursor(own(range.start_key()), own(range.end_key())),
            now_ms(),
        )
    }

    /// The live keys that start with `prefix`, in key order, over a snapshot taken now.
    pub fn prefix(&self, prefix: &[u8]) -> Iter {
        use std::ops::Bound;
        let end = match prefix_successor(prefix) {
            Some(next) => Bound::Excluded(Key::new(&next)),
            None => Bound::Unbounded,
        };
        let snapshot = self.snapshot();
        Iter::new(
            snapshot.cursor(Bound::Included(Key::new(prefix)), end),
            now_ms(),
        )
    }

    /// A snapshot of the key directory's ordered view, for an iterator. Snapshots freeze
    /// the head and merge small levels; a larger merge they leave wanting is started
    /// here, in the background, as a writer filling the head would.
    fn snapshot(&self) -> keydir::Snapshot {
        let (snapshot, wants_merge) = {
            let keys = self.inner.keys.read();
            (keys.snapshot(), keys.wants_merge())
        };
        if wants_merge {
            maintain_keys(&self.inner);
        }
        snapshot
    }

    /// Makes every write that returned before this call durable.
    ///
    /// # Errors
    /// `Io` if a flush fails; the store is then poisoned (`Poisoned` for later writes)
    /// until reopened; `Reentrant` when called from a merge operator of this store.
    pub fn sync(&self) -> Result<()> {
        Merging::refuse(&self.inner, "LogStore::sync")?;
        let active = self.inner.writer.lock().active.clone();
        self.inner
            .poison_on_error(active.sync_to(active.buf().len(), &self.inner.writers))
    }

    /// Copies the live values of every finished segment into a new generation, switches
    /// to it atomically, and retires the old segments (their files go once no value
    /// handle points into them). Expired keys are dropped. Reads and writes go on while
    /// it runs: at the switch, writers wait for one sync of the state journal, and the
    /// key directory is repointed a few thousand keys at a time.
    ///
    /// # Errors
    /// `Io`; on error the old generation stays authoritative; `Reentrant` when called
    /// from a merge operator of this store.
    pub fn compact(&self) -> Result<()> {
        Merging::refuse(&self.inner, "LogStore::compact")?;
        compact::compact(&self.inner).inspect_err(|_| {
            self.inner
                .compaction_failures
                .fetch_add(1, Ordering::Relaxed);
        })?;
        self.inner
            .auto_compaction_failed
            .store(false, Ordering::Release);
        Ok(())
    }

    /// Counters describing the store.
    pub fn stats(&self) -> LogStats {
        let inner = &self.inner;
        let (keys, live) = {
            let k = inner.keys.read();
            (k.len() as u64, k.live_bytes())
        };
        let segments = inner.segments.lock();
        let total = segments.bytes();
        let state = inner.state.get();
        LogStats {
            keys,
            live_bytes: live,
            dead_bytes: total.saturating_sub(live),
            segments: segments.all().count() as u64,
            active_log: state.log_active,
            generation: state.generation,
            last_compaction: (state.last_compaction_ms != 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(state.last_compaction_ms)),
            damaged_records: inner.damaged_records,
            damaged_bytes: inner.damaged_bytes,
            segments_from_hints: inner.segments_from_hints,
            segments_scanned: inner.segments_scanned,
            hint_failures: inner.hint_failures.load(Ordering::Relaxed),
            compaction_failures: inner.compaction_failures.load(Ordering::Relaxed),
            syncs: inner.writers.syncs.load(Ordering::Relaxed),
            finishing: inner.finishing.load(Ordering::Acquire),
            damaged_values_dropped: inner.damaged_dropped.load(Ordering::Relaxed),
        }
    }

    fn write_ops(&self, call: &'static str, ops: &[Op<'_>]) -> Result<()> {
        Merging::refuse(&self.inner, call)?;
        let appending = Appending::start(&self.inner);
        let mut writer = self.inner.writer.lock();
        let done = self.append_locked(&mut writer, ops)?;
        drop(writer);
        drop(appending);
        self.finish_write(done)
    }

    /// Appends `ops` as one record to the active segment (rolling first if it is full)
    /// and applies them to the key directory. Returns what `finish_write` needs.
    fn append_locked(&self, writer: &mut Writer, ops: &[Op<'_>]) -> Result<Written> {
        self.inner.check_poison()?;
        for op in ops {
            check_sizes(op)?;
        }
        let len = record::record_len(ops);
        if len as u64 > RECORD_LEN_BYTES_MAX {
            return Err(Error::limit(
                "RECORD_LEN_BYTES_MAX",
                len as u64,
                RECORD_LEN_BYTES_MAX,
            ));
        }
        let mut rolled = None;
        let used = writer.active.buf().len();
        if used > 0
            && !writer
                .active
                .fits(len as u64, self.inner.opts.segment_bytes)
        {
            rolled = Some(self.inner.roll(writer)?);
        } else {
            // Half full: the next segment is made now, in the background, if no roll
            // made it already (the first roll after an open).
            let half = self.inner.opts.segment_bytes / 2;
            if used < half && used + len as u64 >= half {
                make_next_later(&self.inner);
            }
        }
        let seg = Arc::clone(&writer.active);
        let mut value_at = Vec::with_capacity(ops.len());
        let span = match seg.append_record(ops, &mut value_at) {
            Ok(span) => span,
            Err(e) => {
                // The roll happened: the finished segment still gets its hint.
                if let Some(finished) = rolled {
                    self.inner.after_roll(&finished);
                }
                return Err(e);
            }
        };
        let mut keys = self.inner.keys.write();
        for (op, at) in ops.iter().zip(&value_at) {
            match op.kind {
                Kind::Put => keys.put(
                    op.key,
                    Loc::new(
                        &seg,
                        span.offset() + at,
                        op.key.len(),
                        op.value.len(),
                        op.expires_ms,
                    ),
                ),
                Kind::Delete => keys.delete(op.key),
                Kind::Clear => keys.clear(),
            }
        }
        let maintain = keys.head_full();
        Ok(Written {
            seg,
            end: span.end(),
            rolled,
            maintain,
        })
    }

    /// After the writer lock is released: sync and hint the segment just finished, start
    /// a compaction if enough is dead, make the write durable if asked to, and maintain
    /// the key directory's ordered view if its head filled.
    fn finish_write(&self, done: Written) -> Result<()> {
        if let Some(finished) = done.rolled {
            finish_later(&self.inner, finished);
        }
        if self.inner.opts.sync_each_write {
            self.inner
                .poison_on_error(done.seg.sync_to(done.end, &self.inner.writers))
                .map_err(Error::applied_but_not_synced)?;
        }
        if done.maintain {
            maintain_keys(&self.inner);
        }
        Ok(())
    }
}

/// The background thread that finishes the segments writers roll over.
struct Finisher {
    /// A segment to finish, or `None`: only make the next segment ahead.
    jobs: std::sync::mpsc::Sender<Option<Arc<Segment>>>,
    thread: std::thread::JoinHandle<()>,
}

/// Hands a segment a writer just finished to the finisher thread, which syncs it (after
/// the one behind it), writes its hint, then sees whether a compaction is due: a
/// segment's sync and hint take about 150 ms at 64 MiB, which no writer should wait for.
/// If no thread can be had, the writer does it itself.
fn finish_later(inner: &Arc<Inner>, finished: Arc<Segment>) {
    inner.finishing.fetch_add(1, Ordering::AcqRel);
    let handed = match finisher_jobs(inner) {
        Some(jobs) => jobs
            .send(Some(finished))
            .map_err(|e| e.0.expect("sent a segment")),
        None => Err(finished),
    };
    if let Err(finished) = handed {
        inner.finishing.fetch_sub(1, Ordering::AcqRel);
        inner.after_roll(&finished);
        compact::maybe_start(inner);
    }
}

/// Asks the finisher thread (starting it) to make the next log segment ahead: done when
/// the active segment is half full, so that even the first roll after an open finds its
/// segment made.
fn make_next_later(inner: &Arc<Inner>) {
    if let Some(jobs) = finisher_jobs(inner) {
        let _ = jobs.send(None);
    }
}

/// The finisher's queue, starting the thread if it is not running; `None` if no thread
/// can be had.
fn finisher_jobs(inner: &Arc<Inner>) -> Option<std::sync::mpsc::Sender<Option<Arc<Segment>>>> {
    let mut finisher = inner.finisher.lock();
    if finisher.is_none() {
        *finisher = start_finisher(inner);
    }
    finisher.as_ref().map(|f| f.jobs.clone())
}

fn start_finisher(inner: &Arc<Inner>) -> Option<Finisher> {
    let (jobs, queue) = std::sync::mpsc::channel::<Option<Arc<Segment>>>();
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("accretion-finish".into())
        .spawn(move || {
            for job in queue {
                let Some(inner) = weak.upgrade() else { break };
                inner.make_next_segment();
                if let Some(seg) = job {
                    {
                        // Counted down even if finishing panics.
                        let _finished = CountDown(&inner.finishing);
                        inner.after_roll(&seg);
                    }
                    drop(seg);
                    compact::maybe_start(&inner);
                }
            }
        })
        .ok()
        .map(|thread| Finisher { jobs, thread })
}

/// Takes one from a counter when dropped.
struct CountDown<'a>(&'a AtomicU64);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a write leaves for the steps after the writer lock.
struct Written {
    seg: Arc<Segment>,
    end: u64,
    /// The segment finished by this write, if it rolled one.
    rolled: Option<Arc<Segment>>,
    /// The key directory's head is full: its ordered view wants maintenance.
    maintain: bool,
}

/// Freezes the key directory's full head into a level and, if levels need merging and
/// no merge runs, merges them on a background thread, with no lock held but for the
/// moments it takes and installs them: at a million keys a merge into the oldest level
/// copies them all, and neither readers nor writers wait for that.
fn maintain_keys(inner: &Arc<Inner>) {
    let Some(plan) = inner.keys.read().plan_merge() else {
        return;
    };
    let mut mergers = inner.mergers.lock();
    // A merge before this one is installed (`plan_merge` plans one at a time), but its
    // thread may still be freeing the levels it replaced: at a million keys that takes
    // tens of milliseconds, which this writer does not wait for (it did, and it was the
    // longest put of a load). Only finished threads are joined.
    mergers.retain(|m| !m.is_finished());
    let weak = Arc::downgrade(inner);
    // If no thread can be had, the plan is dropped and the next full head plans again.
    let spawned = std::thread::Builder::new()
        .name("accretion-merge".into())
        .spawn(move || {
            if let Some(inner) = weak.upgrade() {
                let merged = plan.run();
                let replaced = inner.keys.read().install(plan, merged);
                // Freed here, with no lock held.
                drop(replaced);
            }
        });
    if let Ok(thread) = spawned {
        mergers.push(thread);
    }
}

impl Inner {
    /// Finishes the active segment and starts the next, recorded in the state journal in
    /// memory: the new segment's first sync syncs the finished segment and then the state
    /// before any byte of its own. Returns the finished segment, which the caller hands
    /// to the finisher ([`after_roll`](Self::after_roll)) once the writer lock is
    /// released.
    fn roll(&self, writer: &mut Writer) -> Result<Arc<Segment>> {
        let finished = Arc::clone(&writer.active);
        let id = writer.active_id + 1;
        let seg = self.take_next_segment(id)?;
        // The seal tells an open that this segment's end was written: without it (a power
        // loss that kept the new segment's bytes but not this one's tail) the new
        // segment's records are not adopted. Memory only, like every append.
        if finished.buf().format() != 1 && !finished.buf().is_sealed() {
            finished.buf().seal()?;
        }
        // The finished segment is synced after the writer lock is released
        // (`after_roll`), and before any byte of the new one is (`sync_behind`); so is
        // the state that names the new one: no byte of it is durable before the state
        // that names it, and the roll itself waits for no device.
        seg.follow(&finished);
        self.state.update(|s| s.log_active = id)?;
        seg.state_first(Arc::downgrade(&self.state));
        self.segments.lock().logs.push((id, Arc::clone(&seg)));
        writer.active = seg;
        writer.active_id = id;
        Ok(finished)
    }

    /// `Poisoned` once a sync of the store failed.
    fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                path: self.dir.path().join(&self.name),
            });
        }
        Ok(())
    }

    /// Passes `result` through, poisoning the store if it is an error.
    fn poison_on_error<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// Log segment `id`, made ahead by the finisher if it could (waiting for it if it is
    /// making it now), else created here.
    fn take_next_segment(&self, id: u64) -> Result<Arc<Segment>> {
        let mut next = self.next_segment.lock();
        match next.take() {
            Some((made, seg)) if made == id => Ok(seg),
            // One made for another id (a compaction rolled meanwhile) is empty and past
            // the active segment: open removes such leftovers, and `Segment::open` takes
            // it as it is if it is asked for again.
            _ => {
                let seg = Segment::open(&self.dir, log_name(&self.name, id))?;
                seg.buf().limit_ahead(self.opts.segment_bytes);
                Ok(seg)
            }
        }
    }

    /// Makes the log segment after the active one, ahead of the roll that will need it
    /// (creating a segment fsyncs files and directories: milliseconds, more while the
    /// device writes back a finished segment). Best effort: the roll creates it itself
    /// if this failed or came too late.
    fn make_next_segment(&self) {
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let id = self.state.get().log_active + 1;
        let seg = {
            let mut next = self.next_segment.lock();
            if next.as_ref().is_some_and(|(made, _)| *made == id) {
                return;
            }
            let Ok(seg) = Segment::open(&self.dir, log_name(&self.name, id)) else {
                return;
            };
            seg.buf().limit_ahead(self.opts.segment_bytes);
            *next = Some((id, Arc::clone(&seg)));
            seg
        };
        // Its files too, all of them: it will be filled (it is the next log segment), and
        // a file made by an append waits for the device, which the finisher may keep busy
        // for hundreds of milliseconds with the segment before. Outside the lock, so that
        // a roll never waits for this: appends to it meanwhile create what they need.
        // A failure (a full disk) is left for those appends to meet and report.
        let _ = seg.buf().prepare(self.opts.segment_bytes);
    }

    /// Removes the segment made ahead, if no roll took it: on drop, so that a closed
    /// store keeps no empty, preallocated segment (open would remove it anyway).
    fn remove_next_segment(&self) {
        let Some((id, seg)) = self.next_segment.lock().take() else {
            return;
        };
        if seg.buf().is_empty() && Arc::strong_count(&seg) == 1 {
            drop(seg);
            let _ = self.dir.remove(&log_name(&self.name, id));
        }
    }

    /// Syncs a finished segment (after the one behind it) and writes its hint. A failed
    /// hint only costs a scan on the next open, so it is counted, not returned; a failed
    /// sync also poisons the segment, and the store's next sync reports it.
    fn after_roll(&self, finished: &Arc<Segment>) {
        let synced = self.poison_on_error(
            finished
                .sync_behind()
                .and_then(|()| finished.buf().sync_recorded()),
        );
        if synced
            .and_then(|()| open::write_hint(&self.dir, finished))
            .is_err()
        {
            self.hint_failures.fetch_add(1, Ordering::Relaxed);
        }
        // A finished segment takes no more writes: a store of hundreds of them must not
        // hold a descriptor for each.
        finished.buf().close_descriptors();
    }
}

/// Bytes a live value is charged: its operation, a whole record header, and the frame in
/// front of the record with the padding before the next one, so that a store of nothing
/// but live single-put records has no dead bytes but its segments' seals (else the
/// frames of small records would count as dead, about a third of a store of tiny values,
/// and a low `compact_dead_ratio` would start compactions that reclaim nothing).
fn op_bytes(key_len: usize, value_len: usize) -> u32 {
    let frame = AppendOnly::FRAME_BYTES as usize;
    let record = record::RECORD_HEADER_BYTES + record::OP_HEADER_BYTES + key_len + value_len;
    (record.next_multiple_of(frame) + frame) as u32
}

/// The checked value handle of `key` at `loc`.
fn value_of(key: &[u8], loc: &Loc) -> Result<Value> {
    value_of_len(key.len(), loc)
}

/// The checked value handle at `loc`, whose key is `key_len` bytes long.
fn value_of_len(key_len: usize, loc: &Loc) -> Result<Value> {
    Value::new(
        Arc::clone(&loc.seg),
        key_len as u64,
        Span::new(loc.value_offset, u64::from(loc.value_len)),
    )
}

fn check_sizes(op: &Op<'_>) -> Result<()> {
    if op.key.len() > LOG_KEY_LEN_BYTES_MAX {
        return Err(Error::limit(
            "LOG_KEY_LEN_BYTES_MAX",
            op.key.len() as u64,
            LOG_KEY_LEN_BYTES_MAX as u64,
        ));
    }
    if op.value.len() > LOG_VALUE_LEN_BYTES_MAX {
        return Err(Error::limit(
            "LOG_VALUE_LEN_BYTES_MAX",
            op.value.len() as u64,
            LOG_VALUE_LEN_BYTES_MAX as u64,
        ));
    }
    Ok(())
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

fn log_name(store: &str, id: u64) -> String {
    format!("{store}/log-{id:010}")
}

fn base_name(store: &str, generation: u64, index: u64) -> String {
    format!("{store}/g{generation}/base-{index:06}")
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_full_bytes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
