//! The mutable-cell discipline over lanes: an unbounded array of fixed-size byte cells.
//!
//! Invariant: every access to a cell's bytes while other threads may touch them is
//! atomic, word by word (the widest of 8, 4, 2 or 1 bytes that divides the cell size, so
//! every word is naturally aligned in the page-aligned lane). Writers additionally hold
//! the cell's stripe lock exclusively, so a cell is never written by two threads at once
//! and a reader holding the stripe shared sees no write at all.
//! Invariant: a plain `&[u8]` into a cell (`CellRef`) exists only while its stripe is held
//! shared, so it never overlaps a write.
//! A single-word cell is read without any lock: one atomic load cannot tear.
//!
//! Readers take the stripe with `read_recursive`, which never queues behind a waiting
//! writer while the stripe is already held shared. A fair `read` would: a thread holding
//! one `CellRef` that reads another cell of the same stripe (index + 256, say) while a
//! writer waits for that stripe would wait for the writer, which waits for the thread's
//! own `CellRef`. The price: a writer waits as long as readers keep the stripe held
//! without a break (overlapping reads of cells whose indices agree mod 256), so a writer
//! can starve under a continuous stream of such reads.

use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard};

use super::Lanes;
use crate::error::{Error, Result};
use crate::limits::LANES_MAX;

const _: () = assert!(LANES_MAX <= 64, "one dirty bit per lane in a u64");

/// A flush writes the stretches of this many bytes written since the last one, not whole
/// lanes.
const DIRTY_UNIT_BYTES: u64 = 64 << 10;

/// Number of lock stripes.
pub(crate) const STRIPES: usize = 256;
/// Cells up to this size are copied through a stack buffer when updated.
const STACK_CELL_BYTES: usize = 64;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Stripe(RwLock<()>);

/// Fixed-size mutable cells over lanes whose unit is one cell.
#[derive(Debug)]
pub(crate) struct Cells {
    lanes: Lanes,
    stripes: Box<[Stripe]>,
    cell_bytes: usize,
    word_bytes: usize,
    /// Bit `i` set: lane `i` was written since the last flush.
    dirty: AtomicU64,
    /// Per lane (made at its first write): one bit per `DIRTY_UNIT_BYTES` of it, set when
    /// a cell there is written, cleared by the flush that writes it.
    dirty_units: Box<[OnceLock<Box<[AtomicU64]>>]>,
    /// Bytes handed to msync so far.
    flushed: AtomicU64,
}

/// A cell's bytes, readable while the guard lives.
pub(crate) struct CellRef<'a> {
    _guard: RwLockReadGuard<'a, ()>,
    bytes: &'a [u8],
}

impl Deref for CellRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Cells {
    /// Cells of `cell_bytes` bytes over `lanes` (whose unit is `cell_bytes`).
    pub(crate) fn new(lanes: Lanes, cell_bytes: usize) -> Self {
        let word_bytes = [8, 4, 2, 1]
            .into_iter()
            .find(|w| cell_bytes.is_multiple_of(*w))
            .unwrap_or(1);
        Cells {
            lanes,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            cell_bytes,
            word_bytes,
            dirty: AtomicU64::new(0),
            dirty_units: (0..LANES_MAX).map(|_| OnceLock::new()).collect(),
            flushed: AtomicU64::new(0),
        }
    }

    /// Most cells the array can ever hold.
    pub(crate) fn capacity_max(&self) -> u64 {
        self.lanes.capacity_max()
    }

    /// Cells backed by lanes mapped so far.
    pub(crate) fn capacity(&self) -> u64 {
        self.lanes.mapped_units()
    }

    fn stripe(&self, index: u64) -> &RwLock<()> {
        &self.stripes[(index % STRIPES as u64) as usize].0
    }

    fn locate(&self, index: u64) -> Result<(usize, u64)> {
        self.lanes.locate(index).ok_or_else(|| {
            Error::limit(
                "RandomAccess capacity (LANES_MAX lanes)",
                index.saturating_add(1),
                self.capacity_max(),
            )
        })
    }

    /// True if a cell is one atomic word, so [`load`](Self::load) takes no lock.
    pub(crate) fn is_single_word(&self) -> bool {
        self.cell_bytes == self.word_bytes
    }

