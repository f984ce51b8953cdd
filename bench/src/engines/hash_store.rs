//! Adapter for our [`HashStore`]: a Robin Hood hash index over checksummed records in a
//! log (rust-persist's design on the accretion primitives).
//!
//! Durability: `set` and `delete` append a record and change the index (visible at once,
//! surviving the death of the process, no fsync); `sync` is the store's own `sync` (one
//! flush of the data log). `insert_durable` is `set` then `sync`. The bulk load is plain
//! `set`s and one sync. Reads need no transaction: `get` returns a handle into the data
//! log, read in place and checked against the record's checksum. `remove` is `delete`,
//! which looks the key up and says whether it was there. Automatic optimisation is left
//! on, as shipped. Every operation goes through the common face ([`Faced`]); what is
//! the hash store's own is opening it, dropping its index, and the replay counts.
//!
//! Reopen phases: a HashStore has no hint files; its index plays their part. The first
//! timed reopen is a clean one (the index is trusted, no record read); "dropping the
//! hints" removes the index generation, so that the second open rebuilds the index from
//! every record, as an open after a SIGKILL does.

use std::path::Path;

use accretion::{Dir, HashOptions, HashStore};

use super::faced::{Faced, STORE};
use super::{Engine, EngineInfo, Extras, Family, Result, Traits};

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

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let faced = Faced::open(path, |dir| {
        HashStore::open(dir, STORE, HashOptions::default())
    })?;
    Ok(Box::new(faced.with_replay_counts(replay_counts)))
}

/// How the last open read the store, as (index trusted, index rebuilt): one of them is 1.
fn replay_counts(store: &HashStore) -> (u64, u64) {
    if store.rebuilt_at_open() {
        (0, 1)
    } else {
        (1, 0)
    }
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
