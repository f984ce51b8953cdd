//! Journal: a checksummed multi-slot register of one fixed-size plain-data value. It is a
//! state record, not a write-ahead log: it holds one value, and after a crash the newest
//! intact copy.
//!
//! It owns one file, `journal.acc`; the slot mechanics live in `raw::register`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytemuck::Pod;
use parking_lot::{Mutex, MutexGuard};

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
    /// Held by `set` and `update` (across `update`'s closure, which runs on a copy), so
    /// that an update is atomic against other writers; `owner` is the holding thread, so
    /// that a `set` or `update` from inside an update's closure is refused, not a
    /// deadlock.
    writer: Mutex<()>,
    owner: AtomicUsize,
    _claim: Claim,
    _value: PhantomData<fn() -> T>,
}

/// The journal's writer lock, with its owner recorded until dropped.
struct WriterGuard<'a> {
    owner: &'a AtomicUsize,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
    }
}

/// A number that tells this thread from every other live thread: the address of a
/// thread-local (never 0).
fn thread_tag() -> usize {
    thread_local! {
        static TAG: u8 = const { 0 };
    }
    TAG.with(|t| std::ptr::from_ref(t) as usize)
}

/// Checks the journal `name` without knowing its value type: its header, and which of
/// its slots hold a value whose checksum holds (`catalog::verify`).
///
/// # Errors
/// `Corrupted` for a damaged header or a file of the wrong length, or a missing file;
/// as [`Journal::open`].
pub(crate) fn inspect(dir: &Dir, name: &str) -> Result<crate::face::Figures> {
    use crate::face::Figure::Count;
    crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::Journal)?;
    let claim = dir.claim(name)?;
    let Some(value_bytes) = Register::stored_value_bytes(claim.path(), FILE)? else {
        return Err(Error::corrupted(
            &claim.path().join(FILE),
            0,
            "the journal's file is missing",
        ));
    };
    if value_bytes > JOURNAL_VALUE_BYTES_MAX as u64 {
        return Err(Error::corrupted(
            &claim.path().join(FILE),
            16,
            format!("a value size of {value_bytes} bytes, past the limit"),
        ));
    }
    let register = Register::open(claim.path(), FILE, value_bytes as usize)?;
    let recovery = register.recovery();
    if recovery.valid == 0 && recovery.written > 0 {
        return Err(Error::corrupted(
            register.path(),
            0,
            format!(
                "none of its slots holds a value whose checksum holds, but {} were written: \
                 the journal's value is lost (an open reads zeros)",
                recovery.written
            ),
        ));
    }
    Ok(vec![
        ("value_bytes", Count(value_bytes)),
        ("slots_valid", Count(recovery.valid as u64)),
    ])
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
        // Before the claim, which makes the name's directories; again under it, for an
        // open of another kind that made its files meanwhile.
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::Journal)?;
        let claim = dir.claim(name)?;
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::Journal)?;
        let register = Register::open(claim.path(), FILE, size)?;
        Ok(Journal {
            register,
            writer: Mutex::new(()),
            owner: AtomicUsize::new(0),
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
        let _writer = self.writer("Journal::set")?;
        self.register
            .update(|bytes| bytes.copy_from_slice(bytemuck::bytes_of(&value)))
    }

    /// Changes the value in place, atomically with respect to other writers: `f` runs on
    /// a copy of the current value, which replaces it when `f` returns. Inside `f`,
    /// [`get`](Self::get) reads the value as it was before the update, and
    /// [`sync`](Self::sync) makes that value durable.
    ///
    /// # Errors
    /// `Poisoned` after a failed sync; `Reentrant` when called, as `set` is, from inside
    /// an update's closure on the same thread (it would wait for itself).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let _writer = self.writer("Journal::update")?;
        let mut value = self.get();
        let out = f(&mut value);
        self.register
            .update(|bytes| bytes.copy_from_slice(bytemuck::bytes_of(&value)))?;
        Ok(out)
    }

    /// Takes the writer lock for `call`, or `Reentrant` if this thread holds it (from
    /// inside an update's closure).
    fn writer(&self, call: &'static str) -> Result<WriterGuard<'_>> {
        let me = thread_tag();
        if self.owner.load(Ordering::Acquire) == me {
            return Err(Error::Reentrant {
                call,
                inside: "a Journal::update closure",
            });
        }
        let guard = self.writer.lock();
        self.owner.store(me, Ordering::Release);
        Ok(WriterGuard {
            owner: &self.owner,
            _guard: guard,
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
