//! A review of the HashStore (issue 12) through its public API: probes that pass when the
//! store keeps its contract. The ones that fail document bugs found by the review; the
//! others are what was tried and held.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use accretion::faults::{self, Flush, HookGuard};
use accretion::limits::{HASH_KEY_LEN_BYTES_MAX, HASH_VALUE_LEN_BYTES_MAX};
use accretion::{
    AppendOnly, Dir, Error, HashOptions, HashStore, Journal, OptimizeMode, RandomAccess,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::snapshot;

fn open(dir: &Dir) -> HashStore {
    HashStore::open(dir, "kv", HashOptions::default()).unwrap()
}

fn open_with(dir: &Dir, options: HashOptions) -> HashStore {
    HashStore::open(dir, "kv", options).unwrap()
}

/// Files under `root` as they are now, tolerating files that vanish while being read
/// (a hook may run while a helper thread creates or removes files).
fn loose_snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().is_some_and(|n| n != "accretion.lock")
                && let Ok(bytes) = std::fs::read(&p)
            {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A store directory's files by relative path, as a snapshot holds them.
type Files = BTreeMap<PathBuf, Vec<u8>>;

/// A new directory holding `files`: what a process killed when they were taken leaves.
fn image_of(files: &BTreeMap<PathBuf, Vec<u8>>) -> Dir {
    let image = Dir::temporary().unwrap();
    for (rel, bytes) in files {
        let to = image.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    image
}

/// A copy of `dir` as it is now, open.
fn killed_image(dir: &Dir) -> Dir {
    image_of(&snapshot(dir.path()))
}

/// Every entry, read through `iter`, checked against `len` and `verify`.
fn contents(store: &HashStore) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut out = HashMap::new();
    for e in store.iter().unwrap() {
        let (k, v) = e.unwrap();
        assert!(
            out.insert(k.to_vec(), v.to_vec()).is_none(),
            "iter yields a key twice"
        );
    }
    assert_eq!(store.len(), out.len() as u64, "len against iter");
    let report = store.verify().unwrap();
    assert_eq!(report.entries, out.len() as u64);
    out
}

/// Log bytes a record of this key and value takes (frame and padding included).
fn footprint(key: &[u8], value: &[u8]) -> u64 {
    let grain = AppendOnly::FRAME_BYTES;
    grain + (12 + key.len() as u64 + value.len() as u64).div_ceil(grain) * grain
}

/// The stats agree with the model: entries, and the live bytes (data minus dead).
fn check_stats(store: &HashStore, model: &HashMap<Vec<u8>, Vec<u8>>, what: &str) {
    let st = store.stats().unwrap();
    assert_eq!(st.entries, model.len() as u64, "{what}: {st:?}");
    // The store counts a record's padding to the frame grain, which the log holds only
    // once the next record is appended: the live count may pass the log by 15 bytes.
    let live: u64 = model.iter().map(|(k, v)| footprint(k, v)).sum();
    let counted = (st.record_bytes_mean * st.entries as f64).round() as u64;
    assert_eq!(counted, live, "{what}: live bytes {st:?}");
    assert_eq!(
        st.dead_bytes,
        st.data_bytes.saturating_sub(live),
        "{what}: dead bytes {st:?}"
    );
    assert!(st.index_fill <= 0.9, "{what}: {st:?}");
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// Rewrites the closed store's state through the public Journal (valid checksums: what
/// a crafted or silently damaged value looks like), as plain words in the layout
/// ARCHITECTURE.md gives: 0 magic, 1 format and flags, 2 data_gen, 3 prev_gen, 4
/// index_gen, 5 index_level, 6 covered_len, 7 entries, 8 live_bytes, 9 index_sum (and any
/// words a later format adds after them).
fn craft_state(dir: &Dir, change: impl FnOnce(&mut [u64])) {
    let mut change = Some(change);
    let mut apply = |s: &mut [u64]| {
        assert_eq!(s[0], u64::from_le_bytes(*b"acc-hash"));
        (change.take().unwrap())(s);
    };
    match Journal::<[u64; 10]>::open(dir, "kv/state") {
        Ok(j) => {
            let mut s = j.get();
            apply(&mut s);
            j.set(s).unwrap();
            j.sync().unwrap();
        }
        Err(Error::Incompatible { .. }) => {
            let j = Journal::<[u64; 13]>::open(dir, "kv/state").unwrap();
            let mut s = j.get();
            apply(&mut s);
            j.set(s).unwrap();
            j.sync().unwrap();
        }
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Open bugs: these probes fail.
// ---------------------------------------------------------------------------------------

/// A store holding one large value (600 KiB, whose record skips the log's first four
/// lanes: 960 KiB of padding no optimisation can free), written to by short sessions.
/// e636fa3 stopped the optimisation on every write (see
/// `one_large_value_does_not_make_every_write_optimise`) by leaving out the padding the
/// last optimisation left, but remembers it in memory only (`dead_floor`, 0 at every
/// open): a program that opens the store, writes a key and closes it still runs a whole
/// optimisation (a copy of every live record, a new data generation) every time.
#[test]
fn one_large_value_does_not_make_every_session_optimise() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"big", &vec![7u8; 600 << 10]).unwrap();
    let before = open(&dir).stats().unwrap().data_generation;
    for i in 0..10u64 {
        open(&dir).set(&key(i), b"small").unwrap();
    }
    let st = open(&dir).stats().unwrap();
    assert!(
        st.data_generation <= before + 1,
        "10 sessions of one small write ran {} optimisations: {st:?}",
        st.data_generation - before
    );
}

/// A data generation whose directory is there but whose files are gone (lost, or
/// deleted by hand): the open makes a new, empty log in their place and rebuilds the
/// index from it, so the store opens empty, without an error; the data is silently
/// gone. A state that names records (`covered_len`, `entries`) should find them.
#[test]
fn a_data_log_whose_files_are_gone_is_an_error() {
    let dir = Dir::temporary().unwrap();
    {
        let store = open(&dir);
        for i in 0..10u64 {
            store.set(&key(i), b"v").unwrap();
        }
    }
    for e in std::fs::read_dir(dir.path().join("kv/d0")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let r = HashStore::open(&dir, "kv", HashOptions::default()).map(|s| s.len());
    assert!(r.is_err(), "the store opened with {r:?} keys of 10");
}

/// The entropy file of another store put in place of this one's (the same class as a
/// misplaced data log, which is refused): the clean open trusts the index, hashed with
/// the old key, and looks keys up with the new one: `get` misses keys that `iter` and
/// `len` show, and a `set` of one adds a second entry for it. Nothing ties the entropy
/// to the store (the state could hold a keyed digest of its id, checked at open).
#[test]
fn an_entropy_file_of_another_store_is_refused_or_rebuilt() {
    let dir = Dir::temporary().unwrap();
    for (name, value) in [("kv", b"AAAA"), ("other", b"BBBB")] {
        let s = HashStore::open(&dir, name, HashOptions::default()).unwrap();
        s.set(b"k", value).unwrap();
    }
    let ours = dir.path().join("kv/entropy");
    for e in std::fs::read_dir(dir.path().join("other/entropy")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ours.join(e.file_name())).unwrap();
    }
    let Ok(store) = HashStore::open(&dir, "kv", HashOptions::default()) else {
        return;
    };
    assert_eq!(
        store.get(b"k").unwrap().map(|v| v.to_vec()),
        Some(b"AAAA".to_vec()),
        "len {}, rebuilt {}, verify {:?}",
        store.len(),
        store.rebuilt_at_open(),
        store.verify()
    );
}

/// e636fa3 tells a store named below this one (see
/// `opening_a_store_leaves_a_store_named_below_it_alone`) by its `state` directory; any
/// other structure the Dir lets a user name "kv/d7" (an AppendOnly here, or a
/// RandomAccess "kv/i3") is still taken for a stale generation and removed when "kv"
/// opens. The Dir should refuse a name inside another structure's directory, or the
/// store remove only what it recognises as its own (a data log with its identity).
#[test]
fn opening_a_store_leaves_a_structure_named_below_it_alone() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"a", b"1").unwrap();
    let span = {
        let buf = AppendOnly::open(&dir, "kv/d7").unwrap();
        let span = buf.append(b"user data").unwrap();
        buf.sync().unwrap();
        span
    };
    drop(open(&dir));
    let buf = AppendOnly::open(&dir, "kv/d7").unwrap();
    assert_eq!(
        buf.get(span).ok(),
        Some(&b"user data"[..]),
        "the AppendOnly kv/d7 was removed when store kv was opened"
    );
}

/// An index whose checksum holds (the state's `index_sum` recomputed, as the format
/// documents it) but whose slot names a log offset past 2^60: the clean open trusts it,
/// and the lookup's `offset / 16 * 16` decoding (`index::locate`) overflows: a panic in
/// debug builds. Slots read from a trusted index need checked arithmetic (or the clean
/// open a bound check of every position word, which it reads anyway for the checksum).
#[test]
fn a_crafted_index_position_gives_an_error_not_a_panic() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"k", b"v").unwrap();
    let slots = 4096u64;
    {
        let words = RandomAccess::<u64>::open(&dir, "kv/i0/slots").unwrap();
        let tags = RandomAccess::<u16>::open(&dir, "kv/i0/tags").unwrap();
        let slot = (0..slots)
            .find(|&i| words.read(2 * i).unwrap() != 0)
            .unwrap();
        let pos = words.read(2 * slot + 1).unwrap();
        words.set(2 * slot + 1, pos | (7 << 60)).unwrap();
        let mut w = vec![0u64; 2 * slots as usize];
        let mut t = vec![0u16; slots as usize];
        words.read_many(0, &mut w).unwrap();
        tags.read_many(0, &mut t).unwrap();
        let mut bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        bytes.extend(t.iter().flat_map(|x| x.to_le_bytes()));
        let sum = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, slots);
        words.sync().unwrap();
        tags.sync().unwrap();
        drop((words, tags));
        craft_state(&dir, |s| s[9] = sum);
    }
    let store = open(&dir);
    assert!(!store.rebuilt_at_open(), "the crafted index is trusted");
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        store.get(b"k").map(|v| v.map(|v| v.to_vec()))
    }));
    // An error, or the right value (the store ignores bits it never sets, and the read
    // checks the record it lands on): never a panic, never another value.
    assert!(
        matches!(&outcome, Ok(Err(_))) || matches!(&outcome, Ok(Ok(Some(v))) if v == b"v"),
        "get through a slot naming offset past 2^60: {outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Bugs this review found that the maintainers fixed while it ran (2bc3ff1, 4accecb,
// e636fa3): each probe failed on the code before its fix, and guards it now.
// ---------------------------------------------------------------------------------------

/// A store holding one large value (600 KiB: its record skips the log's first four
/// lanes, 960 KiB of padding no optimisation can free) does not optimise on every write.
/// Before e636fa3 it was "wasteful" again right after each optimisation (the padding
/// counted as dead), so every later write ran a whole automatic optimisation (a copy of
/// every live record, a new data generation, two fdatasyncs): 20 writes, 20 runs.
#[test]
fn one_large_value_does_not_make_every_write_optimise() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"big", &vec![7u8; 600 << 10]).unwrap();
    let before = store.stats().unwrap().data_generation;
    for i in 0..20u64 {
        store.set(&key(i), b"small").unwrap();
    }
    let st = store.stats().unwrap();
    assert!(
        st.data_generation <= before + 1,
        "20 small writes ran {} optimisations: {st:?}",
        st.data_generation - before
    );
    assert!(store.optimize(OptimizeMode::Aggressive).unwrap());
    let after = store.stats().unwrap();
    assert!(
        !store.optimize(OptimizeMode::Normal).unwrap(),
        "a Normal optimisation right after an Aggressive one has nothing to free: {after:?}"
    );
}

