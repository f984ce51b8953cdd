//! The store directory: one directory holding every file of one store, under an exclusive
//! OS lock, with a header naming the format version, and a register of the structure names
//! open in it.
//!
//! `Dir` only hands out names and sub-directories; it does not know what lives in them.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::limits;
use crate::raw::files;
use crate::raw::header::{Header, Kind, PARAMS};
use crate::raw::sync;

/// Name of the lock file at the root of a store directory.
const LOCK_FILE: &str = "accretion.lock";
/// Name of the header file at the root of a store directory.
const HEADER_FILE: &str = "accretion.acc";

/// A store directory, opened and locked.
///
/// Every primitive is opened inside a `Dir` under a hierarchical name such as
/// `"users/index"`; the name becomes a sub-directory that holds that structure's files.
/// A name may be open only once at a time. Cloning a `Dir` is cheap and shares the lock;
/// the lock is released when the last clone, and every structure opened in it, is dropped.
///
/// The lock is an advisory OS lock (`flock`), so a process killed with SIGKILL leaves
/// nothing behind that blocks the next open.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let other = accretion::Dir::open(dir.path());
/// assert!(matches!(other, Err(accretion::Error::Locked { .. })));
/// # Ok::<(), accretion::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dir {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    lock_path: PathBuf,
    // Names claimed now; `Dir::remove` holds this lock from its check to its rename.
    open_names: Mutex<HashSet<String>>,
    // Composite structures this handle has admitted an open of (`catalog::admit`): only
    // their opens make parts that do not exist yet (`catalog::admit_primitive`).
    composites: Mutex<HashSet<String>>,
    // Set when a claim is released: a structure that was open may have left writes in
    // the page cache that no flush covered, and the next open of an existing structure
    // must not act on them before they are on the device (see `claim`).
    resync: Mutex<bool>,
    // Held for its lock (released when dropped), and the descriptor syncfs goes through.
    lock: File,
    // Declared last so that it is dropped (and the directory removed) after the lock file
    // handle is closed.
    _temp: Option<tempfile::TempDir>,
}

impl Dir {
    /// Opens the store directory at `path`, creating it if needed, and locks it.
    ///
    /// Opening an existing store first flushes its file system (`syncfs`): a process that
    /// died while writing leaves its writes in the page cache, where this process reads
    /// them, and nothing read may be acted upon durably before it is on the device. The
    /// flush covers the whole file system, so it waits for other programs' dirty data too.
    ///
    /// # The mapped-file contract
    /// Structures hand out `&[u8]` that point straight into memory-mapped files. That is
    /// sound only while nothing outside this handle changes those files: a write from
    /// another file handle changes bytes under a borrowed slice, and truncating a file
    /// turns reads of it into `SIGBUS`. accretion keeps `open` safe (heed leaves this to
    /// its caller, whose promise its open asks for; redb stopped mapping) and enforces
    /// what it can:
    /// - the directory is locked (`flock`), so no other accretion handle, in this process
    ///   or another, writes it while this one lives;
    /// - every file and directory it creates is readable and writable by its owner only
    ///   (0600, 0700), so no other user can change them;
    /// - structures are opened without following symbolic links, so a file of the store
    ///   cannot be an alias of some other file.
    ///
    /// What remains is the caller's part, as with any process's memory: the same user (or
    /// root) must not write, truncate or replace files of an open store by other means
    /// (an editor, `dd`, another library). Damage found in files of a store that is *not*
    /// open is an error, never undefined behaviour: checksums and lengths are checked on
    /// open and on read.
    ///
    /// # Errors
    /// `Locked` if another handle holds it; `Incompatible` if the directory holds files
    /// but is not a store; `UnsupportedVersion` or `Corrupted` for a bad header; `Io`.
    pub fn open(path: impl AsRef<Path>) -> Result<Dir> {
        Self::open_inner(path.as_ref().to_path_buf(), None)
    }

