//! A LogStore roll with no I/O under the writer lock (the state naming the new segment
//! synced lazily, the next segment made ahead, the finished one finished by a thread):
//! the flush order it promises, and the guarantees around it. Written by a review of
//! that change, each test first failing on it where a finding is named.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use accretion::faults::{self, Flush};
use accretion::{Dir, Error, LogOptions, LogStore};
use parking_lot::Mutex;

fn small(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// Writes until the store rolls at least once; returns the new active id.
fn roll_once(kv: &LogStore) -> u64 {
    let first = kv.stats().active_log;
    let mut i = 0u64;
    while kv.stats().active_log == first {
        kv.put(format!("k{i}").as_bytes(), &[7u8; 200]).unwrap();
        i += 1;
    }
    kv.stats().active_log
}

fn wait_finisher(kv: &LogStore) {
    while kv.stats().finishing > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `Value` handle that outlives its store makes the next open fail with `HandlesAlive`
/// (as `LogStore::open` documents), also when it points into a segment a roll started
/// and no sync took since. Found by review: the segment held the state journal alive
/// (`NameInUse`, "open already"), then, with a weak reference, open took the claimed
/// segment for one holding data past the state (`Corrupted`).
#[test]
fn a_value_into_a_segment_no_sync_took_reports_handles_alive() {
    let dir = Dir::temporary().unwrap();
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    roll_once(&kv);
    wait_finisher(&kv);
    kv.put(b"held", b"value in the new segment").unwrap();
    let held = kv.get(b"held").unwrap().unwrap();
    drop(kv);
    let again = LogStore::open(&dir, "kv", small(4096));
    let Err(err) = again else {
        panic!("a Value of the old store is alive, yet the store opened")
    };
    drop(held);
    assert!(
        matches!(err, Error::HandlesAlive { .. }),
        "expected HandlesAlive (as documented), got: {err:?}"
    );
}

/// The same through an unfinished `Iter`.
#[test]
fn an_iter_into_a_segment_no_sync_took_reports_handles_alive() {
    let dir = Dir::temporary().unwrap();
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    roll_once(&kv);
    wait_finisher(&kv);
    kv.put(b"zz", b"x").unwrap();
    let mut it = kv.range(&b"zz"[..]..);
    let _ = it.next();
    drop(kv);
    let Err(err) = LogStore::open(&dir, "kv", small(4096)) else {
        panic!("an Iter of the old store is alive, yet the store opened")
    };
    drop(it);
    assert!(
        matches!(err, Error::HandlesAlive { .. }),
        "expected HandlesAlive, got: {err:?}"
    );
}

/// Fails flushes of the state journal under `root` while `on` is set.
fn fail_state_flushes(root: &Path, on: Arc<AtomicBool>) -> faults::HookGuard {
    let state: PathBuf = root.join("kv").join("state");
    faults::install(move |flush| {
        (flush.path().starts_with(&state) && on.load(Ordering::SeqCst))
            .then(|| std::io::Error::from_raw_os_error(5))
    })
}

/// `sync()` documents: "`Io` if a flush fails; the store is then poisoned (`Poisoned`
/// for later writes) until reopened". That holds for a failed flush of the state journal
/// inside `sync_behind` (the lazy state sync of a roll). Found by review: it poisoned
/// only the journal, and later `put`s succeeded.
#[test]
fn a_failed_lazy_state_sync_poisons_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", small(64 << 10)).unwrap();
    roll_once(&kv);
    wait_finisher(&kv);
    kv.sync().unwrap();
    // A second roll whose state no one has synced yet.
    let on = Arc::new(AtomicBool::new(false));
    let _hook = fail_state_flushes(tmp.path(), Arc::clone(&on));
    // Keep the finisher from syncing the state first: it only does so for a finished
    // segment never synced while active, so sync the active one right before rolling.
    let before = kv.stats().active_log;
    let mut i = 0u64;
    loop {
        kv.sync().unwrap();
        kv.put(format!("r{i}").as_bytes(), &[1u8; 300]).unwrap();
        i += 1;
        if kv.stats().active_log != before {
            break;
        }
    }
    wait_finisher(&kv);
    on.store(true, Ordering::SeqCst);
    let err = kv.sync().expect_err("the state flush fails");
    on.store(false, Ordering::SeqCst);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let later = kv.put(b"after-failed-sync", b"v");
    assert!(
        matches!(later, Err(Error::Poisoned { .. })),
        "a write after a failed sync must be refused (Poisoned), got {later:?}; \
         applied: {:?}",
        kv.get(b"after-failed-sync").unwrap().is_some()
    );
}

/// With `sync_each_write`: after a durable write fails on the lazy state sync, later
/// writes are refused with `Poisoned` (nothing applied), as for a failed segment flush.
/// Found by review: every later write was applied and returned the "applied, unknown
/// durability" error.
#[test]
fn after_a_failed_lazy_state_sync_durable_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let opts = LogOptions {
        sync_each_write: true,
        ..small(64 << 10)
    };
    let kv = LogStore::open(&dir, "kv", opts).unwrap();
    let on = Arc::new(AtomicBool::new(false));
    let _hook = fail_state_flushes(tmp.path(), Arc::clone(&on));
    // Durable writes sync the active segment each time, so the finisher never syncs the
    // state; the first write in the new segment does.
    let before = kv.stats().active_log;
    let mut i = 0u64;
    // Stop just before the roll: the next write rolls.
    loop {
        kv.put(format!("r{i}").as_bytes(), &[1u8; 300]).unwrap();
        i += 1;
        if kv.stats().active_log != before {
            break;
        }
    }
    // That write rolled and synced the state already. Roll once more with the hook on.
    let before = kv.stats().active_log;
    on.store(true, Ordering::SeqCst);
    let first_err;
    loop {
        let r = kv.put(format!("s{i}").as_bytes(), &[1u8; 300]);
        i += 1;
        if let Err(e) = r {
            first_err = Some(e);
            break;
        }
        assert_eq!(
            kv.stats().active_log,
            before,
            "rolled without the state flush failing"
        );
    }
    on.store(false, Ordering::SeqCst);
    let first_err = first_err.unwrap();
    assert!(
        matches!(&first_err, Error::Io { op, .. } if op.starts_with("sync a durable write")),
        "{first_err:?}"
    );
    let later = kv.put(b"later", b"v");
    let applied = kv.get(b"later").unwrap().is_some();
    assert!(
        matches!(later, Err(Error::Poisoned { .. })) && !applied,
        "a write after the failed durable write must be refused and not applied; \
         got {later:?}, applied: {applied}"
    );
}

