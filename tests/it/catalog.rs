//! The catalog: every structure of a directory listed with its kind, the fixtures made
//! before kinds were recorded recognised from their files, and a structure opened as
//! another kind refused with both named and nothing written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use accretion::catalog::{self, Kind};
use accretion::{
    AppendOnly, BTreeOptions, BTreeStore, Content, Dir, Entropy, Error, HashOptions, HashStore,
    Journal, LogOptions, LogStore, OnceMap, RandomAccess, ShardedOptions, ShardedStore,
};

use crate::fixtures::copy_dir;

/// Opens `name` in `dir` as a `kind` (default options), dropping it at once.
pub(crate) fn open_as(dir: &Dir, name: &str, kind: Kind) -> accretion::Result<()> {
    match kind {
        Kind::Entropy => Entropy::open(dir, name).map(drop),
        Kind::Journal => Journal::<u64>::open(dir, name).map(drop),
        Kind::RandomAccess => RandomAccess::<u64>::open(dir, name).map(drop),
        Kind::AppendOnly => AppendOnly::open(dir, name).map(drop),
        Kind::OnceMap => OnceMap::open(dir, name).map(drop),
        Kind::Content => Content::open(dir, name).map(drop),
        Kind::LogStore => LogStore::open(dir, name, LogOptions::default()).map(drop),
        Kind::BTreeStore => BTreeStore::open(dir, name, BTreeOptions::default()).map(drop),
        Kind::HashStore => HashStore::open(dir, name, HashOptions::default()).map(drop),
        Kind::ShardedStore => ShardedStore::open(dir, name, ShardedOptions::default()).map(drop),
        _ => unreachable!("a kind this test does not know: {kind:?}"),
    }
}

fn kinds(dir: &Dir) -> BTreeMap<String, (Kind, bool)> {
    catalog::list(dir)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, (s.kind, s.recorded)))
        .collect()
}

/// Every file below `root`, with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(at) = stack.pop() {
        for e in std::fs::read_dir(&at).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "accretion.lock" {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn every_kind_is_listed_by_name_and_nested_names_too() {
    let dir = Dir::temporary().unwrap();
    let mut want = BTreeMap::new();
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        // Half of them below a plain directory level.
        let name = if i % 2 == 0 {
            format!("k{i}")
        } else {
            format!("group/k{i}")
        };
        open_as(&dir, &name, kind).unwrap();
        want.insert(name, (kind, true));
    }
    assert_eq!(kinds(&dir), want);
    for s in catalog::list(&dir).unwrap() {
        assert_eq!(catalog::identify(&dir, &s.name).unwrap(), Some(s.clone()));
        assert!(s.format.is_some(), "{s:?}");
    }
    assert_eq!(catalog::identify(&dir, "group").unwrap(), None);
    assert_eq!(catalog::identify(&dir, "nothing").unwrap(), None);
    // Reopening each as its own kind works and changes no record.
    for (name, (kind, _)) in &want {
        open_as(&dir, name, *kind).unwrap();
    }
    assert_eq!(kinds(&dir), want);
}

/// Each composite kind opened as every other kind: `Incompatible` naming both, and not a
/// byte of the directory changed (the check comes before any file is touched).
#[test]
fn a_structure_opened_as_another_kind_is_refused_and_left_alone() {
    let dir = Dir::temporary().unwrap();
    let composites: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| !k.is_primitive())
        .collect();
    for &kind in &composites {
        open_as(&dir, kind.name(), kind).unwrap();
    }
    let before = files(dir.path());
    for &found in &composites {
        for &wanted in composites.iter().filter(|&&k| k != found) {
            let e = open_as(&dir, found.name(), wanted).unwrap_err();
            assert!(
                matches!(e, Error::Incompatible { .. }),
                "{found} as {wanted}: {e}"
            );
            let text = e.to_string();
            assert!(
                text.contains(found.name()) && text.contains(wanted.name()),
                "{found} as {wanted}: {text}"
            );
            assert!(text.contains(found.name()), "names the path: {text}");
        }
    }
    assert_eq!(files(dir.path()), before, "a refused open wrote nothing");
}

