//! AppendOnly: a byte buffer that only grows. Written bytes never move, so the `&[u8]` it
//! hands out live as long as the buffer, while other threads keep appending.
//!
//! It owns `data-NN.acc` (the lanes) and `length.acc` (a register holding the durable
//! length). It knows nothing of record framing: callers keep the [`Span`]s.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};
use parking_lot::Mutex;

use crate::dir::{Claim, Dir};
use crate::error::{Error, Result};
use crate::limits::{APPEND_LANE_BASE_BYTES, RECORD_ALIGN_BYTES_MAX, RECORD_LEN_BYTES_MAX};
use crate::raw::frame::{EPOCH_MAX, FRAME_ALIGN};
use crate::raw::header::{read_u32, read_u64, write_u32, write_u64};
use crate::raw::lanes::arena::{self, Arena, Framing, Step};
use crate::raw::lanes::{LANE_DATA_OFFSET, Lanes};
use crate::raw::poison::Poison;
use crate::raw::register::Register;

const LENGTH_FILE: &str = "length.acc";
const LANE_PREFIX: &str = "data";

/// The format this build writes: records behind frames (`raw/frame.rs`).
const APPEND_FORMAT: u32 = 2;
/// `length.acc` of format 1: the durable length alone.
const REGISTER_V1_BYTES: u64 = 8;
/// `length.acc` of format 2, see [`Recorded`].
const REGISTER_BYTES: u64 = 32;
/// A sync also records the length in `length.acc` once the bytes past the recorded
/// length reach this: what an open walks frame by frame stays below it.
const TAIL_RECORD_BYTES: u64 = 4 << 20;
/// An append first syncs when this many bytes are not yet synced, so that an open after
/// a crash never walks more than about this much (plus [`TAIL_RECORD_BYTES`]).
const UNSYNCED_BYTES_MAX: u64 = 64 << 20;

/// The value of a format-2 `length.acc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Recorded {
    /// 0 for a register never written (a creation cut short), else 2.
    format: u32,
    /// The newest epoch any writer took.
    epoch: u32,
    /// The epoch of the last record below `length`.
    last_epoch: u32,
    /// Bit 0: the buffer is sealed (the seal lies below `length`).
    flags: u32,
    /// Bytes whose frames were durable when recorded: an open walks from here.
    length: u64,
    /// Random at creation; seeds every frame's checksum.
    nonce: u64,
}

impl Recorded {
    fn read(b: &[u8]) -> Recorded {
        Recorded {
            format: read_u32(b, 0),
            epoch: read_u32(b, 4),
            last_epoch: read_u32(b, 8),
            flags: read_u32(b, 12),
            length: read_u64(b, 16),
            nonce: read_u64(b, 24),
        }
    }

    fn write(&self, b: &mut [u8]) {
        write_u32(b, 0, self.format);
        write_u32(b, 4, self.epoch);
        write_u32(b, 8, self.last_epoch);
        write_u32(b, 12, self.flags);
        write_u64(b, 16, self.length);
        write_u64(b, 24, self.nonce);
    }
}

/// Where a record lies in an [`AppendOnly`]: a byte offset and a length.
///
/// Plain data (`Pod`), so spans can themselves be stored in other primitives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct Span {
    offset: u64,
    len: u64,
}

impl Span {
    /// The span of `len` bytes at `offset`.
    pub const fn new(offset: u64, len: u64) -> Span {
        Span { offset, len }
    }

