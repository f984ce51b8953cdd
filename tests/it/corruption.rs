//! Corruption: flipping, zeroing or truncating bytes of every header and slot of a small
//! store gives recovery or a typed error, never a panic.
//!
//! One store holds one of each structure. For every file, every byte of its header page,
//! register slots and written data is flipped (xor 0xff) and zeroed in turn, and the file
//! is truncated to several lengths; each time the owning structure is opened and read in
//! full under `catch_unwind`. Beyond "no panic", the format's own guarantees are checked:
//! a damaged header is always an error, a damaged register slot falls back to the previous
//! synced value and nothing older, and a value returned by a lookup is the right one.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;

use accretion::{
    AppendOnly, Content, ContentId, Dir, Entropy, Error, Journal, OnceMap, RandomAccess, Span,
};

const HEADER_BYTES: usize = 64;
const REGISTER_HEADER_PAGE: usize = 512;
const LANE_DATA_OFFSET: usize = 4096;

// ---------------------------------------------------------------------------------------
// The store and what it holds.

/// Everything written into the store, and the state after each sync.
struct Model {
    /// `(tag, hash(b"x"))` of the top-level Entropy.
    entropy: (u64, u64),
    /// Every value the Journal synced, in order.
    journal: Vec<[u64; 2]>,
    /// Every AppendOnly record, in order: the first [`RECORDED`] with the length recorded
    /// after each, then synced ones whose length is not recorded, then one never synced
    /// (adopted at open all the same).
    records: Vec<(Span, Vec<u8>)>,
    /// The AppendOnly's shape: its records' spans and its recorded length.
    append: Framed,
    /// RandomAccess `(len, elements)` after each sync.
    array: Vec<(u64, BTreeMap<u64, u64>)>,
    /// OnceMap entries in insertion order, the entry count after each sync, and its
    /// log's shape (one record per entry).
    map: Vec<(Vec<u8>, Vec<u8>)>,
    map_counts: Vec<usize>,
    map_log: Framed,
    /// Content blobs in insertion order, the blob count after each sync, and its log's
    /// shape.
    blobs: Vec<Vec<u8>>,
    blob_counts: Vec<usize>,
    blob_log: Framed,
}

/// The records of a framed (format-2) AppendOnly: their payload spans, and the length
/// its `length.acc` records (open walks the frames from there; damage below it is found
/// by walks and checksums, damage past it ends the walk like a torn tail).
#[derive(Clone, Debug, Default)]
struct Framed {
    spans: Vec<Span>,
    recorded: u64,
    /// The buffer's length: the end of its last record.
    len: u64,
}

/// Where damage to a framed buffer landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hit {
    /// Not in any checked byte (padding, the zeros of a Gap, past the end, another file).
    None,
    /// In the frame or payload of record `j` (or the Gap frame in front of it), below
    /// the recorded length: the walks must report it.
    Below(usize),
    /// In record `j`, at or past the recorded length: the open's walk ends before it.
    Tail(usize),
}

impl Framed {
    /// Reads the shape of the buffer `name` (which nothing else holds open), first
    /// recording its length if `record`.
    fn read(dir: &Dir, name: &str, record: bool) -> Framed {
        let a = AppendOnly::open(dir, name).unwrap();
        if record {
            a.sync_recorded().unwrap();
        }
        let spans: Vec<Span> = a.records(0).map(Result::unwrap).collect();
        assert_eq!(spans.last().map_or(0, Span::end), a.len(), "{name}");
        Framed {
            spans,
            recorded: 0,
            len: a.len(),
        }
    }

    /// The record whose checked bytes hold buffer offset `p`: its frame (16 bytes
    /// before its payload), its payload, or a Gap frame in front of it (at the end of
    /// the record before, rounded up to 16). A Gap's zeros and the padding after a
    /// payload are not checked.
    fn record_at(&self, p: u64) -> Option<usize> {
        let frame = AppendOnly::FRAME_BYTES;
        self.spans.iter().enumerate().find_map(|(j, s)| {
            let start = s.offset() - frame;
            let before = if j == 0 {
                0
            } else {
                self.spans[j - 1].end().next_multiple_of(frame)
            };
            let in_gap_frame = before < start && (before..before + frame).contains(&p);
            ((start..s.end()).contains(&p) || in_gap_frame).then_some(j)
        })
    }

    /// Where `damage` to the buffer whose first data file is `data` landed.
    fn hit(&self, damage: Damage, data: &str) -> Hit {
        if damage.rel != data || damage.region != Region::LaneData {
            return Hit::None;
        }
        let p = (damage.at - LANE_DATA_OFFSET) as u64;
        match self.record_at(p) {
            None => Hit::None,
            Some(j) if p < self.recorded => Hit::Below(j),
            Some(j) => Hit::Tail(j),
        }
    }

    /// The records below the recorded length: a shorter walk never loses them.
    fn recorded_records(&self) -> usize {
        self.spans
            .iter()
            .filter(|s| s.end() <= self.recorded)
            .count()
    }

    /// The lengths an open that adopted exactly `n` records may show: from the end of
    /// record `n - 1` to the frame of record `n` (a Gap frame may lie between).
    fn len_range(&self, n: usize) -> std::ops::RangeInclusive<u64> {
        let low = n.checked_sub(1).map_or(0, |i| self.spans[i].end());
        let high = self
            .spans
            .get(n)
            .map_or(self.len, |s| s.offset() - AppendOnly::FRAME_BYTES);
        low..=high
    }
}

impl Model {
    /// The shape of the framed buffer whose first data file is `rel`.
    fn framed(&self, rel: &str) -> Option<&Framed> {
        match rel {
            "append/data-00.acc" => Some(&self.append),
            "map/log/data-00.acc" => Some(&self.map_log),
            "blobs/log/data-00.acc" => Some(&self.blob_log),
            _ => None,
        }
    }
}

/// Records appended (and their length recorded) before the AppendOnly's unrecorded tail.
const RECORDED: usize = 4;
/// OnceMap entries (Content blobs) written in the first session, whose log length is
/// then recorded; the rest are written by a second session and not recorded.
const MAP_RECORDED: usize = 24;
const BLOBS_RECORDED: usize = 2;

fn record_bytes(k: usize) -> Vec<u8> {
    (0..17 + 31 * k)
        .map(|i| (i * 7 + k * 13 + 1) as u8)
        .collect()
}

fn map_entry(i: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("key-{i:02}").into_bytes();
    let value = (0..(i * 5) % 41).map(|b| (b * 3 + i) as u8).collect();
    (key, value)
}

