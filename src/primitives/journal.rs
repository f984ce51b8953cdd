//! Journal: a checksummed multi-slot register of one fixed-size plain-data value. It is a
//! state record, not a write-ahead log: it holds one value, and after a crash the newest
//! intact copy.
//!
//! It owns one file, `journal.acc`; the slot mechanics live in `raw::register`.

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::dir::{Claim, Dir};
use crate::error::{Error, Result};
use crate::limits::JOURNAL_VALUE_BYTES_MAX;
use crate::raw::register::Register;

const FILE: &str = "journal.acc";

/// A durable register of one value of type `T`.
///
/// The file holds four slots, each `(sequence number, value, checksum)` in its own
/// 512-byte sectors. On open the valid slot with the highest sequence number wins, so a
/// torn or half-written newest slot yields the previous value. Any value may be stored,
/// in any order; a never-set journal reads as all zeros.
///
/// # Durability
/// [`set`](Self::set) and [`update`](Self::update) change memory only and are visible to
/// [`get`](Self::get) at once. [`sync`](Self::sync) returns after the value current at
/// its start is on disk (`fdatasync`); a crash at any instant leaves either that value or
/// the previously synced one. After a failed sync the journal refuses writes
/// (`Error::Poisoned`) until reopened.
///
/// Dropping the journal is not a sync: a value set since the last sync is gone on
/// reopen, exactly as after a crash.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let j = accretion::Journal::<[u64; 2]>::open(&dir, "state")?;
/// j.set([1, 2])?;
/// j.update(|v| v[1] += 40)?;
/// j.sync()?;
/// assert_eq!(j.get(), [1, 42]);
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// `T` is any [`bytemuck::Pod`] type. The crate re-exports the bytemuck it was built with
/// as `accretion::bytemuck`, so your own value types need no bytemuck dependency of
/// their own: derive through the re-export and point the derive at it with
/// `#[bytemuck(crate = "accretion::bytemuck")]` (the same for [`RandomAccess`] and
/// [`TypedOnceMap`]):
///
/// ```
/// use accretion::bytemuck::{Pod, Zeroable};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
/// #[bytemuck(crate = "accretion::bytemuck")]
/// #[repr(C)]
/// struct Progress {
///     done: u64,
///     total: u64,
/// }
///
/// let dir = accretion::Dir::temporary()?;
/// let j = accretion::Journal::<Progress>::open(&dir, "progress")?;
/// j.set(Progress { done: 3, total: 10 })?;
/// j.sync()?;
/// assert_eq!(j.get(), Progress { done: 3, total: 10 });
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// [`RandomAccess`]: crate::RandomAccess
/// [`TypedOnceMap`]: crate::TypedOnceMap
#[derive(Debug)]
pub struct Journal<T> {
    register: Register,
    _claim: Claim,
    _value: PhantomData<fn() -> T>,
}

impl<T: Pod> Journal<T> {
    /// Opens or creates the journal at `name` in `dir`.
    ///
    /// # Errors
    /// `LimitExceeded` if `T` is larger than [`JOURNAL_VALUE_BYTES_MAX`]; `Incompatible`
    /// if the file holds values of another size; `Corrupted` for a damaged header; `Io`.
    pub fn open(dir: &Dir, name: &str) -> Result<Self> {
        let size = size_of::<T>();
        if size > JOURNAL_VALUE_BYTES_MAX {
            return Err(Error::limit(
                "JOURNAL_VALUE_BYTES_MAX",
                size as u64,
                JOURNAL_VALUE_BYTES_MAX as u64,
            ));
        }
        let claim = dir.claim(name)?;
        let register = Register::open(claim.path(), FILE, size)?;
        Ok(Journal {
            register,
            _claim: claim,
            _value: PhantomData,
        })
    }

    /// The current value: the last one set, durable or not.
    pub fn get(&self) -> T {
        self.register.read(bytemuck::pod_read_unaligned)
    }

    /// Replaces the value in memory; call [`sync`](Self::sync) to make it durable.
    ///
    /// # Errors
    /// `Poisoned` after a failed sync.
    pub fn set(&self, value: T) -> Result<()> {
        self.register
            .update(|bytes| bytes.copy_from_slice(bytemuck::bytes_of(&value)))
    }

    /// Changes the value in place, atomically with respect to other callers.
    ///
    /// # Errors
    /// `Poisoned` after a failed sync.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.register.update(|bytes| {
            let mut value: T = bytemuck::pod_read_unaligned(bytes);
            let out = f(&mut value);
            bytes.copy_from_slice(bytemuck::bytes_of(&value));
            out
        })
    }

    /// Makes the current value durable.
    ///
    /// # Errors
    /// `Io` if writing or fdatasync fails (the journal is then poisoned); `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        self.register.sync()
    }

    /// Which slot open took its value from (`None` for a journal never synced), and how
    /// many slots held a valid copy: a diagnostic for recovery.
    pub fn recovered_slot(&self) -> (Option<usize>, usize) {
        let r = self.register.recovery();
        (r.slot, r.valid)
    }

    /// The journal's file.
    pub fn path(&self) -> &std::path::Path {
        self.register.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_value_order_survives_reopen() {
        let dir = Dir::temporary().unwrap();
        let j = Journal::<u64>::open(&dir, "j").unwrap();
        assert_eq!(j.get(), 0);
        for v in [9u64, 3, 7, 1] {
            j.set(v).unwrap();
            j.sync().unwrap();
        }
        j.set(100).unwrap(); // not synced: lost on reopen
        drop(j);
        let j = Journal::<u64>::open(&dir, "j").unwrap();
        assert_eq!(j.get(), 1);
        assert!(matches!(
            Journal::<u64>::open(&dir, "j"),
            Err(Error::NameInUse { .. })
        ));
        drop(j);
        assert!(matches!(
            Journal::<u32>::open(&dir, "j"),
            Err(Error::Incompatible { .. })
        ));
    }
}
