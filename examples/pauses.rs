//! How long single LogStore writes take while the store grows: the distribution of `put`
//! latencies over a load, and the longest, with the segment rolls it crossed.
//!
//! Run with `cargo run --release --example pauses`. `PAUSES_N` (or `TOUR_N`, as CI sets)
//! changes the number of keys (default 2,000,000): 16-byte keys, 100-byte values, the
//! default 64 MiB segments, no sync per write.

use std::time::{Duration, Instant};

use accretion::{Dir, LogOptions, LogStore};

fn main() -> accretion::Result<()> {
    let n: u64 = ["PAUSES_N", "TOUR_N"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(2_000_000);
    let dir = Dir::temporary()?;
    let kv = LogStore::open(&dir, "kv", LogOptions::default())?;
    let value = [7u8; 100];
    let mut took: Vec<Duration> = Vec::with_capacity(n as usize);
    let mut worst = (Duration::ZERO, 0);
    let start = Instant::now();
    for i in 0..n {
        // Keys in a scattered order, 16 bytes each.
        let key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128).to_be_bytes();
        let t = Instant::now();
        kv.put(&key, &value)?;
        let d = t.elapsed();
        if d > worst.0 {
            worst = (d, i);
        }
        if std::env::var_os("PAUSES_SHOW").is_some() && d > Duration::from_millis(5) {
            println!("put {i}: {d:?}, {} segments", kv.stats().segments);
        }
        took.push(d);
    }
    let total = start.elapsed();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    let stats = kv.stats();
    println!(
        "{n} puts in {:.2} s ({:.0} k/s), {} segments",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64() / 1e3,
        stats.segments
    );
    println!(
        "put latency: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?} (put number {})",
        at(0.5),
        at(0.99),
        at(0.999),
        worst.0,
        worst.1
    );
    let slow = took
        .iter()
        .filter(|d| **d > Duration::from_millis(10))
        .count();
    println!("puts over 10 ms: {slow}");
    Ok(())
}
