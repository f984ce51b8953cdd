//! Review probes of the catalog (`accretion::catalog`) and the common face
//! (`accretion::face`): names nested in and around other structures, damaged and stray
//! kind records, primitives opened at a store's name, opens racing each other and a
//! listing; the B-tree's batched ranges at batch boundaries, from both ends, with odd
//! bounds, odd keys and writers between batches, each against a BTreeMap.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use accretion::catalog::{self, Kind};
use accretion::face::{Figure, OrderedStore, Store};
use accretion::{
    AppendOnly, BTreeOptions, BTreeStore, Dir, Error, HashOptions, HashStore, Journal, LogOptions,
    LogStore, OnceMap, ShardedOptions, ShardedStore,
};

use crate::catalog::open_as;
use crate::common::Seeded;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Kinds that record themselves (`kind.acc`), and the primitives.
fn composites() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| !k.is_primitive())
}

fn primitives() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| k.is_primitive())
}

/// Every directory and file below `root` (the lock file aside), with a file's bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else if p.file_name().is_some_and(|n| n != "accretion.lock") {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn listed(dir: &Dir) -> BTreeMap<String, Kind> {
    catalog::list(dir)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.kind))
        .collect()
}

// ---------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------

/// A structure opened at a name inside a store's directory must either be refused, or
/// be listed and survive the store's next open. It is neither: a OnceMap `kv/g7` under a
/// LogStore `kv` (and a HashStore `db/g5` under a BTreeStore `db`) opens, `list` does not
/// show it (it stops at the store), and the store's next open deletes it as a stale
/// generation; an AppendOnly `kv2/log-99` holding synced data makes the LogStore `kv2`
/// refuse to open at all (`Corrupted`).
#[test]
fn a_structure_nested_in_a_store_is_refused_or_kept() {
    let dir = Dir::temporary().unwrap();
    let mut problems = Vec::new();
    for (store, nested, nested_kind) in [
        ("kv", "kv/g7", Kind::OnceMap),
        ("db", "db/g5", Kind::HashStore),
        // (An AppendOnly `kv2/log-99` inside a LogStore `kv2` is not refused yet: a
        // primitive's open does not ask the catalog. Open; see the session note.)
    ] {
        let store_kind = if store == "db" {
            Kind::BTreeStore
        } else {
            Kind::LogStore
        };
        open_as(&dir, store, store_kind).unwrap();
        // Opened, written and synced: `Ok(false)` if it was refused.
        let made = match nested_kind {
            Kind::OnceMap => OnceMap::open(&dir, nested).map(|m| {
                m.insert(b"user", b"data").unwrap();
                m.sync().unwrap();
            }),
            Kind::HashStore => HashStore::open(&dir, nested, HashOptions::default()).map(|h| {
                Store::put(&h, b"user", b"data").unwrap();
                Store::sync(&h).unwrap();
            }),
            _ => AppendOnly::open(&dir, nested).map(|a| {
                a.append(b"user data").unwrap();
                a.sync().unwrap();
            }),
        };
        if let Err(e) = made {
            assert!(matches!(e, Error::Incompatible { .. }), "{nested}: {e}");
            continue;
        }
        let found = listed(&dir);
        if found.get(nested) != Some(&nested_kind) {
            problems.push(format!(
                "{nested_kind} at {nested} (inside {store_kind} {store}) not listed: {found:?}"
            ));
        }
        if let Err(e) = open_as(&dir, store, store_kind) {
            problems.push(format!(
                "{store_kind} {store} no longer opens with {nested} inside: {e}"
            ));
            continue;
        }
        let survived = match nested_kind {
            Kind::OnceMap => OnceMap::open(&dir, nested)
                .unwrap()
                .get(b"user")
                .unwrap()
                .is_some(),
            Kind::HashStore => HashStore::open(&dir, nested, HashOptions::default())
                .unwrap()
                .get(b"user")
                .unwrap()
                .is_some(),
            _ => !AppendOnly::open(&dir, nested).unwrap().is_empty(),
        };
        if !survived {
            problems.push(format!(
                "{store_kind} {store}'s open deleted the {nested_kind} at {nested}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A store opened over a plain directory that already holds the user's structures
/// (`p/a`, `p/b`) hides them from `list` (which stops at the store), so they must not be
/// allowed to end up inside it: either the open is refused, or the list still shows
/// them.
#[test]
fn a_store_opened_over_existing_structures_keeps_them_visible() {
    let mut problems = Vec::new();
    for kind in [
        Kind::HashStore,
        Kind::BTreeStore,
        Kind::LogStore,
        Kind::ShardedStore,
        Kind::OnceMap,
    ] {
        let dir = Dir::temporary().unwrap();
        AppendOnly::open(&dir, "p/a").unwrap().append(b"x").unwrap();
        Journal::<u64>::open(&dir, "p/b").unwrap();
        let before = tree(dir.path());
        match open_as(&dir, "p", kind) {
            Err(e) => {
                assert!(matches!(e, Error::Incompatible { .. }), "{kind}: {e}");
                assert_eq!(tree(dir.path()), before, "{kind}: a refused open wrote");
            }
            Ok(()) => {
                let found = listed(&dir);
                if !(found.contains_key("p/a") && found.contains_key("p/b")) {
                    problems.push(format!(
                        "{kind} opened over p/a and p/b, which the list no longer shows: {found:?}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Names that are prefixes of one another, or differ only in `-`/`_`, are each their
/// own structure; a plain level between is no structure; `identify` of each agrees with
/// `list`.
#[test]
fn prefix_names_are_kept_apart() {
    let dir = Dir::temporary().unwrap();
    let names = [
        ("a", Kind::HashStore),
        ("ab", Kind::BTreeStore),
        ("a-b", Kind::LogStore),
        ("a_b", Kind::OnceMap),
        ("b/a", Kind::ShardedStore),
        ("b/ab", Kind::Content),
        ("b/a-", Kind::AppendOnly),
        ("B", Kind::Journal),
    ];
    for (name, kind) in names {
        open_as(&dir, name, kind).unwrap();
    }
    let want: BTreeMap<String, Kind> = names.iter().map(|&(n, k)| (n.to_owned(), k)).collect();
    assert_eq!(listed(&dir), want);
    for (name, kind) in names {
        assert_eq!(catalog::identify(&dir, name).unwrap().unwrap().kind, kind);
        for other in composites().filter(|&k| k != kind) {
            if kind == Kind::OnceMap && other == Kind::Content {
                continue;
            }
            assert!(open_as(&dir, name, other).is_err(), "{name} as {other}");
        }
    }
    assert_eq!(catalog::identify(&dir, "b").unwrap(), None);
    // Sorted by name, as `list` promises.
    let names: Vec<String> = catalog::list(&dir)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

/// A directory with stray user files and directories (dots, spaces, non-UTF-8 names,
/// empty directories, a file named like a structure, a symbolic link) lists exactly its
/// structures and never fails.
#[test]
fn listing_ignores_stray_files_and_directories() {
    use std::os::unix::ffi::OsStrExt;
    let dir = Dir::temporary().unwrap();
    HashStore::open(&dir, "kv", HashOptions::default()).unwrap();
    AppendOnly::open(&dir, "group/buf").unwrap();
    let root = dir.path();
    std::fs::write(root.join("notes.txt"), b"hi").unwrap();
    std::fs::write(root.join("plainfile"), b"hi").unwrap();
    std::fs::create_dir_all(root.join("empty/deeper")).unwrap();
    std::fs::create_dir_all(root.join("with.dot")).unwrap();
    std::fs::create_dir_all(root.join("with space")).unwrap();
    std::fs::create_dir_all(root.join(std::ffi::OsStr::from_bytes(b"bad\xff"))).unwrap();
    std::fs::write(root.join("kv/notes.txt"), b"user file in a store").unwrap();
    std::fs::write(root.join("group/kind.acc.tmp"), b"half").unwrap();
    std::os::unix::fs::symlink(root.join("kv"), root.join("link")).unwrap();
    let want: BTreeMap<String, Kind> = [("group/buf", Kind::AppendOnly), ("kv", Kind::HashStore)]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
    assert_eq!(listed(&dir), want);
    assert_eq!(catalog::identify(&dir, "empty").unwrap(), None);
    assert_eq!(catalog::identify(&dir, "empty/deeper").unwrap(), None);
    assert!(matches!(
        catalog::identify(&dir, "with.dot"),
        Err(Error::InvalidName { .. })
    ));
}

/// A record removed is recognised from the files (unrecorded), written again by the
/// next open; a `kind.acc.tmp` a crash left beside it (or instead of it) is harmless.
#[test]
fn a_lost_record_is_recognised_and_written_again() {
    for kind in composites() {
        let dir = Dir::temporary().unwrap();
        open_as(&dir, "s", kind).unwrap();
        let record = dir.path().join("s/kind.acc");
        let bytes = std::fs::read(&record).unwrap();
        assert_eq!(bytes.len(), 64, "{kind}");
        std::fs::remove_file(&record).unwrap();
        // What a crash between the temporary file's write and its rename leaves.
        std::fs::write(dir.path().join("s/kind.acc.tmp"), &bytes[..20]).unwrap();
        let s = catalog::identify(&dir, "s").unwrap().unwrap_or_else(|| {
            panic!(
                "{kind} without its record is not recognised: {:?}",
                tree(dir.path()).keys().collect::<Vec<_>>()
            )
        });
        // A Content store's files are a OnceMap's.
        let seen = if kind == Kind::Content {
            Kind::OnceMap
        } else {
            kind
        };
        assert_eq!(
            (s.kind, s.recorded, s.format),
            (seen, false, None),
            "{kind}"
        );
        for other in composites()
            .filter(|&k| k != kind && !(kind == Kind::Content && k == Kind::OnceMap))
            .filter(|&k| !(kind == Kind::OnceMap && k == Kind::Content))
        {
            let before = tree(dir.path());
            let e = open_as(&dir, "s", other).unwrap_err();
            assert!(matches!(e, Error::Incompatible { .. }), "{kind} as {other}");
            assert_eq!(tree(dir.path()), before, "{kind} as {other}");
        }
        open_as(&dir, "s", kind).unwrap();
        let s = catalog::identify(&dir, "s").unwrap().unwrap();
        assert_eq!((s.kind, s.recorded), (kind, true), "{kind}");
        assert_eq!(std::fs::read(&record).unwrap(), bytes, "{kind}");
        assert_eq!(listed(&dir).len(), 1, "{kind}");
    }
}

/// Records cut short, grown, bit-flipped, of an unknown kind code (0, 11, huge), of
/// another header kind, or replaced by a directory: every open of the store, `identify`
/// and `list` fail with an error naming `kind.acc`, never a panic, and nothing of the
/// store changes.
#[test]
fn damaged_records_are_errors_naming_the_file() {
    let dir = Dir::temporary().unwrap();
    HashStore::open(&dir, "h", HashOptions::default())
        .unwrap()
        .put(b"k", b"v")
        .unwrap();
    let record = dir.path().join("h/kind.acc");
    let good = std::fs::read(&record).unwrap();
    let journal = std::fs::read(dir.path().join("h/state/journal.acc")).unwrap();
    // A valid header of the catalog kind with other params: built by flipping a field of
    // `good` would break its checksum, so these take the raw header route only where the
    // checksum is not involved (cut, grown, flipped, foreign).
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("cut to 10".into(), good[..10].to_vec()),
        ("cut to 63".into(), good[..63].to_vec()),
        ("grown to 65".into(), [&good[..], &[0][..]].concat()),
        ("doubled".into(), [&good[..], &good[..]].concat()),
        ("a journal's header".into(), journal[..64].to_vec()),
        ("zeros".into(), vec![0; 64]),
    ];
    for i in 0..64 {
        let mut b = good.clone();
        b[i] ^= 0x10;
        cases.push((format!("byte {i} flipped"), b));
    }
    for (what, bytes) in cases {
        std::fs::write(&record, &bytes).unwrap();
        let before = tree(dir.path());
        for kind in composites() {
            let e = match open_as(&dir, "h", kind) {
                Ok(()) => panic!("{what}: opens as a {kind}"),
                Err(e) => e,
            };
            assert!(
                e.to_string().contains("kind.acc"),
                "{what}: {kind}: does not name the file: {e}"
            );
        }
        let e = catalog::identify(&dir, "h").unwrap_err();
        assert!(e.to_string().contains("kind.acc"), "{what}: {e}");
        assert!(catalog::list(&dir).is_err(), "{what}");
        assert_eq!(tree(dir.path()), before, "{what}: a failed open wrote");
    }
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir(&record).unwrap();
    let e = HashStore::open(&dir, "h", HashOptions::default()).unwrap_err();
    assert!(e.to_string().contains("kind.acc"), "a directory: {e}");
    std::fs::remove_dir(&record).unwrap();
    std::fs::write(&record, &good).unwrap();
    let h = HashStore::open(&dir, "h", HashOptions::default()).unwrap();
    assert_eq!(Store::get(&h, b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A store opened at a primitive's name (and a composite at a name below a primitive) is
/// refused with both kinds named, and writes nothing.
#[test]
fn a_store_opened_at_a_primitives_name_is_refused_and_changes_nothing() {
    let dir = Dir::temporary().unwrap();
    for kind in primitives() {
        open_as(&dir, kind.name(), kind).unwrap();
    }
    let before = tree(dir.path());
    for primitive in primitives() {
        for store in composites() {
            let e = open_as(&dir, primitive.name(), store).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(e, Error::Incompatible { .. })
                    && text.contains(primitive.name())
                    && text.contains(store.name()),
                "{store} at {primitive}: {text}"
            );
        }
    }
    assert_eq!(tree(dir.path()), before);
}

/// A record naming the right kind but another format than the files (a newer build's
/// record, say) does not stop the open: the files are what the open trusts (their own
/// headers refuse a newer format), and the record is rewritten to the format the open
/// reports, as documented. A record's format is therefore informative only.
#[test]
fn a_record_of_another_format_is_rewritten_by_the_open() {
    for kind in composites() {
        let dir = Dir::temporary().unwrap();
        open_as(&dir, "s", kind).unwrap();
        let format = catalog::identify(&dir, "s")
            .unwrap()
            .unwrap()
            .format
            .unwrap();
        catalog::record(&dir, "s", kind, format + 7).unwrap();
        assert_eq!(
            catalog::identify(&dir, "s").unwrap().unwrap().format,
            Some(format + 7)
        );
        open_as(&dir, "s", kind).unwrap();
        let s = catalog::identify(&dir, "s").unwrap().unwrap();
        assert_eq!((s.kind, s.format), (kind, Some(format)), "{kind}");
        // Recording another kind over it is refused, and leaves the record.
        let other = if kind == Kind::HashStore {
            Kind::LogStore
        } else {
            Kind::HashStore
        };
        let e = catalog::record(&dir, "s", other, format).unwrap_err();
        assert!(matches!(e, Error::Incompatible { .. }), "{kind}: {e}");
        assert_eq!(catalog::identify(&dir, "s").unwrap().unwrap(), s);
    }
}

/// Threads open different structures (each its own name) while another lists the
/// directory over and over: the listing never fails, and never shows a name that is not
/// one of the structures (such as a store's own `state` journal while the store is being
/// made).
#[test]
fn listing_while_structures_are_made() {
    let dir = Dir::temporary().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let kinds = [
        Kind::HashStore,
        Kind::BTreeStore,
        Kind::LogStore,
        Kind::ShardedStore,
        Kind::OnceMap,
        Kind::AppendOnly,
    ];
    let rounds = 6;
    let bad = std::thread::scope(|s| {
        let lister = s.spawn(|| {
            let mut bad = Vec::new();
            let mut lists = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match catalog::list(&dir) {
                    Err(e) => bad.push(format!("list failed: {e}")),
                    Ok(found) => {
                        for st in found {
                            let ok = st.name.starts_with("t")
                                && st.name.split('/').count() == 2
                                && kinds.contains(&st.kind);
                            if !ok {
                                bad.push(format!("{} as {}", st.name, st.kind));
                            }
                        }
                    }
                }
                lists += 1;
            }
            (bad, lists)
        });
        let workers: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(t, &kind)| {
                let dir = &dir;
                s.spawn(move || {
                    for r in 0..rounds {
                        open_as(dir, &format!("t{t}/r{r}"), kind).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        lister.join().unwrap()
    });
    let (mut bad, lists) = bad;
    bad.sort();
    bad.dedup();
    assert!(bad.is_empty(), "over {lists} listings: {bad:#?}");
    assert_eq!(listed(&dir).len(), kinds.len() * rounds);
}

/// Two threads open two kinds of store at one new name at once: one wins, the other is
/// refused (`Incompatible` or `NameInUse`), and what is left is the winner's, recorded,
/// listed once, reopening with its data.
#[test]
fn two_kinds_racing_for_one_name() {
    let dir = Dir::temporary().unwrap();
    let pairs = [
        (Kind::HashStore, Kind::ShardedStore),
        (Kind::LogStore, Kind::BTreeStore),
        (Kind::HashStore, Kind::LogStore),
        (Kind::BTreeStore, Kind::ShardedStore),
        (Kind::OnceMap, Kind::HashStore),
    ];
    let mut problems = Vec::new();
    for round in 0..40 {
        let (a, b) = pairs[round % pairs.len()];
        let name = format!("r{round}");
        let barrier = std::sync::Barrier::new(2);
        let results = std::thread::scope(|s| {
            let go = |kind: Kind| {
                let (dir, barrier, name) = (&dir, &barrier, &name);
                s.spawn(move || {
                    barrier.wait();
                    open_as(dir, name, kind)
                })
            };
            let (ta, tb) = (go(a), go(b));
            [(a, ta.join().unwrap()), (b, tb.join().unwrap())]
        });
        let winners: Vec<Kind> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| *k)
            .collect();
        for (k, r) in &results {
            if let Err(e) = r
                && !matches!(e, Error::Incompatible { .. } | Error::NameInUse { .. })
            {
                problems.push(format!("{name}: {k} failed with {e}"));
            }
        }
        match catalog::identify(&dir, &name) {
            Ok(Some(st)) => {
                if !winners.contains(&st.kind) || !st.recorded {
                    problems.push(format!("{name}: winners {winners:?}, identified {st:?}"));
                }
                if let Err(e) = open_as(&dir, &name, st.kind) {
                    problems.push(format!("{name}: the {} no longer opens: {e}", st.kind));
                }
            }
            other => problems.push(format!(
                "{name}: winners {winners:?}, identified {:?}",
                other.map_err(|e| e.to_string())
            )),
        }
        if winners.len() != 1 {
            problems.push(format!("{name}: winners {winners:?} of {a} and {b}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------
// The face
// ---------------------------------------------------------------------------------

fn key(i: u64) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

fn pairs<K: std::ops::Deref<Target = [u8]>, V: std::ops::Deref<Target = [u8]>>(
    it: impl Iterator<Item = accretion::Result<(K, V)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|e| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

fn model_range(model: &Model, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    // std panics on an empty-by-construction range; the stores must give nothing.
    let empty = match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    };
    if empty {
        return Vec::new();
    }
    model
        .range::<Vec<u8>, _>((lo.clone(), hi.clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Walks `it` taking from the front where `pattern(step)` is true, else the back, and
/// returns the entries in key order.
fn walk_both<I: DoubleEndedIterator<Item = accretion::Result<(K, V)>>, K, V>(
    mut it: I,
    mut front_now: impl FnMut(usize) -> bool,
) -> Vec<(Vec<u8>, Vec<u8>)>
where
    K: std::ops::Deref<Target = [u8]>,
    V: std::ops::Deref<Target = [u8]>,
{
    let (mut front, mut back) = (Vec::new(), Vec::new());
    let mut step = 0;
    loop {
        let from_front = front_now(step);
        let next = if from_front {
            it.next()
        } else {
            it.next_back()
        };
        let Some(e) = next else { break };
        let (k, v) = e.unwrap();
        if from_front {
            front.push((k.to_vec(), v.to_vec()));
        } else {
            back.push((k.to_vec(), v.to_vec()));
        }
        step += 1;
    }
    // Exhausted from one end: both ends stay exhausted.
    assert!(it.next().is_none() && it.next_back().is_none());
    back.reverse();
    front.extend(back);
    front
}

/// Ranges of exactly 0, 1, 255, 256, 257, 512, 513 and 1025 entries, read from the
/// front, from the back, alternating, in runs of 255/256/257 from one end then the
/// other, and at random, on both ordered stores: each entry once, in order.
#[test]
fn batch_boundaries_from_both_ends() {
    let mut seeded = Seeded::new("review_catalog::batch_boundaries_from_both_ends");
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
    let mut model = Model::new();
    for i in 0..1_200u64 {
        let (k, v) = (key(i), format!("v{i}").into_bytes());
        Store::put(&log, &k, &v).unwrap();
        Store::put(&tree, &k, &v).unwrap();
        model.insert(k, v);
    }
    for n in [0u64, 1, 2, 255, 256, 257, 511, 512, 513, 1025] {
        let (lo, hi) = (Bound::Included(key(100)), Bound::Excluded(key(100 + n)));
        let want = model_range(&model, &lo, &hi);
        assert_eq!(want.len() as u64, n);
        type Pattern = Box<dyn FnMut(usize) -> bool>;
        let patterns: Vec<(String, Box<dyn Fn() -> Pattern>)> = vec![
            ("front".into(), Box::new(|| Box::new(|_| true))),
            ("back".into(), Box::new(|| Box::new(|_| false))),
            ("alternate".into(), Box::new(|| Box::new(|s| s % 2 == 0))),
            ("back first".into(), Box::new(|| Box::new(|s| s % 2 == 1))),
            ("255 then back".into(), Box::new(|| Box::new(|s| s < 255))),
            ("256 then back".into(), Box::new(|| Box::new(|s| s < 256))),
            ("257 then back".into(), Box::new(|| Box::new(|s| s < 257))),
            (
                "256 back then front".into(),
                Box::new(|| Box::new(|s| s >= 256)),
            ),
            ("1 then back".into(), Box::new(|| Box::new(|s| s < 1))),
            (
                "1 back then front".into(),
                Box::new(|| Box::new(|s| s >= 1)),
            ),
        ];
        for (what, pattern) in &patterns {
            let got = walk_both(
                OrderedStore::range(&log, (lo.clone(), hi.clone())).unwrap(),
                pattern(),
            );
            assert_eq!(got, want, "log, {n} entries, {what}");
            let got = walk_both(
                OrderedStore::range(&tree, (lo.clone(), hi.clone())).unwrap(),
                pattern(),
            );
            assert_eq!(got, want, "tree, {n} entries, {what}");
        }
        for _ in 0..5 {
            let seed: u64 = rand::Rng::random(&mut seeded.rng);
            let mut r = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let got = walk_both(
                OrderedStore::range(&tree, (lo.clone(), hi.clone())).unwrap(),
                |_| rand::Rng::random_bool(&mut r, 0.5),
            );
            assert_eq!(got, want, "tree, {n} entries, random");
        }
    }
}

/// Every combination of Included/Excluded/Unbounded bounds at keys present, absent,
/// equal, reversed (start past end), the empty key and keys past every key: both stores
/// agree with the model, from either end, and nothing panics.
#[test]
fn bounds_of_every_kind_agree_with_a_model() {
    let mut seeded = Seeded::new("review_catalog::bounds_of_every_kind_agree_with_a_model");
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
    let mut model = Model::new();
    // Keys 0, 2, 4, ... 1198 and the empty key.
    for i in (0..1_200u64).step_by(2) {
        let (k, v) = (key(i), vec![b'v'; (i % 7) as usize]);
        Store::put(&log, &k, &v).unwrap();
        Store::put(&tree, &k, &v).unwrap();
        model.insert(k, v);
    }
    Store::put(&log, b"", b"empty").unwrap();
    Store::put(&tree, b"", b"empty").unwrap();
    model.insert(Vec::new(), b"empty".to_vec());
    let points: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        key(0),
        key(1),
        key(254),
        key(255),
        key(256),
        key(600),
        key(1198),
        key(1199),
        b"z".to_vec(),
        vec![0xff; 600],
    ];
    let bounds = |p: &Vec<u8>| {
        [
            Bound::Included(p.clone()),
            Bound::Excluded(p.clone()),
            Bound::Unbounded,
        ]
    };
    let mut cases = 0;
    for a in &points {
        for b in &points {
            for lo in bounds(a) {
                for hi in bounds(b) {
                    let want = model_range(&model, &lo, &hi);
                    let what = format!("{lo:?}..{hi:?}");
                    both_ways(&log, &lo, &hi, &want, &format!("log {what}"));
                    both_ways(&tree, &lo, &hi, &want, &format!("tree {what}"));
                    let toggle = rand::Rng::random::<u64>(&mut seeded.rng);
                    let got = walk_both(
                        OrderedStore::range(&tree, (lo.clone(), hi.clone())).unwrap(),
                        |s| toggle >> (s % 64) & 1 == 1,
                    );
                    assert_eq!(got, want, "tree both ends {what}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, points.len() * points.len() * 9);
}

/// `store`'s range `lo..hi` read forwards and backwards, against `want`.
fn both_ways<S: OrderedStore>(
    store: &S,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    want: &[(Vec<u8>, Vec<u8>)],
    what: &str,
) {
    let fwd = pairs(OrderedStore::range(store, (lo.clone(), hi.clone())).unwrap());
    assert_eq!(fwd, want, "forwards {what}");
    let mut rev = pairs(
        OrderedStore::range(store, (lo.clone(), hi.clone()))
            .unwrap()
            .rev(),
    );
    rev.reverse();
    assert_eq!(rev, want, "backwards {what}");
}

/// `first`, `last`, `above` and `below` on an empty store, with only the empty key, and
/// at every boundary of a filled one, through the generic trait, against the model.
#[test]
fn neighbours_at_the_edges() {
    fn check<S: OrderedStore>(store: &S, model: &Model, probes: &[Vec<u8>], what: &str) {
        let got = |x: Option<(S::Key, S::Value)>| x.map(|(k, v)| (k.to_vec(), v.to_vec()));
        let own = |x: Option<(&Vec<u8>, &Vec<u8>)>| x.map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!(
            got(store.first().unwrap()),
            own(model.first_key_value()),
            "{what}"
        );
        assert_eq!(
            got(store.last().unwrap()),
            own(model.last_key_value()),
            "{what}"
        );
        for p in probes {
            let above = model
                .range::<Vec<u8>, _>((Bound::Excluded(p.clone()), Bound::Unbounded))
                .next();
            let below = model.range::<Vec<u8>, _>(..p.clone()).next_back();
            assert_eq!(
                got(store.above(p).unwrap()),
                own(above),
                "{what}: above {p:?}"
            );
            assert_eq!(
                got(store.below(p).unwrap()),
                own(below),
                "{what}: below {p:?}"
            );
        }
        assert_eq!(store.len().unwrap(), model.len() as u64, "{what}");
        assert_eq!(store.is_empty().unwrap(), model.is_empty(), "{what}");
    }
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
    let long = vec![0xffu8; accretion::limits::BTREE_KEY_LEN_BYTES_MAX];
    let probes = vec![
        Vec::new(),
        vec![0],
        key(0),
        key(256),
        key(257),
        key(511),
        key(512),
        long.clone(),
        long[..10].to_vec(),
    ];
    let mut model = Model::new();
    check(&log, &model, &probes, "log, empty");
    check(&tree, &model, &probes, "tree, empty");
    for (k, v) in [(Vec::new(), b"e".to_vec()), (long.clone(), b"l".to_vec())] {
        Store::put(&log, &k, &v).unwrap();
        Store::put(&tree, &k, &v).unwrap();
        model.insert(k, v);
        check(&log, &model, &probes, "log, edge keys");
        check(&tree, &model, &probes, "tree, edge keys");
    }
    for i in 0..600u64 {
        Store::put(&log, &key(i), b"x").unwrap();
        Store::put(&tree, &key(i), b"x").unwrap();
        model.insert(key(i), b"x".to_vec());
    }
    check(&log, &model, &probes, "log, 602 keys");
    check(&tree, &model, &probes, "tree, 602 keys");
    // Everything deleted again (absent keys too): empty once more.
    for k in model.keys().chain(probes.iter()) {
        Store::delete(&log, k).unwrap();
        Store::delete(&tree, k).unwrap();
    }
    model.clear();
    check(&log, &model, &probes, "log, emptied");
    check(&tree, &model, &probes, "tree, emptied");
}

/// A writer inserting and removing keys between `next_back` calls (and between batches
/// from both ends): every key present throughout comes out exactly once, in order, and
/// no removed-before-the-read key appears.
#[test]
fn writers_between_batches_read_backwards() {
    let dir = Dir::temporary().unwrap();
    let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
    for i in 0..1_500u64 {
        tree.insert(&key(i * 3), b"steady").unwrap();
        tree.insert(&key(i * 3 + 1), b"doomed").unwrap();
    }
    let mut it = OrderedStore::range(&tree, ..).unwrap();
    let (mut front, mut back) = (Vec::new(), Vec::new());
    let mut step = 0u64;
    loop {
        let from_front = (step / 300) % 2 == 1;
        let next = if from_front {
            it.next()
        } else {
            it.next_back()
        };
        let Some(e) = next else { break };
        let (k, v) = e.unwrap();
        assert_ne!(v, b"doomed-gone", "{k:?}");
        if v == b"steady" {
            if from_front {
                front.push(k);
            } else {
                back.push(k);
            }
        }
        // Between reads: new keys everywhere, every doomed key rewritten then removed.
        tree.insert(&key(step * 3 + 2), b"new").unwrap();
        tree.remove(&key(((step * 7) % 1_500) * 3 + 1)).unwrap();
        step += 1;
    }
    back.reverse();
    front.extend(back);
    let want: Vec<_> = (0..1_500u64).map(|i| key(i * 3)).collect();
    assert_eq!(front.len(), want.len());
    assert_eq!(front, want);
}

/// Through the generic trait on every store: deletes of absent keys change nothing, and
/// the `keys` figures of `stats` and `verify` agree with `len` and the entries, after
/// overwrites, deletes, a compaction and a reopen. The empty key and a long key too.
#[test]
fn figures_named_keys_agree_with_len_on_every_store() {
    fn figure(figures: &[(&'static str, Figure)], name: &str) -> Option<Figure> {
        figures.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
    fn run<S: Store>(store: &S, model: &mut Model, long_key: usize, what: &str) {
        let check = |store: &S, model: &Model, step: &str| {
            let n = model.len() as u64;
            assert_eq!(store.len().unwrap(), n, "{what} {step}: len");
            assert_eq!(
                figure(&store.stats().unwrap(), "keys"),
                Some(Figure::Count(n)),
                "{what} {step}: stats"
            );
            assert_eq!(
                figure(&store.verify().unwrap(), "keys"),
                Some(Figure::Count(n)),
                "{what} {step}: verify"
            );
            let mut seen = Model::new();
            for e in store.entries().unwrap() {
                let (k, v) = e.unwrap();
                assert!(
                    seen.insert(k.to_vec(), v.to_vec()).is_none(),
                    "{what}: twice"
                );
            }
            assert_eq!(&seen, model, "{what} {step}: entries");
            for (k, v) in model {
                assert_eq!(store.get(k).unwrap().as_deref(), Some(&v[..]), "{what}");
                assert!(store.contains(k).unwrap(), "{what}");
            }
        };
        check(store, model, "at first");
        for k in [&b""[..], b"absent", &vec![8u8; long_key]] {
            if model.contains_key(k) {
                continue;
            }
            store.delete(k).unwrap();
            assert!(!store.contains(k).unwrap());
            assert!(store.get(k).unwrap().is_none());
        }
        check(store, model, "after deleting absent keys");
        let edge = [Vec::new(), vec![7u8; long_key]];
        for (i, k) in (0..300u64).map(key).chain(edge.iter().cloned()).enumerate() {
            let v = format!("v{i}").into_bytes();
            store.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        for i in (0..300u64).step_by(3) {
            store.put(&key(i), b"over").unwrap();
            model.insert(key(i), b"over".to_vec());
        }
        for i in (0..300u64).step_by(5) {
            store.delete(&key(i)).unwrap();
            store.delete(&key(i)).unwrap();
            model.remove(&key(i));
        }
        check(store, model, "after writes");
        store.sync().unwrap();
        store.compact().unwrap();
        check(store, model, "after compaction");
        store.delete(b"").unwrap();
        model.remove(&b""[..]);
        check(store, model, "after deleting the empty key");
    }
    let dir = Dir::temporary().unwrap();
    let long = accretion::limits::BTREE_KEY_LEN_BYTES_MAX;
    {
        let mut model = Model::new();
        let s = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "log");
        drop(s);
        let s = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "log reopened");
    }
    {
        let mut model = Model::new();
        let s = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
        run(&s, &mut model, long, "tree");
        drop(s);
        let s = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
        run(&s, &mut model, long, "tree reopened");
    }
    {
        let mut model = Model::new();
        let s = HashStore::open(&dir, "hash", HashOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "hash");
        drop(s);
        let s = HashStore::open(&dir, "hash", HashOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "hash reopened");
    }
    {
        let mut model = Model::new();
        let s = ShardedStore::open(&dir, "sharded", ShardedOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "sharded");
        drop(s);
        let s = ShardedStore::open(&dir, "sharded", ShardedOptions::default()).unwrap();
        run(&s, &mut model, 4_000, "sharded reopened");
    }
    let kinds: Vec<Kind> = catalog::list(&dir)
        .unwrap()
        .into_iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            Kind::HashStore,
            Kind::LogStore,
            Kind::ShardedStore,
            Kind::BTreeStore
        ]
    );
}

/// One damaged out-of-line value (key 5 of 300, 4.8 KB values) must cost the face's
/// reads only that entry, as it costs the tree's own range: `range(..)` yields keys 0 to
/// 4, then the error. Through the face, `entries()` yields the error alone (the batch of
/// 256 is read whole, and `fill` drops the entries read before the error), and `first()`
/// fails, though key 0 is sound (`get` reads it): every `first`, `last`, `above` and
/// `below` reads (and copies) a whole batch of 256 values to return one.
#[test]
fn a_damaged_value_costs_the_face_only_itself() {
    fn show<K: std::ops::Deref<Target = [u8]>, V>(e: accretion::Result<(K, V)>) -> String {
        match e {
            Ok((k, _)) => String::from_utf8_lossy(&k).into_owned(),
            Err(e) => format!("error: {e}"),
        }
    }
    let dir = Dir::temporary().unwrap();
    let value = |i: u64| format!("VALUE-{i:05}-").repeat(400).into_bytes();
    {
        let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
        for i in 0..300u64 {
            tree.insert(&key(i), &value(i)).unwrap();
        }
        tree.checkpoint().unwrap();
        tree.sync().unwrap();
    }
    let needle = b"VALUE-00005-VALUE";
    let mut flipped = 0;
    for (rel, mut bytes) in crate::common::snapshot(dir.path()) {
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 100] ^= 1;
            std::fs::write(dir.path().join(&rel), bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1);
    let tree = BTreeStore::open(&dir, "tree", BTreeOptions::default()).unwrap();
    let snapshot = tree.begin_read();
    let t = snapshot.default_tree().unwrap();
    let direct: Vec<String> = t.range(..).unwrap().map(show).collect();
    let direct_back: Vec<String> = t.range(..).unwrap().rev().map(show).collect();
    assert_eq!(direct.len(), 6, "{direct:?}");
    assert!(direct[5].starts_with("error"), "{direct:?}");
    let face: Vec<String> = Store::entries(&tree).unwrap().map(show).collect();
    let face_back: Vec<String> = OrderedStore::range(&tree, ..)
        .unwrap()
        .rev()
        .map(show)
        .collect();
    let mut problems = Vec::new();
    if face != direct {
        problems.push(format!("entries(): {face:?}, the tree's range: {direct:?}"));
    }
    if face_back != direct_back {
        problems.push(format!(
            "range(..).rev(): {} items, the tree's: {}",
            face_back.len(),
            direct_back.len()
        ));
    }
    assert!(Store::get(&tree, &key(0)).unwrap().is_some());
    let first = OrderedStore::first(&tree).map(|x| x.map(|(k, _)| k));
    if !matches!(&first, Ok(Some(k)) if *k == key(0)) {
        problems.push(format!("first(): {first:?}, though key 0 is sound"));
    }
    let below = OrderedStore::below(&tree, &key(3)).map(|x| x.map(|(k, _)| k));
    if !matches!(&below, Ok(Some(k)) if *k == key(2)) {
        problems.push(format!("below(k3): {below:?}"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `catalog::record` is public, and a primitive's kind counts as recorded (its header:
/// `Structure::recorded`), so recording a store's kind over an AppendOnly must be
/// `Incompatible`, as over another composite. It succeeds, and from then on the
/// AppendOnly is listed as a HashStore and a HashStore opens in its directory.
#[test]
fn record_refuses_to_relabel_a_primitive() {
    let dir = Dir::temporary().unwrap();
    let buf = AppendOnly::open(&dir, "buf").unwrap();
    buf.append(b"data").unwrap();
    buf.sync().unwrap();
    drop(buf);
    let before = tree(dir.path());
    let result = catalog::record(&dir, "buf", Kind::HashStore, 1);
    let listed_as = catalog::identify(&dir, "buf").unwrap().map(|s| s.kind);
    assert!(
        matches!(result, Err(Error::Incompatible { .. })) && tree(dir.path()) == before,
        "record over an AppendOnly: {:?}; now identified as {listed_as:?}",
        result.map_err(|e| e.to_string())
    );
}

/// Regression (review, 2026-12-03; fixed 2026-12-03(3)): the recognition of unrecorded stores by their sub-directories' names alone takes a
/// user's plain group of structures for a store: a Journal `app/state` and an
/// AppendOnly `app/log-1` are listed as one LogStore `app` (the two vanish from the
/// list), and a Journal `cfg/state` and an AppendOnly `cfg/g1` as a BTreeStore.
#[test]
fn user_structures_are_not_taken_for_an_unrecorded_store() {
    let dir = Dir::temporary().unwrap();
    Journal::<u64>::open(&dir, "app/state").unwrap();
    AppendOnly::open(&dir, "app/log-1").unwrap();
    Journal::<u64>::open(&dir, "cfg/state").unwrap();
    AppendOnly::open(&dir, "cfg/g1").unwrap();
    let found = listed(&dir);
    let want: BTreeMap<String, Kind> = [
        ("app/log-1", Kind::AppendOnly),
        ("app/state", Kind::Journal),
        ("cfg/g1", Kind::AppendOnly),
        ("cfg/state", Kind::Journal),
    ]
    .into_iter()
    .map(|(n, k)| (n.to_owned(), k))
    .collect();
    assert_eq!(found, want);
}

/// Regression (review, 2026-12-03; fixed 2026-12-03(3)): a primitive opened at a store's name must be refused before it writes: otherwise it
/// drops its files into the store's directory, and a store made before records existed
/// (the v1 fixtures) is from then on recognised as that primitive, so the store itself
/// no longer opens.
#[test]
fn a_primitive_opened_at_a_stores_name_is_refused_and_changes_nothing() {
    let dir = Dir::temporary().unwrap();
    for kind in composites() {
        open_as(&dir, kind.name(), kind).unwrap();
    }
    let mut wrong = Vec::new();
    for store in composites() {
        for primitive in primitives() {
            let before = tree(dir.path());
            let result = open_as(&dir, store.name(), primitive);
            let after = tree(dir.path());
            if !matches!(result, Err(Error::Incompatible { .. })) || after != before {
                let added: Vec<_> = after
                    .keys()
                    .filter(|k| !before.contains_key(*k))
                    .cloned()
                    .collect();
                wrong.push(format!(
                    "{primitive} at {store}: {:?}, added {added:?}",
                    result.map_err(|e| e.to_string())
                ));
                // Put the directory back for the next probe.
                for k in added.iter().rev() {
                    let p = dir.path().join(k);
                    if p.is_dir() {
                        std::fs::remove_dir_all(p).unwrap();
                    } else {
                        std::fs::remove_file(p).unwrap();
                    }
                }
            }
        }
    }
    // The unrecorded v1 hash store: an AppendOnly opened at its name locks the store out.
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    crate::fixtures::copy_dir(&fixtures.join("v1-hash"), &tmp.path().join("v1-hash"));
    let v1 = Dir::open(tmp.path().join("v1-hash")).unwrap();
    let _ = AppendOnly::open(&v1, "kv");
    if let Err(e) = HashStore::open(&v1, "kv", HashOptions::default()) {
        wrong.push(format!(
            "the v1 hash store no longer opens after an AppendOnly open at its name: {e}"
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A primitive inside a store is refused unless it is one of the store's parts (by name
/// and kind), and a primitive at another primitive's name is refused naming both kinds;
/// neither adds a file. The stores' own parts still open (their opens below succeed).
#[test]
fn primitives_inside_stores_or_at_other_primitives_are_refused() {
    let dir = Dir::temporary().unwrap();
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    log.put(b"k", b"v").unwrap();
    log.sync().unwrap();
    drop(log);
    drop(HashStore::open(&dir, "hash", HashOptions::default()).unwrap());
    drop(Journal::<u64>::open(&dir, "j").unwrap());
    drop(AppendOnly::open(&dir, "a").unwrap());
    let before = tree(dir.path());
    let refused = |what: &str, r: accretion::Result<()>| match r {
        Err(Error::Incompatible { .. }) => {}
        other => panic!("{what}: {:?}", other.map_err(|e| e.to_string())),
    };
    // Not parts: a name a store does not use, or a part's name with another kind.
    refused(
        "journal log/extra",
        Journal::<u64>::open(&dir, "log/extra").map(drop),
    );
    refused(
        "append-only log/state",
        AppendOnly::open(&dir, "log/state").map(drop),
    );
    refused(
        "journal log/log-1",
        Journal::<u64>::open(&dir, "log/log-1").map(drop),
    );
    refused(
        "entropy hash/d1",
        accretion::Entropy::open(&dir, "hash/d1").map(drop),
    );
    // Inside a primitive: it has no parts.
    refused("journal j/x", Journal::<u64>::open(&dir, "j/x").map(drop));
    refused("append-only a/b", AppendOnly::open(&dir, "a/b").map(drop));
    // At another primitive's name, naming both.
    let e = AppendOnly::open(&dir, "j").unwrap_err();
    assert!(
        e.to_string().contains("Journal") && e.to_string().contains("AppendOnly"),
        "{e}"
    );
    refused("journal a", Journal::<u64>::open(&dir, "a").map(drop));
    refused("entropy a", accretion::Entropy::open(&dir, "a").map(drop));
    // A name whose directory holds structures.
    drop(Journal::<u64>::open(&dir, "group/one").unwrap());
    let before_group = tree(dir.path());
    refused(
        "journal group",
        Journal::<u64>::open(&dir, "group").map(drop),
    );
    assert_eq!(tree(dir.path()), before_group);
    let mut after = tree(dir.path());
    after.retain(|k, _| !k.starts_with("group"));
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(before.keys().filter(|k| !after.contains_key(*k)))
        .collect();
    assert!(
        changed.is_empty(),
        "a refused open added or changed {changed:?}"
    );
    // The stores' own parts still open, as parts, through the stores.
    let log = LogStore::open(&dir, "log", LogOptions::default()).unwrap();
    assert_eq!(&*log.get(b"k").unwrap().unwrap(), b"v");
    // A part opened directly (a tool looking at it) is admitted: refused only because
    // the open store holds it, and opened once the store is closed.
    let e = Journal::<[u64; 8]>::open(&dir, "log/state").unwrap_err();
    assert!(matches!(e, Error::NameInUse { .. }), "{e}");
    drop(log);
    drop(Journal::<[u64; 8]>::open(&dir, "log/state").unwrap());
}
