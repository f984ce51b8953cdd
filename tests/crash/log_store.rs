//! Crash images of a LogStore: puts and deletes across segment rolls, write batches,
//! compaction, and a second crash after recovering from a first.
//!
//! A LogStore is many primitives: the state Journal, one AppendOnly per log segment, per
//! base segment of a generation and per hint file. Which of them a step flushes depends on
//! the step, so every recorded point carries the flush order of the step it follows:
//! - `sync()`: the state journal if a roll left it unsynced (it names the active
//!   segment, and is synced before any byte of it), then the active segment's lanes (the
//!   commit: format-2 segments prove their records by their frames), then its length
//!   (written lazily, or not at all);
//! - a write that rolls segment A over to A+1 changes the state in memory only; the
//!   store's finisher thread then syncs A (the state journal first, if A was never synced
//!   while active, which names A+1 by then; then A's lanes, the commit of every write
//!   before the rolling one, and A's length) and writes A's hint file. The workload waits for the finisher
//!   (`stats().finishing`), records that as the roll's step, and syncs;
//! - `compact()`: the roll as above with A's hint, the new generation's base segments and
//!   their hints (lanes, then lengths), then the state journal: the content commits with
//!   the roll, the new generation with the journal.
//!
//! Rolls happen inside writes. The harness needs every sync recorded (a snapshot older
//! than the last fsync builds a disk no crash leaves), so the workload notices a roll (the
//! segment count grows), waits for the finisher, and records the directory then as a sync
//! point whose durable content is the model before that write.
//!
//! Writes concurrent with a compaction are not durable when it returns unless they landed
//! before its roll, so that compaction's point may hold any prefix of them (a sync
//! follows at once).
//!
//! Two limits of the model, both on the safe side:
//! - Compaction writes the journal twice (at its roll, then at the switch); a file has
//!   one group, so the journal sits at the switch: a crash between the two is modeled
//!   with the journal from before compaction (the same content), and the roll's slot
//!   alone shows up only when the switch's slot is torn.
//! - A file deleted by S1 is taken from S0 (the harness's rule). Compaction deletes the
//!   segment it rolls, which changed after S0, so the workload pins that segment with a
//!   value handle across the compaction and drops it only once the compaction's point is
//!   recorded. Every other deleted file was immutable since before S0.
//!
//! Each image is checked: the store opens, has no damaged record, iterates in key order to
//! the model state after some prefix of the writes, from every write a step that returned
//! made durable up to every write made by the crash (unsynced writes are adopted through
//! their frames, or lost, never a later one kept while an earlier one is lost; `get`
//! agrees for every key ever written and for keys never written), a batch is all there
//! or not at all, only the
//! current generation's directory is left, and the store works afterwards (put, delete,
//! batch, sync, compact, reopen).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{serial, show};
use accretion::{Dir, LogOptions, LogStore, WriteBatch};
use rand::Rng;

use crate::harness::{Crash, FlushOrder, Group, History, Replay, Written};
use crate::{leftover_lane_tmp, open_dir, random_bytes, store};

// Crash images checked per scenario.
const PUTS_IMAGES: usize = 400;
const BATCH_IMAGES: usize = 300;
const COMPACTION_IMAGES: usize = 400;
const CONCURRENT_IMAGES: usize = 250;
const ROLLS_IMAGES: usize = 300;
/// Crash-recover-crash: recovered first crashes, and images of each second life.
const SECOND_LIVES: usize = 4;
const SECOND_LIFE_IMAGES: usize = 80;

/// The store's name in its directory.
const NAME: &str = "kv";

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// A key and what a write left in it (`None`: deleted).
type Effect = (Vec<u8>, Option<Vec<u8>>);

/// One write of the workload: what it does to each key (`None` deletes).
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<Effect>),
    Clear,
}

/// Busy-waits `micros` microseconds (sleeping is far coarser than a compaction's steps).
fn spin(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn run_op(store: &LogStore, op: &Op) {
    match op {
        Op::Put(k, v) => store.put(k, v).expect("put"),
        Op::Delete(k) => store.delete(k).expect("delete"),
        Op::Batch(ops) => {
            let mut batch = WriteBatch::new();
            for (k, v) in ops {
                match v {
                    Some(v) => batch.put(k, v),
                    None => batch.delete(k),
                };
            }
            store.write(&batch).expect("write batch");
        }
        Op::Clear => store.clear().expect("clear"),
    }
}

fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        sync_each_write: false,
        compact_dead_ratio: None,
        merge_operator: None,
    }
}

fn log_name(id: u64) -> String {
    format!("{NAME}/log-{id:010}")
}

/// The highest log segment in a store directory that holds data, else the highest: the
/// active one, or near it (the store makes the next one ahead, empty), for debris.
fn active_log(root: &Path) -> u64 {
    let logs: Vec<(u64, bool)> = fs::read_dir(root.join(NAME))
        .expect("list the store")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let id = name.strip_prefix("log-")?.parse().ok()?;
            Some((id, root.join(NAME).join(&name).join("data-00.acc").exists()))
        })
        .collect();
    logs.iter()
        .filter(|(_, data)| *data)
        .map(|(id, _)| *id)
        .max()
        .or_else(|| logs.iter().map(|(id, _)| *id).max())
        .expect("a log segment")
}

