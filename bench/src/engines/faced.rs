//! The adapter our key-value stores share: [`Faced`] is an [`Engine`] written once over
//! the common face, [`accretion::face::Store`], so that a point read, a write, a removal,
//! a scan and a sync are the same code for every store.
//!
//! What the face does not have stays in each store's file: opening the store with its
//! options, the registry entry, and the operations where a store has a path of its own
//! (the B-tree's transactions and snapshots). Durability is each store's: the face's
//! `put`, `delete` and `sync` are the store's own, as its adapter documents;
//! `insert_durable` is a `put` then a `sync`, or a plain `put` on a store opened in its
//! durable mode.

use std::path::Path;

use accretion::Dir;
use accretion::face::Store;

use super::{Direct, Engine, Id, Reader, Result};
use crate::workload::Workload;

/// The store's name in its directory.
pub const STORE: &str = "bench";

/// Reads from a store how its last open replayed it, as [`Engine::replay_counts`] says.
pub type ReplayCounts<S> = fn(&S) -> (u64, u64);

/// One of our stores, open in its directory, run through the face.
pub struct Faced<S> {
    // Declared before the directory so the store is closed before the lock is released.
    pub store: S,
    _dir: Dir,
    /// Opened in its durable mode (`sync_each_write`): every write is durable before it
    /// returns, so `insert_durable` needs no sync of its own.
    syncs_each_write: bool,
    /// How the last open replayed the store, for the stores that rebuild an index then.
    replay_counts: Option<ReplayCounts<S>>,
}

impl<S: Store> Faced<S> {
    /// Opens the directory at `path`, then the store in it with `open`.
    pub fn open(path: &Path, open: impl FnOnce(&Dir) -> accretion::Result<S>) -> Result<Self> {
        let dir = Dir::open(path)?;
        let store = open(&dir)?;
        Ok(Faced {
            store,
            _dir: dir,
            syncs_each_write: false,
            replay_counts: None,
        })
    }

    /// Says whether the store was opened in its durable mode.
    pub fn syncing_each_write(self, syncs_each_write: bool) -> Self {
        Faced {
            syncs_each_write,
            ..self
        }
    }

    /// Gives the engine [`Engine::replay_counts`], read from the store by `counts`.
    pub fn with_replay_counts(self, counts: ReplayCounts<S>) -> Self {
        Faced {
            replay_counts: Some(counts),
            ..self
        }
    }
}

impl<S: Store> Engine for Faced<S> {
    /// Plain puts and one sync: each put is already one write with no fsync.
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            Store::put(&self.store, &k, &v)?;
        }
        Ok(Store::sync(&self.store)?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        Store::put(&self.store, key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Store::put(&self.store, key, value)?;
        if !self.syncs_each_write {
            Store::sync(&self.store)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(Store::get(&self.store, key)?.as_deref());
        Ok(())
    }

    /// Lookups need no transaction: each is a plain `get`.
    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    /// The face's entries, in key order for the stores that keep one.
    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in Store::entries(&self.store)? {
            let (k, v) = entry?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(Store::delete(&self.store, key)?)
    }

    fn sync(&self) -> Result<()> {
        Ok(Store::sync(&self.store)?)
    }

    fn replay_counts(&self) -> Option<(u64, u64)> {
        self.replay_counts.map(|counts| counts(&self.store))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::super::{ENGINES, Family};
    use crate::workload::{KEY_LEN_DEFAULT, VALUE_LEN_DEFAULT, Workload};

    /// Each of our key-value stores (they all run through `Faced`) answers right, then
    /// keeps a durable insert across a reopen, in its durable mode where it has one.
    #[test]
    fn our_stores_round_trip() {
        let w = Workload {
            n: 500,
            key_len: KEY_LEN_DEFAULT,
            value_len: VALUE_LEN_DEFAULT,
            seed: 11,
            mixed_ops: 1,
            durable_ops: 1,
            durable_ms: 1,
        };
        let (mut k, mut v) = (Vec::new(), Vec::new());
        w.key(7, &mut k);
        w.value(8, &mut v);
        for name in ["logstore", "btree", "hashstore", "shardedstore"] {
            let info = ENGINES.iter().find(|e| e.name == name).unwrap();
            assert_eq!(info.family, Family::Ours);
            let dir = tempfile::tempdir().unwrap();
            round_trip(info, dir.path(), &w);
            let open = info.extras.open_durable.unwrap_or(info.open);
            open(dir.path()).unwrap().insert_durable(&k, &v).unwrap();
            let e = (info.open)(dir.path()).unwrap();
            let mut kept = false;
            e.get(&k, &mut |got| kept = got == Some(v.as_slice()))
                .unwrap();
            assert!(kept, "{name}");
            let replays = info.extras.drop_hints.is_some();
            assert_eq!(e.replay_counts().is_some(), replays, "{name}");
        }
    }
}
