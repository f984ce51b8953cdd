//! [`KeyRange`]: the byte-string key ranges that every store's range queries take.

use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

/// The keys a range query covers ([`LogStore::range`](crate::LogStore::range),
/// [`Tree::range`](crate::Tree::range)), as byte-string bounds.
///
/// Implemented for every std range (`..`, `a..b`, `a..=b`, `a..`, `..b`, `..=b`) whose
/// ends are of one type that is `AsRef<[u8]>` (`&[u8]`, `&[u8; N]`, `Vec<u8>`, `&str`,
/// `String`, ...), and for a pair `(Bound<A>, Bound<B>)` whose two ends may be of
/// different such types. Unlike `RangeBounds<T>`, it has no type parameter, so `range(..)`
/// needs no annotation.
pub trait KeyRange {
    /// The lower bound.
    fn start_key(&self) -> Bound<&[u8]>;
    /// The upper bound.
    fn end_key(&self) -> Bound<&[u8]>;
}

impl KeyRange for RangeFull {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }

    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
}

/// `KeyRange` for std ranges with one end type, through their `RangeBounds`.
macro_rules! key_range {
    ($($range:ident),*) => {$(
        impl<B: AsRef<[u8]>> KeyRange for $range<B> {
            fn start_key(&self) -> Bound<&[u8]> {
                RangeBounds::<B>::start_bound(self).map(AsRef::as_ref)
            }

            fn end_key(&self) -> Bound<&[u8]> {
                RangeBounds::<B>::end_bound(self).map(AsRef::as_ref)
            }
        }
    )*};
}

key_range!(Range, RangeInclusive, RangeFrom, RangeTo, RangeToInclusive);

impl<A: AsRef<[u8]>, B: AsRef<[u8]>> KeyRange for (Bound<A>, Bound<B>) {
    fn start_key(&self) -> Bound<&[u8]> {
        self.0.as_ref().map(AsRef::as_ref)
    }

    fn end_key(&self) -> Bound<&[u8]> {
        self.1.as_ref().map(AsRef::as_ref)
    }
}