/// Reads the value bytes of the newest slot of a register file (`len` value bytes).
fn newest_slot(path: &Path, len: usize) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let stride = (8 + len + 8).div_ceil(512) * 512;
    let mut best: Option<(u64, Vec<u8>)> = None;
    for k in 0..4 {
        let at = 512 + k * stride;
        if bytes.len() < at + 8 + len {
            continue;
        }
        let seq = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if seq != 0 && best.as_ref().is_none_or(|(s, _)| seq > *s) {
            best = Some((seq, bytes[at + 8..at + 8 + len].to_vec()));
        }
    }
    best.map(|(_, v)| v)
}

fn u64_at(v: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap())
}

/// A format-2 length register's value: format, newest epoch, last epoch, flags (bit 0:
/// sealed), then the recorded length (u64 at byte 16) and the nonce.
const REGISTER_BYTES: usize = 32;

/// The length a format-2 length register's value records.
fn recorded_len(v: &[u8]) -> u64 {
    u64_at(v, 2)
}

/// Watches every flush in order (the hook runs just before the flush, after the bytes it
/// flushes are written): tracks the state journal's durable `log_first..=log_active`,
/// and fails on a flush of a log segment's data (the commit of its records: their frames
/// prove them) or of a length register that records a non-zero length while the durable
/// state does not name that segment (open would remove it as garbage, taking synced
/// writes with it), under concurrent durable writers, explicit syncs, rolls, the
/// finisher and compactions.
#[test]
fn no_log_segment_commits_bytes_before_the_state_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("kv");
    let durable_active = Arc::new(AtomicU64::new(1));
    let durable_first = Arc::new(AtomicU64::new(1));
    let committed: Arc<Mutex<std::collections::HashMap<u64, u64>>> = Arc::default();
    let events: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let _hook = {
        let durable_active = Arc::clone(&durable_active);
        let durable_first = Arc::clone(&durable_first);
        let committed = Arc::clone(&committed);
        let events = Arc::clone(&events);
        let violations = Arc::clone(&violations);
        let root = root.clone();
        faults::install(move |flush| {
            let path = flush.path();
            let Ok(rel) = path.strip_prefix(&root) else {
                return None;
            };
            let rel = rel.to_string_lossy().into_owned();
            if let Flush::File { .. } = flush
                && rel == "state/journal.acc"
            {
                if let Some(v) = newest_slot(path, 64) {
                    durable_active.store(u64_at(&v, 4), Ordering::SeqCst);
                    durable_first.store(u64_at(&v, 3), Ordering::SeqCst);
                }
                return None;
            }
            let (id, file) = rel
                .strip_prefix("log-")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(id, file)| Some((id.parse::<u64>().ok()?, file)))?;
            let commit = match flush {
                // A data flush: the records in it are durable from here on.
                Flush::Range { .. } if file.starts_with("data-") => {
                    let mut c = committed.lock();
                    let first = durable_first.load(Ordering::SeqCst);
                    if id > 1 && id > first && !c.contains_key(&id) {
                        // This segment's first commit: what the one before has recorded.
                        let behind = c.get(&(id - 1)).copied().unwrap_or(0);
                        events.lock().push((id, behind));
                    }
                    c.entry(id).or_insert(0);
                    "data"
                }
                Flush::File { .. } if file == "length.acc" => {
                    let v = newest_slot(path, REGISTER_BYTES)?;
                    let len = recorded_len(&v);
                    if len == 0 {
                        return None;
                    }
                    let mut c = committed.lock();
                    let e = c.entry(id).or_insert(0);
                    *e = (*e).max(len);
                    "a length"
                }
                _ => return None,
            };
            let named = durable_active.load(Ordering::SeqCst);
            if id > named {
                violations.lock().push(format!(
                    "log-{id} commits {commit} while the durable state's active is {named}"
                ));
            }
            None
        })
    };
    let dir = Dir::open(tmp.path()).unwrap();
    let opts = LogOptions {
        sync_each_write: true,
        segment_bytes: 16 << 10,
        compact_dead_ratio: Some(0.3),
        ..LogOptions::default()
    };
    let kv = Arc::new(LogStore::open(&dir, "kv", opts).unwrap());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let kv = Arc::clone(&kv);
            s.spawn(move || {
                for i in 0..1500u64 {
                    kv.put(format!("t{t}-{}", i % 50).as_bytes(), &[t as u8; 100])
                        .unwrap();
                    if i % 97 == 0 {
                        kv.sync().unwrap();
                    }
                    if t == 0 && i % 300 == 0 {
                        kv.compact().unwrap();
                    }
                }
            });
        }
    });
    drop(kv);
    // The durable log is a prefix: when log-X first commits bytes, log-(X-1) (if the
    // durable state still names it) has its whole length recorded.
    let c = committed.lock();
    for (id, behind) in events.lock().iter() {
        let whole = c.get(&(id - 1)).copied().unwrap_or(0);
        if *behind < whole {
            violations.lock().push(format!(
                "log-{id} committed while log-{} had {behind} of {whole} bytes committed",
                id - 1
            ));
        }
    }
    eprintln!(
        "{} segment commits checked, {} segments",
        events.lock().len(),
        c.len()
    );
    assert!(events.lock().len() > 10, "the workload rolled too little");
    drop(c);
    let v = violations.lock();
    assert!(
        v.is_empty(),
        "{} violations, first: {:?}",
        v.len(),
        v.first()
    );
    let kv = LogStore::open(&dir, "kv", small(16 << 10)).unwrap();
    assert!(!kv.is_empty());
}

