//! A segment: one AppendOnly buffer of log records, shared by `Arc` between the store and
//! every value handle that points into it, and the value handle itself. A retired
//! segment's files are removed when the last handle to it goes.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::State;
use super::record;
use crate::{AppendOnly, Dir, Error, Journal, Result, Span};

/// Longest a group-commit leader waits for writers to join before it syncs: about
/// one sync on this class of machine (an msync and an fdatasync, 0.2 to 0.6 ms).
const GATHER: Duration = Duration::from_micros(300);

/// The frame in front of each record of a format-2 AppendOnly, and the seal that ends
/// one; frames start at multiples of this.
const FRAME_BYTES: u64 = AppendOnly::FRAME_BYTES;

/// What the writers of one store share for group commit, whichever segment is active.
#[derive(Default)]
pub(crate) struct Writers {
    /// Writers between entering a write and finishing its append, counted only with
    /// `sync_each_write`: a gathering leader waits for them.
    pub(crate) appending: AtomicUsize,
    /// Syncs made by `Segment::sync_to` since open (successful ones).
    pub(crate) syncs: AtomicU64,
}

/// One segment of the log.
pub(crate) struct Segment {
    /// Structure name of the segment's buffer; its hint is `{name}-hint`.
    pub(crate) name: String,
    /// Always `Some` until dropped; taken in `drop` to close the buffer before removing
    /// its files.
    buf: Option<AppendOnly>,
    dir: Dir,
    retired: AtomicBool,
    /// Group commit: who leads, and what the running sync covers. Writers wait on
    /// `synced` and find their bytes covered when a sync ends, or one of them leads the
    /// next.
    group: Mutex<Group>,
    synced: Condvar,
    /// Writers waiting for bytes that no started sync covers: the next sync's writers.
    waiting: AtomicUsize,
    /// How many writers recent syncs covered: the widest recent round, decaying by one
    /// per sync.
    last_round: AtomicUsize,
    /// The segment before this one, while it may hold bytes not yet durable (a roll
    /// does not wait for its sync): synced before any of this segment's bytes are, so
    /// what is durable is always a prefix of the log. Weak: a segment that compaction
    /// retired and nothing holds any more needs no sync (its values are in the new
    /// generation), and this does not keep its files.
    behind: Mutex<Option<Weak<Segment>>>,
    /// The state journal, while the roll that named this segment has not been synced:
    /// synced before any byte of this segment is, so that no byte of it is ever durable
    /// where the durable state does not name it (open would refuse such a segment).
    /// Weak: a `Value` into this segment must not keep the state journal (and its
    /// name) open after the store is gone; without the store, nothing syncs anyway.
    state_first: Mutex<Option<Weak<Journal<State>>>>,
}

impl Segment {
    /// Opens the segment's buffer. A data file cut short is restored (records carry
    /// checksums, so the zeros cost the records they replace): see
    /// [`AppendOnly::restored`].
    pub(crate) fn open(dir: &Dir, name: String) -> Result<Arc<Segment>> {
        let buf = AppendOnly::open_restoring(dir, &name)?;
        Ok(Arc::new(Segment {
            name,
            buf: Some(buf),
            dir: dir.clone(),
            retired: AtomicBool::new(false),
            group: Mutex::new(Group::default()),
            synced: Condvar::new(),
            waiting: AtomicUsize::new(0),
            last_round: AtomicUsize::new(1),
            behind: Mutex::new(None),
            state_first: Mutex::new(None),
        }))
    }

    /// The segment's buffer.
    pub(crate) fn buf(&self) -> &AppendOnly {
        self.buf.as_ref().expect("present until drop")
    }

    /// Whether a record of `len` bytes appended now, and the seal a roll appends after
    /// it, end within `limit` bytes. A format-2 record takes padding to the next multiple
    /// of 16 and a 16-byte frame before its bytes, and the seal padding and 16 bytes
    /// after them: its bytes alone would let the record, or the seal, spill into a lane
    /// past the limit (a whole lane, 64 MiB for the default segment size).
    pub(crate) fn fits(&self, len: u64, limit: u64) -> bool {
        let used = self.buf().len();
        let end = if self.buf().format() == 1 {
            used + len
        } else {
            let record_end = used.next_multiple_of(FRAME_BYTES) + FRAME_BYTES + len;
            record_end.next_multiple_of(FRAME_BYTES) + FRAME_BYTES
        };
        end <= limit
    }

