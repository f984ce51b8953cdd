//! Crash-image tests: every primitive, after a simulated power loss at many points and cut
//! points of its `sync`, reopens cleanly to exactly the state of a sync it may hold.
//!
//! Each test runs a seeded workload on one structure, recording a [`History`] of snapshots
//! (after opening, after every sync, and mid-work), together with a model of the state
//! each sync made durable. Then it builds many crash images (see `harness.rs` for the
//! crash model) and checks each against the model:
//! - opening the store and the structure succeeds;
//! - the recovered state is that of one of the syncs the crash may leave: the last sync
//!   that returned, or the one in progress if the crash came at or after its commit step
//!   (so nothing synced is lost and nothing unwritten appears);
//! - the recovered structure still works (append, insert, set, sync).
//!
//! Seeds: `ACCRETION_SEED` sets the base seed (else random); a failing test prints it with
//! the image number and crash point, and keeps the failing image on disk. Stores and
//! images live under `ACCRETION_CRASH_DIR`, else `/dev/shm`, else the temporary directory.

mod disk;
mod harness;
mod log_store;
mod second_process;

use std::collections::HashSet;
use std::path::Path;

use accretion::{AppendOnly, Content, ContentId, Dir, Journal, OnceMap, RandomAccess};
use rand::Rng;

use harness::{Crash, FlushOrder, Granularity, History, Image, ImageSpec, Mix, Replay};

// Crash images checked per scenario (the whole binary takes a few seconds on tmpfs).
const JOURNAL_IMAGES: usize = 300;
const JOURNAL_PAIR_IMAGES: usize = 100;
const APPEND_ONLY_IMAGES: usize = 500;
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
// AppendOnly

/// A record size: mostly small, some filling much of a lane, a few larger than the first
/// lanes (64 and 128 KiB), so that records skip to new lanes.
fn record_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100) {
        0..70 => rng.random_range(0..2_000),
        70..90 => rng.random_range(2_000..20_000),
        90..97 => rng.random_range(20_000..60_000),
        _ => rng.random_range(60_000..140_000),
    }
}

/// Appends a random record (sometimes aligned) to `buf` and to `model`, which mirrors the
/// buffer's bytes, padding included.
fn append_one(rng: &mut impl Rng, buf: &AppendOnly, model: &mut Vec<u8>) {
    let bytes = random_bytes(record_len(rng), rng);
    let span = if rng.random_bool(0.15) {
        let align = [8, 64, 4096][rng.random_range(0..3)];
        buf.append_aligned(&bytes, align).expect("append_aligned")
    } else {
        buf.append(&bytes).expect("append")
    };
    assert!(span.offset() >= model.len() as u64, "append went backwards");
    model.resize(span.offset() as usize, 0);
    model.extend_from_slice(&bytes);
    assert_eq!(buf.len(), model.len() as u64, "model and buffer disagree");
}

fn check_append_only(path: &Path, model: &[u8], lens: &[u64]) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let buf = AppendOnly::open(&dir, "buf").map_err(|e| format!("AppendOnly::open: {e}"))?;
    let len = buf.len();
    let found = which(&len, lens, "len").map_err(|e| {
        if lens.iter().all(|&l| len < l) {
            format!("{e}: synced bytes were lost")
        } else {
            e
        }
    })?;
    if buf.durable_len() != len {
        return Err(format!("durable_len {} != len {len}", buf.durable_len()));
    }
    let mut at = 0u64;
    for chunk in buf.chunks() {
        let (offset, bytes) = chunk.map_err(|e| format!("chunks: {e}"))?;
        if offset != at {
            return Err(format!("chunk at {offset}, expected one at {at}"));
        }
        let want = &model[offset as usize..offset as usize + bytes.len()];
        if let Some(i) = bytes.iter().zip(want).position(|(a, b)| a != b) {
            return Err(format!(
                "bytes differ from the model at offset {}: {:#04x}, written {:#04x}",
                offset + i as u64,
                bytes[i],
                want[i]
            ));
        }
        at += bytes.len() as u64;
    }
    if at != len {
        return Err(format!("chunks cover {at} bytes, len is {len}"));
    }
    let span = buf
        .append(b"after recovery")
        .map_err(|e| format!("append after recovery: {e}"))?;
    if span.offset() < len || buf.get(span).ok() != Some(&b"after recovery"[..]) {
        return Err(format!("append after recovery landed badly: {span:?}"));
    }
    buf.sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    Ok(found)
}

/// Runs `syncs` rounds of 1 to 5 appends each followed by a sync, sometimes snapshotting
/// mid-round, then a few unsynced appends. Extends the model bytes and the length each
/// sync made durable.
fn append_only_rounds(
    rng: &mut impl Rng,
    history: &mut History,
    buf: &AppendOnly,
    model: &mut Vec<u8>,
    lens: &mut Vec<u64>,
    syncs: usize,
) {
    for _ in 0..syncs {
        for _ in 0..rng.random_range(1..=5) {
            append_one(rng, buf, model);
            if rng.random_bool(0.15) {
                history.mid();
            }
        }
        buf.sync().expect("sync");
        history.synced();
        lens.push(buf.durable_len());
        assert_eq!(buf.durable_len(), model.len() as u64);
    }
    for _ in 0..3 {
        append_one(rng, buf, model);
    }
    history.mid();
}

