//! Crash images: power loss simulated from snapshots of a store directory, for any
//! primitive or store.
//!
//! Killing a process loses nothing written to a mapping (the kernel keeps it); power loss
//! loses whatever had not reached the disk. We cannot pull the plug, so we build the disk
//! a crash could have left, and open that:
//!
//! 1. [`Snapshot::take`] reads every file of the store directory (`read` is coherent with
//!    `MAP_SHARED` mappings, so a snapshot sees every byte written so far).
//! 2. The *durable* snapshot S0 is taken right after a `sync()` returned: at that instant
//!    every file is on disk as S0 shows it (every primitive's `sync` flushes all it
//!    wrote). Work goes on; the *crash* snapshot S1 is taken later, either in the middle
//!    of work or right after the next `sync()` returned.
//! 3. An [`Image`] is a fresh directory in which every 4 KiB page ([`Granularity::Page`])
//!    or 512-byte sector ([`Granularity::Sector`], torn writes) of every file is taken
//!    from S0, from S1, or from a snapshot taken in between: a page reaches the disk at
//!    any time after it is written, unless an fsync that returned forced it.
//! 4. Fsyncs order the disk. A [`FlushOrder`] lists the file groups a structure's
//!    `sync()` flushes, in order. When S1 was taken right after a sync returned, the
//!    image simulates a crash *during* that sync at a *cut* `k`: groups before `k` were
//!    flushed (whole from S1), group `k` was being flushed (mixed), groups after it were
//!    not flushed yet (mixed if written through a mapping, unchanged since S0 if the file
//!    is only ever written by its own flush step, as registers are).
//!
//! Why S0 must be the snapshot of the *last* sync that returned before the crash: each
//! sync forces every page it flushed. Mixing in pages from a snapshot older than that
//! sync builds a disk no crash can leave (a length register from one sync beside data
//! pages from before it), and any primitive would "fail" on it. [`History`] records a
//! snapshot after every sync and picks S0 accordingly. (The harness can still build such
//! an impossible image on purpose, to show that the checks notice it.)
//!
//! Files new since S0 were created durably (temporary file, fsync, rename, directory
//! fsync) before S1 saw them, so they are present in the image at S1's length; their
//! 64-byte header was on disk before the file had its name, and every other page holds
//! what creation wrote (zeros) or a later version. A new `length.acc` holds at least its
//! first written version: a format-2 AppendOnly syncs its register's first value
//! (format, epoch, nonce) before it creates any other file. So does one that S0 saw blank
//! (created on another thread, a log segment made ahead, its first value not yet
//! written): S0's blank copy is never taken as on disk beside the buffer's lanes. A file
//! whose length changed takes S1's length; pages past S0's end count as zeros in S0.
//!
//! A register written outside any `sync()` (the epoch an AppendOnly takes, durably, at
//! its first append after an open) is not modeled: a workload on an existing structure
//! makes that first append, and a sync, before its history starts, so that S0 holds it.
//!
//! The flush order is declared, not observed: the harness checks recovery from every disk
//! the declared order allows, so a `sync` that flushed in another order than it declares
//! would go unnoticed here.
//!
//! Images are written under [`scratch_root`] and removed on drop, unless the thread is
//! panicking: then the image is kept and its path printed, for inspection.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes every accretion file starts with (the common header), written before the file
/// got its name, so never lost once the file exists.
const HEADER_BYTES: usize = 64;

/// The files and directories under a store directory, by relative path (`/`-separated).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    files: BTreeMap<String, Arc<[u8]>>,
    dirs: BTreeSet<String>,
}

impl Snapshot {
    /// Reads every file under `root`.
    pub fn take(root: &Path) -> Snapshot {
        Self::take_sharing(root, None)
    }

    /// Reads every file under `root`, sharing the bytes of files that did not change
    /// since `previous` (a long history of large lanes then costs little memory).
    pub fn take_sharing(root: &Path, previous: Option<&Snapshot>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        walk(root, "", previous, &mut snapshot);
        snapshot
    }

