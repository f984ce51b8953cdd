//! ShardedStore through its public API: seeded model runs with clean and killed reopens,
//! tiny shards forcing hundreds of splits and compactions, resumable iteration across
//! them, interrupted-split leftovers, limits, handles, merges and eight threads against
//! per-thread models.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use accretion::faults::{self, Flush, HookGuard};

use accretion::limits::{SHARDED_KEY_LEN_BYTES_MAX, SHARDED_VALUE_LEN_BYTES_MAX};
use accretion::{Dir, Error, GetOrCreate, Replace, ShardedOptions, ShardedStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Seeded, killed_image};

/// Shards of 20 KiB: a few hundred small records fill one.
fn tiny() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 20 << 10,
        ..ShardedOptions::default()
    }
}

fn open(dir: &Dir, options: &ShardedOptions) -> ShardedStore {
    ShardedStore::open(dir, "kv", options.clone()).unwrap()
}

fn check_all(store: &ShardedStore, model: &HashMap<Vec<u8>, Vec<u8>>, what: &str) {
    assert_eq!(store.len(), model.len() as u64, "{what}: len");
    for (k, v) in model {
        let got = store
            .get(k)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: {k:?} lost"));
        assert_eq!(&*got, &v[..], "{what}: value of {k:?}");
    }
    let mut seen = HashSet::new();
    for e in store.iter() {
        let e = e.unwrap();
        assert_eq!(
            model.get(&*e.key).map(Vec::as_slice),
            Some(&*e.value),
            "{what}: iter"
        );
        assert!(
            seen.insert(e.key.to_vec()),
            "{what}: iter repeats {:?}",
            e.key
        );
    }
    assert_eq!(seen.len(), model.len(), "{what}: iter count");
}

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

/// Seeded set, replace, get_or_create, remove, get and clear against a HashMap, in
/// 20 KiB shards (so the run splits and compacts), reopened cleanly and from a killed
/// process's image midway.
fn seeded_run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let options = tiny();
    let mut dir = Dir::temporary().unwrap();
    let mut store = open(&dir, &options);
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let pool: Vec<Vec<u8>> = (0..400).map(|_| bytes(&mut rng, 40)).collect();
    const OPS: usize = 3_000;
    for step in 0..OPS {
        let what = format!("seed {seed} step {step}");
        let key = pool[rng.random_range(0..pool.len())].clone();
        match rng.random_range(0..1000) {
            0..400 => {
                let value = bytes(&mut rng, 200);
                let old = store.set(&key, &value).unwrap();
                assert_eq!(
                    old.as_deref(),
                    model.insert(key, value).as_deref(),
                    "{what}"
                );
            }
            400..550 => {
                let old = store.remove(&key).unwrap();
                assert_eq!(old.as_deref(), model.remove(&key).as_deref(), "{what}");
            }
            550..700 => {
                let value = bytes(&mut rng, 200);
                let expected = match (model.get(&key), rng.random_range(0..2)) {
                    (Some(v), 0) => v.clone(),
                    _ => bytes(&mut rng, 3),
                };
                match store.replace(&key, &value, &expected).unwrap() {
                    Replace::Absent => assert!(!model.contains_key(&key), "{what}"),
                    Replace::Replaced(old) => {
                        assert_eq!(&*old, &expected[..], "{what}");
                        model.insert(key, value);
                    }
                    Replace::WrongValue(now) => {
                        assert_eq!(Some(&*now), model.get(&key).map(Vec::as_slice), "{what}");
                        assert_ne!(&*now, &expected[..], "{what}");
                    }
                }
            }
            700..800 => {
                let value = bytes(&mut rng, 200);
                match store.get_or_create(&key, &value).unwrap() {
                    GetOrCreate::Created(v) => {
                        assert_eq!(&*v, &value[..], "{what}");
                        assert!(model.insert(key, value).is_none(), "{what}");
                    }
                    GetOrCreate::Existing(v) => {
                        assert_eq!(Some(&*v), model.get(&key).map(Vec::as_slice), "{what}");
                    }
                }
            }
            800..999 => {
                let got = store.get(&key).unwrap();
                assert_eq!(got.as_deref(), model.get(&key).map(Vec::as_slice), "{what}");
            }
            _ => {
                store.clear().unwrap();
                model.clear();
            }
        }
        assert_eq!(store.len(), model.len() as u64, "{what}: len");
        if step == OPS / 3 {
            drop(store);
            store = open(&dir, &options);
            assert_eq!(
                store.stats().rebuilt_at_open,
                0,
                "{what}: a clean open rebuilt"
            );
            check_all(&store, &model, &format!("{what}, clean reopen"));
        }
        if step == 2 * OPS / 3 {
            let image = killed_image(&dir);
            drop(store);
            dir = image;
            store = open(&dir, &options);
            assert!(
                store.stats().rebuilt_at_open > 0,
                "{what}: rows trusted after a kill"
            );
            check_all(&store, &model, &format!("{what}, reopen after a kill"));
        }
    }
    check_all(&store, &model, &format!("seed {seed}, end"));
    let stats = store.stats();
    assert!(
        stats.splits + stats.compactions > 0,
        "seed {seed}: {stats:?}"
    );
    for k in model.keys() {
        assert!(store.remove(k).unwrap().is_some());
    }
    assert!(store.is_empty());
    assert_eq!(store.iter().count(), 0);
    drop(store);
    assert!(open(&dir, &options).is_empty());
}

