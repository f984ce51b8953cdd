//! RandomAccess: an unbounded array of plain-data values, growing on write, each element
//! read and written under a striped lock.
//!
//! It owns `cells-NN.acc` (the lanes) and `length.acc` (a register holding the length).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;
use parking_lot::Mutex;

use crate::dir::{Claim, Dir};
use crate::error::{Error, Result};
use crate::limits::{ELEMENT_SIZE_BYTES_MAX, RANDOM_ACCESS_LANE_BASE_ELEMENTS};
use crate::raw::header::{read_u64, write_u64};
use crate::raw::lanes::Lanes;
use crate::raw::lanes::cells::{CellRef, Cells};
use crate::raw::poison::Poison;
use crate::raw::register::Register;

const LENGTH_FILE: &str = "length.acc";
const LANE_PREFIX: &str = "cells";
/// Largest first lane [`RandomAccess::open_with_first_lane`] accepts, in bytes.
const FIRST_LANE_BYTES_MAX: u64 = 1 << 28;

/// An unbounded array of `T`, shared by any number of threads.
///
/// Every element starts as all zeros; [`get`](Self::get) reports an all-zero element as
/// `None` ("never written"), so store a non-zero encoding if zero is meaningful to you.
/// [`with_mut`](Self::with_mut) grows the array as needed. Elements live in lane files of
/// doubling size and never move.
///
/// # Durability
/// Writes land in mapped memory at once. [`sync`](Self::sync) flushes every lane (msync),
/// then records the length in `length.acc`. Elements are updated in place, so after a
/// crash an element written since the last sync holds its old or its new value, or, if it
/// spans two disk sectors and the crash tore the write, a mix of both: use a [`Journal`]
/// or an [`AppendOnly`] for values that must change atomically.
///
/// Dropping the array is not a sync: elements set since the last sync stay in the files,
/// so a reopen sees those below the synced [`len`](Self::len), but nothing of them is
/// durable until a sync: a power loss may take any of them, as after a crash. (A reopen
/// flushes what it finds before acting on it; see [`Dir::open`](crate::Dir::open).)
///
/// [`Journal`]: crate::Journal
/// [`AppendOnly`]: crate::AppendOnly
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let arr = accretion::RandomAccess::<u64>::open(&dir, "arr")?;
/// arr.with_mut(1_000_000, |v| *v = 42)?;
/// assert_eq!(arr.get(1_000_000)?.map(|v| *v), Some(42));
/// assert!(arr.get(7)?.is_none());
/// assert_eq!(arr.len(), 1_000_001);
/// arr.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
#[derive(Debug)]
pub struct RandomAccess<T> {
    cells: Cells,
    length: Register,
    len: AtomicU64,
    sync_lock: Mutex<()>,
    poison: Poison,
    // Holds the name (and the directory lock) while the buffer is open.
    _claim: Claim,
    _element: PhantomData<fn() -> T>,
}

/// One element of a [`RandomAccess`], read consistently.
///
/// For an element wider than a machine word this is a read guard: writers of that element
/// (and of others sharing its lock stripe: indices equal mod 256) wait until it is
/// dropped. A one-word element (such as `u64`) is read with a single atomic load and held
/// by value, with no lock.
///
/// A thread may hold any number of `Ref`s at once, of any elements, and go on reading
/// while it holds them: reads never queue behind a waiting writer while the stripe is
/// held for reading, so they cannot deadlock with one. It must drop them before it writes
/// an element of the same stripe itself (see [`RandomAccess::with_mut`]).
pub struct Ref<'a, T> {
    inner: RefInner<'a, T>,
}

enum RefInner<'a, T> {
    Guarded(CellRef<'a>),
    Copied(T),
}