fn blob(i: usize) -> Vec<u8> {
    let len = [1, 100, 1000, 3000][i];
    (0..len).map(|b| (b * 11 + i * 5 + 3) as u8).collect()
}

/// Writes the store at `path` and returns what it holds.
fn build(path: &Path) -> Model {
    let dir = Dir::open(path).unwrap();

    let entropy = Entropy::open(&dir, "entropy").unwrap();
    let entropy = (entropy.tag(), entropy.hash(b"x"));

    let journal = Journal::<[u64; 2]>::open(&dir, "journal").unwrap();
    let mut journal_values = Vec::new();
    for k in 1..=5u64 {
        let v = [k, k * 1000 + 7];
        journal.set(v).unwrap();
        journal.sync().unwrap();
        journal_values.push(v);
    }

    // Records whose length is recorded (one after a Gap), then a tail past the recorded
    // length: synced records (one after a Gap) and one never synced.
    let append = AppendOnly::open(&dir, "append").unwrap();
    let mut records = Vec::new();
    let mut recorded = 0;
    for k in 0..8 {
        let bytes = record_bytes(k);
        let span = if k == 2 || k == 5 {
            append.append_aligned(&bytes, 64).unwrap()
        } else {
            append.append(&bytes).unwrap()
        };
        if k < RECORDED {
            append.sync_recorded().unwrap();
            recorded = append.len();
        } else if k < 7 {
            append.sync().unwrap();
        }
        records.push((span, bytes));
    }
    drop(append);
    let mut append = Framed::read(&dir, "append", false);
    append.recorded = recorded;
    let spans: Vec<Span> = records.iter().map(|(s, _)| *s).collect();
    assert_eq!(append.spans, spans);

    let array = RandomAccess::<u64>::open(&dir, "array").unwrap();
    let mut states = Vec::new();
    let mut elements = BTreeMap::new();
    let batches: [&[(u64, u64)]; 3] = [
        &[(0, 11), (1, 12), (2, 13)],
        &[(10, 0xDEAD_BEEF_0000_0001), (100, u64::MAX)],
        &[(1000, 1 << 63), (4000, 42)],
    ];
    for batch in batches {
        for &(i, v) in batch {
            array.set(i, v).unwrap();
            elements.insert(i, v);
        }
        array.sync().unwrap();
        states.push((array.len(), elements.clone()));
    }

    // Two sessions: the log length is recorded after the first (opening the log as the
    // AppendOnly it is), so that damage lands both below and past it.
    let mut entries = Vec::new();
    let mut map_counts = Vec::new();
    let mut map_recorded = 0;
    for range in [0..MAP_RECORDED, MAP_RECORDED..36] {
        let map = OnceMap::open(&dir, "map").unwrap();
        for i in range {
            let (k, v) = map_entry(i);
            assert!(map.insert(&k, &v).unwrap().is_inserted());
            entries.push((k, v));
            if i % 12 == 11 {
                map.sync().unwrap();
                map_counts.push(entries.len());
            }
        }
        drop(map);
        if map_recorded == 0 {
            map_recorded = Framed::read(&dir, "map/log", true).len;
        }
    }
    let mut map_log = Framed::read(&dir, "map/log", false);
    map_log.recorded = map_recorded;
    assert_eq!(map_log.spans.len(), entries.len());

    let mut blobs = Vec::new();
    let mut blob_counts = Vec::new();
    let mut blobs_recorded = 0;
    for range in [0..BLOBS_RECORDED, BLOBS_RECORDED..4] {
        let content = Content::open(&dir, "blobs").unwrap();
        for i in range {
            let b = blob(i);
            if i == 2 {
                content.insert_reader(&b[..]).unwrap();
            } else {
                content.insert(&b).unwrap();
            }
            blobs.push(b);
            if i % 2 == 1 {
                content.sync().unwrap();
                blob_counts.push(blobs.len());
            }
        }
        drop(content);
        if blobs_recorded == 0 {
            blobs_recorded = Framed::read(&dir, "blobs/log", true).len;
        }
    }
    let mut blob_log = Framed::read(&dir, "blobs/log", false);
    blob_log.recorded = blobs_recorded;
    assert_eq!(blob_log.spans.len(), blobs.len());

    Model {
        entropy,
        journal: journal_values,
        records,
        append,
        array: states,
        map: entries,
        map_counts,
        map_log,
        blobs,
        blob_counts,
        blob_log,
    }
}

/// Every file of the store, as paths relative to it; the lock file is not part of the
/// format and is left out.
fn store_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel != "accretion.lock" {
                    out.push(rel);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The structure a store file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Dir,
    Entropy,
    Journal,
    Append,
    Array,
    Map,
    Blobs,
}

