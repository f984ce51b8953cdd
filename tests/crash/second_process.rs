//! Kill, reopen and work, then power loss (see `disk.rs` for the model).
//!
//! A first process works and is killed at a flush (inside a Journal's fdatasync, a
//! segment roll, a compaction's commit, or any flush at random); a second process opens
//! what the first left in the page cache, reads it, works on it and syncs. Then power
//! is lost. The rule under test: nothing read at open is acted upon durably before it is
//! on the device, so after the second process's sync returned, the disk holds exactly
//! what that process saw and wrote: every image opens to it.
//!
//! `the_checks_catch_an_open_that_flushes_nothing` shows that the checks notice when the
//! open's flush is missing.

use std::collections::BTreeMap;
use std::path::Path;

use accretion::faults::Flush;
use accretion::{Dir, Journal, LogOptions, LogStore, RandomAccess};
use rand::Rng;

use crate::disk::DiskModel;
use crate::harness::{Granularity, Replay, scratch_root};

/// Power-loss images checked per run of a scenario.
const IMAGES: usize = 24;
/// Runs of the LogStore scenario killed at a random flush.
const RANDOM_KILLS: usize = 24;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("accretion-second-")
        .tempdir_in(scratch_root())
        .expect("temporary directory")
}

/// Builds `IMAGES` power-loss images of `model` and checks each with `check`.
fn check_power_loss(
    replay: &mut Replay,
    model: &DiskModel,
    mut check: impl FnMut(&Path) -> Result<(), String>,
) {
    for n in 0..IMAGES {
        let granularity = if n % 2 == 0 {
            Granularity::Page
        } else {
            Granularity::Sector
        };
        // The first image keeps nothing that was not flushed; the rest mix at random.
        let mix = if n == 0 {
            0.0
        } else {
            replay.rng.random_range(0.0..1.0)
        };
        let image = model.power_loss(&mut replay.rng, granularity, mix);
        replay.context = format!("checking power-loss image {n} ({granularity:?}, mix {mix:.2})");
        if let Err(e) = check(image.path()) {
            panic!("{}: {e}", replay.context);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Journal

/// The first process dies inside the fdatasync of a new value; the second reads that
/// value and syncs (nothing changed, so the Journal itself writes nothing): after power
/// loss the value it read must still be there.
fn journal_second_process(replay: &mut Replay, flush_at_open: bool) -> Result<(), String> {
    let work = workdir();
    let root = work.path();
    let model = DiskModel::start(root);
    {
        let dir = Dir::open(root).expect("open");
        let journal = Journal::<[u64; 4]>::open(&dir, "j").expect("journal");
        journal.set([1; 4]).expect("set");
        journal.sync().expect("sync");
        model.kill_when(|f, rel| rel == "j/journal.acc" && matches!(f, Flush::File { .. }));
        journal.set([2; 4]).expect("set");
        assert!(journal.sync().is_err(), "the kill fails the sync");
    }
    model.revive();
    if !flush_at_open {
        model.ignore_file_system_syncs();
    }
    {
        let dir = Dir::open(root).expect("reopen");
        let journal = Journal::<[u64; 4]>::open(&dir, "j").expect("journal");
        assert_eq!(journal.get(), [2; 4], "the page cache holds the new value");
        journal.sync().expect("sync");
    }
    let mut result = Ok(());
    check_power_loss(replay, &model, |path| {
        let dir = Dir::open(path).map_err(|e| format!("Dir::open: {e}"))?;
        let journal = Journal::<[u64; 4]>::open(&dir, "j").map_err(|e| format!("open: {e}"))?;
        if journal.get() != [2; 4] {
            result = Err(format!(
                "the second process read [2; 4] and synced, but the disk holds {:?}",
                journal.get()
            ));
        }
        Ok(())
    });
    result
}

#[test]
fn journal_value_read_after_a_kill_is_durable_after_the_next_sync() {
    let mut replay = Replay::new("journal_value_read_after_a_kill_is_durable_after_the_next_sync");
    journal_second_process(&mut replay, true).unwrap();
}

/// The model with the open's syncfs not recorded builds the disk an open that flushes
/// nothing would leave: the check must fail on it.
#[test]
fn the_checks_catch_an_open_that_flushes_nothing() {
    let mut replay = Replay::new("the_checks_catch_an_open_that_flushes_nothing");
    assert!(journal_second_process(&mut replay, false).is_err());
    assert!(random_access_second_process(&mut replay, false).is_err());
}

// ---------------------------------------------------------------------------------------
// RandomAccess

/// The first process overwrites elements in two lanes and is killed before its sync; the
/// second reads them, writes one element in a third lane and syncs: every element must
/// read after power loss as the second process saw it.
fn random_access_second_process(replay: &mut Replay, flush_at_open: bool) -> Result<(), String> {
    let work = workdir();
    let root = work.path();
    let model = DiskModel::start(root);
    const LEN: u64 = 6000; // lanes 0 (4096 elements) and 1
    {
        let dir = Dir::open(root).expect("open");
        let arr = RandomAccess::<u64>::open(&dir, "arr").expect("open");
        for i in 0..LEN {
            arr.set(i, i + 1).expect("set");
        }
        arr.sync().expect("sync");
        for _ in 0..50 {
            let i = replay.rng.random_range(0..LEN);
            arr.set(i, replay.rng.random_range(1..u64::MAX))
                .expect("set");
        }
        model.kill();
        assert!(arr.sync().is_err(), "a dead process flushes nothing");
    }
    model.revive();
    if !flush_at_open {
        model.ignore_file_system_syncs();
    }
    let seen: Vec<u64> = {
        let dir = Dir::open(root).expect("reopen");
        let arr = RandomAccess::<u64>::open(&dir, "arr").expect("open");
        let seen = (0..LEN).map(|i| arr.read(i).expect("read")).collect();
        arr.set(20_000, 7).expect("set in lane 2");
        arr.sync().expect("sync");
        seen
    };
    let mut result = Ok(());
    check_power_loss(replay, &model, |path| {
        let dir = Dir::open(path).map_err(|e| format!("Dir::open: {e}"))?;
        let arr = RandomAccess::<u64>::open(&dir, "arr").map_err(|e| format!("open: {e}"))?;
        if arr.read(20_000).map_err(|e| e.to_string())? != 7 {
            return Err("the second process's synced write is lost".into());
        }
        for (i, want) in seen.iter().enumerate() {
            let got = arr.read(i as u64).map_err(|e| e.to_string())?;
            if got != *want && result.is_ok() {
                result = Err(format!(
                    "element {i}: the second process read {want} and synced, the disk holds {got}"
                ));
            }
        }
        Ok(())
    });
    result
}

#[test]
fn random_access_elements_read_after_a_kill_are_durable_after_the_next_sync() {
    let mut replay =
        Replay::new("random_access_elements_read_after_a_kill_are_durable_after_the_next_sync");
    random_access_second_process(&mut replay, true).unwrap();
}

// ---------------------------------------------------------------------------------------
// LogStore

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 16 << 10,
        sync_each_write: false,
        compact_dead_ratio: None,
        merge_operator: None,
    }
}

fn contents(store: &LogStore) -> Result<Model, String> {
    let mut out = Model::new();
    for item in store.iter() {
        let (k, v) = item.map_err(|e| format!("iter: {e}"))?;
        out.insert(k.to_vec(), v.to_vec());
    }
    Ok(out)
}

/// Random puts (enough to roll segments), deletes, syncs and compactions until `steps`
/// are done or a write fails (the process was killed).
fn log_work(store: &LogStore, rng: &mut impl Rng, steps: usize) {
    for _ in 0..steps {
        let key = format!("key-{:03}", rng.random_range(0..300u32)).into_bytes();
        let done = match rng.random_range(0..100) {
            0..70 => {
                let value = vec![rng.random::<u8>(); rng.random_range(1..400)];
                store.put(&key, &value)
            }
            70..85 => store.delete(&key),
            85..95 => store.sync(),
            _ => store.compact(),
        };
        if done.is_err() {
            return;
        }
    }
}

/// First process: `first` (which arms the kill and works); second process: opens, reads
/// everything, works, syncs. Every power-loss image must open to exactly what the second
/// process saw and wrote.
fn log_second_process(replay: &mut Replay, first: impl FnOnce(&LogStore, &DiskModel, &mut Replay)) {
    let work = workdir();
    let root = work.path();
    let model = DiskModel::start(root);
    {
        let dir = Dir::open(root).expect("open");
        let store = LogStore::open(&dir, "kv", options()).expect("open");
        first(&store, &model, replay);
        if !model.killed() {
            model.kill();
        }
    }
    model.revive();
    let want = {
        let dir = Dir::open(root).expect("reopen");
        let store = LogStore::open(&dir, "kv", options())
            .unwrap_or_else(|e| panic!("the second process cannot open: {e}"));
        contents(&store).unwrap_or_else(|e| panic!("the second process reads: {e}"));
        // A few writes, seldom enough to roll a segment (a roll would sync the state
        // journal whole, covering for an open that flushed nothing).
        for _ in 0..6 {
            let key = format!("key-{:03}", replay.rng.random_range(0..300u32)).into_bytes();
            if replay.rng.random_bool(0.7) {
                store.put(&key, b"second").expect("put");
            } else {
                store.delete(&key).expect("delete");
            }
        }
        store.sync().expect("the second process's sync");
        contents(&store).expect("read back")
    };
    check_power_loss(replay, &model, |path| {
        let dir = Dir::open(path).map_err(|e| format!("Dir::open: {e}"))?;
        let store =
            LogStore::open(&dir, "kv", options()).map_err(|e| format!("LogStore::open: {e}"))?;
        let got = contents(&store)?;
        if got != want {
            let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
            let differ = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .count();
            return Err(format!(
                "{} keys, expected {}: {missing} missing, {differ} with another value",
                got.len(),
                want.len()
            ));
        }
        store
            .put(b"after", b"recovery")
            .map_err(|e| e.to_string())?;
        store.sync().map_err(|e| e.to_string())
    });
}

/// The kill comes inside the fdatasync of the state journal that commits a segment roll.
#[test]
fn log_store_roll_killed_in_its_state_sync() {
    let mut replay = Replay::new("log_store_roll_killed_in_its_state_sync");
    for round in 0..4 {
        log_second_process(&mut replay, |store, model, replay| {
            let mut left = round + 1;
            model.kill_when(move |f, rel| {
                if rel == "kv/state/journal.acc" && matches!(f, Flush::File { .. }) {
                    left -= 1;
                }
                left == 0
            });
            log_work(store, &mut replay.rng, 2000);
            assert!(model.killed(), "round {round}: no roll reached");
        });
    }
}

/// The kill comes inside the fdatasync of the state journal that commits a compaction.
#[test]
fn log_store_compaction_killed_in_its_commit() {
    let mut replay = Replay::new("log_store_compaction_killed_in_its_commit");
    for _ in 0..3 {
        log_second_process(&mut replay, |store, model, replay| {
            for i in 0..400u32 {
                let value = vec![replay.rng.random::<u8>(); 100];
                store
                    .put(format!("key-{:03}", i % 150).as_bytes(), &value)
                    .unwrap();
            }
            store.sync().unwrap();
            // The commit is the first state sync after the new generation's files.
            let mut copied = false;
            model.kill_when(move |f, rel| {
                copied |= rel.starts_with("kv/g1/");
                copied && rel == "kv/state/journal.acc" && matches!(f, Flush::File { .. })
            });
            assert!(store.compact().is_err(), "the kill fails the compaction");
            assert!(model.killed());
        });
    }
}

/// The kill comes at a random flush of a random workload.
#[test]
fn log_store_killed_at_any_flush() {
    let mut replay = Replay::new("log_store_killed_at_any_flush");
    for _ in 0..RANDOM_KILLS {
        let at = replay.rng.random_range(1..400usize);
        log_second_process(&mut replay, |store, model, replay| {
            let mut n = 0;
            model.kill_when(move |_, _| {
                n += 1;
                n == at
            });
            log_work(store, &mut replay.rng, 600);
        });
    }
}