#[test]
fn seeded_model_runs_match_a_hashmap() {
    for seed in [1, 2, 0xdead_beef] {
        seeded_run(seed);
    }
    let random = Seeded::new("sharded_store::seeded_model_runs_match_a_hashmap");
    seeded_run(random.seed);
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Tiny shards force hundreds of splits and compactions; iteration then returns each
/// key exactly once, and an iteration resumed from a cookie after further splits and
/// compactions loses and repeats nothing.
#[test]
fn tiny_shards_split_hundreds_of_times_and_iteration_resumes_exactly() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    const N: u64 = 20_000;
    for i in 0..N {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    // Overwrites make dead records: compactions.
    for round in 1..=2 {
        for i in 0..N {
            store.set(&key(i), &value(i, round)).unwrap();
        }
    }
    let stats = store.stats();
    assert!(stats.splits >= 100, "{stats:?}");
    assert!(stats.compactions > 0, "{stats:?}");
    assert_eq!(stats.entries, N);
    let mut seen = HashSet::new();
    for e in store.iter() {
        assert!(seen.insert(e.unwrap().key.to_vec()));
    }
    assert_eq!(seen.len() as u64, N);

    // Half an iteration, then more keys (more splits) and overwrites (compactions),
    // then the rest from the cookie.
    let mut first = HashSet::new();
    let mut cookie = 0;
    for e in store.iter().take(N as usize / 2) {
        let e = e.unwrap();
        first.insert(e.key.to_vec());
        cookie = e.cookie;
    }
    let splits = store.stats().splits;
    for i in N..2 * N {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    for i in (0..N).step_by(2) {
        store.set(&key(i), &value(i, 2)).unwrap();
    }
    assert!(store.stats().splits > splits + 50);
    let mut rest = HashSet::new();
    for e in store.iter_from(cookie) {
        let k = e.unwrap().key.to_vec();
        assert!(
            !first.contains(&k),
            "a key returned before came again: {k:?}"
        );
        assert!(rest.insert(k));
    }
    for i in 0..N {
        let k = key(i);
        assert!(
            first.contains(&k) || rest.contains(&k),
            "key {i} was missed"
        );
    }
    drop(store);
    let store = open(&dir, &tiny());
    assert_eq!(store.stats().rebuilt_at_open, 0);
    assert_eq!(store.len(), 2 * N);
    assert_eq!(&*store.get(&key(4)).unwrap().unwrap(), &value(4, 2)[..]);
    assert_eq!(&*store.get(&key(5)).unwrap().unwrap(), &value(5, 2)[..]);
}

/// Handles stay valid across overwrites, splits, compactions, clear and the store's
/// drop.
#[test]
fn handles_survive_splits_compactions_and_clear() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    store.set(b"held", b"first").unwrap();
    let held = store.get(b"held").unwrap().unwrap();
    for i in 0..3_000 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    let old = store.set(b"held", b"second").unwrap().unwrap();
    for round in 1..=3 {
        for i in 0..3_000 {
            store.set(&key(i), &value(i, round)).unwrap();
        }
    }
    assert!(store.stats().splits > 0 && store.stats().compactions > 0);
    store.clear().unwrap();
    assert!(store.is_empty());
    assert_eq!(&*held, b"first");
    assert_eq!(&*old, b"first");
    drop(store);
    assert_eq!(&*held, b"first");
    drop(held);
    drop(old);
    let store = open(&dir, &tiny());
    assert!(store.is_empty());
    // Only the shards of the map are left.
    let shards = std::fs::read_dir(dir.path().join("kv"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('s')
        })
        .count();
    assert_eq!(
        shards as u64,
        store.stats().shards + 1,
        "shards and the state"
    );
}

/// The shards of a split that a crash cut short (made, filled, never committed), and a
/// shard that a committed split replaced, planted before open: the open is clean, every
/// key is there, and none of them is left.
#[test]
fn interrupted_split_leftovers_are_removed_at_open() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    for i in 0..2_000 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    let shards = store.stats().shards;
    assert!(shards > 2);
    drop(store);
    let root = dir.path().join("kv");
    let live: Vec<u64> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix('s')?.parse().ok()
        })
        .collect();
    let highest = *live.iter().max().unwrap();
    // Copies of a live shard under incarnations below the highest live one that the map
    // does not name (those of shards its splits replaced: leftovers of ours), and one far
    // past any reserved (not ours: left alone).
    let source = root.join(format!("s{}", live[0]));
    let planted: Vec<_> = (0..highest)
        .filter(|n| !live.contains(n))
        .take(3)
        .map(|n| root.join(format!("s{n}")))
        .collect();
    assert_eq!(planted.len(), 3);
    for p in &planted {
        copy_dir(&source, p);
    }
    let next_far = root.join("s999999999");
    copy_dir(&source, &next_far);
    let store = open(&dir, &tiny());
    assert_eq!(store.stats().rebuilt_at_open, 0);
    assert_eq!(store.stats().shards, shards);
    assert_eq!(store.len(), 2_000);
    for i in 0..2_000 {
        assert_eq!(&*store.get(&key(i)).unwrap().unwrap(), &value(i, 0)[..]);
    }
    for p in &planted {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(
        next_far.exists(),
        "a directory that is not ours was removed"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn keys_and_values_over_their_limits_are_refused_and_never_stored() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &ShardedOptions::default());
    let long = vec![7u8; SHARDED_KEY_LEN_BYTES_MAX];
    store.set(&long, b"v").unwrap();
    assert_eq!(&*store.get(&long).unwrap().unwrap(), b"v");
    let too_long = vec![7u8; SHARDED_KEY_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.set(&too_long, b"v"),
        Err(Error::LimitExceeded { .. })
    ));
    let huge = vec![0u8; SHARDED_VALUE_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.set(b"k", &huge),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.get_or_create(b"k", &huge),
        Err(Error::LimitExceeded { .. })
    ));
    assert_eq!(store.len(), 1);
    assert!(store.get(b"k").unwrap().is_none());
}