impl Owner {
    fn of(rel: &str) -> Owner {
        match rel.split('/').next() {
            Some("accretion.acc") => Owner::Dir,
            Some("entropy") => Owner::Entropy,
            Some("journal") => Owner::Journal,
            Some("append") => Owner::Append,
            Some("array") => Owner::Array,
            Some("map") => Owner::Map,
            Some("blobs") => Owner::Blobs,
            _ => panic!("store file {rel} belongs to no structure this test knows"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where a damaged byte sits, and what that allows.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    /// The 64-byte header of any file: must be an error.
    Header,
    /// Bytes of entropy.acc after its header (key and key checksum): must be an error.
    Checked,
    /// The zero padding of a register's header page.
    RegisterPad,
    /// A register slot: recovery falls back to the previous synced value, cleanly.
    Slot,
    /// The zero padding of a lane's header page.
    LanePad,
    /// Lane data: unchecked for AppendOnly and RandomAccess; OnceMap and Content must
    /// never return a wrong value.
    LaneData,
    /// The file was truncated: must be `Corrupted`, unless it is a lane cut short past
    /// what its structure holds (restored, and every value right).
    Truncated,
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn is_lane(rel: &str) -> bool {
    let name = file_name(rel);
    name.starts_with("data-") || name.starts_with("cells-")
}

fn is_register(rel: &str) -> bool {
    matches!(file_name(rel), "journal.acc" | "length.acc")
}

fn region_of(rel: &str, offset: usize) -> Region {
    if offset < HEADER_BYTES {
        Region::Header
    } else if is_register(rel) {
        if offset < REGISTER_HEADER_PAGE {
            Region::RegisterPad
        } else {
            Region::Slot
        }
    } else if is_lane(rel) {
        if offset < LANE_DATA_OFFSET {
            Region::LanePad
        } else {
            Region::LaneData
        }
    } else {
        Region::Checked
    }
}

/// The byte offsets of `rel` to damage: every byte of small files; for lanes the header
/// page, the first data bytes, and the written data (every non-zero 8-byte cell of a
/// cells lane, everything up to the last non-zero byte of a data lane).
fn offsets(rel: &str, bytes: &[u8]) -> Vec<usize> {
    if !is_lane(rel) {
        return (0..bytes.len()).collect();
    }
    let mut set: BTreeSet<usize> = (0..LANE_DATA_OFFSET + 384).collect();
    if file_name(rel).starts_with("data-") {
        let last = bytes.iter().rposition(|b| *b != 0).unwrap_or(0);
        set.extend(LANE_DATA_OFFSET..last + 65);
    } else {
        for (i, cell) in bytes[LANE_DATA_OFFSET..].chunks(8).enumerate() {
            if cell.iter().any(|b| *b != 0) {
                let at = LANE_DATA_OFFSET + 8 * i;
                set.extend(at..at + 8);
            }
        }
    }
    set.into_iter().filter(|at| *at < bytes.len()).collect()
}

/// The sync states a structure may show after damage in `region`: the last one, or for a
/// damaged register slot the last or the one before.
/// One damaged file: which, and where.
#[derive(Clone, Copy, Debug)]
struct Damage<'a> {
    rel: &'a str,
    region: Region,
    /// The byte damaged, or the length the file was cut to.
    at: usize,
}

fn allowed<T: Clone>(history: &[T], region: Region) -> Vec<T> {
    let keep = if region == Region::Slot { 2 } else { 1 };
    history[history.len().saturating_sub(keep)..].to_vec()
}

// ---------------------------------------------------------------------------------------
// Exercising a structure: everything observed, nothing asserted (so that any panic under
// `catch_unwind` is the library's).

/// What one exercise saw: the errors returned, and results that contradict the model.
#[derive(Default)]
struct Obs {
    errors: Vec<Error>,
    wrong: Vec<String>,
}

impl Obs {
    fn take<T>(&mut self, result: accretion::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn wrong(&mut self, what: String) {
        self.wrong.push(what);
    }
}

fn exercise(owner: Owner, store: &Path, dir: Option<&Dir>, m: &Model, damage: Damage) -> Obs {
    let region = damage.region;
    let mut o = Obs::default();
    match (owner, dir) {
        (Owner::Dir, _) => {
            if let Some(dir) = o.take(Dir::open(store))
                && let Some(j) = o.take(Journal::<[u64; 2]>::open(&dir, "journal"))
                && j.get() != m.journal[m.journal.len() - 1]
            {
                o.wrong(format!("journal reads {:?} in a reopened store", j.get()));
            }
        }
        (Owner::Entropy, Some(dir)) => {
            if let Some(e) = o.take(Entropy::open(dir, "entropy")) {
                let got = (e.tag(), e.hash(b"x"));
                if got != m.entropy {
                    o.wrong(format!("entropy opened with another key: {got:?}"));
                }
            }
        }
        (Owner::Journal, Some(dir)) => {
            if let Some(j) = o.take(Journal::<[u64; 2]>::open(dir, "journal")) {
                let v = j.get();
                let ok = allowed(&m.journal, region);
                if !ok.contains(&v) {
                    o.wrong(format!("journal reads {v:?}, expected one of {ok:?}"));
                }
            }
        }
        (Owner::Append, Some(dir)) => exercise_append(dir, m, damage, &mut o),
        (Owner::Array, Some(dir)) => exercise_array(dir, m, region, &mut o),
        (Owner::Map, Some(dir)) => exercise_map(dir, m, damage, &mut o),
        (Owner::Blobs, Some(dir)) => exercise_blobs(dir, m, damage, &mut o),
        (_, None) => o.wrong("test bug: no Dir given".into()),
    }
    o
}

fn exercise_append(dir: &Dir, m: &Model, damage: Damage, o: &mut Obs) {
    let Some(a) = o.take(AppendOnly::open(dir, "append")) else {
        return;
    };
    let shape = &m.append;
    let len = a.len();
    if a.durable_len() != len {
        o.wrong(format!("durable_len {} != len {len}", a.durable_len()));
    }
    // The walk from 0 checks every frame: what it yields must be the records appended,
    // in order, each with its bytes; it may stop at damage (`Corrupted`) or at the end of
    // what the open adopted, nowhere else.
    let mut walked = 0;
    let mut walk_error = None;
    for item in a.records(0).take(shape.spans.len() + 2) {
        match item {
            Ok(span) => {
                match m.records.get(walked) {
                    Some((s, bytes)) if *s == span => match a.get(span) {
                        Ok(got) if got == &bytes[..] => {}
                        Ok(_) => o.wrong(format!("walk yields record {walked} with other bytes")),
                        Err(e) => o.errors.push(e),
                    },
                    _ => o.wrong(format!("walk yields {span:?} as record {walked}")),
                }
                walked += 1;
            }
            Err(e) => {
                if !matches!(&e, Error::Corrupted { path, .. } if path.ends_with("append/data-00.acc"))
                {
                    o.wrong(format!(
                        "walk fails with {e}, expected Corrupted naming data-00"
                    ));
                }
                walk_error = Some(e);
                break;
            }
        }
    }
    // What the damage allows: the records the walk must yield, whether it must then
    // report damage, and the length.
    let all = shape.spans.len();
    let (expect_walked, expect_error) =
        match (shape.hit(damage, "append/data-00.acc"), damage.region) {
            // Below the recorded length nothing is dropped: the walk reports the record.
            (Hit::Below(j), _) => (Some(j), true),
            // Past it, the open adopted the records before the damaged one, as after a torn
            // tail, without an error.
            (Hit::Tail(j), _) => (Some(j), false),
            // A cut lane past the recorded length is restored: a prefix holding every
            // recorded record. (Cut below it, the open fails.)
            (Hit::None, Region::Truncated) => (None, false),
            (Hit::None, _) => (Some(all), false),
        };
    if let Some(e) = expect_walked
        && walked != e
    {
        o.wrong(format!("walk yields {walked} records, expected {e}"));
    }
    if walk_error.is_none() && walked < shape.recorded_records() {
        o.wrong(format!("walk yields {walked} records: recorded ones lost"));
    }
    if expect_error != walk_error.is_some() {
        o.wrong(format!(
            "walk error {walk_error:?}, expected one: {expect_error}"
        ));
    }
    let lens = if expect_error {
        shape.len..=shape.len
    } else {
        shape.len_range(walked)
    };
    if !lens.contains(&len) {
        o.wrong(format!(
            "AppendOnly len {len} after {walked} records, expected {lens:?}"
        ));
    }
    if let Some(e) = walk_error {
        o.errors.push(e);
    }
    // Reads by span are not checked against frames: a record the walk did not report
    // reads right, one past the length is out of bounds.
    let damaged = match shape.hit(damage, "append/data-00.acc") {
        Hit::Below(j) => Some(j),
        _ => None,
    };
    for (i, (span, bytes)) in m.records.iter().enumerate() {
        match a.get(*span) {
            Ok(got) if span.end() > len => {
                o.wrong(format!("{span:?} readable past length {len}: {got:?}"));
            }
            Ok(got) if Some(i) != damaged && got != &bytes[..] => {
                o.wrong(format!("{span:?} holds other bytes"));
            }
            Ok(_) => {}
            Err(Error::OutOfBounds { .. }) if span.end() > len => {}
            Err(e) => o.errors.push(e),
        }
    }
    let mut total = 0;
    for chunk in a.chunks() {
        match chunk {
            Ok((offset, bytes)) => {
                if offset != total {
                    o.wrong(format!("chunk at {offset}, expected {total}"));
                }
                total = offset + bytes.len() as u64;
            }
            Err(e) => {
                o.errors.push(e);
                return;
            }
        }
    }
    if total != len {
        o.wrong(format!("chunks cover {total} bytes, len is {len}"));
    }
}

fn exercise_array(dir: &Dir, m: &Model, region: Region, o: &mut Obs) {
    let Some(r) = o.take(RandomAccess::<u64>::open(dir, "array")) else {
        return;
    };
    let len = r.len();
    let _ = r.capacity();
    let ok = allowed(&m.array, region);
    let state = match ok.iter().find(|(l, _)| *l == len) {
        Some((_, state)) => state.clone(),
        None => {
            let lens: Vec<u64> = ok.iter().map(|(l, _)| *l).collect();
            o.wrong(format!("RandomAccess len {len}, expected one of {lens:?}"));
            m.array[m.array.len() - 1].1.clone()
        }
    };
    let mut probes: BTreeSet<u64> = (0..5).collect();
    for (l, s) in &m.array {
        probes.extend([l - 1, *l, l + 1]);
        for i in s.keys() {
            probes.extend([i.saturating_sub(1), *i, i + 1]);
        }
    }
    let data_ok = region != Region::LaneData;
    for i in probes {
        let expected = if i < len {
            state.get(&i).copied()
        } else {
            None
        };
        match r.get(i) {
            Ok(got) => {
                let got = got.map(|v| *v);
                if data_ok && got != expected {
                    o.wrong(format!("element {i} is {got:?}, expected {expected:?}"));
                }
            }
            Err(e) => o.errors.push(e),
        }
        match r.read(i) {
            Ok(v) => {
                if data_ok && v != expected.unwrap_or(0) {
                    o.wrong(format!("read({i}) is {v}, expected {expected:?}"));
                }
            }
            Err(e) => o.errors.push(e),
        }
    }
}

/// What a OnceMap (or Content) must show after `damage`: the counts it may report, and
/// the entry whose bytes were damaged below the log's recorded length (reported or
/// absent; every other entry below the count must be found, right).
///
/// Open indexes every entry past the meta's log length (here, all of them: the map is
/// far below the 4 MiB that records the meta), looking each up first: so damage to the
/// index or the filter (a slot, a bit, a length register) costs no entry. Damage to the
/// log below its recorded length costs the damaged entry only; past it, the log's open
/// adopts the entries before the damaged one, as after a torn tail. A damaged register
/// slot of the log falls back to the one before, which may predate the second session's
/// epoch, whose entries it then refuses.
fn map_expects(
    damage: Damage,
    counts: &[usize],
    log: &Framed,
    data: &str,
) -> (Vec<usize>, Option<usize>) {
    let all = log.spans.len();
    match (log.hit(damage, data), damage.region) {
        (Hit::Below(j), _) => (vec![all], Some(j)),
        (Hit::Tail(j), _) => (vec![j], None),
        (Hit::None, Region::Truncated) => ((log.recorded_records()..=all).collect(), None),
        (Hit::None, region) => (allowed(counts, region), None),
    }
}

/// Checks iteration (`iter`, `ids`): item `i` is entry `i`, or an error for the damaged
/// entry, and there are as many items as entries.
fn check_items<T>(
    items: impl Iterator<Item = accretion::Result<T>>,
    n: usize,
    damaged: Option<usize>,
    right: impl Fn(usize, &T) -> bool,
    o: &mut Obs,
) {
    let mut seen = 0;
    for item in items.take(n + 4) {
        match item {
            Ok(v) if right(seen, &v) => {}
            Ok(_) => o.wrong(format!("iteration item {seen} is not entry {seen}")),
            Err(e) => {
                if Some(seen) != damaged || !matches!(e, Error::Corrupted { .. }) {
                    o.wrong(format!("iteration item {seen} is an error: {e}"));
                }
                o.errors.push(e);
            }
        }
        seen += 1;
    }
    if seen != n {
        o.wrong(format!("iteration yields {seen} items, len is {n}"));
    }
}

fn exercise_map(dir: &Dir, m: &Model, damage: Damage, o: &mut Obs) {
    let Some(map) = o.take(OnceMap::open(dir, "map")) else {
        return;
    };
    let n = map.len() as usize;
    let (ok, damaged) = map_expects(damage, &m.map_counts, &m.map_log, "map/log/data-00.acc");
    if !ok.contains(&n) {
        o.wrong(format!("OnceMap len {n}, expected one of {ok:?}"));
    }
    for (i, (k, v)) in m.map.iter().enumerate() {
        // `get` does not re-hash values; `get_verified` must catch a damaged one.
        let _ = map.get(k);
        match map.get_verified(k) {
            Ok(Some(_)) if i >= n => o.wrong(format!("entry {i} visible with len {n}")),
            Ok(Some(got)) if got != &v[..] => o.wrong(format!(
                "OnceMap::get({:?}) returned {got:?}, the stored value is {v:?}",
                String::from_utf8_lossy(k)
            )),
            Ok(Some(_)) => {}
            Ok(None) if i < n && Some(i) != damaged => o.wrong(format!("entry {i} lost")),
            Ok(None) => {}
            Err(e) => {
                if Some(i) != damaged {
                    o.wrong(format!("entry {i} fails: {e}"));
                }
                o.errors.push(e);
            }
        }
    }
    match map.get(b"never inserted") {
        Ok(Some(v)) => o.wrong(format!("absent key found: {v:?}")),
        Ok(None) => {}
        Err(e) => o.errors.push(e),
    }
    if let Err(e) = map.contains_key(&m.map[0].0) {
        o.errors.push(e);
    }
    let right = |i: usize, (k, v): &(&[u8], &[u8])| {
        m.map
            .get(i)
            .is_some_and(|(mk, mv)| (&mk[..], &mv[..]) == (*k, *v))
    };
    check_items(map.iter(), n, damaged, right, o);
}

fn exercise_blobs(dir: &Dir, m: &Model, damage: Damage, o: &mut Obs) {
    let region = damage.region;
    let Some(c) = o.take(Content::open(dir, "blobs")) else {
        return;
    };
    let n = c.len() as usize;
    let (ok, damaged) = map_expects(damage, &m.blob_counts, &m.blob_log, "blobs/log/data-00.acc");
    if !ok.contains(&n) {
        o.wrong(format!("Content len {n}, expected one of {ok:?}"));
    }
    for (i, b) in m.blobs.iter().enumerate() {
        let id = ContentId::of(b);
        match c.get(&id) {
            Ok(Some(_)) if i >= n => o.wrong(format!("blob {i} visible with len {n}")),
            Ok(Some(got)) if got != &b[..] => {
                o.wrong(format!(
                    "Content::get({id}) returned bytes that are not the blob"
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) if i < n && Some(i) != damaged => o.wrong(format!("blob {i} lost")),
            Ok(None) => {}
            Err(e) => {
                if Some(i) != damaged {
                    o.wrong(format!("blob {i} fails: {e}"));
                } else if region == Region::LaneData && !matches!(e, Error::Corrupted { .. }) {
                    o.wrong(format!("damaged blob {i} gave {e}, expected Corrupted"));
                }
                o.errors.push(e);
            }
        }
        if let Err(e) = c.get_unverified(&id) {
            o.errors.push(e);
        }
        if let Err(e) = c.contains(&id) {
            o.errors.push(e);
        }
    }
    let right = |i: usize, id: &ContentId| m.blobs.get(i).map(|b| ContentId::of(b)) == Some(*id);
    check_items(c.ids(), n, damaged, right, o);
}

// ---------------------------------------------------------------------------------------
// Catching panics quietly, remembering where they happened.

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into `Err(message and location)`. The panic message is not
/// printed by the default hook (thousands of cases may panic alike); panics on other
/// threads print as usual.
fn quiet_catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string payload)".into());
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg} at {at}")));
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take().unwrap_or_default()))
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::Io { .. } => "Io",
        Error::Corrupted { .. } => "Corrupted",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::Incompatible { .. } => "Incompatible",
        Error::Locked { .. } => "Locked",
        Error::NameInUse { .. } => "NameInUse",
        Error::InvalidName { .. } => "InvalidName",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::OutOfBounds { .. } => "OutOfBounds",
        Error::Poisoned { .. } => "Poisoned",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------
// The driver.

/// A built store in a temporary directory, with its model and pristine file bytes.
struct Fixture {
    _tmp: tempfile::TempDir,
    store: PathBuf,
    model: Model,
    files: Vec<(String, Vec<u8>)>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let model = build(&store);
        let files = store_files(&store)
            .into_iter()
            .map(|rel| {
                let bytes = fs::read(store.join(&rel)).unwrap();
                (rel, bytes)
            })
            .collect();
        Fixture {
            _tmp: tmp,
            store,
            model,
            files,
        }
    }

    fn files_of(&self, owner: Owner) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.files
            .iter()
            .filter(move |(rel, _)| Owner::of(rel) == owner)
    }

