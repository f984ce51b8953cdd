//! What a run measures: the phases, one child's measurements, and the medians and spreads
//! the report is made of. Pure data and arithmetic; no I/O.

use std::collections::BTreeMap;

/// One phase of the standard workload, in the order a child runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Load N keys in one transaction or batch, then sync.
    BulkInsert,
    /// Insert N keys, one commit each, no fsync per operation, one final sync.
    Insert,
    /// Random gets of present keys, every value checked.
    GetPresent,
    /// The same from two threads, each with its own read session.
    GetPresent2,
    /// Random gets of absent keys.
    GetAbsent,
    /// Visit every entry: count, order (ordered engines) and values checked.
    Scan,
    /// Reopen the loaded store with its hint files (engines with hint files only).
    ReopenHints,
    /// Reopen the loaded store after its hint files were removed.
    ReopenNoHints,
    /// Remove every key, one commit each, one final sync.
    Remove,
    /// 90% gets, 10% inserts of fresh keys, one thread.
    Mixed1,
    /// 90% gets, 10% inserts of fresh keys, two threads.
    Mixed2,
    /// Inserts each made durable before the next, one thread.
    Durable1,
    /// Inserts each made durable before returning, eight threads.
    Durable8,
}

impl Phase {
    /// Every phase, in run and report order.
    pub const ALL: [Phase; 13] = [
        Phase::BulkInsert,
        Phase::Insert,
        Phase::GetPresent,
        Phase::GetPresent2,
        Phase::GetAbsent,
        Phase::Scan,
        Phase::ReopenHints,
        Phase::ReopenNoHints,
        Phase::Remove,
        Phase::Mixed1,
        Phase::Mixed2,
        Phase::Durable1,
        Phase::Durable8,
    ];

    /// Machine-readable name, used by the child protocol.
    pub fn id(self) -> &'static str {
        match self {
            Phase::BulkInsert => "bulk-insert",
            Phase::Insert => "insert",
            Phase::GetPresent => "get-present",
            Phase::GetPresent2 => "get-present-2t",
            Phase::GetAbsent => "get-absent",
            Phase::Scan => "scan",
            Phase::ReopenHints => "reopen-hints",
            Phase::ReopenNoHints => "reopen-no-hints",
            Phase::Remove => "remove",
            Phase::Mixed1 => "mixed-1t",
            Phase::Mixed2 => "mixed-2t",
            Phase::Durable1 => "durable-1t",
            Phase::Durable8 => "durable-8t",
        }
    }

    /// The phase named `id`.
    pub fn from_id(id: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.id() == id)
    }

    /// Label for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Phase::BulkInsert => "bulk insert",
            Phase::Insert => "insert, 1 op/commit",
            Phase::GetPresent => "get present",
            Phase::GetPresent2 => "get present, 2 threads",
            Phase::GetAbsent => "get absent",
            Phase::Scan => "full scan",
            Phase::ReopenHints => "reopen, hint files (keys/s)",
            Phase::ReopenNoHints => "reopen, no hints (keys/s)",
            Phase::Remove => "remove all",
            Phase::Mixed1 => "mixed 90/10, 1 thread",
            Phase::Mixed2 => "mixed 90/10, 2 threads",
            Phase::Durable1 => "durable insert, 1 thread",
            Phase::Durable8 => "durable insert, 8 threads",
        }
    }
}

/// One timed phase: how many operations took how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    /// Operations done (for a scan: entries visited; for a reopen: keys in the store).
    pub ops: u64,
    /// Wall-clock nanoseconds, including the phase's final sync.
    pub nanos: u64,
}

impl Measure {
    /// Operations per second.
    pub fn ops_per_sec(self) -> f64 {
        self.ops as f64 / (self.nanos.max(1) as f64 / 1e9)
    }
}

/// Everything one child process reports for one engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildReport {
    /// Each phase the engine ran; a phase it lacks is absent.
    pub phases: BTreeMap<Phase, Measure>,
    /// Bytes the engine's directory allocates on disk after the bulk load.
    pub disk_bytes: u64,
    /// ... and after the insert phase (N one-key commits) on the second store.
    pub disk_after_inserts_bytes: u64,
    /// Peak resident set of the child during the bulk load (VmHWM).
    pub peak_rss_bytes: u64,
    /// Resident set of the child just before the engine was opened.
    pub baseline_rss_bytes: u64,
    /// For engines with hint files: how the reopen with hints replayed the store, as
    /// (segments read from hint files, segments scanned).
    pub reopen_segments: Option<(u64, u64)>,
}

/// Median and spread of repeated samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub count: usize,
}

impl Spread {
    /// The spread of `samples`, or `None` if there are none.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            count: sorted.len(),
        })
    }
}

/// The repetitions of one engine at one N, summarized.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineSummary {
    /// Throughput (operations per second) of each phase the engine ran.
    pub phases: BTreeMap<Phase, Spread>,
    /// Operations per repetition of each phase (the durable phases stop on a time budget,
    /// so their count varies; this is the median).
    pub ops: BTreeMap<Phase, f64>,
    /// Disk bytes after the load.
    pub disk_bytes: Option<Spread>,
    /// Disk bytes after N one-key commits.
    pub disk_after_inserts_bytes: Option<Spread>,
    /// Peak RSS during the load.
    pub peak_rss_bytes: Option<Spread>,
    /// RSS before the engine opened.
    pub baseline_rss_bytes: Option<Spread>,
    /// How the reopen with hints replayed the store (the last repetition's; the layout is
    /// the same in every one).
    pub reopen_segments: Option<(u64, u64)>,
}

impl EngineSummary {
    /// Summarizes the reports of every repetition.
    pub fn of(reports: &[ChildReport]) -> EngineSummary {
        let mut summary = EngineSummary::default();
        for phase in Phase::ALL {
            let measures: Vec<Measure> = reports
                .iter()
                .filter_map(|r| r.phases.get(&phase).copied())
                .collect();
            let rates: Vec<f64> = measures.iter().map(|m| m.ops_per_sec()).collect();
            if let Some(spread) = Spread::of(&rates) {
                summary.phases.insert(phase, spread);
                let ops: Vec<f64> = measures.iter().map(|m| m.ops as f64).collect();
                if let Some(ops) = Spread::of(&ops) {
                    summary.ops.insert(phase, ops.median);
                }
            }
        }
        let field = |f: fn(&ChildReport) -> u64| {
            Spread::of(&reports.iter().map(|r| f(r) as f64).collect::<Vec<_>>())
        };
        summary.disk_bytes = field(|r| r.disk_bytes);
        summary.disk_after_inserts_bytes = field(|r| r.disk_after_inserts_bytes);
        summary.peak_rss_bytes = field(|r| r.peak_rss_bytes);
        summary.baseline_rss_bytes = field(|r| r.baseline_rss_bytes);
        summary.reopen_segments = reports.iter().rev().find_map(|r| r.reopen_segments);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.count), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[4.0, 1.0]).unwrap().median, 2.5);
    }

    #[test]
    fn phase_ids_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::from_id(p.id()), Some(p));
        }
    }
}
