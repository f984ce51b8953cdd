//! Crash-image tests: every primitive, after a simulated power loss at many points and cut
//! points of its `sync`, reopens cleanly to a state the contract allows.
//!
//! Each test runs a seeded workload on one structure, recording a [`History`] of snapshots
//! (after opening, after every sync, and mid-work), together with a model of what was
//! written and what each sync made durable. Then it builds many crash images (see
//! `harness.rs` for the crash model) and checks each against the model:
//! - opening the store and the structure succeeds;
//! - Journal and RandomAccess (a register trusted whole): the recovered state is that of
//!   one of the syncs the crash may leave;
//! - AppendOnly, OnceMap, Content (format 2: records behind frames, adopted past the
//!   recorded length at open): the recovered records, entries or blobs are a prefix of
//!   those written, holding at least everything a sync that returned made durable (the
//!   commit is the data's flush) and nothing written after the crash; exactly the
//!   durable ones if nothing unsynced reached the disk, exactly all of them if
//!   everything did (a kill: the page cache kept). See `append_only.rs` for the image
//!   classes (cut between the data flush and the lazy register write, a torn record in
//!   the adopted tail, two crashes in a row, stale frames of an abandoned write);
//! - the recovered structure still works (append, insert, set, sync).
//!
//! `checks_catch_ordering_violations` shows that the checks fail on disks no crash can
//! leave (a sync that returned before its data was flushed, a length recorded over data
//! never written, a stale frame adopted, records never written).
//!
//! Seeds: `ACCRETION_SEED` sets the base seed (else random); a failing test prints it with
//! the image number and crash point, and keeps the failing image on disk. Stores and
//! images live under `ACCRETION_CRASH_DIR`, else `/dev/shm`, else the temporary directory.

mod append_only;
mod btree;
mod disk;
mod frames;
mod harness;
mod hash_store;
mod log_store;
mod second_process;
mod sharded_store;

use std::collections::HashSet;
use std::path::Path;

use accretion::{AppendOnly, Content, ContentId, Dir, Journal, OnceMap, RandomAccess};
use rand::Rng;

use harness::{Crash, FlushOrder, Granularity, History, Image, ImageSpec, Mix, Replay};

// Crash images checked per scenario (the whole binary takes a few seconds on tmpfs).
const JOURNAL_IMAGES: usize = 300;
const JOURNAL_PAIR_IMAGES: usize = 100;
const RANDOM_ACCESS_IMAGES: usize = 300;
const ONCE_MAP_IMAGES: usize = 400;
const CONTENT_IMAGES: usize = 300;
/// Crash-recover-crash scenarios: recovered first crashes, and images of each second life.
const SECOND_LIVES: usize = 4;
const SECOND_LIFE_IMAGES: usize = 80;

/// Builds `images` crash images of `history` and checks each with `check`, which gets the
/// image's store directory, the crash, and the syncs whose state it may hold, and returns
/// the one whose state it found. Prints a summary (seen with `--nocapture`).
fn check_images(
    replay: &mut Replay,
    history: &History,
    order: &FlushOrder,
    images: usize,
    mut check: impl FnMut(&Path, &Crash, &[usize]) -> Result<usize, String>,
) {
    // Per cut (the last entry: mid-work crashes): images, and how many recovered the
    // newer of two possible states.
    let mut tally = vec![(0usize, 0usize); order.len() + 2];
    for n in 0..images {
        let crash = history.random_crash(&mut replay.rng, order, n);
        replay.context = format!("checking image {n} ({crash})");
        let image = history.image(&crash, order);
        let possible = history.possible_syncs(&crash, order);
        match check(image.path(), &crash, &possible) {
            Ok(found) => {
                let t = &mut tally[crash.cut.unwrap_or(order.len() + 1)];
                t.0 += 1;
                t.1 += usize::from(possible.len() > 1 && found == possible.len() - 1);
            }
            Err(e) => panic!("image {n} ({crash}): expected the state of sync {possible:?}: {e}"),
        }
    }
    eprintln!(
        "{}: {images} images, seed {}: (images, newer state recovered) per cut 0..={} \
         then mid-work: {tally:?}",
        replay.test,
        replay.seed,
        order.len()
    );
}

/// How many items (records, entries, blobs) a structure held at each point of a
/// [`History`] and at each sync: for the structures whose crash leaves a prefix of what
/// was written (AppendOnly and what is built on it).
#[derive(Debug)]
struct Counts {
    at_point: Vec<usize>,
    at_sync: Vec<usize>,
}

impl Counts {
    /// Counts for a history just started (sync 0) on `n` items.
    fn new(n: usize) -> Counts {
        Counts {
            at_point: vec![n],
            at_sync: vec![n],
        }
    }

