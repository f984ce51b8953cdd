//! `accretion`: open a store directory and see and change what is inside it, the way
//! `sqlite3` does for a database file. Every verb that works on one structure takes the
//! directory and the structure's name first; keys and values are UTF-8 text, hex
//! (`x:00cafe` or `X64'00cafe'`) or a file's bytes (`@path`). Reads print printable bytes
//! as text and escape the rest, or, with `--json`, one JSON object per line.
//!
//! Exit status: 0 on success, 1 on any error (one line naming the file and the problem)
//! or damage found by `verify`, 2 when the directory is locked by another process.

/// `println!` that ends the tool quietly (status 0) when the reader of standard output
/// has gone, as `accretion scan ... | head` leaves it, rather than panicking; any other
/// failure to write is one line and status 1.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::output_failed(&e);
        }
    }};
}

mod bytes;
mod shell;
mod transfer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use accretion::catalog::{self, Kind, Structure};
use accretion::face::{Figure, OrderedStore, Store};
use accretion::{BTreeStore, Dir, Error, HashStore, LogStore, ShardedStore};
use clap::{Parser, Subcommand, ValueEnum};

use bytes::{parse, show, to_json};

#[derive(Parser, Debug)]
#[command(
    name = "accretion",
    version,
    about = "Open, inspect, query, verify and compact accretion store directories"
)]
struct Cli {
    /// Print reads as one JSON object per line (keys and values as text where they are
    /// UTF-8, else as `key_hex` / `value_hex`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

/// The kinds of store `create` makes.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// A LogStore (ordered keys, log segments).
    Log,
    /// A BTreeStore (copy-on-write B+tree).
    Btree,
    /// A HashStore (Robin Hood hashing).
    Hash,
    /// A ShardedStore (shards of signature rows).
    Sharded,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Every structure in DIR: kind, format, keys, live and dead bytes, disk bytes,
    /// generation.
    Ls { dir: PathBuf },
    /// Creates the store NAME in DIR (and DIR itself if needed).
    Create {
        dir: PathBuf,
        name: String,
        /// What kind of store.
        #[arg(long, value_enum)]
        kind: StoreKind,
    },
    /// Prints the value of KEY.
    #[command(allow_negative_numbers = true)]
    Get {
        dir: PathBuf,
        name: String,
        key: String,
    },
    /// Sets KEY to VALUE (made durable before the tool exits).
    #[command(allow_negative_numbers = true)]
    Put {
        dir: PathBuf,
        name: String,
        key: String,
        value: String,
    },
    /// Removes KEY (made durable before the tool exits); prints `deleted`, or `absent` if
    /// it was not set.
    #[command(allow_negative_numbers = true)]
    Delete {
        dir: PathBuf,
        name: String,
        key: String,
    },
    /// Merges OPERAND into KEY's value with the LogStore's registered merge operator
    /// (made durable before the tool exits) and prints the new value. A store with no
    /// operator yet registers the one `--operator` names; the tool knows concat, add,
    /// max and min.
    #[command(allow_negative_numbers = true)]
    Merge {
        dir: PathBuf,
        name: String,
        key: String,
        operand: String,
        /// The operator to register (or that the store must have registered).
        #[arg(long)]
        operator: Option<String>,
    },
    /// Prints entries: in key order for ordered stores (log, btree), in the store's
    /// order otherwise.
    #[command(allow_negative_numbers = true)]
    Scan {
        dir: PathBuf,
        name: String,
        /// The first key (included).
        #[arg(long)]
        from: Option<String>,
        /// The key to stop before (excluded).
        #[arg(long)]
        to: Option<String>,
        /// Only keys starting with these bytes.
        #[arg(long)]
        prefix: Option<String>,
        /// From the last key down (ordered stores).
        #[arg(long)]
        reverse: bool,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Prints the smallest key and its value (ordered stores).
    First { dir: PathBuf, name: String },
    /// Prints the largest key and its value (ordered stores).
    Last { dir: PathBuf, name: String },
    /// Prints the smallest key greater than KEY, and its value (ordered stores).
    #[command(allow_negative_numbers = true)]
    Above {
        dir: PathBuf,
        name: String,
        key: String,
    },
    /// Prints the largest key smaller than KEY, and its value (ordered stores).
    #[command(allow_negative_numbers = true)]
    Below {
        dir: PathBuf,
        name: String,
        key: String,
    },
    /// Prints the number of keys.
    Len { dir: PathBuf, name: String },
    /// Walks every checksum and invariant of NAME (or of every store in DIR), prints
    /// what it found, and exits non-zero on any damage.
    Verify { dir: PathBuf, name: Option<String> },
    /// Reclaims the space of overwritten and removed entries of NAME.
    Compact { dir: PathBuf, name: String },
    /// Writes every entry of NAME as JSON lines (`key`/`key_hex`, `value`/`value_hex`),
    /// streaming, with a progress bar on a terminal.
    Export {
        dir: PathBuf,
        name: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Puts every entry of JSON lines (as `export` writes them) into NAME, streaming, then
    /// syncs; reads standard input without FILE.
    Import {
        dir: PathBuf,
        name: String,
        file: Option<PathBuf>,
    },
    /// An interactive shell on DIR: every verb above without the directory (and, with
    /// NAME, without the name too); history, completion, `help`. Reads commands line by
    /// line, with no prompt, when standard input is not a terminal.
    Shell { dir: PathBuf, name: Option<String> },
    /// Content-addressed blobs (a Content store).
    Content {
        #[command(subcommand)]
        op: ContentOp,
    },
}

#[derive(Subcommand, Debug)]
enum ContentOp {
    /// Stores FILE's bytes in the Content store NAME (made if missing); prints its id.
    Put {
        dir: PathBuf,
        name: String,
        file: PathBuf,
    },
    /// Writes the blob ID's bytes to standard output (verified against the id).
    Get {
        dir: PathBuf,
        name: String,
        id: String,
    },
}

/// Why the tool failed.
enum Failure {
    /// An error of the library (it names the file and the problem).
    Store(Error),
    /// A request the tool cannot carry out.
    Usage(String),
    /// Already reported to the user (damage `verify` listed, commands of a scripted
    /// shell that failed).
    Reported,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Store(e)
    }
}

type Outcome<T = ()> = std::result::Result<T, Failure>;

/// Ends the tool after standard output failed: quietly if its reader has gone.
fn output_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("accretion: standard output: {e}");
    std::process::exit(1);
}

