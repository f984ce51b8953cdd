//! The 64-byte header that starts every file the crate writes, and the checksum it uses.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"ACCRETN\0"
//!      8     4  kind             u32 LE, see `Kind`
//!     12     4  format version   u32 LE
//!     16    40  params           5 x u64 LE, meaning set by the kind
//!     56     8  checksum         u64 LE, XXH3-64 (seed 0) of bytes 0..56
//! ```
//! This module knows nothing about what the params mean; each file's owner does.

use std::path::Path;

use crate::error::{Error, Result};

/// Magic bytes at offset 0 of every file.
pub(crate) const MAGIC: [u8; 8] = *b"ACCRETN\0";
/// The format version this build writes and the newest it reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Number of kind-specific `u64` parameters in a header.
pub(crate) const PARAMS: usize = 5;

const MAGIC_AT: usize = 0;
const KIND_AT: usize = MAGIC_AT + MAGIC.len();
const VERSION_AT: usize = KIND_AT + 4;
const PARAMS_AT: usize = VERSION_AT + 4;
const CHECKSUM_AT: usize = PARAMS_AT + PARAMS * 8;
/// Size of the header in bytes.
pub(crate) const HEADER_BYTES: usize = CHECKSUM_AT + 8;
const _: () = assert!(HEADER_BYTES == 64);

/// The kind of structure a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// `accretion.acc` at the root of a store directory.
    Dir = 1,
    /// An Entropy file.
    Entropy = 2,
    /// A multi-slot register (the Journal's file and every primitive's state record).
    Register = 3,
    /// One lane of a byte space.
    Lane = 4,
    /// A composite structure's record of its kind (`kind.acc`, see `catalog`).
    Catalog = 5,
}

impl Kind {
    fn name(raw: u32) -> &'static str {
        match raw {
            1 => "store directory header",
            2 => "entropy file",
            3 => "register (journal) file",
            4 => "lane file",
            5 => "kind record",
            _ => "unknown kind",
        }
    }
}

/// The checksum used everywhere a file protects bytes: XXH3-64 with seed 0.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Reads a little-endian `u64` at `at`. The caller has checked the bounds.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Reads a little-endian `u32` at `at`. The caller has checked the bounds.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// Writes a little-endian `u64` at `at`.
pub(crate) fn write_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Writes a little-endian `u32` at `at`.
pub(crate) fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub params: [u64; PARAMS],
}

impl Header {
    pub(crate) fn new(kind: Kind, params: [u64; PARAMS]) -> Self {
        Header { kind, params }
    }

    /// The 64 bytes of this header, version [`FORMAT_VERSION`].
    pub(crate) fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[MAGIC_AT..KIND_AT].copy_from_slice(&MAGIC);
        write_u32(&mut out, KIND_AT, self.kind as u32);
        write_u32(&mut out, VERSION_AT, FORMAT_VERSION);
        for (i, p) in self.params.iter().enumerate() {
            write_u64(&mut out, PARAMS_AT + 8 * i, *p);
        }
        let sum = checksum(&out[..CHECKSUM_AT]);
        write_u64(&mut out, CHECKSUM_AT, sum);
        out
    }

    /// Decodes and checks the header at the start of `bytes`, which came from `path`,
    /// expecting `kind`.
    ///
    /// # Errors
    /// `Corrupted` for a short file, bad magic or bad checksum; `UnsupportedVersion` for a
    /// newer version; `Incompatible` for another kind.
    pub(crate) fn decode(bytes: &[u8], path: &Path, kind: Kind) -> Result<Header> {
        if bytes.len() < HEADER_BYTES {
            return Err(Error::corrupted(
                path,
                bytes.len() as u64,
                format!(
                    "file is {} bytes, shorter than its {HEADER_BYTES}-byte header",
                    bytes.len()
                ),
            ));
        }
        if bytes[MAGIC_AT..KIND_AT] != MAGIC {
            return Err(Error::corrupted(
                path,
                0,
                "bad magic bytes: not an accretion file",
            ));
        }
        let stored = read_u64(bytes, CHECKSUM_AT);
        if stored != checksum(&bytes[..CHECKSUM_AT]) {
            return Err(Error::corrupted(
                path,
                CHECKSUM_AT as u64,
                "header checksum mismatch",
            ));
        }
        let version = read_u32(bytes, VERSION_AT);
        if version == 0 || version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let found = read_u32(bytes, KIND_AT);
        if found != kind as u32 {
            return Err(Error::incompatible(
                path,
                format!(
                    "expected a {}, found a {} (kind {found})",
                    Kind::name(kind as u32),
                    Kind::name(found)
                ),
            ));
        }
        let mut params = [0u64; PARAMS];
        for (i, p) in params.iter_mut().enumerate() {
            *p = read_u64(bytes, PARAMS_AT + 8 * i);
        }
        Ok(Header { kind, params })
    }

    /// Checks that param `index` holds `expected`, naming it `what` in the error.
    pub(crate) fn expect_param(
        &self,
        path: &Path,
        index: usize,
        expected: u64,
        what: &str,
    ) -> Result<()> {
        let found = self.params[index];
        if found == expected {
            Ok(())
        } else {
            Err(Error::incompatible(
                path,
                format!("{what} is {found} on disk, {expected} requested"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header::new(Kind::Lane, [1, 2, 3, 4, u64::MAX]);
        let bytes = h.encode();
        assert_eq!(
            Header::decode(&bytes, Path::new("x"), Kind::Lane).unwrap(),
            h
        );
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let bytes = Header::new(Kind::Register, [7, 0, 0, 0, 9]).encode();
        for byte in 0..HEADER_BYTES {
            for bit in 0..8 {
                let mut bad = bytes;
                bad[byte] ^= 1 << bit;
                assert!(Header::decode(&bad, Path::new("x"), Kind::Register).is_err());
            }
        }
    }

    #[test]
    fn newer_version_and_other_kind_are_typed_errors() {
        let mut bytes = Header::new(Kind::Dir, [0; PARAMS]).encode();
        write_u32(&mut bytes, VERSION_AT, FORMAT_VERSION + 1);
        let sum = checksum(&bytes[..CHECKSUM_AT]);
        write_u64(&mut bytes, CHECKSUM_AT, sum);
        assert!(matches!(
            Header::decode(&bytes, Path::new("x"), Kind::Dir),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
        let bytes = Header::new(Kind::Dir, [0; PARAMS]).encode();
        assert!(matches!(
            Header::decode(&bytes, Path::new("x"), Kind::Lane),
            Err(Error::Incompatible { .. })
        ));
        assert!(matches!(
            Header::decode(&bytes[..10], Path::new("x"), Kind::Dir),
            Err(Error::Corrupted { .. })
        ));
    }
}