#[test]
fn append_only_crash_images() {
    let mut replay = Replay::new("append_only_crash_images");
    let (tmp, dir) = store();
    let buf = AppendOnly::open(&dir, "buf").expect("open");
    let mut history = History::new(tmp.path());
    let (mut model, mut lens) = (Vec::new(), vec![0]);
    append_only_rounds(
        &mut replay.rng,
        &mut history,
        &buf,
        &mut model,
        &mut lens,
        30,
    );
    drop((buf, dir));
    let order = FlushOrder::append_only("buf");
    check_images(
        &mut replay,
        &history,
        &order,
        APPEND_ONLY_IMAGES,
        |path, _, possible| {
            let lens: Vec<u64> = possible.iter().map(|&s| lens[s]).collect();
            check_append_only(path, &model, &lens)
        },
    );
}

/// Crash, recover, append over the stale bytes past the recovered length (and into lanes
/// the first life created, or over the debris of an interrupted lane creation), crash
/// again.
#[test]
fn append_only_crash_twice() {
    let mut replay = Replay::new("append_only_crash_twice");
    let (tmp, dir) = store();
    let buf = AppendOnly::open(&dir, "buf").expect("open");
    let mut first = History::new(tmp.path());
    let (mut model, mut lens) = (Vec::new(), vec![0]);
    append_only_rounds(&mut replay.rng, &mut first, &buf, &mut model, &mut lens, 15);
    drop((buf, dir));
    let order = FlushOrder::append_only("buf");
    for life in 0..SECOND_LIVES {
        let n = replay.rng.random_range(0..1000);
        let crash = first.random_crash(&mut replay.rng, &order, n);
        replay.context = format!("recovering life {life} from {crash}");
        let image = first.image(&crash, &order);
        leftover_lane_tmp(&image, "buf", "data", &mut replay.rng);
        let dir = Dir::open(image.path()).expect("open first crash image");
        let buf = AppendOnly::open(&dir, "buf").expect("open buffer on first crash image");
        let len = buf.len();
        assert!(
            first
                .possible_syncs(&crash, &order)
                .iter()
                .any(|&s| lens[s] == len),
            "first crash recovered length {len}"
        );
        let mut second = History::new(image.path());
        let mut model2 = model[..len as usize].to_vec();
        let mut lens2 = vec![len];
        append_only_rounds(
            &mut replay.rng,
            &mut second,
            &buf,
            &mut model2,
            &mut lens2,
            10,
        );
        drop((buf, dir));
        check_images(
            &mut replay,
            &second,
            &order,
            SECOND_LIFE_IMAGES,
            |path, _, possible| {
                let lens: Vec<u64> = possible.iter().map(|&s| lens2[s]).collect();
                check_append_only(path, &model2, &lens)
            },
        );
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
/// be absent), keys never inserted, and the entry count each sync made durable.
struct MapModel {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    never: Vec<Vec<u8>>,
    counts: Vec<u64>,
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
                history.mid();
            }
        }
        if round + 1 < rounds {
            map.sync().expect("sync");
            history.synced();
            model.counts.push(map.len());
        }
    }
    history.mid();
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
        counts: vec![0],
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
    check_images(
        &mut replay,
        &history,
        &order,
        ONCE_MAP_IMAGES,
        |path, _, possible| {
            let counts: Vec<u64> = possible.iter().map(|&s| model.counts[s]).collect();
            check_once_map(path, &model, &counts)
        },
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
        counts: vec![0],
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
        let dir = Dir::open(image.path()).expect("open first crash image");
        let map = OnceMap::open(&dir, "m").expect("open map on first crash image");
        let n = map.len() as usize;
        assert!(
            first
                .possible_syncs(&crash, &order)
                .iter()
                .any(|&s| model.counts[s] as usize == n),
            "first crash recovered {n} entries"
        );
        let mut second = History::new(image.path());
        let lost: Vec<Vec<u8>> = model.entries[n..].iter().map(|(k, _)| k.clone()).collect();
        let again = &lost[..lost.len() / 2];
        let mut model2 = MapModel {
            entries: model.entries[..n].to_vec(),
            never: lost[lost.len() / 2..].to_vec(),
            counts: vec![n as u64],
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
        check_images(
            &mut replay,
            &second,
            &order,
            SECOND_LIFE_IMAGES,
            |path, _, possible| {
                let counts: Vec<u64> = possible.iter().map(|&s| model2.counts[s]).collect();
                check_once_map(path, &model2, &counts)
            },
        );
    }
}

