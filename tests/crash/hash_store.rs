//! Crash images of a HashStore: sets, deletes, updates and clears over thousands of keys
//! (index resizes up and down), syncs (some of which record the data log's length),
//! optimisations (explicit, and automatic inside a write), clean shutdowns and reopens,
//! a second crash after recovering from a first, and a process killed at a flush whose
//! successor works and then loses power.
//!
//! A HashStore is a state Journal (`hs/state/journal.acc`), an entropy file written at
//! creation, one format-2 AppendOnly data log per data generation (`hs/dN`), and one
//! index per index generation (`hs/iN/...`: RandomAccess arrays changed in place, flushed
//! only by a clean shutdown). Flushes come from many actions, not only `sync()`: the
//! first write after a clean state syncs the journal (no longer clean), the first append
//! after an open takes an epoch (the data log's length register), a resize or a clear
//! syncs the journal naming the new index, an optimisation syncs the new log's length
//! register at its creation and the journal at its start and at its end (after the new
//! log's msync). So the workload watches every flush under the store directory (the
//! crate's fault-injection hooks) rather than declaring an order:
//! - at every fdatasync of the journal or of a data log's length register made inside an
//!   action other than `sync` or `close`, the hook snapshots the directory (the register's
//!   new bytes are written by then) and the workload records that snapshot as a point
//!   right after a sync (`History::synced_with`), whose flush order is the flushes seen
//!   since the point before, in order (a structure's lanes as one `Mapped` group, each
//!   register as an `AtFlush` one);
//! - after every action that flushed something more, and after every `sync` and `close`,
//!   it records a point the same way, from a snapshot taken when the action returned.
//!
//! Recording a point as "right after a sync" takes everything its snapshot shows as on
//! disk. That is exact for `sync`, `close`, and the first write after a clean state (all
//! else was durable already); for a point taken inside a resize or an optimisation with
//! unsynced writes before it, it is on the safe side (the images keep those writes,
//! which could have reached the disk), and the power-loss images of the device cover the
//! disks that lost them.
//!
//! What an image may hold: the writes are applied in order, and every write's record is
//! in the data log before its index change, so the store recovers the model state after
//! some prefix of the operations, from every one a `sync` or `close` that returned made
//! durable up to every one done by the crash. Exactly the state of the durable point's
//! snapshot when nothing after it reached the disk (pure S0), exactly the state at the
//! crash when everything did (pure S1), for points whose snapshot was taken between
//! actions. When no prefix matches, the message says whether the contract in its own
//! words ("every key holds its last synced value or a later written one") holds anyway.
//! Each image is checked: the store opens, `verify()` passes, `len`, `iter` and `get`
//! agree with the model state, keys never written are absent, the disk a clean shutdown
//! left is trusted without a rebuild, and (one image in two) the store works afterwards:
//! a set, a delete, an update and a sync, then a clean shutdown whose reopen trusts the
//! index and finds the same contents. One image in three also holds debris of file
//! creations a crash cut short. Every cut of every clean shutdown, of the write after
//! it, and of every sync that recorded the data log's length is checked with nothing,
//! everything and half of the unsynced units on disk; the other crashes are random
//! (points, cuts, pages or 512-byte sectors, mixes), so the index files are torn at
//! sector granularity while the state is not clean.
//!
//! Besides the snapshot images, the device as the observed flushes left it (`disk.rs`)
//! gives power-loss images: at random flushes, from inside the hook (so inside an
//! optimisation, a resize or a sync: a crash right after that flush), and at random
//! points. Those hold the store to what it flushed, not to what a point's snapshot shows,
//! so that a sync that flushed too little fails them.
//!
//! `checks_catch_lost_and_extra_writes` shows that the checks fail on the disk of one
//! sync taken for another's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use accretion::faults::{self, Flush, HookGuard};
use accretion::{Dir, HashOptions, HashStore, HashValue, OptimizeMode};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::DiskModel;
use crate::harness::{
    Crash, FlushOrder, Granularity, Group, History, Image, Mix, Replay, Snapshot, Written,
    scratch_root, serial, show,
};
use crate::{open_dir, random_bytes};

// Crash images checked per scenario.
const CRASH_IMAGES: usize = 300;
const OPTIMIZE_IMAGES: usize = 300;
const LAZY_LENGTH_IMAGES: usize = 90;
/// Crash-recover-crash: recovered first crashes, and images of each second life.
const SECOND_LIVES: usize = 3;
const SECOND_LIFE_IMAGES: usize = 50;
/// Kill-then-power-loss runs, and power-loss images checked per run.
const KILLS: usize = 10;
const KILL_IMAGES: usize = 12;
/// The chance that a flush seen by the hook also gives a power-loss image of the device
/// right after it; the share for the data log's msync inside an optimisation (the disk
/// in which the copies are durable, the old log's tail perhaps not).
const DEVICE_AT_FLUSH: f64 = 0.04;
const DEVICE_AT_OPTIMIZE_FLUSH: f64 = 0.5;
/// The chance of a power-loss image of the device at a point recorded between actions.
const DEVICE_AT_POINT: f64 = 0.1;

/// The store's name in its directory.
const NAME: &str = "hs";
const JOURNAL: &str = "hs/state/journal.acc";

type Bytes = Arc<[u8]>;
type Model = HashMap<Bytes, Bytes>;

/// One write of the workload.
#[derive(Clone, Debug)]
enum Op {
    Set(Bytes, Bytes),
    Delete(Bytes),
    Clear,
}

fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Set(k, v) => {
            model.insert(Arc::clone(k), Arc::clone(v));
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Clear => model.clear(),
    }
}

/// Keys of `a` and `b` whose values differ (a key missing from one counts).
fn count_diff(a: &Model, b: &Model) -> usize {
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
        + b.keys().filter(|k| !a.contains_key(*k)).count()
}

/// A value in a message: its serial number (`#n`), else its first bytes.
fn label(value: &[u8]) -> String {
    match serial(value) {
        s if s.is_empty() => format!("{:?}", show(value)),
        s => s,
    }
}

