//! Adapter for sled 0.34: a lock-free B-tree over a log-structured page store.
//!
//! Durability: writes are not synced per operation (sled's default background flush
//! every 500 ms is left on); `sync` and each durable insert call `flush`, which returns
//! once the log is fsynced. The bulk load is one `Batch`, applied atomically. Reads need
//! no transaction.

use std::path::Path;

use sled::{Batch, Db};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "sled",
    family: Family::Peer,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "sled 0.34.7, default config (1 GiB cache, background flush every 500 ms)",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    db: Db,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let db = sled::Config::new().path(path.join("sled")).open()?;
    Ok(Box::new(Adapter { db }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut batch = Batch::default();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.db.insert(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.db.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.db.iter() {
            let (k, v) = entry?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(self.db.remove(key)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