fn check_once_map(path: &Path, model: &MapModel, counts: &[u64]) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let map = OnceMap::open(&dir, "m").map_err(|e| format!("OnceMap::open: {e}"))?;
    let n = map.len();
    let found = which(&n, counts, "len")?;
    let n = n as usize;
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
    let mut counts = vec![0u64];
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
                history.mid();
            }
        }
        if round == 19 {
            break; // the last round stays unsynced
        }
        blobs.sync().expect("sync");
        history.synced();
        counts.push(blobs.len());
    }
    history.mid();
    drop((blobs, dir));
    let never: Vec<ContentId> = (0..20u32)
        .map(|i| ContentId::of(&i.to_le_bytes()))
        .collect();

    let order = FlushOrder::content("c");
    check_images(
        &mut replay,
        &history,
        &order,
        CONTENT_IMAGES,
        |path, _, possible| {
            let counts: Vec<u64> = possible.iter().map(|&s| counts[s]).collect();
            check_content(path, &model, &never, &counts)
        },
    );
}

fn check_content(
    path: &Path,
    model: &[Vec<u8>],
    never: &[ContentId],
    counts: &[u64],
) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let blobs = Content::open(&dir, "c").map_err(|e| format!("Content::open: {e}"))?;
    let n = blobs.len();
    let found = which(&n, counts, "len")?;
    let n = n as usize;
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

/// Images that break the flush order on purpose (a length that covers data which never
/// reached the disk) make the checks fail, while the images around them pass.
#[test]
fn checks_catch_ordering_violations() {
    let mut replay = Replay::new("checks_catch_ordering_violations");
    let rng = &mut replay.rng;

    // AppendOnly, data of sync 2 still in lane 0: the bytes read back are wrong.
    let (tmp, dir) = store();
    let buf = AppendOnly::open(&dir, "buf").expect("open");
    let mut history = History::new(tmp.path());
    let mut model = Vec::new();
    let mut lens = vec![0];
    for len in [5_000, 3_000, 70_000] {
        let span = buf.append(&random_bytes(len, rng)).expect("append");
        model.resize(span.offset() as usize, 0);
        model.extend_from_slice(buf.get(span).expect("get"));
        buf.sync().expect("sync");
        history.synced();
        lens.push(buf.len());
    }
    drop((buf, dir));
    for s in 0..=3 {
        let image = Image::of(history.after_sync(s));
        check_append_only(image.path(), &model, &lens[s..=s])
            .unwrap_or_else(|e| panic!("pure image of sync {s} fails: {e}"));
    }
    let length_of = |s: usize| {
        history
            .after_sync(s)
            .file("buf/length.acc")
            .expect("length")
    };
    let wrong = history
        .after_sync(1)
        .with_file("buf/length.acc", length_of(2));
    let image = Image::of(&wrong);
    let err = check_append_only(image.path(), &model, &lens[1..=2])
        .expect_err("length of sync 2 over the data of sync 1 must fail the check");
    assert!(err.contains("bytes differ"), "unexpected failure: {err}");
    // Sync 3's record went to a new lane, which sync 1's disk lacks: open must refuse.
    let wrong = history
        .after_sync(1)
        .with_file("buf/length.acc", length_of(3));
    let image = Image::of(&wrong);
    let err = check_append_only(image.path(), &model, &lens[1..=3])
        .expect_err("length of sync 3 without its lane must fail");
    assert!(
        err.contains("AppendOnly::open"),
        "unexpected failure: {err}"
    );
    // A model that differs in one byte is noticed too.
    let image = Image::of(history.after_sync(3));
    let mut bad = model.clone();
    bad[4_000] ^= 1;
    assert!(check_append_only(image.path(), &bad, &lens[3..=3]).is_err());
    drop(image);

    // OnceMap: the log length and the count of sync 2 over the log of sync 1.
    let (tmp, dir) = store();
    let map = OnceMap::open(&dir, "m").expect("open");
    let mut history = History::new(tmp.path());
    let mut model = MapModel {
        entries: Vec::new(),
        never: vec![b"never".to_vec()],
        counts: vec![0],
    };
    for _ in 0..2 {
        for _ in 0..100 {
            let key = format!("key {}", model.entries.len()).into_bytes();
            let value = random_bytes(50, rng);
            map.insert(&key, &value).expect("insert");
            model.entries.push((key, value));
        }
        map.sync().expect("sync");
        history.synced();
        model.counts.push(map.len());
    }
    drop((map, dir));
    let s2 = history.after_sync(2);
    let image = Image::of(s2);
    check_once_map(image.path(), &model, &[200]).expect("pure image of sync 2");
    let wrong = history
        .after_sync(1)
        .with_file(
            "m/log/length.acc",
            s2.file("m/log/length.acc").expect("log length"),
        )
        .with_file(
            "m/meta/journal.acc",
            s2.file("m/meta/journal.acc").expect("meta"),
        );
    let image = Image::of(&wrong);
    let err = check_once_map(image.path(), &model, &[100, 200])
        .expect_err("count and log length of sync 2 over the log of sync 1 must fail");
    assert!(err.contains("iter"), "unexpected failure: {err}");
}
