//! LogStore through its public API: seeded models against a BTreeMap, the EdgeKV
//! regressions, merges from many threads, time to live, limits.
//!
//! Segments are kept small (4 KiB to 64 KiB) so that rolls, hint files and compactions
//! happen within a few hundred operations. A reopen may come with or without a sync:
//! every write that returned survives a drop of the store (only a power loss may take
//! writes not yet synced).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accretion::limits::{LOG_KEY_LEN_BYTES_MAX, LOG_VALUE_LEN_BYTES_MAX};
use accretion::{Dir, Error, Iter, LogOptions, LogStore, MergeFn, WriteBatch};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::common::Seeded;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// Entries copied out of a store or a model, in key order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The name the stores are opened under.
const NAME: &str = "kv";

/// Key bytes of the models: few, so keys collide, with the extremes so that prefix and
/// range ends are exercised (`\xff` has no successor).
const ALPHABET: [u8; 4] = [0x00, b'a', b'b', 0xff];

/// A prefix shared by some keys: eight bytes, the length the key directory compares
/// inline before it looks at the rest.
const SHARED: &[u8; 8] = b"\x00shared-";

/// The models' merge operator: appends the operand; an empty operand deletes the key.
fn concat(_key: &[u8], current: Option<&[u8]>, operand: &[u8]) -> Option<Vec<u8>> {
    if operand.is_empty() {
        return None;
    }
    let mut value = current.unwrap_or_default().to_vec();
    value.extend_from_slice(operand);
    Some(value)
}

fn concat_operator() -> Option<(String, Arc<MergeFn>)> {
    Some(("concat".to_string(), Arc::new(concat) as Arc<MergeFn>))
}

fn model_merge(model: &mut Model, key: &[u8], operand: &[u8]) {
    match concat(key, model.get(key).map(Vec::as_slice), operand) {
        Some(value) => model.insert(key.to_vec(), value),
        None => model.remove(key),
    };
}

/// Options with small segments and no automatic compaction.
fn small(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// A store directory at a fixed path, so that it can be closed and opened again. The
/// directory is removed when the value is dropped (after every `Dir` opened from it).
struct Place {
    tmp: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            tmp: tempfile::Builder::new()
                .prefix("accretion-log-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn open(&self) -> Dir {
        Dir::open(self.path()).unwrap()
    }

    /// The store's own directory.
    fn store_path(&self) -> PathBuf {
        self.path().join(NAME)
    }

    /// Names of the entries of the store's directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store_path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn is_log_segment(name: &str) -> bool {
    name.strip_prefix("log-")
        .is_some_and(|id| id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()))
}

/// What the store's iterators yield.
type Entry = accretion::Result<(accretion::Value, accretion::Value)>;

/// An entry's key and value, copied out; panics on an `Err` entry.
fn owned(entry: Entry) -> (Vec<u8>, Vec<u8>) {
    let (k, v) = entry.unwrap();
    (k.to_vec(), v.to_vec())
}

fn collect(it: impl Iterator<Item = Entry>) -> Pairs {
    it.map(owned).collect()
}

fn pairs<'a>(it: impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>) -> Pairs {
    it.map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// An entry in a few words, for failure messages: the key and the value's length and
/// first bytes.
fn show(entry: Option<&(Vec<u8>, Vec<u8>)>) -> String {
    match entry {
        Some((k, v)) => format!("{k:x?} => {} bytes {:x?}", v.len(), &v[..v.len().min(12)]),
        None => "nothing".to_string(),
    }
}

/// Asserts that two entry lists are equal, reporting the first difference only.
#[track_caller]
fn assert_same(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)], ctx: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{ctx}: {} entries, want {}; first difference at {at}: got {}, want {}",
        got.len(),
        want.len(),
        show(got.get(at)),
        show(want.get(at))
    );
}

fn keys_of(store: &LogStore) -> Vec<Vec<u8>> {
    store.iter().map(|e| owned(e).0).collect()
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A key of zero to three bytes of the alphabet, rarely empty; three times in eight after
/// [`SHARED`] (once or three times), so that some keys are longer than eight bytes (or 22)
/// and differ only past them.
fn random_key(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..20) {
        0 => 0,
        1..5 => 1,
        5..10 => 2,
        _ => 3,
    };
    // The key directory keeps keys of up to 22 bytes inline and longer ones behind a
    // pointer: three shared prefixes make 24 bytes, so both kinds meet.
    let mut key = match rng.random_range(0..8) {
        0 | 1 => SHARED.to_vec(),
        2 => SHARED.repeat(3),
        _ => Vec::new(),
    };
    key.extend((0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]));
    key
}

/// A value: usually short, sometimes large enough to fill a good part of a segment.
fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.random_ratio(1, 20) {
        rng.random_range(200..1500)
    } else {
        rng.random_range(0..40)
    };
    random_bytes(rng, len)
}

/// A merge operand: empty (which deletes) one time in eight.
fn random_operand(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..8);
    random_bytes(rng, len)
}

fn random_bound(rng: &mut StdRng, key: fn(&mut StdRng) -> Vec<u8>) -> Bound<Vec<u8>> {
    match rng.random_range(0..3) {
        0 => Bound::Included(key(rng)),
        1 => Bound::Excluded(key(rng)),
        _ => Bound::Unbounded,
    }
}

fn in_bounds(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(b) => key >= b.as_slice(),
        Bound::Excluded(b) => key > b.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(b) => key <= b.as_slice(),
        Bound::Excluded(b) => key < b.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn as_slices<'a>(
    lo: &'a Bound<Vec<u8>>,
    hi: &'a Bound<Vec<u8>>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        lo.as_ref().map(Vec::as_slice),
        hi.as_ref().map(Vec::as_slice),
    )
}

/// Drives `it` with a random mix of `next` and `next_back` and checks it against `want`:
/// each end yields the next entry from its side, the ends never cross, and once they
/// meet both keep returning `None`.
fn check_alternation(mut it: Iter, want: &[(Vec<u8>, Vec<u8>)], rng: &mut StdRng, ctx: &str) {
    let (mut front, mut back) = (0usize, want.len());
    let mut calls = 0;
    loop {
        calls += 1;
        if rng.random_bool(0.5) {
            let got = it.next().map(owned);
            let expected = (front < back).then(|| want[front].clone());
            assert!(
                got == expected,
                "{ctx}: next #{calls} (front {front}, back {back}): got {}, want {}",
                show(got.as_ref()),
                show(expected.as_ref())
            );
            if front < back {
                front += 1;
            } else {
                break;
            }
        } else {
            let got = it.next_back().map(owned);
            let expected = (front < back).then(|| want[back - 1].clone());
            assert!(
                got == expected,
                "{ctx}: next_back #{calls} (front {front}, back {back}): got {}, want {}",
                show(got.as_ref()),
                show(expected.as_ref())
            );
            if front < back {
                back -= 1;
            } else {
                break;
            }
        }
    }
    assert!(it.next().is_none(), "{ctx}: next after the ends met");
    assert!(
        it.next_back().is_none(),
        "{ctx}: next_back after the ends met"
    );
}

/// Checks every read of `store` against `model`: a sample of `get` and `contains`, `len`,
/// iteration both ways, a random range, a random prefix, and `next`/`next_back` mixed.
fn check(store: &LogStore, model: &Model, rng: &mut StdRng, ctx: &str) {
    check_with(store, model, rng, ctx, random_key);
}

/// [`check`], with the keys, range bounds and prefixes drawn by `key`.
fn check_with(
    store: &LogStore,
    model: &Model,
    rng: &mut StdRng,
    ctx: &str,
    key: fn(&mut StdRng) -> Vec<u8>,
) {
    let random_key = key;
    assert_eq!(store.len(), model.len() as u64, "{ctx}: len");
    assert_eq!(store.is_empty(), model.is_empty(), "{ctx}: is_empty");
    for _ in 0..8 {
        let key = random_key(rng);
        let got = store.get(&key).unwrap();
        assert_eq!(
            got.as_deref(),
            model.get(&key).map(Vec::as_slice),
            "{ctx}: get {key:x?}"
        );
        assert_eq!(
            store.contains(&key),
            model.contains_key(&key),
            "{ctx}: contains {key:x?}"
        );
    }
    let all = pairs(model.iter());
    assert_same(
        &collect(store.iter()),
        &all,
        &format!("{ctx}: forward iteration"),
    );
    let mut reverse = collect(store.iter().rev());
    reverse.reverse();
    assert_same(&reverse, &all, &format!("{ctx}: reverse iteration"));

    let (lo, hi) = (random_bound(rng, key), random_bound(rng, key));
    let want = pairs(model.iter().filter(|(k, _)| in_bounds(k, &lo, &hi)));
    let got = collect(store.range(as_slices(&lo, &hi)));
    assert_same(&got, &want, &format!("{ctx}: range {lo:x?}..{hi:x?}"));
    let mut got = collect(store.range(as_slices(&lo, &hi)).rev());
    got.reverse();
    assert_same(
        &got,
        &want,
        &format!("{ctx}: reverse range {lo:x?}..{hi:x?}"),
    );
    check_alternation(
        store.range(as_slices(&lo, &hi)),
        &want,
        rng,
        &format!("{ctx}: range {lo:x?}..{hi:x?}"),
    );

    let mut prefix = random_key(rng);
    prefix.truncate(rng.random_range(0..=prefix.len()));
    let want = pairs(model.iter().filter(|(k, _)| k.starts_with(&prefix)));
    assert_same(
        &collect(store.prefix(&prefix)),
        &want,
        &format!("{ctx}: prefix {prefix:x?}"),
    );
    let mut got = collect(store.prefix(&prefix).rev());
    got.reverse();
    assert_same(&got, &want, &format!("{ctx}: reverse prefix {prefix:x?}"));

    check_alternation(store.iter(), &all, rng, &format!("{ctx}: iter"));
}

/// Checks that `store` holds exactly `model`, reading every key.
fn check_exact(store: &LogStore, model: &Model, ctx: &str) {
    assert_same(
        &collect(store.iter()),
        &pairs(model.iter()),
        &format!("{ctx}: contents"),
    );
    for (k, v) in model {
        assert_eq!(
            store.get(k).unwrap().as_deref(),
            Some(v.as_slice()),
            "{ctx}: get {k:x?}"
        );
    }
    assert_eq!(store.len(), model.len() as u64, "{ctx}: len");
}

