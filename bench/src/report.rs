//! The Markdown report: machine and raw limits at the top, the workload and the rules
//! every engine follows, then per N the throughput of every phase (median and min–max),
//! our engines' ratios to the best peer and to the best std ceiling of each fit (the loose
//! maps of any key and value length, and the tight ones fitted to the workload), disk and
//! memory after the load, and our figures as fractions of the machine's limits.
//!
//! It only formats what `run.rs` measured; it computes nothing but ratios.

use std::fmt::Write;

use crate::engines::{EngineInfo, Family, Fit};
use crate::results::{EngineSummary, Phase, Spread};
use crate::run::{Mode, RunResults, SizeResults};

/// The whole report.
pub fn render(run: &RunResults, chart_file: &str) -> String {
    let mut s = String::new();
    let title = match run.mode {
        Mode::Scale => "accretion benchmarks: throughput against N",
        Mode::Quick => "accretion benchmarks (quick check)",
        Mode::Default => "accretion benchmarks",
    };
    let _ = writeln!(s, "# {title}\n");
    let command = match run.command.trim() {
        "" => "cargo run --release -p accretion-bench".to_string(),
        args => format!("cargo run --release -p accretion-bench -- {args}"),
    };
    let secs = run.elapsed.as_secs_f64();
    let took = if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} minutes", secs / 60.0)
    };
    let _ = writeln!(
        s,
        "Made by `{command}` on {} (UTC), {took} in all. Every engine ran in its own child \
         process; each configuration ran {} time{}, and each figure is the median with the \
         min–max range of the runs in brackets. Every value read was checked. \
         Measured tree: accretion at commit {}.\n",
        today(),
        run.reps,
        if run.reps == 1 { "" } else { "s" },
        run.commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(12)])
    );
    machine(&mut s, run);
    workload(&mut s, run);
    engines(&mut s, run);
    for size in &run.sizes {
        results(&mut s, run, size, chart_file);
    }
    if run.mode == Mode::Scale {
        let _ = writeln!(
            s,
            "## Throughput against N\n\n![throughput against N]({chart_file})\n"
        );
    }
    s
}

/// The headline: our engines' ratios, phase by phase, at the largest N.
pub fn headline(run: &RunResults) -> String {
    let mut s = String::new();
    if let Some(size) = run.sizes.last() {
        let _ = writeln!(s, "N = {}:", size.workload.n);
        ratios(&mut s, &run.engines, size);
        crate::targets::summary(&mut s, size);
    }
    s
}

