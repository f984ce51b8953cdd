//! Content: content-addressed blobs. A blob's id is its BLAKE3 hash; storing the same
//! bytes twice stores them once; reading verifies them against their id.
//!
//! Composed from a [`OnceMap`] (id -> blob) under the same name; it owns no file itself.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use bytemuck::{Pod, Zeroable};

use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::limits::VALUE_LEN_BYTES_MAX;
use crate::primitives::once_map::OnceMap;

/// The id of a blob: its 32-byte BLAKE3 hash. Shown and parsed as 64 lowercase hex digits.
///
/// ```
/// let id = accretion::ContentId::of(b"hello");
/// let text = id.to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<accretion::ContentId>().unwrap(), id);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentId {
        ContentId(*blake3::hash(bytes).as_bytes())
    }

    /// The id's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id with these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> ContentId {
        ContentId(bytes)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

/// Why a string is not a [`ContentId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContentIdError;

impl fmt::Display for ParseContentIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content id is 64 hexadecimal digits")
    }
}

impl std::error::Error for ParseContentIdError {}

impl FromStr for ContentId {
    type Err = ParseContentIdError;

    fn from_str(s: &str) -> std::result::Result<ContentId, ParseContentIdError> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ParseContentIdError);
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or(ParseContentIdError);
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (digit(s[2 * i])? * 16 + digit(s[2 * i + 1])?) as u8;
        }
        Ok(ContentId(out))
    }
}

/// A store of immutable blobs addressed by their BLAKE3 hash.
///
/// # Durability
/// As [`OnceMap`]: [`sync`](Self::sync) makes every blob inserted before it durable (one
/// flush); a blob inserted survives a drop without sync and the death of the process,
/// and only a power loss can take blobs not yet synced. [`get`](Self::get) re-hashes the
/// blob and returns `Error::Corrupted` if it no longer matches its id.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let blobs = accretion::Content::open(&dir, "blobs")?;
/// let id = blobs.insert(b"some bytes")?;
/// assert_eq!(blobs.insert(b"some bytes")?, id); // stored once
/// assert_eq!(blobs.get(&id)?, Some(&b"some bytes"[..]));
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// A blob cannot outlive its store:
/// ```compile_fail
/// let dir = accretion::Dir::temporary().unwrap();
/// let blobs = accretion::Content::open(&dir, "c").unwrap();
/// let id = blobs.insert(b"x").unwrap();
/// let bytes = blobs.get(&id).unwrap().unwrap();
/// drop(blobs);
/// println!("{bytes:?}");
/// ```
#[derive(Debug)]
pub struct Content {
    map: OnceMap,
    path: std::path::PathBuf,
}

impl Content {
    /// Opens or creates the blob store at `name` in `dir`.
    ///
    /// # Errors
    /// As [`OnceMap::open`].
    pub fn open(dir: &Dir, name: &str) -> Result<Content> {
        Ok(Content {
            map: OnceMap::open_as(dir, name, crate::catalog::Kind::Content)?,
            path: dir.path().join(name),
        })
    }

    /// Stores `bytes` (once, however often it is called) and returns their id.
    ///
    /// # Errors
    /// As [`OnceMap::insert`].
    pub fn insert(&self, bytes: &[u8]) -> Result<ContentId> {
        let id = ContentId::of(bytes);
        self.map.insert(id.as_bytes(), bytes)?;
        Ok(id)
    }

