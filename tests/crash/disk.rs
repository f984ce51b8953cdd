//! A model of what the device holds, file by file, built from the flushes accretion
//! really makes: for "kill, reopen and work, then power loss".
//!
//! The snapshot harness (`harness.rs`) declares each structure's flush order and assumes
//! a sync flushes everything its structure wrote. That cannot express two processes in a
//! row: a process killed inside a sync leaves writes in the page cache, where the next
//! process reads them; whether they are on the device then depends on what that next
//! process flushed, not on anything it declared. So this model watches every flush
//! through the crate's fault-injection hooks (`accretion::faults`) and keeps, per file
//! (by inode, so renames carry content along), the bytes its last flush covered, and
//! per directory the entries its last fsync covered:
//! - fdatasync/fsync of a file: its durable bytes become what it holds now;
//! - msync of a range: those bytes of it;
//! - fsync of a directory: its durable entries become its current entries;
//! - syncfs: everything under the root, entries and bytes.
//!
//! A *kill* is a flush that fails (the hook returns an error without flushing) after
//! which every flush under the root fails and is not recorded until [`DiskModel::revive`]:
//! the process is dead, whatever its threads still do. The next process then opens the
//! same directory (its page cache is the real files) and works.
//!
//! A *power loss* image holds the durable tree: each durable entry, with its file's
//! durable bytes where each 4 KiB page (or 512-byte sector) may instead hold what the
//! page cache holds now (pages reach the disk at any time after they are written). A
//! current entry not yet durable appears or not, at random, if its bytes were ever
//! flushed. A hook sees a flush before it is made, so bytes written during the flush
//! count as not durable: the model is on the safe side.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use accretion::faults::{self, Flush, HookGuard};
use parking_lot::Mutex;
use rand::Rng;

use crate::harness::{Granularity, Image};

/// One entry of a directory: its inode and whether it is a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    ino: u64,
    dir: bool,
}

/// Which flush kills the process.
type Trigger = Box<dyn FnMut(&Flush<'_>, &str) -> bool + Send>;

#[derive(Default)]
struct State {
    /// Durable bytes by inode.
    bytes: HashMap<u64, Vec<u8>>,
    /// Durable entries by directory (relative path, "" for the root).
    entries: BTreeMap<String, BTreeMap<String, Entry>>,
    dead: bool,
    trigger: Option<Trigger>,
    /// Kills made.
    kills: usize,
    /// For the harness's self-test: syncfs calls are not recorded (as if open made none).
    ignore_file_system: bool,
}

/// The device under one store directory, as the flushes made so far left it.
pub struct DiskModel {
    root: PathBuf,
    state: Arc<Mutex<State>>,
    _hook: HookGuard,
}

impl DiskModel {
    /// Starts modelling `root`, whose current files and entries are taken as durable.
    pub fn start(root: &Path) -> DiskModel {
        let state = Arc::new(Mutex::new(State::default()));
        let root = root.to_path_buf();
        record_tree(&root, &mut state.lock());
        let hook = {
            let (root, state) = (root.clone(), Arc::clone(&state));
            faults::install(move |flush| on_flush(&root, &state, flush))
        };
        DiskModel {
            root,
            state,
            _hook: hook,
        }
    }

    /// Kills the process at the first flush under the root for which `trigger` (given the
    /// flush and the path relative to the root) returns true.
    pub fn kill_when(&self, trigger: impl FnMut(&Flush<'_>, &str) -> bool + Send + 'static) {
        self.state.lock().trigger = Some(Box::new(trigger));
    }

    /// Kills the process now: no flush from here on reaches the device.
    pub fn kill(&self) {
        let mut state = self.state.lock();
        state.dead = true;
        state.kills += 1;
    }

    /// Whether the process was killed.
    pub fn killed(&self) -> bool {
        self.state.lock().dead
    }

    /// A new process: flushes are made and recorded again.
    pub fn revive(&self) {
        let mut state = self.state.lock();
        state.dead = false;
        state.trigger = None;
    }

    /// From now on syncfs calls are made but not recorded: what the disk would hold if
    /// opening a store made none (to show that the checks notice).
    pub fn ignore_file_system_syncs(&self) {
        self.state.lock().ignore_file_system = true;
    }

    /// The disk a power loss now could leave: `mix` is the chance that a unit holding
    /// bytes that are not durable yet reached the disk anyway.
    pub fn power_loss(&self, rng: &mut impl Rng, granularity: Granularity, mix: f64) -> Image {
        let state = self.state.lock();
        let image = Image::empty();
        build_dir(&self.root, "", &state, &image, rng, granularity, mix);
        image
    }
}

fn on_flush(root: &Path, state: &Mutex<State>, flush: &Flush<'_>) -> Option<std::io::Error> {
    let rel = flush.path().strip_prefix(root).ok()?.to_str()?.to_string();
    let mut state = state.lock();
    if state.dead {
        return Some(killed());
    }
    if let Some(trigger) = state.trigger.as_mut()
        && trigger(flush, &rel)
    {
        state.dead = true;
        state.kills += 1;
        return Some(killed());
    }
    match *flush {
        Flush::File { path } => {
            if let (Ok(meta), Ok(bytes)) = (fs::metadata(path), fs::read(path)) {
                state.bytes.insert(meta.ino(), bytes);
            }
        }
        Flush::Range {
            path, offset, len, ..
        } => {
            if let (Ok(meta), Ok(now)) = (fs::metadata(path), fs::read(path)) {
                let durable = state
                    .bytes
                    .entry(meta.ino())
                    .or_insert_with(|| vec![0; now.len()]);
                durable.resize(now.len(), 0);
                let from = usize::try_from(offset).unwrap().min(now.len());
                let to = usize::try_from(offset + len).unwrap().min(now.len());
                durable[from..to].copy_from_slice(&now[from..to]);
            }
        }
        Flush::Dir { path } => {
            let rel = path.strip_prefix(root).ok()?.to_str()?.to_string();
            state.entries.insert(rel, list(path));
        }
        Flush::FileSystem { .. } if !state.ignore_file_system => record_tree(root, &mut state),
        _ => {}
    }
    None
}

fn killed() -> std::io::Error {
    std::io::Error::other("the process was killed here (crash model)")
}

fn list(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) else {
            continue;
        };
        out.insert(
            name,
            Entry {
                ino: meta.ino(),
                dir: meta.is_dir(),
            },
        );
    }
    out
}

