//! The tight in-memory ceilings: std `HashMap` (with foldhash) and `BTreeMap` of fixed-size
//! arrays, fitted to the standard workload.
//!
//! The loose ceilings of `std_maps.rs` take keys and values of any length, so every entry
//! is two heap allocations, and their `HashMap` hashes with SipHash: they sit well below what
//! std can do for this workload. These store the standard workload's 16-byte keys and
//! 100-byte values inline (in the hash table's buckets, in the B-tree's nodes) and hash with
//! foldhash's fast fixed-state hasher, so they show how fast an in-memory map of exactly this
//! shape can be. They take no other lengths: the run skips them for a workload of another
//! shape ([`Extras::refuses`]), and a key or value of another length handed to any call is an
//! error, never a panic.
//!
//! Locking: the map sits in an `RwLock` because the mixed phases share it between threads,
//! but the single-thread phases take the lock as seldom as their shape allows. The bulk load
//! takes the write lock once for all N inserts; a read session ([`Engine::reader`]) takes the
//! read lock when it opens and holds the guard until it is dropped, so its gets take no lock;
//! a scan holds the read lock for the whole scan. The per-operation calls (`insert`, `remove`
//! and `get`, which the insert, remove and mixed phases make one at a time) take the lock per
//! call: uncontended in the single-thread phases, that is one atomic read-modify-write to take
//! it and one to release it. Nothing is kept on disk: there is no durable phase and `sync`
//! does nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::FixedState;

use super::{
    Engine, EngineInfo, Error, Extras, Family, Fit, Id, Reader, Result, Traits, unsupported,
};
use crate::workload::{KEY_LEN_DEFAULT, VALUE_LEN_DEFAULT, Workload};

/// The one key length these maps store: the standard workload's.
const KEY_LEN_BYTES: usize = KEY_LEN_DEFAULT;
/// The one value length these maps store: the standard workload's.
const VALUE_LEN_BYTES: usize = VALUE_LEN_DEFAULT;

type Key = [u8; KEY_LEN_BYTES];
type Value = [u8; VALUE_LEN_BYTES];

/// Registry entry of the tight `HashMap` ceiling.
pub const HASH_MAP: EngineInfo = EngineInfo {
    name: "hashmap-tight",
    family: Family::Ceiling(Fit::Tight),
    traits: Traits {
        ordered: false,
        remove: true,
        durable: false,
        content_addressed: false,
    },
    note: "std HashMap<[u8; 16], [u8; 100]> with foldhash 0.2 `fast::FixedState`, entries inline, in an RwLock (a read session holds the guard); in memory only; 16-byte keys and 100-byte values only",
    open: |_| {
        Ok(Box::new(
            Adapter::<HashMap<Key, Value, FixedState>>::default(),
        ))
    },
    extras: Extras {
        refuses: Some(refuses),
        ..Extras::NONE
    },
};

/// Registry entry of the tight `BTreeMap` ceiling.
pub const BTREE_MAP: EngineInfo = EngineInfo {
    name: "btreemap-tight",
    family: Family::Ceiling(Fit::Tight),
    traits: Traits {
        ordered: true,
        remove: true,
        durable: false,
        content_addressed: false,
    },
    note: "std BTreeMap<[u8; 16], [u8; 100]>, entries inline, in an RwLock (a read session holds the guard); in memory only; 16-byte keys and 100-byte values only",
    open: |_| Ok(Box::new(Adapter::<BTreeMap<Key, Value>>::default())),
    extras: Extras {
        refuses: Some(refuses),
        ..Extras::NONE
    },
};

/// Why a workload does not fit these maps, if it does not.
fn refuses(w: &Workload) -> Option<String> {
    (w.key_len != KEY_LEN_BYTES || w.value_len != VALUE_LEN_BYTES).then(|| {
        format!(
            "it stores {KEY_LEN_BYTES}-byte keys and {VALUE_LEN_BYTES}-byte values only, and this \
             run has {}-byte keys and {}-byte values",
            w.key_len, w.value_len
        )
    })
}

fn wrong_len(what: &str, got: usize, takes: usize) -> Error {
    format!("a tight std ceiling takes {takes}-byte {what}s only, not {got} bytes").into()
}

fn key_of(key: &[u8]) -> Result<Key> {
    Key::try_from(key).map_err(|_| wrong_len("key", key.len(), KEY_LEN_BYTES))
}

fn value_of(value: &[u8]) -> Result<Value> {
    Value::try_from(value).map_err(|_| wrong_len("value", value.len(), VALUE_LEN_BYTES))
}

/// The operations both tight maps share.
trait TightMap: Default + Send + Sync {
    fn put(&mut self, key: Key, value: Value);
    fn find(&self, key: &Key) -> Option<&Value>;
    fn delete(&mut self, key: &Key) -> bool;
    fn each(&self, visit: &mut dyn FnMut(&[u8], &[u8]));
}

