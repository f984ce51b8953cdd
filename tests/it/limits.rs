//! Every named limit and every bad input returns a typed error, never a panic, and the
//! error's message names the limit, name or file involved. A refused call leaves the
//! structure usable.

use std::io::{self, Read};

use accretion::limits::{
    ELEMENT_SIZE_BYTES_MAX, JOURNAL_VALUE_BYTES_MAX, KEY_LEN_BYTES_MAX, NAME_DEPTH_MAX,
    NAME_LEN_BYTES_MAX, RECORD_ALIGN_BYTES_MAX, RECORD_LEN_BYTES_MAX,
};
use accretion::{
    AppendOnly, Content, Dir, Entropy, Error, Insert, Journal, OnceMap, RandomAccess, Span,
    TypedOnceMap,
};

/// Asserts `result` is `LimitExceeded` naming `limit` (in the field and the message) and
/// reporting `requested`, which lies above the reported maximum.
#[track_caller]
fn assert_limit<T: std::fmt::Debug>(result: Result<T, Error>, limit: &str, requested: u64) {
    assert_limit_inner(result, limit, requested, true);
}

/// As [`assert_limit`], for a request that breaks a rule other than the maximum (such as
/// an alignment that is not a power of two).
#[track_caller]
fn assert_limit_rule<T: std::fmt::Debug>(result: Result<T, Error>, limit: &str, requested: u64) {
    assert_limit_inner(result, limit, requested, requested > RECORD_ALIGN_BYTES_MAX);
}

#[track_caller]
fn assert_limit_inner<T: std::fmt::Debug>(
    result: Result<T, Error>,
    limit: &str,
    requested: u64,
    above_max: bool,
) {
    match result {
        Err(e @ Error::LimitExceeded { .. }) => {
            let Error::LimitExceeded {
                limit: name,
                requested: got,
                max,
            } = &e
            else {
                unreachable!()
            };
            assert!(name.contains(limit), "limit {name:?}, want {limit:?}");
            assert_eq!(*got, requested, "requested size");
            assert_eq!(*got > *max, above_max, "requested {got}, max {max}");
            let msg = e.to_string();
            assert!(msg.contains(limit), "message {msg:?} does not name {limit}");
        }
        other => panic!("want LimitExceeded({limit}), got {other:?}"),
    }
}

#[track_caller]
fn assert_out_of_bounds<T: std::fmt::Debug>(result: Result<T, Error>, len: u64) {
    match result {
        Err(e @ Error::OutOfBounds { .. }) => {
            let Error::OutOfBounds { len: got, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*got, len, "OutOfBounds reports the written length");
            assert!(e.to_string().contains("outside the written data"), "{e}");
        }
        other => panic!("want OutOfBounds, got {other:?}"),
    }
}

#[test]
fn once_map_key_too_long() {
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    let key = vec![1u8; KEY_LEN_BYTES_MAX + 1];
    assert_limit(
        map.insert(&key, b"v"),
        "KEY_LEN_BYTES_MAX",
        KEY_LEN_BYTES_MAX as u64 + 1,
    );
    assert_eq!(map.len(), 0, "a refused insert adds nothing");
    assert_eq!(map.get(&key).unwrap(), None, "a long key is simply absent");
    // The longest allowed key works, and the map stays usable.
    let key = vec![2u8; KEY_LEN_BYTES_MAX];
    assert!(map.insert(&key, b"max").unwrap().is_inserted());
    assert_eq!(map.get(&key).unwrap(), Some(&b"max"[..]));
    assert_eq!(map.len(), 1);
    map.sync().unwrap();
    drop(map);
    let map = OnceMap::open(&dir, "m").unwrap();
    assert_eq!(map.get(&key).unwrap(), Some(&b"max"[..]));
    assert_eq!(
        map.insert(&key, b"again").unwrap(),
        Insert::Existing(&b"max"[..])
    );
}

