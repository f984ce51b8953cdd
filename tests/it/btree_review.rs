//! Review of BTreeStore (issue 11) through its public API. The tests at the top are
//! regressions for bugs the review found (each says what is wrong); the rest are probes
//! that passed, kept because they are cheap: edge keys and bounds against a model, the
//! inline/out-of-line boundary, trees deleted and re-created in one transaction, bulk
//! transactions, snapshots across compaction (and the old generation's files), limits,
//! accounting, and readers beside a writer.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use accretion::faults::{self, Flush, HookGuard};
use accretion::{BTreeOptions, BTreeStore, Dir, Error};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn open(path: &Path) -> (Dir, BTreeStore) {
    let dir = Dir::open(path).unwrap();
    let store = BTreeStore::open(&dir, "db", BTreeOptions::default()).unwrap();
    (dir, store)
}

fn contents(store: &BTreeStore, tree: &str) -> Map {
    crate::common::btree_contents(&store.begin_read(), tree).unwrap()
}

/// Fails every flush under `path` (EIO) while `on` is set.
fn fail_flushes_under(path: &Path, on: &Arc<AtomicBool>) -> HookGuard {
    let (path, on) = (path.to_path_buf(), Arc::clone(on));
    faults::install(move |f| {
        (f.path().starts_with(&path) && on.load(Ordering::SeqCst))
            .then(|| std::io::Error::from_raw_os_error(5))
    })
}

/// A 512-byte key whose first byte is `x`.
fn long(x: u8) -> Vec<u8> {
    let mut k = vec![0u8; 512];
    k[0] = x;
    k
}

/// 26 ascending keys whose leaf cells take 1000 bytes each (the 25th a one-byte key),
/// then one more in the second-to-last leaf: a root of 9 leaves whose 8 separators are
/// seven 512-byte keys and the one-byte key (3697 of 4096 bytes); the last leaf holds
/// `[50]` and `long(52)`, the one before it 4 cells.
fn load_overflow_setup(store: &BTreeStore) -> Map {
    let mut m = Map::new();
    let mut txn = store.begin_write().unwrap();
    let mut t = txn.default_tree().unwrap();
    for i in 1..=26u8 {
        let (k, v) = if i == 25 {
            (vec![50], vec![1u8; 992])
        } else {
            (long(2 * i), vec![1u8; 481])
        };
        t.insert(&k, &v).unwrap();
        m.insert(k, v);
    }
    t.insert(&long(49), &[1u8; 481]).unwrap();
    m.insert(long(49), vec![1u8; 481]);
    txn.commit().unwrap();
    store.verify().unwrap();
    m
}

// ---------------------------------------------------------------------------------------
// Regressions: these fail now.

/// Regression (found by review, fixed): a removal can overflow a branch page. `tree::rebalance` merges an underfull leaf
/// with its sibling and, when the two do not fit a page, splits them again: the new
/// separator (the right half's first key, up to 512 bytes) can be longer than the one it
/// replaces (here 1 byte), so the parent grows by up to 511 bytes. `remove_at` never
/// checks its branch for overflow (`insert_at` does) and `tree::remove` never splits the
/// root, so the commit's `freeze` -> `page::encode_branch` panics (subtract with overflow
/// in `Cells::push`). The commit record was appended before the panic, so every later
/// open replays it and panics the same way: the store can no longer be opened.
#[test]
fn removing_a_key_never_overflows_its_parent_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model;
    let committed = {
        let (_dir, store) = open(tmp.path());
        model = load_overflow_setup(&store);
        // The last leaf falls to `[50]` alone (1016 bytes), merges with the 4-cell leaf
        // before it, and splits at `long(49)`, which replaces `[50]` in the root.
        model.remove(&long(52));
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut txn = store.begin_write().unwrap();
            txn.default_tree().unwrap().remove(&long(52)).unwrap();
            txn.commit().unwrap();
            store.verify().unwrap();
            assert_eq!(contents(&store, ""), model);
        }))
        .is_ok()
    };
    let reopened = std::panic::catch_unwind(|| {
        let (_dir, store) = open(tmp.path());
        store.verify().unwrap();
        contents(&store, "")
    });
    assert!(committed, "the removal's commit panicked");
    assert_eq!(
        reopened.ok(),
        Some(model),
        "the store no longer opens (replay panics)"
    );
}