/// A state whose checksum holds but whose entry count is wrong (here 0 for a store of
/// 3,000 keys) gives an error or a rebuild, never a panic. Before e636fa3 the clean open
/// trusted it: the index never grew, and the insert that found it full panicked ("a hash
/// index was full", index.rs) under the index lock, after Robin Hood moves.
#[test]
fn a_crafted_entry_count_gives_an_error_not_a_panic() {
    let dir = Dir::temporary().unwrap();
    {
        let store = open(&dir);
        store
            .extend((0..3000u64).map(|i| (key(i), b"v".to_vec())))
            .unwrap();
    }
    craft_state(&dir, |s| s[7] = 0);
    let store = open(&dir);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for i in 3000..4200u64 {
            if store.set(&key(i), b"v").is_err() {
                return;
            }
        }
    }));
    assert!(
        outcome.is_ok(),
        "a write panicked on a store whose state counted 0 entries"
    );
}

/// As above for the live byte count (here `u64::MAX`). Before e636fa3
/// `optimize(Normal)` computed `live_bytes * 2` and panicked on the overflow (debug
/// builds; a release build wrapped and decided on garbage).
#[test]
fn a_crafted_live_byte_count_gives_an_error_not_a_panic() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"k", b"v").unwrap();
    craft_state(&dir, |s| s[8] = u64::MAX);
    let store = open(&dir);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let _ = store.optimize(OptimizeMode::Normal);
        let _ = store.set(b"k", b"w");
    }));
    assert!(
        outcome.is_ok(),
        "a call panicked on a store whose state counted u64::MAX live bytes"
    );
}

