//! Adapter for redb: a copy-on-write B-tree in one file, with ACID transactions.
//!
//! Durability: every write transaction of the non-durable phases is committed with
//! `Durability::None` (no fsync); `sync` commits an empty transaction with
//! `Durability::Immediate`, which makes every earlier commit durable. The bulk load is one
//! write transaction committed with `Immediate`. A read session is one read transaction;
//! a single `get` opens its own.

use std::path::Path;

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "redb",
    family: Family::Peer,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "redb 4.5, default cache (1 GiB); per-op commits with Durability::None",
    open,
    extras: Extras::NONE,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

struct Adapter {
    db: Database,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let db = Database::create(path.join("bench.redb"))?;
    // Create the table, so that reads before the first write find it.
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(Box::new(Adapter { db }))
}

impl Adapter {
    fn write(&self, durability: Durability, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        txn.open_table(TABLE)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            let (mut k, mut v) = (Vec::new(), Vec::new());
            for i in 0..w.n {
                w.key(i, &mut k);
                w.value(i, &mut v);
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.write(Durability::None, key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(Durability::Immediate, key, value)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        let table = self.db.begin_read()?.open_table(TABLE)?;
        found(table.get(key)?.as_ref().map(|g| g.value()));
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Session(self.db.begin_read()?.open_table(TABLE)?)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let table = self.db.begin_read()?.open_table(TABLE)?;
        for entry in table.iter()? {
            let (k, v) = entry?;
            visit(k.value(), v.value());
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let existed = txn.open_table(TABLE)?.remove(key)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    fn sync(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        // Immediate is the default; a commit with it persists every earlier None commit.
        txn.commit()?;
        Ok(())
    }
}

struct Session(ReadOnlyTable<&'static [u8], &'static [u8]>);

impl Reader for Session {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.0.get(key)?.as_ref().map(|g| g.value()));
        Ok(())
    }
}