/// Regression (found by review, fixed): `tree::split_branch` splits by bytes with the middle separator moving up, so the
/// right half can hold less than the quarter page every non-root node must hold
/// (ARCHITECTURE: "an overfull node splits into halves of at least 3/8 page"). The left
/// half may end with a 524-byte cell past the middle, and the separator that moves up
/// takes another 524: here the right half keeps 1021 bytes of 4096, and `verify()`
/// reports a healthy store as `Corrupted` ("under the minimum fill").
#[test]
fn a_branch_split_leaves_both_halves_at_least_a_quarter_full() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    let mut txn = store.begin_write().unwrap();
    let mut t = txn.default_tree().unwrap();
    // Ascending keys, 1000-byte leaf cells: every third insert splits the last leaf and
    // its 4th key becomes a separator. Separators 137 and 138 are 512 bytes, the others
    // 3: the root overflows at the 205th separator and splits after the 138th.
    for i in 1..=617u32 {
        let mut k = i.to_be_bytes()[1..].to_vec();
        if i == 3 * 137 + 1 || i == 3 * 138 + 1 {
            k.resize(512, 0);
        }
        t.insert(&k, &vec![1u8; 1000 - 7 - k.len()]).unwrap();
    }
    txn.commit().unwrap();
    store.verify().unwrap();
}

/// Regression (found by review, fixed): `WriteTxn::finish` returns before anything else when the transaction changed
/// nothing, so `commit()` (durable) of such a transaction does not flush the log: the
/// unsynced commits before it stay exposed to a power loss, though the issue says a
/// non-durable commit is "made durable by a later durable commit or sync".
#[test]
fn a_durable_commit_that_changes_nothing_still_flushes_earlier_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    store.insert(b"k", b"unsynced").unwrap();
    let flushes = Arc::new(AtomicU64::new(0));
    let _hook = {
        let (root, flushes) = (tmp.path().to_path_buf(), Arc::clone(&flushes));
        faults::install(move |f| {
            if matches!(f, Flush::Range { .. }) && f.path().starts_with(&root) {
                flushes.fetch_add(1, Ordering::SeqCst);
            }
            None
        })
    };
    let mut txn = store.begin_write().unwrap();
    assert_eq!(txn.default_tree().unwrap().remove(b"absent").unwrap(), None);
    txn.commit().unwrap();
    assert!(
        flushes.load(Ordering::SeqCst) > 0,
        "the durable commit flushed nothing: the unsynced insert before it is not durable"
    );
}

/// Regression (found by review, fixed): when the flush of a durable commit fails, `finish` returns the error before
/// publishing, and the docs say "then nothing of the transaction is visible"; but the
/// commit record is already in the log (in the page cache), so the next open replays
/// it: the transaction that failed (and that a caller would retry) appears after a
/// reopen. What the store shows after the error must be what it shows after reopening
/// (LogStore had the same bug: `faults.rs`, "applied" in its error).
#[test]
fn a_commit_whose_flush_failed_reads_the_same_before_and_after_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = {
        let (_dir, store) = open(tmp.path());
        store.insert(b"a", b"1").unwrap();
        let on = Arc::new(AtomicBool::new(true));
        let hook = fail_flushes_under(tmp.path(), &on);
        let mut txn = store.begin_write().unwrap();
        txn.default_tree().unwrap().insert(b"b", b"2").unwrap();
        assert!(matches!(txn.commit(), Err(Error::Io { .. })));
        on.store(false, Ordering::SeqCst);
        drop(hook);
        store.get(b"b").unwrap()
    };
    let (_dir, store) = open(tmp.path());
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        store.get(b"b").unwrap(),
        seen,
        "a failed commit that read as not applied is applied after a reopen"
    );
}

