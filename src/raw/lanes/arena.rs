//! The append-only discipline over lanes: bytes are reserved with an atomic cursor, copied
//! in, then published in reservation order. Published bytes are never written again, so
//! they may be borrowed as `&[u8]` for as long as the arena lives.
//!
//! Invariant: every byte below `published` was fully written before `published` passed
//! it (Release store, Acquire load), and nothing writes below `reserved` twice.
//! Invariant: `published <= reserved`, and `published` never covers a reservation whose
//! copy is still running, so a snapshot of `published` never covers a gap.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::{ALLOC_STEP_BYTES, Lanes};
use crate::error::{Error, Result};
use crate::limits::LANES_MAX;
use crate::raw::frame::{self, FRAME_ALIGN, FRAME_BYTES, Head, Kind};

/// The append cursor asks for the next stretch of this many bytes to be faulted in each
/// time it enters a new one: one allocation step, so that the space allocated ahead of
/// the cursor stays within two steps.
const PREFAULT_BYTES: u64 = ALLOC_STEP_BYTES;
/// From this lane on, appends ask the helper to work ahead (small buffers, such as hint
/// files, never start a helper).
const HELPER_FIRST_LANE: usize = 3;

/// Append-only bytes over unit-size-1 lanes.
#[derive(Debug)]
pub(crate) struct Arena {
    lanes: Arc<Lanes>,
    reserved: AtomicU64,
    published: AtomicU64,
    /// The helper works ahead only below this position (`u64::MAX`: no limit): an owner
    /// that will not append past it saves the lanes it would never use.
    reach: AtomicU64,
    /// The helper thread that prepares lanes ahead of the cursor, started on first use;
    /// `None` inside if it could not be started. Stopped and joined on drop.
    helper: OnceLock<Option<Helper>>,
    /// Format 2: every record behind a frame (`raw/frame.rs`). `None`: format 1, bare bytes.
    framing: Option<Framing>,
    /// Set once a Seal frame is reserved: nothing may follow it.
    sealed: AtomicBool,
    /// One past the Seal frame once it is reserved (`u64::MAX` before): the buffer's
    /// seal is published once `published` reaches it.
    sealed_end: AtomicU64,
    /// Bytes handed to `flush` so far (msync ranges), for tests and statistics.
    flushed: AtomicU64,
}

/// What a framed arena writes into every frame: the buffer's nonce, and this session's
/// epoch (0 until the owner has taken one durably: no append may run before).
#[derive(Debug)]
pub(crate) struct Framing {
    pub(crate) nonce: u64,
    pub(crate) epoch: AtomicU32,
}

/// What a walk of the frames past the trusted length found (see [`scan_tail`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    /// One past the last valid record (or seal): where appends resume.
    pub(crate) end: u64,
    /// The epoch of the last record below `end`.
    pub(crate) last_epoch: u32,
    /// Whether a Seal frame ends the buffer.
    pub(crate) sealed: bool,
}

/// One step of a frame walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A record at this payload position and length, whose frame holds.
    Record(u64, u64, u32),
    /// A Seal frame.
    Seal,
    /// The frame at this position does not hold (or does not fit its lane).
    Bad(u64),
    /// No more frames: the end of the bytes walked.
    End,
}

/// What the helper is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    /// Allocate and fault in the stretch starting at this position (creating its lane
    /// first if need be).
    Stretch(u64),
    /// Create this lane (and any before it), allocating nothing but its header page: the
    /// cursor has only entered the lane before, and a stretch job will allocate the new
    /// lane's first step once the cursor comes near it.
    Lane(usize),
}

