//! Opening a log store: the state journal, removal of files no generation owns, and
//! replay of every segment into the key directory, from its hint file when that is
//! whole and by reading its records otherwise. Also writes hint files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use parking_lot::{Mutex, RwLock};

use super::record::{self, DecodedOp, HintEntry, Kind, RECORD_HEADER_BYTES};
use super::segment::{Segment, Writers};
use super::{
    Inner, KeyDir, Loc, LogOptions, STATE_VERSION, Segments, State, Writer, base_name, log_name,
    merge_name_hash,
};
use crate::{AppendOnly, Dir, Error, Journal, Result, Span};

/// Counters gathered while replaying.
#[derive(Default)]
struct Replay {
    damaged_records: u64,
    damaged_bytes: u64,
    from_hints: u64,
    scanned: u64,
}

pub(super) fn open(dir: &Dir, name: &str, opts: LogOptions) -> Result<Inner> {
    let state: Journal<State> = Journal::open(dir, &format!("{name}/state"))?;
    let merge_hash = opts
        .merge_operator
        .as_ref()
        .map_or(0, |(n, _)| merge_name_hash(n));
    let mut st = state.get();
    if st.version == 0 {
        if holds_segments(dir, name) {
            return Err(Error::corrupted(
                state.path(),
                0,
                "the state journal is new but log segments exist: refusing to treat them as garbage",
            ));
        }
        st = State {
            version: STATE_VERSION,
            log_first: 1,
            log_active: 1,
            merge_name_hash: merge_hash,
            ..State::default()
        };
        state.set(st)?;
        state.sync()?;
    }
    if st.version > STATE_VERSION {
        return Err(Error::UnsupportedVersion {
            path: state.path().to_path_buf(),
            found: u32::try_from(st.version).unwrap_or(u32::MAX),
            supported: STATE_VERSION as u32,
        });
    }
    if st.version < STATE_VERSION {
        // Version 1: its segments stay as they are (read through their own format); the
        // segments made from now on are framed, which a version-1 build cannot read.
        st.version = STATE_VERSION;
        state.set(st)?;
        state.sync()?;
    }
    if st.log_first == 0 || st.log_first > st.log_active {
        return Err(Error::corrupted(
            state.path(),
            0,
            format!(
                "log segment range {}..={} is empty",
                st.log_first, st.log_active
            ),
        ));
    }
    if merge_hash != 0 && st.merge_name_hash != merge_hash {
        if st.merge_name_hash != 0 {
            return Err(Error::incompatible(
                state.path(),
                "the store was written with a merge operator of another name",
            ));
        }
        st.merge_name_hash = merge_hash;
        state.set(st)?;
        state.sync()?;
    }
    check_ranges(dir, name, &st, state.path())?;
    adopt_rolled(dir, name, &mut st, &state)?;
    let names: Vec<String> = (0..st.base_count)
        .map(|i| base_name(name, st.generation, i))
        .chain((st.log_first..=st.log_active).map(|id| log_name(name, id)))
        .collect();
    // Every segment the state names was created before the state named it, except the
    // first log of a new store (a crash may come between the state's first sync and the
    // segment's creation). A missing one means the state is not the one that goes with
    // these files (a damaged newest slot fell back to an older state): refuse, rather
    // than remove the real generation as garbage.
    let new_store = st.base_count == 0 && st.log_first == 1 && st.log_active == 1;
    if !new_store && let Some(missing) = names.iter().find(|n| !dir.path().join(n).is_dir()) {
        return Err(Error::corrupted(
            state.path(),
            0,
            format!("the state names segment {missing}, which does not exist"),
        ));
    }
    remove_garbage(dir, name, &st)?;

    let mut keys = KeyDir::default();
    let mut segments = Segments::default();
    let mut replay = Replay::default();
    let mut active_damaged = false;
    let ids = (0..st.base_count)
        .map(|_| None)
        .chain((st.log_first..=st.log_active).map(Some));
    for (seg_name, id) in names.into_iter().zip(ids) {
        let seg = Segment::open(dir, seg_name)?;
        active_damaged = replay_segment(dir, &seg, &mut keys, &mut replay)?;
        let unsealed = seg.buf().format() != 1 && !seg.buf().is_sealed();
        match id {
            Some(id) => segments.logs.push((id, seg)),
            None => segments.base.push(seg),
        }
        if let Some(id) = id.filter(|&id| unsealed && id < st.log_active) {
            // A finished log segment whose seal was lost (a power loss took its unsynced
            // tail): nothing after it was synced (a sync of a segment syncs the ones
            // before it whole first), and its records came after the lost ones. The
            // segment becomes the active one again; the state names it before the later
            // segments go (a crash between leaves them past its range: removed).
            let later = id + 1..=st.log_active;
            st.log_active = id;
            state.set(st)?;
            state.sync()?;
            for later in later {
                let later = log_name(name, later);
                dir.remove(&super::segment::hint_name(&later))?;
                dir.remove(&later)?;
            }
            break;
        }
    }
    keys.reorder();
    let (active_id, active) = segments.logs.last().cloned().expect("at least one log");
    active.buf().limit_ahead(opts.segment_bytes);
    let active_sealed = active.buf().is_sealed();
    // A format-1 active segment (a store made by a version-1 build) is never sealed, so
    // `adopt_rolled` cannot take a segment past it: a write into the framed segment its
    // roll starts would be lost with the process before the state named it, and its own
    // writes keep the old contract (lost on a drop without sync). So it is finished now,
    // and the state naming the new segment is synced before any write.
    let active_v1 = active.buf().format() == 1;
    let inner = Inner {
        dir: dir.clone(),
        name: name.to_string(),
        opts,
        state: Arc::new(state),
        next_segment: Mutex::new(None),
        keys: RwLock::new(keys),
        writer: Mutex::new(Writer { active, active_id }),
        segments: Mutex::new(segments),
        compacting: Mutex::new(()),
        background: Mutex::new(None),
        mergers: Mutex::new(Vec::new()),
        finisher: Mutex::new(None),
        finishing: AtomicU64::new(0),
        damaged_dropped: AtomicU64::new(0),
        damaged_records: replay.damaged_records,
        damaged_bytes: replay.damaged_bytes,
        segments_from_hints: replay.from_hints,
        segments_scanned: replay.scanned,
        hint_failures: AtomicU64::new(0),
        auto_compaction_failed: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        compaction_failures: AtomicU64::new(0),
        writers: Writers::default(),
    };
    if active_damaged || active_sealed || active_v1 {
        // New records must not follow damage, which would hide them from the next
        // replay: finish the damaged segment and write into a new one. A sealed one
        // (a roll sealed it, then the process died before the next segment held a
        // record, so `adopt_rolled` left that one out) takes no writes either.
        let finished = inner.roll(&mut inner.writer.lock())?;
        inner.after_roll(&finished);
        if active_v1 {
            inner.writer.lock().active.sync_behind()?;
        }
    }
    Ok(inner)
}

