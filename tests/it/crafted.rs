//! Crafted files with valid checksums. Checksums catch damage, not a file written on
//! purpose (or by a buggy tool): every number read from disk must still be checked
//! against what the files can hold before it sizes an allocation, a loop or a shift.
//!
//! Real stores (a LogStore with a compacted generation, several segments and hints; a
//! OnceMap; a Content; an AppendOnly; a RandomAccess) are built and dropped. Then, one
//! field at a time, every u64/u32 field of every register slot, of the LogStore's hint
//! record headers and first entries, of its record and operation headers, and the five
//! params of the common file header of each kind of file, is set to a crafted value and
//! its checksum recomputed, so that the crafted copy is the one trusted. Each time the
//! store is opened and read in full (and written once) on a thread with a timeout: the
//! outcome must be success or a typed error, never a panic and never a hang.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use accretion::{
    AppendOnly, Content, ContentId, Dir, Error, LogOptions, LogStore, OnceMap, RandomAccess, Span,
};
use xxhash_rust::xxh3::xxh3_64;

use crate::common::snapshot;

/// A probe that takes longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes before the data in a lane file.
const LANE_DATA_AT: usize = 4096;
/// Register layout: a 512-byte header page, then 4 slots of `stride` bytes.
const REGISTER_HEADER_PAGE: usize = 512;
const REGISTER_SLOTS: usize = 4;
const SECTOR: usize = 512;
/// Common header: params at 16..56, checksum at 56.
const HEADER_PARAMS_AT: usize = 16;
const HEADER_SUM_AT: usize = 56;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------
// The stores and what was written to them.