    /// Records a sync that returned with `n` items.
    fn synced(&mut self, history: &mut History, n: usize) {
        history.synced();
        self.at_point.push(n);
        self.at_sync.push(n);
    }

    /// Records a point mid-work with `n` items.
    fn mid(&mut self, history: &mut History, n: usize) {
        history.mid();
        self.at_point.push(n);
    }

    /// How many items an image of `crash` may hold (a prefix of what was written): at
    /// least what the syncs it may hold made durable (a sync's commit is its first
    /// flush), at most what was written by the crash. Exactly the first if nothing
    /// unsynced reached the disk (`Mix::Old`), exactly the second if everything did
    /// (`Mix::New`: the disk a kill leaves, the page cache kept).
    fn bounds(&self, history: &History, crash: &Crash, order: &FlushOrder) -> (usize, usize) {
        let possible = history.possible_syncs(crash, order);
        let lo = self.at_sync[possible[0]];
        let hi = self.at_point[crash.at];
        assert!(lo <= hi, "a sync count above its point's");
        match crash.mix {
            Mix::Old => (lo, lo),
            Mix::New => (hi, hi),
            Mix::Random(_) => (lo, hi),
        }
    }
}

/// `Ok(k)` if `lo <= k <= hi`, else what is wrong.
fn in_bounds(k: usize, lo: usize, hi: usize, what: &str) -> Result<usize, String> {
    if k < lo {
        Err(format!(
            "{k} {what} recovered, but {lo} were durable (a sync that returned covered them)"
        ))
    } else if k > hi {
        Err(format!(
            "{k} {what} recovered, but only {hi} were written by the crash"
        ))
    } else {
        Ok(k)
    }
}

/// Builds the image of each crash of `history` and checks it with `check`, which gets
/// the image's store directory and the bounds of [`Counts::bounds`] and returns how many
/// items it found. Prints a summary per cut (seen with `--nocapture`).
fn check_prefix_crashes(
    replay: &mut Replay,
    history: &History,
    counts: &Counts,
    order: &FlushOrder,
    crashes: Vec<Crash>,
    mut check: impl FnMut(&Path, usize, usize) -> Result<usize, String>,
) {
    // Per cut (the last entry: mid-work crashes): images; images where the durable
    // items were all there could be; where some unsynced ones came back, but not all;
    // where every item written came back, some unsynced.
    let mut tally = vec![[0usize; 4]; order.len() + 2];
    let images = crashes.len();
    for (n, crash) in crashes.into_iter().enumerate() {
        replay.context = format!("checking image {n} ({crash})");
        let image = history.image(&crash, order);
        let (lo, hi) = counts.bounds(history, &crash, order);
        match check(image.path(), lo, hi) {
            Ok(k) => {
                let t = &mut tally[crash.cut.unwrap_or(order.len() + 1)];
                t[0] += 1;
                t[if k == lo {
                    1
                } else if k < hi {
                    2
                } else {
                    3
                }] += 1;
            }
            Err(e) => panic!("image {n} ({crash}): expected {lo}..={hi} items: {e}"),
        }
    }
    eprintln!(
        "{}: {images} images, seed {}: [images, durable only, some unsynced, all written]          per cut 0..={} then mid-work: {tally:?}",
        replay.test,
        replay.seed,
        order.len()
    );
}

/// Which of `possible` (the candidate states) `found` is, as an `Ok` for [`check_images`].
fn which<T: PartialEq + std::fmt::Debug>(
    found: &T,
    possible: &[T],
    what: &str,
) -> Result<usize, String> {
    possible
        .iter()
        .position(|p| p == found)
        .ok_or_else(|| format!("{what} {found:?}, expected one of {possible:?}"))
}

fn open_dir(path: &Path) -> Result<Dir, String> {
    Dir::open(path).map_err(|e| format!("Dir::open failed: {e}"))
}

/// A store directory for a workload, removed at the end of the test.
fn store() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::Builder::new()
        .prefix("accretion-crash-work-")
        .tempdir_in(harness::scratch_root())
        .expect("temporary directory");
    let dir = Dir::open(tmp.path()).expect("open store");
    (tmp, dir)
}

/// Leaves in `image` what a crash while creating the next lane of `prefix` in directory
/// `dir` leaves: a `.tmp` file holding some prefix of the lane (here random bytes). Valid
/// at any crash point, since a lane is created before anything is written into it.
fn leftover_lane_tmp(image: &Image, dir: &str, prefix: &str, rng: &mut impl Rng) {
    let next = (0..32)
        .find(|i| {
            !image
                .path()
                .join(format!("{dir}/{prefix}-{i:02}.acc"))
                .exists()
        })
        .expect("a lane left to create");
    let junk = random_bytes(rng.random_range(0..10_000), rng);
    image.write(&format!("{dir}/{prefix}-{next:02}.acc.tmp"), &junk);
}

