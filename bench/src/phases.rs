//! The phases of the standard workload, run against one engine inside a child process.
//!
//! Two stores are used, each in its own sub-directory. The first is bulk loaded, then
//! measured (disk bytes and peak RSS), read, scanned, reopened (engines with hint files:
//! once with them, once without) and emptied. The second is loaded one commit per insert,
//! then takes the mixed and the durable phases, so those run against a store of N keys
//! too; an engine with a durable mode is reopened in it (untimed) for the durable phases.
//! Every value read is checked against the workload's generator; a wrong, missing or
//! unexpected value fails the run with the key's index. This file knows the engines only
//! through the adapter trait; it prints nothing (see `child.rs`).

use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::engines::{Engine, EngineInfo, Id, Result, Traits};
use crate::results::{ChildReport, Measure, Phase};
use crate::workload::{ABSENT_BASE, DURABLE_BASE, MIXED_BASE, THREAD_STRIDE, Workload};

/// Threads of the two durable phases.
const DURABLE_THREADS: [u64; 2] = [1, 8];
/// Environment variable that makes the present-key get phase corrupt one value before
/// checking it: a self-test showing that a wrong value fails the run.
pub const FAULT_ENV: &str = "ACCRETION_BENCH_INJECT_FAULT";
/// One operation in this many of a mixed phase is a write.
const MIXED_WRITE_ONE_IN: u32 = 10;

/// Runs every phase of `w` against `info`'s engine in directories under `dir`.
///
/// # Errors
/// Any engine error, and any value that does not check out, naming the phase and key.
pub fn run(info: &EngineInfo, w: &Workload, dir: &Path) -> Result<ChildReport> {
    let mut report = ChildReport::default();
    let name = info.name;
    let traits = info.traits;

    // Store one: bulk load, reads, scan, remove.
    let path = dir.join("load");
    std::fs::create_dir_all(&path)?;
    reset_peak_rss();
    report.baseline_rss_bytes = proc_status_bytes("VmRSS:")?;
    {
        let mut engine = (info.open)(&path)?;
        let mut ids = Vec::new();
        let m = timed(w.n, || engine.bulk_insert(w, &mut ids))?;
        report.phases.insert(Phase::BulkInsert, m);
        report.peak_rss_bytes = proc_status_bytes("VmHWM:")?;
        report.disk_bytes = allocated_bytes(&path)?;
        let keys = Keys::new(w, traits.content_addressed.then_some(ids.as_slice()));
        let e = engine.as_ref();
        report
            .phases
            .insert(Phase::GetPresent, get_present(name, e, &keys)?);
        report
            .phases
            .insert(Phase::GetPresent2, get_present_threads(name, e, &keys, 2)?);
        report
            .phases
            .insert(Phase::GetAbsent, get_absent(name, e, &keys)?);
        report
            .phases
            .insert(Phase::Scan, scan(name, e, w, traits, w.n)?);
        if let Some(drop_hints) = info.extras.drop_hints {
            engine = reopen(info, w, &path, engine, drop_hints, &mut report)?;
        }
        let e = engine.as_ref();
        if traits.remove {
            report.phases.insert(Phase::Remove, remove(name, e, w)?);
            // Untimed: the store must now be empty.
            scan(name, e, w, traits, 0)?;
        }
    }
    std::fs::remove_dir_all(&path)?;

    // Store two: one commit per insert, then mixed and durable writes on top.
    let path = dir.join("single");
    std::fs::create_dir_all(&path)?;
    {
        let mut engine = (info.open)(&path)?;
        let e = engine.as_ref();
        let mut ids = Vec::new();
        let m = timed(w.n, || {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            for i in 0..w.n {
                w.key(i, &mut k);
                w.value(i, &mut v);
                if let Some(id) = e.insert(&k, &v)? {
                    ids.push(id);
                }
            }
            e.sync()
        })?;
        report.phases.insert(Phase::Insert, m);
        report.disk_after_inserts_bytes = allocated_bytes(&path)?;
        let keys = Keys::new(w, traits.content_addressed.then_some(ids.as_slice()));
        report
            .phases
            .insert(Phase::Mixed1, mixed(name, e, &keys, 1)?);
        report
            .phases
            .insert(Phase::Mixed2, mixed(name, e, &keys, 2)?);
        if traits.durable {
            if let Some(open_durable) = info.extras.open_durable {
                // Untimed: close, then reopen in the durable mode.
                drop(engine);
                engine = open_durable(&path)?;
            }
            for (phase, threads) in [Phase::Durable1, Phase::Durable8]
                .into_iter()
                .zip(DURABLE_THREADS)
            {
                report
                    .phases
                    .insert(phase, durable(engine.as_ref(), w, threads)?);
            }
        }
    }
    std::fs::remove_dir_all(&path)?;
    Ok(report)
}

