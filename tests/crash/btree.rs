//! Crash images of a BTreeStore: write transactions over the default tree and named
//! trees (inserts, values out of line, removes and range removes that merge pages, tree
//! creation and deletion, aborts), committed durably or unsynced, across checkpoints,
//! compactions (explicit, and automatic at a checkpoint), and a second crash after
//! recovering from a first.
//!
//! A BTreeStore is a state Journal (`bt/state/journal.acc`) and one format-2 AppendOnly
//! log per generation (`bt/gG/data-NN.acc`, `bt/gG/length.acc`). What a step flushes, in
//! order (G is the generation current before the step):
//! - a durable commit (`commit()`), or `sync()`: the log's lanes (an msync of the bytes
//!   appended since the last flush, the commit: the record's frame proves it), then its
//!   length register, written only when the tail past the recorded length reaches 4 MiB;
//! - a checkpoint (inside a commit once `checkpoint_bytes` of log have passed since the
//!   last one, `checkpoint()`, or a transaction too large to log, which commits by one):
//!   the log's lanes (after the commit's own msync, for a durable commit), its length
//!   register (`sync_recorded`), then the state journal;
//! - `compact()`: the new generation's lanes and length register (`sync_recorded`), then
//!   the state journal, which switches to it. The old log is not flushed: commits made
//!   unsynced before it are durable only once the state names the new generation;
//! - a checkpoint that finds garbage over the store's share compacts at once: the
//!   checkpoint's flushes, then the compaction's.
//!
//! The workload watches every flush under the store directory (the crate's
//! fault-injection hooks) and records a step after any action that flushed, so a commit
//! that checkpointed or compacted is known as such. The flushes observed are checked
//! against the step's declared order: each flushed file belongs to a group of it, the
//! last flush of each group comes in group order, and every group that must hold new
//! bytes was flushed. The snapshot images take the declared order as given (a step that
//! flushed less than it wrote would go unnoticed there), so at a share of the points a
//! power-loss image of the device as the observed flushes left it (`disk.rs`) is
//! checked too. Two limits of the snapshot model, both on the safe side, as for the
//! LogStore:
//! - the state journal is written twice by a checkpoint that compacts; a file has one
//!   group, so the journal sits at the switch, and a crash between the two is modeled
//!   with the journal from before the checkpoint (the same content: open replays to the
//!   checkpoint record, or through the commits it covers);
//! - a file deleted by S1 is taken from S0 (the harness's rule): compaction retires the
//!   old generation, whose log changed since S0, so the workload holds a snapshot (which
//!   keeps the old generation's files) across every action and drops it only once the
//!   action's point is recorded.
//!
//! Each image is checked: the store opens and `verify()` passes; every tree (listed by a
//! snapshot's `trees()`, read by `iter()` both ways and by `get`) holds the model state
//! after some prefix of the committed transactions, from every one a step that returned
//! made durable up to every one committed by the crash (so each transaction is whole or
//! absent, and an aborted one or one still open at the crash is absent); exactly the
//! durable ones if nothing unsynced reached the disk, exactly all of them if everything
//! did (a kill: the page cache kept); only the current generation's directory is left;
//! and the store works afterwards (a commit, a compaction for some, a reopen).
//!
//! `btree_checks_catch_lost_and_extra_commits` shows that the checks fail on disks the
//! contract rules out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use crate::harness::{serial, show};
use accretion::faults::{self, Flush, HookGuard};
use accretion::{BTreeOptions, BTreeStore, Dir, WriteTxn};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::DiskModel;
use crate::harness::{Crash, FlushOrder, Granularity, Group, History, Image, Mix, Replay};
use crate::{leftover_lane_tmp, open_dir, random_bytes, store};

// Crash images checked per scenario.
const COMMITS_IMAGES: usize = 500;
const COMPACTION_IMAGES: usize = 400;
/// Crash-recover-crash: recovered first crashes, and images of each second life.
const SECOND_LIVES: usize = 4;
const SECOND_LIFE_IMAGES: usize = 60;
/// The share of history points at which a power-loss image of the device (as the
/// flushes observed so far left it) is checked too.
const DEVICE_SHARE: f64 = 0.3;

/// The store's name in its directory.
const NAME: &str = "bt";
/// The named trees the workload uses (besides the default tree, `""`).
const NAMED: [&str; 3] = ["alpha", "beta", "gamma"];

/// One tree's content; values are shared between the model's states.
type Tree = BTreeMap<Vec<u8>, Arc<[u8]>>;
/// Every tree by name, the default one (`""`) included.
type Model = BTreeMap<String, Tree>;

fn options() -> BTreeOptions {
    BTreeOptions {
        // Checkpoints every 64 KiB of log, and automatic compaction once the log passes
        // 1 MiB with more than half of it garbage: both happen within a short workload.
        checkpoint_bytes: 64 << 10,
        compact_min_bytes: 1 << 20,
        ..BTreeOptions::default()
    }
}

fn empty_model() -> Model {
    let mut m = Model::new();
    m.insert(String::new(), Tree::new());
    m
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
enum Op {
    Insert(String, Vec<u8>, Vec<u8>),
    Remove(String, Vec<u8>),
    RemoveRange(String, Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// Opens the tree, which creates it (empty) if it does not exist.
    Create(String),
    DeleteTree(String),
}

/// One of `keys`, at random.
fn pick(keys: &[&Vec<u8>], rng: &mut impl Rng) -> Vec<u8> {
    keys[rng.random_range(0..keys.len())].clone()
}

fn in_range(k: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let after_start = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
    };
    let before_end = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
    };
    after_start && before_end
}

/// Applies `op` to `model` as the store applies it: opening a tree to change it creates
/// it.
fn model_op(model: &mut Model, op: &Op) {
    match op {
        Op::Insert(t, k, v) => {
            model
                .entry(t.clone())
                .or_default()
                .insert(k.clone(), Arc::from(&v[..]));
        }
        Op::Remove(t, k) => {
            model.entry(t.clone()).or_default().remove(k);
        }
        Op::RemoveRange(t, start, end) => {
            model
                .entry(t.clone())
                .or_default()
                .retain(|k, _| !in_range(k, start, end));
        }
        Op::Create(t) => {
            model.entry(t.clone()).or_default();
        }
        Op::DeleteTree(t) => {
            model.remove(t);
        }
    }
}

