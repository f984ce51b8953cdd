//! Crash images of a ShardedStore: sets, removals, compare-and-swaps and get-or-creates
//! over hundreds of keys in 20 KiB shards (so that writes split and compact shards as
//! they go), explicit compactions and merges of small shards, a clear, a clean shutdown
//! and reopen, and every list and queue operation, with syncs at random points.
//!
//! A ShardedStore is a state Journal (`sh/state/journal.acc`: the map of shards), an
//! entropy file, and per shard `sh/s{N}/`: rows and pointers (RandomAccess arrays changed
//! in place, flushed only by a clean shutdown), a format-2 AppendOnly log of records and a
//! `meta` Journal (written by a clean shutdown). Flushes come from many actions, not only
//! `sync()`: the first write of a session syncs the state (no longer clean), a split,
//! merge, compaction or clear syncs the state to reserve incarnations, syncs each new
//! log's length register at its creation, msyncs the new logs and syncs the state again
//! (the commit). So, as for the HashStore (`hash_store.rs`), the workload watches every
//! flush under the store directory (the crate's fault-injection hooks) rather than
//! declaring an order:
//! - at every fdatasync of a file other than a lane, made inside an action other than
//!   `sync` or `close`, the hook snapshots the directory (the register's new bytes are
//!   written by then) and the workload records that snapshot as a point right after a
//!   sync, whose flush order is the flushes seen since the point before, in order (a
//!   structure's lanes as one `Mapped` group, each register as an `AtFlush` one);
//! - after every action that flushed something more, and after every `sync` and `close`,
//!   it records a point the same way, from a snapshot taken when the action returned; a
//!   `sync` or `close` commits at its last group (every shard's log flushed).
//!
//! What an image may hold (the ShardedStore's durability contract): with `lo` the
//! operations done when the last `sync` (or `close`) that returned before the crash
//! returned, and `hi` those begun by the crash,
//! - every key holds its value after `lo` operations or a value one of operations
//!   `lo..hi` wrote to it (absent only if absent then, or removed or cleared since);
//! - every list and queue is exactly as the model had it after some operation `k` in
//!   `lo..=hi`, the same `k` for what `iter_list` / `iter_queue` (both ways), `list_len` /
//!   `queue_len`, the peeks and `get_from_list` read (each operation is one batch record,
//!   and each shard's log keeps a prefix of its records);
//! - a split, merge, compaction or clear is all or nothing: the open succeeds (a map
//!   naming a shard whose files are not all there fails it), and a clear that committed
//!   takes every key, list and queue with it;
//! - exactly the state of the durable point's snapshot when nothing after it reached the
//!   disk (pure S0), exactly the state at the crash when everything did (pure S1), for
//!   points whose snapshot was taken between actions; the rows a clean shutdown left are
//!   trusted (not rebuilt) on the pure image of its disk.
//!
//! Every cut of the close, and of the point after it, is checked with nothing,
//! everything or half of the unsynced units on disk; the other crashes are random
//! (points, cuts, pages or 512-byte sectors, mixes). One image in three is then written
//! to (a set, a removal, list and queue operations), synced, closed and reopened, and
//! must hold what was written. Besides the snapshot images, the device as the observed
//! flushes left it (`disk.rs`) gives power-loss images at random points, which hold the
//! store to what it flushed rather than to what a point's snapshot shows.
//!
//! `sharded_store_checks_catch_lost_writes` (inside the scenario) shows that the checks
//! fail on the disk of one sync taken for another's, and on a list or queue model that
//! differs in one item.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use accretion::faults::{self, Flush, HookGuard};
use accretion::{Dir, GetOrCreate, Replace, ShardedOptions, ShardedStore};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::DiskModel;
use crate::harness::{
    Crash, FlushOrder, Granularity, Group, History, Image, Mix, Replay, Snapshot, Written, serial,
    show,
};
use crate::{open_dir, random_bytes};

/// Crash images checked (beyond the systematic ones of every close).
const CRASH_IMAGES: usize = 260;
/// The chance of a power-loss image of the device at a point recorded between actions.
const DEVICE_AT_POINT: f64 = 0.04;

/// The store's name in its directory.
const NAME: &str = "sh";
/// Lists and queues of the workload, and item keys per list.
const LISTS: usize = 5;
const QUEUES: usize = 4;
const LIST_ITEM_KEYS: usize = 30;

fn options() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 20 << 10,
        ..ShardedOptions::default()
    }
}

type Bytes = Vec<u8>;
/// A list's items, head to tail: key, value.
type List = Vec<(Bytes, Bytes)>;
/// A queue's entries, head to tail: index, value.
type Queue = Vec<(u64, Bytes)>;

/// The first index of a new (or emptied) queue (`lists.rs`).
const QUEUE_START: u64 = 1 << 63;

/// A value in a message: its serial number (`#n`), else its first bytes.
fn label(value: &[u8]) -> String {
    match serial(value) {
        s if s.is_empty() => format!("{:?}", show(value)),
        s => s,
    }
}

fn list_labels(list: &List) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(k, v)| format!("{}={}", show(k), label(v)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn queue_labels(queue: &Queue) -> String {
    let items: Vec<String> = queue
        .iter()
        .map(|(i, v)| format!("{}:{}", i.wrapping_sub(QUEUE_START) as i64, label(v)))
        .collect();
    format!("[{}]", items.join(", "))
}

// ---------------------------------------------------------------------------------------
// The model

/// One operation of the workload.
#[derive(Clone, Debug)]
enum Op {
    Set(Bytes, Bytes),
    Remove(Bytes),
    Replace {
        key: Bytes,
        value: Bytes,
        expected: Bytes,
    },
    GetOrCreate(Bytes, Bytes),
    Clear,
    ListSet {
        list: Bytes,
        key: Bytes,
        value: Bytes,
        promote: bool,
    },
    ListReplace {
        list: Bytes,
        key: Bytes,
        value: Bytes,
        expected: Bytes,
    },
    ListRemove(Bytes, Bytes),
    ListPop(Bytes, bool),
    ListDiscard(Bytes),
    ListCompact(Bytes),
    QueuePush(Bytes, Bytes, bool),
    QueuePop(Bytes, bool),
    QueueRemove(Bytes, u64),
    QueueDiscard(Bytes),
}

/// What the store holds: the key-value map, and every list and queue (a missing one is
/// empty).
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    kv: HashMap<Bytes, Bytes>,
    lists: BTreeMap<Bytes, List>,
    queues: BTreeMap<Bytes, Queue>,
}

impl Model {
    fn list(&self, name: &[u8]) -> List {
        self.lists.get(name).cloned().unwrap_or_default()
    }

    fn queue(&self, name: &[u8]) -> Queue {
        self.queues.get(name).cloned().unwrap_or_default()
    }
}

/// An object's states over the operations: after how many operations it took each state,
/// oldest first; before the first, the empty state.
#[derive(Debug)]
struct Timeline<T> {
    changes: Vec<(usize, T)>,
}

impl<T: Clone + Default + PartialEq> Timeline<T> {
    fn new() -> Self {
        Timeline {
            changes: Vec::new(),
        }
    }

