//! LogStore corruption: every byte of the state journal's header and slots, of every
//! segment's and hint's headers and length register, and a sample of their data, is
//! flipped or zeroed in turn, and every file is truncated to several lengths. Each time
//! the store is opened and read in full under `catch_unwind`: opening gives a recovered
//! store or a typed error, never a panic; a recovered store returns only values that
//! were really written for their key, and still takes writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use accretion::{Dir, Error, LogOptions, LogStore, WriteBatch};

use crate::common::snapshot;

fn opts() -> LogOptions {
    LogOptions {
        segment_bytes: 700,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// Every value ever written per key.
type History = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

/// Builds the store: a compacted generation, finished segments with hints, an active
/// segment, a batch, tombstones.
fn build(path: &Path) -> History {
    let mut history = History::new();
    let dir = Dir::open(path).unwrap();
    let store = LogStore::open(&dir, "kv", opts()).unwrap();
    let mut put = |store: &LogStore, k: &[u8], v: Vec<u8>| {
        store.put(k, &v).unwrap();
        history.entry(k.to_vec()).or_default().insert(v);
    };
    for i in 0..24u8 {
        put(&store, &[b'k', i], vec![i; 20 + usize::from(i)]);
    }
    for i in (0..24u8).step_by(3) {
        store.delete(&[b'k', i]).unwrap();
    }
    store.compact().unwrap();
    for i in 0..12u8 {
        put(&store, &[b'k', i * 2], vec![i ^ 0x5a; 30]);
    }
    let mut batch = WriteBatch::new();
    batch
        .put(b"batch-a", b"A")
        .put(b"batch-b", b"B")
        .delete(&[b'k', 1]);
    store.write(&batch).unwrap();
    history
        .entry(b"batch-a".to_vec())
        .or_default()
        .insert(b"A".to_vec());
    history
        .entry(b"batch-b".to_vec())
        .or_default()
        .insert(b"B".to_vec());
    store.sync().unwrap();
    history
}

fn restore(root: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    let _ = fs::remove_dir_all(root);
    for (rel, bytes) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

/// The offsets of `rel` worth damaging: every header and register byte, every fifth
/// data byte of a lane up to the end of what was written.
fn offsets(rel: &Path, bytes: &[u8]) -> Vec<usize> {
    let name = rel.file_name().unwrap().to_string_lossy();
    if name.ends_with(".acc") && name.starts_with("data-") {
        let written = bytes[4096..]
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |p| p + 1);
        (0..64).chain((4096..4096 + written).step_by(5)).collect()
    } else {
        // Registers: the header and the used part of each of the four 512-byte slots.
        (0..64)
            .chain((0..4).flat_map(|k| 512 + k * 512..512 + k * 512 + 96))
            .filter(|o| *o < bytes.len())
            .collect()
    }
}

/// Opens the store and reads it all; `Err` for a typed error, panics propagate.
fn check(root: &Path, history: &History) -> Result<(), Error> {
    let dir = Dir::open(root)?;
    let store = LogStore::open(&dir, "kv", opts())?;
    for entry in store.iter() {
        let (k, v) = match entry {
            Ok(kv) => kv,
            // A damaged value is reported, not returned.
            Err(Error::Corrupted { .. }) => continue,
            Err(e) => return Err(e),
        };
        let known = history.get(&*k).is_some_and(|vs| vs.contains(&*v));
        assert!(known, "{k:?} read as a value never written");
    }
    for k in history.keys() {
        let got = match store.get(k) {
            Err(Error::Corrupted { .. }) => continue,
            other => other?,
        };
        if let Some(v) = got {
            assert!(
                history[k].contains(&*v),
                "get {k:?} returned a value never written"
            );
        }
    }
    // A recovered store takes writes, and they survive a reopen.
    store.put(b"after", b"damage")?;
    store.sync()?;
    drop(store);
    let store = LogStore::open(&dir, "kv", opts())?;
    assert_eq!(store.get(b"after")?.as_deref(), Some(&b"damage"[..]));
    Ok(())
}

#[test]
fn log_store_every_byte() {
    // Opening syncs (a damaged active segment makes the store start a new one): on
    // tmpfs that costs nothing.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let root = tmp.path().join("s");
    let history = build(&root);
    let files = snapshot(&root);
    assert!(files.len() >= 10, "{:?}", files.keys().collect::<Vec<_>>());
    check(&root, &history).expect("the undamaged store opens");
    restore(&root, &files);
    let (mut cases, mut recovered, mut refused) = (0, 0, 0);
    let mut failures = Vec::new();
    for (rel, bytes) in &files {
        let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
        for at in offsets(rel, bytes) {
            for (what, byte) in [("flip", bytes[at] ^ 0xff), ("zero", 0)] {
                if byte != bytes[at] {
                    let mut b = bytes.clone();
                    b[at] = byte;
                    damages.push((format!("{what} byte {at}"), b));
                }
            }
        }
        for len in [0, 63, 64, 600, bytes.len() / 2, bytes.len() - 1] {
            if len < bytes.len() {
                damages.push((format!("truncate to {len}"), bytes[..len].to_vec()));
            }
        }
        for (what, damaged) in damages {
            fs::write(root.join(rel), &damaged).unwrap();
            cases += 1;
            match catch_unwind(AssertUnwindSafe(|| check(&root, &history))) {
                Ok(Ok(())) => recovered += 1,
                Ok(Err(e)) => {
                    assert!(
                        matches!(
                            e,
                            Error::Corrupted { .. }
                                | Error::UnsupportedVersion { .. }
                                | Error::Incompatible { .. }
                        ),
                        "{}: {what}: untyped refusal {e}",
                        rel.display()
                    );
                    refused += 1;
                }
                Err(_) => failures.push(format!("{}: {what}", rel.display())),
            }
            restore(&root, &files);
        }
    }
    println!("{cases} damaged stores: {recovered} recovered, {refused} refused");
    assert!(failures.is_empty(), "panics: {failures:?}");
    assert!(recovered > 0 && refused > 0);
}

/// Damage that open finds in the active segment is still reported by the next open:
/// the damaged segment gets no hint (a hint would list only the records before the
/// damage and hide it). Found by review: the second open showed `damaged_records: 0`.
///
/// The damage lies in the part of the segment its length register records (a sync
/// records it once 4 MiB lie past the last recorded length): past it, damage looks like
/// a torn tail and ends the adoption instead (`log_store.rs`,
/// `damage_in_the_unrecorded_tail_ends_adoption`).
#[test]
fn damage_found_at_open_is_reported_by_every_open() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 8 << 20,
        compact_dead_ratio: None,
        ..LogOptions::default()
    };
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let store = LogStore::open(&dir, "kv", opts.clone()).unwrap();
        for i in 0..60u32 {
            store
                .put(format!("k{i:02}").as_bytes(), &[i as u8; 50])
                .unwrap();
        }
        for i in 0..70u32 {
            store
                .put(format!("bulk{i:02}").as_bytes(), &[0xee; 60 << 10])
                .unwrap();
        }
        store.sync().unwrap();
        assert_eq!(store.stats().segments, 1, "{:?}", store.stats());
    }
    // Flip a value byte of the second record (k01) of the active segment, which has no
    // hint yet. A record: its 16-byte frame, a 24-byte record header, a 24-byte
    // operation header, the key (3 bytes), the value (50): 117 bytes, so the next frame
    // starts at 128, the next multiple of 16.
    let lane = tmp.path().join("kv/log-0000000001/data-00.acc");
    let mut bytes = fs::read(&lane).unwrap();
    let at = 4096 + 128 + 16 + 24 + 24 + 3 + 10;
    assert_eq!(&bytes[at - 13..at - 10], b"k01", "the layout changed");
    assert_eq!(bytes[at], 1);
    bytes[at] ^= 0x20;
    fs::write(&lane, bytes).unwrap();
    for round in 0..3 {
        let dir = Dir::open(tmp.path()).unwrap();
        let store = LogStore::open(&dir, "kv", opts.clone()).unwrap();
        let stats = store.stats();
        assert_eq!(stats.damaged_records, 1, "open {round}: {stats:?}");
        assert!(
            stats.damaged_bytes > 70 * (60 << 10),
            "open {round}: {stats:?}"
        );
        assert_eq!(store.get(b"k00").unwrap().unwrap(), [0u8; 50]);
        for k in [&b"k01"[..], b"k59", b"bulk00", b"bulk69"] {
            assert!(store.get(k).unwrap().is_none(), "open {round}: {k:?}");
        }
        assert_eq!(
            store.get(b"after").unwrap().is_some(),
            round > 0,
            "open {round}: a write after the damage"
        );
        store.put(b"after", b"damage").unwrap();
        store.sync().unwrap();
        drop(store);
        let dir2 = dir.clone();
        drop(dir2);
    }
}

