//! A kill soak of the ShardedStore (CandyStore's crasher): a child runs a seeded sequence
//! of key-value sets and removes, list and queue operations on a store of small shards
//! (the map grows and shrinks in cycles, and every 1024th operation merges small shards,
//! so that splits, compactions and merges come every few thousand operations; kills
//! land in them), while the parent SIGKILLs it at random 10-300 ms after its start,
//! `KILLS` times; after each kill the parent reopens the store and checks it exactly
//! against a model.
//!
//! Operation `i` is a function of the round's seed and `i` alone, so the store's
//! contents after the first `n` operations (`state(n)`) are too. The child keeps a
//! progress marker in the store, the key-value key `progress`: the number `p` of the next
//! operation, and the length before it of the list or queue that operation `p` works on.
//! The child writes it after each operation returned; every write that returned survives
//! the kill (the store's contract, without any sync), and each write is atomic. So after
//! a kill with the marker at `p`, the store holds `state(p)` or `state(p + 1)` (operation
//! `p` returned, or landed in the kill, and the marker did not move yet), nothing else,
//! and the parent checks exactly that: every key-value entry, every list's items in
//! order with their values, every queue's entries with their indices. The next child
//! finishes operation `p` before anything else: a set, a remove, `set_in_list`, the
//! promoting set and `remove_from_list` leave the same contents when done twice, so it
//! does them again; a pop or a push changes its collection's length by one, so it does
//! them again only if the length is still the one the marker holds. The marker only
//! moves forward, and what the store holds never goes back (`state(p + 1)` once seen
//! stays). Half of the rounds check a copy of the store, so that the next child opens the
//! store as the kill left it and rebuilds its rows (and may be killed in that). At the
//! end a child runs a few thousand more operations unkilled and closes the store; the
//! reopen then holds exactly their result, and trusts the rows.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use accretion::{Dir, ShardedOptions, ShardedStore, ShardedValue};
use rand::Rng;

use crate::common::Seeded;
use crate::process::{ChildProc, copy_store, mix, report};

/// Kills of the soak, and the longest they may take.
const KILLS: usize = 100;
const KILLS_TIME_MAX: Duration = Duration::from_secs(150);
/// How long after its start a child is killed.
const KILL_AFTER_MS_MIN: u64 = 10;
const KILL_AFTER_MS_MAX: u64 = 300;
/// Operations the last child runs unkilled.
const FINAL_OPS: u64 = 3_000;
/// Operations a killed child runs at most (the parent kills it long before).
const OPS_MAX: u64 = 100_000_000;
/// Operations between two reports of a child.
const REPORT_EVERY: u64 = 256;
/// Operations of one cycle of the workload: the key-value map grows in its first half
/// and shrinks in its second, so that shards split, then merge, again and again.
const CYCLE_OPS: u64 = 16_384;
/// Every this many operations, one is `merge_small_shards`.
const MERGE_EVERY: u64 = 1_024;
/// Keys of the key-value map, lists (and items each), and queues the workload uses.
const KV_KEYS: u64 = 1_500;
const LISTS: u64 = 4;
const LIST_ITEMS: u64 = 80;
const QUEUES: u64 = 3;
/// The index of a new queue's first entry (lists.rs: indices start at 2^63, so that a
/// queue can grow at both ends, and are never given out twice while it exists).
const QUEUE_START: u64 = 1 << 63;
const STORE: &str = "soak";
const PROGRESS: &[u8] = b"progress";

/// Shards of 256 KiB, so that splits and compactions happen during the soak.
fn options() -> ShardedOptions {
    ShardedOptions {
        shard_bytes_max: 256 << 10,
        ..ShardedOptions::default()
    }
}

// ---------------------------------------------------------------------------------------
// The workload.

