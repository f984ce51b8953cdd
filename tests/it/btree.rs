//! BTreeStore through its public API: against a model (a BTreeMap per tree) over seeded
//! random transactions, aborts, reopens, checkpoints and compactions, with `verify()`
//! after every step; yakvdb's own behaviours; writers on several threads; snapshots that
//! never change while a writer commits and compacts.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use accretion::limits::{BTREE_KEY_LEN_BYTES_MAX, BTREE_VALUE_LEN_BYTES_MAX};
use accretion::{BTreeOptions, BTreeStore, Dir, Error, ReadTxn};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};

use crate::common::Seeded;

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn options() -> BTreeOptions {
    BTreeOptions {
        // Small enough that checkpoints and compactions happen within a test.
        checkpoint_bytes: 256 << 10,
        memory_pages_bytes: 256 << 10,
        compact_min_bytes: 1 << 20,
        ..BTreeOptions::default()
    }
}

fn open(path: &Path) -> (Dir, BTreeStore) {
    let dir = Dir::open(path).unwrap();
    let store = BTreeStore::open(&dir, "db", options()).unwrap();
    (dir, store)
}

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_ratio(1, 50) {
        let len = rng.random_range(100..=BTREE_KEY_LEN_BYTES_MAX);
        let mut k = vec![0u8; len];
        rng.fill_bytes(&mut k);
        return k;
    }
    // A small alphabet, so that keys collide, share prefixes and sort interestingly.
    const ALPHABET: [u8; 5] = [0, 1, b'a', b'b', 0xFF];
    let len = rng.random_range(0..6);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..100) {
        0..=79 => rng.random_range(0..120),
        80..=97 => rng.random_range(900..5000),
        _ => rng.random_range(20_000..200_000),
    };
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

fn random_bound(rng: &mut StdRng) -> Bound<Vec<u8>> {
    match rng.random_range(0..3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(random_key(rng)),
        _ => Bound::Excluded(random_key(rng)),
    }
}

fn in_range(k: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let after_start = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
    };
    let before_end = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
    };
    after_start && before_end
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn collect<'t>(it: impl Iterator<Item = accretion::Result<(&'t [u8], &'t [u8])>>) -> Pairs {
    it.map(|e| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// Checks every tree of a snapshot against the model.
fn check(snapshot: &ReadTxn<'_>, model: &Model, rng: &mut StdRng, step: usize) {
    let mut names: Vec<String> = model.keys().filter(|n| !n.is_empty()).cloned().collect();
    names.sort();
    assert_eq!(snapshot.trees(), names, "step {step}: tree names");
    for (name, m) in model {
        let t = snapshot
            .open_tree(name)
            .unwrap()
            .unwrap_or_else(|| panic!("step {step}: tree {name:?} missing"));
        assert_eq!(
            t.len().unwrap(),
            m.len() as u64,
            "step {step}: {name:?} len"
        );
        let all: Pairs = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            collect(t.iter().unwrap()),
            all,
            "step {step}: {name:?} forward"
        );
        let mut back = collect(t.iter().unwrap().rev());
        back.reverse();
        assert_eq!(back, all, "step {step}: {name:?} backward");
        let as_ref = |e: Option<(&[u8], &[u8])>| e.map(|(k, v)| (k.to_vec(), v.to_vec()));
        let own = |e: Option<(&Vec<u8>, &Vec<u8>)>| e.map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!(
            as_ref(t.first().unwrap()),
            own(m.iter().next()),
            "step {step}: first"
        );
        assert_eq!(
            as_ref(t.last().unwrap()),
            own(m.iter().next_back()),
            "step {step}: last"
        );
        for _ in 0..8 {
            let probe = random_key(rng);
            assert_eq!(
                t.get(&probe).unwrap(),
                m.get(&probe).map(Vec::as_slice),
                "step {step}: get {probe:?}"
            );
            assert_eq!(
                as_ref(t.above(&probe).unwrap()),
                own(m
                    .range::<[u8], _>((Bound::Excluded(&probe[..]), Bound::Unbounded))
                    .next()),
                "step {step}: above {probe:?}"
            );
            assert_eq!(
                as_ref(t.below(&probe).unwrap()),
                own(m
                    .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&probe[..])))
                    .next_back()),
                "step {step}: below {probe:?}"
            );
        }
        let (start, end) = (random_bound(rng), random_bound(rng));
        let want: Pairs = m
            .iter()
            .filter(|(k, _)| in_range(k, &start, &end))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let range = (start.clone(), end.clone());
        assert_eq!(
            collect(t.range(range.clone()).unwrap()),
            want,
            "step {step}: range"
        );
        let mut back = collect(t.range(range.clone()).unwrap().rev());
        back.reverse();
        assert_eq!(back, want, "step {step}: range backward");
        // Both ends at once: they meet in the middle without overlap.
        let mut it = t.range(range).unwrap();
        let (mut front, mut rear) = (Vec::new(), Vec::new());
        loop {
            let from_front = rng.random();
            let e = if from_front {
                it.next()
            } else {
                it.next_back()
            };
            let Some(e) = e else { break };
            let (k, v) = e.unwrap();
            if from_front {
                front.push((k.to_vec(), v.to_vec()));
            } else {
                rear.push((k.to_vec(), v.to_vec()));
            }
        }
        rear.reverse();
        front.extend(rear);
        assert_eq!(front, want, "step {step}: range from both ends");
        let prefix = random_key(rng);
        let want: Pairs = m
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            collect(t.prefix(&prefix).unwrap()),
            want,
            "step {step}: prefix"
        );
    }
}