    /// Opens the store's `Dir` for the structures (not for the directory header, whose
    /// cases open the store themselves).
    fn dir_for(&self, owner: Owner) -> Option<Dir> {
        (owner != Owner::Dir).then(|| Dir::open(&self.store).unwrap())
    }

    /// Puts back every file a case changed (the damaged one, and those the open wrote:
    /// a OnceMap's open indexes the entries past its meta, which writes its index and
    /// filter) and removes files it made; returns the others than `damaged` it found
    /// changed or made.
    fn restore(&self, damaged: &str) -> Vec<String> {
        let mut changed = Vec::new();
        for (rel, pristine) in self.files_of(Owner::of(damaged)) {
            let path = self.store.join(rel);
            let now = fs::read(&path).unwrap_or_default();
            if now != *pristine {
                // Only the bytes that differ are written back, in place: rewriting whole
                // files would make every case's open flush them again (its `syncfs`).
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .unwrap();
                if now.len() != pristine.len() {
                    file.set_len(pristine.len() as u64).unwrap();
                }
                let differs = |i: &usize| now.get(*i) != Some(&pristine[*i]);
                if let (Some(first), Some(last)) = (
                    (0..pristine.len()).find(differs),
                    (0..pristine.len()).rev().find(differs),
                ) {
                    file.write_all_at(&pristine[first..=last], first as u64)
                        .unwrap();
                }
                if rel != damaged {
                    changed.push(rel.clone());
                }
            }
        }
        for rel in store_files(&self.store) {
            if !self.files.iter().any(|(r, _)| *r == rel) {
                fs::remove_file(self.store.join(&rel)).unwrap();
                changed.push(format!("{rel} (made)"));
            }
        }
        changed
    }

