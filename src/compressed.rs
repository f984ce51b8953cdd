//! Compressed values over any store (feature `compress`): [`Compressed`] wraps a
//! [`Store`] and is one itself, storing each value as a flag byte then either its lz4
//! block (`lz4_flex`, the size prepended) or, when that would not be smaller, the value
//! as it is. Keys are stored as they are, so an ordered store keeps its order.
//!
//! ```
//! use accretion::compressed::Compressed;
//! use accretion::face::Store;
//! use accretion::{Dir, HashStore};
//!
//! let dir = Dir::temporary()?;
//! let store = Compressed::new(HashStore::open(&dir, "kv", Default::default())?);
//! let text = "to be or not to be ".repeat(100);
//! store.put(b"play", text.as_bytes())?;
//! assert_eq!(store.get(b"play")?.as_deref(), Some(text.as_bytes()));
//! assert!(store.inner().get(b"play")?.unwrap().len() < text.len() / 4);
//! # Ok::<(), accretion::Error>(())
//! ```

use std::path::PathBuf;

use crate::catalog::Kind;
use crate::face::{Entries, Figures, OrderedEntries, OrderedStore, Store};
use crate::{Error, KeyRange, Result};

/// The flag of a value stored as it is.
const RAW: u8 = 0;
/// The flag of a value stored as an lz4 block with its size prepended.
const LZ4: u8 = 1;

/// A store whose values are compressed where that makes them smaller.
#[derive(Debug)]
pub struct Compressed<S> {
    inner: S,
}

impl<S: Store> Compressed<S> {
    /// Compresses the values of `inner` from now on (values it holds already must have
    /// been written through a `Compressed` face too).
    pub fn new(inner: S) -> Self {
        Compressed { inner }
    }

    /// The store underneath, whose values are the stored (flagged) bytes.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The store underneath.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// `value` as stored: flagged, compressed if that is smaller.
fn pack(value: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::compress_prepend_size(value);
    if packed.len() < value.len() {
        let mut out = Vec::with_capacity(packed.len() + 1);
        out.push(LZ4);
        out.extend_from_slice(&packed);
        out
    } else {
        let mut out = Vec::with_capacity(value.len() + 1);
        out.push(RAW);
        out.extend_from_slice(value);
        out
    }
}

/// The value `stored` holds.
fn unpack(path: impl FnOnce() -> PathBuf, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: String| Error::Encoding { path: path(), what };
    match stored.split_first() {
        Some((&RAW, rest)) => Ok(rest.to_vec()),
        Some((&LZ4, rest)) => {
            // lz4 expands at most about 255 times: a larger size is damage, refused
            // before it sizes an allocation.
            let size = rest
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
            match size {
                Some(n) if n <= rest.len().saturating_mul(255) => {}
                _ => {
                    return Err(bad(format!(
                        "a compressed value of {} bytes names an impossible size",
                        rest.len()
                    )));
                }
            }
            let out = lz4_flex::decompress_size_prepended(rest)
                .map_err(|e| bad(format!("a compressed value does not decompress: {e}")))?;
            Ok(out)
        }
        Some((&flag, _)) => Err(bad(format!(
            "a value's flag byte is {flag}: not written by a compressed face"
        ))),
        None => Err(bad(
            "an empty value: not written by a compressed face".to_owned()
        )),
    }
}

impl<S: Store> Store for Compressed<S> {
    type Key = S::Key;
    type Value = Vec<u8>;

    fn kind(&self) -> Kind {
        self.inner.kind()
    }

    fn path(&self) -> PathBuf {
        self.inner.path()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.inner.get(key)? {
            Some(v) => Ok(Some(unpack(|| self.inner.path(), &v)?)),
            None => Ok(None),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, &pack(value))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.delete(key)
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.contains(key)
    }

    fn len(&self) -> Result<u64> {
        self.inner.len()
    }

    fn entries(&self) -> Result<Entries<'_, S::Key, Vec<u8>>> {
        Ok(Box::new(self.inner.entries()?.map(move |e| {
            let (k, v) = e?;
            Ok((k, unpack(|| self.inner.path(), &v)?))
        })))
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn stats(&self) -> Result<Figures> {
        self.inner.stats()
    }

    fn verify(&self) -> Result<Figures> {
        let figures = self.inner.verify()?;
        for e in self.entries()? {
            e?;
        }
        Ok(figures)
    }

    fn compact(&self) -> Result<()> {
        self.inner.compact()
    }
}

impl<S: OrderedStore> OrderedStore for Compressed<S> {
    fn range(&self, range: impl KeyRange) -> Result<OrderedEntries<'_, S::Key, Vec<u8>>> {
        Ok(Box::new(self.inner.range(range)?.map(move |e| {
            let (k, v) = e?;
            Ok((k, unpack(|| self.inner.path(), &v)?))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_shrink_only_when_it_pays() {
        for value in [
            Vec::new(),
            b"x".to_vec(),
            vec![7u8; 10_000],
            (0..5_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ] {
            let stored = pack(&value);
            assert!(stored.len() <= value.len() + 1);
            assert_eq!(unpack(PathBuf::new, &stored).unwrap(), value);
        }
        assert_eq!(pack(&[7u8; 10_000])[0], LZ4);
        assert_eq!(pack(b"x")[0], RAW);
        assert!(unpack(PathBuf::new, &[]).is_err());
        assert!(unpack(PathBuf::new, &[9, 1]).is_err());
        assert!(unpack(PathBuf::new, &[LZ4, 255, 255, 255, 127, 1]).is_err());
    }
}