/// The first few keys where `got` differs from `want`.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = String::new();
    let keys: HashSet<&Bytes> = got.keys().chain(want.keys()).collect();
    let mut differ: Vec<&Bytes> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    differ.sort();
    for (i, k) in differ.iter().enumerate() {
        if i == 4 {
            let _ = write!(out, ", ... ({} keys in all)", differ.len());
            break;
        }
        let _ = write!(
            out,
            "{}{:?}: {} instead of {}",
            if i > 0 { ", " } else { "" },
            show(k),
            got.get(*k).map_or("absent".into(), |v| label(v)),
            want.get(*k).map_or("absent".into(), |v| label(v)),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// What the workload wrote, and what an image may hold

/// Every operation, the model at every count of them a sync made durable, and the keys
/// the checks look up.
struct Truth {
    ops: Vec<Op>,
    /// The model after that many operations, at every count a point may need as the
    /// durable one (the start of a history, every sync and close).
    bases: BTreeMap<usize, Model>,
    /// Every key ever written, and keys never written.
    keys: Vec<Bytes>,
    never: Vec<Bytes>,
    options: HashOptions,
}

/// What an image may hold: the state after `lo..=hi` operations; exactly after `exact` if
/// given; and whether a rebuild is ruled out (a disk a clean shutdown left as it was).
#[derive(Clone, Copy, Debug)]
struct Allowed {
    lo: usize,
    hi: usize,
    exact: Option<usize>,
    trusted: bool,
}

/// What an image was found to hold: the state after `k` operations, rebuilt or not.
struct Found {
    k: usize,
    rebuilt: bool,
}

impl Truth {
    /// The counts in `lo..=hi` after which the model equals `got`; else the closest one
    /// and how it differs.
    fn matching(&self, lo: usize, hi: usize, got: &Model) -> Result<Vec<usize>, String> {
        let base = self
            .bases
            .get(&lo)
            .unwrap_or_else(|| panic!("no model kept after {lo} operations"));
        let mut state = base.clone();
        let mut d = count_diff(&state, got);
        let mut matches = Vec::new();
        let mut closest = (d, lo);
        for k in lo..=hi {
            if k > lo {
                match &self.ops[k - 1] {
                    Op::Clear => {
                        state.clear();
                        d = got.len();
                    }
                    op @ (Op::Set(key, _) | Op::Delete(key)) => {
                        let before = state.get(key) != got.get(key);
                        apply(&mut state, op);
                        let after = state.get(key) != got.get(key);
                        d = d + usize::from(after) - usize::from(before);
                    }
                }
            }
            if d == 0 {
                matches.push(k);
            }
            if d < closest.0 {
                closest = (d, k);
            }
        }
        if !matches.is_empty() {
            return Ok(matches);
        }
        let mut state = base.clone();
        for op in &self.ops[lo..closest.1] {
            apply(&mut state, op);
        }
        let per_key = match self.per_key(lo, hi, got) {
            Ok(()) => "each key holds its value after the durable operations or one \
                       written to it later (the contract per key holds), but no prefix \
                       of the operations left this state"
                .to_string(),
            Err(e) => format!("the contract per key is broken too: {e}"),
        };
        Err(format!(
            "recovered {} keys, not the state after any of {lo}..={hi} operations; the \
             closest is after {} ({} keys, {} differ): {}; {per_key}; {}",
            got.len(),
            closest.1,
            state.len(),
            closest.0,
            diff(got, &state),
            self.writes_to(got, &state)
        ))
    }

    /// The contract in its own words, weaker than a prefix: every key holds its value
    /// after `lo` operations or one written to it by operations `lo..hi`, and nothing
    /// else (absent only if absent then, or deleted or cleared since).
    fn per_key(&self, lo: usize, hi: usize, got: &Model) -> Result<(), String> {
        let base = &self.bases[&lo];
        let later = &self.ops[lo..hi];
        let cleared = later.iter().any(|op| matches!(op, Op::Clear));
        let mut keys: HashSet<&Bytes> = got.keys().chain(base.keys()).collect();
        for op in later {
            if let Op::Set(k, _) | Op::Delete(k) = op {
                keys.insert(k);
            }
        }
        for k in keys {
            let ok = match got.get(k) {
                v if v == base.get(k) => true,
                Some(v) => later
                    .iter()
                    .any(|op| matches!(op, Op::Set(key, w) if key == k && w == v)),
                None => {
                    cleared
                        || later
                            .iter()
                            .any(|op| matches!(op, Op::Delete(key) if key == k))
                }
            };
            if !ok {
                return Err(format!(
                    "{:?} holds {}, after {lo} operations {}",
                    show(k),
                    got.get(k).map_or("nothing".into(), |v| label(v)),
                    base.get(k).map_or("nothing".into(), |v| label(v))
                ));
            }
        }
        Ok(())
    }

    /// The last writes to the first keys where `got` and `want` differ, for a message.
    fn writes_to(&self, got: &Model, want: &Model) -> String {
        let mut keys: Vec<&Bytes> = got
            .keys()
            .chain(want.keys())
            .filter(|k| got.get(*k) != want.get(*k))
            .collect();
        keys.sort();
        keys.dedup();
        let mut out = String::from("their last writes (operation: value)");
        for k in keys.into_iter().take(4) {
            let writes: Vec<String> = self
                .ops
                .iter()
                .enumerate()
                .filter_map(|(i, op)| match op {
                    Op::Set(key, v) if key == k => Some(format!("{i}: {}", label(v))),
                    Op::Delete(key) if key == k => Some(format!("{i}: delete")),
                    Op::Clear => Some(format!("{i}: clear")),
                    _ => None,
                })
                .collect();
            let from = writes.len().saturating_sub(5);
            let _ = write!(out, "; {:?}: {}", show(k), writes[from..].join(", "));
        }
        out
    }

    /// Opens the image at `path` and checks it against `allowed`; with `exercise`, then
    /// writes, syncs, shuts down cleanly and reopens.
    fn check(&self, path: &Path, allowed: Allowed, exercise: bool) -> Result<Found, String> {
        let dir = open_dir(path)?;
        let store = HashStore::open(&dir, NAME, self.options.clone())
            .map_err(|e| format!("HashStore::open failed: {e}"))?;
        let rebuilt = store.rebuilt_at_open();
        let got = read_all(&store)?;
        let matches = self.matching(allowed.lo, allowed.hi, &got)?;
        if let Some(e) = allowed.exact
            && !matches.contains(&e)
        {
            return Err(format!(
                "expected exactly the state after {e} operations, found the one after \
                 {matches:?}"
            ));
        }
        if allowed.trusted && rebuilt {
            return Err("the disk a clean shutdown left was not trusted: rebuilt".into());
        }
        // Lookups agree with the iteration: a sample of the keys ever written, and keys
        // never written.
        let step = (self.keys.len() / 150).max(1);
        for k in self.keys.iter().step_by(step).chain(&self.never) {
            let v = store
                .get(k)
                .map_err(|e| format!("get({:?}): {e}", show(k)))?;
            if v.as_deref() != got.get(k).map(|v| &v[..]) {
                return Err(format!("get({:?}) disagrees with iter", show(k)));
            }
        }
        let found = Found {
            k: matches[0],
            rebuilt,
        };
        if exercise {
            exercise_store(&dir, store, got, &self.options)?;
        }
        Ok(found)
    }
}

/// Every entry of `store`, checked by `verify` and against `len`.
fn read_all(store: &HashStore) -> Result<Model, String> {
    let report = store.verify().map_err(|e| format!("verify failed: {e}"))?;
    let mut got = Model::new();
    for item in store.iter().map_err(|e| format!("iter: {e}"))? {
        let (k, v) = item.map_err(|e| format!("iter entry: {e}"))?;
        if got.insert(Arc::from(&*k), Arc::from(&*v)).is_some() {
            return Err(format!("iter yields {:?} twice", show(&k)));
        }
    }
    if got.len() as u64 != store.len() || report.entries != store.len() {
        return Err(format!(
            "len {}, iter yields {}, verify counts {}",
            store.len(),
            got.len(),
            report.entries
        ));
    }
    Ok(got)
}

/// A recovered store still works: a new key, a delete, an update, a sync; a clean
/// shutdown, after which the reopen trusts the index and holds the same.
fn exercise_store(
    dir: &Dir,
    store: HashStore,
    mut want: Model,
    options: &HashOptions,
) -> Result<(), String> {
    let fresh: Bytes = Arc::from(&b"after-crash"[..]);
    let value: Bytes = Arc::from(&b"recovered"[..]);
    store
        .set(&fresh, &value)
        .map_err(|e| format!("set after recovery: {e}"))?;
    want.insert(Arc::clone(&fresh), value);
    if let Some(k) = want.keys().find(|k| **k != fresh).cloned() {
        let old = store
            .delete(&k)
            .map_err(|e| format!("delete after recovery: {e}"))?;
        if old.as_deref() != want.get(&k).map(|v| &v[..]) {
            return Err("delete after recovery returned another value".into());
        }
        want.remove(&k);
    }
    let counter: Bytes = Arc::from(&b"after-crash-count"[..]);
    store
        .update(&counter, |old| Some(vec![old.map_or(0, |o| o[0]) + 1]))
        .map_err(|e| format!("update after recovery: {e}"))?;
    want.insert(counter, Arc::from(&[1u8][..]));
    store
        .sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    store
        .close()
        .map_err(|e| format!("close after recovery: {e}"))?;
    let store = HashStore::open(dir, NAME, options.clone())
        .map_err(|e| format!("reopen after recovery: {e}"))?;
    if store.rebuilt_at_open() {
        return Err("reopened after a clean shutdown, the index was rebuilt".into());
    }
    let again = read_all(&store).map_err(|e| format!("after recovery and a reopen: {e}"))?;
    if again != want {
        return Err(format!(
            "after recovery, writes and a reopen: {}",
            diff(&again, &want)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Watching the flushes

/// The group a flushed file belongs to: a structure's lanes together.
fn group_of(rel: &str) -> (String, Written) {
    let (parent, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    for prefix in ["data-", "cells-"] {
        if file.starts_with(prefix) && file.ends_with(".acc") {
            return (format!("{parent}/{prefix}*.acc"), Written::Mapped);
        }
    }
    (rel.to_string(), Written::AtFlush)
}

/// The flush order of a step that flushed `flushed` (relative paths, in order): a group
/// per structure's lanes or per register, ordered by each group's last flush.
fn order_of(flushed: &[String]) -> FlushOrder {
    let mut last: Vec<(String, Written, usize)> = Vec::new();
    for (i, rel) in flushed.iter().enumerate() {
        let (pattern, written) = group_of(rel);
        match last.iter_mut().find(|g| g.0 == pattern) {
            Some(g) => g.2 = i,
            None => last.push((pattern, written, i)),
        }
    }
    last.sort_by_key(|g| g.2);
    FlushOrder {
        groups: last
            .into_iter()
            .map(|(pattern, written, _)| Group {
                patterns: vec![pattern],
                written,
            })
            .collect(),
        commit: 0,
    }
}

/// A register the hook takes a point at: the state journal, a data log's length.
fn is_register(rel: &str) -> bool {
    rel == JOURNAL
        || rel
            .strip_prefix("hs/d")
            .and_then(|r| r.strip_suffix("/length.acc"))
            .is_some_and(|n| n.parse::<u64>().is_ok())
}

/// A point the hook took at a register's flush: the snapshot, and the flushes since the
/// point before (that one included).
type Captured = (Snapshot, Vec<String>);

/// What the hook shares with the workload.
struct WatchState {
    /// File and range flushes (relative paths, not of `.tmp` files) since the last
    /// point.
    flushed: Vec<String>,
    /// Points the hook took at register flushes.
    captured: Vec<Captured>,
    /// Take points at register flushes (off inside a sync or a close: one step each).
    capture: bool,
    /// The last point's snapshot, which new ones share unchanged files with.
    base: Option<Snapshot>,
    /// Power-loss images of the device made at flushes, and where.
    pending: Vec<(Image, String)>,
    rng: StdRng,
}

struct Watch {
    state: Arc<Mutex<WatchState>>,
    _hook: HookGuard,
}

impl Watch {
    /// Watches the flushes under `root`; `device` (held weakly: a hook is dropped under
    /// the hooks' lock, which the device model's own hook guard takes too) makes the
    /// power-loss images.
    fn install(root: &Path, device: &Arc<DiskModel>, seed: u64) -> Watch {
        let state = Arc::new(Mutex::new(WatchState {
            flushed: Vec::new(),
            captured: Vec::new(),
            capture: true,
            base: None,
            pending: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }));
        let hook = {
            let (root, state) = (root.to_path_buf(), Arc::clone(&state));
            let device = Arc::downgrade(device);
            faults::install(move |flush| {
                let (path, range) = match flush {
                    Flush::File { path } => (*path, false),
                    Flush::Range { path, .. } => (*path, true),
                    _ => return None,
                };
                let rel = path.strip_prefix(&root).ok()?.to_str()?.to_string();
                if rel.ends_with(".tmp") {
                    return None;
                }
                let mut st = state.lock();
                let st = &mut *st;
                st.flushed.push(rel.clone());
                if st.capture && !range && is_register(&rel) {
                    let snapshot = Snapshot::take_sharing(&root, st.base.as_ref());
                    st.base = Some(snapshot.clone());
                    let flushed = std::mem::take(&mut st.flushed);
                    st.captured.push((snapshot, flushed));
                }
                // The device model's hook came first: this flush is on its device.
                let share = if st.capture && range {
                    DEVICE_AT_OPTIMIZE_FLUSH
                } else {
                    DEVICE_AT_FLUSH
                };
                if st.rng.random_bool(share)
                    && let Some(device) = device.upgrade()
                {
                    let (granularity, mix) = device_mix(&mut st.rng);
                    let image = device.power_loss(&mut st.rng, granularity, mix);
                    let what =
                        format!("right after the flush of {rel} ({granularity:?}, mix {mix:.2})");
                    st.pending.push((image, what));
                }
                None
            })
        };
        Watch { state, _hook: hook }
    }

    /// Takes the points captured, the flushes since the last one, and the device images.
    fn take(&self) -> (Vec<Captured>, Vec<String>, Vec<(Image, String)>) {
        let mut st = self.state.lock();
        (
            std::mem::take(&mut st.captured),
            std::mem::take(&mut st.flushed),
            std::mem::take(&mut st.pending),
        )
    }

    fn set_capture(&self, on: bool) {
        self.state.lock().capture = on;
    }

    fn set_base(&self, snapshot: &Snapshot) {
        self.state.lock().base = Some(snapshot.clone());
    }
}

/// A granularity and a share of the unflushed units on disk for a device image: none,
/// all, or a random share.
fn device_mix(rng: &mut impl Rng) -> (Granularity, f64) {
    let granularity = if rng.random_bool(0.5) {
        Granularity::Page
    } else {
        Granularity::Sector
    };
    let mix = match rng.random_range(0..6) {
        0 => 0.0,
        1 => 1.0,
        _ => rng.random_range(0.05..0.95),
    };
    (granularity, mix)
}

// ---------------------------------------------------------------------------------------
// The workload side

/// What a recorded point follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The start of the history (a clean state).
    Open,
    /// Mid-work: no flush since the point before.
    Mid,
    /// `sync()` returned.
    Sync,
    /// `close()` returned: a clean shutdown.
    Close,
    /// A register flush inside another action, snapshotted by the hook.
    Register,
    /// An action returned that flushed more after its last register flush.
    Action,
}

struct PointInfo {
    kind: Kind,
    order: FlushOrder,
    /// Operations done at the point.
    ops: usize,
    /// The snapshot holds exactly the state after `ops` operations (it was taken
    /// between actions).
    exact: bool,
}

/// A HashStore at work, with the history of its directory and the model of every state.
struct Workload {
    root: PathBuf,
    dir: Dir,
    store: Option<HashStore>,
    device: Arc<DiskModel>,
    watch: Watch,
    history: History,
    points: Vec<PointInfo>,
    /// Per sync (index = sync number): the operations it made durable.
    synced: Vec<usize>,
    truth: Truth,
    model: Model,
    key_set: HashSet<Bytes>,
    next_key: usize,
    serial: u64,
    rng: StdRng,
    /// Value handles held across optimisations (they keep the old data log).
    held: Vec<HashValue>,
    /// The newest data and index generations in the directory.
    gens: (u64, u64),
    counts: Counts,
}

/// What a workload did, for its summary and the scenarios' own checks.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// New index generations (resizes and clears).
    indexes: usize,
    optimizations: usize,
    /// Syncs that recorded the data log's length.
    length_records: usize,
    /// Power-loss images of the device checked, and those made inside an action.
    device_images: usize,
    device_images_inside: usize,
}

/// The newest data and index generations (`dN`, `iN`) under the store.
fn generations(root: &Path) -> (u64, u64) {
    let mut gens = (0, 0);
    for entry in std::fs::read_dir(root.join(NAME)).expect("list the store") {
        let name = entry.expect("list the store").file_name();
        let name = name.to_str().unwrap_or("");
        if let Some(n) = name.strip_prefix('d').and_then(|n| n.parse().ok()) {
            gens.0 = gens.0.max(n);
        } else if let Some(n) = name.strip_prefix('i').and_then(|n| n.parse().ok()) {
            gens.1 = gens.1.max(n);
        }
    }
    gens
}

/// Leaves in `image` what crashes while creating files leave: the `.tmp` file of the
/// newest data log's next lane, and the first files of a data generation and an index
/// generation that an optimisation and a resize had only begun to create.
fn debris(image: &Image, rng: &mut impl Rng) {
    let (data, index) = generations(image.path());
    crate::leftover_lane_tmp(image, &format!("{NAME}/d{data}"), "data", rng);
    for rel in [
        format!("{NAME}/d{}/length.acc.tmp", data + 1),
        format!("{NAME}/i{}/slots/cells-00.acc.tmp", index + 1),
    ] {
        let path = image.path().join(&rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("debris directory");
        image.write(&rel, &random_bytes(rng.random_range(0..3_000), rng));
    }
}

impl Workload {
    /// Opens the store at `root` (a store directory), whose content is `model`.
    fn open(root: &Path, options: HashOptions, model: Model, rng: &mut impl Rng) -> Workload {
        let dir = Dir::open(root).expect("open the directory");
        let store = HashStore::open(&dir, NAME, options.clone()).expect("open the store");
        assert!(
            read_all(&store).expect("read the store") == model,
            "the store opened to another state"
        );
        // Everything on the device now is durable: a new store was created durably, a
        // recovered one made durable by its open (syncfs, then a clean shutdown).
        let device = Arc::new(DiskModel::start(root));
        let watch = Watch::install(root, &device, rng.random());
        let history = History::new(root);
        watch.set_base(&history.point(0).snapshot);
        let mut bases = BTreeMap::new();
        bases.insert(0, model.clone());
        let keys: Vec<Bytes> = model.keys().cloned().collect();
        Workload {
            root: root.to_path_buf(),
            dir,
            store: Some(store),
            device,
            watch,
            history,
            points: vec![PointInfo {
                kind: Kind::Open,
                order: order_of(&[]),
                ops: 0,
                exact: true,
            }],
            synced: vec![0],
            key_set: keys.iter().cloned().collect(),
            truth: Truth {
                ops: Vec::new(),
                bases,
                keys,
                never: (0..20)
                    .map(|i| Arc::from(format!("never-{i}").into_bytes()))
                    .collect(),
                options,
            },
            model,
            next_key: 0,
            serial: 0,
            rng: StdRng::seed_from_u64(rng.random()),
            held: Vec::new(),
            gens: generations(root),
            counts: Counts::default(),
        }
    }

    fn store(&self) -> &HashStore {
        self.store.as_ref().expect("the store is open")
    }

    /// A value unique to this write: its serial number, then `len` random bytes.
    fn value(&mut self, len: usize) -> Bytes {
        self.serial += 1;
        let mut v = format!("#{}:", self.serial).into_bytes();
        v.extend(random_bytes(len, &mut self.rng));
        Arc::from(v)
    }

    /// A key never written before: a number, for some with a random tail.
    fn fresh_key(&mut self) -> Bytes {
        self.next_key += 1;
        let mut key = format!("key-{:06}", self.next_key).into_bytes();
        if self.rng.random_bool(0.3) {
            key.extend(random_bytes(self.rng.random_range(1..40), &mut self.rng));
        }
        let key: Bytes = Arc::from(key);
        if self.key_set.insert(Arc::clone(&key)) {
            self.truth.keys.push(Arc::clone(&key));
        }
        key
    }

    /// A key present in the store, if any.
    fn present_key(&mut self) -> Option<Bytes> {
        if self.model.is_empty() {
            return None;
        }
        // Keys ever written, until one is present (most are, in these workloads).
        for _ in 0..64 {
            let k = &self.truth.keys[self.rng.random_range(0..self.truth.keys.len())];
            if self.model.contains_key(k) {
                return Some(Arc::clone(k));
            }
        }
        self.model.keys().next().cloned()
    }

    /// Writes `op` (through `update` if asked), then records what it flushed.
    fn write(&mut self, op: Op, through_update: bool) {
        let store = self.store.as_ref().expect("the store is open");
        match &op {
            Op::Set(k, v) if through_update => {
                let want = self.model.get(k).cloned();
                let mut saw = None;
                store
                    .update(k, |old| {
                        saw = Some(old == want.as_deref());
                        Some(&v[..])
                    })
                    .expect("update");
                assert_eq!(saw, Some(true), "update saw another old value");
            }
            Op::Set(k, v) => {
                let old = store.set(k, v).expect("set");
                assert!(old.as_deref() == self.model.get(k).map(|v| &v[..]));
            }
            Op::Delete(k) if through_update => {
                store.update(k, |_| None::<&[u8]>).expect("update");
            }
            Op::Delete(k) => {
                let old = store.delete(k).expect("delete");
                assert!(old.as_deref() == self.model.get(k).map(|v| &v[..]));
            }
            Op::Clear => store.clear().expect("clear"),
        }
        apply(&mut self.model, &op);
        self.truth.ops.push(op);
        self.settle(Kind::Action);
    }

    fn sync(&mut self) {
        self.watch.set_capture(false);
        self.store().sync().expect("sync");
        self.watch.set_capture(true);
        self.settle(Kind::Sync);
    }

    /// A clean shutdown, then a reopen (which trusts the index).
    fn close_and_reopen(&mut self) {
        self.watch.set_capture(false);
        self.held.clear();
        self.store.take().expect("open").close().expect("close");
        self.watch.set_capture(true);
        self.settle(Kind::Close);
        let store = HashStore::open(&self.dir, NAME, self.truth.options.clone()).expect("reopen");
        assert!(!store.rebuilt_at_open(), "a clean reopen rebuilt the index");
        self.store = Some(store);
        self.settle(Kind::Action);
    }

    /// An explicit optimisation, with value handles into the old log held across it at
    /// times (its files then stay until they are dropped, at the next point).
    fn optimize(&mut self) {
        if self.rng.random_bool(0.5)
            && let Some(k) = self.present_key()
        {
            let v = self.store().get(&k).expect("get").expect("present");
            self.held.push(v);
        }
        assert!(
            self.store()
                .optimize(OptimizeMode::Aggressive)
                .expect("optimize")
        );
        self.settle(Kind::Action);
        self.held.clear();
    }

    fn mid(&mut self) {
        self.history.mid();
        self.push_point(Kind::Mid, order_of(&[]), true);
        self.device_image_now();
    }

    fn push_point(&mut self, kind: Kind, order: FlushOrder, exact: bool) {
        self.points.push(PointInfo {
            kind,
            order,
            ops: self.truth.ops.len(),
            exact,
        });
        let at = self.points.len() - 1;
        self.watch.set_base(&self.history.point(at).snapshot);
    }

    /// Records the points the last action made (see the module docs), and checks the
    /// device images made during it.
    fn settle(&mut self, kind: Kind) {
        let ops = self.truth.ops.len();
        let durable = *self.synced.last().expect("a sync");
        let (captured, rest, pending) = self.watch.take();
        let synced = matches!(kind, Kind::Sync | Kind::Close);
        let recorded = synced || !captured.is_empty() || !rest.is_empty();
        for (snapshot, flushed) in captured {
            self.history.synced_with(snapshot);
            self.push_point(Kind::Register, order_of(&flushed), false);
            self.synced.push(durable);
        }
        if synced || !rest.is_empty() {
            if kind == Kind::Sync && rest.iter().any(|r| is_register(r) && r != JOURNAL) {
                self.counts.length_records += 1;
            }
            self.history.synced();
            self.push_point(kind, order_of(&rest), true);
            self.synced.push(if synced { ops } else { durable });
            if synced {
                self.truth
                    .bases
                    .entry(ops)
                    .or_insert_with(|| self.model.clone());
            }
        }
        if recorded && self.store.is_some() {
            let gens = generations(&self.root);
            self.counts.optimizations += (gens.0 - self.gens.0) as usize;
            self.counts.indexes += (gens.1 - self.gens.1) as usize;
            self.gens = gens;
        }
        for (image, what) in pending {
            let allowed = Allowed {
                lo: durable,
                hi: ops,
                exact: None,
                trusted: false,
            };
            self.check_device(&image, allowed, &what);
            self.counts.device_images_inside += 1;
        }
        if recorded {
            self.device_image_now();
        }
    }

    /// Now and then, a power-loss image of the device as the flushes so far left it: at
    /// least every operation the last sync made durable, at most every one done;
    /// exactly all of them if every unflushed unit reached the disk.
    fn device_image_now(&mut self) {
        if !self.rng.random_bool(DEVICE_AT_POINT) {
            return;
        }
        let (granularity, mix) = device_mix(&mut self.rng);
        let image = self.device.power_loss(&mut self.rng, granularity, mix);
        let ops = self.truth.ops.len();
        let allowed = Allowed {
            lo: *self.synced.last().expect("a sync"),
            hi: ops,
            exact: (mix == 1.0).then_some(ops),
            trusted: false,
        };
        let what = format!(
            "at point {} ({granularity:?}, mix {mix:.2})",
            self.points.len() - 1
        );
        self.check_device(&image, allowed, &what);
    }

    fn check_device(&mut self, image: &Image, allowed: Allowed, what: &str) {
        self.counts.device_images += 1;
        let exercise = self.counts.device_images.is_multiple_of(2);
        if let Err(e) = self.truth.check(image.path(), allowed, exercise) {
            panic!(
                "power-loss image of the device {what}: expected the state after {}..={} \
                 operations (exactly {:?}): {e}",
                allowed.lo, allowed.hi, allowed.exact
            );
        }
    }

    fn finish(mut self) -> Recorded {
        self.held.clear();
        drop(self.store.take());
        Recorded {
            history: self.history,
            points: self.points,
            synced: self.synced,
            counts: self.counts,
            summary: format!(
                "{} operations, {} keys at the end, {:?}",
                self.truth.ops.len(),
                self.model.len(),
                self.counts
            ),
            truth: self.truth,
        }
    }
}

/// A workload's shape: `ops` operations; the key count it drives towards changes over
/// the run through `targets`; a sync every `sync_every` operations (a random count in
/// the range); a clear at operation `clear_at`; an explicit optimisation every
/// `optimize_every` (after a sync or not); a clean shutdown and reopen every
/// `close_every`; value lengths from `value_len`.
struct Plan {
    ops: usize,
    targets: &'static [usize],
    sync_every: (usize, usize),
    clear_at: Option<usize>,
    optimize_every: Option<usize>,
    close_every: Option<usize>,
    value_len: fn(&mut StdRng) -> usize,
}

fn small_values(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..85 => rng.random_range(0..80),
        85..98 => rng.random_range(80..1_500),
        _ => rng.random_range(1_500..9_000),
    }
}

fn mixed_values(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..50 => rng.random_range(0..200),
        _ => rng.random_range(200..3_000),
    }
}

fn large_values(rng: &mut StdRng) -> usize {
    rng.random_range(4_000..12_000)
}

fn run(w: &mut Workload, plan: &Plan) {
    let mut until_sync = w.rng.random_range(plan.sync_every.0..=plan.sync_every.1);
    for i in 0..plan.ops {
        if plan.clear_at == Some(i) {
            w.write(Op::Clear, false);
        }
        let target = plan.targets[i * plan.targets.len() / plan.ops];
        let grow = w.model.len() < target;
        let roll = w.rng.random_range(0..100);
        let op = match roll {
            // A new key, more often while growing.
            _ if roll < if grow { 80 } else { 10 } => {
                let k = w.fresh_key();
                let len = (plan.value_len)(&mut w.rng);
                Op::Set(k, w.value(len))
            }
            // A delete, more often while shrinking (now and then of an absent key).
            _ if roll < if grow { 85 } else { 75 } => match w.present_key() {
                Some(k) if w.rng.random_bool(0.97) => Op::Delete(k),
                _ => Op::Delete(w.fresh_key()),
            },
            // An overwrite.
            _ => match w.present_key() {
                Some(k) => {
                    let len = (plan.value_len)(&mut w.rng);
                    Op::Set(k, w.value(len))
                }
                None => {
                    let k = w.fresh_key();
                    Op::Set(k, w.value(1))
                }
            },
        };
        let through_update = w.rng.random_bool(0.15);
        w.write(op, through_update);
        if w.rng.random_bool(0.006) {
            w.mid();
        }
        if i + 1 == plan.ops {
            break;
        }
        until_sync -= 1;
        if until_sync == 0 {
            w.sync();
            until_sync = w.rng.random_range(plan.sync_every.0..=plan.sync_every.1);
        }
        if plan.optimize_every.is_some_and(|n| i % n == n - 1) {
            if w.rng.random_bool(0.3) {
                w.sync();
            }
            w.optimize();
            if w.rng.random_bool(0.3) {
                w.mid();
            }
        }
        if plan.close_every.is_some_and(|n| i % n == n - 1) {
            w.close_and_reopen();
        }
    }
    w.mid();
}

/// Runs `plan` on a fresh store.
fn workload(
    replay: &mut Replay,
    options: HashOptions,
    plan: &Plan,
) -> (tempfile::TempDir, Recorded) {
    let (tmp, dir) = crate::store();
    drop(dir);
    let mut w = Workload::open(tmp.path(), options, Model::new(), &mut replay.rng);
    run(&mut w, plan);
    (tmp, w.finish())
}

// ---------------------------------------------------------------------------------------
// The checking side

/// A finished workload: its history and what each point may recover to.
struct Recorded {
    history: History,
    points: Vec<PointInfo>,
    synced: Vec<usize>,
    truth: Truth,
    counts: Counts,
    summary: String,
}

impl Recorded {
    /// Crash number `n`: one in four mid-work, one in four at a point whose flushes
    /// include a register (a close, a register flush inside an action, a sync that
    /// recorded the length), the rest at any step; the cut is random over the step's
    /// groups and one past them.
    fn random_crash(&self, rng: &mut impl Rng, n: usize) -> Crash {
        let points = |f: &dyn Fn(&PointInfo) -> bool| -> Vec<usize> {
            (1..self.points.len())
                .filter(|&i| f(&self.points[i]))
                .collect()
        };
        let mids = points(&|p| p.kind == Kind::Mid);
        let steps = points(&|p| p.kind != Kind::Mid);
        let registers = points(&|p| {
            p.kind != Kind::Mid && p.order.groups.iter().any(|g| g.written == Written::AtFlush)
        });
        let from = match n % 4 {
            3 if !mids.is_empty() => &mids,
            1 if !registers.is_empty() => &registers,
            _ => &steps,
        };
        let at = from[rng.random_range(0..from.len())];
        let p = &self.points[at];
        let cut = (p.kind != Kind::Mid).then(|| rng.random_range(0..=p.order.len()));
        Crash::random(rng, at, cut)
    }

    fn allowed(&self, crash: &Crash) -> Allowed {
        let point = &self.points[crash.at];
        let possible = self.history.possible_syncs(crash, &point.order);
        let durable = &self.points[self
            .history
            .after_sync_point(self.history.durable_sync(crash))];
        // Pure S0 (the image is the durable point's snapshot), pure S1.
        let pure_old = crash.mix == Mix::Old && crash.cut.unwrap_or(0) == 0;
        let exact = match crash.mix {
            Mix::Old if pure_old && durable.exact => Some(durable.ops),
            Mix::New if point.exact => Some(point.ops),
            _ => None,
        };
        Allowed {
            lo: self.synced[possible[0]],
            hi: point.ops,
            exact,
            trusted: pure_old && durable.kind == Kind::Close,
        }
    }

    /// The checks are not vacuous: the disk of a sync taken for the disk of a later one
    /// (a sync that returned before its data was flushed) lacks durable writes, and the
    /// disk of a later sync holds writes not made yet at an earlier one.
    fn checks_catch_lost_and_extra_writes(&self) {
        let s = (1..self.synced.len() - 1)
            .find(|&s| {
                self.synced[s + 1] > self.synced[s]
                    && self.points[self.history.after_sync_point(s)].kind == Kind::Sync
                    && self.points[self.history.after_sync_point(s + 1)].kind == Kind::Sync
            })
            .expect("two syncs in a row with writes between");
        let (at, next) = (self.synced[s], self.synced[s + 1]);
        let exact = |ops| Allowed {
            lo: ops,
            hi: ops,
            exact: Some(ops),
            trusted: false,
        };
        let image = Image::of(self.history.after_sync(s));
        if let Err(e) = self.truth.check(image.path(), exact(at), false) {
            panic!("the pure image of sync {s} does not hold its state: {e}");
        }
        for (disk, claimed) in [(s, next), (s + 1, at)] {
            let image = Image::of(self.history.after_sync(disk));
            match self.truth.check(image.path(), exact(claimed), false) {
                Ok(_) => panic!("sync {disk}'s disk passed for the state after {claimed}"),
                Err(e) => assert!(e.contains("not the state after"), "unexpected failure: {e}"),
            }
        }
    }

    /// The crashes to check: first every cut of every clean shutdown, of the point after
    /// it (the next write's journal flush, from the clean state), and of every sync that
    /// recorded the data log's length, with nothing, everything and half of the unsynced
    /// units on disk; then random ones, up to `images`.
    fn crashes(&self, rng: &mut impl Rng, images: usize) -> Vec<Crash> {
        let mut out = Vec::new();
        let length_recorded = |p: &PointInfo| {
            p.kind == Kind::Sync && p.order.groups.iter().any(|g| g.written == Written::AtFlush)
        };
        for at in 1..self.points.len() {
            let p = &self.points[at];
            let after_close = self.points[at - 1].kind == Kind::Close && p.kind != Kind::Mid;
            if p.kind == Kind::Close || after_close || length_recorded(p) {
                for cut in 0..=p.order.len() {
                    for mix in [Mix::Old, Mix::New, Mix::Random(0.5)] {
                        let mut crash = Crash::random(rng, at, Some(cut));
                        crash.mix = mix;
                        out.push(crash);
                    }
                }
            }
        }
        for n in out.len()..images {
            out.push(self.random_crash(rng, n));
        }
        out
    }

    /// Builds the crash images of [`crashes`](Self::crashes) and checks each; prints a
    /// tally per point kind.
    /// Returns how many images opened without a rebuild.
    fn check_images(&self, replay: &mut Replay, images: usize) -> usize {
        // Per kind of point: images, a newer state than the durable one recovered,
        // rebuilt at open.
        let kinds = [
            Kind::Sync,
            Kind::Close,
            Kind::Register,
            Kind::Action,
            Kind::Mid,
        ];
        let mut tally = [(0usize, 0usize, 0usize); 5];
        let crashes = self.crashes(&mut replay.rng, images);
        let images = crashes.len();
        for (n, crash) in crashes.into_iter().enumerate() {
            let point = &self.points[crash.at];
            replay.context = format!("checking image {n} ({crash}, after {:?})", point.kind);
            let image = self.history.image(&crash, &point.order);
            let allowed = self.allowed(&crash);
            if n % 3 == 1 {
                debris(&image, &mut replay.rng);
            }
            match self.truth.check(image.path(), allowed, n.is_multiple_of(2)) {
                Ok(found) => {
                    let t = &mut tally[kinds.iter().position(|&k| k == point.kind).unwrap_or(4)];
                    t.0 += 1;
                    t.1 += usize::from(found.k > allowed.lo);
                    t.2 += usize::from(found.rebuilt);
                }
                Err(e) => panic!(
                    "{}: expected the state after {}..={} operations (exactly {:?}): {e}",
                    replay.context, allowed.lo, allowed.hi, allowed.exact
                ),
            }
        }
        let count = |k: Kind| self.points.iter().filter(|p| p.kind == k).count();
        eprintln!(
            "{}: {images} images over {} points ({} syncs, {} closes, {} register flushes \
             inside actions, {} other actions that flushed; {}), seed {}: (images, newer \
             than durable recovered, rebuilt) after sync, close, register flush, action, \
             mid-work: {tally:?}",
            replay.test,
            self.points.len(),
            count(Kind::Sync),
            count(Kind::Close),
            count(Kind::Register),
            count(Kind::Action),
            self.summary,
            replay.seed
        );
        images - tally.iter().map(|t| t.2).sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// Grows to about 4,000 keys (the index grows from 4,096 slots), shrinks to about 2,500
/// (it shrinks back), with overwrites, updates, deletes of absent keys, mid-work points
/// and a sync every few dozen to few hundred operations; a clear near the end, then a
/// regrowth; a clean shutdown and reopen midway. The history starts on a new store: the
/// first write's journal flush (no longer clean) is a point of its own.
#[test]
fn hash_store_crash_images() {
    let mut replay = Replay::new("hash_store_crash_images");
    let plan = Plan {
        ops: 9_000,
        targets: &[4_000, 4_000, 2_000],
        sync_every: (20, 400),
        clear_at: Some(8_700),
        optimize_every: None,
        close_every: Some(4_000),
        value_len: small_values,
    };
    let (_tmp, rec) = workload(&mut replay, HashOptions::default(), &plan);
    assert!(
        rec.counts.indexes >= 3,
        "grow, shrink, clear: {}",
        rec.summary
    );
    let trusted = rec.check_images(&mut replay, CRASH_IMAGES);
    assert!(
        trusted > 0,
        "no image trusted the index a clean shutdown left"
    );
    rec.checks_catch_lost_and_extra_writes();
}

/// Overwrites and deletes over about 150 keys with values up to 3 KB: automatic
/// optimisations (inside writes, after unsynced ones) once the log passes 128 KiB, and
/// explicit ones (after a sync or not, with a value handle into the old log held across
/// some); clean shutdowns and reopens now and then (the reopen's first write takes a new
/// epoch for the data log, after the journal's flush).
#[test]
fn hash_store_optimize_crash_images() {
    let mut replay = Replay::new("hash_store_optimize_crash_images");
    let plan = Plan {
        ops: 2_400,
        targets: &[150],
        sync_every: (10, 150),
        clear_at: None,
        optimize_every: Some(500),
        close_every: Some(900),
        value_len: mixed_values,
    };
    let options = HashOptions {
        auto_optimize: true,
        auto_optimize_min_bytes: 128 << 10,
    };
    let (_tmp, rec) = workload(&mut replay, options, &plan);
    assert!(
        rec.counts.optimizations >= 6,
        "too few optimisations: {}",
        rec.summary
    );
    let trusted = rec.check_images(&mut replay, OPTIMIZE_IMAGES);
    assert!(
        trusted > 0,
        "no image trusted the index a clean shutdown left"
    );
}

/// Values of 4 to 12 KB, synced every few hundred KB, with no optimisation: the tail
/// past the data log's recorded length reaches 4 MiB within the run, and the sync that
/// sees it records the length (a cut between the data's flush and that write); a clean
/// shutdown records it too.
#[test]
fn hash_store_lazy_length_crash_images() {
    let mut replay = Replay::new("hash_store_lazy_length_crash_images");
    let plan = Plan {
        ops: 1_000,
        targets: &[400],
        sync_every: (20, 90),
        clear_at: None,
        optimize_every: None,
        close_every: Some(650),
        value_len: large_values,
    };
    let options = HashOptions {
        auto_optimize: false,
        ..HashOptions::default()
    };
    let (_tmp, rec) = workload(&mut replay, options, &plan);
    assert!(
        rec.counts.length_records > 0,
        "no sync recorded the length: {}",
        rec.summary
    );
    let trusted = rec.check_images(&mut replay, LAZY_LENGTH_IMAGES);
    assert!(
        trusted > 0,
        "no image trusted the index a clean shutdown left"
    );
}

/// Crash, recover (checked), keep working on the recovered disk (stale bytes past the
/// recovered log, an index generation left by the crash), crash again.
#[test]
fn hash_store_crash_twice() {
    let mut replay = Replay::new("hash_store_crash_twice");
    let plan = Plan {
        ops: 1_500,
        targets: &[900],
        sync_every: (20, 200),
        clear_at: None,
        optimize_every: Some(600),
        close_every: None,
        value_len: mixed_values,
    };
    let options = HashOptions {
        auto_optimize: true,
        auto_optimize_min_bytes: 512 << 10,
    };
    let (_tmp, first) = workload(&mut replay, options.clone(), &plan);
    for life in 0..SECOND_LIVES {
        let n = replay.rng.random_range(0..1000);
        let crash = first.random_crash(&mut replay.rng, n);
        replay.context = format!("recovering life {life} from {crash}");
        let image = first.history.image(&crash, &first.points[crash.at].order);
        let allowed = first.allowed(&crash);
        let found = first
            .truth
            .check(image.path(), allowed, false)
            .unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        let mut model = first.truth.bases[&allowed.lo].clone();
        for op in &first.truth.ops[allowed.lo..found.k] {
            apply(&mut model, op);
        }
        let mut w = Workload::open(image.path(), options.clone(), model, &mut replay.rng);
        w.next_key = 1_000_000 * (life + 1);
        for k in &first.truth.keys {
            if w.key_set.insert(Arc::clone(k)) {
                w.truth.keys.push(Arc::clone(k));
            }
        }
        w.serial = 1_000_000 * (life as u64 + 1);
        let plan = Plan {
            ops: 700,
            targets: &[900],
            sync_every: (20, 200),
            clear_at: None,
            optimize_every: Some(300),
            close_every: None,
            value_len: mixed_values,
        };
        run(&mut w, &plan);
        let second = w.finish();
        second.check_images(&mut replay, SECOND_LIFE_IMAGES);
    }
}

// ---------------------------------------------------------------------------------------
// Kill, reopen and work, then power loss

/// The first process works (growing past the first resize, optimising) and is killed at
/// the flush `trigger` picks; the second opens what it left in the page cache, finds the
/// state after every operation that returned (and perhaps the one the kill failed),
/// writes and syncs. Every power-loss image then holds exactly what the second process
/// saw and wrote. Returns where the kill came and what the first process had done.
fn killed_then_power_loss(
    replay: &mut Replay,
    mut trigger: impl FnMut(&Flush<'_>, &str) -> bool + Send + 'static,
) -> Result<String, String> {
    let work = tempfile::Builder::new()
        .prefix("accretion-hash-kill-")
        .tempdir_in(scratch_root())
        .expect("temporary directory");
    let root = work.path();
    let device = DiskModel::start(root);
    let options = HashOptions {
        auto_optimize: true,
        auto_optimize_min_bytes: 128 << 10,
    };
    let rng = &mut replay.rng;
    let mut ops: Vec<Op> = Vec::new();
    let mut model = Model::new();
    let mut keys: Vec<Bytes> = Vec::new();
    let killed_at: Arc<Mutex<Option<String>>> = Arc::default();
    // Operations that returned; whether one failed (the kill's).
    let (done, failed) = {
        let dir = Dir::open(root).expect("open");
        let store = HashStore::open(&dir, NAME, options.clone()).expect("open");
        let at = Arc::clone(&killed_at);
        device.kill_when(move |f, rel| {
            let kill = trigger(f, rel);
            if kill {
                *at.lock() = Some(rel.to_string());
            }
            kill
        });
        let mut failed = false;
        for i in 0..5_000u32 {
            let op = if i < 3_800 || rng.random_bool(0.4) {
                let k: Bytes = if i < 3_800 || keys.is_empty() {
                    Arc::from(format!("key-{i:05}").into_bytes())
                } else {
                    Arc::clone(&keys[rng.random_range(0..keys.len())])
                };
                let mut v = format!("#{i}:").into_bytes();
                v.extend(random_bytes(rng.random_range(0..300), rng));
                Op::Set(k, Arc::from(v))
            } else if rng.random_bool(0.9) {
                Op::Delete(Arc::clone(&keys[rng.random_range(0..keys.len())]))
            } else {
                Op::Clear
            };
            if let Op::Set(k, _) = &op {
                keys.push(Arc::clone(k));
            }
            let result = match &op {
                Op::Set(k, v) => store.set(k, v).map(drop),
                Op::Delete(k) => store.delete(k).map(drop),
                Op::Clear => store.clear(),
            };
            let synced = i % 97 == 96 && result.is_ok() && store.sync().is_ok();
            ops.push(op);
            if result.is_err() {
                failed = true;
                break;
            }
            apply(&mut model, ops.last().expect("an op"));
            if device.killed() || (i % 97 == 96 && !synced) {
                break;
            }
        }
        if !device.killed() {
            device.kill();
        }
        (ops.len() - usize::from(failed), failed)
    };
    device.revive();
    let dir = Dir::open(root).expect("reopen");
    let store = HashStore::open(&dir, NAME, options.clone())
        .map_err(|e| format!("the second process cannot open: {e}"))?;
    let seen = read_all(&store).map_err(|e| format!("the second process reads: {e}"))?;
    if seen != model {
        let mut with_failed = model.clone();
        if failed {
            apply(&mut with_failed, &ops[done]);
        }
        if !failed || seen != with_failed {
            return Err(format!(
                "after {done} operations that returned (one more failed: {failed}), the \
                 second process found: {}",
                diff(&seen, &model)
            ));
        }
    }
    let mut want = seen;
    for i in 0..6 {
        let k: Bytes = Arc::from(format!("second-{i}").into_bytes());
        store.set(&k, b"second").expect("set");
        want.insert(k, Arc::from(&b"second"[..]));
    }
    if let Some(k) = keys.first().filter(|k| want.contains_key(*k)) {
        store.delete(k).expect("delete");
        want.remove(k);
    }
    store.sync().expect("the second process's sync");
    // The power loss comes now, the second process still open.
    for n in 0..KILL_IMAGES {
        let (granularity, mix) = if n == 0 {
            (Granularity::Page, 0.0)
        } else {
            device_mix(&mut replay.rng)
        };
        let image = device.power_loss(&mut replay.rng, granularity, mix);
        let what = format!("power-loss image {n} ({granularity:?}, mix {mix:.2})");
        let dir = open_dir(image.path())?;
        let store = HashStore::open(&dir, NAME, options.clone())
            .map_err(|e| format!("{what}: HashStore::open: {e}"))?;
        let got = read_all(&store).map_err(|e| format!("{what}: {e}"))?;
        if got != want {
            return Err(format!(
                "{what}: the second process saw and synced another state: {}",
                diff(&got, &want)
            ));
        }
        store
            .set(b"after", b"power loss")
            .and_then(|_| store.sync())
            .map_err(|e| format!("{what}: a write after recovery: {e}"))?;
    }
    let at = killed_at.lock().clone();
    Ok(format!(
        "killed at {} after {done} operations{}",
        at.as_deref().unwrap_or("the end"),
        if failed { " and a failed one" } else { "" }
    ))
}

/// Killed at the n-th fdatasync of the journal (the first write's, a resize's, a clear's,
/// an optimisation's start or end), or at the n-th flush of any kind.
#[test]
fn hash_store_killed_then_power_loss() {
    let mut replay = Replay::new("hash_store_killed_then_power_loss");
    let mut runs = Vec::new();
    for run in 0..KILLS {
        // The n-th journal flush (the first write's, resizes', optimisations' and
        // clears') or the n-th flush of any kind.
        let journal = run.is_multiple_of(2);
        let at = if journal {
            replay.rng.random_range(1..12usize)
        } else {
            replay.rng.random_range(1..300usize)
        };
        replay.context = format!(
            "run {run}: killed at {} flush {at}",
            if journal { "journal" } else { "any" }
        );
        let mut n = 0;
        let result = killed_then_power_loss(&mut replay, move |f, rel| {
            if !journal || (rel == JOURNAL && matches!(f, Flush::File { .. })) {
                n += 1;
            }
            n == at
        });
        match result {
            Ok(what) => runs.push(what),
            Err(e) => panic!("run {run} (killed at flush {at}, journal only: {journal}): {e}"),
        }
    }
    eprintln!(
        "hash_store_killed_then_power_loss: {KILLS} runs of {KILL_IMAGES} images, seed {}: \
         {runs:?}",
        replay.seed
    );
}

// ---------------------------------------------------------------------------------------
// An optimisation after unsynced writes

/// A delete and an overwrite after the last sync, then an optimisation, and power lost
/// right after its copies' msync, with nothing else flushed on disk: the old log's
/// unsynced tail (the delete, the overwrite) is lost, the copy of the overwrite is not.
/// The store must recover a prefix of the writes (the documented contract: "of later
/// writes a prefix in the order they were made"): the deleted key may only be back if
/// the overwrite is lost too.
#[test]
fn hash_store_optimisation_after_unsynced_writes_keeps_a_prefix() {
    let mut replay = Replay::new("hash_store_optimisation_after_unsynced_writes_keeps_a_prefix");
    let (tmp, dir) = crate::store();
    let root = tmp.path().to_path_buf();
    let options = HashOptions {
        auto_optimize: false,
        ..HashOptions::default()
    };
    let store = HashStore::open(&dir, NAME, options.clone()).expect("open");
    let device = Arc::new(DiskModel::start(&root));
    store.set(b"a", b"#1:a").expect("set");
    store.set(b"b", b"#2:b").expect("set");
    store.sync().expect("sync");
    store.delete(b"a").expect("delete");
    store.set(b"b", b"#3:b").expect("set");
    let images: Arc<Mutex<Vec<Image>>> = Arc::default();
    let hook = {
        let (device, images, root) = (Arc::downgrade(&device), Arc::clone(&images), root.clone());
        faults::install(move |flush| {
            if let Flush::Range { path, .. } = flush
                && path.starts_with(root.join(NAME).join("d1"))
                && let Some(device) = device.upgrade()
            {
                let mut rng = StdRng::seed_from_u64(0);
                images
                    .lock()
                    .push(device.power_loss(&mut rng, Granularity::Page, 0.0));
            }
            None
        })
    };
    assert!(store.optimize(OptimizeMode::Aggressive).expect("optimize"));
    drop(hook);
    drop(store);
    let image = images.lock().pop().expect("the copies' msync was seen");
    replay.context = "checking the image right after the copies' msync".into();
    let dir = open_dir(image.path()).expect("open the image");
    let store = HashStore::open(&dir, NAME, options).expect("open the image's store");
    let got = read_all(&store).expect("read the image");
    let state = |pairs: &[(&[u8], &[u8])]| -> Model {
        pairs
            .iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect()
    };
    let prefixes = [
        state(&[(b"a", b"#1:a"), (b"b", b"#2:b")]),
        state(&[(b"b", b"#2:b")]),
        state(&[(b"b", b"#3:b")]),
    ];
    assert!(
        prefixes.contains(&got),
        "recovered {}, no prefix of the writes (the synced state, then the delete, then \
         the overwrite): the old log's unsynced delete was lost while the copy of the \
         later overwrite was kept",
        {
            let mut v: Vec<String> = got
                .iter()
                .map(|(k, v)| format!("{} = {}", show(k), label(v)))
                .collect();
            v.sort();
            v.join(", ")
        }
    );
}
