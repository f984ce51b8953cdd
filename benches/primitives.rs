//! Criterion benchmarks of each primitive's hot operations beside the std equivalent, in
//! the same run. After criterion finishes, a table of ratios (ours / std throughput) is
//! printed from criterion's own estimates.
//!
//! `cargo bench --bench primitives`; set `ACCRETION_BENCH_KEYS` to change the map size
//! (default 1,000,000).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use accretion::{AppendOnly, Content, ContentId, Dir, OnceMap, RandomAccess};
use criterion::{Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Appends per fresh buffer: both sides pay for growth, neither grows without bound.
const APPENDS_PER_BUFFER: u64 = 1 << 20;
const RECORD: [u8; 100] = [0x5a; 100];

fn keys_count() -> usize {
    std::env::var("ACCRETION_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn random_keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// A benchmark target that is replaced by a fresh one (made untimed) after `budget`
/// operations, so that a growing structure is measured over its whole growth, amortized
/// as a real user would see it, without growing without bound.
struct Rolling<T> {
    make: Box<dyn FnMut() -> T>,
    target: Option<T>,
    used: u64,
    budget: u64,
}

impl<T> Rolling<T> {
    fn new(budget: u64, make: impl FnMut() -> T + 'static) -> Self {
        Rolling {
            make: Box::new(make),
            target: None,
            used: 0,
            budget,
        }
    }

    /// Times `iters` calls of `op(target, i)`, where `i` counts operations on the
    /// current target.
    fn time(&mut self, iters: u64, mut op: impl FnMut(&T, u64)) -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            if self.target.is_none() || self.used >= self.budget {
                self.target = None;
                self.target = Some((self.make)());
                self.used = 0;
            }
            let n = (self.budget - self.used).min(iters - done);
            let target = self.target.as_ref().expect("made above");
            let start = Instant::now();
            for i in self.used..self.used + n {
                op(target, i);
            }
            total += start.elapsed();
            self.used += n;
            done += n;
        }
        total
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_100B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("std_vec_extend", |b| {
        let mut vec = Rolling::new(APPENDS_PER_BUFFER, || std::cell::RefCell::new(Vec::new()));
        b.iter_custom(|iters| {
            vec.time(iters, |v, _| {
                v.borrow_mut().extend_from_slice(black_box(&RECORD))
            })
        })
    });
    g.bench_function("accretion_append_only", |b| {
        let mut buf = Rolling::new(APPENDS_PER_BUFFER, || {
            let dir = Dir::temporary().expect("temp dir");
            let buf = AppendOnly::open(&dir, "bench").expect("open");
            (buf, dir)
        });
        b.iter_custom(|iters| {
            buf.time(iters, |(buf, _), _| {
                black_box(buf.append(black_box(&RECORD)).expect("append"));
            })
        })
    });
    g.finish();
}

fn once_map(c: &mut Criterion) {
    let n = keys_count();
    let keys = random_keys(n, 1);
    let value = [7u8; 100];
    let dir = Dir::temporary().expect("temp dir");
    let map = OnceMap::open(&dir, "bench").expect("open");
    let mut std_map: HashMap<[u8; 16], Vec<u8>> = HashMap::with_capacity(0);
    for k in &keys {
        map.insert(k, &value).expect("insert");
        std_map.insert(*k, value.to_vec());
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(2);
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }

    let mut g = c.benchmark_group(format!("once_map_get_{n}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("std_hashmap_get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % n;
            black_box(std_map.get(&keys[order[i]]).map(|v| v.len()))
        })
    });
    g.bench_function("accretion_once_map_get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % n;
            black_box(map.get(&keys[order[i]]).expect("get").map(<[u8]>::len))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("once_map_insert");
    g.throughput(Throughput::Elements(1));
    let fresh = std::sync::Arc::new(random_keys(1 << 20, 3));
    let budget = fresh.len() as u64;
    g.bench_function("std_hashmap_insert", |b| {
        let mut m = Rolling::new(budget, || {
            std::cell::RefCell::new(HashMap::<[u8; 16], Vec<u8>>::new())
        });
        b.iter_custom(|iters| {
            m.time(iters, |m, i| {
                m.borrow_mut()
                    .insert(fresh[i as usize], black_box(&value).to_vec());
            })
        })
    });
    g.bench_function("accretion_once_map_insert", |b| {
        let mut m = Rolling::new(budget, || {
            let dir = Dir::temporary().expect("temp dir");
            (OnceMap::open(&dir, "m").expect("open"), dir)
        });
        b.iter_custom(|iters| {
            m.time(iters, |(m, _), i| {
                m.insert(&fresh[i as usize], black_box(&value))
                    .expect("insert");
            })
        })
    });
    g.finish();
}

fn random_access(c: &mut Criterion) {
    let n = keys_count() as u64;
    let dir = Dir::temporary().expect("temp dir");
    let array = RandomAccess::<u64>::open(&dir, "bench").expect("open");
    let vec = RwLock::new((0..n).map(|i| i + 1).collect::<Vec<u64>>());
    for i in 0..n {
        array.set(i, i + 1).expect("set");
    }
    let mut rng = StdRng::seed_from_u64(4);
    let idx: Vec<u64> = (0..1 << 16).map(|_| rng.random_range(0..n)).collect();
    let mask = idx.len() - 1;

    let mut g = c.benchmark_group(format!("random_access_get_{n}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("std_rwlock_vec_index", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(vec.read().expect("lock")[idx[i] as usize])
        })
    });
    g.bench_function("accretion_random_access_get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(array.get(idx[i]).expect("get").map(|v| *v))
        })
    });
    g.bench_function("std_rwlock_vec_write", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            vec.write().expect("lock")[idx[i] as usize] += 1;
        })
    });
    g.bench_function("accretion_random_access_with_mut", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            array.with_mut(idx[i], |v| *v += 1).expect("with_mut");
        })
    });
    g.finish();
}

