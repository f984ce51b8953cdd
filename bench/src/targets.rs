//! The targets our stores were written to meet (LogStore's, BTreeStore's), checked against
//! a run: each is the ratio of two median throughputs at one N, which must reach a bound.
//! They are shown as a section of the report per store, with LogStore's reopen times,
//! BTreeStore's disk bytes against LMDB's, and every engine's durable rates, and as lines
//! of the headline printed at the end of a run.
//!
//! Only formatting and ratios here, like `report.rs`; a target whose engines did not run
//! is shown as not measured, never as met.

use std::fmt::Write;

use crate::engines::EngineInfo;
use crate::report::{rate, spread_cell};
use crate::results::{Phase, Spread};
use crate::run::SizeResults;

/// The engine the LogStore targets are about.
pub const ENGINE: &str = "logstore";
/// The engine the BTreeStore targets are about.
pub const BTREE: &str = "btree";
/// BTreeStore's disk bytes after the load may be at most this multiple of LMDB's.
const BTREE_DISK_VS_LMDB_MAX: f64 = 1.2;
/// ... and after N one-key commits at most this multiple of the live data.
const BTREE_DISK_VS_LIVE_MAX: f64 = 3.0;

/// What a target's figure is divided by.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// The same phase of another engine.
    Peer(&'static str),
    /// Another phase of the same engine.
    Own(Phase),
}

/// One target: an engine's `phase` ÷ `base` must be at least `at_least`.
#[derive(Clone, Copy, Debug)]
struct Target {
    what: &'static str,
    phase: Phase,
    base: Base,
    at_least: f64,
}

/// LogStore's targets, in the order they are listed.
const TARGETS: [Target; 5] = [
    Target {
        what: "put (insert, 1 op/commit, no fsync)",
        phase: Phase::Insert,
        base: Base::Peer("fjall"),
        at_least: 2.0,
    },
    Target {
        what: "put (insert, 1 op/commit, no fsync)",
        phase: Phase::Insert,
        base: Base::Peer("candystore"),
        at_least: 1.0,
    },
    Target {
        what: "random get (get present)",
        phase: Phase::GetPresent,
        base: Base::Peer("lmdb"),
        at_least: 1.0,
    },
    Target {
        what: "full ordered scan",
        phase: Phase::Scan,
        base: Base::Peer("fjall"),
        at_least: 1.0,
    },
    Target {
        what: "durable puts, 8 threads",
        phase: Phase::Durable8,
        base: Base::Own(Phase::Durable1),
        at_least: 5.0,
    },
];

/// BTreeStore's targets (issue 11): against LMDB, the fastest persistent reader here, but
/// for reader scaling, against its own one-thread reads.
const BTREE_TARGETS: [Target; 6] = [
    Target {
        what: "random get (get present)",
        phase: Phase::GetPresent,
        base: Base::Peer("lmdb"),
        at_least: 1.0,
    },
    Target {
        what: "random get, 2 reader threads (÷ its own 1 thread)",
        phase: Phase::GetPresent2,
        base: Base::Own(Phase::GetPresent),
        at_least: 1.8,
    },
    Target {
        what: "full ordered scan",
        phase: Phase::Scan,
        base: Base::Peer("lmdb"),
        at_least: 1.0,
    },
    Target {
        what: "bulk load in one transaction",
        phase: Phase::BulkInsert,
        base: Base::Peer("lmdb"),
        at_least: 2.0,
    },
    Target {
        what: "one-key commits, not durable",
        phase: Phase::Insert,
        base: Base::Peer("lmdb"),
        at_least: 2.0,
    },
    Target {
        what: "one-key durable commits, 1 thread",
        phase: Phase::Durable1,
        base: Base::Peer("lmdb"),
        at_least: 1.0,
    },
];

/// The engine the HashStore targets are about.
pub const HASH: &str = "hashstore";