    /// Checks that no case left a file changed.
    fn assert_pristine(&self) {
        for (rel, bytes) in &self.files {
            assert!(
                fs::read(self.store.join(rel)).unwrap() == *bytes,
                "{rel} differs from its pristine copy after the cases ran"
            );
        }
    }
}

/// Tallies of one run: cases, outcomes per file, one sample error per variant, failures.
#[derive(Default)]
struct Tally {
    cases: usize,
    outcomes: BTreeMap<String, BTreeMap<String, usize>>,
    /// One sample error per file and variant.
    samples: BTreeMap<(String, &'static str), String>,
    failures: Vec<String>,
}

impl Tally {
    /// Runs one damaged case and checks what it shows.
    fn case(&mut self, fx: &Fixture, dir: Option<&Dir>, owner: Owner, damage: Damage, what: &str) {
        let Damage { rel, region, at } = damage;
        self.cases += 1;
        if let Some(shape) = fx.model.framed(rel)
            && region == Region::LaneData
        {
            let part = if ((at - LANE_DATA_OFFSET) as u64) < shape.recorded {
                "cases below the recorded length"
            } else {
                "cases past the recorded length"
            };
            self.count(rel, part);
        }
        let label = format!("{rel}: {what} ({region:?})");
        let obs = match quiet_catch(|| exercise(owner, &fx.store, dir, &fx.model, damage)) {
            Ok(obs) => obs,
            Err(panic) => {
                self.count(rel, "PANIC");
                self.failures.push(format!("{label}: panicked: {panic}"));
                return;
            }
        };
        let outcome = obs.errors.first().map_or("ok", variant);
        self.count(rel, outcome);
        for e in &obs.errors {
            self.samples
                .entry((rel.to_string(), variant(e)))
                .or_insert_with(|| format!("{label}: {e}"));
        }
        for w in &obs.wrong {
            self.failures.push(format!("{label}: {w}"));
        }
        let typed_header_error = obs.errors.iter().any(|e| {
            matches!(
                e,
                Error::Corrupted { .. }
                    | Error::UnsupportedVersion { .. }
                    | Error::Incompatible { .. }
            )
        });
        match region {
            Region::Header | Region::Checked if !typed_header_error => self.failures.push(format!(
                "{label}: damage went unnoticed (errors: {:?})",
                obs.errors
            )),
            // A lane cut short only past what the structure holds is a torn tail: it is
            // restored, and the structure opens with every value right (checked above).
            Region::Truncated
                if !obs
                    .errors
                    .iter()
                    .any(|e| matches!(e, Error::Corrupted { .. }))
                    && (!is_lane(rel) || !obs.errors.is_empty()) =>
            {
                self.failures.push(format!(
                    "{label}: truncation gave no Corrupted error (errors: {:?})",
                    obs.errors
                ));
            }
            Region::Slot if !obs.errors.is_empty() => self.failures.push(format!(
                "{label}: a damaged register slot must fall back cleanly, got {:?}",
                obs.errors
            )),
            _ => {}
        }
    }