/// Removing most keys leaves small shards; merging them halves the shard count at
/// least, and every key is still there, also after a reopen.
#[test]
fn small_shards_merge_back() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    for i in 0..5_000 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    let before = store.stats().shards;
    for i in 0..5_000 {
        if i % 10 != 0 {
            store.remove(&key(i)).unwrap();
        }
    }
    let merges = store.merge_small_shards().unwrap();
    let after = store.stats().shards;
    assert!(
        merges > 0 && after * 2 <= before,
        "{before} -> {after} ({merges} merges)"
    );
    let check = |store: &ShardedStore| {
        assert_eq!(store.len(), 500);
        for i in (0..5_000).step_by(10) {
            assert_eq!(&*store.get(&key(i)).unwrap().unwrap(), &value(i, 0)[..]);
        }
    };
    check(&store);
    drop(store);
    check(&open(&dir, &tiny()));
}

/// Eight threads mix get, set and remove on their own keys of one store (small shards,
/// so splits and compactions run among them), each checked against its own model.
#[test]
fn eight_threads_match_their_models() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    let seeded = Seeded::new("sharded_store::eight_threads_match_their_models");
    let base = seeded.seed;
    let models: Vec<HashMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(base ^ t);
                    let mut model = HashMap::new();
                    for step in 0..3_000u64 {
                        let k = format!("t{t}-{}", rng.random_range(0..500)).into_bytes();
                        match rng.random_range(0..10) {
                            0..5 => {
                                let v = value(step, t);
                                let old = store.set(&k, &v).unwrap();
                                assert_eq!(old.as_deref(), model.insert(k, v).as_deref());
                            }
                            5..7 => {
                                let old = store.remove(&k).unwrap();
                                assert_eq!(old.as_deref(), model.remove(&k).as_deref());
                            }
                            _ => {
                                let got = store.get(&k).unwrap();
                                assert_eq!(got.as_deref(), model.get(&k).map(Vec::as_slice));
                            }
                        }
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: HashMap<_, _> = models.into_iter().flatten().collect();
    check_all(&store, &all, "after the threads");
    assert!(store.stats().splits > 0);
    drop(store);
    check_all(&open(&dir, &tiny()), &all, "reopened");
}

