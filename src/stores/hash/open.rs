//! Opening a hash store: the state, the data generations, and the index, trusted as it
//! is after a clean shutdown or rebuilt from the records after anything else. Stale
//! generations (of an optimisation or a resize that a crash cut short) are removed here.
//!
//! The data logs are trusted as the AppendOnly hands them over: its open adopted only
//! records whose frames hold (a prefix of what was appended), and the store directory's
//! open made them durable before anything here acts on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::HashOptions;
use super::data::{DataGen, data_name, footprint};
use super::index::{self, Index, LEVEL_MAX, LEVEL_MIN, index_name};
use super::record::Kind;
use super::store::{CLEAN, FORMAT, Inner, NO_GEN, STATE_MAGIC, Shared, State, Writer};
use crate::{Dir, Entropy, Error, Journal, Result};

/// Opens or creates the store `name` in `dir`.
pub(super) fn open(dir: &Dir, name: &str, options: HashOptions) -> Result<Inner> {
    let state: Journal<State> = Journal::open(dir, &format!("{name}/state"))?;
    let path = state.path().to_path_buf();
    let (datas, indexes) = generations(dir, name)?;
    let mut s = state.get();
    if s.magic == 0 {
        if !datas.is_empty() {
            return Err(Error::corrupted(
                &path,
                0,
                "the state of a hash store is missing while its data logs exist",
            ));
        }
        s = State {
            magic: STATE_MAGIC,
            format: FORMAT,
            flags: CLEAN,
            data_gen: 0,
            prev_gen: NO_GEN,
            index_gen: 0,
            index_level: LEVEL_MIN,
            _reserved: 0,
            covered_len: 0,
            entries: 0,
            live_bytes: 0,
            index_sum: 0,
        };
        state.set(s)?;
        state.sync()?;
    } else {
        check_state(&path, &s)?;
    }
    let newborn = s.flags & CLEAN != 0 && s.covered_len == 0 && s.prev_gen == NO_GEN;
    for &g in [s.data_gen, s.prev_gen].iter().filter(|&&g| g != NO_GEN) {
        if !datas.contains(&g) && !newborn {
            return Err(Error::corrupted(
                &path,
                0,
                format!(
                    "the state names data generation {g} of the hash store, whose log is missing"
                ),
            ));
        }
    }
    for g in datas {
        if g != s.data_gen && g != s.prev_gen {
            remove_stale(dir, &data_name(name, g))?;
        }
    }
    // A lost entropy file means new hashes: the index is rebuilt with them.
    let entropy_known = Entropy::exists(dir, &format!("{name}/entropy"))?;
    let entropy = Entropy::open(dir, &format!("{name}/entropy"))?;
    let prev = match s.prev_gen {
        NO_GEN => None,
        g => Some(Arc::new(DataGen::open(dir, name, g)?)),
    };
    let data = Arc::new(DataGen::open(dir, name, s.data_gen)?);
    let index_there = indexes.contains(&s.index_gen) || (newborn && indexes.is_empty());
    let clean = s.flags & CLEAN != 0
        && prev.is_none()
        && (entropy_known || newborn)
        && data.log.len() == s.covered_len
        && data.log.adopted_bytes() == 0
        && index_there;
    let trusted = if clean {
        match Index::open(dir, name, s.index_gen, s.index_level) {
            // A new store's state holds no sum: its index must be empty.
            Ok(i)
                if i.digest()?
                    == if newborn {
                        Index::empty_digest(s.index_level)
                    } else {
                        s.index_sum
                    } =>
            {
                Some(i)
            }
            Ok(_) | Err(Error::Corrupted { .. } | Error::Incompatible { .. }) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let rebuild = trusted.is_none();
    let index = match trusted {
        Some(i) => i,
        None => {
            let number = s.index_gen + 1;
            dir.remove(&index_name(name, number))?;
            Index::open(dir, name, number, s.index_level)?
        }
    };
    for g in indexes {
        if g != index.number {
            remove_stale(dir, &index_name(name, g))?;
        }
    }
    let inner = Inner {
        dir: dir.clone(),
        name: name.to_owned(),
        options,
        entropy,
        state,
        shared: RwLock::new(Shared { index, data, prev }),
        writer: Mutex::new(Writer::default()),
        writer_thread: AtomicUsize::new(0),
        poisoned: AtomicBool::new(false),
        optimizing: AtomicBool::new(false),
        entries: AtomicU64::new(if rebuild { 0 } else { s.entries }),
        live_bytes: AtomicU64::new(if rebuild { 0 } else { s.live_bytes }),
        rebuilt: rebuild,
    };
    if rebuild {
        replay(&inner)?;
        // Durable as a clean state, so that another crash before any write does not
        // rebuild again; an optimisation the crash cut short is finished first.
        inner.move_prev()?;
        inner.close()?;
    }
    Ok(inner)
}

/// Removes a generation the state does not name, unless value handles of an earlier
/// open still hold it: it was retired then, and goes when they are dropped.
fn remove_stale(dir: &Dir, name: &str) -> Result<()> {
    match dir.remove(name) {
        Err(Error::NameInUse { .. }) => Ok(()),
        other => other,
    }
}

fn check_state(path: &std::path::Path, s: &State) -> Result<()> {
    if s.magic != STATE_MAGIC {
        return Err(Error::incompatible(path, "this state is no hash store's"));
    }
    if s.format != FORMAT {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: s.format,
            supported: FORMAT,
        });
    }
    let gens_hold = s.data_gen != NO_GEN
        && s.data_gen != s.prev_gen
        && (s.prev_gen == NO_GEN || s.prev_gen & 1 != s.data_gen & 1);
    if !gens_hold || !(LEVEL_MIN..=LEVEL_MAX).contains(&s.index_level) || s.flags & !CLEAN != 0 {
        return Err(Error::corrupted(
            path,
            0,
            format!(
                "impossible hash store state: data generation {}, previous {}, index of \
                 level {}, flags {:#x}",
                s.data_gen, s.prev_gen, s.index_level, s.flags
            ),
        ));
    }
    Ok(())
}

