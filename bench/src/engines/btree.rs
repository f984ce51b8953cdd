//! Adapter for our [`BTreeStore`]: a copy-on-write B+tree whose pages are written once
//! into an append-only log.
//!
//! Durability: `insert` and `remove` are one transaction each, committed unsynced
//! (visible at once, no fsync; they survive the death of the process); `insert_durable`
//! commits durably (one msync of the log's new bytes); `sync` is the store's `sync`. The
//! bulk load is one write transaction, committed durably. A read session is one snapshot,
//! and so is a scan; a lookup outside a session reads the current version.
//!
//! `insert`, `remove`, `get` and `sync` go through the common face ([`Faced`]): its
//! `put` and `delete` are the store's `insert` and `remove`, each one transaction
//! committed unsynced, and its `get` a handle to the value where it lies (no copy). The
//! rest is the B-tree's own: the bulk load and `insert_durable` need a transaction of
//! their own, and a read session and a scan stay on one snapshot each (the face's
//! entries are read in batches, each from a new snapshot, and copied, which would change
//! what is measured).

use std::path::Path;

use accretion::{BTreeStore, ReadTxn};

use super::faced::{Faced, STORE};
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

/// The store through the face, and the B-tree's own paths beside it.
struct Adapter(Faced<BTreeStore>);

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let faced = Faced::open(path, |dir| BTreeStore::open(dir, STORE, Default::default()))?;
    Ok(Box::new(Adapter(faced)))
}

impl Adapter {
    fn store(&self) -> &BTreeStore {
        &self.0.store
    }
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut txn = self.store().begin_write()?;
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
        self.0.insert(key, value)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.store().begin_write()?;
        txn.default_tree()?.insert(key, value)?;
        Ok(txn.commit()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        self.0.get(key, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Session::new(self.store())))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let snapshot = self.store().begin_read();
        for entry in snapshot.default_tree()?.iter()? {
            let (k, v) = entry?;
            visit(k, v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        self.0.remove(key)
    }

    fn sync(&self) -> Result<()> {
        self.0.sync()
    }
}

/// Lookups in one snapshot.
struct Session<'s> {
    snapshot: ReadTxn<'s>,
}

impl<'s> Session<'s> {
    fn new(store: &'s BTreeStore) -> Self {
        Session {
            snapshot: store.begin_read(),
        }
    }
}

impl Reader for Session<'_> {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.snapshot.default_tree()?.get(key)?);
        Ok(())
    }
}