/// One operation. Keys and names are numbers, made into bytes by `kv_key`, `list_name`,
/// `item_key` and `queue_name`.
#[derive(Clone)]
enum Op {
    Set(u64, Vec<u8>),
    Remove(u64),
    ListSet(u64, u64, Vec<u8>),
    ListPromote(u64, u64, Vec<u8>),
    ListRemove(u64, u64),
    ListPopHead(u64),
    QueuePush(u64, Vec<u8>),
    QueuePopHead(u64),
    /// `merge_small_shards`, which leaves the contents as they are.
    Merge,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Set(k, v) => write!(f, "set key {k} to {} bytes", v.len()),
            Op::Remove(k) => write!(f, "remove key {k}"),
            Op::ListSet(l, j, v) => write!(f, "set item {j} of list {l} to {} bytes", v.len()),
            Op::ListPromote(l, j, v) => {
                write!(
                    f,
                    "set item {j} of list {l} to {} bytes, promoting",
                    v.len()
                )
            }
            Op::ListRemove(l, j) => write!(f, "remove item {j} of list {l}"),
            Op::ListPopHead(l) => write!(f, "pop the head of list {l}"),
            Op::QueuePush(q, v) => write!(f, "push {} bytes to queue {q}", v.len()),
            Op::QueuePopHead(q) => write!(f, "pop the head of queue {q}"),
            Op::Merge => write!(f, "merge small shards"),
        }
    }
}

/// A list or a queue.
#[derive(Clone, Copy, Debug)]
enum Collection {
    List(u64),
    Queue(u64),
}

impl Collection {
    fn len(self, store: &ShardedStore) -> u64 {
        match self {
            Collection::List(l) => store.list_len(&list_name(l)).unwrap(),
            Collection::Queue(q) => store.queue_len(&queue_name(q)).unwrap(),
        }
    }
}

/// Key `j`: `key-<j>` and 0..=30 dots, so that keys are of varied lengths.
fn kv_key(j: u64) -> Vec<u8> {
    let mut key = format!("key-{j}").into_bytes();
    key.resize(key.len() + (j as usize * 7) % 31, b'.');
    key
}

fn list_name(l: u64) -> Vec<u8> {
    format!("list-{l}").into_bytes()
}

fn item_key(j: u64) -> Vec<u8> {
    format!("item-{j}").into_bytes()
}

fn queue_name(q: u64) -> Vec<u8> {
    format!("queue-{q}").into_bytes()
}

/// `len` bytes of a tag naming operation `i`, repeated.
fn value(what: char, i: u64, len: u64) -> Vec<u8> {
    let tag = format!("{what}{i}|");
    tag.bytes().cycle().take(len as usize).collect()
}

/// Operation `i` of the workload of `seed`. In the first half of a cycle, sets (of up
/// to 500 bytes, and one in 40 of 2-6 KB) and removes balance at about seven eighths of
/// the keys present, over 600 KB: shards split. In the second half, sets (of up to 120
/// bytes) and removes balance at about a tenth of the keys: shards merge. List items
/// balance at about half of each list's, queues push as often as they pop.
fn op(seed: u64, i: u64) -> Op {
    if i % MERGE_EVERY == MERGE_EVERY - 1 {
        return Op::Merge;
    }
    let h = mix(seed ^ mix(i));
    let pick = (h >> 8) % 100;
    let a = (h >> 16) % 1_000_003;
    let len = (h >> 40) % 120;
    let growing = i % CYCLE_OPS < CYCLE_OPS / 2;
    let sets = if growing { 45 } else { 5 };
    match pick {
        _ if pick < sets => {
            let len = if !growing {
                len
            } else if (h >> 56).is_multiple_of(40) {
                2_000 + (h >> 20) % 4_000
            } else {
                (h >> 40) % 500
            };
            Op::Set(a % KV_KEYS, value('v', i, len))
        }
        _ if pick < 52 => Op::Remove(a % KV_KEYS),
        52..64 => Op::ListSet(a % LISTS, a / LISTS % LIST_ITEMS, value('l', i, len)),
        64..70 => Op::ListPromote(a % LISTS, a / LISTS % LIST_ITEMS, value('p', i, len)),
        70..76 => Op::ListRemove(a % LISTS, a / LISTS % LIST_ITEMS),
        76..82 => Op::ListPopHead(a % LISTS),
        82..91 => Op::QueuePush(a % QUEUES, value('q', i, len)),
        _ => Op::QueuePopHead(a % QUEUES),
    }
}

