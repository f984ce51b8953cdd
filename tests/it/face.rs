//! The common face: one seeded model run written once against `Store` and run on every
//! store, and the ordered reads of `OrderedStore` against a BTreeMap, from both ends and
//! meeting in the middle (the B-tree reads ranges in batches of 256).

use std::collections::BTreeMap;
use std::ops::Bound;

use accretion::catalog::Kind;
use accretion::face::{Entries, Figure, OrderedStore, Store};
use accretion::{
    BTreeStore, Dir, HashOptions, HashStore, LogOptions, LogStore, ShardedOptions, ShardedStore,
};
use rand::Rng;

use crate::common::Seeded;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn figure(figures: &[(&'static str, Figure)], name: &str) -> Option<Figure> {
    figures.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn check<S: Store>(store: &S, model: &Model, what: &str) {
    assert_eq!(store.len().unwrap(), model.len() as u64, "{what}: len");
    assert_eq!(store.is_empty().unwrap(), model.is_empty(), "{what}");
    let mut seen = Model::new();
    for e in store.entries().unwrap() {
        let (k, v) = e.unwrap();
        assert!(
            seen.insert(k.to_vec(), v.to_vec()).is_none(),
            "{what}: {:?} twice",
            &*k
        );
    }
    assert_eq!(&seen, model, "{what}: entries");
    let stats = store.stats().unwrap();
    assert_eq!(
        figure(&stats, "keys"),
        Some(Figure::Count(model.len() as u64)),
        "{what}: {stats:?}"
    );
    let report = store.verify().unwrap();
    assert_eq!(
        figure(&report, "keys"),
        Some(Figure::Count(model.len() as u64)),
        "{what}: {report:?}"
    );
}

/// Puts, overwrites, deletes (present and absent keys), gets and contains, checked
/// against a BTreeMap after every step's batch, with a sync and a compaction between.
fn model_run<S: Store>(store: &S, seeded: &mut Seeded) {
    let mut model = Model::new();
    for round in 0..4u64 {
        for _ in 0..400 {
            let k = key(seeded.rng.random_range(0..300));
            match seeded.rng.random_range(0..10) {
                0..6 => {
                    let len = seeded.rng.random_range(0..200);
                    let v: Vec<u8> = (0..len).map(|_| seeded.rng.random()).collect();
                    store.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
                6..8 => {
                    let was = store.delete(&k).unwrap();
                    assert_eq!(was, model.remove(&k).is_some(), "{}", store.kind());
                }
                _ => {
                    let got = store.get(&k).unwrap();
                    assert_eq!(got.as_deref(), model.get(&k).map(Vec::as_slice));
                    assert_eq!(store.contains(&k).unwrap(), model.contains_key(&k));
                }
            }
        }
        check(store, &model, &format!("{} round {round}", store.kind()));
        store.sync().unwrap();
        store.compact().unwrap();
        check(
            store,
            &model,
            &format!("{} round {round}, compacted", store.kind()),
        );
    }
    assert!(store.path().is_dir());
}

#[test]
fn every_store_matches_a_model_through_the_face() {
    let mut seeded = Seeded::new("face::every_store_matches_a_model_through_the_face");
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    assert_eq!(log.kind(), Kind::LogStore);
    model_run(&log, &mut seeded);
    let tree = BTreeStore::open(&dir, "tree", Default::default()).unwrap();
    assert_eq!(tree.kind(), Kind::BTreeStore);
    model_run(&tree, &mut seeded);
    let hash = HashStore::open(&dir, "hash", HashOptions::default()).unwrap();
    assert_eq!(hash.kind(), Kind::HashStore);
    model_run(&hash, &mut seeded);
    let sharded = ShardedStore::open(
        &dir,
        "sharded",
        ShardedOptions {
            shard_bytes_max: 20 << 10,
            ..ShardedOptions::default()
        },
    )
    .unwrap();
    assert_eq!(sharded.kind(), Kind::ShardedStore);
    model_run(&sharded, &mut seeded);
}

fn ordered_run<S: OrderedStore>(store: &S, seeded: &mut Seeded) {
    let mut model = Model::new();
    // More than four batches of the B-tree's 256.
    for i in 0..1_100u64 {
        let k = key(i * 2);
        let v = format!("v{i}").into_bytes();
        store.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    let pairs = |it: Entries<'_, S::Key, S::Value>| {
        it.map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect::<Vec<_>>()
    };
    let want: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(pairs(store.range(..).unwrap()), want);
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(pairs(Box::new(store.range(..).unwrap().rev())), rev);
    for _ in 0..40 {
        let a = key(seeded.rng.random_range(0..2_300));
        let b = key(seeded.rng.random_range(0..2_300));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let want: Vec<_> = model
            .range::<Vec<u8>, _>((Bound::Included(lo.clone()), Bound::Excluded(hi.clone())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            pairs(store.range(lo.clone()..hi.clone()).unwrap()),
            want,
            "{lo:?}..{hi:?}"
        );
        // From both ends at once, alternating, meeting in the middle: each entry once.
        let mut it = store.range(lo.clone()..hi.clone()).unwrap();
        let (mut front, mut back) = (Vec::new(), Vec::new());
        let mut toggle = seeded.rng.random_bool(0.5);
        loop {
            let next = if toggle { it.next() } else { it.next_back() };
            match next {
                Some(e) => {
                    let (k, v) = e.unwrap();
                    if toggle {
                        front.push((k.to_vec(), v.to_vec()));
                    } else {
                        back.push((k.to_vec(), v.to_vec()));
                    }
                }
                None => break,
            }
            if seeded.rng.random_ratio(1, 50) {
                toggle = !toggle;
            }
        }
        back.reverse();
        front.extend(back);
        assert_eq!(front, want, "both ends of {lo:?}..{hi:?}");
        // Neighbours.
        let probe = key(seeded.rng.random_range(0..2_300));
        let above = model
            .range::<Vec<u8>, _>((Bound::Excluded(probe.clone()), Bound::Unbounded))
            .next();
        let below = model.range::<Vec<u8>, _>(..probe.clone()).next_back();
        let got = |x: Option<(S::Key, S::Value)>| x.map(|(k, v)| (k.to_vec(), v.to_vec()));
        assert_eq!(
            got(store.above(&probe).unwrap()),
            above.map(|(k, v)| (k.clone(), v.clone()))
        );
        assert_eq!(
            got(store.below(&probe).unwrap()),
            below.map(|(k, v)| (k.clone(), v.clone()))
        );
    }
    let got = |x: Option<(S::Key, S::Value)>| x.map(|(k, v)| (k.to_vec(), v.to_vec()));
    assert_eq!(
        got(store.first().unwrap()),
        model.first_key_value().map(|(k, v)| (k.clone(), v.clone()))
    );
    assert_eq!(
        got(store.last().unwrap()),
        model.last_key_value().map(|(k, v)| (k.clone(), v.clone()))
    );
    assert_eq!(got(store.above(&key(5_000)).unwrap()), None);
    assert_eq!(got(store.below(&key(0)).unwrap()), None);
}

#[test]
fn ordered_stores_read_ranges_from_both_ends() {
    let mut seeded = Seeded::new("face::ordered_stores_read_ranges_from_both_ends");
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    ordered_run(&log, &mut seeded);
    let tree = BTreeStore::open(&dir, "tree", Default::default()).unwrap();
    ordered_run(&tree, &mut seeded);
}

/// A B-tree's entries are read in batches, each from its own snapshot: keys present
/// throughout come out once each, in order, while a writer changes others between
/// batches.
#[test]
fn btree_entries_keep_every_steady_key_while_others_change() {
    let dir = Dir::temporary().unwrap();
    let tree = BTreeStore::open(&dir, "tree", Default::default()).unwrap();
    for i in 0..2_000u64 {
        tree.insert(&key(i * 2), b"steady").unwrap();
    }
    let mut out = Vec::new();
    for (n, e) in Store::entries(&tree).unwrap().enumerate() {
        let (k, v) = e.unwrap();
        if v == b"steady" {
            out.push(k);
        }
        // Between batches: new keys everywhere, removals of odd ones.
        let i = n as u64;
        tree.insert(&key(i * 2 + 1), b"new").unwrap();
        if i > 10 {
            tree.remove(&key(i * 2 - 19)).unwrap();
        }
    }
    let want: Vec<_> = (0..2_000u64).map(|i| key(i * 2)).collect();
    assert_eq!(out, want);
}
