//! Crash images of a format-2 AppendOnly: framed records, adopted past the recorded
//! length at open, the length recorded lazily.
//!
//! The contract checked on every image: the records read back (walking every frame from
//! offset 0) are a prefix of the records appended, in order, at their spans, with their
//! bytes; the prefix holds at least every record a sync that returned made durable and
//! at most the records appended before the crash; an image with nothing unsynced on
//! disk (`Mix::Old`) holds exactly the synced ones, an image with everything on disk
//! (`Mix::New`: a kill, the page cache kept) holds every record appended. The buffer
//! then still works: an append lands past the recovered end and survives a reopen.
//!
//! Scenarios (image classes):
//! - `append_only_crash_images`: crashes during a sync at every cut (0: during the data
//!   flush, the commit; 1: between the data flush and the register write, which half
//!   the syncs make here with `sync_recorded`; 2: after both) and mid-work;
//! - `append_only_lazy_length_crash_images`: records large enough that plain syncs
//!   record the length lazily (the tail reached 4 MiB); crashes cut between such a
//!   sync's data flush and its register write, and at random;
//! - `append_only_torn_tail_images`: everything on disk but one sector of one unsynced
//!   record (a torn record in the adopted tail): adoption ends right before it;
//! - `append_only_crash_twice`: crash, recover, append records of the lengths the crash
//!   lost (so that their frames land where stale frames of the first life lie), crash
//!   again; the images count how often a valid stale frame lay right after the recovered
//!   end (it must be refused: its epoch is older).

use std::collections::VecDeque;
use std::path::Path;

use accretion::{AppendOnly, Dir, Span};
use rand::Rng;

use crate::harness::{Crash, FlushOrder, Granularity, History, Image, ImageSpec, Mix, Replay};
use crate::{Counts, frames, in_bounds, leftover_lane_tmp, open_dir, random_bytes, store};

const CRASH_IMAGES: usize = 500;
const LAZY_IMAGES: usize = 60;
const TORN_IMAGES: usize = 150;
const SECOND_LIVES: usize = 4;
const SECOND_LIFE_IMAGES: usize = 80;
/// The tail past the recorded length at which a sync records the length
/// (`TAIL_RECORD_BYTES` in `src/primitives/append_only.rs`).
const TAIL_RECORD_BYTES: u64 = 4 << 20;
/// The buffer's name in its store directory.
const NAME: &str = "buf";

/// One appended record: where it landed, its bytes, and the alignment asked for.
#[derive(Clone, Debug)]
pub struct Rec {
    pub span: Span,
    pub bytes: Vec<u8>,
    pub align: usize,
}

/// A record size: mostly small, some filling much of a lane, a few larger than the first
/// lanes (64 and 128 KiB), so that records skip to new lanes.
fn record_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100) {
        0..70 => rng.random_range(0..2_000),
        70..90 => rng.random_range(2_000..20_000),
        90..97 => rng.random_range(20_000..60_000),
        _ => rng.random_range(60_000..140_000),
    }
}

/// Appends a record of `len` bytes (random content) aligned to `align` to `buf` and to
/// `recs`.
fn append(rng: &mut impl Rng, buf: &AppendOnly, recs: &mut Vec<Rec>, len: usize, align: usize) {
    let bytes = random_bytes(len, rng);
    let span = if align > 1 {
        buf.append_aligned(&bytes, align).expect("append_aligned")
    } else {
        buf.append(&bytes).expect("append")
    };
    let last_end = recs.last().map_or(0, |r| r.span.end());
    assert!(span.offset() >= last_end, "append went backwards");
    assert_eq!(buf.len(), span.end(), "len is the last record's end");
    recs.push(Rec { span, bytes, align });
}

/// The shape of an [`append_only_rounds`] workload.
struct Rounds {
    syncs: usize,
    /// Chance that a sync is `sync_recorded` (the register written) rather than `sync`.
    recorded: f64,
    /// Record lengths to draw from.
    len: fn(&mut rand::rngs::StdRng) -> usize,
}