/// Regression (found by review, fixed): a bulk transaction (over 1 MiB of operations) commits by a checkpoint whose
/// record carries sequence `seq + 1`. If the state's sync then fails, `finish` returns the
/// error without publishing, the log is not poisoned, and the store takes more commits,
/// the next one numbered `seq + 1` again. The next open adopts the bulk checkpoint found
/// in the log (`seq + 1`), then refuses the next commit record ("commit sequence 2 where
/// 3 was due"): the store no longer opens, and the commits made (and synced) after the
/// failure are lost with it. The docs say the store refuses writes after a failed
/// checkpoint until reopened; it does not.
#[test]
fn a_bulk_commit_whose_state_sync_fails_does_not_break_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let written_after = {
        let (_dir, store) = open(tmp.path());
        store.insert(b"a", b"1").unwrap();
        let on = Arc::new(AtomicBool::new(true));
        let hook = fail_flushes_under(&tmp.path().join("db/state"), &on);
        let mut txn = store.begin_write().unwrap();
        {
            let mut t = txn.default_tree().unwrap();
            for i in 0..3000u32 {
                t.insert(&i.to_be_bytes(), &[1u8; 400]).unwrap();
            }
        }
        assert!(txn.commit_unsynced().is_err());
        on.store(false, Ordering::SeqCst);
        drop(hook);
        store.insert(b"b", b"2").is_ok() && store.sync().is_ok()
    };
    let dir = Dir::open(tmp.path()).unwrap();
    let store = BTreeStore::open(&dir, "db", BTreeOptions::default())
        .expect("the store no longer opens after a failed bulk commit");
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    if written_after {
        assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    }
}

/// Regression (found by review, fixed): `BTreeStore::checkpoint` and `WriteTxn::commit` say that after a
/// failed checkpoint "the store then refuses writes until reopened"; it takes them (only
/// the next checkpoint fails). The bulk case above shows why it matters.
#[test]
fn after_a_failed_checkpoint_the_store_refuses_writes_until_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    store.insert(b"a", b"1").unwrap();
    let on = Arc::new(AtomicBool::new(true));
    let hook = fail_flushes_under(&tmp.path().join("db/state"), &on);
    assert!(store.checkpoint().is_err());
    on.store(false, Ordering::SeqCst);
    drop(hook);
    assert!(
        store.insert(b"b", b"2").is_err(),
        "a write after a failed checkpoint was taken"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// Regression (found by review, fixed): `WriteTxn::remove` changes the tree and logs the removal before `release` reads
/// the old out-of-line value (checking its checksum) to return it. With that value
/// damaged, `remove` returns `Corrupted`, yet the removal stays applied, the transaction
/// is not marked failed, and `commit` succeeds with the key gone: an operation that
/// returned an error took effect. (`insert` over such a value and `remove_range` do the
/// same.)
#[test]
fn a_remove_that_returns_an_error_is_not_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let pattern = vec![0xABu8; 5000];
    {
        let (_dir, store) = open(tmp.path());
        store.insert(b"big", &pattern).unwrap();
        store.checkpoint().unwrap();
    }
    let data = tmp.path().join("db/g0/data-00.acc");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = find(&bytes, &pattern);
    bytes[at + 100] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    let (_dir, store) = open(tmp.path());
    let mut txn = store.begin_write().unwrap();
    assert!(matches!(
        txn.default_tree().unwrap().remove(b"big"),
        Err(Error::Corrupted { .. })
    ));
    // The transaction failed: it refuses further operations and its commit, so the
    // removal that returned an error is never committed.
    assert!(matches!(
        txn.default_tree(),
        Err(Error::TransactionFailed { .. })
    ));
    assert!(matches!(txn.commit(), Err(Error::TransactionFailed { .. })));
    assert!(matches!(store.get(b"big"), Err(Error::Corrupted { .. })));
}

/// Regression (found by review, fixed): a store whose state names generation 0 with no checkpoint yet (every store
/// before its first checkpoint) opens as an empty store when `db/g0` is gone:
/// `Generation::open` creates a new empty log, and the synced commits are silently lost.
/// The state says the store exists; its log missing is `Corrupted` (as a missing lane
/// or length file is, and as a missing segment is for LogStore).
#[test]
fn a_store_whose_generation_log_is_gone_is_refused_not_opened_empty() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (_dir, store) = open(tmp.path());
        store.insert(b"k", b"v").unwrap();
        store.sync().unwrap();
    }
    std::fs::remove_dir_all(tmp.path().join("db/g0")).unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let r = BTreeStore::open(&dir, "db", BTreeOptions::default());
    assert!(
        matches!(r, Err(Error::Corrupted { .. })),
        "opened: len {:?}",
        r.map(|s| s.len().unwrap())
    );
}

// ---------------------------------------------------------------------------------------
// Probes that passed.

