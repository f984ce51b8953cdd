//! A review of the ShardedStore through its public API: close and reopen in one process,
//! crash images at every flush of splits, compactions, merges and clear, readers,
//! writers and resumed iterations during them, races of get_or_create, handles of
//! replaced shards, damaged files of a closed store, limits, and reopens.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use accretion::faults;
use accretion::limits::{SHARDED_KEY_LEN_BYTES_MAX, SHARDED_VALUE_LEN_BYTES_MAX};
use accretion::{Dir, Error, GetOrCreate, Replace, ShardedOptions, ShardedStore};

use crate::common::snapshot;

type Model = HashMap<Vec<u8>, Vec<u8>>;
type Files = BTreeMap<PathBuf, Vec<u8>>;

fn tiny() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 20 << 10,
        ..ShardedOptions::default()
    }
}

fn open(dir: &Dir) -> ShardedStore {
    ShardedStore::open(dir, "kv", tiny()).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn val(i: u64, round: u64) -> Vec<u8> {
    format!("v-{i}-{round}-{}", "y".repeat((i % 40) as usize)).into_bytes()
}

fn image_of(files: &Files) -> Dir {
    let image = Dir::temporary().unwrap();
    for (rel, bytes) in files {
        let to = image.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    image
}

/// Files under `root`, tolerating files that vanish while read.
fn loose_snapshot(root: &Path) -> Files {
    fn walk(root: &Path, at: &Path, out: &mut Files) {
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().is_some_and(|n| n != "accretion.lock")
                && let Ok(bytes) = std::fs::read(&p)
            {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Every entry through `iter`, checked for repeats and against `len`.
fn contents(store: &ShardedStore) -> Model {
    let mut out = HashMap::new();
    for e in store.iter() {
        let e = e.unwrap();
        assert!(
            out.insert(e.key.to_vec(), e.value.to_vec()).is_none(),
            "iter repeats a key"
        );
    }
    assert_eq!(out.len() as u64, store.len(), "iter against len");
    out
}

fn check(store: &ShardedStore, model: &Model, what: &str) {
    for (k, v) in model {
        let got = store.get(k).unwrap();
        assert_eq!(got.as_deref(), Some(&v[..]), "{what}: {k:?}");
    }
    assert!(contents(store) == *model, "{what}: contents differ");
}

/// `close` is a clean shutdown like a drop: the store opens again in the same process,
/// cleanly.
#[test]
fn close_then_reopen_in_the_same_process() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"k", b"v").unwrap();
    store.close().unwrap();
    let again = ShardedStore::open(&dir, "kv", tiny());
    assert!(again.is_ok(), "reopen after close: {again:?}");
    let again = again.unwrap();
    assert_eq!(again.stats().rebuilt_at_open, 0);
    assert_eq!(&*again.get(b"k").unwrap().unwrap(), b"v");
}

/// The register slots of the state file `kv/state/journal.acc`: (offset, sequence).
fn state_slots(bytes: &[u8]) -> Vec<(usize, u64)> {
    let slot = (16 + 32_832usize).div_ceil(512) * 512;
    (0..4)
        .map(|k| 512 + k * slot)
        .filter(|&at| at + 8 <= bytes.len())
        .map(|at| {
            (
                at,
                u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()),
            )
        })
        .collect()
}

/// Damage to the newest state slots makes the open read an older state (one whose map
/// names the shards a split replaced). Whatever the open answers, it must not delete the
/// shards the real map names: once the state file is repaired, every key is there.
#[test]
fn a_rolled_back_state_deletes_no_live_shard() {
    let dir = Dir::temporary().unwrap();
    let mut model = HashMap::new();
    {
        let store = open(&dir);
        let mut i = 0;
        while store.stats().splits == 0 {
            store.set(&key(i), &val(i, 0)).unwrap();
            model.insert(key(i), val(i, 0));
            i += 1;
        }
    }
    let state = dir.path().join("kv/state/journal.acc");
    let good = std::fs::read(&state).unwrap();
    let mut slots = state_slots(&good);
    assert_eq!(slots.len(), 4);
    slots.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut bad = good.clone();
    for &(at, _) in &slots[..2] {
        bad[at + 8] ^= 0xff; // The value's first byte: the checksum fails.
    }
    std::fs::write(&state, &bad).unwrap();
    let damaged = catch_unwind(AssertUnwindSafe(|| {
        ShardedStore::open(&dir, "kv", tiny()).map(|s| contents(&s))
    }));
    assert!(damaged.is_ok(), "the open panicked");
    if let Ok(Ok(c)) = damaged {
        assert!(c == model, "an older state served other contents");
    }
    std::fs::write(&state, &good).unwrap();
    let repaired = ShardedStore::open(&dir, "kv", tiny());
    assert!(
        repaired.is_ok(),
        "the open of a damaged state removed live shards: {repaired:?}"
    );
    check(&repaired.unwrap(), &model, "repaired");
}

enum Op {
    Set(u64, u64),
    Remove(u64),
    Merge,
    Compact,
    Clear,
}

/// Killed at every flush (a copy of the files each time) of a workload of splits,
/// compactions, merges and a clear: each image opens to exactly the contents before or
/// after the operation under way.
#[test]
fn killed_at_every_flush_of_splits_compactions_merges_and_clear() {
    let dir = Dir::temporary().unwrap();
    let root = dir.path().to_path_buf();
    let mut ops = Vec::new();
    for i in 0..700 {
        ops.push(Op::Set(i, 0));
    }
    for i in 0..700 {
        ops.push(Op::Set(i, 1));
    }
    for i in 0..700 {
        if i % 8 != 0 {
            ops.push(Op::Remove(i));
        }
    }
    ops.push(Op::Compact);
    ops.push(Op::Merge);
    for i in 0..40 {
        ops.push(Op::Set(i, 2));
    }
    ops.push(Op::Clear);
    for i in 0..40 {
        ops.push(Op::Set(i, 3));
    }
    let step = Arc::new(AtomicU64::new(0));
    type Seen = Vec<(u64, std::result::Result<Model, String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let hook = {
        let (step, seen, root) = (Arc::clone(&step), Arc::clone(&seen), root.clone());
        let hashes = Mutex::new(HashSet::new());
        faults::install(move |flush| {
            if flush.path().starts_with(&root) {
                // A flush on another thread (a log's look-ahead helper) may snapshot
                // while the workload moves on: an image read across two operations
                // belongs to neither, and is not kept.
                let from = step.load(Ordering::SeqCst);
                let files = loose_snapshot(&root);
                if step.load(Ordering::SeqCst) != from {
                    return None;
                }
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                for (p, b) in &files {
                    h.update(p.as_os_str().as_encoded_bytes());
                    h.update(&(b.len() as u64).to_le_bytes());
                    h.update(b);
                }
                if hashes.lock().unwrap().insert(h.digest128()) {
                    let at = from;
                    let image = image_of(&files);
                    let got = catch_unwind(AssertUnwindSafe(|| {
                        let s =
                            ShardedStore::open(&image, "kv", tiny()).map_err(|e| format!("{e}"))?;
                        let mut out = HashMap::new();
                        for e in s.iter() {
                            let e = e.map_err(|e| format!("{e}"))?;
                            out.insert(e.key.to_vec(), e.value.to_vec());
                        }
                        if out.len() as u64 != s.len() {
                            return Err("len differs from iter".to_owned());
                        }
                        Ok(out)
                    }))
                    .unwrap_or_else(|_| Err("panic".to_owned()));
                    seen.lock().unwrap().push((at, got));
                }
            }
            None
        })
    };
    let store = open(&dir);
    let mut models = vec![Model::new()];
    let mut model = Model::new();
    for (n, op) in ops.iter().enumerate() {
        step.store(n as u64, Ordering::SeqCst);
        match *op {
            Op::Set(i, r) => {
                store.set(&key(i), &val(i, r)).unwrap();
                model.insert(key(i), val(i, r));
            }
            Op::Remove(i) => {
                store.remove(&key(i)).unwrap();
                model.remove(&key(i));
            }
            Op::Merge => {
                assert!(store.merge_small_shards().unwrap() > 0);
            }
            Op::Compact => {
                store.compact().unwrap();
            }
            Op::Clear => {
                store.clear().unwrap();
                model.clear();
            }
        }
        models.push(model.clone());
    }
    let stats = store.stats();
    drop(store);
    drop(hook);
    assert!(stats.splits > 0 && stats.merges > 0, "{stats:?}");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.len() > 10, "{} images", seen.len());
    for (at, got) in seen {
        let at = at as usize;
        match got {
            Err(e) => panic!("the image at op {at} does not open: {e}"),
            Ok(c) => assert!(
                c == models[at] || c == models[at + 1],
                "the image at op {at} holds {} keys, neither before ({}) nor after ({})",
                c.len(),
                models[at].len(),
                models[at + 1].len()
            ),
        }
    }
}

/// Images of a running store taken between operations of several threads (splits and
/// compactions among them) hold every write that returned.
#[test]
fn killed_images_during_threads_lose_nothing_returned() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let models: Vec<Model> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut m = Model::new();
                    for r in 0..3 {
                        for i in 0..400 {
                            let k = format!("t{t}-{i}").into_bytes();
                            if (i + r) % 5 == 0 {
                                store.remove(&k).unwrap();
                                m.remove(&k);
                            } else {
                                store.set(&k, &val(i, r)).unwrap();
                                m.insert(k, val(i, r));
                            }
                        }
                    }
                    m
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let model: Model = models.into_iter().flatten().collect();
    let image = image_of(&snapshot(dir.path()));
    let crashed = open(&image);
    assert!(crashed.stats().rebuilt_at_open > 0);
    check(&crashed, &model, "image");
    // A second kill of the reopened image, after more writes.
    crashed.set(b"after", b"x").unwrap();
    let image2 = image_of(&snapshot(image.path()));
    let again = open(&image2);
    let mut model = model;
    model.insert(b"after".to_vec(), b"x".to_vec());
    check(&again, &model, "second image");
}

/// Readers of keys present throughout always find their values while a writer splits,
/// compacts, merges; iterations resumed from cookies in small steps return each of them
/// exactly once.
#[test]
fn readers_and_resumed_iterations_during_splits_compactions_and_merges() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let stable: Model = (0..300)
        .filter(|i| i % 5 == 0)
        .map(|i| (format!("stable-{i}").into_bytes(), val(i, 7)))
        .collect();
    for (k, v) in &stable {
        store.set(k, v).unwrap();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..4u64 {
                for i in 0..1500 {
                    store.set(&key(i), &val(i, round)).unwrap();
                }
                for i in 0..1500 {
                    store.remove(&key(i)).unwrap();
                }
                store.compact().unwrap();
                store.merge_small_shards().unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                for (k, v) in &stable {
                    let got = store.get(k).unwrap();
                    assert_eq!(got.as_deref(), Some(&v[..]), "{k:?}");
                }
            }
        });
        s.spawn(|| {
            let mut passes = 0;
            while !done.load(Ordering::SeqCst) || passes == 0 {
                passes += 1;
                let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
                let mut cookie = 0;
                loop {
                    let mut n = 0;
                    for e in store.iter_from(cookie).take(7) {
                        let e = e.unwrap();
                        n += 1;
                        cookie = e.cookie;
                        if let Some(v) = stable.get(&*e.key) {
                            assert_eq!(&*e.value, &v[..]);
                            *got.entry(e.key.to_vec()).or_default() += 1;
                        }
                    }
                    if n < 7 {
                        break;
                    }
                }
                for k in stable.keys() {
                    assert_eq!(got.get(k).copied(), Some(1), "pass {passes}: {k:?}");
                }
            }
        });
    });
    let stats = store.stats();
    assert!(
        stats.splits > 0 && stats.compactions > 0 && stats.merges > 0,
        "{stats:?}"
    );
}

