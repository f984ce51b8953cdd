//! The data generations of a hash store (`{store}/d{N}`, each an [`AppendOnly`] of
//! records) and the value handles that keep one alive. A generation retired by an
//! optimisation removes its files when the last handle into it is dropped; the same
//! remover serves retired index generations.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::record::{self, Header, Kind};
use crate::{AppendOnly, Dir, Error, Result, Span};

/// Removes a retired generation's files when dropped. Declared after the structure it
/// removes, so that the structure (and its claim on the name) is gone first.
pub(super) struct Remover {
    pub dir: Dir,
    pub name: String,
    retired: AtomicBool,
}

impl Remover {
    pub fn new(dir: &Dir, name: String) -> Remover {
        Remover {
            dir: dir.clone(),
            name,
            retired: AtomicBool::new(false),
        }
    }

    /// Marks the files for removal once the owner is dropped.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // A failure leaves the files behind; the next open removes every
            // generation the state does not name.
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// Whether the structure `name` is a data log of the store whose id is `id` (its first
/// record names the store): only such a directory is removed as a stale generation.
pub(super) fn is_ours(dir: &Dir, name: &str, id: u64) -> bool {
    let Ok(log) = AppendOnly::open(dir, name) else {
        return false;
    };
    let Some(Ok(span)) = log.records(0).next() else {
        return false;
    };
    let Ok(bytes) = log.get(span) else {
        return false;
    };
    Header::parse(bytes).is_ok_and(|h| {
        h.kind == Kind::Generation
            && h.holds(bytes)
            && h.key(bytes).get(..8) == Some(&id.to_le_bytes()[..])
    })
}

/// The name of data generation `n` of store `store`.
pub(super) fn data_name(store: &str, n: u64) -> String {
    format!("{store}/d{n}")
}

/// Where a data log's first record (its identity) ends: a log this long holds nothing
/// else.
pub(super) const IDENTITY_END: u64 = AppendOnly::FRAME_BYTES + record::HEADER_BYTES as u64 + 16;

/// One data generation: a log of records.
pub(super) struct DataGen {
    pub log: AppendOnly,
    pub number: u64,
    remover: Remover,
}

/// A record read and checked: its header and its bytes.
pub(super) struct Read<'a> {
    pub header: Header,
    pub bytes: &'a [u8],
}

impl DataGen {
    /// Opens (or creates) data generation `number` of the store `store` whose id is
    /// `id`. A new log gets its first record, naming the store and the generation; an
    /// existing one must start with that record.
    ///
    /// A log the store made and made durable always holds its first record, so an
    /// empty one is lost files, `Corrupted`, unless `may_be_empty` (a new generation, or
    /// the first of a store none of whose writes was ever recorded durably).
    ///
    /// # Errors
    /// `Incompatible` for a log of another store or generation, or not framed;
    /// `Corrupted` for an empty one (above); as opening an [`AppendOnly`] and reading a
    /// record.
    pub fn open(
        dir: &Dir,
        store: &str,
        number: u64,
        id: u64,
        may_be_empty: bool,
    ) -> Result<DataGen> {
        let name = data_name(store, number);
        let log = AppendOnly::open(dir, &name)?;
        if log.format() < 2 {
            return Err(Error::incompatible(
                &dir.path().join(&name),
                "a hash store's data log must be framed (AppendOnly format 2)",
            ));
        }
        let dg = DataGen {
            log,
            number,
            remover: Remover::new(dir, name),
        };
        let mut identity = [0u8; 16];
        identity[..8].copy_from_slice(&id.to_le_bytes());
        identity[8..].copy_from_slice(&number.to_le_bytes());
        match dg.log.records(0).next() {
            None if may_be_empty => {
                dg.append(Kind::Generation, &identity, &[])?;
            }
            None => {
                return Err(Error::corrupted(
                    &dir.path().join(&dg.remover.name),
                    0,
                    format!(
                        "data generation {number} of the hash store {store:?} is empty: \
                         its files were lost"
                    ),
                ));
            }
            Some(span) => {
                let offset = span?.offset();
                let rec = dg.read(offset)?;
                if rec.header.kind != Kind::Generation || rec.header.key(rec.bytes) != identity {
                    return Err(Error::incompatible(
                        &dir.path().join(&dg.remover.name),
                        format!(
                            "this data log is not generation {number} of the hash store \
                             {store:?} (its first record names another store or generation)"
                        ),
                    ));
                }
            }
        }
        Ok(dg)
    }