const CHILD_VAR: &str = "ACCRETION_REVIEW_HASH_CHILD";

/// The child of the test below: opens the store whose state names index level 28.
#[test]
fn crafted_level_child() {
    let Ok(path) = std::env::var(CHILD_VAR) else {
        return;
    };
    let dir = Dir::open(&path).unwrap();
    match HashStore::open(&dir, "kv", HashOptions::default()) {
        Ok(store) => println!("opened, {} entries", store.len()),
        Err(e) => println!("typed error: {e}"),
    }
}

/// An unclean state (a crash) whose index level was damaged to 28, a value the state
/// check accepts, opens or fails with a typed error. Before e636fa3 the rebuild sized
/// its in-memory index from it, 4096 × (2^28 − 1) slots: "memory allocation of
/// 17592185978880 bytes failed", SIGABRT.
#[test]
fn a_crafted_index_level_gives_an_error_not_an_abort() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let store = open(&dir);
        store.set(b"k", b"v").unwrap();
    }
    {
        let dir = Dir::open(tmp.path()).unwrap();
        // Not clean (as after a crash), index level 28.
        craft_state(&dir, |s| {
            s[1] &= !(1u64 << 32);
            s[5] = 28;
        });
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 8000000 && exec "$0" --exact review_hash::crafted_level_child --nocapture"#)
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_VAR, tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the open aborted ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two stores in one Dir: "kv" and "kv/d7" (a valid name). Before e636fa3 opening "kv"
/// took the other store's directory for a stale data generation of its own and removed
/// it: the other store's data was gone. Since the catalog, a store inside another's
/// directory is refused (`Incompatible`, naming the store it lies in), and the outer one
/// keeps its data.
#[test]
fn opening_a_store_leaves_a_store_named_below_it_alone() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"a", b"1").unwrap();
    let e = HashStore::open(&dir, "kv/d7", HashOptions::default()).unwrap_err();
    assert!(matches!(e, accretion::Error::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains("inside"), "{e}");
    let kv = open(&dir);
    assert_eq!(kv.get(b"a").unwrap().unwrap(), b"1");
    drop(kv);
    assert!(
        !dir.path().join("kv/d7").exists(),
        "the refused open made nothing"
    );
}

/// A data generation of another store put in place of this one's (a restore from the
/// wrong backup, a copy between machines) is refused. Before e636fa3, with the length
/// the state recorded, the clean open trusted the index and served the other store's
/// values as this one's ("BBBB" for "AAAA"), without an error.
#[test]
fn a_data_log_of_another_store_is_refused() {
    let dir = Dir::temporary().unwrap();
    for (name, value) in [("kv", b"AAAA"), ("other", b"BBBB")] {
        let s = HashStore::open(&dir, name, HashOptions::default()).unwrap();
        s.set(b"k", value).unwrap();
    }
    let ours = dir.path().join("kv/d0");
    let theirs = dir.path().join("other/d0");
    for e in std::fs::read_dir(&theirs).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ours.join(e.file_name())).unwrap();
    }
    let got = HashStore::open(&dir, "kv", HashOptions::default())
        .and_then(|s| s.get(b"k").map(|v| v.map(|v| v.to_vec())));
    assert!(
        got.is_err(),
        "another store's data log was adopted without an error: k = {got:?}"
    );
}

/// Opening a store that is open already is refused with `NameInUse` naming the store
/// (before e636fa3: "kv/state", an internal part; the LogStore names the store).
#[test]
fn opening_an_open_store_names_the_store() {
    let dir = Dir::temporary().unwrap();
    let _store = open(&dir);
    let twice = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(
        matches!(&twice, Error::NameInUse { name } if name == "kv"),
        "{twice:?}"
    );
}

/// Reopening while a value handle of the earlier open is alive is refused with
/// `HandlesAlive`, as the LogStore does (before e636fa3: `NameInUse` naming "kv/d0",
/// "structure \"kv/d0\" is already open", which said nothing of the handle). The refused
/// open damages nothing.
#[test]
fn reopen_with_a_handle_alive_says_so() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"k", b"v").unwrap();
    let v = store.get(b"k").unwrap().unwrap();
    drop(store);
    let err = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    let clear = matches!(&err, Error::HandlesAlive { .. });
    drop(v);
    let store = open(&dir);
    assert!(!store.rebuilt_at_open());
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
    assert!(clear, "open with a handle alive: {err:?} ({err})");
}

