//! Free space: rust-persist's "optimize". Live records are copied out of the current
//! data generation into a new one while writes go on (they go to the new generation from
//! the start), a batch at a time under the writer lock; then the state stops naming the
//! old generation, which is removed when its last value handle is dropped.
//!
//! Crash safety: the old generation is synced first (no copy becomes durable before
//! the writes that preceded it); the state names both generations (old as `prev_gen`)
//! from before the first copy until the new one is durable. A rebuild replays the old generation, then the
//! new one, so every copy (a record whose key had no later write when it was copied) and
//! every later write land in the order they were made.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLockUpgradableReadGuard;

use super::OptimizeMode;
use super::data::{DataGen, data_name};
use super::index;
use super::record::Kind;
use super::store::{Inner, NO_GEN};
use crate::{AppendOnly, Result};

/// Records examined per hold of the writer lock.
const BATCH_RECORDS: usize = 512;

/// Resets the store's `optimizing` flag when an optimisation ends, however it ends.
struct Running<'a>(&'a Inner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.optimizing.store(false, Ordering::Release);
    }
}

impl Inner {
    /// Whether dead bytes are more than half of the data log, not counting the dead
    /// bytes the last optimisation left (padding it cannot free).
    pub fn wasteful(&self) -> bool {
        let data_bytes = self.shared.read().data_bytes();
        let floor = self.dead_floor.load(Ordering::Acquire);
        self.live_bytes.load(Ordering::Acquire).saturating_mul(2) < data_bytes.saturating_sub(floor)
    }

    /// Runs an optimisation if `mode` calls for one; returns whether it ran. An
    /// optimisation already running on another thread makes this return `false` at once.
    pub fn optimize(&self, mode: OptimizeMode) -> Result<bool> {
        if self.optimizing.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let _running = Running(self);
        let under_way = self.shared.read().prev.is_some();
        if !under_way {
            let mut g = self.lock_writer("HashStore::optimize")?;
            if mode == OptimizeMode::Normal && !self.wasteful() {
                return Ok(false);
            }
            self.make_dirty(&mut g.w)?;
            let current = Arc::clone(&self.shared.read().data);
            let number = current.number + 1;
            // Files an optimisation cut short in this session may have left.
            self.dir.remove(&data_name(&self.name, number))?;
            let next = Arc::new(DataGen::open(
                &self.dir,
                &self.name,
                number,
                self.store_id,
                true,
            )?);
            // Its first record durable before the state names it: a generation the state
            // names is never empty, unless its files were lost.
            next.log.sync()?;
            // Every write so far made durable before any copy can be: a copy is of the
            // newest write of its key, and the copies' flush must not make it durable
            // while an older, unsynced write of another key (a delete, say) could still
            // be lost, which would recover a state no prefix of the writes had (found by
            // the crash images).
            current.log.sync()?;
            self.state.update(|st| {
                st.prev_gen = current.number;
                st.data_gen = number;
            })?;
            self.state.sync()?;
            let mut s = self.shared.write();
            s.prev = Some(current);
            s.data = next;
        }
        self.move_prev()?;
        Ok(true)
    }

    /// Copies every live record of the previous generation into the current one, then
    /// drops the previous generation from the state. Nothing to do without one.
    pub fn move_prev(&self) -> Result<()> {
        let Some(prev) = self.shared.read().prev.clone() else {
            return Ok(());
        };
        let mut records = prev.log.records(0);
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        loop {
            batch.clear();
            for span in records.by_ref().take(BATCH_RECORDS) {
                batch.push(span?.offset());
            }
            if batch.is_empty() {
                break;
            }
            let _g = self.lock_writer("HashStore::optimize")?;
            let s = self.shared.upgradable_read();
            let data = Arc::clone(&s.data);
            let mut moves = Vec::with_capacity(batch.len());
            for &offset in &batch {
                let rec = prev.read(offset)?;
                if rec.header.kind != Kind::Put {
                    continue;
                }
                let tag = self.tag(rec.header.key(rec.bytes));
                let at = index::position(prev.number, offset);
                if let Some((slot, _)) = s.index.find(tag, |pos| Ok(pos == at))? {
                    let (copied, _) = data.append_copy(rec.bytes)?;
                    moves.push((slot, index::position(data.number, copied)));
                }
            }
            let s = RwLockUpgradableReadGuard::upgrade(s);
            for (slot, pos) in moves {
                s.index.replace(slot, pos).map_err(|e| self.poison(e))?;
            }
        }
        // The copies must be durable before the state stops naming their originals.
        let _g = self.lock_writer("HashStore::optimize")?;
        let data = Arc::clone(&self.shared.read().data);
        data.log.sync()?;
        self.state.update(|st| st.prev_gen = NO_GEN)?;
        self.state.sync()?;
        let old = self.shared.write().prev.take();
        if let Some(old) = old {
            old.retire();
        }
        let dead = data
            .log
            .len()
            .next_multiple_of(AppendOnly::FRAME_BYTES)
            .saturating_sub(self.live_bytes.load(Ordering::Acquire));
        self.dead_floor.store(dead, Ordering::Release);
        Ok(())
    }
}