    /// Byte offset of the first byte.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length span.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset one past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// A grow-only byte buffer, shared by any number of threads.
///
/// Records are appended at the end and never move or change, so [`get`](Self::get)
/// returns a `&[u8]` that stays valid for the life of the buffer, even as it grows across
/// new lane files. A record never straddles two lanes.
///
/// # Durability
/// [`append`](Self::append) writes into mapped memory and is visible to every thread at
/// once. Every record goes behind a 16-byte frame whose checksum covers the record, its
/// position and this buffer, so records prove themselves: [`sync`](Self::sync) is one
/// flush (an msync of the bytes appended since the last sync), and the length is recorded
/// in `length.acc` lazily. A record that another thread is still copying when `sync`
/// starts is not covered. After a failed sync the buffer refuses writes
/// (`Error::Poisoned`) until reopened.
///
/// An append that returned survives a drop without sync and the death of the process: a
/// reopen, in this process or another, walks the frames past the recorded length and
/// adopts every whole record, in order. Only a power loss or an OS crash can take records
/// not yet synced, and then it takes a suffix: the buffer reopens holding a prefix of
/// what was appended that holds every synced record, never a torn one.
///
/// ```
/// let dir = accretion::Dir::temporary()?;
/// let buf = accretion::AppendOnly::open(&dir, "buf")?;
/// let a = buf.append(b"first")?;
/// let b = buf.append_aligned(&7u64.to_le_bytes(), 8)?;
/// assert_eq!(buf.get(a)?, b"first");
/// assert_eq!(b.offset() % 8, 0);
/// buf.sync()?;
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// A borrowed record cannot outlive the buffer:
/// ```compile_fail
/// let dir = accretion::Dir::temporary().unwrap();
/// let buf = accretion::AppendOnly::open(&dir, "buf").unwrap();
/// let span = buf.append(b"x").unwrap();
/// let bytes = buf.get(span).unwrap();
/// drop(buf);
/// println!("{bytes:?}");
/// ```
#[derive(Debug)]
pub struct AppendOnly {
    arena: Arena,
    length: Register,
    durable: AtomicU64,
    /// Format 2: the length `length.acc` records (the walk at open starts there).
    recorded: AtomicU64,
    /// Format 2: where the walk at open ended, and the epoch of the record before.
    adopted: (u64, u32),
    /// Bytes past the recorded length that the open adopted (format 2).
    adopted_bytes: u64,
    sync_lock: Mutex<()>,
    /// Held while taking an epoch.
    epoch_lock: Mutex<()>,
    poison: Poison,
    /// Byte ranges below the durable length that open found missing (see `restored`).
    restored: Vec<Span>,
    // Holds the name (and the directory lock) while the buffer is open.
    _claim: Claim,
}

impl AppendOnly {
    /// Bytes of the frame in front of every record of a format-2 buffer (records and
    /// frames start at multiples of it): a record of `n` bytes appended at length `l`
    /// ends at `l` rounded up to 16, plus 16, plus `n` (alignments up to 16, in one lane).
    pub const FRAME_BYTES: u64 = crate::raw::frame::FRAME_BYTES;

    /// A sync also records the length in `length.acc` once the bytes past the recorded
    /// length reach this (4 MiB): what an open walks frame by frame stays below it.
    pub const TAIL_RECORD_BYTES: u64 = TAIL_RECORD_BYTES;

    /// An append first syncs when this many bytes (64 MiB) are not yet synced, so that an
    /// open after a crash never walks much more.
    pub const UNSYNCED_BYTES_MAX: u64 = UNSYNCED_BYTES_MAX;

    /// Opens or creates the buffer at `name` in `dir`.
    ///
    /// A data file cut short past the durable length (a torn tail: those bytes were never
    /// trusted) is restored to its size. One cut short below it is `Corrupted`: see
    /// [`open_restoring`](Self::open_restoring) for owners whose records carry checksums.
    ///
    /// # Errors
    /// `Corrupted` if `length.acc` is damaged beyond recovery, or missing while data
    /// files exist, or a data file lacks bytes below the durable length; `Io`.
    pub fn open(dir: &Dir, name: &str) -> Result<AppendOnly> {
        Self::open_inner(dir, name, false, false).map(|(buf, _)| buf)
    }

    /// Opens as [`open`](Self::open) does, except that a data file cut short *below* the
    /// durable length is restored too: what it lacked reads as zeros from then on, and
    /// [`restored`](Self::restored) lists the ranges. For owners whose records carry
    /// checksums (a log store's), so that the damage costs the records in those ranges,
    /// not the whole buffer. The file is restored durably: a later open finds nothing
    /// missing, so the owner should act on (and report) the ranges at this open.
    ///
    /// # Errors
    /// As [`open`](Self::open), less the short data file.
    pub fn open_restoring(dir: &Dir, name: &str) -> Result<AppendOnly> {
        Self::open_inner(dir, name, true, false).map(|(buf, _)| buf)
    }

    /// Opens as [`open`](Self::open) does, and also looks past the end the open adopted
    /// for records whose frames hold: the walk at open adopts records up to the first
    /// frame that does not hold, so records after a damaged frame (or after a hole that a
    /// crash left among concurrent appends) are dropped, and the next append writes over
    /// them. Returns the first such record's position, if any (always `None` for a
    /// format-1 buffer, which has no frames). Reads every byte past the end of the lanes
    /// that exist: for checks (`catalog::verify`), not for every open.
    ///
    /// ```
    /// let dir = accretion::Dir::temporary()?;
    /// let buf = accretion::AppendOnly::open(&dir, "b")?;
    /// buf.append(b"one")?;
    /// buf.sync()?;
    /// drop(buf);
    /// let (buf, past) = accretion::AppendOnly::open_looking_past_end(&dir, "b")?;
    /// assert_eq!((buf.len() > 0, past), (true, None));
    /// # Ok::<(), accretion::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_looking_past_end(dir: &Dir, name: &str) -> Result<(AppendOnly, Option<u64>)> {
        Self::open_inner(dir, name, false, true)
    }