    /// Records that the object holds `state` after `ops` operations.
    fn record(&mut self, ops: usize, state: T) {
        if self.at(ops) != state {
            self.changes.push((ops, state));
        }
    }

    /// The state after `k` operations.
    fn at(&self, k: usize) -> T {
        self.changes
            .iter()
            .rev()
            .find(|(n, _)| *n <= k)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// The states after `lo..=hi` operations, with the operation count of each.
    fn states(&self, lo: usize, hi: usize) -> Vec<(usize, T)> {
        let mut out = vec![(lo, self.at(lo))];
        out.extend(
            self.changes
                .iter()
                .filter(|(n, _)| lo < *n && *n <= hi)
                .cloned(),
        );
        out
    }
}

/// Everything the workload did, as the checks need it.
struct Truth {
    ops: Vec<Op>,
    keys: BTreeMap<Bytes, Timeline<Option<Bytes>>>,
    lists: BTreeMap<Bytes, Timeline<List>>,
    /// Every item key ever set in each list.
    items: BTreeMap<Bytes, BTreeSet<Bytes>>,
    queues: BTreeMap<Bytes, Timeline<Queue>>,
    /// Keys, lists and queues never written.
    never: Vec<Bytes>,
}

/// What an image may hold: the states after `lo..=hi` operations; exactly after `exact`
/// if given; the rows trusted without a rebuild if `trusted`.
#[derive(Clone, Copy, Debug)]
struct Allowed {
    lo: usize,
    hi: usize,
    exact: Option<usize>,
    trusted: bool,
}

/// What an image was found to hold.
struct Found {
    /// Some object held a state newer than the durable one.
    newer: bool,
    rebuilt: u64,
}

impl Truth {
    /// Opens the image at `path` and checks it against `allowed`; with `exercise`, then
    /// writes, syncs, shuts down cleanly and reopens.
    fn check(&self, path: &Path, allowed: Allowed, exercise: bool) -> Result<Found, String> {
        let dir = open_dir(path)?;
        let store = ShardedStore::open(&dir, NAME, options())
            .map_err(|e| format!("ShardedStore::open failed: {e}"))?;
        let rebuilt = store.stats().rebuilt_at_open;
        let got = read_all(&store, self)?;
        let newer = self.matches(&got, allowed)?;
        if allowed.trusted && rebuilt > 0 {
            return Err(format!(
                "the disk a clean shutdown left was not trusted: {rebuilt} shards rebuilt"
            ));
        }
        if exercise {
            exercise_store(&dir, store, got, self)?;
        }
        Ok(Found { newer, rebuilt })
    }