fn content(c: &mut Criterion) {
    let dir = Dir::temporary().expect("temp dir");
    let store = Content::open(&dir, "bench").expect("open");
    let blobs: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| i.to_le_bytes().repeat(256))
        .collect();
    let ids: Vec<ContentId> = blobs
        .iter()
        .map(|b| store.insert(b).expect("insert"))
        .collect();
    let std_map: HashMap<ContentId, Vec<u8>> =
        ids.iter().copied().zip(blobs.iter().cloned()).collect();
    let mut g = c.benchmark_group("content_get_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("std_hashmap_get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(std_map.get(&ids[i]).map(Vec::len))
        })
    });
    g.bench_function("accretion_content_get_verified", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(store.get(&ids[i]).expect("get").map(<[u8]>::len))
        })
    });
    g.bench_function("accretion_content_get_unverified", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(store.get_unverified(&ids[i]).expect("get").map(<[u8]>::len))
        })
    });
    g.finish();
}

/// Reads criterion's point estimate of the mean time per iteration for one bench.
fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let path = std::path::Path::new("target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"mean\"")?;
    let rest = &text[at..];
    let pe = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let end = rest[pe..].find([',', '}'])?;
    rest[pe..pe + end].trim().parse().ok()
}

fn ratios() {
    let n = keys_count();
    let rows = [
        (
            "append_100B".to_string(),
            "accretion_append_only",
            "std_vec_extend",
            0.5,
        ),
        (
            format!("once_map_get_{n}"),
            "accretion_once_map_get",
            "std_hashmap_get",
            0.5,
        ),
        (
            format!("random_access_get_{n}"),
            "accretion_random_access_get",
            "std_rwlock_vec_index",
            0.5,
        ),
        (
            format!("random_access_get_{n}"),
            "accretion_random_access_with_mut",
            "std_rwlock_vec_write",
            0.0,
        ),
        (
            "once_map_insert".to_string(),
            "accretion_once_map_insert",
            "std_hashmap_insert",
            0.0,
        ),
        (
            "content_get_1KiB".to_string(),
            "accretion_content_get_unverified",
            "std_hashmap_get",
            0.0,
        ),
    ];
    println!("\nthroughput ratio, accretion / std (same run; > 1 means accretion is faster)");
    println!(
        "{:<28} {:<36} {:>10} {:>10} {:>7}  target",
        "group", "ours", "ours ns", "std ns", "ratio"
    );
    for (group, ours, theirs, target) in rows {
        match (mean_ns(&group, ours), mean_ns(&group, theirs)) {
            (Some(a), Some(b)) => {
                let ratio = b / a;
                let verdict = if target == 0.0 {
                    "-".to_string()
                } else if ratio >= target {
                    format!(">= {target} met")
                } else {
                    format!(">= {target} MISSED")
                };
                println!("{group:<28} {ours:<36} {a:>10.1} {b:>10.1} {ratio:>7.2}  {verdict}");
            }
            _ => println!("{group:<28} {ours:<36} (not measured in this run)"),
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    append(&mut c);
    once_map(&mut c);
    random_access(&mut c);
    content(&mut c);
    c.final_summary();
    ratios();
}