#[test]
fn append_only_record_too_long_and_bad_alignment() {
    let dir = Dir::temporary().unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    let first = log.append(b"abc").unwrap();
    assert_limit(
        log.append_with(RECORD_LEN_BYTES_MAX as usize + 1, 1, |_, _| unreachable!()),
        "RECORD_LEN_BYTES_MAX",
        RECORD_LEN_BYTES_MAX + 1,
    );
    assert_limit(
        log.append_with(usize::MAX, 8, |_, _| unreachable!()),
        "RECORD_LEN_BYTES_MAX",
        usize::MAX as u64,
    );
    for align in [0usize, 3, 6, 12, 100, 8192, 1 << 40, usize::MAX] {
        assert_limit_rule(
            log.append_aligned(b"x", align),
            "RECORD_ALIGN_BYTES_MAX",
            align as u64,
        );
        assert_limit_rule(
            log.append_with(1, align, |_, _| unreachable!()),
            "RECORD_ALIGN_BYTES_MAX",
            align as u64,
        );
    }
    assert_eq!(log.len(), first.end(), "refused appends reserve nothing");
    // The largest alignment works, in the file and in memory.
    let span = log
        .append_aligned(b"aligned", RECORD_ALIGN_BYTES_MAX as usize)
        .unwrap();
    assert_eq!(span.offset(), RECORD_ALIGN_BYTES_MAX);
    let bytes = log.get(span).unwrap();
    assert_eq!(bytes, b"aligned");
    assert_eq!(bytes.as_ptr() as usize % RECORD_ALIGN_BYTES_MAX as usize, 0);
    assert_eq!(log.get(first).unwrap(), b"abc");
    log.sync().unwrap();
}

#[test]
fn append_only_bad_spans() {
    let dir = Dir::temporary().unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    assert_eq!(
        log.get(Span::new(0, 0)).unwrap(),
        b"",
        "empty span of an empty buffer"
    );
    assert_out_of_bounds(log.get(Span::new(0, 1)), 0);
    let base = accretion::limits::APPEND_LANE_BASE_BYTES;
    // Format 2: each record behind its 16-byte frame. The first ends 8 bytes short of
    // lane 0's end; the second's frame starts lane 1.
    let first = log.append(&vec![5u8; (base - 16 - 8) as usize]).unwrap();
    assert_eq!(first.end(), base - 8);
    let second = log.append(&[6u8; 100]).unwrap();
    assert_eq!(second.offset(), base + 16, "skipped to lane 1");
    let len = log.len();
    assert_eq!(len, base + 16 + 100);
    let bad = [
        Span::new(len, 1),          // just past the end
        Span::new(len + 1, 0),      // empty, but past the end
        Span::new(0, len + 1),      // one byte too long
        Span::new(base - 4, 8),     // straddles lanes 0 and 1
        Span::new(0, base + 1),     // straddles, from the start
        Span::new(u64::MAX, 1),     // offset + len overflows
        Span::new(u64::MAX, 0),     // huge offset
        Span::new(1, u64::MAX),     // huge length
        Span::new(u64::MAX - 1, 2), // end overflows by one
    ];
    for span in bad {
        assert_out_of_bounds(log.get(span), len);
    }
    let e = log.get(Span::new(len, 1)).unwrap_err().to_string();
    assert!(e.contains(&len.to_string()), "message names the span: {e}");
    assert_eq!(Span::new(u64::MAX, 10).end(), u64::MAX, "end saturates");
    // Spans at the very end, and empty spans inside, are fine.
    assert_eq!(log.get(Span::new(len - 1, 1)).unwrap(), &[6]);
    assert_eq!(log.get(Span::new(len, 0)).unwrap(), b"");
    assert_eq!(
        log.get(Span::new(base - 8, 8)).unwrap(),
        &[0u8; 8],
        "lane-end padding"
    );
}