    /// Whether `got` is allowed (see [`Allowed`]); returns whether some object held a
    /// state newer than the one after `lo` operations.
    fn matches(&self, got: &Model, allowed: Allowed) -> Result<bool, String> {
        let Allowed { lo, hi, exact, .. } = allowed;
        let mut newer = false;
        // Keys: each holds a value it held at or after `lo`, and nothing else.
        for (k, v) in &got.kv {
            if !self.keys.contains_key(k) {
                return Err(format!(
                    "key {:?} (value {}) was never written",
                    show(k),
                    label(v)
                ));
            }
        }
        for (k, timeline) in &self.keys {
            let have = got.kv.get(k).cloned();
            let states = timeline.states(lo, hi);
            let Some(&(n, _)) = states.iter().find(|(_, s)| *s == have) else {
                return Err(format!(
                    "key {:?} holds {}, not its value after {lo} operations ({}) nor one \
                     written to it up to operation {hi}: {}",
                    show(k),
                    have.as_deref().map_or("nothing".into(), label),
                    timeline.at(lo).as_deref().map_or("nothing".into(), label),
                    states
                        .iter()
                        .map(|(n, s)| format!(
                            "{n}: {}",
                            s.as_deref().map_or("nothing".into(), label)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            newer |= n > lo && have != timeline.at(lo);
            if let Some(e) = exact
                && have != timeline.at(e)
            {
                return Err(format!(
                    "key {:?} holds {}, expected exactly its value after {e} operations, {}",
                    show(k),
                    have.as_deref().map_or("nothing".into(), label),
                    timeline.at(e).as_deref().map_or("nothing".into(), label)
                ));
            }
        }
        // Lists and queues: each exactly as after some operation in `lo..=hi`.
        for (name, timeline) in &self.lists {
            let have = got.list(name);
            newer |= Self::sequence(name, "list", timeline, &have, allowed, list_labels)?;
        }
        for (name, timeline) in &self.queues {
            let have = got.queue(name);
            newer |= Self::sequence(name, "queue", timeline, &have, allowed, queue_labels)?;
        }
        Ok(newer)
    }

    /// Checks one list or queue against its timeline; returns whether it held a state
    /// newer than the one after `lo` operations.
    fn sequence<T: Clone + Default + PartialEq>(
        name: &[u8],
        what: &str,
        timeline: &Timeline<T>,
        have: &T,
        allowed: Allowed,
        labels: fn(&T) -> String,
    ) -> Result<bool, String> {
        let Allowed { lo, hi, exact, .. } = allowed;
        let states = timeline.states(lo, hi);
        let Some(&(n, _)) = states.iter().find(|(_, s)| s == have) else {
            let mut listed = String::new();
            for (n, s) in states.iter().rev().take(6) {
                let _ = write!(listed, "; after {n}: {}", labels(s));
            }
            return Err(format!(
                "{what} {:?} is {}, not as after any of operations {lo}..={hi} (the last \
                 states, newest first{listed})",
                show(name),
                labels(have)
            ));
        };
        if let Some(e) = exact
            && *have != timeline.at(e)
        {
            return Err(format!(
                "{what} {:?} is {}, expected exactly as after {e} operations: {}",
                show(name),
                labels(have),
                labels(&timeline.at(e))
            ));
        }
        Ok(n > lo && *have != timeline.at(lo))
    }
}

/// Reads the store: the key-value map through `iter` (checked against `len` and `get`),
/// and every list and queue `truth` knows through both iterations, the length, the
/// peeks and (lists) `get_from_list` of every item key ever set, which must all agree.
fn read_all(store: &ShardedStore, truth: &Truth) -> Result<Model, String> {
    let mut model = Model::default();
    for entry in store.iter() {
        let entry = entry.map_err(|e| format!("iter: {e}"))?;
        if model
            .kv
            .insert(entry.key.to_vec(), entry.value.to_vec())
            .is_some()
        {
            return Err(format!("iter yields {:?} twice", show(&entry.key)));
        }
    }
    if model.kv.len() as u64 != store.len() {
        return Err(format!(
            "len {}, iter yields {}",
            store.len(),
            model.kv.len()
        ));
    }
    for k in truth.keys.keys().chain(&truth.never) {
        let v = store
            .get(k)
            .map_err(|e| format!("get({:?}): {e}", show(k)))?;
        if v.as_deref() != model.kv.get(k).map(|v| &v[..]) {
            return Err(format!("get({:?}) disagrees with iter", show(k)));
        }
    }
    let no_items = BTreeSet::new();
    for name in truth.lists.keys().chain(&truth.never) {
        let list = read_list(store, name, truth.items.get(name).unwrap_or(&no_items))?;
        if !list.is_empty() {
            model.lists.insert(name.clone(), list);
        }
    }
    for name in truth.queues.keys().chain(&truth.never) {
        let queue = read_queue(store, name)?;
        if !queue.is_empty() {
            model.queues.insert(name.clone(), queue);
        }
    }
    Ok(model)
}

fn read_list(store: &ShardedStore, name: &[u8], items: &BTreeSet<Bytes>) -> Result<List, String> {
    let what = |e: accretion::Error, how: &str| format!("list {:?}: {how}: {e}", show(name));
    let mut list = List::new();
    for item in store.iter_list(name) {
        let item = item.map_err(|e| what(e, "iter_list"))?;
        list.push((item.key.to_vec(), item.value.to_vec()));
    }
    let mut back = List::new();
    for item in store.iter_list(name).rev() {
        let item = item.map_err(|e| what(e, "iter_list().rev()"))?;
        back.push((item.key.to_vec(), item.value.to_vec()));
    }
    back.reverse();
    let len = store.list_len(name).map_err(|e| what(e, "list_len"))?;
    let head = store
        .peek_list_head(name)
        .map_err(|e| what(e, "peek_list_head"))?
        .map(|i| (i.key.to_vec(), i.value.to_vec()));
    let tail = store
        .peek_list_tail(name)
        .map_err(|e| what(e, "peek_list_tail"))?
        .map(|i| (i.key.to_vec(), i.value.to_vec()));
    if back != list
        || len != list.len() as u64
        || head.as_ref() != list.first()
        || tail.as_ref() != list.last()
    {
        return Err(format!(
            "list {:?} reads differently: iter {}, rev {}, len {len}, head {:?}, tail {:?}",
            show(name),
            list_labels(&list),
            list_labels(&back),
            head.map(|(k, _)| show(&k)),
            tail.map(|(k, _)| show(&k)),
        ));
    }
    let keys: BTreeSet<&Bytes> = list.iter().map(|(k, _)| k).collect();
    if keys.len() != list.len() {
        return Err(format!(
            "list {:?} holds an item twice: {}",
            show(name),
            list_labels(&list)
        ));
    }
    for key in items {
        let got = store
            .get_from_list(name, key)
            .map_err(|e| what(e, "get_from_list"))?;
        let want = list.iter().find(|(k, _)| k == key).map(|(_, v)| &v[..]);
        if got.as_deref() != want {
            return Err(format!(
                "list {:?}: get_from_list({:?}) is {}, iter_list says {}",
                show(name),
                show(key),
                got.as_deref().map_or("nothing".into(), label),
                want.map_or("nothing".into(), label)
            ));
        }
    }
    Ok(list)
}

fn read_queue(store: &ShardedStore, name: &[u8]) -> Result<Queue, String> {
    let what = |e: accretion::Error, how: &str| format!("queue {:?}: {how}: {e}", show(name));
    let mut queue = Queue::new();
    for item in store.iter_queue(name) {
        let item = item.map_err(|e| what(e, "iter_queue"))?;
        queue.push((item.index, item.value.to_vec()));
    }
    let mut back = Queue::new();
    for item in store.iter_queue(name).rev() {
        let item = item.map_err(|e| what(e, "iter_queue().rev()"))?;
        back.push((item.index, item.value.to_vec()));
    }
    back.reverse();
    let len = store.queue_len(name).map_err(|e| what(e, "queue_len"))?;
    let head = store
        .peek_queue_head(name)
        .map_err(|e| what(e, "peek_queue_head"))?
        .map(|i| (i.index, i.value.to_vec()));
    let tail = store
        .peek_queue_tail(name)
        .map_err(|e| what(e, "peek_queue_tail"))?
        .map(|i| (i.index, i.value.to_vec()));
    let ordered = queue.windows(2).all(|w| w[0].0 < w[1].0);
    if back != queue
        || !ordered
        || len != queue.len() as u64
        || head.as_ref() != queue.first()
        || tail.as_ref() != queue.last()
    {
        return Err(format!(
            "queue {:?} reads differently: iter {}, rev {}, len {len}, head {:?}, tail {:?}",
            show(name),
            queue_labels(&queue),
            queue_labels(&back),
            head.map(|(i, _)| i),
            tail.map(|(i, _)| i),
        ));
    }
    Ok(queue)
}

/// A recovered store still works: a new key, a removal, list and queue operations, a
/// sync; a clean shutdown, after which the reopen trusts the rows and holds the same.
fn exercise_store(
    dir: &Dir,
    store: ShardedStore,
    mut want: Model,
    truth: &Truth,
) -> Result<(), String> {
    let fail = |what: &str, e: accretion::Error| format!("{what} after recovery: {e}");
    let mut ops = vec![
        Op::Set(b"after-crash".to_vec(), b"recovered".to_vec()),
        Op::ListSet {
            list: b"list-0".to_vec(),
            key: b"after-crash".to_vec(),
            value: b"recovered".to_vec(),
            promote: false,
        },
        Op::ListPop(b"list-1".to_vec(), true),
        Op::QueuePush(b"queue-0".to_vec(), b"recovered".to_vec(), false),
        Op::QueuePop(b"queue-1".to_vec(), true),
        Op::QueuePush(b"queue-1".to_vec(), b"recovered".to_vec(), true),
    ];
    if let Some(k) = want.kv.keys().next() {
        ops.push(Op::Remove(k.clone()));
    }
    for op in &ops {
        apply(&store, &mut want, op).map_err(|e| format!("after recovery: {e}"))?;
    }
    store.sync().map_err(|e| fail("sync", e))?;
    store.close().map_err(|e| fail("close", e))?;
    let store = ShardedStore::open(dir, NAME, options())
        .map_err(|e| format!("reopen after recovery: {e}"))?;
    let rebuilt = store.stats().rebuilt_at_open;
    if rebuilt > 0 {
        return Err(format!(
            "reopened after a clean shutdown, {rebuilt} shards were rebuilt"
        ));
    }
    let mut known = Truth {
        ops: Vec::new(),
        keys: BTreeMap::new(),
        lists: BTreeMap::new(),
        items: truth.items.clone(),
        queues: BTreeMap::new(),
        never: truth.never.clone(),
    };
    for k in truth.keys.keys().chain([&b"after-crash".to_vec()]) {
        known.keys.insert(k.clone(), Timeline::new());
    }
    // The collections written above, whether or not the workload had written them.
    let lists = [b"list-0".to_vec(), b"list-1".to_vec()];
    for name in truth.lists.keys().chain(&lists) {
        known.lists.insert(name.clone(), Timeline::new());
    }
    known
        .items
        .entry(b"list-0".to_vec())
        .or_default()
        .insert(b"after-crash".to_vec());
    let queues = [b"queue-0".to_vec(), b"queue-1".to_vec()];
    for name in truth.queues.keys().chain(&queues) {
        known.queues.insert(name.clone(), Timeline::new());
    }
    let again =
        read_all(&store, &known).map_err(|e| format!("after recovery and a reopen: {e}"))?;
    if again != want {
        return Err(format!(
            "after recovery, writes and a reopen: {}",
            diff(&again, &want)
        ));
    }
    Ok(())
}

/// The first few differences between `got` and `want`.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = Vec::new();
    let keys: BTreeSet<&Bytes> = got.kv.keys().chain(want.kv.keys()).collect();
    for k in keys {
        let (g, w) = (got.kv.get(k), want.kv.get(k));
        if g != w {
            out.push(format!(
                "key {:?}: {} instead of {}",
                show(k),
                g.map_or("nothing".into(), |v| label(v)),
                w.map_or("nothing".into(), |v| label(v))
            ));
        }
    }
    let lists: BTreeSet<&Bytes> = got.lists.keys().chain(want.lists.keys()).collect();
    for l in lists {
        let (g, w) = (got.list(l), want.list(l));
        if g != w {
            out.push(format!(
                "list {:?}: {} instead of {}",
                show(l),
                list_labels(&g),
                list_labels(&w)
            ));
        }
    }
    let queues: BTreeSet<&Bytes> = got.queues.keys().chain(want.queues.keys()).collect();
    for q in queues {
        let (g, w) = (got.queue(q), want.queue(q));
        if g != w {
            out.push(format!(
                "queue {:?}: {} instead of {}",
                show(q),
                queue_labels(&g),
                queue_labels(&w)
            ));
        }
    }
    let n = out.len();
    out.truncate(4);
    format!("{} ({n} differences)", out.join("; "))
}

/// Runs `op` on `store` and on `model`, checking what the store returns against the
/// model.
fn apply(store: &ShardedStore, model: &mut Model, op: &Op) -> Result<(), String> {
    let fail = |what: &str, e: accretion::Error| format!("{what}: {e}");
    let same = |what: &str, got: Option<&[u8]>, want: Option<&Bytes>| {
        if got == want.map(|v| &v[..]) {
            Ok(())
        } else {
            Err(format!(
                "{what} returned {}, the model has {}",
                got.map_or("nothing".into(), label),
                want.map_or("nothing".into(), |v| label(v))
            ))
        }
    };
    match op {
        Op::Set(k, v) => {
            let old = store.set(k, v).map_err(|e| fail("set", e))?;
            same("set", old.as_deref(), model.kv.get(k))?;
            model.kv.insert(k.clone(), v.clone());
        }
        Op::Remove(k) => {
            let old = store.remove(k).map_err(|e| fail("remove", e))?;
            same("remove", old.as_deref(), model.kv.get(k))?;
            model.kv.remove(k);
        }
        Op::Replace {
            key,
            value,
            expected,
        } => {
            let r = store
                .replace(key, value, expected)
                .map_err(|e| fail("replace", e))?;
            let now = model.kv.get(key);
            match r {
                Replace::Replaced(old) if now == Some(expected) && old == expected[..] => {
                    model.kv.insert(key.clone(), value.clone());
                }
                Replace::WrongValue(cur) if now.is_some_and(|n| n != expected && cur == n[..]) => {}
                Replace::Absent if now.is_none() => {}
                other => return Err(format!("replace returned {other:?} against the model")),
            }
        }
        Op::GetOrCreate(k, v) => {
            match store
                .get_or_create(k, v)
                .map_err(|e| fail("get_or_create", e))?
            {
                GetOrCreate::Created(new) if !model.kv.contains_key(k) && new == v[..] => {
                    model.kv.insert(k.clone(), v.clone());
                }
                GetOrCreate::Existing(cur) => same("get_or_create", Some(&cur), model.kv.get(k))?,
                other => {
                    return Err(format!(
                        "get_or_create returned {other:?} against the model"
                    ));
                }
            }
        }
        Op::Clear => {
            store.clear().map_err(|e| fail("clear", e))?;
            *model = Model::default();
        }
        Op::ListSet {
            list,
            key,
            value,
            promote,
        } => {
            let old = if *promote {
                store.set_in_list_promoting(list, key, value)
            } else {
                store.set_in_list(list, key, value)
            }
            .map_err(|e| fail("set_in_list", e))?;
            let items = model.lists.entry(list.clone()).or_default();
            let at = items.iter().position(|(k, _)| k == key);
            same("set_in_list", old.as_deref(), at.map(|i| &items[i].1))?;
            match at {
                Some(i) if *promote => {
                    items.remove(i);
                    items.push((key.clone(), value.clone()));
                }
                Some(i) => items[i].1 = value.clone(),
                None => items.push((key.clone(), value.clone())),
            }
        }
        Op::ListReplace {
            list,
            key,
            value,
            expected,
        } => {
            let r = store
                .replace_in_list(list, key, value, expected)
                .map_err(|e| fail("replace_in_list", e))?;
            let items = model.lists.entry(list.clone()).or_default();
            let at = items.iter().position(|(k, _)| k == key);
            match (r, at) {
                (Replace::Replaced(old), Some(i))
                    if items[i].1 == *expected && old == expected[..] =>
                {
                    items[i].1 = value.clone();
                }
                (Replace::WrongValue(cur), Some(i))
                    if items[i].1 != *expected && cur == items[i].1[..] => {}
                (Replace::Absent, None) => {}
                (other, _) => {
                    return Err(format!(
                        "replace_in_list returned {other:?} against the model"
                    ));
                }
            }
        }
        Op::ListRemove(list, key) => {
            let old = store
                .remove_from_list(list, key)
                .map_err(|e| fail("remove_from_list", e))?;
            let items = model.lists.entry(list.clone()).or_default();
            let at = items.iter().position(|(k, _)| k == key);
            same("remove_from_list", old.as_deref(), at.map(|i| &items[i].1))?;
            if let Some(i) = at {
                items.remove(i);
            }
        }
        Op::ListPop(list, head) => {
            let got = if *head {
                store.pop_list_head(list)
            } else {
                store.pop_list_tail(list)
            }
            .map_err(|e| fail("pop_list", e))?
            .map(|i| (i.key.to_vec(), i.value.to_vec()));
            let items = model.lists.entry(list.clone()).or_default();
            let want = match (*head, items.is_empty()) {
                (_, true) => None,
                (true, false) => Some(items.remove(0)),
                (false, false) => items.pop(),
            };
            if got != want {
                return Err(format!(
                    "pop_list (head: {head}) returned {:?}, the model has {:?}",
                    got.map(|(k, _)| show(&k)),
                    want.map(|(k, _)| show(&k))
                ));
            }
        }
        Op::ListDiscard(list) => {
            let existed = store
                .discard_list(list)
                .map_err(|e| fail("discard_list", e))?;
            let want = model.lists.remove(list).is_some_and(|l| !l.is_empty());
            if existed != want {
                return Err(format!("discard_list returned {existed}, the model {want}"));
            }
        }
        Op::ListCompact(list) => {
            store
                .compact_list(list)
                .map_err(|e| fail("compact_list", e))?;
        }
        Op::QueuePush(queue, value, head) => {
            let index = if *head {
                store.push_to_queue_head(queue, value)
            } else {
                store.push_to_queue_tail(queue, value)
            }
            .map_err(|e| fail("push_to_queue", e))?;
            let entries = model.queues.entry(queue.clone()).or_default();
            // Indices are the store's to choose (never one given out before while the
            // queue is not discarded); they must keep the queue's order.
            let in_order = match (entries.first(), entries.last()) {
                (None, _) | (_, None) => true,
                (Some(f), _) if *head => index < f.0,
                (_, Some(l)) => index > l.0,
            };
            if !in_order {
                return Err(format!(
                    "push_to_queue (head: {head}) returned index {index}, out of the queue's \
                     order"
                ));
            }
            if *head {
                entries.insert(0, (index, value.clone()));
            } else {
                entries.push((index, value.clone()));
            }
        }
        Op::QueuePop(queue, head) => {
            let got = if *head {
                store.pop_queue_head(queue)
            } else {
                store.pop_queue_tail(queue)
            }
            .map_err(|e| fail("pop_queue", e))?
            .map(|i| (i.index, i.value.to_vec()));
            let entries = model.queues.entry(queue.clone()).or_default();
            let want = match (*head, entries.is_empty()) {
                (_, true) => None,
                (true, false) => Some(entries.remove(0)),
                (false, false) => entries.pop(),
            };
            if got != want {
                return Err(format!(
                    "pop_queue (head: {head}) returned {:?}, the model has {:?}",
                    got.map(|(i, _)| i),
                    want.map(|(i, _)| i)
                ));
            }
        }
        Op::QueueRemove(queue, index) => {
            let old = store
                .remove_from_queue(queue, *index)
                .map_err(|e| fail("remove_from_queue", e))?;
            let entries = model.queues.entry(queue.clone()).or_default();
            let at = entries.iter().position(|(i, _)| i == index);
            same(
                "remove_from_queue",
                old.as_deref(),
                at.map(|i| &entries[i].1),
            )?;
            if let Some(i) = at {
                entries.remove(i);
            }
        }
        Op::QueueDiscard(queue) => {
            let existed = store
                .discard_queue(queue)
                .map_err(|e| fail("discard_queue", e))?;
            let want = model.queues.remove(queue).is_some_and(|q| !q.is_empty());
            if existed != want {
                return Err(format!(
                    "discard_queue returned {existed}, the model {want}"
                ));
            }
        }
    }
    model.lists.retain(|_, l| !l.is_empty());
    model.queues.retain(|_, q| !q.is_empty());
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
/// per structure's lanes or per register, ordered by each group's last flush; it commits
/// at its last group (a `sync` or `close` has returned once every group is flushed).
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
        commit: last.len().saturating_sub(1),
        groups: last
            .into_iter()
            .map(|(pattern, written, _)| Group {
                patterns: vec![pattern],
                written,
            })
            .collect(),
    }
}

/// A point the hook took at a register's flush: the snapshot, and the flushes since the
/// point before (that one included).
type Captured = (Snapshot, Vec<String>);

/// What the hook shares with the workload.
struct WatchState {
    /// File and range flushes (relative paths, not of `.tmp` files) since the last point.
    flushed: Vec<String>,
    captured: Vec<Captured>,
    /// Take points at register flushes (off inside a sync or a close: one step each).
    capture: bool,
    /// The last point's snapshot, which new ones share unchanged files with.
    base: Option<Snapshot>,
}

struct Watch {
    state: Arc<Mutex<WatchState>>,
    _hook: HookGuard,
}

impl Watch {
    fn install(root: &Path) -> Watch {
        let state = Arc::new(Mutex::new(WatchState {
            flushed: Vec::new(),
            captured: Vec::new(),
            capture: true,
            base: None,
        }));
        let hook = {
            let (root, state) = (root.to_path_buf(), Arc::clone(&state));
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
                if st.capture && !range && group_of(&rel).1 == Written::AtFlush {
                    let snapshot = Snapshot::take_sharing(&root, st.base.as_ref());
                    st.base = Some(snapshot.clone());
                    let flushed = std::mem::take(&mut st.flushed);
                    st.captured.push((snapshot, flushed));
                }
                None
            })
        };
        Watch { state, _hook: hook }
    }

    fn take(&self) -> (Vec<Captured>, Vec<String>) {
        let mut st = self.state.lock();
        (
            std::mem::take(&mut st.captured),
            std::mem::take(&mut st.flushed),
        )
    }

    fn set_capture(&self, on: bool) {
        self.state.lock().capture = on;
    }

    fn set_base(&self, snapshot: &Snapshot) {
        self.state.lock().base = Some(snapshot.clone());
    }
}

// ---------------------------------------------------------------------------------------
// The workload side

/// What a recorded point follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Open,
    /// Mid-work: no flush since the point before.
    Mid,
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
    /// Operations begun by the point (an operation in progress at a register flush
    /// counts: its state may be on disk).
    ops: usize,
    /// The snapshot holds exactly the state after `ops` operations (it was taken between
    /// actions).
    exact: bool,
}

/// What a workload did, for its summary and the scenario's own checks.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    splits: u64,
    compactions: u64,
    merges: u64,
    clears: usize,
    closes: usize,
    syncs: usize,
    most_shards: u64,
    device_images: usize,
}

