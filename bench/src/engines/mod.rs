//! The adapter trait every engine implements, and the registry of engines.
//!
//! Adding a store is one file here plus one line in [`ENGINES`]. The trait is the smallest
//! surface the workload needs; an engine declares what it lacks in [`Traits`] and the run
//! shows a dash for those phases. How an engine meets the shared durability rule (no fsync
//! per operation, one final [`Engine::sync`] per write phase; [`Engine::insert_durable`]
//! syncs before it returns) is documented on each adapter. Our key-value stores share one
//! adapter written over the common face, [`faced::Faced`]; each of their files keeps only
//! what is its store's own.

mod btree;
mod candystore;
mod content;
mod faced;
mod fjall;
mod hash_store;
mod lmdb;
mod log_store;
mod once_map;
mod redb;
mod sharded;
mod sled;
mod std_maps;
mod std_tight;

use std::path::Path;

use crate::workload::Workload;

/// Any engine's error, carried as text to the parent process.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result of an engine call.
pub type Result<T> = std::result::Result<T, Error>;

/// The id a content-addressed engine returns for a stored value.
pub type Id = [u8; 32];

/// Who wrote an engine, which decides where it stands in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Ours: each gets a ratio to the best peer and to the best std ceiling of each fit.
    Ours,
    /// A peer crate that stores on disk.
    Peer,
    /// An in-memory std collection: the ceiling, not a store.
    Ceiling(Fit),
}

/// How closely a std ceiling is fitted to the workload; the report compares our engines
/// with the best ceiling of each fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Any key and value length: a heap allocation per key and per value, SipHash.
    Loose,
    /// Only the standard workload's fixed lengths, stored inline; a fast hasher.
    Tight,
}

impl Fit {
    /// Both fits, in report order.
    pub const ALL: [Fit; 2] = [Fit::Loose, Fit::Tight];

    /// Label for the report.
    pub fn label(self) -> &'static str {
        match self {
            Fit::Loose => "std ceiling",
            Fit::Tight => "tight std ceiling",
        }
    }
}

/// What an engine can do; phases it cannot do are shown as a dash.
#[derive(Clone, Copy, Debug)]
pub struct Traits {
    /// Scans return keys in ascending byte order (checked by the scan phase).
    pub ordered: bool,
    /// Keys can be removed.
    pub remove: bool,
    /// Writes can be made durable (the std ceilings cannot).
    pub durable: bool,
    /// Values are found by the [`Id`] their insert returned, not by the workload's key.
    pub content_addressed: bool,
}

/// A read session: one read transaction (or none, for engines without them) used for a
/// whole read phase by one thread.
pub trait Reader {
    /// Looks `key` up and hands the value (or `None`) to `found`.
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()>;
}

/// One engine, open on a directory. Shared by the threads of multi-threaded phases.
pub trait Engine: Send + Sync {
    /// Inserts keys `0..w.n` in one transaction or batch where the engine has one, then
    /// makes them durable. Content-addressed engines push each returned id to `ids`.
    fn bulk_insert(&self, w: &Workload, ids: &mut Vec<Id>) -> Result<()>;

    /// Inserts one pair as its own commit, without an fsync. Returns the id for
    /// content-addressed engines.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>>;