/// clap's refusal of the arguments as the tool's one line (`--help` and `--version`
/// print what they print).
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments");
    format!(
        "{} (see accretion --help)",
        first.strip_prefix("error: ").unwrap_or(first)
    )
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Status 1, as any error: 2 means locked.
            eprintln!("accretion: {}", usage_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let outcome = match &cli.verb {
        Verb::Shell { dir, name } => shell::run(dir, name.as_deref()),
        _ => run(&cli),
    };
    report(outcome)
}

/// Prints a failure (one line) and gives the exit status.
fn report(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            print_failure(&f);
            match f {
                Failure::Store(Error::Locked { .. }) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Prints a failure as one line on standard error.
fn print_failure(f: &Failure) {
    match f {
        Failure::Store(e @ Error::Locked { .. }) => {
            eprintln!("accretion: {e} (another process has the store open)");
        }
        Failure::Store(e) => eprintln!("accretion: {e}"),
        Failure::Usage(what) => eprintln!("accretion: {what}"),
        Failure::Reported => {}
    }
}

/// A key-value store of any kind.
enum AnyStore {
    Log(Box<LogStore>),
    BTree(Box<BTreeStore>),
    Hash(Box<HashStore>),
    Sharded(Box<ShardedStore>),
}

/// Runs `$body` with `$s` bound to the store, whatever its kind.
macro_rules! with_store {
    ($any:expr, $s:ident => $body:expr) => {
        match $any {
            AnyStore::Log(b) => {
                let $s = &**b;
                $body
            }
            AnyStore::BTree(b) => {
                let $s = &**b;
                $body
            }
            AnyStore::Hash(b) => {
                let $s = &**b;
                $body
            }
            AnyStore::Sharded(b) => {
                let $s = &**b;
                $body
            }
        }
    };
}

/// Runs `$body` with `$s` bound to the store if it keeps its keys in order.
macro_rules! with_ordered {
    ($any:expr, $verb:expr, $s:ident => $body:expr) => {
        match $any {
            AnyStore::Log(b) => {
                let $s = &**b;
                $body
            }
            AnyStore::BTree(b) => {
                let $s = &**b;
                $body
            }
            other => Err(Failure::Usage(format!(
                "{} needs an ordered store (LogStore or BTreeStore); this one is a {}",
                $verb,
                other.kind()
            ))),
        }
    };
}

impl AnyStore {
    fn kind(&self) -> Kind {
        with_store!(self, s => Store::kind(s))
    }
}

/// Opens an existing store directory (never creates one).
fn open_dir(path: &Path) -> Outcome<Dir> {
    if !path.join("accretion.acc").is_file() {
        return Err(Failure::Usage(format!(
            "{}: no accretion store directory there",
            path.display()
        )));
    }
    Ok(Dir::open(path)?)
}

/// Opens structure `name` of `dir` as the store its catalog entry says it is.
fn open_store(dir: &Dir, name: &str) -> Outcome<AnyStore> {
    let Some(s) = catalog::identify(dir, name)? else {
        return Err(Failure::Usage(format!(
            "{}: no structure named {name:?}",
            dir.path().display()
        )));
    };
    open_as(dir, name, s.kind)
}

fn open_as(dir: &Dir, name: &str, kind: Kind) -> Outcome<AnyStore> {
    Ok(match kind {
        Kind::LogStore => AnyStore::Log(Box::new(LogStore::open(dir, name, Default::default())?)),
        Kind::BTreeStore => {
            AnyStore::BTree(Box::new(BTreeStore::open(dir, name, Default::default())?))
        }
        Kind::HashStore => {
            AnyStore::Hash(Box::new(HashStore::open(dir, name, Default::default())?))
        }
        Kind::ShardedStore => {
            AnyStore::Sharded(Box::new(ShardedStore::open(dir, name, Default::default())?))
        }
        other => {
            return Err(Failure::Usage(format!(
                "{}: this structure is {}, not a key-value store",
                dir.path().join(name).display(),
                other.article()
            )));
        }
    })
}

fn run(cli: &Cli) -> Outcome {
    let json = cli.json;
    match &cli.verb {
        Verb::Ls { dir } => ls(&open_dir(dir)?, json),
        Verb::Create { dir, name, kind } => {
            let d = Dir::open(dir)?;
            if let Some(s) = catalog::identify(&d, name)? {
                return Err(Failure::Usage(format!(
                    "{name:?} exists already (a {})",
                    s.kind
                )));
            }
            let kind = match kind {
                StoreKind::Log => Kind::LogStore,
                StoreKind::Btree => Kind::BTreeStore,
                StoreKind::Hash => Kind::HashStore,
                StoreKind::Sharded => Kind::ShardedStore,
            };
            let store = open_as(&d, name, kind)?;
            with_store!(&store, s => Store::sync(s))?;
            say!("created {name} ({kind})");
            Ok(())
        }
        Verb::Get { dir, name, key } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let key = parse(key)?;
            let value = with_store!(&store, s => Store::get(s, &key)?.map(|v| v.to_vec()));
            match value {
                Some(v) => print_entry(json, &key, &v),
                None => {
                    let at = with_store!(&store, s => Store::path(s));
                    return Err(Failure::Usage(format!(
                        "{}: {}: not found",
                        at.display(),
                        show(&key)
                    )));
                }
            }
            Ok(())
        }
        Verb::Put {
            dir,
            name,
            key,
            value,
        } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let (key, value) = (parse(key)?, parse(value)?);
            with_store!(&store, s => {
                Store::put(s, &key, &value)?;
                Store::sync(s)
            })?;
            Ok(())
        }
        Verb::Delete { dir, name, key } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let key = parse(key)?;
            let was = with_store!(&store, s => {
                let was = Store::delete(s, &key)?;
                Store::sync(s)?;
                was
            });
            if json {
                say!("{}", serde_json::json!({ "deleted": was }));
            } else {
                say!("{}", if was { "deleted" } else { "absent" });
            }
            Ok(())
        }
        Verb::Merge {
            dir,
            name,
            key,
            operand,
            operator,
        } => merge(
            &open_dir(dir)?,
            name,
            &parse(key)?,
            &parse(operand)?,
            operator.as_deref(),
            json,
        ),
        Verb::Scan {
            dir,
            name,
            from,
            to,
            prefix,
            reverse,
            limit,
        } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let bounds = Bounds::new(from.as_deref(), to.as_deref(), prefix.as_deref())?;
            let limit = limit.unwrap_or(u64::MAX);
            if *reverse {
                with_ordered!(&store, "scan --reverse", s => scan_ordered(s, &bounds, true, limit, json))
            } else {
                match &store {
                    AnyStore::Log(s) => scan_ordered(&**s, &bounds, false, limit, json),
                    AnyStore::BTree(s) => scan_ordered(&**s, &bounds, false, limit, json),
                    AnyStore::Hash(s) => scan_all(&**s, &bounds, limit, json),
                    AnyStore::Sharded(s) => scan_all(&**s, &bounds, limit, json),
                }
            }
        }
        Verb::First { dir, name } => {
            let store = open_store(&open_dir(dir)?, name)?;
            with_ordered!(&store, "first", s => print_found(json, &Store::path(s), OrderedStore::first(s)?))
        }
        Verb::Last { dir, name } => {
            let store = open_store(&open_dir(dir)?, name)?;
            with_ordered!(&store, "last", s => print_found(json, &Store::path(s), OrderedStore::last(s)?))
        }
        Verb::Above { dir, name, key } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let key = parse(key)?;
            with_ordered!(&store, "above", s => print_found(json, &Store::path(s), OrderedStore::above(s, &key)?))
        }
        Verb::Below { dir, name, key } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let key = parse(key)?;
            with_ordered!(&store, "below", s => print_found(json, &Store::path(s), OrderedStore::below(s, &key)?))
        }
        Verb::Len { dir, name } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let n = with_store!(&store, s => Store::len(s))?;
            if json {
                say!("{}", serde_json::json!({ "len": n }));
            } else {
                say!("{n}");
            }
            Ok(())
        }
        Verb::Verify { dir, name } => verify(&open_dir(dir)?, name.as_deref(), json),
        Verb::Export { dir, name, out } => {
            let store = open_store(&open_dir(dir)?, name)?;
            with_store!(&store, s => transfer::export(s, out.as_deref()))
        }
        Verb::Import { dir, name, file } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let n = with_store!(&store, s => transfer::import(s, file.as_deref()))?;
            say!("imported {n} entries into {name}");
            Ok(())
        }
        Verb::Content { op } => content(op, json),
        Verb::Shell { .. } => Err(Failure::Usage(
            "a shell cannot be started from a shell".to_owned(),
        )),
        Verb::Compact { dir, name } => {
            let store = open_store(&open_dir(dir)?, name)?;
            let dead = |figures: &[(&'static str, Figure)]| match figure(figures, "dead_bytes") {
                Some(Figure::Count(n)) => n,
                _ => 0,
            };
            let at = with_store!(&store, s => Store::path(s));
            let disk_before = disk_bytes(&at);
            let spinner = transfer::spinner(format!("compact {name}"));
            let (before, after) = with_store!(&store, s => {
                let before = dead(&Store::stats(s)?);
                Store::compact(s)?;
                Store::sync(s)?;
                (before, dead(&Store::stats(s)?))
            });
            // The old generation's files go once the store lets them go.
            drop(store);
            spinner.finish_and_clear();
            say!(
                "compacted {name}: dead bytes {before} -> {after} ({} reclaimed); disk {disk_before} -> {} bytes",
                before.saturating_sub(after),
                disk_bytes(&at)
            );
            Ok(())
        }
    }
}