// ---------------------------------------------------------------------------------------
// Seeded model

/// One store driven by random operations next to its model.
struct Harness {
    place: Place,
    dir: Option<Dir>,
    store: Option<LogStore>,
    opts: LogOptions,
    model: Model,
}

impl Harness {
    fn new(opts: LogOptions) -> Harness {
        let place = Place::new();
        let dir = place.open();
        let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
        Harness {
            place,
            dir: Some(dir),
            store: Some(store),
            opts,
            model: Model::new(),
        }
    }

    fn store(&self) -> &LogStore {
        self.store.as_ref().expect("open")
    }

    /// Drops the store (and sometimes the directory handle) and opens it again.
    fn reopen(&mut self, new_dir: bool) {
        self.store = None;
        if new_dir {
            self.dir = None;
            self.dir = Some(self.place.open());
        }
        let dir = self.dir.as_ref().expect("open");
        self.store = Some(LogStore::open(dir, NAME, self.opts.clone()).unwrap());
    }

    /// One random write (put, delete, merge or batch), to the store and the model.
    fn random_write(&mut self, rng: &mut StdRng) {
        let store = self.store.as_ref().expect("open");
        let model = &mut self.model;
        match rng.random_range(0..100) {
            0..45 => {
                let (k, v) = (random_key(rng), random_value(rng));
                store.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            45..50 => {
                // A time to live far in the future: reads as a plain put, but takes the
                // paths for expiring keys (len, hints, compaction).
                let (k, v) = (random_key(rng), random_value(rng));
                store
                    .put_with_ttl(&k, &v, Duration::from_secs(3600))
                    .unwrap();
                model.insert(k, v);
            }
            50..70 => {
                let k = random_key(rng);
                store.delete(&k).unwrap();
                model.remove(&k);
            }
            70..85 => {
                let (k, operand) = (random_key(rng), random_operand(rng));
                if self.opts.merge_operator.is_some() && rng.random_bool(0.5) {
                    store.merge_default(&k, &operand).unwrap();
                } else {
                    store.merge(&k, &operand, concat).unwrap();
                }
                model_merge(model, &k, &operand);
            }
            _ => {
                let mut batch = WriteBatch::new();
                let n = rng.random_range(1..6);
                for _ in 0..n {
                    let k = random_key(rng);
                    match rng.random_range(0..3) {
                        0 => {
                            let v = random_value(rng);
                            batch.put(&k, &v);
                            model.insert(k, v);
                        }
                        1 => {
                            batch.delete(&k);
                            model.remove(&k);
                        }
                        _ => {
                            let operand = random_operand(rng);
                            batch.merge(&k, &operand, concat);
                            model_merge(model, &k, &operand);
                        }
                    }
                }
                assert_eq!(batch.len(), n);
                assert!(!batch.is_empty());
                store.write(&batch).unwrap();
            }
        }
    }

    fn step(&mut self, rng: &mut StdRng, ctx: &str) {
        match rng.random_range(0..100) {
            0..80 => self.random_write(rng),
            80..81 => {
                self.store().clear().unwrap();
                self.model.clear();
            }
            81..84 => {
                // Every write that returned survives a drop, synced or not.
                if rng.random_bool(0.5) {
                    self.store().sync().unwrap();
                }
                let new_dir = rng.random_bool(0.3);
                self.reopen(new_dir);
                let stats = self.store().stats();
                assert_eq!(
                    stats.damaged_records, 0,
                    "{ctx}: a clean reopen finds no damage"
                );
                assert_eq!(stats.damaged_bytes, 0, "{ctx}");
            }
            84..85 => {
                let before = self.store().stats().generation;
                self.store().compact().unwrap();
                let stats = self.store().stats();
                assert!(
                    stats.generation > before,
                    "{ctx}: compact starts a generation"
                );
                assert!(stats.last_compaction.is_some(), "{ctx}");
            }
            85..88 => self.store().sync().unwrap(),
            88..94 => {
                // An iterator is a snapshot: writes (and a compaction) after it was made
                // do not change what it yields.
                let frozen = pairs(self.model.iter());
                let forward = self.store().iter();
                let backward = self.store().iter();
                for _ in 0..rng.random_range(1..6) {
                    self.random_write(rng);
                }
                if rng.random_bool(0.05) {
                    self.store().compact().unwrap();
                }
                assert_same(
                    &collect(forward),
                    &frozen,
                    &format!("{ctx}: snapshot iteration"),
                );
                let mut back = collect(backward.rev());
                back.reverse();
                assert_same(
                    &back,
                    &frozen,
                    &format!("{ctx}: snapshot reverse iteration"),
                );
            }
            _ => {
                // A value handle keeps its bytes whatever happens to the key later.
                let k = random_key(rng);
                let held = self.store().get(&k).unwrap();
                let old = self.model.get(&k).cloned();
                assert_eq!(held.as_deref(), old.as_deref(), "{ctx}: get {k:x?}");
                let v = random_value(rng);
                self.store().put(&k, &v).unwrap();
                self.model.insert(k.clone(), v);
                if rng.random_bool(0.5) {
                    self.store().delete(&k).unwrap();
                    self.model.remove(&k);
                }
                if rng.random_bool(0.05) {
                    self.store().compact().unwrap();
                }
                assert_eq!(
                    held.as_deref(),
                    old.as_deref(),
                    "{ctx}: held value of {k:x?}"
                );
            }
        }
    }
}

fn random_options(rng: &mut StdRng) -> LogOptions {
    LogOptions {
        segment_bytes: [4096, 8192, 64 << 10][rng.random_range(0..3)],
        sync_each_write: rng.random_ratio(1, 10),
        compact_dead_ratio: [None, Some(0.5), Some(0.2)][rng.random_range(0..3)],
        merge_operator: if rng.random_bool(0.5) {
            concat_operator()
        } else {
            None
        },
    }
}

#[test]
fn log_store_matches_model() {
    let mut s = Seeded::new("log_store_matches_model");
    const SEQUENCES: usize = 16;
    const STEPS: usize = 250;
    for seq in 0..SEQUENCES {
        let opts = random_options(&mut s.rng);
        let mut h = Harness::new(opts.clone());
        for step in 0..STEPS {
            let ctx = format!("sequence {seq} ({opts:?}), step {step}");
            h.step(&mut s.rng, &ctx);
            check(h.store(), &h.model, &mut s.rng, &ctx);
        }
        // And once more from the files alone.
        h.store().sync().unwrap();
        h.reopen(true);
        check_exact(
            h.store(),
            &h.model,
            &format!("sequence {seq}: final reopen"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Proptest

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Merge(Vec<u8>, Vec<u8>),
    Batch(Vec<BatchStep>),
    Clear,
    Reopen,
    Compact,
}

#[derive(Debug, Clone)]
enum BatchStep {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Merge(Vec<u8>, Vec<u8>),
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    let short = prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 0..4);
    prop_oneof![
        3 => short.clone(),
        1 => short.prop_map(|k| [&SHARED[..], &k].concat()),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let value = prop::collection::vec(any::<u8>(), 0..400);
    let operand = prop::collection::vec(any::<u8>(), 0..6);
    let batch_step = prop_oneof![
        (key_strategy(), value.clone()).prop_map(|(k, v)| BatchStep::Put(k, v)),
        key_strategy().prop_map(BatchStep::Delete),
        (key_strategy(), operand.clone()).prop_map(|(k, o)| BatchStep::Merge(k, o)),
    ];
    prop_oneof![
        8 => (key_strategy(), value).prop_map(|(k, v)| Step::Put(k, v)),
        3 => key_strategy().prop_map(Step::Delete),
        3 => (key_strategy(), operand).prop_map(|(k, o)| Step::Merge(k, o)),
        3 => prop::collection::vec(batch_step, 0..5).prop_map(Step::Batch),
        1 => Just(Step::Clear),
        2 => Just(Step::Reopen),
        1 => Just(Step::Compact),
    ]
}

/// Generated operation sequences against the model; proptest shrinks a failure to a
/// minimal sequence. Its RNG is seeded from `ACCRETION_SEED` like every other test.
#[test]
fn log_store_proptest_ops() {
    let seeded = Seeded::new("log_store_proptest_ops");
    let config = ProptestConfig {
        cases: 16,
        rng_seed: RngSeed::Fixed(seeded.seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // One directory for all cases; each case uses its own store name.
    let dir = Dir::temporary().unwrap();
    let case = std::cell::Cell::new(0u32);
    proptest!(config, |(steps in prop::collection::vec(step_strategy(), 1..50))| {
        case.set(case.get() + 1);
        let name = format!("case{}", case.get());
        let opts = small(4096);
        let mut store = LogStore::open(&dir, &name, opts.clone()).unwrap();
        let mut model = Model::new();
        // The checks' own sampling is fixed, so that a shrunk case replays the same way.
        let mut rng = StdRng::seed_from_u64(7);
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Put(k, v) => {
                    store.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
                Step::Delete(k) => {
                    store.delete(&k).unwrap();
                    model.remove(&k);
                }
                Step::Merge(k, o) => {
                    store.merge(&k, &o, concat).unwrap();
                    model_merge(&mut model, &k, &o);
                }
                Step::Batch(ops) => {
                    let mut batch = WriteBatch::new();
                    for op in ops {
                        match op {
                            BatchStep::Put(k, v) => {
                                batch.put(&k, &v);
                                model.insert(k, v);
                            }
                            BatchStep::Delete(k) => {
                                batch.delete(&k);
                                model.remove(&k);
                            }
                            BatchStep::Merge(k, o) => {
                                batch.merge(&k, &o, concat);
                                model_merge(&mut model, &k, &o);
                            }
                        }
                    }
                    store.write(&batch).unwrap();
                }
                Step::Clear => {
                    store.clear().unwrap();
                    model.clear();
                }
                Step::Reopen => {
                    store.sync().unwrap();
                    drop(store);
                    store = LogStore::open(&dir, &name, opts.clone()).unwrap();
                }
                Step::Compact => store.compact().unwrap(),
            }
            check(&store, &model, &mut rng, &format!("{name} step {i}"));
        }
    });
}

// ---------------------------------------------------------------------------------------
// Many keys

/// Keys of the large model: `key-NNNNN`, nine bytes.
const LARGE_KEYS: usize = 12_000;

fn numbered(n: usize) -> Vec<u8> {
    format!("key-{n:05}").into_bytes()
}

/// A key of the large model, or one just after it (so that bounds fall between keys).
fn numbered_key(rng: &mut StdRng) -> Vec<u8> {
    let mut key = numbered(rng.random_range(0..LARGE_KEYS));
    if rng.random_ratio(1, 4) {
        key.push(b'~');
    }
    key
}

/// Enough distinct keys change between merges of the key directory's ordered view (it
/// merges past 8192 changes) that it merges several times, with iterators open across
/// the merges and a compaction in between.
#[test]
fn large_key_directory_matches_model() {
    const ROUNDS: usize = 8;
    const BATCHES: usize = 50;
    const BATCH_OPS: usize = 100;
    let mut s = Seeded::new("large_key_directory_matches_model");
    let dir = Dir::temporary().unwrap();
    let opts = small(1 << 20);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let mut model = Model::new();
    // (forward iterator partly consumed, backward iterator, snapshot, entries consumed)
    let mut open: Vec<(Iter, Iter, Pairs, usize)> = Vec::new();
    let mut ops = 0usize;
    for round in 0..ROUNDS {
        for b in 0..BATCHES {
            let mut batch = WriteBatch::new();
            for _ in 0..BATCH_OPS {
                // Mostly a stride through every key, so that changes are to distinct
                // keys and the view merges often; some at random, so that they collide.
                ops += 1;
                let k = if s.rng.random_ratio(4, 5) {
                    numbered(ops * 7919 % LARGE_KEYS)
                } else {
                    numbered(s.rng.random_range(0..LARGE_KEYS))
                };
                if s.rng.random_ratio(1, 4) {
                    batch.delete(&k);
                    model.remove(&k);
                } else {
                    let v = format!("{round}.{b}").into_bytes();
                    batch.put(&k, &v);
                    model.insert(k, v);
                }
            }
            store.write(&batch).unwrap();
            if b % 20 == 10 {
                let snapshot = pairs(model.iter());
                let mut forward = store.iter();
                let consumed = s.rng.random_range(0..200).min(snapshot.len());
                for want in &snapshot[..consumed] {
                    assert_eq!(forward.next().map(owned).as_ref(), Some(want));
                }
                open.push((forward, store.iter(), snapshot, consumed));
            }
        }
        check_with(
            &store,
            &model,
            &mut s.rng,
            &format!("round {round}"),
            numbered_key,
        );
        if round == 1 {
            store.compact().unwrap();
            check_with(
                &store,
                &model,
                &mut s.rng,
                &format!("round {round}, compacted"),
                numbered_key,
            );
        }
    }
    // Every iterator yields its snapshot, whatever happened since it was made.
    for (i, (forward, backward, snapshot, consumed)) in open.into_iter().enumerate() {
        let ctx = format!("iterator {i}");
        assert_same(&collect(forward), &snapshot[consumed..], &ctx);
        let mut back = collect(backward.rev());
        back.reverse();
        assert_same(&back, &snapshot, &ctx);
    }
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    check_exact(&store, &model, "reopened");
    check_with(&store, &model, &mut s.rng, "reopened", numbered_key);
}

// ---------------------------------------------------------------------------------------
// EdgeKV regressions

/// A restart after compaction, then an update and a delete, then another restart: no
/// stale value comes back and no deleted key reappears.
#[test]
fn restart_after_compaction_keeps_updates_and_deletes() {
    let place = Place::new();
    let opts = small(4096);
    let mut model = Model::new();
    let key = |i: usize| format!("key{i:03}").into_bytes();
    {
        let dir = place.open();
        let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
        for i in 0..100 {
            let v = format!("first {i} {}", "x".repeat(i % 40)).into_bytes();
            store.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        for i in (0..100).step_by(2) {
            let v = format!("second {i}").into_bytes();
            store.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        for i in (0..100).step_by(7) {
            store.delete(&key(i)).unwrap();
            model.remove(&key(i));
        }
        store.compact().unwrap();
        store.sync().unwrap();
        check_exact(&store, &model, "after compaction");
    }
    // Each round: restart, check, update and delete (some in the same segment as the
    // compaction's survivors, some after another compaction), sync, and again.
    for round in 0..4 {
        let dir = place.open();
        let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
        check_exact(&store, &model, &format!("round {round}: restarted"));
        for i in [1 + round * 3, 50 + round, 99 - round] {
            let v = format!("updated in round {round}").into_bytes();
            store.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        for i in [3 + round * 3, 60 + round] {
            store.delete(&key(i)).unwrap();
            model.remove(&key(i));
        }
        if round % 2 == 1 {
            store.compact().unwrap();
            // And an update and a delete after that compaction, in the new log.
            let v = format!("after compaction in round {round}").into_bytes();
            store.put(&key(2), &v).unwrap();
            model.insert(key(2), v);
            store.delete(&key(4 + round)).unwrap();
            model.remove(&key(4 + round));
        }
        check_exact(&store, &model, &format!("round {round}: before restart"));
        store.sync().unwrap();
    }
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    check_exact(&store, &model, "last restart");
    for i in 0..100 {
        if !model.contains_key(&key(i)) {
            assert!(
                store.get(&key(i)).unwrap().is_none(),
                "deleted key{i:03} is back"
            );
        }
    }
}

/// Every key is readable right after `compact()`, including values larger than a
/// segment and keys written while compactions run on another thread.
#[test]
fn every_key_readable_right_after_compact() {
    let dir = Dir::temporary().unwrap();
    let mut store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    let mut model = Model::new();
    for i in 0..400usize {
        let len = if i % 50 == 7 { 5000 } else { i % 90 };
        let v: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        store.put(format!("k{i:04}").as_bytes(), &v).unwrap();
        model.insert(format!("k{i:04}").into_bytes(), v);
        if i % 3 == 0 {
            store.delete(format!("k{:04}", i / 2).as_bytes()).unwrap();
            model.remove(format!("k{:04}", i / 2).as_bytes());
        }
    }
    for round in 0..3 {
        store.compact().unwrap();
        check_exact(&store, &model, &format!("right after compaction {round}"));
    }
    // And from the compacted generation's files alone.
    store.sync().unwrap();
    drop(store);
    store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    check_exact(&store, &model, "reopened after compactions");

    // Writes from another thread while this one compacts, over and over: to half of
    // the keys above and to new ones.
    let writer_model = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut model = model.clone();
            for i in 0..800usize {
                let k = format!("k{:04}", 200 + (i * 7) % 400).into_bytes();
                if i % 5 == 4 {
                    store.delete(&k).unwrap();
                    model.remove(&k);
                } else {
                    let v = format!("w{i}").repeat(1 + i % 9).into_bytes();
                    store.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
            }
            model
        });
        let mut compactions = 0;
        while !writer.is_finished() || compactions < 3 {
            store.compact().unwrap();
            compactions += 1;
        }
        writer.join().unwrap()
    });
    store.compact().unwrap();
    check_exact(&store, &writer_model, "after compactions during writes");
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    check_exact(&store, &writer_model, "reopened");
}

/// `clear()` followed by reads, iteration, `len`, writes, compaction and reopens.
#[test]
fn clear_then_get_iterate_and_reopen() {
    let place = Place::new();
    let opts = small(4096);
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    for i in 0..200u32 {
        store
            .put(format!("old{i:03}").as_bytes(), &[i as u8; 30])
            .unwrap();
    }
    let held = store.get(b"old007").unwrap().unwrap();
    let before_clear = store.iter();
    store.clear().unwrap();
    assert!(store.get(b"old007").unwrap().is_none());
    assert!(!store.contains(b"old000"));
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
    assert_eq!(store.iter().count(), 0);
    assert!(store.iter().next_back().is_none());
    assert_eq!(store.prefix(b"old").count(), 0);
    assert_eq!(store.range(b"a".as_slice()..b"z".as_slice()).count(), 0);
    assert_eq!(store.stats().keys, 0);
    assert_eq!(store.stats().live_bytes, 0);
    assert_eq!(
        held, [7u8; 30],
        "a handle from before the clear keeps its bytes"
    );
    assert_eq!(
        before_clear.count(),
        200,
        "an iterator from before the clear is a snapshot"
    );

    // Writes after the clear, then enough to finish the segment holding the clear, so
    // that the next open replays it from a hint.
    store.put(b"new", b"after clear").unwrap();
    for i in 0..60u32 {
        store
            .put(format!("z{i:02}").as_bytes(), &[1u8; 100])
            .unwrap();
        store.delete(format!("z{i:02}").as_bytes()).unwrap();
    }
    let want = vec![(b"new".to_vec(), b"after clear".to_vec())];
    assert_same(&collect(store.iter()), &want, "contents");
    store.sync().unwrap();
    drop(held);
    drop(store);

    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    assert!(store.stats().segments_from_hints > 0, "{:?}", store.stats());
    assert_same(&collect(store.iter()), &want, "after reopen");
    assert!(
        store.get(b"old007").unwrap().is_none(),
        "cleared key back after reopen"
    );
    assert_eq!(store.len(), 1);

    // A clear as the last record of the active segment (scanned, not hinted), then a
    // compaction and a reopen.
    store.clear().unwrap();
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    assert!(
        store.is_empty(),
        "clear in the active segment, after reopen"
    );
    assert_eq!(store.iter().count(), 0);
    store.put(b"again", b"1").unwrap();
    store.compact().unwrap();
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_same(
        &collect(store.iter()),
        &[(b"again".to_vec(), b"1".to_vec())],
        "contents",
    );
}

/// Deleting keys while iterating does not cut iteration short: the iterator yields every
/// key of its snapshot, and afterwards every surviving key is there.
#[test]
fn deleting_during_iteration_does_not_cut_it_short() {
    let dir = Dir::temporary().unwrap();
    // Automatic compaction on: the deletes make segments dead while the iterator runs.
    let opts = LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    let key = |i: usize| format!("item{i:04}").into_bytes();
    let value = |i: usize| format!("value of {i}").into_bytes();
    let mut model = Model::new();
    for i in 0..300 {
        store.put(&key(i), &value(i)).unwrap();
        model.insert(key(i), value(i));
    }
    let all = pairs(model.iter());

    // Forward: delete the key just yielded every third time, and the one ahead of it
    // every other time; compact now and then.
    let mut seen = Vec::new();
    for (n, entry) in store.iter().enumerate() {
        let (k, v) = entry.unwrap();
        seen.push((k.to_vec(), v.to_vec()));
        if n % 3 == 0 {
            store.delete(&k).unwrap();
            model.remove(&*k);
        }
        if n % 2 == 0 {
            store.delete(&key(n + 1)).unwrap();
            model.remove(&key(n + 1));
        }
        if n % 100 == 50 {
            store.compact().unwrap();
        }
    }
    assert_same(&seen, &all, "forward iteration while deleting");
    assert_same(&collect(store.iter()), &pairs(model.iter()), "survivors");

    // Backward over a prefix: delete keys behind the cursor (still to come).
    let snapshot = pairs(model.iter().filter(|(k, _)| k.starts_with(b"item01")));
    let mut seen = Vec::new();
    let mut it = store.prefix(b"item01");
    while let Some(entry) = it.next_back() {
        let (k, v) = entry.unwrap();
        seen.push((k.to_vec(), v.to_vec()));
        for (ahead, _) in snapshot.iter().take(3) {
            store.delete(ahead).unwrap();
            model.remove(ahead);
        }
    }
    seen.reverse();
    assert_same(&seen, &snapshot, "backward iteration while deleting");
    assert_same(&collect(store.iter()), &pairs(model.iter()), "survivors");
    assert_eq!(store.len(), model.len() as u64);
}

/// Eight threads each merge 200 unique operands into one key: the final value holds
/// every operand exactly once, each thread's in its own order.
#[test]
fn concurrent_merges_apply_every_operand_once() {
    const THREADS: usize = 8;
    const MERGES: usize = 200;
    /// `"TT.III;"`
    const OPERAND_BYTES: usize = 7;
    let dir = Dir::temporary().unwrap();
    let opts = LogOptions {
        segment_bytes: 256 << 10,
        merge_operator: concat_operator(),
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for i in 0..MERGES {
                    let operand = format!("{t:02}.{i:03};");
                    assert_eq!(operand.len(), OPERAND_BYTES);
                    // Half the threads through the registered operator.
                    if t % 2 == 0 {
                        store.merge_default(b"counter", operand.as_bytes()).unwrap();
                    } else {
                        store.merge(b"counter", operand.as_bytes(), concat).unwrap();
                    }
                }
            });
        }
    });
    let check_value = |value: &[u8], ctx: &str| {
        assert_eq!(
            value.len(),
            THREADS * MERGES * OPERAND_BYTES,
            "{ctx}: length"
        );
        let mut seen = HashSet::new();
        let mut last = [None::<usize>; THREADS];
        for chunk in value.chunks(OPERAND_BYTES) {
            let s = std::str::from_utf8(chunk).unwrap();
            let t: usize = s[0..2].parse().unwrap();
            let i: usize = s[3..6].parse().unwrap();
            assert!(seen.insert((t, i)), "{ctx}: operand {s} twice");
            assert!(
                last[t].is_none_or(|l| l < i),
                "{ctx}: thread {t} out of order at {s}"
            );
            last[t] = Some(i);
        }
        assert_eq!(seen.len(), THREADS * MERGES, "{ctx}: operands");
    };
    check_value(&store.get(b"counter").unwrap().unwrap(), "in memory");
    assert_eq!(store.len(), 1);
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    check_value(&store.get(b"counter").unwrap().unwrap(), "after reopen");
}

/// With `sync_each_write`, a lone writer syncs once per write, while concurrent writers
/// share syncs (group commit): 8 threads need far fewer syncs than writes, and every
/// write is there after a reopen. A `sync` with nothing new to sync makes none.
#[test]
fn durable_writers_share_syncs() {
    const THREADS: usize = 8;
    const PUTS: usize = 100;
    let dir = Dir::temporary().unwrap();
    let opts = LogOptions {
        sync_each_write: true,
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    for i in 0..PUTS {
        store.put(format!("alone-{i}").as_bytes(), b"v").unwrap();
    }
    assert_eq!(store.stats().syncs, PUTS as u64, "one sync per lone write");
    store.sync().unwrap();
    assert_eq!(store.stats().syncs, PUTS as u64, "nothing new to sync");

    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for i in 0..PUTS {
                    store
                        .put(format!("{t}-{i}").as_bytes(), &[t as u8; 100])
                        .unwrap();
                }
            });
        }
    });
    let shared = store.stats().syncs - PUTS as u64;
    let writes = (THREADS * PUTS) as u64;
    assert!(
        shared * 2 <= writes,
        "{writes} concurrent durable writes took {shared} syncs"
    );
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_eq!(store.len(), (PUTS + THREADS * PUTS) as u64);
    for t in 0..THREADS {
        for i in 0..PUTS {
            let value = store.get(format!("{t}-{i}").as_bytes()).unwrap();
            assert_eq!(value.as_deref(), Some(&[t as u8; 100][..]), "{t}-{i}");
        }
    }
}