/// A ShardedStore at work, with the history of its directory and the model of every state.
struct Workload {
    dir: Dir,
    store: Option<ShardedStore>,
    device: DiskModel,
    watch: Watch,
    history: History,
    points: Vec<PointInfo>,
    /// Per sync (index = sync number): the operations it made durable.
    synced: Vec<usize>,
    truth: Truth,
    model: Model,
    rng: StdRng,
    next_key: usize,
    serial: u64,
    counts: Counts,
    /// Keys ever written, for overwrites and removals.
    key_pool: Vec<Bytes>,
}

impl Workload {
    /// Opens a new store at `root`.
    fn open(root: &Path, rng: &mut impl Rng) -> Workload {
        let dir = Dir::open(root).expect("open the directory");
        let store = ShardedStore::open(&dir, NAME, options()).expect("open the store");
        // Everything on the device now is durable (a new store is created durably).
        let device = DiskModel::start(root);
        let watch = Watch::install(root);
        let history = History::new(root);
        watch.set_base(&history.point(0).snapshot);
        Workload {
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
            truth: Truth {
                ops: Vec::new(),
                keys: BTreeMap::new(),
                lists: BTreeMap::new(),
                items: BTreeMap::new(),
                queues: BTreeMap::new(),
                never: (0..10).map(|i| format!("never-{i}").into_bytes()).collect(),
            },
            model: Model::default(),
            rng: StdRng::seed_from_u64(rng.random()),
            next_key: 0,
            serial: 0,
            counts: Counts::default(),
            key_pool: Vec::new(),
        }
    }