    /// The bytes of file `rel`, if the snapshot has it.
    pub fn file(&self, rel: &str) -> Option<&[u8]> {
        self.files.get(rel).map(|b| &b[..])
    }

    /// A copy with file `rel` replaced by `bytes`: for deliberately impossible images.
    pub fn with_file(&self, rel: &str, bytes: &[u8]) -> Snapshot {
        let mut copy = self.clone();
        copy.files.insert(rel.to_string(), bytes.into());
        copy
    }
}

/// Reads the files under `dir` into `out`; false if `dir` went away before it was listed
/// (a directory being removed, renamed to a `.removing` name first, by a background
/// thread of the store).
fn walk(dir: &Path, rel: &str, previous: Option<&Snapshot>, out: &mut Snapshot) -> bool {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => return false,
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        let name = entry.file_name().into_string().expect("UTF-8 file name");
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            if walk(&path, &rel, previous, out) {
                out.dirs.insert(rel);
            }
        } else {
            // A file may go between the listing and the read: the temporary name of a
            // lane that a look-ahead thread is creating, renamed meanwhile (the lane
            // holds nothing yet; the next snapshot has it).
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}: {e}", path.display()),
            };
            let shared = match previous.and_then(|p| p.files.get(&rel)) {
                Some(old) if old[..] == bytes[..] => Arc::clone(old),
                _ => bytes.into(),
            };
            out.files.insert(rel, shared);
        }
    }
    true
}

/// A key for a message: its first 24 bytes, lossily as text.
pub fn show(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(&key[..key.len().min(24)]).into_owned();
    if key.len() > 24 { s + "…" } else { s }
}

/// The value's serial number (`#n:` prefix), to tell writes apart in messages.
pub fn serial(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(&value[..end.min(16)]).into_owned()
}

/// Where workloads and images live: `ACCRETION_CRASH_DIR` if set, else `/dev/shm` when it
/// is there (a tmpfs: the many fsyncs of workloads and recoveries cost nothing, and the
/// images are plain files either way), else the system temporary directory.
pub fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ACCRETION_CRASH_DIR") {
        return dir.into();
    }
    let shm = Path::new("/dev/shm");
    match fs::metadata(shm) {
        Ok(m) if m.is_dir() && !m.permissions().readonly() => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// The unit a write can tear at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Whole 4 KiB pages reach the disk (page cache writeback).
    Page,
    /// 512-byte sectors reach the disk independently (a page write torn by power loss).
    Sector,
}

impl Granularity {
    fn bytes(self) -> usize {
        match self {
            Granularity::Page => 4096,
            Granularity::Sector => 512,
        }
    }
}

/// Which version each page or sector that is free to vary takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    /// All from S0: nothing after S0 reached the disk.
    Old,
    /// All from S1: everything written reached the disk.
    New,
    /// Each unit independently: a newer version with this probability (chosen uniformly
    /// among the snapshots after S0), else S0's.
    Random(f64),
}

/// How the files of a group get written, which decides what a crash before the group's
/// flush step can leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Through a mapping: pages reach the disk at any time after the write.
    Mapped,
    /// Only by `pwrite` inside the group's own flush step (registers): before that step
    /// the file on disk is S0's.
    AtFlush,
}

/// Files flushed together by one step of a `sync()`.
#[derive(Clone, Debug)]
pub struct Group {
    /// Glob-like patterns on relative paths; `*` matches within one path component.
    pub patterns: Vec<String>,
    pub written: Written,
}

/// The steps of a structure's `sync()`, in order, and which one is its commit point.
#[derive(Clone, Debug)]
pub struct FlushOrder {
    pub groups: Vec<Group>,
    /// The group whose flush commits: a crash before it leaves the previous sync's state,
    /// after it the new one, and during it either.
    pub commit: usize,
}

fn group(pattern: String, written: Written) -> Group {
    Group {
        patterns: vec![pattern],
        written,
    }
}

