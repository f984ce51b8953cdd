//! Review of the format-2 (framed) change: attempts to break it through the public API.
//! Each test that found a bug names it in a comment.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use accretion::{AppendOnly, Dir, Error, LogOptions, LogStore, OnceMap, Span, WriteBatch};
use rand::Rng;

use crate::common::Seeded;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Bug: `sync_recorded` run while a seal is reserved but a record reserved before it is
/// still being filled records the buffer as sealed at a length that leaves that record
/// out; the next open trusts the flag, walks nothing, and the record (whose append
/// returned, and which a later `sync` flushed) is gone.
#[test]
fn review_sealed_flag_recorded_before_an_earlier_record_is_published() {
    let dir = Dir::temporary().unwrap();
    let buf = Arc::new(AppendOnly::open(&dir, "b").unwrap());
    let first = buf.append(b"first").unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (in_fill_tx, in_fill_rx) = mpsc::channel::<()>();
    let slow = {
        let buf = Arc::clone(&buf);
        std::thread::spawn(move || {
            buf.append_with(4, 1, |_, dest| {
                in_fill_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                dest.copy_from_slice(b"slow");
            })
            .unwrap()
        })
    };
    in_fill_rx.recv().unwrap();
    let sealer = {
        let buf = Arc::clone(&buf);
        std::thread::spawn(move || buf.seal().unwrap())
    };
    while !buf.is_sealed() {
        std::thread::yield_now();
    }
    buf.sync_recorded().unwrap();
    go_tx.send(()).unwrap();
    let slow_span = slow.join().unwrap();
    sealer.join().unwrap();
    buf.sync().unwrap();
    drop(buf);
    let buf = AppendOnly::open(&dir, "b").unwrap();
    assert_eq!(buf.get(first).unwrap(), b"first");
    assert_eq!(
        buf.get(slow_span).ok(),
        Some(&b"slow"[..]),
        "an append that returned before a sync is lost after a reopen"
    );
}

/// Bug: `records(from)` with a `from` near `u64::MAX` panics (overflow in
/// `next_multiple_of`) instead of yielding nothing.
#[test]
fn review_records_from_past_the_end_does_not_panic() {
    let dir = Dir::temporary().unwrap();
    let buf = AppendOnly::open(&dir, "b").unwrap();
    buf.append(b"x").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        buf.records(u64::MAX).count()
    }));
    assert!(matches!(r, Ok(0)), "records(u64::MAX) panicked");
}

/// A panicking fill leaves a Gap; the records around it are walked and adopted.
#[test]
fn review_panicking_fill_then_more_records_survive_reopen() {
    let dir = Dir::temporary().unwrap();
    let buf = AppendOnly::open(&dir, "b").unwrap();
    let a = buf.append(b"aaaa").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        buf.append_with(100, 1, |_, dest| {
            dest[..3].copy_from_slice(b"xyz");
            panic!("fill fails");
        })
    }));
    assert!(r.is_err());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        buf.append_with(0, 4096, |_, _| panic!("empty fill fails"))
    }));
    assert!(r.is_err());
    let b = buf.append_aligned(b"bbbb", 4096).unwrap();
    let c = buf.append(&[]).unwrap();
    let walked: Vec<Span> = buf.records(0).map(Result::unwrap).collect();
    assert_eq!(walked, [a, b, c]);
    drop(buf);
    let buf = AppendOnly::open(&dir, "b").unwrap();
    let walked: Vec<Span> = buf.records(0).map(Result::unwrap).collect();
    assert_eq!(walked, [a, b, c]);
    assert_eq!(buf.get(b).unwrap(), b"bbbb");
    assert_eq!(buf.len(), c.end());
}

