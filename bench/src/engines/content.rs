//! Adapter for our [`Content`]: content-addressed blobs whose key is the BLAKE3 id of the
//! value.
//!
//! The workload's key cannot be used: `insert` takes only the value and returns its id,
//! and the client keeps the id to read the value back. So this adapter ignores the key on
//! insert and returns the id; the phase runner keeps the ids of the loaded values (as a
//! client would) and looks values up by id. Absent lookups use random 32-byte ids. Reads
//! use `get`, which re-hashes every blob with BLAKE3 to verify it. The scan walks `ids()`,
//! which checks every entry's checksums, and reports each id with an empty value (Content
//! has no scan of values). No remove; durability as for OnceMap.

use std::path::Path;

use accretion::{Content, ContentId, Dir};

use super::{Direct, Engine, EngineInfo, Extras, Family, Id, Reader, Result, Traits, unsupported};
use crate::workload::Workload;

/// Registry entry.
pub const INFO: EngineInfo = EngineInfo {
    name: "content",
    family: Family::Ours,
    traits: Traits {
        ordered: false,
        remove: false,
        durable: true,
        content_addressed: true,
    },
    note: "accretion Content (this workspace), default settings; `get` re-hashes each blob (BLAKE3)",
    open,
    extras: Extras::NONE,
};

struct Adapter {
    // Declared before the directory so the store is closed before the lock is released.
    blobs: Content,
    _dir: Dir,
}

fn open(path: &Path) -> Result<Box<dyn Engine>> {
    let dir = Dir::open(path)?;
    let blobs = Content::open(&dir, "bench")?;
    Ok(Box::new(Adapter { blobs, _dir: dir }))
}

fn id_of(key: &[u8]) -> Result<ContentId> {
    let bytes: Id = key
        .try_into()
        .map_err(|_| format!("content lookup key of {} bytes is not an id", key.len()))?;
    Ok(ContentId::from_bytes(bytes))
}

impl Engine for Adapter {
    fn bulk_insert(&self, w: &Workload, ids: &mut Vec<Id>) -> Result<()> {
        let mut v = Vec::new();
        ids.reserve(usize::try_from(w.n)?);
        for i in 0..w.n {
            w.value(i, &mut v);
            ids.push(*self.blobs.insert(&v)?.as_bytes());
        }
        Ok(self.blobs.sync()?)
    }

    fn insert(&self, _key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        Ok(Some(*self.blobs.insert(value)?.as_bytes()))
    }

    fn insert_durable(&self, _key: &[u8], value: &[u8]) -> Result<()> {
        self.blobs.insert(value)?;
        Ok(self.blobs.sync()?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.blobs.get(&id_of(key)?)?);
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for id in self.blobs.ids() {
            visit(id?.as_bytes(), &[]);
        }
        Ok(())
    }

    fn remove(&self, _key: &[u8]) -> Result<bool> {
        Err(unsupported(INFO.name, "remove"))
    }

    fn sync(&self) -> Result<()> {
        Ok(self.blobs.sync()?)
    }
}