/// The `merge` verb: finds the operator the log store `name` records among those the
/// tool knows (or registers `wanted` if it records none), checks that the operand (and,
/// for `add`, the current value) suit it, merges, syncs and prints the new value.
fn merge(
    dir: &Dir,
    name: &str,
    key: &[u8],
    operand: &[u8],
    wanted: Option<&str>,
    json: bool,
) -> Outcome {
    use accretion::merge_operators::{self, OPERATORS};
    let known = || {
        OPERATORS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let AnyStore::Log(mut store) = open_store(dir, name)? else {
        let kind = open_store(dir, name)?.kind();
        return Err(Failure::Usage(format!(
            "merge needs a LogStore (it keeps the merge operator); {name} is {}",
            kind.article()
        )));
    };
    if let Some(w) = wanted
        && merge_operators::by_name(w).is_none()
    {
        return Err(Failure::Usage(format!(
            "no merge operator named {w:?} (the tool knows {})",
            known()
        )));
    }
    let recorded = OPERATORS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| store.records_merge_operator(n) == Some(true));
    let registered = store.records_merge_operator("").is_some();
    let (op, register) = match (recorded, wanted) {
        (Some(r), Some(w)) if r != w => {
            return Err(Failure::Usage(format!(
                "{name} was written with the merge operator {r:?}, not {w:?}"
            )));
        }
        (Some(r), _) => (r, false),
        (None, _) if registered => {
            return Err(Failure::Usage(format!(
                "{name} was written with a merge operator this tool does not know (it knows {})",
                known()
            )));
        }
        (None, Some(w)) => (w, true),
        (None, None) => {
            return Err(Failure::Usage(format!(
                "{name} has no merge operator yet: name one with --operator ({})",
                known()
            )));
        }
    };
    // Checked before anything is written, the operator's registration included.
    if op == "add" {
        let current = store.get(key)?;
        if merge_operators::add(current.as_deref(), operand).is_none() {
            return Err(Failure::Usage(format!(
                "add needs decimal integers whose sum fits in i64: the value is {}, the operand {}",
                current.as_deref().map_or("absent".to_owned(), show),
                show(operand)
            )));
        }
    }
    if register {
        // Register it: an open that gives an operator records its name.
        drop(store);
        let opts = accretion::LogOptions {
            merge_operator: merge_operators::by_name(op),
            ..Default::default()
        };
        store = Box::new(LogStore::open(dir, name, opts)?);
    }
    let (_, f) = merge_operators::by_name(op).expect("a known operator");
    store.merge(key, operand, |k, current, operand| f(k, current, operand))?;
    store.sync()?;
    match store.get(key)? {
        Some(v) => print_entry(json, key, &v),
        None => {
            return Err(Failure::Usage(format!(
                "{}: {}: not found",
                store.path().display(),
                show(key)
            )));
        }
    }
    Ok(())
}