    /// Cell `index` under its read lock, or `None` if its lane was never created (the cell
    /// was never written).
    pub(crate) fn read(&self, index: u64) -> Result<Option<CellRef<'_>>> {
        let (lane, within) = self.locate(index)?;
        if !self.lanes.exists(lane)? {
            return Ok(None);
        }
        // Recursive: a reader that already holds this stripe (another `CellRef`) must
        // not queue behind a waiting writer (see the module docs).
        let guard = self.stripe(index).read_recursive();
        // Cells are written only under the exclusive lock of their stripe, and we hold it
        // shared until `CellRef` (which owns the guard) is dropped; lock-free readers only load.
        // SAFETY: no write to this cell can happen while the returned borrow lives.
        let bytes = unsafe { self.lanes.slice(lane, within, 1)? };
        Ok(Some(CellRef {
            _guard: guard,
            bytes,
        }))
    }

    /// Copies cell `index` into `out` (exactly one cell long); returns false, leaving `out`
    /// alone, if its lane was never created. A single-word cell is read with one atomic
    /// load and no lock; a wider one under its stripe's shared lock, so it is never torn.
    #[inline]
    pub(crate) fn load(&self, index: u64, out: &mut [u8]) -> Result<bool> {
        assert_eq!(out.len(), self.cell_bytes, "load needs a whole cell");
        let (lane, within) = self.locate(index)?;
        if self.cell_bytes == 8
            && let Some(ptr) = self.lanes.mapped_ptr(lane, within)
        {
            // `ptr` is a live, 8-aligned, 8-byte cell (lane data is page aligned and cells are
            // 8 bytes apart); every concurrent access to it is atomic (module invariant).
            #[allow(clippy::host_endian_bytes)]
            // SAFETY: an aligned live word accessed only atomically; one load cannot tear.
            let word = unsafe { AtomicU64::from_ptr(ptr.cast()) }
                .load(Ordering::Acquire)
                .to_ne_bytes();
            out.copy_from_slice(&word);
            return Ok(true);
        }
        if !self.lanes.exists(lane)? {
            return Ok(false);
        }
        let ptr = self.lanes.data_ptr(lane, within, 1)?;
        if self.is_single_word() {
            // `ptr` is a live, word-aligned cell (lane data is page aligned and cells are
            // `cell_bytes` apart, a multiple of the word).
            // SAFETY: a live aligned cell whose every concurrent access is atomic.
            unsafe { copy_out(ptr, out, self.word_bytes) };
        } else {
            // Recursive, as in `read`: the caller may hold a `CellRef` of this stripe.
            let _shared = self.stripe(index).read_recursive();
            // Holding the stripe shared also excludes writers: the words form one value.
            // SAFETY: a live aligned cell whose every concurrent access is atomic.
            unsafe { copy_out(ptr, out, self.word_bytes) };
        }
        Ok(true)
    }

    /// Copies cells `start..start + out.len() / cell_bytes` into `out`, lane by lane;
    /// cells of a lane never created read as zeros. Each cell is read as [`load`] reads
    /// it (single-word cells without a lock, wider ones under their stripe), so no cell
    /// is torn; the copy as a whole is not a snapshot.
    ///
    /// [`load`]: Self::load
    pub(crate) fn load_many(&self, start: u64, out: &mut [u8]) -> Result<()> {
        assert_eq!(
            out.len() % self.cell_bytes,
            0,
            "load_many needs whole cells"
        );
        let mut at = start;
        let mut rest = out;
        while !rest.is_empty() {
            let (lane, within) = self.locate(at)?;
            let cells =
                (self.lanes.lane_units(lane) - within).min((rest.len() / self.cell_bytes) as u64);
            let (here, later) = rest.split_at_mut(cells as usize * self.cell_bytes);
            if !self.lanes.exists(lane)? {
                here.fill(0);
            } else if self.is_single_word() {
                let ptr = self.lanes.data_ptr(lane, within, cells)?;
                // `ptr..ptr + cells` is live and word-aligned (lane data is page aligned
                // and cells are one word apart).
                // SAFETY: live aligned cells whose every concurrent access is atomic.
                unsafe { copy_out(ptr, here, self.word_bytes) };
            } else {
                for (k, cell) in here.chunks_exact_mut(self.cell_bytes).enumerate() {
                    self.load(at + k as u64, cell)?;
                }
            }
            at += cells;
            rest = later;
        }
        Ok(())
    }

    /// Hints the processor to start loading cell `index` into its cache, so that several
    /// cache misses can overlap. No effect if the cell's lane is not mapped, or off x86_64.
    #[inline]
    pub(crate) fn prefetch(&self, index: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some((lane, within)) = self.lanes.locate(index)
            && let Some(ptr) = self.lanes.mapped_ptr(lane, within)
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // A prefetch never faults, reads into registers or writes.
            // SAFETY: harmless for any address; SSE is part of the x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.cast_const().cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = index;
    }

    /// Runs `f` on a copy of cell `index` under its write lock and stores the result back,
    /// creating the cell's lane (and every lane below it) if needed.
    ///
    /// # Errors
    /// `LimitExceeded` past the last lane; `Io` if the lane cannot be created.
    pub(crate) fn update<R>(&self, index: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        let (lane, within) = self.locate(index)?;
        if !self.lanes.is_mapped(lane) {
            // Lanes are created in order, so every cell below a written one is backed.
            self.reserve(index + 1)?;
        }
        // The cell's disk space, before it is written (usually a bit test).
        self.lanes.allocate(index, index + 1)?;
        let ptr = self.lanes.data_ptr(lane, within, 1)?;
        let mut stack = [0u8; STACK_CELL_BYTES];
        let mut heap = Vec::new();
        let buf = if self.cell_bytes <= STACK_CELL_BYTES {
            &mut stack[..self.cell_bytes]
        } else {
            heap.resize(self.cell_bytes, 0);
            &mut heap[..]
        };
        let _exclusive = self.stripe(index).write();
        // We hold the stripe exclusively, so no other thread writes this cell.
        // SAFETY: a live aligned cell whose every concurrent access is atomic.
        unsafe { copy_out(ptr, buf, self.word_bytes) };
        let out = f(buf);
        // SAFETY: as above.
        unsafe { copy_in(ptr, buf, self.word_bytes) };
        // Marked while the stripe is still held, the unit before the lane: a flush that
        // clears the lane's mark after this point flushes this write too, and one that
        // cleared it before finds the lane marked again at the next flush.
        self.mark_dirty(lane, within);
        Ok(out)
    }

    /// Cells per dirty unit (a cell lies in one unit, whatever its size).
    fn cells_per_unit(&self) -> u64 {
        (DIRTY_UNIT_BYTES / self.cell_bytes as u64).max(1)
    }

    fn units_of(&self, lane: usize) -> &[AtomicU64] {
        self.dirty_units[lane].get_or_init(|| {
            let units = self.lanes.lane_units(lane).div_ceil(self.cells_per_unit());
            (0..units.div_ceil(64)).map(|_| AtomicU64::new(0)).collect()
        })
    }

    fn mark_dirty(&self, lane: usize, within: u64) {
        let unit = within / self.cells_per_unit();
        let (word, bit) = ((unit / 64) as usize, 1u64 << (unit % 64));
        let units = self.units_of(lane);
        // The cell's write is visible to every thread before the marks are read: a mark
        // seen set was then cleared, if at all, by a flush that comes after the write
        // (its swap is after this fence), so that flush covers it. Without the fence the
        // write could still sit in this core's store buffer when a flush that cleared
        // the mark just after this load ran its msync (found by review). A fence, not a
        // read-modify-write of the shared lane word by every writer.
        std::sync::atomic::fence(Ordering::SeqCst);
        if units[word].load(Ordering::Acquire) & bit == 0 {
            units[word].fetch_or(bit, Ordering::AcqRel);
        }
        if self.dirty.load(Ordering::Acquire) & (1 << lane) == 0 {
            self.dirty.fetch_or(1 << lane, Ordering::AcqRel);
        }
    }

    /// Makes sure the lanes holding cells `0..len` exist.
    pub(crate) fn reserve(&self, len: u64) -> Result<()> {
        if len > 0 {
            // The same check as a cell's: past the last lane is a limit, not a no-op.
            self.locate(len - 1)?;
        }
        self.lanes.ensure_below(len)
    }

    /// Writes every mapped lane to disk.
    /// Bytes handed to msync so far (whole dirty lanes: the kernel writes only their
    /// dirty pages).
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed)
    }

    /// Writes to disk every stretch of `DIRTY_UNIT_BYTES` written since the last flush
    /// (one msync per run of such stretches; clean lanes cost nothing). Every update that
    /// returned before this call is covered.
    pub(crate) fn flush(&self) -> Result<()> {
        let dirty = self.dirty.swap(0, Ordering::AcqRel);
        let per_unit = self.cells_per_unit();
        for lane in (0..LANES_MAX).filter(|lane| dirty & (1 << lane) != 0) {
            let lane_units = self.lanes.lane_units(lane);
            let marks = self.units_of(lane);
            let mut run: Option<(u64, u64)> = None;
            for (w, word) in marks.iter().enumerate() {
                let bits = word.swap(0, Ordering::AcqRel);
                for b in 0..64 {
                    let unit = w as u64 * 64 + b;
                    if bits & (1 << b) != 0 {
                        run = match run {
                            Some((start, end)) if end == unit => Some((start, unit + 1)),
                            Some(done) => {
                                self.flush_units(lane, done, per_unit, lane_units, dirty)?;
                                Some((unit, unit + 1))
                            }
                            None => Some((unit, unit + 1)),
                        };
                    }
                }
            }
            if let Some(done) = run {
                self.flush_units(lane, done, per_unit, lane_units, dirty)?;
            }
        }
        Ok(())
    }

    /// Flushes dirty units `start..end` of `lane`.
    fn flush_units(
        &self,
        lane: usize,
        (start, end): (u64, u64),
        per_unit: u64,
        lane_units: u64,
        dirty: u64,
    ) -> Result<()> {
        // Pairs with the writer's fence in `mark_dirty`: either the writer reads the mark
        // this flush cleared (and sets it again), or this flush's msync sees its write.
        std::sync::atomic::fence(Ordering::SeqCst);
        let from = (start * per_unit).min(lane_units);
        let to = (end * per_unit).min(lane_units);
        self.flushed
            .fetch_add((to - from) * self.cell_bytes as u64, Ordering::Relaxed);
        self.lanes.flush(lane, from, to - from).inspect_err(|_| {
            // Not flushed: mark the lanes again (the caller poisons the handle anyway;
            // the units cleared are lost track of, which a poisoned handle never needs).
            self.dirty.fetch_or(dirty, Ordering::AcqRel);
        })
    }
}

