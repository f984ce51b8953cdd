//! Plans and drives a run: the mode's sizes and repetitions, the machine's limits, one
//! child process per engine and repetition, then the report and charts.
//!
//! Repetitions are the outer loop and engines the inner one, so a slow drift of the
//! machine (page cache, thermal, neighbours on a shared host) spreads over every engine
//! instead of landing on one. Any child failure (a wrong value included) stops the run
//! with its message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child;
use crate::engines::{self, EngineInfo};
use crate::machine::{Limits, Machine};
use crate::results::{ChildReport, EngineSummary, Spread};
use crate::workload::Workload;

/// The three kinds of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// N = 100k, one repetition: the CI check.
    Quick,
    /// N = 1M, five repetitions: the committed report.
    Default,
    /// N from 10k to 10M: throughput against N.
    Scale,
}

/// Sizes of `--scale`.
pub const SCALE_SIZES: [u64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];
/// A scale step is skipped for an engine whose previous step, scaled linearly, would take
/// longer than this per child.
const SCALE_CHILD_BUDGET_SECS: f64 = 900.0;
/// ... or whose peak RSS, scaled linearly, would pass this fraction of the memory.
const SCALE_MEMORY_FRACTION: f64 = 0.5;

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which run.
    pub mode: Mode,
    /// Repetitions, if not the mode's default.
    pub reps: Option<usize>,
    /// N, if not the mode's default.
    pub n: Option<u64>,
    /// Largest N of a scale run.
    pub max_n: u64,
    /// Key length in bytes.
    pub key_len: usize,
    /// Value length in bytes.
    pub value_len: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Engine names; empty for all.
    pub engines: Vec<String>,
    /// Output directory, if not the mode's default.
    pub out: Option<PathBuf>,
    /// Scratch directory for engine data, if not the temp dir.
    pub scratch: Option<PathBuf>,
    /// Durable phase operation cap, if not the mode's default.
    pub durable_ops: Option<u64>,
    /// Durable phase time budget, if not the mode's default.
    pub durable_ms: Option<u64>,
    /// Child time limit in seconds.
    pub child_timeout_secs: u64,
    /// The command line, for the report.
    pub command: String,
    /// Where to write every sample as tab-separated values, if anywhere.
    pub raw: Option<PathBuf>,
}

/// One N's results.
#[derive(Clone, Debug)]
pub struct SizeResults {
    /// The workload at this N.
    pub workload: Workload,
    /// Each engine's summary, by name.
    pub engines: BTreeMap<&'static str, EngineSummary>,
    /// Median wall time of each engine's child, in seconds.
    pub child_secs: BTreeMap<&'static str, f64>,
    /// Engines skipped at this N, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Every repetition's report, by engine, in run order.
    pub raw: BTreeMap<&'static str, Vec<ChildReport>>,
}

/// Everything the report is made from.
#[derive(Clone, Debug)]
pub struct RunResults {
    /// Which run.
    pub mode: Mode,
    /// The command line.
    pub command: String,
    /// Repetitions of every configuration.
    pub reps: usize,
    /// The machine.
    pub machine: Machine,
    /// Its raw limits.
    pub limits: Limits,
    /// Engines run, in report order.
    pub engines: Vec<&'static EngineInfo>,
    /// Results by N, ascending.
    pub sizes: Vec<SizeResults>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Load averages when the run ended.
    pub load_average_end: String,
    /// The workspace's checked-out commit, read from `.git` (uncommitted changes are not
    /// detected).
    pub commit: Option<String>,
}