/// Alignments up to 4096, empty records and records bigger than a lane, across lane
/// ends, checked against a model after reopens (with and without syncs).
#[test]
fn review_aligned_and_empty_records_across_lane_ends() {
    let mut s = Seeded::new("review_aligned_and_empty_records_across_lane_ends");
    let dir = Dir::temporary().unwrap();
    let mut model: Vec<(Span, Vec<u8>)> = Vec::new();
    for round in 0..6 {
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let walked: Vec<Span> = buf.records(0).map(Result::unwrap).collect();
        let expect: Vec<Span> = model.iter().map(|(s, _)| *s).collect();
        assert_eq!(walked, expect, "round {round}");
        for (span, bytes) in &model {
            assert_eq!(buf.get(*span).unwrap(), &bytes[..]);
        }
        for _ in 0..40 {
            let len = match s.rng.random_range(0..10) {
                0 => 0,
                1 => s.rng.random_range(60_000..200_000),
                2 => 65536 - 16,
                3 => 65536 - 32,
                _ => s.rng.random_range(1..5000),
            };
            let align = 1usize << s.rng.random_range(0..13);
            let fill: u8 = s.rng.random();
            let bytes = vec![fill; len];
            let span = buf.append_aligned(&bytes, align).unwrap();
            assert_eq!(span.offset() % align as u64, 0);
            model.push((span, bytes));
        }
        if round % 2 == 0 {
            buf.sync().unwrap();
        }
    }
}

/// Concurrent appends, syncs and a seal: every append that returned lies before the
/// seal and survives a reopen.
#[test]
fn review_concurrent_appends_syncs_and_seal() {
    for iteration in 0..20 {
        let dir = Dir::temporary().unwrap();
        let buf = Arc::new(AppendOnly::open(&dir, "b").unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(4));
        let mut appenders = Vec::new();
        for t in 0..2u8 {
            let buf = Arc::clone(&buf);
            let start = Arc::clone(&start);
            appenders.push(std::thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                for i in 0..2000u32 {
                    let bytes = [t, (i % 251) as u8, 7, 9, 11];
                    match buf.append(&bytes[..(i % 5) as usize + 1]) {
                        Ok(span) => got.push((span, bytes[..(i % 5) as usize + 1].to_vec())),
                        Err(Error::Sealed { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            }));
        }
        let syncer = {
            let buf = Arc::clone(&buf);
            let stop = Arc::clone(&stop);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    buf.sync().unwrap();
                    buf.sync_recorded().unwrap();
                }
            })
        };
        start.wait();
        for _ in 0..(iteration * 50) {
            std::hint::spin_loop();
        }
        buf.seal().unwrap();
        let got: Vec<_> = appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        stop.store(true, Ordering::Relaxed);
        syncer.join().unwrap();
        let end = buf.len();
        for (span, _) in &got {
            assert!(span.end() < end, "a record after the seal");
        }
        buf.sync().unwrap();
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert!(buf.is_sealed());
        for (span, bytes) in &got {
            assert_eq!(buf.get(*span).unwrap(), &bytes[..]);
        }
        assert_eq!(buf.records(0).count(), got.len());
    }
}

/// Many reopens (each taking an epoch), then a tail cut as a power loss would, then more
/// appends of other sizes: stale frames beyond are never adopted.
#[test]
fn review_epochs_refuse_a_stale_tail() {
    let dir = Dir::temporary().unwrap();
    let mut kept = Vec::new();
    for i in 0..30u8 {
        let buf = AppendOnly::open(&dir, "b").unwrap();
        kept.push((buf.append(&[i; 40]).unwrap(), vec![i; 40]));
    }
    let buf = AppendOnly::open(&dir, "b").unwrap();
    // A tail that a power loss will tear: records at fixed sizes.
    let mut tail = Vec::new();
    for i in 0..50u8 {
        tail.push(buf.append(&[100 + i; 40]).unwrap());
    }
    drop(buf);
    // Tear the first tail record (zero its frame), as a power loss would.
    let lane0 = dir.path().join("b/data-00.acc");
    let mut data = std::fs::read(&lane0).unwrap();
    let frame = 4096 + (tail[0].offset() - 16) as usize;
    data[frame..frame + 16].fill(0);
    std::fs::write(&lane0, &data).unwrap();
    let buf = AppendOnly::open(&dir, "b").unwrap();
    assert_eq!(buf.len(), kept.last().unwrap().0.end());
    // Write records of the same size over the torn one only: the next stale frame, at
    // the same position as before, is older and refused.
    let d = buf.append(&[200; 40]).unwrap();
    assert_eq!(d, tail[0]);
    drop(buf);
    let buf = AppendOnly::open(&dir, "b").unwrap();
    assert_eq!(buf.len(), d.end(), "stale frames adopted");
    for (span, bytes) in &kept {
        assert_eq!(buf.get(*span).unwrap(), &bytes[..]);
    }
}