    /// Reads `reader` to its end, hashing as it goes, and stores what it read. The blob is
    /// held in memory once before it is stored.
    ///
    /// # Errors
    /// `Io` from the reader; `LimitExceeded` past [`VALUE_LEN_BYTES_MAX`]; as
    /// [`insert`](Self::insert).
    pub fn insert_reader(&self, reader: impl Read) -> Result<ContentId> {
        let mut hasher = blake3::Hasher::new();
        let mut blob = Vec::new();
        let mut limited = reader.take(VALUE_LEN_BYTES_MAX as u64 + 1);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match limited.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, "read blob from reader", e)),
            };
            hasher.update(&chunk[..n]);
            blob.extend_from_slice(&chunk[..n]);
            if blob.len() > VALUE_LEN_BYTES_MAX {
                return Err(Error::limit(
                    "VALUE_LEN_BYTES_MAX",
                    blob.len() as u64,
                    VALUE_LEN_BYTES_MAX as u64,
                ));
            }
        }
        let id = ContentId(*hasher.finalize().as_bytes());
        self.map.insert(id.as_bytes(), &blob)?;
        Ok(id)
    }

    /// The blob with id `id`, after checking that it still hashes to `id`.
    ///
    /// # Errors
    /// `Corrupted` if the stored bytes do not match their id, naming the data file that
    /// holds the blob (`<name>/log/data-NN.acc`) and its position there, and the blob's
    /// offset in the log; as [`OnceMap::get`].
    pub fn get(&self, id: &ContentId) -> Result<Option<&[u8]>> {
        // The BLAKE3 check below is stronger than the map's own value checksum.
        let Some((offset, blob)) = self.map.get_located(id.as_bytes())? else {
            return Ok(None);
        };
        if ContentId::of(blob) != *id {
            return Err(self.map.damaged_at(
                offset,
                format!(
                    "blob {id} of {} bytes in Content {} no longer matches its hash",
                    blob.len(),
                    self.path.display()
                ),
            ));
        }
        Ok(Some(blob))
    }

    /// The blob with id `id`, without re-hashing it: faster, and trusts the disk.
    ///
    /// # Errors
    /// As [`OnceMap::get`].
    pub fn get_unverified(&self, id: &ContentId) -> Result<Option<&[u8]>> {
        self.map.get(id.as_bytes())
    }

    /// True if a blob with id `id` is stored.
    ///
    /// # Errors
    /// As [`OnceMap::get`].
    pub fn contains(&self, id: &ContentId) -> Result<bool> {
        self.map.contains_key(id.as_bytes())
    }

    /// Every stored id, in insertion order. A damaged entry is an `Err` item
    /// (`Corrupted`, naming the log and the entry's offset in it) and iteration goes on
    /// with the entries after it, as [`OnceMap::iter`].
    pub fn ids(&self) -> impl Iterator<Item = Result<ContentId>> + '_ {
        self.map.entries().map(|e| {
            e.and_then(|(offset, k, _)| {
                let bytes: [u8; 32] = k.try_into().map_err(|_| {
                    Error::corrupted(
                        self.map.log_path(),
                        offset,
                        format!("key of {} bytes is not a content id", k.len()),
                    )
                })?;
                Ok(ContentId(bytes))
            })
        })
    }

    /// Damaged entries that open met, as [`OnceMap::damaged_at_open`].
    pub fn damaged_at_open(&self) -> u64 {
        self.map.damaged_at_open()
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> u64 {
        self.map.len()
    }

    /// True if no blob is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Makes every blob inserted before this call durable.
    ///
    /// # Errors
    /// As [`OnceMap::sync`].
    pub fn sync(&self) -> Result<()> {
        self.map.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_reject() {
        let id = ContentId::of(b"");
        assert_eq!(
            id.to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert!("xyz".parse::<ContentId>().is_err());
        assert!("g".repeat(64).parse::<ContentId>().is_err());
        assert_eq!(
            id.to_string().to_uppercase().parse::<ContentId>().unwrap(),
            id
        );
    }

    #[test]
    fn reader_and_slice_agree() {
        let dir = Dir::temporary().unwrap();
        let c = Content::open(&dir, "c").unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let a = c.insert_reader(&data[..]).unwrap();
        let b = c.insert(&data).unwrap();
        assert_eq!(a, b);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&a).unwrap().unwrap(), &data[..]);
        assert_eq!(c.ids().map(Result::unwrap).collect::<Vec<_>>(), vec![a]);
    }
}