impl Op {
    /// The list or queue the operation works on.
    fn collection(&self) -> Option<Collection> {
        match *self {
            Op::Set(..) | Op::Remove(_) | Op::Merge => None,
            Op::ListSet(l, ..) | Op::ListPromote(l, ..) | Op::ListRemove(l, _) => {
                Some(Collection::List(l))
            }
            Op::ListPopHead(l) => Some(Collection::List(l)),
            Op::QueuePush(q, _) | Op::QueuePopHead(q) => Some(Collection::Queue(q)),
        }
    }

    /// For an operation that must not run twice: its collection, and how much the
    /// operation changes its length (when it is not empty, for a pop).
    fn counted(&self) -> Option<(Collection, i64)> {
        match *self {
            Op::ListPopHead(l) => Some((Collection::List(l), -1)),
            Op::QueuePush(q, _) => Some((Collection::Queue(q), 1)),
            Op::QueuePopHead(q) => Some((Collection::Queue(q), -1)),
            _ => None,
        }
    }

    fn run(&self, store: &ShardedStore) {
        match self {
            Op::Set(k, v) => drop(store.set(&kv_key(*k), v).unwrap()),
            Op::Remove(k) => drop(store.remove(&kv_key(*k)).unwrap()),
            Op::ListSet(l, j, v) => {
                drop(store.set_in_list(&list_name(*l), &item_key(*j), v).unwrap())
            }
            Op::ListPromote(l, j, v) => drop(
                store
                    .set_in_list_promoting(&list_name(*l), &item_key(*j), v)
                    .unwrap(),
            ),
            Op::ListRemove(l, j) => drop(
                store
                    .remove_from_list(&list_name(*l), &item_key(*j))
                    .unwrap(),
            ),
            Op::ListPopHead(l) => drop(store.pop_list_head(&list_name(*l)).unwrap()),
            Op::QueuePush(q, v) => drop(store.push_to_queue_tail(&queue_name(*q), v).unwrap()),
            Op::QueuePopHead(q) => drop(store.pop_queue_head(&queue_name(*q)).unwrap()),
            Op::Merge => drop(store.merge_small_shards().unwrap()),
        }
    }
}

/// What the store must hold: key-value entries (the marker aside), each list's items
/// from head to tail, each queue's entries (index, value) from head to tail.
#[derive(Clone)]
struct Model {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    lists: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
    queues: Vec<VecDeque<(u64, Vec<u8>)>>,
    /// The index each queue's next push takes (not part of the contents).
    queue_next: Vec<u64>,
}

impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        (&self.kv, &self.lists, &self.queues) == (&other.kv, &other.lists, &other.queues)
    }
}

