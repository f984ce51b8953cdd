//! Plain file operations with the crate's durability rules built in: atomic creation of a
//! small file (temp file, fsync, rename, fsync of the directory) and directory fsync.
//!
//! Every file and directory of a store is created readable and writable by its owner only
//! (0600 and 0700), and files are opened without following symbolic links: the mappings
//! handed out as `&[u8]` are sound only while nobody else changes the files (see
//! ARCHITECTURE.md, "Soundness of the mapping").
//!
//! No mapping happens here; see `lanes` for that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::raw::sync;

/// Fsyncs a directory, so that entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    sync::dir(dir)
}

/// Mode of every file a store creates: its owner's alone.
const FILE_MODE: u32 = 0o600;
/// Mode of every directory a store creates.
const DIR_MODE: u32 = 0o700;

/// `options` set to create files of mode 0600 and to refuse a symbolic link at the last
/// component of the path (`O_NOFOLLOW`).
pub(crate) fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits();
    options
        .mode(FILE_MODE)
        .custom_flags(i32::try_from(nofollow).expect("O_NOFOLLOW fits an int"))
}

/// Opens an existing store file at `path` for reading and writing, not through a link.
pub(crate) fn open_existing(path: &Path, what: &'static str) -> Result<File> {
    private(OpenOptions::new().read(true).write(true))
        .open(path)
        .map_err(|e| link_or_io(path, what, e))
}

/// Creates `path` and any missing parents, each of mode 0700.
pub(crate) fn create_dirs(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| Error::io(path, "create directory", e))
}

/// Refuses structure `name` under `root` if any component of its path is a symbolic
/// link: a structure's files are the store's own, never reached through a link.
pub(crate) fn refuse_links(root: &Path, name: &str) -> Result<()> {
    let mut at = root.to_path_buf();
    for part in name.split('/') {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(link(&at)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&at, "look up", e)),
        }
    }
    Ok(())
}

fn link(path: &Path) -> Error {
    Error::incompatible(
        path,
        "is a symbolic link: a store's structures and files are never opened through links",
    )
}

/// `e` from opening `path` with `O_NOFOLLOW`: a link is `Incompatible`, else `Io`.
fn link_or_io(path: &Path, what: &'static str, e: io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        link(path)
    } else {
        Error::io(path, what, e)
    }
}

/// Creates `dir/name` holding exactly `bytes`, atomically: a crash leaves either no file or
/// the whole file. An existing file of that name is replaced.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    let mut file = private(OpenOptions::new().write(true).create(true).truncate(true))
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create", e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    sync::file_all(&file, &tmp, "fsync")?;
    drop(file);
    fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, "rename into place", e))?;
    sync_dir(dir)
}

/// Reads a whole small file, or `None` if it does not exist. A symbolic link is
/// `Incompatible`.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut file = match private(OpenOptions::new().read(true)).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(link_or_io(path, "open", e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "read", e))?;
    Ok(Some(bytes))
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

/// Reserves real disk space for bytes `offset..offset+len` of `file`, as [`allocate`]
/// does from 0 (where the file system has no `fallocate`, by writing zeros there, which
/// is only done to bytes not written yet).
pub(crate) fn allocate_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::KEEP_SIZE, offset, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => {
            use std::os::unix::fs::FileExt;
            const CHUNK: usize = 1 << 20;
            let zeros = vec![0u8; CHUNK];
            let mut at = offset;
            while at < offset + len {
                let n = usize::try_from((offset + len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
                file.write_all_at(&zeros[..n], at)
                    .map_err(|e| Error::io(path, "allocate file space by writing zeros", e))?;
                at += n as u64;
            }
            Ok(())
        }
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
