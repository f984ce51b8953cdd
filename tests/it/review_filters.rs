//! A review of the ShardedStore's row filters (d9f14e3) through the public API: a filter
//! must never say "absent" for a key its row holds. Each probe checks, against a model,
//! that present keys are found by get and contains, that writes find the existing entry
//! (set returns the old value, get_or_create says Existing, len and iter count one entry
//! a key), and that removed keys stay removed: while rows churn past the 64 removals
//! that rebuild a row's filter, beside concurrent readers and writers, beside splits,
//! compactions, merges and clears, through list and queue batches, and across clean
//! and killed reopens.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use accretion::{Dir, GetOrCreate, Replace, ShardedOptions, ShardedStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::killed_image;

type Model = HashMap<Vec<u8>, Vec<u8>>;

/// Sets its flag when dropped: the helper threads of a scope stop even when the scope's
/// body panics (a failed assertion would otherwise leave the scope waiting forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Shards of 20 KiB: they split and compact all the time.
fn tiny() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 20 << 10,
        ..ShardedOptions::default()
    }
}

/// One shard for the whole test (64 MiB): every key shares its 64 rows, so each row
/// sees many removals and its filter is rebuilt many times.
fn one_shard() -> ShardedOptions {
    ShardedOptions::default()
}

fn open(dir: &Dir, options: &ShardedOptions) -> ShardedStore {
    ShardedStore::open(dir, "kv", options.clone()).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("fkey-{i:07}").into_bytes()
}

fn val(i: u64, round: u64) -> Vec<u8> {
    format!("fv-{i}-{round}-{}", "q".repeat((i % 23) as usize)).into_bytes()
}

fn seed(test: &str) -> u64 {
    let s = std::env::var("REVIEW_FILTERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {s} (REVIEW_FILTERS_SEED)");
    s
}

/// Every entry through `iter`, checked for repeats and against `len`.
fn contents(store: &ShardedStore, what: &str) -> Model {
    let mut out = HashMap::new();
    for e in store.iter() {
        let e = e.unwrap();
        assert!(
            out.insert(e.key.to_vec(), e.value.to_vec()).is_none(),
            "{what}: iter repeats {:?}",
            String::from_utf8_lossy(&e.key)
        );
    }
    assert_eq!(out.len() as u64, store.len(), "{what}: iter against len");
    out
}