    fn open_inner(
        dir: &Dir,
        name: &str,
        restore_below: bool,
        look_past: bool,
    ) -> Result<(AppendOnly, Option<u64>)> {
        let mut past = None;
        // Before the claim, which makes the name's directories; again under it, for an
        // open of another kind that made its files meanwhile.
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::AppendOnly)?;
        let claim = dir.claim(name)?;
        crate::catalog::admit_primitive(dir, name, crate::catalog::Kind::AppendOnly)?;
        let lanes = Lanes::new(claim.path(), LANE_PREFIX, 1, APPEND_LANE_BASE_BYTES);
        Register::refuse_lost(claim.path(), LENGTH_FILE, || lanes.first_exists())?;
        let value_bytes = Register::stored_value_bytes(claim.path(), LENGTH_FILE)?;
        let framed = match value_bytes {
            Some(REGISTER_V1_BYTES) => false,
            None | Some(REGISTER_BYTES) => true,
            Some(other) => {
                return Err(Error::Incompatible {
                    path: claim.path().join(LENGTH_FILE),
                    what: format!("a length record of {other} bytes is no AppendOnly's"),
                });
            }
        };
        let length = Register::open(
            claim.path(),
            LENGTH_FILE,
            if framed {
                REGISTER_BYTES
            } else {
                REGISTER_V1_BYTES
            } as usize,
        )?;
        let poison = Poison::new(claim.path());
        let (len, framing, tail) = if framed {
            let mut rec = length.read(Recorded::read);
            let mut fresh_epoch = 0;
            if rec.format == 0 {
                // Never written: a new buffer (or a creation cut short, before any lane).
                if lanes.first_exists()? {
                    return Err(Error::corrupted(
                        length.path(),
                        0,
                        "the length record was never written but data files exist",
                    ));
                }
                rec = Recorded {
                    format: APPEND_FORMAT,
                    epoch: 1,
                    nonce: rand::random(),
                    ..Recorded::default()
                };
                length.update(|b| rec.write(b))?;
                length.sync()?;
                // A buffer made ahead (a log segment) holds no descriptor until it syncs.
                length.close();
                fresh_epoch = 1;
            } else if rec.format != APPEND_FORMAT {
                return Err(Error::UnsupportedVersion {
                    path: length.path().to_path_buf(),
                    found: rec.format,
                    supported: APPEND_FORMAT,
                });
            }
            if rec.last_epoch > rec.epoch || rec.epoch > EPOCH_MAX {
                return Err(Error::corrupted(
                    length.path(),
                    0,
                    format!(
                        "epochs {} (last) and {} (newest) are impossible",
                        rec.last_epoch, rec.epoch
                    ),
                ));
            }
            if rec.length > lanes.capacity_max() {
                return Err(Error::corrupted(
                    length.path(),
                    0,
                    format!("length {} is past what the lanes can hold", rec.length),
                ));
            }
            lanes.restore_from(if restore_below { 0 } else { rec.length });
            let sealed_below = rec.flags & 1 != 0;
            let tail = if sealed_below {
                arena::Tail {
                    end: rec.length,
                    last_epoch: rec.last_epoch,
                    sealed: true,
                }
            } else {
                let tail =
                    arena::scan_tail(&lanes, rec.nonce, rec.length, rec.last_epoch, rec.epoch)?;
                if look_past {
                    past =
                        arena::scan_past(&lanes, rec.nonce, tail.end, tail.last_epoch, rec.epoch)?;
                }
                tail
            };
            let framing = Framing {
                nonce: rec.nonce,
                epoch: AtomicU32::new(fresh_epoch),
            };
            (rec.length, Some(framing), tail)
        } else {
            let len = length.read(|b| read_u64(b, 0));
            lanes.restore_from(if restore_below { 0 } else { len });
            let tail = arena::Tail {
                end: len,
                last_epoch: 0,
                sealed: false,
            };
            (len, None, tail)
        };
        // Every lane below the recorded length must be there and intact.
        if len > 0 {
            let lane = lanes.locate(len - 1).map(|(lane, _)| lane);
            if !lane.is_some_and(|lane| lanes.exists(lane).unwrap_or(false)) {
                return Err(Error::corrupted(
                    length.path(),
                    0,
                    format!("length {len} but data is missing"),
                ));
            }
        }
        let arena = match framing {
            Some(framing) => Arena::framed(lanes, tail.end, framing, tail.sealed),
            None => Arena::new(lanes, len),
        };
        // Map every lane below the length now, so that a short lane file (damage) is found
        // and restored at open, not at some later read.
        arena.lanes().open_below(tail.end)?;
        let restored = arena
            .lanes()
            .restored()
            .into_iter()
            .filter(|&(start, _)| start < tail.end)
            .map(|(start, end)| Span::new(start, end.min(tail.end) - start))
            .collect();
        let buf = AppendOnly {
            arena,
            length,
            durable: AtomicU64::new(tail.end),
            recorded: AtomicU64::new(len),
            adopted: (tail.end, tail.last_epoch),
            adopted_bytes: tail.end - len,
            sync_lock: Mutex::new(()),
            epoch_lock: Mutex::new(()),
            poison,
            restored,
            _claim: claim,
        };
        Ok((buf, past))
    }

    /// Takes this session's epoch before its first append (format 2): the newest epoch
    /// plus one, recorded durably before any frame carries it, so that no two sessions
    /// ever write the same epoch. Costs one register sync, once per open.
    fn take_epoch(&self) -> Result<()> {
        let Some(framing) = self.arena.framing() else {
            return Ok(());
        };
        if framing.epoch.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        let _one = self.epoch_lock.lock();
        let _no_sync = self.sync_lock.lock();
        if framing.epoch.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        self.poison.check()?;
        let newest = self.length.read(Recorded::read).epoch + 1;
        if newest > EPOCH_MAX {
            return Err(Error::limit(
                "AppendOnly epochs (opens that wrote)",
                u64::from(newest),
                u64::from(EPOCH_MAX),
            ));
        }
        self.poison.on_error(
            self.length
                .update(|b| write_u32(b, 4, newest))
                .and_then(|()| self.length.sync()),
        )?;
        framing.epoch.store(newest, Ordering::Release);
        Ok(())
    }

    /// Before an append: takes the epoch if needed, and syncs first if too much is
    /// unsynced (see [`UNSYNCED_BYTES_MAX`]).
    fn before_append(&self) -> Result<()> {
        if self.arena.framing().is_none() {
            return Ok(());
        }
        self.take_epoch()?;
        // Saturating: a sync on another thread may move `durable` past the `published`
        // read here (an underflow panicked in debug builds).
        let durable = self.durable.load(Ordering::Acquire);
        if self.arena.published().saturating_sub(durable) > UNSYNCED_BYTES_MAX {
            self.sync()?;
        }
        Ok(())
    }

    /// Appends `bytes` and returns where they landed.
    ///
    /// # Errors
    /// `LimitExceeded` beyond [`RECORD_LEN_BYTES_MAX`] or when the lanes are exhausted;
    /// `Io` if a new lane cannot be created (a full disk is `StorageFull`, see
    /// [`Error::is_storage_full`]); `Poisoned` after a failed sync; `Reentrant` from
    /// inside a fill of [`append_with`](Self::append_with) on the same buffer.
    pub fn append(&self, bytes: &[u8]) -> Result<Span> {
        self.append_with(bytes.len(), 1, |_, dest| dest.copy_from_slice(bytes))
    }

    /// Appends `bytes` at an offset that is a multiple of `align` (a power of two up to
    /// [`RECORD_ALIGN_BYTES_MAX`]). Since lanes start on page boundaries, the memory
    /// address of the record is aligned the same way.
    ///
    /// # Errors
    /// As [`append`](Self::append); `LimitExceeded` for a bad alignment.
    pub fn append_aligned(&self, bytes: &[u8], align: usize) -> Result<Span> {
        self.append_with(bytes.len(), align, |_, dest| dest.copy_from_slice(bytes))
    }

    /// Reserves `len` bytes aligned to `align`, and lets `fill` write them given their
    /// offset. `fill` must write every byte of the slice it gets: it may hold stale bytes
    /// from before a crash. Until `fill` returns, no reader can see the record. A panic in
    /// `fill` publishes the bytes as they are.
    ///
    /// Records are published in the order they were reserved, so a record appended while
    /// `fill` runs waits for this one. An append to the same buffer made by `fill` on its
    /// own thread is therefore refused with `Reentrant`. Restriction (a deadlock, not
    /// detected): `fill` must not hand an append to the same buffer to another thread
    /// and wait for it.
    ///
    /// ```
    /// let dir = accretion::Dir::temporary()?;
    /// let buf = accretion::AppendOnly::open(&dir, "buf")?;
    /// let mut inner = None;
    /// let span = buf.append_with(4, 1, |_, dest| {
    ///     dest.copy_from_slice(b"abcd");
    ///     inner = Some(buf.append(b"nested"));
    /// })?;
    /// assert!(matches!(inner, Some(Err(accretion::Error::Reentrant { .. }))));
    /// assert_eq!(buf.get(span)?, b"abcd");
    /// # Ok::<(), accretion::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`append_aligned`](Self::append_aligned); `Reentrant` if called from a `fill`
    /// of the same buffer on the same thread.
    pub fn append_with(
        &self,
        len: usize,
        align: usize,
        fill: impl FnOnce(u64, &mut [u8]),
    ) -> Result<Span> {
        self.poison.check()?;
        let len = len as u64;
        if len > RECORD_LEN_BYTES_MAX {
            return Err(Error::limit(
                "RECORD_LEN_BYTES_MAX",
                len,
                RECORD_LEN_BYTES_MAX,
            ));
        }
        let align = align as u64;
        if !align.is_power_of_two() || align > RECORD_ALIGN_BYTES_MAX {
            return Err(Error::limit(
                "RECORD_ALIGN_BYTES_MAX",
                align,
                RECORD_ALIGN_BYTES_MAX,
            ));
        }
        self.before_append()?;
        let offset = self.arena.append_with(len, align, fill)?;
        Ok(Span::new(offset, len))
    }

    /// The bytes of `span`, borrowed for the life of the buffer.
    ///
    /// # Errors
    /// `OutOfBounds` if the span is not entirely within appended bytes or straddles two
    /// lanes (no span returned by `append` does); `Io` if a lane cannot be mapped.
    pub fn get(&self, span: Span) -> Result<&[u8]> {
        self.arena
            .get(span.offset, span.len)?
            .ok_or_else(|| Error::OutOfBounds {
                what: format!("span {}..{}", span.offset, span.end()),
                len: self.len(),
            })
    }

    /// Hints the processor to start loading the first bytes of `span` (up to 256) into
    /// its cache, so that the misses of several reads overlap. Never fails: a span that is
    /// not (yet) readable is ignored.
    pub fn prefetch(&self, span: Span) {
        if span.end() <= self.arena.published() {
            self.arena.prefetch(span.offset(), span.len());
        }
    }

    /// Tells the buffer that it will not grow past about `bytes`: the helper thread that
    /// creates lanes ahead of the append cursor (and faults their pages in) then prepares
    /// nothing at or past `bytes`. A log segment finished at a known size uses it, so that
    /// no lane it will never reach takes disk space. Appends past `bytes` still work; they
    /// create their lanes themselves.
    pub fn limit_ahead(&self, bytes: u64) {
        self.arena.limit_ahead(bytes);
    }

    /// Creates now the data files that the first `bytes` bytes of the buffer will lie in
    /// (no further than [`limit_ahead`](Self::limit_ahead) allows), so that appends there
    /// do not create them: creating one fsyncs it and its directory, which waits for the
    /// device. For owners that make a buffer ahead of the moment it takes writes.
    ///
    /// # Errors
    /// `Io` if a file cannot be created (a full disk is `StorageFull`).
    pub fn prepare(&self, bytes: u64) -> Result<()> {
        self.arena.prepare(bytes)
    }

    /// The largest length of at most `bytes` that ends where a lane ends (or `bytes`
    /// itself, below the first lane's end). A buffer filled to at most this length holds
    /// no lane past it: lanes double in size (lane `i` holds
    /// [`APPEND_LANE_BASE_BYTES`]` << i` bytes), so a size limit just past a lane's end
    /// would allocate a whole new lane for its last few bytes.
    ///
    /// ```
    /// use accretion::AppendOnly;
    /// use accretion::limits::APPEND_LANE_BASE_BYTES as BASE;
    /// assert_eq!(AppendOnly::fitted_len(64 << 20), (64 << 20) - BASE);
    /// assert_eq!(AppendOnly::fitted_len(BASE * 3), BASE * 3);
    /// assert_eq!(AppendOnly::fitted_len(BASE * 3 - 1), BASE);
    /// assert_eq!(AppendOnly::fitted_len(100), 100);
    /// ```
    pub fn fitted_len(bytes: u64) -> u64 {
        if bytes < APPEND_LANE_BASE_BYTES {
            return bytes;
        }
        // Lanes 0..k end at BASE * (2^k - 1).
        let units = bytes / APPEND_LANE_BASE_BYTES + 1;
        let k = 63 - units.leading_zeros();
        APPEND_LANE_BASE_BYTES * ((1u64 << k) - 1)
    }

    /// Closes the descriptor the buffer keeps open for its syncs (its length file's,
    /// opened by the first sync). The next sync, if any, opens it again. For owners that
    /// keep many buffers that are done growing (a log store's finished segments), so
    /// that they hold no descriptor each. Data files hold none once mapped.
    pub fn close_descriptors(&self) {
        let _one_at_a_time = self.sync_lock.lock();
        self.length.close();
    }

    /// The data file holding byte `offset` of the buffer, and that byte's position in
    /// the file: for error messages that name where damage is. `None` past the last
    /// possible lane.
    pub fn file_position(&self, offset: u64) -> Option<(std::path::PathBuf, u64)> {
        let lanes = self.arena.lanes();
        let (lane, within) = lanes.locate(offset)?;
        Some((lanes.lane_path(lane), LANE_DATA_OFFSET + within))
    }

    /// Bytes appended so far (including alignment padding), all readable.
    pub fn len(&self) -> u64 {
        self.arena.published()
    }

    /// True if nothing was ever appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte ranges below the durable length that [`open_restoring`](Self::open_restoring)
    /// found missing and restored: what a data file shorter than its size (damage: files
    /// are created whole) lacked reads as zeros from then on. Empty for an undamaged
    /// buffer, and always after [`open`](Self::open), which refuses such damage.
    pub fn restored(&self) -> &[Span] {
        &self.restored
    }

    /// Bytes covered by the last successful sync: what a crash now would keep.
    pub fn durable_len(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The appended bytes as one slice per lane, in order: `(offset, bytes)`. Padding
    /// between records (for alignment, or at a lane's end) reads as zeros.
    pub fn chunks(&self) -> impl Iterator<Item = Result<(u64, &[u8])>> + '_ {
        self.arena.chunks()
    }

    /// Makes every record appended before this call durable; see the type's docs.
    ///
    /// # Errors
    /// `Io` if a flush fails (the buffer is then poisoned); `Poisoned`.
    pub fn sync(&self) -> Result<()> {
        self.sync_inner(false)
    }

    /// As [`sync`](Self::sync), and records the length in `length.acc` whatever the tail
    /// past the last recorded length, so that the next open walks nothing: for buffers
    /// that are done growing (a log store's finished segments). Format 1 always records.
    ///
    /// # Errors
    /// As [`sync`](Self::sync).
    pub fn sync_recorded(&self) -> Result<()> {
        self.sync_inner(true)
    }

    fn sync_inner(&self, record: bool) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock();
        self.poison.check()?;
        let from = self.durable.load(Ordering::Acquire);
        let to = self.arena.published();
        let Some(framing) = self.arena.framing() else {
            if to == from {
                return Ok(());
            }
            self.poison
                .on_error(self.arena.flush(from, to).and_then(|()| {
                    self.length.update(|b| write_u64(b, 0, to))?;
                    self.length.sync()
                }))?;
            self.durable.store(to, Ordering::Release);
            return Ok(());
        };
        if to > from {
            // The commit: the frames prove the records, so the data's own flush is all
            // a durable append needs.
            self.poison.on_error(self.arena.flush(from, to))?;
            self.durable.store(to, Ordering::Release);
        }
        let recorded = self.recorded.load(Ordering::Acquire);
        if to > recorded && (record || to - recorded >= TAIL_RECORD_BYTES) {
            let last_epoch = if to > self.adopted.0 {
                framing.epoch.load(Ordering::Acquire)
            } else {
                self.adopted.1
            };
            // Sealed only if the seal lies below `to`: a seal reserved but not yet
            // published may have records reserved before it still being filled, which
            // an open that trusts the flag would never walk to (found by review).
            let sealed = to >= self.arena.sealed_end();
            self.poison.on_error(
                self.length
                    .update(|b| {
                        write_u64(b, 16, to);
                        write_u32(b, 8, last_epoch);
                        write_u32(b, 12, u32::from(sealed));
                    })
                    .and_then(|()| self.length.sync()),
            )?;
            self.recorded.store(to, Ordering::Release);
        }
        Ok(())
    }

    /// The format of this buffer: 2 for one made by this build, whose
    /// records are framed; 1 for one made before, served as it was (bare bytes, no
    /// frames, only synced appends survive a reopen).
    pub fn format(&self) -> u32 {
        if self.arena.framing().is_some() {
            APPEND_FORMAT
        } else {
            1
        }
    }

    /// Appends a seal: nothing can be appended after it (`Error::Sealed`), and every later
    /// open reports [`is_sealed`](Self::is_sealed). An owner that finishes a buffer seals
    /// it, so that an open can tell a buffer whose end was written from one whose end was
    /// lost (a power loss that kept a later buffer's bytes but not this one's tail).
    ///
    /// # Errors
    /// `Incompatible` for a format-1 buffer; `Sealed` if it is sealed already; as
    /// [`append`](Self::append).
    pub fn seal(&self) -> Result<()> {
        self.poison.check()?;
        if self.arena.framing().is_some() {
            self.take_epoch()?;
        }
        self.arena.seal().map(|_| ())
    }

    /// Whether the buffer is sealed (see [`seal`](Self::seal)).
    pub fn is_sealed(&self) -> bool {
        self.arena.is_sealed()
    }

    /// Bytes this open adopted past the recorded length: records appended by an earlier
    /// session (killed, or dropped without sync) whose frames hold. Always 0 for format 1.
    pub fn adopted_bytes(&self) -> u64 {
        self.adopted_bytes
    }

    /// Bytes flushed to disk by this handle's syncs so far (the msync ranges): a sync
    /// flushes only what was appended since the one before.
    pub fn flushed_bytes(&self) -> u64 {
        self.arena.flushed()
    }

    /// The records of a format-2 buffer from `from` on (0, or the [`Span::end`] of a
    /// record): each frame's checksum is checked, and a frame that does not hold is one
    /// `Corrupted` item (naming its data file and position there), after which the walk
    /// ends. A walk can start again past damage at any record's end an owner finds by its
    /// own means.
    pub fn records(&self, from: u64) -> Records<'_> {
        Records {
            buf: self,
            // Saturating: a `from` past every lane yields nothing rather than overflow.
            at: from.saturating_add(FRAME_ALIGN - 1) / FRAME_ALIGN * FRAME_ALIGN,
            done: false,
        }
    }
}