impl FlushOrder {
    /// `Journal` at `name`: the register write is the whole sync.
    pub fn journal(name: &str) -> FlushOrder {
        FlushOrder {
            groups: vec![group(format!("{name}/journal.acc"), Written::AtFlush)],
            commit: 0,
        }
    }

    /// `AppendOnly` at `name` (format 2): lanes (msync), then the length register, which
    /// a sync writes only now and then (`sync_recorded`, or once the tail past the
    /// recorded length reaches 4 MiB). The lanes' flush is the commit: the frames prove
    /// the records, and open adopts every valid one past the recorded length.
    pub fn append_only(name: &str) -> FlushOrder {
        FlushOrder {
            commit: 0,
            ..Self::lanes_then_length(name, "data")
        }
    }

    /// `RandomAccess` at `name`: lanes (msync), then the length register.
    pub fn random_access(name: &str) -> FlushOrder {
        Self::lanes_then_length(name, "cells")
    }

    fn lanes_then_length(name: &str, prefix: &str) -> FlushOrder {
        FlushOrder {
            groups: vec![
                group(format!("{name}/{prefix}-*.acc"), Written::Mapped),
                group(format!("{name}/length.acc"), Written::AtFlush),
            ],
            commit: 1,
        }
    }

    /// `OnceMap` at `name` (over a format-2 log): the log's lanes (the commit: a sync
    /// flushes only them), then, every 4 MiB of log, the index (lanes, length), the
    /// log's length and the meta (`sync_index`). `name/entropy` never changes after
    /// creation and belongs to no group.
    pub fn once_map(name: &str) -> FlushOrder {
        let index = Self::random_access(&format!("{name}/index"));
        let log = Self::append_only(&format!("{name}/log"));
        let meta = Self::journal(&format!("{name}/meta"));
        let (log_lanes, log_length) = (log.groups[0].clone(), log.groups[1].clone());
        let groups = [vec![log_lanes], index.groups, vec![log_length], meta.groups].concat();
        FlushOrder { groups, commit: 0 }
    }

    /// `Content` at `name`: a `OnceMap` under the same name.
    pub fn content(name: &str) -> FlushOrder {
        Self::once_map(name)
    }

    /// Number of groups; cuts run over `0..=len()`.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// The group that flushes file `rel`, if any.
    pub fn group_of(&self, rel: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.patterns.iter().any(|p| glob(p, rel)))
    }
}

/// `*` matches any run of characters within one `/`-separated component.
fn glob(pattern: &str, path: &str) -> bool {
    let (pattern, path): (Vec<_>, Vec<_>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len() && pattern.iter().zip(&path).all(|(p, s)| glob_part(p, s))
}

fn glob_part(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head)
                && (head.len()..=s.len())
                    .filter(|&i| s.is_char_boundary(i))
                    .any(|i| glob_part(tail, &s[i..]))
        }
    }
}

/// Everything that decides one crash image.
#[derive(Clone, Debug)]
pub struct ImageSpec<'a> {
    /// S0: the disk as the last `sync()` that returned left it.
    pub durable: &'a Snapshot,
    /// Snapshots taken after S0, oldest first; the last is S1, the crash instant.
    pub newer: Vec<&'a Snapshot>,
    /// `Some((order, cut))` if the crash happened inside the `sync()` that S1 follows.
    pub during: Option<(&'a FlushOrder, usize)>,
    pub granularity: Granularity,
    pub mix: Mix,
    pub seed: u64,
}

