//! HashStore through its public API: rust-persist's seeded model test (done with reopens,
//! clean and unclean, and `verify` after every step), handles across resizes and
//! optimisations, limits, threads against per-thread models, and the clean open that
//! reads no record.

use std::collections::HashMap;

use accretion::limits::{HASH_KEY_LEN_BYTES_MAX, HASH_VALUE_LEN_BYTES_MAX};
use accretion::{Dir, Error, HashOptions, HashStore, OptimizeMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Seeded, snapshot};

fn open(dir: &Dir) -> HashStore {
    HashStore::open(dir, "kv", HashOptions::default()).unwrap()
}

/// The store with automatic optimisation off: optimisations happen only when called.
fn open_manual(dir: &Dir) -> HashStore {
    let options = HashOptions {
        auto_optimize: false,
        ..HashOptions::default()
    };
    HashStore::open(dir, "kv", options).unwrap()
}

/// A copy of `dir`'s files as they are now, open: what a process killed at this instant
/// leaves (the page cache keeps every write; nothing was shut down cleanly).
fn killed_image(dir: &Dir) -> Dir {
    let files = snapshot(dir.path());
    let image = Dir::temporary().unwrap();
    for (rel, bytes) in files {
        let to = image.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    image
}

fn check(store: &HashStore, model: &HashMap<Vec<u8>, Vec<u8>>, what: &str) {
    assert_eq!(store.len(), model.len() as u64, "{what}: len");
    let report = store
        .verify()
        .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert_eq!(report.entries, model.len() as u64, "{what}");
}

fn check_all(store: &HashStore, model: &HashMap<Vec<u8>, Vec<u8>>, what: &str) {
    check(store, model, what);
    for (k, v) in model {
        let got = store
            .get(k)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: {k:?} lost"));
        assert_eq!(&*got, &v[..], "{what}: value of {k:?}");
    }
    let mut seen = 0;
    for e in store.iter().unwrap() {
        let (k, v) = e.unwrap();
        assert_eq!(model.get(&*k).map(Vec::as_slice), Some(&*v), "{what}: iter");
        seen += 1;
    }
    assert_eq!(seen, model.len(), "{what}: iter count");
}

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

/// rust-persist's seeded test, done better: random set, delete, update, get and clear
/// with keys of 0..=100 bytes and values of 0..=1000, checked against a HashMap and by
/// `verify` after every step, reopened twice midway (once cleanly, once from a killed
/// process's image, which rebuilds the index), and emptied at the end.
fn seeded_run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dir = Dir::temporary().unwrap();
    let mut store = open(&dir);
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let pool: Vec<Vec<u8>> = (0..300).map(|_| bytes(&mut rng, 100)).collect();
    const OPS: usize = 1_200;
    for step in 0..OPS {
        let what = format!("seed {seed} step {step}");
        let key = pool[rng.random_range(0..pool.len())].clone();
        match rng.random_range(0..100) {
            0..40 => {
                let value = bytes(&mut rng, 1000);
                let old = store.set(&key, &value).unwrap();
                assert_eq!(
                    old.as_deref(),
                    model.insert(key, value).as_deref(),
                    "{what}"
                );
            }
            40..60 => {
                let old = store.delete(&key).unwrap();
                assert_eq!(old.as_deref(), model.remove(&key).as_deref(), "{what}");
            }
            60..75 => {
                let grow = rng.random_range(0..5) > 0;
                let new = store
                    .update(&key, |old| {
                        grow.then(|| {
                            let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                            v.push(7);
                            v
                        })
                    })
                    .unwrap();
                let before = model.get(&key).cloned();
                assert_eq!(new.as_deref(), before.as_deref(), "{what}");
                if grow {
                    let mut v = before.unwrap_or_default();
                    v.push(7);
                    model.insert(key, v);
                } else {
                    model.remove(&key);
                }
            }
            75..99 => {
                let got = store.get(&key).unwrap();
                assert_eq!(got.as_deref(), model.get(&key).map(Vec::as_slice), "{what}");
            }
            _ => {
                store.clear().unwrap();
                model.clear();
            }
        }
        check(&store, &model, &what);
        if step == OPS / 3 {
            drop(store);
            store = open(&dir);
            check_all(&store, &model, &format!("{what}, clean reopen"));
        }
        if step == 2 * OPS / 3 {
            let image = killed_image(&dir);
            drop(store);
            dir = image;
            store = open(&dir);
            check_all(&store, &model, &format!("{what}, reopen after a kill"));
        }
    }
    check_all(&store, &model, &format!("seed {seed}, end"));
    let keys: Vec<_> = model.keys().cloned().collect();
    for k in keys {
        assert!(store.delete(&k).unwrap().is_some());
    }
    assert!(store.is_empty());
    assert_eq!(store.iter().unwrap().count(), 0);
    store.verify().unwrap();
    drop(store);
    let store = open(&dir);
    assert!(store.is_empty());
    store.verify().unwrap();
}