/// The thread that works ahead of the append cursor: it creates the lane the cursor is
/// about to need and faults in the pages it is about to write.
#[derive(Debug)]
struct Helper {
    jobs: Mutex<Sender<Job>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Arena {
    /// An arena over `lanes` (unit size 1) whose first `len` bytes are already written.
    pub(crate) fn new(lanes: Lanes, len: u64) -> Self {
        Arena {
            lanes: Arc::new(lanes),
            reserved: AtomicU64::new(len),
            published: AtomicU64::new(len),
            reach: AtomicU64::new(u64::MAX),
            helper: OnceLock::new(),
            framing: None,
            sealed: AtomicBool::new(false),
            sealed_end: AtomicU64::new(u64::MAX),
            flushed: AtomicU64::new(0),
        }
    }

    /// A format-2 arena: every record goes behind a frame. `sealed` if the walk at open
    /// found a Seal frame.
    pub(crate) fn framed(lanes: Lanes, len: u64, framing: Framing, sealed: bool) -> Self {
        let mut arena = Arena::new(lanes, len);
        arena.framing = Some(framing);
        arena.sealed = AtomicBool::new(sealed);
        if sealed {
            arena.sealed_end = AtomicU64::new(len);
        }
        arena
    }

    /// The framing, if this is a format-2 arena.
    pub(crate) fn framing(&self) -> Option<&Framing> {
        self.framing.as_ref()
    }

    /// Whether a Seal frame was written or found.
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// One past the Seal frame once one is reserved, else `u64::MAX`: a length at or
    /// past it holds the seal and every record.
    pub(crate) fn sealed_end(&self) -> u64 {
        self.sealed_end.load(Ordering::Acquire)
    }

    /// Bytes handed to `flush` so far.
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed)
    }

    /// The lanes under the arena.
    pub(crate) fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Keeps the helper from preparing anything at or past `reach`.
    pub(crate) fn limit_ahead(&self, reach: u64) {
        self.reach.store(reach, Ordering::Relaxed);
    }

    /// Bytes published so far: every byte below is written and immutable.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Reserves `len` bytes at a fresh position aligned to `align` (a power of two) that
    /// does not straddle two lanes, lets `fill` write them, publishes them, and returns
    /// their offset. `fill` gets the offset and the bytes, which may hold stale data from
    /// before a crash: it must write all of them. Gaps left for alignment or at a lane's
    /// end are zeroed, so every published byte was written in this arena's lifetime.
    ///
    /// If `fill` panics, the bytes are published as they are, so that later appends are
    /// not blocked forever.
    ///
    /// Records are published in reservation order, so an append made by `fill` itself
    /// would wait for its own caller: one made on the same thread is refused
    /// (`Reentrant`); one `fill` hands to another thread and waits for cannot be seen.
    ///
    /// # Errors
    /// `LimitExceeded` when no lane can take it; `Io` when a new lane cannot be created
    /// (for example a full disk); `Reentrant` when called from this arena's own `fill` on
    /// the same thread. On error nothing is reserved.
    pub(crate) fn append_with(
        &self,
        len: u64,
        align: u64,
        fill: impl FnOnce(u64, &mut [u8]),
    ) -> Result<u64> {
        debug_assert!(align.is_power_of_two());
        if Filling::is_filling(self) {
            return Err(Error::Reentrant {
                call: "an AppendOnly append",
                inside: "an append_with fill of the same buffer",
            });
        }
        if let Some(framing) = &self.framing {
            return self.append_framed(framing, len, align, fill);
        }
        let mut cur = self.reserved.load(Ordering::Relaxed);
        let (start, lane, within) = loop {
            let (start, lane, within) = self.place(cur, len, align)?;
            if start == cur && len == 0 {
                // An empty record at the cursor takes no space, and a CAS that leaves the
                // cursor where it is would let another appender take the same start: just
                // wait until everything before it is published.
                wait_until_published(&self.published, cur);
                return Ok(cur);
            }
            // Create the lane (and any skipped ones, whose bytes get zeroed) before
            // reserving, so a failure leaves no hole behind. Lanes are created in order,
            // so a mapped lane means the ones before it exist.
            if !self.lanes.is_mapped(lane) {
                let first = self.lanes.locate(cur).map_or(lane, |(l, _)| l);
                for l in first..=lane {
                    self.lanes.ensure(l)?;
                }
            }
            // And their disk space, the gap before the record included (it is zeroed):
            // usually a bit test, as the helper allocates ahead of the cursor.
            self.lanes.allocate(cur, start + len)?;
            match self.reserved.compare_exchange_weak(
                cur,
                start + len,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break (start, lane, within),
                Err(now) => cur = now,
            }
        };
        // Publishes on drop, so a panicking `fill` cannot block later appenders.
        let _publish = Publish {
            arena: self,
            from: cur,
            end: start + len,
        };
        self.zero(cur, start)?;
        if len == 0 {
            return Ok(start);
        }
        let end = start + len;
        // Each new stretch from the fourth lane on (512 KiB into an AppendOnly) asks the
        // helper to work ahead; a stretch of a lane under 4 MiB is the whole lane. Small
        // buffers, such as hint files, never start a helper.
        if lane >= HELPER_FIRST_LANE && self.stretch_of(end) != self.stretch_of(cur) {
            self.prefault_ahead(end);
        }
        // `start..start+len` was reserved by the CAS above for this call alone (`len > 0`,
        // so the cursor moved), lies inside one lane (checked by `place`), and is above
        // `published`, so no reader can see it until `_publish` publishes it.
        // SAFETY: exclusive to this call and invisible to readers, as just said.
        let dest = unsafe { self.lanes.slice_mut(lane, within, len)? };
        let _filling = Filling::start(self);
        fill(start, dest);
        Ok(start)
    }

    /// The framed append (format 2): reserves the frames in front of the record (a Gap
    /// frame for alignment, a LaneEnd frame in each lane it skips) and the record's own,
    /// lets `fill` write the payload, then writes the record's frame, whose checksum covers
    /// the payload. Returns the payload's offset.
    fn append_framed(
        &self,
        framing: &Framing,
        len: u64,
        align: u64,
        fill: impl FnOnce(u64, &mut [u8]),
    ) -> Result<u64> {
        let epoch = framing.epoch.load(Ordering::Acquire);
        debug_assert!(
            epoch > 0,
            "the owner takes an epoch before the first append"
        );
        if len > u64::from(u32::MAX) {
            return Err(Error::limit("frame length", len, u64::from(u32::MAX)));
        }
        // Acquire: a cursor a seal left carries its mark (see `seal`).
        let mut cur = self.reserved.load(Ordering::Acquire);
        let (payload, lane, within) = loop {
            if self.is_sealed() {
                return Err(self.sealed_error());
            }
            let (payload, lane, within) = self.place_framed(cur, len, align)?;
            if !self.lanes.is_mapped(lane) {
                let first = self.lanes.locate(cur).map_or(lane, |(l, _)| l);
                for l in first..=lane {
                    self.lanes.ensure(l)?;
                }
            }
            self.lanes.allocate(cur, payload + len)?;
            match self.reserved.compare_exchange_weak(
                cur,
                payload + len,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => break (payload, lane, within),
                Err(now) => cur = now,
            }
        };
        let end = payload + len;
        let _publish = Publish {
            arena: self,
            from: cur,
            end,
        };
        self.write_markers(framing, epoch, cur, payload - FRAME_BYTES)?;
        // (A stretch of a lane under 4 MiB is the whole lane: entering one is a new stretch.)
        if lane >= HELPER_FIRST_LANE && self.stretch_of(end) != self.stretch_of(cur) {
            self.prefault_ahead(end);
        }
        let frame_at = payload - FRAME_BYTES;
        // `frame_at..end` was reserved by the CAS above for this call alone, lies in one
        // lane (`place_framed` puts the frame in the payload's lane), and is above
        // `published`, so no reader sees it until `_publish` publishes it.
        // SAFETY: exclusive to this call and invisible to readers, as just said.
        let bytes = unsafe {
            self.lanes
                .slice_mut(lane, within - FRAME_BYTES, len + FRAME_BYTES)?
        };
        frame::write_head(
            bytes,
            Head {
                kind: Kind::Record,
                len: len as u32,
                epoch,
            },
        );
        // A `fill` that panics leaves its bytes as they are: its frame becomes a Gap over
        // them, so that the walk goes on past it to the records after.
        let mut framed = FrameOnDrop {
            bytes,
            nonce: framing.nonce,
            at: frame_at,
            epoch,
            filled: false,
        };
        {
            let _filling = Filling::start(self);
            fill(payload, &mut framed.bytes[FRAME_BYTES as usize..]);
        }
        framed.filled = true;
        Ok(payload)
    }

    /// Where the payload of a framed record of `len` bytes goes when the cursor is at
    /// `cur`: its offset, lane and position in the lane. Its frame is the 16 bytes before
    /// it, in the same lane.
    fn place_framed(&self, cur: u64, len: u64, align: u64) -> Result<(u64, usize, u64)> {
        let mut at = cur.next_multiple_of(FRAME_ALIGN);
        loop {
            let Some((lane, within)) = self.lanes.locate(at) else {
                return Err(Error::limit(
                    "LANES_MAX",
                    LANES_MAX as u64 + 1,
                    LANES_MAX as u64,
                ));
            };
            // Right after the frame if that is aligned; else after a Gap frame.
            let payload = if (at + FRAME_BYTES).is_multiple_of(align) {
                at + FRAME_BYTES
            } else {
                (at + 2 * FRAME_BYTES).next_multiple_of(align)
            };
            let lane_start = self.lanes.lane_start(lane);
            let lane_end = lane_start + self.lanes.lane_units(lane);
            if payload + len <= lane_end {
                return Ok((payload, lane, payload - lane_start));
            }
            // A LaneEnd frame at `at`, and on to the next lane.
            debug_assert!(within + FRAME_BYTES <= self.lanes.lane_units(lane));
            at = lane_end;
        }
    }

    /// Writes what lies between the cursor `from` and the record's frame at `to`: zeros up
    /// to a multiple of 16, then a Gap frame (alignment) or a LaneEnd frame per lane
    /// skipped, the rest zeros.
    fn write_markers(&self, framing: &Framing, epoch: u32, from: u64, to: u64) -> Result<()> {
        let mut at = from.next_multiple_of(FRAME_ALIGN);
        self.zero(from, at.min(to))?;
        while at < to {
            let Some((lane, within)) = self.lanes.locate(at) else {
                break;
            };
            let lane_end = self.lanes.lane_start(lane) + self.lanes.lane_units(lane);
            let (kind, next) = if to < lane_end {
                (Kind::Gap, to)
            } else {
                (Kind::LaneEnd, lane_end)
            };
            let skipped = next - at - FRAME_BYTES;
            // Part of this call's reservation (see `append_framed`).
            // SAFETY: nobody else reads or writes a reservation until it is published.
            let bytes = unsafe { self.lanes.slice_mut(lane, within, FRAME_BYTES)? };
            frame::write_head(
                bytes,
                Head {
                    kind,
                    len: if kind == Kind::Gap { skipped as u32 } else { 0 },
                    epoch,
                },
            );
            frame::seal_checksum(framing.nonce, at, bytes);
            self.zero(at + FRAME_BYTES, next)?;
            at = next;
        }
        Ok(())
    }

    /// Appends a Seal frame: nothing can be appended after it, and a walk at open reports
    /// the buffer as sealed. Returns the offset one past it.
    ///
    /// # Errors
    /// As an append.
    pub(crate) fn seal(&self) -> Result<u64> {
        let Some(framing) = &self.framing else {
            return Err(Error::Incompatible {
                path: self.lanes.lane_path(0),
                what: "a format-1 buffer has no frames, so it cannot be sealed".into(),
            });
        };
        let epoch = framing.epoch.load(Ordering::Acquire);
        // Marked sealed before the seal is reserved, and the reservation released: an
        // append that reads the cursor the seal left (Acquire) then sees the mark, so no
        // record is reserved after the seal. Marked after the reservation instead, an
        // append retrying its CAS in between took the place after the seal (found by
        // review: an append after the seal returned Ok, and no walk ever reached it).
        if self.sealed.swap(true, Ordering::AcqRel) {
            return Err(self.sealed_error());
        }
        let unseal = |e: Error| {
            self.sealed.store(false, Ordering::Release);
            e
        };
        let mut cur = self.reserved.load(Ordering::Acquire);
        let at = loop {
            let at = cur.next_multiple_of(FRAME_ALIGN);
            let Some((lane, _)) = self.lanes.locate(at) else {
                return Err(unseal(Error::limit(
                    "LANES_MAX",
                    LANES_MAX as u64 + 1,
                    LANES_MAX as u64,
                )));
            };
            self.lanes.ensure(lane).map_err(unseal)?;
            self.lanes.allocate(cur, at + FRAME_BYTES).map_err(unseal)?;
            match self.reserved.compare_exchange(
                cur,
                at + FRAME_BYTES,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break at,
                Err(now) => cur = now,
            }
        };
        self.sealed_end.store(at + FRAME_BYTES, Ordering::Release);
        let _publish = Publish {
            arena: self,
            from: cur,
            end: at + FRAME_BYTES,
        };
        self.zero(cur, at)?;
        let (lane, within) = self.lanes.locate(at).expect("checked above");
        // Reserved above for this call alone, above `published`.
        // SAFETY: nobody else reads or writes a reservation until it is published.
        let bytes = unsafe { self.lanes.slice_mut(lane, within, FRAME_BYTES)? };
        frame::write_head(
            bytes,
            Head {
                kind: Kind::Seal,
                len: 0,
                epoch,
            },
        );
        frame::seal_checksum(framing.nonce, at, bytes);
        Ok(at + FRAME_BYTES)
    }

    fn sealed_error(&self) -> Error {
        Error::Sealed {
            path: self
                .lanes
                .lane_path(0)
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// The next step of a walk of the published frames from the frame position `at`
    /// (a multiple of 16 where a frame is expected), and the position of the frame after
    /// it. Checks each frame's checksum, not its epoch (every published frame is trusted
    /// to be in order).
    pub(crate) fn step(&self, at: u64) -> Result<(Step, u64)> {
        let framing = self.framing.as_ref().expect("framed arenas only");
        let published = self.published();
        walk_step(
            &self.lanes,
            framing.nonce,
            at,
            published,
            None,
            |lane, within, n| {
                // SAFETY: published bytes are never written again (see `get`).
                unsafe { self.lanes.slice(lane, within, n) }
            },
        )
    }

    /// The start of the stretch holding `pos`. Stretches are the lanes'
    /// [`PREFAULT_BYTES`] pieces, counted from each lane's start (a lane smaller than that
    /// is one stretch), so that a stretch is exactly one allocation step of its lane and
    /// preparing it allocates no more than that.
    fn stretch_of(&self, pos: u64) -> u64 {
        match self.lanes.locate(pos) {
            Some((lane, within)) => {
                self.lanes.lane_start(lane) + within / PREFAULT_BYTES * PREFAULT_BYTES
            }
            None => pos,
        }
    }

    /// The first stretch start at or after `pos`.
    fn stretch_from(&self, pos: u64) -> u64 {
        let Some((lane, within)) = self.lanes.locate(pos) else {
            return pos;
        };
        let next = within.next_multiple_of(PREFAULT_BYTES);
        if next < self.lanes.lane_units(lane) {
            self.lanes.lane_start(lane) + next
        } else {
            self.lanes.lane_start(lane + 1)
        }
    }

    /// Asks the helper thread to prepare the two stretches after the one holding `at`:
    /// to create their lane if it does not exist yet (creating a lane fsyncs two files,
    /// about a millisecond), and to fault in their pages, so that appends find their pages
    /// mapped (a page fault on a shared file mapping costs about a microsecond, and the
    /// other core can take it). The nearer stretch was usually asked for already; doing it
    /// again costs little.
    fn prefault_ahead(&self, at: u64) {
        let next = self.stretch_from(at);
        let reach = self.reach.load(Ordering::Relaxed);
        for ahead in [next, self.stretch_from(next + 1)] {
            if ahead < reach {
                self.send_ahead(Job::Stretch(ahead));
            }
        }
        // The lane after the one `at` is in, asked for as soon as the cursor enters a lane:
        // creating it fsyncs, which waits for the device, and the device may be busy for
        // a long while (writing back a finished log segment, say); the current lane holds
        // as many bytes as all before it, so this leaves the most time there is.
        if let Some((lane, _)) = self.lanes.locate(at)
            && lane + 1 < LANES_MAX
            && !self.lanes.is_mapped(lane + 1)
        {
            let start = self.lanes.lane_start(lane + 1);
            if start < reach {
                self.send_ahead(Job::Lane(lane + 1));
            }
        }
    }

    /// Creates the lanes that bytes `0..len` lie in (no more than the owner's reach), so
    /// that appends there find them.
    ///
    /// # Errors
    /// As creating a lane.
    pub(crate) fn prepare(&self, len: u64) -> Result<()> {
        self.lanes
            .ensure_below(len.min(self.reach.load(Ordering::Relaxed)))
    }

    fn send_ahead(&self, job: Job) {
        let helper = self.helper.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let stop = Arc::new(AtomicBool::new(false));
            let lanes = Arc::clone(&self.lanes);
            let stopped = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("accretion-ahead".into())
                .spawn(move || {
                    for job in rx {
                        if stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        prepare(&lanes, job);
                    }
                })
                .ok()
                .map(|thread| Helper {
                    jobs: Mutex::new(tx),
                    stop,
                    thread,
                })
        });
        if let Some(helper) = helper {
            // The thread only ends once the sender is gone, so this cannot fail; if it
            // did, the appender would just create lanes and take page faults itself.
            let _ = helper.jobs.lock().send(job);
        }
    }

    /// Zeroes the reserved gap `from..to`, lane by lane.
    fn zero(&self, from: u64, to: u64) -> Result<()> {
        let mut at = from;
        while at < to {
            let Some((lane, within)) = self.lanes.locate(at) else {
                break;
            };
            let n = (self.lanes.lane_units(lane) - within).min(to - at);
            // `from..to` is part of this call's reservation (see `append_with`).
            // SAFETY: nobody else reads or writes a reservation until it is published.
            unsafe { self.lanes.slice_mut(lane, within, n)? }.fill(0);
            at += n;
        }
        Ok(())
    }

    /// Where a record of `len` bytes goes when the cursor is at `cur`.
    fn place(&self, cur: u64, len: u64, align: u64) -> Result<(u64, usize, u64)> {
        let mut start = cur.next_multiple_of(align);
        loop {
            let Some((lane, within)) = self.lanes.locate(start) else {
                return Err(Error::limit(
                    "LANES_MAX",
                    LANES_MAX as u64 + 1,
                    LANES_MAX as u64,
                ));
            };
            if within + len <= self.lanes.lane_units(lane) {
                return Ok((start, lane, within));
            }
            // A record never straddles lanes: skip to the next lane's start, which is
            // aligned to any power of two up to the first lane's size.
            start = self.lanes.lane_start(lane + 1).next_multiple_of(align);
        }
    }

    /// The published bytes `offset..offset+len`, or `None` if they are not all published
    /// or straddle two lanes.
    pub(crate) fn get(&self, offset: u64, len: u64) -> Result<Option<&[u8]>> {
        let Some(end) = offset.checked_add(len) else {
            return Ok(None);
        };
        if end > self.published() {
            return Ok(None);
        }
        let Some((lane, within)) = self.lanes.locate(offset) else {
            return Ok(None);
        };
        if within + len > self.lanes.lane_units(lane) {
            return Ok(None);
        }
        if len == 0 {
            return Ok(Some(&[]));
        }
        if let Some(ptr) = self.lanes.mapped_ptr(lane, within) {
            // `ptr..ptr+len` lies in one mapped lane (checked above); it is below `published`
            // (Acquire above), so it was fully written before and is never written again.
            // SAFETY: immutable published bytes in a mapping that lives as long as `&self`.
            return Ok(Some(unsafe {
                std::slice::from_raw_parts(ptr, len as usize)
            }));
        }
        // SAFETY: as above; `slice` maps the lane first.
        unsafe { self.lanes.slice(lane, within, len).map(Some) }
    }

    /// Hints the processor to start loading the cache lines of bytes `offset..offset+len`
    /// (at most four lines), so that several cache misses can overlap. No effect if the
    /// bytes' lane is not mapped, or off x86_64.
    #[inline]
    pub(crate) fn prefetch(&self, offset: u64, len: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some((lane, within)) = self.lanes.locate(offset)
            && let Some(ptr) = self.lanes.mapped_ptr(lane, within)
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let lines = len.div_ceil(64).clamp(1, 4) as usize;
            for line in 0..lines {
                let at = ptr.cast_const().wrapping_add(line * 64);
                // A prefetch never faults, reads into registers or writes, whatever the
                // address (a line past the lane's end is merely wasted).
                // SAFETY: harmless for any address; SSE is part of the x86_64 baseline.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, len);
    }

    /// The published bytes, one slice per lane, in order.
    pub(crate) fn chunks(&self) -> Chunks<'_> {
        Chunks {
            arena: self,
            lane: 0,
            published: self.published(),
        }
    }

    /// Writes bytes `from..to` to disk.
    pub(crate) fn flush(&self, from: u64, to: u64) -> Result<()> {
        self.flushed
            .fetch_add(to.saturating_sub(from), Ordering::Relaxed);
        let mut at = from;
        while at < to {
            let Some((lane, within)) = self.lanes.locate(at) else {
                break;
            };
            let n = (self.lanes.lane_units(lane) - within).min(to - at);
            self.lanes.flush(lane, within, n)?;
            at += n;
        }
        Ok(())
    }
}

