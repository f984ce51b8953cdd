//! Typed keys and values over any store (feature `serde`): [`Typed`] encodes values with
//! MessagePack (`rmp-serde`) and keys with an order-preserving encoding (`storekey`), so
//! that on an ordered store, ranges of integers, strings and tuples come out in their
//! natural order.
//!
//! ```
//! use accretion::typed::Typed;
//! use accretion::{BTreeStore, Dir};
//!
//! let dir = Dir::temporary()?;
//! let scores: Typed<_, (String, u32), Vec<f64>> =
//!     Typed::new(BTreeStore::open(&dir, "scores", Default::default())?);
//! scores.put(&("ada".into(), 10), &vec![1.5])?;
//! scores.put(&("ada".into(), 9), &vec![2.0, 3.0])?;
//! scores.put(&("bob".into(), 1), &vec![])?;
//! assert_eq!(scores.get(&("ada".into(), 9))?, Some(vec![2.0, 3.0]));
//! let ada: Vec<u32> = scores
//!     .range(&("ada".into(), 0)..&("ada".into(), u32::MAX))?
//!     .map(|e| e.map(|((_, n), _)| n))
//!     .collect::<accretion::Result<_>>()?;
//! assert_eq!(ada, [9, 10]); // numeric order, not the order of their decimal text
//! # Ok::<(), accretion::Error>(())
//! ```

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::face::{OrderedStore, Store};
use crate::{Error, Result};

/// Marks the key and value types without owning either (so `Typed` is `Send` and
/// `Sync` whenever its store is).
type Types<K, V> = PhantomData<fn(K, V) -> (K, V)>;

/// A store of `K` keys and `V` values.
#[derive(Debug)]
pub struct Typed<S, K, V> {
    inner: S,
    _types: Types<K, V>,
}

