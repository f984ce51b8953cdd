//! Criterion benchmark of the sharded store's row compare: a key's 32-bit signature
//! against a row of 512, by the chunked compare the store uses (written so that the
//! compiler vectorizes it on stable Rust) and by a plain loop, in the same run; then the
//! ratio of the two from criterion's estimates.
//!
//! `cargo bench --bench signature_row`.

use std::hint::black_box;
use std::time::Duration;

use accretion::signature_row::{self, ROW_WIDTH, Sigs};
use criterion::{Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows of random signatures, and for each a signature to look for: present at a
/// random position in half of them, absent in the other half (a lookup of an absent key
/// scans the whole row).
fn workload() -> (Vec<Sigs>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(7);
    let rows: Vec<Sigs> = (0..1024)
        .map(|_| std::array::from_fn(|_| rng.random_range(1..u32::MAX)))
        .collect();
    let wanted = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            if i % 2 == 0 {
                row[rng.random_range(0..ROW_WIDTH)]
            } else {
                u32::MAX
            }
        })
        .collect();
    (rows, wanted)
}

fn compare(c: &mut Criterion) {
    let (rows, wanted) = workload();
    let mut g = c.benchmark_group("signature_row");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("chunked", |b| {
        b.iter(|| {
            rows.iter()
                .zip(&wanted)
                .filter_map(|(row, &sig)| signature_row::first(black_box(row), sig))
                .sum::<usize>()
        })
    });
    g.bench_function("plain_loop", |b| {
        b.iter(|| {
            rows.iter()
                .zip(&wanted)
                .filter_map(|(row, &sig)| signature_row::first_plain(black_box(row), sig))
                .sum::<usize>()
        })
    });
    g.finish();
}

/// Criterion's point estimate of the mean time per iteration for one bench.
fn mean_ns(bench: &str) -> Option<f64> {
    let path = std::path::Path::new("target/criterion/signature_row")
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.find("\"mean\"")?..];
    let pe = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let end = rest[pe..].find([',', '}'])?;
    rest[pe..pe + end].trim().parse().ok()
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    compare(&mut c);
    c.final_summary();
    match (mean_ns("chunked"), mean_ns("plain_loop")) {
        (Some(ours), Some(plain)) => println!(
            "\nrow compare, 1024 rows of 512: chunked {ours:.0} ns, plain loop {plain:.0} ns: \
             {:.2}x faster",
            plain / ours
        ),
        _ => println!("\nrow compare: not measured in this run"),
    }
}