#[test]
fn btree_matches_a_model_across_commits_aborts_reopens_and_compactions() {
    let mut s = Seeded::new("btree_matches_a_model");
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut store) = open(tmp.path());
    let mut model: Model = BTreeMap::new();
    model.insert(String::new(), BTreeMap::new());
    let tree_names = ["", "", "", "a", "b", "tree-with-a-longer-name"];
    let steps = 250;
    for step in 0..steps {
        let rng = &mut s.rng;
        match rng.random_range(0..100) {
            0..=79 => {
                let mut txn = store.begin_write().unwrap();
                let mut next = model.clone();
                for _ in 0..rng.random_range(1..40) {
                    let name = tree_names[rng.random_range(0..tree_names.len())];
                    match rng.random_range(0..100) {
                        0..=1 if !name.is_empty() => {
                            let existed = txn.delete_tree(name).unwrap();
                            assert_eq!(existed, next.remove(name).is_some());
                            continue;
                        }
                        _ => {}
                    }
                    let m = next.entry(name.to_owned()).or_default();
                    let mut t = txn.open_tree(name).unwrap();
                    match rng.random_range(0..100) {
                        0..=59 => {
                            let (k, v) = (random_key(rng), random_value(rng));
                            let old = t.insert(&k, &v).unwrap();
                            assert_eq!(old, m.insert(k, v), "step {step}: insert's old value");
                        }
                        60..=89 => {
                            let k = if rng.random() && !m.is_empty() {
                                let i = rng.random_range(0..m.len());
                                m.keys().nth(i).unwrap().clone()
                            } else {
                                random_key(rng)
                            };
                            assert_eq!(t.remove(&k).unwrap(), m.remove(&k), "step {step}: remove");
                        }
                        _ => {
                            let (start, end) = (random_bound(rng), random_bound(rng));
                            let doomed: Vec<Vec<u8>> = m
                                .keys()
                                .filter(|k| in_range(k, &start, &end))
                                .cloned()
                                .collect();
                            let n = t.remove_range((start, end)).unwrap();
                            assert_eq!(n, doomed.len() as u64, "step {step}: remove_range");
                            for k in doomed {
                                m.remove(&k);
                            }
                        }
                    }
                    // Reads inside the transaction see its own changes.
                    assert_eq!(t.len().unwrap(), m.len() as u64);
                }
                match rng.random_range(0..10) {
                    0 => txn.abort(),
                    1 => drop(txn),
                    2..=4 => {
                        txn.commit().unwrap();
                        model = next;
                    }
                    _ => {
                        txn.commit_unsynced().unwrap();
                        model = next;
                    }
                }
            }
            80..=87 => {
                drop(store);
                drop(dir);
                (dir, store) = open(tmp.path());
            }
            88..=92 => store.checkpoint().unwrap(),
            93..=96 => store.compact().unwrap(),
            _ => store.sync().unwrap(),
        }
        let report = store
            .verify()
            .unwrap_or_else(|e| panic!("step {step}: verify: {e}"));
        assert_eq!(report.trees, model.len() as u64);
        let snapshot = store.begin_read();
        check(&snapshot, &model, &mut s.rng, step);
    }
    let stats = store.stats();
    assert!(
        stats.commits > 0 && stats.write_amplification > 0.0,
        "{stats:?}"
    );
}