/// After an optimisation that failed half-way (here its final flush of the new
/// generation), `close` finishes it and shuts down clean, or returns an error. Before
/// e636fa3 it returned `Ok(())` without writing a clean state: the next open rebuilt.
#[test]
fn close_after_an_interrupted_optimisation_is_clean_or_an_error() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    for i in 0..100u64 {
        store.set(&key(i), b"value").unwrap();
    }
    let d1 = dir.path().join("kv/d1");
    // The new generation's flushes: the first makes its first record durable before the
    // state names it; the second, the copies', fails.
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hook = {
        let seen = Arc::clone(&seen);
        faults::install(move |flush| {
            (matches!(flush, Flush::Range { .. })
                && flush.path().starts_with(&d1)
                && seen.fetch_add(1, Ordering::SeqCst) == 1)
                .then(|| std::io::Error::from_raw_os_error(5))
        })
    };
    let r = store.optimize(OptimizeMode::Aggressive);
    drop(hook);
    assert!(
        r.is_err(),
        "the hook failed the optimisation's flush: {r:?}"
    );
    assert_eq!(
        store.stats().unwrap().data_generation,
        1,
        "the optimisation was under way when it failed"
    );
    let closed = store.close();
    let reopened = open(&dir);
    assert!(
        closed.is_err() || !reopened.rebuilt_at_open(),
        "close returned {closed:?}, yet the next open rebuilt the index"
    );
    assert_eq!(reopened.len(), 100);
}

/// A `clear` whose switch to its new index fails after its clear record was written
/// (here the state's fdatasync; likewise after an earlier failure left the Journal
/// refusing writes, such as a shrink's, whose error a delete ignores): the session reads
/// what a crash image and the next open hold. Before e636fa3 the store was poisoned but
/// kept serving the old index: `get` returned a key the rebuild had cleared.
#[test]
fn a_clear_whose_switch_fails_reads_the_same_in_the_session_and_after_a_crash() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"k", b"v").unwrap();
    let on = Arc::new(AtomicBool::new(true));
    let hook = fail_flushes_under(dir.path().join("kv/state"), Arc::clone(&on));
    let cleared = store.clear();
    on.store(false, Ordering::SeqCst);
    drop(hook);
    assert!(cleared.is_err(), "the hook failed the state's sync");
    let now = store.get(b"k").map(|v| v.map(|v| v.to_vec()));
    let crashed = HashStore::open(&killed_image(&dir), "kv", HashOptions::default())
        .unwrap()
        .get(b"k")
        .unwrap()
        .map(|v| v.to_vec());
    drop(store);
    let reopened = open(&dir).get(b"k").unwrap().map(|v| v.to_vec());
    assert_eq!(crashed, reopened);
    assert!(
        now.as_ref().is_err() || now.as_ref().ok() == Some(&crashed),
        "after a failed clear the session reads k = {now:?}, a crash image {crashed:?}"
    );
}

/// Fails every flush whose path lies under `root` (component-wise) while `on` is set.
fn fail_flushes_under(root: PathBuf, on: Arc<AtomicBool>) -> HookGuard {
    faults::install(move |flush| {
        (on.load(Ordering::SeqCst) && flush.path().starts_with(&root))
            .then(|| std::io::Error::from_raw_os_error(28))
    })
}

/// A `clear` whose new index cannot be made (a full disk when its directory is
/// created): the session, a clean reopen and a crash image agree on the key. Before
/// 4accecb the clear record was appended first and the old index kept: the session and
/// a clean reopen served the key, and any later rebuild (a crash, weeks later) dropped
/// it.
#[test]
fn a_failed_clear_is_the_same_before_and_after_a_crash() {
    let dir = Dir::temporary().unwrap();
    {
        let store = open(&dir);
        store.set(b"k", b"v").unwrap();
        let on = Arc::new(AtomicBool::new(true));
        let hook = fail_flushes_under(dir.path().join("kv/i1"), Arc::clone(&on));
        let cleared = store.clear();
        on.store(false, Ordering::SeqCst);
        drop(hook);
        assert!(cleared.is_err(), "the hook failed the new index's creation");
        let now = store.get(b"k").unwrap().map(|v| v.to_vec());
        let crashed = HashStore::open(&killed_image(&dir), "kv", HashOptions::default())
            .unwrap()
            .get(b"k")
            .unwrap()
            .map(|v| v.to_vec());
        assert_eq!(
            now, crashed,
            "after a failed clear, the session and a crash image disagree on key k"
        );
    }
    // What a user sees: clean reopen, "k" is there; a write, a crash: "k" is gone.
    let store = open(&dir);
    let seen = store.get(b"k").unwrap().is_some();
    store.set(b"other", b"x").unwrap();
    let after_crash = HashStore::open(&killed_image(&dir), "kv", HashOptions::default())
        .unwrap()
        .get(b"k")
        .unwrap()
        .is_some();
    assert_eq!(
        seen, after_crash,
        "key k changed at a crash with no write to it"
    );
}

/// Fills a level-1 index (4,096 slots) to just under its 90% growth point.
fn nearly_full(store: &HashStore) -> u64 {
    let n = 4096 * 9 / 10;
    store
        .extend((0..n).map(|i| (key(i), b"v".to_vec())))
        .unwrap();
    assert_eq!(store.stats().unwrap().index_capacity, 4096);
    n
}

/// An insert whose index growth fails (a full disk) is refused with nothing stored, so
/// that a caller retrying a failed `update` of a counter counts once. Before 2bc3ff1 the
/// key was stored, then the growth failed and its error was returned.
#[test]
fn a_write_whose_index_growth_fails_is_not_reported_failed() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let n = nearly_full(&store);
    let on = Arc::new(AtomicBool::new(true));
    let _hook = fail_flushes_under(dir.path().join("kv/i1"), Arc::clone(&on));
    let r = store.update(&key(n), |old| {
        let count = old.map_or(0, |v| v[0]);
        Some(vec![count + 1])
    });
    on.store(false, Ordering::SeqCst);
    let stored = store.get(&key(n)).unwrap().map(|v| v.to_vec());
    assert!(
        r.is_ok() || stored.is_none(),
        "update returned {r:?} but stored {stored:?}: a retry counts twice"
    );
}