    /// Appends one record holding `ops`, timestamped now; `value_at` receives each
    /// operation's value offset within the record.
    ///
    /// # Errors
    /// As [`AppendOnly::append_with`].
    pub(crate) fn append_record(
        &self,
        ops: &[record::Op<'_>],
        value_at: &mut Vec<u64>,
    ) -> Result<Span> {
        let now = super::now_ms();
        self.buf()
            .append_with(record::record_len(ops), 1, |_, out| {
                record::encode(ops, now, out, value_at)
            })
    }

    pub(crate) fn hint_name(&self) -> String {
        hint_name(&self.name)
    }

    /// Makes every byte below `end` durable, sharing syncs with concurrent callers
    /// (group commit). One caller at a time leads a sync; the others wait for it and
    /// return if it covered them. Before syncing, the leader waits, for up to
    /// [`GATHER`], until as many writers wait for a sync as recent syncs covered and
    /// none is in the middle of an append (`writers.appending`): writers just woken
    /// by the last sync are on their way back with their next write, and one sync can
    /// cover them all. Only writers whose bytes no started sync covers are counted,
    /// so a writer woken but not yet gone does not count twice. The expected count
    /// decays by one writer per sync, so a writer that has been alone for a while
    /// never waits. The segment behind this one is synced first
    /// ([`sync_behind`](Self::sync_behind)).
    pub(crate) fn sync_to(&self, end: u64, writers: &Writers) -> Result<()> {
        self.sync_behind()?;
        // The round this caller counted itself in `waiting` for, if any.
        let mut counted = None;
        let mut group = self.group.lock();
        loop {
            if self.buf().durable_len() >= end {
                return Ok(());
            }
            if group.leading && end <= group.covers {
                // The running sync covers these bytes.
                self.synced.wait(&mut group);
                continue;
            }
            if counted != Some(group.round) {
                self.waiting.fetch_add(1, Ordering::AcqRel);
                counted = Some(group.round);
            }
            if group.leading {
                self.synced.wait(&mut group);
                continue;
            }
            group.leading = true;
            drop(group);
            // Hands leadership back even if the sync panics, so waiters never hang.
            let done = Done(self);
            let expected = self.last_round.load(Ordering::Acquire);
            let start = Instant::now();
            while (self.waiting.load(Ordering::Acquire) < expected
                || writers.appending.load(Ordering::Acquire) > 0)
                && start.elapsed() < GATHER
            {
                std::thread::yield_now();
            }
            // Every writer counted so far has its bytes below `covers`: the sync below
            // covers them, and anyone counted from here on waits for the next one.
            let round = {
                let mut group = self.group.lock();
                group.round += 1;
                group.covers = self.buf().len();
                self.waiting.swap(0, Ordering::AcqRel)
            };
            let result = self.buf().sync();
            if result.is_ok() {
                writers.syncs.fetch_add(1, Ordering::Relaxed);
            }
            // Remember the widest recent round, forgetting slowly, so that one short
            // round does not shrink the next ones.
            let last = self.last_round.load(Ordering::Acquire);
            self.last_round
                .store(round.max(last.saturating_sub(1)).max(1), Ordering::Release);
            drop(done);
            result?;
            group = self.group.lock();
        }
    }

    /// Records that `prev`, the segment this one follows, may not be durable yet:
    /// [`sync_behind`](Self::sync_behind) syncs it before any sync of this one.
    pub(crate) fn follow(&self, prev: &Arc<Segment>) {
        *self.behind.lock() = Some(Arc::downgrade(prev));
    }

    /// Records that `state` (changed in memory by the roll that named this segment) must
    /// be synced before any byte of this segment is.
    pub(crate) fn state_first(&self, state: Weak<Journal<State>>) {
        *self.state_first.lock() = Some(state);
    }

    /// Makes the segments before this one durable, if a roll left them unsynced: whole,
    /// since they take no more writes. Called before this segment's bytes are synced.
    ///
    /// # Errors
    /// As [`AppendOnly::sync`].
    pub(crate) fn sync_behind(&self) -> Result<()> {
        let prev = self.behind.lock().as_ref().and_then(Weak::upgrade);
        if let Some(prev) = prev {
            prev.sync_behind()?;
            prev.buf().sync_recorded()?;
            // Finished: it takes no more writes, so it keeps no descriptor (a store of
            // many segments rolled faster than the finisher finishes them would run out).
            prev.buf().close_descriptors();
        }
        *self.behind.lock() = None;
        let state = self.state_first.lock().as_ref().and_then(Weak::upgrade);
        if let Some(state) = state {
            state.sync()?;
        }
        *self.state_first.lock() = None;
        Ok(())
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

/// A segment's group-commit state.
#[derive(Default)]
struct Group {
    /// A leader is gathering writers or syncing.
    leading: bool,
    /// While the leader syncs: the length its sync covers (at least).
    covers: u64,
    /// Bumped as each sync starts: a writer counted in `Segment::waiting` for an earlier
    /// round and still not covered counts itself again.
    round: u64,
}

/// Ends a group-commit leader's turn when dropped: hands leadership back, wakes the
/// waiters.
struct Done<'a>(&'a Segment);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.group.lock().leading = false;
        self.0.synced.notify_all();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment that follows another syncs it, whole, before any of its own bytes, so
    /// what is durable stays a prefix of the log; a segment dropped meanwhile (retired
    /// by compaction) needs nothing.
    #[test]
    fn a_sync_first_syncs_the_segment_behind() {
        let dir = Dir::temporary().unwrap();
        let writers = Writers::default();
        let first = Segment::open(&dir, "first".into()).unwrap();
        let second = Segment::open(&dir, "second".into()).unwrap();
        first.buf().append(b"finished but not synced").unwrap();
        second.follow(&first);
        let end = second.buf().append(b"next").unwrap().end();
        assert_eq!(first.buf().durable_len(), 0);
        second.sync_to(end, &writers).unwrap();
        assert_eq!(first.buf().durable_len(), first.buf().len());
        assert_eq!(second.buf().durable_len(), end);

        // Nothing appended to `third` yet: a sync to 0 still syncs what is behind.
        let third = Segment::open(&dir, "third".into()).unwrap();
        second.buf().append(b"more").unwrap();
        third.follow(&second);
        third.sync_to(0, &writers).unwrap();
        assert_eq!(second.buf().durable_len(), second.buf().len());

        let fourth = Segment::open(&dir, "fourth".into()).unwrap();
        fourth.follow(&third);
        drop(third);
        fourth.sync_behind().unwrap();
    }
}