/// A cleanly dropped store keeps no segment made ahead on disk. Found by review: the next
/// log segment, fallocated whole and empty, stayed until the next open removed it.
#[test]
fn a_dropped_store_keeps_no_segment_made_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let seg = 4u64 << 20;
    let kv = LogStore::open(&dir, "kv", small(seg)).unwrap();
    let mut i = 0u64;
    // Past half of the first segment: the finisher makes the next one.
    while kv.stats().live_bytes < seg / 2 + (64 << 10) {
        kv.put(format!("k{i}").as_bytes(), &[3u8; 4000]).unwrap();
        i += 1;
    }
    kv.sync().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let active = kv.stats().active_log;
    drop(kv);
    let next = tmp
        .path()
        .join("kv")
        .join(format!("log-{:010}", active + 1));
    let mut allocated = 0u64;
    if let Ok(entries) = std::fs::read_dir(&next) {
        for e in entries.flatten() {
            use std::os::unix::fs::MetadataExt;
            allocated += e.metadata().unwrap().blocks() * 512;
        }
    }
    eprintln!(
        "{} after drop: {} bytes allocated",
        next.display(),
        allocated
    );
    assert!(
        allocated < (1 << 20),
        "a closed store holds {allocated} bytes of disk in an empty segment no state names"
    );
}

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

