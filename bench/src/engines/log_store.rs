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
//! read in place. `remove` is the face's `delete`: a lookup in the key directory (in
//! memory), which says whether the key was there, then the store's `delete`, which
//! writes a tombstone. Background compaction is left on, as shipped
//! (`compact_dead_ratio` 0.5). Every operation goes through the common face
//! ([`Faced`]); what is the log store's own is opening it (in its durable mode or not),
//! the hints, and the replay counts.
//!
//! Hint files: a segment gets one when it is finished (64 MiB by default); the reopen
//! phases time opening the loaded store with them, then after removing them.

use std::path::Path;

use accretion::{Dir, LogOptions, LogStore};

use super::faced::{Faced, STORE};
use super::{Engine, EngineInfo, Extras, Family, Result, Traits};

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
    open: open::<false>,
    extras: Extras {
        open_durable: Some(open::<true>),
        drop_hints: Some(drop_hints),
        refuses: None,
    },
};

/// Opens the store, in its durable mode if `DURABLE`.
fn open<const DURABLE: bool>(path: &Path) -> Result<Box<dyn Engine>> {
    let options = LogOptions {
        sync_each_write: DURABLE,
        ..LogOptions::default()
    };
    let faced = Faced::open(path, |dir| LogStore::open(dir, STORE, options))?
        .syncing_each_write(DURABLE)
        .with_replay_counts(replay_counts);
    Ok(Box::new(faced))
}

/// (segments read from hint files, segments scanned record by record) at the last open.
fn replay_counts(store: &LogStore) -> (u64, u64) {
    let stats = store.stats();
    (stats.segments_from_hints, stats.segments_scanned)
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