/// A crash image: a store directory in a fresh temporary directory.
#[derive(Debug)]
pub struct Image {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

/// What a crash leaves of one file.
enum Fate {
    /// Its flush returned: S1 exactly.
    Flushed,
    /// Each unit from S0 or a newer version.
    Mixed,
    /// Only ever written by its flush step, which had not started: S0.
    Untouched,
}

impl Image {
    /// Builds the image `spec` describes.
    pub fn build(spec: &ImageSpec<'_>) -> Image {
        let crash = *spec
            .newer
            .last()
            .expect("ImageSpec::newer holds at least S1");
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let image = Image::empty();
        let names: BTreeSet<&String> = spec
            .durable
            .files
            .keys()
            .chain(crash.files.keys())
            .collect();
        for dir in spec.durable.dirs.iter().chain(&crash.dirs) {
            fs::create_dir_all(image.path.join(dir)).expect("create image directory");
        }
        for rel in names {
            let fate = match spec.during {
                None => Fate::Mixed,
                Some((order, cut)) => match order.group_of(rel) {
                    None => Fate::Mixed,
                    Some(g) if g < cut => Fate::Flushed,
                    Some(g) if g == cut || order.groups[g].written == Written::Mapped => {
                        Fate::Mixed
                    }
                    Some(_) => Fate::Untouched,
                },
            };
            let bytes = Self::file_bytes(spec, rel, &fate, &mut rng);
            image.write(rel, &bytes);
        }
        image
    }

    /// An image holding exactly `snapshot`'s files (pure S0, pure S1, or a deliberately
    /// impossible disk made with [`Snapshot::with_file`]).
    pub fn of(snapshot: &Snapshot) -> Image {
        let image = Image::empty();
        for dir in &snapshot.dirs {
            fs::create_dir_all(image.path.join(dir)).expect("create image directory");
        }
        for (rel, bytes) in &snapshot.files {
            image.write(rel, bytes);
        }
        image
    }

    /// An image with no files yet.
    pub fn empty() -> Image {
        let dir = tempfile::Builder::new()
            .prefix("accretion-crash-")
            .tempdir_in(scratch_root())
            .expect("create image directory");
        let path = dir.path().to_path_buf();
        Image {
            dir: Some(dir),
            path,
        }
    }

    /// Writes file `rel` of the image (for debris a crash may leave, such as the `.tmp`
    /// file of an interrupted creation).
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.path.join(rel);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    fn file_bytes(spec: &ImageSpec<'_>, rel: &str, fate: &Fate, rng: &mut StdRng) -> Vec<u8> {
        let crash = *spec.newer.last().expect("S1");
        let Some(newest) = crash.file(rel) else {
            // Gone by S1 (not something accretion does): S0's copy stands.
            return spec.durable.file(rel).expect("file of S0 or S1").to_vec();
        };
        let len = newest.len();
        // What the file held at S0, at S1's length. A file created since S0 was created
        // durably: its header and zeros, which is what creation wrote.
        // A length register that S0 saw created but not yet written counts as new: a
        // structure being created on another thread (a log segment made ahead) when S0
        // was taken writes and syncs its first value before it creates any other file.
        // Taking S0's blank copy as on disk would build a disk no crash leaves: that
        // blank register beside the data files created after its sync.
        let blank_register = |b: &[u8]| {
            rel.strip_suffix("/length.acc").is_some_and(|buffer| {
                // An AppendOnly's (its lanes are `data-*`; a RandomAccess may keep a
                // blank register, length 0, for good).
                crash.file(&format!("{buffer}/data-00.acc")).is_some()
            }) && b[HEADER_BYTES.min(b.len())..].iter().all(|&x| x == 0)
        };
        let durable = spec.durable.file(rel).filter(|b| !blank_register(b));
        let old: Cow<[u8]> = match durable {
            Some(b) if b.len() == len => Cow::Borrowed(b),
            Some(b) => {
                let mut v = b.to_vec();
                v.resize(len, 0);
                Cow::Owned(v)
            }
            None => {
                let mut v = vec![0u8; len];
                let h = HEADER_BYTES.min(len);
                v[..h].copy_from_slice(&newest[..h]);
                // A format-2 AppendOnly's length register gets its first value (format,
                // epoch, nonce) synced at creation, before any other file of its
                // buffer: from its first written version on, that is on disk.
                if rel.ends_with("/length.acc")
                    && let Some(first) = spec
                        .newer
                        .iter()
                        .filter_map(|s| s.file(rel))
                        .find(|b| b.len() == len && b[h..] != v[h..])
                {
                    v.copy_from_slice(first);
                }
                Cow::Owned(v)
            }
        };
        match fate {
            Fate::Flushed => return newest.to_vec(),
            Fate::Untouched => return old.into_owned(),
            Fate::Mixed => {}
        }
        // Later versions, oldest first; a snapshot taken before the file existed
        // contributes what creation wrote.
        let versions: Vec<Cow<[u8]>> = spec
            .newer
            .iter()
            .map(|s| match s.file(rel).filter(|b| !blank_register(b)) {
                Some(b) if b.len() == len => Cow::Borrowed(b),
                Some(b) => {
                    let mut v = b.to_vec();
                    v.resize(len, 0);
                    Cow::Owned(v)
                }
                None => old.clone(),
            })
            .collect();
        let mut out = old.to_vec();
        let unit = spec.granularity.bytes();
        for start in (0..len).step_by(unit) {
            let end = (start + unit).min(len);
            if versions.iter().all(|v| v[start..end] == old[start..end]) {
                continue; // Unchanged since S0: no choice to make (and no randomness used).
            }
            let pick = match spec.mix {
                Mix::Old => None,
                Mix::New => Some(versions.len() - 1),
                Mix::Random(p) => rng
                    .random_bool(p)
                    .then(|| rng.random_range(0..versions.len())),
            };
            if let Some(v) = pick {
                out[start..end].copy_from_slice(&versions[v][start..end]);
            }
        }
        out
    }

