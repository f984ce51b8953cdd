//! Lanes: a byte space split into files of doubling size, each mapped once, at full size,
//! the first time it is needed, and never moved or unmapped until the owner is dropped.
//!
//! This folder is the crate's only `unsafe` code. `Lanes` turns positions into mapped
//! memory; the two disciplines that make handing out that memory sound live beside it:
//! [`arena`] (append-only bytes, borrowed freely once published) and [`cells`] (fixed-size
//! mutable cells, each read and written under its stripe lock).
//!
//! # Soundness contract of the mapping
//! - A lane file is held under the store directory's exclusive lock, is created at its
//!   full size with its space allocated, and is never truncated while mapped.
//! - A mapping is created once and lives until the `Lanes` is dropped, so a `&[u8]` tied
//!   to `&self` never dangles.
//! - Callers of the `unsafe fn`s below guarantee there is no data race on the bytes they
//!   touch; `arena` and `cells` are the only callers.
//!
//! Other processes changing the files behind our back (which the lock forbids among
//! cooperating processes) would break these guarantees; that is outside the contract.
//!
//! # Lane file layout
//! ```text
//! 0      64    header (kind Lane, params: lane index, unit bytes, base units)
//! 64     4096  zero padding, so that data starts page-aligned
//! 4096   ...   data: base_units << index units of unit_bytes each
//! ```

pub(crate) mod arena;
pub(crate) mod cells;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::limits::LANES_MAX;
use crate::raw::files;
use crate::raw::header::{HEADER_BYTES, Header, Kind};
use crate::raw::sync;

/// Bytes before the data in a lane file: the header, padded to a page.
pub(crate) const LANE_DATA_OFFSET: u64 = 4096;
const _: () = assert!(HEADER_BYTES as u64 <= LANE_DATA_OFFSET);

const PARAM_INDEX: usize = 0;
const PARAM_UNIT: usize = 1;
const PARAM_BASE: usize = 2;

/// Disk space of a lane's data is allocated this many bytes at a time, as writes reach
/// it, rather than for the whole lane at its creation: lanes double in size, and a lane
/// allocated whole would hold up to as many unused bytes as all the data before it.
pub(crate) const ALLOC_STEP_BYTES: u64 = 4 << 20;

/// One mapped lane file. Its descriptor is closed once the file is mapped: the mapping
/// keeps the file alive, msync needs no descriptor, and a store of many segments would
/// otherwise hold a dozen descriptors per segment.
#[derive(Debug)]
struct Lane {
    map: MmapRaw,
    path: PathBuf,
    /// One bit per `ALLOC_STEP_BYTES` of data: set once that step's disk space is known
    /// to be allocated (by this process: a lane opened again starts with none set, and
    /// allocating an allocated step again costs one quick system call).
    allocated: Box<[AtomicU64]>,
    /// Created by this process: its steps not yet allocated are holes nobody has ever
    /// written, so allocating one writes zeros without reading it first.
    fresh: bool,
}

/// Faulting-in of part of a lane ahead of the writes that will touch it, so that the
/// writer finds its pages mapped instead of taking one page fault per 4 KiB. It holds the
/// lane, so the mapping outlives the job.
pub(crate) struct Prefault {
    lane: Arc<Lane>,
    offset: usize,
    len: usize,
}

impl Prefault {
    /// Runs the job. Best effort: kernels without `MADV_POPULATE_WRITE` just skip it.
    pub(crate) fn run(self) {
        let _ = self
            .lane
            .map
            .advise_range(memmap2::Advice::PopulateWrite, self.offset, self.len);
    }
}

/// A space of fixed-size units spread over lane files of doubling size.
#[derive(Debug)]
pub(crate) struct Lanes {
    dir: PathBuf,
    prefix: &'static str,
    unit_bytes: u64,
    base_units: u64,
    lanes: Box<[OnceLock<Arc<Lane>>]>,
    create: Mutex<()>,
    /// Held while a step of disk space is being allocated.
    allocating: Mutex<()>,
    /// Positions `start..end` of lanes found shorter than they should be and restored to
    /// their size with zeros (damage: a lane is created whole, never short).
    restored: Mutex<Vec<(u64, u64)>>,
    /// A short lane is restored only if what it lacks starts at or past this position;
    /// below it (data the owner trusts) it is `Corrupted`. `u64::MAX` until the owner
    /// says ([`restore_from`](Self::restore_from)).
    restore_from: AtomicU64,
}

