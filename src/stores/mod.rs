//! Layer 2: key-value stores composed only from the primitives' public API. Each store
//! owns a named sub-tree of a [`Dir`](crate::Dir) and reclaims space by writing live data
//! into a new generation and switching to it through a Journal.

pub(crate) mod btree;
pub(crate) mod hash;
pub(crate) mod log;
pub(crate) mod sharded;
