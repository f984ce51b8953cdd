//! A segment: one AppendOnly buffer of log records, shared by `Arc` between the store and
//! every value handle that points into it, and the value handle itself. A retired
//! segment's files are removed when the last handle to it goes.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::thread::futex::{self, Timespec};

use super::State;
use super::record;
use crate::{AppendOnly, Dir, Error, Journal, Result, Span};

/// Longest a round of group commit gathers writers before one of them syncs it, counted
/// from its first writer (or from the end of the sync before, for writers that came
/// during it): about one sync on this class of machine (an msync of the new bytes,
/// 0.1 to 0.6 ms).
const GATHER: Duration = Duration::from_micros(300);

/// The frame in front of each record of a format-2 AppendOnly, and the seal that ends
/// one; frames start at multiples of this.
const FRAME_BYTES: u64 = AppendOnly::FRAME_BYTES;

/// What the writers of one store share for group commit, whichever segment is active.
#[derive(Default)]
pub(crate) struct Writers {
    /// Writers between entering a write and finishing its append, counted only with
    /// `sync_each_write`: a round of group commit is not complete while any is.
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
    /// Group commit: who leads, what the running sync covers, who waits for the next.
    group: Mutex<Group>,
    /// Syncs ended (successfully or not), wrapping: the word sleepers wait on (a
    /// `futex`), changed and woken by each leader as its sync ends.
    finished: AtomicU32,
    /// Whether `behind` or `state_first` may hold something to sync: spares every
    /// durable write their two locks once the roll that set them is synced.
    first: AtomicBool,
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
            finished: AtomicU32::new(0),
            first: AtomicBool::new(false),
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
    /// (group commit). One caller at a time leads a sync; the others sleep until it ends
    /// and return if it covered them.
    ///
    /// A caller whose bytes no started sync covers counts itself for the next one and
    /// leads it at once if the round is complete: as many callers counted as recent
    /// syncs covered, and no writer in the middle of an append (`writers.appending`),
    /// whose bytes one more moment would let the same sync cover. Otherwise it sleeps
    /// until a sync ends or the round has gathered for [`GATHER`], and then leads if no
    /// one else has. So the writer that completes a round syncs it, on the core it is
    /// already running on: no thread spins, and none is woken only to start a sync. The
    /// expected round decays by one writer per sync, so a writer that has been alone
    /// for a while never waits. Sleepers wait on one word (`finished`, a futex) that
    /// each leader bumps as its sync ends, waking them all with one call, so the writers
    /// it covered are runnable at once rather than one after another through a lock.
    /// The segment behind this one is synced first ([`sync_behind`](Self::sync_behind)).
    pub(crate) fn sync_to(&self, end: u64, writers: &Writers) -> Result<()> {
        self.sync_behind()?;
        // The round this caller counted itself in, if any.
        let mut counted = None;
        loop {
            if self.buf().durable_len() >= end {
                return Ok(());
            }
            let mut group = self.group.lock();
            if self.buf().durable_len() >= end {
                return Ok(());
            }
            // Bytes no started sync covers count for the next round, once per round.
            let covered = group.leading && end <= group.covers;
            if !covered && counted != Some(group.round) {
                group.waiting += 1;
                group.since.get_or_insert_with(Instant::now);
                counted = Some(group.round);
            }
            if group.leading {
                // Sleep until the running sync ends: it covers these bytes, or it
                // started before they were appended and the next one will.
                let seen = self.finished.load(Ordering::Acquire);
                drop(group);
                self.sleep(seen, None);
                continue;
            }
            let gathered = group.since.map_or(Duration::ZERO, |since| since.elapsed());
            let complete =
                group.waiting >= group.expected && writers.appending.load(Ordering::Acquire) == 0;
            if !complete && gathered < GATHER {
                let seen = self.finished.load(Ordering::Acquire);
                drop(group);
                // Woken by a sync's end (someone else completed the round), or the
                // round's time is up and this caller leads it.
                self.sleep(seen, Some(GATHER - gathered));
                continue;
            }
            // Lead. Every writer counted so far has its bytes below `covers`: the sync
            // covers them, and anyone counted from here on waits for the next one.
            group.leading = true;
            group.round += 1;
            group.covers = self.buf().len();
            group.since = None;
            let size = std::mem::take(&mut group.waiting);
            drop(group);
            // Hands leadership back and wakes the sleepers even if the sync panics, so
            // waiters never hang.
            let done = Done { seg: self, size };
            let result = self.buf().sync();
            if result.is_ok() {
                writers.syncs.fetch_add(1, Ordering::Relaxed);
            }
            drop(done);
            result?;
        }
    }

    /// Sleeps until a sync ends after `seen` was read from `finished` (under the group
    /// lock, so that a sync ending in between is never missed), or for `timeout`.
    /// Every sleeper is woken by the one `futex` wake a leader makes as its sync ends, so
    /// the writers it covered are all runnable at once.
    fn sleep(&self, seen: u32, timeout: Option<Duration>) {
        let timeout = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        // Returns at once if `finished` moved on (EAGAIN); a signal (EINTR) or the timeout
        // ends the sleep early, and the caller checks again either way.
        let _ = futex::wait(
            &self.finished,
            futex::Flags::PRIVATE,
            seen,
            timeout.as_ref(),
        );
    }