/// Runs `plan.syncs` rounds of 1 to 5 appends each followed by a sync, sometimes
/// snapshotting mid-round, then a few unsynced appends. Records of the lengths and
/// alignments in `again` come first.
fn append_only_rounds(
    rng: &mut rand::rngs::StdRng,
    history: &mut History,
    counts: &mut Counts,
    buf: &AppendOnly,
    recs: &mut Vec<Rec>,
    plan: &Rounds,
    again: &mut VecDeque<(usize, usize)>,
) {
    let mut one = |rng: &mut rand::rngs::StdRng, recs: &mut Vec<Rec>| match again.pop_front() {
        Some((len, align)) => append(rng, buf, recs, len, align),
        None => {
            let len = (plan.len)(rng);
            let align = if rng.random_bool(0.15) {
                [8, 64, 4096][rng.random_range(0..3)]
            } else {
                1
            };
            append(rng, buf, recs, len, align);
        }
    };
    for _ in 0..plan.syncs {
        for _ in 0..rng.random_range(1..=5) {
            one(rng, recs);
            if rng.random_bool(0.15) {
                counts.mid(history, recs.len());
            }
        }
        if rng.random_bool(plan.recorded) {
            buf.sync_recorded().expect("sync_recorded");
        } else {
            buf.sync().expect("sync");
        }
        counts.synced(history, recs.len());
        assert_eq!(buf.durable_len(), buf.len());
    }
    for _ in 0..3 {
        one(rng, recs);
    }
    counts.mid(history, recs.len());
}

/// Opens the buffer in `path` and walks its records: they must be a prefix of `recs`.
/// Returns the buffer and how many records it holds.
fn recover(dir: &Dir, recs: &[Rec]) -> Result<(AppendOnly, usize), String> {
    let buf = AppendOnly::open(dir, NAME).map_err(|e| format!("AppendOnly::open: {e}"))?;
    let mut k = 0;
    for item in buf.records(0) {
        let span = item.map_err(|e| format!("walking record {k}: {e}"))?;
        let Some(want) = recs.get(k) else {
            return Err(format!(
                "record {k} at {span:?} was never appended ({} were)",
                recs.len()
            ));
        };
        if span != want.span {
            return Err(format!(
                "record {k} at {span:?}, but it was appended at {:?}",
                want.span
            ));
        }
        let got = buf.get(span).map_err(|e| format!("get record {k}: {e}"))?;
        if got != &want.bytes[..] {
            let i = got.iter().zip(&want.bytes).position(|(a, b)| a != b);
            return Err(format!(
                "record {k} at {span:?} holds bytes never written (first differing at {i:?})"
            ));
        }
        k += 1;
    }
    let end = k.checked_sub(1).map_or(0, |i| recs[i].span.end());
    if buf.len() != end {
        return Err(format!(
            "len {} but the {k} records recovered end at {end}",
            buf.len()
        ));
    }
    if buf.durable_len() != buf.len() {
        return Err(format!(
            "durable_len {} != len {}",
            buf.durable_len(),
            buf.len()
        ));
    }
    Ok((buf, k))
}

/// Checks the image at `path`: a prefix of `recs` of `lo..=hi` records, and a buffer that
/// still works. `inspect` sees the image with the recovered count before anything is
/// written to it.
pub fn check_append_only(
    path: &Path,
    recs: &[Rec],
    lo: usize,
    hi: usize,
    inspect: &mut dyn FnMut(&Path, &[Rec], usize),
) -> Result<usize, String> {
    let dir = open_dir(path)?;
    let (buf, k) = recover(&dir, recs)?;
    in_bounds(k, lo, hi, "records")?;
    inspect(path, recs, k);
    let len = buf.len();
    let span = buf
        .append(b"after recovery")
        .map_err(|e| format!("append after recovery: {e}"))?;
    if span.offset() < len || buf.get(span).ok() != Some(&b"after recovery"[..]) {
        return Err(format!("append after recovery landed badly: {span:?}"));
    }
    buf.sync()
        .map_err(|e| format!("sync after recovery: {e}"))?;
    drop(buf);
    let buf = AppendOnly::open(&dir, NAME).map_err(|e| format!("reopen after recovery: {e}"))?;
    let spans: Vec<Span> = buf
        .records(0)
        .collect::<accretion::Result<_>>()
        .map_err(|e| format!("walk after recovery: {e}"))?;
    if spans.len() != k + 1 || spans.last() != Some(&span) {
        return Err(format!(
            "after recovery, an append and a reopen: {} records, expected {}",
            spans.len(),
            k + 1
        ));
    }
    Ok(k)
}

