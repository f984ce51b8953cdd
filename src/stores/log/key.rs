//! The key type of the key directory. A short key (up to [`INLINE`] bytes, most keys)
//! is stored inline, so it costs no allocation and a clone is a copy; a longer one sits
//! behind an `Arc`, shared by its clones. The first eight bytes are also kept as a
//! number, so that most comparisons in the ordered views decide on it alone. It hashes
//! and borrows as its bytes, so hash maps keyed by it are searched with `&[u8]`.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest key stored inline: what fits beside the length in the room an `Arc<[u8]>`
/// and the variant tag take anyway.
const INLINE: usize = 22;

/// A key in the directory. Ordered as its bytes are (lexicographically).
#[derive(Clone, Debug)]
pub(crate) struct Key {
    head: u64,
    rest: Rest,
}

#[derive(Clone, Debug)]
enum Rest {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl Key {
    pub(crate) fn new(bytes: &[u8]) -> Key {
        let rest = match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE => {
                let mut inline = [0u8; INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Rest::Inline { len, bytes: inline }
            }
            _ => Rest::Shared(Arc::from(bytes)),
        };
        Key {
            head: head(bytes),
            rest,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.rest {
            Rest::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Rest::Shared(bytes) => bytes,
        }
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
        self.head == other.head && self.bytes() == other.bytes()
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
            .then_with(|| self.bytes().cmp(other.bytes()))
    }
}

impl Hash for Key {
    /// Hashes as the bytes do, so that a map keyed by `Key` can be searched with `&[u8]`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.bytes()
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
            // Around the inline limit: 21, 22 (inline) and 23, 40 bytes (shared).
            b"abcdefghijklmnopqrstu",
            b"abcdefghijklmnopqrstuv",
            b"abcdefghijklmnopqrstuv\0",
            b"abcdefghijklmnopqrstuvw",
            b"abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(Key::new(a).cmp(&Key::new(b)), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(Key::new(a) == Key::new(b), a == b);
                assert_eq!(Key::new(a).bytes(), *a);
            }
            // Hashes as its bytes, so a map keyed by `Key` finds it by `&[u8]`.
            let hash = |h: &dyn Fn(&mut std::hash::DefaultHasher)| {
                let mut state = std::hash::DefaultHasher::new();
                h(&mut state);
                state.finish()
            };
            assert_eq!(hash(&|s| Key::new(a).hash(s)), hash(&|s| Hash::hash(*a, s)));
        }
    }

    /// An inline key takes the room of a head and a shared pointer, no more.
    #[test]
    fn key_is_four_words() {
        assert_eq!(size_of::<Key>(), 32);
    }
}
