//! A multi-slot register of one fixed-size byte value: the byte layer under `Journal<T>`
//! and the state record (durable length, counts) of every other primitive.
//!
//! # File layout
//! ```text
//! 0                    512     header page: 64-byte header (kind Register,
//!                              params: value bytes, slot count), zero padded
//! 512 + k * stride     stride  slot k, for k in 0..SLOTS:
//!                                0        8  sequence number, u64 LE (0 = never written)
//!                                8        V  value bytes
//!                                8 + V    8  checksum, XXH3-64 of (k as u64 LE, seq, value)
//!                              zero padded to `stride` = the slot rounded up to 512 bytes
//! ```
//! Each slot has its own 512-byte sectors, so a torn write of one slot cannot touch
//! another. The slot index is inside the checksum, so a slot copied to the wrong place is
//! caught too.
//!
//! # Durability
//! `set` only changes memory. `sync` writes the newest value to the slot chosen by
//! [`slots::write_target`] (never the slot holding the newest durable copy) and then
//! `fdatasync`s. A crash during `sync` leaves that slot torn, and open falls back to the
//! previous durable value. Between syncs at most one slot write is ever in flight.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::raw::files;
use crate::raw::header::{HEADER_BYTES, Header, Kind, read_u64, write_u64};
use crate::raw::poison::Poison;
use crate::raw::slots;
use crate::raw::sync;

/// Slots per register file.
pub(crate) const SLOTS: usize = 4;
const SECTOR: usize = 512;
const HEADER_PAGE: usize = SECTOR;
const SEQ_AT: usize = 0;
const VALUE_AT: usize = SEQ_AT + 8;
const _: () = assert!(HEADER_BYTES <= HEADER_PAGE);

const PARAM_VALUE_BYTES: usize = 0;
const PARAM_SLOTS: usize = 1;

/// What open found in the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The slot whose value was taken, if any was valid.
    pub slot: Option<usize>,
    /// How many slots held a valid copy.
    pub valid: usize,
    /// How many slots hold any byte other than zero (written at some time).
    pub written: usize,
}

#[derive(Debug)]
struct Value {
    bytes: Vec<u8>,
    dirty: bool,
}

#[derive(Debug)]
struct Slots {
    seqs: [Option<u64>; SLOTS],
    // Opened by the first sync and kept: a register that is only read (a finished log
    // segment's length) holds no descriptor.
    file: Option<File>,
}

/// A checksummed multi-slot register file.
#[derive(Debug)]
pub(crate) struct Register {
    path: PathBuf,
    value_bytes: usize,
    value: Mutex<Value>,
    // Held for the whole of a sync, so that slot writes never overlap.
    slots: Mutex<Slots>,
    poison: Poison,
    recovery: Recovery,
}

fn stride(value_bytes: usize) -> usize {
    (VALUE_AT + value_bytes + 8).next_multiple_of(SECTOR)
}

fn file_len(value_bytes: usize) -> usize {
    HEADER_PAGE + SLOTS * stride(value_bytes)
}

fn slot_checksum(index: usize, seq: u64, value: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(index as u64).to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(value);
    h.digest()
}

/// Decodes slot `index` from its bytes: its sequence number if the checksum holds. A
/// sequence of `u64::MAX` is never written (it would take 2^64 syncs) and would leave no
/// successor for the next sync: only a crafted file holds one, and it counts as invalid.
fn decode_slot(index: usize, slot: &[u8], value_bytes: usize) -> Option<u64> {
    let seq = read_u64(slot, SEQ_AT);
    let value = &slot[VALUE_AT..VALUE_AT + value_bytes];
    let sum = read_u64(slot, VALUE_AT + value_bytes);
    (seq != 0 && seq != u64::MAX && sum == slot_checksum(index, seq, value)).then_some(seq)
}

