//! Opening a hash store: the state, the data generations, and the index, trusted as it
//! is after a clean shutdown or rebuilt from the records after anything else. Stale
//! generations (of an optimisation or a resize that a crash cut short) are removed here.
//!
//! The data logs are trusted as the AppendOnly hands them over: its open adopted only
//! records whose frames hold (a prefix of what was appended), and the store directory's
//! open made them durable before anything here acts on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use parking_lot::{Mutex, RwLock};

use super::HashOptions;
use super::data::{DataGen, IDENTITY_END, data_name, footprint, is_ours};
use super::index::{self, Index, LEVEL_MAX, LEVEL_MIN, Scratch, index_name};
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
            store_id: rand::random(),
            entropy_check: 0,
            dead_floor: 0,
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
        // Only logs that name this store: a structure a user put under the store's name
        // is left alone.
        if g != s.data_gen && g != s.prev_gen && is_ours(dir, &data_name(name, g), s.store_id) {
            remove_stale(dir, &data_name(name, g))?;
        }
    }
    // A lost entropy file means new hashes: the index is rebuilt with them. The state
    // says so durably before the new file exists, so that a crash in between cannot
    // leave a clean state, a new entropy and an index hashed with the old one.
    let entropy_known = Entropy::exists(dir, &format!("{name}/entropy"))?;
    if !entropy_known && !newborn {
        unclean(&state, &mut s)?;
    }
    let entropy = Entropy::open(dir, &format!("{name}/entropy"))?;
    // An optimisation's previous generation was the current one, so it is never empty;
    // the current one may be only if no write to it was ever recorded durably (a new
    // store; or its first generation, never closed cleanly, at a power loss).
    let first_life = s.data_gen == 0 && s.prev_gen == NO_GEN && s.covered_len == 0;
    let prev = match s.prev_gen {
        NO_GEN => None,
        g => Some(Arc::new(DataGen::open(dir, name, g, s.store_id, false)?)),
    };
    let data = Arc::new(DataGen::open(
        dir, name, s.data_gen, s.store_id, first_life,
    )?);
    // An entropy file of another store (or a new one) hashes differently: the index is
    // rebuilt with it.
    let entropy_matches = newborn || entropy.hash(&s.store_id.to_le_bytes()) == s.entropy_check;
    let index_there = indexes.contains(&s.index_gen) || (newborn && indexes.is_empty());
    let clean = s.flags & CLEAN != 0
        && s.live_bytes <= data.log.len().next_multiple_of(16)
        && prev.is_none()
        && (entropy_known || newborn)
        && entropy_matches
        && (data.log.len() == s.covered_len || newborn && data.log.len() == IDENTITY_END)
        && data.log.adopted_bytes() == 0
        && index_there;
    let trusted = if clean {
        // A new store's state holds no sum: its index must be empty.
        let sum = if newborn {
            Index::empty_digest(s.index_level)
        } else {
            s.index_sum
        };
        let opened = if newborn {
            Index::open(dir, name, s.index_gen, s.index_level)
        } else {
            Index::open_as_is(dir, name, s.index_gen, s.index_level)
        };
        match opened {
            Ok(i) if i.whole() && i.digest()? == sum && i.count()? == s.entries => Some(i),
            Ok(_) | Err(Error::Corrupted { .. } | Error::Incompatible { .. }) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let rebuild = trusted.is_none();
    // A new store's first open made its identity record, which no state covers yet:
    // it is recorded below, or the next open would find it past the recorded length and
    // rebuild. (`dirty` is what the state says: not clean, from `unclean` above, or so
    // treated until the close below records it.)
    let dirty = rebuild || data.log.len() != s.covered_len;
    let (index, entries, live_bytes) = match trusted {
        Some(i) => (i, s.entries, s.live_bytes),
        None => {
            // Not clean from here on (durably, before any index file changes): a crash
            // in the rebuild rebuilds again.
            unclean(&state, &mut s)?;
            // The state's level, but never more than the records could fill (a damaged
            // state must not size a huge allocation): a record takes at least 32 bytes.
            let records_max = data.log.len() / 32 + prev.as_ref().map_or(0, |p| p.log.len() / 32);
            let mut level = LEVEL_MIN;
            while level < s.index_level && index::capacity(level) * 9 / 10 < records_max {
                level += 1;
            }
            let (scratch, entries, live) = replay(&entropy, prev.as_ref(), &data, level)?;
            let number = s.index_gen + 1;
            dir.remove(&index_name(name, number))?;
            let index = Index::open(dir, name, number, scratch.level)?;
            index.fill_from(&scratch)?;
            (index, entries, live)
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
        writer: Mutex::new(Writer { dirty }),
        writer_thread: AtomicUsize::new(0),
        poisoned: AtomicBool::new(false),
        optimizing: AtomicBool::new(false),
        entries: AtomicU64::new(entries),
        live_bytes: AtomicU64::new(live_bytes),
        store_id: s.store_id,
        dead_floor: AtomicU64::new(if rebuild { 0 } else { s.dead_floor }),
        rebuilt: rebuild,
    };
    if rebuild {
        // Durable as a clean state, so that another crash before any write does not
        // rebuild again; an optimisation the crash cut short is finished first.
        inner.move_prev()?;
    }
    if dirty {
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

/// Says durably that the index is not to be trusted (before anything changes it).
fn unclean(state: &Journal<State>, s: &mut State) -> Result<()> {
    if s.flags & CLEAN != 0 {
        s.flags &= !CLEAN;
        state.set(*s)?;
        state.sync()?;
    }
    Ok(())
}

/// Rebuilds the index from the records, in memory: the previous generation's (if an
/// optimisation was under way), then the current one's, each in log order. Returns the
/// index (at the level the rules for growing and shrinking give, starting from `level`),
/// its entries, and the log bytes their records take.
fn replay(
    entropy: &Entropy,
    prev: Option<&Arc<DataGen>>,
    data: &Arc<DataGen>,
    level: u32,
) -> Result<(Scratch, u64, u64)> {
    let mut index = Scratch::new(level);
    let (mut entries, mut live) = (0u64, 0u64);
    let gens = [prev, Some(data)];
    let live_gen = |parity: u64| gens.iter().flatten().find(|g| g.number & 1 == parity);
    for dg in gens.iter().flatten() {
        for span in dg.log.records(0) {
            let offset = span?.offset();
            let rec = dg.read(offset)?;
            match rec.header.kind {
                Kind::Clear => {
                    index = Scratch::new(LEVEL_MIN);
                    (entries, live) = (0, 0);
                    continue;
                }
                Kind::Generation => continue,
                Kind::Put | Kind::Delete => {}
            }
            let key = rec.header.key(rec.bytes);
            let tag = index::tag(entropy.hash(key));
            let mut old_bytes = 0;
            let found = index.find(tag, |pos| {
                let (parity, at) = index::locate(pos);
                let Some(g) = live_gen(parity) else {
                    return Ok(false);
                };
                let other = g.read(at)?;
                old_bytes = footprint(other.header.record_len() as u64);
                Ok(other.header.key(other.bytes) == key)
            })?;
            match (found, rec.header.kind) {
                (Some((slot, _)), Kind::Put) => {
                    index.replace(slot, index::position(dg.number, offset))?;
                    live = live.saturating_sub(old_bytes);
                }
                (None, Kind::Put) => {
                    index.insert(tag, index::position(dg.number, offset))?;
                    entries += 1;
                }
                (Some((slot, _)), _) => {
                    index.remove(slot)?;
                    live = live.saturating_sub(old_bytes);
                    entries -= 1;
                }
                (None, _) => {}
            }
            if rec.header.kind == Kind::Put {
                live += footprint(rec.header.record_len() as u64);
                if entries * 10 > index.capacity() * 9 && index.level < LEVEL_MAX {
                    index = refit(&index, index.level + 1)?;
                }
            }
        }
    }
    // As the writes would have left it: shrunk while under 35% full.
    let mut level = index.level;
    while level > LEVEL_MIN
        && entries * 100 < index::capacity(level) * 35
        && entries * 10 <= index::capacity(level - 1) * 7
    {
        level -= 1;
    }
    if level != index.level {
        index = refit(&index, level)?;
    }
    Ok((index, entries, live))
}

/// The entries of `index` in a new scratch index of level `level`.
fn refit(index: &Scratch, level: u32) -> Result<Scratch> {
    let bigger = Scratch::new(level);
    for e in index.entries() {
        let (_, tag, pos) = e?;
        bigger.insert(tag, pos)?;
    }
    Ok(bigger)
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
        // A directory holding a state is a store of its own named below this one.
        if let Ok(n) = number.parse::<u64>()
            && entry.path().is_dir()
            && !entry.path().join("state").exists()
        {
            list.push(n);
        }
    }
    Ok((datas, indexes))
}