/// Fails msyncs of the data files of log segment `id` under `root` while `on` is set.
fn fail_lanes_of(root: &Path, id: u64, on: Arc<AtomicBool>) -> faults::HookGuard {
    let seg = root.join("kv").join(format!("log-{id:010}"));
    faults::install(move |flush| {
        (matches!(flush, Flush::Range { .. })
            && flush.path().starts_with(&seg)
            && on.load(Ordering::SeqCst))
        .then(|| std::io::Error::from_raw_os_error(5))
    })
}

/// Rolls into a segment and writes more into it without syncing, then rolls out of it
/// with its lanes' flush failing: the finisher syncs the state (naming the segment after
/// it) and then fails on the segment's bytes. Returns the store (its finisher done).
fn roll_with_failing_finished_segment(root: &Path) -> (LogStore, u64, faults::HookGuard) {
    let dir = Dir::open(root).unwrap();
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    kv.put(b"synced", b"before").unwrap();
    kv.sync().unwrap();
    let a = roll_once(&kv);
    wait_finisher(&kv);
    let on = Arc::new(AtomicBool::new(true));
    let hook = fail_lanes_of(root, a, Arc::clone(&on));
    let b = roll_once(&kv);
    assert_eq!(b, a + 1);
    wait_finisher(&kv);
    on.store(false, Ordering::SeqCst);
    assert_eq!(kv.stats().hint_failures, 1);
    (kv, a, hook)
}

/// A crash right after the finisher synced the state naming A+1 but before A's bytes were
/// durable (the image: a copy of the files, in which only registers' synced values
/// count): the store opens and holds what was synced.
#[test]
fn crash_between_lazy_state_sync_and_finished_segment_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (kv, a, _hook) = roll_with_failing_finished_segment(tmp.path());
    let image = tempfile::tempdir().unwrap();
    copy_dir(tmp.path(), image.path());
    drop(kv);
    // The image's durable state names the segment after A: the scenario happened.
    let state = newest_slot(&image.path().join("kv/state/journal.acc"), 64).unwrap();
    assert_eq!(
        u64_at(&state, 4),
        a + 1,
        "the finisher synced the state naming A+1"
    );
    let dir = Dir::open(image.path()).unwrap();
    let after = LogStore::open(&dir, "kv", small(4096)).unwrap();
    assert_eq!(
        after.get(b"synced").unwrap().as_deref(),
        Some(&b"before"[..])
    );
    assert!(after.stats().active_log >= a);
}