fn nothing(_: &Path, _: &[Rec], _: usize) {}

fn small(rng: &mut rand::rngs::StdRng) -> usize {
    record_len(rng)
}

/// A fresh buffer worked by `plan`: its history, counts and records.
fn workload(replay: &mut Replay, plan: &Rounds) -> (tempfile::TempDir, History, Counts, Vec<Rec>) {
    let (tmp, dir) = store();
    let buf = AppendOnly::open(&dir, NAME).expect("open");
    // The epoch of this session is taken durably at creation: S0 of every crash holds it.
    let mut history = History::new(tmp.path());
    let mut counts = Counts::new(0);
    let mut recs = Vec::new();
    append_only_rounds(
        &mut replay.rng,
        &mut history,
        &mut counts,
        &buf,
        &mut recs,
        plan,
        &mut VecDeque::new(),
    );
    drop((buf, dir));
    (tmp, history, counts, recs)
}

/// Syncs of `history` that wrote `buf/length.acc` (recorded the length).
fn recording_syncs(history: &History) -> Vec<usize> {
    let length = |s: usize| history.after_sync(s).file(&format!("{NAME}/length.acc"));
    (1..=history.syncs())
        .filter(|&s| length(s) != length(s - 1))
        .collect()
}

#[test]
fn append_only_crash_images() {
    let mut replay = Replay::new("append_only_crash_images");
    let plan = Rounds {
        syncs: 30,
        recorded: 0.5,
        len: small,
    };
    let (_tmp, history, counts, recs) = workload(&mut replay, &plan);
    let order = FlushOrder::append_only(NAME);
    let recorded = recording_syncs(&history);
    assert!(
        recorded.len() >= 5,
        "syncs that recorded the length: {recorded:?}"
    );
    let crashes: Vec<Crash> = (0..CRASH_IMAGES)
        .map(|n| history.random_crash(&mut replay.rng, &order, n))
        .collect();
    crate::check_prefix_crashes(
        &mut replay,
        &history,
        &counts,
        &order,
        crashes,
        |path, lo, hi| check_append_only(path, &recs, lo, hi, &mut nothing),
    );
}

/// Plain syncs only, of records of 150 to 700 KiB: the length is recorded when the tail
/// reaches 4 MiB, inside an ordinary sync. Half the images cut such a sync between its
/// data flush and its register write (the register torn, old or new).
#[test]
fn append_only_lazy_length_crash_images() {
    let mut replay = Replay::new("append_only_lazy_length_crash_images");
    let plan = Rounds {
        syncs: 12,
        recorded: 0.0,
        len: |rng| rng.random_range(150_000..700_000),
    };
    let (_tmp, history, counts, recs) = workload(&mut replay, &plan);
    let total = recs.last().map_or(0, |r| r.span.end());
    assert!(total > 2 * TAIL_RECORD_BYTES, "{total} bytes appended");
    let recorded = recording_syncs(&history);
    assert!(
        recorded.len() >= 2,
        "plain syncs that recorded the length: {recorded:?}"
    );
    let order = FlushOrder::append_only(NAME);
    let rng = &mut replay.rng;
    let crashes: Vec<Crash> = (0..LAZY_IMAGES)
        .map(|n| {
            if n % 2 == 0 {
                let s = recorded[rng.random_range(0..recorded.len())];
                Crash::random(rng, history.after_sync_point(s), Some(1))
            } else {
                history.random_crash(rng, &order, n / 2)
            }
        })
        .collect();
    crate::check_prefix_crashes(
        &mut replay,
        &history,
        &counts,
        &order,
        crashes,
        |path, lo, hi| check_append_only(path, &recs, lo, hi, &mut nothing),
    );
}

