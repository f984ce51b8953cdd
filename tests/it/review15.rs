//! Review 15: fresh lanes allocated by writing zeros, B-tree commits that compact
//! instead of checkpointing, LogStore merge threads.

use std::collections::BTreeMap;

use accretion::{AppendOnly, BTreeOptions, BTreeStore, Dir, LogOptions, LogStore, RandomAccess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn btree_opts() -> BTreeOptions {
    BTreeOptions {
        checkpoint_bytes: 16 << 10,
        memory_pages_bytes: 32 << 10,
        compact_min_bytes: 64 << 10,
        ..BTreeOptions::default()
    }
}

/// Durable and unsynced commits on a small key space (much garbage), with snapshots held
/// across the commits' compactions, reopens, every key checked against a model.
#[test]
fn review15_btree_commits_that_compact_keep_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(15);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut dir = Dir::open(tmp.path()).unwrap();
    let mut store = BTreeStore::open(&dir, "db", btree_opts()).unwrap();
    let mut generations = 0;
    for round in 0..12 {
        let mut held = Vec::new();
        for c in 0..150 {
            let before = store.stats().generation;
            let snap = store.begin_read();
            let snap_model = model.clone();
            let mut txn = store.begin_write().unwrap();
            let mut t = txn.default_tree().unwrap();
            for _ in 0..rng.random_range(1..30) {
                let k = rng.random_range(0..3000u32).to_be_bytes().to_vec();
                if rng.random_ratio(1, 4) {
                    assert_eq!(t.remove(&k).unwrap(), model.remove(&k));
                } else {
                    let len = if rng.random_ratio(1, 20) {
                        3000
                    } else {
                        rng.random_range(0..120)
                    };
                    let v = vec![rng.random::<u8>(); len];
                    assert_eq!(t.insert(&k, &v).unwrap(), model.insert(k, v));
                }
            }
            if rng.random() {
                txn.commit().unwrap();
            } else {
                txn.commit_unsynced().unwrap();
            }
            if store.stats().generation != before {
                generations += 1;
            }
            // The snapshot taken before the commit still sees what it saw.
            let tree = snap.default_tree().unwrap();
            assert_eq!(
                tree.len().unwrap(),
                snap_model.len() as u64,
                "round {round} commit {c}"
            );
            if c % 10 == 0 {
                for (k, v) in &snap_model {
                    assert_eq!(
                        tree.get(k).unwrap(),
                        Some(&v[..]),
                        "snapshot, round {round}"
                    );
                }
            }
            if c % 37 == 0 {
                held.push((snap, snap_model));
            }
        }
        for (snap, m) in &held {
            let tree = snap.default_tree().unwrap();
            let got: Vec<_> = tree
                .iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            let want: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(got == want, "a held snapshot changed, round {round}");
        }
        drop(held);
        store.verify().unwrap();
        {
            let snap = store.begin_read();
            let tree = snap.default_tree().unwrap();
            assert_eq!(tree.len().unwrap(), model.len() as u64);
            for (k, v) in &model {
                assert_eq!(tree.get(k).unwrap(), Some(&v[..]), "round {round}");
            }
        }
        drop(store);
        drop(dir);
        dir = Dir::open(tmp.path()).unwrap();
        store = BTreeStore::open(&dir, "db", btree_opts()).unwrap();
        store.verify().unwrap();
        let snap = store.begin_read();
        let tree = snap.default_tree().unwrap();
        assert_eq!(
            tree.len().unwrap(),
            model.len() as u64,
            "after reopen {round}"
        );
        for (k, v) in &model {
            assert_eq!(tree.get(k).unwrap(), Some(&v[..]), "after reopen {round}");
        }
    }
    assert!(generations > 5, "commits compacted {generations} times");
}

