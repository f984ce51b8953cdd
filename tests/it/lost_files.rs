//! A structure's anchor file deleted from under it (a register or the entropy), while
//! the files it describes remain: open refuses with `Corrupted` naming the missing
//! file, rather than starting over empty on top of the data. The anchors are created,
//! durably, before anything else of their structure, so no crash leaves this state; a
//! structure that has no other files yet still opens as new.

use std::fs;
use std::path::Path;

use accretion::{AppendOnly, Content, Dir, Error, LogOptions, LogStore, OnceMap, RandomAccess};

/// Asserts `result` is `Corrupted` naming `missing`.
fn refused<T>(result: accretion::Result<T>, missing: &Path) {
    match result {
        Err(Error::Corrupted { path, what, .. }) => {
            assert_eq!(path, missing, "names the missing file ({what})");
            assert!(what.contains("missing"), "says what is wrong: {what}");
        }
        Err(e) => panic!("expected Corrupted for {}, got {e}", missing.display()),
        Ok(_) => panic!("opened without {}", missing.display()),
    }
}

#[test]
fn append_only_without_its_length_register() {
    let dir = Dir::temporary().unwrap();
    let buf = AppendOnly::open(&dir, "b").unwrap();
    buf.append(b"kept").unwrap();
    buf.sync().unwrap();
    drop(buf);
    let length = dir.path().join("b/length.acc");
    fs::remove_file(&length).unwrap();
    refused(AppendOnly::open(&dir, "b"), &length);
    // Still refused the second time: the failed open left no new register behind.
    refused(AppendOnly::open(&dir, "b"), &length);
}

#[test]
fn random_access_without_its_length_register() {
    let dir = Dir::temporary().unwrap();
    let array = RandomAccess::<u64>::open(&dir, "a").unwrap();
    array.set(3, 7).unwrap();
    array.sync().unwrap();
    drop(array);
    let length = dir.path().join("a/length.acc");
    fs::remove_file(&length).unwrap();
    refused(RandomAccess::<u64>::open(&dir, "a"), &length);
}

#[test]
fn a_structure_with_no_data_yet_opens_as_new_without_its_register() {
    let dir = Dir::temporary().unwrap();
    drop(AppendOnly::open(&dir, "b").unwrap());
    drop(RandomAccess::<u64>::open(&dir, "a").unwrap());
    fs::remove_file(dir.path().join("b/length.acc")).unwrap();
    fs::remove_file(dir.path().join("a/length.acc")).unwrap();
    assert!(AppendOnly::open(&dir, "b").unwrap().is_empty());
    assert_eq!(RandomAccess::<u64>::open(&dir, "a").unwrap().len(), 0);
}

#[test]
fn once_map_and_content_without_their_entropy() {
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    map.insert(b"key", b"value").unwrap();
    map.sync().unwrap();
    drop(map);
    let content = Content::open(&dir, "c").unwrap();
    content.insert(b"blob").unwrap();
    content.sync().unwrap();
    drop(content);
    for name in ["m", "c"] {
        let entropy = dir.path().join(name).join("entropy");
        fs::remove_dir_all(&entropy).unwrap();
        let result = if name == "m" {
            OnceMap::open(&dir, name).map(drop)
        } else {
            Content::open(&dir, name).map(drop)
        };
        refused(result, &entropy);
    }
    // An empty map whose entropy is gone has lost nothing: it opens.
    drop(OnceMap::open(&dir, "empty").unwrap());
    fs::remove_dir_all(dir.path().join("empty/entropy")).unwrap();
    assert!(OnceMap::open(&dir, "empty").unwrap().is_empty());
}

#[test]
fn log_store_without_a_segment_length_register() {
    let dir = Dir::temporary().unwrap();
    let store = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
    store.put(b"k", b"v").unwrap();
    store.sync().unwrap();
    drop(store);
    let length = dir.path().join("kv/log-0000000001/length.acc");
    assert!(length.exists(), "the layout this test assumes");
    fs::remove_file(&length).unwrap();
    refused(LogStore::open(&dir, "kv", LogOptions::default()), &length);
}
