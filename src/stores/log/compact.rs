//! Compaction: copy the live values of every finished segment into a new generation's
//! base segments, make them durable with their hints, then switch to the new generation
//! in the state journal (the commit point) and retire the old segments.
//!
//! Case analysis for a crash:
//! - before the journal slot is durable: the state still names the old generation; the
//!   new generation's directory is garbage, removed on open;
//! - after: the state names the new generation and the first log segment written after
//!   compaction began; older log segments and the old generation are garbage.
//!
//! Writes that land while compaction copies go to log segments the new generation
//! keeps, and are replayed after its base segments, so they win over the copies.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::keydir::{Level, Snapshot};
use super::record::{self, Kind, Op};
use super::segment::Segment;
use super::{Inner, Key, Loc, base_name, now_ms, open};
use crate::{Error, Result};

pub(super) fn compact(inner: &Inner) -> Result<()> {
    let _one_at_a_time = inner.compacting.lock();
    // After a failed sync (a state commit's among them) a compaction would write a
    // whole generation that could not be committed.
    inner.check_poison()?;
    // Only compaction changes the generation, one at a time.
    let Some(generation) = inner.state.get().generation.checked_add(1) else {
        return Err(Error::corrupted(
            inner.state.path(),
            0,
            "generation is u64::MAX: no number is left for the next one",
        ));
    };
    // A failed attempt may have left base segments of this generation behind: the state
    // does not name them, so they are garbage, and reusing them would replay stale
    // records ahead of the logs this attempt keeps.
    inner.dir.remove(&format!("{}/g{generation}", inner.name))?;
    // Finish the active segment, so that everything written so far is in a finished
    // segment, and take the key directory as of that moment.
    let (first_kept_log, snapshot) = {
        let mut writer = inner.writer.lock();
        let finished = if writer.active.buf().is_empty() {
            None
        } else {
            Some(inner.roll(&mut writer)?)
        };
        // Pinned until the switch: from here every way out unpins.
        let snapshot = inner.keys.read().snapshot_pinned();
        let first_kept = writer.active_id;
        drop(writer);
        if let Some(finished) = finished {
            inner.after_roll(&finished);
        }
        (first_kept, snapshot)
    };
    let old: HashSet<*const Segment> = {
        let segments = inner.segments.lock();
        segments
            .base
            .iter()
            .chain(
                segments
                    .logs
                    .iter()
                    .filter(|(id, _)| *id < first_kept_log)
                    .map(|(_, s)| s),
            )
            .map(Arc::as_ptr)
            .collect()
    };
    let copied = copy(inner, generation, &old, snapshot);
    let (base, moved) = match copied {
        Ok(copied) => copied,
        Err(e) => {
            inner.keys.read().unpin();
            return Err(e);
        }
    };

    // Switch. Writers wait for this part only: the state commit and a few pointer
    // swaps. The state is committed first: if that fails, memory still describes the
    // old generation.
    let writer = inner.writer.lock();
    let base_count = base.len() as u64;
    let committed = inner
        .state
        .update(|s| {
            s.generation = generation;
            s.base_count = base_count;
            s.log_first = first_kept_log;
            s.last_compaction_ms = now_ms().max(1);
        })
        .and_then(|()| inner.state.sync());
    if let Err(e) = inner.poison_on_error(committed) {
        // Whether the new state reached the disk is unknown (the journal is poisoned
        // now): the new base segments stay, for the next open to keep if the state
        // names them or remove as garbage if it does not.
        drop(base);
        inner.keys.read().unpin();
        return Err(e);
    }
    let replaced = inner.keys.read().replace_pinned(moved.bottom);
    let mut segments = inner.segments.lock();
    for seg in segments.base.drain(..) {
        seg.retire();
    }
    segments.logs.retain(|(id, seg)| {
        let keep = *id >= first_kept_log;
        if !keep {
            seg.retire();
        }
        keep
    });
    segments.base = base;
    drop(segments);
    drop(writer);
    drop(replaced);

    // Repoint the hash map, a chunk at a time so that reads and writes go on in
    // between. Until an entry is repointed it names the old copy, which is still there
    // (a retired segment's files go with its last handle) and holds the same bytes; an
    // entry written since is left alone.
    for chunk in moved.moves.chunks(REPOINT_CHUNK) {
        let mut keys = inner.keys.write();
        for (key, was, new) in chunk {
            keys.repoint(key.bytes(), was, new.clone());
        }
    }
    for chunk in moved.expired.chunks(REPOINT_CHUNK) {
        let mut keys = inner.keys.write();
        for (key, was) in chunk {
            keys.remove_if_unchanged(key.bytes(), was);
        }
    }
    Ok(())
}