/// While the index cannot grow (its new generation cannot be created: a full disk), new
/// keys are refused and nothing panics. Before 2bc3ff1 inserts went on filling the old
/// index to its last slot, and the next one panicked ("a hash index was full") under the
/// index lock, after Robin Hood stealing had moved entries.
#[test]
fn inserts_while_the_index_cannot_grow_never_panic() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let n = nearly_full(&store);
    let on = Arc::new(AtomicBool::new(true));
    let _hook = fail_flushes_under(dir.path().join("kv/i1"), Arc::clone(&on));
    let mut ok = Vec::new();
    for i in n..n + 500 {
        match catch_unwind(AssertUnwindSafe(|| store.set(&key(i), b"w"))) {
            Ok(Ok(_)) => ok.push(i),
            Ok(Err(_)) => {}
            Err(_) => {
                on.store(false, Ordering::SeqCst);
                panic!("set of key {i} panicked while the index could not grow");
            }
        }
    }
    on.store(false, Ordering::SeqCst);
    for i in ok {
        assert!(store.get(&key(i)).unwrap().is_some(), "key {i} lost");
    }
    store.verify().unwrap();
}

// ---------------------------------------------------------------------------------------
// What held.
// ---------------------------------------------------------------------------------------

/// One thread writes and clears (its model exact at every step) while another runs
/// optimisations back to back: clears land in the middle of copies. Contents, a clean
/// reopen and a killed image match the model.
#[test]
fn clear_during_optimisation_matches_a_model() {
    let dir = Dir::temporary().unwrap();
    let store = open_with(
        &dir,
        HashOptions {
            auto_optimize: false,
            auto_optimize_min_bytes: 0,
        },
    );
    for i in 0..5000u64 {
        store.set(&key(i), &[b'a'; 60]).unwrap();
    }
    let done = AtomicBool::new(false);
    let model = std::thread::scope(|s| {
        let (store, done) = (&store, &done);
        let opt = s.spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) {
                runs += u32::from(store.optimize(OptimizeMode::Aggressive).unwrap());
            }
            runs
        });
        let mut model: HashMap<Vec<u8>, Vec<u8>> =
            (0..5000u64).map(|i| (key(i), vec![b'a'; 60])).collect();
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..6000u32 {
            let k = key(rng.random_range(0..5000));
            match rng.random_range(0..1000u32) {
                0..3 => {
                    store.clear().unwrap();
                    model.clear();
                }
                3..600 => {
                    let v = n.to_le_bytes().repeat(8);
                    store.set(&k, &v).unwrap();
                    model.insert(k, v);
                }
                600..700 => {
                    store.delete(&k).unwrap();
                    model.remove(&k);
                }
                _ => {
                    let got = store.get(&k).unwrap().map(|v| v.to_vec());
                    assert_eq!(got.as_ref(), model.get(&k), "step {n}");
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        assert!(opt.join().unwrap() > 1);
        model
    });
    assert_eq!(contents(&store), model);
    check_stats(&store, &model, "after clears during optimisations");
    let img = HashStore::open(&killed_image(&dir), "kv", HashOptions::default()).unwrap();
    assert_eq!(contents(&img), model);
    drop(store);
    let store = open(&dir);
    assert!(!store.rebuilt_at_open());
    assert_eq!(contents(&store), model);
}

/// Automatic optimisation with a tiny threshold over a store of many small records: one
/// optimisation per round of overwrites at most (the cost is amortised). With a single
/// key it runs every second write (dead > live after two records): bounded per write.
#[test]
fn automatic_optimisation_is_amortised() {
    let dir = Dir::temporary().unwrap();
    let store = open_with(
        &dir,
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 1,
        },
    );
    for round in 0..10u8 {
        for i in 0..1000u64 {
            store.set(&key(i), &[round; 40]).unwrap();
        }
    }
    let st = store.stats().unwrap();
    assert!(st.data_generation <= 10, "{st:?}");
    assert!(st.dead_bytes <= st.data_bytes / 2 + 64, "{st:?}");
    let one = Dir::temporary().unwrap();
    let single = open_with(
        &one,
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 1,
        },
    );
    for n in 0..100u32 {
        single.set(b"k", &n.to_le_bytes()).unwrap();
    }
    let st = single.stats().unwrap();
    assert!(st.data_generation <= 50, "{st:?}");
}

/// The write path's flushes, as the durability contract gives them: none for a write
/// (after the first one's state change), one for `sync`.
#[test]
fn writes_flush_nothing_and_sync_flushes_once() {
    let dir = Dir::temporary().unwrap();
    let root = dir.path().to_path_buf();
    let store = open(&dir);
    store.set(b"first", b"write").unwrap();
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let flushes = Arc::clone(&flushes);
        faults::install(move |flush| {
            if flush.path().starts_with(&root) {
                flushes.lock().unwrap().push(format!("{flush:?}"));
            }
            None
        })
    };
    for i in 0..300u64 {
        store.set(&key(i), b"v").unwrap();
        if i % 3 == 0 {
            store.delete(&key(i)).unwrap();
        }
        store.update(&key(i), |_| Some(b"w")).unwrap();
    }
    let writes = std::mem::take(&mut *flushes.lock().unwrap());
    store.sync().unwrap();
    let syncs = std::mem::take(&mut *flushes.lock().unwrap());
    drop(hook);
    assert!(writes.is_empty(), "writes flushed: {writes:?}");
    assert_eq!(syncs.len(), 1, "{syncs:?}");
}

/// A panicking `update` closure releases the writer lock and leaves the store as it
/// was, usable from the same thread and others.
#[test]
fn a_panicking_update_closure_leaves_the_store_usable() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    store.set(b"k", b"v").unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        store.update(b"k", |_| -> Option<Vec<u8>> { panic!("closure") })
    }));
    assert!(r.is_err());
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
    store.set(b"k", b"w").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| store.set(b"t", b"x").unwrap());
    });
    store.update(b"k", |_| Some(b"z")).unwrap();
    let mut model = HashMap::new();
    model.insert(b"k".to_vec(), b"z".to_vec());
    model.insert(b"t".to_vec(), b"x".to_vec());
    assert_eq!(contents(&store), model);
    check_stats(&store, &model, "after a panicking update");
    drop(store);
    let store = open(&dir);
    assert!(!store.rebuilt_at_open());
    assert_eq!(contents(&store), model);
}

