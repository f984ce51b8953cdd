//! Other processes: the store lock against a second process, and kill tests.
//!
//! The children are this test binary run again with `--exact process::child_main`; the
//! environment variable `ACCRETION_CHILD` says what the child does (with its argument, as
//! in `log_writer 3`) and `ACCRETION_CHILD_DIR` where. Children report on stdout, each report after the `@@ `
//! marker (libtest may print its own text on the same line). The HashStore child, whose
//! operations are many and short, reports only every 32nd and writes the exact count of
//! those that returned to a progress file beside the store instead.
//!
//! A SIGKILL loses nothing a process wrote to a mapping or a file (the kernel holds it),
//! and format 2 adopts at open every record whose frame holds: so after a kill,
//! everything a child acknowledged (synced or not) is there with the right bytes, nothing
//! it did not write is, and the reopen itself succeeds wherever the kill landed (in an
//! append, a sync, a lane creation, or the open). For the LogStore the kill may also land
//! in a segment roll, a hint file, or a background compaction; for the HashStore in an
//! index rebuild, an index resize, an automatic optimisation, a sync, or a clean
//! shutdown.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use accretion::{
    AppendOnly, BTreeOptions, BTreeStore, Dir, Error, HashOptions, HashStore, LogOptions, LogStore,
    OnceMap, Span, WriteBatch,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::Seeded;

const ROLE_VAR: &str = "ACCRETION_CHILD";
const DIR_VAR: &str = "ACCRETION_CHILD_DIR";
const MARK: &str = "@@ ";
/// Longest wait for a child's next report before the test gives up on it.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The child side.

/// The body of every child process. Run as part of the normal suite (without
/// `ACCRETION_CHILD`) it returns at once.
#[test]
fn child_main() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_VAR).expect("ACCRETION_CHILD_DIR"));
    match role.as_str() {
        "hold" => child_hold(&dir),
        "writer" => child_writer(&dir),
        "map_inserter synced" => child_map_inserter(&dir, true),
        "map_inserter unsynced" => child_map_inserter(&dir, false),
        "log_putter durable" => child_log_putter(&dir, true),
        "log_putter unsynced" => child_log_putter(&dir, false),
        "btree_putter durable" => child_btree_putter(&dir, true),
        "btree_putter unsynced" => child_btree_putter(&dir, false),
        other => {
            if let Some(round) = other.strip_prefix("log_writer ") {
                child_log_writer(&dir, round.parse().expect("round number"));
            } else if let Some(args) = other.strip_prefix("hash_writer ") {
                child_hash_writer(&dir, args);
            } else if let Some(args) = other.strip_prefix("sharded_worker ") {
                crate::process_sharded::child_sharded_worker(&dir, args);
            } else {
                panic!("unknown child role {other:?}");
            }
        }
    }
}

pub(crate) fn report(what: &str) {
    println!("{MARK}{what}");
}