/// The generation directories (`gN`) in the store directory.
fn generation_dirs(root: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(root.join(NAME)).map_err(|e| format!("list the store: {e}"))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('g'))
        .collect();
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Steps and their flush orders

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sync,
    Roll,
    Compact,
}

/// A recorded step that ends with everything written before it durable.
#[derive(Clone, Debug)]
struct Step {
    kind: Kind,
    order: FlushOrder,
    /// The group whose flush makes the step's content durable.
    content_commit: usize,
    /// The group whose flush makes the step's generation current.
    generation_commit: usize,
}

impl Step {
    /// A sync of the active segment: first the state journal, if a roll left it
    /// unsynced (it names the active segment, and must be durable before any byte of it),
    /// then the segment's lanes and its length (the commit).
    fn sync(active: u64) -> Step {
        let groups = [
            FlushOrder::journal(&format!("{NAME}/state")).groups,
            FlushOrder::append_only(&log_name(active)).groups,
        ]
        .concat();
        Step {
            kind: Kind::Sync,
            order: FlushOrder { groups, commit: 1 },
            content_commit: 1,
            generation_commit: 1,
        }
    }

    /// A roll's finishing, done by the store's finisher thread after the rolling write:
    /// the state journal if no sync took it since the roll (it names the new segment),
    /// then the finished segment (lanes, length: the commit of every write before the
    /// rolling one) and its hint. The roll itself (under the writer lock) flushes
    /// nothing.
    fn roll(finished: u64) -> Step {
        let groups = [
            FlushOrder::journal(&format!("{NAME}/state")).groups,
            FlushOrder::append_only(&log_name(finished)).groups,
            FlushOrder::append_only(&format!("{}-hint", log_name(finished))).groups,
        ]
        .concat();
        Step {
            kind: Kind::Roll,
            order: FlushOrder { groups, commit: 1 },
            content_commit: 1,
            generation_commit: 1,
        }
    }

    /// `rolled`: the segment compaction finished first, if it was not empty.
    fn compact(rolled: Option<u64>, generation: u64) -> Step {
        let mut groups = Vec::new();
        if let Some(id) = rolled {
            groups.extend(FlushOrder::append_only(&log_name(id)).groups);
            groups.extend(FlushOrder::append_only(&format!("{}-hint", log_name(id))).groups);
        }
        let base = format!("{NAME}/g{generation}");
        groups.push(Group {
            patterns: vec![format!("{base}/*/data-*.acc")],
            written: Written::Mapped,
        });
        groups.push(Group {
            patterns: vec![format!("{base}/*/length.acc")],
            written: Written::AtFlush,
        });
        let switch = groups.len();
        groups.extend(FlushOrder::journal(&format!("{NAME}/state")).groups);
        Step {
            kind: Kind::Compact,
            order: FlushOrder {
                groups,
                commit: switch,
            },
            content_commit: if rolled.is_some() { 0 } else { switch },
            generation_commit: switch,
        }
    }

