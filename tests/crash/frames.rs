//! Reading (and, for the self-test, forging) the frames of a format-2 AppendOnly in a
//! crash image, from outside the crate: what lies right after the recovered end tells
//! whether an image put a valid-looking stale frame in the walk's way.
//!
//! The layout is the one ARCHITECTURE.md and `src/raw/frame.rs` describe: `length.acc` is
//! a register (a 512-byte header page, then four 512-byte slots: sequence u64, the 32-byte
//! value, checksum) whose value holds the nonce at bytes 24..32; lane `i` holds
//! `64 KiB << i` bytes from buffer offset `64 KiB * (2^i - 1)`, its data at file offset
//! 4096; a frame is checksum u64 (XXH3-64 seeded with nonce ^ frame position, over frame
//! bytes 8..16 then the payload), length u32, kind << 28 | epoch u32.

use std::fs;
use std::path::Path;

const LANE_BASE_BYTES: u64 = 64 << 10;
const LANE_DATA_OFFSET: u64 = 4096;
const REGISTER_SLOT_BYTES: usize = 512;
const FRAME_BYTES: u64 = 16;
const KIND_RECORD: u32 = 1;
const EPOCH_MASK: u32 = (1 << 28) - 1;

/// The buffer's nonce, from any written slot of `buf/length.acc` under `root`.
pub fn nonce(root: &Path, buf: &str) -> u64 {
    let bytes = fs::read(root.join(buf).join("length.acc")).expect("read length.acc");
    (0..4)
        .map(|k| REGISTER_SLOT_BYTES * (1 + k))
        .filter(|&at| at + 48 <= bytes.len())
        .filter(|&at| u64_at(&bytes, at) != 0)
        .max_by_key(|&at| u64_at(&bytes, at))
        .map(|at| u64_at(&bytes, at + 8 + 24))
        .expect("a written slot")
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The lane holding buffer offset `at`, and the offset in its file.
pub fn locate(at: u64) -> (usize, u64) {
    let lane = (at / LANE_BASE_BYTES + 1).ilog2() as usize;
    let start = LANE_BASE_BYTES * ((1 << lane) - 1);
    (lane, LANE_DATA_OFFSET + at - start)
}

fn lane_path(root: &Path, buf: &str, lane: usize) -> std::path::PathBuf {
    root.join(buf).join(format!("data-{lane:02}.acc"))
}

/// A record frame found at a buffer position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub len: u32,
    pub epoch: u32,
    /// The checksum holds (over the head and the payload).
    pub holds: bool,
}

/// The record frame at buffer position `at` of `buf` under `root`, if a record frame
/// (any checksum) lies there in an existing lane.
pub fn record_frame(root: &Path, buf: &str, nonce: u64, at: u64) -> Option<Frame> {
    let (lane, pos) = locate(at);
    let file = fs::read(lane_path(root, buf, lane)).ok()?;
    let pos = usize::try_from(pos).ok()?;
    let head = file.get(pos..pos + FRAME_BYTES as usize)?;
    let (len, word) = (u32_at(head, 8), u32_at(head, 12));
    if word >> 28 != KIND_RECORD {
        return None;
    }
    let end = pos + FRAME_BYTES as usize + len as usize;
    let holds = file.get(pos + 8..end).is_some_and(|tail| {
        u64_at(head, 0) == xxhash_rust::xxh3::xxh3_64_with_seed(tail, nonce ^ at)
    });
    Some(Frame {
        len,
        epoch: word & EPOCH_MASK,
        holds,
    })
}

/// Rewrites the epoch of the record frame at `at` and its checksum, as a writer that
/// reused an epoch would have written it: for the self-test.
pub fn forge_epoch(root: &Path, buf: &str, nonce: u64, at: u64, epoch: u32) {
    let (lane, pos) = locate(at);
    let path = lane_path(root, buf, lane);
    let mut file = fs::read(&path).expect("read lane");
    let pos = usize::try_from(pos).unwrap();
    let len = u32_at(&file, pos + 8) as usize;
    let word = (KIND_RECORD << 28) | epoch;
    file[pos + 12..pos + 16].copy_from_slice(&word.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64_with_seed(&file[pos + 8..pos + 16 + len], nonce ^ at);
    file[pos..pos + 8].copy_from_slice(&sum.to_le_bytes());
    fs::write(&path, file).expect("write lane");
}

#[test]
fn lanes_are_located_like_the_crate_does() {
    assert_eq!(locate(0), (0, 4096));
    assert_eq!(locate(LANE_BASE_BYTES - 1), (0, 4096 + LANE_BASE_BYTES - 1));
    assert_eq!(locate(LANE_BASE_BYTES), (1, 4096));
    assert_eq!(locate(3 * LANE_BASE_BYTES), (2, 4096));
    assert_eq!(locate(7 * LANE_BASE_BYTES + 5), (3, 4096 + 5));
}