#[test]
fn yakvdb_behaviours_hold() {
    let mut s = Seeded::new("yakvdb_behaviours_hold");
    let tmp = tempfile::tempdir().unwrap();
    let mut sorted = BTreeMap::new();
    {
        let (_dir, store) = open(tmp.path());
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        while sorted.len() < 1000 {
            let len = s.rng.random_range(1..40);
            let mut k = vec![0u8; len];
            s.rng.fill_bytes(&mut k);
            let v = k.repeat(2);
            t.insert(&k, &v).unwrap();
            sorted.insert(k, v);
        }
        txn.commit().unwrap();
    }
    let (dir, store) = open(tmp.path());
    let keys: Vec<Vec<u8>> = sorted.keys().cloned().collect();
    let (first, _) = store.first().unwrap().unwrap();
    let (last, _) = store.last().unwrap().unwrap();
    assert_eq!(&first, keys.first().unwrap());
    assert_eq!(&last, keys.last().unwrap());
    let mut walked = vec![first.clone()];
    while let Some((k, _)) = store.above(walked.last().unwrap()).unwrap() {
        walked.push(k);
    }
    assert_eq!(walked, keys, "above from first walks the keys in order");
    let mut walked = vec![last.clone()];
    while let Some((k, _)) = store.below(walked.last().unwrap()).unwrap() {
        walked.push(k);
    }
    walked.reverse();
    assert_eq!(walked, keys, "below from last walks them in reverse");
    assert_eq!(store.below(&first).unwrap(), None);
    assert_eq!(store.above(&last).unwrap(), None);
    assert!(store.stats().height > 1);

    // An oversized entry is refused and changes nothing.
    let before = store.stats();
    let long_key = vec![7u8; BTREE_KEY_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.insert(&long_key, b"v"),
        Err(Error::LimitExceeded {
            limit: "BTREE_KEY_LEN_BYTES_MAX",
            ..
        })
    ));
    let huge = vec![0u8; BTREE_VALUE_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.insert(b"k", &huge),
        Err(Error::LimitExceeded {
            limit: "BTREE_VALUE_LEN_BYTES_MAX",
            ..
        })
    ));
    drop(huge);
    assert_eq!(store.stats(), before, "a refused entry changes nothing");
    assert_eq!(store.len().unwrap(), 1000);

    // Removing every key leaves one empty leaf.
    let mut order = keys.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, s.rng.random_range(0..=i));
    }
    for chunk in order.chunks(97) {
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        for k in chunk {
            assert_eq!(t.remove(k).unwrap().as_ref(), sorted.get(k));
        }
        txn.commit_unsynced().unwrap();
        store.verify().unwrap();
    }
    assert!(store.is_empty().unwrap());
    let stats = store.stats();
    assert_eq!((stats.height, stats.pages), (1, 1), "{stats:?}");
    assert_eq!(store.first().unwrap(), None);
    store.checkpoint().unwrap();
    drop(store);
    drop(dir);
    let (_dir, store) = open(tmp.path());
    assert!(store.is_empty().unwrap());
    assert_eq!(store.verify().unwrap().pages, 1);
}