    /// Inserts one pair and makes it durable (fsync or equivalent) before returning.
    fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Looks one key up in its own read transaction (used where reads and writes
    /// interleave, so every read sees the latest commit).
    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()>;

    /// A read session for a whole read phase.
    fn reader(&self) -> Result<Box<dyn Reader + '_>>;

    /// Visits every entry (for ordered engines, in key order).
    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()>;

    /// Removes `key` as its own commit without an fsync; false if the engine knows it was
    /// absent (engines that cannot tell without a lookup answer true).
    fn remove(&self, key: &[u8]) -> Result<bool>;

    /// Makes every earlier write durable.
    fn sync(&self) -> Result<()>;

    /// For engines that rebuild an index when they open: how the last open replayed the
    /// store, as (segments read from hint files, segments scanned record by record).
    /// `None` for the others.
    fn replay_counts(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Opens an engine in a directory.
pub type Open = fn(&Path) -> Result<Box<dyn Engine>>;

/// A registered engine: its name on the command line and in the report, and how to open it.
#[derive(Debug)]
pub struct EngineInfo {
    /// Short name used in `--engines`, `--child` and the report.
    pub name: &'static str,
    /// Where the engine stands in the report.
    pub family: Family,
    /// What it can do.
    pub traits: Traits,
    /// One line for the report: version and configuration.
    pub note: &'static str,
    /// Opens (creating) the engine in an empty directory; also reopens the store it left
    /// there once closed.
    pub open: Open,
    /// What only some engines have.
    pub extras: Extras,
}

/// Engine-specific hooks of the phase runner; [`Extras::NONE`] for most engines.
#[derive(Debug)]
pub struct Extras {
    /// Reopens the engine's closed store in a directory in its durable mode, where every
    /// write is durable before it returns (and [`Engine::insert_durable`] needs no sync of
    /// its own). The durable phases run on the store so reopened. `None`: they run on the
    /// engine as opened, through `insert_durable`.
    pub open_durable: Option<Open>,
    /// Removes the hint files of the engine's closed store in a directory, so that the
    /// next open reads every record; returns how many it removed. Engines with it get the
    /// two reopen phases.
    pub drop_hints: Option<fn(&Path) -> Result<u64>>,
    /// Why the engine cannot run a workload (say, one with other key or value lengths than
    /// it stores), checked before any child starts: the run skips the engine at that N and
    /// the report says why. `None`: it runs every workload.
    pub refuses: Option<fn(&Workload) -> Option<String>>,
}

impl Extras {
    /// No extras.
    pub const NONE: Extras = Extras {
        open_durable: None,
        drop_hints: None,
        refuses: None,
    };
}

/// Every engine, in report order: ours, peers, then the std ceilings.
pub const ENGINES: &[EngineInfo] = &[
    once_map::INFO,
    content::INFO,
    log_store::INFO,
    btree::INFO,
    hash_store::INFO,
    sharded::INFO,
    redb::INFO,
    lmdb::INFO,
    fjall::INFO,
    candystore::INFO,
    sled::INFO,
    std_maps::HASH_MAP,
    std_maps::BTREE_MAP,
    std_tight::HASH_MAP,
    std_tight::BTREE_MAP,
];

/// The engine named `name`; `_` and `-` are ignored, so `log_store` finds `logstore`.
pub fn find(name: &str) -> Option<&'static EngineInfo> {
    let plain = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
    let wanted = plain(name);
    ENGINES.iter().find(|e| plain(e.name) == wanted)
}

/// A reader for engines whose lookups need no transaction: each get goes straight to
/// [`Engine::get`].
pub struct Direct<'a>(pub &'a dyn Engine);

impl Reader for Direct<'_> {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        self.0.get(key, found)
    }
}

/// The error an adapter returns for a phase its [`Traits`] say it lacks (never reached in
/// a correct run: the phase runner checks the traits first).
pub fn unsupported(engine: &str, what: &str) -> Error {
    format!("{engine} has no {what}").into()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Loads, reads (in a session and one by one), scans, rewrites and removes through
    /// the adapter opened on `dir`, and checks every answer against the workload's
    /// generator, which should have 500 keys.
    pub fn round_trip(info: &EngineInfo, dir: &Path, w: &Workload) {
        let e = (info.open)(dir).unwrap();
        e.bulk_insert(w, &mut Vec::new()).unwrap();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        {
            let mut session = e.reader().unwrap();
            for i in [0, 1, 499] {
                w.key(i, &mut k);
                let mut ok = false;
                session
                    .get(&k, &mut |got| {
                        ok = got.is_some_and(|g| w.value_matches(i, g))
                    })
                    .unwrap();
                assert!(ok, "{}: key #{i}", info.name);
            }
            w.key(crate::workload::ABSENT_BASE, &mut k);
            let mut absent = false;
            session.get(&k, &mut |got| absent = got.is_none()).unwrap();
            assert!(absent, "{}", info.name);
        }
        let mut keys = Vec::new();
        e.scan(&mut |key, value| {
            let i = w.index_of(key).unwrap();
            assert!(w.value_matches(i, value));
            keys.push(key.to_vec());
        })
        .unwrap();
        assert_eq!(keys.len(), 500);
        if info.traits.ordered {
            assert!(keys.is_sorted(), "{}", info.name);
        }
        w.key(3, &mut k);
        w.value(4, &mut v);
        e.insert(&k, &v).unwrap();
        let mut rewritten = false;
        e.get(&k, &mut |got| rewritten = got == Some(v.as_slice()))
            .unwrap();
        assert!(rewritten, "{}", info.name);
        assert!(e.remove(&k).unwrap());
        assert!(!e.remove(&k).unwrap());
        let mut gone = false;
        e.get(&k, &mut |got| gone = got.is_none()).unwrap();
        assert!(gone, "{}", info.name);
    }
}