/// A failed sync of a finished segment by the finisher poisons the store: later writes
/// are refused. Found by review: it was counted as a hint failure only, and the store
/// took writes (before the finisher, the rolling writer got the error itself).
#[test]
fn a_failed_finisher_sync_poisons_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (kv, _a, _hook) = roll_with_failing_finished_segment(tmp.path());
    let err = kv.sync().expect_err("the finished segment is poisoned");
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    let later = kv.put(b"later", b"v");
    let applied = kv.get(b"later").unwrap().is_some();
    assert!(
        matches!(later, Err(Error::Poisoned { .. })) && !applied,
        "a write after a failed sync must be refused (Poisoned); got {later:?}, applied: {applied}"
    );
}

/// What the roll tests below wrote: every key with its value, in order.
type Written = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// Writes `synced` and syncs it (the active segment X, here log-1, is then synced while
/// active, so that the finisher syncs no state for it), then writes without sync until
/// the store rolls into X+1 and `more` keys into X+1. No sync after: the durable state
/// still names X. `synced` is called right after that sync. Returns X and what was
/// written to X and to X+1.
fn roll_without_state_sync(
    kv: &LogStore,
    more: u64,
    synced: impl FnOnce(),
) -> (u64, Written, Written) {
    let x = kv.stats().active_log;
    let mut in_x = Written::new();
    kv.put(b"synced", b"before").unwrap();
    in_x.insert(b"synced".to_vec(), b"before".to_vec());
    kv.sync().unwrap();
    synced();
    let mut in_next = Written::new();
    let mut i = 0u64;
    while kv.stats().active_log == x {
        let (k, v) = (format!("x{i:04}").into_bytes(), vec![i as u8; 200]);
        kv.put(&k, &v).unwrap();
        // The put that rolled went into X+1.
        if kv.stats().active_log == x {
            in_x.insert(k, v);
        } else {
            in_next.insert(k, v);
        }
        i += 1;
    }
    assert_eq!(kv.stats().active_log, x + 1);
    for j in 0..more {
        let (k, v) = (format!("y{j:04}").into_bytes(), vec![j as u8; 100]);
        kv.put(&k, &v).unwrap();
        in_next.insert(k, v);
    }
    (x, in_x, in_next)
}

/// The active log segment the durable state (on disk) of the store at `root` names.
fn durable_active(root: &Path) -> u64 {
    u64_at(
        &newest_slot(&root.join("kv/state/journal.acc"), 64).unwrap(),
        4,
    )
}

/// Asserts that the store holds exactly `want`.
#[track_caller]
fn assert_holds(kv: &LogStore, want: &Written, ctx: &str) {
    let got: Written = kv
        .iter()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    if &got != want {
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        panic!(
            "{ctx}: {} keys, want {}; missing {:?}, extra {:?}",
            got.len(),
            want.len(),
            missing.first().map(|k| String::from_utf8_lossy(k)),
            extra.first().map(|k| String::from_utf8_lossy(k))
        );
    }
}

/// A store dropped right after a roll whose state no sync took: the finished segment is
/// sealed and synced by the finisher, the state on disk still names it, and the writes
/// in the new segment were never synced. The next open takes the new segment into the
/// log (`adopt_rolled`: the one before is sealed and it holds records), syncs the state
/// naming it, and holds every write; so does the open after it.
#[test]
fn a_store_dropped_after_a_roll_keeps_the_new_segments_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    let (x, mut all, in_next) = roll_without_state_sync(&kv, 5, || {});
    all.extend(in_next);
    drop(kv);
    assert_eq!(
        durable_active(tmp.path()),
        x,
        "the scenario: the state naming X+1 was never synced"
    );
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    let stats = kv.stats();
    assert_eq!(
        (stats.active_log, stats.damaged_records),
        (x + 1, 0),
        "{stats:?}"
    );
    assert_eq!(durable_active(tmp.path()), x + 1, "open synced the state");
    assert_holds(&kv, &all, "reopened");
    // The store writes on into X+1; a sync and a reopen keep everything.
    kv.put(b"after", b"reopen").unwrap();
    all.insert(b"after".to_vec(), b"reopen".to_vec());
    kv.sync().unwrap();
    drop(kv);
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    assert_eq!(kv.stats().active_log, x + 1);
    assert_holds(&kv, &all, "reopened twice");
}

