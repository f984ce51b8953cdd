//! What a sync flushes: a durable OnceMap's `sync` after one insert flushes about that
//! entry's bytes (its log record), not the index, however many keys the map holds.

use std::time::Instant;

use accretion::{Dir, OnceMap};

/// Inserts and syncs measured after the map is built.
const MEASURED: usize = 200;

/// Builds a map of `keys` small entries without a sync per insert, syncs once, then
/// measures `MEASURED` insert+sync pairs; returns the median bytes flushed per pair and
/// the entry size.
fn median_flush_per_insert(keys: u64) -> (u64, u64) {
    let start = Instant::now();
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    for i in 0..keys {
        map.insert(&i.to_le_bytes(), &i.to_be_bytes()).unwrap();
    }
    map.sync().unwrap();
    let built = start.elapsed();
    let mut flushed = Vec::with_capacity(MEASURED);
    for i in keys..keys + MEASURED as u64 {
        let before = map.flushed_bytes();
        map.insert(&i.to_le_bytes(), &i.to_be_bytes()).unwrap();
        map.sync().unwrap();
        flushed.push(map.flushed_bytes() - before);
    }
    flushed.sort_unstable();
    // A frame (16), the entry header (32), the key padded to 16, the value, padded to 16.
    let entry = 16 + 32 + 16 + 16;
    println!(
        "{keys} keys: built in {built:?}, flushed per insert+sync: median {} bytes, \
         max {}, entry {entry} bytes, total {:?}",
        flushed[MEASURED / 2],
        flushed[MEASURED - 1],
        start.elapsed()
    );
    assert_eq!(map.len(), keys + MEASURED as u64);
    (flushed[MEASURED / 2], entry)
}

/// At 100k and at 1M keys a typical insert+sync flushes the entry's record (within a
/// small factor), the same at both sizes: the index, 8 MiB and more, is not flushed.
#[test]
fn a_once_map_sync_flushes_only_what_changed() {
    let (small, entry) = median_flush_per_insert(100_000);
    assert!(
        small > 0 && small <= 2 * entry,
        "100k keys: {small} bytes per insert+sync, entry {entry}"
    );
    let (large, entry) = median_flush_per_insert(1_000_000);
    assert!(
        large > 0 && large <= 2 * entry,
        "1M keys: {large} bytes per insert+sync, entry {entry}"
    );
    assert_eq!(small, large, "the flush does not grow with the index");
}