fn random_bytes(len: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

// ---------------------------------------------------------------------------------------
// Journal

type Value = [u64; 8];

/// A journal's workload: values set (1 to 3 per round) and synced; some snapshots between
/// a set and the sync; unsynced sets at the end. Returns the history and the value each
/// sync made durable (index = sync number; sync 0 is the zero value).
fn journal_workload(replay: &mut Replay) -> (History, Vec<Value>) {
    let (tmp, dir) = store();
    let j = Journal::<Value>::open(&dir, "j").expect("open journal");
    let mut history = History::new(tmp.path());
    let mut synced = vec![[0u64; 8]];
    let rng = &mut replay.rng;
    for _ in 0..30 {
        for _ in 0..rng.random_range(1..=3) {
            j.set(rng.random()).expect("set");
            if rng.random_bool(0.3) {
                history.mid();
            }
        }
        j.sync().expect("sync");
        history.synced();
        synced.push(j.get());
    }
    j.set(rng.random()).expect("set");
    history.mid();
    (history, synced)
}

fn check_journal(path: &Path, possible: &[Value]) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let j = Journal::<Value>::open(&dir, "j").map_err(|e| format!("Journal::open failed: {e}"))?;
    let found = which(&j.get(), possible, "journal holds").map_err(|e| {
        format!(
            "{e} (recovered slot, valid slots: {:?})",
            j.recovered_slot()
        )
    })?;
    j.set([7; 8])
        .map_err(|e| format!("set after recovery: {e}"))?;
    j.sync().map_err(|e| format!("sync after recovery: {e}"))?;
    Ok(found)
}

#[test]
fn journal_crash_images() {
    let mut replay = Replay::new("journal_crash_images");
    let (history, synced) = journal_workload(&mut replay);
    let order = FlushOrder::journal("j");
    check_images(
        &mut replay,
        &history,
        &order,
        JOURNAL_IMAGES,
        |path, _, possible| {
            let values: Vec<Value> = possible.iter().map(|&s| synced[s]).collect();
            check_journal(path, &values)
        },
    );
}

/// The register alone survives even a disk no crash can leave: every sector from the
/// snapshot after sync `i` or the one after a later sync `j`, whatever syncs came between.
/// It holds one of the values synced from `i` to `j`, since each slot is self-contained.
#[test]
fn journal_any_two_syncs_mixed() {
    let mut replay = Replay::new("journal_any_two_syncs_mixed");
    let (history, synced) = journal_workload(&mut replay);
    let last = history.syncs();
    for n in 0..JOURNAL_PAIR_IMAGES {
        let i = replay.rng.random_range(0..last);
        let j = replay.rng.random_range(i + 1..=last);
        let seed = replay.rng.random();
        let p = replay.rng.random_range(0.05..0.95);
        replay.context = format!("checking image {n}: sync {i} mixed with sync {j}, seed {seed}");
        let image = Image::build(&ImageSpec {
            durable: history.after_sync(i),
            newer: vec![history.after_sync(j)],
            during: None,
            granularity: Granularity::Sector,
            mix: Mix::Random(p),
            seed,
        });
        if let Err(e) = check_journal(image.path(), &synced[i..=j]) {
            panic!("{}: {e}", replay.context);
        }
    }
}

// ---------------------------------------------------------------------------------------
// RandomAccess

type Elem = [u64; 2];