/// Runs the whole benchmark and writes the report.
///
/// # Errors
/// A message for a bad option, a failed child (engine error or wrong value), or an I/O
/// error writing the report.
pub fn run(options: Options) -> Result<(), String> {
    let start = Instant::now();
    let engines = select(&options.engines)?;
    let (sizes, reps, durable_ops, durable_ms) = match options.mode {
        Mode::Quick => (vec![options.n.unwrap_or(100_000)], 1, 2_000, 1_000),
        Mode::Default => (vec![options.n.unwrap_or(1_000_000)], 5, 10_000, 3_000),
        Mode::Scale => (
            SCALE_SIZES
                .into_iter()
                .filter(|&n| n <= options.max_n)
                .collect(),
            3,
            5_000,
            2_000,
        ),
    };
    let reps = options.reps.unwrap_or(reps).max(1);
    let base = Workload {
        n: 0,
        key_len: options.key_len,
        value_len: options.value_len,
        seed: options.seed,
        mixed_ops: 0,
        durable_ops: options.durable_ops.unwrap_or(durable_ops),
        durable_ms: options.durable_ms.unwrap_or(durable_ms),
    };
    let scratch = options.scratch.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("accretion-bench-")
        .tempdir_in(&scratch)
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;

    let machine = Machine::describe(scratch.path());
    let limits_n = if options.mode == Mode::Scale {
        1_000_000.min(options.max_n)
    } else {
        sizes[0]
    };
    eprintln!("measuring the machine's raw limits ...");
    let limits = Limits::measure(
        scratch.path(),
        &Workload {
            n: limits_n,
            ..base.clone()
        },
        options.mode == Mode::Quick,
    )
    .map_err(|e| format!("measuring the machine's limits: {e}"))?;

    let timeout = Duration::from_secs(options.child_timeout_secs);
    let mut results: Vec<SizeResults> = Vec::new();
    for &n in &sizes {
        let w = Workload {
            n,
            mixed_ops: n,
            ..base.clone()
        };
        let mut skipped = Vec::new();
        let mut runnable = Vec::new();
        for &info in &engines {
            let refused = info.extras.refuses.and_then(|refuses| refuses(&w));
            match refused.or_else(|| {
                results
                    .last()
                    .and_then(|prev| too_big(prev, info.name, n, &machine))
            }) {
                Some(reason) => {
                    eprintln!("skipping {} at N = {n}: {reason}", info.name);
                    skipped.push((info.name, reason));
                }
                None => runnable.push(info),
            }
        }
        let mut reports: BTreeMap<&'static str, Vec<ChildReport>> = BTreeMap::new();
        let mut secs: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for rep in 1..=reps {
            for info in &runnable {
                let began = Instant::now();
                let report = child::spawn(info.name, &w, scratch.path(), timeout)?;
                let took = began.elapsed().as_secs_f64();
                eprintln!(
                    "N = {n}, repetition {rep}/{reps}: {:<10} done in {took:.1} s",
                    info.name
                );
                reports.entry(info.name).or_default().push(report);
                secs.entry(info.name).or_default().push(took);
            }
        }
        results.push(SizeResults {
            workload: w,
            engines: reports
                .iter()
                .map(|(k, v)| (*k, EngineSummary::of(v)))
                .collect(),
            child_secs: secs
                .iter()
                .filter_map(|(k, v)| Some((*k, Spread::of(v)?.median)))
                .collect(),
            skipped,
            raw: reports,
        });
    }

    let run = RunResults {
        mode: options.mode,
        command: options.command.clone(),
        reps,
        machine,
        limits,
        engines,
        sizes: results,
        elapsed: start.elapsed(),
        load_average_end: crate::machine::load_average(),
        commit: workspace_commit(),
    };
    write(&run, &options)
}

/// The workspace root: the parent of this package.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// The commit checked out in the workspace, read from `.git/HEAD` and the ref it names
/// (loose or packed), without running git.
fn workspace_commit() -> Option<String> {
    let git = workspace().join(".git");
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(name) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(hash) = std::fs::read_to_string(git.join(name)) {
        return Some(hash.trim().to_string());
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(name).map(|h| h.trim().to_string()))
}

fn select(names: &[String]) -> Result<Vec<&'static EngineInfo>, String> {
    if names.is_empty() {
        return Ok(engines::ENGINES.iter().collect());
    }
    let known = || {
        engines::ENGINES
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    names
        .iter()
        .map(|n| {
            engines::find(n).ok_or_else(|| format!("unknown engine {n:?} (known: {})", known()))
        })
        .collect()
}