/// The frame position of the seal of a format-2 buffer whose records all lie in lane 0,
/// read from that lane's file: walks the frames (16 bytes each, at multiples of 16: the
/// record's length as a u32 at byte 8, the kind in the top 4 bits of the u32 at byte 12,
/// 1 for a record, 4 for a seal).
fn seal_position(lane: &[u8]) -> Option<usize> {
    const DATA: usize = 4096;
    let mut at = 0usize;
    while DATA + at + 16 <= lane.len() {
        let word = |i: usize| {
            u32::from_le_bytes(lane[DATA + at + i..DATA + at + i + 4].try_into().unwrap())
        };
        match word(12) >> 28 {
            1 => at = (at + 16 + word(8) as usize).next_multiple_of(16),
            4 => return Some(DATA + at),
            _ => return None,
        }
    }
    None
}

/// A process killed right after a roll whose state no sync took, before the finisher
/// synced the finished segment X (held here by a flush hook): its files as they are (a
/// copy, which reads what the page cache holds) open with every write, X+1's adopted.
/// The same files with X's seal frame zeroed (a power loss that kept X+1's bytes but
/// not X's tail, which no sync covered) open with X's writes only: a prefix of what was
/// written, X+1 removed as garbage.
#[test]
fn a_killed_roll_keeps_the_new_segment_only_behind_a_seal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
    let x = kv.stats().active_log;
    // Holds the finisher before it flushes X's data (its last records and seal).
    let hold = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(AtomicBool::new(false));
    let _hook = {
        let seg = tmp.path().join("kv").join(format!("log-{x:010}"));
        let (hold, reached) = (Arc::clone(&hold), Arc::clone(&reached));
        faults::install(move |flush| {
            if matches!(flush, Flush::Range { .. }) && flush.path().starts_with(&seg) {
                while hold.load(Ordering::SeqCst) {
                    reached.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            None
        })
    };
    let (x_again, in_x, in_next) =
        roll_without_state_sync(&kv, 5, || hold.store(true, Ordering::SeqCst));
    assert_eq!(x_again, x);
    while !reached.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The kill: the files as the page cache holds them, X not yet synced by the finisher.
    let killed = tempfile::tempdir().unwrap();
    copy_dir(tmp.path(), killed.path());
    hold.store(false, Ordering::SeqCst);
    drop(kv);
    assert_eq!(durable_active(killed.path()), x, "the scenario");

    // A power loss that lost X's seal: the same files, the seal zeroed.
    let lost_seal = tempfile::tempdir().unwrap();
    copy_dir(killed.path(), lost_seal.path());
    let lane = lost_seal
        .path()
        .join("kv")
        .join(format!("log-{x:010}"))
        .join("data-00.acc");
    let mut bytes = std::fs::read(&lane).unwrap();
    let seal = seal_position(&bytes).expect("X is sealed");
    bytes[seal..seal + 16].fill(0);
    std::fs::write(&lane, bytes).unwrap();

    let mut all = in_x.clone();
    all.extend(in_next);
    for (root, want, active, ctx) in [
        (killed.path(), &all, x + 1, "killed after the roll"),
        (lost_seal.path(), &in_x, x, "X's seal lost"),
    ] {
        let dir = Dir::open(root).unwrap();
        let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
        let stats = kv.stats();
        assert_eq!(
            (stats.active_log, stats.damaged_records),
            (active, 0),
            "{ctx}: {stats:?}"
        );
        assert_eq!(durable_active(root), active, "{ctx}");
        assert!(
            root.join("kv").join(format!("log-{:010}", x + 1)).is_dir() == (active == x + 1),
            "{ctx}: X+1 kept only if adopted"
        );
        assert_holds(&kv, want, ctx);
        // The store writes on; a reopen keeps it all.
        kv.put(b"after", b"open").unwrap();
        let mut want = want.clone();
        want.insert(b"after".to_vec(), b"open".to_vec());
        drop(kv);
        let kv = LogStore::open(&dir, "kv", small(4096)).unwrap();
        assert_holds(&kv, &want, &format!("{ctx}, reopened"));
    }
}
