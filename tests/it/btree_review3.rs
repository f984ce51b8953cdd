//! Review of the change that shares a page's in-memory children in chunks (`Kids`) and
//! lets a dirty branch list only the children a transaction touched (`Kids2::Patched`):
//! transactions touching 1, 7, 8, 9 and many children of wide branches, merges and
//! redistributions under a patched branch, splits of branches over 16 and 200 children,
//! trees of height 3 and 4, checkpoints part-way (children on disk beside children in
//! memory), reopen, compaction under held snapshots, `remove_range` over many leaves and
//! `delete_tree` of a tree in memory, every read against a std model.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use accretion::{BTreeOptions, BTreeStore, Dir, ReadTxn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Options under which nothing checkpoints or compacts unless the test asks.
fn manual(page_size: usize) -> BTreeOptions {
    BTreeOptions {
        page_size,
        checkpoint_bytes: 1 << 40,
        memory_pages_bytes: 1 << 40,
        compact_min_bytes: 1 << 40,
        ..BTreeOptions::default()
    }
}

fn open(path: &Path, o: &BTreeOptions) -> (Dir, BTreeStore) {
    let dir = Dir::open(path).unwrap();
    let store = BTreeStore::open(&dir, "db", o.clone()).unwrap();
    (dir, store)
}

/// Every entry of tree `name` of `r` (`None` if the tree does not exist).
fn read_tree(r: &ReadTxn<'_>, name: &str) -> Option<Map> {
    let m = crate::common::btree_contents(r, name)?;
    // Backward walk agrees with the forward one.
    let t = r.open_tree(name).unwrap()?;
    let back: Vec<Vec<u8>> = t
        .iter()
        .unwrap()
        .rev()
        .map(|e| e.unwrap().0.to_vec())
        .collect();
    assert!(
        back.iter().rev().eq(m.keys()),
        "tree {name:?}: backward walk"
    );
    Some(m)
}

/// Checks tree `name` against `model` in full, and with point and range reads.
fn check_tree(store: &BTreeStore, name: &str, model: &Map, rng: &mut StdRng, what: &str) {
    let r = store.begin_read();
    let got = read_tree(&r, name).unwrap_or_default();
    if got != *model {
        let first_diff = got
            .iter()
            .zip(model.iter())
            .find(|(a, b)| a != b)
            .map(|(a, b)| (a.0.clone(), b.0.clone()));
        panic!(
            "{what}: tree {name:?} holds {} keys, the model {}; first difference {first_diff:?}",
            got.len(),
            model.len()
        );
    }
    let Some(t) = r.open_tree(name).unwrap() else {
        assert!(model.is_empty());
        return;
    };
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    for _ in 0..64 {
        let probe = if !keys.is_empty() && rng.random_bool(0.7) {
            let mut k = keys[rng.random_range(0..keys.len())].clone();
            match rng.random_range(0..3) {
                0 => {}
                1 => k.push(0),
                _ => {
                    let n = rng.random_range(0..=k.len());
                    k.truncate(n);
                }
            }
            k
        } else {
            (0..rng.random_range(0..12))
                .map(|_| rng.random::<u8>())
                .collect()
        };
        assert_eq!(
            t.get(&probe).unwrap(),
            model.get(&probe).map(|v| &v[..]),
            "{what}: get {probe:?}"
        );
        let above = model
            .range::<[u8], _>((Bound::Excluded(&probe[..]), Bound::Unbounded))
            .next()
            .map(|(k, v)| (&k[..], &v[..]));
        assert_eq!(t.above(&probe).unwrap(), above, "{what}: above {probe:?}");
        let below = model
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&probe[..])))
            .next_back()
            .map(|(k, v)| (&k[..], &v[..]));
        assert_eq!(t.below(&probe).unwrap(), below, "{what}: below {probe:?}");
    }
    assert_eq!(
        t.first().unwrap(),
        model.iter().next().map(|(k, v)| (&k[..], &v[..]))
    );
    assert_eq!(
        t.last().unwrap(),
        model.iter().next_back().map(|(k, v)| (&k[..], &v[..]))
    );
    if keys.len() >= 2 {
        for _ in 0..4 {
            let mut a = keys[rng.random_range(0..keys.len())];
            let mut b = keys[rng.random_range(0..keys.len())];
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            let want: Vec<(&[u8], &[u8])> = model
                .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            let got: Vec<(&[u8], &[u8])> = t
                .range(&a[..]..&b[..])
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, want, "{what}: range");
        }
    }
}