/// Takes into the log the segments past the state's active one that rolls started in a
/// process that died before syncing the state that named them (a roll names the new
/// segment in memory; the state reaches the disk with the next sync): each one holding
/// records, while the one before it is sealed, which the roll did before the new segment
/// took any write. Unsynced writes so survive the death of their process. After a power
/// loss, a segment before whose seal was lost takes the rest with it: its records were
/// never synced (a sync of a segment syncs the one before it whole, seal included,
/// first), and keeping them would keep later writes while losing earlier ones. The state
/// is synced at once naming the segments taken.
fn adopt_rolled(dir: &Dir, name: &str, st: &mut State, state: &Journal<State>) -> Result<()> {
    // (framed, holds records, sealed) of a segment; `None` if it cannot be opened.
    let look = |id: u64| match AppendOnly::open(dir, &log_name(name, id)) {
        Ok(buf) => Ok(Some((buf.format() != 1, !buf.is_empty(), buf.is_sealed()))),
        Err(e @ Error::NameInUse { .. }) => Err(e),
        Err(_) => Ok(None),
    };
    let mut taken = false;
    // Each segment is opened once: the one just taken is the next one's predecessor.
    let mut sealed = None;
    while let Some(next) = st.log_active.checked_add(1).filter(|n| *n < u64::MAX) {
        if !dir.path().join(log_name(name, next)).is_dir() {
            break;
        }
        let prev_sealed = match sealed {
            Some(sealed) => sealed,
            None => look(st.log_active)?.is_some_and(|(framed, _, sealed)| framed && sealed),
        };
        let Some((framed, holds, next_sealed)) = look(next)? else {
            break;
        };
        if !prev_sealed || !framed || !holds {
            break;
        }
        st.log_active = next;
        sealed = Some(next_sealed);
        taken = true;
    }
    if taken {
        state.set(*st)?;
        state.sync()?;
    }
    Ok(())
}