impl Model {
    fn new() -> Model {
        Model {
            kv: BTreeMap::new(),
            lists: vec![Vec::new(); LISTS as usize],
            queues: vec![VecDeque::new(); QUEUES as usize],
            queue_next: vec![QUEUE_START; QUEUES as usize],
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Set(k, v) => drop(self.kv.insert(kv_key(*k), v.clone())),
            Op::Remove(k) => drop(self.kv.remove(&kv_key(*k))),
            Op::ListSet(l, j, v) => {
                let list = &mut self.lists[*l as usize];
                let key = item_key(*j);
                match list.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, old)) => *old = v.clone(),
                    None => list.push((key, v.clone())),
                }
            }
            Op::ListPromote(l, j, v) => {
                let list = &mut self.lists[*l as usize];
                let key = item_key(*j);
                list.retain(|(k, _)| *k != key);
                list.push((key, v.clone()));
            }
            Op::ListRemove(l, j) => {
                let key = item_key(*j);
                self.lists[*l as usize].retain(|(k, _)| *k != key);
            }
            Op::ListPopHead(l) => {
                let list = &mut self.lists[*l as usize];
                if !list.is_empty() {
                    list.remove(0);
                }
            }
            Op::QueuePush(q, v) => {
                let next = &mut self.queue_next[*q as usize];
                self.queues[*q as usize].push_back((*next, v.clone()));
                *next += 1;
            }
            Op::QueuePopHead(q) => drop(self.queues[*q as usize].pop_front()),
            Op::Merge => {}
        }
    }

    /// For a failure message: where `self` differs from `want`, a few places at most.
    fn diff(&self, want: &Model) -> String {
        let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(16)]).into_owned();
        let mut out = Vec::new();
        let keys: std::collections::BTreeSet<&Vec<u8>> =
            self.kv.keys().chain(want.kv.keys()).collect();
        for k in keys {
            let (g, w) = (self.kv.get(k), want.kv.get(k));
            if g != w {
                out.push(format!(
                    "key {}: {:?} instead of {:?}",
                    text(k),
                    g.map(|v| text(v)),
                    w.map(|v| text(v))
                ));
            }
        }
        for (l, (g, w)) in self.lists.iter().zip(&want.lists).enumerate() {
            if g != w {
                let keys = |list: &[(Vec<u8>, Vec<u8>)]| {
                    list.iter()
                        .map(|(k, v)| format!("{}={}", text(k), text(v)))
                        .collect::<Vec<_>>()
                };
                out.push(format!("list {l}: {:?} instead of {:?}", keys(g), keys(w)));
            }
        }
        for (q, (g, w)) in self.queues.iter().zip(&want.queues).enumerate() {
            if g != w {
                let entries = |queue: &VecDeque<(u64, Vec<u8>)>| {
                    queue
                        .iter()
                        .map(|(i, v)| format!("{}:{}", i.wrapping_sub(QUEUE_START), text(v)))
                        .collect::<Vec<_>>()
                };
                out.push(format!(
                    "queue {q}: {:?} instead of {:?}",
                    entries(g),
                    entries(w)
                ));
            }
        }
        out.truncate(6);
        out.join("; ")
    }
}

/// The marker: the number of the next operation, and the length (before it) of the
/// collection it works on, 0 for a key-value operation.
fn marker_bytes(next: u64, len: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&next.to_le_bytes());
    out[8..].copy_from_slice(&len.to_le_bytes());
    out
}

/// The marker the store holds, if any.
fn read_marker(store: &ShardedStore) -> Option<(u64, u64)> {
    let v = store.get(PROGRESS).unwrap()?;
    let bytes: [u8; 16] = v
        .as_bytes()
        .try_into()
        .unwrap_or_else(|_| panic!("a marker of {} bytes", v.len()));
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    Some((word(&bytes[..8]), word(&bytes[8..])))
}

fn write_marker(store: &ShardedStore, seed: u64, next: u64) {
    let len = op(seed, next).collection().map_or(0, |c| c.len(store));
    store.set(PROGRESS, &marker_bytes(next, len)).unwrap();
}

// ---------------------------------------------------------------------------------------
// The child.