fn run_op(txn: &mut WriteTxn<'_>, op: &Op) {
    match op {
        Op::Insert(t, k, v) => {
            txn.open_tree(t)
                .expect("open tree")
                .insert(k, v)
                .expect("insert");
        }
        Op::Remove(t, k) => {
            txn.open_tree(t)
                .expect("open tree")
                .remove(k)
                .expect("remove");
        }
        Op::RemoveRange(t, start, end) => {
            txn.open_tree(t)
                .expect("open tree")
                .remove_range((start.clone(), end.clone()))
                .expect("remove range");
        }
        Op::Create(t) => {
            txn.open_tree(t).expect("create tree");
        }
        Op::DeleteTree(t) => {
            txn.delete_tree(t).expect("delete tree");
        }
    }
}

/// True for a value the store keeps out of line (its leaf cell would pass a quarter
/// page): a record of its own in the log, appended before the commit record.
fn out_of_line(op: &Op) -> bool {
    matches!(op, Op::Insert(_, k, v) if k.len() + v.len() > 1000)
}

// ---------------------------------------------------------------------------------------
// Steps and their flush orders

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A durable commit or `sync()`: the log's flush.
    Sync,
    /// A checkpoint, inside a commit or not.
    Checkpoint,
    /// A compaction, explicit or after a checkpoint.
    Compact,
}

/// What a compaction step flushed of the old generation before its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Old {
    /// Nothing: an explicit compaction, or one that is a commit's checkpoint.
    Untouched,
    /// Its lanes: a durable commit whose checkpoint was the compaction.
    Synced,
    /// Lanes and length: a checkpoint, then the compaction.
    Checkpointed,
}

/// A recorded step that ends with everything committed before it durable.
#[derive(Clone, Debug)]
struct Step {
    kind: Kind,
    order: FlushOrder,
    /// The group whose flush makes the step's content durable.
    content_commit: usize,
    /// The group whose flush makes the step's generation current.
    generation_commit: usize,
    /// A group the step may leave unflushed (the old log's length, when a durable commit
    /// flushed the old log's lanes and then compacted without a checkpoint).
    optional: Option<usize>,
}

fn journal_file() -> String {
    format!("{NAME}/state/journal.acc")
}

fn log_groups(generation: u64) -> Vec<Group> {
    FlushOrder::append_only(&format!("{NAME}/g{generation}")).groups
}

fn journal_groups() -> Vec<Group> {
    FlushOrder::journal(&format!("{NAME}/state")).groups
}

impl Step {
    fn new(
        kind: Kind,
        groups: Vec<Group>,
        content_commit: usize,
        generation_commit: usize,
    ) -> Step {
        Step {
            kind,
            order: FlushOrder {
                groups,
                commit: content_commit,
            },
            content_commit,
            generation_commit,
            optional: None,
        }
    }

    /// The log of generation `g` flushed: lanes (the commit), then length.
    fn sync(g: u64) -> Step {
        Step::new(Kind::Sync, log_groups(g), 0, 0)
    }

    /// The log of `g` flushed (the commit) and its length recorded, then the state.
    fn checkpoint(g: u64) -> Step {
        Step::new(
            Kind::Checkpoint,
            [log_groups(g), journal_groups()].concat(),
            0,
            0,
        )
    }

    /// Compaction of `g` into `g + 1`: its log (lanes, length), then the state. After a
    /// checkpoint, the old log's flushes come first and commit the content; after a
    /// durable commit (a compaction that is the commit's checkpoint), so do the old
    /// log's lanes, its length register being left as it was; else the content commits
    /// with the generation, at the state's switch.
    fn compact(g: u64, old: Old) -> Step {
        let mut groups = Vec::new();
        if old != Old::Untouched {
            groups.extend(log_groups(g));
        }
        groups.extend(log_groups(g + 1));
        let switch = groups.len();
        groups.extend(journal_groups());
        let content = if old == Old::Untouched { switch } else { 0 };
        let mut step = Step::new(Kind::Compact, groups, content, switch);
        if old == Old::Synced {
            step.optional = Some(1);
        }
        step
    }

    fn with_commit(&self, commit: usize) -> FlushOrder {
        FlushOrder {
            groups: self.order.groups.clone(),
            commit,
        }
    }

    /// Whether the flushes observed during the step (relative paths, in order) agree
    /// with its declared order: each flushed file belongs to a group; the last flush of
    /// each group comes in group order (a group's content in S1 is on disk once its last
    /// flush returned, which a cut past it assumes); and every group that must hold new
    /// bytes was flushed: all of a checkpoint's or a compaction's, the lanes of a sync
    /// if the log `grew` since the last step.
    fn agrees(&self, flushed: &[String], grew: bool) -> Result<(), String> {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, rel) in flushed.iter().enumerate() {
            let g = self
                .order
                .group_of(rel)
                .ok_or_else(|| format!("{rel} was flushed but belongs to no group"))?;
            last.insert(g, i);
        }
        let required: Vec<usize> = match self.kind {
            Kind::Sync if grew => vec![0],
            Kind::Sync => Vec::new(),
            Kind::Checkpoint | Kind::Compact => (0..self.order.len())
                .filter(|&g| Some(g) != self.optional)
                .collect(),
        };
        if let Some(g) = required.iter().find(|g| !last.contains_key(g)) {
            return Err(format!("group {g} was not flushed"));
        }
        let mut by_group: Vec<(usize, usize)> = last.into_iter().collect();
        by_group.sort_by_key(|&(_, i)| i);
        if by_group.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(format!("groups last flushed in the order {by_group:?}"));
        }
        Ok(())
    }
}

/// The flushes of files under a store directory (msyncs of lanes, fdatasyncs of
/// registers and journals), as relative paths in the order made. Creating a file
/// (the fsync of its temporary name, the directory's fsync) is not a step's flush: the
/// harness takes a new file as created durably.
struct Flushes {
    seen: Arc<Mutex<Vec<String>>>,
    _hook: HookGuard,
}

