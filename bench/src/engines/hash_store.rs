//! Adapter for our [`HashStore`]: a Robin Hood hash index over checksummed records in a
//! log (rust-persist's design on the accretion primitives).
//!
//! Durability: `set` and `delete` append a record and change the index (visible at once,
//! surviving the death of the process, no fsync); `sync` is the store's own `sync` (one
//! flush of the data log). `insert_durable` is `set` then `sync`. The bulk load is plain
//! `set`s and one sync. Reads need no transaction: `get` returns a handle into the data
//! log, read in place and checked against the record's checksum. `remove` is `delete`,
//! which looks the key up and says whether it was there. Automatic optimisation is left
//! on, as shipped.
//!
//! Reopen phases: a HashStore has no hint files; its index plays their part. The first
//! timed reopen is a clean one (the index is trusted, no record read); "dropping the
//! hints" removes the index generation, so that the second open rebuilds the index from
//! every record, as an open after a SIGKILL does.

use std::path::Path;

use accretion::{Dir, HashOptions, HashStore};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "hashstore",
    family: Family::Ours,
    traits: Traits {
        ordered: false,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "accretion HashStore (this workspace), default options (automatic optimisation at 50% dead); reopen phases: clean, then with the index removed (a rebuild, as after a SIGKILL)",
    open,
    extras: Extras {
        open_durable: None,
        drop_hints: Some(drop_index),
        refuses: None,
    },
};

/// The store's name in its directory.
const STORE: &str = "bench";

struct Adapter {
    // Declared before the directory so the store is closed before the lock is released.
    store: HashStore,
    _dir: Dir,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let store = HashStore::open(&dir, STORE, HashOptions::default())?;
    Ok(Box::new(Adapter { store, _dir: dir }))
}

/// Removes the closed store's index generations (`bench/i*`), so that the next open
/// rebuilds the index from the records. Returns how many it removed.
fn drop_index(path: &Path) -> Result<u64> {
    let dir = Dir::open(path)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path.join(STORE))? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if file
            .strip_prefix('i')
            .is_some_and(|n| n.parse::<u64>().is_ok())
        {
            names.push(format!("{STORE}/{file}"));
        }
    }
    for name in &names {
        dir.remove(name)?;
    }
    Ok(names.len() as u64)
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
        Ok(self.store.sync()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.store.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.store.iter()? {
            let (k, v) = entry?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(self.store.delete(key)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }

    fn replay_counts(&self) -> Option<(u64, u64)> {
        // (index trusted, index rebuilt): one of them.
        Some(if self.store.rebuilt_at_open() {
            (0, 1)
        } else {
            (1, 0)
        })
    }
}
