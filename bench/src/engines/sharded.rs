//! Adapter for our [`ShardedStore`]: VickyStore's shards of signature rows (CandyStore's
//! design) on the accretion primitives.
//!
//! Durability: `set` and `remove` append a record to the key's shard and change its row
//! (visible at once, surviving the death of the process, no fsync); `sync` is the
//! store's own `sync` (one flush of each shard's log). The durable phases run on the
//! store reopened with `sync_each_write: true`, where each `set` flushes its shard's log
//! before it returns and concurrent writers share flushes (group commit);
//! `insert_durable` is then a plain `set`, and outside that mode `set` then `sync`. The
//! bulk load is plain `set`s and one sync. Reads need no transaction: `get` returns a
//! handle into the shard's log, checked against the record's checksum. `remove` says
//! whether the key was there. Options as shipped (no `expected_keys`: the store splits
//! its way from one shard to the load's size, as CandyStore does). Every operation goes
//! through the common face ([`Faced`]); what is the sharded store's own is opening it
//! (in its durable mode or not).

use std::path::Path;

use accretion::{ShardedOptions, ShardedStore};

use super::faced::{Faced, STORE};
use super::{Engine, EngineInfo, Extras, Family, Result, Traits};

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "shardedstore",
    family: Family::Ours,
    traits: Traits {
        ordered: false,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "accretion ShardedStore (this workspace), default options (64 MiB shards, 64 rows of 512)",
    open: open::<false>,
    extras: Extras {
        open_durable: Some(open::<true>),
        drop_hints: None,
        refuses: None,
    },
};

/// Opens the store, in its durable mode if `DURABLE`.
fn open<const DURABLE: bool>(path: &Path) -> Result<Box<dyn Engine>> {
    let options = ShardedOptions {
        sync_each_write: DURABLE,
        ..ShardedOptions::default()
    };
    let faced = Faced::open(path, |dir| ShardedStore::open(dir, STORE, options))?
        .syncing_each_write(DURABLE);
    Ok(Box::new(faced))
}
