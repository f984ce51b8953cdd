//! Every size limit in the crate, by name. Exceeding one returns
//! [`Error::LimitExceeded`](crate::Error::LimitExceeded) naming it.

/// Longest structure name, in bytes.
pub const NAME_LEN_BYTES_MAX: usize = 255;
/// Most `/`-separated components in a structure name.
pub const NAME_DEPTH_MAX: usize = 16;
/// Most lanes (files of doubling size) behind one byte space.
pub const LANES_MAX: usize = 32;
/// Size of the first lane of an [`AppendOnly`](crate::AppendOnly); lane `i` holds
/// this many bytes times `2^i`.
pub const APPEND_LANE_BASE_BYTES: u64 = 64 * 1024;
/// Largest single [`AppendOnly`](crate::AppendOnly) record.
pub const RECORD_LEN_BYTES_MAX: u64 = 1 << 30;
/// Largest alignment an [`AppendOnly::append_aligned`](crate::AppendOnly::append_aligned)
/// call may ask for.
pub const RECORD_ALIGN_BYTES_MAX: u64 = 4096;
/// Number of elements in the first lane of a [`RandomAccess`](crate::RandomAccess).
pub const RANDOM_ACCESS_LANE_BASE_ELEMENTS: u64 = 4096;
/// Largest element a [`RandomAccess`](crate::RandomAccess) holds.
pub const ELEMENT_SIZE_BYTES_MAX: usize = 64 * 1024;
/// Largest value a [`Journal`](crate::Journal) holds.
pub const JOURNAL_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Longest [`OnceMap`](crate::OnceMap) key.
pub const KEY_LEN_BYTES_MAX: usize = 64 * 1024;
/// Longest [`OnceMap`](crate::OnceMap) value (and [`Content`](crate::Content) blob).
pub const VALUE_LEN_BYTES_MAX: usize = (1 << 30) - 2 * 64 * 1024;
/// Byte offsets into a [`OnceMap`](crate::OnceMap)'s log must fit in 40 bits (1 TiB).
pub const ONCE_MAP_LOG_BYTES_MAX: u64 = (1 << 40) - 1;

/// Longest key of a [`LogStore`](crate::LogStore) (its length is a 16-bit field).
pub const LOG_KEY_LEN_BYTES_MAX: usize = u16::MAX as usize;
/// Largest value of a [`LogStore`](crate::LogStore).
pub const LOG_VALUE_LEN_BYTES_MAX: usize = 256 << 20;
/// Default size at which a [`LogStore`](crate::LogStore) segment is finished and a new
/// one started.
pub const LOG_SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Smallest page of a [`BTreeStore`](crate::BTreeStore).
pub const BTREE_PAGE_BYTES_MIN: usize = 4096;
/// Largest page of a [`BTreeStore`](crate::BTreeStore) (cell offsets are 16-bit).
pub const BTREE_PAGE_BYTES_MAX: usize = 64 * 1024;
/// Longest key of a [`BTreeStore`](crate::BTreeStore): LMDB's 511, rounded up. Any key
/// fits a quarter of the smallest page with room to spare, so every node splits.
pub const BTREE_KEY_LEN_BYTES_MAX: usize = 512;
/// Largest value of a [`BTreeStore`](crate::BTreeStore): one out-of-line value record,
/// its 16-byte head included, is at most one AppendOnly record.
pub const BTREE_VALUE_LEN_BYTES_MAX: usize = (RECORD_LEN_BYTES_MAX as usize) - 16;
/// Longest tree name of a [`BTreeStore`](crate::BTreeStore).
pub const BTREE_TREE_NAME_BYTES_MAX: usize = 255;
/// Most trees of a [`BTreeStore`](crate::BTreeStore), the default one included (their
/// roots are listed in every checkpoint record).
pub const BTREE_TREES_MAX: usize = 4096;

/// Longest key of a [`HashStore`](crate::HashStore): its length is a 16-bit field, and a
/// key of exactly this length is stored and read back (rust-persist accepted 65,536-byte
/// keys that it could never read again).
pub const HASH_KEY_LEN_BYTES_MAX: usize = u16::MAX as usize;
/// Largest value of a [`HashStore`](crate::HashStore).
pub const HASH_VALUE_LEN_BYTES_MAX: usize = 256 << 20;
/// Most slots of a [`HashStore`](crate::HashStore)'s index (2^40): an index never grows
/// past it, so a store holds at most 90% of it in entries.
pub const HASH_INDEX_SLOTS_MAX: u64 = 1 << 40;

/// Longest key of a [`ShardedStore`](crate::ShardedStore) (a 16-bit field).
pub const SHARDED_KEY_LEN_BYTES_MAX: usize = u16::MAX as usize;
/// Largest value of a [`ShardedStore`](crate::ShardedStore).
pub const SHARDED_VALUE_LEN_BYTES_MAX: usize = 256 << 20;
/// Most shards of a [`ShardedStore`](crate::ShardedStore): its shard map is one Journal
/// value of 8 bytes a shard. With 64 rows of 512 entries a shard, that is at most 2^27
/// entries (about 70M at the half fill splits leave).
pub const SHARDED_SHARDS_MAX: usize = 4096;