/// The store holds exactly `model`: every key found with its value, `len` and `iter`
/// agree, and `absent` keys read as absent.
fn check(store: &ShardedStore, model: &Model, absent: &[Vec<u8>], what: &str) {
    for (k, v) in model {
        let got = store.get(k).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&v[..]),
            "{what}: get {:?}",
            String::from_utf8_lossy(k)
        );
        assert!(store.contains(k).unwrap(), "{what}: contains");
    }
    for k in absent {
        assert!(
            !model.contains_key(k) && store.get(k).unwrap().is_none(),
            "{what}: {:?} should be absent",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(store.len(), model.len() as u64, "{what}: len");
    assert!(contents(store, what) == *model, "{what}: iter differs");
}

/// Random writes of every kind against a model; each write's answer is checked (a
/// write that missed the existing entry answers "absent" and makes a second one).
fn churn(
    store: &ShardedStore,
    model: &mut Model,
    rng: &mut StdRng,
    keys: u64,
    ops: u64,
    round: u64,
) {
    for n in 0..ops {
        let i = rng.random_range(0..keys);
        let k = key(i);
        let v = val(i, round * 1_000_000 + n);
        match rng.random_range(0..10) {
            0..=2 => {
                let old = store.set(&k, &v).unwrap();
                assert_eq!(
                    old.as_deref(),
                    model.get(&k).map(Vec::as_slice),
                    "set {i} (op {n})"
                );
                model.insert(k, v);
            }
            3..=6 => {
                let old = store.remove(&k).unwrap();
                assert_eq!(
                    old.as_deref(),
                    model.get(&k).map(Vec::as_slice),
                    "remove {i} (op {n})"
                );
                model.remove(&k);
                assert!(store.get(&k).unwrap().is_none(), "removed {i} reads back");
            }
            7 => match store.get_or_create(&k, &v).unwrap() {
                GetOrCreate::Created(new) => {
                    assert!(
                        !model.contains_key(&k),
                        "get_or_create {i} created a duplicate"
                    );
                    assert_eq!(&*new, &v[..]);
                    model.insert(k, v);
                }
                GetOrCreate::Existing(old) => {
                    assert_eq!(Some(&*old), model.get(&k).map(Vec::as_slice), "goc {i}");
                }
            },
            8 => {
                let expected = model.get(&k).cloned().unwrap_or_else(|| b"none".to_vec());
                match store.replace(&k, &v, &expected).unwrap() {
                    Replace::Replaced(old) => {
                        assert_eq!(&*old, &expected[..]);
                        model.insert(k, v);
                    }
                    Replace::Absent => assert!(!model.contains_key(&k), "replace {i}: absent"),
                    Replace::WrongValue(_) => panic!("replace {i}: wrong value"),
                }
            }
            _ => {
                let got = store.get(&k).unwrap();
                assert_eq!(got.as_deref(), model.get(&k).map(Vec::as_slice), "get {i}");
            }
        }
    }
}

/// One shard, a few keys a row, each removed and put back hundreds of times: every row's
/// filter is rebuilt many times, and each write and read agrees with the model.
#[test]
fn remove_and_reinsert_churn_in_one_shard_past_many_row_rebuilds() {
    let s = seed("remove_and_reinsert_churn_in_one_shard_past_many_row_rebuilds");
    let mut rng = StdRng::seed_from_u64(s);
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &one_shard());
    let mut model = Model::new();
    // 400 keys: about 6 a row; 30,000 removals and more are about 470 a row.
    const KEYS: u64 = 400;
    let absent: Vec<Vec<u8>> = (KEYS..KEYS + 200).map(key).collect();
    for round in 0..8 {
        churn(&store, &mut model, &mut rng, KEYS, 10_000, round);
        check(&store, &model, &absent, &format!("round {round}"));
    }
    // Strict cycles: every key removed, then every key put back, 40 times (each row
    // loses about six keys a cycle: its filter is rebuilt every ten cycles or so).
    for cycle in 0..40u64 {
        for i in 0..KEYS {
            let k = key(i);
            let old = store.remove(&k).unwrap();
            assert_eq!(
                old.as_deref(),
                model.get(&k).map(Vec::as_slice),
                "cycle {cycle}"
            );
            model.remove(&k);
        }
        assert_eq!(store.len(), 0, "cycle {cycle}: emptied");
        for i in 0..KEYS {
            let v = val(i, 100 + cycle);
            assert!(
                store.set(&key(i), &v).unwrap().is_none(),
                "cycle {cycle}: {i}"
            );
            model.insert(key(i), v);
        }
        for i in 0..KEYS {
            let v = val(i, 200 + cycle);
            let old = store.set(&key(i), &v).unwrap();
            assert_eq!(
                old.as_deref(),
                model.get(&key(i)).map(Vec::as_slice),
                "overwrite {i}"
            );
            model.insert(key(i), v);
        }
        assert_eq!(store.len(), KEYS, "cycle {cycle}: len");
    }
    check(&store, &model, &absent, "after the cycles");
    assert_eq!(store.stats().shards, 1);
}

/// Keys present throughout are found by every read (get, contains) and every write
/// (get_or_create says Existing, a replace by the same value succeeds) while two writers
/// churn other keys of the same rows, in one shard (each row's filter rebuilt every 64
/// removals from it, under the readers).
#[test]
fn readers_and_writers_never_miss_stable_keys_beside_churn_in_one_shard() {
    let stats = stable_keys_beside_churn(&one_shard(), 10);
    assert_eq!(stats.shards, 1);
}

/// As above in shards that split and compact constantly.
#[test]
fn readers_and_writers_never_miss_stable_keys_beside_churn_in_tiny_shards() {
    let stats = stable_keys_beside_churn(&tiny(), 6);
    assert!(stats.splits > 0 && stats.compactions > 0, "{stats:?}");
}

