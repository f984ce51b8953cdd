//! ShardedStore's lists and queues through the public API: seeded runs against
//! VecDeque models, in tiny shards (so that splits and compactions move them), with clean
//! reopens and reopens of a killed process's image; promotion order, compare-and-swap,
//! holes and their compaction, both iteration directions, discards, limits, and threads
//! working on the same lists.

use std::collections::{HashMap, VecDeque};

use accretion::{Dir, Error, Replace, ShardedOptions, ShardedStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{killed_image, snapshot};

fn tiny() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 20 << 10,
        ..ShardedOptions::default()
    }
}

fn open(dir: &Dir) -> ShardedStore {
    ShardedStore::open(dir, "kv", tiny()).unwrap()
}

type List = VecDeque<(Vec<u8>, Vec<u8>)>;
type Queue = VecDeque<(u64, Vec<u8>)>;

#[derive(Clone, Default)]
struct Model {
    lists: HashMap<Vec<u8>, List>,
    queues: HashMap<Vec<u8>, Queue>,
    kv: HashMap<Vec<u8>, Vec<u8>>,
}

fn check(store: &ShardedStore, m: &Model, what: &str) {
    for (name, list) in &m.lists {
        assert_eq!(
            store.list_len(name).unwrap(),
            list.len() as u64,
            "{what}: len of {name:?}"
        );
        let got: Vec<(Vec<u8>, Vec<u8>)> = store
            .iter_list(name)
            .map(|i| {
                let i = i.unwrap();
                (i.key.to_vec(), i.value.to_vec())
            })
            .collect();
        assert_eq!(
            got,
            list.iter().cloned().collect::<Vec<_>>(),
            "{what}: {name:?}"
        );
        let back: Vec<Vec<u8>> = store
            .iter_list(name)
            .rev()
            .map(|i| i.unwrap().key.to_vec())
            .collect();
        let want: Vec<Vec<u8>> = list.iter().rev().map(|(k, _)| k.clone()).collect();
        assert_eq!(back, want, "{what}: {name:?} backwards");
        for (k, v) in list {
            assert_eq!(
                store.get_from_list(name, k).unwrap().as_deref(),
                Some(&v[..]),
                "{what}: item {k:?} of {name:?}"
            );
        }
        let head = store.peek_list_head(name).unwrap().map(|i| i.key.to_vec());
        assert_eq!(head, list.front().map(|(k, _)| k.clone()), "{what}: head");
        let tail = store.peek_list_tail(name).unwrap().map(|i| i.key.to_vec());
        assert_eq!(tail, list.back().map(|(k, _)| k.clone()), "{what}: tail");
    }
    for (name, queue) in &m.queues {
        assert_eq!(store.queue_len(name).unwrap(), queue.len() as u64, "{what}");
        let got: Vec<(u64, Vec<u8>)> = store
            .iter_queue(name)
            .map(|i| {
                let i = i.unwrap();
                (i.index, i.value.to_vec())
            })
            .collect();
        assert_eq!(
            got,
            queue.iter().cloned().collect::<Vec<_>>(),
            "{what}: queue {name:?}"
        );
        let back: Vec<u64> = store
            .iter_queue(name)
            .rev()
            .map(|i| i.unwrap().index)
            .collect();
        let want: Vec<u64> = queue.iter().rev().map(|(i, _)| *i).collect();
        assert_eq!(back, want, "{what}: queue {name:?} backwards");
    }
    assert_eq!(store.len(), m.kv.len() as u64, "{what}: key-value len");
    for (k, v) in &m.kv {
        assert_eq!(
            store.get(k).unwrap().as_deref(),
            Some(&v[..]),
            "{what}: {k:?}"
        );
    }
    // Lists' and queues' entries never show as the key-value map's keys.
    assert_eq!(store.iter().count() as u64, store.len(), "{what}: iter");
}

fn value(rng: &mut StdRng) -> Vec<u8> {
    let n = rng.random_range(0..60);
    (0..n).map(|_| rng.random()).collect()
}