    /// Marks the generation for removal once the last handle to it is dropped.
    pub fn retire(&self) {
        self.remover.retire();
    }

    /// The error for damage at log offset `offset` (naming the file and position in it).
    pub fn corrupted(&self, offset: u64, what: impl Into<String>) -> Error {
        let (path, position) = self
            .log
            .file_position(offset)
            .unwrap_or_else(|| (self.remover.dir.path().join(&self.remover.name), offset));
        Error::corrupted(&path, position, what)
    }

    /// Appends a record; returns its offset and its bytes on disk (frame included).
    pub fn append(&self, kind: Kind, key: &[u8], value: &[u8]) -> Result<(u64, u64)> {
        let span = self
            .log
            .append_with(record::len(key, value), 1, |_, dest| {
                record::encode(dest, kind, key, value)
            })?;
        Ok((span.offset(), footprint(span.len())))
    }

    /// Appends a copy of a record read from another generation.
    pub fn append_copy(&self, bytes: &[u8]) -> Result<(u64, u64)> {
        let span = self.log.append(bytes)?;
        Ok((span.offset(), footprint(span.len())))
    }

    /// The record at `offset`, its checksum checked.
    ///
    /// # Errors
    /// `Corrupted` (naming the data file and position) if it is not there, or damaged.
    pub fn read(&self, offset: u64) -> Result<Read<'_>> {
        let head = self
            .log
            .get(Span::new(offset, record::HEADER_BYTES as u64))
            .map_err(|_| self.corrupted(offset, "a record's header lies outside the log"))?;
        let header = Header::parse(head).map_err(|what| {
            self.corrupted(offset, format!("the record at log offset {offset}: {what}"))
        })?;
        let bytes = self
            .log
            .get(Span::new(offset, header.record_len() as u64))
            .map_err(|_| self.corrupted(offset, "a record runs past the log's end"))?;
        if !header.holds(bytes) {
            return Err(self.corrupted(
                offset,
                format!("the record at log offset {offset}: checksum does not hold"),
            ));
        }
        Ok(Read { header, bytes })
    }
}

/// Log bytes a record of `len` bytes takes: its frame, and padding to the frame grain.
pub(super) fn footprint(len: u64) -> u64 {
    let grain = AppendOnly::FRAME_BYTES;
    AppendOnly::FRAME_BYTES + len.div_ceil(grain) * grain
}

/// A value (or key) of a [`HashStore`](crate::HashStore), read in place from its data
/// file: it derefs to `&[u8]` without a copy and stays valid however the store changes
/// after it was read (overwrites, deletes, index resizes, optimisation). It keeps the
/// data generation it points into alive: a generation retired by an optimisation is
/// removed only when its last handle is dropped.
///
/// Its record's checksum was checked when the handle was made.
#[derive(Clone)]
pub struct HashValue {
    dg: Arc<DataGen>,
    span: Span,
}

impl HashValue {
    /// The handle of `len` bytes at record offset `at` of a record read from `dg`.
    pub(super) fn new(dg: &Arc<DataGen>, record_offset: u64, at: usize, len: usize) -> Self {
        HashValue {
            dg: Arc::clone(dg),
            span: Span::new(record_offset + at as u64, len as u64),
        }
    }

    /// The bytes (the same as `&*value`).
    pub fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl Deref for HashValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.dg
            .log
            .get(self.span)
            .expect("a value's span was checked when its handle was made")
    }
}

impl AsRef<[u8]> for HashValue {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq<[u8]> for HashValue {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for HashValue {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for HashValue {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for HashValue {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashValue")
            .field("generation", &self.dg.number)
            .field("span", &self.span)
            .finish()
    }
}