/// Reads, iteration and writes go on while compactions run and switch generations:
/// every read finds its key's value (never another key's bytes, never nothing), every
/// full iteration sees every key once and in order, and afterwards (and after a
/// reopen) the store equals the writer's model.
#[test]
fn reads_and_writes_go_on_through_compaction() {
    const KEYS: usize = 20_000;
    let dir = Dir::temporary().unwrap();
    let opts = LogOptions {
        segment_bytes: 256 << 10,
        compact_dead_ratio: None,
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let key = |i: usize| format!("key-{i:06}").into_bytes();
    let value = |i: usize, version: usize| format!("key-{i:06}={version}").into_bytes();
    let mut model: Vec<usize> = vec![1; KEYS];
    for version in 0..2 {
        for i in 0..KEYS {
            store.put(&key(i), &value(i, version)).unwrap();
        }
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..3 {
                store.compact().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        scope.spawn(|| {
            let mut rng = StdRng::seed_from_u64(5);
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || rounds < 2 {
                for _ in 0..2000 {
                    let i = rng.random_range(0..KEYS);
                    let got = store.get(&key(i)).unwrap().expect("present");
                    assert!(got.starts_with(&key(i)), "key {i} read {got:?}");
                }
                let mut n = 0;
                for (k, v) in store.iter().map(Result::unwrap) {
                    assert_eq!(&*k, key(n), "in order, none missed or repeated");
                    assert!(v.starts_with(&key(n)));
                    n += 1;
                }
                assert_eq!(n, KEYS);
                rounds += 1;
            }
        });
        let mut rng = StdRng::seed_from_u64(6);
        let mut version = 2;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            let i = rng.random_range(0..KEYS);
            store.put(&key(i), &value(i, version)).unwrap();
            model[i] = version;
            version += 1;
        }
    });
    let check = |store: &LogStore, ctx: &str| {
        assert_eq!(store.len(), KEYS as u64, "{ctx}");
        for (i, version) in model.iter().enumerate() {
            let got = store.get(&key(i)).unwrap().expect("present");
            assert_eq!(&*got, value(i, *version), "{ctx}: key {i}");
        }
    };
    check(&store, "after compactions");
    store.sync().unwrap();
    drop(store);
    check(&LogStore::open(&dir, NAME, opts).unwrap(), "after reopen");
}