impl Lanes {
    /// Lanes for files `dir/{prefix}-NN.acc`, lane `i` holding `base_units << i` units of
    /// `unit_bytes` bytes. Nothing is opened until a lane is first used.
    pub(crate) fn new(dir: &Path, prefix: &'static str, unit_bytes: u64, base_units: u64) -> Self {
        assert!(
            unit_bytes > 0 && base_units.is_power_of_two(),
            "lanes need non-empty units"
        );
        Lanes {
            dir: dir.to_path_buf(),
            prefix,
            unit_bytes,
            base_units,
            lanes: (0..LANES_MAX).map(|_| OnceLock::new()).collect(),
            create: Mutex::new(()),
            allocating: Mutex::new(()),
            restored: Mutex::new(Vec::new()),
            restore_from: AtomicU64::new(u64::MAX),
        }
    }

    /// Units held by lane `lane`.
    pub(crate) fn lane_units(&self, lane: usize) -> u64 {
        self.base_units << lane
    }

    /// The first position of lane `lane`.
    pub(crate) fn lane_start(&self, lane: usize) -> u64 {
        self.base_units * ((1u64 << lane) - 1)
    }

    /// Total units held by all `LANES_MAX` lanes.
    pub(crate) fn capacity_max(&self) -> u64 {
        self.lane_start(LANES_MAX)
    }

    /// The lane holding position `pos` and the position within it, or `None` past the last
    /// lane.
    pub(crate) fn locate(&self, pos: u64) -> Option<(usize, u64)> {
        // base_units is a power of two, so this division is a shift.
        let q = (pos >> self.base_units.trailing_zeros()) + 1;
        let lane = (63 - q.leading_zeros()) as usize;
        if lane >= LANES_MAX {
            return None;
        }
        Some((lane, pos - self.lane_start(lane)))
    }

    /// Number of lanes mapped so far, and the units they hold.
    pub(crate) fn mapped_units(&self) -> u64 {
        let mapped = self.lanes.iter().take_while(|l| l.get().is_some()).count();
        self.lane_start(mapped)
    }

    fn path_of(&self, lane: usize) -> PathBuf {
        self.dir.join(format!("{}-{lane:02}.acc", self.prefix))
    }

    fn data_bytes(&self, lane: usize) -> u64 {
        self.lane_units(lane) * self.unit_bytes
    }

    /// Lane `lane`, mapping its file if it exists; `None` if it was never created.
    fn get(&self, lane: usize) -> Result<Option<&Lane>> {
        if let Some(mapped) = self.lanes[lane].get() {
            return Ok(Some(&**mapped));
        }
        let _guard = self.create.lock();
        if let Some(mapped) = self.lanes[lane].get() {
            return Ok(Some(&**mapped));
        }
        let path = self.path_of(lane);
        if !path.exists() {
            return Ok(None);
        }
        let mapped = self.open_existing(lane, path)?;
        Ok(Some(&**self.lanes[lane].get_or_init(|| Arc::new(mapped))))
    }

    /// Lane `lane`, creating and mapping it if needed. Creation allocates the lane's disk
    /// space up front, so a full disk fails here rather than in a later write.
    pub(crate) fn ensure(&self, lane: usize) -> Result<()> {
        if self.get(lane)?.is_some() {
            return Ok(());
        }
        let _guard = self.create.lock();
        if self.lanes[lane].get().is_some() {
            return Ok(());
        }
        let mapped = self.create(lane)?;
        self.lanes[lane].get_or_init(|| Arc::new(mapped));
        Ok(())
    }

    /// Whether lane `lane` is mapped already (no I/O).
    pub(crate) fn is_mapped(&self, lane: usize) -> bool {
        self.lanes[lane].get().is_some()
    }

    /// Whether the first lane's file is there (lanes are created in order, so this is
    /// whether any lane was ever created), without mapping it.
    ///
    /// # Errors
    /// `Io` if the directory cannot be read.
    pub(crate) fn first_exists(&self) -> Result<bool> {
        let path = self.lane_path(0);
        path.try_exists()
            .map_err(|e| Error::io(&path, "look for the first lane", e))
    }