/// Runs the workload `args` (`<seed> <target>`) on the store: opens it, finishes the
/// operation the marker names (see the module's doc), reports `ready <marker>`, then runs
/// operations up to `target`, moving the marker after each, and reports `ops <next>
/// <splits> <compactions> <merges> <shards>` every `REPORT_EVERY` operations. At
/// `target` it closes the store and reports `done <splits> <compactions> <merges>`.
pub(crate) fn child_sharded_worker(path: &Path, args: &str) {
    let words: Vec<&str> = args.split(' ').collect();
    let [seed, target] = words[..] else {
        panic!("sharded_worker arguments {args:?}");
    };
    let (seed, target): (u64, u64) = (seed.parse().unwrap(), target.parse().unwrap());
    let dir = Dir::open(path).unwrap();
    let store = ShardedStore::open(&dir, STORE, options()).unwrap();
    let (marker, mut next) = match read_marker(&store) {
        None => {
            assert!(store.is_empty(), "child: a store without marker holds keys");
            write_marker(&store, seed, 0);
            (0, 0)
        }
        Some((p, len_before)) => {
            let o = op(seed, p);
            let landed = o.counted().is_some_and(|(c, change)| {
                let now = c.len(&store);
                assert!(
                    now == len_before || now as i64 == len_before as i64 + change,
                    "child: operation {p} ({o:?}) on a collection of {len_before} left {now}"
                );
                now != len_before
            });
            if !landed {
                o.run(&store);
            }
            write_marker(&store, seed, p + 1);
            (p, p + 1)
        }
    };
    report(&format!("ready {marker}"));
    let work = |store: &ShardedStore| {
        let s = store.stats();
        format!("{} {} {}", s.splits, s.compactions, s.merges)
    };
    while next < target {
        op(seed, next).run(&store);
        next += 1;
        write_marker(&store, seed, next);
        if next.is_multiple_of(REPORT_EVERY) {
            report(&format!(
                "ops {next} {} {}",
                work(&store),
                store.stats().shards
            ));
        }
    }
    let done = work(&store);
    store.close().unwrap();
    report(&format!("done {done}"));
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------
// The parent.

/// What the parent knows of the store after a check.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// The marker.
    marker: u64,
    /// Operations whose effects the store holds: the marker, or one more.
    applied: u64,
}

fn bytes(v: ShardedValue) -> Vec<u8> {
    v.as_bytes().to_vec()
}

/// The store's contents, read through `iter`, `iter_list` and `iter_queue`.
fn contents(store: &ShardedStore, round: usize) -> Model {
    let mut got = Model::new();
    let mut walked = 0;
    for e in store.iter() {
        let e = e.unwrap_or_else(|e| panic!("round {round}: iter: {e}"));
        walked += 1;
        if e.key != PROGRESS {
            got.kv.insert(bytes(e.key), bytes(e.value));
        }
    }
    assert_eq!(
        walked,
        got.kv.len() + 1,
        "round {round}: iter repeats a key or misses the marker"
    );
    for l in 0..LISTS {
        got.lists[l as usize] = store
            .iter_list(&list_name(l))
            .map(|i| {
                let i = i.unwrap_or_else(|e| panic!("round {round}: iter_list {l}: {e}"));
                (bytes(i.key), bytes(i.value))
            })
            .collect();
    }
    for q in 0..QUEUES {
        got.queues[q as usize] = store
            .iter_queue(&queue_name(q))
            .map(|i| {
                let i = i.unwrap_or_else(|e| panic!("round {round}: iter_queue {q}: {e}"));
                (i.index, bytes(i.value))
            })
            .collect();
    }
    got
}

/// Checks `len`, `get`, `get_from_list`, `list_len`, `queue_len` and the peeks against
/// `got`, the contents the iterations read (and found right).
fn check_reads(store: &ShardedStore, got: &Model, round: usize) {
    assert_eq!(
        store.len(),
        got.kv.len() as u64 + 1,
        "round {round}: len and iter disagree (the contents are right)"
    );
    for j in 0..KV_KEYS {
        let k = kv_key(j);
        assert_eq!(
            store.get(&k).unwrap().map(bytes),
            got.kv.get(&k).cloned(),
            "round {round}: get and iter disagree on key {j} (the contents are right)"
        );
    }
    for (l, list) in got.lists.iter().enumerate() {
        let name = list_name(l as u64);
        assert_eq!(
            store.list_len(&name).unwrap(),
            list.len() as u64,
            "round {round}: list_len {l}"
        );
        assert_eq!(
            store.peek_list_head(&name).unwrap().map(|i| bytes(i.key)),
            list.first().map(|(k, _)| k.clone()),
            "round {round}: head of list {l}"
        );
        for (k, v) in list {
            assert_eq!(
                store.get_from_list(&name, k).unwrap().map(bytes).as_ref(),
                Some(v),
                "round {round}: get_from_list {l}"
            );
        }
    }
    for (q, queue) in got.queues.iter().enumerate() {
        let name = queue_name(q as u64);
        assert_eq!(
            store.queue_len(&name).unwrap(),
            queue.len() as u64,
            "round {round}: queue_len {q}"
        );
        assert_eq!(
            store.peek_queue_head(&name).unwrap().map(|i| i.index),
            queue.front().map(|(i, _)| *i),
            "round {round}: head of queue {q}"
        );
    }
}