/// Stable keys read and written by two threads while two others each put all their own
/// keys and remove them again, `cycles` times; returns the store's figures.
fn stable_keys_beside_churn(options: &ShardedOptions, cycles: u64) -> accretion::ShardedStats {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, options);
    const STABLE: u64 = 1_500;
    const CHURN: u64 = 1_000;
    for i in 0..STABLE {
        store.set(&key(i), &val(i, 0)).unwrap();
    }
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let models: Vec<Model> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&done);
        // A reader of stable keys.
        {
            let (store, done, reads) = (&store, &done, &reads);
            s.spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Acquire) {
                    let k = i % STABLE;
                    let got = store.get(&key(k)).unwrap();
                    assert_eq!(got.as_deref(), Some(&val(k, 0)[..]), "stable {k} missed");
                    assert!(store.contains(&key((k * 7 + 3) % STABLE)).unwrap());
                    i += 1;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // A writer that must find stable keys.
        {
            let (store, done) = (&store, &done);
            s.spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Acquire) {
                    let k = (i * 13) % STABLE;
                    match store.get_or_create(&key(k), b"duplicate!").unwrap() {
                        GetOrCreate::Existing(v) => assert_eq!(&*v, &val(k, 0)[..]),
                        GetOrCreate::Created(_) => panic!("stable {k}: get_or_create created"),
                    }
                    let v = val(k, 0);
                    assert!(
                        matches!(
                            store.replace(&key(k), &v, &v).unwrap(),
                            Replace::Replaced(_)
                        ),
                        "stable {k}: replace"
                    );
                    i += 1;
                }
            });
        }
        // Two churners of their own keys.
        let churners: Vec<_> = (0..2u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(0xF117 + t);
                    let mut model = Model::new();
                    let base = STABLE + t * CHURN;
                    for cycle in 0..cycles {
                        for i in base..base + CHURN {
                            let k = key(i);
                            let v = val(i, cycle + 1);
                            let old = store.set(&k, &v).unwrap();
                            assert_eq!(old.as_deref(), model.get(&k).map(Vec::as_slice), "set {i}");
                            model.insert(k, v);
                        }
                        // Most removed again, in a random order; a few stay.
                        let mut order: Vec<u64> = (base..base + CHURN).collect();
                        for j in (1..order.len()).rev() {
                            order.swap(j, rng.random_range(0..=j));
                        }
                        for &i in &order[..CHURN as usize * 9 / 10] {
                            let k = key(i);
                            let old = store.remove(&k).unwrap();
                            assert_eq!(old.as_deref(), model.get(&k).map(Vec::as_slice), "rm {i}");
                            model.remove(&k);
                        }
                    }
                    model
                })
            })
            .collect();
        churners.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    let mut model: Model = (0..STABLE).map(|i| (key(i), val(i, 0))).collect();
    for m in models {
        model.extend(m);
    }
    let absent: Vec<Vec<u8>> = (STABLE..STABLE + 2 * CHURN)
        .map(key)
        .filter(|k| !model.contains_key(k))
        .collect();
    check(&store, &model, &absent, "after the threads");
    store.stats()
}

/// Two threads race get_or_create on the same keys, then the keys are all removed, round
/// after round in one shard (rows rebuilt along the way): each key has one creator a
/// round, one entry, and reads as absent once removed.
#[test]
fn get_or_create_races_make_one_entry_across_row_rebuilds() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &one_shard());
    const KEYS: u64 = 300;
    for round in 0..60u64 {
        let created: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2u64)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        let mut created = 0;
                        // The two threads walk the keys from opposite ends.
                        for j in 0..KEYS {
                            let i = if t == 0 { j } else { KEYS - 1 - j };
                            let mine = format!("t{t}-r{round}-{i}").into_bytes();
                            match store.get_or_create(&key(i), &mine).unwrap() {
                                GetOrCreate::Created(v) => {
                                    assert_eq!(&*v, &mine[..]);
                                    created += 1;
                                }
                                GetOrCreate::Existing(v) => {
                                    let other = format!("t{}-r{round}-{i}", 1 - t);
                                    assert_eq!(&*v, other.as_bytes(), "round {round}: {i}");
                                }
                            }
                        }
                        created
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(created.iter().sum::<u64>(), KEYS, "round {round}: creators");
        assert_eq!(store.len(), KEYS, "round {round}: len");
        let mut seen = HashSet::new();
        for e in store.iter() {
            let e = e.unwrap();
            assert!(seen.insert(e.key.to_vec()), "round {round}: iter repeats");
        }
        assert_eq!(seen.len() as u64, KEYS, "round {round}: iter");
        for i in 0..KEYS {
            assert!(store.remove(&key(i)).unwrap().is_some(), "{round}: rm {i}");
            assert!(store.get(&key(i)).unwrap().is_none(), "{round}: {i} back");
        }
        assert_eq!(store.len(), 0, "round {round}: emptied");
    }
}