/// Collects a range forward (0), backward (1), or from both ends in turn (2).
fn collect_mode(mut it: accretion::Range<'_>, mode: u8) -> Pairs {
    let own = |e: accretion::Result<(&[u8], &[u8])>| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    };
    match mode {
        0 => it.map(own).collect(),
        1 => {
            let mut v: Pairs = it.rev().map(own).collect();
            v.reverse();
            v
        }
        _ => {
            let (mut front, mut back) = (Vec::new(), Vec::new());
            let mut from_front = false;
            loop {
                from_front = !from_front;
                let e = if from_front {
                    it.next()
                } else {
                    it.next_back()
                };
                let Some(e) = e else { break };
                if from_front {
                    front.push(own(e));
                } else {
                    back.push(own(e));
                }
            }
            back.reverse();
            front.extend(back);
            front
        }
    }
}

fn in_bounds(k: &[u8], s: Bound<&[u8]>, e: Bound<&[u8]>) -> bool {
    (match s {
        Bound::Unbounded => true,
        Bound::Included(x) => k >= x,
        Bound::Excluded(x) => k > x,
    }) && (match e {
        Bound::Unbounded => true,
        Bound::Included(x) => k <= x,
        Bound::Excluded(x) => k < x,
    })
}

/// Every pair of bounds built from `probes` (inverted and empty ones included), every
/// prefix, `above` and `below`, against the model.
/// Reads a range in one of several modes (forward, backward, from both ends).
type RangeReader<'a> = dyn Fn(Bound<&[u8]>, Bound<&[u8]>, u8) -> Pairs + 'a;

fn check_ranges(t: &RangeReader<'_>, m: &Map, probes: &[Vec<u8>]) {
    let mut bounds = vec![Bound::Unbounded];
    for p in probes {
        bounds.push(Bound::Included(&p[..]));
        bounds.push(Bound::Excluded(&p[..]));
    }
    for s in &bounds {
        for e in &bounds {
            let want: Pairs = m
                .iter()
                .filter(|(k, _)| in_bounds(k, *s, *e))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for mode in 0..3 {
                assert_eq!(t(*s, *e, mode), want, "{s:?}..{e:?} mode {mode}");
            }
        }
    }
}

#[test]
fn edge_keys_bounds_and_prefixes_match_a_model_in_and_after_a_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    let mut keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0xFF],
        vec![1],
        vec![0xFE, 0xFF],
        vec![0xFF],
        vec![0xFF, 0],
        vec![0xFF, 0xFF],
        vec![0xFF; 511],
        vec![0xFF; 512],
        vec![0; 512],
    ];
    for i in 0..600u32 {
        let mut k = vec![0xFF, (i >> 8) as u8, i as u8];
        if i % 5 == 0 {
            k.resize(512, 0xFF);
        }
        keys.push(k);
    }
    let probes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0xFF; 512],
        vec![0xFF, 1, 0x20],
        vec![0x80],
    ];
    let mut m = Map::new();
    let mut txn = store.begin_write().unwrap();
    {
        let mut t = txn.default_tree().unwrap();
        for (i, k) in keys.iter().enumerate() {
            let v = vec![i as u8; i % 1100];
            t.insert(k, &v).unwrap();
            m.insert(k.clone(), v);
        }
        check_ranges(
            &|s, e, mode| collect_mode(t.range((s, e)).unwrap(), mode),
            &m,
            &probes,
        );
    }
    txn.commit_unsynced().unwrap();
    store.verify().unwrap();
    {
        let r = store.begin_read();
        let t = r.default_tree().unwrap();
        check_ranges(
            &|s, e, mode| collect_mode(t.range((s, e)).unwrap(), mode),
            &m,
            &probes,
        );
        for p in &probes {
            let want: Pairs = m
                .iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for mode in 0..3 {
                assert_eq!(collect_mode(t.prefix(p).unwrap(), mode), want, "{p:?}");
            }
            let above = m
                .range::<[u8], _>((Bound::Excluded(&p[..]), Bound::Unbounded))
                .next();
            assert_eq!(
                t.above(p).unwrap().map(|(k, _)| k.to_vec()),
                above.map(|(k, _)| k.clone())
            );
            let below = m
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&p[..])))
                .next_back();
            assert_eq!(
                t.below(p).unwrap().map(|(k, _)| k.to_vec()),
                below.map(|(k, _)| k.clone())
            );
        }
    }
    // Inverted and empty bounds remove nothing.
    let mut txn = store.begin_write().unwrap();
    {
        let mut t = txn.default_tree().unwrap();
        let ff: &[u8] = &[0xFF];
        assert_eq!(t.remove_range(ff..&[0u8][..]).unwrap(), 0);
        assert_eq!(
            t.remove_range((Bound::Excluded(ff), Bound::Excluded(ff)))
                .unwrap(),
            0
        );
        assert_eq!(
            t.remove_range((Bound::Excluded(ff), Bound::Included(ff)))
                .unwrap(),
            0
        );
        assert_eq!(t.remove_range(ff..=ff).unwrap(), 1);
        m.remove(ff);
        let from: &[u8] = &[0xFF, 1];
        let doomed: Vec<Vec<u8>> = m
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(t.remove_range(from..).unwrap(), doomed.len() as u64);
        for k in doomed {
            m.remove(&k);
        }
        assert_eq!(t.len().unwrap(), m.len() as u64);
    }
    txn.commit_unsynced().unwrap();
    assert_eq!(contents(&store, ""), m);
    store.verify().unwrap();
}