    fn store(&self) -> &ShardedStore {
        self.store.as_ref().expect("the store is open")
    }

    /// A value unique to this write: its serial number, then `len` random bytes.
    fn value(&mut self, len: usize) -> Bytes {
        self.serial += 1;
        let mut v = format!("#{}:", self.serial).into_bytes();
        v.extend(random_bytes(len, &mut self.rng));
        v
    }

    fn fresh_key(&mut self) -> Bytes {
        self.next_key += 1;
        let mut key = format!("key-{:05}", self.next_key).into_bytes();
        if self.rng.random_bool(0.3) {
            key.extend(random_bytes(self.rng.random_range(1..30), &mut self.rng));
        }
        self.key_pool.push(key.clone());
        key
    }

    /// A key present in the store, if any.
    fn present_key(&mut self) -> Option<Bytes> {
        if self.model.kv.is_empty() {
            return None;
        }
        for _ in 0..64 {
            let k = &self.key_pool[self.rng.random_range(0..self.key_pool.len())];
            if self.model.kv.contains_key(k) {
                return Some(k.clone());
            }
        }
        self.model.kv.keys().next().cloned()
    }

    /// Runs `op` on the store and the model, records the new states of what it changed,
    /// then records what it flushed.
    fn write(&mut self, op: Op) {
        let store = self.store.as_ref().expect("the store is open");
        let before = self.model.clone();
        if let Err(e) = apply(store, &mut self.model, &op) {
            panic!("operation {} ({op:?}): {e}", self.truth.ops.len());
        }
        self.truth.ops.push(op);
        let n = self.truth.ops.len();
        let keys: BTreeSet<&Bytes> = before.kv.keys().chain(self.model.kv.keys()).collect();
        for k in keys {
            let (b, a) = (before.kv.get(k), self.model.kv.get(k));
            if b != a || !self.truth.keys.contains_key(k) {
                self.truth
                    .keys
                    .entry(k.clone())
                    .or_insert_with(Timeline::new)
                    .record(n, a.cloned());
            }
        }
        let lists: BTreeSet<&Bytes> = before.lists.keys().chain(self.model.lists.keys()).collect();
        for l in lists {
            let (b, a) = (before.list(l), self.model.list(l));
            for (k, _) in &a {
                self.truth
                    .items
                    .entry(l.clone())
                    .or_default()
                    .insert(k.clone());
            }
            if b != a {
                self.truth
                    .lists
                    .entry(l.clone())
                    .or_insert_with(Timeline::new)
                    .record(n, a);
            }
        }
        let queues: BTreeSet<&Bytes> = before
            .queues
            .keys()
            .chain(self.model.queues.keys())
            .collect();
        for q in queues {
            let (b, a) = (before.queue(q), self.model.queue(q));
            if b != a {
                self.truth
                    .queues
                    .entry(q.clone())
                    .or_insert_with(Timeline::new)
                    .record(n, a);
            }
        }
        self.settle(Kind::Action);
    }