#[test]
fn four_writer_threads_with_disjoint_keys_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    let per_thread = 3000u32;
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let store = store.clone();
            scope.spawn(move || {
                for batch in (0..per_thread).collect::<Vec<_>>().chunks(25) {
                    let mut txn = store.begin_write().unwrap();
                    let mut tree = txn.default_tree().unwrap();
                    for &i in batch {
                        let k = format!("{t}-{i:08}");
                        tree.insert(k.as_bytes(), &i.to_le_bytes()).unwrap();
                    }
                    txn.commit_unsynced().unwrap();
                }
            });
        }
    });
    store.verify().unwrap();
    assert_eq!(store.len().unwrap(), 4 * u64::from(per_thread));
    for t in 0..4u32 {
        for i in 0..per_thread {
            let k = format!("{t}-{i:08}");
            assert_eq!(
                store.get(k.as_bytes()).unwrap().as_deref(),
                Some(&i.to_le_bytes()[..])
            );
        }
    }
}

/// A digest of a snapshot's whole default tree.
fn digest(snapshot: &ReadTxn<'_>) -> (u64, u64) {
    let t = snapshot.default_tree().unwrap();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut n = 0;
    for e in t.iter().unwrap() {
        let (k, v) = e.unwrap();
        for b in k.iter().chain(v) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        h = h.rotate_left(7);
        n += 1;
    }
    assert_eq!(n, t.len().unwrap());
    (h, n)
}

#[test]
fn snapshots_never_change_while_a_writer_commits_and_compacts() {
    let mut s = Seeded::new("snapshots_never_change");
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    {
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        for i in 0..5000u32 {
            t.insert(&i.to_be_bytes(), &[1u8; 60]).unwrap();
        }
        txn.commit().unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (store, done) = (store.clone(), Arc::clone(&done));
            scope.spawn(move || {
                let mut checked = 0;
                while !done.load(Ordering::Acquire) || checked == 0 {
                    let snapshot = store.begin_read();
                    let first = digest(&snapshot);
                    for _ in 0..3 {
                        std::thread::yield_now();
                        assert_eq!(digest(&snapshot), first, "a snapshot changed");
                    }
                    checked += 1;
                }
            });
        }
        let seed = s.rng.random::<u64>();
        let (store, done) = (store.clone(), Arc::clone(&done));
        scope.spawn(move || {
            let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed);
            let mut changes = 0;
            while changes < 30_000 {
                let mut txn = store.begin_write().unwrap();
                let mut t = txn.default_tree().unwrap();
                for _ in 0..20 {
                    let k = rng.random_range(0..8000u32).to_be_bytes();
                    if rng.random_ratio(1, 3) {
                        t.remove(&k).unwrap();
                    } else {
                        let v = vec![rng.random::<u8>(); rng.random_range(0..200)];
                        t.insert(&k, &v).unwrap();
                    }
                    changes += 1;
                }
                txn.commit_unsynced().unwrap();
                if changes % 6000 == 0 {
                    store.compact().unwrap();
                }
            }
            done.store(true, Ordering::Release);
        });
    });
    store.verify().unwrap();
    assert!(store.stats().generation >= 4, "{:?}", store.stats());
}

/// Every entry of the default tree, in order.
fn contents(snapshot: &ReadTxn<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tree = snapshot.default_tree().unwrap();
    collect(tree.iter().unwrap())
}