/// Readers during clears see a key's one value or nothing, never another; a writer
/// setting it again after each clear is never lost.
#[test]
fn readers_during_clears() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..30u64 {
                for i in 0..200 {
                    store.set(&key(i), &val(i, 0)).unwrap();
                }
                store.clear().unwrap();
                assert!(store.is_empty() || round > 1000);
                store.set(b"k", b"one").unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    for i in (0..200).step_by(13) {
                        if let Some(v) = store.get(&key(i)).unwrap() {
                            assert_eq!(&*v, &val(i, 0)[..]);
                        }
                    }
                    if let Some(v) = store.get(b"k").unwrap() {
                        assert_eq!(&*v, b"one");
                    }
                }
            });
        }
    });
    assert_eq!(store.len(), 1);
    drop(store);
    let store = open(&dir);
    assert_eq!(store.stats().rebuilt_at_open, 0);
    assert_eq!(&*store.get(b"k").unwrap().unwrap(), b"one");
}

/// Threads racing get_or_create (and replace) on the same keys while the shards split:
/// one creator a key, every other thread sees the creator's value.
#[test]
fn get_or_create_races_have_one_winner() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    const N: u64 = 600;
    let results: Vec<Vec<(bool, Vec<u8>)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    (0..N)
                        .map(|i| {
                            let mine = format!("{t}-{}", "z".repeat(60)).into_bytes();
                            match store.get_or_create(&key(i), &mine).unwrap() {
                                GetOrCreate::Created(v) => {
                                    assert_eq!(&*v, &mine[..]);
                                    (true, v.to_vec())
                                }
                                GetOrCreate::Existing(v) => (false, v.to_vec()),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(store.stats().splits > 0);
    for i in 0..N as usize {
        let created = results.iter().filter(|r| r[i].0).count();
        assert_eq!(created, 1, "key {i}: {created} creators");
        let now = store.get(&key(i as u64)).unwrap().unwrap().to_vec();
        for r in &results {
            assert_eq!(r[i].1, now, "key {i}");
        }
    }
    // Compare-and-swap races: each thread increments counters; no increment lost.
    for i in 0..50 {
        store.set(&key(10_000 + i), b"0").unwrap();
    }
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..20 {
                    for i in 0..50 {
                        loop {
                            let cur = store.get(&key(10_000 + i)).unwrap().unwrap().to_vec();
                            let n: u64 = std::str::from_utf8(&cur).unwrap().parse().unwrap();
                            let next = format!("{}{}", n + 1, "").into_bytes();
                            match store.replace(&key(10_000 + i), &next, &cur).unwrap() {
                                Replace::Replaced(_) => break,
                                Replace::WrongValue(_) => {}
                                Replace::Absent => panic!("absent"),
                            }
                        }
                    }
                }
            });
        }
    });
    for i in 0..50 {
        assert_eq!(&*store.get(&key(10_000 + i)).unwrap().unwrap(), b"60");
    }
}