/// Sets at indices over three lanes, many overwriting earlier ones; an element set after
/// the last sync may hold any value it had since, unless the crash came after the cells
/// were flushed.
#[test]
fn random_access_crash_images() {
    let mut replay = Replay::new("random_access_crash_images");
    let (tmp, dir) = store();
    let arr = RandomAccess::<Elem>::open(&dir, "arr").expect("open");
    let mut history = History::new(tmp.path());
    // Every set, in order; how many had happened at each point and at each sync.
    let mut ops: Vec<(u64, Elem)> = Vec::new();
    let mut ops_at_point = vec![0usize];
    let mut ops_at_sync = vec![0usize];
    let mut lens = vec![0u64];
    let rng = &mut replay.rng;
    let mut written: Vec<u64> = Vec::new();
    for round in 0..30u64 {
        for _ in 0..40 {
            // Indices spread over three lanes (4096, 8192, 16384 elements), growing with
            // the rounds; a third of the sets overwrite an element written before.
            let index = if !written.is_empty() && rng.random_bool(0.33) {
                written[rng.random_range(0..written.len())]
            } else {
                rng.random_range(0..1_000 + round * 800)
            };
            let value: Elem = [rng.random_range(1..u64::MAX), rng.random()];
            arr.set(index, value).expect("set");
            ops.push((index, value));
            written.push(index);
            if rng.random_bool(0.03) {
                history.mid();
                ops_at_point.push(ops.len());
            }
        }
        arr.sync().expect("sync");
        history.synced();
        ops_at_point.push(ops.len());
        ops_at_sync.push(ops.len());
        lens.push(arr.len());
    }
    for _ in 0..20 {
        let index = rng.random_range(0..30_000);
        let value: Elem = [rng.random_range(1..u64::MAX), rng.random()];
        arr.set(index, value).expect("set");
        ops.push((index, value));
    }
    history.mid();
    ops_at_point.push(ops.len());
    drop((arr, dir));
    written.sort_unstable();
    written.dedup();
    written.extend([29_999, 28_000, 5_000]); // mostly never written

    let order = FlushOrder::random_access("arr");
    check_images(
        &mut replay,
        &history,
        &order,
        RANDOM_ACCESS_IMAGES,
        |path, crash, possible| {
            let durable = history.durable_sync(crash);
            let lens: Vec<u64> = possible.iter().map(|&s| lens[s]).collect();
            // Cells flushed (cut past them): every element is exactly as at the crash.
            let exact = crash.cut.is_some_and(|c| c > 0) || crash.mix == Mix::New;
            check_random_access(
                path,
                &written,
                &ops[..ops_at_point[crash.at]],
                ops_at_sync[durable],
                &lens,
                exact,
            )
        },
    );
}

/// `ops` are the sets up to the crash, the first `durable_ops` of them synced. An element
/// holds its synced value or any value set later (the contract: old, new or torn; our
/// elements never straddle a sector, so never torn), or exactly its last value if `exact`.
fn check_random_access(
    path: &Path,
    indices: &[u64],
    ops: &[(u64, Elem)],
    durable_ops: usize,
    lens: &[u64],
    exact: bool,
) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let arr = RandomAccess::<Elem>::open(&dir, "arr").map_err(|e| format!("open: {e}"))?;
    let len = arr.len();
    let found = which(&len, lens, "len")?;
    for &index in indices {
        let last = |ops: &[(u64, Elem)]| {
            ops.iter()
                .rev()
                .find(|(i, _)| *i == index)
                .map_or([0; 2], |(_, v)| *v)
        };
        let mut allowed = vec![if exact {
            last(ops)
        } else {
            last(&ops[..durable_ops])
        }];
        if !exact {
            allowed.extend(
                ops[durable_ops..]
                    .iter()
                    .filter(|(i, _)| *i == index)
                    .map(|(_, v)| *v),
            );
        }
        if index >= len {
            allowed = vec![[0; 2]]; // past the length every element reads as zeros
        }
        let got = arr.read(index).map_err(|e| format!("read {index}: {e}"))?;
        if !allowed.contains(&got) {
            return Err(format!(
                "element {index} is {got:?}, expected one of {allowed:?}"
            ));
        }
    }
    arr.set(len, [1, 2])
        .map_err(|e| format!("set after recovery: {e}"))?;
    arr.sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// OnceMap and Content

/// What a map check needs: every entry the workload inserted, in order (later ones must
/// be absent), keys never inserted, and the entry count at each point and each sync.
struct MapModel {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    never: Vec<Vec<u8>>,
    counts: Counts,
}

fn value_len(rng: &mut impl Rng) -> usize {
    if rng.random_bool(0.004) {
        rng.random_range(20_000..80_000) // spills the log into new lanes
    } else {
        rng.random_range(0..200)
    }
}

/// The shape of a [`once_map_rounds`] workload.
struct Rounds<'a> {
    rounds: usize,
    per_round: usize,
    life: usize,
    again: &'a [Vec<u8>],
}

