//! Each primitive through its public API against a std model: seeded random operations,
//! with the handles dropped and reopened from the same directory along the way. What a
//! reopen keeps is what the last sync covered.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::io::{self, Read};
use std::path::Path;

use accretion::{
    AppendOnly, Content, ContentId, Dir, Entropy, Error, Insert, Journal, OnceMap, RandomAccess,
    Span, TypedOnceMap,
};
use bytemuck::Pod;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};

use crate::common::Seeded;

/// A store directory at a fixed path that can be closed and opened again. The directory
/// is removed when the value is dropped (after every `Dir` opened from it).
struct Store {
    tmp: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        Store {
            tmp: tempfile::Builder::new()
                .prefix("accretion-model-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn open(&self) -> Dir {
        Dir::open(self.path()).unwrap()
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

// ---------------------------------------------------------------------------------------
// Journal

#[test]
fn journal_matches_model() {
    let mut s = Seeded::new("journal_matches_model");
    let store = Store::new();
    let mut dir = store.open();
    let mut j = Journal::<[u64; 3]>::open(&dir, "state").unwrap();
    assert_eq!(j.get(), [0; 3], "a new journal reads as zeros");
    assert_eq!(j.recovered_slot(), (None, 0));
    let mut current = [0u64; 3];
    let mut synced = [0u64; 3];
    // Syncs that wrote a slot (a sync with nothing new to write writes nothing).
    let mut written = 0usize;
    let mut dirty = false;
    for _ in 0..400 {
        match s.rng.random_range(0..100) {
            0..35 => {
                current = s.rng.random();
                j.set(current).unwrap();
                dirty = true;
            }
            35..65 => {
                let at = s.rng.random_range(0..3);
                let add: u64 = s.rng.random();
                let before = current;
                let seen = j
                    .update(|v| {
                        let old = *v;
                        v[at] = v[at].wrapping_add(add);
                        old
                    })
                    .unwrap();
                assert_eq!(seen, before, "update sees the current value");
                current[at] = current[at].wrapping_add(add);
                dirty = true;
            }
            65..82 => {
                j.sync().unwrap();
                synced = current;
                written += usize::from(dirty);
                dirty = false;
            }
            82..92 => {
                drop(j);
                if s.rng.random_bool(0.3) {
                    drop(dir);
                    dir = store.open();
                }
                j = Journal::<[u64; 3]>::open(&dir, "state").unwrap();
                assert_eq!(j.get(), synced, "reopen yields the last synced value");
                let (slot, valid) = j.recovered_slot();
                assert_eq!(
                    slot.is_some(),
                    written > 0,
                    "recovered from a slot iff synced"
                );
                assert_eq!(valid, written.min(4), "every written slot is valid");
                current = synced;
                dirty = false;
            }
            _ => {
                // A journal opened twice at once is refused.
                assert!(matches!(
                    Journal::<[u64; 3]>::open(&dir, "state"),
                    Err(Error::NameInUse { .. })
                ));
            }
        }
        assert_eq!(j.get(), current, "get returns the last value set");
    }
}

// ---------------------------------------------------------------------------------------
// AppendOnly

/// Checks `chunks()` against the records: contiguous lanes covering `len()`, every record's
/// bytes at its offset, every other byte zero.
fn check_chunks(log: &AppendOnly, records: &[(Span, Vec<u8>)]) {
    let mut all = Vec::new();
    for chunk in log.chunks() {
        let (offset, bytes) = chunk.unwrap();
        assert_eq!(
            offset,
            all.len() as u64,
            "chunks are contiguous and in order"
        );
        all.extend_from_slice(bytes);
    }
    assert_eq!(all.len() as u64, log.len(), "chunks cover exactly len()");
    let mut covered = vec![false; all.len()];
    for (span, bytes) in records {
        let range = span.offset() as usize..span.end() as usize;
        assert_eq!(&all[range.clone()], &bytes[..], "record at {span:?}");
        covered[range].fill(true);
    }
    // Format 2: outside the records there are only frames (16 bytes at a multiple of
    // 16, none overlapping a record) and zeros: the padding after a record's end up to
    // the next multiple of 16, alignment gaps and lane ends read as zeros.
    let stray = all.iter().enumerate().position(|(i, b)| {
        let block = i / 16 * 16;
        !covered[i] && *b != 0 && covered[block..(block + 16).min(all.len())].contains(&true)
    });
    assert_eq!(
        stray, None,
        "bytes outside records and frames read as zeros"
    );
    // The frame walk finds exactly the records, in order.
    let walked: Vec<Span> = log.records(0).map(Result::unwrap).collect();
    let spans: Vec<Span> = records.iter().map(|(s, _)| *s).collect();
    assert_eq!(walked, spans, "records(0) walks exactly the records");
}

#[test]
fn append_only_matches_model() {
    let mut s = Seeded::new("append_only_matches_model");
    let store = Store::new();
    let mut dir = store.open();
    let mut log = AppendOnly::open(&dir, "log").unwrap();
    assert!(log.is_empty());
    assert_eq!(log.get(Span::new(0, 0)).unwrap(), b"");
    let mut records: Vec<(Span, Vec<u8>)> = Vec::new();
    let mut larges = 0;
    for _ in 0..1500 {
        let before = log.len();
        match s.rng.random_range(0..100) {
            0..45 => {
                let len = s.rng.random_range(0..300);
                let bytes = random_bytes(&mut s.rng, len);
                let span = log.append(&bytes).unwrap();
                assert_eq!(span.len(), len as u64);
                assert!(span.offset() >= before, "appends go at the end");
                assert_eq!(log.len(), span.end(), "a returned record is readable");
                assert_eq!(log.get(span).unwrap(), &bytes[..]);
                records.push((span, bytes));
            }
            45..65 => {
                let len = s.rng.random_range(0..300);
                let align = 1usize << s.rng.random_range(0..=6);
                let bytes = random_bytes(&mut s.rng, len);
                let span = log.append_aligned(&bytes, align).unwrap();
                assert_eq!(span.offset() % align as u64, 0, "aligned to {align}");
                assert!(span.offset() >= before);
                assert_eq!(log.len(), span.end());
                let got = log.get(span).unwrap();
                assert_eq!(got, &bytes[..]);
                if !got.is_empty() {
                    assert_eq!(got.as_ptr() as usize % align, 0, "aligned in memory too");
                }
                records.push((span, bytes));
            }
            65..67 => {
                // Larger than the first lane: always lands at the start of a later lane.
                larges += 1;
                let len = s.rng.random_range(64 * 1024 + 1..160 * 1024);
                let align = 1usize << s.rng.random_range(0..=6);
                let bytes = random_bytes(&mut s.rng, len);
                let mut filled_at = None;
                let span = log
                    .append_with(len, align, |offset, dest| {
                        assert_eq!(dest.len(), len);
                        dest.copy_from_slice(&bytes);
                        filled_at = Some(offset);
                    })
                    .unwrap();
                assert_eq!(filled_at, Some(span.offset()), "fill is told the offset");
                assert_eq!(span.offset() % align as u64, 0);
                assert!(span.offset() >= before);
                assert_eq!(log.get(span).unwrap(), &bytes[..]);
                records.push((span, bytes));
            }
            67..85 => {
                if let Some((span, bytes)) = records.choose(&mut s.rng) {
                    assert_eq!(log.get(*span).unwrap(), &bytes[..], "record at {span:?}");
                    // Any sub-span of a record reads the same bytes.
                    let a = s.rng.random_range(0..=bytes.len());
                    let b = s.rng.random_range(a..=bytes.len());
                    let sub = Span::new(span.offset() + a as u64, (b - a) as u64);
                    assert_eq!(log.get(sub).unwrap(), &bytes[a..b]);
                }
            }
            85..90 => {
                log.sync().unwrap();
                assert_eq!(log.durable_len(), log.len());
            }
            90..94 => {
                drop(log);
                if s.rng.random_bool(0.3) {
                    drop(dir);
                    dir = store.open();
                }
                log = AppendOnly::open(&dir, "log").unwrap();
                // Format 2: every append that returned survives a drop without sync
                // (adopted through its frame), synced or not.
                assert_eq!(log.len(), before, "reopen keeps every returned append");
                assert_eq!(log.durable_len(), before);
                assert!(log.adopted_bytes() <= before);
                for (span, bytes) in &records {
                    assert_eq!(log.get(*span).unwrap(), &bytes[..], "record {span:?}");
                }
            }
            _ => check_chunks(&log, &records),
        }
        assert!(log.durable_len() <= log.len());
    }
    assert!(larges > 0, "no record larger than a lane was appended");
    check_chunks(&log, &records);
    log.sync().unwrap();
    let len = log.len();
    drop(log);
    let log = AppendOnly::open(&dir, "log").unwrap();
    assert_eq!(log.len(), len);
    check_chunks(&log, &records);
}

/// Records that do not fit in the rest of a lane skip to the next lane, never straddle,
/// and the skipped bytes read as zeros; `get` of a range across a lane boundary fails.
#[test]
fn append_only_lane_boundaries() {
    let mut s = Seeded::new("append_only_lane_boundaries");
    let dir = Dir::temporary().unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    let base = accretion::limits::APPEND_LANE_BASE_BYTES;
    let mut records = Vec::new();
    // Fill lane 0 up to 20 bytes short of its end (its frame takes 16 bytes in front).
    let first = random_bytes(&mut s.rng, (base - 16 - 20) as usize);
    let span = log.append(&first).unwrap();
    assert_eq!(span.offset(), 16, "behind its frame");
    records.push((span, first));
    // The next frame would fit (at base - 16), its record not: a LaneEnd frame there,
    // and the record goes behind its frame at the start of lane 1.
    let tail = random_bytes(&mut s.rng, 9);
    let span = log.append(&tail).unwrap();
    assert_eq!(span.offset(), base + 16, "skipped to lane 1");
    records.push((span, tail));
    assert!(matches!(
        log.get(Span::new(base - 4, 8)),
        Err(Error::OutOfBounds { .. })
    ));
    // Exactly filling the rest of lane 1 stays in lane 1.
    let rest = (3 * base - (log.len().next_multiple_of(16) + 16)) as usize;
    let exact = random_bytes(&mut s.rng, rest);
    let span = log.append(&exact).unwrap();
    assert_eq!(span.end(), 3 * base, "fills lane 1 to its end");
    records.push((span, exact));
    // A record bigger than lanes 2 and 3 together goes to lane 4 (starting at 15 * base).
    let big = random_bytes(&mut s.rng, (12 * base + 1) as usize);
    let span = log.append(&big).unwrap();
    assert_eq!(span.offset(), 15 * base + 16);
    records.push((span, big));
    check_chunks(&log, &records);
    log.sync().unwrap();
    drop(log);
    let log = AppendOnly::open(&dir, "log").unwrap();
    check_chunks(&log, &records);
    let next = log.append(b"after").unwrap();
    assert_eq!(
        next.offset(),
        records.last().unwrap().0.end().next_multiple_of(16) + 16
    );
}

// ---------------------------------------------------------------------------------------
// RandomAccess

fn random_access_model<T: Pod + PartialEq + Debug>(
    s: &mut Seeded,
    ops: usize,
    gen_value: fn(&mut StdRng) -> T,
    mutate: fn(&mut T, u64),
) {
    let store = Store::new();
    let mut dir = store.open();
    let mut arr = RandomAccess::<T>::open(&dir, "arr").unwrap();
    let mut model: HashMap<u64, T> = HashMap::new();
    let mut written: Vec<u64> = Vec::new();
    let zero = T::zeroed();
    let expect_len = |model: &HashMap<u64, T>| model.keys().max().map_or(0, |m| m + 1);
    for _ in 0..ops {
        let index = match s.rng.random_range(0..10) {
            0..3 if !written.is_empty() => *written.choose(&mut s.rng).unwrap(),
            0..6 => s.rng.random_range(0..10_000),
            _ => s.rng.random_range(0..2_000_000),
        };
        match s.rng.random_range(0..100) {
            0..25 => {
                let value = if s.rng.random_bool(0.05) {
                    zero
                } else {
                    gen_value(&mut s.rng)
                };
                arr.set(index, value).unwrap();
                if model.insert(index, value).is_none() {
                    written.push(index);
                }
            }
            25..50 => {
                let p: u64 = s.rng.random();
                let old = arr
                    .with_mut(index, |v| {
                        let old = *v;
                        mutate(v, p);
                        old
                    })
                    .unwrap();
                let entry = model.entry(index).or_insert_with(|| {
                    written.push(index);
                    zero
                });
                assert_eq!(old, *entry, "with_mut sees the stored value at {index}");
                mutate(entry, p);
            }
            50..70 => {
                let got = arr.get(index).unwrap().map(|r| *r);
                let want = model.get(&index).copied().filter(|v| *v != zero);
                assert_eq!(got, want, "get({index})");
            }
            70..90 => {
                let want = model.get(&index).copied().unwrap_or(zero);
                assert_eq!(arr.read(index).unwrap(), want, "read({index})");
            }
            90..93 => {
                // Reserving space never changes the length.
                let len = arr.len();
                arr.reserve(s.rng.random_range(0..2_000_000)).unwrap();
                assert_eq!(arr.len(), len);
            }
            93..97 => arr.sync().unwrap(),
            _ => {
                arr.sync().unwrap();
                drop(arr);
                if s.rng.random_bool(0.3) {
                    drop(dir);
                    dir = store.open();
                }
                arr = RandomAccess::<T>::open(&dir, "arr").unwrap();
                for (&i, v) in &model {
                    assert_eq!(arr.read(i).unwrap(), *v, "read({i}) after reopen");
                }
            }
        }
        assert_eq!(
            arr.len(),
            expect_len(&model),
            "len is one past the highest write"
        );
        assert_eq!(arr.is_empty(), model.is_empty());
    }
    for (&i, v) in &model {
        assert_eq!(
            arr.get(i).unwrap().map(|r| *r),
            Some(*v).filter(|v| *v != zero)
        );
    }
    let len = arr.len();
    assert_eq!(arr.get(len).unwrap().map(|r| *r), None, "past the end");
    assert_eq!(
        arr.read(u64::MAX).unwrap(),
        zero,
        "far past the end reads zero"
    );
}

#[test]
fn random_access_u64_matches_model() {
    let mut s = Seeded::new("random_access_u64_matches_model");
    random_access_model::<u64>(
        &mut s,
        3000,
        |rng| rng.random(),
        |v, p| *v = v.wrapping_add(p | 1),
    );
}

#[test]
fn random_access_array_matches_model() {
    let mut s = Seeded::new("random_access_array_matches_model");
    random_access_model::<[u32; 5]>(
        &mut s,
        3000,
        |rng| rng.random(),
        |v, p| {
            let at = (p % 5) as usize;
            v[at] = v[at].wrapping_add((p >> 8) as u32 | 1);
        },
    );
}

/// `reserve(len)` promises space for `len` elements; `capacity()` reports the elements
/// backed by mapped lanes. After a reserve, the capacity covers it.
#[test]
fn random_access_reserve_covers_capacity() {
    let dir = Dir::temporary().unwrap();
    let arr = RandomAccess::<u64>::open(&dir, "arr").unwrap();
    assert_eq!(arr.capacity(), 0);
    arr.reserve(1_000_000).unwrap();
    assert_eq!(arr.len(), 0, "reserve does not change len");
    // Lane i holds 4096 << i elements: 1_000_000 elements need lanes 0..=7, all allocated
    // now so that no later write below 1_000_000 needs new disk space.
    let lane_files = || {
        let mut lanes: Vec<String> = std::fs::read_dir(dir.path().join("arr"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("cells-"))
            .collect();
        lanes.sort();
        lanes
    };
    let want: Vec<String> = (0..=7).map(|i| format!("cells-{i:02}.acc")).collect();
    assert_eq!(lane_files(), want, "lane files after reserve(1_000_000)");
    assert!(
        arr.capacity() >= 1_000_000,
        "capacity {} after reserve(1_000_000)",
        arr.capacity()
    );
    // Writes below the reserved length need no new lane.
    arr.set(999_999, 7).unwrap();
    arr.set(0, 1).unwrap();
    arr.set(300_000, 3).unwrap();
    assert_eq!(arr.len(), 1_000_000);
    assert_eq!(lane_files(), want);
}

// ---------------------------------------------------------------------------------------
// OnceMap

/// The model of a OnceMap: first write wins; `order` is insertion order; the first
/// `synced` entries of `order` were covered by the last sync.
#[derive(Default)]
struct MapModel {
    values: HashMap<Vec<u8>, Vec<u8>>,
    order: Vec<Vec<u8>>,
    synced: usize,
}

impl MapModel {
    /// Applies an insert to the model and checks the map's answer against it.
    fn check_insert(&mut self, key: &[u8], value: &[u8], got: Insert<'_>) {
        match self.values.get(key) {
            Some(old) => {
                assert!(
                    matches!(got, Insert::Existing(v) if v == &old[..]),
                    "insert of existing key {key:?} returned {got:?}, want Existing({old:?})"
                );
            }
            None => {
                assert!(
                    matches!(got, Insert::Inserted(v) if v == value),
                    "insert of new key {key:?} returned {got:?}"
                );
                self.values.insert(key.to_vec(), value.to_vec());
                self.order.push(key.to_vec());
            }
        }
    }

    /// Forgets the entries the last sync did not cover, returning their keys.
    /// After a drop and reopen: every insert that returned is still there, synced or
    /// not (format 2 adopts the log's unsynced entries and re-indexes them). Returns the
    /// keys inserted since the last sync.
    fn reopen(&mut self) -> Vec<Vec<u8>> {
        let unsynced = self.order[self.synced..].to_vec();
        self.synced = self.order.len();
        unsynced
    }

    fn check_all(&self, map: &OnceMap) {
        assert_eq!(map.len(), self.order.len() as u64, "len");
        assert_eq!(map.is_empty(), self.order.is_empty());
        for (n, (entry, key)) in map.iter().zip(&self.order).enumerate() {
            let (k, v) = entry.unwrap();
            assert_eq!(k, &key[..], "iter yields entry {n} in insertion order");
            assert_eq!(v, &self.values[key][..]);
        }
        assert_eq!(
            map.iter().count(),
            self.order.len(),
            "iter yields every entry"
        );
        for key in &self.order {
            assert_eq!(
                map.get(key).unwrap(),
                Some(&self.values[key][..]),
                "get {key:?}"
            );
        }
    }
}

struct MapParams {
    ops: usize,
    key_len_max: usize,
    value_len_max: usize,
    /// Percent of inserts that reuse a known key.
    duplicate_pct: u32,
    /// Operations per sync, on average, and per reopen (at least once every so many).
    sync_every: u32,
    reopen_every: u32,
}

fn once_map_model(s: &mut Seeded, p: MapParams) -> usize {
    let store = Store::new();
    let mut dir = store.open();
    let mut map = OnceMap::open(&dir, "map").unwrap();
    let mut m = MapModel::default();
    // Keys seen so far, including ones later lost by a reopen: candidates for duplicates.
    let mut known: Vec<Vec<u8>> = Vec::new();
    let mut most = 0;
    let (mut syncs, mut reopens) = (0, 0);
    for op in 0..p.ops {
        let fresh_key = |rng: &mut StdRng| {
            let len = rng.random_range(0..=p.key_len_max);
            random_bytes(rng, len)
        };
        let r = s.rng.random_range(0..1000u32);
        if s.rng.random_ratio(1, p.sync_every) {
            map.sync().unwrap();
            m.synced = m.order.len();
            syncs += 1;
        } else if op % p.reopen_every as usize == p.reopen_every as usize / 2
            || s.rng.random_ratio(1, p.reopen_every)
        {
            reopens += 1;
            drop(map);
            if s.rng.random_bool(0.3) {
                drop(dir);
                dir = store.open();
            }
            map = OnceMap::open(&dir, "map").unwrap();
            let unsynced = m.reopen();
            for key in &unsynced {
                assert_eq!(
                    map.get(key).unwrap(),
                    Some(&m.values[key][..]),
                    "unsynced key {key:?} survives a drop"
                );
                assert!(map.contains_key(key).unwrap());
            }
            m.check_all(&map);
        } else if r < 750 {
            let key = if !known.is_empty() && s.rng.random_range(0..100) < p.duplicate_pct {
                known.choose(&mut s.rng).unwrap().clone()
            } else {
                fresh_key(&mut s.rng)
            };
            let len = s.rng.random_range(0..=p.value_len_max);
            let value = random_bytes(&mut s.rng, len);
            let got = map.insert(&key, &value).unwrap();
            let inserted = got.is_inserted();
            m.check_insert(&key, &value, got);
            if inserted {
                known.push(key);
            }
        } else if r < 900 {
            let key = if !known.is_empty() && s.rng.random_bool(0.7) {
                known.choose(&mut s.rng).unwrap().clone()
            } else {
                fresh_key(&mut s.rng)
            };
            let want = m.values.get(&key).map(|v| &v[..]);
            assert_eq!(map.get(&key).unwrap(), want, "get {key:?}");
        } else if r < 990 {
            let key = if !known.is_empty() && s.rng.random_bool(0.5) {
                known.choose(&mut s.rng).unwrap().clone()
            } else {
                fresh_key(&mut s.rng)
            };
            assert_eq!(map.contains_key(&key).unwrap(), m.values.contains_key(&key));
        } else {
            assert_eq!(map.len(), m.order.len() as u64);
        }
        if op % 10_000 == 9_999 {
            m.check_all(&map);
        }
        most = most.max(m.order.len());
    }
    m.check_all(&map);
    map.sync().unwrap();
    drop(map);
    let map = OnceMap::open(&dir, "map").unwrap();
    m.synced = m.order.len();
    m.check_all(&map);
    assert!(reopens >= 2, "{reopens} reopens");
    assert!(syncs >= 2, "{syncs} syncs");
    most
}

/// Over 30k entries, so the index spans many levels, with rare syncs and reopens.
#[test]
fn once_map_matches_model_many_entries() {
    let mut s = Seeded::new("once_map_matches_model_many_entries");
    let most = once_map_model(
        &mut s,
        MapParams {
            ops: 80_000,
            key_len_max: 40,
            value_len_max: 200,
            duplicate_pct: 20,
            sync_every: 1_500,
            reopen_every: 15_000,
        },
    );
    assert!(most >= 30_000, "only {most} entries");
}

/// Few short keys (many duplicates, empty keys and values), frequent syncs and reopens.
#[test]
fn once_map_matches_model_duplicates() {
    let mut s = Seeded::new("once_map_matches_model_duplicates");
    once_map_model(
        &mut s,
        MapParams {
            ops: 1_500,
            key_len_max: 2,
            value_len_max: 20,
            duplicate_pct: 60,
            sync_every: 40,
            reopen_every: 100,
        },
    );
}

/// Empty keys and values, and keys that are prefixes of each other, are distinct entries.
#[test]
fn once_map_empty_and_prefix_keys() {
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    assert_eq!(map.get(b"").unwrap(), None);
    assert!(map.insert(b"", b"").unwrap().is_inserted());
    assert!(map.insert(b"a", b"").unwrap().is_inserted());
    assert!(map.insert(b"ab", b"x").unwrap().is_inserted());
    assert!(map.insert(b"a\0", b"y").unwrap().is_inserted());
    assert_eq!(
        map.insert(b"", b"late").unwrap(),
        Insert::Existing(&b""[..])
    );
    assert_eq!(map.get(b"").unwrap(), Some(&b""[..]));
    assert_eq!(map.get(b"a").unwrap(), Some(&b""[..]));
    assert_eq!(map.get(b"ab").unwrap(), Some(&b"x"[..]));
    assert_eq!(map.get(b"a\0").unwrap(), Some(&b"y"[..]));
    assert_eq!(map.get(b"b").unwrap(), None);
    assert_eq!(map.len(), 4);
    map.sync().unwrap();
    drop(map);
    let map = OnceMap::open(&dir, "m").unwrap();
    let entries: Vec<_> = map.iter().map(Result::unwrap).collect();
    assert_eq!(
        entries,
        vec![
            (&b""[..], &b""[..]),
            (&b"a"[..], &b""[..]),
            (&b"ab"[..], &b"x"[..]),
            (&b"a\0"[..], &b"y"[..]),
        ]
    );
}

#[derive(Debug, Clone)]
enum MapOp {
    Insert(Vec<u8>, Vec<u8>),
    Get(Vec<u8>),
    Sync,
    Reopen,
}

fn map_op() -> impl Strategy<Value = MapOp> {
    let key = prop::collection::vec(0u8..4, 0..4);
    let value = prop::collection::vec(any::<u8>(), 0..48);
    prop_oneof![
        8 => (key.clone(), value).prop_map(|(k, v)| MapOp::Insert(k, v)),
        4 => key.prop_map(MapOp::Get),
        1 => Just(MapOp::Sync),
        1 => Just(MapOp::Reopen),
    ]
}

/// Generated operation sequences against the model; proptest shrinks a failure to a
/// minimal sequence. Its RNG is seeded from `ACCRETION_SEED` like every other test.
#[test]
fn once_map_proptest_ops() {
    let seeded = Seeded::new("once_map_proptest_ops");
    let config = ProptestConfig {
        cases: 32,
        rng_seed: RngSeed::Fixed(seeded.seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // One store for all cases; each case uses its own structure name.
    let dir = Dir::temporary().unwrap();
    let case = std::cell::Cell::new(0u32);
    proptest!(config, |(ops in prop::collection::vec(map_op(), 1..40))| {
        case.set(case.get() + 1);
        let name = format!("case{}", case.get());
        let mut map = OnceMap::open(&dir, &name).unwrap();
        let mut values: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        for op in ops {
            match op {
                MapOp::Insert(k, v) => {
                    let got = map.insert(&k, &v).unwrap();
                    match values.get(&k) {
                        Some(old) => prop_assert_eq!(got, Insert::Existing(&old[..])),
                        None => {
                            prop_assert_eq!(got, Insert::Inserted(&v[..]));
                            values.insert(k.clone(), v);
                            order.push(k);
                        }
                    }
                }
                MapOp::Get(k) => {
                    prop_assert_eq!(map.get(&k).unwrap(), values.get(&k).map(|v| &v[..]));
                }
                MapOp::Sync => {
                    map.sync().unwrap();
                    synced = order.len();
                }
                MapOp::Reopen => {
                    drop(map);
                    map = OnceMap::open(&dir, &name).unwrap();
                    // Unsynced inserts survive a drop.
                    for k in &order[synced..] {
                        prop_assert_eq!(map.get(k).unwrap(), values.get(k).map(|v| &v[..]));
                    }
                    synced = order.len();
                }
            }
            prop_assert_eq!(map.len(), order.len() as u64);
        }
        let keys: Vec<Vec<u8>> = map.iter().map(|e| e.unwrap().0.to_vec()).collect();
        prop_assert_eq!(keys, order);
    });
}

// ---------------------------------------------------------------------------------------
// TypedOnceMap

#[test]
fn typed_once_map_matches_model() {
    let mut s = Seeded::new("typed_once_map_matches_model");
    let store = Store::new();
    let dir = store.open();
    let mut map = TypedOnceMap::<u64, [u64; 2]>::open(&dir, "typed").unwrap();
    let mut values: HashMap<u64, [u64; 2]> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut synced = 0;
    for _ in 0..2_000 {
        let key = s.rng.random_range(0..600u64);
        match s.rng.random_range(0..100) {
            0..50 => {
                let value: [u64; 2] = s.rng.random();
                match (map.insert(&key, &value).unwrap(), values.get(&key)) {
                    (Insert::Existing(v), Some(old)) => assert_eq!(v, old),
                    (Insert::Inserted(v), None) => {
                        assert_eq!(*v, value);
                        values.insert(key, value);
                        order.push(key);
                    }
                    (got, want) => panic!("insert {key}: got {got:?}, model has {want:?}"),
                }
            }
            50..95 => assert_eq!(map.get(&key).unwrap(), values.get(&key)),
            95..98 => {
                map.sync().unwrap();
                synced = order.len();
            }
            _ => {
                drop(map);
                map = TypedOnceMap::open(&dir, "typed").unwrap();
                // Unsynced inserts survive a drop.
                for k in &order[synced..] {
                    assert_eq!(map.get(k).unwrap(), values.get(k));
                }
                synced = order.len();
            }
        }
        assert_eq!(map.len(), order.len() as u64);
        assert_eq!(map.is_empty(), order.is_empty());
    }
    let entries: Vec<(u64, [u64; 2])> = map
        .iter()
        .map(|e| e.map(|(k, v)| (*k, *v)).unwrap())
        .collect();
    let want: Vec<(u64, [u64; 2])> = order.iter().map(|k| (*k, values[k])).collect();
    assert_eq!(entries, want, "iter in insertion order");
}

// ---------------------------------------------------------------------------------------
// Content

/// A reader that hands out its bytes a few at a time and is interrupted now and then.
struct Dribble<'a> {
    data: &'a [u8],
    step: usize,
    calls: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn content_matches_model() {
    let mut s = Seeded::new("content_matches_model");
    let store = Store::new();
    let dir = store.open();
    let mut blobs = Content::open(&dir, "blobs").unwrap();
    let mut model: HashMap<ContentId, Vec<u8>> = HashMap::new();
    let mut order: Vec<ContentId> = Vec::new();
    let mut synced = 0;
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for _ in 0..800 {
        match s.rng.random_range(0..100) {
            0..40 => {
                let blob = if !pool.is_empty() && s.rng.random_bool(0.4) {
                    pool.choose(&mut s.rng).unwrap().clone()
                } else {
                    let len = match s.rng.random_range(0..20) {
                        0 => 0,
                        1 => s.rng.random_range(64 * 1024..200 * 1024),
                        _ => s.rng.random_range(1..2_000),
                    };
                    let b = random_bytes(&mut s.rng, len);
                    pool.push(b.clone());
                    b
                };
                let id = if s.rng.random_bool(0.3) {
                    let step = s.rng.random_range(1..100_000);
                    blobs
                        .insert_reader(Dribble {
                            data: &blob,
                            step,
                            calls: 0,
                        })
                        .unwrap()
                } else {
                    blobs.insert(&blob).unwrap()
                };
                assert_eq!(id, ContentId::of(&blob));
                if model.insert(id, blob).is_none() {
                    order.push(id);
                }
            }
            40..75 => {
                let id = match pool.choose(&mut s.rng) {
                    Some(b) if s.rng.random_bool(0.8) => ContentId::of(b),
                    _ => ContentId::from_bytes(s.rng.random()),
                };
                let want = model.get(&id).map(|b| &b[..]);
                assert_eq!(blobs.get(&id).unwrap(), want);
                assert_eq!(blobs.get_unverified(&id).unwrap(), want);
                assert_eq!(blobs.contains(&id).unwrap(), want.is_some());
            }
            75..90 => {
                let ids: Vec<ContentId> = blobs.ids().map(Result::unwrap).collect();
                assert_eq!(ids, order, "ids in insertion order");
            }
            90..96 => {
                blobs.sync().unwrap();
                synced = order.len();
            }
            _ => {
                drop(blobs);
                blobs = Content::open(&dir, "blobs").unwrap();
                for id in &order[synced..] {
                    let want = model.get(id).map(|b| &b[..]);
                    assert_eq!(
                        blobs.get(id).unwrap(),
                        want,
                        "unsynced blob survives a drop"
                    );
                    assert!(blobs.contains(id).unwrap());
                }
                synced = order.len();
            }
        }
        assert_eq!(
            blobs.len(),
            order.len() as u64,
            "duplicates are stored once"
        );
        assert_eq!(blobs.is_empty(), order.is_empty());
    }
    for (id, blob) in &model {
        assert_eq!(blobs.get(id).unwrap(), Some(&blob[..]));
    }
    let distinct: HashSet<ContentId> = blobs.ids().map(Result::unwrap).collect();
    assert_eq!(distinct.len(), order.len(), "no id listed twice");
}

// ---------------------------------------------------------------------------------------
// Entropy

#[test]
fn entropy_is_stable_across_reopen() {
    let store = Store::new();
    let dir = store.open();
    let e = Entropy::open(&dir, "e").unwrap();
    let (h, tag) = (e.hash(b"some key"), e.tag());
    assert_ne!(e.hash(b"some key"), e.hash(b"other key"));
    let nonces: HashSet<[u8; 16]> = (0..1000).map(|_| e.nonce()).collect();
    assert_eq!(nonces.len(), 1000, "nonces never repeat");
    drop(e);
    drop(dir);
    let dir = store.open();
    let e = Entropy::open(&dir, "e").unwrap();
    assert_eq!(e.hash(b"some key"), h, "the key survives reopen");
    assert_eq!(e.tag(), tag);
    assert!(
        !nonces.contains(&e.nonce()),
        "a new session makes new nonces"
    );
    // Another entropy in the same store has another key.
    let other = Entropy::open(&dir, "other").unwrap();
    assert_ne!(other.tag(), tag);
    assert_ne!(other.hash(b"some key"), h);
}
