//! Adapter for our [`OnceMap`]: byte keys set once, values read in place from the mapping.
//!
//! Durability: `insert` writes to the mapping only (visible at once, no fsync; it survives
//! the death of the process), `sync` is the map's own `sync`: one msync of the log's new
//! entries, plus, every 4 MiB of log, a sync of the index, its filter and the count. A key is
//! set once, so the map has no remove and an insert of an existing key is a no-op: the
//! write phases always use fresh keys. There are no transactions, so a read session is
//! plain `get` calls.

use std::path::Path;

use accretion::{Dir, OnceMap};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits, unsupported};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "oncemap",
    family: Family::Ours,
    traits: Traits {
        ordered: false,
        remove: false,
        durable: true,
        content_addressed: false,
    },
    note: "accretion OnceMap (this workspace), default settings; `get` checks each entry's header checksum and key (the value's own checksum is `get_verified`'s)",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    // Declared before the directory so the map is closed before the lock is released.
    map: OnceMap,
    _dir: Dir,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let map = OnceMap::open(&dir, "bench")?;
    Ok(Box::new(Adapter { map, _dir: dir }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        // No batch API: inserts are already unsynced, so a bulk load is plain inserts and
        // one sync.
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            self.map.insert(&k, &v)?;
        }
        Ok(self.map.sync()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.map.insert(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.map.insert(key, value)?;
        Ok(self.map.sync()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.map.get(key)?);
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.map.iter() {
            let (k, v) = entry?;
            visit(k, v);
        }
        Ok(())
    }

    fn remove(&self, _key: &[u8]) -> Result<bool> {
        Err(unsupported(INFO.name, "remove"))
    }

    fn sync(&self) -> Result<()> {
        Ok(self.map.sync()?)
    }
}
