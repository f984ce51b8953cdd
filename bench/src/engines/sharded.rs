//! Adapter for our [`ShardedStore`]: VickyStore's shards of signature rows (CandyStore's
//! design) on the accretion primitives.
//!
//! Durability: `set` and `remove` append a record to the key's shard and change its row
//! (visible at once, surviving the death of the process, no fsync); `sync` is the
//! store's own `sync` (one flush of each shard's log). The durable phases run on the
//! store reopened with `sync_each_write: true`, where each `set` flushes its shard's log
//! before it returns and concurrent writers share flushes (group commit). The bulk load is plain `set`s and one sync. Reads need
//! no transaction: `get` returns a handle into the shard's log, checked against the
//! record's checksum. Options as shipped (no `expected_keys`: the store splits its way
//! from one shard to the load's size, as CandyStore does).

use std::path::Path;

use accretion::{Dir, ShardedOptions, ShardedStore};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

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
    open,
    extras: Extras {
        open_durable: Some(open_durable),
        drop_hints: None,
        refuses: None,
    },
};

struct Adapter {
    // Declared before the directory so the store is closed before the lock is released.
    store: ShardedStore,
    _dir: Dir,
    durable: bool,
}

fn open_with(path: &Path, durable: bool) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let options = ShardedOptions {
        sync_each_write: durable,
        ..ShardedOptions::default()
    };
    let store = ShardedStore::open(&dir, "bench", options)?;
    Ok(Box::new(Adapter {
        store,
        _dir: dir,
        durable,
    }))
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    open_with(path, false)
}

fn open_durable(path: &Path) -> Result<Box<dyn Engine>> {
    open_with(path, true)
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            self.store.set(&k, &v)?;
        }
        Ok(self.store.sync()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.store.set(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.set(key, value)?;
        if !self.durable {
            self.store.sync()?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.store.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.store.iter() {
            let e = entry?;
            visit(&e.key, &e.value);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(self.store.remove(key)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }
}