/// Keys present throughout are found by every concurrent read while other keys of their
/// rows come and go, each row's filter being rebuilt many times (every 64 removals from
/// it); removed keys read as absent, and the removals leave no false claims behind that a
/// get could act on.
#[test]
fn reads_never_miss_a_key_while_its_rows_churn() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &ShardedOptions::default());
    const STABLE: u64 = 3_000;
    const CHURN: u64 = 3_000;
    const CYCLES: u64 = 10;
    for i in 0..STABLE {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (store, done, reads) = (&store, &done, &reads);
            s.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let k = i % STABLE;
                    let got = store.get(&key(k)).unwrap();
                    assert_eq!(got.as_deref(), Some(&value(k, 0)[..]), "stable key {k}");
                    let c = STABLE + i % CHURN;
                    if let Some(v) = store.get(&key(c)).unwrap() {
                        assert!(
                            v.starts_with(format!("value-{c}-").as_bytes()),
                            "churn key {c}"
                        );
                    }
                    i += 7;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for round in 1..=CYCLES {
            for i in STABLE..STABLE + CHURN {
                store.set(&key(i), &value(i, round)).unwrap();
            }
            for i in STABLE..STABLE + CHURN {
                assert!(store.remove(&key(i)).unwrap().is_some());
            }
        }
        done.store(true, Ordering::Release);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    for i in 0..STABLE {
        assert_eq!(
            store.get(&key(i)).unwrap().as_deref(),
            Some(&value(i, 0)[..])
        );
    }
    for i in STABLE..STABLE + CHURN {
        assert!(store.get(&key(i)).unwrap().is_none(), "removed key {i}");
        assert!(!store.contains(&key(i)).unwrap(), "removed key {i}");
    }
    assert_eq!(store.len(), STABLE);
}

/// A store created with `expected_keys` starts with enough shards and does not split
/// while it is loaded with them.
#[test]
fn expected_keys_pre_split() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions {
        expected_keys: 100_000,
        ..ShardedOptions::default()
    };
    let store = open(&dir, &options);
    let shards = store.stats().shards;
    assert!(shards >= 8, "{shards}");
    for i in 0..20_000 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    assert_eq!(store.stats().splits, 0);
    assert_eq!(store.stats().shards, shards);
}

/// Flushes of shard logs under `root`, as the fault hooks see them.
fn watch_log_flushes(root: &std::path::Path, fail: Arc<AtomicBool>) -> (HookGuard, Arc<AtomicU64>) {
    let root = root.to_path_buf();
    let count = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&count);
    let guard = faults::install(move |flush| {
        let path = flush.path();
        let log = path.starts_with(&root)
            && path.components().any(|c| c.as_os_str() == "data")
            && matches!(flush, Flush::Range { .. });
        if !log {
            return None;
        }
        seen.fetch_add(1, Ordering::SeqCst);
        fail.load(Ordering::SeqCst)
            .then(|| std::io::Error::from_raw_os_error(5))
    });
    (guard, count)
}

type StoreOp = Box<dyn Fn(&ShardedStore)>;