/// Iterator over an arena's published bytes, lane by lane: `(offset, bytes)`.
pub(crate) struct Chunks<'a> {
    arena: &'a Arena,
    lane: usize,
    published: u64,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<(u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.lane >= LANES_MAX {
            return None;
        }
        let start = self.arena.lanes.lane_start(self.lane);
        if start >= self.published {
            return None;
        }
        let end = (start + self.arena.lanes.lane_units(self.lane)).min(self.published);
        self.lane += 1;
        Some(
            self.arena
                .get(start, end - start)
                .and_then(|bytes| {
                    bytes.ok_or_else(|| {
                        Error::corrupted(
                            &self.arena.lanes.lane_path(self.lane - 1),
                            0,
                            "lane is missing",
                        )
                    })
                })
                .map(|bytes| (start, bytes)),
        )
    }
}

impl Drop for Arena {
    /// Stops the helper thread and waits for it, so that no lane is created once the
    /// owner (and with it the directory lock) may be gone.
    fn drop(&mut self) {
        if let Some(Some(helper)) = self.helper.take() {
            helper.stop.store(true, Ordering::Relaxed);
            drop(helper.jobs);
            let _ = helper.thread.join();
        }
    }
}

/// Does one of the helper thread's jobs: creates the lane (and any before it) if needed,
/// then, for a stretch, allocates it and faults it in. Best effort: an error here (a full
/// disk, say) is left for the appender to meet and report when it gets there.
fn prepare(lanes: &Lanes, job: Job) {
    let (lane, within) = match job {
        Job::Stretch(at) => match lanes.locate(at) {
            Some(found) => found,
            None => return,
        },
        Job::Lane(lane) => (lane, 0),
    };
    for l in 0..=lane.min(LANES_MAX - 1) {
        if !lanes.is_mapped(l) && lanes.ensure(l).is_err() {
            return;
        }
    }
    if matches!(job, Job::Lane(_)) {
        return;
    }
    // Disk space before the pages are touched: a page faulted in for writing where no
    // space is allocated would take it from a full disk, or fail.
    let end = (within + PREFAULT_BYTES).min(lanes.lane_units(lane));
    let start = lanes.lane_start(lane);
    if lanes.allocate(start + within, start + end).is_err() {
        return;
    }
    if let Some(job) = lanes.prefault_job(lane, within, PREFAULT_BYTES) {
        job.run();
    }
}