/// Takes every entry and byte under `root` as durable.
fn record_tree(root: &Path, state: &mut State) {
    fn walk(path: &Path, rel: &str, state: &mut State) {
        let entries = list(path);
        for (name, entry) in &entries {
            let child = path.join(name);
            let child_rel = join(rel, name);
            if entry.dir {
                walk(&child, &child_rel, state);
            } else if let Ok(bytes) = fs::read(&child) {
                state.bytes.insert(entry.ino, bytes);
            }
        }
        state.entries.insert(rel.to_string(), entries);
    }
    walk(root, "", state);
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn build_dir(
    root: &Path,
    rel: &str,
    state: &State,
    image: &Image,
    rng: &mut impl Rng,
    granularity: Granularity,
    mix: f64,
) {
    let current = list(&root.join(rel));
    let durable = state.entries.get(rel).cloned().unwrap_or_default();
    let mut names: BTreeMap<String, Entry> = BTreeMap::new();
    for (name, entry) in &durable {
        names.insert(name.clone(), *entry);
    }
    for (name, entry) in &current {
        // Not durable yet: the directory block may have reached the disk anyway, but
        // only bytes that were flushed can stand behind it.
        let flushed = entry.dir || state.bytes.contains_key(&entry.ino);
        if !durable.contains_key(name) && flushed && rng.random_bool(0.5) {
            names.insert(name.clone(), *entry);
        }
    }
    for (name, entry) in names {
        let child_rel = join(rel, &name);
        if entry.dir {
            fs::create_dir_all(image.path().join(&child_rel)).expect("create image directory");
            build_dir(root, &child_rel, state, image, rng, granularity, mix);
            continue;
        }
        let old = state.bytes.get(&entry.ino).cloned().unwrap_or_default();
        // The page cache's bytes, if the file is still there under this name.
        let now = match current.get(&name) {
            Some(e) if e.ino == entry.ino => fs::read(root.join(&child_rel)).ok(),
            _ => None,
        };
        let bytes = match now {
            None => old,
            Some(now) => {
                let mut out = old;
                out.resize(now.len(), 0);
                let unit = match granularity {
                    Granularity::Page => 4096,
                    Granularity::Sector => 512,
                };
                for start in (0..now.len()).step_by(unit) {
                    let end = (start + unit).min(now.len());
                    if out[start..end] != now[start..end] && rng.random_bool(mix) {
                        out[start..end].copy_from_slice(&now[start..end]);
                    }
                }
                out
            }
        };
        image.write(&child_rel, &bytes);
    }
}