impl Flushes {
    fn watch(root: &Path) -> Flushes {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let hook = {
            let (root, seen) = (root.to_path_buf(), Arc::clone(&seen));
            faults::install(move |flush| {
                let path = match flush {
                    Flush::File { path } | Flush::Range { path, .. } => *path,
                    _ => return None,
                };
                if let Ok(rel) = path.strip_prefix(&root)
                    && let Some(rel) = rel.to_str()
                    && !rel.ends_with(".tmp")
                {
                    seen.lock().push(rel.to_string());
                }
                None
            })
        };
        Flushes { seen, _hook: hook }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock())
    }
}

// ---------------------------------------------------------------------------------------
// The workload side

/// How a transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Durable,
    Unsynced,
    Abort,
}

/// A BTreeStore at work, with the history of its directory and the model of every state.
struct Workload {
    store: BTreeStore,
    flushes: Flushes,
    /// The device as the flushes observed so far left it.
    device: DiskModel,
    /// Power-loss images of the device checked.
    device_images: usize,
    /// The points of bulk transactions' checkpoints.
    bulk_points: Vec<usize>,
    /// For the device's images.
    rng: StdRng,
    history: History,
    /// The step each history point follows; `None` for the open and mid-work points.
    steps: Vec<Option<Step>>,
    /// The content after each committed transaction (index = transactions committed;
    /// 0: at the start of the history).
    states: Vec<Model>,
    /// Transactions committed at each history point.
    at_point: Vec<usize>,
    /// Per sync (index = sync number): the transactions it made durable, and the
    /// generation current after it.
    synced: Vec<(usize, u64)>,
    generation: u64,
    /// The log's length at the last step: what it flushed.
    flushed_to: u64,
    serial: u64,
    next_key: usize,
    /// Steps of each kind, and the greatest height the default tree reached.
    kinds: [usize; 3],
    height: u32,
}

impl Workload {
    /// Opens the store at `root` (a store directory), whose content is `model`; a
    /// `second_life` (an image recovered from a crash) first commits once, durably.
    fn open(root: &Path, model: Model, second_life: bool, rng: &mut impl Rng) -> Workload {
        let dir = Dir::open(root).expect("open the directory");
        let store = BTreeStore::open(&dir, NAME, options()).expect("open the store");
        let mut model = model;
        // The first append of an open syncs the log's length register (its epoch), a
        // flush outside any step: made, with a sync, before the history starts so that
        // S0 of every crash holds it. A fresh store's log records its first epoch when
        // it is created, at open.
        if second_life {
            let op = Op::Insert(
                String::new(),
                b"second-life".to_vec(),
                b"epoch taken".to_vec(),
            );
            let mut txn = store.begin_write().expect("begin");
            run_op(&mut txn, &op);
            txn.commit().expect("commit");
            model_op(&mut model, &op);
        }
        let stats = store.stats();
        let (generation, flushed_to) = (stats.generation, stats.log_bytes);
        let flushes = Flushes::watch(root);
        // Everything on the device now is durable: the store was created durably, and
        // the recovered one was made durable by its open, and synced since.
        let device = DiskModel::start(root);
        let history = History::new(root);
        Workload {
            store,
            flushes,
            device,
            device_images: 0,
            bulk_points: Vec::new(),
            rng: StdRng::seed_from_u64(rng.random()),
            history,
            steps: vec![None],
            states: vec![model],
            at_point: vec![0],
            synced: vec![(0, generation)],
            generation,
            flushed_to,
            serial: 0,
            next_key: 0,
            kinds: [0; 3],
            height: 0,
        }
    }

    fn model(&self) -> &Model {
        self.states.last().expect("a state")
    }

    /// A value unique to this write: its serial number, then random bytes; one in ten
    /// goes out of line (2 to 10 KB), a few more are inline but large.
    fn value(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        self.serial += 1;
        let len = match rng.random_range(0..100) {
            0..10 => rng.random_range(2_000..10_000),
            10..25 => rng.random_range(300..900),
            _ => rng.random_range(0..120),
        };
        let mut v = format!("#{}:", self.serial).into_bytes();
        v.extend(random_bytes(len, rng));
        v
    }

    /// A key never used before: a number, and for some a long random tail (long keys
    /// make branch pages hold few children, so that trees grow taller).
    fn fresh_key(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        self.next_key += 1;
        let mut key = format!("k{:06}", self.next_key).into_bytes();
        if rng.random_bool(0.5) {
            key.extend(random_bytes(rng.random_range(1..400), rng));
        }
        key
    }

    /// A random transaction of up to `max_ops` operations, and the model after it.
    /// Trees grow while smaller than `target` keys (a quarter of it for named trees),
    /// and shrink past it, by removes and range removes (which merge pages).
    fn random_txn(
        &mut self,
        target: usize,
        max_ops: usize,
        rng: &mut impl Rng,
    ) -> (Vec<Op>, Model) {
        let mut next = self.model().clone();
        let mut ops = Vec::new();
        // A growing default tree also gets runs of new keys, so that it reaches a height
        // of three within the run.
        if next[""].len() < target && rng.random_bool(0.25) {
            for _ in 0..rng.random_range(20..80) {
                let op = Op::Insert(String::new(), self.fresh_key(rng), self.value(rng));
                model_op(&mut next, &op);
                ops.push(op);
            }
        }
        for _ in 0..rng.random_range(1..=max_ops) {
            let tree = if rng.random_bool(0.65) {
                String::new()
            } else {
                NAMED[rng.random_range(0..NAMED.len())].to_string()
            };
            let keys: Vec<&Vec<u8>> = next
                .get(&tree)
                .map(|t| t.keys().collect())
                .unwrap_or_default();
            let want = if tree.is_empty() { target } else { target / 4 };
            let grow = keys.len() < want;
            let op = match rng.random_range(0..100) {
                0..3 if !tree.is_empty() => Op::Create(tree),
                3..6 if !tree.is_empty() => Op::DeleteTree(tree),
                6..12 if keys.len() > 2 => {
                    let (a, b) = (pick(&keys, rng), pick(&keys, rng));
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let start = match rng.random_range(0..10) {
                        0 => Bound::Unbounded,
                        1..5 => Bound::Excluded(lo),
                        _ => Bound::Included(lo),
                    };
                    let end = match rng.random_range(0..10) {
                        0 => Bound::Unbounded,
                        1..5 => Bound::Excluded(hi),
                        _ => Bound::Included(hi),
                    };
                    Op::RemoveRange(tree, start, end)
                }
                _ if !keys.is_empty() && rng.random_bool(if grow { 0.2 } else { 0.65 }) => {
                    Op::Remove(tree, pick(&keys, rng))
                }
                _ => {
                    let key = if keys.is_empty() || rng.random_bool(0.6) {
                        self.fresh_key(rng)
                    } else {
                        pick(&keys, rng)
                    };
                    Op::Insert(tree, key, self.value(rng))
                }
            };
            model_op(&mut next, &op);
            ops.push(op);
        }
        (ops, next)
    }

