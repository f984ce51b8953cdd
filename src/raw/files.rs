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

/// Reserves real disk space for bytes `offset..offset+len` of `file` (extending it if
/// they lie past its end), so that later writes to them through a mapping cannot fail
/// for lack of space (which would be SIGBUS, not an error).
///
/// Uses `fallocate`. Where the file system does not support it, each byte is read and
/// written back as it is (zeros where there was a hole or nothing), which allocates the
/// space without changing what the file holds: the range may hold data already (a lane
/// opened again knows of no allocated step, and allocates its steps anew).
pub(crate) fn allocate(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), offset, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => rewrite_in_place(file, path, offset, len),
        Err(errno) => Err(Error::io(
            path,
            "allocate file space",
            io::Error::from_raw_os_error(errno.raw_os_error()),
        )),
    }
}

/// As [`allocate`], and then writes each byte of the range back as it is, so that the
/// space is *written* (its extents initialized), not only reserved, once the kernel
/// writes those pages out. Why: a write that lands in reserved but unwritten space makes
/// the flush that commits it also convert that extent, and on ext4 without a journal (this
/// machine's) each such conversion in a large file wrote about 1.8 MB of metadata per
/// flush: a durable OnceMap insert at 1M keys wrote 1.8 MB and ran at 1.5 k/s; with its
/// space written ahead it writes 16 KiB and runs at 6 k/s. Reserving first keeps a full
/// disk an error here; the rewrite itself needs no new space. The caller guarantees that
/// nobody writes the range meanwhile (lanes allocate a step before any write reaches it,
/// one step at a time).
pub(crate) fn allocate_written(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    allocate(file, path, offset, len)?;
    rewrite_in_place(file, path, offset, len)
}

/// As [`allocate_written`], for a range known to hold nothing yet (a hole in a file this
/// process created and has not written there): writes zeros instead of reading the range
/// and writing it back, which halves the memory traffic and skips the kernel's zeroing of
/// the pages read (reading them back was 22% of a B-tree commit load's time).
///
/// The zeros go in writes of [`ZERO_WRITE_BYTES`]: the page cache sizes the folios it
/// makes by the write, and a later flush writes a dirty folio whole. With 1 MiB writes a
/// durable commit (one msync of its record's page) wrote 378 KiB to the device instead of
/// 6 KiB, and ran at half the rate.
pub(crate) fn allocate_zeroed(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    allocate(file, path, offset, len)?;
    let zeros = [0u8; ZERO_WRITE_BYTES as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(ZERO_WRITE_BYTES) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| Error::io(path, "allocate file space by writing", e))?;
        at += n as u64;
    }
    Ok(())
}

/// Bytes of each write of [`allocate_zeroed`]: small enough that the page cache makes
/// small folios (a durable flush then writes 6 KiB, not hundreds), large enough that a
/// 4 MiB step costs 256 system calls, not 1,024.
const ZERO_WRITE_BYTES: u64 = 16 << 10;

fn rewrite_in_place(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = offset;
    while at < offset + len {
        let n = usize::try_from((offset + len - at).min(CHUNK)).unwrap_or(buf.len());
        let chunk = &mut buf[..n];
        // Past the end of the file a read returns less: the rest stays zero.
        chunk.fill(0);
        let mut read = 0;
        while read < n {
            match file.read_at(&mut chunk[read..], at + read as u64) {
                Ok(0) => break,
                Ok(k) => read += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, "read to allocate file space", e)),
            }
        }
        file.write_all_at(chunk, at)
            .map_err(|e| Error::io(path, "allocate file space by writing", e))?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// A new file in a temporary directory (kept while the first value lives), holding
    /// `head` at offset 0.
    fn scratch_file() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all_at(b"head", 0).unwrap();
        (tmp, path, file)
    }

    /// Allocating a fresh range writes zeros over exactly that range: bytes before and
    /// after it stay, and the file grows to cover it; its blocks are then allocated.
    #[test]
    fn allocating_zeroed_writes_exactly_the_range() {
        use std::os::unix::fs::MetadataExt;
        let (_tmp, path, file) = scratch_file();
        allocate_zeroed(&file, &path, 4096, (3 << 20) + 5).unwrap();
        let end = 4096 + (3 << 20) + 5;
        file.write_all_at(b"tail", end).unwrap();
        file.sync_all().unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, end + 4);
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..end as usize].iter().all(|&b| b == 0));
        assert_eq!(&bytes[end as usize..], b"tail");
        let allocated = file.metadata().unwrap().blocks() * 512;
        assert!(allocated >= 3 << 20, "only {allocated} bytes allocated");
    }

    /// The fallback for file systems without `fallocate` allocates a range by writing
    /// back what it holds: data already there stays, holes and bytes past the end read
    /// as zeros, and the file grows to cover the range.
    #[test]
    fn rewriting_in_place_keeps_what_the_file_holds() {
        let (_tmp, path, file) = scratch_file();
        file.write_all_at(b"tail", (3 << 20) - 4).unwrap();
        rewrite_in_place(&file, &path, 2, (4 << 20) - 2).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4 << 20);
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[(3 << 20) - 4..3 << 20], b"tail");
        assert!(bytes[4..(3 << 20) - 4].iter().all(|&b| b == 0));
        assert!(bytes[3 << 20..].iter().all(|&b| b == 0));
    }
}