    /// The image's store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // A panic while this image is alive is a failed check on it: keep the evidence.
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let _ = dir.keep();
            eprintln!("crash image kept at {}", self.path.display());
        }
    }
}

/// One recorded instant of a workload.
#[derive(Debug)]
pub struct Point {
    pub snapshot: Snapshot,
    /// Syncs that had returned when the snapshot was taken (opening counts as sync 0:
    /// a freshly opened structure is durable).
    pub syncs: usize,
    /// Taken right after sync number `syncs` returned (else in the middle of work).
    pub after_sync: bool,
}

/// A crash to simulate: at point `at` of a [`History`], during its sync at `cut` if that
/// point follows a sync.
#[derive(Clone, Copy, Debug)]
pub struct Crash {
    pub at: usize,
    pub cut: Option<usize>,
    pub granularity: Granularity,
    pub mix: Mix,
    pub seed: u64,
}

impl Crash {
    /// A crash at point `at` (cut after `cut` files of its flush order, if given), with a
    /// random granularity, mix and image seed.
    pub fn random(rng: &mut impl Rng, at: usize, cut: Option<usize>) -> Crash {
        let granularity = if rng.random_bool(0.5) {
            Granularity::Page
        } else {
            Granularity::Sector
        };
        let mix = match rng.random_range(0..10) {
            0 => Mix::Old,
            1 => Mix::New,
            _ => Mix::Random(rng.random_range(0.05..0.95)),
        };
        Crash {
            at,
            cut,
            granularity,
            mix,
            seed: rng.random(),
        }
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crash at point {}", self.at)?;
        match self.cut {
            Some(cut) => write!(f, " during its sync, cut {cut}")?,
            None => write!(f, " mid-work")?,
        }
        write!(
            f,
            ", {:?}, {:?}, image seed {}",
            self.granularity, self.mix, self.seed
        )
    }
}

/// Snapshots of one store directory: one after opening, one after every sync, and any
/// number taken mid-work. It knows which snapshot is durable for a crash at any point.
#[derive(Debug)]
pub struct History {
    root: PathBuf,
    points: Vec<Point>,
}

impl History {
    /// Starts a history of `root`, whose structure was just opened (sync 0).
    pub fn new(root: &Path) -> History {
        let snapshot = Snapshot::take(root);
        History {
            root: root.to_path_buf(),
            points: vec![Point {
                snapshot,
                syncs: 0,
                after_sync: true,
            }],
        }
    }

    fn push(&mut self, syncs: usize, after_sync: bool) -> usize {
        let snapshot = Snapshot::take_sharing(&self.root, self.points.last().map(|p| &p.snapshot));
        self.points.push(Point {
            snapshot,
            syncs,
            after_sync,
        });
        self.points.len() - 1
    }

