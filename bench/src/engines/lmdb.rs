//! Adapter for LMDB through heed: a copy-on-write B-tree in one memory-mapped file.
//!
//! Durability: the environment is opened with `NO_SYNC`, so commits do not fsync; `sync`
//! and each durable insert call `mdb_env_sync(force)` (`Env::force_sync`). The bulk load is
//! one write transaction. Read transactions are opened without thread-local storage, so
//! a read session is one read transaction that any thread may own.

use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RoTxn, WithoutTls};

use super::{Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "lmdb",
    family: Family::Peer,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "LMDB 0.9 via heed 0.23, NO_SYNC env flag (durable = commit + force_sync), map size 64 GiB",
    open,
    extras: Extras::NONE,
};

/// Virtual size of the map; LMDB allocates disk only as the tree grows.
const MAP_SIZE_BYTES: usize = 64 << 30;

type Db = Database<'static, Bytes, Bytes>;

struct Adapter {
    env: Env<WithoutTls>,
    db: Db,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE_BYTES);
    // SAFETY: NO_SYNC only drops the fsync at commit; the benchmark syncs explicitly
    // (force_sync) wherever durability is measured, and no other process opens the file.
    unsafe { options.flags(EnvFlags::NO_SYNC) };
    // SAFETY: the directory is new and private to this process, so the file is not opened
    // twice in one process and nothing else truncates it while it is mapped.
    let env = unsafe { options.open(path)? };
    let wtxn = env.write_txn()?;
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.create_database::<Bytes, Bytes>(wtxn, None)?,
            ))
        })?
        .unwrap_commit();
    Ok(Box::new(Adapter { env, db }))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            self.db.put(&mut wtxn, &k, &v)?;
        }
        wtxn.commit()?;
        Ok(self.env.force_sync()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        let mut wtxn = self.env.write_txn()?;
        self.db.put(&mut wtxn, key, value)?;
        wtxn.commit()?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.insert(key, value)?;
        Ok(self.env.force_sync()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        let rtxn = self.env.read_txn()?;
        found(self.db.get(&rtxn, key)?);
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Session {
            rtxn: self.env.read_txn()?,
            db: self.db,
        }))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let rtxn = self.env.read_txn()?;
        for entry in self.db.iter(&rtxn)? {
            let (k, v) = entry?;
            visit(k, v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        let mut wtxn = self.env.write_txn()?;
        let existed = self.db.delete(&mut wtxn, key)?;
        wtxn.commit()?;
        Ok(existed)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }
}

struct Session<'e> {
    rtxn: RoTxn<'e, WithoutTls>,
    db: Db,
}

impl Reader for Session<'_> {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.db.get(&self.rtxn, key)?);
        Ok(())
    }
}