/// The two reopen phases: closes `engine` and opens its store again three times. The
/// first open is untimed: it warms what any open touches besides the store (the page
/// cache holds the files already, from the load; the allocator gets back the memory the
/// loaded index gave up), so that the two timed opens start alike. The second open finds
/// the hint files in place; the third follows `drop_hints`. Each timed open is checked by
/// a full scan, untimed. The second must have read only the active segment record by
/// record (a store smaller than one segment has no hint file at all), the third none
/// from hint files. Returns the engine of the last open.
fn reopen(
    info: &EngineInfo,
    w: &Workload,
    path: &Path,
    engine: Box<dyn Engine>,
    drop_hints: fn(&Path) -> Result<u64>,
    report: &mut ChildReport,
) -> Result<Box<dyn Engine>> {
    let name = info.name;
    drop(engine);
    let open = || -> Result<(Box<dyn Engine>, Measure)> {
        let start = Instant::now();
        let engine = (info.open)(path)?;
        let m = Measure {
            ops: w.n,
            nanos: nanos(start.elapsed()),
        };
        Ok((engine, m))
    };
    let counts = |e: &dyn Engine, phase: Phase| {
        e.replay_counts().ok_or_else(|| {
            format!(
                "{name}, {}: the engine does not say how it replayed",
                phase.id()
            )
        })
    };

    drop(open()?);
    let (engine, m) = open()?;
    let (hinted, scanned) = counts(engine.as_ref(), Phase::ReopenHints)?;
    // Every finished segment has its hint by now; only the active one is read.
    if scanned > 1 {
        return Err(format!(
            "{name}, {}: {scanned} segments were read record by record (only the active one \
             should be), {hinted} from hint files",
            Phase::ReopenHints.id()
        )
        .into());
    }
    let checked = format!("{name} (reopened with hint files)");
    scan(&checked, engine.as_ref(), w, info.traits, w.n)?;
    report.phases.insert(Phase::ReopenHints, m);
    report.reopen_segments = Some((hinted, scanned));
    drop(engine);

    let removed = drop_hints(path)?;
    if removed != hinted {
        return Err(format!(
            "{name}, {}: removed {removed} hint files, but {hinted} segments were replayed \
             from hint files",
            Phase::ReopenNoHints.id()
        )
        .into());
    }
    let (engine, m) = open()?;
    let (hinted, _) = counts(engine.as_ref(), Phase::ReopenNoHints)?;
    if hinted != 0 {
        return Err(format!(
            "{name}, {}: {hinted} segments were replayed from hint files that were removed",
            Phase::ReopenNoHints.id()
        )
        .into());
    }
    let checked = format!("{name} (reopened without hint files)");
    scan(&checked, engine.as_ref(), w, info.traits, w.n)?;
    report.phases.insert(Phase::ReopenNoHints, m);
    Ok(engine)
}

/// How the phases name a loaded value to the engine: by the workload's key, or by the id
/// its insert returned (content-addressed engines).
struct Keys<'a> {
    w: &'a Workload,
    ids: Option<&'a [Id]>,
}

impl<'a> Keys<'a> {
    fn new(w: &'a Workload, ids: Option<&'a [Id]>) -> Self {
        Keys { w, ids }
    }

    /// The lookup key of loaded value `i`.
    fn present<'b>(&'b self, i: u64, buf: &'b mut Vec<u8>) -> &'b [u8] {
        match self.ids {
            Some(ids) => &ids[i as usize],
            None => {
                self.w.key(i, buf);
                buf
            }
        }
    }

    /// The lookup key of absent value `j`.
    fn absent<'b>(&self, j: u64, buf: &'b mut Vec<u8>) -> &'b [u8] {
        match self.ids {
            Some(_) => {
                buf.clear();
                buf.extend_from_slice(&self.w.absent_id(j));
            }
            None => self.w.key(ABSENT_BASE + j, buf),
        }
        buf
    }
}

