//! The byte layout of log records and hint files, and their encoding and decoding. Pure
//! functions over byte slices: no I/O, no store state.
//!
//! A record is one append to a segment and holds one or more operations, so a write batch
//! is one record and lands whole or not at all:
//! ```text
//! record header, 24 bytes
//! 0    8   checksum: XXH3-64 of bytes 8..24 followed by each operation's checksum
//! 8    4   body length in bytes (the operations that follow the header)
//! 12   4   operation count, at least 1
//! 16   8   timestamp: Unix time in milliseconds when the record was written
//! operation, 24 bytes then the key and the value
//! 0    8   checksum: XXH3-64 of bytes 8..end of the operation (checked on every read)
//! 8    1   kind: 1 put, 2 delete, 3 clear
//! 9    1   reserved, 0
//! 10   2   key length
//! 12   4   value length (0 for delete and clear)
//! 16   8   expiry: Unix time in milliseconds, 0 for never
//! 24   ..  key bytes, then value bytes
//! ```
//! The record checksum (over the header and the operation checksums, which cover every
//! operation byte) makes a record (a batch) whole or absent on replay, without hashing
//! the values twice; the operation checksum lets a read check one value without hashing
//! its whole record.
//! A hint file is a sequence of hint records listing a finished segment's operations in
//! order, so replaying it is the same as replaying the segment. Records are kept under
//! about 60 KiB so that they pack lanes without large zero gaps; the hint is usable only
//! if its records are all whole and their entries number the total each one states:
//! ```text
//! hint record header, 48 bytes
//! 0    8   checksum: XXH3-64 of bytes 8..end of the record
//! 8    8   magic "ACCHINT1"
//! 16   8   segment length covered, in bytes
//! 24   8   index of the record's first entry in the hint
//! 32   4   entries in this record
//! 36   4   body length in bytes
//! 40   8   entries in the whole hint
//! entry, 32 bytes then the key
//! 0    1   kind (as above)
//! 1    1   reserved, 0
//! 2    2   key length
//! 4    4   value length
//! 8    8   value offset in the segment
//! 16   8   expiry, as above
//! 24   8   the operation's checksum
//! 32   ..  key bytes
//! ```
//! All integers are little-endian.

use xxhash_rust::xxh3::xxh3_64;

pub(crate) const RECORD_HEADER_BYTES: usize = 24;
pub(crate) const OP_HEADER_BYTES: usize = 24;
pub(crate) const HINT_HEADER_BYTES: usize = 48;
/// A hint record is closed once its body reaches this many bytes.
pub(crate) const HINT_RECORD_BYTES: usize = 60 * 1024;
pub(crate) const HINT_ENTRY_BYTES: usize = 32;
pub(crate) const HINT_MAGIC: [u8; 8] = *b"ACCHINT1";

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Put = 1,
    Delete = 2,
    Clear = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            3 => Some(Kind::Clear),
            _ => None,
        }
    }
}

/// One operation to encode.
#[derive(Clone, Debug)]
pub(crate) struct Op<'a> {
    pub(crate) kind: Kind,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) expires_ms: u64,
}

impl Op<'_> {
    pub(crate) fn encoded_len(&self) -> usize {
        OP_HEADER_BYTES + self.key.len() + self.value.len()
    }
}