    /// Records the directory right after a `sync()` returned; returns the point.
    /// Every sync must be recorded, so that the durable state of any crash is known.
    pub fn synced(&mut self) -> usize {
        self.push(self.syncs() + 1, true)
    }

    /// Records `snapshot`, taken by a fault-injection hook at a flush made inside some
    /// action (a register's, whose new bytes are written by then), as the point right
    /// after a sync returned; returns the point.
    pub fn synced_with(&mut self, snapshot: Snapshot) -> usize {
        self.points.push(Point {
            snapshot,
            syncs: self.syncs() + 1,
            after_sync: true,
        });
        self.points.len() - 1
    }

    /// Records the directory in the middle of work (no sync since the last recorded one).
    pub fn mid(&mut self) -> usize {
        self.push(self.syncs(), false)
    }

    /// Point `at` of the history.
    pub fn point(&self, at: usize) -> &Point {
        &self.points[at]
    }

    /// Syncs recorded so far.
    pub fn syncs(&self) -> usize {
        self.points.last().map_or(0, |p| p.syncs)
    }

    /// The snapshot taken right after sync `s` returned.
    pub fn after_sync(&self, s: usize) -> &Snapshot {
        &self.points[self.after_sync_point(s)].snapshot
    }

    /// The point recorded right after sync `s` returned.
    pub fn after_sync_point(&self, s: usize) -> usize {
        self.points
            .iter()
            .position(|p| p.after_sync && p.syncs == s)
            .unwrap_or_else(|| panic!("no snapshot after sync {s}"))
    }

    /// Crash number `n` of a series: three in four during a sync, at a random point
    /// after a sync, with the cut cycling over `0..=order.len()` so that every cut is
    /// covered; one in four mid-work at a random point without a sync in progress (if
    /// the history has such points). One image in ten is pure S0 and one in ten pure S1;
    /// the rest mix with a random bias; pages or sectors at random.
    pub fn random_crash(&self, rng: &mut impl Rng, order: &FlushOrder, n: usize) -> Crash {
        let pick = |rng: &mut _, after_sync: bool| {
            let ats: Vec<usize> = (1..self.points.len())
                .filter(|&i| self.points[i].after_sync == after_sync)
                .collect();
            (!ats.is_empty()).then(|| ats[Rng::random_range(rng, 0..ats.len())])
        };
        let mid = if n % 4 == 3 { pick(rng, false) } else { None };
        let (at, cut) = match mid {
            Some(at) => (at, None),
            None => {
                let at = pick(rng, true).expect("record a sync before crashing");
                (at, Some((n - n / 4) % (order.len() + 1)))
            }
        };
        Crash::random(rng, at, cut)
    }

    /// The last sync that had returned at the crash: its state is on disk.
    pub fn durable_sync(&self, crash: &Crash) -> usize {
        let p = &self.points[crash.at];
        match crash.cut {
            Some(_) => {
                assert!(
                    p.after_sync && p.syncs > 0,
                    "a cut needs a point after a sync"
                );
                p.syncs - 1
            }
            None => p.syncs,
        }
    }

    /// Builds the image of `crash`, whose structure flushes in `order`.
    pub fn image(&self, crash: &Crash, order: &FlushOrder) -> Image {
        let from = self.after_sync_point(self.durable_sync(crash));
        let newer: Vec<&Snapshot> = self.points[from + 1..=crash.at]
            .iter()
            .map(|p| &p.snapshot)
            .collect();
        Image::build(&ImageSpec {
            durable: &self.points[from].snapshot,
            newer,
            during: crash.cut.map(|cut| (order, cut)),
            granularity: crash.granularity,
            mix: crash.mix,
            seed: crash.seed,
        })
    }

    /// The syncs whose state the recovered structure may hold after `crash`: the last sync
    /// that returned, or for a crash during a sync at or past its commit step, that sync.
    pub fn possible_syncs(&self, crash: &Crash, order: &FlushOrder) -> Vec<usize> {
        let durable = self.durable_sync(crash);
        match crash.cut {
            None => vec![durable],
            Some(cut) if cut < order.commit => vec![durable],
            Some(cut) if cut == order.commit => vec![durable, durable + 1],
            Some(_) => vec![durable + 1],
        }
    }
}