/// Rebuilds the index from the records: the previous generation's (if an optimisation
/// was under way), then the current one's, each in log order.
fn replay(inner: &Inner) -> Result<()> {
    let mut g = inner.lock_writer("HashStore::open")?;
    // Durably not clean before the index generations change: a crash in the middle
    // must not leave a clean state naming a half-built index.
    inner.make_dirty(&mut g.w)?;
    let (prev, data) = {
        let s = inner.shared.read();
        (s.prev.clone(), Arc::clone(&s.data))
    };
    for dg in prev.iter().chain(std::iter::once(&data)) {
        for span in dg.log.records(0) {
            let offset = span?.offset();
            let rec = dg.read(offset)?;
            let key = rec.header.key(rec.bytes);
            match rec.header.kind {
                Kind::Clear => {
                    inner.replace_index(&mut g.w, LEVEL_MIN, false)?;
                    inner.entries.store(0, Ordering::Release);
                    inner.live_bytes.store(0, Ordering::Release);
                }
                Kind::Put | Kind::Delete => {
                    let tag = inner.tag(key);
                    let found = inner.lookup(&inner.shared.read(), key, tag)?;
                    let s = inner.shared.read();
                    match (found, rec.header.kind) {
                        (Some(hit), Kind::Put) => {
                            s.index
                                .replace(hit.slot, index::position(dg.number, offset))?;
                            inner
                                .live_bytes
                                .fetch_sub(hit.footprint(), Ordering::AcqRel);
                        }
                        (None, Kind::Put) => {
                            s.index.insert(tag, index::position(dg.number, offset))?;
                            inner.entries.fetch_add(1, Ordering::AcqRel);
                        }
                        (Some(hit), _) => {
                            s.index.remove(hit.slot)?;
                            inner
                                .live_bytes
                                .fetch_sub(hit.footprint(), Ordering::AcqRel);
                            inner.entries.fetch_sub(1, Ordering::AcqRel);
                        }
                        (None, _) => {}
                    }
                    if rec.header.kind == Kind::Put {
                        let bytes = footprint(rec.header.record_len() as u64);
                        inner.live_bytes.fetch_add(bytes, Ordering::AcqRel);
                    }
                    drop(s);
                    inner.fit_index(&mut g.w)?;
                }
            }
        }
    }
    Ok(())
}

/// Numbers of the data and index generations present under the store.
fn generations(dir: &Dir, name: &str) -> Result<(Vec<u64>, Vec<u64>)> {
    let path = dir.path().join(name);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(e) => return Err(Error::io(&path, "list a hash store's files", e)),
    };
    let (mut datas, mut indexes) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&path, "list a hash store's files", e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let (list, number) = if let Some(n) = file.strip_prefix('d') {
            (&mut datas, n)
        } else if let Some(n) = file.strip_prefix('i') {
            (&mut indexes, n)
        } else {
            continue;
        };
        if let Ok(n) = number.parse::<u64>()
            && entry.path().is_dir()
        {
            list.push(n);
        }
    }
    Ok((datas, indexes))
}