/// Bytes a record holding `ops` takes.
pub(crate) fn record_len(ops: &[Op<'_>]) -> usize {
    RECORD_HEADER_BYTES + ops.iter().map(Op::encoded_len).sum::<usize>()
}

/// Writes the record for `ops` into `out`, which is exactly `record_len(ops)` bytes, and
/// returns, for each operation, the offset of its value within the record.
pub(crate) fn encode(ops: &[Op<'_>], timestamp_ms: u64, out: &mut [u8], value_at: &mut Vec<u64>) {
    debug_assert_eq!(out.len(), record_len(ops));
    let body = (out.len() - RECORD_HEADER_BYTES) as u32;
    out[8..12].copy_from_slice(&body.to_le_bytes());
    out[12..16].copy_from_slice(&(ops.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&timestamp_ms.to_le_bytes());
    let mut at = RECORD_HEADER_BYTES;
    for op in ops {
        let start = at;
        let h = &mut out[at..at + OP_HEADER_BYTES];
        h[8] = op.kind as u8;
        h[9] = 0;
        h[10..12].copy_from_slice(&(op.key.len() as u16).to_le_bytes());
        h[12..16].copy_from_slice(&(op.value.len() as u32).to_le_bytes());
        h[16..24].copy_from_slice(&op.expires_ms.to_le_bytes());
        at += OP_HEADER_BYTES;
        out[at..at + op.key.len()].copy_from_slice(op.key);
        at += op.key.len();
        value_at.push(at as u64);
        out[at..at + op.value.len()].copy_from_slice(op.value);
        at += op.value.len();
        let sum = xxh3_64(&out[start + 8..at]);
        out[start..start + 8].copy_from_slice(&sum.to_le_bytes());
    }
    let sum = record_sum(out);
    out[0..8].copy_from_slice(&sum.to_le_bytes());
}

/// The record checksum of a record whose operations are laid out in `record`: XXH3-64 of
/// header bytes 8..24 and each operation's stored checksum, in order. The caller has
/// checked that the operations lie inside the record.
fn record_sum(record: &[u8]) -> u64 {
    let count = u32_at(record, 12) as usize;
    let mut summed = Vec::new();
    let mut one = [0u8; 24];
    let buf: &mut [u8] = if count == 1 {
        &mut one
    } else {
        summed.resize(16 + 8 * count, 0);
        &mut summed
    };
    buf[..16].copy_from_slice(&record[8..24]);
    let mut at = RECORD_HEADER_BYTES;
    for i in 0..count {
        buf[16 + 8 * i..24 + 8 * i].copy_from_slice(&record[at..at + 8]);
        let key_len = usize::from(u16::from_le_bytes([record[at + 10], record[at + 11]]));
        at += OP_HEADER_BYTES + key_len + u32_at(record, at + 12) as usize;
    }
    xxh3_64(buf)
}

/// A decoded operation: offsets are relative to the start of its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodedOp {
    pub(crate) kind: Kind,
    pub(crate) key_at: u64,
    pub(crate) key_len: u64,
    pub(crate) value_at: u64,
    pub(crate) value_len: u64,
    pub(crate) expires_ms: u64,
}

/// What the bytes at a record position hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A record of `len` bytes (header included) whose checksum is yet to be checked.
    Record { len: u64, count: u32 },
    /// All-zero bytes: padding at the end of a lane, if everything after it is zero too.
    Zero,
    /// Neither: damage, or a torn write.
    Bad(&'static str),
}

/// Reads a record header.
pub(crate) fn header(head: &[u8; RECORD_HEADER_BYTES]) -> Header {
    if head.iter().all(|b| *b == 0) {
        return Header::Zero;
    }
    let body = u64::from(u32_at(head, 8));
    let count = u32_at(head, 12);
    if count == 0 {
        return Header::Bad("record has no operations");
    }
    if body < u64::from(count) * OP_HEADER_BYTES as u64 {
        return Header::Bad("record body is shorter than its operation headers");
    }
    Header::Record {
        len: RECORD_HEADER_BYTES as u64 + body,
        count,
    }
}

/// The checksum stored in a record (or hint) header.
pub(crate) fn stored_checksum(record: &[u8]) -> u64 {
    u64_at(record, 0)
}

/// Checks a whole record's checksum and decodes its operations into `out`.
///
/// # Errors
/// A description of what is wrong, for `Corrupted`.
pub(crate) fn decode(record: &[u8], out: &mut Vec<DecodedOp>) -> Result<(), &'static str> {
    out.clear();
    if record.len() < RECORD_HEADER_BYTES {
        return Err("record is shorter than its header");
    }
    let count = u32_at(record, 12);
    let mut at = RECORD_HEADER_BYTES;
    for _ in 0..count {
        let Some(h) = record.get(at..at + OP_HEADER_BYTES) else {
            return Err("operation header runs past the record");
        };
        let kind = Kind::from_byte(h[8]).ok_or("unknown operation kind")?;
        let key_len = usize::from(u16::from_le_bytes([h[10], h[11]]));
        let value_len = u32_at(h, 12) as usize;
        let expires_ms = u64_at(h, 16);
        let key_at = at + OP_HEADER_BYTES;
        let end = key_at + key_len + value_len;
        if end > record.len() {
            return Err("operation runs past the record");
        }
        if !op_intact(&record[at..end]) {
            return Err("operation checksum mismatch");
        }
        out.push(DecodedOp {
            kind,
            key_at: key_at as u64,
            key_len: key_len as u64,
            value_at: (key_at + key_len) as u64,
            value_len: value_len as u64,
            expires_ms,
        });
        at = end;
    }
    if at != record.len() {
        return Err("record body is longer than its operations");
    }
    if record_sum(record) != stored_checksum(record) {
        return Err("record checksum mismatch");
    }
    Ok(())
}

/// Whether an operation's bytes (header, key, value) match its checksum.
pub(crate) fn op_intact(op: &[u8]) -> bool {
    op.len() >= OP_HEADER_BYTES && u64_at(op, 0) == xxh3_64(&op[8..])
}

/// One hint entry: an operation at an absolute position in its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HintEntry {
    pub(crate) kind: Kind,
    pub(crate) key_len: u64,
    pub(crate) value_len: u64,
    pub(crate) value_offset: u64,
    pub(crate) expires_ms: u64,
    pub(crate) op_checksum: u64,
}