/// Everything written reached the disk but one 512-byte sector of one unsynced record,
/// which holds what it held at the last sync: adoption stops right before that record,
/// though every later record is intact.
#[test]
fn append_only_torn_tail_images() {
    let mut replay = Replay::new("append_only_torn_tail_images");
    let plan = Rounds {
        syncs: 30,
        recorded: 0.5,
        len: small,
    };
    let (_tmp, history, counts, recs) = workload(&mut replay, &plan);
    // Mid-work points with unsynced records: (point, synced count, count at the point).
    let points: Vec<(usize, usize, usize)> = (1..counts.at_point.len())
        .filter(|&at| !history.point(at).after_sync)
        .map(|at| {
            let s = history.point(at).syncs;
            (at, s, at)
        })
        .filter(|&(at, s, _)| counts.at_point[at] > counts.at_sync[s])
        .collect();
    assert!(points.len() >= 3, "mid-work points with unsynced records");
    let rng = &mut replay.rng;
    let (mut built, mut later_intact) = (0, 0);
    for n in 0..TORN_IMAGES {
        let (at, s, _) = points[rng.random_range(0..points.len())];
        let (lo, hi) = (counts.at_sync[s], counts.at_point[at]);
        let j = rng.random_range(lo..hi);
        let (old, new) = (history.after_sync(s), &history.point(at).snapshot);
        let seed = rng.random();
        let image = Image::build(&ImageSpec {
            durable: old,
            newer: vec![new],
            during: None,
            granularity: Granularity::Sector,
            mix: Mix::New,
            seed,
        });
        let Some(i) = tear(&image, old, new, &recs[j], &mut *rng) else {
            continue; // nothing of it differs from the last sync's disk alone
        };
        built += 1;
        later_intact += usize::from(j + 1 < hi);
        replay.context = format!(
            "checking torn image {n}: point {at}, record {j} of {lo}..{hi} torn at sector {i} \
             of its lane, image seed {seed}"
        );
        if let Err(e) = check_append_only(image.path(), &recs, j, j, &mut nothing) {
            panic!("{}: {e}", replay.context);
        }
    }
    eprintln!(
        "append_only_torn_tail_images: seed {}: {built} images with a torn unsynced record, \
         {later_intact} of them with intact records after it",
        replay.seed
    );
    assert!(built > TORN_IMAGES / 2, "only {built} torn images built");
}

/// Takes one 512-byte sector of record `rec` (frame or payload) in `image` back to what
/// it held in `old` (the last sync's disk; `new` is the crash's), choosing one where only
/// this record differs between the two: the image of a power loss that wrote back
/// every page but that sector. Returns the sector's index in its lane file, or `None` if
/// there is no such sector.
fn tear(
    image: &Image,
    old: &crate::harness::Snapshot,
    new: &crate::harness::Snapshot,
    rec: &Rec,
    rng: &mut impl Rng,
) -> Option<usize> {
    let (lane, from) = frames::locate(rec.span.offset() - 16);
    let to = from + 16 + rec.span.len();
    let rel = format!("{NAME}/data-{lane:02}.acc");
    let now = new.file(&rel).expect("the record's lane");
    let then = old.file(&rel);
    // Bytes of the lane at the last sync (zeros where the lane did not exist yet).
    let then_at = |x: usize| then.and_then(|t| t.get(x)).copied().unwrap_or(0);
    let (from, to) = (from as usize, to as usize);
    let sectors: Vec<usize> = (from / 512..to.div_ceil(512))
        .filter(|&i| {
            let r = i * 512..((i + 1) * 512).min(now.len());
            // Only this record changes: outside it, the sector is as at the last sync.
            r.clone().any(|x| then_at(x) != now[x])
                && r.clone()
                    .filter(|x| !(from..to).contains(x))
                    .all(|x| then_at(x) == now[x])
        })
        .collect();
    let &i = sectors.get(rng.random_range(0..sectors.len().max(1)))?;
    let mut bytes = now.to_vec();
    let r = i * 512..((i + 1) * 512).min(now.len());
    for (x, b) in bytes[r.clone()].iter_mut().enumerate() {
        *b = then_at(r.start + x);
    }
    image.write(&rel, &bytes);
    Some(i)
}