/// Walks the frames of `lanes` from the frame position `from` on, before any arena
/// exists over them (at open, nothing appends): adopts every record whose frame holds and
/// whose epoch is at least `floor` (the epoch of the record before `from`), no smaller
/// than the record before it, and at most `newest` (the newest any writer took), up to
/// the first that is not. Lanes that do not exist end the walk.
///
/// # Errors
/// `Io` if a lane cannot be mapped.
pub(crate) fn scan_tail(
    lanes: &Lanes,
    nonce: u64,
    from: u64,
    floor: u32,
    newest: u32,
) -> Result<Tail> {
    let mut tail = Tail {
        end: from,
        last_epoch: floor,
        sealed: false,
    };
    let mut at = from.next_multiple_of(FRAME_ALIGN);
    loop {
        let window = (tail.last_epoch, newest);
        let (step, next) = walk_step(lanes, nonce, at, u64::MAX, Some(window), |l, w, n| {
            // Nothing appends while the buffer is being opened; the bytes are only read.
            // SAFETY: no concurrent writer exists yet.
            unsafe { lanes.slice(l, w, n) }
        })?;
        match step {
            Step::Record(offset, len, epoch) => {
                tail.end = offset + len;
                tail.last_epoch = epoch;
            }
            Step::Seal => {
                tail.end = at + FRAME_BYTES;
                tail.sealed = true;
                return Ok(tail);
            }
            Step::Bad(_) | Step::End => return Ok(tail),
        }
        at = next;
    }
}