/// Rounds of `per_round` inserts into `map` (and `model`), each but the last followed by
/// a sync; snapshots now and then mid-round and after the unsynced last round. Keys are
/// new (tagged `life`) except for a few repeated ones, and `again`: keys a crash lost,
/// inserted anew with new values in the first round.
fn once_map_rounds(
    rng: &mut impl Rng,
    map: &OnceMap,
    history: &mut History,
    model: &mut MapModel,
    plan: Rounds<'_>,
) {
    let Rounds {
        rounds,
        per_round,
        life,
        again,
    } = plan;
    let mut again = again.iter();
    for round in 0..rounds {
        for _ in 0..per_round {
            if !model.entries.is_empty() && rng.random_bool(0.03) {
                let (k, v) = &model.entries[rng.random_range(0..model.entries.len())];
                let got = map.insert(k, b"ignored").expect("insert");
                assert!(!got.is_inserted() && got.value() == &v[..], "existing key");
                continue;
            }
            let key = match again.next() {
                Some(k) => k.clone(),
                None => {
                    let n = model.entries.len();
                    let mut key = format!("life{life}-{n:05}-").into_bytes();
                    key.extend(random_bytes(rng.random_range(0..24), rng));
                    key
                }
            };
            let value = random_bytes(value_len(rng), rng);
            assert!(map.insert(&key, &value).expect("insert").is_inserted());
            model.entries.push((key, value));
            if rng.random_bool(0.01) {
                model.counts.mid(history, model.entries.len());
            }
        }
        if round + 1 < rounds {
            map.sync().expect("sync");
            assert_eq!(map.len(), model.entries.len() as u64);
            model.counts.synced(history, model.entries.len());
        }
    }
    model.counts.mid(history, model.entries.len());
}

#[test]
fn once_map_crash_images() {
    let mut replay = Replay::new("once_map_crash_images");
    let (tmp, dir) = store();
    let map = OnceMap::open(&dir, "m").expect("open");
    let mut history = History::new(tmp.path());
    let mut model = MapModel {
        entries: Vec::new(),
        never: (0..30).map(|i| format!("never-{i}").into_bytes()).collect(),
        counts: Counts::new(0),
    };
    // 3000 entries cross index levels 0 (512 entries), 1 (1024) and 2.
    once_map_rounds(
        &mut replay.rng,
        &map,
        &mut history,
        &mut model,
        Rounds {
            rounds: 25,
            per_round: 120,
            life: 1,
            again: &[],
        },
    );
    drop((map, dir));
    let order = FlushOrder::once_map("m");
    let crashes = (0..ONCE_MAP_IMAGES)
        .map(|n| history.random_crash(&mut replay.rng, &order, n))
        .collect();
    check_prefix_crashes(
        &mut replay,
        &history,
        &model.counts,
        &order,
        crashes,
        |path, lo, hi| check_once_map(path, &model, lo, hi),
    );
}

/// Crash, recover, keep working on the recovered disk (stale index slots, stale log bytes
/// past the recovered length and debris of interrupted lane creations included; lost keys
/// inserted anew), crash again.
#[test]
fn once_map_crash_twice() {
    let mut replay = Replay::new("once_map_crash_twice");
    let (tmp, dir) = store();
    let map = OnceMap::open(&dir, "m").expect("open");
    let mut first = History::new(tmp.path());
    let mut model = MapModel {
        entries: Vec::new(),
        never: vec![b"never".to_vec()],
        counts: Counts::new(0),
    };
    once_map_rounds(
        &mut replay.rng,
        &map,
        &mut first,
        &mut model,
        Rounds {
            rounds: 12,
            per_round: 100,
            life: 1,
            again: &[],
        },
    );
    drop((map, dir));
    let order = FlushOrder::once_map("m");
    for life in 0..SECOND_LIVES {
        let n = replay.rng.random_range(0..1000);
        let crash = first.random_crash(&mut replay.rng, &order, n);
        replay.context = format!("recovering life {life} from {crash}");
        let image = first.image(&crash, &order);
        leftover_lane_tmp(&image, "m/log", "data", &mut replay.rng);
        leftover_lane_tmp(&image, "m/index", "cells", &mut replay.rng);
        let (lo, hi) = model.counts.bounds(&first, &crash, &order);
        let dir = Dir::open(image.path()).expect("open first crash image");
        let map = OnceMap::open(&dir, "m").expect("open map on first crash image");
        let n = map.len() as usize;
        in_bounds(n, lo, hi, "entries").unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        let lost: Vec<Vec<u8>> = model.entries[n..].iter().map(|(k, _)| k.clone()).collect();
        let (again, never) = lost.split_at(lost.len() / 2);
        let mut entries = model.entries[..n].to_vec();
        // This session's epoch is taken (durably) by the log's first append: before the
        // history starts, so that S0 of every second crash holds it.
        let (first_key, again) = match again.split_first() {
            Some((k, rest)) => (k.clone(), rest),
            None => (b"life2-first".to_vec(), again),
        };
        assert!(
            map.insert(&first_key, b"first")
                .expect("insert")
                .is_inserted()
        );
        entries.push((first_key, b"first".to_vec()));
        map.sync().expect("sync");
        let mut second = History::new(image.path());
        let mut model2 = MapModel {
            counts: Counts::new(entries.len()),
            entries,
            never: never.to_vec(),
        };
        once_map_rounds(
            &mut replay.rng,
            &map,
            &mut second,
            &mut model2,
            Rounds {
                rounds: 8,
                per_round: 100,
                life: 2,
                again,
            },
        );
        drop((map, dir));
        let crashes = (0..SECOND_LIFE_IMAGES)
            .map(|n| second.random_crash(&mut replay.rng, &order, n))
            .collect();
        check_prefix_crashes(
            &mut replay,
            &second,
            &model2.counts,
            &order,
            crashes,
            |path, lo, hi| check_once_map(path, &model2, lo, hi),
        );
    }
}