/// Copies `out.len()` bytes from `src` into `out`, one atomic word of `word` bytes at a
/// time. Bytes are copied as they lie in memory: this is a memcpy, not an encoding.
///
/// # Safety
/// `src..src+out.len()` is inside a live mapping, aligned to `word`, and every concurrent
/// access to it is atomic with the same word size.
#[allow(clippy::host_endian_bytes)]
unsafe fn copy_out(src: *const u8, out: &mut [u8], word: usize) {
    for (k, chunk) in out.chunks_exact_mut(word).enumerate() {
        // SAFETY: the caller guarantees `src + k*word` is a live aligned atomic-only word.
        unsafe {
            let p = src.add(k * word).cast_mut();
            match word {
                8 => chunk.copy_from_slice(
                    &AtomicU64::from_ptr(p.cast())
                        .load(Ordering::Acquire)
                        .to_ne_bytes(),
                ),
                4 => chunk.copy_from_slice(
                    &AtomicU32::from_ptr(p.cast())
                        .load(Ordering::Acquire)
                        .to_ne_bytes(),
                ),
                2 => chunk.copy_from_slice(
                    &AtomicU16::from_ptr(p.cast())
                        .load(Ordering::Acquire)
                        .to_ne_bytes(),
                ),
                _ => chunk[0] = AtomicU8::from_ptr(p).load(Ordering::Acquire),
            }
        }
    }
}

/// Copies `src` into memory at `dst`, one atomic word of `word` bytes at a time.
///
/// # Safety
/// As [`copy_out`], and the caller is the only writer of those bytes.
#[allow(clippy::host_endian_bytes)]
unsafe fn copy_in(dst: *mut u8, src: &[u8], word: usize) {
    for (k, chunk) in src.chunks_exact(word).enumerate() {
        // SAFETY: the caller guarantees `dst + k*word` is a live aligned atomic-only word.
        unsafe {
            let p = dst.add(k * word);
            match word {
                8 => AtomicU64::from_ptr(p.cast()).store(
                    u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")),
                    Ordering::Release,
                ),
                4 => AtomicU32::from_ptr(p.cast()).store(
                    u32::from_ne_bytes(chunk.try_into().expect("4-byte chunk")),
                    Ordering::Release,
                ),
                2 => AtomicU16::from_ptr(p.cast()).store(
                    u16::from_ne_bytes(chunk.try_into().expect("2-byte chunk")),
                    Ordering::Release,
                ),
                _ => AtomicU8::from_ptr(p).store(chunk[0], Ordering::Release),
            }
        }
    }
}