/// Looks past `from` (where a walk at open stopped) for a record whose frame holds and
/// whose epoch lies in `floor..=newest`: a record the walk could not reach because a
/// frame before it does not hold (damage, or a hole a crash left among concurrent
/// appends). Reads every frame position of the lanes that exist, so it is for checks,
/// not for every open. Returns the first such record's frame position.
///
/// # Errors
/// `Io` if a lane cannot be mapped.
pub(crate) fn scan_past(
    lanes: &Lanes,
    nonce: u64,
    from: u64,
    floor: u32,
    newest: u32,
) -> Result<Option<u64>> {
    let mut at = from.next_multiple_of(FRAME_ALIGN);
    while let Some((lane, within)) = lanes.locate(at) {
        if !lanes.exists(lane)? {
            return Ok(None);
        }
        let room = lanes.lane_units(lane) - within;
        // At open, nothing appends: the bytes are only read.
        // SAFETY: no concurrent writer exists yet.
        let rest = unsafe { lanes.slice(lane, within, room) }?;
        let mut i = 0usize;
        while (i as u64) + FRAME_BYTES <= room {
            let here = &rest[i..];
            if let Some(h) = frame::read_head(&here[..FRAME_BYTES as usize])
                && h.kind == Kind::Record
                && (floor..=newest).contains(&h.epoch)
                && FRAME_BYTES + u64::from(h.len) <= here.len() as u64
                && frame::holds(
                    nonce,
                    at + i as u64,
                    &here[..(FRAME_BYTES + u64::from(h.len)) as usize],
                )
            {
                return Ok(Some(at + i as u64));
            }
            i += FRAME_ALIGN as usize;
        }
        at += room;
    }
    Ok(None)
}

