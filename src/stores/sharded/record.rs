//! The records of a shard's data log: one per write, each behind its own checksum. They
//! are the shard's truth: its rows are rebuilt from them after an unclean shutdown. This
//! file owns their byte layout and nothing else.

use crate::limits::{SHARDED_KEY_LEN_BYTES_MAX, SHARDED_VALUE_LEN_BYTES_MAX};

// A record, all integers little-endian:
//
//   0      1      2          4            8            12
//   | kind | zero | key_len  | value_len  | checksum   | key ... | value ... |
//     u8     u8     u16        u32          u32
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
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            4 => Some(Kind::Identity),
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
pub(super) fn encode(dest: &mut [u8], kind: Kind, key: &[u8], value: &[u8]) {
    debug_assert_eq!(dest.len(), len(key, value));
    let key_len = u16::try_from(key.len()).expect("key length checked against its limit");
    let value_len = u32::try_from(value.len()).expect("value length checked against its limit");
    dest[0] = kind as u8;
    dest[1] = 0;
    dest[KEY_LEN_AT..VALUE_LEN_AT].copy_from_slice(&key_len.to_le_bytes());
    dest[VALUE_LEN_AT..CHECKSUM_AT].copy_from_slice(&value_len.to_le_bytes());
    dest[HEADER_BYTES..HEADER_BYTES + key.len()].copy_from_slice(key);
    dest[HEADER_BYTES + key.len()..].copy_from_slice(value);
    let sum = checksum(&dest[..CHECKSUM_AT], &dest[HEADER_BYTES..]);
    dest[CHECKSUM_AT..HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
}

fn checksum(head: &[u8], body: &[u8]) -> u32 {
    let seed = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    xxhash_rust::xxh3::xxh3_64_with_seed(body, seed) as u32
}

/// A record's header, read from its first [`HEADER_BYTES`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub kind: Kind,
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
        if head[1] != 0 {
            return Err("reserved header byte is not zero");
        }
        let key_len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let value_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[CHECKSUM_AT..].try_into().expect("4 bytes"));
        if value_len > SHARDED_VALUE_LEN_BYTES_MAX {
            return Err("value length past its limit");
        }
        let shape_holds = match kind {
            Kind::Put => true,
            Kind::Delete => value_len == 0,
            Kind::Identity => value_len == 0 && key_len == IDENTITY_BYTES,
        };
        if !shape_holds {
            return Err("a delete or identity record carries bytes it cannot have");
        }
        Ok(Header {
            kind,
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
        encode(&mut buf, kind, key, value);
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
    }
}
