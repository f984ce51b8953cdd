//! The loose in-memory ceilings: std `HashMap` and `BTreeMap` of `Vec<u8>` behind an
//! `RwLock`, taking keys and values of any length (the tight ones, fitted to the standard
//! workload's lengths, are in `std_tight.rs`).
//!
//! They store nothing on disk, so they have no durable phase and `sync` does nothing; they
//! show how fast the same operations can be with no storage at all. The lock is there
//! because the mixed phases share the map between threads; uncontended, it costs one
//! atomic operation per call. A read session holds no lock between calls, so a writer is
//! never blocked by an idle reader.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use super::{
    Direct, Engine, EngineInfo, Extras, Family, Fit, Id, Reader, Result, Traits, unsupported,
};
use crate::workload::Workload;

/// Registry entry of the `HashMap` ceiling.
pub const HASH_MAP: EngineInfo = EngineInfo {
    name: "hashmap",
    family: Family::Ceiling(Fit::Loose),
    traits: Traits {
        ordered: false,
        remove: true,
        durable: false,
        content_addressed: false,
    },
    note: "std HashMap<Vec<u8>, Vec<u8>> (SipHash) in an RwLock; in memory only",
    open: |_| Ok(Box::new(Adapter::<HashMap<Vec<u8>, Vec<u8>>>::default())),
    extras: Extras::NONE,
};

/// Registry entry of the `BTreeMap` ceiling.
pub const BTREE_MAP: EngineInfo = EngineInfo {
    name: "btreemap",
    family: Family::Ceiling(Fit::Loose),
    traits: Traits {
        ordered: true,
        remove: true,
        durable: false,
        content_addressed: false,
    },
    note: "std BTreeMap<Vec<u8>, Vec<u8>> in an RwLock; in memory only",
    open: |_| Ok(Box::new(Adapter::<BTreeMap<Vec<u8>, Vec<u8>>>::default())),
    extras: Extras::NONE,
};

/// The operations both std maps share.
trait Map: Default + Send + Sync {
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn find(&self, key: &[u8]) -> Option<&[u8]>;
    fn delete(&mut self, key: &[u8]) -> bool;
    fn each(&self, visit: &mut dyn FnMut(&[u8], &[u8]));
}

impl Map for HashMap<Vec<u8>, Vec<u8>> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }
    fn find(&self, key: &[u8]) -> Option<&[u8]> {
        self.get(key).map(Vec::as_slice)
    }
    fn delete(&mut self, key: &[u8]) -> bool {
        self.remove(key).is_some()
    }
    fn each(&self, visit: &mut dyn FnMut(&[u8], &[u8])) {
        self.iter().for_each(|(k, v)| visit(k, v));
    }
}

impl Map for BTreeMap<Vec<u8>, Vec<u8>> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }
    fn find(&self, key: &[u8]) -> Option<&[u8]> {
        self.get(key).map(Vec::as_slice)
    }
    fn delete(&mut self, key: &[u8]) -> bool {
        self.remove(key).is_some()
    }
    fn each(&self, visit: &mut dyn FnMut(&[u8], &[u8])) {
        self.iter().for_each(|(k, v)| visit(k, v));
    }
}

#[derive(Default)]
struct Adapter<M> {
    map: RwLock<M>,
}

impl<M: Map> Adapter<M> {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, M> {
        // A poisoned lock means a panicking thread, which already fails the run.
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, M> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: Map> Engine for Adapter<M> {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        let mut map = self.write();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            map.put(&k, &v);
        }
        Ok(())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        self.write().put(key, value);
        Ok(None)
    }

    fn insert_durable(&self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(unsupported("a std map", "durable write"))
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.read().find(key));
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Direct(self)))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.read().each(visit);
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        Ok(self.write().delete(key))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
