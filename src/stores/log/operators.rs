//! Merge operators that come with the crate, by name, for [`LogOptions::merge_operator`]
//! and for tools (the `accretion` command-line tool's `merge` verb) that must find the
//! operator a store was written with from the name it records.
//!
//! Each is a pure function of (current value, operand): it reads nothing else and never
//! writes, so it meets [`MergeFn`]'s rules.
//!
//! ```
//! use accretion::{Dir, LogOptions, LogStore, merge_operators};
//!
//! let dir = Dir::temporary()?;
//! let opts = LogOptions {
//!     merge_operator: merge_operators::by_name("add"),
//!     ..LogOptions::default()
//! };
//! let store = LogStore::open(&dir, "counters", opts)?;
//! store.merge_default(b"visits", b"3")?;
//! store.merge_default(b"visits", b"-1")?;
//! assert_eq!(&*store.get(b"visits")?.unwrap(), b"2");
//! assert_eq!(store.records_merge_operator("add"), Some(true));
//! # Ok::<(), accretion::Error>(())
//! ```
//!
//! [`LogOptions::merge_operator`]: super::LogOptions::merge_operator

use std::sync::Arc;

use super::MergeFn;

/// The names of the operators [`by_name`] knows, with what each does.
pub const OPERATORS: [(&str, &str); 4] = [
    (
        "concat",
        "appends the operand to the value (an absent value is empty)",
    ),
    (
        "add",
        "adds decimal integers (i64, as ASCII text; an absent value is 0)",
    ),
    (
        "max",
        "keeps the larger of the value and the operand (bytewise)",
    ),
    (
        "min",
        "keeps the smaller of the value and the operand (bytewise; an absent value takes the operand)",
    ),
];

/// The operator named `name`, with its name, ready for
/// [`LogOptions::merge_operator`](super::LogOptions::merge_operator); `None` for a name
/// not in [`OPERATORS`].
pub fn by_name(name: &str) -> Option<(String, Arc<MergeFn>)> {
    let op: Arc<MergeFn> = match name {
        "concat" => Arc::new(|_: &[u8], current: Option<&[u8]>, operand: &[u8]| {
            let mut v = current.unwrap_or_default().to_vec();
            v.extend_from_slice(operand);
            Some(v)
        }),
        "add" => Arc::new(|_: &[u8], current: Option<&[u8]>, operand: &[u8]| {
            Some(add(current, operand).map_or_else(
                || current.unwrap_or(b"0").to_vec(),
                |sum| sum.to_string().into_bytes(),
            ))
        }),
        "max" => Arc::new(|_: &[u8], current: Option<&[u8]>, operand: &[u8]| {
            Some(current.map_or(operand, |c| c.max(operand)).to_vec())
        }),
        "min" => Arc::new(|_: &[u8], current: Option<&[u8]>, operand: &[u8]| {
            Some(current.map_or(operand, |c| c.min(operand)).to_vec())
        }),
        _ => return None,
    };
    Some((name.to_owned(), op))
}

/// The integer `bytes` hold for the `add` operator: ASCII decimal, an optional leading
/// `-`, within i64; `None` otherwise.
pub fn counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// What `add` makes of `current` and `operand`: their sum, or `None` if either is not a
/// [`counter`] or the sum leaves i64 (the operator then leaves the value as it is, or
/// writes `0` for an absent one: a tool should check with this first and report it).
pub fn add(current: Option<&[u8]>, operand: &[u8]) -> Option<i64> {
    let current = match current {
        Some(c) => counter(c)?,
        None => 0,
    };
    current.checked_add(counter(operand)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(name: &str, current: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
        let (n, op) = by_name(name).expect("a known operator");
        assert_eq!(n, name);
        op(b"k", current, operand).expect("the operators never delete")
    }

    #[test]
    fn every_listed_operator_exists_and_no_other() {
        for (name, _) in OPERATORS {
            assert!(by_name(name).is_some(), "{name}");
        }
        assert!(by_name("sum").is_none());
        assert!(by_name("").is_none());
    }

    #[test]
    fn operators_do_what_they_say() {
        assert_eq!(apply("concat", None, b"ab"), b"ab");
        assert_eq!(apply("concat", Some(b"ab"), b"cd"), b"abcd");
        assert_eq!(apply("add", None, b"5"), b"5");
        assert_eq!(apply("add", Some(b"5"), b"-7"), b"-2");
        // What cannot be added leaves the value alone.
        assert_eq!(apply("add", Some(b"five"), b"1"), b"five");
        assert_eq!(apply("add", Some(b"1"), b"x"), b"1");
        assert_eq!(apply("add", None, b"x"), b"0");
        let max = i64::MAX.to_string();
        assert_eq!(apply("add", Some(max.as_bytes()), b"1"), max.as_bytes());
        assert_eq!(apply("max", None, b"b"), b"b");
        assert_eq!(apply("max", Some(b"b"), b"a"), b"b");
        assert_eq!(apply("max", Some(b"b"), b"ba"), b"ba");
        assert_eq!(apply("min", None, b"b"), b"b");
        assert_eq!(apply("min", Some(b"b"), b"a"), b"a");
        assert_eq!(apply("min", Some(b""), b"a"), b"");
        assert_eq!(add(Some(b" 1"), b"1"), None);
        assert_eq!(counter(b"-0"), Some(0));
    }
}