/// Checks the state's segment counts against the segments on disk before they size
/// anything: a state whose checksum holds may still be crafted (or written by a broken
/// tool), and `1..=u64::MAX` would size a list of names. Each base segment and each log
/// segment the state names is a directory of the store (the first log of a new store
/// aside), so neither range can be longer than the directories there are. The active id
/// must leave room for the next segment's.
fn check_ranges(dir: &Dir, name: &str, st: &State, state_path: &std::path::Path) -> Result<()> {
    if st.log_active == u64::MAX {
        return Err(Error::corrupted(
            state_path,
            0,
            "active log segment id is u64::MAX: no id is left for the next segment",
        ));
    }
    let root = dir.path().join(name);
    let logs = count_segment_dirs(&root, "log-")?;
    let bases = count_segment_dirs(&root.join(format!("g{}", st.generation)), "base-")?;
    // At least 1: a new store's first log may not exist yet.
    let logs_named = st.log_active - st.log_first + 1;
    if logs_named > logs.max(1) {
        return Err(Error::corrupted(
            state_path,
            0,
            format!(
                "the state names log segments {}..={} ({logs_named}), but only {logs} exist",
                st.log_first, st.log_active
            ),
        ));
    }
    if st.base_count > bases {
        return Err(Error::corrupted(
            state_path,
            0,
            format!(
                "the state names {} base segments of generation {}, but only {bases} exist",
                st.base_count, st.generation
            ),
        ));
    }
    Ok(())
}

/// Segment directories in `dir` whose names are `prefix` and a number (hints aside).
fn count_segment_dirs(dir: &std::path::Path, prefix: &str) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, "list store directory", e)),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "list store directory", e))?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file
            .strip_prefix(prefix)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Whether the store's directory holds any segment.
fn holds_segments(dir: &Dir, name: &str) -> bool {
    std::fs::read_dir(dir.path().join(name)).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("log-") || n.starts_with('g')
        })
    })
}

/// Removes what a crash left behind: generations other than the current one (a
/// compaction that did not commit, or one that committed but had not removed the old
/// generation), log segments below the state's range (retired by a compaction), and
/// empty log segments above it (a roll that crashed before its state sync).
///
/// Limit: a newer generation than the state names is removed as garbage; if the state's
/// newest slot was damaged after that generation's commit, its data is lost. A crashed
/// compaction and a lost commit leave the same files.
fn remove_garbage(dir: &Dir, name: &str, st: &State) -> Result<()> {
    let root = dir.path().join(name);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&root, "list store directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&root, "list store directory", e))?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let garbage = if let Some(generation) = file.strip_prefix('g') {
            generation.parse::<u64>().is_ok_and(|g| g != st.generation)
        } else if let Some(rest) = file.strip_prefix("log-") {
            let hint = rest.ends_with("-hint");
            let id = rest.strip_suffix("-hint").unwrap_or(rest);
            match id.parse::<u64>() {
                Ok(id) if id < st.log_first => true,
                Ok(id) if id > st.log_active => {
                    // A roll that crashed before its state sync leaves an empty segment:
                    // nothing is written to a segment before the state names it. One
                    // holding data means the state is older than the files (a damaged
                    // newest slot fell back): refuse rather than delete synced writes.
                    if !hint && !holds_nothing_synced(dir, &format!("{name}/{file}"))? {
                        return Err(Error::corrupted(
                            &root.join(&*file),
                            0,
                            format!(
                                "segment holds data but lies past the state's active segment {}",
                                st.log_active
                            ),
                        ));
                    }
                    true
                }
                _ => false,
            }
        } else {
            false
        };
        if garbage {
            dir.remove(&format!("{name}/{file}"))?;
        }
    }
    Ok(())
}