/// A `retain` closure that panics part-way leaves the removals made so far, a
/// consistent index and counts, and a usable store.
#[test]
fn a_panicking_retain_closure_leaves_a_consistent_store() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    for i in 0..3000u64 {
        store.set(&key(i), &i.to_le_bytes()).unwrap();
    }
    let calls = AtomicUsize::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        store.retain(|_, _| {
            assert!(calls.fetch_add(1, Ordering::SeqCst) < 2500, "stop");
            false
        })
    }));
    assert!(r.is_err());
    let model = contents(&store);
    assert_eq!(model.len(), 500);
    check_stats(&store, &model, "after a panicking retain");
    store.set(b"new", b"1").unwrap();
    let img = HashStore::open(&killed_image(&dir), "kv", HashOptions::default()).unwrap();
    let mut expect = model.clone();
    expect.insert(b"new".to_vec(), b"1".to_vec());
    assert_eq!(contents(&img), expect);
}

/// Keys of 0 and 65,535 bytes and values of 0 bytes and 3 MiB round-trip through
/// writes, deletes, optimisation, a clean reopen and a killed image; over-limit keys
/// and values (also from an `update` closure) are refused and leave no record.
#[test]
fn extreme_keys_and_values_round_trip() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let long_key = vec![0xabu8; HASH_KEY_LEN_BYTES_MAX];
    let big = vec![0x5au8; 3 << 20];
    let mut model = HashMap::new();
    for (k, v) in [
        (Vec::new(), Vec::new()),
        (Vec::new(), b"empty key".to_vec()),
        (long_key.clone(), Vec::new()),
        (long_key.clone(), big.clone()),
        (b"zero".to_vec(), Vec::new()),
        (b"big".to_vec(), big.clone()),
    ] {
        store.set(&k, &v).unwrap();
        model.insert(k, v);
        check_stats(&store, &model, "set");
    }
    assert_eq!(contents(&store), model);
    let bytes = store.stats().unwrap().data_bytes;
    let over = vec![0u8; HASH_VALUE_LEN_BYTES_MAX + 1];
    assert!(matches!(
        store.update(b"zero", |_| Some(&over)),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.set(&vec![0u8; HASH_KEY_LEN_BYTES_MAX + 1], b""),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        store.delete(&vec![0u8; HASH_KEY_LEN_BYTES_MAX + 1]),
        Err(Error::LimitExceeded { .. })
    ));
    assert_eq!(store.stats().unwrap().data_bytes, bytes, "nothing appended");
    assert_eq!(store.delete(b"").unwrap().unwrap(), b"empty key");
    model.remove(&Vec::new());
    store.optimize(OptimizeMode::Aggressive).unwrap();
    check_stats(&store, &model, "optimised");
    assert_eq!(
        HashStore::open(&killed_image(&dir), "kv", HashOptions::default())
            .map(|s| contents(&s))
            .unwrap(),
        model
    );
    drop(store);
    let store = open(&dir);
    assert!(!store.rebuilt_at_open());
    assert_eq!(contents(&store), model);
    assert!(store.get(b"").unwrap().is_none());
}

/// Handles held across a clear, an optimisation and reopens read what they read, keep
/// their generation's files only while alive, and outlive the store and the Dir.
#[test]
fn handles_across_clear_optimise_reopen_and_drop() {
    let dir = Dir::temporary().unwrap();
    let root = dir.path().to_path_buf();
    let store = open(&dir);
    store.set(b"a", b"one").unwrap();
    let a = store.get(b"a").unwrap().unwrap();
    let it = store.iter().unwrap();
    store.clear().unwrap();
    assert!(store.get(b"a").unwrap().is_none());
    store.set(b"b", b"two").unwrap();
    assert!(store.optimize(OptimizeMode::Aggressive).unwrap());
    assert_eq!(a, b"one");
    drop(store);
    // d0 is retired but held by `a` and `it`: the store reopens beside it.
    let store = open(&dir);
    assert!(!store.rebuilt_at_open());
    assert!(store.get(b"a").unwrap().is_none());
    assert_eq!(store.get(b"b").unwrap().unwrap(), b"two");
    assert!(store.optimize(OptimizeMode::Aggressive).unwrap());
    let b = store.get(b"b").unwrap().unwrap();
    drop(store);
    drop(dir);
    let items: Vec<_> = it.map(|e| e.unwrap()).collect();
    assert_eq!(items.len(), 1);
    assert_eq!((&*items[0].0, &*items[0].1), (&b"a"[..], &b"one"[..]));
    assert_eq!(a, b"one");
    assert_eq!(b, b"two");
    assert!(root.join("kv/d0").exists(), "held generation kept");
    drop(items);
    drop(a);
    assert!(!root.join("kv/d0").exists(), "retired generation removed");
    drop(b);
    assert!(
        !root.exists(),
        "the temporary directory goes with its last handle"
    );
}

/// A damaged state journal, a missing data generation, a state naming a missing
/// previous generation: typed errors, never a panic.
#[test]
fn damaged_state_and_missing_generations_are_typed_errors() {
    let dir = Dir::temporary().unwrap();
    open(&dir).set(b"k", b"v").unwrap();
    let journal = dir.path().join("kv/state/journal.acc");
    let good = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, vec![0x5a; good.len()]).unwrap();
    let e = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(
        matches!(e, Error::Corrupted { .. } | Error::Incompatible { .. }),
        "{e:?}"
    );
    std::fs::write(&journal, &good).unwrap();
    // An optimisation under way whose previous generation is missing.
    craft_state(&dir, |s| {
        s[1] &= !(1u64 << 32);
        s[2] = 2;
        s[3] = 1;
    });
    std::fs::create_dir_all(dir.path().join("kv/d2")).unwrap();
    std::fs::rename(dir.path().join("kv/d0"), dir.path().join("kv/d2")).unwrap();
    let e = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    // The state names a data generation that is not there.
    craft_state(&dir, |s| {
        s[2] = 4;
        s[3] = u64::MAX;
    });
    let e = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    // Same parity for both generations: refused.
    craft_state(&dir, |s| {
        s[2] = 2;
        s[3] = 0;
    });
    let e = HashStore::open(&dir, "kv", HashOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
}