/// Appends one hint entry (header and key) to `out`.
pub(crate) fn push_hint(out: &mut Vec<u8>, e: &HintEntry, key: &[u8]) {
    out.push(e.kind as u8);
    out.push(0);
    out.extend_from_slice(&(e.key_len as u16).to_le_bytes());
    out.extend_from_slice(&(e.value_len as u32).to_le_bytes());
    out.extend_from_slice(&e.value_offset.to_le_bytes());
    out.extend_from_slice(&e.expires_ms.to_le_bytes());
    out.extend_from_slice(&e.op_checksum.to_le_bytes());
    out.extend_from_slice(key);
}

/// Where a hint record sits in its hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HintPlace {
    pub(crate) first: u64,
    pub(crate) count: u64,
    pub(crate) total: u64,
}

/// Wraps hint entries (`body`, holding `place.count` of them) with a hint record header
/// for a segment of `covered` bytes.
pub(crate) fn hint_record(body: &[u8], place: HintPlace, covered: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HINT_HEADER_BYTES + body.len());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&HINT_MAGIC);
    out.extend_from_slice(&covered.to_le_bytes());
    out.extend_from_slice(&place.first.to_le_bytes());
    out.extend_from_slice(&(place.count as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&place.total.to_le_bytes());
    out.extend_from_slice(body);
    let sum = xxh3_64(&out[8..]);
    out[0..8].copy_from_slice(&sum.to_le_bytes());
    out
}

/// The length of the hint record starting `bytes` (header included), or `None` for an
/// all-zero header (padding at the end of a lane).
pub(crate) fn hint_record_len(bytes: &[u8]) -> Result<Option<usize>, &'static str> {
    let head = bytes
        .get(..HINT_HEADER_BYTES)
        .ok_or("hint record is shorter than its header")?;
    if head.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    Ok(Some(HINT_HEADER_BYTES + u32_at(head, 36) as usize))
}

