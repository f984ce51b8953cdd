//! The records of a shard's data log: one per write, each behind its own checksum. They
//! are the shard's truth: its rows are rebuilt from them after an unclean shutdown. This
//! file owns their byte layout and nothing else.

use crate::limits::{SHARDED_KEY_LEN_BYTES_MAX, SHARDED_VALUE_LEN_BYTES_MAX};

// A record, all integers little-endian:
//
//   0      1       2          4            8            12
//   | kind | space | key_len  | value_len  | checksum   | key ... | value ... |
//     u8     u8      u16        u32          u32
//
// `space` says whose key it is: 0 the key-value map's, the others lists' and queues'
// (see `lists.rs`). A batch record (kind 8) holds, as its value, whole records (each
// padded to 16 bytes, the first at 16 bytes into the batch: its key is 4 zero bytes),
// which it makes one write: the log adopts it whole or not at all.
//
// `checksum` is the low half of XXH3-64 of the key and value, seeded with the record's
// first eight bytes, so it covers the whole record. The log's own frames tie a record to
// its position and log; this checksum also catches damage below the log's recorded
// length, which an open does not walk.
/// Bytes of a record's header.
pub(super) const HEADER_BYTES: usize = 12;
const KEY_LEN_AT: usize = 2;
const VALUE_LEN_AT: usize = KEY_LEN_AT + 2;
const CHECKSUM_AT: usize = VALUE_LEN_AT + 4;
const _: () = assert!(CHECKSUM_AT + 4 == HEADER_BYTES);
const _: () = assert!(SHARDED_KEY_LEN_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(SHARDED_VALUE_LEN_BYTES_MAX <= u32::MAX as usize);

/// Bytes of an identity record's key: the store's id and the shard's incarnation.
pub(super) const IDENTITY_BYTES: usize = 16;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Sets its key to its value.
    Put = 1,
    /// Removes its key (no value).
    Delete = 2,
    /// The first record of every shard's log: its key is the store's id and the shard's
    /// incarnation (two u64), so that a log put in the wrong place is refused.
    Identity = 4,
    /// Records written as one: see the layout above.
    Batch = 8,
}

/// The highest key space (see the layout above).
pub(super) const SPACE_MAX: u8 = 5;
/// Bytes of a batch record's key: its records start 16 bytes into it.
pub(super) const BATCH_KEY_BYTES: usize = 4;
/// Bytes of a batch record's value at most: room for one list or queue operation on a
/// value at its limit (the value, three entries' keys and headers, the bounds).
pub(super) const BATCH_BYTES_MAX: usize = SHARDED_VALUE_LEN_BYTES_MAX + (1 << 20);
const _: () = assert!(BATCH_BYTES_MAX <= u32::MAX as usize);
/// Records inside a batch start at multiples of this.
pub(super) const BATCH_ALIGN: usize = 16;
const _: () = assert!(HEADER_BYTES + BATCH_KEY_BYTES == BATCH_ALIGN);

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            4 => Some(Kind::Identity),
            8 => Some(Kind::Batch),
            _ => None,
        }
    }
}

/// Bytes of the record holding `key` and `value`.
pub(super) fn len(key: &[u8], value: &[u8]) -> usize {
    HEADER_BYTES + key.len() + value.len()
}

/// Writes the record into `dest`, which is exactly [`len`] bytes. The caller has checked
/// the key and value against their limits.
pub(super) fn encode(dest: &mut [u8], kind: Kind, space: u8, key: &[u8], value: &[u8]) {
    debug_assert_eq!(dest.len(), len(key, value));
    let key_len = u16::try_from(key.len()).expect("key length checked against its limit");
    let value_len = u32::try_from(value.len()).expect("value length checked against its limit");
    dest[0] = kind as u8;
    dest[1] = space;
    dest[KEY_LEN_AT..VALUE_LEN_AT].copy_from_slice(&key_len.to_le_bytes());
    dest[VALUE_LEN_AT..CHECKSUM_AT].copy_from_slice(&value_len.to_le_bytes());
    dest[HEADER_BYTES..HEADER_BYTES + key.len()].copy_from_slice(key);
    dest[HEADER_BYTES + key.len()..].copy_from_slice(value);
    let sum = checksum(&dest[..CHECKSUM_AT], &dest[HEADER_BYTES..]);
    dest[CHECKSUM_AT..HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
}

/// One record of a batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Op<'a> {
    pub kind: Kind,
    pub space: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Op<'_> {
    fn padded_len(&self) -> usize {
        len(self.key, self.value).next_multiple_of(BATCH_ALIGN)
    }
}