#[test]
fn invalid_names() {
    let dir = Dir::temporary().unwrap();
    let long = "a".repeat(300);
    let deep = vec!["a"; NAME_DEPTH_MAX + 1].join("/");
    let cases: [(&str, Option<&str>); 11] = [
        ("", None),
        ("a/", None),
        ("/a", None),
        ("a//b", None),
        ("a..b", None),
        ("a.b", None),
        ("a b", None),
        ("é", None),
        ("a\0b", None),
        (&long, Some("NAME_LEN_BYTES_MAX")),
        (&deep, Some("NAME_DEPTH_MAX")),
    ];
    for (name, limit) in cases {
        let check = |result: Result<(), Error>, what: &str| match result {
            Err(e @ Error::InvalidName { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("invalid structure name"), "{msg}");
                if let Some(limit) = limit {
                    assert!(
                        msg.contains(limit),
                        "{what} {name:?}: {msg} names no {limit}"
                    );
                }
            }
            other => panic!("{what} {name:?}: want InvalidName, got {other:?}"),
        };
        // Leaf primitives report the name exactly as given.
        match AppendOnly::open(&dir, name) {
            Err(Error::InvalidName { name: got, .. }) => assert_eq!(got, name),
            other => panic!("AppendOnly {name:?}: want InvalidName, got {other:?}"),
        }
        check(AppendOnly::open(&dir, name).map(drop), "AppendOnly");
        check(
            RandomAccess::<u64>::open(&dir, name).map(drop),
            "RandomAccess",
        );
        check(Journal::<u64>::open(&dir, name).map(drop), "Journal");
        check(Entropy::open(&dir, name).map(drop), "Entropy");
        check(OnceMap::open(&dir, name).map(drop), "OnceMap");
        check(
            TypedOnceMap::<u64, u64>::open(&dir, name).map(drop),
            "TypedOnceMap",
        );
        check(Content::open(&dir, name).map(drop), "Content");
        check(dir.remove(name), "Dir::remove");
    }
    // The longest and deepest valid names work.
    let longest = "b".repeat(NAME_LEN_BYTES_MAX);
    AppendOnly::open(&dir, &longest)
        .unwrap()
        .append(b"x")
        .unwrap();
    let deepest = vec!["c"; NAME_DEPTH_MAX].join("/");
    Journal::<u64>::open(&dir, &deepest)
        .unwrap()
        .set(1)
        .unwrap();
    // Nothing was created for the invalid names: only the valid structures' directories.
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec!["accretion.acc", "accretion.lock", &longest[..], "c"],
        "invalid names leave no trace"
    );
}

#[test]
fn name_in_use() {
    let dir = Dir::temporary().unwrap();
    let in_use = |result: Result<(), Error>, name: &str| match result {
        Err(e @ Error::NameInUse { .. }) => {
            assert!(e.to_string().contains(name), "{e} names no {name}");
        }
        other => panic!("want NameInUse for {name:?}, got {other:?}"),
    };
    let log = AppendOnly::open(&dir, "log").unwrap();
    in_use(AppendOnly::open(&dir, "log").map(drop), "log");
    // Another kind at the name is refused as that, naming both, before the claim.
    for e in [
        Journal::<u64>::open(&dir, "log").map(drop).unwrap_err(),
        Entropy::open(&dir, "log").map(drop).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Incompatible { .. }), "{e}");
        assert!(e.to_string().contains("an AppendOnly"), "{e}");
    }
    // A RandomAccess's files are alike: the claim refuses it.
    in_use(RandomAccess::<u64>::open(&dir, "log").map(drop), "log");
    in_use(dir.remove("log"), "log");
    let arr = RandomAccess::<u64>::open(&dir, "a/arr").unwrap();
    in_use(RandomAccess::<u64>::open(&dir, "a/arr").map(drop), "a/arr");
    in_use(dir.remove("a"), "a/arr");
    let j = Journal::<u64>::open(&dir, "j").unwrap();
    in_use(Journal::<u64>::open(&dir, "j").map(drop), "j");
    let e = Entropy::open(&dir, "e").unwrap();
    in_use(Entropy::open(&dir, "e").map(drop), "e");
    let map = OnceMap::open(&dir, "m").unwrap();
    map.insert(b"k", b"v").unwrap();
    in_use(OnceMap::open(&dir, "m").map(drop), "m/");
    in_use(TypedOnceMap::<u64, u64>::open(&dir, "m").map(drop), "m/");
    // A OnceMap is not a Content store, open or not (the catalog's record says so).
    assert!(matches!(
        Content::open(&dir, "m").map(drop),
        Err(Error::Incompatible { .. })
    ));
    in_use(AppendOnly::open(&dir, "m/log").map(drop), "m/log");
    let blobs = Content::open(&dir, "c").unwrap();
    in_use(Content::open(&dir, "c").map(drop), "c/");
    // The refused opens took nothing away from the open handles.
    assert_eq!(map.get(b"k").unwrap(), Some(&b"v"[..]));
    assert!(map.insert(b"k2", b"v2").unwrap().is_inserted());
    map.sync().unwrap();
    log.append(b"x").unwrap();
    drop((log, arr, j, e, map, blobs));
    // Dropping releases every name.
    AppendOnly::open(&dir, "log").unwrap();
    RandomAccess::<u64>::open(&dir, "a/arr").unwrap();
    Journal::<u64>::open(&dir, "j").unwrap();
    Entropy::open(&dir, "e").unwrap();
    Content::open(&dir, "c").unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    assert_eq!(map.len(), 2);
}