/// Opens the store, writes one synced record, says so, and waits to be killed.
fn child_hold(path: &Path) {
    let dir = Dir::open(path).unwrap();
    let log = AppendOnly::open(&dir, "held").unwrap();
    log.append(b"held").unwrap();
    log.sync().unwrap();
    report("holding");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Appends records and inserts entries forever, syncing after each, and reports what each
/// sync made durable: `append <records> <len>` and `map <entries>`.
fn child_writer(path: &Path) {
    let dir = Dir::open(path).unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    let map = OnceMap::open(&dir, "map").unwrap();
    let spans = spans_up_to_len(log.len())
        .unwrap_or_else(|| panic!("child: length {} is no record boundary", log.len()));
    let mut records = spans.len();
    let mut entries = map.len() as usize;
    report(&format!("ready {records} {entries}"));
    // Bounded, in case the parent is slow to kill: a few hundred of each at most.
    while records < 2000 {
        let span = log.append(&record(records)).unwrap();
        let expected = place(spans_end(records), record_len(records));
        assert_eq!(span.offset(), expected, "record {records} placement");
        log.sync().unwrap();
        records += 1;
        report(&format!("append {records} {}", log.len()));
        let (k, v) = entry(entries);
        assert!(map.insert(&k, &v).unwrap().is_inserted());
        map.sync().unwrap();
        entries += 1;
        report(&format!("map {entries}"));
    }
    report("done");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------
// What the writer writes, and where it lands.

/// Record `i`: mostly small, every 16th one 40 000 bytes so that lanes fill and new ones
/// get created while the child may be killed.
fn record_len(i: usize) -> u64 {
    if i % 16 == 15 {
        40_000
    } else {
        1 + (i as u64 * 7919) % 3000
    }
}

fn record(i: usize) -> Vec<u8> {
    (0..record_len(i))
        .map(|b| (b as u8).wrapping_mul(13) ^ (i as u8).wrapping_add(1))
        .collect()
}

fn entry(i: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("entry-{i}").into_bytes();
    let value = format!("value of entry {i};")
        .repeat(1 + i % 9)
        .into_bytes();
    (key, value)
}

const LANE_BASE: u64 = accretion::limits::APPEND_LANE_BASE_BYTES;

/// Bytes of the frame in front of every record (format 2), at a multiple of 16.
const FRAME: u64 = 16;

/// Where a record of `len` bytes appended at cursor `cur` starts (format 2): its frame at
/// the cursor rounded up to 16, the record right after it, unless the two do not fit in
/// the rest of the lane; then a LaneEnd frame goes there and the record's frame starts
/// the next lane (ARCHITECTURE.md).
fn place(cur: u64, len: u64) -> u64 {
    let mut at = cur.next_multiple_of(FRAME);
    loop {
        let lane = 63 - (at / LANE_BASE + 1).leading_zeros();
        let lane_start = LANE_BASE * ((1 << lane) - 1);
        if at - lane_start + FRAME + len <= LANE_BASE << lane {
            return at + FRAME;
        }
        at = LANE_BASE * ((1 << (lane + 1)) - 1);
    }
}

/// The spans of records `0..n`.
fn spans(n: usize) -> Vec<Span> {
    let mut out = Vec::with_capacity(n);
    let mut cur = 0;
    for i in 0..n {
        let start = place(cur, record_len(i));
        out.push(Span::new(start, record_len(i)));
        cur = start + record_len(i);
    }
    out
}

/// The end of the first `n` records.
fn spans_end(n: usize) -> u64 {
    spans(n).last().map_or(0, Span::end)
}

/// The spans of the records that end exactly at `len`, if `len` is a record boundary.
fn spans_up_to_len(len: u64) -> Option<Vec<Span>> {
    let mut out = Vec::new();
    let mut cur = 0;
    while cur < len {
        let i = out.len();
        let start = place(cur, record_len(i));
        out.push(Span::new(start, record_len(i)));
        cur = start + record_len(i);
    }
    (cur == len).then_some(out)
}

// ---------------------------------------------------------------------------------------
// The parent side.

/// A running child, its reports arriving on a channel, its stderr in a file.
pub(crate) struct ChildProc {
    child: Child,
    reports: Receiver<String>,
    stderr: PathBuf,
}

impl ChildProc {
    pub(crate) fn spawn(role: &str, dir: &Path, stderr: PathBuf) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_VAR, role)
            .env(DIR_VAR, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, report)) = line.split_once(MARK)
                    && tx.send(report.to_string()).is_err()
                {
                    break;
                }
            }
        });
        ChildProc {
            child,
            reports,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next report; panics (showing the child's stderr) if none comes in time.
    pub(crate) fn next(&mut self) -> String {
        match self.reports.recv_timeout(REPORT_TIMEOUT) {
            Ok(report) => report,
            Err(e) => {
                let _ = self.child.kill();
                let status = self.child.wait();
                panic!(
                    "child sent no report ({e:?}), status {status:?}, stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// SIGKILLs the child, checks that the kill is what ended it, and returns the reports
    /// it sent before dying.
    pub(crate) fn kill(&mut self) -> Vec<String> {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "child ended by something else than our SIGKILL: {status:?}; stderr:\n{}",
            self.stderr()
        );
        let mut rest = Vec::new();
        let deadline = Instant::now() + REPORT_TIMEOUT;
        loop {
            match self
                .reports
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(report) => rest.push(report),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("child's stdout still open after kill"),
            }
        }
        rest
    }
}

/// A child left running by a failing test is killed, not leaked.
impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn a_killed_holder_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let mut child = ChildProc::spawn("hold", &path, tmp.path().join("stderr"));
    assert_eq!(child.next(), "holding");

    let err = Dir::open(&path).expect_err("a second process opened a locked store");
    assert!(
        matches!(&err, Error::Locked { path: p } if *p == path),
        "expected Locked naming {}, got {err:?}",
        path.display()
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let rest = child.kill();
    assert!(rest.is_empty(), "{rest:?}");
    let dir = Dir::open(&path).expect("the lock dies with the process");
    let log = AppendOnly::open(&dir, "held").unwrap();
    let spans: Vec<Span> = log.records(0).map(Result::unwrap).collect();
    assert_eq!(spans, [Span::new(FRAME, 4)]);
    assert_eq!(log.get(spans[0]).unwrap(), b"held");
}

/// What the parent knows is durable: records in the log, entries in the map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Durable {
    records: usize,
    entries: usize,
}

/// Reopens the store after a kill and checks it against what the child acknowledged:
/// each count is the acknowledged one, or one more (the kill landed between a sync's
/// return and its report), with exact contents and nothing beyond.
fn verify_after_kill(store: &Path, acked: Durable, round: usize) -> Durable {
    let dir = Dir::open(store).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    let log = AppendOnly::open(&dir, "log")
        .unwrap_or_else(|e| panic!("round {round}: AppendOnly reopen failed: {e}"));
    let len = log.len();
    assert_eq!(log.durable_len(), len, "round {round}");
    let spans = spans_up_to_len(len)
        .unwrap_or_else(|| panic!("round {round}: length {len} is no record boundary"));
    let records = spans.len();
    assert!(
        records == acked.records || records == acked.records + 1,
        "round {round}: log holds {records} records, {} acknowledged",
        acked.records
    );
    for (i, span) in spans.iter().enumerate() {
        assert!(
            log.get(*span).unwrap() == &record(i)[..],
            "round {round}: record {i} at {span:?} differs"
        );
    }
    assert!(
        matches!(log.get(Span::new(len, 1)), Err(Error::OutOfBounds { .. })),
        "round {round}: bytes past the durable length are readable"
    );
    let chunked: u64 = log.chunks().map(|c| c.unwrap().1.len() as u64).sum();
    assert_eq!(chunked, len, "round {round}");

    let map = OnceMap::open(&dir, "map")
        .unwrap_or_else(|e| panic!("round {round}: OnceMap reopen failed: {e}"));
    let entries = map.len() as usize;
    assert!(
        entries == acked.entries || entries == acked.entries + 1,
        "round {round}: map holds {entries} entries, {} acknowledged",
        acked.entries
    );
    for i in 0..entries {
        let (k, v) = entry(i);
        assert_eq!(
            map.get(&k).unwrap(),
            Some(&v[..]),
            "round {round}: entry {i}"
        );
    }
    for i in entries..entries + 2 {
        let (k, _) = entry(i);
        assert_eq!(
            map.get(&k).unwrap(),
            None,
            "round {round}: unsynced entry {i}"
        );
    }
    let mut walked = 0;
    for (i, e) in map.iter().enumerate() {
        let (k, v) = e.unwrap_or_else(|e| panic!("round {round}: walking entry {i}: {e}"));
        assert_eq!(
            (k.to_vec(), v.to_vec()),
            entry(i),
            "round {round}: walked entry {i}"
        );
        walked += 1;
    }
    assert_eq!(walked, entries, "round {round}");
    Durable { records, entries }
}

/// Kills a writer child at random moments, again and again on one store, and checks after
/// every kill that exactly the synced state survived and the store reopens.
#[test]
fn killed_writers_lose_nothing_synced() {
    const ROUNDS: usize = 18;
    let mut seeded = Seeded::new("process::killed_writers_lose_nothing_synced");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut durable = Durable::default();
    let mut kills_mid_open = 0;
    for round in 0..ROUNDS {
        // One round in four kills at a random moment soon after the start (in the
        // process's startup, its open, or its first writes); the others wait for a random
        // number of reports, then a random extra delay, so that the kill lands anywhere in
        // an append, a sync or a lane creation.
        let early = seeded.rng.random_range(0..4) == 0;
        let wait_reports = if early {
            0
        } else {
            seeded.rng.random_range(1..=24usize)
        };
        let delay = if early {
            Duration::from_micros(seeded.rng.random_range(0..30_000))
        } else {
            Duration::from_micros(seeded.rng.random_range(0..4000))
        };
        let stderr = tmp.path().join(format!("stderr-{round}"));
        let mut child = ChildProc::spawn("writer", &store, stderr);
        let mut reports = Vec::new();
        while reports.len() < wait_reports {
            reports.push(child.next());
        }
        std::thread::sleep(delay);
        reports.extend(child.kill());
        let mut acked = durable;
        let mut ready = false;
        for r in &reports {
            let words: Vec<&str> = r.split(' ').collect();
            match words[..] {
                ["ready", records, entries] => {
                    let seen = Durable {
                        records: records.parse().unwrap(),
                        entries: entries.parse().unwrap(),
                    };
                    assert_eq!(seen, durable, "round {round}: child opened another state");
                    ready = true;
                }
                ["append", records, len] => {
                    acked.records = records.parse().unwrap();
                    assert_eq!(len.parse::<u64>().unwrap(), spans_end(acked.records));
                }
                ["map", entries] => acked.entries = entries.parse().unwrap(),
                _ => panic!("round {round}: unexpected report {r:?}"),
            }
        }
        if !ready {
            kills_mid_open += 1;
        }
        durable = verify_after_kill(&store, acked, round);
        println!(
            "round {round}: killed after {} reports (+{delay:?}); acknowledged {acked:?}, \
             recovered {durable:?}",
            reports.len()
        );
    }
    println!(
        "{ROUNDS} kills, {kills_mid_open} before the child finished opening; final {durable:?}"
    );
    assert!(
        durable.records > 0 && durable.entries > 0,
        "no child ever synced"
    );
}

// ---------------------------------------------------------------------------------------
// LogStore: writers with `sync_each_write`, killed again and again.

/// Writer threads of a LogStore child, and the keys each one owns.
const LOG_WRITERS: usize = 3;
const LOG_KEYS: u64 = 24;
/// Operations per writer thread before it stops (the parent kills the child long before).
const LOG_OPS_MAX: u64 = 20_000;

/// Small segments, so that rolls (and hint files) come every few hundred writes, and
/// automatic compaction, which overwrites make frequent: a kill can land in any of them.
fn log_kill_options() -> LogOptions {
    LogOptions {
        segment_bytes: 64 * 1024,
        sync_each_write: true,
        compact_dead_ratio: Some(0.5),
        merge_operator: None,
    }
}

/// A key, with its value or `None` for a delete.
type Effect = (Vec<u8>, Option<Vec<u8>>);

pub(crate) fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn log_key(thread: usize, j: u64) -> Vec<u8> {
    format!("t{thread}-k{:02}", j % LOG_KEYS).into_bytes()
}

/// Operation `seq` of writer `thread` in round `round`: a put (mostly), a delete, or a
/// batch of two puts and a delete. Each value names its write, and a few are larger than
/// a segment's first lane.
fn log_op(round: usize, thread: usize, seq: u64) -> Vec<Effect> {
    let h = mix(((round as u64) << 48) ^ ((thread as u64) << 40) ^ seq);
    let j = h % LOG_KEYS;
    let value = |n: u64| {
        let tag = format!("r{round} t{thread} s{seq} #{n}|");
        let len = if (h >> 32).is_multiple_of(64) {
            30_000 + (h >> 40) % 70_000
        } else {
            (h >> 40) % 1_500
        } as usize;
        tag.bytes()
            .cycle()
            .take(tag.len() + len)
            .collect::<Vec<u8>>()
    };
    match (h >> 8) % 10 {
        0 => vec![(log_key(thread, j), None)],
        1 => vec![
            (log_key(thread, j), Some(value(0))),
            (log_key(thread, j + 1), Some(value(1))),
            (log_key(thread, j + 2), None),
        ],
        _ => vec![(log_key(thread, j), Some(value(0)))],
    }
}

fn apply_log_op(store: &LogStore, effects: &[Effect]) {
    if let [(k, v)] = effects {
        match v {
            Some(v) => store.put(k, v).unwrap(),
            None => store.delete(k).unwrap(),
        }
        return;
    }
    let mut batch = WriteBatch::new();
    for (k, v) in effects {
        match v {
            Some(v) => batch.put(k, v),
            None => batch.delete(k),
        };
    }
    store.write(&batch).unwrap();
}

/// Opens the LogStore `kv` and runs `LOG_WRITERS` threads of `log_op`s, each reporting
/// `op <thread> <seq>` once its operation returned (and so is durable).
fn child_log_writer(path: &Path, round: usize) {
    let dir = Dir::open(path).unwrap();
    let store = LogStore::open(&dir, "kv", log_kill_options()).unwrap();
    report("ready");
    std::thread::scope(|s| {
        for thread in 0..LOG_WRITERS {
            let store = &store;
            s.spawn(move || {
                for seq in 0..LOG_OPS_MAX {
                    apply_log_op(store, &log_op(round, thread, seq));
                    report(&format!("op {thread} {seq}"));
                }
            });
        }
    });
    report("done");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

type LogModel = BTreeMap<Vec<u8>, Vec<u8>>;

fn apply_effects(model: &mut LogModel, effects: Vec<Effect>) {
    for (k, v) in effects {
        match v {
            Some(v) => model.insert(k, v),
            None => model.remove(&k),
        };
    }
}

/// The part of `model` that writer `thread` owns.
fn owned(model: &LogModel, thread: usize) -> LogModel {
    let prefix = format!("t{thread}-").into_bytes();
    model
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Reopens the store after a kill and checks it: for each writer, its keys hold exactly
/// what its acknowledged operations left, or that plus its one operation in flight (all
/// of it: a batch is all there or not at all). Returns the recovered content and how
/// many in-flight operations had landed.
fn verify_log_after_kill(
    store: &Path,
    before: &LogModel,
    round: usize,
    acked: &[Option<u64>],
) -> (LogModel, usize) {
    let dir = Dir::open(store).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    let opts = LogOptions {
        compact_dead_ratio: None,
        ..log_kill_options()
    };
    let log = LogStore::open(&dir, "kv", opts)
        .unwrap_or_else(|e| panic!("round {round}: LogStore reopen failed: {e}"));
    let stats = log.stats();
    assert_eq!(stats.damaged_records, 0, "round {round}: {stats:?}");
    let mut got = LogModel::new();
    for item in log.iter() {
        let (k, v) = item.unwrap_or_else(|e| panic!("round {round}: iter: {e}"));
        got.insert(k.to_vec(), v.to_vec());
    }
    for (k, v) in &got {
        assert_eq!(
            log.get(k).unwrap().as_deref(),
            Some(&v[..]),
            "round {round}: get disagrees with iter"
        );
    }
    let mut landed = 0;
    let mut covered = 0;
    for (thread, &acked) in acked.iter().enumerate() {
        let mut want = owned(before, thread);
        let next = acked.map_or(0, |a| {
            for seq in 0..=a {
                apply_effects(&mut want, log_op(round, thread, seq));
            }
            a + 1
        });
        let mut or = want.clone();
        apply_effects(&mut or, log_op(round, thread, next));
        let have = owned(&got, thread);
        covered += have.len();
        if have == want {
            continue;
        }
        assert!(
            have == or,
            "round {round}: writer {thread} acknowledged operations up to {acked:?}, but its \
             keys hold neither that state nor that plus operation {next}: {}",
            describe_log_diff(&have, &want)
        );
        landed += 1;
    }
    assert_eq!(
        covered,
        got.len(),
        "round {round}: the store holds keys no writer wrote"
    );
    (got, landed)
}

fn describe_log_diff(have: &LogModel, want: &LogModel) -> String {
    let show = |v: Option<&Vec<u8>>| match v {
        None => "absent".to_string(),
        Some(v) => String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned(),
    };
    have.keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| have.get(*k) != want.get(*k))
        .take(4)
        .map(|k| {
            format!(
                "{}: {} instead of {}",
                String::from_utf8_lossy(k),
                show(have.get(k)),
                show(want.get(k))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kills a LogStore child (several writer threads, `sync_each_write`, small segments,
/// automatic compaction) at random moments, again and again on one store, and checks
/// after every kill that the store reopens with every acknowledged write.
#[test]
fn killed_log_store_writers_lose_nothing_acknowledged() {
    const ROUNDS: usize = 30;
    let mut seeded = Seeded::new("process::killed_log_store_writers_lose_nothing_acknowledged");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut model = LogModel::new();
    let (mut kills_mid_open, mut acked_total, mut landed_total) = (0, 0, 0);
    for round in 0..ROUNDS {
        // One round in four kills soon after the start (the process's startup, the open
        // and its recovery, the first writes); the others after a random number of
        // acknowledged writes and a random extra delay.
        let early = seeded.rng.random_range(0..4) == 0;
        let wait_reports = if early {
            0
        } else {
            seeded.rng.random_range(1..=400usize)
        };
        let delay = if early {
            Duration::from_micros(seeded.rng.random_range(0..6_000))
        } else {
            Duration::from_micros(seeded.rng.random_range(0..3_000))
        };
        let stderr = tmp.path().join(format!("stderr-{round}"));
        let mut child = ChildProc::spawn(&format!("log_writer {round}"), &store, stderr);
        let mut reports = Vec::new();
        while reports.len() < wait_reports {
            let r = child.next();
            assert_ne!(r, "done", "round {round}: the child ran out of operations");
            reports.push(r);
        }
        std::thread::sleep(delay);
        reports.extend(child.kill());
        let mut acked: Vec<Option<u64>> = vec![None; LOG_WRITERS];
        let mut ready = false;
        for r in &reports {
            let words: Vec<&str> = r.split(' ').collect();
            match words[..] {
                ["ready"] => ready = true,
                ["op", thread, seq] => {
                    let (thread, seq): (usize, u64) =
                        (thread.parse().unwrap(), seq.parse().unwrap());
                    assert_eq!(
                        seq,
                        acked[thread].map_or(0, |a| a + 1),
                        "round {round}: writer {thread} reports out of order"
                    );
                    acked[thread] = Some(seq);
                    acked_total += 1;
                }
                _ => panic!("round {round}: unexpected report {r:?}"),
            }
        }
        if !ready {
            kills_mid_open += 1;
        }
        let (recovered, landed) = verify_log_after_kill(&store, &model, round, &acked);
        landed_total += landed;
        model = recovered;
        println!(
            "round {round}: killed after {} reports (+{delay:?}); acknowledged {acked:?}, \
             {landed} in flight landed, {} keys",
            reports.len(),
            model.len()
        );
    }
    let dir = Dir::open(&store).unwrap();
    let stats = LogStore::open(&dir, "kv", log_kill_options())
        .unwrap()
        .stats();
    println!(
        "{ROUNDS} kills, {kills_mid_open} before the child finished opening, \
         {acked_total} acknowledged operations, {landed_total} unacknowledged ones landed, \
         {} compactions; final {stats:?}",
        stats.generation
    );
    assert!(acked_total > 0, "no child ever acknowledged a write");
}

// ---------------------------------------------------------------------------------------
// Many short kills: a OnceMap and a LogStore, with a sync after each write or with none.

/// Kills per test: each round is short (a child's startup, open and a few writes).
const SHORT_KILLS: usize = 100;

/// Inserts `entry(i)` from the map's length on, syncing after each insert if `synced`,
/// and reports `ins <count>` once each insert (and its sync) returned.
fn child_map_inserter(path: &Path, synced: bool) {
    let dir = Dir::open(path).unwrap();
    let map = OnceMap::open(&dir, "m").unwrap();
    let mut n = map.len() as usize;
    report(&format!("ready {n}"));
    loop {
        let (k, v) = entry(n);
        assert!(map.insert(&k, &v).unwrap().is_inserted());
        if synced {
            map.sync().unwrap();
        }
        n += 1;
        report(&format!("ins {n}"));
    }
}

/// Puts `key-<i>` from the store's length on (one thread), and reports `put <count>` once
/// each put returned. `durable`: `sync_each_write`; else no sync at all.
fn child_log_putter(path: &Path, durable: bool) {
    let dir = Dir::open(path).unwrap();
    let store = LogStore::open(&dir, "kv", putter_options(durable)).unwrap();
    let mut n = store.len() as usize;
    report(&format!("ready {n}"));
    loop {
        let (k, v) = entry(n);
        store.put(&k, &v).unwrap();
        n += 1;
        report(&format!("put {n}"));
    }
}

fn putter_options(durable: bool) -> LogOptions {
    LogOptions {
        sync_each_write: durable,
        compact_dead_ratio: None,
        ..LogOptions::default()
    }
}

/// Runs `SHORT_KILLS` rounds of `role` on one store: each child is killed after a random
/// number of acknowledged writes (none in one round in four, so that some kills land in
/// the startup or the open) and a random short delay; `verify(acked, round)` reopens the
/// store and returns how many writes it holds. Returns (acknowledged, held) at the end.
fn short_kills(
    test: &'static str,
    role: &str,
    mut verify: impl FnMut(&Path, usize, usize) -> usize,
) -> (usize, usize) {
    let start = Instant::now();
    let mut seeded = Seeded::new(test);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut held = 0;
    let mut acked_total = 0;
    for round in 0..SHORT_KILLS {
        let early = seeded.rng.random_range(0..4) == 0;
        let wait = if early {
            0
        } else {
            seeded.rng.random_range(1..=30usize)
        };
        let delay = Duration::from_micros(seeded.rng.random_range(0..2_000));
        let mut child = ChildProc::spawn(role, &store, tmp.path().join("stderr"));
        let mut reports = Vec::new();
        while reports.len() < wait {
            reports.push(child.next());
        }
        std::thread::sleep(delay);
        reports.extend(child.kill());
        let mut acked = held;
        for r in &reports {
            let words: Vec<&str> = r.split(' ').collect();
            match words[..] {
                ["ready", n] => {
                    assert_eq!(n.parse::<usize>().unwrap(), held, "round {round}: reopened");
                }
                [_, n] => {
                    let n: usize = n.parse().unwrap();
                    assert_eq!(n, acked + 1, "round {round}: reports in order");
                    acked = n;
                }
                _ => panic!("round {round}: unexpected report {r:?}"),
            }
        }
        acked_total += acked - held;
        held = verify(&store, acked, round);
    }
    println!(
        "{test}: {SHORT_KILLS} kills, {acked_total} acknowledged writes, {held} held at the \
         end, {:?}",
        start.elapsed()
    );
    assert!(acked_total > 0, "no child ever acknowledged a write");
    (acked_total, held)
}

/// Reopens the map after a kill: it holds exactly entries `0..n`, with `n` the count
/// acknowledged or one more (killed between an insert's return and its report), each
/// with its value, in order, and nothing else.
fn verify_map_exact(store: &Path, acked: usize, round: usize) -> usize {
    let dir = Dir::open(store).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let map = OnceMap::open(&dir, "m").unwrap_or_else(|e| panic!("round {round}: open: {e}"));
    let n = map.len() as usize;
    assert!(
        n == acked || n == acked + 1,
        "round {round}: {n} entries, {acked} acknowledged"
    );
    assert_eq!(map.damaged_at_open(), 0, "round {round}");
    for i in 0..n {
        let (k, v) = entry(i);
        assert_eq!(
            map.get(&k).unwrap(),
            Some(&v[..]),
            "round {round}: entry {i}"
        );
    }
    let (k, _) = entry(n);
    assert_eq!(map.get(&k).unwrap(), None, "round {round}: entry {n}");
    let walked: Vec<(Vec<u8>, Vec<u8>)> = map
        .iter()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(
        walked,
        (0..n).map(entry).collect::<Vec<_>>(),
        "round {round}"
    );
    n
}

/// The LogStore counterpart of `verify_map_exact`.
fn verify_log_exact(store: &Path, acked: usize, round: usize, durable: bool) -> usize {
    let dir = Dir::open(store).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let kv = LogStore::open(&dir, "kv", putter_options(durable))
        .unwrap_or_else(|e| panic!("round {round}: open: {e}"));
    let stats = kv.stats();
    assert_eq!(stats.damaged_records, 0, "round {round}: {stats:?}");
    let n = kv.len() as usize;
    assert!(
        n == acked || n == acked + 1,
        "round {round}: {n} keys, {acked} acknowledged"
    );
    for i in 0..n {
        let (k, v) = entry(i);
        assert_eq!(
            kv.get(&k).unwrap().as_deref(),
            Some(&v[..]),
            "round {round}: {i}"
        );
    }
    let (k, _) = entry(n);
    assert!(kv.get(&k).unwrap().is_none(), "round {round}: key {n}");
    assert_eq!(kv.iter().filter(Result::is_ok).count(), n, "round {round}");
    n
}

/// A durable OnceMap (insert, then sync, each time) killed 100 times: after each kill the
/// reopen holds every acknowledged entry and nothing else.
#[test]
fn killed_synced_once_map_holds_exactly_its_acknowledged_entries() {
    short_kills(
        "process::killed_synced_once_map",
        "map_inserter synced",
        verify_map_exact,
    );
}

/// A OnceMap that never syncs, killed 100 times: every insert that returned before the
/// kill is there after the reopen (adopted from the log's frames and indexed at open).
#[test]
fn killed_unsynced_once_map_keeps_every_returned_insert() {
    short_kills(
        "process::killed_unsynced_once_map",
        "map_inserter unsynced",
        verify_map_exact,
    );
}

/// A LogStore with `sync_each_write` killed 100 times: every acknowledged put is there,
/// nothing else.
#[test]
fn killed_durable_log_store_holds_exactly_its_acknowledged_puts() {
    short_kills(
        "process::killed_durable_log_store",
        "log_putter durable",
        |store, acked, round| verify_log_exact(store, acked, round, true),
    );
}

/// A LogStore without durable mode and without any sync, killed 100 times: every put
/// that returned before the kill is there after the reopen.
#[test]
fn killed_unsynced_log_store_keeps_every_returned_put() {
    short_kills(
        "process::killed_unsynced_log_store",
        "log_putter unsynced",
        |store, acked, round| verify_log_exact(store, acked, round, false),
    );
}

// ---------------------------------------------------------------------------------------
// BTreeStore: one-key transactions, durable or unsynced, with frequent checkpoints and
// compactions.

/// Small checkpoints and compactions, so that kills land in them too.
fn btree_kill_options() -> BTreeOptions {
    BTreeOptions {
        checkpoint_bytes: 64 << 10,
        memory_pages_bytes: 64 << 10,
        compact_min_bytes: 512 << 10,
        ..BTreeOptions::default()
    }
}

/// Puts `entry(i)` from the store's length on, each in its own transaction committed
/// durably (`durable`) or unsynced, with every 5th value 6 KiB (stored out of line);
/// every 11th transaction also rewrites an earlier key and puts it back, so pages are
/// replaced. Reports `put <count>` once each commit returned.
fn child_btree_putter(path: &Path, durable: bool) {
    let dir = Dir::open(path).unwrap();
    let store = BTreeStore::open(&dir, "bt", btree_kill_options()).unwrap();
    let mut n = store.len().unwrap() as usize;
    report(&format!("ready {n}"));
    loop {
        let mut txn = store.begin_write().unwrap();
        {
            let mut t = txn.default_tree().unwrap();
            let (k, v) = btree_entry(n);
            t.insert(&k, &v).unwrap();
            if n % 11 == 10 {
                let (k, v) = btree_entry(n / 2);
                t.insert(&k, b"transient").unwrap();
                t.insert(&k, &v).unwrap();
            }
        }
        if durable {
            txn.commit().unwrap();
        } else {
            txn.commit_unsynced().unwrap();
        }
        n += 1;
        report(&format!("put {n}"));
    }
}

fn btree_entry(i: usize) -> (Vec<u8>, Vec<u8>) {
    let (k, mut v) = entry(i);
    if i % 5 == 4 {
        v = v.repeat(6000 / v.len() + 1);
    }
    (k, v)
}

/// Reopens the B-tree after a kill: it holds exactly entries `0..n`, `n` the count
/// acknowledged or one more, and passes `verify`.
fn verify_btree_exact(store: &Path, acked: usize, round: usize) -> usize {
    let dir = Dir::open(store).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let bt = BTreeStore::open(&dir, "bt", btree_kill_options())
        .unwrap_or_else(|e| panic!("round {round}: open: {e}"));
    bt.verify()
        .unwrap_or_else(|e| panic!("round {round}: verify: {e}"));
    let n = bt.len().unwrap() as usize;
    assert!(
        n == acked || n == acked + 1,
        "round {round}: {n} keys, {acked} acknowledged"
    );
    let want: BTreeMap<Vec<u8>, Vec<u8>> = (0..n).map(btree_entry).collect();
    let snapshot = bt.begin_read();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = snapshot
        .default_tree()
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert!(
        got == want,
        "round {round}: contents differ from entries 0..{n}"
    );
    n
}

/// A B-tree committing each put durably, killed 100 times: every acknowledged commit is
/// there after each reopen, nothing else, and the tree verifies.
#[test]
fn killed_durable_btree_holds_exactly_its_acknowledged_commits() {
    short_kills(
        "process::killed_durable_btree",
        "btree_putter durable",
        verify_btree_exact,
    );
}

/// A B-tree committing unsynced and never syncing, killed 100 times: every commit that
/// returned before the kill is there after the reopen (replayed from the log).
#[test]
fn killed_unsynced_btree_keeps_every_returned_commit() {
    short_kills(
        "process::killed_unsynced_btree",
        "btree_putter unsynced",
        verify_btree_exact,
    );
}

// ---------------------------------------------------------------------------------------
// HashStore: a seeded workload of sets, deletes, updates and rare clears (with syncs in
// some rounds, small automatic optimisations in others), killed again and again on one
// store, checked exactly against a model after every kill.

/// Keys the workload draws from: few enough that most sets and deletes find their key.
const HASH_KEYS: u64 = 600;
/// Longest value the workload writes (a set's values are 0..=this long).
const HASH_VALUE_LEN_MAX: usize = 300;
/// Operations between two reports of a HashStore child: the exact count of returned
/// operations goes to a progress file instead, which costs no pipe traffic.
const HASH_REPORT_EVERY: u64 = 32;
/// Operations a HashStore child runs before it stops (the parent kills it long before).
const HASH_OPS_MAX: u64 = 1_000_000;
/// Kills of the HashStore test: at least `HASH_KILLS_MIN`, more while `HASH_TIME_BUDGET`
/// lasts, at most `HASH_KILLS_MAX`.
const HASH_KILLS_MIN: usize = 100;
const HASH_KILLS_MAX: usize = 300;
const HASH_TIME_BUDGET: Duration = Duration::from_secs(10);

type HashModel = BTreeMap<Vec<u8>, Vec<u8>>;

/// How a round's child runs the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HashMode {
    /// Default options: an automatic optimisation only once the log passes 1 MiB.
    Plain,
    /// A 16 KiB floor for automatic optimisations, so that they come every few hundred
    /// operations and kills land in them.
    Optimizing,
    /// As `Optimizing`, and one operation in 32 is a `sync`.
    Syncing,
}

impl HashMode {
    fn name(self) -> &'static str {
        match self {
            HashMode::Plain => "plain",
            HashMode::Optimizing => "optimizing",
            HashMode::Syncing => "syncing",
        }
    }

    fn parse(name: &str) -> HashMode {
        match name {
            "plain" => HashMode::Plain,
            "optimizing" => HashMode::Optimizing,
            "syncing" => HashMode::Syncing,
            other => panic!("unknown hash mode {other:?}"),
        }
    }

    fn options(self) -> HashOptions {
        match self {
            HashMode::Plain => HashOptions::default(),
            HashMode::Optimizing | HashMode::Syncing => HashOptions {
                auto_optimize_min_bytes: 16 << 10,
                ..HashOptions::default()
            },
        }
    }
}

/// One operation of the workload.
#[derive(Clone)]
enum HashOp {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// `update` with `hash_updated(old, salt)`.
    Update(Vec<u8>, u64),
    Clear,
    Sync,
    /// Drop the store (a clean shutdown) and open it again.
    Reopen,
}

impl std::fmt::Debug for HashOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            HashOp::Set(k, v) => write!(f, "set {} to {} bytes", text(k), v.len()),
            HashOp::Delete(k) => write!(f, "delete {}", text(k)),
            HashOp::Update(k, salt) => write!(f, "update {} with salt {salt:#x}", text(k)),
            HashOp::Clear => write!(f, "clear"),
            HashOp::Sync => write!(f, "sync"),
            HashOp::Reopen => write!(f, "reopen"),
        }
    }
}

/// The operations of a round, a function of its seed alone (the model is rebuilt from the
/// seed and the count of operations that returned).
struct HashOps {
    rng: StdRng,
    mode: HashMode,
    /// Operations made so far: it tags each value.
    made: u64,
    tag: u64,
}

fn hash_ops(seed: u64, mode: HashMode) -> HashOps {
    HashOps {
        rng: StdRng::seed_from_u64(seed),
        mode,
        made: 0,
        tag: seed & 0xffff,
    }
}

impl Iterator for HashOps {
    type Item = HashOp;

    fn next(&mut self) -> Option<HashOp> {
        let n = self.made;
        self.made += 1;
        if self.mode == HashMode::Syncing && self.rng.random_ratio(1, 32) {
            return Some(HashOp::Sync);
        }
        if self.rng.random_ratio(1, 5_000) {
            return Some(HashOp::Clear);
        }
        if self.rng.random_ratio(1, 800) {
            return Some(HashOp::Reopen);
        }
        let key = hash_key(self.rng.random_range(0..HASH_KEYS));
        Some(match self.rng.random_range(0..100) {
            0..50 => {
                let len = self.rng.random_range(0..=HASH_VALUE_LEN_MAX);
                HashOp::Set(key, hash_value(&format!("{:x}.{n}|", self.tag), len))
            }
            50..70 => HashOp::Delete(key),
            _ => HashOp::Update(key, self.rng.random()),
        })
    }
}

/// Key `j`: `key-<j>` and 0..=40 dots, so that keys are of varied lengths.
fn hash_key(j: u64) -> Vec<u8> {
    let mut key = format!("key-{j}").into_bytes();
    key.resize(key.len() + (j as usize * 7) % 41, b'.');
    key
}

/// `len` bytes of `tag` repeated.
fn hash_value(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

/// What an `Update(_, salt)` makes of `old`: an absent key gets a value half of the time;
/// a present one is deleted one time in five (or when it would grow past
/// `HASH_VALUE_LEN_MAX`), else grows by 1..=24 bytes.
fn hash_updated(old: Option<&[u8]>, salt: u64) -> Option<Vec<u8>> {
    let tag = format!("u{salt:x}|");
    match old {
        None => salt
            .is_multiple_of(2)
            .then(|| hash_value(&tag, (salt >> 8) as usize % (HASH_VALUE_LEN_MAX + 1))),
        Some(old) => {
            let grow = 1 + (salt >> 8) as usize % 24;
            if salt.is_multiple_of(5) || old.len() + grow > HASH_VALUE_LEN_MAX {
                return None;
            }
            let mut new = old.to_vec();
            new.extend(tag.bytes().cycle().take(grow));
            Some(new)
        }
    }
}

/// Applies `op` to `model`; returns whether the store writes a record for it (and so
/// stops being clean), and the value the key had before.
fn apply_hash_op(model: &mut HashModel, op: &HashOp) -> (bool, Option<Vec<u8>>) {
    match op {
        HashOp::Set(k, v) => (true, model.insert(k.clone(), v.clone())),
        HashOp::Delete(k) => {
            let old = model.remove(k);
            (old.is_some(), old)
        }
        HashOp::Update(k, salt) => {
            let old = model.get(k).cloned();
            let new = hash_updated(old.as_deref(), *salt);
            let writes = old.is_some() || new.is_some();
            match new {
                Some(v) => model.insert(k.clone(), v),
                None => model.remove(k),
            };
            (writes, old)
        }
        HashOp::Clear => {
            model.clear();
            (true, None)
        }
        HashOp::Sync | HashOp::Reopen => (false, None),
    }
}

/// A digest of `model`, the same in every process of this binary (`DefaultHasher::new`
/// has fixed keys).
fn hash_fingerprint(model: &HashModel) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    model.hash(&mut h);
    h.finish()
}

/// Where a HashStore child at `store` writes the count of operations that returned.
fn hash_progress_path(store: &Path) -> PathBuf {
    store.with_extension("progress")
}

/// The count a HashStore child left in its progress file (0 if it wrote none).
fn read_hash_progress(store: &Path) -> u64 {
    let bytes = std::fs::read(hash_progress_path(store)).unwrap();
    bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
}

/// Runs the seeded HashStore workload `args` (`<round> <seed> <mode>`) on the store `kv`:
/// reports `opening` before the open, `ready <fingerprint> <microseconds> <rebuilt>` after
/// it (of the contents it found, how long the open took, 1 if it rebuilt the index), then after each operation
/// returned writes the count of returned operations at the start of the progress file
/// (a page-cache write, which a SIGKILL keeps), and reports `ops <count>` every
/// `HASH_REPORT_EVERY` operations. Checks each returned old value against its own model,
/// started from what the store held at the open.
fn child_hash_writer(path: &Path, args: &str) {
    let words: Vec<&str> = args.split(' ').collect();
    let [_round, seed, mode] = words[..] else {
        panic!("hash_writer arguments {args:?}");
    };
    let (seed, mode): (u64, HashMode) = (seed.parse().unwrap(), HashMode::parse(mode));
    let progress = OpenOptions::new()
        .write(true)
        .open(hash_progress_path(path))
        .unwrap();
    let dir = Dir::open(path).unwrap();
    report("opening");
    let opening = Instant::now();
    let mut store = HashStore::open(&dir, "kv", mode.options()).unwrap();
    let open_micros = opening.elapsed().as_micros();
    let mut model: HashModel = store
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(
        model.len() as u64,
        store.len(),
        "child: iter and len disagree"
    );
    let rebuilt = u8::from(store.rebuilt_at_open());
    report(&format!(
        "ready {:x} {open_micros} {rebuilt}",
        hash_fingerprint(&model)
    ));
    for (op, done) in hash_ops(seed, mode).zip(1..=HASH_OPS_MAX) {
        let old = match &op {
            HashOp::Set(k, v) => store.set(k, v).unwrap(),
            HashOp::Delete(k) => store.delete(k).unwrap(),
            HashOp::Update(k, salt) => store.update(k, |old| hash_updated(old, *salt)).unwrap(),
            HashOp::Clear => {
                store.clear().unwrap();
                None
            }
            HashOp::Sync => {
                store.sync().unwrap();
                None
            }
            HashOp::Reopen => {
                drop(store);
                store = HashStore::open(&dir, "kv", mode.options()).unwrap();
                assert!(
                    !store.rebuilt_at_open(),
                    "child: operation {done}: the open after a clean shutdown rebuilt"
                );
                assert_eq!(store.len(), model.len() as u64, "child: operation {done}");
                None
            }
        };
        let (_, want) = apply_hash_op(&mut model, &op);
        assert_eq!(
            old.as_deref(),
            want.as_deref(),
            "child: operation {done} ({op:?}) returned a wrong old value"
        );
        progress.write_at(&done.to_le_bytes(), 0).unwrap();
        if done.is_multiple_of(HASH_REPORT_EVERY) {
            report(&format!("ops {done}"));
        }
    }
    report("done");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Copies the store directory `from` to a fresh `to` (its lock file aside): what the
/// killed child left, for a reopen that leaves the store itself as the kill left it.
pub(crate) fn copy_store(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_store(&e.path(), &target);
        } else if e.file_name() != "accretion.lock" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Data generations (`kv/d<N>`) present under the store.
fn hash_data_generations(store: &Path) -> usize {
    std::fs::read_dir(store.join("kv")).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with('d'))
            })
            .count()
    })
}