/// Hash-map entries repointed per hold of the key directory's write lock.
const REPOINT_CHUNK: usize = 4096;

/// What copying a snapshot produced, besides the new base segments.
struct Moved {
    /// The snapshot's keys in order, with the locations they have after the switch:
    /// the ordered view's new bottom level.
    bottom: Level,
    /// `(key, old location, new location)` of every copied value.
    moves: Vec<(Key, Loc, Loc)>,
    /// `(key, location)` of every expired or damaged value, not copied.
    expired: Vec<(Key, Loc)>,
}

/// Copies the live values of `snapshot` that lie in `old` segments into the base
/// segments of `generation`, made durable with their hints. Nothing here is visible
/// until the switch.
fn copy(
    inner: &Inner,
    generation: u64,
    old: &HashSet<*const Segment>,
    snapshot: Snapshot,
) -> Result<(Vec<Arc<Segment>>, Moved)> {
    let now = now_ms();
    let mut out = BaseWriter::new(inner, generation);
    let mut moved = Moved {
        bottom: Vec::new(),
        moves: Vec::new(),
        expired: Vec::new(),
    };
    for (key, loc) in snapshot.cursor(Bound::Unbounded, Bound::Unbounded) {
        if !old.contains(&Arc::as_ptr(&loc.seg)) {
            moved.bottom.push((key, Some(loc)));
            continue;
        }
        if loc.expired(|| now) {
            // Not copied: its segment goes, so the directory entry must go too.
            moved.expired.push((key, loc));
            continue;
        }
        let value = match super::value_of(key.bytes(), &loc) {
            Ok(value) => value,
            // Damaged at rest: the value is lost (a `get` of it fails), and refusing to
            // compact would cost the store every later compaction. The key goes, as an
            // expired one does, and the loss is counted.
            Err(Error::Corrupted { .. }) => {
                inner.damaged_dropped.fetch_add(1, Ordering::Relaxed);
                moved.expired.push((key, loc));
                continue;
            }
            Err(e) => return Err(e),
        };
        let new = out.put(key.bytes(), &value, loc.expires_ms)?;
        moved.bottom.push((key.clone(), Some(new.clone())));
        moved.moves.push((key, loc, new));
    }
    Ok((out.finish()?, moved))
}