/// One-key commits on a tree of height 3 copy a root and a branch of over a hundred
/// children each time, sharing the children they do not change with the version before
/// (in chunks): every snapshot keeps reading what it read, and the last one, the store
/// after a checkpoint and the store after a reopen all read like the model.
#[test]
fn one_key_commits_on_a_tall_tree_share_unchanged_children_correctly() {
    let mut s = Seeded::new("one_key_commits_on_a_tall_tree");
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let big = BTreeOptions {
        checkpoint_bytes: 64 << 20,
        ..BTreeOptions::default()
    };
    let store = BTreeStore::open(&dir, "db", big.clone()).unwrap();
    let key = |i: u32| (i.wrapping_mul(2_654_435_761)).to_be_bytes().repeat(4);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    {
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        for i in 0..20_000u32 {
            let v = vec![i as u8; 100];
            t.insert(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        txn.commit().unwrap();
    }
    assert!(store.stats().height >= 3, "{:?}", store.stats());
    let mut held = Vec::new();
    for step in 0..6000u32 {
        if step % 1500 == 0 {
            let snapshot = store.begin_read();
            let now: Vec<(Vec<u8>, Vec<u8>)> =
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(contents(&snapshot), now, "step {step}");
            held.push((snapshot, now));
        }
        if step == 3000 {
            store.checkpoint().unwrap();
        }
        let k = key(s.rng.random_range(0..24_000u32));
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        if s.rng.random_ratio(1, 4) {
            assert_eq!(t.remove(&k).unwrap(), model.remove(&k), "step {step}");
        } else {
            let v = vec![step as u8; s.rng.random_range(0..300)];
            assert_eq!(t.insert(&k, &v).unwrap(), model.insert(k, v), "step {step}");
        }
        txn.commit_unsynced().unwrap();
    }
    for (snapshot, then) in &held {
        assert_eq!(&contents(snapshot), then, "a snapshot changed");
    }
    drop(held);
    let now: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
    assert_eq!(contents(&store.begin_read()), now);
    store.verify().unwrap();
    store.checkpoint().unwrap();
    assert_eq!(contents(&store.begin_read()), now);
    drop(store);
    let store = BTreeStore::open(&dir, "db", big).unwrap();
    assert_eq!(contents(&store.begin_read()), now);
    store.verify().unwrap();
}

#[test]
fn out_of_line_values_up_to_megabytes_survive_reopen_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    {
        let (_dir, store) = open(tmp.path());
        store.insert(b"big", &big).unwrap();
        store.insert(b"small", b"s").unwrap();
        store.insert(b"", b"empty key").unwrap();
        store.insert(b"empty value", b"").unwrap();
        store.sync().unwrap();
    }
    let (_dir, store) = open(tmp.path());
    assert_eq!(store.get(b"big").unwrap().unwrap(), big);
    store.compact().unwrap();
    assert_eq!(store.get(b"big").unwrap().unwrap(), big);
    assert_eq!(store.get(b"").unwrap().unwrap(), b"empty key");
    assert_eq!(store.get(b"empty value").unwrap().unwrap(), b"");
    assert_eq!(store.verify().unwrap().out_of_line_values, 1);
    assert_eq!(store.remove(b"big").unwrap().unwrap(), big);
    store.compact().unwrap();
    assert!(store.stats().log_bytes < 1 << 20, "{:?}", store.stats());
}

#[test]
fn a_write_transaction_inside_another_on_one_thread_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    let txn = store.begin_write().unwrap();
    assert!(matches!(store.begin_write(), Err(Error::Reentrant { .. })));
    assert!(matches!(
        store.insert(b"k", b"v"),
        Err(Error::Reentrant { .. })
    ));
    drop(txn);
    store.insert(b"k", b"v").unwrap();
    // The default tree cannot be deleted; named trees can, and are listed.
    let mut txn = store.begin_write().unwrap();
    assert!(matches!(
        txn.delete_tree(""),
        Err(Error::InvalidName { .. })
    ));
    txn.open_tree("x").unwrap();
    assert_eq!(txn.trees(), ["x"]);
    txn.commit().unwrap();
    assert_eq!(store.trees(), ["x"]);
    let mut txn = store.begin_write().unwrap();
    assert!(txn.delete_tree("x").unwrap());
    assert!(!txn.delete_tree("x").unwrap());
    txn.commit().unwrap();
    assert!(store.trees().is_empty());
}

// ---------------------------------------------------------------------------------------
// `tests/fixtures/v1-btree`: a store of B-tree format 1, checked in. Rewritten (only on
// purpose: it hides a format change from the test below) with
// `ACCRETION_WRITE_FIXTURES=1 cargo test --test it -- btree::write_btree_fixture`.

const FIXTURE_BTREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-btree");

fn fixture_value(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(97) {
        9000
    } else {
        (i % 150) as usize
    };
    (0..len).map(|j| (j as u32 ^ i) as u8).collect()
}

