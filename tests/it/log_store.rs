//! LogStore through its public API: seeded models against a BTreeMap, the EdgeKV
//! regressions, merges from many threads, time to live, limits.