    /// A store in a new temporary directory, removed when the last handle is dropped.
    ///
    /// # Errors
    /// `Io` if the temporary directory cannot be made.
    pub fn temporary() -> Result<Dir> {
        let temp = tempfile::Builder::new()
            .prefix("accretion-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), "create temporary directory", e))?;
        Self::open_inner(temp.path().to_path_buf(), Some(temp))
    }

    fn open_inner(path: PathBuf, temp: Option<tempfile::TempDir>) -> Result<Dir> {
        files::create_dirs(&path)?;
        // Refuse a foreign directory before leaving anything (even a lock file) in it.
        let existed = path.join(HEADER_FILE).exists();
        if !existed {
            Self::refuse_foreign(&path)?;
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = files::private(OpenOptions::new().read(true).write(true).create(true))
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, "open lock file", e))?;
        Self::lock(&lock, &lock_path, &path)?;
        // A process killed while writing (even inside an fsync) leaves its writes in the
        // page cache, where every read sees them, but not necessarily on the device. No
        // structure may act durably on what it reads (delete files, write a state that
        // depends on it) before that is on the device, so everything on this file system
        // is flushed once, now that no one else can write here (PostgreSQL's recovery
        // does the same with syncfs). A new store has nothing to flush.
        if existed {
            sync::file_system(&lock, &lock_path)?;
        }
        Self::check_or_write_header(&path)?;
        Ok(Dir {
            shared: Arc::new(Shared {
                path,
                lock_path,
                open_names: Mutex::new(HashSet::new()),
                composites: Mutex::new(HashSet::new()),
                resync: Mutex::new(false),
                lock,
                _temp: temp,
            }),
        })
    }

