//! Opening a B-tree store: the state, the current generation, its newest checkpoint,
//! and the replay of every commit logged after it. Stale generations (a compaction that
//! crashed before or after its switch) are removed here.
//!
//! The log is trusted as the AppendOnly hands it over: its open adopted only records
//! whose frames hold (a prefix of what was appended), and the store directory's open made
//! them durable before anything here acts on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use parking_lot::{Mutex, RwLock};

use super::BTreeOptions;
use super::generation::{Generation, generation_name};
use super::node::{MemPage, NodeRef};
use super::page;
use super::records::{self, Checkpoint};
use super::store::{FORMAT, Inner, Root, STATE_MAGIC, State, Version, WriterState, check_state};
use super::txn::WriteTxn;
use crate::{Dir, Error, Journal, Result, Span};

/// Opens or creates the store `name` in `dir`.
pub(super) fn open(dir: &Dir, name: &str, options: BTreeOptions) -> Result<Arc<Inner>> {
    super::check_page_size(options.page_size)?;
    let state: Journal<State> = Journal::open(dir, &format!("{name}/state"))?;
    let path = state.path().to_path_buf();
    let mut s = state.get();
    let gens = generations(dir, name)?;
    if s.magic == 0 {
        if !gens.is_empty() {
            return Err(Error::corrupted(
                &path,
                0,
                "the state of a B-tree store is missing while its generation logs exist",
            ));
        }
        s = State {
            magic: STATE_MAGIC,
            format: FORMAT,
            page_size: u32::try_from(options.page_size).expect("checked above"),
            generation: 0,
            checkpoint_offset: 0,
            checkpoint_len: 0,
        };
        state.set(s)?;
        state.sync()?;
    } else {
        check_state(&path, &s)?;
        // Every store this build makes has a checkpoint from its creation on (below), so
        // a state without one is a creation cut short: nothing was ever written, and its
        // log (missing, or as the cut left it) is made anew.
        let born = s.generation > 0 || s.checkpoint_len > 0;
        if !born {
            dir.remove(&generation_name(name, 0))?;
        } else if !gens.contains(&s.generation) {
            // Opening would make an empty log in its place (found by review).
            return Err(Error::corrupted(
                &path,
                0,
                format!(
                    "the state names generation {} of the B-tree store, whose log is missing",
                    s.generation
                ),
            ));
        }
    }
    for g in gens {
        if g != s.generation {
            dir.remove(&generation_name(name, g))?;
        }
    }
    let page_size = s.page_size as usize;
    let generation = Arc::new(Generation::open(dir, name, s.generation, page_size)?);
    let (version, checkpoint) = if s.checkpoint_len > 0 {
        let span = Span::new(s.checkpoint_offset, s.checkpoint_len);
        let cp = read_checkpoint(&generation, span, "the state names")?;
        (from_checkpoint(&generation, &cp, 0)?, span)
    } else {
        if !generation.log.is_empty() && s.generation > 0 {
            return Err(Error::corrupted(
                &path,
                0,
                "a compacted generation has no checkpoint in the state",
            ));
        }
        (empty(&generation), Span::new(0, 0))
    };
    let inner = Arc::new(Inner {
        dir: dir.clone(),
        name: name.to_owned(),
        page_size,
        options,
        state,
        current: RwLock::new(Arc::new(version)),
        writer: Mutex::new(WriterState {
            checkpoint_end: checkpoint.end(),
            checkpoint,
            replaying: true,
        }),
        writer_thread: AtomicUsize::new(0),
        snapshots: AtomicU64::new(0),
        poisoned: AtomicBool::new(false),
    });
    replay(&inner)?;
    let mut w = inner.writer.lock();
    w.replaying = false;
    if w.checkpoint.is_empty() && inner.version().seq == 0 {
        // A new store (or a creation cut short): an empty checkpoint, so that the state
        // says from now on that the log exists (a lost log is then `Corrupted`, never an
        // empty store; found by review).
        let v = inner.checkpoint(&mut w, &inner.version())?;
        inner.publish(v);
    }
    drop(w);
    Ok(inner)
}

/// Numbers of the generation logs present under the store.
fn generations(dir: &Dir, name: &str) -> Result<Vec<u64>> {
    let path = dir.path().join(name);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "list a B-tree store's files", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&path, "list a B-tree store's files", e))?;
        let file = entry.file_name();
        let Some(n) = file.to_str().and_then(|f| f.strip_prefix('g')) else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>()
            && entry.path().is_dir()
        {
            out.push(n);
        }
    }
    Ok(out)
}