/// Stable keys read throughout while the shards around them split (churn added),
/// compact (churn removed) and merge back, cycle after cycle; then reads during
/// clears see each key with its value or absent, and nothing once cleared.
#[test]
fn readers_during_splits_compactions_merges_and_clears() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir, &tiny());
    const STABLE: u64 = 300;
    const CHURN: u64 = 3_000;
    for i in 0..STABLE {
        store.set(&key(i), &val(i, 0)).unwrap();
    }
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&done);
        let (store_r, done_r, reads_r) = (&store, &done, &reads);
        s.spawn(move || {
            let mut i = 0u64;
            while !done_r.load(Ordering::Acquire) {
                let k = i % STABLE;
                assert_eq!(
                    store_r.get(&key(k)).unwrap().as_deref(),
                    Some(&val(k, 0)[..]),
                    "stable {k} missed"
                );
                i += 1;
                reads_r.fetch_add(1, Ordering::Relaxed);
            }
        });
        for cycle in 0..4u64 {
            for i in STABLE..STABLE + CHURN {
                store.set(&key(i), &val(i, cycle)).unwrap();
            }
            for i in STABLE..STABLE + CHURN {
                assert!(store.remove(&key(i)).unwrap().is_some());
            }
            store.compact().unwrap();
            store.merge_small_shards().unwrap();
            assert_eq!(store.len(), STABLE, "cycle {cycle}");
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    let stats = store.stats();
    assert!(
        stats.splits > 0 && stats.compactions > 0 && stats.merges > 0,
        "{stats:?}"
    );
    let model: Model = (0..STABLE).map(|i| (key(i), val(i, 0))).collect();
    let absent: Vec<Vec<u8>> = (STABLE..STABLE + 100).map(key).collect();
    check(&store, &model, &absent, "after the cycles");

    // Clears beside a reader: a key has its value or is absent; after each clear and
    // refill, every key is there once.
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&done);
        let (store_r, done_r) = (&store, &done);
        s.spawn(move || {
            let mut i = 0u64;
            while !done_r.load(Ordering::Acquire) {
                let k = i % STABLE;
                if let Some(v) = store_r.get(&key(k)).unwrap() {
                    assert!(v.starts_with(format!("fv-{k}-").as_bytes()), "{k}");
                }
                i += 1;
            }
        });
        for round in 1..=5u64 {
            store.clear().unwrap();
            assert_eq!(store.len(), 0);
            for i in 0..STABLE {
                assert!(store.get(&key(i)).unwrap().is_none(), "cleared {i}");
            }
            for i in 0..STABLE {
                assert!(store.set(&key(i), &val(i, round)).unwrap().is_none(), "{i}");
            }
            for i in 0..STABLE / 2 {
                assert!(store.remove(&key(i)).unwrap().is_some());
                assert!(store.set(&key(i), &val(i, round)).unwrap().is_none());
            }
        }
    });
    let model: Model = (0..STABLE).map(|i| (key(i), val(i, 5))).collect();
    check(&store, &model, &[], "after the clears");
}