impl<S: Store, K: Serialize + DeserializeOwned + PartialEq, V: Serialize + DeserializeOwned>
    Typed<S, K, V>
{
    /// Types the keys and values of `inner` from now on.
    pub fn new(inner: S) -> Self {
        Typed {
            inner,
            _types: PhantomData,
        }
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn error(&self, what: String) -> Error {
        Error::Encoding {
            path: self.inner.path(),
            what,
        }
    }

    /// The key's bytes, refused unless they decode to the key again: storekey ends a
    /// string at a 0 byte it does not escape, so a string holding NUL would be cut
    /// short, or take another key's bytes (`("a\0b", "c")` and `("a", "b\0c")`).
    fn key(&self, key: &K) -> Result<Vec<u8>> {
        let bytes = storekey::serialize(key)
            .map_err(|e| self.error(format!("a key does not encode: {e}")))?;
        if storekey::deserialize::<K>(&bytes).ok().as_ref() != Some(key) {
            return Err(self.error(
                "a key whose encoding does not decode to it again (a string holding a NUL \
                 byte, which the key encoding takes for the string's end)"
                    .to_owned(),
            ));
        }
        Ok(bytes)
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<K> {
        storekey::deserialize(bytes)
            .map_err(|e| self.error(format!("a stored key does not decode as the key type: {e}")))
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<V> {
        rmp_serde::from_slice(bytes).map_err(|e| {
            self.error(format!(
                "a stored value does not decode as the value type: {e}"
            ))
        })
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// `Encoding` if the key does not encode or the stored value does not decode; as
    /// the store's `get`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.inner.get(&self.key(key)?)? {
            Some(v) => Ok(Some(self.decode_value(&v)?)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// `Encoding` if either does not encode; as the store's write.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let v = rmp_serde::to_vec(value)
            .map_err(|e| self.error(format!("a value does not encode: {e}")))?;
        self.inner.put(&self.key(key)?, &v)
    }

    /// Removes `key`, returning whether it was set.
    ///
    /// # Errors
    /// `Encoding` if the key does not encode; as the store's removal.
    pub fn delete(&self, key: &K) -> Result<bool> {
        self.inner.delete(&self.key(key)?)
    }

    /// Whether `key` is set.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.inner.contains(&self.key(key)?)
    }

    /// Keys in the store.
    ///
    /// # Errors
    /// As the store's `len`.
    pub fn len(&self) -> Result<u64> {
        self.inner.len()
    }

    /// Whether the store holds no key.
    ///
    /// # Errors
    /// As the store's `len`.
    pub fn is_empty(&self) -> Result<bool> {
        self.inner.is_empty()
    }

    /// Every entry, decoded (in key order where the store keeps one).
    ///
    /// # Errors
    /// As the store's iteration; an item is `Encoding` if its bytes do not decode.
    pub fn entries(&self) -> Result<impl Iterator<Item = Result<(K, V)>> + '_> {
        Ok(self.inner.entries()?.map(move |e| {
            let (k, v) = e?;
            Ok((self.decode_key(&k)?, self.decode_value(&v)?))
        }))
    }

    /// Makes every write so far durable, as the store's `sync` promises.
    ///
    /// # Errors
    /// As the store's `sync`.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

impl<S: OrderedStore, K: Serialize + DeserializeOwned + PartialEq, V: Serialize + DeserializeOwned>
    Typed<S, K, V>
{
    /// The entries whose keys lie in `range`, in the keys' natural order; `rev()` walks
    /// it backwards.
    ///
    /// # Errors
    /// `Encoding` if a bound does not encode; as the store's range read.
    pub fn range<'k>(
        &self,
        range: impl RangeBounds<&'k K>,
    ) -> Result<impl DoubleEndedIterator<Item = Result<(K, V)>> + '_>
    where
        K: 'k,
    {
        let bound = |b: Bound<&&K>| -> Result<Bound<Vec<u8>>> {
            Ok(match b {
                Bound::Included(k) => Bound::Included(self.key(k)?),
                Bound::Excluded(k) => Bound::Excluded(self.key(k)?),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        let (lo, hi) = (bound(range.start_bound())?, bound(range.end_bound())?);
        Ok(self.inner.range((lo, hi))?.map(move |e| {
            let (k, v) = e?;
            Ok((self.decode_key(&k)?, self.decode_value(&v)?))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::{BTreeStore, Dir, HashStore, LogStore};

    type Key = (i64, String, Option<u8>);

    fn check<S: OrderedStore>(store: S, pairs: &[(Key, Vec<u16>)], lo: &Key, hi: &Key) {
        let typed: Typed<S, Key, Vec<u16>> = Typed::new(store);
        let mut model = BTreeMap::new();
        for (k, v) in pairs {
            typed.put(k, v).unwrap();
            model.insert(k.clone(), v.clone());
        }
        let all: Vec<(Key, Vec<u16>)> = typed.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
        if lo <= hi {
            let got: Vec<_> = typed.range(lo..hi).unwrap().map(|e| e.unwrap()).collect();
            let want: Vec<_> = model
                .range(lo.clone()..hi.clone())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(got, want);
            let back: Vec<_> = typed
                .range(lo..=hi)
                .unwrap()
                .rev()
                .map(|e| e.unwrap())
                .collect();
            let want: Vec<_> = model
                .range(lo.clone()..=hi.clone())
                .rev()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(back, want);
        }
        for (k, v) in &model {
            assert_eq!(typed.get(k).unwrap().as_ref(), Some(v));
        }
    }

    fn key() -> impl Strategy<Value = Key> {
        (any::<i64>(), "[a-c]{0,4}", any::<Option<u8>>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Typed keys come out of an ordered store in the order of the typed keys (a
        /// BTreeMap of them), ranges and reverse ranges included.
        #[test]
        fn typed_keys_keep_their_natural_order(
            pairs in proptest::collection::vec((key(), proptest::collection::vec(any::<u16>(), 0..4)), 0..60),
            lo in key(),
            hi in key(),
        ) {
            let dir = Dir::temporary().unwrap();
            check(BTreeStore::open(&dir, "t", Default::default()).unwrap(), &pairs, &lo, &hi);
            check(LogStore::open(&dir, "l", Default::default()).unwrap(), &pairs, &lo, &hi);
        }
    }

    #[test]
    fn bytes_of_another_type_are_an_encoding_error() {
        let dir = Dir::temporary().unwrap();
        let store = HashStore::open(&dir, "h", Default::default()).unwrap();
        store.set(b"raw", &[0xc1]).unwrap(); // 0xc1: never used by MessagePack
        let typed: Typed<_, String, u32> = Typed::new(store);
        typed.put(&"n".to_owned(), &7).unwrap();
        assert_eq!(typed.get(&"n".to_owned()).unwrap(), Some(7));
        assert!(typed.delete(&"missing".to_owned()).is_ok());
        let e = typed.get(&"raw".to_owned());
        // "raw" as a typed key encodes differently from the raw bytes: absent.
        assert!(matches!(e, Ok(None)), "{e:?}");
        let bad: Vec<_> = typed.entries().unwrap().filter(|e| e.is_err()).collect();
        assert_eq!(bad.len(), 1);
        assert!(matches!(bad[0], Err(Error::Encoding { .. })));
    }
}