/// Why `engine` should not run at `n`, judged from its run at the previous size.
fn too_big(prev: &SizeResults, engine: &str, n: u64, machine: &Machine) -> Option<String> {
    let factor = n as f64 / prev.workload.n as f64;
    let secs = prev.child_secs.get(engine)?;
    if secs * factor > SCALE_CHILD_BUDGET_SECS {
        return Some(format!(
            "its N = {} child took {secs:.0} s, so N = {n} would take about {:.0} s (budget {SCALE_CHILD_BUDGET_SECS:.0} s)",
            prev.workload.n,
            secs * factor
        ));
    }
    let rss = prev.engines.get(engine)?.peak_rss_bytes?.median;
    if rss * factor > SCALE_MEMORY_FRACTION * machine.memory_bytes as f64 {
        return Some(format!(
            "its peak RSS at N = {} was {:.0} MiB, so N = {n} would need about {:.0} MiB",
            prev.workload.n,
            rss / 1048576.0,
            rss * factor / 1048576.0
        ));
    }
    None
}

fn write(run: &RunResults, options: &Options) -> Result<(), String> {
    let out = options.out.clone().unwrap_or_else(|| match run.mode {
        Mode::Quick => std::env::temp_dir().join("accretion-bench-quick"),
        // The workspace's docs/, next to this package.
        Mode::Default | Mode::Scale => workspace().join("docs"),
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (stem, chart) = match run.mode {
        Mode::Scale => ("benchmarks-scale", "benchmarks-scale.svg"),
        Mode::Quick | Mode::Default => ("benchmarks", "benchmarks-phases.svg"),
    };
    let chart_path = out.join(chart);
    match run.mode {
        Mode::Scale => crate::charts::scale(run, &chart_path)?,
        Mode::Quick | Mode::Default => crate::charts::phases(run, &chart_path)?,
    }
    let markdown = crate::report::render(run, chart);
    let md_path = out.join(format!("{stem}.md"));
    std::fs::write(&md_path, &markdown).map_err(|e| format!("{}: {e}", md_path.display()))?;
    if let Some(raw) = &options.raw {
        std::fs::write(raw, raw_samples(run)).map_err(|e| format!("{}: {e}", raw.display()))?;
    }
    println!("{}", crate::report::headline(run));
    println!(
        "every engine's values checked out; report: {}; chart: {}; {:.0} s in all",
        md_path.display(),
        chart_path.display(),
        run.elapsed.as_secs_f64()
    );
    Ok(())
}

/// Every sample of the run, one per line: `n engine rep phase ops nanos`, tab-separated;
/// the after-load figures are rows whose phase is `disk_bytes`, `disk_after_inserts_bytes`,
/// `peak_rss_bytes` or
/// `baseline_rss_bytes` (and `reopen_hinted_segments`, `reopen_scanned_segments` for
/// engines with hint files), with the value under `ops` and 0 under `nanos`.
fn raw_samples(run: &RunResults) -> String {
    let mut out = String::from("n\tengine\trep\tphase\tops\tnanos\n");
    for size in &run.sizes {
        let n = size.workload.n;
        for (engine, reports) in &size.raw {
            for (rep, r) in reports.iter().enumerate() {
                let rep = rep + 1;
                for (phase, m) in &r.phases {
                    out += &format!(
                        "{n}\t{engine}\t{rep}\t{}\t{}\t{}\n",
                        phase.id(),
                        m.ops,
                        m.nanos
                    );
                }
                for (name, value) in [
                    ("disk_bytes", r.disk_bytes),
                    ("disk_after_inserts_bytes", r.disk_after_inserts_bytes),
                    ("peak_rss_bytes", r.peak_rss_bytes),
                    ("baseline_rss_bytes", r.baseline_rss_bytes),
                ] {
                    out += &format!("{n}\t{engine}\t{rep}\t{name}\t{value}\t0\n");
                }
                if let Some((hinted, scanned)) = r.reopen_segments {
                    for (name, value) in [
                        ("reopen_hinted_segments", hinted),
                        ("reopen_scanned_segments", scanned),
                    ] {
                        out += &format!("{n}\t{engine}\t{rep}\t{name}\t{value}\t0\n");
                    }
                }
            }
        }
    }
    out
}
