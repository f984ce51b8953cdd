//! One generation of a B-tree store: the [`AppendOnly`] log `{name}/g{N}` that holds its
//! pages, out-of-line values, commit records and checkpoints, and the reads of them that
//! check what they read. A generation retired by compaction removes its files when the
//! last snapshot that reads it is dropped.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::page::{Damage, Page};
use super::records::{KIND_VALUE, VALUE_HEAD_BYTES, checksum};
use crate::{AppendOnly, Dir, Error, Result, Span};

/// Log bytes that one chunk of the checked-page set covers (64 MiB), and the chunks:
/// pages past 64 GiB of log are checked on every read instead of once.
const CHECKED_CHUNK_BYTES: u64 = 64 << 20;
const CHECKED_CHUNKS: usize = 1024;
/// Pages start at multiples of 16 bytes (the log's frame alignment): one bit each.
const CHECKED_GRAIN: u64 = 16;

/// The pages of a generation whose checksum was found to hold: each page is checked the
/// first time it is read, not on every read. Lock-free, so readers never wait.
struct Checked {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Checked {
    fn new() -> Checked {
        Checked {
            chunks: (0..CHECKED_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn bit(offset: u64) -> Option<(usize, usize, u64)> {
        let chunk = usize::try_from(offset / CHECKED_CHUNK_BYTES).ok()?;
        if chunk >= CHECKED_CHUNKS {
            return None;
        }
        let bit = (offset % CHECKED_CHUNK_BYTES) / CHECKED_GRAIN;
        Some((chunk, usize::try_from(bit / 64).ok()?, 1u64 << (bit % 64)))
    }

    fn contains(&self, offset: u64) -> bool {
        match Self::bit(offset) {
            Some((chunk, word, mask)) => self.chunks[chunk]
                .get()
                .is_some_and(|w| w[word].load(Ordering::Relaxed) & mask != 0),
            None => false,
        }
    }

    fn insert(&self, offset: u64) {
        if let Some((chunk, word, mask)) = Self::bit(offset) {
            let words = (CHECKED_CHUNK_BYTES / CHECKED_GRAIN / 64) as usize;
            self.chunks[chunk].get_or_init(|| (0..words).map(|_| AtomicU64::new(0)).collect())
                [word]
                .fetch_or(mask, Ordering::Relaxed);
        }
    }
}

/// Removes a retired generation's files once dropped. Declared after the log in
/// [`Generation`], so the log (and its claim on the name) is gone first.
struct Remover {
    dir: Dir,
    name: String,
    retired: AtomicBool,
}

impl Drop for Remover {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // A failure leaves the files behind; the next open removes every
            // generation but the current one.
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// A generation's log and its page size.
pub(super) struct Generation {
    pub log: AppendOnly,
    pub number: u64,
    pub page_size: usize,
    checked: Checked,
    remover: Remover,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("name", &self.remover.name)
            .field("len", &self.log.len())
            .finish()
    }
}

/// The name of generation `n` of store `store`.
pub(super) fn generation_name(store: &str, n: u64) -> String {
    format!("{store}/g{n}")
}

impl Generation {
    /// Opens (or creates) generation `number` of store `store`.
    pub fn open(dir: &Dir, store: &str, number: u64, page_size: usize) -> Result<Generation> {
        let name = generation_name(store, number);
        let log = AppendOnly::open(dir, &name)?;
        if log.format() < 2 {
            return Err(Error::incompatible(
                &dir.path().join(&name),
                "a B-tree generation log must be framed (AppendOnly format 2)",
            ));
        }
        Ok(Generation {
            log,
            number,
            page_size,
            checked: Checked::new(),
            remover: Remover {
                dir: dir.clone(),
                name,
                retired: AtomicBool::new(false),
            },
        })
    }

    /// Marks the generation for removal once the last handle to it is dropped.
    pub fn retire(&self) {
        self.remover.retired.store(true, Ordering::Release);
    }

    /// The error for damage found at log offset `offset` (the file and position in it).
    pub fn corrupted(&self, offset: u64, what: impl Into<String>) -> Error {
        let (path, position) = self
            .log
            .file_position(offset)
            .unwrap_or_else(|| (self.remover.dir.path().join(&self.remover.name), offset));
        Error::corrupted(&path, position, what)
    }

    fn damaged(&self, page_at: u64, d: Damage) -> Error {
        self.corrupted(
            page_at + d.at as u64,
            format!("B-tree page at log offset {page_at}: {}", d.what),
        )
    }

    /// The page at log offset `offset`, its checksum checked the first time it is read.
    pub fn page(&self, offset: u64) -> Result<Page<'_>> {
        let bytes = self
            .log
            .get(Span::new(offset, self.page_size as u64))
            .map_err(|_| {
                self.corrupted(
                    offset,
                    format!("a B-tree page at log offset {offset} lies outside the log"),
                )
            })?;
        let page = Page::new(bytes).map_err(|d| self.damaged(offset, d))?;
        if !self.checked.contains(offset) {
            if !page.checksum_holds() {
                return Err(self.corrupted(
                    offset,
                    format!("B-tree page at log offset {offset}: checksum does not hold"),
                ));
            }
            self.checked.insert(offset);
        }
        Ok(page)
    }

    /// Converts a damage found in the page at `page_at` into an error.
    pub fn page_damage(&self, page_at: u64, d: Damage) -> Error {
        self.damaged(page_at, d)
    }

    /// The bytes of an out-of-line value at `(offset, len)`, checked against the
    /// checksum of its value record.
    pub fn value(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let bad = |what: &str| {
            self.corrupted(
                offset,
                format!("out-of-line value at log offset {offset} ({len} bytes): {what}"),
            )
        };
        let head_at = offset
            .checked_sub(VALUE_HEAD_BYTES as u64)
            .ok_or_else(|| bad("no room for its header"))?;
        let head = self
            .log
            .get(Span::new(head_at, VALUE_HEAD_BYTES as u64))
            .map_err(|_| bad("header outside the log"))?;
        let bytes = self
            .log
            .get(Span::new(offset, len))
            .map_err(|_| bad("outside the log"))?;
        let sum = u64::from_le_bytes(head[8..16].try_into().unwrap_or([0; 8]));
        if head[0] != KIND_VALUE || head[1..8] != [0; 7] || sum != checksum(KIND_VALUE, bytes) {
            return Err(bad("checksum does not hold"));
        }
        Ok(bytes)
    }
}