    /// Records that `prev`, the segment this one follows, may not be durable yet:
    /// [`sync_behind`](Self::sync_behind) syncs it before any sync of this one.
    pub(crate) fn follow(&self, prev: &Arc<Segment>) {
        *self.behind.lock() = Some(Arc::downgrade(prev));
        self.first.store(true, Ordering::Release);
    }

    /// Records that `state` (changed in memory by the roll that named this segment) must
    /// be synced before any byte of this segment is.
    pub(crate) fn state_first(&self, state: Weak<Journal<State>>) {
        *self.state_first.lock() = Some(state);
        self.first.store(true, Ordering::Release);
    }

    /// Makes the segments before this one durable, if a roll left them unsynced: whole,
    /// since they take no more writes. Called before this segment's bytes are synced.
    ///
    /// # Errors
    /// As [`AppendOnly::sync`].
    pub(crate) fn sync_behind(&self) -> Result<()> {
        if !self.first.load(Ordering::Acquire) {
            return Ok(());
        }
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
        self.first.store(false, Ordering::Release);
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
struct Group {
    /// A leader is syncing.
    leading: bool,
    /// While the leader syncs: the length its sync covers (at least).
    covers: u64,
    /// Bumped as each sync starts: a writer counted in `waiting` for an earlier round
    /// and still not covered counts itself again.
    round: u64,
    /// Writers whose bytes no started sync covers: the next round's.
    waiting: usize,
    /// When the first of them started waiting.
    since: Option<Instant>,
    /// How many writers a round waits for: the widest recent round, decaying by one
    /// writer per sync, at least 1.
    expected: usize,
}

impl Default for Group {
    fn default() -> Group {
        Group {
            leading: false,
            covers: 0,
            round: 0,
            waiting: 0,
            since: None,
            expected: 1,
        }
    }
}

/// Ends a group-commit leader's turn when dropped: hands leadership back, remembers the
/// round's size, and wakes the sleepers.
struct Done<'a> {
    seg: &'a Segment,
    /// Writers the round covered.
    size: usize,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        {
            let mut group = self.seg.group.lock();
            group.leading = false;
            // The widest recent round, forgotten slowly, so that one short round does
            // not shrink the next ones.
            group.expected = self.size.max(group.expected.saturating_sub(1)).max(1);
            // Writers that counted themselves during the sync gather from its end:
            // those it covered are on their way back with their next writes.
            group.since = (group.waiting > 0).then(Instant::now);
            self.seg.finished.fetch_add(1, Ordering::Release);
        }
        // One wake for every sleeper (the count is an `int` to the kernel: `u32::MAX`
        // would read as -1 and wake one); failure is impossible for a valid address, and a
        // sleeper would still wake by its timeout or at the next sync's end.
        let _ = futex::wake(&self.seg.finished, futex::Flags::PRIVATE, i32::MAX as u32);
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

    /// Eight writers appending and syncing at once share syncs and every byte each
    /// waited for is durable when its call returns; a writer left alone afterwards is
    /// never stuck waiting for the others (it leads by the gathering timeout), and the
    /// round it waits for shrinks back to itself, one writer per sync.
    #[test]
    fn group_commit_shares_syncs_and_forgets_a_wide_round() {
        const THREADS: usize = 8;
        const EACH: usize = 50;
        let dir = Dir::temporary().unwrap();
        let writers = Writers::default();
        let seg = Segment::open(&dir, "seg".into()).unwrap();
        // The widest round expected while the writers run: once they stop, one leaves
        // per sync and the expectation decays with them (found by review: checked after
        // the run, it was sometimes back to 1).
        let widest = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (seg, writers, widest) = (&seg, &writers, &widest);
                scope.spawn(move || {
                    for i in 0..EACH {
                        writers.appending.fetch_add(1, Ordering::AcqRel);
                        let end = seg.buf().append(&[t as u8; 100]).unwrap().end();
                        writers.appending.fetch_sub(1, Ordering::AcqRel);
                        seg.sync_to(end, writers).unwrap();
                        assert!(seg.buf().durable_len() >= end, "writer {t}, write {i}");
                        widest.fetch_max(seg.group.lock().expected, Ordering::Relaxed);
                    }
                });
            }
        });
        let shared = writers.syncs.load(Ordering::Relaxed);
        assert!(
            shared < (THREADS * EACH) as u64,
            "{} durable writes took {shared} syncs",
            THREADS * EACH
        );
        assert!(
            widest.load(Ordering::Relaxed) > 1,
            "the rounds were wider than one"
        );
        for _ in 0..THREADS {
            let end = seg.buf().append(b"alone").unwrap().end();
            seg.sync_to(end, &writers).unwrap();
            assert!(seg.buf().durable_len() >= end);
        }
        assert_eq!(seg.group.lock().expected, 1);
        let before = writers.syncs.load(Ordering::Relaxed);
        let end = seg.buf().append(b"alone again").unwrap().end();
        seg.sync_to(end, &writers).unwrap();
        assert_eq!(writers.syncs.load(Ordering::Relaxed), before + 1);
    }

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
