//! A segment: one AppendOnly buffer of log records, shared by `Arc` between the store and
//! every value handle that points into it, and the value handle itself. A retired
//! segment's files are removed when the last handle to it goes.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::record;
use crate::{AppendOnly, Dir, Error, Result, Span};

/// Longest a group-commit leader waits for writers in the middle of an append before it
/// syncs: a fraction of one fsync on this class of machine (about 0.3 ms).
const GATHER: Duration = Duration::from_micros(100);

/// One segment of the log.
pub(crate) struct Segment {
    /// Structure name of the segment's buffer; its hint is `{name}-hint`.
    pub(crate) name: String,
    /// Always `Some` until dropped; taken in `drop` to close the buffer before removing
    /// its files.
    buf: Option<AppendOnly>,
    dir: Dir,
    retired: AtomicBool,
    /// Whether a sync is running (group commit): writers wait for it on `synced` and
    /// find their bytes covered when it ends, or one of them starts the next.
    syncing: Mutex<bool>,
    synced: Condvar,
}

impl Segment {
    pub(crate) fn open(dir: &Dir, name: String) -> Result<Arc<Segment>> {
        let buf = AppendOnly::open(dir, &name)?;
        Ok(Arc::new(Segment {
            name,
            buf: Some(buf),
            dir: dir.clone(),
            retired: AtomicBool::new(false),
            syncing: Mutex::new(false),
            synced: Condvar::new(),
        }))
    }

    /// The segment's buffer.
    pub(crate) fn buf(&self) -> &AppendOnly {
        self.buf.as_ref().expect("present until drop")
    }

    pub(crate) fn hint_name(&self) -> String {
        hint_name(&self.name)
    }

    /// Makes every byte below `end` durable, sharing syncs with concurrent callers (group
    /// commit). One caller at a time leads a sync; the others wait for it and return if
    /// it covered them. Before syncing, the leader lets the writers counted in
    /// `appending` (those between entering a write and finishing its append) finish, for
    /// up to [`GATHER`], so that one sync covers them all.
    pub(crate) fn sync_to(&self, end: u64, appending: &AtomicUsize) -> Result<()> {
        loop {
            if self.buf().durable_len() >= end {
                return Ok(());
            }
            let mut syncing = self.syncing.lock();
            if *syncing {
                self.synced.wait(&mut syncing);
                continue;
            }
            *syncing = true;
            drop(syncing);
            // Writers just woken by the last sync are on their way back with their next
            // write: give them a moment (a yield lets them run on a busy core), then wait
            // for the ones in the middle of an append.
            let start = Instant::now();
            let mut yields = 0;
            while (yields < 2 || appending.load(Ordering::Acquire) > 0) && start.elapsed() < GATHER
            {
                std::thread::yield_now();
                yields += 1;
            }
            let result = self.buf().sync();
            *self.syncing.lock() = false;
            self.synced.notify_all();
            result?;
        }
    }

    /// Marks the segment for removal once the last handle to it is dropped.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // The buffer must be closed before its name can be removed. A failure leaves
            // garbage that the next open removes.
            drop(self.buf.take());
            let _ = self.dir.remove(&self.name);
            let _ = self.dir.remove(&hint_name(&self.name));
        }
    }
}

pub(crate) fn hint_name(segment: &str) -> String {
    format!("{segment}-hint")
}

/// A value (or, from an iterator, a key) read from a [`LogStore`](super::LogStore):
/// derefs to its bytes in the log without copying them. It keeps the segment holding the bytes alive, so it stays valid
/// after the key is overwritten or deleted, and after compaction retires the segment.
#[derive(Clone)]
pub struct Value {
    seg: Arc<Segment>,
    span: Span,
}

impl Value {
    /// A handle to the value at `span` of `seg`, whose key is `key_len` bytes long. The
    /// operation holding it (header, key, value) is checked against its checksum now, so
    /// damaged bytes are an error rather than data, and `deref` cannot fail.
    ///
    /// # Errors
    /// `Corrupted` if the operation's checksum does not match; `OutOfBounds` or `Io`
    /// from the segment.
    pub(crate) fn new(seg: Arc<Segment>, key_len: u64, span: Span) -> Result<Value> {
        let header = record::OP_HEADER_BYTES as u64 + key_len;
        let op_start = span.offset().checked_sub(header);
        let op = op_start.map(|start| Span::new(start, header + span.len()));
        let intact = match op {
            Some(op) => record::op_intact(seg.buf().get(op)?),
            None => false,
        };
        if !intact {
            return Err(Error::corrupted(
                &seg.dir.path().join(&seg.name),
                op_start.unwrap_or(0),
                "value's operation checksum mismatch",
            ));
        }
        Ok(Value { seg, span })
    }

    /// The value's bytes (the same as `&*value`).
    pub fn as_bytes(&self) -> &[u8] {
        self
    }

    /// The handle of the key stored just before this value (`key_len` bytes), checked
    /// with it by `new`.
    pub(crate) fn key(&self, key_len: u64) -> Value {
        Value {
            seg: Arc::clone(&self.seg),
            span: Span::new(self.span.offset() - key_len, key_len),
        }
    }
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.seg
            .buf()
            .get(self.span)
            .expect("a value's span was checked when the handle was made")
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Value {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Value {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("segment", &self.seg.name)
            .field("span", &self.span)
            .finish()
    }
}
