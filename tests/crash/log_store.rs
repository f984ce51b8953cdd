//! Crash images of a LogStore: puts, batches, segment rolls and compaction.
