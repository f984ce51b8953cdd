//! Opening a sharded store: the state and its map, the entropy, every shard the map
//! names (its rows trusted after a clean shutdown whose check holds, rebuilt from its
//! records otherwise), and the removal of leftovers: shards of a split, merge,
//! compaction or clear that a crash cut short, or whose replacement was committed.
//!
//! The logs are trusted as the AppendOnly hands them over (a prefix of what was
//! appended, each record behind a frame that holds), and the store directory's open
//! made them durable before anything here acts on them.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use bytemuck::Zeroable;
use parking_lot::Mutex;

use super::ShardedOptions;
use super::map::{self, CLEAN, FORMAT, FRESH, STATE_MAGIC, State};
use super::shard::{Opening, Shard};
use super::store::{Counters, Inner, Map, initial_shards};
use crate::{Dir, Entropy, Error, Journal, Result};

/// Opens or creates the store `name` in `dir`.
pub(super) fn open(dir: &Dir, name: &str, options: ShardedOptions) -> Result<Inner> {
    let state: Journal<State> = Journal::open(dir, &format!("{name}/state"))?;
    let path = state.path().to_path_buf();
    let found = incarnations(dir, name)?;
    let mut s = state.get();
    if s.magic == 0 {
        if !found.is_empty() {
            return Err(Error::corrupted(
                &path,
                0,
                "the state of a sharded store is missing while its shards exist",
            ));
        }
        // The state first, naming shards whose files do not exist yet (FRESH says
        // so), so that a crash leaves either nothing or a state.
        let n = initial_shards(options.expected_keys);
        s = State::zeroed();
        s.magic = STATE_MAGIC;
        s.format = FORMAT;
        s.flags = CLEAN | FRESH;
        s.store_id = rand::random();
        s.next_incarnation = u64::from(n);
        map::set_specs(&mut s, &map::even(n, 0));
        state.set(s)?;
        state.sync()?;
    } else if s.magic != STATE_MAGIC {
        return Err(Error::incompatible(
            &path,
            "this is not a sharded store's state",
        ));
    } else if s.format != FORMAT {
        return Err(Error::UnsupportedVersion {
            path,
            found: s.format,
            supported: FORMAT,
        });
    }
    let specs = map::specs(&s, &path)?;
    let fresh = s.flags & FRESH != 0;
    // Keys are routed to shards by their keyed hash: another entropy would send them
    // elsewhere, so a lost or foreign entropy file is damage, not something to rebuild.
    let entropy_name = format!("{name}/entropy");
    if !fresh && !Entropy::exists(dir, &entropy_name)? {
        return Err(Error::corrupted(
            &path,
            0,
            "the entropy file of this sharded store is missing: its keys' shards cannot \
             be found without it",
        ));
    }
    let entropy = Entropy::open(dir, &entropy_name)?;
    let check = entropy.hash(&s.store_id.to_le_bytes());
    if fresh && s.entropy_check != check {
        s.entropy_check = check;
        state.set(s)?;
        state.sync()?;
    } else if s.entropy_check != check {
        return Err(Error::corrupted(
            &dir.path().join(&entropy_name),
            0,
            "this entropy file belongs to another store: this sharded store's keys \
             cannot be found with it",
        ));
    }
    let how = if fresh {
        Opening::Fresh
    } else {
        Opening::Existing
    };
    let clean = s.flags & CLEAN != 0;
    let mut shards = Vec::with_capacity(specs.len());
    let mut rebuilt = 0;
    let named: Vec<u64> = specs.iter().map(|spec| spec.incarnation).collect();
    for spec in specs {
        let shard = Shard::open(dir, name, spec, s.store_id, how)?;
        // A store never written has empty rows and nothing to rebuild them from.
        let rows_hold = fresh || (clean && shard.trust()?);
        if !rows_hold {
            shard.rebuild(&entropy)?;
            rebuilt += 1;
        }
        shards.push(Arc::new(shard));
    }
    // Leftovers: incarnations below the next one that the map does not name. Anything
    // at or past it is not ours (incarnations are reserved durably before their files
    // are made) and is left alone. Only once every shard the map names has opened and
    // held: a state that is not the last one written (a damaged journal's older value)
    // names shards that are gone, and must not cost the ones that are in force.
    for n in found {
        if n < s.next_incarnation && !named.contains(&n) {
            dir.remove(&super::shard::shard_name(name, n))?;
        }
    }
    Ok(Inner {
        dir: dir.clone(),
        name: name.to_owned(),
        options,
        state,
        entropy,
        store_id: s.store_id,
        map: ArcSwap::from_pointee(Map::new(shards)),
        map_lock: Mutex::new(()),
        dirty: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
        rebuilt,
        counters: Counters::default(),
    })
}

/// The incarnations of the shard directories (`s{N}`) under the store's name.
fn incarnations(dir: &Dir, name: &str) -> Result<Vec<u64>> {
    let path = dir.path().join(name);
    let entries = match std::fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "list the store's shards", e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&path, "list the store's shards", e))?;
        let file = entry.file_name();
        let Some(n) = file
            .to_str()
            .and_then(|f| f.strip_prefix('s'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push(n);
    }
    found.sort_unstable();
    Ok(found)
}