/// A lane file copied from another buffer of the same shape is not adopted.
#[test]
fn review_copied_lane_from_another_buffer() {
    let dir = Dir::temporary().unwrap();
    {
        let a = AppendOnly::open(&dir, "a").unwrap();
        let b = AppendOnly::open(&dir, "b").unwrap();
        a.append(b"a1").unwrap();
        a.append(&[1; 3000]).unwrap();
        b.append(b"b1").unwrap();
        a.sync_recorded().unwrap();
    }
    std::fs::copy(
        dir.path().join("a/data-00.acc"),
        dir.path().join("b/data-00.acc"),
    )
    .unwrap();
    let b = AppendOnly::open(&dir, "b").unwrap();
    assert_eq!(b.len(), 0, "frames of another buffer adopted");
}

/// OnceMap: concurrent inserts and syncs, drop, reopen: every returned insert present,
/// `len()` right, then the same after deleting the filter.
#[test]
fn review_once_map_concurrent_inserts_syncs_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for round in 0..3u32 {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = Arc::new(OnceMap::open(&dir, "m").unwrap());
        assert_eq!(map.len(), all.len() as u64, "round {round}");
        for (k, v) in &all {
            assert_eq!(map.get(k).unwrap(), Some(&v[..]), "round {round}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let syncer = {
            let map = Arc::clone(&map);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    map.sync().unwrap();
                }
            })
        };
        let mut handles = Vec::new();
        for t in 0..2u32 {
            let map = Arc::clone(&map);
            handles.push(std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..30_000u32 {
                    // Overlapping keys between threads: one insert wins.
                    let k = format!("k{round}-{}", i + t * 15_000).into_bytes();
                    let v = vec![(i % 200) as u8; (i % 700) as usize + 1];
                    if map.insert(&k, &v).unwrap().is_inserted() {
                        got.push((k, v));
                    }
                }
                got
            }));
        }
        for h in handles {
            for (k, v) in h.join().unwrap() {
                assert!(all.insert(k, v).is_none(), "a key inserted twice");
            }
        }
        stop.store(true, Ordering::Relaxed);
        syncer.join().unwrap();
        assert_eq!(map.len(), all.len() as u64);
    }
    // Without the filter: rebuilt, no key missing.
    std::fs::remove_dir_all(tmp.path().join("m/filter")).unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    assert_eq!(map.len(), all.len() as u64);
    for (k, v) in &all {
        assert_eq!(map.get(k).unwrap(), Some(&v[..]));
        assert_eq!(map.get(&[&k[..], &b"-absent"[..]].concat()).unwrap(), None);
    }
}