    fn sync(&mut self) {
        self.watch.set_capture(false);
        self.store().sync().expect("sync");
        self.watch.set_capture(true);
        self.counts.syncs += 1;
        self.settle(Kind::Sync);
    }

    /// Maintenance that changes no content: compaction or merges.
    fn maintain(&mut self, merge: bool) {
        if merge {
            self.store()
                .merge_small_shards()
                .expect("merge_small_shards");
        } else {
            self.store().compact().expect("compact");
        }
        self.settle(Kind::Action);
    }

    /// A clean shutdown, then a reopen (which trusts the rows).
    fn close_and_reopen(&mut self) {
        self.add_stats();
        self.watch.set_capture(false);
        self.store.take().expect("open").close().expect("close");
        self.watch.set_capture(true);
        self.counts.closes += 1;
        self.settle(Kind::Close);
        let store = ShardedStore::open(&self.dir, NAME, options()).expect("reopen");
        assert_eq!(
            store.stats().rebuilt_at_open,
            0,
            "a clean reopen rebuilt shards"
        );
        self.store = Some(store);
        self.settle(Kind::Action);
    }

    fn add_stats(&mut self) {
        let s = self.store().stats();
        self.counts.splits += s.splits;
        self.counts.compactions += s.compactions;
        self.counts.merges += s.merges;
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

    /// Records the points the last action made (see the module docs).
    fn settle(&mut self, kind: Kind) {
        let ops = self.truth.ops.len();
        let durable = *self.synced.last().expect("a sync");
        let (captured, rest) = self.watch.take();
        let synced = matches!(kind, Kind::Sync | Kind::Close);
        let recorded = synced || !captured.is_empty() || !rest.is_empty();
        for (snapshot, flushed) in captured {
            self.history.synced_with(snapshot);
            self.push_point(Kind::Register, order_of(&flushed), false);
            self.synced.push(durable);
        }
        if synced || !rest.is_empty() {
            self.history.synced();
            self.push_point(kind, order_of(&rest), true);
            self.synced.push(if synced { ops } else { durable });
        }
        if let Some(store) = &self.store {
            self.counts.most_shards = self.counts.most_shards.max(store.stats().shards);
        }
        if recorded {
            self.device_image_now();
        }
    }

    /// Now and then, a power-loss image of the device as the flushes so far left it: at
    /// least every operation the last sync made durable, at most every one done; exactly
    /// all of them if every unflushed unit reached the disk.
    fn device_image_now(&mut self) {
        if !self.rng.random_bool(DEVICE_AT_POINT) {
            return;
        }
        let granularity = if self.rng.random_bool(0.5) {
            Granularity::Page
        } else {
            Granularity::Sector
        };
        let mix = match self.rng.random_range(0..6) {
            0 => 0.0,
            1 => 1.0,
            _ => self.rng.random_range(0.05..0.95),
        };
        let image = self.device.power_loss(&mut self.rng, granularity, mix);
        let ops = self.truth.ops.len();
        let allowed = Allowed {
            lo: *self.synced.last().expect("a sync"),
            hi: ops,
            exact: (mix == 1.0).then_some(ops),
            trusted: false,
        };
        self.counts.device_images += 1;
        let exercise = self.counts.device_images.is_multiple_of(2);
        if let Err(e) = self.truth.check(image.path(), allowed, exercise) {
            panic!(
                "power-loss image of the device at point {} ({granularity:?}, mix {mix:.2}): \
                 expected the states after {}..={} operations (exactly {:?}): {e}",
                self.points.len() - 1,
                allowed.lo,
                allowed.hi,
                allowed.exact
            );
        }
    }

    fn finish(mut self) -> Recorded {
        self.add_stats();
        drop(self.store.take());
        Recorded {
            history: self.history,
            points: self.points,
            synced: self.synced,
            summary: format!(
                "{} operations, {} keys, {} lists and {} queues at the end, {:?}",
                self.truth.ops.len(),
                self.model.kv.len(),
                self.model.lists.len(),
                self.model.queues.len(),
                self.counts
            ),
            counts: self.counts,
            truth: self.truth,
        }
    }
}

/// A workload's shape: `ops` operations; the key count it drives towards changes over
/// the run through `targets`; a sync every `sync_every` operations (a random count in the
/// range); a clear at operation `clear_at`; a clean shutdown and reopen at `close_at`;
/// an explicit compaction every `compact_every`, and merges of small shards after every
/// phase of `targets` and every `merge_every`.
struct Plan {
    ops: usize,
    targets: &'static [usize],
    sync_every: (usize, usize),
    clear_at: usize,
    close_at: usize,
    compact_every: usize,
    merge_every: usize,
}

fn kv_value_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100) {
        0..80 => rng.random_range(10..300),
        80..97 => rng.random_range(300..1_500),
        _ => rng.random_range(1_500..6_000),
    }
}