fn timed(ops: u64, f: impl FnOnce() -> Result<()>) -> Result<Measure> {
    let start = Instant::now();
    f()?;
    Ok(Measure {
        ops,
        nanos: nanos(start.elapsed()),
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Checks one read of loaded value `i`.
fn check_present(
    engine: &str,
    phase: Phase,
    w: &Workload,
    i: u64,
    got: Option<&[u8]>,
) -> Result<()> {
    match got {
        Some(v) if w.value_matches(i, v) => Ok(()),
        Some(v) => {
            let mut expected = Vec::new();
            w.value(i, &mut expected);
            let at = v.iter().zip(&expected).position(|(a, b)| a != b);
            let detail = match at {
                Some(at) => format!("first difference at byte {at}"),
                None => format!("{} bytes, expected {}", v.len(), expected.len()),
            };
            Err(format!(
                "{engine}, {}: key #{i} returned a wrong value ({detail})",
                phase.id()
            )
            .into())
        }
        None => Err(format!("{engine}, {}: key #{i} is missing", phase.id()).into()),
    }
}

fn get_present(engine: &str, e: &dyn Engine, keys: &Keys) -> Result<Measure> {
    let w = keys.w;
    let mut rng = w.order_rng(1);
    let mut reader = e.reader()?;
    let mut buf = Vec::new();
    let mut verdict = Ok(());
    // The self-test of the checker: with FAULT_ENV set, the last value read has one bit
    // flipped before it is checked, and the run must fail.
    let fault_at = std::env::var_os(FAULT_ENV).map(|_| w.n - 1);
    timed(w.n, || {
        for op in 0..w.n {
            let i = rng.random_range(0..w.n);
            let key = keys.present(i, &mut buf);
            reader.get(key, &mut |got| {
                if verdict.is_err() {
                    return;
                }
                verdict = match (fault_at == Some(op), got) {
                    (true, Some(v)) => {
                        let mut flipped = v.to_vec();
                        flipped[0] ^= 1;
                        check_present(engine, Phase::GetPresent, w, i, Some(&flipped))
                    }
                    _ => check_present(engine, Phase::GetPresent, w, i, got),
                };
            })?;
        }
        Ok(())
    })
    .and_then(|m| verdict.map(|()| m))
}

/// N gets of random present keys split over `threads` threads, each with its own read
/// session and order; every value is checked.
fn get_present_threads(engine: &str, e: &dyn Engine, keys: &Keys, threads: u64) -> Result<Measure> {
    let w = keys.w;
    let per_thread = w.n / threads;
    parallel(threads, |t| {
        let mut rng = w.order_rng(200 + t);
        let mut reader = e.reader()?;
        let mut buf = Vec::new();
        let mut verdict = Ok(());
        for _ in 0..per_thread {
            let i = rng.random_range(0..w.n);
            let key = keys.present(i, &mut buf);
            reader.get(key, &mut |got| {
                if verdict.is_ok() {
                    verdict = check_present(engine, Phase::GetPresent2, w, i, got);
                }
            })?;
        }
        verdict.map(|()| per_thread)
    })
}

fn get_absent(engine: &str, e: &dyn Engine, keys: &Keys) -> Result<Measure> {
    let w = keys.w;
    let mut rng = w.order_rng(2);
    let mut reader = e.reader()?;
    let mut buf = Vec::new();
    let mut found = None;
    let m = timed(w.n, || {
        for _ in 0..w.n {
            let j = rng.random_range(0..ABSENT_BASE);
            let key = keys.absent(j, &mut buf);
            reader.get(key, &mut |got| {
                if got.is_some() && found.is_none() {
                    found = Some(j);
                }
            })?;
        }
        Ok(())
    })?;
    match found {
        Some(j) => Err(format!("{engine}, get-absent: absent key #{j} returned a value").into()),
        None => Ok(m),
    }
}

/// Scans and checks: `expected` entries, ascending keys for ordered engines, every value
/// right (content-addressed engines report ids only, so only their count is checked).
fn scan(
    engine: &str,
    e: &dyn Engine,
    w: &Workload,
    traits: Traits,
    expected: u64,
) -> Result<Measure> {
    let mut count = 0u64;
    let mut previous: Vec<u8> = Vec::new();
    let mut verdict: Result<()> = Ok(());
    let start = Instant::now();
    e.scan(&mut |k, v| {
        count += 1;
        if verdict.is_err() {
            return;
        }
        if traits.ordered {
            if count > 1 && k <= previous.as_slice() {
                verdict = Err(format!("{engine}, scan: entry {count} is out of key order").into());
            }
            previous.clear();
            previous.extend_from_slice(k);
        }
        if traits.content_addressed {
            return;
        }
        verdict = match w.index_of(k) {
            Some(i) => check_present(engine, Phase::Scan, w, i, Some(v)),
            None => {
                Err(format!("{engine}, scan: entry {count} has a key not in the workload").into())
            }
        };
    })?;
    let nanos = nanos(start.elapsed());
    verdict?;
    if count != expected {
        return Err(format!("{engine}, scan: {count} entries, expected {expected}").into());
    }
    Ok(Measure { ops: count, nanos })
}

fn remove(engine: &str, e: &dyn Engine, w: &Workload) -> Result<Measure> {
    let mut k = Vec::new();
    timed(w.n, || {
        for i in 0..w.n {
            w.key(i, &mut k);
            if !e.remove(&k)? {
                return Err(format!("{engine}, remove: key #{i} was not present").into());
            }
        }
        e.sync()
    })
}

/// Runs `f(thread)` on `threads` threads started together; the time runs from the first
/// thread's start until the last thread is done.
fn parallel(threads: u64, f: impl Fn(u64) -> Result<u64> + Sync) -> Result<Measure> {
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    // Each thread reads the clock itself: the spawning thread may be
                    // descheduled after the barrier while the workers already run (on a
                    // 2-core machine a short phase could then finish before its clock
                    // started).
                    (Instant::now(), f(t))
                })
            })
            .collect();
        barrier.wait();
        let mut start: Option<Instant> = None;
        let mut ops = 0;
        let mut first_error = None;
        for h in handles {
            match h.join() {
                Ok((began, result)) => {
                    start = Some(start.map_or(began, |s| s.min(began)));
                    match result {
                        Ok(n) => ops += n,
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                Err(_) => first_error = first_error.or(Some("a benchmark thread panicked".into())),
            }
        }
        let nanos = start.map_or(0, |s| nanos(s.elapsed()));
        match first_error {
            Some(e) => Err(e),
            None => Ok(Measure { ops, nanos }),
        }
    })
}