#[test]
fn values_at_the_inline_boundary_and_replaced_across_it_survive_reopen_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Map::new();
    {
        let (_dir, store) = open(tmp.path());
        // A cell of (4096 - 16) / 4 = 1020 bytes stays inline, 1021 goes out of line.
        for (k, v, out) in [
            (vec![], 1013, false),
            (vec![1], 1013, true),
            (vec![2; 512], 501, false),
            (vec![3; 512], 502, true),
        ] {
            let before = store.verify().unwrap().out_of_line_values;
            store.insert(&k, &vec![5u8; v]).unwrap();
            m.insert(k.clone(), vec![5u8; v]);
            let after = store.verify().unwrap().out_of_line_values;
            assert_eq!(after - before, u64::from(out), "key {} value {v}", k.len());
        }
        for (k, v) in [
            (vec![], 5000),
            (vec![1], 10),
            (vec![2; 512], 502),
            (vec![3; 512], 0),
            (vec![], 1013),
            (vec![1], 1014),
        ] {
            let old = store.insert(&k, &vec![6u8; v]).unwrap();
            assert_eq!(old.as_ref(), m.get(&k));
            m.insert(k, vec![6u8; v]);
            store.verify().unwrap();
        }
        assert_eq!(contents(&store, ""), m);
    }
    let (_dir, store) = open(tmp.path());
    assert_eq!(contents(&store, ""), m);
    store.compact().unwrap();
    assert_eq!(contents(&store, ""), m);
    assert_eq!(store.verify().unwrap().out_of_line_values, 2);
}

#[test]
fn trees_deleted_and_recreated_in_one_transaction_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<String, Map> = BTreeMap::new();
    model.insert(String::new(), Map::new());
    model.insert(
        "a".into(),
        [
            (b"3".to_vec(), b"new".to_vec()),
            (b"4".to_vec(), b"4".to_vec()),
        ]
        .into(),
    );
    model.insert("b".into(), [(b"y".to_vec(), b"y".to_vec())].into());
    model.insert("c".into(), Map::new());
    {
        let (_dir, store) = open(tmp.path());
        let mut txn = store.begin_write().unwrap();
        txn.open_tree("a").unwrap().insert(b"1", b"old").unwrap();
        txn.open_tree("b")
            .unwrap()
            .insert(b"x", &[9u8; 3000])
            .unwrap();
        txn.commit().unwrap();
        let mut txn = store.begin_write().unwrap();
        txn.open_tree("a").unwrap().insert(b"2", b"old").unwrap();
        assert!(txn.delete_tree("a").unwrap());
        assert_eq!(txn.trees(), ["b"]);
        {
            let mut a = txn.open_tree("a").unwrap();
            assert_eq!(a.len().unwrap(), 0);
            assert_eq!(a.get(b"1").unwrap(), None);
            a.insert(b"3", b"new").unwrap();
        }
        txn.open_tree("c").unwrap().insert(b"c", b"c").unwrap();
        assert!(txn.delete_tree("c").unwrap());
        txn.open_tree("c").unwrap();
        assert!(txn.delete_tree("b").unwrap());
        txn.open_tree("b").unwrap().insert(b"y", b"y").unwrap();
        txn.open_tree("a").unwrap().insert(b"4", b"4").unwrap();
        assert_eq!(txn.trees(), ["a", "b", "c"]);
        txn.commit_unsynced().unwrap();
        for (n, m) in &model {
            assert_eq!(&contents(&store, n), m, "{n:?}");
        }
    }
    let (_dir, store) = open(tmp.path());
    assert_eq!(store.trees(), ["a", "b", "c"]);
    store.verify().unwrap();
    store.compact().unwrap();
    for (n, m) in &model {
        assert_eq!(&contents(&store, n), m, "{n:?}");
    }
    assert_eq!(store.stats().trees, 4);
}