/// Reopens the store at `at` and checks it: the open succeeds, the marker did not move
/// back, the contents are `state(marker)` or `state(marker + 1)` and never go back, and
/// the stats hold. `model` is `state(prev.marker)` and becomes `state(marker)`. `dirty`:
/// a child wrote since the last clean shutdown, so the open must rebuild every shard's
/// rows; `clean`: the last child closed the store, so the open must trust them.
fn verify(
    at: &Path,
    seed: u64,
    model: &mut Model,
    prev: Progress,
    (dirty, clean): (bool, bool),
    round: usize,
) -> Progress {
    let dir = Dir::open(at).unwrap_or_else(|e| panic!("round {round}: Dir reopen: {e}"));
    let store = ShardedStore::open(&dir, STORE, options())
        .unwrap_or_else(|e| panic!("round {round}: ShardedStore reopen: {e}"));
    let marker = match read_marker(&store) {
        Some((p, _)) => p,
        None => {
            assert_eq!(prev.applied, 0, "round {round}: the marker is gone");
            assert!(store.is_empty(), "round {round}: keys without a marker");
            return prev;
        }
    };
    assert!(
        marker >= prev.marker,
        "round {round}: the marker moved back from {} to {marker}",
        prev.marker
    );
    for i in prev.marker..marker {
        model.apply(&op(seed, i));
    }
    let in_flight = op(seed, marker);
    let mut or = model.clone();
    or.apply(&in_flight);
    let got = contents(&store, round);
    let applied = if got == *model {
        marker
    } else if got == or {
        marker + 1
    } else {
        panic!(
            "round {round}: with the marker at {marker}, the store holds neither state \
             {marker} nor that plus operation {marker} ({in_flight:?}); against the first: \
             {}; against the second: {}",
            got.diff(model),
            got.diff(&or)
        );
    };
    assert!(
        applied >= prev.applied,
        "round {round}: the store held the effects of {} operations, now of {applied}",
        prev.applied
    );

    check_reads(&store, &got, round);
    let stats = store.stats();
    assert_eq!(
        stats.entries,
        got.kv.len() as u64 + 1,
        "round {round}: {stats:?}"
    );
    assert!(stats.shards >= 1, "round {round}: {stats:?}");
    assert!(
        stats.fill > 0.0 && stats.fill <= 1.0,
        "round {round}: {stats:?}"
    );
    assert!(
        stats.data_bytes > 0 && stats.dead_bytes <= stats.data_bytes,
        "round {round}: {stats:?}"
    );
    assert_eq!(
        (stats.splits, stats.compactions, stats.merges),
        (0, 0, 0),
        "round {round}: an open did work: {stats:?}"
    );
    // (A kill after a session that only merged shards leaves the state clean: the open
    // then rebuilds the new shard alone.)
    assert!(
        stats.rebuilt_at_open <= stats.shards,
        "round {round}: {stats:?}"
    );
    assert!(
        !dirty || stats.rebuilt_at_open == stats.shards,
        "round {round}: the open trusted the rows of a store killed after writing: \
         {stats:?}"
    );
    assert!(
        !clean || stats.rebuilt_at_open == 0,
        "round {round}: the open rebuilt the rows after a clean shutdown: {stats:?}"
    );
    Progress { marker, applied }
}