/// A value handle taken before an overwrite, a delete, a clear or compactions still reads
/// its old bytes; once the handles are gone, retired segments' files go too.
#[test]
fn value_handle_outlives_overwrite_delete_and_compaction() {
    let place = Place::new();
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    store.put(b"a", b"first a").unwrap();
    store.put(b"b", b"first b").unwrap();
    store.put(b"c", b"first c").unwrap();
    let a1 = store.get(b"a").unwrap().unwrap();
    let b1 = store.get(b"b").unwrap().unwrap();
    let c1 = store.get(b"c").unwrap().unwrap();

    store.put(b"a", b"second a").unwrap();
    assert_eq!(a1, b"first a", "after overwrite");
    assert_eq!(store.get(b"a").unwrap().unwrap(), b"second a");
    store.delete(b"b").unwrap();
    assert_eq!(b1, b"first b", "after delete");
    for i in 0..100u32 {
        store.put(format!("fill{i}").as_bytes(), &[9; 200]).unwrap();
    }
    store.compact().unwrap();
    assert_eq!(a1, b"first a", "after compaction");
    assert_eq!(b1, b"first b", "after compaction");
    assert_eq!(c1, b"first c", "after compaction");
    let c2 = store.get(b"c").unwrap().unwrap();
    let cloned = a1.clone();
    drop(a1);
    store.put(b"c", b"second c").unwrap();
    store.compact().unwrap();
    store.clear().unwrap();
    store.compact().unwrap();
    assert_eq!(cloned, b"first a", "clone, after the original is dropped");
    assert_eq!(cloned.as_bytes(), b"first a");
    assert_eq!(b1, b"first b");
    assert_eq!(c1, b"first c");
    assert_eq!(
        c2, b"first c",
        "a handle into a base segment, after it is retired"
    );
    assert!(store.is_empty());
    drop((cloned, b1, c1, c2));

    // Every handle is gone: only the segments in use are left on disk.
    let stats = store.stats();
    let segment_dirs = place.entries().iter().filter(|n| is_log_segment(n)).count() as u64;
    let base_dirs: u64 = place
        .entries()
        .iter()
        .filter(|n| n.starts_with('g'))
        .map(|g| {
            std::fs::read_dir(place.store_path().join(g))
                .unwrap()
                .filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with("-hint")
                })
                .count() as u64
        })
        .sum();
    assert_eq!(
        segment_dirs + base_dirs,
        stats.segments,
        "segment files on disk vs in use: {:?}, {stats:?}",
        place.entries()
    );
}

// ---------------------------------------------------------------------------------------
// Time to live