/// Starts a compaction on a background thread if the dead bytes exceed the ratio set at
/// open and no compaction is running.
pub(super) fn maybe_start(inner: &Arc<Inner>) {
    let Some(ratio) = inner.opts.compact_dead_ratio else {
        return;
    };
    let (live, total) = {
        let live = inner.keys.read().live_bytes();
        let total = inner.segments.lock().bytes();
        (live, total)
    };
    let dead = total.saturating_sub(live);
    if total == 0 || (dead as f64) < ratio * total as f64 || inner.compacting.is_locked() {
        return;
    }
    let mut background = inner.background.lock();
    if background.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    if let Some(done) = background.take() {
        let _ = done.join();
    }
    if inner.auto_compaction_failed.load(Ordering::Acquire) {
        return;
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    *background = std::thread::Builder::new()
        .name("accretion-compact".into())
        .spawn(move || {
            if let Some(inner) = weak.upgrade() {
                // A failed background compaction leaves the old generation in place.
                // It is not retried automatically (a damaged value or a full disk would
                // fail it again and again); the next explicit `compact` reports the
                // error, and its success turns automatic compaction back on.
                if compact(&inner).is_err() {
                    inner.auto_compaction_failed.store(true, Ordering::Release);
                    inner.compaction_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .ok();
}

/// Writes a new generation's base segments, rolling at the segment size.
struct BaseWriter<'a> {
    inner: &'a Inner,
    generation: u64,
    segments: Vec<Arc<Segment>>,
    value_at: Vec<u64>,
    /// Set by `finish`; a writer dropped before (a failed copy) retires its segments, so
    /// their files go.
    finished: bool,
}

impl Drop for BaseWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for seg in &self.segments {
                seg.retire();
            }
        }
    }
}

impl<'a> BaseWriter<'a> {
    fn new(inner: &'a Inner, generation: u64) -> Self {
        BaseWriter {
            inner,
            generation,
            segments: Vec::new(),
            value_at: Vec::new(),
            finished: false,
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8], expires_ms: u64) -> Result<Loc> {
        let ops = [Op {
            kind: Kind::Put,
            key,
            value,
            expires_ms,
        }];
        let len = record::record_len(&ops);
        let full = self.segments.last().is_none_or(|s| {
            !s.buf().is_empty() && !s.fits(len as u64, self.inner.opts.segment_bytes)
        });
        if full {
            if let Some(last) = self.segments.last() {
                last.buf().sync_recorded()?;
                open::write_hint(&self.inner.dir, last)?;
                last.buf().close_descriptors();
            }
            let index = self.segments.len() as u64;
            let name = base_name(&self.inner.name, self.generation, index);
            let seg = Segment::open(&self.inner.dir, name)?;
            seg.buf().limit_ahead(self.inner.opts.segment_bytes);
            self.segments.push(seg);
        }
        let seg = self.segments.last().expect("pushed above");
        self.value_at.clear();
        let span = seg.append_record(&ops, &mut self.value_at)?;
        Ok(Loc::new(
            seg,
            span.offset() + self.value_at[0],
            key.len(),
            value.len(),
            expires_ms,
        ))
    }

    fn finish(mut self) -> Result<Vec<Arc<Segment>>> {
        if let Some(last) = self.segments.last() {
            last.buf().sync_recorded()?;
            open::write_hint(&self.inner.dir, last)?;
            last.buf().close_descriptors();
        }
        self.finished = true;
        Ok(std::mem::take(&mut self.segments))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::{Dir, LogOptions, LogStore};

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dest = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &dest);
            } else {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    }

    /// A roll leaves the finished segment unsynced until its writer gets to it. A
    /// compaction meanwhile must not make a later segment's bytes durable before it:
    /// a crash image taken while compaction is stopped after its own roll (a copy of
    /// the files, in which only synced lengths count) never holds a later write
    /// without the earlier ones. Found by review: compaction synced the active segment
    /// directly.
    #[test]
    fn compaction_keeps_the_durable_log_a_prefix() {
        let dir = Dir::temporary().unwrap();
        let store = LogStore::open(&dir, "kv", LogOptions::default()).unwrap();
        store.put(b"a", b"1").unwrap();
        store.sync().unwrap();
        store.put(b"a", b"2").unwrap();
        let inner = &store.inner;
        // A writer that rolled and has not yet synced the segment it finished.
        let finished = inner.roll(&mut inner.writer.lock()).unwrap();
        store.put(b"b", b"later").unwrap();
        let next = Arc::clone(&inner.writer.lock().active);
        let image = tempfile::tempdir().unwrap();
        // Holding the key directory stops compaction at its snapshot, after its roll.
        let keys = inner.keys.write();
        std::thread::scope(|s| {
            let compaction = s.spawn(|| store.compact());
            let start = std::time::Instant::now();
            while next.buf().durable_len() < next.buf().len()
                && start.elapsed() < Duration::from_millis(300)
            {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(50));
            copy_dir(dir.path(), image.path());
            drop(keys);
            compaction.join().unwrap().unwrap();
        });
        inner.after_roll(&finished);
        let crashed = Dir::open(image.path()).unwrap();
        let after = LogStore::open(&crashed, "kv", LogOptions::default()).unwrap();
        if after.get(b"b").unwrap().is_some() {
            assert_eq!(
                after.get(b"a").unwrap().as_deref(),
                Some(&b"2"[..]),
                "a later write survived an earlier one"
            );
        }
    }
}