/// One step of a frame walk from `at` (a multiple of 16): skips Gap and LaneEnd frames
/// and returns the record or seal after them, with the frame position after it. Reads
/// nothing at or past `limit`, nor in a lane that does not exist (`End`). With `epochs =
/// Some((floor, newest))`, a frame whose epoch lies outside, or whose epoch is lower than
/// a marker before it in this step, is `Bad`.
fn walk_step<'a>(
    lanes: &'a Lanes,
    nonce: u64,
    mut at: u64,
    limit: u64,
    epochs: Option<(u32, u32)>,
    read: impl Fn(usize, u64, u64) -> Result<&'a [u8]>,
) -> Result<(Step, u64)> {
    let mut floor = epochs.map_or(0, |(f, _)| f);
    loop {
        if at.saturating_add(FRAME_BYTES) > limit {
            return Ok((Step::End, at));
        }
        let Some((lane, within)) = lanes.locate(at) else {
            return Ok((Step::End, at));
        };
        if !lanes.exists(lane)? {
            return Ok((Step::End, at));
        }
        let room = lanes.lane_units(lane) - within;
        let head = read(lane, within, FRAME_BYTES)?;
        let Some(h) = frame::read_head(head) else {
            return Ok((Step::Bad(at), at));
        };
        if let Some((_, newest)) = epochs
            && (h.epoch < floor || h.epoch > newest)
        {
            return Ok((Step::Bad(at), at));
        }
        floor = floor.max(h.epoch);
        let body = match h.kind {
            Kind::Record | Kind::Gap => u64::from(h.len),
            Kind::LaneEnd | Kind::Seal => 0,
        };
        if FRAME_BYTES + body > room || (h.kind == Kind::Record && at + FRAME_BYTES + body > limit)
        {
            return Ok((Step::Bad(at), at));
        }
        let checked = if h.kind == Kind::Record {
            read(lane, within, FRAME_BYTES + body)?
        } else {
            head
        };
        if !frame::holds(nonce, at, checked) {
            return Ok((Step::Bad(at), at));
        }
        match h.kind {
            Kind::Record => {
                let payload = at + FRAME_BYTES;
                let next = (payload + body).next_multiple_of(FRAME_ALIGN);
                return Ok((Step::Record(payload, body, h.epoch), next));
            }
            Kind::Seal => return Ok((Step::Seal, at + FRAME_BYTES)),
            Kind::Gap => at += FRAME_BYTES + body,
            Kind::LaneEnd => at = lanes.lane_start(lane + 1),
        }
    }
}