    /// Runs `ops` in one transaction ended by `end`. Holds a snapshot throughout, so
    /// that a compaction keeps the old generation's files until the step is recorded.
    /// With `mid_txn`, records a mid-work point after the transaction's first value
    /// out of line is appended (the transaction is then open: absent from any image).
    fn transaction(&mut self, ops: &[Op], next: Model, end: End, mid_txn: bool) {
        let store = self.store.clone();
        let pin = store.begin_read();
        let mut txn = store.begin_write().expect("begin");
        let mut mid_done = !mid_txn;
        for op in ops {
            run_op(&mut txn, op);
            if !mid_done && out_of_line(op) {
                self.mid();
                mid_done = true;
            }
        }
        let seq = store.stats().commits;
        match end {
            End::Durable => txn.commit().expect("commit"),
            End::Unsynced => txn.commit_unsynced().expect("commit unsynced"),
            End::Abort => txn.abort(),
        }
        // A transaction that changed nothing (its removes found no key, its trees were
        // there already) commits nothing: no record, no flush, so not a sync either
        // (the commits made unsynced before it stay unsynced).
        let committed = store.stats().commits > seq;
        if end != End::Abort {
            assert!(
                committed || next == *self.model(),
                "a change was not committed"
            );
            self.states.push(next);
        }
        self.settle(end == End::Durable && committed, false);
        drop(pin);
    }

    /// A transaction too large to log (over 1 MiB of operations: inline values of about
    /// 900 bytes), which commits by a checkpoint whatever is asked; then a range removal
    /// of most of it.
    fn bulk(&mut self, end: End, rng: &mut impl Rng) {
        let mut next = self.model().clone();
        let mut ops = Vec::new();
        let first = self.next_key + 1;
        for _ in 0..1_250 {
            self.serial += 1;
            self.next_key += 1;
            let key = format!("k{:06}", self.next_key).into_bytes();
            let mut v = format!("#{}:", self.serial).into_bytes();
            v.extend(random_bytes(900, rng));
            ops.push(Op::Insert(String::new(), key, v));
        }
        for op in &ops {
            model_op(&mut next, op);
        }
        self.transaction(&ops, next, end, false);
        assert_eq!(
            self.steps.last().and_then(|s| s.as_ref()).map(|s| s.kind),
            Some(Kind::Checkpoint),
            "a bulk transaction commits by a checkpoint"
        );
        self.bulk_points.push(self.steps.len() - 1);
        let range = Op::RemoveRange(
            String::new(),
            Bound::Included(format!("k{:06}", first + 10).into_bytes()),
            Bound::Excluded(format!("k{:06}", self.next_key).into_bytes()),
        );
        let mut next = self.model().clone();
        model_op(&mut next, &range);
        self.transaction(&[range], next, End::Unsynced, false);
    }

    fn sync(&mut self) {
        let store = self.store.clone();
        let pin = store.begin_read();
        store.sync().expect("sync");
        self.settle(true, false);
        drop(pin);
    }

    fn checkpoint(&mut self) {
        let store = self.store.clone();
        let pin = store.begin_read();
        store.checkpoint().expect("checkpoint");
        self.settle(true, false);
        drop(pin);
    }

    fn compact(&mut self) {
        let store = self.store.clone();
        let pin = store.begin_read();
        store.compact().expect("compact");
        self.settle(true, true);
        drop(pin);
    }

    fn mid(&mut self) {
        self.history.mid();
        self.steps.push(None);
        self.at_point.push(self.states.len() - 1);
        self.device_image();
    }

    /// Now and then, checks a power-loss image of the device as the flushes observed so
    /// far left it: at least every transaction the last step made durable, at most every
    /// one committed; exactly the first with nothing unflushed on the device, exactly
    /// the second with everything. Unlike the snapshot images, this holds the store to
    /// what it flushed, not to the flush order declared for its steps.
    fn device_image(&mut self) {
        if !self.rng.random_bool(DEVICE_SHARE) {
            return;
        }
        let (durable, written) = (self.synced.last().expect("a sync").0, self.states.len() - 1);
        let (mix, lo, hi) = match self.rng.random_range(0..4) {
            0 => (0.0, durable, durable),
            1 => (1.0, written, written),
            _ => (self.rng.random_range(0.05..0.95), durable, written),
        };
        let granularity = if self.rng.random_bool(0.5) {
            Granularity::Page
        } else {
            Granularity::Sector
        };
        let image = self.device.power_loss(&mut self.rng, granularity, mix);
        let allowed = Allowed {
            lo,
            hi,
            generations: vec![self.generation],
        };
        let point = self.steps.len() - 1;
        if let Err(e) = check_store(image.path(), &self.states, &allowed, Exercise::Nothing) {
            panic!(
                "power-loss image of the device at point {point} ({granularity:?}, mix \
                 {mix:.2}): expected the state after {lo}..={hi} transactions: {e}"
            );
        }
        self.device_images += 1;
    }