fn machine(s: &mut String, run: &RunResults) {
    let m = &run.machine;
    let l = &run.limits;
    let _ = writeln!(s, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(s, "| processor | {} |", m.cpu);
    let _ = writeln!(s, "| cores | {} |", m.cores);
    let _ = writeln!(s, "| memory | {} |", bytes(m.memory_bytes as f64));
    let _ = writeln!(s, "| kernel | Linux {} |", m.kernel);
    let _ = writeln!(s, "| disk under the data | {} |", m.disk);
    let _ = writeln!(
        s,
        "| virtual machine | {} |",
        if m.virtual_machine {
            "yes (the processor reports a hypervisor)"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        s,
        "| load average (1, 5, 15 min) | {} at the start, {} at the end (the cores may be \
         shared with other work) |\n",
        m.load_average, run.load_average_end
    );
    let _ = writeln!(s, "### Raw limits, measured in this run\n");
    let _ = writeln!(s, "| limit | measured | as a rate |\n|---|---|---|");
    let f = l.fsync_micros;
    let _ = writeln!(
        s,
        "| fsync latency: 4 KiB overwrite + `fdatasync` ({} rounds) | {:.0} µs [{:.0}–{:.0}] | {} syncs/s |",
        f.count,
        f.median,
        f.min,
        f.max,
        rate(1e6 / f.median.max(1e-3))
    );
    let _ = writeln!(
        s,
        "| sequential write: {} in 1 MiB blocks + `fdatasync` | {}/s | |",
        bytes(l.seq_write_bytes as f64),
        bytes(l.seq_write_bytes_per_sec)
    );
    let _ = writeln!(
        s,
        "| random {}-byte reads (copied out) of a warm mapped {} file | {:.0} ns per read | {} reads/s |",
        l.read_len,
        bytes(l.mapped_file_bytes as f64),
        1e9 / l.mapped_reads_per_sec,
        rate(l.mapped_reads_per_sec)
    );
    let _ = writeln!(
        s,
        "| memcpy, 256 MiB (64 MiB in quick runs), best of 5 | {}/s | |\n",
        bytes(l.memcpy_bytes_per_sec)
    );
}

fn workload(s: &mut String, run: &RunResults) {
    let Some(first) = run.sizes.first() else {
        return;
    };
    let w = &first.workload;
    let ns: Vec<String> = run.sizes.iter().map(|z| z.workload.n.to_string()).collect();
    let _ = writeln!(s, "## Workload\n");
    let _ = writeln!(
        s,
        "N = {} distinct {}-byte keys with {}-byte incompressible (pseudo-random) values, seed {}. \
         Keys and values are regenerated from their index by a counter-based generator (the key's \
         first 8 bytes are a bijection of the index, so keys are distinct by construction and a key \
         gives back its index); random access orders come from `rand`'s seeded `SmallRng`. Every \
         engine sees the same keys, values and orders.\n",
        ns.join(", "),
        w.key_len,
        w.value_len,
        w.seed
    );
    let _ = writeln!(s, "| phase | what is timed |\n|---|---|");
    let rows = [
        (
            Phase::BulkInsert,
            "N inserts in one write transaction or batch where the engine has one (plain inserts otherwise), then one sync. Disk bytes and peak RSS are taken right after.",
        ),
        (
            Phase::Insert,
            "N inserts into a fresh store, one commit each, no fsync per operation, then one sync.",
        ),
        (
            Phase::GetPresent,
            "N gets of random loaded keys in one read session (one read transaction where the engine has them); every value is compared with the generator's.",
        ),
        (
            Phase::GetPresent2,
            "The same N gets split over 2 threads, each with its own read session and its own random order: how reads scale with a second core.",
        ),
        (
            Phase::GetAbsent,
            "N gets of random keys that were never inserted; each must return nothing.",
        ),
        (
            Phase::Scan,
            "Visit every entry: the count is checked, the order for ordered engines, and every value.",
        ),
        (
            Phase::ReopenHints,
            "Engines with hint files only: close the loaded store, open it once untimed (so that both timed opens find the page cache and the allocator alike), close it, and time opening it again: its index is rebuilt from the hint files of the finished segments, and the active segment, which has none yet, is read record by record. The reopened store is then scanned and checked, untimed. Shown as keys per second (N ÷ open time); the targets section gives the times.",
        ),
        (
            Phase::ReopenNoHints,
            "The same after removing every hint file, so that every record of every segment is read.",
        ),
        (
            Phase::Remove,
            "Remove every key, one commit each, then one sync; an untimed scan then checks the store is empty.",
        ),
        (
            Phase::Mixed1,
            "On the store of the insert phase: N operations, each a get of a random loaded key (checked, 90%) or an insert of a fresh key (10%), drawn at random; each get opens its own read transaction and each insert is its own commit; one sync at the end.",
        ),
        (
            Phase::Mixed2,
            "The same, N operations split over 2 threads.",
        ),
        (
            Phase::Durable1,
            "Inserts of fresh keys, each followed by the engine's sync (fsync) before the next: up to the operation cap or the time budget, whichever comes first.",
        ),
        (
            Phase::Durable8,
            "The same from 8 threads, each insert synced before that thread's next one (engines that group commits may sync several at once).",
        ),
    ];
    for (phase, what) in rows {
        let _ = writeln!(s, "| {} | {what} |", phase.label());
    }
    let _ = writeln!(
        s,
        "\nThe durable phases stop after {} operations or {:.1} s, whichever comes first (one fsync per \
         operation at N operations would take hours); the report shows operations per second over what \
         was done.\n",
        w.durable_ops,
        w.durable_ms as f64 / 1000.0
    );
    let _ = writeln!(
        s,
        "**Durability rule, the same for every engine:** no fsync per operation in the write phases \
         (bulk insert, insert, remove, mixed), and one final sync (the engine's own durable flush) at \
         the end of each, inside the timed span. Only the durable phases sync per operation. \
         Background syncs an engine does on its own timer by default (sled every 500 ms, CandyStore's \
         checkpoints, fjall's flushes) are left as shipped. The std collections keep nothing on disk: \
         they have no durable phase.\n"
    );
}

fn engines(s: &mut String, run: &RunResults) {
    let _ = writeln!(
        s,
        "## Engines\n\n| engine | kind | version and settings |\n|---|---|---|"
    );
    for e in &run.engines {
        let kind = match e.family {
            Family::Ours => "ours",
            Family::Peer => "peer",
            Family::Ceiling(fit) => fit.label(),
        };
        let _ = writeln!(s, "| {} | {kind} | {} |", e.name, e.note);
    }
    let _ = writeln!(
        s,
        "\nA dash means the engine has no such operation. How engines without a phase's shape were \
         fitted to it:\n\n\
         - **oncemap**: a key is set once, so there is no remove, and an insert of an existing key would be \
         a no-op: every write phase uses fresh keys. There is no batch, so the bulk load is plain inserts \
         and one sync (inserts never sync anyway).\n\
         - **content**: the key is the BLAKE3 id of the value, returned by `insert`. The workload's keys \
         are ignored on insert; the run keeps the ids `insert` returned (as a client must) and gets by id. \
         Absent gets use random 32-byte ids. `get` re-hashes every blob (BLAKE3) to verify it, which \
         dominates its cost. The scan walks `ids()` (every entry's checksums are checked) and only the \
         count is compared. No remove. The ids the run keeps (32 bytes per value) count in \
         content's peak RSS, as they would in a real client.\n\
         - **fjall**: `remove` writes a tombstone without a lookup, so it cannot say whether the key \
         existed; the empty scan after the phase checks the removes instead.\n\
         - **logstore**: the bulk load is plain `put`s and one `sync` (a `WriteBatch` is one atomic \
         record, for atomicity, and each put is already one unsynced append). `delete` writes a \
         tombstone without a lookup, checked like fjall's. The durable phases run on the store reopened \
         (untimed) with `sync_each_write: true`, where each put is durable before it returns and \
         concurrent writers share fsyncs.\n\
         - **candystore**: no batch, so the bulk load is plain `set`s and one `flush`.\n\
         - **hashmap / btreemap**, the loose std ceilings: `Vec<u8>` keys and values (two heap \
         allocations per entry; `HashMap` hashes with SipHash), any length. Behind an `RwLock` (the \
         mixed phases share them between threads), taken per call, reads included; an uncontended \
         lock costs an atomic operation.\n\
         - **hashmap-tight / btreemap-tight**, the tight std ceilings: `[u8; 16]` keys and \
         `[u8; 100]` values stored inline, and `HashMap` hashes with foldhash's fast fixed state, \
         so they show how fast std can be for exactly this workload; they take no other key or \
         value length (a run with other lengths skips them). Also behind an `RwLock`, but the bulk \
         load takes it once, and a read session and a scan hold it throughout; only the \
         per-operation phases (insert, remove, mixed) take it per call.\n"
    );
}

fn results(s: &mut String, run: &RunResults, size: &SizeResults, chart_file: &str) {
    let n = size.workload.n;
    let _ = writeln!(s, "## Results, N = {n}\n");
    for (engine, reason) in &size.skipped {
        let _ = writeln!(s, "- {engine} was skipped at this N: {reason}.");
    }
    if !size.skipped.is_empty() {
        s.push('\n');
    }
    let ran: Vec<&EngineInfo> = run
        .engines
        .iter()
        .copied()
        .filter(|e| size.engines.contains_key(e.name))
        .collect();
    let _ = writeln!(s, "### Throughput, operations per second\n");
    let header: Vec<&str> = ran.iter().map(|e| e.name).collect();
    let _ = writeln!(s, "| phase | {} |", header.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(ran.len()));
    for phase in Phase::ALL {
        let cells: Vec<String> = ran
            .iter()
            .map(|e| match size.engines[e.name].phases.get(&phase) {
                Some(sp) => spread_cell(sp),
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", phase.label(), cells.join(" | "));
    }
    let durable_ops: Vec<String> = ran
        .iter()
        .filter_map(|e| {
            let ops = size.engines[e.name].ops.get(&Phase::Durable1)?;
            let ops8 = size.engines[e.name].ops.get(&Phase::Durable8)?;
            Some(format!("{} {:.0}/{:.0}", e.name, ops, ops8))
        })
        .collect();
    if !durable_ops.is_empty() {
        let _ = writeln!(
            s,
            "\nDurable operations done per run (median, 1 thread / 8 threads): {}.",
            durable_ops.join(", ")
        );
    }
    if run.mode != Mode::Scale {
        let _ = writeln!(s, "\n![throughput by phase]({chart_file})\n");
    } else {
        s.push('\n');
    }
    let _ = writeln!(s, "### Ours against the best peer and the std ceilings\n");
    let _ = writeln!(
        s,
        "Ratio of median throughputs; above 1 means ours is faster. The best peer is the fastest of \
         the disk engines; the std ceiling is the faster of the loose std maps (hashmap, btreemap) \
         and the tight std ceiling the faster of the tight ones (hashmap-tight, btreemap-tight), each \
         named in its column. Each of our engines has one column against the best peer and one \
         against the std ceilings, loose / tight.\n"
    );
    ratios(s, &run.engines, size);
    crate::targets::section(s, &ran, size);
    space(s, &ran, size);
    fractions(s, run, &ran, size);
}

/// The ratio table of our engines against the best peer and the best std ceiling of each
/// fit; `engines` are the run's, in report order.
fn ratios(s: &mut String, engines: &[&EngineInfo], size: &SizeResults) {
    let ours: Vec<&EngineInfo> = engines
        .iter()
        .copied()
        .filter(|e| e.family == Family::Ours && size.engines.contains_key(e.name))
        .collect();
    let mut header = vec!["phase".to_string(), "best peer".into()];
    header.extend(Fit::ALL.map(|fit| fit.label().to_string()));
    for e in &ours {
        header.push(format!("{} ÷ best peer", e.name));
        header.push(format!("{} ÷ std, loose / tight", e.name));
    }
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(
        s,
        "|---|---|{}{}",
        "---|".repeat(Fit::ALL.len()),
        "---:|".repeat(ours.len() * 2)
    );
    let named =
        |best: Option<(&str, f64)>| best.map_or("–".into(), |(n, v)| format!("{n} {}", rate(v)));
    for phase in Phase::ALL {
        let peer = best(engines, size, phase, Family::Peer);
        let ceilings = Fit::ALL.map(|fit| best(engines, size, phase, Family::Ceiling(fit)));
        let mut row = vec![phase.label().to_string(), named(peer)];
        row.extend(ceilings.map(named));
        for e in &ours {
            let mine = size.engines[e.name].phases.get(&phase).map(|sp| sp.median);
            let ratio = |other: Option<(&str, f64)>| match (mine, other) {
                (Some(m), Some((_, o))) => format!("{:.2}×", m / o),
                _ => "–".into(),
            };
            row.push(ratio(peer));
            row.push(ceilings.map(ratio).join(" / "));
        }
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s.push('\n');
}

/// The fastest engine of `family` at `phase`, by median, with its median.
fn best<'a>(
    engines: &[&'a EngineInfo],
    size: &SizeResults,
    phase: Phase,
    family: Family,
) -> Option<(&'a str, f64)> {
    engines
        .iter()
        .filter(|e| e.family == family)
        .filter_map(|e| Some((e.name, size.engines.get(e.name)?.phases.get(&phase)?.median)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn space(s: &mut String, ran: &[&EngineInfo], size: &SizeResults) {
    let w = &size.workload;
    let payload = (w.n * (w.key_len + w.value_len) as u64) as f64;
    let _ = writeln!(
        s,
        "### Space and memory after the bulk load\n\n\
         Disk is the bytes the engine's directory allocates (`st_blocks` × 512, so preallocated \
         space counts); the raw payload is {} ({} × {} bytes). Peak RSS is the child's VmHWM \
         during the load, reset just before the engine opened; mapped file pages the engine touched \
         count. The child itself held {} before the engine opened.\n",
        bytes(payload),
        w.n,
        w.key_len + w.value_len,
        size.engines
            .values()
            .find_map(|e| e.baseline_rss_bytes)
            .map_or("–".into(), |b| bytes(b.median))
    );
    let _ = writeln!(
        s,
        "| engine | disk | disk ÷ payload | peak RSS |\n|---|---:|---:|---:|"
    );
    for e in ran {
        let summary: &EngineSummary = &size.engines[e.name];
        let disk = summary.disk_bytes.map(|d| d.median).unwrap_or(0.0);
        let rss = summary
            .peak_rss_bytes
            .map_or("–".into(), |r| bytes(r.median));
        let (disk_cell, ratio) = if matches!(e.family, Family::Ceiling(_)) {
            ("–".to_string(), "–".to_string())
        } else {
            (bytes(disk), format!("{:.2}", disk / payload))
        };
        let _ = writeln!(s, "| {} | {disk_cell} | {ratio} | {rss} |", e.name);
    }
    s.push('\n');
}

/// Every disk engine's figures as a fraction of the machine's raw limits.
fn fractions(s: &mut String, run: &RunResults, ran: &[&EngineInfo], size: &SizeResults) {
    let l = &run.limits;
    let w = &size.workload;
    let fsync_rate = 1e6 / l.fsync_micros.median.max(1e-3);
    let _ = writeln!(
        s,
        "### Against the machine's limits\n\n\
         - get present ÷ random reads of a warm mapped file (the cost of touching one random value);\n\
         - bulk insert payload bytes per second ÷ sequential write bandwidth;\n\
         - durable insert, 1 thread ÷ fsync rate (one 4 KiB overwrite + `fdatasync` per operation).\n"
    );
    let _ = writeln!(
        s,
        "| engine | get present ÷ mapped reads | bulk insert ÷ sequential write | durable 1 thread ÷ fsync rate |\n|---|---:|---:|---:|"
    );
    for e in ran
        .iter()
        .filter(|e| !matches!(e.family, Family::Ceiling(_)))
    {
        let p = &size.engines[e.name].phases;
        let cell = |phase: Phase, limit: f64, scale: f64| {
            p.get(&phase).map_or("–".into(), |sp| {
                format!("{:.2}", sp.median * scale / limit)
            })
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            e.name,
            cell(Phase::GetPresent, l.mapped_reads_per_sec, 1.0),
            cell(
                Phase::BulkInsert,
                l.seq_write_bytes_per_sec,
                (w.key_len + w.value_len) as f64
            ),
            cell(Phase::Durable1, fsync_rate, 1.0),
        );
    }
    s.push('\n');
}

/// A median with its min–max range.
pub fn spread_cell(sp: &Spread) -> String {
    if sp.count == 1 {
        return rate(sp.median);
    }
    let (div, unit) = unit_of(sp.median);
    format!(
        "{} [{}–{}]",
        rate(sp.median),
        short(sp.min / div),
        format_args!("{}{unit}", short(sp.max / div))
    )
}

fn unit_of(v: f64) -> (f64, &'static str) {
    if v >= 1e6 {
        (1e6, " M")
    } else if v >= 1e3 {
        (1e3, " k")
    } else {
        (1.0, "")
    }
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A rate with an SI prefix: `1.23 M`, `456 k`, `78.0`.
pub fn rate(v: f64) -> String {
    let (div, unit) = unit_of(v);
    format!("{}{unit}", short(v / div))
}

/// A byte count with a binary prefix.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", short(v), UNITS[u])
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock (civil-from-days).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rate(1_234_567.0), "1.23 M");
        assert_eq!(rate(45_600.0), "45.6 k");
        assert_eq!(rate(78.0), "78.0");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(today().len(), 10);
    }

    #[test]
    fn ratios_name_the_best_ceiling_of_each_fit() {
        use std::collections::BTreeMap;

        use crate::engines;
        use crate::workload::Workload;

        let mut by_name = BTreeMap::new();
        for (name, insert, scan) in [
            ("logstore", 600e3, 1e6),
            ("fjall", 300e3, 2e6),
            ("hashmap", 1.2e6, 4e6),
            ("btreemap", 1e6, 5e6),
            ("hashmap-tight", 3e6, 0.0),
            ("btreemap-tight", 2e6, 0.0),
        ] {
            let mut summary = EngineSummary::default();
            for (phase, median) in [(Phase::Insert, insert), (Phase::Scan, scan)] {
                if median > 0.0 {
                    let sp = Spread::of(&[median]).unwrap();
                    summary.phases.insert(phase, sp);
                }
            }
            by_name.insert(name, summary);
        }
        let ran: Vec<&EngineInfo> = by_name.keys().map(|n| engines::find(n).unwrap()).collect();
        let size = SizeResults {
            workload: Workload {
                n: 1000,
                key_len: 16,
                value_len: 100,
                seed: 1,
                mixed_ops: 1,
                durable_ops: 1,
                durable_ms: 1,
            },
            engines: by_name,
            child_secs: BTreeMap::new(),
            skipped: Vec::new(),
            raw: BTreeMap::new(),
        };
        let mut s = String::new();
        ratios(&mut s, &ran, &size);
        assert!(
            s.contains("| best peer | std ceiling | tight std ceiling | logstore ÷ best peer | logstore ÷ std, loose / tight |"),
            "{s}"
        );
        assert!(
            s.contains("| insert, 1 op/commit | fjall 300 k | hashmap 1.20 M | hashmap-tight 3.00 M | 2.00× | 0.50× / 0.20× |"),
            "{s}"
        );
        assert!(
            s.contains("| full scan | fjall 2.00 M | btreemap 5.00 M | – | 0.50× | 0.20× / – |"),
            "{s}"
        );
    }
}