    /// Whether lane `lane` exists (mapping it if its file is there).
    pub(crate) fn exists(&self, lane: usize) -> Result<bool> {
        Ok(self.get(lane)?.is_some())
    }

    /// Makes sure the lanes holding positions `0..units` exist (creating the missing
    /// ones, in order).
    ///
    /// # Errors
    /// As [`ensure`](Self::ensure).
    pub(crate) fn ensure_below(&self, units: u64) -> Result<()> {
        let mut lane = 0;
        while lane < LANES_MAX && self.lane_start(lane) < units {
            self.ensure(lane)?;
            lane += 1;
        }
        Ok(())
    }

    /// Maps every existing lane that holds a position below `units`, so that any damage
    /// to them (a short file, restored) is found now.
    ///
    /// # Errors
    /// As mapping a lane.
    ///
    /// A missing lane below `units` is damage too (lanes are created in order, and the
    /// owner holds data in it): `Corrupted`, unless the owner let lanes be restored from
    /// its start ([`restore_from`](Self::restore_from)), in which case it is created
    /// anew, all zeros, and listed as restored.
    pub(crate) fn open_below(&self, units: u64) -> Result<()> {
        let mut lane = 0;
        while lane < LANES_MAX && self.lane_start(lane) < units {
            if self.get(lane)?.is_none() {
                let start = self.lane_start(lane);
                if start < self.restore_from.load(Ordering::Relaxed) {
                    return Err(Error::corrupted(
                        &self.path_of(lane),
                        0,
                        "lane file is missing, though the structure holds data in it",
                    ));
                }
                self.ensure(lane)?;
                self.restored
                    .lock()
                    .push((start, start + self.lane_units(lane)));
            }
            lane += 1;
        }
        Ok(())
    }

    /// Lets a short lane file be restored (to its size, with zeros) if what it lacks
    /// starts at or past position `pos`: an owner passes its durable length (what lies
    /// past it is a torn tail, never trusted), or 0 if its records carry checksums that
    /// will find the zeros.
    pub(crate) fn restore_from(&self, pos: u64) {
        self.restore_from.store(pos, Ordering::Relaxed);
    }

    /// Makes sure the disk space of units `from..to` is allocated, step by step
    /// ([`ALLOC_STEP_BYTES`]), so that writing them through the mapping cannot fail for
    /// lack of space (which would be SIGBUS, not an error). Their lanes must exist. A
    /// step allocated before costs a bit test.
    ///
    /// # Errors
    /// `Io` if the space cannot be allocated: a full disk is `StorageFull`.
    pub(crate) fn allocate(&self, from: u64, to: u64) -> Result<()> {
        let mut at = from;
        while at < to {
            let Some((lane, within)) = self.locate(at) else {
                return Ok(());
            };
            let units = (self.lane_units(lane) - within).min(to - at);
            let mapped = self
                .get(lane)?
                .ok_or_else(|| Error::corrupted(&self.path_of(lane), 0, "lane file is missing"))?;
            let first = within * self.unit_bytes / ALLOC_STEP_BYTES;
            let last = ((within + units) * self.unit_bytes - 1) / ALLOC_STEP_BYTES;
            for step in first..=last {
                let (word, bit) = ((step / 64) as usize, 1u64 << (step % 64));
                if mapped.allocated[word].load(Ordering::Acquire) & bit != 0 {
                    continue;
                }
                let _one_at_a_time = self.allocating.lock();
                if mapped.allocated[word].load(Ordering::Acquire) & bit != 0 {
                    continue;
                }
                let data = self.data_bytes(lane);
                let offset = step * ALLOC_STEP_BYTES;
                let len = ALLOC_STEP_BYTES.min(data - offset);
                let file = files::open_existing(&mapped.path, "open lane to allocate space")?;
                let at = LANE_DATA_OFFSET + offset;
                if mapped.fresh {
                    files::allocate_zeroed(&file, &mapped.path, at, len)?;
                } else {
                    files::allocate_written(&file, &mapped.path, at, len)?;
                }
                mapped.allocated[word].fetch_or(bit, Ordering::AcqRel);
            }
            at += units;
        }
        Ok(())
    }

    /// Position ranges `start..end` that were missing from short lane files and now read
    /// as zeros.
    pub(crate) fn restored(&self) -> Vec<(u64, u64)> {
        self.restored.lock().clone()
    }