/// The map in `path` holds the first `n` entries of `model`, `lo <= n <= hi`, and no
/// other; lost entries can be inserted anew. Returns `n`.
fn check_once_map(path: &Path, model: &MapModel, lo: usize, hi: usize) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let map = OnceMap::open(&dir, "m").map_err(|e| format!("OnceMap::open: {e}"))?;
    let n = map.len() as usize;
    let found = in_bounds(n, lo, hi, "entries")?;
    let mut seen = 0;
    for (i, entry) in map.iter().enumerate() {
        let (k, v) = entry.map_err(|e| format!("iter entry {i}: {e}"))?;
        match model.entries.get(i) {
            Some((mk, mv)) if i < n && k == &mk[..] && v == &mv[..] => {}
            _ => {
                return Err(format!(
                    "iter entry {i} (of len {n}) is not the model's entry {i}"
                ));
            }
        }
        seen += 1;
    }
    if seen != n {
        return Err(format!("iter yields {seen} entries, len is {n}"));
    }
    for (i, (k, v)) in model.entries.iter().enumerate() {
        let got = map.get(k).map_err(|e| format!("get entry {i}: {e}"))?;
        let want = (i < n).then_some(&v[..]);
        if got != want {
            return Err(format!(
                "get(entry {i}) is {:?}, expected {:?} (state of {n} entries)",
                got.map(<[u8]>::len),
                want.map(<[u8]>::len)
            ));
        }
    }
    for k in &model.never {
        if map.get(k).map_err(|e| format!("get: {e}"))?.is_some() {
            return Err("a key never inserted is present".into());
        }
    }
    // Usable: lost keys can be inserted anew (stale index slots must not confuse this),
    // existing ones stay.
    for (i, (k, _)) in model.entries.iter().enumerate().skip(n).take(8) {
        let value = format!("again {i}").into_bytes();
        let ins = map.insert(k, &value).map_err(|e| format!("insert: {e}"))?;
        if !ins.is_inserted() || map.get(k).ok().flatten() != Some(&value[..]) {
            return Err(format!("re-inserting lost entry {i} failed"));
        }
    }
    if let Some((k, v)) = model.entries.first().filter(|_| n > 0) {
        let ins = map
            .insert(k, b"other")
            .map_err(|e| format!("insert: {e}"))?;
        if ins.is_inserted() || ins.value() != &v[..] {
            return Err("an existing key was inserted again".into());
        }
    }
    map.sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    Ok(found)
}

#[test]
fn content_crash_images() {
    let mut replay = Replay::new("content_crash_images");
    let (tmp, dir) = store();
    let blobs = Content::open(&dir, "c").expect("open");
    let mut history = History::new(tmp.path());
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut ids: HashSet<ContentId> = HashSet::new();
    let mut counts = Counts::new(0);
    let rng = &mut replay.rng;
    for round in 0..20 {
        for _ in 0..70 {
            let blob = if !model.is_empty() && rng.random_bool(0.04) {
                model[rng.random_range(0..model.len())].clone()
            } else if rng.random_bool(0.01) {
                random_bytes(rng.random_range(30_000..90_000), rng)
            } else {
                random_bytes(rng.random_range(0..1_500), rng)
            };
            let id = blobs.insert(&blob).expect("insert");
            assert_eq!(id, ContentId::of(&blob));
            if ids.insert(id) {
                model.push(blob);
            }
            if rng.random_bool(0.01) {
                counts.mid(&mut history, model.len());
            }
        }
        if round == 19 {
            break; // the last round stays unsynced
        }
        blobs.sync().expect("sync");
        assert_eq!(blobs.len(), model.len() as u64);
        counts.synced(&mut history, model.len());
    }
    counts.mid(&mut history, model.len());
    drop((blobs, dir));
    let never: Vec<ContentId> = (0..20u32)
        .map(|i| ContentId::of(&i.to_le_bytes()))
        .collect();

    let order = FlushOrder::content("c");
    let crashes = (0..CONTENT_IMAGES)
        .map(|n| history.random_crash(&mut replay.rng, &order, n))
        .collect();
    check_prefix_crashes(
        &mut replay,
        &history,
        &counts,
        &order,
        crashes,
        |path, lo, hi| check_content(path, &model, &never, lo, hi),
    );
}

