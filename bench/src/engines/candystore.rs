//! Adapter for CandyStore: a sharded hash index (mmap'ed rows of signatures) over
//! append-only data files.
//!
//! Durability: writes are not synced per operation; CandyStore's default background
//! checkpoint (every 5 s or 128 KiB written) is left on, as shipped. `sync` and each
//! durable insert call `flush` (fsync of index and data files, then the directory). There
//! is no batch API, so the bulk load is plain `set` calls and one `flush`. Reads need no
//! transaction; `get` returns an owned `Vec`.

use std::path::Path;

use candystore::{CandyStore, Config};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "candystore",
    family: Family::Peer,
    traits: Traits {
        ordered: false,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "candystore 1.2, default config (background checkpoints on); sync = flush",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    store: CandyStore,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let store = CandyStore::open(path.join("candy"), Config::default())?;
    Ok(Box::new(Adapter { store }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            self.store.set(&k, &v)?;
        }
        Ok(self.store.flush()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.store.set(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.set(key, value)?;
        Ok(self.store.flush()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.store.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.store.iter_items() {
            let (k, v) = entry?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(self.store.remove(key)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }
}