/// With `sync_each_write`, every write and every list and queue operation flushes its
/// shard's log before it returns; without it, none does.
#[test]
fn durable_writes_flush_their_record_before_returning() {
    for durable in [false, true] {
        let dir = Dir::temporary().unwrap();
        let options = ShardedOptions {
            sync_each_write: durable,
            ..ShardedOptions::default()
        };
        let store = open(&dir, &options);
        store.set(b"warm", b"up").unwrap();
        let (_hook, flushes) = watch_log_flushes(dir.path(), Arc::new(AtomicBool::new(false)));
        let ops: Vec<StoreOp> = vec![
            Box::new(|s| drop(s.set(b"k", b"v").unwrap())),
            Box::new(|s| drop(s.set(b"k", b"w").unwrap())),
            Box::new(|s| drop(s.replace(b"k", b"x", b"w").unwrap())),
            Box::new(|s| drop(s.get_or_create(b"new", b"1").unwrap())),
            Box::new(|s| drop(s.remove(b"k").unwrap())),
            Box::new(|s| drop(s.set_in_list(b"l", b"a", b"1").unwrap())),
            Box::new(|s| drop(s.pop_list_head(b"l").unwrap())),
            Box::new(|s| {
                s.push_to_queue_tail(b"q", b"1").unwrap();
            }),
            Box::new(|s| drop(s.pop_queue_tail(b"q").unwrap())),
        ];
        for (i, op) in ops.iter().enumerate() {
            let before = flushes.load(Ordering::SeqCst);
            op(&store);
            let made = flushes.load(Ordering::SeqCst) - before;
            if durable {
                assert!(
                    made >= 1,
                    "durable op {i} returned before a flush of its log"
                );
            } else {
                assert_eq!(made, 0, "op {i} flushed without sync_each_write");
            }
        }
        // Reads and writes that change nothing flush nothing.
        let before = flushes.load(Ordering::SeqCst);
        store.get(b"new").unwrap();
        store.remove(b"absent").unwrap();
        store.get_or_create(b"new", b"2").unwrap();
        store.list_len(b"l").unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), before);
        assert_eq!(store.stats().flushes > 0, durable);
    }
}

/// Durable writers on several threads share flushes (each waits for at most one that
/// covers its record), and every write is there after a reopen.
#[test]
fn concurrent_durable_writers_hold_every_write() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions {
        sync_each_write: true,
        ..ShardedOptions::default()
    };
    let store = open(&dir, &options);
    const THREADS: u64 = 4;
    const EACH: u64 = 200;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for i in 0..EACH {
                    store
                        .set(format!("{t}-{i}").as_bytes(), &i.to_le_bytes())
                        .unwrap();
                }
            });
        }
    });
    let flushes = store.stats().flushes;
    assert!(
        (1..=THREADS * EACH).contains(&flushes),
        "{flushes} flushes for {} writes",
        THREADS * EACH
    );
    println!(
        "{} durable writes on {THREADS} threads: {flushes} flushes",
        THREADS * EACH
    );
    drop(store);
    let store = open(&dir, &options);
    for t in 0..THREADS {
        for i in 0..EACH {
            assert_eq!(
                store.get(format!("{t}-{i}").as_bytes()).unwrap().as_deref(),
                Some(&i.to_le_bytes()[..])
            );
        }
    }
}

/// A durable write whose flush fails says it is applied, is visible, and leaves the store
/// refusing writes; reopened, the store holds it or not, and everything before it.
#[test]
fn a_durable_write_whose_flush_fails_is_applied_and_refuses_later_writes() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions {
        sync_each_write: true,
        ..ShardedOptions::default()
    };
    {
        let store = open(&dir, &options);
        store.set(b"a", b"1").unwrap();
        let fail = Arc::new(AtomicBool::new(true));
        let (_hook, _) = watch_log_flushes(dir.path(), Arc::clone(&fail));
        let err = store.set(b"b", b"2").unwrap_err();
        assert!(
            matches!(&err, Error::Io { op, .. } if op.contains("applied")),
            "{err}"
        );
        fail.store(false, Ordering::SeqCst);
        assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(matches!(store.set(b"c", b"3"), Err(Error::Poisoned { .. })));
        assert!(matches!(
            store.push_to_queue_tail(b"q", b"3"),
            Err(Error::Poisoned { .. })
        ));
        assert!(store.get(b"c").unwrap().is_none());
    }
    let store = open(&dir, &options);
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    let b = store.get(b"b").unwrap();
    assert!(b.as_deref().is_none_or(|v| v == b"2"), "{b:?}");
    store.set(b"d", b"4").unwrap();
}
