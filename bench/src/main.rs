//! The cross-engine benchmark suite of accretion: one standard workload run against our
//! engines, peer crates and the std collections, each engine in its own child process,
//! written up as Markdown with SVG charts.
//!
//! `--quick` (N = 100k, one repetition) checks that every engine runs and every value
//! checks out; the default run (N = 1M, five repetitions) writes `docs/benchmarks.md`;
//! `--scale` runs N = 10k to 10M. This file only parses the command line; `run.rs` plans
//! and drives the run, `child.rs` is the hidden `--child` mode.

mod charts;
mod child;
mod engines;
mod machine;
mod phases;
mod report;
mod results;
mod run;
mod targets;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::workload::{KEY_LEN_DEFAULT, KEY_LEN_MIN, VALUE_LEN_DEFAULT, Workload};

/// Command line of the benchmark suite.
#[derive(Parser, Debug)]
#[command(about = "Runs accretion's engines and their peers through one standard workload")]
struct Cli {
    /// N = 100k, one repetition, short durable phases: checks every engine and value.
    #[arg(long, conflicts_with = "scale")]
    quick: bool,
    /// N = 10k, 100k, 1M, 10M (see --max-n); throughput against N.
    #[arg(long)]
    scale: bool,
    /// Repetitions of every configuration (default: 5; 1 with --quick; 3 with --scale).
    #[arg(long)]
    reps: Option<usize>,
    /// Number of keys (overrides the mode's N; not with --scale).
    #[arg(long, conflicts_with = "scale")]
    n: Option<u64>,
    /// Largest N of --scale.
    #[arg(long, default_value_t = 10_000_000)]
    max_n: u64,
    /// Key length in bytes (at least 8).
    #[arg(long, default_value_t = KEY_LEN_DEFAULT)]
    key_len: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = VALUE_LEN_DEFAULT)]
    value_len: usize,
    /// Seed of keys, values and access orders.
    #[arg(long, default_value_t = 0x00ac_c2e7)]
    seed: u64,
    /// Engines to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Where the report and charts go (default: docs/ of the workspace; a temporary
    /// directory for --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where engines keep their data: a real disk, not tmpfs (default: the temp dir).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Most operations of each durable phase.
    #[arg(long)]
    durable_ops: Option<u64>,
    /// Time budget of each durable phase, in milliseconds.
    #[arg(long)]
    durable_ms: Option<u64>,
    /// Also write every sample (n, engine, repetition, phase, ops, nanoseconds) to this
    /// tab-separated file.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Seconds after which a child process is stopped and the run fails.
    #[arg(long, default_value_t = 3600)]
    child_timeout: u64,
    /// Hidden: run one engine and print its measurements (the child-process mode).
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Hidden: the child's data directory.
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
    /// Hidden: operations of each mixed phase.
    #[arg(long, hide = true)]
    mixed_ops: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.key_len < KEY_LEN_MIN {
        eprintln!("error: --key-len must be at least {KEY_LEN_MIN}");
        return ExitCode::from(2);
    }
    if let Some(engine) = &cli.child {
        let (Some(n), Some(dir), Some(mixed_ops), Some(durable_ops), Some(durable_ms)) = (
            cli.n,
            &cli.dir,
            cli.mixed_ops,
            cli.durable_ops,
            cli.durable_ms,
        ) else {
            eprintln!("error: --child needs --n, --dir, --mixed-ops, --durable-ops, --durable-ms");
            return ExitCode::from(2);
        };
        let w = Workload {
            n,
            key_len: cli.key_len,
            value_len: cli.value_len,
            seed: cli.seed,
            mixed_ops,
            durable_ops,
            durable_ms,
        };
        return child::serve(engine, &w, dir);
    }
    let mode = if cli.quick {
        run::Mode::Quick
    } else if cli.scale {
        run::Mode::Scale
    } else {
        run::Mode::Default
    };
    let options = run::Options {
        mode,
        reps: cli.reps,
        n: cli.n,
        max_n: cli.max_n,
        key_len: cli.key_len,
        value_len: cli.value_len,
        seed: cli.seed,
        engines: cli.engines,
        out: cli.out,
        scratch: cli.scratch,
        durable_ops: cli.durable_ops,
        durable_ms: cli.durable_ms,
        child_timeout_secs: cli.child_timeout,
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        raw: cli.raw,
    };
    match run::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
