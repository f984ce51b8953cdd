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