fn small_log() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// Bug: a version-1 store is upgraded, its active segment (format 1) rolls into a new
/// framed segment, writes go there, the store is dropped without sync: the reopen does
/// not adopt the framed segment (its predecessor is format 1, so never "sealed") and
/// removes it as garbage, losing writes that returned, while the earlier ones (synced
/// by the finisher) stay: not even the prefix the contract promises after a power loss
/// would allow, as no power was lost.
#[test]
fn review_v1_log_upgrade_roll_then_drop_keeps_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v1-log");
    copy_dir(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/v1-log"
        )),
        &path,
    );
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = {
        let dir = Dir::open(&path).unwrap();
        let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
        kv.iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    };
    {
        let dir = Dir::open(&path).unwrap();
        let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
        // Write until the format-1 active segment rolls once, then once more.
        let segments = kv.stats().segments;
        let mut i = 0u32;
        while kv.stats().segments == segments {
            let k = format!("new-{i}").into_bytes();
            let v = vec![i as u8; 50];
            kv.put(&k, &v).unwrap();
            model.insert(k, v);
            i += 1;
        }
        kv.put(b"after-roll", b"x").unwrap();
        model.insert(b"after-roll".to_vec(), b"x".to_vec());
    }
    let dir = Dir::open(&path).unwrap();
    let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = kv
        .iter()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    let missing = model.keys().filter(|k| !got.contains_key(*k)).count();
    assert_eq!(missing, 0, "writes that returned are lost after a drop");
    assert_eq!(got, model);
}

