//! The key type of the key directory: the key's bytes behind an `Arc`, with its first
//! eight bytes kept inline so that most comparisons in the ordered views decide without
//! following the pointer (one cache miss saved per comparison). It hashes and borrows as
//! its bytes, so hash maps keyed by it are searched with `&[u8]`.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A key in the directory. Ordered as its bytes are (lexicographically).
#[derive(Clone, Debug)]
pub(crate) struct Key {
    head: u64,
    bytes: Arc<[u8]>,
}

impl Key {
    pub(crate) fn new(bytes: &[u8]) -> Key {
        Key {
            head: head(bytes),
            bytes: Arc::from(bytes),
        }
    }

    pub(crate) fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }
}

/// The first eight bytes, big-endian, zero-padded. Comparing heads orders keys as their
/// bytes do whenever the heads differ: a zero pad sorts before any byte, and a key that
/// is padded is a prefix of the other up to the pad.
fn head(bytes: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    let n = bytes.len().min(8);
    h[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(h)
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.head == other.head && self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl Hash for Key {
    /// Hashes as the bytes do, so that a map keyed by `Key` can be searched with `&[u8]`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (*self.bytes).hash(state);
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_byte_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\x01",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"abcdefghz",
            b"b",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(Key::new(a).cmp(&Key::new(b)), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(Key::new(a) == Key::new(b), a == b);
            }
        }
    }
}