/// The base seed (`ACCRETION_SEED`, else random) and the context of the image being
/// checked; printed if the test panics, so that the failure can be replayed.
pub struct Replay {
    pub test: &'static str,
    pub seed: u64,
    pub rng: StdRng,
    /// What is being checked now (image number, crash point, cut...).
    pub context: String,
}

impl Replay {
    /// A replay guard for `test`; its RNG is seeded from the base seed and the test name,
    /// so tests differ from each other but all replay from one seed.
    pub fn new(test: &'static str) -> Replay {
        let seed = std::env::var("ACCRETION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random());
        let salt = xxhash_rust::xxh3::xxh3_64(test.as_bytes());
        Replay {
            test,
            seed,
            rng: StdRng::seed_from_u64(seed ^ salt),
            context: String::from("building the workload"),
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed while {}: replay with ACCRETION_SEED={} \
                 (OnceMap/Content hash keys come from the OS, so their index layout differs)",
                self.test, self.context, self.seed
            );
        }
    }
}

#[test]
fn glob_matches_one_component_per_star() {
    assert!(glob("a/data-*.acc", "a/data-03.acc"));
    assert!(glob("a/b/length.acc", "a/b/length.acc"));
    assert!(!glob("a/data-*.acc", "a/b/data-03.acc"));
    assert!(!glob("a/data-*.acc", "a/cells-03.acc"));
    assert!(!glob("a/length.acc", "a/length.acc.tmp"));
    assert!(glob("*/x", "y/x"));
}

#[test]
fn flush_orders_cover_the_structure_files() {
    let order = FlushOrder::once_map("m");
    let expect = [
        ("m/log/data-05.acc", Some(0)),
        ("m/index/cells-00.acc", Some(1)),
        ("m/index/length.acc", Some(2)),
        ("m/log/length.acc", Some(3)),
        ("m/meta/journal.acc", Some(4)),
        ("m/entropy/entropy.acc", None),
        ("accretion.acc", None),
    ];
    for (rel, g) in expect {
        assert_eq!(order.group_of(rel), g, "{rel}");
    }
    assert_eq!(order.commit, 0);
    assert_eq!(FlushOrder::append_only("x").commit, 0);
    assert_eq!(FlushOrder::random_access("x").commit, 1);
}

/// A buffer being created on another thread when S0 was taken: S0 holds its length
/// register blank (created, first value not yet written), S1 its first value and a lane
/// created after that value's sync. No image may hold the blank register beside the
/// lane: before the fix, a cut before the register's group kept S0's blank copy, and the
/// LogStore refused such an image as a segment whose register was lost (about one
/// `log_store_crash_twice` run in twenty, under load).
#[test]
fn a_register_blank_in_s0_is_on_disk_from_its_first_value() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    fs::create_dir_all(root.join("s")).unwrap();
    let write = |rel: &str, bytes: Vec<u8>| fs::write(root.join(rel), bytes).unwrap();
    let mut register = vec![0u8; 2560];
    register[..HEADER_BYTES].fill(0xEE);
    write("s/length.acc", register.clone());
    let s0 = Snapshot::take(root);
    let blank = register.clone();
    register[HEADER_BYTES..HEADER_BYTES + 40].fill(0x01);
    write("s/length.acc", register.clone());
    let mut lane = vec![0u8; 8192];
    lane[..HEADER_BYTES].fill(0xEE);
    write("s/data-00.acc", lane);
    let s1 = Snapshot::take(root);
    let order = FlushOrder::append_only("s");
    for seed in 0..10 {
        for cut in 0..=order.len() {
            let image = Image::build(&ImageSpec {
                durable: &s0,
                newer: vec![&s0, &s1],
                during: Some((&order, cut)),
                granularity: Granularity::Sector,
                mix: Mix::Random(0.5),
                seed,
            });
            let length = fs::read(image.path().join("s/length.acc")).unwrap();
            assert!(
                length != blank,
                "cut {cut}, seed {seed}: a blank register beside a lane"
            );
            assert!(
                length == register,
                "cut {cut}, seed {seed}: a mixed register"
            );
        }
    }
}