    fn with_commit(&self, commit: usize) -> FlushOrder {
        FlushOrder {
            groups: self.order.groups.clone(),
            commit,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The workload side

/// A LogStore at work, with the history of its directory and the model of every state.
struct Workload {
    store: LogStore,
    history: History,
    /// The step each history point follows; `None` for the open and mid-work points.
    steps: Vec<Option<Step>>,
    /// Every write applied so far.
    model: Model,
    /// The content after each write (index = writes applied; 0: at open).
    states: Vec<Model>,
    /// Writes applied at each history point.
    at_point: Vec<usize>,
    /// Per sync (index = sync number): the writes it made durable (the fewest, if writes
    /// ran concurrently with it), and the generation.
    synced: Vec<(usize, u64)>,
    /// Sync after each roll (needed before a compaction, see `apply`).
    sync_after_roll: bool,
    generation: u64,
    segments: u64,
    /// Checked by the batch test: each batch's keys no later write touches, with the
    /// value the batch left (`None`: deleted).
    batches: Vec<Vec<Effect>>,
    /// Every key and every (key, value) pair ever written.
    keys: BTreeSet<Vec<u8>>,
    values: HashSet<(Vec<u8>, Vec<u8>)>,
    serial: u64,
    pins: usize,
    /// Per compaction with concurrent writes: writes done when it began and when it
    /// returned, of how many.
    overlap: Vec<(usize, usize, usize)>,
}

impl Workload {
    /// Opens the store at `root` (a store directory), whose durable content is `model`;
    /// a `second_life` (an image recovered from a crash) first takes its epoch (below).
    fn open(root: &Path, opts: &LogOptions, mut model: Model, second_life: bool) -> Workload {
        let dir = Dir::open(root).expect("open the directory");
        let store = LogStore::open(&dir, NAME, opts.clone()).expect("open the store");
        if second_life {
            // The first append after an open takes a new epoch for the active segment,
            // recorded durably in its length register before any frame carries it: a
            // flush outside any step. Made (and synced) before the history starts, so
            // that S0 of every crash holds it.
            let (k, v) = (b"second-life".to_vec(), b"epoch taken".to_vec());
            store.put(&k, &v).expect("put");
            store.sync().expect("sync");
            model.insert(k, v);
        }
        let stats = store.stats();
        let history = History::new(root);
        Workload {
            store,
            history,
            steps: vec![None],
            keys: model.keys().cloned().collect(),
            values: model.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            synced: vec![(0, stats.generation)],
            states: vec![model.clone()],
            at_point: vec![0],
            sync_after_roll: true,
            model,
            generation: stats.generation,
            segments: stats.segments,
            batches: Vec::new(),
            serial: 0,
            pins: 0,
            overlap: Vec::new(),
        }
    }

    /// A value unique to this write: its serial number, then `len` random bytes.
    fn value(&mut self, len: usize, rng: &mut impl Rng) -> Vec<u8> {
        self.serial += 1;
        let mut v = format!("#{}:", self.serial).into_bytes();
        v.extend(random_bytes(len, rng));
        v
    }

    /// Applies `op` to the store and the model; records a roll if it caused one.
    fn apply(&mut self, op: Op) {
        let before = self.states.len() - 1;
        run_op(&self.store, &op);
        self.model_op(op);
        let segments = self.store.stats().segments;
        if segments != self.segments {
            assert_eq!(segments, self.segments + 1, "one write rolls at most once");
            self.segments = segments;
            // Rolled: once the background finisher has synced and hinted the previous
            // segment, everything before this write is durable.
            while self.store.stats().finishing > 0 {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            let finished = self.store.stats().active_log - 1;
            self.record(Step::roll(finished), before);
            // Then a sync, which makes the state naming the new segment durable: a
            // compaction later syncs the segment it rolls (this one) before its state
            // switch, which the model of its step needs to find already durable (a file
            // has one group in a step's flush order). Without it, the next roll's
            // finisher syncs that state, before the segment it finishes.
            if self.sync_after_roll {
                self.sync();
            }
        }
    }

    /// Applies `op` to the model.
    fn model_op(&mut self, op: Op) {
        let effects = match op {
            Op::Put(k, v) => vec![(k, Some(v))],
            Op::Delete(k) => vec![(k, None)],
            Op::Batch(ops) => ops,
            Op::Clear => {
                self.model.clear();
                for batch in &mut self.batches {
                    batch.clear();
                }
                Vec::new()
            }
        };
        // A later write takes a key out of the batch checks.
        for batch in &mut self.batches {
            batch.retain(|(k, _)| !effects.iter().any(|(e, _)| e == k));
        }
        for (k, v) in effects {
            self.keys.insert(k.clone());
            match v {
                Some(v) => {
                    self.values.insert((k.clone(), v.clone()));
                    self.model.insert(k, v);
                }
                None => {
                    self.model.remove(&k);
                }
            }
        }
        self.states.push(self.model.clone());
    }

    /// A batch of `ops`, checked for atomicity on every image.
    fn batch(&mut self, ops: Vec<Effect>) {
        self.apply(Op::Batch(ops.clone()));
        // Later operations of a batch win over earlier ones on the same key.
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in ops {
            last.insert(k, v);
        }
        self.batches.push(last.into_iter().collect());
    }

    /// Records a step after which the first `durable` writes are durable.
    fn record(&mut self, step: Step, durable: usize) {
        self.history.synced();
        self.steps.push(Some(step));
        self.synced.push((durable, self.generation));
        self.at_point.push(self.states.len() - 1);
    }

    fn sync(&mut self) {
        self.store.sync().expect("sync");
        let step = Step::sync(self.store.stats().active_log);
        self.record(step, self.states.len() - 1);
    }

    fn mid(&mut self) {
        self.history.mid();
        self.steps.push(None);
        self.at_point.push(self.states.len() - 1);
    }

    /// Compacts, pinning the active segment (which compaction rolls and then deletes)
    /// with a fresh key's value until the compaction is recorded.
    fn compact(&mut self, rng: &mut impl Rng) {
        self.compact_with_writes(Vec::new(), Vec::new(), 0, rng);
    }

    /// Syncs and compacts with no pin: the segment compaction rolls and deletes is the
    /// same at the sync as after the roll, so S0's copy of it is right. With nothing
    /// live (after a clear), the new generation has no base segment at all.
    fn sync_and_compact(&mut self) {
        self.sync();
        let active = self.store.stats().active_log;
        self.store.compact().expect("compact");
        let rolled = (self.store.stats().active_log > active).then_some(active);
        self.generation += 1;
        let stats = self.store.stats();
        assert_eq!(stats.generation, self.generation);
        self.segments = stats.segments;
        let durable = self.states.len() - 1;
        self.record(Step::compact(rolled, self.generation), durable);
    }

    /// Compacts while another thread runs `ops`, spread out by `pauses` (microseconds of
    /// spinning; compaction starts `head_start` microseconds after the thread). Writes
    /// into the segments compaction keeps are not durable when it returns, so its point
    /// may hold any prefix of `ops`; a sync follows at once. `ops` must not roll a
    /// segment (they are few and small, the segments large): a segment they finished
    /// would be deleted unpinned.
    fn compact_with_writes(
        &mut self,
        ops: Vec<Op>,
        pauses: Vec<u64>,
        head_start: u64,
        rng: &mut impl Rng,
    ) {
        self.pins += 1;
        let pin = format!("pin-{}", self.pins).into_bytes();
        let value = self.value(16, rng);
        self.apply(Op::Put(pin.clone(), value));
        let held = self.store.get(&pin).expect("get pin").expect("pin");
        let active = self.store.stats().active_log;
        let concurrent = !ops.is_empty();
        if concurrent {
            let start = Barrier::new(2);
            let done = AtomicUsize::new(0);
            let (mut before, mut after) = (0, 0);
            std::thread::scope(|s| {
                let (store, start, done) = (&self.store, &start, &done);
                let (ops, pauses) = (&ops, &pauses);
                let writer = s.spawn(move || {
                    start.wait();
                    for (op, &pause) in ops.iter().zip(pauses) {
                        spin(pause);
                        run_op(store, op);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
                start.wait();
                spin(head_start);
                before = done.load(Ordering::Relaxed);
                store.compact().expect("compact");
                after = done.load(Ordering::Relaxed);
                writer.join().expect("writer thread");
            });
            assert_eq!(
                self.store.stats().active_log,
                active + 1,
                "the writes during compaction rolled a segment: make them fewer or smaller"
            );
            self.overlap.push((before, after, ops.len()));
        } else {
            self.store.compact().expect("compact");
        }
        let rolled = (self.store.stats().active_log > active).then_some(active);
        let durable = self.states.len() - 1;
        for op in ops {
            self.model_op(op);
        }
        self.generation += 1;
        let stats = self.store.stats();
        assert_eq!(stats.generation, self.generation);
        self.segments = stats.segments;
        self.record(Step::compact(rolled, self.generation), durable);
        drop(held);
        if concurrent {
            self.sync();
        }
    }

    fn finish(self, opts: &LogOptions, never: Vec<Vec<u8>>) -> Recorded {
        drop(self.store);
        Recorded {
            history: self.history,
            steps: self.steps,
            states: self.states,
            at_point: self.at_point,
            synced: self.synced,
            batches: self.batches,
            keys: self.keys,
            values: self.values,
            never,
            opts: opts.clone(),
        }
    }
}

/// A key of the pool: a number, and for some a tail of random bytes.
fn pool_key(n: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut key = format!("key-{n:04}").into_bytes();
    if rng.random_bool(0.3) {
        key.extend(random_bytes(rng.random_range(1..40), rng));
    }
    key
}

fn never_keys() -> Vec<Vec<u8>> {
    (0..20).map(|i| format!("never-{i}").into_bytes()).collect()
}

/// A value length: mostly small, some over a few KiB (a segment of their own), a few over
/// the first lane (a record that skips to lane 1 of its segment).
fn value_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100) {
        0..90 => rng.random_range(0..300),
        90..99 => rng.random_range(300..6_000),
        _ => rng.random_range(60_000..90_000),
    }
}

/// Keys used so far, for overwrites and deletes.
struct Pool {
    keys: Vec<Vec<u8>>,
    next: usize,
}

impl Pool {
    fn new(keys: impl IntoIterator<Item = Vec<u8>>) -> Pool {
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        Pool {
            next: keys.len(),
            keys,
        }
    }

    /// A key: a new one with probability `fresh`, else one used before.
    fn key(&mut self, fresh: f64, rng: &mut impl Rng) -> Vec<u8> {
        if self.keys.is_empty() || rng.random_bool(fresh) {
            let key = pool_key(self.next, rng);
            self.next += 1;
            self.keys.push(key.clone());
            key
        } else {
            self.keys[rng.random_range(0..self.keys.len())].clone()
        }
    }
}

/// One random write: puts (new and overwriting), deletes (mostly of present keys), and
/// small batches.
fn random_op(w: &mut Workload, pool: &mut Pool, fresh: f64, rng: &mut impl Rng) -> Op {
    match rng.random_range(0..100) {
        0..65 => {
            let key = pool.key(fresh, rng);
            let len = value_len(rng);
            Op::Put(key, w.value(len, rng))
        }
        65..88 => {
            let present: Vec<&Vec<u8>> = w.model.keys().collect();
            let key = if present.is_empty() || rng.random_bool(0.1) {
                pool.key(0.0, rng)
            } else {
                present[rng.random_range(0..present.len())].clone()
            };
            Op::Delete(key)
        }
        _ => {
            let n = rng.random_range(1..=5);
            let ops = (0..n)
                .map(|_| {
                    let key = pool.key(fresh, rng);
                    if rng.random_bool(0.25) {
                        (key, None)
                    } else {
                        let len = rng.random_range(0..200);
                        (key, Some(w.value(len, rng)))
                    }
                })
                .collect();
            Op::Batch(ops)
        }
    }
}

/// `rounds` rounds of 1 to `per_round` random writes, each round but the last ended by a
/// sync; mid-work snapshots now and then; a compaction every `compact_every` rounds (after
/// a sync or not, with writes after it either way); one `clear` at round `clear_at`
/// (followed by a compaction of the empty store if the plan compacts).
struct Plan {
    rounds: usize,
    per_round: usize,
    fresh: f64,
    compact_every: Option<usize>,
    clear_at: Option<usize>,
}

fn run(w: &mut Workload, pool: &mut Pool, plan: &Plan, rng: &mut impl Rng) {
    for round in 0..plan.rounds {
        if plan.clear_at == Some(round) {
            w.apply(Op::Clear);
            if plan.compact_every.is_some() {
                w.sync_and_compact(); // a generation without base segments
            }
        }
        for _ in 0..rng.random_range(1..=plan.per_round) {
            let op = random_op(w, pool, plan.fresh, rng);
            w.apply(op);
            if rng.random_bool(0.08) {
                w.mid();
            }
        }
        if round + 1 == plan.rounds {
            break;
        }
        if plan.compact_every.is_some_and(|c| round % c == c - 1) {
            match rng.random_range(0..4) {
                0 => w.sync_and_compact(),
                1 => {
                    w.sync();
                    w.compact(rng);
                }
                _ => w.compact(rng),
            }
            if rng.random_bool(0.3) {
                w.mid();
            }
            continue; // the next round writes before the next sync
        }
        w.sync();
    }
    w.mid();
}

// ---------------------------------------------------------------------------------------
// The checking side

/// A finished workload: its history, the model of every sync, what the checks need.
struct Recorded {
    history: History,
    steps: Vec<Option<Step>>,
    states: Vec<Model>,
    at_point: Vec<usize>,
    synced: Vec<(usize, u64)>,
    batches: Vec<Vec<Effect>>,
    keys: BTreeSet<Vec<u8>>,
    values: HashSet<(Vec<u8>, Vec<u8>)>,
    never: Vec<Vec<u8>>,
    opts: LogOptions,
}

/// What an image may hold.
struct Allowed<'a> {
    states: Vec<&'a Model>,
    generations: Vec<u64>,
}

impl Recorded {
    /// Crash number `n`: one in four mid-work, one in four during a compaction (if there
    /// was one), the rest during any recorded step; the cut is random over the step's
    /// groups and one past them (the step returned).
    fn random_crash(&self, rng: &mut impl Rng, n: usize) -> Crash {
        let points = |f: &dyn Fn(&Option<Step>) -> bool| -> Vec<usize> {
            (1..self.steps.len())
                .filter(|&i| f(&self.steps[i]))
                .collect()
        };
        let mids = points(&|s| s.is_none());
        let compactions = points(&|s| s.as_ref().is_some_and(|s| s.kind == Kind::Compact));
        let steps = points(&|s| s.is_some());
        let from = match n % 4 {
            3 if !mids.is_empty() => &mids,
            1 if !compactions.is_empty() => &compactions,
            _ => &steps,
        };
        let at = from[rng.random_range(0..from.len())];
        let cut = self.steps[at]
            .as_ref()
            .map(|s| rng.random_range(0..=s.order.len()));
        Crash::random(rng, at, cut)
    }

    /// The flush order of the step point `at` follows (any for a mid-work point).
    fn order(&self, at: usize) -> &FlushOrder {
        self.steps[at]
            .as_ref()
            .or_else(|| self.steps.iter().flatten().next())
            .map(|s| &s.order)
            .expect("a recorded step")
    }

    fn allowed(&self, crash: &Crash) -> Allowed<'_> {
        let syncs = |commit: Option<usize>| match (&self.steps[crash.at], commit) {
            (Some(step), Some(c)) => self.history.possible_syncs(crash, &step.with_commit(c)),
            _ => vec![self.history.durable_sync(crash)],
        };
        let step = self.steps[crash.at].as_ref();
        let content = syncs(step.map(|s| s.content_commit));
        let generation = syncs(step.map(|s| s.generation_commit));
        let mut generations: Vec<u64> = generation.iter().map(|&s| self.synced[s].1).collect();
        generations.dedup();
        // Every write durable by then, and any of the later ones up to the crash, in
        // order: a prefix of the writes (unsynced ones may come back, adopted).
        let lo = self.synced[content[0]].0;
        let hi = self.at_point[crash.at];
        Allowed {
            states: self.states[lo..=hi].iter().collect(),
            generations,
        }
    }

    fn image(&self, crash: &Crash) -> crate::harness::Image {
        self.history.image(crash, self.order(crash.at))
    }

    /// Builds `images` crash images and checks each; prints a tally per step kind.
    fn check_images(&self, replay: &mut Replay, images: usize) {
        // (images, a newer than the oldest allowed state recovered) for sync, roll,
        // compact, mid-work.
        let mut tally = [(0usize, 0usize); 4];
        for n in 0..images {
            let crash = self.random_crash(&mut replay.rng, n);
            let step = self.steps[crash.at].as_ref().map(|s| s.kind);
            replay.context = format!("checking image {n} ({crash}, after {step:?})");
            let image = self.image(&crash);
            let allowed = self.allowed(&crash);
            // Every image is written to and reopened; one in three is compacted too.
            let exercise = if n % 3 == 0 {
                Exercise::Compact
            } else {
                Exercise::Write
            };
            match check_store(image.path(), self, &allowed, exercise) {
                Ok((found, _)) => {
                    let t = &mut tally[match step {
                        Some(Kind::Sync) => 0,
                        Some(Kind::Roll) => 1,
                        Some(Kind::Compact) => 2,
                        None => 3,
                    }];
                    t.0 += 1;
                    t.1 += usize::from(found > 0);
                }
                Err(e) => panic!("{}: {e}", replay.context),
            }
        }
        eprintln!(
            "{}: {images} images over {} points, seed {}: (images, newer state recovered) \
             after sync, roll, compact, mid-work: {tally:?}",
            replay.test,
            self.steps.len(),
            replay.seed
        );
    }
}

/// The store's content, in iteration order.
fn contents(store: &LogStore) -> Result<Model, String> {
    let mut out = Model::new();
    let mut last: Option<Vec<u8>> = None;
    for item in store.iter() {
        let (k, v) = item.map_err(|e| format!("iter: {e}"))?;
        if last.as_deref().is_some_and(|l| l >= &k[..]) {
            return Err(format!("iter is not in key order at {:?}", show(&k)));
        }
        last = Some(k.to_vec());
        out.insert(k.to_vec(), v.to_vec());
    }
    Ok(out)
}

/// How `got` differs from `want`: the first few keys.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = String::new();
    let keys: BTreeSet<&Vec<u8>> = got.keys().chain(want.keys()).collect();
    let mut shown = 0;
    for k in keys {
        let (g, w) = (got.get(k), want.get(k));
        if g == w {
            continue;
        }
        if shown == 4 {
            out.push_str(", ...");
            break;
        }
        let _ = write!(
            out,
            "{}{:?}: {} instead of {}",
            if shown > 0 { ", " } else { "" },
            show(k),
            g.map_or("absent".into(), |v| serial(v)),
            w.map_or("absent".into(), |v| serial(v)),
        );
        shown += 1;
    }
    out
}

/// What [`check_store`] does with a store once its recovered content is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exercise {
    Nothing,
    /// Write (put, delete, batch), sync, reopen.
    Write,
    /// Write, sync, compact, write, sync, reopen.
    Compact,
}

/// Opens the image and checks it against `allowed`, then exercises the store. Returns
/// which allowed state it held, and the content it was left with.
fn check_store(
    path: &Path,
    rec: &Recorded,
    allowed: &Allowed<'_>,
    exercise: Exercise,
) -> Result<(usize, Model), String> {
    let dir = open_dir(path)?;
    let store = LogStore::open(&dir, NAME, rec.opts.clone())
        .map_err(|e| format!("LogStore::open failed: {e}"))?;
    let stats = store.stats();
    let got = contents(&store)?;
    if let Some((k, v)) = got
        .iter()
        .find(|(k, v)| !rec.values.contains(&(k.to_vec(), v.to_vec())))
    {
        return Err(format!(
            "key {:?} holds a value never written to it ({} bytes)",
            show(k),
            v.len()
        ));
    }
    // A batch is all there or not at all: a key of the batch that no later write touched
    // holds the batch's value or not, the same for all its keys.
    for (i, batch) in rec.batches.iter().enumerate() {
        let there: Vec<bool> = batch
            .iter()
            .map(|(k, v)| got.get(k) == v.as_ref() && v.is_some())
            .collect();
        let puts = batch.iter().filter(|(_, v)| v.is_some()).count();
        let seen = there.iter().filter(|&&t| t).count();
        if seen > 0 && seen < puts {
            return Err(format!(
                "batch {i} is half there: {seen} of its {puts} puts ({:?})",
                batch
                    .iter()
                    .zip(&there)
                    .map(|((k, v), t)| {
                        let state = match (v, t) {
                            (None, _) => "deleted by the batch",
                            (Some(_), true) => "there",
                            (Some(_), false) => "missing",
                        };
                        format!("{}: {state}", show(k))
                    })
                    .collect::<Vec<_>>()
            ));
        }
    }
    let Some(found) = allowed.states.iter().position(|s| **s == got) else {
        // Against the closest allowed state (there may be many: writes concurrent with a
        // compaction).
        let closest = allowed
            .states
            .iter()
            .min_by_key(|s| {
                got.iter().filter(|(k, v)| s.get(*k) != Some(v)).count()
                    + s.keys().filter(|k| !got.contains_key(*k)).count()
            })
            .expect("an allowed state");
        return Err(format!(
            "recovered {} keys, not one of the {} allowed states ({stats:?}); against the \
             closest, of {} keys: {}",
            got.len(),
            allowed.states.len(),
            closest.len(),
            diff(&got, closest)
        ));
    };
    if stats.damaged_records != 0 {
        return Err(format!("a crash image holds damaged records: {stats:?}"));
    }
    if !allowed.generations.contains(&stats.generation) {
        return Err(format!(
            "generation {}, expected one of {:?}",
            stats.generation, allowed.generations
        ));
    }
    let gens = generation_dirs(path)?;
    if gens.iter().any(|g| *g != format!("g{}", stats.generation)) {
        return Err(format!(
            "generation {} is current but the store holds {gens:?}",
            stats.generation
        ));
    }
    if store.len() != got.len() as u64 {
        return Err(format!("len {} but iter yields {}", store.len(), got.len()));
    }
    for k in rec.keys.iter().chain(&rec.never) {
        let v = store.get(k).map_err(|e| format!("get: {e}"))?;
        if v.as_deref() != got.get(k).map(|v| &v[..]) || store.contains(k) != v.is_some() {
            return Err(format!("get({:?}) disagrees with iter", show(k)));
        }
    }
    if exercise == Exercise::Nothing {
        return Ok((found, got));
    }

    // Still a store: write, sync, (compact, write again), reopen.
    let mut want = got;
    let write = |store: &LogStore, want: &mut Model, tag: &str| -> Result<(), String> {
        let key = format!("after-crash-{tag}").into_bytes();
        store
            .put(&key, tag.as_bytes())
            .map_err(|e| format!("put after recovery: {e}"))?;
        want.insert(key, tag.as_bytes().to_vec());
        if let Some(k) = want.keys().next().cloned() {
            store
                .delete(&k)
                .map_err(|e| format!("delete after recovery: {e}"))?;
            want.remove(&k);
        }
        let mut batch = WriteBatch::new();
        for i in 0..3 {
            let k = format!("after-crash-{tag}-batch-{i}").into_bytes();
            batch.put(&k, &k);
            want.insert(k.clone(), k);
        }
        store
            .write(&batch)
            .map_err(|e| format!("batch after recovery: {e}"))?;
        store
            .sync()
            .map_err(|e| format!("sync after recovery: {e}"))
    };
    write(&store, &mut want, "a")?;
    let compacted = exercise == Exercise::Compact;
    if compacted {
        store
            .compact()
            .map_err(|e| format!("compact after recovery: {e}"))?;
        write(&store, &mut want, "b")?;
    }
    drop(store);
    let store = LogStore::open(&dir, NAME, rec.opts.clone())
        .map_err(|e| format!("reopen after recovery: {e}"))?;
    let again = contents(&store)?;
    if again != want {
        return Err(format!(
            "after recovery, writes and a reopen ({exercise:?}): {}",
            diff(&again, &want)
        ));
    }
    let after = store.stats();
    if after.damaged_records != 0 || after.generation != stats.generation + u64::from(compacted) {
        return Err(format!(
            "after recovery, writes and a reopen ({exercise:?}): {after:?}, recovered {stats:?}"
        ));
    }
    Ok((found, want))
}

/// Leaves in `image` what crashes while creating files leave: the `.tmp` file of the
/// next lane of the last log segment, and of the first lane of a segment that a roll,
/// and a compaction into `generation`, had only begun to create.
fn debris(image: &crate::harness::Image, generation: u64, rng: &mut impl Rng) {
    let last = active_log(image.path());
    leftover_lane_tmp(image, &log_name(last), "data", rng);
    for segment in [
        log_name(last + 1),
        format!("{NAME}/g{generation}/base-000000"),
    ] {
        fs::create_dir_all(image.path().join(&segment)).expect("create debris directory");
        let junk = random_bytes(rng.random_range(0..5_000), rng);
        image.write(&format!("{segment}/data-00.acc.tmp"), &junk);
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// Records `plan` on a fresh store.
fn workload(replay: &mut Replay, segment_bytes: u64, plan: &Plan) -> (tempfile::TempDir, Recorded) {
    let (tmp, dir) = store();
    drop(dir);
    let opts = options(segment_bytes);
    let mut w = Workload::open(tmp.path(), &opts, Model::new(), false);
    let mut pool = Pool::new([]);
    run(&mut w, &mut pool, plan, &mut replay.rng);
    let rec = w.finish(&opts, never_keys());
    (tmp, rec)
}

/// Puts, deletes and small batches with a sync every few writes; 4 KiB segments, so that
/// most windows between syncs hold a roll; some values span segments and lanes; one clear.
#[test]
fn log_store_crash_images() {
    let mut replay = Replay::new("log_store_crash_images");
    let plan = Plan {
        rounds: 40,
        per_round: 14,
        fresh: 0.35,
        compact_every: None,
        clear_at: Some(27),
    };
    let (_tmp, rec) = workload(&mut replay, 4096, &plan);
    rec.check_images(&mut replay, PUTS_IMAGES);
}

/// Rolls in a row with no sync between them: the finisher of each segment syncs the
/// state, which the roll after it already changed in memory to name the next segment,
/// before the segment's own bytes. A crash in between keeps a state naming a segment
/// whose records (adopted through their frames) came after writes the crash lost.
#[test]
fn log_store_rolls_without_sync_crash_images() {
    let mut replay = Replay::new("log_store_rolls_without_sync_crash_images");
    let (tmp, dir) = store();
    drop(dir);
    let opts = options(4096);
    let mut w = Workload::open(tmp.path(), &opts, Model::new(), false);
    w.sync_after_roll = false;
    let mut pool = Pool::new([]);
    let plan = Plan {
        rounds: 10,
        per_round: 40,
        fresh: 0.35,
        compact_every: None,
        clear_at: None,
    };
    run(&mut w, &mut pool, &plan, &mut replay.rng);
    let rec = w.finish(&opts, never_keys());
    rec.check_images(&mut replay, ROLLS_IMAGES);
}

/// Write batches (new keys, overwrites, deletes, a key twice, some batches larger than a
/// segment or a lane): after a crash each is all there or not at all.
#[test]
fn log_store_batches_crash_images() {
    let mut replay = Replay::new("log_store_batches_crash_images");
    let (tmp, dir) = store();
    drop(dir);
    let opts = options(8192);
    let mut w = Workload::open(tmp.path(), &opts, Model::new(), false);
    let mut pool = Pool::new([]);
    let rng = &mut replay.rng;
    for round in 0..40 {
        for _ in 0..rng.random_range(1..=4) {
            let n = rng.random_range(1..=12);
            let large = rng.random_bool(0.08);
            let mut ops: Vec<Effect> = Vec::new();
            for j in 0..n {
                let key = match rng.random_range(0..10) {
                    0..6 => format!("batch-{}-{j}", w.batches.len()).into_bytes(),
                    6..9 => pool.key(0.3, rng),
                    _ => match ops.last() {
                        Some((k, _)) => k.clone(), // the same key twice in one batch
                        None => pool.key(0.0, rng),
                    },
                };
                let value = if rng.random_bool(0.15) {
                    None
                } else {
                    let len = if large {
                        rng.random_range(1_000..7_000)
                    } else {
                        rng.random_range(0..150)
                    };
                    Some(w.value(len, rng))
                };
                ops.push((key, value));
            }
            w.batch(ops);
            if rng.random_bool(0.2) {
                let op = random_op(&mut w, &mut pool, 0.3, rng);
                w.apply(op);
            }
            if rng.random_bool(0.1) {
                w.mid();
            }
        }
        if round < 39 {
            w.sync();
        }
    }
    w.mid();
    let rec = w.finish(&opts, never_keys());
    assert!(rec.batches.len() > 80, "{} batches", rec.batches.len());
    rec.check_images(&mut replay, BATCH_IMAGES);
}

/// Overwrites and deletes over a small set of keys, compacted every few rounds (after a
/// sync or with unsynced writes), with writes after each compaction: an image holds the
/// old generation or the new one, never a mix, with the content of a sync it may hold.
#[test]
fn log_store_compaction_crash_images() {
    let mut replay = Replay::new("log_store_compaction_crash_images");
    let plan = Plan {
        rounds: 36,
        per_round: 18,
        fresh: 0.1,
        compact_every: Some(4),
        clear_at: Some(21),
    };
    let (_tmp, rec) = workload(&mut replay, 8192, &plan);
    rec.check_images(&mut replay, COMPACTION_IMAGES);
}

/// Compactions while another thread writes (overwrites, deletes, new keys, batches):
/// the writes that land in the segment compaction rolls are copied, the later ones go to
/// the segments it keeps and must win over the copies after a crash too. (The thread
/// interleaving is not replayed by the seed.)
#[test]
fn log_store_compaction_with_writes_crash_images() {
    let mut replay = Replay::new("log_store_compaction_with_writes_crash_images");
    let (tmp, dir) = store();
    drop(dir);
    let opts = options(256 * 1024);
    let mut w = Workload::open(tmp.path(), &opts, Model::new(), false);
    let mut pool = Pool::new([]);
    let rng = &mut replay.rng;
    let small = |w: &mut Workload, pool: &mut Pool, rng: &mut _| loop {
        let op = random_op(w, pool, 0.15, rng);
        let big = match &op {
            Op::Put(_, v) => v.len() > 300,
            _ => false,
        };
        if !big {
            return op;
        }
    };
    for _ in 0..60 {
        let op = small(&mut w, &mut pool, rng);
        w.apply(op);
    }
    w.sync();
    for _ in 0..10 {
        for _ in 0..rng.random_range(0..20) {
            let op = small(&mut w, &mut pool, rng);
            w.apply(op);
        }
        if rng.random_bool(0.5) {
            w.sync();
        }
        let n = rng.random_range(10..60);
        let ops = (0..n).map(|_| small(&mut w, &mut pool, rng)).collect();
        let pauses = (0..n).map(|_| rng.random_range(0..40)).collect();
        let head_start = rng.random_range(0..200);
        w.compact_with_writes(ops, pauses, head_start, rng);
        for _ in 0..rng.random_range(0..10) {
            let op = small(&mut w, &mut pool, rng);
            w.apply(op);
            if rng.random_bool(0.2) {
                w.mid();
            }
        }
        w.sync();
    }
    // How many writes ran during a compaction depends on the scheduler: shown, not
    // asserted.
    let during: usize = w
        .overlap
        .iter()
        .map(|&(before, after, _)| after - before)
        .sum();
    eprintln!(
        "{} writes ran during compactions; done when compaction began and returned, of \
         all: {:?}",
        during, w.overlap
    );
    let rec = w.finish(&opts, never_keys());
    rec.check_images(&mut replay, CONCURRENT_IMAGES);
}

/// Crash, recover (checked), keep working on the recovered disk (stale bytes past the
/// recovered lengths, garbage of an interrupted roll or compaction), crash again.
#[test]
fn log_store_crash_twice() {
    let mut replay = Replay::new("log_store_crash_twice");
    let plan = Plan {
        rounds: 16,
        per_round: 14,
        fresh: 0.2,
        compact_every: Some(5),
        clear_at: None,
    };
    let (_tmp, first) = workload(&mut replay, 4096, &plan);
    for life in 0..SECOND_LIVES {
        let n = replay.rng.random_range(0..1000);
        let crash = first.random_crash(&mut replay.rng, n);
        replay.context = format!("recovering life {life} from {crash}");
        let image = first.image(&crash);
        let allowed = first.allowed(&crash);
        let next = allowed.generations.iter().max().expect("a generation") + 1;
        debris(&image, next, &mut replay.rng);
        let (_, model) = check_store(image.path(), &first, &allowed, Exercise::Nothing)
            .unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        let mut w = Workload::open(image.path(), &first.opts, model.clone(), true);
        w.keys.extend(first.keys.iter().cloned());
        w.values.extend(first.values.iter().cloned());
        let mut pool = Pool::new(first.keys.iter().cloned());
        let plan = Plan {
            rounds: 12,
            per_round: 14,
            fresh: 0.2,
            compact_every: Some(5),
            clear_at: None,
        };
        run(&mut w, &mut pool, &plan, &mut replay.rng);
        let second = w.finish(&first.opts, never_keys());
        second.check_images(&mut replay, SECOND_LIFE_IMAGES);
    }
}