/// One random operation on the store and the model.
fn step(store: &ShardedStore, m: &mut Model, rng: &mut StdRng) {
    let name = format!("list-{}", rng.random_range(0..4)).into_bytes();
    let qname = format!("queue-{}", rng.random_range(0..3)).into_bytes();
    let key = format!("item-{}", rng.random_range(0..40)).into_bytes();
    let list = m.lists.entry(name.clone()).or_default();
    let queue = m.queues.entry(qname.clone()).or_default();
    let pos = list.iter().position(|(k, _)| *k == key);
    match rng.random_range(0..100) {
        0..=24 => {
            let v = value(rng);
            let old = store.set_in_list(&name, &key, &v).unwrap();
            assert_eq!(old.as_deref(), pos.map(|p| &list[p].1[..]));
            match pos {
                Some(p) => list[p].1 = v,
                None => list.push_back((key, v)),
            }
        }
        25..=34 => {
            let v = value(rng);
            let old = store.set_in_list_promoting(&name, &key, &v).unwrap();
            assert_eq!(old.as_deref(), pos.map(|p| &list[p].1[..]));
            if let Some(p) = pos {
                list.remove(p);
            }
            list.push_back((key, v));
        }
        35..=44 => {
            let old = store.remove_from_list(&name, &key).unwrap();
            assert_eq!(old.as_deref(), pos.map(|p| &list[p].1[..]));
            if let Some(p) = pos {
                list.remove(p);
            }
        }
        45..=49 => {
            let v = value(rng);
            let expected = match (pos, rng.random_bool(0.7)) {
                (Some(p), true) => list[p].1.clone(),
                _ => b"not it".to_vec(),
            };
            match store.replace_in_list(&name, &key, &v, &expected).unwrap() {
                Replace::Absent => assert!(pos.is_none()),
                Replace::WrongValue(old) => {
                    assert_eq!(&*old, &list[pos.unwrap()].1[..]);
                    assert_ne!(&*old, &expected[..]);
                }
                Replace::Replaced(old) => {
                    assert_eq!(&*old, &expected[..]);
                    list[pos.unwrap()].1 = v;
                }
            }
        }
        50..=54 => {
            let head = rng.random_bool(0.5);
            let got = if head {
                store.pop_list_head(&name).unwrap()
            } else {
                store.pop_list_tail(&name).unwrap()
            };
            let want = if head {
                list.pop_front()
            } else {
                list.pop_back()
            };
            assert_eq!(
                got.map(|i| (i.key.to_vec(), i.value.to_vec())),
                want,
                "pop of {name:?}"
            );
        }
        55..=56 => {
            let holes = store.compact_list(&name).unwrap();
            assert!(holes < 10_000);
            assert_eq!(store.compact_list(&name).unwrap(), 0, "compacted twice");
        }
        57 => {
            assert_eq!(store.discard_list(&name).unwrap(), !list.is_empty());
            list.clear();
        }
        58..=69 => {
            let v = value(rng);
            if rng.random_bool(0.7) {
                let i = store.push_to_queue_tail(&qname, &v).unwrap();
                assert!(queue.back().is_none_or(|(last, _)| i > *last));
                queue.push_back((i, v));
            } else {
                let i = store.push_to_queue_head(&qname, &v).unwrap();
                assert!(queue.front().is_none_or(|(first, _)| i < *first));
                queue.push_front((i, v));
            }
        }
        70..=77 => {
            let head = rng.random_bool(0.6);
            let got = if head {
                store.pop_queue_head(&qname).unwrap()
            } else {
                store.pop_queue_tail(&qname).unwrap()
            };
            let want = if head {
                queue.pop_front()
            } else {
                queue.pop_back()
            };
            assert_eq!(got.map(|i| (i.index, i.value.to_vec())), want);
        }
        78..=81 if !queue.is_empty() => {
            let p = rng.random_range(0..queue.len());
            let (i, v) = queue.remove(p).unwrap();
            assert_eq!(
                store.remove_from_queue(&qname, i).unwrap().as_deref(),
                Some(&v[..])
            );
            assert!(store.remove_from_queue(&qname, i).unwrap().is_none());
        }
        82 => {
            assert_eq!(store.discard_queue(&qname).unwrap(), !queue.is_empty());
            queue.clear();
        }
        _ => {
            // Key-value writes beside them, some with the lists' own names.
            let k = if rng.random_bool(0.2) { name } else { key };
            if rng.random_bool(0.7) {
                let v = value(rng);
                store.set(&k, &v).unwrap();
                m.kv.insert(k, v);
            } else {
                store.remove(&k).unwrap();
                m.kv.remove(&k);
            }
        }
    }
}