/// Scattered writes far apart in a RandomAccess, dropped, reopened in this process, and
/// written again (more scattered and neighbouring indices): every element holds.
#[test]
fn review15_random_access_scattered_writes_survive_same_process_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(151);
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    for round in 0..6 {
        let dir = Dir::open(tmp.path()).unwrap();
        let ra = RandomAccess::<u64>::open(&dir, "ra").unwrap();
        // A drop does not sync the length: count what the page cache kept.
        if let Some((&last, _)) = model.last_key_value() {
            ra.extend_len(last + 1).unwrap();
        }
        for (&i, &v) in &model {
            assert_eq!(
                ra.read(i).unwrap(),
                v,
                "round {round} before writes, index {i}"
            );
        }
        for _ in 0..400 {
            // Up to 64 MiB of u64s: many 4 MiB steps in several lanes.
            let i = rng.random_range(0..(8u64 << 20));
            let v = rng.random::<u64>() | 1;
            ra.set(i, v).unwrap();
            model.insert(i, v);
            // A neighbour one step away, too.
            let j = (i + (512 << 10)) % (8 << 20);
            ra.set(j, v ^ 7).unwrap();
            model.insert(j, v ^ 7);
        }
        for (&i, &v) in &model {
            assert_eq!(ra.read(i).unwrap(), v, "round {round} index {i}");
        }
        if round % 2 == 0 {
            ra.sync().unwrap();
        }
        drop(ra);
        drop(dir);
    }
    let dir = Dir::open(tmp.path()).unwrap();
    let ra = RandomAccess::<u64>::open(&dir, "ra").unwrap();
    ra.extend_len(model.last_key_value().map_or(0, |(&i, _)| i + 1))
        .unwrap();
    for (&i, &v) in &model {
        assert_eq!(ra.read(i).unwrap(), v, "final, index {i}");
    }
}

/// An AppendOnly appended past several steps (with the helper thread working ahead),
/// dropped, reopened in this process, appended again: every record holds.
#[test]
fn review15_append_only_reopened_in_process_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(152);
    let mut records: Vec<(accretion::Span, Vec<u8>)> = Vec::new();
    for round in 0..5 {
        let dir = Dir::open(tmp.path()).unwrap();
        let log = AppendOnly::open(&dir, "log").unwrap();
        for (span, bytes) in &records {
            assert!(
                log.get(*span).unwrap() == &bytes[..],
                "round {round} before appends"
            );
        }
        std::thread::scope(|s| {
            let mut hs = Vec::new();
            for t in 0..2u8 {
                let seed = rng.random::<u64>();
                let log = &log;
                hs.push(s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let mut out = Vec::new();
                    for n in 0..3000u32 {
                        let len = rng.random_range(1..6000);
                        let b = (n as u8) ^ t ^ round;
                        let bytes = vec![b | 1; len];
                        let span = log.append(&bytes).unwrap();
                        out.push((span, bytes));
                    }
                    out
                }));
            }
            for h in hs {
                records.extend(h.join().unwrap());
            }
        });
        for (span, bytes) in &records {
            assert!(
                log.get(*span).unwrap() == &bytes[..],
                "round {round} after appends"
            );
        }
        if round % 2 == 1 {
            log.sync().unwrap();
        }
    }
    let dir = Dir::open(tmp.path()).unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    for (span, bytes) in &records {
        assert!(log.get(*span).unwrap() == &bytes[..], "final");
    }
}

/// Many puts (key-directory merges on background threads), dropped at once, reopened.
#[test]
fn review15_log_store_dropped_while_merging_reopens_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0u64;
    for round in 0..4 {
        let dir = Dir::open(tmp.path()).unwrap();
        let store = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
        assert_eq!(store.len(), n, "round {round}");
        for i in n..n + 150_000 {
            store.put(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
        }
        n += 150_000;
        assert_eq!(store.len(), n);
        for i in (0..n).step_by(997) {
            assert_eq!(
                &store.get(&i.to_be_bytes()).unwrap().unwrap()[..],
                &i.to_le_bytes()
            );
        }
        drop(store);
    }
}