#[test]
fn ttl_expires_and_compaction_drops_it() {
    let place = Place::new();
    let opts = small(4096);
    let ttl = Duration::from_millis(200);
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let start = Instant::now();
    store.put(b"plain", b"stays").unwrap();
    store.put_with_ttl(b"short", b"goes", ttl).unwrap();
    store.put_with_ttl(b"renewed", b"old", ttl).unwrap();
    store.put(b"renewed", b"new").unwrap();
    store.put(b"shortened", b"was plain").unwrap();
    store
        .put_with_ttl(b"shortened", b"now expiring", ttl)
        .unwrap();
    store
        .put_with_ttl(b"long", b"an hour", Duration::from_secs(3600))
        .unwrap();
    store
        .put_with_ttl(b"forever", b"the longest", Duration::MAX)
        .unwrap();
    let live = [
        &b"forever"[..],
        b"long",
        b"plain",
        b"renewed",
        b"short",
        b"shortened",
    ];
    // (Checked only while the time to live surely has not run out.)
    if start.elapsed() < ttl / 2 {
        assert_eq!(keys_of(&store), live, "before expiry");
        assert_eq!(store.get(b"short").unwrap().unwrap(), b"goes");
        assert_eq!(store.len(), 6);
    }
    // Finish the segment holding them, so that the reopen below reads expiries from a
    // hint, then a few in the active segment too.
    for i in 0..30u32 {
        store.put(b"filler", &[i as u8; 200]).unwrap();
    }
    store.delete(b"filler").unwrap();
    store.put_with_ttl(b"short2", b"goes too", ttl).unwrap();
    // The short times to live have all run out `ttl` after this, the last of them.
    let last_short = Instant::now();
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    assert!(store.stats().segments_from_hints > 0);
    if start.elapsed() < ttl / 2 {
        let mut live = live.to_vec();
        live.insert(5, b"short2");
        assert_eq!(keys_of(&store), live, "before expiry, reopened");
        assert_eq!(store.get(b"short").unwrap().unwrap(), b"goes");
        assert!(store.contains(b"short2"));
        assert_eq!(store.len(), 7);
    }

    std::thread::sleep((ttl + Duration::from_millis(50)).saturating_sub(last_short.elapsed()));
    let remaining = [&b"forever"[..], b"long", b"plain", b"renewed"];
    assert!(store.get(b"short").unwrap().is_none());
    assert!(store.get(b"short2").unwrap().is_none());
    assert!(
        store.get(b"shortened").unwrap().is_none(),
        "a ttl put after a plain put expires"
    );
    assert!(!store.contains(b"short"));
    assert_eq!(
        store.get(b"renewed").unwrap().unwrap(),
        b"new",
        "a plain put after a ttl put stays"
    );
    assert_eq!(store.get(b"long").unwrap().unwrap(), b"an hour");
    assert_eq!(store.len(), 4);
    assert_eq!(keys_of(&store), remaining);
    let mut back: Vec<Vec<u8>> = store.iter().rev().map(|e| owned(e).0).collect();
    back.reverse();
    assert_eq!(back, remaining);
    assert_eq!(store.prefix(b"sho").count(), 0);
    assert_eq!(store.range(b"r".as_slice()..=b"t".as_slice()).count(), 1);

    let keys_before = store.stats().keys;
    store.compact().unwrap();
    let stats = store.stats();
    assert_eq!(
        stats.keys, 4,
        "compaction drops expired keys (had {keys_before}): {stats:?}"
    );
    assert_eq!(store.len(), 4);
    assert_eq!(keys_of(&store), remaining);

    // An expired key reads as absent to a merge too.
    store.merge(b"short", b"+", concat).unwrap();
    assert_eq!(store.get(b"short").unwrap().unwrap(), b"+");
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_eq!(store.stats().keys, 5);
    assert_eq!(
        keys_of(&store),
        [&b"forever"[..], b"long", b"plain", b"renewed", b"short"]
    );
}

// ---------------------------------------------------------------------------------------
// Write batches

