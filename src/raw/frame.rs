//! Frames: the 16 bytes in front of every record of a format-2 AppendOnly, which make
//! each record prove itself, so that bytes written after the last recorded length can be
//! adopted at open instead of being thrown away. Pure functions; `raw/lanes/arena.rs`
//! places and walks them.
//!
//! ```text
//! frame, 16 bytes, at a multiple of 16
//! 0   8  checksum: XXH3-64 with seed (buffer nonce ^ frame position) of bytes 8..16
//!        followed by the payload (a record's bytes; nothing for the other kinds)
//! 8   4  length: the record's bytes (Record), or the bytes skipped after the frame (Gap);
//!        0 for LaneEnd and Seal
//! 12  4  kind (top 4 bits) | epoch (low 28 bits)
//! ```
//! A record's payload starts right after its frame. The next frame is at the payload's
//! end rounded up to 16 (Record), at the frame's end plus its length (Gap: alignment
//! padding, zeros), or at the next lane's start (LaneEnd: the record after it did not fit
//! in the rest of the lane). Seal ends the buffer. The checksum ties a frame to its buffer
//! (the nonce, random at creation) and to its position; the epoch (the writer's session,
//! taken durably before its first append) tells a stale frame left by an abandoned
//! write from one written after the records before it.

use crate::raw::header::{read_u32, read_u64, write_u32, write_u64};

/// Bytes in a frame.
pub(crate) const FRAME_BYTES: u64 = 16;
/// Frames start at multiples of this.
pub(crate) const FRAME_ALIGN: u64 = 16;
/// The largest epoch a frame can hold.
pub(crate) const EPOCH_MAX: u32 = (1 << 28) - 1;

/// What a frame says follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A record of `len` bytes.
    Record = 1,
    /// `len` bytes of padding, then the next frame.
    Gap = 2,
    /// Nothing more in this lane: the next frame starts the next lane.
    LaneEnd = 3,
    /// Nothing more in this buffer.
    Seal = 4,
}

/// A decoded frame head (bytes 8..16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub kind: Kind,
    pub len: u32,
    pub epoch: u32,
}

/// Writes bytes 8..16 of a frame into `frame` (at least 16 bytes).
pub(crate) fn write_head(frame: &mut [u8], head: Head) {
    debug_assert!(head.epoch <= EPOCH_MAX);
    write_u32(frame, 8, head.len);
    write_u32(frame, 12, (head.kind as u32) << 28 | head.epoch);
}

/// Reads bytes 8..16 of `frame`; `None` for an unknown kind (zeros included).
pub(crate) fn read_head(frame: &[u8]) -> Option<Head> {
    let len = read_u32(frame, 8);
    let word = read_u32(frame, 12);
    let kind = match word >> 28 {
        1 => Kind::Record,
        2 => Kind::Gap,
        3 => Kind::LaneEnd,
        4 => Kind::Seal,
        _ => return None,
    };
    Some(Head {
        kind,
        len,
        epoch: word & EPOCH_MAX,
    })
}

/// The checksum of the frame at `position` whose bytes from 8 on (head, then payload)
/// are `tail`.
pub(crate) fn checksum(nonce: u64, position: u64, tail: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(tail, nonce ^ position)
}

/// Writes the checksum into bytes 0..8 of `frame_and_payload` (the frame, then its
/// payload), whose head is written.
pub(crate) fn seal_checksum(nonce: u64, position: u64, frame_and_payload: &mut [u8]) {
    let sum = checksum(nonce, position, &frame_and_payload[8..]);
    write_u64(frame_and_payload, 0, sum);
}

/// Whether the checksum in bytes 0..8 of `frame_and_payload` holds.
pub(crate) fn holds(nonce: u64, position: u64, frame_and_payload: &[u8]) -> bool {
    read_u64(frame_and_payload, 0) == checksum(nonce, position, &frame_and_payload[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_zeros_are_no_frame() {
        for kind in [Kind::Record, Kind::Gap, Kind::LaneEnd, Kind::Seal] {
            let head = Head {
                kind,
                len: 123_456,
                epoch: EPOCH_MAX,
            };
            let mut f = [0u8; 16];
            write_head(&mut f, head);
            assert_eq!(read_head(&f), Some(head));
        }
        assert_eq!(read_head(&[0u8; 16]), None);
    }

    #[test]
    fn the_checksum_binds_position_nonce_and_bytes() {
        let mut rec = vec![0u8; 16 + 5];
        write_head(
            &mut rec,
            Head {
                kind: Kind::Record,
                len: 5,
                epoch: 3,
            },
        );
        rec[16..].copy_from_slice(b"hello");
        seal_checksum(7, 4096, &mut rec);
        assert!(holds(7, 4096, &rec));
        assert!(!holds(7, 4112, &rec), "another position");
        assert!(!holds(8, 4096, &rec), "another buffer");
        rec[20] ^= 1;
        assert!(!holds(7, 4096, &rec), "another payload");
    }
}