/// Checks one hint record and appends its entries with their keys to `out`, or says why
/// it cannot be used. `covered` must equal the segment's length: a hint for a different
/// length describes another segment.
pub(crate) fn decode_hint<'a>(
    bytes: &'a [u8],
    covered: u64,
    out: &mut Vec<(HintEntry, &'a [u8])>,
) -> Result<HintPlace, &'static str> {
    if bytes.len() < HINT_HEADER_BYTES {
        return Err("hint is shorter than its header");
    }
    if bytes[8..16] != HINT_MAGIC {
        return Err("hint has the wrong magic");
    }
    if xxh3_64(&bytes[8..]) != stored_checksum(bytes) {
        return Err("hint checksum mismatch");
    }
    if u64_at(bytes, 16) != covered {
        return Err("hint covers another segment length");
    }
    let place = HintPlace {
        first: u64_at(bytes, 24),
        count: u64::from(u32_at(bytes, 32)),
        total: u64_at(bytes, 40),
    };
    if u32_at(bytes, 36) as usize != bytes.len() - HINT_HEADER_BYTES {
        return Err("hint body length mismatch");
    }
    let mut at = HINT_HEADER_BYTES;
    for _ in 0..place.count {
        let Some(h) = bytes.get(at..at + HINT_ENTRY_BYTES) else {
            return Err("hint entry runs past the hint");
        };
        let kind = Kind::from_byte(h[0]).ok_or("unknown kind in hint")?;
        let key_len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let entry = HintEntry {
            kind,
            key_len: key_len as u64,
            value_len: u64::from(u32_at(h, 4)),
            value_offset: u64_at(h, 8),
            expires_ms: u64_at(h, 16),
            op_checksum: u64_at(h, 24),
        };
        let key_at = at + HINT_ENTRY_BYTES;
        let Some(key) = bytes.get(key_at..key_at + key_len) else {
            return Err("hint key runs past the hint");
        };
        if entry
            .value_offset
            .checked_add(entry.value_len)
            .is_none_or(|end| end > covered)
        {
            return Err("hint points past its segment");
        }
        out.push((entry, key));
        at = key_at + key_len;
    }
    if at != bytes.len() {
        return Err("hint is longer than its entries");
    }
    Ok(place)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op<'static>> {
        vec![
            Op {
                kind: Kind::Put,
                key: b"alpha",
                value: b"one",
                expires_ms: 0,
            },
            Op {
                kind: Kind::Delete,
                key: b"beta",
                value: b"",
                expires_ms: 0,
            },
            Op {
                kind: Kind::Put,
                key: b"",
                value: b"empty key",
                expires_ms: 77,
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let ops = ops();
        let mut buf = vec![0u8; record_len(&ops)];
        let mut value_at = Vec::new();
        encode(&ops, 1234, &mut buf, &mut value_at);
        let head: [u8; RECORD_HEADER_BYTES] = buf[..RECORD_HEADER_BYTES].try_into().unwrap();
        assert_eq!(
            header(&head),
            Header::Record {
                len: buf.len() as u64,
                count: 3
            }
        );
        let mut out = Vec::new();
        decode(&buf, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        for ((d, op), at) in out.iter().zip(&ops).zip(&value_at) {
            assert_eq!(d.kind, op.kind);
            assert_eq!(&buf[d.key_at as usize..][..d.key_len as usize], op.key);
            assert_eq!(
                &buf[d.value_at as usize..][..d.value_len as usize],
                op.value
            );
            assert_eq!(d.value_at, *at);
            assert_eq!(d.expires_ms, op.expires_ms);
        }
    }

    #[test]
    fn every_damaged_byte_is_caught() {
        let ops = ops();
        let mut buf = vec![0u8; record_len(&ops)];
        encode(&ops, 1, &mut buf, &mut Vec::new());
        let mut out = Vec::new();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, &mut out).is_err(), "flip at {i} not caught");
        }
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], &mut out).is_err());
        }
        assert_eq!(header(&[0; RECORD_HEADER_BYTES]), Header::Zero);
    }

    #[test]
    fn hints_round_trip_and_refuse_damage() {
        let mut body = Vec::new();
        let e = HintEntry {
            kind: Kind::Put,
            key_len: 3,
            value_len: 5,
            value_offset: 40,
            expires_ms: 9,
            op_checksum: 0xfeed,
        };
        push_hint(&mut body, &e, b"key");
        let place = HintPlace {
            first: 3,
            count: 1,
            total: 4,
        };
        let file = hint_record(&body, place, 100);
        assert_eq!(hint_record_len(&file), Ok(Some(file.len())));
        let mut got = Vec::new();
        assert_eq!(decode_hint(&file, 100, &mut got), Ok(place));
        assert_eq!(got, vec![(e, &b"key"[..])]);
        assert!(decode_hint(&file, 101, &mut got).is_err());
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(
                decode_hint(&bad, 100, &mut Vec::new()).is_err(),
                "flip at {i} not caught"
            );
        }
    }
}