    /// Restores the files after a case, counting those the open changed besides the
    /// damaged one.
    fn restored(&mut self, fx: &Fixture, damaged: &str) {
        for rel in fx.restore(damaged) {
            self.count(&rel, "written by an open");
        }
    }

    fn count(&mut self, rel: &str, outcome: &str) {
        *self
            .outcomes
            .entry(rel.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    fn report_and_assert(&self, test: &str) {
        println!("{test}: {} cases", self.cases);
        for (rel, outcomes) in &self.outcomes {
            println!("  {rel}: {outcomes:?}");
        }
        for sample in self.samples.values() {
            println!("  sample error: {sample}");
        }
        // Failures grouped by kind (numbers blanked), so one cause shows once.
        let mut kinds: BTreeMap<String, (usize, &String)> = BTreeMap::new();
        for f in &self.failures {
            let rest = f.split_once("): ").map_or(f.as_str(), |(_, rest)| rest);
            let words = if rest.starts_with("panicked") { 99 } else { 2 };
            let kind: String = rest
                .split(' ')
                .take(words)
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            kinds.entry(kind).or_insert((0, f)).0 += 1;
        }
        assert!(
            self.failures.is_empty(),
            "{test}: {} of {} cases failed; by kind, with one example each:\n{}",
            self.failures.len(),
            self.cases,
            kinds
                .values()
                .map(|(n, example)| format!("{n} x {example}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Flips and zeroes every chosen byte of every file of `owner`, and truncates each file
/// to several lengths, exercising the owner after each change.
fn damage_every_byte(owner: Owner, test: &str) {
    let fx = Fixture::new();
    let dir = fx.dir_for(owner);
    let mut tally = Tally::default();
    let mut files = 0;
    for (rel, pristine) in fx.files_of(owner) {
        files += 1;
        let path = fx.store.join(rel);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        for at in offsets(rel, pristine) {
            let region = region_of(rel, at);
            let old = pristine[at];
            for (op, new) in [("flip", old ^ 0xff), ("zero", 0)] {
                if new == old {
                    continue;
                }
                file.write_all_at(&[new], at as u64).unwrap();
                let what = format!("{op} byte {at} ({old:#04x} -> {new:#04x})");
                let damage = Damage { rel, region, at };
                tally.case(&fx, dir.as_ref(), owner, damage, &what);
                tally.restored(&fx, rel);
            }
        }
        truncate_cases(&fx, dir.as_ref(), owner, rel, pristine, &file, &mut tally);
    }
    assert!(files > 0, "no files for {owner:?}");
    drop(dir);
    fx.assert_pristine();
    tally.report_and_assert(test);
}

fn truncate_cases(
    fx: &Fixture,
    dir: Option<&Dir>,
    owner: Owner,
    rel: &str,
    pristine: &[u8],
    file: &File,
    tally: &mut Tally,
) {
    let len = pristine.len();
    let mut lens: BTreeSet<usize> = [0, 1, 63, 64, len / 2, len - 1]
        .into_iter()
        .filter(|to| *to < len)
        .collect();
    // A framed log's first data file cut inside its records: below the recorded length
    // (refused), at it and past it (a torn tail: restored, a prefix adopted).
    if let Some(shape) = fx.model.framed(rel) {
        let data = |p: u64| LANE_DATA_OFFSET + usize::try_from(p).unwrap();
        lens.extend([
            data(shape.recorded / 2),
            data(shape.recorded),
            data((shape.recorded + shape.len) / 2),
        ]);
    }
    for to in lens {
        file.set_len(to as u64).unwrap();
        let what = format!("truncate to {to} of {len} bytes");
        let damage = Damage {
            rel,
            region: Region::Truncated,
            at: to,
        };
        tally.case(fx, dir, owner, damage, &what);
        tally.restored(fx, rel);
    }
}

#[test]
fn dir_header_every_byte() {
    damage_every_byte(Owner::Dir, "dir_header_every_byte");
}

#[test]
fn entropy_every_byte() {
    damage_every_byte(Owner::Entropy, "entropy_every_byte");
}

#[test]
fn journal_every_byte() {
    damage_every_byte(Owner::Journal, "journal_every_byte");
}

#[test]
fn append_only_every_byte() {
    damage_every_byte(Owner::Append, "append_only_every_byte");
}

#[test]
fn random_access_every_byte() {
    damage_every_byte(Owner::Array, "random_access_every_byte");
}

#[test]
fn once_map_every_byte() {
    damage_every_byte(Owner::Map, "once_map_every_byte");
}

#[test]
fn content_every_byte() {
    damage_every_byte(Owner::Blobs, "content_every_byte");
}

/// The store holds exactly the files this test damages, so a new file kind cannot be left
/// out unnoticed.
#[test]
fn every_store_file_is_covered() {
    let fx = Fixture::new();
    let names: Vec<&str> = fx.files.iter().map(|(rel, _)| rel.as_str()).collect();
    for rel in &names {
        let _ = Owner::of(rel);
        assert!(
            rel.ends_with(".acc"),
            "{rel}: every store file is an .acc file"
        );
    }
    for owner in [
        Owner::Dir,
        Owner::Entropy,
        Owner::Journal,
        Owner::Append,
        Owner::Array,
        Owner::Map,
        Owner::Blobs,
    ] {
        assert!(fx.files_of(owner).next().is_some(), "{owner:?} has no file");
    }
    // (Two of them the map's and the blobs' kind records, `kind.acc`.)
    assert_eq!(names.len(), 25, "{names:?}");
}

/// A file of another kind (or another value or unit size) in a structure's place is
/// `Incompatible`, naming the file.
#[test]
fn a_file_of_the_wrong_kind_is_incompatible() {
    let fx = Fixture::new();
    let cases = [
        ("journal/journal.acc", "append/length.acc"),
        ("entropy/entropy.acc", "journal/journal.acc"),
        ("accretion.acc", "entropy/entropy.acc"),
        ("array/cells-00.acc", "append/data-00.acc"),
        ("append/data-00.acc", "array/cells-00.acc"),
        ("append/length.acc", "map/meta/journal.acc"),
        ("journal/journal.acc", "blobs/index/length.acc"),
    ];
    let dir = Dir::open(&fx.store).unwrap();
    for (from, to) in cases {
        let owner = Owner::of(to);
        let pristine = &fx.files.iter().find(|(rel, _)| rel == to).unwrap().1;
        let path = fx.store.join(to);
        fs::copy(fx.store.join(from), &path).unwrap();
        let obs = quiet_catch(|| {
            exercise(
                owner,
                &fx.store,
                Some(&dir),
                &fx.model,
                Damage {
                    rel: to,
                    region: Region::Header,
                    at: 0,
                },
            )
        })
        .unwrap_or_else(|panic| panic!("{from} over {to}: panicked: {panic}"));
        println!(
            "{from} over {to}: {:?}",
            obs.errors.first().map(ToString::to_string)
        );
        assert!(
            matches!(obs.errors.first(), Some(Error::Incompatible { path: p, .. }) if *p == path),
            "{from} over {to}: expected Incompatible naming {}, got {:?}",
            path.display(),
            obs.errors
        );
        fs::write(&path, pristine).unwrap();
    }
    drop(dir);
    fx.assert_pristine();
}

/// A lane of the right kind and unit size but from another structure (an AppendOnly's data
/// in place of a OnceMap's log) holds no valid entries: lookups find nothing or fail,
/// never return foreign bytes, and nothing panics.
///
/// In format 2 the foreign lane's frames are bound to the other buffer's nonce, so the
/// log's open adopts none of them: past the log's recorded length it holds nothing (as
/// after a torn tail, no error; a format-1 log adopted nothing unrecorded either). Below
/// the recorded length (its first session's entries, recorded by the fixture) the bytes
/// are trusted to be there, and the walks that check them find no frame and no entry
/// header that holds: every entry the map counts there is damaged, and reported.
#[test]
fn a_foreign_lane_of_the_same_shape_yields_no_entries() {
    let fx = Fixture::new();
    let dir = Dir::open(&fx.store).unwrap();
    fs::copy(
        fx.store.join("append/data-00.acc"),
        fx.store.join("map/log/data-00.acc"),
    )
    .unwrap();
    let m = &fx.model;
    quiet_catch(|| {
        let map = match OnceMap::open(&dir, "map") {
            Ok(map) => map,
            Err(e) => {
                assert!(matches!(e, Error::Corrupted { .. }), "{e}");
                return;
            }
        };
        println!(
            "foreign log: len {}, damaged at open {}",
            map.len(),
            map.damaged_at_open()
        );
        assert_eq!(map.len(), map.damaged_at_open(), "only damaged entries");
        for (k, _) in &m.map {
            for got in [map.get(k), map.get_verified(k)] {
                assert!(
                    matches!(got, Ok(None) | Err(Error::Corrupted { .. })),
                    "{got:?}"
                );
            }
        }
        let items: Vec<_> = map.iter().take(m.map.len() + 4).collect();
        assert!(
            items
                .iter()
                .all(|i| matches!(i, Err(Error::Corrupted { .. }))),
            "{items:?}"
        );
        assert_eq!(items.len() as u64, map.len());
        assert!(
            !map.is_empty(),
            "the foreign bytes below the recorded length are reported"
        );
    })
    .unwrap_or_else(|panic| panic!("panicked: {panic}"));
}

/// Rewrites the version field (bytes 12..16) of a header and recomputes its checksum.
fn with_version(bytes: &[u8], version: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[12..16].copy_from_slice(&version.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&out[..56]);
    out[56..64].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Every file with a future (or zero) format version, and a valid checksum, is
/// `UnsupportedVersion` naming the file and the version found.
#[test]
fn a_future_version_is_unsupported() {
    let fx = Fixture::new();
    let mut checked = 0;
    for owner in [
        Owner::Dir,
        Owner::Entropy,
        Owner::Journal,
        Owner::Append,
        Owner::Array,
        Owner::Map,
        Owner::Blobs,
    ] {
        let dir = fx.dir_for(owner);
        for (rel, pristine) in fx.files_of(owner) {
            let path = fx.store.join(rel);
            for version in [2u32, 0, u32::MAX] {
                fs::write(&path, with_version(pristine, version)).unwrap();
                let obs = quiet_catch(|| {
                    exercise(
                        owner,
                        &fx.store,
                        dir.as_ref(),
                        &fx.model,
                        Damage {
                            rel,
                            region: Region::Header,
                            at: 0,
                        },
                    )
                })
                .unwrap_or_else(|panic| panic!("{rel} version {version}: panicked: {panic}"));
                assert!(
                    matches!(
                        obs.errors.first(),
                        Some(Error::UnsupportedVersion { path: p, found, supported: 1 })
                            if *p == path && *found == version
                    ),
                    "{rel} version {version}: expected UnsupportedVersion, got {:?}",
                    obs.errors
                );
                checked += 1;
            }
            fs::write(&path, pristine).unwrap();
        }
    }
    assert_eq!(checked, 3 * fx.files.len());
    fx.assert_pristine();
}

// ---------------------------------------------------------------------------------------
// One damaged entry costs that entry, not the map (issue 9, item 8).

/// The log offsets of the entries of the map at `store/name` (one framed record each),
/// read by opening its log as the AppendOnly it is; records the log's length first, so
/// that damage to them lies below it (found by walks and checksums, not a torn tail).
fn entry_offsets(store: &Path, name: &str, count: usize) -> Vec<u64> {
    let dir = Dir::open(store).unwrap();
    let log = AppendOnly::open(&dir, &format!("{name}/log")).unwrap();
    log.sync_recorded().unwrap();
    let offsets: Vec<u64> = log.records(0).map(|r| r.unwrap().offset()).collect();
    assert_eq!(offsets.len(), count);
    let (file, _) = log.file_position(offsets[count - 1]).unwrap();
    assert!(
        file.ends_with("log/data-00.acc"),
        "all entries in the first lane"
    );
    offsets
}

/// How an entry is damaged.
#[derive(Clone, Copy, Debug)]
enum Harm {
    /// A value byte flipped: the header (and its lengths) still hold.
    Value,
    /// A header length flipped: the header checksum fails, its lengths are not trusted.
    Header,
    /// The whole header zeroed: looks like the padding that ends a lane.
    ZeroHeader,
}

const DAMAGED: usize = 100;

/// Damages entry [`DAMAGED`] of the log of the map at `store/name`; returns the entry's
/// offset in the log.
fn harm_entry(store: &Path, name: &str, count: usize, harm: Harm) -> u64 {
    let offset = entry_offsets(store, name, count)[DAMAGED];
    let path = store.join(name).join("log/data-00.acc");
    let mut lane = fs::read(&path).unwrap();
    let at = LANE_DATA_OFFSET + usize::try_from(offset).unwrap();
    match harm {
        Harm::Value => {
            let key = u32::from_le_bytes(lane[at..at + 4].try_into().unwrap()) as usize;
            lane[at + 32 + key.next_multiple_of(16)] ^= 0x55;
        }
        Harm::Header => lane[at] ^= 0x01,
        Harm::ZeroHeader => lane[at..at + 32].fill(0),
    }
    fs::write(&path, lane).unwrap();
    offset
}

/// Makes the map's count stale (every meta slot invalid), so that open counts the
/// entries by walking the log.
fn forget_count(store: &Path, name: &str) {
    let path = store.join(name).join("meta/journal.acc");
    let mut bytes = fs::read(&path).unwrap();
    bytes[REGISTER_HEADER_PAGE..].fill(0);
    fs::write(&path, bytes).unwrap();
}

#[test]
fn a_damaged_once_map_entry_costs_only_itself() {
    for harm in [Harm::Value, Harm::Header, Harm::ZeroHeader] {
        for stale_count in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..201u32)
                .map(|i| {
                    (
                        format!("key {i}").into_bytes(),
                        vec![i as u8; 40 + i as usize % 30],
                    )
                })
                .collect();
            {
                let dir = Dir::open(tmp.path()).unwrap();
                let map = OnceMap::open(&dir, "map").unwrap();
                for (k, v) in &entries {
                    map.insert(k, v).unwrap();
                }
                map.sync().unwrap();
            }
            let offset = harm_entry(tmp.path(), "map", entries.len(), harm);
            if stale_count {
                forget_count(tmp.path(), "map");
            }
            let case = format!("{harm:?}, stale count {stale_count}");
            let dir = Dir::open(tmp.path()).unwrap();
            let map = OnceMap::open(&dir, "map").unwrap();
            assert_eq!(map.len(), 201, "{case}");
            // A map this small never records its meta (an index sync every 4 MiB of
            // log), so every open walks the log to index it, and meets the damage,
            // whether the count is stale or not.
            assert_eq!(map.damaged_at_open(), 1, "{case}");
            let items: Vec<_> = map.iter().collect();
            assert_eq!(items.len(), 201, "{case}");
            let good: Vec<_> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
            assert_eq!(good.len(), 200, "{case}");
            for (i, item) in items.iter().enumerate() {
                match item {
                    Ok((k, v)) => {
                        let (mk, mv) = &entries[i];
                        assert_eq!((*k, *v), (&mk[..], &mv[..]), "{case}: item {i}");
                    }
                    Err(e) => {
                        assert_eq!(i, DAMAGED, "{case}");
                        // Named by the entry walk (the log and the entry's offset), or
                        // by the frame walk under it, whose check comes first (the data
                        // file and the position of the entry's frame in it).
                        let frame_in_file =
                            LANE_DATA_OFFSET as u64 + offset - AppendOnly::FRAME_BYTES;
                        assert!(
                            matches!(e, Error::Corrupted { path, offset: o, .. }
                                if (path.ends_with("map/log") && *o == offset)
                                    || (path.ends_with("map/log/data-00.acc")
                                        && *o == frame_in_file)),
                            "{case}: {e}"
                        );
                    }
                }
            }
            for (i, (k, v)) in entries.iter().enumerate() {
                if i != DAMAGED {
                    assert_eq!(map.get_verified(k).unwrap(), Some(&v[..]), "{case}: {i}");
                }
            }
            // Still takes inserts, and finds them.
            map.insert(b"after", b"damage").unwrap();
            assert_eq!(map.get(b"after").unwrap(), Some(&b"damage"[..]));
        }
    }
}

#[test]
fn a_damaged_blob_costs_only_itself_and_is_named() {
    for harm in [Harm::Value, Harm::Header, Harm::ZeroHeader] {
        let tmp = tempfile::tempdir().unwrap();
        let blobs: Vec<Vec<u8>> = (0..201u32)
            .map(|i| format!("blob number {i} ").repeat(3).into_bytes())
            .collect();
        {
            let dir = Dir::open(tmp.path()).unwrap();
            let c = Content::open(&dir, "blobs").unwrap();
            for b in &blobs {
                c.insert(b).unwrap();
            }
            c.sync().unwrap();
        }
        let entry = harm_entry(tmp.path(), "blobs", blobs.len(), harm);
        let dir = Dir::open(tmp.path()).unwrap();
        let c = Content::open(&dir, "blobs").unwrap();
        let ids: Vec<_> = c.ids().collect();
        assert_eq!(ids.len(), 201, "{harm:?}");
        assert_eq!(ids.iter().filter(|i| i.is_ok()).count(), 200, "{harm:?}");
        assert!(
            matches!(&ids[DAMAGED], Err(Error::Corrupted { .. })),
            "{harm:?}"
        );
        for (i, b) in blobs.iter().enumerate() {
            if i != DAMAGED {
                assert_eq!(ids[i].as_ref().unwrap(), &ContentId::of(b));
                assert_eq!(c.get(&ContentId::of(b)).unwrap(), Some(&b[..]));
            }
        }
        if let Harm::Value = harm {
            // `get` re-hashes the blob: the error names the data file holding it, the
            // blob's position in that file, and its offset in the log. (The blobs are in
            // the log's first lane, whose data starts 4096 bytes into the file; `entry`
            // is the entry's offset in the log, its frame already counted.)
            let value_offset = entry + 32 + 32;
            let err = c.get(&ContentId::of(&blobs[DAMAGED])).unwrap_err();
            assert!(
                matches!(&err, Error::Corrupted { path, offset, .. }
                    if path.ends_with("blobs/log/data-00.acc") && *offset == 4096 + value_offset),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("offset {value_offset} of")),
                "{err}"
            );
        }
    }
}