fn check_content(
    path: &Path,
    model: &[Vec<u8>],
    never: &[ContentId],
    lo: usize,
    hi: usize,
) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let blobs = Content::open(&dir, "c").map_err(|e| format!("Content::open: {e}"))?;
    let n = blobs.len() as usize;
    let found = in_bounds(n, lo, hi, "blobs")?;
    let got: Vec<ContentId> = blobs
        .ids()
        .collect::<accretion::Result<_>>()
        .map_err(|e| format!("ids: {e}"))?;
    let want: Vec<ContentId> = model[..n].iter().map(|b| ContentId::of(b)).collect();
    if got != want {
        return Err(format!(
            "ids() yields {} ids, not the model's first {n}",
            got.len()
        ));
    }
    for (i, blob) in model.iter().enumerate() {
        let id = ContentId::of(blob);
        let got = blobs.get(&id).map_err(|e| format!("get blob {i}: {e}"))?;
        if got != (i < n).then_some(&blob[..]) {
            return Err(format!("get(blob {i}) is wrong (state of {n} blobs)"));
        }
    }
    for id in never {
        if blobs.contains(id).map_err(|e| format!("contains: {e}"))? {
            return Err(format!("blob {id} never inserted is present"));
        }
    }
    if let Some(lost) = model.get(n) {
        let id = blobs.insert(lost).map_err(|e| format!("insert: {e}"))?;
        if blobs.get(&id).ok().flatten() != Some(&lost[..]) {
            return Err("re-inserting a lost blob failed".into());
        }
    }
    blobs
        .sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// The checks are not vacuous

