//! The machine a run measured: a description (processor, cores, memory, kernel, the disk
//! under the scratch directory) and its raw limits, measured in the same run, so that
//! every engine's figures can be read as a fraction of what the hardware allows.
//!
//! The limits are deliberately simple loops over std and one memory map: fsync latency of
//! a 4 KiB overwrite, sequential write bandwidth, random 100-byte-ish reads of a warm
//! mapped file, and memcpy bandwidth. They do not touch any engine.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use rand::Rng;

use crate::results::Spread;
use crate::workload::Workload;

/// What the machine is.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// Processor model name.
    pub cpu: String,
    /// Logical cores this process may use.
    pub cores: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// True if the processor reports running under a hypervisor.
    pub virtual_machine: bool,
    /// The scratch directory's mount: device, file system, whether the device says it is
    /// rotational.
    pub disk: String,
    /// Load averages (1, 5, 15 minutes) when the run started: the machine may be shared.
    pub load_average: String,
}

/// The raw limits of the machine, measured with plain loops.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Latency of a 4 KiB overwrite followed by `fdatasync`, in microseconds.
    pub fsync_micros: Spread,
    /// Sequential write bandwidth in bytes per second, including one final `fdatasync`.
    pub seq_write_bytes_per_sec: f64,
    /// Bytes written by the sequential write test.
    pub seq_write_bytes: u64,
    /// Random reads of `read_len` bytes from a warm mapped file, per second.
    pub mapped_reads_per_sec: f64,
    /// Bytes per random read.
    pub read_len: usize,
    /// Size of the mapped file.
    pub mapped_file_bytes: u64,
    /// memcpy bandwidth in bytes per second (best of several copies).
    pub memcpy_bytes_per_sec: f64,
}

impl Machine {
    /// Describes this machine and the disk under `scratch`.
    pub fn describe(scratch: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        Machine {
            cpu: field("model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: meminfo_total().unwrap_or(0),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            virtual_machine: field("flags")
                .is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            disk: describe_disk(scratch),
            load_average: load_average(),
        }
    }
}

impl Limits {
    /// Measures the limits with files under `scratch`, sized from the workload (the mapped
    /// file holds at least the workload's raw bytes). `quick` shortens every test.
    ///
    /// # Errors
    /// I/O errors of the scratch files.
    pub fn measure(scratch: &Path, w: &Workload, quick: bool) -> std::io::Result<Limits> {
        let dir = tempfile::Builder::new()
            .prefix("limits-")
            .tempdir_in(scratch)?;
        let fsync_micros = fsync_latency(&dir.path().join("fsync"), if quick { 100 } else { 500 })?;
        let seq_write_bytes: u64 = if quick { 64 << 20 } else { 512 << 20 };
        let seq_write_bytes_per_sec = seq_write(&dir.path().join("seq"), seq_write_bytes)?;
        let payload = w.n * (w.key_len + w.value_len) as u64;
        let mapped_file_bytes = payload.next_power_of_two().max(64 << 20);
        let read_len = w.value_len.max(1);
        let mapped_reads_per_sec = mapped_reads(
            &dir.path().join("mapped"),
            mapped_file_bytes,
            read_len,
            if quick { 1_000_000 } else { 5_000_000 },
        )?;
        let memcpy_bytes_per_sec = memcpy(if quick { 64 << 20 } else { 256 << 20 });
        Ok(Limits {
            fsync_micros,
            seq_write_bytes_per_sec,
            seq_write_bytes,
            mapped_reads_per_sec,
            read_len,
            mapped_file_bytes,
            memcpy_bytes_per_sec,
        })
    }
}

/// The 1, 5 and 15 minute load averages, from /proc/loadavg.
pub fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".into())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The mount holding `path` (the longest mount point that prefixes it), from mountinfo.
fn describe_disk(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String, String, String)> = None;
    for line in mounts.lines() {
        // Fields: id parent major:minor root mount-point options ... - fstype source opts
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if path.starts_with(mount) && best.as_ref().is_none_or(|b| mount.len() >= b.0) {
            best = Some((
                mount.len(),
                mount.to_string(),
                fstype.to_string(),
                source.to_string(),
            ));
        }
    }
    let Some((_, mount, fstype, source)) = best else {
        return "unknown".into();
    };
    let device = source.trim_start_matches("/dev/");
    let rotational = read_trimmed(&format!("/sys/class/block/{device}/queue/rotational"))
        .map(|r| {
            if r == "1" {
                ", reports rotational"
            } else {
                ", reports non-rotational"
            }
        })
        .unwrap_or("");
    format!("{source} ({fstype}) mounted at {mount}{rotational}")
}

/// Median (and spread) latency of `rounds` 4 KiB overwrites each followed by fdatasync.
fn fsync_latency(path: &Path, rounds: usize) -> std::io::Result<Spread> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let block = [0x5au8; 4096];
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let mut b = block;
        b[0] = i as u8;
        let start = Instant::now();
        file.write_all_at(&b, 0)?;
        file.sync_data()?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Spread::of(&samples).unwrap_or(Spread {
        median: 0.0,
        min: 0.0,
        max: 0.0,
        count: 0,
    }))
}

/// Bytes per second of writing `bytes` in 1 MiB blocks to a new file, then fdatasync.
fn seq_write(path: &Path, bytes: u64) -> std::io::Result<f64> {
    let mut block = vec![0u8; 1 << 20];
    rand::rng().fill(block.as_mut_slice());
    let mut file = File::create(path)?;
    let start = Instant::now();
    let mut written = 0;
    while written < bytes {
        file.write_all(&block)?;
        written += block.len() as u64;
    }
    file.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(written as f64 / secs)
}

/// Random `len`-byte reads per second from a warm (fully touched) mapped file of `bytes`.
fn mapped_reads(path: &Path, bytes: u64, len: usize, reads: u64) -> std::io::Result<f64> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let mut block = vec![0u8; 1 << 20];
    rand::rng().fill(block.as_mut_slice());
    let mut at = 0;
    while at < bytes {
        file.write_all_at(&block, at)?;
        at += block.len() as u64;
    }
    // SAFETY: the file was made by this function in a private directory and is neither
    // truncated nor written while the map exists.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let warm: u64 = map.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    black_box(warm);
    let span = map.len() - len;
    let mut rng = rand::rng();
    let mut sum = 0u64;
    let mut copy = vec![0u8; len];
    let start = Instant::now();
    for _ in 0..reads {
        // 16-aligned like the engines' values, copied out like a read that returns bytes.
        let offset = rng.random_range(0..span) & !15;
        copy.copy_from_slice(&map[offset..offset + len]);
        sum = sum.wrapping_add(u64::from(copy[0]) + u64::from(copy[len - 1]));
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(sum);
    Ok(reads as f64 / secs)
}

/// Best bytes per second of copying a `bytes` buffer into another, over five copies.
fn memcpy(bytes: usize) -> f64 {
    let mut src = vec![0u8; bytes];
    rand::rng().fill(src.as_mut_slice());
    let mut dst = vec![1u8; bytes];
    let mut best = f64::MAX;
    for round in 0..5u8 {
        src[0] = round;
        let start = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        best = best.min(start.elapsed().as_secs_f64());
    }
    bytes as f64 / best
}
