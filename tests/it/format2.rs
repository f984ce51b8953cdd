//! Regressions of the format-2 (framed) write path found by review.

use accretion::{AppendOnly, Dir, LogOptions, LogStore};

/// A store whose active segment is sealed (a roll sealed it, and the process died before
/// the new segment took a record, so open took no segment past it) must not write into
/// it. Found by a kill test: a put failed with `Sealed`.
#[test]
fn a_sealed_active_segment_is_rolled_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let kv = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
        kv.put(b"a", b"1").unwrap();
    }
    {
        // What the roll leaves in the page cache when the process dies right after it.
        let dir = Dir::open(tmp.path()).unwrap();
        let seg = AppendOnly::open(&dir, "kv/log-0000000001").unwrap();
        seg.seal().unwrap();
    }
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
    assert_eq!(kv.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    kv.put(b"b", b"2").unwrap();
    kv.sync().unwrap();
    drop(kv);
    let kv = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
    assert_eq!(kv.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(kv.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
}

/// Reopening a map whose index was not synced since its entries were added (the index is
/// synced every 4 MiB of log) finds the slots the last session wrote and adds none. Found
/// by review: each open placed every such entry again, so the index grew at every open.
#[test]
fn reopening_a_map_adds_no_index_slots() {
    use accretion::OnceMap;
    let tmp = tempfile::tempdir().unwrap();
    let index_bytes = |tmp: &std::path::Path| {
        let mut all = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(tmp.join("m/index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            all.extend(std::fs::read(path).unwrap());
        }
        all
    };
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        for i in 0..3000u32 {
            map.insert(&i.to_le_bytes(), b"value").unwrap();
        }
        map.sync().unwrap();
    }
    // The first reopen may record what it found; from then on nothing changes.
    drop(OnceMap::open(&Dir::open(tmp.path()).unwrap(), "m").unwrap());
    let before = index_bytes(tmp.path());
    for _ in 0..3 {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        assert_eq!(map.len(), 3000);
        for i in (0..3000u32).step_by(7) {
            assert_eq!(map.get(&i.to_le_bytes()).unwrap(), Some(&b"value"[..]));
        }
    }
    assert!(
        index_bytes(tmp.path()) == before,
        "an open changed the index"
    );
}