/// HashStore's targets (issue 12): against CandyStore, the other hash store on disk
/// here, and std's HashMap (the loose ceiling, as the issue names it).
const HASH_TARGETS: [Target; 5] = [
    Target {
        what: "insert (1 op/commit, no fsync)",
        phase: Phase::Insert,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
    Target {
        what: "random get, values checked",
        phase: Phase::GetPresent,
        base: Base::Peer("candystore"),
        at_least: 2.0,
    },
    Target {
        what: "random get, values checked",
        phase: Phase::GetPresent,
        base: Base::Peer("hashmap"),
        at_least: 0.7,
    },
    Target {
        what: "absent-key get",
        phase: Phase::GetAbsent,
        base: Base::Peer("hashmap"),
        at_least: 0.5,
    },
    Target {
        what: "remove",
        phase: Phase::Remove,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
];

/// The engine the ShardedStore targets are about.
pub const SHARDED: &str = "shardedstore";

/// ShardedStore's targets (issue 13): against CandyStore, whose design it rebuilds, and
/// its own one-thread gets.
const SHARDED_TARGETS: [Target; 5] = [
    Target {
        what: "insert (1 op/commit, no fsync)",
        phase: Phase::Insert,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
    Target {
        what: "random get, values checked",
        phase: Phase::GetPresent,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
    Target {
        what: "absent-key get",
        phase: Phase::GetAbsent,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
    Target {
        what: "remove",
        phase: Phase::Remove,
        base: Base::Peer("candystore"),
        at_least: 1.5,
    },
    Target {
        what: "get, 2 threads ÷ 1 thread",
        phase: Phase::GetPresent2,
        base: Base::Own(Phase::GetPresent),
        at_least: 1.8,
    },
];

/// Each store's targets: its engine, its section title, its targets.
const SETS: [(&str, &str, &[Target]); 4] = [
    (ENGINE, "LogStore targets", &TARGETS),
    (BTREE, "BTreeStore targets", &BTREE_TARGETS),
    (HASH, "HashStore targets", &HASH_TARGETS),
    (SHARDED, "ShardedStore targets", &SHARDED_TARGETS),
];

/// A target measured.
#[derive(Debug)]
struct Outcome {
    mine: Spread,
    base: Spread,
    /// Who or what the base is, for the table.
    base_label: String,
    /// Ratio of the medians.
    ratio: f64,
    /// Slowest of ours ÷ fastest of the base, and fastest ÷ slowest.
    range: (f64, f64),
}

impl Outcome {
    fn met(&self, t: &Target) -> bool {
        self.ratio >= t.at_least
    }
}

fn phase_of(size: &SizeResults, engine: &str, phase: Phase) -> Option<Spread> {
    size.engines.get(engine)?.phases.get(&phase).copied()
}

/// The target of `engine` measured, or why it was not.
fn evaluate(engine: &str, t: &Target, size: &SizeResults) -> Result<Outcome, String> {
    let mine = phase_of(size, engine, t.phase)
        .ok_or_else(|| format!("{engine} has no {} figure", t.phase.label()))?;
    let (base, base_label) = match t.base {
        Base::Peer(peer) => (
            phase_of(size, peer, t.phase).ok_or_else(|| format!("{peer} was not in this run"))?,
            peer.to_string(),
        ),
        Base::Own(phase) => (
            phase_of(size, engine, phase)
                .ok_or_else(|| format!("{engine} has no {} figure", phase.label()))?,
            format!("{engine}, {}", phase.label()),
        ),
    };
    if base.min <= 0.0 {
        return Err(format!("{base_label} did no operation in some run"));
    }
    Ok(Outcome {
        ratio: mine.median / base.median,
        range: (mine.min / base.max, mine.max / base.min),
        mine,
        base,
        base_label,
    })
}

fn verdict(t: &Target, o: &Outcome) -> &'static str {
    if o.met(t) { "**met**" } else { "**missed**" }
}

/// Median, fastest and slowest open time in seconds of a reopen phase (ops are keys).
fn open_secs(size: &SizeResults, phase: Phase) -> Option<Spread> {
    open_secs_of(size, ENGINE, phase)
}

/// `engine`'s open time in a reopen phase, from its keys/s.
fn open_secs_of(size: &SizeResults, engine: &str, phase: Phase) -> Option<Spread> {
    let summary = size.engines.get(engine)?;
    let sp = summary.phases.get(&phase)?;
    let keys = *summary.ops.get(&phase)?;
    Some(Spread {
        median: keys / sp.median,
        min: keys / sp.max,
        max: keys / sp.min,
        count: sp.count,
    })
}

fn duration(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else {
        format!("{:.0} ms", secs * 1e3)
    }
}

fn duration_cell(sp: &Spread) -> String {
    if sp.count == 1 {
        return duration(sp.median);
    }
    format!(
        "{} [{}–{}]",
        duration(sp.median),
        duration(sp.min),
        duration(sp.max)
    )
}

/// The report sections, one per store that ran at this N; `engines` are the run's, in
/// report order.
pub fn section(s: &mut String, engines: &[&EngineInfo], size: &SizeResults) {
    let mut any = false;
    for (engine, title, targets) in SETS {
        if !size.engines.contains_key(engine) {
            continue;
        }
        any = true;
        target_table(s, engine, title, targets, size);
        if engine == ENGINE {
            reopen(s, size);
        } else if engine == BTREE {
            btree_disk(s, size);
        } else if engine == HASH {
            hash_reopen(s, size);
        }
    }
    if any {
        durable(s, engines, size);
    }
}

fn target_table(s: &mut String, engine: &str, title: &str, targets: &[Target], size: &SizeResults) {
    let _ = writeln!(s, "### {title}\n");
    let _ = writeln!(
        s,
        "The targets {engine} was written to meet, each a ratio of median throughputs at this N \
         (no fsync per write except in the durable phases). In brackets: the slowest of its runs ÷ \
         the fastest of the other's, and the reverse, so a range that straddles the bound means the \
         verdict could go either way on this machine.\n"
    );
    let _ = writeln!(
        s,
        "| target | {engine} | against | ratio | needed | verdict |\n|---|---:|---:|---:|---:|---|"
    );
    let mut met = 0;
    let mut measured = 0;
    for t in targets {
        match evaluate(engine, t, size) {
            Ok(o) => {
                measured += 1;
                met += usize::from(o.met(t));
                let ratio = if o.mine.count > 1 || o.base.count > 1 {
                    format!("{:.2}× [{:.2}–{:.2}]", o.ratio, o.range.0, o.range.1)
                } else {
                    format!("{:.2}×", o.ratio)
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} {} | {ratio} | ≥ {}× | {} |",
                    t.what,
                    spread_cell(&o.mine),
                    o.base_label,
                    spread_cell(&o.base),
                    t.at_least,
                    verdict(t, &o)
                );
            }
            Err(why) => {
                let against = match t.base {
                    Base::Peer(p) => p.to_string(),
                    Base::Own(phase) => format!("{engine}, {}", phase.label()),
                };
                let _ = writeln!(
                    s,
                    "| {} | – | {against} | – | ≥ {}× | not measured: {why} |",
                    t.what, t.at_least
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\n{met} of the {} targets met ({measured} measured).\n",
        targets.len()
    );
}

/// BTreeStore's disk bytes after the load against LMDB's, and after the one-key commits
/// against the live data (N keys and values).
fn btree_disk(s: &mut String, size: &SizeResults) {
    let after_inserts = size
        .engines
        .get(BTREE)
        .and_then(|x| x.disk_after_inserts_bytes);
    if let Some(d) = after_inserts {
        let w = &size.workload;
        let live = (w.n * (w.key_len + w.value_len) as u64) as f64;
        let ratio = d.median / live;
        let _ = writeln!(
            s,
            "**Disk after {} one-key commits:** {BTREE} {:.0} MiB, {ratio:.2}× the live data \
             ({:.0} MiB; needed ≤ {BTREE_DISK_VS_LIVE_MAX}×): **{}**.\n",
            w.n,
            d.median / 1048576.0,
            live / 1048576.0,
            if ratio <= BTREE_DISK_VS_LIVE_MAX {
                "met"
            } else {
                "missed"
            }
        );
    }
    let disk = |e: &str| size.engines.get(e).and_then(|x| x.disk_bytes);
    let (Some(mine), Some(lmdb)) = (disk(BTREE), disk("lmdb")) else {
        return;
    };
    let ratio = mine.median / lmdb.median;
    let _ = writeln!(
        s,
        "**Disk after the load:** {BTREE} {:.0} MiB, lmdb {:.0} MiB: {ratio:.2}× (needed ≤ \
         {BTREE_DISK_VS_LMDB_MAX}×): **{}**.\n",
        mine.median / 1048576.0,
        lmdb.median / 1048576.0,
        if ratio <= BTREE_DISK_VS_LMDB_MAX {
            "met"
        } else {
            "missed"
        }
    );
}

fn reopen(s: &mut String, size: &SizeResults) {
    let (Some(with), Some(without)) = (
        open_secs(size, Phase::ReopenHints),
        open_secs(size, Phase::ReopenNoHints),
    ) else {
        return;
    };
    let layout = size
        .engines
        .get(ENGINE)
        .and_then(|e| e.reopen_segments)
        .map_or(String::new(), |(hinted, scanned)| {
            format!(
                " With hint files, {hinted} segment{} came from hint files and {scanned} \
                 (the active segment, which has no hint yet) {} read record by record.",
                if hinted == 1 { "" } else { "s" },
                if scanned == 1 { "was" } else { "were" }
            )
        });
    let _ = writeln!(
        s,
        "**Reopen.** Time to open the bulk-loaded store of {} keys again, median [fastest–slowest], \
         page cache warm.{layout}\n",
        size.workload.n
    );
    let _ = writeln!(s, "| open | time | keys/s |\n|---|---:|---:|");
    for (label, sp, phase) in [
        ("with hint files", with, Phase::ReopenHints),
        ("without hint files", without, Phase::ReopenNoHints),
    ] {
        let keys_per_sec = phase_of(size, ENGINE, phase).map_or("–".into(), |r| rate(r.median));
        let _ = writeln!(s, "| {label} | {} | {keys_per_sec} |", duration_cell(&sp));
    }
    let _ = writeln!(
        s,
        "\nWith hint files the open takes {:.2}× the time it takes without (hint files make it {:.2}× as fast).\n",
        with.median / without.median,
        without.median / with.median
    );
}

/// HashStore's opens: clean (the index trusted, checked by its checksum; the issue's
/// bound is 50 ms at 1M keys) and with its index removed (a rebuild from every record, as
/// after a SIGKILL), each scaled to a million keys.
fn hash_reopen(s: &mut String, size: &SizeResults) {
    let (Some(clean), Some(rebuild)) = (
        open_secs_of(size, HASH, Phase::ReopenHints),
        open_secs_of(size, HASH, Phase::ReopenNoHints),
    ) else {
        return;
    };
    let per_million = 1e6 / size.workload.n as f64;
    let _ = writeln!(
        s,
        "**Reopen.** Time to open the bulk-loaded store of {} keys again, median          [fastest–slowest], page cache warm: cleanly (the index trusted once its checksum          holds; needed: at most 50 ms per million keys), and with the index removed (rebuilt          from every record, as after a SIGKILL).\n",
        size.workload.n
    );
    let _ = writeln!(
        s,
        "| open | time | per million keys | verdict |\n|---|---:|---:|---|"
    );
    for (label, sp, bound) in [("clean", clean, Some(0.05)), ("rebuild", rebuild, None)] {
        let verdict = match bound {
            Some(b) if sp.median * per_million <= b => "**met**",
            Some(_) => "**missed**",
            None => "reported",
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {verdict} |",
            duration_cell(&sp),
            duration(sp.median * per_million)
        );
    }
    let _ = writeln!(s);
}

fn durable(s: &mut String, engines: &[&EngineInfo], size: &SizeResults) {
    let rows: Vec<String> = engines
        .iter()
        .filter_map(|e| {
            let one = phase_of(size, e.name, Phase::Durable1)?;
            let eight = phase_of(size, e.name, Phase::Durable8)?;
            Some(format!(
                "| {} | {} | {} | {:.2}× |",
                e.name,
                spread_cell(&one),
                spread_cell(&eight),
                eight.median / one.median
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "**Durable puts of every engine that has them** (ops/s; each put durable before it \
         returns):\n\n| engine | 1 thread | 8 threads | 8 threads ÷ 1 thread |\n|---|---:|---:|---:|"
    );
    for row in rows {
        let _ = writeln!(s, "{row}");
    }
    s.push('\n');
}

/// Lines for the headline: each target's ratio and verdict, and the reopen times.
pub fn summary(s: &mut String, size: &SizeResults) {
    for (engine, _, targets) in SETS {
        if !size.engines.contains_key(engine) {
            continue;
        }
        let _ = writeln!(s, "{engine} targets:");
        for t in targets {
            let against = match t.base {
                Base::Peer(p) => p.to_string(),
                Base::Own(phase) => phase.label().to_string(),
            };
            let line = match evaluate(engine, t, size) {
                Ok(o) => format!(
                    "{:.2}× (need ≥ {}×): {}",
                    o.ratio,
                    t.at_least,
                    if o.met(t) { "met" } else { "MISSED" }
                ),
                Err(why) => format!("not measured ({why})"),
            };
            let _ = writeln!(s, "  {} ÷ {against}: {line}", t.what);
        }
        if engine != ENGINE {
            continue;
        }
        if let (Some(with), Some(without)) = (
            open_secs(size, Phase::ReopenHints),
            open_secs(size, Phase::ReopenNoHints),
        ) {
            let _ = writeln!(
                s,
                "  reopen of {} keys: {} with hint files, {} without ({:.2}× as fast)",
                size.workload.n,
                duration(with.median),
                duration(without.median),
                without.median / with.median
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engines;
    use crate::results::EngineSummary;
    use crate::workload::Workload;

    fn spread(median: f64) -> Spread {
        Spread {
            median,
            min: median * 0.9,
            max: median * 1.1,
            count: 3,
        }
    }

    /// A size where logstore and fjall ran (not candystore or lmdb).
    fn size() -> SizeResults {
        let mut ours = EngineSummary::default();
        let mut fjall = EngineSummary::default();
        for (phase, mine, theirs) in [
            (Phase::Insert, 700e3, 300e3),
            (Phase::Scan, 1e6, 2e6),
            (Phase::Durable1, 1e3, 10e3),
            (Phase::Durable8, 6e3, 9e3),
            (Phase::ReopenHints, 2e6, 0.0),
            (Phase::ReopenNoHints, 1e6, 0.0),
        ] {
            ours.phases.insert(phase, spread(mine));
            ours.ops.insert(phase, 1e6);
            if theirs > 0.0 {
                fjall.phases.insert(phase, spread(theirs));
            }
        }
        ours.reopen_segments = Some((2, 1));
        SizeResults {
            workload: Workload {
                n: 1_000_000,
                key_len: 16,
                value_len: 100,
                seed: 1,
                mixed_ops: 1,
                durable_ops: 1,
                durable_ms: 1,
            },
            engines: BTreeMap::from([(ENGINE, ours), ("fjall", fjall)]),
            child_secs: BTreeMap::new(),
            skipped: Vec::new(),
            raw: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_are_met_missed_or_not_measured() {
        let size = size();
        let put = evaluate(ENGINE, &TARGETS[0], &size).unwrap();
        assert!((put.ratio - 7.0 / 3.0).abs() < 1e-9);
        assert!(put.met(&TARGETS[0]));
        assert!(put.range.0 < put.ratio && put.ratio < put.range.1);
        assert!(
            evaluate(ENGINE, &TARGETS[1], &size)
                .unwrap_err()
                .contains("candystore")
        );
        let scan = evaluate(ENGINE, &TARGETS[3], &size).unwrap();
        assert!(!scan.met(&TARGETS[3]));
        let durable = evaluate(ENGINE, &TARGETS[4], &size).unwrap();
        assert!((durable.ratio - 6.0).abs() < 1e-9 && durable.met(&TARGETS[4]));
    }

    #[test]
    fn section_and_summary_show_every_target() {
        let size = size();
        let ran: Vec<&EngineInfo> = ["logstore", "fjall"]
            .iter()
            .map(|n| engines::find(n).unwrap())
            .collect();
        let mut s = String::new();
        section(&mut s, &ran, &size);
        assert_eq!(s.matches("**met**").count(), 2, "{s}");
        assert_eq!(s.matches("**missed**").count(), 1, "{s}");
        assert_eq!(s.matches("not measured").count(), 2, "{s}");
        assert!(s.contains("2 of the 5 targets met (3 measured)"), "{s}");
        assert!(
            s.contains("| with hint files | 500 ms [455 ms–556 ms] | 2.00 M |"),
            "{s}"
        );
        assert!(s.contains("2 segments came from hint files and 1"), "{s}");
        assert!(
            s.contains("| logstore | 1.00 k [0.90–1.10 k] | 6.00 k [5.40–6.60 k] | 6.00× |"),
            "{s}"
        );
        let mut h = String::new();
        summary(&mut h, &size);
        assert_eq!(h.matches("MISSED").count(), 1, "{h}");
        assert!(
            h.contains("500 ms with hint files, 1.00 s without (2.00× as fast)"),
            "{h}"
        );
        let mut none = String::new();
        let mut without = size.clone();
        without.engines.remove(ENGINE);
        section(&mut none, &ran, &without);
        assert!(none.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.1234), "123 ms");
        assert_eq!(duration(2.5), "2.50 s");
    }
}