#[test]
fn write_batch_applies_in_order_and_empty_is_a_no_op() {
    let place = Place::new();
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    store.put(b"stored", b"s").unwrap();
    store.put(b"doomed", b"d").unwrap();

    let before = store.stats();
    let empty = WriteBatch::new();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    store.write(&empty).unwrap();
    assert_eq!(store.stats(), before, "an empty batch writes nothing");
    assert_eq!(store.len(), 2);

    let mut batch = WriteBatch::new();
    batch
        .put(b"a", b"1")
        .merge(b"a", b"2", concat) // sees the put above
        .merge(b"stored", b"+", concat) // sees the store
        .delete(b"doomed")
        .merge(b"doomed", b"x", concat) // sees the delete above
        .put(b"twice", b"first")
        .put(b"twice", b"second")
        .put(b"gone", b"g")
        .merge(b"gone", b"", concat) // an operator returning None deletes
        .merge(b"never", b"", concat);
    assert_eq!(batch.len(), 10);
    store.write(&batch).unwrap();
    let want: Pairs = [
        (&b"a"[..], &b"12"[..]),
        (b"doomed", b"x"),
        (b"stored", b"s+"),
        (b"twice", b"second"),
    ]
    .iter()
    .map(|(k, v)| (k.to_vec(), v.to_vec()))
    .collect();
    assert_same(&collect(store.iter()), &want, "contents");
    assert_eq!(store.len(), 4);

    // The batch is one record: after a reopen it is all there.
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    assert_same(&collect(store.iter()), &want, "after reopen");

    // A batch with one bad operation applies none of it.
    let mut bad = WriteBatch::new();
    bad.put(b"a", b"changed")
        .delete(b"twice")
        .put(&vec![b'k'; LOG_KEY_LEN_BYTES_MAX + 1], b"v");
    assert!(matches!(
        store.write(&bad),
        Err(Error::LimitExceeded { .. })
    ));
    assert_same(
        &collect(store.iter()),
        &want,
        "a failed batch applies nothing",
    );
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn key_and_value_limits() {
    let place = Place::new();
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, small(64 << 10)).unwrap();
    store.put(b"existing", b"value").unwrap();
    let before = store.stats();

    let long_key = vec![b'k'; LOG_KEY_LEN_BYTES_MAX + 1];
    let is_limit = |r: Result<(), Error>, what: &str| {
        assert!(
            matches!(r, Err(Error::LimitExceeded { .. })),
            "{what}: want LimitExceeded, got {r:?}"
        );
    };
    is_limit(store.put(&long_key, b"v"), "put");
    is_limit(
        store.put_with_ttl(&long_key, b"v", Duration::from_secs(1)),
        "put_with_ttl",
    );
    is_limit(store.delete(&long_key), "delete");
    is_limit(store.merge(&long_key, b"v", concat), "merge");
    let huge = vec![0u8; LOG_VALUE_LEN_BYTES_MAX + 1];
    is_limit(store.put(b"k", &huge), "put of a huge value");
    // A merge whose result is too large leaves the old value.
    is_limit(
        store.merge(b"existing", b"", |_, _, _| Some(huge.clone())),
        "merge to a huge value",
    );
    drop(huge);
    assert_eq!(store.stats(), before, "nothing written");
    assert_same(
        &collect(store.iter()),
        &[(b"existing".to_vec(), b"value".to_vec())],
        "contents",
    );
    assert!(store.get(&long_key).unwrap().is_none());

    // The largest key, the empty key and the empty value all work, and survive a reopen.
    let max_key = vec![b'm'; LOG_KEY_LEN_BYTES_MAX];
    store.put(&max_key, b"max").unwrap();
    store.put(b"", b"empty key").unwrap();
    store.put(b"empty value", b"").unwrap();
    let check_all = |store: &LogStore, ctx: &str| {
        assert_eq!(store.get(&max_key).unwrap().unwrap(), b"max", "{ctx}");
        assert_eq!(store.get(b"").unwrap().unwrap(), b"empty key", "{ctx}");
        assert!(store.contains(b""), "{ctx}");
        assert_eq!(store.get(b"empty value").unwrap().unwrap(), b"", "{ctx}");
        assert!(store.contains(b"empty value"), "{ctx}");
        assert_eq!(store.len(), 4, "{ctx}");
        let keys = keys_of(store);
        assert_eq!(keys[0], b"", "{ctx}: the empty key sorts first");
        assert_eq!(keys[3], max_key, "{ctx}");
        assert_eq!(store.prefix(b"").count(), 4, "{ctx}");
        assert_eq!(store.range(..=b"".as_slice()).count(), 1, "{ctx}");
    };
    check_all(&store, "in memory");
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, small(64 << 10)).unwrap();
    check_all(&store, "after reopen");
    store.compact().unwrap();
    check_all(&store, "after compaction");
    store.delete(b"").unwrap();
    assert!(store.get(b"").unwrap().is_none());
    assert_eq!(store.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Merge operator registration

#[test]
fn merge_operator_name_is_recorded() {
    let place = Place::new();
    let dir = place.open();
    let with = |name: &str| LogOptions {
        merge_operator: Some((name.to_string(), Arc::new(concat) as Arc<MergeFn>)),
        ..LogOptions::default()
    };

    let store = LogStore::open(&dir, NAME, LogOptions::default()).unwrap();
    store.put(b"k", b"a").unwrap();
    let r = store.merge_default(b"k", b"b");
    assert!(matches!(r, Err(Error::Incompatible { .. })), "got {r:?}");
    assert_eq!(
        store.get(b"k").unwrap().unwrap(),
        b"a",
        "a refused merge writes nothing"
    );
    store.merge(b"k", b"b", concat).unwrap();
    store.sync().unwrap();
    drop(store);

    let store = LogStore::open(&dir, NAME, with("concat")).unwrap();
    store.merge_default(b"k", b"c").unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"abc");
    store.sync().unwrap();
    drop(store);

    let other = LogStore::open(&dir, NAME, with("append"));
    assert!(
        matches!(other, Err(Error::Incompatible { .. })),
        "got {other:?}"
    );
    drop(other);

    let store = LogStore::open(&dir, NAME, with("concat")).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"abc");
    store.merge_default(b"k", b"d").unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"abcd");
    store.sync().unwrap();
    drop(store);

    // The refusal is recorded on disk: still refused after the right name was used.
    let other = LogStore::open(&dir, NAME, with("append"));
    assert!(
        matches!(other, Err(Error::Incompatible { .. })),
        "got {other:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Reopen paths

/// Puts `count` unique keys with values of `value_len` bytes; returns the model.
fn fill(store: &LogStore, from: usize, count: usize, value_len: usize) -> Model {
    let mut model = Model::new();
    for i in from..from + count {
        let k = format!("key{i:05}").into_bytes();
        let v: Vec<u8> = (0..value_len).map(|j| (i * 31 + j) as u8).collect();
        store.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    model
}

#[test]
fn reopen_from_hints_and_from_scans() {
    let place = Place::new();
    let opts = small(4096);
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let mut model = fill(&store, 0, 300, 80);
    for i in (0..300).step_by(4) {
        let k = format!("key{i:05}").into_bytes();
        store.delete(&k).unwrap();
        model.remove(&k);
    }
    let stats = store.stats();
    assert!(stats.segments > 5, "{stats:?}");
    store.sync().unwrap();
    drop(store);

    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let from_hints = store.stats();
    assert!(from_hints.segments_from_hints > 0, "{from_hints:?}");
    assert_eq!(
        from_hints.segments_from_hints + from_hints.segments_scanned,
        stats.segments
    );
    assert_eq!(from_hints.live_bytes, stats.live_bytes);
    assert_eq!(
        from_hints.live_bytes + from_hints.dead_bytes,
        stats.live_bytes + stats.dead_bytes
    );
    check_exact(&store, &model, "reopened from hints");
    drop(store);

    // Without hint files every segment is scanned, to the same result.
    let mut removed = 0;
    for name in place.entries() {
        if name.starts_with("log-") && name.ends_with("-hint") {
            std::fs::remove_dir_all(place.store_path().join(&name)).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let scanned = store.stats();
    assert_eq!(scanned.segments_from_hints, 0, "{scanned:?}");
    assert_eq!(scanned.segments_scanned, stats.segments, "{scanned:?}");
    assert_eq!(scanned.damaged_records, 0);
    assert_eq!(scanned.live_bytes, stats.live_bytes);
    check_exact(&store, &model, "reopened by scanning");

    // Writes after that open survive the next one.
    let more = fill(&store, 1000, 50, 80);
    model.extend(more);
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    check_exact(&store, &model, "reopened after writes");
}

/// Every write that returned survives a drop of the store without `sync` (its frame
/// proves it at the next open), across rolls: 64 KiB segments, rounds of random writes,
/// each ended by a drop and never a sync, the reopened store exactly its model.
#[test]
fn unsynced_writes_survive_a_drop_across_rolls() {
    let mut s = Seeded::new("unsynced_writes_survive_a_drop_across_rolls");
    let opts = LogOptions {
        merge_operator: concat_operator(),
        ..small(64 << 10)
    };
    let mut h = Harness::new(opts);
    let first = h.store().stats().active_log;
    for round in 0..8 {
        let before = h.store().stats().active_log;
        for _ in 0..500 {
            h.random_write(&mut s.rng);
        }
        let rolled = h.store().stats().active_log - before;
        h.reopen(round % 2 == 1);
        let ctx = format!("round {round} ({rolled} rolls), dropped without sync");
        let stats = h.store().stats();
        assert_eq!(
            (stats.damaged_records, stats.damaged_bytes),
            (0, 0),
            "{ctx}: {stats:?}"
        );
        assert_eq!(stats.active_log, before + rolled, "{ctx}: {stats:?}");
        check_exact(h.store(), &h.model, &ctx);
        check(h.store(), &h.model, &mut s.rng, &ctx);
    }
    let rolls = h.store().stats().active_log - first;
    assert!(rolls >= 4, "the writes rolled {rolls} times");
}

/// Where each of `keys` first occurs in `bytes`.
fn offsets_of(bytes: &[u8], keys: &[Vec<u8>]) -> Vec<Option<usize>> {
    keys.iter()
        .map(|k| bytes.windows(k.len()).position(|w| w == k.as_slice()))
        .collect()
}

/// Where a record's bytes begin relative to its key's first byte: a 24-byte record header
/// and a 24-byte operation header come before the key (and the record's 16-byte frame
/// before that).
const KEY_IN_RECORD: usize = 48;
/// The frame in front of every record.
const FRAME: usize = 16;

/// Damage in the part of the active segment that its length register records (a sync
/// records the length once 4 MiB lie past the last recorded one) is found by the scan at
/// open, counted, and ends that segment's replay; the store writes on in a new segment,
/// and every later open finds the damage again.
#[test]
fn damaged_record_in_active_segment() {
    const VALUE_LEN: usize = 100;
    const SMALL: usize = 130;
    let place = Place::new();
    let opts = small(8 << 20);
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let mut model = fill(&store, 0, SMALL, VALUE_LEN);
    // Over 4 MiB more, so that the sync records the segment's length past every record.
    model.extend(fill(&store, 1000, 70, 60 << 10));
    store.sync().unwrap();
    let stats = store.stats();
    assert_eq!(stats.segments, 1, "{stats:?}");
    let written = (stats.live_bytes + stats.dead_bytes) as usize;
    let active = format!("log-{:010}", stats.active_log);
    drop(store);

    // The active segment's records are found by their keys (each written once; the
    // values never contain them), so that this test depends on the record layout only
    // for "a value follows its key" and the bytes in front of the key.
    let lane_path = place.store_path().join(&active).join("data-00.acc");
    let mut lane = std::fs::read(&lane_path).unwrap();
    const LANE_DATA_OFFSET: usize = 4096;
    let keys: Vec<Vec<u8>> = model.keys().take(SMALL).cloned().collect();
    let mut here: Vec<(usize, Vec<u8>)> = offsets_of(&lane[LANE_DATA_OFFSET..], &keys)
        .into_iter()
        .zip(&keys)
        .filter_map(|(at, k)| at.map(|at| (at, k.clone())))
        .collect();
    here.sort();
    assert_eq!(
        here.len(),
        SMALL,
        "the small records all lie in the first lane"
    );
    let victim = here.len() / 2;
    let (at, ref victim_key) = here[victim];
    // The middle of the victim's value.
    lane[LANE_DATA_OFFSET + at + victim_key.len() + VALUE_LEN / 2] ^= 0x10;
    std::fs::write(&lane_path, &lane).unwrap();
    // Written in key order: the victim's record and every one after it are lost.
    let lost: Vec<Vec<u8>> = model
        .range(victim_key.clone()..)
        .map(|(k, _)| k.clone())
        .collect();
    for k in &lost {
        model.remove(k);
    }

    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let stats = store.stats();
    assert_eq!(stats.damaged_records, 1, "{stats:?}");
    // From the victim's record to the end of the segment: at least from its frame, at
    // most from the end of the record before it.
    let frame_at = at - KEY_IN_RECORD - FRAME;
    let previous_end = here[victim - 1].0 + victim_key.len() + VALUE_LEN;
    assert!(
        stats.damaged_bytes >= (written - frame_at) as u64
            && stats.damaged_bytes <= (written - previous_end) as u64,
        "damaged bytes {} for a record at about {frame_at} in {written}: {stats:?}",
        stats.damaged_bytes
    );
    check_exact(&store, &model, "after damage");
    for k in &lost {
        assert!(
            store.get(k).unwrap().is_none(),
            "{k:x?} from the damaged record on"
        );
    }
    // Writes after the damage go on, and survive the next reopen.
    let more = fill(&store, 5000, 40, VALUE_LEN);
    model.extend(more);
    store.put(&lost[0], b"rewritten").unwrap();
    model.insert(lost[0].clone(), b"rewritten".to_vec());
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    assert_eq!(
        store.stats().damaged_records,
        1,
        "the damaged segment gets no hint: every open finds the damage again"
    );
    check_exact(&store, &model, "reopened after damage");
    for k in &lost[1..] {
        assert!(store.get(k).unwrap().is_none(), "{k:x?} reappeared");
    }
    drop(store);

    // Without hints the damaged segment is scanned again: the damage is found again and
    // nothing after it comes back.
    for name in place.entries() {
        if name.starts_with("log-") && name.ends_with("-hint") {
            std::fs::remove_dir_all(place.store_path().join(&name)).unwrap();
        }
    }
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_eq!(store.stats().damaged_records, 1, "{:?}", store.stats());
    check_exact(&store, &model, "scanned after damage");
}

/// Damage past the recorded length of the active segment (small segments: a sync flushes
/// the records but records no length before 4 MiB) looks like a torn tail: the open
/// adopts the records before it and none from it on, reports no damage, and returns no
/// damaged value. Writes after go on, and the records from the damage on stay gone at
/// every later open: the new writes take an epoch newer than theirs, so their frames,
/// left past the new records, are not adopted.
#[test]
fn damage_in_the_unrecorded_tail_ends_adoption() {
    const VALUE_LEN: usize = 100;
    let place = Place::new();
    let opts = small(4096);
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let mut model = fill(&store, 0, 130, VALUE_LEN);
    store.sync().unwrap();
    assert!(store.stats().segments > 2);
    let active = format!("log-{:010}", store.stats().active_log);
    drop(store);

    let lane_path = place.store_path().join(&active).join("data-00.acc");
    let mut lane = std::fs::read(&lane_path).unwrap();
    const LANE_DATA_OFFSET: usize = 4096;
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut here: Vec<(usize, Vec<u8>)> = offsets_of(&lane[LANE_DATA_OFFSET..], &keys)
        .into_iter()
        .zip(&keys)
        .filter_map(|(at, k)| at.map(|at| (at, k.clone())))
        .collect();
    here.sort();
    assert!(
        here.len() >= 3,
        "the active segment {active} holds {} records",
        here.len()
    );
    let victim = here.len() / 2;
    let (at, ref victim_key) = here[victim];
    lane[LANE_DATA_OFFSET + at + victim_key.len() + VALUE_LEN / 2] ^= 0x10;
    std::fs::write(&lane_path, &lane).unwrap();
    let lost: Vec<Vec<u8>> = here[victim..].iter().map(|(_, k)| k.clone()).collect();
    for k in &lost {
        model.remove(k);
    }

    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.damaged_records, stats.damaged_bytes),
        (0, 0),
        "a torn tail is no damage: {stats:?}"
    );
    check_exact(&store, &model, "after damage");
    for k in &lost {
        assert!(
            store.get(k).unwrap().is_none(),
            "{k:x?} from the damaged record on"
        );
    }
    // Writes after the damage go on, over the bytes not adopted, and survive reopens
    // with and without a sync.
    model.extend(fill(&store, 5000, 3, VALUE_LEN));
    store.put(&lost[0], b"rewritten").unwrap();
    model.insert(lost[0].clone(), b"rewritten".to_vec());
    drop(store);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    check_exact(&store, &model, "reopened after damage, without sync");
    model.extend(fill(&store, 6000, 40, VALUE_LEN));
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    assert_eq!(store.stats().damaged_records, 0, "{:?}", store.stats());
    check_exact(&store, &model, "reopened after damage");
    for k in &lost[1..] {
        assert!(store.get(k).unwrap().is_none(), "{k:x?} reappeared");
    }
    drop(store);

    // Without hints every segment is scanned, to the same result.
    for name in place.entries() {
        if name.starts_with("log-") && name.ends_with("-hint") {
            std::fs::remove_dir_all(place.store_path().join(&name)).unwrap();
        }
    }
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_eq!(store.stats().damaged_records, 0, "{:?}", store.stats());
    check_exact(&store, &model, "scanned after damage");
    for k in &lost[1..] {
        assert!(store.get(k).unwrap().is_none(), "{k:x?} reappeared");
    }
}

// ---------------------------------------------------------------------------------------
// Names, stats

#[test]
fn second_open_of_a_name_is_refused() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, NAME, LogOptions::default()).unwrap();
    store.put(b"k", b"v").unwrap();
    let again = LogStore::open(&dir, NAME, LogOptions::default());
    assert!(
        matches!(again, Err(Error::NameInUse { .. })),
        "got {again:?}"
    );
    let clone = dir.clone();
    let again = LogStore::open(&clone, NAME, LogOptions::default());
    assert!(
        matches!(again, Err(Error::NameInUse { .. })),
        "through a clone: {again:?}"
    );
    let other = LogStore::open(&dir, "other", LogOptions::default()).unwrap();
    other.put(b"k", b"other").unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, LogOptions::default()).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
}