#[test]
fn bulk_transactions_abort_commit_and_reopen_with_unsynced_commits_around_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = Map::new();
    {
        let (_dir, store) = open(tmp.path());
        store.insert(b"before", b"unsynced").unwrap();
        model.insert(b"before".to_vec(), b"unsynced".to_vec());
        let mut txn = store.begin_write().unwrap();
        let mut t = txn.default_tree().unwrap();
        for i in 0..3000u32 {
            t.insert(&i.to_be_bytes(), &[1u8; 500]).unwrap();
        }
        assert_eq!(t.len().unwrap(), 3001);
        txn.abort();
        assert_eq!(contents(&store, ""), model);
        let mut txn = store.begin_write().unwrap();
        {
            let mut t = txn.default_tree().unwrap();
            for i in 0..3000u32 {
                let v = vec![(i % 251) as u8; 400 + (i % 7) as usize * 300];
                t.insert(&i.to_be_bytes(), &v).unwrap();
                model.insert(i.to_be_bytes().to_vec(), v);
            }
            let (lo, hi) = (100u32.to_be_bytes(), 200u32.to_be_bytes());
            assert_eq!(t.remove_range(&lo[..]..&hi[..]).unwrap(), 100);
            for i in 100..200u32 {
                model.remove(&i.to_be_bytes()[..]);
            }
        }
        txn.open_tree("tmp").unwrap().insert(b"k", b"v").unwrap();
        txn.delete_tree("tmp").unwrap();
        txn.open_tree("kept").unwrap().insert(b"k", b"v").unwrap();
        txn.commit_unsynced().unwrap();
        store.insert(b"after", b"unsynced").unwrap();
        model.insert(b"after".to_vec(), b"unsynced".to_vec());
        assert_eq!(contents(&store, ""), model);
        store.verify().unwrap();
    }
    let (_dir, store) = open(tmp.path());
    assert_eq!(contents(&store, ""), model);
    assert_eq!(store.trees(), ["kept"]);
    store.verify().unwrap();
}

#[test]
fn a_snapshot_keeps_its_generation_until_dropped_and_then_its_files_go() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    for i in 0..2000u32 {
        let v = if i % 100 == 0 {
            vec![3u8; 5000]
        } else {
            b"v".to_vec()
        };
        store.insert(&i.to_be_bytes(), &v).unwrap();
    }
    let before = contents(&store, "");
    let snapshot = store.begin_read();
    assert_eq!(store.stats().snapshots, 1);
    let t = snapshot.default_tree().unwrap();
    let v0 = t.get(&0u32.to_be_bytes()).unwrap().unwrap();
    store.checkpoint().unwrap();
    for i in 0..2000u32 {
        store.remove(&i.to_be_bytes()).unwrap();
    }
    store.compact().unwrap();
    store.insert(b"new", b"x").unwrap();
    store.compact().unwrap();
    assert!(tmp.path().join("db/g0").exists());
    assert!(!tmp.path().join("db/g1").exists(), "g1 is held by nobody");
    let again: Map = t
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(again, before);
    assert_eq!(v0, &[3u8; 5000][..]);
    drop(snapshot);
    assert_eq!(store.stats().snapshots, 0);
    assert!(!tmp.path().join("db/g0").exists());
    assert!(tmp.path().join("db/g2").exists());
    assert_eq!(contents(&store, "").len(), 1);
}

