//! The mutable-cell discipline over lanes: an unbounded array of fixed-size byte cells,
//! each read under a shared stripe lock and written under the exclusive one.
//!
//! Invariant: cell `i` is only touched while holding stripe `i % STRIPES`, shared for
//! reads and exclusive for writes, so no read overlaps a write of the same bytes.
//! Stripes are padded to a cache line so that neighbours do not share one.

use std::ops::Deref;

use parking_lot::{RwLock, RwLockReadGuard};

use super::Lanes;
use crate::error::{Error, Result};

/// Number of lock stripes.
pub(crate) const STRIPES: usize = 256;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Stripe(RwLock<()>);

/// Fixed-size mutable cells over lanes whose unit is one cell.
#[derive(Debug)]
pub(crate) struct Cells {
    lanes: Lanes,
    stripes: Box<[Stripe]>,
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
    /// Cells over `lanes`.
    pub(crate) fn new(lanes: Lanes) -> Self {
        Cells {
            lanes,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
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

    /// Cell `index` under its read lock, or `None` if its lane was never created (the cell
    /// was never written).
    pub(crate) fn read(&self, index: u64) -> Result<Option<CellRef<'_>>> {
        let (lane, within) = self.locate(index)?;
        if !self.lanes.exists(lane)? {
            return Ok(None);
        }
        let guard = self.stripe(index).read();
        // SAFETY: cell `index` is written only under the exclusive lock of this stripe,
        // and we hold it shared until `CellRef` (which owns the guard) is dropped.
        let bytes = unsafe { self.lanes.slice(lane, within, 1)? };
        Ok(Some(CellRef {
            _guard: guard,
            bytes,
        }))
    }

    /// Runs `f` on cell `index` under its write lock, creating its lane if needed.
    ///
    /// # Errors
    /// `LimitExceeded` past the last lane; `Io` if the lane cannot be created.
    pub(crate) fn write<R>(&self, index: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        let (lane, within) = self.locate(index)?;
        self.lanes.ensure(lane)?;
        let _guard = self.stripe(index).write();
        // SAFETY: we hold this cell's stripe exclusively, so no reader or writer of the
        // same bytes exists until `_guard` drops, which outlives the borrow passed to `f`.
        let bytes = unsafe { self.lanes.slice_mut(lane, within, 1)? };
        Ok(f(bytes))
    }

    /// Writes every mapped lane to disk.
    pub(crate) fn flush(&self) -> Result<()> {
        self.lanes.flush_all()
    }
}