/// Churn, then a killed image (rows rebuilt at open), more churn, a clean close (rows
/// trusted at open), more churn past the rebuild of every row, a killed image of a
/// store opened clean: after each reopen every key is found once, writes find them,
/// and removed keys stay removed.
#[test]
fn reopens_clean_and_killed_after_churn_keep_every_key_once() {
    let s = seed("reopens_clean_and_killed_after_churn_keep_every_key_once");
    let mut rng = StdRng::seed_from_u64(s);
    const KEYS: u64 = 500;
    let absent = |model: &Model| -> Vec<Vec<u8>> {
        (0..KEYS + 50)
            .map(key)
            .filter(|k| !model.contains_key(k))
            .collect()
    };
    for options in [one_shard(), tiny()] {
        let dir = Dir::temporary().unwrap();
        let mut model = Model::new();
        let store = open(&dir, &options);
        churn(&store, &mut model, &mut rng, KEYS, 8_000, 1);
        // Killed: its shards are rebuilt.
        let image = killed_image(&dir);
        drop(store);
        let store = open(&image, &options);
        assert!(store.stats().rebuilt_at_open > 0);
        check(&store, &model, &absent(&model), "killed image");
        churn(&store, &mut model, &mut rng, KEYS, 8_000, 2);
        check(
            &store,
            &model,
            &absent(&model),
            "churn after the killed image",
        );
        drop(store);
        // Clean: its shards are trusted.
        let store = open(&image, &options);
        assert_eq!(store.stats().rebuilt_at_open, 0);
        check(&store, &model, &absent(&model), "clean reopen");
        // Writes right after the open find every key (their filters were built at open).
        for (k, v) in &model {
            match store.get_or_create(k, b"dup").unwrap() {
                GetOrCreate::Existing(x) => assert_eq!(*x, v[..], "after a clean reopen"),
                GetOrCreate::Created(_) => panic!("get_or_create after a clean reopen created"),
            }
        }
        churn(&store, &mut model, &mut rng, KEYS, 20_000, 3);
        check(
            &store,
            &model,
            &absent(&model),
            "churn after the clean reopen",
        );
        // Killed after a session that began clean.
        let image2 = killed_image(&image);
        drop(store);
        let store = open(&image2, &options);
        check(
            &store,
            &model,
            &absent(&model),
            "killed image of a clean-opened store",
        );
        churn(&store, &mut model, &mut rng, KEYS, 8_000, 4);
        check(
            &store,
            &model,
            &absent(&model),
            "churn after the second killed image",
        );
        // A clean close right after a compaction and a merge.
        store.compact().unwrap();
        store.merge_small_shards().unwrap();
        store.close().unwrap();
        let store = open(&image2, &options);
        check(
            &store,
            &model,
            &absent(&model),
            "reopen after maintenance and close",
        );
    }
}

/// A list model: items in order, head first.
type ListModel = Vec<(Vec<u8>, Vec<u8>)>;

fn item(i: u64) -> Vec<u8> {
    format!("item-{i:05}").into_bytes()
}