    /// Records the step the last action made, known from the flushes it made: none is
    /// no step, unless the action was itself a sync (`synced`: a durable commit, a sync,
    /// a checkpoint or a compaction), which then flushed nothing new.
    fn settle(&mut self, synced: bool, explicit_compact: bool) {
        let flushed = self.flushes.take();
        let stats = self.store.stats();
        self.height = self.height.max(stats.height);
        let g = self.generation;
        let step = if stats.generation != g {
            assert_eq!(stats.generation, g + 1, "one compaction per action");
            self.generation = stats.generation;
            // An automatic compaction follows a checkpoint of the old generation, or is
            // the checkpoint itself (when the checkpoint would leave garbage over the
            // ratio): then, like an explicit one, it flushes nothing of the old.
            let prefix = format!("{NAME}/g{g}/");
            let length = format!("{prefix}length.acc");
            let old = if flushed.contains(&length) {
                Old::Checkpointed
            } else if flushed.iter().any(|f| f.starts_with(&prefix)) {
                Old::Synced
            } else {
                Old::Untouched
            };
            assert!(
                !(explicit_compact && old != Old::Untouched),
                "compact() flushed the old generation: {flushed:?}"
            );
            Step::compact(g, old)
        } else if explicit_compact {
            panic!("compact() left generation {g} current");
        } else if flushed.contains(&journal_file()) {
            Step::checkpoint(g)
        } else if synced || !flushed.is_empty() {
            Step::sync(g)
        } else {
            return;
        };
        let grew = stats.log_bytes > self.flushed_to || step.kind == Kind::Compact;
        self.flushed_to = stats.log_bytes;
        if let Err(e) = step.agrees(&flushed, grew) {
            panic!(
                "the flushes of a {:?} step disagree with its declared order ({e}): {flushed:?}",
                step.kind
            );
        }
        self.kinds[step.kind as usize] += 1;
        self.history.synced();
        self.steps.push(Some(step));
        self.synced.push((self.states.len() - 1, self.generation));
        self.at_point.push(self.states.len() - 1);
        self.device_image();
    }

    fn finish(self) -> Recorded {
        drop(self.store);
        Recorded {
            history: self.history,
            steps: self.steps,
            states: self.states,
            at_point: self.at_point,
            synced: self.synced,
            kinds: self.kinds,
            height: self.height,
            device_images: self.device_images,
            bulk_points: self.bulk_points,
        }
    }
}

/// `txns` random transactions, growing the trees to `targets[0]` keys, then shrinking
/// them to `targets[1]`, and so on (the targets change evenly over the run); durable or
/// unsynced commits, some aborts, syncs, checkpoints, mid-work points (some inside an
/// open transaction), and a compaction every `compact_every` transactions.
struct Plan {
    txns: usize,
    targets: &'static [usize],
    max_ops: usize,
    compact_every: Option<usize>,
    /// A bulk transaction (which commits by a checkpoint) at this transaction.
    bulk_at: Option<usize>,
}

fn run(w: &mut Workload, plan: &Plan, rng: &mut impl Rng) {
    for i in 0..plan.txns {
        let target = plan.targets[i * plan.targets.len() / plan.txns];
        if plan.bulk_at == Some(i) {
            let end = if rng.random_bool(0.5) {
                End::Durable
            } else {
                End::Unsynced
            };
            w.bulk(end, rng);
        }
        let (ops, next) = w.random_txn(target, plan.max_ops, rng);
        let end = match rng.random_range(0..100) {
            0..40 => End::Durable,
            40..95 => End::Unsynced,
            _ => End::Abort,
        };
        let mid_txn = rng.random_bool(0.1);
        w.transaction(&ops, next, end, mid_txn);
        match rng.random_range(0..100) {
            0..8 => w.sync(),
            8..11 => w.checkpoint(),
            11..20 => w.mid(),
            _ => {}
        }
        if plan.compact_every.is_some_and(|c| i % c == c - 1) {
            if rng.random_bool(0.3) {
                w.sync();
            }
            w.compact();
            if rng.random_bool(0.5) {
                w.mid();
            }
        }
    }
    // The last change unsynced, whatever the draws: every workload then has a point
    // whose disk may lack a commit that returned (the checks of impossible disks need
    // one; a seed with none failed them).
    let mut next = w.model().clone();
    w.serial += 1;
    w.next_key += 1;
    let last = Op::Insert(
        String::new(),
        format!("k{:06}", w.next_key).into_bytes(),
        format!("#{}:last", w.serial).into_bytes(),
    );
    model_op(&mut next, &last);
    w.transaction(&[last], next, End::Unsynced, false);
    w.mid();
}

// ---------------------------------------------------------------------------------------
// The checking side

/// A finished workload: its history, the model of every state, what the checks need.
struct Recorded {
    history: History,
    steps: Vec<Option<Step>>,
    states: Vec<Model>,
    at_point: Vec<usize>,
    synced: Vec<(usize, u64)>,
    kinds: [usize; 3],
    height: u32,
    device_images: usize,
    bulk_points: Vec<usize>,
}

/// What an image may hold: the states `lo..=hi` (transactions committed), and the
/// generations.
struct Allowed {
    lo: usize,
    hi: usize,
    generations: Vec<u64>,
}

impl Recorded {
    /// The crashes to check: with `sweep`, first every cut of every compaction and of
    /// every bulk transaction's checkpoint with nothing, everything and a random share
    /// of the unsynced pages on disk; then, up to `images`, one in four mid-work, one
    /// in four during a compaction (if there was one), the rest during any recorded
    /// step, with a random cut.
    fn crashes(&self, rng: &mut impl Rng, images: usize, sweep: bool) -> Vec<Crash> {
        let points = |f: &dyn Fn(&Option<Step>) -> bool| -> Vec<usize> {
            (1..self.steps.len())
                .filter(|&i| f(&self.steps[i]))
                .collect()
        };
        let mids = points(&|s| s.is_none());
        let compactions = points(&|s| s.as_ref().is_some_and(|s| s.kind == Kind::Compact));
        let steps = points(&|s| s.is_some());
        let mut out = Vec::new();
        if sweep {
            for &at in compactions.iter().chain(&self.bulk_points) {
                let groups = self.steps[at].as_ref().expect("a step").order.len();
                for cut in 0..=groups {
                    for mix in [Mix::Old, Mix::New, Mix::Random(0.5)] {
                        let mut crash = Crash::random(rng, at, Some(cut));
                        crash.mix = mix;
                        out.push(crash);
                    }
                }
            }
        }
        for n in out.len()..images {
            let from = match n % 4 {
                3 if !mids.is_empty() => &mids,
                1 if !compactions.is_empty() => &compactions,
                _ => &steps,
            };
            let at = from[rng.random_range(0..from.len())];
            let cut = self.steps[at]
                .as_ref()
                .map(|s| rng.random_range(0..=s.order.len()));
            out.push(Crash::random(rng, at, cut));
        }
        out
    }