fn check(store: &BTreeStore, model: &Map, rng: &mut StdRng, what: &str) {
    check_tree(store, "", model, rng, what);
    store.verify().unwrap();
}

/// Snapshots held with what each must keep reading.
struct Held<'s> {
    snaps: Vec<(ReadTxn<'s>, Map, String)>,
}

impl<'s> Held<'s> {
    fn take(&mut self, store: &'s BTreeStore, model: &Map, what: String) {
        self.snaps.push((store.begin_read(), model.clone(), what));
    }

    fn check(&self, when: &str) {
        for (r, m, what) in &self.snaps {
            let got = read_tree(r, "").unwrap();
            assert!(
                got == *m,
                "snapshot {what} changed ({when}): {} keys, expected {}",
                got.len(),
                m.len()
            );
        }
    }
}

fn key8(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn height(store: &BTreeStore) -> u32 {
    store.stats().height
}

/// A tree of many short keys (branches of over 200 children at 8 KiB pages, over 100
/// at 4 KiB), then transactions that each touch `k` distinct leaves, for `k` around the
/// patched list's limit and far past it, with checkpoints part-way and snapshots held.
fn touch_k_children(page_size: usize, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let o = manual(page_size);
    let (dir, store) = open(tmp.path(), &o);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Map::new();
    let n = 40_000u64;
    {
        let mut w = store.begin_write().unwrap();
        let mut t = w.default_tree().unwrap();
        for i in 0..n {
            let (k, v) = (key8(i * 1000), i.to_le_bytes().to_vec());
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        w.commit().unwrap();
    }
    check(&store, &model, &mut rng, "bulk load");
    let mut held = Held { snaps: Vec::new() };
    let ks = [1usize, 2, 7, 8, 9, 15, 16, 17, 31, 64, 300];
    for round in 0..120 {
        let k = ks[round % ks.len()];
        let mut w = store.begin_write().unwrap();
        let mut t = w.default_tree().unwrap();
        // `k` spots, spread over the key space (so over distinct leaves mostly).
        for _ in 0..k {
            let base = rng.random_range(0..n) * 1000;
            match rng.random_range(0..10) {
                0..=3 => {
                    let k = key8(base + rng.random_range(1..1000));
                    let v = vec![round as u8; rng.random_range(0..40)];
                    t.insert(&k, &v).unwrap();
                    model.insert(k, v);
                }
                4..=5 => {
                    let k = key8(base);
                    let v = vec![!(round as u8); rng.random_range(0..40)];
                    t.insert(&k, &v).unwrap();
                    model.insert(k, v);
                }
                6..=7 => {
                    let k = key8(base);
                    assert_eq!(
                        t.remove(&k).unwrap(),
                        model.remove(&k),
                        "round {round}: remove"
                    );
                }
                _ => {
                    // Empty a run of keys: the leaf falls under the minimum and merges
                    // or takes from a sibling, under a branch that may be patched.
                    let len = rng.random_range(20..200) * 1000;
                    let (a, b) = (key8(base), key8(base + len));
                    let want = model.range(a.clone()..b.clone()).count() as u64;
                    assert_eq!(t.remove_range(&a[..]..&b[..]).unwrap(), want);
                    model.retain(|key, _| *key < a || *key >= b);
                }
            }
        }
        w.commit().unwrap();
        if rng.random_bool(0.15) {
            // Changes dropped: the tree stays as committed.
            let mut w = store.begin_write().unwrap();
            let mut t = w.default_tree().unwrap();
            for _ in 0..k {
                let base = rng.random_range(0..n) * 1000;
                t.insert(&key8(base + 1), b"aborted").unwrap();
                t.remove(&key8(base)).unwrap();
            }
            w.abort();
        }
        if round % 5 == 0 {
            check(&store, &model, &mut rng, &format!("round {round}, k {k}"));
        } else {
            check_tree(&store, "", &model, &mut rng, &format!("round {round}"));
        }
        if round % 17 == 3 {
            store.checkpoint().unwrap();
            check(&store, &model, &mut rng, &format!("checkpoint at {round}"));
        }
        if round % 13 == 0 {
            held.take(&store, &model, format!("round {round}"));
        }
    }
    held.check("after the rounds");
    store.checkpoint().unwrap();
    held.check("after a checkpoint");
    store.compact().unwrap();
    held.check("after a compaction");
    check(&store, &model, &mut rng, "compacted");
    drop(held);
    drop(store);
    drop(dir);
    let (_dir, store) = open(tmp.path(), &o);
    check(&store, &model, &mut rng, "reopened");
}

#[test]
fn touch_k_children_4k() {
    touch_k_children(4096, 1);
}

#[test]
fn touch_k_children_8k() {
    touch_k_children(8192, 2);
}

/// A key of the long-key model: a few 8-byte heads shared by many keys (the word
/// compare ties, the slice compare decides), lengths from 0 to 512.
fn long_key(rng: &mut StdRng) -> Vec<u8> {
    let heads: [&[u8]; 5] = [
        b"",
        b"\x00\x00\x00\x00",
        b"prefix--",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"prefix-\xff",
    ];
    let mut k = heads[rng.random_range(0..heads.len())].to_vec();
    let id = rng.random_range(0..600u32);
    k.extend_from_slice(format!("{id:04}").as_bytes());
    // The length and the filling are functions of the id, so a key is met again.
    let len = match id % 4 {
        0 => id as usize % 12,
        1 => 12 + id as usize % 52,
        _ => 64 + (id as usize * 7919) % 449,
    };
    if len > k.len() {
        k.resize(len, (id % 3) as u8 * 0x7f);
    } else {
        k.truncate(len);
    }
    k
}

/// Long keys at 4 KiB pages: trees of height 3 and 4, every operation, checkpoints,
/// compactions and reopens at random points, snapshots held throughout.
fn long_key_model(seed: u64, steps: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let o = manual(4096);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Map::new();
    let mut named = Map::new();
    let mut max_height = 0;
    let mut step = 0;
    while step < steps {
        let (dir, store) = open(tmp.path(), &o);
        check(
            &store,
            &model,
            &mut rng,
            &format!("seed {seed}: opened at {step}"),
        );
        check_tree(&store, "n", &named, &mut rng, "named tree opened");
        let mut held = Held { snaps: Vec::new() };
        let session = rng.random_range(100..200);
        for _ in 0..session {
            step += 1;
            let mut w = store.begin_write().unwrap();
            let mut t = w.default_tree().unwrap();
            let ops = match rng.random_range(0..6) {
                0 => 1,
                1..=3 => rng.random_range(2..12),
                _ => rng.random_range(20..200),
            };
            for _ in 0..ops {
                let k = long_key(&mut rng);
                match rng.random_range(0..40) {
                    0..=27 => {
                        let v = vec![step as u8; rng.random_range(0..300)];
                        assert_eq!(
                            t.insert(&k, &v).unwrap(),
                            model.insert(k, v),
                            "seed {seed} step {step}: insert"
                        );
                    }
                    28..=38 => {
                        assert_eq!(
                            t.remove(&k).unwrap(),
                            model.remove(&k),
                            "seed {seed} step {step}: remove"
                        );
                    }
                    _ => {
                        // A narrow range: from the key to the same key a little on.
                        let mut e = k.clone();
                        e.truncate(e.len().min(9));
                        e.push(rng.random_range(b'0'..=b'9'));
                        let (a, b) = if k <= e { (k, e) } else { (e, k) };
                        let want = model.range(a.clone()..b.clone()).count() as u64;
                        assert_eq!(t.remove_range(&a[..]..&b[..]).unwrap(), want);
                        model.retain(|key, _| *key < a || *key >= b);
                    }
                }
            }
            // A named tree beside it, deleted now and then while in memory.
            if rng.random_bool(0.3) {
                if rng.random_bool(0.1) {
                    w.delete_tree("n").unwrap();
                    named.clear();
                } else {
                    let mut n = w.open_tree("n").unwrap();
                    for _ in 0..rng.random_range(1..50) {
                        let k = long_key(&mut rng);
                        let v = vec![1u8; rng.random_range(0..100)];
                        n.insert(&k, &v).unwrap();
                        named.insert(k, v);
                    }
                }
            }
            if rng.random_bool(0.98) {
                w.commit_unsynced().unwrap();
            } else {
                w.commit().unwrap();
            }
            max_height = max_height.max(height(&store));
            match rng.random_range(0..100) {
                0..=2 => store.checkpoint().unwrap(),
                3 => store.compact().unwrap(),
                4..=8 => held.take(&store, &model, format!("seed {seed} step {step}")),
                _ => {}
            }
            if step % 10 == 0 {
                check(
                    &store,
                    &model,
                    &mut rng,
                    &format!("seed {seed} step {step}"),
                );
                check_tree(&store, "n", &named, &mut rng, "named tree");
            }
        }
        held.check(&format!("seed {seed}: end of session at {step}"));
        store.compact().unwrap();
        held.check(&format!("seed {seed}: compacted at {step}"));
        drop(held);
        // Reopen with some commits since the last checkpoint (replayed) or none.
        if rng.random_bool(0.5) {
            store.checkpoint().unwrap();
        }
        drop(store);
        drop(dir);
    }
    assert!(max_height >= 3, "seed {seed}: height {max_height} only");
}

#[test]
fn long_keys_model() {
    for seed in 10..13 {
        long_key_model(seed, 300);
    }
}

/// Thousands of one-key commits on a tree of height 3, snapshots taken all along and
/// read again after every later commit batch, a checkpoint and a compaction.
#[test]
fn snapshots_across_thousands_of_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let o = manual(4096);
    let (_dir, store) = open(tmp.path(), &o);
    let mut rng = StdRng::seed_from_u64(20);
    let mut model = Map::new();
    {
        let mut w = store.begin_write().unwrap();
        let mut t = w.default_tree().unwrap();
        for i in 0..30_000u64 {
            let (k, v) = (key8(i * 64), vec![0u8; 24]);
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        w.commit().unwrap();
    }
    assert!(height(&store) >= 3);
    let mut held = Held { snaps: Vec::new() };
    held.take(&store, &model, "loaded".into());
    for c in 1..=4000u32 {
        let mut w = store.begin_write().unwrap();
        let mut t = w.default_tree().unwrap();
        let k = key8(rng.random_range(0..30_000u64 * 64));
        if rng.random_bool(0.6) {
            let v = c.to_le_bytes().repeat(rng.random_range(1..8));
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        } else {
            t.remove(&k).unwrap();
            model.remove(&k);
        }
        w.commit_unsynced().unwrap();
        if c % 400 == 0 {
            held.take(&store, &model, format!("commit {c}"));
            held.check(&format!("commit {c}"));
            check(&store, &model, &mut rng, &format!("commit {c}"));
        }
        if c % 1500 == 0 {
            store.checkpoint().unwrap();
            held.check(&format!("checkpoint at {c}"));
        }
    }
    store.compact().unwrap();
    held.check("compacted");
    check(&store, &model, &mut rng, "compacted");
}

/// `remove_range` over most of a tree in memory part on disk, and `delete_tree` of a
/// tree whose pages are in memory, its name reused in the same transaction.
#[test]
fn remove_range_and_delete_tree_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let o = manual(4096);
    let (dir, store) = open(tmp.path(), &o);
    let mut rng = StdRng::seed_from_u64(30);
    let mut model = Map::new();
    let mut named = Map::new();
    for pass in 0..6u64 {
        let mut w = store.begin_write().unwrap();
        {
            let mut t = w.default_tree().unwrap();
            for i in 0..8000u64 {
                let k = key8(i * 7 + pass);
                let v = vec![pass as u8; (i % 50) as usize];
                t.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        {
            let mut n = w.open_tree("n").unwrap();
            for i in 0..3000u64 {
                let k = format!("{:0300}", i * 3 + pass).into_bytes();
                n.insert(&k, b"v").unwrap();
                named.insert(k, b"v".to_vec());
            }
        }
        w.commit().unwrap();
        if pass % 2 == 1 {
            store.checkpoint().unwrap();
        }
        // Part of the tree written, part in memory.
        let mut w = store.begin_write().unwrap();
        {
            let mut t = w.default_tree().unwrap();
            for _ in 0..50 {
                let k = key8(rng.random_range(0..8000u64 * 7));
                t.insert(&k, b"x").unwrap();
                model.insert(k, b"x".to_vec());
            }
            let a = key8(rng.random_range(0..8000u64));
            let b = key8(rng.random_range(40_000..56_000u64));
            let want = model.range(a.clone()..b.clone()).count() as u64;
            assert_eq!(t.remove_range(&a[..]..&b[..]).unwrap(), want);
            model.retain(|key, _| *key < a || *key >= b);
        }
        if pass % 3 == 2 {
            assert!(w.delete_tree("n").unwrap());
            named.clear();
            let mut n = w.open_tree("n").unwrap();
            n.insert(b"only", b"one").unwrap();
            named.insert(b"only".to_vec(), b"one".to_vec());
        }
        w.commit().unwrap();
        check(&store, &model, &mut rng, &format!("pass {pass}"));
        check_tree(&store, "n", &named, &mut rng, &format!("pass {pass}"));
    }
    drop(store);
    drop(dir);
    let (_dir, store) = open(tmp.path(), &o);
    check(&store, &model, &mut rng, "reopened");
    check_tree(&store, "n", &named, &mut rng, "reopened");
}
