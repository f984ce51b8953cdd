//! The key directory's hash map, split into [`SHARDS`] tables by a hash of the key. A
//! table that outgrows its capacity rehashes every entry it holds while readers and
//! writers wait; split, each rehash moves a 1024th of the keys, one table at a time. At
//! two million keys one table took about 250 ms to grow, one of sixteen about 15 ms, one
//! of 64 about 16 ms (the new table's pages are faulted in and zeroed as it fills), one
//! of 256 3 to 4 ms, and one of 1024 under 1 ms. The tables fill evenly, so they grow at
//! about the same time: a load crossing a growth point pays one table's growth in many
//! puts in a row (at 1.8M keys, 256 growths of 3 to 4 ms each were among the longest
//! puts of a 2M-key load). More tables cost a little memory (48 bytes each) and nothing
//! measurable per lookup.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::Loc;
use super::key::Key;
#[cfg(test)]
use super::segment::Segment;

/// Tables the map is split into (a power of two).
const SHARDS: usize = 1024;

type Table = HashMap<Key, Loc, foldhash::fast::RandomState>;

/// A map from key to location, hashed with foldhash, seeded at random (hash flooding
/// needs the seeds). The table is picked with a hasher of its own, so the bits that pick
/// it are not the bits each table sorts by.
pub(super) struct Shards {
    pick: foldhash::fast::RandomState,
    tables: Box<[Table]>,
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            pick: foldhash::fast::RandomState::default(),
            tables: (0..SHARDS).map(|_| Table::default()).collect(),
        }
    }
}

impl Shards {
    fn table(&self, key: &[u8]) -> usize {
        (self.pick.hash_one(key) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Loc> {
        self.tables[self.table(key)].get(key)
    }

    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Loc> {
        let t = self.table(key);
        self.tables[t].get_mut(key)
    }

    pub(super) fn insert(&mut self, key: Key, loc: Loc) -> Option<Loc> {
        let t = self.table(key.bytes());
        self.tables[t].insert(key, loc)
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Loc> {
        let t = self.table(key);
        self.tables[t].remove(key)
    }

    pub(super) fn remove_entry(&mut self, key: &[u8]) -> Option<(Key, Loc)> {
        let t = self.table(key);
        self.tables[t].remove_entry(key)
    }

    pub(super) fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    /// Makes room for about `more` keys in all (spread evenly, as the hash spreads them).
    pub(super) fn reserve(&mut self, more: usize) {
        let each = more.div_ceil(SHARDS);
        for table in &mut self.tables {
            table.reserve(each);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Loc)> {
        self.tables.iter().flat_map(HashMap::iter)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Loc> {
        self.tables.iter().flat_map(HashMap::values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dir;

    #[test]
    fn behaves_as_one_map_spread_over_every_table() {
        let dir = Dir::temporary().unwrap();
        let seg = Segment::open(&dir, "s".into()).unwrap();
        let loc = |n: u64| Loc {
            seg: seg.clone(),
            value_offset: n,
            value_len: 0,
            op_bytes: 1,
            expires_ms: 0,
        };
        let mut map = Shards::default();
        // About 390 keys a table: the odds that any holds under half of that are below 1e-15.
        const KEYS: u64 = 400_000;
        map.reserve(KEYS as usize);
        for n in 0..KEYS {
            assert!(map.insert(Key::new(&n.to_be_bytes()), loc(n)).is_none());
        }
        assert!(
            map.tables
                .iter()
                .all(|t| t.len() > KEYS as usize / SHARDS / 2),
            "spread over every table"
        );
        assert_eq!(map.len(), KEYS as usize);
        for n in (0..KEYS).step_by(2) {
            assert_eq!(
                map.remove(&n.to_be_bytes()).map(|l| l.value_offset),
                Some(n)
            );
        }
        map.get_mut(&1u64.to_be_bytes()).unwrap().value_offset = 7;
        assert_eq!(map.get(&1u64.to_be_bytes()).unwrap().value_offset, 7);
        assert!(map.get(&2u64.to_be_bytes()).is_none());
        assert_eq!(map.len(), KEYS as usize / 2);
        assert_eq!(map.iter().count(), KEYS as usize / 2);
        assert_eq!(
            map.values().filter(|l| l.value_offset % 2 == 1).count(),
            KEYS as usize / 2
        );
        let (key, _) = map.remove_entry(&3u64.to_be_bytes()).unwrap();
        assert_eq!(key.bytes(), 3u64.to_be_bytes());
    }
}