/// A short lane file costs the records in what it lacks, not the store. Found by review:
/// one truncated lane (even cut only past the durable length) made the whole store
/// refuse to open.
#[test]
fn a_short_lane_costs_its_records_not_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 1 << 20,
        compact_dead_ratio: None,
        ..LogOptions::default()
    };
    let value = |i: u32| vec![(i % 251) as u8; 1000];
    let n = 3000u32; // about 3 MiB: three segments, each over four lanes
    let active = {
        let dir = Dir::open(tmp.path()).unwrap();
        let kv = LogStore::open(&dir, "kv", opts.clone()).unwrap();
        for i in 0..n {
            kv.put(format!("key-{i:05}").as_bytes(), &value(i)).unwrap();
        }
        kv.sync().unwrap();
        assert!(kv.stats().segments >= 3);
        kv.stats().active_log
    };
    let cut = |rel: &str, keep: u64| {
        fs::OpenOptions::new()
            .write(true)
            .open(tmp.path().join(rel))
            .unwrap()
            .set_len(keep)
            .unwrap();
    };
    // The active segment's last lane, cut past its durable length: nothing is lost.
    let active = format!("log-{active:010}");
    let last_lane = fs::read_dir(tmp.path().join("kv").join(&active))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("data-"))
        .max()
        .unwrap();
    let rel = format!("kv/{active}/{last_lane}");
    let len = fs::metadata(tmp.path().join(&rel)).unwrap().len();
    cut(&rel, len - 100);
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let kv = LogStore::open(&dir, "kv", opts.clone()).unwrap();
        assert_eq!(kv.stats().damaged_bytes, 0, "{:?}", kv.stats());
        for i in 0..n {
            let got = kv.get(format!("key-{i:05}").as_bytes()).unwrap().unwrap();
            assert_eq!(&*got, &value(i)[..], "key {i}");
        }
    }
    // The first segment's second lane, cut in half: its records there are lost, the
    // rest of the store is whole, and the store takes writes that survive a reopen.
    let lane = tmp.path().join("kv/log-0000000001/data-01.acc");
    let lane_len = fs::metadata(&lane).unwrap().len();
    cut("kv/log-0000000001/data-01.acc", lane_len / 2);
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", opts.clone()).unwrap();
    let stats = kv.stats();
    assert!(
        stats.damaged_bytes >= (lane_len - 4096) / 2 - 4096,
        "{stats:?}"
    );
    assert!(stats.damaged_records >= 1, "{stats:?}");
    let (mut lost, mut kept) = (0, 0);
    for i in 0..n {
        match kv.get(format!("key-{i:05}").as_bytes()) {
            Ok(Some(v)) => {
                assert_eq!(&*v, &value(i)[..], "key {i}");
                kept += 1;
            }
            Ok(None) | Err(Error::Corrupted { .. }) => lost += 1,
            Err(e) => panic!("key {i}: {e}"),
        }
    }
    assert!(lost > 0 && kept > n / 2, "lost {lost}, kept {kept}");
    kv.put(b"after", b"damage").unwrap();
    kv.sync().unwrap();
    drop(kv);
    let kv = LogStore::open(&dir, "kv", opts).unwrap();
    assert_eq!(kv.get(b"after").unwrap().as_deref(), Some(&b"damage"[..]));
}
