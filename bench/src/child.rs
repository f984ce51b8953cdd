//! The child-process protocol: the parent re-invokes its own executable as
//! `--child <engine> ...` once per engine and repetition, so that an engine's memory,
//! mappings and background threads die with its process and cannot slow the next one.
//!
//! The child prints one line per fact on stdout (`phase <id> <ops> <nanos>`,
//! `disk_bytes <n>`, `disk_after_inserts_bytes <n>`, `peak_rss_bytes <n>`, `baseline_rss_bytes <n>`, and for engines with
//! hint files `reopen_segments <from hints> <scanned>`) and `ok` last; on
//! failure it prints the reason on stderr and exits with status 2. The parent treats a
//! missing `ok`, a non-zero status or a timeout as a failed run.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::engines;
use crate::results::{ChildReport, Measure, Phase};
use crate::workload::Workload;

/// The hidden command-line arguments that start a child for `engine`.
pub fn args(engine: &str, w: &Workload, dir: &Path) -> Vec<String> {
    vec![
        "--child".into(),
        engine.into(),
        "--n".into(),
        w.n.to_string(),
        "--key-len".into(),
        w.key_len.to_string(),
        "--value-len".into(),
        w.value_len.to_string(),
        "--seed".into(),
        w.seed.to_string(),
        "--mixed-ops".into(),
        w.mixed_ops.to_string(),
        "--durable-ops".into(),
        w.durable_ops.to_string(),
        "--durable-ms".into(),
        w.durable_ms.to_string(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// The child's side: runs every phase and prints the protocol lines.
pub fn serve(engine: &str, w: &Workload, dir: &Path) -> ExitCode {
    let Some(info) = engines::find(engine) else {
        eprintln!("error: unknown engine {engine:?}");
        return ExitCode::from(2);
    };
    match crate::phases::run(info, w, dir) {
        Ok(report) => {
            for (phase, m) in &report.phases {
                println!("phase {} {} {}", phase.id(), m.ops, m.nanos);
            }
            println!("disk_bytes {}", report.disk_bytes);
            println!(
                "disk_after_inserts_bytes {}",
                report.disk_after_inserts_bytes
            );
            println!("peak_rss_bytes {}", report.peak_rss_bytes);
            println!("baseline_rss_bytes {}", report.baseline_rss_bytes);
            if let Some((hinted, scanned)) = report.reopen_segments {
                println!("reopen_segments {hinted} {scanned}");
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The parent's side: runs `engine` in a child process on a fresh directory under
/// `scratch` and parses its report.
///
/// # Errors
/// A message naming the engine and quoting the child's stderr if the child failed,
/// printed something unreadable, or ran past `timeout` (it is then killed).
pub fn spawn(
    engine: &str,
    w: &Workload,
    scratch: &Path,
    timeout: Duration,
) -> Result<ChildReport, String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{engine}-"))
        .tempdir_in(scratch)
        .map_err(|e| {
            format!(
                "cannot make a directory for {engine} in {}: {e}",
                scratch.display()
            )
        })?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut child = Command::new(exe)
        .args(args(engine, w, dir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the child for {engine}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                // Only this child, which we started, is killed.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{engine} did not finish within {} s and was stopped",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for the child of {engine}: {e}")),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{engine} failed ({status}): {}", err.trim()));
    }
    parse(&out).map_err(|e| format!("{engine}: {e}; its stderr: {}", err.trim()))
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Parses a child's stdout.
pub fn parse(out: &str) -> Result<ChildReport, String> {
    let mut report = ChildReport::default();
    let mut ok = false;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("unreadable line from the child: {line:?}"))
        };
        match fields.first().copied() {
            Some("phase") => {
                let phase = fields
                    .get(1)
                    .and_then(|id| Phase::from_id(id))
                    .ok_or_else(|| format!("unknown phase in {line:?}"))?;
                let m = Measure {
                    ops: number(2)?,
                    nanos: number(3)?,
                };
                report.phases.insert(phase, m);
            }
            Some("disk_bytes") => report.disk_bytes = number(1)?,
            Some("disk_after_inserts_bytes") => report.disk_after_inserts_bytes = number(1)?,
            Some("peak_rss_bytes") => report.peak_rss_bytes = number(1)?,
            Some("baseline_rss_bytes") => report.baseline_rss_bytes = number(1)?,
            Some("reopen_segments") => report.reopen_segments = Some((number(1)?, number(2)?)),
            Some("ok") => ok = true,
            _ => return Err(format!("unexpected line from the child: {line:?}")),
        }
    }
    if ok {
        Ok(report)
    } else {
        Err("the child ended without reporting success".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let r =
            parse("phase scan 10 2000\ndisk_bytes 5\npeak_rss_bytes 6\nbaseline_rss_bytes 1\nok\n")
                .unwrap();
        assert_eq!(
            r.phases[&Phase::Scan],
            Measure {
                ops: 10,
                nanos: 2000
            }
        );
        assert_eq!(
            (r.disk_bytes, r.peak_rss_bytes, r.baseline_rss_bytes),
            (5, 6, 1)
        );
        assert_eq!(r.reopen_segments, None);
        let r = parse("reopen_segments 2 1\nok\n").unwrap();
        assert_eq!(r.reopen_segments, Some((2, 1)));
        assert!(parse("phase scan 10 2000\n").is_err());
        assert!(parse("phase nope 1 1\nok\n").is_err());
    }
}