fn mixed(engine: &str, e: &dyn Engine, keys: &Keys, threads: u64) -> Result<Measure> {
    let w = keys.w;
    let per_thread = w.mixed_ops / threads;
    let phase = if threads == 1 {
        Phase::Mixed1
    } else {
        Phase::Mixed2
    };
    let m = parallel(threads, |t| {
        let mut rng = w.order_rng(100 + threads * 10 + t);
        let fresh = MIXED_BASE + (threads * 8 + t) * THREAD_STRIDE;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let mut writes = 0;
        let mut verdict = Ok(());
        for _ in 0..per_thread {
            if rng.random_ratio(1, MIXED_WRITE_ONE_IN) {
                let index = fresh + writes;
                w.key(index, &mut k);
                w.value(index, &mut v);
                e.insert(&k, &v)?;
                writes += 1;
            } else {
                let i = rng.random_range(0..w.n);
                let key = keys.present(i, &mut k);
                e.get(key, &mut |got| {
                    if verdict.is_ok() {
                        verdict = check_present(engine, phase, w, i, got);
                    }
                })?;
                std::mem::replace(&mut verdict, Ok(()))?;
            }
        }
        Ok(per_thread)
    })?;
    // The phase's one final sync is part of its time.
    let start = Instant::now();
    e.sync()?;
    Ok(Measure {
        ops: m.ops,
        nanos: m.nanos + nanos(start.elapsed()),
    })
}

/// Durable inserts of fresh keys until `w.durable_ops` are done or `w.durable_ms` passed.
fn durable(e: &dyn Engine, w: &Workload, threads: u64) -> Result<Measure> {
    let claimed = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_millis(w.durable_ms);
    parallel(threads, |t| {
        let fresh = DURABLE_BASE + (threads * 8 + t) * THREAD_STRIDE;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let mut done = 0;
        while claimed.fetch_add(1, Ordering::Relaxed) < w.durable_ops && Instant::now() < deadline {
            w.key(fresh + done, &mut k);
            w.value(fresh + done, &mut v);
            e.insert_durable(&k, &v)?;
            done += 1;
        }
        Ok(done)
    })
}

/// Resets the peak-RSS counter (VmHWM) of this process, so that the peak read after the
/// load belongs to the load.
fn reset_peak_rss() {
    // Linux 4.0 and later; on failure VmHWM simply keeps its earlier peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A `kB` field of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// Bytes allocated on disk (st_blocks * 512) by every file under `path`: sparse and
/// preallocated files count what they really take.
pub fn allocated_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_values_fail_with_the_key() {
        let w = Workload {
            n: 10,
            key_len: 16,
            value_len: 100,
            seed: 1,
            mixed_ops: 10,
            durable_ops: 1,
            durable_ms: 1,
        };
        let mut v = Vec::new();
        w.value(3, &mut v);
        assert!(check_present("x", Phase::Scan, &w, 3, Some(&v)).is_ok());
        let wrong = check_present("x", Phase::Scan, &w, 4, Some(&v)).unwrap_err();
        assert!(wrong.to_string().contains("key #4 returned a wrong value"));
        let missing = check_present("x", Phase::Scan, &w, 4, None).unwrap_err();
        assert!(missing.to_string().contains("key #4 is missing"));
    }
}