#[test]
fn stats_after_a_checkpoint_agree_with_verify_and_with_a_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    let mut x = 12345u64;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    for round in 0..30 {
        let mut txn = store.begin_write().unwrap();
        for name in ["", "a", "b"] {
            let mut t = txn.open_tree(name).unwrap();
            for _ in 0..50 {
                let k = (next(2000) as u32).to_be_bytes();
                match next(10) {
                    0..=5 => {
                        let len = if next(10) == 0 { 3000 } else { next(300) };
                        t.insert(&k, &vec![1u8; len as usize]).unwrap();
                    }
                    6..=8 => {
                        t.remove(&k).unwrap();
                    }
                    _ => {
                        let e = (next(2000) as u32).to_be_bytes();
                        t.remove_range(&k[..]..&e[..]).unwrap();
                    }
                }
            }
        }
        if round % 7 == 3 {
            txn.delete_tree("b").unwrap();
        }
        txn.commit_unsynced().unwrap();
        if round % 5 == 0 {
            store.checkpoint().unwrap();
        }
    }
    store.checkpoint().unwrap();
    let (a, va) = (store.stats(), store.verify().unwrap());
    store.compact().unwrap();
    let (b, vb) = (store.stats(), store.verify().unwrap());
    assert_eq!(va, vb);
    assert_eq!((a.pages, b.pages), (va.pages, vb.pages));
    assert_eq!(a.live_bytes, b.live_bytes);
    assert_eq!((a.pages_in_memory, b.generation), (0, 1));
}

#[test]
fn limits_refuse_and_leave_the_transaction_usable() {
    use accretion::limits::{BTREE_KEY_LEN_BYTES_MAX, BTREE_TREES_MAX};
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    store.insert(b"a", b"1").unwrap();
    let mut txn = store.begin_write().unwrap();
    {
        let mut t = txn.default_tree().unwrap();
        t.insert(b"b", b"2").unwrap();
        let long_key = vec![1u8; BTREE_KEY_LEN_BYTES_MAX + 1];
        assert!(matches!(
            t.insert(&long_key, b"x"),
            Err(Error::LimitExceeded { .. })
        ));
        t.insert(&long_key[1..], b"x").unwrap();
        assert_eq!(t.len().unwrap(), 3);
    }
    assert!(matches!(
        txn.open_tree(&"n".repeat(256)),
        Err(Error::InvalidName { .. })
    ));
    txn.open_tree(&"n".repeat(255)).unwrap();
    for i in 0..BTREE_TREES_MAX - 2 {
        txn.open_tree(&format!("t{i}")).unwrap();
    }
    assert!(matches!(
        txn.open_tree("one too many"),
        Err(Error::LimitExceeded { .. })
    ));
    txn.delete_tree("t0").unwrap();
    txn.open_tree("one too many").unwrap();
    txn.commit_unsynced().unwrap();
    assert_eq!(store.stats().trees as usize, BTREE_TREES_MAX);
    assert_eq!(store.len().unwrap(), 3);
}

#[test]
fn readers_are_not_blocked_by_an_open_write_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, store) = open(tmp.path());
    store.insert(b"k", b"v").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let writer = store.clone();
        s.spawn(move || {
            let mut txn = writer.begin_write().unwrap();
            txn.default_tree().unwrap().insert(b"k", b"w").unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            txn.commit().unwrap();
        });
        rx.recv().unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
        let r = store.begin_read();
        assert_eq!(r.default_tree().unwrap().get(b"k").unwrap().unwrap(), b"v");
        let _ = (store.stats(), store.trees());
        assert!(t0.elapsed() < std::time::Duration::from_millis(150));
    });
    let txn = store.begin_write().unwrap();
    assert!(matches!(store.checkpoint(), Err(Error::Reentrant { .. })));
    assert!(matches!(store.compact(), Err(Error::Reentrant { .. })));
    assert!(matches!(store.remove(b"k"), Err(Error::Reentrant { .. })));
    drop(txn);
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"w");
}

#[test]
fn a_store_whose_state_is_gone_beside_its_logs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (_dir, store) = open(tmp.path());
        store.insert(b"k", b"v").unwrap();
    }
    std::fs::remove_dir_all(tmp.path().join("db/state")).unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    assert!(matches!(
        BTreeStore::open(&dir, "db", BTreeOptions::default()),
        Err(Error::Corrupted { .. })
    ));
}