#[test]
fn seeded_model_runs_match_a_hashmap() {
    for seed in [1, 2, 3, 0xdead_beef, 20_261_202] {
        seeded_run(seed);
    }
    let random = Seeded::new("hash_store::seeded_model_runs_match_a_hashmap");
    seeded_run(random.seed);
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-{round}-").into_bytes();
    v.resize(40 + (i % 60) as usize, b'.');
    v
}

#[test]
fn handles_survive_resizes_optimisation_and_reopen() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let n = 20_000;
    store.extend((0..n).map(|i| (key(i), value(i, 0)))).unwrap();
    let grown = store.stats().unwrap();
    assert!(grown.index_capacity >= n * 10 / 9, "{grown:?}");
    assert!(grown.index_fill <= 0.9, "{grown:?}");
    let held: Vec<_> = (0..n)
        .step_by(97)
        .map(|i| store.get(&key(i)).unwrap().unwrap())
        .collect();
    // Overwrite everything twice: the first data generation is mostly dead.
    for round in 1..=2 {
        for i in 0..n {
            store.set(&key(i), &value(i, round)).unwrap();
        }
    }
    let before = store.stats().unwrap();
    assert!(
        before.data_generation >= 1,
        "auto optimisation ran: {before:?}"
    );
    assert!(store.optimize(OptimizeMode::Aggressive).unwrap());
    let after = store.stats().unwrap();
    assert_eq!(after.data_generation, before.data_generation + 1);
    assert!(after.dead_bytes < after.data_bytes / 10, "{after:?}");
    assert!(
        !store.optimize(OptimizeMode::Normal).unwrap(),
        "nothing to free"
    );
    // Delete most keys: the index shrinks.
    let removed = store.retain(|k, _| k.ends_with(b"0")).unwrap();
    assert_eq!(removed, n - n / 10);
    let shrunk = store.stats().unwrap();
    assert!(shrunk.index_capacity < grown.index_capacity, "{shrunk:?}");
    assert!(
        shrunk.index_fill >= 0.35 || shrunk.index_capacity == 4096,
        "{shrunk:?}"
    );
    store.verify().unwrap();
    for (j, h) in held.iter().enumerate() {
        assert_eq!(&**h, &value(j as u64 * 97, 0)[..], "held handle {j}");
    }
    drop(store);
    // The old generations are still held by `held`; the store reopens beside them.
    let store = open(&dir);
    assert_eq!(store.len(), n / 10);
    for i in (0..n).step_by(10) {
        assert_eq!(&*store.get(&key(i)).unwrap().unwrap(), &value(i, 2)[..]);
    }
    store.verify().unwrap();
    assert_eq!(&*held[3], &value(3 * 97, 0)[..]);
    drop(held);
    drop(store);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("kv"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let datas = names.iter().filter(|n| n.starts_with('d')).count();
    let indexes = names.iter().filter(|n| n.starts_with('i')).count();
    assert_eq!(
        (datas, indexes),
        (1, 1),
        "retired generations are removed: {names:?}"
    );
}

