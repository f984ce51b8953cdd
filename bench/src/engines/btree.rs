//! Adapter for our [`BTreeStore`]: a copy-on-write B+tree whose pages are written once
//! into an append-only log.
//!
//! Durability: `insert` and `remove` are one transaction each, committed unsynced
//! (visible at once, no fsync; they survive the death of the process); `insert_durable`
//! commits durably (one msync of the log's new bytes); `sync` is the store's `sync`. The
//! bulk load is one write transaction, committed durably. A read session is one snapshot.

use std::path::Path;

use accretion::{BTreeStore, Dir, ReadTxn};

use super::{Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "btree",
    family: Family::Ours,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "accretion BTreeStore (this workspace), default options (4 KiB pages, checkpoint every 32 MiB of log); one transaction per write",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    // Declared before the directory so the store is closed before the lock is released.
    store: BTreeStore,
    _dir: Dir,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let store = BTreeStore::open(&dir, "bench", Default::default())?;
    Ok(Box::new(Adapter { store, _dir: dir }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut txn = self.store.begin_write()?;
        {
            let mut tree = txn.default_tree()?;
            let (mut k, mut v) = (Vec::new(), Vec::new());
            for i in 0..w.n {
                w.key(i, &mut k);
                w.value(i, &mut v);
                tree.insert(&k, &v)?;
            }
        }
        Ok(txn.commit()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        let mut txn = self.store.begin_write()?;
        txn.default_tree()?.insert(key, value)?;
        txn.commit_unsynced()?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.store.begin_write()?;
        txn.default_tree()?.insert(key, value)?;
        Ok(txn.commit()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        let snapshot = self.store.begin_read();
        found(snapshot.default_tree()?.get(key)?);
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Session {
            snapshot: self.store.begin_read(),
        }))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let snapshot = self.store.begin_read();
        for entry in snapshot.default_tree()?.iter()? {
            let (k, v) = entry?;
            visit(k, v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        let mut txn = self.store.begin_write()?;
        let existed = txn.default_tree()?.remove(key)?.is_some();
        txn.commit_unsynced()?;
        Ok(existed)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }
}

struct Session<'s> {
    snapshot: ReadTxn<'s>,
}

impl Reader for Session<'_> {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.snapshot.default_tree()?.get(key)?);
        Ok(())
    }
}
