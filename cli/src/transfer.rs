//! `export` and `import`: a store's entries as JSON lines, streamed both ways, with a
//! progress bar on a terminal (indicatif draws nothing when standard error is not one).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use accretion::face::Store;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Failure;
use crate::bytes::to_json;

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} entries, {per_sec}, {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// A bar over `n` steps (structures to verify), drawn on a terminal only.
pub fn steps(n: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len}, {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A spinner with the time spent, for one long step (a compaction), on a terminal only.
pub fn spinner(what: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}, {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn io(what: &str, e: std::io::Error) -> Failure {
    Failure::Usage(format!("{what}: {e}"))
}

/// Writes every entry of `store` to `out` (standard output if `None`).
pub fn export<S: Store>(store: &S, out: Option<&Path>) -> Result<(), Failure> {
    let (mut sink, target): (Box<dyn Write>, String) = match out {
        Some(path) => (
            Box::new(std::fs::File::create(path).map_err(|e| io(&path.display().to_string(), e))?),
            path.display().to_string(),
        ),
        None => (
            Box::new(std::io::stdout().lock()),
            "standard output".to_owned(),
        ),
    };
    let mut sink = BufWriter::new(&mut sink);
    let progress = bar(Some(Store::len(store)?), "export");
    for entry in Store::entries(store)? {
        let (k, v) = entry?;
        let mut o = serde_json::Map::new();
        to_json(&mut o, "key", &k);
        to_json(&mut o, "value", &v);
        writeln!(sink, "{}", serde_json::Value::Object(o)).map_err(|e| io(&target, e))?;
        progress.inc(1);
    }
    sink.flush().map_err(|e| io(&target, e))?;
    progress.finish_and_clear();
    Ok(())
}

/// One side of an entry in a JSON line: `name` as text or `name_hex` as hex.
fn side(o: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<Vec<u8>> {
    if let Some(text) = o.get(name).and_then(serde_json::Value::as_str) {
        return Some(text.as_bytes().to_vec());
    }
    let hex = o.get(&format!("{name}_hex"))?.as_str()?;
    crate::bytes::parse(&format!("x:{hex}")).ok()
}

/// Puts every entry of the JSON lines in `file` (standard input if `None`) into `store`,
/// then syncs it; returns how many.
pub fn import<S: Store>(store: &S, file: Option<&Path>) -> Result<u64, Failure> {
    let (source, what): (Box<dyn BufRead>, String) = match file {
        Some(path) => (
            Box::new(BufReader::new(
                std::fs::File::open(path).map_err(|e| io(&path.display().to_string(), e))?,
            )),
            path.display().to_string(),
        ),
        None => (
            Box::new(std::io::stdin().lock()),
            "standard input".to_owned(),
        ),
    };
    let progress = bar(None, "import");
    let mut n = 0u64;
    for (i, line) in source.lines().enumerate() {
        let line = line.map_err(|e| io(&what, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| Failure::Usage(format!("{what}: line {}: {why}", i + 1));
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
        let o = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let key = side(o, "key").ok_or_else(|| bad("no \"key\" (text) or \"key_hex\""))?;
        let value = side(o, "value").ok_or_else(|| bad("no \"value\" (text) or \"value_hex\""))?;
        Store::put(store, &key, &value)?;
        n += 1;
        progress.inc(1);
    }
    Store::sync(store)?;
    progress.finish_and_clear();
    Ok(n)
}