/// The records of an [`AppendOnly`] in order: see [`AppendOnly::records`].
#[derive(Debug)]
pub struct Records<'a> {
    buf: &'a AppendOnly,
    at: u64,
    done: bool,
}

impl Records<'_> {
    /// The buffer offset of the next frame the walk reads; after a `Corrupted` item, the
    /// offset of the frame that did not hold.
    pub fn position(&self) -> u64 {
        self.at
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Span>;

    fn next(&mut self) -> Option<Result<Span>> {
        if self.done {
            return None;
        }
        if self.buf.arena.framing().is_none() {
            self.done = true;
            return Some(Err(Error::Incompatible {
                path: self.buf.length.path().to_path_buf(),
                what: "a format-1 buffer has no frames to walk".into(),
            }));
        }
        match self.buf.arena.step(self.at) {
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok((Step::Record(offset, len, _), next)) => {
                self.at = next;
                Some(Ok(Span::new(offset, len)))
            }
            Ok((Step::Seal | Step::End, _)) => {
                self.done = true;
                None
            }
            Ok((Step::Bad(at), _)) => {
                self.done = true;
                self.at = at;
                let (path, position) = self
                    .buf
                    .file_position(at)
                    .unwrap_or_else(|| (self.buf.length.path().to_path_buf(), at));
                Some(Err(Error::corrupted(
                    &path,
                    position,
                    format!("the frame of the record at buffer offset {at} does not hold"),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_do_not_straddle_lanes_and_gaps_are_zero() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let base = APPEND_LANE_BASE_BYTES;
        let a = buf.append(&vec![1u8; (base - 48) as usize]).unwrap();
        let b = buf.append(&[2u8; 20]).unwrap();
        assert_eq!(a.offset(), 16, "behind its frame");
        assert_eq!(b.offset(), base + 16, "skipped to lane 1, behind its frame");
        let chunks: Vec<_> = buf.chunks().map(Result::unwrap).collect();
        assert_eq!(chunks.len(), 2);
        // A LaneEnd frame, then zeros to the lane's end.
        let rest = &chunks[0].1[(base - 32) as usize..];
        assert!(rest[..16].iter().any(|x| *x != 0));
        assert!(rest[16..].iter().all(|x| *x == 0));
        // A record bigger than several lanes skips them all.
        let big = buf.append(&vec![3u8; (base * 5) as usize]).unwrap();
        assert_eq!(buf.get(big).unwrap().len(), (base * 5) as usize);
        assert_eq!(buf.get(b).unwrap(), &[2u8; 20]);
        let walked: Vec<_> = buf.records(0).map(Result::unwrap).collect();
        assert_eq!(walked, [a, b, big]);
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let walked: Vec<_> = buf.records(0).map(Result::unwrap).collect();
        assert_eq!(walked, [a, b, big], "adopted on reopen without a sync");
    }

    /// A lane file cut short below the recorded length is refused by `open` and restored
    /// by `open_restoring` (found by review: a log store refused to open), which reports
    /// the missing range. Cut short past the recorded length, `open` restores it.
    #[test]
    fn a_short_lane_is_restored_and_reported() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let base = APPEND_LANE_BASE_BYTES;
        let a = buf.append(&vec![1u8; (base - 32) as usize]).unwrap();
        let b = buf.append(&vec![2u8; 1000]).unwrap();
        buf.sync_recorded().unwrap();
        drop(buf);
        let lane0 = dir.path().join("b").join(format!("{LANE_PREFIX}-00.acc"));
        let cut = 4096 + base / 2;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&lane0)
            .unwrap()
            .set_len(cut)
            .unwrap();
        assert!(matches!(
            AppendOnly::open(&dir, "b"),
            Err(Error::Corrupted { .. })
        ));
        let buf = AppendOnly::open_restoring(&dir, "b").unwrap();
        assert_eq!(buf.restored(), [Span::new(base / 2, base / 2)]);
        let got = buf.get(a).unwrap();
        let kept = (base / 2 - 16) as usize;
        assert!(got[..kept].iter().all(|&x| x == 1));
        assert!(got[kept..].iter().all(|&x| x == 0));
        assert_eq!(buf.get(b).unwrap(), &[2u8; 1000]);
        drop(buf);
        // Restored for good: the next open finds nothing short.
        assert!(AppendOnly::open(&dir, "b").unwrap().restored().is_empty());
        // Past the recorded length: a torn tail, restored by a plain open.
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let c = buf.append(&[4u8; 3000]).unwrap();
        drop(buf);
        let lane1 = dir.path().join("b").join(format!("{LANE_PREFIX}-01.acc"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&lane1)
            .unwrap()
            .set_len(4096 + c.offset() - base + 100)
            .unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert!(buf.restored().is_empty());
        assert_eq!(buf.len(), b.end(), "the torn record is not adopted");
        assert_eq!(buf.get(b).unwrap(), &[2u8; 1000]);
        buf.append(&[3u8; 5000]).unwrap();
    }

    #[test]
    fn bad_spans_are_errors() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let abc = buf.append(b"abc").unwrap();
        assert_eq!(abc, Span::new(16, 3));
        for span in [Span::new(16, 4), Span::new(19, 1), Span::new(u64::MAX, 2)] {
            assert!(matches!(buf.get(span), Err(Error::OutOfBounds { .. })));
        }
        assert!(matches!(
            buf.append_aligned(b"x", 3),
            Err(Error::LimitExceeded { .. })
        ));
    }

    /// Appends survive a drop without sync (and the death of the process: the bytes are
    /// in the page cache), adopted by the next open through their frames; new appends go
    /// after them.
    #[test]
    fn unsynced_appends_survive_a_drop() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let a = buf.append(b"kept").unwrap();
        buf.sync().unwrap();
        let b = buf.append(b"also kept").unwrap();
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert_eq!(buf.len(), b.end());
        assert_eq!(buf.adopted_bytes(), b.end(), "nothing was recorded yet");
        assert_eq!(buf.get(a).unwrap(), b"kept");
        assert_eq!(buf.get(b).unwrap(), b"also kept");
        let c = buf.append(b"new").unwrap();
        assert_eq!(c.offset(), b.end().next_multiple_of(16) + 16);
        buf.sync_recorded().unwrap();
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert_eq!(buf.adopted_bytes(), 0, "recorded: nothing to walk");
        assert_eq!(buf.get(c).unwrap(), b"new");
    }

    /// A sealed buffer takes no more appends, and says so after a reopen, recorded or
    /// not.
    #[test]
    fn a_seal_ends_the_buffer() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        buf.append(b"x").unwrap();
        assert!(!buf.is_sealed());
        buf.seal().unwrap();
        assert!(buf.is_sealed());
        assert!(matches!(buf.append(b"y"), Err(Error::Sealed { .. })));
        assert!(matches!(buf.seal(), Err(Error::Sealed { .. })));
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert!(buf.is_sealed());
        assert!(matches!(buf.append(b"y"), Err(Error::Sealed { .. })));
        buf.sync_recorded().unwrap();
        drop(buf);
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert!(buf.is_sealed(), "recorded in length.acc");
        assert_eq!(buf.records(0).count(), 1);
    }

    #[test]
    fn lanes_are_prepared_ahead_and_the_helper_stops_on_drop() {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "b").unwrap();
        let record = [9u8; 4096];
        // Past the first 4 MiB stretch, so the helper is asked to work ahead.
        let spans: Vec<_> = (0..1200).map(|_| buf.append(&record).unwrap()).collect();
        let lane_files = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path().join("b"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let end = spans.last().unwrap().offset() + 4096;
        // The cursor is in lane 6 (4 MiB to 8 MiB); the helper creates lane 7 ahead of it.
        assert_eq!(end / APPEND_LANE_BASE_BYTES, 75);
        let ahead = dir.path().join("b").join(format!("{LANE_PREFIX}-07.acc"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ahead.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(ahead.exists(), "the helper did not create the next lane");
        buf.sync().unwrap();
        drop(buf);
        // Dropping waited for the helper: nothing changes in the directory afterwards.
        let after_drop = lane_files();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(lane_files(), after_drop);
        assert!(
            !after_drop
                .iter()
                .any(|n| n.to_string_lossy().ends_with(".tmp"))
        );
        // Lanes made ahead of the cursor are harmless on reopen.
        let buf = AppendOnly::open(&dir, "b").unwrap();
        assert_eq!(buf.len(), end);
        for span in spans.iter().step_by(97) {
            assert_eq!(buf.get(*span).unwrap(), &record);
        }
    }
}
