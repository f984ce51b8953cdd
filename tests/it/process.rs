//! Other processes: the store lock against a second process, and kill tests.
//!
//! The children are this test binary run again with `--exact process::child_main`; the
//! environment variable `ACCRETION_CHILD` says what the child does and
//! `ACCRETION_CHILD_DIR` where. Children report on stdout, each report after the `@@ `
//! marker (libtest may print its own text on the same line).
//!
//! A SIGKILL loses nothing a process wrote to a mapping or a file (the kernel holds it), so
//! the kill tests check the other half of the contract: a reopen trusts exactly what the
//! registers recorded, everything a child acknowledged as synced is there with the right
//! bytes, nothing it did not sync is visible, and the reopen itself succeeds wherever the
//! kill landed (in an append, a sync, a lane creation, or the open).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use accretion::{AppendOnly, Dir, Error, OnceMap, Span};
use rand::Rng;

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
        other => panic!("unknown child role {other:?}"),
    }
}

fn report(what: &str) {
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

/// Where a record of `len` bytes appended at cursor `cur` starts: in place, unless it does
/// not fit in the rest of its lane; then at the next lane's start (ARCHITECTURE.md).
fn place(cur: u64, len: u64) -> u64 {
    let mut start = cur;
    loop {
        let lane = 63 - (start / LANE_BASE + 1).leading_zeros();
        let lane_start = LANE_BASE * ((1 << lane) - 1);
        if start - lane_start + len <= LANE_BASE << lane {
            return start;
        }
        start = LANE_BASE * ((1 << (lane + 1)) - 1);
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
struct ChildProc {
    child: Child,
    reports: Receiver<String>,
    stderr: PathBuf,
}

impl ChildProc {
    fn spawn(role: &str, dir: &Path, stderr: PathBuf) -> ChildProc {
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
    fn next(&mut self) -> String {
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
    fn kill(&mut self) -> Vec<String> {
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
    assert_eq!(log.get(Span::new(0, 4)).unwrap(), b"held");
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