impl Register {
    /// Opens or creates `dir/file_name` holding a value of `value_bytes` bytes. A new
    /// register holds all zeros.
    ///
    /// # Errors
    /// `Corrupted` for a damaged header or a file of the wrong length; `Incompatible` for
    /// another value size; `Io`.
    pub(crate) fn open(dir: &Path, file_name: &str, value_bytes: usize) -> Result<Register> {
        let path = dir.join(file_name);
        let bytes = match files::read_if_exists(&path)? {
            Some(bytes) => bytes,
            None => {
                let mut fresh = vec![0u8; file_len(value_bytes)];
                let header =
                    Header::new(Kind::Register, [value_bytes as u64, SLOTS as u64, 0, 0, 0]);
                fresh[..HEADER_BYTES].copy_from_slice(&header.encode());
                files::write_atomically(dir, file_name, &fresh)?;
                fresh
            }
        };
        let header = Header::decode(&bytes, &path, Kind::Register)?;
        header.expect_param(
            &path,
            PARAM_VALUE_BYTES,
            value_bytes as u64,
            "value size in bytes",
        )?;
        header.expect_param(&path, PARAM_SLOTS, SLOTS as u64, "slot count")?;
        if bytes.len() != file_len(value_bytes) {
            return Err(Error::corrupted(
                &path,
                bytes.len().min(file_len(value_bytes)) as u64,
                format!(
                    "register file is {} bytes, expected {}",
                    bytes.len(),
                    file_len(value_bytes)
                ),
            ));
        }
        let mut seqs = [None; SLOTS];
        for (k, seq) in seqs.iter_mut().enumerate() {
            let at = HEADER_PAGE + k * stride(value_bytes);
            *seq = decode_slot(k, &bytes[at..at + stride(value_bytes)], value_bytes);
        }
        let chosen = slots::newest(&seqs);
        let value = match chosen {
            Some(k) => {
                let at = HEADER_PAGE + k * stride(value_bytes) + VALUE_AT;
                bytes[at..at + value_bytes].to_vec()
            }
            None => vec![0u8; value_bytes],
        };
        let poison = Poison::new(&path);
        Ok(Register {
            path,
            value_bytes,
            value: Mutex::new(Value {
                bytes: value,
                dirty: false,
            }),
            slots: Mutex::new(Slots { seqs, file: None }),
            poison,
            recovery: Recovery {
                slot: chosen,
                valid: seqs.iter().flatten().count(),
                written: (0..SLOTS)
                    .filter(|k| {
                        let at = HEADER_PAGE + k * stride(value_bytes);
                        bytes[at..at + stride(value_bytes)].iter().any(|&b| b != 0)
                    })
                    .count(),
            },
        })
    }

    /// The value size recorded in the header of the register `file_name` in `dir`, or
    /// `None` if there is no such file: tells an owner which format of its own it holds.
    ///
    /// # Errors
    /// `Corrupted` for a damaged header; `Io`.
    pub(crate) fn stored_value_bytes(dir: &Path, file_name: &str) -> Result<Option<u64>> {
        let path = dir.join(file_name);
        let Some(bytes) = files::read_if_exists(&path)? else {
            return Ok(None);
        };
        let header = Header::decode(&bytes, &path, Kind::Register)?;
        Ok(Some(header.params[PARAM_VALUE_BYTES]))
    }