/// Whether the segment `name` (past the state's range) holds no synced byte: a format-1
/// one that is empty, any framed one (a damaged one counts as holding some).
///
/// # Errors
/// `NameInUse` if a handle from an earlier open of the store (a `Value` or `Iter` into
/// a segment a roll had just started) still holds it: the caller reports that, rather
/// than take the segment for one holding data.
fn holds_nothing_synced(dir: &Dir, name: &str) -> Result<bool> {
    match AppendOnly::open(dir, name) {
        // A framed segment past the state's range holds nothing synced: a sync of it
        // syncs the state that names it first. What it holds was adopted from a process
        // that wrote it and died (`adopt_rolled` took the segments it could).
        Ok(buf) if buf.format() != 1 => Ok(true),
        Ok(buf) => Ok(buf.is_empty()),
        Err(e @ Error::NameInUse { .. }) => Err(e),
        Err(_) => Ok(false),
    }
}

/// Replays one segment into `keys`. Returns whether damage cut its replay short.
fn replay_segment(
    dir: &Dir,
    seg: &Arc<Segment>,
    keys: &mut KeyDir,
    replay: &mut Replay,
) -> Result<bool> {
    if seg.buf().is_empty() {
        return Ok(false);
    }
    // Bytes a short data file lacked read as zeros now: whatever records they held are
    // lost, and a hint would still name them. Scan, count the loss as damage, and treat
    // the segment as damaged so that nothing is written after the hole.
    let restored: u64 = seg.buf().restored().iter().map(|s| s.len()).sum();
    if restored == 0 && replay_hint(dir, seg, keys)? {
        replay.from_hints += 1;
        return Ok(false);
    }
    if restored > 0 {
        replay.damaged_records += 1;
        replay.damaged_bytes += restored;
        dir.remove(&seg.hint_name())?;
    }
    replay.scanned += 1;
    let end = scan(seg, |_, record_at, op, key| {
        apply(
            keys,
            seg,
            record_at + op.value_at,
            op.kind,
            key,
            op.value_len,
            op.expires_ms,
        );
    })?;
    match end {
        ScanEnd::Whole => Ok(restored > 0),
        ScanEnd::Damaged(at) => {
            replay.damaged_records += 1;
            replay.damaged_bytes += seg.buf().len() - at;
            Ok(true)
        }
    }
}

fn apply(
    keys: &mut KeyDir,
    seg: &Arc<Segment>,
    value_offset: u64,
    kind: Kind,
    key: &[u8],
    value_len: u64,
    expires_ms: u64,
) {
    match kind {
        Kind::Put => keys.replay_put(
            key,
            Loc::new(seg, value_offset, key.len(), value_len as usize, expires_ms),
        ),
        Kind::Delete => keys.replay_delete(key),
        Kind::Clear => keys.clear(),
    }
}