/// The fixture's writes (small, so that the log stays in its first two lanes): a load in
/// one transaction, a compaction, one-key
/// commits in three trees, a deleted tree, and commits after the last checkpoint (the
/// last one unsynced). Applies them to `store` if given; returns the model.
fn fixture_workload(store: Option<&BTreeStore>) -> Model {
    let mut model: Model = BTreeMap::new();
    model.insert(String::new(), BTreeMap::new());
    let mut txn = store.map(|s| s.begin_write().unwrap());
    for i in 0..400u32 {
        let (k, v) = (format!("bulk-{i:06}").into_bytes(), fixture_value(i));
        if let Some(txn) = txn.as_mut() {
            txn.default_tree().unwrap().insert(&k, &v).unwrap();
        }
        model.get_mut("").unwrap().insert(k, v);
    }
    if let Some(txn) = txn {
        txn.commit().unwrap();
    }
    if let Some(s) = store {
        s.compact().unwrap();
    }
    for i in 0..60u32 {
        let tree = ["", "fruit", "gone"][i as usize % 3];
        let (k, v) = (format!("one-{i}").into_bytes(), fixture_value(i * 7));
        if let Some(s) = store {
            let mut txn = s.begin_write().unwrap();
            txn.open_tree(tree).unwrap().insert(&k, &v).unwrap();
            if i.is_multiple_of(10) {
                txn.default_tree()
                    .unwrap()
                    .remove(format!("bulk-{i:06}").as_bytes())
                    .unwrap();
            }
            txn.commit_unsynced().unwrap();
        }
        model.entry(tree.to_owned()).or_default().insert(k, v);
        if i.is_multiple_of(10) {
            model
                .get_mut("")
                .unwrap()
                .remove(format!("bulk-{i:06}").as_bytes());
        }
    }
    if let Some(s) = store {
        let mut txn = s.begin_write().unwrap();
        txn.delete_tree("gone").unwrap();
        txn.commit().unwrap();
        s.checkpoint().unwrap();
        s.insert(b"after the checkpoint", b"synced").unwrap();
        s.sync().unwrap();
        s.insert(b"last", b"not synced, kept").unwrap();
    }
    model.remove("gone");
    let m = model.get_mut("").unwrap();
    m.insert(b"after the checkpoint".to_vec(), b"synced".to_vec());
    m.insert(b"last".to_vec(), b"not synced, kept".to_vec());
    model
}

#[test]
fn write_btree_fixture() {
    if std::env::var("ACCRETION_WRITE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let target = Path::new(FIXTURE_BTREE);
    let tmp = tempfile::tempdir_in(target.parent().unwrap()).unwrap();
    let fresh = tmp.path().join("fresh");
    {
        let dir = Dir::open(&fresh).unwrap();
        let store = BTreeStore::open(&dir, "db", BTreeOptions::default()).unwrap();
        fixture_workload(Some(&store));
    }
    std::fs::remove_file(fresh.join("accretion.lock")).unwrap();
    if target.exists() {
        std::fs::remove_dir_all(target).unwrap();
    }
    std::fs::rename(&fresh, target).unwrap();
}

/// A copy of the fixture opens (replaying the commits after its checkpoint, the unsynced
/// one included), reads back exactly what was written, verifies, and takes new writes.
#[test]
fn fixture_v1_btree_reads_back_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v1-btree");
    crate::fixtures::copy_dir(Path::new(FIXTURE_BTREE), &path);
    let model = fixture_workload(None);
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(7);
    {
        let dir = Dir::open(&path).unwrap();
        let store = BTreeStore::open(&dir, "db", BTreeOptions::default()).unwrap();
        let stats = store.stats();
        assert_eq!(stats.generation, 1, "{stats:?}");
        store.verify().unwrap();
        check(&store.begin_read(), &model, &mut rng, 0);
        store.insert(b"new", b"write").unwrap();
        store.compact().unwrap();
    }
    let dir = Dir::open(&path).unwrap();
    let store = BTreeStore::open(&dir, "db", BTreeOptions::default()).unwrap();
    assert_eq!(store.get(b"new").unwrap().unwrap(), b"write");
    assert_eq!(store.len().unwrap(), model[""].len() as u64 + 1);
}