/// The store's contents, through `iter`, checked against `get` and `len`.
fn hash_contents(store: &HashStore, round: usize) -> HashModel {
    let mut got = HashModel::new();
    let mut walked = 0;
    for e in store.iter().unwrap() {
        let (k, v) = e.unwrap_or_else(|e| panic!("round {round}: iter: {e}"));
        got.insert(k.to_vec(), v.to_vec());
        walked += 1;
    }
    assert_eq!(walked, got.len(), "round {round}: iter repeats a key");
    assert_eq!(
        store.len(),
        got.len() as u64,
        "round {round}: len and iter disagree"
    );
    for j in 0..HASH_KEYS {
        let k = hash_key(j);
        assert_eq!(
            store.get(&k).unwrap().as_deref(),
            got.get(&k).map(Vec::as_slice),
            "round {round}: get and iter disagree on key {j}"
        );
    }
    got
}

/// What a round's check found.
struct HashRound {
    /// The store's contents after the kill.
    model: HashModel,
    /// Whether the operation in flight had landed (and changed something).
    landed: bool,
    /// Whether the reopen rebuilt the index.
    rebuilt: bool,
    data_generation: u64,
}

/// Reopens the store at `at` after a kill and checks it: it holds exactly `before` with
/// the round's first `returned` operations applied, or with one more (the operation in
/// flight); `verify` passes; and the open rebuilt the index if a returned operation
/// wrote a record after the child's last clean shutdown.
fn verify_hash_after_kill(
    at: &Path,
    before: &HashModel,
    (seed, mode): (u64, HashMode),
    returned: u64,
    round: usize,
) -> HashRound {
    let ops: Vec<HashOp> = hash_ops(seed, mode).take(returned as usize + 1).collect();
    let mut want = before.clone();
    let mut wrote = false;
    for op in &ops[..returned as usize] {
        let writes = apply_hash_op(&mut want, op).0;
        // A reopen is a clean shutdown: what came before it needs no rebuild.
        wrote = !matches!(op, HashOp::Reopen) && (wrote || writes);
    }
    let mut or = want.clone();
    let in_flight = &ops[returned as usize];
    let in_flight_writes = apply_hash_op(&mut or, in_flight).0;

    let dir = Dir::open(at).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let options = HashOptions {
        auto_optimize: false,
        ..HashOptions::default()
    };
    let store = HashStore::open(&dir, "kv", options)
        .unwrap_or_else(|e| panic!("round {round}: HashStore reopen: {e}"));
    let rebuilt = store.rebuilt_at_open();
    let report = store
        .verify()
        .unwrap_or_else(|e| panic!("round {round}: verify: {e}"));
    assert_eq!(report.entries, store.len(), "round {round}: verify's count");
    let got = hash_contents(&store, round);
    let landed = if got == want {
        false
    } else if got == or {
        true
    } else {
        panic!(
            "round {round}: {returned} operations returned, but the store holds neither \
             their result nor that plus the operation in flight ({:?}): {}; {}",
            in_flight,
            describe_log_diff(&got, &want),
            hash_prefix_match(&got, before, &ops, seed, mode, returned)
        );
    };
    // (A reopen in flight may have shut the store down cleanly.)
    assert!(
        rebuilt || matches!(in_flight, HashOp::Reopen) || !(wrote || landed && in_flight_writes),
        "round {round}: the open trusted the index of a store killed after writing"
    );
    let data_generation = store.stats().unwrap().data_generation;
    HashRound {
        model: got,
        landed,
        rebuilt,
        data_generation,
    }
}