/// Kills a ShardedStore child (key-value sets and removes, list and queue operations, in
/// small shards) at random 10-300 ms after its start, `KILLS` times on one store, and
/// checks after every kill that the reopen holds exactly the operations that returned,
/// and perhaps the one in flight; then lets a last child run to the end.
#[test]
fn killed_sharded_store_keeps_every_returned_operation() {
    let start = Instant::now();
    let mut seeded =
        Seeded::new("process_sharded::killed_sharded_store_keeps_every_returned_operation");
    let seed: u64 = seeded.rng.random();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let image = tmp.path().join("image");
    let mut model = Model::new();
    let mut progress = Progress::default();
    let (mut mid_open, mut landed, mut shards_max) = (0, 0, 0);
    // Splits, compactions and merges the killed children reported.
    let mut work_total = [0; 3];
    for round in 0..KILLS {
        assert!(
            start.elapsed() < KILLS_TIME_MAX,
            "{round} kills took {:?}, over {KILLS_TIME_MAX:?}",
            start.elapsed()
        );
        let in_place = seeded.rng.random_bool(0.5);
        let delay = Duration::from_millis(
            seeded
                .rng
                .random_range(KILL_AFTER_MS_MIN..=KILL_AFTER_MS_MAX),
        );
        let role = format!("sharded_worker {seed} {OPS_MAX}");
        let mut child = ChildProc::spawn(&role, &store, tmp.path().join("stderr"));
        std::thread::sleep(delay);
        let reports = child.kill();
        let mut ready = false;
        let mut ops = progress.marker;
        // Splits, compactions and merges of this child (counted from its open).
        let mut work = [0; 3];
        for r in &reports {
            let words: Vec<&str> = r.split(' ').collect();
            match words[..] {
                ["ready", p] => {
                    assert_eq!(
                        p.parse::<u64>().unwrap(),
                        progress.marker,
                        "round {round}: the child found another marker than the check"
                    );
                    ready = true;
                }
                ["ops", n, s, c, m, sh] => {
                    let n: u64 = n.parse().unwrap();
                    assert!(ready && n > ops, "round {round}: report {r:?} out of order");
                    ops = n;
                    work = [s, c, m].map(|w| w.parse::<u64>().unwrap());
                    shards_max = shards_max.max(sh.parse::<u64>().unwrap());
                }
                _ => panic!("round {round}: unexpected report {r:?}"),
            }
        }
        mid_open += usize::from(!ready);
        for (total, w) in work_total.iter_mut().zip(work) {
            *total += w;
        }
        let at = if in_place {
            &store
        } else {
            copy_store(&store, &image);
            &image
        };
        // A child that reported ready wrote its marker.
        let checked = verify(at, seed, &mut model, progress, (ready, false), round);
        assert!(
            checked.marker >= ops,
            "round {round}: the child reported {ops} operations done, the marker is at {}",
            checked.marker
        );
        landed += usize::from(checked.applied > checked.marker);
        progress = checked;
        println!(
            "round {round}: killed after {delay:?}, marker {} (+{}), {} reports",
            progress.marker,
            progress.applied - progress.marker,
            reports.len()
        );
    }
    let killed = start.elapsed();

    // The last child runs unkilled to `target` and closes the store.
    let target = progress.marker + FINAL_OPS;
    let role = format!("sharded_worker {seed} {target}");
    let mut child = ChildProc::spawn(&role, &store, tmp.path().join("stderr"));
    let done = loop {
        let r = child.next();
        if let Some(rest) = r.strip_prefix("done ") {
            break rest.to_string();
        }
    };
    assert!(child.kill().is_empty());
    let end = verify(&store, seed, &mut model, progress, (false, true), KILLS);
    assert_eq!(end.marker, target, "after the last child's clean close");
    assert_eq!(end.applied, target, "after the last child's clean close");
    println!(
        "{KILLS} kills in {killed:?} ({:?} in all): {} operations, {landed} in flight \
         landed, {mid_open} kills before the child was ready; killed children reported \
         {work_total:?} splits, compactions and merges, up to {shards_max} shards; the last \
         child {done}; {} keys, lists of {:?} items, queues of {:?}",
        start.elapsed(),
        end.marker,
        model.kv.len(),
        model.lists.iter().map(Vec::len).collect::<Vec<_>>(),
        model.queues.iter().map(VecDeque::len).collect::<Vec<_>>()
    );
    assert!(
        work_total[0] > 0 && work_total[1] > 0,
        "the killed children split or compacted no shard"
    );
}