/// LogStore drop/reopen cycles with rolls, compaction, clear, batches and TTL, against
/// a model.
#[test]
fn review_log_store_cycles_against_a_model() {
    let mut s = Seeded::new("review_log_store_cycles_against_a_model");
    let tmp = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for cycle in 0..12 {
        let dir = Dir::open(tmp.path()).unwrap();
        let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
        let got: BTreeMap<Vec<u8>, Vec<u8>> = kv
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(got, model, "cycle {cycle}");
        for _ in 0..s.rng.random_range(1..300) {
            let k = format!("k{}", s.rng.random_range(0..80)).into_bytes();
            match s.rng.random_range(0..100) {
                0 => {
                    kv.clear().unwrap();
                    model.clear();
                }
                1 => kv.compact().unwrap(),
                2 => kv.sync().unwrap(),
                3..=10 => {
                    let mut batch = WriteBatch::new();
                    let k2 = format!("k{}", s.rng.random_range(0..80)).into_bytes();
                    batch.put(&k, b"batched").delete(&k2);
                    kv.write(&batch).unwrap();
                    model.insert(k.clone(), b"batched".to_vec());
                    model.remove(&k2);
                }
                11..=14 => {
                    // Expires long after the test.
                    let v = vec![3u8; s.rng.random_range(0..300)];
                    kv.put_with_ttl(&k, &v, std::time::Duration::from_secs(3600))
                        .unwrap();
                    model.insert(k, v);
                }
                15..=20 => {
                    // Expired at once: gone.
                    kv.put_with_ttl(&k, b"ttl", std::time::Duration::from_nanos(1))
                        .unwrap();
                    model.remove(&k);
                }
                21..=35 => {
                    kv.delete(&k).unwrap();
                    model.remove(&k);
                }
                _ => {
                    let v = vec![s.rng.random(); s.rng.random_range(0..2000)];
                    kv.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Bug: a seal racing appends let an append succeed past the seal (the seal marked the
/// buffer sealed only after reserving its frame, so an append retrying its CAS in between
/// took the place after it); such a record is acknowledged and then never walked nor
/// adopted. Failed within a few hundred rounds before the fix.
#[test]
fn review_no_append_lands_after_a_seal() {
    for _ in 0..300 {
        let dir = Dir::temporary().unwrap();
        let buf = Arc::new(AppendOnly::open(&dir, "b").unwrap());
        buf.append(b"x").unwrap();
        let start = Arc::new(Barrier::new(4));
        let appenders: Vec<_> = (0..3)
            .map(|_| {
                let buf = Arc::clone(&buf);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    let mut got = Vec::new();
                    loop {
                        match buf.append(b"y") {
                            Ok(span) => got.push(span),
                            Err(Error::Sealed { .. }) => return got,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(std::time::Duration::from_micros(50));
        buf.seal().unwrap();
        let end = buf.len();
        for h in appenders {
            for span in h.join().unwrap() {
                assert!(
                    span.end() < end,
                    "an append after the seal: {span:?}, end {end}"
                );
            }
        }
    }
}

/// OnceMap whose index directory was lost: lookups must not report present keys as
/// absent (the log holds them).
#[test]
fn review_once_map_lost_index_does_not_hide_keys() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        for i in 0..1000u32 {
            map.insert(format!("k{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        map.sync().unwrap();
    }
    std::fs::remove_dir_all(tmp.path().join("m/index")).unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    match OnceMap::open(&dir, "m") {
        Err(Error::Corrupted { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(map) => {
            for i in 0..1000u32 {
                assert_eq!(
                    map.get(format!("k{i}").as_bytes()).unwrap(),
                    Some(&i.to_le_bytes()[..]),
                    "key {i} hidden"
                );
            }
        }
    }
}

/// OnceMap whose filter lost its data file (its length file kept), or whose filter was
/// zeroed but still marked built: an error or the right answers, never a hidden key.
#[test]
fn review_once_map_damaged_filter() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        for i in 0..3000u32 {
            map.insert(format!("k{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        map.sync().unwrap();
    }
    let snapshot = tmp.path().join("copy");
    copy_dir(&tmp.path().join("m"), &snapshot);
    // 1. The filter's data files gone.
    for e in std::fs::read_dir(tmp.path().join("m/filter")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("cells")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    {
        let dir = Dir::open(tmp.path()).unwrap();
        match OnceMap::open(&dir, "m") {
            Err(Error::Corrupted { .. }) => {}
            Err(e) => panic!("{e}"),
            Ok(map) => {
                for i in 0..3000u32 {
                    assert!(map.get(format!("k{i}").as_bytes()).unwrap().is_some());
                }
            }
        }
    }
    // 2. The filter's length file gone.
    std::fs::remove_dir_all(tmp.path().join("m")).unwrap();
    copy_dir(&snapshot, &tmp.path().join("m"));
    std::fs::remove_file(tmp.path().join("m/filter/length.acc")).unwrap();
    {
        let dir = Dir::open(tmp.path()).unwrap();
        match OnceMap::open(&dir, "m") {
            Err(Error::Corrupted { .. }) => {}
            Err(e) => panic!("{e}"),
            Ok(map) => {
                for i in 0..3000u32 {
                    assert!(map.get(format!("k{i}").as_bytes()).unwrap().is_some());
                }
            }
        }
    }
}

/// Inserts after a drop without sync, many times: the re-index at open (index_tail)
/// keeps `len()` and every key, and absent keys stay absent.
#[test]
fn review_once_map_unsynced_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for round in 0..8u32 {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        assert_eq!(map.len(), all.len() as u64, "round {round}");
        assert_eq!(map.damaged_at_open(), 0);
        for (k, v) in &all {
            assert_eq!(map.get(k).unwrap(), Some(&v[..]));
        }
        let n = if round % 3 == 0 { 40_000 } else { 500 };
        for i in 0..n {
            let k = format!("r{round}-{i}").into_bytes();
            let v = vec![round as u8; (i % 300) as usize];
            assert!(map.insert(&k, &v).unwrap().is_inserted());
            // An old key again: not inserted.
            if let Some((ok, ov)) = all.iter().next() {
                assert_eq!(map.insert(ok, b"other").unwrap().value(), &ov[..]);
            }
            all.insert(k, v);
        }
        if round % 2 == 1 {
            map.sync().unwrap();
        }
    }
}

/// Bug (with the one above): an upgraded version-1 store kept writing into its format-1
/// active segment, whose unsynced writes a drop without sync loses (format 1 trusts only
/// its recorded length), against the store's contract.
#[test]
fn review_v1_log_upgrade_write_then_drop_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v1-log");
    copy_dir(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/v1-log"
        )),
        &path,
    );
    {
        let dir = Dir::open(&path).unwrap();
        let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
        kv.put(b"one", b"write").unwrap();
    }
    let dir = Dir::open(&path).unwrap();
    let kv = LogStore::open(&dir, "kv", small_log()).unwrap();
    assert_eq!(kv.get(b"one").unwrap().as_deref(), Some(&b"write"[..]));
}