#[test]
fn keys_at_the_limit_are_stored_and_past_it_refused() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let longest = vec![9u8; HASH_KEY_LEN_BYTES_MAX];
    store.set(&longest, b"v").unwrap();
    let too_long = vec![9u8; HASH_KEY_LEN_BYTES_MAX + 1];
    for e in [
        store.set(&too_long, b"v").unwrap_err(),
        store.delete(&too_long).unwrap_err(),
        store
            .set(b"k", &vec![0u8; HASH_VALUE_LEN_BYTES_MAX + 1])
            .unwrap_err(),
        store
            .update(b"k", |_| Some(vec![0u8; HASH_VALUE_LEN_BYTES_MAX + 1]))
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
    }
    assert!(store.get(b"k").unwrap().is_none(), "nothing stored");
    drop(store);
    for image in [false, true] {
        let dir2 = if image {
            killed_image(&dir)
        } else {
            dir.clone()
        };
        let store = open(&dir2);
        assert_eq!(&*store.get(&longest).unwrap().unwrap(), b"v");
        assert_eq!(store.len(), 1);
    }
}

#[test]
fn writes_from_inside_update_are_refused_not_deadlocked() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"a", b"1").unwrap();
    let mut inner = None;
    store
        .update(b"a", |old| {
            inner = Some(store.set(b"b", b"2"));
            assert_eq!(
                &*store.get(b"a").unwrap().unwrap(),
                b"1",
                "reads work inside"
            );
            old.map(<[u8]>::to_vec)
        })
        .unwrap();
    assert!(matches!(inner, Some(Err(Error::Reentrant { .. }))));
    let mut inner = None;
    store
        .retain(|_, _| {
            inner = Some(store.delete(b"a"));
            true
        })
        .unwrap();
    assert!(matches!(inner, Some(Err(Error::Reentrant { .. }))));
    assert_eq!(store.len(), 1);
}