thread_local! {
    /// The arenas (by address) whose `append_with` runs a `fill` on this thread, innermost
    /// last: an append to one of them from this thread would wait for itself.
    static FILLING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks an arena as running a `fill` on this thread until dropped (also by a panic).
struct Filling(usize);

impl Filling {
    fn start(arena: &Arena) -> Filling {
        let at = std::ptr::from_ref(arena) as usize;
        // During thread teardown the marker is gone; nothing appends from there.
        let _ = FILLING.try_with(|f| f.borrow_mut().push(at));
        Filling(at)
    }

    fn is_filling(arena: &Arena) -> bool {
        let at = std::ptr::from_ref(arena) as usize;
        FILLING
            .try_with(|f| f.borrow().contains(&at))
            .unwrap_or(false)
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        let _ = FILLING.try_with(|f| {
            let mut f = f.borrow_mut();
            if let Some(i) = f.iter().rposition(|a| *a == self.0) {
                f.remove(i);
            }
        });
    }
}

/// Writes a record's frame checksum when dropped; if the fill did not finish (a panic),
/// turns the frame into a Gap over the payload first.
struct FrameOnDrop<'a> {
    bytes: &'a mut [u8],
    nonce: u64,
    at: u64,
    epoch: u32,
    filled: bool,
}