/// Handles from iteration and lookups stay valid after their shard is compacted,
/// merged, cleared, and after the store is dropped; and once they are dropped the store
/// opens cleanly with only the map's shards.
#[test]
fn handles_of_replaced_shards() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    for i in 0..1200 {
        store.set(&key(i), &val(i, 0)).unwrap();
    }
    let entries: Vec<_> = store.iter().map(Result::unwrap).collect();
    let got: Vec<_> = (0..1200)
        .map(|i| store.get(&key(i)).unwrap().unwrap())
        .collect();
    for i in 0..1200 {
        if i % 20 != 0 {
            store.remove(&key(i)).unwrap();
        }
    }
    store.compact().unwrap();
    store.merge_small_shards().unwrap();
    store.clear().unwrap();
    drop(store);
    for e in &entries {
        let k = std::str::from_utf8(&e.key).unwrap();
        let i: u64 = k.strip_prefix("key-").unwrap().parse().unwrap();
        assert_eq!(&*e.value, &val(i, 0)[..]);
    }
    for (i, v) in got.iter().enumerate() {
        assert_eq!(&**v, &val(i as u64, 0)[..]);
    }
    let held = ShardedStore::open(&dir, "kv", tiny());
    assert!(matches!(held, Err(Error::HandlesAlive { .. })), "{held:?}");
    drop(entries);
    drop(got);
    let store = open(&dir);
    assert!(store.is_empty());
    assert_eq!(store.stats().rebuilt_at_open, 0);
}