    fn open_existing(&self, lane: usize, path: PathBuf) -> Result<Lane> {
        let file = files::open_existing(&path, "open lane")?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(&path, "stat lane", e))?
            .len();
        // The header first: a file of another kind or shape is refused before anything
        // is changed. (One too short to hold a header is restored below, if at all.)
        if len >= HEADER_BYTES as u64 {
            let mut head = [0u8; HEADER_BYTES];
            file.read_exact_at(&mut head, 0)
                .map_err(|e| Error::io(&path, "read lane header", e))?;
            let header = Header::decode(&head, &path, Kind::Lane)?;
            header.expect_param(&path, PARAM_INDEX, lane as u64, "lane index")?;
            header.expect_param(&path, PARAM_UNIT, self.unit_bytes, "unit size in bytes")?;
            header.expect_param(
                &path,
                PARAM_BASE,
                self.base_units,
                "first-lane size in units",
            )?;
        }
        let expected = LANE_DATA_OFFSET + self.data_bytes(lane);
        if len < expected {
            let missing_from = self.lane_start(lane)
                + (len.saturating_sub(LANE_DATA_OFFSET) / self.unit_bytes)
                    .min(self.lane_units(lane));
            if missing_from < self.restore_from.load(Ordering::Relaxed) {
                return Err(Error::corrupted(
                    &path,
                    len,
                    format!(
                        "lane file is {len} bytes, expected {expected}: data the structure \
                         holds is missing"
                    ),
                ));
            }
            self.restore(&file, &path, lane, len)?;
        }
        // A longer file is not one of ours (a lane is never extended): refuse it.
        if len > expected {
            return Err(Error::corrupted(
                &path,
                expected,
                format!("lane file is {len} bytes, expected {expected}"),
            ));
        }
        self.map(file, path, false)
    }

    /// Restores a lane file found `len` bytes long, shorter than its size, which is damage
    /// (a lane is created whole under a temporary name): mapping it as it is would turn
    /// reads past its end into SIGBUS. The missing bytes are allocated as zeros, which the
    /// owner reads as never written (a torn tail), and their positions are remembered for
    /// [`restored`](Self::restored). A header lost with them is written anew: the file's
    /// name says which lane it is.
    fn restore(&self, file: &File, path: &Path, lane: usize, len: u64) -> Result<()> {
        if len < HEADER_BYTES as u64 {
            let header = Header::new(
                Kind::Lane,
                [lane as u64, self.unit_bytes, self.base_units, 0, 0],
            );
            file.write_all_at(&header.encode(), 0)
                .map_err(|e| Error::io(path, "rewrite lane header", e))?;
        }
        let expected = LANE_DATA_OFFSET + self.data_bytes(lane);
        files::allocate(file, path, 0, expected)?;
        sync::file_all(file, path, "fsync restored lane")?;
        let first_unit = len.saturating_sub(LANE_DATA_OFFSET) / self.unit_bytes;
        let start = self.lane_start(lane);
        self.restored
            .lock()
            .push((start + first_unit, start + self.lane_units(lane)));
        Ok(())
    }

    fn create(&self, lane: usize) -> Result<Lane> {
        let path = self.path_of(lane);
        let tmp = path.with_extension("acc.tmp");
        let file = files::private(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
        )
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create lane", e))?;
        let header = Header::new(
            Kind::Lane,
            [lane as u64, self.unit_bytes, self.base_units, 0, 0],
        );
        let result = (|| {
            file.write_all_at(&header.encode(), 0)
                .map_err(|e| Error::io(&tmp, "write lane header", e))?;
            // The file takes its full size at once (so reads anywhere in it are safe);
            // disk space, for the header page only: data steps are allocated as writes
            // (or an arena's helper, just ahead of them) reach them (`allocate`), so a
            // lane made ahead of the cursor holds no space it may never use.
            let data = self.data_bytes(lane);
            file.set_len(LANE_DATA_OFFSET + data)
                .map_err(|e| Error::io(&tmp, "size new lane", e))?;
            files::allocate_written(&file, &tmp, 0, LANE_DATA_OFFSET)?;
            sync::file_all(&file, &tmp, "fsync new lane")?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "rename lane", e))?;
            files::sync_dir(&self.dir)
        })();
        if let Err(e) = result {
            // Give the space back; the error is what the caller needs to see.
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.map(file, path, true)
    }

    fn map(&self, file: File, path: PathBuf, fresh: bool) -> Result<Lane> {
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(|e| Error::io(&path, "map lane", e))?;
        drop(file);
        let data = map.len() as u64 - LANE_DATA_OFFSET;
        let words = data.div_ceil(ALLOC_STEP_BYTES).div_ceil(64) as usize;
        Ok(Lane {
            map,
            path,
            allocated: (0..words).map(|_| AtomicU64::new(0)).collect(),
            fresh,
        })
    }

    /// Pointer to unit `within` of mapped lane `lane`, after checking that `units` units
    /// from there lie inside the lane.
    pub(crate) fn data_ptr(&self, lane: usize, within: u64, units: u64) -> Result<*mut u8> {
        let mapped = self
            .get(lane)?
            .ok_or_else(|| Error::corrupted(&self.path_of(lane), 0, "lane file is missing"))?;
        let end = within
            .checked_add(units)
            .filter(|end| *end <= self.lane_units(lane));
        assert!(end.is_some(), "position outside its lane: a caller bug");
        let offset = LANE_DATA_OFFSET + within * self.unit_bytes;
        let offset = usize::try_from(offset).expect("mapped lanes fit in the address space");
        debug_assert!(offset + (units * self.unit_bytes) as usize <= mapped.map.len());
        // The span was checked above against the lane's size, which is the mapping's size
        // less the header page.
        // SAFETY: `offset` plus the span lies within the mapping.
        Ok(unsafe { mapped.map.as_mut_ptr().add(offset) })
    }

    /// Pointer to unit `within` of lane `lane` if that lane is mapped: the fast path of
    /// [`data_ptr`](Self::data_ptr), no I/O, for a position the caller got from `locate`.
    #[inline]
    pub(crate) fn mapped_ptr(&self, lane: usize, within: u64) -> Option<*mut u8> {
        let mapped = self.lanes[lane].get()?;
        assert!(
            within < self.lane_units(lane),
            "position outside its lane: a caller bug"
        );
        let offset = (LANE_DATA_OFFSET + within * self.unit_bytes) as usize;
        // `within` is inside the lane (checked above); the mapping is the lane's data plus
        // the header page.
        // SAFETY: `offset` plus one unit lies within the mapping.
        Some(unsafe { mapped.map.as_mut_ptr().add(offset) })
    }

    /// The bytes of `units` units at `within` in lane `lane`.
    ///
    /// # Safety
    /// For the returned lifetime nobody writes those bytes.
    pub(crate) unsafe fn slice(&self, lane: usize, within: u64, units: u64) -> Result<&[u8]> {
        let ptr = self.data_ptr(lane, within, units)?;
        let len = (units * self.unit_bytes) as usize;
        // The caller guarantees no concurrent writes for the returned lifetime.
        // SAFETY: `ptr..ptr+len` is inside a live mapping that outlives `&self`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// The bytes of `units` units at `within` in lane `lane`, for writing.
    ///
    /// # Safety
    /// For the returned lifetime nobody else reads or writes those bytes.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(
        &self,
        lane: usize,
        within: u64,
        units: u64,
    ) -> Result<&mut [u8]> {
        let ptr = self.data_ptr(lane, within, units)?;
        let len = (units * self.unit_bytes) as usize;
        // The caller guarantees exclusive access for the returned lifetime.
        // SAFETY: `ptr..ptr+len` is inside a live mapping that outlives `&self`.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    /// Writes `units` units at `within` of lane `lane` to disk (msync).
    pub(crate) fn flush(&self, lane: usize, within: u64, units: u64) -> Result<()> {
        if units == 0 {
            return Ok(());
        }
        let Some(mapped) = self.lanes[lane].get() else {
            return Ok(());
        };
        let offset = (LANE_DATA_OFFSET + within * self.unit_bytes) as usize;
        let len = (units * self.unit_bytes) as usize;
        sync::mapped(&mapped.map, &mapped.path, offset, len)
    }

    /// A job that faults in `units` units at `within` of lane `lane` (clamped to the lane)
    /// for writing, to be run on another thread; `None` if the lane is not mapped.
    pub(crate) fn prefault_job(&self, lane: usize, within: u64, units: u64) -> Option<Prefault> {
        let mapped = self.lanes.get(lane)?.get()?;
        let end = (within + units).min(self.lane_units(lane));
        (end > within).then(|| Prefault {
            lane: Arc::clone(mapped),
            offset: (LANE_DATA_OFFSET + within * self.unit_bytes) as usize,
            len: ((end - within) * self.unit_bytes) as usize,
        })
    }

    /// Path of lane `lane`'s file, for error messages.
    /// The unit size and first-lane size in units that lane 0 of the lanes `prefix` in
    /// `dir` records, or `None` if there is no lane 0: how a tool that does not know the
    /// element type reads a structure's lanes.
    ///
    /// # Errors
    /// `Corrupted` for a damaged header; `Io`.
    pub(crate) fn shape(dir: &Path, prefix: &str) -> Result<Option<(u64, u64)>> {
        let path = dir.join(format!("{prefix}-00.acc"));
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "open lane", e)),
        };
        let mut head = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(&path, "read lane header", e))?;
        let header = Header::decode(&head, &path, Kind::Lane)?;
        Ok(Some((header.params[PARAM_UNIT], header.params[PARAM_BASE])))
    }

    pub(crate) fn lane_path(&self, lane: usize) -> PathBuf {
        self.path_of(lane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_matches_lane_bounds() {
        let lanes = Lanes::new(Path::new("/nonexistent"), "t", 1, 16);
        assert_eq!(lanes.locate(0), Some((0, 0)));
        assert_eq!(lanes.locate(15), Some((0, 15)));
        assert_eq!(lanes.locate(16), Some((1, 0)));
        assert_eq!(lanes.locate(47), Some((1, 31)));
        assert_eq!(lanes.locate(48), Some((2, 0)));
        for lane in 0..LANES_MAX {
            let start = lanes.lane_start(lane);
            assert_eq!(lanes.locate(start), Some((lane, 0)));
            assert_eq!(
                lanes.locate(start + lanes.lane_units(lane) - 1),
                Some((lane, lanes.lane_units(lane) - 1))
            );
        }
        assert_eq!(lanes.locate(lanes.capacity_max()), None);
    }

    #[test]
    fn a_lane_with_another_unit_size_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Lanes::new(tmp.path(), "t", 8, 16);
        a.ensure(0).unwrap();
        drop(a);
        let b = Lanes::new(tmp.path(), "t", 16, 16);
        assert!(matches!(b.exists(0), Err(Error::Incompatible { .. })));
    }

    /// A short lane is restored to its size with zeros, and the positions restored are
    /// reported; a long one is refused.
    #[test]
    fn a_truncated_lane_is_restored_and_a_long_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Lanes::new(tmp.path(), "t", 1, 4096);
        a.ensure(0).unwrap();
        a.ensure(1).unwrap();
        let (p0, p1) = (a.lane_path(0), a.lane_path(1));
        drop(a);
        OpenOptions::new()
            .write(true)
            .open(&p0)
            .unwrap()
            .set_len(5000)
            .unwrap();
        OpenOptions::new()
            .write(true)
            .open(&p1)
            .unwrap()
            .set_len(10)
            .unwrap();
        let b = Lanes::new(tmp.path(), "t", 1, 4096);
        assert!(
            matches!(b.exists(0), Err(Error::Corrupted { .. })),
            "not restored unasked"
        );
        b.restore_from(0);
        b.open_below(4096 + 8192).unwrap();
        assert_eq!(b.restored(), [(5000 - 4096, 4096), (4096, 4096 + 8192)]);
        assert_eq!(std::fs::metadata(&p0).unwrap().len(), 4096 + 4096);
        assert_eq!(std::fs::metadata(&p1).unwrap().len(), 4096 + 8192);
        drop(b);
        OpenOptions::new()
            .write(true)
            .open(&p0)
            .unwrap()
            .set_len(9000)
            .unwrap();
        let c = Lanes::new(tmp.path(), "t", 1, 4096);
        c.restore_from(0);
        assert!(matches!(c.exists(0), Err(Error::Corrupted { .. })));
        assert!(c.exists(1).unwrap());
        assert!(c.restored().is_empty());
    }
}
