//! Plain file operations with the crate's durability rules built in: atomic creation of a
//! small file (temp file, fsync, rename, fsync of the directory) and directory fsync.
//!
//! No mapping happens here; see `lanes` for that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Fsyncs a directory, so that entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| Error::io(dir, "open directory for fsync", e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// Creates `dir/name` holding exactly `bytes`, atomically: a crash leaves either no file or
/// the whole file. An existing file of that name is replaced.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create", e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    drop(file);
    fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, "rename into place", e))?;
    sync_dir(dir)
}

/// Reads a whole small file, or `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read", e)),
    }
}

/// Reserves `len` bytes of real disk space for `file` starting at 0, so that later writes
/// through a mapping cannot fail for lack of space (which would be SIGBUS, not an error).
///
/// Uses `fallocate`; where the file system does not support it, writes zeros instead.
pub(crate) fn allocate(file: &File, path: &Path, len: u64) -> Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => write_zeros(file, path, len),
        Err(errno) => Err(Error::io(
            path,
            "allocate file space",
            io::Error::from_raw_os_error(errno.raw_os_error()),
        )),
    }
}

fn write_zeros(file: &File, path: &Path, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let current = file
        .metadata()
        .map_err(|e| Error::io(path, "stat", e))?
        .len();
    let mut at = current;
    while at < len {
        let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| Error::io(path, "allocate file space by writing zeros", e))?;
        at += n as u64;
    }
    Ok(())
}