    /// The flush order of the step point `at` follows (any for a mid-work point).
    fn order(&self, at: usize) -> &FlushOrder {
        self.steps[at]
            .as_ref()
            .or_else(|| self.steps.iter().flatten().next())
            .map(|s| &s.order)
            .expect("a recorded step")
    }

    fn allowed(&self, crash: &Crash) -> Allowed {
        let syncs = |commit: Option<usize>| match (&self.steps[crash.at], commit) {
            (Some(step), Some(c)) => self.history.possible_syncs(crash, &step.with_commit(c)),
            _ => vec![self.history.durable_sync(crash)],
        };
        let step = self.steps[crash.at].as_ref();
        let content = syncs(step.map(|s| s.content_commit));
        let generation = syncs(step.map(|s| s.generation_commit));
        let mut generations: Vec<u64> = generation.iter().map(|&s| self.synced[s].1).collect();
        generations.dedup();
        // Every transaction durable by then, and any of the later ones up to the crash,
        // in order. Exactly the durable ones if nothing unsynced reached the disk (every
        // group not flushed yet holds S0), exactly all if everything did (a kill).
        let durable = self.synced[content[0]].0;
        let written = self.at_point[crash.at];
        let (lo, hi) = match crash.mix {
            Mix::Old => (durable, durable),
            Mix::New => (written, written),
            Mix::Random(_) => (durable, written),
        };
        Allowed {
            lo,
            hi,
            generations,
        }
    }

    /// Builds the image of each crash and checks it; prints a tally per step kind.
    fn check_images(&self, replay: &mut Replay, images: usize, sweep: bool) {
        let crashes = self.crashes(&mut replay.rng, images, sweep);
        // (images, a newer state than the oldest allowed one recovered) for sync,
        // checkpoint, compact, mid-work.
        let mut tally = [(0usize, 0usize); 4];
        for (n, crash) in crashes.iter().enumerate() {
            let kind = self.steps[crash.at].as_ref().map(|s| s.kind);
            replay.context = format!("checking image {n} ({crash}, after {kind:?})");
            let image = self.history.image(crash, self.order(crash.at));
            let allowed = self.allowed(crash);
            // Debris in one image in three, a compaction after recovery in one in two,
            // independently.
            if n % 3 == 1 {
                debris(&image, &mut replay.rng);
            }
            let exercise = if n % 2 == 0 {
                Exercise::Compact
            } else {
                Exercise::Commit
            };
            match check_store(image.path(), &self.states, &allowed, exercise) {
                Ok((found, _)) => {
                    let t = &mut tally[kind.map_or(3, |k| k as usize)];
                    t.0 += 1;
                    t.1 += usize::from(found > self.synced_floor(crash));
                }
                Err(e) => panic!(
                    "{}: expected the state after {}..={} transactions, generation {:?}: {e}",
                    replay.context, allowed.lo, allowed.hi, allowed.generations
                ),
            }
        }
        eprintln!(
            "{}: {} images over {} points (steps: {} sync, {} checkpoint, {} compact; \
             {} transactions; default tree height up to {}; {} power-loss images of the \
             observed device), seed {}: (images, newer than durable recovered) after \
             sync, checkpoint, compact, mid-work: {tally:?}",
            replay.test,
            crashes.len(),
            self.steps.len(),
            self.kinds[0],
            self.kinds[1],
            self.kinds[2],
            self.states.len() - 1,
            self.height,
            self.device_images,
            replay.seed
        );
    }

    /// The transactions durable at the last sync that returned before `crash`.
    fn synced_floor(&self, crash: &Crash) -> usize {
        self.synced[self.history.durable_sync(crash)].0
    }
}

/// Leaves in `image` what crashes while creating or removing files leave: the `.tmp`
/// file of the next lane of each generation's log, the first lane of a generation a
/// compaction had only begun to create, and a generation renamed aside for removal by
/// another process but not yet deleted.
fn debris(image: &Image, rng: &mut impl Rng) {
    let gens = generation_dirs(image.path()).expect("list the image");
    for g in &gens {
        leftover_lane_tmp(image, &format!("{NAME}/g{g}"), "data", rng);
    }
    let next = gens.iter().max().map_or(0, |g| g + 1);
    let dir = format!("{NAME}/g{next}");
    fs::create_dir_all(image.path().join(&dir)).expect("create debris directory");
    let junk = random_bytes(rng.random_range(0..5_000), rng);
    image.write(&format!("{dir}/data-00.acc.tmp"), &junk);
    let aside = format!("{NAME}/g{next}.1-0.removing");
    fs::create_dir_all(image.path().join(&aside)).expect("create debris directory");
    image.write(&format!("{aside}/data-00.acc"), &junk);
}

/// The generations (`gN`) in a store directory.
fn generation_dirs(root: &Path) -> Result<Vec<u64>, String> {
    let entries = fs::read_dir(root.join(NAME)).map_err(|e| format!("list the store: {e}"))?;
    let mut out: Vec<u64> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix('g')?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The store's content as a reader sees it: every tree a snapshot lists (and the
/// default one), iterated forward, checked against backward iteration, `get` and `len`.
fn contents(store: &BTreeStore) -> Result<Model, String> {
    let snapshot = store.begin_read();
    let mut names = snapshot.trees();
    if names.windows(2).any(|w| w[0] >= w[1]) || names.iter().any(String::is_empty) {
        return Err(format!("trees() lists {names:?}"));
    }
    names.insert(0, String::new());
    let mut out = Model::new();
    for name in names {
        let tree = snapshot
            .open_tree(&name)
            .map_err(|e| format!("open tree {name:?}: {e}"))?
            .ok_or_else(|| format!("tree {name:?} is listed but does not open"))?;
        let mut entries = Tree::new();
        let mut last: Option<&[u8]> = None;
        let iter = tree.iter().map_err(|e| format!("iter {name:?}: {e}"))?;
        for item in iter {
            let (k, v) = item.map_err(|e| format!("iter {name:?}: {e}"))?;
            if last.is_some_and(|l| l >= k) {
                return Err(format!("tree {name:?} is not in key order at {}", show(k)));
            }
            last = Some(k);
            entries.insert(k.to_vec(), Arc::from(v));
        }
        let back: Vec<&[u8]> = tree
            .iter()
            .map_err(|e| format!("iter {name:?}: {e}"))?
            .rev()
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("iter {name:?} backwards: {e}"))?;
        if !back.iter().rev().eq(entries.keys()) {
            return Err(format!("tree {name:?} iterates backwards to other keys"));
        }
        let len = tree.len().map_err(|e| format!("len {name:?}: {e}"))?;
        if len != entries.len() as u64 {
            return Err(format!(
                "tree {name:?}: len {len} but iter yields {}",
                entries.len()
            ));
        }
        for (k, v) in &entries {
            let got = tree.get(k).map_err(|e| format!("get {name:?}: {e}"))?;
            if got != Some(&v[..]) {
                return Err(format!(
                    "tree {name:?}: get({}) disagrees with iter",
                    show(k)
                ));
            }
        }
        if tree
            .get(b"never written")
            .map_err(|e| format!("get: {e}"))?
            .is_some()
        {
            return Err(format!("tree {name:?} holds a key never written"));
        }
        out.insert(name, entries);
    }
    Ok(out)
}