/// A OnceMap open that fails part-way (one of its four names is taken) releases the names
/// it had already claimed.
#[test]
fn failed_composite_open_releases_its_names() {
    let dir = Dir::temporary().unwrap();
    // The map exists (a new name holding another structure is refused before any claim).
    drop(OnceMap::open(&dir, "m").unwrap());
    let squatter = AppendOnly::open(&dir, "m/log").unwrap();
    assert!(matches!(
        OnceMap::open(&dir, "m"),
        Err(Error::NameInUse { .. })
    ));
    drop(squatter);
    let map = OnceMap::open(&dir, "m").unwrap();
    assert!(map.insert(b"k", b"v").unwrap().is_inserted());
}

#[test]
fn journal_value_too_large() {
    let dir = Dir::temporary().unwrap();
    type TooBig = [[u8; 4096]; 17];
    assert!(size_of::<TooBig>() > JOURNAL_VALUE_BYTES_MAX);
    assert_limit(
        Journal::<TooBig>::open(&dir, "big"),
        "JOURNAL_VALUE_BYTES_MAX",
        size_of::<TooBig>() as u64,
    );
    // The refused open did not claim the name; the largest allowed value works.
    type Largest = [[u8; 4096]; 16];
    assert_eq!(size_of::<Largest>(), JOURNAL_VALUE_BYTES_MAX);
    let j = Journal::<Largest>::open(&dir, "big").unwrap();
    j.update(|v| v[15][4095] = 7).unwrap();
    j.sync().unwrap();
    drop(j);
    let j = Journal::<Largest>::open(&dir, "big").unwrap();
    assert_eq!(j.get()[15][4095], 7);
}

#[test]
fn random_access_bad_index_and_element_size() {
    let dir = Dir::temporary().unwrap();
    let arr = RandomAccess::<u64>::open(&dir, "arr").unwrap();
    arr.set(5, 55).unwrap();
    for index in [u64::MAX, u64::MAX - 1, 1 << 63, 4096u64 << 32] {
        let requested = index.saturating_add(1);
        assert_limit(arr.set(index, 1), "RandomAccess capacity", requested);
        assert_limit(
            arr.with_mut(index, |v| *v),
            "RandomAccess capacity",
            requested,
        );
        assert_eq!(arr.get(index).unwrap().map(|r| *r), None);
        assert_eq!(arr.read(index).unwrap(), 0);
    }
    assert!(matches!(
        arr.reserve(u64::MAX),
        Err(Error::LimitExceeded { .. })
    ));
    assert_eq!(arr.len(), 6, "refused writes change nothing");
    assert_eq!(arr.read(5).unwrap(), 55);
    arr.set(6, 66).unwrap();
    assert_eq!(arr.len(), 7);

    type TooBig = [[u8; 4096]; 17];
    assert!(size_of::<TooBig>() > ELEMENT_SIZE_BYTES_MAX);
    assert_limit(
        RandomAccess::<TooBig>::open(&dir, "big"),
        "ELEMENT_SIZE_BYTES_MAX",
        size_of::<TooBig>() as u64,
    );
    assert!(matches!(
        RandomAccess::<()>::open(&dir, "zst"),
        Err(Error::LimitExceeded { .. })
    ));
}