/// Every file of a closed store removed, emptied, cut short or with a byte flipped: the
/// open gives a typed error or a store in which every key reads its value or an error,
/// never a panic, a lost key or another value.
#[test]
fn damaged_files_of_a_closed_store() {
    let dir = Dir::temporary().unwrap();
    let mut model = Model::new();
    {
        let store = open(&dir);
        for i in 0..500 {
            store.set(&key(i), &val(i, 0)).unwrap();
            model.insert(key(i), val(i, 0));
        }
        for i in (0..500).step_by(3) {
            store.remove(&key(i)).unwrap();
            model.remove(&key(i));
        }
        assert!(store.stats().shards >= 2);
    }
    let files = snapshot(dir.path());
    let kv: Vec<PathBuf> = files
        .keys()
        .filter(|p| p.starts_with("kv"))
        .cloned()
        .collect();
    let mut failures = Vec::new();
    for path in &kv {
        let len = files[path].len();
        let mut damages: Vec<(String, Option<Vec<u8>>)> = vec![
            ("removed".into(), None),
            ("emptied".into(), Some(Vec::new())),
            ("halved".into(), Some(files[path][..len / 2].to_vec())),
            (
                "one byte short".into(),
                Some(files[path][..len.saturating_sub(1)].to_vec()),
            ),
        ];
        for at in [
            0,
            8,
            40,
            64,
            100,
            600,
            4096 + 10,
            4096 + 40,
            len / 2,
            len.saturating_sub(5),
        ] {
            if at < len {
                let mut b = files[path].clone();
                b[at] ^= 0x5a;
                damages.push((format!("byte {at} flipped"), Some(b)));
            }
        }
        for (what, bytes) in damages {
            let mut f = files.clone();
            match bytes {
                None => {
                    f.remove(path);
                }
                Some(b) => {
                    f.insert(path.clone(), b);
                }
            }
            let image = image_of(&f);
            let r = catch_unwind(AssertUnwindSafe(|| {
                let s = match ShardedStore::open(&image, "kv", tiny()) {
                    Ok(s) => s,
                    Err(_) => return Ok(()),
                };
                for (k, v) in &model {
                    match s.get(k) {
                        Ok(Some(got)) if *got == v[..] => {}
                        Ok(got) => return Err(format!("{k:?} reads {got:?}")),
                        Err(_) => {}
                    }
                }
                for e in s.iter().flatten() {
                    if model.get(&*e.key).map(Vec::as_slice) != Some(&*e.value) {
                        return Err(format!("iter yields {:?}", e.key));
                    }
                }
                Ok(())
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{} {what}: {e}", path.display())),
                Err(_) => failures.push(format!("{} {what}: panic", path.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Keys and values at their limits and empty ones; every write path refuses what is
/// over a limit and stores nothing.
#[test]
fn limits_and_empty_keys_and_values() {
    let dir = Dir::temporary().unwrap();
    let open = |dir: &Dir| ShardedStore::open(dir, "kv", ShardedOptions::default()).unwrap();
    let store = open(&dir);
    assert!(store.set(b"", b"").unwrap().is_none());
    assert_eq!(&*store.get(b"").unwrap().unwrap(), b"");
    assert!(store.set(b"e", b"").unwrap().is_none());
    assert!(matches!(
        store.replace(b"", b"x", b"").unwrap(),
        Replace::Replaced(_)
    ));
    assert_eq!(&*store.get(b"").unwrap().unwrap(), b"x");
    let long = vec![9u8; SHARDED_KEY_LEN_BYTES_MAX];
    store.set(&long, b"").unwrap();
    let long2 = vec![8u8; SHARDED_KEY_LEN_BYTES_MAX];
    store.set(&long2, &vec![1u8; 100 << 10]).unwrap();
    let over = vec![9u8; SHARDED_KEY_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.set(&over, b"v"),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.remove(&over),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.get_or_create(&over, b"v"),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.replace(&over, b"v", b""),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(!store.contains(&over).unwrap_or(false));
    let huge = vec![0u8; SHARDED_VALUE_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.replace(b"e", &huge, b""),
        Err(Error::LimitExceeded { .. })
    ));
    for i in 0..800 {
        store.set(&key(i), &val(i, 0)).unwrap();
    }
    let check_all = |s: &ShardedStore| {
        assert_eq!(s.len(), 804);
        assert_eq!(&*s.get(b"").unwrap().unwrap(), b"x");
        assert_eq!(&*s.get(b"e").unwrap().unwrap(), b"");
        assert_eq!(&*s.get(&long).unwrap().unwrap(), b"");
        assert_eq!(s.get(&long2).unwrap().unwrap().len(), 100 << 10);
        for i in 0..800 {
            assert_eq!(&*s.get(&key(i)).unwrap().unwrap(), &val(i, 0)[..]);
        }
    };
    check_all(&store);
    let image = image_of(&snapshot(dir.path()));
    drop(store);
    check_all(&open(&dir));
    check_all(&open(&image));
}

/// Clean reopens after a clear, merges, a compaction and with other options read no
/// record; an unclean one rebuilds; each holds every key.
#[test]
fn reopens_after_clear_merges_compaction_and_other_options() {
    let dir = Dir::temporary().unwrap();
    let mut model = Model::new();
    {
        let store = open(&dir);
        for i in 0..2000 {
            store.set(&key(i), &val(i, 0)).unwrap();
        }
        store.clear().unwrap();
    }
    {
        let store = open(&dir);
        assert_eq!(store.stats().rebuilt_at_open, 0, "after clear");
        assert!(store.is_empty());
        for i in 0..2000 {
            store.set(&key(i), &val(i, 1)).unwrap();
        }
        for i in 0..2000 {
            if i % 9 == 0 {
                model.insert(key(i), val(i, 1));
            } else {
                store.remove(&key(i)).unwrap();
            }
        }
    }
    {
        // A clean open, then merges and a compaction with no write: the next clean
        // open trusts every shard.
        let store = open(&dir);
        assert_eq!(store.stats().rebuilt_at_open, 0, "after removals");
        assert!(store.merge_small_shards().unwrap() > 0);
        store.compact().unwrap();
        check(&store, &model, "merged");
        // An image now: the merged shards have no check yet, so they are rebuilt.
        let image = image_of(&snapshot(dir.path()));
        let crashed = open(&image);
        check(&crashed, &model, "image after merges");
    }
    {
        let store = open(&dir);
        assert_eq!(store.stats().rebuilt_at_open, 0, "after merges");
        check(&store, &model, "after merges");
    }
    for options in [
        ShardedOptions {
            expected_keys: 1_000_000,
            ..tiny()
        },
        ShardedOptions::default(),
        ShardedOptions {
            shard_bytes_max: 4 << 10,
            ..ShardedOptions::default()
        },
    ] {
        let store = ShardedStore::open(&dir, "kv", options.clone()).unwrap();
        assert_eq!(store.stats().rebuilt_at_open, 0, "{options:?}");
        check(&store, &model, &format!("{options:?}"));
        store
            .set(b"new", format!("{options:?}").as_bytes())
            .unwrap();
        model.insert(b"new".to_vec(), format!("{options:?}").into_bytes());
        check(&store, &model, &format!("{options:?} after a write"));
    }
    let image = image_of(&snapshot(dir.path()));
    let store = open(&image);
    assert_eq!(store.stats().rebuilt_at_open, 0, "a closed store's copy");
    drop(store);
    // Unclean: a copy taken while open after a write.
    let store = open(&dir);
    store.set(b"x", b"y").unwrap();
    model.insert(b"x".to_vec(), b"y".to_vec());
    let image = image_of(&snapshot(dir.path()));
    let crashed = open(&image);
    assert!(crashed.stats().rebuilt_at_open > 0);
    check(&crashed, &model, "unclean");
}

/// A shard holding records larger than the shard size (a value of 100 KiB in 20 KiB
/// shards), written to again: the writes finish (a generous bound that only a hang
/// misses) rather than compacting the same shard over and over, and compactions stay few.
#[test]
fn writes_beside_a_value_larger_than_the_shard_size_finish() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = Dir::temporary().unwrap();
        let store = open(&dir);
        store.set(b"", b"x").unwrap();
        store
            .set(&vec![9u8; SHARDED_KEY_LEN_BYTES_MAX], b"")
            .unwrap();
        store
            .set(&vec![8u8; SHARDED_KEY_LEN_BYTES_MAX], &vec![1u8; 100 << 10])
            .unwrap();
        for i in 0..800 {
            store.set(&key(i), &val(i, 0)).unwrap();
        }
        let _ = tx.send(store.stats());
    });
    let stats = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert!(
        stats.is_ok(),
        "800 small writes beside two 64 KiB keys and a 100 KiB value did not finish in 60 s"
    );
    let stats = stats.unwrap();
    assert_eq!(stats.entries, 803);
    assert!(
        stats.compactions <= 10,
        "no key was overwritten, yet the shards were compacted {} times",
        stats.compactions
    );
}