impl TightMap for HashMap<Key, Value, FixedState> {
    fn put(&mut self, key: Key, value: Value) {
        self.insert(key, value);
    }
    fn find(&self, key: &Key) -> Option<&Value> {
        self.get(key)
    }
    fn delete(&mut self, key: &Key) -> bool {
        self.remove(key).is_some()
    }
    fn each(&self, visit: &mut dyn FnMut(&[u8], &[u8])) {
        self.iter().for_each(|(k, v)| visit(k, v));
    }
}

impl TightMap for BTreeMap<Key, Value> {
    fn put(&mut self, key: Key, value: Value) {
        self.insert(key, value);
    }
    fn find(&self, key: &Key) -> Option<&Value> {
        self.get(key)
    }
    fn delete(&mut self, key: &Key) -> bool {
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

impl<M: TightMap> Adapter<M> {
    fn write(&self) -> RwLockWriteGuard<'_, M> {
        // A poisoned lock means a panicking thread, which already fails the run.
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, M> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A read session: the read guard, held from `reader()` until the session is dropped.
struct Session<'a, M>(RwLockReadGuard<'a, M>);

impl<M: TightMap> Reader for Session<'_, M> {
    fn get(&mut self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        found(self.0.find(&key_of(key)?).map(|v| v.as_slice()));
        Ok(())
    }
}

impl<M: TightMap> Engine for Adapter<M> {
    fn bulk_insert(&self, w: &Workload, _ids: &mut Vec<Id>) -> Result<()> {
        if let Some(why) = refuses(w) {
            return Err(format!("a tight std ceiling cannot load this workload: {why}").into());
        }
        let mut map = self.write();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for i in 0..w.n {
            w.key(i, &mut k);
            w.value(i, &mut v);
            map.put(key_of(&k)?, value_of(&v)?);
        }
        Ok(())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Id>> {
        let (key, value) = (key_of(key)?, value_of(value)?);
        self.write().put(key, value);
        Ok(None)
    }

    fn insert_durable(&self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(unsupported("a std map", "durable write"))
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        let key = key_of(key)?;
        found(self.read().find(&key).map(|v| v.as_slice()));
        Ok(())
    }

    /// Holds the read lock until the session is dropped: a write from the same thread
    /// while a session is open would deadlock, and the phase runner's read phases only read.
    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Session(self.read())))
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.read().each(visit);
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        let key = key_of(key)?;
        Ok(self.write().delete(&key))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::tests::round_trip;

    fn workload(key_len: usize, value_len: usize) -> Workload {
        Workload {
            n: 500,
            key_len,
            value_len,
            seed: 7,
            mixed_ops: 1,
            durable_ops: 1,
            durable_ms: 1,
        }
    }

    #[test]
    fn maps_round_trip() {
        let w = workload(KEY_LEN_BYTES, VALUE_LEN_BYTES);
        for info in [HASH_MAP, BTREE_MAP] {
            assert_eq!((info.extras.refuses.unwrap())(&w), None);
            round_trip(&info, std::path::Path::new("unused"), &w);
        }
    }

    #[test]
    fn other_lengths_are_errors() {
        for info in [HASH_MAP, BTREE_MAP] {
            let e = (info.open)(std::path::Path::new("unused")).unwrap();
            let (key, value) = ([1u8; KEY_LEN_BYTES], [2u8; VALUE_LEN_BYTES]);
            assert!(e.insert(&key[1..], &value).is_err());
            assert!(e.insert(&key, &[0; VALUE_LEN_BYTES + 1]).is_err());
            assert!(e.get(&[0; 20], &mut |_| {}).is_err());
            assert!(e.remove(&[]).is_err());
            assert!(e.reader().unwrap().get(&key[..8], &mut |_| {}).is_err());
            let odd = workload(KEY_LEN_BYTES + 4, VALUE_LEN_BYTES);
            let why = (info.extras.refuses.unwrap())(&odd).unwrap();
            assert!(why.contains("20-byte keys"), "{why}");
            assert!(e.bulk_insert(&odd, &mut Vec::new()).is_err());
            assert!(
                e.bulk_insert(&workload(KEY_LEN_BYTES, 8), &mut Vec::new())
                    .is_err()
            );
            // Nothing of the refused calls was stored.
            let mut count = 0;
            e.scan(&mut |_, _| count += 1).unwrap();
            assert_eq!(count, 0);
        }
    }

    #[test]
    fn notes_name_the_lengths() {
        for info in [HASH_MAP, BTREE_MAP] {
            let shape = format!("[u8; {KEY_LEN_BYTES}], [u8; {VALUE_LEN_BYTES}]");
            assert!(info.note.contains(&shape), "{}", info.note);
        }
    }
}