/// Crash, recover (checked), then append records of the lengths and alignments the crash
/// lost, so that their frames land exactly where the first life's frames lie (the stale
/// frames of an abandoned write), then random ones; crash again. The lost records' stale
/// frames are valid-looking (their checksums hold): every image that puts one right
/// after the recovered end checks that it is refused.
#[test]
fn append_only_crash_twice() {
    let mut replay = Replay::new("append_only_crash_twice");
    let plan = Rounds {
        syncs: 15,
        recorded: 0.5,
        len: small,
    };
    let (_tmp, first, counts, recs) = workload(&mut replay, &plan);
    let order = FlushOrder::append_only(NAME);
    let mut stale_after_end = 0;
    for life in 0..SECOND_LIVES {
        // Every other life starts from a kill's disk at the last point (mid-work) with one
        // sector of the first unsynced record torn: the records after it stay intact,
        // valid-looking stale frames past the recovered end.
        let mut crash = if life % 2 == 0 {
            let mut crash = Crash::random(&mut replay.rng, counts.at_point.len() - 1, None);
            crash.mix = Mix::New;
            crash
        } else {
            let n = replay.rng.random_range(0..1000);
            first.random_crash(&mut replay.rng, &order, n)
        };
        let image = first.image(&crash, &order);
        if life % 2 == 0 {
            let s = first.syncs();
            let (old, new) = (first.after_sync(s), &first.point(crash.at).snapshot);
            if tear(&image, old, new, &recs[counts.at_sync[s]], &mut replay.rng).is_some() {
                crash.mix = Mix::Random(1.0); // bounds of a mixed image
            }
        }
        replay.context = format!(
            "recovering life {life} from {crash} (torn: {})",
            life % 2 == 0
        );
        leftover_lane_tmp(&image, NAME, "data", &mut replay.rng);
        let (lo, hi) = counts.bounds(&first, &crash, &order);
        let dir = Dir::open(image.path()).expect("open first crash image");
        let (buf, k) = recover(&dir, &recs).unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        in_bounds(k, lo, hi, "records").unwrap_or_else(|e| panic!("{}: {e}", replay.context));
        // The records the crash lost, whose bytes may lie past the recovered end.
        let mut again: VecDeque<(usize, usize)> = recs[k..counts.at_point[crash.at]]
            .iter()
            .map(|r| (r.bytes.len(), r.align))
            .collect();
        let mut recs2 = recs[..k].to_vec();
        // This session's epoch is taken (durably) by its first append: do it before the
        // history starts, so that S0 of every second crash holds it.
        let (len, align) = again.pop_front().unwrap_or((100, 1));
        append(&mut replay.rng, &buf, &mut recs2, len, align);
        buf.sync().expect("sync");
        let mut second = History::new(image.path());
        let mut counts2 = Counts::new(recs2.len());
        append_only_rounds(
            &mut replay.rng,
            &mut second,
            &mut counts2,
            &buf,
            &mut recs2,
            &Rounds {
                syncs: 10,
                recorded: 0.5,
                len: small,
            },
            &mut again,
        );
        drop((buf, dir));
        // One in four images cuts the second life's first sync in its data flush: its
        // durable state is the open's, with the stale frames past it, and the records
        // laid over them are not durable yet.
        let crashes: Vec<Crash> = (0..SECOND_LIFE_IMAGES)
            .map(|n| match n % 4 {
                0 => Crash::random(&mut replay.rng, second.after_sync_point(1), Some(0)),
                _ => second.random_crash(&mut replay.rng, &order, n),
            })
            .collect();
        let mut inspect = |path: &Path, recs: &[Rec], k: usize| {
            if k == 0 {
                return;
            }
            let nonce = frames::nonce(path, NAME);
            let last = recs[k - 1].span;
            let mine = frames::record_frame(path, NAME, nonce, last.offset() - 16);
            let next = frames::record_frame(path, NAME, nonce, last.end().next_multiple_of(16));
            if let (Some(mine), Some(next)) = (mine, next)
                && next.holds
                && next.epoch < mine.epoch
            {
                stale_after_end += 1;
            }
        };
        crate::check_prefix_crashes(
            &mut replay,
            &second,
            &counts2,
            &order,
            crashes,
            |path, lo, hi| check_append_only(path, &recs2, lo, hi, &mut inspect),
        );
    }
    eprintln!(
        "append_only_crash_twice: seed {}: {stale_after_end} second-crash images held a valid \
         stale frame right after the recovered end (refused)",
        replay.seed
    );
}