/// Two stores in one Dir, side by side, and the same store opened twice.
#[test]
fn two_stores_in_one_dir_are_independent() {
    let dir = Dir::temporary().unwrap();
    let a = HashStore::open(&dir, "a", HashOptions::default()).unwrap();
    let b = HashStore::open(&dir, "b", HashOptions::default()).unwrap();
    for i in 0..5000u64 {
        a.set(&key(i), b"a").unwrap();
        if i % 2 == 0 {
            b.set(&key(i), b"b").unwrap();
        }
    }
    a.clear().unwrap();
    b.optimize(OptimizeMode::Aggressive).unwrap();
    assert!(HashStore::open(&dir, "a", HashOptions::default()).is_err());
    assert_eq!(a.len(), 0);
    assert_eq!(b.len(), 2500);
    drop((a, b));
    let b = HashStore::open(&dir, "b", HashOptions::default()).unwrap();
    assert_eq!(contents(&b).len(), 2500);
}

/// A seeded model run with stats checked after every operation (entries, live bytes),
/// small automatic-optimisation threshold, every kind of operation.
#[test]
fn stats_follow_every_operation() {
    let dir = Dir::temporary().unwrap();
    let store = open_with(
        &dir,
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 4096,
        },
    );
    let mut rng = StdRng::seed_from_u64(12);
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for step in 0..3000 {
        let k = format!("k{}", rng.random_range(0..300u32)).into_bytes();
        let v: Vec<u8> = vec![b'x'; rng.random_range(0..200usize)];
        match rng.random_range(0..100u32) {
            0..50 => {
                store.set(&k, &v).unwrap();
                model.insert(k, v);
            }
            50..70 => {
                store.delete(&k).unwrap();
                model.remove(&k);
            }
            70..85 => {
                let new = (!v.len().is_multiple_of(3)).then_some(v);
                store.update(&k, |_| new.clone()).unwrap();
                match new {
                    Some(v) => model.insert(k, v),
                    None => model.remove(&k),
                };
            }
            85..92 => {
                let cut = rng.random::<u8>();
                store.retain(|k, _| k[k.len() - 1] != cut).unwrap();
                model.retain(|k, _| k[k.len() - 1] != cut);
            }
            92..95 => {
                store.optimize(OptimizeMode::Aggressive).unwrap();
            }
            95..97 => {
                store.clear().unwrap();
                model.clear();
            }
            _ => {
                store
                    .extend([(k.clone(), v.clone()), (b"fixed".to_vec(), v.clone())])
                    .unwrap();
                model.insert(k, v.clone());
                model.insert(b"fixed".to_vec(), v);
            }
        }
        check_stats(&store, &model, &format!("step {step}"));
    }
    assert_eq!(contents(&store), model);
}

/// Several threads, each with its own keys and model, mixing set, delete, update, get,
/// retain (of its own keys), while another optimises, iterates, verifies and reads
/// stats; every model matches at the end, and a killed image too.
#[test]
fn threads_with_optimise_retain_and_iter_match_their_models() {
    let dir = Dir::temporary().unwrap();
    let store = open_with(
        &dir,
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 64 << 10,
        },
    );
    let done = AtomicBool::new(false);
    let models: Vec<HashMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        let store = &store;
        let done = &done;
        let admin = s.spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::SeqCst) {
                store.optimize(OptimizeMode::Aggressive).unwrap();
                for e in store.iter().unwrap() {
                    let (k, v) = e.unwrap();
                    assert_eq!(k[0], v[0], "a value under another thread's key");
                }
                store.stats().unwrap();
                store.verify().unwrap();
                rounds += 1;
            }
            rounds
        });
        let workers: Vec<_> = (0..3u8)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(u64::from(t));
                    let mut model = HashMap::new();
                    for n in 0..6000u32 {
                        let k = vec![t, rng.random_range(0..250u8)];
                        let v = [
                            vec![t],
                            n.to_le_bytes().to_vec(),
                            vec![t; rng.random_range(0..64)],
                        ]
                        .concat();
                        match rng.random_range(0..10u32) {
                            0..4 => {
                                let old = store.set(&k, &v).unwrap().map(|h| h.to_vec());
                                assert_eq!(old, model.insert(k, v));
                            }
                            4..6 => {
                                let old = store.delete(&k).unwrap().map(|h| h.to_vec());
                                assert_eq!(old, model.remove(&k));
                            }
                            6 => {
                                let seen = model.get(&k).cloned();
                                store
                                    .update(&k, |old| {
                                        assert_eq!(old.map(<[u8]>::to_vec), seen);
                                        Some(v.clone())
                                    })
                                    .unwrap();
                                model.insert(k, v);
                            }
                            7 if n % 100 == 0 => {
                                let cut = rng.random::<u8>();
                                store.retain(|k, _| k[0] != t || k[1] > cut).unwrap();
                                model.retain(|k, _| k[1] > cut);
                            }
                            _ => {
                                let got = store.get(&k).unwrap().map(|h| h.to_vec());
                                assert_eq!(got.as_ref(), model.get(&k), "thread {t}");
                            }
                        }
                    }
                    model
                })
            })
            .collect();
        let models = workers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        assert!(admin.join().unwrap() > 0);
        models
    });
    let all: HashMap<_, _> = models.into_iter().flatten().collect();
    assert_eq!(contents(&store), all);
    check_stats(&store, &all, "after the threads");
    let img = HashStore::open(&killed_image(&dir), "kv", HashOptions::default()).unwrap();
    assert_eq!(contents(&img), all);
}

