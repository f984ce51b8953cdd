//! Adapter for our [`LogStore`]: a Bitcask-style log of records in segments with an
//! ordered key directory in memory, hint files for fast opening, and compaction.
//!
//! Durability: `put` and `delete` append a record and update the key directory (visible
//! at once, no fsync); `sync` is the store's own `sync` (flush of the active segment). The
//! durable phases run on the store reopened with `sync_each_write: true`, its durable
//! mode, where every write is durable before it returns and concurrent writers share
//! fsyncs (group commit); `insert_durable` is then a plain `put`. Outside that mode it is
//! `put` then `sync`. The bulk load is plain puts and one sync: a `WriteBatch` is one
//! atomic record, a tool for atomicity, not for loading (each put is already one append
//! with no fsync). Reads need no transaction: `get` returns a handle into the segment,
//! read in place. `remove` is `delete`, which writes a tombstone without looking the key
//! up, so it cannot say whether the key was there (the empty scan after the phase checks
//! that every key went). Background compaction is left on, as shipped
//! (`compact_dead_ratio` 0.5).
//!
//! Hint files: a segment gets one when it is finished (64 MiB by default); the reopen
//! phases time opening the loaded store with them, then after removing them.

use std::path::Path;

use accretion::{Dir, LogOptions, LogStore};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "logstore",
    family: Family::Ours,
    traits: Traits {
        ordered: true,
        remove: true,
        durable: true,
        content_addressed: false,
    },
    note: "accretion LogStore (this workspace), default options (64 MiB segments, compaction at 50% dead); durable phases with `sync_each_write: true`",
    open,
    extras: Extras {
        open_durable: Some(open_durable),
        drop_hints: Some(drop_hints),
        refuses: None,
    },
};

/// The store's name in its directory.
const STORE: &str = "bench";

struct Adapter {
    // Declared before the directory so the store is closed before the lock is released.
    store: LogStore,
    _dir: Dir,
    /// Opened with `sync_each_write`: every write is durable already.
    durable: bool,
}

fn open_with(path: &Path, durable: bool) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let opts = LogOptions {
        sync_each_write: durable,
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, STORE, opts)?;
    Ok(Box::new(Adapter {
        store,
        _dir: dir,
        durable,
    }))
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    open_with(path, false)
}

fn open_durable(path: &Path) -> Result<Box<dyn Engine>> {
    open_with(path, true)
}

/// Removes every hint file of the closed store: `bench/log-*-hint` and
/// `bench/g*/base-*-hint` (each a structure, so a directory).
fn drop_hints(path: &Path) -> Result<u64> {
    let dir = Dir::open(path)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path.join(STORE))? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if file.starts_with("log-") && file.ends_with("-hint") {
            names.push(format!("{STORE}/{file}"));
        } else if file.starts_with('g') {
            for inner in std::fs::read_dir(path.join(STORE).join(&file))? {
                let base = inner?.file_name().to_string_lossy().into_owned();
                if base.starts_with("base-") && base.ends_with("-hint") {
                    names.push(format!("{STORE}/{file}/{base}"));
                }
            }
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
            self.store.put(&k, &v)?;
        }
        Ok(self.store.sync()?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.store.put(key, value)?;
        Ok(None)
    }

    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.put(key, value)?;
        if !self.durable {
            self.store.sync()?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.store.get(key)?.as_deref());
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for entry in self.store.iter() {
            let (k, v) = entry?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        self.store.delete(key)?;
        Ok(true)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }

    fn replay_counts(&self) -> Option<(u64, u64)> {
        let stats = self.store.stats();
        Some((stats.segments_from_hints, stats.segments_scanned))
    }
}