/// Bytes of the batch record holding `ops`.
pub(super) fn batch_len(ops: &[Op<'_>]) -> usize {
    BATCH_ALIGN + ops.iter().map(Op::padded_len).sum::<usize>()
}

/// Writes the batch record holding `ops` into `dest`, exactly [`batch_len`] bytes (zeroed
/// or not); returns where each op's record starts in it.
pub(super) fn encode_batch(dest: &mut [u8], ops: &[Op<'_>]) -> Vec<usize> {
    debug_assert_eq!(dest.len(), batch_len(ops));
    let mut at = BATCH_ALIGN;
    let mut starts = Vec::with_capacity(ops.len());
    for op in ops {
        let n = len(op.key, op.value);
        encode(&mut dest[at..at + n], op.kind, op.space, op.key, op.value);
        dest[at + n..at + op.padded_len()].fill(0);
        starts.push(at);
        at += op.padded_len();
    }
    let inner = u32::try_from(dest.len() - BATCH_ALIGN).expect("a batch's size is checked");
    dest[0] = Kind::Batch as u8;
    dest[1] = 0;
    dest[KEY_LEN_AT..VALUE_LEN_AT].copy_from_slice(&(BATCH_KEY_BYTES as u16).to_le_bytes());
    dest[VALUE_LEN_AT..CHECKSUM_AT].copy_from_slice(&inner.to_le_bytes());
    dest[HEADER_BYTES..BATCH_ALIGN].fill(0);
    let sum = checksum(&dest[..CHECKSUM_AT], &dest[HEADER_BYTES..]);
    dest[CHECKSUM_AT..HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
    starts
}

/// Where the records of the batch record `batch` (checked) start in it, or what is wrong.
pub(super) fn batch_starts(batch: &[u8]) -> Result<Vec<usize>, &'static str> {
    let mut at = BATCH_ALIGN;
    let mut starts = Vec::new();
    while at < batch.len() {
        let h = Header::parse(&batch[at..])?;
        if !matches!(h.kind, Kind::Put | Kind::Delete) {
            return Err("a batch holds a record that is not a put or a delete");
        }
        let end = at
            .checked_add(h.record_len())
            .filter(|&end| end <= batch.len())
            .ok_or("a record runs past its batch's end")?;
        starts.push(at);
        at = end.next_multiple_of(BATCH_ALIGN);
    }
    Ok(starts)
}

fn checksum(head: &[u8], body: &[u8]) -> u32 {
    let seed = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    xxhash_rust::xxh3::xxh3_64_with_seed(body, seed) as u32
}

/// A record's header, read from its first [`HEADER_BYTES`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub kind: Kind,
    pub space: u8,
    pub key_len: usize,
    pub value_len: usize,
    sum: u32,
}

impl Header {
    /// The header at the start of `bytes`, or what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Header, &'static str> {
        let head = bytes
            .get(..HEADER_BYTES)
            .ok_or("shorter than a record header")?;
        let kind = Kind::from_byte(head[0]).ok_or("unknown record kind")?;
        let space = head[1];
        if space > SPACE_MAX {
            return Err("unknown key space");
        }
        let key_len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let value_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[CHECKSUM_AT..].try_into().expect("4 bytes"));
        let value_max = match kind {
            Kind::Batch => BATCH_BYTES_MAX,
            _ => SHARDED_VALUE_LEN_BYTES_MAX,
        };
        if value_len > value_max {
            return Err("value length past its limit");
        }
        let shape_holds = match kind {
            Kind::Put => true,
            Kind::Delete => value_len == 0,
            Kind::Identity => space == 0 && value_len == 0 && key_len == IDENTITY_BYTES,
            Kind::Batch => space == 0 && key_len == BATCH_KEY_BYTES,
        };
        if !shape_holds {
            return Err("a delete, identity or batch record of a shape it cannot have");
        }
        Ok(Header {
            kind,
            space,
            key_len,
            value_len,
            sum,
        })
    }

    /// Bytes of the whole record.
    pub fn record_len(&self) -> usize {
        HEADER_BYTES + self.key_len + self.value_len
    }

    /// Whether `record` (the whole record this header starts) holds its checksum.
    pub fn holds(&self, record: &[u8]) -> bool {
        record.len() == self.record_len()
            && checksum(&record[..CHECKSUM_AT], &record[HEADER_BYTES..]) == self.sum
    }

    /// The key's bytes within the record.
    pub fn key<'a>(&self, record: &'a [u8]) -> &'a [u8] {
        &record[HEADER_BYTES..HEADER_BYTES + self.key_len]
    }

    /// Where the value starts within the record.
    pub fn value_at(&self) -> usize {
        HEADER_BYTES + self.key_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; len(key, value)];
        encode(&mut buf, kind, 0, key, value);
        buf
    }

    #[test]
    fn a_record_round_trips_and_every_flipped_bit_is_caught() {
        let rec = record(Kind::Put, b"key", b"value");
        let h = Header::parse(&rec).unwrap();
        assert_eq!((h.kind, h.key_len, h.value_len), (Kind::Put, 3, 5));
        assert!(h.holds(&rec));
        assert_eq!(h.key(&rec), b"key");
        assert_eq!(&rec[h.value_at()..], b"value");
        for bit in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let caught = Header::parse(&bad).map_or(true, |h| !h.holds(&bad));
            assert!(caught, "flipped bit {bit} went unnoticed");
        }
    }

    #[test]
    fn a_batch_holds_whole_records_at_aligned_starts() {
        let ops = [
            Op {
                kind: Kind::Put,
                space: 2,
                key: b"list-item",
                value: b"value",
            },
            Op {
                kind: Kind::Delete,
                space: 3,
                key: b"gone",
                value: b"",
            },
        ];
        let mut buf = vec![0xAAu8; batch_len(&ops)];
        let starts = encode_batch(&mut buf, &ops);
        let h = Header::parse(&buf).unwrap();
        assert_eq!(h.kind, Kind::Batch);
        assert!(h.holds(&buf));
        assert_eq!(batch_starts(&buf).unwrap(), starts);
        for (op, &at) in ops.iter().zip(&starts) {
            assert_eq!(at % BATCH_ALIGN, 0);
            let inner = Header::parse(&buf[at..]).unwrap();
            let rec = &buf[at..at + inner.record_len()];
            assert!(inner.holds(rec));
            assert_eq!((inner.kind, inner.space), (op.kind, op.space));
            assert_eq!(inner.key(rec), op.key);
        }
        // A batch cut short names the problem.
        assert!(batch_starts(&buf[..buf.len() - 4]).is_err());
    }

    #[test]
    fn shapes_are_checked() {
        let mut bad = record(Kind::Delete, b"k", b"");
        assert_eq!(Header::parse(&bad).unwrap().kind, Kind::Delete);
        bad[VALUE_LEN_AT] = 1;
        assert!(Header::parse(&bad).is_err());
        assert!(Header::parse(&[0u8; HEADER_BYTES - 1]).is_err());
        assert!(Header::parse(&[9u8; HEADER_BYTES]).is_err());
        let id = record(Kind::Identity, &[7u8; IDENTITY_BYTES], b"");
        assert!(Header::parse(&id).unwrap().holds(&id));
        assert!(Header::parse(&record(Kind::Identity, b"short", b"")).is_err());
        let mut spaced = record(Kind::Put, b"k", b"v");
        spaced[1] = SPACE_MAX;
        assert_eq!(Header::parse(&spaced).unwrap().space, SPACE_MAX);
        spaced[1] = SPACE_MAX + 1;
        assert!(Header::parse(&spaced).is_err());
        assert!(Header::parse(&record(Kind::Batch, b"k", b"")).is_err());
    }
}