/// A store with only its default tree, empty.
fn empty(generation: &Arc<Generation>) -> Version {
    let mut trees = std::collections::BTreeMap::new();
    trees.insert(
        Arc::from(""),
        Root {
            node: empty_leaf(generation.page_size),
            len: 0,
            height: 1,
        },
    );
    Version {
        seq: 0,
        generation: Arc::clone(generation),
        trees,
        live_bytes: 0,
        pages: 1,
        mem_pages: 1,
        user_bytes: 0,
        appended_before: 0,
    }
}

fn empty_leaf(page_size: usize) -> NodeRef {
    NodeRef::Mem(Arc::new(MemPage {
        page: page::PageBuf::from_cells(page::LEAF, page_size, []),
        kids: Default::default(),
    }))
}

fn read_checkpoint(generation: &Generation, span: Span, whose: &str) -> Result<Checkpoint> {
    let bad = |what: &str| {
        generation.corrupted(
            span.offset(),
            format!(
                "the checkpoint record {whose} at log offset {}: {what}",
                span.offset()
            ),
        )
    };
    let bytes = generation
        .log
        .get(span)
        .map_err(|_| bad("it lies outside the log"))?;
    match records::check(bytes) {
        Ok(records::KIND_CHECKPOINT) => {}
        Ok(_) => return Err(bad("it is another kind of record")),
        Err(what) => return Err(bad(what)),
    }
    Checkpoint::decode(bytes).map_err(bad)
}

/// The version a checkpoint describes: every root on disk.
fn from_checkpoint(generation: &Arc<Generation>, cp: &Checkpoint, at: u64) -> Result<Version> {
    let mut trees = std::collections::BTreeMap::new();
    for t in &cp.trees {
        if t.height == 0 || t.height as usize > super::tree::HEIGHT_MAX {
            return Err(generation.corrupted(
                at,
                format!("checkpoint names tree {:?} of height {}", t.name, t.height),
            ));
        }
        trees.insert(
            Arc::from(t.name.as_str()),
            Root {
                node: NodeRef::Disk(t.root),
                len: t.len,
                height: t.height,
            },
        );
    }
    if !trees.contains_key("") {
        return Err(generation.corrupted(at, "checkpoint lacks the default tree"));
    }
    Ok(Version {
        seq: cp.seq,
        generation: Arc::clone(generation),
        trees,
        live_bytes: cp.live_bytes,
        pages: cp.pages,
        mem_pages: 0,
        user_bytes: cp.user_bytes,
        appended_before: cp.appended_before,
    })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Applies every transaction committed after the newest checkpoint, in order.
fn replay(inner: &Inner) -> Result<()> {
    let generation = Arc::clone(&inner.version().generation);
    let from = inner.writer.lock().checkpoint_end;
    for rec in generation.log.records(from) {
        let span = rec?;
        let at = span.offset();
        let bytes = generation.log.get(span)?;
        let first = bytes.first().copied().unwrap_or(0);
        if first == page::LEAF || first == page::BRANCH {
            continue;
        }
        let bad = |what: &str| {
            generation.corrupted(at, format!("B-tree log record at offset {at}: {what}"))
        };
        match records::check(bytes).map_err(bad)? {
            records::KIND_VALUE => {}
            records::KIND_COMMIT => {
                let seq = u64_at(bytes, records::HEAD_BYTES);
                let guard = inner.writer.lock();
                let mut txn = WriteTxn::new(inner, guard);
                let expected = inner.version().seq + 1;
                if seq != expected {
                    return Err(bad(&format!(
                        "commit sequence {seq} where {expected} was due"
                    )));
                }
                let ops = bytes
                    .get(records::COMMIT_HEAD_BYTES..)
                    .ok_or_else(|| bad("a commit record shorter than its head"))?;
                txn.replay(ops, at)?;
                txn.finish(false)?;
            }
            records::KIND_CHECKPOINT => {
                let cp = read_checkpoint(&generation, span, "found in the log")?;
                let version = from_checkpoint(&generation, &cp, at)?;
                // A checkpoint of the last commit replayed, or one that is itself a commit
                // (a large transaction's).
                let seq = inner.version().seq;
                if version.seq != seq && version.seq != seq + 1 {
                    return Err(bad(
                        "a checkpoint of another commit than the last one replayed",
                    ));
                }
                let mut w = inner.writer.lock();
                w.checkpoint = span;
                w.checkpoint_end = span.end();
                inner.publish(Arc::new(version));
            }
            _ => return Err(bad("unknown record kind")),
        }
    }
    Ok(())
}