fn seeded_run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dir = Dir::temporary().unwrap();
    let mut store = open(&dir);
    let mut m = Model::default();
    let mut moves = 0;
    for n in 0..2_500 {
        step(&store, &mut m, &mut rng);
        if n % 500 == 499 {
            check(&store, &m, &format!("seed {seed}, step {n}"));
            let st = store.stats();
            moves += st.splits + st.compactions;
            if rng.random_bool(0.5) {
                drop(store);
                store = open(&dir);
                assert_eq!(store.stats().rebuilt_at_open, 0);
            } else {
                let image = killed_image(&dir);
                drop(store);
                dir = image;
                store = open(&dir);
            }
            check(&store, &m, &format!("seed {seed}, step {n}, reopened"));
        }
    }
    assert!(
        moves >= 5,
        "the run split or compacted only {moves} times: {:?}",
        store.stats()
    );
}

#[test]
fn seeded_lists_and_queues_against_models_across_reopens() {
    for seed in 0..4 {
        seeded_run(seed);
    }
}

/// Promoting moves an item to the tail; popping the head evicts the least recently
/// promoted (the LRU use).
#[test]
fn promotion_gives_an_lru_order() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    for k in [b"a", b"b", b"c", b"d"] {
        store.set_in_list(b"lru", k, b"1").unwrap();
    }
    store.set_in_list_promoting(b"lru", b"a", b"2").unwrap();
    store.set_in_list_promoting(b"lru", b"c", b"2").unwrap();
    // Setting without promotion keeps the place.
    store.set_in_list(b"lru", b"b", b"3").unwrap();
    let order: Vec<Vec<u8>> = store
        .iter_list(b"lru")
        .map(|i| i.unwrap().key.to_vec())
        .collect();
    assert_eq!(order, [b"b", b"d", b"a", b"c"].map(|k| k.to_vec()));
    let evicted = store.pop_list_head(b"lru").unwrap().unwrap();
    assert_eq!((&*evicted.key, &*evicted.value), (&b"b"[..], &b"3"[..]));
    assert_eq!(store.list_len(b"lru").unwrap(), 3);
}

/// Removals in the middle leave holes that iteration skips; compaction closes them and
/// keeps the order; the list survives a killed reopen in either state.
#[test]
fn holes_are_skipped_and_compacted() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("k{i:03}").into_bytes()).collect();
    for k in &keys {
        store.set_in_list(b"l", k, k).unwrap();
    }
    for k in keys.iter().skip(1).step_by(3) {
        store.remove_from_list(b"l", k).unwrap();
    }
    let live: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, k)| k.clone())
        .collect();
    let listed = |s: &ShardedStore| -> Vec<Vec<u8>> {
        s.iter_list(b"l").map(|i| i.unwrap().key.to_vec()).collect()
    };
    assert_eq!(listed(&store), live);
    let image = killed_image(&dir);
    assert_eq!(store.compact_list(b"l").unwrap(), 66);
    assert_eq!(listed(&store), live);
    assert_eq!(store.compact_list(b"l").unwrap(), 0);
    let after = killed_image(&dir);
    for d in [image, after] {
        let s = open(&d);
        assert_eq!(listed(&s), live);
        assert_eq!(s.list_len(b"l").unwrap(), live.len() as u64);
    }
}

/// A list's or queue's name and item keys share the key limit (plus 2 bytes); an
/// operation over it stores nothing.
#[test]
fn limits_of_lists_and_queues() {
    use accretion::limits::SHARDED_KEY_LEN_BYTES_MAX as MAX;
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let name = vec![b'n'; 100];
    let fits = vec![b'k'; MAX - 102];
    store.set_in_list(&name, &fits, b"v").unwrap();
    let over = vec![b'k'; MAX - 101];
    assert!(matches!(
        store.set_in_list(&name, &over, b"v"),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.push_to_queue_tail(&vec![b'q'; MAX], b"v"),
        Err(Error::LimitExceeded { .. })
    ));
    assert_eq!(store.list_len(&name).unwrap(), 1);
    assert_eq!(store.queue_len(&vec![b'q'; MAX]).unwrap_or(0), 0);
    // Empty names and keys are names and keys like any other.
    store.set_in_list(b"", b"", b"").unwrap();
    assert_eq!(store.push_to_queue_tail(b"", b"x").unwrap(), 1 << 63);
    assert_eq!(store.list_len(b"").unwrap(), 1);
    assert_eq!(store.queue_len(b"").unwrap(), 1);
}