    /// Takes the exclusive lock, or fails with `Locked`.
    ///
    /// A lock is held by an open file description, and a process that forks to spawn a
    /// child shares its descriptions with the child until the child's `exec` closes them.
    /// So a handle closed in one thread while another thread spawns a process can leave
    /// the lock held for that brief window: a few retries over about 130 ms ride it out,
    /// while a lock that is really held still fails.
    fn lock(lock: &File, lock_path: &Path, path: &Path) -> Result<()> {
        let mut wait_ms = 1;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) if wait_ms <= 64 => {
                    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
                    wait_ms *= 2;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(lock_path, "lock", e));
                }
            }
        }
    }

    fn check_or_write_header(path: &Path) -> Result<()> {
        let header_path = path.join(HEADER_FILE);
        if let Some(bytes) = files::read_if_exists(&header_path)? {
            Header::decode(&bytes, &header_path, Kind::Dir)?;
            return Ok(());
        }
        Self::refuse_foreign(path)?;
        let header = Header::new(Kind::Dir, [0; PARAMS]).encode();
        files::write_atomically(path, HEADER_FILE, &header)
    }

    /// Without a header, only a brand-new directory (or one whose creation was interrupted
    /// before the header landed) may become a store.
    fn refuse_foreign(path: &Path) -> Result<()> {
        let entries = fs::read_dir(path).map_err(|e| Error::io(path, "list directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, "list directory", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name != LOCK_FILE && !name.ends_with(".tmp") {
                return Err(Error::incompatible(
                    path,
                    format!("directory holds {name:?} but no {HEADER_FILE}: not a store"),
                ));
            }
        }
        Ok(())
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Removes the files of structure `name` and everything below it.
    ///
    /// Used by stores to delete a retired generation. Removing a name that does not exist
    /// is not an error. All or nothing across a crash: the structure's directory is
    /// renamed aside (`<name>.removing`, durably) before it is deleted; anything such a
    /// crash left aside is deleted by the next removal in the same parent directory.
    ///
    /// # Errors
    /// `NameInUse` if `name` or a name below it is open; `InvalidName`; `Io`.
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let target = self.shared.path.join(name);
        let parent = target.parent().unwrap_or(&self.shared.path);
        let leaf = name.rsplit('/').next().unwrap_or(name);
        // Renamed aside first, so a crash leaves the structure whole or gone, never a
        // part of it (which its next open would refuse as damaged); then deleted.
        // Named for this process and this removal, so concurrent removals in one
        // parent never take each other's.
        static REMOVALS: AtomicU64 = AtomicU64::new(0);
        let n = REMOVALS.fetch_add(1, Ordering::Relaxed);
        let doomed = parent.join(format!("{leaf}.{}-{n}{REMOVING}", std::process::id()));
        sweep_removed(parent)?;
        {
            // Held from the check to the rename: a claim below `name` either came first
            // (and the removal is refused) or comes after the rename (and finds no
            // structure there), never in between.
            let open = self.shared.open_names.lock();
            let prefix = format!("{name}/");
            if let Some(busy) = open
                .iter()
                .find(|n| n.as_str() == name || n.starts_with(&prefix))
            {
                return Err(Error::NameInUse { name: busy.clone() });
            }
            match fs::rename(&target, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(&target, "rename aside for removal", e)),
            }
        }
        files::sync_dir(parent)?;
        fs::remove_dir_all(&doomed).map_err(|e| Error::io(&doomed, "remove directory", e))?;
        files::sync_dir(parent)
    }

    /// Where structure `name`'s files are (or would be), without claiming it.
    ///
    /// # Errors
    /// `InvalidName`.
    pub(crate) fn structure_path(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.shared.path.join(name))
    }

    /// Claims `name` for one structure, creating its sub-directory.
    /// Notes that an open of the composite structure `name` was admitted.
    pub(crate) fn note_composite(&self, name: &str) {
        self.shared.composites.lock().insert(name.to_owned());
    }

    /// Whether an open of the composite structure `name` was admitted through this
    /// handle (or a clone of it).
    pub(crate) fn composite_admitted(&self, name: &str) -> bool {
        self.shared.composites.lock().contains(name)
    }

    pub(crate) fn claim(&self, name: &str) -> Result<Claim> {
        validate_name(name)?;
        if !self.shared.open_names.lock().insert(name.to_string()) {
            return Err(Error::NameInUse {
                name: name.to_string(),
            });
        }
        // From here on the claim releases the name if creation fails.
        let claim = Claim {
            dir: self.clone(),
            name: name.to_string(),
            path: self.shared.path.join(name),
        };
        files::refuse_links(&self.shared.path, name)?;
        if claim.path.is_dir() {
            // A structure opened before in this process may have left writes that no
            // flush covered (dropped without sync, or after a failed sync): make them
            // durable before the new handle acts on them, as `open` does for a crashed
            // process's.
            let mut resync = self.shared.resync.lock();
            if *resync {
                // Through the descriptor open used: a write-back error since then is
                // reported to it even if another caller's syncfs saw it first.
                sync::file_system(&self.shared.lock, &self.shared.lock_path)?;
                *resync = false;
            }
        } else {
            files::create_dirs(&claim.path)?;
            // Make the new entries durable all the way up to the store root.
            let mut at = claim.path.parent();
            while let Some(parent) = at {
                files::sync_dir(parent)?;
                if parent == self.shared.path {
                    break;
                }
                at = parent.parent();
            }
        }
        Ok(claim)
    }
}

/// Exclusive use of one structure name in a [`Dir`], released on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    dir: Dir,
    name: String,
    path: PathBuf,
}

impl Claim {
    /// The sub-directory that holds this structure's files.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        *self.dir.shared.resync.lock() = true;
        self.dir.shared.open_names.lock().remove(&self.name);
    }
}

/// Suffix of a structure's directory renamed aside by `Dir::remove`, to be deleted. A
/// name with a dot is no structure's (names have none).
const REMOVING: &str = ".removing";

/// Deletes what an interrupted `Dir::remove` of an earlier process left in `parent`:
/// directories renamed aside but not yet deleted. Those of this process are removals
/// going on now (only one process holds the directory), left alone.
fn sweep_removed(parent: &Path) -> Result<()> {
    let ours = format!(".{}-", std::process::id());
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(parent, "list directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(parent, "list directory", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(REMOVING) && !name.contains(&ours) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| Error::io(&path, "remove directory", e))?;
        }
    }
    Ok(())
}