/// A second open of an open store names the store, not its internal state journal.
#[test]
fn second_open_names_the_store() {
    let dir = Dir::temporary().unwrap();
    let _store = LogStore::open(&dir, NAME, LogOptions::default()).unwrap();
    match LogStore::open(&dir, NAME, LogOptions::default()) {
        Err(Error::NameInUse { name }) => assert_eq!(name, NAME),
        other => panic!("want NameInUse, got {other:?}"),
    }
}

/// A `Value` or an unfinished `Iter` that outlives its store keeps a segment open: the
/// next open says so, naming the store and what holds it, and works once they are gone.
#[test]
fn handles_outliving_the_store_are_named_on_reopen() {
    let dir = Dir::temporary().unwrap();
    let opts = small(4096);
    let store = LogStore::open(&dir, NAME, opts.clone()).unwrap();
    for i in 0..200u32 {
        store.put(&i.to_be_bytes(), &[7; 64]).unwrap();
    }
    store.sync().unwrap();
    let value = store.get(&0u32.to_be_bytes()).unwrap().unwrap();
    let mut iter = store.range(&150u32.to_be_bytes()[..]..);
    assert!(iter.next().unwrap().is_ok());
    drop(store);

    let refused = |what: &str| {
        let e = LogStore::open(&dir, NAME, opts.clone()).expect_err(what);
        assert!(
            matches!(&e, Error::HandlesAlive { name, part, .. }
                if name == NAME && part.starts_with(&format!("{NAME}/"))),
            "{what}: {e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains("\"kv\"") && message.contains("Value") && message.contains("Iter"),
            "{what}: {message}"
        );
    };
    refused("a Value and an Iter alive");
    drop(value);
    refused("an Iter alive");
    // Iterating on needs no store.
    assert_eq!(iter.count(), 49);
    let store = LogStore::open(&dir, NAME, opts).unwrap();
    assert_eq!(store.len(), 200);
    assert_eq!(
        store.get(&0u32.to_be_bytes()).unwrap().unwrap(),
        &[7; 64][..]
    );
}

/// `range` takes every std range over byte strings of one type, and a pair of bounds
/// of two types, with no type annotation.
#[test]
fn range_takes_byte_strings_of_any_type() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, NAME, LogOptions::default()).unwrap();
    let mut model = Model::new();
    for key in ["", "a", "b", "ba", "bb", "c", "\u{ff}"] {
        store.put(key.as_bytes(), key.as_bytes()).unwrap();
        model.insert(key.as_bytes().to_vec(), key.as_bytes().to_vec());
    }
    let want = |range: (Bound<&[u8]>, Bound<&[u8]>)| pairs(model.range::<[u8], _>(range));
    let (a, bb): (&[u8], &[u8]) = (b"a", b"bb");
    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
    assert_same(&collect(store.range(..)), &want((Un, Un)), "..");
    assert_same(
        &collect(store.range(b"a"..b"c")),
        &want((In(a), Ex(b"c"))),
        "arrays",
    );
    assert_same(
        &collect(store.range(a..bb)),
        &want((In(a), Ex(bb))),
        "slices",
    );
    assert_same(
        &collect(store.range(&b"a"[..]..&b"bb"[..])),
        &want((In(a), Ex(bb))),
        "sliced arrays",
    );
    assert_same(&collect(store.range(a..=bb)), &want((In(a), In(bb))), "..=");
    assert_same(
        &collect(store.range(b"b".to_vec()..)),
        &want((In(b"b"), Un)),
        "Vec..",
    );
    assert_same(
        &collect(store.range(..b"b")),
        &want((Un, Ex(b"b"))),
        "..array",
    );
    assert_same(
        &collect(store.range(..=bb.to_vec())),
        &want((Un, In(bb))),
        "..=Vec",
    );
    assert_same(
        &collect(store.range("a".."bb")),
        &want((In(a), Ex(bb))),
        "str",
    );
    assert_same(
        &collect(store.range(String::from("b")..String::from("c"))),
        &want((In(b"b"), Ex(b"c"))),
        "String",
    );
    assert_same(
        &collect(store.range((Ex(b"a"), In(b"bb")))),
        &want((Ex(a), In(bb))),
        "two bound types",
    );
    assert_same(
        &collect(store.range((Ex(a), Un::<Vec<u8>>))),
        &want((Ex(a), Un)),
        "bounds",
    );
    assert_same(
        &collect(store.range(b"b"..b"c").rev()),
        &pairs(model.range::<[u8], _>((In(&b"b"[..]), Ex(&b"c"[..]))).rev()),
        "reversed",
    );
}

/// Bytes an AppendOnly record of `len` bytes takes when another frame follows it: its
/// 16-byte frame, then the record, padded to the next multiple of 16 (where the next frame
/// starts).
fn framed(len: u64) -> u64 {
    16 + len.next_multiple_of(16)
}

#[test]
fn stats_add_up() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    let fresh = store.stats();
    assert_eq!(
        (
            fresh.keys,
            fresh.live_bytes,
            fresh.dead_bytes,
            fresh.generation
        ),
        (0, 0, 0, 0)
    );
    assert!(fresh.last_compaction.is_none());

    // A store of nothing but live single puts has no dead bytes: a live value is charged
    // its record (a 24-byte record header, a 24-byte operation header, key and value)
    // with the frame in front of it and the padding after it.
    store.put(b"first", b"value").unwrap();
    let stats = store.stats();
    let record = |k: &[u8], v: &[u8]| 48 + (k.len() + v.len()) as u64;
    assert_eq!(stats.dead_bytes, 0, "{stats:?}");
    assert_eq!(
        stats.live_bytes,
        framed(record(b"first", b"value")),
        "{stats:?}"
    );
    store.delete(b"first").unwrap();
    // Every record's bytes with its frame and padding; the padding after the last record
    // is not written yet, and every finished segment ends with a 16-byte seal frame.
    let mut total = framed(record(b"first", b"value")) + framed(record(b"first", b""));
    let all_bytes = |total: u64, last: u64, segments: u64| {
        total - (last.next_multiple_of(16) - last) + 16 * (segments - 1)
    };

    // Single operations: every record's bytes are known, so the totals are exact.
    let mut model = Model::new();
    for i in 0..200usize {
        let k = format!("s{:03}", i % 70).into_bytes();
        let last = if i % 6 == 5 {
            store.delete(&k).unwrap();
            model.remove(&k);
            record(&k, b"")
        } else {
            let v = vec![i as u8; i % 50];
            store.put(&k, &v).unwrap();
            let last = record(&k, &v);
            model.insert(k, v);
            last
        };
        total += framed(last);
        let stats = store.stats();
        let live: u64 = model.iter().map(|(k, v)| framed(record(k, v))).sum();
        assert_eq!(stats.keys, model.len() as u64, "step {i}");
        assert_eq!(stats.live_bytes, live, "step {i}: {stats:?}");
        // The padding after the last record is not written yet: a store of live records
        // only may hold a few bytes less than they are charged.
        assert_eq!(
            stats.live_bytes + stats.dead_bytes,
            all_bytes(total, last, stats.segments).max(live),
            "step {i}: {stats:?}"
        );
    }
    let before = store.stats();
    assert!(before.segments > 2, "{before:?}");

    // The same figures after a reopen (from hints and a scan).
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, NAME, small(4096)).unwrap();
    let stats = store.stats();
    assert_eq!(
        (
            stats.keys,
            stats.live_bytes,
            stats.dead_bytes,
            stats.segments
        ),
        (
            before.keys,
            before.live_bytes,
            before.dead_bytes,
            before.segments
        ),
        "{stats:?}"
    );

    // Compaction leaves only live records (the new active segment is empty): one per
    // key, each behind its frame, padded but for the last of each base segment (which
    // are not sealed): no dead bytes.
    store.compact().unwrap();
    let stats = store.stats();
    let live: u64 = model.iter().map(|(k, v)| framed(record(k, v))).sum();
    assert_eq!(stats.live_bytes, live, "{stats:?}");
    assert_eq!(stats.dead_bytes, 0, "{stats:?}");
    assert_eq!(stats.generation, 1);
    assert!(stats.last_compaction.is_some());

    // Everything deleted and compacted: nothing live, almost nothing left.
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    for k in &keys {
        store.delete(k).unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.keys, stats.live_bytes), (0, 0), "{stats:?}");
    assert!(stats.dead_bytes > 0);
    store.compact().unwrap();
    let stats = store.stats();
    assert_eq!((stats.keys, stats.live_bytes), (0, 0), "{stats:?}");
    assert_eq!(stats.dead_bytes, 0, "{stats:?}");
    assert!(stats.segments <= 2, "{stats:?}");
    assert_eq!(stats.generation, 2);
}