/// A queue grows in its one shard until that shard cannot split further: then a push is
/// `LimitExceeded`, and the queue holds every entry pushed before.
#[test]
fn a_queue_past_its_shard_is_refused_whole() {
    let dir = Dir::temporary().unwrap();
    let store = ShardedStore::open(&dir, "kv", ShardedOptions::default()).unwrap();
    let mut pushed = 0u64;
    let err = loop {
        match store.push_to_queue_tail(b"q", &pushed.to_le_bytes()) {
            Ok(_) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 40_000, "a queue grew past one shard's slots");
    };
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
    assert!(pushed > 20_000, "only {pushed} entries fit");
    assert_eq!(store.queue_len(b"q").unwrap(), pushed);
    let last = store.peek_queue_tail(b"q").unwrap().unwrap();
    assert_eq!(&*last.value, &(pushed - 1).to_le_bytes());
    // Popping makes room again (in every row, once enough are gone).
    for _ in 0..2_000 {
        store.pop_queue_head(b"q").unwrap().unwrap();
    }
    store.push_to_queue_tail(b"q", b"again").unwrap();
    assert_eq!(store.queue_len(b"q").unwrap(), pushed - 2_000 + 1);
}

/// Threads push and pop the same queues and set and promote in the same lists: no entry
/// is lost or returned twice, and lengths agree with the entries.
#[test]
fn threads_on_the_same_lists_and_queues() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let popped = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (store, popped) = (&store, &popped);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for n in 0..400u64 {
                    let v = (t * 1000 + n).to_le_bytes();
                    store.push_to_queue_tail(b"jobs", &v).unwrap();
                    if rng.random_bool(0.5)
                        && let Some(item) = store.pop_queue_head(b"jobs").unwrap()
                    {
                        popped.lock().unwrap().push(item.value.to_vec());
                    }
                    let k = format!("k{}", rng.random_range(0..50));
                    store
                        .set_in_list_promoting(b"shared", k.as_bytes(), &v)
                        .unwrap();
                }
            });
        }
    });
    let mut all = popped.into_inner().unwrap();
    all.extend(store.iter_queue(b"jobs").map(|i| i.unwrap().value.to_vec()));
    assert_eq!(all.len(), 1600);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1600, "an entry was returned twice");
    let items: Vec<_> = store.iter_list(b"shared").map(|i| i.unwrap()).collect();
    assert_eq!(items.len() as u64, store.list_len(b"shared").unwrap());
    assert!(items.len() <= 50);
}

/// A closed store holding the model's lists, queues and keys, built in 20 KiB shards:
/// `steps` random steps, then 300 keys more (so that the shards split).
fn closed_store_with(seed: u64, steps: usize) -> (Dir, Model) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = Dir::temporary().unwrap();
    let mut m = Model::default();
    {
        let store = open(&dir);
        for _ in 0..steps {
            step(&store, &mut m, &mut rng);
        }
        for i in 0..300u32 {
            let (k, v) = (format!("extra-{i}").into_bytes(), value(&mut rng));
            store.set(&k, &v).unwrap();
            m.kv.insert(k, v);
        }
        store.close().unwrap();
    }
    (dir, m)
}

/// What a damaged store may answer: a typed error, or the model's contents; never a
/// panic and never other contents. Returns what went wrong.
fn serves_model_or_errors(image: &Dir, m: &Model) -> Result<(), String> {
    let s = match ShardedStore::open(image, "kv", tiny()) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    for (name, list) in &m.lists {
        let items: Result<Vec<_>, _> = s
            .iter_list(name)
            .map(|i| i.map(|i| (i.key.to_vec(), i.value.to_vec())))
            .collect();
        if let Ok(items) = items
            && items != list.iter().cloned().collect::<Vec<_>>()
        {
            return Err(format!("list {name:?} reads {} items", items.len()));
        }
        if let Ok(n) = s.list_len(name)
            && n != list.len() as u64
        {
            return Err(format!("list {name:?} has length {n}"));
        }
    }
    for (name, queue) in &m.queues {
        let items: Result<Vec<_>, _> = s
            .iter_queue(name)
            .map(|i| i.map(|i| (i.index, i.value.to_vec())))
            .collect();
        if let Ok(items) = items
            && items != queue.iter().cloned().collect::<Vec<_>>()
        {
            return Err(format!("queue {name:?} reads {} entries", items.len()));
        }
    }
    for (k, v) in &m.kv {
        if let Ok(got) = s.get(k)
            && got.as_deref() != Some(&v[..])
        {
            return Err(format!("{k:?} reads {got:?}"));
        }
    }
    Ok(())
}