/// Replays `seg` from its hint file if there is a whole one that matches it. A hint that
/// is missing, damaged, incomplete or for another length is ignored (the caller scans
/// instead).
fn replay_hint(dir: &Dir, seg: &Arc<Segment>, keys: &mut KeyDir) -> Result<bool> {
    let name = seg.hint_name();
    if !dir.path().join(&name).exists() {
        return Ok(false);
    }
    // A hint that cannot even be opened (a damaged header or length register) is no
    // hint: the segment is scanned instead.
    let Ok(hint) = AppendOnly::open(dir, &name) else {
        return Ok(false);
    };
    let covered = seg.buf().len();
    // First pass: check every record, and every value span, so that a hint that does
    // not fit its segment is dropped whole rather than half applied.
    let mut entries = Vec::new();
    let mut next = 0u64;
    let mut total = None;
    let whole = hint_records(&hint, |record| {
        entries.clear();
        let Ok(place) = record::decode_hint(record, covered, &mut entries) else {
            return false;
        };
        if place.first != next || total.is_some_and(|t| t != place.total) {
            return false;
        }
        next += place.count;
        total = Some(place.total);
        entries.iter().all(|(e, _)| {
            seg.buf()
                .get(Span::new(e.value_offset, e.value_len))
                .is_ok()
        })
    })
    .unwrap_or(false);
    if !whole || total != Some(next) {
        return Ok(false);
    }
    // Second pass: apply.
    keys.reserve(next as usize);
    let applied = hint_records(&hint, |record| {
        entries.clear();
        let decoded = record::decode_hint(record, covered, &mut entries);
        debug_assert!(decoded.is_ok(), "checked in the first pass");
        for (e, key) in entries.drain(..) {
            apply(
                keys,
                seg,
                e.value_offset,
                e.kind,
                key,
                e.value_len,
                e.expires_ms,
            );
        }
        true
    })?;
    debug_assert!(applied, "checked in the first pass");
    Ok(true)
}

/// Calls `each` on every record of a hint buffer in order, while it returns true.
/// Returns false if `each` did, or if the records do not parse (the hint is then
/// unusable).
fn hint_records<'h>(hint: &'h AppendOnly, mut each: impl FnMut(&'h [u8]) -> bool) -> Result<bool> {
    let stopped = walk_records(
        hint,
        |bytes| match record::hint_record_len(bytes) {
            Ok(len) => Some(len),
            // Too short for a header: padding if it is all zeros.
            Err(_) => Some(None),
        },
        |_, record| each(record),
    )?;
    Ok(stopped.is_none())
}

/// How a scan of a segment ended.
pub(super) enum ScanEnd {
    /// Every record was whole.
    Whole,
    /// The record at this offset is damaged; nothing from it on was replayed.
    Damaged(u64),
}

/// Reads every record of `seg` in order and calls `each(operation checksum, record
/// offset, operation, key)` for each operation, up to the first damaged record.
pub(super) fn scan(
    seg: &Segment,
    mut each: impl FnMut(u64, u64, &DecodedOp, &[u8]),
) -> Result<ScanEnd> {
    let mut ops = Vec::new();
    let stopped = walk_records(
        seg.buf(),
        |bytes| match bytes
            .first_chunk::<RECORD_HEADER_BYTES>()
            .map(record::header)
        {
            // Too short for a header, or an all-zero one: padding if all zeros.
            None | Some(record::Header::Zero) => Some(None),
            Some(record::Header::Bad(_)) => None,
            Some(record::Header::Record { len, .. }) => Some(usize::try_from(len).ok()),
        },
        |offset, rec| {
            if record::decode(rec, &mut ops).is_err() {
                return false;
            }
            for op in &ops {
                let key = &rec[op.key_at as usize..][..op.key_len as usize];
                let op_start = op.key_at as usize - record::OP_HEADER_BYTES;
                let sum =
                    u64::from_le_bytes(rec[op_start..op_start + 8].try_into().expect("8 bytes"));
                each(sum, offset, op, key);
            }
            true
        },
    )?;
    Ok(stopped.map_or(ScanEnd::Whole, ScanEnd::Damaged))
}

