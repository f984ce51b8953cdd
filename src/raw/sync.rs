//! Every call that asks the OS to make bytes durable goes through here: fdatasync or
//! fsync of a file, msync of a mapped range, fsync of a directory, syncfs of the file
//! system. Nothing else in the crate calls them directly.
//!
//! With the `fault-injection` feature (off by default; the crate's own tests turn it on),
//! each call first asks the hooks a test installed (see `crate::faults`): they see which
//! file and range is about to be flushed, and may make the call fail without flushing, as
//! a dying process or a failing disk would.

use std::fs::File;
use std::path::Path;

use memmap2::MmapRaw;

use crate::error::{Error, Result};

/// fdatasync of `file` (at `path`): its data, and the metadata needed to read it back.
pub(crate) fn file_data(file: &File, path: &Path, what: &'static str) -> Result<()> {
    hooks::check(&Flush::File { path })?;
    file.sync_data().map_err(|e| Error::io(path, what, e))
}

/// fsync of `file` (at `path`), metadata included: for files just created.
pub(crate) fn file_all(file: &File, path: &Path, what: &'static str) -> Result<()> {
    hooks::check(&Flush::File { path })?;
    file.sync_all().map_err(|e| Error::io(path, what, e))
}

/// fsync of the directory at `dir`, so that entries created, renamed or removed in it
/// survive a crash.
pub(crate) fn dir(dir: &Path) -> Result<()> {
    hooks::check(&Flush::Dir { path: dir })?;
    let handle = File::open(dir).map_err(|e| Error::io(dir, "open directory for fsync", e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// syncfs of the file system holding `handle` (a file at `path`): every dirty page and
/// directory entry of that file system is on the device when it returns (Linux 5.8 and
/// later report write-back errors here).
pub(crate) fn file_system(handle: &File, path: &Path) -> Result<()> {
    hooks::check(&Flush::FileSystem { path })?;
    rustix::fs::syncfs(handle).map_err(|errno| {
        Error::io(
            path,
            "syncfs",
            std::io::Error::from_raw_os_error(errno.raw_os_error()),
        )
    })
}

/// msync (`MS_SYNC`) of `len` bytes at `offset` of `map`, the mapping of the whole file at
/// `path` from its first byte.
pub(crate) fn mapped(map: &MmapRaw, path: &Path, offset: usize, len: usize) -> Result<()> {
    hooks::check(&Flush::Range {
        path,
        offset: offset as u64,
        len: len as u64,
    })?;
    map.flush_range(offset, len)
        .map_err(|e| Error::io(path, "msync lane", e))
}

/// One call that makes bytes durable, as a hook sees it before it is made.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub enum Flush<'a> {
    /// fdatasync or fsync of the whole file at `path`.
    File {
        /// The file.
        path: &'a Path,
    },
    /// msync of `len` bytes at byte `offset` of the file at `path`.
    Range {
        /// The file.
        path: &'a Path,
        /// First byte, counted from the start of the file.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// fsync of the directory at `path` (its entries, not the files in it).
    Dir {
        /// The directory.
        path: &'a Path,
    },
    /// syncfs of the whole file system holding `path`.
    FileSystem {
        /// A file on that file system (a store directory's lock file).
        path: &'a Path,
    },
}

impl Flush<'_> {
    /// The file or directory the call names.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub fn path(&self) -> &Path {
        match *self {
            Flush::File { path }
            | Flush::Range { path, .. }
            | Flush::Dir { path }
            | Flush::FileSystem { path } => path,
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod hooks {
    use super::Flush;
    use crate::error::Result;

    #[inline(always)]
    pub(super) fn check(_: &Flush<'_>) -> Result<()> {
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub(crate) mod hooks {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use parking_lot::RwLock;

    use super::Flush;
    use crate::error::{Error, Result};

    /// What a hook is: shown each flush before it is made; `Some(error)` fails it unmade.
    pub type Hook = dyn Fn(&Flush<'_>) -> Option<std::io::Error> + Send + Sync;

    static HOOKS: RwLock<Vec<(u64, Arc<Hook>)>> = RwLock::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    /// Hooks installed now: with none, a flush costs one atomic load more than without
    /// the feature (benchmarks built with it measure the plain path).
    static INSTALLED: AtomicUsize = AtomicUsize::new(0);

    /// Removes its hook when dropped.
    #[must_use = "the hook is removed when the guard is dropped"]
    #[derive(Debug)]
    pub struct HookGuard(u64);

    impl Drop for HookGuard {
        fn drop(&mut self) {
            HOOKS.write().retain(|(id, _)| *id != self.0);
            INSTALLED.fetch_sub(1, Ordering::Release);
        }
    }

    /// Installs `hook` until the returned guard is dropped. Hooks see every flush of the
    /// process, from every thread, so a test filters by path. A hook runs while the
    /// caller holds its own locks: it must not call into accretion.
    pub fn install(
        hook: impl Fn(&Flush<'_>) -> Option<std::io::Error> + Send + Sync + 'static,
    ) -> HookGuard {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        HOOKS.write().push((id, Arc::new(hook)));
        INSTALLED.fetch_add(1, Ordering::Release);
        HookGuard(id)
    }

    pub(super) fn check(flush: &Flush<'_>) -> Result<()> {
        if INSTALLED.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let hooks: Vec<Arc<Hook>> = HOOKS.read().iter().map(|(_, h)| Arc::clone(h)).collect();
        for hook in hooks {
            if let Some(e) = hook(flush) {
                return Err(Error::io(
                    flush.path(),
                    "flush (failed by a fault-injection hook)",
                    e,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub use hooks::{Hook, HookGuard, install};