/// After a clean shutdown the index is trusted as it is: a record damaged on disk goes
/// unnoticed by the open (which reads none) and is reported by the read that meets it.
#[test]
fn a_clean_open_reads_no_record() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    for i in 0..100 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    drop(store);
    let data = dir.path().join("kv/d0");
    let lane = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("data"))
        .unwrap();
    let mut bytes = std::fs::read(&lane).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"key-00000042")
        .unwrap();
    bytes[at + 11] ^= 1;
    std::fs::write(&lane, &bytes).unwrap();
    let store = open(&dir);
    assert_eq!(store.len(), 100);
    assert_eq!(&*store.get(&key(41)).unwrap().unwrap(), &value(41, 0)[..]);
    let e = store.get(&key(42)).unwrap_err();
    assert!(matches!(e, Error::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(store.verify().is_err());
}

#[test]
fn a_killed_process_loses_no_returned_write_and_the_index_is_rebuilt() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let mut model = HashMap::new();
    for i in 0..5_000u64 {
        store.set(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
        if i % 3 == 0 {
            store.delete(&key(i / 2)).unwrap();
            model.remove(&key(i / 2));
        }
    }
    let image = killed_image(&dir);
    let rebuilt = open(&image);
    assert!(rebuilt.rebuilt_at_open());
    check_all(&rebuilt, &model, "killed image");
    let stats = rebuilt.stats().unwrap();
    assert!(
        stats.index_generation >= 1,
        "rebuilt into a new generation: {stats:?}"
    );
    drop(rebuilt);
    // Rebuilt and closed cleanly: the next open trusts that index.
    let again = open(&image);
    assert!(!again.rebuilt_at_open());
    check_all(&again, &model, "reopened after the rebuild");
}

/// A new store closed (or dropped) before any write is trusted by the next open: its
/// first generation's identity record, made at the first open, is recorded by the close.
/// (A process killed in its first open left a state and an empty log; the open after it
/// made the identity record, trusted the store as new, and its close recorded nothing,
/// so every later open rebuilt.)
#[test]
fn a_new_store_closed_before_any_write_is_trusted_at_the_next_open() {
    let dir = Dir::temporary().unwrap();
    for round in 0..3 {
        let store = open(&dir);
        assert!(!store.rebuilt_at_open(), "open {round}");
        assert_eq!(store.len(), 0, "open {round}");
        drop(store);
    }
    // Also when a kill left the image between the first open and any write.
    let store = open(&dir);
    let image = killed_image(&dir);
    drop(store);
    let once = open(&image);
    drop(once);
    let again = open(&image);
    assert!(
        !again.rebuilt_at_open(),
        "the open after the killed image's"
    );
}

#[test]
fn eight_threads_match_their_models() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let seeded = Seeded::new("hash_store::eight_threads_match_their_models");
    let base = seeded.seed;
    let models: Vec<HashMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(base ^ t);
                    let mut model = HashMap::new();
                    for step in 0..4_000u64 {
                        let k = format!("t{t}-{}", rng.random_range(0..300u32)).into_bytes();
                        match rng.random_range(0..10) {
                            0..4 => {
                                let v = format!("{t}-{step}").into_bytes();
                                let old = store.set(&k, &v).unwrap();
                                assert_eq!(old.as_deref(), model.insert(k, v).as_deref());
                            }
                            4..6 => {
                                let old = store.delete(&k).unwrap();
                                assert_eq!(old.as_deref(), model.remove(&k).as_deref());
                            }
                            _ => {
                                let got = store.get(&k).unwrap();
                                assert_eq!(got.as_deref(), model.get(&k).map(Vec::as_slice));
                                // Another thread's key: whatever it holds is one of its own.
                                let other = format!("t{}-{}", (t + 1) % 8, step % 300);
                                if let Some(v) = store.get(other.as_bytes()).unwrap() {
                                    assert!(v.starts_with(format!("{}-", (t + 1) % 8).as_bytes()));
                                }
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
    store.optimize(OptimizeMode::Aggressive).unwrap();
    check_all(&store, &all, "after optimising");
}

/// Reads and writes go on while another thread optimises.
#[test]
fn writes_continue_during_optimisation() {
    let dir = Dir::temporary().unwrap();
    let store = open_manual(&dir);
    let n = 30_000;
    for i in 0..n {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    std::thread::scope(|s| {
        let opt = s.spawn(|| store.optimize(OptimizeMode::Aggressive).unwrap());
        for i in 0..n {
            if i % 2 == 0 {
                store.set(&key(i), &value(i, 1)).unwrap();
            } else if i % 7 == 0 {
                store.delete(&key(i)).unwrap();
            }
        }
        assert!(opt.join().unwrap());
    });
    let mut model = HashMap::new();
    for i in 0..n {
        if i % 2 == 0 {
            model.insert(key(i), value(i, 1));
        } else if i % 7 != 0 {
            model.insert(key(i), value(i, 0));
        }
    }
    check_all(&store, &model, "after");
    assert_eq!(store.stats().unwrap().data_generation, 1);
    let image = killed_image(&dir);
    check_all(&open(&image), &model, "killed image");
}

#[test]
fn stats_count_what_is_stored() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let empty = store.stats().unwrap();
    assert_eq!((empty.entries, empty.probe_distance_mean), (0, 0.0));
    for i in 0..1000 {
        store.set(&key(i), &value(i, 0)).unwrap();
    }
    let s = store.stats().unwrap();
    assert_eq!(s.entries, 1000);
    assert!((s.index_fill - 1000.0 / s.index_capacity as f64).abs() < 1e-9);
    assert!(
        s.record_bytes_mean > 40.0 && s.record_bytes_mean < 200.0,
        "{s:?}"
    );
    // Nothing overwritten: dead bytes are the padding where a record skipped to the
    // next lane, at most a record's worth.
    assert!(s.dead_bytes < 256, "{s:?}");
    assert!(s.probe_distance_mean < 3.0, "{s:?}");
    store.set(&key(1), b"x").unwrap();
    assert!(store.stats().unwrap().dead_bytes > s.dead_bytes);
}

/// The store's files, by path relative to the store directory.
fn files_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Everything the store holds, read as a user would, or the first error met opening or
/// reading it; absent keys must read as absent.
fn read_all(path: &std::path::Path) -> accretion::Result<HashMap<Vec<u8>, Vec<u8>>> {
    let dir = Dir::open(path)?;
    let store = HashStore::open(&dir, "kv", HashOptions::default())?;
    let mut out = HashMap::new();
    for e in store.iter()? {
        let (k, v) = e?;
        out.insert(k.to_vec(), v.to_vec());
    }
    for (k, v) in &out {
        let got = store.get(k)?;
        assert_eq!(
            got.as_deref(),
            Some(&v[..]),
            "iter and get disagree on {k:?}"
        );
    }
    for i in 0..50 {
        assert!(store.get(format!("never-{i}").as_bytes())?.is_none());
    }
    assert_eq!(store.len(), out.len() as u64);
    Ok(out)
}

/// An index damaged at rest is not trusted: the clean open checks the index's checksum
/// and rebuilds it from the records.
#[test]
fn a_damaged_index_is_rebuilt_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let mut model = HashMap::new();
    {
        let dir = Dir::open(&path).unwrap();
        let store = open(&dir);
        for i in 0..3000 {
            store.set(&key(i), &value(i, 0)).unwrap();
            model.insert(key(i), value(i, 0));
        }
    }
    for (part, at_fraction) in [
        ("/slots/cells-", 0.5),
        ("/tags/cells-", 0.5),
        ("/tags/cells-", 1.0),
    ] {
        // The current index generation's biggest file of that part (a rebuild makes a
        // new generation each time).
        let file = files_under(&path.join("kv"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(part))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let at = ((bytes.len() - 1) as f64 * at_fraction) as usize;
        bytes[at] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
        {
            let dir = Dir::open(&path).unwrap();
            let store = open(&dir);
            assert!(store.rebuilt_at_open(), "{} +{at}", file.display());
            store.verify().unwrap();
        }
        assert_eq!(read_all(&path).unwrap(), model, "{} +{at}", file.display());
        assert!(!file.exists(), "the damaged generation was replaced");
    }
}

/// A bit flipped anywhere in a closed store's files (the state, the entropy, the data
/// log's records and length record, the index's slots, tags and length records): the
/// store opens and reads back exactly what it held, or fails with a typed error; it
/// never panics and never returns a value or a key it did not hold.
#[test]
fn hash_corruption_sweep_over_every_file() {
    let mut s = Seeded::new("hash_store::hash_corruption_sweep_over_every_file");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let mut model = HashMap::new();
    {
        let dir = Dir::open(&path).unwrap();
        let store = open(&dir);
        for i in 0..2000 {
            store.set(&key(i), &value(i, 0)).unwrap();
            model.insert(key(i), value(i, 0));
        }
        for i in (0..2000).step_by(3) {
            store.set(&key(i), &value(i, 1)).unwrap();
            model.insert(key(i), value(i, 1));
        }
        for i in (0..2000).step_by(7) {
            store.delete(&key(i)).unwrap();
            model.remove(&key(i));
        }
    }
    assert_eq!(read_all(&path).unwrap(), model);
    // Opens rewrite files (a rebuild makes a new index generation), so every case starts
    // from the whole store as it was.
    let pristine = snapshot(&path);
    let restore = || {
        std::fs::remove_dir_all(&path).unwrap();
        for (rel, bytes) in &pristine {
            let to = path.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, bytes).unwrap();
        }
    };
    let (mut cases, mut refused) = (0, 0);
    for (rel, original) in &pristine {
        let file = path.join(rel);
        if original.is_empty() {
            continue;
        }
        let len = original.len();
        let mut positions: Vec<usize> = (0..len.min(64)).step_by(5).collect();
        positions.extend((4096..len.min(4096 + 256)).step_by(9));
        positions.extend((0..10).map(|_| s.rng.random_range(0..len)));
        for at in positions {
            let mut bytes = original.clone();
            let bit = 1u8 << s.rng.random_range(0..8);
            bytes[at] ^= bit;
            std::fs::write(&file, &bytes).unwrap();
            match read_all(&path) {
                Ok(m) => assert!(
                    m == model,
                    "{} +{at} bit {bit}: read back {} entries that differ from the {} held",
                    file.display(),
                    m.len(),
                    model.len()
                ),
                Err(_) => refused += 1,
            }
            restore();
            cases += 1;
        }
    }
    assert_eq!(read_all(&path).unwrap(), model);
    println!("{cases} flips, {refused} refused with an error, the rest read back exactly");
    assert!(
        cases > 300 && refused > 0,
        "{cases} flips, {refused} refused"
    );
}

// ---------------------------------------------------------------------------------------
// `tests/fixtures/v1-hash`: a HashStore of format 1, checked in. Rewritten (only on
// purpose: it hides a format change from the test below) with
// `ACCRETION_WRITE_FIXTURES=1 cargo test --test it -- hash_store::write_hash_fixture`.

const FIXTURE_HASH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-hash");

/// The fixture's writes: sets, a clear, more sets, overwrites, deletes, updates, an
/// optimisation (data generation 1), and writes after it; the store is then closed
/// cleanly. Applies them to `store` if given; returns the model.
fn fixture_workload(store: Option<&HashStore>) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut model = HashMap::new();
    if let Some(s) = store {
        for i in 0..50 {
            s.set(&key(i), &value(i, 0)).unwrap();
        }
        s.clear().unwrap();
    }
    let mut set = |k: Vec<u8>, v: Vec<u8>| {
        if let Some(s) = store {
            s.set(&k, &v).unwrap();
        }
        model.insert(k, v);
    };
    for i in 0..600 {
        set(key(i), value(i, 1));
    }
    for i in (0..600).step_by(2) {
        set(key(i), value(i, 2));
    }
    set(Vec::new(), b"the empty key".to_vec());
    set(b"empty value".to_vec(), Vec::new());
    for i in (0..600).step_by(5) {
        if let Some(s) = store {
            s.delete(&key(i)).unwrap();
        }
        model.remove(&key(i));
    }
    if let Some(s) = store {
        s.update(&key(1), |old| old.map(|v| [v, b"+1"].concat()))
            .unwrap();
        s.optimize(OptimizeMode::Aggressive).unwrap();
    }
    let v = [value(1, 1), b"+1".to_vec()].concat();
    model.insert(key(1), v);
    for i in 600..700 {
        if let Some(s) = store {
            s.set(&key(i), &value(i, 3)).unwrap();
        }
        model.insert(key(i), value(i, 3));
    }
    model
}

#[test]
fn write_hash_fixture() {
    if std::env::var("ACCRETION_WRITE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let target = std::path::Path::new(FIXTURE_HASH);
    let tmp = tempfile::tempdir_in(target.parent().unwrap()).unwrap();
    let fresh = tmp.path().join("fresh");
    {
        let dir = Dir::open(&fresh).unwrap();
        let store = open_manual(&dir);
        fixture_workload(Some(&store));
        store.close().unwrap();
    }
    std::fs::remove_file(fresh.join("accretion.lock")).unwrap();
    if target.exists() {
        std::fs::remove_dir_all(target).unwrap();
    }
    std::fs::rename(&fresh, target).unwrap();
}

/// A copy of the fixture opens cleanly (trusting its index), reads back exactly what was
/// written, verifies, and takes new writes; with its index removed, it opens by a
/// rebuild to the same contents.
#[test]
fn fixture_v1_hash_reads_back_through_the_api() {
    let model = fixture_workload(None);
    for drop_index in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v1-hash");
        crate::fixtures::copy_dir(std::path::Path::new(FIXTURE_HASH), &path);
        if drop_index {
            for e in std::fs::read_dir(path.join("kv")).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().starts_with('i') {
                    std::fs::remove_dir_all(p).unwrap();
                }
            }
        }
        {
            let dir = Dir::open(&path).unwrap();
            let store = open(&dir);
            assert_eq!(store.rebuilt_at_open(), drop_index);
            assert_eq!(store.stats().unwrap().data_generation, 1);
            check_all(
                &store,
                &model,
                &format!("fixture, index dropped: {drop_index}"),
            );
            store.set(b"new", b"write").unwrap();
        }
        assert_eq!(read_all(&path).unwrap().len(), model.len() + 1);
    }
}

/// A data log of another store (or another generation) put in place of this store's is
/// refused at open, not served as this store's: every data log's first record names its
/// store and generation.
#[test]
fn a_data_log_put_in_the_wrong_place_is_refused() {
    let dir = Dir::temporary().unwrap();
    for (name, value) in [("kv", b"ours"), ("other", b"them")] {
        let s = HashStore::open(&dir, name, HashOptions::default()).unwrap();
        s.set(b"k", value).unwrap();
    }
    for e in std::fs::read_dir(dir.path().join("other/d0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("kv/d0").join(e.file_name())).unwrap();
    }
    let e = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains("kv/d0"), "{e}");
}