/// The image builder itself, on synthetic files: each file's fate follows the cut, mixed
/// units come whole from one version, and a new file keeps its header.
#[test]
fn images_follow_the_flush_order() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    fs::create_dir_all(root.join("s")).unwrap();
    let write = |rel: &str, bytes: Vec<u8>| fs::write(root.join(rel), bytes).unwrap();
    write("s/data-00.acc", vec![0xAA; 16384]);
    write("s/length.acc", vec![0x01; 2560]);
    let s0 = Snapshot::take(root);
    write("s/data-00.acc", vec![0xBB; 16384]);
    let mid = Snapshot::take(root);
    write("s/data-00.acc", vec![0xCC; 16384]);
    write("s/length.acc", vec![0x02; 2560]);
    let mut lane = vec![0xDD; 8192];
    lane[..HEADER_BYTES].fill(0xEE);
    write("s/data-01.acc", lane.clone());
    let s1 = Snapshot::take(root);

    let order = FlushOrder::append_only("s");
    let read = |image: &Image, rel: &str| fs::read(image.path().join(rel)).unwrap();
    // Every 512-byte sector of `bytes` is uniformly one of `allowed`.
    let sectors_in = |bytes: &[u8], allowed: &[u8]| {
        bytes
            .chunks(512)
            .all(|c| allowed.iter().any(|&a| c.iter().all(|&b| b == a)))
    };
    let mut seen_mixed = false;
    for seed in 0..20 {
        for cut in 0..=order.len() {
            let image = Image::build(&ImageSpec {
                durable: &s0,
                newer: vec![&mid, &s1],
                during: Some((&order, cut)),
                granularity: Granularity::Sector,
                mix: Mix::Random(0.5),
                seed,
            });
            let data = read(&image, "s/data-00.acc");
            let length = read(&image, "s/length.acc");
            let new_lane = read(&image, "s/data-01.acc");
            assert_eq!(new_lane.len(), 8192);
            assert_eq!(
                new_lane[..HEADER_BYTES],
                lane[..HEADER_BYTES],
                "header kept"
            );
            let (head, rest) = new_lane.split_at(512);
            assert!(head[HEADER_BYTES..].iter().all(|&b| b == 0 || b == 0xDD));
            match cut {
                0 => {
                    assert!(sectors_in(&data, &[0xAA, 0xBB, 0xCC]));
                    assert_eq!(
                        length,
                        vec![0x01; 2560],
                        "register untouched before its step"
                    );
                    assert!(sectors_in(rest, &[0, 0xDD]));
                    seen_mixed |= data.chunks(512).any(|c| c[0] == 0xAA)
                        && data.chunks(512).any(|c| c[0] != 0xAA);
                }
                1 => {
                    assert_eq!(data, vec![0xCC; 16384], "flushed group is S1");
                    assert!(sectors_in(&length, &[0x01, 0x02]));
                    assert!(sectors_in(rest, &[0, 0xDD]));
                }
                _ => {
                    assert_eq!(data, vec![0xCC; 16384]);
                    assert_eq!(length, vec![0x02; 2560]);
                    assert_eq!(new_lane, lane);
                }
            }
        }
    }
    assert!(seen_mixed, "random mixing never mixed");
    // Pure images, and a crash mid-work that mixes every file.
    for (mix, want) in [(Mix::Old, 0xAA), (Mix::New, 0xCC)] {
        let image = Image::build(&ImageSpec {
            durable: &s0,
            newer: vec![&mid, &s1],
            during: None,
            granularity: Granularity::Page,
            mix,
            seed: 1,
        });
        assert_eq!(read(&image, "s/data-00.acc"), vec![want; 16384]);
    }
}