/// For a failure message: which prefix of the round's operations (up to a few hundred
/// past the returned ones) the store's contents match, if any.
fn hash_prefix_match(
    got: &HashModel,
    before: &HashModel,
    ops: &[HashOp],
    seed: u64,
    mode: HashMode,
    returned: u64,
) -> String {
    let mut m = before.clone();
    let mut matches = Vec::new();
    let more = hash_ops(seed, mode).skip(ops.len()).take(512);
    for (i, op) in ops.iter().cloned().chain(more).enumerate() {
        if m == *got {
            matches.push(i);
        }
        apply_hash_op(&mut m, &op);
    }
    format!(
        "{} keys held; the contents match the first {matches:?} operations ({returned} \
         returned)",
        got.len()
    )
}

/// Kills a HashStore child (a seeded mix of sets, deletes, updates and rare clears; in
/// some rounds small automatic optimisations, in some also syncs) at random moments,
/// again and again on one store, and checks after every kill that the reopen holds
/// exactly the operations that returned, and perhaps the one in flight. Half of the
/// rounds check a copy of the store, so that the next child opens the store as the kill
/// left it and rebuilds the index itself (and may be killed in that rebuild, or in the
/// end of an optimisation the open finishes); the other half reopen the store itself,
/// which the next child then finds clean.
#[test]
fn killed_hash_store_writers_lose_nothing_returned() {
    let start = Instant::now();
    let mut seeded = Seeded::new("process::killed_hash_store_writers_lose_nothing_returned");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let image = tmp.path().join("image");
    let mut model = HashModel::new();
    // How long the last child took to open a clean store (trusting its index) and a
    // store that a kill left (rebuilding the index): kills meant for an open aim within it.
    let mut open_time = [Duration::from_millis(1), Duration::from_millis(10)];
    // Whether the last round checked a copy, leaving the store as the kill left it.
    let mut left_killed = false;
    let (mut mid_open, mut two_gens, mut landed, mut rebuilt, mut returned_total) = (0, 0, 0, 0, 0);
    let mut data_generation = 0;
    let mut round = 0;
    while round < HASH_KILLS_MIN || (round < HASH_KILLS_MAX && start.elapsed() < HASH_TIME_BUDGET) {
        let mode = match seeded.rng.random_range(0..5) {
            0 | 1 => HashMode::Plain,
            2 | 3 => HashMode::Optimizing,
            _ => HashMode::Syncing,
        };
        let seed: u64 = seeded.rng.random();
        // Kills in the open aim mostly at the rebuild that follows a kill.
        let in_open = seeded.rng.random_ratio(1, if left_killed { 3 } else { 10 });
        let wait_reports = seeded.rng.random_range(1..=60u64);
        let in_place = seeded.rng.random_bool(0.5);
        File::create(hash_progress_path(&store)).unwrap();
        let role = format!("hash_writer {round} {seed} {}", mode.name());
        let mut child = ChildProc::spawn(&role, &store, tmp.path().join("stderr"));
        let mut reports = vec![child.next()];
        assert_eq!(reports[0], "opening", "round {round}");
        let delay = if in_open {
            let limit = open_time[usize::from(left_killed)].as_micros() as u64 * 3 / 2 + 1;
            Duration::from_micros(seeded.rng.random_range(0..limit))
        } else {
            loop {
                let r = child.next();
                assert_ne!(r, "done", "round {round}: the child ran out of operations");
                reports.push(r);
                if reports.len() as u64 >= wait_reports + 2 {
                    break;
                }
            }
            Duration::from_micros(seeded.rng.random_range(0..2_000))
        };
        std::thread::sleep(delay);
        reports.extend(child.kill());
        let returned = read_hash_progress(&store);
        let (mut ready, mut reported) = (false, 0);
        for r in &reports[1..] {
            let words: Vec<&str> = r.split(' ').collect();
            match words[..] {
                ["ready", fingerprint, micros, rebuilt] => {
                    let rebuilt: usize = rebuilt.parse().unwrap();
                    open_time[rebuilt] = Duration::from_micros(micros.parse().unwrap());
                    assert_eq!(
                        fingerprint,
                        format!("{:x}", hash_fingerprint(&model)),
                        "round {round}: the child opened other contents than the check found"
                    );
                    ready = true;
                }
                ["ops", n] => {
                    let n: u64 = n.parse().unwrap();
                    assert_eq!(
                        n,
                        reported + HASH_REPORT_EVERY,
                        "round {round}: report order"
                    );
                    reported = n;
                }
                _ => panic!("round {round}: unexpected report {r:?}"),
            }
        }
        assert!(
            (reported..=reported + HASH_REPORT_EVERY).contains(&returned),
            "round {round}: progress {returned} against reports up to {reported}"
        );
        assert!(ready || returned == 0, "round {round}: ops before ready");
        mid_open += usize::from(!ready);
        two_gens += usize::from(hash_data_generations(&store) >= 2);
        left_killed = !in_place;
        let at = if in_place {
            &store
        } else {
            copy_store(&store, &image);
            &image
        };
        let checked = verify_hash_after_kill(at, &model, (seed, mode), returned, round);
        if in_place {
            // The check's drop was a clean shutdown: the next open trusts the index.
            let dir = Dir::open(&store).unwrap();
            let again = HashStore::open(&dir, "kv", HashOptions::default()).unwrap();
            assert!(
                !again.rebuilt_at_open(),
                "round {round}: a clean shutdown was not trusted"
            );
            assert_eq!(again.len(), checked.model.len() as u64, "round {round}");
        }
        model = checked.model;
        landed += usize::from(checked.landed);
        rebuilt += usize::from(checked.rebuilt);
        data_generation = checked.data_generation;
        returned_total += returned;
        round += 1;
    }
    println!(
        "{round} kills in {:?}: {returned_total} operations returned, {landed} in flight \
         landed, {mid_open} kills before the child was ready, {two_gens} with two data \
         generations on disk, {rebuilt} rebuilds; data generation {data_generation}, {} \
         keys at the end",
        start.elapsed(),
        model.len()
    );
    assert!(returned_total > 0, "no child ever returned an operation");
}