/// Lists and queues churned through their batch operations (set, promote, remove, pop,
/// push), beside key-value churn in tiny shards, against models; then a killed image and
/// a clean reopen of the same.
#[test]
fn list_and_queue_batches_churn_against_a_model() {
    let s = seed("list_and_queue_batches_churn_against_a_model");
    let mut rng = StdRng::seed_from_u64(s);
    let dir = Dir::temporary().unwrap();
    let options = tiny();
    let store = open(&dir, &options);
    let lists: Vec<Vec<u8>> = (0..3).map(|l| format!("list-{l}").into_bytes()).collect();
    let queues: Vec<Vec<u8>> = (0..2).map(|q| format!("queue-{q}").into_bytes()).collect();
    let mut lm: Vec<ListModel> = vec![Vec::new(); lists.len()];
    let mut qm: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); queues.len()];
    let mut kv = Model::new();
    const ITEMS: u64 = 150;

    let check_all = |store: &ShardedStore,
                     lm: &[ListModel],
                     qm: &[VecDeque<Vec<u8>>],
                     kv: &Model,
                     what: &str| {
        for (l, m) in lists.iter().zip(lm) {
            assert_eq!(
                store.list_len(l).unwrap(),
                m.len() as u64,
                "{what}: list_len"
            );
            let got: ListModel = store
                .iter_list(l)
                .map(|it| {
                    let it = it.unwrap();
                    (it.key.to_vec(), it.value.to_vec())
                })
                .collect();
            assert!(got == *m, "{what}: iter_list differs");
            for i in 0..ITEMS {
                let want = m
                    .iter()
                    .find(|(k, _)| *k == item(i))
                    .map(|(_, v)| v.as_slice());
                assert_eq!(
                    store.get_from_list(l, &item(i)).unwrap().as_deref(),
                    want,
                    "{what}: get_from_list {i}"
                );
            }
        }
        for (q, m) in queues.iter().zip(qm) {
            assert_eq!(
                store.queue_len(q).unwrap(),
                m.len() as u64,
                "{what}: queue_len"
            );
            let got: Vec<Vec<u8>> = store
                .iter_queue(q)
                .map(|e| e.unwrap().value.to_vec())
                .collect();
            assert!(got.iter().eq(m.iter()), "{what}: iter_queue differs");
        }
        check(store, kv, &[], what);
    };

    for step in 0..9_000u64 {
        let l = rng.random_range(0..lists.len());
        let i = rng.random_range(0..ITEMS);
        let v = format!("lv-{step}").into_bytes();
        let m = &mut lm[l];
        let at = m.iter().position(|(k, _)| *k == item(i));
        match rng.random_range(0..12) {
            0..=2 => {
                let old = store.set_in_list(&lists[l], &item(i), &v).unwrap();
                assert_eq!(
                    old.as_deref(),
                    at.map(|a| m[a].1.as_slice()),
                    "set_in_list {step}"
                );
                match at {
                    Some(a) => m[a].1 = v,
                    None => m.push((item(i), v)),
                }
            }
            3..=4 => {
                let old = store
                    .set_in_list_promoting(&lists[l], &item(i), &v)
                    .unwrap();
                assert_eq!(
                    old.as_deref(),
                    at.map(|a| m[a].1.as_slice()),
                    "promoting {step}"
                );
                if let Some(a) = at {
                    m.remove(a);
                }
                m.push((item(i), v));
            }
            5..=6 => {
                let old = store.remove_from_list(&lists[l], &item(i)).unwrap();
                assert_eq!(
                    old.as_deref(),
                    at.map(|a| m[a].1.as_slice()),
                    "remove {step}"
                );
                if let Some(a) = at {
                    m.remove(a);
                }
            }
            7 => {
                let got = store.pop_list_head(&lists[l]).unwrap();
                let want = (!m.is_empty()).then(|| m.remove(0));
                assert_eq!(
                    got.map(|it| (it.key.to_vec(), it.value.to_vec())),
                    want,
                    "pop_list_head {step}"
                );
            }
            8 => {
                let q = l % queues.len();
                store.push_to_queue_tail(&queues[q], &v).unwrap();
                qm[q].push_back(v);
            }
            9 => {
                let q = l % queues.len();
                let got = store.pop_queue_head(&queues[q]).unwrap();
                assert_eq!(
                    got.map(|e| e.value.to_vec()),
                    qm[q].pop_front(),
                    "pop_queue_head {step}"
                );
            }
            _ => {
                // Key-value churn that splits and compacts the shards around the lists.
                let k = key(i + 10_000 * (l as u64));
                if rng.random_bool(0.6) {
                    let old = store.set(&k, &v).unwrap();
                    assert_eq!(
                        old.as_deref(),
                        kv.get(&k).map(Vec::as_slice),
                        "kv set {step}"
                    );
                    kv.insert(k, v);
                } else {
                    let old = store.remove(&k).unwrap();
                    assert_eq!(
                        old.as_deref(),
                        kv.get(&k).map(Vec::as_slice),
                        "kv rm {step}"
                    );
                    kv.remove(&k);
                }
            }
        }
        if step % 3_000 == 2_999 {
            check_all(&store, &lm, &qm, &kv, &format!("step {step}"));
        }
    }
    assert!(store.stats().splits > 0);
    let image = killed_image(&dir);
    drop(store);
    let store = open(&image, &options);
    check_all(&store, &lm, &qm, &kv, "killed image");
    drop(store);
    let store = open(&image, &options);
    check_all(&store, &lm, &qm, &kv, "clean reopen");
    // Writes after the reopen find every existing item.
    for (l, m) in lists.iter().zip(&lm) {
        for (k, v) in m {
            assert_eq!(
                store.set_in_list(l, k, v).unwrap().as_deref(),
                Some(v.as_slice()),
                "set_in_list after reopen"
            );
        }
    }
    check_all(&store, &lm, &qm, &kv, "rewrites after reopen");
}