/// A hint of many records (over 60 KiB of entries) is replayed whole; a damaged record in
/// its middle makes the open read the segment instead, with the same result.
#[test]
fn multi_record_hints_replay_and_fall_back_when_damaged() {
    let dir = Dir::temporary().unwrap();
    let opts = LogOptions {
        segment_bytes: 2 << 20,
        compact_dead_ratio: None,
        ..LogOptions::default()
    };
    let store = LogStore::open(&dir, "kv", opts.clone()).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..30_000u32 {
        let key = format!("key-{:08}", i.wrapping_mul(2_654_435_761)).into_bytes();
        let value = i.to_le_bytes().repeat(4);
        store.put(&key, &value).unwrap();
        model.insert(key, value);
    }
    store.sync().unwrap();
    drop(store);
    // The first hint record fills lane 0; the second starts lane 1.
    let hint = dir.path().join("kv/log-0000000001-hint/data-01.acc");
    assert!(
        hint.exists(),
        "the first segment was finished with a hint of several records"
    );
    let read_all = |store: &LogStore| -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    };
    let store = LogStore::open(&dir, "kv", opts.clone()).unwrap();
    assert!(store.stats().segments_from_hints >= 1);
    assert_eq!(read_all(&store), model);
    drop(store);
    // Damage the second record of the first hint.
    let mut bytes = std::fs::read(&hint).unwrap();
    let at = 4096 + 100;
    bytes[at] ^= 0xff;
    std::fs::write(&hint, bytes).unwrap();
    let store = LogStore::open(&dir, "kv", opts).unwrap();
    let stats = store.stats();
    assert!(stats.segments_scanned >= 2, "{stats:?}");
    assert_eq!(read_all(&store), model);
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// A compaction that fails part-way (here on a full disk, placed with a fault hook) leaves nothing that a
/// later compaction reuses: keys deleted or cleared in between stay gone after a
/// reopen, and failed attempts do not pile up files.
#[test]
fn a_failed_compaction_leaves_nothing_behind() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    for i in 0..200u32 {
        store
            .put(
                format!("k{i:03}").as_bytes(),
                format!("value-{i:03}-{}", "x".repeat(20)).as_bytes(),
            )
            .unwrap();
    }
    store.sync().unwrap();
    // Each attempt fails once its first base segment is synced, as it creates that
    // segment's hint (a full disk, say): the attempt has written base segments by then.
    let hint_of_first_base = dir.path().join("kv/g1/base-000000-hint");
    let hook = accretion::faults::install(move |flush| {
        flush
            .path()
            .starts_with(&hint_of_first_base)
            .then(|| std::io::Error::from_raw_os_error(28))
    });
    let g1_entries =
        || std::fs::read_dir(dir.path().join("kv/g1")).map_or(0, |entries| entries.count());
    let mut left = Vec::new();
    for _ in 0..3 {
        let failed = store.compact();
        assert!(
            matches!(&failed, Err(e) if e.is_storage_full()),
            "{failed:?}"
        );
        left.push(g1_entries());
    }
    drop(hook);
    assert_eq!(
        left,
        [0, 0, 0],
        "failed attempts leave no base segments behind"
    );
    assert_eq!(store.stats().compaction_failures, 3);
    assert_eq!(store.stats().generation, 0);
    // Overwrite a key, delete another, and compact for real.
    store.put(b"k150", b"repaired").unwrap();
    store.delete(b"k000").unwrap();
    store.compact().unwrap();
    let bases = std::fs::read_dir(dir.path().join("kv/g1"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("-hint")
        })
        .count();
    assert_eq!(
        bases as u64,
        store.stats().segments - 1,
        "only this attempt's base segments"
    );
    store.sync().unwrap();
    drop(store);
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    assert!(
        store.get(b"k000").unwrap().is_none(),
        "a deleted key came back"
    );
    assert_eq!(store.get(b"k150").unwrap().unwrap(), b"repaired");
    assert_eq!(store.len(), 199);
}

/// A log segment past the state's active one that no roll started (the active one is not
/// sealed) is garbage, empty or not: nothing in it was synced, since a sync of a segment
/// syncs the state that names it first. Open removes it, and the store's own writes stay
/// whole. (The segments a roll started are taken in: see `log_roll.rs`.)
#[test]
fn segments_past_an_unsealed_active_segment_are_removed() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    for i in 0..100u32 {
        store.put(format!("k{i:03}").as_bytes(), &[7; 40]).unwrap();
    }
    store.sync().unwrap();
    let active = store.stats().active_log;
    assert_eq!(
        active,
        store.stats().segments,
        "log ids start at 1, no base yet"
    );
    drop(store);
    let check = |store: &LogStore| {
        let stats = store.stats();
        assert_eq!(
            (stats.active_log, stats.damaged_records),
            (active, 0),
            "{stats:?}"
        );
        assert_eq!(store.len(), 100);
        for i in 0..100u32 {
            assert_eq!(
                store.get(format!("k{i:03}").as_bytes()).unwrap().unwrap(),
                [7u8; 40]
            );
        }
    };
    // An empty segment past the active one: removed.
    let next = format!("kv/log-{:010}", active + 1);
    drop(accretion::AppendOnly::open(&dir, &next).unwrap());
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    assert!(!dir.path().join(&next).exists());
    check(&store);
    drop(store);
    // One holding records, recorded durably: removed too.
    let buf = accretion::AppendOnly::open(&dir, &next).unwrap();
    buf.append(b"synced bytes").unwrap();
    buf.sync_recorded().unwrap();
    drop(buf);
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    assert!(!dir.path().join(&next).exists());
    check(&store);
}

/// A segment's bytes, frames and seal included, stay below `segment_bytes` (rounded down
/// to where a lane ends), so that its last bytes never allocate a lane of their own: with
/// 192 KiB segments (lanes 0 and 1), no segment has a third data file. Each segment is
/// filled to just below its end, and then one record is written that fits by its own
/// bytes but not with its frame (or whose end leaves no room for the seal a roll
/// appends). Found while adapting the tests to frames: the roll still compared the
/// record's bytes alone, so such a record (or the seal) went into a 256 KiB third lane.
#[test]
fn frames_and_seals_stay_inside_the_segments_lanes() {
    const SEGMENT: u64 = 192 << 10;
    const KEY_LEN: u64 = 8;
    let place = Place::new();
    let dir = place.open();
    let store = LogStore::open(&dir, NAME, small(SEGMENT)).unwrap();
    let mut model = Model::new();
    let mut n = 0u64;
    let mut put = |store: &LogStore, value_len: u64| {
        let k = format!("k{n:07}").into_bytes();
        let v: Vec<u8> = (0..value_len).map(|j| (n + j) as u8).collect();
        store.put(&k, &v).unwrap();
        model.insert(k, v);
        n += 1;
    };
    // What the active segment holds: the store's bytes less the finished segments'.
    let mut finished = 0u64;
    for round in 0..8u64 {
        let before = store.stats().active_log;
        let crafted = loop {
            let stats = store.stats();
            let used = stats.live_bytes + stats.dead_bytes - finished;
            let left = SEGMENT - used;
            if left < 3000 {
                // A record whose bytes reach the segment's end exactly, or stop short of
                // it by less than a frame: with its frame, or the seal after it, it does
                // not fit.
                let record = left - [0, 4, 8, 15][round as usize % 4];
                put(&store, record - 48 - KEY_LEN);
                break record;
            }
            put(&store, 1000.min(left - 2000));
        };
        // The crafted record rolled the store, or the next one does.
        let crafted_rolled = store.stats().active_log > before;
        put(&store, 10);
        let stats = store.stats();
        assert_eq!(stats.active_log, before + 1, "round {round}: one roll");
        let small = 48 + KEY_LEN + 10;
        let active = if crafted_rolled {
            16 + crafted.next_multiple_of(16) + 16 + small
        } else {
            16 + small
        };
        finished = stats.live_bytes + stats.dead_bytes - active;
    }
    store.sync().unwrap();
    let mut third_lanes = Vec::new();
    for name in place.entries() {
        if is_log_segment(&name) && place.store_path().join(&name).join("data-02.acc").exists() {
            third_lanes.push(name);
        }
    }
    assert!(
        third_lanes.is_empty(),
        "segments with a third lane: {third_lanes:?}"
    );
    drop(store);
    let store = LogStore::open(&dir, NAME, small(SEGMENT)).unwrap();
    check_exact(&store, &model, "reopened");
}

/// A hint whose own file header is damaged is no hint: the segment is scanned.
#[test]
fn a_hint_with_a_damaged_header_is_ignored() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    for i in 0..100u32 {
        store.put(format!("k{i:03}").as_bytes(), &[9; 40]).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let lane = dir.path().join("kv/log-0000000001-hint/data-00.acc");
    let mut bytes = std::fs::read(&lane).unwrap();
    bytes[3] ^= 0xff;
    std::fs::write(&lane, bytes).unwrap();
    let store = LogStore::open(&dir, "kv", small_segments()).unwrap();
    assert_eq!(store.len(), 100);
    assert!(store.stats().segments_scanned >= 2);
    for i in 0..100u32 {
        assert_eq!(
            store.get(format!("k{i:03}").as_bytes()).unwrap().unwrap(),
            [9u8; 40]
        );
    }
}