/// Writers and a thread that clears: a read never returns an older value than the
/// thread's last write of the key (only that one, or nothing after a clear), and the
/// store is consistent at the end.
#[test]
fn clears_between_writers_never_resurrect_old_values() {
    let dir = Dir::temporary().unwrap();
    let store = open(&dir);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let store = &store;
        let done = &done;
        s.spawn(move || {
            while !done.load(Ordering::SeqCst) {
                store.clear().unwrap();
                store.optimize(OptimizeMode::Normal).unwrap();
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..3u8)
            .map(|t| {
                s.spawn(move || {
                    let mut last: HashMap<u8, u32> = HashMap::new();
                    for n in 1..3000u32 {
                        let k = [t, (n % 97) as u8];
                        if n % 3 == 0 {
                            store.set(&k, &n.to_le_bytes()).unwrap();
                            last.insert(k[1], n);
                        } else if let Some(v) = store.get(&k).unwrap() {
                            let got = u32::from_le_bytes(v[..4].try_into().unwrap());
                            assert_eq!(Some(&got), last.get(&k[1]), "stale value");
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let now = contents(&store);
    let img = HashStore::open(&killed_image(&dir), "kv", HashOptions::default()).unwrap();
    assert_eq!(contents(&img), now);
}

/// A step of the workload below.
#[derive(Clone, Debug)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Clear,
    Optimize,
    Sync,
    Image,
}

/// The store killed at every flush of a workload with resizes (both ways), automatic
/// and explicit optimisations, clears and syncs, and at points between operations: each
/// image opens (rebuilding) to exactly the contents before or after the operation under
/// way, and between operations to exactly the contents so far.
#[test]
fn killed_at_every_flush_of_resizes_optimisations_and_clears() {
    let dir = Dir::temporary().unwrap();
    let root = dir.path().to_path_buf();
    let mut ops = Vec::new();
    let val = |i: u64, r: u64| format!("v{i}-{r}-{}", "x".repeat((i % 40) as usize)).into_bytes();
    for i in 0..3800 {
        ops.push(Op::Set(key(i), val(i, 0)));
    }
    ops.push(Op::Image);
    for r in 1..2 {
        for i in 0..3800 {
            ops.push(Op::Set(key(i), val(i, r)));
        }
        ops.push(Op::Image);
    }
    for i in 500..3800 {
        ops.push(Op::Delete(key(i)));
    }
    ops.push(Op::Image);
    ops.push(Op::Sync);
    ops.push(Op::Optimize);
    for i in 0..200 {
        ops.push(Op::Set(key(i), val(i, 9)));
    }
    ops.push(Op::Image);
    ops.push(Op::Clear);
    ops.push(Op::Image);
    for i in 0..50 {
        ops.push(Op::Set(key(i), val(i, 10)));
    }
    ops.push(Op::Optimize);
    ops.push(Op::Image);

    let step = Arc::new(AtomicU64::new(0));
    let images: Arc<Mutex<Vec<(u64, Files)>>> = Arc::default();
    let hook = {
        let (step, images, root) = (Arc::clone(&step), Arc::clone(&images), root.clone());
        let seen = Mutex::new(std::collections::HashSet::new());
        faults::install(move |flush| {
            if flush.path().starts_with(&root) {
                // A flush on another thread (a log's look-ahead helper) may snapshot
                // while the workload moves on: an image read across two operations
                // belongs to neither, and is not kept.
                let from = step.load(Ordering::SeqCst);
                let files = loose_snapshot(&root);
                if step.load(Ordering::SeqCst) != from {
                    return None;
                }
                // Many flushes (of directories) change no byte: one image each.
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                for (p, b) in &files {
                    h.update(p.as_os_str().as_encoded_bytes());
                    h.update(&(b.len() as u64).to_le_bytes());
                    h.update(b);
                }
                if seen.lock().unwrap().insert(h.digest128()) {
                    let at = from;
                    images.lock().unwrap().push((at, files));
                }
            }
            None
        })
    };
    let store = open_with(
        &dir,
        HashOptions {
            auto_optimize: true,
            auto_optimize_min_bytes: 128 << 10,
        },
    );
    let mut between = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        step.store(i as u64, Ordering::SeqCst);
        match op {
            Op::Set(k, v) => drop(store.set(k, v).unwrap()),
            Op::Delete(k) => drop(store.delete(k).unwrap()),
            Op::Clear => store.clear().unwrap(),
            Op::Optimize => drop(store.optimize(OptimizeMode::Aggressive).unwrap()),
            Op::Sync => store.sync().unwrap(),
            Op::Image => between.push((i as u64, loose_snapshot(&root))),
        }
    }
    let stats = store.stats().unwrap();
    drop(hook);
    drop(store);
    assert!(stats.data_generation >= 3, "{stats:?}");
    assert!(stats.index_generation >= 3, "{stats:?}");
    let mut images = std::mem::take(&mut *images.lock().unwrap());
    images.sort_by_key(|(s, _)| *s);
    // At most five images of one operation's flushes (each image's open costs a dozen
    // fsyncs): the first, the last and three spread between them.
    let mut kept = Vec::new();
    for chunk in images.chunk_by(|a, b| a.0 == b.0) {
        let n = chunk.len();
        let picks: std::collections::BTreeSet<usize> = if n <= 5 {
            (0..n).collect()
        } else {
            (0..5).map(|i| i * (n - 1) / 4).collect()
        };
        kept.extend(picks.into_iter().map(|i| chunk[i].clone()));
    }
    let images = kept;
    // Each image's step, and whether it is exact (between operations).
    let checks: Vec<_> = images
        .into_iter()
        .map(|(s, f)| (s, false, f))
        .chain(between.into_iter().map(|(s, f)| (s, true, f)))
        .collect();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut checked = 0;
    for (i, op) in ops.iter().enumerate() {
        let imaged = checks.iter().any(|(s, _, _)| *s == i as u64);
        let before = if imaged {
            model.clone()
        } else {
            HashMap::new()
        };
        match op {
            Op::Set(k, v) => drop(model.insert(k.clone(), v.clone())),
            Op::Delete(k) => drop(model.remove(k)),
            Op::Clear => model.clear(),
            _ => {}
        }
        for (_, exact, files) in checks.iter().filter(|(s, _, _)| *s == i as u64) {
            let image = image_of(files);
            let s = HashStore::open(&image, "kv", HashOptions::default())
                .unwrap_or_else(|e| panic!("image at op {i} ({op:?}): open: {e}"));
            let got = contents(&s);
            if *exact {
                assert!(got == model, "image between ops, at {i}: contents differ");
            } else {
                assert!(
                    got == before || got == model,
                    "image at a flush of op {i} ({op:?}): {} entries, expected {} or {}",
                    got.len(),
                    before.len(),
                    model.len()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} images");
}