impl<T: Pod> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.inner {
            // Elements sit at multiples of size_of::<T>() from a page-aligned lane start,
            // so they are aligned for any T with alignment up to a page (checked at open).
            RefInner::Guarded(cell) => bytemuck::from_bytes(cell),
            RefInner::Copied(value) => value,
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Checks the array `name` without knowing its element type, as an open does: its
/// length register, and that every lane below the length is there, of the size and
/// shape lane 0 records (`catalog::verify`). Elements carry no checksums.
///
/// # Errors
/// As [`RandomAccess::open`].
pub(crate) fn inspect(dir: &Dir, name: &str) -> Result<crate::face::Figures> {
    use crate::face::Figure::Count;
    crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::RandomAccess)?;
    let claim = dir.claim(name)?;
    let length = Register::open(claim.path(), LENGTH_FILE, 8)?;
    let len = length.read(|b| read_u64(b, 0));
    let Some((unit, base)) = Lanes::shape(claim.path(), LANE_PREFIX)? else {
        if len > 0 {
            return Err(Error::corrupted(
                length.path(),
                0,
                format!("length {len} but the first lane is missing"),
            ));
        }
        return Ok(vec![("len", Count(0))]);
    };
    if unit == 0 || !base.is_power_of_two() {
        return Err(Error::corrupted(
            &claim.path().join(format!("{LANE_PREFIX}-00.acc")),
            0,
            format!("a lane of {unit}-byte elements, {base} in the first lane"),
        ));
    }
    let lanes = Lanes::new(claim.path(), LANE_PREFIX, unit, base);
    if len > lanes.capacity_max() {
        return Err(Error::corrupted(
            length.path(),
            0,
            format!("length {len} is past what the lanes can hold"),
        ));
    }
    lanes.restore_from(len);
    lanes.open_below(len)?;
    Ok(vec![("len", Count(len)), ("element_bytes", Count(unit))])
}

impl<T: Pod> RandomAccess<T> {
    /// Opens or creates the array at `name` in `dir`.
    ///
    /// # Errors
    /// `LimitExceeded` for a zero-sized `T`, one larger than [`ELEMENT_SIZE_BYTES_MAX`],
    /// or aligned to more than a page; `Incompatible` if the files hold elements of
    /// another size; `Corrupted` (also if `length.acc` is missing while data files
    /// exist); `Io`.
    pub fn open(dir: &Dir, name: &str) -> Result<Self> {
        Self::open_with_first_lane(dir, name, RANDOM_ACCESS_LANE_BASE_ELEMENTS)
    }

