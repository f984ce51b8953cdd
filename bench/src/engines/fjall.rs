//! Adapter for fjall 3: a log-structured merge tree with a write-ahead journal.
//!
//! Durability: each insert or remove is its own write (written to the journal's OS
//! buffer, not fsynced: fjall's default); `sync` and each durable insert call
//! `persist(SyncData)` (fdatasync of the journal). The bulk load is one `WriteBatch`.
//! Background flushes and compactions run on fjall's own worker threads, as shipped.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "fjall",
    family: Family::Peer,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "fjall 3.1, default config; sync = persist(SyncData)",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    // Declared before the database, which it refers to.
    keyspace: Keyspace,
    db: Database,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let db = Database::builder(path.join("fjall")).open()?;
    let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
    Ok(Box::new(Adapter { keyspace, db }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut batch = self.db.batch();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            batch.insert(&self.keyspace, k.as_slice(), v.as_slice());
        }
        batch.commit()?;
        Ok(self.db.persist(PersistMode::SyncData)?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.keyspace.insert(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.keyspace.insert(key, value)?;
        Ok(self.db.persist(PersistMode::SyncData)?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.keyspace.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for guard in self.keyspace.iter() {
            let (k, v) = guard.into_inner()?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        // fjall's remove writes a tombstone without looking the key up, so it cannot say
        // whether the key existed; a lookup here would charge fjall for a read the others
        // do not make. The empty scan after the phase checks that every key went.
        self.keyspace.remove(key)?;
        Ok(true)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncData)?)
    }
}