/// How `got` differs from `want`: trees, then the first few keys.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    let mut shown = 0;
    for name in names {
        let (g, w) = (got.get(name), want.get(name));
        if g == w {
            continue;
        }
        let (Some(g), Some(w)) = (g, w) else {
            let _ = write!(
                out,
                "tree {name:?} {}; ",
                if g.is_some() {
                    "is there, unwanted"
                } else {
                    "is missing"
                }
            );
            continue;
        };
        let keys: std::collections::BTreeSet<&Vec<u8>> = g.keys().chain(w.keys()).collect();
        for k in keys {
            let (a, b) = (g.get(k), w.get(k));
            if a == b {
                continue;
            }
            if shown == 4 {
                out.push_str("...");
                return out;
            }
            let _ = write!(
                out,
                "{name:?}/{}: {} instead of {}; ",
                show(k),
                a.map_or("absent".into(), |v| serial(v)),
                b.map_or("absent".into(), |v| serial(v)),
            );
            shown += 1;
        }
    }
    out
}

/// What [`check_store`] does with a store once its recovered content is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exercise {
    Nothing,
    /// A durable commit (insert, remove, a tree created and one deleted), a reopen.
    Commit,
    /// The commit, a compaction, an unsynced commit, a reopen.
    Compact,
}

/// Opens the image and checks it against `allowed`, then exercises the store. Returns
/// which state it held (transactions committed), and the content it was left with.
fn check_store(
    path: &Path,
    states: &[Model],
    allowed: &Allowed,
    exercise: Exercise,
) -> Result<(usize, Model), String> {
    let dir = open_dir(path)?;
    let store = BTreeStore::open(&dir, NAME, options())
        .map_err(|e| format!("BTreeStore::open failed: {e}"))?;
    store
        .verify()
        .map_err(|e| format!("verify after recovery: {e}"))?;
    let got = contents(&store)?;
    let Some(found) = (allowed.lo..=allowed.hi).find(|&i| states[i] == got) else {
        let closest = (allowed.lo..=allowed.hi)
            .min_by_key(|&i| diff(&got, &states[i]).len())
            .expect("an allowed state");
        // Whether the content is some other state of the history (too old, or too new).
        let elsewhere = states.iter().position(|s| *s == got);
        return Err(format!(
            "recovered content is none of the allowed states (it is state {elsewhere:?} of \
             the history); against the state after {closest} transactions: {}",
            diff(&got, &states[closest])
        ));
    };
    let generation = store.stats().generation;
    if !allowed.generations.contains(&generation) {
        return Err(format!(
            "generation {generation}, expected one of {:?}",
            allowed.generations
        ));
    }
    let gens = generation_dirs(path)?;
    if gens != [generation] {
        return Err(format!(
            "generation {generation} is current but the store holds {gens:?}"
        ));
    }
    if exercise == Exercise::Nothing {
        return Ok((found, got));
    }

    // Still a store: commit, (compact, commit again), reopen.
    let mut want = got;
    let commit = |store: &BTreeStore, want: &mut Model, tag: &str, end: End| {
        let mut ops = vec![
            Op::Insert(
                String::new(),
                format!("after-crash-{tag}").into_bytes(),
                tag.into(),
            ),
            Op::Insert(format!("after-crash-{tag}"), b"k".to_vec(), vec![7; 3_000]),
        ];
        if let Some(k) = want[""].keys().next() {
            ops.push(Op::Remove(String::new(), k.clone()));
        }
        if let Some(t) = NAMED.iter().find(|t| want.contains_key(**t)) {
            ops.push(Op::DeleteTree((*t).to_string()));
        }
        let mut txn = store
            .begin_write()
            .map_err(|e| format!("begin after recovery: {e}"))?;
        for op in &ops {
            run_op(&mut txn, op);
            model_op(want, op);
        }
        match end {
            End::Durable => txn.commit(),
            _ => txn.commit_unsynced(),
        }
        .map_err(|e| format!("commit after recovery: {e}"))
    };
    commit(&store, &mut want, "a", End::Durable)?;
    let compacted = exercise == Exercise::Compact;
    if compacted {
        store
            .compact()
            .map_err(|e| format!("compact after recovery: {e}"))?;
        commit(&store, &mut want, "b", End::Unsynced)?;
    }
    let expected_generation = store.stats().generation;
    drop(store);
    let store = BTreeStore::open(&dir, NAME, options())
        .map_err(|e| format!("reopen after recovery: {e}"))?;
    store
        .verify()
        .map_err(|e| format!("verify after recovery and a reopen: {e}"))?;
    let again = contents(&store)?;
    if again != want {
        return Err(format!(
            "after recovery, commits and a reopen ({exercise:?}): {}",
            diff(&again, &want)
        ));
    }
    let after = store.stats().generation;
    if after != expected_generation || expected_generation < generation + u64::from(compacted) {
        return Err(format!(
            "after recovery, commits and a reopen ({exercise:?}): generation {after}, \
             recovered {generation}"
        ));
    }
    Ok((found, want))
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// Records `plan` on a fresh store.
fn workload(replay: &mut Replay, plan: &Plan) -> (tempfile::TempDir, Recorded) {
    let (tmp, dir) = store();
    drop(dir);
    let mut w = Workload::open(tmp.path(), empty_model(), false, &mut replay.rng);
    run(&mut w, plan, &mut replay.rng);
    (tmp, w.finish())
}

/// Transactions of every kind over trees that grow, shrink (range removes merging
/// pages) and grow again, durable or unsynced, with checkpoints every 64 KiB of log,
/// and automatic compaction once garbage passes half of a 1 MiB log.
#[test]
fn btree_commits_crash_images() {
    let mut replay = Replay::new("btree_commits_crash_images");
    let plan = Plan {
        txns: 300,
        targets: &[900, 120, 700, 60],
        max_ops: 10,
        compact_every: None,
        bulk_at: None,
    };
    let (_tmp, rec) = workload(&mut replay, &plan);
    assert!(rec.kinds[1] > 3, "checkpoints: {:?}", rec.kinds);
    rec.check_images(&mut replay, COMMITS_IMAGES, false);
}

/// Explicit compactions every few transactions (after a sync, or with commits made
/// unsynced before it), and a transaction too large to log, which commits by a
/// checkpoint (which open adopts from the log if the state's write was lost): every cut
/// of every compaction and of the bulk checkpoint is checked with nothing, everything
/// and a random share of the unsynced pages on disk.
#[test]
fn btree_compaction_crash_images() {
    let mut replay = Replay::new("btree_compaction_crash_images");
    let plan = Plan {
        txns: 90,
        targets: &[400, 60, 300],
        max_ops: 8,
        compact_every: Some(15),
        bulk_at: Some(40),
    };
    let (_tmp, rec) = workload(&mut replay, &plan);
    assert!(rec.kinds[2] >= 5, "compactions: {:?}", rec.kinds);
    rec.check_images(&mut replay, COMPACTION_IMAGES, true);
}

/// Crash, recover (checked), keep working on the recovered disk (stale bytes past the
/// recovered log, debris of an interrupted compaction), crash again.
#[test]
fn btree_crash_twice() {
    let mut replay = Replay::new("btree_crash_twice");
    let plan = Plan {
        txns: 60,
        targets: &[300, 50],
        max_ops: 8,
        compact_every: Some(25),
        bulk_at: None,
    };
    let (_tmp, first) = workload(&mut replay, &plan);
    for life in 0..SECOND_LIVES {
        let crash = first.crashes(&mut replay.rng, 4, false)[life % 4];
        replay.context = format!("recovering life {life} from {crash}");
        let image = first.history.image(&crash, first.order(crash.at));
        let allowed = first.allowed(&crash);
        debris(&image, &mut replay.rng);
        let (_, model) = check_store(image.path(), &first.states, &allowed, Exercise::Nothing)
            .unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        let mut w = Workload::open(image.path(), model, true, &mut replay.rng);
        w.next_key = 1_000_000 * (life + 1);
        let plan = Plan {
            txns: 40,
            targets: &[250, 100],
            max_ops: 8,
            compact_every: Some(25),
            bulk_at: None,
        };
        run(&mut w, &plan, &mut replay.rng);
        let second = w.finish();
        second.check_images(&mut replay, SECOND_LIFE_IMAGES, false);
    }
}

/// The checks fail on disks the contract rules out: a durable commit's flush lost (the
/// disk as the sync before it left it), an unsynced commit kept where nothing unsynced
/// reached the disk, and a state naming a checkpoint its log lacks (the journal flushed
/// before the log, which `Step::agrees` rules out in the workloads).
#[test]
fn btree_checks_catch_lost_and_extra_commits() {
    let mut replay = Replay::new("btree_checks_catch_lost_and_extra_commits");
    let plan = Plan {
        txns: 60,
        targets: &[300],
        max_ops: 8,
        compact_every: None,
        bulk_at: None,
    };
    let (_tmp, rec) = workload(&mut replay, &plan);
    let journal = journal_file();
    // Disks checked per kind (lost durable commit, unsynced commit kept, state ahead of
    // its log), each of which must fail.
    let mut caught = [0usize; 3];
    for at in 1..rec.steps.len() {
        let point = rec.history.point(at);
        let s = point.syncs;
        replay.context = format!("checking an impossible disk at point {at}");
        let refuse = |image: Image, lo: usize, hi: usize, generations: Vec<u64>, what: &str| {
            let allowed = Allowed {
                lo,
                hi,
                generations,
            };
            if let Ok((found, _)) =
                check_store(image.path(), &rec.states, &allowed, Exercise::Nothing)
            {
                panic!(
                    "{}: {what}, yet the checks passed (the state after {found} transactions)",
                    replay.context
                );
            }
        };
        match &rec.steps[at] {
            Some(step) => {
                let (now, before) = (rec.synced[s].0, rec.synced[s - 1].0);
                let generations = vec![rec.synced[s - 1].1, rec.synced[s].1];
                // (Transactions that changed nothing leave equal states.)
                if rec.states[now] != rec.states[before] && caught[0] < 5 {
                    let image = Image::of(rec.history.after_sync(s - 1));
                    let what = format!("the flush of a {:?} step was lost", step.kind);
                    refuse(image, now, now, generations.clone(), &what);
                    caught[0] += 1;
                }
                if step.kind == Kind::Checkpoint && caught[2] < 5 {
                    let ahead = point.snapshot.file(&journal).expect("the state journal");
                    let image =
                        Image::of(&rec.history.after_sync(s - 1).with_file(&journal, ahead));
                    refuse(
                        image,
                        before,
                        now,
                        generations,
                        "the state names a checkpoint its log lacks",
                    );
                    caught[2] += 1;
                }
            }
            None => {
                let durable = rec.synced[s].0;
                if rec.states[rec.at_point[at]] != rec.states[durable] && caught[1] < 5 {
                    let image = Image::of(&point.snapshot);
                    let generations = vec![rec.synced[s].1];
                    refuse(
                        image,
                        durable,
                        durable,
                        generations,
                        "unsynced commits were kept",
                    );
                    caught[1] += 1;
                }
            }
        }
    }
    assert!(
        caught.iter().all(|&c| c > 0),
        "impossible disks checked: {caught:?}"
    );
}