/// One random operation on the key-value map, growing it while under `target` keys.
fn kv_op(w: &mut Workload, target: usize) -> Op {
    let grow = w.model.kv.len() < target;
    let roll = w.rng.random_range(0..100);
    let present = w.present_key();
    let len = kv_value_len(&mut w.rng);
    match (roll, present) {
        (r, _) if r < if grow { 60 } else { 8 } => {
            let k = w.fresh_key();
            Op::Set(k, w.value(len))
        }
        (r, Some(k)) if r < if grow { 68 } else { 60 } => Op::Remove(k),
        (r, Some(k)) if r < 72 => {
            let expected = if w.rng.random_bool(0.8) {
                w.model.kv[&k].clone()
            } else {
                b"not it".to_vec()
            };
            Op::Replace {
                key: k,
                value: w.value(len),
                expected,
            }
        }
        (r, present) if r < 76 => {
            let k = match present {
                Some(k) if w.rng.random_bool(0.5) => k,
                _ => w.fresh_key(),
            };
            Op::GetOrCreate(k, w.value(len))
        }
        (_, Some(k)) => Op::Set(k, w.value(len)),
        (_, None) => {
            let k = w.fresh_key();
            Op::Set(k, w.value(len))
        }
    }
}

/// One random list or queue operation.
fn collection_op(w: &mut Workload) -> Op {
    let rng = &mut w.rng;
    if rng.random_bool(0.55) {
        let list = format!("list-{}", rng.random_range(0..LISTS)).into_bytes();
        let items = w.model.list(&list);
        let key = format!("item-{:02}", rng.random_range(0..LIST_ITEM_KEYS)).into_bytes();
        let present = (!items.is_empty()).then(|| items[rng.random_range(0..items.len())].clone());
        let roll = rng.random_range(0..100);
        let len = rng.random_range(5..150);
        match roll {
            0..45 => Op::ListSet {
                list,
                key,
                value: w.value(len),
                promote: false,
            },
            45..58 => Op::ListSet {
                list,
                key: present.map_or(key, |(k, _)| k),
                value: w.value(len),
                promote: true,
            },
            58..64 => {
                let (key, expected) = match present {
                    Some((k, v)) if w.rng.random_bool(0.8) => (k, v),
                    Some((k, _)) => (k, b"not it".to_vec()),
                    None => (key, b"absent".to_vec()),
                };
                Op::ListReplace {
                    list,
                    key,
                    value: w.value(len),
                    expected,
                }
            }
            64..80 => Op::ListRemove(list, present.map_or(key, |(k, _)| k)),
            80..94 => Op::ListPop(list, rng.random_bool(0.5)),
            94..97 => Op::ListCompact(list),
            _ => Op::ListDiscard(list),
        }
    } else {
        let queue = format!("queue-{}", rng.random_range(0..QUEUES)).into_bytes();
        let entries = w.model.queue(&queue);
        let roll = rng.random_range(0..100);
        match roll {
            0..50 => {
                let len = rng.random_range(5..200);
                let head = rng.random_bool(0.3);
                Op::QueuePush(queue, w.value(len), head)
            }
            50..82 => Op::QueuePop(queue, rng.random_bool(0.6)),
            82..98 => {
                let index = if !entries.is_empty() && rng.random_bool(0.9) {
                    entries[rng.random_range(0..entries.len())].0
                } else {
                    QUEUE_START.wrapping_add(rng.random_range(0..1000))
                };
                Op::QueueRemove(queue, index)
            }
            _ => Op::QueueDiscard(queue),
        }
    }
}