fn figure(figures: &[(&'static str, Figure)], name: &str) -> Option<Figure> {
    figures.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn print_entry(json: bool, key: &[u8], value: &[u8]) {
    if json {
        let mut o = serde_json::Map::new();
        to_json(&mut o, "key", key);
        to_json(&mut o, "value", value);
        say!("{}", serde_json::Value::Object(o));
    } else {
        say!("{}\t{}", show(key), show(value));
    }
}

fn print_found<K: std::ops::Deref<Target = [u8]>, V: std::ops::Deref<Target = [u8]>>(
    json: bool,
    store: &Path,
    found: Option<(K, V)>,
) -> Outcome {
    match found {
        Some((k, v)) => {
            print_entry(json, &k, &v);
            Ok(())
        }
        None => Err(Failure::Usage(format!("{}: no such key", store.display()))),
    }
}

/// A scan's bounds: keys in `lo..hi` starting with `prefix`.
struct Bounds {
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    prefix: Vec<u8>,
}

impl Bounds {
    fn new(from: Option<&str>, to: Option<&str>, prefix: Option<&str>) -> Outcome<Bounds> {
        let prefix = prefix.map(parse).transpose()?.unwrap_or_default();
        let from = from.map(parse).transpose()?.unwrap_or_default();
        let mut hi = to.map(parse).transpose()?;
        // The smallest key past every key with the prefix, if any.
        let mut end = prefix.clone();
        while end.last() == Some(&u8::MAX) {
            end.pop();
        }
        if let Some(last) = end.last_mut() {
            *last += 1;
            if hi.as_ref().is_none_or(|h| end < *h) {
                hi = Some(end);
            }
        }
        Ok(Bounds {
            lo: from.max(prefix.clone()),
            hi,
            prefix,
        })
    }

    fn holds(&self, key: &[u8]) -> bool {
        key >= &self.lo[..]
            && self.hi.as_ref().is_none_or(|h| key < &h[..])
            && key.starts_with(&self.prefix)
    }
}

fn scan_ordered<S: OrderedStore>(
    store: &S,
    b: &Bounds,
    reverse: bool,
    limit: u64,
    json: bool,
) -> Outcome {
    use std::ops::Bound;
    if b.hi.as_ref().is_some_and(|h| *h <= b.lo) {
        return Ok(());
    }
    let hi = match &b.hi {
        Some(h) => Bound::Excluded(&h[..]),
        None => Bound::Unbounded,
    };
    let range = OrderedStore::range(store, (Bound::Included(&b.lo[..]), hi))?;
    let entries: Box<dyn Iterator<Item = _>> = if reverse {
        Box::new(range.rev())
    } else {
        range
    };
    for entry in entries.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let (k, v) = entry?;
        print_entry(json, &k, &v);
    }
    Ok(())
}

fn scan_all<S: Store>(store: &S, b: &Bounds, limit: u64, json: bool) -> Outcome {
    let mut shown = 0u64;
    for entry in Store::entries(store)? {
        if shown >= limit {
            break;
        }
        let (k, v) = entry?;
        if b.holds(&k) {
            print_entry(json, &k, &v);
            shown += 1;
        }
    }
    Ok(())
}

/// Bytes the files below `path` allocate on disk.
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

fn ls(dir: &Dir, json: bool) -> Outcome {
    let (structures, mut damaged) = catalog::list_despite_damage(dir)?;
    if !json {
        say!(
            "{:<24} {:<13} {:>6} {:>10} {:>12} {:>12} {:>12} {:>4}",
            "NAME",
            "KIND",
            "FORMAT",
            "KEYS",
            "LIVE",
            "DEAD",
            "DISK",
            "GEN"
        );
    }
    for s in structures {
        let disk = disk_bytes(&dir.path().join(&s.name));
        let figures = if s.kind.is_store() {
            // A store that does not open is listed without figures, and reported after.
            match open_as(dir, &s.name, s.kind)
                .and_then(|store| Ok(with_store!(&store, st => Store::stats(st))?))
            {
                Ok(figures) => figures,
                Err(Failure::Store(e @ Error::Locked { .. })) => return Err(Failure::Store(e)),
                Err(Failure::Store(e)) => {
                    damaged.push((s.name.clone(), e));
                    Vec::new()
                }
                Err(other) => return Err(other),
            }
        } else {
            Vec::new()
        };
        let count = |name: &str| match figure(&figures, name) {
            Some(Figure::Count(n)) => Some(n),
            _ => None,
        };
        if json {
            say!(
                "{}",
                serde_json::json!({
                    "name": s.name,
                    "kind": s.kind.name(),
                    "format": s.format,
                    "keys": count("keys"),
                    "live_bytes": count("live_bytes"),
                    "dead_bytes": count("dead_bytes"),
                    "disk_bytes": disk,
                    "generation": count("generation"),
                })
            );
        } else {
            let dash = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
            say!(
                "{:<24} {:<13} {:>6} {:>10} {:>12} {:>12} {:>12} {:>4}",
                s.name,
                s.kind.name(),
                dash(s.format.map(u64::from)),
                dash(count("keys")),
                dash(count("live_bytes")),
                dash(count("dead_bytes")),
                disk,
                dash(count("generation")),
            );
        }
    }
    for (name, e) in &damaged {
        eprintln!("accretion: {name}: {e}");
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

fn verify(dir: &Dir, name: Option<&str>, json: bool) -> Outcome {
    let mut damaged_records = 0;
    let targets: Vec<Structure> = match name {
        Some(n) => vec![catalog::identify(dir, n)?.ok_or_else(|| {
            Failure::Usage(format!(
                "{}: no structure named {n:?}",
                dir.path().display()
            ))
        })?],
        None => {
            let (targets, records) = catalog::list_despite_damage(dir)?;
            for (name, e) in &records {
                if json {
                    say!(
                        "{}",
                        serde_json::json!({"name": name, "ok": false, "damage": [damage_json(e)]})
                    );
                } else {
                    say!("{name:<24} {:<13} DAMAGED (1 found)", "?");
                    say!("  {}", damage_line(e));
                }
            }
            damaged_records = records.len();
            targets
        }
    };
    let bar = transfer::steps(targets.len() as u64, "verify");
    let mut damaged = damaged_records;
    for s in targets {
        bar.set_message(format!("verify {}", s.name));
        let found = catalog::verify(dir, &s.name);
        bar.inc(1);
        let found = bar.suspend(|| -> Outcome<bool> {
            // What keeps one structure from being checked is its damage here; only a
            // lock ends the whole check.
            let found = match found {
                Ok(found) => found,
                Err(e @ Error::Locked { .. }) => return Err(Failure::Store(e)),
                Err(e) => accretion::catalog::Verified {
                    figures: Vec::new(),
                    damage: vec![e],
                },
            };
            if json {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), s.name.clone().into());
                o.insert("kind".into(), s.kind.name().into());
                o.insert("ok".into(), found.damage.is_empty().into());
                for (n, f) in &found.figures {
                    o.insert((*n).into(), f.to_string().into());
                }
                let damage: Vec<serde_json::Value> = found.damage.iter().map(damage_json).collect();
                o.insert("damage".into(), damage.into());
                say!("{}", serde_json::Value::Object(o));
            } else {
                let shown: Vec<String> = found
                    .figures
                    .iter()
                    .map(|(n, f)| format!("{n} {f}"))
                    .collect();
                if found.damage.is_empty() {
                    say!("{:<24} {:<13} ok: {}", s.name, s.kind, shown.join(", "));
                } else {
                    say!(
                        "{:<24} {:<13} DAMAGED ({} found){}",
                        s.name,
                        s.kind,
                        found.damage.len(),
                        if shown.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", shown.join(", "))
                        }
                    );
                    for e in &found.damage {
                        say!("  {}", damage_line(e));
                    }
                }
            }
            Ok(!found.damage.is_empty())
        })?;
        damaged += usize::from(found);
    }
    bar.finish_and_clear();
    if damaged > 0 {
        eprintln!("accretion: damage found in {damaged} structure(s)");
        return Err(Failure::Reported);
    }
    Ok(())
}

/// One damage as `file at byte N: what` (or the error's own words).
fn damage_line(e: &Error) -> String {
    match e {
        Error::Corrupted { path, offset, what } => {
            format!("{} at byte {offset}: {what}", path.display())
        }
        other => other.to_string(),
    }
}

fn damage_json(e: &Error) -> serde_json::Value {
    match e {
        Error::Corrupted { path, offset, what } => serde_json::json!({
            "file": path.display().to_string(),
            "offset": offset,
            "what": what,
        }),
        other => serde_json::json!({ "what": other.to_string() }),
    }
}

fn content(op: &ContentOp, json: bool) -> Outcome {
    match op {
        ContentOp::Put { dir, name, file } => {
            let d = Dir::open(dir)?;
            let blobs = accretion::Content::open(&d, name)?;
            let reader = std::fs::File::open(file)
                .map_err(|e| Failure::Usage(format!("{}: open: {e}", file.display())))?;
            let id = blobs.insert_reader(std::io::BufReader::new(reader))?;
            blobs.sync()?;
            if json {
                say!("{}", serde_json::json!({ "id": id.to_string() }));
            } else {
                say!("{id}");
            }
            Ok(())
        }
        ContentOp::Get { dir, name, id } => {
            let d = open_dir(dir)?;
            let parsed: accretion::ContentId = id
                .parse()
                .map_err(|e| Failure::Usage(format!("{id:?}: {e}")))?;
            if catalog::identify(&d, name)?.is_none() {
                return Err(Failure::Usage(format!(
                    "{}: no structure named {name:?}",
                    d.path().display()
                )));
            }
            let blobs = accretion::Content::open(&d, name)?;
            let Some(bytes) = blobs.get(&parsed)? else {
                return Err(Failure::Usage(format!("{id}: not found")));
            };
            if json {
                let mut o = serde_json::Map::new();
                o.insert("id".into(), id.clone().into());
                o.insert("bytes".into(), bytes.len().into());
                to_json(&mut o, "value", bytes);
                say!("{}", serde_json::Value::Object(o));
            } else {
                use std::io::Write;
                std::io::stdout()
                    .write_all(bytes)
                    .map_err(|e| Failure::Usage(format!("standard output: {e}")))?;
            }
            Ok(())
        }
    }
}