/// Walks the records of a buffer in order, lane by lane (records never straddle
/// lanes). `len_of` reads the length of the record its argument starts with: `Some(None)`
/// for padding, which is valid only if zeros fill the rest of the lane, and `None` for a
/// header that is damaged. `each(offset, record)` returns false to stop. Returns the
/// offset of the record where the walk stopped (damaged, cut short, or refused by
/// `each`), or `None` if every record was walked.
fn walk_records<'b>(
    buf: &'b AppendOnly,
    len_of: impl Fn(&[u8]) -> Option<Option<usize>>,
    mut each: impl FnMut(u64, &'b [u8]) -> bool,
) -> Result<Option<u64>> {
    if buf.format() != 1 {
        // One record per frame; the frame's checksum already covers it. A frame that
        // lies in bytes open restored (a short data file: zeros now) is not damage to
        // walk past: the walk goes on after the restored range, which the owner counts.
        let mut end = 0;
        'walk: loop {
            let mut records = buf.records(end);
            while let Some(span) = records.next() {
                let span = match span {
                    Ok(span) => span,
                    Err(Error::Corrupted { .. }) => {
                        let frame = records.position();
                        let file = |at: u64| buf.file_position(at).map(|(path, _)| path);
                        // The restored range in the frame's data file, at or after it
                        // (a record cut by the loss fails its frame before the range).
                        if let Some(lost) = buf.restored().iter().find(|r| {
                            frame < r.end() && r.end() > end && file(frame) == file(r.offset())
                        }) {
                            end = lost.end();
                            continue 'walk;
                        }
                        return Ok(Some(end));
                    }
                    Err(e) => return Err(e),
                };
                let bytes = buf.get(span)?;
                if len_of(bytes) != Some(Some(bytes.len())) || !each(span.offset(), bytes) {
                    return Ok(Some(span.offset()));
                }
                end = span.end();
            }
            return Ok(None);
        }
    }
    for chunk in buf.chunks() {
        let (start, bytes) = chunk?;
        let mut at = 0usize;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let offset = start + at as u64;
            let len = match len_of(rest) {
                Some(Some(len)) if len > 0 && len <= rest.len() => len,
                Some(None) if rest.iter().all(|b| *b == 0) => break,
                _ => return Ok(Some(offset)),
            };
            if !each(offset, &rest[..len]) {
                return Ok(Some(offset));
            }
            at += len;
        }
    }
    Ok(None)
}

/// Writes the hint file of a finished segment: records of about 60 KiB listing its
/// operations. A segment whose scan meets damage gets no hint (and loses any it had):
/// a hint would list only the records before the damage and cover the segment's whole
/// length, so the next open would trust it and no longer see, nor count, the damage.
/// Without one, every open scans the segment and reports the damage in `stats()`.
pub(super) fn write_hint(dir: &Dir, seg: &Segment) -> Result<()> {
    let covered = seg.buf().len();
    // (entries, count) per record.
    let mut bodies: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), 0)];
    let end = scan(seg, |sum, record_at, op, key| {
        let (body, count) = bodies.last_mut().expect("one at least");
        record::push_hint(
            body,
            &HintEntry {
                kind: op.kind,
                key_len: op.key_len,
                value_len: op.value_len,
                value_offset: record_at + op.value_at,
                expires_ms: op.expires_ms,
                op_checksum: sum,
            },
            key,
        );
        *count += 1;
        if body.len() >= record::HINT_RECORD_BYTES {
            bodies.push((Vec::new(), 0));
        }
    })?;
    let total: u64 = bodies.iter().map(|(_, n)| n).sum();
    let name = seg.hint_name();
    // Whatever is there (a hint from before a crash, or a damaged one) is replaced.
    dir.remove(&name)?;
    if matches!(end, ScanEnd::Damaged(_)) {
        return Ok(());
    }
    let hint = AppendOnly::open(dir, &name)?;
    let mut first = 0;
    for (body, count) in &bodies {
        if *count == 0 && total != 0 {
            continue;
        }
        let place = record::HintPlace {
            first,
            count: *count,
            total,
        };
        hint.append(&record::hint_record(body, place, covered))?;
        first += count;
    }
    hint.sync_recorded()
}