// ---------------------------------------------------------------------------------------
// Corruption: a byte flipped in every kind of record of the log (leaf and branch pages,
// out-of-line values, commit records, checkpoints), in the state journal and in the
// log's length record. The store must open and read back either a state it really had
// (a damaged unsynced tail costs commits, newest first, never a mix) or fail with a typed
// error; never panic and never return bytes that were not written.

/// The sweep's store: states after its checkpoint and after each commit that follows.
fn sweep_store(path: &Path) -> Vec<Model> {
    let (_dir, store) = open(path);
    let mut model: Model = BTreeMap::new();
    let mut txn = store.begin_write().unwrap();
    {
        let mut t = txn.default_tree().unwrap();
        for i in 0..3000u32 {
            let v = fixture_value(i * 3);
            t.insert(format!("k{i:05}").as_bytes(), &v).unwrap();
            model
                .entry(String::new())
                .or_default()
                .insert(format!("k{i:05}").into_bytes(), v);
        }
    }
    {
        let mut t = txn.open_tree("t").unwrap();
        for i in 0..100u32 {
            t.insert(&i.to_be_bytes(), b"in t").unwrap();
            model
                .entry("t".into())
                .or_default()
                .insert(i.to_be_bytes().to_vec(), b"in t".to_vec());
        }
    }
    txn.commit().unwrap();
    store.checkpoint().unwrap();
    let mut states = vec![model.clone()];
    for i in 0..5u32 {
        let k = format!("late-{i}").into_bytes();
        let v = fixture_value(97 * (i + 1));
        store.insert(&k, &v).unwrap();
        model.get_mut("").unwrap().insert(k, v);
        states.push(model.clone());
    }
    store.sync().unwrap();
    states
}

/// Everything the store holds, read as a user would (without `verify`), or the first
/// error met opening or reading it; and whether `verify` then passes.
fn read_all(path: &Path) -> accretion::Result<(Model, bool)> {
    let dir = Dir::open(path)?;
    let store = BTreeStore::open(&dir, "db", options())?;
    let snapshot = store.begin_read();
    let mut out = Model::new();
    let mut names = snapshot.trees();
    names.push(String::new());
    for name in names {
        let t = snapshot.open_tree(&name)?.expect("listed");
        let m = out.entry(name).or_default();
        for e in t.iter()? {
            let (k, v) = e?;
            m.insert(k.to_vec(), v.to_vec());
        }
    }
    Ok((out, store.verify().is_ok()))
}