fn log_opts() -> LogOptions {
    LogOptions {
        segment_bytes: 900,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// What was written, per kind of store.
#[derive(Default)]
struct Model {
    log_keys: Vec<Vec<u8>>,
    map: Vec<(Vec<u8>, Vec<u8>)>,
    blobs: Vec<Vec<u8>>,
    spans: Vec<Span>,
    cells: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Log,
    Map,
    Blobs,
    Append,
    Array,
}

const KINDS: [Kind; 5] = [Kind::Log, Kind::Map, Kind::Blobs, Kind::Append, Kind::Array];

fn build(kind: Kind, path: &Path, m: &mut Model) {
    let dir = Dir::open(path).unwrap();
    match kind {
        Kind::Log => {
            let store = LogStore::open(&dir, "kv", log_opts()).unwrap();
            let mut keys = BTreeSet::new();
            for i in 0..30u32 {
                let k = format!("key-{i:03}").into_bytes();
                store.put(&k, &vec![i as u8; 10 + i as usize]).unwrap();
                keys.insert(k);
            }
            for i in (0..30u32).step_by(4) {
                store.delete(format!("key-{i:03}").as_bytes()).unwrap();
            }
            store.compact().unwrap();
            for i in 0..20u32 {
                let k = format!("late-{i:03}").into_bytes();
                store
                    .put_with_ttl(&k, &[7; 40], Duration::from_secs(3600))
                    .unwrap();
                keys.insert(k);
            }
            store.sync().unwrap();
            let stats = store.stats();
            assert!(stats.generation == 1 && stats.segments >= 4, "{stats:?}");
            m.log_keys = keys.into_iter().collect();
        }
        Kind::Map => {
            let map = OnceMap::open(&dir, "map").unwrap();
            // A sync records the meta (count, log length) and the log's length only once
            // 4 MiB of log are past them: one big entry first, so that both are written
            // (and crafted), then small ones past them, which open re-indexes.
            let big = (b"big".to_vec(), vec![0x5A; 4 << 20]);
            map.insert(&big.0, &big.1).unwrap();
            map.sync().unwrap();
            m.map.push(big);
            for i in 0..40u32 {
                let (k, v) = (format!("m{i}").into_bytes(), vec![i as u8; i as usize % 50]);
                map.insert(&k, &v).unwrap();
                m.map.push((k, v));
            }
            map.sync().unwrap();
        }
        Kind::Blobs => {
            let blobs = Content::open(&dir, "blobs").unwrap();
            for i in 0..30u32 {
                let b = format!("blob {i} ").repeat(i as usize + 1).into_bytes();
                blobs.insert(&b).unwrap();
                m.blobs.push(b);
            }
            blobs.sync().unwrap();
        }
        Kind::Append => {
            let buf = AppendOnly::open(&dir, "append").unwrap();
            for i in 0..50u32 {
                m.spans
                    .push(buf.append(&vec![i as u8; i as usize * 3]).unwrap());
            }
            buf.sync().unwrap();
        }
        Kind::Array => {
            let array = RandomAccess::<u64>::open(&dir, "array").unwrap();
            for i in 0..300u64 {
                array.set(i * 3, i * 1000 + 1).unwrap();
                m.cells.push(i * 3);
            }
            array.sync().unwrap();
        }
    }
}

/// Opens the store of `kind` and reads everything, then writes once. Reads go on after
/// errors: any typed error is an acceptable outcome; panics and hangs are not.
fn probe(kind: Kind, path: &Path, m: &Model) -> Result<(), Error> {
    let dir = Dir::open(path)?;
    match kind {
        Kind::Log => {
            let store = LogStore::open(&dir, "kv", log_opts())?;
            for k in &m.log_keys {
                if let Ok(Some(v)) = store.get(k) {
                    let _ = v.len();
                }
                let _ = store.contains(k);
            }
            let _ = (store.len(), store.stats());
            let n = store.iter().take(10_000).filter(Result::is_ok).count();
            let _ = store.iter().rev().take(10_000).count();
            let _ = store.prefix(b"late").take(10_000).count();
            let _ = n;
            store.put(b"probe", b"value")?;
            store.delete(m.log_keys[0].as_slice())?;
            // No sync: a roll above already syncs the state, and fsyncs would make the
            // sweep slow.
        }
        Kind::Map => {
            let map = OnceMap::open(&dir, "map")?;
            let _ = map.len();
            for (k, _) in &m.map {
                let _ = map.get(k);
                let _ = map.get_verified(k);
            }
            let _ = map.get(b"absent");
            let _ = map.iter().take(10_000).count();
            map.insert(b"probe", b"value")?;
            let _ = map.get(b"probe");
        }
        Kind::Blobs => {
            let blobs = Content::open(&dir, "blobs")?;
            let _ = blobs.len();
            for b in &m.blobs {
                let _ = blobs.get(&ContentId::of(b));
                let _ = blobs.contains(&ContentId::of(b));
            }
            let _ = blobs.ids().take(10_000).count();
            blobs.insert(b"probe")?;
        }
        Kind::Append => {
            let buf = AppendOnly::open(&dir, "append")?;
            let _ = (buf.len(), buf.durable_len());
            for s in &m.spans {
                let _ = buf.get(*s);
            }
            let _ = buf.chunks().take(100).count();
            buf.append(b"probe")?;
        }
        Kind::Array => {
            let array = RandomAccess::<u64>::open(&dir, "array")?;
            let _ = (array.len(), array.capacity());
            for &i in &m.cells {
                let _ = array.get(i).map(|r| r.map(|v| *v));
                let _ = array.read(i);
            }
            let _ = array.read(array.len());
            array.set(array.len(), 5)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Files: snapshot and restore.

type Files = BTreeMap<PathBuf, Vec<u8>>;

/// Puts the tree under `root` back as `files`: extra files and directories go, changed
/// or missing files are rewritten.
fn restore(root: &Path, files: &Files) {
    fn prune(root: &Path, at: &Path, files: &Files, dirs: &BTreeSet<PathBuf>) {
        for e in fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                if dirs.contains(&rel) {
                    prune(root, &p, files, dirs);
                } else {
                    fs::remove_dir_all(&p).unwrap();
                }
            } else if !files.contains_key(&rel) && rel != Path::new("accretion.lock") {
                fs::remove_file(&p).unwrap();
            }
        }
    }
    let dirs: BTreeSet<PathBuf> = files
        .keys()
        .flat_map(|f| f.ancestors().skip(1).map(Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    prune(root, root, files, &dirs);
    for (rel, bytes) in files {
        let p = root.join(rel);
        if fs::read(&p).ok().as_ref() != Some(bytes) {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fields and how to reseal them.

/// How the checksum covering a field is recomputed after the field is crafted.
#[derive(Clone, Copy, Debug)]
enum Seal {
    /// The 64-byte common file header.
    Header,
    /// Register slot `k` at byte `at`, holding a value of `value_bytes`.
    Slot {
        k: usize,
        at: usize,
        value_bytes: usize,
    },
    /// A hint record at byte `at` of its lane file.
    Hint { at: usize },
    /// A log record at byte `at` of its lane file; `op` is its first operation's start.
    Record { at: usize, op: usize },
}

/// One field of one file to craft.
#[derive(Clone, Debug)]
struct Field {
    file: PathBuf,
    name: String,
    at: usize,
    width: usize,
    seal: Seal,
    /// A directory (relative to the store) to remove too, so that the field is read: a
    /// record's segment hint, which open would trust instead of the records.
    remove: Option<PathBuf>,
    /// A file length worth trying as a value.
    file_len: u64,
}

fn read_field(b: &[u8], f: &Field) -> u64 {
    match f.width {
        8 => u64_at(b, f.at),
        4 => u64::from(u32_at(b, f.at)),
        2 => u64::from(u16_at(b, f.at)),
        _ => unreachable!(),
    }
}

fn write_field(b: &mut [u8], f: &Field, v: u64) {
    let bytes = v.to_le_bytes();
    b[f.at..f.at + f.width].copy_from_slice(&bytes[..f.width]);
}

fn reseal(b: &mut [u8], seal: Seal) {
    match seal {
        Seal::Header => {
            let sum = xxh3_64(&b[..HEADER_SUM_AT]);
            put_u64(b, HEADER_SUM_AT, sum);
        }
        Seal::Slot { k, at, value_bytes } => {
            let mut input = (k as u64).to_le_bytes().to_vec();
            input.extend_from_slice(&b[at..at + 8 + value_bytes]);
            let sum = xxh3_64(&input);
            put_u64(b, at + 8 + value_bytes, sum);
        }
        Seal::Hint { at } => {
            let body = u32_at(b, at + 36) as usize;
            let end = (at + 48).saturating_add(body).min(b.len());
            let sum = xxh3_64(&b[at + 8..end]);
            put_u64(b, at, sum);
        }
        Seal::Record { at, op } => {
            // The first operation's checksum over its (crafted) extent, then the record
            // checksum over the header and the operations' checksums, walked with the
            // (crafted) lengths, as far as they stay inside the file.
            let op_end = op + 24 + usize::from(u16_at(b, op + 10)) + u32_at(b, op + 12) as usize;
            if op_end <= b.len() {
                let sum = xxh3_64(&b[op + 8..op_end]);
                put_u64(b, op, sum);
            }
            let count = u32_at(b, at + 12) as usize;
            let mut input = b[at + 8..at + 24].to_vec();
            let mut o = at + 24;
            for _ in 0..count.min(1 << 16) {
                if o + 24 > b.len() {
                    break;
                }
                input.extend_from_slice(&b[o..o + 8]);
                o += 24 + usize::from(u16_at(b, o + 10)) + u32_at(b, o + 12) as usize;
            }
            let sum = xxh3_64(&input);
            put_u64(b, at, sum);
        }
    }
}

fn header_fields(file: &Path, bytes: &[u8], out: &mut Vec<Field>) {
    for p in 0..5 {
        out.push(Field {
            file: file.to_path_buf(),
            name: format!("header param {p}"),
            at: HEADER_PARAMS_AT + 8 * p,
            width: 8,
            seal: Seal::Header,
            remove: None,
            file_len: bytes.len() as u64,
        });
    }
}

/// The fields of a register's newest valid slot: its sequence number and every u64 of
/// its value. Crafting the newest slot keeps it the trusted one (unless its sequence
/// number is what is crafted).
fn register_fields(file: &Path, bytes: &[u8], data_len: u64, out: &mut Vec<Field>) {
    let value_bytes = u64_at(bytes, HEADER_PARAMS_AT) as usize;
    let stride = (8 + value_bytes + 8).next_multiple_of(SECTOR);
    let newest = (0..REGISTER_SLOTS)
        .filter_map(|k| {
            let at = REGISTER_HEADER_PAGE + k * stride;
            let seq = u64_at(bytes, at);
            let mut input = (k as u64).to_le_bytes().to_vec();
            input.extend_from_slice(&bytes[at..at + 8 + value_bytes]);
            (seq != 0 && xxh3_64(&input) == u64_at(bytes, at + 8 + value_bytes))
                .then_some((seq, k, at))
        })
        .max();
    // A register never synced (the log segment a store makes ahead of its next roll)
    // has no slot to craft; its header is crafted with the other files'.
    let Some((_, k, at)) = newest else {
        return;
    };
    let seal = Seal::Slot { k, at, value_bytes };
    out.push(Field {
        file: file.to_path_buf(),
        name: format!("slot {k} sequence"),
        at,
        width: 8,
        seal,
        remove: None,
        file_len: data_len,
    });
    // Format 2's AppendOnly length record (32 bytes): format, newest epoch, last epoch
    // and flags are u32 fields, crafted one by one; length and nonce are u64 words.
    if value_bytes == 32 && file.ends_with("length.acc") {
        for (name, off) in [
            ("format", 0),
            ("epoch", 4),
            ("last epoch", 8),
            ("flags", 12),
        ] {
            out.push(Field {
                file: file.to_path_buf(),
                name: format!("slot {k} {name}"),
                at: at + 8 + off,
                width: 4,
                seal,
                remove: None,
                file_len: data_len,
            });
        }
    }
    for w in 0..value_bytes / 8 {
        out.push(Field {
            file: file.to_path_buf(),
            name: format!("slot {k} value word {w}"),
            at: at + 8 + 8 * w,
            width: 8,
            seal,
            remove: None,
            file_len: data_len,
        });
    }
}

/// The header fields of the first hint record, and of its first entry.
fn hint_fields(file: &Path, bytes: &[u8], out: &mut Vec<Field>) {
    let at = LANE_DATA_AT;
    let seal = Seal::Hint { at };
    let mut push = |name: &str, off: usize, width: usize| {
        out.push(Field {
            file: file.to_path_buf(),
            name: format!("hint {name}"),
            at: at + off,
            width,
            seal,
            remove: None,
            file_len: bytes.len() as u64,
        });
    };
    for (name, off, width) in [
        ("covered", 16, 8),
        ("first", 24, 8),
        ("count", 32, 4),
        ("body length", 36, 4),
        ("total", 40, 8),
        ("entry key length", 48 + 2, 2),
        ("entry value length", 48 + 4, 4),
        ("entry value offset", 48 + 8, 8),
        ("entry expiry", 48 + 16, 8),
        ("entry op checksum", 48 + 24, 8),
    ] {
        push(name, off, width);
    }
}

/// The header fields of the first two records of a segment and of their first
/// operations. `hint` is removed while they are crafted, so that open reads them.
fn record_fields(file: &Path, bytes: &[u8], hint: Option<PathBuf>, out: &mut Vec<Field>) {
    let mut at = LANE_DATA_AT;
    for r in 0..2 {
        if at + 48 > bytes.len() || u32_at(bytes, at + 12) == 0 {
            return;
        }
        let op = at + 24;
        let seal = Seal::Record { at, op };
        for (name, off, width) in [
            ("body length", at + 8, 4),
            ("operation count", at + 12, 4),
            ("timestamp", at + 16, 8),
            ("op key length", op + 10, 2),
            ("op value length", op + 12, 4),
            ("op expiry", op + 16, 8),
        ] {
            out.push(Field {
                file: file.to_path_buf(),
                name: format!("record {r} {name}"),
                at: off,
                width,
                seal,
                remove: hint.clone(),
                file_len: bytes.len() as u64,
            });
        }
        at += 24 + u32_at(bytes, at + 8) as usize;
    }
}

/// The LogStore segments whose fields are crafted (with their hints): the first base
/// segment, the first log segment and the active one. The others are alike, and
/// crafting them all would only make the test slower.
fn chosen_segments(files: &Files) -> BTreeSet<PathBuf> {
    let segments: BTreeSet<PathBuf> = files
        .keys()
        .filter_map(|f| f.parent())
        .filter(|p| {
            p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                (n.starts_with("log-") || n.starts_with("base-")) && !n.ends_with("-hint")
            })
        })
        .map(Path::to_path_buf)
        .collect();
    let base = segments
        .iter()
        .find(|p| p.to_string_lossy().contains("base-"));
    let mut logs = segments
        .iter()
        .filter(|p| p.to_string_lossy().contains("log-"));
    let first = logs.next();
    let last = logs.next_back();
    base.into_iter().chain(first).chain(last).cloned().collect()
}

/// Every field to craft in a store's files.
fn fields(files: &Files) -> Vec<Field> {
    let chosen = chosen_segments(files);
    let mut out = Vec::new();
    for (rel, bytes) in files {
        let name = rel.file_name().unwrap().to_string_lossy();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let segment = PathBuf::from(parent.to_string_lossy().trim_end_matches("-hint"));
        if segment.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("log-") || n.starts_with("base-")
        }) && !chosen.contains(&segment)
        {
            continue;
        }
        let first_lane = name.ends_with("-00.acc");
        let is_hint = parent.to_string_lossy().ends_with("-hint");
        let is_segment = !is_hint && {
            let p = parent.file_name().map(|n| n.to_string_lossy().into_owned());
            p.is_some_and(|p| p.starts_with("log-") || p.starts_with("base-"))
        };
        // Every file's header, once per kind of file and structure.
        if name == "accretion.acc"
            || name == "entropy.acc"
            || (first_lane && !is_segment && !is_hint)
            || name == "journal.acc"
            || (name == "length.acc" && !is_segment && !is_hint)
        {
            header_fields(rel, bytes, &mut out);
        }
        if name == "length.acc" || name == "journal.acc" {
            let data = files
                .get(&parent.join("data-00.acc"))
                .or_else(|| files.get(&parent.join("cells-00.acc")))
                .map_or(0, |d| (d.len() - LANE_DATA_AT) as u64);
            register_fields(rel, bytes, data, &mut out);
        }
        if is_hint && first_lane {
            hint_fields(rel, bytes, &mut out);
        }
        if is_segment && first_lane {
            let hint = PathBuf::from(format!("{}-hint", parent.display()));
            let hint = files.keys().any(|f| f.starts_with(&hint)).then_some(hint);
            record_fields(rel, bytes, hint, &mut out);
        }
    }
    out
}

/// The values to try in a field whose value is `cur`.
fn values(cur: u64, width: usize, file_len: u64, seq: bool) -> Vec<u64> {
    let mut v: BTreeSet<u64> = [
        0,
        1,
        2,
        3,
        15,
        16,
        24,
        48,
        4096,
        65_536,
        u64::from(u16::MAX),
        u64::from(u32::MAX),
        1 << 32,
        (1 << 40) - 1,
        1 << 40,
        1 << 44,
        u64::MAX / 2,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
        cur.wrapping_sub(1),
        cur.wrapping_add(1),
        cur.wrapping_mul(2),
        file_len,
        file_len.wrapping_add(1),
        file_len.wrapping_sub(1),
    ]
    .into_iter()
    .collect();
    let mask = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    v = v.into_iter().map(|x| x & mask).collect();
    v.remove(&cur);
    let _ = seq; // A sequence of u64::MAX is crafted too: open takes it for an invalid slot.
    v.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// The driver.

/// Runs `probe` on a thread; `Err` describes a panic or a hang.
fn run_probe(kind: Kind, root: &Path, model: &Arc<Model>, case: &str) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    let model = Arc::clone(model);
    std::thread::Builder::new()
        .name(case.to_string())
        .spawn(move || {
            let outcome = probe(kind, &root, &model);
            let _ = tx.send(outcome.map_err(|e| e.to_string()));
        })
        .unwrap();
    match rx.recv_timeout(TIMEOUT) {
        Ok(_typed_outcome) => Ok(()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("{case}: hang (over {TIMEOUT:?})")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("{case}: panic")),
    }
}

struct Fixture {
    kind: Kind,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: Arc<Model>,
    files: Files,
}

fn fixture(kind: Kind) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let mut model = Model::default();
    build(kind, &root, &mut model);
    let model = Arc::new(model);
    let files = snapshot(&root);
    // The pristine store opens and reads cleanly.
    assert!(matches!(probe(kind, &root, &model), Ok(())), "{kind:?}");
    restore(&root, &files);
    Fixture {
        kind,
        _tmp: tmp,
        root,
        model,
        files,
    }
}

/// Crafts every field of every file of a `kind` store, one value at a time. Stops at
/// the first hang (the hung thread holds the store's lock).
fn craft_all(kind: Kind) {
    let start = Instant::now();
    let fx = fixture(kind);
    let fields = fields(&fx.files);
    assert!(!fields.is_empty());
    let mut failures = Vec::new();
    let mut cases = 0;
    for f in &fields {
        let pristine = &fx.files[&f.file];
        let cur = read_field(pristine, f);
        for v in values(cur, f.width, f.file_len, f.name.ends_with(" sequence")) {
            let mut bytes = pristine.clone();
            write_field(&mut bytes, f, v);
            reseal(&mut bytes, f.seal);
            fs::write(fx.root.join(&f.file), &bytes).unwrap();
            if let Some(rm) = &f.remove {
                fs::remove_dir_all(fx.root.join(rm)).unwrap();
            }
            let case = format!("{kind:?} {} {}: {cur} -> {v}", f.file.display(), f.name);
            cases += 1;
            if let Err(e) = run_probe(fx.kind, &fx.root, &fx.model, &case) {
                let hang = e.contains("hang");
                failures.push(e);
                if hang {
                    break;
                }
            }
            restore(&fx.root, &fx.files);
        }
        if failures.last().is_some_and(|e| e.contains("hang")) {
            break;
        }
    }
    eprintln!(
        "crafted {kind:?}: {} fields, {cases} cases, {} failures, {:?}",
        fields.len(),
        failures.len(),
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} crafted {kind:?} cases panicked or hung:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn crafted_log_store_fields() {
    craft_all(Kind::Log);
}

#[test]
fn crafted_once_map_fields() {
    craft_all(Kind::Map);
}

#[test]
fn crafted_content_fields() {
    craft_all(Kind::Blobs);
}

#[test]
fn crafted_append_only_fields() {
    craft_all(Kind::Append);
}

#[test]
fn crafted_random_access_fields() {
    craft_all(Kind::Array);
}

/// Every kind of store has its fields crafted, and each kind of file is among them.
#[test]
fn every_kind_of_file_is_crafted() {
    let _ = KINDS;
    let fx = fixture(Kind::Log);
    let fields = fields(&fx.files);
    for what in ["state", "-hint", "log-", "g1"] {
        assert!(
            fields
                .iter()
                .any(|f| f.file.to_string_lossy().contains(what)),
            "no field of a {what} file"
        );
    }
    assert!(fields.iter().any(|f| f.name.starts_with("hint ")));
    assert!(fields.iter().any(|f| f.name.starts_with("record 1 ")));
    assert!(fields.iter().any(|f| f.remove.is_some()));
    assert!(
        fields
            .iter()
            .any(|f| f.name.starts_with("header param") && f.file.ends_with("accretion.acc"))
    );
    let fx = fixture(Kind::Map);
    let files: BTreeSet<String> = fields_of(&fx.files);
    for f in [
        "entropy.acc",
        "journal.acc",
        "length.acc",
        "cells-00.acc",
        "data-00.acc",
    ] {
        assert!(files.contains(f), "no field of {f}");
    }
}

fn fields_of(files: &Files) -> BTreeSet<String> {
    fields(files)
        .iter()
        .map(|f| f.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The two reproductions from the review, named.

/// Writes `value` into word `word` of the newest slot of the register at `path`, with a
/// valid checksum.
fn craft_register_word(path: &Path, word: usize, value: u64) {
    let mut bytes = fs::read(path).unwrap();
    let mut fields = Vec::new();
    register_fields(path, &bytes, 0, &mut fields);
    let name = format!("value word {word}");
    let f = fields
        .iter()
        .find(|f| f.name.ends_with(&name))
        .expect("the register has that word");
    write_field(&mut bytes, f, value);
    reseal(&mut bytes, f.seal);
    fs::write(path, bytes).unwrap();
}

/// A state naming log segments `1..=u64::MAX` used to size a vector of their names:
/// "capacity overflow" at open.
#[test]
fn a_state_naming_endless_segments_is_corrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    build(Kind::Log, tmp.path(), &mut m);
    let state = tmp.path().join("kv/state/journal.acc");
    craft_register_word(&state, 3, 1); // log_first
    craft_register_word(&state, 4, u64::MAX); // log_active
    let outcome = run_probe(Kind::Log, tmp.path(), &Arc::new(m), "endless segments");
    assert!(outcome.is_ok(), "{outcome:?}");
    let dir = Dir::open(tmp.path()).unwrap();
    assert!(matches!(
        LogStore::open(&dir, "kv", log_opts()),
        Err(Error::Corrupted { .. })
    ));
}

/// A OnceMap meta whose count is `u64::MAX` (with the true log length) used to
/// overflow a shift in debug builds and loop forever in `get` in release builds.
#[test]
fn a_once_map_count_past_its_log_is_corrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    // The meta is trusted only where it covers the whole log: a map whose last sync
    // recorded it (4 MiB of log past the previous record), with nothing after.
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "map").unwrap();
        let big = (b"big".to_vec(), vec![0x5A; 4 << 20]);
        map.insert(&big.0, &big.1).unwrap();
        map.sync().unwrap();
        m.map.push(big);
    }
    craft_register_word(&tmp.path().join("map/meta/journal.acc"), 0, u64::MAX);
    let outcome = run_probe(Kind::Map, tmp.path(), &Arc::new(m), "count u64::MAX");
    assert!(outcome.is_ok(), "{outcome:?}");
    let dir = Dir::open(tmp.path()).unwrap();
    assert!(matches!(
        OnceMap::open(&dir, "map"),
        Err(Error::Corrupted { .. })
    ));
}

/// A length register past what the lanes can hold is `Corrupted`, naming the register,
/// for both kinds of lanes (it was `LimitExceeded` for RandomAccess).
#[test]
fn a_length_past_the_lanes_is_corrupted() {
    for kind in [Kind::Append, Kind::Array] {
        for len in [u64::MAX, 1 << 50] {
            let tmp = tempfile::tempdir().unwrap();
            build(kind, tmp.path(), &mut Model::default());
            let name = if kind == Kind::Append {
                "append"
            } else {
                "array"
            };
            let length = tmp.path().join(name).join("length.acc");
            // Format 2's length record holds the length in its third word (after
            // format, epochs and flags); RandomAccess's holds it alone.
            let word = if kind == Kind::Append { 2 } else { 0 };
            craft_register_word(&length, word, len);
            let dir = Dir::open(tmp.path()).unwrap();
            let err = if kind == Kind::Append {
                AppendOnly::open(&dir, name).err()
            } else {
                RandomAccess::<u64>::open(&dir, name).err()
            };
            assert!(
                matches!(&err, Some(Error::Corrupted { path, .. }) if *path == length),
                "{kind:?} length {len}: {err:?}"
            );
        }
    }
}

/// A state whose generation is u64::MAX opens (nothing on disk contradicts it), but a
/// compaction, which needs the next number, is refused with an error instead of an
/// overflow.
#[test]
fn a_generation_with_no_successor_refuses_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let store = LogStore::open(&dir, "kv", log_opts()).unwrap();
    store.put(b"a", b"1").unwrap();
    store.sync().unwrap();
    drop(store);
    drop(dir);
    craft_register_word(&tmp.path().join("kv/state/journal.acc"), 1, u64::MAX);
    let dir = Dir::open(tmp.path()).unwrap();
    let store = LogStore::open(&dir, "kv", log_opts()).unwrap();
    assert_eq!(store.get(b"a").unwrap().unwrap(), b"1");
    assert!(matches!(store.compact(), Err(Error::Corrupted { .. })));
}