    /// Refuses to open (and so create) the register `file_name` in `dir` if it is
    /// missing while `data_exists`. A structure creates its register, durably, before
    /// any other file of its own, so other files without it mean it was lost (deleted):
    /// starting over empty would hide or overwrite what they hold.
    ///
    /// # Errors
    /// `Corrupted` naming the missing register; `Io` if the directory cannot be read;
    /// any error of `data_exists`.
    pub(crate) fn refuse_lost(
        dir: &Path,
        file_name: &str,
        data_exists: impl FnOnce() -> Result<bool>,
    ) -> Result<()> {
        let path = dir.join(file_name);
        let present = path
            .try_exists()
            .map_err(|e| Error::io(&path, "look for the register", e))?;
        if !present && data_exists()? {
            return Err(Error::corrupted(
                &path,
                0,
                "register is missing but its structure's data files exist (was it \
                 deleted?): refusing to start over on top of them",
            ));
        }
        Ok(())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What open found.
    pub(crate) fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Runs `f` on the current value (the last one set, durable or not).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.value.lock().bytes)
    }

    /// Changes the current value in memory; [`sync`](Self::sync) makes it durable.
    ///
    /// # Errors
    /// `Poisoned` after a failed sync.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.poison.check()?;
        let mut value = self.value.lock();
        value.dirty = true;
        Ok(f(&mut value.bytes))
    }

    /// Closes the file descriptor the first sync opened; the next sync opens it again.
    pub(crate) fn close(&self) {
        self.slots.lock().file = None;
    }

    /// Makes the current value durable. Returns at once if nothing changed since the last
    /// sync.
    ///
    /// # Errors
    /// `Io` if the write or fdatasync fails, after which the register is poisoned;
    /// `Poisoned` after an earlier failure.
    pub(crate) fn sync(&self) -> Result<()> {
        self.poison.check()?;
        let mut slots = self.slots.lock();
        let snapshot = {
            let mut value = self.value.lock();
            if !value.dirty {
                return Ok(());
            }
            value.dirty = false;
            value.bytes.clone()
        };
        let target = slots::write_target(&slots.seqs);
        let seq = slots.seqs.iter().flatten().max().copied().unwrap_or(0) + 1;
        let mut slot = vec![0u8; stride(self.value_bytes)];
        write_u64(&mut slot, SEQ_AT, seq);
        slot[VALUE_AT..VALUE_AT + self.value_bytes].copy_from_slice(&snapshot);
        write_u64(
            &mut slot,
            VALUE_AT + self.value_bytes,
            slot_checksum(target, seq, &snapshot),
        );
        let at = (HEADER_PAGE + target * stride(self.value_bytes)) as u64;
        // The target slot's old copy is gone from here on, whatever happens.
        slots.seqs[target] = None;
        let written = (|| {
            let file = match &mut slots.file {
                Some(file) => file,
                none => none.insert(files::open_existing(&self.path, "open register")?),
            };
            file.write_all_at(&slot, at)
                .map_err(|e| Error::io(&self.path, "write register slot", e))?;
            sync::file_data(file, &self.path, "fdatasync register")
        })();
        match written {
            Ok(()) => {
                slots.seqs[target] = Some(seq);
                Ok(())
            }
            Err(e) => {
                self.value.lock().dirty = true;
                self.poison.on_error(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopen_and_rotate_slots() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        assert_eq!(r.recovery().slot, None);
        for v in 1..=10u64 {
            r.update(|b| b.copy_from_slice(&v.to_le_bytes())).unwrap();
            r.sync().unwrap();
        }
        drop(r);
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        assert_eq!(r.read(|b| read_u64(b, 0)), 10);
        assert_eq!(r.recovery().valid, SLOTS);
        assert!(matches!(
            Register::open(tmp.path(), "r.acc", 16),
            Err(Error::Incompatible { .. })
        ));
    }

    /// A slot crafted with sequence `u64::MAX` (and a valid checksum) is not trusted, so
    /// the next sync has a successor to write. Found by a crafted-file sweep: `sync`
    /// overflowed.
    #[test]
    fn a_crafted_last_sequence_is_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        r.update(|b| b.copy_from_slice(&5u64.to_le_bytes()))
            .unwrap();
        r.sync().unwrap();
        drop(r);
        let path = tmp.path().join("r.acc");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = HEADER_PAGE + stride(8);
        write_u64(&mut bytes[at..], SEQ_AT, u64::MAX);
        write_u64(&mut bytes[at..], VALUE_AT, 9);
        let sum = slot_checksum(1, u64::MAX, &9u64.to_le_bytes());
        write_u64(&mut bytes[at..], VALUE_AT + 8, sum);
        std::fs::write(&path, &bytes).unwrap();
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        assert_eq!(r.read(|b| read_u64(b, 0)), 5);
        r.update(|b| b.copy_from_slice(&6u64.to_le_bytes()))
            .unwrap();
        r.sync().unwrap();
        drop(r);
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        assert_eq!(r.read(|b| read_u64(b, 0)), 6);
    }

    #[test]
    fn a_torn_newest_slot_yields_the_previous_value() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        for v in [5u64, 6] {
            r.update(|b| b.copy_from_slice(&v.to_le_bytes())).unwrap();
            r.sync().unwrap();
        }
        let newest = slots::newest(&r.slots.lock().seqs).unwrap();
        drop(r);
        let path = tmp.path().join("r.acc");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_PAGE + newest * stride(8) + VALUE_AT] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let r = Register::open(tmp.path(), "r.acc", 8).unwrap();
        assert_eq!(r.read(|b| read_u64(b, 0)), 5);
    }
}