#[test]
fn btree_corruption_sweep_over_every_record_kind() {
    let mut s = Seeded::new("btree_corruption_sweep");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let states = sweep_store(&path);
    assert_eq!(
        read_all(&path).unwrap(),
        (states.last().unwrap().clone(), true)
    );
    // Where each kind of record lies: (kind, file, position in it, length).
    let mut targets: Vec<(u8, std::path::PathBuf, u64, u64)> = Vec::new();
    {
        let dir = Dir::open(&path).unwrap();
        let log = accretion::AppendOnly::open(&dir, "db/g0").unwrap();
        let mut per_kind: BTreeMap<u8, usize> = BTreeMap::new();
        for span in log.records(0) {
            let span = span.unwrap();
            let kind = log.get(span).unwrap()[0];
            let seen = per_kind.entry(kind).or_default();
            if *seen < 4 {
                *seen += 1;
                let (file, at) = log.file_position(span.offset()).unwrap();
                targets.push((kind, file, at, span.len()));
            }
        }
        assert_eq!(
            per_kind.keys().copied().collect::<Vec<_>>(),
            [1, 2, 3, 5, 6],
            "leaves, branches, values, commits, checkpoints"
        );
    }
    for file in ["db/state/journal.acc", "db/g0/length.acc"] {
        let len = std::fs::metadata(path.join(file)).unwrap().len();
        targets.push((0, path.join(file), 0, len));
    }
    let (mut cases, mut refused, mut earlier) = (0, 0, 0);
    for (kind, file, at, len) in targets {
        let mut positions: Vec<u64> = (0..len.min(48)).collect();
        positions.extend((0..24).map(|_| s.rng.random_range(0..len)));
        for rel in positions {
            let original = std::fs::read(&file).unwrap();
            let mut bytes = original.clone();
            let bit = 1u8 << s.rng.random_range(0..8);
            bytes[(at + rel) as usize] ^= bit;
            std::fs::write(&file, &bytes).unwrap();
            let read = read_all(&path);
            if let Ok((m, _)) = &read {
                assert!(
                    states.contains(m),
                    "record kind {kind}, {} +{at}+{rel} bit {bit}: reads returned a state the \
                     store never had",
                    file.display()
                );
            }
            match read {
                Err(_) | Ok((_, false)) => refused += 1,
                Ok((m, true)) => {
                    let j = states.iter().position(|s| *s == m).unwrap_or_else(|| {
                        panic!(
                            "record kind {kind}, {} +{at}+{rel} bit {bit}: the store returned a \
                             state it never had",
                            file.display()
                        )
                    });
                    if j + 1 < states.len() {
                        earlier += 1;
                    }
                }
            }
            std::fs::write(&file, &original).unwrap();
            cases += 1;
        }
    }
    assert_eq!(
        read_all(&path).unwrap(),
        (states.last().unwrap().clone(), true)
    );
    println!("{cases} flips: {refused} refused with an error, {earlier} read as an earlier state");
    assert!(
        refused > cases / 3,
        "{refused} of {cases} flips were noticed"
    );
}

/// `get` hands out the bytes where they lie, not a copy, for a value in a page held in
/// memory (a non-durable commit), in a page on disk and out of line; and each handle
/// keeps its bytes through overwrites, removals, checkpoints, a compaction and the
/// store's drop.
#[test]
fn get_handles_are_zero_copy_and_outlive_every_change() {
    let dir = Dir::temporary().unwrap();
    let store = BTreeStore::open(&dir, "t", options()).unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    // Each commit non-durable: pages stay in memory until a checkpoint.
    store.insert(b"mem", b"in memory").unwrap();
    assert_eq!(store.stats().pages_in_memory, 1);
    let in_memory = store.get(b"mem").unwrap().unwrap();
    store.insert(b"big", &big).unwrap();
    store.sync().unwrap();
    store.checkpoint().unwrap();
    store.insert(b"disk", b"on disk").unwrap();
    store.sync().unwrap();
    store.checkpoint().unwrap();
    let on_disk = store.get(b"disk").unwrap().unwrap();
    let out_of_line = store.get(b"big").unwrap().unwrap();
    {
        // The same bytes a snapshot borrows: no copy was made.
        let snapshot = store.begin_read();
        let tree = snapshot.default_tree().unwrap();
        for (key, handle) in [(&b"disk"[..], &on_disk), (b"big", &out_of_line)] {
            let borrowed = tree.get(key).unwrap().unwrap();
            assert_eq!(handle.as_ptr(), borrowed.as_ptr(), "{key:?} was copied");
        }
    }
    // A fresh handle to the value now on disk (the memory page was written out).
    assert_eq!(store.stats().pages_in_memory, 0);
    let in_memory_now = store.get(b"mem").unwrap().unwrap();
    for i in 0..2_000u32 {
        store.insert(&i.to_be_bytes(), &[7; 100]).unwrap();
    }
    for key in [&b"mem"[..], b"disk", b"big"] {
        store.insert(key, b"overwritten").unwrap();
    }
    store.remove(b"disk").unwrap();
    store.compact().unwrap();
    assert_eq!(store.get(b"mem").unwrap().unwrap(), b"overwritten");
    drop(store);
    drop(dir);
    assert_eq!(in_memory, b"in memory");
    assert_eq!(in_memory_now, b"in memory");
    assert_eq!(on_disk, b"on disk");
    assert_eq!(out_of_line, big);
}