/// Stores made before kinds were recorded (the v1 fixtures) are recognised from their
/// files, open as what they are, are refused as anything else, and get their record at
/// the first open.
#[test]
fn fixtures_without_records_are_recognised_from_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cases: &[(&str, &[(&str, Kind)])] = &[
        (
            "v1",
            &[
                ("append", Kind::AppendOnly),
                ("array", Kind::RandomAccess),
                ("blobs", Kind::OnceMap),
                ("entropy", Kind::Entropy),
                ("journal", Kind::Journal),
                ("map", Kind::OnceMap),
            ],
        ),
        ("v1-btree", &[("db", Kind::BTreeStore)]),
        ("v1-hash", &[("kv", Kind::HashStore)]),
        ("v1-log", &[("kv", Kind::LogStore)]),
        ("v1-sharded", &[("kv", Kind::ShardedStore)]),
        ("v2-log", &[("kv", Kind::LogStore)]),
    ];
    for (fixture, expected) in cases {
        let at = tmp.path().join(fixture);
        copy_dir(&fixtures.join(fixture), &at);
        let dir = Dir::open(&at).unwrap();
        let found = kinds(&dir);
        let want: BTreeMap<String, (Kind, bool)> = expected
            .iter()
            .map(|&(n, k)| {
                let primitive = !matches!(
                    k,
                    Kind::OnceMap
                        | Kind::LogStore
                        | Kind::BTreeStore
                        | Kind::HashStore
                        | Kind::ShardedStore
                );
                (n.to_owned(), (k, primitive))
            })
            .collect();
        assert_eq!(found, want, "{fixture}");
        for &(name, kind) in expected.iter().filter(|(_, k)| k.is_store()) {
            let other = if kind == Kind::HashStore {
                Kind::ShardedStore
            } else {
                Kind::HashStore
            };
            let e = open_as(&dir, name, other).unwrap_err();
            assert!(matches!(e, Error::Incompatible { .. }), "{fixture}: {e}");
            open_as(&dir, name, kind).unwrap();
            let s = catalog::identify(&dir, name).unwrap().unwrap();
            assert_eq!((s.kind, s.recorded), (kind, true), "{fixture}: {s:?}");
        }
    }
    // The v1 blobs are a Content store: unrecorded, its OnceMap files open as one, and
    // the open records it.
    let dir = Dir::open(tmp.path().join("v1")).unwrap();
    open_as(&dir, "blobs", Kind::Content).unwrap();
    assert_eq!(kinds(&dir)["blobs"], (Kind::Content, true));
    assert!(matches!(
        open_as(&dir, "blobs", Kind::OnceMap),
        Err(Error::Incompatible { .. })
    ));
}

/// `catalog::verify` checks a structure of every kind, intact ones without damage; the
/// fixtures of format 1 and 2 included.
#[test]
fn verify_passes_every_intact_kind_and_the_fixtures() {
    let dir = Dir::temporary().unwrap();
    for kind in Kind::ALL {
        open_as(&dir, kind.name(), kind).unwrap();
    }
    let store = LogStore::open(&dir, "LogStore", LogOptions::default()).unwrap();
    for i in 0..300u32 {
        store.put(&i.to_be_bytes(), &[1; 50]).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    for kind in Kind::ALL {
        let found = catalog::verify(&dir, kind.name()).unwrap();
        assert!(found.damage.is_empty(), "{kind}: {:?}", found.damage);
        assert!(!found.figures.is_empty(), "{kind}");
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for fixture in [
        "v1",
        "v2",
        "v1-log",
        "v2-log",
        "v1-btree",
        "v1-hash",
        "v1-sharded",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&fixtures.join(fixture), tmp.path());
        let dir = Dir::open(tmp.path()).unwrap();
        for s in catalog::list(&dir).unwrap() {
            let found = catalog::verify(&dir, &s.name).unwrap();
            assert!(
                found.damage.is_empty(),
                "{fixture}/{}: {:?}",
                s.name,
                found.damage
            );
        }
    }
    assert!(matches!(
        catalog::verify(&dir, "nothing"),
        Err(Error::Incompatible { .. })
    ));
}

/// A damaged frame in a synced AppendOnly cuts off the records after it (an open keeps
/// the records before it only): `open_looking_past_end` finds them, and `verify` reports
/// it, for the buffer alone and for a buffer inside a store.
#[test]
fn verify_finds_records_cut_off_by_a_damaged_frame() {
    let dir = Dir::temporary().unwrap();
    let buf = AppendOnly::open(&dir, "b").unwrap();
    let spans: Vec<_> = (0..50u32)
        .map(|i| buf.append(format!("record {i:03}").as_bytes()).unwrap())
        .collect();
    buf.sync().unwrap();
    let (file, offset) = buf.file_position(spans[10].offset()).unwrap();
    drop(buf);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset as usize + 2] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let (buf, past) = AppendOnly::open_looking_past_end(&dir, "b").unwrap();
    assert!(
        buf.len() <= spans[10].offset(),
        "the open kept the damaged record"
    );
    let past = past.expect("the records after the damage are found");
    assert!(
        past > spans[10].offset() && past < spans[12].offset(),
        "{past}"
    );
    drop(buf);
    let found = catalog::verify(&dir, "b").unwrap();
    assert_eq!(found.damage.len(), 1, "{:?}", found.damage);
    let e = found.damage[0].to_string();
    assert!(e.contains("data-00.acc") && e.contains("past it"), "{e}");
    // Inside a store: a hash store's data log.
    let store = HashStore::open(&dir, "kv", HashOptions::default()).unwrap();
    for i in 0..200u32 {
        store
            .set(&i.to_be_bytes(), b"a value of some length")
            .unwrap();
    }
    store.sync().unwrap();
    drop(store);
    assert!(catalog::verify(&dir, "kv").unwrap().damage.is_empty());
    let data = dir.path().join("kv/d0/data-00.acc");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes
        .windows(22)
        .rposition(|w| w == b"a value of some length")
        .unwrap();
    let at = bytes[..at - 100]
        .windows(22)
        .rposition(|w| w == b"a value of some length")
        .unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let found = catalog::verify(&dir, "kv").unwrap();
    assert!(!found.damage.is_empty(), "{:?}", found.figures);
}