/// Images that break the contract on purpose (a sync that returned before its data was
/// flushed, a length that covers data which never reached the disk, a stale frame
/// forged into the current epoch, records the model never wrote) make the checks fail,
/// while the images around them pass.
#[test]
fn checks_catch_ordering_violations() {
    let mut replay = Replay::new("checks_catch_ordering_violations");
    let rng = &mut replay.rng;

    // AppendOnly: three records, each synced with its length recorded, then two unsynced.
    let (tmp, dir) = store();
    let buf = AppendOnly::open(&dir, "buf").expect("open");
    let mut history = History::new(tmp.path());
    let mut recs: Vec<append_only::Rec> = Vec::new();
    let mut push = |buf: &AppendOnly, recs: &mut Vec<append_only::Rec>, len: usize| {
        let bytes = random_bytes(len, rng);
        let span = buf.append(&bytes).expect("append");
        recs.push(append_only::Rec {
            span,
            bytes,
            align: 1,
        });
    };
    for len in [5_000, 3_000, 70_000] {
        push(&buf, &mut recs, len);
        buf.sync_recorded().expect("sync_recorded");
        history.synced();
    }
    for len in [2_000, 1_000] {
        push(&buf, &mut recs, len);
    }
    let mid = history.mid();
    drop((buf, dir));
    let check = |image: &Image, recs: &[append_only::Rec], lo: usize, hi: usize| {
        append_only::check_append_only(image.path(), recs, lo, hi, &mut |_, _, _| {})
    };
    for s in 0..=3 {
        let image = Image::of(history.after_sync(s));
        check(&image, &recs, s, s).unwrap_or_else(|e| panic!("pure image of sync {s} fails: {e}"));
    }
    let image = Image::of(&history.point(mid).snapshot);
    check(&image, &recs, 5, 5).expect("the disk of a kill holds every record appended");
    // The disk of sync 1 taken for that of sync 2 (a sync that returned before its data
    // was flushed): a durable record is missing.
    let image = Image::of(history.after_sync(1));
    let err = check(&image, &recs, 2, 3).expect_err("sync 2 lost must fail the check");
    assert!(err.contains("were durable"), "unexpected failure: {err}");
    let length_of = |s: usize| {
        history
            .after_sync(s)
            .file("buf/length.acc")
            .expect("length")
    };
    // A length recorded over data that never reached the disk (the register written
    // before the data's flush): the records below it are not there.
    let wrong = history
        .after_sync(1)
        .with_file("buf/length.acc", length_of(2));
    let image = Image::of(&wrong);
    let err = check(&image, &recs, 1, 2)
        .expect_err("length of sync 2 over the data of sync 1 must fail the check");
    assert!(
        err.contains("walking record 1"),
        "unexpected failure: {err}"
    );
    // Sync 3's record went to a new lane, which sync 1's disk lacks: open must refuse.
    let wrong = history
        .after_sync(1)
        .with_file("buf/length.acc", length_of(3));
    let image = Image::of(&wrong);
    let err = check(&image, &recs, 1, 3).expect_err("length of sync 3 without its lane must fail");
    assert!(
        err.contains("AppendOnly::open"),
        "unexpected failure: {err}"
    );
    // A model that differs in one byte is noticed too.
    let image = Image::of(history.after_sync(3));
    let mut bad = recs.clone();
    bad[1].bytes[1_000] ^= 1;
    let err = check(&image, &bad, 3, 3).expect_err("a record other than written");
    assert!(err.contains("never written"), "unexpected failure: {err}");
    // A stale frame adopted: the kill's disk with record 3's frame torn recovers three
    // records; a second life appends one of record 3's length (so that record 4's stale
    // frame follows it, its checksum valid) and is killed. Its disk recovers four
    // records, the stale one refused by its older epoch; with that frame forged to the
    // second life's epoch (a writer that reused an epoch), the stale record is adopted,
    // which the check must notice.
    let first = Image::of(&history.point(mid).snapshot);
    let (lane, at) = frames::locate(recs[3].span.offset() - 16);
    let lane_path = first.path().join(format!("buf/data-{lane:02}.acc"));
    let mut lane_bytes = std::fs::read(&lane_path).expect("read lane");
    lane_bytes[at as usize..at as usize + 16].fill(0);
    std::fs::write(&lane_path, lane_bytes).expect("write lane");
    let mut recs2 = recs[..3].to_vec();
    {
        let dir = Dir::open(first.path()).expect("open");
        let buf = AppendOnly::open(&dir, "buf").expect("open");
        assert_eq!(
            buf.len(),
            recs[2].span.end(),
            "adoption ends at the torn frame"
        );
        push(&buf, &mut recs2, recs[3].bytes.len());
        assert_eq!(
            recs2[3].span, recs[3].span,
            "appended where the lost record was"
        );
    }
    let killed = harness::Snapshot::take(first.path());
    let image = Image::of(&killed);
    let nonce = frames::nonce(image.path(), "buf");
    let stale_at = recs[4].span.offset() - 16;
    let mine = frames::record_frame(image.path(), "buf", nonce, recs2[3].span.offset() - 16)
        .expect("the new record's frame");
    let stale = frames::record_frame(image.path(), "buf", nonce, stale_at).expect("stale frame");
    assert!(
        mine.holds && stale.holds && stale.epoch < mine.epoch,
        "{mine:?} {stale:?}"
    );
    check(&image, &recs2, 4, 4).expect("the stale frame is refused");
    let image = Image::of(&killed);
    frames::forge_epoch(image.path(), "buf", nonce, stale_at, mine.epoch);
    let err = check(&image, &recs2, 4, 4).expect_err("an adopted stale record must fail");
    assert!(err.contains("never appended"), "unexpected failure: {err}");
    drop(image);

    // OnceMap: two synced rounds of 100 entries.
    let (tmp, dir) = store();
    let map = OnceMap::open(&dir, "m").expect("open");
    let mut history = History::new(tmp.path());
    let mut model = MapModel {
        entries: Vec::new(),
        never: vec![b"never".to_vec()],
        counts: Counts::new(0),
    };
    for _ in 0..2 {
        for _ in 0..100 {
            let key = format!("key {}", model.entries.len()).into_bytes();
            let value = random_bytes(50, rng);
            map.insert(&key, &value).expect("insert");
            model.entries.push((key, value));
        }
        map.sync().expect("sync");
        model.counts.synced(&mut history, model.entries.len());
    }
    drop((map, dir));
    let image = Image::of(history.after_sync(2));
    check_once_map(image.path(), &model, 200, 200).expect("pure image of sync 2");
    // The disk of sync 1 taken for that of sync 2: durable entries are missing.
    let image = Image::of(history.after_sync(1));
    let err = check_once_map(image.path(), &model, 200, 200)
        .expect_err("the entries of sync 2 lost must fail");
    assert!(err.contains("were durable"), "unexpected failure: {err}");
    // Entries the model never wrote (it stops at 190) on the disk: noticed.
    let image = Image::of(history.after_sync(2));
    let mut short = MapModel {
        entries: model.entries[..190].to_vec(),
        never: model.entries[190..]
            .iter()
            .map(|(k, _)| k.clone())
            .collect(),
        counts: Counts::new(190),
    };
    short.never.push(b"never".to_vec());
    let err = check_once_map(image.path(), &short, 100, 190)
        .expect_err("entries never written must fail");
    assert!(
        err.contains("only 190 were written"),
        "unexpected failure: {err}"
    );
}