#[test]
fn incompatible_element_and_value_sizes() {
    let dir = Dir::temporary().unwrap();
    let incompatible = |result: Result<(), Error>, file: &str| match result {
        Err(e @ Error::Incompatible { .. }) => {
            assert!(e.to_string().contains(file), "{e} names no {file}");
        }
        other => panic!("want Incompatible ({file}), got {other:?}"),
    };
    let arr = RandomAccess::<u64>::open(&dir, "arr").unwrap();
    arr.set(10, 1).unwrap();
    arr.sync().unwrap();
    drop(arr);
    incompatible(
        RandomAccess::<u32>::open(&dir, "arr").map(drop),
        "cells-00.acc",
    );
    incompatible(
        RandomAccess::<[u64; 2]>::open(&dir, "arr").map(drop),
        "cells-00.acc",
    );
    // Written but never synced: opening with another size may succeed (the recorded
    // length is 0), but touching the lane is refused.
    let arr = RandomAccess::<u64>::open(&dir, "unsynced").unwrap();
    arr.set(3, 1).unwrap();
    drop(arr);
    if let Ok(arr) = RandomAccess::<u32>::open(&dir, "unsynced") {
        incompatible(arr.set(3, 2), "cells-00.acc");
        assert!(matches!(
            arr.with_mut(4, |v| *v),
            Err(Error::Incompatible { .. })
        ));
    }

    let j = Journal::<u64>::open(&dir, "j").unwrap();
    j.set(7).unwrap();
    j.sync().unwrap();
    drop(j);
    incompatible(Journal::<u32>::open(&dir, "j").map(drop), "journal.acc");
    incompatible(
        Journal::<[u64; 2]>::open(&dir, "j").map(drop),
        "journal.acc",
    );
    // A refused open leaves the file intact.
    assert_eq!(Journal::<u64>::open(&dir, "j").unwrap().get(), 7);

    // A OnceMap entry whose bytes are not a V reads as Incompatible through a typed map.
    let map = OnceMap::open(&dir, "m").unwrap();
    map.insert(bytemuck::bytes_of(&1u64), b"short").unwrap();
    map.sync().unwrap();
    drop(map);
    let typed = TypedOnceMap::<u64, [u64; 2]>::open(&dir, "m").unwrap();
    incompatible(typed.get(&1).map(drop), "log");
    let entries: Vec<_> = typed.iter().collect();
    assert_eq!(entries.len(), 1);
    assert!(matches!(entries[0], Err(Error::Incompatible { .. })));
    assert!(matches!(
        typed.insert(&1, &[1, 2]),
        Err(Error::Incompatible { .. })
    ));
    assert!(typed.insert(&2, &[1, 2]).unwrap().is_inserted());
}

#[test]
fn foreign_directory_and_double_open() {
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), b"my notes").unwrap();
    match Dir::open(foreign.path()) {
        Err(e @ Error::Incompatible { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("notes.txt"), "{msg} names no file");
        }
        other => panic!("want Incompatible, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(foreign.path().join("notes.txt")).unwrap(),
        b"my notes",
        "a refused directory's files are left alone"
    );
    assert!(!foreign.path().join("accretion.acc").exists());

    // A path that is a file is an I/O error, not a panic.
    let file = foreign.path().join("notes.txt");
    assert!(matches!(Dir::open(&file), Err(Error::Io { .. })));

    let store = tempfile::tempdir().unwrap();
    let dir = Dir::open(store.path()).unwrap();
    match Dir::open(store.path()) {
        Err(e @ Error::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&store.path().display().to_string()), "{msg}");
        }
        other => panic!("want Locked, got {other:?}"),
    }
    // The lock is held while any structure is open, even after the Dir is dropped.
    let log = AppendOnly::open(&dir, "log").unwrap();
    drop(dir);
    assert!(matches!(Dir::open(store.path()), Err(Error::Locked { .. })));
    drop(log);
    let dir = Dir::open(store.path()).unwrap();
    // A clone shares the lock.
    let clone = dir.clone();
    drop(dir);
    assert!(matches!(Dir::open(store.path()), Err(Error::Locked { .. })));
    drop(clone);
    Dir::open(store.path()).unwrap();
}

/// "Pointing a store at your home directory does nothing" (ARCHITECTURE.md): a refused
/// directory holds exactly the files it held before.
#[test]
fn refused_foreign_directory_is_left_untouched() {
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), b"my notes").unwrap();
    assert!(matches!(
        Dir::open(foreign.path()),
        Err(Error::Incompatible { .. })
    ));
    let entries: Vec<String> = std::fs::read_dir(foreign.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        vec!["notes.txt"],
        "files left in a refused directory"
    );
}

/// A reader that fails with a real error (not `Interrupted`) part-way.
struct Broken(usize);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.0.min(buf.len());
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn content_reader_error() {
    let dir = Dir::temporary().unwrap();
    let blobs = Content::open(&dir, "c").unwrap();
    match blobs.insert_reader(Broken(100_000)) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("disk on fire"), "{e}"),
        other => panic!("want Io, got {other:?}"),
    }
    assert_eq!(blobs.len(), 0, "nothing stored from a failed reader");
    let id = blobs.insert(b"fine").unwrap();
    assert_eq!(blobs.get(&id).unwrap(), Some(&b"fine"[..]));
}