impl Drop for FrameOnDrop<'_> {
    fn drop(&mut self) {
        if !self.filled {
            let skipped = (self.bytes.len() as u64 - FRAME_BYTES).next_multiple_of(FRAME_ALIGN);
            frame::write_head(
                self.bytes,
                Head {
                    kind: Kind::Gap,
                    len: skipped as u32,
                    epoch: self.epoch,
                },
            );
            frame::seal_checksum(self.nonce, self.at, &mut self.bytes[..FRAME_BYTES as usize]);
        } else {
            frame::seal_checksum(self.nonce, self.at, self.bytes);
        }
    }
}

/// Publishes one reservation when dropped: waits until every earlier reservation is
/// published, then moves `published` to its end.
struct Publish<'a> {
    arena: &'a Arena,
    from: u64,
    end: u64,
}

impl Drop for Publish<'_> {
    fn drop(&mut self) {
        wait_until_published(&self.arena.published, self.from);
        self.arena.published.store(self.end, Ordering::Release);
    }
}

/// Spins (then yields) until `published` reaches `at`.
fn wait_until_published(published: &AtomicU64, at: u64) {
    let mut spins = 0u32;
    while published.load(Ordering::Acquire) < at {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::raw::lanes::LANE_DATA_OFFSET;

    fn allocated(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    /// A buffer that stays in its first three lanes (under 448 KiB) never starts a helper
    /// thread. Found by `review_hash::killed_at_every_flush_of_resizes_optimisations_and_clears`:
    /// when stretches were first counted per lane, entering any lane was a new stretch, so
    /// every small buffer started one (and the helper's lane fsyncs fired the test's flush
    /// hook on another thread, mid-write).
    #[test]
    fn small_buffers_start_no_helper() {
        let tmp = tempfile::tempdir().unwrap();
        let arena = Arena::new(Lanes::new(tmp.path(), "data", 1, 64 << 10), 0);
        let record = [7u8; 1000];
        while arena.reserved.load(Ordering::Relaxed) < 440 << 10 {
            arena
                .append_with(record.len() as u64, 1, |_, d| d.copy_from_slice(&record))
                .unwrap();
        }
        assert!(arena.helper.get().is_none(), "a helper was started");
        while arena.reserved.load(Ordering::Relaxed) < 600 << 10 {
            arena
                .append_with(record.len() as u64, 1, |_, d| d.copy_from_slice(&record))
                .unwrap();
        }
        assert!(
            arena.helper.get().is_some(),
            "no helper past the third lane"
        );
    }

    /// The look-ahead allocates one step of a lane a stretch, and a lane made ahead of the
    /// cursor holds its header page only, so that the space allocated ahead of an
    /// appender stays within two steps. Before, stretches were counted from position 0,
    /// not from each lane's start, so one could straddle two steps and allocate both, and
    /// every new lane took its first step at once: a HashStore of 1M keys carried 19 MiB
    /// allocated ahead of its log's cursor instead of at most 12.
    #[test]
    fn stretches_are_single_steps_of_their_lane_and_new_lanes_hold_only_a_header() {
        let tmp = tempfile::tempdir().unwrap();
        let arena = Arena::new(Lanes::new(tmp.path(), "data", 1, 64 << 10), 0);
        let lanes = &*arena.lanes;
        // Lane 9 holds 32 MiB from 64 KiB × 511: not a multiple of the stretch.
        let lane = 9;
        let start = lanes.lane_start(lane);
        assert_ne!(start % PREFAULT_BYTES, 0);
        for l in 0..=lane {
            lanes.ensure(l).unwrap();
        }
        let path = lanes.lane_path(lane);
        assert!(
            allocated(&path) <= LANE_DATA_OFFSET,
            "a new lane holds {} bytes",
            allocated(&path)
        );
        assert_eq!(arena.stretch_of(start + (5 << 20)), start + (4 << 20));
        let mut at = start + 100;
        for k in 1..=3 {
            let next = arena.stretch_from(at);
            assert_eq!(next, start + k * PREFAULT_BYTES);
            prepare(lanes, Job::Stretch(next));
            let bytes = allocated(&path) - LANE_DATA_OFFSET;
            let want = k * ALLOC_STEP_BYTES;
            // Extent blocks may count too: allow a little over, never a step more.
            assert!(
                (want..want + (256 << 10)).contains(&bytes),
                "after {k} stretches the lane holds {bytes} bytes, not {want}"
            );
            at = next + 1;
        }
        // The lane after, made ahead as the cursor enters this one, holds its header only.
        prepare(lanes, Job::Lane(lane + 1));
        let made = lanes.lane_path(lane + 1);
        assert!(
            allocated(&made) <= LANE_DATA_OFFSET,
            "a lane made ahead holds {} bytes",
            allocated(&made)
        );
        // The last stretch of a lane is followed by the next lane's start.
        let last = start + lanes.lane_units(lane) - 1;
        assert_eq!(arena.stretch_from(last), lanes.lane_start(lane + 1));
        assert_eq!(
            arena.stretch_of(last),
            start + lanes.lane_units(lane) - PREFAULT_BYTES
        );
    }
}