    /// Opens or creates the array at `name` in `dir` with a first lane of
    /// `first_lane_elements` elements (a power of two; each lane after holds twice the one
    /// before). [`open`](Self::open) uses [`RANDOM_ACCESS_LANE_BASE_ELEMENTS`]; a small
    /// array of wide elements whose size is known (a table of a few rows, say) fits its
    /// first lane exactly, so that it takes no disk space beyond its elements.
    ///
    /// The size is recorded in every lane file: the array must always be opened with the
    /// same one.
    ///
    /// ```
    /// let dir = accretion::Dir::temporary()?;
    /// let rows = accretion::RandomAccess::<[u32; 512]>::open_with_first_lane(&dir, "rows", 64)?;
    /// rows.with_mut(63, |row| row[7] = 1)?;
    /// assert_eq!(rows.read(63)?[7], 1);
    /// # Ok::<(), accretion::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open); `LimitExceeded` if `first_lane_elements` is not a power of
    /// two, or its lane would be larger than 256 MiB; `Incompatible` if the files were
    /// made with another first-lane size.
    pub fn open_with_first_lane(dir: &Dir, name: &str, first_lane_elements: u64) -> Result<Self> {
        let size = size_of::<T>();
        if size == 0 || size > ELEMENT_SIZE_BYTES_MAX {
            return Err(Error::limit(
                "ELEMENT_SIZE_BYTES_MAX",
                size as u64,
                ELEMENT_SIZE_BYTES_MAX as u64,
            ));
        }
        if !first_lane_elements.is_power_of_two()
            || first_lane_elements.saturating_mul(size as u64) > FIRST_LANE_BYTES_MAX
        {
            return Err(Error::limit(
                "first lane elements (a power of two, at most 256 MiB)",
                first_lane_elements,
                FIRST_LANE_BYTES_MAX / (size.max(1) as u64),
            ));
        }
        if align_of::<T>() > 4096 {
            return Err(Error::limit(
                "element alignment",
                align_of::<T>() as u64,
                4096,
            ));
        }
        // Before the claim, which makes the name's directories; again under it, for an
        // open of another kind that made its files meanwhile.
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::RandomAccess)?;
        let claim = dir.claim(name)?;
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::RandomAccess)?;
        let lanes = Lanes::new(claim.path(), LANE_PREFIX, size as u64, first_lane_elements);
        Register::refuse_lost(claim.path(), LENGTH_FILE, || lanes.first_exists())?;
        let length = Register::open(claim.path(), LENGTH_FILE, 8)?;
        let len = length.read(|b| read_u64(b, 0));
        // A lane cut short past the length is a torn tail, restored; below it, damage,
        // and so is a lane missing below it (mapping them all now finds both).
        lanes.restore_from(len);
        if len <= lanes.capacity_max() {
            lanes.open_below(len)?;
        }
        let cells = Cells::new(lanes, size);
        if len > cells.capacity_max() {
            return Err(Error::corrupted(
                length.path(),
                0,
                format!(
                    "length {len} is past the {} elements the lanes can hold",
                    cells.capacity_max()
                ),
            ));
        }
        if len > 0 && cells.read(len - 1)?.is_none() {
            return Err(Error::corrupted(
                length.path(),
                0,
                format!("length {len} but the lane holding its last element is missing"),
            ));
        }
        Ok(RandomAccess {
            cells,
            length,
            len: AtomicU64::new(len),
            sync_lock: Mutex::new(()),
            poison: Poison::new(claim.path()),
            _claim: claim,
            _element: PhantomData,
        })
    }

    /// Element `index` under its read lock, or `None` if it is all zeros (never written)
    /// or past the end.
    ///
    /// Holding the returned [`Ref`] while calling `get` or `read` again, for any index,
    /// is fine, also while other threads wait to write (see [`Ref`]).
    ///
    /// # Errors
    /// `Io` if a lane file cannot be mapped; `Corrupted` if it is damaged.
    pub fn get(&self, index: u64) -> Result<Option<Ref<'_, T>>> {
        if index >= self.len() {
            return Ok(None);
        }
        if self.cells.is_single_word() {
            let value = self.read(index)?;
            if bytemuck::bytes_of(&value).iter().all(|b| *b == 0) {
                return Ok(None);
            }
            return Ok(Some(Ref {
                inner: RefInner::Copied(value),
            }));
        }
        let Some(cell) = self.cells.read(index)? else {
            return Ok(None);
        };
        if cell.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Ok(Some(Ref {
            inner: RefInner::Guarded(cell),
        }))
    }

    /// A copy of element `index`; never-written elements read as all zeros. Never torn by
    /// a concurrent [`with_mut`](Self::with_mut); for elements of one machine word (1, 2, 4
    /// or 8 bytes, such as `u64`) it takes no lock at all.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn read(&self, index: u64) -> Result<T> {
        if index >= self.len() {
            return Ok(T::zeroed());
        }
        let mut value = T::zeroed();
        self.cells.load(index, bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// Copies elements `start..start + out.len()` into `out` (elements never written, or
    /// past the end, read as zeros): a bulk [`read`](Self::read), for scans and
    /// checksums. No element is torn, but the copy as a whole is not a snapshot: hold
    /// off writers for that.
    ///
    /// # Errors
    /// As [`get`](Self::get); `LimitExceeded` past the largest index.
    pub fn read_many(&self, start: u64, out: &mut [T]) -> Result<()> {
        let end = start.saturating_add(out.len() as u64);
        let written = self.len().clamp(start, end);
        let (inside, past) = out.split_at_mut((written - start) as usize);
        past.fill(T::zeroed());
        self.cells
            .load_many(start, bytemuck::cast_slice_mut(inside))
    }

    /// Hints the processor to start loading element `index`, so that the cache misses of
    /// several reads issued next can overlap. Only a hint: it never fails or blocks.
    pub fn prefetch(&self, index: u64) {
        if index < self.len() {
            self.cells.prefetch(index);
        }
    }

    /// Runs `f` on element `index` under its write lock, growing the array if needed.
    ///
    /// The write lock is the lock of the element's stripe (indices equal mod 256). It is
    /// taken once no reader holds the stripe; readers do not wait for a waiting writer
    /// while the stripe is held for reading (so that a thread holding a [`Ref`] can read
    /// on), so a continuous stream of overlapping reads of one stripe can keep a writer
    /// waiting as long as it lasts.
    ///
    /// Restriction (a deadlock, not detected): the calling thread must not hold a [`Ref`]
    /// of an element of the same stripe, and `f` must not write this array, nor read it
    /// if its elements are wider than a machine word, since the lock it would wait for
    /// may be its own (or another writer's that waits for it). Copy what `f` needs
    /// beforehand. Elements of one machine word (such as `u64`) are read without a lock,
    /// so reading them is safe anywhere.
    ///
    /// # Errors
    /// `LimitExceeded` past the largest index; `Io` if a new lane cannot be created (a
    /// full disk is `StorageFull`); `Poisoned` after a failed sync.
    pub fn with_mut<R>(&self, index: u64, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.poison.check()?;
        let out = self.cells.update(index, |bytes| {
            let mut value: T = bytemuck::pod_read_unaligned(bytes);
            let out = f(&mut value);
            bytes.copy_from_slice(bytemuck::bytes_of(&value));
            out
        })?;
        self.len.fetch_max(index + 1, Ordering::AcqRel);
        Ok(out)
    }

    /// Stores `value` at `index`.
    ///
    /// # Errors
    /// As [`with_mut`](Self::with_mut).
    pub fn set(&self, index: u64, value: T) -> Result<()> {
        self.with_mut(index, |v| *v = value)
    }

    /// Makes space for `len` elements now, so that later writes below `len` cannot fail
    /// for lack of disk space. Does not change [`len`](Self::len).
    ///
    /// # Errors
    /// As [`with_mut`](Self::with_mut).
    pub fn reserve(&self, len: u64) -> Result<()> {
        self.poison.check()?;
        self.cells.reserve(len)
    }

    /// Counts the elements below `len` as part of the array from now on: reads below it
    /// return what the lanes hold instead of zeros. For owners whose elements check
    /// themselves and that want the writes made after the last sync, which a reopen's
    /// length does not cover but which the page cache kept (a process that died, or a
    /// drop without sync): a OnceMap reads its index and filter slots so, since each slot
    /// is verified against its entry. Creates the lanes below `len`; the length reaches
    /// the disk with the next sync.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    pub fn extend_len(&self, len: u64) -> Result<()> {
        self.reserve(len)?;
        self.len.fetch_max(len, Ordering::AcqRel);
        Ok(())
    }

    /// One past the highest index ever written.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// True if nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements backed by lane files mapped so far.
    pub fn capacity(&self) -> u64 {
        self.cells.capacity()
    }

    /// Bytes handed to msync by this handle's syncs so far: each sync flushes the lanes
    /// written since the one before (the kernel writes only their dirty pages).
    pub fn flushed_bytes(&self) -> u64 {
        self.cells.flushed()
    }

    /// Makes every write that returned before this call durable; see the type's docs.
    ///
    /// # Errors
    /// `Io` if a flush fails (the array is then poisoned); `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock();
        self.poison.check()?;
        let len = self.len();
        self.poison.on_error(self.cells.flush().and_then(|()| {
            if self.length.read(|b| read_u64(b, 0)) != len {
                self.length.update(|b| write_u64(b, 0, len))?;
            }
            self.length.sync()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_many_matches_read_across_lanes_and_past_the_end() {
        let dir = Dir::temporary().unwrap();
        let words = RandomAccess::<u16>::open(&dir, "w").unwrap();
        let wide = RandomAccess::<[u32; 3]>::open(&dir, "v").unwrap();
        let base = RANDOM_ACCESS_LANE_BASE_ELEMENTS;
        for i in (0..3 * base).step_by(7) {
            words.set(i, (i % 65_521) as u16 + 1).unwrap();
            wide.set(i, [i as u32, 1, 2]).unwrap();
        }
        for (start, n) in [(0, 10), (base - 3, 9), (5, 3 * base + 100), (4 * base, 5)] {
            let mut got = vec![0u16; n as usize];
            words.read_many(start, &mut got).unwrap();
            let want: Vec<u16> = (start..start + n).map(|i| words.read(i).unwrap()).collect();
            assert_eq!(got, want, "u16 from {start}, {n}");
            let mut got = vec![[0u32; 3]; n as usize];
            wide.read_many(start, &mut got).unwrap();
            let want: Vec<_> = (start..start + n).map(|i| wide.read(i).unwrap()).collect();
            assert_eq!(got, want, "[u32; 3] from {start}, {n}");
        }
    }

    /// A first lane sized to the data takes no disk space past it, must be reopened with
    /// the same size, and must be a power of two.
    #[test]
    fn a_chosen_first_lane_fits_the_data_and_is_checked_at_reopen() {
        use std::os::unix::fs::MetadataExt;
        let dir = Dir::temporary().unwrap();
        let rows = RandomAccess::<[u32; 512]>::open_with_first_lane(&dir, "rows", 64).unwrap();
        for i in 0..64 {
            rows.with_mut(i, |r| r[511] = i as u32 + 1).unwrap();
        }
        rows.sync().unwrap();
        drop(rows);
        let mut allocated = 0;
        for e in std::fs::read_dir(dir.path().join("rows")).unwrap() {
            allocated += e.unwrap().metadata().unwrap().blocks() * 512;
        }
        // 128 KiB of rows, a header page and the length register.
        assert!(allocated <= (128 << 10) + (64 << 10), "{allocated} bytes");
        assert!(matches!(
            RandomAccess::<[u32; 512]>::open(&dir, "rows"),
            Err(Error::Incompatible { .. })
        ));
        let rows = RandomAccess::<[u32; 512]>::open_with_first_lane(&dir, "rows", 64).unwrap();
        assert_eq!(rows.read(63).unwrap()[511], 64);
        assert!(matches!(
            RandomAccess::<u64>::open_with_first_lane(&dir, "odd", 48),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(matches!(
            RandomAccess::<u64>::open_with_first_lane(&dir, "huge", 1 << 40),
            Err(Error::LimitExceeded { .. })
        ));
    }

    #[test]
    fn grows_and_survives_reopen() {
        let dir = Dir::temporary().unwrap();
        let arr = RandomAccess::<[u32; 3]>::open(&dir, "a").unwrap();
        for i in (0..100_000u64).step_by(997) {
            arr.set(i, [i as u32, 1, 2]).unwrap();
        }
        arr.sync().unwrap();
        drop(arr);
        let arr = RandomAccess::<[u32; 3]>::open(&dir, "a").unwrap();
        assert_eq!(arr.len(), 99_700 + 1);
        for i in (0..100_000u64).step_by(997) {
            assert_eq!(*arr.get(i).unwrap().unwrap(), [i as u32, 1, 2]);
        }
        assert!(arr.get(1).unwrap().is_none());
        drop(arr);
        assert!(matches!(
            RandomAccess::<u64>::open(&dir, "a"),
            Err(Error::Incompatible { .. })
        ));
    }

    /// A sync flushes the 64 KiB stretches written since the last one, not whole lanes
    /// (the index of a large OnceMap would otherwise cost its size at every sync).
    #[test]
    fn a_sync_flushes_only_the_stretches_written() {
        let dir = Dir::temporary().unwrap();
        let arr = RandomAccess::<u64>::open(&dir, "a").unwrap();
        let unit = (64 << 10) / 8;
        arr.set(4_000_000, 1).unwrap();
        arr.sync().unwrap();
        let base = arr.flushed_bytes();
        for i in [10, 11, 3 * unit + 5, 2_000_000] {
            arr.set(i, 7).unwrap();
        }
        arr.sync().unwrap();
        // The first lane (4096 elements, 32 KiB) whole, then two 64 KiB stretches.
        let expected = (32 << 10) + 2 * (64 << 10);
        assert_eq!(arr.flushed_bytes() - base, expected, "three stretches");
        arr.sync().unwrap();
        assert_eq!(arr.flushed_bytes() - base, expected, "nothing new");
        drop(arr);
        let arr = RandomAccess::<u64>::open(&dir, "a").unwrap();
        for i in [10, 11, 3 * unit + 5, 2_000_000] {
            assert_eq!(arr.read(i).unwrap(), 7);
        }
    }
}