fn run(w: &mut Workload, plan: &Plan) {
    let mut until_sync = w.rng.random_range(plan.sync_every.0..=plan.sync_every.1);
    let phases = plan.targets.len();
    for i in 0..plan.ops {
        if i == plan.clear_at {
            w.write(Op::Clear);
            w.counts.clears += 1;
        }
        let target = plan.targets[i * phases / plan.ops];
        let op = if w.rng.random_bool(0.6) {
            kv_op(w, target)
        } else {
            collection_op(w)
        };
        w.write(op);
        if w.rng.random_bool(0.02) {
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
        let phase_end = (i + 1) * phases / plan.ops != i * phases / plan.ops;
        if phase_end || i % plan.merge_every == plan.merge_every - 1 {
            if w.rng.random_bool(0.3) {
                w.sync();
            }
            w.maintain(true);
        }
        if i % plan.compact_every == plan.compact_every - 1 {
            w.maintain(false);
        }
        if i == plan.close_at {
            w.close_and_reopen();
        }
    }
    w.mid();
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
    /// include a register, the rest at any step; the cut is random over the step's groups
    /// and one past them.
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

    /// The crashes to check: first every cut of every clean shutdown and of the point
    /// after it, each with nothing, everything or half of the unsynced units on disk (in
    /// turn); then random ones, `images` of them.
    fn crashes(&self, rng: &mut impl Rng, images: usize) -> Vec<Crash> {
        let mut out = Vec::new();
        for at in 1..self.points.len() {
            let p = &self.points[at];
            let after_close = self.points[at - 1].kind == Kind::Close && p.kind != Kind::Mid;
            if p.kind == Kind::Close || after_close {
                let mixes = [Mix::Old, Mix::New, Mix::Random(0.5)];
                for cut in 0..=p.order.len() {
                    let mut crash = Crash::random(rng, at, Some(cut));
                    crash.mix = mixes[(cut + out.len()) % mixes.len()];
                    out.push(crash);
                }
            }
        }
        for n in 0..images {
            out.push(self.random_crash(rng, n));
        }
        out
    }

    /// Builds the crash images of [`crashes`](Self::crashes) and checks each; prints a
    /// tally per point kind.
    fn check_images(&self, replay: &mut Replay, images: usize) {
        let kinds = [
            Kind::Sync,
            Kind::Close,
            Kind::Register,
            Kind::Action,
            Kind::Mid,
        ];
        // Per kind of point: images, a newer state than the durable one recovered,
        // shards rebuilt at open.
        let mut tally = [(0usize, 0usize, 0u64); 5];
        let crashes = self.crashes(&mut replay.rng, images);
        let images = crashes.len();
        for (n, crash) in crashes.into_iter().enumerate() {
            let point = &self.points[crash.at];
            replay.context = format!("checking image {n} ({crash}, after {:?})", point.kind);
            let image = self.history.image(&crash, &point.order);
            let allowed = self.allowed(&crash);
            match self.truth.check(image.path(), allowed, n % 3 == 0) {
                Ok(found) => {
                    let t = &mut tally[kinds.iter().position(|&k| k == point.kind).unwrap_or(4)];
                    t.0 += 1;
                    t.1 += usize::from(found.newer);
                    t.2 += found.rebuilt;
                }
                Err(e) => panic!(
                    "{}: expected the states after {}..={} operations (exactly {:?}): {e}",
                    replay.context, allowed.lo, allowed.hi, allowed.exact
                ),
            }
        }
        let count = |k: Kind| self.points.iter().filter(|p| p.kind == k).count();
        eprintln!(
            "{}: {images} images over {} points ({} syncs, {} closes, {} register flushes \
             inside actions, {} other actions that flushed; {}), seed {}: (images, newer \
             than durable recovered, shards rebuilt) after sync, close, register flush, \
             action, mid-work: {tally:?}",
            replay.test,
            self.points.len(),
            count(Kind::Sync),
            count(Kind::Close),
            count(Kind::Register),
            count(Kind::Action),
            self.summary,
            replay.seed
        );
    }

    /// The checks are not vacuous: the disk of a sync taken for the disk of the next one
    /// (a sync that returned before its data was flushed) lacks durable writes, the disk
    /// of a later sync holds writes not made yet at an earlier one, and a list or queue
    /// model one item off is noticed.
    fn checks_catch_lost_writes(&mut self) {
        let truth = &self.truth;
        let changed = |lo: usize, hi: usize| {
            changed_in(truth.keys.values(), lo, hi)
                && changed_in(truth.lists.values(), lo, hi)
                && changed_in(truth.queues.values(), lo, hi)
                && truth
                    .lists
                    .values()
                    .any(|t| state_index(&t.changes, lo).is_some())
                && truth
                    .queues
                    .values()
                    .any(|t| state_index(&t.changes, lo).is_some())
        };
        let s = (1..self.synced.len() - 1)
            .find(|&s| {
                self.points[self.history.after_sync_point(s)].kind == Kind::Sync
                    && self.points[self.history.after_sync_point(s + 1)].kind == Kind::Sync
                    && changed(self.synced[s], self.synced[s + 1])
            })
            .expect(
                "two syncs in a row with writes of each kind between, a list and a queue not empty",
            );
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
            if self
                .truth
                .check(image.path(), exact(claimed), false)
                .is_ok()
            {
                panic!("sync {disk}'s disk passed for the state after {claimed} operations");
            }
        }
        // A model one item off: a list one item short, a queue entry at another index.
        let image = Image::of(self.history.after_sync(s));
        let (name, i) = self
            .truth
            .lists
            .iter()
            .find_map(|(name, t)| Some((name.clone(), state_index(&t.changes, at)?)))
            .expect("a list not empty at the sync");
        let changes = &mut self.truth.lists.get_mut(&name).expect("the list").changes;
        let kept = changes[i].1.pop().expect("an item");
        let result = self.truth.check(image.path(), exact(at), false);
        let changes = &mut self.truth.lists.get_mut(&name).expect("the list").changes;
        changes[i].1.push(kept);
        let err = result.err().expect("a list model one item short passed");
        assert!(err.contains("list"), "unexpected failure: {err}");
        let (name, i) = self
            .truth
            .queues
            .iter()
            .find_map(|(name, t)| Some((name.clone(), state_index(&t.changes, at)?)))
            .expect("a queue not empty at the sync");
        let changes = &mut self.truth.queues.get_mut(&name).expect("the queue").changes;
        changes[i].1[0].0 -= 1;
        let result = self.truth.check(image.path(), exact(at), false);
        let changes = &mut self.truth.queues.get_mut(&name).expect("the queue").changes;
        changes[i].1[0].0 += 1;
        let err = result.err().expect("a queue model one index off passed");
        assert!(err.contains("queue"), "unexpected failure: {err}");
        self.truth
            .check(image.path(), exact(at), false)
            .expect("the models restored pass again");
    }
}

/// Whether one of `timelines` changed after operations `lo..hi`.
fn changed_in<'a, T: 'a>(
    mut timelines: impl Iterator<Item = &'a Timeline<T>>,
    lo: usize,
    hi: usize,
) -> bool {
    timelines.any(|t| t.changes.iter().any(|&(n, _)| lo < n && n <= hi))
}

/// The change of `changes` that holds the state after `at` operations, if that state is
/// not empty.
fn state_index<T>(changes: &[(usize, Vec<T>)], at: usize) -> Option<usize> {
    changes
        .iter()
        .rposition(|(n, _)| *n <= at)
        .filter(|&i| !changes[i].1.is_empty())
}

// ---------------------------------------------------------------------------------------
// The scenario

/// About 3,000 operations, 60% on the key-value map (grown to about 250 keys, shrunk to
/// 40, grown again) and 40% on five lists and four queues, in 20 KiB shards: splits and
/// compactions inside writes, explicit compactions, merges of small shards after the
/// shrink, a clean shutdown and reopen, a clear, syncs every 3 to 40 operations.
#[test]
fn sharded_store_crash_images() {
    let mut replay = Replay::new("sharded_store_crash_images");
    let tmp = tempfile::Builder::new()
        .prefix("accretion-crash-work-")
        .tempdir_in(crate::harness::scratch_root())
        .expect("temporary directory");
    let plan = Plan {
        ops: 3_000,
        targets: &[250, 250, 40, 40, 200],
        sync_every: (3, 40),
        clear_at: 2_500,
        close_at: 1_400,
        compact_every: 250,
        merge_every: 400,
    };
    let mut w = Workload::open(tmp.path(), &mut replay.rng);
    run(&mut w, &plan);
    let mut rec = w.finish();
    let c = rec.counts;
    assert!(
        c.splits >= 5 && c.compactions >= 2 && c.merges >= 1 && c.clears == 1,
        "the workload missed some maintenance: {}",
        rec.summary
    );
    rec.check_images(&mut replay, CRASH_IMAGES);
    replay.context = "showing that the checks fail on wrong disks and models".into();
    rec.checks_catch_lost_writes();
}

/// A power loss after an unsynced write whose pointer word reached the disk but whose
/// record did not: the rebuild at open must not keep that pointer. (The rows' arrays
/// recover the length their last sync recorded, which only a clean shutdown writes;
/// a rebuild that compares its rows with what the arrays read, zeros past that length,
/// leaves stale words there, and then counts them in.)
#[test]
fn sharded_store_rebuild_drops_a_pointer_whose_record_was_lost() {
    let (tmp, dir) = crate::store();
    let store = ShardedStore::open(&dir, NAME, options()).expect("open");
    store.set(b"a", b"1").expect("set");
    store.sync().expect("sync");
    let synced = Snapshot::take(tmp.path());
    store.set(b"b", b"2").expect("set");
    let written = Snapshot::take(tmp.path());
    drop(store);
    // The disk of the sync, with the pointers' page of the later write on it.
    let rel = format!("{NAME}/s0/ptrs/cells-00.acc");
    let pointers = written.file(&rel).expect("the pointers' lane");
    let image = Image::of(&synced.with_file(&rel, pointers));
    let dir = open_dir(image.path()).expect("open the image");
    let store = ShardedStore::open(&dir, NAME, options()).expect("open the image's store");
    let got: Vec<_> = store
        .iter()
        .map(|e| e.map(|e| (e.key.to_vec(), e.value.to_vec())))
        .collect();
    assert!(
        matches!(&got[..], [Ok((k, v))] if k == b"a" && v == b"1"),
        "expected the synced key alone, found {got:?}"
    );
}
