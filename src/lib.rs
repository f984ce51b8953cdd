//! accretion: grow-only, file-backed, memory-mapped storage primitives.
//!
//! Every structure lives in a [`Dir`], a locked store directory, under a hierarchical
//! name. The primitives:
//!
//! - [`Entropy`]: 32 random bytes written once; keyed hashing, nonces, the store's tag.
//! - [`Journal`]: a checksummed multi-slot register of one plain-data value.
//! - [`RandomAccess`]: an unbounded array of plain-data values, lock-striped.
//! - [`AppendOnly`]: a byte buffer that only grows; `&[u8]` it hands out never move.
//! - [`OnceMap`]: byte keys set once to byte values; `get` returns plain references.
//! - [`Content`]: content-addressed, deduplicated, verified blobs.
//!
//! Each type documents what its `sync` promises; ARCHITECTURE.md holds the file formats.
//!
//! ```
//! use accretion::{AppendOnly, Dir};
//!
//! let dir = Dir::temporary()?;
//! let log = AppendOnly::open(&dir, "log")?;
//! let span = log.append(b"hello")?;
//! let bytes: &[u8] = log.get(span)?;
//! log.append(&[0u8; 100_000])?; // growth never moves `bytes`
//! assert_eq!(bytes, b"hello");
//! log.sync()?;
//! # Ok::<(), accretion::Error>(())
//! ```

pub mod catalog;
#[cfg(feature = "compress")]
pub mod compressed;
mod dir;
mod error;
pub mod face;
mod key_range;
pub mod limits;
mod primitives;
mod raw;
mod stores;
#[cfg(feature = "serde")]
pub mod typed;

pub use bytemuck;
pub use dir::Dir;
pub use error::{Error, Result};
pub use key_range::KeyRange;
pub use primitives::append_only::{AppendOnly, Span};
pub use primitives::content::{Content, ContentId};
pub use primitives::entropy::Entropy;
pub use primitives::journal::Journal;
pub use primitives::once_map::{Insert, OnceMap, TypedOnceMap};
pub use primitives::random_access::{RandomAccess, Ref};
pub use stores::btree::{
    BTreeOptions, BTreeStats, BTreeStore, BTreeValue, Range, ReadTxn, Tree, TreeMut, VerifyReport,
    WriteTxn,
};
pub use stores::hash::{
    HashOptions, HashReport, HashStats, HashStore, HashValue, Iter as HashIter, OptimizeMode,
};
pub use stores::log::operators as merge_operators;
pub use stores::log::{Iter, LogOptions, LogStats, LogStore, MergeFn, Value, WriteBatch};
pub use stores::sharded::row as signature_row;
pub use stores::sharded::{
    Entry as ShardedEntry, GetOrCreate, ListItem, ListIter, QueueItem, QueueIter, Replace,
    ShardedIter, ShardedOptions, ShardedStats, ShardedStore, ShardedValue,
};

/// Test hooks on every flush (feature `fault-injection`, off by default): watch which
/// file and range is about to be made durable, and make the call fail as a dying process
/// or a failing disk would. Built for crash tests; not for production use.
#[cfg(feature = "fault-injection")]
pub mod faults {
    pub use crate::raw::sync::{Flush, Hook, HookGuard, install};
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