/// Checks a structure name: one to [`limits::NAME_DEPTH_MAX`] components separated by `/`,
/// each of ASCII letters, digits, `_` and `-`. Dots are not allowed, which keeps names
/// apart from the files primitives create (those always contain a dot).
fn validate_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > limits::NAME_LEN_BYTES_MAX {
        return fail("longer than limits::NAME_LEN_BYTES_MAX");
    }
    let mut depth = 0;
    for part in name.split('/') {
        depth += 1;
        if part.is_empty() {
            return fail("empty component (leading, trailing or double '/')");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return fail("components may hold only ASCII letters, digits, '_' and '-'");
        }
    }
    if depth > limits::NAME_DEPTH_MAX {
        return fail("more components than limits::NAME_DEPTH_MAX");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "users/index", "a-b_c/D9"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a.b", "..", "a b", "é"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    /// A removal renames the structure aside before deleting it, so a crash in the middle
    /// leaves it whole or gone; what a crash left aside goes with the next removal there.
    #[test]
    fn removal_is_all_or_nothing_and_sweeps_leftovers() {
        use crate::AppendOnly;
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "s/b").unwrap();
        buf.append(b"data").unwrap();
        buf.sync().unwrap();
        drop(buf);
        // What a crash between the rename and the deletion leaves: the name opens new.
        let root = dir.path().join("s");
        // (An earlier process's: this one's are removals in progress.)
        fs::rename(root.join("b"), root.join("b.1-0.removing")).unwrap();
        assert!(AppendOnly::open(&dir, "s/b").unwrap().is_empty());
        let buf = AppendOnly::open(&dir, "s/c").unwrap();
        buf.append(b"more").unwrap();
        drop(buf);
        dir.remove("s/c").unwrap();
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b"], "c and the leftover b.removing are gone");
        dir.remove("s/never-there").unwrap();
    }

    /// Removals in one parent at once do not take each other's renamed directories.
    /// Found by review: each swept every `.removing` in the parent, and one failed.
    #[test]
    fn concurrent_removals_in_one_parent_succeed() {
        use crate::AppendOnly;
        let dir = Dir::temporary().unwrap();
        for round in 0..100 {
            for t in 0..2 {
                let buf = AppendOnly::open(&dir, &format!("p/s{t}")).unwrap();
                buf.append(&[1u8; 100]).unwrap();
            }
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let removals: Vec<_> = (0..2)
                    .map(|t| {
                        let (dir, barrier) = (&dir, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            dir.remove(&format!("p/s{t}"))
                        })
                    })
                    .collect();
                for removal in removals {
                    if let Err(e) = removal.join().unwrap() {
                        panic!("round {round}: {e}");
                    }
                }
            });
        }
        assert_eq!(fs::read_dir(dir.path().join("p")).unwrap().count(), 0);
    }

    #[test]
    fn claims_are_exclusive_and_released() {
        let dir = Dir::temporary().unwrap();
        let a = dir.claim("a/b").unwrap();
        assert!(matches!(dir.claim("a/b"), Err(Error::NameInUse { .. })));
        assert!(matches!(dir.remove("a"), Err(Error::NameInUse { .. })));
        drop(a);
        dir.claim("a/b").unwrap();
    }

    #[test]
    fn second_open_is_locked_and_foreign_dirs_refused() {
        let dir = Dir::temporary().unwrap();
        assert!(matches!(Dir::open(dir.path()), Err(Error::Locked { .. })));
        let path = dir.path().to_path_buf();
        let foreign = tempfile::tempdir().unwrap();
        fs::write(foreign.path().join("notes.txt"), b"hi").unwrap();
        assert!(matches!(
            Dir::open(foreign.path()),
            Err(Error::Incompatible { .. })
        ));
        drop(dir);
        assert!(!path.exists(), "temporary store removed on drop");
    }

    #[test]
    fn reopen_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Dir::open(tmp.path()).unwrap();
        drop(d);
        Dir::open(tmp.path()).unwrap();
    }
}