/// The corruption sweep: every file of a closed store with lists and queues removed,
/// emptied, cut short, or with bytes flipped (in the logs, every 61st byte, so that
/// batch records are hit inside): each open gives a typed error or the exact contents
/// (reads of damaged records may fail), never a panic or other contents.
#[test]
fn corruption_sweep_of_a_store_with_lists_and_queues() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let (dir, m) = closed_store_with(7, 600);
    let files = snapshot(dir.path());
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut refused = 0;
    for path in files.keys().filter(|p| p.starts_with("kv")) {
        let bytes = &files[path];
        let len = bytes.len();
        let mut damages: Vec<(String, Option<Vec<u8>>)> = vec![
            ("removed".into(), None),
            ("emptied".into(), Some(Vec::new())),
            ("halved".into(), Some(bytes[..len / 2].to_vec())),
        ];
        let is_log = path.components().any(|c| c.as_os_str() == "data");
        let stride = if is_log { 61 } else { len / 7 + 1 };
        // Only bytes that are not zero in a data file (its zeroed tail is never read).
        for at in (0..len)
            .step_by(stride)
            .filter(|&at| !is_log || bytes[at] != 0)
        {
            let mut b = bytes.clone();
            b[at] ^= 0x41;
            damages.push((format!("byte {at} flipped"), Some(b)));
        }
        for (what, damaged) in damages {
            let mut f = files.clone();
            match damaged {
                None => drop(f.remove(path)),
                Some(b) => drop(f.insert(path.clone(), b)),
            }
            let image = Dir::temporary().unwrap();
            for (rel, b) in &f {
                let to = image.path().join(rel);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::write(to, b).unwrap();
            }
            cases += 1;
            if ShardedStore::open(&image, "kv", tiny()).is_err() {
                refused += 1;
            }
            match catch_unwind(AssertUnwindSafe(|| serves_model_or_errors(&image, &m))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{} {what}: {e}", path.display())),
                Err(_) => failures.push(format!("{} {what}: panic", path.display())),
            }
        }
    }
    println!("{cases} damaged images, {refused} refused at open");
    assert!(
        cases > 200 && refused > 0,
        "{cases} cases, {refused} refused"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// `tests/fixtures/v1-sharded`: a ShardedStore of format 1 with lists and queues, checked
// in. Rewritten (only on purpose: it hides a format change from the test below) with
// `ACCRETION_WRITE_FIXTURES=1 cargo test --test it -- sharded_lists::write_sharded_fixture`.
// Its contents are the model of `closed_store_with(FIXTURE_SEED, FIXTURE_STEPS)`, which
// is deterministic: a change of `step` changes them too.

const FIXTURE_SHARDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-sharded");
const FIXTURE_SEED: u64 = 11;
const FIXTURE_STEPS: usize = 400;

#[test]
fn write_sharded_fixture() {
    if std::env::var("ACCRETION_WRITE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let (dir, _) = closed_store_with(FIXTURE_SEED, FIXTURE_STEPS);
    let target = std::path::Path::new(FIXTURE_SHARDED);
    if target.exists() {
        std::fs::remove_dir_all(target).unwrap();
    }
    for (rel, bytes) in snapshot(dir.path()) {
        if rel.file_name().is_some_and(|n| n == "accretion.lock") {
            continue;
        }
        let to = target.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

/// A copy of the fixture opens cleanly (trusting its rows), reads back exactly its
/// model's keys, lists and queues, and takes new writes; with every shard's check
/// removed, it opens by rebuilding the rows from the records, to the same contents.
#[test]
fn fixture_v1_sharded_reads_back_through_the_api() {
    let (_, m) = closed_store_with(FIXTURE_SEED, FIXTURE_STEPS);
    for drop_meta in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v1-sharded");
        crate::fixtures::copy_dir(std::path::Path::new(FIXTURE_SHARDED), &path);
        let mut shards = 0;
        for e in std::fs::read_dir(path.join("kv")).unwrap() {
            let p = e.unwrap().path();
            if p.join("meta").exists() {
                shards += 1;
                if drop_meta {
                    std::fs::remove_dir_all(p.join("meta")).unwrap();
                }
            }
        }
        assert!(shards >= 2, "the fixture has {shards} shards");
        let dir = Dir::open(&path).unwrap();
        let store = open(&dir);
        let rebuilt = store.stats().rebuilt_at_open;
        assert_eq!(rebuilt > 0, drop_meta, "{rebuilt} shards rebuilt");
        check(&store, &m, &format!("fixture, checks dropped: {drop_meta}"));
        store.push_to_queue_tail(b"queue-0", b"new").unwrap();
        store.set_in_list(b"list-0", b"new", b"write").unwrap();
    }
}
