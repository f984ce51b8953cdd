//! The crate's one error type.
//!
//! Every fallible call returns [`Result`]. Each variant is a thing a caller can act on, and
//! each message names the file, offset or limit involved. Normal outcomes (a key that is
//! absent, a key that was already set) are return values, never errors.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The result type of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in accretion.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed on `path`.
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What was being done, for example "fsync" or "allocate lane space".
        op: &'static str,
        /// The underlying error; a full disk shows up here as `StorageFull`.
        source: io::Error,
    },
    /// A file's bytes fail a check: bad magic, bad checksum, impossible length.
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file where the damage was found.
        offset: u64,
        /// What was wrong, in words.
        what: String,
    },
    /// A file was written by a newer (or unknown) format version.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A file is intact but is not what was asked for: another kind of structure, or the
    /// same kind with other parameters (for example another element size).
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What differs, in words.
        what: String,
    },
    /// Another handle, in this process or another, holds the store directory's lock.
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// A structure name is already open in this [`Dir`](crate::Dir).
    NameInUse {
        /// The name.
        name: String,
    },
    /// A structure name breaks the naming rules.
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A size went over one of the crate's named limits.
    LimitExceeded {
        /// The limit's name, as in the crate's `limits` module.
        limit: &'static str,
        /// The size that was asked for.
        requested: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// A position or span does not lie within written data.
    OutOfBounds {
        /// What was asked for, in words.
        what: String,
        /// How far valid data reaches.
        len: u64,
    },
    /// An earlier flush or sync of this handle failed; it refuses writes until reopened.
    Poisoned {
        /// The file or directory whose sync failed.
        path: PathBuf,
    },
    /// A call was made, on the same thread, from inside a callback that a structure runs
    /// while it holds something the call would wait for, so it would wait for itself
    /// forever: an [`AppendOnly::append_with`](crate::AppendOnly::append_with) fill that
    /// appends to its own buffer, a merge operator that writes to its own
    /// [`LogStore`](crate::LogStore). Nothing was done; make the call after the callback
    /// returns.
    Reentrant {
        /// The call that was refused, for example "LogStore::put".
        call: &'static str,
        /// The callback it was made from, for example "a LogStore merge operator".
        inside: &'static str,
    },
    /// A store cannot be opened again yet: handles from an earlier open of it are still
    /// alive and keep some of its files open. For a [`LogStore`](crate::LogStore), each
    /// [`Value`](crate::Value) and unfinished [`Iter`](crate::Iter) holds the segment it
    /// reads from; drop them, then open again.
    HandlesAlive {
        /// The store's name.
        name: String,
        /// The part of it still held open, for example "kv/log-0000000001".
        part: String,
        /// What holds it, for example "a Value or Iter".
        holders: &'static str,
    },
    /// An append to a buffer that was sealed ([`AppendOnly::seal`](crate::AppendOnly::seal)):
    /// nothing may follow its seal.
    Sealed {
        /// The buffer's directory.
        path: PathBuf,
    },
    /// An option passed to an open has a value no store can use.
    InvalidOption {
        /// The option, for example "BTreeOptions::page_size".
        option: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// A tree asked for by name does not exist (in the transaction that asked).
    NoSuchTree {
        /// The store's name.
        store: String,
        /// The tree's name.
        tree: String,
    },
    /// An operation of a write transaction failed part-way (a damaged page, a failed
    /// write), so the transaction can no longer commit: drop it and start again.
    TransactionFailed {
        /// The store's name.
        store: String,
    },
    /// A typed face could not encode a key or value, or decode one read from the store
    /// (bytes written as another type, or by no typed face).
    Encoding {
        /// The store's directory.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupted(path: &Path, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupted {
            path: path.to_path_buf(),
            offset,
            what: what.into(),
        }
    }

    /// What an open of the store `name` reports for an error of its own open: a part
    /// found claimed means the store is open already (its state journal, claimed first
    /// and only while it is open: `NameInUse` naming the store), or, with the state free,
    /// that `holders` (value handles, iterators) outlived the store and hold that part
    /// (`HandlesAlive`). Other errors pass through.
    pub(crate) fn in_open_of(self, name: &str, holders: &'static str) -> Self {
        match self {
            Error::NameInUse { name: part } if part == format!("{name}/state") => {
                Error::NameInUse {
                    name: name.to_owned(),
                }
            }
            Error::NameInUse { name: part } if part.starts_with(&format!("{name}/")) => {
                Error::HandlesAlive {
                    name: name.to_owned(),
                    part,
                    holders,
                }
            }
            e => e,
        }
    }

    pub(crate) fn incompatible(path: &Path, what: impl Into<String>) -> Self {
        Error::Incompatible {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    /// The error of a durable write whose record is applied but whose sync failed: an
    /// I/O error says so in its operation (stores with a write-and-sync mode use it).
    pub(crate) fn applied_but_not_synced(self) -> Self {
        const OP: &str = "sync a durable write (the write is applied and visible in this \
                          process; whether a crash keeps it is unknown; the store refuses \
                          writes until reopened)";
        match self {
            Error::Io { path, source, .. } => Error::Io {
                path,
                op: OP,
                source,
            },
            // Another writer's sync failed first (a group sync this write waited on): the
            // same state, said the same way.
            Error::Poisoned { path } => Error::Io {
                path,
                op: OP,
                source: io::Error::other("an earlier sync of this store failed"),
            },
            other => other,
        }
    }

    pub(crate) fn limit(limit: &'static str, requested: u64, max: u64) -> Self {
        Error::LimitExceeded {
            limit,
            requested,
            max,
        }
    }

    /// True when the error is an I/O error caused by a full disk or quota.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.kind() == io::ErrorKind::QuotaExceeded
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, op, source } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            Error::Corrupted { path, offset, what } => {
                write!(
                    f,
                    "{} is corrupted at byte {offset}: {what}",
                    path.display()
                )
            }
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads versions up to {supported}",
                path.display()
            ),
            Error::Incompatible { path, what } => {
                write!(f, "{} cannot be opened as asked: {what}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "store directory {} is locked by another handle or process",
                path.display()
            ),
            Error::NameInUse { name } => write!(f, "structure {name:?} is already open"),
            Error::InvalidName { name, reason } => {
                write!(f, "invalid structure name {name:?}: {reason}")
            }
            Error::LimitExceeded {
                limit,
                requested,
                max,
            } => write!(
                f,
                "limit {limit} exceeded: {requested} requested, at most {max}"
            ),
            Error::OutOfBounds { what, len } => {
                write!(f, "{what} lies outside the written data (length {len})")
            }
            Error::Poisoned { path } => write!(
                f,
                "an earlier sync of {} failed; reopen it before writing again",
                path.display()
            ),
            Error::Reentrant { call, inside } => write!(
                f,
                "{call} was called from inside {inside} on the same thread, where it would \
                 wait for itself forever; call it after the callback returns"
            ),
            Error::Sealed { path } => write!(
                f,
                "{}: the buffer is sealed; nothing can be appended after its seal",
                path.display()
            ),
            Error::HandlesAlive {
                name,
                part,
                holders,
            } => write!(
                f,
                "store {name:?} cannot be opened yet: {holders} from an earlier open of it \
                 is still alive and holds {part:?} open; drop it first"
            ),
            Error::Encoding { path, what } => {
                write!(f, "{}: {what}", path.display())
            }
            Error::InvalidOption { option, reason } => {
                write!(f, "option {option} is invalid: it must be {reason}")
            }
            Error::NoSuchTree { store, tree } => {
                write!(f, "store {store:?} has no tree named {tree:?}")
            }
            Error::TransactionFailed { store } => write!(
                f,
                "a write transaction of store {store:?} had an operation fail part-way; it \
                 cannot commit: drop it and start again"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
